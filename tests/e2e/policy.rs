//! Issue 13 through the real binary: multi-tenant issuers (two tenants, v1 and v2, keys pinned
//! to a tenant, discovery from /common/), per-route audiences, report-only rollout with its log
//! line and metrics (and switching it by reload), and `upstream.forward_token`.

use std::process::Command;

use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};

use tokengate::dev::{v1_issuer, v2_issuer, DEV_AUDIENCE};

use crate::binary::{write_config, Proc, BIN};
use crate::support::{client, Harness, Reply};

const TENANT_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const TENANT_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
const TENANT_C: &str = "cccccccc-0000-4000-8000-00000000000c";

/// A config for the binary: `auth` is the whole `[auth]` body, `rest` any later sections.
fn config(h: &Harness, auth: &str, rest: &str) -> String {
    format!(
        r#"
[listen]
address = "127.0.0.1:0"
[upstream]
url = "{up}"
timeout = "2s"
{rest_upstream}
[admin]
address = "127.0.0.1:0"
[auth]
algorithms = ["RS256", "ES256"]
{auth}
[keys]
max_backoff = "200ms"
"#,
        up = h.upstream.url(),
        rest_upstream = rest,
    )
}

/// Claims of a token from `tenant`, v1 or v2, with `roles`.
fn claims(h: &Harness, tenant: &str, version: u8, roles: &[&str]) -> Value {
    let mut c = match version {
        1 => h.issuer.v1_claims(roles),
        _ => h.issuer.v2_claims(roles),
    };
    c["tid"] = json!(tenant);
    c["iss"] = json!(match version {
        1 => v1_issuer(tenant),
        _ => v2_issuer(tenant),
    });
    c
}

async fn send(p: &Proc, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(format!("http://{}{path}", p.public));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    Reply::read(
        client()
            .request(b.body(Full::default()).unwrap())
            .await
            .unwrap(),
    )
    .await
}

async fn metric(p: &Proc, series: &str) -> f64 {
    let req = Request::get(format!("http://{}/metrics", p.admin))
        .body(Full::default())
        .unwrap();
    let text = Reply::read(client().request(req).await.unwrap())
        .await
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

const TEMPLATES: &str = r#"issuers = ["https://login.microsoftonline.com/{tenantid}/v2.0", "https://sts.windows.net/{tenantid}/"]"#;

#[tokio::test]
async fn two_tenants_v1_and_v2_through_issuer_templates() {
    let h = Harness::unstarted().await;
    // rsa-1 is pinned to tenant A (a tenant's own signing key), ec-1 serves every tenant.
    let mut jwks = h.issuer.jwks();
    jwks["keys"][0]["issuer"] = json!(v2_issuer(TENANT_A));
    jwks["keys"][1]["issuer"] = json!("https://login.microsoftonline.com/{tenantid}/v2.0");
    h.idp.set_jwks(jwks);
    let discovery = format!(
        "http://{}/common/v2.0/.well-known/openid-configuration",
        h.idp.addr
    );
    let auth = format!(
        "openid_configuration = \"{discovery}\"\n{TEMPLATES}\ntenants = [\"{TENANT_A}\", \"{}\"]\naudiences = [\"{DEV_AUDIENCE}\"]\n",
        TENANT_B.to_uppercase()
    );
    let path = write_config(&config(&h, &auth, ""));
    let p = Proc::start(&path, &[]);
    p.wait_ready().await;

    // Tenant A: v2 and v1, either key (rsa-1 is pinned to A; a v1 token is still A's).
    for token in [
        h.issuer.rs256(&claims(&h, TENANT_A, 2, &[])),
        h.issuer.rs256(&claims(&h, TENANT_A, 1, &[])),
        h.issuer.es256(&claims(&h, TENANT_A, 2, &[])),
    ] {
        let r = p.get("/api", &token).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Tenant B (configured in upper case): v1 and v2 with the template key.
    for version in [1, 2] {
        let token = h.issuer.es256(&claims(&h, TENANT_B, version, &[]));
        let r = p.get("/api", &token).await;
        assert_eq!(r.status, 200, "v{version}: {}", r.text());
    }
    // Tenant B's token signed with the key pinned to tenant A: refused.
    let b_with_a_key = h.issuer.rs256(&claims(&h, TENANT_B, 2, &[]));
    p.get("/api", &b_with_a_key)
        .await
        .assert_refused(401, "key_issuer_mismatch");
    // Tenant C matches the template but may not call: 403.
    let c = h.issuer.es256(&claims(&h, TENANT_C, 2, &[]));
    let r = p.get("/api", &c).await;
    r.assert_refused(403, "tenant_not_allowed");
    assert!(r.challenge().contains("insufficient_scope"), "{r:?}");
    // `iss` must be the template with *this token's* tid in it, and tid must be a GUID.
    let mut mixed = claims(&h, TENANT_C, 2, &[]);
    mixed["iss"] = json!(v2_issuer(TENANT_A));
    p.get("/api", &h.issuer.es256(&mixed))
        .await
        .assert_refused(401, "invalid_issuer");
    let mut not_guid = claims(&h, "contoso.onmicrosoft.com", 2, &[]);
    not_guid["tid"] = json!("contoso.onmicrosoft.com");
    p.get("/api", &h.issuer.es256(&not_guid))
        .await
        .assert_refused(401, "invalid_issuer");
    let mut no_tid = claims(&h, TENANT_A, 2, &[]);
    no_tid.as_object_mut().unwrap().remove("tid");
    p.get("/api", &h.issuer.es256(&no_tid))
        .await
        .assert_refused(401, "invalid_issuer");
    // Prefix tricks: a longer issuer with the tenant inside is not the template.
    let mut longer = claims(&h, TENANT_A, 2, &[]);
    longer["iss"] = json!(format!("{}/extra", v2_issuer(TENANT_A)));
    p.get("/api", &h.issuer.es256(&longer))
        .await
        .assert_refused(401, "invalid_issuer");

    // The tenant is in the principal and /.auth/me.
    let b = h.issuer.es256(&claims(&h, TENANT_B, 1, &[]));
    let me = p.get("/.auth/me", &b).await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()[0]["tenant_id"], TENANT_B);
    let seen = h.upstream.last();
    assert!(seen.headers.contains_key("x-ms-client-principal"));
}

#[tokio::test]
async fn template_issuers_need_explicit_tenants() {
    let h = Harness::unstarted().await;
    let auth = format!(
        "openid_configuration = \"{}\"\n{TEMPLATES}\naudiences = [\"{DEV_AUDIENCE}\"]\n",
        h.idp.discovery_url()
    );
    let path = write_config(&config(&h, &auth, ""));
    let out = Command::new(BIN)
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.tenants"), "{err}");

    // tenants = ["*"]: any tenant, said explicitly.
    let any = auth.replace("audiences", "tenants = [\"*\"]\naudiences");
    let path = write_config(&config(&h, &any, ""));
    let p = Proc::start(&path, &[]);
    p.wait_ready().await;
    for tenant in [TENANT_A, TENANT_C] {
        let r = p
            .get("/api", &h.issuer.rs256(&claims(&h, tenant, 2, &[])))
            .await;
        assert_eq!(r.status, 200, "{tenant}: {}", r.text());
    }
}

#[tokio::test]
async fn rule_audiences_replace_the_accepted_audiences_on_their_routes() {
    let h = Harness::unstarted().await;
    let tenant = tokengate::dev::DEV_TENANT;
    let auth = format!(
        r#"openid_configuration = "{disc}"
issuers = ["{v2}"]
audiences = ["{DEV_AUDIENCE}"]
[[auth.rules]]
path = "/reports"
audiences = ["api://reports"]
[[auth.rules]]
path = "/reports/finance"
audiences = ["api://finance"]
roles = ["Finance.Read"]
"#,
        disc = h.idp.discovery_url(),
        v2 = v2_issuer(tenant),
    );
    let path = write_config(&config(&h, &auth, ""));
    let p = Proc::start(&path, &[]);
    p.wait_ready().await;
    let with_aud = |aud: Value, roles: &[&str]| {
        let mut c = h.issuer.v2_claims(roles);
        c["aud"] = aud;
        h.issuer.rs256(&c)
    };
    let main = h.token(&[]);
    let reports = with_aud(json!("api://reports"), &[]);
    assert_eq!(p.get("/api", &main).await.status, 200);
    assert_eq!(p.get("/reports/q1", &reports).await.status, 200);
    // The global audience is not accepted where a rule names its own...
    p.get("/reports/q1", &main)
        .await
        .assert_refused(401, "invalid_audience");
    // ...and a rule's audience is refused everywhere the rule does not match.
    p.get("/api", &reports)
        .await
        .assert_refused(401, "invalid_audience");
    // Two matching rules: the token must satisfy each.
    p.get(
        "/reports/finance",
        &with_aud(json!("api://finance"), &["Finance.Read"]),
    )
    .await
    .assert_refused(401, "invalid_audience");
    p.get("/reports/finance", &reports)
        .await
        .assert_refused(401, "invalid_audience");
    let both = with_aud(json!(["api://reports", "api://finance"]), &["Finance.Read"]);
    assert_eq!(p.get("/reports/finance", &both).await.status, 200);
    let both_no_role = with_aud(json!(["api://reports", "api://finance"]), &[]);
    p.get("/reports/finance", &both_no_role)
        .await
        .assert_refused(403, "missing_role");
    // A token for none of the proxy's audiences fails validation outright.
    p.get("/reports", &with_aud(json!("api://nobody"), &[]))
        .await
        .assert_refused(401, "invalid_audience");
}

#[tokio::test]
async fn report_mode_forwards_what_enforce_would_refuse_and_counts_it() {
    let h = Harness::unstarted().await;
    let tenant = tokengate::dev::DEV_TENANT;
    let auth = |mode: &str| {
        format!(
            r#"openid_configuration = "{disc}"
issuers = ["{v2}"]
audiences = ["{DEV_AUDIENCE}"]
mode = "{mode}"
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
"#,
            disc = h.idp.discovery_url(),
            v2 = v2_issuer(tenant),
        )
    };
    let path = write_config(&config(&h, &auth("report"), ""));
    let p = Proc::start(&path, &[]);
    p.wait_ready().await;
    let mut expired = h.issuer.v2_claims(&["App.Admin"]);
    expired["exp"] = json!(1);
    let expired = h.issuer.rs256(&expired);
    let reader = h.token(&["App.Read"]);

    // A token that does not validate: forwarded, without identity headers.
    let r = p.get("/admin", &expired).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = h.upstream.last();
    assert!(!seen.headers.contains_key("x-ms-client-principal"));
    assert!(!seen.headers.contains_key("authorization"));
    let line: Value = serde_json::from_str(&p.wait_log("would deny")).unwrap();
    assert_eq!(line["reason"], "token_expired");
    assert_eq!(line["status"], 401);
    assert_eq!(line["identity"], false);
    // No token at all: forwarded anonymously, counted.
    assert_eq!(send(&p, "/admin", &[]).await.status, 200);
    // A valid token without the rule's role: forwarded *with* identity headers.
    let r = p.get("/admin", &reader).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = h.upstream.last();
    assert!(seen.headers.contains_key("x-ms-client-principal"));
    let line: Value = serde_json::from_str(&p.wait_log("would deny")).unwrap();
    assert_eq!(line["reason"], "missing_token");
    let line: Value = serde_json::from_str(&p.wait_log("would deny")).unwrap();
    assert_eq!(
        (line["reason"].as_str(), line["identity"].as_bool()),
        (Some("missing_role"), Some(true))
    );
    // Malformed requests are still refused.
    let before = h.upstream.count();
    let bearer = format!("Bearer {reader}");
    let two = Request::get(format!("http://{}/api", p.public))
        .header("authorization", &bearer)
        .header("authorization", &bearer)
        .body(Full::default())
        .unwrap();
    Reply::read(client().request(two).await.unwrap())
        .await
        .assert_refused(400, "malformed_authorization");
    send(&p, "/a%2fb", &[("authorization", &bearer)])
        .await
        .assert_refused(400, "invalid_path");
    assert_eq!(
        h.upstream.count(),
        before,
        "a malformed request reached the upstream"
    );

    let series =
        |reason: &str| format!("tokengate_report_only_denials_total{{reason=\"{reason}\"}}");
    assert_eq!(metric(&p, &series("token_expired")).await, 1.0);
    assert_eq!(metric(&p, &series("missing_token")).await, 1.0);
    assert_eq!(metric(&p, &series("missing_role")).await, 1.0);
    assert_eq!(metric(&p, &series("malformed_authorization")).await, 0.0);

    // Switching to enforce is a hot reload.
    std::fs::write(&*path, config(&h, &auth("enforce"), "")).unwrap();
    p.signal("-HUP");
    p.wait_log("config reloaded");
    p.get("/admin", &expired)
        .await
        .assert_refused(401, "token_expired");
    p.get("/admin", &reader)
        .await
        .assert_refused(403, "missing_role");
    assert_eq!(metric(&p, &series("token_expired")).await, 1.0);
}

#[tokio::test]
async fn a_single_rule_in_report_mode() {
    let h = Harness::unstarted().await;
    let tenant = tokengate::dev::DEV_TENANT;
    let auth = format!(
        r#"openid_configuration = "{disc}"
issuers = ["{v2}"]
audiences = ["{DEV_AUDIENCE}"]
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
[[auth.rules]]
path = "/beta"
roles = ["Beta.Use"]
mode = "report"
"#,
        disc = h.idp.discovery_url(),
        v2 = v2_issuer(tenant),
    );
    let path = write_config(&config(&h, &auth, ""));
    let p = Proc::start(&path, &[]);
    p.wait_ready().await;
    let reader = h.token(&["App.Read"]);
    // The report-mode rule forwards, with identity, and says so.
    let r = p.get("/beta/feature", &reader).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(h
        .upstream
        .last()
        .headers
        .contains_key("x-ms-client-principal"));
    let line: Value = serde_json::from_str(&p.wait_log("would deny")).unwrap();
    assert_eq!(line["reason"], "missing_role");
    assert_eq!(line["path"], "/beta/feature");
    // Every other check is still enforced.
    p.get("/admin", &reader)
        .await
        .assert_refused(403, "missing_role");
    let mut expired = h.issuer.v2_claims(&["Beta.Use"]);
    expired["exp"] = json!(1);
    p.get("/beta", &h.issuer.rs256(&expired))
        .await
        .assert_refused(401, "token_expired");
    assert_eq!(send(&p, "/beta", &[]).await.status, 401);
    let series = "tokengate_report_only_denials_total{reason=\"missing_role\"}";
    assert_eq!(metric(&p, series).await, 1.0);
}

#[tokio::test]
async fn forward_token_sets_the_token_store_header_and_strips_client_copies() {
    let h = Harness::unstarted().await;
    let auth = format!(
        "openid_configuration = \"{}\"\nissuers = [\"{}\"]\naudiences = [\"{DEV_AUDIENCE}\"]\n",
        h.idp.discovery_url(),
        v2_issuer(tokengate::dev::DEV_TENANT),
    );
    const HEADER: &str = "x-ms-token-aad-access-token";
    let token = h.token(&[]);
    let bearer = format!("Bearer {token}");
    for forward in [false, true] {
        let text = config(&h, &auth, &format!("forward_token = {forward}"));
        let path = write_config(&text);
        let p = Proc::start(&path, &[]);
        p.wait_ready().await;
        let r = send(
            &p,
            "/api",
            &[("authorization", &bearer), (HEADER, "spoofed")],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = h.upstream.last();
        let got = seen.headers.get(HEADER).map(|v| v.to_str().unwrap());
        assert_eq!(
            got,
            forward.then_some(token.as_str()),
            "forward_token = {forward}"
        );
        assert!(!seen.headers.contains_key("authorization"));
        // Anonymous paths never carry one.
        let text = text.replace("[keys]", "excluded_paths = [\"/public\"]\n[keys]");
        std::fs::write(&*path, text).unwrap();
        p.signal("-HUP");
        p.wait_log("config reloaded");
        send(&p, "/public", &[(HEADER, "spoofed")]).await;
        assert!(!h.upstream.last().headers.contains_key(HEADER));
    }
}
