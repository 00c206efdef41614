-- The spend ledger, its daily rollup and the budget counters (SQLite twin of migrations/postgres/0002_ledger.sql).
--
-- Same logical schema. Differences, on purpose: no partitioning (SQLite is the single-node default); times are
-- RFC 3339 UTC text with fixed width so they sort; money is decimal TEXT, because SQLite has no exact decimal
-- type and REAL would round. All arithmetic on money is done in Rust with `rust_decimal`, never in SQL.
CREATE TABLE ledger (
    request_id                TEXT    NOT NULL,
    time                      TEXT    NOT NULL,
    user_name                 TEXT    NOT NULL,
    team                      TEXT    NOT NULL,
    key_id                    TEXT    NOT NULL,
    requested_model           TEXT    NOT NULL,
    routed_model              TEXT    NOT NULL,
    provider                  TEXT    NOT NULL,
    deployment                TEXT    NOT NULL,
    endpoint                  TEXT    NOT NULL,
    input_tokens              INTEGER NOT NULL,
    output_tokens             INTEGER NOT NULL,
    cached_input_tokens       INTEGER NOT NULL,
    cache_write_input_tokens  INTEGER NOT NULL,
    reasoning_tokens          INTEGER NOT NULL,
    estimated                 INTEGER NOT NULL,
    price_input               TEXT    NOT NULL,
    price_output              TEXT    NOT NULL,
    price_cached_input        TEXT    NOT NULL,
    cost                      TEXT    NOT NULL,
    baseline_cost             TEXT    NOT NULL,
    local                     INTEGER NOT NULL,
    difficulty                REAL,
    task                      TEXT,
    route_reason              TEXT    NOT NULL,
    latency_ms                INTEGER NOT NULL,
    ttft_ms                   INTEGER,
    status                    TEXT    NOT NULL,
    http_status               INTEGER NOT NULL,
    PRIMARY KEY (request_id, time)
);

CREATE INDEX ledger_team_time ON ledger (team, time);
CREATE INDEX ledger_user_time ON ledger (user_name, time);

CREATE TABLE ledger_daily (
    day                 TEXT    NOT NULL,
    team                TEXT    NOT NULL,
    user_name           TEXT    NOT NULL,
    key_id              TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    local               INTEGER NOT NULL,
    requests            INTEGER NOT NULL,
    estimated_requests  INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cost                TEXT    NOT NULL,
    baseline_cost       TEXT    NOT NULL,
    PRIMARY KEY (day, team, user_name, key_id, model, local)
);

CREATE TABLE budget_windows (
    budget_id     TEXT NOT NULL,
    window_start  TEXT NOT NULL,
    spent         TEXT NOT NULL DEFAULT '0',
    leased        TEXT NOT NULL DEFAULT '0',
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (budget_id, window_start)
);

CREATE TABLE budget_leases (
    budget_id     TEXT NOT NULL,
    window_start  TEXT NOT NULL,
    replica_id    TEXT NOT NULL,
    leased        TEXT NOT NULL,
    heartbeat_at  TEXT NOT NULL,
    PRIMARY KEY (budget_id, window_start, replica_id)
);
