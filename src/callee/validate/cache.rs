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
use std::fmt;
use std::hash::BuildHasher;
use std::mem::size_of;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;

use super::{Claims, KeyEntry, KeySet, Verified};
use crate::principal::{self, IdentityHeaders};

const SHARDS: usize = 16;

/// Bytes at the end of a token the slot key is computed from (see [`TokenCache::key`]).
const KEYED_TAIL: usize = 64;
/// The smallest entries (a short token with few claims) take about 2 KiB; an Entra token of
/// ~1.5 KB about 5 KiB. Used only to pre-size the maps.
const TYPICAL_ENTRY_BYTES: usize = 2048;

/// What a verified token is remembered as: four heap allocations (the `Arc` around it, one
/// buffer holding the token and the pre-encoded header values, the reference count `bytes`
/// shares that buffer under, and [`Identity`]'s strings), about the token's size plus its
/// `X-MS-CLIENT-PRINCIPAL` in bytes. `/.auth/me` is not kept: it is rendered from the token's
/// payload when asked for ([`CachedIdentity::me_json`]).
pub struct CachedIdentity {
    /// The token, in the same buffer as the header values.
    token: Bytes,
    /// The snapshot policy generation the token was validated under.
    policy_generation: u64,
    /// `exp` in seconds since the epoch.
    pub expires_at: u64,
    key: Arc<KeyEntry>,
    /// Who the caller is, as authorization reads it.
    pub identity: Identity,
    /// The pre-encoded upstream headers.
    pub headers: IdentityHeaders,
    /// `byte_len`, computed once: eviction must not walk entries.
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
        let (headers, token) = IdentityHeaders::with_token(verified.payload, token)?;
        let mut entry = CachedIdentity {
            size: 0,
            token,
            policy_generation,
            expires_at: verified.expires_at,
            key: verified.key.clone(),
            identity: Identity::from_claims(&verified.claims),
            headers,
        };
        entry.size = entry.compute_byte_len();
        Ok(entry)
    }

    /// The validated token itself (for `upstream.forward_token`).
    pub fn token(&self) -> &str {
        // Copied from a `&str`, so always UTF-8.
        std::str::from_utf8(&self.token).unwrap_or_default()
    }

    /// The body of `GET /.auth/me`, rendered from the token's (verified) payload on each call:
    /// few callers ask, so no entry pays to keep it.
    pub fn me_json(&self) -> String {
        let payload = self
            .token()
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok());
        // Both steps succeeded when the entry was built from the same bytes; an empty session
        // list is the honest answer should they ever not.
        payload
            .and_then(|p| principal::me_json(&p).ok())
            .unwrap_or_else(|| "[]".to_string())
    }

    fn byte_len(&self) -> usize {
        self.size
    }

    /// The heap this entry pins, exactly (short of the allocator's own per-chunk overhead):
    /// `tests/alloc.rs` holds it to the real heap.
    fn compute_byte_len(&self) -> usize {
        // The Arc's two counters and the entry itself.
        2 * size_of::<usize>()
            + size_of::<Self>()
            // One buffer: the header values, then the token.
            + self.headers.byte_len()
            + self.token.len()
            // The `bytes` crate's shared header for it: buffer pointer, capacity, count.
            + 3 * size_of::<usize>()
            + self.identity.heap_len()
    }
}

/// Who a verified caller is, as authorization reads it: one value whether the request hit the
/// cache or validated a fresh token. It is built once per freshly verified token and cached with
/// it, so [`crate::authorize`] has one input type and a hit allocates nothing.
///
/// Compact: every string lives back to back in one allocation, with their end offsets inline
/// (a second allocation only past [`INLINE_ENDS`] strings).
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// application ‖ object id ‖ tenant id ‖ every audience ‖ every role.
    text: Box<str>,
    /// Where each of those strings ends in `text`, in the same order.
    ends: Ends,
    /// Which of application, object id and tenant id are present (bits 0, 1, 2).
    present: u8,
    /// How many of the strings after the first three are audiences (the rest are roles).
    audiences: u32,
}

/// End offsets kept inline: the three single values and nine audiences or roles.
pub const INLINE_ENDS: usize = 12;

#[derive(Clone, PartialEq, Eq)]
enum Ends {
    Inline(u8, [u32; INLINE_ENDS]),
    Spilled(Box<[u32]>),
}

impl Ends {
    fn zeroed(len: usize) -> Ends {
        if len <= INLINE_ENDS {
            Ends::Inline(len as u8, [0; INLINE_ENDS])
        } else {
            Ends::Spilled(vec![0; len].into_boxed_slice())
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Ends::Inline(len, ends) => &ends[..usize::from(*len)],
            Ends::Spilled(ends) => ends,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u32] {
        match self {
            Ends::Inline(len, ends) => &mut ends[..usize::from(*len)],
            Ends::Spilled(ends) => ends,
        }
    }
}

impl Identity {
    /// Copies out what authorization reads from claims `validate()` has checked.
    pub fn from_claims(claims: &Claims<'_>) -> Identity {
        Identity::build(
            [claims.application(), claims.object_id(), claims.tenant_id()],
            |f| each_string(claims.audiences_raw(), f),
            |f| each_string(claims.roles_raw(), f),
        )
    }

    /// An identity from its parts (tests, tools).
    pub fn new(
        application: Option<&str>,
        object_id: Option<&str>,
        tenant_id: Option<&str>,
        audiences: &[&str],
        roles: &[&str],
    ) -> Identity {
        Identity::build(
            [application, object_id, tenant_id],
            |f| audiences.iter().for_each(|a| f(a)),
            |f| roles.iter().for_each(|r| f(r)),
        )
    }

    /// Two passes over the lists (they are cheap to walk again): one to size the text exactly,
    /// one to fill it, so it is allocated once and never reallocated.
    fn build(
        single: [Option<&str>; 3],
        audiences: impl Fn(&mut dyn FnMut(&str)),
        roles: impl Fn(&mut dyn FnMut(&str)),
    ) -> Identity {
        let (mut len, mut auds, mut count) = (0, 0u32, 3);
        for s in single.iter().flatten() {
            len += s.len();
        }
        audiences(&mut |a| {
            len += a.len();
            auds += 1;
            count += 1;
        });
        roles(&mut |r| {
            len += r.len();
            count += 1;
        });
        let mut text = String::with_capacity(len);
        let mut ends = Ends::zeroed(count);
        let slots = ends.as_mut_slice();
        let mut i = 0;
        let mut push = |s: &str| {
            text.push_str(s);
            // Within a token of at most 64 KiB (`auth.max_token_size`).
            if let Some(end) = slots.get_mut(i) {
                *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
            }
            i += 1;
        };
        let mut present = 0;
        for (bit, s) in single.iter().enumerate() {
            if s.is_some() {
                present |= 1 << bit;
            }
            push(s.unwrap_or(""));
        }
        audiences(&mut push);
        roles(&mut push);
        Identity {
            text: text.into_boxed_str(),
            ends,
            present,
            audiences: auds,
        }
    }

    /// The calling application (`appid`/`azp`).
    pub fn application(&self) -> Option<&str> {
        self.single(0)
    }

    /// The caller's `oid`.
    pub fn object_id(&self) -> Option<&str> {
        self.single(1)
    }

    /// The caller's tenant (`tid`).
    pub fn tenant_id(&self) -> Option<&str> {
        self.single(2)
    }

    /// Every `aud` value.
    pub fn audiences(&self) -> impl Iterator<Item = &str> + '_ {
        let first = 3;
        (first..first + self.audiences as usize).map(|i| self.string(i))
    }

    /// Every `roles` value.
    pub fn roles(&self) -> impl Iterator<Item = &str> + '_ {
        let first = 3 + self.audiences as usize;
        (first..self.ends.as_slice().len()).map(|i| self.string(i))
    }

    /// Whether the token's `aud` holds any of `wanted`.
    pub fn has_any_audience(&self, wanted: &[String]) -> bool {
        self.audiences().any(|a| wanted.iter().any(|w| w == a))
    }

    /// Whether the token's roles hold any of `wanted`.
    pub fn has_any_role(&self, wanted: &[String]) -> bool {
        self.roles().any(|r| wanted.iter().any(|w| w == r))
    }

    /// Heap bytes held: the text, and the offsets when they did not fit inline.
    pub fn heap_len(&self) -> usize {
        self.text.len()
            + match &self.ends {
                Ends::Inline(..) => 0,
                Ends::Spilled(ends) => ends.len() * size_of::<u32>(),
            }
    }

    fn single(&self, i: usize) -> Option<&str> {
        (self.present & (1 << i) != 0).then(|| self.string(i))
    }

    fn string(&self, i: usize) -> &str {
        let ends = self.ends.as_slice();
        let start = if i == 0 {
            0
        } else {
            ends.get(i - 1).copied().unwrap_or(0)
        };
        let end = ends.get(i).copied().unwrap_or(0);
        self.text.get(start as usize..end as usize).unwrap_or("")
    }
}

/// Calls `f` on a JSON string or each string of an array; `validate()` already proved `aud` and
/// `roles` are one or the other.
fn each_string(raw: Option<&serde_json::value::RawValue>, f: &mut dyn FnMut(&str)) {
    if let Some(raw) = raw {
        let _ = super::any_string(raw, |s| {
            f(s);
            false
        });
    }
}

impl Default for Identity {
    fn default() -> Self {
        Identity::new(None, None, None, &[], &[])
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("application", &self.application())
            .field("object_id", &self.object_id())
            .field("tenant_id", &self.tenant_id())
            .field("audiences", &self.audiences().collect::<Vec<_>>())
            .field("roles", &self.roles().collect::<Vec<_>>())
            .finish()
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
    ///
    /// Each shard's map is sized up front for twice the entries it can hold (at a typical
    /// entry size), so steady-state inserts never grow it: with the table at most half full,
    /// the tombstones eviction leaves are cleared by rehashing in place, not by reallocating.
    pub fn new(max_entries: usize, max_bytes: usize) -> TokenCache {
        let max_entries_per_shard = max_entries.div_ceil(SHARDS);
        let max_bytes_per_shard = max_bytes / SHARDS;
        let expected = max_entries_per_shard.min(max_bytes_per_shard / TYPICAL_ENTRY_BYTES);
        TokenCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard::with_capacity(2 * expected)))
                .collect(),
            hasher: RandomState::new(),
            max_entries_per_shard,
            max_bytes_per_shard,
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
        let hash = self.key(token.as_bytes());
        let mut shard = self.shard(hash);
        let Some(entry) = shard.map.get(&hash) else {
            return (None, Lookup::Miss);
        };
        if entry.token[..] != *token.as_bytes() {
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
        let hash = self.key(&entry.token[..]);
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

    /// The slot key: the keyed hash of the token's length and last [`KEYED_TAIL`] bytes. A
    /// token ends in its signature, which no one but the issuer can choose for a valid token, so
    /// the tail tells tokens apart as well as the whole would, at a fraction of the hashing on
    /// every request (issue 12: hashing all ~1.4 KB was 1.1% of a cache hit). A shared tail can
    /// only make two tokens take turns in one slot: `get` still compares every byte.
    fn key(&self, token: &[u8]) -> u64 {
        let tail = &token[token.len().saturating_sub(KEYED_TAIL)..];
        self.hasher.hash_one((token.len(), tail))
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard> {
        lock(&self.shards[(hash as usize) % SHARDS])
    }
}

impl Shard {
    fn with_capacity(entries: usize) -> Self {
        Shard {
            map: HashMap::with_capacity(entries),
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
