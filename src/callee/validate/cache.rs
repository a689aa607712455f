//! Verified-token cache: a token verified once is not verified again while it lives.
//!
//! # Contract
//! - Keyed by the exact token bytes: a keyed hash finds the slot, a full comparison confirms it,
//!   so a hash collision can only cost a miss, never admit another token.
//! - An entry holds what authorization needs (application, principal, roles) and the pre-encoded
//!   upstream headers; allow-lists and rules are still evaluated on every request.
//! - An entry is dead from the token's `exp` on, as soon as the key that verified it is no longer
//!   in the JWKS, and when the config (issuers, audiences, skew, ...) is reloaded; all three are
//!   checked on every hit against the request's snapshot.
//! - Bounded in entries and bytes; when full, an arbitrary live entry (the hasher is randomly
//!   keyed) is evicted. A hit takes one short lock and allocates nothing.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use super::{Claims, KeyEntry, KeySet, Verified};
use crate::principal::{IdentityHeaders, Principal};

const SHARDS: usize = 16;

/// What a verified token is remembered as.
pub struct CachedIdentity {
    token: Box<str>,
    /// The snapshot policy generation the token was validated under.
    policy_generation: u64,
    /// `exp` in seconds since the epoch.
    pub expires_at: u64,
    key: Arc<KeyEntry>,
    /// Who the caller is, as authorization reads it.
    pub identity: Identity,
    /// The caller, for `/.auth/me`.
    pub principal: Principal,
    /// The pre-encoded upstream headers.
    pub headers: IdentityHeaders,
    /// `byte_len`, computed once: eviction must not walk every entry's claims.
    size: usize,
}

impl CachedIdentity {
    /// Builds the entry for a freshly verified token; this is the per-token allocation the cache
    /// exists to amortize.
    pub fn new(
        token: &str,
        verified: &Verified<'_>,
        policy_generation: u64,
    ) -> Result<CachedIdentity, serde_json::Error> {
        let principal = Principal::from_payload(verified.payload)?;
        let headers = principal.headers();
        let mut entry = CachedIdentity {
            size: 0,
            token: token.into(),
            policy_generation,
            expires_at: verified.expires_at,
            key: verified.key.clone(),
            identity: Identity::from_claims(&verified.claims),
            principal,
            headers,
        };
        entry.size = entry.compute_byte_len();
        Ok(entry)
    }

    /// The validated token itself (for `upstream.forward_token`).
    pub fn token(&self) -> &str {
        &self.token
    }

    fn byte_len(&self) -> usize {
        self.size
    }

    fn compute_byte_len(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.token.len()
            + self.headers.byte_len()
            + self.identity.byte_len()
            + self
                .principal
                .claims()
                .iter()
                .map(|c| c.typ.len() + c.val.len() + 48)
                .sum::<usize>()
    }
}

/// Who a verified caller is, as authorization reads it: one value whether the request hit the
/// cache or validated a fresh token. It is built once per freshly verified token (the bounded
/// allocation of a miss) and cached with it, so [`crate::authorize`] has one input type and a hit
/// allocates nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `appid` (v1) or `azp` (v2).
    pub application: Option<Box<str>>,
    /// `oid`.
    pub object_id: Option<Box<str>>,
    /// `tid`.
    pub tenant_id: Option<Box<str>>,
    /// Every `aud` value: which routes accept the token is decided per request.
    pub audiences: Box<[Box<str>]>,
    /// Every `roles` value.
    pub roles: Box<[Box<str>]>,
}

impl Identity {
    /// Copies out what authorization reads from claims `validate()` has checked.
    pub fn from_claims(claims: &Claims<'_>) -> Identity {
        let mut roles = Vec::new();
        if let Some(raw) = claims.roles_raw() {
            // validate() already proved it is a string or an array of strings.
            let _ = super::any_string(raw, |r| {
                roles.push(Box::<str>::from(r));
                false
            });
        }
        let mut audiences = Vec::new();
        if let Some(raw) = claims.audiences_raw() {
            // validate() already proved it is a string or an array of strings.
            let _ = super::any_string(raw, |a| {
                audiences.push(Box::<str>::from(a));
                false
            });
        }
        Identity {
            application: claims.application().map(Into::into),
            object_id: claims.object_id().map(Into::into),
            tenant_id: claims.tenant_id().map(Into::into),
            audiences: audiences.into_boxed_slice(),
            roles: roles.into_boxed_slice(),
        }
    }

    /// The calling application (`appid`/`azp`).
    pub fn application(&self) -> Option<&str> {
        self.application.as_deref()
    }

    /// The caller's `oid`.
    pub fn object_id(&self) -> Option<&str> {
        self.object_id.as_deref()
    }

    /// The caller's tenant (`tid`).
    pub fn tenant_id(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }

    /// Whether the token's `aud` holds any of `wanted`.
    pub fn has_any_audience(&self, wanted: &[String]) -> bool {
        self.audiences
            .iter()
            .any(|a| wanted.iter().any(|w| **w == **a))
    }

    /// Whether the token's roles hold any of `wanted`.
    pub fn has_any_role(&self, wanted: &[String]) -> bool {
        self.roles.iter().any(|r| wanted.iter().any(|w| **w == **r))
    }

    fn byte_len(&self) -> usize {
        self.roles.iter().map(|r| r.len() + 16).sum::<usize>()
            + self.audiences.iter().map(|a| a.len() + 16).sum::<usize>()
            + self.tenant_id.as_ref().map_or(0, |t| t.len())
    }
}

/// Outcome of a lookup, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Found alive.
    Hit,
    /// Not found, or found dead (and removed).
    Miss,
}

/// The cache.
pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    max_entries_per_shard: usize,
    max_bytes_per_shard: usize,
}

struct Shard {
    map: HashMap<u64, Arc<CachedIdentity>>,
    bytes: usize,
    /// No entry expires before this, so sweeping for dead ones is pointless until then.
    next_expiry: u64,
}

impl TokenCache {
    /// A cache bounded to `max_entries` and `max_bytes`; `max_entries == 0` disables it.
    pub fn new(max_entries: usize, max_bytes: usize) -> TokenCache {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            max_entries_per_shard: max_entries.div_ceil(SHARDS),
            max_bytes_per_shard: max_bytes / SHARDS,
        }
    }

    /// Whether the cache stores anything at all.
    pub fn enabled(&self) -> bool {
        self.max_entries_per_shard > 0 && self.max_bytes_per_shard > 0
    }

    /// The live entry for exactly `token`, if any.
    pub fn get(
        &self,
        token: &str,
        keys: &KeySet,
        policy_generation: u64,
        now: u64,
    ) -> (Option<Arc<CachedIdentity>>, Lookup) {
        if !self.enabled() {
            return (None, Lookup::Miss);
        }
        let hash = self.hasher.hash_one(token.as_bytes());
        let mut shard = self.shard(hash);
        let Some(entry) = shard.map.get(&hash) else {
            return (None, Lookup::Miss);
        };
        if *entry.token != *token {
            return (None, Lookup::Miss);
        }
        if entry.expires_at <= now
            || !keys.contains(&entry.key)
            || entry.policy_generation != policy_generation
        {
            let dead = shard.map.remove(&hash).expect("present");
            shard.bytes = shard.bytes.saturating_sub(dead.byte_len());
            return (None, Lookup::Miss);
        }
        (Some(entry.clone()), Lookup::Hit)
    }

    /// Stores an entry; returns how many entries were evicted to make room.
    pub fn insert(&self, entry: Arc<CachedIdentity>, now: u64) -> usize {
        if !self.enabled() || entry.expires_at <= now {
            return 0;
        }
        let size = entry.byte_len();
        if size > self.max_bytes_per_shard {
            return 0;
        }
        let hash = self.hasher.hash_one(entry.token.as_bytes());
        let mut shard = self.shard(hash);
        let mut evicted = 0;
        if let Some(old) = shard.map.remove(&hash) {
            shard.bytes = shard.bytes.saturating_sub(old.byte_len());
        }
        // Dead entries go first (when any can be dead); then arbitrary live ones until it fits.
        if (shard.map.len() >= self.max_entries_per_shard
            || shard.bytes + size > self.max_bytes_per_shard)
            && now >= shard.next_expiry
        {
            let before = shard.map.len();
            let (mut freed, mut next) = (0, u64::MAX);
            shard.map.retain(|_, e| {
                if e.expires_at > now {
                    next = next.min(e.expires_at);
                    return true;
                }
                freed += e.byte_len();
                false
            });
            evicted += before - shard.map.len();
            shard.bytes = shard.bytes.saturating_sub(freed);
            shard.next_expiry = next;
        }
        while shard.map.len() >= self.max_entries_per_shard
            || shard.bytes + size > self.max_bytes_per_shard
        {
            let Some(&victim) = shard.map.keys().next() else {
                break;
            };
            let old = shard.map.remove(&victim).expect("present");
            shard.bytes = shard.bytes.saturating_sub(old.byte_len());
            evicted += 1;
        }
        shard.bytes += size;
        shard.next_expiry = shard.next_expiry.min(entry.expires_at);
        shard.map.insert(hash, entry);
        evicted
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        lock(&self.shards[(hash as usize) % SHARDS])
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            map: HashMap::new(),
            bytes: 0,
            next_expiry: u64::MAX,
        }
    }
}

/// A poisoned shard only means another thread panicked mid-update of a cache; its content is
/// still a valid (if partial) map, so keep serving rather than take the proxy down.
fn lock(m: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
