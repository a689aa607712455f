//! What the upstream sees: no token, no spoofed identity, EasyAuth's headers, forwarding headers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};

use crate::support::Harness;

const SPOOFED: &[&str] = &[
    "X-MS-CLIENT-PRINCIPAL",
    "x-ms-client-principal-id",
    "X-Ms-Client-Principal-Name",
    "X-MS-CLIENT-PRINCIPAL-IDP",
    "x-ms-client-principal-extra",
    "X-MS-TOKEN-AAD-ACCESS-TOKEN",
    "x-ms-token-aad-id-token",
];

fn spoofing(h: &Harness, path: &str, token: Option<&str>) -> Request<Full<bytes::Bytes>> {
    let mut b = Request::get(h.url(path));
    for name in SPOOFED {
        b = b.header(*name, "spoofed");
    }
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Full::default()).unwrap()
}

#[tokio::test]
async fn client_identity_headers_never_reach_the_upstream() {
    let h = Harness::start().await;
    // Anonymous path: all stripped, none added.
    assert_eq!(h.send(spoofing(&h, "/public/x", None)).await.status, 200);
    let seen = h.upstream.last();
    for (name, _) in seen.headers.iter() {
        assert!(
            !name.as_str().starts_with("x-ms-"),
            "{name} reached the upstream"
        );
    }
    // Authenticated: ours replace theirs.
    let t = h.token(&[]);
    assert_eq!(h.send(spoofing(&h, "/api", Some(&t))).await.status, 200);
    let seen = h.upstream.last();
    for (name, value) in seen.headers.iter() {
        assert_ne!(value, "spoofed", "{name} kept the client's value");
    }
    assert_eq!(
        seen.headers.get_all("x-ms-client-principal").iter().count(),
        1
    );
    assert!(seen.headers.get("x-ms-token-aad-access-token").is_none());
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn easyauth_principal_headers_match_app_service() {
    let h = Harness::start().await;
    let i = &h.issuer;
    let mut claims = i.v1_claims(&["App.Read", "App.Write"]);
    claims["upn"] = json!("alice@contoso.example");
    claims["scp"] = json!("user_impersonation");
    claims["wids"] = json!(["w1", "w2"]);
    claims["nested"] = json!({"a": 1});
    let t = i.rs256(&claims);
    assert_eq!(h.get("/api", Some(&t)).await.status, 200);
    let seen = h.upstream.last();
    let hdr = |n: &str| seen.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        hdr("x-ms-client-principal-id").as_deref(),
        Some(tokengate::dev::DEV_CALLER_OID)
    );
    assert_eq!(
        hdr("x-ms-client-principal-name").as_deref(),
        Some("alice@contoso.example")
    );
    assert_eq!(hdr("x-ms-client-principal-idp").as_deref(), Some("aad"));
    let doc: Value = serde_json::from_slice(
        &STANDARD
            .decode(hdr("x-ms-client-principal").unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["auth_typ"], "aad");
    assert_eq!(
        doc["name_typ"],
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
    );
    assert_eq!(
        doc["role_typ"],
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
    );
    let pairs: Vec<(String, String)> = doc["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["typ"].as_str().unwrap().into(),
                c["val"].as_str().expect("val is a string").into(),
            )
        })
        .collect();
    let has = |t: &str, v: &str| pairs.iter().any(|(a, b)| a == t && b == v);
    assert!(
        has("roles", "App.Read") && has("roles", "App.Write"),
        "{pairs:?}"
    );
    assert!(has("wids", "w1") && has("wids", "w2"));
    assert!(has(
        "http://schemas.microsoft.com/identity/claims/objectidentifier",
        tokengate::dev::DEV_CALLER_OID
    ));
    assert!(has(
        "http://schemas.microsoft.com/identity/claims/tenantid",
        tokengate::dev::DEV_TENANT
    ));
    assert!(has(
        "http://schemas.microsoft.com/identity/claims/scope",
        "user_impersonation"
    ));
    assert!(has(
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
        "alice@contoso.example"
    ));
    assert!(has("appid", tokengate::dev::DEV_CALLER_APP));
    assert!(has("ver", "1.0"));
    assert!(has("nested", r#"{"a":1}"#));
    let exp = claims["exp"].as_u64().unwrap().to_string();
    assert!(has("exp", &exp), "numbers in decimal");
}

#[tokio::test]
async fn managed_identity_tokens_are_named_by_their_application() {
    let h = Harness::start().await;
    assert_eq!(h.get("/api", Some(&h.token(&[]))).await.status, 200);
    let seen = h.upstream.last();
    assert_eq!(
        seen.headers["x-ms-client-principal-name"],
        tokengate::dev::DEV_CALLER_APP
    );
}

#[tokio::test]
async fn auth_me_answers_without_calling_the_upstream() {
    let h = Harness::start().await;
    let t = h.token(&["App.Read"]);
    let r = h.get("/.auth/me", Some(&t)).await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(&t), "/.auth/me must not echo the token");
    let doc = r.json();
    assert_eq!(doc[0]["provider_name"], "aad");
    let claims = doc[0]["user_claims"].as_array().unwrap();
    assert!(claims
        .iter()
        .any(|c| c["typ"] == "roles" && c["val"] == "App.Read"));
    h.get("/.auth/me", None)
        .await
        .assert_refused(401, "missing_token");
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn forwarding_and_hop_by_hop_headers() {
    let h = Harness::start().await;
    let req = Request::get(h.url("/api"))
        .header("authorization", format!("Bearer {}", h.token(&[])))
        .header("host", "callee.example:8443")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-request-id", "client-id-42")
        .header("x-keep-me", "1")
        .body(Full::default())
        .unwrap();
    let r = h.send(req).await;
    assert_eq!(r.status, 200);
    // Response hop-by-hop headers from the upstream are dropped too.
    assert!(r.headers.get("x-upstream-secret").is_none());
    assert_eq!(r.headers["x-upstream"], "yes");
    let seen = h.upstream.last();
    for gone in ["x-drop-me", "keep-alive", "te", "connection"] {
        assert!(seen.headers.get(gone).is_none(), "{gone} forwarded");
    }
    assert_eq!(seen.headers["x-keep-me"], "1");
    assert_eq!(
        seen.headers["x-forwarded-for"], "127.0.0.1",
        "untrusted client XFF is replaced"
    );
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], "callee.example:8443");
    assert_eq!(seen.headers["host"], "callee.example:8443");
    assert_eq!(seen.headers["x-request-id"], "client-id-42");
    // A request id is generated when the client sends none (and echoed on refusals).
    let denied = h.get("/api", None).await;
    assert_eq!(denied.headers["x-request-id"].len(), 32);
}
