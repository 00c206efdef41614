//! Integration tests of the classifier with the real model files (fetched by `scripts/setup-models.sh`; CI runs it
//! first). Without the files these tests fail with a message saying how to get them: they never pass silently.

use std::path::{Path, PathBuf};

use switchyard::classify::commands::{self, EvalArgs, ModelArgs, ScoreArgs};
use switchyard::classify::{Classifier, ClassifierSettings, ClassifyError, text};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default settings, resolved against the repository root (tests run from it, but be explicit), after checking
/// that the setup script has run.
fn settings() -> ClassifierSettings {
    let mut s = ClassifierSettings::default();
    for p in [&mut s.model_dir, &mut s.ort_library, &mut s.weights] {
        if p.is_relative() {
            *p = root().join(&*p);
        }
    }
    let needed = [
        s.ort_library.clone(),
        s.model_dir.join("model.onnx"),
        s.model_dir.join("tokenizer.json"),
    ];
    for f in needed {
        assert!(
            f.is_file(),
            "{} is missing: run scripts/setup-models.sh (CI runs it before the tests)",
            f.display()
        );
    }
    s
}

fn model_args(s: &ClassifierSettings) -> ModelArgs {
    ModelArgs {
        model_dir: Some(s.model_dir.clone()),
        ort_library: Some(s.ort_library.clone()),
        weights: Some(s.weights.clone()),
        threads: 1,
        batch: 16,
        max_tokens: s.max_tokens,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn related_sentences_are_closer_than_unrelated_ones() {
    let c = Classifier::load(&settings()).unwrap();
    let v = c
        .embed(vec![
            "How do I bake sourdough bread at home?".into(),
            "What is a good recipe for homemade bread?".into(),
            "Explain TCP congestion control in Linux.".into(),
        ])
        .await
        .unwrap();
    assert_eq!(v.len(), 3);
    for e in &v {
        assert_eq!(e.len(), 384);
        assert!((cosine(e, e) - 1.0).abs() < 1e-3, "embeddings are normalised");
    }
    assert!(
        cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2,
        "{} vs {}",
        cosine(&v[0], &v[1]),
        cosine(&v[0], &v[2])
    );
}

#[tokio::test]
async fn hard_prompts_score_above_trivial_ones() {
    let c = Classifier::load(&settings()).unwrap();
    let trivial = ["hi", "thanks, that's all", "What is the capital of France?"];
    let hard = [
        "Prove that every finite group of order p^2, where p is prime, is abelian, and then determine all groups of \
         order 8 up to isomorphism with full justification.",
        "Write a lock-free multi-producer multi-consumer queue in C++ with correct memory ordering and explain how \
         it avoids the ABA problem.",
    ];
    let mut max_trivial = 0f32;
    for t in trivial {
        let r = c.classify(&text::from_prompt(t)).await.unwrap();
        assert!((0.0..=1.0).contains(&r.difficulty));
        max_trivial = max_trivial.max(r.difficulty);
    }
    for t in hard {
        let r = c.classify(&text::from_prompt(t)).await.unwrap();
        assert!(
            r.difficulty > max_trivial,
            "{t:?}: {} <= {max_trivial}",
            r.difficulty
        );
    }
    // A plainly code prompt. (The lock-free queue prompt above, which also asks to "explain how", is "reasoning"
    // to the 32-token heads and "code" to the old 256-token ones: docs/classifier.md, Token budget.)
    let code = c
        .classify(&text::from_prompt("Implement a thread-safe LRU cache in Java."))
        .await
        .unwrap();
    assert_eq!(code.task.as_str(), "code");
    let sum: f32 = code.task_scores.values().sum();
    assert!((sum - 1.0).abs() < 1e-3);
}

#[tokio::test]
async fn repeated_text_is_served_from_the_cache() {
    let c = Classifier::load(&settings()).unwrap();
    let t = text::from_prompt("Summarise the plot of Hamlet in two sentences.");
    let first = c.classify(&t).await.unwrap();
    let second = c.classify(&t).await.unwrap();
    assert!(!first.cached);
    assert!(second.cached);
    assert_eq!(first.difficulty, second.difficulty);
    assert_eq!(first.embedding, second.embedding);
    assert_eq!(c.cached_entries(), 1);
}

#[tokio::test]
async fn concurrent_requests_batch_and_overflow_is_refused() {
    let mut s = settings();
    s.workers = 1;
    s.queue_bound = 2;
    let c = Classifier::load(&s).unwrap();
    let texts: Vec<_> = (0..40)
        .map(|i| text::from_prompt(&format!("Question number {i}: what is {i} times 7?")))
        .collect();
    let results = futures::future::join_all(texts.iter().map(|t| c.classify(t))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(ClassifyError::Overloaded)))
        .count();
    assert!(ok >= 1, "some requests are served");
    assert!(overloaded >= 1, "a full queue refuses instead of waiting");
    assert_eq!(ok + overloaded, results.len());
    // A normal request after the burst is served again.
    assert!(c.classify(&text::from_prompt("and now?")).await.is_ok());
}

#[test]
fn missing_model_files_are_an_error_with_a_fix() {
    let mut s = settings();
    s.model_dir = PathBuf::from("/nonexistent/model-dir");
    let err = Classifier::load(&s).unwrap_err();
    assert!(matches!(err, ClassifyError::ModelMissing { .. }), "{err}");
    assert!(err.to_string().contains("setup-models.sh"), "{err}");
    let mut s = settings();
    s.weights = PathBuf::from("/nonexistent/heads.json");
    assert!(matches!(
        Classifier::load(&s).unwrap_err(),
        ClassifyError::ModelMissing { .. }
    ));
}

#[test]
fn score_command_end_to_end() {
    let s = settings();
    let input = concat!(
        r#"{"id": "a", "prompt": "What is 2 + 2?"}"#,
        "\n",
        r#"{"id": 7, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write a sonnet about the sea."}]}"#,
        "\n"
    );
    let mut out = Vec::new();
    commands::score_io(
        &ScoreArgs {
            model: model_args(&s),
        },
        input.as_bytes(),
        &mut out,
    )
    .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], serde_json::json!("a"));
    assert_eq!(lines[1]["id"], serde_json::json!(7));
    for l in &lines {
        let d = l["difficulty"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&d));
        assert!(l["task"].is_string());
        assert_eq!(l["task_scores"].as_object().unwrap().len(), 7);
    }
    let tasks = [
        "code",
        "math",
        "reasoning",
        "writing",
        "qa",
        "extraction",
        "conversation",
    ];
    assert!(lines.iter().all(|l| tasks.contains(&l["task"].as_str().unwrap())));
}

#[test]
fn eval_command_end_to_end() {
    let s = settings();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("curve");
    let args = EvalArgs {
        data: root().join("tests/fixtures/routing_sample.jsonl"),
        scores: None,
        router: None,
        out: out.clone(),
        json: false,
        model: model_args(&s),
    };
    commands::eval(&args).unwrap();
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    assert!(csv.starts_with("group,share_strong,quality,pgr"));
    assert!(csv.contains("MIX(sources equal)") && csv.contains("routellm-gsm8k"));
    let svg = std::fs::read_to_string(out.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    // A reference router needs no model.
    let args = EvalArgs {
        router: Some("length".into()),
        out: dir.path().join("len"),
        ..args
    };
    commands::eval(&args).unwrap();
    assert!(Path::new(&dir.path().join("len.svg")).is_file());
}

#[test]
fn a_short_turn_survives_a_long_system_prompt() {
    let s = settings();
    let embedder = switchyard::classify::embed::Embedder::load(&s, 32, 1).unwrap();
    let msgs = serde_json::json!([
        {"role": "system", "content": "You are the helpful assistant of ACME Corporation's support desk. ".repeat(5)},
        {"role": "user", "content": "Write a quicksort in Rust."},
    ]);
    let text = text::from_chat_messages(&msgs).unwrap();
    let cut = embedder.truncate(text.as_str(), text.focus()).unwrap();
    // The whole turn is kept; what is left of the budget goes to the end of the context, after an ellipsis.
    assert!(cut.ends_with("\nWrite a quicksort in Rust."), "{cut}");
    assert!(cut.starts_with('…') && cut.contains("support desk"), "{cut}");
    assert!(cut.len() < text.as_str().len() / 2, "{cut}");
    // A plain long prompt keeps its head and tail.
    let long = format!(
        "Summarise this report. {} What is the total?",
        "Revenue rose again. ".repeat(30)
    );
    let cut = embedder.truncate(&long, 0).unwrap();
    assert!(
        cut.starts_with("Summarise this report.") && cut.ends_with("What is the total?"),
        "{cut}"
    );
}
