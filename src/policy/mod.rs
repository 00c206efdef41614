//! Pipeline stage 2: team policies (placeholder shape until the policy module lands: every team gets the
//! default policy, which honours named models and routes `auto`).

use std::sync::Arc;

use arc_swap::ArcSwap;

/// One team's rules.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// Model names that mean "route for me".
    pub auto_names: Vec<String>,
    /// The premium model savings are measured against.
    pub baseline_model: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            name: "default".to_owned(),
            auto_names: vec!["auto".to_owned()],
            baseline_model: None,
        }
    }
}

impl Policy {
    /// Whether this request needs the classifier at all (a named, honoured model does not).
    pub fn wants_routing(&self, requested_model: &str) -> bool {
        self.auto_names.iter().any(|n| n == requested_model)
    }
}

/// The live policies, swapped atomically on reload.
#[derive(Clone)]
pub struct Policies {
    current: Arc<ArcSwap<Policy>>,
}

impl Policies {
    pub fn new(default: Policy) -> Self {
        Policies {
            current: Arc::new(ArcSwap::from_pointee(default)),
        }
    }

    pub fn for_team(&self, _team: &str) -> Arc<Policy> {
        self.current.load_full()
    }
}
