//! WebSocket: recognising an upgrade request, and splicing the two connections once the
//! upstream accepted it.
//!
//! # Contract
//! - Only an HTTP/1.1 `GET` with `Upgrade: websocket` and `Connection: upgrade` is a WebSocket
//!   upgrade. It is normalized, authenticated and authorized like any request (the pipeline
//!   runs in full before we get here); then `Connection: upgrade` and `Upgrade: websocket` are
//!   put back after the hop-by-hop strip and the request goes to the upstream over HTTP/1.1,
//!   whatever `upstream.protocol` says.
//! - Every other upgrade (h2c, unknown tokens) keeps its `Upgrade` header stripped as
//!   hop-by-hop, so it is never forwarded.
//! - Only when the upstream answers `101` are the two connections spliced, both ways, byte for
//!   byte, until either side closes or no byte moved either way for
//!   `limits.upgrade_idle_timeout`; then both are closed. A non-101 answer is an ordinary
//!   response.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::metrics::{Metrics, SpliceEnd};

/// Whether `req` asks for a WebSocket upgrade we forward.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && has_token(req.headers(), &CONNECTION, "upgrade")
        && req
            .headers()
            .get(UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// Puts back the two hop-by-hop fields a WebSocket handshake needs (after stripping).
pub fn restore_headers(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// Splices the client's and the upstream's upgraded connections in a task of its own.
pub fn spawn_splice(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle_timeout: Duration,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                return;
            }
        };
        metrics.websocket_opened();
        // Counted before either socket closes: whoever sees the close sees the count.
        let closed = |end| {
            tracing::debug!(?end, "websocket closed");
            metrics.websocket_closed(end);
        };
        splice(
            TokioIo::new(client),
            TokioIo::new(upstream),
            idle_timeout,
            closed,
        )
        .await;
    });
}

/// Copies both ways until either side closes, an error, or `idle_timeout` without traffic;
/// then tells `ended` why, and only then closes both connections.
pub async fn splice<A, B>(
    a: A,
    b: B,
    idle_timeout: Duration,
    ended: impl FnOnce(SpliceEnd),
) -> SpliceEnd
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    // Each direction runs on its own so a stalled writer on one side never blocks the other.
    let a_to_b = pump(&mut a_read, &mut b_write, &activity);
    let b_to_a = pump(&mut b_read, &mut a_write, &activity);
    let end = tokio::select! {
        r = a_to_b => r,
        r = b_to_a => r,
        _ = activity.idle(idle_timeout) => SpliceEnd::IdleTimeout,
    };
    ended(end);
    // Whatever ended it, both connections close (dropping the halves closes the sockets).
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = a_write.shutdown().await;
        let _ = b_write.shutdown().await;
    })
    .await;
    end
}

/// Copies `from` to `to` until EOF (then shuts `to` down) or an error.
async fn pump<R, W>(from: &mut R, to: &mut W, activity: &Activity) -> SpliceEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return SpliceEnd::Closed;
            }
            Ok(n) => n,
            Err(_) => return SpliceEnd::Error,
        };
        activity.touch();
        if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
            return SpliceEnd::Error;
        }
        activity.touch();
    }
}

/// When bytes last moved either way.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Resolves once nothing moved for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

/// Whether a comma-separated header lists `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: &http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, method: Method, conn: &str, upgrade: &str) -> Request<()> {
        Request::builder()
            .version(version)
            .method(method)
            .header("connection", conn)
            .header("upgrade", upgrade)
            .body(())
            .unwrap()
    }

    #[test]
    fn only_http1_get_websocket_upgrades_qualify() {
        assert!(is_websocket(&req(
            Version::HTTP_11,
            Method::GET,
            "keep-alive, Upgrade",
            "WebSocket"
        )));
        assert!(!is_websocket(&req(
            Version::HTTP_11,
            Method::GET,
            "upgrade",
            "h2c"
        )));
        assert!(!is_websocket(&req(
            Version::HTTP_11,
            Method::POST,
            "upgrade",
            "websocket"
        )));
        assert!(!is_websocket(&req(
            Version::HTTP_11,
            Method::GET,
            "keep-alive",
            "websocket"
        )));
        assert!(!is_websocket(&req(
            Version::HTTP_10,
            Method::GET,
            "upgrade",
            "websocket"
        )));
    }

    #[tokio::test]
    async fn splice_copies_both_ways_and_ends_when_idle() {
        let (mut client, proxy_a) = tokio::io::duplex(1024);
        let (proxy_b, mut server) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(proxy_a, proxy_b, Duration::from_millis(200), |_| {}));
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        server.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert_eq!(task.await.unwrap(), SpliceEnd::IdleTimeout);
        // Both ends see the close.
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn splice_ends_when_one_side_closes() {
        let (client, proxy_a) = tokio::io::duplex(1024);
        let (proxy_b, mut server) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(proxy_a, proxy_b, Duration::from_secs(30), |_| {}));
        drop(client);
        assert_eq!(task.await.unwrap(), SpliceEnd::Closed);
        let mut buf = [0u8; 4];
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
    }
}
