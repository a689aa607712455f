//! Where tokens come from: one acquisition, for one resource, from the configured source.
//!
//! # Contract
//! - [`TokenSource::acquire`] makes one attempt (IMDS: one attempt in the sense of Microsoft's
//!   IMDS guidance, i.e. with its retries of 404/410/429/5xx); retrying after a failure, caching
//!   and single flight are the cache's job (`caller::cache`).
//! - Every failure is an [`AcquireError`] whose [`Failure`] gives a stable label (logs, metrics,
//!   the identity endpoint's 503 body) and whether trying again soon can help. Its detail text
//!   is built from status codes and the authority's error code and description only: never a
//!   token, an assertion, a form body or a file's contents.
//! - Credentials that rotate (the federated token file, the certificate) are read for every
//!   attempt, so a rotation is picked up by the next refresh without a restart.

mod cli;
mod entra;
mod imds;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rustls::pki_types::CertificateDer;

use super::config::{IdentityConfig, SourceConfig};
use super::token::{AccessToken, Resource};
use crate::net::client::{FetchErrorKind, HttpClient};

/// Largest token response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Longest detail kept from an error response.
const MAX_DETAIL: usize = 300;

/// Why an acquisition failed, as a stable label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The federated token file or the certificate could not be read or used.
    CredentialUnreadable,
    /// No connection to the authority (or IMDS).
    AuthorityUnreachable,
    /// No answer within `identity.timeout`.
    AuthorityTimeout,
    /// The authority answered 429 or 5xx.
    AuthorityError,
    /// The authority refused the request (4xx): wrong client, tenant, resource or credential.
    AuthorityRefused,
    /// A 200 whose body is not a token response.
    BadResponse,
    /// `az` could not be run or failed (not logged in, unknown resource).
    CliFailed,
    /// `az` did not finish within `identity.timeout`.
    CliTimeout,
}

impl Failure {
    /// Every variant, for metric series resolved at start.
    pub const ALL: [Failure; 8] = [
        Failure::CredentialUnreadable,
        Failure::AuthorityUnreachable,
        Failure::AuthorityTimeout,
        Failure::AuthorityError,
        Failure::AuthorityRefused,
        Failure::BadResponse,
        Failure::CliFailed,
        Failure::CliTimeout,
    ];

    /// The label in logs, metrics and error bodies.
    pub fn label(self) -> &'static str {
        match self {
            Failure::CredentialUnreadable => "credential_unreadable",
            Failure::AuthorityUnreachable => "authority_unreachable",
            Failure::AuthorityTimeout => "authority_timeout",
            Failure::AuthorityError => "authority_error",
            Failure::AuthorityRefused => "authority_refused",
            Failure::BadResponse => "bad_response",
            Failure::CliFailed => "cli_failed",
            Failure::CliTimeout => "cli_timeout",
        }
    }

    /// Whether the same request may succeed soon without anyone changing anything. An app
    /// waiting for a token keeps waiting through these; the others are answered at once.
    pub fn transient(self) -> bool {
        matches!(
            self,
            Failure::AuthorityUnreachable
                | Failure::AuthorityTimeout
                | Failure::AuthorityError
                | Failure::BadResponse
                | Failure::CliTimeout
        )
    }
}

/// A failed acquisition: the label and a detail for the log line.
#[derive(Debug, Clone)]
pub struct AcquireError {
    /// What kind of failure.
    pub failure: Failure,
    /// Human detail, free of secrets (see the module contract).
    pub detail: String,
}

impl AcquireError {
    pub(crate) fn new(failure: Failure, detail: impl Into<String>) -> AcquireError {
        let mut detail: String = detail.into();
        if detail.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        AcquireError { failure, detail }
    }
}

impl std::fmt::Display for AcquireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.failure.label(), self.detail)
    }
}

/// The configured source, ready to acquire.
pub struct TokenSource {
    config: IdentityConfig,
    http: HttpClient,
}

impl TokenSource {
    /// A source for `config`; https is verified against the system's CAs plus `extra_ca`.
    pub fn new(config: IdentityConfig, extra_ca: &[CertificateDer<'static>]) -> TokenSource {
        let http = HttpClient::new(config.timeout, extra_ca);
        TokenSource { config, http }
    }

    /// The `source` label.
    pub fn name(&self) -> &'static str {
        self.config.source.name()
    }

    /// The configured identity.
    pub fn identity(&self) -> &IdentityConfig {
        &self.config
    }

    /// One acquisition of a token for `resource`.
    pub async fn acquire(&self, resource: &Resource) -> Result<AccessToken, AcquireError> {
        let timeout = self.config.timeout;
        match &self.config.source {
            SourceConfig::WorkloadIdentity { app, token_file } => {
                let assertion = entra::Assertion::FederatedTokenFile(token_file);
                entra::client_credentials(&self.http, app, resource, assertion, timeout).await
            }
            SourceConfig::ClientCertificate {
                app,
                certificate_file,
            } => {
                let assertion = entra::Assertion::Certificate(certificate_file);
                entra::client_credentials(&self.http, app, resource, assertion, timeout).await
            }
            SourceConfig::Dev { app, roles } => {
                let assertion = entra::Assertion::Dev(roles);
                entra::client_credentials(&self.http, app, resource, assertion, timeout).await
            }
            SourceConfig::Imds { endpoint } => {
                imds::acquire(
                    &self.http,
                    endpoint,
                    self.config.client_id.as_deref(),
                    resource,
                    timeout,
                )
                .await
            }
            SourceConfig::AzureCli { tenant_id } => {
                cli::acquire(resource, tenant_id.as_deref(), timeout).await
            }
        }
    }
}

/// Sends `req` through the shared outbound client, reading a bounded body within `timeout`.
/// Connection failures and timeouts become their failures; the status is the caller's to judge.
async fn exchange(
    http: &HttpClient,
    req: http::Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), AcquireError> {
    let resp = http.send(req, timeout, MAX_RESPONSE).await.map_err(|e| {
        let failure = match &e.kind {
            FetchErrorKind::Transport(_) => Failure::AuthorityUnreachable,
            FetchErrorKind::Timeout(_) => Failure::AuthorityTimeout,
            FetchErrorKind::Body(_) | FetchErrorKind::Status(_) => Failure::BadResponse,
            FetchErrorKind::Request(_) => Failure::AuthorityRefused,
        };
        // The error names the method and URL and its causes, never a header or body.
        AcquireError::new(failure, error_chain(&e))
    })?;
    let (parts, body) = resp.into_parts();
    Ok((parts.status, parts.headers, body))
}

/// The error and its causes on one line (hyper's own message is only "client error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// The token fields every protocol here shares. `expires_in`/`expires_on` are numbers in
/// Entra's v2 answers and strings in IMDS's and App Service's: both are read.
#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default, deserialize_with = "number_or_string")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "number_or_string")]
    expires_on: Option<u64>,
}

impl TokenResponse {
    /// Parses a 200 body into a token received at `now`.
    fn into_token(body: &[u8], now: u64, from: &str) -> Result<AccessToken, AcquireError> {
        let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
            // serde's message can quote a value: only its position is kept.
            AcquireError::new(
                Failure::BadResponse,
                format!(
                    "{from}: not a token response (line {} column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let expires_on = match (parsed.expires_on, parsed.expires_in) {
            (Some(on), _) => on,
            (None, Some(secs)) => now + secs,
            (None, None) => {
                return Err(AcquireError::new(
                    Failure::BadResponse,
                    format!("{from}: neither expires_in nor expires_on"),
                ))
            }
        };
        if parsed.access_token.is_empty() || expires_on <= now {
            return Err(AcquireError::new(
                Failure::BadResponse,
                format!("{from}: empty or already expired token"),
            ));
        }
        Ok(AccessToken::new(parsed.access_token, now, expires_on))
    }
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Text(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::Num(n)) => Ok(Some(n)),
        Some(N::Text(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("expected seconds as a number")),
    }
}

use serde::Deserialize as _;

/// The `error` and `error_description` of an OAuth error body, for the log (they name the
/// problem, e.g. `AADSTS700016`, and never carry the credential).
fn oauth_error(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct E {
        error: Option<String>,
        error_description: Option<String>,
    }
    match serde_json::from_slice::<E>(body) {
        Ok(E {
            error: Some(e),
            error_description,
        }) => match error_description {
            Some(d) => format!("{e}: {}", d.lines().next().unwrap_or("")),
            None => e,
        },
        _ => "no OAuth error in the body".into(),
    }
}

/// Status to failure for the token endpoints.
fn failure_for_status(status: http::StatusCode) -> Failure {
    if status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Failure::AuthorityError
    } else {
        Failure::AuthorityRefused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_expiry_spellings_parse() {
        let t = TokenResponse::into_token(
            br#"{"access_token":"a","expires_in":3599,"token_type":"Bearer"}"#,
            1000,
            "x",
        )
        .unwrap();
        assert_eq!(t.expires_on, 4599);
        let t = TokenResponse::into_token(
            br#"{"access_token":"a","expires_in":"86399","expires_on":"90000"}"#,
            1000,
            "x",
        )
        .unwrap();
        assert_eq!(t.expires_on, 90000);
        let e = TokenResponse::into_token(br#"{"access_token":"a"}"#, 1, "x").unwrap_err();
        assert_eq!(e.failure, Failure::BadResponse);
    }

    #[test]
    fn parse_errors_do_not_echo_the_token() {
        let e = TokenResponse::into_token(
            br#"{"access_token":"eyJsecret","expires_in":"soon"}"#,
            1,
            "x",
        )
        .unwrap_err();
        assert!(!e.detail.contains("eyJsecret"), "{}", e.detail);
    }
}
