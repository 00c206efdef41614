//! Which poll of its connection a response body is in: a per-thread count of connection-task polls.
//!
//! A streamed body that holds frames back to send them in one write ([`crate::pipeline`]) yields to the scheduler
//! and must tell, when polled again, whether the scheduler ran other tasks in between or hyper polled the body a
//! second time within the same poll of the connection (it does, after a flush, when the read side may be ready).
//! [`counted`] wraps each served connection and bumps this thread's count on every poll; the body compares
//! [`current`] with the value it saw when it yielded. The same value means the same connection poll. A task that
//! moved to another worker thread reads that thread's count, which differs: a new poll, which it is. Over HTTP/2,
//! hyper polls a response body in a task of its own, spawned through [`CountedExecutor`], which counts it too.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static POLLS: Cell<u64> = const { Cell::new(0) };
}

/// This thread's count of connection polls so far.
pub fn current() -> u64 {
    POLLS.with(Cell::get)
}

/// `future`, counting each of its polls on the polling thread.
pub fn counted<F: Future>(future: F) -> Counted<F> {
    Counted { future }
}

/// The server's executor for the tasks hyper spawns (HTTP/2 streams): `tokio::spawn`, each task [`counted`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CountedExecutor;

impl<F> hyper::rt::Executor<F> for CountedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        drop(tokio::spawn(counted(future)));
    }
}

pin_project_lite::pin_project! {
    /// See [`counted`].
    pub struct Counted<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        POLLS.with(|polls| polls.set(polls.get().wrapping_add(1)));
        self.project().future.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_poll_of_a_counted_future_moves_the_count() {
        let mut first_poll = true;
        let before = current();
        let seen = counted(std::future::poll_fn(|cx| {
            if first_poll {
                first_poll = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(current())
        }))
        .await;
        assert_eq!(seen, before + 2, "two polls, two counts");
        assert_eq!(current(), seen, "nothing counts outside a poll");
    }

    #[tokio::test]
    async fn tasks_spawned_through_the_executor_are_counted() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut polls = Vec::new();
        let mut tx = Some(tx);
        hyper::rt::Executor::execute(
            &CountedExecutor,
            std::future::poll_fn(move |cx| {
                polls.push(current());
                if polls.len() < 2 {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                if let Some(tx) = tx.take() {
                    drop(tx.send(polls.clone()));
                }
                Poll::Ready(())
            }),
        );
        let polls = rx.await.unwrap();
        assert_eq!(
            polls[1],
            polls[0] + 1,
            "each poll of the spawned task counts: {polls:?}"
        );
    }
}
