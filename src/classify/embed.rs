//! Loading ONNX Runtime and all-MiniLM-L6-v2 (through fastembed), and embedding batches of texts.
//!
//! One [`Embedder`] owns one ONNX session and is used from one thread at a time (fastembed's `embed` takes
//! `&mut self`); the service gives each worker thread its own.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};
use ort::environment::Environment;

use super::text::{ELLIPSIS, split_head_tail};
use super::{ClassifierSettings, ClassifyError, SETUP_HINT};

/// Width of all-MiniLM-L6-v2's sentence embedding.
pub const DIM: usize = 384;
/// Tokens reserved for [CLS], [SEP] and the tokens the joining ellipsis may become.
const RESERVED_TOKENS: usize = 6;

/// ONNX Runtime allows one environment per process; every session shares it. A mutex rather than a `OnceLock`
/// because initialisation is fallible and must be retried after a failure (e.g. setup ran in the meantime).
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// Loads the ONNX Runtime library once per process. Checked here (not left to ort) so that a missing library is an
/// error with a fix-it hint instead of a panic inside ort's lazy initialisation.
pub fn environment(library: &Path) -> Result<Environment, ClassifyError> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let runtime_error = |reason: String| ClassifyError::Runtime {
        path: library.to_path_buf(),
        reason,
        hint: SETUP_HINT,
    };
    if !library.is_file() {
        return Err(runtime_error("no such file".to_owned()));
    }
    // ort resolves a relative path against the executable's folder first; an absolute path means what it says.
    let absolute = std::path::absolute(library).map_err(|e| runtime_error(e.to_string()))?;
    let env = ort::init_from(&absolute)
        .map_err(|e| runtime_error(e.to_string()))?
        .with_name("switchyard-classifier")
        .with_telemetry(false)
        .build()
        .map_err(|e| runtime_error(e.to_string()))?;
    *slot = Some(env.clone());
    Ok(env)
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, ClassifyError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| ClassifyError::ModelMissing {
        path,
        reason: e.to_string(),
        hint: SETUP_HINT,
    })
}

/// The embedding model with its tokenizer, plus a second, non-truncating tokenizer for the head/tail rule.
pub struct Embedder {
    model: TextEmbedding,
    /// fastembed's tokenizer truncates to the head only; this copy measures whole texts so the tail can be kept.
    measure: tokenizers::Tokenizer,
    max_tokens: usize,
    max_batch: usize,
    /// sha256 of the graph's bytes and the token budget: what an embedding depends on besides the text.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    pub fn load(settings: &ClassifierSettings) -> Result<Self, ClassifyError> {
        if settings.max_tokens < 16 || settings.max_tokens > 512 {
            return Err(ClassifyError::Settings(format!(
                "max_tokens must be within 16..=512 (MiniLM's position limit), got {}",
                settings.max_tokens
            )));
        }
        if settings.threads == 0 || settings.max_batch == 0 {
            return Err(ClassifyError::Settings(
                "threads and max_batch must be at least 1".to_owned(),
            ));
        }
        let env = environment(&settings.ort_library)?;
        let dir = &settings.model_dir;
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: read(dir, "tokenizer.json")?,
            config_file: read(dir, "config.json")?,
            special_tokens_map_file: read(dir, "special_tokens_map.json")?,
            tokenizer_config_file: read(dir, "tokenizer_config.json")?,
        };
        let onnx = read(dir, "model.onnx")?;
        let mut measure =
            tokenizers::Tokenizer::from_bytes(&tokenizer_files.tokenizer_file).map_err(|e| {
                ClassifyError::ModelMissing {
                    path: dir.join("tokenizer.json"),
                    reason: e.to_string(),
                    hint: SETUP_HINT,
                }
            })?;
        measure.with_padding(None);
        measure
            .with_truncation(None)
            .map_err(|e| ClassifyError::Inference(format!("tokenizer setup: {e}")))?;
        let fingerprint = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(&onnx);
            h.update((settings.max_tokens as u64).to_le_bytes());
            h.finalize().into()
        };
        // The default graph quantises activations dynamically (one scale per run), so a batch's vectors depend a
        // little on its members; `embed` runs each call's batch as one ONNX run and the settings default to one
        // text per run. `QuantizationMode::None` only tells fastembed not to split a call into runs itself.
        let model = UserDefinedEmbeddingModel::new(onnx, tokenizer_files).with_pooling(Pooling::Mean);
        let options = InitOptionsUserDefined::new()
            .with_environment(env)
            .with_max_length(settings.max_tokens)
            .with_intra_threads(settings.threads);
        let model = TextEmbedding::try_new_from_user_defined(model, options).map_err(|e| {
            ClassifyError::ModelMissing {
                path: dir.join("model.onnx"),
                reason: e.to_string(),
                hint: SETUP_HINT,
            }
        })?;
        Ok(Self {
            model,
            measure,
            max_tokens: settings.max_tokens,
            max_batch: settings.max_batch,
            fingerprint,
        })
    }

    /// Identifies the graph and token budget, so cached embeddings from another model are not reused.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The token-level truncation rule (see [`super::text`]): the text unchanged when it fits, else its leading
    /// three quarters and trailing quarter of the budget joined by an ellipsis.
    pub fn truncate<'a>(&self, text: &'a str) -> Result<std::borrow::Cow<'a, str>, ClassifyError> {
        let budget = self.max_tokens - RESERVED_TOKENS;
        // WordPiece never makes fewer characters than tokens, so short texts skip the extra tokenisation.
        if text.chars().count() <= budget {
            return Ok(text.into());
        }
        let enc = self
            .measure
            .encode(text, false)
            .map_err(|e| ClassifyError::Inference(e.to_string()))?;
        let offsets = enc.get_offsets();
        let Some((head, tail)) = split_head_tail(offsets.len(), budget) else {
            return Ok(text.into());
        };
        // Offsets are byte offsets into `text` at token boundaries, hence at char boundaries.
        let head_end = offsets.get(head.saturating_sub(1)).map_or(0, |o| o.1);
        let tail_start = offsets.get(offsets.len() - tail).map_or(text.len(), |o| o.0);
        match (text.get(..head_end), text.get(tail_start..)) {
            (Some(h), Some(t)) => Ok(format!("{h}{ELLIPSIS}{t}").into()),
            _ => Err(ClassifyError::Inference(
                "tokenizer offsets outside the text".to_owned(),
            )),
        }
    }

    /// L2-normalised embeddings, in input order. Texts are truncated, then grouped by length so that a batch pads
    /// to a similar length (padding tokens cost as much compute as real ones).
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ClassifyError> {
        let truncated = texts
            .iter()
            .map(|t| self.truncate(t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut order: Vec<usize> = (0..truncated.len()).collect();
        order.sort_by_key(|&i| truncated[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for group in length_buckets(&order, |i| truncated[i].len(), self.max_batch) {
            let batch: Vec<&str> = group.iter().map(|&i| truncated[i].as_ref()).collect();
            let vectors = self
                .model
                .embed(&batch, Some(batch.len()))
                .map_err(|e| ClassifyError::Inference(e.to_string()))?;
            if vectors.len() != group.len() {
                return Err(ClassifyError::Inference(
                    "embedding count differs from text count".to_owned(),
                ));
            }
            for (&i, v) in group.iter().zip(vectors) {
                if v.len() != DIM {
                    return Err(ClassifyError::Inference(format!(
                        "embedding width {} (expected {DIM})",
                        v.len()
                    )));
                }
                out[i] = v;
            }
        }
        Ok(out)
    }

    pub fn model_dir_files() -> [&'static str; 5] {
        [
            "model.onnx",
            "tokenizer.json",
            "config.json",
            "special_tokens_map.json",
            "tokenizer_config.json",
        ]
    }
}

/// Splits indices already sorted by length into batches of at most `max_batch` whose longest member is at most
/// twice (plus a little) the shortest: a short prompt never pays for a long one's padding.
pub fn length_buckets(sorted: &[usize], len: impl Fn(usize) -> usize, max_batch: usize) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut first_len = 0;
    for &i in sorted {
        let l = len(i);
        if !current.is_empty() && (current.len() >= max_batch || l > 2 * first_len + 64) {
            groups.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            first_len = l;
        }
        current.push(i);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// Where the model files are expected, for error messages and tests.
pub fn expected_files(dir: &Path) -> Vec<PathBuf> {
    Embedder::model_dir_files().iter().map(|f| dir.join(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_on_size_and_length_ratio() {
        let lens = [10, 12, 20, 100, 300, 310, 320, 330];
        let order: Vec<usize> = (0..lens.len()).collect();
        let groups = length_buckets(&order, |i| lens[i], 3);
        assert_eq!(groups, vec![vec![0, 1, 2], vec![3], vec![4, 5, 6], vec![7]]);
        assert!(length_buckets(&[], |i| i, 4).is_empty());
    }

    #[test]
    fn missing_library_is_an_error_with_a_hint() {
        let err = environment(Path::new("/nonexistent/libonnxruntime.so")).err();
        // Another test in this process may already have loaded the real library; then the call succeeds.
        if let Some(err) = err {
            assert!(err.to_string().contains("setup-models.sh"), "{err}");
        }
    }
}
