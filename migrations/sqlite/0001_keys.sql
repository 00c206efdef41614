-- Teams, users and API keys (SQLite twin of migrations/postgres/0001_keys.sql). Times are RFC 3339 UTC text.
CREATE TABLE teams (
    name        TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    team        TEXT NOT NULL REFERENCES teams(name),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    user_name   TEXT NOT NULL REFERENCES users(name),
    team        TEXT NOT NULL REFERENCES teams(name),
    label       TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at  TEXT
);

CREATE INDEX api_keys_team ON api_keys(team);
