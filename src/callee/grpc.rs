//! What the proxy knows about gRPC: recognising a gRPC request, the status a refusal maps to,
//! and the client's `grpc-timeout` deadline.
//!
//! # Contract
//! - A request is gRPC when its `content-type` is `application/grpc`, optionally followed by
//!   `+<codec>` or `;<params>` (`application/grpc+proto`, `application/grpc-web` is not gRPC).
//! - A refusal of a gRPC request is a trailers-only response (`respond::rejection_for`): HTTP 200,
//!   `grpc-status` from [`status_for`], `grpc-message` the rejection's stable label, so clients
//!   see UNAUTHENTICATED or PERMISSION_DENIED rather than a transport error, whatever protocol the
//!   upstream speaks. This is what Envoy does for its own gRPC refusals.
//! - `grpc-timeout` is parsed strictly (1–8 digits and one unit, gRPC's HTTP/2 spec); a malformed
//!   value is ignored here and left for the upstream to judge.

use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, StatusCode};

/// `grpc-status`.
pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-timeout`.
pub static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// gRPC status codes the proxy can answer with (the subset of `google.rpc.Code` we use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 3: the request is malformed (HTTP 400).
    InvalidArgument = 3,
    /// 4: no response head in time (HTTP 504).
    DeadlineExceeded = 4,
    /// 7: authenticated but not allowed (HTTP 403).
    PermissionDenied = 7,
    /// 8: a limit was exceeded (HTTP 413).
    ResourceExhausted = 8,
    /// 12: the method is not served (HTTP 405).
    Unimplemented = 12,
    /// 13: anything unexpected.
    Internal = 13,
    /// 14: the upstream or the key source is unavailable (HTTP 502/503).
    Unavailable = 14,
    /// 16: no or an invalid credential (HTTP 401).
    Unauthenticated = 16,
}

impl Code {
    /// The decimal text carried in `grpc-status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "3",
            Code::DeadlineExceeded => "4",
            Code::PermissionDenied => "7",
            Code::ResourceExhausted => "8",
            Code::Unimplemented => "12",
            Code::Internal => "13",
            Code::Unavailable => "14",
            Code::Unauthenticated => "16",
        }
    }
}

/// Whether the request is a gRPC call (by its `content-type`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let b = ct.as_bytes();
    const PREFIX: &[u8] = b"application/grpc";
    if b.len() < PREFIX.len() || !b[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return false;
    }
    matches!(b.get(PREFIX.len()), None | Some(b'+') | Some(b';'))
}

/// The gRPC status for a refusal answered over plain HTTP with `status`.
pub const fn status_for(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        405 => Code::Unimplemented,
        413 => Code::ResourceExhausted,
        502 | 503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// The client's deadline from `grpc-timeout` (`<1-8 digits><H|M|S|m|u|n>`), if well-formed.
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn grpc_content_types_are_recognised_and_look_alikes_are_not() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/GRPC+json",
            "application/grpc;charset=utf-8",
        ] {
            assert!(is_grpc(&with("content-type", ct)), "{ct}");
        }
        for ct in [
            "application/grpc-web",
            "application/grpcx",
            "application/json",
            "text/grpc",
        ] {
            assert!(!is_grpc(&with("content-type", ct)), "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn statuses_map_like_the_issue_says() {
        assert_eq!(status_for(StatusCode::UNAUTHORIZED), Code::Unauthenticated);
        assert_eq!(status_for(StatusCode::FORBIDDEN), Code::PermissionDenied);
        assert_eq!(status_for(StatusCode::BAD_REQUEST), Code::InvalidArgument);
        assert_eq!(status_for(StatusCode::BAD_GATEWAY), Code::Unavailable);
        assert_eq!(
            status_for(StatusCode::SERVICE_UNAVAILABLE),
            Code::Unavailable
        );
        assert_eq!(
            status_for(StatusCode::GATEWAY_TIMEOUT),
            Code::DeadlineExceeded
        );
        assert_eq!(Code::Unauthenticated.as_str(), "16");
    }

    #[test]
    fn grpc_timeout_parses_strictly() {
        let t = |v| timeout(&with("grpc-timeout", v));
        assert_eq!(t("250m"), Some(Duration::from_millis(250)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789m", "1x", "-1S", "1.5S", "10"] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }
}
