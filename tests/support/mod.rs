//! Shared helpers for the ledger and budget tests: a fresh Postgres database per test, SQLite in a tempdir,
//! ledger entries, and a TCP forwarder that can cut the database off and bring it back.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rust_decimal::Decimal;
use switchyard::config::LedgerSettings;
use switchyard::ledger::{LedgerEntry, Status};
use switchyard::store::Store;
use switchyard::usage::Usage;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// The test Postgres, as `scripts/test.sh` exports it (default: the local server with trust auth).
pub fn pg_base() -> String {
    std::env::var("SWITCHYARD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Creates an empty database `sy_ledger_test_<random>` and returns its URL. Each test gets its own, so tests run in
/// parallel without seeing each other's rows. (Databases are left behind for inspection; names are random.)
pub async fn fresh_pg_url() -> String {
    let name = format!("sy_ledger_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&format!("{}/postgres", pg_base()))
        .await
        .expect("Postgres must run at 127.0.0.1:5432 with trust auth (see the test docs)");
    // CREATE DATABASE takes no bind parameters; the name is generated here, not user data.
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    format!("{}/{name}", pg_base())
}

pub async fn pg_store() -> (Store, String) {
    let url = fresh_pg_url().await;
    (Store::open(&url).await.unwrap(), url)
}

pub async fn sqlite_store(dir: &Path) -> Store {
    let url = format!("sqlite://{}?mode=rwc", dir.join("switchyard.sqlite").display());
    Store::open(&url).await.unwrap()
}

pub fn settings(spool: &Path, flush_ms: u64) -> LedgerSettings {
    LedgerSettings {
        enabled: true,
        flush_interval: Duration::from_millis(flush_ms),
        max_batch: 1000,
        queue_capacity: 100_000,
        spool_dir: spool.to_owned(),
    }
}

/// A plausible row; cost varies with `i` so sums catch a lost or doubled row.
pub fn entry(i: u64) -> LedgerEntry {
    let input = 100 + i % 17;
    let output = 20 + i % 13;
    let cost = Decimal::new((input * 250 + output * 1000) as i64, 8);
    LedgerEntry {
        request_id: format!("req-{i:08}-{}", uuid::Uuid::new_v4().simple()),
        time: Utc::now(),
        user: format!("user{}", i % 5),
        team: format!("team{}", i % 3),
        key_id: format!("key{}", i % 7),
        requested_model: "auto".into(),
        routed_model: if i.is_multiple_of(4) {
            "local-llama".into()
        } else {
            "gpt-4o-mini".into()
        },
        provider: "openai".into(),
        deployment: "openai-main".into(),
        endpoint: "chat_completions",
        usage: Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        },
        estimated: i.is_multiple_of(10),
        price_input: Decimal::new(250, 2),
        price_output: Decimal::new(1000, 2),
        price_cached_input: Decimal::new(125, 2),
        cost,
        baseline_cost: cost * Decimal::new(4, 0),
        local: i.is_multiple_of(4),
        difficulty: Some(0.25),
        task: Some("chat".into()),
        route_reason: "cheapest qualifying".into(),
        latency_ms: 120,
        ttft_ms: Some(40),
        status: Status::Ok,
        http_status: 200,
        overhead_us: 900,
    }
}

/// (rows, sum of cost as text) in the ledger table.
pub async fn ledger_totals(store: &Store) -> (i64, Decimal) {
    match store {
        Store::Postgres(pool) => {
            let (n, cost): (i64, Option<Decimal>) = sqlx::query_as("SELECT count(*), sum(cost) FROM ledger")
                .fetch_one(pool)
                .await
                .unwrap();
            (n, cost.unwrap_or_default())
        }
        Store::Sqlite(pool) => {
            let costs: Vec<(String,)> = sqlx::query_as("SELECT cost FROM ledger")
                .fetch_all(pool)
                .await
                .unwrap();
            let sum = costs.iter().map(|(c,)| c.parse::<Decimal>().unwrap()).sum();
            (costs.len() as i64, sum)
        }
    }
}

/// (requests, sum of cost) in the daily rollup.
pub async fn rollup_totals(store: &Store) -> (i64, Decimal) {
    match store {
        Store::Postgres(pool) => {
            let (n, cost): (Option<Decimal>, Option<Decimal>) =
                sqlx::query_as("SELECT sum(requests), sum(cost) FROM ledger_daily")
                    .fetch_one(pool)
                    .await
                    .unwrap();
            (
                n.map(|d| d.try_into().unwrap()).unwrap_or(0),
                cost.unwrap_or_default(),
            )
        }
        Store::Sqlite(pool) => {
            let rows: Vec<(i64, String)> = sqlx::query_as("SELECT requests, cost FROM ledger_daily")
                .fetch_all(pool)
                .await
                .unwrap();
            (
                rows.iter().map(|r| r.0).sum(),
                rows.iter().map(|r| r.1.parse::<Decimal>().unwrap()).sum(),
            )
        }
    }
}

/// Polls `check` until it holds or `within` passes; returns whether it held. (Polling a condition with a
/// deadline, not sleeping for a guessed time.)
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP forwarder in front of Postgres that the test can stop (every connection cut, new ones refused) and
/// start again on the same port: a database outage on demand.
pub struct Forwarder {
    pub addr: SocketAddr,
    target: SocketAddr,
    running: Mutex<Option<CancellationToken>>,
}

impl Forwarder {
    pub async fn start(target: SocketAddr) -> Arc<Forwarder> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let f = Arc::new(Forwarder {
            addr,
            target,
            running: Mutex::new(None),
        });
        f.serve(listener).await;
        f
    }

    async fn serve(&self, listener: TcpListener) {
        let token = CancellationToken::new();
        let target = self.target;
        let t = token.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = t.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let t = t.clone();
                        tokio::spawn(async move {
                            let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                            tokio::select! {
                                _ = t.cancelled() => {}
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            }
                        });
                    }
                }
            }
        });
        *self.running.lock().await = Some(token);
    }

    /// Cuts every connection and refuses new ones.
    pub async fn stop(&self) {
        if let Some(t) = self.running.lock().await.take() {
            t.cancel();
        }
        // Let the accept loop drop its listener before the caller goes on.
        tokio::task::yield_now().await;
    }

    /// Listens again on the same port.
    pub async fn resume(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot re-bind forwarder: {e}"),
            }
        };
        self.serve(listener).await;
    }

    /// The database URL through this forwarder.
    pub fn url(&self, direct_url: &str) -> String {
        direct_url.replace(&pg_host_port(), &self.addr.to_string())
    }
}

/// `host:port` of the test Postgres (an IP address: the forwarder connects to it directly).
fn pg_host_port() -> String {
    let base = pg_base();
    let after_at = base.rsplit('@').next().unwrap_or(&base).to_owned();
    after_at
        .trim_start_matches("postgres://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5432")
        .to_owned()
}

pub fn pg_addr() -> SocketAddr {
    pg_host_port()
        .parse()
        .expect("SWITCHYARD_TEST_PG must name the server by IP address and port")
}
