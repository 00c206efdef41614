//! Rebuilding the heads from outcome data, deterministically (fixed seed, full-batch optimisers).
//!
//! Inputs (JSONL, the shapes of `../shared/data/routing`):
//! - `train_gold.jsonl`: rows with `prompt`, `category`, `weak_score`, `strong_score` for the deployed weak/strong
//!   pair. Trains the subject softmax, the subject gains and the gain ridge. Anyone can retrain on their own outcome
//!   logs in this shape (`category` may be any grouping, e.g. the calling app).
//! - `train_tasktype.jsonl`: labelled prompts for the task head, and the chat side of the chat gate.
//! - `train_routing.jsonl`: MMLU-Pro items (exam-style side of the chat gate, maths/knowledge examples for the task
//!   head); optional.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::embed::{DIM, Embedder};
use super::features::{self, N as NFEAT};
use super::heads::{EMBEDDING_MODEL, FORMAT_VERSION, Heads, Linear, Softmax, sigmoid, softmax};
use super::{TaskType, text};

/// One row of any of the data files; fields absent in a file are `None`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Row {
    pub id: String,
    #[serde(default)]
    pub source: String,
    pub prompt: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub weak_score: Option<f64>,
    #[serde(default)]
    pub strong_score: Option<f64>,
    #[serde(default)]
    pub score_type: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Outcome per reference model (train_routing.jsonl): 0/1 correctness.
    #[serde(default)]
    pub all_model_scores: Option<BTreeMap<String, Option<f64>>>,
}

impl Row {
    /// Share of reference models that answered the item correctly (the IRT-style easiness of the item).
    pub fn easiness(&self) -> Option<f64> {
        let scores: Vec<f64> = self
            .all_model_scores
            .as_ref()?
            .values()
            .flatten()
            .copied()
            .collect();
        if scores.is_empty() {
            None
        } else {
            Some(scores.iter().sum::<f64>() / scores.len() as f64)
        }
    }

    /// Strong minus weak score, judge scores (1–10) mapped to 0–1.
    pub fn gain(&self) -> Option<f64> {
        let (w, s) = (self.weak_score?, self.strong_score?);
        let judge = self.score_type.as_deref().is_some_and(|t| t != "correct_0_1");
        Some(if judge { (s - w) / 9.0 } else { s - w })
    }
}

pub fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut rows = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Row =
            serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
        rows.push(row);
    }
    Ok(rows)
}

/// Hyper-parameters; the defaults are the ones measured in docs/classifier.md.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// The token budget the texts were embedded with; recorded in the heads, which the classifier then embeds with.
    pub max_tokens: usize,
    pub seed: u64,
    pub folds: usize,
    pub ridge_alpha: f64,
    pub prior_weight: f32,
    pub subject_shrink: f64,
    pub chat_low: f32,
    pub chat_high: f32,
    pub irt_alpha: f64,
    pub softmax_l2: f32,
    pub softmax_iters: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_tokens: super::heads::DEFAULT_MAX_TOKENS,
            seed: 20_241_127,
            folds: 5,
            ridge_alpha: 100.0,
            prior_weight: 3.0,
            subject_shrink: 10.0,
            chat_low: 0.0,
            chat_high: 0.3,
            irt_alpha: 10.0,
            softmax_l2: 1e-4,
            softmax_iters: 300,
        }
    }
}

/// Embeddings of texts already seen, keyed by the sha256 of the embedder's fingerprint (graph and token budget)
/// and the text, so retraining does not re-embed the data and a new model never reuses another's vectors.
/// File format: repeated records of 32 hash bytes then `DIM` little-endian f32.
pub struct EmbeddingCache {
    path: Option<PathBuf>,
    map: HashMap<[u8; 32], Vec<f32>>,
    dirty: bool,
}

impl EmbeddingCache {
    pub fn open(path: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut map = HashMap::new();
        if let Some(p) = path.as_ref().filter(|p| p.exists()) {
            let mut bytes = Vec::new();
            std::fs::File::open(p)?.read_to_end(&mut bytes)?;
            let record = 32 + 4 * DIM;
            for chunk in bytes.chunks_exact(record) {
                let mut key = [0u8; 32];
                key.copy_from_slice(&chunk[..32]);
                let v = chunk[32..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                map.insert(key, v);
            }
        }
        Ok(Self {
            path,
            map,
            dirty: false,
        })
    }

    fn key(model: &[u8; 32], text: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(model);
        h.update(text.as_bytes());
        h.finalize().into()
    }

    /// Embeds every text not yet cached (in batches, with progress on stderr) and returns all, in order.
    pub fn embed_all(&mut self, embedder: &mut Embedder, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let model = embedder.fingerprint();
        let missing: Vec<&String> = {
            let mut seen = std::collections::HashSet::new();
            texts
                .iter()
                .filter(|t| {
                    !self.map.contains_key(&Self::key(&model, t)) && seen.insert(Self::key(&model, t))
                })
                .collect()
        };
        let total = missing.len();
        for (i, chunk) in missing.chunks(64).enumerate() {
            let refs: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
            let vectors = embedder.embed(&refs)?;
            for (t, v) in chunk.iter().zip(vectors) {
                self.map.insert(Self::key(&model, t), v);
            }
            self.dirty = true;
            eprint!("\rembedding {}/{total}", (i * 64 + chunk.len()).min(total));
        }
        if total > 0 {
            eprintln!();
        }
        texts
            .iter()
            .map(|t| {
                self.map
                    .get(&Self::key(&model, t))
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("embedding missing"))
            })
            .collect()
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let (Some(path), true) = (self.path.as_ref(), self.dirty) else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut keys: Vec<&[u8; 32]> = self.map.keys().collect();
        keys.sort();
        for k in keys {
            out.write_all(k)?;
            for x in &self.map[k] {
                out.write_all(&x.to_le_bytes())?;
            }
        }
        out.flush()?;
        Ok(())
    }
}

/// The text a data row is classified by: the same extraction (and character bound) as a live prompt.
pub fn row_text(row: &Row) -> String {
    row_classify_text(row).into_string()
}

/// A row's prompt as the classifier sees it (what [`row_text`] embeds), with its focus.
pub fn row_classify_text(row: &Row) -> text::ClassifyText {
    text::from_prompt(&row.prompt)
}

/// Deterministic fold of an id: the seed and the sha256 of the id, so folds do not depend on file order.
fn fold_of(id: &str, seed: u64, folds: usize) -> usize {
    let digest = Sha256::digest(format!("{seed}:{id}").as_bytes());
    let n = u64::from_le_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    (n % folds as u64) as usize
}

/// Multinomial logistic regression by full-batch Adam on mean cross-entropy plus `l2/2 * |W|²`. Deterministic.
pub fn fit_softmax(x: &[&[f32]], y: &[usize], classes: usize, l2: f32, iters: usize) -> Softmax {
    let d = x.first().map_or(0, |r| r.len());
    let n = x.len().max(1) as f32;
    let mut w = vec![vec![0.0f32; d]; classes];
    let mut b = vec![0.0f32; classes];
    let (mut mw, mut vw) = (vec![vec![0.0f32; d]; classes], vec![vec![0.0f32; d]; classes]);
    let (mut mb, mut vb) = (vec![0.0f32; classes], vec![0.0f32; classes]);
    let (lr, b1, b2, eps) = (0.05f32, 0.9f32, 0.999f32, 1e-8f32);
    for t in 1..=iters {
        let mut gw = vec![vec![0.0f32; d]; classes];
        let mut gb = vec![0.0f32; classes];
        for (xi, &yi) in x.iter().zip(y) {
            let logits: Vec<f32> = w
                .iter()
                .zip(&b)
                .map(|(wc, bc)| super::heads::dot(wc, xi) + bc)
                .collect();
            let p = softmax(&logits);
            for c in 0..classes {
                let g = p[c] - if c == yi { 1.0 } else { 0.0 };
                if g.abs() < 1e-7 {
                    continue;
                }
                gb[c] += g;
                for (gwj, xj) in gw[c].iter_mut().zip(xi.iter()) {
                    *gwj += g * xj;
                }
            }
        }
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2 = 1.0 - b2.powi(t as i32);
        for c in 0..classes {
            for j in 0..d {
                let g = gw[c][j] / n + l2 * w[c][j];
                mw[c][j] = b1 * mw[c][j] + (1.0 - b1) * g;
                vw[c][j] = b2 * vw[c][j] + (1.0 - b2) * g * g;
                w[c][j] -= lr * (mw[c][j] / bc1) / ((vw[c][j] / bc2).sqrt() + eps);
            }
            let g = gb[c] / n;
            mb[c] = b1 * mb[c] + (1.0 - b1) * g;
            vb[c] = b2 * vb[c] + (1.0 - b2) * g * g;
            b[c] -= lr * (mb[c] / bc1) / ((vb[c] / bc2).sqrt() + eps);
        }
    }
    Softmax { weights: w, bias: b }
}

/// Ridge regression with an unpenalised intercept, solved exactly (Cholesky on the normal equations, in f64).
pub fn fit_ridge(x: &[Vec<f32>], y: &[f64], alpha: f64) -> anyhow::Result<Linear> {
    let n = x.len();
    let d = x.first().map_or(0, Vec::len);
    anyhow::ensure!(n > 0 && y.len() == n, "ridge: no rows or label count mismatch");
    let mean_x: Vec<f64> = (0..d)
        .map(|j| x.iter().map(|r| f64::from(r[j])).sum::<f64>() / n as f64)
        .collect();
    let mean_y = y.iter().sum::<f64>() / n as f64;
    let mut a = vec![0.0f64; d * d];
    let mut rhs = vec![0.0f64; d];
    let mut centred = vec![0.0f64; d];
    for (r, yi) in x.iter().zip(y) {
        for j in 0..d {
            centred[j] = f64::from(r[j]) - mean_x[j];
        }
        let yc = yi - mean_y;
        for j in 0..d {
            let cj = centred[j];
            rhs[j] += cj * yc;
            let row = &mut a[j * d..(j + 1) * d];
            for (k, ak) in row.iter_mut().enumerate().skip(j) {
                *ak += cj * centred[k];
            }
        }
    }
    for j in 0..d {
        for k in 0..j {
            a[j * d + k] = a[k * d + j];
        }
        a[j * d + j] += alpha;
    }
    let w = cholesky_solve(&mut a, &rhs, d)?;
    let bias = mean_y - w.iter().zip(&mean_x).map(|(wj, mj)| wj * mj).sum::<f64>();
    Ok(Linear {
        weights: w.iter().map(|v| *v as f32).collect(),
        bias: bias as f32,
    })
}

fn cholesky_solve(a: &mut [f64], b: &[f64], d: usize) -> anyhow::Result<Vec<f64>> {
    for j in 0..d {
        let mut s = a[j * d + j];
        for k in 0..j {
            s -= a[j * d + k] * a[j * d + k];
        }
        anyhow::ensure!(s > 0.0, "ridge system is not positive definite");
        let l = s.sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = s / l;
        }
    }
    let mut z = vec![0.0; d];
    for i in 0..d {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * d + k] * z[k];
        }
        z[i] = s / a[i * d + i];
    }
    let mut w = vec![0.0; d];
    for i in (0..d).rev() {
        let mut s = z[i];
        for k in i + 1..d {
            s -= a[k * d + i] * w[k];
        }
        w[i] = s / a[i * d + i];
    }
    Ok(w)
}

/// The task type a `train_tasktype.jsonl` row teaches, if any. just-eval rows carry several tags: the most
/// specific wins. arena-hard v0.1 topic clusters are used only where a cluster plainly names extraction/
/// transformation or conversation work, the two types the other sources lack.
pub fn task_label(row: &Row) -> Option<TaskType> {
    const ORDER: [(&str, TaskType); 9] = [
        ("coding", TaskType::Code),
        ("math", TaskType::Math),
        ("role-play", TaskType::Conversation),
        ("creative_writing", TaskType::Writing),
        ("writing", TaskType::Writing),
        ("reasoning", TaskType::Reasoning),
        ("info-seek", TaskType::Qa),
        ("procedure", TaskType::Qa),
        ("extraction", TaskType::Extraction),
    ];
    const EXTRACTION_CLUSTERS: [&str; 10] = [
        "Entity Relationship Extraction",
        "Bug-Related German Translation",
        "Lojban Language Translation",
        "Subtitle Encoding and Conversion",
        "Query Transformation Process",
        "Tag Validation Format Rules",
        "Tagging Items with Best Practices",
        "Sentiment Analysis Evaluations",
        "Review Analysis & Feedback Disposition",
        "Text Processing with Awk/Sed/Grep",
    ];
    const CONVERSATION_CLUSTERS: [&str; 5] = [
        "RPG Character Interactions",
        "Text-Based RPG Creation",
        "Rehearsed Inner Dialog Responses",
        "Bob, Alice, Relationships & Interactions",
        "Expert Panel Discussion",
    ];
    for (tag, task) in ORDER {
        if row.labels.iter().any(|l| l == tag) {
            return Some(task);
        }
    }
    if row
        .labels
        .iter()
        .any(|l| EXTRACTION_CLUSTERS.contains(&l.as_str()))
    {
        return Some(TaskType::Extraction);
    }
    if row
        .labels
        .iter()
        .any(|l| CONVERSATION_CLUSTERS.contains(&l.as_str()))
    {
        return Some(TaskType::Conversation);
    }
    None
}

/// Embedded training data.
pub struct Embedded<'a> {
    pub rows: &'a [Row],
    pub vectors: Vec<Vec<f32>>,
    pub texts: Vec<String>,
}

pub fn embed_rows<'a>(
    rows: &'a [Row],
    embedder: &mut Embedder,
    cache: &mut EmbeddingCache,
) -> anyhow::Result<Embedded<'a>> {
    let texts: Vec<String> = rows.iter().map(row_text).collect();
    let vectors = cache.embed_all(embedder, &texts)?;
    Ok(Embedded { rows, vectors, texts })
}

/// The subject head and its shrunk gains, fitted on `idx` rows of the gold data.
fn fit_subjects(
    gold: &Embedded<'_>,
    idx: &[usize],
    subjects: &[String],
    cfg: &TrainConfig,
) -> (Softmax, Vec<f32>) {
    let index: BTreeMap<&str, usize> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let label = |i: usize| {
        gold.rows[i]
            .category
            .as_deref()
            .and_then(|c| index.get(c).copied())
            .unwrap_or(0)
    };
    let x: Vec<&[f32]> = idx.iter().map(|&i| gold.vectors[i].as_slice()).collect();
    let y: Vec<usize> = idx.iter().map(|&i| label(i)).collect();
    let softmax = fit_softmax(&x, &y, subjects.len(), cfg.softmax_l2, cfg.softmax_iters);
    let gains: Vec<f64> = idx.iter().map(|&i| gold.rows[i].gain().unwrap_or(0.0)).collect();
    let global = gains.iter().sum::<f64>() / gains.len().max(1) as f64;
    let mut sum = vec![0.0f64; subjects.len()];
    let mut count = vec![0.0f64; subjects.len()];
    for (&i, g) in idx.iter().zip(&gains) {
        sum[label(i)] += g;
        count[label(i)] += 1.0;
    }
    // Shrink each subject's mean towards the global mean: subjects have ~18-50 rows, so raw means are noisy.
    let shrunk = (0..subjects.len())
        .map(|k| ((sum[k] + cfg.subject_shrink * global) / (count[k] + cfg.subject_shrink)) as f32);
    (softmax, shrunk.collect())
}

fn prior(softmax: &Softmax, gains: &[f32], v: &[f32]) -> f32 {
    super::heads::dot(&softmax.probabilities(v), gains)
}

/// Trains every head. `gold` must carry outcomes and categories; `tasks` carries labels; `exam` (optional extra
/// exam-style items) only widens the chat gate's negative side.
pub fn train(
    gold: &Embedded<'_>,
    tasks: &Embedded<'_>,
    exam: Option<&Embedded<'_>>,
    cfg: &TrainConfig,
    provenance: BTreeMap<String, String>,
) -> anyhow::Result<Heads> {
    let labelled: Vec<usize> = (0..gold.rows.len())
        .filter(|&i| gold.rows[i].gain().is_some())
        .collect();
    anyhow::ensure!(
        labelled.len() >= 50,
        "need at least 50 outcome rows, found {}",
        labelled.len()
    );
    let subjects: Vec<String> = {
        let set: std::collections::BTreeSet<String> = labelled
            .iter()
            .map(|&i| gold.rows[i].category.clone().unwrap_or_default())
            .collect();
        set.into_iter().collect()
    };

    // Structure features, standardised with the gold rows' mean and scale.
    let raw_feats: Vec<[f32; NFEAT]> = gold.texts.iter().map(|t| features::features(t)).collect();
    let mut mean = [0.0f32; NFEAT];
    let mut scale = [0.0f32; NFEAT];
    for j in 0..NFEAT {
        let vals: Vec<f32> = labelled.iter().map(|&i| raw_feats[i][j]).collect();
        let m = vals.iter().sum::<f32>() / vals.len() as f32;
        let var = vals.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / vals.len() as f32;
        mean[j] = m;
        scale[j] = var.sqrt().max(1e-6);
    }

    // Item difficulty from many models' outcomes (MMLU-Pro, 29 models): a ridge from the embedding to the share of
    // models answering the item. Without such data the head is a constant and the gain ridge ignores it.
    eprintln!("item difficulty (IRT) ridge");
    let irt = match exam {
        Some(e) => {
            let (xs, ys): (Vec<Vec<f32>>, Vec<f64>) = e
                .rows
                .iter()
                .zip(&e.vectors)
                .filter_map(|(r, v)| r.easiness().map(|y| (v.clone(), y)))
                .unzip();
            if xs.len() >= 50 {
                fit_ridge(&xs, &ys, cfg.irt_alpha)?
            } else {
                Linear {
                    weights: vec![0.0; DIM],
                    bias: 0.5,
                }
            }
        }
        None => Linear {
            weights: vec![0.0; DIM],
            bias: 0.5,
        },
    };
    let irt_values: Vec<f32> = labelled.iter().map(|&i| irt.apply(&gold.vectors[i])).collect();
    let irt_mean = irt_values.iter().sum::<f32>() / irt_values.len() as f32;
    let irt_scale = (irt_values
        .iter()
        .map(|v| (v - irt_mean) * (v - irt_mean))
        .sum::<f32>()
        / irt_values.len() as f32)
        .sqrt()
        .max(1e-6);

    // Out-of-fold topic prior for the ridge's training rows: an in-sample prior would look better than it is at
    // inference and the ridge would lean on it too much.
    let mut oof_prior = vec![0.0f32; gold.rows.len()];
    for fold in 0..cfg.folds {
        let (train_idx, test_idx): (Vec<usize>, Vec<usize>) = labelled
            .iter()
            .partition(|&&i| fold_of(&gold.rows[i].id, cfg.seed, cfg.folds) != fold);
        eprintln!("topic prior fold {}/{}", fold + 1, cfg.folds);
        let (s, g) = fit_subjects(gold, &train_idx, &subjects, cfg);
        for i in test_idx {
            oof_prior[i] = prior(&s, &g, &gold.vectors[i]);
        }
    }
    eprintln!("topic prior, all rows");
    let (subject, subject_gain) = fit_subjects(gold, &labelled, &subjects, cfg);

    let x: Vec<Vec<f32>> = labelled
        .iter()
        .map(|&i| {
            let mut r = Vec::with_capacity(DIM + NFEAT + 2);
            r.extend_from_slice(&gold.vectors[i]);
            r.extend((0..NFEAT).map(|j| (raw_feats[i][j] - mean[j]) / scale[j]));
            r.push(cfg.prior_weight * oof_prior[i]);
            r.push((irt.apply(&gold.vectors[i]) - irt_mean) / irt_scale);
            r
        })
        .collect();
    let y: Vec<f64> = labelled
        .iter()
        .map(|&i| gold.rows[i].gain().unwrap_or(0.0))
        .collect();
    eprintln!("gain ridge");
    let gain = fit_ridge(&x, &y, cfg.ridge_alpha)?;

    // Chat gate: task-type prompts (open-ended chat work) against exam-style items.
    eprintln!("chat gate");
    let mut gx: Vec<&[f32]> = tasks.vectors.iter().map(Vec::as_slice).collect();
    let mut gy: Vec<usize> = vec![1; gx.len()];
    for v in gold
        .vectors
        .iter()
        .chain(exam.map(|e| e.vectors.iter()).into_iter().flatten())
    {
        gx.push(v);
        gy.push(0);
    }
    let gate = fit_softmax(&gx, &gy, 2, cfg.softmax_l2, cfg.softmax_iters);
    let chat = Linear {
        weights: gate.weights[1]
            .iter()
            .zip(&gate.weights[0])
            .map(|(a, b)| a - b)
            .collect(),
        bias: gate.bias[1] - gate.bias[0],
    };

    // Hardness among chat prompts: arena-hard (selected for difficulty) against everyday just-eval instructions.
    eprintln!("chat hardness");
    let hx_owned: Vec<Vec<f32>> = tasks
        .vectors
        .iter()
        .zip(&tasks.texts)
        .map(|(v, t)| {
            let f = features::features(t);
            let mut r = v.clone();
            r.extend((0..NFEAT).map(|j| (f[j] - mean[j]) / scale[j]));
            r
        })
        .collect();
    let hx: Vec<&[f32]> = hx_owned.iter().map(Vec::as_slice).collect();
    let hy: Vec<usize> = tasks
        .rows
        .iter()
        .map(|r| usize::from(r.source.starts_with("arena")))
        .collect();
    let hard_gate = fit_softmax(&hx, &hy, 2, cfg.softmax_l2, cfg.softmax_iters);
    let hard = Linear {
        weights: hard_gate.weights[1]
            .iter()
            .zip(&hard_gate.weights[0])
            .map(|(a, b)| a - b)
            .collect(),
        bias: hard_gate.bias[1] - hard_gate.bias[0],
    };

    // Task head: labelled prompts, plus GSM8K as maths and a share of MMLU as knowledge questions so exam-style
    // items are not forced into a chat category.
    eprintln!("task head");
    let mut tx: Vec<&[f32]> = Vec::new();
    let mut ty: Vec<usize> = Vec::new();
    for (i, row) in tasks.rows.iter().enumerate() {
        if let Some(t) = task_label(row) {
            tx.push(&tasks.vectors[i]);
            ty.push(t.index());
        }
    }
    for (k, &i) in labelled.iter().enumerate() {
        let is_math = gold.rows[i].source.contains("gsm8k");
        if is_math || k % 6 == 0 {
            tx.push(&gold.vectors[i]);
            ty.push(if is_math {
                TaskType::Math.index()
            } else {
                TaskType::Qa.index()
            });
        }
    }
    let task = fit_softmax(&tx, &ty, TaskType::ALL.len(), cfg.softmax_l2, cfg.softmax_iters);

    let mut heads = Heads {
        format_version: FORMAT_VERSION,
        embedding_model: EMBEDDING_MODEL.to_owned(),
        dim: DIM,
        max_tokens: cfg.max_tokens,
        provenance,
        task_classes: TaskType::ALL.to_vec(),
        task,
        feature_names: features::NAMES.iter().map(|s| (*s).to_owned()).collect(),
        feature_mean: mean.to_vec(),
        feature_scale: scale.to_vec(),
        subjects,
        subject,
        subject_gain,
        prior_weight: cfg.prior_weight,
        irt,
        irt_mean,
        irt_scale,
        gain,
        chat,
        hard,
        chat_low: cfg.chat_low,
        chat_high: cfg.chat_high,
        center: 0.0,
        scale: 1.0,
    };
    // Squash so that the training rows' median maps to 0.5 and one standard deviation to about ±0.23.
    let mut raws: Vec<f32> = gold
        .vectors
        .iter()
        .zip(&gold.texts)
        .chain(tasks.vectors.iter().zip(&tasks.texts))
        .map(|(v, t)| heads.raw_gain(v, t))
        .collect();
    raws.sort_by(f32::total_cmp);
    let median = raws.get(raws.len() / 2).copied().unwrap_or(0.0);
    let m = raws.iter().sum::<f32>() / raws.len().max(1) as f32;
    let sd = (raws.iter().map(|r| (r - m) * (r - m)).sum::<f32>() / raws.len().max(1) as f32).sqrt();
    heads.center = median;
    heads.scale = sd.max(1e-3);
    heads
        .validate()
        .map_err(|e| anyhow::anyhow!("trained heads are invalid: {e}"))?;
    debug_assert!(sigmoid(0.0) == 0.5);
    Ok(heads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_function() {
        let x: Vec<Vec<f32>> = (0..50)
            .map(|i| vec![i as f32 / 10.0, ((i * 7) % 5) as f32])
            .collect();
        let y: Vec<f64> = x
            .iter()
            .map(|r| 2.0 * f64::from(r[0]) - f64::from(r[1]) + 0.5)
            .collect();
        let m = fit_ridge(&x, &y, 1e-6).unwrap();
        assert!(
            (m.weights[0] - 2.0).abs() < 1e-3 && (m.weights[1] + 1.0).abs() < 1e-3,
            "{m:?}"
        );
        assert!((m.bias - 0.5).abs() < 1e-3);
    }

    #[test]
    fn softmax_separates_separable_classes() {
        let data: Vec<Vec<f32>> = vec![vec![1.0, 0.0], vec![0.9, 0.1], vec![0.0, 1.0], vec![0.1, 0.9]];
        let x: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        let m = fit_softmax(&x, &[0, 0, 1, 1], 2, 1e-4, 200);
        assert!(m.probabilities(&[1.0, 0.0])[0] > 0.9);
        assert!(m.probabilities(&[0.0, 1.0])[1] > 0.9);
    }

    #[test]
    fn folds_are_deterministic_and_balanced() {
        let counts = (0..1000).fold([0; 5], |mut c, i| {
            c[fold_of(&format!("id{i}"), 7, 5)] += 1;
            c
        });
        assert!(counts.iter().all(|&c| (150..250).contains(&c)), "{counts:?}");
        assert_eq!(fold_of("x", 1, 5), fold_of("x", 1, 5));
    }

    #[test]
    fn task_labels() {
        let row = |labels: &[&str]| Row {
            id: String::new(),
            source: String::new(),
            prompt: String::new(),
            category: None,
            weak_score: None,
            strong_score: None,
            score_type: None,
            all_model_scores: None,
            labels: labels.iter().map(|s| (*s).to_owned()).collect(),
        };
        assert_eq!(
            task_label(&row(&["info-seek", "reasoning"])),
            Some(TaskType::Reasoning)
        );
        assert_eq!(task_label(&row(&["coding", "info-seek"])), Some(TaskType::Code));
        assert_eq!(
            task_label(&row(&["Lojban Language Translation"])),
            Some(TaskType::Extraction)
        );
        assert_eq!(task_label(&row(&["Web Development & APIs"])), None);
    }
}
