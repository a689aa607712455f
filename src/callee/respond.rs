//! The one place where a [`Rejection`] becomes an HTTP response.
//!
//! Bodies are small fixed JSON documents built from static labels: they never echo the token,
//! the path or any other request input. 401s carry an RFC 6750 challenge: no `error` when no
//! credentials were sent, `error="invalid_token"` with the reason otherwise; 403s carry
//! `insufficient_scope`, 400s `invalid_request`; 405s carry `Allow` and no challenge.
//!
//! A refused gRPC request (`grpc::is_grpc`) gets the same decision in gRPC's shape instead: a
//! trailers-only response, HTTP 200 with `grpc-status` and `grpc-message` = the same label as the
//! JSON body's `error_description`, so gRPC clients read a status rather than a transport error.

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};

use crate::callee::forward::ResponseBody;
use crate::callee::grpc;
use crate::reject::{Answer, ChallengeError, Rejection};

/// Response bodies: streamed from the upstream, or generated here.
pub type Body = Either<ResponseBody, Full<Bytes>>;

const REALM: &str = "tokengate";
/// What a 405 offers: every standard method except the refused `CONNECT` and `TRACE`.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// The response for a refused request, in gRPC's shape when the request was gRPC.
pub fn rejection_for(r: Rejection, grpc: bool) -> Response<Body> {
    if grpc {
        grpc_rejection(r)
    } else {
        rejection(r)
    }
}

/// A gRPC trailers-only refusal: HTTP 200, no body, `grpc-status` and `grpc-message` in the
/// headers (which HTTP/2 sends as one HEADERS frame with END_STREAM).
pub fn grpc_rejection(r: Rejection) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(
        grpc::GRPC_STATUS.clone(),
        HeaderValue::from_static(grpc::status_for(r.status()).as_str()),
    );
    h.insert(
        grpc::GRPC_MESSAGE.clone(),
        HeaderValue::from_static(r.label()),
    );
    resp
}

/// The response for a refused request.
pub fn rejection(r: Rejection) -> Response<Body> {
    let Answer {
        status,
        challenge,
        code,
    } = r.answer();
    let body = format!(
        "{{\"error\":\"{code}\",\"error_description\":\"{}\"}}\n",
        r.label()
    );
    let mut resp = json(status, body);
    let challenge = match (challenge, status) {
        (ChallengeError::None, StatusCode::UNAUTHORIZED) => {
            Some(format!("Bearer realm=\"{REALM}\""))
        }
        (ChallengeError::None, _) => None,
        (_, _) => Some(format!(
            "Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{}\"",
            r.label()
        )),
    };
    if let Some(c) = challenge {
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_str(&c).expect("static ASCII"),
        );
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        // RFC 9110 §15.5.6: a 405 says which methods exist.
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    }
    if r == Rejection::NoSigningKeys {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}

/// A JSON response that no cache may keep (it is about one caller).
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(body.into())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a generated (in-memory) body.
    fn body_text(full: Full<Bytes>) -> String {
        use http_body::Body as _;
        let mut full = std::pin::pin!(full);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match full.as_mut().poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
            }
            _ => panic!("a full body is ready at once"),
        }
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let missing = rejection(Rejection::MissingToken);
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"tokengate\""
        );
        let expired = rejection(Rejection::Expired);
        assert_eq!(
            expired.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"tokengate\", error=\"invalid_token\", error_description=\"token_expired\""
        );
        let role = rejection(Rejection::MissingRole);
        assert_eq!(role.status(), StatusCode::FORBIDDEN);
        assert!(role.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("insufficient_scope"));
        let keys = rejection(Rejection::NoSigningKeys);
        assert_eq!(keys.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(keys.headers().contains_key(RETRY_AFTER));
        let timeout = rejection(Rejection::UpstreamTimeout);
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!timeout.headers().contains_key(WWW_AUTHENTICATE));
        let body = timeout.into_body();
        let http_body_util::Either::Right(full) = body else {
            panic!("generated body")
        };
        let bytes = body_text(full);
        assert_eq!(
            bytes,
            "{\"error\":\"gateway_timeout\",\"error_description\":\"upstream_timeout\"}\n"
        );
    }

    #[test]
    fn grpc_refusals_are_trailers_only_with_the_same_label() {
        use http_body::Body as _;
        for (r, code) in [
            (Rejection::MissingToken, "16"),
            (Rejection::Expired, "16"),
            (Rejection::MissingRole, "7"),
            (Rejection::InvalidPath, "3"),
            (Rejection::UpstreamUnavailable, "14"),
            (Rejection::NoSigningKeys, "14"),
            (Rejection::UpstreamTimeout, "4"),
        ] {
            let resp = rejection_for(r, true);
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()["grpc-status"], code, "{r:?}");
            assert_eq!(resp.headers()["grpc-message"], r.label());
            assert_eq!(resp.headers()[CONTENT_TYPE], "application/grpc");
            assert!(resp.body().is_end_stream(), "trailers-only: no DATA frame");
        }
        assert_eq!(
            rejection_for(Rejection::MissingToken, false).status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
