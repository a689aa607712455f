//! The identity endpoint's two protocols: what apps see, right and wrong.

use std::sync::Arc;

use http::Request;
use http_body_util::Full;

use super::sources::workload_config;
use super::support::*;

async fn started() -> (TestDir, MockEntra, Sidecar) {
    let files = TestDir::new("ep");
    let file = files.write("token", "federated\n");
    let entra = MockEntra::start(
        Expect::Federated("federated".into()),
        Arc::new(DevIssuer::generate()),
    )
    .await;
    let side = Sidecar::start(
        &workload_config(
            &entra,
            &file,
            "object_id = \"0f9d1c2b-3a4e-4f5a-8b6c-7d8e9f0a1b2c\"",
        ),
        &[],
        "debug",
    );
    (files, entra, side)
}

#[tokio::test]
async fn app_service_protocol_answers_like_app_service() {
    let (_f, entra, side) = started().await;
    let secret = side.secret("secret");
    assert_eq!(secret.len(), 64, "a random secret was created");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(side.dir.path("secret"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let r = side.app_service("api://callee", Some(&secret), "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["cache-control"], "no-store");
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "api://callee");
    assert_eq!(body["client_id"], CLIENT_ID);
    let on: u64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    let left: u64 = body["expires_in"].as_str().unwrap().parse().unwrap();
    let now = tokengate::pipeline::unix_now();
    assert!(on > now + 3500 && left > 3500, "{body}");
    assert_eq!(
        body["access_token"],
        entra.state.lock().unwrap().issued[0].as_str()
    );

    // Selectors naming our identity are fine, in any case.
    let ok = format!("&client_id={}", CLIENT_ID.to_uppercase());
    assert_eq!(
        side.app_service("api://callee", Some(&secret), &ok)
            .await
            .status,
        200
    );
    let ok = "&principal_id=0f9d1c2b-3a4e-4f5a-8b6c-7d8e9f0a1b2c";
    assert_eq!(
        side.app_service("api://callee", Some(&secret), ok)
            .await
            .status,
        200
    );
    // ... another identity, or one we cannot confirm, is 400 with a JSON error.
    for other in [
        "&client_id=00000000-0000-0000-0000-000000000001",
        "&object_id=00000000-0000-0000-0000-000000000001",
        "&mi_res_id=/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z",
    ] {
        let r = side.app_service("api://callee", Some(&secret), other).await;
        assert_eq!(r.status, 400, "{other}");
        assert_eq!(r.json()["error"], "identity_not_found", "{other}");
    }
    // Wrong or missing secret: 401 before anything else.
    for wrong in [None, Some("nope"), Some(&secret[..63])] {
        let r = side.app_service("api://callee", wrong, "").await;
        assert_eq!(r.status, 401, "{wrong:?}");
        assert_eq!(r.json()["error"], "unauthorized");
    }
    // Other api-versions, a missing or repeated resource: 400.
    let base = side.identity_endpoint();
    for q in [
        "?api-version=2017-09-01&resource=api://callee",
        "?api-version=2019-08-01",
        "?api-version=2019-08-01&resource=a&resource=b",
        "?api-version=2019-08-01&resource=%ZZ",
    ] {
        let req = Request::get(format!("{base}{q}"))
            .header("X-IDENTITY-HEADER", &secret)
            .body(Full::default())
            .unwrap();
        let r = send(req).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
    }
    entra.assert_no_errors();
    assert_eq!(entra.hits(), 1, "one token, cached, for every request");
}

#[tokio::test]
async fn imds_protocol_needs_metadata_true_and_refuses_proxied_requests() {
    let (_f, _entra, side) = started().await;
    let url = format!(
        "http://{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api%3A%2F%2Fcallee",
        side.endpoint.unwrap()
    );
    let get = |metadata: Option<&str>, xff: bool| {
        let mut b = Request::get(&url);
        if let Some(m) = metadata {
            b = b.header("Metadata", m);
        }
        if xff {
            b = b.header("X-Forwarded-For", "10.0.0.1");
        }
        b.body(Full::default()).unwrap()
    };
    let r = send(get(None, false)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request_102");
    assert_eq!(
        r.json()["error_description"],
        "Required metadata header not specified"
    );
    assert_eq!(send(get(Some("True"), false)).await.status, 400);
    assert_eq!(send(get(Some("true"), true)).await.status, 400);
    let r = send(get(Some("true"), false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["resource"], "api://callee");
    assert!(body["expires_on"].is_string() && body["expires_in"].is_string());
    // The App Service path with no secret stays closed even with Metadata: true.
    let r = send(
        Request::get(format!(
            "{}?api-version=2019-08-01&resource=x",
            side.identity_endpoint()
        ))
        .header("Metadata", "true")
        .body(Full::default())
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn a_refusing_authority_is_answered_at_once_with_a_json_503() {
    let files = TestDir::new("refused");
    let file = files.write("token", "stale-federated-token\n");
    let entra = MockEntra::start(
        Expect::Federated("the-real-one".into()),
        Arc::new(DevIssuer::generate()),
    )
    .await;
    let side = Sidecar::start(&workload_config(&entra, &file, ""), &[], "debug");
    let secret = side.secret("secret");
    let started = std::time::Instant::now();
    let r = side.app_service("api://callee", Some(&secret), "").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "authority_refused");
    assert_eq!(r.headers["retry-after"], "5");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "not the whole wait bound"
    );
    assert!(
        side.wait_log("invalid_client"),
        "the authority's error code is logged"
    );
}

#[test]
fn identity_env_prints_exports_and_creates_the_secret() {
    let dir = TestDir::new("env");
    let config = dir.write(
        "c.toml",
        &format!(
            "[identity]\nsource = \"imds\"\n[identity_endpoint]\naddress = \"0.0.0.0:42356\"\nsecret_file = \"{}\"\n",
            dir.path("s").display()
        ),
    );
    let out = std::process::Command::new(BIN)
        .args(["identity-env", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let secret = std::fs::read_to_string(dir.path("s")).unwrap();
    assert!(
        text.contains("export IDENTITY_ENDPOINT=http://127.0.0.1:42356/msi/token\n"),
        "{text}"
    );
    assert!(text.contains(&format!("export IDENTITY_HEADER={}\n", secret.trim())));
    // `check` warns about the non-loopback endpoint, and passes.
    let out = std::process::Command::new(BIN)
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(
        text.starts_with("warning: identity_endpoint.address 0.0.0.0:42356"),
        "{text}"
    );
    assert!(text.contains("identity      source imds"), "{text}");
    // No endpoint section: nothing to print, exit 64.
    let bare = dir.write("bare.toml", "[identity]\nsource = \"imds\"\n");
    let out = std::process::Command::new(BIN)
        .args(["identity-env", "--config", bare.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn config_errors_for_the_sides_name_what_is_missing() {
    let dir = TestDir::new("cfg");
    let cases = [
        ("[admin]\naddress = \"127.0.0.1:0\"\n", "nothing to run"),
        (
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n",
            "missing [auth]",
        ),
        (
            "[auth]\njwks_uri = \"http://127.0.0.1:1/k\"\nissuers = [\"i\"]\naudiences = [\"a\"]\n",
            "missing [upstream]",
        ),
        (
            "[listen]\naddress = \"127.0.0.1:1\"\n[identity]\nsource = \"imds\"\n",
            "listen.address",
        ),
        (
            "[identity]\nsource = \"workload_identity\"\n",
            "identity.tenant_id",
        ),
    ];
    for (text, needle) in cases {
        let path = dir.write("c.toml", text);
        let out = std::process::Command::new(BIN)
            .args(["check", "--config", path.to_str().unwrap()])
            .env_remove("AZURE_TENANT_ID")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(err.contains(needle), "{text}: {err}");
    }
}

#[tokio::test]
async fn sighup_keeps_the_caller_side_and_refuses_to_change_it() {
    let files = TestDir::new("hup");
    let file = files.write("token", "federated\n");
    let entra = MockEntra::start(
        Expect::Federated("federated".into()),
        Arc::new(DevIssuer::generate()),
    )
    .await;
    let config = workload_config(&entra, &file, "");
    let side = Sidecar::start(&config, &[], "info");
    let secret = side.secret("secret");
    assert_eq!(
        side.app_service("api://callee", Some(&secret), "")
            .await
            .status,
        200
    );
    // The same file: reloaded (nothing to swap on a caller-only process).
    side.reload(&config);
    assert!(side.wait_log("config reloaded"), "{}", side.logs());
    // A changed [identity]: refused whole, the running side keeps serving.
    side.reload(&config.replace(
        "federated_token_file",
        "timeout = \"3s\"\nfederated_token_file",
    ));
    assert!(
        side.wait_log("cannot change without a restart"),
        "{}",
        side.logs()
    );
    assert_eq!(
        side.app_service("api://callee", Some(&secret), "")
            .await
            .status,
        200
    );
    assert_eq!(entra.hits(), 1);
}
