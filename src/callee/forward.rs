//! The upstream client, speaking HTTP/1.1 or HTTP/2 to the upstream.
//!
//! # Contract
//! - An HTTP/1.1 client connection owns one HTTP/1.1 upstream connection ([`Dedicated`]),
//!   opened on its first request and closed with it: its requests take no shared lock and no
//!   pool checkout (issue 12 measured the shared pool at 0.61x of nginx against 0.99x for this
//!   shape). Upstream connections are thereby bounded by client connections
//!   (`limits.max_connections`).
//! - Everything else shares pooled, reused connections (hyper-util's client): HTTP/2 upstreams
//!   (one multiplexed connection), WebSocket handshakes, and a request that finds its client
//!   connection's own upstream connection busy (concurrent streams of an h2 client sent on as
//!   HTTP/1.1).
//! - Bodies and trailers stream both ways, frame by frame, never buffered whole, so client-,
//!   server- and bidirectional gRPC streams work.
//! - Two clients exist side by side, so `upstream.protocol` can change on reload: HTTP/1.1
//!   (ALPN `http/1.1` on https), and HTTP/2 (prior knowledge on http, ALPN `h2` on https, one
//!   multiplexed connection). [`Protocol`] picks one per request.
//! - A connect failure answers 502 within `upstream.connect_timeout`. `upstream.timeout` bounds
//!   only the wait for the response head once the request body has been sent whole: an upload
//!   or a client stream still running does not count against it, and a response body or server
//!   stream is never cut by it. A client `deadline` (gRPC's `grpc-timeout`), when given, bounds
//!   the wait for the head from the request's arrival. Either expiry answers 504. Nothing is
//!   retried once sent: the request body may be half sent. The one retry is of a request hyper
//!   hands back unsent because the kept-alive connection it was given had just closed.
//! - https upstreams are verified against the system's CA certificates plus `tls.ca_file`
//!   ([`crate::net::client`] builds the connectors).

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{Either, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::sync::oneshot;
use tower_service::Service as _;

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

/// What the upstream is sent: the request body, reporting when it has been sent whole.
type Outgoing = Sent<UpstreamBody>;

/// Boxed only on the error path.
type SendError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream clients: the shared pools, one per protocol, and what opens a client
/// connection's own HTTP/1.1 connection. Connections are only opened when used.
pub struct Upstream {
    http1: Client<HttpsConnector, Outgoing>,
    http2: Client<HttpsConnector, Outgoing>,
    connector: HttpsConnector,
    dedicated: http1::Builder,
    idle_timeout: Duration,
}

impl Upstream {
    /// Clients configured from `[upstream]`'s start-only settings.
    pub fn new(cfg: &UpstreamPool, extra_ca: &[CertificateDer<'static>]) -> Upstream {
        let connector = connector_for(cfg.connect_timeout, extra_ca, Alpn::Http1);
        let http1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(1024)
            .build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .http2_only(true)
            .timer(TokioTimer::new())
            // Dead connections are noticed between requests, not by the next caller.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_while_idle(true)
            .build(connector_for(cfg.connect_timeout, extra_ca, Alpn::Http2));
        Upstream {
            http1,
            http2,
            connector,
            dedicated: http1::Builder::new(),
            idle_timeout: cfg.pool_idle_timeout,
        }
    }

    /// Sends `req` (already rewritten, its URI absolute, its version set by
    /// [`Protocol::version`]) with `protocol`, over `dedicated` when given and free. Waits for the
    /// response head at most `timeout` after the request body has been sent, and never past
    /// `deadline`. Returns the response and the time the head took.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
        protocol: Protocol,
        dedicated: Option<&Dedicated>,
        timeout: Duration,
        deadline: Option<Instant>,
    ) -> Result<(Response<Incoming>, Duration), Rejection> {
        let started = Instant::now();
        // A request whose body is already complete (a GET, say) starts the head timer now;
        // only a body still streaming needs telling when it is done.
        let (sent_tx, sent_rx) = match req.body().is_end_stream() {
            true => (None, None),
            false => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
        };
        let req = req.map(|body| Sent::new(body, sent_tx));
        let response = async {
            match (protocol, dedicated) {
                (Protocol::Http1, Some(own)) => self.send_dedicated(own, req).await,
                (Protocol::Http1, None) => self.http1.request(req).await.map_err(SendError::from),
                (Protocol::Http2, _) => self.http2.request(req).await.map_err(SendError::from),
            }
        };
        // The head timer starts once the body is sent (or given up on: the sender is dropped).
        let head_wait = async {
            if let Some(sent) = sent_rx {
                let _ = sent.await;
            }
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
                if caused_by_body_limit(&*error) {
                    return Err(Rejection::BodyTooLarge);
                }
                tracing::warn!(%error, ?protocol, "upstream request failed");
                Err(Rejection::UpstreamUnavailable)
            }
        }
    }

    /// Sends over the client connection's own upstream connection, opening it when there is none
    /// (or it closed, or idled past `upstream.pool_idle_timeout`); the shared pool when it is
    /// busy with another request of the same client connection.
    async fn send_dedicated(
        &self,
        own: &Dedicated,
        mut req: Request<Outgoing>,
    ) -> Result<Response<Incoming>, SendError> {
        let Some(mut claim) = own.claim(self.idle_timeout) else {
            return Ok(self.http1.request(req).await?);
        };
        let origin = req.uri().clone();
        // An owned connection is to the one upstream: the request line takes the origin form.
        if let Some(pq) = origin.path_and_query() {
            *req.uri_mut() = Uri::from(pq.clone());
        }
        let mut reused = true;
        let mut sender = match claim.sender.take() {
            Some(s) => s,
            None => {
                reused = false;
                self.open(&origin).await?
            }
        };
        loop {
            if sender.ready().await.is_err() && reused {
                // It closed while idle: open a fresh one.
                reused = false;
                sender = self.open(&origin).await?;
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    claim.release(sender);
                    return Ok(resp);
                }
                Err(mut error) => match error.take_message() {
                    // Never written: the kept-alive connection was already closing.
                    Some(unsent) if reused => {
                        req = unsent;
                        reused = false;
                        sender = self.open(&origin).await?;
                    }
                    _ => return Err(error.into_error().into()),
                },
            }
        }
    }

    /// Opens an HTTP/1.1 connection to `uri`'s authority, its task on the current runtime.
    async fn open(&self, uri: &Uri) -> Result<http1::SendRequest<Outgoing>, SendError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(uri.clone()).await?;
        let (sender, connection) = self.dedicated.handshake(io).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with error");
            }
        });
        Ok(sender)
    }
}

/// The HTTP/1.1 upstream connection one client connection owns. It is dropped with the client
/// connection's service, which closes it.
#[derive(Default)]
pub struct Dedicated {
    slot: Mutex<Slot>,
}

#[derive(Default)]
enum Slot {
    /// No connection yet (or the last one failed).
    #[default]
    Empty,
    /// Ready for the next request since `since`.
    Idle {
        sender: http1::SendRequest<Outgoing>,
        since: Instant,
    },
    /// A request of this client connection is using it.
    Busy,
}

impl Dedicated {
    /// Claims the connection for one request: `None` while another request has it. A connection
    /// idle longer than `idle_timeout` is dropped (the upstream may be closing it).
    fn claim(&self, idle_timeout: Duration) -> Option<Claim<'_>> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let sender = match std::mem::replace(&mut *slot, Slot::Busy) {
            Slot::Busy => return None,
            Slot::Empty => None,
            Slot::Idle { sender, since } => {
                (since.elapsed() < idle_timeout && !sender.is_closed()).then_some(sender)
            }
        };
        Some(Claim { own: self, sender })
    }
}

/// One request's hold on a [`Dedicated`] connection. Released with the connection once the
/// response head is in; dropped otherwise (an error, a timeout, a client gone mid-request), which
/// leaves the slot empty: a connection in an unknown state is never reused.
struct Claim<'a> {
    own: &'a Dedicated,
    /// The connection: the kept one when claimed, and the one to keep when released.
    sender: Option<http1::SendRequest<Outgoing>>,
}

impl Claim<'_> {
    fn release(mut self, sender: http1::SendRequest<Outgoing>) {
        self.sender = Some(sender);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let next = match self.sender.take() {
            Some(sender) => Slot::Idle {
                sender,
                since: Instant::now(),
            },
            None => Slot::Empty,
        };
        *self.own.slot.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }
}

/// A request body that says when it has been sent whole (or dropped), so the head timeout
/// can start then. Frames and trailers pass through untouched.
pub struct Sent<B> {
    inner: B,
    sent: Option<oneshot::Sender<()>>,
}

impl<B: HttpBody> Sent<B> {
    fn new(inner: B, sent: Option<oneshot::Sender<()>>) -> Sent<B> {
        let mut body = Sent { inner, sent };
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
