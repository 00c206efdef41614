//! Conversation stickiness: keep one conversation on one model so the provider's prompt cache stays warm.
//!
//! The store maps (team, conversation key) → the model last used. The pipeline reads it before routing (passing
//! the model in [`super::Conditions::sticky_model`]) and writes the chosen model afterwards; [`super::decide`]
//! keeps the conversation on that model only while it still qualifies for the new turn, so a harder turn still
//! moves up.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Bounded: a busy proxy sees many conversations, and a lost entry only costs one cache miss.
const MAX_CONVERSATIONS: u64 = 200_000;

#[derive(Clone)]
pub struct StickyStore {
    cache: moka::sync::Cache<(String, String), (String, Instant, Duration)>,
}

impl Default for StickyStore {
    fn default() -> Self {
        StickyStore::new(MAX_CONVERSATIONS)
    }
}

impl StickyStore {
    pub fn new(capacity: u64) -> Self {
        // Per-entry expiry is checked on read (each policy has its own TTL); the idle bound only reclaims memory.
        StickyStore {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(Duration::from_secs(24 * 3600))
                .build(),
        }
    }

    pub fn get(&self, team: &str, conversation: &str) -> Option<String> {
        self.get_at(team, conversation, Instant::now())
    }

    pub fn get_at(&self, team: &str, conversation: &str, now: Instant) -> Option<String> {
        let (model, at, ttl) = self.cache.get(&(team.to_owned(), conversation.to_owned()))?;
        (now.saturating_duration_since(at) <= ttl).then_some(model)
    }

    pub fn put(&self, team: &str, conversation: &str, model: &str, ttl: Duration) {
        self.put_at(team, conversation, model, ttl, Instant::now());
    }

    pub fn put_at(&self, team: &str, conversation: &str, model: &str, ttl: Duration, now: Instant) {
        self.cache.insert(
            (team.to_owned(), conversation.to_owned()),
            (model.to_owned(), now, ttl),
        );
    }
}

/// The conversation a request belongs to: the caller's explicit id (header `x-switchyard-conversation`) when
/// given, else a hash of what stays fixed across a chat's turns — the system prompt and the first user message
/// (so the first turn already records the model the later turns stick to). `None` without any message.
pub fn conversation_key(
    explicit: Option<&str>,
    system: Option<&str>,
    first_user: Option<&str>,
    turns: usize,
) -> Option<String> {
    if let Some(id) = explicit.filter(|s| !s.is_empty()) {
        return Some(format!("id:{}", id.chars().take(128).collect::<String>()));
    }
    if turns == 0 {
        return None;
    }
    let mut h = Sha256::new();
    h.update(system.unwrap_or_default().as_bytes());
    h.update([0]);
    h.update(first_user?.as_bytes());
    Some(format!("h:{}", hex::encode(&h.finalize()[..12])))
}

/// The header a caller may use to name its conversation explicitly.
pub const CONVERSATION_HEADER: &str = "x-switchyard-conversation";

/// [`conversation_key`] read off a request: the header, else the system prompt and first user message of an
/// OpenAI or Anthropic chat body.
pub fn conversation_of(
    headers: &http::HeaderMap,
    body: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    use serde_json::Value;
    let explicit = headers.get(CONVERSATION_HEADER).and_then(|v| v.to_str().ok());
    let messages = body.get("messages").and_then(Value::as_array);
    let turns = messages.map_or(0, Vec::len);
    let text = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    };
    let role_is = |m: &&Value, role: &str| m.get("role").and_then(Value::as_str) == Some(role);
    let system = text(body.get("system")).or_else(|| {
        text(
            messages?
                .iter()
                .find(|m| role_is(m, "system") || role_is(m, "developer"))?
                .get("content"),
        )
    });
    let first_user = messages.and_then(|m| text(m.iter().find(|m| role_is(m, "user"))?.get("content")));
    conversation_key(explicit, system.as_deref(), first_user.as_deref(), turns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_per_policy_ttl() {
        let store = StickyStore::new(10);
        let t0 = Instant::now();
        store.put_at("eng", "c1", "gpt-5-mini", Duration::from_secs(60), t0);
        assert_eq!(
            store.get_at("eng", "c1", t0 + Duration::from_secs(30)).as_deref(),
            Some("gpt-5-mini")
        );
        assert_eq!(store.get_at("eng", "c1", t0 + Duration::from_secs(61)), None);
        assert_eq!(
            store.get_at("mkt", "c1", t0),
            None,
            "teams do not share conversations"
        );
    }

    #[test]
    fn conversations_are_recognised_across_turns() {
        let turn = |n: usize| {
            let mut messages = vec![
                serde_json::json!({ "role": "system", "content": "be brief" }),
                serde_json::json!({ "role": "user", "content": "first question" }),
            ];
            for i in 0..n {
                messages.push(serde_json::json!({ "role": "assistant", "content": format!("answer {i}") }));
                messages.push(serde_json::json!({ "role": "user", "content": format!("follow-up {i}") }));
            }
            serde_json::json!({ "model": "auto", "messages": messages })
                .as_object()
                .unwrap()
                .clone()
        };
        let headers = http::HeaderMap::new();
        assert_eq!(
            conversation_of(&headers, &turn(1)),
            conversation_of(&headers, &turn(3))
        );
        assert!(conversation_of(&headers, &turn(1)).is_some());
        let mut named = http::HeaderMap::new();
        named.insert(CONVERSATION_HEADER, http::HeaderValue::from_static("chat-42"));
        assert_eq!(conversation_of(&named, &turn(0)).as_deref(), Some("id:chat-42"));
    }

    #[test]
    fn conversation_keys() {
        assert_eq!(
            conversation_key(Some("abc"), None, None, 1).as_deref(),
            Some("id:abc")
        );
        assert_eq!(conversation_key(None, Some("sys"), Some("hi"), 0), None);
        let a = conversation_key(None, Some("sys"), Some("hi"), 3);
        assert_eq!(a, conversation_key(None, Some("sys"), Some("hi"), 5));
        assert_ne!(a, conversation_key(None, Some("sys"), Some("hello"), 3));
    }
}
