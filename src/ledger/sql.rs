//! The ledger's SQL, once per backend. Every value is bound; nothing is formatted into SQL text.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;
use sqlx::{Connection as _, PgPool, QueryBuilder, Row as _, Sqlite, SqliteConnection};

use super::Row;

/// Rows per SQLite insert statement (29 parameters each; SQLite allows 32,766 per statement). Small, so that the
/// database thread gives the core back between statements: with 500-row statements the proxy's p99 at 10,000
/// requests/s on one core was 0.3–0.8 ms higher in interleaved runs.
const SQLITE_CHUNK: usize = 64;
const _: () = assert!(
    SQLITE_CHUNK.is_power_of_two(),
    "sqlite_chunks splits into powers of two"
);

/// Months whose Postgres partition this process has already made sure of.
pub(crate) type KnownPartitions = HashSet<(i32, u32)>;

/// RFC 3339 in UTC with a fixed number of fractional digits, so times stored as SQLite text sort correctly.
pub(crate) fn sqlite_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_decimal(text: &str) -> Result<Decimal, sqlx::Error> {
    Decimal::from_str(text).map_err(|e| sqlx::Error::Decode(format!("bad decimal `{text}`: {e}").into()))
}

/// Where a batch is written.
pub(crate) enum Destination<'a> {
    Postgres(&'a PgPool),
    /// The ledger's own low-priority connection ([`crate::store::Store::background_sqlite`]), or a pooled one.
    Sqlite(&'a mut SqliteConnection),
}

/// Inserts rows, skipping any whose (request id, time) is already stored, and adds the inserted ones to the
/// daily rollup in the same transaction. Returns how many rows were new.
pub(crate) async fn insert(
    destination: Destination<'_>,
    rows: &[Row],
    known: &mut KnownPartitions,
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    match destination {
        Destination::Postgres(pool) => insert_pg(pool, rows, known).await,
        Destination::Sqlite(conn) => insert_sqlite(conn, rows).await,
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The Postgres batch insert, with or without `ON CONFLICT DO NOTHING` (see [`insert_pg`]).
macro_rules! pg_insert {
    ($on_conflict:literal) => {
        concat!(
            r#"
WITH ins AS (
    INSERT INTO ledger (request_id, time, user_name, team, key_id, requested_model, routed_model, provider,
        deployment, endpoint, input_tokens, output_tokens, cached_input_tokens, cache_write_input_tokens,
        reasoning_tokens, estimated, price_input, price_output, price_cached_input, cost, baseline_cost, local,
        difficulty, task, route_reason, latency_ms, ttft_ms, status, http_status)
    SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[],
        $14::bigint[], $15::bigint[], $16::boolean[], $17::numeric[], $18::numeric[], $19::numeric[],
        $20::numeric[], $21::numeric[], $22::boolean[], $23::real[], $24::text[], $25::text[], $26::integer[],
        $27::integer[], $28::text[], $29::integer[])"#,
            $on_conflict,
            r#"
    RETURNING time, team, user_name, key_id, routed_model, local, estimated, input_tokens, output_tokens,
        cached_input_tokens, cost, baseline_cost
), roll AS (
    INSERT INTO ledger_daily AS d (day, team, user_name, key_id, model, local, requests, estimated_requests,
        input_tokens, output_tokens, cached_input_tokens, cost, baseline_cost)
    SELECT (time AT TIME ZONE 'UTC')::date, team, user_name, key_id, routed_model, local, count(*),
        count(*) FILTER (WHERE estimated), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),
        sum(cost), sum(baseline_cost)
    FROM ins
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (day, team, user_name, key_id, model, local) DO UPDATE SET
        requests = d.requests + EXCLUDED.requests,
        estimated_requests = d.estimated_requests + EXCLUDED.estimated_requests,
        input_tokens = d.input_tokens + EXCLUDED.input_tokens,
        output_tokens = d.output_tokens + EXCLUDED.output_tokens,
        cached_input_tokens = d.cached_input_tokens + EXCLUDED.cached_input_tokens,
        cost = d.cost + EXCLUDED.cost,
        baseline_cost = d.baseline_cost + EXCLUDED.baseline_cost
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM roll) AS rolled
"#
        )
    };
}

/// A batch of rows never stored before: the common case, without the cost of speculative insertion.
const PG_INSERT_NEW: &str = pg_insert!("");
/// A batch that may repeat stored rows (a replay after an insert that committed but was not acknowledged).
const PG_INSERT_DEDUP: &str = pg_insert!("\n    ON CONFLICT (request_id, time) DO NOTHING");

async fn insert_pg(pool: &PgPool, rows: &[Row], known: &mut KnownPartitions) -> Result<u64, sqlx::Error> {
    for row in rows {
        let month = (row.time.year(), row.time.month());
        if !known.contains(&month) {
            sqlx::query("SELECT switchyard_ledger_partition($1)")
                .bind(row.time)
                .execute(pool)
                .await?;
            known.insert(month);
        }
    }
    // One statement per batch whatever its size: the columns travel as arrays and UNNEST turns them back into
    // rows. The statement text never changes, so it is prepared once per connection. The second CTE feeds the
    // rollup from RETURNING, i.e. only from rows this statement really inserted; sorting the groups makes
    // concurrent writers (several replicas) lock rollup rows in the same order, so they cannot deadlock.
    //
    // Most batches are new rows, and `ON CONFLICT` on a partitioned table roughly doubles Postgres's CPU per row
    // (speculative insertion), so the plain insert goes first. A duplicate makes the whole statement fail with a
    // unique violation and insert nothing; the batch is then written again skipping the rows already stored.
    match insert_pg_with(pool, rows, PG_INSERT_NEW).await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            insert_pg_with(pool, rows, PG_INSERT_DEDUP).await
        }
        other => other,
    }
}

async fn insert_pg_with(pool: &PgPool, rows: &[Row], sql: &'static str) -> Result<u64, sqlx::Error> {
    let n = rows.len();
    macro_rules! col {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    let result = sqlx::query(sql)
        .bind(col!(|r| r.request_id.as_str()))
        .bind(col!(|r| r.time))
        .bind(col!(|r| r.user.as_str()))
        .bind(col!(|r| r.team.as_str()))
        .bind(col!(|r| r.key_id.as_str()))
        .bind(col!(|r| r.requested_model.as_str()))
        .bind(col!(|r| r.routed_model.as_str()))
        .bind(col!(|r| r.provider.as_str()))
        .bind(col!(|r| r.deployment.as_str()))
        .bind(col!(|r| r.endpoint.as_str()))
        .bind(col!(|r| to_i64(r.input_tokens)))
        .bind(col!(|r| to_i64(r.output_tokens)))
        .bind(col!(|r| to_i64(r.cached_input_tokens)))
        .bind(col!(|r| to_i64(r.cache_write_input_tokens)))
        .bind(col!(|r| to_i64(r.reasoning_tokens)))
        .bind(col!(|r| r.estimated))
        .bind(col!(|r| r.price_input))
        .bind(col!(|r| r.price_output))
        .bind(col!(|r| r.price_cached_input))
        .bind(col!(|r| r.cost))
        .bind(col!(|r| r.baseline_cost))
        .bind(col!(|r| r.local))
        .bind(col!(|r| r.difficulty))
        .bind(col!(|r| r.task.as_deref()))
        .bind(col!(|r| r.route_reason.as_str()))
        .bind(col!(|r| i32::try_from(r.latency_ms).unwrap_or(i32::MAX)))
        .bind(col!(|r| r.ttft_ms.map(|t| i32::try_from(t).unwrap_or(i32::MAX))))
        .bind(col!(|r| r.status.as_str()))
        .bind(col!(|r| i32::from(r.http_status)))
        .fetch_one(pool)
        .await?;
    let inserted: i64 = result.try_get("inserted")?;
    debug_assert!(inserted as usize <= n);
    Ok(inserted.max(0) as u64)
}

/// Rollup key: (day, team, user, key id, model, local).
type RollupKey = (NaiveDate, String, String, String, String, bool);

#[derive(Default)]
struct RollupDelta {
    requests: i64,
    estimated: i64,
    input: i64,
    output: i64,
    cached: i64,
    cost: Decimal,
    baseline: Decimal,
}

/// `rows` in chunks whose sizes are powers of two up to [`SQLITE_CHUNK`], largest first (100 rows: 64, 32, 4), so
/// that the inserts are always one of seven statements.
fn sqlite_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let size = if rows.len() >= SQLITE_CHUNK {
            SQLITE_CHUNK
        } else {
            1 << rows.len().ilog2()
        };
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

/// The SQLite multi-row insert of `chunk`; with `returning`, the statement lists the rows it really inserted.
fn sqlite_insert(chunk: &[Row], returning: bool) -> QueryBuilder<'_, Sqlite> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT OR IGNORE INTO ledger (request_id, time, user_name, team, key_id, requested_model, \
         routed_model, provider, deployment, endpoint, input_tokens, output_tokens, cached_input_tokens, \
         cache_write_input_tokens, reasoning_tokens, estimated, price_input, price_output, \
         price_cached_input, cost, baseline_cost, local, difficulty, task, route_reason, latency_ms, \
         ttft_ms, status, http_status) ",
    );
    qb.push_values(chunk, |mut b, r| {
        b.push_bind(&r.request_id)
            .push_bind(sqlite_time(&r.time))
            .push_bind(&r.user)
            .push_bind(&r.team)
            .push_bind(&r.key_id)
            .push_bind(&r.requested_model)
            .push_bind(&r.routed_model)
            .push_bind(&r.provider)
            .push_bind(&r.deployment)
            .push_bind(&r.endpoint)
            .push_bind(to_i64(r.input_tokens))
            .push_bind(to_i64(r.output_tokens))
            .push_bind(to_i64(r.cached_input_tokens))
            .push_bind(to_i64(r.cache_write_input_tokens))
            .push_bind(to_i64(r.reasoning_tokens))
            .push_bind(r.estimated)
            .push_bind(r.price_input.to_string())
            .push_bind(r.price_output.to_string())
            .push_bind(r.price_cached_input.to_string())
            .push_bind(r.cost.to_string())
            .push_bind(r.baseline_cost.to_string())
            .push_bind(r.local)
            .push_bind(r.difficulty)
            .push_bind(&r.task)
            .push_bind(&r.route_reason)
            .push_bind(i64::from(r.latency_ms))
            .push_bind(r.ttft_ms.map(i64::from))
            .push_bind(r.status.as_str())
            .push_bind(i64::from(r.http_status));
    });
    if returning {
        qb.push(" RETURNING request_id, time");
    }
    qb
}

async fn insert_sqlite(conn: &mut SqliteConnection, rows: &[Row]) -> Result<u64, sqlx::Error> {
    // The INSERT comes first so the transaction holds SQLite's write lock before it reads the rollup: a read
    // first would let another connection commit in between and fail the later write with SQLITE_BUSY.
    //
    // Every statement is a prepared one from the connection's statement cache: the rows go in chunks of a power of
    // two up to SQLITE_CHUNK ([`sqlite_chunks`]), so the cache holds seven statements (about 130 kB) whatever the
    // batch sizes. Caching each batch size (500-row inserts held about half a megabyte each) once grew the process
    // by hundreds of MB; preparing each statement anew cost about 4,700 instructions per row (a fifth of the SQLite
    // thread's time under load), more than the extra statements of a split batch cost.
    //
    // Nearly every batch holds only new rows, so the first try only counts what it inserted. `RETURNING` would
    // send every inserted row back through sqlx's worker channel one at a time (a thread hand-off per row,
    // measured as a fifth of the proxy's CPU under load); it is used only when the count shows that some rows
    // were already stored (a replayed spool segment), to learn which.
    let mut tx = conn.begin().await?;
    let mut affected = 0;
    for chunk in sqlite_chunks(rows) {
        affected += sqlite_insert(chunk, false)
            .build()
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    let new_rows: Vec<&Row> = if affected == rows.len() as u64 {
        rows.iter().collect()
    } else {
        tx.rollback().await?;
        tx = conn.begin().await?;
        let mut inserted: HashSet<(String, String)> = HashSet::new();
        for chunk in rows.chunks(SQLITE_CHUNK) {
            let returned = sqlite_insert(chunk, true)
                .build()
                .persistent(false)
                .fetch_all(&mut *tx)
                .await?;
            for r in returned {
                inserted.insert((r.try_get("request_id")?, r.try_get("time")?));
            }
        }
        rows.iter()
            .filter(|r| inserted.remove(&(r.request_id.clone(), sqlite_time(&r.time))))
            .collect()
    };

    let mut deltas: BTreeMap<RollupKey, RollupDelta> = BTreeMap::new();
    for r in new_rows {
        let key = (
            r.time.date_naive(),
            r.team.clone(),
            r.user.clone(),
            r.key_id.clone(),
            r.routed_model.clone(),
            r.local,
        );
        let d = deltas.entry(key).or_default();
        d.requests += 1;
        d.estimated += i64::from(r.estimated);
        d.input += to_i64(r.input_tokens);
        d.output += to_i64(r.output_tokens);
        d.cached += to_i64(r.cached_input_tokens);
        d.cost += r.cost;
        d.baseline += r.baseline_cost;
    }
    let count: i64 = deltas.values().map(|d| d.requests).sum();
    for ((day, team, user, key_id, model, local), d) in deltas {
        let day = day.format("%Y-%m-%d").to_string();
        // Money is TEXT here (SQLite has no exact decimal), so the sum is done in Rust.
        let existing = sqlx::query(
            "SELECT cost, baseline_cost FROM ledger_daily \
             WHERE day = ? AND team = ? AND user_name = ? AND key_id = ? AND model = ? AND local = ?",
        )
        .bind(&day)
        .bind(&team)
        .bind(&user)
        .bind(&key_id)
        .bind(&model)
        .bind(local)
        .fetch_optional(&mut *tx)
        .await?;
        let (cost, baseline) = match existing {
            Some(row) => (
                parse_decimal(&row.try_get::<String, _>("cost")?)? + d.cost,
                parse_decimal(&row.try_get::<String, _>("baseline_cost")?)? + d.baseline,
            ),
            None => (d.cost, d.baseline),
        };
        sqlx::query(
            "INSERT INTO ledger_daily (day, team, user_name, key_id, model, local, requests, estimated_requests, \
             input_tokens, output_tokens, cached_input_tokens, cost, baseline_cost) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (day, team, user_name, key_id, model, local) DO UPDATE SET \
             requests = requests + excluded.requests, \
             estimated_requests = estimated_requests + excluded.estimated_requests, \
             input_tokens = input_tokens + excluded.input_tokens, \
             output_tokens = output_tokens + excluded.output_tokens, \
             cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens, \
             cost = excluded.cost, baseline_cost = excluded.baseline_cost",
        )
        .bind(&day)
        .bind(&team)
        .bind(&user)
        .bind(&key_id)
        .bind(&model)
        .bind(local)
        .bind(d.requests)
        .bind(d.estimated)
        .bind(d.input)
        .bind(d.output)
        .bind(d.cached)
        .bind(cost.normalize().to_string())
        .bind(baseline.normalize().to_string())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(count.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_chunks_are_powers_of_two_up_to_the_chunk_size_in_order() {
        let sizes = |n: usize| {
            let rows: Vec<usize> = (0..n).collect();
            let chunks: Vec<&[usize]> = sqlite_chunks(&rows).collect();
            assert_eq!(chunks.concat(), rows, "every row once, in order");
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(7), [4, 2, 1]);
        assert_eq!(sizes(64), [64]);
        assert_eq!(sizes(100), [64, 32, 4]);
        assert_eq!(sizes(200), [64, 64, 64, 8]);
    }
}
