//! Liveness, readiness and the Prometheus scrape endpoint.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::{StatusCode, header};
use serde_json::json;

use crate::state::AppState;

/// Alive: the process answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready to take traffic: not draining. A database outage does not make the proxy unready — keys and budgets are
/// served from cache and the ledger spools — but it is reported so operators see it.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = match state.store.ping().await {
        Ok(()) => "ok",
        Err(_) => "unreachable",
    };
    let draining = state.is_draining();
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(json!({"status": if draining { "draining" } else { "ready" }, "store": store})),
    )
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
}
