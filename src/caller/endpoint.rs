//! The identity endpoint: tokens for unmodified apps, over the two protocols Azure SDKs and MSAL
//! already speak.
//!
//! - App Service (`IDENTITY_ENDPOINT`/`IDENTITY_HEADER`): `GET /msi/token?api-version=2019-08-01
//!   &resource=R` with `X-IDENTITY-HEADER: <secret>`.
//! - IMDS (`AZURE_POD_IDENTITY_AUTHORITY_HOST`, or 169.254.169.254 redirected here):
//!   `GET /metadata/identity/oauth2/token?api-version=...&resource=R` with `Metadata: true`.
//!
//! # Contract
//! - App Service: a missing or wrong secret is 401 (compared in constant time) before anything
//!   else is looked at. IMDS: no `Metadata: true` is 400 `bad_request_102`; a request carrying
//!   `X-Forwarded-For` is refused like IMDS refuses it (it came through a proxy, not from a
//!   local app).
//! - An identity selector (`client_id`, `object_id`/`principal_id`, `mi_res_id`/`msi_res_id`)
//!   that does not name the configured identity is 400 with a JSON error: one sidecar, one
//!   identity, never a silent substitute.
//! - While the source is retrying, the request waits up to `identity_endpoint.wait_timeout`, then
//!   gets 503 with a JSON error naming the failure.
//! - The token appears only in a 200 body (`Cache-Control: no-store`); logs carry the resource,
//!   status and reason only.

use std::sync::Arc;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::cache::{TokenCache, Unavailable};
use super::config::{IdentityConfig, SourceConfig};
use super::form;
use super::secret::IdentitySecret;
use super::token::{AccessToken, Resource};
use crate::pipeline::unix_now;
use crate::respond::{self, Body};

/// The App Service protocol's path.
pub const APP_SERVICE_PATH: &str = "/msi/token";
/// The IMDS protocol's path.
pub const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
/// The App Service protocol version served.
pub const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// Shared state of the identity endpoint.
pub struct Endpoint {
    cache: Arc<TokenCache>,
    secret: IdentitySecret,
    wait: Duration,
    client_id: Option<String>,
    object_id: Option<String>,
    resource_id: Option<String>,
}

/// Which protocol a request speaks (their error shapes differ).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    AppService,
    Imds,
}

impl Endpoint {
    /// The endpoint over `cache`, guarded by `secret`.
    pub fn new(cache: Arc<TokenCache>, secret: IdentitySecret, wait: Duration) -> Endpoint {
        let id: &IdentityConfig = cache.source().identity();
        let app_client = match &id.source {
            SourceConfig::WorkloadIdentity { app, .. }
            | SourceConfig::ClientCertificate { app, .. }
            | SourceConfig::Dev { app, .. } => Some(app.client_id.clone()),
            SourceConfig::Imds { .. } | SourceConfig::AzureCli { .. } => None,
        };
        Endpoint {
            client_id: id.client_id.clone().or(app_client),
            object_id: id.object_id.clone(),
            resource_id: id.resource_id.clone(),
            cache,
            secret,
            wait,
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let protocol = match req.uri().path() {
            APP_SERVICE_PATH => Protocol::AppService,
            IMDS_PATH => Protocol::Imds,
            _ => return error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
        };
        if req.method() != Method::GET {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "only GET is served",
            );
        }
        let resp = match self.token_request(&req, protocol).await {
            Ok((resource, token)) => {
                tracing::debug!(%resource, path = req.uri().path(), "token served");
                success(protocol, &resource, &token, self.client_id.as_deref())
            }
            Err(refusal) => {
                tracing::info!(
                    path = req.uri().path(),
                    status = refusal.status.as_u16(),
                    reason = refusal.reason,
                    "token request refused"
                );
                refusal.response()
            }
        };
        resp
    }

    async fn token_request(
        &self,
        req: &Request<Incoming>,
        protocol: Protocol,
    ) -> Result<(Resource, AccessToken), Refusal> {
        let headers = req.headers();
        match protocol {
            Protocol::AppService => {
                let offered = headers.get("x-identity-header").map(|v| v.as_bytes());
                if !offered.is_some_and(|o| self.secret.matches(o)) {
                    return Err(Refusal::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "X-IDENTITY-HEADER is missing or wrong",
                    ));
                }
            }
            Protocol::Imds => {
                if headers.contains_key("x-forwarded-for") {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "requests through a proxy (X-Forwarded-For) are not served",
                    ));
                }
                let metadata = headers.get("metadata").map(|v| v.as_bytes());
                if metadata != Some(b"true") {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "bad_request_102",
                        "Required metadata header not specified",
                    ));
                }
            }
        }
        let query = form::parse(req.uri().query().unwrap_or("")).ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the query string is not valid form encoding",
            )
        })?;
        let param = |name: &str| param(&query, name);
        let version = param("api-version")?;
        let version_ok = match protocol {
            Protocol::AppService => version == Some(APP_SERVICE_API_VERSION),
            Protocol::Imds => version.is_some_and(|v| !v.is_empty()),
        };
        if !version_ok {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                match protocol {
                    Protocol::AppService => "api-version=2019-08-01 is required",
                    Protocol::Imds => "api-version is required",
                },
            ));
        }
        let resource = param("resource")?
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "resource is required",
                )
            })
            .and_then(|r| {
                Resource::parse(r)
                    .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "invalid_resource", e))
            })?;
        self.check_selectors(&query)?;
        match self.cache.token(&resource, self.wait).await {
            Ok(token) => Ok((resource, token)),
            Err(why) => Err(Refusal::unavailable(why)),
        }
    }

    /// Refuses a selector that names another identity than ours (or one we cannot confirm).
    fn check_selectors(&self, query: &[(String, String)]) -> Result<(), Refusal> {
        let checks: [(&[&str], &Option<String>); 3] = [
            (&["client_id", "clientid"], &self.client_id),
            (&["object_id", "principal_id"], &self.object_id),
            (&["mi_res_id", "msi_res_id"], &self.resource_id),
        ];
        for (names, ours) in checks {
            for name in names {
                let Some(asked) = param(query, name)? else {
                    continue;
                };
                let same = ours
                    .as_deref()
                    .is_some_and(|o| o.eq_ignore_ascii_case(asked));
                if !same {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "identity_not_found",
                        "the requested identity is not the one this sidecar holds",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The one value of query parameter `name`; a repeated parameter is refused (which one would the
/// app have meant?).
fn param<'q>(query: &'q [(String, String)], name: &str) -> Result<Option<&'q str>, Refusal> {
    let mut values = query.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
    let first = values.next();
    if values.next().is_some() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a query parameter is repeated",
        ));
    }
    Ok(first.map(String::as_str))
}

/// A refused token request.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    description: &'static str,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, description: &'static str) -> Refusal {
        Refusal {
            status,
            reason,
            description,
        }
    }

    fn unavailable(why: Unavailable) -> Refusal {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            why.label(),
            match why {
                Unavailable::Failed(f) if f.transient() => "the token source is failing; retrying",
                Unavailable::Failed(_) => "the token source refused; see the sidecar's log",
                Unavailable::Pending => "no token yet; the source is still answering",
                Unavailable::TooManyResources => "too many distinct resources",
            },
        )
    }

    fn response(&self) -> Response<Body> {
        let mut resp = error(self.status, self.reason, self.description);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

fn error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let body = json!({"error": code, "error_description": description});
    respond::json(status, format!("{body}\n"))
}

fn success(
    protocol: Protocol,
    resource: &Resource,
    token: &AccessToken,
    client_id: Option<&str>,
) -> Response<Body> {
    let now = unix_now();
    let mut body = json!({
        "access_token": token.secret(),
        "expires_on": token.expires_on.to_string(),
        "expires_in": token.seconds_left(now).to_string(),
        "resource": resource.as_str(),
        "token_type": "Bearer",
    });
    if let Some(c) = client_id {
        body["client_id"] = json!(c);
    }
    if protocol == Protocol::Imds {
        body["ext_expires_in"] = body["expires_in"].clone();
        body["not_before"] = json!(token.acquired_at.to_string());
    }
    respond::json(StatusCode::OK, body.to_string())
}
