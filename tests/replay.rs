//! `switchyard replay` on a small log: projected spend against the baseline, model mix, changed models.

#![expect(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

use std::collections::HashMap;
use std::path::Path;

use rust_decimal::Decimal;
use switchyard::config::Config;
use switchyard::policy::PolicySet;
use switchyard::policy::commands::{replay_json, replay_lines, replay_text};

fn shipped() -> (Config, PolicySet) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env: HashMap<String, String> = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"]
        .iter()
        .map(|k| ((*k).to_owned(), "t".to_owned()))
        .collect();
    let config = Config::load(&root.join("examples/config.yaml"), &env).unwrap();
    let set = PolicySet::load_dir(&root.join("policies"), &config.catalogue, None).unwrap();
    (config, set)
}

#[test]
fn replay_reports_savings_mix_and_changes() {
    let (config, set) = shipped();
    let input =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/requests.jsonl")).unwrap();
    let report = replay_lines(&set, &config.catalogue, "default", input.as_slice(), None).unwrap();
    assert_eq!(report.requests, 7);
    assert_eq!(report.unparseable, 1);
    // gpt-5.5 is denied by the default policy.
    assert_eq!(report.refused.get("denied"), Some(&1));
    assert!(report.projected_spend > Decimal::ZERO);
    assert!(
        report.projected_spend < report.baseline_spend,
        "routing must save against the baseline"
    );
    assert!(report.changed_model >= 2);
    // The confidential request stayed local.
    assert!(
        report.model_mix.contains_key("qwen3-8b-local"),
        "{:?}",
        report.model_mix.keys()
    );
    let served: u64 = report.model_mix.values().map(|l| l.requests).sum();
    assert_eq!(served + report.refused.values().sum::<u64>(), report.requests);
    let json = replay_json(&report);
    assert_eq!(json["requests"], 7);
    assert!(
        json["saved_vs_baseline_pct"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    let text = replay_text("default", &report);
    assert!(
        text.contains("projected spend") && text.contains("qwen3-8b-local"),
        "{text}"
    );
}

#[test]
fn dry_runs_work_without_api_keys() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join("examples/config.yaml"), &HashMap::new()).unwrap();
    let set = PolicySet::load_dir(&root.join("policies"), &config.catalogue, None).unwrap();
    let input = std::fs::read(root.join("tests/fixtures/requests.jsonl")).unwrap();
    let report = replay_lines(&set, &config.catalogue, "engineering", input.as_slice(), None).unwrap();
    // Without keys every API deployment "lacks credentials", yet a dry run still routes to API models.
    assert!(
        report.model_mix.keys().any(|m| m != "qwen3-8b-local"),
        "{:?}",
        report.model_mix.keys()
    );
    assert!(report.refused.is_empty(), "{:?}", report.refused);
}
