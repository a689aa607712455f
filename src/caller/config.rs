//! The caller side's sections of the config file: `[identity]`, `[identity_endpoint]` and
//! `[[egress]]`, parsed into checked types. Key names are public API (issue 14).
//!
//! Long on purpose: it is one contract (which key each of the five sources needs, refuses or
//! defaults from the environment, and which URLs may carry tokens), and about half of it is the
//! tests that pin that contract down, key by key.
//!
//! # Contract
//! - Every key is named in its error; a key that only one source uses is refused when written for
//!   another source, so a typo in `source` cannot leave a credential silently unused.
//! - `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_AUTHORITY_HOST` and
//!   `AZURE_FEDERATED_TOKEN_FILE` (what the Kubernetes workload identity webhook injects) are
//!   defaults; a key in the file wins.
//! - Tokens travel over TLS: the authority is `https`, or plain `http` to a loopback address only
//!   (tests, `tokengate dev`); the IMDS endpoint may be plain `http` only on a link-local or
//!   loopback address, as IMDS is by design.
//! - Nothing here is secret: the secret file's path is config, its contents are not read here.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use crate::config::{parse_duration, ConfigError, UpstreamConfig, UpstreamPool};

use super::assertion::Certificate;
use super::token::Resource;

/// The identity endpoint's documented default address (what App Service's local endpoint
/// resembles; any free loopback port works).
pub const DEFAULT_ENDPOINT_ADDRESS: &str = "127.0.0.1:42356";
/// Entra's public-cloud authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The Azure Instance Metadata Service.
pub const DEFAULT_IMDS: &str = "http://169.254.169.254";

/// The caller side, checked.
#[derive(Debug, Clone)]
pub struct CallerConfig {
    /// Where tokens come from.
    pub identity: IdentityConfig,
    /// The local token endpoint for unmodified apps, if configured.
    pub endpoint: Option<EndpointConfig>,
    /// Outgoing routes that attach a token.
    pub egress: Vec<EgressRoute>,
}

/// `[identity]`, checked.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The source and its settings.
    pub source: SourceConfig,
    /// The identity's client id, when known: it answers `client_id` selectors and is sent to
    /// IMDS for a user-assigned identity.
    pub client_id: Option<String>,
    /// The identity's object (principal) id, when known: answers `object_id`/`principal_id`.
    pub object_id: Option<String>,
    /// The identity's Azure resource id, when known: answers `mi_res_id`/`msi_res_id`.
    pub resource_id: Option<String>,
    /// Bound on one acquisition attempt (one HTTP exchange, one `az` run).
    pub timeout: Duration,
    /// Tokens are refreshed this long before they expire (or at half-life; see `token`).
    pub refresh_before: Duration,
}

/// One of the five sources.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// Kubernetes workload identity: a federated token file as the client assertion.
    WorkloadIdentity {
        /// Tenant, client and authority.
        app: EntraApp,
        /// The projected service account token, re-read for every request.
        token_file: PathBuf,
    },
    /// An app registration's certificate: tokengate signs the client assertion.
    ClientCertificate {
        /// Tenant, client and authority.
        app: EntraApp,
        /// PEM: private key and certificate chain, leaf first; re-read for every request.
        certificate_file: PathBuf,
    },
    /// The Azure Instance Metadata Service of a VM (or a compatible endpoint).
    Imds {
        /// Scheme and authority.
        endpoint: Uri,
    },
    /// `az account get-access-token` (a developer's login).
    AzureCli {
        /// Passed as `--tenant` when set.
        tenant_id: Option<String>,
    },
    /// The local issuer of `tokengate dev`.
    Dev {
        /// Tenant, client and the dev issuer's address.
        app: EntraApp,
        /// Roles the dev issuer puts in the token.
        roles: Vec<String>,
    },
}

impl SourceConfig {
    /// The `source` value, also the `source` label of the acquisition metric.
    pub fn name(&self) -> &'static str {
        match self {
            SourceConfig::WorkloadIdentity { .. } => "workload_identity",
            SourceConfig::ClientCertificate { .. } => "client_certificate",
            SourceConfig::Imds { .. } => "imds",
            SourceConfig::AzureCli { .. } => "azure_cli",
            SourceConfig::Dev { .. } => "dev",
        }
    }
}

/// An Entra application: who asks, in which tenant, of which authority.
#[derive(Debug, Clone)]
pub struct EntraApp {
    /// Directory (tenant) id or domain.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Authority host without a trailing slash, e.g. `https://login.microsoftonline.com`.
    pub authority: String,
}

impl EntraApp {
    /// The v2 token endpoint, also the `aud` of a client assertion.
    pub fn token_endpoint(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant_id)
    }
}

/// `[identity_endpoint]`, checked.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Where the App Service and IMDS protocols are served.
    pub address: SocketAddr,
    /// The shared secret's file (created with a random value, mode 0600, if missing).
    pub secret_file: PathBuf,
    /// How long an app's request waits for a token while the source is retrying, before 503.
    pub wait_timeout: Duration,
}

/// One `[[egress]]` route, checked.
#[derive(Debug, Clone)]
pub struct EgressRoute {
    /// Where the app sends its calls.
    pub listen: SocketAddr,
    /// Where they go, with the callee side's upstream settings.
    pub upstream: UpstreamConfig,
    /// The route's connection pool.
    pub pool: UpstreamPool,
    /// The token's audience.
    pub resource: Resource,
}

// ---- The file's shape. Field docs state defaults; proxy.toml repeats them. ----

/// `[identity]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// Required: `workload_identity`, `client_certificate`, `imds`, `azure_cli` or `dev`.
    source: String,
    /// Default `$AZURE_TENANT_ID` (`dev`: the dev tenant).
    tenant_id: Option<String>,
    /// Default `$AZURE_CLIENT_ID` (`dev`: the dev caller app).
    client_id: Option<String>,
    /// Default `$AZURE_AUTHORITY_HOST`, else `https://login.microsoftonline.com`.
    authority_host: Option<String>,
    /// Default `$AZURE_FEDERATED_TOKEN_FILE`.
    federated_token_file: Option<String>,
    /// No default.
    certificate_file: Option<String>,
    /// Default `http://169.254.169.254`.
    imds_endpoint: Option<String>,
    /// No default.
    object_id: Option<String>,
    /// No default.
    resource_id: Option<String>,
    /// Default `10s`.
    timeout: Option<String>,
    /// Default `5m`.
    refresh_before: Option<String>,
    /// `dev` only. Default empty.
    dev_roles: Option<Vec<String>>,
}

/// `[identity_endpoint]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointFile {
    /// Default `127.0.0.1:42356`.
    address: Option<String>,
    /// Required.
    secret_file: String,
    /// Default `20s`.
    wait_timeout: Option<String>,
}

/// One `[[egress]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressFile {
    /// Required.
    listen: String,
    /// Required: `http(s)://host[:port]`, no path.
    upstream: String,
    /// Required.
    resource: String,
    /// Default `30s`.
    timeout: Option<String>,
    /// Default `5s`.
    connect_timeout: Option<String>,
    /// Default `90s`.
    pool_idle_timeout: Option<String>,
}

/// The `AZURE_*` variables that supply defaults, taken from the environment given to the config
/// loader (empty in `Config::from_toml`, so tests are not at the mercy of the shell).
#[derive(Debug, Default, Clone)]
pub struct AzureEnv(HashMap<String, String>);

impl AzureEnv {
    /// Keeps the four variables we read.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = &'a (String, String)>) -> AzureEnv {
        const NAMES: [&str; 4] = [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_AUTHORITY_HOST",
            "AZURE_FEDERATED_TOKEN_FILE",
        ];
        AzureEnv(
            pairs
                .into_iter()
                .filter(|(k, v)| NAMES.contains(&k.as_str()) && !v.is_empty())
                .cloned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Checks the caller sections. `None` when there is no `[identity]`; `[identity_endpoint]` or
/// `[[egress]]` without it is an error.
pub fn check(
    identity: Option<IdentityFile>,
    endpoint: Option<EndpointFile>,
    egress: Vec<EgressFile>,
    env: &AzureEnv,
) -> Result<Option<CallerConfig>, ConfigError> {
    let Some(identity) = identity else {
        if endpoint.is_some() || !egress.is_empty() {
            return Err(ConfigError::from(
                "[identity_endpoint] and [[egress]] need an [identity] section: it says where \
                 tokens come from"
                    .to_string(),
            ));
        }
        return Ok(None);
    };
    let identity = identity.check(env)?;
    let endpoint = endpoint.map(EndpointFile::check).transpose()?;
    let egress = egress
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.check(i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen: Vec<SocketAddr> = endpoint.iter().map(|e| e.address).collect();
    for (i, e) in egress.iter().enumerate() {
        if e.listen.port() != 0 && seen.contains(&e.listen) {
            return Err(err(format!(
                "egress[{i}].listen: {} is already used by another caller-side listener",
                e.listen
            )));
        }
        seen.push(e.listen);
    }
    Ok(Some(CallerConfig {
        identity,
        endpoint,
        egress,
    }))
}

impl CallerConfig {
    /// Addresses this side binds, with the key that names each (for clash checks).
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        let mut out = Vec::new();
        if let Some(e) = &self.endpoint {
            out.push(("identity_endpoint.address".to_string(), e.address));
        }
        for (i, e) in self.egress.iter().enumerate() {
            out.push((format!("egress[{i}].listen"), e.listen));
        }
        out
    }

    /// Settings that are legal but deserve a second look, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.endpoint {
            if !e.address.ip().is_loopback() {
                out.push(format!(
                    "identity_endpoint.address {} is not a loopback address: anything that can \
                     reach it and knows the secret gets tokens for this identity",
                    e.address
                ));
            }
        }
        out
    }

    /// Lines for `tokengate check`.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let id = &self.identity;
        let _ = write!(s, "identity      source {}", id.source.name());
        match &id.source {
            SourceConfig::WorkloadIdentity { app, token_file } => {
                let _ = write!(
                    s,
                    ", tenant {}, client {}, {} (token file {})",
                    app.tenant_id,
                    app.client_id,
                    app.authority,
                    token_file.display()
                );
            }
            SourceConfig::ClientCertificate {
                app,
                certificate_file,
            } => {
                let _ = write!(
                    s,
                    ", tenant {}, client {}, {} (certificate {})",
                    app.tenant_id,
                    app.client_id,
                    app.authority,
                    certificate_file.display()
                );
            }
            SourceConfig::Imds { endpoint } => {
                let client = id.client_id.as_deref().unwrap_or("system-assigned");
                let _ = write!(s, ", {endpoint} (identity {client})");
            }
            SourceConfig::AzureCli { tenant_id } => {
                if let Some(t) = tenant_id {
                    let _ = write!(s, ", tenant {t}");
                }
            }
            SourceConfig::Dev { app, roles } => {
                let _ = write!(s, ", {} (roles {})", app.authority, roles.join(", "));
            }
        }
        let _ = writeln!(s);
        if let Some(e) = &self.endpoint {
            let _ = writeln!(
                s,
                "token endpoint http://{}/msi/token (App Service), \
                 http://{}/metadata/identity/oauth2/token (IMDS); secret {}",
                e.address,
                e.address,
                e.secret_file.display()
            );
        }
        for e in &self.egress {
            let _ = writeln!(
                s,
                "egress        {} -> {} with a token for {}",
                e.listen, e.upstream.url, e.resource
            );
        }
        s
    }
}

impl IdentityFile {
    fn check(self, env: &AzureEnv) -> Result<IdentityConfig, ConfigError> {
        const SOURCES: &str = "workload_identity, client_certificate, imds, azure_cli or dev";
        let name = self.source.as_str();
        if !matches!(
            name,
            "workload_identity" | "client_certificate" | "imds" | "azure_cli" | "dev"
        ) {
            return Err(err(format!(
                "identity.source: {name:?} is not a source (use {SOURCES})"
            )));
        }
        // Keys only one source reads, refused when written for another.
        let only = |key: &str, set: bool, owner: &str| -> Result<(), ConfigError> {
            if set && name != owner {
                return Err(err(format!(
                    "identity.{key} is only used with source = \"{owner}\", not {name:?}"
                )));
            }
            Ok(())
        };
        only(
            "federated_token_file",
            self.federated_token_file.is_some(),
            "workload_identity",
        )?;
        only(
            "certificate_file",
            self.certificate_file.is_some(),
            "client_certificate",
        )?;
        only("imds_endpoint", self.imds_endpoint.is_some(), "imds")?;
        only("dev_roles", self.dev_roles.is_some(), "dev")?;
        if self.authority_host.is_some() && matches!(name, "imds" | "azure_cli") {
            return Err(err(format!(
                "identity.authority_host is not used with source = {name:?}"
            )));
        }

        let timeout = duration("identity.timeout", self.timeout.as_deref(), "10s")?;
        let refresh_before = duration(
            "identity.refresh_before",
            self.refresh_before.as_deref(),
            "5m",
        )?;
        if timeout.is_zero() {
            return Err(err("identity.timeout must be > 0".to_string()));
        }
        let tenant_id = self
            .tenant_id
            .or_else(|| env.get("AZURE_TENANT_ID"))
            .map(|t| checked_id("identity.tenant_id", t, true))
            .transpose()?;
        let client_id = self
            .client_id
            .or_else(|| env.get("AZURE_CLIENT_ID"))
            .map(|c| checked_id("identity.client_id", c, false))
            .transpose()?;
        let authority = || {
            let host = self
                .authority_host
                .clone()
                .or_else(|| env.get("AZURE_AUTHORITY_HOST"))
                .unwrap_or_else(|| DEFAULT_AUTHORITY.to_string());
            authority_url(&host)
        };
        let entra = |tenant: Option<String>, client: Option<String>| {
            let need = |key: &str, var: &str| {
                err(format!(
                    "identity.{key} is required for source = {name:?} (or set {var})"
                ))
            };
            Ok::<_, ConfigError>(EntraApp {
                tenant_id: tenant.ok_or_else(|| need("tenant_id", "AZURE_TENANT_ID"))?,
                client_id: client.ok_or_else(|| need("client_id", "AZURE_CLIENT_ID"))?,
                authority: authority()?,
            })
        };
        let source = match name {
            "workload_identity" => {
                let app = entra(tenant_id, client_id.clone())?;
                let token_file = self
                    .federated_token_file
                    .or_else(|| env.get("AZURE_FEDERATED_TOKEN_FILE"))
                    .ok_or_else(|| {
                        err("identity.federated_token_file is required for source = \
                             \"workload_identity\" (or set AZURE_FEDERATED_TOKEN_FILE)"
                            .to_string())
                    })?;
                SourceConfig::WorkloadIdentity {
                    app,
                    token_file: token_file.into(),
                }
            }
            "client_certificate" => {
                let app = entra(tenant_id, client_id.clone())?;
                let path = self.certificate_file.ok_or_else(|| {
                    err("identity.certificate_file is required for source = \
                         \"client_certificate\""
                        .to_string())
                })?;
                // Loaded once here so that `check` catches a bad file; the running side re-reads
                // it for every assertion (it rotates).
                let pem = std::fs::read(&path)
                    .map_err(|e| err(format!("identity.certificate_file: {path}: {e}")))?;
                Certificate::from_pem(&pem)
                    .map_err(|e| err(format!("identity.certificate_file: {path}: {e}")))?;
                SourceConfig::ClientCertificate {
                    app,
                    certificate_file: path.into(),
                }
            }
            "imds" => {
                let raw = self
                    .imds_endpoint
                    .unwrap_or_else(|| DEFAULT_IMDS.to_string());
                SourceConfig::Imds {
                    endpoint: imds_url(&raw)?,
                }
            }
            "azure_cli" => SourceConfig::AzureCli { tenant_id },
            _ => {
                let app = entra(
                    tenant_id.or_else(|| Some(crate::dev::DEV_TENANT.to_string())),
                    client_id
                        .clone()
                        .or_else(|| Some(crate::dev::DEV_CALLER_APP.to_string())),
                )?;
                if !app.authority.starts_with("http://") {
                    return Err(err(
                        "identity.authority_host: source = \"dev\" needs the loopback address \
                         of `tokengate dev`'s issuer"
                            .to_string(),
                    ));
                }
                SourceConfig::Dev {
                    app,
                    roles: self.dev_roles.unwrap_or_default(),
                }
            }
        };
        Ok(IdentityConfig {
            source,
            client_id,
            object_id: self
                .object_id
                .map(|o| checked_id("identity.object_id", o, false))
                .transpose()?,
            resource_id: self.resource_id,
            timeout,
            refresh_before,
        })
    }
}

impl EndpointFile {
    fn check(self) -> Result<EndpointConfig, ConfigError> {
        let raw = self
            .address
            .unwrap_or_else(|| DEFAULT_ENDPOINT_ADDRESS.to_string());
        let address = raw.parse().map_err(|_| {
            err(format!(
                "identity_endpoint.address: {raw:?} is not an IP:port socket address"
            ))
        })?;
        if self.secret_file.trim().is_empty() {
            return Err(err(
                "identity_endpoint.secret_file must be a path".to_string()
            ));
        }
        Ok(EndpointConfig {
            address,
            secret_file: self.secret_file.into(),
            wait_timeout: duration(
                "identity_endpoint.wait_timeout",
                self.wait_timeout.as_deref(),
                "20s",
            )?,
        })
    }
}

impl EgressFile {
    fn check(self, i: usize) -> Result<EgressRoute, ConfigError> {
        let at = format!("egress[{i}]");
        let listen = self.listen.parse().map_err(|_| {
            err(format!(
                "{at}.listen: {:?} is not an IP:port socket address",
                self.listen
            ))
        })?;
        let url: Uri = self.upstream.parse().map_err(|e| {
            err(format!(
                "{at}.upstream: {:?} is not a URL: {e}",
                self.upstream
            ))
        })?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.authority().is_none() {
            return Err(err(format!(
                "{at}.upstream: {:?} must be an http or https URL with a host",
                self.upstream
            )));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(err(format!(
                "{at}.upstream: {:?} must not have a path or query: the app's path is forwarded \
                 as is",
                self.upstream
            )));
        }
        let resource =
            Resource::parse(&self.resource).map_err(|e| err(format!("{at}.resource: {e}")))?;
        let timeout = duration(&format!("{at}.timeout"), self.timeout.as_deref(), "30s")?;
        let connect_timeout = duration(
            &format!("{at}.connect_timeout"),
            self.connect_timeout.as_deref(),
            "5s",
        )?;
        if timeout.is_zero() || connect_timeout.is_zero() {
            return Err(err(format!(
                "{at}.timeout and {at}.connect_timeout must be > 0"
            )));
        }
        Ok(EgressRoute {
            listen,
            upstream: UpstreamConfig {
                host: UpstreamConfig::host_of(&url),
                url,
                timeout,
                // The callee is addressed by its own name, and our app is not a trusted proxy.
                preserve_host: false,
                trust_forwarded_headers: false,
                // Egress sends our token as Authorization; nothing else.
                forward_token: false,
                // An app speaking h2c (gRPC) to the route gets HTTP/2 upstream, others HTTP/1.1.
                protocol: crate::config::UpstreamProtocol::Match,
            },
            pool: UpstreamPool {
                connect_timeout,
                pool_idle_timeout: duration(
                    &format!("{at}.pool_idle_timeout"),
                    self.pool_idle_timeout.as_deref(),
                    "90s",
                )?,
                // Egress requests use the shared pool, which this does not bound.
                max_connections: 256,
            },
            resource,
        })
    }
}

fn err(msg: String) -> ConfigError {
    ConfigError::from(msg)
}

fn duration(key: &str, value: Option<&str>, default: &str) -> Result<Duration, ConfigError> {
    parse_duration(value.unwrap_or(default)).map_err(|e| err(format!("{key}: {e}")))
}

/// A tenant (GUID or domain, `domain` allows dots) or client/object id (GUID-shaped): these go
/// into URL paths and form fields, so only letters, digits, `-` (and `.`) are accepted.
fn checked_id(key: &str, value: String, domain: bool) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (domain && b == b'.'));
    if !ok {
        return Err(err(format!(
            "{key}: {value:?} is not an id (letters, digits and '-'{})",
            if domain { ", '.'" } else { "" }
        )));
    }
    Ok(value)
}

/// `https://host[:port]`, or `http://` to a loopback address; no path. Returned without a
/// trailing slash.
fn authority_url(raw: &str) -> Result<String, ConfigError> {
    let key = "identity.authority_host";
    let uri: Uri = raw
        .parse()
        .map_err(|e| err(format!("{key}: {raw:?} is not a URL: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| err(format!("{key}: {raw:?} has no host")))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback_host(host) => {}
        Some("http") => {
            return Err(err(format!(
                "{key}: {raw:?}: plain http is only allowed to a loopback address (tokens and \
                 client assertions travel over it)"
            )))
        }
        _ => return Err(err(format!("{key}: {raw:?} must be an https URL"))),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(err(format!(
            "{key}: {raw:?} must be a host only; the tenant and token path are added"
        )));
    }
    Ok(format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map(|a| a.as_str()).unwrap_or(host)
    ))
}

/// `http://` on a link-local or loopback address (IMDS is plain HTTP by design), or `https://`.
fn imds_url(raw: &str) -> Result<Uri, ConfigError> {
    let key = "identity.imds_endpoint";
    let uri: Uri = raw
        .parse()
        .map_err(|e| err(format!("{key}: {raw:?} is not a URL: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| err(format!("{key}: {raw:?} has no host")))?;
    let local = is_loopback_host(host)
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| matches!(ip, IpAddr::V4(v4) if v4.is_link_local()));
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if local => {}
        _ => {
            return Err(err(format!(
                "{key}: {raw:?}: plain http only to a link-local or loopback address, else https"
            )))
        }
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(err(format!(
            "{key}: {raw:?} must be scheme and host only; the token path is added"
        )));
    }
    Ok(uri)
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        identity: Option<IdentityFile>,
        identity_endpoint: Option<EndpointFile>,
        #[serde(default)]
        egress: Vec<EgressFile>,
    }

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Option<CallerConfig>, String> {
        let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        let pairs: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        check(
            doc.identity,
            doc.identity_endpoint,
            doc.egress,
            &AzureEnv::from_pairs(&pairs),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn workload_identity_takes_the_webhook_variables() {
        let env = [
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/token",
            ),
        ];
        let c = parse("[identity]\nsource = \"workload_identity\"\n", &env)
            .unwrap()
            .unwrap();
        let SourceConfig::WorkloadIdentity { app, token_file } = &c.identity.source else {
            panic!("{c:?}")
        };
        assert_eq!(
            app.token_endpoint(),
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(
            token_file.to_str(),
            Some("/var/run/secrets/azure/tokens/token")
        );
        assert_eq!(c.identity.refresh_before, Duration::from_secs(300));
        // The file wins over the environment.
        let c = parse(
            "[identity]\nsource = \"workload_identity\"\ntenant_id = \"t2\"\n",
            &env,
        )
        .unwrap()
        .unwrap();
        let SourceConfig::WorkloadIdentity { app, .. } = &c.identity.source else {
            panic!()
        };
        assert_eq!(app.tenant_id, "t2");
    }

    #[test]
    fn missing_and_misplaced_keys_are_named() {
        let e = parse("[identity]\nsource = \"workload_identity\"\n", &[]).unwrap_err();
        assert!(
            e.contains("identity.tenant_id") && e.contains("AZURE_TENANT_ID"),
            "{e}"
        );
        let e = parse(
            "[identity]\nsource = \"imds\"\nfederated_token_file = \"/x\"\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("identity.federated_token_file is only used"),
            "{e}"
        );
        let e = parse("[identity]\nsource = \"magic\"\n", &[]).unwrap_err();
        assert!(e.contains("identity.source"), "{e}");
        let e = parse("[identity]\nsource = \"imds\"\nbogus = 1\n", &[]).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse(
            "[[egress]]\nlisten = \"127.0.0.1:1\"\nupstream = \"http://x\"\nresource = \"r\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("need an [identity]"), "{e}");
    }

    #[test]
    fn plain_http_only_where_it_cannot_leave_the_machine() {
        let base = "[identity]\nsource = \"workload_identity\"\ntenant_id = \"t\"\nclient_id = \"c\"\nfederated_token_file = \"/f\"\n";
        for ok in [
            "http://127.0.0.1:8080",
            "https://login.example",
            "http://[::1]:1",
        ] {
            assert!(
                parse(&format!("{base}authority_host = \"{ok}\"\n"), &[]).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://10.0.0.1",
            "http://login.example",
            "ftp://x",
            "https://x/tenant",
        ] {
            let e = parse(&format!("{base}authority_host = \"{bad}\"\n"), &[]).unwrap_err();
            assert!(e.contains("identity.authority_host"), "{bad}: {e}");
        }
        let imds = "[identity]\nsource = \"imds\"\n";
        let c = parse(imds, &[]).unwrap().unwrap();
        assert!(
            matches!(c.identity.source, SourceConfig::Imds { ref endpoint } if endpoint == "http://169.254.169.254/")
        );
        let e = parse(&format!("{imds}imds_endpoint = \"http://10.1.2.3\"\n"), &[]).unwrap_err();
        assert!(e.contains("identity.imds_endpoint"), "{e}");
    }

    #[test]
    fn endpoint_and_egress_defaults_and_warnings() {
        let text = "[identity]\nsource = \"azure_cli\"\n[identity_endpoint]\nsecret_file = \"/tmp/s\"\n[[egress]]\nlisten = \"127.0.0.1:7000\"\nupstream = \"https://callee.example\"\nresource = \"api://callee/.default\"\n";
        let c = parse(text, &[]).unwrap().unwrap();
        let e = c.endpoint.as_ref().unwrap();
        assert_eq!(e.address, DEFAULT_ENDPOINT_ADDRESS.parse().unwrap());
        assert_eq!(e.wait_timeout, Duration::from_secs(20));
        assert_eq!(c.egress[0].resource.as_str(), "api://callee");
        assert_eq!(c.egress[0].upstream.timeout, Duration::from_secs(30));
        assert!(c.warnings().is_empty());
        let open = text.replace("secret_file", "address = \"0.0.0.0:42356\"\nsecret_file");
        let c = parse(&open, &[]).unwrap().unwrap();
        assert!(c.warnings()[0].contains("not a loopback address"));
        let pathy = text.replace("https://callee.example", "https://callee.example/api");
        assert!(parse(&pathy, &[])
            .unwrap_err()
            .contains("egress[0].upstream"));
        let clash = text.replace("127.0.0.1:7000", "127.0.0.1:42356");
        assert!(parse(&clash, &[]).unwrap_err().contains("egress[0].listen"));
    }

    #[test]
    fn ids_cannot_smuggle_url_syntax() {
        let e = parse(
            "[identity]\nsource = \"azure_cli\"\ntenant_id = \"t/../x\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("identity.tenant_id"), "{e}");
    }
}
