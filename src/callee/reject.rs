//! Every reason a request does not reach the upstream, as one enum, and how each is answered.
//!
//! The `rejections!` table below is the only place a rejection's answer is decided: each row
//! gives the variant, its stable `label` and its [`Answer`] class (status, RFC 6750 challenge,
//! error code). The label is the word that appears in the denial log line, in the `outcome` label
//! of `tokengate_requests_total` and in the `error_description` of the body and challenge, so an
//! operator can go from a metric spike to the log lines to the client's view with one grep. Labels
//! are `&'static str`: building a rejection never allocates, and nothing from the request (least
//! of all the token) can leak into one. The same macro writes [`Rejection::ALL`] from the rows,
//! so a new variant is counted and gets its metric series without a second list to keep.

use http::StatusCode;

/// How a class of rejections is answered. `respond::rejection` builds the response from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The RFC 6750 `WWW-Authenticate` challenge.
    pub challenge: ChallengeError,
    /// The `error` of the JSON body (and of the challenge, when it carries one).
    pub code: &'static str,
}

impl Answer {
    /// 400: a request we will not interpret.
    pub const INVALID_REQUEST: Answer = Answer {
        status: StatusCode::BAD_REQUEST,
        challenge: ChallengeError::InvalidRequest,
        code: "invalid_request",
    };
    /// 413: the body is over the cap.
    pub const PAYLOAD_TOO_LARGE: Answer = Answer {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        challenge: ChallengeError::InvalidRequest,
        code: "invalid_request",
    };
    /// 401 without an error: no credentials were presented (RFC 6750 §3.1).
    pub const NO_CREDENTIALS: Answer = Answer {
        status: StatusCode::UNAUTHORIZED,
        challenge: ChallengeError::None,
        code: "unauthorized",
    };
    /// 401: the token is not one we accept.
    pub const INVALID_TOKEN: Answer = Answer {
        status: StatusCode::UNAUTHORIZED,
        challenge: ChallengeError::InvalidToken,
        code: "invalid_token",
    };
    /// 403: a valid token, not allowed here.
    pub const INSUFFICIENT_SCOPE: Answer = Answer {
        status: StatusCode::FORBIDDEN,
        challenge: ChallengeError::InsufficientScope,
        code: "insufficient_scope",
    };
    /// 405: a method we never forward; not about credentials, so no challenge.
    pub const METHOD_NOT_ALLOWED: Answer = Answer {
        status: StatusCode::METHOD_NOT_ALLOWED,
        challenge: ChallengeError::None,
        code: "method_not_allowed",
    };
    /// 503: we cannot decide yet (no signing keys); the client may retry.
    pub const UNAVAILABLE: Answer = Answer {
        status: StatusCode::SERVICE_UNAVAILABLE,
        challenge: ChallengeError::None,
        code: "temporarily_unavailable",
    };
    /// 502: the upstream could not be reached.
    pub const BAD_GATEWAY: Answer = Answer {
        status: StatusCode::BAD_GATEWAY,
        challenge: ChallengeError::None,
        code: "bad_gateway",
    };
    /// 504: the upstream did not answer in time.
    pub const GATEWAY_TIMEOUT: Answer = Answer {
        status: StatusCode::GATEWAY_TIMEOUT,
        challenge: ChallengeError::None,
        code: "gateway_timeout",
    };
}

/// The RFC 6750 §3.1 error code a rejection maps to, if it carries one in its challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// No error in the challenge: no credentials were presented (RFC 6750 §3.1), or the refusal
    /// is not about credentials at all (then there is no challenge).
    None,
    /// `invalid_request`: a malformed request (400).
    InvalidRequest,
    /// `invalid_token`: expired, revoked, malformed or otherwise invalid (401).
    InvalidToken,
    /// `insufficient_scope`: valid, but not allowed here (403).
    InsufficientScope,
}

/// Writes the [`Rejection`] enum, its `ALL`/`COUNT` and its one exhaustive `match` from rows of
/// `Variant => "label", ANSWER_CLASS;`.
macro_rules! rejections {
    ($( $(#[$doc:meta])* $variant:ident => $label:literal, $answer:ident; )*) => {
        /// Why a request was refused. `respond::rejection` is the only place that turns one into
        /// a response.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rejection {
            $( $(#[$doc])* $variant, )*
        }

        impl Rejection {
            /// How many variants there are.
            pub const COUNT: usize = [$(stringify!($variant)),*].len();

            /// Every variant in declaration order, for pre-registering metric series so the hot
            /// path never formats a label.
            pub const ALL: [Rejection; Rejection::COUNT] = [$(Rejection::$variant),*];

            /// The label and the answer: the one exhaustive match.
            const fn row(self) -> (&'static str, Answer) {
                match self {
                    $( Rejection::$variant => ($label, Answer::$answer), )*
                }
            }
        }
    };
}

rejections! {
    /// The path cannot be made unambiguous (encoded slash, backslash, `;`, bad escape, …).
    InvalidPath => "invalid_path", INVALID_REQUEST;
    /// The method is not spelled in upper case: Go's router and `r.Method` checks compare it as
    /// sent while Flask, Django, Express and ASP.NET Core fold case, so no single reading exists.
    InvalidMethod => "invalid_method", INVALID_REQUEST;
    /// `CONNECT` or `TRACE` (or IIS's `TRACK`): a tunnel the client re-targets after we authorized
    /// its path, or an echo of the request's headers. Refused on every path.
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED;
    /// A `_method` query parameter: Laravel, Symfony and Express's `method-override` dispatch on
    /// it instead of the request method we authorized.
    MethodOverride => "method_override", INVALID_REQUEST;
    /// The connection carried a request-smuggling shape (`Content-Length` with
    /// `Transfer-Encoding`, two `Content-Length`s, bare LF): every request on it is refused.
    AmbiguousFraming => "ambiguous_framing", INVALID_REQUEST;
    /// The request body is larger than `limits.max_body_bytes`.
    BodyTooLarge => "body_too_large", PAYLOAD_TOO_LARGE;
    /// Several `Authorization` headers, or a `Bearer` scheme with no or a non-token68 credential.
    MalformedAuthorization => "malformed_authorization", INVALID_REQUEST;
    /// No `Authorization: Bearer` credential on a protected path.
    MissingToken => "missing_token", NO_CREDENTIALS;
    /// The token is longer than `auth.max_token_size`; refused before any decoding.
    TokenTooLarge => "token_too_large", INVALID_TOKEN;
    /// Not a strict JWS compact serialization, or its header/claims are not the JSON we require.
    MalformedToken => "malformed_token", INVALID_TOKEN;
    /// The header's `alg` is not in `auth.algorithms` (this always covers `none` and HMAC).
    AlgorithmNotAllowed => "algorithm_not_allowed", INVALID_TOKEN;
    /// The token names a `crit` extension; we implement none, so RFC 7515 §4.1.11 says refuse.
    UnsupportedCritical => "unsupported_crit", INVALID_TOKEN;
    /// The header has no `kid`: keys are only ever chosen by `kid` from the JWKS.
    MissingKeyId => "missing_kid", INVALID_TOKEN;
    /// No key with this `kid` in the JWKS, even after the bounded refresh.
    UnknownKeyId => "unknown_kid", INVALID_TOKEN;
    /// The key with this `kid` may not be used with the header's `alg`.
    KeyAlgorithmMismatch => "key_algorithm_mismatch", INVALID_TOKEN;
    /// The signature does not verify.
    InvalidSignature => "invalid_signature", INVALID_TOKEN;
    /// `exp` is absent or not a number.
    MissingExpiry => "missing_exp", INVALID_TOKEN;
    /// `exp` is in the past (beyond the allowed clock skew).
    Expired => "token_expired", INVALID_TOKEN;
    /// `nbf` is in the future (beyond the allowed clock skew).
    NotYetValid => "token_not_yet_valid", INVALID_TOKEN;
    /// `exp - iat`, or `exp - now`, exceeds `auth.max_token_lifetime` (plus skew for the latter):
    /// a signed token that (almost) never expires is a credential nobody can revoke.
    TokenLifetimeTooLong => "token_lifetime_too_long", INVALID_TOKEN;
    /// `iss` is not exactly one of `auth.issuers`.
    InvalidIssuer => "invalid_issuer", INVALID_TOKEN;
    /// The key's JWKS `issuer` pins it to another tenant (or issuer) than the token's.
    KeyIssuerMismatch => "key_issuer_mismatch", INVALID_TOKEN;
    /// No `aud` value is accepted on this route (`auth.audiences`, or the matching rules'
    /// `audiences`, each of which must be satisfied).
    InvalidAudience => "invalid_audience", INVALID_TOKEN;
    /// `appid` and `azp` both present and different: we will not guess which one is the caller.
    AmbiguousApplication => "ambiguous_application", INVALID_TOKEN;
    /// The caller application (`appid`/`azp`) is not in `auth.allowed_applications`.
    ApplicationNotAllowed => "application_not_allowed", INSUFFICIENT_SCOPE;
    /// The caller principal (`oid`) is not in `auth.allowed_principals`.
    PrincipalNotAllowed => "principal_not_allowed", INSUFFICIENT_SCOPE;
    /// The caller's tenant (`tid`) is not in `auth.tenants`.
    TenantNotAllowed => "tenant_not_allowed", INSUFFICIENT_SCOPE;
    /// A matching `[[auth.rules]]` requires a role the token's `roles` claim does not hold.
    MissingRole => "missing_role", INSUFFICIENT_SCOPE;
    /// No signing keys have been loaded yet: fail closed until the IdP answers.
    NoSigningKeys => "no_signing_keys", UNAVAILABLE;
    /// The upstream could not be reached (connect refused, reset, TLS failure).
    UpstreamUnavailable => "upstream_unavailable", BAD_GATEWAY;
    /// The upstream did not send a response head within `upstream.timeout`.
    UpstreamTimeout => "upstream_timeout", GATEWAY_TIMEOUT;
}

impl Rejection {
    /// The stable reason label used in logs, metrics and `error_description`.
    pub const fn label(self) -> &'static str {
        self.row().0
    }

    /// How this rejection is answered.
    pub const fn answer(self) -> Answer {
        self.row().1
    }

    /// The HTTP status this rejection is answered with.
    pub const fn status(self) -> StatusCode {
        self.answer().status
    }

    /// The RFC 6750 error code for the `WWW-Authenticate` challenge.
    pub const fn challenge(self) -> ChallengeError {
        self.answer().challenge
    }

    /// Whether report mode may forward a request refused for this reason: token (401) and
    /// authorization (403) failures only. Malformed requests (400/413: framing, ambiguous paths,
    /// two `Authorization` headers, oversized bodies) and methods we never forward (405) stay
    /// refused, so report mode never widens what the callee can be confused by; without signing
    /// keys (503) nothing can be judged, so it fails closed as always; upstream failures
    /// (502/504) are not decisions at all.
    pub const fn reportable(self) -> bool {
        matches!(self.answer().status.as_u16(), 401 | 403)
    }

    /// Whether the token itself was accepted, so that only an allow-list or a rule refused the
    /// caller (403): report mode then forwards the identity headers too.
    pub const fn token_accepted(self) -> bool {
        matches!(self.answer().challenge, ChallengeError::InsufficientScope)
    }

    /// Position in [`Rejection::ALL`], for indexing pre-resolved counters. Always in range: `ALL`
    /// is written by the same macro as the enum, in declaration order.
    pub const fn index(self) -> usize {
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
        assert_eq!(Rejection::InvalidMethod.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            Rejection::MethodNotAllowed.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            Rejection::TokenLifetimeTooLong.status(),
            StatusCode::UNAUTHORIZED
        );
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

    #[test]
    fn report_mode_never_forwards_malformed_requests() {
        for r in Rejection::ALL {
            let request = matches!(r.status().as_u16(), 400 | 405 | 413);
            let other = matches!(r.status().as_u16(), 502..=504);
            assert_eq!(r.reportable(), !request && !other, "{r:?}");
            assert!(!r.reportable() || r.challenge() != ChallengeError::InvalidRequest);
            assert_eq!(
                r.token_accepted(),
                r.status() == StatusCode::FORBIDDEN,
                "{r:?}"
            );
        }
    }

    #[test]
    fn error_codes_match_their_status() {
        for r in Rejection::ALL {
            let Answer { status, code, .. } = r.answer();
            let expected: &[&str] = match status.as_u16() {
                400 | 413 => &["invalid_request"],
                401 => &["unauthorized", "invalid_token"],
                403 => &["insufficient_scope"],
                405 => &["method_not_allowed"],
                502 => &["bad_gateway"],
                503 => &["temporarily_unavailable"],
                504 => &["gateway_timeout"],
                other => panic!("{r:?}: unexpected status {other}"),
            };
            assert!(expected.contains(&code), "{r:?}: {status} answers {code}");
        }
    }
}
