//! Hot reload: a valid change is live within 2 s by atomic swap; an invalid one is rejected, the previous
//! policies stay live, and the error is visible in the status the admin endpoint serves.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use switchyard::config::Config;
use switchyard::policy::{Dial, Policies, PolicySet, admin, reload};
use tokio_util::sync::CancellationToken;

const CATALOGUE: &str = r#"
deployments:
  up: { kind: openai, base_url: "https://up.example/v1" }
models:
  - { name: big, deployments: [up], price: { input: "5", output: "20" }, quality: 0.95 }
  - { name: small, deployments: [up], price: { input: "0.1", output: "0.4" }, quality: 0.5 }
"#;

/// Polls until `cond` holds or the 2 s contract is broken (a deadline, not a sleep used as synchronisation).
async fn within_two_seconds(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what} did not happen within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn valid_changes_go_live_and_invalid_ones_are_rejected() {
    let catalogue = Config::from_yaml(CATALOGUE, "c", Path::new("."), &HashMap::new())
        .unwrap()
        .catalogue;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.yaml"), "quality: { dial: economy }\n").unwrap();
    let set = PolicySet::load_dir(dir.path(), &catalogue, None).unwrap();
    let policies = Policies::from_set(set);
    let shutdown = CancellationToken::new();
    let metrics = switchyard::metrics::Metrics::new().unwrap();
    let task = tokio::spawn(
        reload::watch_folder(
            dir.path().to_owned(),
            catalogue.clone(),
            policies.clone(),
            None,
            Some(metrics.clone()),
            shutdown.clone(),
        )
        .unwrap(),
    );

    // A new team file appears.
    std::fs::write(dir.path().join("eng.yaml"), "quality: { dial: quality }\n").unwrap();
    within_two_seconds("new team file", || {
        policies.for_team("eng").dial == Some(Dial::Quality)
    })
    .await;
    let generation = policies.status().generation;

    // An edit to the default.
    std::fs::write(dir.path().join("default.yaml"), "quality: { dial: balanced }\n").unwrap();
    within_two_seconds("edit", || policies.for_team("sales").dial == Some(Dial::Balanced)).await;
    assert!(policies.status().generation > generation);

    // A broken edit: rejected, old policy live, error recorded with file and key path.
    std::fs::write(dir.path().join("eng.yaml"), "quality: { dial: turbo }\n").unwrap();
    within_two_seconds("rejection", || policies.status().last_error.is_some()).await;
    assert_eq!(
        policies.for_team("eng").dial,
        Some(Dial::Quality),
        "the previous policy stays live"
    );
    let status = admin::status_json(&policies);
    let issue = &status["last_error"]["issues"][0];
    assert!(issue["file"].as_str().unwrap().ends_with("eng.yaml"), "{status}");
    assert_eq!(issue["path"], "quality.dial");
    let rendered = metrics.render();
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("switchyard_policy_reloads_total{result=\"error\"} ")),
        "{rendered}"
    );
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("switchyard_policy_reloads_total{result=\"ok\"} ")),
        "{rendered}"
    );

    // Fixing it clears the error.
    std::fs::write(dir.path().join("eng.yaml"), "quality: { dial: economy }\n").unwrap();
    within_two_seconds("fix", || policies.for_team("eng").dial == Some(Dial::Economy)).await;
    assert!(policies.status().last_error.is_none());

    // Removing a team's file sends it back to the default.
    std::fs::remove_file(dir.path().join("eng.yaml")).unwrap();
    within_two_seconds("removal", || policies.for_team("eng").name == "default").await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}
