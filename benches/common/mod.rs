//! What the benches share: an Entra-shaped policy with allow-lists and role rules, so every
//! measurement pays for the full check, not a toy one.

#![allow(dead_code)] // each bench uses a different part

use std::sync::Arc;

use serde_json::Value;

use tokengate::config::Config;
use tokengate::dev::{DevIssuer, DEV_AUDIENCE, DEV_CALLER_APP, DEV_CALLER_OID};
use tokengate::snapshot::{Keys, Snapshot};
use tokengate::validate::{Algorithm, KeySet};

/// The request path every authorized bench request uses; two rules cover it.
pub const PATH: &str = "/api/orders/42";

/// A whole config: `head` (sections before `[auth]`, at least `[upstream]`), the `[auth]` policy
/// with its rules, then `tail` (sections after, e.g. `[cache]`).
pub fn config_toml(issuer: &DevIssuer, head: &str, jwks_uri: &str, tail: &str) -> String {
    format!(
        r#"{head}
[auth]
jwks_uri = "{jwks_uri}"
issuers = ["{v1}", "{v2}"]
audiences = ["api://other", "{DEV_AUDIENCE}"]
algorithms = ["RS256", "ES256"]
allowed_applications = ["33333333-3333-4333-8333-333333333333", "{DEV_CALLER_APP}"]
allowed_principals = ["44444444-4444-4444-8444-444444444444", "{DEV_CALLER_OID}"]
excluded_paths = ["/public", "/healthz"]
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
[[auth.rules]]
path = "/api"
methods = ["GET", "HEAD"]
roles = ["App.Read", "App.Write"]
[[auth.rules]]
path = "/api/orders"
roles = ["Orders.Read"]
{tail}
"#,
        v1 = tokengate::dev::v1_issuer(&issuer.tenant),
        v2 = tokengate::dev::v2_issuer(&issuer.tenant),
    )
}

/// The roles bench tokens carry (enough for every rule covering [`PATH`]).
pub const ROLES: [&str; 2] = ["Orders.Read", "App.Read"];

/// An issuer, the parsed policy, and the parsed keys.
pub struct Fixture {
    pub issuer: DevIssuer,
    pub snapshot: Arc<Snapshot>,
    pub keys: Arc<KeySet>,
}

impl Fixture {
    pub fn new() -> Fixture {
        tokengate::install_crypto_providers();
        let issuer = DevIssuer::generate();
        let config = Config::from_toml(&config_toml(
            &issuer,
            "[upstream]\nurl = \"http://127.0.0.1:1\"",
            "http://127.0.0.1:1/keys",
            "",
        ))
        .expect("bench config");
        let jwks = issuer.jwks().to_string();
        let (keys, _) =
            KeySet::from_jwks(jwks.as_bytes(), &[Algorithm::Rs256, Algorithm::Es256], None)
                .expect("bench jwks");
        let keys = Arc::new(keys);
        let snapshot = Arc::new(Snapshot::new(Arc::new(config), Keys::Loaded(keys.clone())));
        Fixture {
            issuer,
            snapshot,
            keys,
        }
    }

    /// A v2 (managed-identity shaped) token, `alg` RS256 or ES256.
    pub fn token(&self, alg: &str) -> String {
        let claims: Value = self.issuer.v2_claims(&ROLES);
        match alg {
            "ES256" => self.issuer.es256(&claims),
            _ => self.issuer.rs256(&claims),
        }
    }
}
