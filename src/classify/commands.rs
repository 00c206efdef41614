//! `switchyard score | eval | train`: the classifier's command-line contracts.
//!
//! - `score`: JSONL on stdin (`id` plus `prompt` or OpenAI `messages`), JSONL on stdout (`id`, `difficulty`,
//!   `task`, `task_scores`), progress on stderr.
//! - `eval --data FILE`: route_eval.py's table per source, ALL and MIX; the curve as CSV and SVG.
//! - `train`: rebuilds the shipped heads from the routing data with a fixed seed.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::embed::Embedder;
use super::eval::{self, Outcome};
use super::heads::Heads;
use super::train::{self, EmbeddingCache, TrainConfig};
use super::{ClassifierSettings, ClassifyText, text};

/// Where the model files are; defaults match `ClassifierSettings::default()`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Folder with model.onnx and the tokenizer files.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime shared library.
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// Trained heads (JSON).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Texts per ONNX run. 1 gives each text the vector the proxy computes (the dynamic-int8 graph's activation
    /// scale is per run); larger batches are faster only with little length spread and change vectors slightly.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Token budget per text. Default: the budget recorded in the heads (`train`: 32, see docs/classifier.md).
    #[arg(long)]
    pub max_tokens: Option<usize>,
}

impl ModelArgs {
    pub fn settings(&self) -> ClassifierSettings {
        let mut s = ClassifierSettings::default();
        if let Some(p) = &self.model_dir {
            s.model_dir.clone_from(p);
        }
        if let Some(p) = &self.ort_library {
            s.ort_library.clone_from(p);
        }
        if let Some(p) = &self.weights {
            s.weights.clone_from(p);
        }
        s.threads = self.threads;
        s.max_batch = self.batch;
        s.max_tokens = self.max_tokens;
        s
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Rows shaped like dev_routing.jsonl (id, source, prompt, weak_score, strong_score, score_type).
    #[arg(long)]
    pub data: PathBuf,
    /// Use these precomputed scores (JSONL rows `{"id", "difficulty"}`) instead of running the classifier.
    #[arg(long, conflicts_with = "router")]
    pub scores: Option<PathBuf>,
    /// A reference router instead of the classifier: `length`, `random` or `oracle` (as route_eval.py).
    #[arg(long)]
    pub router: Option<String>,
    /// Output prefix: writes PREFIX.csv and PREFIX.svg.
    #[arg(long, default_value = "eval-curve")]
    pub out: PathBuf,
    /// Print the metrics as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Folder with train_gold.jsonl, train_tasktype.jsonl and (optionally) train_routing.jsonl.
    #[arg(long, default_value = "../shared/data/routing")]
    pub data_dir: PathBuf,
    /// Outcome rows to train the gain heads on, instead of DATA_DIR/train_gold.jsonl (e.g. your own logs).
    #[arg(long)]
    pub outcomes: Option<PathBuf>,
    /// Where to write the heads.
    #[arg(long, default_value = super::heads::DEFAULT_WEIGHTS)]
    pub out: PathBuf,
    /// Embedding cache, so retraining does not re-embed unchanged texts.
    #[arg(long, default_value = ".data/cache/embeddings.bin")]
    pub cache: PathBuf,
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Expected gain of an everyday chat prompt (no outcome data covers chat prompts).
    #[arg(long, default_value_t = TrainConfig::default().chat_low)]
    pub chat_low: f32,
    /// Expected gain of a hard, arena-hard-like chat prompt.
    #[arg(long, default_value_t = TrainConfig::default().chat_high)]
    pub chat_high: f32,
    #[arg(long, default_value_t = TrainConfig::default().ridge_alpha)]
    pub ridge_alpha: f64,
    #[arg(long, default_value_t = TrainConfig::default().prior_weight)]
    pub prior_weight: f32,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// One input line of `score`.
#[derive(Debug, serde::Deserialize)]
struct ScoreInput {
    id: serde_json::Value,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<serde_json::Value>,
}

/// Loads the model and the heads for a command (the sync path: commands batch themselves).
fn load(model: &ModelArgs) -> anyhow::Result<(Embedder, Heads)> {
    let settings = model.settings();
    let heads = Heads::load(&settings.weights)?;
    let embedder = Embedder::load(&settings, heads.budget(settings.max_tokens), settings.threads)?;
    Ok((embedder, heads))
}

/// Scores texts in batches; `progress` labels the stderr progress line.
fn score_texts(
    embedder: &mut Embedder,
    heads: &Heads,
    texts: &[ClassifyText],
    progress: &str,
) -> anyhow::Result<Vec<super::heads::HeadOutput>> {
    let started = Instant::now();
    let mut out = Vec::with_capacity(texts.len());
    let chunk = 128;
    for (i, part) in texts.chunks(chunk).enumerate() {
        let refs: Vec<&ClassifyText> = part.iter().collect();
        let vectors = embedder.embed_texts(&refs)?;
        out.extend(vectors.iter().zip(part).map(|(v, t)| heads.infer(v, t.as_str())));
        if texts.len() > chunk {
            eprint!(
                "\r{progress}: {}/{} ({:.1}s)",
                (i * chunk + part.len()),
                texts.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    if texts.len() > chunk {
        eprintln!();
    }
    Ok(out)
}

/// `switchyard score`: stdin to stdout.
pub fn score(args: &ScoreArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    score_io(args, std::io::stdin().lock(), &mut out)?;
    out.flush()?;
    Ok(())
}

/// `score` over any reader and writer (tests use buffers).
pub fn score_io(args: &ScoreArgs, input: impl BufRead, out: &mut impl Write) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let input: ScoreInput =
            serde_json::from_str(&line).with_context(|| format!("stdin line {}", n + 1))?;
        let text = match (&input.prompt, &input.messages) {
            (Some(p), _) => text::from_prompt(p),
            (None, Some(m)) => {
                text::from_chat_messages(m).with_context(|| format!("stdin line {}", n + 1))?
            }
            (None, None) => anyhow::bail!("stdin line {}: needs `prompt` or `messages`", n + 1),
        };
        ids.push(input.id);
        texts.push(text);
    }
    let (mut embedder, heads) = load(&args.model)?;
    let outputs = score_texts(&mut embedder, &heads, &texts, "scored")?;
    for (id, o) in ids.into_iter().zip(outputs) {
        let task_scores: BTreeMap<&str, f32> = o.task_scores.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let line = serde_json::json!({
            "id": id,
            "difficulty": o.difficulty,
            "task": o.task.as_str(),
            "task_scores": task_scores,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// route_eval.py's reference routers.
fn reference_difficulty(router: &str, row: &train::Row) -> anyhow::Result<f64> {
    Ok(match router {
        "length" => row.prompt.chars().count() as f64,
        "random" => {
            let digest = hex::encode(Sha256::digest(format!("rnd{}", row.id).as_bytes()));
            u64::from_str_radix(&digest[..12], 16)? as f64
        }
        "oracle" => row.gain().unwrap_or(0.0),
        other => anyhow::bail!("unknown router {other:?} (length, random or oracle)"),
    })
}

/// `switchyard eval`.
pub fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    let rows: Vec<train::Row> = train::read_rows(&args.data)?
        .into_iter()
        .filter(|r| r.weak_score.is_some() && r.strong_score.is_some())
        .collect();
    anyhow::ensure!(
        !rows.is_empty(),
        "{}: no rows with both scores",
        args.data.display()
    );
    let difficulty: Vec<f64> = if let Some(path) = &args.scores {
        let mut map = HashMap::new();
        for line in std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let id = match &v["id"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let d = v["difficulty"]
                .as_f64()
                .context("scores row without numeric difficulty")?;
            map.insert(id, d);
        }
        rows.iter()
            .map(|r| {
                map.get(&r.id)
                    .copied()
                    .with_context(|| format!("no score for id {}", r.id))
            })
            .collect::<anyhow::Result<_>>()?
    } else if let Some(router) = &args.router {
        rows.iter()
            .map(|r| reference_difficulty(router, r))
            .collect::<anyhow::Result<_>>()?
    } else {
        let (mut embedder, heads) = load(&args.model)?;
        let texts: Vec<ClassifyText> = rows.iter().map(train::row_classify_text).collect();
        score_texts(&mut embedder, &heads, &texts, "scored")?
            .iter()
            .map(|o| f64::from(o.difficulty))
            .collect()
    };
    let outcomes: Vec<Outcome> = rows
        .iter()
        .zip(difficulty)
        .map(|(r, d)| Outcome {
            id: r.id.clone(),
            source: r.source.clone(),
            zero_one: r.score_type.as_deref().is_none_or(|t| t == "correct_0_1"),
            weak: r.weak_score.unwrap_or(0.0),
            strong: r.strong_score.unwrap_or(0.0),
            difficulty: d,
        })
        .collect();
    let report = eval::report(&outcomes);
    if args.json {
        let m: BTreeMap<&String, &eval::Metrics> = report.iter().map(|(k, (m, _))| (k, m)).collect();
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        print!("{}", eval::format_table(&report));
    }
    let csv = args.out.with_extension("csv");
    let svg = args.out.with_extension("svg");
    std::fs::write(&csv, eval::curves_csv(&report)).with_context(|| csv.display().to_string())?;
    let title = format!(
        "Cost–quality curve: {}",
        args.data
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned())
    );
    std::fs::write(&svg, eval::curves_svg(&report, &title)).with_context(|| svg.display().to_string())?;
    eprintln!("wrote {} and {}", csv.display(), svg.display());
    Ok(())
}

/// `switchyard train`.
pub fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let gold_path = args
        .outcomes
        .clone()
        .unwrap_or_else(|| args.data_dir.join("train_gold.jsonl"));
    let task_path = args.data_dir.join("train_tasktype.jsonl");
    let exam_path = args.data_dir.join("train_routing.jsonl");
    let gold_rows = train::read_rows(&gold_path)?;
    let task_rows = train::read_rows(&task_path)?;
    let exam_rows = if exam_path.exists() {
        Some(train::read_rows(&exam_path)?)
    } else {
        None
    };

    let settings = args.model.settings();
    let max_tokens = settings.max_tokens.unwrap_or(super::heads::DEFAULT_MAX_TOKENS);
    let mut embedder = Embedder::load(&settings, max_tokens, settings.threads)?;
    let mut cache = EmbeddingCache::open(Some(args.cache.clone()))?;
    eprintln!(
        "embedding {} outcome rows, {} task rows",
        gold_rows.len(),
        task_rows.len()
    );
    let gold = train::embed_rows(&gold_rows, &mut embedder, &mut cache)?;
    let tasks = train::embed_rows(&task_rows, &mut embedder, &mut cache)?;
    let exam = match &exam_rows {
        Some(rows) => Some(train::embed_rows(rows, &mut embedder, &mut cache)?),
        None => None,
    };
    cache.save()?;

    let cfg = TrainConfig {
        max_tokens,
        seed: args.seed,
        chat_low: args.chat_low,
        chat_high: args.chat_high,
        ridge_alpha: args.ridge_alpha,
        prior_weight: args.prior_weight,
        ..TrainConfig::default()
    };
    let mut provenance = BTreeMap::new();
    for (name, path) in [
        ("outcomes", &gold_path),
        ("tasks", &task_path),
        ("exam_items", &exam_path),
    ] {
        if path.exists() {
            let digest = hex::encode(Sha256::digest(std::fs::read(path)?));
            // The file name only: an absolute path would make the shipped file depend on where it was built.
            let file = path
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
            provenance.insert(name.to_owned(), format!("{file} sha256:{digest}"));
        }
    }
    provenance.insert(
        "trainer".to_owned(),
        format!("switchyard {} train", env!("CARGO_PKG_VERSION")),
    );
    provenance.insert("config".to_owned(), format!("{cfg:?}"));
    let heads = train::train(&gold, &tasks, exam.as_ref(), &cfg, provenance)?;
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec(&heads)?)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
