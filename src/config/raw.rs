//! Stage one of configuration: the YAML file exactly as written, with `deny_unknown_fields` everywhere so a
//! typo is an error rather than a silently ignored setting. Stage two (`super::validate`) turns this into the
//! domain types the proxy uses.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `host:port` to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    pub tls: Option<RawTls>,
    /// `postgres://…` or `sqlite://path`; the embedded SQLite file under `data_dir` when absent.
    pub database_url: Option<String>,
    /// Folder for the embedded database, the ledger spool and classifier files.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `env:VAR` reference to the key that guards the admin endpoints.
    pub admin_key: Option<String>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default = "default_policies_dir")]
    pub policies_dir: PathBuf,
    #[serde(default)]
    pub deployments: BTreeMap<String, RawDeployment>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    /// The date the catalogue's prices were taken (`YYYY-MM-DD`), shown by `/v1/models` and `config check`.
    pub prices_as_of: Option<String>,
    /// Classifier settings; parsed by the classifier module.
    #[serde(default)]
    pub classifier: serde_yaml_ng::Value,
    #[serde(default)]
    pub ledger: RawLedger,
    #[serde(default)]
    pub log: RawLog,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".data")
}

fn default_policies_dir() -> PathBuf {
    PathBuf::from("policies")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long in-flight requests and streams may take to finish after a shutdown signal.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            max_body_bytes: default_max_body_bytes(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    /// `openai` (OpenAI and every compatible server) or `anthropic`.
    pub kind: String,
    /// Up to and including the API version segment, e.g. `https://api.openai.com/v1`,
    /// `https://api.anthropic.com/v1`, or an Azure deployment URL `https://R.openai.azure.com/openai/deployments/D`.
    pub base_url: String,
    /// `env:VAR`; absent for servers without authentication (Ollama, vLLM).
    pub api_key: Option<String>,
    /// Azure OpenAI: the `api-version` query parameter; switches to the `api-key` header.
    pub azure_api_version: Option<String>,
    /// Anthropic: the `anthropic-version` header.
    pub anthropic_version: Option<String>,
    /// Extra headers sent upstream (values may be `env:VAR`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Present for model servers on the company's own hardware.
    pub local: Option<RawLocal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default = "default_connect", with = "humantime_serde")]
    pub connect: Duration,
    /// Until the response head arrives; for streams also the longest pause between two chunks.
    #[serde(default = "default_first_byte", with = "humantime_serde")]
    pub first_byte: Duration,
    /// Whole non-streamed response.
    #[serde(default = "default_total", with = "humantime_serde")]
    pub total: Duration,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        RawTimeouts {
            connect: default_connect(),
            first_byte: default_first_byte(),
            total: default_total(),
        }
    }
}

fn default_connect() -> Duration {
    Duration::from_secs(5)
}

fn default_first_byte() -> Duration {
    Duration::from_secs(60)
}

fn default_total() -> Duration {
    Duration::from_secs(600)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    /// How loaded models are discovered: `ollama` (its `/api/ps`) or `none`.
    #[serde(default = "default_probe")]
    pub probe: String,
    /// Probe URL override; defaults to the deployment's base URL without `/v1`.
    pub probe_url: Option<String>,
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub probe_interval: Duration,
}

fn default_probe() -> String {
    "ollama".to_owned()
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    /// Deployment names, in order of preference.
    pub deployments: Vec<String>,
    /// The provider's model id; defaults to `name`.
    pub upstream_model: Option<String>,
    /// USD per million tokens. Required unless `local: true`.
    pub price: Option<RawPrice>,
    /// In [0, 1]; where it came from goes in `quality_source`.
    pub quality: Option<f64>,
    pub quality_source: Option<String>,
    pub context_window: Option<u32>,
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Typical time to first token, for tie-breaks between equally cheap models.
    #[serde(default, with = "humantime_serde::option")]
    pub latency: Option<Duration>,
    #[serde(default)]
    pub local: bool,
    /// Internal cost of a local model (USD per million tokens), counted against the local budget dimension.
    pub internal_cost: Option<RawPrice>,
    /// Expected time to load a local model that is not in memory.
    #[serde(default, with = "humantime_serde::option")]
    pub load_time: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input: Decimal,
    pub output: Decimal,
    /// Cached-input price; the input price when absent.
    pub cached_input: Option<Decimal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    /// `false` writes no spend rows at all (budgets are still enforced through their own counters); for
    /// benchmarks and deployments that keep spend elsewhere.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Longest a finished request's row waits before it is written.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Rows held in memory before new ones go straight to the spool file.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Spool folder for rows written while the database is unreachable; `data_dir/spool` when absent.
    pub spool_dir: Option<PathBuf>,
}

impl Default for RawLedger {
    fn default() -> Self {
        RawLedger {
            enabled: true,
            flush_interval: default_flush_interval(),
            max_batch: default_max_batch(),
            queue_capacity: default_queue_capacity(),
            spool_dir: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_flush_interval() -> Duration {
    Duration::from_millis(100)
}

fn default_max_batch() -> usize {
    1000
}

fn default_queue_capacity() -> usize {
    100_000
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// Log prompts in the per-request line. Off by default: prompts are often confidential.
    #[serde(default)]
    pub prompts: bool,
}
