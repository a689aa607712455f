//! The Azure CLI: `az account get-access-token --resource R --output json`, run without a
//! shell, bounded by `identity.timeout` (the child is killed when it runs over).

use std::process::Stdio;
use std::time::Duration;

use super::{AcquireError, Failure};
use crate::caller::token::{AccessToken, Resource};
use crate::pipeline::unix_now;

/// Largest `az` output read.
const MAX_OUTPUT: usize = 64 * 1024;

/// Runs `az` (found on `PATH`) for `resource`.
pub async fn acquire(
    resource: &Resource,
    tenant_id: Option<&str>,
    timeout: Duration,
) -> Result<AccessToken, AcquireError> {
    let mut cmd = tokio::process::Command::new("az");
    cmd.args([
        "account",
        "get-access-token",
        "--resource",
        resource.as_str(),
        "--output",
        "json",
    ]);
    if let Some(t) = tenant_id {
        cmd.args(["--tenant", t]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| AcquireError::new(Failure::CliFailed, format!("cannot run az: {e}")))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            AcquireError::new(
                Failure::CliTimeout,
                format!("az did not finish within {timeout:?}"),
            )
        })?
        .map_err(|e| AcquireError::new(Failure::CliFailed, format!("az: {e}")))?;
    if !output.status.success() {
        // az's own error line ("Please run 'az login'..."), never its stdout.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        return Err(AcquireError::new(
            Failure::CliFailed,
            format!("az exited with {}: {first}", output.status),
        ));
    }
    if output.stdout.len() > MAX_OUTPUT {
        return Err(AcquireError::new(
            Failure::CliFailed,
            "az: output too large",
        ));
    }
    #[derive(serde::Deserialize)]
    struct CliToken {
        #[serde(rename = "accessToken")]
        access_token: String,
        /// Epoch seconds; Azure CLI 2.54 and later.
        expires_on: Option<u64>,
    }
    let parsed: CliToken = serde_json::from_slice(&output.stdout).map_err(|e| {
        AcquireError::new(
            Failure::CliFailed,
            format!("az: not a token (line {} column {})", e.line(), e.column()),
        )
    })?;
    let now = unix_now();
    let expires_on = parsed.expires_on.ok_or_else(|| {
        AcquireError::new(
            Failure::CliFailed,
            "az: no expires_on in its output (Azure CLI 2.54 or later is needed)",
        )
    })?;
    if parsed.access_token.is_empty() || expires_on <= now {
        return Err(AcquireError::new(
            Failure::CliFailed,
            "az: empty or expired token",
        ));
    }
    Ok(AccessToken::new(parsed.access_token, now, expires_on))
}
