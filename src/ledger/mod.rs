//! Pipeline stage 8: the spend ledger. One append-only row per finished request.
//!
//! [`LedgerEntry`] is the single record of what happened to a request; metrics and logs are derived from it too.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::usage::Usage;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Completed normally.
    Ok,
    /// The client went away before the response was complete.
    Cancelled,
    /// The upstream failed mid-way or before answering.
    Failed,
    /// Refused by Switchyard or the provider with a 4xx.
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
        }
    }
}

/// One row of the ledger.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub request_id: String,
    pub time: DateTime<Utc>,
    pub user: String,
    pub team: String,
    pub key_id: String,
    /// The `model` field the client sent.
    pub requested_model: String,
    /// The catalogue model that served it (empty when none was chosen).
    pub routed_model: String,
    pub provider: String,
    pub deployment: String,
    pub endpoint: &'static str,
    pub usage: Usage,
    /// Usage was counted locally because the provider did not report it.
    pub estimated: bool,
    /// Price per million tokens used for `cost`, kept so later price changes never rewrite history.
    pub price_input: Decimal,
    pub price_output: Decimal,
    pub price_cached_input: Decimal,
    pub cost: Decimal,
    /// What the request would have cost on the team's baseline model.
    pub baseline_cost: Decimal,
    /// Local model: `cost` is internal cost and counts against the local budget dimension.
    pub local: bool,
    pub difficulty: Option<f32>,
    pub task: Option<String>,
    pub route_reason: String,
    pub latency_ms: u32,
    pub ttft_ms: Option<u32>,
    pub status: Status,
    pub http_status: u16,
    /// Time spent inside Switchyard itself (everything but waiting for the upstream).
    pub overhead_us: u64,
}

/// Hands finished requests' rows to the writer (placeholder until the writer lands: rows are only logged).
#[derive(Clone, Default)]
pub struct Ledger {}

impl Ledger {
    /// Never blocks and never fails the request.
    pub fn record(&self, entry: LedgerEntry) {
        tracing::debug!(request_id = %entry.request_id, cost = %entry.cost, "ledger row");
    }

    /// Writes everything still queued (graceful shutdown).
    pub async fn drain(&self) {}
}
