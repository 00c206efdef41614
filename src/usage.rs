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

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
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

    /// Reads an OpenAI `usage` object (chat completions, legacy completions, embeddings) from a parsed tree, for
    /// tests; the proxy reads bytes ([`openai_body_usage`], [`OpenAiStreamUsage`]) with the same parser.
    ///
    /// Returns `None` when `usage` is not an object or has neither `prompt_tokens` nor `completion_tokens` (a
    /// `null` count is no count). DeepSeek-style `prompt_cache_hit_tokens` is accepted when
    /// `prompt_tokens_details.cached_tokens` is absent.
    #[cfg(test)]
    pub(crate) fn from_openai_usage(usage: &Value) -> Option<Usage> {
        Lenient::<OpenAiUsage>::deserialize(usage).ok()?.0?.usage()
    }

    /// Reads `usage` from a parsed OpenAI response body or stream chunk, for tests (see
    /// [`Usage::from_openai_usage`]); `None` for the many chunks that carry none (or `null`).
    #[cfg(test)]
    pub(crate) fn from_openai_json(body: &Value) -> Option<Usage> {
        Self::from_openai_usage(body.get("usage")?)
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
/// non-null `usage`. The proxy asks for it to charge streams exactly and drops it again when the client did not
/// ([`OpenAiStreamUsage::observe`] decides with the same parser); this reads a parsed chunk, for tests.
#[cfg(test)]
pub(crate) fn is_usage_only_chunk(chunk: &Value) -> bool {
    UsageChunk::deserialize(chunk).is_ok_and(|c| c.is_usage_only())
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
/// text capture and the finish check find their keys in the frame's text ([`object_keys`]) and parse only the values.
/// Frames are never rewritten: forwarding `ev.raw` keeps them byte-exact.
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

    /// Turns text capture off (for callers that never estimate; saves the key search per frame).
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
        // One pass over the frame's keys: text capture, the finish check and the usage pre-check. A typed parse
        // of every frame cost about 4,500 instructions, most of it skipping the fields around these.
        let mut may_carry_usage = false;
        for (key, value) in object_keys(data) {
            match key {
                // Generated text: a delta's `content`, `reasoning_content` and `refusal`, a legacy completion's
                // `text` (and OpenRouter's reasoning details'), a tool call's `name` and `arguments`. A key of
                // another object with the same name adds at most its string to an estimate (`logprobs.content`
                // is an array and adds nothing).
                "content" | "reasoning_content" | "refusal" | "text" | "name" | "arguments"
                    if self.capture_text =>
                {
                    append_string(value, &mut self.generated);
                }
                "finish_reason" => self.saw_finish |= !value.starts_with("null"),
                "usage" => may_carry_usage |= value.starts_with('{'),
                _ => {}
            }
        }
        if !may_carry_usage {
            return true;
        }
        let Ok(chunk) = serde_json::from_str::<UsageChunk>(data) else {
            return true;
        };
        if let Some(u) = chunk
            .usage
            .as_ref()
            .and_then(|u| u.0.as_ref())
            .and_then(OpenAiUsage::usage)
        {
            self.usage.get_or_insert_with(Usage::default).absorb(u);
        }
        self.client_wants_usage || !chunk.is_usage_only()
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

/// Every object key in `data` (a JSON text, possibly cut short) with the text that follows its colon, in order,
/// for keys without escapes. Finds the colons and looks back for a quoted name: inside a string every quote is
/// escaped, so a colon there is preceded by no quote, or by an escaped one whose name then starts or ends with a
/// backslash; a key of no interest to the caller either way.
fn object_keys(data: &str) -> impl Iterator<Item = (&str, &str)> {
    let bytes = data.as_bytes();
    memchr::memchr_iter(b':', bytes).filter_map(move |colon| {
        let head = bytes[..colon].trim_ascii_end();
        let close = head.len().checked_sub(1).filter(|&i| head[i] == b'"')?;
        let open = memchr::memrchr(b'"', &head[..close])?;
        if open > 0 && head[open - 1] == b'\\' {
            return None;
        }
        // Quotes and colons are ASCII, so both slices start and end on character boundaries.
        Some((data.get(open + 1..close)?, data.get(colon + 1..)?.trim_start()))
    })
}

/// Appends the JSON string at the start of `json` to `out`, unescaped; any other value (null, an array, …) or
/// malformed text appends nothing.
fn append_string(json: &str, out: &mut String) {
    struct Append<'o>(&'o mut String);

    impl serde::de::Visitor<'_> for Append<'_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
            self.0.push_str(text);
            Ok(())
        }
    }

    if json.starts_with('"') {
        let mut de = serde_json::Deserializer::from_str(json);
        // An unterminated string appends nothing: serde_json reports it before visiting.
        let _ = serde::Deserializer::deserialize_str(&mut de, Append(out));
    }
}

/// Reads `usage` off an OpenAI response body (chat completion, completion or embeddings) without building a tree
/// of it: serde skips everything else and reads the usage fields straight into counts.
pub fn openai_body_usage(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct Body {
        usage: Option<Lenient<OpenAiUsage>>,
    }
    serde_json::from_slice::<Body>(body).ok()?.usage?.0?.usage()
}

/// An OpenAI `usage` object as providers send it. Every field is lenient, because OpenAI-compatible servers
/// differ: a count that is not a non-negative number ([`Count`]) and details that are not an object ([`Lenient`])
/// read as absent instead of failing the parse.
#[derive(Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<Count>,
    completion_tokens: Option<Count>,
    /// DeepSeek's cached input, when `prompt_tokens_details.cached_tokens` is absent.
    prompt_cache_hit_tokens: Option<Count>,
    prompt_tokens_details: Option<Lenient<TokenDetails>>,
    completion_tokens_details: Option<Lenient<TokenDetails>>,
}

#[derive(Deserialize)]
struct TokenDetails {
    cached_tokens: Option<Count>,
    reasoning_tokens: Option<Count>,
}

impl OpenAiUsage {
    /// `None` when neither the input nor the output count is there.
    fn usage(&self) -> Option<Usage> {
        if self.prompt_tokens.is_none() && self.completion_tokens.is_none() {
            return None;
        }
        let count = |c: Option<Count>| c.and_then(|c| c.0);
        let detail = |details: &Option<Lenient<TokenDetails>>, pick: fn(&TokenDetails) -> Option<Count>| {
            details
                .as_ref()
                .and_then(|d| d.0.as_ref())
                .and_then(|d| count(pick(d)))
        };
        let u = Usage {
            input_tokens: count(self.prompt_tokens).unwrap_or(0),
            output_tokens: count(self.completion_tokens).unwrap_or(0),
            cached_input_tokens: detail(&self.prompt_tokens_details, |d| d.cached_tokens)
                .or(count(self.prompt_cache_hit_tokens))
                .unwrap_or(0),
            cache_write_input_tokens: 0,
            reasoning_tokens: detail(&self.completion_tokens_details, |d| d.reasoning_tokens).unwrap_or(0),
        };
        Some(u.clamped())
    }
}

/// The parts of a stream chunk that matter when it carries usage.
#[derive(Deserialize)]
struct UsageChunk {
    choices: Option<IsEmptyList>,
    usage: Option<Lenient<OpenAiUsage>>,
}

impl UsageChunk {
    /// No choices, and a usage object: the chunk `include_usage` adds at the end of a stream.
    fn is_usage_only(&self) -> bool {
        self.choices.as_ref().is_some_and(|c| c.0) && self.usage.as_ref().is_some_and(|u| u.0.is_some())
    }
}

/// The visitor methods for JSON values a lenient type reads as "not there": each is consumed and gives `$absent`.
macro_rules! absent_otherwise {
    ($absent:expr; $($method:ident($($ty:ty)?)),*) => {
        $(absent_otherwise!(@one $absent; $method($($ty)?));)*
    };
    (@one $absent:expr; visit_seq()) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($absent)
        }
    };
    (@one $absent:expr; visit_map()) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($absent)
        }
    };
    (@one $absent:expr; visit_unit()) => {
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($absent)
        }
    };
    (@one $absent:expr; $method:ident($ty:ty)) => {
        fn $method<E: serde::de::Error>(self, _: $ty) -> Result<Self::Value, E> {
            Ok($absent)
        }
    };
}

/// A token count: a non-negative integer, or a non-negative finite float (some OpenAI-compatible servers send
/// `12.0`); any other value reads as `None`.
#[derive(Clone, Copy)]
struct Count(Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Count, E> {
                Ok(Count(Some(n)))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(n).ok()))
            }
            fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Count, E> {
                Ok(Count(float_count(f)))
            }
            absent_otherwise!(Count(None); visit_bool(bool), visit_str(&str), visit_unit(), visit_seq(), visit_map());
        }
        d.deserialize_any(V)
    }
}

/// A `T` read from a JSON object; any other value reads as `None`.
struct Lenient<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lenient<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|t| Lenient(Some(t)))
            }
            absent_otherwise!(Lenient(None); visit_bool(bool), visit_u64(u64), visit_i64(i64), visit_f64(f64),
                visit_str(&str), visit_unit(), visit_seq());
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Whether a value is an empty array (`false` for anything else).
struct IsEmptyList(bool);

impl<'de> Deserialize<'de> for IsEmptyList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IsEmptyList;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IsEmptyList, A::Error> {
                let empty = seq.next_element::<IgnoredAny>()?.is_none();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(IsEmptyList(empty))
            }
            absent_otherwise!(IsEmptyList(false); visit_bool(bool), visit_u64(u64), visit_i64(i64),
                visit_f64(f64), visit_str(&str), visit_unit(), visit_map());
        }
        d.deserialize_any(V)
    }
}

/// A float token count: the range check excludes NaN, infinities, negatives and values beyond u64, so the cast
/// is exact enough.
fn float_count(f: f64) -> Option<u64> {
    (0.0..1.8e19).contains(&f).then_some(f as u64)
}

/// A token count field: a non-negative integer, or a non-negative finite float (some OpenAI-compatible servers
/// send `12.0`). Anything else is treated as absent.
pub(crate) fn as_count(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    float_count(v.as_f64()?)
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
            // Counts and details of the wrong shape read as absent, whatever they hold; a null count is no count.
            (
                json!({"usage":{"prompt_tokens":[1, {"a": 2}],"completion_tokens":{"n": [3]},
                    "prompt_tokens_details":[{"cached_tokens": 4}],"prompt_cache_hit_tokens":2,
                    "completion_tokens_details":"many"}}),
                Some(Usage {
                    cached_input_tokens: 0,
                    ..Usage::default()
                }),
            ),
            (
                json!({"usage":{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":true},
                    "prompt_cache_hit_tokens":2.0,"completion_tokens_details":null}}),
                Some(Usage {
                    input_tokens: 9,
                    cached_input_tokens: 2,
                    ..Usage::default()
                }),
            ),
            (
                json!({"usage":{"prompt_tokens":null,"completion_tokens":null}}),
                None,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(Usage::from_openai_json(&body), want, "{body}");
            assert_eq!(
                openai_body_usage(body.to_string().as_bytes()),
                want,
                "bytes of {body}"
            );
        }
        assert_eq!(
            openai_body_usage(b"{\"usage\":{\"prompt_tokens\":1"),
            None,
            "cut body"
        );
    }

    #[test]
    fn stream_chunks_and_usage_only_detection() {
        let content = json!({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null});
        let final_chunk = json!({"id":"c","object":"chat.completion.chunk","choices":[],
            "usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}});
        assert_eq!(Usage::from_openai_json(&content), None);
        assert!(!is_usage_only_chunk(&content));
        assert!(is_usage_only_chunk(&final_chunk));
        assert_eq!(
            Usage::from_openai_json(&final_chunk),
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
            "Hel\n\"lo\"{}f",
            "escaped strings are captured unescaped, in the frame's order (`json!` sorts `arguments` first)"
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
    fn object_keys_are_found_with_their_values_and_not_inside_strings() {
        let keys = |data| {
            object_keys(data)
                .map(|(k, v)| (k, v.chars().next()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(r#"{"usage" : {"a":1}, "x":"usage","b":[1, "c:d"]}"#),
            [
                ("usage", Some('{')),
                ("a", Some('1')),
                ("x", Some('"')),
                ("b", Some('['))
            ]
        );
        assert_eq!(
            keys(r#"{"content":"\"usage\": {}, \"k\":1"}"#),
            [("content", Some('"'))]
        );
        assert_eq!(
            keys(r#"{"a\\":1,"é":"x:"}"#),
            [("a\\\\", Some('1')), ("é", Some('"'))]
        );
        assert_eq!(keys(r#"{"cut":"#), [("cut", None)]);
        assert!(keys("usage: {}").is_empty());
    }

    #[test]
    fn text_capture_reads_the_text_keys_wherever_they_are_and_only_as_keys() {
        let capture = |data: &str| {
            let mut obs = OpenAiStreamUsage::new(false);
            let ev = crate::sse::SseParser::new()
                .push(format!("data: {data}\n\n").as_bytes())
                .unwrap()
                .remove(0);
            obs.observe(&ev);
            (obs.generated_text().to_owned(), obs.saw_finish())
        };
        let cases = [
            // Two choices, whitespace around the colon, an escaped quote and a unicode escape.
            (
                r#"{"choices":[{"delta":{"content" : "a\"b"}},{"delta":{"content":"\u00e9"}}]}"#,
                "a\"bé",
                false,
            ),
            // Reasoning, refusal, legacy text and a tool call's name and arguments.
            (
                r#"{"choices":[{"delta":{"reasoning_content":"r","refusal":"n","tool_calls":[{"function":{"name":"f","arguments":"{\"x\":1}"}}]}}]}"#,
                "rnf{\"x\":1}",
                false,
            ),
            (
                r#"{"choices":[{"text":"t","finish_reason":"length"}]}"#,
                "t",
                true,
            ),
            // A key's name inside a string is not a key; null and non-string values add nothing.
            (
                r#"{"choices":[{"delta":{"content":"say \"content\": \"no\"","role":"text"},"logprobs":{"content":[{"token":"x"}]},"finish_reason":null}]}"#,
                "say \"content\": \"no\"",
                false,
            ),
            (
                r#"{"choices":[{"delta":{"content":null},"finish_reason" : "stop"}]}"#,
                "",
                true,
            ),
            // A key whose name only ends in `"content` (an escaped quote) is another key.
            (r#"{"x\"content":"no"}"#, "", false),
            // Cut or malformed text adds nothing and does not panic.
            (r#"{"choices":[{"delta":{"content":"unterminated"#, "", false),
            (r#"{"content":"#, "", false),
            (r#""content""#, "", false),
        ];
        for (data, text, finished) in cases {
            assert_eq!(capture(data), (text.to_owned(), finished), "{data}");
        }
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
