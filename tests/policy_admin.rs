//! The policy admin endpoints: status and the routing dry run.

#![expect(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

use std::collections::HashMap;
use std::path::Path;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard::config::Config;
use switchyard::local::LocalModels;
use switchyard::policy::admin::{PolicyAdmin, routes};
use switchyard::policy::reload::load_initial;
use tower::ServiceExt;

fn admin() -> PolicyAdmin {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env: HashMap<String, String> = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"]
        .iter()
        .map(|k| ((*k).to_owned(), "t".to_owned()))
        .collect();
    let config = Config::load(&root.join("examples/config.yaml"), &env).unwrap();
    let policies = load_initial(&root.join("policies"), &config.catalogue, None).unwrap();
    PolicyAdmin {
        policies,
        catalogue: config.catalogue.clone(),
        local: LocalModels::default(),
        classifier: None,
    }
}

async fn call(method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let app = routes::<PolicyAdmin>().with_state(admin());
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn status_lists_every_policy() {
    let (status, body) = call("GET", "/policies", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["generation"], 1);
    assert!(body["last_error"].is_null());
    for team in ["default", "engineering", "marketing"] {
        assert!(body["policies"][team].is_object(), "{team} missing: {body}");
    }
    assert_eq!(
        body["policies"]["engineering"]["routes_inactive"],
        json!(["incident", "commit-message"])
    );
    assert_eq!(
        body["policies"]["marketing"]["budgets"]["on_exhausted"],
        "downgrade_cheapest"
    );
}

#[tokio::test]
async fn dry_run_shows_the_full_decision() {
    let (status, body) = call(
        "POST",
        "/route",
        Some(json!({ "team": "engineering", "prompt": "Find the race condition in this Rust code", "difficulty": 0.9, "task": "code" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["policy"], "engineering");
    assert_eq!(body["routed"], true);
    assert!(body["quality"].as_f64().unwrap() >= body["quality_floor"].as_f64().unwrap());
    assert!(
        body["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["why"]["kind"] == "below_quality_floor")
    );
    assert!(!body["fallbacks"].as_array().unwrap().is_empty());

    let (_, refused) = call(
        "POST",
        "/route",
        Some(json!({ "team": "default", "model": "gpt-5.5" })),
    )
    .await;
    assert_eq!(refused["error"], "denied");

    let (status, bad) = call("POST", "/route", Some(json!({ "teem": "x" }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"]["type"], "invalid_request_error");
}
