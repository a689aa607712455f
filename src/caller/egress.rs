//! Egress routes: the app calls `http://{listen}/...`, we forward to `upstream` with
//! `Authorization: Bearer <token for resource>`.
//!
//! # Contract
//! - Any `Authorization` the app sent is replaced, never passed along beside ours; hop-by-hop
//!   headers are removed both ways (the callee side's `rewrite::strip_hop_by_hop`).
//! - Forwarding is the callee side's pooled, streaming client (`forward::Upstream`) with the
//!   route's timeouts and the process's TLS trust; its failures answer 502/504 the same way.
//! - No token, no call: when none can be had within the route's `timeout`, the app gets 503 with
//!   a JSON error naming the failure, and nothing is sent upstream.
//! - The token is set as a sensitive header value and never logged.

use std::sync::Arc;

use http::header::{AUTHORIZATION, HOST, RETRY_AFTER};
use http::uri::Uri;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use rustls::pki_types::CertificateDer;
use serde_json::json;

use super::cache::TokenCache;
use super::config::EgressRoute;
use crate::forward::{Pool, Protocol, Upstream};
use crate::respond::{self, Body};
use crate::rewrite;

/// One route's state.
pub struct Egress {
    route: EgressRoute,
    upstream: Upstream,
    cache: Arc<TokenCache>,
}

impl Egress {
    /// The route over `cache`; https upstreams trust the system's CAs plus `extra_ca`.
    pub fn new(
        route: EgressRoute,
        cache: Arc<TokenCache>,
        extra_ca: &[CertificateDer<'static>],
    ) -> Egress {
        let upstream = Upstream::new(&route.pool, extra_ca, 1);
        cache.prefetch(&route.resource);
        Egress {
            route,
            upstream,
            cache,
        }
    }

    /// Forwards one request with a token.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let resource = &self.route.resource;
        let token = match self
            .cache
            .token(resource, self.route.upstream.timeout)
            .await
        {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(%resource, reason = why.label(), "egress: no token; not forwarded");
                let body = json!({
                    "error": "temporarily_unavailable",
                    "error_description": why.label(),
                });
                let mut resp = respond::json(StatusCode::SERVICE_UNAVAILABLE, format!("{body}\n"));
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("5"));
                return resp;
            }
        };
        let protocol = Protocol::choose(self.route.upstream.protocol, req.version());
        let (mut parts, body) = req.into_parts();
        let Some(target) = self.target(&parts.uri) else {
            return respond::json(
                StatusCode::BAD_REQUEST,
                "{\"error\":\"invalid_request\",\"error_description\":\"bad request target\"}\n",
            );
        };
        rewrite::strip_hop_by_hop(&mut parts.headers);
        let Ok(mut bearer) = HeaderValue::from_str(&format!("Bearer {}", token.secret())) else {
            tracing::warn!(%resource, "egress: the token is not a valid header value");
            return respond::json(
                StatusCode::BAD_GATEWAY,
                "{\"error\":\"bad_gateway\",\"error_description\":\"bad_response\"}\n",
            );
        };
        bearer.set_sensitive(true);
        parts.headers.insert(AUTHORIZATION, bearer);
        parts.headers.remove(HOST);
        if let Some(host) = target
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(HOST, host);
        }
        parts.uri = target;
        parts.version = protocol.version();
        let req = Request::from_parts(parts, Either::Left(body));
        match self
            .upstream
            .send(
                req,
                protocol,
                Pool::Shared,
                self.route.upstream.timeout,
                None,
            )
            .await
        {
            Ok((mut resp, _)) => {
                rewrite::strip_hop_by_hop(resp.headers_mut());
                resp.map(Either::Left)
            }
            Err(rejection) => {
                tracing::warn!(%resource, reason = rejection.label(), "egress: upstream failed");
                respond::rejection(rejection)
            }
        }
    }

    /// The upstream's scheme and authority with the app's path and query, as sent (the callee
    /// side normalizes what it authorizes; we add nothing to interpret).
    fn target(&self, uri: &Uri) -> Option<Uri> {
        let base = &self.route.upstream.url;
        let mut parts = http::uri::Parts::default();
        parts.scheme = base.scheme().cloned();
        parts.authority = base.authority().cloned();
        parts.path_and_query = Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).ok()
    }
}
