//! The one test fixture ([`Fixture`]) and an offline [`Proxy`]: what tests and benches share to
//! exercise the real validation, cache and pipeline without the network.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::Value;

use crate::callee::forward::Upstream;
use crate::callee::pipeline::Proxy;
use crate::callee::reject::Rejection;
use crate::callee::validate::cache::{CachedIdentity, TokenCache};
use crate::callee::validate::fetch::KeyFetcher;
use crate::callee::validate::{validate, Algorithm, KeySet, Verified};
use crate::config::UpstreamPool;
use crate::metrics::Metrics;
use crate::snapshot::{SigningKeys, Snapshot};

use super::{DevIssuer, PolicyToml};

/// A [`Proxy`] over `snapshot` with a cache of `cache_entries` entries (32 MiB at most) and no
/// key-fetching task: an unknown `kid` waits `keys.unknown_kid_wait` in vain and is refused.
pub fn offline_proxy(
    snapshot: Arc<Snapshot>,
    cache_entries: usize,
    metrics: Arc<Metrics>,
) -> Proxy {
    let pool = UpstreamPool {
        connect_timeout: Duration::from_secs(5),
        pool_idle_timeout: Duration::from_secs(90),
        max_connections: 256,
    };
    let upstream = Upstream::new(&pool, &[], 1);
    let cell = Arc::new(ArcSwap::new(snapshot));
    let key_fetcher = Arc::new(KeyFetcher::new(cell.clone(), metrics.clone(), &[]));
    Proxy::new(
        cell,
        TokenCache::new(cache_entries, 32 << 20),
        metrics,
        key_fetcher,
        upstream,
    )
}

/// The request path every authorized fixture request uses; two reference-policy rules cover it.
pub const PATH: &str = "/api/orders/42";

/// The roles fixture tokens carry (enough for every reference rule covering [`PATH`]).
pub const ROLES: [&str; 2] = ["Orders.Read", "App.Read"];

/// The one test fixture: an issuer, a snapshot of a policy for it with its keys loaded, and the
/// parsed keys. Used by the allocation proof, the cache tests and the benches, so what is
/// measured is what is proved.
pub struct Fixture {
    /// The issuer signing the tokens.
    pub issuer: DevIssuer,
    /// The policy and the issuer's keys.
    pub snapshot: Arc<Snapshot>,
    /// The issuer's keys, parsed as the proxy parses them.
    pub keys: Arc<KeySet>,
}

impl Fixture {
    /// The reference policy ([`PolicyToml::reference`]): allow-lists and three role rules.
    pub fn new() -> Fixture {
        Fixture::with_policy(PolicyToml::reference)
    }

    /// The policy `policy` builds for the fixture's issuer.
    pub fn with_policy(policy: impl FnOnce(&DevIssuer) -> PolicyToml) -> Fixture {
        crate::install_crypto_providers();
        let issuer = DevIssuer::generate();
        let config = policy(&issuer).config();
        let jwks = issuer.jwks().to_string();
        let (keys, skipped) =
            KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::Rs256, Algorithm::Es256], None)
                .expect("the dev JWKS");
        assert_eq!(skipped, 0, "every dev key is usable");
        let keys = Arc::new(keys);
        let snapshot = Arc::new(Snapshot::new(
            Arc::new(config.policy),
            SigningKeys::Loaded(keys.clone()),
        ));
        Fixture {
            issuer,
            snapshot,
            keys,
        }
    }

    /// A token carrying [`ROLES`], `alg` RS256 or ES256, Entra `version` 1 or 2; `n` makes it
    /// distinct from every other (its `uti`).
    pub fn token(&self, alg: &str, version: u8, n: u64) -> String {
        let mut claims: Value = match version {
            1 => self.issuer.v1_claims(&ROLES),
            _ => self.issuer.v2_claims(&ROLES),
        };
        claims["uti"] = Value::from(format!("fixture-{n}"));
        match alg {
            "ES256" => self.issuer.es256(&claims),
            _ => self.issuer.rs256(&claims),
        }
    }

    /// A distinct ES256 v2 token (cheap to sign) with role `App.Read`, expiring at `exp`.
    pub fn token_expiring(&self, n: u64, exp: u64) -> String {
        let mut claims = self.issuer.v2_claims(&["App.Read"]);
        claims["exp"] = Value::from(exp);
        claims["uti"] = Value::from(format!("fixture-{n}"));
        self.issuer.es256(&claims)
    }

    /// Validates `token` at `now` as the pipeline does on a cache miss: the fixture's policy and
    /// keys, the payload decoded into `scratch`.
    pub fn verify<'s>(
        &self,
        token: &'s str,
        now: u64,
        scratch: &'s mut Vec<u8>,
    ) -> Result<Verified<'s>, Rejection> {
        validate(token, &self.snapshot.validation(), &self.keys, now, scratch)
    }

    /// The cache entry a successful validation of `token` at `now` makes (policy generation 0).
    pub fn entry(&self, token: &str, now: u64) -> Arc<CachedIdentity> {
        let mut scratch = Vec::new();
        let verified = self.verify(token, now, &mut scratch).expect("valid token");
        Arc::new(CachedIdentity::new(token, &verified, 0).expect("entry"))
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}
