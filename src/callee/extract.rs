//! The bearer token from the `Authorization` header.
//!
//! # Contract
//! - Exactly one `Authorization` header; two or more is a malformed request (400), because
//!   components behind us may pick a different one than we checked.
//! - Scheme `Bearer`, case-insensitive (RFC 9110 §11.1), one or more spaces, then a credential of
//!   RFC 6750 `b64token` characters. Another scheme (e.g. `Basic`) counts as no token (401).
//! - A credential longer than the limit is refused before any decoding.
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
    if !token.iter().all(|&b| is_b64token(b)) {
        return Err(Rejection::MalformedAuthorization);
    }
    // All bytes are ASCII, checked just above.
    std::str::from_utf8(token).map_err(|_| Rejection::MalformedAuthorization)
}

/// RFC 6750 §2.1 `b64token` characters (a JWS uses a subset; `validate` is stricter).
fn is_b64token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

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
            assert_eq!(
                bearer_token(&headers(&values), 100),
                Err(want),
                "{values:?}"
            );
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
