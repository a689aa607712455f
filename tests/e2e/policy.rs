//! Issue 13 through the real binary: multi-tenant issuers (two tenants, v1 and v2, keys pinned
//! to a tenant, discovery from /common/), per-route audiences, report-only rollout with its log
//! line and metrics (and switching it by reload), and `upstream.forward_token`.

use std::process::Command;

use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};

use tokengate::dev::{v1_issuer, v2_issuer, DEV_AUDIENCE};

use crate::binary::{write_config, Dev, Proc, BIN};
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

// ---- tokengate check: lint ----

const T: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const API_ID: &str = "3f0d6a4e-0000-4000-8000-000000000001";
const API_ID2: &str = "3f0d6a4e-0000-4000-8000-000000000002";

/// A clean Entra config (v2, client-id audience, an allow-list), with `edit` applied to its
/// `[auth]` keys and `rules` appended.
fn lint_config(edit: &dyn Fn(String) -> String, rules: &str) -> String {
    let auth = format!(
        "openid_configuration = \"https://login.microsoftonline.com/{T}/v2.0/.well-known/openid-configuration\"\n\
         issuers = [\"https://login.microsoftonline.com/{T}/v2.0\"]\n\
         audiences = [\"{API_ID}\"]\n\
         allowed_applications = [\"11111111-1111-4111-8111-111111111111\"]\n"
    );
    format!(
        "[upstream]\nurl = \"http://127.0.0.1:3000\"\n[auth]\n{}{rules}",
        edit(auth)
    )
}

fn check(text: &str, strict: bool) -> (i32, String) {
    let path = write_config(text);
    let mut cmd = Command::new(BIN);
    cmd.arg("check");
    if strict {
        cmd.arg("--strict");
    }
    let out = cmd
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap(), stdout)
}

#[test]
fn check_warns_about_configs_that_cannot_work() {
    let v1 = format!("https://sts.windows.net/{T}/");
    let rule = |path: &str, extra: &str| format!("[[auth.rules]]\npath = \"{path}\"\n{extra}\n");
    type Edit = Box<dyn Fn(String) -> String>;
    let keep: fn(String) -> String = |a| a;
    let cases: Vec<(&str, Edit, String)> = vec![
        (
            "v2-issuer-app-id-uri",
            Box::new(|a: String| a.replace(&format!("[\"{API_ID}\"]"), "[\"api://my-api\"]")),
            String::new(),
        ),
        (
            "v1-issuer-client-id-audience",
            Box::new(move |a: String| {
                a.replace(
                    &format!("https://login.microsoftonline.com/{T}/v2.0\"]"),
                    &format!("{v1}\"]"),
                )
            }),
            String::new(),
        ),
        (
            "any-application",
            Box::new(|a: String| {
                a.lines()
                    .filter(|l| !l.starts_with("allowed_applications"))
                    .map(|l| format!("{l}\n"))
                    .collect()
            }),
            String::new(),
        ),
        (
            "tenant-mismatch",
            Box::new(|a: String| a.replacen(T, "00000000-0000-4000-8000-000000000001", 1)),
            String::new(),
        ),
        (
            "any-tenant",
            Box::new(|a: String| {
                a.replace(&format!("{T}/v2.0/.well"), "organizations/v2.0/.well")
                    .replace(
                        &format!("{T}/v2.0\"]"),
                        "{tenantid}/v2.0\"]\ntenants = [\"*\"]",
                    )
            }),
            String::new(),
        ),
        (
            "rule-shadowed",
            Box::new(keep),
            rule("/api", "roles = [\"Api.Read\"]")
                + &rule(
                    "/api/reports",
                    "methods = [\"GET\"]\nroles = [\"Reports.Read\"]",
                ),
        ),
        (
            "rule-duplicate",
            Box::new(keep),
            rule("/api", "roles = [\"A\"]") + &rule("/API/", "roles = [\"B\"]"),
        ),
        (
            "rule-unreachable",
            Box::new(keep),
            rule("/tunnel", "methods = [\"CONNECT\"]\nroles = [\"A\"]"),
        ),
        (
            "anonymous-covers-rules",
            Box::new(|a: String| a + "excluded_paths = [\"/api\"]\n"),
            rule("/api/admin", "methods = [\"POST\"]\nroles = [\"Admin\"]"),
        ),
        (
            "rule-audience-reserved",
            Box::new(|a: String| {
                a.replace(
                    &format!("[\"{API_ID}\"]"),
                    &format!("[\"{API_ID}\", \"{API_ID2}\"]"),
                )
            }),
            rule("/reports", &format!("audiences = [\"{API_ID2}\"]")),
        ),
        (
            "no-open-audience",
            Box::new(keep),
            rule("/reports", &format!("audiences = [\"{API_ID}\"]")),
        ),
        (
            "report-mode",
            Box::new(|a: String| a + "mode = \"report\"\n"),
            String::new(),
        ),
    ];
    let (code, out) = check(&lint_config(&keep, ""), true);
    assert_eq!(code, 0, "the clean config warns: {out}");
    assert!(!out.contains("warning:"), "{out}");
    for (lint, edit, rules) in cases {
        let text = lint_config(&*edit, &rules);
        let (code, out) = check(&text, false);
        assert_eq!(
            code, 0,
            "{lint}: warnings must not fail check without --strict\n{out}"
        );
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("warning: ")).collect();
        assert!(
            lines.iter().any(|l| l.ends_with(&format!("[{lint}]"))),
            "{lint} not reported for\n{text}\n---\n{out}"
        );
        let (code, _) = check(&text, true);
        assert_eq!(code, 1, "{lint}: --strict must fail");
    }
}

#[test]
fn shipped_configs_pass_check_strict() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let manifest =
        std::fs::read_to_string(format!("{repo}/deploy/kubernetes/tokengate-sidecar.yaml"))
            .unwrap();
    // The ConfigMap's proxy.toml: the indented block after `proxy.toml: |`.
    let block: String = manifest
        .split("proxy.toml: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    for (name, text) in [
        ("ConfigMap", block),
        (
            "proxy.toml",
            std::fs::read_to_string(format!("{repo}/proxy.toml")).unwrap(),
        ),
    ] {
        let (code, out) = check(&text, true);
        assert_eq!(code, 0, "{name}:\n{out}");
    }
}

// ---- tokengate explain ----

fn explain(args: &[&str], stdin: Option<&str>) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("explain")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

// Multi-threaded: the explain processes fetch keys from the IdP served by this runtime while
// the test waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_the_proxys_own_verdict() {
    let h = Harness::unstarted().await;
    let tenant = tokengate::dev::DEV_TENANT;
    let auth = format!(
        r#"openid_configuration = "{disc}"
issuers = ["https://login.microsoftonline.com/{{tenantid}}/v2.0"]
tenants = ["{tenant}"]
audiences = ["{DEV_AUDIENCE}"]
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
"#,
        disc = h.idp.discovery_url(),
    );
    let text = config(&h, &auth, "");
    let path = write_config(&text);
    let jwks = write_config(&h.issuer.jwks().to_string());
    let cfg = path.to_str().unwrap();

    let valid = h.token(&["App.Read"]);
    let mut c = h.issuer.v2_claims(&["App.Admin"]);
    c["exp"] = json!(1);
    let expired = h.issuer.rs256(&c);
    let mut c = h.issuer.v2_claims(&["App.Admin"]);
    c["aud"] = json!("api://someone-else");
    let wrong_aud = h.issuer.rs256(&c);
    let wrong_tenant = h.issuer.es256(&claims(&h, TENANT_C, 2, &["App.Admin"]));
    let cases: [(&str, &str, &str, i32, u16); 5] = [
        ("valid", &valid, "/api", 0, 200),
        ("expired", &expired, "/api", 1, 401),
        ("wrong audience", &wrong_aud, "/api", 1, 401),
        ("wrong tenant", &wrong_tenant, "/api", 1, 403),
        ("missing role", &valid, "/admin/users", 1, 403),
    ];
    let verdicts = [
        "verdict: allow",
        "verdict: deny token_expired (401)",
        "verdict: deny invalid_audience (401)",
        "verdict: deny tenant_not_allowed (403)",
        "verdict: deny missing_role (403)",
    ];
    // The proxy itself, same config: explain must agree with what it answers.
    let p = Proc::start(&path, &[]);
    p.wait_ready().await;
    for ((name, token, req_path, code, status), verdict) in cases.iter().zip(verdicts) {
        // Keys fetched like the proxy does (discovery + JWKS).
        let (got, out) = explain(&["--config", cfg, "--path", req_path, token], None);
        assert_eq!(got, *code, "{name}:\n{out}");
        assert!(
            out.lines().any(|l| l == verdict),
            "{name}: {verdict:?} not in\n{out}"
        );
        assert!(out.contains("\"iss\""), "{name}: claims not shown\n{out}");
        assert!(out.contains("\"alg\""), "{name}: header not shown\n{out}");
        let (_, sig) = token.rsplit_once('.').unwrap();
        assert!(!out.contains(sig), "{name}: the signature was printed");
        let (kid, other) = if *name == "wrong tenant" {
            ("ec-1", "rsa-1")
        } else {
            ("rsa-1", "ec-1")
        };
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(kid) && l.ends_with("verifies the signature")),
            "{name}: {kid} should verify\n{out}"
        );
        assert!(
            !out.lines().any(|l| l.trim_start().starts_with(other) && l.ends_with("verifies the signature")),
            "{name}: {other} should not verify\n{out}"
        );
        // The same verdict from a JWKS file and the token on stdin.
        let (got2, out2) = explain(
            &[
                "--config",
                cfg,
                "--jwks",
                jwks.to_str().unwrap(),
                "--path",
                req_path,
                "-",
            ],
            Some(&format!("Bearer {token}\n")),
        );
        assert_eq!(got2, *code, "{name} (--jwks, stdin):\n{out2}");
        assert!(out2.lines().any(|l| l == verdict), "{name}: {out2}");
        let r = p.get(req_path, token).await;
        assert_eq!(
            r.status.as_u16(),
            *status,
            "{name}: the proxy answered {}",
            r.text()
        );
    }
    // POST needs the method to matter.
    let (code, out) = explain(
        &[
            "--config", cfg, "--path", "/api", "--method", "post", &valid,
        ],
        None,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("POST /api"), "{out}");
    // Garbage is explained too, not an error.
    let (code, out) = explain(&["--config", cfg, "not-a-token"], None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("verdict: deny malformed_token (401)"), "{out}");
}

#[tokio::test]
async fn dev_demonstrates_report_mode_and_explain() {
    let dev = Dev::start().await;
    let lines = &dev.lines;
    let beta = dev.line("report-mode curl", |l| {
        l.starts_with("curl -s -H 'Authorization: Bearer ") && l.ends_with("/beta/x")
    });
    let reply = Dev::curl(beta).await;
    assert_eq!(reply.status, 200, "report mode forwards: {}", reply.text());
    assert!(reply.json()["headers"]["x-ms-client-principal"].is_string());
    let metrics_line = lines
        .iter()
        .find(|l| l.contains("/metrics | grep report_only"))
        .unwrap();
    let metrics_url = metrics_line.split(' ').nth(2).unwrap();
    let req = Request::get(metrics_url).body(Full::default()).unwrap();
    let metrics = Reply::read(client().request(req).await.unwrap())
        .await
        .text();
    assert!(
        metrics.contains("tokengate_report_only_denials_total{reason=\"missing_role\"} 1"),
        "{metrics}"
    );
    let explains: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" explain --config "))
        .collect();
    assert_eq!(explains.len(), 2, "{lines:?}");
    for (line, verdict) in explains
        .iter()
        .zip(["deny missing_role (403)", "deny token_expired (401)"])
    {
        let args: Vec<&str> = line.split(' ').collect();
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains(&format!("verdict: {verdict}")), "{text}");
    }
}

#[tokio::test]
async fn report_mode_still_fails_closed_without_signing_keys() {
    let h = Harness::unstarted().await;
    h.idp.set_mode(crate::support::IdpMode::Failing);
    let auth = format!(
        "openid_configuration = \"{}\"\nissuers = [\"{}\"]\naudiences = [\"{DEV_AUDIENCE}\"]\nmode = \"report\"\n",
        h.idp.discovery_url(),
        v2_issuer(tokengate::dev::DEV_TENANT),
    );
    let path = write_config(&config(&h, &auth, ""));
    let p = Proc::start(&path, &[]);
    p.get("/api", &h.token(&[]))
        .await
        .assert_refused(503, "no_signing_keys");
    assert_eq!(h.upstream.count(), 0);
}
