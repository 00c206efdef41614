//! [`Classifier`]: the handle the proxy holds. Requests go through a bounded queue to dedicated worker threads,
//! each owning one ONNX session; a worker takes every request already queued (up to `max_batch`) and embeds them
//! in one run, so concurrent requests share the cost. Results are cached by a hash of the classified text.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::embed::Embedder;
use super::heads::Heads;
use super::{Classification, ClassifierSettings, ClassifyError, ClassifyText};

/// What a worker is asked to do.
enum Job {
    Classify {
        text: String,
        reply: oneshot::Sender<Result<Classification, ClassifyError>>,
    },
    Embed {
        texts: Vec<String>,
        reply: oneshot::Sender<Result<Vec<Vec<f32>>, ClassifyError>>,
    },
}

/// Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct Classifier {
    inner: Arc<Inner>,
}

struct Inner {
    queue: SyncSender<Job>,
    cache: moka::sync::Cache<[u8; 32], Classification>,
    heads: Arc<Heads>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("cached", &self.inner.cache.entry_count())
            .finish_non_exhaustive()
    }
}

fn cache_key(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Classifier {
    /// Loads the runtime, the model (once per worker) and the heads; starts the workers. Takes about a second.
    pub fn load(settings: &ClassifierSettings) -> Result<Self, ClassifyError> {
        if settings.workers == 0 || settings.queue_bound == 0 {
            return Err(ClassifyError::Settings(
                "workers and queue_bound must be at least 1".to_owned(),
            ));
        }
        let heads = Arc::new(Heads::load(&settings.weights)?);
        let mut embedders = Vec::with_capacity(settings.workers);
        for _ in 0..settings.workers {
            embedders.push(Embedder::load(settings)?);
        }
        let (queue, rx) = std::sync::mpsc::sync_channel(settings.queue_bound);
        // Workers share one receiver. The std mutex is held only while a worker collects a batch, never while it
        // computes, so the other worker can collect the next batch meanwhile.
        let rx = Arc::new(Mutex::new(rx));
        let window = Duration::from_micros(settings.batch_window_us);
        for (i, embedder) in embedders.into_iter().enumerate() {
            let rx = Arc::clone(&rx);
            let heads = Arc::clone(&heads);
            let max_batch = settings.max_batch;
            std::thread::Builder::new()
                .name(format!("classifier-{i}"))
                .spawn(move || worker(embedder, &heads, &rx, max_batch, window))
                .map_err(|e| ClassifyError::Inference(format!("cannot start worker thread: {e}")))?;
        }
        let cache = moka::sync::Cache::builder()
            .max_capacity(settings.cache_capacity)
            .build();
        Ok(Self {
            inner: Arc::new(Inner { queue, cache, heads }),
        })
    }

    /// The heads in use (e.g. to report their provenance).
    pub fn heads(&self) -> &Heads {
        &self.inner.heads
    }

    /// Classifies one text. Never blocks the async runtime: the work happens on the worker threads, and a full
    /// queue is refused at once with [`ClassifyError::Overloaded`] so the caller can use its default route.
    pub async fn classify(&self, text: &ClassifyText) -> Result<Classification, ClassifyError> {
        if text.is_empty() {
            return Err(ClassifyError::NoText("empty text".to_owned()));
        }
        let key = cache_key(text.as_str());
        if let Some(mut hit) = self.inner.cache.get(&key) {
            hit.cached = true;
            return Ok(hit);
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Classify {
            text: text.as_str().to_owned(),
            reply,
        })?;
        let result = rx.await.map_err(|_| ClassifyError::Stopped)??;
        self.inner.cache.insert(key, result.clone());
        Ok(result)
    }

    /// L2-normalised embeddings of `texts` (e.g. the example utterances of admin-defined routes).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ClassifyError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Embed { texts, reply })?;
        rx.await.map_err(|_| ClassifyError::Stopped)?
    }

    fn submit(&self, job: Job) -> Result<(), ClassifyError> {
        match self.inner.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ClassifyError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(ClassifyError::Stopped),
        }
    }

    /// Number of cached classifications (approximate: the cache applies writes lazily).
    pub fn cached_entries(&self) -> u64 {
        self.inner.cache.run_pending_tasks();
        self.inner.cache.entry_count()
    }
}

/// Collects a batch: blocks for the first job, then takes what is queued (waiting up to `window` for more).
/// `None` when every sender is gone.
fn collect(rx: &Mutex<Receiver<Job>>, max_batch: usize, window: Duration) -> Option<Vec<Job>> {
    let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
    let first = rx.recv().ok()?;
    let mut jobs = vec![first];
    let deadline = Instant::now() + window;
    while jobs.len() < max_batch {
        let next = if window.is_zero() {
            rx.try_recv().ok()
        } else {
            // Timeout and disconnection both end the batch; a disconnection surfaces on the next `recv`.
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()
        };
        match next {
            Some(job) => jobs.push(job),
            None => break,
        }
    }
    Some(jobs)
}

fn worker(
    mut embedder: Embedder,
    heads: &Heads,
    rx: &Mutex<Receiver<Job>>,
    max_batch: usize,
    window: Duration,
) {
    while let Some(jobs) = collect(rx, max_batch, window) {
        let mut texts = Vec::new();
        let mut replies = Vec::new();
        for job in jobs {
            match job {
                Job::Classify { text, reply } => {
                    texts.push(text);
                    replies.push(reply);
                }
                // Route examples are embedded at config load, rarely and in bulk: their own run.
                Job::Embed { texts, reply } => {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let _ = reply.send(embedder.embed(&refs));
                }
            }
        }
        if texts.is_empty() {
            continue;
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        match embedder.embed(&refs) {
            Ok(vectors) => {
                for ((text, vector), reply) in texts.iter().zip(vectors).zip(replies) {
                    let out = heads.infer(&vector, text);
                    // A dropped receiver means the request went away; nothing to do.
                    let _ = reply.send(Ok(Classification {
                        difficulty: out.difficulty,
                        task: out.task,
                        task_scores: out.task_scores,
                        embedding: vector.into(),
                        cached: false,
                    }));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, batch = texts.len(), "classifier batch failed");
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(ClassifyError::Inference(message.clone())));
                }
            }
        }
    }
}
