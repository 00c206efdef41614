//! Bridges the classifier to policy and routing: embeddings of admin routes' example utterances (at policy load,
//! which is blocking work off the request path) and signals for the `route` / `replay` dry runs.

use super::{Classification, Classifier, text};
use crate::policy::Embedder;
use crate::policy::commands::SignalSource;
use crate::route::Signal;

impl Embedder for Classifier {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        // The classifier's own worker threads do the work; blocking here only waits for their answer.
        futures::executor::block_on(Classifier::embed(self, texts.to_vec())).map_err(|e| e.to_string())
    }
}

impl SignalSource for Classifier {
    fn signals(&self, texts: &[String]) -> Result<Vec<Signal>, String> {
        texts
            .iter()
            .map(|t| {
                futures::executor::block_on(self.classify(&text::from_prompt(t)))
                    .map(|c| signal_of(&c))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

/// What routing needs of a classification.
pub fn signal_of(c: &Classification) -> Signal {
    let mut signal = Signal::new(c.difficulty, Some(c.task.as_str().to_owned()));
    signal.embedding = Some(c.embedding.clone());
    signal
}
