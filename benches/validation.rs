//! Token validation: our hot path against the baseline it replaces (`jsonwebtoken::decode`).
//!
//! - `tokengate/hit`: `Proxy::authenticate` on a cached token (extract, cache lookup, allow-lists,
//!   rules, metrics): what a client reusing its token pays.
//! - `tokengate/miss_{rs256,es256}`: extract + full validation (JWS parse, key by `kid`,
//!   signature, claims) + allow-lists and rules, with no cache: what the first use of a token pays.
//! - `tokengate/miss_rs256_with_entry`: `Proxy::authenticate` with the cache disabled, so it also
//!   builds the identity (EasyAuth principal and pre-encoded headers) every time: the real
//!   per-request cost when every request carries a new token.
//! - `tokengate/extract`: `extract::bearer_token` alone (the scheme, the size, UTF-8);
//!   `tokengate/credential`: the `b64token` scan a cache miss adds.
//! - `cache/entry_new`: `CachedIdentity::new` alone for a verified token: the EasyAuth principal
//!   written from the payload, base64, the compact `Identity` (issue 12: four allocations).
//! - `cache/insert_when_full`: inserting a new entry into a full default-size cache (10,000
//!   entries, 32 MiB), which evicts: the steady state when every request brings a new token.
//! - `jsonwebtoken/{rs256,es256}`: `jsonwebtoken::decode` with a `DecodingKey::from_jwk` built
//!   once, `iss`/`aud`/`exp` required and checked, into a struct with the claims we authorize on.
//!   It does not evaluate allow-lists or rules, so it does strictly less than the `miss` rows.
//!
//! Run: `cargo bench --bench validation -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Validation};

use tokengate::authorize;
use tokengate::dev::fixture::offline_proxy;
use tokengate::extract;
use tokengate::metrics::Metrics;
use tokengate::pipeline::{unix_now, Proxy};
use tokengate::validate;
use tokengate::validate::cache::{CachedIdentity, Identity, TokenCache};

use tokengate::dev::fixture::{Fixture, PATH};

/// The claims the baseline decodes (owned: `jsonwebtoken` requires `DeserializeOwned`).
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read only by the deserializer
struct EntraClaims {
    iss: String,
    aud: String,
    exp: u64,
    azp: Option<String>,
    appid: Option<String>,
    oid: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    h
}

fn proxy(fx: &Fixture, cache_entries: usize) -> Proxy {
    offline_proxy(fx.snapshot.clone(), cache_entries, Arc::new(Metrics::new()))
}

fn tokengate_rows(c: &mut Criterion, fx: &Fixture) {
    let now = unix_now();
    let mut g = c.benchmark_group("validation");

    let cached = proxy(fx, 10_000);
    let headers = bearer(&fx.token("RS256", 2, 0));
    let snap = cached.cell.load_full();
    cached
        .authenticate(&snap, &headers, PATH, &Method::GET, now)
        .expect("valid");
    g.bench_function("tokengate/hit", |b| {
        b.iter(|| {
            cached
                .authenticate(&snap, black_box(&headers), PATH, &Method::GET, now)
                .expect("valid")
        })
    });

    for alg in ["RS256", "ES256"] {
        let headers = bearer(&fx.token(alg, 2, 0));
        let auth = &fx.snapshot.policy.auth;
        let policy = fx.snapshot.validation();
        let mut scratch = Vec::with_capacity(48 * 1024);
        g.bench_function(format!("tokengate/miss_{}", alg.to_lowercase()), |b| {
            b.iter(|| {
                let token =
                    extract::bearer_token(black_box(&headers), auth.max_token_size).expect("token");
                extract::credential(token).expect("b64token");
                let verified =
                    validate::validate(token, &policy, &fx.keys, now, &mut scratch).expect("valid");
                // The pipeline authorizes the Identity it builds once per fresh token.
                let id = Identity::from_claims(&verified.claims);
                authorize::authorize(auth, &id, PATH, &Method::GET).expect("allowed");
                verified.expires_at
            })
        });
    }

    let auth = &fx.snapshot.policy.auth;
    g.bench_function("tokengate/extract", |b| {
        b.iter(|| extract::bearer_token(black_box(&headers), auth.max_token_size).expect("token"))
    });
    g.bench_function("tokengate/credential", |b| {
        let token = extract::bearer_token(&headers, auth.max_token_size).expect("token");
        b.iter(|| extract::credential(black_box(token)).expect("b64token"))
    });

    let uncached = proxy(fx, 0);
    let headers = bearer(&fx.token("RS256", 2, 0));
    g.bench_function("tokengate/miss_rs256_with_entry", |b| {
        b.iter(|| {
            uncached
                .authenticate(&snap, black_box(&headers), PATH, &Method::GET, now)
                .expect("valid")
        })
    });
    g.finish();
}

fn cache_rows(c: &mut Criterion, fx: &Fixture) {
    let now = unix_now();
    let token = fx.token("RS256", 2, 0);
    let mut scratch = Vec::new();
    let verified = fx.verify(&token, now, &mut scratch).expect("valid");
    // Entries differ only in the token text they are keyed by; the identity is the same.
    let mut n = 0u64;
    let mut entry = || {
        n += 1;
        let key = format!("{token}{n}");
        Arc::new(CachedIdentity::new(&key, &verified, 0).expect("entry"))
    };
    let cache = TokenCache::new(10_000, 32 << 20);
    for _ in 0..20_000 {
        cache.insert(entry(), now);
    }
    let mut g = c.benchmark_group("validation");
    g.bench_function("cache/entry_new", |b| {
        b.iter(|| CachedIdentity::new(black_box(&token), &verified, 0).expect("entry"))
    });
    g.bench_function("cache/insert_when_full", |b| {
        b.iter_batched(&mut entry, |e| cache.insert(e, now), BatchSize::SmallInput)
    });
    g.finish();
}

fn baseline_rows(c: &mut Criterion, fx: &Fixture) {
    let mut g = c.benchmark_group("validation");
    let v1 = tokengate::dev::v1_issuer(&fx.issuer.tenant);
    let v2 = tokengate::dev::v2_issuer(&fx.issuer.tenant);
    for (alg, key, kid, jalg) in [
        (
            "RS256",
            &fx.issuer.rsa,
            "rsa-1",
            jsonwebtoken::Algorithm::RS256,
        ),
        (
            "ES256",
            &fx.issuer.ec,
            "ec-1",
            jsonwebtoken::Algorithm::ES256,
        ),
    ] {
        let jwk: Jwk = serde_json::from_value(key.jwk(kid, None)).expect("jwk");
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut validation = Validation::new(jalg);
        validation.set_issuer(&[&v1, &v2]);
        validation.set_audience(&["api://other", tokengate::dev::DEV_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        let token = fx.token(alg, 2, 0);
        jsonwebtoken::decode::<EntraClaims>(&token, &decoding, &validation).expect("valid");
        g.bench_function(format!("jsonwebtoken/{}", alg.to_lowercase()), |b| {
            b.iter(|| {
                jsonwebtoken::decode::<EntraClaims>(black_box(&token), &decoding, &validation)
                    .expect("valid")
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let fx = Fixture::new();
    tokengate_rows(c, &fx);
    cache_rows(c, &fx);
    baseline_rows(c, &fx);
}

criterion_group!(validation, benches);
criterion_main!(validation);
