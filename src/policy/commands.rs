//! The policy commands: `switchyard policy check [DIR]`, `switchyard route --team T --prompt "…"` and
//! `switchyard replay --team T --input requests.jsonl`. `src/cli.rs` owns the command tree and calls these.
//!
//! None of them calls an upstream. `route` and `replay` use the classifier when one is passed in; without it
//! difficulty comes from `--difficulty`, from the replayed row, or from a crude length-and-keyword heuristic
//! (flagged in the output), so they work on a machine without the model files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{Embedder, PolicySet};
use crate::config::{Capability, Catalogue, Config};
use crate::route::{self, Conditions, RequestFacts, Signal};

/// The classifier as the commands need it: a signal per text, and embeddings for admin routes.
pub trait SignalSource: Embedder {
    fn signals(&self, texts: &[String]) -> Result<Vec<Signal>, String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// `switchyard policy check [DIR]`
#[derive(Debug, clap::Args)]
pub struct PolicyCheckArgs {
    /// Policies folder; the config's `policies_dir` when absent.
    pub dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Validates every policy file against the catalogue. `Ok(false)` means problems were printed: exit non-zero
/// (for a policy repo's CI).
pub fn policy_check(config: &Config, args: &PolicyCheckArgs) -> anyhow::Result<bool> {
    let dir = args.dir.clone().unwrap_or_else(|| config.policies_dir.clone());
    let result = PolicySet::load_dir(&dir, &config.catalogue, None);
    let mut out = std::io::stdout().lock();
    match (&result, args.format) {
        (Ok(set), OutputFormat::Text) => {
            writeln!(out, "{}: OK", dir.display())?;
            for (team, p) in std::iter::once(("default", &set.default))
                .chain(set.teams.iter().map(|(t, p)| (t.as_str(), p)))
            {
                writeln!(out, "  {team}: {}", summary(p))?;
                for w in p.warnings(&config.catalogue) {
                    writeln!(out, "    warning: {w}")?;
                }
            }
        }
        (Ok(set), OutputFormat::Json) => {
            let teams: Vec<&String> = set.teams.keys().collect();
            let warnings: serde_json::Map<String, Value> =
                std::iter::once(("default".to_owned(), &set.default))
                    .chain(set.teams.iter().map(|(t, p)| (t.clone(), p)))
                    .map(|(t, p)| (t, json!(p.warnings(&config.catalogue))))
                    .collect();
            writeln!(
                out,
                "{}",
                json!({ "ok": true, "dir": dir.display().to_string(), "teams": teams, "warnings": warnings })
            )?;
        }
        (Err(issues), OutputFormat::Text) => {
            writeln!(out, "{}: {} problem(s)", dir.display(), issues.len())?;
            for issue in issues {
                writeln!(out, "  {issue}")?;
            }
        }
        (Err(issues), OutputFormat::Json) => {
            writeln!(
                out,
                "{}",
                json!({ "ok": false, "dir": dir.display().to_string(), "issues": issues })
            )?;
        }
    }
    Ok(result.is_ok())
}

fn summary(p: &super::Policy) -> String {
    let quality = p
        .dial
        .map_or_else(|| "custom floor".to_owned(), |d| format!("{} dial", d.as_str()));
    let cap = p
        .max_cost_per_request
        .map_or_else(|| "no cost cap".to_owned(), |c| format!("cap ${c}/request"));
    let mut s = format!(
        "{quality}, {cap}, named models: {}",
        format!("{:?}", p.named_models).to_lowercase()
    );
    if !p.routes.is_empty() {
        s.push_str(&format!(", {} admin route(s)", p.routes.len()));
    }
    if !p.data_rules.is_empty() {
        s.push_str(&format!(", {} data rule(s)", p.data_rules.len()));
    }
    if !p.budgets.limits.is_empty() {
        s.push_str(&format!(", {} budget(s)", p.budgets.limits.len()));
    }
    s
}

/// `switchyard route --team T --prompt "…"`
#[derive(Debug, clap::Args)]
pub struct RouteArgs {
    #[arg(long)]
    pub team: String,
    #[arg(long)]
    pub prompt: String,
    /// The model the request names.
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// Use this difficulty instead of the classifier's.
    #[arg(long)]
    pub difficulty: Option<f32>,
    /// Use this task type instead of the classifier's (code, math, reasoning, writing, qa, extraction, conversation).
    #[arg(long)]
    pub task: Option<String>,
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Data tags, as the `x-switchyard-tags` header would carry them (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Capabilities the request needs: tools, vision, json_mode, reasoning (repeatable).
    #[arg(long = "needs")]
    pub needs: Vec<String>,
    /// Policies folder to use instead of the config's (try a change before it is live).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// Prints the full routing decision for one prompt. `Ok(false)` when the request would be refused.
pub fn route(
    config: &Config,
    args: &RouteArgs,
    classifier: Option<&dyn SignalSource>,
) -> anyhow::Result<bool> {
    let set = load_set(
        config,
        args.policies.as_ref(),
        classifier.map(|c| c as &dyn Embedder),
    )?;
    let policy = set.for_team(&args.team);
    let mut needs = BTreeSet::new();
    for n in &args.needs {
        needs.insert(
            Capability::parse(n).with_context(|| {
                format!("`{n}` is not a capability (tools, vision, json_mode, reasoning)")
            })?,
        );
    }
    let facts = RequestFacts {
        estimated_input_tokens: estimate_tokens(&args.prompt, 1),
        max_tokens: args.max_tokens,
        needs,
        stream: false,
        tags: args.tags.iter().cloned().collect(),
        text: Some(Arc::from(args.prompt.as_str())),
        budget_exhausted: false,
        provider: None,
    };
    let (signal, source) = if policy.wants_routing(&args.model) {
        let (s, source) = signal_for(&args.prompt, args.difficulty, args.task.as_deref(), classifier);
        (Some(s), source)
    } else {
        (None, "not needed")
    };
    let result = route::decide_with(
        &policy,
        &config.catalogue,
        &args.model,
        &facts,
        signal.as_ref(),
        &dry_run_conditions(),
    );
    let mut out = std::io::stdout().lock();
    match (&result, args.format) {
        (Ok(d), OutputFormat::Text) => {
            writeln!(out, "team:       {} (policy {})", args.team, policy.name)?;
            writeln!(out, "signal:     {source}")?;
            write!(out, "{}", route::report::decision_text(d))?;
        }
        (Ok(d), OutputFormat::Json) => {
            let mut v = route::report::decision_json(d);
            v["team"] = json!(args.team);
            v["policy"] = json!(policy.name);
            v["signal_source"] = json!(source);
            writeln!(out, "{v}")?;
        }
        (Err(e), OutputFormat::Text) => writeln!(out, "refused: {e}")?,
        (Err(e), OutputFormat::Json) => writeln!(out, "{}", route::report::error_json(e))?,
    }
    Ok(result.is_ok())
}

/// Dry runs assume every deployment is healthy and every local model loaded, and ignore unset API keys.
fn dry_run_conditions() -> Conditions {
    Conditions {
        assume_credentials: true,
        ..Conditions::default()
    }
}

fn load_set(
    config: &Config,
    dir: Option<&PathBuf>,
    embedder: Option<&dyn Embedder>,
) -> anyhow::Result<PolicySet> {
    let dir = dir.cloned().unwrap_or_else(|| config.policies_dir.clone());
    PolicySet::load_dir(&dir, &config.catalogue, embedder).map_err(|issues| {
        let lines: Vec<String> = issues.iter().map(|i| format!("  {i}")).collect();
        anyhow::anyhow!(
            "the policies in {} are invalid:\n{}",
            dir.display(),
            lines.join("\n")
        )
    })
}

/// The signal for one text and where it came from.
fn signal_for(
    text: &str,
    difficulty: Option<f32>,
    task: Option<&str>,
    classifier: Option<&dyn SignalSource>,
) -> (Signal, &'static str) {
    let classified = classifier.and_then(|c| match c.signals(&[text.to_owned()]) {
        Ok(mut v) => v.pop(),
        Err(error) => {
            eprintln!("classifier failed ({error}); using the heuristic");
            None
        }
    });
    let (mut signal, mut source) = match classified {
        Some(s) => (s, "classifier"),
        None => (
            Signal::new(heuristic_difficulty(text), Some(heuristic_task(text).to_owned())),
            "heuristic (no classifier)",
        ),
    };
    if let Some(d) = difficulty {
        signal.difficulty = d;
        source = "--difficulty";
    }
    if let Some(t) = task {
        signal.task = Some(t.to_owned());
    }
    (signal, source)
}

/// Rough token count: about four characters per token plus a few per message, as OpenAI's own rule of thumb.
/// The proxy itself counts with the model's tokenizer; this is for dry runs only.
pub fn estimate_tokens(text: &str, messages: usize) -> u64 {
    (text.chars().count() as u64).div_ceil(4) + 4 * messages as u64
}

/// A crude difficulty without the classifier: longer prompts and prompts asking for proofs, derivations,
/// algorithms or multi-step reasoning score higher. It exists so dry runs work anywhere; it is not the router.
pub fn heuristic_difficulty(text: &str) -> f32 {
    let lower = text.to_lowercase();
    let tokens = estimate_tokens(text, 0) as f32;
    let length = ((1.0 + tokens).ln() / 2000f32.ln()).min(1.0);
    const HARD: &[&str] = &[
        "prove",
        "proof",
        "derive",
        "theorem",
        "algorithm",
        "complexity",
        "optimi",
        "architecture",
        "step by step",
        "why does",
        "trade-off",
        "tradeoff",
        "concurren",
        "race condition",
        "debug",
        "refactor",
        "integral",
        "equation",
    ];
    let hits = HARD.iter().filter(|k| lower.contains(*k)).count() as f32;
    (0.15 + 0.5 * length + 0.15 * hits).clamp(0.0, 1.0)
}

fn heuristic_task(text: &str) -> &'static str {
    let lower = text.to_lowercase();
    let has = |ks: &[&str]| ks.iter().any(|k| lower.contains(k));
    if text.contains("```")
        || has(&[
            "function", "code", "compile", "python", "rust", "sql", "regex", "bug",
        ])
    {
        "code"
    } else if has(&["solve", "integral", "equation", "calculate", "probability"]) {
        "math"
    } else if has(&["extract", "convert", "format", "csv", "json", "table"]) {
        "extraction"
    } else if has(&["write", "poem", "story", "slogan", "blog", "email", "tagline"]) {
        "writing"
    } else if has(&["why", "prove", "explain", "reason"]) {
        "reasoning"
    } else if text.trim_end().ends_with('?') {
        "qa"
    } else {
        "conversation"
    }
}

/// `switchyard replay --team T --input requests.jsonl`
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[arg(long)]
    pub team: String,
    /// JSONL: OpenAI-style request bodies (chat or completions), or ledger export rows.
    #[arg(long)]
    pub input: PathBuf,
    /// Policies folder to replay against instead of the live one (see a change before it is live).
    #[arg(long)]
    pub policies: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// One replayed request, reduced to what routing and pricing need.
struct Row {
    model: String,
    /// The model that actually served it, when the row says (ledger export).
    served: Option<String>,
    text: String,
    messages: usize,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    max_tokens: Option<u64>,
    needs: BTreeSet<Capability>,
    tags: BTreeSet<String>,
    difficulty: Option<f32>,
    task: Option<String>,
}

fn content_text(content: &Value, out: &mut String, needs: &mut BTreeSet<Capability>) {
    match content {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(parts) => {
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => content_text(p.get("text").unwrap_or(&Value::Null), out, needs),
                    Some("image_url" | "image" | "input_image") => {
                        needs.insert(Capability::Vision);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn parse_row(v: &Value) -> Option<Row> {
    let body = v.get("body").filter(|b| b.is_object()).unwrap_or(v);
    let str_of = |k: &str| {
        v.get(k)
            .or_else(|| body.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let u64_of = |ks: &[&str]| {
        ks.iter()
            .find_map(|k| v.get(*k).or_else(|| body.get(*k)).and_then(Value::as_u64))
    };
    let mut needs = BTreeSet::new();
    let mut text = String::new();
    let mut messages = 0;
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        messages = msgs.len();
        for m in msgs {
            content_text(m.get("content").unwrap_or(&Value::Null), &mut text, &mut needs);
        }
    } else if let Some(p) = body.get("prompt") {
        content_text(p, &mut text, &mut needs);
        messages = 1;
    }
    if body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
    {
        needs.insert(Capability::Tools);
    }
    if body
        .pointer("/response_format/type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.starts_with("json"))
    {
        needs.insert(Capability::JsonMode);
    }
    let model = str_of("requested_model").or_else(|| str_of("model"))?;
    let tags = match v.get("tags") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        _ => BTreeSet::new(),
    };
    Some(Row {
        served: str_of("routed_model"),
        model,
        text,
        messages,
        input_tokens: u64_of(&["input_tokens", "prompt_tokens"])
            .or_else(|| body.pointer("/usage/prompt_tokens").and_then(Value::as_u64)),
        output_tokens: u64_of(&["output_tokens", "completion_tokens"])
            .or_else(|| body.pointer("/usage/completion_tokens").and_then(Value::as_u64)),
        max_tokens: u64_of(&["max_completion_tokens", "max_tokens"]),
        needs,
        tags,
        difficulty: v.get("difficulty").and_then(Value::as_f64).map(|d| d as f32),
        task: str_of("task"),
    })
}

#[derive(Debug, Default)]
pub struct ModelLine {
    pub requests: u64,
    pub spend: Decimal,
}

/// What `replay` found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub requests: u64,
    pub unparseable: u64,
    /// Requests the policy would refuse, by kind (`denied`, `no_candidate`, `unknown_model`, `unavailable`).
    pub refused: BTreeMap<&'static str, u64>,
    pub projected_spend: Decimal,
    /// The same requests on the team's baseline (premium) model.
    pub baseline_spend: Decimal,
    /// What the same requests cost on the models that served them (or that they named).
    pub original_spend: Decimal,
    pub changed_model: u64,
    /// Requests scored by the heuristic because neither the row nor a classifier gave a difficulty.
    pub heuristic_difficulty: u64,
    pub model_mix: BTreeMap<String, ModelLine>,
    pub reasons: BTreeMap<&'static str, u64>,
}

/// Replays a request log through a team's policy without calling any upstream and reports projected spend
/// against the baseline, the model mix and how many requests changed model. Progress goes to stderr.
pub fn replay(
    config: &Config,
    args: &ReplayArgs,
    classifier: Option<&dyn SignalSource>,
) -> anyhow::Result<bool> {
    let set = load_set(
        config,
        args.policies.as_ref(),
        classifier.map(|c| c as &dyn Embedder),
    )?;
    let file =
        std::fs::File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?;
    let report = replay_lines(
        &set,
        &config.catalogue,
        &args.team,
        std::io::BufReader::new(file),
        classifier,
    )?;
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Json => writeln!(out, "{}", replay_json(&report))?,
        OutputFormat::Text => write!(out, "{}", replay_text(&args.team, &report))?,
    }
    Ok(true)
}

const CHUNK: usize = 64;

/// Replays JSONL lines through `team`'s policy in `set`. Pure apart from reading `input` and the classifier.
pub fn replay_lines(
    set: &PolicySet,
    catalogue: &Catalogue,
    team: &str,
    input: impl BufRead,
    classifier: Option<&dyn SignalSource>,
) -> anyhow::Result<ReplayReport> {
    let policy = set.for_team(team);
    let mut report = ReplayReport::default();
    let mut rows = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.context("reading the input")?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line)
            .ok()
            .as_ref()
            .and_then(parse_row)
        {
            Some(row) => rows.push(row),
            None => {
                report.unparseable += 1;
                if report.unparseable <= 5 {
                    eprintln!("line {}: not a request body or ledger row; skipped", i + 1);
                }
            }
        }
    }
    let total = rows.len();
    for (chunk_no, chunk) in rows.chunks(CHUNK).enumerate() {
        // The classifier is batched per chunk (only for rows without a recorded difficulty).
        let need: Vec<String> = chunk
            .iter()
            .filter(|r| r.difficulty.is_none())
            .map(|r| r.text.clone())
            .collect();
        let mut classified = match (classifier, need.is_empty()) {
            (Some(c), false) => c
                .signals(&need)
                .map_err(|e| eprintln!("classifier failed ({e}); using the heuristic"))
                .ok(),
            _ => None,
        }
        .map(Vec::into_iter);
        for row in chunk {
            replay_row(&policy, catalogue, row, &mut classified, &mut report);
        }
        let done = (chunk_no * CHUNK + chunk.len()).min(total);
        if total >= 500 && (done % 1000 < CHUNK || done == total) {
            eprintln!("replayed {done}/{total}");
        }
    }
    Ok(report)
}

fn replay_row(
    policy: &super::Policy,
    catalogue: &Catalogue,
    row: &Row,
    classified: &mut Option<std::vec::IntoIter<Signal>>,
    report: &mut ReplayReport,
) {
    report.requests += 1;
    let input_tokens = row
        .input_tokens
        .unwrap_or_else(|| estimate_tokens(&row.text, row.messages.max(1)));
    let facts = RequestFacts {
        estimated_input_tokens: input_tokens,
        max_tokens: row.max_tokens,
        needs: row.needs.clone(),
        stream: false,
        tags: row.tags.clone(),
        text: Some(Arc::from(row.text.as_str())),
        budget_exhausted: false,
        provider: None,
    };
    let signal = if row.difficulty.is_none() {
        classified.as_mut().and_then(Iterator::next)
    } else {
        None
    };
    let signal = match (row.difficulty, signal) {
        (Some(d), _) => Signal::new(d, row.task.clone()),
        (None, Some(mut s)) => {
            if row.task.is_some() {
                s.task = row.task.clone();
            }
            s
        }
        (None, None) => {
            report.heuristic_difficulty += 1;
            Signal::new(
                heuristic_difficulty(&row.text),
                row.task
                    .clone()
                    .or_else(|| Some(heuristic_task(&row.text).to_owned())),
            )
        }
    };
    let signal = policy.wants_routing(&row.model).then_some(signal);
    let decision = match route::decide_with(
        policy,
        catalogue,
        &row.model,
        &facts,
        signal.as_ref(),
        &dry_run_conditions(),
    ) {
        Ok(d) => d,
        Err(e) => {
            let kind = match e {
                route::RouteError::UnknownModel(_) => "unknown_model",
                route::RouteError::Denied(_) => "denied",
                route::RouteError::NoCandidate(_) => "no_candidate",
                route::RouteError::Unavailable(_) => "unavailable",
            };
            *report.refused.entry(kind).or_default() += 1;
            return;
        }
    };
    let Some(chosen) = decision.chosen() else { return };
    let output_tokens = row.output_tokens.unwrap_or(decision.expected_output_tokens);
    let price_of = |m: &crate::config::Model| crate::cost::max_cost(input_tokens, output_tokens, &m.price);
    let projected = price_of(&chosen.model);
    let baseline = decision.baseline.as_deref().map_or(projected, price_of);
    let original_model = row
        .served
        .as_deref()
        .or(Some(row.model.as_str()))
        .and_then(|n| catalogue.get(n))
        .cloned()
        .or(decision.baseline.clone());
    let original = original_model.as_deref().map_or(baseline, price_of);
    report.projected_spend += projected;
    report.baseline_spend += baseline;
    report.original_spend += original;
    if original_model
        .as_ref()
        .is_none_or(|m| m.name != chosen.model.name)
    {
        report.changed_model += 1;
    }
    let line = report.model_mix.entry(chosen.model.name.clone()).or_default();
    line.requests += 1;
    line.spend += projected;
    *report.reasons.entry(decision.reason).or_default() += 1;
}

fn pct_saved(spend: Decimal, against: Decimal) -> Option<Decimal> {
    (against > Decimal::ZERO).then(|| ((against - spend) / against * Decimal::ONE_HUNDRED).round_dp(1))
}

pub fn replay_json(r: &ReplayReport) -> Value {
    json!({
        "requests": r.requests,
        "unparseable": r.unparseable,
        "refused": r.refused,
        "projected_spend_usd": r.projected_spend.round_dp(6).normalize().to_string(),
        "baseline_spend_usd": r.baseline_spend.round_dp(6).normalize().to_string(),
        "original_spend_usd": r.original_spend.round_dp(6).normalize().to_string(),
        "saved_vs_baseline_pct": pct_saved(r.projected_spend, r.baseline_spend).map(|d| d.to_string()),
        "saved_vs_original_pct": pct_saved(r.projected_spend, r.original_spend).map(|d| d.to_string()),
        "changed_model": r.changed_model,
        "heuristic_difficulty": r.heuristic_difficulty,
        "model_mix": r.model_mix.iter().map(|(m, l)| (m.clone(), json!({ "requests": l.requests, "spend_usd": l.spend.round_dp(6).normalize().to_string() }))).collect::<serde_json::Map<_, _>>(),
        "reasons": r.reasons,
    })
}

pub fn replay_text(team: &str, r: &ReplayReport) -> String {
    let mut s = String::new();
    let usd = |d: Decimal| format!("${}", d.round_dp(4));
    let pct = |p: Option<Decimal>| p.map_or_else(|| "-".to_owned(), |p| format!("{p}%"));
    s.push_str(&format!("replay for team {team}: {} request(s)", r.requests));
    if r.unparseable > 0 {
        s.push_str(&format!(", {} unparseable line(s) skipped", r.unparseable));
    }
    s.push('\n');
    s.push_str(&format!("  projected spend   {:>14}\n", usd(r.projected_spend)));
    s.push_str(&format!(
        "  baseline spend    {:>14}   saved {}\n",
        usd(r.baseline_spend),
        pct(pct_saved(r.projected_spend, r.baseline_spend))
    ));
    s.push_str(&format!(
        "  original spend    {:>14}   saved {}\n",
        usd(r.original_spend),
        pct(pct_saved(r.projected_spend, r.original_spend))
    ));
    s.push_str(&format!("  changed model     {:>14}\n", r.changed_model));
    for (kind, n) in &r.refused {
        s.push_str(&format!("  refused ({kind}) {n:>10}\n"));
    }
    if r.heuristic_difficulty > 0 {
        s.push_str(&format!(
            "  note: {} request(s) scored by the heuristic, not the classifier\n",
            r.heuristic_difficulty
        ));
    }
    s.push_str("\n  model                          requests        spend    share\n");
    for (m, l) in &r.model_mix {
        let share = if r.requests > 0 {
            l.requests as f64 * 100.0 / r.requests as f64
        } else {
            0.0
        };
        s.push_str(&format!(
            "  {m:<30} {:>8} {:>12} {share:>7.1}%\n",
            l.requests,
            usd(l.spend)
        ));
    }
    s.push_str("\n  reason                         requests\n");
    for (reason, n) in &r.reasons {
        s.push_str(&format!("  {reason:<30} {n:>8}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chat_bodies_and_ledger_rows() {
        let chat: Value = serde_json::from_str(r#"{"model":"auto","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}]}],"tools":[{"type":"function"}],"max_tokens":50}"#).unwrap();
        let row = parse_row(&chat).unwrap();
        assert_eq!(row.model, "auto");
        assert_eq!(row.text, "hi\n");
        assert!(row.needs.contains(&Capability::Vision) && row.needs.contains(&Capability::Tools));
        assert_eq!(row.max_tokens, Some(50));
        let ledger: Value = serde_json::from_str(r#"{"requested_model":"auto","routed_model":"gpt-5","input_tokens":100,"output_tokens":20,"difficulty":0.3,"task":"qa"}"#).unwrap();
        let row = parse_row(&ledger).unwrap();
        assert_eq!(
            (
                row.served.as_deref(),
                row.input_tokens,
                row.output_tokens,
                row.difficulty
            ),
            (Some("gpt-5"), Some(100), Some(20), Some(0.3))
        );
        assert!(parse_row(&json!({"hello": 1})).is_none());
    }

    #[test]
    fn heuristic_ranks_a_proof_above_a_greeting() {
        assert!(
            heuristic_difficulty("Prove that there are infinitely many primes, step by step.")
                > heuristic_difficulty("hi there")
        );
        assert_eq!(heuristic_task("format this as csv"), "extraction");
    }
}
