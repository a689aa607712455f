//! The Azure Instance Metadata Service's token endpoint, with the retries Microsoft's IMDS
//! guidance asks for: 404 (identity not yet there), 410 (IMDS updating; up to 70 s), 429 and
//! 5xx, with exponential backoff.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Full;

use super::{exchange, oauth_error, AcquireError, Failure, HttpClient, TokenResponse};
use crate::caller::form;
use crate::caller::token::{AccessToken, Resource};
use crate::pipeline::unix_now;

/// How long retries may go on (the guidance's bound for 410).
const RETRY_BUDGET: Duration = Duration::from_secs(70);
/// First delay; doubled after each retry.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// Largest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(8);

/// `GET {endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=R` with
/// `Metadata: true` (and `client_id` for a user-assigned identity).
pub async fn acquire(
    http: &HttpClient,
    endpoint: &Uri,
    client_id: Option<&str>,
    resource: &Resource,
    timeout: Duration,
) -> Result<AccessToken, AcquireError> {
    let base = format!(
        "{}://{}",
        endpoint.scheme_str().unwrap_or("http"),
        endpoint.authority().map(|a| a.as_str()).unwrap_or_default()
    );
    let mut fields = vec![
        ("api-version", "2018-02-01"),
        ("resource", resource.as_str()),
    ];
    if let Some(c) = client_id {
        fields.push(("client_id", c));
    }
    let url = format!(
        "{base}/metadata/identity/oauth2/token?{}",
        form::build(&fields)
    );
    let started = Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        let req = Request::get(&url)
            .header("Metadata", "true")
            .body(Full::new(Bytes::new()))
            .map_err(|e| AcquireError::new(Failure::AuthorityRefused, e.to_string()))?;
        let error = match exchange(http, req, timeout).await {
            Ok((StatusCode::OK, _, body)) => {
                return TokenResponse::into_token(&body, unix_now(), "IMDS")
            }
            Ok((status, _, body)) => {
                let failure = if retried(status) {
                    Failure::AuthorityError
                } else {
                    Failure::AuthorityRefused
                };
                AcquireError::new(failure, format!("IMDS: {status}: {}", oauth_error(&body)))
            }
            Err(e) => e,
        };
        let retry = matches!(
            error.failure,
            Failure::AuthorityError | Failure::AuthorityUnreachable | Failure::AuthorityTimeout
        );
        if !retry || started.elapsed() + delay > RETRY_BUDGET {
            return Err(error);
        }
        tracing::debug!(error = %error, retry_in = ?delay, "IMDS: retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// The statuses the IMDS guidance says to retry.
fn retried(status: StatusCode) -> bool {
    matches!(status.as_u16(), 404 | 410 | 429) || status.is_server_error()
}
