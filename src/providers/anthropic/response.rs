//! Anthropic Messages response → OpenAI `chat.completion`.

use serde_json::{Map, Value, json};

use super::{finish_reason, messages_usage_from_json, unix_now};
use crate::providers::TranslateError;
use crate::usage::Usage;

/// Translates a (non-streaming) Messages API response into an OpenAI `chat.completion` object.
///
/// `model` is the name the client should see (the catalogue name), not necessarily Anthropic's model id.
///
/// - The id is `chatcmpl-` + Anthropic's message id, so a support ticket can be traced to Anthropic's logs.
/// - Text blocks are concatenated into `message.content`; `content` is `null` when the reply is only tool calls.
/// - `tool_use` blocks become `tool_calls` with `arguments` as a JSON string.
/// - `thinking` blocks become `message.reasoning_content` (the field DeepSeek, vLLM and LiteLLM use); OpenAI SDKs
///   ignore it, reasoning-aware clients show it. `redacted_thinking` and server-tool blocks are dropped.
/// - `usage` follows OpenAI's meaning: `prompt_tokens` includes cache reads and writes, and
///   `prompt_tokens_details.cached_tokens` is the cache reads. The normalised [`Usage`] for the ledger comes from
///   [`messages_usage_from_json`] on the same body.
pub fn messages_response_to_chat(resp: &Value, model: &str) -> Result<Value, TranslateError> {
    let obj = resp
        .as_object()
        .ok_or_else(|| TranslateError::upstream("Messages response is not an object"))?;
    if obj.get("type").and_then(Value::as_str) == Some("error") {
        return Err(TranslateError::upstream("Messages response is an error body"));
    }
    let content = obj
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::upstream("Messages response has no `content` array"))?;

    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""))
            }
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(json!({
                    "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {
                        "name": block.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": input.to_string(),
                    }
                }));
            }
            _ => {}
        }
    }

    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content_value = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        json!(text)
    };
    message.insert("content".into(), content_value);
    message.insert("refusal".into(), Value::Null);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), json!(reasoning));
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }

    let stop_reason = obj.get("stop_reason").and_then(Value::as_str);
    let id = obj.get("id").and_then(Value::as_str).unwrap_or("unknown");
    let mut out = json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": Value::Object(message),
            "logprobs": null,
            "finish_reason": finish_reason(stop_reason),
        }],
    });
    if let (Some(usage), Some(o)) = (messages_usage_from_json(resp), out.as_object_mut()) {
        o.insert("usage".into(), openai_usage(&usage));
    }
    Ok(out)
}

/// The OpenAI `usage` object for a normalised [`Usage`]. Anthropic does not report thinking tokens separately, so
/// `reasoning_tokens` is whatever the normalised usage says (zero for Anthropic).
pub(super) fn openai_usage(u: &Usage) -> Value {
    u.to_openai_json()
}
