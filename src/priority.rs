//! Background threads at a lower CPU priority than request handling.
//!
//! Some work runs in the proxy's process but off the request path: the embedded database's writes (the ledger) and
//! the log writer. At normal priority such a thread, woken on the core that is serving requests, runs before the
//! requests waiting there; measured with the proxy on one core, a ledger flush at normal priority tripled the p99
//! of the requests around it. Linux keeps a nice value per thread and a new thread inherits its creator's, so a
//! background thread that a library starts for us is started from a short-lived thread that lowered its own
//! priority first.

/// How many nice levels below request handling background threads run. On a contended core the scheduler then
/// gives such a thread about a tenth of the time and lets a request preempt it; the ledger needs a few per cent at
/// the proxy's peak rate and buffers the rest in its queue, the log writer less.
pub const BACKGROUND_NICE_OFFSET: i32 = 10;

/// Lowers the calling thread's CPU priority by `offset` nice levels (at most to 19). A failure only costs latency,
/// so it is logged, not returned. Does nothing off Linux.
#[cfg(target_os = "linux")]
pub fn lower_thread_priority(offset: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    let tid = rustix::thread::gettid();
    let lowered = getpriority_process(Some(tid))
        .and_then(|current| setpriority_process(Some(tid), (current + offset).min(19)));
    if let Err(e) = lowered {
        tracing::debug!(error = %e, "cannot lower a background thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lower_thread_priority(_offset: i32) {}

/// Spawns a thread named `name` that lowers its own priority by [`BACKGROUND_NICE_OFFSET`] and then runs `run`:
/// the threads `run` spawns inherit that priority.
pub fn spawn_lowered<T, F>(name: &str, run: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        lower_thread_priority(BACKGROUND_NICE_OFFSET);
        run()
    })
}

/// [`spawn_lowered`], waiting for `start` to return and returning what it returned. Blocks: for start-up code, not
/// for async tasks.
pub fn start_in_background<T, F>(name: &str, start: F) -> std::io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_lowered(name, start)?
        .join()
        .map_err(|_| std::io::Error::other(format!("the {name} thread panicked")))
}
