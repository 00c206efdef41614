//! The database: Postgres when `database_url` is `postgres://…`, an embedded SQLite file otherwise.
//!
//! Only this module and `ledger` write SQL. Each backend has its own migrations folder
//! (`migrations/postgres`, `migrations/sqlite`) because their types differ (UUID, TIMESTAMPTZ, partitioning);
//! queries are written once per backend where the dialects differ and bound with `bind`, never `format!`.

pub mod keys;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions as _, PgPool, SqliteConnection, SqlitePool};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
}

/// SQLite folds its write-ahead log back into the database file (a checkpoint) once the log holds this many pages
/// (4 KiB each), in the connection that commits: with the ledger, its low-priority writer thread. A checkpoint
/// copies all those pages in one go, and a request thread that is busy (not waking up) does not preempt a running
/// background thread before its time slice ends. At SQLite's default of 1,000 pages a checkpoint kept the core that
/// serves requests for 3 to 4 ms at a time under load, which set the p99 of the requests around it; at 100 pages it
/// takes under 1 ms (bench/README.md), for a few more fsyncs a second at peak.
const WAL_AUTOCHECKPOINT_PAGES: &str = "100";

/// A handle to the database; cheap to clone (pools are reference-counted).
#[derive(Clone, Debug)]
pub enum Store {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Store {
    /// Connects without running migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                // Fail fast when the database is unreachable: callers on the request path fall back to caches
                // and the ledger to its spool, instead of waiting.
                .acquire_timeout(Duration::from_secs(3))
                .connect_with(options)
                .await?;
            Ok(Store::Postgres(pool))
        } else {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
                .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES);
            if let Some(parent) = Path::new(options.get_filename()).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Invalid(format!("cannot create database folder {}: {e}", parent.display()))
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await?;
            Ok(Store::Sqlite(pool))
        }
    }

    /// Connects and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
            Store::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await?,
            Store::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
                return Ok(());
            }
        };
        Ok(())
    }

    /// A SQLite connection of its own for background writers (the ledger), whose worker thread runs
    /// [`crate::priority::LEDGER_NICE_OFFSET`] nice levels below request handling (Linux; elsewhere a plain
    /// connection); `None` for Postgres, whose work runs in the server's processes.
    ///
    /// Why: the embedded database does its work in the proxy's process, on the proxy's cores. Measured with the
    /// proxy on one core, a ledger flush (hundreds of rows) at normal priority held the core for milliseconds at a
    /// time and tripled the p99 of the requests around it.
    pub async fn background_sqlite(&self) -> Option<Result<SqliteConnection, StoreError>> {
        let Store::Sqlite(pool) = self else {
            return None;
        };
        let options = SqliteConnectOptions::clone(&pool.connect_options());
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // sqlx starts the connection's worker thread from the thread that first polls `connect`, and a thread
        // inherits its creator's priority; so the connection is opened from a short-lived thread that lowered its
        // own priority first.
        let spawned = crate::priority::spawn_lowered(
            "sqlite-connect",
            crate::priority::LEDGER_NICE_OFFSET,
            move || {
                drop(tx.send(runtime.block_on(options.connect())));
            },
        );
        if let Err(e) = spawned {
            return Some(Err(StoreError::Sqlx(sqlx::Error::Io(e))));
        }
        Some(match rx.await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Sqlx(sqlx::Error::WorkerCrashed)),
        })
    }

    pub async fn close(&self) {
        match self {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite(pool) => pool.close().await,
        }
    }
}
