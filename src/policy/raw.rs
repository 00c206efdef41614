//! Stage one of a policy file: the YAML exactly as an admin wrote it. Every struct denies unknown fields, so a
//! misspelt key (`max_cost_per_requst`) is an error with a path rather than a silently ignored rule.
//! Stage two ([`super::validate`]) checks values against the catalogue and builds [`super::Policy`].

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Free text shown by `policy check` and the admin endpoint.
    pub description: Option<String>,
    #[serde(default)]
    pub models: RawModels,
    /// The premium model savings are measured against.
    pub baseline: Option<String>,
    #[serde(default)]
    pub quality: RawQuality,
    /// Expected cost (USD) above which a model is not chosen.
    pub max_cost_per_request: Option<Decimal>,
    /// Output tokens assumed for expected cost when the request sets no `max_tokens`.
    pub expected_output_tokens: Option<u64>,
    #[serde(default)]
    pub requests: RawRequests,
    #[serde(default)]
    pub tasks: BTreeMap<String, RawTaskRule>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub data_rules: Vec<RawDataRule>,
    #[serde(default)]
    pub stickiness: RawStickiness,
    #[serde(default)]
    pub local: RawLocalRules,
    #[serde(default)]
    pub budgets: RawBudgets,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    /// Model names or `prefix*` patterns; absent means every catalogue model.
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuality {
    /// `economy`, `balanced` or `quality`.
    pub dial: Option<String>,
    /// Explicit curve instead of a dial: points `{ difficulty, min_quality }`, linear in between.
    pub floor: Option<Vec<RawFloorPoint>>,
    /// Difficulty assumed when the classifier is unavailable.
    pub unclassified_difficulty: Option<f32>,
    /// Model used when the classifier is unavailable (instead of assuming a difficulty).
    pub unclassified_model: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFloorPoint {
    pub difficulty: f64,
    pub min_quality: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequests {
    /// Names that mean "route for me" (default: `[auto]`).
    pub auto_names: Option<Vec<String>>,
    /// Team aliases: a name that means "route for me with this quality dial".
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// What to do with a request naming a catalogue model: `honour`, `route` or `deny`.
    pub named_models: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTaskRule {
    pub min_quality: Option<f64>,
    /// Models tried first for this task when they qualify, in order.
    #[serde(default)]
    pub prefer: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    /// Example utterances; a request whose embedding is close to one of them takes this route.
    pub examples: Vec<String>,
    /// Cosine similarity needed to match (default 0.75).
    pub threshold: Option<f32>,
    #[serde(default)]
    pub prefer: Vec<String>,
    pub min_quality: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataRule {
    pub name: String,
    /// Request tags (header `x-switchyard-tags` or metadata) that trigger the rule.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Regular expressions matched against the request text.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// `local_only`, `block`, or `allow_only` (with `models`).
    pub action: String,
    #[serde(default)]
    pub models: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStickiness {
    #[serde(default)]
    pub enabled: bool,
    /// How long a conversation stays on its model after its last request.
    #[serde(default, with = "humantime_serde::option")]
    pub ttl: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocalRules {
    /// Longest a request may wait for a local model to be loaded into GPU memory.
    #[serde(default, with = "humantime_serde::option")]
    pub max_swap_wait: Option<Duration>,
    /// A local model qualifies for routing only when this is true (default true).
    pub use_local: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgets {
    /// IANA time zone for period boundaries (default UTC).
    pub timezone: Option<String>,
    /// `block`, `downgrade_local` or `downgrade_cheapest` (default `block`).
    pub on_exhausted: Option<String>,
    #[serde(default)]
    pub limits: Vec<RawBudgetLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgetLimit {
    /// `team`, `user` or `key`.
    pub scope: String,
    /// `daily`, `weekly` or `monthly`.
    pub period: String,
    /// USD.
    pub limit: Decimal,
    /// `hard` (refuse with 429) or `soft` (alert only). Default `hard`.
    pub mode: Option<String>,
    /// `api` (commercial spend) or `local` (internal cost of local models). Default `api`.
    pub dimension: Option<String>,
}
