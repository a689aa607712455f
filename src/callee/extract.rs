//! The bearer token from the `Authorization` header.
//!
//! # Contract
//! - Exactly one `Authorization` header; two or more is a malformed request (400), because
//!   components behind us may pick a different one than we checked.
//! - Scheme `Bearer`, case-insensitive (RFC 9110 §11.1), one or more spaces, then a credential of
//!   RFC 6750 `b64token` characters. Another scheme (e.g. `Basic`) counts as no token (401).
//! - A credential longer than the limit is refused before any decoding.
//! - The credential's characters are checked by [`credential`] where a token is first seen: the
//!   validate phase calls it on a cache miss, so a cached token (which passed it) is not scanned
//!   again on every request (issue 12: this scan was 3.7% of a cache hit's CPU).
//! - Never panics and never copies the token.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::reject::Rejection;

/// Returns the token, or why there is none.
pub fn bearer_token(headers: &HeaderMap, max_len: usize) -> Result<&str, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Rejection::MissingToken);
    };
    if values.next().is_some() {
        return Err(Rejection::MalformedAuthorization);
    }
    let bytes = value.as_bytes();
    const SCHEME: &[u8] = b"bearer";
    if bytes.len() < SCHEME.len() || !bytes[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return Err(Rejection::MissingToken);
    }
    let rest = &bytes[SCHEME.len()..];
    let token_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    if token_start == 0 {
        // "BearerX…" is another scheme; "Bearer" alone is a malformed bearer credential.
        return if rest.is_empty() {
            Err(Rejection::MalformedAuthorization)
        } else {
            Err(Rejection::MissingToken)
        };
    }
    let token = &rest[token_start..];
    if token.is_empty() {
        return Err(Rejection::MalformedAuthorization);
    }
    if token.len() > max_len {
        return Err(Rejection::TokenTooLarge);
    }
    std::str::from_utf8(token).map_err(|_| Rejection::MalformedAuthorization)
}

/// Checks that a credential is RFC 6750 §2.1 `b64token` characters (a JWS uses a subset;
/// `validate` is stricter): anything else is a malformed `Authorization` header.
pub fn credential(token: &str) -> Result<(), Rejection> {
    // Branch-free over the bytes: one table lookup each, no early exit to predict.
    let ok = token
        .bytes()
        .fold(true, |ok, b| ok & B64TOKEN[usize::from(b)]);
    match ok {
        true => Ok(()),
        false => Err(Rejection::MalformedAuthorization),
    }
}

/// `b64token` characters, by byte.
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for v in ["Bearer a.b.c", "bearer a.b.c", "BEARER  a.b.c"] {
            assert_eq!(bearer_token(&headers(&[v]), 100), Ok("a.b.c"), "{v}");
            assert_eq!(credential("a.b.c"), Ok(()));
        }
    }

    #[test]
    fn refusals_are_precise() {
        let cases = [
            (vec![], Rejection::MissingToken),
            (vec!["Basic dXNlcjpwYXNz"], Rejection::MissingToken),
            (vec!["Bearerx.y.z"], Rejection::MissingToken),
            (vec!["Bearer"], Rejection::MalformedAuthorization),
            (vec!["Bearer "], Rejection::MalformedAuthorization),
            (
                vec!["Bearer a.b.c", "Bearer a.b.c"],
                Rejection::MalformedAuthorization,
            ),
            (
                vec!["Bearer a.b.c extra"],
                Rejection::MalformedAuthorization,
            ),
            (vec!["Bearer a\"b"], Rejection::MalformedAuthorization),
        ];
        for (values, want) in cases {
            let h = headers(&values);
            let got = bearer_token(&h, 100).and_then(|t| credential(t).map(|()| t));
            assert_eq!(got, Err(want), "{values:?}");
        }
    }

    #[test]
    fn every_b64token_character_and_only_those() {
        let allowed = "abcxyzABCXYZ0189-._~+/=";
        assert_eq!(credential(allowed), Ok(()));
        for b in 0..=255u8 {
            let c = b as char;
            let want = allowed.contains(c) || c.is_ascii_alphanumeric();
            let s = format!("a{c}b");
            assert_eq!(credential(&s).is_ok(), want, "{b:#x}");
        }
    }

    #[test]
    fn size_limit_applies_before_decoding() {
        let big = format!("Bearer {}", "a".repeat(101));
        assert_eq!(
            bearer_token(&headers(&[&big]), 100),
            Err(Rejection::TokenTooLarge)
        );
        let ok = format!("Bearer {}", "a".repeat(100));
        assert!(bearer_token(&headers(&[&ok]), 100).is_ok());
    }
}
