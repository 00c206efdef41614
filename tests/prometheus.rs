//! Proof that the dashboards and alert rules work: a real Prometheus (the Debian package, installed by
//! `scripts/setup-prometheus.sh` when missing) scrapes a running Switchyard while traffic flows, then every panel
//! query and template variable of every dashboard in `dashboards/` runs through Prometheus's HTTP API and must be
//! valid and return at least one series. The alert rules are loaded into the same Prometheus and must evaluate
//! without error; `promtool check rules` and `promtool test rules` must pass. The exported spend must equal the
//! ledger's total for each team to the cent.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a panic is a failed assertion"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal_macros::dec;
use serde_json::Value;

mod common;

use std::collections::HashMap;

use switchyard::config::{Config, Price};
use switchyard::ledger::{LedgerEntry, Status};
use switchyard::metrics::{ClassifierOutcome, Metrics, UpstreamErrorKind};
use switchyard::usage::Usage;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// What the template variables and Grafana's interval macros become when a panel query runs outside Grafana.
/// "All" is `.*`, as the dashboards' `allValue` says; the windows are short because the test's Prometheus only has
/// a few dozen seconds of one-second scrapes.
const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("$__rate_interval", "30s"),
    ("$__interval", "30s"),
    ("$__range", "1h"),
    ("${team}", ".*"),
    ("$team", ".*"),
    ("${model}", ".*"),
    ("$model", ".*"),
];

// ---------------------------------------------------------------------------------------------------------------
// Prometheus and promtool
// ---------------------------------------------------------------------------------------------------------------

fn on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|p| p.is_file())
}

/// The `prometheus` and `promtool` binaries, installing the Debian package first if either is missing. One test at
/// a time: two concurrent `apt-get` runs fail on dpkg's lock.
fn prometheus_binaries() -> (PathBuf, PathBuf) {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if on_path("prometheus").is_none() || on_path("promtool").is_none() {
        let script = Path::new(MANIFEST).join("scripts/setup-prometheus.sh");
        let status = std::process::Command::new("sh").arg(&script).status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "Prometheus is not installed and {} failed ({status:?}); install the Debian package `prometheus` \
             (it includes promtool) and rerun",
            script.display()
        );
    }
    match (on_path("prometheus"), on_path("promtool")) {
        (Some(p), Some(t)) => (p, t),
        other => panic!("prometheus/promtool still not on PATH after installing: {other:?}"),
    }
}

fn promtool(args: &[&str]) {
    let (_, promtool) = prometheus_binaries();
    let out = std::process::Command::new(promtool)
        .args(args)
        .current_dir(Path::new(MANIFEST).join("dashboards"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_check_rules_passes() {
    promtool(&["check", "rules", "alerts.yaml"]);
}

#[test]
fn promtool_test_rules_passes() {
    promtool(&["test", "rules", "alerts_test.yaml"]);
}

/// A Prometheus server on a free port, scraping `target` every second, with the alert rules loaded. Killed on drop.
struct Prometheus {
    child: tokio::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: SocketAddr) -> Prometheus {
        let (bin, _) = prometheus_binaries();
        let dir = tempfile::tempdir().unwrap();
        let rules = Path::new(MANIFEST).join("dashboards/alerts.yaml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: ['{target}']\n",
            rules = rules.display()
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();

        // Ask the OS for a free port; the tiny window before Prometheus binds it is covered by retrying.
        for _attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
            let mut child = tokio::process::Command::new(&bin)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("start prometheus");
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // Exited: most likely the port was taken meanwhile; try another.
                }
                if matches!(http("GET", &format!("{base}/-/ready"), None).await, Ok((200, _))) {
                    return Prometheus {
                        child,
                        base,
                        _dir: dir,
                    };
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill().await;
        }
        let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
        panic!("Prometheus did not become ready:\n{log}");
    }

    /// Runs an instant query; `Err` carries Prometheus's error for an invalid query.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let body = format!("query={}", percent_encode(expr));
        let (status, text) = http("POST", &format!("{}/api/v1/query", self.base), Some(body)).await?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("HTTP {status}, not JSON ({e}): {text}"))?;
        if v["status"] != "success" {
            return Err(format!("HTTP {status}: {} {}", v["errorType"], v["error"]));
        }
        match &v["data"]["result"] {
            Value::Array(series) => Ok(series.clone()),
            // A scalar or string result is one value, not a vector of series.
            other => Ok(vec![other.clone()]),
        }
    }

    /// Polls `expr` until it returns at least one series for which `accept` holds, or `timeout` passes.
    async fn wait_for(&self, expr: &str, timeout: Duration, accept: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(expr).await;
            if let Ok(series) = &result
                && !series.is_empty()
                && accept(series)
            {
                return series.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for `{expr}`; last result: {result:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn http(method: &str, url: &str, form: Option<String>) -> Result<(u16, String), String> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    if form.is_some() {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let req = req
        .body(Full::new(Bytes::from(form.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Dashboards
// ---------------------------------------------------------------------------------------------------------------

struct PanelQuery {
    dashboard: String,
    panel: String,
    expr: String,
}

/// Every dashboard JSON model in `dashboards/`.
fn dashboards() -> Vec<(String, Value)> {
    let dir = Path::new(MANIFEST).join("dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 3,
        "expected the three dashboards in {}",
        dir.display()
    );
    out
}

/// Every panel's queries, rows' nested panels included.
fn panel_queries(name: &str, dashboard: &Value) -> Vec<PanelQuery> {
    fn walk(name: &str, panels: &Value, out: &mut Vec<PanelQuery>) {
        for panel in panels.as_array().into_iter().flatten() {
            walk(name, &panel["panels"], out);
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(PanelQuery {
                        dashboard: name.to_owned(),
                        panel: panel["title"].as_str().unwrap_or("?").to_owned(),
                        expr: expr.to_owned(),
                    });
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(name, &dashboard["panels"], &mut out);
    out
}

fn substitute(expr: &str) -> String {
    SUBSTITUTIONS
        .iter()
        .fold(expr.to_owned(), |e, (from, to)| e.replace(from, to))
}

/// Grafana's `label_values(selector, label)` as the PromQL that returns the same label values.
fn label_values_query(query: &str) -> Option<String> {
    let inner = query.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some(format!("count by ({}) ({})", label.trim(), selector.trim()))
}

/// Checks the dashboards' static promises: the datasource is a variable, team and model variables exist, every
/// panel has a unit, and no instance is hard-coded.
fn check_dashboard_model(name: &str, d: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for needed in ["datasource", "team", "model"] {
        if !vars.contains(&needed) {
            problems.push(format!("{name}: no `{needed}` template variable"));
        }
    }
    if d["id"] != Value::Null {
        problems.push(format!("{name}: `id` must be null to import cleanly"));
    }
    fn walk(name: &str, panels: &Value, problems: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(name, &p["panels"], problems);
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap_or("?");
            if p["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{name} / {title}: datasource is not ${{datasource}}"));
            }
            if p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                problems.push(format!("{name} / {title}: no unit"));
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_default();
                if expr.contains("instance=") || expr.contains("job=") {
                    problems.push(format!(
                        "{name} / {title}: hard-coded instance or job in `{expr}`"
                    ));
                }
                if t["legendFormat"].as_str().is_none() {
                    problems.push(format!("{name} / {title}: no legend format"));
                }
            }
        }
    }
    walk(name, &d["panels"], &mut problems);
    problems
}

// ---------------------------------------------------------------------------------------------------------------
// The Switchyard under test and its traffic
// ---------------------------------------------------------------------------------------------------------------

/// Words in every prompt: the mock upstream counts one input token per word and answers with the eight words of
/// its default reply, so every successful request's usage, and therefore its cost, is known in advance.
const PROMPT_WORDS: u64 = 4000;
const REPLY_TOKENS: u64 = 8;

/// The catalogue: two healthy models, one whose upstream always fails (`-e500`: the mock answers 500) and one whose
/// upstream reports no usage (`-nousage`: Switchyard estimates it). Prices are USD per million tokens.
const MODELS: &[(&str, &str, Decimal, Decimal, &str)] = &[
    ("gpt-4o-mini", "gpt-4o-mini", dec!(0.15), dec!(0.60), "0.7"),
    ("gpt-4o", "gpt-4o", dec!(2.50), dec!(10.00), "0.95"),
    ("flaky", "gpt-4o-mini-e500", dec!(0.15), dec!(0.60), "0.3"),
    ("quiet", "gpt-4o-mini-nousage", dec!(0.15), dec!(0.60), "0.3"),
];

fn config_yaml(dir: &Path, upstream: &str) -> String {
    let mut yaml = format!(
        "listen: 127.0.0.1:0\n\
         database_url: \"sqlite://{db}\"\n\
         data_dir: \"{data}\"\n\
         policies_dir: \"{data}/policies\"\n\
         classifier: {{ enabled: false }}\n\
         deployments:\n  mock: {{ kind: openai, base_url: \"{upstream}/v1\", api_key: \"env:MOCK_API_KEY\" }}\n\
         models:\n",
        db = dir.join("switchyard.db").display(),
        data = dir.display(),
    );
    for (name, upstream_model, input, output, quality) in MODELS {
        yaml.push_str(&format!(
            "  - name: {name}\n    upstream_model: {upstream_model}\n    deployments: [mock]\n    \
             price: {{ input: \"{input}\", output: \"{output}\" }}\n    quality: {quality}\n"
        ));
    }
    yaml
}

fn price_of(model: &str) -> Price {
    let (_, _, input, output, _) = MODELS.iter().find(|m| m.0 == model).unwrap();
    Price {
        input: *input,
        output: *output,
        cached_input: *input,
    }
}

/// Teams and what they ask for, in turn. `research` and `support` see only healthy models with mock-reported
/// usage, so their spend is known exactly; `ops` gets the failures and the estimated usage.
fn request_for(i: u64) -> (&'static str, &'static str, bool) {
    let team = ["research", "support", "ops"][(i % 3) as usize];
    let model = match (team, (i / 3) % 3) {
        ("ops", 0) => "flaky",
        ("ops", 1) => "quiet",
        ("research", 0 | 2) | ("support", 0) => "auto",
        _ => "gpt-4o-mini",
    };
    (team, model, (i / 3) % 2 == 1)
}

/// What happened to one request, from the client's side.
struct Sent {
    team: &'static str,
    status: u16,
    served_by: Option<String>,
    overhead_header: Option<String>,
}

async fn send_request(
    base: &str,
    key: &str,
    model: &str,
    stream: bool,
) -> (u16, Option<String>, Option<String>) {
    let prompt = vec!["word"; PROMPT_WORDS as usize].join(" ");
    let mut body = serde_json::json!({ "model": model, "messages": [{ "role": "user", "content": prompt }] });
    if stream {
        body["stream"] = Value::Bool(true);
    }
    let auth = format!("Bearer {key}");
    let resp = common::client::post_json(
        &format!("{base}/v1/chat/completions"),
        &[("authorization", &auth)],
        &body,
    )
    .await;
    assert!(
        resp.body_error.is_none(),
        "{model}: body cut: {:?}",
        resp.body_error
    );
    (
        resp.status.as_u16(),
        resp.header("x-switchyard-model").map(str::to_owned),
        resp.header("x-switchyard-overhead-ms").map(str::to_owned),
    )
}

/// Stage metrics this traffic cannot produce yet (a stage not wired to [`Metrics`] yet, or not exercised by a
/// chat request): the test feeds them through the same methods the stages call, and says so. Once a stage reports
/// by itself its family is present after the warm-up and nothing is fed.
struct Feeder {
    missing: Vec<&'static str>,
}

const STAGE_FAMILIES: &[&str] = &[
    "switchyard_upstream_duration_seconds",
    "switchyard_upstream_errors_total",
    "switchyard_classifier_duration_seconds",
    "switchyard_route_fallbacks_total",
    "switchyard_route_difficulty",
    "switchyard_route_tasks_total",
    "switchyard_budget_used_ratio",
    "switchyard_local_model_swaps_total",
];

impl Feeder {
    fn new(rendered: &str) -> Feeder {
        let present = |family: &str| {
            rendered.lines().any(|l| {
                !l.starts_with('#')
                    && l.strip_prefix(family)
                        .is_some_and(|rest| rest.starts_with(['{', ' ', '_']))
            })
        };
        Feeder {
            missing: STAGE_FAMILIES.iter().copied().filter(|f| !present(f)).collect(),
        }
    }

    fn feed(&self, metrics: &Metrics, i: u64) {
        let missing = |f: &str| self.missing.contains(&f);
        if missing("switchyard_upstream_duration_seconds") {
            metrics.observe_upstream("openai", "chat", 0.05 + (i % 10) as f64 * 0.03);
        }
        if missing("switchyard_upstream_errors_total") && i.is_multiple_of(9) {
            metrics.observe_upstream_error("openai", UpstreamErrorKind::Server.as_str());
        }
        if missing("switchyard_classifier_duration_seconds") {
            let outcome = [
                ClassifierOutcome::Computed,
                ClassifierOutcome::Cached,
                ClassifierOutcome::Fallback,
            ][(i % 3) as usize];
            metrics.observe_classifier(0.001 + (i % 7) as f64 * 0.002, outcome);
        }
        if missing("switchyard_route_fallbacks_total") && i.is_multiple_of(9) {
            metrics.observe_fallback("ops", "flaky", "gpt-4o-mini");
        }
        if missing("switchyard_route_difficulty") || missing("switchyard_route_tasks_total") {
            // Difficulty and task reach metrics only through a ledger entry; this one is free and belongs to
            // `ops`, whose spend the test does not check.
            metrics.observe(&classified_entry(i));
        }
        if missing("switchyard_budget_used_ratio") {
            for team in ["research", "support", "ops"] {
                metrics.set_budget_used_ratio(team, 0.2 + (i % 50) as f64 / 100.0);
            }
        }
        if missing("switchyard_local_model_swaps_total") && i.is_multiple_of(9) {
            metrics.local_model_swap("llama-3.1-8b");
        }
    }
}

fn classified_entry(i: u64) -> LedgerEntry {
    LedgerEntry {
        request_id: format!("fed-{i}"),
        time: chrono::Utc::now(),
        user: "fed".to_owned(),
        team: "ops".to_owned(),
        key_id: "fed".to_owned(),
        requested_model: "auto".to_owned(),
        routed_model: "gpt-4o-mini".to_owned(),
        provider: "openai".to_owned(),
        deployment: "mock".to_owned(),
        endpoint: "chat",
        usage: Usage::default(),
        estimated: false,
        price_input: Decimal::ZERO,
        price_output: Decimal::ZERO,
        price_cached_input: Decimal::ZERO,
        cost: Decimal::ZERO,
        baseline_cost: Decimal::ZERO,
        local: false,
        difficulty: Some((i % 10) as f32 / 10.0 + 0.05),
        task: Some(["coding", "chat", "extraction"][(i % 3) as usize].to_owned()),
        route_reason: "cheapest_qualifying".to_owned(),
        latency_ms: 100,
        ttft_ms: None,
        status: Status::Ok,
        http_status: 200,
        overhead_us: 300,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_series_from_a_real_prometheus() {
    // Static checks first: they need no Prometheus and explain themselves.
    let boards = dashboards();
    let problems: Vec<String> = boards
        .iter()
        .flat_map(|(n, d)| check_dashboard_model(n, d))
        .collect();
    assert!(
        problems.is_empty(),
        "dashboard model problems:\n{}",
        problems.join("\n")
    );

    // A real Switchyard in front of the mock upstream.
    let upstream = common::mock::MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = HashMap::from([("MOCK_API_KEY".to_owned(), "sk-mock".to_owned())]);
    let config = Config::from_yaml(
        &config_yaml(dir.path(), &upstream.url()),
        "prometheus-test.yaml",
        dir.path(),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let state = switchyard::server::build_state(config).await.unwrap();
    let mut keys = BTreeMap::new();
    for team in ["research", "support", "ops"] {
        let key = state
            .store
            .create_key(&format!("{team}-user"), team, None)
            .await
            .unwrap();
        keys.insert(team, key.plaintext);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(switchyard::server::serve(state.clone(), listener, async {
        let _ = shutdown_rx.await;
    }));

    // Warm-up traffic before Prometheus starts, so that every series exists by its first scrape.
    let sent: Arc<std::sync::Mutex<Vec<Sent>>> = Arc::default();
    let record = |i: u64, (status, served_by, overhead_header): (u16, Option<String>, Option<String>)| Sent {
        team: request_for(i).0,
        status,
        served_by,
        overhead_header,
    };
    for i in 0..18 {
        let (team, model, stream) = request_for(i);
        let result = send_request(&base, &keys[team], model, stream).await;
        sent.lock().unwrap().push(record(i, result));
    }
    let feeder = Arc::new(Feeder::new(&state.metrics.render()));
    if !feeder.missing.is_empty() {
        eprintln!(
            "fed by the test (no stage reports these yet): {}",
            feeder.missing.join(", ")
        );
    }
    for i in 0..18 {
        feeder.feed(&state.metrics, i);
    }

    // Traffic keeps flowing while Prometheus scrapes and the queries run.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (sent, stop, keys, base, metrics, feeder) = (
            sent.clone(),
            stop.clone(),
            keys.clone(),
            base.clone(),
            state.metrics.clone(),
            feeder.clone(),
        );
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(40));
            let mut i = 18;
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                let (team, model, stream) = request_for(i);
                let result = send_request(&base, &keys[team], model, stream).await;
                sent.lock().unwrap().push(record(i, result));
                feeder.feed(&metrics, i);
                i += 1;
            }
        })
    };

    let prometheus = Prometheus::start(addr).await;
    prometheus
        .wait_for(r#"up{job="switchyard"} == 1"#, Duration::from_secs(30), |_| true)
        .await;
    // Enough scrapes for every 30 s rate window to hold several samples, and the counters moving between them.
    prometheus
        .wait_for(
            r#"count_over_time(up{job="switchyard"}[1m]) >= 5"#,
            Duration::from_secs(60),
            |_| true,
        )
        .await;
    prometheus
        .wait_for(
            "sum(increase(switchyard_requests_total[30s])) > 0",
            Duration::from_secs(30),
            |_| true,
        )
        .await;

    // Every template variable and every panel query, through the HTTP API.
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, board) in &boards {
        for var in board["templating"]["list"].as_array().into_iter().flatten() {
            let q = var["query"]["query"]
                .as_str()
                .or_else(|| var["query"].as_str())
                .unwrap_or_default();
            if var["type"] != "query" {
                continue;
            }
            let Some(promql) = label_values_query(&substitute(q)) else {
                failures.push(format!(
                    "{name} / variable {}: cannot translate `{q}`",
                    var["name"]
                ));
                continue;
            };
            checked += 1;
            match prometheus.query(&promql).await {
                Ok(series) if series.is_empty() => {
                    failures.push(format!(
                        "{name} / variable {}: no values for `{promql}`",
                        var["name"]
                    ));
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("{name} / variable {}: `{promql}`: {e}", var["name"])),
            }
        }
        for q in panel_queries(name, board) {
            let expr = substitute(&q.expr);
            assert!(
                !expr.contains('$'),
                "unsubstituted variable in {} / {}: {expr}",
                q.dashboard,
                q.panel
            );
            checked += 1;
            match prometheus.query(&expr).await {
                Ok(series) if series.is_empty() => {
                    failures.push(format!("{} / {}: no series for `{expr}`", q.dashboard, q.panel));
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("{} / {}: invalid `{expr}`: {e}", q.dashboard, q.panel)),
            }
        }
    }
    assert!(checked >= 40, "only {checked} queries found in the dashboards");

    // The alert rules evaluate against the live metrics without error.
    let rules = prometheus.query_rules().await;
    assert!(
        rules.len() >= 8,
        "expected the alert rules to be loaded, got {rules:?}"
    );
    for (rule, health) in &rules {
        if health != "ok" {
            failures.push(format!("alert rule {rule}: health {health}"));
        }
    }

    // Stop traffic. Every successful request of `research` and `support` used PROMPT_WORDS input and REPLY_TOKENS
    // output tokens on the model in its x-switchyard-model header: that is the ledger's total for the team.
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let usage = Usage {
        input_tokens: PROMPT_WORDS,
        output_tokens: REPLY_TOKENS,
        ..Usage::default()
    };
    let mut expected: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut per_series: BTreeMap<(&str, String), Decimal> = BTreeMap::new();
    let mut ok = 0;
    for s in &sent {
        let overhead = s.overhead_header.as_deref().and_then(|v| v.parse::<f64>().ok());
        if overhead.is_none_or(|ms| !(0.0..60_000.0).contains(&ms)) {
            // Every response carries it, errors included.
            failures.push(format!(
                "status {} without a valid x-switchyard-overhead-ms: {:?}",
                s.status, s.overhead_header
            ));
        }
        if s.team == "ops" || s.status != 200 {
            continue;
        }
        let model = s.served_by.as_deref().expect("x-switchyard-model on a success");
        let cost = switchyard::cost::cost(&usage, &price_of(model));
        *expected.entry(s.team).or_default() += cost;
        *per_series.entry((s.team, model.to_owned())).or_default() += cost;
        ok += 1;
    }
    assert!(
        ok >= 20,
        "too few successful requests to compare spend: {ok} of {}",
        sent.len()
    );
    assert!(
        sent.iter().any(|s| s.status >= 500),
        "the flaky model never failed"
    );
    for (team, total) in &expected {
        // The pipeline observes a stream's entry when its body ends, which may trail the client by a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while state.metrics.cost_usd(team) != *total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            state.metrics.cost_usd(team),
            *total,
            "exact in-process spend for {team}"
        );
        // The ledger itself: the rows the batch writer stored, summed exactly, equal the counter to the cent
        // (in fact exactly).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stored = ledger_total(&state.store, team).await;
            if stored == *total {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ledger total {stored} for {team}, counter {total}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Wait for a scrape after the last request. Each exported series is an exact decimal converted once;
        // `sum` then adds the per-model series in floating point, so the team total may differ from the exact
        // one in the last binary digits, never by anything near a cent.
        let exact = total.to_f64().unwrap();
        let expr = format!(r#"sum(switchyard_cost_usd_total{{team="{team}"}})"#);
        let series = prometheus
            .wait_for(&expr, Duration::from_secs(15), |s| {
                let got = s[0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
                got.is_some_and(|g| (g - exact).abs() <= 1e-9)
            })
            .await;
        let scraped = series[0]["value"][1]
            .as_str()
            .and_then(|v| Decimal::from_str_exact(v).ok())
            .unwrap();
        assert_eq!(
            scraped.round_dp(2),
            total.round_dp(2),
            "Prometheus spend for {team} to the cent"
        );
        eprintln!("{team}: ledger {total} USD, Prometheus {scraped} USD");
    }
    // Each series, before any PromQL arithmetic, is the exact decimal total converted to the nearest f64.
    let series = prometheus
        .query(r#"switchyard_cost_usd_total{team=~"research|support"}"#)
        .await
        .unwrap();
    assert_eq!(series.len(), per_series.len(), "{series:?}");
    for s in &series {
        let key = (
            s["metric"]["team"].as_str().unwrap(),
            s["metric"]["model"].as_str().unwrap().to_owned(),
        );
        let got = s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
        assert_eq!(
            got,
            per_series[&key].to_f64(),
            "switchyard_cost_usd_total for {key:?}"
        );
    }

    prometheus.stop().await;
    let _ = shutdown_tx.send(());
    let _ = server.await;
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} requests; {checked} dashboard queries and variables returned series; {} alert rules healthy",
        sent.len(),
        rules.len()
    );
}

impl Prometheus {
    /// Every loaded rule's name and health, once each has been evaluated at least once.
    async fn query_rules(&self) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, text) = http("GET", &format!("{}/api/v1/rules", self.base), None)
                .await
                .unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            let rules: Vec<(String, String, String)> = v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .map(|r| {
                    let health = r["health"].as_str().unwrap_or_default().to_owned();
                    let error = r["lastError"].as_str().unwrap_or_default().to_owned();
                    (r["name"].as_str().unwrap_or_default().to_owned(), health, error)
                })
                .collect();
            if (!rules.is_empty() && rules.iter().all(|(_, h, _)| h != "unknown"))
                || Instant::now() > deadline
            {
                return rules
                    .into_iter()
                    .map(|(n, h, e)| (n, if e.is_empty() { h } else { format!("{h}: {e}") }))
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The team's spend as stored in the ledger table (money is decimal text on SQLite, NUMERIC on Postgres).
async fn ledger_total(store: &switchyard::store::Store, team: &str) -> Decimal {
    match store {
        switchyard::store::Store::Sqlite(pool) => {
            let rows: Vec<(String,)> = sqlx::query_as("SELECT cost FROM ledger WHERE team = ?")
                .bind(team)
                .fetch_all(pool)
                .await
                .unwrap();
            rows.iter().map(|(c,)| c.parse::<Decimal>().unwrap()).sum()
        }
        switchyard::store::Store::Postgres(pool) => {
            let rows: Vec<(Decimal,)> = sqlx::query_as("SELECT cost FROM ledger WHERE team = $1")
                .bind(team)
                .fetch_all(pool)
                .await
                .unwrap();
            rows.iter().map(|(c,)| *c).sum()
        }
    }
}
