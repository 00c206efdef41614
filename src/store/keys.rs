//! Teams, users and API keys.
//!
//! A key is `sy-` followed by 43 random base62 characters (about 256 bits). Only its SHA-256 hash and a short
//! display prefix are stored. A plain hash is the right tool here, unlike for passwords: the key is random and
//! long, so there is nothing to brute-force, and the lookup must stay fast on the hot path.

use chrono::{DateTime, Utc};
use rand::Rng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Store, StoreError};

const KEY_PREFIX: &str = "sy-";
const KEY_RANDOM_LEN: usize = 43;
const DISPLAY_PREFIX_LEN: usize = 11;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a key resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub prefix: String,
    pub user: String,
    pub team: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl KeyRecord {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// A freshly created key: the only moment the plaintext exists.
pub struct NewKey {
    pub record: KeyRecord,
    pub plaintext: String,
}

pub fn hash_key(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

fn generate_key() -> String {
    let mut rng = rand::rng();
    let random: String = (0..KEY_RANDOM_LEN)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    format!("{KEY_PREFIX}{random}")
}

fn valid_name(kind: &str, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{kind} name `{name}` must be 1-64 characters of letters, digits, '-', '_', '.', '@'"
        )))
    }
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Invalid(format!("bad timestamp `{text}` in database: {e}")))
}

type SqliteKeyRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
);

fn sqlite_row(row: SqliteKeyRow) -> Result<KeyRecord, StoreError> {
    let (id, prefix, user, team, label, created_at, revoked_at) = row;
    Ok(KeyRecord {
        id,
        prefix,
        user,
        team,
        label,
        created_at: parse_time(&created_at)?,
        revoked_at: revoked_at.as_deref().map(parse_time).transpose()?,
    })
}

type PgKeyRow = (
    Uuid,
    String,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

fn pg_row(row: PgKeyRow) -> KeyRecord {
    let (id, prefix, user, team, label, created_at, revoked_at) = row;
    KeyRecord {
        id: id.to_string(),
        prefix,
        user,
        team,
        label,
        created_at,
        revoked_at,
    }
}

impl Store {
    /// Creates the team and user if they do not exist yet, then a key for the user. A user belongs to one
    /// team; asking for a key in another team is an error rather than a silent move.
    pub async fn create_key(
        &self,
        user: &str,
        team: &str,
        label: Option<&str>,
    ) -> Result<NewKey, StoreError> {
        valid_name("user", user)?;
        valid_name("team", team)?;
        let plaintext = generate_key();
        let hash = hash_key(&plaintext);
        let prefix = plaintext[..DISPLAY_PREFIX_LEN].to_owned();
        let id = Uuid::now_v7();
        let now = Utc::now();
        let existing_team: Option<String> = match self {
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("INSERT INTO teams (name) VALUES ($1) ON CONFLICT DO NOTHING")
                    .bind(team)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO users (name, team) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(user)
                    .bind(team)
                    .execute(&mut *tx)
                    .await?;
                let existing: (String,) = sqlx::query_as("SELECT team FROM users WHERE name = $1")
                    .bind(user)
                    .fetch_one(&mut *tx)
                    .await?;
                if existing.0 == team {
                    sqlx::query(
                        "INSERT INTO api_keys (id, key_hash, prefix, user_name, team, label, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(id)
                    .bind(&hash)
                    .bind(&prefix)
                    .bind(user)
                    .bind(team)
                    .bind(label)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    None
                } else {
                    Some(existing.0)
                }
            }
            Store::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("INSERT INTO teams (name) VALUES (?) ON CONFLICT DO NOTHING")
                    .bind(team)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO users (name, team) VALUES (?, ?) ON CONFLICT DO NOTHING")
                    .bind(user)
                    .bind(team)
                    .execute(&mut *tx)
                    .await?;
                let existing: (String,) = sqlx::query_as("SELECT team FROM users WHERE name = ?")
                    .bind(user)
                    .fetch_one(&mut *tx)
                    .await?;
                if existing.0 == team {
                    sqlx::query(
                        "INSERT INTO api_keys (id, key_hash, prefix, user_name, team, label, created_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(id.to_string())
                    .bind(&hash)
                    .bind(&prefix)
                    .bind(user)
                    .bind(team)
                    .bind(label)
                    .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    None
                } else {
                    Some(existing.0)
                }
            }
        };
        if let Some(other) = existing_team {
            return Err(StoreError::Invalid(format!(
                "user `{user}` already belongs to team `{other}`"
            )));
        }
        let record = KeyRecord {
            id: id.to_string(),
            prefix,
            user: user.to_owned(),
            team: team.to_owned(),
            label: label.map(str::to_owned),
            created_at: now,
            revoked_at: None,
        };
        Ok(NewKey { record, plaintext })
    }

    /// Looks a key up by the hash of its plaintext. Revoked keys are returned too; the caller decides.
    pub async fn find_key(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        match self {
            Store::Postgres(pool) => {
                let row: Option<PgKeyRow> =
                    sqlx::query_as(
                        "SELECT id, prefix, user_name, team, label, created_at, revoked_at FROM api_keys WHERE key_hash = $1",
                    )
                        .bind(key_hash)
                        .fetch_optional(pool)
                        .await?;
                Ok(row.map(pg_row))
            }
            Store::Sqlite(pool) => {
                let row: Option<SqliteKeyRow> =
                    sqlx::query_as(
                        "SELECT id, prefix, user_name, team, label, created_at, revoked_at FROM api_keys WHERE key_hash = ?",
                    )
                        .bind(key_hash)
                        .fetch_optional(pool)
                        .await?;
                row.map(sqlite_row).transpose()
            }
        }
    }

    /// All keys, optionally of one team, newest first.
    pub async fn list_keys(&self, team: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        match self {
            Store::Postgres(pool) => {
                let rows: Vec<PgKeyRow> = sqlx::query_as(
                    "SELECT id, prefix, user_name, team, label, created_at, revoked_at FROM api_keys \
                     WHERE ($1::text IS NULL OR team = $1) ORDER BY created_at DESC",
                )
                .bind(team)
                .fetch_all(pool)
                .await?;
                Ok(rows.into_iter().map(pg_row).collect())
            }
            Store::Sqlite(pool) => {
                let rows: Vec<SqliteKeyRow> = sqlx::query_as(
                    "SELECT id, prefix, user_name, team, label, created_at, revoked_at FROM api_keys \
                     WHERE (?1 IS NULL OR team = ?1) ORDER BY created_at DESC",
                )
                .bind(team)
                .fetch_all(pool)
                .await?;
                rows.into_iter().map(sqlite_row).collect()
            }
        }
    }

    /// Revokes a key by id or display prefix. Returns the revoked key.
    pub async fn revoke_key(&self, id_or_prefix: &str) -> Result<KeyRecord, StoreError> {
        let keys = self.list_keys(None).await?;
        let matches: Vec<&KeyRecord> = keys
            .iter()
            .filter(|k| k.id == id_or_prefix || k.prefix == id_or_prefix)
            .collect();
        let key = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(StoreError::NotFound(format!(
                    "no key with id or prefix `{id_or_prefix}`"
                )));
            }
            _ => {
                return Err(StoreError::Invalid(format!(
                    "`{id_or_prefix}` matches several keys: use the id"
                )));
            }
        };
        let now = Utc::now();
        match self {
            Store::Postgres(pool) => {
                let id = Uuid::parse_str(&key.id).map_err(|e| StoreError::Invalid(e.to_string()))?;
                sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(id)
                    .execute(pool)
                    .await?;
            }
            Store::Sqlite(pool) => {
                sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                    .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    .bind(&key.id)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(KeyRecord {
            revoked_at: Some(key.revoked_at.unwrap_or(now)),
            ..key
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_long_random_and_prefixed() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + KEY_RANDOM_LEN);
        assert_eq!(hash_key(&a).len(), 64);
        assert_ne!(hash_key(&a), hash_key(&b));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("team", "marketing").is_ok());
        assert!(valid_name("user", "alice@example.com").is_ok());
        assert!(valid_name("team", "").is_err());
        assert!(valid_name("team", "a b").is_err());
        assert!(valid_name("team", "x'; DROP TABLE teams;--").is_err());
    }
}
