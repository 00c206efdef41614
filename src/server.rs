//! Accept loop, TLS termination and graceful shutdown.
//!
//! [`run`] is what the binary calls and what tests call: give it a config, a bound listener and a shutdown
//! future. On shutdown it stops accepting, lets in-flight requests and streams finish within the configured
//! grace period, then drains the ledger.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::budget::{Budgets, LeaseSettings};
use crate::config::{Config, TlsFiles};
use crate::ledger::Ledger;
use crate::local::LocalModels;
use crate::metrics::Metrics;
use crate::route::sticky::StickyStore;
use crate::state::{AppState, Shared};
use crate::store::Store;
use crate::upstream::Upstream;

/// Builds every long-lived component from the validated config.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    // The token vocabulary (about 13 MB) is loaded on the first estimate, not here: providers nearly always report
    // usage, so most deployments never need it.
    let store = Store::open(&config.database_url).await.with_context(|| {
        format!(
            "cannot open the database at {}",
            crate::config::redact_url(&config.database_url)
        )
    })?;
    let upstream = Upstream::new(config.deployments.values()).context("cannot build the upstream client")?;
    let metrics = Metrics::new().context("cannot register metrics")?;
    let classifier = load_classifier(&config.classifier).await;
    let embedder = classifier.as_ref().map(|c| c as &dyn crate::policy::Embedder);
    for d in config.deployments.values().filter(|d| d.missing_credentials()) {
        tracing::warn!(
            deployment = %d.name,
            variable = d.api_key_env.as_deref().unwrap_or_default(),
            "API key variable is not set; requests routed to this deployment will fail"
        );
    }
    if !config.ledger.enabled {
        tracing::warn!(
            "the ledger is off (ledger.enabled: false): no spend rows are written, so spend reports and savings \
             stay empty; budgets are still enforced"
        );
    }
    Ok(AppState::new(Shared {
        catalogue: config.catalogue.clone(),
        auth: Authenticator::new(store.clone()),
        policies: crate::policy::reload::load_initial(&config.policies_dir, &config.catalogue, embedder)?,
        classifier,
        local: LocalModels::default(),
        sticky: StickyStore::default(),
        upstream,
        budgets: Budgets::new(store.clone(), LeaseSettings::default()),
        ledger: Ledger::start(store.clone(), &config.ledger).with_context(|| {
            format!(
                "cannot open the ledger spool in {}",
                config.ledger.spool_dir.display()
            )
        })?,
        metrics,
        store,
        tasks: TaskTracker::new(),
        counts: Default::default(),
        draining: Arc::new(AtomicBool::new(false)),
        config: Arc::new(config),
    }))
}

/// Loads the classifier off the async workers. A failure is logged with its fix and the proxy runs without it:
/// routed requests then use each policy's default for unclassified requests, and say so in `x-switchyard-route`.
async fn load_classifier(
    settings: &crate::classify::ClassifierSettings,
) -> Option<crate::classify::Classifier> {
    if !settings.enabled {
        tracing::info!("classifier disabled in the config");
        return None;
    }
    let settings = settings.clone();
    match tokio::task::spawn_blocking(move || crate::classify::Classifier::load(&settings)).await {
        Ok(Ok(classifier)) => {
            tracing::info!("classifier loaded");
            Some(classifier)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "classifier unavailable; routing falls back to policy defaults");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "classifier loading panicked; routing falls back to policy defaults");
            None
        }
    }
}

fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(&files.cert).with_context(|| format!("cannot open {}", files.cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("cannot read certificates from {}", files.cert.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(&files.key).with_context(|| format!("cannot open {}", files.key.display()))?,
    ))
    .with_context(|| format!("cannot read the private key from {}", files.key.display()))?
    .with_context(|| format!("no private key in {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the proxy until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = build_state(config).await?;
    serve(state, listener, shutdown).await
}

/// Serves an already built state (tests use this to keep a handle on the state).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls = state.config.tls.as_ref().map(tls_acceptor).transpose()?;
    let router = crate::api::router(state.clone());
    // Background work that lives as long as the server: the policy folder watcher and the local-model probes.
    let background = tokio_util::sync::CancellationToken::new();
    if state.config.policies_dir.is_dir() {
        match crate::policy::reload::watch_folder(
            state.config.policies_dir.clone(),
            state.catalogue.clone(),
            state.policies.clone(),
            state
                .classifier
                .clone()
                .map(|c| Arc::new(c) as Arc<dyn crate::policy::Embedder>),
            Some(state.metrics.clone()),
            background.clone(),
        ) {
            Ok(watch) => {
                state.tasks.spawn(watch);
            }
            Err(e) => tracing::warn!(error = %e, dir = %state.config.policies_dir.display(),
                "cannot watch the policies folder; policy changes need a restart"),
        }
    }
    let local_deployments: Vec<_> = state
        .config
        .deployments
        .values()
        .filter(|d| d.local.is_some())
        .cloned()
        .collect();
    if !local_deployments.is_empty() {
        state.tasks.spawn(crate::local::run_probes(
            local_deployments,
            state.local.clone(),
            background.clone(),
        ));
    }
    state
        .tasks
        .spawn(publish_gauges(state.clone(), background.clone()));
    let mut builder = auto::Builder::new(crate::rounds::CountedExecutor);
    // A client that trickles its request head (slowloris) is cut off instead of holding a connection forever.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    let grace = state.config.shutdown_grace;
    tracing::info!(
        address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        tls = tls.is_some(),
        store = state.store.backend(),
        "switchyard listening"
    );

    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match tls.clone() {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                    .into_owned();
                tokio::spawn(async move {
                    if let Err(e) = crate::rounds::counted(watcher.watch(conn)).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(e) = crate::rounds::counted(watcher.watch(conn)).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }

    drop(listener);
    state.draining.store(true, Ordering::Relaxed);
    tracing::info!(
        grace_s = grace.as_secs_f64(),
        in_flight = graceful.count(),
        "shutting down: draining connections"
    );
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace period over; closing the remaining connections");
    }
    background.cancel();
    state.tasks.close();
    if tokio::time::timeout(Duration::from_secs(5), state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not finish in time");
    }
    state.ledger.drain().await;
    // Report settled spend and hand leases back so other replicas can use them.
    state.budgets.drain().await;
    state.store.close().await;
    tracing::info!("switchyard stopped");
    Ok(())
}

/// How often the state gauges (ledger queue and spool, budget use) are refreshed; Prometheus scrapes are coarser.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps the gauges that describe state rather than events current: ledger queue depth, spool size and oldest
/// spooled row, and each team's budget use (the largest ratio of its team-wide limits, from the shared counters).
async fn publish_gauges(state: AppState, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(GAUGE_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        state.metrics.set_ledger_queue_depth(state.ledger.queued());
        if let Some(spool) = state.ledger.spool() {
            let dir = spool.dir().to_owned();
            if let Ok((bytes, oldest)) =
                tokio::task::spawn_blocking(move || crate::ledger::spool::disk_usage(&dir)).await
            {
                state.metrics.set_spool(bytes, oldest);
            }
        }
        let policies = state.policies.snapshot();
        for (team, policy) in &policies.teams {
            let principal = crate::auth::Principal {
                key_id: String::new(),
                key_prefix: String::new(),
                user: String::new(),
                team: team.clone(),
            };
            let mut worst: Option<f64> = None;
            for spec in crate::budget::specs_of(policy) {
                if spec.scope != crate::budget::BudgetScope::Team || spec.limit.is_zero() {
                    continue;
                }
                if let Ok((spent, _leased)) = state.budgets.shared_state(&spec, &principal).await {
                    let ratio =
                        rust_decimal::prelude::ToPrimitive::to_f64(&(spent / spec.limit)).unwrap_or(0.0);
                    worst = Some(worst.map_or(ratio, |w: f64| w.max(ratio)));
                }
            }
            if let Some(ratio) = worst {
                state.metrics.set_budget_used_ratio(team, ratio);
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
