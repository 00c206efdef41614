//! Pipeline stage 6: the only place that makes outbound calls to providers.
//!
//! One pooled hyper client per deployment (rustls with webpki roots, HTTP/1.1 and HTTP/2 by ALPN, `TCP_NODELAY`),
//! because the connect timeout is a property of the connector and deployments configure their own. Pools are
//! keyed by host inside each client, so deployments on the same host still share nothing they should not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Deployment;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why an upstream call failed before a response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to {deployment}: {detail}")]
    Connect { deployment: String, detail: String },
    #[error("{deployment} did not answer within {after:?}")]
    Timeout { deployment: String, after: Duration },
    #[error("request to {deployment} failed: {detail}")]
    Failed { deployment: String, detail: String },
    #[error("deployment {deployment} has no credentials: set {var}")]
    MissingCredentials { deployment: String, var: String },
}

impl UpstreamError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::Failed { .. } => "failed",
            UpstreamError::MissingCredentials { .. } => "credentials",
        }
    }
}

#[derive(Clone)]
pub struct Upstream {
    clients: Arc<HashMap<String, HttpsClient>>,
    health: Arc<Health>,
}

/// Consecutive failures that open a deployment's circuit.
const OPEN_AFTER: u32 = 5;
/// How long an open circuit keeps routing away from a deployment before it is tried again.
const OPEN_FOR: Duration = Duration::from_secs(30);

/// Passive health: a deployment that fails [`OPEN_AFTER`] times in a row (connection errors, timeouts, 5xx,
/// 429) is reported unhealthy for [`OPEN_FOR`], so routing prefers its fallbacks; the first call after that is a
/// probe, and one success closes the circuit again. A std mutex is right here: it guards a few integers and is
/// never held across an `.await`.
#[derive(Default)]
struct Health {
    deployments: std::sync::Mutex<HashMap<String, Circuit>>,
}

#[derive(Default)]
struct Circuit {
    failures: u32,
    open_until: Option<std::time::Instant>,
}

fn build_client(deployment: &Deployment) -> Result<HttpsClient, std::io::Error> {
    let mut http = HttpConnector::new();
    // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms to small writes such as SSE frames.
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(deployment.timeouts.connect));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        // Without a timer the idle timeout is never enforced and dead pooled connections linger.
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https))
}

impl Upstream {
    pub fn new<'a>(
        deployments: impl IntoIterator<Item = &'a Arc<Deployment>>,
    ) -> Result<Self, std::io::Error> {
        let mut clients = HashMap::new();
        for d in deployments {
            clients.insert(d.name.clone(), build_client(d)?);
        }
        Ok(Upstream {
            clients: Arc::new(clients),
            health: Arc::default(),
        })
    }

    /// Records the outcome of a call for the deployment's circuit.
    pub fn record(&self, deployment: &str, healthy: bool) {
        let mut map = self
            .health
            .deployments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let circuit = map.entry(deployment.to_owned()).or_default();
        if healthy {
            *circuit = Circuit::default();
            return;
        }
        circuit.failures = circuit.failures.saturating_add(1);
        if circuit.failures >= OPEN_AFTER {
            if circuit.open_until.is_none_or(|t| t <= std::time::Instant::now()) {
                tracing::warn!(
                    deployment,
                    failures = circuit.failures,
                    "deployment marked unhealthy"
                );
            }
            circuit.open_until = Some(std::time::Instant::now() + OPEN_FOR);
        }
    }

    /// Deployments whose circuit is open now.
    pub fn unhealthy(&self) -> std::collections::BTreeSet<String> {
        let now = std::time::Instant::now();
        let map = self
            .health
            .deployments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter()
            .filter(|(_, c)| c.open_until.is_some_and(|t| t > now))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Sends a request and waits for the response head, at most the deployment's first-byte timeout.
    pub async fn send(
        &self,
        deployment: &Deployment,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, UpstreamError> {
        if let (true, Some(var)) = (deployment.missing_credentials(), &deployment.api_key_env) {
            return Err(UpstreamError::MissingCredentials {
                deployment: deployment.name.clone(),
                var: var.clone(),
            });
        }
        let Some(client) = self.clients.get(&deployment.name) else {
            return Err(UpstreamError::Failed {
                deployment: deployment.name.clone(),
                detail: "no client for this deployment".to_owned(),
            });
        };
        let after = deployment.timeouts.first_byte;
        match tokio::time::timeout(after, client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout {
                deployment: deployment.name.clone(),
                after,
            }),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect {
                deployment: deployment.name.clone(),
                detail: error_chain(&e),
            }),
            Ok(Err(e)) => Err(UpstreamError::Failed {
                deployment: deployment.name.clone(),
                detail: error_chain(&e),
            }),
        }
    }
}

/// The error with its sources, for logs. Upstream errors never contain our credentials: those are only in
/// request headers, which hyper does not put in error messages.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_opens_after_consecutive_failures_and_closes_on_success() {
        let upstream = Upstream {
            clients: Arc::default(),
            health: Arc::default(),
        };
        for _ in 0..OPEN_AFTER - 1 {
            upstream.record("a", false);
        }
        assert!(upstream.unhealthy().is_empty(), "not yet");
        upstream.record("a", true);
        for _ in 0..OPEN_AFTER - 1 {
            upstream.record("a", false);
        }
        assert!(upstream.unhealthy().is_empty(), "a success resets the count");
        upstream.record("a", false);
        assert!(upstream.unhealthy().contains("a"));
        upstream.record("a", true);
        assert!(upstream.unhealthy().is_empty());
    }
}
