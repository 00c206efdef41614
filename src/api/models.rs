//! `GET /v1/models`: the catalogue in OpenAI's list shape, plus the names that ask for routing.

use async_openai::types::models::{ListModelResponse, Model};
use axum::Json;
use axum::extract::{Path, State};
use http::HeaderMap;

use crate::error::Error;
use crate::state::AppState;

fn entry(id: &str, owned_by: &str) -> Model {
    Model {
        id: id.to_owned(),
        object: "model".to_owned(),
        created: 0,
        owned_by: owned_by.to_owned(),
        shutdown_date: None,
    }
}

fn catalogue_models(state: &AppState, team: &str) -> Vec<Model> {
    let policy = state.policies.for_team(team);
    let mut data: Vec<Model> = policy.auto_names.iter().map(|n| entry(n, "switchyard")).collect();
    data.extend(state.catalogue.models.iter().map(|m| {
        let owner = if m.local { "local" } else { m.provider().as_str() };
        entry(&m.name, owner)
    }));
    data
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ListModelResponse>, Error> {
    let principal = state.auth.authenticate(&headers).await?;
    Ok(Json(ListModelResponse {
        object: "list".to_owned(),
        data: catalogue_models(&state, &principal.team),
    }))
}

pub async fn get(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Model>, Error> {
    let principal = state.auth.authenticate(&headers).await?;
    catalogue_models(&state, &principal.team)
        .into_iter()
        .find(|m| m.id == model)
        .map(Json)
        .ok_or_else(|| Error::model_not_found(&model))
}
