//! Runs the Python end-to-end tests (`tests/e2e/*.py`, driven by the official `openai` and `anthropic` SDKs) from a
//! Rust test. The venv is made by `scripts/e2e-venv.sh` (pinned versions, reused when already there).
//!
//! Environment the Python tests read (see `tests/e2e/conftest.py`):
//! - `SWITCHYARD_BASE_URL`: the OpenAI base URL including `/v1`, e.g. `http://127.0.0.1:PORT/v1`.
//! - `SWITCHYARD_ANTHROPIC_BASE_URL`: the Anthropic base URL without `/v1` (default: the above minus `/v1`).
//! - `SWITCHYARD_KEY`: the key to authenticate with.
//! - `SWITCHYARD_E2E_TARGET`: `proxy` (default) or `mock`; `mock` skips the assertions only Switchyard satisfies.
//! - Model names: `SWITCHYARD_MODEL` (default `auto`), `SWITCHYARD_EMBEDDING_MODEL`, `SWITCHYARD_ANTHROPIC_MODEL`,
//!   `SWITCHYARD_UNKNOWN_MODEL`, `SWITCHYARD_SLOW_MODEL` (a model whose stream is long and slow, for the
//!   close-early test).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use super::mock::MockUpstream;

/// The crate root (where `scripts/` and `tests/e2e/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the Python tests.
pub fn e2e_dir() -> PathBuf {
    repo_root().join("tests").join("e2e")
}

/// Creates or reuses the e2e venv and returns its python. Panics with the script's output when it fails (no
/// network on a first run, no `python3`), so the reason is in the test failure.
pub async fn e2e_python() -> PathBuf {
    let script = repo_root().join("scripts").join("e2e-venv.sh");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("could not run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (it needs python3 and, on its first run, PyPI access):\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The result of one pytest run.
#[derive(Debug)]
pub struct PytestRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl PytestRun {
    /// Panics with pytest's full output unless every test passed (skips are fine).
    pub fn assert_passed(&self) {
        assert!(
            self.status.success(),
            "pytest failed ({}):\n{}\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs pytest on `tests` (paths relative to `tests/e2e/`, e.g. `["test_openai_sdk.py"]`; empty = all) with these
/// extra environment variables. The output is printed, so `cargo test -- --nocapture` shows it live-ish and a
/// failing test shows it anyway.
pub async fn run_pytest(tests: &[&str], envs: &[(&str, String)]) -> PytestRun {
    let python = e2e_python().await;
    let dir = e2e_dir();
    let mut cmd = tokio::process::Command::new(&python);
    cmd.args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"])
        .current_dir(&dir)
        .stdin(Stdio::null());
    if tests.is_empty() {
        cmd.arg(".");
    } else {
        cmd.args(tests);
    }
    // The proxy under test must not be bypassed by a developer's proxy settings.
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for (name, value) in envs {
        cmd.env(name, value);
    }
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("could not run {}: {e}", python.display()));
    let run = PytestRun {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!("pytest {}:\n{}\n{}", run.status, run.stdout, run.stderr);
    run
}

/// The environment for the SDK tests against a server at `base` (no `/v1`).
pub fn sdk_env(base: &str, key: &str, target: &str) -> Vec<(&'static str, String)> {
    let base = base.trim_end_matches('/');
    vec![
        ("SWITCHYARD_BASE_URL", format!("{base}/v1")),
        ("SWITCHYARD_ANTHROPIC_BASE_URL", base.to_owned()),
        ("SWITCHYARD_KEY", key.to_owned()),
        ("SWITCHYARD_E2E_TARGET", target.to_owned()),
    ]
}

/// The field `test_extra_body_passes_through` sends; after pytest, the upstream must have received it untouched.
pub const EXTRA_BODY_PROBE: &str = "x_switchyard_e2e_probe";

/// Checks, after a pytest run, what only the upstream can see: the unknown `extra_body` field arrived untouched,
/// and the stream the client closed early was cancelled upstream too (waits for that, since the proxy may notice
/// the disconnect a moment after pytest exits).
pub async fn assert_upstream_saw_sdk_traffic(upstream: &MockUpstream) {
    let probe = upstream
        .requests()
        .into_iter()
        .find_map(|r| r.body.get(EXTRA_BODY_PROBE).cloned());
    assert_eq!(
        probe,
        Some(serde_json::json!({"nested": [1, 2, 3], "flag": true})),
        "the unknown extra_body field did not reach the upstream untouched"
    );
    // Real time here (the SDK tests need a multi-threaded runtime with a running clock), so a bound is safe and
    // turns "the proxy never closed the upstream stream" into a failure instead of a hang.
    let cancelled =
        tokio::time::timeout(Duration::from_secs(10), upstream.wait_for_cancelled_streams(1)).await;
    assert!(
        cancelled.is_ok(),
        "the client closed a stream early but the upstream stream was not cancelled within 10 s: {:?}",
        upstream.counters()
    );
}
