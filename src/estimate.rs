//! Local token estimates for when a provider reports no usage. Rows priced from these are flagged `estimated`.

use crate::usage::Usage;

/// About four bytes of English text per token for current BPE vocabularies.
const BYTES_PER_TOKEN: usize = 4;

/// Usage of a plain response whose provider reported none.
pub fn estimate_usage(estimated_input_tokens: u64, response_body: &[u8]) -> Usage {
    estimate_stream_usage(estimated_input_tokens, response_body.len())
}

/// Usage of a stream whose provider reported none, from the output bytes seen.
pub fn estimate_stream_usage(estimated_input_tokens: u64, output_bytes: usize) -> Usage {
    Usage {
        input_tokens: estimated_input_tokens,
        output_tokens: output_bytes.div_ceil(BYTES_PER_TOKEN) as u64,
        ..Usage::default()
    }
}
