//! The ledger behind the real proxy (in-process server, mock upstream), on SQLite and Postgres: every request
//! leaves exactly one row with the provider's token counts, the price it used and the cost; streamed usage is
//! not lost; a client disconnect is recorded as `cancelled`; `/admin/spend` reports it with savings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::client::{get, open, post_json};
use common::mock::{Behavior, MockUpstream};
use common::proxy::{Db, TestProxy, UPSTREAM_KEY};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use rust_decimal::Decimal;
use serde_json::json;
use switchyard::ledger::report::{self, Format, GroupBy};
use switchyard::store::Store;

/// (request id, routed model, input, output, cost, status, estimated) for every ledger row.
async fn rows(store: &Store) -> Vec<(String, String, i64, i64, Decimal, String, bool)> {
    match store {
        Store::Postgres(pool) => sqlx::query_as(
            "SELECT request_id, routed_model, input_tokens, output_tokens, cost, status, estimated FROM ledger \
             ORDER BY time",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        Store::Sqlite(pool) => {
            let raw: Vec<(String, String, i64, i64, String, String, bool)> = sqlx::query_as(
                "SELECT request_id, routed_model, input_tokens, output_tokens, cost, status, estimated FROM ledger \
                 ORDER BY time",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            raw.into_iter().map(|(a, b, c, d, e, f, g)| (a, b, c, d, e.parse().unwrap(), f, g)).collect()
        }
    }
}

/// The HTTP status recorded for one request.
async fn http_status(store: &Store, request_id: &str) -> i64 {
    let sql = "SELECT CAST(http_status AS BIGINT) FROM ledger WHERE request_id = $1";
    match store {
        Store::Postgres(pool) => sqlx::query_scalar(sql)
            .bind(request_id)
            .fetch_one(pool)
            .await
            .unwrap(),
        Store::Sqlite(pool) => sqlx::query_scalar(sql)
            .bind(request_id)
            .fetch_one(pool)
            .await
            .unwrap(),
    }
}

async fn wait_for_rows(store: &Store, n: usize) -> Vec<(String, String, i64, i64, Decimal, String, bool)> {
    for _ in 0..200 {
        let r = rows(store).await;
        if r.len() >= n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    rows(store).await
}

async fn every_request_is_charged_once(db: Db) {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let mut p = TestProxy::start(&upstream.url(), db).await;
    let auth = p.auth();
    let h = [("authorization", auth.as_str()), ("x-request-id", "r-plain")];
    let words = json!([{"role": "user", "content": "one two three four"}]);

    // Non-streaming OpenAI-kind: 4 input words, 8 reply words at $0.15 / $0.60 per million.
    let r = post_json(
        &format!("{}/v1/chat/completions", p.url),
        &h,
        &json!({"model": "small", "messages": words}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Streaming without include_usage: the proxy asks for the usage chunk and charges from it.
    let h = [("authorization", auth.as_str()), ("x-request-id", "r-stream")];
    let r = post_json(
        &format!("{}/v1/chat/completions", p.url),
        &h,
        &json!({"model": "small", "stream": true, "messages": words}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Anthropic-kind, streaming: usage from message_start / message_delta.
    let h = [("authorization", auth.as_str()), ("x-request-id", "r-claude")];
    let r = post_json(
        &format!("{}/v1/chat/completions", p.url),
        &h,
        &json!({"model": "claude", "stream": true, "messages": words}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Client disconnect mid-stream.
    upstream.push_behavior(Behavior::ok().chunk_delay_ms(50).chunks(200));
    let resp = open(
        Method::POST,
        &format!("{}/v1/chat/completions", p.url),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("x-request-id", "r-gone"),
        ],
        Bytes::from(json!({"model": "small", "stream": true, "messages": words}).to_string()),
    )
    .await;
    let mut body = resp.into_body();
    let _ = body.frame().await;
    drop(body);

    let got = wait_for_rows(&p.state.store, 4).await;
    let by_id = |id: &str| {
        got.iter()
            .find(|r| r.0 == id)
            .cloned()
            .unwrap_or_else(|| panic!("no row {id}: {got:?}"))
    };
    let per_m = Decimal::new(1_000_000, 0);
    let small = (Decimal::new(4, 0) * Decimal::new(15, 2) + Decimal::new(8, 0) * Decimal::new(60, 2)) / per_m;
    let claude = (Decimal::new(4, 0) * Decimal::new(3, 0) + Decimal::new(8, 0) * Decimal::new(15, 0)) / per_m;
    let r = by_id("r-plain");
    assert_eq!(
        (r.1.as_str(), r.2, r.3, r.4, r.5.as_str(), r.6),
        ("small", 4, 8, small, "ok", false),
        "{r:?}"
    );
    let s = by_id("r-stream");
    assert_eq!(
        (s.2, s.3, s.4, s.6),
        (4, 8, small, false),
        "streamed usage is charged in full: {s:?}"
    );
    let c = by_id("r-claude");
    assert_eq!((c.1.as_str(), c.2, c.3, c.4), ("claude", 4, 8, claude), "{c:?}");
    let g = by_id("r-gone");
    assert_eq!(g.5, "cancelled", "{g:?}");
    assert_eq!(
        http_status(&p.state.store, "r-gone").await,
        i64::from(switchyard::pipeline::CLIENT_CLOSED_REQUEST),
        "a client that left is not an upstream failure"
    );
    assert_eq!(http_status(&p.state.store, "r-stream").await, 200);
    assert_eq!(got.iter().filter(|r| r.0 == "r-plain").count(), 1);

    // The same numbers through the admin endpoint.
    let admin = [("authorization", "Bearer admin-secret")];
    let r = get(&format!("{}/admin/spend?by=model&since=1d", p.url), &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let lines = r.json();
    let claude_line = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == "claude")
        .unwrap();
    assert_eq!(claude_line["requests"], 1);
    assert_eq!(
        claude_line["cost"].as_str().unwrap().parse::<Decimal>().unwrap(),
        claude
    );

    let lines = report::spend(
        &p.state.store,
        GroupBy::Team,
        report::since_day(Duration::from_secs(86_400)),
        None,
    )
    .await
    .unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].key, "engineering");
    assert_eq!(lines[0].requests, 4);
    let csv = report::render(&lines, GroupBy::Team, Format::Csv);
    assert!(csv.starts_with("team,requests,"), "{csv}");
    let table = report::render(&lines, GroupBy::Team, Format::Table);
    assert!(
        table.contains("engineering") && table.contains("TOTAL"),
        "{table}"
    );
    let server = p.begin_shutdown();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_request_is_charged_once() {
    every_request_is_charged_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_request_is_charged_once() {
    every_request_is_charged_once(Db::Postgres).await;
}

/// `ledger.enabled: false` (the benchmark's baseline): requests are served and counted, no row is written and
/// no spool folder is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ledger_off_requests_are_served_and_nothing_is_written() {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let yaml = format!(
        "{}ledger: {{ enabled: false }}\n",
        common::proxy::config_yaml(&upstream.url())
    );
    let mut p = TestProxy::start_with(&yaml, Db::Sqlite).await;
    let body = json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..3 {
        let r = p.post("/v1/chat/completions", &body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let stream = json!({"model": "small", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = p.post("/v1/chat/completions", &stream).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());

    assert!(!p.state.ledger.is_enabled());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(p.state.ledger.stats().recorded, 4);
    assert_eq!(p.state.ledger.stats().written, 0);
    assert!(rows(&p.state.store).await.is_empty());
    assert!(p.state.ledger.spool().is_none());
    let server = p.begin_shutdown();
    server.await.unwrap().unwrap();
}

/// A row whose local count is still running when the server is told to stop reaches the database, not the spool:
/// shutdown waits for queued counts before it drains the ledger. The upstream model counts with r50k, which no
/// other test here loads, so the count includes loading that vocabulary and overlaps the shutdown.
async fn a_count_running_at_shutdown_is_written_before_the_ledger_drains(db: Db) {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let yaml = format!(
        "{}  - name: legacy\n    deployments: [mock-openai]\n    upstream_model: davinci\n    \
         price: {{ input: \"1\", output: \"2\" }}\n",
        common::proxy::config_yaml(&upstream.url())
    );
    let p = TestProxy::start_with(&yaml, db).await;
    upstream.push_behavior(Behavior::ok().omit_usage());
    let body = json!({"model": "legacy", "stream": true,
                      "messages": [{"role": "user", "content": "count these words for me please"}]});
    let r = p.post("/v1/chat/completions", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());

    // `stop` shuts the server down gracefully (and drops the test's Postgres database); the counters outlive it.
    let ledger = p.state.ledger.clone();
    p.stop().await;
    let stats = ledger.stats();
    assert_eq!(
        (stats.recorded, stats.written, stats.spooled),
        (1, 1, 0),
        "the counted row was written before the drain: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_count_running_at_shutdown_is_written_before_the_ledger_drains() {
    a_count_running_at_shutdown_is_written_before_the_ledger_drains(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_count_running_at_shutdown_is_written_before_the_ledger_drains() {
    a_count_running_at_shutdown_is_written_before_the_ledger_drains(Db::Postgres).await;
}
