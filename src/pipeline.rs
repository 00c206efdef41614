//! The request pipeline: auth → policy → classify → route → budget → upstream → usage → ledger → metrics.
//!
//! Each endpoint handler authenticates and then calls [`proxy`], which runs the remaining stages. A request's
//! outcome is recorded exactly once by [`Finisher`]: for a plain response when the body has been read, for a
//! stream when it ends, fails **or is dropped** (client disconnect) — the stream wrapper's `Drop` fires the
//! record, because code after the last `yield` of a stream is not guaranteed to run.

use std::collections::{BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use chrono::Utc;
use futures::Stream;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use crate::auth::Principal;
use crate::config::{Capability, Price, ProviderKind};
use crate::cost;
use crate::error::{Error, ErrorKind};
use crate::ledger::{LedgerEntry, Status};
use crate::providers::{anthropic, openai};
use crate::route::{self, Decision, RequestFacts, RouteError, Target};
use crate::sse::SseParser;
use crate::state::AppState;
use crate::usage::Usage;

/// The client-facing operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// Anthropic's Messages API, for Anthropic clients; served by Anthropic-kind deployments only.
    Messages,
}

impl Endpoint {
    /// `gen_ai.operation.name` in the OpenTelemetry GenAI conventions.
    pub fn operation(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions | Endpoint::Messages => "chat",
            Endpoint::Completions => "text_completion",
            Endpoint::Embeddings => "embeddings",
        }
    }

    fn openai_path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/messages",
        }
    }
}

/// Per-request facts every stage may read.
pub struct Call {
    pub request_id: String,
    pub started: Instant,
    pub principal: Arc<Principal>,
    pub endpoint: Endpoint,
    /// Headers of the client request (for `anthropic-beta` and similar pass-through headers).
    pub headers: HeaderMap,
}

/// The response headers Switchyard adds.
pub const MODEL_HEADER: &str = "x-switchyard-model";
pub const ROUTE_HEADER: &str = "x-switchyard-route";
pub const DIFFICULTY_HEADER: &str = "x-switchyard-difficulty";
pub const OVERHEAD_HEADER: &str = "x-switchyard-overhead-ms";

/// The status recorded for a stream the client left before it ended: nginx's 499 "client closed request", which
/// log pipelines and dashboards already know, rather than a 5xx that would blame the upstream.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// How many response bytes of a non-streamed answer we hold at most (a runaway upstream must not exhaust memory).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

fn parse_object(body: &[u8]) -> Result<crate::body::ClientBody, Error> {
    match crate::body::parse(body) {
        Ok(parsed) => Ok(parsed),
        Err(crate::body::BodyError::NotAnObject) => {
            Err(Error::invalid_request("The request body must be a JSON object."))
        }
        Err(crate::body::BodyError::Json(e)) => Err(Error::invalid_request(format!(
            "We could not parse the JSON body of your request. ({e}) Send valid JSON with Content-Type: application/json."
        ))),
    }
}

/// What the request needs from a model, read off the body.
fn facts_of(endpoint: Endpoint, body: &Map<String, Value>, raw_len: usize) -> RequestFacts {
    let mut needs = BTreeSet::new();
    if body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
        || body.contains_key("functions")
    {
        needs.insert(Capability::Tools);
    }
    if let Some(rf) = body
        .get("response_format")
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str)
        && rf != "text"
    {
        needs.insert(Capability::JsonMode);
    }
    if endpoint == Endpoint::Embeddings {
        needs.insert(Capability::Embeddings);
    }
    let has_image = body
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(|msgs| {
            msgs.iter().any(|m| {
                m.get("content").and_then(Value::as_array).is_some_and(|parts| {
                    parts
                        .iter()
                        .any(|p| matches!(p.get("type").and_then(Value::as_str), Some("image_url" | "image")))
                })
            })
        });
    if has_image {
        needs.insert(Capability::Vision);
    }
    let max_tokens = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64));
    RequestFacts {
        // About four bytes of JSON per token: good enough to compare prices and check context windows; the
        // ledger uses the provider's own count.
        estimated_input_tokens: (raw_len / 4) as u64,
        max_tokens,
        needs,
        stream: body.get("stream").and_then(Value::as_bool) == Some(true),
        // Only Anthropic deployments speak the Messages API: routing then picks among models they serve.
        provider: (endpoint == Endpoint::Messages).then_some(ProviderKind::Anthropic),
        ..RequestFacts::default()
    }
}

fn route_error(e: RouteError) -> Error {
    match e {
        RouteError::UnknownModel(m) => Error::model_not_found(&m),
        RouteError::Denied(why) => Error::new(ErrorKind::Forbidden, why)
            .with_param("model")
            .with_code("model_not_allowed"),
        RouteError::NoCandidate(why) => {
            Error::invalid_request(format!("No model can serve this request: {why}"))
                .with_param("model")
                .with_code("no_eligible_model")
        }
        RouteError::Unavailable(why) => {
            Error::new(ErrorKind::Unavailable, why).with_code("no_model_available")
        }
    }
}

/// Runs the pipeline from policy to response for an authenticated call. Errors leave in OpenAI's shape with the
/// overhead header too; requests refused before any upstream call are counted as refused.
pub async fn proxy(state: AppState, call: Call, body: Bytes) -> Response {
    let started = call.started;
    let team = call.principal.team.clone();
    let (request_id, endpoint) = (call.request_id.clone(), call.endpoint);
    let mut upstream_wait = Duration::ZERO;
    match run(state.clone(), call, body, &mut upstream_wait).await {
        Ok(response) => response,
        Err(error) => {
            if upstream_wait.is_zero() {
                record_refused(&state, &request_id, Some(&team), endpoint, &error);
            }
            let overhead = started.elapsed().saturating_sub(upstream_wait);
            let mut response = axum::response::IntoResponse::into_response(error);
            set_overhead(response.headers_mut(), overhead);
            response
        }
    }
}

/// Counts and logs a request refused before any upstream call, which has no ledger entry; `team` is `None` before
/// authentication.
pub fn record_refused(
    state: &AppState,
    request_id: &str,
    team: Option<&str>,
    endpoint: Endpoint,
    error: &Error,
) {
    state.metrics.observe_refused(team, error.status_code().as_u16());
    crate::logging::refused(request_id, team, endpoint.operation(), error);
}

fn set_overhead(headers: &mut HeaderMap, overhead: Duration) {
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", overhead.as_secs_f64() * 1000.0)) {
        headers.insert(HeaderName::from_static(OVERHEAD_HEADER), v);
    }
}

async fn run(
    state: AppState,
    call: Call,
    body: Bytes,
    upstream_wait: &mut Duration,
) -> Result<Response, Error> {
    let parsed = parse_object(&body)?;
    let mut request = parsed.object;
    let requested = match request.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(Error::invalid_request("You must provide a model parameter.").with_param("model")),
    };
    let policy = state.policies.for_team(&call.principal.team);
    let mut facts = facts_of(call.endpoint, &request, body.len());
    facts.tags = route::request_tags(&call.headers, &request);
    if !policy.data_rules.is_empty() {
        // Only policies with data rules match patterns against the text; others skip the copy.
        facts.text = Some(Arc::from(route::request_text(&request)));
    }
    let classification = if policy.wants_routing(&requested) {
        classify(&state, call.endpoint, &request).await
    } else {
        None
    };
    let signal_value = classification.as_ref().map(crate::classify::bridge::signal_of);
    let signal = signal_value.as_ref();
    let conversation = if policy.stickiness.enabled {
        route::sticky::conversation_of(&call.headers, &request)
    } else {
        None
    };
    let conditions = route::Conditions {
        unhealthy: state.upstream.unhealthy(),
        local: state.local.snapshot(),
        sticky_model: conversation
            .as_deref()
            .and_then(|c| state.sticky.get(&call.principal.team, c)),
        ..route::Conditions::default()
    };
    let mut decision = route::decide_with(&policy, &state.catalogue, &requested, &facts, signal, &conditions)
        .map_err(route_error)?;
    let budgets = crate::budget::specs_of(&policy);
    // The first target's reservation is taken before the attempts: an exhausted budget whose policy says
    // "downgrade" re-routes here, to local or the cheapest models, instead of refusing.
    let first = first_target(&decision, call.endpoint, &requested)?;
    let first_reservation = match reserve_for(&state, &call, &budgets, &facts, first).await {
        Ok(r) => r,
        Err(exceeded) if exceeded.on_exhausted != crate::budget::OnExhausted::Block => {
            tracing::info!(request_id = %call.request_id, budget = %exceeded.budget, "budget exhausted; downgrading");
            facts.budget_exhausted = true;
            decision = route::decide_with(&policy, &state.catalogue, &requested, &facts, signal, &conditions)
                .map_err(route_error)?;
            let first = first_target(&decision, call.endpoint, &requested)?;
            reserve_for(&state, &call, &budgets, &facts, first).await?
        }
        Err(exceeded) => return Err(exceeded.into()),
    };
    let mut first_reservation = Some(first_reservation);
    if let (Some(c), Some(chosen)) = (&conversation, decision.targets.first())
        && decision.routed
    {
        state
            .sticky
            .put(&call.principal.team, c, &chosen.model.name, policy.stickiness.ttl);
    }

    // Read before any attempt rewrites `stream_options` on the client's behalf.
    let client_wants_usage = crate::usage::wants_stream_usage(&request);
    let targets: Vec<&Target> = decision
        .targets
        .iter()
        .filter(|t| serves(t, call.endpoint))
        .collect();

    // Whether the client's bytes still say exactly what `request` says (see `upstream_body`): not after a rewrite,
    // and not when the body repeats a key, which other parsers may read differently from serde_json.
    let mut pristine = !parsed.repeats_a_key;
    for (attempt, target) in targets.iter().enumerate() {
        let reservation = match first_reservation.take() {
            Some(r) => r,
            None => reserve_for(&state, &call, &budgets, &facts, target).await?,
        };
        let upstream_body = upstream_body(call.endpoint, &mut request, target, &body, &mut pristine)?;
        let upstream_request = match target.deployment.kind {
            ProviderKind::OpenAi => {
                openai::build_request(&target.deployment, call.endpoint.openai_path(), upstream_body)?
            }
            ProviderKind::Anthropic => {
                anthropic::build_request(&target.deployment, &call.headers, upstream_body)?
            }
        };
        // A cold local model now counts as loading, so concurrent requests do not start another swap.
        let was_cold = state.local.before_send(&target.deployment, &target.model);
        if was_cold {
            state.metrics.local_model_swap(&target.model.name);
        }
        let finisher = Finisher {
            was_cold,
            state: state.clone(),
            request_id: call.request_id.clone(),
            started: call.started,
            principal: call.principal.clone(),
            endpoint: call.endpoint,
            requested: requested.clone(),
            target: (*target).clone(),
            decision: DecisionSummary::of(&decision),
            reservation: Some(reservation),
            request_body: body.clone(),
            upstream_time: Duration::ZERO,
        };
        let sent = Instant::now();
        let provider = target.deployment.kind.as_str();
        let sent_result = state.upstream.send(&target.deployment, upstream_request).await;
        *upstream_wait += sent.elapsed();
        state
            .metrics
            .observe_upstream(provider, call.endpoint.operation(), sent.elapsed().as_secs_f64());
        let error = match sent_result {
            Ok(response) => {
                let status = response.status();
                if let Some(kind) = crate::metrics::UpstreamErrorKind::from_status(status.as_u16()) {
                    state.metrics.observe_upstream_error(provider, kind.as_str());
                }
                let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                state.upstream.record(&target.deployment.name, !retryable);
                if !(retryable && attempt + 1 < targets.len()) {
                    return respond(finisher, response, sent, client_wants_usage, facts.stream).await;
                }
                Error::upstream_failed(format!(
                    "The upstream provider for `{}` answered {status}.",
                    target.model.name
                ))
            }
            Err(e) => {
                tracing::warn!(
                    request_id = %call.request_id, deployment = %target.deployment.name, error = %e,
                    "upstream call failed"
                );
                state.metrics.observe_upstream_error(provider, e.kind());
                state.upstream.record(&target.deployment.name, false);
                match e {
                    crate::upstream::UpstreamError::Timeout { .. } => Error::upstream_timeout(format!(
                        "The upstream provider for `{}` did not answer in time.",
                        target.model.name
                    )),
                    crate::upstream::UpstreamError::MissingCredentials { ref var, .. } => {
                        Error::upstream_failed(format!(
                            "The deployment for `{}` is not configured: its API key ({var}) is not set.",
                            target.model.name
                        ))
                    }
                    _ => Error::upstream_failed(format!(
                        "The upstream provider for `{}` could not be reached.",
                        target.model.name
                    )),
                }
            }
        };
        match targets.get(attempt + 1) {
            // Another target will try: this attempt leaves no ledger row (it cost nothing) and its reservation is
            // released as the finisher is dropped; the request is recorded once, by the attempt that ends it.
            Some(next) => {
                tracing::warn!(
                    request_id = %call.request_id, from = %target.deployment.name, to = %next.deployment.name,
                    "falling back to the next target"
                );
                state
                    .metrics
                    .observe_fallback(&call.principal.team, &target.model.name, &next.model.name);
            }
            None => {
                finisher.finish_error(&error);
                return Err(error);
            }
        }
    }
    Err(Error::internal("no upstream target was tried"))
}

/// Classifies the text that decides (the last user turn, with context). Never fails the request: any problem is
/// logged, counted as a fallback, and routing proceeds without a signal.
async fn classify(
    state: &AppState,
    endpoint: Endpoint,
    request: &Map<String, Value>,
) -> Option<crate::classify::Classification> {
    use crate::classify::text;
    use crate::metrics::ClassifierOutcome;
    let classifier = state.classifier.as_ref()?;
    // Past the deadline the classifier is overloaded, and a slower answer would cost more than routing saves.
    let deadline = Duration::from_millis(state.config.classifier.deadline_ms);
    let started = Instant::now();
    let text = match endpoint {
        Endpoint::ChatCompletions => {
            text::from_chat_messages(request.get("messages").unwrap_or(&Value::Null))
        }
        Endpoint::Messages => text::from_anthropic(
            request.get("system"),
            request.get("messages").unwrap_or(&Value::Null),
        ),
        Endpoint::Completions => match request.get("prompt") {
            Some(Value::String(p)) => Ok(text::from_prompt(p)),
            Some(Value::Array(parts)) => {
                let joined: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
                Ok(text::from_prompt(&joined.join("\n")))
            }
            _ => Err(crate::classify::ClassifyError::NoText("no prompt".to_owned())),
        },
        Endpoint::Embeddings => return None,
    };
    let result = match text {
        Ok(text) => match tokio::time::timeout(deadline, classifier.classify(&text)).await {
            Ok(r) => r,
            Err(_) => Err(crate::classify::ClassifyError::Overloaded),
        },
        Err(e) => Err(e),
    };
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(c) => {
            let outcome = if c.cached {
                ClassifierOutcome::Cached
            } else {
                ClassifierOutcome::Computed
            };
            state.metrics.observe_classifier(seconds, outcome);
            Some(c)
        }
        Err(e) => {
            tracing::warn!(error = %e, "classification unavailable; using the policy's default route");
            state
                .metrics
                .observe_classifier(seconds, ClassifierOutcome::Fallback);
            None
        }
    }
}

/// Whether a target can serve this endpoint: `/v1/messages` speaks only to Anthropic deployments.
fn serves(target: &Target, endpoint: Endpoint) -> bool {
    endpoint != Endpoint::Messages || target.deployment.kind == ProviderKind::Anthropic
}

fn first_target<'d>(
    decision: &'d Decision,
    endpoint: Endpoint,
    requested: &str,
) -> Result<&'d Target, Error> {
    decision
        .targets
        .iter()
        .find(|t| serves(t, endpoint))
        .ok_or_else(|| {
            Error::invalid_request(format!(
            "The model `{requested}` is not served by an Anthropic deployment, which /v1/messages requires."
        ))
        .with_param("model")
        })
}

/// Reserves the most this request can cost on `target`: every input token uncached plus `max_tokens` (or the
/// model's output cap) of output.
async fn reserve_for(
    state: &AppState,
    call: &Call,
    budgets: &[crate::budget::BudgetSpec],
    facts: &RequestFacts,
    target: &Target,
) -> Result<crate::budget::Reservation, crate::budget::BudgetExceeded> {
    let max_output = facts
        .max_tokens
        .or(target.model.max_output_tokens.map(u64::from))
        .unwrap_or(4096);
    let max_cost = cost::max_cost(facts.estimated_input_tokens, max_output, &target.model.price);
    state
        .budgets
        .reserve(&call.principal, budgets, max_cost, target.model.local)
        .await
}

/// The body for one target. The request map is the client's, mutated in place (model, stream options); every
/// field the client sent survives.
///
/// While `pristine` (the map is still what `client_body` parses to) and the target needs no change to it, the
/// client's own bytes go out: no re-serialisation, whose cost grows with the prompt, and a byte-exact pass-through
/// (key order, number spelling, escapes). `pristine` turns false once the map is rewritten.
fn upstream_body(
    endpoint: Endpoint,
    request: &mut Map<String, Value>,
    target: &Target,
    client_body: &Bytes,
    pristine: &mut bool,
) -> Result<Bytes, Error> {
    let upstream_model = &target.model.upstream_model;
    let same_model = || request.get("model").and_then(Value::as_str) == Some(upstream_model.as_str());
    let translated = match (target.deployment.kind, endpoint) {
        (ProviderKind::OpenAi, Endpoint::Messages) => {
            return Err(Error::internal("messages endpoint on an openai deployment"));
        }
        (ProviderKind::OpenAi, _) => {
            let azure = target.deployment.azure_api_version.is_some();
            if *pristine && !openai::needs_rewrite(request, upstream_model, azure) {
                return Ok(client_body.clone());
            }
            openai::prepare_body(request, upstream_model, azure);
            None
        }
        (ProviderKind::Anthropic, Endpoint::Messages) if *pristine && same_model() => {
            return Ok(client_body.clone());
        }
        (ProviderKind::Anthropic, Endpoint::ChatCompletions) => Some(
            anthropic::chat_request_to_messages(request, upstream_model).map_err(|e| {
                let mut err = Error::invalid_request(e.to_string());
                if let Some(p) = e.param() {
                    err = err.with_param(p);
                }
                err
            })?,
        ),
        (ProviderKind::Anthropic, Endpoint::Messages) => {
            request.insert("model".to_owned(), Value::String(upstream_model.clone()));
            None
        }
        (ProviderKind::Anthropic, Endpoint::Completions | Endpoint::Embeddings) => {
            return Err(Error::invalid_request(format!(
                "The model `{}` is served by Anthropic, which has no {} endpoint.",
                target.model.name,
                endpoint.operation()
            ))
            .with_param("model"));
        }
    };
    *pristine = false;
    let bytes = match translated {
        Some(value) => serde_json::to_vec(&value),
        None => serde_json::to_vec(request),
    };
    bytes
        .map(Bytes::from)
        .map_err(|e| Error::internal(format!("cannot serialise request: {e}")))
}

/// What of the routing decision the ledger and the response headers need.
#[derive(Clone)]
struct DecisionSummary {
    reason: &'static str,
    detail: String,
    routed: bool,
    difficulty: Option<f32>,
    baseline_price: Option<Price>,
}

impl DecisionSummary {
    fn of(d: &Decision) -> Self {
        DecisionSummary {
            reason: d.reason,
            detail: d.detail.clone(),
            routed: d.routed,
            difficulty: d.difficulty,
            baseline_price: d.baseline.as_ref().map(|m| m.price),
        }
    }
}

/// Records a request's outcome exactly once: ledger row, budget settlement, metrics, the request log line.
struct Finisher {
    state: AppState,
    request_id: String,
    started: Instant,
    principal: Arc<Principal>,
    endpoint: Endpoint,
    requested: String,
    target: Target,
    decision: DecisionSummary,
    reservation: Option<crate::budget::Reservation>,
    /// The client's request as received, kept (a cheap reference-counted handle) to count tokens locally when
    /// the provider reports no usage.
    request_body: Bytes,
    /// Time spent waiting on the upstream (head and body), excluded from the proxy's overhead.
    upstream_time: Duration,
    /// The target was a local model that was not loaded when the request was sent.
    was_cold: bool,
}

struct Outcome {
    usage: Usage,
    estimated: bool,
    status: Status,
    http_status: u16,
    ttft: Option<Duration>,
}

/// Local token counts for a provider that reported none (tiktoken, by the upstream model's vocabulary).
///
/// Blocking work: the count is CPU time proportional to the text, and the first one in a process loads tiktoken's
/// tables (tenths of a second, measured as a 100–200 ms p99 spike on every request sharing the worker). Callers
/// run it on the blocking pool.
fn estimate(upstream_model: &str, request_body: &[u8], generated: &str) -> Usage {
    let request = serde_json::from_slice::<Value>(request_body).unwrap_or(Value::Null);
    crate::usage_estimate::estimate_usage(upstream_model, &request, generated)
}

impl Finisher {
    /// Finishes a request whose provider reported no usage: counts its tokens locally ([`estimate`]) on the
    /// blocking pool, one count at a time ([`crate::usage_estimate::CountQueue`]), and records the row from there,
    /// flagged `estimated` (after a graceful drain it goes to the spool). `outcome.usage` and `outcome.estimated`
    /// are replaced.
    fn finish_counted_locally(self, generated: String, outcome: Outcome) {
        let state = self.state.clone();
        state.counts.push(&state.tasks, move || {
            let usage = estimate(&self.target.model.upstream_model, &self.request_body, &generated);
            self.finish(Outcome {
                usage,
                estimated: true,
                ..outcome
            });
        });
    }

    fn overhead(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.upstream_time)
    }

    fn finish_error(self, error: &Error) {
        self.finish(Outcome {
            usage: Usage::default(),
            estimated: false,
            status: Status::of_error(error),
            http_status: error.status_code().as_u16(),
            ttft: None,
        });
    }

    fn finish(mut self, outcome: Outcome) {
        if let Some(ttft) = outcome.ttft {
            // A cold local model's first token teaches its load time; a warm one confirms it is loaded.
            self.state.local.after_first_token(
                &self.target.deployment,
                &self.target.model,
                ttft,
                self.was_cold,
            );
        }
        let price = self.target.model.price;
        let cost = cost::cost(&outcome.usage, &price);
        let baseline_cost = self
            .decision
            .baseline_price
            .map_or(cost, |p| cost::cost(&outcome.usage, &p));
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(cost);
        }
        let latency = self.started.elapsed();
        let entry = LedgerEntry {
            request_id: self.request_id.clone(),
            time: Utc::now(),
            user: self.principal.user.clone(),
            team: self.principal.team.clone(),
            key_id: self.principal.key_id.clone(),
            requested_model: self.requested.clone(),
            routed_model: self.target.model.name.clone(),
            provider: self.target.deployment.kind.as_str().to_owned(),
            deployment: self.target.deployment.name.clone(),
            endpoint: self.endpoint.operation(),
            usage: outcome.usage,
            estimated: outcome.estimated,
            price_input: price.input,
            price_output: price.output,
            price_cached_input: price.cached_input,
            cost,
            baseline_cost,
            local: self.target.model.local,
            difficulty: self.decision.difficulty,
            task: None,
            route_reason: self.decision.reason.to_owned(),
            latency_ms: u32::try_from(latency.as_millis()).unwrap_or(u32::MAX),
            ttft_ms: outcome
                .ttft
                .map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX)),
            status: outcome.status,
            http_status: outcome.http_status,
            overhead_us: u64::try_from(self.overhead().as_micros()).unwrap_or(u64::MAX),
        };
        self.state.metrics.observe(&entry);
        crate::logging::request(&entry);
        self.state.ledger.record(entry);
    }

    fn headers(&self, headers: &mut HeaderMap) {
        let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        };
        set(headers, MODEL_HEADER, &self.target.model.name);
        if self.decision.routed {
            set(headers, ROUTE_HEADER, &self.decision.detail);
        }
        if let Some(d) = self.decision.difficulty {
            set(headers, DIFFICULTY_HEADER, &format!("{d:.3}"));
        }
        set_overhead(headers, self.overhead());
    }
}

/// Upstream response headers worth passing on (rate-limit state the client may act on).
fn copy_upstream_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        let n = name.as_str();
        if n.starts_with("x-ratelimit-") || n == "retry-after" || n.starts_with("anthropic-ratelimit-") {
            to.insert(name.clone(), value.clone());
        }
    }
}

async fn respond(
    mut finisher: Finisher,
    response: http::Response<Incoming>,
    sent: Instant,
    client_wants_usage: bool,
    stream: bool,
) -> Result<Response, Error> {
    let (parts, body) = response.into_parts();
    let kind = finisher.target.deployment.kind;
    let endpoint = finisher.endpoint;
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));

    if parts.status.is_success() && stream && is_sse {
        finisher.upstream_time = sent.elapsed();
        let processor: Box<dyn StreamProcessor> = match (kind, endpoint) {
            (ProviderKind::Anthropic, Endpoint::ChatCompletions) => Box::new(AnthropicToChat::new(
                &finisher.target.model.name,
                client_wants_usage,
            )),
            (ProviderKind::Anthropic, _) => Box::new(MessagesPassthrough::default()),
            (ProviderKind::OpenAi, _) => Box::new(OpenAiPassthrough::new(client_wants_usage)),
        };
        let mut builder = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache");
        if let Some(headers) = builder.headers_mut() {
            copy_upstream_headers(&parts.headers, headers);
            finisher.headers(headers);
        }
        let idle = finisher.target.deployment.timeouts.first_byte;
        let now = tokio::time::Instant::now();
        let stream = AccountedStream {
            body,
            processor,
            pending: VecDeque::new(),
            pending_bytes: 0,
            bursting: false,
            yielded_in: None,
            yields: 0,
            finisher: Some(finisher),
            sent,
            ttft: None,
            idle_timeout: idle,
            last_data: now,
            idle: Box::pin(tokio::time::sleep_until(now + idle)),
            done: false,
        };
        return builder
            .body(Body::from_stream(stream))
            .map_err(|e| Error::internal(format!("response: {e}")));
    }

    // A plain body: read it whole, at most the deployment's total timeout.
    let total = finisher.target.deployment.timeouts.total;
    let collected = tokio::time::timeout(
        total,
        http_body_util::Limited::new(body, MAX_RESPONSE_BYTES).collect(),
    )
    .await;
    finisher.upstream_time = sent.elapsed();
    let bytes = match collected {
        Err(_) => {
            let e = Error::upstream_timeout(format!(
                "The upstream provider for `{}` did not finish in time.",
                finisher.target.model.name
            ));
            finisher.finish_error(&e);
            return Err(e);
        }
        Ok(Err(e)) => {
            tracing::warn!(request_id = %finisher.request_id, error = %e, "upstream body failed");
            let e = Error::upstream_failed(format!(
                "The upstream provider for `{}` broke off its answer.",
                finisher.target.model.name
            ));
            finisher.finish_error(&e);
            return Err(e);
        }
        Ok(Ok(c)) => c.to_bytes(),
    };

    if parts.status == StatusCode::UNAUTHORIZED {
        // The provider refused the deployment's credentials, not the caller's: passing the 401 on would tell the
        // client its own Switchyard key is bad.
        tracing::error!(deployment = %finisher.target.deployment.name, "upstream rejected the deployment's API key");
        let e = Error::upstream_failed(format!(
            "The upstream provider for `{}` rejected Switchyard's credentials; an administrator must fix the deployment.",
            finisher.target.model.name
        ));
        finisher.finish_error(&e);
        return Err(e);
    }
    if parts.status.is_client_error() {
        let body = match (kind, endpoint) {
            (ProviderKind::Anthropic, Endpoint::ChatCompletions) => {
                Bytes::from(anthropic::error_body_to_openai(parts.status.as_u16(), &bytes).to_string())
            }
            _ => bytes,
        };
        let status = parts.status.as_u16();
        let error = Error::new(
            ErrorKind::UpstreamRejected { status, body },
            format!("upstream answered {status}"),
        );
        finisher.finish_error(&error);
        let mut response = axum::response::IntoResponse::into_response(error);
        copy_upstream_headers(&parts.headers, response.headers_mut());
        return Ok(response);
    }
    if !parts.status.is_success() {
        let e = Error::upstream_failed(format!(
            "The upstream provider for `{}` failed with status {}.",
            finisher.target.model.name,
            parts.status.as_u16()
        ));
        finisher.finish_error(&e);
        return Err(e);
    }

    let (out, usage) = match (kind, endpoint) {
        (ProviderKind::Anthropic, Endpoint::ChatCompletions) => {
            let value: Value = serde_json::from_slice(&bytes)
                .map_err(|_| Error::upstream_failed("The upstream provider answered with malformed JSON."))?;
            let translated = anthropic::messages_response_to_chat(&value, &finisher.target.model.name)
                .map_err(|e| {
                    Error::upstream_failed(format!("Cannot translate the provider's answer: {e}"))
                })?;
            let usage = anthropic::messages_usage_from_json(&value);
            (Bytes::from(translated.to_string()), usage)
        }
        (ProviderKind::Anthropic, _) => {
            let usage = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| anthropic::messages_usage_from_json(&v));
            (bytes, usage)
        }
        (ProviderKind::OpenAi, _) => {
            let usage = crate::usage::openai_body_usage(&bytes);
            (bytes, usage)
        }
    };
    // Only needed when the provider reported no usage; taken before `out` becomes the response body.
    let generated = usage.is_none().then(|| generated_text(&out));
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(out))
        .map_err(|e| Error::internal(format!("response: {e}")))?;
    copy_upstream_headers(&parts.headers, response.headers_mut());
    finisher.headers(response.headers_mut());
    let outcome = Outcome {
        usage: usage.unwrap_or_default(),
        estimated: false,
        status: Status::Ok,
        http_status: 200,
        ttft: None,
    };
    match generated {
        None => finisher.finish(outcome),
        Some(generated) => finisher.finish_counted_locally(generated, outcome),
    }
    Ok(response)
}

/// The generated text of a plain response, for local token counts: message contents, legacy completion text,
/// Anthropic text blocks; the whole body when none of those is there.
fn generated_text(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return String::from_utf8_lossy(body).into_owned();
    };
    let mut out = String::new();
    for choice in value
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for text in [choice.pointer("/message/content"), choice.get("text")]
            .into_iter()
            .flatten()
        {
            if let Some(t) = text.as_str() {
                out.push_str(t);
            }
        }
    }
    for block in value
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            out.push_str(t);
        }
    }
    if out.is_empty() && value.get("choices").is_none() && value.get("content").is_none() {
        return String::from_utf8_lossy(body).into_owned();
    }
    out
}

/// Turns upstream stream bytes into client frames, keeping track of usage.
trait StreamProcessor: Send {
    /// Bytes from the upstream → bytes for the client.
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, String>;
    /// The upstream ended; any frames still owed (e.g. `[DONE]`).
    fn finish(&mut self) -> Vec<Bytes>;
    /// Usage reported so far, if any.
    fn usage(&self) -> Option<Usage>;
    /// Output bytes seen, for estimating usage when the provider reports none.
    fn generated_text(&self) -> &str;
    /// The upstream sent its terminal event.
    fn completed(&self) -> bool;
}

/// OpenAI-kind streams: frames pass through byte for byte, except the usage-only chunk Switchyard asked for on
/// the client's behalf, which is removed again when the client did not ask for it.
struct OpenAiPassthrough {
    parser: SseParser,
    watch: crate::usage::OpenAiStreamUsage,
}

impl OpenAiPassthrough {
    fn new(client_wants_usage: bool) -> Self {
        OpenAiPassthrough {
            parser: SseParser::new(),
            watch: crate::usage::OpenAiStreamUsage::new(client_wants_usage),
        }
    }
}

impl StreamProcessor for OpenAiPassthrough {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, String> {
        let events = self.parser.push(chunk).map_err(|e| e.to_string())?;
        Ok(events
            .into_iter()
            .filter(|ev| self.watch.observe(ev))
            .map(|ev| ev.raw)
            .collect())
    }

    fn finish(&mut self) -> Vec<Bytes> {
        match self.parser.finish() {
            Ok(Some(ev)) if self.watch.observe(&ev) => vec![ev.raw],
            _ => Vec::new(),
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.watch.usage()
    }

    fn generated_text(&self) -> &str {
        self.watch.generated_text()
    }

    fn completed(&self) -> bool {
        self.watch.saw_done()
    }
}

/// Anthropic streams for OpenAI clients: translated event by event into `chat.completion.chunk` frames.
struct AnthropicToChat {
    parser: SseParser,
    translator: anthropic::StreamTranslator,
}

impl AnthropicToChat {
    fn new(model: &str, client_wants_usage: bool) -> Self {
        AnthropicToChat {
            parser: SseParser::new(),
            translator: anthropic::StreamTranslator::new(model, client_wants_usage),
        }
    }
}

impl StreamProcessor for AnthropicToChat {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, String> {
        let events = self.parser.push(chunk).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for ev in &events {
            out.extend(self.translator.push(ev).map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if let Ok(Some(ev)) = self.parser.finish()
            && let Ok(frames) = self.translator.push(&ev)
        {
            out.extend(frames);
        }
        if self.translator.saw_stop() {
            out.extend(self.translator.finish());
        }
        out
    }

    fn usage(&self) -> Option<Usage> {
        self.translator.reported_usage()
    }

    fn generated_text(&self) -> &str {
        self.translator.generated_text()
    }

    fn completed(&self) -> bool {
        self.translator.saw_stop()
    }
}

/// `/v1/messages` streams for Anthropic clients: passed through unchanged while usage is read off the events.
#[derive(Default)]
struct MessagesPassthrough {
    parser: SseParser,
    usage: anthropic::MessagesStreamUsage,
}

impl StreamProcessor for MessagesPassthrough {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, String> {
        let events = self.parser.push(chunk).map_err(|e| e.to_string())?;
        for ev in &events {
            self.usage.push(ev);
        }
        Ok(events.into_iter().map(|ev| ev.raw).collect())
    }

    fn finish(&mut self) -> Vec<Bytes> {
        match self.parser.finish() {
            Ok(Some(ev)) => {
                self.usage.push(&ev);
                vec![ev.raw]
            }
            _ => Vec::new(),
        }
    }

    fn usage(&self) -> Option<Usage> {
        self.usage.usage()
    }

    fn generated_text(&self) -> &str {
        // Anthropic always reports usage on this endpoint; an estimate counts the input only.
        ""
    }

    fn completed(&self) -> bool {
        self.usage.saw_message_stop()
    }
}

/// The most bytes of frames [`AccountedStream`] gathers for one write to the client.
const MAX_BATCH_BYTES: usize = 16 * 1024;
/// Upstream chunks closer together than this are a burst: the next is likely decoded already.
const BURST_GAP: Duration = Duration::from_millis(1);
/// The most times [`AccountedStream`] yields for one chunk.
const MAX_YIELDS: u8 = 4;

/// The streamed response body. Charges what was generated on end, on upstream failure and on drop.
///
/// Frames of a burst go to the client in one write. hyper's client body hands over one chunk per poll, and the
/// upstream connection's task must run between two chunks even when both came in one read; hyper's server flushes
/// whenever the body is pending. So when a chunk came within [`BURST_GAP`] of the one before and the upstream is
/// pending, the stream yields to the scheduler (the upstream connection's task, just woken, runs first) and
/// writes what it holds once a scheduler round brings nothing new. An upstream that sends several events at once
/// (a stream's head and tail, a fast local model, a proxy saturated with work) costs one `writev` and one wake-up
/// of the client for them instead of one each. Chunks spaced by token time go out as they come, with no yield.
struct AccountedStream {
    body: Incoming,
    processor: Box<dyn StreamProcessor>,
    /// Frames for the client, not yet handed to hyper.
    pending: VecDeque<Bytes>,
    pending_bytes: usize,
    /// The last chunk came within [`BURST_GAP`] of the one before.
    bursting: bool,
    /// The connection poll ([`crate::rounds`]) in which the stream yielded to gather a burst, if it did.
    yielded_in: Option<u64>,
    /// Yields since the last chunk, capped at [`MAX_YIELDS`] (a body polled outside a counted connection would
    /// otherwise never see the round change).
    yields: u8,
    finisher: Option<Finisher>,
    sent: Instant,
    ttft: Option<Duration>,
    idle_timeout: Duration,
    /// When the upstream last sent anything. The idle timer is moved only when it fires: resetting it on every
    /// chunk would take the timer wheel's lock once per frame.
    last_data: tokio::time::Instant,
    idle: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl AccountedStream {
    fn close(&mut self, status: Status) {
        let Some(finisher) = self.finisher.take() else {
            return;
        };
        let usage = self.processor.usage();
        let outcome = Outcome {
            usage: usage.unwrap_or_default(),
            estimated: false,
            status,
            // The client saw a 200 head either way; the row says how the stream ended.
            http_status: match status {
                Status::Ok => 200,
                Status::Cancelled => CLIENT_CLOSED_REQUEST,
                Status::Failed | Status::Rejected => 502,
            },
            ttft: self.ttft,
        };
        match usage {
            Some(_) => finisher.finish(outcome),
            // No usage from the provider, or the stream was cut before it came.
            None => finisher.finish_counted_locally(self.processor.generated_text().to_owned(), outcome),
        }
    }

    fn error_frame(message: &str) -> Bytes {
        let body = Error::upstream_failed(message).to_json();
        Bytes::from(format!("data: {body}\n\n"))
    }

    fn queue(&mut self, frames: impl IntoIterator<Item = Bytes>) {
        for frame in frames {
            self.pending_bytes += frame.len();
            self.pending.push_back(frame);
        }
    }

    /// The frames held, as one buffer (copied together only when there are several).
    fn take_batch(&mut self) -> Option<Bytes> {
        let total = std::mem::take(&mut self.pending_bytes);
        self.yielded_in = None;
        self.yields = 0;
        if self.pending.len() <= 1 {
            return self.pending.pop_front();
        }
        let mut joined = bytes::BytesMut::with_capacity(total);
        for frame in self.pending.drain(..) {
            joined.extend_from_slice(&frame);
        }
        Some(joined.freeze())
    }

    /// True when the upstream has sent nothing for the idle timeout. The timer was set for the last deadline
    /// known; when it fires after newer data, it is moved to that data's deadline and polled again to register.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.idle.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = self.last_data + self.idle_timeout;
            if deadline <= tokio::time::Instant::now() {
                return true;
            }
            self.idle.as_mut().reset(deadline);
        }
    }
}

impl Stream for AccountedStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done || this.pending_bytes >= MAX_BATCH_BYTES {
                return Poll::Ready(this.take_batch().map(Ok));
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if this.ttft.is_none() {
                        this.ttft = Some(this.sent.elapsed());
                    }
                    let now = tokio::time::Instant::now();
                    this.bursting = now.duration_since(this.last_data) < BURST_GAP;
                    this.last_data = now;
                    // More data after a yield: the upstream may have still more, so it earns another.
                    this.yielded_in = None;
                    this.yields = 0;
                    match this.processor.push(&data) {
                        Ok(frames) => this.queue(frames),
                        Err(e) => {
                            tracing::warn!(error = %e, "malformed upstream stream");
                            this.queue([Self::error_frame(
                                "The upstream provider sent a malformed stream.",
                            )]);
                            this.done = true;
                            this.close(Status::Failed);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream stream broke off");
                    let rest = this.processor.finish();
                    this.queue(rest);
                    this.queue([Self::error_frame("The upstream provider broke off the stream.")]);
                    this.done = true;
                    this.close(Status::Failed);
                }
                Poll::Ready(None) => {
                    let rest = this.processor.finish();
                    this.queue(rest);
                    this.done = true;
                    if this.processor.completed() {
                        this.close(Status::Ok);
                    } else {
                        this.queue([Self::error_frame("The upstream provider ended the stream early.")]);
                        this.close(Status::Failed);
                    }
                }
                Poll::Pending if this.pending.is_empty() => {
                    if this.idle_expired(cx) {
                        this.queue([Self::error_frame("The upstream provider stopped sending.")]);
                        this.done = true;
                        this.close(Status::Failed);
                        continue;
                    }
                    return Poll::Pending;
                }
                Poll::Pending => {
                    let round = crate::rounds::current();
                    if this.bursting
                        && this.yields < MAX_YIELDS
                        && this.yielded_in.is_none_or(|yielded| yielded == round)
                    {
                        // Woken from inside its own poll, the task goes to the back of the run queue, behind the
                        // upstream connection's task this poll woke. Polled again within the same connection
                        // poll (hyper does), it waits for that round still.
                        this.yielded_in = Some(round);
                        this.yields += 1;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    return Poll::Ready(this.take_batch().map(Ok));
                }
            }
        }
    }
}

impl Drop for AccountedStream {
    fn drop(&mut self) {
        // The client went away before the stream ended: charge what was generated so far.
        self.close(Status::Cancelled);
    }
}
