//! Local models against a mock that behaves like Ollama: `/api/ps` lists the loaded set, and a chat request
//! to a cold model answers only after a load delay, after which the model is loaded.

#![expect(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchyard::config::Config;
use switchyard::local::{LocalModels, Readiness, run_probes};
use switchyard::policy::parse_policy;
use switchyard::route::{Conditions, RequestFacts, Signal, decide_with};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct MockOllama {
    loaded: Arc<Mutex<BTreeSet<String>>>,
    load_time: Duration,
}

async fn ps(State(m): State<MockOllama>) -> Json<Value> {
    let loaded = m.loaded.lock().unwrap().clone();
    Json(
        json!({ "models": loaded.iter().map(|n| json!({ "name": n, "model": n, "size": 1 })).collect::<Vec<_>>() }),
    )
}

async fn chat(State(m): State<MockOllama>, Json(body): Json<Value>) -> Json<Value> {
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let cold = !m.loaded.lock().unwrap().contains(&model);
    if cold {
        // Ollama keeps one model on this small GPU: loading evicts the other.
        tokio::time::sleep(m.load_time).await;
        let mut loaded = m.loaded.lock().unwrap();
        loaded.clear();
        loaded.insert(model.clone());
    }
    Json(json!({ "choices": [{ "message": { "role": "assistant", "content": "ok" } }], "model": model }))
}

async fn start(mock: MockOllama) -> String {
    let app = axum::Router::new()
        .route("/api/ps", get(ps))
        .route("/v1/chat/completions", post(chat))
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Sends a chat request and returns the time until the answer (the mock answers in one piece, so this is the
/// time to first token).
async fn post_chat(base: &str, model: &str) -> Duration {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let body = json!({ "model": model, "messages": [] }).to_string();
    let request = http::Request::post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let started = Instant::now();
    let response = client.request(request).await.unwrap();
    assert!(response.status().is_success());
    let _ = response.into_body().collect().await.unwrap();
    started.elapsed()
}

#[tokio::test]
async fn probe_tracks_the_loaded_set_and_routing_avoids_slow_swaps() {
    let mock = MockOllama {
        loaded: Arc::new(Mutex::new(BTreeSet::from(["small:3b".to_owned()]))),
        load_time: Duration::from_millis(600),
    };
    let base = start(mock.clone()).await;
    let yaml = format!(
        r#"
deployments:
  api: {{ kind: openai, base_url: "https://api.example/v1" }}
  gpu: {{ kind: openai, base_url: "{base}/v1", local: {{ probe: ollama, probe_interval: 100ms }} }}
models:
  - {{ name: api-mid, deployments: [api], price: {{ input: "1", output: "4" }}, quality: 0.8 }}
  - {{ name: local-small, deployments: [gpu], upstream_model: "small:3b", local: true, quality: 0.4 }}
  - {{ name: local-big, deployments: [gpu], upstream_model: "big:70b", local: true, quality: 0.85, load_time: 30s }}
"#
    );
    let config = Config::from_yaml(&yaml, "t", Path::new("."), &HashMap::new()).unwrap();
    let cat = config.catalogue.clone();
    let state = LocalModels::new(Duration::from_secs(120));
    let shutdown = CancellationToken::new();
    let probes = tokio::spawn(run_probes(
        config.deployments.values().cloned().collect(),
        state.clone(),
        shutdown.clone(),
    ));

    let start_wait = Instant::now();
    while !state.snapshot().deployments.get("gpu").is_some_and(|v| v.probed) {
        assert!(
            start_wait.elapsed() < Duration::from_secs(3),
            "probe never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snap = state.snapshot();
    assert_eq!(snap.readiness("gpu", "small:3b", None), Readiness::Ready);
    assert!(matches!(
        snap.readiness("gpu", "big:70b", Some(Duration::from_secs(30))),
        Readiness::Cold { .. }
    ));

    // Hard query: the local big model qualifies on quality but is cold with a 30 s configured load; a policy
    // that waits at most 10 s sends the query to the API model instead.
    let policy = parse_policy("t", "t.yaml", "quality: { floor: [{difficulty: 0, min_quality: 0.8}, {difficulty: 1, min_quality: 0.8}] }\nlocal: { max_swap_wait: 10s }\n", &cat).unwrap();
    let facts = RequestFacts {
        estimated_input_tokens: 100,
        max_tokens: Some(100),
        ..RequestFacts::default()
    };
    let conditions = Conditions {
        local: state.snapshot(),
        ..Conditions::default()
    };
    let d = decide_with(
        &policy,
        &cat,
        "auto",
        &facts,
        Some(&Signal::new(0.9, None)),
        &conditions,
    )
    .unwrap();
    assert_eq!(d.targets[0].model.name, "api-mid");

    // Someone names the big model: it is cold, so the first token is slow; Switchyard learns the load time.
    state.dispatching("gpu", "big:70b", Duration::from_secs(30), Instant::now());
    let ttft = post_chat(&base, "big:70b").await;
    assert!(ttft >= Duration::from_millis(600));
    state.observe_first_token("gpu", "big:70b", ttft, Duration::from_millis(50), true);
    let learned = state.snapshot().deployments["gpu"].learned_load_time["big:70b"];
    assert!(learned < Duration::from_secs(5), "learned {learned:?}");

    // The probe sees the swap (big in, small out) ...
    let start_wait = Instant::now();
    while !state.snapshot().deployments["gpu"].loaded.contains("big:70b")
        || state.snapshot().deployments["gpu"].loaded.contains("small:3b")
    {
        assert!(
            start_wait.elapsed() < Duration::from_secs(3),
            "probe never saw the swap"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... and now the big model is loaded, so the hard query stays local (cheaper) ...
    let conditions = Conditions {
        local: state.snapshot(),
        ..Conditions::default()
    };
    let d = decide_with(
        &policy,
        &cat,
        "auto",
        &facts,
        Some(&Signal::new(0.9, None)),
        &conditions,
    )
    .unwrap();
    assert_eq!(d.targets[0].model.name, "local-big");
    // ... while an easy query that would swap the small model back in moments after a swap is not sent to the
    // GPU (anti-thrash): it goes to the API model even though the small local one is cheaper.
    let easy = parse_policy("e", "e.yaml", "quality: { floor: [{difficulty: 0, min_quality: 0.3}, {difficulty: 1, min_quality: 0.3}] }\nlocal: { max_swap_wait: 10s }\nmodels: { deny: [local-big] }\n", &cat).unwrap();
    let d = decide_with(
        &easy,
        &cat,
        "auto",
        &facts,
        Some(&Signal::new(0.1, None)),
        &conditions,
    )
    .unwrap();
    assert_eq!(d.targets[0].model.name, "api-mid", "{}", d.detail);
    assert!(
        d.rejected.iter().any(|r| r.model == "local-small"),
        "{:?}",
        d.rejected
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), probes)
        .await
        .unwrap()
        .unwrap();
}
