//! Routing properties (proptest) and the shipped catalogue and policies, end to end through the public API.

#![expect(clippy::unwrap_used, reason = "test helpers: a panic is a failed test")]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use rust_decimal::Decimal;
use switchyard::config::{Capability, Catalogue, Config};
use switchyard::policy::{PolicySet, parse_policy};
use switchyard::route::{Conditions, RequestFacts, RouteError, Signal, decide, decide_with};

#[derive(Debug, Clone)]
struct ModelSpec {
    price_in: u32,
    price_out: u32,
    quality: u32,
    context: u32,
    tools: bool,
    healthy: bool,
    local: bool,
    loaded: bool,
}

fn model_spec() -> impl Strategy<Value = ModelSpec> {
    (
        0u32..2000,
        0u32..8000,
        0u32..=20,
        prop_oneof![1 => Just(4_000u32), 2 => Just(32_000), 2 => Just(200_000)],
        any::<bool>(),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(
            |(price_in, price_out, quality, context, tools, healthy, local, loaded)| ModelSpec {
                price_in,
                price_out,
                quality,
                context,
                tools,
                healthy,
                local,
                loaded,
            },
        )
}

#[derive(Debug, Clone)]
struct PolicySpec {
    deny: Vec<bool>,
    floor: Vec<u32>,
    cap_millicents: Option<u32>,
    named: u8,
    code_min: Option<u32>,
    max_swap_wait_s: u32,
}

fn policy_spec(n: usize) -> impl Strategy<Value = PolicySpec> {
    (
        prop::collection::vec(prop::bool::weighted(0.25), n),
        prop::collection::vec(0u32..=20, 1..5),
        prop::option::of(prop_oneof![1u32..3_000, 1u32..200_000]),
        0u8..3,
        prop::option::of(0u32..=20),
        0u32..60,
    )
        .prop_map(
            |(deny, mut floor, cap_millicents, named, code_min, max_swap_wait_s)| {
                floor.sort_unstable();
                PolicySpec {
                    deny,
                    floor,
                    cap_millicents,
                    named,
                    code_min,
                    max_swap_wait_s,
                }
            },
        )
}

struct World {
    catalogue: Arc<Catalogue>,
    conditions: Conditions,
}

fn world(models: &[ModelSpec]) -> World {
    let mut yaml = String::from(
        "deployments:\n  up: { kind: openai, base_url: \"https://up.example/v1\" }\n  down: { kind: openai, base_url: \"https://down.example/v1\" }\n  gpu: { kind: openai, base_url: \"http://gpu/v1\", local: { probe: ollama } }\nmodels:\n",
    );
    let mut conditions = Conditions::default();
    conditions.unhealthy.insert("down".into());
    let mut gpu = switchyard::local::LocalDeploymentView {
        probed: true,
        ..Default::default()
    };
    for (i, m) in models.iter().enumerate() {
        let dep = if m.local {
            "gpu"
        } else if m.healthy {
            "up"
        } else {
            "down"
        };
        let price = format!(
            "{{ input: \"{}\", output: \"{}\" }}",
            Decimal::new(i64::from(m.price_in), 2),
            Decimal::new(i64::from(m.price_out), 2)
        );
        let money = if m.local {
            format!("local: true, internal_cost: {price}, load_time: 20s")
        } else {
            format!("price: {price}")
        };
        let caps = if m.tools { "[tools]" } else { "[]" };
        yaml.push_str(&format!(
            "  - {{ name: m{i}, deployments: [{dep}], {money}, quality: {}, context_window: {}, capabilities: {caps} }}\n",
            f64::from(m.quality) / 20.0,
            m.context
        ));
        if m.local && m.loaded {
            gpu.loaded.insert(format!("m{i}"));
        }
    }
    conditions.local.deployments.insert("gpu".into(), gpu);
    let catalogue = Config::from_yaml(&yaml, "prop", Path::new("."), &HashMap::new())
        .unwrap()
        .catalogue;
    World {
        catalogue,
        conditions,
    }
}

fn policy_yaml(p: &PolicySpec) -> String {
    let deny: Vec<String> = p
        .deny
        .iter()
        .enumerate()
        .filter(|(_, d)| **d)
        .map(|(i, _)| format!("m{i}"))
        .collect();
    let n = p.floor.len();
    let points: Vec<String> = p
        .floor
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let d = if n == 1 { 0.0 } else { i as f64 / (n - 1) as f64 };
            format!("{{difficulty: {d}, min_quality: {}}}", f64::from(*q) / 20.0)
        })
        .collect();
    let mut y = format!(
        "models: {{ deny: [{}] }}\nquality: {{ floor: [{}] }}\n",
        deny.join(", "),
        points.join(", ")
    );
    if let Some(c) = p.cap_millicents {
        y.push_str(&format!(
            "max_cost_per_request: \"{}\"\n",
            Decimal::new(i64::from(c), 5)
        ));
    }
    y.push_str(&format!(
        "requests: {{ named_models: {} }}\n",
        ["honour", "route", "deny"][usize::from(p.named % 3)]
    ));
    if let Some(q) = p.code_min {
        y.push_str(&format!(
            "tasks: {{ code: {{ min_quality: {} }} }}\n",
            f64::from(q) / 20.0
        ));
    }
    y.push_str(&format!("local: {{ max_swap_wait: {}s }}\n", p.max_swap_wait_s));
    y
}

fn facts_strategy() -> impl Strategy<Value = RequestFacts> {
    (
        prop_oneof![3 => 0u64..2_000, 1 => 0u64..60_000],
        prop::option::of(1u64..4000),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(input, max_tokens, tools)| RequestFacts {
            estimated_input_tokens: input,
            max_tokens,
            needs: if tools {
                BTreeSet::from([Capability::Tools])
            } else {
                BTreeSet::new()
            },
            ..RequestFacts::default()
        })
}

fn case() -> impl Strategy<Value = (Vec<ModelSpec>, PolicySpec, RequestFacts, f32, f32, bool, usize)> {
    prop::collection::vec(model_spec(), 1..8).prop_flat_map(|models| {
        let n = models.len();
        (
            Just(models),
            policy_spec(n),
            facts_strategy(),
            0.0f32..=1.0,
            0.0f32..=1.0,
            any::<bool>(),
            0..n + 1,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Never a denied model: not as the choice, not as a fallback — whatever was asked for.
    #[test]
    fn never_a_denied_model((models, spec, facts, d, _, code, requested) in case()) {
        let w = world(&models);
        let policy = parse_policy("p", "p.yaml", &policy_yaml(&spec), &w.catalogue).unwrap();
        let requested = if requested == models.len() { "auto".to_owned() } else { format!("m{requested}") };
        let signal = Signal::new(d, code.then(|| "code".to_owned()));
        if let Ok(decision) = decide_with(&policy, &w.catalogue, &requested, &facts, Some(&signal), &w.conditions) {
            for t in &decision.targets {
                prop_assert!(policy.allows(&t.model.name), "{} is denied", t.model.name);
            }
        }
    }

    /// Never above the per-request cost cap: a routed choice always has expected cost within the cap, and the
    /// cap is exceeded only by refusing (when no model under it can serve).
    #[test]
    fn never_above_the_cost_cap((models, spec, facts, d, _, code, _) in case()) {
        let w = world(&models);
        let policy = parse_policy("p", "p.yaml", &policy_yaml(&spec), &w.catalogue).unwrap();
        let signal = Signal::new(d, code.then(|| "code".to_owned()));
        match decide_with(&policy, &w.catalogue, "auto", &facts, Some(&signal), &w.conditions) {
            Ok(decision) => {
                if let Some(cap) = policy.max_cost_per_request {
                    prop_assert!(decision.expected_cost <= cap, "{} > {cap}", decision.expected_cost);
                }
                // And it is the cheapest qualifying model unless a preference or a cap-forced trade-off said otherwise.
                if decision.reason == "cheapest_qualifying" {
                    let floor = decision.quality_floor.unwrap();
                    let chosen = &decision.targets[0].model;
                    for other in decision.targets.iter().skip(1) {
                        let cost = |m: &switchyard::config::Model| switchyard::cost::max_cost(facts.estimated_input_tokens, decision.expected_output_tokens, &m.price);
                        prop_assert!(cost(&other.model) >= cost(chosen));
                        prop_assert!(other.model.quality >= floor);
                    }
                }
            }
            Err(RouteError::NoCandidate(_) | RouteError::Unavailable(_)) => {}
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    /// A harder query never gets a lower-quality model under the same policy and the same world.
    #[test]
    fn harder_never_gets_worse((models, spec, facts, d1, d2, code, _) in case()) {
        let w = world(&models);
        let policy = parse_policy("p", "p.yaml", &policy_yaml(&spec), &w.catalogue).unwrap();
        let (easy, hard) = if d1 <= d2 { (d1, d2) } else { (d2, d1) };
        let task = code.then(|| "code".to_owned());
        let e = decide_with(&policy, &w.catalogue, "auto", &facts, Some(&Signal::new(easy, task.clone())), &w.conditions);
        let h = decide_with(&policy, &w.catalogue, "auto", &facts, Some(&Signal::new(hard, task)), &w.conditions);
        match (e, h) {
            (Ok(e), Ok(h)) => prop_assert!(
                h.targets[0].model.quality >= e.targets[0].model.quality,
                "difficulty {easy} got {} ({}), {hard} got {} ({})",
                e.targets[0].model.name, e.targets[0].model.quality, h.targets[0].model.name, h.targets[0].model.quality
            ),
            // The candidate set does not depend on difficulty, so both succeed or both fail.
            (Err(a), Err(b)) => prop_assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b)),
            (a, b) => prop_assert!(false, "one succeeded, one failed: {:?} / {:?}", a.map(|d| d.reason), b.map(|d| d.reason)),
        }
    }

    /// The same input always gives the same decision.
    #[test]
    fn deterministic((models, spec, facts, d, _, code, requested) in case()) {
        let w = world(&models);
        let policy = parse_policy("p", "p.yaml", &policy_yaml(&spec), &w.catalogue).unwrap();
        let requested = if requested == models.len() { "auto".to_owned() } else { format!("m{requested}") };
        let signal = Signal::new(d, code.then(|| "code".to_owned()));
        let a = decide_with(&policy, &w.catalogue, &requested, &facts, Some(&signal), &w.conditions);
        let b = decide_with(&policy, &w.catalogue, &requested, &facts, Some(&signal), &w.conditions.clone());
        let key = |r: &Result<switchyard::route::Decision, RouteError>| match r {
            Ok(d) => Ok((d.targets.iter().map(|t| (t.model.name.clone(), t.deployment.name.clone())).collect::<Vec<_>>(), d.reason, d.detail.clone(), d.expected_cost, d.rejected.clone())),
            Err(e) => Err(e.clone()),
        };
        prop_assert_eq!(key(&a), key(&b));
    }
}

// ---------------------------------------------------------------------------------------------------------
// The shipped catalogue and policies.

fn shipped() -> (Config, PolicySet) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env: HashMap<String, String> = [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "SWITCHYARD_ADMIN_KEY",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), "test".to_owned()))
    .collect();
    let config = Config::load(&root.join("examples/config.yaml"), &env).unwrap();
    let set = PolicySet::load_dir(&root.join("policies"), &config.catalogue, None).unwrap_or_else(|issues| {
        panic!(
            "shipped policies invalid:\n{}",
            issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    (config, set)
}

#[test]
fn shipped_catalogue_is_priced_dated_and_sourced() {
    let (config, set) = shipped();
    assert!(config.catalogue.prices_as_of.is_some());
    for m in &config.catalogue.models {
        assert!(m.quality_source.is_some(), "{} has no quality source", m.name);
        if !m.local {
            assert!(m.price.input > Decimal::ZERO, "{} is unpriced", m.name);
        }
    }
    for p in ["openai", "anthropic", "google"] {
        assert!(
            config
                .catalogue
                .models
                .iter()
                .any(|m| m.deployments.iter().any(|d| d.name == p)),
            "no {p} model"
        );
    }
    assert!(config.catalogue.models.iter().any(|m| m.local));
    assert_eq!(
        set.teams.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["engineering", "marketing"]
    );
}

#[test]
fn shipped_policies_route_sensibly() {
    let (config, set) = shipped();
    let cat = &config.catalogue;
    let facts = RequestFacts {
        estimated_input_tokens: 300,
        max_tokens: Some(400),
        ..RequestFacts::default()
    };
    let pick = |team: &str, model: &str, d: f32, task: &str| {
        decide(
            &set.for_team(team),
            cat,
            model,
            &facts,
            Some(&Signal::new(d, Some(task.to_owned()))),
        )
        .map(|d| (d.targets[0].model.name.clone(), d.reason))
    };
    // Trivial work never goes to a frontier model.
    for team in ["default", "engineering", "marketing"] {
        let (m, _) = pick(team, "auto", 0.05, "extraction").unwrap();
        assert!(
            cat.get(&m).unwrap().quality < 0.9,
            "{team} sent trivial work to {m}"
        );
    }
    // Engineering's hard code goes to a top model; marketing's to at most a mid model (and under its cap).
    let (eng, _) = pick("engineering", "auto", 0.95, "code").unwrap();
    assert!(cat.get(&eng).unwrap().quality >= 0.87, "{eng}");
    let (mkt, _) = pick("marketing", "auto", 0.95, "code").unwrap();
    assert!(set.for_team("marketing").allows(&mkt));
    // Marketing's writing prefers its mid model.
    assert_eq!(
        pick("marketing", "auto", 0.3, "writing").unwrap(),
        ("gemini-3-flash-preview".to_owned(), "task_preference")
    );
    // Marketing cannot pin a premium model: it is routed instead.
    let (m, reason) = pick("marketing", "gpt-5.5", 0.1, "qa").unwrap();
    assert_ne!(m, "gpt-5.5");
    assert_ne!(reason, "honoured");
    // The default policy honours named models but not the denied flagship.
    assert!(matches!(
        pick("default", "gpt-5.5", 0.1, "qa"),
        Err(RouteError::Denied(_))
    ));
    assert_eq!(
        pick("default", "claude-haiku-4-5", 0.9, "qa").unwrap().1,
        "honoured"
    );
    // Confidential requests stay on the local model.
    let conf = RequestFacts {
        tags: BTreeSet::from(["confidential".to_owned()]),
        ..facts.clone()
    };
    let d = decide(
        &set.for_team("default"),
        cat,
        "auto",
        &conf,
        Some(&Signal::new(0.2, None)),
    )
    .unwrap();
    assert!(d.targets.iter().all(|t| t.model.local), "{:?}", d.detail);
    // Pasted private keys are refused.
    let secret = RequestFacts {
        text: Some(Arc::from("-----BEGIN RSA PRIVATE KEY-----\nMII...")),
        ..facts.clone()
    };
    assert!(matches!(
        decide(
            &set.for_team("engineering"),
            cat,
            "auto",
            &secret,
            Some(&Signal::new(0.2, None))
        ),
        Err(RouteError::Denied(_))
    ));
}
