//! Token counts for when a provider does not report usage (some streams, some local servers, a stream cut off
//! before its usage chunk). The row is then marked `estimated`.
//!
//! OpenAI models use their own tokenizer (tiktoken: o200k or cl100k). Other models (Claude, Llama, …) use
//! o200k as an approximation — their tokenizers are not public or not bundled — which is close for English and
//! code; the `estimated` flag tells finance which rows these are.
//!
//! Encoding is CPU work (about a microsecond per token); callers counting long texts on the request path should
//! do it in `spawn_blocking`. [`warm`] loads the tables (a few hundred milliseconds) at start-up.

use serde_json::Value;
use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

use crate::usage::Usage;

/// Tokens OpenAI adds per chat message (role and separators), and to prime the reply; from OpenAI's cookbook
/// "How to count tokens with tiktoken" for current chat models.
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

fn bpe_for(model: &str) -> &'static CoreBPE {
    match get_tokenizer(model) {
        Some(Tokenizer::Cl100kBase) => tiktoken_rs::cl100k_base_singleton(),
        Some(Tokenizer::P50kBase) => tiktoken_rs::p50k_base_singleton(),
        Some(Tokenizer::R50kBase | Tokenizer::Gpt2) => tiktoken_rs::r50k_base_singleton(),
        Some(Tokenizer::P50kEdit) => tiktoken_rs::p50k_edit_singleton(),
        Some(Tokenizer::O200kHarmony) => tiktoken_rs::o200k_harmony_singleton(),
        Some(Tokenizer::O200kBase) | None => tiktoken_rs::o200k_base_singleton(),
    }
}

/// Tokens in a plain text for `model`.
pub fn count_text(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    bpe_for(model).encode_ordinary(text).len() as u64
}

/// Every string inside a JSON value, concatenated with spaces (message content parts, tool arguments, …).
fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                // Image payloads are priced by the provider per image, not per base64 character.
                if k == "image_url" || k == "source" || k == "input_audio" {
                    continue;
                }
                collect_text(v, out);
            }
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push(' ');
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Input tokens of an OpenAI chat request (`messages`, `tools`), an Anthropic messages request (`system`,
/// `messages`, `tools`) or a completions request (`prompt`).
pub fn estimate_input(model: &str, request: &Value) -> u64 {
    let mut tokens = 0;
    let mut text = String::new();
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        for m in messages {
            tokens += PER_MESSAGE;
            text.clear();
            collect_text(m, &mut text);
            tokens += count_text(model, text.trim_end());
        }
        tokens += REPLY_PRIMING;
    }
    for field in ["system", "tools", "prompt", "input"] {
        if let Some(v) = request.get(field) {
            text.clear();
            collect_text(v, &mut text);
            tokens += count_text(model, text.trim_end());
        }
    }
    tokens
}

/// Usage for a response the provider did not count: the request's input tokens and the generated text so far.
pub fn estimate_usage(model: &str, request: &Value, generated: &str) -> Usage {
    Usage {
        input_tokens: estimate_input(model, request),
        output_tokens: count_text(model, generated),
        ..Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_known_strings() {
        // "hello world" is two tokens in both o200k and cl100k.
        assert_eq!(count_text("gpt-4o", "hello world"), 2);
        assert_eq!(count_text("gpt-4", "hello world"), 2);
        assert_eq!(count_text("claude-sonnet-4", ""), 0);
    }

    #[test]
    fn chat_requests_count_message_overhead() {
        let req = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "hello world"}]}
        ]});
        let n = estimate_input("gpt-4o", &req);
        // Two messages × 3 + priming 3 + content tokens (role names count too).
        assert!(n > 9 && n < 25, "{n}");
        let usage = estimate_usage("gpt-4o", &req, "hello world");
        assert_eq!(usage.output_tokens, 2);
        assert_eq!(usage.input_tokens, n);
    }
}
