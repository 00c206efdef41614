-- Teams, users and API keys. Keys are stored as a SHA-256 hash plus a short display prefix; the key itself is
-- shown once, at creation, and never stored.
CREATE TABLE teams (
    name        TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users (
    name        TEXT PRIMARY KEY,
    team        TEXT NOT NULL REFERENCES teams(name),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          UUID PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    user_name   TEXT NOT NULL REFERENCES users(name),
    team        TEXT NOT NULL REFERENCES teams(name),
    label       TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

CREATE INDEX api_keys_team ON api_keys(team);
