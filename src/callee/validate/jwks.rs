//! A JWKS turned into verification keys, each parsed once and pinned to its algorithms.
//!
//! # Contract
//! - A key is usable only with algorithms that fit its type and curve (RSA → RS*/PS*, P-256 →
//!   ES256, P-384 → ES384), narrowed to the JWK's `alg` when it names one, and to
//!   `auth.algorithms`. `DecodingKey::from_jwk` ignores `alg`, `use` and the curve; we do not.
//! - Keys marked `use` other than `sig`, or `key_ops` without `verify`, are skipped; so are keys
//!   without a `kid` (we only ever select by `kid`), symmetric keys, and keys that fail to parse.
//!   One bad key never discards the good ones; a set with no usable key is an error, so a garbage
//!   answer from the IdP never replaces good keys.
//! - A key the JWKS gives an `issuer` (Entra does) is pinned: to one tenant when that issuer
//!   names one (the GUID path segment), so it verifies only that tenant's tokens; to nothing when
//!   it is a `{tenantid}` template (any tenant `auth.tenants` allows); to the exact issuer when it
//!   names no tenant. `validate` enforces the pin after the signature.
//! - A key whose material is unchanged across a refresh keeps its identity (`Arc`), so the
//!   verified-token cache survives routine refreshes and drops entries only for keys that left.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};

use super::Algorithm;

/// The keys currently trusted, by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<Box<str>, Arc<KeyEntry>>,
}

impl KeySet {
    /// The key with this `kid`, if any.
    pub fn get(&self, kid: &str) -> Option<&Arc<KeyEntry>> {
        self.keys.get(kid)
    }

    /// Whether `entry` (by identity) is still in this set.
    pub fn contains(&self, entry: &Arc<KeyEntry>) -> bool {
        self.keys
            .get(&*entry.kid)
            .is_some_and(|k| Arc::ptr_eq(k, entry))
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, sorted by `kid` (for `tokengate explain`).
    pub fn entries(&self) -> Vec<&Arc<KeyEntry>> {
        let mut v: Vec<&Arc<KeyEntry>> = self.keys.values().collect();
        v.sort_unstable_by(|a, b| a.kid.cmp(&b.kid));
        v
    }

    /// The `kid`s, sorted, for logs.
    pub fn kids(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.keys.keys().map(|k| &**k).collect();
        v.sort_unstable();
        v
    }

    /// Parses a JWKS document. `allowed` narrows every key's algorithms; `previous` lends its
    /// entries to keys whose material did not change. Returns the set and how many keys were
    /// skipped as unusable.
    pub fn from_jwks(
        json: &[u8],
        allowed: &[Algorithm],
        previous: Option<&KeySet>,
    ) -> Result<(KeySet, usize), JwksError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(json).map_err(|e| JwksError(e.to_string()))?;
        let mut keys = HashMap::new();
        // A `kid` seen more than once names no key: every copy is untrusted, however many follow.
        let mut ambiguous: HashSet<Box<str>> = HashSet::new();
        let mut skipped = 0;
        for value in doc.keys {
            let Some(entry) = KeyEntry::from_value(value, allowed) else {
                skipped += 1;
                continue;
            };
            if ambiguous.contains(&entry.kid) {
                skipped += 1;
                continue;
            }
            if keys.remove(&entry.kid).is_some() {
                ambiguous.insert(entry.kid.clone());
                skipped += 2;
                continue;
            }
            let entry = match previous.and_then(|p| p.keys.get(&entry.kid)) {
                Some(old)
                    if old.material == entry.material
                        && old.algs() == entry.algs()
                        && old.pin == entry.pin =>
                {
                    old.clone()
                }
                _ => Arc::new(entry),
            };
            keys.insert(entry.kid.clone(), entry);
        }
        if keys.is_empty() {
            return Err(JwksError(format!(
                "no usable signing key in JWKS ({skipped} skipped)"
            )));
        }
        Ok((KeySet { keys }, skipped))
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids())
            .finish()
    }
}

/// A JWKS that could not be used.
#[derive(Debug)]
pub struct JwksError(pub String);

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JwksError {}

/// One trusted public key with a pre-parsed verifier per algorithm it may be used with.
pub struct KeyEntry {
    kid: Box<str>,
    /// The public numbers (n‖e or x‖y), to recognise the same key across refreshes.
    material: Vec<u8>,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
    pin: KeyPin,
}

/// Which tokens a key may verify, from the JWK's `issuer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPin {
    /// No `issuer`, or a `{tenantid}` template: any token the policy accepts.
    Any,
    /// Only tokens whose `tid` is this tenant.
    Tenant(Box<str>),
    /// Only tokens whose `iss` is exactly this (an issuer naming no tenant).
    Issuer(Box<str>),
}

impl KeyPin {
    fn from_issuer(issuer: Option<&str>) -> KeyPin {
        let Some(iss) = issuer else {
            return KeyPin::Any;
        };
        if iss.contains(crate::config::TENANT_PLACEHOLDER) {
            return KeyPin::Any;
        }
        match iss.split('/').find(|s| crate::config::is_guid(s)) {
            Some(t) => KeyPin::Tenant(t.to_ascii_lowercase().into()),
            None => KeyPin::Issuer(iss.into()),
        }
    }

    /// Whether a token with `iss` and `tid` may be verified by a key with this pin.
    pub fn admits(&self, iss: &str, tid: Option<&str>) -> bool {
        match self {
            KeyPin::Any => true,
            KeyPin::Tenant(t) => tid.is_some_and(|x| x.eq_ignore_ascii_case(t)),
            KeyPin::Issuer(i) => **i == *iss,
        }
    }
}

impl KeyEntry {
    /// The verifier for `alg`, if this key is pinned to it.
    pub fn verifier(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, k)| k)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Which tokens this key may verify.
    pub fn pin(&self) -> &KeyPin {
        &self.pin
    }

    /// The algorithms this key is pinned to.
    pub fn algs(&self) -> Vec<Algorithm> {
        self.verifiers.iter().map(|(a, _)| *a).collect()
    }

    fn from_value(value: serde_json::Value, allowed: &[Algorithm]) -> Option<KeyEntry> {
        let pin = match value.get("issuer") {
            None => KeyPin::Any,
            Some(serde_json::Value::String(s)) => KeyPin::from_issuer(Some(s)),
            // An issuer we cannot read cannot be honoured: the key is unusable, not unpinned.
            Some(_) => return None,
        };
        let jwk: Jwk = serde_json::from_value(value).ok()?;
        let kid: Box<str> = jwk.common.key_id.clone()?.into();
        if kid.is_empty() {
            return None;
        }
        if let Some(u) = &jwk.common.public_key_use {
            if *u != PublicKeyUse::Signature {
                return None;
            }
        }
        if let Some(ops) = &jwk.common.key_operations {
            let verify = ops
                .iter()
                .any(|o| matches!(o, jsonwebtoken::jwk::KeyOperations::Verify));
            if !verify {
                return None;
            }
        }
        let declared = match jwk.common.key_algorithm {
            None => None,
            Some(a) => Some(jwk_algorithm(a)?),
        };
        let (material, candidates): (Vec<u8>, Vec<Algorithm>) = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => {
                let n = URL_SAFE_NO_PAD.decode(&rsa.n).ok()?;
                let e = URL_SAFE_NO_PAD.decode(&rsa.e).ok()?;
                let mut m = n.clone();
                m.extend_from_slice(&e);
                let algs: Vec<Algorithm> =
                    Algorithm::ALL.into_iter().filter(|a| a.is_rsa()).collect();
                let verifiers = pinned(&algs, declared, allowed)
                    .into_iter()
                    .map(|alg| {
                        let params = rsa_params(alg)?;
                        let c = RsaPublicKeyComponents { n: &n, e: &e };
                        c.to_parsed_public_key(params).ok().map(|k| (alg, k))
                    })
                    .collect::<Option<Vec<_>>>()?;
                return finish(kid, m, verifiers, pin);
            }
            AlgorithmParameters::EllipticCurve(ec) => {
                let alg = match ec.curve {
                    EllipticCurve::P256 => Algorithm::Es256,
                    EllipticCurve::P384 => Algorithm::Es384,
                    _ => return None,
                };
                let x = URL_SAFE_NO_PAD.decode(&ec.x).ok()?;
                let y = URL_SAFE_NO_PAD.decode(&ec.y).ok()?;
                let width = if alg == Algorithm::Es256 { 32 } else { 48 };
                if x.len() != width || y.len() != width {
                    return None;
                }
                let mut point = Vec::with_capacity(1 + 2 * width);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (point, vec![alg])
            }
            _ => return None,
        };
        let verifiers = pinned(&candidates, declared, allowed)
            .into_iter()
            .map(|alg| {
                ParsedPublicKey::new(alg.verification(), &material)
                    .ok()
                    .map(|k| (alg, k))
            })
            .collect::<Option<Vec<_>>>()?;
        finish(kid, material, verifiers, pin)
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("algs", &self.algs())
            .field("pin", &self.pin)
            .finish()
    }
}

fn finish(
    kid: Box<str>,
    material: Vec<u8>,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
    pin: KeyPin,
) -> Option<KeyEntry> {
    if verifiers.is_empty() {
        return None;
    }
    Some(KeyEntry {
        kid,
        material,
        verifiers,
        pin,
    })
}

/// The algorithms a key may verify: fitting its type, its declared `alg`, and the config.
fn pinned(
    fits: &[Algorithm],
    declared: Option<Algorithm>,
    allowed: &[Algorithm],
) -> Vec<Algorithm> {
    fits.iter()
        .copied()
        .filter(|a| declared.is_none_or(|d| d == *a))
        .filter(|a| allowed.contains(a))
        .collect()
}

fn rsa_params(alg: Algorithm) -> Option<&'static aws_lc_rs::signature::RsaParameters> {
    use aws_lc_rs::signature as s;
    Some(match alg {
        Algorithm::Rs256 => &s::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::Rs384 => &s::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::Rs512 => &s::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::Ps256 => &s::RSA_PSS_2048_8192_SHA256,
        _ => return None,
    })
}

/// A JWK `alg` we can pin to; anything else (HS*, RSA-OAEP, EdDSA, …) makes the key unusable.
fn jwk_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::Rs256,
        KeyAlgorithm::RS384 => Algorithm::Rs384,
        KeyAlgorithm::RS512 => Algorithm::Rs512,
        KeyAlgorithm::PS256 => Algorithm::Ps256,
        KeyAlgorithm::ES256 => Algorithm::Es256,
        KeyAlgorithm::ES384 => Algorithm::Es384,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::dev::SigningKey;

    const ALL: &[Algorithm] = &Algorithm::ALL;

    fn set(keys: serde_json::Value) -> Result<(KeySet, usize), JwksError> {
        KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes(), ALL, None)
    }

    #[test]
    fn keys_are_pinned_to_their_type_declared_alg_and_config() {
        let rsa = SigningKey::rsa();
        let ec = SigningKey::ec();
        let (ks, skipped) = set(json!([
            rsa.jwk("r", None),
            rsa.jwk("r256", Some("RS256")),
            ec.jwk("e", None)
        ]))
        .unwrap();
        assert_eq!(skipped, 0);
        let r = ks.get("r").unwrap();
        for alg in [
            Algorithm::Rs256,
            Algorithm::Rs384,
            Algorithm::Rs512,
            Algorithm::Ps256,
        ] {
            assert!(r.verifier(alg).is_some(), "{alg}");
        }
        assert!(r.verifier(Algorithm::Es256).is_none());
        let pinned = ks.get("r256").unwrap();
        assert!(pinned.verifier(Algorithm::Rs256).is_some());
        assert!(
            pinned.verifier(Algorithm::Rs384).is_none(),
            "JWK alg ignored"
        );
        let e = ks.get("e").unwrap();
        assert!(e.verifier(Algorithm::Es256).is_some());
        assert!(e.verifier(Algorithm::Es384).is_none() && e.verifier(Algorithm::Rs256).is_none());
        // The config narrows further.
        let doc = json!({ "keys": [rsa.jwk("r", None)] }).to_string();
        let (only, _) = KeySet::from_jwks(doc.as_bytes(), &[Algorithm::Rs256], None).unwrap();
        assert!(only.get("r").unwrap().verifier(Algorithm::Ps256).is_none());
    }

    #[test]
    fn unusable_keys_are_skipped_and_ambiguous_kids_dropped() {
        let rsa = SigningKey::rsa();
        let mut enc = rsa.jwk("enc", None);
        enc["use"] = json!("enc");
        let mut ops = rsa.jwk("ops", None);
        ops["key_ops"] = json!(["encrypt"]);
        let mut hs = rsa.jwk("hs", None);
        hs["alg"] = json!("HS256");
        let mut no_kid = rsa.jwk("x", None);
        no_kid.as_object_mut().unwrap().remove("kid");
        let other = SigningKey::rsa();
        let (ks, skipped) = set(json!([
            enc,
            ops,
            hs,
            no_kid,
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            rsa.jwk("dup", None),
            other.jwk("dup", None),
            rsa.jwk("good", None),
        ]))
        .unwrap();
        assert_eq!(ks.kids(), vec!["good"]);
        assert_eq!(skipped, 7);
        assert!(set(json!([{"kty": "RSA", "kid": "bad", "n": "!!", "e": "AQAB"}])).is_err());
        assert!(KeySet::from_jwks(b"<html>", ALL, None).is_err());
        assert!(KeySet::from_jwks(b"{\"keys\": 1}", ALL, None).is_err());
    }

    #[test]
    fn a_kid_named_any_number_of_times_trusts_no_copy() {
        // Issue 9: with three copies the third was trusted (the second removed the first, the
        // third found the slot empty).
        let good = SigningKey::rsa();
        for copies in 2..=5 {
            let mut keys = vec![good.jwk("good", None)];
            keys.extend((0..copies).map(|_| SigningKey::rsa().jwk("dup", None)));
            let (ks, skipped) = set(serde_json::Value::Array(keys)).unwrap();
            assert_eq!(ks.kids(), vec!["good"], "{copies} copies");
            assert_eq!(skipped, copies, "{copies} copies");
        }
    }

    #[test]
    fn jwk_issuer_pins_a_key_to_its_tenant() {
        let rsa = SigningKey::rsa();
        let t = "11111111-2222-4333-8444-555555555555";
        let mut tenant = rsa.jwk("t", None);
        tenant["issuer"] = json!(format!("https://login.microsoftonline.com/{t}/v2.0"));
        let mut template = rsa.jwk("any", None);
        template["issuer"] = json!("https://login.microsoftonline.com/{tenantid}/v2.0");
        let mut plain = rsa.jwk("plain", None);
        plain["issuer"] = json!("https://idp.example");
        let mut bad = rsa.jwk("bad", None);
        bad["issuer"] = json!(7);
        let (ks, skipped) = set(json!([tenant, template, plain, bad])).unwrap();
        assert_eq!(skipped, 1, "a non-string issuer makes the key unusable");
        let v1 = format!("https://sts.windows.net/{t}/");
        assert!(
            ks.get("t").unwrap().pin().admits(&v1, Some(t)),
            "v1 token, same tenant"
        );
        assert!(!ks.get("t").unwrap().pin().admits(&v1, Some("other")));
        assert!(!ks.get("t").unwrap().pin().admits(&v1, None));
        assert!(ks.get("any").unwrap().pin().admits("x", Some("y")));
        assert!(ks
            .get("plain")
            .unwrap()
            .pin()
            .admits("https://idp.example", None));
        assert!(!ks
            .get("plain")
            .unwrap()
            .pin()
            .admits("https://idp.example/", None));
    }

    #[test]
    fn unchanged_keys_keep_their_identity_across_refreshes() {
        let rsa = SigningKey::rsa();
        let doc = json!({ "keys": [rsa.jwk("r", None)] }).to_string();
        let (first, _) = KeySet::from_jwks(doc.as_bytes(), ALL, None).unwrap();
        let (second, _) = KeySet::from_jwks(doc.as_bytes(), ALL, Some(&first)).unwrap();
        assert!(second.contains(first.get("r").unwrap()));
        let replaced = json!({ "keys": [SigningKey::rsa().jwk("r", None)] }).to_string();
        let (third, _) = KeySet::from_jwks(replaced.as_bytes(), ALL, Some(&second)).unwrap();
        assert!(
            !third.contains(second.get("r").unwrap()),
            "new material under an old kid"
        );
    }
}
