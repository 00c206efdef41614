//! Local model servers: which models are loaded in GPU memory, how long a cold load takes, and not thrashing
//! one GPU between models.
//!
//! Swapping a local model into GPU memory takes 20–60 s. Routing sees a [`LocalSnapshot`] (plain data, taken
//! per request) and treats a cold model as usable only when its expected load time is within the policy's
//! `max_swap_wait` and loading it would not evict a model that was itself loaded moments ago.
//!
//! [`LocalModels`] is the live state behind the snapshot, fed by three sources:
//! - the probe ([`run_probes`]): Ollama's `GET /api/ps` lists the loaded models; polled every
//!   `probe_interval`. This and the probe's HTTP client are the only I/O in this file.
//! - the pipeline, before it sends a request to a cold local model ([`LocalModels::dispatching`]): the model
//!   counts as loading, so concurrent requests see the GPU busy rather than each starting another swap.
//! - the pipeline, when the first token arrives ([`LocalModels::observe_first_token`]): a cold request's time
//!   to first token teaches the model's load time (moving average), replacing the configured guess.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{Deployment, LocalProbe};

/// Load time assumed for a local model with neither a configured nor a learned one.
pub const DEFAULT_LOAD_TIME: Duration = Duration::from_secs(30);
/// A GPU that swapped models more recently than this is not asked to swap again for a cold model.
pub const DEFAULT_ANTI_THRASH_WINDOW: Duration = Duration::from_secs(120);

/// What routing needs to know about one local deployment, at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalDeploymentView {
    /// The last probe failed: the server is down.
    pub unreachable: bool,
    /// The probe has answered at least once (without a probe every model is assumed loaded).
    pub probed: bool,
    /// Upstream model ids in memory.
    pub loaded: BTreeSet<String>,
    /// A model being loaded now, with the expected time left.
    pub loading: Option<(String, Duration)>,
    /// Time since this deployment last swapped a model in.
    pub since_last_swap: Option<Duration>,
    /// Learned load times by upstream model id.
    pub learned_load_time: BTreeMap<String, Duration>,
}

/// Local-model state for every local deployment, as plain data for the pure routing function.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalSnapshot {
    pub deployments: BTreeMap<String, LocalDeploymentView>,
    pub anti_thrash_window: Duration,
}

/// Whether a local model can serve now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Unreachable,
    /// Not loaded: expected wait until it can answer, and whether loading it now would thrash the GPU.
    Cold {
        wait: Duration,
        thrash: bool,
    },
}

/// Ollama reports `llama3.2` as `llama3.2:latest`.
fn same_model(a: &str, b: &str) -> bool {
    a == b || a.strip_suffix(":latest") == Some(b) || b.strip_suffix(":latest") == Some(a)
}

impl LocalSnapshot {
    pub fn readiness(
        &self,
        deployment: &str,
        upstream_model: &str,
        configured_load_time: Option<Duration>,
    ) -> Readiness {
        let Some(view) = self.deployments.get(deployment) else {
            return Readiness::Ready;
        };
        if view.unreachable {
            return Readiness::Unreachable;
        }
        if !view.probed || view.loaded.iter().any(|m| same_model(m, upstream_model)) {
            return Readiness::Ready;
        }
        let load = view
            .learned_load_time
            .iter()
            .find(|(m, _)| same_model(m, upstream_model))
            .map(|(_, d)| *d)
            .or(configured_load_time)
            .unwrap_or(DEFAULT_LOAD_TIME);
        match &view.loading {
            Some((m, left)) if same_model(m, upstream_model) => Readiness::Cold {
                wait: *left,
                thrash: false,
            },
            // Another model is being loaded: this one would queue behind it and then evict it.
            Some((_, left)) => Readiness::Cold {
                wait: *left + load,
                thrash: true,
            },
            None => {
                let recent = view.since_last_swap.is_some_and(|s| s < self.anti_thrash_window);
                Readiness::Cold {
                    wait: load,
                    thrash: recent && !view.loaded.is_empty(),
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct DeploymentState {
    unreachable: bool,
    probed: bool,
    loaded: BTreeSet<String>,
    loading: Option<(String, Instant, Duration)>,
    last_swap: Option<Instant>,
    learned: BTreeMap<String, Duration>,
}

/// The live local-model state. Cheap to clone. A std mutex (never held across an `.await`; every critical
/// section is a few map operations), because snapshots are taken on every routed request and an async lock
/// would only add overhead.
#[derive(Debug, Clone)]
pub struct LocalModels {
    inner: Arc<Mutex<BTreeMap<String, DeploymentState>>>,
    anti_thrash_window: Duration,
}

impl Default for LocalModels {
    fn default() -> Self {
        LocalModels::new(DEFAULT_ANTI_THRASH_WINDOW)
    }
}

impl LocalModels {
    pub fn new(anti_thrash_window: Duration) -> Self {
        LocalModels {
            inner: Arc::default(),
            anti_thrash_window,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, DeploymentState>) -> R) -> R {
        // A panic while holding the lock leaves plain data behind, which is still consistent enough to use.
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    pub fn snapshot(&self) -> LocalSnapshot {
        self.snapshot_at(Instant::now())
    }

    pub fn snapshot_at(&self, now: Instant) -> LocalSnapshot {
        let deployments = self.with(|map| {
            map.iter()
                .map(|(name, s)| {
                    let loading = s.loading.as_ref().map(|(m, started, expected)| {
                        let elapsed = now.saturating_duration_since(*started);
                        // A load that overran its estimate is still loading; say one more second.
                        (
                            m.clone(),
                            expected.saturating_sub(elapsed).max(Duration::from_secs(1)),
                        )
                    });
                    let view = LocalDeploymentView {
                        unreachable: s.unreachable,
                        probed: s.probed,
                        loaded: s.loaded.clone(),
                        loading,
                        since_last_swap: s.last_swap.map(|t| now.saturating_duration_since(t)),
                        learned_load_time: s.learned.clone(),
                    };
                    (name.clone(), view)
                })
                .collect()
        });
        LocalSnapshot {
            deployments,
            anti_thrash_window: self.anti_thrash_window,
        }
    }

    /// Records a probe result: the loaded set, or `None` when the server did not answer.
    pub fn record_probe(&self, deployment: &str, loaded: Option<BTreeSet<String>>, now: Instant) {
        self.with(|map| {
            let s = map.entry(deployment.to_owned()).or_default();
            match loaded {
                None => s.unreachable = true,
                Some(loaded) => {
                    if s.probed && loaded.iter().any(|m| !s.loaded.contains(m)) {
                        s.last_swap = Some(now);
                    }
                    if let Some((m, _, _)) = &s.loading
                        && loaded.iter().any(|l| same_model(l, m))
                    {
                        s.loading = None;
                    }
                    s.unreachable = false;
                    s.probed = true;
                    s.loaded = loaded;
                }
            }
        });
    }

    /// The pipeline is about to send a request to `model` on `deployment`. If the model is cold, it now counts
    /// as loading (expected `load_time`), so concurrent decisions see the GPU busy.
    pub fn dispatching(&self, deployment: &str, model: &str, load_time: Duration, now: Instant) {
        self.with(|map| {
            let s = map.entry(deployment.to_owned()).or_default();
            let loaded = s.loaded.iter().any(|m| same_model(m, model));
            let already = s.loading.as_ref().is_some_and(|(m, _, _)| same_model(m, model));
            if s.probed && !loaded && !already {
                s.loading = Some((model.to_owned(), now, load_time));
                s.last_swap = Some(now);
            }
        });
    }

    /// The first token of a request to `model` arrived after `ttft`. If the model was cold, `ttft` minus the
    /// model's usual latency is a load-time observation; the learned value is a moving average (weight ½ on the
    /// newest, so one outlier cannot dominate but a changed GPU is learned within a few loads).
    pub fn observe_first_token(
        &self,
        deployment: &str,
        model: &str,
        ttft: Duration,
        warm_latency: Duration,
        was_cold: bool,
    ) {
        self.with(|map| {
            let s = map.entry(deployment.to_owned()).or_default();
            if was_cold {
                let observed = ttft.saturating_sub(warm_latency);
                let learned = match s.learned.get(model) {
                    Some(prev) => (*prev + observed) / 2,
                    None => observed,
                };
                s.learned.insert(model.to_owned(), learned);
            }
            if s.loading.as_ref().is_some_and(|(m, _, _)| same_model(m, model)) {
                s.loading = None;
            }
            s.loaded.insert(model.to_owned());
        });
    }
}

/// What the pipeline calls around a request to a local model: [`LocalModels::before_send`] when it picks
/// the target, [`LocalModels::after_first_token`] when the first byte or chunk arrives.
impl LocalModels {
    /// Marks a cold model as loading (so concurrent decisions see the GPU busy) and returns whether it was
    /// cold; pass that to [`LocalModels::after_first_token`]. A no-op returning `false` for API deployments.
    pub fn before_send(&self, deployment: &Deployment, model: &crate::config::Model) -> bool {
        if deployment.local.is_none() {
            return false;
        }
        let now = Instant::now();
        let snapshot = self.snapshot_at(now);
        match snapshot.readiness(&deployment.name, &model.upstream_model, model.load_time) {
            Readiness::Cold { wait, .. } => {
                self.dispatching(&deployment.name, &model.upstream_model, wait, now);
                true
            }
            Readiness::Ready | Readiness::Unreachable => false,
        }
    }

    /// Records the time to first token; a cold request's teaches the model's load time.
    pub fn after_first_token(
        &self,
        deployment: &Deployment,
        model: &crate::config::Model,
        ttft: Duration,
        was_cold: bool,
    ) {
        if deployment.local.is_none() {
            return;
        }
        let warm = model.latency.unwrap_or(Duration::from_millis(300));
        self.observe_first_token(&deployment.name, &model.upstream_model, ttft, warm, was_cold);
    }
}

/// Parses Ollama's `GET /api/ps` body into the set of loaded model names.
pub fn parse_ollama_ps(body: &[u8]) -> Result<BTreeSet<String>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Ps {
        #[serde(default)]
        models: Vec<PsModel>,
    }
    #[derive(serde::Deserialize)]
    struct PsModel {
        #[serde(default)]
        name: String,
        #[serde(default)]
        model: String,
    }
    let ps: Ps = serde_json::from_slice(body)?;
    Ok(ps
        .models
        .into_iter()
        .map(|m| if m.model.is_empty() { m.name } else { m.model })
        .filter(|m| !m.is_empty())
        .collect())
}

/// The URL the probe asks: the configured one, else the deployment's base URL without its `/v1` suffix.
pub fn probe_url(deployment: &Deployment) -> Option<String> {
    let local = deployment.local.as_ref()?;
    if local.probe != LocalProbe::Ollama {
        return None;
    }
    let base = if local.probe_url.is_empty() {
        deployment
            .base_url
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_owned()
    } else {
        local.probe_url.trim_end_matches('/').to_owned()
    };
    Some(if base.ends_with("/api/ps") {
        base
    } else {
        format!("{base}/api/ps")
    })
}

/// Polls every local deployment with a probe until `shutdown` fires. Run it under the server's task tracker.
pub async fn run_probes(
    deployments: Vec<Arc<Deployment>>,
    state: LocalModels,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for d in deployments {
        let (Some(url), Some(local)) = (probe_url(&d), d.local.clone()) else {
            continue;
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let client = probe::client();
            let mut tick = tokio::time::interval(local.probe_interval.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Failures are logged at warn when the server becomes unreachable, not on every probe (every few
            // seconds, for as long as it is down); the repeats go to debug.
            let mut reachable = true;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let result = probe::get(&client, &url, d.timeouts.connect.max(Duration::from_secs(2))).await;
                let loaded = match result.and_then(|b| parse_ollama_ps(&b).map_err(|e| e.to_string())) {
                    Ok(set) => {
                        if !reachable {
                            tracing::info!(deployment = %d.name, "local model server answers again");
                        }
                        reachable = true;
                        Some(set)
                    }
                    Err(error) => {
                        if reachable {
                            tracing::warn!(deployment = %d.name, %error,
                                "local model probe failed; its models are skipped until it answers");
                        } else {
                            tracing::debug!(deployment = %d.name, %error, "local model probe failed");
                        }
                        reachable = false;
                        None
                    }
                };
                state.record_probe(&d.name, loaded, Instant::now());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

mod probe {
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    pub type ProbeClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

    pub fn client() -> ProbeClient {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Client::builder(TokioExecutor::new()).build(https)
    }

    /// One GET with a deadline; the body is capped at 1 MiB (a `/api/ps` answer is a few hundred bytes).
    pub async fn get(client: &ProbeClient, url: &str, timeout: Duration) -> Result<Bytes, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad probe URL: {e}"))?;
        let fut = async {
            let resp = client.get(uri).await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("status {}", resp.status()));
            }
            let body = http_body_util::Limited::new(resp.into_body(), 1 << 20);
            body.collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| "timed out".to_owned())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(loaded: &[&str]) -> LocalDeploymentView {
        LocalDeploymentView {
            probed: true,
            loaded: loaded.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_ollama_ps() {
        let body = br#"{"models":[{"name":"llama3.2:3b","model":"llama3.2:3b","size":3e9,"expires_at":"2026-01-01T00:00:00Z"},{"name":"qwen3:8b"}]}"#;
        let set = parse_ollama_ps(body).unwrap();
        assert_eq!(
            set,
            BTreeSet::from(["llama3.2:3b".to_owned(), "qwen3:8b".to_owned()])
        );
        assert!(parse_ollama_ps(br#"{"models":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn readiness_of_loaded_cold_and_unknown_models() {
        let mut snap = LocalSnapshot {
            anti_thrash_window: Duration::from_secs(120),
            ..Default::default()
        };
        snap.deployments.insert("gpu".into(), view(&["llama3.2:latest"]));
        assert_eq!(snap.readiness("gpu", "llama3.2", None), Readiness::Ready);
        assert_eq!(
            snap.readiness("gpu", "qwen3:8b", Some(Duration::from_secs(20))),
            Readiness::Cold {
                wait: Duration::from_secs(20),
                thrash: false
            }
        );
        assert_eq!(
            snap.readiness("other", "x", None),
            Readiness::Ready,
            "no probe: assumed loaded"
        );
        snap.deployments.get_mut("gpu").unwrap().unreachable = true;
        assert_eq!(snap.readiness("gpu", "llama3.2", None), Readiness::Unreachable);
    }

    #[test]
    fn recent_swap_marks_a_cold_load_as_thrashing() {
        let state = LocalModels::new(Duration::from_secs(120));
        let t0 = Instant::now();
        state.record_probe("gpu", Some(BTreeSet::from(["a".to_owned()])), t0);
        state.record_probe(
            "gpu",
            Some(BTreeSet::from(["b".to_owned()])),
            t0 + Duration::from_secs(5),
        );
        let snap = state.snapshot_at(t0 + Duration::from_secs(10));
        assert!(matches!(
            snap.readiness("gpu", "a", None),
            Readiness::Cold { thrash: true, .. }
        ));
        let later = state.snapshot_at(t0 + Duration::from_secs(300));
        assert!(matches!(
            later.readiness("gpu", "a", None),
            Readiness::Cold { thrash: false, .. }
        ));
    }

    #[test]
    fn dispatching_a_cold_model_makes_it_loading_and_first_token_teaches_load_time() {
        let state = LocalModels::new(Duration::from_secs(120));
        let t0 = Instant::now();
        state.record_probe("gpu", Some(BTreeSet::new()), t0);
        state.dispatching("gpu", "big", Duration::from_secs(40), t0);
        let snap = state.snapshot_at(t0 + Duration::from_secs(10));
        assert_eq!(
            snap.readiness("gpu", "big", None),
            Readiness::Cold {
                wait: Duration::from_secs(30),
                thrash: false
            }
        );
        // Another model would have to wait for this load and then evict it.
        assert!(matches!(
            snap.readiness("gpu", "small", None),
            Readiness::Cold { thrash: true, .. }
        ));
        state.observe_first_token(
            "gpu",
            "big",
            Duration::from_secs(25),
            Duration::from_secs(1),
            true,
        );
        let snap = state.snapshot_at(t0 + Duration::from_secs(26));
        assert_eq!(snap.readiness("gpu", "big", None), Readiness::Ready);
        assert_eq!(
            snap.deployments["gpu"].learned_load_time["big"],
            Duration::from_secs(24)
        );
    }
}
