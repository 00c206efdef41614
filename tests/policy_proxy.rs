//! Team policies inside the running proxy: data rules from request tags, routing headers, stickiness, and
//! the policy admin endpoints behind the admin key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed assertion with its message"
)]

mod common;

use common::client::{get, post_json};
use common::mock::MockUpstream;
use common::proxy::{Db, TestProxy, UPSTREAM_KEY, config_yaml};
use http::StatusCode;
use serde_json::json;

async fn proxy() -> (MockUpstream, TestProxy) {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let yaml = config_yaml(&upstream.url()).replace(
        "policies_dir: tests/fixtures/policies",
        "policies_dir: tests/fixtures/policies-teams",
    );
    let p = TestProxy::start_with(&yaml, Db::Sqlite).await;
    (upstream, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_policy_steers_requests() {
    let (_upstream, p) = proxy().await;
    let auth = p.auth();
    let url = format!("{}/v1/chat/completions", p.url);
    let msg = |text: &str| json!({"model": "big", "messages": [{"role": "user", "content": text}]});

    // A named model is honoured ...
    let r = post_json(&url, &[("authorization", &auth)], &msg("hello")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-model"), Some("big"));

    // ... unless the request is tagged confidential: the data rule keeps it on `small`.
    let r = post_json(
        &url,
        &[("authorization", &auth), ("x-switchyard-tags", "confidential")],
        &msg("hello"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("x-switchyard-model"), Some("small"));
    assert!(
        r.header("x-switchyard-route").unwrap().contains("data rule"),
        "{:?}",
        r.header("x-switchyard-route")
    );

    // The team alias routes at its dial (the classifier is not wired here: the policy's assumed difficulty).
    let r = post_json(
        &url,
        &[("authorization", &auth)],
        &json!({"model": "smart", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.header("x-switchyard-route").is_some());
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_admin_endpoints_need_the_admin_key() {
    let (_upstream, p) = proxy().await;
    let r = get(&format!("{}/admin/policies", p.url), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let admin = [("authorization", "Bearer admin-secret")];
    let r = get(&format!("{}/admin/policies", p.url), &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.json()["policies"]["engineering"].is_object(), "{}", r.text());
    let r = post_json(
        &format!("{}/admin/route", p.url),
        &admin,
        &json!({"team": "engineering", "prompt": "summarise", "difficulty": 0.1, "tags": ["confidential"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["model"], "small");
    assert_eq!(r.json()["data_rule"], "confidential");
    p.stop().await;
}
