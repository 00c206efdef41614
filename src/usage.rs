//! Token usage as upstreams report it, normalised to one meaning so cost arithmetic is the same for every provider.
//!
//! # The normalised meaning
//!
//! Providers disagree on what "input tokens" means:
//!
//! - OpenAI's `prompt_tokens` **includes** the cached tokens reported in `prompt_tokens_details.cached_tokens`.
//! - Anthropic's `input_tokens` **excludes** `cache_read_input_tokens` and `cache_creation_input_tokens`.
//!
//! [`Usage`] follows OpenAI's convention because it is the wire format Switchyard speaks:
//!
//! - `input_tokens` is **every** input token, cached or not, written to the cache or not.
//! - `cached_input_tokens` and `cache_write_input_tokens` are disjoint **subsets** of `input_tokens`.
//! - `output_tokens` is every output token, including reasoning/thinking tokens.
//! - `reasoning_tokens` is a **subset** of `output_tokens` (informational: providers bill it as output).
//!
//! So cost is `uncached_input × input price + cached × cached price + cache_write × cache-write price + output ×
//! output price`, with [`Usage::uncached_input_tokens`] giving the first term. Anthropic's numbers are converted on
//! the way in (`crate::providers::anthropic::messages_usage_from_json`).
//!
//! # Estimated usage
//!
//! `Usage` holds only what a provider **reported**. Parsers return `Option<Usage>`: `None` means the provider
//! omitted usage, and the caller (the ledger) counts tokens locally and flags its row `estimated`. Keeping the flag
//! on the ledger side means a `Usage` value never silently mixes reported and guessed numbers.
//!
//! # Streams
//!
//! Every stream usage report seen in practice is **cumulative** (OpenAI's final chunk, vLLM's per-chunk
//! `continuous_usage_stats`, Anthropic's `message_start`/`message_delta`), so [`Usage::absorb`] keeps the field-wise
//! maximum rather than adding. Use `+`/`+=` only to total *separate* requests.

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::sse::SseEvent;

/// Normalised token usage of one request. See the module docs for the exact meaning of each field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// All input tokens, including those read from or written to a prompt cache.
    pub input_tokens: u64,
    /// All output tokens, including reasoning tokens.
    pub output_tokens: u64,
    /// The part of `input_tokens` served from a prompt cache (billed at the cached-input price).
    pub cached_input_tokens: u64,
    /// The part of `input_tokens` written to a prompt cache (Anthropic bills these above the input price).
    pub cache_write_input_tokens: u64,
    /// The part of `output_tokens` spent on hidden reasoning, where the provider reports it.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Input tokens billed at the plain input price: everything not read from or written to a cache.
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_write_input_tokens)
    }

    /// `input_tokens + output_tokens`.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// True when nothing was reported at all.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// Folds in a **cumulative** report from the same request (a later stream chunk): the field-wise maximum, so a
    /// repeated or partial report never double-counts and never lowers what was already seen.
    pub fn absorb(&mut self, later: Usage) {
        self.input_tokens = self.input_tokens.max(later.input_tokens);
        self.output_tokens = self.output_tokens.max(later.output_tokens);
        self.cached_input_tokens = self.cached_input_tokens.max(later.cached_input_tokens);
        self.cache_write_input_tokens = self.cache_write_input_tokens.max(later.cache_write_input_tokens);
        self.reasoning_tokens = self.reasoning_tokens.max(later.reasoning_tokens);
    }

    /// Reads an OpenAI `usage` object (chat completions, legacy completions, embeddings).
    ///
    /// Returns `None` when `usage` is not an object or has neither `prompt_tokens` nor `completion_tokens`.
    /// DeepSeek-style `prompt_cache_hit_tokens` is accepted when `prompt_tokens_details.cached_tokens` is absent.
    pub fn from_openai_usage(usage: &Value) -> Option<Usage> {
        let obj = usage.as_object()?;
        if !obj.contains_key("prompt_tokens") && !obj.contains_key("completion_tokens") {
            return None;
        }
        let cached = usage
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(as_count)
            .or_else(|| usage.get("prompt_cache_hit_tokens").and_then(as_count))
            .unwrap_or(0);
        let u = Usage {
            input_tokens: count(usage, "prompt_tokens"),
            output_tokens: count(usage, "completion_tokens"),
            cached_input_tokens: cached,
            cache_write_input_tokens: 0,
            reasoning_tokens: usage
                .pointer("/completion_tokens_details/reasoning_tokens")
                .and_then(as_count)
                .unwrap_or(0),
        };
        Some(u.clamped())
    }

    /// Reads `usage` from an OpenAI JSON response body (chat completion, completion or embeddings).
    pub fn from_openai_json(body: &Value) -> Option<Usage> {
        Self::from_openai_usage(body.get("usage")?)
    }

    /// Reads `usage` from one parsed OpenAI stream chunk; `None` for the many chunks that carry none (or `null`).
    pub fn from_openai_chunk(chunk: &Value) -> Option<Usage> {
        Self::from_openai_json(chunk)
    }

    /// This usage as an OpenAI `usage` object, the inverse of [`Usage::from_openai_usage`].
    pub fn to_openai_json(&self) -> Value {
        json!({
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens(),
            "prompt_tokens_details": { "cached_tokens": self.cached_input_tokens },
            "completion_tokens_details": { "reasoning_tokens": self.reasoning_tokens },
        })
    }

    /// Keeps the subset invariants true even when an upstream reports inconsistent numbers, so cost arithmetic
    /// never sees a cached count larger than the input it is part of.
    pub(crate) fn clamped(mut self) -> Usage {
        self.cached_input_tokens = self.cached_input_tokens.min(self.input_tokens);
        self.cache_write_input_tokens = self
            .cache_write_input_tokens
            .min(self.input_tokens - self.cached_input_tokens);
        self.reasoning_tokens = self.reasoning_tokens.min(self.output_tokens);
        self
    }
}

impl std::ops::Add for Usage {
    type Output = Usage;

    /// Totals two **separate** requests (saturating). Not for stream chunks: see [`Usage::absorb`].
    fn add(self, o: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(o.input_tokens),
            output_tokens: self.output_tokens.saturating_add(o.output_tokens),
            cached_input_tokens: self.cached_input_tokens.saturating_add(o.cached_input_tokens),
            cache_write_input_tokens: self
                .cache_write_input_tokens
                .saturating_add(o.cache_write_input_tokens),
            reasoning_tokens: self.reasoning_tokens.saturating_add(o.reasoning_tokens),
        }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        *self = *self + o;
    }
}

/// True for the extra chunk OpenAI sends when `stream_options.include_usage` is set: `choices` empty and a
/// non-null `usage`. The proxy asks for it to charge streams exactly and drops it again when the client did not.
pub fn is_usage_only_chunk(chunk: &Value) -> bool {
    let choices_empty = chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    let has_usage = chunk.get("usage").is_some_and(Value::is_object);
    choices_empty && has_usage
}

/// The client's `stream_options.include_usage` (false when absent); pass it to `StreamTranslator::new` or
/// [`OpenAiStreamUsage::new`].
pub fn wants_stream_usage(req: &serde_json::Map<String, Value>) -> bool {
    req.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Makes a streaming OpenAI request ask for usage in its final chunk, and reports whether the client itself asked.
///
/// For `stream: true` requests this sets `stream_options.include_usage = true` (keeping any other
/// `stream_options`) and returns the client's original `include_usage`; pass that to [`OpenAiStreamUsage::new`] so
/// the extra chunk is removed again for clients that did not ask. Non-streaming requests are left untouched and
/// return `false`.
pub fn request_stream_usage(req: &mut serde_json::Map<String, Value>) -> bool {
    if req.get("stream").and_then(Value::as_bool) != Some(true) {
        return false;
    }
    let client_asked = wants_stream_usage(req);
    let opts = req.entry("stream_options").or_insert_with(|| json!({}));
    if !opts.is_object() {
        *opts = json!({});
    }
    if let Some(o) = opts.as_object_mut() {
        o.insert("include_usage".into(), Value::Bool(true));
    }
    client_asked
}

/// Watches an OpenAI-compatible SSE stream that is passed through to the client: collects usage, tells the caller
/// which frames to forward, and keeps the generated text so a stream cut before its usage chunk can be estimated.
///
/// Only frames that can carry usage (their data contains `"usage"` followed by an object) are parsed as full JSON;
/// text capture uses a small typed parse. Frames are never rewritten: forwarding `ev.raw` keeps them byte-exact.
/// (When Switchyard added `include_usage`, upstream chunks also carry `"usage": null`; OpenAI SDKs accept that, and
/// stripping it would mean re-serialising every frame.)
#[derive(Debug, Clone, Default)]
pub struct OpenAiStreamUsage {
    client_wants_usage: bool,
    capture_text: bool,
    usage: Option<Usage>,
    saw_done: bool,
    saw_finish: bool,
    generated: String,
}

impl OpenAiStreamUsage {
    /// `client_wants_usage` is what [`request_stream_usage`] returned: when false, usage-only chunks are dropped.
    pub fn new(client_wants_usage: bool) -> Self {
        Self {
            client_wants_usage,
            capture_text: true,
            ..Self::default()
        }
    }

    /// Turns text capture off (for callers that never estimate; saves a parse per frame).
    pub fn without_text_capture(mut self) -> Self {
        self.capture_text = false;
        self
    }

    /// Inspects one frame and returns `true` when it should be forwarded to the client (`ev.raw`), `false` for the
    /// usage-only chunk the client did not ask for. Comments, non-JSON data and `[DONE]` are forwarded.
    pub fn observe(&mut self, ev: &SseEvent) -> bool {
        let Some(data) = ev.data.as_deref() else {
            return true;
        };
        if ev.is_done() {
            self.saw_done = true;
            return true;
        }
        if self.capture_text {
            if let Ok(chunk) = serde_json::from_str::<LiteChunk>(data) {
                for c in chunk.choices {
                    self.saw_finish |= c.finish_reason.is_some();
                    let d = c.delta.unwrap_or_default();
                    for Text(t) in [c.text, d.content, d.reasoning_content].into_iter().flatten() {
                        self.generated.push_str(&t);
                    }
                    for call in d.tool_calls.unwrap_or_default() {
                        let f = call.function.unwrap_or_default();
                        for Text(t) in [f.name, f.arguments].into_iter().flatten() {
                            self.generated.push_str(&t);
                        }
                    }
                }
            }
        } else if memmem::find(data.as_bytes(), b"\"finish_reason\":\"").is_some() {
            self.saw_finish = true;
        }
        if !may_carry_usage(data) {
            return true;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return true;
        };
        if let Some(u) = Usage::from_openai_chunk(&v) {
            self.usage.get_or_insert_with(Usage::default).absorb(u);
        }
        self.client_wants_usage || !is_usage_only_chunk(&v)
    }

    /// Usage reported so far; `None` when the stream carried none (estimate from [`Self::generated_text`]).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// True once `data: [DONE]` was seen: the upstream finished normally.
    pub fn saw_done(&self) -> bool {
        self.saw_done
    }

    /// True once any choice reported a `finish_reason`.
    pub fn saw_finish(&self) -> bool {
        self.saw_finish
    }

    /// Content, reasoning and tool-call text generated so far (empty when capture is off).
    pub fn generated_text(&self) -> &str {
        &self.generated
    }
}

/// Cheap pre-check before a full JSON parse: does `"usage"` appear followed by `{`?
fn may_carry_usage(data: &str) -> bool {
    static USAGE: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("\"usage\""));
    let mut rest = data;
    while let Some(i) = USAGE.find(rest.as_bytes()) {
        rest = rest.get(i + 7..).unwrap_or("");
        let after = rest.trim_start();
        if let Some(after) = after.strip_prefix(':')
            && after.trim_start().starts_with('{')
        {
            return true;
        }
    }
    false
}

/// A string borrowed from the frame when it has no escapes (serde borrows a `Cow` only as a direct field, not
/// inside an `Option`).
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Just the fields of a chunk that text capture reads; serde skips the rest. Strings without escapes are
/// borrowed from the frame, so capture allocates nothing per frame but the text it keeps.
#[derive(Deserialize, Default)]
struct LiteChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<LiteChoice<'a>>,
}

#[derive(Deserialize, Default)]
struct LiteChoice<'a> {
    #[serde(borrow)]
    delta: Option<LiteDelta<'a>>,
    /// Legacy completions stream `text` instead of a delta.
    #[serde(borrow)]
    text: Option<Text<'a>>,
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct LiteDelta<'a> {
    #[serde(borrow)]
    content: Option<Text<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<Text<'a>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<LiteToolCall<'a>>>,
}

#[derive(Deserialize, Default)]
struct LiteToolCall<'a> {
    #[serde(borrow)]
    function: Option<LiteFunction<'a>>,
}

#[derive(Deserialize, Default)]
struct LiteFunction<'a> {
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    arguments: Option<Text<'a>>,
}

/// A token count field: a non-negative integer, or a non-negative finite float (some OpenAI-compatible servers
/// send `12.0`). Anything else is treated as absent.
pub(crate) fn as_count(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // The range check excludes NaN, infinities, negatives and values beyond u64, so the cast is exact enough.
    (0.0..1.8e19).contains(&f).then_some(f as u64)
}

pub(crate) fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(as_count).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_chat_usage_with_details() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion",
            "usage": {
                "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
                "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0}
            }
        });
        let u = Usage::from_openai_json(&body).unwrap();
        assert_eq!(
            u,
            Usage {
                input_tokens: 1200,
                output_tokens: 300,
                cached_input_tokens: 1024,
                cache_write_input_tokens: 0,
                reasoning_tokens: 256
            }
        );
        assert_eq!(u.uncached_input_tokens(), 176);
        assert_eq!(u.total_tokens(), 1500);
    }

    #[test]
    fn openai_parse_table() {
        let cases: Vec<(Value, Option<Usage>)> = vec![
            // Embeddings report only prompt tokens.
            (
                json!({"object":"list","usage":{"prompt_tokens":8,"total_tokens":8}}),
                Some(Usage {
                    input_tokens: 8,
                    ..Usage::default()
                }),
            ),
            // Legacy completions.
            (
                json!({"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}),
                Some(Usage {
                    input_tokens: 5,
                    output_tokens: 7,
                    ..Usage::default()
                }),
            ),
            // DeepSeek's cache-hit field.
            (
                json!({"usage":{"prompt_tokens":100,"completion_tokens":1,"prompt_cache_hit_tokens":64}}),
                Some(Usage {
                    input_tokens: 100,
                    output_tokens: 1,
                    cached_input_tokens: 64,
                    ..Usage::default()
                }),
            ),
            // Float counts from some local servers.
            (
                json!({"usage":{"prompt_tokens":3.0,"completion_tokens":4}}),
                Some(Usage {
                    input_tokens: 3,
                    output_tokens: 4,
                    ..Usage::default()
                }),
            ),
            // Inconsistent upstream numbers are clamped to keep the subset invariants.
            (
                json!({"usage":{"prompt_tokens":10,"completion_tokens":2,
                    "prompt_tokens_details":{"cached_tokens":50},
                    "completion_tokens_details":{"reasoning_tokens":9}}}),
                Some(Usage {
                    input_tokens: 10,
                    output_tokens: 2,
                    cached_input_tokens: 10,
                    reasoning_tokens: 2,
                    ..Usage::default()
                }),
            ),
            (json!({"usage": null}), None),
            (json!({"usage": {}}), None),
            (json!({"usage": "12"}), None),
            (json!({"choices": []}), None),
            (json!([1, 2]), None),
            (
                json!({"usage":{"prompt_tokens":-5,"completion_tokens":"x"}}),
                Some(Usage::default()),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(Usage::from_openai_json(&body), want, "{body}");
        }
    }

    #[test]
    fn stream_chunks_and_usage_only_detection() {
        let content = json!({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null});
        let final_chunk = json!({"id":"c","object":"chat.completion.chunk","choices":[],
            "usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}});
        assert_eq!(Usage::from_openai_chunk(&content), None);
        assert!(!is_usage_only_chunk(&content));
        assert!(is_usage_only_chunk(&final_chunk));
        assert_eq!(
            Usage::from_openai_chunk(&final_chunk),
            Some(Usage {
                input_tokens: 9,
                output_tokens: 2,
                ..Usage::default()
            })
        );
        assert!(!is_usage_only_chunk(&json!({"choices":[],"usage":null})));
        assert!(!is_usage_only_chunk(&json!({"usage":{"prompt_tokens":1}})));
        assert!(!is_usage_only_chunk(&json!("garbage")));
    }

    #[test]
    fn absorb_takes_cumulative_maximum_and_add_totals() {
        let mut u = Usage {
            input_tokens: 10,
            output_tokens: 1,
            ..Usage::default()
        };
        u.absorb(Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        });
        u.absorb(Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        });
        u.absorb(Usage {
            output_tokens: 3,
            ..Usage::default()
        });
        assert_eq!(
            u,
            Usage {
                input_tokens: 10,
                output_tokens: 5,
                ..Usage::default()
            }
        );
        let total = u + Usage {
            input_tokens: u64::MAX,
            ..Usage::default()
        };
        assert_eq!(total.input_tokens, u64::MAX);
        let mut t = Usage::default();
        t += u;
        t += u;
        assert_eq!(t.output_tokens, 10);
    }

    #[test]
    fn request_stream_usage_table() {
        let cases = vec![
            (
                json!({"stream": true}),
                false,
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            ),
            (
                json!({"stream": true, "stream_options": {"include_usage": true}}),
                true,
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            ),
            (
                json!({"stream": true, "stream_options": {"include_usage": false, "x": 1}}),
                false,
                json!({"stream": true, "stream_options": {"include_usage": true, "x": 1}}),
            ),
            (
                json!({"stream": true, "stream_options": null}),
                false,
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            ),
            (json!({"stream": false}), false, json!({"stream": false})),
            (json!({}), false, json!({})),
        ];
        for (req, asked, want) in cases {
            let mut m = req.as_object().unwrap().clone();
            assert_eq!(request_stream_usage(&mut m), asked, "{req}");
            assert_eq!(Value::Object(m), want, "{req}");
        }
    }

    fn openai_stream() -> Vec<u8> {
        let frames = [
            json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}),
            json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel\n\"lo\""},"finish_reason":null}],"usage":null}),
            json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":null}],"usage":null}),
            json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}),
            json!({"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":3,"total_tokens":23,"prompt_tokens_details":{"cached_tokens":0}}}),
        ];
        let mut out: Vec<u8> = b": OPENROUTER PROCESSING\n\n".to_vec();
        for f in frames {
            out.extend_from_slice(&crate::sse::encode_json(&f));
        }
        out.extend_from_slice(crate::sse::DONE_FRAME);
        out
    }

    fn pass_through(bytes: &[u8], client_wants: bool, capture: bool) -> (Vec<u8>, OpenAiStreamUsage) {
        let mut p = crate::sse::SseParser::new();
        let mut obs = OpenAiStreamUsage::new(client_wants);
        if !capture {
            obs = obs.without_text_capture();
        }
        let mut forwarded = Vec::new();
        for ev in p.push(bytes).unwrap().into_iter().chain(p.finish().unwrap()) {
            if obs.observe(&ev) {
                forwarded.extend_from_slice(&ev.raw);
            }
        }
        (forwarded, obs)
    }

    #[test]
    fn openai_stream_passthrough_keeps_or_drops_the_usage_chunk() {
        let bytes = openai_stream();
        let (fwd, obs) = pass_through(&bytes, true, true);
        assert_eq!(fwd, bytes, "client asked: byte-for-byte identical");
        assert_eq!(
            obs.usage(),
            Some(Usage {
                input_tokens: 20,
                output_tokens: 3,
                ..Usage::default()
            })
        );
        assert!(obs.saw_done() && obs.saw_finish());
        assert_eq!(
            obs.generated_text(),
            "Hel\n\"lo\"f{}",
            "escaped strings are captured unescaped"
        );

        let (fwd, obs) = pass_through(&bytes, false, false);
        assert_eq!(
            obs.usage().map(|u| u.total_tokens()),
            Some(23),
            "usage still collected"
        );
        assert!(obs.saw_finish());
        assert_eq!(obs.generated_text(), "");
        let text = String::from_utf8(fwd).unwrap();
        assert!(!text.contains("prompt_tokens"), "usage-only chunk dropped");
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert!(text.starts_with(": OPENROUTER PROCESSING\n\n"));
    }

    #[test]
    fn openai_stream_cut_before_usage() {
        let bytes = openai_stream();
        let cut = &bytes[..bytes.len() / 2];
        let (fwd, obs) = pass_through(cut, false, true);
        assert_eq!(fwd, cut, "everything received is forwarded");
        assert_eq!(obs.usage(), None);
        assert!(!obs.saw_done());
        assert!(obs.generated_text().starts_with("Hel"));

        // `"finish_reason": null` is not a finish.
        let head = &bytes[..bytes.windows(6).position(|w| w == b"call_1").unwrap()];
        let (_, obs) = pass_through(head, false, true);
        assert!(!obs.saw_finish());
    }

    #[test]
    fn fixtures() {
        let chat: Value =
            serde_json::from_slice(include_bytes!("../tests/fixtures/openai/chat_completion.json")).unwrap();
        assert_eq!(
            Usage::from_openai_json(&chat),
            Some(Usage {
                input_tokens: 1117,
                output_tokens: 46,
                ..Usage::default()
            })
        );
        let emb: Value =
            serde_json::from_slice(include_bytes!("../tests/fixtures/openai/embeddings.json")).unwrap();
        assert_eq!(
            Usage::from_openai_json(&emb),
            Some(Usage {
                input_tokens: 8,
                ..Usage::default()
            })
        );

        let stream = include_bytes!("../tests/fixtures/openai/chat_stream_usage.sse");
        let (fwd, obs) = pass_through(stream, false, true);
        assert_eq!(
            obs.usage(),
            Some(Usage {
                input_tokens: 1180,
                output_tokens: 3,
                cached_input_tokens: 1024,
                ..Usage::default()
            })
        );
        assert_eq!(obs.generated_text(), "Hello!");
        assert!(fwd.len() < stream.len());
        assert!(!String::from_utf8(fwd).unwrap().contains("\"choices\":[]"));
        let (fwd, _) = pass_through(stream, true, false);
        assert_eq!(fwd, stream.to_vec());
    }

    #[test]
    fn usage_precheck() {
        assert!(may_carry_usage(r#"{"usage" : {"a":1}}"#));
        assert!(may_carry_usage(r#"{"x":"usage","usage":{}}"#));
        assert!(!may_carry_usage(r#"{"usage":null}"#));
        assert!(!may_carry_usage(r#"{"content":"\"usage\""}"#));
        assert!(!may_carry_usage("usage"));
    }

    #[test]
    fn openai_json_round_trip() {
        let u = Usage {
            input_tokens: 100,
            output_tokens: 20,
            cached_input_tokens: 30,
            cache_write_input_tokens: 0,
            reasoning_tokens: 5,
        };
        let v = u.to_openai_json();
        assert_eq!(v["total_tokens"], json!(120));
        assert_eq!(Usage::from_openai_usage(&v), Some(u));
        assert!(Usage::default().is_zero());
    }
}
