//! The admin listener: `/healthz`, `/readyz`, `/metrics`. Never served on the public port.
//!
//! - `/healthz`: the process is up (liveness).
//! - `/readyz`: signing keys are loaded, so valid tokens can be accepted, and every egress route
//!   holds a token (readiness). Stays ready while the IdP is down as long as the last good keys
//!   (and tokens) are held.
//! - `/metrics`: Prometheus text format.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::metrics::Metrics;
use crate::respond::{self, Body};

/// Answers one admin request. `not_ready` says why the process is not ready, if it is not.
pub fn handle(
    req: &Request<Incoming>,
    not_ready: impl FnOnce() -> Option<&'static str>,
    metrics: &Arc<Metrics>,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" => respond::text(StatusCode::OK, "ok\n"),
        "/readyz" => match not_ready() {
            None => respond::text(StatusCode::OK, "ready\n"),
            Some(why) => respond::text(StatusCode::SERVICE_UNAVAILABLE, why),
        },
        "/metrics" => {
            let mut resp = Response::new(http_body_util::Either::Right(http_body_util::Full::new(
                Bytes::from(metrics.render()),
            )));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => respond::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
