//! Hostile HTTP on raw sockets: smuggling shapes, slowloris, oversized and too many headers,
//! connection and body limits, idle keep-alive, HTTP/2 rapid reset. Nothing malformed may reach
//! the upstream.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{raw_request, Harness};

const LIMITS: &str = r#"
[limits]
header_read_timeout = "1s"
idle_timeout = "1s"
max_headers = 50
max_header_bytes = 16384
max_body_bytes = 1000
max_connections = 4
"#;

async fn harness() -> Harness {
    Harness::with_config("", LIMITS).await
}

#[tokio::test]
async fn smuggling_shapes_are_refused_and_never_forwarded() {
    let h = harness().await;
    let auth = format!("Authorization: Bearer {}\r\n", h.token(&[]));
    let cases = [
        format!("POST /api HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST /api HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
        format!("POST /api HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        format!("POST /api HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        format!("GET /api HTTP/1.1\r\nHost: x\r\n{auth}X-Folded: a\r\n b\r\n\r\n"),
        format!("GET /api HTTP/1.1\nHost: x\n{}\n\n", auth.trim_end()),
        format!("GET /api HTTP/1.1\r\nHost: x\r\n{auth}Bad Header: x\r\n\r\n"),
        format!("GET /api HTTP/1.1\r\nHost: x\r\n{auth}X-Nul: a\0b\r\n\r\n"),
        format!("POST /api HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: gzip\r\n\r\n"),
        // A clean request followed on the same connection by a smuggled one.
        format!("GET /api HTTP/1.1\r\nHost: x\r\n{auth}\r\nPOST /api HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ];
    for req in &cases {
        let resp = raw_request(h.proxy().public_addr, req.as_bytes()).await;
        assert!(
            resp.starts_with("HTTP/1.1 400"),
            "not refused:\n{req:?}\n{resp}"
        );
    }
    assert_eq!(h.upstream.count(), 0, "{:?}", h.upstream.seen());
}

#[tokio::test]
async fn a_clean_keep_alive_sequence_is_not_mistaken_for_smuggling() {
    let h = harness().await;
    let auth = format!("Authorization: Bearer {}\r\n", h.token(&[]));
    let req = format!(
        "POST /api HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n4\r\nTE: \r\n0\r\n\r\n\
         POST /api HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 21\r\n\r\nContent-Length: 1\r\n\r\nGET /api HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    );
    let mut s = TcpStream::connect(h.proxy().public_addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
    assert_eq!(h.upstream.count(), 3);
}

#[tokio::test]
async fn slowloris_headers_are_cut_off() {
    let h = harness().await;
    let mut s = TcpStream::connect(h.proxy().public_addr).await.unwrap();
    s.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    // Keep dribbling: the timeout is on the whole header section, not per byte.
    let closed = loop {
        if s.write_all(b"X-a: b\r\n").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => break true,
            Err(_) if started.elapsed() > Duration::from_secs(5) => break false,
            Err(_) => {}
        }
    };
    assert!(closed, "slow header section was not cut off");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn oversized_and_too_many_headers_are_refused() {
    let h = harness().await;
    let big = format!(
        "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let resp = raw_request(h.proxy().public_addr, big.as_bytes()).await;
    assert!(
        resp.starts_with("HTTP/1.1 431") || resp.is_empty(),
        "{resp}"
    );
    let mut many = String::from("GET /public/x HTTP/1.1\r\nHost: x\r\n");
    for i in 0..60 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let resp = raw_request(h.proxy().public_addr, many.as_bytes()).await;
    assert!(
        resp.starts_with("HTTP/1.1 431") || resp.is_empty(),
        "{resp}"
    );
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn request_bodies_over_the_limit_are_refused() {
    let h = harness().await;
    let t = h.token(&[]);
    let req = format!("POST /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 2000\r\n\r\n{}", "b".repeat(2000));
    let resp = raw_request(h.proxy().public_addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_eq!(
        h.upstream.count(),
        0,
        "declared oversize body was forwarded"
    );
    // Chunked: no length up front, so the cap cuts the stream.
    let chunk = "c".repeat(1500);
    let req = format!("POST /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    let resp = raw_request(h.proxy().public_addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    // Within the limit is fine.
    let req = format!("POST /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: 900\r\n\r\n{}", "b".repeat(900));
    let resp = raw_request(h.proxy().public_addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(h.upstream.seen().iter().all(|s| s.body_len <= 1000));
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let h = harness().await;
    let mut s = TcpStream::connect(h.proxy().public_addr).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected EOF");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let h = harness().await;
    let addr = h.proxy().public_addr;
    // Four idle-but-open connections take every slot (each sends a partial request).
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /public/x HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let resp = raw_request(
            addr,
            b"GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        (resp, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a fifth connection was served beyond max_connections"
    );
    drop(held);
    let (resp, _) = waiting.await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test]
async fn http2_rapid_reset_is_contained() {
    let h = harness().await;
    let tcp = TcpStream::connect(h.proxy().public_addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn_task = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let uri = h.url("/public/x");
    let mut refused_at = None;
    for i in 0..5000 {
        let req = http::Request::get(uri.as_str()).body(()).unwrap();
        match client.send_request(req, true) {
            // Dropping the response future at once resets the stream: the attack's shape.
            Ok((resp, _)) => drop(resp),
            Err(_) => {
                refused_at = Some(i);
                break;
            }
        }
        if i % 50 == 0 {
            match tokio::time::timeout(Duration::from_secs(2), client.clone().ready()).await {
                Ok(Ok(c)) => client = c,
                _ => {
                    refused_at = Some(i);
                    break;
                }
            }
        }
    }
    let conn_result = tokio::time::timeout(Duration::from_secs(5), conn_task).await;
    assert!(
        refused_at.is_some() || matches!(conn_result, Ok(Ok(Err(_)))),
        "5000 resets were tolerated on one connection"
    );
    // The proxy itself is fine: a fresh connection is served.
    assert_eq!(h.get("/public/x", None).await.status, 200);
}

#[tokio::test]
async fn http2_stream_limit_is_advertised() {
    let h = harness().await;
    let tcp = TcpStream::connect(h.proxy().public_addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(h.url("/public/x")).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert_eq!(client.current_max_send_streams(), 100);
}

#[tokio::test]
async fn http2_header_lists_over_the_limit_are_refused() {
    let h = harness().await;
    let tcp = TcpStream::connect(h.proxy().public_addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(h.url("/public/x"))
        .header("x-big", "b".repeat(20_000))
        .body(())
        .unwrap();
    let outcome = match client.send_request(req, true) {
        Ok((resp, _)) => resp.await.map(|r| r.status().as_u16()).unwrap_or(0),
        Err(_) => 0,
    };
    assert!(
        outcome == 431 || outcome == 0,
        "oversized h2 header list answered {outcome}"
    );
    assert_eq!(h.upstream.count(), 0);
}
