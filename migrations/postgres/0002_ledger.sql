-- The spend ledger, its daily rollup, and the shared budget counters.
--
-- `ledger` is append-only and range-partitioned by month on `time`, so a month is one table (cheap to scan for
-- reports, cheap to detach or archive) and the indexes stay small at 100 million rows. Partitions are created on
-- demand by `switchyard_ledger_partition()`, which the ledger writer calls once per month it sees.
--
-- A row is identified by (request_id, time): the writer never changes a row's time, so a row replayed from the
-- spool after an outage carries the same key and `ON CONFLICT DO NOTHING` drops the duplicate. (A unique
-- constraint on a partitioned table must include the partition key, hence `time` in it.)
--
-- Money is NUMERIC without a fixed scale: exact, and never rounded on the way in.
CREATE TABLE ledger (
    request_id                TEXT        NOT NULL,
    time                      TIMESTAMPTZ NOT NULL,
    user_name                 TEXT        NOT NULL,
    team                      TEXT        NOT NULL,
    key_id                    TEXT        NOT NULL,
    requested_model           TEXT        NOT NULL,
    routed_model              TEXT        NOT NULL,
    provider                  TEXT        NOT NULL,
    deployment                TEXT        NOT NULL,
    endpoint                  TEXT        NOT NULL,
    input_tokens              BIGINT      NOT NULL,
    output_tokens             BIGINT      NOT NULL,
    cached_input_tokens       BIGINT      NOT NULL,
    cache_write_input_tokens  BIGINT      NOT NULL,
    reasoning_tokens          BIGINT      NOT NULL,
    estimated                 BOOLEAN     NOT NULL,
    price_input               NUMERIC     NOT NULL,
    price_output              NUMERIC     NOT NULL,
    price_cached_input        NUMERIC     NOT NULL,
    cost                      NUMERIC     NOT NULL,
    baseline_cost             NUMERIC     NOT NULL,
    local                     BOOLEAN     NOT NULL,
    difficulty                REAL,
    task                      TEXT,
    route_reason              TEXT        NOT NULL,
    latency_ms                INTEGER     NOT NULL,
    ttft_ms                   INTEGER,
    status                    TEXT        NOT NULL,
    http_status               INTEGER     NOT NULL,
    PRIMARY KEY (request_id, time)
) PARTITION BY RANGE (time);

-- Per-team and per-user drill-downs within a month; the time prefix of each partition does the rest.
CREATE INDEX ledger_team_time ON ledger (team, time);
CREATE INDEX ledger_user_time ON ledger (user_name, time);

-- Creates the month partition holding `ts` unless it exists. Concurrent callers (several replicas) are fine:
-- the loser of the race sees `duplicate_table` and returns.
CREATE FUNCTION switchyard_ledger_partition(ts TIMESTAMPTZ) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    lo   TIMESTAMPTZ := date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi   TIMESTAMPTZ := (date_trunc('month', ts AT TIME ZONE 'UTC') + INTERVAL '1 month') AT TIME ZONE 'UTC';
    name TEXT := 'ledger_' || to_char(ts AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF ledger FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
EXCEPTION WHEN duplicate_table THEN
    RETURN;
END;
$$;

-- Daily rollup (UTC days), maintained by the writer in the same statement that inserts the rows and only for
-- rows actually inserted, so it is exact and never double-counts a replayed row. Reports read this, not `ledger`.
CREATE TABLE ledger_daily (
    day                 DATE    NOT NULL,
    team                TEXT    NOT NULL,
    user_name           TEXT    NOT NULL,
    key_id              TEXT    NOT NULL,
    model               TEXT    NOT NULL,
    local               BOOLEAN NOT NULL,
    requests            BIGINT  NOT NULL,
    estimated_requests  BIGINT  NOT NULL,
    input_tokens        BIGINT  NOT NULL,
    output_tokens       BIGINT  NOT NULL,
    cached_input_tokens BIGINT  NOT NULL,
    cost                NUMERIC NOT NULL,
    baseline_cost       NUMERIC NOT NULL,
    PRIMARY KEY (day, team, user_name, key_id, model, local)
);

-- One row per budget and period window, shared by all replicas. `spent` is settled cost; `leased` is money
-- handed to replicas and not yet settled or returned. A grant never takes `spent + leased` above the limit, so
-- replicas enforce the budget locally from their lease with no database round trip per request.
CREATE TABLE budget_windows (
    budget_id     TEXT        NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL,
    spent         NUMERIC     NOT NULL DEFAULT 0,
    leased        NUMERIC     NOT NULL DEFAULT 0,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (budget_id, window_start)
);

-- Each replica's share of `budget_windows.leased`, with a heartbeat. A replica that dies holding a lease would
-- otherwise strand it until the window ends; any replica's next sync reclaims leases whose heartbeat is older
-- than the lease TTL. `budget_windows.leased` is always the sum of these rows.
CREATE TABLE budget_leases (
    budget_id     TEXT        NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL,
    replica_id    TEXT        NOT NULL,
    leased        NUMERIC     NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (budget_id, window_start, replica_id)
);
