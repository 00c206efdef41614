//! The difficulty and task classifier: a local MiniLM embedding plus small trained heads.
//!
//! Code map:
//! - [`text`]: which text of a request is classified, and how it is truncated.
//! - [`embed`]: loading ONNX Runtime and all-MiniLM-L6-v2 through fastembed; batched, length-bucketed embedding.
//! - [`heads`]: the shipped weights (task-type and difficulty heads) and their pure inference.
//! - [`service`]: [`Classifier`], the handle the proxy holds: bounded queue, worker threads, micro-batching, cache.
//! - [`train`], [`eval`]: rebuilding the heads from outcome data, and the RouteLLM metrics.
//! - [`commands`]: `switchyard score | eval | train`.
//!
//! Inference runs on dedicated threads, never on the async workers: one embedding costs milliseconds of CPU.

pub mod bridge;
pub mod commands;
pub mod embed;
pub mod eval;
pub mod features;
pub mod heads;
pub mod service;
pub mod text;
pub mod train;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use service::Classifier;
pub use text::ClassifyText;

/// `classifier:` in the config file. Every default works from the repository root after
/// `scripts/setup-models.sh`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSettings {
    /// Off means no request is classified and routing uses each policy's default route.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Folder with `model.onnx`, `tokenizer.json`, `config.json`, `special_tokens_map.json`, `tokenizer_config.json`.
    #[serde(default = "defaults::model_dir")]
    pub model_dir: PathBuf,
    /// The ONNX Runtime shared library (>= 1.24) loaded at start-up.
    #[serde(default = "defaults::ort_library")]
    pub ort_library: PathBuf,
    /// The trained heads (`switchyard train` writes this file).
    #[serde(default = "defaults::weights")]
    pub weights: PathBuf,
    /// Token budget per text, [CLS] and [SEP] included; longer texts keep their head and tail (see [`text`]).
    /// Unset means the budget the heads were trained with (recorded in the weights file), which is what they
    /// expect; another value works but shifts the scores a little.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Worker threads, each with its own ONNX session.
    #[serde(default = "defaults::workers")]
    pub workers: usize,
    /// ONNX Runtime intra-op threads per worker.
    #[serde(default = "defaults::threads")]
    pub threads: usize,
    /// Intra-op threads for a request that has the classifier to itself (nothing else queued or running): at low
    /// load every core works on one request, halving its latency; under load the workers' own sessions keep the
    /// throughput. One extra ONNX session; 0 (or a value not above `threads`) turns it off.
    #[serde(default = "defaults::solo_threads")]
    pub solo_threads: usize,
    /// Most requests embedded in one ONNX run.
    #[serde(default = "defaults::max_batch")]
    pub max_batch: usize,
    /// How long a worker waits for more requests after the first before running a batch, in microseconds.
    /// Zero takes only what is already queued: under load the queue fills while a batch runs anyway.
    #[serde(default = "defaults::batch_window_us")]
    pub batch_window_us: u64,
    /// Classifications cached, keyed by a hash of the classified text.
    #[serde(default = "defaults::cache_capacity")]
    pub cache_capacity: u64,
    /// Requests waiting for a worker before new ones are refused with [`ClassifyError::Overloaded`].
    #[serde(default = "defaults::queue_bound")]
    pub queue_bound: usize,
    /// How long a request waits for its classification, in milliseconds, before it is routed without one (and
    /// says so). A classification takes a few milliseconds; past this the classifier is overloaded.
    #[serde(default = "defaults::deadline_ms")]
    pub deadline_ms: u64,
}

mod defaults {
    use std::path::PathBuf;

    pub fn enabled() -> bool {
        true
    }
    /// `SWITCHYARD_DATA_DIR` mirrors the setup script's argument so both agree without a config file.
    fn data_dir() -> PathBuf {
        std::env::var_os("SWITCHYARD_DATA_DIR").map_or_else(|| PathBuf::from(".data"), PathBuf::from)
    }
    pub fn model_dir() -> PathBuf {
        data_dir().join("models/all-MiniLM-L6-v2-dynint8")
    }
    pub fn ort_library() -> PathBuf {
        data_dir().join("onnxruntime/1.24.4/libonnxruntime.so.1.24.4")
    }
    pub fn weights() -> PathBuf {
        PathBuf::from(super::heads::DEFAULT_WEIGHTS)
    }
    pub fn workers() -> usize {
        2
    }
    pub fn threads() -> usize {
        1
    }
    /// Every core, up to 2: on this project's 2-core reference machine 2 threads take a 32-token text from ~6 to
    /// ~3.7 ms; more threads synchronise more per operator for a smaller gain on so short a sequence.
    pub fn solo_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
    }
    /// One text per ONNX run. The dynamic-int8 graph quantises activations with one scale per run, so a text's
    /// vector would depend on what it was batched with (and on the padding); alone, it is a function of the text,
    /// which the cache and the trained heads assume. Batching also bought no throughput on 2 cores (padding and
    /// attention cost grow with the longest member), see docs/classifier.md.
    pub fn max_batch() -> usize {
        1
    }
    pub fn batch_window_us() -> u64 {
        0
    }
    pub fn cache_capacity() -> u64 {
        10_000
    }
    pub fn queue_bound() -> usize {
        256
    }
    pub fn deadline_ms() -> u64 {
        100
    }
}

impl Default for ClassifierSettings {
    fn default() -> Self {
        Self {
            enabled: defaults::enabled(),
            model_dir: defaults::model_dir(),
            ort_library: defaults::ort_library(),
            weights: defaults::weights(),
            max_tokens: None,
            workers: defaults::workers(),
            threads: defaults::threads(),
            solo_threads: defaults::solo_threads(),
            max_batch: defaults::max_batch(),
            batch_window_us: defaults::batch_window_us(),
            cache_capacity: defaults::cache_capacity(),
            queue_bound: defaults::queue_bound(),
            deadline_ms: defaults::deadline_ms(),
        }
    }
}

/// The kind of work a request asks for. A bounded vocabulary: safe as a metric label.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    Code,
    Math,
    Reasoning,
    Writing,
    Qa,
    Extraction,
    Conversation,
}

impl TaskType {
    /// Every task type, in the order the task head's outputs use.
    pub const ALL: [TaskType; 7] = [
        TaskType::Code,
        TaskType::Math,
        TaskType::Reasoning,
        TaskType::Writing,
        TaskType::Qa,
        TaskType::Extraction,
        TaskType::Conversation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Code => "code",
            TaskType::Math => "math",
            TaskType::Reasoning => "reasoning",
            TaskType::Writing => "writing",
            TaskType::Qa => "qa",
            TaskType::Extraction => "extraction",
            TaskType::Conversation => "conversation",
        }
    }

    pub fn index(self) -> usize {
        match self {
            TaskType::Code => 0,
            TaskType::Math => 1,
            TaskType::Reasoning => 2,
            TaskType::Writing => 3,
            TaskType::Qa => 4,
            TaskType::Extraction => 5,
            TaskType::Conversation => 6,
        }
    }
}

impl std::fmt::Display for TaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the classifier says about one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// In [0, 1]; higher means the premium model is more likely to make a difference.
    pub difficulty: f32,
    /// The most likely task type.
    pub task: TaskType,
    /// A probability per task type (they sum to 1).
    pub task_scores: BTreeMap<TaskType, f32>,
    /// The L2-normalised embedding, for matching admin-defined routes by cosine similarity.
    pub embedding: Arc<[f32]>,
    /// True when served from the cache.
    pub cached: bool,
}

/// Why a classification is not available. The proxy never fails a request for one of these: it falls back to the
/// policy's default route and says why.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// A model, tokenizer or weights file is absent or unreadable.
    #[error("classifier file missing or unreadable: {path} ({reason}); {hint}")]
    ModelMissing {
        path: PathBuf,
        reason: String,
        hint: &'static str,
    },
    /// The ONNX Runtime library could not be loaded or initialised.
    #[error("cannot load ONNX Runtime from {path}: {reason}; {hint}")]
    Runtime {
        path: PathBuf,
        reason: String,
        hint: &'static str,
    },
    /// The shipped heads do not fit the embedding model or are malformed.
    #[error("classifier weights {path} are invalid: {reason}")]
    Weights { path: PathBuf, reason: String },
    /// Tokenisation or an ONNX run failed.
    #[error("embedding failed: {0}")]
    Inference(String),
    /// The request has nothing to classify.
    #[error("nothing to classify: {0}")]
    NoText(String),
    /// The queue is full: the caller should use its default route rather than wait.
    #[error("classifier overloaded: queue full")]
    Overloaded,
    /// The worker threads have stopped (shut down or crashed).
    #[error("classifier workers are not running")]
    Stopped,
    /// A setting is out of range.
    #[error("invalid classifier setting: {0}")]
    Settings(String),
}

/// The fix for a missing file, shown in every [`ClassifyError::ModelMissing`] and [`ClassifyError::Runtime`].
pub const SETUP_HINT: &str = "run scripts/setup-models.sh (or point classifier.model_dir / classifier.ort_library \
                              at copies of the files; SWITCHYARD_DATA_DIR moves the default location)";

/// Cosine similarity of two L2-normalised embeddings (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    heads::dot(a, b)
}

/// The admin-defined route whose example utterances come closest to `embedding` (best single example, the
/// semantic-router rule), with that similarity, if it reaches `threshold`. `routes` pairs a route name with the
/// embeddings of its examples (from [`Classifier::embed`], once per policy load).
pub fn nearest_route<'a>(
    embedding: &[f32],
    routes: &'a [(String, Vec<Vec<f32>>)],
    threshold: f32,
) -> Option<(&'a str, f32)> {
    routes
        .iter()
        .filter_map(|(name, examples)| {
            examples
                .iter()
                .map(|e| cosine(embedding, e))
                .max_by(f32::total_cmp)
                .map(|s| (name.as_str(), s))
        })
        .filter(|(_, s)| *s >= threshold)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_route_takes_the_best_example_above_threshold() {
        let routes = vec![
            ("sql".to_owned(), vec![vec![1.0, 0.0], vec![0.6, 0.8]]),
            ("poems".to_owned(), vec![vec![0.0, 1.0]]),
        ];
        let (name, score) = nearest_route(&[0.8, 0.6], &routes, 0.5).unwrap();
        assert_eq!(name, "sql");
        assert!((score - 0.96).abs() < 1e-5);
        assert_eq!(
            nearest_route(&[0.0, 1.0], &routes, 0.5).map(|r| r.0),
            Some("poems")
        );
        assert_eq!(nearest_route(&[0.0, -1.0], &routes, 0.5), None);
        assert_eq!(nearest_route(&[1.0, 0.0], &[], 0.0), None);
    }

    #[test]
    fn task_types_round_trip_as_snake_case() {
        for (i, t) in TaskType::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
            assert_eq!(serde_json::to_string(t).unwrap(), format!("\"{}\"", t.as_str()));
        }
    }

    #[test]
    fn settings_defaults_and_unknown_fields() {
        let s: ClassifierSettings = serde_json::from_str("{}").unwrap();
        assert!(s.enabled && s.max_tokens.is_none() && s.queue_bound > 0);
        assert!(serde_json::from_str::<ClassifierSettings>(r#"{"bogus": 1}"#).is_err());
    }
}
