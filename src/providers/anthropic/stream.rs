//! Anthropic Messages SSE events → OpenAI `chat.completion.chunk` frames.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{MessagesStreamUsage, error_object_to_openai, finish_reason, unix_now};
use crate::providers::TranslateError;
use crate::sse::{SseEvent, done_frame, encode_json};
use crate::usage::Usage;

/// What an Anthropic content block (by its index) turned into on the OpenAI side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// A tool call with its OpenAI `tool_calls[].index` (counted over tool blocks only, from 0).
    Tool(u64),
    Thinking,
    /// Blocks with no OpenAI counterpart (server tools, redacted thinking, future types): skipped.
    Other,
}

/// Translates one Anthropic Messages stream into OpenAI chat completion chunks.
///
/// Output, in order:
/// 1. On `message_start`: a chunk with `delta: {"role":"assistant","content":""}`.
/// 2. Per `text_delta`: `delta.content`. Per tool block: one chunk with `tool_calls[{index,id,type,function:{name,
///    arguments:""}}]`, then one per `input_json_delta` with the argument fragment. Per `thinking_delta`:
///    `delta.reasoning_content` (the convention DeepSeek, vLLM and LiteLLM use; OpenAI SDKs ignore the field).
/// 3. On `message_delta` with a `stop_reason`: an empty delta with the mapped `finish_reason`.
/// 4. On `message_stop`: (only when the client asked via `stream_options.include_usage`) a chunk with
///    `choices: []` and `usage`, then `data: [DONE]`.
///
/// Every chunk has the same `id` (`chatcmpl-` + Anthropic's message id) and `created`. When `include_usage` is on,
/// content chunks carry `"usage": null`, as OpenAI's do.
///
/// An Anthropic `error` event becomes one `data: {"error":{...}}` frame in OpenAI's shape and ends the stream
/// without `[DONE]` (OpenAI SDKs raise on that frame). After the end, `push` returns nothing.
#[derive(Debug)]
pub struct StreamTranslator {
    model: String,
    include_usage: bool,
    id: Option<String>,
    created: u64,
    blocks: Vec<(u64, Block)>,
    next_tool_index: u64,
    sent_role: bool,
    sent_finish: bool,
    done: bool,
    usage: MessagesStreamUsage,
    generated: String,
}

impl StreamTranslator {
    /// A translator for one stream. `model` is the name the client sees; `include_usage` is the client's
    /// `stream_options.include_usage`.
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            model: model.to_owned(),
            include_usage,
            id: None,
            created: unix_now(),
            blocks: Vec::new(),
            next_tool_index: 0,
            sent_role: false,
            sent_finish: false,
            done: false,
            usage: MessagesStreamUsage::new(),
            generated: String::new(),
        }
    }

    /// Translates one upstream SSE frame into zero or more OpenAI frames.
    ///
    /// Frames without data (comments, keep-alives) and unknown event types are ignored, as Anthropic's versioning
    /// policy asks. Data that is not JSON is an [`TranslateError::UpstreamMalformed`]; the translator stays usable,
    /// and the caller decides whether to [`abort`](Self::abort).
    pub fn push(&mut self, ev: &SseEvent) -> Result<Vec<Bytes>, TranslateError> {
        if self.done {
            return Ok(Vec::new());
        }
        let Some(data) = ev.data.as_deref() else {
            return Ok(Vec::new());
        };
        let v: Value = serde_json::from_str(data)
            .map_err(|_| TranslateError::upstream(format!("`{}` event data is not JSON", ev.event_type())))?;
        Ok(self.push_json(&v))
    }

    /// Translates one already-parsed Anthropic event.
    pub fn push_json(&mut self, v: &Value) -> Vec<Bytes> {
        if self.done {
            return Vec::new();
        }
        self.usage.observe(v);
        let mut out = Vec::new();
        match v.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                if self.id.is_none()
                    && let Some(id) = v.pointer("/message/id").and_then(Value::as_str)
                {
                    self.id = Some(format!("chatcmpl-{id}"));
                }
                self.ensure_role(&mut out);
            }
            "content_block_start" => self.block_start(v, &mut out),
            "content_block_delta" => self.block_delta(v, &mut out),
            "message_delta" => {
                if let Some(reason) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.emit_finish(Some(reason), &mut out);
                }
            }
            "message_stop" => {
                let reason = self.usage.stop_reason().map(str::to_owned);
                self.emit_finish(reason.as_deref(), &mut out);
                self.emit_tail(&mut out);
            }
            "error" => {
                let err = v.get("error").cloned().unwrap_or_else(|| json!({}));
                out.push(encode_json(&error_object_to_openai(&err, None)));
                self.done = true;
            }
            // ping, content_block_stop and event types added after this was written.
            _ => {}
        }
        out
    }

    /// Ends the stream when the upstream body ends. Idempotent.
    ///
    /// After a normal `message_stop` (or an error) this returns nothing. If the upstream stopped early it emits the
    /// usage chunk (when asked for) and `[DONE]`, without inventing a `finish_reason`: the missing finish reason is
    /// how an OpenAI client can tell the reply was cut. Use [`abort`](Self::abort) instead to report an error.
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if !self.done {
            self.emit_tail(&mut out);
        }
        out
    }

    /// Ends the stream with an OpenAI error frame (e.g. the upstream connection failed or timed out mid-stream).
    /// Returns nothing if the stream already ended.
    pub fn abort(&mut self, message: &str) -> Vec<Bytes> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        vec![encode_json(&json!({"error": {
            "message": message,
            "type": "server_error",
            "param": null,
            "code": "upstream_stream_interrupted",
        }}))]
    }

    /// Normalised usage reported so far (zero when none was reported); what to charge for a stream cut mid-way.
    pub fn usage(&self) -> Usage {
        self.usage.usage().unwrap_or_default()
    }

    /// Usage reported so far, or `None` when the upstream reported none (the ledger then estimates).
    pub fn reported_usage(&self) -> Option<Usage> {
        self.usage.usage()
    }

    /// True once Anthropic's `message_stop` arrived: the upstream finished normally.
    pub fn saw_stop(&self) -> bool {
        self.usage.saw_message_stop()
    }

    /// True once the translator has emitted its last frame (`[DONE]` or an error frame).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Anthropic's `stop_reason`, once reported.
    pub fn stop_reason(&self) -> Option<&str> {
        self.usage.stop_reason()
    }

    /// Everything generated so far (text, thinking and tool-argument fragments, concatenated). Anthropic reports
    /// output tokens only at the end, so a stream cut early is charged by counting tokens in this text.
    pub fn generated_text(&self) -> &str {
        &self.generated
    }

    fn id(&mut self) -> String {
        self.id
            .get_or_insert_with(|| format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()))
            .clone()
    }

    fn chunk(&mut self, delta: Value, finish: Option<&str>) -> Bytes {
        let mut c = json!({
            "id": self.id(),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if let (true, Some(obj)) = (self.include_usage, c.as_object_mut()) {
            obj.insert("usage".into(), Value::Null);
        }
        encode_json(&c)
    }

    fn ensure_role(&mut self, out: &mut Vec<Bytes>) {
        if !self.sent_role {
            self.sent_role = true;
            out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
    }

    fn block_start(&mut self, v: &Value, out: &mut Vec<Bytes>) {
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX);
        let block = v.get("content_block").unwrap_or(&Value::Null);
        let kind = match block.get("type").and_then(Value::as_str) {
            Some("text") => Block::Text,
            Some("thinking") => Block::Thinking,
            Some("tool_use") => {
                let i = self.next_tool_index;
                self.next_tool_index += 1;
                Block::Tool(i)
            }
            _ => Block::Other,
        };
        self.blocks.retain(|(i, _)| *i != index);
        self.blocks.push((index, kind));
        self.ensure_role(out);
        match kind {
            Block::Text => {
                if let Some(t) = block
                    .get("text")
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.generated.push_str(t);
                    out.push(self.chunk(json!({"content": t}), None));
                }
            }
            Block::Tool(tool_index) => {
                // Streamed tool blocks start with `input: {}` and fill it through deltas; a block that arrives
                // complete carries its input here instead.
                let args = match block.get("input") {
                    Some(Value::Object(o)) if !o.is_empty() => Value::Object(o.clone()).to_string(),
                    _ => String::new(),
                };
                self.generated.push_str(&args);
                let call = json!({
                    "index": tool_index,
                    "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {"name": block.get("name").and_then(Value::as_str).unwrap_or(""), "arguments": args},
                });
                out.push(self.chunk(json!({"tool_calls": [call]}), None));
            }
            Block::Thinking | Block::Other => {}
        }
    }

    fn block_delta(&mut self, v: &Value, out: &mut Vec<Bytes>) {
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX);
        let Some(kind) = self
            .blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map(|(_, k)| *k)
        else {
            return;
        };
        let delta = v.get("delta").unwrap_or(&Value::Null);
        let field = |name: &str| delta.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
        match (kind, delta.get("type").and_then(Value::as_str)) {
            (Block::Text, Some("text_delta")) => {
                if let Some(t) = field("text") {
                    self.ensure_role(out);
                    self.generated.push_str(t);
                    out.push(self.chunk(json!({"content": t}), None));
                }
            }
            (Block::Tool(tool_index), Some("input_json_delta")) => {
                if let Some(p) = field("partial_json") {
                    self.ensure_role(out);
                    self.generated.push_str(p);
                    let call = json!({"index": tool_index, "function": {"arguments": p}});
                    out.push(self.chunk(json!({"tool_calls": [call]}), None));
                }
            }
            (Block::Thinking, Some("thinking_delta")) => {
                if let Some(t) = field("thinking") {
                    self.ensure_role(out);
                    self.generated.push_str(t);
                    out.push(self.chunk(json!({"reasoning_content": t}), None));
                }
            }
            // signature_delta, citations_delta, deltas for skipped blocks, mismatched delta types.
            _ => {}
        }
    }

    fn emit_finish(&mut self, stop_reason: Option<&str>, out: &mut Vec<Bytes>) {
        if !self.sent_finish {
            self.sent_finish = true;
            self.ensure_role(out);
            out.push(self.chunk(json!({}), Some(finish_reason(stop_reason))));
        }
    }

    fn emit_tail(&mut self, out: &mut Vec<Bytes>) {
        if self.include_usage {
            let usage = self.usage().to_openai_json();
            let c = json!({
                "id": self.id(),
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage,
            });
            out.push(encode_json(&c));
        }
        out.push(done_frame());
        self.done = true;
    }
}
