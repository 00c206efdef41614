//! Incremental Server-Sent-Events parsing and encoding.
//!
//! Upstream bytes are untrusted: frames may be split across network chunks at any byte, lines may end in `\n`,
//! `\r\n` or a lone `\r`, and a hostile or broken upstream may send a line that never ends. [`SseParser`] handles
//! all of that without panicking and refuses to buffer more than a fixed number of bytes for one frame.
//!
//! Every [`SseEvent`] keeps the exact bytes it was parsed from ([`SseEvent::raw`]). Concatenating the `raw` of
//! every event returned by [`SseParser::push`] and [`SseParser::finish`] reproduces the input byte for byte, so a
//! passthrough stream can inspect each frame (to read usage, say) and still forward it unchanged, or drop exactly
//! one frame (the usage-only chunk a client did not ask for) without disturbing its neighbours.
//!
//! The field rules follow the WHATWG HTML "event stream" interpretation: `data` lines are joined with `\n`, one
//! leading space after the colon is removed, lines starting with `:` are comments, and a line without a colon is a
//! field name with an empty value.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

/// The largest frame (or unterminated line) the parser buffers before giving up: far above any legitimate LLM
/// stream frame, far below what would hurt the process.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// The frame that ends an OpenAI stream.
pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// One parsed SSE frame ("event" in the spec's words).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any. Anthropic names every event; OpenAI sends none.
    pub event: Option<String>,
    /// The joined `data:` lines, or `None` when the frame had no `data` field at all (a comment or keep-alive).
    pub data: Option<String>,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `retry:` field, if any and numeric.
    pub retry: Option<u64>,
    /// The exact bytes of this frame, including any blank lines that preceded it and its terminating blank line.
    pub raw: Bytes,
}

impl SseEvent {
    /// The event type as the spec defines it: the `event` field, or `"message"` when absent or empty.
    pub fn event_type(&self) -> &str {
        match self.event.as_deref() {
            Some(e) if !e.is_empty() => e,
            _ => "message",
        }
    }

    /// True for OpenAI's `data: [DONE]` terminator.
    pub fn is_done(&self) -> bool {
        self.data.as_deref().map(str::trim) == Some("[DONE]")
    }

    /// The data parsed as JSON, or `None` when there is no data or it is not JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(self.data.as_deref()?).ok()
    }
}

/// Why the parser stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A single frame (or a line without an end) grew past the limit; the stream is treated as hostile.
    #[error("server-sent event frame exceeds {limit} bytes")]
    FrameTooLarge {
        /// The configured limit.
        limit: usize,
    },
}

/// An incremental SSE parser: feed it chunks as they arrive, get complete frames back.
///
/// After an error the parser is poisoned and returns the same error for every later call, so a caller that ignores
/// one error cannot make it buffer without bound.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the frame being assembled (completed frames are split off immediately).
    buf: BytesMut,
    /// Where line scanning resumes; everything before it is complete lines of the current frame.
    scan_pos: usize,
    /// Where the search for the next line terminator resumes: bytes between `scan_pos` and here are known to hold
    /// none. Without it a long line arriving in tiny chunks would be rescanned on every push (quadratic CPU).
    search_pos: usize,
    /// Whether the current frame has seen a non-blank line yet (leading blank lines do not end a frame).
    frame_has_lines: bool,
    max_frame_bytes: usize,
    poisoned: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the [`DEFAULT_MAX_FRAME_BYTES`] limit.
    pub fn new() -> Self {
        Self::with_max_frame_bytes(DEFAULT_MAX_FRAME_BYTES)
    }

    /// A parser with a custom per-frame limit.
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scan_pos: 0,
            search_pos: 0,
            frame_has_lines: false,
            max_frame_bytes,
            poisoned: false,
        }
    }

    /// Feeds one chunk and returns every frame it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        if self.poisoned {
            return Err(SseError::FrameTooLarge {
                limit: self.max_frame_bytes,
            });
        }
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            let from = self.search_pos.max(self.scan_pos);
            let Some((line_end, next)) = next_line(&self.buf, from, false) else {
                // Resume at the end next time, or at a trailing `\r` that may yet become `\r\n`.
                self.search_pos = match self.buf.last() {
                    Some(b'\r') => self.buf.len() - 1,
                    _ => self.buf.len(),
                };
                break;
            };
            let blank = line_end == self.scan_pos;
            self.scan_pos = next;
            self.search_pos = next;
            if !blank {
                self.frame_has_lines = true;
            } else if self.frame_has_lines {
                let raw = self.buf.split_to(self.scan_pos).freeze();
                self.scan_pos = 0;
                self.search_pos = 0;
                self.frame_has_lines = false;
                out.push(parse_frame(raw));
            }
        }
        if self.buf.len() > self.max_frame_bytes {
            self.poisoned = true;
            self.buf = BytesMut::new();
            self.scan_pos = 0;
            self.search_pos = 0;
            return Err(SseError::FrameTooLarge {
                limit: self.max_frame_bytes,
            });
        }
        Ok(out)
    }

    /// Ends the stream: returns the trailing frame that had no blank line after it, if any bytes remain.
    ///
    /// The returned event carries the leftover bytes in `raw` even when they hold no fields (stray blank lines), so
    /// the byte-for-byte property holds; check `data` before acting on it. Calling `finish` again returns `None`.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        if self.poisoned {
            return Err(SseError::FrameTooLarge {
                limit: self.max_frame_bytes,
            });
        }
        self.scan_pos = 0;
        self.search_pos = 0;
        self.frame_has_lines = false;
        if self.buf.is_empty() {
            return Ok(None);
        }
        let raw = std::mem::take(&mut self.buf).freeze();
        Ok(Some(parse_frame(raw)))
    }

    /// Bytes buffered for the frame being assembled.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }
}

/// Finds the line starting at `from`: returns (end of line content, start of next line). A `\r` at the very end of
/// the buffer may be the first half of `\r\n`, so it only counts as a terminator when `at_eof`.
fn next_line(buf: &[u8], from: usize, at_eof: bool) -> Option<(usize, usize)> {
    let rest = buf.get(from..)?;
    let rel = memchr::memchr2(b'\n', b'\r', rest)?;
    let i = from + rel;
    if buf.get(i) == Some(&b'\n') {
        return Some((i, i + 1));
    }
    match buf.get(i + 1) {
        Some(b'\n') => Some((i, i + 2)),
        Some(_) => Some((i, i + 1)),
        None if at_eof => Some((i, i + 1)),
        None => None,
    }
}

/// Interprets the lines of one frame. `raw` is kept whole in the result.
fn parse_frame(raw: Bytes) -> SseEvent {
    let mut ev = SseEvent::default();
    let mut data: Option<String> = None;
    let mut pos = 0;
    loop {
        let (line_end, next) = match next_line(&raw, pos, true) {
            Some(found) => found,
            // The final line of a frame flushed by `finish` may have no terminator.
            None if pos < raw.len() => (raw.len(), raw.len()),
            None => break,
        };
        let line = raw.get(pos..line_end).unwrap_or_default();
        pos = next;
        if line.is_empty() || line.first() == Some(&b':') {
            continue;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(c) => {
                let v = line.get(c + 1..).unwrap_or_default();
                (
                    line.get(..c).unwrap_or_default(),
                    v.strip_prefix(b" ").unwrap_or(v),
                )
            }
            None => (line, &[][..]),
        };
        // A UTF-8 byte-order mark may open a stream; it is not part of the first field name.
        let name = name.strip_prefix("\u{feff}".as_bytes()).unwrap_or(name);
        // Validation alone for the usual valid UTF-8 (`from_utf8_lossy` walks it more slowly).
        let value = match std::str::from_utf8(value) {
            Ok(valid) => Cow::Borrowed(valid),
            Err(_) => String::from_utf8_lossy(value),
        };
        match name {
            b"data" => {
                let d = data.get_or_insert_with(|| String::with_capacity(value.len() + 1));
                d.push_str(&value);
                d.push('\n');
            }
            b"event" => ev.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => ev.id = Some(value.into_owned()),
            b"retry" => {
                if let Ok(ms) = value.parse::<u64>() {
                    ev.retry = Some(ms);
                }
            }
            _ => {}
        }
    }
    if let Some(d) = data.as_mut() {
        d.pop();
    }
    ev.data = data;
    ev.raw = raw;
    ev
}

/// Encodes `data: {json}\n\n`. JSON serialisation escapes newlines, so one `data` line always suffices.
pub fn encode_json(value: &Value) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"data: ");
    // Writing a `Value` into a Vec cannot fail: it has no non-string map keys and the writer is infallible.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Encodes `event: {name}\ndata: {json}\n\n`, the shape Anthropic uses.
pub fn encode_named_json(event: &str, value: &Value) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"event: ");
    // An event name with a line break would split the frame; strip them rather than trust the caller.
    out.extend(event.bytes().filter(|&b| b != b'\n' && b != b'\r'));
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Encodes arbitrary text as one frame, splitting it into one `data:` line per line of text.
pub fn encode_data(text: &str) -> Bytes {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// The `data: [DONE]\n\n` terminator as `Bytes`.
pub fn done_frame() -> Bytes {
    Bytes::from_static(DONE_FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SAMPLE: &[u8] = b": keep-alive comment\n\nevent: message_start\ndata: {\"type\":\"message_start\"}\n\n\
event: content_block_delta\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n\n\ndata: plain\rid: 7\rretry: 300\r\rdata: [DONE]\n\n";

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.push(c).unwrap());
        }
        out.extend(p.finish().unwrap());
        out
    }

    #[test]
    fn parses_sample_in_one_chunk() {
        let evs = parse_all(&[SAMPLE]);
        assert_eq!(evs.len(), 5, "{evs:#?}");
        assert_eq!(evs[0].data, None);
        assert_eq!(evs[0].event_type(), "message");
        assert_eq!(evs[1].event.as_deref(), Some("message_start"));
        assert_eq!(evs[1].json(), Some(json!({"type":"message_start"})));
        assert_eq!(evs[2].data.as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(evs[3].data.as_deref(), Some("plain"));
        assert_eq!(evs[3].id.as_deref(), Some("7"));
        assert_eq!(evs[3].retry, Some(300));
        assert!(evs[4].is_done());
        let joined: Vec<u8> = evs.iter().flat_map(|e| e.raw.iter().copied()).collect();
        assert_eq!(joined, SAMPLE);
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let whole = parse_all(&[SAMPLE]);
        for i in 0..=SAMPLE.len() {
            let (a, b) = SAMPLE.split_at(i);
            assert_eq!(parse_all(&[a, b]), whole, "split at {i}");
            for j in i..=SAMPLE.len() {
                let (b1, c) = b.split_at(j - i);
                assert_eq!(parse_all(&[a, b1, c]), whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let chunks: Vec<&[u8]> = SAMPLE.chunks(1).collect();
        assert_eq!(parse_all(&chunks), parse_all(&[SAMPLE]));
    }

    #[test]
    fn final_frame_without_blank_line_comes_from_finish() {
        let mut p = SseParser::new();
        assert!(p.push(b"data: {\"x\":1}").unwrap().is_empty());
        let ev = p.finish().unwrap().unwrap();
        assert_eq!(ev.json(), Some(json!({"x":1})));
        assert_eq!(&ev.raw[..], b"data: {\"x\":1}");
        assert_eq!(p.finish().unwrap(), None, "finish is idempotent");
    }

    #[test]
    fn trailing_cr_waits_for_possible_lf() {
        let mut p = SseParser::new();
        assert!(p.push(b"data: a\r\n\r").unwrap().is_empty());
        let evs = p.push(b"\ndata: b\n\n").unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(&evs[0].raw[..], b"data: a\r\n\r\n");
        assert_eq!(evs[1].data.as_deref(), Some("b"));
    }

    #[test]
    fn field_rules() {
        let evs = parse_all(&[b"data\ndata:x\ndata:  two spaces\nevent:\nfoo: bar\nid: a\0b\n\n"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data.as_deref(), Some("\nx\n two spaces"));
        assert_eq!(evs[0].event.as_deref(), Some(""));
        assert_eq!(evs[0].event_type(), "message");
        assert_eq!(evs[0].id, None);
    }

    #[test]
    fn bom_is_ignored_on_first_field() {
        let evs = parse_all(&["\u{feff}data: hi\n\n".as_bytes()]);
        assert_eq!(evs[0].data.as_deref(), Some("hi"));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let evs = parse_all(&[b"data: \xff\xfe ok\n\n"]);
        assert_eq!(evs[0].data.as_deref(), Some("\u{fffd}\u{fffd} ok"));
    }

    #[test]
    fn endless_line_is_refused_and_parser_stays_poisoned() {
        let mut p = SseParser::with_max_frame_bytes(1024);
        assert!(p.push(&[b'a'; 1000]).unwrap().is_empty());
        assert_eq!(p.push(&[b'a'; 100]), Err(SseError::FrameTooLarge { limit: 1024 }));
        assert!(p.push(b"\n\n").is_err());
        assert!(p.finish().is_err());
        assert_eq!(p.buffered_len(), 0, "memory released on error");
    }

    #[test]
    fn long_line_in_tiny_chunks_is_linear() {
        // 2 MiB in 16-byte chunks: quadratic rescanning would take minutes, linear takes milliseconds.
        let mut p = SseParser::new();
        let line = vec![b'x'; 2 * 1024 * 1024];
        p.push(b"data: ").unwrap();
        for c in line.chunks(16) {
            assert!(p.push(c).unwrap().is_empty());
        }
        let evs = p.push(b"\r\n\r\n").unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data.as_ref().map(String::len), Some(line.len()));
    }

    #[test]
    fn many_small_frames_in_one_huge_chunk_are_fine() {
        let mut input = Vec::new();
        for i in 0..2000 {
            input.extend_from_slice(format!("data: {i}\n\n").as_bytes());
        }
        let mut p = SseParser::with_max_frame_bytes(64);
        assert_eq!(p.push(&input).unwrap().len(), 2000);
    }

    #[test]
    fn encoders_round_trip() {
        let v = json!({"text": "line1\nline2", "n": 1});
        let frame = encode_json(&v);
        assert_eq!(&frame[..], b"data: {\"n\":1,\"text\":\"line1\\nline2\"}\n\n");
        let evs = parse_all(&[&frame]);
        assert_eq!(evs[0].json(), Some(v.clone()));

        let named = encode_named_json("message_start", &v);
        let evs = parse_all(&[&named]);
        assert_eq!(evs[0].event.as_deref(), Some("message_start"));
        assert_eq!(evs[0].json(), Some(v));

        let evs = parse_all(&[&encode_data("a\nb\r\nc")]);
        assert_eq!(evs[0].data.as_deref(), Some("a\nb\nc"));
        assert!(parse_all(&[&done_frame()])[0].is_done());
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic_and_raw_is_lossless(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in cuts {
                chunks.push(&data[prev..c]);
                prev = c;
            }
            chunks.push(&data[prev..]);
            let evs = parse_all(&chunks);
            let joined: Vec<u8> = evs.iter().flat_map(|e| e.raw.iter().copied()).collect();
            proptest::prop_assert_eq!(joined, data.clone());
            proptest::prop_assert_eq!(evs, parse_all(&[&data]));
        }
    }
}
