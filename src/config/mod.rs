//! Configuration: YAML → [`raw::RawConfig`] → validated [`Config`].
//!
//! Validation collects **every** problem with its key path before failing, so an admin fixes a file in one pass.
//! Secrets are referenced as `env:VAR` and resolved here; they are held in [`Secret`], whose `Debug` never
//! prints the value.

pub mod raw;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rust_decimal::Decimal;

use self::raw::{RawConfig, RawDeployment, RawModel, RawPrice};

/// A credential. Deliberately has no `Display` and a redacting `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// One configuration problem, located by key path (`models[3].price.input`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{} problem(s) in {}:\n{}", .issues.len(), .file, format_issues(.issues))]
    Invalid { file: String, issues: Vec<ConfigIssue> },
}

fn format_issues(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub total: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalProbe {
    Ollama,
    None,
}

#[derive(Debug, Clone)]
pub struct LocalSettings {
    pub probe: LocalProbe,
    pub probe_url: String,
    pub probe_interval: Duration,
}

/// One provider endpoint with its credentials.
#[derive(Debug)]
pub struct Deployment {
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// The header that carries `api_key` upstream (`authorization: Bearer …`, Azure's `api-key`, Anthropic's
    /// `x-api-key`), built once at load and marked sensitive, so a request only clones it.
    pub credential: Option<(HeaderName, HeaderValue)>,
    /// The variable the key was expected in, for "set OPENAI_API_KEY" hints when it is missing.
    pub api_key_env: Option<String>,
    pub azure_api_version: Option<String>,
    pub anthropic_version: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeouts: Timeouts,
    pub local: Option<LocalSettings>,
}

impl Deployment {
    /// A deployment that names a key variable that is not set cannot serve; routing treats it as unhealthy.
    pub fn missing_credentials(&self) -> bool {
        self.api_key_env.is_some() && self.api_key.is_none()
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: Decimal,
    pub output: Decimal,
    pub cached_input: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Tools,
    Vision,
    JsonMode,
    Reasoning,
    Embeddings,
}

impl Capability {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tools" => Some(Capability::Tools),
            "vision" => Some(Capability::Vision),
            "json_mode" => Some(Capability::JsonMode),
            "reasoning" => Some(Capability::Reasoning),
            "embeddings" => Some(Capability::Embeddings),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Tools => "tools",
            Capability::Vision => "vision",
            Capability::JsonMode => "json_mode",
            Capability::Reasoning => "reasoning",
            Capability::Embeddings => "embeddings",
        }
    }
}

/// One model in the catalogue.
#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub deployments: Vec<Arc<Deployment>>,
    pub upstream_model: String,
    /// What the caller is charged. For local models this is the internal cost (zero when none is configured).
    pub price: Price,
    pub quality: f64,
    pub quality_source: Option<String>,
    pub context_window: u32,
    pub max_output_tokens: Option<u32>,
    pub capabilities: BTreeSet<Capability>,
    pub latency: Option<Duration>,
    pub local: bool,
    pub load_time: Option<Duration>,
}

impl Model {
    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    pub fn provider(&self) -> ProviderKind {
        self.deployments.first().map_or(ProviderKind::OpenAi, |d| d.kind)
    }
}

/// The models Switchyard may call, with prices and quality.
#[derive(Debug, Default)]
pub struct Catalogue {
    pub models: Vec<Arc<Model>>,
    by_name: HashMap<String, usize>,
    pub prices_as_of: Option<String>,
}

impl Catalogue {
    pub fn new(models: Vec<Arc<Model>>, prices_as_of: Option<String>) -> Self {
        let by_name = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        Catalogue {
            models,
            by_name,
            prices_as_of,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Model>> {
        self.by_name.get(name).map(|&i| &self.models[i])
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// When false no rows are written; see `RawLedger::enabled`.
    pub enabled: bool,
    pub flush_interval: Duration,
    pub max_batch: usize,
    pub queue_capacity: usize,
    pub spool_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub prompts: bool,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub admin_key: Option<Secret>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub policies_dir: PathBuf,
    pub deployments: BTreeMap<String, Arc<Deployment>>,
    pub catalogue: Arc<Catalogue>,
    pub classifier: crate::classify::ClassifierSettings,
    pub ledger: LedgerSettings,
    pub log: LogSettings,
}

/// Where secrets come from: the process environment in production, a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Config {
    /// Reads, parses and validates a config file, then applies the environment overrides
    /// (`DATABASE_URL`, `SWITCHYARD_LISTEN`).
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_yaml(&text, &path.display().to_string(), base, env)
    }

    /// Parses YAML text. Relative paths in the file are resolved against `base` (the file's folder) only when
    /// they exist there; otherwise against the working directory, so `switchyard serve` from the repository
    /// root and tests in temporary folders both work.
    pub fn from_yaml(text: &str, file: &str, base: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let location = inner
                .location()
                .map(|l| format!(" (line {}, column {})", l.line(), l.column()));
            ConfigError::Parse {
                path: format!("{file}: {}", if path == "." { "<root>".to_owned() } else { path }),
                message: format!("{inner}{}", location.unwrap_or_default()),
            }
        })?;
        let mut config = validate(raw, base, env).map_err(|issues| ConfigError::Invalid {
            file: file.to_owned(),
            issues,
        })?;
        if let Some(url) = env.var("DATABASE_URL") {
            config.database_url = url;
        }
        if let Some(listen) = env.var("SWITCHYARD_LISTEN") {
            config.listen = listen.parse().map_err(|_| ConfigError::Invalid {
                file: "environment".to_owned(),
                issues: vec![ConfigIssue {
                    path: "SWITCHYARD_LISTEN".to_owned(),
                    message: format!("`{listen}` is not a socket address such as 127.0.0.1:8080"),
                }],
            })?;
        }
        Ok(config)
    }
}

struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Resolves `env:VAR` (the only accepted form for secrets: keys never sit in a file that may reach git).
fn resolve_secret(
    value: &str,
    path: &str,
    env: &dyn Env,
    issues: &mut Issues,
) -> (Option<Secret>, Option<String>) {
    match value.strip_prefix("env:") {
        Some(var) if !var.is_empty() => (env.var(var).map(Secret), Some(var.to_owned())),
        _ => {
            issues.push(path, "secrets must be given as `env:VARIABLE_NAME`, never inline");
            (None, None)
        }
    }
}

fn validate(raw: RawConfig, base: &Path, env: &dyn Env) -> Result<Config, Vec<ConfigIssue>> {
    let mut issues = Issues(Vec::new());

    let listen = match raw.listen.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            issues.push(
                "listen",
                format!("`{}` is not a socket address such as 127.0.0.1:8080", raw.listen),
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        }
    };

    let tls = raw.tls.map(|t| {
        let cert = resolve_path(base, &t.cert);
        let key = resolve_path(base, &t.key);
        if !cert.exists() {
            issues.push("tls.cert", format!("file {} does not exist", cert.display()));
        }
        if !key.exists() {
            issues.push("tls.key", format!("file {} does not exist", key.display()));
        }
        TlsFiles { cert, key }
    });

    let data_dir = raw.data_dir.clone();
    let database_url = match raw.database_url {
        Some(url)
            if url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:") =>
        {
            url
        }
        Some(url) => {
            issues.push(
                "database_url",
                format!("`{}` must start with postgres:// or sqlite:", redact_url(&url)),
            );
            url
        }
        None => format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("switchyard.sqlite").display()
        ),
    };

    let admin_key = raw.admin_key.as_deref().and_then(|v| {
        let (secret, _) = resolve_secret(v, "admin_key", env, &mut issues);
        secret
    });

    if raw.server.max_body_bytes < 1024 {
        issues.push("server.max_body_bytes", "must be at least 1024 bytes");
    }

    let mut deployments = BTreeMap::new();
    for (name, d) in raw.deployments {
        if let Some(dep) = validate_deployment(&name, d, env, &mut issues) {
            deployments.insert(name, Arc::new(dep));
        }
    }

    let mut models = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, m) in raw.models.into_iter().enumerate() {
        let path = format!("models[{i}]");
        if !seen.insert(m.name.clone()) {
            issues.push(
                format!("{path}.name"),
                format!("model `{}` is defined twice", m.name),
            );
            continue;
        }
        if let Some(model) = validate_model(&path, m, &deployments, &mut issues) {
            models.push(Arc::new(model));
        }
    }
    if models.is_empty() {
        issues.push("models", "the catalogue is empty: define at least one model");
    }
    if let Some(date) = &raw.prices_as_of
        && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err()
    {
        issues.push(
            "prices_as_of",
            format!("`{date}` is not a date in YYYY-MM-DD form"),
        );
    }

    let format = match raw.log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            issues.push("log.format", format!("`{other}` is not one of text, json"));
            LogFormat::Text
        }
    };
    if raw.ledger.max_batch == 0 || raw.ledger.max_batch > 10_000 {
        issues.push("ledger.max_batch", "must be between 1 and 10000");
    }
    if raw.ledger.queue_capacity < raw.ledger.max_batch {
        issues.push("ledger.queue_capacity", "must be at least ledger.max_batch");
    }

    let classifier_value = match raw.classifier {
        // An absent or empty section means every default.
        serde_yaml_ng::Value::Null => serde_yaml_ng::Value::Mapping(serde_yaml_ng::Mapping::new()),
        other => other,
    };
    let classifier = match serde_yaml_ng::from_value::<crate::classify::ClassifierSettings>(classifier_value)
    {
        Ok(settings) => settings,
        Err(e) => {
            issues.push("classifier", e.to_string());
            crate::classify::ClassifierSettings::default()
        }
    };

    if !issues.0.is_empty() {
        return Err(issues.0);
    }
    let spool_dir = raw.ledger.spool_dir.unwrap_or_else(|| data_dir.join("spool"));
    Ok(Config {
        listen,
        tls,
        database_url,
        data_dir,
        admin_key,
        max_body_bytes: raw.server.max_body_bytes,
        shutdown_grace: raw.server.shutdown_grace,
        policies_dir: resolve_path(base, &raw.policies_dir),
        deployments,
        catalogue: Arc::new(Catalogue::new(models, raw.prices_as_of)),
        classifier,
        ledger: LedgerSettings {
            enabled: raw.ledger.enabled,
            flush_interval: raw.ledger.flush_interval,
            max_batch: raw.ledger.max_batch,
            queue_capacity: raw.ledger.queue_capacity,
            spool_dir,
        },
        log: LogSettings {
            format,
            prompts: raw.log.prompts,
        },
    })
}

/// Keeps credentials in a database URL out of error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://[redacted]@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    let beside = base.join(path);
    if beside.exists() { beside } else { path.to_owned() }
}

fn validate_deployment(
    name: &str,
    d: RawDeployment,
    env: &dyn Env,
    issues: &mut Issues,
) -> Option<Deployment> {
    let path = format!("deployments.{name}");
    let kind = match d.kind.as_str() {
        "openai" => ProviderKind::OpenAi,
        "anthropic" => ProviderKind::Anthropic,
        other => {
            issues.push(
                format!("{path}.kind"),
                format!("`{other}` is not one of openai, anthropic"),
            );
            return None;
        }
    };
    let base_url = d.base_url.trim_end_matches('/').to_owned();
    match base_url.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
        _ => issues.push(
            format!("{path}.base_url"),
            format!("`{base_url}` is not an http(s) URL"),
        ),
    }
    let (api_key, api_key_env) = match d.api_key.as_deref() {
        Some(v) => resolve_secret(v, &format!("{path}.api_key"), env, issues),
        None => (None, None),
    };
    let mut headers = Vec::new();
    for (k, v) in &d.headers {
        let value = if v.starts_with("env:") {
            resolve_secret(v, &format!("{path}.headers.{k}"), env, issues)
                .0
                .map(|s| s.0)
        } else {
            Some(v.clone())
        };
        match (HeaderName::try_from(k.as_str()), value.map(HeaderValue::try_from)) {
            (Ok(name), Some(Ok(mut value))) => {
                value.set_sensitive(true);
                headers.push((name, value));
            }
            (Err(_), _) => issues.push(format!("{path}.headers.{k}"), "not a valid header name"),
            (_, Some(Err(_))) => issues.push(format!("{path}.headers.{k}"), "not a valid header value"),
            (Ok(_), None) => {}
        }
    }
    let local = d.local.map(|l| {
        let probe = match l.probe.as_str() {
            "ollama" => LocalProbe::Ollama,
            "none" => LocalProbe::None,
            other => {
                issues.push(
                    format!("{path}.local.probe"),
                    format!("`{other}` is not one of ollama, none"),
                );
                LocalProbe::None
            }
        };
        let probe_url = l
            .probe_url
            .unwrap_or_else(|| base_url.trim_end_matches("/v1").to_owned());
        LocalSettings {
            probe,
            probe_url,
            probe_interval: l.probe_interval,
        }
    });
    let credential = api_key.as_ref().and_then(|key| {
        let (name, value) = match (kind, d.azure_api_version.is_some()) {
            (ProviderKind::Anthropic, _) => ("x-api-key", key.expose().to_owned()),
            (ProviderKind::OpenAi, true) => ("api-key", key.expose().to_owned()),
            (ProviderKind::OpenAi, false) => ("authorization", format!("Bearer {}", key.expose())),
        };
        match HeaderValue::try_from(value) {
            Ok(mut value) => {
                value.set_sensitive(true);
                Some((HeaderName::from_static(name), value))
            }
            Err(_) => {
                // The key itself is never echoed.
                issues.push(
                    format!("{path}.api_key"),
                    "the key holds characters an HTTP header cannot carry",
                );
                None
            }
        }
    });
    if d.azure_api_version.is_some() && kind != ProviderKind::OpenAi {
        issues.push(
            format!("{path}.azure_api_version"),
            "only applies to kind: openai",
        );
    }
    Some(Deployment {
        name: name.to_owned(),
        kind,
        base_url,
        api_key,
        credential,
        api_key_env,
        azure_api_version: d.azure_api_version,
        anthropic_version: d.anthropic_version.unwrap_or_else(|| "2023-06-01".to_owned()),
        headers,
        timeouts: Timeouts {
            connect: d.timeouts.connect,
            first_byte: d.timeouts.first_byte,
            total: d.timeouts.total,
        },
        local,
    })
}

fn validate_price(path: &str, p: &RawPrice, issues: &mut Issues) -> Price {
    for (field, v) in [
        ("input", Some(p.input)),
        ("output", Some(p.output)),
        ("cached_input", p.cached_input),
    ] {
        if let Some(v) = v
            && v.is_sign_negative()
        {
            issues.push(format!("{path}.{field}"), "a price cannot be negative");
        }
    }
    Price {
        input: p.input,
        output: p.output,
        cached_input: p.cached_input.unwrap_or(p.input),
    }
}

fn validate_model(
    path: &str,
    m: RawModel,
    deployments: &BTreeMap<String, Arc<Deployment>>,
    issues: &mut Issues,
) -> Option<Model> {
    if m.name.is_empty() || m.name.chars().any(|c| c.is_whitespace()) {
        issues.push(
            format!("{path}.name"),
            "a model name must be non-empty and contain no spaces",
        );
    }
    let mut deps = Vec::new();
    if m.deployments.is_empty() {
        issues.push(format!("{path}.deployments"), "name at least one deployment");
    }
    for (j, d) in m.deployments.iter().enumerate() {
        match deployments.get(d) {
            Some(dep) => deps.push(dep.clone()),
            None => issues.push(
                format!("{path}.deployments[{j}]"),
                format!("no deployment named `{d}`"),
            ),
        }
    }
    let price = match (&m.price, m.local, &m.internal_cost) {
        (Some(p), false, None) => validate_price(&format!("{path}.price"), p, issues),
        (None, false, _) => {
            // Unpriced models are refused here rather than charged as $0 later.
            issues.push(
                format!("{path}.price"),
                "every non-local model needs a price (USD per million tokens)",
            );
            return None;
        }
        (_, false, Some(_)) => {
            issues.push(
                format!("{path}.internal_cost"),
                "internal_cost only applies to local: true models",
            );
            return None;
        }
        (Some(_), true, _) => {
            issues.push(
                format!("{path}.price"),
                "a local model has no API price: use internal_cost",
            );
            return None;
        }
        (None, true, Some(p)) => validate_price(&format!("{path}.internal_cost"), p, issues),
        (None, true, None) => Price {
            input: Decimal::ZERO,
            output: Decimal::ZERO,
            cached_input: Decimal::ZERO,
        },
    };
    let quality = m.quality.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&quality) {
        issues.push(format!("{path}.quality"), "must be between 0 and 1");
    }
    let mut capabilities = BTreeSet::new();
    for (j, c) in m.capabilities.iter().enumerate() {
        match Capability::parse(c) {
            Some(c) => {
                capabilities.insert(c);
            }
            None => issues.push(
                format!("{path}.capabilities[{j}]"),
                format!("`{c}` is not one of tools, vision, json_mode, reasoning, embeddings"),
            ),
        }
    }
    if m.local && deps.iter().any(|d| d.local.is_none()) {
        issues.push(
            format!("{path}.local"),
            "a local model must be served by deployments with a `local:` section",
        );
    }
    Some(Model {
        upstream_model: m.upstream_model.unwrap_or_else(|| m.name.clone()),
        name: m.name,
        deployments: deps,
        price,
        quality,
        quality_source: m.quality_source,
        context_window: m.context_window.unwrap_or(8192),
        max_output_tokens: m.max_output_tokens,
        capabilities,
        latency: m.latency,
        local: m.local,
        load_time: m.load_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([("OPENAI_API_KEY".to_owned(), "sk-test".to_owned())])
    }

    const GOOD: &str = r#"
listen: 127.0.0.1:9000
deployments:
  openai: { kind: openai, base_url: "https://api.openai.com/v1/", api_key: "env:OPENAI_API_KEY" }
models:
  - name: gpt-4o-mini
    deployments: [openai]
    price: { input: "0.15", output: "0.60" }
    quality: 0.7
"#;

    #[test]
    fn good_config_validates() {
        let c = Config::from_yaml(GOOD, "t.yaml", Path::new("."), &env()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        let m = c.catalogue.get("gpt-4o-mini").unwrap();
        assert_eq!(m.price.cached_input, m.price.input);
        assert_eq!(m.deployments[0].base_url, "https://api.openai.com/v1");
        assert_eq!(m.deployments[0].api_key.as_ref().unwrap().expose(), "sk-test");
        assert!(c.database_url.starts_with("sqlite://"));
    }

    #[test]
    fn all_problems_are_reported_together_with_paths() {
        let text = r#"
listen: nowhere
deployments:
  a: { kind: bedrock, base_url: "x" }
  b: { kind: openai, base_url: "http://h", api_key: "sk-inline" }
models:
  - { name: m1, deployments: [zzz], price: { input: 1, output: 1 } }
  - { name: m2, deployments: [b] }
"#;
        let Err(ConfigError::Invalid { issues, .. }) = Config::from_yaml(text, "t", Path::new("."), &env())
        else {
            panic!("expected validation issues");
        };
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"listen"), "{paths:?}");
        assert!(paths.contains(&"deployments.a.kind"), "{paths:?}");
        assert!(paths.contains(&"deployments.b.api_key"), "{paths:?}");
        assert!(paths.contains(&"models[0].deployments[0]"), "{paths:?}");
        assert!(paths.contains(&"models[1].price"), "{paths:?}");
        // The inline secret must not be echoed back.
        assert!(!issues.iter().any(|i| i.message.contains("sk-inline")));
    }

    #[test]
    fn unknown_fields_are_rejected_with_a_path() {
        let text = GOOD.replace("quality: 0.7", "quality: 0.7\n    qualty: 0.9");
        let err = Config::from_yaml(&text, "t.yaml", Path::new("."), &env())
            .unwrap_err()
            .to_string();
        assert!(err.contains("qualty"), "{err}");
        assert!(err.contains("models[0]"), "{err}");
    }

    #[test]
    fn environment_overrides_main_settings() {
        let mut e = env();
        e.insert("DATABASE_URL".into(), "postgres://u:pw@localhost/db".into());
        e.insert("SWITCHYARD_LISTEN".into(), "0.0.0.0:7000".into());
        let c = Config::from_yaml(GOOD, "t", Path::new("."), &e).unwrap();
        assert_eq!(c.database_url, "postgres://u:pw@localhost/db");
        assert_eq!(c.listen.port(), 7000);
    }

    #[test]
    fn missing_key_variable_marks_deployment_unusable() {
        let c = Config::from_yaml(GOOD, "t", Path::new("."), &HashMap::new()).unwrap();
        assert!(c.deployments["openai"].missing_credentials());
        assert!(format!("{:?}", c.deployments["openai"]).contains("OPENAI_API_KEY"));
    }

    #[test]
    fn each_kind_sends_its_key_in_its_own_header_built_at_load() {
        let text = r#"
deployments:
  openai: { kind: openai, base_url: "https://api.openai.com/v1", api_key: "env:KEY" }
  azure: { kind: openai, base_url: "https://x.openai.azure.com/openai/deployments/d", api_key: "env:KEY",
           azure_api_version: "2024-10-21" }
  anthropic: { kind: anthropic, base_url: "https://api.anthropic.com/v1", api_key: "env:KEY" }
  local: { kind: openai, base_url: "http://127.0.0.1:11434/v1" }
models:
  - { name: m, deployments: [openai, azure, anthropic, local], price: { input: 1, output: 1 } }
"#;
        let e = HashMap::from([("KEY".to_owned(), "sk-abc".to_owned())]);
        let c = Config::from_yaml(text, "t", Path::new("."), &e).unwrap();
        let header = |d: &str| {
            c.deployments[d].credential.as_ref().map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap().to_owned(),
                    value.is_sensitive(),
                )
            })
        };
        assert_eq!(
            header("openai"),
            Some(("authorization".into(), "Bearer sk-abc".into(), true))
        );
        assert_eq!(header("azure"), Some(("api-key".into(), "sk-abc".into(), true)));
        assert_eq!(
            header("anthropic"),
            Some(("x-api-key".into(), "sk-abc".into(), true))
        );
        assert_eq!(header("local"), None);
        assert!(
            !format!("{:?}", c.deployments["openai"]).contains("sk-abc"),
            "debug prints hide the key"
        );

        // A key no header can carry is a load error at its path (it used to be a 500 on every request), and the
        // key is not echoed.
        let e = HashMap::from([("KEY".to_owned(), "sk-abc\nInjected: 1".to_owned())]);
        let Err(ConfigError::Invalid { issues, .. }) = Config::from_yaml(text, "t", Path::new("."), &e)
        else {
            panic!("expected validation issues");
        };
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "deployments.anthropic.api_key",
                "deployments.azure.api_key",
                "deployments.openai.api_key"
            ]
        );
        assert!(!issues.iter().any(|i| i.message.contains("sk-abc")), "{issues:?}");
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("sk-live-123")), "Secret([redacted])");
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://[redacted]@h/db");
    }
}
