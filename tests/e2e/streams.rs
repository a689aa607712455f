//! HTTP/2 upstream and streaming semantics, in process with hyper on both sides: trailers both
//! ways and `te: trailers` to an HTTP/2 upstream, the head timeout counted only once the body is
//! sent, `grpc-timeout` as the deadline, h2c upgrades never forwarded, WebSocket idle timeout.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::proto_support::proxy_config;
use crate::support::{raw_request, Harness};

/// A body fed from a channel, so a test decides when each frame (and the trailers) goes.
mod channel_body {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use hyper::body::Frame;
    use tokio::sync::mpsc;

    pub struct Receiver(pub mpsc::Receiver<Frame<Bytes>>);

    impl http_body::Body for Receiver {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|f| f.map(Ok))
        }
    }
}

/// What the HTTP/2 upstream saw of one request.
#[derive(Default, Debug, Clone)]
struct H2Seen {
    te: Option<String>,
    host: Option<String>,
    authority: Option<String>,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

/// An HTTP/2-only (prior knowledge) upstream: records each request, streams the body back and
/// ends with a `x-upstream-trailer` trailer.
async fn h2_upstream() -> (String, Arc<Mutex<Vec<H2Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let s = s.clone();
                    async move {
                        let mut rec = H2Seen {
                            te: header(req.headers(), "te"),
                            host: header(req.headers(), "host"),
                            authority: req.uri().authority().map(|a| a.to_string()),
                            ..H2Seen::default()
                        };
                        let mut body = req.into_body();
                        while let Some(Ok(frame)) = body.frame().await {
                            match frame.into_data() {
                                Ok(d) => rec.body.extend_from_slice(&d),
                                Err(f) => rec.trailers = f.into_trailers().ok(),
                            }
                        }
                        let echoed = Bytes::from(rec.body.clone());
                        s.lock().unwrap().push(rec);
                        let mut trailers = HeaderMap::new();
                        trailers.insert("x-upstream-trailer", "t1".parse().unwrap());
                        let frames = vec![
                            Ok::<_, Infallible>(Frame::data(echoed)),
                            Ok(Frame::trailers(trailers)),
                        ];
                        Ok::<_, Infallible>(Response::new(StreamIter(frames.into_iter())))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// An iterator as a body stream.
struct StreamIter<I>(I);

impl<I: Iterator<Item = Result<Frame<Bytes>, Infallible>> + Unpin> http_body::Body
    for StreamIter<I>
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.next())
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_string())
}

/// An h2c (prior knowledge) connection to `addr` sending channel-fed bodies.
async fn h2_client(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http2::SendRequest<channel_body::Receiver> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn trailers_flow_both_ways_and_te_reaches_an_http2_upstream() {
    let (url, seen) = h2_upstream().await;
    let h = Harness::unstarted().await;
    let text = proxy_config(&h.idp, &url, "", "protocol = \"http2\"");
    let h = h.launch(&text).await;
    let mut client = h2_client(h.proxy().public_addr).await;
    let (tx, rx) = mpsc::channel(4);
    let req = Request::post(h.url("/stream"))
        .header(
            "authorization",
            format!("Bearer {}", h.token(&["App.Read"])),
        )
        .header("te", "trailers")
        .header("content-type", "application/grpc")
        .body(channel_body::Receiver(rx))
        .unwrap();
    let pending = tokio::spawn(async move { client.send_request(req).await });
    tx.send(Frame::data(Bytes::from_static(b"part1-")))
        .await
        .unwrap();
    tx.send(Frame::data(Bytes::from_static(b"part2")))
        .await
        .unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-client-trailer", "c1".parse().unwrap());
    tx.send(Frame::trailers(trailers)).await.unwrap();
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("response trailers");
    assert_eq!(trailers["x-upstream-trailer"], "t1");
    assert_eq!(collected.to_bytes(), "part1-part2");

    let up = seen.lock().unwrap()[0].clone();
    assert_eq!(up.te.as_deref(), Some("trailers"));
    assert_eq!(
        up.trailers.expect("request trailers")["x-client-trailer"],
        "c1"
    );
    assert_eq!(up.host, None, "no host field beside :authority over HTTP/2");
    assert_eq!(
        up.authority.as_deref(),
        url.strip_prefix("http://"),
        ":authority is the upstream's"
    );
}

#[tokio::test]
async fn the_head_timeout_starts_once_the_body_is_sent() {
    let h = Harness::unstarted().await;
    let text = proxy_config(&h.idp, &h.upstream.url(), "", "")
        .replace("timeout = \"5s\"", "timeout = \"500ms\"");
    let h = h.launch(&text).await;
    // An upload that takes three times upstream.timeout is not cut by it.
    let mut client = h2_client(h.proxy().public_addr).await;
    let (tx, rx) = mpsc::channel(4);
    let req = Request::post(h.url("/upload"))
        .header(
            "authorization",
            format!("Bearer {}", h.token(&["App.Read"])),
        )
        .body(channel_body::Receiver(rx))
        .unwrap();
    let pending = tokio::spawn(async move { client.send_request(req).await });
    for _ in 0..3 {
        tx.send(Frame::data(Bytes::from(vec![b'u'; 1000])))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(h.upstream.last().body_len, 3000);
    // Once the body is sent, a slow head is still a 504.
    h.get("/__sleep/1500", Some(&h.token(&["App.Read"])))
        .await
        .assert_refused(504, "upstream_timeout");
}

#[tokio::test]
async fn a_shorter_grpc_timeout_is_the_deadline() {
    let h = Harness::unstarted().await;
    let text = proxy_config(&h.idp, &h.upstream.url(), "", "");
    let h = h.launch(&text).await;
    let mut client = h2_client(h.proxy().public_addr).await;
    let (tx, rx) = mpsc::channel(1);
    drop(tx);
    let req = Request::post(h.url("/__sleep/3000"))
        .header(
            "authorization",
            format!("Bearer {}", h.token(&["App.Read"])),
        )
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "300m")
        .body(channel_body::Receiver(rx))
        .unwrap();
    let started = Instant::now();
    let resp = client.send_request(req).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["grpc-status"], "4");
    assert_eq!(resp.headers()["grpc-message"], "upstream_timeout");
}

#[tokio::test]
async fn h2c_and_unknown_upgrades_are_not_forwarded() {
    let h = Harness::start().await;
    let token = h.token(&["App.Read"]);
    for upgrade in ["h2c", "foo/1"] {
        let raw = format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        );
        let answer = raw_request(h.proxy().public_addr, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let seen = h.upstream.last();
        assert!(!seen.headers.contains_key("upgrade"), "{upgrade}");
        assert!(!seen.headers.contains_key("http2-settings"));
    }
}

#[tokio::test]
async fn an_idle_websocket_is_closed_and_counted() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_url = format!("http://{}", echo.local_addr().unwrap());
    tokio::spawn(tokengate::dev::serve_echo(echo));
    let h = Harness::unstarted().await;
    let text =
        proxy_config(&h.idp, &echo_url, "", "") + "[limits]\nupgrade_idle_timeout = \"300ms\"\n";
    let h = h.launch(&text).await;
    let mut tcp = tokio::net::TcpStream::connect(h.proxy().public_addr)
        .await
        .unwrap();
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\n\r\n",
        h.token(&["App.Read"])
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("x-ms-client-principal") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
    assert!(
        !text.contains("authorization"),
        "the token never reaches the upstream"
    );
    // Then nothing moves: the proxy closes both sides after upgrade_idle_timeout.
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle WebSocket was not closed");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        h.metric("tokengate_websocket_closed_total{reason=\"idle_timeout\"}")
            .await,
        1.0
    );
}
