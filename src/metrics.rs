//! Pipeline stage 9: Prometheus metrics. Names and label sets live here and nowhere else; label values are bounded
//! vocabularies (team, model, provider, status, reason), never user ids, keys or error strings. Per-user figures
//! belong to the ledger.
//!
//! Two families of names:
//!
//! - The OpenTelemetry GenAI semantic conventions in Prometheus form (`gen_ai.client.token.usage` becomes
//!   `gen_ai_client_token_usage`, a duration in seconds gains `_seconds`), with the conventions' bucket boundaries,
//!   so dashboards written for any GenAI client work against Switchyard unchanged.
//! - Switchyard's own, prefixed `switchyard_`: spend, savings, routing, budgets, the ledger and the proxy itself.
//!
//! Money is exact. Spend, baseline and savings are summed as [`Decimal`] per label set and converted to `f64`
//! once, when Prometheus scrapes; an `f64` running sum would drift by a rounding error per request. The exported
//! value is therefore the ledger's total rounded to the nearest `f64` (about 16 significant digits), which is
//! exact to the cent for any total below ten trillion dollars.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::ledger::{LedgerEntry, Status};

/// `gen_ai.client.token.usage` bucket boundaries from the GenAI semantic conventions.
const TOKEN_BUCKETS: &[f64] = &[
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// `gen_ai.client.operation.duration` and `gen_ai.client.operation.time_to_first_chunk` bucket boundaries from the
/// GenAI semantic conventions. Upstream latency uses them too, so the two can be compared bucket by bucket.
const OPERATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// Time spent inside Switchyard is sub-millisecond when all is well; the buckets resolve that and still catch a
/// stalled lock or a slow database at a second.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Embedding classification takes milliseconds; a cache hit microseconds; anything near a second is a problem.
const CLASSIFIER_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Difficulty is a score in [0, 1].
const DIFFICULTY_BUCKETS: &[f64] = &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// The value used when a label would otherwise be empty or is not one of the bounded vocabulary. `_OTHER` is the
/// GenAI conventions' own fallback value.
const OTHER: &str = "_OTHER";
const NONE: &str = "none";

/// Why an upstream attempt failed. The label vocabulary of `switchyard_upstream_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// DNS, TCP or TLS failure before a request was sent.
    Connect,
    /// No response (or no next chunk) within the deadline.
    Timeout,
    /// The provider answered 429.
    RateLimited,
    /// The provider answered another 4xx.
    Client,
    /// The provider answered 5xx.
    Server,
    /// The provider answered something that is not its documented wire format.
    Protocol,
    /// The response stream broke after it started.
    Stream,
}

impl UpstreamErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::RateLimited => "rate_limited",
            UpstreamErrorKind::Client => "http_4xx",
            UpstreamErrorKind::Server => "http_5xx",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::Stream => "stream",
        }
    }

    /// The kind for an HTTP error status from a provider; `None` for a success status.
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            429 => Some(UpstreamErrorKind::RateLimited),
            400..=499 => Some(UpstreamErrorKind::Client),
            500..=599 => Some(UpstreamErrorKind::Server),
            _ => None,
        }
    }
}

/// How the classifier produced (or failed to produce) a difficulty score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifierOutcome {
    /// The embedding model ran.
    Computed,
    /// The score came from the cache.
    Cached,
    /// The classifier failed, timed out or was saturated; routing used its fallback.
    Fallback,
}

impl ClassifierOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ClassifierOutcome::Computed => "computed",
            ClassifierOutcome::Cached => "cached",
            ClassifierOutcome::Fallback => "fallback",
        }
    }
}

/// The result of a policy reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new policy set is live.
    Ok,
    /// The new files were invalid; the previous policy set stays live.
    Error,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Error => "error",
        }
    }
}

/// The GenAI conventions' `gen_ai.operation.name` for one of Switchyard's endpoints.
pub fn operation_name(endpoint: &str) -> &'static str {
    let endpoint = endpoint.trim_start_matches('/').trim_start_matches("v1/");
    match endpoint {
        "chat/completions" | "chat" | "messages" => "chat",
        "completions" | "text_completion" => "text_completion",
        "embeddings" => "embeddings",
        _ => OTHER,
    }
}

/// All of Switchyard's metrics. Cheap to clone: a handle to shared state.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,

    // GenAI semantic conventions.
    token_usage: HistogramVec,
    operation_duration: HistogramVec,
    time_to_first_chunk: HistogramVec,

    // Requests and money.
    requests: IntCounterVec,
    tokens: IntCounterVec,
    usage_estimated: IntCounterVec,
    cost: MoneyCounter,
    baseline_cost: MoneyCounter,
    savings: MoneyCounter,
    overspend: MoneyCounter,

    // Routing.
    route_decisions: IntCounterVec,
    difficulty: HistogramVec,
    tasks: IntCounterVec,
    fallbacks: IntCounterVec,
    classifier: HistogramVec,
    local_model_swaps: IntCounterVec,

    // The proxy and its upstreams.
    overhead: Histogram,
    upstream_duration: HistogramVec,
    upstream_errors: IntCounterVec,

    // Budgets, ledger, policy.
    budget_used_ratio: GaugeVec,
    ledger_queue_depth: IntGauge,
    spool_bytes: IntGauge,
    spool_oldest_age: Gauge,
    policy_reloads: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reg = Registrar(&registry);

        let token_usage = reg.histogram_vec(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used (GenAI semantic conventions, gen_ai.client.token.usage).",
            TOKEN_BUCKETS,
            &[
                "gen_ai_operation_name",
                "gen_ai_provider_name",
                "gen_ai_request_model",
                "gen_ai_response_model",
                "gen_ai_token_type",
            ],
        )?;
        let operation_duration = reg.histogram_vec(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration as the client saw it, Switchyard included (gen_ai.client.operation.duration).",
            OPERATION_BUCKETS,
            &["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model", "error_type"],
        )?;
        let time_to_first_chunk = reg.histogram_vec(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time from request to the first streamed chunk, streaming calls only \
             (gen_ai.client.operation.time_to_first_chunk).",
            OPERATION_BUCKETS,
            &[
                "gen_ai_operation_name",
                "gen_ai_provider_name",
                "gen_ai_request_model",
                "gen_ai_response_model",
            ],
        )?;

        let requests = reg.int_counter_vec(
            "switchyard_requests_total",
            "Finished requests by team, model served, provider and status.",
            &["team", "model", "provider", "status"],
        )?;
        let tokens = reg.int_counter_vec(
            "switchyard_tokens_total",
            "Tokens by team, model and type (input counts cached input too; cached_input is the cached part).",
            &["team", "model", "type"],
        )?;
        let usage_estimated = reg.int_counter_vec(
            "switchyard_usage_estimated_total",
            "Requests whose usage Switchyard counted itself because the provider did not report it.",
            &["provider", "model"],
        )?;
        let cost = reg.money(
            "switchyard_cost_usd_total",
            "Spend in USD by team, model and provider, summed exactly from the ledger's decimal costs.",
            &["team", "model", "provider"],
        )?;
        let baseline_cost = reg.money(
            "switchyard_baseline_cost_usd_total",
            "What the same requests would have cost on each team's baseline model, in USD.",
            &["team"],
        )?;
        let savings = reg.money(
            "switchyard_savings_usd_total",
            "Baseline cost minus actual cost in USD, summed over requests that cost less than the baseline. \
             Net savings are this minus switchyard_overspend_usd_total.",
            &["team"],
        )?;
        let overspend = reg.money(
            "switchyard_overspend_usd_total",
            "Actual cost minus baseline cost in USD, summed over requests that cost more than the baseline \
             (a named model dearer than the baseline).",
            &["team"],
        )?;

        let route_decisions = reg.int_counter_vec(
            "switchyard_route_decisions_total",
            "Routing decisions by team, chosen model and reason.",
            &["team", "model", "reason"],
        )?;
        let difficulty = reg.histogram_vec(
            "switchyard_route_difficulty",
            "Classifier difficulty score (0 easy … 1 hard) of routed requests, by team.",
            DIFFICULTY_BUCKETS,
            &["team"],
        )?;
        let tasks = reg.int_counter_vec(
            "switchyard_route_tasks_total",
            "Routed requests by team and classified task type.",
            &["team", "task"],
        )?;
        let fallbacks = reg.int_counter_vec(
            "switchyard_route_fallbacks_total",
            "Requests moved to the next target after the chosen one failed, by team and models.",
            &["team", "from_model", "to_model"],
        )?;
        let classifier = reg.histogram_vec(
            "switchyard_classifier_duration_seconds",
            "Time to score a request's difficulty, by outcome (computed, cached, fallback).",
            CLASSIFIER_BUCKETS,
            &["outcome"],
        )?;
        let local_model_swaps = reg.int_counter_vec(
            "switchyard_local_model_swaps_total",
            "Local model loads that required swapping another model out, by the model loaded.",
            &["model"],
        )?;

        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "switchyard_proxy_overhead_seconds",
                "Time spent inside Switchyard per request, upstream time excluded.",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(overhead.clone()))?;
        let upstream_duration = reg.histogram_vec(
            "switchyard_upstream_duration_seconds",
            "Duration of each upstream attempt, failed ones included, by provider and operation.",
            OPERATION_BUCKETS,
            &["provider", "operation"],
        )?;
        let upstream_errors = reg.int_counter_vec(
            "switchyard_upstream_errors_total",
            "Failed upstream attempts by provider and kind.",
            &["provider", "kind"],
        )?;

        let budget_used_ratio = GaugeVec::new(
            Opts::new(
                "switchyard_budget_used_ratio",
                "Share of the team's current budget window spent or reserved.",
            ),
            &["team"],
        )?;
        registry.register(Box::new(budget_used_ratio.clone()))?;
        let ledger_queue_depth = IntGauge::new(
            "switchyard_ledger_queue_depth",
            "Ledger entries waiting to be written to the database.",
        )?;
        registry.register(Box::new(ledger_queue_depth.clone()))?;
        let spool_bytes = IntGauge::new(
            "switchyard_ledger_spool_bytes",
            "Size of the on-disk spool of unwritten ledger entries.",
        )?;
        registry.register(Box::new(spool_bytes.clone()))?;
        let spool_oldest_age = Gauge::new(
            "switchyard_ledger_spool_oldest_age_seconds",
            "Age of the oldest entry in the ledger spool; 0 when the spool is empty.",
        )?;
        registry.register(Box::new(spool_oldest_age.clone()))?;
        let policy_reloads = reg.int_counter_vec(
            "switchyard_policy_reloads_total",
            "Policy reloads by result (ok, error).",
            &["result"],
        )?;
        // Both results exist from the start so that "reload failures in the last hour" is 0, not "no data".
        for result in [ReloadResult::Ok, ReloadResult::Error] {
            policy_reloads.with_label_values(&[result.as_str()]);
        }

        let build_info = IntGauge::with_opts(
            Opts::new(
                "switchyard_build_info",
                "Always 1; the labels say which Switchyard is running.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        registry.register(Box::new(build_info))?;

        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                token_usage,
                operation_duration,
                time_to_first_chunk,
                requests,
                tokens,
                usage_estimated,
                cost,
                baseline_cost,
                savings,
                overspend,
                route_decisions,
                difficulty,
                tasks,
                fallbacks,
                classifier,
                local_model_swaps,
                overhead,
                upstream_duration,
                upstream_errors,
                budget_used_ratio,
                ledger_queue_depth,
                spool_bytes,
                spool_oldest_age,
                policy_reloads,
            }),
        })
    }

    /// Records a finished request from its ledger entry. The pipeline calls this exactly once per request, after
    /// the entry is final (usage and cost settled), whatever the outcome.
    pub fn observe(&self, entry: &LedgerEntry) {
        let m = &*self.inner;
        let team = bounded(&entry.team);
        let model = bounded(&entry.routed_model);
        let provider = bounded(&entry.provider);
        let status = entry.status.as_str();
        m.requests
            .with_label_values(&[team, model, provider, status])
            .inc();
        // The same figure as the `x-switchyard-overhead-ms` response header.
        #[expect(
            clippy::cast_precision_loss,
            reason = "microseconds of overhead are far below 2^52"
        )]
        m.overhead.observe(entry.overhead_us as f64 / 1e6);

        // Without a chosen model nothing was routed, sent or spent: the request was refused before routing.
        if entry.routed_model.is_empty() {
            return;
        }

        m.cost.add(&[team, model, provider], entry.cost);
        m.baseline_cost.add(&[team], entry.baseline_cost);
        let saved = entry.baseline_cost - entry.cost;
        // Both series are touched on every request so that both exist and "net savings" never lacks a term.
        m.savings.add(&[team], saved.max(Decimal::ZERO));
        m.overspend.add(&[team], (-saved).max(Decimal::ZERO));

        let usage = &entry.usage;
        m.tokens
            .with_label_values(&[team, model, "input"])
            .inc_by(usage.input_tokens);
        m.tokens
            .with_label_values(&[team, model, "output"])
            .inc_by(usage.output_tokens);
        m.tokens
            .with_label_values(&[team, model, "cached_input"])
            .inc_by(usage.cached_input_tokens);
        if entry.estimated {
            m.usage_estimated.with_label_values(&[provider, model]).inc();
        }

        m.route_decisions
            .with_label_values(&[team, model, reason_label(&entry.route_reason)])
            .inc();
        if let Some(d) = entry.difficulty {
            m.difficulty
                .with_label_values(&[team])
                .observe(f64::from(d).clamp(0.0, 1.0));
        }
        if entry.difficulty.is_some() || entry.task.is_some() {
            let task = entry.task.as_deref().map_or(NONE, reason_label);
            m.tasks.with_label_values(&[team, task]).inc();
        }

        // The GenAI conventions' view. The request model is what the client asked for, which a client controls;
        // it is only a bounded label once routing accepted it (a catalogue name, `auto` or a policy alias), which
        // is the case here because a model was chosen.
        let operation = operation_name(entry.endpoint);
        let request_model = bounded(&entry.requested_model);
        let error_type = match entry.status {
            Status::Ok => "",
            Status::Cancelled | Status::Failed | Status::Rejected => status,
        };
        let seconds = f64::from(entry.latency_ms) / 1000.0;
        m.operation_duration
            .with_label_values(&[operation, provider, request_model, model, error_type])
            .observe(seconds);
        if let Some(ttft) = entry.ttft_ms {
            m.time_to_first_chunk
                .with_label_values(&[operation, provider, request_model, model])
                .observe(f64::from(ttft) / 1000.0);
        }
        // "If instrumentation cannot obtain the number of tokens … it MUST NOT report usage": a request that never
        // reached a provider reports none.
        if usage.input_tokens > 0 || usage.output_tokens > 0 {
            for (kind, n) in [("input", usage.input_tokens), ("output", usage.output_tokens)] {
                #[expect(clippy::cast_precision_loss, reason = "token counts are far below 2^52")]
                m.token_usage
                    .with_label_values(&[operation, provider, request_model, model, kind])
                    .observe(n as f64);
            }
        }
    }

    /// A request refused before a model was chosen (authentication, body validation, policy or routing), which
    /// therefore has no ledger entry. `team` is `None` when the caller was not authenticated. It counts in
    /// `switchyard_requests_total` with model and provider `none`: `rejected` for a 4xx, `failed` otherwise.
    pub fn observe_refused(&self, team: Option<&str>, http_status: u16) {
        let status = if (400..500).contains(&http_status) {
            Status::Rejected
        } else {
            Status::Failed
        };
        let team = team.map_or("unauthenticated", bounded);
        self.inner
            .requests
            .with_label_values(&[team, NONE, NONE, status.as_str()])
            .inc();
    }

    /// One upstream attempt took `seconds`, whatever its outcome: call it for failed attempts too, so that
    /// `switchyard_upstream_errors_total / switchyard_upstream_duration_seconds_count` is an error ratio.
    /// `endpoint` is the same value as [`LedgerEntry::endpoint`].
    pub fn observe_upstream(&self, provider: &str, endpoint: &str, seconds: f64) {
        self.inner
            .upstream_duration
            .with_label_values(&[bounded(provider), operation_name(endpoint)])
            .observe(seconds);
    }

    /// One upstream attempt failed (in addition to [`Metrics::observe_upstream`] for its duration). `kind` is a
    /// short identifier from a fixed set — [`UpstreamErrorKind::as_str`] or the upstream error's own `kind()` —
    /// never an error message; the `'static` bound keeps it a compile-time vocabulary.
    pub fn observe_upstream_error(&self, provider: &str, kind: &'static str) {
        self.inner
            .upstream_errors
            .with_label_values(&[bounded(provider), reason_label(kind)])
            .inc();
    }

    /// The classifier scored (or failed to score) one request in `seconds`.
    pub fn observe_classifier(&self, seconds: f64, outcome: ClassifierOutcome) {
        self.inner
            .classifier
            .with_label_values(&[outcome.as_str()])
            .observe(seconds);
    }

    /// A request moved from `from_model` to `to_model` after `from_model`'s attempt failed.
    pub fn observe_fallback(&self, team: &str, from_model: &str, to_model: &str) {
        self.inner
            .fallbacks
            .with_label_values(&[bounded(team), bounded(from_model), bounded(to_model)])
            .inc();
    }

    /// The share of `team`'s current budget window spent or reserved (1.0 = exhausted; may exceed 1).
    pub fn set_budget_used_ratio(&self, team: &str, ratio: f64) {
        self.inner
            .budget_used_ratio
            .with_label_values(&[bounded(team)])
            .set(ratio);
    }

    /// Ledger entries waiting in memory to be written.
    pub fn set_ledger_queue_depth(&self, n: usize) {
        self.inner
            .ledger_queue_depth
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The on-disk spool of ledger entries not yet in the database: its size and the age of its oldest entry
    /// (0 when empty).
    pub fn set_spool(&self, bytes: u64, oldest_age_seconds: f64) {
        self.inner
            .spool_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.inner.spool_oldest_age.set(oldest_age_seconds);
    }

    /// A policy reload finished.
    pub fn policy_reload(&self, result: ReloadResult) {
        self.inner
            .policy_reloads
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// A local model was loaded by swapping another out of GPU memory.
    pub fn local_model_swap(&self, model: &str) {
        self.inner
            .local_model_swaps
            .with_label_values(&[bounded(model)])
            .inc();
    }

    /// The exact spend recorded for `team` so far, all models and providers: what
    /// `sum by (team) (switchyard_cost_usd_total)` exports before conversion to `f64`.
    pub fn cost_usd(&self, team: &str) -> Decimal {
        self.inner.cost.sum_where(0, team)
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.inner.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// An empty label value would make Prometheus drop the label, so empties get a visible placeholder; an absurdly
/// long value is not from a bounded vocabulary.
fn bounded(value: &str) -> &str {
    match value.len() {
        0 => NONE,
        1..=128 => value,
        _ => OTHER,
    }
}

/// Route reasons and task types are short identifiers; anything else (a sentence, a model's output) is collapsed
/// so that a bug upstream cannot explode the series count.
fn reason_label(value: &str) -> &str {
    let ok = !value.is_empty()
        && value.len() <= 48
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok { value } else { OTHER }
}

/// Registers metrics as they are created, so that a name cannot be created and forgotten.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn int_counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        let v = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(v.clone()))?;
        Ok(v)
    }

    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> Result<HistogramVec, prometheus::Error> {
        let v = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)?;
        self.0.register(Box::new(v.clone()))?;
        Ok(v)
    }

    fn money(&self, name: &str, help: &str, labels: &[&str]) -> Result<MoneyCounter, prometheus::Error> {
        let c = MoneyCounter::new(name, help, labels)?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }
}

/// A counter of US dollars summed exactly in [`Decimal`] and converted to `f64` only when scraped.
#[derive(Clone)]
struct MoneyCounter {
    inner: Arc<MoneyInner>,
}

struct MoneyInner {
    desc: Desc,
    label_names: Vec<String>,
    // A std mutex: the critical section is one map update or one copy, never held across an await.
    totals: Mutex<BTreeMap<Vec<String>, Decimal>>,
}

impl MoneyCounter {
    fn new(name: &str, help: &str, labels: &[&str]) -> Result<Self, prometheus::Error> {
        let label_names: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let desc = Desc::new(
            name.to_owned(),
            help.to_owned(),
            label_names.clone(),
            Default::default(),
        )?;
        Ok(MoneyCounter {
            inner: Arc::new(MoneyInner {
                desc,
                label_names,
                totals: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// Adds a non-negative amount; a negative one would break the counter's monotonicity and is dropped (costs
    /// are never negative, so this only guards against a bug elsewhere).
    fn add(&self, labels: &[&str], amount: Decimal) {
        if amount.is_sign_negative() && !amount.is_zero() {
            tracing::warn!(metric = %self.inner.desc.fq_name, %amount, "negative amount not added to a counter");
            return;
        }
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let mut totals = self.inner.totals.lock().unwrap_or_else(PoisonError::into_inner);
        *totals.entry(key).or_insert(Decimal::ZERO) += amount;
    }

    /// The exact sum over every series whose label at `index` equals `value`.
    fn sum_where(&self, index: usize, value: &str) -> Decimal {
        let totals = self.inner.totals.lock().unwrap_or_else(PoisonError::into_inner);
        totals
            .iter()
            .filter(|(k, _)| k.get(index).is_some_and(|v| v == value))
            .map(|(_, v)| *v)
            .sum()
    }
}

impl Collector for MoneyCounter {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.inner.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot: Vec<(Vec<String>, Decimal)> = {
            let totals = self.inner.totals.lock().unwrap_or_else(PoisonError::into_inner);
            totals.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        let metrics = snapshot
            .into_iter()
            .map(|(values, total)| {
                let mut labels: Vec<proto::LabelPair> = self
                    .inner
                    .label_names
                    .iter()
                    .zip(values)
                    .map(|(name, value)| {
                        let mut pair = proto::LabelPair::default();
                        pair.set_name(name.clone());
                        pair.set_value(value);
                        pair
                    })
                    .collect();
                // The crate's own metrics list labels by name; do the same so the exposition reads consistently.
                labels.sort_by(|a, b| a.name().cmp(b.name()));
                let mut counter = proto::Counter::default();
                counter.set_value(total.to_f64().unwrap_or(f64::NAN));
                let mut metric = proto::Metric::from_label(labels);
                metric.set_counter(counter);
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.inner.desc.fq_name.clone());
        family.set_help(self.inner.desc.help.clone());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage;
    use rust_decimal_macros::dec;

    pub(crate) fn entry(team: &str, model: &str, cost: Decimal, baseline: Decimal) -> LedgerEntry {
        LedgerEntry {
            request_id: "req-1".to_owned(),
            time: chrono::Utc::now(),
            user: "alice".to_owned(),
            team: team.to_owned(),
            key_id: "key-1".to_owned(),
            requested_model: "auto".to_owned(),
            routed_model: model.to_owned(),
            provider: "openai".to_owned(),
            deployment: "openai-main".to_owned(),
            endpoint: "/v1/chat/completions",
            usage: Usage {
                input_tokens: 1200,
                output_tokens: 300,
                cached_input_tokens: 200,
                ..Usage::default()
            },
            estimated: false,
            price_input: dec!(0.15),
            price_output: dec!(0.60),
            price_cached_input: dec!(0.075),
            cost,
            baseline_cost: baseline,
            local: false,
            difficulty: Some(0.25),
            task: Some("coding".to_owned()),
            route_reason: "cheapest_qualifying".to_owned(),
            latency_ms: 850,
            ttft_ms: Some(120),
            status: Status::Ok,
            http_status: 200,
            overhead_us: 400,
        }
    }

    /// The value of the sample whose name and labels are exactly `series` (labels in exposition order).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn cost_counter_is_exact_where_f64_addition_drifts() {
        let m = Metrics::new().unwrap();
        // 0.1 + 0.2 is the classic case: summing f64s gives 0.30000000000000004, summing decimals gives 0.3.
        let mut naive = 0.0_f64;
        for _ in 0..1000 {
            m.observe(&entry("research", "gpt-4o-mini", dec!(0.1), dec!(0.5)));
            m.observe(&entry("research", "gpt-4o-mini", dec!(0.2), dec!(0.5)));
            naive += 0.1;
            naive += 0.2;
        }
        assert_ne!(naive, 300.0);
        assert_eq!(m.cost_usd("research"), dec!(300));
        let text = m.render();
        let exported = sample(
            &text,
            r#"switchyard_cost_usd_total{model="gpt-4o-mini",provider="openai",team="research"}"#,
        );
        assert_eq!(exported, Some(300.0), "{text}");
        assert_eq!(
            sample(&text, r#"switchyard_baseline_cost_usd_total{team="research"}"#),
            Some(1000.0)
        );
        assert_eq!(
            sample(&text, r#"switchyard_savings_usd_total{team="research"}"#),
            Some(700.0)
        );
        assert_eq!(
            sample(&text, r#"switchyard_overspend_usd_total{team="research"}"#),
            Some(0.0)
        );
    }

    #[test]
    fn savings_and_overspend_split_so_both_counters_stay_monotonic() {
        let m = Metrics::new().unwrap();
        m.observe(&entry("ops", "gpt-4o-mini", dec!(0.01), dec!(0.05)));
        m.observe(&entry("ops", "o1", dec!(0.30), dec!(0.05)));
        let text = m.render();
        assert_eq!(
            sample(&text, r#"switchyard_savings_usd_total{team="ops"}"#),
            Some(0.04)
        );
        assert_eq!(
            sample(&text, r#"switchyard_overspend_usd_total{team="ops"}"#),
            Some(0.25)
        );
    }

    #[test]
    fn observe_exports_genai_conventions_with_their_buckets() {
        let m = Metrics::new().unwrap();
        m.observe(&entry("research", "gpt-4o-mini", dec!(0.001), dec!(0.01)));
        let text = m.render();
        let labels = r#"gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="auto",gen_ai_response_model="gpt-4o-mini""#;
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"gen_ai_client_token_usage_bucket{{{labels},gen_ai_token_type="input",le="1024"}}"#
                )
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"gen_ai_client_token_usage_bucket{{{labels},gen_ai_token_type="input",le="4096"}}"#
                )
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!(r#"gen_ai_client_token_usage_sum{{{labels},gen_ai_token_type="output"}}"#)
            ),
            Some(300.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!(
                    r#"gen_ai_client_operation_duration_seconds_bucket{{error_type="",{labels},le="1.28"}}"#
                )
            ),
            Some(1.0),
            "a success has an empty error_type, which Prometheus stores as no label at all"
        );
        assert!(text.contains(r#"le="81.92""#));
        assert!(text.contains("switchyard_proxy_overhead_seconds_count 1"));
        assert!(text.contains(r#"switchyard_proxy_overhead_seconds_bucket{le="0.0005"} 1"#));
        assert_eq!(
            sample(
                &text,
                &format!(r#"gen_ai_client_operation_time_to_first_chunk_seconds_count{{{labels}}}"#)
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"switchyard_requests_total{model="gpt-4o-mini",provider="openai",status="ok",team="research"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"switchyard_route_decisions_total{model="gpt-4o-mini",reason="cheapest_qualifying",team="research"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"switchyard_route_tasks_total{task="coding",team="research"}"#
            ),
            Some(1.0)
        );
    }

    #[test]
    fn unbounded_or_empty_values_never_become_labels() {
        let m = Metrics::new().unwrap();
        let mut e = entry("research", "", dec!(0), dec!(0));
        e.status = Status::Rejected;
        e.requested_model = "x".repeat(500);
        m.observe(&e);
        let mut e = entry("research", "gpt-4o-mini", dec!(0), dec!(0));
        e.route_reason = "cheapest model with quality >= 0.50: gpt-4o-mini".to_owned();
        e.requested_model = "y".repeat(500);
        m.observe(&e);
        let text = m.render();
        assert!(!text.contains("xxxx") && !text.contains("yyyy"), "{text}");
        assert!(text.contains(
            r#"switchyard_requests_total{model="none",provider="openai",status="rejected",team="research"} 1"#
        ));
        assert!(text.contains(r#"reason="_OTHER""#));
    }

    #[test]
    fn stage_methods_export_their_series() {
        let m = Metrics::new().unwrap();
        m.observe_upstream("anthropic", "/v1/messages", 1.5);
        m.observe_upstream_error("anthropic", UpstreamErrorKind::from_status(503).unwrap().as_str());
        m.observe_classifier(0.004, ClassifierOutcome::Computed);
        m.observe_classifier(0.2, ClassifierOutcome::Fallback);
        m.observe_fallback("research", "gpt-4o", "claude-sonnet-4");
        m.set_budget_used_ratio("research", 0.85);
        m.set_ledger_queue_depth(12);
        m.set_spool(4096, 30.5);
        m.policy_reload(ReloadResult::Error);
        m.local_model_swap("llama-3.1-8b");
        m.observe_refused(None, 401);
        m.observe_refused(Some("research"), 403);
        let text = m.render();
        for series in [
            r#"switchyard_upstream_duration_seconds_count{operation="chat",provider="anthropic"} 1"#,
            r#"switchyard_upstream_errors_total{kind="http_5xx",provider="anthropic"} 1"#,
            r#"switchyard_classifier_duration_seconds_count{outcome="fallback"} 1"#,
            r#"switchyard_route_fallbacks_total{from_model="gpt-4o",team="research",to_model="claude-sonnet-4"} 1"#,
            r#"switchyard_budget_used_ratio{team="research"} 0.85"#,
            "switchyard_ledger_queue_depth 12",
            "switchyard_ledger_spool_bytes 4096",
            "switchyard_ledger_spool_oldest_age_seconds 30.5",
            r#"switchyard_policy_reloads_total{result="error"} 1"#,
            r#"switchyard_policy_reloads_total{result="ok"} 0"#,
            r#"switchyard_local_model_swaps_total{model="llama-3.1-8b"} 1"#,
            r#"switchyard_requests_total{model="none",provider="none",status="rejected",team="unauthenticated"} 1"#,
            r#"switchyard_requests_total{model="none",provider="none",status="rejected",team="research"} 1"#,
        ] {
            assert!(text.contains(series), "missing `{series}` in\n{text}");
        }
    }

    #[test]
    fn operation_names_follow_the_conventions() {
        assert_eq!(operation_name("/v1/chat/completions"), "chat");
        assert_eq!(operation_name("/v1/messages"), "chat");
        assert_eq!(operation_name("/v1/completions"), "text_completion");
        assert_eq!(operation_name("/v1/embeddings"), "embeddings");
        assert_eq!(operation_name("/v1/images"), "_OTHER");
    }
}
