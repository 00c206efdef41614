//! Pipeline stage 9: Prometheus metrics. Names and label sets live here and nowhere else; label values are bounded
//! vocabularies (team, model, provider, status, reason), never user ids, keys or error strings.

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

use crate::ledger::LedgerEntry;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "switchyard_requests_total",
                "Requests by team, model, provider and status",
            ),
            &["team", "model", "provider", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        Ok(Metrics { registry, requests })
    }

    /// Records a finished request.
    pub fn observe(&self, entry: &LedgerEntry) {
        self.requests
            .with_label_values(&[
                &entry.team,
                &entry.routed_model,
                &entry.provider,
                entry.status.as_str(),
            ])
            .inc();
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
