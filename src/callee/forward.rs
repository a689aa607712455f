//! The pooled upstream client, speaking HTTP/1.1 or HTTP/2 to the upstream.
//!
//! # Contract
//! - Connections to the upstream are pooled and reused (hyper-util's client); bodies and
//!   trailers stream both ways, frame by frame, never buffered whole, so client-, server- and
//!   bidirectional gRPC streams work.
//! - Two clients exist side by side, so `upstream.protocol` can change on reload: HTTP/1.1
//!   (ALPN `http/1.1` on https), and HTTP/2 (prior knowledge on http, ALPN `h2` on https, one
//!   multiplexed connection). [`Protocol`] picks one per request.
//! - A connect failure answers 502 within `upstream.connect_timeout`. `upstream.timeout` bounds
//!   only the wait for the response head once the request body has been sent whole: an upload
//!   or a client stream still running does not count against it, and a response body or server
//!   stream is never cut by it. A client `deadline` (gRPC's `grpc-timeout`), when given, bounds
//!   the wait for the head from the request's arrival. Either expiry answers 504. Nothing is
//!   retried: the request body may be half sent.
//! - https upstreams are verified against the system's CA certificates plus `tls.ca_file`
//!   ([`crate::net::client`] builds the connectors).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{Either, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::sync::oneshot;

use crate::config::{UpstreamPool, UpstreamProtocol};
use crate::net::client::{connector_for, Alpn, HttpsConnector};
use crate::reject::Rejection;

/// The body cap (`request_limits.max_body_bytes`): a declared `Content-Length` over it is refused
/// (413) before anything is sent; a body that grows past it while streaming fails the call.
pub fn limit_body<B>(
    headers: &http::HeaderMap,
    body: B,
    max: Option<u64>,
) -> Result<Either<B, Limited<B>>, Rejection> {
    let Some(max) = max else {
        return Ok(Either::Left(body));
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(Rejection::BodyTooLarge);
    }
    Ok(Either::Right(Limited::new(body, max as usize)))
}

/// The protocol one request is sent upstream with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 (prior knowledge on http, ALPN h2 on https).
    Http2,
}

impl Protocol {
    /// The protocol `upstream.protocol` asks for, for a request that arrived as `version`.
    pub fn choose(configured: UpstreamProtocol, version: Version) -> Protocol {
        match configured {
            UpstreamProtocol::Http1 => Protocol::Http1,
            UpstreamProtocol::Http2 => Protocol::Http2,
            UpstreamProtocol::Match if version == Version::HTTP_2 => Protocol::Http2,
            UpstreamProtocol::Match => Protocol::Http1,
        }
    }

    /// The request version hyper's client expects for this protocol.
    pub fn version(self) -> Version {
        match self {
            Protocol::Http1 => Version::HTTP_11,
            Protocol::Http2 => Version::HTTP_2,
        }
    }
}

/// A request body on its way upstream: as received, or capped at `limits.max_body_bytes`.
pub type UpstreamBody = Either<Incoming, Limited<Incoming>>;

/// The upstream clients, one per protocol; connections are only opened when used.
pub struct Upstream {
    http1: Client<HttpsConnector, Sent<UpstreamBody>>,
    http2: Client<HttpsConnector, Sent<UpstreamBody>>,
}

impl Upstream {
    /// Pooled clients configured from `[upstream]`'s start-only settings.
    pub fn new(cfg: &UpstreamPool, extra_ca: &[CertificateDer<'static>]) -> Upstream {
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(1024)
            .build(connector_for(cfg.connect_timeout, extra_ca, Alpn::Http1));
        let http2 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .http2_only(true)
            .timer(TokioTimer::new())
            // Dead connections are noticed between requests, not by the next caller.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_while_idle(true)
            .build(connector_for(cfg.connect_timeout, extra_ca, Alpn::Http2));
        Upstream { http1, http2 }
    }

    /// Sends `req` (already rewritten, its version set by [`Protocol::version`]) with
    /// `protocol`. Waits for the response head at most `timeout` after the request body has
    /// been sent, and never past `deadline`. Returns the response and the time the head took.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
        protocol: Protocol,
        timeout: Duration,
        deadline: Option<Instant>,
    ) -> Result<(Response<Incoming>, Duration), Rejection> {
        let started = Instant::now();
        let (sent_tx, sent_rx) = oneshot::channel();
        let req = req.map(|body| Sent::new(body, sent_tx));
        let response = match protocol {
            Protocol::Http1 => self.http1.request(req),
            Protocol::Http2 => self.http2.request(req),
        };
        // The head timer starts once the body is sent (or given up on: the sender is dropped).
        let head_wait = async {
            let _ = sent_rx.await;
            tokio::time::sleep(timeout).await;
        };
        let client_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            r = response => r,
            _ = head_wait => return Err(Rejection::UpstreamTimeout),
            _ = client_deadline => return Err(Rejection::UpstreamTimeout),
        };
        match result {
            Ok(resp) => Ok((resp, started.elapsed())),
            Err(error) => {
                if caused_by_body_limit(&error) {
                    return Err(Rejection::BodyTooLarge);
                }
                tracing::warn!(%error, ?protocol, "upstream request failed");
                Err(Rejection::UpstreamUnavailable)
            }
        }
    }
}

/// A request body that says when it has been sent whole (or dropped), so the head timeout
/// can start then. Frames and trailers pass through untouched.
pub struct Sent<B> {
    inner: B,
    sent: Option<oneshot::Sender<()>>,
}

impl<B: HttpBody> Sent<B> {
    fn new(inner: B, sent: oneshot::Sender<()>) -> Sent<B> {
        let mut body = Sent {
            inner,
            sent: Some(sent),
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
    }
}

impl<B: HttpBody + Unpin> HttpBody for Sent<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Sent<B> {
    fn drop(&mut self) {
        if let Some(tx) = self.sent.take() {
            let _ = tx.send(());
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
