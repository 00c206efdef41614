//! Structured logs: `tracing` events rendered as text or JSON (`log.format`), filtered by `SWITCHYARD_LOG` (default
//! `info,ort=warn`: ONNX Runtime is chatty at info), written to stderr so that stdout stays free for command output.
//!
//! The server writes its log through a background thread ([`init_server`]): a request formats its line and hands it
//! over, and the thread writes whatever has piled up in one `write(2)`, then rests for 10 ms so that it is not woken
//! once per line; the commands write to stderr directly.
//!
//! Every finished request produces exactly one event, target `switchyard::request`, built from its ledger entry by
//! [`request`]; a request refused before any upstream call (bad key, bad body, policy, no model available) has no
//! ledger entry and produces one event of the same target from its error instead ([`refused`]). What a log line
//! must never hold: an API key or upstream credential (the ledger entry carries neither, only the key's id, which
//! is left out too), and a prompt unless an admin turned `log.prompts` on ([`prompt`]).

use tracing::Level;
use tracing::Subscriber;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogSettings};
use crate::error::{Error, Fault};
use crate::ledger::{LedgerEntry, Status};

/// The target of the one-line-per-request event; filter on it (`RUST_LOG=switchyard::request=off`) to silence it.
pub const REQUEST_TARGET: &str = "switchyard::request";
/// The target of prompt events, emitted only when `log.prompts` is on.
pub const PROMPT_TARGET: &str = "switchyard::prompt";
/// The environment variable holding the log filter, in `RUST_LOG` syntax.
pub const FILTER_ENV: &str = "SWITCHYARD_LOG";
/// The filter when [`FILTER_ENV`] is unset: info, except ONNX Runtime, which logs every arena allocation of every
/// classifier session at info (about 500 lines at start-up).
pub const DEFAULT_FILTER: &str = "info,ort=warn";

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    #[error("cannot start the log writer thread: {0}")]
    Thread(std::io::Error),
}

/// How many bytes the log writer thread gathers before a write; it also writes whenever it has nothing more queued.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// How long the log writer thread rests after writing out its queue. While it rests, a request's line is only
/// queued; were the thread waiting on the queue instead, every line would wake it (a futex call on the request path
/// and two context switches on the proxy's core). At 1,000 requests/s that was 0.9 wake-ups per request. Lines
/// reach stderr at most this much later.
const WRITE_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
/// How many lines may wait for the log writer thread: about a second at the proxy's peak rate on one core. Its
/// ring is allocated whole (32 bytes a slot), so the library's default of 128k lines would hold 4 MB.
const QUEUED_LINES: usize = 16 * 1024;

/// Installs the process-wide subscriber for a command: text or JSON as `settings` say (text without settings, for
/// commands that run before a config is loaded), filtered by `SWITCHYARD_LOG` (`RUST_LOG` syntax; default
/// [`DEFAULT_FILTER`]), written straight to stderr. Call once, from the CLI; tests build their own with
/// [`subscriber`].
pub fn init(settings: Option<&LogSettings>) -> Result<(), LoggingError> {
    let text = LogSettings {
        format: LogFormat::Text,
        prompts: false,
    };
    install(subscriber(
        settings.unwrap_or(&text),
        filter_from_env(),
        std::io::stderr,
    ))
}

/// Installs the server's subscriber ([`init`]'s, as `settings` say), writing to stderr through a background thread
/// of lower CPU priority ([`crate::priority`]), so that a request's log line costs its formatting and a hand-over,
/// not a `write(2)` on the request path. Lines are never dropped: when [`QUEUED_LINES`] of them wait (stderr is
/// stalled), the request that logs waits too, as it would writing directly. Keep the guard until the process
/// ends: dropping it writes out what is queued.
pub fn init_server(settings: &LogSettings) -> Result<WorkerGuard, LoggingError> {
    let (writer, guard) = crate::priority::start_in_background("log-start", || {
        NonBlockingBuilder::default()
            .lossy(false)
            .buffered_lines_limit(QUEUED_LINES)
            .thread_name("log-writer")
            .finish(PacedStderr(std::io::BufWriter::with_capacity(
                WRITE_BUFFER_BYTES,
                std::io::stderr(),
            )))
    })
    .map_err(LoggingError::Thread)?;
    install(subscriber(settings, filter_from_env(), writer))?;
    Ok(guard)
}

/// The log writer thread's output: `tracing-appender`'s worker writes every queued line, then flushes once its
/// queue is empty; the flush writes out the buffer and rests for [`WRITE_PAUSE`].
struct PacedStderr(std::io::BufWriter<std::io::Stderr>);

impl std::io::Write for PacedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        std::thread::sleep(WRITE_PAUSE);
        Ok(())
    }
}

fn filter_from_env() -> EnvFilter {
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(std::env::var(FILTER_ENV).unwrap_or_else(|_| DEFAULT_FILTER.to_owned()))
}

fn install(subscriber: Box<dyn Subscriber + Send + Sync>) -> Result<(), LoggingError> {
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LoggingError::AlreadyInstalled)
}

/// The subscriber [`init`] installs, writing to `writer`.
pub fn subscriber<W>(
    settings: &LogSettings,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match settings.format {
        LogFormat::Text => Box::new(builder.with_ansi(false).finish()),
        // Flattened, so that a log pipeline sees `team`, `cost_usd`, … at the top level of each JSON object.
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish(),
        ),
    }
}

/// The one log line of a finished request. Failures log at `warn`, so that `RUST_LOG=warn` keeps only them.
pub fn request(entry: &LedgerEntry) {
    // `tracing` needs the level at compile time, hence one arm per level with the same fields.
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: REQUEST_TARGET,
                $level,
                request_id = %entry.request_id,
                team = %entry.team,
                user = %entry.user,
                endpoint = entry.endpoint,
                requested_model = %entry.requested_model,
                model = %entry.routed_model,
                provider = %entry.provider,
                route = %entry.route_reason,
                difficulty = entry.difficulty,
                task = entry.task.as_deref(),
                status = entry.status.as_str(),
                http_status = entry.http_status,
                input_tokens = entry.usage.input_tokens,
                output_tokens = entry.usage.output_tokens,
                usage_estimated = entry.estimated,
                cost_usd = %entry.cost,
                baseline_cost_usd = %entry.baseline_cost,
                latency_ms = entry.latency_ms,
                ttft_ms = entry.ttft_ms,
                overhead_us = entry.overhead_us,
                "request finished"
            )
        };
    }
    match entry.status {
        Status::Ok | Status::Cancelled | Status::Rejected => emit!(Level::INFO),
        Status::Failed => emit!(Level::WARN),
    }
}

/// The one log line of a request refused before any upstream call, which has no ledger entry: who asked (`team`
/// is `None` before authentication), what for, and the error the client got (its message as `reason`). Refusals
/// the client caused log at `info`, the others (shutting down, no model available, store down) at `warn`. The
/// error's message is the one the client saw, which by [`Error`]'s rule holds no key or credential; the presented
/// key is never logged. The message may quote the client (a model name), so it is recorded as a string, which the
/// text format quotes and escapes: a newline in it cannot start a forged log line.
pub fn refused(request_id: &str, team: Option<&str>, endpoint: &'static str, error: &Error) {
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: REQUEST_TARGET,
                $level,
                request_id,
                team,
                endpoint,
                status = Status::of_error(error).as_str(),
                http_status = error.status_code().as_u16(),
                error = error.label(),
                code = error.code,
                reason = error.message.as_str(),
                "request refused"
            )
        };
    }
    match error.fault() {
        Fault::Client => emit!(Level::INFO),
        Fault::Upstream | Fault::Internal => emit!(Level::WARN),
    }
}

/// Logs a request's prompt, only if an admin turned `log.prompts` on; otherwise does nothing. The pipeline calls
/// it unconditionally so that the decision lives here, next to the other rules about what logs may hold.
pub fn prompt(settings: &LogSettings, request_id: &str, prompt: &str) {
    if settings.prompts {
        tracing::info!(target: PROMPT_TARGET, request_id, prompt, "request prompt");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use rust_decimal_macros::dec;

    use super::*;
    use crate::usage::Usage;

    /// Collects everything written, for assertions.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn entry() -> LedgerEntry {
        LedgerEntry {
            request_id: "req-7".to_owned(),
            time: chrono::Utc::now(),
            user: "alice".to_owned(),
            team: "research".to_owned(),
            key_id: "sy_live_secretish".to_owned(),
            requested_model: "auto".to_owned(),
            routed_model: "gpt-4o-mini".to_owned(),
            provider: "openai".to_owned(),
            deployment: "openai-main".to_owned(),
            endpoint: "/v1/chat/completions",
            usage: Usage {
                input_tokens: 1000,
                output_tokens: 200,
                ..Usage::default()
            },
            estimated: false,
            price_input: dec!(0.15),
            price_output: dec!(0.60),
            price_cached_input: dec!(0.075),
            cost: dec!(0.00027),
            baseline_cost: dec!(0.0045),
            local: false,
            difficulty: Some(0.2),
            task: Some("coding".to_owned()),
            route_reason: "cheapest_qualifying".to_owned(),
            latency_ms: 640,
            ttft_ms: None,
            status: Status::Ok,
            http_status: 200,
            overhead_us: 350,
        }
    }

    /// What `emit` logs through the subscriber of `format` (`prompts` on or off), filtered by `filter`.
    fn logged(format: LogFormat, prompts: bool, filter: &str, emit: impl FnOnce(&LogSettings)) -> String {
        let capture = Capture::default();
        let settings = LogSettings { format, prompts };
        let sub = subscriber(&settings, EnvFilter::new(filter), capture.clone());
        tracing::subscriber::with_default(sub, || emit(&settings));
        capture.text()
    }

    #[test]
    fn json_request_line_has_the_fields_and_no_key() {
        let text = logged(LogFormat::Json, false, "info", |s| {
            request(&entry());
            prompt(s, "req-7", "summarise the merger memo");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "one line per request and no prompt: {text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["target"], "switchyard::request");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["request_id"], "req-7");
        assert_eq!(v["team"], "research");
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["route"], "cheapest_qualifying");
        assert_eq!(v["cost_usd"], "0.00027");
        assert_eq!(v["latency_ms"], 640);
        assert_eq!(v["status"], "ok");
        assert!(!text.contains("sy_live_secretish"), "{text}");
        assert!(!text.contains("merger"), "{text}");
    }

    #[test]
    fn prompts_are_logged_only_when_turned_on() {
        let text = logged(LogFormat::Text, true, "info", |s| {
            prompt(s, "req-7", "summarise the merger memo")
        });
        assert!(text.contains("merger"));
    }

    #[test]
    fn failures_log_at_warn_in_text() {
        let mut failed = entry();
        failed.status = Status::Failed;
        failed.http_status = 502;
        let text = logged(LogFormat::Text, false, "warn", |_| {
            request(&entry());
            request(&failed);
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("WARN") && text.contains("status=\"failed\"") || text.contains("status=failed"),
            "{text}"
        );
    }

    #[test]
    fn refusals_log_one_line_with_the_error_at_info_or_warn_by_fault() {
        let text = logged(LogFormat::Json, false, "info", |_| {
            refused("req-1", None, "chat", &Error::unauthorized("Invalid API key."));
            refused(
                "req-2",
                Some("research"),
                "embeddings",
                &Error::new(crate::error::ErrorKind::Unavailable, "No deployment is up.")
                    .with_code("no_model_available"),
            );
        });
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (auth, unavailable) = (&lines[0], &lines[1]);
        assert_eq!(auth["target"], REQUEST_TARGET);
        assert_eq!(auth["message"], "request refused");
        assert_eq!(auth["level"], "INFO");
        assert_eq!(auth["request_id"], "req-1");
        assert!(
            auth.get("team").is_none(),
            "no team before authentication: {auth}"
        );
        assert_eq!(auth["http_status"], 401);
        assert_eq!(auth["status"], "rejected");
        assert_eq!(auth["code"], "invalid_api_key");
        assert_eq!(unavailable["level"], "WARN");
        assert_eq!(unavailable["team"], "research");
        assert_eq!(unavailable["endpoint"], "embeddings");
        assert_eq!(unavailable["http_status"], 503);
        assert_eq!(unavailable["status"], "failed");
        assert_eq!(unavailable["error"], "unavailable");
        assert_eq!(unavailable["code"], "no_model_available");
        assert_eq!(unavailable["reason"], "No deployment is up.");
    }

    #[test]
    fn a_refusal_reason_cannot_forge_a_line_in_text() {
        let forged = "x\nINFO switchyard::request: request finished status=\"ok\"";
        let text = logged(LogFormat::Text, false, "info", |_| {
            refused("req-3", None, "chat", &Error::model_not_found(forged))
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("reason=\"The model `x\\nINFO"), "{text}");
    }
}
