//! Token usage reported by a provider (placeholder until the wire-format module lands).

/// Normalised usage: `input_tokens` counts every input token, cached ones included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    pub reasoning_tokens: u64,
}
