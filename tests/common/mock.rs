//! An in-process mock of the upstream LLM APIs Switchyard talks to: OpenAI (and the OpenAI-compatible servers:
//! Azure deployment URLs, Ollama, vLLM, ...) and Anthropic's Messages API.
//!
//! It serves the same JSON, the same SSE framing and the same error bodies as the real services, records every
//! request it receives so tests can assert what the proxy forwarded, and can be told to misbehave (slow, failing,
//! dying mid-stream, hanging) per mock or per request.
//!
//! # Endpoints
//! Paths are matched by suffix, so `/v1/chat/completions`, `/chat/completions`, `/v1beta/openai/chat/completions`
//! and Azure's `/openai/deployments/{dep}/chat/completions?api-version=…` all work.
//! - `POST …/chat/completions`, `POST …/completions`, `POST …/embeddings`, `GET …/models` (OpenAI shapes; with
//!   `anthropic-version` on the request, `GET /v1/models` answers in Anthropic's list shape).
//! - `POST …/messages` (Anthropic; needs the `anthropic-version` header like the real API).
//! - `GET /api/ps`, `GET /api/tags` (Ollama's loaded / available models).
//!
//! # Token counts (deterministic, so ledger tests can assert exact spend)
//! - A *word* is a whitespace-separated run of characters.
//! - `prompt_tokens` / `input_tokens` = the number of words in all text the request carries: every message's
//!   `content` (a string, or the `text` of text parts / blocks, including `tool_result` contents), plus Anthropic's
//!   `system`; for `/completions` the `prompt`, for `/embeddings` the `input` (a token array counts its length).
//!   Tools, names and roles count nothing.
//! - The reply is a list of *pieces*, one word each (the default reply is the 8 words of [`DEFAULT_REPLY`]). A
//!   stream sends one content chunk per piece; `completion_tokens` / `output_tokens` = the number of pieces, stream
//!   or not. `max_tokens` / `max_completion_tokens` below that truncates the reply (`finish_reason: "length"`,
//!   Anthropic `stop_reason: "max_tokens"`).
//! - A tool-call reply carries only the call; its arguments JSON is cut into pieces of at most 16 characters and
//!   `completion_tokens` = the number of those pieces.
//! - `cached_tokens` (behaviour) → OpenAI `prompt_tokens_details.cached_tokens = min(cached, prompt_tokens)` (still
//!   included in `prompt_tokens`); Anthropic `cache_read_input_tokens = min(cached, words)` and
//!   `input_tokens = words − cache_read_input_tokens`, as Anthropic reports them.
//!
//! # Behaviour controls
//! A [`Behavior`] is resolved per generation request: the next one-shot behaviour queued with
//! [`MockUpstream::push_behavior`] if any, else the mock's default ([`MockUpstream::set_behavior`]); then model-name
//! suffixes override it, then `x-mock-*` request headers override that.
//!
//! | header                          | model suffix | effect                                                        |
//! |---------------------------------|--------------|---------------------------------------------------------------|
//! | `x-mock-delay-ms: N`            | `-dN`        | wait N ms before the response head                            |
//! | `x-mock-first-chunk-delay-ms: N`| `-ftN`       | stream: wait N ms before the first content chunk (cold model) |
//! | `x-mock-chunk-delay-ms: N`      | `-cdN`       | stream: wait N ms between SSE events                          |
//! | `x-mock-chunks: N`              | `-nN`        | reply with N pieces (the default words, cycled)               |
//! | `x-mock-reply: text`            |              | reply with these words                                        |
//! | `x-mock-status: S`              | `-eS`        | answer status S with the provider's real error body           |
//! | `x-mock-retry-after: N`         | `-raN`       | `retry-after` seconds on a 429/529/503 (default 1)            |
//! | `x-mock-drop-after: N`          | `-dropN`     | cut the connection after N SSE events (no `[DONE]`)           |
//! | `x-mock-stall-after: N`         | `-stallN`    | stop sending after N SSE events, keep the connection open     |
//! | `x-mock-stream-error-after: N`  | `-serrN`     | after N SSE events send the provider's in-stream error event  |
//! | `x-mock-omit-usage: 1`          | `-nousage`   | no usage anywhere (not even when `include_usage` is asked)    |
//! | `x-mock-hang: 1`                | `-hang`      | never answer                                                  |
//! | `x-mock-tool: 1`                | `-tool`      | answer with a call of the first (or forced) tool              |
//! | `x-mock-cached-tokens: N`       | `-cacheN`    | report N cached prompt tokens                                 |
//!
//! Suffixes are read from the end of the model name and stop at the first segment that is not one of them, so
//! `gpt-4o-mini-d50-e429` means 50 ms then a 429, and `gpt-4o-mini` is untouched. The response echoes the model
//! exactly as requested (suffixes included) unless [`MockBuilder::report_model`] maps it; a configured model list ([`MockBuilder::models`]) is checked against
//! the name without suffixes. A tool call is also made whenever the request forces one (`tool_choice`
//! `"required"` / a named function for OpenAI, `{"type":"any"}` / `{"type":"tool"}` for Anthropic).
//!
//! # Ollama
//! With [`MockBuilder::ollama`] the mock tracks loaded models: the first generation request for a model that is
//! not loaded waits the configured load time (concurrent requests for it share the wait), then the model is loaded
//! and listed by `GET /api/ps`. [`MockUpstream::set_loaded_models`] sets the loaded set from the test.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// The words of the default reply; one word is one streamed piece and one completion token.
pub const DEFAULT_REPLY: &str = "Hello from the mock upstream of Switchyard tests.";

/// How the mock answers a generation request. Every field defaults to "behave like a healthy, instant upstream".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Behavior {
    /// Wait before sending the response head.
    pub delay: Duration,
    /// Streaming: wait before the first content chunk (a cold model's slow first token).
    pub first_chunk_delay: Duration,
    /// Streaming: wait between consecutive SSE events.
    pub chunk_delay: Duration,
    /// Number of reply pieces (words); `None` = every word of `reply` (default [`DEFAULT_REPLY`]).
    pub chunks: Option<usize>,
    /// Reply text; split into words.
    pub reply: Option<String>,
    /// Answer with this error status and the provider's real error body.
    pub status: Option<u16>,
    /// `retry-after` seconds for 429 / 503 / 529 (default 1).
    pub retry_after: Option<u64>,
    /// Cut the connection after this many SSE events (non-stream: after half the body).
    pub drop_after: Option<usize>,
    /// Stop sending after this many SSE events but keep the connection open (non-stream: after half the body).
    pub stall_after: Option<usize>,
    /// Streaming: after this many SSE events send the provider's in-stream error event and end the stream
    /// cleanly (OpenAI `data: {"error":…}`, Anthropic `event: error`).
    pub stream_error_after: Option<usize>,
    /// Report no usage at all, even when `stream_options.include_usage` is asked.
    pub omit_usage: bool,
    /// Never answer.
    pub hang: bool,
    /// Answer with a tool call when the request has tools.
    pub tool_call: bool,
    /// Cached prompt tokens to report.
    pub cached_tokens: u64,
}

impl Behavior {
    pub fn ok() -> Self {
        Self::default()
    }
    pub fn error(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }
    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay = Duration::from_millis(ms);
        self
    }
    pub fn first_chunk_delay_ms(mut self, ms: u64) -> Self {
        self.first_chunk_delay = Duration::from_millis(ms);
        self
    }
    pub fn chunk_delay_ms(mut self, ms: u64) -> Self {
        self.chunk_delay = Duration::from_millis(ms);
        self
    }
    pub fn chunks(mut self, n: usize) -> Self {
        self.chunks = Some(n);
        self
    }
    pub fn reply(mut self, text: &str) -> Self {
        self.reply = Some(text.to_owned());
        self
    }
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn drop_after(mut self, events: usize) -> Self {
        self.drop_after = Some(events);
        self
    }
    pub fn stall_after(mut self, events: usize) -> Self {
        self.stall_after = Some(events);
        self
    }
    pub fn stream_error_after(mut self, events: usize) -> Self {
        self.stream_error_after = Some(events);
        self
    }
    pub fn omit_usage(mut self) -> Self {
        self.omit_usage = true;
        self
    }
    pub fn hang(mut self) -> Self {
        self.hang = true;
        self
    }
    pub fn tool_call(mut self) -> Self {
        self.tool_call = true;
        self
    }
    pub fn cached_tokens(mut self, n: u64) -> Self {
        self.cached_tokens = n;
        self
    }

    /// Applies one control (`key` is the header name without `x-mock-`). Returns false for an unknown key or a
    /// value that does not parse, leaving the behaviour unchanged.
    fn apply(&mut self, key: &str, value: &str) -> bool {
        let num = value.trim().parse::<u64>().ok();
        let flag = matches!(value.trim(), "" | "1" | "true" | "yes");
        let ms = num.map(Duration::from_millis);
        match (key, num) {
            ("delay-ms", Some(_)) => self.delay = ms.unwrap_or_default(),
            ("first-chunk-delay-ms", Some(_)) => self.first_chunk_delay = ms.unwrap_or_default(),
            ("chunk-delay-ms", Some(_)) => self.chunk_delay = ms.unwrap_or_default(),
            ("chunks", Some(n)) => self.chunks = Some(n as usize),
            ("status", Some(n)) => self.status = u16::try_from(n).ok(),
            ("retry-after", Some(n)) => self.retry_after = Some(n),
            ("drop-after", Some(n)) => self.drop_after = Some(n as usize),
            ("stall-after", Some(n)) => self.stall_after = Some(n as usize),
            ("stream-error-after", Some(n)) => self.stream_error_after = Some(n as usize),
            ("cached-tokens", Some(n)) => self.cached_tokens = n,
            ("reply", _) => self.reply = Some(value.to_owned()),
            ("omit-usage", _) => self.omit_usage = flag,
            ("hang", _) => self.hang = flag,
            ("tool", _) => self.tool_call = flag,
            _ => return false,
        }
        true
    }

    fn apply_headers(&mut self, headers: &HeaderMap) {
        for (name, value) in headers {
            if let (Some(key), Ok(value)) = (name.as_str().strip_prefix("x-mock-"), value.to_str()) {
                self.apply(key, value);
            }
        }
    }

    /// Applies the model-name suffixes and returns the model name without them.
    fn apply_model_suffixes<'m>(&mut self, model: &'m str) -> &'m str {
        let mut base = model;
        while let Some((head, segment)) = base.rsplit_once('-') {
            let applied = match segment {
                "nousage" => self.apply("omit-usage", "1"),
                "hang" => self.apply("hang", "1"),
                "tool" => self.apply("tool", "1"),
                _ => {
                    let split = segment
                        .find(|c: char| c.is_ascii_digit())
                        .unwrap_or(segment.len());
                    let (prefix, digits) = segment.split_at(split);
                    let key = match prefix {
                        "d" => "delay-ms",
                        "ft" => "first-chunk-delay-ms",
                        "cd" => "chunk-delay-ms",
                        "n" => "chunks",
                        "e" => "status",
                        "ra" => "retry-after",
                        "drop" => "drop-after",
                        "stall" => "stall-after",
                        "serr" => "stream-error-after",
                        "cache" => "cached-tokens",
                        _ => "",
                    };
                    !key.is_empty()
                        && !digits.is_empty()
                        && digits.bytes().all(|b| b.is_ascii_digit())
                        && self.apply(key, digits)
                }
            };
            if !applied {
                break;
            }
            base = head;
        }
        base
    }
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The body parsed as JSON; `Value::Null` when empty or not JSON.
    pub body: Value,
    pub raw_body: Bytes,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The token of an `Authorization: Bearer …` header.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
    }
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }
}

/// Counters tests can wait on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: usize,
    /// Streams whose every event was sent.
    pub streams_completed: usize,
    /// Streams the client went away from before the end (the body was dropped unfinished).
    pub streams_cancelled: usize,
    /// Streams the mock itself cut (`drop_after`).
    pub streams_dropped: usize,
}

/// Settings fixed when the mock starts.
#[derive(Clone, Debug, Default)]
pub struct MockBuilder {
    behavior: Behavior,
    api_key: Option<String>,
    models: Option<Vec<String>>,
    ollama_load_time: Option<Duration>,
    loaded: Vec<String>,
    reported_models: HashMap<String, String>,
}

impl MockBuilder {
    /// The default behaviour (see [`MockUpstream::set_behavior`]).
    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }
    /// Require this key (`Authorization: Bearer`, Azure `api-key`, Anthropic `x-api-key`); others get the
    /// provider's 401. Without it every key is accepted.
    pub fn api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_owned());
        self
    }
    /// The models this upstream serves: listed by `GET /v1/models`; any other model gets the provider's 404.
    /// Without it every model is accepted and a small default list is served.
    pub fn models(mut self, models: &[&str]) -> Self {
        self.models = Some(models.iter().map(|m| (*m).to_owned()).collect());
        self
    }
    /// Behave like Ollama: a model that is not loaded takes `load_time` to load on its first request.
    pub fn ollama(mut self, load_time: Duration) -> Self {
        self.ollama_load_time = Some(load_time);
        self
    }
    /// Report `reported` as the response's `model` when `requested` (with or without suffixes) is asked for, as
    /// OpenAI answers `gpt-4o` with `gpt-4o-2024-08-06`. Without it the requested name is echoed.
    pub fn report_model(mut self, requested: &str, reported: &str) -> Self {
        self.reported_models
            .insert(requested.to_owned(), reported.to_owned());
        self
    }
    /// Models loaded at start (Ollama).
    pub fn loaded_models(mut self, models: &[&str]) -> Self {
        self.loaded = models.iter().map(|m| (*m).to_owned()).collect();
        self
    }

    pub async fn start(self) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("mock upstream: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("mock upstream: local_addr");
        let (counters, _) = watch::channel(Counters::default());
        let state = Arc::new(State {
            api_key: self.api_key,
            models: self.models,
            reported_models: self.reported_models,
            ollama: self.ollama_load_time.is_some(),
            seq: AtomicU64::new(0),
            counters,
            inner: Mutex::new(Inner {
                requests: Vec::new(),
                default: self.behavior,
                queue: VecDeque::new(),
                loaded: self.loaded.into_iter().collect(),
                loading: HashMap::new(),
                load_time: self.ollama_load_time.unwrap_or_default(),
            }),
        });
        let accept_state = Arc::clone(&state);
        // Connections live in a JoinSet owned by the accept task, so aborting that task (on drop) also aborts
        // every open connection, including hanging and stalled ones.
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        let _ = socket.set_nodelay(true);
                        let state = Arc::clone(&accept_state);
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&state)));
                            let _ = auto::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(socket), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        MockUpstream { addr, state, task }
    }
}

/// A running mock upstream; dropping it shuts it down.
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    /// A healthy mock accepting any key and any model.
    pub async fn start() -> Self {
        Self::builder().start().await
    }
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }
    /// The base URL, without a trailing slash or `/v1`: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().requests.clone()
    }
    /// The latest request; panics when there is none.
    pub fn last_request(&self) -> RecordedRequest {
        self.state
            .lock()
            .requests
            .last()
            .cloned()
            .expect("the mock upstream received no request")
    }
    pub fn clear_requests(&self) {
        self.state.lock().requests.clear();
    }
    /// The behaviour for every request without a queued one-shot behaviour.
    pub fn set_behavior(&self, behavior: Behavior) {
        self.state.lock().default = behavior;
    }
    /// Queue a behaviour for exactly one future generation request (FIFO), e.g. a 429 then a success.
    pub fn push_behavior(&self, behavior: Behavior) {
        self.state.lock().queue.push_back(behavior);
    }
    pub fn counters(&self) -> Counters {
        *self.state.counters.borrow()
    }
    pub fn streams_cancelled(&self) -> usize {
        self.counters().streams_cancelled
    }
    /// Waits until the counters satisfy `pred`. No timeout of its own: a hang is a test failure the runner reports,
    /// and a timer here would fire early under paused tokio time.
    pub async fn wait_for(&self, pred: impl FnMut(&Counters) -> bool) -> Counters {
        let mut rx = self.state.counters.subscribe();
        *rx.wait_for(pred).await.expect("mock counters channel closed")
    }
    /// [`Self::wait_for`] bounded by `limit` of real time; panics with the counters when it runs out. Not for
    /// tests with paused time: there the runtime jumps the clock forward whenever it waits on the network.
    pub async fn wait_for_within(&self, limit: Duration, pred: impl FnMut(&Counters) -> bool) -> Counters {
        match tokio::time::timeout(limit, self.wait_for(pred)).await {
            Ok(counters) => counters,
            Err(_) => panic!(
                "mock upstream: condition not met within {limit:?}; counters {:?}",
                self.counters()
            ),
        }
    }
    pub async fn wait_for_requests(&self, n: usize) {
        self.wait_for(|c| c.requests >= n).await;
    }
    pub async fn wait_for_cancelled_streams(&self, n: usize) {
        self.wait_for(|c| c.streams_cancelled >= n).await;
    }
    /// Ollama: replace the set of loaded models.
    pub fn set_loaded_models(&self, models: &[&str]) {
        self.state.lock().loaded = models.iter().map(|m| (*m).to_owned()).collect();
    }
    /// Ollama: the loaded models, sorted.
    pub fn loaded_models(&self) -> Vec<String> {
        self.state.lock().loaded.iter().cloned().collect()
    }
    /// Ollama: how long loading a model takes from now on.
    pub fn set_load_time(&self, load_time: Duration) {
        self.state.lock().load_time = load_time;
    }
}

struct State {
    api_key: Option<String>,
    models: Option<Vec<String>>,
    reported_models: HashMap<String, String>,
    ollama: bool,
    seq: AtomicU64,
    counters: watch::Sender<Counters>,
    // A std mutex: every critical section is a few field updates and none spans an `.await`.
    inner: Mutex<Inner>,
}

struct Inner {
    requests: Vec<RecordedRequest>,
    default: Behavior,
    queue: VecDeque<Behavior>,
    loaded: BTreeSet<String>,
    loading: HashMap<String, tokio::time::Instant>,
    load_time: Duration,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    OpenAi,
    Azure,
    Anthropic,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Messages,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let raw_body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&raw_body).ok();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let seq = state.seq.fetch_add(1, Ordering::Relaxed) + 1;
    state.lock().requests.push(RecordedRequest {
        method: parts.method.clone(),
        path: path.clone(),
        query: query.clone(),
        headers: parts.headers.clone(),
        body: json.clone().unwrap_or(Value::Null),
        raw_body,
    });
    state.counters.send_modify(|c| c.requests += 1);

    let azure_deployment = path
        .strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(dep, _)| dep.to_owned());
    let headers = &parts.headers;
    let is_anthropic_client = headers.contains_key("anthropic-version");

    if parts.method == Method::GET {
        return Ok(match path.as_str() {
            "/api/ps" => json_response(StatusCode::OK, &ollama_ps(&state)),
            "/api/tags" => json_response(StatusCode::OK, &ollama_tags(&state)),
            p if p.ends_with("/models") && is_anthropic_client => {
                json_response(StatusCode::OK, &anthropic_models(&state))
            }
            p if p.ends_with("/models") => {
                with_openai_headers(json_response(StatusCode::OK, &openai_models(&state)), seq)
            }
            _ => not_found(),
        });
    }
    if parts.method != Method::POST {
        return Ok(not_found());
    }
    let endpoint = match path.as_str() {
        p if p.ends_with("/chat/completions") => Endpoint::Chat,
        p if p.ends_with("/completions") => Endpoint::Completions,
        p if p.ends_with("/embeddings") => Endpoint::Embeddings,
        p if p.ends_with("/messages") => Endpoint::Messages,
        _ => return Ok(not_found()),
    };
    let flavor = match (endpoint, &azure_deployment) {
        (Endpoint::Messages, _) => Flavor::Anthropic,
        (_, Some(_)) => Flavor::Azure,
        _ => Flavor::OpenAi,
    };

    let requested_model = json
        .as_ref()
        .and_then(|j| j.get("model"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| azure_deployment.clone());
    let mut behavior = {
        let mut inner = state.lock();
        inner.queue.pop_front().unwrap_or_else(|| inner.default.clone())
    };
    let base_model = requested_model
        .as_deref()
        .map(|m| behavior.apply_model_suffixes(m).to_owned());
    behavior.apply_headers(headers);

    if behavior.hang {
        std::future::pending::<()>().await;
    }
    if !behavior.delay.is_zero() {
        tokio::time::sleep(behavior.delay).await;
    }

    let err = |status: u16, message: Option<String>| -> Response<Body> {
        error_response(
            flavor,
            status,
            message,
            requested_model.as_deref(),
            &behavior,
            seq,
        )
    };

    // Authentication first, as the real services do.
    if flavor == Flavor::Azure && !query.as_deref().unwrap_or("").contains("api-version=") {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": "404", "message": "Resource not found"}}),
        ));
    }
    let presented = match flavor {
        Flavor::OpenAi => header_str(headers, "authorization").and_then(|v| v.strip_prefix("Bearer ")),
        Flavor::Azure => header_str(headers, "api-key")
            .or_else(|| header_str(headers, "authorization").and_then(|v| v.strip_prefix("Bearer "))),
        // The anthropic SDK (2.x) sends its API key as `Authorization: Bearer`; older clients use `x-api-key`.
        Flavor::Anthropic => header_str(headers, "x-api-key")
            .or_else(|| header_str(headers, "authorization").and_then(|v| v.strip_prefix("Bearer "))),
    };
    if let Some(expected) = &state.api_key {
        match presented {
            None if flavor == Flavor::Anthropic => {
                return Ok(err(401, Some("x-api-key header is required".into())));
            }
            None => return Ok(err(401, Some(OPENAI_NO_KEY.into()))),
            Some(key) if key != expected => {
                let msg = match flavor {
                    Flavor::Anthropic => "invalid x-api-key".to_owned(),
                    _ => format!(
                        "Incorrect API key provided: {}. You can find your API key at \
                         https://platform.openai.com/account/api-keys.",
                        mask_key(key)
                    ),
                };
                return Ok(err(401, Some(msg)));
            }
            Some(_) => {}
        }
    }
    if flavor == Flavor::Anthropic && !headers.contains_key("anthropic-version") {
        return Ok(err(400, Some("anthropic-version: header is required".into())));
    }
    let Some(body) = json.filter(Value::is_object) else {
        return Ok(err(
            400,
            Some(match flavor {
                Flavor::Anthropic => "There was an error parsing the body of your request.".into(),
                _ => OPENAI_BAD_JSON.into(),
            }),
        ));
    };
    let Some(model) = requested_model.clone() else {
        return Ok(err(
            400,
            Some(match flavor {
                Flavor::Anthropic => "model: Field required".into(),
                _ => "you must provide a model parameter".into(),
            }),
        ));
    };
    if let (Some(models), Some(base)) = (&state.models, &base_model)
        && !models.iter().any(|m| m == base || *m == model)
    {
        return Ok(err(404, None));
    }
    if endpoint == Endpoint::Messages && body.get("max_tokens").is_none() {
        return Ok(err(400, Some("max_tokens: Field required".into())));
    }
    if endpoint == Endpoint::Chat && body.get("messages").is_none() {
        return Ok(err(400, Some("Missing required parameter: 'messages'.".into())));
    }
    if let Some(status) = behavior.status {
        return Ok(err(status, None));
    }
    if state.ollama {
        ensure_loaded(&state, &model).await;
    }

    let id_prefix = match endpoint {
        Endpoint::Chat => "chatcmpl-mock",
        Endpoint::Completions => "cmpl-mock",
        Endpoint::Embeddings => "",
        Endpoint::Messages => "msg_mock",
    };
    let reported = state
        .reported_models
        .get(&model)
        .or_else(|| base_model.as_ref().and_then(|b| state.reported_models.get(b)))
        .cloned();
    let ctx = Ctx {
        id: format!("{id_prefix}{seq:016x}"),
        seq,
        model: reported.unwrap_or(model),
        created: now_secs(),
        behavior,
        azure: flavor == Flavor::Azure,
    };
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let response = match endpoint {
        Endpoint::Chat => openai_chat(&state, &ctx, &body, stream),
        Endpoint::Completions => openai_completions(&state, &ctx, &body, stream),
        Endpoint::Embeddings => embeddings(&ctx, &body),
        Endpoint::Messages => anthropic_messages(&state, &ctx, &body, stream),
    };
    Ok(response)
}

async fn ensure_loaded(state: &State, model: &str) {
    let ready_at = {
        let mut inner = state.lock();
        if inner.loaded.contains(model) {
            return;
        }
        let load_time = inner.load_time;
        *inner
            .loading
            .entry(model.to_owned())
            .or_insert_with(|| tokio::time::Instant::now() + load_time)
    };
    tokio::time::sleep_until(ready_at).await;
    let mut inner = state.lock();
    inner.loading.remove(model);
    inner.loaded.insert(model.to_owned());
}

/// What a generation response needs to know about its request.
struct Ctx {
    id: String,
    seq: u64,
    model: String,
    created: u64,
    behavior: Behavior,
    azure: bool,
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

// ---------------------------------------------------------------------------------------------------------------
// Token counting and reply planning.

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Words in a content value: a string, or an array of parts/blocks whose `text` (and nested `content`) count.
fn content_words(content: &Value) -> u64 {
    match content {
        Value::String(s) => words(s),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => words(s),
                _ => {
                    p.get("text").and_then(Value::as_str).map_or(0, words)
                        + p.get("content").map_or(0, content_words)
                }
            })
            .sum(),
        _ => 0,
    }
}

fn prompt_words(body: &Value) -> u64 {
    let messages = body.get("messages").and_then(Value::as_array).map_or(0, |ms| {
        ms.iter().map(|m| m.get("content").map_or(0, content_words)).sum()
    });
    messages + body.get("system").map_or(0, content_words)
}

fn reply_pieces(behavior: &Behavior) -> Vec<String> {
    let text = behavior.reply.as_deref().unwrap_or(DEFAULT_REPLY);
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return Vec::new();
    }
    let n = behavior.chunks.unwrap_or(words.len());
    (0..n)
        .map(|i| {
            let w = words[i % words.len()];
            if i == 0 { w.to_owned() } else { format!(" {w}") }
        })
        .collect()
}

/// The reply pieces after `max_tokens`, and whether they were truncated.
fn limited_pieces(behavior: &Behavior, body: &Value) -> (Vec<String>, bool) {
    let mut pieces = reply_pieces(behavior);
    let limit = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    match limit {
        Some(limit) if limit < pieces.len() => {
            pieces.truncate(limit);
            (pieces, true)
        }
        _ => (pieces, false),
    }
}

struct ToolCall {
    id: String,
    name: String,
    input: Value,
    arguments: String,
    pieces: Vec<String>,
}

/// Decides whether to answer with a tool call and builds it from the tool's JSON schema.
fn plan_tool_call(ctx: &Ctx, body: &Value, anthropic: bool) -> Option<ToolCall> {
    let tools = body.get("tools")?.as_array()?;
    let choice = body.get("tool_choice");
    let forced_name = choice
        .and_then(|c| {
            c.get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| c.get("name"))
        })
        .and_then(Value::as_str);
    let forced = forced_name.is_some()
        || matches!(choice, Some(Value::String(s)) if s == "required")
        || matches!(
            choice.and_then(|c| c.get("type")).and_then(Value::as_str),
            Some("any" | "tool")
        );
    let none = matches!(choice, Some(Value::String(s)) if s == "none")
        || choice.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("none");
    if none || !(forced || ctx.behavior.tool_call) {
        return None;
    }
    let tool_name = |t: &Value| -> Option<String> {
        t.get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| t.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let tool = match forced_name {
        Some(name) => tools.iter().find(|t| tool_name(t).as_deref() == Some(name)),
        None => tools.first(),
    }?;
    let name = tool_name(tool)?;
    let schema = tool
        .get("function")
        .and_then(|f| f.get("parameters"))
        .or_else(|| tool.get("input_schema"))
        .cloned()
        .unwrap_or(Value::Null);
    let input = example_for_schema(&schema);
    let arguments = input.to_string();
    let chars: Vec<char> = arguments.chars().collect();
    let pieces = chars.chunks(16).map(|c| c.iter().collect()).collect();
    let id = if anthropic {
        format!("toolu_mock{:016x}", ctx.seq)
    } else {
        format!("call_mock{:016x}", ctx.seq)
    };
    Some(ToolCall {
        id,
        name,
        input,
        arguments,
        pieces,
    })
}

fn example_for_schema(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") | None if schema.get("properties").is_some() => {
            let props = schema.get("properties").and_then(Value::as_object);
            let obj: Map<String, Value> = props
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), example_for_schema(v)))
                .collect();
            Value::Object(obj)
        }
        Some("object") => json!({}),
        Some("string") => json!("mock"),
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        _ => Value::Null,
    }
}

fn cached_of(behavior: &Behavior, prompt: u64) -> u64 {
    behavior.cached_tokens.min(prompt)
}

fn openai_usage(behavior: &Behavior, prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached_of(behavior, prompt), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

fn include_usage(body: &Value) -> bool {
    body.get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true)
}

// ---------------------------------------------------------------------------------------------------------------
// OpenAI.

fn openai_chat(state: &Arc<State>, ctx: &Ctx, body: &Value, stream: bool) -> Response<Body> {
    let b = &ctx.behavior;
    let prompt = prompt_words(body);
    let tool = plan_tool_call(ctx, body, false);
    let (pieces, truncated) = limited_pieces(b, body);
    let (completion, finish) = match &tool {
        Some(t) => (t.pieces.len() as u64, "tool_calls"),
        None => (pieces.len() as u64, if truncated { "length" } else { "stop" }),
    };
    if !stream {
        let mut message =
            json!({"role": "assistant", "content": pieces.concat(), "refusal": null, "annotations": []});
        if let Some(t) = &tool {
            message["content"] = Value::Null;
            message["tool_calls"] = json!([{
                "id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}
            }]);
        }
        let mut choice = json!({"index": 0, "message": message, "logprobs": null, "finish_reason": finish});
        let mut resp = json!({
            "id": ctx.id,
            "object": "chat.completion",
            "created": ctx.created,
            "model": ctx.model,
            "choices": [],
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        });
        if ctx.azure {
            choice["content_filter_results"] = azure_filter_results();
            resp["prompt_filter_results"] =
                json!([{"prompt_index": 0, "content_filter_results": azure_filter_results()}]);
        }
        resp["choices"] = json!([choice]);
        if !b.omit_usage {
            resp["usage"] = openai_usage(b, prompt, completion);
        }
        return with_openai_headers(json_body_response(StatusCode::OK, &resp, b, state), ctx.seq);
    }

    let with_usage = include_usage(body) && !b.omit_usage;
    let chunk = |delta: Value, finish: Value| -> Value {
        let mut c = json!({
            "id": ctx.id,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if with_usage {
            // With include_usage OpenAI puts `"usage": null` on every chunk but the last.
            c["usage"] = Value::Null;
        }
        c
    };
    let mut events = Vec::new();
    match &tool {
        Some(t) => {
            events.push(chunk(
                json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [{
                    "index": 0, "id": t.id, "type": "function", "function": {"name": t.name, "arguments": ""}
                }]}),
                Value::Null,
            ));
            for piece in &t.pieces {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
        }
        None => {
            events.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ));
            for piece in &pieces {
                events.push(chunk(json!({"content": piece}), Value::Null));
            }
        }
    }
    events.push(chunk(json!({}), json!(finish)));
    if with_usage {
        events.push(json!({
            "id": ctx.id,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
            "choices": [],
            "usage": openai_usage(b, prompt, completion),
        }));
    }
    let frames = openai_frames(events);
    with_openai_headers(sse_response(state, frames, 1, b, OPENAI_STREAM_ERROR), ctx.seq)
}

fn openai_frames(events: Vec<Value>) -> Vec<Bytes> {
    let mut frames: Vec<Bytes> = events
        .iter()
        .map(|e| Bytes::from(format!("data: {e}\n\n")))
        .collect();
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames
}

fn azure_filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

fn openai_completions(state: &Arc<State>, ctx: &Ctx, body: &Value, stream: bool) -> Response<Body> {
    let b = &ctx.behavior;
    let prompt = match body.get("prompt") {
        Some(Value::Array(items)) => items.iter().map(content_words).sum(),
        Some(p) => content_words(p),
        None => 0,
    };
    let (pieces, truncated) = limited_pieces(b, body);
    let finish = if truncated { "length" } else { "stop" };
    let completion = pieces.len() as u64;
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    let base = json!({
        "id": ctx.id, "object": "text_completion", "created": ctx.created, "model": ctx.model,
        "system_fingerprint": "fp_mock",
    });
    if !stream {
        let mut resp = base;
        resp["choices"] =
            json!([{"text": pieces.concat(), "index": 0, "logprobs": null, "finish_reason": finish}]);
        if !b.omit_usage {
            resp["usage"] = usage;
        }
        return with_openai_headers(json_body_response(StatusCode::OK, &resp, b, state), ctx.seq);
    }
    let with_usage = include_usage(body) && !b.omit_usage;
    let chunk = |text: &str, finish: Value| {
        let mut c = base.clone();
        c["choices"] = json!([{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]);
        if with_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut events: Vec<Value> = pieces.iter().map(|p| chunk(p, Value::Null)).collect();
    events.push(chunk("", json!(finish)));
    if with_usage {
        let mut last = base.clone();
        last["choices"] = json!([]);
        last["usage"] = usage;
        events.push(last);
    }
    with_openai_headers(
        sse_response(state, openai_frames(events), 0, b, OPENAI_STREAM_ERROR),
        ctx.seq,
    )
}

fn embeddings(ctx: &Ctx, body: &Value) -> Response<Body> {
    let inputs: Vec<Value> = match body.get("input") {
        // An array of token ids is one input; an array of strings (or of token arrays) is several.
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => vec![Value::Array(items.clone())],
        Some(Value::Array(items)) => items.clone(),
        Some(v) => vec![v.clone()],
        None => Vec::new(),
    };
    let dims = body.get("dimensions").and_then(Value::as_u64).unwrap_or(16) as usize;
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let text = match input {
                Value::String(s) => {
                    tokens += words(s);
                    s.clone()
                }
                Value::Array(ids) => {
                    tokens += ids.len() as u64;
                    input.to_string()
                }
                other => other.to_string(),
            };
            let vector = embedding_vector(&text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64_encode(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let mut resp = json!({"object": "list", "data": data, "model": ctx.model});
    if !ctx.behavior.omit_usage {
        resp["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    }
    with_openai_headers(json_response(StatusCode::OK, &resp), ctx.seq)
}

/// A deterministic unit vector derived from the text (FNV-1a seeded per dimension).
fn embedding_vector(text: &str, dims: usize) -> Vec<f32> {
    let raw: Vec<f32> = (0..dims)
        .map(|d| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (d as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            for byte in text.bytes() {
                h ^= u64::from(byte);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            ((h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::EPSILON);
    raw.iter().map(|x| x / norm).collect()
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn default_models(state: &State) -> Vec<String> {
    state.models.clone().unwrap_or_else(|| {
        ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
            .iter()
            .map(|m| (*m).to_owned())
            .collect()
    })
}

fn openai_models(state: &State) -> Value {
    let data: Vec<Value> = default_models(state)
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"}))
        .collect();
    json!({"object": "list", "data": data})
}

fn anthropic_models(state: &State) -> Value {
    let models = state
        .models
        .clone()
        .unwrap_or_else(|| vec!["claude-haiku-4-5".to_owned()]);
    let data: Vec<Value> = models
        .iter()
        .map(
            |id| json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-02-19T00:00:00Z"}),
        )
        .collect();
    json!({"data": data, "has_more": false, "first_id": models.first(), "last_id": models.last()})
}

fn ollama_model_entry(name: &str) -> Value {
    json!({
        "name": name,
        "model": name,
        "size": 5_137_025_024_u64,
        "digest": "365c0bd3c000a25d28ddbf732fe1c6add414de7275464c4e4d1c3b5fcb5d8ad1",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "8.0B",
            "quantization_level": "Q4_K_M"
        },
        "expires_at": "2099-01-01T00:00:00Z",
        "size_vram": 5_137_025_024_u64,
        "context_length": 4096
    })
}

fn ollama_ps(state: &State) -> Value {
    let loaded: Vec<Value> = state
        .lock()
        .loaded
        .iter()
        .map(|m| ollama_model_entry(m))
        .collect();
    json!({"models": loaded})
}

fn ollama_tags(state: &State) -> Value {
    let mut names: BTreeSet<String> = state.models.clone().unwrap_or_default().into_iter().collect();
    names.extend(state.lock().loaded.iter().cloned());
    let models: Vec<Value> = names
        .iter()
        .map(|m| {
            let mut e = ollama_model_entry(m);
            e["modified_at"] = json!("2025-01-01T00:00:00Z");
            e
        })
        .collect();
    json!({"models": models})
}

// ---------------------------------------------------------------------------------------------------------------
// Anthropic.

fn anthropic_usage(behavior: &Behavior, prompt: u64, output: u64) -> Value {
    let cached = cached_of(behavior, prompt);
    json!({
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
        "service_tier": "standard"
    })
}

fn anthropic_messages(state: &Arc<State>, ctx: &Ctx, body: &Value, stream: bool) -> Response<Body> {
    let b = &ctx.behavior;
    let prompt = prompt_words(body);
    let tool = plan_tool_call(ctx, body, true);
    let (pieces, truncated) = limited_pieces(b, body);
    let (output, stop_reason) = match &tool {
        Some(t) => (t.pieces.len() as u64, "tool_use"),
        None => (
            pieces.len() as u64,
            if truncated { "max_tokens" } else { "end_turn" },
        ),
    };
    let headers = [("request-id", format!("req_mock{:016x}", ctx.seq))];
    if !stream {
        let content = match &tool {
            Some(t) => json!([{"type": "tool_use", "id": t.id, "name": t.name, "input": t.input}]),
            None => json!([{"type": "text", "text": pieces.concat()}]),
        };
        let mut resp = json!({
            "id": ctx.id,
            "type": "message",
            "role": "assistant",
            "model": ctx.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
        });
        resp["usage"] = if b.omit_usage {
            json!({})
        } else {
            anthropic_usage(b, prompt, output)
        };
        return with_headers(json_body_response(StatusCode::OK, &resp, b, state), &headers);
    }

    let mut start_usage = anthropic_usage(b, prompt, 1);
    if b.omit_usage {
        start_usage = json!({});
    }
    let mut events = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {
                "id": ctx.id, "type": "message", "role": "assistant", "model": ctx.model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": start_usage
            }}),
        ),
        (
            "content_block_start",
            match &tool {
                Some(t) => json!({"type": "content_block_start", "index": 0, "content_block": {
                    "type": "tool_use", "id": t.id, "name": t.name, "input": {}
                }}),
                None => {
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
                }
            },
        ),
        ("ping", json!({"type": "ping"})),
    ];
    match &tool {
        Some(t) => {
            for piece in &t.pieces {
                events.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
        }
        None => {
            for piece in &pieces {
                events.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
        }
    }
    events.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    let delta_usage = if b.omit_usage {
        json!({})
    } else {
        json!({"output_tokens": output})
    };
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": delta_usage}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let frames = events
        .into_iter()
        .map(|(name, data)| Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
        .collect();
    with_headers(
        sse_response(state, frames, 3, b, ANTHROPIC_STREAM_ERROR),
        &headers,
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Errors.

const OPENAI_NO_KEY: &str = "You didn't provide an API key. You need to provide your API key in an Authorization \
     header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) \
     if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from \
     https://platform.openai.com/account/api-keys.";

const OPENAI_BAD_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely means you aren't \
     using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. \
     If you have trouble figuring out how to fix this, please visit \
     https://platform.openai.com/docs/guides/error-codes/api-errors.)";

fn error_response(
    flavor: Flavor,
    status: u16,
    message: Option<String>,
    model: Option<&str>,
    behavior: &Behavior,
    seq: u64,
) -> Response<Body> {
    let model = model.unwrap_or("unknown");
    let retry_after = behavior.retry_after.unwrap_or(1);
    let status_code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = Vec::new();
    if matches!(status, 429 | 503 | 529) {
        headers.push(("retry-after", retry_after.to_string()));
    }
    match flavor {
        Flavor::Anthropic => {
            let (kind, default_message) = match status {
                400 => ("invalid_request_error", "Invalid request.".to_owned()),
                401 => ("authentication_error", "invalid x-api-key".to_owned()),
                403 => ("permission_error", "Your API key does not have permission to use the specified resource.".to_owned()),
                404 => ("not_found_error", format!("model: {model}")),
                413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes.".to_owned()),
                429 => (
                    "rate_limit_error",
                    "This request would exceed the rate limit for your organization of 50 requests per minute. \
                     For details, refer to: https://docs.claude.com/en/api/rate-limits."
                        .to_owned(),
                ),
                503 | 529 => ("overloaded_error", "Overloaded".to_owned()),
                _ => ("api_error", "Internal server error".to_owned()),
            };
            let request_id = format!("req_mock{seq:016x}");
            headers.push(("request-id", request_id.clone()));
            let body = json!({
                "type": "error",
                "error": {"type": kind, "message": message.unwrap_or(default_message)},
                "request_id": request_id,
            });
            with_headers(json_response(status_code, &body), &headers)
        }
        Flavor::OpenAi | Flavor::Azure => {
            let (kind, code, param, default_message): (&str, Value, Value, String) = match status {
                400 => (
                    "invalid_request_error",
                    Value::Null,
                    Value::Null,
                    "Invalid request.".to_owned(),
                ),
                401 => (
                    "invalid_request_error",
                    json!("invalid_api_key"),
                    Value::Null,
                    OPENAI_NO_KEY.to_owned(),
                ),
                403 => (
                    "invalid_request_error",
                    json!("unsupported_country_region_territory"),
                    Value::Null,
                    "Country, region, or territory not supported".to_owned(),
                ),
                404 => (
                    "invalid_request_error",
                    json!("model_not_found"),
                    Value::Null,
                    format!("The model `{model}` does not exist or you do not have access to it."),
                ),
                429 => (
                    "requests",
                    json!("rate_limit_exceeded"),
                    Value::Null,
                    format!(
                        "Rate limit reached for {model} in organization org-mock on requests per min (RPM): \
                         Limit 3, Used 3, Requested 1. Please try again in {retry_after}s. Visit \
                         https://platform.openai.com/account/rate-limits to learn more."
                    ),
                ),
                503 => (
                    "server_error",
                    Value::Null,
                    Value::Null,
                    "The engine is currently overloaded, please try again later".to_owned(),
                ),
                _ => (
                    "server_error",
                    Value::Null,
                    Value::Null,
                    "The server had an error while processing your request. Sorry about that!".to_owned(),
                ),
            };
            // A missing key has no code; a wrong one is `invalid_api_key`.
            let code = if status == 401 && message.as_deref() == Some(OPENAI_NO_KEY) {
                Value::Null
            } else {
                code
            };
            // Missing `messages` names the parameter, as the real API does.
            let (code, param) = match message.as_deref() {
                Some(m) if m.starts_with("Missing required parameter") => {
                    (json!("missing_required_parameter"), json!("messages"))
                }
                _ => (code, param),
            };
            if status == 429 {
                headers.push(("x-ratelimit-limit-requests", "3".to_owned()));
                headers.push(("x-ratelimit-remaining-requests", "0".to_owned()));
                headers.push(("x-ratelimit-reset-requests", format!("{retry_after}s")));
            }
            let body = json!({"error": {
                "message": message.unwrap_or(default_message), "type": kind, "param": param, "code": code
            }});
            with_openai_headers(with_headers(json_response(status_code, &body), &headers), seq)
        }
    }
}

fn not_found() -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": {"message": "Invalid URL", "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Response plumbing.

fn full_body(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(full_body(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

/// A 200 JSON response that honours `drop_after` / `stall_after` by sending half the body first.
fn json_body_response(
    status: StatusCode,
    body: &Value,
    behavior: &Behavior,
    state: &Arc<State>,
) -> Response<Body> {
    if behavior.drop_after.is_none() && behavior.stall_after.is_none() {
        return json_response(status, body);
    }
    let text = body.to_string();
    let half = text.len() / 2;
    let frames = vec![
        Bytes::from(text[..half].to_owned()),
        Bytes::from(text[half..].to_owned()),
    ];
    let partial = Behavior {
        drop_after: behavior.drop_after.map(|_| 1),
        stall_after: behavior.stall_after.map(|_| 1),
        ..Behavior::default()
    };
    let mut resp = Response::new(event_body(state, frames, 0, &partial));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

fn with_headers(mut resp: Response<Body>, headers: &[(&'static str, String)]) -> Response<Body> {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(*name, v);
        }
    }
    resp
}

/// The headers OpenAI puts on every API response. Its `x-request-id` in particular must not leak through a proxy
/// that sets its own.
fn with_openai_headers(resp: Response<Body>, seq: u64) -> Response<Body> {
    with_headers(
        resp,
        &[
            ("x-request-id", format!("req_mock{seq:016x}")),
            ("openai-organization", "org-mock".to_owned()),
            ("openai-processing-ms", "1".to_owned()),
            ("openai-version", "2020-10-01".to_owned()),
        ],
    )
}

/// The event OpenAI sends when a stream fails after its 200 head: a `data:` line holding an error object.
const OPENAI_STREAM_ERROR: &str = "data: {\"error\":{\"message\":\"The server had an error while processing your \
     request. Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";

/// Anthropic's mid-stream error event (its usual cause is overload).
const ANTHROPIC_STREAM_ERROR: &str = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";

fn sse_response(
    state: &Arc<State>,
    mut frames: Vec<Bytes>,
    first_content: usize,
    behavior: &Behavior,
    error_event: &'static str,
) -> Response<Body> {
    if let Some(n) = behavior.stream_error_after.filter(|n| *n < frames.len()) {
        frames.truncate(n);
        frames.push(Bytes::from_static(error_event.as_bytes()));
    }
    let mut resp = Response::new(event_body(state, frames, first_content, behavior));
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Running,
    Completed,
    Dropped,
}

/// Counts how a streamed body ended. Its `Drop` runs however the body goes away, which is how a client that
/// disconnects mid-stream is noticed.
struct StreamGuard {
    state: Arc<State>,
    outcome: Outcome,
}

impl StreamGuard {
    fn set(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let outcome = self.outcome;
        self.state.counters.send_modify(|c| match outcome {
            Outcome::Running => c.streams_cancelled += 1,
            Outcome::Completed => c.streams_completed += 1,
            Outcome::Dropped => c.streams_dropped += 1,
        });
    }
}

/// A body sending `frames` one by one on the behaviour's schedule.
fn event_body(state: &Arc<State>, frames: Vec<Bytes>, first_content: usize, behavior: &Behavior) -> Body {
    struct Step {
        frames: std::vec::IntoIter<Bytes>,
        index: usize,
        guard: StreamGuard,
        behavior: Behavior,
        first_content: usize,
    }
    let step = Step {
        frames: frames.into_iter(),
        index: 0,
        guard: StreamGuard {
            state: Arc::clone(state),
            outcome: Outcome::Running,
        },
        behavior: behavior.clone(),
        first_content,
    };
    let stream = futures::stream::unfold(step, |mut s| async move {
        if s.guard.outcome != Outcome::Running {
            return None;
        }
        let i = s.index;
        let Some(frame) = s.frames.next() else {
            s.guard.set(Outcome::Completed);
            return None;
        };
        if s.behavior.stall_after == Some(i) {
            std::future::pending::<()>().await;
        }
        if s.behavior.drop_after == Some(i) {
            // Return Pending once first: hyper flushes what it has buffered when the body is not ready, so the
            // events before the cut really reach the client instead of dying in the write buffer.
            tokio::task::yield_now().await;
            s.guard.set(Outcome::Dropped);
            let err: BoxError = "mock upstream: connection dropped mid-stream".into();
            return Some((Err(err), s));
        }
        if i > 0 && !s.behavior.chunk_delay.is_zero() {
            tokio::time::sleep(s.behavior.chunk_delay).await;
        }
        if i == s.first_content && !s.behavior.first_chunk_delay.is_zero() {
            tokio::time::sleep(s.behavior.first_chunk_delay).await;
        }
        s.index += 1;
        Some((Ok(Frame::data(frame)), s))
    });
    BodyExt::boxed(StreamBody::new(stream))
}
