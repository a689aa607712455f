//! Everything a request reads, in one value swapped whole: the [`Policy`] and the signing keys.
//!
//! A request loads the snapshot once and uses that view to the end, so a key refresh or a config
//! reload in the middle of a request can never pair the old rules with the new keys (or the
//! reverse). Writers build a new snapshot off the request path and store it with one atomic swap.
//! Start-only settings ([`crate::config::Startup`]) are not here: nothing on the request path
//! reads them back out of the hot cell.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Policy;
use crate::validate::{KeySet, ValidationPolicy};

/// Signing keys, as far as we know them.
#[derive(Clone)]
pub enum SigningKeys {
    /// Nothing fetched successfully yet: not ready, every protected request fails closed.
    Pending,
    /// The last good key set.
    Loaded(Arc<KeySet>),
}

/// The hot state.
pub struct Snapshot {
    /// The reloadable configuration (upstream, validation, rules, key refresh).
    pub policy: Arc<Policy>,
    /// The signing keys.
    pub keys: SigningKeys,
    /// Bumped by every policy swap: a token validated under another policy (issuers,
    /// audiences, skew, ...) must be validated again, so the cache keys its entries by this.
    pub policy_generation: u64,
    clock_skew_secs: u64,
    max_lifetime_secs: u64,
}

impl Snapshot {
    /// A snapshot with `policy` and `keys`.
    pub fn new(policy: Arc<Policy>, keys: SigningKeys) -> Snapshot {
        Snapshot::with_generation(policy, keys, 0)
    }

    fn with_generation(policy: Arc<Policy>, keys: SigningKeys, policy_generation: u64) -> Snapshot {
        let clock_skew_secs = policy.auth.clock_skew.as_secs();
        let max_lifetime_secs = policy.auth.max_token_lifetime.as_secs();
        Snapshot {
            policy,
            keys,
            policy_generation,
            clock_skew_secs,
            max_lifetime_secs,
        }
    }

    /// The token validation parameters, borrowed.
    pub fn validation(&self) -> ValidationPolicy<'_> {
        let a = &self.policy.auth;
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
        matches!(self.keys, SigningKeys::Loaded(_))
    }
}

/// The one swappable cell.
pub type SnapshotCell = ArcSwap<Snapshot>;

/// Replaces the keys, keeping the current policy.
pub fn store_keys(cell: &SnapshotCell, keys: Arc<KeySet>) {
    cell.rcu(|cur| {
        Snapshot::with_generation(
            cur.policy.clone(),
            SigningKeys::Loaded(keys.clone()),
            cur.policy_generation,
        )
    });
}

/// Replaces the policy, keeping the current keys.
pub fn store_policy(cell: &SnapshotCell, policy: Arc<Policy>) {
    cell.rcu(|cur| {
        Snapshot::with_generation(policy.clone(), cur.keys.clone(), cur.policy_generation + 1)
    });
}
