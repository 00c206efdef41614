use std::collections::HashMap;
use std::path::Path;

use rust_decimal_macros::dec;

use super::*;
use crate::config::Config;
use crate::local::LocalDeploymentView;
use crate::policy::parse_policy;

const CATALOGUE: &str = r#"
deployments:
  a: { kind: openai, base_url: "https://a.example/v1", api_key: "env:A_KEY" }
  b: { kind: openai, base_url: "https://b.example/v1", api_key: "env:B_KEY" }
  nokey: { kind: openai, base_url: "https://c.example/v1", api_key: "env:MISSING_KEY" }
  gpu: { kind: openai, base_url: "http://gpu:11434/v1", local: { probe: ollama } }
models:
  - { name: premium, deployments: [a, b], price: { input: "5", output: "25" }, quality: 0.95, capabilities: [tools, vision], context_window: 200000 }
  - { name: mid, deployments: [a], price: { input: "1", output: "4" }, quality: 0.8, capabilities: [tools], context_window: 100000 }
  - { name: mini, deployments: [b], price: { input: "0.2", output: "1" }, quality: 0.6, context_window: 16000 }
  - { name: mini-twin, deployments: [a], price: { input: "0.2", output: "1" }, quality: 0.6, context_window: 16000, latency: 100ms }
  - { name: orphan, deployments: [nokey], price: { input: "0.01", output: "0.01" }, quality: 0.99 }
  - { name: local-small, deployments: [gpu], upstream_model: "small:latest", local: true, quality: 0.4, load_time: 30s }
  - { name: local-big, deployments: [gpu], upstream_model: "big:70b", local: true, quality: 0.7, internal_cost: { input: "0.1", output: "0.1" }, load_time: 5s }
  - { name: embed, deployments: [a], price: { input: "0.02", output: "0" }, capabilities: [embeddings] }
"#;

fn catalogue() -> Arc<Catalogue> {
    let env = HashMap::from([
        ("A_KEY".to_owned(), "k".to_owned()),
        ("B_KEY".to_owned(), "k".to_owned()),
    ]);
    Config::from_yaml(CATALOGUE, "t", Path::new("."), &env)
        .unwrap()
        .catalogue
}

fn policy(yaml: &str) -> Policy {
    parse_policy("t", "t.yaml", yaml, &catalogue()).unwrap()
}

fn facts() -> RequestFacts {
    RequestFacts {
        estimated_input_tokens: 1000,
        max_tokens: Some(500),
        ..RequestFacts::default()
    }
}

fn sig(d: f32) -> Signal {
    Signal::new(d, None)
}

/// No local models unless a test loads them: every local deployment is probed and empty.
fn cold_gpu() -> Conditions {
    let mut c = Conditions::default();
    c.local.anti_thrash_window = Duration::from_secs(120);
    c.local.deployments.insert(
        "gpu".into(),
        LocalDeploymentView {
            probed: true,
            ..Default::default()
        },
    );
    c
}

fn loaded(models: &[&str]) -> Conditions {
    let mut c = cold_gpu();
    c.local.deployments.get_mut("gpu").unwrap().loaded = models.iter().map(|m| m.to_string()).collect();
    c
}

fn pick(
    p: &Policy,
    requested: &str,
    f: &RequestFacts,
    s: Option<&Signal>,
    c: &Conditions,
) -> Result<(String, &'static str), RouteError> {
    decide_with(p, &catalogue(), requested, f, s, c).map(|d| (d.targets[0].model.name.clone(), d.reason))
}

/// (name, policy, requested, facts, signal, conditions, expected model or error kind, expected reason)
type Case = (
    &'static str,
    String,
    &'static str,
    RequestFacts,
    Option<Signal>,
    Conditions,
    &'static str,
    &'static str,
);

const NO_LOCAL: &str = "local: { use_local: false }\n";

#[test]
fn table() {
    let floor = |lo: f64, hi: f64| {
        format!(
            "quality: {{ floor: [{{difficulty: 0, min_quality: {lo}}}, {{difficulty: 1, min_quality: {hi}}}] }}\n"
        )
    };
    // (name, policy, requested, facts, signal, conditions, expected model or error kind, expected reason)
    let f = facts();
    let cases: Vec<Case> = vec![
        (
            "easy goes cheapest (tie to lower latency)",
            floor(0.5, 0.95) + NO_LOCAL,
            "auto",
            f.clone(),
            Some(sig(0.0)),
            cold_gpu(),
            "mini-twin",
            "cheapest_qualifying",
        ),
        (
            "hard goes premium",
            floor(0.5, 0.95) + NO_LOCAL,
            "auto",
            f.clone(),
            Some(sig(1.0)),
            cold_gpu(),
            "premium",
            "cheapest_qualifying",
        ),
        (
            "middle goes mid",
            floor(0.5, 0.95) + NO_LOCAL,
            "auto",
            f.clone(),
            Some(sig(0.5)),
            cold_gpu(),
            "mid",
            "cheapest_qualifying",
        ),
        (
            "missing key = unhealthy",
            floor(0.0, 0.0) + NO_LOCAL,
            "auto",
            f.clone(),
            Some(sig(0.0)),
            cold_gpu(),
            "mini-twin",
            "cheapest_qualifying",
        ),
        (
            "tools needed",
            floor(0.0, 0.0) + NO_LOCAL,
            "auto",
            RequestFacts {
                needs: [Capability::Tools].into(),
                ..f.clone()
            },
            Some(sig(0.0)),
            cold_gpu(),
            "mid",
            "cheapest_qualifying",
        ),
        (
            "vision needed",
            floor(0.0, 0.0) + NO_LOCAL,
            "auto",
            RequestFacts {
                needs: [Capability::Vision].into(),
                ..f.clone()
            },
            Some(sig(0.0)),
            cold_gpu(),
            "premium",
            "cheapest_qualifying",
        ),
        (
            "long context",
            floor(0.0, 0.0) + NO_LOCAL,
            "auto",
            RequestFacts {
                estimated_input_tokens: 50_000,
                ..f.clone()
            },
            Some(sig(0.0)),
            cold_gpu(),
            "mid",
            "cheapest_qualifying",
        ),
        (
            "embeddings endpoint",
            String::new(),
            "auto",
            RequestFacts {
                needs: [Capability::Embeddings].into(),
                ..f.clone()
            },
            Some(sig(0.0)),
            cold_gpu(),
            "embed",
            "cheapest_qualifying",
        ),
        (
            "denied model skipped",
            floor(0.5, 0.95) + NO_LOCAL + "models: { deny: [mini*] }\n",
            "auto",
            f.clone(),
            Some(sig(0.0)),
            cold_gpu(),
            "mid",
            "cheapest_qualifying",
        ),
        (
            "allow list",
            floor(0.0, 0.0) + NO_LOCAL + "models: { allow: [premium] }\n",
            "auto",
            f.clone(),
            Some(sig(0.0)),
            cold_gpu(),
            "premium",
            "cheapest_qualifying",
        ),
        (
            "named honoured",
            String::new(),
            "premium",
            f.clone(),
            None,
            cold_gpu(),
            "premium",
            "honoured",
        ),
        (
            "named routed",
            floor(0.0, 0.0) + NO_LOCAL + "requests: { named_models: route }\n",
            "premium",
            f.clone(),
            Some(sig(0.0)),
            cold_gpu(),
            "mini-twin",
            "cheapest_qualifying",
        ),
        (
            "named denied",
            "requests: { named_models: deny }\n".into(),
            "premium",
            f.clone(),
            None,
            cold_gpu(),
            "denied",
            "",
        ),
        (
            "named but not allowed",
            "models: { deny: [premium] }\n".into(),
            "premium",
            f.clone(),
            None,
            cold_gpu(),
            "denied",
            "",
        ),
        (
            "unknown model",
            String::new(),
            "gpt-9",
            f.clone(),
            None,
            cold_gpu(),
            "unknown",
            "",
        ),
        (
            "alias uses its dial",
            "requests: { aliases: { best: quality } }\n".to_owned() + NO_LOCAL,
            "best",
            f.clone(),
            Some(sig(0.3)),
            cold_gpu(),
            "mid",
            "cheapest_qualifying",
        ),
        (
            "cost cap downgrades the hard query",
            floor(0.5, 0.95) + NO_LOCAL + "max_cost_per_request: \"0.005\"\n",
            "auto",
            f.clone(),
            Some(sig(1.0)),
            cold_gpu(),
            "mid",
            "cost_capped",
        ),
        (
            "cost cap with nothing under it",
            floor(0.0, 0.0) + NO_LOCAL + "max_cost_per_request: \"0.0000001\"\n",
            "auto",
            f.clone(),
            Some(sig(0.0)),
            cold_gpu(),
            "no_candidate",
            "",
        ),
        (
            "floor above every model: best available",
            floor(0.99, 0.99) + NO_LOCAL,
            "auto",
            f.clone(),
            Some(sig(0.5)),
            cold_gpu(),
            "premium",
            "best_available",
        ),
        (
            "task minimum",
            floor(0.0, 0.0) + NO_LOCAL + "tasks: { code: { min_quality: 0.8 } }\n",
            "auto",
            f.clone(),
            Some(Signal::new(0.0, Some("code".into()))),
            cold_gpu(),
            "mid",
            "cheapest_qualifying",
        ),
        (
            "task preference",
            floor(0.0, 0.0) + NO_LOCAL + "tasks: { writing: { prefer: [premium] } }\n",
            "auto",
            f.clone(),
            Some(Signal::new(0.0, Some("writing".into()))),
            cold_gpu(),
            "premium",
            "task_preference",
        ),
        (
            "preference must still meet the floor",
            floor(0.9, 0.9) + NO_LOCAL + "tasks: { writing: { prefer: [mid] } }\n",
            "auto",
            f.clone(),
            Some(Signal::new(0.0, Some("writing".into()))),
            cold_gpu(),
            "premium",
            "cheapest_qualifying",
        ),
        (
            "classifier down: assumed difficulty",
            floor(0.5, 0.95) + NO_LOCAL + "",
            "auto",
            f.clone(),
            None,
            cold_gpu(),
            "mid",
            "classifier_unavailable",
        ),
        (
            "classifier down: fallback model",
            "quality: { unclassified_model: premium }\n".to_owned() + NO_LOCAL,
            "auto",
            f.clone(),
            None,
            cold_gpu(),
            "premium",
            "classifier_unavailable",
        ),
        (
            "loaded local model is cheapest",
            floor(0.0, 0.0),
            "auto",
            f.clone(),
            Some(sig(0.0)),
            loaded(&["small"]),
            "local-small",
            "cheapest_qualifying",
        ),
        (
            "cold local model too slow",
            floor(0.0, 0.0) + "local: { max_swap_wait: 10s }\n",
            "auto",
            f.clone(),
            Some(sig(0.0)),
            cold_gpu(),
            "local-big",
            "cheapest_qualifying",
        ),
        (
            "no swaps allowed",
            floor(0.0, 0.0) + "local: { max_swap_wait: 0s }\n",
            "auto",
            f.clone(),
            Some(sig(0.0)),
            cold_gpu(),
            "mini-twin",
            "cheapest_qualifying",
        ),
        (
            "confidential stays local",
            floor(0.5, 0.95) + "data_rules: [{ name: conf, tags: [confidential], action: local_only }]\n",
            "auto",
            RequestFacts {
                tags: ["confidential".to_owned()].into(),
                ..f.clone()
            },
            Some(sig(0.2)),
            loaded(&["small", "big:70b"]),
            "local-big",
            "data_rule",
        ),
        (
            "confidential named model is rerouted",
            "data_rules: [{ name: conf, tags: [confidential], action: local_only }]\n".into(),
            "premium",
            RequestFacts {
                tags: ["confidential".to_owned()].into(),
                ..f.clone()
            },
            Some(sig(0.0)),
            loaded(&["small"]),
            "local-small",
            "data_rule",
        ),
        (
            "pattern blocks",
            "data_rules: [{ name: keys, patterns: ['AKIA[0-9A-Z]{16}'], action: block }]\n".into(),
            "auto",
            RequestFacts {
                text: Some(Arc::from("here: AKIAABCDEFGHIJKLMNOP")),
                ..f.clone()
            },
            Some(sig(0.0)),
            cold_gpu(),
            "denied",
            "",
        ),
        (
            "allow_only rule",
            floor(0.0, 0.0)
                + "data_rules: [{ name: emb, patterns: ['(?i)falcon'], action: allow_only, models: [mid] }]\n",
            "auto",
            RequestFacts {
                text: Some(Arc::from("Project Falcon launch")),
                ..f.clone()
            },
            Some(sig(0.0)),
            cold_gpu(),
            "mid",
            "data_rule",
        ),
        (
            "budget exhausted blocks",
            "budgets: { on_exhausted: block }\n".into(),
            "auto",
            RequestFacts {
                budget_exhausted: true,
                ..f.clone()
            },
            Some(sig(0.0)),
            cold_gpu(),
            "denied",
            "",
        ),
        (
            "budget exhausted: local",
            floor(0.5, 0.95) + "budgets: { on_exhausted: downgrade_local }\n",
            "auto",
            RequestFacts {
                budget_exhausted: true,
                ..f.clone()
            },
            Some(sig(1.0)),
            loaded(&["small"]),
            "local-big",
            "budget_downgrade",
        ),
        (
            "budget exhausted: cheapest",
            floor(0.5, 0.95) + NO_LOCAL + "budgets: { on_exhausted: downgrade_cheapest }\n",
            "auto",
            RequestFacts {
                budget_exhausted: true,
                ..f.clone()
            },
            Some(sig(1.0)),
            cold_gpu(),
            "mini-twin",
            "budget_downgrade",
        ),
        (
            "sticky keeps a qualifying model",
            floor(0.0, 0.0) + NO_LOCAL + "stickiness: { enabled: true }\n",
            "auto",
            f.clone(),
            Some(sig(0.0)),
            Conditions {
                sticky_model: Some("mid".into()),
                ..cold_gpu()
            },
            "mid",
            "sticky",
        ),
        (
            "sticky yields to a harder turn",
            floor(0.5, 0.95) + NO_LOCAL + "stickiness: { enabled: true }\n",
            "auto",
            f.clone(),
            Some(sig(1.0)),
            Conditions {
                sticky_model: Some("mid".into()),
                ..cold_gpu()
            },
            "premium",
            "cheapest_qualifying",
        ),
        (
            "sticky off",
            floor(0.0, 0.0) + NO_LOCAL,
            "auto",
            f.clone(),
            Some(sig(0.0)),
            Conditions {
                sticky_model: Some("mid".into()),
                ..cold_gpu()
            },
            "mini-twin",
            "cheapest_qualifying",
        ),
        (
            "unhealthy deployment",
            floor(0.0, 0.0) + NO_LOCAL,
            "auto",
            f.clone(),
            Some(sig(0.0)),
            Conditions {
                unhealthy: ["a".to_owned()].into(),
                ..cold_gpu()
            },
            "mini",
            "cheapest_qualifying",
        ),
        (
            "everything down",
            floor(0.0, 0.0) + NO_LOCAL,
            "auto",
            f.clone(),
            Some(sig(0.0)),
            Conditions {
                unhealthy: ["a".to_owned(), "b".to_owned()].into(),
                ..cold_gpu()
            },
            "unavailable",
            "",
        ),
    ];
    let mut failures = Vec::new();
    for (name, yaml, requested, facts, signal, conditions, want, reason) in cases {
        let p = policy(&yaml);
        let got = pick(&p, requested, &facts, signal.as_ref(), &conditions);
        let ok = match (&got, want) {
            (Err(RouteError::Denied(_)), "denied") | (Err(RouteError::UnknownModel(_)), "unknown") => true,
            (Err(RouteError::NoCandidate(_)), "no_candidate")
            | (Err(RouteError::Unavailable(_)), "unavailable") => true,
            (Ok((m, r)), _) => m == want && *r == reason,
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: want {want}/{reason}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn decision_carries_fallbacks_rejections_and_costs() {
    let p = policy(
        "quality: { floor: [{difficulty: 0, min_quality: 0.7}, {difficulty: 1, min_quality: 0.7}] }\nmodels: { deny: [local-*] }\n",
    );
    let d = decide_with(&p, &catalogue(), "auto", &facts(), Some(&sig(0.5)), &cold_gpu()).unwrap();
    let names: Vec<_> = d
        .targets
        .iter()
        .map(|t| (t.model.name.as_str(), t.deployment.name.as_str()))
        .collect();
    assert_eq!(names, vec![("mid", "a"), ("premium", "a"), ("premium", "b")]);
    // 1000 × $1/M + 500 × $4/M
    assert_eq!(d.expected_cost, dec!(0.003));
    assert_eq!(d.quality_floor, Some(0.7));
    assert_eq!(
        d.baseline.as_ref().unwrap().name,
        "orphan",
        "best non-local model by quality"
    );
    let why: HashMap<_, _> = d.rejected.iter().map(|r| (r.model.as_str(), &r.reason)).collect();
    assert_eq!(why["local-small"], &RejectReason::NotAllowed);
    assert_eq!(why["orphan"], &RejectReason::Unhealthy);
    assert!(matches!(why["mini"], RejectReason::BelowQualityFloor { .. }));
    assert!(
        d.detail.is_ascii() && d.detail.starts_with("auto->mid"),
        "{}",
        d.detail
    );
}

#[test]
fn expected_output_tokens_use_the_smaller_of_max_tokens_and_policy() {
    let p = policy("expected_output_tokens: 200\n");
    let d = decide(&p, &catalogue(), "premium", &facts(), None).unwrap();
    assert_eq!(d.expected_output_tokens, 200);
    let d = decide(
        &p,
        &catalogue(),
        "premium",
        &RequestFacts {
            max_tokens: Some(50),
            ..facts()
        },
        None,
    )
    .unwrap();
    assert_eq!(d.expected_output_tokens, 50);
}

#[test]
fn honoured_model_over_cap_is_denied() {
    let p = policy("max_cost_per_request: \"0.001\"\n");
    assert!(matches!(
        decide(&p, &catalogue(), "premium", &facts(), None),
        Err(RouteError::Denied(_))
    ));
}

#[test]
fn cold_local_model_reports_its_wait_and_thrash_is_avoided() {
    let p = policy(
        "quality: { floor: [{difficulty: 0, min_quality: 0.65}, {difficulty: 1, min_quality: 0.65}] }\nlocal: { max_swap_wait: 10s }\n",
    );
    let d = decide_with(&p, &catalogue(), "auto", &facts(), Some(&sig(0.5)), &cold_gpu()).unwrap();
    assert_eq!(d.targets[0].model.name, "local-big");
    assert_eq!(d.cold_start, Some(Duration::from_secs(5)));
    // The GPU swapped moments ago and holds another model: do not evict it again.
    let mut c = loaded(&["small:latest"]);
    c.local.deployments.get_mut("gpu").unwrap().since_last_swap = Some(Duration::from_secs(10));
    let d = decide_with(&p, &catalogue(), "auto", &facts(), Some(&sig(0.5)), &c).unwrap();
    assert_eq!(d.targets[0].model.name, "mid");
    assert!(
        d.rejected
            .iter()
            .any(|r| r.model == "local-big" && r.reason == RejectReason::WouldThrash)
    );
    // A learned load time replaces the configured one.
    let mut c = cold_gpu();
    c.local
        .deployments
        .get_mut("gpu")
        .unwrap()
        .learned_load_time
        .insert("big:70b".into(), Duration::from_secs(40));
    let d = decide_with(&p, &catalogue(), "auto", &facts(), Some(&sig(0.5)), &c).unwrap();
    assert_eq!(d.targets[0].model.name, "mid");
    assert!(
        d.rejected
            .iter()
            .any(|r| r.model == "local-big" && matches!(r.reason, RejectReason::ColdTooSlow { .. }))
    );
}

#[test]
fn admin_route_matches_by_embedding() {
    struct E;
    impl crate::policy::Embedder for E {
        fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
            Ok(texts
                .iter()
                .map(|t| {
                    if t.contains("sql") {
                        vec![1.0, 0.0]
                    } else {
                        vec![0.0, 1.0]
                    }
                })
                .collect())
        }
    }
    let mut p = policy(
        "local: { use_local: false }\nroutes: [{ name: sql, examples: [\"write sql\"], prefer: [premium], threshold: 0.8 }]\n",
    );
    p.embed_routes(&E).unwrap();
    let near = Signal {
        embedding: Some(Arc::from(vec![0.96f32, 0.28])),
        ..sig(0.0)
    };
    let far = Signal {
        embedding: Some(Arc::from(vec![0.0f32, 1.0])),
        ..sig(0.0)
    };
    let d = decide(&p, &catalogue(), "auto", &facts(), Some(&near)).unwrap();
    assert_eq!(
        (
            d.targets[0].model.name.as_str(),
            d.reason,
            d.matched_route.as_deref()
        ),
        ("premium", "admin_route", Some("sql"))
    );
    let d = decide(&p, &catalogue(), "auto", &facts(), Some(&far)).unwrap();
    assert_eq!(d.matched_route, None);
}

#[test]
fn every_reason_is_in_the_label_set() {
    for r in [
        "honoured",
        "cheapest_qualifying",
        "cost_capped",
        "best_available",
        "data_rule",
        "budget_downgrade",
        "sticky",
        "admin_route",
        "task_preference",
        "classifier_unavailable",
    ] {
        assert!(REASONS.contains(&r));
    }
}

#[test]
fn route_errors_map_to_openai_errors() {
    use http::StatusCode;
    let e: crate::error::Error = RouteError::UnknownModel("x".into()).into();
    assert_eq!(e.status_code(), StatusCode::NOT_FOUND);
    let e: crate::error::Error = RouteError::Denied("x".into()).into();
    assert_eq!(e.status_code(), StatusCode::FORBIDDEN);
    let e: crate::error::Error = RouteError::NoCandidate("x".into()).into();
    assert_eq!(e.status_code(), StatusCode::BAD_REQUEST);
    let e: crate::error::Error = RouteError::Unavailable("x".into()).into();
    assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn provider_restriction_for_the_messages_endpoint() {
    let yaml = r#"
deployments:
  oa: { kind: openai, base_url: "https://a.example/v1" }
  an: { kind: anthropic, base_url: "https://b.example/v1" }
models:
  - { name: cheap-openai, deployments: [oa], price: { input: "0.1", output: "0.1" }, quality: 0.9 }
  - { name: claude, deployments: [an], price: { input: "1", output: "1" }, quality: 0.9 }
"#;
    let cat = Config::from_yaml(yaml, "t", Path::new("."), &HashMap::new())
        .unwrap()
        .catalogue;
    let p = parse_policy("t", "t.yaml", "", &cat).unwrap();
    let f = RequestFacts {
        provider: Some(crate::config::ProviderKind::Anthropic),
        ..facts()
    };
    let d = decide(&p, &cat, "auto", &f, Some(&sig(0.5))).unwrap();
    assert_eq!(d.targets[0].model.name, "claude");
    assert!(
        d.rejected
            .iter()
            .any(|r| r.model == "cheap-openai" && matches!(r.reason, RejectReason::WrongProvider { .. }))
    );
    assert!(matches!(
        decide(&p, &cat, "cheap-openai", &f, None),
        Err(RouteError::NoCandidate(_))
    ));
}

#[test]
fn tags_come_from_the_header_and_metadata() {
    let mut headers = http::HeaderMap::new();
    headers.insert(TAGS_HEADER, http::HeaderValue::from_static("Confidential, pii"));
    let body: serde_json::Value =
        serde_json::json!({ "metadata": { "tags": ["legal"], "confidential": "true" } });
    let tags = request_tags(&headers, body.as_object().unwrap());
    assert_eq!(
        tags,
        ["confidential", "legal", "pii"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert!(request_tags(&http::HeaderMap::new(), &serde_json::Map::new()).is_empty());
}

#[test]
fn request_text_collects_every_turn() {
    let body = serde_json::json!({
        "system": "be brief",
        "messages": [
            { "role": "user", "content": "hello" },
            { "role": "user", "content": [{ "type": "text", "text": "AKIA key" }, { "type": "image_url", "image_url": { "url": "x" } }] }
        ]
    });
    assert_eq!(
        request_text(body.as_object().unwrap()),
        "be brief\nhello\nAKIA key\n"
    );
    let emb = serde_json::json!({ "input": ["a", "b"] });
    assert_eq!(request_text(emb.as_object().unwrap()), "a\nb\n");
}
