//! Tokens that must pass, and every way a token must be refused. For every refusal the upstream
//! must have received nothing.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::support::{Harness, SigningKey};

/// Asserts `token` on GET /api is refused with `status`/`reason` and never forwarded.
async fn refused(h: &Harness, token: &str, status: u16, reason: &str) {
    let before = h.upstream.count();
    let r = h.get("/api", Some(token)).await;
    r.assert_refused(status, reason);
    assert!(!r.text().contains(token), "error body echoes the token");
    assert_eq!(
        h.upstream.count(),
        before,
        "a refused request reached the upstream"
    );
}

fn part(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn v1_and_v2_tokens_with_rs256_and_es256_pass() {
    let h = Harness::start().await;
    let i = &h.issuer;
    for token in [
        i.rs256(&i.v2_claims(&[])),
        i.rs256(&i.v1_claims(&[])),
        i.es256(&i.v2_claims(&[])),
        i.es256(&i.v1_claims(&[])),
    ] {
        let r = h.get("/api/x?q=1", Some(&token)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "upstream ok");
        let seen = h.upstream.last();
        assert_eq!(seen.uri, "/api/x?q=1");
        assert!(
            seen.headers.get("authorization").is_none(),
            "token forwarded upstream"
        );
    }
    assert_eq!(h.upstream.count(), 4);
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_other_schemes_are_no_token() {
    let h = Harness::start().await;
    let t = h.token(&[]);
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let req = Request::get(h.url("/api"))
            .header("authorization", format!("{scheme} {t}"))
            .body(Full::default())
            .unwrap();
        assert_eq!(h.send(req).await.status, 200, "{scheme}");
    }
    let req = Request::get(h.url("/api"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(Full::default())
        .unwrap();
    let r = h.send(req).await;
    r.assert_refused(401, "missing_token");
    assert_eq!(
        r.challenge(),
        "Bearer realm=\"tokengate\"",
        "no error code without a token"
    );
}

#[tokio::test]
async fn missing_token_is_401_with_bare_challenge() {
    let h = Harness::start().await;
    let r = h.get("/api", None).await;
    r.assert_refused(401, "missing_token");
    assert_eq!(r.challenge(), "Bearer realm=\"tokengate\"");
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn two_authorization_headers_are_a_bad_request() {
    let h = Harness::start().await;
    let t = h.token(&[]);
    let req = Request::get(h.url("/api"))
        .header("authorization", format!("Bearer {t}"))
        .header("authorization", format!("Bearer {t}"))
        .body(Full::default())
        .unwrap();
    let r = h.send(req).await;
    r.assert_refused(400, "malformed_authorization");
    assert!(r.challenge().contains("error=\"invalid_request\""));
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn oversized_token_is_refused_before_decoding() {
    let h = Harness::start().await;
    let mut claims = h.issuer.v2_claims(&[]);
    claims["padding"] = json!("x".repeat(17 * 1024));
    let big = h.issuer.rs256(&claims);
    refused(&h, &big, 401, "token_too_large").await;
    // Not even valid base64: size is checked first.
    refused(&h, &"a".repeat(16 * 1024 + 1), 401, "token_too_large").await;
}

#[tokio::test]
async fn time_claims_are_enforced_with_skew() {
    let h = Harness::start().await;
    let i = &h.issuer;
    let now = tokengate::pipeline::unix_now();
    let with = |k: &str, v: Value| {
        let mut c = i.v2_claims(&[]);
        c[k] = v;
        i.rs256(&c)
    };
    refused(&h, &with("exp", json!(now - 120)), 401, "token_expired").await;
    refused(
        &h,
        &with("nbf", json!(now + 120)),
        401,
        "token_not_yet_valid",
    )
    .await;
    // Within the 60 s default skew.
    assert_eq!(
        h.get("/api", Some(&with("exp", json!(now - 30))))
            .await
            .status,
        200
    );
    assert_eq!(
        h.get("/api", Some(&with("nbf", json!(now + 30))))
            .await
            .status,
        200
    );
    // exp must be present and numeric (CVE-2026-25537 was about strings).
    refused(
        &h,
        &with("exp", json!(format!("{}", now + 600))),
        401,
        "missing_exp",
    )
    .await;
    let mut no_exp = i.v2_claims(&[]);
    no_exp.as_object_mut().unwrap().remove("exp");
    refused(&h, &i.rs256(&no_exp), 401, "missing_exp").await;
    refused(&h, &with("nbf", json!("soon")), 401, "malformed_token").await;
}

#[tokio::test]
async fn issuer_and_audience_must_match_exactly() {
    let h = Harness::start().await;
    let i = &h.issuer;
    let with = |k: &str, v: Value| {
        let mut c = i.v2_claims(&[]);
        c[k] = v;
        i.rs256(&c)
    };
    let good_iss = tokengate::dev::v2_issuer(tokengate::dev::DEV_TENANT);
    refused(
        &h,
        &with("iss", json!("https://login.microsoftonline.com/other/v2.0")),
        401,
        "invalid_issuer",
    )
    .await;
    refused(
        &h,
        &with("iss", json!(format!("{good_iss}/"))),
        401,
        "invalid_issuer",
    )
    .await;
    refused(&h, &with("iss", json!([good_iss])), 401, "malformed_token").await;
    let mut no_iss = i.v2_claims(&[]);
    no_iss.as_object_mut().unwrap().remove("iss");
    refused(&h, &i.rs256(&no_iss), 401, "invalid_issuer").await;
    refused(
        &h,
        &with("aud", json!("api://someone-else")),
        401,
        "invalid_audience",
    )
    .await;
    refused(&h, &with("aud", json!(["a", "b"])), 401, "invalid_audience").await;
    refused(&h, &with("aud", json!(7)), 401, "malformed_token").await;
    assert_eq!(
        h.get("/api", Some(&with("aud", json!(["x", "other-audience"]))))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let h = Harness::start().await;
    let i = &h.issuer;
    let claims = i.v2_claims(&[]);
    // alg none, with and without a signature part.
    let unsigned = format!(
        "{}.{}",
        part(&json!({"alg":"none","kid":"rsa-1"})),
        part(&claims)
    );
    refused(&h, &format!("{unsigned}."), 401, "malformed_token").await;
    refused(
        &h,
        &format!("{unsigned}.AAAA"),
        401,
        "algorithm_not_allowed",
    )
    .await;
    // HS256 "signed" with the RSA public key as the HMAC secret.
    let input = format!(
        "{}.{}",
        part(&json!({"alg":"HS256","kid":"rsa-1"})),
        part(&claims)
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, i.rsa.public_pem().as_bytes());
    let tag = hmac::sign(&key, input.as_bytes());
    refused(
        &h,
        &format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag)),
        401,
        "algorithm_not_allowed",
    )
    .await;
    // Allowed algorithm, but not configured: RS384 is not in `algorithms`.
    let rs384 = i
        .rsa
        .sign("RS384", &json!({"alg":"RS384","kid":"rsa-1"}), &claims);
    refused(&h, &rs384, 401, "algorithm_not_allowed").await;
    // An ES256 header naming the RSA key, and the reverse.
    let es_on_rsa =
        i.ec.sign("ES256", &json!({"alg":"ES256","kid":"rsa-1"}), &claims);
    refused(&h, &es_on_rsa, 401, "key_algorithm_mismatch").await;
    let rs_on_ec = i
        .rsa
        .sign("RS256", &json!({"alg":"RS256","kid":"ec-1"}), &claims);
    refused(&h, &rs_on_ec, 401, "key_algorithm_mismatch").await;
}

#[tokio::test]
async fn keys_come_only_from_the_jwks_by_kid() {
    let h = Harness::start().await;
    let i = &h.issuer;
    let claims = i.v2_claims(&[]);
    let attacker = SigningKey::rsa();
    // Embedded jwk / jku / x5u are never used: the kid decides, and the signature fails.
    let header = json!({
        "alg": "RS256", "kid": "rsa-1",
        "jwk": attacker.jwk("rsa-1", None),
        "jku": "http://127.0.0.1:1/evil", "x5u": "http://127.0.0.1:1/evil.pem",
    });
    refused(
        &h,
        &attacker.sign("RS256", &header, &claims),
        401,
        "invalid_signature",
    )
    .await;
    // No kid at all.
    refused(
        &h,
        &i.rsa.sign("RS256", &json!({"alg":"RS256"}), &claims),
        401,
        "missing_kid",
    )
    .await;
    // A kid the JWKS does not have (even after the bounded refresh).
    let unknown = attacker.sign("RS256", &json!({"alg":"RS256","kid":"nope"}), &claims);
    refused(&h, &unknown, 401, "unknown_kid").await;
    // crit names an extension we do not implement.
    let crit = i.rsa.sign(
        "RS256",
        &json!({"alg":"RS256","kid":"rsa-1","crit":["exp"],"exp":1}),
        &claims,
    );
    refused(&h, &crit, 401, "unsupported_crit").await;
}

#[tokio::test]
async fn tampering_and_malformed_shapes_are_refused() {
    let h = Harness::start().await;
    let i = &h.issuer;
    let good = h.token(&[]);
    let (head, sig) = good.rsplit_once('.').unwrap();
    // A different valid-looking signature.
    let mut sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig_bytes[10] ^= 1;
    refused(
        &h,
        &format!("{head}.{}", URL_SAFE_NO_PAD.encode(&sig_bytes)),
        401,
        "invalid_signature",
    )
    .await;
    // Payload swapped for one granting more, old signature kept.
    let (header, _) = head.split_once('.').unwrap();
    let forged = format!("{header}.{}.{sig}", part(&i.v2_claims(&["App.Admin"])));
    refused(&h, &forged, 401, "invalid_signature").await;
    for bad in [
        "abc",
        "a.b",
        "a.b.c.d",
        "..",
        &format!("{good}="),
        &format!("{head}.{sig}=="),
    ] {
        let r = h.get("/api", Some(bad)).await;
        assert_eq!(r.status, 401, "{bad}: {}", r.text());
    }
    // Header that is JSON but not an object; payload that is not JSON; duplicate claims.
    let arr = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode("[\"RS256\",\"rsa-1\"]"),
        part(&i.v2_claims(&[]))
    );
    refused(&h, &format!("{arr}.AAAA"), 401, "malformed_token").await;
    let dup = i
        .v2_claims(&[])
        .to_string()
        .replacen('{', "{\"iss\":\"https://evil/\",", 1);
    let input = format!(
        "{}.{}",
        part(&json!({"alg":"RS256","kid":"rsa-1"})),
        URL_SAFE_NO_PAD.encode(dup)
    );
    let mut sig = vec![0u8; 256];
    if let SigningKey::Rsa(k) = &i.rsa {
        k.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
    }
    refused(
        &h,
        &format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)),
        401,
        "malformed_token",
    )
    .await;
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn ambiguous_caller_application_is_refused() {
    let h = Harness::start().await;
    let mut c = h.issuer.v2_claims(&[]);
    c["appid"] = json!("some-other-app");
    refused(&h, &h.issuer.rs256(&c), 401, "ambiguous_application").await;
}

#[tokio::test]
async fn h2c_prior_knowledge_works_on_the_same_port() {
    let h = Harness::start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<bytes::Bytes>>();
    let req = Request::builder()
        .method(Method::GET)
        .uri(h.url("/api/h2"))
        .header("authorization", format!("Bearer {}", h.token(&[])))
        .body(Full::default())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let seen = h.upstream.last();
    assert_eq!(seen.uri, "/api/h2");
    assert!(seen.headers.get("authorization").is_none());
    assert!(seen.headers.get("x-ms-client-principal").is_some());
    let anon = client
        .request(Request::get(h.url("/api")).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
}
