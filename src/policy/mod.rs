//! Pipeline stage 2: team policies.
//!
//! One YAML file per team in `policies/` (the file stem is the team name) plus `default.yaml` for every team
//! without its own file. A file goes through two stages: [`raw::RawPolicy`] (serde, unknown keys rejected) and
//! [`validate`] (values checked against the catalogue; **all** problems collected with file, key path and a
//! hint). The live set sits behind an [`ArcSwap`] in [`Policies`]: a reload builds a whole new [`PolicySet`] and
//! swaps it in one store, so a request sees either the old policies or the new ones, never a mix, and a bad file
//! leaves the previous set live ([`reload`]).
//!
//! Nothing here does I/O except [`PolicySet::load_dir`] (reads the folder) and [`reload`] (the watcher).

pub mod admin;
pub mod commands;
pub mod raw;
pub mod reload;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use regex::Regex;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::config::Catalogue;

use self::raw::{RawBudgets, RawDataRule, RawPolicy, RawRoute};

/// The task types the classifier emits (its `TaskType`, as snake_case strings).
pub const TASK_TYPES: &[&str] = &[
    "code",
    "math",
    "reasoning",
    "writing",
    "qa",
    "extraction",
    "conversation",
];

/// One problem in a policy file, located by file, key path and (for syntax errors) line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyIssue {
    pub file: String,
    /// Key path such as `tasks.code.prefer[0]`; `<root>` for the whole file.
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}: {}", self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// How much quality the team buys: a named preset of the floor curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dial {
    Economy,
    Balanced,
    Quality,
}

impl Dial {
    pub fn parse(s: &str) -> Option<Dial> {
        match s {
            "economy" => Some(Dial::Economy),
            "balanced" => Some(Dial::Balanced),
            "quality" => Some(Dial::Quality),
            _ => None,
        }
    }

    /// The preset curves. Quality scores in the shipped catalogue are the Artificial Analysis Intelligence
    /// Index scaled so the best model is 1.0 (a small local model is about 0.3, a mini/flash tier model about
    /// 0.8, the frontier 0.95–1.0). `economy` lets easy work go to the smallest models and asks for a mini-tier
    /// model only for the hardest queries; `balanced` reaches the frontier tier only for the hardest queries;
    /// `quality` never goes below a mid-tier model.
    pub fn curve(self) -> FloorCurve {
        let points: &[(f64, f64)] = match self {
            Dial::Economy => &[(0.0, 0.0), (0.5, 0.60), (0.8, 0.78), (1.0, 0.85)],
            Dial::Balanced => &[(0.0, 0.30), (0.3, 0.60), (0.6, 0.78), (0.85, 0.87), (1.0, 0.95)],
            Dial::Quality => &[(0.0, 0.60), (0.3, 0.78), (0.6, 0.87), (1.0, 0.95)],
        };
        FloorCurve {
            points: points.to_vec(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dial::Economy => "economy",
            Dial::Balanced => "balanced",
            Dial::Quality => "quality",
        }
    }
}

/// Minimum quality as a function of difficulty: piecewise linear through points sorted by difficulty, with
/// non-decreasing minimum quality. Monotonicity is what makes "a harder query never gets a worse model" hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FloorCurve {
    points: Vec<(f64, f64)>,
}

impl FloorCurve {
    /// Points must be validated first (see [`validate`]); an empty curve means no floor.
    pub fn new(points: Vec<(f64, f64)>) -> Self {
        FloorCurve { points }
    }

    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    pub fn at(&self, difficulty: f64) -> f64 {
        let d = if difficulty.is_nan() {
            1.0
        } else {
            difficulty.clamp(0.0, 1.0)
        };
        let Some(&(first_d, first_q)) = self.points.first() else {
            return 0.0;
        };
        if d <= first_d {
            return first_q;
        }
        for w in self.points.windows(2) {
            let ((d0, q0), (d1, q1)) = (w[0], w[1]);
            if d <= d1 {
                if d1 <= d0 {
                    return q1;
                }
                return q0 + (q1 - q0) * (d - d0) / (d1 - d0);
            }
        }
        self.points.last().map_or(0.0, |p| p.1)
    }
}

/// What a request that names a catalogue model gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedModels {
    /// Used as asked, if the policy allows it.
    Honour,
    /// Routed like `auto`; the named model becomes the savings baseline.
    Route,
    /// Refused: this team must use `auto` or an alias.
    Deny,
}

/// A model name or a `*` glob (`claude-*`, `*-mini`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ModelPattern(String);

impl ModelPattern {
    pub fn new(p: impl Into<String>) -> Self {
        ModelPattern(p.into())
    }

    pub fn matches(&self, name: &str) -> bool {
        glob_match(&self.0, name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskRule {
    pub min_quality: Option<f64>,
    pub prefer: Vec<String>,
}

/// An admin-defined route: requests semantically close to the examples get these preferences.
#[derive(Debug, Clone, Serialize)]
pub struct AdminRoute {
    pub name: String,
    pub examples: Vec<String>,
    /// Normalised embeddings of `examples`, filled in at load when a classifier is available. Without them the
    /// route never matches (and the admin endpoint says so).
    #[serde(skip)]
    pub embeddings: Vec<Arc<[f32]>>,
    pub threshold: f32,
    pub prefer: Vec<String>,
    pub min_quality: Option<f64>,
}

impl AdminRoute {
    /// The best cosine similarity between `embedding` (normalised) and the examples.
    pub fn similarity(&self, embedding: &[f32]) -> Option<f32> {
        self.embeddings
            .iter()
            .filter(|e| e.len() == embedding.len())
            .map(|e| e.iter().zip(embedding).map(|(a, b)| a * b).sum::<f32>())
            .max_by(f32::total_cmp)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataAction {
    /// Only local models may serve the request.
    LocalOnly,
    /// Refuse the request.
    Block,
    /// Only these models may serve the request.
    AllowOnly(BTreeSet<String>),
}

#[derive(Debug, Clone, Serialize)]
pub struct DataRule {
    pub name: String,
    pub tags: BTreeSet<String>,
    #[serde(serialize_with = "serialize_regexes")]
    pub patterns: Vec<Regex>,
    pub action: DataAction,
}

fn serialize_regexes<S: serde::Serializer>(r: &[Regex], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(r.iter().map(Regex::as_str))
}

impl DataRule {
    /// Whether the rule applies to a request with these tags and this text.
    pub fn matches(&self, tags: &BTreeSet<String>, text: Option<&str>) -> bool {
        self.tags.iter().any(|t| tags.contains(t))
            || text.is_some_and(|t| self.patterns.iter().any(|p| p.is_match(t)))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Stickiness {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocalRules {
    /// Longest a request may wait for a cold local model to load; a model whose expected load time is longer is
    /// not chosen. Zero means only loaded local models are used.
    #[serde(with = "humantime_serde")]
    pub max_swap_wait: Duration,
    pub use_local: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    Team,
    User,
    Key,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Daily,
    /// Weeks start on Monday.
    Weekly,
    /// Calendar months.
    Monthly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetMode {
    /// Refuse with 429 `budget_exceeded`.
    Hard,
    /// Alert only.
    Soft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetDimension {
    /// Spend on commercial APIs.
    Api,
    /// Internal cost of local models: counted separately, so local models neither bypass budgets nor are
    /// blocked by an exhausted API budget.
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// Refuse (hard limits) — the default.
    Block,
    /// Keep serving on local models only.
    DowngradeLocal,
    /// Keep serving on the cheapest allowed model, ignoring the quality floor.
    DowngradeCheapest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetLimit {
    pub scope: BudgetScope,
    pub period: BudgetPeriod,
    /// USD.
    pub limit: Decimal,
    pub mode: BudgetMode,
    pub dimension: BudgetDimension,
}

/// The budget section of a policy. Parsed and validated here; enforced by the budget/ledger stage.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetPolicy {
    #[serde(serialize_with = "serialize_tz")]
    pub timezone: chrono_tz::Tz,
    pub on_exhausted: OnExhausted,
    pub limits: Vec<BudgetLimit>,
}

fn serialize_tz<S: serde::Serializer>(tz: &chrono_tz::Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

impl Default for BudgetPolicy {
    fn default() -> Self {
        BudgetPolicy {
            timezone: chrono_tz::UTC,
            on_exhausted: OnExhausted::Block,
            limits: Vec::new(),
        }
    }
}

/// What to do when the classifier is unavailable or failed.
#[derive(Debug, Clone, Serialize)]
pub struct Unclassified {
    pub difficulty: f32,
    pub model: Option<String>,
}

/// One team's validated rules.
#[derive(Debug, Clone, Serialize)]
pub struct Policy {
    pub name: String,
    pub source: Option<PathBuf>,
    pub description: Option<String>,
    /// `None`: every catalogue model is allowed.
    pub allow: Option<Vec<ModelPattern>>,
    pub deny: Vec<ModelPattern>,
    /// The premium model savings are measured against.
    pub baseline_model: Option<String>,
    pub dial: Option<Dial>,
    pub floor: FloorCurve,
    pub unclassified: Unclassified,
    /// USD; applies to the expected cost of the request.
    pub max_cost_per_request: Option<Decimal>,
    pub expected_output_tokens: u64,
    /// Model names that mean "route for me".
    pub auto_names: Vec<String>,
    /// Team aliases that mean "route for me at this dial".
    pub aliases: BTreeMap<String, Dial>,
    pub named_models: NamedModels,
    pub tasks: BTreeMap<String, TaskRule>,
    pub routes: Vec<AdminRoute>,
    pub data_rules: Vec<DataRule>,
    pub stickiness: Stickiness,
    pub local: LocalRules,
    pub budgets: BudgetPolicy,
}

pub const DEFAULT_EXPECTED_OUTPUT_TOKENS: u64 = 500;
const DEFAULT_ROUTE_THRESHOLD: f32 = 0.75;

impl Default for Policy {
    /// The built-in policy used when `policies/default.yaml` is absent: honour named models, route `auto` at
    /// the balanced dial, no cost cap, no budgets.
    fn default() -> Self {
        Policy {
            name: "default".to_owned(),
            source: None,
            description: Some("built-in default".to_owned()),
            allow: None,
            deny: Vec::new(),
            baseline_model: None,
            dial: Some(Dial::Balanced),
            floor: Dial::Balanced.curve(),
            unclassified: Unclassified {
                difficulty: 0.5,
                model: None,
            },
            max_cost_per_request: None,
            expected_output_tokens: DEFAULT_EXPECTED_OUTPUT_TOKENS,
            auto_names: vec!["auto".to_owned()],
            aliases: BTreeMap::new(),
            named_models: NamedModels::Honour,
            tasks: BTreeMap::new(),
            routes: Vec::new(),
            data_rules: Vec::new(),
            stickiness: Stickiness {
                enabled: false,
                ttl: Duration::from_secs(1800),
            },
            local: LocalRules {
                max_swap_wait: Duration::from_secs(10),
                use_local: true,
            },
            budgets: BudgetPolicy::default(),
        }
    }
}

impl Policy {
    /// Whether `requested` is `auto` or a team alias.
    pub fn is_auto(&self, requested: &str) -> bool {
        self.auto_names.iter().any(|n| n == requested) || self.aliases.contains_key(requested)
    }

    /// Whether this request needs the classifier at all (a named, honoured or denied model does not).
    pub fn wants_routing(&self, requested_model: &str) -> bool {
        self.is_auto(requested_model) || self.named_models == NamedModels::Route
    }

    /// Whether the allow/deny lists let this team use `model`.
    pub fn allows(&self, model: &str) -> bool {
        let allowed = self
            .allow
            .as_ref()
            .is_none_or(|a| a.iter().any(|p| p.matches(model)));
        allowed && !self.deny.iter().any(|p| p.matches(model))
    }

    /// The floor curve for a request: an alias's dial, or the policy's own curve.
    pub fn floor_for(&self, requested: &str) -> FloorCurve {
        match self.aliases.get(requested) {
            Some(dial) => dial.curve(),
            None => self.floor.clone(),
        }
    }

    /// The first data rule that applies to a request, if any.
    pub fn data_rule(&self, tags: &BTreeSet<String>, text: Option<&str>) -> Option<&DataRule> {
        self.data_rules.iter().find(|r| r.matches(tags, text))
    }

    /// Admin routes that still lack example embeddings (no classifier at load time).
    pub fn routes_without_embeddings(&self) -> Vec<&str> {
        self.routes
            .iter()
            .filter(|r| r.embeddings.is_empty())
            .map(|r| r.name.as_str())
            .collect()
    }

    /// Things that are valid but probably not what the admin meant, for `policy check` to print as warnings.
    pub fn warnings(&self, catalogue: &Catalogue) -> Vec<String> {
        let mut out = Vec::new();
        let chat: Vec<&Arc<crate::config::Model>> = catalogue
            .models
            .iter()
            .filter(|m| !m.has(crate::config::Capability::Embeddings) && self.allows(&m.name))
            .collect();
        if chat.is_empty() {
            out.push("no chat model is allowed: every routed request will be refused".to_owned());
            return out;
        }
        let best = chat.iter().map(|m| m.quality).fold(0.0, f64::max);
        let top_floor = self.floor.at(1.0);
        if top_floor > best {
            out.push(format!(
                "the quality floor reaches {top_floor:.2} but the best allowed model has {best:.2}: the hardest queries get the best available model"
            ));
        }
        for (task, rule) in &self.tasks {
            if rule.min_quality.is_some_and(|q| q > best) {
                out.push(format!(
                    "tasks.{task}.min_quality is above every allowed model's quality"
                ));
            }
            for m in rule.prefer.iter().filter(|m| !self.allows(m)) {
                out.push(format!(
                    "tasks.{task}.prefer names `{m}`, which this policy does not allow"
                ));
            }
        }
        for r in &self.routes {
            for m in r.prefer.iter().filter(|m| !self.allows(m)) {
                out.push(format!(
                    "routes `{}` prefers `{m}`, which this policy does not allow",
                    r.name
                ));
            }
        }
        if let Some(cap) = self.max_cost_per_request {
            // A modest request: 1,000 tokens in, the expected output out.
            let cheapest = chat
                .iter()
                .map(|m| crate::cost::max_cost(1000, self.expected_output_tokens, &m.price))
                .min()
                .unwrap_or_default();
            if cheapest > cap {
                out.push(format!(
                    "max_cost_per_request ${cap} is below the cheapest allowed model's cost for a 1,000-token request (${cheapest:.5}): such requests will be refused"
                ));
            }
        }
        if let Some(b) = &self.baseline_model
            && !self.allows(b)
        {
            out.push(format!(
                "baseline `{b}` is not allowed for this team; savings are still measured against it"
            ));
        }
        out
    }

    /// Embeds every admin route's examples. Called at load and reload when a classifier is available.
    pub fn embed_routes(&mut self, embedder: &dyn Embedder) -> Result<(), String> {
        for route in &mut self.routes {
            let vectors = embedder.embed(&route.examples)?;
            route.embeddings = vectors.into_iter().map(|v| Arc::from(normalise(v))).collect();
        }
        Ok(())
    }
}

fn normalise(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Turns texts into embeddings (the classifier implements this); used for admin routes' example utterances.
pub trait Embedder: Send + Sync {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String>;
}

// ---------------------------------------------------------------------------------------------------------
// Stage two: validation.

struct Issues<'a> {
    file: &'a str,
    list: Vec<PolicyIssue>,
}

impl Issues<'_> {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>, hint: Option<String>) {
        self.list.push(PolicyIssue {
            file: self.file.to_owned(),
            path: path.into(),
            line: None,
            message: message.into(),
            hint,
        });
    }
}

/// Parses and validates one policy file's text. `name` is the team (the file stem).
pub fn parse_policy(
    name: &str,
    file: &str,
    text: &str,
    catalogue: &Catalogue,
) -> Result<Policy, Vec<PolicyIssue>> {
    // An empty file is a valid policy with every default.
    let raw: RawPolicy = if text.trim().is_empty() {
        RawPolicy::default()
    } else {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.to_string();
            let hint = if message.contains("unknown field") {
                Some("check the spelling; every key is listed in policies/default.yaml".to_owned())
            } else {
                None
            };
            vec![PolicyIssue {
                file: file.to_owned(),
                path: if path == "." { "<root>".to_owned() } else { path },
                line: inner.location().map(|l| l.line()),
                message,
                hint,
            }]
        })?
    };
    validate(name, file, raw, catalogue)
}

/// Stage two: checks a raw policy against the catalogue and builds the domain type.
pub fn validate(
    name: &str,
    file: &str,
    raw: RawPolicy,
    catalogue: &Catalogue,
) -> Result<Policy, Vec<PolicyIssue>> {
    let mut issues = Issues {
        file,
        list: Vec::new(),
    };
    let names: Vec<&str> = catalogue.models.iter().map(|m| m.name.as_str()).collect();
    let defaults = Policy::default();

    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        issues.push(
            "<file name>",
            format!("team name `{name}` may only use letters, digits, `-` and `_`"),
            None,
        );
    }

    let mut check_model = |path: String, model: &str, issues: &mut Issues| {
        if catalogue.get(model).is_none() {
            issues.push(
                path,
                format!("no model `{model}` in the catalogue"),
                suggest(model, &names),
            );
        }
    };
    let patterns = |path: &str, list: &[String], issues: &mut Issues| -> Vec<ModelPattern> {
        list.iter()
            .enumerate()
            .map(|(i, p)| {
                let pattern = ModelPattern::new(p.clone());
                if !names.iter().any(|n| pattern.matches(n)) {
                    let hint = if p.contains('*') { None } else { suggest(p, &names) };
                    issues.push(
                        format!("{path}[{i}]"),
                        format!("`{p}` matches no model in the catalogue"),
                        hint,
                    );
                }
                pattern
            })
            .collect()
    };
    let allow = raw
        .models
        .allow
        .as_ref()
        .map(|a| patterns("models.allow", a, &mut issues));
    let deny = patterns("models.deny", &raw.models.deny, &mut issues);

    if let Some(b) = &raw.baseline {
        check_model("baseline".to_owned(), b, &mut issues);
    }

    // Quality: a dial or an explicit floor curve, not both.
    let (dial, floor) = match (&raw.quality.dial, &raw.quality.floor) {
        (Some(_), Some(_)) => {
            issues.push(
                "quality",
                "set either `dial` or `floor`, not both",
                Some("a floor curve replaces the dial".to_owned()),
            );
            (None, FloorCurve::new(Vec::new()))
        }
        (Some(d), None) => match Dial::parse(d) {
            Some(dial) => (Some(dial), dial.curve()),
            None => {
                issues.push(
                    "quality.dial",
                    format!("`{d}` is not a dial"),
                    Some("use economy, balanced or quality".to_owned()),
                );
                (None, FloorCurve::new(Vec::new()))
            }
        },
        (None, Some(points)) => (None, validate_floor(points, &mut issues)),
        (None, None) => (defaults.dial, defaults.floor.clone()),
    };
    let unclassified_difficulty = raw
        .quality
        .unclassified_difficulty
        .unwrap_or(defaults.unclassified.difficulty);
    if !(0.0..=1.0).contains(&unclassified_difficulty) {
        issues.push("quality.unclassified_difficulty", "must be between 0 and 1", None);
    }
    if let Some(m) = &raw.quality.unclassified_model {
        check_model("quality.unclassified_model".to_owned(), m, &mut issues);
    }

    if let Some(cap) = raw.max_cost_per_request
        && cap <= Decimal::ZERO
    {
        issues.push(
            "max_cost_per_request",
            "must be a positive amount in USD",
            Some("e.g. \"0.05\"".to_owned()),
        );
    }
    let expected_output_tokens = raw
        .expected_output_tokens
        .unwrap_or(DEFAULT_EXPECTED_OUTPUT_TOKENS);
    if expected_output_tokens == 0 {
        issues.push("expected_output_tokens", "must be at least 1", None);
    }

    let auto_names = raw
        .requests
        .auto_names
        .clone()
        .unwrap_or_else(|| defaults.auto_names.clone());
    if auto_names.is_empty() {
        issues.push(
            "requests.auto_names",
            "name at least one model name that means \"route for me\"",
            Some("usually [auto]".to_owned()),
        );
    }
    for (i, n) in auto_names.iter().enumerate() {
        if catalogue.get(n).is_some() {
            issues.push(
                format!("requests.auto_names[{i}]"),
                format!("`{n}` is a catalogue model; it cannot also mean \"route for me\""),
                None,
            );
        }
    }
    let mut aliases = BTreeMap::new();
    for (alias, dial) in &raw.requests.aliases {
        if catalogue.get(alias).is_some() || auto_names.contains(alias) {
            issues.push(
                format!("requests.aliases.{alias}"),
                format!("`{alias}` is already a model or auto name"),
                None,
            );
        }
        match Dial::parse(dial) {
            Some(d) => {
                aliases.insert(alias.clone(), d);
            }
            None => issues.push(
                format!("requests.aliases.{alias}"),
                format!("`{dial}` is not a dial"),
                Some("use economy, balanced or quality".to_owned()),
            ),
        }
    }
    let named_models = match raw.requests.named_models.as_deref() {
        None | Some("honour") | Some("honor") => NamedModels::Honour,
        Some("route") => NamedModels::Route,
        Some("deny") => NamedModels::Deny,
        Some(other) => {
            issues.push(
                "requests.named_models",
                format!("`{other}` is not an option"),
                Some("use honour, route or deny".to_owned()),
            );
            NamedModels::Honour
        }
    };

    let mut tasks = BTreeMap::new();
    for (task, rule) in &raw.tasks {
        let path = format!("tasks.{task}");
        if !TASK_TYPES.contains(&task.as_str()) {
            issues.push(
                &path,
                format!("`{task}` is not a task type"),
                Some(format!("use one of {}", TASK_TYPES.join(", "))),
            );
        }
        check_quality(&format!("{path}.min_quality"), rule.min_quality, &mut issues);
        for (i, m) in rule.prefer.iter().enumerate() {
            check_model(format!("{path}.prefer[{i}]"), m, &mut issues);
        }
        tasks.insert(
            task.clone(),
            TaskRule {
                min_quality: rule.min_quality,
                prefer: rule.prefer.clone(),
            },
        );
    }

    let mut routes = Vec::new();
    let mut route_names = BTreeSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        routes.push(validate_route(
            &format!("routes[{i}]"),
            r,
            &mut route_names,
            &mut check_model,
            &mut issues,
        ));
    }

    let mut data_rules = Vec::new();
    for (i, r) in raw.data_rules.iter().enumerate() {
        if let Some(rule) = validate_data_rule(&format!("data_rules[{i}]"), r, &mut check_model, &mut issues)
        {
            data_rules.push(rule);
        }
    }

    let stickiness = Stickiness {
        enabled: raw.stickiness.enabled,
        ttl: raw.stickiness.ttl.unwrap_or(defaults.stickiness.ttl),
    };
    if stickiness.ttl.is_zero() && stickiness.enabled {
        issues.push(
            "stickiness.ttl",
            "must be longer than zero",
            Some("e.g. 30m".to_owned()),
        );
    }
    let local = LocalRules {
        max_swap_wait: raw.local.max_swap_wait.unwrap_or(defaults.local.max_swap_wait),
        use_local: raw.local.use_local.unwrap_or(true),
    };
    let budgets = validate_budgets(&raw.budgets, &mut issues);

    if !issues.list.is_empty() {
        return Err(issues.list);
    }
    Ok(Policy {
        name: name.to_owned(),
        source: None,
        description: raw.description,
        allow,
        deny,
        baseline_model: raw.baseline,
        dial,
        floor,
        unclassified: Unclassified {
            difficulty: unclassified_difficulty,
            model: raw.quality.unclassified_model,
        },
        max_cost_per_request: raw.max_cost_per_request,
        expected_output_tokens,
        auto_names,
        aliases,
        named_models,
        tasks,
        routes,
        data_rules,
        stickiness,
        local,
        budgets,
    })
}

fn check_quality(path: &str, q: Option<f64>, issues: &mut Issues) {
    if let Some(q) = q
        && !(0.0..=1.0).contains(&q)
    {
        issues.push(
            path,
            "a quality must be between 0 and 1",
            Some("catalogue scores are MMLU-Pro accuracies, e.g. 0.8".to_owned()),
        );
    }
}

fn validate_floor(points: &[raw::RawFloorPoint], issues: &mut Issues) -> FloorCurve {
    if points.is_empty() {
        issues.push(
            "quality.floor",
            "give at least one point",
            Some("e.g. [{difficulty: 0, min_quality: 0.5}, {difficulty: 1, min_quality: 0.85}]".to_owned()),
        );
    }
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let path = format!("quality.floor[{i}]");
        if !(0.0..=1.0).contains(&p.difficulty) {
            issues.push(format!("{path}.difficulty"), "must be between 0 and 1", None);
        }
        check_quality(&format!("{path}.min_quality"), Some(p.min_quality), issues);
        if let Some(&(d, q)) = out.last() {
            if p.difficulty <= d {
                issues.push(
                    format!("{path}.difficulty"),
                    "points must be in increasing order of difficulty",
                    None,
                );
            }
            if p.min_quality < q {
                issues.push(
                    format!("{path}.min_quality"),
                    "the floor may not fall as difficulty rises",
                    Some("a harder query must never get a weaker model".to_owned()),
                );
            }
        }
        out.push((p.difficulty, p.min_quality));
    }
    FloorCurve::new(out)
}

fn validate_route(
    path: &str,
    r: &RawRoute,
    names: &mut BTreeSet<String>,
    check_model: &mut impl FnMut(String, &str, &mut Issues),
    issues: &mut Issues,
) -> AdminRoute {
    if !names.insert(r.name.clone()) {
        issues.push(
            format!("{path}.name"),
            format!("route `{}` is defined twice", r.name),
            None,
        );
    }
    if r.examples.iter().all(|e| e.trim().is_empty()) {
        issues.push(
            format!("{path}.examples"),
            "give at least one example utterance",
            None,
        );
    }
    let threshold = r.threshold.unwrap_or(DEFAULT_ROUTE_THRESHOLD);
    if !(0.0..=1.0).contains(&threshold) {
        issues.push(
            format!("{path}.threshold"),
            "a cosine similarity threshold must be between 0 and 1",
            Some("0.75 is a good start".to_owned()),
        );
    }
    if r.prefer.is_empty() && r.min_quality.is_none() {
        issues.push(
            path,
            "a route needs `prefer` or `min_quality` to have any effect",
            None,
        );
    }
    for (i, m) in r.prefer.iter().enumerate() {
        check_model(format!("{path}.prefer[{i}]"), m, issues);
    }
    check_quality(&format!("{path}.min_quality"), r.min_quality, issues);
    AdminRoute {
        name: r.name.clone(),
        examples: r.examples.clone(),
        embeddings: Vec::new(),
        threshold,
        prefer: r.prefer.clone(),
        min_quality: r.min_quality,
    }
}

fn validate_data_rule(
    path: &str,
    r: &RawDataRule,
    check_model: &mut impl FnMut(String, &str, &mut Issues),
    issues: &mut Issues,
) -> Option<DataRule> {
    if r.tags.is_empty() && r.patterns.is_empty() {
        issues.push(path, "a data rule needs `tags` or `patterns`", None);
    }
    let mut patterns = Vec::new();
    for (i, p) in r.patterns.iter().enumerate() {
        // Bounded size: patterns run on every request's text.
        match regex::RegexBuilder::new(p).size_limit(1 << 20).build() {
            Ok(re) => patterns.push(re),
            Err(e) => issues.push(
                format!("{path}.patterns[{i}]"),
                format!("not a valid regular expression: {e}"),
                Some("Rust regex syntax; use (?i) for case-insensitive".to_owned()),
            ),
        }
    }
    let action = match r.action.as_str() {
        "local_only" => DataAction::LocalOnly,
        "block" => DataAction::Block,
        "allow_only" => {
            if r.models.is_empty() {
                issues.push(
                    format!("{path}.models"),
                    "allow_only needs a list of models",
                    None,
                );
            }
            for (i, m) in r.models.iter().enumerate() {
                check_model(format!("{path}.models[{i}]"), m, issues);
            }
            DataAction::AllowOnly(r.models.iter().cloned().collect())
        }
        other => {
            issues.push(
                format!("{path}.action"),
                format!("`{other}` is not an action"),
                Some("use local_only, block or allow_only".to_owned()),
            );
            return None;
        }
    };
    if !matches!(action, DataAction::AllowOnly(_)) && !r.models.is_empty() {
        issues.push(
            format!("{path}.models"),
            "`models` only applies to action: allow_only",
            None,
        );
    }
    Some(DataRule {
        name: r.name.clone(),
        tags: r.tags.iter().cloned().collect(),
        patterns,
        action,
    })
}

fn validate_budgets(raw: &RawBudgets, issues: &mut Issues) -> BudgetPolicy {
    let timezone = match raw.timezone.as_deref() {
        None => chrono_tz::UTC,
        Some(tz) => tz.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
            issues.push(
                "budgets.timezone",
                format!("`{tz}` is not an IANA time zone"),
                Some("e.g. UTC or Europe/Berlin".to_owned()),
            );
            chrono_tz::UTC
        }),
    };
    let on_exhausted = match raw.on_exhausted.as_deref() {
        None | Some("block") => OnExhausted::Block,
        Some("downgrade_local") => OnExhausted::DowngradeLocal,
        Some("downgrade_cheapest") => OnExhausted::DowngradeCheapest,
        Some(other) => {
            issues.push(
                "budgets.on_exhausted",
                format!("`{other}` is not an option"),
                Some("use block, downgrade_local or downgrade_cheapest".to_owned()),
            );
            OnExhausted::Block
        }
    };
    let mut limits = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, l) in raw.limits.iter().enumerate() {
        let path = format!("budgets.limits[{i}]");
        let scope = match l.scope.as_str() {
            "team" => Some(BudgetScope::Team),
            "user" => Some(BudgetScope::User),
            "key" => Some(BudgetScope::Key),
            other => {
                issues.push(
                    format!("{path}.scope"),
                    format!("`{other}` is not a scope"),
                    Some("use team, user or key".to_owned()),
                );
                None
            }
        };
        let period = match l.period.as_str() {
            "daily" => Some(BudgetPeriod::Daily),
            "weekly" => Some(BudgetPeriod::Weekly),
            "monthly" => Some(BudgetPeriod::Monthly),
            other => {
                issues.push(
                    format!("{path}.period"),
                    format!("`{other}` is not a period"),
                    Some("use daily, weekly or monthly".to_owned()),
                );
                None
            }
        };
        let mode = match l.mode.as_deref() {
            None | Some("hard") => Some(BudgetMode::Hard),
            Some("soft") => Some(BudgetMode::Soft),
            Some(other) => {
                issues.push(
                    format!("{path}.mode"),
                    format!("`{other}` is not a mode"),
                    Some("use hard or soft".to_owned()),
                );
                None
            }
        };
        let dimension = match l.dimension.as_deref() {
            None | Some("api") => Some(BudgetDimension::Api),
            Some("local") => Some(BudgetDimension::Local),
            Some(other) => {
                issues.push(
                    format!("{path}.dimension"),
                    format!("`{other}` is not a dimension"),
                    Some("use api or local".to_owned()),
                );
                None
            }
        };
        if l.limit <= Decimal::ZERO {
            issues.push(
                format!("{path}.limit"),
                "a budget must be a positive amount in USD",
                None,
            );
        }
        if let (Some(scope), Some(period), Some(mode), Some(dimension)) = (scope, period, mode, dimension) {
            if !seen.insert((scope as u8, period as u8, dimension as u8)) {
                issues.push(
                    path.clone(),
                    "a budget for this scope, period and dimension is already defined",
                    None,
                );
            }
            limits.push(BudgetLimit {
                scope,
                period,
                limit: l.limit,
                mode,
                dimension,
            });
        }
    }
    BudgetPolicy {
        timezone,
        on_exhausted,
        limits,
    }
}

/// "Did you mean …?" for a misspelt model name.
fn suggest(name: &str, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 4))
        .min()
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------------------------
// The set of policies and the live store.

/// Every team's policy, loaded together from one folder.
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub default: Arc<Policy>,
    pub teams: BTreeMap<String, Arc<Policy>>,
}

impl Default for PolicySet {
    fn default() -> Self {
        PolicySet {
            default: Arc::new(Policy::default()),
            teams: BTreeMap::new(),
        }
    }
}

impl PolicySet {
    /// Reads and validates every `*.yaml`/`*.yml` file in `dir` (not recursive; hidden files skipped).
    /// `default.yaml` is the policy of teams without a file; without it the built-in default applies.
    /// All problems in all files are returned together.
    pub fn load_dir(
        dir: &Path,
        catalogue: &Catalogue,
        embedder: Option<&dyn Embedder>,
    ) -> Result<PolicySet, Vec<PolicyIssue>> {
        let dir_name = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![PolicyIssue {
                file: dir_name.clone(),
                path: "<root>".to_owned(),
                line: None,
                message: format!("cannot read the policies folder: {e}"),
                hint: Some("set policies_dir in the config, or create the folder".to_owned()),
            }]
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_policy_file(p))
            .collect();
        files.sort();
        let mut texts = Vec::new();
        let mut issues = Vec::new();
        for path in files {
            match std::fs::read_to_string(&path) {
                Ok(text) => texts.push((path, text)),
                Err(e) => issues.push(PolicyIssue {
                    file: path.display().to_string(),
                    path: "<root>".to_owned(),
                    line: None,
                    message: format!("cannot read: {e}"),
                    hint: None,
                }),
            }
        }
        let set = PolicySet::from_texts(texts, catalogue, embedder);
        match (set, issues.is_empty()) {
            (Ok(set), true) => Ok(set),
            (Ok(_), false) => Err(issues),
            (Err(mut more), _) => {
                issues.append(&mut more);
                Err(issues)
            }
        }
    }

    /// Builds a set from `(path, text)` pairs; the path's stem is the team. Pure apart from the embedder.
    pub fn from_texts(
        files: Vec<(PathBuf, String)>,
        catalogue: &Catalogue,
        embedder: Option<&dyn Embedder>,
    ) -> Result<PolicySet, Vec<PolicyIssue>> {
        let mut issues = Vec::new();
        let mut set = PolicySet::default();
        let mut default_seen = false;
        for (path, text) in files {
            let file = path.display().to_string();
            let Some(team) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            let duplicate = if team == "default" {
                std::mem::replace(&mut default_seen, true)
            } else {
                set.teams.contains_key(&team)
            };
            if duplicate {
                issues.push(PolicyIssue {
                    file: file.clone(),
                    path: "<file name>".to_owned(),
                    line: None,
                    message: format!("team `{team}` has two policy files"),
                    hint: Some("keep one of team.yaml / team.yml".to_owned()),
                });
                continue;
            }
            match parse_policy(&team, &file, &text, catalogue) {
                Ok(mut policy) => {
                    policy.source = Some(path.clone());
                    if let Some(embedder) = embedder
                        && !policy.routes.is_empty()
                        && let Err(e) = policy.embed_routes(embedder)
                    {
                        issues.push(PolicyIssue {
                            file: file.clone(),
                            path: "routes".to_owned(),
                            line: None,
                            message: format!("cannot embed the route examples: {e}"),
                            hint: None,
                        });
                    }
                    if team == "default" {
                        set.default = Arc::new(policy);
                    } else {
                        set.teams.insert(team, Arc::new(policy));
                    }
                }
                Err(mut more) => issues.append(&mut more),
            }
        }
        if issues.is_empty() { Ok(set) } else { Err(issues) }
    }

    pub fn for_team(&self, team: &str) -> Arc<Policy> {
        self.teams.get(team).unwrap_or(&self.default).clone()
    }
}

fn is_policy_file(p: &Path) -> bool {
    let hidden = p
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = p
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml");
    !hidden && yaml && p.is_file()
}

/// The outcome of the last reload attempt, for the admin endpoint and logs.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    /// Increments on every successful load.
    pub generation: u64,
    #[serde(with = "humantime_serde")]
    pub loaded_at: SystemTime,
    pub teams: Vec<String>,
    /// Set when the newest files were rejected; the previous policies stay live.
    pub last_error: Option<ReloadFailure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadFailure {
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
    pub issues: Vec<PolicyIssue>,
}

/// The live policies, swapped atomically on reload. Cheap to clone (two `Arc`s).
#[derive(Clone)]
pub struct Policies {
    current: Arc<ArcSwap<PolicySet>>,
    status: Arc<ArcSwap<ReloadStatus>>,
}

impl Policies {
    /// A store holding one policy for every team (tests, and the binary before the folder is read).
    pub fn new(default: Policy) -> Self {
        Policies::from_set(PolicySet {
            default: Arc::new(default),
            teams: BTreeMap::new(),
        })
    }

    pub fn from_set(set: PolicySet) -> Self {
        let status = ReloadStatus {
            generation: 1,
            loaded_at: SystemTime::now(),
            teams: set.teams.keys().cloned().collect(),
            last_error: None,
        };
        Policies {
            current: Arc::new(ArcSwap::from_pointee(set)),
            status: Arc::new(ArcSwap::from_pointee(status)),
        }
    }

    /// The team's policy, or the default policy for teams without a file.
    pub fn for_team(&self, team: &str) -> Arc<Policy> {
        self.current.load().for_team(team)
    }

    pub fn snapshot(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    pub fn status(&self) -> Arc<ReloadStatus> {
        self.status.load_full()
    }

    /// Makes `set` live in one atomic store.
    pub fn replace(&self, set: PolicySet) {
        let teams = set.teams.keys().cloned().collect();
        self.current.store(Arc::new(set));
        let generation = self.status.load().generation + 1;
        self.status.store(Arc::new(ReloadStatus {
            generation,
            loaded_at: SystemTime::now(),
            teams,
            last_error: None,
        }));
    }

    /// Records a rejected reload; the live policies are untouched.
    pub fn reject(&self, issues: Vec<PolicyIssue>) {
        let mut status = ReloadStatus::clone(&self.status.load());
        status.last_error = Some(ReloadFailure {
            at: SystemTime::now(),
            issues,
        });
        self.status.store(Arc::new(status));
    }
}

#[cfg(test)]
mod tests;
