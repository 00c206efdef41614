//! The full decision as JSON, for `switchyard route`, the admin dry-run endpoint and logs.

use serde_json::{Value, json};

use super::{Decision, RouteError};

pub fn decision_json(d: &Decision) -> Value {
    let chosen = d.chosen();
    let mut fallbacks: Vec<Value> = Vec::new();
    for t in d.targets.iter().skip(1) {
        fallbacks.push(json!({ "model": t.model.name, "deployment": t.deployment.name }));
    }
    json!({
        "model": chosen.map(|t| t.model.name.as_str()),
        "deployment": chosen.map(|t| t.deployment.name.as_str()),
        "upstream_model": chosen.map(|t| t.model.upstream_model.as_str()),
        "local": chosen.map(|t| t.model.local),
        "routed": d.routed,
        "reason": d.reason,
        "detail": d.detail,
        "difficulty": d.difficulty,
        "task": d.task,
        "quality_floor": d.quality_floor,
        "quality": chosen.map(|t| t.model.quality),
        "expected_cost_usd": d.expected_cost.normalize().to_string(),
        "expected_output_tokens": d.expected_output_tokens,
        "baseline": d.baseline.as_ref().map(|m| m.name.as_str()),
        "matched_route": d.matched_route,
        "data_rule": d.data_rule,
        "cold_start_ms": d.cold_start.map(|c| u64::try_from(c.as_millis()).unwrap_or(u64::MAX)),
        "fallbacks": fallbacks,
        "rejected": d.rejected.iter().map(|r| json!({ "model": r.model, "reason": r.reason.to_string(), "why": r.reason })).collect::<Vec<_>>(),
    })
}

pub fn error_json(e: &RouteError) -> Value {
    let kind = match e {
        RouteError::UnknownModel(_) => "unknown_model",
        RouteError::Denied(_) => "denied",
        RouteError::NoCandidate(_) => "no_candidate",
        RouteError::Unavailable(_) => "unavailable",
    };
    json!({ "error": kind, "message": e.to_string() })
}

/// A few lines for a person at a terminal.
pub fn decision_text(d: &Decision) -> String {
    let mut out = String::new();
    let chosen = d.chosen();
    out.push_str(&format!(
        "model:      {} (deployment {})\n",
        chosen.map_or("-", |t| t.model.name.as_str()),
        chosen.map_or("-", |t| t.deployment.name.as_str())
    ));
    out.push_str(&format!("reason:     {} — {}\n", d.reason, d.detail));
    if let Some(diff) = d.difficulty {
        out.push_str(&format!("difficulty: {diff:.3}\n"));
    }
    if let Some(t) = &d.task {
        out.push_str(&format!("task:       {t}\n"));
    }
    if let Some(f) = d.quality_floor {
        out.push_str(&format!(
            "floor:      {f:.3} (model quality {:.3})\n",
            chosen.map_or(0.0, |t| t.model.quality)
        ));
    }
    out.push_str(&format!(
        "expected:   ${} for ~{} output tokens\n",
        d.expected_cost.round_dp(6).normalize(),
        d.expected_output_tokens
    ));
    if let Some(b) = &d.baseline {
        out.push_str(&format!("baseline:   {}\n", b.name));
    }
    if let Some(r) = &d.matched_route {
        out.push_str(&format!("route:      {r}\n"));
    }
    if let Some(r) = &d.data_rule {
        out.push_str(&format!("data rule:  {r}\n"));
    }
    if let Some(c) = d.cold_start {
        out.push_str(&format!("cold start: ~{}s to load\n", c.as_secs()));
    }
    let fallbacks: Vec<String> = d
        .targets
        .iter()
        .skip(1)
        .map(|t| format!("{}@{}", t.model.name, t.deployment.name))
        .collect();
    if !fallbacks.is_empty() {
        out.push_str(&format!("fallbacks:  {}\n", fallbacks.join(", ")));
    }
    if !d.rejected.is_empty() {
        out.push_str("rejected:\n");
        for r in &d.rejected {
            out.push_str(&format!("  {:<24} {}\n", r.model, r.reason));
        }
    }
    out
}
