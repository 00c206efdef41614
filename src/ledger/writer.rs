//! The ledger writer: a bounded queue drained in batches into the database, with the spool as the fallback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, mpsc};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::spool::Spool;
use super::sql::{self, Destination, KnownPartitions};
use super::{Counters, LedgerEntry, Row, SharedCounters};
use crate::config::LedgerSettings;
use crate::store::Store;

/// How long one insert may take before the batch is treated as failed and spooled. If it did commit after all,
/// the replay finds the rows present and skips them.
const INSERT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the writer checks whether an unreachable database is back (and replays the spool).
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// How long the ping that checks for a returning database may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// How many rows that found the queue full are gathered before they go to the spool together. One message and one
/// `fsync` per row cost a loaded proxy more than writing the row to the database would have (see [`Pending`]).
const OVERFLOW_GROUP: usize = 256;

/// What the ledger has done since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerStats {
    /// Rows handed to [`Ledger::record`].
    pub recorded: u64,
    /// Rows inserted into the database (from the queue or the spool).
    pub written: u64,
    /// Rows the database already had (replays after an insert that committed but was not acknowledged).
    pub duplicates: u64,
    /// Rows written to the spool because the queue was full or the database unreachable.
    pub spooled: u64,
    /// Rows read back from the spool and handed to the database.
    pub replayed: u64,
    /// Rows that could be written neither to the database nor to the spool (disk failure).
    pub lost: u64,
    /// Batches written.
    pub batches: u64,
}

/// Handle to the ledger; cheap to clone. See the module docs of [`crate::ledger`] for the guarantees.
#[derive(Clone)]
pub struct Ledger {
    counters: SharedCounters,
    /// `None` when the ledger is turned off (`ledger.enabled: false`): rows are counted and dropped.
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queue: mpsc::Sender<Row>,
    pending: Arc<Pending>,
    /// Taken by [`Ledger::drain`], so draining twice is harmless.
    receiver_closer: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    spool: Spool,
    tracker: TaskTracker,
    db_up: Arc<AtomicBool>,
}

impl Ledger {
    /// Opens the spool and starts the writer task. Rows spooled by an earlier run are replayed as soon as the
    /// database answers.
    ///
    /// With `settings.enabled` false nothing is started and [`Ledger::record`] only counts.
    pub fn start(store: Store, settings: &LedgerSettings) -> std::io::Result<Ledger> {
        let counters: SharedCounters = Arc::new(Counters::default());
        if !settings.enabled {
            return Ok(Ledger {
                counters,
                inner: None,
            });
        }
        let spool = Spool::open(&settings.spool_dir)?;
        let (queue, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let (close_tx, close_rx) = tokio::sync::oneshot::channel();
        let tracker = TaskTracker::new();
        let db_up = Arc::new(AtomicBool::new(true));
        let max_batch = settings.max_batch.max(1);
        let pending = Arc::new(Pending {
            // A queue shorter than a batch wakes the writer when half full, before it overflows into the spool.
            ready_at: max_batch.min(settings.queue_capacity.max(1).div_ceil(2)),
            rows: AtomicUsize::new(0),
            batch_ready: Notify::new(),
            overflow: std::sync::Mutex::default(),
        });
        let writer = Writer {
            store,
            spool: spool.clone(),
            counters: counters.clone(),
            flush_interval: settings.flush_interval,
            max_batch,
            pending: pending.clone(),
            known: KnownPartitions::new(),
            sqlite: None,
            db_up: db_up.clone(),
            last_probe: None,
        };
        tracker.spawn(writer.run(rx, close_rx));
        tracker.close();
        Ok(Ledger {
            counters,
            inner: Some(Arc::new(Inner {
                queue,
                pending,
                receiver_closer: Mutex::new(Some(close_tx)),
                spool,
                tracker,
                db_up,
            })),
        })
    }

    /// Records a finished request. Never blocks and never waits for I/O: the row joins the in-memory queue, or,
    /// when the queue is full (the database is slow) or closed (shutting down), goes to the spool: at once when
    /// closed, with a group of [`OVERFLOW_GROUP`] rows when full.
    pub fn record(&self, entry: LedgerEntry) {
        Counters::add(&self.counters.recorded, 1);
        let Some(inner) = &self.inner else {
            return;
        };
        let row = Row::from(entry);
        // Counted before it is sent, so that the writer never takes a row it has not counted yet.
        let pending = inner.pending.rows.fetch_add(1, Ordering::Relaxed) + 1;
        match inner.queue.try_send(row) {
            Ok(()) => {
                if pending >= inner.pending.ready_at {
                    inner.pending.batch_ready.notify_one();
                }
            }
            Err(e) => {
                inner.pending.rows.fetch_sub(1, Ordering::Relaxed);
                Counters::add(&self.counters.spooled, 1);
                let group = match e {
                    // The database is slower than the requests: the row joins the overflow, which goes to the
                    // spool a group at a time (by the writer after each batch, or here once a group is full).
                    // Once the queue is closed the writer takes the overflow no more, so whoever finds it closed
                    // sends what the overflow holds.
                    mpsc::error::TrySendError::Full(row) => {
                        let mut overflow = inner.pending.overflow();
                        overflow.push(row);
                        if overflow.len() < OVERFLOW_GROUP && !inner.queue.is_closed() {
                            return;
                        }
                        std::mem::take(&mut *overflow)
                    }
                    mpsc::error::TrySendError::Closed(row) => vec![row],
                };
                if let Err(rows) = inner.spool.append_nowait(group) {
                    Counters::add(&self.counters.lost, rows.len());
                    tracing::error!(request_id = %rows.first().map_or("", |r| r.request_id.as_str()),
                        rows = rows.len(), "ledger rows lost: queue full and spool stopped");
                }
            }
        }
    }

    /// Graceful shutdown: stops taking rows from the queue, writes what it holds (to the database, or to the
    /// spool when the database is unreachable) and waits until that is done and fsync'd. Rows recorded after
    /// this go straight to the spool and are replayed by the next start.
    pub async fn drain(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        if let Some(close) = inner.receiver_closer.lock().await.take() {
            let _ = close.send(());
        }
        inner.tracker.wait().await;
    }

    /// Whether rows are written at all (`ledger.enabled`).
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn stats(&self) -> LedgerStats {
        let c = &self.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        LedgerStats {
            recorded: get(&c.recorded),
            written: get(&c.written),
            duplicates: get(&c.duplicates),
            spooled: get(&c.spooled),
            replayed: get(&c.replayed),
            lost: get(&c.lost),
            batches: get(&c.batches),
        }
    }

    /// Whether the last write reached the database (for `/readyz` detail and metrics; the proxy serves either way).
    pub fn database_reachable(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.db_up.load(Ordering::Relaxed))
    }

    /// Rows waiting in memory.
    pub fn queued(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |inner| inner.queue.max_capacity() - inner.queue.capacity())
    }

    /// The spool, when the ledger is enabled.
    pub fn spool(&self) -> Option<&Spool> {
        self.inner.as_ref().map(|inner| &inner.spool)
    }
}

/// Rows recorded and not yet taken into a batch by the writer (those in the queue, and the first row of the batch
/// it is gathering), and how [`Ledger::record`] tells it that a batch is ready; and the overflow, rows that found
/// the queue full.
///
/// The queue is full when the database takes rows more slowly than requests bring them, for longer than the queue
/// lasts. Each overflowing row used to go to the spool on its own, one message and one `fsync` each, and every
/// batch written was followed by a replay of what had been spooled meanwhile. With the proxy on one core at its
/// peak rate, that work came on top of the database's own, and the throughput halved (31,000 → 15,000 requests/s,
/// 31 → 60 µs of CPU each) for as long as the load lasted. Now the overflow goes to the spool in groups, and the
/// spool is replayed only once the writer has caught up with the queue.
struct Pending {
    /// How many pending rows make [`Ledger::record`] wake the writer early, through `batch_ready`: a whole batch,
    /// or half the queue when that is shorter.
    ready_at: usize,
    rows: AtomicUsize,
    batch_ready: Notify,
    /// At most [`OVERFLOW_GROUP`] rows; rows here are counted as spooled.
    overflow: std::sync::Mutex<Vec<Row>>,
}

impl Pending {
    fn overflow(&self) -> std::sync::MutexGuard<'_, Vec<Row>> {
        // Pushing a row and taking the vector cannot leave it half-changed, so a poisoned lock is still usable.
        self.overflow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct Writer {
    store: Store,
    spool: Spool,
    counters: SharedCounters,
    flush_interval: Duration,
    max_batch: usize,
    /// Rows recorded and not yet taken into a batch; with the writer's wake-up.
    pending: Arc<Pending>,
    known: KnownPartitions,
    /// With SQLite, the writer's own connection, on a low-priority thread (opened on first use, dropped after a
    /// failed write so the next one starts afresh).
    sqlite: Option<sqlx::SqliteConnection>,
    db_up: Arc<AtomicBool>,
    last_probe: Option<Instant>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Row>, mut close: tokio::sync::oneshot::Receiver<()>) {
        let mut batch: Vec<Row> = Vec::with_capacity(self.max_batch);
        let mut closing = false;
        loop {
            // Wait for the first row of a batch, waking up now and then to replay the spool.
            if batch.is_empty() {
                tokio::select! {
                    row = rx.recv() => match row {
                        Some(row) => batch.push(row),
                        None => break,
                    },
                    _ = &mut close, if !closing => {
                        closing = true;
                        rx.close();
                        continue;
                    }
                    _ = tokio::time::sleep(RETRY_INTERVAL) => {
                        self.maybe_replay().await;
                        continue;
                    }
                }
            }
            // Then let the batch gather in the queue until the first row has waited a flush interval, a whole
            // batch (or half the queue) is pending, or the ledger is closing; and take it. Meanwhile the writer
            // does not wait on the queue itself: that would wake it (a task switch and a timer reset) for every
            // row, that is for every request. The notification holds one permit, which the wait for an earlier
            // batch may have spent, so a count already at `ready_at` (several batches came at once) is not waited
            // for.
            if batch.len() < self.max_batch && !closing {
                if self.pending.rows.load(Ordering::Relaxed) < self.pending.ready_at {
                    tokio::select! {
                        biased;
                        _ = &mut close => {
                            closing = true;
                            rx.close();
                        }
                        _ = self.pending.batch_ready.notified() => {}
                        _ = tokio::time::sleep(self.flush_interval) => {}
                    }
                } else {
                    // The notification that this batch was ready is spent here; left stored, it would cut the
                    // next batch short.
                    let _ = futures::FutureExt::now_or_never(self.pending.batch_ready.notified());
                }
            }
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(row) => batch.push(row),
                    Err(_) => break,
                }
            }
            self.pending.rows.fetch_sub(batch.len(), Ordering::Relaxed);
            self.flush(std::mem::take(&mut batch)).await;
            self.spool_overflow().await;
            // Replaying while a batch is already pending would add the spool's rows to a database that is behind:
            // they wait until the writer has caught up.
            if self.pending.rows.load(Ordering::Relaxed) < self.pending.ready_at {
                self.maybe_replay().await;
            }
        }
        // The queue is closed and empty, and `record` spools any row that overflows from now on. One last try to
        // empty the spool into the database.
        self.spool_overflow().await;
        self.maybe_replay().await;
        if let Some(conn) = self.sqlite.take()
            && let Err(e) = sqlx::Connection::close(conn).await
        {
            tracing::debug!(error = %e, "closing the ledger's SQLite connection");
        }
    }

    /// Writes one batch: to the database when it is reachable, else (or when the write fails) to the spool.
    async fn flush(&mut self, batch: Vec<Row>) {
        if batch.is_empty() {
            return;
        }
        if self.db_up.load(Ordering::Relaxed) || self.probe().await {
            match self.insert(&batch).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, rows = batch.len(), "ledger database write failed; spooling");
                    self.db_up.store(false, Ordering::Relaxed);
                }
            }
        }
        let n = batch.len();
        Counters::add(&self.counters.spooled, n);
        if let Err(e) = self.spool.append(batch).await {
            Counters::add(&self.counters.lost, n);
            tracing::error!(error = %e, rows = n, "ledger rows lost: database and spool both failed");
        }
    }

    /// Appends the overflow to the spool and waits for the `fsync`.
    async fn spool_overflow(&mut self) {
        let rows = std::mem::take(&mut *self.pending.overflow());
        if rows.is_empty() {
            return;
        }
        let n = rows.len();
        if let Err(e) = self.spool.append(rows).await {
            Counters::add(&self.counters.lost, n);
            tracing::error!(error = %e, rows = n, "ledger rows lost: queue full and spool failed");
        }
    }

    fn probe_due(&mut self) -> bool {
        let now = Instant::now();
        match self.last_probe {
            Some(t) if now.duration_since(t) < RETRY_INTERVAL => false,
            _ => {
                self.last_probe = Some(now);
                true
            }
        }
    }

    /// While the database is down: at most every retry interval, a quick ping with a short timeout, so that
    /// batches keep going to the spool promptly (and a `kill -9` loses little) instead of waiting out the
    /// pool's connect timeout on every batch.
    async fn probe(&mut self) -> bool {
        if !self.probe_due() {
            return false;
        }
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, self.store.ping()).await,
            Ok(Ok(()))
        )
    }

    async fn insert(&mut self, rows: &[Row]) -> Result<(), String> {
        for chunk in rows.chunks(self.max_batch) {
            let written = tokio::time::timeout(INSERT_TIMEOUT, self.insert_chunk(chunk)).await;
            if !matches!(written, Ok(Ok(_))) {
                self.sqlite = None;
            }
            let inserted = written
                .map_err(|_| "insert timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            Counters::add(&self.counters.written, inserted as usize);
            Counters::add(
                &self.counters.duplicates,
                chunk.len().saturating_sub(inserted as usize),
            );
            Counters::add(&self.counters.batches, 1);
        }
        self.db_up.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn insert_chunk(&mut self, chunk: &[Row]) -> Result<u64, sqlx::Error> {
        let pool = match &self.store {
            Store::Postgres(pool) => {
                return sql::insert(Destination::Postgres(pool), chunk, &mut self.known).await;
            }
            Store::Sqlite(pool) => pool,
        };
        if self.sqlite.is_none() {
            match self.store.background_sqlite().await {
                Some(Ok(conn)) => self.sqlite = Some(conn),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "cannot open the ledger's own SQLite connection; using the pool")
                }
                None => {}
            }
        }
        match &mut self.sqlite {
            Some(conn) => sql::insert(Destination::Sqlite(conn), chunk, &mut self.known).await,
            None => {
                let mut conn = pool.acquire().await?;
                sql::insert(Destination::Sqlite(&mut conn), chunk, &mut self.known).await
            }
        }
    }

    /// Replays the spool into the database if there is anything to replay and the database is (probably) up.
    async fn maybe_replay(&mut self) {
        if !self.spool.is_dirty() {
            return;
        }
        if !self.db_up.load(Ordering::Relaxed) && !self.probe().await {
            return;
        }
        let segments = match self.spool.rotate().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot list ledger spool segments");
                self.spool.mark_dirty();
                return;
            }
        };
        for path in segments {
            let segment = match Spool::read(path.clone()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, segment = %path.display(), "cannot read ledger spool segment");
                    self.spool.mark_dirty();
                    return;
                }
            };
            let n = segment.rows.len();
            if let Err(e) = self.insert(&segment.rows).await {
                tracing::warn!(error = %e, "ledger database still unreachable; spool kept for later");
                self.db_up.store(false, Ordering::Relaxed);
                self.spool.mark_dirty();
                return;
            }
            Counters::add(&self.counters.replayed, n);
            tracing::info!(rows = n, segment = %path.display(), "replayed ledger spool segment");
            if let Err(e) = Spool::remove(segment).await {
                // The rows are in the database; a segment left behind is replayed again and skipped as duplicates.
                tracing::error!(error = %e, segment = %path.display(), "cannot delete replayed spool segment");
            }
        }
    }
}
