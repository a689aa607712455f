//! Unmodified azure-identity for Python (installed by .ci/test-peers, pinned) against the identity
//! endpoint: ManagedIdentityCredential and DefaultAzureCredential, through
//! IDENTITY_ENDPOINT/IDENTITY_HEADER (App Service) and AZURE_POD_IDENTITY_AUTHORITY_HOST (IMDS).
//! In CI (`CI=true`) a missing package fails; elsewhere the test says so and returns.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;

use super::sources::workload_config;
use super::support::*;

/// The pinned version .ci/python-azure-identity installs.
const AZURE_IDENTITY: &str = "1.27.0";

const SCRIPT: &str = r#"
import json, sys, logging
from azure.identity import ManagedIdentityCredential, DefaultAzureCredential
kind, scope = sys.argv[1], sys.argv[2]
if kind == "managed":
    cred = ManagedIdentityCredential()
elif kind == "managed_client_id":
    cred = ManagedIdentityCredential(client_id=sys.argv[3])
else:
    cred = DefaultAzureCredential(exclude_cli_credential=True,
        exclude_powershell_credential=True, exclude_developer_cli_credential=True,
        exclude_visual_studio_code_credential=True, exclude_shared_token_cache_credential=True,
        exclude_interactive_browser_credential=True, exclude_broker_credential=True)
t = cred.get_token(scope)
print(json.dumps({"token": t.token, "expires_on": t.expires_on}))
"#;

/// The Python with azure-identity, or `None` (outside CI) when it is not installed.
fn python() -> Option<PathBuf> {
    crate::provision::ensure_test_peers();
    let path = std::env::var_os("TOKENGATE_AZURE_IDENTITY_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/tokengate-azure-identity/venv/bin/python"))
        })?;
    let ok = Command::new(&path)
        .args([
            "-c",
            "import azure.identity, sys; print(azure.identity.__version__)",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match ok {
        Some(v) if v == AZURE_IDENTITY => Some(path),
        found => {
            let msg = format!(
                "azure-identity {AZURE_IDENTITY} not found at {} (found {found:?}); .ci/test-peers \
                 installs it",
                path.display()
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("skipping: {msg}");
            None
        }
    }
}

/// Runs the script with only the given environment (plus PATH and HOME): what the SDK reads is
/// exactly what we set.
fn run(python: &PathBuf, env: &[(&str, String)], args: &[&str]) -> Value {
    let mut cmd = Command::new(python);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .args(["-c", SCRIPT])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "azure-identity failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn azure_identity_gets_tokens_through_both_protocols() {
    let Some(python) = python() else {
        return;
    };
    let files = TestDir::new("py");
    let file = files.write("token", "federated\n");
    let entra = MockEntra::start(
        Expect::Federated("federated".into()),
        Arc::new(DevIssuer::generate()),
    )
    .await;
    let side = Sidecar::start(&workload_config(&entra, &file, ""), &[], "info");
    let secret = side.secret("secret");
    let app_service = vec![
        ("IDENTITY_ENDPOINT", side.identity_endpoint()),
        ("IDENTITY_HEADER", secret.clone()),
    ];
    let imds = vec![(
        "AZURE_POD_IDENTITY_AUTHORITY_HOST",
        format!("http://{}", side.endpoint.unwrap()),
    )];
    let python = Arc::new(python);
    let mut seen = Vec::new();
    for (name, env, args) in [
        (
            "app service, managed",
            &app_service,
            vec!["managed", "api://callee/.default"],
        ),
        (
            "app service, managed with client_id",
            &app_service,
            vec!["managed_client_id", "api://callee/.default", CLIENT_ID],
        ),
        (
            "app service, default",
            &app_service,
            vec!["default", "api://callee/.default"],
        ),
        (
            "imds, managed",
            &imds,
            vec!["managed", "api://callee/.default"],
        ),
        (
            "imds, default",
            &imds,
            vec!["default", "api://callee/.default"],
        ),
    ] {
        let (python, env) = (python.clone(), env.clone());
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let got = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&python, &env, &args)
        })
        .await
        .unwrap();
        seen.push((name, got));
    }
    let issued = entra.state.lock().unwrap().issued.clone();
    assert_eq!(issued.len(), 1, "one acquisition served every SDK call");
    let now = tokengate::pipeline::unix_now();
    for (name, got) in seen {
        assert_eq!(got["token"], issued[0].as_str(), "{name}");
        let exp = got["expires_on"].as_u64().unwrap();
        assert!(exp > now + 3500 && exp <= now + 3600, "{name}: {exp}");
    }
    entra.assert_no_errors();
}
