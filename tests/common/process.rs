//! Black-box tests of the real binary: spawn it as a child process, wait until it serves, kill it on drop.
//!
//! Typical use (the binary path comes from Cargo: `env!("CARGO_BIN_EXE_switchyard")`):
//! ```ignore
//! let upstream = MockUpstream::builder().api_key("sk-upstream").start().await;
//! let port = free_port();
//! let config = write_config(&dir, &upstream.url(), port);           // the test's own YAML
//! let proxy = ChildServer::spawn(
//!     env!("CARGO_BIN_EXE_switchyard").as_ref(),
//!     &["--config", config.to_str().unwrap()],
//!     &[("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"))],
//!     format!("http://127.0.0.1:{port}"),
//! )
//! .await;
//! let env = sdk_env(&proxy.base_url, &key, "proxy");
//! run_pytest(&[], &env).await.assert_passed();
//! assert_upstream_saw_sdk_traffic(&upstream).await;
//! ```

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// A port that was free a moment ago. Another process could take it before the child binds it; on a test machine
/// that race is rare enough, and the child failing to bind shows up as a clear spawn error.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A child server process, killed when dropped.
pub struct ChildServer {
    child: Child,
    pub base_url: String,
    /// Everything the child wrote so far (stdout and stderr interleaved). Read continuously: a child whose pipe
    /// fills up blocks on its next log line.
    output: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl ChildServer {
    /// Spawns `program` and waits (up to 30 s) until `GET {base_url}/healthz` answers 200. Panics with the child's
    /// output if it exits first or never becomes healthy.
    pub async fn spawn(program: &Path, args: &[&str], envs: &[(&str, String)], base_url: String) -> Self {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in envs {
            cmd.env(name, value);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", program.display()));
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(collect(stdout, Arc::clone(&output))));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(collect(stderr, Arc::clone(&output))));
        }
        let mut server = Self {
            child,
            base_url,
            output,
            readers,
        };
        server.wait_healthy(Duration::from_secs(30)).await;
        server
    }

    async fn wait_healthy(&mut self, limit: Duration) {
        let url = format!("{}/healthz", self.base_url);
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let output = self.drain_output().await;
                panic!("the server exited with {status} before becoming healthy:\n{output}");
            }
            // Polling is the only readiness signal a black-box process offers; 20 ms keeps start-up snappy.
            let probe = tokio::time::timeout(Duration::from_millis(500), try_get(&url)).await;
            if let Ok(Some(200)) = probe {
                return;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                let output = self.drain_output().await;
                panic!("{url} did not answer 200 within {limit:?}:\n{output}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the child (SIGKILL) and returns what it wrote, for assertions on logs.
    pub async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.drain_output().await
    }

    /// The process id, e.g. to send SIGTERM for graceful-shutdown tests (`kill -TERM <pid>`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the child to exit by itself (after a signal) and returns its status and output.
    pub async fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().await.expect("wait for child");
        (status, self.drain_output().await)
    }

    /// What the child has written so far.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// The whole output of an exited child: its pipes are closed, so the readers finish.
    async fn drain_output(&mut self) -> String {
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
        self.output()
    }
}

async fn collect(mut pipe: impl AsyncRead + Unpin, sink: Arc<Mutex<String>>) {
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut out) = sink.lock() {
            out.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
}

async fn try_get(url: &str) -> Option<u16> {
    let req = http::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .ok()?;
    let resp = super::client::client().request(req).await.ok()?;
    Some(resp.status().as_u16())
}
