//! Loading ONNX Runtime and all-MiniLM-L6-v2 (through fastembed), and embedding batches of texts.
//!
//! One [`Embedder`] owns one ONNX session and is used from one thread at a time (fastembed's `embed` takes
//! `&mut self`); the service gives each worker thread its own.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};
use ort::environment::Environment;

use super::text::{ELLIPSIS, split_head_tail};
use super::{ClassifierSettings, ClassifyError, ClassifyText, SETUP_HINT};

/// Width of all-MiniLM-L6-v2's sentence embedding.
pub const DIM: usize = 384;
/// Smallest token budget: room for a few words besides the special tokens and the joining ellipsis.
pub const MIN_TOKENS: usize = 16;
/// Largest token budget: MiniLM's position embeddings end at 512.
pub const MAX_TOKENS: usize = 512;
/// Version of the truncation rule ([`Embedder::truncate`]), part of the fingerprint: a changed rule changes
/// vectors, so `train`'s embedding cache must not serve the old ones. 2: focus first, exact special-token reserve.
const TRUNCATION_RULE: u32 = 2;
/// [CLS] and [SEP], which the model's input holds besides the text's tokens.
const SPECIAL_TOKENS: usize = 2;

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
    /// sha256 of the graph's bytes, the token budget and the truncation rule: what an embedding depends on besides
    /// the text.
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
    /// Loads the runtime and the model, to run on `threads` intra-op threads; texts are cut to `max_tokens` (see
    /// [`Self::truncate`]).
    pub fn load(
        settings: &ClassifierSettings,
        max_tokens: usize,
        threads: usize,
    ) -> Result<Self, ClassifyError> {
        if !(MIN_TOKENS..=MAX_TOKENS).contains(&max_tokens) {
            return Err(ClassifyError::Settings(format!(
                "max_tokens must be within {MIN_TOKENS}..={MAX_TOKENS} (MiniLM's position limit), got {max_tokens}"
            )));
        }
        if threads == 0 || settings.max_batch == 0 {
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
            h.update((max_tokens as u64).to_le_bytes());
            h.update(TRUNCATION_RULE.to_le_bytes());
            h.finalize().into()
        };
        // The default graph quantises activations dynamically (one scale per run), so a batch's vectors depend a
        // little on its members; `embed` runs each call's batch as one ONNX run and the settings default to one
        // text per run. `QuantizationMode::None` only tells fastembed not to split a call into runs itself.
        let model = UserDefinedEmbeddingModel::new(onnx, tokenizer_files).with_pooling(Pooling::Mean);
        let options = InitOptionsUserDefined::new()
            .with_environment(env)
            .with_max_length(max_tokens)
            .with_intra_threads(threads);
        // ORT's intra-op threads spin after each run by default, burning a core the next request (on another
        // worker) needs: measured on 2 cores, 2 workers × 2 threads gave 277 req/s without spinning, 217 with.
        let options = if threads > 1 {
            options.with_session_config("session.intra_op.allow_spinning", "0")
        } else {
            options
        };
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
            max_tokens,
            max_batch: settings.max_batch,
            fingerprint,
        })
    }

    /// Identifies the graph, token budget and truncation rule, so cached embeddings made otherwise are not reused.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The token budget texts are cut to.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The token-level truncation rule (see [`super::text`]): the text unchanged when it fits; else the focus (from
    /// byte `focus` on) comes first, cut to its head and tail when it alone is over the budget, and the context
    /// before it keeps only its last tokens that still fit.
    pub fn truncate<'a>(
        &self,
        text: &'a str,
        focus: usize,
    ) -> Result<std::borrow::Cow<'a, str>, ClassifyError> {
        let room = self.max_tokens - SPECIAL_TOKENS;
        // WordPiece never makes fewer characters than tokens, so short texts skip the extra tokenisation.
        if text.chars().count() <= room {
            return Ok(text.into());
        }
        let count = |s: &str| {
            self.measure
                .encode(s, false)
                .map(|e| e.len())
                .map_err(|e| ClassifyError::Inference(e.to_string()))
        };
        let enc = self
            .measure
            .encode(text, false)
            .map_err(|e| ClassifyError::Inference(e.to_string()))?;
        // One token of the room goes to the ellipsis that marks the cut.
        let mut budget = room - 1;
        loop {
            let kept = match cut(text, enc.get_offsets(), focus, budget) {
                Cut::Whole => return Ok(text.into()),
                Cut::Kept(kept) => kept,
                Cut::BadOffsets => {
                    return Err(ClassifyError::Inference(
                        "tokenizer offsets outside the text".to_owned(),
                    ));
                }
            };
            // A piece that starts inside a word may tokenise into more tokens on its own: measure and shrink.
            let over = count(&kept)?.saturating_sub(room);
            if over == 0 || budget <= over + MIN_TOKENS / 2 {
                return Ok(kept.into());
            }
            budget -= over;
        }
    }

    /// [`Self::embed`] for extracted request texts, whose focus gets priority when truncating.
    pub fn embed_texts(&mut self, texts: &[&ClassifyText]) -> Result<Vec<Vec<f32>>, ClassifyError> {
        let truncated = texts
            .iter()
            .map(|t| self.truncate(t.as_str(), t.focus()))
            .collect::<Result<Vec<_>, _>>()?;
        self.embed_truncated(&truncated)
    }

    /// L2-normalised embeddings, in input order. Texts are truncated, then grouped by length so that a batch pads
    /// to a similar length (padding tokens cost as much compute as real ones).
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ClassifyError> {
        let truncated = texts
            .iter()
            .map(|t| self.truncate(t, 0))
            .collect::<Result<Vec<_>, _>>()?;
        self.embed_truncated(&truncated)
    }

    fn embed_truncated(
        &mut self,
        truncated: &[std::borrow::Cow<'_, str>],
    ) -> Result<Vec<Vec<f32>>, ClassifyError> {
        let mut order: Vec<usize> = (0..truncated.len()).collect();
        order.sort_by_key(|&i| truncated[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); truncated.len()];
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

/// What the truncation rule keeps of a text.
#[derive(Debug, PartialEq, Eq)]
enum Cut {
    /// Everything fits.
    Whole,
    Kept(String),
    /// The tokenizer's offsets do not fit the text (never expected).
    BadOffsets,
}

/// The truncation rule on a text's token byte `offsets` (special tokens excluded), `budget` tokens kept. The focus
/// (tokens starting at or after byte `focus`) comes first: over the budget on its own, it keeps its head and tail
/// (see [`split_head_tail`]) and the context is dropped; otherwise the context keeps its last tokens that fit.
fn cut(text: &str, offsets: &[(usize, usize)], focus: usize, budget: usize) -> Cut {
    let n = offsets.len();
    if n <= budget {
        return Cut::Whole;
    }
    if budget == 0 {
        return Cut::Kept(String::new());
    }
    let context = offsets.partition_point(|o| o.0 < focus);
    let focus_tokens = n - context;
    // Offsets are byte offsets into `text` at token boundaries, hence at char boundaries; `get` checks anyway.
    let piece = |from: usize, to: usize| text.get(from..to);
    let kept = if focus_tokens >= budget {
        let start = offsets[context].0;
        match split_head_tail(focus_tokens, budget) {
            None => piece(start, text.len()).map(str::to_owned),
            Some((head, tail)) => {
                let head_end = offsets[context + head - 1].1;
                let tail_start = if tail == 0 {
                    text.len()
                } else {
                    offsets[n - tail].0
                };
                piece(start, head_end)
                    .zip(piece(tail_start, text.len()))
                    .map(|(h, t)| format!("{h}{ELLIPSIS}{t}"))
            }
        }
    } else {
        // n > budget, so the context holds more than the `budget - focus_tokens` tokens kept of it.
        let keep = budget - focus_tokens;
        piece(offsets[context - keep].0, text.len()).map(|rest| format!("{}{rest}", ELLIPSIS.trim_start()))
    };
    kept.map_or(Cut::BadOffsets, Cut::Kept)
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

    /// Byte offsets of whitespace-separated words, standing in for a tokenizer's.
    fn word_offsets(text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
            match (c.is_whitespace(), start) {
                (true, Some(s)) => {
                    out.push((s, i));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        out
    }

    fn cut_words(text: &str, focus: usize, budget: usize) -> Cut {
        cut(text, &word_offsets(text), focus, budget)
    }

    #[test]
    fn a_text_within_the_budget_is_whole() {
        assert_eq!(cut_words("a b c d", 0, 4), Cut::Whole);
        assert_eq!(cut_words("ctx ctx turn", 8, 3), Cut::Whole);
    }

    #[test]
    fn a_long_text_keeps_three_quarters_head_and_a_quarter_tail() {
        let text = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10";
        assert_eq!(cut_words(text, 0, 4), Cut::Kept(format!("w1 w2 w3{ELLIPSIS}w10")));
    }

    #[test]
    fn a_short_turn_keeps_the_context_nearest_to_it() {
        // Context "s1 s2 e1 e2", focus "what now" (2 tokens), budget 4: two context tokens fit, the latest ones.
        let text = "s1 s2 e1 e2\nwhat now";
        let focus = text.find("what").unwrap();
        assert_eq!(
            cut_words(text, focus, 4),
            Cut::Kept("… e1 e2\nwhat now".to_owned())
        );
    }

    #[test]
    fn a_turn_over_the_budget_drops_the_context() {
        let text = "system prompt here\nq1 q2 q3 q4 q5 q6 q7 q8";
        let focus = text.find("q1").unwrap();
        assert_eq!(
            cut_words(text, focus, 4),
            Cut::Kept(format!("q1 q2 q3{ELLIPSIS}q8"))
        );
        // Exactly the budget: the whole turn, no context.
        let text = "ctx\nq1 q2 q3 q4";
        assert_eq!(cut_words(text, 4, 4), Cut::Kept("q1 q2 q3 q4".to_owned()));
    }

    #[test]
    fn offsets_outside_the_text_are_an_error_not_a_panic() {
        let offsets = [(0, 1), (2, 3), (40, 50), (51, 52), (53, 54)];
        assert_eq!(cut("a b c", &offsets, 0, 4), Cut::BadOffsets);
        // Budgets too small for a tail (or for anything) still cut without panicking.
        assert_eq!(
            cut_words("w1 w2 w3 w4", 0, 2),
            Cut::Kept(format!("w1 w2{ELLIPSIS}"))
        );
        assert_eq!(cut_words("w1 w2", 0, 0), Cut::Kept(String::new()));
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
