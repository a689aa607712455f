//! Zero heap allocations on the validation path (issue 4, item 1).
//!
//! A counting global allocator counts every `alloc`, `alloc_zeroed` and `realloc` made by the
//! *current thread* while a measurement is armed, so the test harness's other threads cannot
//! disturb the count and the result is deterministic (no timing involved).
//!
//! What is measured, after one warm-up call of the same shape (first-use initialisation such as
//! a thread-local scratch buffer is not per-request work):
//! - a cache miss: `extract::bearer_token` + `extract::credential` + `validate::validate` (JWS parse, key lookup,
//!   signature, claims), for RS256 and ES256, v1 and v2 Entra-shaped tokens, each token never
//!   seen before; then `authorize::authorize` (allow-lists and rules) on the `Identity` the
//!   pipeline builds once from the fresh claims (that build is the miss's one bounded allocation,
//!   and the value it builds is what the cache holds);
//! - a cache hit: `extract::bearer_token` + `TokenCache::get` + `authorize::authorize`;
//! - the whole synchronous `Proxy::authenticate` on a hit (adds snapshot access and metrics);
//! - what a fresh token costs beyond validation (issue 12): building its cache entry (EasyAuth
//!   principal, pre-encoded headers, `Identity`), its `Arc` and `TokenCache::insert`, at most
//!   four allocations for Entra-shaped v1 and v2 tokens; and that inserting into a full cache
//!   never grows its maps.
//!
//! Not counted: aws-lc (the signature backend) is C and allocates through `malloc`, not through
//! Rust's global allocator, so allocations inside `EVP_DigestVerify*` are invisible here. What
//! this test proves is that *our* code and the Rust crates it calls allocate nothing.
//!
//! The same allocator also tracks net heap bytes, to check that the verified-token cache's byte
//! bound (a count it keeps itself) holds for the real heap it pins.
//!
//! Set `TOKENGATE_ALLOC_TRACE=1` to print a backtrace for every counted allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;

use tokengate::authorize;
use tokengate::dev::fixture::{offline_proxy, Fixture, PATH};
use tokengate::dev::DEV_CALLER_APP;
use tokengate::extract;
use tokengate::metrics::Metrics;
use tokengate::pipeline::unix_now;
use tokengate::reject::Rejection;
use tokengate::validate::cache::{CachedIdentity, Identity, TokenCache};
use tokengate::validate::{self, Algorithm, KeySet};

// ---- The counting allocator. ----

struct Counting;

thread_local! {
    // `const` initialisers and no destructors: reading these never allocates or registers a
    // thread-local destructor, so they are safe to touch from inside the allocator.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

static TRACE: AtomicBool = AtomicBool::new(false);

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Net heap bytes this thread allocated (minus freed) while armed.
fn live(delta: isize) {
    if ARMED.try_with(|a| a.get()).unwrap_or(false)
        && !TRACING.try_with(|t| t.get()).unwrap_or(true)
    {
        LIVE.with(|l| l.set(l.get() + delta));
    }
}

fn note(size: usize) {
    let armed = ARMED.try_with(|a| a.get()).unwrap_or(false);
    if !armed || TRACING.try_with(|t| t.get()).unwrap_or(true) {
        return;
    }
    COUNT.with(|c| c.set(c.get() + 1));
    if TRACE.load(Ordering::Relaxed) {
        // The backtrace itself allocates; `TRACING` keeps those allocations out of the count.
        TRACING.with(|t| t.set(true));
        let bt = std::backtrace::Backtrace::force_capture();
        eprintln!("counted allocation of {size} bytes at:\n{bt}");
        TRACING.with(|t| t.set(false));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only const-initialised
// thread-locals without destructors.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        live(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        live(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        live(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result and how many allocations this thread made meanwhile.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    TRACE.store(
        std::env::var_os("TOKENGATE_ALLOC_TRACE").is_some_and(|v| v != "0"),
        Ordering::Relaxed,
    );
    COUNT.with(|c| c.set(0));
    LIVE.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let r = std::hint::black_box(f());
    ARMED.with(|a| a.set(false));
    (r, COUNT.with(|c| c.get()))
}

// ---- The shared fixture (tokengate::dev::fixture): the reference policy. ----

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    h.insert(http::header::HOST, HeaderValue::from_static("api.example"));
    h
}

/// The miss path's validation: extract → validate, as the pipeline runs it before it copies the
/// verified claims into an `Identity` once (the bounded allocation of a miss, and what is cached).
fn extract_and_validate(
    fx: &Fixture,
    headers: &HeaderMap,
    scratch: &mut Vec<u8>,
    now: u64,
) -> Result<u64, tokengate::reject::Rejection> {
    let auth = &fx.snapshot.policy.auth;
    let token = extract::bearer_token(headers, auth.max_token_size)?;
    extract::credential(token)?;
    let verified = fx.verify(token, now, scratch)?;
    Ok(verified.expires_at)
}

/// The `Identity` the pipeline builds once per fresh token; authorization reads only this, on a
/// miss and on a hit alike. Not measured: it is the per-token allocation the cache amortizes.
fn identity_of(fx: &Fixture, headers: &HeaderMap, scratch: &mut Vec<u8>, now: u64) -> Identity {
    let token = extract::bearer_token(headers, usize::MAX).expect("a bearer token");
    let verified = fx.verify(token, now, scratch).expect("valid");
    Identity::from_claims(&verified.claims)
}

/// Authorization of a fresh identity, measured.
fn authorize_measured(
    fx: &Fixture,
    id: &Identity,
) -> (Result<(), tokengate::reject::Rejection>, usize) {
    let auth = &fx.snapshot.policy.auth;
    allocations(|| authorize::authorize(auth, id, PATH, &Method::GET))
}

fn assert_miss_allocates_nothing(alg: &str, version: u8) {
    let fx = Fixture::new();
    let mut scratch = Vec::with_capacity(48 * 1024);
    let now = unix_now();
    // Warm-up with one token, then measure with another the process has never seen.
    let warm = bearer(&fx.token(alg, version, 0));
    extract_and_validate(&fx, &warm, &mut scratch, now).expect("warm-up token is valid");
    let fresh = bearer(&fx.token(alg, version, 1));
    let (result, n) = allocations(|| extract_and_validate(&fx, &fresh, &mut scratch, now));
    assert!(result.is_ok(), "{alg} v{version}: {result:?}");
    assert_eq!(
        n, 0,
        "{alg} v{version} miss: {n} heap allocations in extract+validate \
         (rerun with TOKENGATE_ALLOC_TRACE=1 -- --nocapture for backtraces)"
    );
    let id = identity_of(&fx, &fresh, &mut scratch, now);
    let (result, n) = authorize_measured(&fx, &id);
    assert_eq!(result, Ok(()), "{alg} v{version}");
    assert_eq!(
        n, 0,
        "{alg} v{version} miss: {n} heap allocations in authorize"
    );
}

#[test]
fn miss_rs256_v2_allocates_nothing() {
    assert_miss_allocates_nothing("RS256", 2);
}

#[test]
fn miss_rs256_v1_allocates_nothing() {
    assert_miss_allocates_nothing("RS256", 1);
}

#[test]
fn miss_es256_v2_allocates_nothing() {
    assert_miss_allocates_nothing("ES256", 2);
}

#[test]
fn miss_es256_v1_allocates_nothing() {
    assert_miss_allocates_nothing("ES256", 1);
}

/// Refusals are on the hot path too (an attacker chooses them): a wrong audience, a role a rule
/// needs but the token lacks, and a bad signature must not allocate either.
#[test]
fn refusals_allocate_nothing() {
    let fx = Fixture::new();
    let mut scratch = Vec::with_capacity(48 * 1024);
    let now = unix_now();
    let ok = fx.token("RS256", 2, 0);
    extract_and_validate(&fx, &bearer(&ok), &mut scratch, now).expect("valid");

    let mut claims = fx.issuer.v2_claims(&["App.Read"]);
    claims["aud"] = Value::from("api://someone-else");
    let wrong_aud = bearer(&fx.issuer.rs256(&claims));
    let no_role = bearer(&fx.issuer.rs256(&fx.issuer.v2_claims(&["App.Read"])));
    let mut forged = ok.clone();
    let last = forged.pop().expect("non-empty");
    forged.push(if last == 'A' { 'Q' } else { 'A' });
    let forged = bearer(&forged);

    // Refused either by validation (an audience no route accepts) or, on the identity built once
    // from the fresh claims as the pipeline does, by authorization; neither step allocates.
    for (headers, want, what) in [
        (&wrong_aud, Rejection::InvalidAudience, "wrong audience"),
        (&no_role, Rejection::MissingRole, "missing role"),
    ] {
        let (r, n) = allocations(|| extract_and_validate(&fx, headers, &mut scratch, now));
        assert_eq!(n, 0, "{what}: {n} allocations in extract+validate");
        if let Err(r) = r {
            assert_eq!(r, want, "{what}");
            continue;
        }
        let id = identity_of(&fx, headers, &mut scratch, now);
        let (r, n) = authorize_measured(&fx, &id);
        assert_eq!(r, Err(want), "{what}");
        assert_eq!(n, 0, "{what}: {n} allocations in authorize");
    }

    let (r, n) = allocations(|| extract_and_validate(&fx, &forged, &mut scratch, now));
    assert!(
        matches!(
            r,
            Err(tokengate::reject::Rejection::InvalidSignature
                | tokengate::reject::Rejection::MalformedToken)
        ),
        "{r:?}"
    );
    assert_eq!(n, 0, "forged signature: {n} allocations");
}

#[test]
fn hit_allocates_nothing() {
    let fx = Fixture::new();
    let auth = &fx.snapshot.policy.auth;
    let cache = TokenCache::new(1000, 1 << 20);
    let now = unix_now();
    let mut headers = Vec::new();
    for (i, (alg, v)) in [("RS256", 1), ("RS256", 2), ("ES256", 1), ("ES256", 2)]
        .into_iter()
        .enumerate()
    {
        let token = fx.token(alg, v, i as u64);
        cache.insert(fx.entry(&token, now), now);
        headers.push((alg, v, bearer(&token)));
    }
    let hit = |h: &HeaderMap| -> Result<(), tokengate::reject::Rejection> {
        let token = extract::bearer_token(h, auth.max_token_size)?;
        let (entry, _) = cache.get(token, &fx.keys, 0, now);
        let entry = entry.expect("cached");
        authorize::authorize(auth, &entry.identity, PATH, &Method::GET)
    };
    // Warm-up.
    hit(&headers[0].2).expect("authorized");
    for (alg, v, h) in &headers {
        let (r, n) = allocations(|| hit(h));
        assert_eq!(r, Ok(()), "{alg} v{v}");
        assert_eq!(
            n, 0,
            "{alg} v{v} hit: {n} heap allocations in extract+cache+authorize"
        );
    }
}

/// The synchronous part of the real pipeline: snapshot, metrics, extract, cache, authorize.
#[test]
fn proxy_authenticate_hit_allocates_nothing() {
    let fx = Fixture::new();
    let proxy = offline_proxy(fx.snapshot.clone(), 1000, Arc::new(Metrics::new()));
    let now = unix_now();
    let headers = bearer(&fx.token("RS256", 2, 7));
    let snap = proxy.cell.load_full();
    // First call: a miss that verifies and fills the cache (and the thread's scratch buffer).
    let (first, miss_allocs) =
        allocations(|| proxy.authenticate(&snap, &headers, PATH, &Method::GET, now));
    first.expect("valid");
    // The miss allocates only to build the cache entry (see `fresh_entry_allocates_four_times`)
    // and, on this thread's first request, the scratch buffers; printed for the record.
    eprintln!("Proxy::authenticate, first miss on this thread: {miss_allocs} allocations");
    let (second, n) = allocations(|| proxy.authenticate(&snap, &headers, PATH, &Method::GET, now));
    second.expect("valid");
    assert_eq!(n, 0, "Proxy::authenticate hit: {n} heap allocations");
    let other = bearer(&fx.token("ES256", 1, 8));
    let (third, miss_allocs) =
        allocations(|| proxy.authenticate(&snap, &other, PATH, &Method::GET, now));
    third.expect("valid");
    eprintln!("Proxy::authenticate, warm miss (builds a cache entry): {miss_allocs} allocations");
    assert!(
        miss_allocs <= 4,
        "Proxy::authenticate, warm miss: {miss_allocs} heap allocations"
    );
}

/// `Proxy::decide` (the one decision function: anonymous access, validation, route audiences,
/// tenants, allow-lists, rules, report mode) on a cache hit.
#[test]
fn proxy_decide_hit_allocates_nothing() {
    let fx = Fixture::new();
    let proxy = offline_proxy(fx.snapshot.clone(), 1000, Arc::new(Metrics::new()));
    let now = unix_now();
    let headers = bearer(&fx.token("RS256", 1, 9));
    let snap = proxy.cell.load_full();
    let allowed =
        |d: &tokengate::pipeline::Decision| matches!(d, tokengate::pipeline::Decision::Allow(_));
    assert!(allowed(&proxy.decide(
        &snap,
        &headers,
        PATH,
        &Method::GET,
        now
    )));
    let (d, n) = allocations(|| proxy.decide(&snap, &headers, PATH, &Method::GET, now));
    assert!(allowed(&d));
    drop(d);
    assert_eq!(n, 0, "Proxy::decide hit: {n} heap allocations");
}

/// The borrowing is an optimisation only: JSON-escaped strings (legal, if never seen from Entra)
/// still validate, unescaped, through the allocating path.
#[test]
fn escaped_strings_still_validate() {
    let fx = Fixture::new();
    let kid = "rsa\"1";
    let jwks = serde_json::json!({ "keys": [fx.issuer.rsa.jwk(kid, None)] }).to_string();
    let (keys, _) = KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::Rs256], None).expect("jwks");
    let mut claims = fx.issuer.v2_claims(&["App.Read"]);
    claims["oid"] = Value::from("o\"id\\x");
    let token = fx.issuer.rsa.sign(
        "RS256",
        &serde_json::json!({"alg": "RS256", "kid": kid}),
        &claims,
    );
    let mut scratch = Vec::new();
    let verified = validate::validate(
        &token,
        &fx.snapshot.validation(),
        &keys,
        unix_now(),
        &mut scratch,
    )
    .expect("escaped kid and oid validate");
    assert_eq!(verified.claims.object_id(), Some("o\"id\\x"));
    assert_eq!(verified.claims.application(), Some(DEV_CALLER_APP));
}

/// The cache's byte bound is an estimate (`byte_len`); what matters is the real heap it pins.
/// Fills a cache bounded to 4 MiB with far more entries than fit and measures the heap this
/// thread still holds afterwards (every entry was built and evicted on this thread).
#[test]
fn cache_heap_stays_near_its_byte_bound() {
    let fx = Fixture::new();
    let now = unix_now();
    let token = fx.token("RS256", 2, 0);
    let mut scratch = Vec::new();
    let verified = fx.verify(&token, now, &mut scratch).expect("valid");
    let max_bytes = 4 << 20;
    let cache = TokenCache::new(1_000_000, max_bytes);
    let ((), net) = allocations_net(|| {
        for n in 0..4000 {
            let key = format!("{token}{n}");
            let entry = CachedIdentity::new(&key, &verified, 0).expect("entry");
            cache.insert(Arc::new(entry), now);
        }
    });
    let held = cache.len();
    eprintln!(
        "cache bounded to {max_bytes} bytes holds {held} entries and {net} heap bytes \
         ({} per entry, {:.2}x the bound)",
        net / held.max(1) as isize,
        net as f64 / max_bytes as f64
    );
    // An entry's `byte_len` counts its heap exactly, so the cache holds at most its bound (the
    // maps were sized when the cache was made, before this measurement). Malloc's own
    // per-chunk overhead (four chunks per entry) comes on top of this in RSS.
    assert!(
        net <= max_bytes as isize,
        "{net} heap bytes held by a cache bounded to {max_bytes}"
    );
}

/// Like [`allocations`], but returns the net heap bytes (allocated minus freed) instead.
fn allocations_net<R>(f: impl FnOnce() -> R) -> (R, isize) {
    let (r, _) = allocations(f);
    (r, LIVE.with(|l| l.get()))
}

/// An Entra-shaped app token of `version` 1 or 2 with five roles and the claims Entra adds
/// (`aio`, `rh`, `uti`, `idtyp`, `xms_*`): about 1.3 KB, what the proxy sees in production.
fn entra_token(fx: &Fixture, version: u8, n: u64) -> String {
    let roles = [
        "Orders.Read",
        "Orders.Write",
        "App.Read",
        "Inventory.Read",
        "Reports.Export",
    ];
    let mut claims = match version {
        1 => fx.issuer.v1_claims(&roles),
        _ => fx.issuer.v2_claims(&roles),
    };
    let extra = serde_json::json!({
        "aio": "k2BgYDjP9Xl3zvvq8RkZ4cPpWmQHAA==aGVsbG8gdGhlcmUgZnJpZW5kIQ",
        "idtyp": "app",
        "rh": "1.AQcAvlTSmTAtbk2rBdZxNmiTrQkAAAAAAAAAwAAAAAAAAAAAAAAQcAAA.",
        "uti": format!("bHfq3S1wJUCu0zOv{n:08}"),
        "xms_idrel": "7 30",
        "xms_ftd": "c2VjcmV0LW5vdC1yZWFsbHktZnRkLXZhbHVlLWZvci10ZXN0cw",
    });
    for (k, v) in extra.as_object().expect("object") {
        claims[k] = v.clone();
    }
    fx.issuer.rs256(&claims)
}

/// Issue 12: what a fresh token costs on top of its validation (which allocates nothing, see
/// above) is building its cache entry (`CachedIdentity::new`: the EasyAuth principal written
/// in one pass, the pre-encoded headers, the compact `Identity`), its `Arc` and
/// `TokenCache::insert`. Four allocations: the `Arc`, one buffer for the header values and the
/// token, the reference count `bytes` shares it under, and `Identity`'s strings.
#[test]
fn fresh_entry_allocates_four_times() {
    let fx = Fixture::new();
    let now = unix_now();
    let cache = TokenCache::new(10_000, 32 << 20);
    let mut scratch = Vec::with_capacity(48 * 1024);
    // Warm-up: the thread's EasyAuth scratch buffer grows once.
    for version in [1, 2] {
        let token = entra_token(&fx, version, 0);
        let verified = fx.verify(&token, now, &mut scratch).expect("valid");
        cache.insert(
            Arc::new(CachedIdentity::new(&token, &verified, 0).expect("entry")),
            now,
        );
    }
    for version in [1, 2] {
        let token = entra_token(&fx, version, 1);
        let verified = fx.verify(&token, now, &mut scratch).expect("valid");
        let (evicted, n) = allocations(|| {
            let entry = CachedIdentity::new(&token, &verified, 0).expect("entry");
            cache.insert(Arc::new(entry), now)
        });
        assert_eq!(evicted, 0);
        let held = LIVE.with(|l| l.get());
        eprintln!(
            "v{version} token of {} bytes: entry + Arc + insert = {n} allocations, \
             {held} heap bytes held",
            token.len()
        );
        assert!(
            n <= 4,
            "v{version}: {n} allocations to build and cache an entry \
             (rerun with TOKENGATE_ALLOC_TRACE=1 -- --nocapture for backtraces)"
        );
        let (entry, _) = cache.get(&token, &fx.keys, 0, now);
        let entry = entry.expect("cached");
        assert_eq!(entry.token(), token);
        assert_eq!(entry.identity.roles().count(), 5);
    }
}

/// A full cache takes new entries without growing its maps: eviction makes room, and the maps
/// were sized up front, so `insert` itself never allocates.
#[test]
fn insert_into_a_full_cache_allocates_nothing() {
    let fx = Fixture::new();
    let now = unix_now();
    let token = fx.token("RS256", 2, 0);
    let mut scratch = Vec::new();
    let verified = fx.verify(&token, now, &mut scratch).expect("valid");
    let cache = TokenCache::new(320, 32 << 20);
    let mut evicted = 0;
    let mut total = 0;
    for n in 0..5000 {
        let entry =
            Arc::new(CachedIdentity::new(&format!("{token}{n}"), &verified, 0).expect("entry"));
        let (e, allocs) = allocations(|| cache.insert(entry, now));
        evicted += e;
        total += allocs;
    }
    assert_eq!(cache.len(), 320);
    assert_eq!(evicted, 5000 - 320);
    assert_eq!(total, 0, "{total} allocations in 5000 inserts");
}
