//! The one error type of the request path.
//!
//! Every error records **who is at fault** — the client, the upstream provider, or Switchyard itself — because
//! that decides the status code, the metric label and whether a fallback deployment may be tried. Every error
//! leaves the proxy in OpenAI's JSON shape `{"error":{"message","type","param","code"}}`; messages are written
//! for the caller and never carry keys, upstream credentials or internal paths.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

/// Who caused a failure. Used for the status code, for metrics and for the ledger's status column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller sent something we refuse (bad JSON, bad key, unknown model, over budget).
    Client,
    /// The provider failed, timed out, or answered with an error.
    Upstream,
    /// Switchyard itself failed (store down where it is needed, a bug).
    Internal,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Upstream => "upstream",
            Fault::Internal => "internal",
        }
    }
}

/// What went wrong. About a dozen variants, each mapping to exactly one status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed JSON or a request that fails validation.
    InvalidRequest,
    /// The request body exceeds the configured limit.
    PayloadTooLarge,
    /// Missing, unknown or revoked API key.
    Unauthorized,
    /// The team policy does not allow this request.
    Forbidden,
    /// Unknown model or endpoint.
    NotFound,
    /// The endpoint exists but not with this HTTP method.
    MethodNotAllowed,
    /// A hard budget is exhausted.
    BudgetExceeded,
    /// The upstream answered with a 4xx; its status and (already translated) body are passed through.
    UpstreamRejected { status: u16, body: Bytes },
    /// The upstream failed: 5xx, refused or dropped connection, malformed answer.
    UpstreamFailed,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// Switchyard cannot serve right now (shutting down, store not ready).
    Unavailable,
    /// A bug or an unexpected failure inside Switchyard.
    Internal,
}

/// An error on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub param: Option<String>,
    /// OpenAI-style machine-readable code (`invalid_api_key`, `model_not_found`, `budget_exceeded`, …).
    pub code: Option<&'static str>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unauthorized, message).with_code("invalid_api_key")
    }

    pub fn model_not_found(model: &str) -> Self {
        Error::new(
            ErrorKind::NotFound,
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    pub fn upstream_failed(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::UpstreamFailed, message)
    }

    pub fn upstream_timeout(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::UpstreamTimeout, message).with_code("timeout")
    }

    /// Exhaustive on purpose: a new variant must decide its status here.
    pub fn status_code(&self) -> StatusCode {
        match &self.kind {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BudgetExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::UpstreamRejected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            ErrorKind::UpstreamFailed => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn fault(&self) -> Fault {
        match &self.kind {
            ErrorKind::InvalidRequest
            | ErrorKind::PayloadTooLarge
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::BudgetExceeded => Fault::Client,
            ErrorKind::UpstreamRejected { .. } | ErrorKind::UpstreamFailed | ErrorKind::UpstreamTimeout => {
                Fault::Upstream
            }
            ErrorKind::Unavailable | ErrorKind::Internal => Fault::Internal,
        }
    }

    /// OpenAI's `type` field.
    fn type_str(&self) -> &'static str {
        match &self.kind {
            // OpenAI itself answers a bad key with `invalid_request_error` (and code `invalid_api_key`).
            ErrorKind::InvalidRequest
            | ErrorKind::PayloadTooLarge
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::Unauthorized => "invalid_request_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::BudgetExceeded => "insufficient_quota",
            ErrorKind::UpstreamRejected { .. } | ErrorKind::UpstreamFailed | ErrorKind::UpstreamTimeout => {
                "upstream_error"
            }
            ErrorKind::Unavailable | ErrorKind::Internal => "server_error",
        }
    }

    /// The JSON body in OpenAI's error shape.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.type_str(),
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// Short label for metrics and the ledger: a bounded vocabulary, never the message.
    pub fn label(&self) -> &'static str {
        match &self.kind {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::UpstreamRejected { .. } => "upstream_rejected",
            ErrorKind::UpstreamFailed => "upstream_failed",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.label())
    }
}

impl std::error::Error for Error {}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status_code();
        // A provider's own 4xx body is passed through as it came (already in OpenAI's shape for OpenAI-kind
        // deployments, translated for Anthropic ones): clients rely on its exact code and message.
        let body = match self.kind {
            ErrorKind::UpstreamRejected { body, .. } if !body.is_empty() => body,
            _ => Bytes::from(self.to_json().to_string()),
        };
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_openai_shape() {
        let e = Error::model_not_found("gpt-9");
        let v = e.to_json();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(e.status_code(), StatusCode::NOT_FOUND);
        assert_eq!(e.fault(), Fault::Client);
    }

    #[test]
    fn upstream_faults_map_to_gateway_statuses() {
        assert_eq!(Error::upstream_failed("x").status_code(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            Error::upstream_timeout("x").status_code(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(Error::upstream_timeout("x").fault(), Fault::Upstream);
        let rejected = Error::new(
            ErrorKind::UpstreamRejected {
                status: 429,
                body: Bytes::new(),
            },
            "slow down",
        );
        assert_eq!(rejected.status_code(), StatusCode::TOO_MANY_REQUESTS);
    }
}
