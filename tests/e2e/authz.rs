//! Allow-lists and role rules, per path and method.

use http::Method;
use serde_json::json;

use crate::support::Harness;

#[tokio::test]
async fn rules_apply_per_path_prefix_and_method() {
    let h = Harness::start().await;
    let reader = h.token(&["App.Read"]);
    let admin = h.token(&["App.Admin"]);
    // POST/DELETE under /admin need App.Admin; GET does not.
    h.call(Method::POST, "/admin", Some(&reader))
        .await
        .assert_refused(403, "missing_role");
    h.call(Method::DELETE, "/admin/users/1", Some(&reader))
        .await
        .assert_refused(403, "missing_role");
    assert_eq!(
        h.call(Method::GET, "/admin", Some(&reader)).await.status,
        200
    );
    assert_eq!(
        h.call(Method::POST, "/admin/users", Some(&admin))
            .await
            .status,
        200
    );
    // Segment prefix: /administrator is not /admin.
    assert_eq!(
        h.call(Method::POST, "/administrator", Some(&reader))
            .await
            .status,
        200
    );
    // Forbidden carries insufficient_scope.
    let r = h.call(Method::POST, "/admin", Some(&reader)).await;
    assert!(
        r.challenge().contains("error=\"insufficient_scope\""),
        "{}",
        r.challenge()
    );
    // Exactly the allowed requests reached the upstream.
    assert_eq!(h.upstream.count(), 3);
}

#[tokio::test]
async fn roles_claim_as_a_single_string_counts() {
    let h = Harness::start().await;
    let mut c = h.issuer.v1_claims(&[]);
    c["roles"] = json!("App.Admin");
    let t = h.issuer.rs256(&c);
    assert_eq!(h.call(Method::POST, "/admin", Some(&t)).await.status, 200);
    c["roles"] = json!({"App.Admin": true});
    let t = h.issuer.rs256(&c);
    h.call(Method::POST, "/admin", Some(&t))
        .await
        .assert_refused(401, "malformed_token");
}

#[tokio::test]
async fn every_matching_rule_must_hold() {
    let extra = r#"
[[auth.rules]]
path = "/admin/audit"
roles = ["App.Auditor"]
"#;
    let h = Harness::with_config("", extra).await;
    let admin = h.token(&["App.Admin"]);
    let both = h.token(&["App.Admin", "App.Auditor"]);
    h.call(Method::POST, "/admin/audit", Some(&admin))
        .await
        .assert_refused(403, "missing_role");
    assert_eq!(
        h.call(Method::POST, "/admin/audit", Some(&both))
            .await
            .status,
        200
    );
    // GET: only the method-less audit rule applies.
    h.call(Method::GET, "/admin/audit", Some(&admin))
        .await
        .assert_refused(403, "missing_role");
}

#[tokio::test]
async fn allow_lists_gate_applications_and_principals() {
    let apps = format!(
        "allowed_applications = [\"{}\"]\nallowed_principals = [\"{}\"]",
        tokengate::dev::DEV_CALLER_APP,
        tokengate::dev::DEV_CALLER_OID
    );
    let h = Harness::with_config(&apps, "").await;
    let i = &h.issuer;
    // v1 (appid) and v2 (azp) callers on the list pass.
    assert_eq!(
        h.get("/api", Some(&i.rs256(&i.v1_claims(&[]))))
            .await
            .status,
        200
    );
    assert_eq!(
        h.get("/api", Some(&i.es256(&i.v2_claims(&[]))))
            .await
            .status,
        200
    );
    let mut other_app = i.v2_claims(&[]);
    other_app["azp"] = json!("33333333-3333-4333-8333-333333333333");
    h.get("/api", Some(&i.rs256(&other_app)))
        .await
        .assert_refused(403, "application_not_allowed");
    let mut v1_other = i.v1_claims(&[]);
    v1_other["appid"] = json!("33333333-3333-4333-8333-333333333333");
    h.get("/api", Some(&i.rs256(&v1_other)))
        .await
        .assert_refused(403, "application_not_allowed");
    let mut no_app = i.v2_claims(&[]);
    no_app.as_object_mut().unwrap().remove("azp");
    h.get("/api", Some(&i.rs256(&no_app)))
        .await
        .assert_refused(403, "application_not_allowed");
    let mut other_oid = i.v2_claims(&[]);
    other_oid["oid"] = json!("44444444-4444-4444-8444-444444444444");
    h.get("/api", Some(&i.rs256(&other_oid)))
        .await
        .assert_refused(403, "principal_not_allowed");
    assert_eq!(h.upstream.count(), 2);
}

#[tokio::test]
async fn cached_tokens_are_still_authorized_per_request() {
    let h = Harness::start().await;
    let reader = h.token(&["App.Read"]);
    assert_eq!(h.get("/admin", Some(&reader)).await.status, 200);
    // Same token, now from the cache, on a path and method that need a role it lacks.
    h.call(Method::POST, "/admin", Some(&reader))
        .await
        .assert_refused(403, "missing_role");
    assert!(
        h.metric("tokengate_token_cache_total{result=\"hit\"}")
            .await
            >= 1.0
    );
}
