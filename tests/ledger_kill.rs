//! `kill -9` in the middle of traffic: what is lost is at most the rows of the last flush interval.
//!
//! The test re-runs its own binary as a child that records rows at a steady rate and prints each id once
//! `record()` has returned; the parent kills it with SIGKILL, replays whatever the child left in its spool, and
//! counts which printed ids never reached Postgres. It prints the measured window.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use support::*;
use switchyard::ledger::Ledger;
use switchyard::store::Store;

const CHILD: &str = "SY_LEDGER_KILL_CHILD";
const FLUSH_MS: u64 = 100;

/// The child: only does anything when the parent started it.
#[tokio::test]
async fn kill_child_writer() {
    let Ok(url) = std::env::var(CHILD) else { return };
    let spool = std::env::var("SY_LEDGER_KILL_SPOOL").unwrap();
    let store = Store::connect(&url).await.unwrap();
    let ledger = Ledger::start(store, &settings(std::path::Path::new(&spool), FLUSH_MS)).unwrap();
    for i in 0u64.. {
        let mut e = entry(i);
        e.request_id = format!("kill-{i:08}");
        ledger.record(e);
        println!("recorded {i}");
        if i % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[tokio::test]
async fn kill_minus_nine_loses_at_most_one_flush_interval() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let (store, url) = pg_store().await;
    let spool = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["kill_child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, &url)
        .env("SY_LEDGER_KILL_SPOOL", spool.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let last = Arc::new(AtomicI64::new(-1));
    let started = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let reader = {
        let (last, started) = (last.clone(), started.clone());
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("recorded ").and_then(|n| n.parse::<i64>().ok()) {
                    started.lock().unwrap().get_or_insert_with(Instant::now);
                    last.store(n, Ordering::SeqCst);
                }
            }
        })
    };
    assert!(
        eventually(Duration::from_secs(60), || async {
            last.load(Ordering::SeqCst) >= 4000
        })
        .await
    );
    child.kill().unwrap(); // SIGKILL
    let killed_at = Instant::now();
    child.wait().unwrap();
    reader.join().unwrap();
    let last = last.load(Ordering::SeqCst);
    let elapsed = killed_at.duration_since(started.lock().unwrap().unwrap());
    let rate = last as f64 / elapsed.as_secs_f64();

    // Whatever the child spooled (fsync'd) is recovered by the next start.
    let ledger = Ledger::start(store.clone(), &settings(spool.path(), FLUSH_MS)).unwrap();
    ledger.drain().await;
    let Store::Postgres(pool) = &store else {
        unreachable!()
    };
    let (present,): (i64,) = sqlx::query_as("SELECT count(*) FROM ledger WHERE request_id <= $1")
        .bind(format!("kill-{last:08}"))
        .fetch_one(pool)
        .await
        .unwrap();
    let (dups,): (i64,) = sqlx::query_as("SELECT count(*) - count(DISTINCT request_id) FROM ledger")
        .fetch_one(pool)
        .await
        .unwrap();
    let missing = (last + 1) - present;
    let window_ms = missing as f64 / rate * 1000.0;
    eprintln!(
        "kill -9: {} rows recorded at {rate:.0} rows/s, {missing} missing after SIGKILL = {window_ms:.0} ms of traffic \
         (flush interval {FLUSH_MS} ms)",
        last + 1
    );
    assert_eq!(dups, 0);
    assert!(missing >= 0);
    // One flush interval, plus the insert in flight and scheduling slack on a loaded 2-core machine.
    assert!(
        window_ms <= (FLUSH_MS as f64) * 2.5,
        "lost {window_ms:.0} ms of rows"
    );
}
