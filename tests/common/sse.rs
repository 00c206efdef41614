//! A strict-enough Server-Sent Events parser for asserting on streamed responses.

use serde_json::Value;

/// One SSE event: the `event:` name (Anthropic names every event; OpenAI names none) and its `data:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// The data parsed as JSON; panics (a test failure) when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }
    pub fn is_done(&self) -> bool {
        self.data == "[DONE]"
    }
}

/// Splits a complete SSE body into events. Events are separated by a blank line; `data:` lines of one event are
/// joined with `\n`; comments (`:`) and unknown fields are skipped. A trailing event without its blank line (a
/// stream cut mid-event) is returned too.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let text = text.replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data: Option<String> = None;
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = Some(value.to_owned()),
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    },
                    _ => {}
                }
            }
            if event.is_none() && data.is_none() {
                return None;
            }
            Some(SseEvent {
                event,
                data: data.unwrap_or_default(),
            })
        })
        .collect()
}

/// The text of an OpenAI chat stream: every `choices[0].delta.content` concatenated.
pub fn openai_stream_text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| !e.is_done())
        .filter_map(|e| {
            e.json()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The text of an Anthropic stream: every `text_delta` concatenated.
pub fn anthropic_stream_text(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_delta"))
        .filter_map(|e| e.json()["delta"]["text"].as_str().map(str::to_owned))
        .collect()
}
