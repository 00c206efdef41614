//! Three replicas as three real processes sharing one Postgres and one small budget: each re-runs this test
//! binary as a child with its own budget enforcer, ledger and connection pool; all fire their requests at once
//! on the parent's signal. Total recorded spend must stay within budget + replicas × one reservation, and every
//! refusal must be the 429 `budget_exceeded` naming the budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use support::*;
use switchyard::auth::Principal;
use switchyard::budget::{BudgetScope, BudgetSpec, Budgets, Dimension, LeaseSettings, OnExhausted, Period};
use switchyard::error::Error;
use switchyard::ledger::Ledger;
use switchyard::store::Store;

const CHILD: &str = "SY_BUDGET_REPLICA_CHILD";
const REPLICAS: usize = 3;
const PER_REPLICA: usize = 120;
const BUDGET: Decimal = dec!(2);
const RESERVATION: Decimal = dec!(0.02);

fn specs() -> Vec<BudgetSpec> {
    vec![BudgetSpec {
        name: "eng-monthly".into(),
        scope: BudgetScope::Team,
        subject: None,
        period: Period::Monthly,
        limit: BUDGET,
        hard: true,
        on_exhausted: OnExhausted::Block,
        tz: chrono_tz::UTC,
        dimension: Dimension::Api,
    }]
}

/// One replica: waits for "go" on stdin, fires its requests concurrently, prints `served N refused M bad K`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_child() {
    let Ok(url) = std::env::var(CHILD) else { return };
    let replica: usize = std::env::var("SY_REPLICA_INDEX").unwrap().parse().unwrap();
    let spool = std::env::var("SY_REPLICA_SPOOL").unwrap();
    let store = Store::connect(&url).await.unwrap();
    let budgets = Budgets::new(store.clone(), LeaseSettings::default());
    let ledger = Ledger::start(store, &settings(std::path::Path::new(&spool), 50)).unwrap();
    println!("ready");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    let specs = Arc::new(specs());
    let mut tasks = Vec::new();
    for i in 0..PER_REPLICA {
        let (budgets, ledger, specs) = (budgets.clone(), ledger.clone(), specs.clone());
        tasks.push(tokio::spawn(async move {
            let p = Principal {
                key_id: format!("key{}", i % 7),
                key_prefix: "sy-x".into(),
                user: format!("u{}", i % 10),
                team: "eng".into(),
            };
            match budgets.reserve(&p, &specs, RESERVATION, false).await {
                Ok(r) => {
                    tokio::time::sleep(Duration::from_millis(5 + (i as u64 % 20))).await;
                    let actual = dec!(0.008) + Decimal::new((i % 13) as i64, 3);
                    r.settle(actual);
                    let mut e = entry((replica * 1000 + i) as u64);
                    e.team = "eng".into();
                    e.cost = actual;
                    ledger.record(e);
                    Ok(())
                }
                Err(refusal) => Err(Error::from(refusal)),
            }
        }));
    }
    let (mut served, mut refused, mut bad) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => served += 1,
            Err(e) => {
                refused += 1;
                let ok = e.status_code() == http::StatusCode::TOO_MANY_REQUESTS
                    && e.to_json()["error"]["code"] == "budget_exceeded"
                    && e.message.contains("eng-monthly");
                if !ok {
                    bad += 1;
                }
            }
        }
    }
    ledger.drain().await;
    budgets.drain().await;
    println!(
        "served {served} refused {refused} bad {bad} round_trips {}",
        budgets.database_round_trips()
    );
}

#[tokio::test]
async fn three_replica_processes_hold_one_budget() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let (store, url) = pg_store().await;
    let spool = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    for i in 0..REPLICAS {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["replica_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, &url)
            .env("SY_REPLICA_INDEX", i.to_string())
            .env("SY_REPLICA_SPOOL", spool.path().join(i.to_string()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // The harness prints `test replica_child ... ` first, on the same line.
        while !line.trim_end().ends_with("ready") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "replica {i} exited before it was ready"
            );
        }
        children.push((child, out));
    }
    for (child, _) in &mut children {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let (mut served, mut refused, mut round_trips) = (0usize, 0usize, 0usize);
    for (mut child, mut out) in children {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "replica exited without a result"
            );
            if let Some(at) = line.find("served ") {
                line = line[at..].to_owned();
                break;
            }
        }
        let f: Vec<usize> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        assert_eq!(
            f[2], 0,
            "a refusal was not a 429 budget_exceeded naming the budget: {line}"
        );
        served += f[0];
        refused += f[1];
        round_trips += f[3];
        assert!(child.wait().unwrap().success());
    }
    let (rows, recorded) = ledger_totals(&store).await;
    eprintln!(
        "3 processes: served {served}, refused {refused}, recorded ${recorded} in {rows} rows against ${BUDGET}; \
         {round_trips} budget round trips for {} requests",
        REPLICAS * PER_REPLICA
    );
    assert_eq!(rows as usize, served);
    assert_eq!(served + refused, REPLICAS * PER_REPLICA);
    assert!(refused > 0);
    assert!(
        recorded <= BUDGET + Decimal::from(REPLICAS as u64) * RESERVATION,
        "overspent: {recorded}"
    );
    assert!(round_trips < REPLICAS * PER_REPLICA / 3);
}
