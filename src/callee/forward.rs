//! The upstream client, speaking HTTP/1.1 or HTTP/2 to the upstream.
//!
//! # Contract
//! - HTTP/1.1 upstream connections belong to the worker thread that opened them
//!   ([`Pool::Worker`]): each worker keeps its own idle list, so a request takes no shared lock
//!   and no pool checkout machinery (issue 12 measured hyper-util's shared pool at 0.61x of nginx
//!   against 0.99x for connections owned per thread, nginx's own shape). A worker opens at most
//!   its share of `upstream.max_connections`; a request finding them all busy waits for one,
//!   at most `upstream.connect_timeout` (then 502, like a connect that did not happen in time).
//!   Idle ones are reused most-recent first and closed after `upstream.pool_idle_timeout`.
//! - The shared pools of hyper-util's client ([`Pool::Shared`]) carry the rest: HTTP/2 upstreams
//!   (one multiplexed connection), WebSocket handshakes (the connection leaves HTTP), and callers
//!   outside the workers (the caller side's egress routes).
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

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{Either, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::sync::{oneshot, Notify};
use tower_service::Service as _;

use bytes::Bytes;

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

/// The upstream clients: the shared pools, one per protocol, and what opens a worker's own
/// HTTP/1.1 connections. Connections are only opened when used.
pub struct Upstream {
    http1: Client<HttpsConnector, Outgoing>,
    http2: Client<HttpsConnector, Outgoing>,
    connector: HttpsConnector,
    owned: http1::Builder,
    idle_timeout: Duration,
    /// Each worker's share of `upstream.max_connections`.
    per_worker: usize,
    /// The longest a request waits for one of them (`upstream.connect_timeout`).
    wait: Duration,
    /// Tells this client's connections from another's in a worker's lists.
    id: u64,
}

/// Which connections an HTTP/1.1 request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// The current thread's own idle connections (a worker's requests).
    Worker,
    /// hyper-util's shared pool (WebSocket handshakes, callers outside the workers).
    Shared,
}

/// An idle HTTP/1.1 upstream connection in a worker's list.
struct Idle {
    scheme: Option<Scheme>,
    authority: Option<Authority>,
    sender: http1::SendRequest<Outgoing>,
    since: Instant,
}

/// One worker's HTTP/1.1 connections to one [`Upstream`]: the idle ones, and the bound on all.
struct WorkerPool {
    upstream: u64,
    idle: VecDeque<Idle>,
    gate: Arc<Gate>,
}

/// Counts a worker's open connections against its share of `upstream.max_connections`.
struct Gate {
    open: AtomicUsize,
    max: usize,
    /// A connection went idle or closed.
    freed: Notify,
}

impl Gate {
    /// Reserves room for one more connection, if there is any.
    fn try_open(self: &Arc<Self>) -> Option<Opened> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Opened(self.clone()))
    }

    fn has_room(&self) -> bool {
        self.open.load(Ordering::Acquire) < self.max
    }
}

/// One open connection's place under its worker's bound, given back when the connection ends.
struct Opened(Arc<Gate>);

impl Drop for Opened {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

thread_local! {
    /// This thread's own upstream connections, per [`Upstream`] (normally just one).
    static WORKER_POOLS: RefCell<Vec<WorkerPool>> = const { RefCell::new(Vec::new()) };
}

impl Upstream {
    /// Clients configured from `[upstream]`'s start-only settings, for `workers` workers.
    pub fn new(
        cfg: &UpstreamPool,
        extra_ca: &[CertificateDer<'static>],
        workers: usize,
    ) -> Upstream {
        static IDS: AtomicU64 = AtomicU64::new(0);
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
            owned: http1::Builder::new(),
            idle_timeout: cfg.pool_idle_timeout,
            per_worker: cfg.max_connections.div_ceil(workers.max(1)),
            wait: cfg.connect_timeout,
            id: IDS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Sends `req` (already rewritten, its URI absolute, its version set by
    /// [`Protocol::version`]) with `protocol`, an HTTP/1.1 request over a connection from `pool`.
    /// Waits for the response head at most `timeout` after the request body has been sent, and
    /// never past `deadline`. Returns the response and the time the head took.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
        protocol: Protocol,
        pool: Pool,
        timeout: Duration,
        deadline: Option<Instant>,
    ) -> Result<(Response<ResponseBody>, Duration), Rejection> {
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
            match (protocol, pool) {
                (Protocol::Http1, Pool::Worker) => self.send_owned(req).await,
                // The shared pools' futures are large and rarely used: boxed, so that every
                // request's own state stays small (it lives as long as its connection).
                (Protocol::Http1, Pool::Shared) => Box::pin(self.http1.request(req))
                    .await
                    .map(|resp| resp.map(ResponseBody::shared))
                    .map_err(SendError::from),
                (Protocol::Http2, _) => Box::pin(self.http2.request(req))
                    .await
                    .map(|resp| resp.map(ResponseBody::shared))
                    .map_err(SendError::from),
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

    /// Sends over one of this worker's idle connections to the request's upstream, or a new one.
    /// A kept connection that turns out closed before the request was written is replaced once.
    async fn send_owned(
        &self,
        mut req: Request<Outgoing>,
    ) -> Result<Response<ResponseBody>, SendError> {
        let origin = req.uri().clone();
        // An owned connection is to the one upstream: the request line takes the origin form.
        if let Some(pq) = origin.path_and_query() {
            *req.uri_mut() = Uri::from(pq.clone());
        }
        let (mut sender, mut reused) = self.checkout(&origin).await?;
        loop {
            if sender.ready().await.is_err() && reused {
                // It closed while idle: open a fresh one.
                reused = false;
                sender = self.reopen(&origin).await?;
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    // Back to the idle list once the response has been read (see ResponseBody).
                    let back = Return {
                        pool: self.pool_key(),
                        scheme: origin.scheme().cloned(),
                        authority: origin.authority().cloned(),
                        sender,
                    };
                    return Ok(resp.map(|body| ResponseBody::owned(body, back)));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: the kept-alive connection was already closing.
                    Some(unsent) if reused => {
                        req = unsent;
                        reused = false;
                        sender = self.reopen(&origin).await?;
                    }
                    _ => return Err(error.into_error().into()),
                },
            }
        }
    }

    /// A connection to `uri`'s origin for one request: this worker's most recently used idle
    /// one (`true`), or a new one when the worker's share of `upstream.max_connections` has room
    /// (`false`). Otherwise waits until a connection goes idle or closes.
    async fn checkout(&self, uri: &Uri) -> Result<(http1::SendRequest<Outgoing>, bool), SendError> {
        // Waiting for a connection is bounded like opening one: a client that holds its
        // connections busy (reading its responses slowly, say) cannot park everyone else's
        // requests for ever.
        let mut give_up = None;
        loop {
            let gate = match self.with_pool(|pool| self.take_idle(pool, uri)) {
                Ok(sender) => return Ok((sender, true)),
                Err(gate) => gate,
            };
            if let Some(room) = gate.try_open() {
                return Ok((Box::pin(self.open(uri, room)).await?, false));
            }
            // Full: wait for a connection to come back or close. Registered before looking
            // again, so a release in between is not missed.
            let freed = gate.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let ready = self.with_pool(|pool| {
                if pool.idle.iter().any(|c| same_origin(c, uri)) {
                    return true;
                }
                // Idle connections to another origin (upstream.url changed on reload) give
                // their place up.
                pool.idle.pop_front().is_some()
            });
            if !ready && !gate.has_room() {
                let at = *give_up.get_or_insert_with(|| tokio::time::Instant::now() + self.wait);
                if tokio::time::timeout_at(at, freed).await.is_err() {
                    return Err(
                        "no upstream connection free within upstream.connect_timeout".into(),
                    );
                }
            }
        }
    }

    /// A fresh connection in place of one found closed, once the closed one's place is free
    /// (its task ends soon after), waiting at most `upstream.connect_timeout`.
    async fn reopen(&self, uri: &Uri) -> Result<http1::SendRequest<Outgoing>, SendError> {
        let gate = self.with_pool(|pool| pool.gate.clone());
        let give_up = tokio::time::Instant::now() + self.wait;
        loop {
            if let Some(room) = gate.try_open() {
                return Box::pin(self.open(uri, room)).await;
            }
            let freed = gate.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if !gate.has_room() && tokio::time::timeout_at(give_up, freed).await.is_err() {
                return Err("no upstream connection free within upstream.connect_timeout".into());
            }
        }
    }

    /// Runs `f` on this thread's pool for this upstream.
    fn with_pool<T>(&self, f: impl FnOnce(&mut WorkerPool) -> T) -> T {
        with_pool(&self.pool_key(), f)
    }

    fn pool_key(&self) -> PoolKey {
        PoolKey {
            upstream: self.id,
            per_worker: self.per_worker,
            idle_timeout: self.idle_timeout,
        }
    }

    /// The most recently used idle connection to `uri`'s origin that is still open and fresh;
    /// else the pool's gate.
    fn take_idle(
        &self,
        pool: &mut WorkerPool,
        uri: &Uri,
    ) -> Result<http1::SendRequest<Outgoing>, Arc<Gate>> {
        while let Some(at) = pool.idle.iter().rposition(|c| same_origin(c, uri)) {
            let Some(c) = pool.idle.remove(at) else { break };
            if c.since.elapsed() < self.idle_timeout && !c.sender.is_closed() {
                return Ok(c.sender);
            }
        }
        Err(pool.gate.clone())
    }

    /// Opens an HTTP/1.1 connection to `uri`'s authority, its task on the current runtime,
    /// holding its `room` under the worker's bound until it ends.
    async fn open(
        &self,
        uri: &Uri,
        room: Opened,
    ) -> Result<http1::SendRequest<Outgoing>, SendError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(uri.clone()).await?;
        let (sender, connection) = self.owned.handshake(io).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with error");
            }
            drop(room);
        });
        Ok(sender)
    }
}

/// Which worker pool a connection belongs to, and how long it may idle there.
#[derive(Clone, Copy)]
struct PoolKey {
    upstream: u64,
    per_worker: usize,
    idle_timeout: Duration,
}

/// Runs `f` on this thread's pool for `key`'s upstream, making it on first use.
fn with_pool<T>(key: &PoolKey, f: impl FnOnce(&mut WorkerPool) -> T) -> T {
    WORKER_POOLS.with(|pools| {
        let mut pools = pools.borrow_mut();
        let at = match pools.iter().position(|p| p.upstream == key.upstream) {
            Some(at) => at,
            None => {
                pools.push(WorkerPool {
                    upstream: key.upstream,
                    idle: VecDeque::new(),
                    gate: Arc::new(Gate {
                        open: AtomicUsize::new(0),
                        max: key.per_worker,
                        freed: Notify::new(),
                    }),
                });
                pools.len() - 1
            }
        };
        f(&mut pools[at])
    })
}

/// A worker's connection on its way back to the idle list.
struct Return {
    pool: PoolKey,
    scheme: Option<Scheme>,
    authority: Option<Authority>,
    sender: http1::SendRequest<Outgoing>,
}

impl Return {
    /// Puts the connection back (most recent last), dropping entries past their idle time, and
    /// wakes one request waiting for a connection.
    fn keep(self) {
        let Return {
            pool: key,
            scheme,
            authority,
            sender,
        } = self;
        with_pool(&key, |pool| {
            while pool
                .idle
                .front()
                .is_some_and(|c| c.since.elapsed() >= key.idle_timeout)
            {
                pool.idle.pop_front();
            }
            pool.idle.push_back(Idle {
                scheme,
                authority,
                sender,
                since: Instant::now(),
            });
            pool.gate.freed.notify_one();
        })
    }
}

/// A response body from the upstream. A worker's own HTTP/1.1 connection goes back to the
/// worker's idle list only once this body has been read to its end: hyper takes the next request
/// on it only then, so a connection handed out earlier would make the next request wait behind a
/// long download or stream. A body dropped unread, or failing, takes its connection with it (its
/// state is unknown).
pub struct ResponseBody {
    inner: Incoming,
    back: Option<Return>,
}

impl ResponseBody {
    fn shared(inner: Incoming) -> ResponseBody {
        ResponseBody { inner, back: None }
    }

    fn owned(inner: Incoming, back: Return) -> ResponseBody {
        let mut body = ResponseBody {
            inner,
            back: Some(back),
        };
        // A body known empty (HEAD, 204, 304, Content-Length: 0) may never be polled.
        if body.inner.is_end_stream() {
            body.finished();
        }
        body
    }

    fn finished(&mut self) {
        if let Some(back) = self.back.take() {
            back.keep();
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finished(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finished(),
            Poll::Ready(Some(Err(_))) => this.back = None,
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

/// Whether an idle connection goes to `uri`'s scheme and authority.
fn same_origin(c: &Idle, uri: &Uri) -> bool {
    c.scheme.as_ref() == uri.scheme() && c.authority.as_ref() == uri.authority()
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
