//! Entry points and fixtures for tokengate's fuzz targets.
//!
//! Each target in `fuzz_targets/` is one line that calls a function here; each function feeds the
//! input to the public API the proxy runs on request bytes (or on the operator's config) and
//! asserts the invariants that API promises beyond "does not panic":
//! - [`normalize`]: the output is canonical (starts with `/`, no `//`, no dot segment, no
//!   lower-case escape) and normalizing it again changes nothing;
//! - [`bearer`]: a returned token is non-empty and size-capped, and `extract::credential` accepts
//!   it exactly when it is a run of `b64token` bytes;
//! - [`validate`]: the committed JWKS and a policy the committed seed tokens satisfy at [`NOW`];
//! - [`validate_signed`]: header and payload bytes chosen by the fuzzer and signed here, so the
//!   claim checks and the EasyAuth principal builder run on arbitrary JSON behind a valid signature
//!   (a fuzzer cannot forge one);
//! - [`config`]: TOML plus `TOKENGATE_*` overrides; an error is fine, a panic is not.

use std::sync::LazyLock;

use aws_lc_rs::rand::SystemRandom;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use tokengate::dev::{v1_issuer, v2_issuer, SigningKey, DEV_AUDIENCE, DEV_TENANT};
use tokengate::validate::cache::CachedIdentity;
use tokengate::validate::{Algorithm, KeySet, ValidationPolicy};

/// The committed public JWKS (`rsa-fuzz-1`, `ec-fuzz-1`); the private halves were discarded after
/// `examples/gen_seeds.rs` signed the seed tokens with them.
pub const JWKS: &[u8] = include_bytes!("../keys/jwks.json");
/// When the seed tokens were issued (2026-01-01T00:00:00Z); they live for an hour.
pub const ISSUED_AT: u64 = 1_767_225_600;
/// The validator targets' clock: ten minutes into the seeds' lifetime.
pub const NOW: u64 = ISSUED_AT + 600;
/// `auth.max_token_size` for the bearer target: the smallest the config allows, so the fuzzer's
/// default 4 KiB inputs reach the size refusal too.
pub const MAX_TOKEN: usize = 1024;
/// The `kid` of the key [`validate_signed`] signs with.
pub const SIGNED_KID: &str = "ec-signed";
/// The header [`validate_signed`] uses when the input has no NUL separator.
pub const SIGNED_HEADER: &[u8] = br#"{"typ":"JWT","alg":"ES256","kid":"ec-signed"}"#;

static ISSUERS: LazyLock<Vec<String>> =
    LazyLock::new(|| vec![v1_issuer(DEV_TENANT), v2_issuer(DEV_TENANT)]);
static AUDIENCES: LazyLock<Vec<String>> = LazyLock::new(|| {
    vec![
        DEV_AUDIENCE.to_string(),
        "api://second-audience".to_string(),
    ]
});
static COMMITTED: LazyLock<KeySet> = LazyLock::new(|| {
    KeySet::from_jwks(JWKS, &Algorithm::ALL, None)
        .expect("committed JWKS")
        .0
});
static SIGNER: LazyLock<(SigningKey, KeySet)> = LazyLock::new(|| {
    let key = SigningKey::ec();
    let jwks = serde_json::json!({ "keys": [key.jwk(SIGNED_KID, None)] }).to_string();
    let (set, _) = KeySet::from_jwks(jwks.as_bytes(), &Algorithm::ALL, None).expect("own JWKS");
    (key, set)
});

/// The policy the seed tokens satisfy: both dev issuers, two audiences, every algorithm (so the
/// per-key algorithm pinning is what refuses an `alg`/key mismatch), 60 s skew.
pub fn policy() -> ValidationPolicy<'static> {
    ValidationPolicy {
        issuers: &ISSUERS,
        audiences: &AUDIENCES,
        algorithms: &Algorithm::ALL,
        clock_skew_secs: 60,
        max_lifetime_secs: 29 * 3600,
    }
}

/// The keys of the committed JWKS.
pub fn committed_keys() -> &'static KeySet {
    &COMMITTED
}

/// Path normalization: never panics, and its output is canonical and a fixed point.
pub fn normalize(path: &str) {
    let _ = tokengate::normalize::Prefix::parse(path);
    let Ok(once) = tokengate::normalize::normalize(path) else {
        return;
    };
    assert!(once.starts_with('/'), "{once:?} is not origin-form");
    assert!(!once.contains("//"), "{once:?} has an empty segment");
    assert!(
        !once.split('/').any(|s| s == "." || s == ".."),
        "{once:?} has a dot segment"
    );
    let bytes = once.as_bytes();
    for (i, _) in once.match_indices('%') {
        let escape = bytes.get(i + 1..i + 3).expect("a complete escape");
        assert!(
            escape
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')),
            "{once:?} has a non-upper-case escape"
        );
    }
    match tokengate::normalize::normalize(&once) {
        Ok(twice) => assert_eq!(twice, once, "normalize is not idempotent on {path:?}"),
        Err(e) => panic!("{path:?} normalized to {once:?}, which is refused: {e}"),
    }
}

/// The `Authorization` parser on one header value per input line.
pub fn bearer(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(AUTHORIZATION, value);
        }
    }
    let Ok(token) = tokengate::extract::bearer_token(&headers, MAX_TOKEN) else {
        return;
    };
    assert!(!token.is_empty() && token.len() <= MAX_TOKEN);
    // The characters are checked where a token is first validated (`extract::credential`):
    // it must accept exactly the `b64token` runs.
    let b64token = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    assert_eq!(tokengate::extract::credential(token).is_ok(), b64token);
}

/// The validator on a whole token, against the committed keys at [`NOW`].
pub fn validate(token: &str) {
    let mut scratch = Vec::new();
    let _ = tokengate::validate::validate(token, &policy(), committed_keys(), NOW, &mut scratch);
}

/// `header NUL payload` (or just `payload`, with [`SIGNED_HEADER`]) as raw JSON bytes, signed with
/// ES256 so the signature always verifies; whatever validates is turned into the cached identity
/// and the EasyAuth headers, as the pipeline does.
pub fn validate_signed(data: &[u8]) {
    let (header, payload) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (SIGNED_HEADER, data),
    };
    let (key, keys) = &*SIGNER;
    let SigningKey::Ec(pair) = key else {
        unreachable!("SIGNER is an EC key")
    };
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let sig = pair
        .sign(&SystemRandom::new(), token.as_bytes())
        .expect("ECDSA sign");
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut token);

    let mut scratch = Vec::new();
    let Ok(verified) = tokengate::validate::validate(&token, &policy(), keys, NOW, &mut scratch)
    else {
        return;
    };
    if let Ok(identity) = CachedIdentity::new(&token, &verified, 0) {
        let _ = identity.me_json();
    }
}

/// The config loader: `toml` [`NUL` then `NAME=value` lines as environment overrides].
pub fn config(data: &str) {
    let (text, env) = data.split_once('\0').unwrap_or((data, ""));
    let env = env.lines().filter_map(|l| {
        l.split_once('=')
            .map(|(k, v)| (k.to_string(), v.to_string()))
    });
    if let Ok(config) = tokengate::Config::from_toml_with_env(text, env) {
        let _ = config.summary();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokengate::reject::Rejection;

    use super::*;

    /// The committed token seeds still do what their names say against the committed JWKS, so
    /// the claim checks stay reachable from the corpus (`cargo test` in `fuzz/`).
    #[test]
    fn validate_seeds_reach_the_check_they_are_named_after() {
        use Rejection::*;
        let expected: &[(&str, Result<(), Rejection>)] = &[
            ("v1-app-rs256", Ok(())),
            ("v2-app-rs256", Ok(())),
            ("v1-user-rs256", Ok(())),
            ("v2-user-rs256", Ok(())),
            ("v1-app-es256", Ok(())),
            ("v2-app-es256", Ok(())),
            ("aud-array", Ok(())),
            ("roles-string", Ok(())),
            ("appid-azp-agree", Ok(())),
            ("ps256", Ok(())),
            ("rs384", Ok(())),
            ("escaped-strings", Ok(())),
            ("jku-ignored", Ok(())),
            ("exp-float", Ok(())),
            ("expired", Err(Expired)),
            ("nbf-future", Err(NotYetValid)),
            ("no-exp", Err(MissingExpiry)),
            ("exp-string", Err(MissingExpiry)),
            // serde reads `null` as an absent Option: same as no `nbf`, which is accepted.
            ("nbf-null", Ok(())),
            ("wrong-iss", Err(InvalidIssuer)),
            ("iss-array", Err(MalformedToken)),
            ("wrong-aud", Err(InvalidAudience)),
            ("aud-number", Err(MalformedToken)),
            ("appid-azp-differ", Err(AmbiguousApplication)),
            ("roles-number", Err(MalformedToken)),
            ("duplicate-iss", Err(MalformedToken)),
            ("trailing-json", Err(MalformedToken)),
            ("payload-array", Err(MalformedToken)),
            ("crit", Err(UnsupportedCritical)),
            ("es256-header-rsa-kid", Err(KeyAlgorithmMismatch)),
            ("unknown-kid", Err(UnknownKeyId)),
            ("no-kid", Err(MissingKeyId)),
            ("alg-none", Err(MalformedToken)), // empty signature part: refused before `alg`
            ("hs256", Err(AlgorithmNotAllowed)),
            ("flipped-signature", Err(InvalidSignature)),
            ("padded", Err(MalformedToken)),
            ("four-parts", Err(InvalidSignature)), // "p.s" as payload: signature fails first
        ];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/validate");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), expected.len());
        for (name, want) in expected {
            let token = std::fs::read_to_string(dir.join(name)).unwrap();
            let mut scratch = Vec::new();
            let got = tokengate::validate::validate(
                &token,
                &policy(),
                committed_keys(),
                NOW,
                &mut scratch,
            )
            .map(|_| ());
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn entry_points_accept_their_seeds() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let seeds = |t: &str| {
            std::fs::read_dir(root.join(t))
                .unwrap()
                .map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect::<Vec<_>>()
        };
        for s in seeds("normalize") {
            normalize(std::str::from_utf8(&s).unwrap());
        }
        for s in seeds("bearer") {
            bearer(&s);
        }
        for s in seeds("validate_signed") {
            validate_signed(&s);
        }
        for s in seeds("config") {
            config(std::str::from_utf8(&s).unwrap());
        }
    }
}
