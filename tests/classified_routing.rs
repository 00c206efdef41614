//! Routing with the real classifier in the proxy: `model: "auto"` requests are classified on the proxy's CPU,
//! routed by difficulty, and say so in the response headers. Needs the model files (`scripts/setup-models.sh`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed assertion with its message"
)]

mod common;

use common::mock::MockUpstream;
use common::proxy::{Db, TestProxy, UPSTREAM_KEY, config_yaml};
use http::StatusCode;
use serde_json::json;

fn classifier_files_present() {
    let settings = switchyard::classify::ClassifierSettings::default();
    for path in [&settings.ort_library, &settings.weights] {
        assert!(
            path.exists(),
            "{} is missing: run scripts/setup-models.sh first",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_requests_are_classified_and_routed_by_difficulty() {
    classifier_files_present();
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let yaml = config_yaml(&upstream.url()).replace(
        "classifier: { enabled: false }",
        // A generous deadline: this test is about what the classifier says, not about a loaded CI machine.
        "classifier: { enabled: true, deadline_ms: 5000 }",
    );
    let p = TestProxy::start_with(&yaml, Db::Sqlite).await;
    assert!(p.state.classifier.is_some(), "the classifier loaded");

    let ask = |prompt: &str| json!({"model": "auto", "messages": [{"role": "user", "content": prompt}]});
    let easy = p
        .post("/v1/chat/completions", &ask("thanks, that's all for today!"))
        .await;
    let hard = p
        .post(
            "/v1/chat/completions",
            &ask(
                "Prove that for every prime p > 3, p^2 - 1 is divisible by 24, then derive the number of \
                  solutions of x^2 = 1 in Z_n for n = 2^k * m with m odd, justifying each step.",
            ),
        )
        .await;
    assert_eq!(easy.status, StatusCode::OK, "{}", easy.text());
    assert_eq!(hard.status, StatusCode::OK, "{}", hard.text());
    let difficulty = |r: &common::client::HttpResponse| -> f32 {
        r.header("x-switchyard-difficulty")
            .expect("routed responses carry the difficulty")
            .parse()
            .unwrap()
    };
    assert!(
        difficulty(&hard) > difficulty(&easy),
        "hard {} <= easy {}",
        difficulty(&hard),
        difficulty(&easy)
    );
    assert!(easy.header("x-switchyard-route").is_some());
    // The harder query never gets a lower-quality model under the same policy.
    let quality = |r: &common::client::HttpResponse| {
        let name = r.header("x-switchyard-model").unwrap();
        p.state.catalogue.get(name).unwrap().quality
    };
    assert!(quality(&hard) >= quality(&easy));

    // The same text again is served from the classifier's cache.
    let again = p
        .post("/v1/chat/completions", &ask("thanks, that's all for today!"))
        .await;
    assert_eq!(
        again.header("x-switchyard-difficulty"),
        easy.header("x-switchyard-difficulty")
    );
    let metrics = p.state.metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_classifier_duration_seconds_count")
                && l.contains("outcome=\"cached\"")),
        "{metrics}"
    );

    // A named model that is simply honoured is not classified at all.
    let named = p
        .post(
            "/v1/chat/completions",
            &json!({"model": "small", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(named.header("x-switchyard-difficulty"), None);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_classifier_routing_falls_back_and_says_so() {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let p = TestProxy::start(&upstream.url(), Db::Sqlite).await;
    assert!(p.state.classifier.is_none());
    let r = p
        .post(
            "/v1/chat/completions",
            &json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a missing classifier never fails the request: {}",
        r.text()
    );
    let route = r.header("x-switchyard-route").expect("route header");
    assert!(
        route.contains("unclassified") || route.contains("classifier"),
        "{route}"
    );
    p.stop().await;
}
