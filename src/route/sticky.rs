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
/// given, else a hash of what stays fixed across a chat's turns — the system prompt and the first user message.
/// `None` for a single-turn request without an id (there is nothing to keep warm).
pub fn conversation_key(
    explicit: Option<&str>,
    system: Option<&str>,
    first_user: Option<&str>,
    turns: usize,
) -> Option<String> {
    if let Some(id) = explicit.filter(|s| !s.is_empty()) {
        return Some(format!("id:{}", id.chars().take(128).collect::<String>()));
    }
    if turns < 2 {
        return None;
    }
    let mut h = Sha256::new();
    h.update(system.unwrap_or_default().as_bytes());
    h.update([0]);
    h.update(first_user?.as_bytes());
    Some(format!("h:{}", hex::encode(&h.finalize()[..12])))
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
    fn conversation_keys() {
        assert_eq!(
            conversation_key(Some("abc"), None, None, 1).as_deref(),
            Some("id:abc")
        );
        assert_eq!(conversation_key(None, Some("sys"), Some("hi"), 1), None);
        let a = conversation_key(None, Some("sys"), Some("hi"), 3);
        assert_eq!(a, conversation_key(None, Some("sys"), Some("hi"), 5));
        assert_ne!(a, conversation_key(None, Some("sys"), Some("hello"), 3));
    }
}
