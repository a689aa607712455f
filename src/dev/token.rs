//! The dev issuer's token endpoint: what the caller side's `dev` source asks, so a caller and a
//! callee work end to end on a laptop with no tenant.
//!
//! `POST /{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`, `client_id` and
//! `scope={resource}/.default` answers a v2 app-only token for `resource`, signed with the dev
//! issuer's `rsa-1` key, with the roles named in `tokengate_dev_roles` (space-separated). It
//! trusts whoever can reach it, so it binds loopback only. Not public API.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use super::{v2_issuer, DevIssuer, DEV_CALLER_OID};
use crate::caller::form;

/// A running dev token endpoint.
pub struct DevTokenServer {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DevTokenServer {
    /// Serves tokens from `issuer` on `127.0.0.1:0`.
    pub async fn start(issuer: Arc<DevIssuer>) -> std::io::Result<DevTokenServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let issuer = issuer.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let issuer = issuer.clone();
                        async move { Ok::<_, Infallible>(answer(req, &issuer).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(DevTokenServer { addr, task })
    }

    /// The `authority_host` for a `dev` source.
    pub fn authority(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DevTokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(req: Request<Incoming>, issuer: &DevIssuer) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: serde_json::Value| {
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    let oauth_error = |code: &str, description: &str| {
        reply(
            StatusCode::BAD_REQUEST,
            json!({"error": code, "error_description": description}),
        )
    };
    let expected = format!("/{}/oauth2/v2.0/token", issuer.tenant);
    if req.method() != Method::POST || req.uri().path() != expected {
        return reply(StatusCode::NOT_FOUND, json!({"error": "not_found"}));
    }
    let Ok(body) = Limited::new(req.into_body(), 64 * 1024).collect().await else {
        return oauth_error("invalid_request", "body too large");
    };
    let Some(fields) = std::str::from_utf8(&body.to_bytes())
        .ok()
        .and_then(form::parse)
    else {
        return oauth_error("invalid_request", "not a form body");
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("grant_type") != Some("client_credentials") {
        return oauth_error("unsupported_grant_type", "only client_credentials");
    }
    let Some(client_id) = field("client_id") else {
        return oauth_error("invalid_request", "client_id is required");
    };
    let Some(resource) = field("scope").and_then(|s| s.strip_suffix("/.default")) else {
        return oauth_error("invalid_scope", "scope must be {resource}/.default");
    };
    let roles: Vec<&str> = field("tokengate_dev_roles")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let now = crate::pipeline::unix_now();
    let claims = json!({
        "aud": resource,
        "iss": v2_issuer(&issuer.tenant),
        "iat": now, "nbf": now, "exp": now + 3600,
        "azp": client_id,
        "azpacr": "2",
        "oid": DEV_CALLER_OID,
        "sub": DEV_CALLER_OID,
        "tid": issuer.tenant,
        "roles": roles,
        "ver": "2.0",
    });
    reply(
        StatusCode::OK,
        json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": issuer.rs256(&claims),
        }),
    )
}
