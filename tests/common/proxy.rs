//! Starts Switchyard in-process, exactly as the binary does (`server::build_state` + `server::serve` on a bound
//! listener), against a mock upstream and either a temporary SQLite file or a fresh database on the real
//! Postgres (`SWITCHYARD_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`).

use std::collections::HashMap;
use std::path::Path;

use switchyard::config::Config;
use switchyard::state::AppState;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The upstream key the mock expects and the proxy's config sends.
pub const UPSTREAM_KEY: &str = "sk-upstream-test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub fn pg_base() -> String {
    std::env::var("SWITCHYARD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Creates an empty database on the test Postgres and returns its URL.
pub async fn fresh_pg_database() -> (String, String) {
    use sqlx::Connection;
    let name = format!("sy_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base()))
        .await
        .expect("the test Postgres must be reachable (is it running? see scripts/test.sh)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    (format!("{}/{name}", pg_base()), name)
}

pub async fn drop_pg_database(name: &str) {
    use sqlx::Connection;
    if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base())).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

/// A catalogue on one mock: two OpenAI-kind chat models, an Anthropic model, an embedding model, and a model
/// whose first deployment is dead so the fallback is used.
pub fn config_yaml(upstream: &str) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
admin_key: env:TEST_ADMIN_KEY
policies_dir: tests/fixtures/policies
# Most tests route without the classifier (faster start-up); tests/classified_routing.rs turns it on.
classifier: {{ enabled: false }}
server:
  max_body_bytes: 65536
  shutdown_grace: 10s
deployments:
  mock-openai:
    kind: openai
    base_url: {upstream}/v1
    api_key: env:TEST_UPSTREAM_KEY
    timeouts: {{ connect: 1s, first_byte: 2s, total: 10s }}
  mock-anthropic:
    kind: anthropic
    base_url: {upstream}/v1
    api_key: env:TEST_UPSTREAM_KEY
    timeouts: {{ connect: 1s, first_byte: 2s, total: 10s }}
  dead:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    api_key: env:TEST_UPSTREAM_KEY
    timeouts: {{ connect: 500ms, first_byte: 1s, total: 2s }}
  azure:
    kind: openai
    base_url: {upstream}/openai/deployments/gpt-4o-eu
    api_key: env:TEST_UPSTREAM_KEY
    azure_api_version: "2024-10-21"
  unconfigured:
    kind: openai
    base_url: {upstream}/v1
    api_key: env:TEST_NOT_SET
models:
  - name: small
    deployments: [mock-openai]
    upstream_model: small-upstream-id
    price: {{ input: "0.15", output: "0.60", cached_input: "0.075" }}
    quality: 0.6
    context_window: 128000
    capabilities: [tools, json_mode]
  - name: big
    deployments: [mock-openai]
    price: {{ input: "2.50", output: "10.00", cached_input: "1.25" }}
    quality: 0.9
    context_window: 128000
    capabilities: [tools, vision, json_mode]
  - name: claude
    deployments: [mock-anthropic]
    upstream_model: claude-sonnet-upstream
    price: {{ input: "3.00", output: "15.00", cached_input: "0.30" }}
    quality: 0.92
    context_window: 200000
    capabilities: [tools, vision]
  - name: embed
    deployments: [mock-openai]
    price: {{ input: "0.02", output: "0" }}
    capabilities: [embeddings]
  - name: fallback
    deployments: [dead, mock-openai]
    price: {{ input: "1", output: "2" }}
  - name: azure-gpt-4o
    deployments: [azure]
    price: {{ input: "2.50", output: "10.00" }}
  - name: nokey
    deployments: [unconfigured]
    price: {{ input: "1", output: "2" }}
  - name: slow
    deployments: [mock-openai]
    # The mock reads behaviour from model-name suffixes: 400 pieces, 10 ms apart.
    upstream_model: slow-n400-cd10
    price: {{ input: "1", output: "2" }}
"#
    )
}

pub fn test_env() -> HashMap<String, String> {
    HashMap::from([
        ("TEST_UPSTREAM_KEY".to_owned(), UPSTREAM_KEY.to_owned()),
        ("TEST_ADMIN_KEY".to_owned(), "admin-secret".to_owned()),
    ])
}

pub struct TestProxy {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// A key for user `alice` in team `engineering`.
    pub key: String,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    pg_db: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestProxy {
    pub async fn start(upstream_url: &str, db: Db) -> TestProxy {
        Self::start_with(&config_yaml(upstream_url), db).await
    }

    pub async fn start_with(yaml: &str, db: Db) -> TestProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::from_yaml(yaml, "test.yaml", Path::new("."), &test_env())
            .unwrap_or_else(|e| panic!("{e}"));
        config.data_dir = dir.path().to_owned();
        config.ledger.spool_dir = dir.path().join("spool");
        let pg_db = match db {
            Db::Sqlite => {
                config.database_url = format!("sqlite://{}?mode=rwc", dir.path().join("sy.sqlite").display());
                None
            }
            Db::Postgres => {
                let (url, name) = fresh_pg_database().await;
                config.database_url = url;
                Some(name)
            }
        };
        let state = switchyard::server::build_state(config).await.expect("state");
        let key = state
            .store
            .create_key("alice", "engineering", None)
            .await
            .expect("key")
            .plaintext;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(switchyard::server::serve(state.clone(), listener, async {
            let _ = rx.await;
        }));
        TestProxy {
            url,
            key,
            state,
            shutdown: Some(tx),
            handle: Some(handle),
            pg_db,
            _dir: dir,
        }
    }

    /// A mock upstream that checks the deployment key, and a proxy in front of it.
    pub async fn with_mock(db: Db) -> (super::mock::MockUpstream, TestProxy) {
        let upstream = super::mock::MockUpstream::builder()
            .api_key(UPSTREAM_KEY)
            .start()
            .await;
        let proxy = TestProxy::start(&upstream.url(), db).await;
        (upstream, proxy)
    }

    /// POSTs JSON to `path` with this proxy's key.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> super::client::HttpResponse {
        super::client::post_json(
            &format!("{}{path}", self.url),
            &[("authorization", &self.auth())],
            body,
        )
        .await
    }

    /// The metrics text once `ready` holds for it, or as it is after 5 s. Rows that need a local token count
    /// are recorded from the blocking pool, a moment after the response ends.
    pub async fn metrics_when(&self, ready: impl Fn(&str) -> bool) -> String {
        for _ in 0..200 {
            let text = self.state.metrics.render();
            if ready(&text) {
                return text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        self.state.metrics.render()
    }

    pub fn auth(&self) -> String {
        format!("Bearer {}", self.key)
    }

    /// Signals a graceful shutdown and returns the server task so a test can wait for it.
    pub fn begin_shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().expect("server task")
    }

    pub async fn stop(mut self) {
        let handle = self.begin_shutdown();
        handle.await.expect("server task").expect("server result");
        if let Some(name) = self.pg_db.take() {
            self.state.store.close().await;
            drop_pg_database(&name).await;
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
