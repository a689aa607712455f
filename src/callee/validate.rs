//! Access-token validation: JWS compact parse, key by `kid`, signature, claims.
//!
//! # Contract
//! A token is accepted only if all of these hold, checked in this order:
//! 1. it is at most `auth.max_token_size` bytes (checked by `extract`, before any decoding);
//! 2. it is exactly `header.payload.signature`, each part non-empty strict base64url (no padding,
//!    no stray bits), header and payload JSON objects with no duplicate or trailing data;
//! 3. the header's `alg` is in `auth.algorithms` (never `none` or HMAC: they cannot be configured),
//!    it carries no `crit`, and a `kid` that names a key in the JWKS (no `jku`, `x5u` or embedded
//!    `jwk` is ever read), and that key is pinned to this `alg`;
//! 4. the signature verifies with that key;
//! 5. `exp` is a number and not in the past, `nbf` (if present) a number and not in the future,
//!    both with `auth.clock_skew`; the token lives no longer than `auth.max_token_lifetime`:
//!    `exp - iat` (when `iat`, a number, is present) and `exp - now` (always, plus the skew, so an
//!    absent or future `iat` cannot stretch it) are both within it; `iss` is a string exactly equal to a configured issuer, or to
//!    a `{tenantid}` template with the token's `tid` (which must then be a GUID) in its place;
//!    the key's JWKS `issuer` pin admits this token's tenant; `aud` (string or array) holds an
//!    audience some route accepts (which route accepts which is `authorize`'s business);
//!    `appid` and `azp` do not disagree.
//!
//! Nothing here allocates for a token without JSON string escapes (every Entra token): parts are
//! decoded into stack buffers or the caller's reused scratch buffer, JSON is read with borrowed
//! strings, and keys were parsed once when the JWKS was loaded. `tests/alloc.rs` proves it.
//!
//! Why this file is long: the allocation-free JWS and claims parser is one contract, and its
//! tests sit with it.

pub mod cache;
pub mod fetch;
pub mod jwks;

use std::borrow::Cow;
use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, VerificationAlgorithm};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::issuer_matches;
use crate::reject::Rejection;
pub use jwks::{KeyEntry, KeyPin, KeySet};

/// Largest decoded JWS header we accept; Entra's are under 300 bytes.
const MAX_HEADER: usize = 2048;
/// Largest signature: RSA-8192.
const MAX_SIGNATURE: usize = 1024;

/// A JWS algorithm we can verify. `none` and HMAC are deliberately unrepresentable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (what Entra ID signs with).
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Es256,
        Algorithm::Es384,
    ];

    /// Parses a JOSE `alg` name (case-sensitive, as RFC 7518 defines them).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JOSE name.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
        }
    }

    /// Whether this is an RSA algorithm (usable with a `kty: RSA` key).
    pub const fn is_rsa(self) -> bool {
        matches!(
            self,
            Algorithm::Rs256 | Algorithm::Rs384 | Algorithm::Rs512 | Algorithm::Ps256
        )
    }

    /// The hash the signature is over.
    pub(crate) fn digest(self) -> &'static digest::Algorithm {
        match self {
            Algorithm::Rs256 | Algorithm::Ps256 | Algorithm::Es256 => &digest::SHA256,
            Algorithm::Rs384 | Algorithm::Es384 => &digest::SHA384,
            Algorithm::Rs512 => &digest::SHA512,
        }
    }

    /// aws-lc-rs parameters; ECDSA uses the fixed-width `r || s` form JWS specifies.
    pub(crate) fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parts of the auth policy validation needs, borrowed from the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct ValidationPolicy<'p> {
    /// Accepted `iss` values and `{tenantid}` templates.
    pub issuers: &'p [String],
    /// Every `aud` value some route accepts.
    pub audiences: &'p [String],
    /// Accepted algorithms.
    pub algorithms: &'p [Algorithm],
    /// Skew in whole seconds.
    pub clock_skew_secs: u64,
    /// `auth.max_token_lifetime` in whole seconds.
    pub max_lifetime_secs: u64,
}

/// A token that passed every check, with borrowed views into its verified payload.
pub struct Verified<'s> {
    /// The verified claims.
    pub claims: Claims<'s>,
    /// The decoded, verified payload JSON, for building the upstream identity headers.
    pub payload: &'s [u8],
    /// The key that verified it (the cache drops the entry when this key leaves the JWKS).
    pub key: std::sync::Arc<KeyEntry>,
    /// `exp`, in whole seconds since the epoch.
    pub expires_at: u64,
}

/// The claims we check or authorize on. Strings borrow from the payload unless JSON-escaped.
#[derive(Deserialize)]
pub struct Claims<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    iss: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    aud: Option<&'a RawValue>,
    #[serde(borrow, default)]
    exp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    nbf: Option<&'a RawValue>,
    #[serde(borrow, default)]
    iat: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    appid: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    azp: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    oid: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    tid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    roles: Option<&'a RawValue>,
}

impl<'a> Claims<'a> {
    /// The calling application: `appid` (v1) or `azp` (v2). Validation has already refused
    /// tokens where both are present and differ.
    pub fn application(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }

    /// The caller's object id.
    pub fn object_id(&self) -> Option<&str> {
        self.oid.as_deref()
    }

    /// The caller's tenant (`tid`).
    pub fn tenant_id(&self) -> Option<&str> {
        self.tid.as_deref()
    }

    /// The `iss` claim (validation proved it is a string).
    pub fn issuer(&self) -> Option<&str> {
        self.iss.as_deref()
    }

    /// The raw `aud` claim, already proven to be a string or an array of strings.
    pub(crate) fn audiences_raw(&self) -> Option<&RawValue> {
        self.aud
    }

    /// Whether `aud` (string or array) holds any of `wanted`.
    pub fn has_any_audience(&self, wanted: &[String]) -> bool {
        match self.aud {
            None => false,
            Some(raw) => any_string(raw, |a| wanted.iter().any(|w| w == a)).unwrap_or(false),
        }
    }

    /// The raw `roles` claim, already proven to be a string or an array of strings.
    pub(crate) fn roles_raw(&self) -> Option<&RawValue> {
        self.roles
    }

    /// Whether the `roles` claim (string or array) holds any of `wanted`.
    pub fn has_any_role(&self, wanted: &[String]) -> bool {
        match self.roles {
            None => false,
            Some(raw) => any_string(raw, |r| wanted.iter().any(|w| w == r)).unwrap_or(false),
        }
    }
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "borrowed_str")]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// An optional string that borrows from the input unless it has JSON escapes. serde's derive
/// borrows a `Cow<'a, str>` only when it is the field's whole type; inside an `Option` it always
/// copies (serde-rs/serde#2016, closed as won't fix), which cost four allocations per token.
fn borrowed_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

/// Validates `token` against `policy` and `keys` at time `now` (seconds since the epoch).
///
/// `scratch` receives the decoded payload; pass the same buffer every time and its capacity is
/// reused, so steady state allocates nothing.
pub fn validate<'s>(
    token: &'s str,
    policy: &ValidationPolicy<'_>,
    keys: &KeySet,
    now: u64,
    scratch: &'s mut Vec<u8>,
) -> Result<Verified<'s>, Rejection> {
    let (signing_input, signature_b64) = token.rsplit_once('.').ok_or(Rejection::MalformedToken)?;
    let (header_b64, payload_b64) = signing_input
        .split_once('.')
        .ok_or(Rejection::MalformedToken)?;
    if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
        return Err(Rejection::MalformedToken);
    }

    // Header: which key, which algorithm.
    let mut header_buf = [0u8; MAX_HEADER];
    let header_json = decode_part(header_b64, &mut header_buf)?;
    let header: Header<'_> = parse_object(header_json)?;
    let alg = Algorithm::from_name(&header.alg)
        .filter(|a| policy.algorithms.contains(a))
        .ok_or(Rejection::AlgorithmNotAllowed)?;
    if header.crit.is_some() {
        return Err(Rejection::UnsupportedCritical);
    }
    let kid = header.kid.ok_or(Rejection::MissingKeyId)?;
    let key = keys.get(&kid).ok_or(Rejection::UnknownKeyId)?;
    let verifier = key.verifier(alg).ok_or(Rejection::KeyAlgorithmMismatch)?;

    // Signature over the exact bytes received, before anything in the payload is trusted. The
    // hash is taken here (aws-lc's one-shot digest allocates nothing) and the signature checked
    // over it: the same check as `verify_sig`, without the four mallocs its EVP_DigestVerify
    // context costs per token. aws-lc-rs refuses a digest of another hash than the key's.
    let mut sig_buf = [0u8; MAX_SIGNATURE];
    let sig = decode_part(signature_b64, &mut sig_buf)?;
    let digest = digest::digest(alg.digest(), signing_input.as_bytes());
    verifier
        .verify_digest_sig(&digest, sig)
        .map_err(|_| Rejection::InvalidSignature)?;

    // Payload into the caller's scratch buffer.
    let needed = base64_decoded_capacity(payload_b64.len());
    scratch.clear();
    scratch.resize(needed, 0);
    let len = URL_SAFE_NO_PAD
        .decode_slice(payload_b64.as_bytes(), scratch.as_mut_slice())
        .map_err(|_| Rejection::MalformedToken)?;
    scratch.truncate(len);
    let payload: &'s [u8] = {
        let shared: &'s Vec<u8> = scratch;
        shared.as_slice()
    };
    let claims: Claims<'s> = parse_object(payload)?;

    let expires_at = check_times(&claims, now, policy)?;
    let tid = claims.tid.as_deref();
    let iss = match claims.iss.as_deref() {
        Some(iss) if policy.issuers.iter().any(|i| issuer_matches(i, iss, tid)) => iss,
        _ => return Err(Rejection::InvalidIssuer),
    };
    if !key.pin().admits(iss, tid) {
        return Err(Rejection::KeyIssuerMismatch);
    }
    let aud_ok = claims
        .aud
        .map(|raw| any_string(raw, |a| policy.audiences.iter().any(|x| x == a)))
        .transpose()
        .map_err(|_| Rejection::MalformedToken)?
        .unwrap_or(false);
    if !aud_ok {
        return Err(Rejection::InvalidAudience);
    }
    if let (Some(a), Some(b)) = (&claims.appid, &claims.azp) {
        if a != b {
            return Err(Rejection::AmbiguousApplication);
        }
    }
    if let Some(raw) = claims.roles {
        // A `roles` that is neither a string nor an array of strings is not something we can
        // authorize on; refusing beats silently treating it as "no roles".
        any_string(raw, |_| false).map_err(|_| Rejection::MalformedToken)?;
    }
    Ok(Verified {
        claims,
        payload,
        key: key.clone(),
        expires_at,
    })
}

/// Checks `exp`, `nbf` and the lifetime bound, and returns `exp` in whole seconds.
fn check_times(
    claims: &Claims<'_>,
    now: u64,
    policy: &ValidationPolicy<'_>,
) -> Result<u64, Rejection> {
    let skew = policy.clock_skew_secs;
    let exp = claims
        .exp
        .and_then(numeric)
        .ok_or(Rejection::MissingExpiry)?;
    let now_f = now as f64;
    let skew_f = skew as f64;
    if now_f > exp + skew_f {
        return Err(Rejection::Expired);
    }
    if let Some(raw) = claims.nbf {
        let nbf = numeric(raw).ok_or(Rejection::MalformedToken)?;
        if now_f + skew_f < nbf {
            return Err(Rejection::NotYetValid);
        }
    }
    let max_f = policy.max_lifetime_secs as f64;
    if exp - now_f > max_f + skew_f {
        return Err(Rejection::TokenLifetimeTooLong);
    }
    if let Some(raw) = claims.iat {
        let iat = numeric(raw).ok_or(Rejection::MalformedToken)?;
        if exp - iat > max_f {
            return Err(Rejection::TokenLifetimeTooLong);
        }
    }
    // Saturating float-to-int: huge values clamp to u64::MAX, negatives to 0.
    Ok(exp as u64)
}

/// A JSON number as `f64`; anything else (string, bool, …) is `None`.
fn numeric(raw: &RawValue) -> Option<f64> {
    let text = raw.get();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    serde_json::from_str::<f64>(text)
        .ok()
        .filter(|v| v.is_finite())
}

/// Strict base64url into `buf`: refuses padding, non-alphabet bytes and non-zero trailing bits.
fn decode_part<'b>(b64: &str, buf: &'b mut [u8]) -> Result<&'b [u8], Rejection> {
    if base64_decoded_capacity(b64.len()) > buf.len() {
        return Err(Rejection::MalformedToken);
    }
    let n = URL_SAFE_NO_PAD
        .decode_slice(b64.as_bytes(), buf)
        .map_err(|_| Rejection::MalformedToken)?;
    Ok(&buf[..n])
}

fn base64_decoded_capacity(encoded_len: usize) -> usize {
    encoded_len.div_ceil(4) * 3
}

/// Deserializes a JSON object (not an array serde could also map onto a struct).
fn parse_object<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T, Rejection> {
    if json.first() != Some(&b'{') {
        return Err(Rejection::MalformedToken);
    }
    serde_json::from_slice(json).map_err(|_| Rejection::MalformedToken)
}

/// Calls `pred` on a JSON string, or on each string of a JSON array, without allocating, and
/// tells whether it ever returned true. Anything other than strings is an error.
pub(crate) fn any_string(raw: &RawValue, pred: impl FnMut(&str) -> bool) -> Result<bool, ()> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let found = de.deserialize_any(AnyString(pred)).map_err(|_| ())?;
    de.end().map_err(|_| ())?;
    Ok(found)
}

struct AnyString<F>(F);

impl<'de, F: FnMut(&str) -> bool> Visitor<'de> for AnyString<F> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<bool, E> {
        Ok((self.0)(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(hit) = seq.next_element_seed(StringMatch(&mut self.0))? {
            found |= hit;
        }
        Ok(found)
    }
}

/// One array element: must be a string; answers whether it matched.
struct StringMatch<'f, F>(&'f mut F);

impl<'de, F: FnMut(&str) -> bool> DeserializeSeed<'de> for StringMatch<'_, F> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, F: FnMut(&str) -> bool> Visitor<'de> for StringMatch<'_, F> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok((self.0)(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn any_string_accepts_string_or_array_of_strings_only() {
        assert_eq!(any_string(&raw(r#""a""#), |s| s == "a"), Ok(true));
        assert_eq!(any_string(&raw(r#"["b","a"]"#), |s| s == "a"), Ok(true));
        assert_eq!(any_string(&raw(r#"["b"]"#), |s| s == "a"), Ok(false));
        assert_eq!(any_string(&raw(r#"[]"#), |s| s == "a"), Ok(false));
        assert!(any_string(&raw("1"), |_| true).is_err());
        assert!(any_string(&raw(r#"["a",1]"#), |_| true).is_err());
        assert!(any_string(&raw(r#"{"a":1}"#), |_| true).is_err());
        assert_eq!(any_string(&raw(r#""\u0061""#), |s| s == "a"), Ok(true));
    }

    #[test]
    fn numeric_dates_must_be_numbers() {
        assert_eq!(numeric(&raw("1700000000")), Some(1.7e9));
        assert_eq!(numeric(&raw("1.5")), Some(1.5));
        assert_eq!(numeric(&raw(r#""1700000000""#)), None);
        assert_eq!(numeric(&raw("true")), None);
        assert_eq!(numeric(&raw("null")), None);
    }

    #[test]
    fn lifetime_is_bounded_with_or_without_iat() {
        let policy = ValidationPolicy {
            issuers: &[],
            audiences: &[],
            algorithms: &[],
            clock_skew_secs: 60,
            max_lifetime_secs: 29 * 3600,
        };
        let now = 1_700_000_000u64;
        let times = |json: String| -> Result<u64, Rejection> {
            let claims: Claims<'_> = serde_json::from_str(&json).unwrap();
            check_times(&claims, now, &policy)
        };
        // Entra managed identity: iat backdated 5 minutes, exp - iat = 86,700 s.
        let mi = format!(r#"{{"iat":{},"exp":{}}}"#, now - 300, now - 300 + 86_700);
        assert_eq!(times(mi), Ok(now - 300 + 86_700));
        let long = format!(r#"{{"iat":{},"exp":{}}}"#, now, now + 29 * 3600 + 1);
        assert_eq!(times(long), Err(Rejection::TokenLifetimeTooLong));
        // No iat, or an iat in the future, cannot stretch it: exp - now is bounded too.
        assert_eq!(
            times(r#"{"exp":2e206}"#.into()),
            Err(Rejection::TokenLifetimeTooLong)
        );
        let future_iat = r#"{"iat":2e206,"exp":2.0000001e206}"#.to_string();
        assert_eq!(times(future_iat), Err(Rejection::TokenLifetimeTooLong));
        let no_iat = format!(r#"{{"exp":{}}}"#, now + 29 * 3600 + 60);
        assert_eq!(times(no_iat), Ok(now + 29 * 3600 + 60));
        let bad_iat = format!(r#"{{"iat":"x","exp":{}}}"#, now + 60);
        assert_eq!(times(bad_iat), Err(Rejection::MalformedToken));
    }

    #[test]
    fn strict_base64url() {
        let mut buf = [0u8; 16];
        assert_eq!(decode_part("YQ", &mut buf).unwrap(), b"a");
        assert!(decode_part("YQ==", &mut buf).is_err(), "padding");
        assert!(
            decode_part("YR", &mut buf).is_err(),
            "non-zero trailing bits"
        );
        assert!(decode_part("Y+", &mut buf).is_err(), "standard alphabet");
        assert!(decode_part("Y Q", &mut buf).is_err(), "whitespace");
    }

    /// The signature is checked over a digest we take: each algorithm must verify with its own
    /// hash and refuse a signature made by the same key over another hash (or padding).
    #[test]
    fn every_algorithm_verifies_over_its_own_hash_only() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _};
        use serde_json::json;

        use crate::dev::SigningKey;

        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let rsa = SigningKey::rsa();
        let p256 = SigningKey::ec();
        let p384 = EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let point = p384.public_key().as_ref();
        let jwks = json!({"keys": [
            rsa.jwk("rsa", None),
            p256.jwk("p256", None),
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": b64(&point[1..49]), "y": b64(&point[49..])},
        ]});
        let (keys, _) =
            KeySet::from_jwks(jwks.to_string().as_bytes(), &Algorithm::ALL, None).unwrap();
        let now = 1_700_000_000u64;
        let (issuers, audiences) = (["https://issuer".to_string()], ["api://a".to_string()]);
        let policy = ValidationPolicy {
            issuers: &issuers,
            audiences: &audiences,
            algorithms: &Algorithm::ALL,
            clock_skew_secs: 0,
            max_lifetime_secs: 3600,
        };
        let claims =
            json!({"iss": "https://issuer", "aud": "api://a", "iat": now, "exp": now + 600});
        let check = |token: &str| validate(token, &policy, &keys, now, &mut Vec::new()).map(|_| ());
        let rsa_token = |header_alg: &str, signed_as: &str| {
            rsa.sign(
                signed_as,
                &json!({"alg": header_alg, "kid": "rsa"}),
                &claims,
            )
        };
        for alg in ["RS256", "RS384", "RS512", "PS256"] {
            assert_eq!(check(&rsa_token(alg, alg)), Ok(()), "{alg}");
        }
        for (header_alg, signed_as) in [
            ("RS256", "RS384"),
            ("RS384", "RS256"),
            ("RS384", "RS512"),
            ("RS512", "RS256"),
            ("PS256", "RS256"),
            ("RS256", "PS256"),
        ] {
            assert_eq!(
                check(&rsa_token(header_alg, signed_as)),
                Err(Rejection::InvalidSignature),
                "{header_alg} header over a {signed_as} signature"
            );
        }
        let es256 = p256.sign("ES256", &json!({"alg": "ES256", "kid": "p256"}), &claims);
        assert_eq!(check(&es256), Ok(()));
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "ES384", "kid": "p384"})
                .to_string()
                .as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = p384.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        assert_eq!(check(&format!("{input}.{}", b64(sig.as_ref()))), Ok(()));
        // The same signature over other bytes fails (checked before the payload is decoded).
        assert_eq!(
            check(&format!("{input}x.{}", b64(sig.as_ref()))),
            Err(Rejection::InvalidSignature)
        );
    }

    #[test]
    fn algorithm_names_round_trip_and_exclude_none_and_hmac() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        for bad in ["none", "HS256", "rs256", "EdDSA", ""] {
            assert_eq!(Algorithm::from_name(bad), None);
        }
    }
}
