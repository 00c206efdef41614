use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::config::Config;

pub(crate) fn catalogue() -> Arc<Catalogue> {
    let yaml = r#"
deployments:
  openai: { kind: openai, base_url: "https://api.openai.com/v1", api_key: "env:OPENAI_API_KEY" }
models:
  - { name: big, deployments: [openai], price: { input: "5", output: "20" }, quality: 0.95 }
  - { name: mid, deployments: [openai], price: { input: "1", output: "4" }, quality: 0.8 }
  - { name: small, deployments: [openai], price: { input: "0.1", output: "0.4" }, quality: 0.5 }
"#;
    let env = HashMap::from([("OPENAI_API_KEY".to_owned(), "sk".to_owned())]);
    Config::from_yaml(yaml, "t", Path::new("."), &env)
        .unwrap()
        .catalogue
}

fn parse(text: &str) -> Result<Policy, Vec<PolicyIssue>> {
    parse_policy("eng", "eng.yaml", text, &catalogue())
}

fn paths(issues: &[PolicyIssue]) -> Vec<&str> {
    issues.iter().map(|i| i.path.as_str()).collect()
}

#[test]
fn empty_file_is_the_default_policy() {
    let p = parse("").unwrap();
    assert_eq!(p.auto_names, vec!["auto"]);
    assert_eq!(p.named_models, NamedModels::Honour);
    assert_eq!(p.dial, Some(Dial::Balanced));
    assert!(p.wants_routing("auto") && !p.wants_routing("big"));
}

#[test]
fn a_full_policy_parses() {
    let p = parse(
        r#"
models: { allow: ["*"], deny: [big] }
baseline: big
quality: { floor: [{difficulty: 0, min_quality: 0.4}, {difficulty: 1, min_quality: 0.9}] }
max_cost_per_request: "0.10"
requests: { auto_names: [auto, router], aliases: { cheap: economy }, named_models: route }
tasks: { code: { min_quality: 0.8, prefer: [mid] } }
routes: [{ name: sql, examples: ["write a SQL query"], prefer: [mid] }]
data_rules: [{ name: conf, tags: [confidential], action: local_only }]
stickiness: { enabled: true, ttl: 10m }
local: { max_swap_wait: 0s }
budgets:
  timezone: Europe/Berlin
  on_exhausted: downgrade_local
  limits: [{ scope: user, period: weekly, limit: "5", mode: soft, dimension: local }]
"#,
    )
    .unwrap();
    assert!(!p.allows("big") && p.allows("mid"));
    assert!((p.floor.at(0.5) - 0.65).abs() < 1e-9);
    assert!(p.wants_routing("cheap") && p.wants_routing("router") && p.wants_routing("mid"));
    assert_eq!(p.budgets.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(p.budgets.limits[0].dimension, BudgetDimension::Local);
    assert_eq!(p.local.max_swap_wait, Duration::ZERO);
    assert_eq!(p.stickiness.ttl, Duration::from_secs(600));
}

#[test]
fn unknown_keys_are_rejected_with_path_line_and_hint() {
    let issues = parse("quality:\n  dail: economy\n").unwrap_err();
    assert_eq!(issues.len(), 1);
    assert!(issues[0].path.contains("quality"), "{:?}", issues[0]);
    assert_eq!(issues[0].line, Some(2));
    assert!(issues[0].message.contains("dail"));
    assert!(issues[0].hint.is_some());
}

#[test]
fn every_problem_is_reported_together() {
    let issues = parse(
        r#"
models: { allow: [bigg, "nothing*"] }
baseline: huge
quality: { dial: turbo }
max_cost_per_request: "-1"
requests: { named_models: maybe, aliases: { big: economy } }
tasks: { poetry: { min_quality: 2 } }
routes: [{ name: r, examples: [], threshold: 3 }]
data_rules: [{ name: d, patterns: ["("], action: local_only }]
budgets: { timezone: Mars/Olympus, limits: [{ scope: galaxy, period: hourly, limit: "0" }] }
"#,
    )
    .unwrap_err();
    let p = paths(&issues);
    for expected in [
        "models.allow[0]",
        "models.allow[1]",
        "baseline",
        "quality.dial",
        "max_cost_per_request",
        "requests.named_models",
        "requests.aliases.big",
        "tasks.poetry",
        "tasks.poetry.min_quality",
        "routes[0].examples",
        "routes[0].threshold",
        "routes[0]",
        "data_rules[0].patterns[0]",
        "budgets.timezone",
        "budgets.limits[0].scope",
        "budgets.limits[0].period",
        "budgets.limits[0].limit",
    ] {
        assert!(p.contains(&expected), "missing {expected} in {p:?}");
    }
    let typo = issues.iter().find(|i| i.path == "models.allow[0]").unwrap();
    assert_eq!(typo.hint.as_deref(), Some("did you mean `big`?"));
    assert!(issues.iter().all(|i| i.file == "eng.yaml"));
}

#[test]
fn a_falling_floor_is_refused() {
    let issues =
        parse("quality: { floor: [{difficulty: 0, min_quality: 0.8}, {difficulty: 1, min_quality: 0.5}] }")
            .unwrap_err();
    assert_eq!(paths(&issues), vec!["quality.floor[1].min_quality"]);
}

#[test]
fn floor_curves_interpolate_and_clamp() {
    let c = FloorCurve::new(vec![(0.2, 0.4), (0.6, 0.8)]);
    assert_eq!(c.at(0.0), 0.4);
    assert!((c.at(0.4) - 0.6).abs() < 1e-9);
    assert_eq!(c.at(1.0), 0.8);
    assert_eq!(c.at(f64::NAN), 0.8);
    for dial in [Dial::Economy, Dial::Balanced, Dial::Quality] {
        let curve = dial.curve();
        let mut last = -1.0;
        for i in 0..=100 {
            let q = curve.at(f64::from(i) / 100.0);
            assert!(q >= last, "{dial:?} falls at {i}");
            last = q;
        }
    }
    assert!(Dial::Economy.curve().at(0.5) < Dial::Balanced.curve().at(0.5));
    assert!(Dial::Balanced.curve().at(0.5) < Dial::Quality.curve().at(0.5));
}

#[test]
fn globs() {
    assert!(glob_match("claude-*", "claude-haiku-4-5"));
    assert!(glob_match("*-mini", "gpt-5.4-mini"));
    assert!(glob_match("gpt-*-mini", "gpt-5.4-mini"));
    assert!(!glob_match("gpt-*-mini", "gpt-5.4-nano"));
    assert!(glob_match("*", "x"));
    assert!(!glob_match("a*a", "a"));
}

#[test]
fn data_rules_match_tags_or_patterns() {
    let p = parse(
        r#"
data_rules:
  - { name: conf, tags: [confidential], action: local_only }
  - { name: keys, patterns: ['AKIA[0-9A-Z]{16}'], action: block }
"#,
    )
    .unwrap();
    let tags = BTreeSet::from(["confidential".to_owned()]);
    assert_eq!(p.data_rule(&tags, None).map(|r| r.name.as_str()), Some("conf"));
    assert_eq!(
        p.data_rule(&BTreeSet::new(), Some("key AKIAABCDEFGHIJKLMNOP"))
            .map(|r| r.name.as_str()),
        Some("keys")
    );
    assert!(p.data_rule(&BTreeSet::new(), Some("hello")).is_none());
}

struct FakeEmbedder;

impl Embedder for FakeEmbedder {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect())
    }
}

#[test]
fn route_examples_are_embedded_and_normalised() {
    let mut p = parse("routes: [{ name: r, examples: [abc, abcdef], prefer: [mid] }]").unwrap();
    assert_eq!(p.routes_without_embeddings(), vec!["r"]);
    p.embed_routes(&FakeEmbedder).unwrap();
    assert!(p.routes_without_embeddings().is_empty());
    let e = &p.routes[0].embeddings[0];
    assert!((e.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    let sim = p.routes[0].similarity(e).unwrap();
    assert!((sim - 1.0).abs() < 1e-5);
}

#[test]
fn a_set_loads_from_a_folder_and_teams_fall_back_to_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.yaml"), "quality: { dial: economy }").unwrap();
    std::fs::write(dir.path().join("eng.yaml"), "quality: { dial: quality }").unwrap();
    std::fs::write(dir.path().join("README.md"), "not a policy").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "garbage: [").unwrap();
    let set = PolicySet::load_dir(dir.path(), &catalogue(), None).unwrap();
    assert_eq!(set.for_team("eng").dial, Some(Dial::Quality));
    assert_eq!(set.for_team("sales").dial, Some(Dial::Economy));
    assert_eq!(set.for_team("sales").name, "default");
}

#[test]
fn problems_in_several_files_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "baseline: nope").unwrap();
    std::fs::write(dir.path().join("b.yaml"), "quality: [").unwrap();
    let issues = PolicySet::load_dir(dir.path(), &catalogue(), None).unwrap_err();
    let files: BTreeSet<_> = issues
        .iter()
        .map(|i| Path::new(&i.file).file_name().unwrap().to_owned())
        .collect();
    assert_eq!(files.len(), 2, "{issues:?}");
}

#[test]
fn store_swaps_atomically_and_keeps_the_old_set_on_reject() {
    let store = Policies::new(Policy::default());
    assert_eq!(store.status().generation, 1);
    let mut set = PolicySet::default();
    let eng = Policy {
        name: "eng".into(),
        dial: Some(Dial::Quality),
        ..Policy::default()
    };
    set.teams.insert("eng".into(), Arc::new(eng));
    store.replace(set);
    assert_eq!(store.for_team("eng").dial, Some(Dial::Quality));
    assert_eq!(store.status().generation, 2);
    store.reject(vec![PolicyIssue {
        file: "x".into(),
        path: "y".into(),
        line: None,
        message: "bad".into(),
        hint: None,
    }]);
    assert_eq!(
        store.for_team("eng").dial,
        Some(Dial::Quality),
        "old set still live"
    );
    assert_eq!(store.status().generation, 2);
    assert!(store.status().last_error.is_some());
}

#[test]
fn warnings_flag_unreachable_floors_and_useless_caps() {
    let p = parse("models: { allow: [small, mid] }\nquality: { dial: quality }\nmax_cost_per_request: \"0.0000001\"\ntasks: { code: { prefer: [big] } }\n").unwrap();
    let w = p.warnings(&catalogue()).join("\n");
    assert!(w.contains("best allowed model has 0.80"), "{w}");
    assert!(w.contains("max_cost_per_request"), "{w}");
    assert!(w.contains("tasks.code.prefer names `big`"), "{w}");
    assert!(parse("").unwrap().warnings(&catalogue()).is_empty());
}
