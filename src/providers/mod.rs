//! Provider adapters: translation between Switchyard's OpenAI-shaped wire format and each upstream API kind.
//!
//! Adapters are pure functions over bytes and JSON; they never perform I/O, so every mapping is table-tested.
//! `openai`-kind upstreams need no translation (the proxy passes bodies through); only providers with a different
//! wire format get a module here.

pub mod anthropic;
pub mod openai;

/// A POST to `uri` carrying what every provider request carries: JSON content type, Switchyard's user agent, the
/// deployment's credential header (marked sensitive, so it never reaches a debug print) and its configured extra
/// headers. Callers add their provider's own headers, then [`with_body`].
pub(crate) fn post_builder(deployment: &crate::config::Deployment, uri: String) -> http::request::Builder {
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("switchyard/", env!("CARGO_PKG_VERSION")),
        );
    if let Some((name, value)) = &deployment.credential {
        builder = builder.header(name, value);
    }
    for (name, value) in &deployment.headers {
        builder = builder.header(name, value);
    }
    builder
}

/// Finishes a request started by [`post_builder`].
pub(crate) fn with_body(
    builder: http::request::Builder,
    deployment: &crate::config::Deployment,
    body: bytes::Bytes,
) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, crate::error::Error> {
    builder.body(http_body_util::Full::new(body)).map_err(|_| {
        crate::error::Error::internal(format!(
            "cannot build the request to deployment {}",
            deployment.name
        ))
    })
}

use serde_json::{Value, json};

/// Why a translation failed, recording who is at fault (see `STYLE.md`, Errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The client asked for a feature the target provider cannot provide (e.g. `n > 1` on Anthropic). → 400.
    #[error("{message}")]
    Unsupported {
        /// The offending request parameter, as OpenAI's error `param` names it (e.g. `"n"`, `"messages[2].content"`).
        param: String,
        /// A human-readable explanation naming the provider.
        message: String,
    },
    /// The client's request is malformed in a way that prevents translation. → 400.
    #[error("{message}")]
    InvalidRequest {
        /// The offending request parameter, when one can be named.
        param: Option<String>,
        /// A human-readable explanation.
        message: String,
    },
    /// The upstream sent something that is not the documented shape (e.g. non-JSON stream data). → 502.
    #[error("malformed upstream response: {message}")]
    UpstreamMalformed {
        /// What was wrong; never contains upstream credentials (we never see them here).
        message: String,
    },
}

impl TranslateError {
    pub(crate) fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Unsupported {
            param: param.into(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            param: Some(param.into()),
            message: message.into(),
        }
    }

    pub(crate) fn upstream(message: impl Into<String>) -> Self {
        Self::UpstreamMalformed {
            message: message.into(),
        }
    }

    /// The HTTP status the proxy should answer with.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::Unsupported { .. } | Self::InvalidRequest { .. } => 400,
            Self::UpstreamMalformed { .. } => 502,
        }
    }

    /// True when the client is at fault (a 4xx), false when the upstream is.
    pub fn is_client_error(&self) -> bool {
        match self {
            Self::Unsupported { .. } | Self::InvalidRequest { .. } => true,
            Self::UpstreamMalformed { .. } => false,
        }
    }

    /// The request parameter at fault, for OpenAI's error `param` field.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::Unsupported { param, .. } => Some(param),
            Self::InvalidRequest { param, .. } => param.as_deref(),
            Self::UpstreamMalformed { .. } => None,
        }
    }

    /// The error as an OpenAI error body: `{"error":{"message","type","param","code"}}`.
    pub fn to_openai_error(&self) -> Value {
        let (kind, code) = match self {
            Self::Unsupported { .. } => ("invalid_request_error", "unsupported_parameter"),
            Self::InvalidRequest { .. } => ("invalid_request_error", "invalid_request"),
            Self::UpstreamMalformed { .. } => ("upstream_error", "bad_upstream_response"),
        };
        json!({"error": {"message": self.to_string(), "type": kind, "param": self.param(), "code": code}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_openai_shape() {
        let e = TranslateError::unsupported("n", "Anthropic models return one choice; n must be 1");
        assert_eq!(e.status_code(), 400);
        assert!(e.is_client_error());
        assert_eq!(
            e.to_openai_error(),
            json!({"error":{"message":"Anthropic models return one choice; n must be 1",
                "type":"invalid_request_error","param":"n","code":"unsupported_parameter"}})
        );
        let e = TranslateError::upstream("data is not JSON");
        assert_eq!(e.status_code(), 502);
        assert_eq!(e.to_openai_error()["error"]["param"], Value::Null);
    }
}
