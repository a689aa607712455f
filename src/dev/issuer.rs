//! A local issuer: real key pairs made at start (RSA-2048 and P-256) signing real JWS tokens
//! shaped like Entra ID's (v1 and v2, app-only, as managed identities get them).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

/// The tenant id the dev issuer pretends to be.
pub const DEV_TENANT: &str = "00000000-0000-4000-8000-00000000c0de";
/// The audience dev tokens are minted for.
pub const DEV_AUDIENCE: &str = "api://tokengate-dev";
/// The calling application id in dev tokens.
pub const DEV_CALLER_APP: &str = "11111111-1111-4111-8111-111111111111";
/// The calling principal's object id in dev tokens.
pub const DEV_CALLER_OID: &str = "22222222-2222-4222-8222-222222222222";

/// The v1 issuer for `tenant`.
pub fn v1_issuer(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

/// The v2 issuer for `tenant`.
pub fn v2_issuer(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

/// A signing key of the dev issuer.
pub enum SigningKey {
    /// RSA-2048.
    Rsa(RsaKeyPair),
    /// ECDSA P-256.
    Ec(EcdsaKeyPair),
}

impl SigningKey {
    /// A fresh RSA-2048 key.
    pub fn rsa() -> SigningKey {
        SigningKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"))
    }

    /// A fresh P-256 key.
    pub fn ec() -> SigningKey {
        SigningKey::Ec(
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("EC key generation"),
        )
    }

    /// The public JWK (no `alg`, like Entra's, unless `alg` is given).
    pub fn jwk(&self, kid: &str, alg: Option<&str>) -> Value {
        let mut jwk = match self {
            SigningKey::Rsa(k) => {
                let pk = k.public_key();
                json!({
                    "kty": "RSA", "use": "sig", "kid": kid,
                    "n": URL_SAFE_NO_PAD.encode(pk.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(pk.exponent().big_endian_without_leading_zero()),
                })
            }
            SigningKey::Ec(k) => {
                let point = k.public_key().as_ref();
                json!({
                    "kty": "EC", "use": "sig", "kid": kid, "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                })
            }
        };
        if let Some(a) = alg {
            jwk["alg"] = json!(a);
        }
        jwk
    }

    /// The public key as PEM SubjectPublicKeyInfo (for HAProxy's `jwt_verify` in the benches).
    pub fn public_pem(&self) -> String {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        let der: PublicKeyX509Der<'static> = match self {
            SigningKey::Rsa(k) => k.public_key().as_der().expect("DER"),
            SigningKey::Ec(k) => k.public_key().as_der().expect("DER"),
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Signs `header.payload` with `alg` (`RS256`, `RS384`, `RS512`, `PS256` for RSA; `ES256`).
    pub fn sign(&self, alg: &str, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            SigningKey::Rsa(k) => {
                let enc: &'static dyn signature::RsaEncoding = match alg {
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(enc, &rng, input.as_bytes(), &mut sig)
                    .expect("RSA sign");
                sig
            }
            SigningKey::Ec(k) => k
                .sign(&rng, input.as_bytes())
                .expect("EC sign")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// A local issuer with one RSA and one EC key.
pub struct DevIssuer {
    /// Tenant id used in issuers.
    pub tenant: String,
    /// RSA key, published as `rsa-1`.
    pub rsa: SigningKey,
    /// EC key, published as `ec-1`.
    pub ec: SigningKey,
}

impl DevIssuer {
    /// Makes fresh keys.
    pub fn generate() -> DevIssuer {
        DevIssuer {
            tenant: DEV_TENANT.into(),
            rsa: SigningKey::rsa(),
            ec: SigningKey::ec(),
        }
    }

    /// The JWKS with both keys.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.rsa.jwk("rsa-1", None), self.ec.jwk("ec-1", None)] })
    }

    /// Claims of a v2 app-only token (what a managed identity gets), valid for an hour.
    pub fn v2_claims(&self, roles: &[&str]) -> Value {
        let now = crate::pipeline::unix_now();
        json!({
            "aud": DEV_AUDIENCE,
            "iss": v2_issuer(&self.tenant),
            "iat": now, "nbf": now, "exp": now + 3600,
            "azp": DEV_CALLER_APP,
            "azpacr": "2",
            "oid": DEV_CALLER_OID,
            "sub": DEV_CALLER_OID,
            "tid": self.tenant,
            "roles": roles,
            "ver": "2.0",
        })
    }

    /// Claims of a v1 app-only token.
    pub fn v1_claims(&self, roles: &[&str]) -> Value {
        let now = crate::pipeline::unix_now();
        json!({
            "aud": DEV_AUDIENCE,
            "iss": v1_issuer(&self.tenant),
            "iat": now, "nbf": now, "exp": now + 3600,
            "appid": DEV_CALLER_APP,
            "appidacr": "2",
            "idp": v1_issuer(&self.tenant),
            "oid": DEV_CALLER_OID,
            "sub": DEV_CALLER_OID,
            "tid": self.tenant,
            "roles": roles,
            "ver": "1.0",
        })
    }

    /// An RS256 token over `claims`, signed with `rsa-1`.
    pub fn rs256(&self, claims: &Value) -> String {
        self.rsa.sign(
            "RS256",
            &json!({"alg":"RS256","typ":"JWT","kid":"rsa-1"}),
            claims,
        )
    }

    /// An ES256 token over `claims`, signed with `ec-1`.
    pub fn es256(&self, claims: &Value) -> String {
        self.ec.sign(
            "ES256",
            &json!({"alg":"ES256","typ":"JWT","kid":"ec-1"}),
            claims,
        )
    }
}
