//! Hot reload of the policies folder.
//!
//! A `notify` watcher on the folder wakes a task, which waits for writes to settle (editors and `git checkout`
//! touch several files in a burst), reloads the **whole** folder, and either swaps the new set in with one
//! atomic store or — if any file is invalid — keeps the previous set live and records the problems for the
//! admin endpoint. A valid change is live within about half a second; the contract is 2 s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::{Embedder, Policies, PolicyIssue, PolicySet};
use crate::config::Catalogue;

/// How long the folder must be quiet before it is reloaded.
const SETTLE: Duration = Duration::from_millis(250);

/// Reloads the folder now: swaps on success, records the issues (and keeps the live set) on failure.
pub fn reload_now(
    dir: &std::path::Path,
    catalogue: &Catalogue,
    policies: &Policies,
    embedder: Option<&dyn Embedder>,
) -> Result<(), Vec<PolicyIssue>> {
    match PolicySet::load_dir(dir, catalogue, embedder) {
        Ok(set) => {
            let teams: Vec<&str> = set.teams.keys().map(String::as_str).collect();
            tracing::info!(dir = %dir.display(), teams = ?teams, "policies loaded");
            policies.replace(set);
            Ok(())
        }
        Err(issues) => {
            for issue in &issues {
                tracing::warn!(file = %issue.file, path = %issue.path, line = ?issue.line, message = %issue.message,
                    "policy rejected; the previous policies stay live");
            }
            policies.reject(issues.clone());
            Err(issues)
        }
    }
}

/// Watches `dir` and reloads on change until `shutdown` fires. Returns the watching future for the caller to run
/// on its task tracker; fails if the folder cannot be watched (it does not exist, or the inotify limit is
/// reached).
pub fn watch_folder(
    dir: PathBuf,
    catalogue: Arc<Catalogue>,
    policies: Policies,
    embedder: Option<Arc<dyn Embedder>>,
    metrics: Option<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, notify::Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Access events (a reader opening a file) change nothing.
            Ok(e) if e.kind.is_access() => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(error) => tracing::warn!(%error, "policy folder watch error"),
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(async move {
        // The watcher stops when dropped; it lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                got = rx.recv() => if got.is_none() { break },
            }
            // Let a burst of writes settle, then reload once.
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(SETTLE) => break,
                    got = rx.recv() => if got.is_none() { return },
                }
            }
            let (dir, catalogue, policies, embedder) =
                (dir.clone(), catalogue.clone(), policies.clone(), embedder.clone());
            // Reading files and embedding route examples is blocking work.
            let joined = tokio::task::spawn_blocking(move || {
                reload_now(&dir, &catalogue, &policies, embedder.as_deref()).is_ok()
            })
            .await;
            let result = match joined {
                Ok(true) => crate::metrics::ReloadResult::Ok,
                Ok(false) => crate::metrics::ReloadResult::Error,
                Err(error) => {
                    tracing::error!(%error, "policy reload task failed");
                    crate::metrics::ReloadResult::Error
                }
            };
            if let Some(metrics) = &metrics {
                metrics.policy_reload(result);
            }
        }
    })
}

/// Loads the policies at startup. A missing folder means the built-in default policy for every team (logged);
/// a folder with an invalid file is an error listing every problem — the server refuses to start on a broken
/// policy rather than run without the rules an admin wrote.
pub fn load_initial(
    dir: &std::path::Path,
    catalogue: &Catalogue,
    embedder: Option<&dyn Embedder>,
) -> anyhow::Result<Policies> {
    if !dir.exists() {
        tracing::warn!(dir = %dir.display(), "policies folder not found; every team gets the built-in default policy");
        return Ok(Policies::from_set(PolicySet::default()));
    }
    PolicySet::load_dir(dir, catalogue, embedder)
        .map(Policies::from_set)
        .map_err(|issues| {
            let lines: Vec<String> = issues.iter().map(|i| format!("  {i}")).collect();
            anyhow::anyhow!(
                "{} problem(s) in the policies in {}:\n{}",
                issues.len(),
                dir.display(),
                lines.join("\n")
            )
        })
}
