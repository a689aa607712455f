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
    /// Bumped by every config swap: a token validated under another policy (issuers,
    /// audiences, skew, ...) must be validated again, so the cache keys its entries by this.
    pub policy_generation: u64,
    clock_skew_secs: u64,
    max_lifetime_secs: u64,
}

impl Snapshot {
    /// A snapshot with `config` and `keys`.
    pub fn new(config: Arc<Config>, keys: Keys) -> Snapshot {
        Snapshot::with_generation(config, keys, 0)
    }

    fn with_generation(config: Arc<Config>, keys: Keys, policy_generation: u64) -> Snapshot {
        let clock_skew_secs = config.auth.clock_skew.as_secs();
        let max_lifetime_secs = config.auth.max_token_lifetime.as_secs();
        Snapshot {
            config,
            keys,
            policy_generation,
            clock_skew_secs,
            max_lifetime_secs,
        }
    }

    /// The validation parameters, borrowed.
    pub fn policy(&self) -> ValidationPolicy<'_> {
        let a = &self.config.auth;
        ValidationPolicy {
            issuers: &a.issuers,
            audiences: &a.token_audiences,
            algorithms: &a.algorithms,
            clock_skew_secs: self.clock_skew_secs,
            max_lifetime_secs: self.max_lifetime_secs,
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
    cell.rcu(|cur| {
        Snapshot::with_generation(
            cur.config.clone(),
            Keys::Loaded(keys.clone()),
            cur.policy_generation,
        )
    });
}

/// Replaces the config, keeping the current keys.
pub fn store_config(cell: &SnapshotCell, config: Arc<Config>) {
    cell.rcu(|cur| {
        Snapshot::with_generation(config.clone(), cur.keys.clone(), cur.policy_generation + 1)
    });
}
