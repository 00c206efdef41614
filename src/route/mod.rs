//! Pipeline stage 4: the routing decision.
//!
//! [`decide`] is a pure function of the team policy, the catalogue, the requested model name, facts about the
//! request, the classifier's signal and a snapshot of the world ([`Conditions`]: deployment health, local-model
//! state, the conversation's previous model). It does no I/O and reads no clock, so the same inputs always give
//! the same decision — which is what the table tests and the proptest properties in `tests/routing.rs` rely on.
//!
//! The rule: among models the team may use, that have the needed capabilities, fit the context, are healthy
//! and (for local models) are loaded or can be loaded within the policy's `max_swap_wait`, choose the cheapest
//! by expected cost whose quality meets the floor for this difficulty, task and admin route, and stays under the
//! per-request cost cap. Ties go to lower expected latency. Preferences (sticky conversation, admin route, task)
//! pick a qualifying model ahead of the cheapest one but never a model that fails the floor or the cap.

pub mod report;
pub mod sticky;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::config::{Capability, Catalogue, Deployment, Model, ProviderKind};
use crate::local::{LocalSnapshot, Readiness};
use crate::policy::{DataAction, NamedModels, OnExhausted, Policy};

/// Facts about the request that constrain the choice.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub estimated_input_tokens: u64,
    pub max_tokens: Option<u64>,
    pub needs: BTreeSet<Capability>,
    pub stream: bool,
    /// Data tags from the `x-switchyard-tags` header or request metadata (e.g. `confidential`).
    pub tags: BTreeSet<String>,
    /// The request text data-rule patterns are matched against (the same text the classifier reads).
    pub text: Option<Arc<str>>,
    /// The budget stage found a budget exhausted and the policy says to downgrade rather than block.
    pub budget_exhausted: bool,
    /// Only deployments of this provider kind can serve (e.g. Anthropic for `/v1/messages`).
    pub provider: Option<ProviderKind>,
}

/// What the classifier said, as routing needs it.
#[derive(Debug, Clone, Default)]
pub struct Signal {
    pub difficulty: f32,
    /// The classifier's task type as a snake_case string (`code`, `math`, …).
    pub task: Option<String>,
    /// The normalised query embedding, for admin routes defined by example utterances.
    pub embedding: Option<Arc<[f32]>>,
}

impl Signal {
    pub fn new(difficulty: f32, task: Option<String>) -> Self {
        Signal {
            difficulty,
            task,
            embedding: None,
        }
    }
}

/// A snapshot of the world the decision is made in. Built by the caller per request; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// Deployments currently failing (circuit open). Deployments with a missing API key are treated the same.
    pub unhealthy: BTreeSet<String>,
    /// Which local models are loaded, loading, or cold, and how long a load takes.
    pub local: LocalSnapshot,
    /// The model this conversation used last, when the policy asks for stickiness.
    pub sticky_model: Option<String>,
    /// Dry runs (`switchyard route`, `replay`) on a machine without the API keys: treat deployments whose key
    /// variable is unset as usable, since nothing will be sent.
    pub assume_credentials: bool,
}

/// The header carrying data tags, comma-separated (`x-switchyard-tags: confidential, pii`).
pub const TAGS_HEADER: &str = "x-switchyard-tags";

/// Data tags of a request: the `x-switchyard-tags` header plus the body's `metadata.tags` (a list or a
/// comma-separated string) and `metadata.confidential: true`. Lower-cased, trimmed, at most 16.
pub fn request_tags(
    headers: &http::HeaderMap,
    body: &serde_json::Map<String, serde_json::Value>,
) -> BTreeSet<String> {
    use serde_json::Value;
    let mut tags = BTreeSet::new();
    let mut add = |s: &str| {
        for t in s.split(',') {
            let t = t.trim().to_ascii_lowercase();
            if !t.is_empty() && t.len() <= 64 && tags.len() < 16 {
                tags.insert(t);
            }
        }
    };
    for v in headers.get_all(TAGS_HEADER) {
        if let Ok(s) = v.to_str() {
            add(s);
        }
    }
    if let Some(meta) = body.get("metadata").and_then(Value::as_object) {
        match meta.get("tags") {
            Some(Value::String(s)) => add(s),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).for_each(&mut add),
            _ => {}
        }
        if meta
            .get("confidential")
            .is_some_and(|v| v == &Value::Bool(true) || v == "true")
        {
            add("confidential");
        }
    }
    tags
}

/// The request text data-rule patterns are matched against: every message's text (OpenAI `messages`,
/// Anthropic `system` + `messages`), or `prompt` / `input` for completions and embeddings. Image parts and tool
/// schemas are skipped.
pub fn request_text(body: &serde_json::Map<String, serde_json::Value>) -> String {
    use serde_json::Value;
    fn push(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(items) => items.iter().for_each(|i| push(i, out)),
            Value::Object(o) => {
                if let Some(t) = o.get("text") {
                    push(t, out);
                } else if let Some(c) = o.get("content") {
                    push(c, out);
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    for key in ["system", "messages", "prompt", "input"] {
        if let Some(v) = body.get(key) {
            push(v, &mut out);
        }
    }
    out
}

/// One model on one deployment.
#[derive(Debug, Clone)]
pub struct Target {
    pub model: Arc<Model>,
    pub deployment: Arc<Deployment>,
}

/// Why a model was not chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RejectReason {
    /// The team's allow/deny lists exclude it.
    NotAllowed,
    /// A data rule keeps this request off it.
    DataRule {
        rule: String,
    },
    /// The policy does not route to local models.
    LocalDisabled,
    /// An embedding model for a chat request, or the reverse.
    WrongKind,
    /// Not served by the provider kind this endpoint needs.
    WrongProvider {
        provider: &'static str,
    },
    MissingCapability {
        capability: &'static str,
    },
    ContextTooSmall {
        needed: u64,
        window: u32,
    },
    OutputTooLong {
        requested: u64,
        max: u32,
    },
    BelowQualityFloor {
        quality: f64,
        floor: f64,
    },
    /// Every deployment is failing or lacks credentials.
    Unhealthy,
    /// A local model that is not loaded and would take too long to load.
    ColdTooSlow {
        wait_ms: u64,
        max_ms: u64,
    },
    /// Loading it would evict a model loaded moments ago on the same GPU.
    WouldThrash,
    OverCostCap {
        expected: Decimal,
        cap: Decimal,
    },
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::NotAllowed => write!(f, "not allowed by the team policy"),
            RejectReason::DataRule { rule } => write!(f, "excluded by data rule `{rule}`"),
            RejectReason::LocalDisabled => write!(f, "local models are disabled for this team"),
            RejectReason::WrongKind => write!(f, "wrong kind of model for this endpoint"),
            RejectReason::WrongProvider { provider } => write!(f, "not served by a {provider} deployment"),
            RejectReason::MissingCapability { capability } => write!(f, "lacks {capability}"),
            RejectReason::ContextTooSmall { needed, window } => {
                write!(f, "needs {needed} tokens of context, has {window}")
            }
            RejectReason::OutputTooLong { requested, max } => {
                write!(f, "max_tokens {requested} above its limit {max}")
            }
            RejectReason::BelowQualityFloor { quality, floor } => {
                write!(f, "quality {quality:.2} below floor {floor:.2}")
            }
            RejectReason::Unhealthy => write!(f, "no healthy deployment"),
            RejectReason::ColdTooSlow { wait_ms, max_ms } => {
                write!(
                    f,
                    "not loaded; load takes ~{}s, max_swap_wait {}s",
                    wait_ms / 1000,
                    max_ms / 1000
                )
            }
            RejectReason::WouldThrash => write!(f, "not loaded and its GPU swapped models moments ago"),
            RejectReason::OverCostCap { expected, cap } => {
                write!(f, "expected ${expected:.6} above cap ${cap}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejection {
    pub model: String,
    pub reason: RejectReason,
}

#[derive(Debug, Clone)]
pub struct Decision {
    /// The chosen target first, then fallbacks in order.
    pub targets: Vec<Target>,
    /// Bounded label for metrics (see [`REASONS`]).
    pub reason: &'static str,
    /// Short human-readable reason for `x-switchyard-route` (ASCII, no user text).
    pub detail: String,
    /// Switchyard picked the model (as opposed to honouring a named one).
    pub routed: bool,
    pub difficulty: Option<f32>,
    /// The model savings are measured against.
    pub baseline: Option<Arc<Model>>,
    pub task: Option<String>,
    /// The minimum quality this request needed (routed requests).
    pub quality_floor: Option<f64>,
    /// Expected cost of the chosen model (USD), from estimated input and expected output tokens.
    pub expected_cost: Decimal,
    /// Output tokens assumed for `expected_cost`.
    pub expected_output_tokens: u64,
    /// Models not chosen, with why (qualifying-but-dearer models are not listed: they are the fallbacks).
    pub rejected: Vec<Rejection>,
    /// The admin route whose examples matched.
    pub matched_route: Option<String>,
    /// The data rule that applied.
    pub data_rule: Option<String>,
    /// The chosen model is local and not loaded: the expected wait for it to load.
    pub cold_start: Option<Duration>,
}

impl Decision {
    pub fn chosen(&self) -> Option<&Target> {
        self.targets.first()
    }
}

/// Every value [`Decision::reason`] can take: the bounded label set for metrics.
pub const REASONS: &[&str] = &[
    "honoured",
    "cheapest_qualifying",
    "classifier_unavailable",
    "task_preference",
    "admin_route",
    "sticky",
    "cost_capped",
    "best_available",
    "data_rule",
    "budget_downgrade",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// → 404 `model_not_found`.
    UnknownModel(String),
    /// → 403: the policy or a data rule forbids this request.
    Denied(String),
    /// → 400: nothing in the catalogue can serve this request under the policy.
    NoCandidate(String),
    /// → 503: models would qualify but none is healthy or loadable right now.
    Unavailable(String),
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::UnknownModel(m) => write!(f, "unknown model `{m}`"),
            RouteError::Denied(m) | RouteError::NoCandidate(m) | RouteError::Unavailable(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RouteError {}

impl From<RouteError> for crate::error::Error {
    fn from(e: RouteError) -> Self {
        use crate::error::{Error, ErrorKind};
        match e {
            RouteError::UnknownModel(m) => Error::model_not_found(&m),
            RouteError::Denied(m) => Error::new(ErrorKind::Forbidden, m)
                .with_param("model")
                .with_code("model_not_allowed"),
            RouteError::NoCandidate(m) => Error::invalid_request(m).with_code("no_qualifying_model"),
            RouteError::Unavailable(m) => {
                Error::new(ErrorKind::Unavailable, m).with_code("no_model_available")
            }
        }
    }
}

/// [`decide_with`] in a world where every deployment is healthy, no local state is known and nothing is sticky.
pub fn decide(
    policy: &Policy,
    catalogue: &Catalogue,
    requested: &str,
    facts: &RequestFacts,
    signal: Option<&Signal>,
) -> Result<Decision, RouteError> {
    decide_with(
        policy,
        catalogue,
        requested,
        facts,
        signal,
        &Conditions::default(),
    )
}

/// A model that passed every check but quality and cost, with what they cost.
struct Eligible<'a> {
    model: &'a Arc<Model>,
    deployments: Vec<Arc<Deployment>>,
    expected_cost: Decimal,
    latency: Duration,
    cold: Option<Duration>,
}

/// The policy's restriction on the candidate set for this request.
enum Restriction<'a> {
    None,
    LocalOnly(&'a str),
    AllowOnly(&'a str, &'a BTreeSet<String>),
}

/// Default time to first token for models with none configured, for latency tie-breaks.
const DEFAULT_LATENCY: Duration = Duration::from_millis(800);
/// How many models (beyond the chosen one) are offered as fallbacks.
const MAX_FALLBACK_MODELS: usize = 3;

pub fn decide_with(
    policy: &Policy,
    catalogue: &Catalogue,
    requested: &str,
    facts: &RequestFacts,
    signal: Option<&Signal>,
    conditions: &Conditions,
) -> Result<Decision, RouteError> {
    let data_rule = policy.data_rule(&facts.tags, facts.text.as_deref());
    let mut restriction = Restriction::None;
    if let Some(rule) = data_rule {
        match &rule.action {
            DataAction::Block => {
                return Err(RouteError::Denied(format!(
                    "This request is blocked by the `{}` data rule of your team's policy.",
                    rule.name
                )));
            }
            DataAction::LocalOnly => restriction = Restriction::LocalOnly(&rule.name),
            DataAction::AllowOnly(models) => restriction = Restriction::AllowOnly(&rule.name, models),
        }
    }
    let downgrade = if facts.budget_exhausted {
        match policy.budgets.on_exhausted {
            OnExhausted::Block => {
                return Err(RouteError::Denied(
                    "The budget is exhausted and the policy blocks further requests.".to_owned(),
                ));
            }
            OnExhausted::DowngradeLocal => {
                if matches!(restriction, Restriction::None) {
                    restriction = Restriction::LocalOnly("budget");
                }
                true
            }
            OnExhausted::DowngradeCheapest => true,
        }
    } else {
        false
    };
    let expected_output_tokens = facts
        .max_tokens
        .map_or(policy.expected_output_tokens, |m| {
            m.min(policy.expected_output_tokens)
        })
        .max(1);

    let auto = policy.is_auto(requested);
    let mut named_baseline = None;
    if !auto {
        let model = catalogue
            .get(requested)
            .ok_or_else(|| RouteError::UnknownModel(requested.to_owned()))?;
        match policy.named_models {
            NamedModels::Deny => {
                return Err(RouteError::Denied(format!(
                    "Your team's policy does not allow naming a model; use `{}`.",
                    policy.auto_names.first().map_or("auto", String::as_str)
                )));
            }
            NamedModels::Honour => {
                if !policy.allows(&model.name) {
                    return Err(RouteError::Denied(format!(
                        "The model `{}` is not allowed by your team's policy.",
                        model.name
                    )));
                }
                let restricted = match &restriction {
                    Restriction::None => false,
                    Restriction::LocalOnly(_) => !model.local,
                    Restriction::AllowOnly(_, list) => !list.contains(&model.name),
                };
                // A named model that a data rule or a budget downgrade excludes is routed instead of refused:
                // the caller still gets an answer, from a model the rule allows, and the headers say so.
                if !restricted {
                    return honour(
                        policy,
                        model,
                        facts,
                        expected_output_tokens,
                        conditions,
                        data_rule.map(|r| r.name.clone()),
                    );
                }
            }
            NamedModels::Route => {}
        }
        named_baseline = Some(model.clone());
    }

    // Routing.
    let difficulty = signal.map(|s| {
        if s.difficulty.is_nan() {
            1.0
        } else {
            s.difficulty.clamp(0.0, 1.0)
        }
    });
    let task = signal.and_then(|s| s.task.clone());
    let task_rule = task.as_deref().and_then(|t| policy.tasks.get(t));
    let matched_route = signal.and_then(|s| s.embedding.as_deref()).and_then(|e| {
        let mut best: Option<(f32, &crate::policy::AdminRoute)> = None;
        for route in &policy.routes {
            if let Some(sim) = route.similarity(e)
                && sim >= route.threshold
                && best.is_none_or(|(b, _)| sim > b)
            {
                best = Some((sim, route));
            }
        }
        best.map(|(_, r)| r)
    });
    let curve = policy.floor_for(requested);
    let assumed = difficulty.unwrap_or(policy.unclassified.difficulty);
    let mut floor = curve.at(f64::from(assumed));
    if let Some(q) = task_rule.and_then(|t| t.min_quality) {
        floor = floor.max(q);
    }
    if let Some(q) = matched_route.and_then(|r| r.min_quality) {
        floor = floor.max(q);
    }
    if downgrade && policy.budgets.on_exhausted == OnExhausted::DowngradeCheapest {
        floor = 0.0;
    }

    let wants_embeddings = facts.needs.contains(&Capability::Embeddings);
    let mut rejected = Vec::new();
    let mut eligible: Vec<Eligible> = Vec::new();
    for model in &catalogue.models {
        let reject = |reason| Rejection {
            model: model.name.clone(),
            reason,
        };
        if model.has(Capability::Embeddings) != wants_embeddings {
            continue;
        }
        if !policy.allows(&model.name) {
            rejected.push(reject(RejectReason::NotAllowed));
            continue;
        }
        match &restriction {
            Restriction::LocalOnly(rule) if !model.local => {
                rejected.push(reject(RejectReason::DataRule {
                    rule: (*rule).to_owned(),
                }));
                continue;
            }
            Restriction::AllowOnly(rule, list) if !list.contains(&model.name) => {
                rejected.push(reject(RejectReason::DataRule {
                    rule: (*rule).to_owned(),
                }));
                continue;
            }
            _ => {}
        }
        if model.local && !policy.local.use_local && matches!(restriction, Restriction::None) {
            rejected.push(reject(RejectReason::LocalDisabled));
            continue;
        }
        if let Some(reason) = fit(model, facts, expected_output_tokens) {
            rejected.push(reject(reason));
            continue;
        }
        if let Some(kind) = facts.provider
            && !model.deployments.iter().any(|d| d.kind == kind)
        {
            rejected.push(reject(RejectReason::WrongProvider {
                provider: kind.as_str(),
            }));
            continue;
        }
        let (deployments, cold, reason) = usable_deployments(model, policy, facts, conditions);
        if deployments.is_empty() {
            rejected.push(reject(reason.unwrap_or(RejectReason::Unhealthy)));
            continue;
        }
        eligible.push(Eligible {
            model,
            deployments,
            expected_cost: crate::cost::max_cost(
                facts.estimated_input_tokens,
                expected_output_tokens,
                &model.price,
            ),
            latency: model.latency.unwrap_or(DEFAULT_LATENCY) + cold.unwrap_or_default(),
            cold,
        });
    }
    // Cheapest first; ties to lower latency, then higher quality, then name, so the order is total.
    eligible.sort_by(|a, b| {
        a.expected_cost
            .cmp(&b.expected_cost)
            .then(a.latency.cmp(&b.latency))
            .then(b.model.quality.total_cmp(&a.model.quality))
            .then(a.model.name.cmp(&b.model.name))
    });
    let cap = policy.max_cost_per_request;
    let under_cap = |e: &Eligible| cap.is_none_or(|c| e.expected_cost <= c);
    let meets_floor = |e: &Eligible| e.model.quality >= floor;

    let qualifying: Vec<&Eligible> = eligible
        .iter()
        .filter(|e| meets_floor(e) && under_cap(e))
        .collect();
    let baseline = named_baseline.or_else(|| baseline_model(policy, catalogue));

    let (chosen, reason): (&Eligible, &'static str) = if qualifying.is_empty() {
        // Nothing meets both the floor and the cap: the cap wins (it is the admin's hard limit on money) and
        // the best model under it is used; the decision says so.
        let best = eligible.iter().filter(|e| under_cap(e)).max_by(|a, b| {
            a.model
                .quality
                .total_cmp(&b.model.quality)
                .then(b.expected_cost.cmp(&a.expected_cost))
                .then(b.model.name.cmp(&a.model.name))
        });
        let Some(best) = best else {
            for e in &eligible {
                if let Some(c) = cap {
                    rejected.push(Rejection {
                        model: e.model.name.clone(),
                        reason: RejectReason::OverCostCap {
                            expected: e.expected_cost,
                            cap: c,
                        },
                    });
                }
            }
            let summary = summarise(&rejected);
            let availability = |r: &Rejection| {
                matches!(
                    r.reason,
                    RejectReason::Unhealthy | RejectReason::ColdTooSlow { .. } | RejectReason::WouldThrash
                )
            };
            return Err(if eligible.is_empty() && rejected.iter().any(availability) {
                RouteError::Unavailable(format!("No model is available right now: {summary}"))
            } else {
                RouteError::NoCandidate(format!(
                    "No model can serve this request under your team's policy: {summary}"
                ))
            });
        };
        let capped = eligible.iter().any(|e| meets_floor(e) && !under_cap(e));
        (best, if capped { "cost_capped" } else { "best_available" })
    } else {
        let find = |name: &str| qualifying.iter().copied().find(|e| e.model.name == name);
        let sticky = conditions
            .sticky_model
            .as_deref()
            .filter(|_| policy.stickiness.enabled)
            .and_then(find);
        let route_pick = matched_route.and_then(|r| r.prefer.iter().find_map(|n| find(n)));
        let task_pick = task_rule.and_then(|t| t.prefer.iter().find_map(|n| find(n)));
        let unclassified_pick = if signal.is_none() {
            policy.unclassified.model.as_deref().and_then(find)
        } else {
            None
        };
        if let Some(e) = sticky {
            (e, "sticky")
        } else if let Some(e) = route_pick {
            (e, "admin_route")
        } else if let Some(e) = task_pick {
            (e, "task_preference")
        } else if let Some(e) = unclassified_pick {
            (e, "classifier_unavailable")
        } else {
            (
                qualifying[0],
                if signal.is_none() {
                    "classifier_unavailable"
                } else {
                    "cheapest_qualifying"
                },
            )
        }
    };
    // Restrictions explain the outcome better than the ranking inside them; the detail keeps both.
    let ranking = reason;
    let reason = match &restriction {
        Restriction::LocalOnly("budget") => "budget_downgrade",
        Restriction::LocalOnly(_) | Restriction::AllowOnly(..) => "data_rule",
        Restriction::None if downgrade => "budget_downgrade",
        Restriction::None => ranking,
    };

    // Dearer qualifying models are the fallbacks; models failing the floor or cap are reported as rejected.
    for e in &eligible {
        if std::ptr::eq(e, chosen) || (meets_floor(e) && under_cap(e)) {
            continue;
        }
        let why = match cap {
            Some(c) if meets_floor(e) => RejectReason::OverCostCap {
                expected: e.expected_cost,
                cap: c,
            },
            _ => RejectReason::BelowQualityFloor {
                quality: e.model.quality,
                floor,
            },
        };
        rejected.push(Rejection {
            model: e.model.name.clone(),
            reason: why,
        });
    }
    let mut targets: Vec<Target> = targets_of(chosen.model, &chosen.deployments).collect();
    for e in qualifying
        .iter()
        .filter(|e| !std::ptr::eq(**e, chosen))
        .take(MAX_FALLBACK_MODELS)
    {
        targets.extend(targets_of(e.model, &e.deployments));
    }
    let detail = format!(
        "{requested}->{}: {}{}{}; floor {floor:.2}{}{}; ~${:.5}",
        chosen.model.name,
        reason.replace('_', " "),
        if ranking == reason {
            String::new()
        } else {
            format!(", {}", ranking.replace('_', " "))
        },
        matched_route
            .map(|r| format!(" {}", ascii(&r.name)))
            .unwrap_or_default(),
        difficulty
            .map(|d| format!(", difficulty {d:.2}"))
            .unwrap_or_else(|| format!(", difficulty assumed {assumed:.2}")),
        task.as_deref()
            .map(|t| format!(", task {}", ascii(t)))
            .unwrap_or_default(),
        chosen.expected_cost,
    );
    Ok(Decision {
        targets,
        reason,
        detail,
        routed: true,
        difficulty,
        baseline,
        task,
        quality_floor: Some(floor),
        expected_cost: chosen.expected_cost,
        expected_output_tokens,
        rejected,
        matched_route: matched_route.map(|r| r.name.clone()),
        data_rule: data_rule.map(|r| r.name.clone()),
        cold_start: chosen.cold,
    })
}

fn honour(
    policy: &Policy,
    model: &Arc<Model>,
    facts: &RequestFacts,
    expected_output_tokens: u64,
    conditions: &Conditions,
    data_rule: Option<String>,
) -> Result<Decision, RouteError> {
    let expected_cost =
        crate::cost::max_cost(facts.estimated_input_tokens, expected_output_tokens, &model.price);
    if let Some(cap) = policy.max_cost_per_request
        && expected_cost > cap
    {
        return Err(RouteError::Denied(format!(
            "`{}` would cost about ${expected_cost:.4} for this request, above your team's cap of ${cap} per request; use `{}`.",
            model.name,
            policy.auto_names.first().map_or("auto", String::as_str)
        )));
    }
    if let Some(kind) = facts.provider
        && !model.deployments.iter().any(|d| d.kind == kind)
    {
        return Err(RouteError::NoCandidate(format!(
            "The model `{}` is not served by a {} deployment, which this endpoint requires.",
            model.name,
            kind.as_str()
        )));
    }
    let (deployments, cold, reason) = usable_deployments(model, policy, facts, conditions);
    // A named model whose deployments are all failing is still tried (healthy ones first): the caller asked for
    // this model, and a circuit that is open now may close; refusing outright would be worse.
    let deployments = if deployments.is_empty() {
        if matches!(
            reason,
            Some(RejectReason::ColdTooSlow { .. } | RejectReason::WouldThrash)
        ) {
            // A cold local model the caller named: they accept the wait.
            model.deployments.clone()
        } else {
            // Healthy-looking ones first. Deployments without credentials stay in the list too: the caller asked
            // for this model, and the upstream stage answers with an error that names the missing variable.
            let (mut all, missing): (Vec<_>, Vec<_>) = model
                .deployments
                .iter()
                .filter(|d| facts.provider.is_none_or(|k| d.kind == k))
                .cloned()
                .partition(|d| !d.missing_credentials());
            all.extend(missing);
            all
        }
    } else {
        deployments
    };
    Ok(Decision {
        targets: targets_of(model, &deployments).collect(),
        reason: "honoured",
        detail: format!("{} honoured", model.name),
        routed: false,
        difficulty: None,
        baseline: Some(model.clone()),
        task: None,
        quality_floor: None,
        expected_cost,
        expected_output_tokens,
        rejected: Vec::new(),
        matched_route: None,
        data_rule,
        cold_start: cold,
    })
}

/// Capability and size checks; `None` when the model fits the request.
fn fit(model: &Model, facts: &RequestFacts, expected_output_tokens: u64) -> Option<RejectReason> {
    if let Some(c) = facts
        .needs
        .iter()
        .find(|c| **c != Capability::Embeddings && !model.has(**c))
    {
        return Some(RejectReason::MissingCapability {
            capability: c.as_str(),
        });
    }
    let output = facts.max_tokens.unwrap_or(expected_output_tokens);
    if let (Some(requested), Some(max)) = (facts.max_tokens, model.max_output_tokens)
        && requested > u64::from(max)
    {
        return Some(RejectReason::OutputTooLong { requested, max });
    }
    let needed = facts.estimated_input_tokens.saturating_add(output);
    if needed > u64::from(model.context_window) {
        return Some(RejectReason::ContextTooSmall {
            needed,
            window: model.context_window,
        });
    }
    None
}

/// The deployments of `model` that can serve now, the expected load wait if the model is cold, and why none
/// can when the list is empty.
fn usable_deployments(
    model: &Model,
    policy: &Policy,
    facts: &RequestFacts,
    conditions: &Conditions,
) -> (Vec<Arc<Deployment>>, Option<Duration>, Option<RejectReason>) {
    let mut ready = Vec::new();
    let mut cold: Vec<(Duration, Arc<Deployment>)> = Vec::new();
    let mut reason = None;
    for d in &model.deployments {
        if facts.provider.is_some_and(|k| d.kind != k) {
            continue;
        }
        if (d.missing_credentials() && !conditions.assume_credentials)
            || conditions.unhealthy.contains(&d.name)
        {
            continue;
        }
        if d.local.is_none() {
            ready.push(d.clone());
            continue;
        }
        match conditions
            .local
            .readiness(&d.name, &model.upstream_model, model.load_time)
        {
            Readiness::Ready => ready.push(d.clone()),
            Readiness::Unreachable => {}
            Readiness::Cold { wait, thrash } => {
                if thrash {
                    reason = Some(RejectReason::WouldThrash);
                } else if wait > policy.local.max_swap_wait {
                    reason = Some(RejectReason::ColdTooSlow {
                        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        max_ms: u64::try_from(policy.local.max_swap_wait.as_millis()).unwrap_or(u64::MAX),
                    });
                } else {
                    cold.push((wait, d.clone()));
                }
            }
        }
    }
    if !ready.is_empty() {
        // Loaded deployments first; a cold one is still a fallback.
        cold.sort_by_key(|(w, _)| *w);
        ready.extend(cold.into_iter().map(|(_, d)| d));
        return (ready, None, None);
    }
    cold.sort_by_key(|(w, _)| *w);
    let wait = cold.first().map(|(w, _)| *w);
    (cold.into_iter().map(|(_, d)| d).collect(), wait, reason)
}

fn targets_of<'a>(
    model: &'a Arc<Model>,
    deployments: &'a [Arc<Deployment>],
) -> impl Iterator<Item = Target> + 'a {
    deployments.iter().map(|d| Target {
        model: model.clone(),
        deployment: d.clone(),
    })
}

/// The team's baseline: the configured model, else the best non-local model the team may use.
pub fn baseline_model(policy: &Policy, catalogue: &Catalogue) -> Option<Arc<Model>> {
    if let Some(m) = policy.baseline_model.as_deref().and_then(|n| catalogue.get(n)) {
        return Some(m.clone());
    }
    let chat = |m: &&Arc<Model>| !m.local && !m.has(Capability::Embeddings);
    let best = |it: &mut dyn Iterator<Item = &Arc<Model>>| {
        it.max_by(|a, b| a.quality.total_cmp(&b.quality).then(b.name.cmp(&a.name)))
            .cloned()
    };
    best(
        &mut catalogue
            .models
            .iter()
            .filter(chat)
            .filter(|m| policy.allows(&m.name)),
    )
    .or_else(|| best(&mut catalogue.models.iter().filter(chat)))
}

fn summarise(rejected: &[Rejection]) -> String {
    if rejected.is_empty() {
        return "the catalogue has no model of this kind".to_owned();
    }
    rejected
        .iter()
        .take(6)
        .map(|r| format!("{} ({})", r.model, r.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Header-safe: policy-defined names end up in `x-switchyard-route`.
fn ascii(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests;
