//! The trained heads and their inference: pure arithmetic on an embedding and the text's structure features.
//!
//! Difficulty is the expected *gain* from the strong model (strong score minus weak score, judge scores mapped to
//! 0–1), not the weak model's failure rate: rows both models miss cannot be fixed by routing. It is computed as
//! 1. a **topic prior**: a softmax over the training subjects (57 MMLU subjects plus GSM8K) weighted by each
//!    subject's shrunk mean gain — which subjects the weak model lags in is the strongest signal measured;
//! 2. a **ridge regression** of the gain on the embedding, the standardised structure features and that prior;
//! 3. a **chat gate**: the probability that the text is open-ended chat work (arena-style) rather than an exam-style
//!    item; such prompts get a prior gain, since there is no outcome data for them in training;
//! 4. a strictly increasing squash to (0, 1), so thresholds are comparable while the ranking is unchanged.
//!
//! See `docs/classifier.md` for the measurements behind each choice.

use std::collections::BTreeMap;
use std::path::Path;

use super::embed::{DIM, MAX_TOKENS, MIN_TOKENS};
use super::features::{self, N as NFEAT};
use super::{ClassifyError, TaskType};

/// Where the shipped weights live, relative to the repository root.
pub const DEFAULT_WEIGHTS: &str = "models/classifier-heads.json";
/// The embedding these heads were trained on; loading refuses weights made for another.
pub const EMBEDDING_MODEL: &str = "all-MiniLM-L6-v2-dynint8";
/// Bumped when the file's meaning changes.
pub const FORMAT_VERSION: u32 = 1;
/// The token budget `switchyard train` embeds with unless told otherwise. Chosen by measurement (docs/classifier.md):
/// on the dev set 32, 48, 64, 128 and 256 tokens route equally well within noise (the topic and the structure
/// features, computed on the whole text, carry the signal), while a 256-token text costs ~10x a 32-token one.
pub const DEFAULT_MAX_TOKENS: usize = 32;
/// The budget of weights files written before the budget was recorded.
const LEGACY_MAX_TOKENS: usize = 256;

fn legacy_max_tokens() -> usize {
    LEGACY_MAX_TOKENS
}
/// Width of the gain ridge's input: embedding, structure features, topic prior, item difficulty.
pub const GAIN_INPUTS: usize = DIM + NFEAT + 2;

/// A linear softmax classifier: `weights` is `classes × inputs`, row-major.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Softmax {
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
}

impl Softmax {
    /// Class probabilities for one input vector.
    pub fn probabilities(&self, x: &[f32]) -> Vec<f32> {
        let logits: Vec<f32> = self
            .weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| dot(w, x) + b)
            .collect();
        softmax(&logits)
    }
}

/// A linear model `w·x + b` (ridge regression, or a logistic model's logit).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Linear {
    pub weights: Vec<f32>,
    pub bias: f32,
}

impl Linear {
    pub fn apply(&self, x: &[f32]) -> f32 {
        dot(&self.weights, x) + self.bias
    }
}

/// Everything `switchyard train` produces; serialised as JSON in [`DEFAULT_WEIGHTS`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heads {
    pub format_version: u32,
    pub embedding_model: String,
    pub dim: usize,
    /// The token budget the training texts were embedded with; the classifier embeds with it too unless
    /// `classifier.max_tokens` says otherwise.
    #[serde(default = "legacy_max_tokens")]
    pub max_tokens: usize,
    /// What data and settings made this file (free-form, for people).
    pub provenance: BTreeMap<String, String>,
    /// Task type per output of `task`.
    pub task_classes: Vec<TaskType>,
    pub task: Softmax,
    /// Names of the structure features, checked against [`features::NAMES`].
    pub feature_names: Vec<String>,
    pub feature_mean: Vec<f32>,
    pub feature_scale: Vec<f32>,
    /// Training subjects, one per output of `subject`.
    pub subjects: Vec<String>,
    pub subject: Softmax,
    /// Shrunk mean gain per subject.
    pub subject_gain: Vec<f32>,
    /// How much the topic prior is scaled before it enters the ridge (it is on a different scale from the rest).
    pub prior_weight: f32,
    /// Ridge over the embedding: the predicted share of reference models that answer the item correctly.
    pub irt: Linear,
    /// Standardisation of `irt`'s output before it enters the gain ridge.
    pub irt_mean: f32,
    pub irt_scale: f32,
    /// Ridge over `[embedding, standardised features, prior_weight * prior, standardised irt]`.
    pub gain: Linear,
    /// Logistic: chat-style prompt versus exam-style item, over the embedding.
    pub chat: Linear,
    /// Logistic: arena-hard-like (hard) versus everyday chat prompt, over the embedding and the standardised
    /// structure features (length matters: a one-word message is never hard).
    pub hard: Linear,
    /// Expected gain of an everyday chat prompt.
    pub chat_low: f32,
    /// Expected gain of a hard (arena-hard-like) chat prompt.
    pub chat_high: f32,
    /// `difficulty = sigmoid((raw - center) / scale)`.
    pub center: f32,
    pub scale: f32,
}

/// What the heads say about one embedded text.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadOutput {
    pub difficulty: f32,
    /// The expected gain before squashing (useful for debugging and calibration).
    pub raw: f32,
    pub task: TaskType,
    pub task_scores: BTreeMap<TaskType, f32>,
}

impl Heads {
    /// Reads and validates a weights file.
    pub fn load(path: &Path) -> Result<Self, ClassifyError> {
        let bytes = std::fs::read(path).map_err(|e| ClassifyError::ModelMissing {
            path: path.to_path_buf(),
            reason: e.to_string(),
            hint: "the weights ship in the repository as models/classifier-heads.json; `switchyard train` rebuilds \
                   them, and classifier.weights points elsewhere",
        })?;
        let heads: Heads = serde_json::from_slice(&bytes).map_err(|e| ClassifyError::Weights {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        heads.validate().map_err(|reason| ClassifyError::Weights {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(heads)
    }

    /// The token budget to embed with: `configured` if set, else the one these heads were trained with. A budget
    /// other than the training one is allowed (e.g. to trade quality for speed) and logged, since it shifts scores.
    pub fn budget(&self, configured: Option<usize>) -> usize {
        match configured {
            Some(n) if n != self.max_tokens => {
                tracing::warn!(
                    configured = n,
                    trained = self.max_tokens,
                    "classifier.max_tokens differs from the budget the heads were trained with; scores shift a \
                     little (retrain with `switchyard train --max-tokens {n}` to match)"
                );
                n
            }
            Some(n) => n,
            None => self.max_tokens,
        }
    }

    /// Checks every shape, so inference can index without further checks.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.format_version != FORMAT_VERSION {
            problems.push(format!(
                "format_version {} (expected {FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.embedding_model != EMBEDDING_MODEL || self.dim != DIM {
            problems.push(format!(
                "made for embedding {} of width {} (this build uses {EMBEDDING_MODEL}, {DIM})",
                self.embedding_model, self.dim
            ));
        }
        if !(MIN_TOKENS..=MAX_TOKENS).contains(&self.max_tokens) {
            problems.push(format!(
                "max_tokens {} outside {MIN_TOKENS}..={MAX_TOKENS}",
                self.max_tokens
            ));
        }
        let names: Vec<&str> = self.feature_names.iter().map(String::as_str).collect();
        if names != features::NAMES {
            problems.push("feature names differ from this build's".to_owned());
        }
        if self.feature_mean.len() != NFEAT || self.feature_scale.len() != NFEAT {
            problems.push("feature mean/scale length".to_owned());
        }
        if self.feature_scale.iter().any(|s| *s <= 0.0) {
            problems.push("feature scale must be positive".to_owned());
        }
        check_softmax(&self.task, self.task_classes.len(), DIM, "task", &mut problems);
        if self.task_classes.is_empty() {
            problems.push("no task classes".to_owned());
        }
        check_softmax(&self.subject, self.subjects.len(), DIM, "subject", &mut problems);
        if self.subject_gain.len() != self.subjects.len() {
            problems.push("subject_gain length".to_owned());
        }
        if self.gain.weights.len() != GAIN_INPUTS {
            problems.push(format!(
                "gain weights length {} (expected {GAIN_INPUTS})",
                self.gain.weights.len()
            ));
        }
        if self.irt.weights.len() != DIM || self.irt_scale <= 0.0 {
            problems.push("irt head shape or scale".to_owned());
        }
        if self.chat.weights.len() != DIM || self.hard.weights.len() != DIM + NFEAT {
            problems.push("chat weights length".to_owned());
        }
        if self.scale <= 0.0 {
            problems.push("scale must be positive".to_owned());
        }
        let all_finite = [
            &self.gain.weights,
            &self.chat.weights,
            &self.irt.weights,
            &self.subject_gain,
            &self.feature_mean,
        ]
        .iter()
        .all(|v| v.iter().all(|x| x.is_finite()))
            && self
                .task
                .weights
                .iter()
                .chain(&self.subject.weights)
                .all(|r| r.iter().all(|x| x.is_finite()));
        if !all_finite {
            problems.push("non-finite weights".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Standardised structure features of `text`.
    pub fn standard_features(&self, text: &str) -> [f32; NFEAT] {
        let mut f = features::features(text);
        for (i, v) in f.iter_mut().enumerate() {
            *v = (*v - self.feature_mean[i]) / self.feature_scale[i];
        }
        f
    }

    /// The topic prior: expected gain under the subject softmax.
    pub fn prior(&self, embedding: &[f32]) -> f32 {
        dot(&self.subject.probabilities(embedding), &self.subject_gain)
    }

    /// The expected gain before squashing.
    pub fn raw_gain(&self, embedding: &[f32], text: &str) -> f32 {
        let x = self.gain_inputs(embedding, text);
        let exam = self.gain.apply(&x);
        let p_chat = sigmoid(self.chat.apply(embedding));
        let p_hard = sigmoid(self.hard.apply(&x[..DIM + NFEAT]));
        (1.0 - p_chat) * exam + p_chat * (self.chat_low + (self.chat_high - self.chat_low) * p_hard)
    }

    /// The gain ridge's input vector.
    pub fn gain_inputs(&self, embedding: &[f32], text: &str) -> Vec<f32> {
        let mut x = Vec::with_capacity(GAIN_INPUTS);
        x.extend_from_slice(embedding);
        x.extend_from_slice(&self.standard_features(text));
        x.push(self.prior_weight * self.prior(embedding));
        x.push((self.irt.apply(embedding) - self.irt_mean) / self.irt_scale);
        x
    }

    /// Full inference for one text and its (normalised) embedding. Infallible: shapes were validated at load.
    pub fn infer(&self, embedding: &[f32], text: &str) -> HeadOutput {
        let raw = self.raw_gain(embedding, text);
        let probabilities = self.task.probabilities(embedding);
        let mut task_scores = BTreeMap::new();
        let mut best = (TaskType::Qa, f32::MIN);
        for (class, p) in self.task_classes.iter().zip(&probabilities) {
            task_scores.insert(*class, *p);
            if *p > best.1 {
                best = (*class, *p);
            }
        }
        HeadOutput {
            difficulty: sigmoid((raw - self.center) / self.scale),
            raw,
            task: best.0,
            task_scores,
        }
    }
}

fn check_softmax(s: &Softmax, classes: usize, inputs: usize, name: &str, problems: &mut Vec<String>) {
    if s.weights.len() != classes || s.bias.len() != classes || s.weights.iter().any(|r| r.len() != inputs) {
        problems.push(format!("{name} head shape"));
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Small hand-made heads whose outputs can be worked out by hand.
    pub(crate) fn fixed_heads() -> Heads {
        let mut task_w = vec![vec![0.0; DIM]; 7];
        task_w[0][0] = 4.0; // dimension 0 means code
        task_w[1][1] = 4.0; // dimension 1 means maths
        let mut gain_w = vec![0.0; GAIN_INPUTS];
        gain_w[0] = 0.5;
        gain_w[DIM + NFEAT] = 1.0;
        Heads {
            format_version: FORMAT_VERSION,
            embedding_model: EMBEDDING_MODEL.to_owned(),
            dim: DIM,
            max_tokens: DEFAULT_MAX_TOKENS,
            provenance: BTreeMap::new(),
            task_classes: TaskType::ALL.to_vec(),
            task: Softmax {
                weights: task_w,
                bias: vec![0.0; 7],
            },
            feature_names: features::NAMES.iter().map(|s| (*s).to_owned()).collect(),
            feature_mean: features::features("").to_vec(),
            feature_scale: vec![1.0; NFEAT],
            subjects: vec!["a".into(), "b".into()],
            subject: Softmax {
                weights: vec![vec![0.0; DIM], vec![0.0; DIM]],
                bias: vec![0.0, 0.0],
            },
            subject_gain: vec![0.1, 0.3],
            prior_weight: 1.0,
            irt: Linear {
                weights: vec![0.0; DIM],
                bias: 0.5,
            },
            irt_mean: 0.5,
            irt_scale: 1.0,
            gain: Linear {
                weights: gain_w,
                bias: 0.0,
            },
            chat: Linear {
                weights: vec![0.0; DIM],
                bias: -30.0,
            },
            hard: Linear {
                weights: vec![0.0; DIM + NFEAT],
                bias: 0.0,
            },
            chat_low: 0.1,
            chat_high: 0.3,
            center: 0.0,
            scale: 1.0,
        }
    }

    fn unit(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; DIM];
        v[i] = 1.0;
        v
    }

    #[test]
    fn fixed_vectors() {
        let h = fixed_heads();
        h.validate().unwrap();
        // Dimension 0: gain 0.5 from the embedding plus the prior (0.1 + 0.3) / 2 = 0.2 → raw 0.7.
        let out = h.infer(&unit(0), "");
        assert!((out.raw - 0.7).abs() < 1e-4, "{}", out.raw);
        assert!((out.difficulty - sigmoid(0.7)).abs() < 1e-4);
        assert_eq!(out.task, TaskType::Code);
        let e4 = 4f32.exp();
        assert!((out.task_scores[&TaskType::Code] - e4 / (e4 + 6.0)).abs() < 1e-5);
        let sum: f32 = out.task_scores.values().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        let out = h.infer(&unit(1), "");
        assert_eq!(out.task, TaskType::Math);
        assert!((out.raw - 0.2).abs() < 1e-4);
    }

    #[test]
    fn chat_gate_uses_the_hardness_model() {
        let mut h = fixed_heads();
        h.chat.bias = 30.0;
        // p_hard = 0.5 → halfway between chat_low and chat_high.
        assert!((h.infer(&unit(0), "").raw - 0.2).abs() < 1e-4);
        h.hard.bias = 30.0;
        assert!((h.infer(&unit(0), "").raw - 0.3).abs() < 1e-4);
    }

    #[test]
    fn validation_reports_every_problem() {
        let mut h = fixed_heads();
        h.dim = 3;
        h.gain.weights.pop();
        h.scale = 0.0;
        let err = h.validate().unwrap_err();
        assert!(
            err.contains("width") && err.contains("gain weights") && err.contains("scale"),
            "{err}"
        );
    }

    #[test]
    fn json_round_trip() {
        let h = fixed_heads();
        let back: Heads = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn the_budget_is_the_trained_one_unless_configured() {
        let h = fixed_heads();
        assert_eq!(h.budget(None), DEFAULT_MAX_TOKENS);
        assert_eq!(h.budget(Some(DEFAULT_MAX_TOKENS)), DEFAULT_MAX_TOKENS);
        assert_eq!(h.budget(Some(128)), 128);
        // A file written before the budget was recorded was trained at 256 tokens.
        let mut json = serde_json::to_value(&h).unwrap();
        json.as_object_mut().unwrap().remove("max_tokens");
        let old: Heads = serde_json::from_value(json).unwrap();
        assert_eq!(old.budget(None), 256);
        let mut bad = h;
        bad.max_tokens = 8;
        assert!(bad.validate().unwrap_err().contains("max_tokens"));
    }
}
