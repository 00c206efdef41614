//! The command functions `src/cli.rs` calls: `policy check`, `route`, `replay`.

#![expect(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

use std::collections::HashMap;
use std::path::Path;

use switchyard::config::Config;
use switchyard::policy::commands::{
    OutputFormat, PolicyCheckArgs, ReplayArgs, RouteArgs, policy_check, replay, route,
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn config() -> Config {
    let env: HashMap<String, String> = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"]
        .iter()
        .map(|k| ((*k).to_owned(), "t".to_owned()))
        .collect();
    let mut config = Config::load(&root().join("examples/config.yaml"), &env).unwrap();
    config.policies_dir = root().join("policies");
    config
}

#[test]
fn policy_check_passes_the_shipped_policies_and_fails_a_broken_one() {
    let config = config();
    assert!(
        policy_check(
            &config,
            &PolicyCheckArgs {
                dir: None,
                format: OutputFormat::Text
            }
        )
        .unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("team.yaml"), "quality: { dial: turbo }\n").unwrap();
    let args = PolicyCheckArgs {
        dir: Some(dir.path().to_owned()),
        format: OutputFormat::Json,
    };
    assert!(!policy_check(&config, &args).unwrap());
}

#[test]
fn route_prints_a_decision_and_reports_refusals() {
    let config = config();
    let args = |model: &str, tags: Vec<String>| RouteArgs {
        team: "engineering".into(),
        prompt: "Why does this deadlock? Two mutexes taken in opposite order.".into(),
        model: model.into(),
        difficulty: None,
        task: None,
        max_tokens: Some(300),
        tags,
        needs: vec![],
        policies: None,
        format: OutputFormat::Json,
    };
    assert!(route(&config, &args("auto", vec![]), None).unwrap());
    assert!(route(&config, &args("auto", vec!["confidential".into()]), None).unwrap());
    assert!(!route(&config, &args("no-such-model", vec![]), None).unwrap());
}

#[test]
fn replay_runs_over_a_file() {
    let config = config();
    let args = ReplayArgs {
        team: "marketing".into(),
        input: root().join("tests/fixtures/requests.jsonl"),
        policies: None,
        format: OutputFormat::Text,
    };
    assert!(replay(&config, &args, None).unwrap());
}
