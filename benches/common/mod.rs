//! What the benches share: an Entra-shaped policy with allow-lists and role rules, so every
//! measurement pays for the full check, not a toy one.

#![allow(dead_code)] // each bench uses a different part

use std::sync::Arc;

use serde_json::Value;

use tokengate::config::Config;
use tokengate::dev::DevIssuer;
use tokengate::snapshot::{SigningKeys, Snapshot};
use tokengate::validate::{Algorithm, KeySet};

/// The request path every authorized bench request uses; two rules cover it.
pub const PATH: &str = "/api/orders/42";

/// A whole config: `head` (sections before `[auth]`, at least `[upstream]`), the shared
/// reference policy, then `tail` (sections after, e.g. `[cache]`).
pub use tokengate::dev::reference_policy_toml as config_toml;

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

    /// A v2 (managed-identity shaped) token, `alg` RS256 or ES256.
    pub fn token(&self, alg: &str) -> String {
        let claims: Value = self.issuer.v2_claims(&ROLES);
        match alg {
            "ES256" => self.issuer.es256(&claims),
            _ => self.issuer.rs256(&claims),
        }
    }
}
