//! The pooled upstream client.
//!
//! # Contract
//! - Connections to the upstream are pooled and reused (hyper-util's client); bodies stream both
//!   ways, never buffered whole.
//! - A connect failure answers 502 within `upstream.connect_timeout`; no response head within
//!   `upstream.timeout` answers 504. Neither is retried: the request body may be half sent.
//! - https upstreams are verified against the system's CA certificates plus `tls.ca_file`
//!   ([`crate::net::client`] builds the connector).

use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::{Either, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;

use crate::config::UpstreamConfig;
use crate::net::client::{https_connector, HttpsConnector};
use crate::reject::Rejection;

/// A request body on its way upstream: as received, or capped at `limits.max_body_bytes`.
pub type UpstreamBody = Either<Incoming, Limited<Incoming>>;

/// The upstream client.
pub struct Upstream {
    client: Client<HttpsConnector, UpstreamBody>,
}

impl Upstream {
    /// A pooled client configured from `[upstream]`.
    pub fn new(cfg: &UpstreamConfig, extra_ca: &[CertificateDer<'static>]) -> Upstream {
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(1024)
            .build(https_connector(cfg.connect_timeout, extra_ca));
        Upstream { client }
    }

    /// Sends `req` (already rewritten) and waits for the response head at most `timeout`.
    /// Returns the response and the time the head took.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
        timeout: Duration,
    ) -> Result<(Response<Incoming>, Duration), Rejection> {
        let started = Instant::now();
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok((resp, started.elapsed())),
            Ok(Err(error)) => {
                if caused_by_body_limit(&error) {
                    return Err(Rejection::BodyTooLarge);
                }
                tracing::warn!(%error, "upstream request failed");
                Err(Rejection::UpstreamUnavailable)
            }
            Err(_) => Err(Rejection::UpstreamTimeout),
        }
    }
}

/// Whether a client error was our own body cap cutting the upload short.
fn caused_by_body_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}
