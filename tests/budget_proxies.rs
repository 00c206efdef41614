//! The budget proof on the real thing: three `switchyard serve` processes share one Postgres and one team
//! policy with a small hard budget; 360 requests fire at them at once through the mock upstream. Recorded spend
//! must stay within budget + replicas × one request's reservation, and every refusal must be a 429 with
//! OpenAI error code `budget_exceeded` naming the budget.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed assertion"
)]

mod common;
mod support;

use common::client::post_json;
use common::mock::MockUpstream;
use common::process::{ChildServer, free_port};
use common::proxy::{UPSTREAM_KEY, config_yaml};
use http::StatusCode;
use rust_decimal::Decimal;
use serde_json::json;
use switchyard::store::Store;

const REPLICAS: usize = 3;
const REQUESTS: usize = 360;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_proxy_processes_hold_one_team_budget() {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("engineering.yaml"),
        "budgets:\n  limits: [{ scope: team, period: monthly, limit: \"0.01\", mode: hard }]\n",
    )
    .unwrap();
    let yaml = config_yaml(&upstream.url()).replace(
        "policies_dir: tests/fixtures/policies",
        &format!("policies_dir: {}", policies.display()),
    );

    let url = support::fresh_pg_url().await;
    let store = Store::open(&url).await.unwrap();
    let key = store
        .create_key("alice", "engineering", None)
        .await
        .unwrap()
        .plaintext;

    let mut proxies = Vec::new();
    for i in 0..REPLICAS {
        let port = free_port();
        // Each replica its own data folder, hence its own ledger spool.
        let config = dir.path().join(format!("switchyard{i}.yaml"));
        let data = dir.path().join(format!("data{i}"));
        std::fs::write(&config, format!("data_dir: {}\n{yaml}", data.display())).unwrap();
        let envs = [
            ("SWITCHYARD_CONFIG", config.display().to_string()),
            ("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}")),
            ("DATABASE_URL", url.clone()),
            ("TEST_UPSTREAM_KEY", UPSTREAM_KEY.to_owned()),
            ("TEST_ADMIN_KEY", "admin-secret".to_owned()),
        ];
        proxies.push(
            ChildServer::spawn(
                env!("CARGO_BIN_EXE_switchyard").as_ref(),
                &["serve"],
                &envs,
                format!("http://127.0.0.1:{port}"),
            )
            .await,
        );
    }

    // "big": $2.50 / $10 per million tokens. max_tokens 100 makes each reservation about $0.001.
    let auth = format!("Bearer {key}");
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let base = proxies[i % REPLICAS].base_url.clone();
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            post_json(
                &format!("{base}/v1/chat/completions"),
                &[("authorization", &auth)],
                &json!({"model": "big", "max_tokens": 100,
                        "messages": [{"role": "user", "content": "one two three four"}]}),
            )
            .await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                let v = r.json();
                assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
                assert!(
                    v["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("team-monthly-api"),
                    "{v}"
                );
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    let mut outputs = Vec::new();
    for p in proxies {
        // Graceful shutdown (SIGTERM): the ledger drains and leases go back.
        let pid = p.pid().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let (status, output) = p.wait().await;
        assert!(status.success(), "{output}");
        outputs.push(output);
    }
    let Store::Postgres(pool) = &store else {
        unreachable!()
    };
    let (rows, spent): (i64, Option<Decimal>) =
        sqlx::query_as("SELECT count(*), sum(cost) FROM ledger WHERE status = 'ok'")
            .fetch_one(pool)
            .await
            .unwrap();
    let spent = spent.unwrap_or_default();
    // The largest reservation: input estimated from the body size (~200 bytes / 4) and 100 output tokens.
    let one_reservation = Decimal::new(2, 3);
    eprintln!(
        "3 proxies: {ok} served, {refused} refused (429), {rows} ok rows, recorded ${spent} against $0.01"
    );
    assert_eq!(rows as usize, ok, "one ledger row per served request");
    // Each process writes its log through a background thread; a graceful stop writes out every queued line.
    let logged = outputs
        .iter()
        .flat_map(|o| o.lines())
        .filter(|l| {
            l.contains("request finished") && (l.contains("status=\"ok\"") || l.contains("status=ok"))
        })
        .count();
    assert_eq!(logged, ok, "one log line per served request");
    assert!(refused > 0, "the budget must run out");
    assert!(
        spent <= Decimal::new(1, 2) + Decimal::from(REPLICAS as u64) * one_reservation,
        "overspent: {spent}"
    );
}
