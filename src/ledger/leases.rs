//! Budget counters shared by replicas: one row per (budget, window) in `budget_windows`.
//!
//! A replica never asks the database per request. It holds a *lease* — money it may hand to reservations — and
//! calls [`sync`] only to report settled spend, return unused lease, or ask for more. The grant rule keeps
//! `spent + leased ≤ limit` in the database, so the sum of what all replicas may spend stays within the budget.
//! This lives in `ledger` because only `store` and `ledger` write SQL.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Row as _;

use super::sql::{parse_decimal, sqlite_time};
use crate::store::Store;

/// One round trip's worth of changes for one budget window.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRequest {
    pub budget_id: String,
    pub window_start: DateTime<Utc>,
    /// The limit as the current policy states it (policies may change it; the database only keeps counters).
    pub limit: Decimal,
    /// Settled cost since the last sync: moves from `leased` to `spent`.
    pub report: Decimal,
    /// Lease this replica already used without a grant (an outage allowance, or actual cost above the
    /// reservation): added to `leased` whatever the limit, so the counters tell the truth.
    pub forced: Decimal,
    /// Unused lease handed back.
    pub give_back: Decimal,
    /// Lease asked for; granted only if at least `need` is free, and then at most what is free.
    pub want: Decimal,
    pub need: Decimal,
    /// Soft budgets are never refused: they take `want` whatever the limit.
    pub unlimited: bool,
    /// Whose ledger rows a new window starts from. A budget added (or first used) mid-period counts what was
    /// already spent in the period, read once from the ledger when its window row is created.
    pub seed: Option<Seed>,
    /// Who is syncing; each replica's lease is kept in its own row.
    pub replica_id: String,
    /// Leases of other replicas not heard from for this long are reclaimed (their replica died).
    pub lease_ttl: std::time::Duration,
}

/// The ledger rows a budget covers: a team, optionally one user or key of it, in one dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Seed {
    pub team: String,
    pub user: Option<String>,
    pub key_id: Option<String>,
    pub local: bool,
    pub window_end: DateTime<Utc>,
}

/// The counters after a sync.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncResult {
    pub granted: Decimal,
    pub spent: Decimal,
    /// All replicas' leases together.
    pub leased: Decimal,
    /// This replica's lease as the database now records it (grant included).
    pub mine: Decimal,
}

impl SyncResult {
    /// Money no replica holds yet.
    pub fn free(&self, limit: Decimal) -> Decimal {
        limit - self.spent - self.leased
    }
}

/// The counters after a sync, from the window's counters, the other replicas' reclaimed leases already
/// removed, and this replica's own lease row.
fn apply(req: &SyncRequest, spent: Decimal, leased: Decimal, mine: Decimal) -> SyncResult {
    let spent = spent + req.report;
    // A lease reclaimed while this replica was unreachable starts again from zero, never below.
    let mine_after = (mine + req.forced - req.report - req.give_back).max(Decimal::ZERO);
    // Never below zero: a negative total lease would let grants exceed the limit.
    let leased = (leased - mine + mine_after).max(Decimal::ZERO);
    let free = req.limit - spent - leased;
    let granted = if req.want <= Decimal::ZERO {
        Decimal::ZERO
    } else if req.unlimited {
        req.want
    } else if free >= req.need && free > Decimal::ZERO {
        req.want.min(free)
    } else {
        Decimal::ZERO
    };
    SyncResult {
        granted,
        spent,
        leased: leased + granted,
        mine: mine_after + granted,
    }
}

/// Applies a sync atomically (one short transaction holding the window's row lock).
pub async fn sync(store: &Store, req: &SyncRequest) -> Result<SyncResult, sqlx::Error> {
    match store {
        Store::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            match &req.seed {
                None => {
                    sqlx::query(
                        "INSERT INTO budget_windows (budget_id, window_start) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&req.budget_id)
                    .bind(req.window_start)
                    .execute(&mut *tx)
                    .await?;
                }
                Some(seed) => {
                    // Only the first sync of a window pays for the sum (index on team, time; one month's
                    // partition); later ones hit the conflict and skip it.
                    sqlx::query(
                        "INSERT INTO budget_windows (budget_id, window_start, spent) \
                         SELECT $1, $2, coalesce(sum(cost), 0) FROM ledger \
                         WHERE team = $3 AND ($4::text IS NULL OR user_name = $4) \
                           AND ($5::text IS NULL OR key_id = $5) AND local = $6 AND time >= $2 AND time < $7 \
                           AND NOT EXISTS (SELECT 1 FROM budget_windows WHERE budget_id = $1 AND window_start = $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&req.budget_id)
                    .bind(req.window_start)
                    .bind(&seed.team)
                    .bind(&seed.user)
                    .bind(&seed.key_id)
                    .bind(seed.local)
                    .bind(seed.window_end)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let row = sqlx::query(
                "SELECT spent, leased FROM budget_windows WHERE budget_id = $1 AND window_start = $2 FOR UPDATE",
            )
            .bind(&req.budget_id)
            .bind(req.window_start)
            .fetch_one(&mut *tx)
            .await?;
            // The window row lock serialises this with every other replica's sync of the same window.
            let (reclaimed,): (Decimal,) = sqlx::query_as(
                "WITH gone AS (DELETE FROM budget_leases WHERE budget_id = $1 AND window_start = $2 \
                 AND replica_id <> $3 AND heartbeat_at < now() - make_interval(secs => $4) RETURNING leased) \
                 SELECT coalesce(sum(leased), 0) FROM gone",
            )
            .bind(&req.budget_id)
            .bind(req.window_start)
            .bind(&req.replica_id)
            .bind(req.lease_ttl.as_secs_f64())
            .fetch_one(&mut *tx)
            .await?;
            if !reclaimed.is_zero() {
                tracing::warn!(budget = %req.budget_id, amount = %reclaimed, "reclaimed the lease of a silent replica");
            }
            let mine: Option<(Decimal,)> = sqlx::query_as(
                "SELECT leased FROM budget_leases WHERE budget_id = $1 AND window_start = $2 AND replica_id = $3",
            )
            .bind(&req.budget_id)
            .bind(req.window_start)
            .bind(&req.replica_id)
            .fetch_optional(&mut *tx)
            .await?;
            let leased: Decimal = row.try_get("leased")?;
            let result = apply(
                req,
                row.try_get("spent")?,
                leased - reclaimed,
                mine.map_or(Decimal::ZERO, |m| m.0),
            );
            sqlx::query(
                "INSERT INTO budget_leases (budget_id, window_start, replica_id, leased, heartbeat_at) \
                 VALUES ($1, $2, $3, $4, now()) ON CONFLICT (budget_id, window_start, replica_id) \
                 DO UPDATE SET leased = EXCLUDED.leased, heartbeat_at = now()",
            )
            .bind(&req.budget_id)
            .bind(req.window_start)
            .bind(&req.replica_id)
            .bind(result.mine)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE budget_windows SET spent = $3, leased = $4, updated_at = now() \
                 WHERE budget_id = $1 AND window_start = $2",
            )
            .bind(&req.budget_id)
            .bind(req.window_start)
            .bind(result.spent)
            .bind(result.leased)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(result)
        }
        Store::Sqlite(pool) => {
            let start = sqlite_time(&req.window_start);
            let mut tx = pool.begin().await?;
            // A write first, so the transaction holds the write lock before it reads (see `sql::insert_sqlite`).
            let created =
                sqlx::query("INSERT OR IGNORE INTO budget_windows (budget_id, window_start) VALUES (?, ?)")
                    .bind(&req.budget_id)
                    .bind(&start)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
            if created && let Some(seed) = &req.seed {
                let costs: Vec<(String,)> = sqlx::query_as(
                    "SELECT cost FROM ledger WHERE team = ? AND (? IS NULL OR user_name = ?) \
                     AND (? IS NULL OR key_id = ?) AND local = ? AND time >= ? AND time < ?",
                )
                .bind(&seed.team)
                .bind(&seed.user)
                .bind(&seed.user)
                .bind(&seed.key_id)
                .bind(&seed.key_id)
                .bind(seed.local)
                .bind(&start)
                .bind(sqlite_time(&seed.window_end))
                .fetch_all(&mut *tx)
                .await?;
                let mut spent = Decimal::ZERO;
                for (c,) in costs {
                    spent += parse_decimal(&c)?;
                }
                sqlx::query("UPDATE budget_windows SET spent = ? WHERE budget_id = ? AND window_start = ?")
                    .bind(spent.normalize().to_string())
                    .bind(&req.budget_id)
                    .bind(&start)
                    .execute(&mut *tx)
                    .await?;
            }
            let row = sqlx::query(
                "SELECT spent, leased FROM budget_windows WHERE budget_id = ? AND window_start = ?",
            )
            .bind(&req.budget_id)
            .bind(&start)
            .fetch_one(&mut *tx)
            .await?;
            let cutoff = sqlite_time(
                &(Utc::now() - chrono::Duration::from_std(req.lease_ttl).unwrap_or(chrono::Duration::MAX)),
            );
            let gone: Vec<(String,)> = sqlx::query_as(
                "DELETE FROM budget_leases WHERE budget_id = ? AND window_start = ? AND replica_id <> ? \
                 AND heartbeat_at < ? RETURNING leased",
            )
            .bind(&req.budget_id)
            .bind(&start)
            .bind(&req.replica_id)
            .bind(&cutoff)
            .fetch_all(&mut *tx)
            .await?;
            let mut reclaimed = Decimal::ZERO;
            for (l,) in gone {
                reclaimed += parse_decimal(&l)?;
            }
            let mine: Option<(String,)> = sqlx::query_as(
                "SELECT leased FROM budget_leases WHERE budget_id = ? AND window_start = ? AND replica_id = ?",
            )
            .bind(&req.budget_id)
            .bind(&start)
            .bind(&req.replica_id)
            .fetch_optional(&mut *tx)
            .await?;
            let mine = match mine {
                Some((m,)) => parse_decimal(&m)?,
                None => Decimal::ZERO,
            };
            let result = apply(
                req,
                parse_decimal(&row.try_get::<String, _>("spent")?)?,
                parse_decimal(&row.try_get::<String, _>("leased")?)? - reclaimed,
                mine,
            );
            sqlx::query(
                "INSERT INTO budget_leases (budget_id, window_start, replica_id, leased, heartbeat_at) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (budget_id, window_start, replica_id) \
                 DO UPDATE SET leased = excluded.leased, heartbeat_at = excluded.heartbeat_at",
            )
            .bind(&req.budget_id)
            .bind(&start)
            .bind(&req.replica_id)
            .bind(result.mine.normalize().to_string())
            .bind(sqlite_time(&Utc::now()))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE budget_windows SET spent = ?, leased = ? WHERE budget_id = ? AND window_start = ?",
            )
            .bind(result.spent.normalize().to_string())
            .bind(result.leased.normalize().to_string())
            .bind(&req.budget_id)
            .bind(&start)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(result)
        }
    }
}

/// Reads a window's counters without changing them (reports, tests). Zeroes when the window has no row yet.
pub async fn read(
    store: &Store,
    budget_id: &str,
    window_start: DateTime<Utc>,
) -> Result<(Decimal, Decimal), sqlx::Error> {
    match store {
        Store::Postgres(pool) => {
            let row = sqlx::query(
                "SELECT spent, leased FROM budget_windows WHERE budget_id = $1 AND window_start = $2",
            )
            .bind(budget_id)
            .bind(window_start)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok((r.try_get("spent")?, r.try_get("leased")?)),
                None => Ok((Decimal::ZERO, Decimal::ZERO)),
            }
        }
        Store::Sqlite(pool) => {
            let row = sqlx::query(
                "SELECT spent, leased FROM budget_windows WHERE budget_id = ? AND window_start = ?",
            )
            .bind(budget_id)
            .bind(sqlite_time(&window_start))
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok((
                    parse_decimal(&r.try_get::<String, _>("spent")?)?,
                    parse_decimal(&r.try_get::<String, _>("leased")?)?,
                )),
                None => Ok((Decimal::ZERO, Decimal::ZERO)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn req(limit: Decimal, want: Decimal, need: Decimal) -> SyncRequest {
        SyncRequest {
            budget_id: "b".into(),
            window_start: Utc::now(),
            limit,
            report: Decimal::ZERO,
            forced: Decimal::ZERO,
            give_back: Decimal::ZERO,
            want,
            need,
            unlimited: false,
            seed: None,
            replica_id: "r1".into(),
            lease_ttl: std::time::Duration::from_secs(30),
        }
    }

    #[test]
    fn grants_never_exceed_the_limit() {
        let r = apply(
            &req(dec!(1), dec!(0.5), dec!(0.1)),
            dec!(0.3),
            dec!(0.4),
            dec!(0.1),
        );
        assert_eq!(r.granted, dec!(0.3));
        assert_eq!(r.leased, dec!(0.7));
        assert_eq!(r.mine, dec!(0.4));
        let r = apply(
            &req(dec!(1), dec!(0.5), dec!(0.31)),
            dec!(0.3),
            dec!(0.4),
            dec!(0.1),
        );
        assert_eq!(r.granted, Decimal::ZERO);
    }

    #[test]
    fn report_moves_lease_to_spent_and_forced_is_recorded() {
        let mut q = req(dec!(1), Decimal::ZERO, Decimal::ZERO);
        q.report = dec!(0.2);
        q.forced = dec!(0.05);
        q.give_back = dec!(0.1);
        let r = apply(&q, dec!(0.1), dec!(0.5), dec!(0.5));
        assert_eq!(r.spent, dec!(0.3));
        assert_eq!(r.leased, dec!(0.25));
        assert_eq!(r.mine, dec!(0.25));
        // This replica's lease was reclaimed while it was away: its report still counts as spent, and the
        // other replicas' leases are untouched.
        let r = apply(&q, dec!(0.1), dec!(0.4), Decimal::ZERO);
        assert_eq!(r.spent, dec!(0.3));
        assert_eq!(r.leased, dec!(0.4));
        assert_eq!(r.mine, Decimal::ZERO);
    }
}
