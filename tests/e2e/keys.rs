//! Keys from a real discovery/JWKS server: start-up without keys, outages, garbage, rotation,
//! unknown-kid floods, revocation.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{config_text, Harness, IdpMode, SigningKey};

async fn ready_status(h: &Harness) -> u16 {
    let req = http::Request::get(h.admin_url("/readyz"))
        .body(Default::default())
        .unwrap();
    h.send(req).await.status.as_u16()
}

#[tokio::test]
async fn no_keys_at_start_fails_closed_then_recovers() {
    let mut h = Harness::unstarted().await;
    h.idp.set_mode(IdpMode::Failing);
    let text = config_text(&h.idp, &h.upstream, "", "");
    h.start_proxy(&text).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ready_status(&h).await, 503);
    let t = h.token(&[]);
    let r = h.get("/api", Some(&t)).await;
    r.assert_refused(503, "no_signing_keys");
    assert!(r.headers.contains_key("retry-after"));
    // Anonymous paths do not need keys.
    assert_eq!(h.get("/public/x", None).await.status, 200);
    assert_eq!(h.upstream.count(), 1);
    assert!(
        h.metric("tokengate_jwks_refresh_total{result=\"failed\"}")
            .await
            >= 1.0
    );
    // The IdP comes back: ready within the capped backoff (200 ms here), and serving.
    h.idp.set_mode(IdpMode::Healthy);
    let started = Instant::now();
    h.wait_ready().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(h.get("/api", Some(&t)).await.status, 200);
    assert_eq!(ready_status(&h).await, 200);
}

#[tokio::test]
async fn outages_and_garbage_keep_the_last_good_keys() {
    let h = Harness::start().await;
    let t = h.token(&[]);
    let unknown = SigningKey::rsa();
    let mut n = 0;
    for mode in [IdpMode::Failing, IdpMode::Garbage, IdpMode::Hanging] {
        h.idp.set_mode(mode);
        // An unknown kid forces a fetch, which fails; wait out the cooldown between modes.
        n += 1;
        let probe = unknown.sign(
            "RS256",
            &json!({"alg":"RS256","kid":format!("new-{n}")}),
            &h.issuer.v2_claims(&[]),
        );
        h.get("/api", Some(&probe))
            .await
            .assert_refused(401, "unknown_kid");
        assert_eq!(
            h.get("/api", Some(&t)).await.status,
            200,
            "{mode:?}: good keys lost"
        );
        assert_eq!(ready_status(&h).await, 200, "{mode:?}: not ready");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(
        h.metric("tokengate_jwks_refresh_total{result=\"failed\"}")
            .await
            >= 2.0
    );
    assert_eq!(h.metric("tokengate_jwks_keys").await, 2.0);
}

#[tokio::test]
async fn one_malformed_key_does_not_spoil_the_good_ones() {
    let mut h = Harness::unstarted().await;
    let mut jwks = h.issuer.jwks();
    let keys = jwks["keys"].as_array_mut().unwrap();
    keys.insert(0, json!({"kty":"RSA","kid":"broken","n":"!!!","e":"AQAB"}));
    keys.insert(0, json!({"kty":"oct","kid":"hmac","k":"c2VjcmV0"}));
    keys.push(json!({"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}));
    keys.push(json!("not even an object"));
    h.idp.set_jwks(jwks);
    let text = config_text(&h.idp, &h.upstream, "", "");
    h.start_proxy(&text).await;
    h.wait_ready().await;
    assert_eq!(h.get("/api", Some(&h.token(&[]))).await.status, 200);
    assert_eq!(h.metric("tokengate_jwks_keys").await, 2.0);
}

#[tokio::test]
async fn a_rotated_in_key_is_fetched_on_first_use() {
    let h = Harness::start().await;
    let next = SigningKey::rsa();
    let mut jwks = h.issuer.jwks();
    jwks["keys"]
        .as_array_mut()
        .unwrap()
        .push(next.jwk("rsa-2", None));
    h.idp.set_jwks(jwks);
    let t = next.sign(
        "RS256",
        &json!({"alg":"RS256","kid":"rsa-2"}),
        &h.issuer.v2_claims(&[]),
    );
    let r = h.get("/api", Some(&t)).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn unknown_kid_floods_cost_one_fetch_per_cooldown() {
    let h = Harness::start().await;
    let before = h.idp.jwks_hits();
    let claims = h.issuer.v2_claims(&[]);
    let attacker = SigningKey::rsa();
    let tokens: Vec<String> = (0..40)
        .map(|i| {
            attacker.sign(
                "RS256",
                &json!({"alg":"RS256","kid":format!("random-{i}")}),
                &claims,
            )
        })
        .collect();
    let replies = futures_join(&h, &tokens).await;
    assert!(replies.iter().all(|s| *s == 401));
    let burst = h.idp.jwks_hits() - before;
    assert!(
        burst <= 1,
        "{burst} JWKS fetches for one flood inside the cooldown"
    );
    // After the cooldown (1 s here), one more fetch is allowed, not forty.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let replies = futures_join(&h, &tokens).await;
    assert!(replies.iter().all(|s| *s == 401));
    let total = h.idp.jwks_hits() - before;
    assert!(total <= 2, "{total} JWKS fetches for two floods");
}

async fn futures_join(h: &Harness, tokens: &[String]) -> Vec<u16> {
    let mut set = tokio::task::JoinSet::new();
    for t in tokens {
        let req = http::Request::get(h.url("/api"))
            .header("authorization", format!("Bearer {t}"))
            .body(http_body_util::Full::default())
            .unwrap();
        let client = h.client.clone();
        set.spawn(async move {
            client
                .request(req)
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        });
    }
    let mut out = Vec::new();
    while let Some(s) = set.join_next().await {
        out.push(s.unwrap());
    }
    out
}

#[tokio::test]
async fn a_removed_key_stops_working_even_for_cached_tokens() {
    let h = Harness::with_config("", "").await;
    let old = h.token(&[]);
    assert_eq!(h.get("/api", Some(&old)).await.status, 200);
    assert_eq!(
        h.get("/api", Some(&old)).await.status,
        200,
        "second use is a cache hit"
    );
    // The IdP drops rsa-1 and publishes rsa-2; the first rsa-2 token triggers the fetch.
    let next = SigningKey::rsa();
    h.idp
        .set_jwks(json!({"keys": [next.jwk("rsa-2", None), h.issuer.ec.jwk("ec-1", None)]}));
    let t2 = next.sign(
        "RS256",
        &json!({"alg":"RS256","kid":"rsa-2"}),
        &h.issuer.v2_claims(&[]),
    );
    assert_eq!(h.get("/api", Some(&t2)).await.status, 200);
    h.get("/api", Some(&old))
        .await
        .assert_refused(401, "unknown_kid");
}

#[tokio::test]
async fn keys_refresh_in_the_background() {
    let h = Harness::with_config("", "refresh_interval = \"1s\"").await;
    let before = h.idp.jwks_hits();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(h.idp.jwks_hits() >= before + 2, "no background refresh");
    assert!(
        h.metric("tokengate_jwks_refresh_total{result=\"ok\"}")
            .await
            >= 3.0
    );
}

#[tokio::test]
async fn jwks_uri_without_discovery_works() {
    let h = Harness::unstarted().await;
    let text = config_text(&h.idp, &h.upstream, "", "").replace(
        &format!("openid_configuration = \"{}\"", h.idp.discovery_url()),
        &format!("jwks_uri = \"{}\"", h.idp.jwks_url()),
    );
    let h = h.launch(&text).await;
    assert_eq!(h.get("/api", Some(&h.token(&[]))).await.status, 200);
}

#[tokio::test]
async fn unreachable_idp_keeps_the_proxy_unready_and_closed() {
    let mut h = Harness::unstarted().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = config_text(&h.idp, &h.upstream, "", "").replace(
        &h.idp.discovery_url(),
        &format!("http://{closed}/.well-known/openid-configuration"),
    );
    h.start_proxy(&text).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ready_status(&h).await, 503);
    h.get("/api", Some(&h.token(&[])))
        .await
        .assert_refused(503, "no_signing_keys");
    assert!(
        h.metric("tokengate_jwks_refresh_total{result=\"failed\"}")
            .await
            >= 2.0,
        "no retries"
    );
    assert_eq!(h.upstream.count(), 0);
}
