//! The upstream side: failures map to precise statuses, bodies stream, connections are pooled,
//! and admin endpoints never appear on the public listener.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};

use crate::support::{config_text, Harness};

#[tokio::test]
async fn unreachable_upstream_is_502_quickly() {
    let mut h = Harness::unstarted().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = config_text(&h.idp, &h.upstream, "", "")
        .replace(&h.upstream.url(), &format!("http://{closed}"));
    h.start_proxy(&text).await;
    h.wait_ready().await;
    let started = Instant::now();
    h.get("/api", Some(&h.token(&[])))
        .await
        .assert_refused(502, "upstream_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn hanging_upstream_is_504_after_the_timeout() {
    let h = Harness::start().await;
    let started = Instant::now();
    h.get("/__sleep/10000", Some(&h.token(&[])))
        .await
        .assert_refused(504, "upstream_timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    let h = Harness::start().await;
    let r = h.get("/__status/503", Some(&h.token(&[]))).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "upstream ok");
    assert!(
        h.metric("tokengate_upstream_responses_total{class=\"5xx\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let h = Harness::start().await;
    let t = h.token(&[]);
    let upload = Bytes::from(vec![7u8; 8 * 1024 * 1024]);
    let req = Request::post(h.url("/upload"))
        .header("authorization", format!("Bearer {t}"))
        .body(Full::new(upload))
        .unwrap();
    assert_eq!(h.send(req).await.status, 200);
    assert_eq!(h.upstream.last().body_len, 8 * 1024 * 1024);
    let req = Request::get(h.url("/__bytes/9000000"))
        .header("authorization", format!("Bearer {t}"))
        .body(Full::default())
        .unwrap();
    let resp = h.client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 9_000_000);
}

#[tokio::test]
async fn upstream_connections_are_pooled() {
    let h = Harness::start().await;
    let t = h.token(&[]);
    for _ in 0..20 {
        assert_eq!(h.get("/api", Some(&t)).await.status, 200);
    }
    assert_eq!(h.upstream.connections(), 1);
}

#[tokio::test]
async fn admin_endpoints_live_only_on_the_admin_listener() {
    let h = Harness::start().await;
    // Public /metrics and /readyz are ordinary protected paths.
    h.get("/metrics", None)
        .await
        .assert_refused(401, "missing_token");
    h.get("/readyz", None)
        .await
        .assert_refused(401, "missing_token");
    // /healthz is anonymous in this config, and goes to the upstream, not to us.
    let r = h.get("/healthz", None).await;
    assert_eq!(r.text(), "upstream ok");
    // The admin listener answers all three itself.
    let admin = |p: &str| Request::get(h.admin_url(p)).body(Full::default()).unwrap();
    assert_eq!(h.send(admin("/healthz")).await.status, 200);
    assert_eq!(h.send(admin("/readyz")).await.status, 200);
    let m = h.send(admin("/metrics")).await.text();
    for series in [
        "tokengate_requests_total{outcome=\"missing_token\"} 2",
        "tokengate_requests_total{outcome=\"anonymous\"} 1",
        "tokengate_jwks_keys 2",
        "tokengate_upstream_duration_seconds_bucket",
        "tokengate_token_cache_total{result=\"miss\"}",
    ] {
        assert!(m.contains(series), "missing {series} in\n{m}");
    }
    assert_eq!(h.send(admin("/nope")).await.status, 404);
}

#[tokio::test]
async fn metrics_count_each_outcome() {
    let h = Harness::start().await;
    let t = h.token(&[]);
    h.get("/api", Some(&t)).await;
    h.get("/api", Some(&t)).await;
    h.get("/api", Some("x.y.z")).await;
    assert_eq!(
        h.metric("tokengate_requests_total{outcome=\"allowed\"}")
            .await,
        2.0
    );
    assert_eq!(
        h.metric("tokengate_requests_total{outcome=\"malformed_token\"}")
            .await,
        1.0
    );
    assert_eq!(
        h.metric("tokengate_token_cache_total{result=\"hit\"}")
            .await,
        1.0
    );
    assert_eq!(
        h.metric("tokengate_upstream_responses_total{class=\"2xx\"}")
            .await,
        2.0
    );
}

/// A CA, and a TLS server certificate for 127.0.0.1 it signed.
fn test_pki() -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    (ca_cert.pem(), server)
}

#[tokio::test]
async fn https_upstreams_are_verified_against_system_and_configured_cas() {
    tokengate::install_crypto_providers();
    let (ca_pem, server_config) = test_pki();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen_tls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = seen_tls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let has_token = req.headers().contains_key("authorization");
                        async move {
                            let body = if has_token { "token leaked" } else { "tls ok" };
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let ca_path =
        std::env::temp_dir().join(format!("tokengate-test-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_path, ca_pem).unwrap();

    // Without the CA: the certificate is not trusted, nothing is sent, 502.
    let mut h = Harness::unstarted().await;
    let untrusted = config_text(&h.idp, &h.upstream, "", "")
        .replace(&h.upstream.url(), &format!("https://{addr}"));
    h.start_proxy(&untrusted).await;
    h.wait_ready().await;
    h.get("/api", Some(&h.token(&[])))
        .await
        .assert_refused(502, "upstream_unavailable");
    assert_eq!(seen_tls.load(std::sync::atomic::Ordering::SeqCst), 0);

    // With tls.ca_file: verified, forwarded over TLS.
    let mut h = Harness::unstarted().await;
    let trusted = config_text(
        &h.idp,
        &h.upstream,
        "",
        &format!("[tls]\nca_file = \"{}\"", ca_path.display()),
    )
    .replace(&h.upstream.url(), &format!("https://{addr}"));
    h.start_proxy(&trusted).await;
    h.wait_ready().await;
    let r = h.get("/api", Some(&h.token(&[]))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "tls ok");
    let _ = std::fs::remove_file(&ca_path);

    // A missing CA file is a config error naming the key.
    let bad = config_text(
        &h.idp,
        &h.upstream,
        "",
        "[tls]\nca_file = \"/nonexistent.pem\"",
    );
    let err = tokengate::Config::from_toml(&bad).unwrap_err().to_string();
    assert!(err.contains("tls.ca_file"), "{err}");
}

#[tokio::test]
async fn upstream_connections_stay_within_max_connections() {
    // One worker, two upstream connections: four concurrent slow requests go in two waves over
    // the same two connections, and all of them succeed (the second wave waits well within
    // upstream.connect_timeout, 1s here).
    let h = Harness::unstarted().await;
    let text = config_text(&h.idp, &h.upstream, "", "[limits]\nworkers = 1\n")
        .replace("[upstream]\n", "[upstream]\nmax_connections = 2\n");
    let h = h.launch(&text).await;
    let t = h.token(&[]);
    let path = "/__sleep/400";
    let started = Instant::now();
    let (a, b, c, d) = tokio::join!(
        h.get(path, Some(&t)),
        h.get(path, Some(&t)),
        h.get(path, Some(&t)),
        h.get(path, Some(&t)),
    );
    let took = started.elapsed();
    for r in [a, b, c, d] {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(h.upstream.connections(), 2);
    assert!(took >= Duration::from_millis(800), "{took:?}");
}

#[tokio::test]
async fn a_reload_moving_upstream_url_never_reuses_a_connection_to_the_old_one() {
    let h = Harness::start().await;
    let t = h.token(&[]);
    // A kept-alive client connection, and a kept-alive upstream connection behind it.
    assert_eq!(h.get("/api", Some(&t)).await.status, 200);
    assert_eq!(h.upstream.count(), 1);
    let other = crate::support::Upstream::start().await;
    let text = config_text(&h.idp, &other, "", "");
    h.proxy()
        .reload(tokengate::Config::from_toml(&text).unwrap())
        .unwrap();
    for _ in 0..3 {
        assert_eq!(h.get("/api", Some(&t)).await.status, 200);
    }
    assert_eq!(
        h.upstream.count(),
        1,
        "the old upstream got requests after the reload"
    );
    assert_eq!(other.count(), 3);
}

#[tokio::test]
async fn waiting_for_a_busy_upstream_connection_is_bounded_by_connect_timeout() {
    // One upstream connection, held by a slow request: the next request waits for it at most
    // upstream.connect_timeout (1s here), then gets 502 rather than waiting for ever.
    let h = Harness::unstarted().await;
    let text = config_text(&h.idp, &h.upstream, "", "[limits]\nworkers = 1\n")
        .replace("[upstream]\n", "[upstream]\nmax_connections = 1\n");
    let h = h.launch(&text).await;
    let t = h.token(&[]);
    let slow = h.get("/__sleep/1800", Some(&t));
    let waiting = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let r = h.get("/api", Some(&t)).await;
        (r, started.elapsed())
    };
    let (slow, (waited, took)) = tokio::join!(slow, waiting);
    assert_eq!(slow.status, 200);
    waited.assert_refused(502, "upstream_unavailable");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1600),
        "{took:?}"
    );
    // Once it is free, the connection serves again.
    assert_eq!(h.get("/api", Some(&t)).await.status, 200);
    assert_eq!(h.upstream.connections(), 1);
}

#[tokio::test]
async fn a_response_still_streaming_does_not_hold_up_the_next_request() {
    // A client takes the head of a large download and stops reading: its upstream connection
    // stays busy with the body. Another request on the same worker must get a connection of
    // its own at once, not wait behind that body (hyper takes a connection's next request only
    // when the body before it is done).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::unstarted().await;
    let text = config_text(&h.idp, &h.upstream, "", "[limits]\nworkers = 1\n");
    let h = h.launch(&text).await;
    let t = h.token(&[]);
    let mut stalled = tokio::net::TcpStream::connect(h.proxy().public_addr)
        .await
        .unwrap();
    let req =
        format!("GET /__bytes/67108864 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {t}\r\n\r\n");
    stalled.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let n = stalled.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Now the download stalls: nothing more is read from `stalled`.
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(h.get("/api", Some(&t)).await.status, 200);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(h.upstream.connections(), 2);
    drop(stalled);
}
