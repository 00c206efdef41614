//! The `anthropic` provider kind: OpenAI Chat Completions ⇄ Anthropic Messages API.
//!
//! - [`chat_request_to_messages`] turns a chat completion request into a Messages request (`request.rs`).
//! - [`messages_response_to_chat`] turns a Messages response into a `chat.completion` (`response.rs`).
//! - [`StreamTranslator`] turns Messages SSE events into `chat.completion.chunk` frames (`stream.rs`).
//! - [`error_body_to_openai`] turns an Anthropic error body into OpenAI's error shape.
//! - [`messages_usage_from_json`] and [`MessagesStreamUsage`] read usage for the `/v1/messages` passthrough, where
//!   bodies reach the client unchanged but the ledger still needs the numbers.
//!
//! Anthropic reports `input_tokens` **excluding** cache reads and writes; everything here converts to the
//! normalised [`Usage`] (input includes cached) on the way in. See `crate::usage` for the definition.

mod request;
mod response;
mod stream;

pub use request::chat_request_to_messages;
pub use response::messages_response_to_chat;
pub use stream::StreamTranslator;

use serde_json::{Value, json};

use crate::sse::SseEvent;
use crate::usage::{Usage, as_count};

/// `max_tokens` sent when the client gave none: the Messages API requires it, and 4096 is the largest value every
/// current Claude model accepts while being ample for chat. Budget reservations should use the same number.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The longest upstream error message passed on to a client; longer ones are cut (on a char boundary).
const MAX_ERROR_MESSAGE_CHARS: usize = 2000;

/// Maps an Anthropic `stop_reason` to an OpenAI `finish_reason`.
///
/// `pause_turn` (a long server-tool turn paused for the client to resume) has no OpenAI equivalent; `stop` is the
/// closest, since the reply so far is complete and usable. Unknown future reasons also map to `stop`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, a missing reason and any future reason.
        _ => "stop",
    }
}

/// Normalised usage from an Anthropic `usage` object (`input_tokens` excludes the cache counts, so they are
/// added). `None` when it is not an object or reports no token field at all.
pub fn usage_from_anthropic_usage(usage: &Value) -> Option<Usage> {
    let mut acc = MessagesStreamUsage::new();
    acc.observe_usage(usage);
    acc.usage()
}

/// Normalised usage from a Messages API JSON response body; `None` when the body has no usage (estimate instead).
pub fn messages_usage_from_json(body: &Value) -> Option<Usage> {
    usage_from_anthropic_usage(body.get("usage")?)
}

/// Accumulates usage from a Messages SSE stream (`message_start` carries input and cache counts, `message_delta`
/// carries cumulative output and sometimes updated input counts). Feed it every event; ask for [`Self::usage`] at
/// the end, or at any point for a stream that was cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagesStreamUsage {
    uncached_input: u64,
    cache_read: u64,
    cache_write: u64,
    output: u64,
    reported: bool,
    stop_reason: Option<String>,
    saw_message_stop: bool,
}

impl MessagesStreamUsage {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one SSE frame; frames without JSON data are ignored.
    pub fn push(&mut self, ev: &SseEvent) {
        if let Some(v) = ev.json() {
            self.observe(&v);
        }
    }

    /// Feeds one already-parsed event (`{"type": ..., ...}`).
    pub fn observe(&mut self, event: &Value) {
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(u) = event.pointer("/message/usage") {
                    self.observe_usage(u);
                }
            }
            Some("message_delta") => {
                if let Some(u) = event.get("usage") {
                    self.observe_usage(u);
                }
                if let Some(r) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(r.to_owned());
                }
            }
            Some("message_stop") => self.saw_message_stop = true,
            _ => {}
        }
    }

    /// Folds in one Anthropic `usage` object. Anthropic's counts are cumulative, so each field keeps the largest
    /// value seen; a field a later event omits keeps its earlier value.
    fn observe_usage(&mut self, u: &Value) {
        if !u.is_object() {
            return;
        }
        let fields: [(&str, &mut u64); 4] = [
            ("input_tokens", &mut self.uncached_input),
            ("cache_read_input_tokens", &mut self.cache_read),
            ("cache_creation_input_tokens", &mut self.cache_write),
            ("output_tokens", &mut self.output),
        ];
        for (key, slot) in fields {
            if let Some(n) = u.get(key).and_then(as_count) {
                *slot = (*slot).max(n);
                self.reported = true;
            }
        }
    }

    /// Normalised usage so far; `None` when no event carried usage.
    pub fn usage(&self) -> Option<Usage> {
        self.reported.then(|| {
            Usage {
                input_tokens: self
                    .uncached_input
                    .saturating_add(self.cache_read)
                    .saturating_add(self.cache_write),
                output_tokens: self.output,
                cached_input_tokens: self.cache_read,
                cache_write_input_tokens: self.cache_write,
                reasoning_tokens: 0,
            }
            .clamped()
        })
    }

    /// The last `stop_reason` reported by a `message_delta`.
    pub fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }

    /// True once `message_stop` arrived: the stream completed normally.
    pub fn saw_message_stop(&self) -> bool {
        self.saw_message_stop
    }
}

/// Turns an Anthropic error response body into OpenAI's `{"error":{"message","type","param","code"}}`.
///
/// Only the body is read, and only its `error.type` and `error.message` are kept, so nothing else from the
/// upstream exchange (headers, credentials, request ids) can reach the client. A body that is not Anthropic's
/// error shape yields a generic message chosen by `status`.
pub fn error_body_to_openai(status: u16, body: &[u8]) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .filter(|e| e.is_object())
    {
        Some(err) => error_object_to_openai(err, Some(status)),
        None => error_object_to_openai(&json!({}), Some(status)),
    }
}

/// Turns Anthropic's inner error object (`{"type","message"}`, as in an error body or a stream `error` event) into
/// OpenAI's error shape. `status` picks the type when Anthropic's type is missing or unknown.
pub fn error_object_to_openai(err: &Value, status: Option<u16>) -> Value {
    let kind = err.get("type").and_then(Value::as_str).unwrap_or("");
    let (openai_type, code): (&str, Option<&str>) = match kind {
        "invalid_request_error" => ("invalid_request_error", None),
        "authentication_error" => ("authentication_error", Some("invalid_api_key")),
        "permission_error" => ("permission_error", None),
        "not_found_error" => ("invalid_request_error", Some("not_found")),
        "request_too_large" => ("invalid_request_error", Some("request_too_large")),
        "rate_limit_error" => ("rate_limit_error", Some("rate_limit_exceeded")),
        "billing_error" => ("insufficient_quota", Some("insufficient_quota")),
        "timeout_error" => ("server_error", Some("timeout")),
        "overloaded_error" => ("server_error", Some("overloaded")),
        "api_error" => ("server_error", None),
        _ => match status {
            Some(401) => ("authentication_error", None),
            Some(403) => ("permission_error", None),
            Some(404) => ("invalid_request_error", Some("not_found")),
            Some(429) => ("rate_limit_error", Some("rate_limit_exceeded")),
            Some(s) if (400..500).contains(&s) => ("invalid_request_error", None),
            _ => ("server_error", None),
        },
    };
    let message = match err.get("message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => truncate_chars(m, MAX_ERROR_MESSAGE_CHARS),
        _ => match status {
            Some(s) => format!("the upstream provider returned HTTP {s}"),
            None => "the upstream provider reported an error".to_owned(),
        },
    };
    json!({"error": {"message": message, "type": openai_type, "param": null, "code": code}})
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or(s)),
        None => s.to_owned(),
    }
}

/// Seconds since the Unix epoch for `created` fields; 0 if the clock is before 1970.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

/// Client headers forwarded to Anthropic (feature flags the client opted into).
const PASSTHROUGH_HEADERS: [&str; 1] = ["anthropic-beta"];

/// Builds the Messages API request for an Anthropic deployment (`base_url` ends in `/v1`).
pub fn build_request(
    deployment: &crate::config::Deployment,
    client_headers: &http::HeaderMap,
    body: bytes::Bytes,
) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, crate::error::Error> {
    let mut builder = super::post_builder(deployment, format!("{}/messages", deployment.base_url))
        .header("anthropic-version", deployment.anthropic_version.as_str());
    for name in PASSTHROUGH_HEADERS {
        if let Some(v) = client_headers.get(name) {
            builder = builder.header(name, v);
        }
    }
    super::with_body(builder, deployment, body)
}
