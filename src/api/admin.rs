//! Admin endpoints under `/admin`, guarded by the admin key from the environment (`admin_key: env:VAR`).
//! Without a configured admin key they are all refused.

use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind};
use crate::state::AppState;
use crate::store::keys::KeyRecord;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/spend", get(crate::ledger::report::spend_handler))
        .merge(crate::policy::admin::routes())
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// Compares digests so the comparison time does not depend on how much of the key matched.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, Error> {
    let Some(expected) = &state.config.admin_key else {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "Admin endpoints are disabled: no admin_key is configured.",
        ));
    };
    match crate::auth::presented_key(request.headers()) {
        Some(given) if same_secret(given, expected.expose()) => Ok(next.run(request).await),
        _ => Err(Error::unauthorized("This endpoint needs the admin key.")),
    }
}

fn key_json(k: &KeyRecord) -> Value {
    json!({
        "id": k.id,
        "prefix": k.prefix,
        "user": k.user,
        "team": k.team,
        "label": k.label,
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
    })
}

fn store_error(e: crate::store::StoreError) -> Error {
    match e {
        crate::store::StoreError::Invalid(m) => Error::invalid_request(m),
        crate::store::StoreError::NotFound(m) => Error::new(ErrorKind::NotFound, m),
        other => {
            tracing::error!(error = %other, "admin store operation failed");
            Error::new(ErrorKind::Unavailable, "The store is unavailable.")
        }
    }
}

#[derive(Deserialize)]
struct TeamFilter {
    team: Option<String>,
}

async fn list_keys(State(state): State<AppState>, Query(f): Query<TeamFilter>) -> Result<Json<Value>, Error> {
    let keys = state
        .store
        .list_keys(f.team.as_deref())
        .await
        .map_err(store_error)?;
    Ok(Json(
        json!({"object": "list", "data": keys.iter().map(key_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    user: String,
    team: String,
    label: Option<String>,
}

async fn create_key(State(state): State<AppState>, body: axum::body::Bytes) -> Result<Json<Value>, Error> {
    let req: CreateKey = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid_request(format!("Expected {{\"user\", \"team\", \"label\"?}}: {e}")))?;
    let new = state
        .store
        .create_key(&req.user, &req.team, req.label.as_deref())
        .await
        .map_err(store_error)?;
    let mut v = key_json(&new.record);
    v["key"] = Value::String(new.plaintext);
    Ok(Json(v))
}

async fn revoke_key(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Error> {
    let key = state.store.revoke_key(&id).await.map_err(store_error)?;
    state.auth.invalidate_all();
    Ok(Json(key_json(&key)))
}
