//! The spool: an append-only local file for ledger rows the database could not take.
//!
//! Rows are JSON lines in numbered segment files (`ledger-0000000000000001.jsonl`, …) under `ledger.spool_dir`,
//! each closed after [`MAX_SEGMENT_ROWS`] rows.
//! One dedicated thread owns the files. It takes every message waiting in its channel, writes them, and calls
//! `fsync` once for the lot (group commit), then acknowledges each; a writer that awaits the acknowledgement knows
//! its rows are on disk. A plain thread rather than a tokio task because every step is a blocking syscall and
//! the fsync must not stall an async worker.
//!
//! Replay: [`Spool::rotate`] closes the active segment and lists every segment on disk, oldest first; the ledger
//! writer inserts each (duplicates are dropped by the database key) and only then [`Spool::remove`]s it. A crash
//! anywhere in between leaves the segment to be replayed again, which is harmless. A torn last line (the process
//! died mid-write) is skipped; any other unreadable line is kept in a `.rejected` file for an operator.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::Row;

const PREFIX: &str = "ledger-";
const SUFFIX: &str = ".jsonl";
/// Held locked by the process that owns the folder.
const LOCK_FILE: &str = ".lock";
/// How long opening waits for a lock that is held.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Most messages written between two fsyncs; bounds the latency of the first one in a burst.
const MAX_GROUP: usize = 4096;
/// Rows after which a segment is closed and the next append starts a new one. A replay reads a whole segment into
/// memory, so this bounds what a replay holds (about 7 MB) however long the database was away or behind.
const MAX_SEGMENT_ROWS: usize = 10_000;

enum Msg {
    Append {
        rows: Vec<Row>,
        ack: Option<oneshot::Sender<io::Result<()>>>,
    },
    Rotate {
        ack: oneshot::Sender<io::Result<Vec<PathBuf>>>,
    },
}

/// Handle to the spool thread; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    tx: mpsc::Sender<Msg>,
    dir: PathBuf,
    /// Set when rows are appended (or found at start-up); cleared by the writer before a replay.
    dirty: Arc<AtomicBool>,
}

/// What a replayed segment contained.
pub struct Segment {
    pub path: PathBuf,
    pub rows: Vec<Row>,
    /// Lines that were neither valid rows nor a torn last line.
    pub rejected: Vec<String>,
}

impl Spool {
    /// Opens (creating) the spool folder and starts its thread. Segments left by an earlier run are kept and
    /// marked for replay.
    ///
    /// The folder is locked (an exclusive `flock` on `LOCK_FILE`, released by the kernel when the process ends,
    /// `kill -9` included) for as long as the spool thread runs. Two replicas sharing one spool would replay and
    /// delete each other's segments while they are still being written; the second one is refused instead.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_folder(dir)?;
        let existing = segments(dir)?;
        let next_seq = existing
            .iter()
            .filter_map(|p| seq_of(p))
            .max()
            .map_or(1, |s| s + 1);
        let dirty = Arc::new(AtomicBool::new(!existing.is_empty()));
        let (tx, rx) = mpsc::channel();
        let state = Thread {
            _lock: lock,
            dir: dir.to_owned(),
            active: None,
            active_rows: 0,
            next_seq,
            dirty: dirty.clone(),
        };
        std::thread::Builder::new()
            .name("ledger-spool".to_owned())
            .spawn(move || state.run(rx))?;
        Ok(Spool {
            tx,
            dir: dir.to_owned(),
            dirty,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends rows and waits until they are fsync'd.
    pub async fn append(&self, rows: Vec<Row>) -> io::Result<()> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Append { rows, ack: Some(ack) })
            .map_err(|_| closed())?;
        done.await.map_err(|_| closed())?
    }

    /// Appends rows without waiting (the request path's overflow). They reach the disk with the next group
    /// commit, typically within a millisecond. Returns the rows back if the spool thread is gone.
    pub fn append_nowait(&self, rows: Vec<Row>) -> Result<(), Vec<Row>> {
        self.tx
            .send(Msg::Append { rows, ack: None })
            .map_err(|e| match e.0 {
                Msg::Append { rows, .. } => rows,
                Msg::Rotate { .. } => Vec::new(),
            })
    }

    /// Whether there may be rows to replay.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Closes the active segment and lists all segments on disk, oldest first. Clears the dirty flag: rows
    /// appended after the rotation go to a new segment and set it again. (The thread flips the flag, in channel
    /// order, so an append racing a rotation can never be left unflagged.)
    pub async fn rotate(&self) -> io::Result<Vec<PathBuf>> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Msg::Rotate { ack }).map_err(|_| closed())?;
        done.await.map_err(|_| closed())?
    }

    /// Reads a closed segment.
    pub async fn read(path: PathBuf) -> io::Result<Segment> {
        tokio::task::spawn_blocking(move || read_segment(path))
            .await
            .map_err(io::Error::other)?
    }

    /// Deletes a replayed segment, keeping its rejected lines (if any) beside it for an operator.
    pub async fn remove(segment: Segment) -> io::Result<()> {
        tokio::task::spawn_blocking(move || {
            if !segment.rejected.is_empty() {
                let mut bad = segment.path.clone().into_os_string();
                bad.push(".rejected");
                std::fs::write(&bad, segment.rejected.join("\n") + "\n")?;
            }
            std::fs::remove_file(&segment.path)?;
            if let Some(dir) = segment.path.parent() {
                // Make the deletion durable; if it is not, the segment is replayed again, which is harmless.
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Takes the folder's exclusive lock and writes this process's id into the lock file for an operator.
fn lock_folder(dir: &Path) -> io::Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    // A spool closed moments ago in this process releases the lock when its thread has finished; wait that out.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let locked = loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    match locked {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another process"
            } else {
                holder
            };
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "the ledger spool folder {} is in use by {holder}; give each Switchyard replica its own \
                     `ledger.spool_dir` (or `data_dir`)",
                    dir.display()
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    write!(file, "process {}", std::process::id())?;
    Ok(file)
}

/// Bytes in the folder's segments and the age in seconds of the oldest non-empty one (for the spool gauges).
pub fn disk_usage(dir: &Path) -> (u64, f64) {
    let mut bytes = 0;
    let mut oldest: Option<std::time::SystemTime> = None;
    for meta in segments(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
    {
        bytes += meta.len();
        if meta.len() > 0
            && let Ok(modified) = meta.modified()
        {
            oldest = Some(oldest.map_or(modified, |o| o.min(modified)));
        }
    }
    let age = oldest
        .and_then(|t| t.elapsed().ok())
        .map_or(0.0, |d| d.as_secs_f64());
    (bytes, age)
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the spool thread has stopped")
}

fn seq_of(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

fn segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter_map(|p| seq_of(&p).map(|s| (s, p)))
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

fn read_segment(path: PathBuf) -> io::Result<Segment> {
    let file = File::open(&path)?;
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let complete = line.ends_with('\n');
        let text = line.trim_end();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Row>(text) {
            Ok(row) => rows.push(row),
            // A torn write from a crash: the row never reached the disk whole, and its writer was never told it did.
            Err(_) if !complete => {
                tracing::warn!(segment = %path.display(), "skipping torn last line in ledger spool");
            }
            Err(e) => {
                tracing::error!(segment = %path.display(), error = %e, "unreadable line in ledger spool kept aside");
                rejected.push(text.to_owned());
            }
        }
    }
    Ok(Segment { path, rows, rejected })
}

struct Thread {
    /// Holds the folder's lock until the thread ends.
    _lock: File,
    dir: PathBuf,
    active: Option<BufWriter<File>>,
    /// Rows written to the active segment.
    active_rows: usize,
    next_seq: u64,
    dirty: Arc<AtomicBool>,
}

impl Thread {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(m) => group.push(m),
                    Err(_) => break,
                }
            }
            let mut acks = Vec::new();
            let mut result = Ok(());
            for msg in group {
                match msg {
                    Msg::Append { rows, ack } => {
                        if result.is_ok() {
                            result = self.write(&rows);
                            self.dirty.store(true, Ordering::Release);
                        }
                        if result.is_err() {
                            tracing::error!(
                                rows = rows.len(),
                                "ledger rows lost: the spool cannot be written"
                            );
                        }
                        acks.push(ack);
                    }
                    Msg::Rotate { ack } => {
                        // Everything appended before the rotation must be durable before it is listed.
                        let synced = result.and_then(|()| self.sync());
                        answer(&mut acks, &synced);
                        result = Ok(());
                        self.active = None;
                        self.dirty.store(false, Ordering::Release);
                        let _ = ack.send(synced.and_then(|()| segments(&self.dir)));
                    }
                }
            }
            let synced = result.and_then(|()| self.sync());
            if synced.is_err() || self.active_rows >= MAX_SEGMENT_ROWS {
                // Start a fresh segment next time: rather than appending after a failed write, and once this one
                // holds enough rows (it is durable now, and replayable on its own).
                self.active = None;
            }
            answer(&mut acks, &synced);
        }
        // The channel closed: every handle is gone. Make what was written durable.
        let _ = self.sync();
    }

    fn write(&mut self, rows: &[Row]) -> io::Result<()> {
        if self.active.is_none() {
            let path = self.dir.join(format!("{PREFIX}{:016}{SUFFIX}", self.next_seq));
            self.next_seq += 1;
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            // The new file's directory entry must survive a crash too.
            File::open(&self.dir)?.sync_all()?;
            self.active = Some(BufWriter::with_capacity(256 * 1024, file));
            self.active_rows = 0;
        }
        let Some(out) = self.active.as_mut() else {
            return Err(io::Error::other("no active spool segment"));
        };
        for row in rows {
            serde_json::to_writer(&mut *out, row)?;
            out.write_all(b"\n")?;
            self.active_rows += 1;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(out) = self.active.as_mut() {
            out.flush()?;
            out.get_ref().sync_data()?;
        }
        Ok(())
    }
}

fn answer(acks: &mut Vec<Option<oneshot::Sender<io::Result<()>>>>, result: &io::Result<()>) {
    for ack in acks.drain(..).flatten() {
        let _ = ack.send(match result {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        });
    }
}
