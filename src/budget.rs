//! Pipeline stage 5: budgets, enforced by reservation.
//!
//! Before calling upstream the pipeline [`Budgets::reserve`]s the request's maximum plausible cost against every
//! budget that applies to the caller; afterwards it [`Reservation::settle`]s the actual cost, which releases the
//! rest. Dropping a [`Reservation`] unsettled (upstream failure, client gone, panic) releases all of it. So
//! concurrent requests can never jointly spend more than a hard budget holds, whatever their timing.
//!
//! **Across replicas** each replica holds a *lease* per budget window: money granted from the shared counters in
//! the database (`ledger::leases`). Reservations are taken from the lease in memory — no database round trip
//! per request. A replica goes to the database only to top its lease up (rare: the lease is sized to many
//! requests), and a background task reports settled spend and hands back leases it is not using, about once a
//! second. The database never grants past the limit, so total spend across replicas stays within the budget,
//! give or take actual costs above their reservation.
//!
//! **During a database outage** a replica keeps serving from its lease; once that is used up it grants itself
//! one outage allowance of `outage_share` × the free money it last saw, recorded against the budget when the
//! database returns. Overspend during an outage is therefore bounded by replicas × that allowance.
//!
//! **Local models** have their own [`Dimension`]: their internal cost counts only against `local` budgets, so a
//! "free" local model neither escapes budgets nor is blocked by an exhausted API budget.
//!
//! Locking: account state sits behind `std::sync::Mutex`es held for a few arithmetic operations and never across
//! an `.await`; the async `refill` mutex serialises top-ups of one account so a burst of requests asks the
//! database once, not once each.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Principal;
use crate::error::{Error, ErrorKind};
use crate::ledger::leases::{self, SyncRequest};
use crate::store::Store;

/// Whose spending a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    /// The whole team.
    Team,
    /// Each user of the team separately (or only `subject`).
    User,
    /// Each API key separately (or only `subject`, a key id).
    Key,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Team => "team",
            BudgetScope::User => "user",
            BudgetScope::Key => "key",
        }
    }
}

/// A budget's reset period. Weeks start on Monday; months are calendar months; both in the budget's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }
}

/// What a hard budget does when it is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnExhausted {
    /// Refuse with 429 `budget_exceeded`.
    Block,
    /// Keep serving on local models only (the pipeline re-routes on [`BudgetExceeded`]).
    DowngradeLocal,
    /// Keep serving on the cheapest allowed model (the pipeline re-routes on [`BudgetExceeded`]).
    DowngradeCheapest,
}

/// Which money a budget counts: commercial API spend, or local models' internal cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dimension {
    #[default]
    Api,
    Local,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Api => "api",
            Dimension::Local => "local",
        }
    }
}

/// One budget as a team policy states it (the policy module parses `budgets:` into these).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSpec {
    /// Named in the 429 message and in reports; unique within the team's policy.
    pub name: String,
    pub scope: BudgetScope,
    /// For `User`/`Key` scope: only this user name or key id. `None`: every user (key) gets its own budget of
    /// `limit`. Ignored for `Team` scope.
    pub subject: Option<String>,
    pub period: Period,
    /// USD per period.
    pub limit: Decimal,
    /// Hard: refuse (or downgrade) when exhausted. Soft: log a warning, never refuse.
    pub hard: bool,
    pub on_exhausted: OnExhausted,
    /// The zone whose midnight starts a day, week or month.
    pub tz: Tz,
    pub dimension: Dimension,
}

impl BudgetSpec {
    /// The counter this spec means for this principal, or `None` when it does not apply to them.
    fn subject_for(&self, principal: &Principal) -> Option<String> {
        let own = match self.scope {
            BudgetScope::Team => return Some(principal.team.clone()),
            BudgetScope::User => &principal.user,
            BudgetScope::Key => &principal.key_id,
        };
        match &self.subject {
            Some(s) if s != own => None,
            _ => Some(format!("{}/{}", principal.team, own)),
        }
    }

    /// Stable identifier of the shared counter: scope, subject, name, period, dimension. (The limit is not part
    /// of it: raising a limit mid-period keeps what was spent.)
    fn budget_id(&self, subject: &str) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.scope.as_str(),
            subject,
            self.name,
            self.period.as_str(),
            self.dimension.as_str()
        )
    }
}

/// The budgets a team policy sets (`budgets:` in its file), as the enforcer needs them. Each limit is named
/// `<scope>-<period>-<dimension>` (e.g. `team-monthly-api`), unique within a policy and stable across reloads,
/// so the shared counter survives a reload and the 429 message names the limit the admin wrote.
pub fn specs_of(policy: &crate::policy::Policy) -> Vec<BudgetSpec> {
    use crate::policy as p;
    let b = &policy.budgets;
    let on_exhausted = match b.on_exhausted {
        p::OnExhausted::Block => OnExhausted::Block,
        p::OnExhausted::DowngradeLocal => OnExhausted::DowngradeLocal,
        p::OnExhausted::DowngradeCheapest => OnExhausted::DowngradeCheapest,
    };
    b.limits
        .iter()
        .map(|l| {
            let scope = match l.scope {
                p::BudgetScope::Team => BudgetScope::Team,
                p::BudgetScope::User => BudgetScope::User,
                p::BudgetScope::Key => BudgetScope::Key,
            };
            let period = match l.period {
                p::BudgetPeriod::Daily => Period::Daily,
                p::BudgetPeriod::Weekly => Period::Weekly,
                p::BudgetPeriod::Monthly => Period::Monthly,
            };
            let dimension = match l.dimension {
                p::BudgetDimension::Api => Dimension::Api,
                p::BudgetDimension::Local => Dimension::Local,
            };
            BudgetSpec {
                name: format!("{}-{}-{}", scope.as_str(), period.as_str(), dimension.as_str()),
                scope,
                subject: None,
                period,
                limit: l.limit,
                hard: l.mode == p::BudgetMode::Hard,
                on_exhausted,
                tz: b.timezone,
                dimension,
            }
        })
        .collect()
}

/// Start of the period containing `now`, in `tz`, as a UTC instant.
pub fn window_start(period: Period, tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let local = now.with_timezone(&tz).date_naive();
    let first = match period {
        Period::Daily => local,
        Period::Weekly => local - Days::new(u64::from(local.weekday().num_days_from_monday())),
        Period::Monthly => local.with_day(1).unwrap_or(local),
    };
    local_midnight(tz, first)
}

/// End of the period containing `now` (the start of the next one).
pub fn window_end(period: Period, tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let start = window_start(period, tz, now).with_timezone(&tz).date_naive();
    let next = match period {
        Period::Daily => start + Days::new(1),
        Period::Weekly => start + Days::new(7),
        Period::Monthly => start
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(start + Days::new(31)),
    };
    local_midnight(tz, next)
}

fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    // Where a DST change skips midnight (e.g. America/Santiago), the day starts at the first instant that exists.
    let mut t = day.and_time(chrono::NaiveTime::MIN);
    for _ in 0..4 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(30);
    }
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// A hard budget refused a reservation. Converts into the 429 `budget_exceeded` error; the pipeline may instead
/// re-route when `on_exhausted` is `Downgrade`.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetExceeded {
    pub budget: String,
    pub scope: BudgetScope,
    pub subject: String,
    pub period: Period,
    pub limit: Decimal,
    pub on_exhausted: OnExhausted,
    pub dimension: Dimension,
    pub resets_at: DateTime<Utc>,
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Budget `{}` ({} {}, {} {}) is exhausted: limit {} USD; it resets at {}.",
            self.budget,
            self.scope.as_str(),
            self.subject,
            self.period.as_str(),
            if self.dimension == Dimension::Local {
                "local-model cost"
            } else {
                "API spend"
            },
            self.limit.normalize(),
            self.resets_at.format("%Y-%m-%dT%H:%M:%SZ"),
        )
    }
}

impl From<BudgetExceeded> for Error {
    fn from(e: BudgetExceeded) -> Error {
        Error::new(ErrorKind::BudgetExceeded, e.to_string()).with_code("budget_exceeded")
    }
}

/// Tuning of leases; the defaults suit a handful of replicas.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// A top-up asks for this share of the limit (at least the shortfall).
    pub lease_fraction: Decimal,
    /// How often settled spend is reported and idle leases handed back.
    pub sync_interval: Duration,
    /// Share of the last seen free money a replica may spend on its own while the database is unreachable.
    pub outage_share: Decimal,
    /// A replica not heard from for this long is taken for dead and its lease is reclaimed by the others. Live
    /// replicas holding a lease sync at least every third of it.
    pub lease_ttl: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            lease_fraction: Decimal::new(5, 2),
            sync_interval: Duration::from_secs(1),
            outage_share: Decimal::new(10, 2),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

/// A top-up asks for at least this many reservations of the size that needed it.
const LEASE_REQUESTS: Decimal = Decimal::from_parts(8, 0, 0, false, 0);

/// (budget id, window start).
type AccountKey = (String, DateTime<Utc>);

type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The budget enforcer; cheap to clone.
#[derive(Clone)]
pub struct Budgets {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    settings: LeaseSettings,
    clock: Clock,
    accounts: Mutex<HashMap<AccountKey, Arc<Account>>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    round_trips: AtomicU64,
    /// When a sync last failed; requests do not wait on the database again until a sync interval has passed
    /// (the background task keeps trying).
    db_failed_at: Mutex<Option<Instant>>,
    /// Names this replica's lease rows.
    replica_id: String,
}

/// Longest a request waits for a lease top-up before it falls back to the outage allowance.
const TOP_UP_TIMEOUT: Duration = Duration::from_secs(1);

/// This replica's view of one budget window.
struct Account {
    budget_id: String,
    window_start: DateTime<Utc>,
    seed: leases::Seed,
    refusal: BudgetExceeded,
    state: Mutex<AccountState>,
    /// Serialises top-ups so a burst of requests makes one database round trip.
    refill: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct AccountState {
    limit: Decimal,
    hard: bool,
    /// Money this replica may still hand out (granted, minus settled, minus returned). Negative when actual
    /// costs ran above their reservations; the next sync records the difference.
    lease: Decimal,
    /// Held by in-flight reservations (a part of `lease`).
    reserved: Decimal,
    /// Settled cost not yet reported.
    unreported: Decimal,
    /// Lease used without a grant (outage allowance, overruns), to be recorded at the next sync.
    forced: Decimal,
    /// `limit - spent - leased` at the last sync, and when that was.
    free_seen: Option<(Decimal, Instant)>,
    /// An outage allowance was taken and not yet recorded.
    outage_allowance_taken: bool,
    last_used: Option<Instant>,
    warned: bool,
}

impl AccountState {
    fn available(&self) -> Decimal {
        self.lease - self.reserved
    }
}

/// Money held for one in-flight request. Settle it with the actual cost; dropping it releases everything.
#[must_use = "dropping a reservation releases it at once"]
pub struct Reservation {
    pub amount: Decimal,
    holds: Vec<Arc<Account>>,
    settled: bool,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("amount", &self.amount)
            .field("budgets", &self.holds.len())
            .finish()
    }
}

impl Reservation {
    /// A reservation that holds nothing (no budget applies).
    pub fn unlimited(amount: Decimal) -> Reservation {
        Reservation {
            amount,
            holds: Vec::new(),
            settled: false,
        }
    }

    /// Charges `actual` to every budget held and releases the rest of the reservation.
    pub fn settle(mut self, actual: Decimal) {
        for account in &self.holds {
            let mut s = lock(&account.state);
            s.reserved -= self.amount;
            s.lease -= actual;
            s.unreported += actual;
        }
        self.settled = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        for account in &self.holds {
            lock(&account.state).reserved -= self.amount;
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain numbers; keep going with them.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Budgets {
    /// Starts the enforcer and its background sync task.
    pub fn new(store: Store, settings: LeaseSettings) -> Budgets {
        Budgets::with_clock(store, settings, Arc::new(Utc::now))
    }

    /// As [`Budgets::new`], with the wall clock that decides budget windows replaced (tests).
    pub fn with_clock(store: Store, settings: LeaseSettings, clock: Clock) -> Budgets {
        let inner = Arc::new(Inner {
            store,
            settings,
            clock,
            accounts: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            round_trips: AtomicU64::new(0),
            db_failed_at: Mutex::new(None),
            replica_id: uuid::Uuid::new_v4().to_string(),
        });
        let weak = Arc::downgrade(&inner);
        let cancel = inner.cancel.clone();
        let interval = inner.settings.sync_interval;
        inner.tracker.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                inner.sync_all(false).await;
            }
        });
        inner.tracker.close();
        Budgets { inner }
    }

    /// Reserves `max_cost` against every budget in `specs` that applies to `principal` in the dimension of the
    /// model (`local`). Waits for the database only when this replica's lease must be topped up.
    pub async fn reserve(
        &self,
        principal: &Principal,
        specs: &[BudgetSpec],
        max_cost: Decimal,
        local: bool,
    ) -> Result<Reservation, BudgetExceeded> {
        let dimension = if local { Dimension::Local } else { Dimension::Api };
        let amount = max_cost.max(Decimal::ZERO);
        let now = (self.inner.clock)();
        let mut reservation = Reservation {
            amount,
            holds: Vec::new(),
            settled: false,
        };
        for spec in specs.iter().filter(|s| s.dimension == dimension) {
            let Some(subject) = spec.subject_for(principal) else {
                continue;
            };
            let account = self.inner.account(spec, principal, &subject, now);
            self.inner.hold(&account, amount).await?;
            // Pushed only after the hold succeeded, so a refusal (dropping `reservation`) releases exactly
            // the budgets already held.
            reservation.holds.push(account);
        }
        Ok(reservation)
    }

    /// Reports all settled spend and returns all unused leases now (graceful shutdown), then stops the
    /// background task. Reservations still in flight are released as they finish, but not reported.
    pub async fn drain(&self) {
        self.inner.cancel.cancel();
        self.inner.tracker.wait().await;
        self.inner.sync_all(true).await;
    }

    /// Reports settled spend and returns idle leases now, as the background task does each interval (tests).
    pub async fn sync_now(&self) {
        self.inner.sync_all(false).await;
    }

    /// Database round trips made so far (top-ups and background syncs), to check the hot path stays off the
    /// database.
    pub fn database_round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// Committed spend of this replica's view of a budget: `(lease, reserved, unreported)` (tests, debugging).
    pub fn local_state(
        &self,
        spec: &BudgetSpec,
        principal: &Principal,
    ) -> Option<(Decimal, Decimal, Decimal)> {
        let subject = spec.subject_for(principal)?;
        let start = window_start(spec.period, spec.tz, (self.inner.clock)());
        let accounts = lock(&self.inner.accounts);
        let account = accounts.get(&(spec.budget_id(&subject), start))?;
        let s = lock(&account.state);
        Some((s.lease, s.reserved, s.unreported))
    }

    /// The shared counters of a budget window: `(spent, leased)` across all replicas.
    pub async fn shared_state(
        &self,
        spec: &BudgetSpec,
        principal: &Principal,
    ) -> Result<(Decimal, Decimal), sqlx::Error> {
        let Some(subject) = spec.subject_for(principal) else {
            return Ok((Decimal::ZERO, Decimal::ZERO));
        };
        let start = window_start(spec.period, spec.tz, (self.inner.clock)());
        leases::read(&self.inner.store, &spec.budget_id(&subject), start).await
    }
}

impl Inner {
    fn account(
        &self,
        spec: &BudgetSpec,
        principal: &Principal,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Arc<Account> {
        let start = window_start(spec.period, spec.tz, now);
        let id = spec.budget_id(subject);
        let mut accounts = lock(&self.accounts);
        let account = accounts
            .entry((id.clone(), start))
            .or_insert_with(|| {
                Arc::new(Account {
                    budget_id: id,
                    window_start: start,
                    seed: leases::Seed {
                        team: principal.team.clone(),
                        user: (spec.scope == BudgetScope::User).then(|| principal.user.clone()),
                        key_id: (spec.scope == BudgetScope::Key).then(|| principal.key_id.clone()),
                        local: spec.dimension == Dimension::Local,
                        window_end: window_end(spec.period, spec.tz, now),
                    },
                    refusal: BudgetExceeded {
                        budget: spec.name.clone(),
                        scope: spec.scope,
                        subject: subject.to_owned(),
                        period: spec.period,
                        limit: spec.limit,
                        on_exhausted: spec.on_exhausted,
                        dimension: spec.dimension,
                        resets_at: window_end(spec.period, spec.tz, now),
                    },
                    state: Mutex::new(AccountState::default()),
                    refill: tokio::sync::Mutex::new(()),
                })
            })
            .clone();
        drop(accounts);
        // A reloaded policy may have changed the limit or hardness; the latest spec wins.
        let mut s = lock(&account.state);
        s.limit = spec.limit;
        s.hard = spec.hard;
        drop(s);
        account
    }

    /// Holds `amount` on one account, topping the lease up from the database when needed.
    async fn hold(&self, account: &Arc<Account>, amount: Decimal) -> Result<(), BudgetExceeded> {
        if try_hold(account, amount) {
            return Ok(());
        }
        // Called with the state unlocked: the state mutex is not re-entrant.
        let refusal = || {
            let mut r = account.refusal.clone();
            r.limit = lock(&account.state).limit;
            r
        };
        // Fast refusal without a round trip: the last sync (recent) saw too little free money anywhere.
        let hopeless = {
            let s = lock(&account.state);
            matches!(s.free_seen, Some((free, at))
                if at.elapsed() < self.settings.sync_interval && free + s.available() < amount)
        };
        if hopeless {
            return Err(refusal());
        }
        let _one_at_a_time = account.refill.lock().await;
        // Someone else's top-up may have made room while we waited — or found that there is none left.
        if try_hold(account, amount) {
            return Ok(());
        }
        let hopeless = {
            let s = lock(&account.state);
            matches!(s.free_seen, Some((free, at))
                if at.elapsed() < self.settings.sync_interval && free + s.available() < amount)
        };
        if hopeless {
            return Err(refusal());
        }
        let request = {
            let s = lock(&account.state);
            let shortfall = amount - s.available();
            // Enough for a run of requests like this one, so top-ups stay rare; the database caps it at what is
            // free.
            let want = shortfall
                .max(s.limit * self.settings.lease_fraction)
                .max(amount * LEASE_REQUESTS);
            self.sync_request(account, &s, want, shortfall)
        };
        match self.db_sync(&request, true).await {
            Ok(result) => {
                let mut s = lock(&account.state);
                apply_sync(&mut s, &request, &result);
                drop(s);
                if try_hold(account, amount) {
                    Ok(())
                } else {
                    Err(refusal())
                }
            }
            Err(e) => {
                tracing::warn!(budget = %account.budget_id, error = %e, "budget lease top-up failed; using outage allowance");
                let mut s = lock(&account.state);
                if !s.outage_allowance_taken {
                    let free = s.free_seen.map_or(Decimal::ZERO, |(f, _)| f.max(Decimal::ZERO));
                    let allowance = free * self.settings.outage_share;
                    s.outage_allowance_taken = true;
                    s.lease += allowance;
                    s.forced += allowance;
                }
                drop(s);
                if try_hold(account, amount) {
                    Ok(())
                } else {
                    Err(refusal())
                }
            }
        }
    }

    /// One sync with the database, bounded in time. On the request path (`from_request`) it is skipped while
    /// the database recently failed, so requests in an outage never queue behind connect timeouts.
    ///
    /// A sync that times out may still have committed; applying it again later over-counts (spent too high),
    /// which errs on the side of refusing, never of overspending.
    async fn db_sync(&self, request: &SyncRequest, from_request: bool) -> Result<leases::SyncResult, String> {
        if from_request && lock(&self.db_failed_at).is_some_and(|t| t.elapsed() < self.settings.sync_interval)
        {
            return Err("database recently unreachable".to_owned());
        }
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(TOP_UP_TIMEOUT, leases::sync(&self.store, request)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("budget sync timed out".to_owned()),
        };
        *lock(&self.db_failed_at) = if result.is_err() {
            Some(Instant::now())
        } else {
            None
        };
        result
    }

    fn sync_request(&self, account: &Account, s: &AccountState, want: Decimal, need: Decimal) -> SyncRequest {
        // A negative lease (actual costs above reservations) is made good by recording it as forced lease.
        let cover = (-s.lease).max(Decimal::ZERO);
        SyncRequest {
            budget_id: account.budget_id.clone(),
            window_start: account.window_start,
            limit: s.limit,
            report: s.unreported,
            forced: s.forced + cover,
            give_back: Decimal::ZERO,
            want,
            // The cover is already part of `forced`, hence of `leased` when the grant is decided.
            need,
            unlimited: !s.hard,
            seed: Some(account.seed.clone()),
            replica_id: self.replica_id.clone(),
            lease_ttl: self.settings.lease_ttl,
        }
    }

    /// Reports settled spend of every account and hands back leases that are idle (or all, on shutdown).
    async fn sync_all(&self, everything: bool) {
        let accounts: Vec<Arc<Account>> = lock(&self.accounts).values().cloned().collect();
        let now = (self.clock)();
        for account in accounts {
            let _one_at_a_time = account.refill.lock().await;
            let current = is_current(&account, now);
            let request = {
                let s = lock(&account.state);
                let idle = s
                    .last_used
                    .is_none_or(|t| t.elapsed() >= self.settings.sync_interval);
                let give_back = if everything || idle || !current {
                    s.available().max(Decimal::ZERO)
                } else {
                    Decimal::ZERO
                };
                let cover = (-s.lease).max(Decimal::ZERO);
                // Holding a lease, stay visibly alive so the others do not reclaim it.
                let heartbeat = (s.lease > Decimal::ZERO || s.reserved > Decimal::ZERO)
                    && s.free_seen
                        .is_none_or(|(_, at)| at.elapsed() >= self.settings.lease_ttl / 3);
                if s.unreported.is_zero()
                    && give_back.is_zero()
                    && s.forced.is_zero()
                    && cover.is_zero()
                    && !heartbeat
                {
                    // Nothing to tell; forget past windows nobody holds any more.
                    if !current && s.reserved.is_zero() {
                        drop(s);
                        lock(&self.accounts).remove(&(account.budget_id.clone(), account.window_start));
                    }
                    continue;
                }
                let mut r = self.sync_request(&account, &s, Decimal::ZERO, Decimal::ZERO);
                r.give_back = give_back;
                r
            };
            match self.db_sync(&request, false).await {
                Ok(result) => {
                    let mut s = lock(&account.state);
                    apply_sync(&mut s, &request, &result);
                    if !s.warned && result.spent >= s.limit {
                        s.warned = true;
                        tracing::warn!(budget = %account.budget_id, spent = %result.spent, limit = %s.limit,
                            hard = s.hard, "budget exhausted");
                    }
                }
                Err(e) => {
                    tracing::warn!(budget = %account.budget_id, error = %e, "budget sync failed; will retry")
                }
            }
        }
    }
}

/// Whether the account's window is still the running one.
fn is_current(account: &Account, now: DateTime<Utc>) -> bool {
    account.refusal.resets_at > now
}

fn try_hold(account: &Account, amount: Decimal) -> bool {
    let mut s = lock(&account.state);
    s.last_used = Some(Instant::now());
    // Soft budgets track spend but never refuse.
    if !s.hard || s.available() >= amount {
        s.reserved += amount;
        return true;
    }
    false
}

/// Folds a successful sync into the local state: what was reported, forced and returned is no longer owed;
/// what was granted joins the lease.
///
/// The invariant is `lease + unreported − forced = this replica's lease row`: settling moves money from `lease`
/// to `unreported` and an outage allowance adds to `lease` and `forced`, neither changes the sum. So after a
/// sync the lease is what the database records minus what was settled meanwhile — which also resets a lease
/// the other replicas reclaimed while this one was unreachable.
fn apply_sync(s: &mut AccountState, request: &SyncRequest, result: &leases::SyncResult) {
    s.unreported -= request.report;
    s.forced = Decimal::ZERO;
    s.outage_allowance_taken = false;
    s.lease = result.mine - s.unreported;
    s.free_seen = Some((result.free(s.limit), Instant::now()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn windows_start_at_local_midnight() {
        let now = at("2026-11-27T03:30:00Z"); // a Friday
        assert_eq!(
            window_start(Period::Daily, Tz::UTC, now),
            at("2026-11-27T00:00:00Z")
        );
        assert_eq!(
            window_start(Period::Weekly, Tz::UTC, now),
            at("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            window_start(Period::Monthly, Tz::UTC, now),
            at("2026-11-01T00:00:00Z")
        );
        // 03:30 UTC is still the 26th in New York (UTC-5).
        let ny = chrono_tz::America::New_York;
        assert_eq!(window_start(Period::Daily, ny, now), at("2026-11-26T05:00:00Z"));
        assert_eq!(window_end(Period::Daily, ny, now), at("2026-11-27T05:00:00Z"));
        assert_eq!(
            window_start(Period::Monthly, ny, at("2026-12-01T02:00:00Z")),
            at("2026-11-01T04:00:00Z")
        );
        assert_eq!(
            window_end(Period::Monthly, ny, at("2026-12-01T02:00:00Z")),
            at("2026-12-01T05:00:00Z")
        );
        // Half-hour zones work too.
        let kolkata = chrono_tz::Asia::Kolkata;
        assert_eq!(
            window_start(Period::Daily, kolkata, now),
            at("2026-11-26T18:30:00Z")
        );
        // A Sunday evening belongs to the week that started on the Monday before.
        assert_eq!(
            window_start(Period::Weekly, Tz::UTC, at("2026-11-29T23:59:59Z")),
            at("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            window_end(Period::Weekly, Tz::UTC, at("2026-11-29T23:59:59Z")),
            at("2026-11-30T00:00:00Z")
        );
        let _ = Utc.timestamp_opt(0, 0);
    }

    #[test]
    fn refusal_names_the_budget() {
        let e = BudgetExceeded {
            budget: "eng-monthly".into(),
            scope: BudgetScope::Team,
            subject: "eng".into(),
            period: Period::Monthly,
            limit: Decimal::new(500, 0),
            on_exhausted: OnExhausted::Block,
            dimension: Dimension::Api,
            resets_at: at("2026-12-01T00:00:00Z"),
        };
        let err = Error::from(e);
        assert_eq!(err.status_code(), http::StatusCode::TOO_MANY_REQUESTS);
        let v = err.to_json();
        assert_eq!(v["error"]["code"], "budget_exceeded");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("eng-monthly")
        );
    }
}
