//! A fault-injecting OIDC provider on loopback: serves the issuer's discovery document and JWKS,
//! and can be told to misbehave (fail, hang, return garbage) so the proxy can be tested against a
//! real server doing what real IdPs do on a bad day.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::issuer::*;

/// How the [`IdpServer`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpMode {
    /// Serve discovery and JWKS.
    Healthy,
    /// Answer 500 to everything.
    Failing,
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Accept, then never answer.
    Hanging,
}

/// A discovery + JWKS server on loopback whose answers tests can change.
pub struct IdpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<(IdpMode, Value)>>,
    jwks_hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl IdpServer {
    /// Serves `jwks` on `127.0.0.1:0` at `/keys`, with discovery at
    /// `/.well-known/openid-configuration`.
    pub async fn start(jwks: Value) -> std::io::Result<IdpServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new((IdpMode::Healthy, jwks)));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let (st, hits) = (state.clone(), jwks_hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, hits) = (st.clone(), hits.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (st, hits) = (st.clone(), hits.clone());
                        async move { Ok::<_, Infallible>(idp_answer(req, addr, &st, &hits).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(IdpServer {
            addr,
            state,
            jwks_hits,
            task,
        })
    }

    /// The discovery URL.
    pub fn discovery_url(&self) -> String {
        format!("http://{}/.well-known/openid-configuration", self.addr)
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/keys", self.addr)
    }

    /// Changes how it answers.
    pub fn set_mode(&self, mode: IdpMode) {
        self.state.lock().expect("idp state").0 = mode;
    }

    /// Changes the published keys.
    pub fn set_jwks(&self, jwks: Value) {
        self.state.lock().expect("idp state").1 = jwks;
    }

    /// How many JWKS requests it has received.
    pub fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

impl Drop for IdpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn idp_answer(
    req: Request<Incoming>,
    addr: SocketAddr,
    state: &Mutex<(IdpMode, Value)>,
    hits: &AtomicUsize,
) -> Response<Full<Bytes>> {
    let (mode, jwks) = state.lock().expect("idp state").clone();
    if req.uri().path() == "/keys" {
        hits.fetch_add(1, Ordering::SeqCst);
    }
    let respond = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    match mode {
        IdpMode::Failing => return respond(StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
        IdpMode::Garbage => return respond(StatusCode::OK, "<html>not json".into()),
        IdpMode::Hanging => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        IdpMode::Healthy => {}
    }
    let path = req.uri().path();
    // Discovery at the root and, like Entra, under `/<tenant>/v2.0/` and the multi-tenant
    // `/common/v2.0/` and `/organizations/v2.0/`, whose issuer is the `{tenantid}` template.
    if let Some(prefix) = path.strip_suffix("/.well-known/openid-configuration") {
        let tenant = prefix
            .trim_start_matches('/')
            .split('/')
            .next()
            .filter(|t| !t.is_empty())
            .unwrap_or(DEV_TENANT);
        let tenant = match tenant {
            "common" | "organizations" => "{tenantid}",
            t => t,
        };
        return respond(
            StatusCode::OK,
            json!({
                "issuer": v2_issuer(tenant),
                "jwks_uri": format!("http://{addr}/keys"),
                "id_token_signing_alg_values_supported": ["RS256"],
            })
            .to_string(),
        );
    }
    match path {
        "/keys" => respond(StatusCode::OK, jwks.to_string()),
        _ => respond(StatusCode::NOT_FOUND, String::new()),
    }
}
