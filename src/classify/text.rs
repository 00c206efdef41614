//! What text the classifier sees: extraction from request bodies and the truncation rule.
//!
//! **Extraction.** The text that decides is the last user turn. Earlier turns and the system prompt are added as
//! context only when the last user turn is short (under [`SHORT_TURN_CHARS`] characters): "yes, do that" or
//! "now in Python" says nothing on its own, while a long last turn carries the task itself and context would only
//! dilute it. Context is the tail of the earlier conversation (at most [`CONTEXT_CHARS`] characters, the most recent
//! turns first to be kept) preceded by the head of the system prompt; the last user turn always comes last.
//! Only text parts are read: images, audio and tool calls have no text to classify.
//!
//! **Truncation.** Long prompts must cost bounded time, so truncation happens in two places:
//! 1. here, by characters: at most [`HEAD_CHARS`] leading and [`TAIL_CHARS`] trailing characters are kept, joined
//!    by " … ", which bounds tokenisation time whatever a client sends;
//! 2. in the embedder, by tokens: at most `max_tokens` (the heads' training budget, 32 for the shipped heads;
//!    [CLS] and [SEP] included). The last user turn (the focus) comes first: if it alone is over the budget it is
//!    cut to three quarters from its head and one quarter from its tail (see [`split_head_tail`]) and the context
//!    is dropped; otherwise the context keeps as many of its last tokens (those nearest the turn) as still fit.
//!    The head usually states the task, the tail holds the actual question or the options, so both survive.

use super::ClassifyError;

/// A last user turn shorter than this gets the earlier conversation as context.
pub const SHORT_TURN_CHARS: usize = 200;
/// How much of the earlier conversation (counted from its end) is kept as context.
pub const CONTEXT_CHARS: usize = 600;
/// How much of the system prompt (from its start) is kept as context.
pub const SYSTEM_CHARS: usize = 300;
/// Character-level bound applied before tokenisation: leading characters kept.
pub const HEAD_CHARS: usize = 3000;
/// Character-level bound applied before tokenisation: trailing characters kept.
pub const TAIL_CHARS: usize = 1000;
/// What joins a kept head to a kept tail.
pub const ELLIPSIS: &str = " … ";

/// The text one request is classified by, already extracted and bounded in length: optional context, then the
/// turn that decides (the *focus*). Token-level truncation gives the focus priority (see [`super::embed`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClassifyText {
    text: String,
    /// Byte offset where the focus starts; 0 when there is no context.
    focus: usize,
}

impl ClassifyText {
    fn plain(text: String) -> Self {
        Self { text, focus: 0 }
    }

    /// The text as the embedder will see it (before token-level truncation).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Byte offset of the focus (the last user turn) in [`Self::as_str`]; what precedes it is context.
    pub fn focus(&self) -> usize {
        self.focus
    }

    /// Consumes the value, returning the text.
    pub fn into_string(self) -> String {
        self.text
    }

    /// True when nothing is left to classify.
    pub fn is_empty(&self) -> bool {
        self.text.trim().is_empty()
    }
}

/// A plain prompt (`/v1/completions`, or the `prompt` field of `switchyard score` input).
pub fn from_prompt(prompt: &str) -> ClassifyText {
    ClassifyText::plain(bound_chars(prompt.trim()))
}

/// An OpenAI `messages` array. Errors when it is not an array or holds no user text.
pub fn from_chat_messages(messages: &serde_json::Value) -> Result<ClassifyText, ClassifyError> {
    let list = messages
        .as_array()
        .ok_or_else(|| ClassifyError::NoText("`messages` is not an array".to_owned()))?;
    let mut system = String::new();
    let mut turns = Vec::with_capacity(list.len());
    for message in list {
        let role = message.get("role").and_then(|r| r.as_str()).unwrap_or("");
        let text = content_text(message.get("content"));
        match role {
            // OpenAI renamed "system" to "developer" for reasoning models; both set the task.
            "system" | "developer" => push_line(&mut system, &text),
            _ => turns.push((role == "user", text)),
        }
    }
    assemble(&system, &turns)
}

/// An Anthropic `/v1/messages` body's `system` (a string or text blocks; may be absent) and `messages`.
pub fn from_anthropic(
    system: Option<&serde_json::Value>,
    messages: &serde_json::Value,
) -> Result<ClassifyText, ClassifyError> {
    let list = messages
        .as_array()
        .ok_or_else(|| ClassifyError::NoText("`messages` is not an array".to_owned()))?;
    let system = content_text(system);
    let turns: Vec<(bool, String)> = list
        .iter()
        .map(|m| {
            let is_user = m.get("role").and_then(|r| r.as_str()) == Some("user");
            (is_user, content_text(m.get("content")))
        })
        .collect();
    assemble(&system, &turns)
}

fn push_line(out: &mut String, text: &str) {
    if text.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(text);
}

/// Text of a `content` field: a string, or an array of parts of which only `{"type":"text","text":..}` count.
fn content_text(content: Option<&serde_json::Value>) -> String {
    match content {
        Some(serde_json::Value::String(s)) => s.trim().to_owned(),
        Some(serde_json::Value::Array(parts)) => {
            let mut out = String::new();
            for part in parts {
                let is_text = part
                    .get("type")
                    .and_then(|t| t.as_str())
                    .is_none_or(|t| t == "text");
                if let (true, Some(text)) = (is_text, part.get("text").and_then(|t| t.as_str())) {
                    push_line(&mut out, text.trim());
                }
            }
            out
        }
        _ => String::new(),
    }
}

/// Applies the extraction rule to the system prompt and the non-system turns `(is_user, text)` in order.
fn assemble(system: &str, turns: &[(bool, String)]) -> Result<ClassifyText, ClassifyError> {
    let last_user = turns
        .iter()
        .rposition(|(is_user, text)| *is_user && !text.is_empty())
        .ok_or_else(|| ClassifyError::NoText("no user message with text".to_owned()))?;
    let last = &turns[last_user].1;
    if last.chars().count() >= SHORT_TURN_CHARS {
        return Ok(ClassifyText::plain(bound_chars(last)));
    }
    let mut earlier = String::new();
    for (_, text) in turns[..last_user].iter().filter(|(_, t)| !t.is_empty()) {
        push_line(&mut earlier, text);
    }
    let mut out = String::new();
    push_line(&mut out, &head(system, SYSTEM_CHARS));
    push_line(&mut out, &tail(&earlier, CONTEXT_CHARS));
    if !out.is_empty() {
        out.push('\n');
    }
    let focus = out.len();
    out.push_str(last);
    Ok(ClassifyText { text: out, focus })
}

/// The first `n` characters of `s`.
fn head(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The last `n` characters of `s`.
fn tail(s: &str, n: usize) -> String {
    let count = s.chars().count();
    s.chars().skip(count.saturating_sub(n)).collect()
}

/// The character-level bound: head and tail of an over-long text, joined by [`ELLIPSIS`].
pub fn bound_chars(s: &str) -> String {
    let count = s.chars().count();
    if count <= HEAD_CHARS + TAIL_CHARS {
        return s.to_owned();
    }
    let mut out = head(s, HEAD_CHARS);
    out.push_str(ELLIPSIS);
    out.push_str(&tail(s, TAIL_CHARS));
    out
}

/// Given `n` tokens and a budget, which leading and trailing token counts to keep: `None` when all fit, else
/// `(head, tail)` with `tail = budget / 4` and `head = budget - tail`.
pub fn split_head_tail(n: usize, budget: usize) -> Option<(usize, usize)> {
    if n <= budget {
        return None;
    }
    let tail = budget / 4;
    Some((budget - tail, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_is_trimmed_and_kept() {
        assert_eq!(from_prompt("  What is 2+2?\n").as_str(), "What is 2+2?");
    }

    #[test]
    fn long_last_user_turn_stands_alone() {
        let long = "x".repeat(SHORT_TURN_CHARS + 5);
        let msgs = json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": long.clone()},
        ]);
        assert_eq!(from_chat_messages(&msgs).unwrap().as_str(), long);
    }

    #[test]
    fn short_last_turn_gets_system_and_earlier_turns_as_context() {
        let msgs = json!([
            {"role": "system", "content": "You are a Rust expert."},
            {"role": "user", "content": "Write a binary search."},
            {"role": "assistant", "content": [{"type": "text", "text": "fn search() {}"}]},
            {"role": "user", "content": [{"type": "text", "text": "now make it generic"},
                                          {"type": "image_url", "image_url": {"url": "data:..."}}]},
        ]);
        let text = from_chat_messages(&msgs).unwrap();
        assert_eq!(
            text.as_str(),
            "You are a Rust expert.\nWrite a binary search.\nfn search() {}\nnow make it generic"
        );
        // The focus is the last user turn: the embedder's truncation keeps it first.
        assert_eq!(&text.as_str()[text.focus()..], "now make it generic");
        assert_eq!(from_prompt("plain").focus(), 0);
    }

    #[test]
    fn trailing_assistant_turn_is_context_not_the_question() {
        let msgs = json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ]);
        let text = from_chat_messages(&msgs).unwrap();
        assert_eq!((text.as_str(), text.focus()), ("hi", 0));
    }

    #[test]
    fn no_user_text_is_an_error() {
        assert!(from_chat_messages(&json!([{"role": "system", "content": "x"}])).is_err());
        assert!(from_chat_messages(&json!({"role": "user"})).is_err());
        assert!(from_chat_messages(&json!([{"role": "user", "content": [{"type": "image_url"}]}])).is_err());
    }

    #[test]
    fn anthropic_system_blocks_and_messages() {
        let system = json!([{"type": "text", "text": "Be precise."}]);
        let msgs = json!([{"role": "user", "content": [{"type": "text", "text": "Sum 2 and 3"}]}]);
        assert_eq!(
            from_anthropic(Some(&system), &msgs).unwrap().as_str(),
            "Be precise.\nSum 2 and 3"
        );
        assert_eq!(from_anthropic(None, &msgs).unwrap().as_str(), "Sum 2 and 3");
    }

    #[test]
    fn context_keeps_the_most_recent_earlier_text() {
        let old = "a".repeat(CONTEXT_CHARS);
        let msgs = json!([
            {"role": "user", "content": old},
            {"role": "assistant", "content": "recent"},
            {"role": "user", "content": "ok?"},
        ]);
        let text = from_chat_messages(&msgs).unwrap().into_string();
        assert!(text.ends_with("\nrecent\nok?"), "{text}");
        assert_eq!(text.chars().count(), CONTEXT_CHARS + "\nok?".len());
    }

    #[test]
    fn char_bound_keeps_head_and_tail() {
        let s = format!(
            "{}{}{}",
            "h".repeat(HEAD_CHARS),
            "m".repeat(5000),
            "t".repeat(TAIL_CHARS)
        );
        let b = bound_chars(&s);
        assert_eq!(
            b,
            format!("{}{ELLIPSIS}{}", "h".repeat(HEAD_CHARS), "t".repeat(TAIL_CHARS))
        );
        // Multi-byte characters are never split.
        let u = "é".repeat(HEAD_CHARS + TAIL_CHARS + 1);
        assert_eq!(
            bound_chars(&u).chars().count(),
            HEAD_CHARS + TAIL_CHARS + ELLIPSIS.chars().count()
        );
    }

    #[test]
    fn token_split_rule() {
        assert_eq!(split_head_tail(100, 250), None);
        assert_eq!(split_head_tail(250, 250), None);
        assert_eq!(split_head_tail(1000, 250), Some((188, 62)));
    }
}
