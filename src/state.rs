//! Shared handles. `AppState` is one `Arc` around [`Shared`], the bundle of long-lived handles, so a clone per
//! request (handlers, the finisher, stream wrappers) is one reference count, not one per handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::budget::Budgets;
use crate::config::{Catalogue, Config};
use crate::ledger::Ledger;
use crate::local::LocalModels;
use crate::metrics::Metrics;
use crate::policy::Policies;
use crate::route::sticky::StickyStore;
use crate::store::Store;
use crate::upstream::Upstream;

/// Cheap to clone; derefs to [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    pub catalogue: Arc<Catalogue>,
    pub store: Store,
    pub auth: Authenticator,
    pub policies: Policies,
    /// The difficulty and task classifier; `None` when disabled or its files are missing (routing then uses each
    /// policy's default for unclassified requests).
    pub classifier: Option<crate::classify::Classifier>,
    /// Which local models are loaded (fed by the probes and by observed first tokens).
    pub local: LocalModels,
    /// Conversation → model, for policies with stickiness.
    pub sticky: StickyStore,
    pub upstream: Upstream,
    pub budgets: Budgets,
    pub ledger: Ledger,
    pub metrics: Metrics,
    /// Background work tied to requests (ledger hand-off after a stream ends, local counts); drained on shutdown.
    pub tasks: TaskTracker,
    /// Local token counts for requests whose provider reported no usage, run one at a time.
    pub counts: crate::usage_estimate::CountQueue,
    pub draining: Arc<AtomicBool>,
}

impl Shared {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
