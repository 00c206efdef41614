//! Admin HTTP handlers for policies: status (with the last rejected reload) and a routing dry run.
//! [`routes`] is merged into the `/admin` router behind the admin key: `GET /admin/policies`,
//! `POST /admin/route`. The handlers take [`PolicyAdmin`] as state, which the app state provides through
//! `axum::extract::FromRef`, so they see only what they need.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Policies;
use super::commands::estimate_tokens;
use crate::config::{Capability, Catalogue};
use crate::local::LocalModels;
use crate::route::{self, Conditions, RequestFacts, Signal};

/// Computes a classifier signal for the dry run (the classifier implements it; absent → difficulty required).
pub trait DryRunClassifier: Send + Sync {
    fn signal(&self, text: &str) -> Result<Signal, String>;
}

#[derive(Clone)]
pub struct PolicyAdmin {
    pub policies: Policies,
    pub catalogue: Arc<Catalogue>,
    pub local: LocalModels,
    pub classifier: Option<Arc<dyn DryRunClassifier>>,
}

impl FromRef<crate::state::AppState> for PolicyAdmin {
    fn from_ref(state: &crate::state::AppState) -> Self {
        PolicyAdmin {
            policies: state.policies.clone(),
            catalogue: state.catalogue.clone(),
            local: state.local.clone(),
            // Until the classifier is wired, the dry run needs `difficulty` in the request (or uses the
            // policy's unclassified fallback).
            classifier: None,
        }
    }
}

/// The policy admin routes, to merge into the `/admin` router (which applies the admin-key check).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    PolicyAdmin: FromRef<S>,
{
    Router::new()
        .route("/policies", get(status))
        .route("/route", post(dry_run))
}

/// `GET /admin/policies`: generation, load time, teams, the last rejected reload, per-team summaries.
pub async fn status(State(admin): State<PolicyAdmin>) -> Json<Value> {
    Json(status_json(&admin.policies))
}

pub fn status_json(policies: &Policies) -> Value {
    let status = policies.status();
    let set = policies.snapshot();
    let teams: serde_json::Map<String, Value> = std::iter::once(("default".to_owned(), &set.default))
        .chain(set.teams.iter().map(|(k, v)| (k.clone(), v)))
        .map(|(team, p)| {
            (
                team,
                json!({
                    "source": p.source.as_ref().map(|s| s.display().to_string()),
                    "description": p.description,
                    "dial": p.dial,
                    "max_cost_per_request": p.max_cost_per_request.map(|c| c.to_string()),
                    "named_models": p.named_models,
                    "auto_names": p.auto_names,
                    "aliases": p.aliases,
                    "routes": p.routes.iter().map(|r| &r.name).collect::<Vec<_>>(),
                    "routes_inactive": p.routes_without_embeddings(),
                    "data_rules": p.data_rules.iter().map(|r| &r.name).collect::<Vec<_>>(),
                    "budgets": p.budgets,
                }),
            )
        })
        .collect();
    json!({
        "generation": status.generation,
        "loaded_at": humantime::format_rfc3339_seconds(status.loaded_at).to_string(),
        "last_error": status.last_error.as_ref().map(|e| json!({
            "at": humantime::format_rfc3339_seconds(e.at).to_string(),
            "issues": e.issues,
        })),
        "policies": teams,
    })
}

/// `POST /admin/route` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    pub team: String,
    #[serde(default = "auto")]
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    pub difficulty: Option<f32>,
    pub task: Option<String>,
    pub max_tokens: Option<u64>,
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    /// Model the conversation used last (to see stickiness at work).
    pub sticky_model: Option<String>,
}

fn auto() -> String {
    "auto".to_owned()
}

/// `POST /admin/route`: what the live policy would do with this request, against live local-model state.
pub async fn dry_run(
    State(admin): State<PolicyAdmin>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), crate::error::Error> {
    // Parsed by hand so a bad body gets the same OpenAI-shaped error as every other endpoint.
    let req: DryRunRequest = serde_json::from_slice(&body).map_err(|e| {
        crate::error::Error::invalid_request(format!(
            "Send a JSON object such as {{\"team\": \"engineering\", \"prompt\": \"...\"}} ({e})."
        ))
    })?;
    // The classifier is CPU work; keep it off the async workers.
    let classifier = admin.classifier.clone();
    let prompt = req.prompt.clone();
    let classified = match (req.difficulty, classifier) {
        (None, Some(c)) if !prompt.is_empty() => tokio::task::spawn_blocking(move || c.signal(&prompt))
            .await
            .ok()
            .and_then(Result::ok),
        _ => None,
    };
    let (code, body) = dry_run_json(&admin, &req, classified);
    Ok((code, Json(body)))
}

pub fn dry_run_json(
    admin: &PolicyAdmin,
    req: &DryRunRequest,
    classified: Option<Signal>,
) -> (StatusCode, Value) {
    let mut needs = BTreeSet::new();
    for n in &req.needs {
        match Capability::parse(n) {
            Some(c) => {
                needs.insert(c);
            }
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({ "error": format!("`{n}` is not a capability") }),
                );
            }
        }
    }
    let policy = admin.policies.for_team(&req.team);
    let facts = RequestFacts {
        estimated_input_tokens: req
            .input_tokens
            .unwrap_or_else(|| estimate_tokens(&req.prompt, 1)),
        max_tokens: req.max_tokens,
        needs,
        stream: false,
        tags: req.tags.iter().cloned().collect(),
        text: Some(Arc::from(req.prompt.as_str())),
        budget_exhausted: false,
        provider: None,
    };
    let (signal, source) = match (req.difficulty, classified) {
        (Some(d), _) => (Some(Signal::new(d, req.task.clone())), "request"),
        (None, Some(mut s)) => {
            if req.task.is_some() {
                s.task = req.task.clone();
            }
            (Some(s), "classifier")
        }
        (None, None) => (None, "none (policy's unclassified fallback)"),
    };
    let conditions = Conditions {
        local: admin.local.snapshot(),
        sticky_model: req.sticky_model.clone(),
        ..Conditions::default()
    };
    match route::decide_with(
        &policy,
        &admin.catalogue,
        &req.model,
        &facts,
        signal.as_ref(),
        &conditions,
    ) {
        Ok(d) => {
            let mut v = route::report::decision_json(&d);
            v["team"] = json!(req.team);
            v["policy"] = json!(policy.name);
            v["signal_source"] = json!(source);
            (StatusCode::OK, v)
        }
        Err(e) => (StatusCode::OK, route::report::error_json(&e)),
    }
}
