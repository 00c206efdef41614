//! The HTTP surface: routes, request ids, body limits, and the endpoint handlers.
//!
//! Every error leaves here in OpenAI's shape, including the ones axum would otherwise produce itself (unknown
//! route, wrong method, oversized body).

mod admin;
mod health;
mod models;

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};

use crate::error::{Error, ErrorKind};
use crate::pipeline::{self, Call, Endpoint};
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Per-request context set by the outermost middleware.
#[derive(Clone)]
pub struct RequestContext {
    pub id: String,
    pub started: Instant,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model}", get(models::get))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/admin", admin::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(request_id))
}

/// A client-supplied id is kept when it is short printable ASCII (so it can be correlated across systems);
/// anything else is replaced by a fresh one.
fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())).then(|| v.to_owned())
}

async fn request_id(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = client_request_id(request.headers())
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()));
    request.extensions_mut().insert(RequestContext {
        id: id.clone(),
        started,
    });
    let mut response = next.run(request).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    // Responses that never reached an upstream spent all their time in Switchyard; the pipeline sets a precise
    // value (excluding the upstream's time) on the ones that did.
    if !response.headers().contains_key(pipeline::OVERHEAD_HEADER)
        && let Ok(v) = HeaderValue::from_str(&format!("{:.3}", started.elapsed().as_secs_f64() * 1000.0))
    {
        response.headers_mut().insert(pipeline::OVERHEAD_HEADER, v);
    }
    response
}

async fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "Unknown endpoint. Switchyard serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models and /v1/messages.")
        .with_code("unknown_url")
}

async fn method_not_allowed() -> Error {
    Error::new(
        ErrorKind::MethodNotAllowed,
        "This method is not allowed on this endpoint.",
    )
    .with_code("method_not_allowed")
}

/// Reads the body up to `limit` bytes; a larger one is refused with 413 before more is read.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Error> {
    let too_large = || {
        Error::new(
            ErrorKind::PayloadTooLarge,
            format!("The request body is larger than the limit of {limit} bytes."),
        )
        .with_code("request_too_large")
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            let is_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            if is_limit {
                Err(too_large())
            } else {
                Err(Error::invalid_request("The request body could not be read."))
            }
        }
    }
}

async fn proxy_endpoint(
    state: AppState,
    ctx: RequestContext,
    headers: HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Response {
    if state.is_draining() {
        let error = Error::new(
            ErrorKind::Unavailable,
            "Switchyard is shutting down; retry on another instance.",
        );
        return refuse(&state, &ctx.id, None, endpoint, error);
    }
    let principal = match state.auth.authenticate(&headers).await {
        Ok(principal) => principal,
        Err(error) => return refuse(&state, &ctx.id, None, endpoint, error),
    };
    let bytes = match read_body(&headers, body, state.config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(error) => return refuse(&state, &ctx.id, Some(&principal.team), endpoint, error),
    };
    let call = Call {
        request_id: ctx.id,
        started: ctx.started,
        principal,
        endpoint,
        headers,
    };
    pipeline::proxy(state, call, bytes).await
}

/// Answers a request refused before the pipeline took it, counted and logged as refused.
fn refuse(
    state: &AppState,
    request_id: &str,
    team: Option<&str>,
    endpoint: Endpoint,
    error: Error,
) -> Response {
    pipeline::record_refused(state, request_id, team, endpoint, &error);
    error.into_response()
}

async fn chat_completions(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    proxy_endpoint(state, ctx, headers, body, Endpoint::ChatCompletions).await
}

async fn completions(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    proxy_endpoint(state, ctx, headers, body, Endpoint::Completions).await
}

async fn embeddings(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    proxy_endpoint(state, ctx, headers, body, Endpoint::Embeddings).await
}

async fn messages(
    State(state): State<AppState>,
    axum::Extension(ctx): axum::Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    proxy_endpoint(state, ctx, headers, body, Endpoint::Messages).await
}
