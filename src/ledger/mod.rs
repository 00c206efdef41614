//! Pipeline stage 8: the spend ledger. One append-only row per finished request.
//!
//! [`LedgerEntry`] is the single record of what happened to a request; metrics and logs are derived from it too.
//!
//! How a row travels, and why nothing is lost or written twice:
//!
//! - [`Ledger::record`] never blocks and never waits for the database: it puts the row on a bounded queue, or —
//!   when the queue is full or closed — hands it to the [`spool`] (an append-only local file); rows that find the
//!   queue full go there in groups, with the writer's next batch at the latest.
//! - The [`writer`] task takes rows off the queue in batches (at most `ledger.max_batch` rows, at most
//!   `ledger.flush_interval` after the first row arrived; `record` wakes it once a whole batch is pending, not
//!   for every row) and writes each batch with one statement, which also updates the daily rollup. When the
//!   database fails, the batch goes to the spool, fsync'd by group commit.
//! - When the database answers again, and the writer has caught up with the queue, it replays the spool, then
//!   deletes each replayed segment. A row's key is (request id, time) and inserts are `ON CONFLICT DO NOTHING`,
//!   so a replay that repeats rows already written (a crash between insert and delete, an insert that timed out
//!   but committed) writes nothing twice; the rollup is fed only from rows actually inserted.
//! - [`Ledger::drain`] (graceful shutdown) closes the queue and writes or spools everything still held.
//!
//! After `kill -9`, what is lost is what sat in memory: at most one flush interval of rows (plus the time of the
//! insert in flight), and while the queue is full the overflow gathered since the last batch.
//! `tests/ledger_kill.rs` measures it.

pub mod leases;
pub mod report;
pub mod spool;
mod sql;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::usage::Usage;

pub use writer::{Ledger, LedgerStats};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// How a request that ended with `error` is recorded: `rejected` when the client caused it, `failed` otherwise.
    pub fn of_error(error: &crate::error::Error) -> Status {
        if error.fault() == crate::error::Fault::Client {
            Status::Rejected
        } else {
            Status::Failed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "ok" => Some(Status::Ok),
            "cancelled" => Some(Status::Cancelled),
            "failed" => Some(Status::Failed),
            "rejected" => Some(Status::Rejected),
            _ => None,
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

/// A ledger row as stored and spooled: owned, serialisable, with its time truncated to the microsecond that both
/// databases keep — so the (request id, time) key of a replayed row is byte-for-byte the key of the original.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub request_id: String,
    pub time: DateTime<Utc>,
    pub user: String,
    pub team: String,
    pub key_id: String,
    pub requested_model: String,
    pub routed_model: String,
    pub provider: String,
    pub deployment: String,
    pub endpoint: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    pub reasoning_tokens: u64,
    pub estimated: bool,
    pub price_input: Decimal,
    pub price_output: Decimal,
    pub price_cached_input: Decimal,
    pub cost: Decimal,
    pub baseline_cost: Decimal,
    pub local: bool,
    pub difficulty: Option<f32>,
    pub task: Option<String>,
    pub route_reason: String,
    pub latency_ms: u32,
    pub ttft_ms: Option<u32>,
    pub status: Status,
    pub http_status: u16,
}

impl From<LedgerEntry> for Row {
    fn from(e: LedgerEntry) -> Row {
        Row {
            request_id: e.request_id,
            time: e.time.trunc_subsecs(6),
            user: e.user,
            team: e.team,
            key_id: e.key_id,
            requested_model: e.requested_model,
            routed_model: e.routed_model,
            provider: e.provider,
            deployment: e.deployment,
            endpoint: e.endpoint.to_owned(),
            input_tokens: e.usage.input_tokens,
            output_tokens: e.usage.output_tokens,
            cached_input_tokens: e.usage.cached_input_tokens,
            cache_write_input_tokens: e.usage.cache_write_input_tokens,
            reasoning_tokens: e.usage.reasoning_tokens,
            estimated: e.estimated,
            price_input: e.price_input,
            price_output: e.price_output,
            price_cached_input: e.price_cached_input,
            cost: e.cost,
            baseline_cost: e.baseline_cost,
            local: e.local,
            difficulty: e.difficulty,
            task: e.task,
            route_reason: e.route_reason,
            latency_ms: e.latency_ms,
            ttft_ms: e.ttft_ms,
            status: e.status,
            http_status: e.http_status,
        }
    }
}

/// Counters shared by the writer, the spool and [`Ledger::stats`]; cheap enough to bump per row.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub recorded: AtomicU64,
    pub written: AtomicU64,
    pub duplicates: AtomicU64,
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    pub lost: AtomicU64,
    pub batches: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

pub(crate) type SharedCounters = Arc<Counters>;
