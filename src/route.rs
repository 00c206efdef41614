//! Pipeline stage 4: the routing decision — a pure function of policy, catalogue, classifier output and request
//! facts (placeholder until the routing module lands: honours named models, routes `auto` to the cheapest model
//! whose quality meets a floor that rises with difficulty).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::{Capability, Catalogue, Deployment, Model};
use crate::policy::Policy;

/// Facts about the request that constrain the choice.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub estimated_input_tokens: u64,
    pub max_tokens: Option<u64>,
    pub needs: BTreeSet<Capability>,
    pub stream: bool,
}

/// What the classifier said, as routing needs it.
#[derive(Debug, Clone)]
pub struct Signal {
    pub difficulty: f32,
    pub task: Option<String>,
}

/// One model on one deployment.
#[derive(Debug, Clone)]
pub struct Target {
    pub model: Arc<Model>,
    pub deployment: Arc<Deployment>,
}

#[derive(Debug, Clone)]
pub struct Decision {
    /// The chosen target first, then fallbacks in order.
    pub targets: Vec<Target>,
    /// Bounded label for metrics (`honoured`, `cheapest_qualifying`, `classifier_unavailable`, …).
    pub reason: &'static str,
    /// Short human-readable reason for `x-switchyard-route`.
    pub detail: String,
    /// Switchyard picked the model (as opposed to honouring a named one).
    pub routed: bool,
    pub difficulty: Option<f32>,
    /// The model savings are measured against.
    pub baseline: Option<Arc<Model>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    UnknownModel(String),
    Denied(String),
    NoCandidate(String),
}

fn targets_of(model: &Arc<Model>) -> impl Iterator<Item = Target> + '_ {
    model.deployments.iter().map(|d| Target {
        model: model.clone(),
        deployment: d.clone(),
    })
}

pub fn decide(
    policy: &Policy,
    catalogue: &Catalogue,
    requested: &str,
    facts: &RequestFacts,
    signal: Option<&Signal>,
) -> Result<Decision, RouteError> {
    let baseline = policy
        .baseline_model
        .as_deref()
        .and_then(|n| catalogue.get(n).cloned())
        .or_else(|| {
            catalogue
                .models
                .iter()
                .filter(|m| !m.local)
                .max_by(|a, b| a.quality.total_cmp(&b.quality))
                .cloned()
        });
    if !policy.wants_routing(requested) {
        let model = catalogue
            .get(requested)
            .ok_or_else(|| RouteError::UnknownModel(requested.to_owned()))?;
        return Ok(Decision {
            targets: targets_of(model).collect(),
            reason: "honoured",
            detail: "named model honoured".to_owned(),
            routed: false,
            difficulty: None,
            baseline: Some(model.clone()),
        });
    }
    let difficulty = signal.map(|s| s.difficulty);
    let floor = f64::from(difficulty.unwrap_or(1.0)).clamp(0.0, 1.0) * 0.9;
    let mut candidates: Vec<&Arc<Model>> = catalogue
        .models
        .iter()
        .filter(|m| !m.has(Capability::Embeddings) && m.quality >= floor)
        .filter(|m| facts.needs.iter().all(|c| m.has(*c)))
        .collect();
    candidates.sort_by(|a, b| {
        (a.price.input + a.price.output)
            .cmp(&(b.price.input + b.price.output))
            .then(a.name.cmp(&b.name))
    });
    let Some(first) = candidates.first() else {
        return Err(RouteError::NoCandidate(
            "no model meets the quality floor and capabilities".to_owned(),
        ));
    };
    Ok(Decision {
        targets: candidates.iter().flat_map(|m| targets_of(m)).collect(),
        reason: if signal.is_some() {
            "cheapest_qualifying"
        } else {
            "classifier_unavailable"
        },
        detail: format!("cheapest model with quality >= {floor:.2}: {}", first.name),
        routed: true,
        difficulty,
        baseline,
    })
}
