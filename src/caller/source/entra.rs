//! Entra's v2 token endpoint, client credentials grant, with a client assertion: the federated
//! token file (workload identity), a JWT we sign with a certificate, or nothing for the dev
//! issuer.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;

use super::{
    exchange, failure_for_status, oauth_error, AcquireError, Failure, HttpClient, TokenResponse,
};
use crate::caller::assertion::Certificate;
use crate::caller::config::EntraApp;
use crate::caller::form;
use crate::caller::token::{AccessToken, Resource};
use crate::pipeline::unix_now;

/// The `client_assertion_type` for a JWT client assertion (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The form field through which the dev source asks the dev issuer for roles.
pub const DEV_ROLES_FIELD: &str = "tokengate_dev_roles";

/// What proves the client's identity.
pub enum Assertion<'a> {
    /// Kubernetes' projected service account token, read fresh.
    FederatedTokenFile(&'a Path),
    /// A PEM certificate bundle, read fresh, signing a new assertion.
    Certificate(&'a Path),
    /// The dev issuer trusts loopback callers; these roles go in the token.
    Dev(&'a [String]),
}

/// `POST {authority}/{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials`.
pub async fn client_credentials(
    http: &HttpClient,
    app: &EntraApp,
    resource: &Resource,
    assertion: Assertion<'_>,
    timeout: Duration,
) -> Result<AccessToken, AcquireError> {
    let endpoint = app.token_endpoint();
    let scope = resource.scope();
    let now = unix_now();
    let credential = match assertion {
        Assertion::FederatedTokenFile(path) => Some(read_federated_token(path)?),
        Assertion::Certificate(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                AcquireError::new(
                    Failure::CredentialUnreadable,
                    format!("{}: {e}", path.display()),
                )
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                AcquireError::new(
                    Failure::CredentialUnreadable,
                    format!("{}: {e}", path.display()),
                )
            })?;
            let signed = cert
                .assertion(&app.client_id, &endpoint, now)
                .map_err(|e| AcquireError::new(Failure::CredentialUnreadable, e))?;
            Some(signed)
        }
        Assertion::Dev(_) => None,
    };
    let dev_roles = match assertion {
        Assertion::Dev(roles) => Some(roles.join(" ")),
        _ => None,
    };
    let mut fields: Vec<(&str, &str)> = vec![
        ("client_id", &app.client_id),
        ("scope", &scope),
        ("grant_type", "client_credentials"),
    ];
    if let Some(c) = &credential {
        fields.push(("client_assertion_type", JWT_BEARER));
        fields.push(("client_assertion", c));
    }
    if let Some(r) = &dev_roles {
        fields.push((DEV_ROLES_FIELD, r));
    }
    let body = form::build(&fields);
    let req = Request::builder()
        .method(Method::POST)
        .uri(&endpoint)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| AcquireError::new(Failure::AuthorityRefused, format!("{endpoint}: {e}")))?;
    let (status, _, body) = exchange(http, req, timeout).await?;
    if status != StatusCode::OK {
        return Err(AcquireError::new(
            failure_for_status(status),
            format!("{endpoint}: {status}: {}", oauth_error(&body)),
        ));
    }
    TokenResponse::into_token(&body, unix_now(), &endpoint)
}

/// The federated token as the file holds it now (the kubelet rewrites it before it expires).
fn read_federated_token(path: &Path) -> Result<String, AcquireError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        AcquireError::new(
            Failure::CredentialUnreadable,
            format!("{}: {e}", path.display()),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(AcquireError::new(
            Failure::CredentialUnreadable,
            format!("{}: empty", path.display()),
        ));
    }
    Ok(token.to_string())
}
