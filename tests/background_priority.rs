//! Background threads run below the proxy's priority (Linux, `switchyard::priority`): the ledger's embedded-database
//! thread 8 nice levels lower (`Store::background_sqlite` opens its connection from a thread that lowered its nice
//! value, and sqlx's worker thread inherits it) and the server's log writer 10 lower. Its own test binary, so that
//! no other test's threads come and go while it counts them, and so that the server's global log subscriber can be
//! installed. The log writer also rests between writes, so that it is not woken once per line.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{eventually, sqlite_store};
use switchyard::config::{LogFormat, LogSettings};

/// (thread name, nice value) from a `/proc/…/stat` file.
fn name_and_nice(stat_file: &std::path::Path) -> Option<(String, i64)> {
    let stat = std::fs::read_to_string(stat_file).ok()?;
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    // Fields after the name start with the state (field 3); the nice value is field 19.
    let nice = tail.split_whitespace().nth(16)?.parse().ok()?;
    Some((name, nice))
}

/// (thread name, nice value) of every thread of this process.
fn threads() -> Vec<(String, i64)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| name_and_nice(&task.ok()?.path().join("stat")))
        .collect()
}

fn this_threads_nice() -> i64 {
    name_and_nice(std::path::Path::new("/proc/thread-self/stat"))
        .unwrap()
        .1
}

fn sqlite_threads_at(nice: i64) -> usize {
    threads()
        .iter()
        .filter(|(name, n)| name.starts_with("sqlx-sqlite") && *n == nice)
        .count()
}

#[tokio::test]
async fn the_ledger_connection_runs_eight_nice_levels_lower() {
    // Low enough that a request preempts it, high enough to keep up with a saturated core (`priority`).
    assert_eq!(switchyard::priority::LEDGER_NICE_OFFSET, 8);
    // The pool's threads are started from this one and inherit its priority.
    let base = this_threads_nice();
    let lowered = (base + i64::from(switchyard::priority::LEDGER_NICE_OFFSET)).min(19);
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    assert!(
        sqlite_threads_at(base) >= 1,
        "the pool's connections run at the process's priority"
    );
    assert_eq!(sqlite_threads_at(lowered), 0);

    let conn = store.background_sqlite().await.expect("a SQLite store").unwrap();
    // A new thread names itself once it first runs, which may be a moment after the connection is handed over.
    eventually(Duration::from_secs(5), || async {
        sqlite_threads_at(lowered) > 0
    })
    .await;
    assert_eq!(sqlite_threads_at(lowered), 1, "{:?}", threads());

    sqlx::Connection::close(conn).await.unwrap();
    eventually(Duration::from_secs(5), || async {
        sqlite_threads_at(lowered) == 0
    })
    .await;
    assert_eq!(
        sqlite_threads_at(lowered),
        0,
        "closing the connection ends its thread"
    );
}

#[test]
fn the_servers_log_writer_runs_ten_nice_levels_lower() {
    let base = this_threads_nice();
    let settings = LogSettings {
        format: LogFormat::Text,
        prompts: false,
    };
    let guard = switchyard::logging::init_server(&settings).unwrap();
    let writers = || -> Vec<i64> {
        threads()
            .into_iter()
            .filter(|(name, _)| name == "log-writer")
            .map(|(_, nice)| nice)
            .collect()
    };
    // The thread names itself once it first runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while writers().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let writers = writers();
    assert_eq!(
        writers,
        vec![(base + i64::from(switchyard::priority::BACKGROUND_NICE_OFFSET)).min(19)],
        "{:?}",
        threads()
    );
    assert_eq!(switchyard::priority::BACKGROUND_NICE_OFFSET, 10);

    // 200 lines a millisecond apart, as requests at 1,000/s log them: the writer, resting 10 ms after each write,
    // is woken a few dozen times, not once a line (about 200 context switches without the rest).
    let before = log_writer_context_switches();
    for i in 0..200 {
        tracing::info!(target: "pace", "line {i}");
        std::thread::sleep(Duration::from_millis(1));
    }
    let switches = log_writer_context_switches() - before;
    assert!(switches < 100, "{switches} context switches for 200 lines");
    drop(guard);
}

/// Voluntary context switches of the `log-writer` thread so far: each time it waited for a line or rested.
fn log_writer_context_switches() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let (name, _) = name_and_nice(&path.join("stat"))?;
            (name == "log-writer").then(|| std::fs::read_to_string(path.join("status")).ok())?
        })
        .flat_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}
