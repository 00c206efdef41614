//! [`Classifier`]: the handle the proxy holds. Requests go through a bounded queue to dedicated worker threads,
//! each owning one ONNX session; a worker takes every request already queued (up to `max_batch`) and embeds them
//! in one run, so concurrent requests share the cost. A request that has the classifier to itself (no other worker
//! computing, nothing queued) runs instead on a shared "solo" session with more intra-op threads: low latency when
//! idle, the workers' throughput when busy. Results are cached by a hash of the classified text.

use std::sync::atomic::{AtomicUsize, Ordering};
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
        text: ClassifyText,
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
    load: Arc<Load>,
}

/// How busy the workers are, so that a request alone can use the solo session.
#[derive(Debug, Default)]
struct Load {
    /// Jobs submitted and not yet taken by a worker.
    queued: AtomicUsize,
    /// Workers computing.
    running: AtomicUsize,
}

/// A worker's ONNX sessions: its own, and the shared many-thread one for a request that is alone.
struct Sessions {
    own: Embedder,
    solo: Option<Arc<Mutex<Embedder>>>,
    load: Arc<Load>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("cached", &self.inner.cache.entry_count())
            .finish_non_exhaustive()
    }
}

/// The classified text and where its focus starts: the two things the result depends on.
fn cache_key(text: &ClassifyText) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((text.focus() as u64).to_le_bytes());
    h.update(text.as_str().as_bytes());
    h.finalize().into()
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
        let max_tokens = heads.budget(settings.max_tokens);
        let mut embedders = Vec::with_capacity(settings.workers);
        for _ in 0..settings.workers {
            embedders.push(Embedder::load(settings, max_tokens, settings.threads)?);
        }
        let solo = if settings.solo_threads > settings.threads {
            Some(Arc::new(Mutex::new(Embedder::load(
                settings,
                max_tokens,
                settings.solo_threads,
            )?)))
        } else {
            None
        };
        let load = Arc::new(Load::default());
        let (queue, rx) = std::sync::mpsc::sync_channel(settings.queue_bound);
        // Workers share one receiver. The std mutex is held only while a worker collects a batch, never while it
        // computes, so the other worker can collect the next batch meanwhile.
        let rx = Arc::new(Mutex::new(rx));
        let window = Duration::from_micros(settings.batch_window_us);
        for (i, embedder) in embedders.into_iter().enumerate() {
            let sessions = Sessions {
                own: embedder,
                solo: solo.clone(),
                load: Arc::clone(&load),
            };
            let rx = Arc::clone(&rx);
            let heads = Arc::clone(&heads);
            let max_batch = settings.max_batch;
            std::thread::Builder::new()
                .name(format!("classifier-{i}"))
                .spawn(move || worker(sessions, &heads, &rx, max_batch, window))
                .map_err(|e| ClassifyError::Inference(format!("cannot start worker thread: {e}")))?;
        }
        let cache = moka::sync::Cache::builder()
            .max_capacity(settings.cache_capacity)
            .build();
        Ok(Self {
            inner: Arc::new(Inner {
                queue,
                cache,
                heads,
                load,
            }),
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
        let key = cache_key(text);
        if let Some(mut hit) = self.inner.cache.get(&key) {
            hit.cached = true;
            return Ok(hit);
        }
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Classify {
            text: text.clone(),
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
        // Counted before the send, so a worker that takes the job at once never counts below zero.
        let queued = &self.inner.load.queued;
        queued.fetch_add(1, Ordering::SeqCst);
        let refused = match self.inner.queue.try_send(job) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) => ClassifyError::Overloaded,
            Err(TrySendError::Disconnected(_)) => ClassifyError::Stopped,
        };
        queued.fetch_sub(1, Ordering::SeqCst);
        Err(refused)
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
    mut sessions: Sessions,
    heads: &Heads,
    rx: &Mutex<Receiver<Job>>,
    max_batch: usize,
    window: Duration,
) {
    while let Some(jobs) = collect(rx, max_batch, window) {
        let load = Arc::clone(&sessions.load);
        load.queued.fetch_sub(jobs.len(), Ordering::SeqCst);
        let others = load.running.fetch_add(1, Ordering::SeqCst);
        // Alone: no other worker computing and nothing waiting. A request arriving meanwhile runs on its worker's
        // own session, briefly sharing the cores; the next decision sees it.
        let alone = others == 0 && load.queued.load(Ordering::SeqCst) == 0;
        let mut solo = match &sessions.solo {
            Some(solo) if alone => solo.try_lock().ok(),
            _ => None,
        };
        let embedder = match solo.as_deref_mut() {
            Some(e) => e,
            None => &mut sessions.own,
        };
        run_jobs(embedder, heads, jobs);
        drop(solo);
        load.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Embeds a batch of jobs and answers each.
fn run_jobs(embedder: &mut Embedder, heads: &Heads, jobs: Vec<Job>) {
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
        return;
    }
    let refs: Vec<&ClassifyText> = texts.iter().collect();
    match embedder.embed_texts(&refs) {
        Ok(vectors) => {
            for ((text, vector), reply) in texts.iter().zip(vectors).zip(replies) {
                let out = heads.infer(&vector, text.as_str());
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
