//! Proof that the dashboards and alert rules work: a real Prometheus (the Debian package, installed by
//! `scripts/install-prometheus.sh` when missing) scrapes a running Switchyard while traffic flows, then every panel
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
use rust_decimal_macros::dec;
use serde_json::Value;

use switchyard::config::Price;
use switchyard::ledger::{LedgerEntry, Status};
use switchyard::metrics::{ClassifierOutcome, Metrics, ReloadResult, UpstreamErrorKind};
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

/// The `prometheus` and `promtool` binaries, installing the Debian package first if either is missing.
fn prometheus_binaries() -> (PathBuf, PathBuf) {
    if on_path("prometheus").is_none() || on_path("promtool").is_none() {
        let script = Path::new(MANIFEST).join("scripts/install-prometheus.sh");
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

/// Serves `/metrics` from `metrics` on a free port, as Switchyard's server does.
async fn serve_metrics(metrics: Metrics) -> SocketAddr {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { metrics.render() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

struct Catalogue {
    name: &'static str,
    provider: &'static str,
    price: Price,
    local: bool,
}

fn catalogue() -> Vec<Catalogue> {
    vec![
        Catalogue {
            name: "gpt-4o-mini",
            provider: "openai",
            price: Price {
                input: dec!(0.15),
                output: dec!(0.60),
                cached_input: dec!(0.075),
            },
            local: false,
        },
        Catalogue {
            name: "claude-sonnet-4",
            provider: "anthropic",
            price: Price {
                input: dec!(3),
                output: dec!(15),
                cached_input: dec!(0.30),
            },
            local: false,
        },
        Catalogue {
            name: "llama-3.1-8b",
            provider: "openai",
            price: Price {
                input: dec!(0.02),
                output: dec!(0.02),
                cached_input: dec!(0.02),
            },
            local: true,
        },
    ]
}

/// Request `i` of the synthetic traffic, priced exactly as the pipeline prices it.
fn synthetic_entry(i: u64) -> LedgerEntry {
    let models = catalogue();
    let model = &models[(i % 3) as usize];
    let baseline = Price {
        input: dec!(2.50),
        output: dec!(10),
        cached_input: dec!(1.25),
    };
    let team = if i % 2 == 0 { "research" } else { "support" };
    let usage = Usage {
        input_tokens: 500 + (i % 7) * 131,
        output_tokens: 40 + (i % 5) * 57,
        cached_input_tokens: if i % 4 == 0 { 256 } else { 0 },
        ..Usage::default()
    };
    let stream = i % 2 == 1;
    let status = match i % 17 {
        5 => Status::Failed,
        11 => Status::Cancelled,
        _ => Status::Ok,
    };
    LedgerEntry {
        request_id: format!("req-{i}"),
        time: chrono::Utc::now(),
        user: format!("user-{}", i % 4),
        team: team.to_owned(),
        key_id: format!("key-{}", i % 4),
        requested_model: if i % 5 == 0 {
            model.name.to_owned()
        } else {
            "auto".to_owned()
        },
        routed_model: model.name.to_owned(),
        provider: model.provider.to_owned(),
        deployment: format!("{}-main", model.provider),
        endpoint: if i % 9 == 0 {
            "/v1/completions"
        } else {
            "/v1/chat/completions"
        },
        usage,
        estimated: i % 13 == 0,
        price_input: model.price.input,
        price_output: model.price.output,
        price_cached_input: model.price.cached_input,
        cost: switchyard::cost::cost(&usage, &model.price),
        baseline_cost: switchyard::cost::cost(&usage, &baseline),
        local: model.local,
        difficulty: (i % 5 != 0).then(|| (i % 10) as f32 / 10.0 + 0.05),
        task: (i % 5 != 0).then(|| ["coding", "chat", "extraction", "math"][(i % 4) as usize].to_owned()),
        route_reason: if i % 5 == 0 {
            "honoured"
        } else {
            "cheapest_qualifying"
        }
        .to_owned(),
        latency_ms: 200 + ((i * 37) % 1800) as u32,
        ttft_ms: stream.then(|| 50 + ((i * 13) % 400) as u32),
        status,
        http_status: match status {
            Status::Ok | Status::Cancelled => 200,
            Status::Failed => 502,
            Status::Rejected => 429,
        },
        overhead_us: 200 + (i % 9) * 300,
    }
}

/// Feeds `metrics` what the pipeline's stages report around request `i`, and returns the request's ledger entry.
fn synthetic_request(metrics: &Metrics, i: u64) -> LedgerEntry {
    let entry = synthetic_entry(i);
    let outcome = match i % 10 {
        0..=5 => ClassifierOutcome::Computed,
        6..=8 => ClassifierOutcome::Cached,
        _ => ClassifierOutcome::Fallback,
    };
    metrics.observe_classifier(0.0005 + (i % 20) as f64 * 0.001, outcome);
    metrics.observe_upstream(
        &entry.provider,
        entry.endpoint,
        f64::from(entry.latency_ms) / 1000.0 * 0.9,
    );
    if entry.status == Status::Failed {
        metrics.observe_upstream_error(&entry.provider, UpstreamErrorKind::Server.as_str());
        metrics.observe_fallback(&entry.team, "claude-sonnet-4", &entry.routed_model);
    }
    if i % 23 == 0 {
        metrics.local_model_swap("llama-3.1-8b");
    }
    if i % 29 == 0 {
        metrics.policy_reload(if i % 58 == 0 {
            ReloadResult::Ok
        } else {
            ReloadResult::Error
        });
    }
    metrics.set_ledger_queue_depth((i % 40) as usize);
    metrics.set_spool(
        if i % 50 < 25 { 0 } else { 4096 * (i % 50) },
        if i % 50 < 25 { 0.0 } else { (i % 50) as f64 },
    );
    metrics.set_budget_used_ratio(&entry.team, 0.3 + 0.01 * (i % 60) as f64);
    metrics.observe(&entry);
    entry
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

    // Switchyard and traffic: a ledger of everything observed, to check the exported spend against.
    let metrics = Metrics::new().unwrap();
    let addr = serve_metrics(metrics.clone()).await;
    let ledger: Arc<std::sync::Mutex<Vec<LedgerEntry>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // A first batch before Prometheus starts, so that every series exists by its first scrape and each rate
    // window below has several samples of it; then traffic keeps flowing while the queries run.
    for i in 0..100 {
        let entry = synthetic_request(&metrics, i);
        ledger.lock().unwrap().push(entry);
    }
    let traffic = {
        let (metrics, ledger, stop) = (metrics.clone(), ledger.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 100;
            while !stop.load(Ordering::Relaxed) {
                let entry = synthetic_request(&metrics, i);
                ledger.lock().unwrap().push(entry);
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
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

    // Stop traffic; once Prometheus has scraped the final values, the spend per team must equal the ledger's.
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let mut expected: BTreeMap<String, Decimal> = BTreeMap::new();
    for e in ledger.lock().unwrap().iter() {
        *expected.entry(e.team.clone()).or_default() += e.cost;
    }
    assert_eq!(expected.len(), 2);
    for (team, total) in &expected {
        assert_eq!(
            metrics.cost_usd(team),
            *total,
            "in-process exact total for {team}"
        );
        let want = total.round_dp(2);
        let expr = format!(r#"sum(switchyard_cost_usd_total{{team="{team}"}})"#);
        let series = prometheus
            .wait_for(&expr, Duration::from_secs(15), |s| {
                let got = s[0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
                got.and_then(Decimal::from_f64_retain)
                    .is_some_and(|g| g.round_dp(2) == want)
            })
            .await;
        eprintln!(
            "{team}: ledger {total} USD, Prometheus {} USD",
            series[0]["value"][1]
        );
    }

    prometheus.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{checked} dashboard queries and variables returned series; {} alert rules healthy",
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
