//! Everything a request reads, in one value swapped whole.
//!
//! A request loads the snapshot once and uses that view to the end, so a key refresh or a config
//! reload in the middle of a request can never pair the old rules with the new keys (or the
//! reverse). Writers build a new snapshot off the request path and store it with one atomic swap.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::validate::{KeySet, ValidationPolicy};

/// Signing keys, as far as we know them.
#[derive(Clone)]
pub enum Keys {
    /// Nothing fetched successfully yet: not ready, every protected request fails closed.
    Pending,
    /// The last good key set.
    Loaded(Arc<KeySet>),
}

/// The hot state.
pub struct Snapshot {
    /// The effective configuration (policy, rules, upstream).
    pub config: Arc<Config>,
    /// The signing keys.
    pub keys: Keys,
    clock_skew_secs: u64,
}

impl Snapshot {
    /// A snapshot with `config` and `keys`.
    pub fn new(config: Arc<Config>, keys: Keys) -> Snapshot {
        let clock_skew_secs = config.auth.clock_skew.as_secs();
        Snapshot {
            config,
            keys,
            clock_skew_secs,
        }
    }

    /// The validation parameters, borrowed.
    pub fn policy(&self) -> ValidationPolicy<'_> {
        let a = &self.config.auth;
        ValidationPolicy {
            issuers: &a.issuers,
            audiences: &a.audiences,
            algorithms: &a.algorithms,
            clock_skew_secs: self.clock_skew_secs,
        }
    }

    /// Whether signing keys are loaded (the readiness condition).
    pub fn ready(&self) -> bool {
        matches!(self.keys, Keys::Loaded(_))
    }
}

/// The one swappable cell.
pub type SnapshotCell = ArcSwap<Snapshot>;

/// Replaces the keys, keeping the current config.
pub fn store_keys(cell: &SnapshotCell, keys: Arc<KeySet>) {
    cell.rcu(|cur| Snapshot::new(cur.config.clone(), Keys::Loaded(keys.clone())));
}

/// Replaces the config, keeping the current keys.
pub fn store_config(cell: &SnapshotCell, config: Arc<Config>) {
    cell.rcu(|cur| Snapshot::new(config.clone(), cur.keys.clone()));
}
