//! Cost arithmetic: pure functions of (usage, price), in decimal.

use rust_decimal::Decimal;

use crate::config::Price;
use crate::usage::Usage;

const PER_MILLION: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// What `usage` costs at `price` (USD per million tokens). Cached input tokens are part of `input_tokens` and
/// charged at the cached rate; cache writes are charged at the input rate.
pub fn cost(usage: &Usage, price: &Price) -> Decimal {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let uncached = usage.input_tokens - cached;
    (Decimal::from(uncached) * price.input
        + Decimal::from(cached) * price.cached_input
        + Decimal::from(usage.output_tokens) * price.output)
        / PER_MILLION
}

/// The most a request can cost: every input token uncached and `max_output_tokens` generated.
pub fn max_cost(input_tokens: u64, max_output_tokens: u64, price: &Price) -> Decimal {
    (Decimal::from(input_tokens) * price.input + Decimal::from(max_output_tokens) * price.output)
        / PER_MILLION
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn cost_charges_cached_tokens_at_cached_rate() {
        let price = Price {
            input: dec!(2.50),
            output: dec!(10.00),
            cached_input: dec!(1.25),
        };
        let usage = Usage {
            input_tokens: 1000,
            cached_input_tokens: 400,
            output_tokens: 200,
            ..Usage::default()
        };
        // 600 * 2.5 + 400 * 1.25 + 200 * 10 = 1500 + 500 + 2000 = 4000 per million
        assert_eq!(cost(&usage, &price), dec!(0.004));
        assert_eq!(max_cost(1000, 1000, &price), dec!(0.0125));
    }
}
