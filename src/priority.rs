//! Background threads at a lower CPU priority than request handling.
//!
//! Some work runs in the proxy's process but off the request path: the embedded database's writes (the ledger) and
//! the log writer. At normal priority such a thread, woken on the core that is serving requests, runs before the
//! requests waiting there; measured with the proxy on one core, a ledger flush at normal priority tripled the p99
//! of the requests around it. Linux keeps a nice value per thread and a new thread inherits its creator's, so a
//! background thread that a library starts for us is started from a short-lived thread that lowered its own
//! priority first.

/// How many nice levels below request handling the log writer runs. On a contended core the scheduler then gives
/// it about a tenth of the time and lets a request preempt it; it needs about one per cent at the proxy's peak rate.
pub const BACKGROUND_NICE_OFFSET: i32 = 10;

/// How many nice levels below request handling the embedded database's writes (the ledger) run.
///
/// The offset sets the share of a saturated core the ledger can get: about 9.7 % at 10 levels, 14.4 % at 8, 25 % at
/// 5 (a weight of 1024 / 1.25^n against the request thread's 1024). With the proxy on one core at its peak rate
/// (`bench/sustained.sh`), a row costs the SQLite thread about 3.7 µs against about 30 µs for the request: the
/// ledger needs about 11 % of the core. At 10 levels it fell behind, filled its queue in about 15 s and spilled to
/// the spool, which halved the throughput. At 8 it keeps up, with a third to spare. Fewer levels buy nothing more
/// and cost tail latency: with the thread reniced under the same load, the p99 of the requests was 1.6–1.7 ms at
/// 8 levels, 1.7–1.9 ms at 7, 2.2–2.5 ms at 5 and about 4 ms at 0 (1.5 ms at 10, while it lasted). At 8 levels
/// a wake-up does not preempt a busy request thread: the ledger's work waits for the scheduler's tick
/// and then comes in stretches of a few milliseconds (`bench/timeline.sh`, `bench/README.md`).
pub const LEDGER_NICE_OFFSET: i32 = 8;

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

/// Spawns a thread named `name` that lowers its own priority by `offset` nice levels and then runs `run`: the
/// threads `run` spawns inherit that priority.
pub fn spawn_lowered<T, F>(name: &str, offset: i32, run: F) -> std::io::Result<std::thread::JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        lower_thread_priority(offset);
        run()
    })
}

/// [`spawn_lowered`] by [`BACKGROUND_NICE_OFFSET`], waiting for `start` to return and returning what it returned.
/// Blocks: for start-up code, not for async tasks.
pub fn start_in_background<T, F>(name: &str, start: F) -> std::io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_lowered(name, BACKGROUND_NICE_OFFSET, start)?
        .join()
        .map_err(|_| std::io::Error::other(format!("the {name} thread panicked")))
}
