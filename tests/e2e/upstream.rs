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
