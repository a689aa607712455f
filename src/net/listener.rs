//! Accepting connections: HTTP/1.1 and h2c (prior knowledge) on one port, or TLS (`tls`) with
//! ALPN h2 and http/1.1, with limits, idle timeout and a server-wide graceful shutdown.
//!
//! # Contract
//! - Every connection's bytes pass through `guard`, so smuggling shapes are seen before hyper
//!   resolves them, and idleness is measured.
//! - Header read timeout (slowloris), header size and count caps and HTTP/2 stream and
//!   header-list limits are set on every connection; h2's own defaults bound rapid resets. At most
//!   `limits.max_connections` connections are served at once (the rest wait in the kernel's
//!   accept queue). A connection idle for `limits.idle_timeout` is closed.
//! - On shutdown the listener stops accepting at once; connections finish their in-flight
//!   requests (HTTP/1.1 closes after the current response, HTTP/2 sends GOAWAY) for at most
//!   `limits.shutdown_grace`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::{Body as HttpBody, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::config::LimitsConfig;
use crate::guard::{ConnState, GuardedStream};
use crate::net::tls;
use crate::net::workers::{self, Workers};

/// What a handler knows about the connection a request came on.
#[derive(Clone)]
pub struct Conn {
    /// The client's address.
    pub peer: SocketAddr,
    /// Shared facts about the connection's byte stream.
    pub state: Arc<ConnState>,
    /// Set when the connection is TLS: what the handshake established.
    pub tls: Option<tls::Peer>,
}

/// Where a listener's connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the runtime that runs [`serve`]: for listeners with light traffic (admin, caller side).
    Here,
    /// On this many worker threads, each with its own single-threaded runtime owning its
    /// connections ([`crate::net::workers`]); 0 means one per core.
    Workers(usize),
}

/// One accepted connection, ready to be served once its byte stream is ready.
struct Connection<N> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    new_service: Arc<N>,
    shutdown: watch::Receiver<bool>,
    idle_timeout: Duration,
    peer: SocketAddr,
}

impl<N> Connection<N> {
    /// Serves HTTP/1.1 (with upgrades) or HTTP/2 on `io` until it closes, it idles out, or
    /// shutdown asks it to finish.
    async fn serve<IO, S, F, B>(mut self, io: IO, tls: Option<tls::Peer>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        N: Fn(Conn) -> S + Send + Sync + 'static,
        S: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
        B: HttpBody + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (io, state) = GuardedStream::new(io);
        let conn_info = Conn {
            peer: self.peer,
            state: state.clone(),
            tls,
        };
        // The connection's own service: whatever it keeps lives exactly as long as the
        // connection. Its futures go to hyper as they are: a wrapping `async` block would store
        // each one twice (issue 12: hyper keeps the future's box for the connection's life).
        let service = service_fn((self.new_service)(conn_info));
        let peer = self.peer;
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut closing = false;
        // Idleness is sampled four times per idle timeout rather than timed per read and write:
        // the byte stream only raises a flag. A connection closes between 1 and 1.25 idle
        // timeouts after its last byte.
        let tick = (self.idle_timeout / 4).max(Duration::from_millis(10));
        let mut quiet_since = Instant::now();
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with error");
                    }
                    break;
                }
                _ = stopped(&mut self.shutdown), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = tokio::time::sleep(tick), if !closing => {
                    let now = Instant::now();
                    if state.take_activity() {
                        quiet_since = now;
                    } else if now.duration_since(quiet_since) >= self.idle_timeout {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// Resolves once shutdown was asked for (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Serves `listener` until `shutdown` flips to true, then drains. Each connection gets its own
/// service from `new_service`, which answers that connection's requests (never failing: the
/// `Infallible` error is hyper's service contract). With `tls`, every
/// connection is a TLS connection; `placement` says which runtime serves the connections.
pub async fn serve<N, S, F, B>(
    listener: TcpListener,
    limits: LimitsConfig,
    tls: Option<Arc<tls::Acceptor>>,
    placement: Placement,
    new_service: N,
    mut shutdown: watch::Receiver<bool>,
) where
    N: Fn(Conn) -> S + Send + Sync + 'static,
    S: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let new_service = Arc::new(new_service);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(60)));
    let builder = Arc::new(builder);
    let workers = match placement {
        Placement::Here => None,
        Placement::Workers(n) => {
            let n = if n == 0 { workers::default_count() } else { n };
            match Workers::start(n, "tokengate-worker") {
                Ok(w) => Some(w),
                Err(error) => {
                    // Threads could not be made: serve here rather than not at all.
                    tracing::error!(%error, "starting worker threads; serving on the main runtime");
                    None
                }
            }
        }
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Every connection task holds a sender; when all are gone, draining is done.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);

    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut shutdown) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let task = Connection {
            builder: builder.clone(),
            new_service: new_service.clone(),
            shutdown: shutdown.clone(),
            idle_timeout: limits.idle_timeout,
            peer,
        };
        let tls = tls.clone();
        let handshake_timeout = limits.header_read_timeout;
        let alive = alive.clone();
        let connection = move |stream: TcpStream| async move {
            match tls {
                None => task.serve(stream, None).await,
                Some(tls) => {
                    // The handshake runs in the connection's task, bounded like a header read,
                    // so a slow or silent client never holds up the accept loop.
                    match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok((stream, peer_info))) => task.serve(stream, Some(peer_info)).await,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
            drop(alive);
        };
        match &workers {
            None => drop(tokio::spawn(connection(stream))),
            Some(workers) => {
                // The socket moves to the worker's reactor: leave ours, join theirs there.
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(error) => {
                        tracing::warn!(%peer, %error, "handing a connection to a worker");
                        continue;
                    }
                };
                workers.dispatch(move || async move {
                    match TcpStream::from_std(stream) {
                        Ok(stream) => connection(stream).await,
                        Err(error) => tracing::warn!(%peer, %error, "adopting a connection"),
                    }
                });
            }
        }
    }
    drop(listener);
    drop(alive);
    if tokio::time::timeout(limits.shutdown_grace, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "shutdown grace elapsed with requests in flight");
    }
    if let Some(workers) = workers {
        workers.stop().await;
    }
}

/// [`serve`] for a plain-HTTP listener with light traffic whose requests need nothing from their
/// connection (admin, the caller side): served on the current runtime, every connection
/// answering with the one `handle`.
pub async fn serve_shared<H, F, B>(
    listener: TcpListener,
    limits: LimitsConfig,
    handle: H,
    shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handle = Arc::new(handle);
    let per_connection = move |_conn| {
        let handle = handle.clone();
        move |req| handle(req)
    };
    serve(
        listener,
        limits,
        None,
        Placement::Here,
        per_connection,
        shutdown,
    )
    .await
}
