//! Each source against its mock authority, and the cache's refresh behaviour.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::support::*;

/// `[identity]` for workload identity against `entra`, plus an identity endpoint.
pub fn workload_config(entra: &MockEntra, token_file: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[admin]
address = "127.0.0.1:0"
[identity]
source = "workload_identity"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
authority_host = "{authority}"
federated_token_file = "{file}"
{extra}
[identity_endpoint]
address = "127.0.0.1:0"
secret_file = "{{dir}}/secret"
wait_timeout = "2s"
"#,
        authority = entra.authority(),
        file = token_file.display(),
    )
}

/// Waits (at most 6 s) until the mock Entra has seen `n` token requests.
async fn wait_for_hits(entra: &MockEntra, n: usize) {
    for _ in 0..600 {
        if entra.hits() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the mock Entra saw {} requests, not {n}", entra.hits());
}

#[tokio::test]
async fn workload_identity_sends_every_field_and_rereads_the_rotated_token_file() {
    let files = TestDir::new("wi");
    let file = files.write("token", "federated-token-one\n");
    let entra = MockEntra::start(
        Expect::Federated("federated-token-one".into()),
        Arc::new(DevIssuer::generate()),
    )
    .await;
    // A 6 s token with refresh_before = 5 s: refreshed at half-life (3 s).
    entra.set(|s| s.expires_in = 6);
    let side = Sidecar::start(
        &workload_config(&entra, &file, "refresh_before = \"5s\""),
        &[],
        "debug",
    );
    let secret = side.secret("secret");
    let r = side.app_service("api://callee", Some(&secret), "").await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), side.logs());
    let first = r.json()["access_token"].as_str().unwrap().to_string();
    entra.assert_no_errors();
    assert_eq!(entra.hits(), 1);

    // The kubelet rotates the projected token: the next refresh sends the new one.
    files.write("token", "federated-token-two\n");
    entra.set(|s| s.expect = Expect::Federated("federated-token-two".into()));
    let started = Instant::now();
    wait_for_hits(&entra, 2).await;
    // Refreshed at half-life (3 s), well before the 6 s expiry, with no request asking.
    assert!(started.elapsed() < Duration::from_millis(5500));
    entra.assert_no_errors();
    // The mock counts a request when it arrives; the new token is published when it is answered.
    let issued = || entra.state.lock().unwrap().issued.clone();
    for _ in 0..200 {
        if issued().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut second = String::new();
    for _ in 0..200 {
        let r = side.app_service("api://callee", Some(&secret), "").await;
        second = r.json()["access_token"].as_str().unwrap().to_string();
        if second != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(second, issued()[1], "the refreshed token is served");
    assert_eq!(
        side.metric(
            "tokengate_token_acquisitions_total{outcome=\"ok\",source=\"workload_identity\"}"
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn client_certificate_assertion_verifies_and_the_certificate_rotates() {
    let files = TestDir::new("cert");
    let (pem, public_key, x5t) = certificate("tokengate-one");
    let cert_file = files.write("cert.pem", &pem);
    let entra = MockEntra::start(
        Expect::Certificate { public_key, x5t },
        Arc::new(DevIssuer::generate()),
    )
    .await;
    entra.set(|s| s.expires_in = 6);
    let config = format!(
        r#"
[admin]
address = "127.0.0.1:0"
[identity]
source = "client_certificate"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
authority_host = "{authority}"
certificate_file = "{file}"
refresh_before = "5s"
[identity_endpoint]
address = "127.0.0.1:0"
secret_file = "{{dir}}/secret"
"#,
        authority = entra.authority(),
        file = cert_file.display(),
    );
    let side = Sidecar::start(&config, &[], "debug");
    let secret = side.secret("secret");
    let r = side.app_service("api://callee", Some(&secret), "").await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), side.logs());
    entra.assert_no_errors();

    // A new certificate (new key): the mock now only accepts assertions signed with it.
    let (pem2, public_key2, x5t2) = certificate("tokengate-two");
    files.write("cert.pem", &pem2);
    entra.set(|s| {
        s.expect = Expect::Certificate {
            public_key: public_key2,
            x5t: x5t2,
        }
    });
    let started = Instant::now();
    wait_for_hits(&entra, 2).await;
    assert!(started.elapsed() < Duration::from_millis(5500));
    entra.assert_no_errors();
}

#[tokio::test]
async fn imds_retries_429_410_500_with_backoff_then_serves() {
    let imds = MockImds::start(&[429, 410, 500]).await;
    let config = format!(
        r#"
[admin]
address = "127.0.0.1:0"
[identity]
source = "imds"
client_id = "{CLIENT_ID}"
imds_endpoint = "http://{addr}"
[identity_endpoint]
address = "127.0.0.1:0"
secret_file = "{{dir}}/secret"
wait_timeout = "20s"
"#,
        addr = imds.addr
    );
    let side = Sidecar::start(&config, &[], "debug");
    let secret = side.secret("secret");
    let r = side
        .app_service("https://vault.azure.net", Some(&secret), "")
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), side.logs());
    assert!(r.json()["access_token"]
        .as_str()
        .unwrap()
        .starts_with("imds-token-"));
    let hits = imds.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 4, "three failures, then success");
    assert!(
        hits[0].1.contains(&format!("client_id={CLIENT_ID}")),
        "{}",
        hits[0].1
    );
    assert!(hits[0].1.contains("resource=https%3A%2F%2Fvault.azure.net"));
    // Exponential: each gap at least as long as the one before it.
    let gaps: Vec<Duration> = hits.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps[0] >= Duration::from_millis(200), "{gaps:?}");
    assert!(gaps[1] >= gaps[0] && gaps[2] >= gaps[1], "{gaps:?}");
    // A 24 h IMDS token: one acquisition counted, the 3 retries were inside it.
    assert_eq!(
        side.metric("tokengate_token_acquisitions_total{outcome=\"ok\",source=\"imds\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn azure_cli_runs_az_from_path_without_a_shell() {
    let bin = TestDir::new("az");
    stub_az(&bin.0, "cli-token-value", 3600);
    let path = format!(
        "{}:{}",
        bin.0.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config = r#"
[admin]
address = "127.0.0.1:0"
[identity]
source = "azure_cli"
tenant_id = "contoso.onmicrosoft.com"
[identity_endpoint]
address = "127.0.0.1:0"
secret_file = "{dir}/secret"
"#;
    let side = Sidecar::start(config, &[("PATH", &path)], "debug");
    let secret = side.secret("secret");
    let r = side
        .app_service("api://callee; rm -rf /", Some(&secret), "")
        .await;
    assert_eq!(
        r.status, 400,
        "a resource with spaces is refused before az runs"
    );
    let r = side.app_service("api://callee", Some(&secret), "").await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), side.logs());
    assert_eq!(r.json()["access_token"], "cli-token-value");
    let left: u64 = r.json()["expires_in"].as_str().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&left), "{left}");
    let args = std::fs::read_to_string(bin.path("az.args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "account",
            "get-access-token",
            "--resource",
            "api://callee",
            "--output",
            "json",
            "--tenant",
            "contoso.onmicrosoft.com"
        ]
    );
}

#[tokio::test]
async fn single_flight_under_100_concurrent_requests() {
    let files = TestDir::new("sf");
    let file = files.write("token", "federated\n");
    let entra = MockEntra::start(
        Expect::Federated("federated".into()),
        Arc::new(DevIssuer::generate()),
    )
    .await;
    // Slow authority: every request arrives while the first acquisition is in flight.
    entra.set(|s| s.delay = Duration::from_millis(500));
    let side = Arc::new(Sidecar::start(
        &workload_config(&entra, &file, ""),
        &[],
        "info",
    ));
    let secret = side.secret("secret");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (side, secret) = (side.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let r = side.app_service("api://callee", Some(&secret), "").await;
            (
                r.status,
                r.json()["access_token"].as_str().map(String::from),
            )
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        let (status, token) = t.await.unwrap();
        assert_eq!(status, 200);
        tokens.insert(token.unwrap());
    }
    assert_eq!(entra.hits(), 1, "one acquisition for 100 requests");
    assert_eq!(tokens.len(), 1);
    entra.assert_no_errors();
}

#[tokio::test]
async fn cached_token_kept_while_the_authority_is_down_then_503_for_new_resources() {
    let files = TestDir::new("down");
    let file = files.write("token", "federated\n");
    let entra = MockEntra::start(
        Expect::Federated("federated".into()),
        Arc::new(DevIssuer::generate()),
    )
    .await;
    entra.set(|s| s.expires_in = 8);
    let side = Sidecar::start(
        &workload_config(&entra, &file, "refresh_before = \"7s\""),
        &[],
        "debug",
    );
    let secret = side.secret("secret");
    let r = side.app_service("api://callee", Some(&secret), "").await;
    let first = r.json()["access_token"].as_str().unwrap().to_string();
    entra.set(|s| s.down = true);
    // Past the refresh point (4 s), before expiry (8 s): refreshes fail, the token is kept.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let r = side.app_service("api://callee", Some(&secret), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["access_token"], first.as_str());
    assert!(
        side.metric(
            "tokengate_token_acquisitions_total{outcome=\"authority_error\",source=\"workload_identity\"}"
        )
        .await
            >= 1.0
    );
    assert!(side.wait_log("token acquisition failed"));
    // A resource never fetched has nothing to fall back on: it waits its bound, then 503.
    let started = Instant::now();
    let r = side.app_service("api://other", Some(&secret), "").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(r.json()["error"], "authority_error");
    // Once it expires the old token is not served.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let r = side.app_service("api://callee", Some(&secret), "").await;
    assert_eq!(r.status, 503);
    // The authority comes back: served again.
    entra.set(|s| s.down = false);
    let mut ok = false;
    for _ in 0..100 {
        let r = side.app_service("api://callee", Some(&secret), "").await;
        if r.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "served again after recovery");
    entra.assert_no_errors();
}
