//! Pipeline stage 1: API key → [`Principal`].
//!
//! Lookups are cached (moka) by key hash. An entry is trusted for [`REFRESH_AFTER`]; after that the next request
//! re-reads it from the store, so a revoked key stops working within seconds. When the store is unreachable the
//! last known answer is kept: valid keys keep being served during a database outage, and a key never seen before
//! is refused with 503 rather than let through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use moka::future::Cache;

use crate::error::{Error, ErrorKind};
use crate::store::Store;
use crate::store::keys::{KeyRecord, hash_key};

/// How long a cached answer is used before it is checked against the store again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(2);
/// How long an unused entry stays as the fallback for a database outage.
const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// Who is calling: the unit of policy, budgets and the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub key_prefix: String,
    pub user: String,
    pub team: String,
}

impl From<&KeyRecord> for Principal {
    fn from(k: &KeyRecord) -> Self {
        Principal {
            key_id: k.id.clone(),
            key_prefix: k.prefix.clone(),
            user: k.user.clone(),
            team: k.team.clone(),
        }
    }
}

#[derive(Clone)]
struct Cached {
    principal: Option<Arc<Principal>>,
    fetched: Instant,
}

/// Resolves keys to principals.
#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    cache: Cache<String, Cached>,
}

/// Takes the key from `Authorization: Bearer …` (OpenAI clients) or `x-api-key` (Anthropic clients).
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        let cache = Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(KEEP_FOR)
            .build();
        Authenticator { store, cache }
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, Error> {
        let Some(key) = presented_key(headers) else {
            return Err(Error::unauthorized(
                "Missing API key. Send it as `Authorization: Bearer <key>` (or `x-api-key` for Anthropic clients).",
            ));
        };
        let hash = hash_key(key);
        let cached = self.cache.get(&hash).await;
        let fresh = cached
            .as_ref()
            .is_some_and(|c| c.fetched.elapsed() < REFRESH_AFTER);
        let entry = if fresh {
            cached
        } else {
            match self.store.find_key(&hash).await {
                Ok(record) => {
                    let principal = record
                        .filter(KeyRecord::is_active)
                        .map(|r| Arc::new(Principal::from(&r)));
                    let entry = Cached {
                        principal,
                        fetched: Instant::now(),
                    };
                    self.cache.insert(hash, entry.clone()).await;
                    Some(entry)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "key lookup failed; using the cached answer if there is one");
                    if cached.is_none() {
                        return Err(Error::new(
                            ErrorKind::Unavailable,
                            "The key store is unavailable and this key is not cached. Retry shortly.",
                        ));
                    }
                    cached
                }
            }
        };
        match entry.and_then(|e| e.principal) {
            Some(p) => Ok(p),
            None => Err(Error::unauthorized("Incorrect API key provided.")),
        }
    }

    /// Forgets every cached answer (after `keys revoke` through the admin API).
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_read_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", "sy-abc".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sy-abc"));
        h.insert(http::header::AUTHORIZATION, "Bearer sy-xyz".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sy-xyz"));
        h.insert(http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sy-abc"));
    }
}
