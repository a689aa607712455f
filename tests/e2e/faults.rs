//! Faults while serving: key rotation under load, misbehaving upstreams, config reload with
//! connections open.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{config_text, Harness, SigningKey};

#[tokio::test]
async fn key_rotation_under_load_refuses_nothing_valid_and_revokes_promptly() {
    let h = Arc::new(Harness::with_config("", "refresh_interval = \"1s\"").await);
    let old = h.token(&[]);
    let next = SigningKey::rsa();
    let new = next.sign(
        "RS256",
        &json!({"alg":"RS256","kid":"rsa-2"}),
        &h.issuer.v2_claims(&[]),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let wrong = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let use_new = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (h, stop, wrong, done, use_new) = (
            h.clone(),
            stop.clone(),
            wrong.clone(),
            done.clone(),
            use_new.clone(),
        );
        let (old, new) = (old.clone(), new.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let t = if use_new.load(Ordering::SeqCst) {
                    &new
                } else {
                    &old
                };
                if h.get("/api", Some(t)).await.status != 200 {
                    wrong.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Phase 1: publish old + new, then switch callers to the new key.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut both = h.issuer.jwks();
    both["keys"]
        .as_array_mut()
        .unwrap()
        .push(next.jwk("rsa-2", None));
    h.idp.set_jwks(both);
    tokio::time::sleep(Duration::from_millis(300)).await;
    use_new.store(true, Ordering::SeqCst);
    // Phase 2: retire the old key; the next background refresh (1 s) drops it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.idp
        .set_jwks(json!({"keys": [next.jwk("rsa-2", None), h.issuer.ec.jwk("ec-1", None)]}));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        done.load(Ordering::SeqCst) > 100,
        "too little load: {}",
        done.load(Ordering::SeqCst)
    );
    assert_eq!(
        wrong.load(Ordering::SeqCst),
        0,
        "valid requests refused during rotation"
    );
    // The retired key is no longer accepted, cached or not.
    h.get("/api", Some(&old))
        .await
        .assert_refused(401, "unknown_kid");
}

/// A raw upstream that answers every request with `response` and then closes.
async fn raw_upstream(response: Vec<u8>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

async fn with_upstream(addr: std::net::SocketAddr) -> Harness {
    let mut h = Harness::unstarted().await;
    let text = config_text(&h.idp, &h.upstream, "", "")
        .replace(&h.upstream.url(), &format!("http://{addr}"));
    h.start_proxy(&text).await;
    h.wait_ready().await;
    h
}

#[tokio::test]
async fn upstream_reset_mid_body_does_not_hurt_the_proxy() {
    let addr =
        raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial".to_vec()).await;
    let h = with_upstream(addr).await;
    let req = http::Request::get(h.url("/api"))
        .header("authorization", format!("Bearer {}", h.token(&[])))
        .body(http_body_util::Full::default())
        .unwrap();
    let resp = h.client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    use http_body_util::BodyExt;
    assert!(
        resp.into_body().collect().await.is_err(),
        "a truncated body must not look complete"
    );
    // Still serving.
    assert_eq!(h.get("/api", None).await.status, 401);
}

#[tokio::test]
async fn upstream_with_huge_headers_is_a_502() {
    let mut resp = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..2000 {
        resp.extend_from_slice(format!("X-Junk-{i}: {}\r\n", "j".repeat(100)).as_bytes());
    }
    resp.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let addr = raw_upstream(resp).await;
    let h = with_upstream(addr).await;
    h.get("/api", Some(&h.token(&[])))
        .await
        .assert_refused(502, "upstream_unavailable");
}

#[tokio::test]
async fn reload_swaps_policy_without_dropping_connections() {
    let h = Harness::start().await;
    let t = h.token(&[]);
    let mut s = TcpStream::connect(h.proxy().public_addr).await.unwrap();
    let req = format!("GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\n\r\n");
    let mut buf = vec![0u8; 8192];
    s.write_all(req.as_bytes()).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // New audience list: the caller's audience is no longer accepted.
    let text = config_text(&h.idp, &h.upstream, "", "").replace(
        &format!("audiences = [\"{}\", ", tokengate::dev::DEV_AUDIENCE),
        "audiences = [",
    );
    let cfg = tokengate::Config::from_toml(&text).unwrap();
    h.proxy().reload(cfg).unwrap();
    // Same connection, next request: the new policy, and the connection is still open.
    s.write_all(req.as_bytes()).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("invalid_audience"), "{text}");
    // A changed listen address is refused, nothing half-applied.
    let mut moved =
        tokengate::Config::from_toml(&config_text(&h.idp, &h.upstream, "", "")).unwrap();
    moved.startup.listen = "127.0.0.1:1".parse().unwrap();
    assert!(h.proxy().reload(moved).is_err());
}
