//! Structure features of the classified text, cheap to compute and complementary to the embedding: length,
//! digits and numbers (arithmetic), multiple-choice options, code and maths symbols, questions.
//!
//! The same definitions are used for training and inference; the heads standardise them with the training mean and
//! scale stored in the weights file.

use std::sync::LazyLock;

use regex::Regex;

/// Names in the order of [`features`]' output; stored in the weights file so a mismatch is detected at load.
pub const NAMES: [&str; 12] = [
    "log_chars",
    "log_words",
    "digit_frac",
    "log_nums",
    "opts",
    "has_opts",
    "log_lines",
    "log_code",
    "log_math",
    "log_q",
    "upper_frac",
    "ends_answer",
];

/// Number of features.
pub const N: usize = NAMES.len();

/// A line that starts a lettered option: "A. ", "(B) ", "C) ".
#[expect(clippy::unwrap_used, reason = "a constant pattern, covered by the unit tests")]
static OPTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^\s*\(?[A-J][\.\)]\s").unwrap());
#[expect(clippy::unwrap_used, reason = "a constant pattern, covered by the unit tests")]
static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d+(?:\.\d+)?").unwrap());

const CODE_MARKS: [&str; 9] = ["```", "{", "}", ";", "def ", "return", "import ", "=>", "();"];
const MATH_MARKS: [&str; 8] = ["=", "+", "^", "\\", "$", "%", "*", "/"];

fn ln1p(x: usize) -> f32 {
    (x as f32).ln_1p()
}

fn count_all(text: &str, marks: &[&str]) -> usize {
    marks.iter().map(|m| text.matches(m).count()).sum()
}

/// The raw (unstandardised) features of one text.
pub fn features(text: &str) -> [f32; N] {
    let chars = text.chars().count();
    let n = chars.max(1) as f32;
    let words = text.split_whitespace().count();
    let digits = text.chars().filter(char::is_ascii_digit).count();
    let numbers = NUMBER.find_iter(text).count();
    let options = OPTION.find_iter(text).count();
    let lines = text.matches('\n').count();
    let upper = text.chars().filter(|c| c.is_uppercase()).count();
    [
        ln1p(chars),
        ln1p(words),
        digits as f32 / n,
        ln1p(numbers),
        options.min(10) as f32 / 10.0,
        if options >= 2 { 1.0 } else { 0.0 },
        ln1p(lines),
        ln1p(count_all(text, &CODE_MARKS)),
        ln1p(count_all(text, &MATH_MARKS)),
        ln1p(text.matches('?').count()),
        upper as f32 / n,
        if text.trim_end().ends_with("Answer:") {
            1.0
        } else {
            0.0
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiple_choice_question() {
        let f = features("What is 2+2?\nA. 3\nB. 4\n(C) 5\nD) 22\nAnswer:");
        assert_eq!(f[4], 0.4);
        assert_eq!(f[5], 1.0);
        assert_eq!(f[11], 1.0);
        assert!((f[3] - 6f32.ln_1p()).abs() < 1e-6, "{}", f[3]);
        assert!((f[9] - 1f32.ln_1p()).abs() < 1e-6);
    }

    #[test]
    fn empty_text_is_all_zero() {
        assert!(features("").iter().all(|v| *v == 0.0));
    }

    #[test]
    fn code_marks_count() {
        let f = features("def f():\n    return {1: 2};");
        assert!((f[7] - 5f32.ln_1p()).abs() < 1e-6, "{}", f[7]);
    }
}
