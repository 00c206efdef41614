//! The spend ledger against real databases: batching and rollup, exactly-once writes, spool replay after a
//! restart, and a database outage in the middle of traffic. Postgres must run at 127.0.0.1:5432 (trust auth);
//! each test creates its own database. SQLite runs in a tempdir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use support::*;
use switchyard::ledger::{Ledger, Row};
use switchyard::store::Store;

async fn writes_every_row_once_with_rollup(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(store.clone(), &settings(dir.path(), 50)).unwrap();
    let mut expected = Decimal::ZERO;
    for i in 0..2500 {
        let e = entry(i);
        expected += e.cost;
        ledger.record(e);
    }
    ledger.drain().await;
    let stats = ledger.stats();
    assert_eq!(stats.recorded, 2500);
    assert_eq!(stats.written, 2500);
    assert_eq!(stats.spooled, 0);
    // Batches: at most 1,000 rows each.
    assert!(stats.batches >= 3, "{stats:?}");
    assert_eq!(ledger_totals(&store).await, (2500, expected));
    assert_eq!(rollup_totals(&store).await, (2500, expected));
}

#[tokio::test]
async fn postgres_writes_every_row_once_with_rollup() {
    writes_every_row_once_with_rollup(pg_store().await.0).await;
}

#[tokio::test]
async fn sqlite_writes_every_row_once_with_rollup() {
    let dir = tempfile::tempdir().unwrap();
    writes_every_row_once_with_rollup(sqlite_store(dir.path()).await).await;
}

async fn the_same_row_twice_is_stored_once(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(store.clone(), &settings(dir.path(), 20)).unwrap();
    let e = entry(7);
    ledger.record(e.clone());
    ledger.record(e.clone());
    ledger.drain().await;
    drop(ledger);
    // And once more from a later batch, as a replay would.
    let ledger = Ledger::start(store.clone(), &settings(dir.path(), 20)).unwrap();
    ledger.record(e.clone());
    ledger.drain().await;
    assert_eq!(ledger_totals(&store).await, (1, e.cost));
    assert_eq!(rollup_totals(&store).await, (1, e.cost));
}

#[tokio::test]
async fn postgres_the_same_row_twice_is_stored_once() {
    the_same_row_twice_is_stored_once(pg_store().await.0).await;
}

#[tokio::test]
async fn sqlite_the_same_row_twice_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    the_same_row_twice_is_stored_once(sqlite_store(dir.path()).await).await;
}

/// A batch where some rows are already stored (a replayed segment that partly committed) takes the slow path:
/// only its new rows reach the table and the rollup.
async fn a_batch_of_stored_and_new_rows_adds_only_the_new_ones(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<_> = (0..15).map(entry).collect();
    let ledger = Ledger::start(store.clone(), &settings(dir.path(), 20)).unwrap();
    for e in &rows[..10] {
        ledger.record(e.clone());
    }
    ledger.drain().await;
    drop(ledger);
    let ledger = Ledger::start(store.clone(), &settings(dir.path(), 20)).unwrap();
    for e in &rows[5..] {
        ledger.record(e.clone());
    }
    ledger.drain().await;
    let stats = ledger.stats();
    assert_eq!((stats.written, stats.duplicates), (5, 5), "{stats:?}");
    let expected: Decimal = rows.iter().map(|e| e.cost).sum();
    assert_eq!(ledger_totals(&store).await, (15, expected));
    assert_eq!(rollup_totals(&store).await, (15, expected));
}

#[tokio::test]
async fn postgres_a_batch_of_stored_and_new_rows_adds_only_the_new_ones() {
    a_batch_of_stored_and_new_rows_adds_only_the_new_ones(pg_store().await.0).await;
}

#[tokio::test]
async fn sqlite_a_batch_of_stored_and_new_rows_adds_only_the_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    a_batch_of_stored_and_new_rows_adds_only_the_new_ones(sqlite_store(dir.path()).await).await;
}

/// Rows recorded while the database is unreachable survive a graceful restart in the spool and are replayed
/// exactly once — even when a segment is replayed twice (a crash between insert and delete, simulated here by
/// copying a segment).
#[tokio::test]
async fn postgres_spool_replays_exactly_once_after_restart() {
    let (store, url) = pg_store().await;
    let forwarder = Forwarder::start(pg_addr()).await;
    let via = Store::connect(&forwarder.url(&url)).await.unwrap();
    let spool = tempfile::tempdir().unwrap();

    forwarder.stop().await;
    let ledger = Ledger::start(via.clone(), &settings(spool.path(), 20)).unwrap();
    let mut expected = Decimal::ZERO;
    for i in 0..1500 {
        let e = entry(i);
        expected += e.cost;
        ledger.record(e);
    }
    ledger.drain().await;
    let stats = ledger.stats();
    assert_eq!(stats.spooled, 1500, "{stats:?}");
    assert_eq!(stats.written, 0);
    assert_eq!(ledger_totals(&store).await.0, 0);
    drop(ledger);

    // Duplicate the first segment under a later number: its rows will be replayed twice.
    let mut segments = spool_segments(spool.path());
    segments.sort();
    assert!(!segments.is_empty());
    std::fs::copy(&segments[0], spool.path().join("ledger-0000000000009999.jsonl")).unwrap();

    // Restart with the database back.
    forwarder.resume().await;
    let ledger = Ledger::start(store.clone(), &settings(spool.path(), 20)).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            ledger_totals(&store).await.0 == 1500
        })
        .await
    );
    ledger.drain().await;
    assert_eq!(ledger_totals(&store).await, (1500, expected));
    assert_eq!(rollup_totals(&store).await, (1500, expected));
    let stats = ledger.stats();
    assert!(stats.duplicates > 0, "{stats:?}");
    assert_eq!(
        spool_segments(spool.path()),
        Vec::<std::path::PathBuf>::new(),
        "replayed segments are deleted"
    );
}

fn spool_segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("ledger-"))
        .collect()
}

#[tokio::test]
async fn a_spool_folder_serves_one_process_at_a_time() {
    use switchyard::ledger::spool::Spool;
    let dir = tempfile::tempdir().unwrap();
    let first = Spool::open(dir.path()).unwrap();
    let Err(refused) = Spool::open(dir.path()) else {
        panic!("a second spool on the same folder was opened");
    };
    assert_eq!(refused.kind(), std::io::ErrorKind::ResourceBusy);
    let message = refused.to_string();
    assert!(
        message.contains(&format!("process {}", std::process::id())),
        "{message}"
    );
    assert!(message.contains("ledger.spool_dir"), "{message}");
    // Released when the first one closes.
    drop(first);
    Spool::open(dir.path()).unwrap();
}

#[tokio::test]
async fn sqlite_spool_replays_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let spool = tempfile::tempdir().unwrap();
    // A spool left by an earlier run (written through the spool itself, as an outage would).
    let rows: Vec<Row> = (0..700).map(|i| Row::from(entry(i))).collect();
    let expected: Decimal = rows.iter().map(|r| r.cost).sum();
    {
        let s = switchyard::ledger::spool::Spool::open(spool.path()).unwrap();
        s.append(rows.clone()).await.unwrap();
        s.append(rows[..100].to_vec()).await.unwrap();
    }
    let ledger = Ledger::start(store.clone(), &settings(spool.path(), 20)).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            ledger.stats().replayed >= 800
        })
        .await
    );
    ledger.drain().await;
    assert_eq!(ledger_totals(&store).await, (700, expected));
    assert_eq!(rollup_totals(&store).await, (700, expected));
}

/// The database goes away in the middle of steady traffic and comes back: every recorded row ends up stored
/// exactly once, and recording never waits while the database is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_and_duplicates_nothing() {
    let (store, url) = pg_store().await;
    let forwarder = Forwarder::start(pg_addr()).await;
    let via = Store::connect(&forwarder.url(&url)).await.unwrap();
    let spool = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(via, &settings(spool.path(), 50)).unwrap();

    let producer = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            let mut expected = Decimal::ZERO;
            let mut slowest = Duration::ZERO;
            for i in 0..16000u64 {
                let e = entry(i);
                expected += e.cost;
                let t = Instant::now();
                ledger.record(e);
                slowest = slowest.max(t.elapsed());
                if i % 20 == 0 {
                    // About 2,000 rows per second of "traffic".
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            (expected, slowest)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    forwarder.stop().await;
    // Longer than the pool's 3 s acquire timeout, within which sqlx would quietly retry and hide the outage.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    forwarder.resume().await;
    let (expected, slowest) = producer.await.unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async {
            ledger_totals(&store).await.0 == 16000
        })
        .await,
        "stats {:?}, stored {:?}",
        ledger.stats(),
        ledger_totals(&store).await
    );
    ledger.drain().await;
    let stats = ledger.stats();
    eprintln!("outage stats: {stats:?}; slowest record() {slowest:?}");
    assert!(
        stats.spooled > 0 && stats.replayed > 0,
        "the outage must have gone through the spool: {stats:?}"
    );
    assert_eq!(stats.lost, 0);
    assert_eq!(ledger_totals(&store).await, (16000, expected));
    assert_eq!(rollup_totals(&store).await, (16000, expected));
    assert!(
        slowest < Duration::from_millis(20),
        "record() must not wait for the database: {slowest:?}"
    );
}

/// Sum of user + system CPU ticks of every `postgres` process on this machine (the test database is local).
fn postgres_cpu_ticks() -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else { continue };
        if !stat[..close].contains("(postgres") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // Fields after the name: state is [0], utime is [11], stime is [12].
        total += fields.get(11).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        total += fields.get(12).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    }
    total
}

/// Throughput of the writer into Postgres, and Postgres CPU per 1,000 rows (all local postgres processes, so
/// other load on the machine inflates it: an upper bound). Asserts only a floor far below the target load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writer_throughput() {
    let (store, _) = pg_store().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(store.clone(), &settings(dir.path(), 100)).unwrap();
    const N: u64 = 50_000;
    let entries: Vec<_> = (0..N).map(entry).collect();
    let cpu_before = postgres_cpu_ticks();
    let started = Instant::now();
    for e in entries {
        ledger.record(e);
    }
    let recorded = started.elapsed();
    ledger.drain().await;
    let elapsed = started.elapsed();
    let cpu_ticks = postgres_cpu_ticks() - cpu_before;
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let rows_per_s = N as f64 / elapsed.as_secs_f64();
    eprintln!(
        "writer: {N} rows in {elapsed:?} = {rows_per_s:.0} rows/s ({} batches); record() {:.2} µs/row; \
         postgres CPU {:.1} ms per 1,000 rows",
        ledger.stats().batches,
        recorded.as_secs_f64() * 1e6 / N as f64,
        cpu_ticks as f64 / ticks_per_s * 1000.0 / (N as f64 / 1000.0)
    );
    assert_eq!(ledger_totals(&store).await.0, N as i64);
    assert!(rows_per_s > 2_000.0, "{rows_per_s:.0} rows/s");
}

/// `switchyard spend` on the real binary: rows written by the ledger, read back grouped, in all three formats.
#[tokio::test]
async fn the_spend_command_reports_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let ledger = Ledger::start(store.clone(), &settings(&dir.path().join("spool"), 20)).unwrap();
    let mut expected = Decimal::ZERO;
    for i in (0..30).filter(|i| i % 3 == 0) {
        let e = entry(i); // team0
        expected += e.cost;
        ledger.record(e);
    }
    ledger.drain().await;
    store.close().await;
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "database_url: sqlite://{}?mode=rwc\ndeployments:\n  d: {{ kind: openai, base_url: http://127.0.0.1:9/v1 }}\n\
             models:\n  - {{ name: m, deployments: [d], price: {{ input: \"1\", output: \"2\" }} }}\n",
            dir.path().join("switchyard.sqlite").display()
        ),
    )
    .unwrap();
    let run = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "spend",
                "--by",
                "team",
                "--since",
                "30d",
            ])
            .args(["--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(json[0]["key"], "team0");
    assert_eq!(json[0]["requests"], 10);
    assert_eq!(
        json[0]["cost"].as_str().unwrap().parse::<Decimal>().unwrap(),
        expected
    );
    // Baseline is 4× the cost in these rows: 75 % saved.
    assert_eq!(json[0]["savings_pct"], "75.00");
    assert!(run("csv").starts_with("team,requests,input_tokens,output_tokens,spend_usd"));
    assert!(run("table").contains("TOTAL"));
}

/// A SQLite-backed ledger with a flush interval of a minute and the given batch and queue sizes; with its folder
/// (the spool is its `spool` subfolder) and store.
async fn ledger_sized(max_batch: usize, queue_capacity: usize) -> (tempfile::TempDir, Store, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut s = settings(&dir.path().join("spool"), 60_000);
    s.max_batch = max_batch;
    s.queue_capacity = queue_capacity;
    let ledger = Ledger::start(store.clone(), &s).unwrap();
    (dir, store, ledger)
}

/// The writer is not woken for each row: rows wait in the queue until the first of them has waited the flush
/// interval, or until a whole batch is pending, which is then written at once; a queue shorter than a batch
/// wakes it when half full, before rows would overflow into the spool.
#[tokio::test]
async fn a_full_batch_is_written_without_waiting_for_the_flush_interval() {
    let (_dir, _store, ledger) = ledger_sized(10, 100_000).await;
    for i in 0..9 {
        ledger.record(entry(i));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ledger.stats().written,
        0,
        "nine rows of a ten-row batch wait for the flush interval"
    );
    ledger.record(entry(9));
    assert!(
        eventually(Duration::from_secs(5), || async { ledger.stats().written == 10 }).await,
        "the tenth row completes a batch: {:?}",
        ledger.stats()
    );
    for i in 10..25 {
        ledger.record(entry(i));
    }
    assert!(
        eventually(Duration::from_secs(5), || async { ledger.stats().written == 20 }).await,
        "{:?}",
        ledger.stats()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ledger.stats().written,
        20,
        "the last five rows wait for the flush interval"
    );
    ledger.drain().await;
    assert_eq!(ledger.stats().written, 25);
    assert_eq!(ledger.stats().batches, 3);

    // A queue of 8 rows, batches of 1,000: four pending rows wake the writer.
    let (_dir, _store, ledger) = ledger_sized(1000, 8).await;
    for i in 0..3 {
        ledger.record(entry(i));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ledger.stats().written, 0);
    for i in 3..40 {
        ledger.record(entry(i));
        // Paced like traffic, so that the writer gets to run between rows.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    ledger.drain().await;
    let stats = ledger.stats();
    assert_eq!((stats.written, stats.spooled), (40, 0), "{stats:?}");
}

/// Lines in the spool folder's segments.
fn spooled_lines(dir: &std::path::Path) -> usize {
    spool_segments(dir)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum()
}

/// Rows that find the queue full (the database slower than the traffic) go to the spool a group at a time, not
/// one message and one fsync each, and wait there until the writer has caught up; then every row is stored once.
#[tokio::test]
async fn rows_that_find_the_queue_full_are_spooled_in_groups_and_stored_once() {
    let (dir, store, ledger) = ledger_sized(8, 8).await;
    let spool = dir.path().join("spool");
    let entries: Vec<_> = (0..600).map(entry).collect();
    let expected: Decimal = entries.iter().map(|e| e.cost).sum();
    // Recorded without yielding to the runtime, so the writer cannot take any: all but the queue's 8 overflow.
    for e in entries {
        ledger.record(e);
    }
    // The spool has a thread of its own; give it time to write, still without letting the writer run.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        spooled_lines(&spool),
        512,
        "two full groups of 256 are spooled; the other 80 rows wait for the writer"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            ledger_totals(&store).await.0 == 600
        })
        .await,
        "{:?}",
        ledger.stats()
    );
    ledger.drain().await;
    let stats = ledger.stats();
    assert_eq!(
        (stats.written, stats.spooled, stats.replayed, stats.lost),
        (600, 592, 592, 0),
        "{stats:?}"
    );
    assert_eq!(ledger_totals(&store).await, (600, expected));
    assert_eq!(rollup_totals(&store).await, (600, expected));
    assert_eq!(spool_segments(&spool), Vec::<std::path::PathBuf>::new());
}

/// Several batches pending at once are written one after the other: the writer waits for the flush interval only
/// when less than a batch is pending.
#[tokio::test]
async fn batches_pending_at_once_are_written_without_waiting() {
    let (_dir, _store, ledger) = ledger_sized(8, 100).await;
    for i in 0..24 {
        ledger.record(entry(i));
    }
    assert!(
        eventually(Duration::from_secs(5), || async { ledger.stats().written == 24 }).await,
        "three batches were pending; the flush interval is a minute: {:?}",
        ledger.stats()
    );
    assert_eq!(ledger.stats().batches, 3);
    ledger.drain().await;
}

/// A replay reads a whole segment into memory, so a segment is closed once it holds 10,000 rows, however long the
/// database stays away or behind.
#[tokio::test]
async fn a_spool_segment_is_closed_after_ten_thousand_rows() {
    use switchyard::ledger::spool::Spool;
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let rows: Vec<Row> = (0..4000).map(|i| Row::from(entry(i))).collect();
    for _ in 0..6 {
        spool.append(rows.clone()).await.unwrap();
    }
    let mut sizes = Vec::new();
    for path in spool.rotate().await.unwrap() {
        sizes.push(Spool::read(path).await.unwrap().rows.len());
    }
    assert_eq!(
        sizes,
        [12_000, 12_000],
        "each segment is closed by the append that takes it past 10,000 rows"
    );
}
