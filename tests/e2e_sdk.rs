//! Black-box end-to-end test: the real `switchyard` binary, configured by file and environment like a user would,
//! driven by the official `openai` and `anthropic` Python SDKs (tests/e2e/*.py) against the mock upstream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed assertion with its message"
)]

mod common;

use common::mock::MockUpstream;
use common::process::{ChildServer, free_port};
use common::proxy::{UPSTREAM_KEY, config_yaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_work_through_the_proxy_binary() {
    let upstream = MockUpstream::builder().api_key(UPSTREAM_KEY).start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.yaml");
    std::fs::write(&config, config_yaml(&upstream.url())).unwrap();
    let port = free_port();
    let database_url = format!("sqlite://{}?mode=rwc", dir.path().join("sy.sqlite").display());
    let envs = [
        ("SWITCHYARD_CONFIG", config.display().to_string()),
        ("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}")),
        ("DATABASE_URL", database_url),
        ("TEST_UPSTREAM_KEY", UPSTREAM_KEY.to_owned()),
        ("TEST_ADMIN_KEY", "admin-secret".to_owned()),
    ];
    let bin = env!("CARGO_BIN_EXE_switchyard");

    // `switchyard keys create` prints the key once on stdout.
    let mut create = std::process::Command::new(bin);
    create.args(["keys", "create", "--user", "e2e", "--team", "engineering"]);
    for (k, v) in &envs {
        create.env(k, v);
    }
    let out = create.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("sy-"), "{key}");

    let server = ChildServer::spawn(
        bin.as_ref(),
        &["serve"],
        &envs,
        format!("http://127.0.0.1:{port}"),
    )
    .await;
    let mut env = common::e2e::sdk_env(&server.base_url, &key, "proxy");
    env.extend([
        ("SWITCHYARD_MODEL", "auto".to_owned()),
        ("SWITCHYARD_EMBEDDING_MODEL", "embed".to_owned()),
        ("SWITCHYARD_ANTHROPIC_MODEL", "claude".to_owned()),
        ("SWITCHYARD_SLOW_MODEL", "slow".to_owned()),
        ("SWITCHYARD_OVERSIZE_BYTES", "100000".to_owned()),
    ]);
    let run = common::e2e::run_pytest(&[], &env).await;
    if !run.status.success() {
        eprintln!("proxy output:\n{}", server.output());
    }
    run.assert_passed();
    common::e2e::assert_upstream_saw_sdk_traffic(&upstream).await;

    let logs = server.stop().await;
    assert!(!logs.contains(&key), "the client key reached the logs");
    assert!(!logs.contains(UPSTREAM_KEY), "the upstream key reached the logs");
    // The SDKs' error tests are refused before any upstream call: each leaves one line, without the bad keys.
    for status in [401, 404, 413] {
        let line = format!("http_status={status}");
        assert!(
            logs.lines()
                .any(|l| l.contains("request refused") && l.contains(&line)),
            "no refusal line with {line}:\n{logs}"
        );
    }
    for bad_key in ["sk-definitely-not-valid", "sk-ant-not-valid"] {
        assert!(!logs.contains(bad_key), "a presented key reached the logs");
    }
}
