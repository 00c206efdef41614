//! Token counts for when a provider does not report usage (some streams, some local servers, a stream cut off
//! before its usage chunk). The row is then marked `estimated`.
//!
//! OpenAI models use their own vocabulary (tiktoken's o200k, cl100k, p50k or r50k, chosen by model name). Other
//! models (Claude, Llama, …) use o200k as an approximation — their vocabularies are not public or not compiled in —
//! which is close for English and code; the `estimated` flag tells finance which rows these are.
//!
//! The `tiktoken` crate gives the same tokens as OpenAI's tiktoken (checked against `tiktoken-rs` on the 22,792 texts
//! of the routing data: 7.3 million tokens, no difference) from a compact vocabulary: o200k holds 13 MB once loaded
//! (28 MB at the peak of loading), where `tiktoken-rs` kept three copies of it, 40–47 MB, which alone broke the
//! proxy's 60 MB RSS budget.
//!
//! Counting is CPU work (tens of nanoseconds per token once warm); the first count of a vocabulary in a process
//! also loads it (about a tenth of a second), so the proxy counts off the request path, through a [`CountQueue`].

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use serde_json::Value;
use tiktoken::CoreBpe;
use tokio_util::task::TaskTracker;

use crate::usage::Usage;

/// Tokens OpenAI adds per chat message (role and separators), and to prime the reply; from OpenAI's cookbook
/// "How to count tokens with tiktoken" for current chat models.
const PER_MESSAGE: u64 = 3;
const REPLY_PRIMING: u64 = 3;

/// o200k: the vocabulary of current OpenAI models, and the approximation for models whose own is not compiled in.
static O200K: LazyLock<CoreBpe> = LazyLock::new(tiktoken::encoding::o200k_base);

/// The vocabulary `model` counts with.
fn bpe_for(model: &str) -> &'static CoreBpe {
    match tiktoken::model_to_encoding(model) {
        // One o200k instance in the process, whichever way a model comes to it.
        Some("o200k_base") | None => &O200K,
        Some(name) => tiktoken::get_encoding(name).unwrap_or(&O200K),
    }
}

/// Tokens in a plain text for `model`.
pub fn count_text(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    bpe_for(model).count(text) as u64
}

/// Local counts waiting to run, one at a time per server ([`CountQueue::push`]). Cheap to clone (one handle).
#[derive(Clone, Default)]
pub struct CountQueue {
    state: Arc<Mutex<QueueState>>,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    /// A drainer is running (or about to): it takes every job queued before it finds the queue empty.
    drainer_running: bool,
}

impl CountQueue {
    /// Runs `job` (a local count and what follows it) on the blocking pool after the jobs queued before it, one
    /// job at a time; without a Tokio runtime it runs here and now.
    ///
    /// One at a time because the tiktoken crate keeps a 1.25 MB piece cache in each thread that counts, and a
    /// blocking task per count spread a burst over as many threads as it had counts in flight (200 clients whose
    /// every stream was counted locally: 286 threads; 8 with this queue). A job queued while a drainer runs is taken
    /// by that drainer; otherwise it starts one, tracked by `tasks`, so a graceful shutdown waits for the queued
    /// counts before it drains the ledger.
    pub fn push(&self, tasks: &TaskTracker, job: impl FnOnce() + Send + 'static) {
        let start_drainer = {
            let mut state = self.lock();
            state.jobs.push_back(Box::new(job));
            !std::mem::replace(&mut state.drainer_running, true)
        };
        if start_drainer {
            if tokio::runtime::Handle::try_current().is_ok() {
                let queue = self.clone();
                drop(tasks.spawn_blocking(move || queue.drain()));
            } else {
                self.drain();
            }
        }
    }

    fn drain(&self) {
        loop {
            let job = {
                let mut state = self.lock();
                match state.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        state.drainer_running = false;
                        return;
                    }
                }
            };
            // A job that panics must not take the drainer, and with it every later count, down.
            if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!("a local token count panicked; its request is not recorded");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Jobs run outside the lock, so a poisoned lock only means a panic between two plain field updates.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every string inside a JSON value, concatenated with spaces (message content parts, tool arguments, …).
fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                // Image payloads are priced by the provider per image, not per base64 character.
                if k == "image_url" || k == "source" || k == "input_audio" {
                    continue;
                }
                collect_text(v, out);
            }
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push(' ');
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Input tokens of an OpenAI chat request (`messages`, `tools`), an Anthropic messages request (`system`,
/// `messages`, `tools`) or a completions request (`prompt`).
pub fn estimate_input(model: &str, request: &Value) -> u64 {
    let mut tokens = 0;
    let mut text = String::new();
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        for m in messages {
            tokens += PER_MESSAGE;
            text.clear();
            collect_text(m, &mut text);
            tokens += count_text(model, text.trim_end());
        }
        tokens += REPLY_PRIMING;
    }
    for field in ["system", "tools", "prompt", "input"] {
        if let Some(v) = request.get(field) {
            text.clear();
            collect_text(v, &mut text);
            tokens += count_text(model, text.trim_end());
        }
    }
    tokens
}

/// Usage for a response the provider did not count: the request's input tokens and the generated text so far.
pub fn estimate_usage(model: &str, request: &Value, generated: &str) -> Usage {
    Usage {
        input_tokens: estimate_input(model, request),
        output_tokens: count_text(model, generated),
        ..Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_known_strings() {
        // "hello world" is two tokens in both o200k and cl100k.
        assert_eq!(count_text("gpt-4o", "hello world"), 2);
        assert_eq!(count_text("gpt-4", "hello world"), 2);
        assert_eq!(count_text("claude-sonnet-4", ""), 0);
    }

    #[test]
    fn each_model_counts_with_its_own_vocabulary() {
        // Counts from the reference implementation (tiktoken-rs 0.12, `encode_ordinary`), for texts on which the
        // vocabularies disagree: (text, o200k, cl100k, p50k, r50k).
        let cases = [
            ("你好世界，这是一个测试。", 6, 11, 22, 22),
            (
                "    def forward(self, x):\n        return self.linear(x)\n",
                13,
                13,
                18,
                26,
            ),
            (
                "Ünïcödé naïve café — “quotes” and emoji 🎉👩\u{200d}👩\u{200d}👧",
                24,
                32,
                32,
                32,
            ),
            ("don't I'LL we've THEY'RE", 7, 9, 10, 10),
            // Special-token text in a message is ordinary text: no special token is counted for it.
            ("<|endoftext|> is ordinary text here", 11, 11, 11, 11),
        ];
        for (text, o200k, cl100k, p50k, r50k) in cases {
            assert_eq!(count_text("gpt-4o-mini-2024-07-18", text), o200k, "{text}");
            assert_eq!(count_text("gpt-5", text), o200k, "{text}");
            assert_eq!(count_text("gpt-4-0613", text), cl100k, "{text}");
            assert_eq!(count_text("gpt-3.5-turbo", text), cl100k, "{text}");
            assert_eq!(count_text("text-davinci-003", text), p50k, "{text}");
            assert_eq!(count_text("davinci", text), r50k, "{text}");
            // Models whose vocabulary is not compiled in are approximated with o200k.
            assert_eq!(count_text("claude-sonnet-4", text), o200k, "{text}");
            assert_eq!(count_text("llama-3.1-8b", text), o200k, "{text}");
            assert_eq!(count_text("mock-d0", text), o200k, "{text}");
        }
    }

    #[test]
    fn queued_counts_run_one_at_a_time_each_once_in_the_order_queued() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (queue, tasks) = (CountQueue::default(), TaskTracker::new());
        runtime.block_on(async {
            for submitter in 0..4 {
                let (running, most, order, done_tx) =
                    (running.clone(), most.clone(), order.clone(), done_tx.clone());
                let (queue, tasks) = (queue.clone(), tasks.clone());
                tokio::spawn(async move {
                    for i in 0..25 {
                        let (running, most, order, done_tx) =
                            (running.clone(), most.clone(), order.clone(), done_tx.clone());
                        queue.push(&tasks, move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_micros(200));
                            order.lock().unwrap().push((submitter, i));
                            running.fetch_sub(1, Ordering::SeqCst);
                            done_tx.send(()).unwrap();
                        });
                        if i == 10 {
                            // A job that panics does not stop the ones after it.
                            queue.push(&tasks, || panic!("a count that fails"));
                        }
                        tokio::task::yield_now().await;
                    }
                });
            }
        });
        for _ in 0..100 {
            done_rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("every queued count runs");
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "never two counts at once");
        let order = order.lock().unwrap();
        for submitter in 0..4 {
            let mine: Vec<usize> = order
                .iter()
                .filter(|(s, _)| *s == submitter)
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(
                mine,
                (0..25).collect::<Vec<_>>(),
                "each submitter's counts in the order queued"
            );
        }
    }

    #[test]
    fn chat_requests_count_message_overhead() {
        let req = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "hello world"}]}
        ]});
        let n = estimate_input("gpt-4o", &req);
        // Two messages × 3 + priming 3 + content tokens (role names count too).
        assert!(n > 9 && n < 25, "{n}");
        let usage = estimate_usage("gpt-4o", &req, "hello world");
        assert_eq!(usage.output_tokens, 2);
        assert_eq!(usage.input_tokens, n);
    }
}
