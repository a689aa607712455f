//! Every reason a request does not reach the upstream, as one enum.
//!
//! Each variant has exactly one HTTP status and one stable `label`. The label is the word that
//! appears in the denial log line, in the `outcome` label of `tokengate_requests_total` and in the
//! `error_description` of the `WWW-Authenticate` challenge, so an operator can go from a metric spike
//! to the log lines to the client's view with one grep. Labels are `&'static str`: building a
//! rejection never allocates, and nothing from the request (least of all the token) can leak into one.

use http::StatusCode;

/// Why a request was refused. `respond::rejection` is the only place that turns one into a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The path cannot be made unambiguous (encoded slash, backslash, `;`, bad escape, …).
    InvalidPath,
    /// The connection carried a request-smuggling shape (`Content-Length` with
    /// `Transfer-Encoding`, two `Content-Length`s, bare LF): every request on it is refused.
    AmbiguousFraming,
    /// The request body is larger than `limits.max_body_bytes`.
    BodyTooLarge,
    /// Several `Authorization` headers, or a `Bearer` scheme with no or a non-token68 credential.
    MalformedAuthorization,
    /// No `Authorization: Bearer` credential on a protected path.
    MissingToken,
    /// The token is longer than `auth.max_token_size`; refused before any decoding.
    TokenTooLarge,
    /// Not a strict JWS compact serialization, or its header/claims are not the JSON we require.
    MalformedToken,
    /// The header's `alg` is not in `auth.algorithms` (this always covers `none` and HMAC).
    AlgorithmNotAllowed,
    /// The token names a `crit` extension; we implement none, so RFC 7515 §4.1.11 says refuse.
    UnsupportedCritical,
    /// The header has no `kid`: keys are only ever chosen by `kid` from the JWKS.
    MissingKeyId,
    /// No key with this `kid` in the JWKS, even after the bounded refresh.
    UnknownKeyId,
    /// The key with this `kid` may not be used with the header's `alg`.
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    InvalidSignature,
    /// `exp` is absent or not a number.
    MissingExpiry,
    /// `exp` is in the past (beyond the allowed clock skew).
    Expired,
    /// `nbf` is in the future (beyond the allowed clock skew).
    NotYetValid,
    /// `iss` is not exactly one of `auth.issuers`.
    InvalidIssuer,
    /// No `aud` value is one of `auth.audiences`.
    InvalidAudience,
    /// `appid` and `azp` both present and different: we will not guess which one is the caller.
    AmbiguousApplication,
    /// The caller application (`appid`/`azp`) is not in `auth.allowed_applications`.
    ApplicationNotAllowed,
    /// The caller principal (`oid`) is not in `auth.allowed_principals`.
    PrincipalNotAllowed,
    /// A matching `[[auth.rules]]` requires a role the token's `roles` claim does not hold.
    MissingRole,
    /// No signing keys have been loaded yet: fail closed until the IdP answers.
    NoSigningKeys,
    /// The upstream could not be reached (connect refused, reset, TLS failure).
    UpstreamUnavailable,
    /// The upstream did not send a response head within `upstream.timeout`.
    UpstreamTimeout,
}

/// The RFC 6750 §3.1 error code a rejection maps to, if it carries one in its challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// No credentials were presented: the challenge carries no error (RFC 6750 §3.1).
    None,
    /// `invalid_request`: a malformed request (400).
    InvalidRequest,
    /// `invalid_token`: expired, revoked, malformed or otherwise invalid (401).
    InvalidToken,
    /// `insufficient_scope`: valid, but not allowed here (403).
    InsufficientScope,
}

impl Rejection {
    /// Every variant, for pre-registering metric series so the hot path never formats a label.
    pub const ALL: [Rejection; 25] = [
        Rejection::InvalidPath,
        Rejection::AmbiguousFraming,
        Rejection::BodyTooLarge,
        Rejection::MalformedAuthorization,
        Rejection::MissingToken,
        Rejection::TokenTooLarge,
        Rejection::MalformedToken,
        Rejection::AlgorithmNotAllowed,
        Rejection::UnsupportedCritical,
        Rejection::MissingKeyId,
        Rejection::UnknownKeyId,
        Rejection::KeyAlgorithmMismatch,
        Rejection::InvalidSignature,
        Rejection::MissingExpiry,
        Rejection::Expired,
        Rejection::NotYetValid,
        Rejection::InvalidIssuer,
        Rejection::InvalidAudience,
        Rejection::AmbiguousApplication,
        Rejection::ApplicationNotAllowed,
        Rejection::PrincipalNotAllowed,
        Rejection::MissingRole,
        Rejection::NoSigningKeys,
        Rejection::UpstreamUnavailable,
        Rejection::UpstreamTimeout,
    ];

    /// The stable reason label used in logs, metrics and `error_description`.
    pub const fn label(self) -> &'static str {
        match self {
            Rejection::InvalidPath => "invalid_path",
            Rejection::AmbiguousFraming => "ambiguous_framing",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::MalformedAuthorization => "malformed_authorization",
            Rejection::MissingToken => "missing_token",
            Rejection::TokenTooLarge => "token_too_large",
            Rejection::MalformedToken => "malformed_token",
            Rejection::AlgorithmNotAllowed => "algorithm_not_allowed",
            Rejection::UnsupportedCritical => "unsupported_crit",
            Rejection::MissingKeyId => "missing_kid",
            Rejection::UnknownKeyId => "unknown_kid",
            Rejection::KeyAlgorithmMismatch => "key_algorithm_mismatch",
            Rejection::InvalidSignature => "invalid_signature",
            Rejection::MissingExpiry => "missing_exp",
            Rejection::Expired => "token_expired",
            Rejection::NotYetValid => "token_not_yet_valid",
            Rejection::InvalidIssuer => "invalid_issuer",
            Rejection::InvalidAudience => "invalid_audience",
            Rejection::AmbiguousApplication => "ambiguous_application",
            Rejection::ApplicationNotAllowed => "application_not_allowed",
            Rejection::PrincipalNotAllowed => "principal_not_allowed",
            Rejection::MissingRole => "missing_role",
            Rejection::NoSigningKeys => "no_signing_keys",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The HTTP status this rejection is answered with.
    pub const fn status(self) -> StatusCode {
        if let Rejection::BodyTooLarge = self {
            return StatusCode::PAYLOAD_TOO_LARGE;
        }
        match self.challenge() {
            ChallengeError::InvalidRequest => StatusCode::BAD_REQUEST,
            ChallengeError::InsufficientScope => StatusCode::FORBIDDEN,
            ChallengeError::None | ChallengeError::InvalidToken => match self {
                Rejection::NoSigningKeys => StatusCode::SERVICE_UNAVAILABLE,
                Rejection::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
                Rejection::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::UNAUTHORIZED,
            },
        }
    }

    /// The RFC 6750 error code for the `WWW-Authenticate` challenge.
    pub const fn challenge(self) -> ChallengeError {
        match self {
            Rejection::InvalidPath
            | Rejection::AmbiguousFraming
            | Rejection::BodyTooLarge
            | Rejection::MalformedAuthorization => ChallengeError::InvalidRequest,
            Rejection::MissingToken
            | Rejection::NoSigningKeys
            | Rejection::UpstreamUnavailable
            | Rejection::UpstreamTimeout => ChallengeError::None,
            Rejection::ApplicationNotAllowed
            | Rejection::PrincipalNotAllowed
            | Rejection::MissingRole => ChallengeError::InsufficientScope,
            _ => ChallengeError::InvalidToken,
        }
    }

    /// Position in [`Rejection::ALL`], for indexing pre-resolved counters.
    pub fn index(self) -> usize {
        // ALL is written in declaration order, which a unit test checks.
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_declaration_order_and_labels_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in Rejection::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(seen.insert(r.label()), "duplicate label {}", r.label());
        }
    }

    #[test]
    fn statuses_follow_rfc_6750() {
        assert_eq!(Rejection::MissingToken.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Rejection::Expired.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Rejection::MissingRole.status(), StatusCode::FORBIDDEN);
        assert_eq!(Rejection::InvalidPath.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            Rejection::AmbiguousFraming.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Rejection::BodyTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            Rejection::NoSigningKeys.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            Rejection::UpstreamTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            Rejection::UpstreamUnavailable.status(),
            StatusCode::BAD_GATEWAY
        );
    }
}
