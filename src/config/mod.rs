//! Configuration: TOML file (plus `TOKENGATE_*` environment overrides) → a checked [`Config`].
//!
//! # Contract
//! - Parse, don't validate: the file structs mirror `proxy.toml` exactly (`deny_unknown_fields`,
//!   so a misspelt key is an error naming the key and its line), and [`Config`] holds only parsed
//!   types (socket addresses, URIs, durations, normalized prefixes). Code that holds a `Config`
//!   never re-checks it.
//! - Every default is stated where the key is declared and in `proxy.toml`.
//! - Any key can be overridden from the environment as `TOKENGATE_<SECTION>__<KEY>` (for example
//!   `TOKENGATE_AUTH__AUDIENCES='["api://x"]'`, `TOKENGATE_UPSTREAM__URL=http://127.0.0.1:3000`).
//!   The value is read as a TOML value when it parses as one, else as a string.
//! - Nothing here is secret (keys come from the IdP), so the effective config can be printed whole.

pub mod lint;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Uri;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::caller;
use crate::caller::config::{AzureEnv, CallerConfig, EgressFile, EndpointFile, IdentityFile};
pub use crate::net::tls::{ClientAuth, ListenTls};
use crate::normalize::Prefix;
use crate::validate::Algorithm;

/// Everything the proxy needs, parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public listener (HTTP/1.1 and h2c prior knowledge, or TLS with ALPN h2/http1.1).
    pub listen: SocketAddr,
    /// TLS on the public listener: file paths (start-only; contents re-read on SIGHUP).
    pub listen_tls: Option<ListenTls>,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// The callee.
    pub upstream: UpstreamConfig,
    /// Token validation and authorization.
    pub auth: AuthConfig,
    /// Key fetching timings.
    pub keys: KeysConfig,
    /// Verified-token cache bounds.
    pub cache: CacheConfig,
    /// Connection and request limits.
    pub limits: LimitsConfig,
    /// Extra CA certificates trusted for https upstreams and IdPs, besides the system's.
    pub extra_ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// A whole config file: the callee side (`[auth]`), the caller side (`[identity]`), or both,
/// with what they share. The callee side's [`Config`] is unchanged by the caller side's
/// existence: code that validates requests never sees `[identity]`.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// The callee side, when the file has `[auth]` (and then `[upstream]`).
    pub callee: Option<Config>,
    /// The caller side, when the file has `[identity]`.
    pub caller: Option<CallerConfig>,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`), shared by both sides.
    pub admin: SocketAddr,
    /// Connection and request limits, for every listener.
    pub limits: LimitsConfig,
    /// Extra CA certificates for every outgoing https connection.
    pub extra_ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl SidecarConfig {
    /// Reads `path`, applies `TOKENGATE_*` overrides and `AZURE_*` defaults from the process
    /// environment, and checks.
    pub fn load(path: &Path) -> Result<SidecarConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
        SidecarConfig::from_toml_with_env(&text, std::env::vars())
            .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))
    }

    /// Parses TOML text without any environment.
    pub fn from_toml(text: &str) -> Result<SidecarConfig, ConfigError> {
        SidecarConfig::from_toml_with_env(text, std::iter::empty())
    }

    /// Parses TOML text with `env` (name, value) pairs: `TOKENGATE_<SECTION>__<KEY>` overrides
    /// and the caller side's `AZURE_*` defaults.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<SidecarConfig, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let azure = AzureEnv::from_pairs(&env);
        // The file alone first, so errors carry its line numbers.
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::new(e.to_string()))?;
        let overrides: Vec<&(String, String)> = env
            .iter()
            // Only TOKENGATE_<SECTION>__<KEY> names are overrides; other TOKENGATE_* variables
            // (TOKENGATE_CONFIG, TOKENGATE_LOG, tooling) are none of the config's business.
            .filter(|(k, _)| k.starts_with("TOKENGATE_") && k.contains("__"))
            .collect();
        if overrides.is_empty() {
            return file.check(&azure);
        }
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::new(e.to_string()))?;
        for (name, value) in overrides {
            apply_override(&mut table, name, value)?;
        }
        let file = FileConfig::deserialize(table)
            .map_err(|e| ConfigError::new(format!("after environment overrides: {e}")))?;
        file.check(&azure)
    }

    /// A human summary of the effective settings of both sides, for `tokengate check`.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        match &self.callee {
            Some(c) => s.push_str(&c.summary()),
            None => s.push_str(&format!("admin         {}\n", self.admin)),
        }
        if let Some(c) = &self.caller {
            s.push_str(&c.summary());
        }
        s
    }

    /// Settings that are legal but deserve a second look (printed as `warning:` lines).
    pub fn warnings(&self) -> Vec<String> {
        self.caller
            .as_ref()
            .map(|c| c.warnings())
            .unwrap_or_default()
    }
}

impl From<Config> for SidecarConfig {
    /// A callee-only process.
    fn from(config: Config) -> SidecarConfig {
        SidecarConfig {
            admin: config.admin,
            limits: config.limits.clone(),
            extra_ca_certs: config.extra_ca_certs.clone(),
            callee: Some(config),
            caller: None,
        }
    }
}

/// Where and how requests are forwarded.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `http` or `https` scheme plus authority; the request's path and query are appended.
    pub url: Uri,
    /// Time to the upstream's response head before 504.
    pub timeout: Duration,
    /// Time to establish a TCP connection before 502.
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Keep the client's `Host` header (true) or send the upstream's authority (false).
    pub preserve_host: bool,
    /// Keep client-sent `X-Forwarded-Proto`/`-Host` and append to `X-Forwarded-For` (true), or
    /// overwrite all three (false) because the client is not a trusted proxy.
    pub trust_forwarded_headers: bool,
    /// Forward the validated token as `X-MS-TOKEN-AAD-ACCESS-TOKEN` (EasyAuth's token-store
    /// header) for callees that make on-behalf-of calls. Client-sent copies are always stripped.
    pub forward_token: bool,
    /// The protocol spoken to the upstream.
    pub protocol: UpstreamProtocol,
}

/// `upstream.protocol`: which HTTP version the upstream is spoken to with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 always (the default).
    Http1,
    /// HTTP/2 always: prior knowledge on `http://`, ALPN `h2` on `https://`.
    Http2,
    /// HTTP/2 for requests that arrived over HTTP/2, HTTP/1.1 for the others.
    Match,
}

/// Where keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// OIDC discovery document; its `jwks_uri` is followed.
    Discovery(Uri),
    /// A JWKS URL used directly.
    Jwks(Uri),
}

impl KeySource {
    /// The configured URL, for logs and `check` output.
    pub fn url(&self) -> &Uri {
        match self {
            KeySource::Discovery(u) | KeySource::Jwks(u) => u,
        }
    }
}

/// Token validation and authorization policy.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Discovery document or JWKS.
    pub keys: KeySource,
    /// Accepted `iss` values, compared exactly; an entry holding `{tenantid}` is a template
    /// matched against the token's GUID `tid` (see [`issuer_matches`]).
    pub issuers: Vec<String>,
    /// Which tenants (`tid`) may call.
    pub tenants: TenantPolicy,
    /// Accepted `aud` values on routes no rule with `audiences` matches; a token matches when
    /// any of its audiences is here.
    pub audiences: Vec<String>,
    /// `audiences` minus every audience a rule names: a rule's audiences are reserved to the
    /// routes it matches, so a token for one is refused everywhere else.
    pub open_audiences: Vec<String>,
    /// Every audience any route accepts (`audiences` and all rules' `audiences`): a token for
    /// none of them is not for this proxy at all and fails validation.
    pub token_audiences: Vec<String>,
    /// `enforce` refuses; `report` forwards what it would refuse and logs `would deny`.
    pub mode: Mode,
    /// Accepted JWS algorithms.
    pub algorithms: Vec<Algorithm>,
    /// `appid`/`azp` allow-list; empty means any application.
    pub allowed_applications: Vec<String>,
    /// `oid` allow-list; empty means any principal.
    pub allowed_principals: Vec<String>,
    /// Anonymous path prefixes (exact case, whole segments).
    pub excluded_paths: Vec<Prefix>,
    /// Tolerance for `exp` and `nbf`.
    pub clock_skew: Duration,
    /// Longest accepted token lifetime: `exp - iat`, and `exp - now` beyond the skew.
    pub max_token_lifetime: Duration,
    /// Largest accepted token, checked before any decoding.
    pub max_token_size: usize,
    /// Role rules; every rule that matches a request must be satisfied.
    pub rules: Vec<Rule>,
}

/// One `[[auth.rules]]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Segment prefix, matched case-insensitively.
    pub path: Prefix,
    /// Upper-case method names; empty means every method.
    pub methods: Vec<http::Method>,
    /// The token's `roles` must hold at least one of these; empty means no role is needed.
    pub roles: Vec<String>,
    /// When non-empty, replaces the accepted audiences for requests this rule matches.
    pub audiences: Vec<String>,
    /// `report`: what this rule would refuse is forwarded and logged as `would deny`.
    pub mode: Mode,
}

/// Enforce or only report (`auth.mode`, `[[auth.rules]] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Refuse what the policy does not allow (the default).
    #[default]
    Enforce,
    /// Forward it anyway, log `would deny` and count it: for rolling a policy out.
    Report,
}

impl Mode {
    /// The config spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }

    fn parse(key: &str, s: &str) -> Result<Mode, ConfigError> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "report" => Ok(Mode::Report),
            _ => Err(ConfigError::new(format!(
                "{key}: {s:?} must be \"enforce\" or \"report\""
            ))),
        }
    }
}

/// `auth.tenants`: which Entra tenants may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantPolicy {
    /// Not configured: only the issuers decide (allowed only without issuer templates).
    Unrestricted,
    /// `["*"]`: any tenant, said explicitly.
    Any,
    /// Only these tenant ids (lower-case GUIDs).
    Only(Vec<String>),
}

impl TenantPolicy {
    /// Whether a token with `tid` may call.
    pub fn allows(&self, tid: Option<&str>) -> bool {
        match self {
            TenantPolicy::Unrestricted | TenantPolicy::Any => true,
            TenantPolicy::Only(list) => tid.is_some_and(|t| list.iter().any(|x| x == t)),
        }
    }
}

/// The placeholder of a multi-tenant issuer template.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// Whether `iss` is accepted by the configured issuer `pattern`: equal to it, or, when `pattern`
/// is a template, equal to it with `{tenantid}` replaced by `tid`, which must be a GUID. Exact
/// comparison only (no prefix or regex matching); never allocates.
pub fn issuer_matches(pattern: &str, iss: &str, tid: Option<&str>) -> bool {
    let Some((before, after)) = pattern.split_once(TENANT_PLACEHOLDER) else {
        return pattern == iss;
    };
    let Some(tid) = tid.filter(|t| is_guid(t)) else {
        return false;
    };
    iss.len() == before.len() + tid.len() + after.len()
        && iss.starts_with(before)
        && iss[before.len()..].starts_with(tid)
        && iss.ends_with(after)
}

/// Whether `s` is a GUID in its canonical 8-4-4-4-12 hex form.
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Timings of discovery/JWKS fetches.
#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// How often keys are refreshed while everything is healthy.
    pub refresh_interval: Duration,
    /// At most one unknown-`kid` fetch per this period.
    pub unknown_kid_cooldown: Duration,
    /// How long a request waits for an unknown-`kid` fetch before it is refused.
    pub unknown_kid_wait: Duration,
    /// Timeout for one discovery or JWKS HTTP request.
    pub fetch_timeout: Duration,
    /// Cap of the exponential backoff after failed fetches.
    pub max_backoff: Duration,
}

/// Verified-token cache bounds.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Most entries held; 0 disables the cache.
    pub max_entries: usize,
    /// Most bytes of tokens and pre-encoded headers held.
    pub max_bytes: usize,
}

/// Connection and request limits.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Time allowed to receive a request's headers (slowloris).
    pub header_read_timeout: Duration,
    /// How long in-flight requests may run after SIGTERM before the process exits anyway.
    pub shutdown_grace: Duration,
    /// HTTP/2 concurrent streams per connection.
    pub max_concurrent_streams: u32,
    /// Most bytes of request headers (HTTP/1.1 buffer and HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Most simultaneous client connections; further ones wait in the accept queue.
    pub max_connections: usize,
    /// Most request header fields (HTTP/1.1).
    pub max_headers: usize,
    /// Largest request body forwarded; `None` means no limit.
    pub max_body_bytes: Option<u64>,
    /// A connection with no bytes moving for this long is closed (after any in-flight request).
    pub idle_timeout: Duration,
    /// An upgraded (WebSocket) connection with no bytes moving either way for this long is
    /// closed.
    pub upgrade_idle_timeout: Duration,
}

/// A config that could not be loaded, with the message shown to the operator.
#[derive(Debug)]
pub struct ConfigError(String);

impl ConfigError {
    fn new(msg: impl Into<String>) -> Self {
        ConfigError(msg.into())
    }
}

impl From<String> for ConfigError {
    fn from(msg: String) -> Self {
        ConfigError(msg)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads `path`, applies `TOKENGATE_*` overrides from the process environment, and checks.
    /// The file must have the callee side (`[auth]`); see [`SidecarConfig`] for either side.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        SidecarConfig::load(path)?
            .callee
            .ok_or_else(|| ConfigError::new(format!("{}: {NO_CALLEE}", path.display())))
    }

    /// Parses TOML text without environment overrides.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, std::iter::empty())
    }

    /// Parses TOML text, then applies overrides from `env` (name, value) pairs.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        SidecarConfig::from_toml_with_env(text, env)?
            .callee
            .ok_or_else(|| ConfigError::new(NO_CALLEE))
    }

    /// A human summary of the effective settings, for `tokengate check`.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let a = &self.auth;
        let list = |v: &[String]| {
            if v.is_empty() {
                "any".to_string()
            } else {
                v.join(", ")
            }
        };
        let _ = writeln!(s, "listen        {}", self.listen);
        let _ = writeln!(s, "admin         {}", self.admin);
        let _ = writeln!(
            s,
            "upstream      {} (timeout {:?})",
            self.upstream.url, self.upstream.timeout
        );
        let source = match &a.keys {
            KeySource::Discovery(u) => format!("discovery {u}"),
            KeySource::Jwks(u) => format!("jwks {u}"),
        };
        let _ = writeln!(s, "keys          {source}");
        let _ = writeln!(s, "issuers       {}", a.issuers.join(", "));
        let tenants = match &a.tenants {
            TenantPolicy::Unrestricted => "(issuers decide)".to_string(),
            TenantPolicy::Any => "* (any tenant)".to_string(),
            TenantPolicy::Only(t) => t.join(", "),
        };
        let _ = writeln!(s, "tenants       {tenants}");
        let _ = writeln!(s, "audiences     {}", a.audiences.join(", "));
        let _ = writeln!(s, "mode          {}", a.mode.name());
        let algs: Vec<&str> = a.algorithms.iter().map(|x| x.name()).collect();
        let _ = writeln!(s, "algorithms    {}", algs.join(", "));
        let _ = writeln!(s, "applications  {}", list(&a.allowed_applications));
        let _ = writeln!(s, "principals    {}", list(&a.allowed_principals));
        let excluded: Vec<&str> = a.excluded_paths.iter().map(|p| p.as_str()).collect();
        let _ = writeln!(s, "anonymous     {}", excluded.join(", "));
        for r in &a.rules {
            let methods: Vec<&str> = r.methods.iter().map(|m| m.as_str()).collect();
            let methods = if methods.is_empty() {
                "*".to_string()
            } else {
                methods.join(",")
            };
            let mut line = format!("rule          {} [{}]", r.path.as_str(), methods);
            if !r.roles.is_empty() {
                let _ = write!(line, " roles: {}", r.roles.join(" | "));
            }
            if !r.audiences.is_empty() {
                let _ = write!(line, " audiences: {}", r.audiences.join(" | "));
            }
            if r.mode == Mode::Report {
                line.push_str(" (report only)");
            }
            let _ = writeln!(s, "{line}");
        }
        s
    }
}

/// Sets `TOKENGATE_A__B__C=value` at `a.b.c` in `table`.
fn apply_override(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name["TOKENGATE_".len()..]
        .split("__")
        .map(|p| p.to_ascii_lowercase())
        .collect();
    if path.len() < 2 || path.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::new(format!(
            "environment variable {name}: expected TOKENGATE_<SECTION>__<KEY>"
        )));
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, sections) = path.split_last().expect("len >= 2");
    let mut cursor = table;
    for section in sections {
        let entry = cursor
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(ConfigError::new(format!(
                    "environment variable {name}: `{section}` is not a table"
                )))
            }
        };
    }
    cursor.insert(last.clone(), parsed);
    Ok(())
}

/// Why [`Config::load`] refuses a file that only has the caller side.
const NO_CALLEE: &str = "no [auth] section: the callee side needs [auth] and [upstream]";

// ---- The file's shape. Field docs state defaults; proxy.toml repeats them. ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// Callee side only. Default: see `ListenFile`.
    listen: Option<ListenFile>,
    /// Required with `[auth]`.
    upstream: Option<UpstreamFile>,
    #[serde(default)]
    admin: AdminFile,
    /// The callee side runs when this is present.
    auth: Option<AuthFile>,
    /// The caller side runs when this is present.
    identity: Option<IdentityFile>,
    identity_endpoint: Option<EndpointFile>,
    #[serde(default)]
    egress: Vec<EgressFile>,
    #[serde(default)]
    keys: KeysFile,
    #[serde(default)]
    cache: CacheFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    tls: TlsFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    /// PEM file of extra CA certificates. Default: none (system CAs only).
    ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    /// Default `0.0.0.0:8080`.
    #[serde(default = "default_listen")]
    address: String,
    /// PEM certificate chain; with `tls_key_file` turns TLS on. Default: none (plain HTTP).
    tls_cert_file: Option<String>,
    /// PEM private key for `tls_cert_file`. Default: none.
    tls_key_file: Option<String>,
    /// PEM CA certificates that client certificates must chain to. Default: none (no client
    /// certificates asked for).
    tls_client_ca_file: Option<String>,
    /// `"optional"` (default) or `"required"`; only with `tls_client_ca_file`.
    tls_client_auth: Option<ClientAuth>,
}

impl Default for ListenFile {
    fn default() -> Self {
        ListenFile {
            address: default_listen(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            tls_client_auth: None,
        }
    }
}

impl ListenFile {
    fn tls(&self) -> Result<Option<ListenTls>, ConfigError> {
        let (cert, key) =
            match (&self.tls_cert_file, &self.tls_key_file) {
                (None, None) => {
                    if self.tls_client_ca_file.is_some() || self.tls_client_auth.is_some() {
                        return Err(ConfigError::new(
                            "listen.tls_client_ca_file and listen.tls_client_auth need \
                         listen.tls_cert_file and listen.tls_key_file",
                        ));
                    }
                    return Ok(None);
                }
                (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => (c, k),
                _ => return Err(ConfigError::new(
                    "listen.tls_cert_file and listen.tls_key_file go together: set both or neither",
                )),
            };
        if self.tls_client_auth.is_some() && self.tls_client_ca_file.is_none() {
            return Err(ConfigError::new(
                "listen.tls_client_auth needs listen.tls_client_ca_file (the CAs client \
                 certificates are verified against)",
            ));
        }
        Ok(Some(ListenTls {
            cert_file: cert.into(),
            key_file: key.into(),
            client_ca_file: self.tls_client_ca_file.as_ref().map(Into::into),
            client_auth: self.tls_client_auth.unwrap_or(ClientAuth::Optional),
        }))
    }
}

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    /// Default `127.0.0.1:9090`.
    #[serde(default = "default_admin")]
    address: String,
}

impl Default for AdminFile {
    fn default() -> Self {
        AdminFile {
            address: default_admin(),
        }
    }
}

fn default_admin() -> String {
    "127.0.0.1:9090".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamFile {
    /// Required.
    url: String,
    /// Default `30s`.
    #[serde(default = "secs::<30>")]
    timeout: Dur,
    /// Default `5s`.
    #[serde(default = "secs::<5>")]
    connect_timeout: Dur,
    /// Default `90s`.
    #[serde(default = "secs::<90>")]
    pool_idle_timeout: Dur,
    /// Default `true`.
    #[serde(default = "yes")]
    preserve_host: bool,
    /// Default `false`.
    #[serde(default)]
    trust_forwarded_headers: bool,
    /// Default `false`.
    #[serde(default)]
    forward_token: bool,
    /// `"http1"` (default), `"http2"` or `"match"`.
    #[serde(default = "default_protocol")]
    protocol: UpstreamProtocol,
}

fn default_protocol() -> UpstreamProtocol {
    UpstreamProtocol::Http1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    openid_configuration: Option<String>,
    jwks_uri: Option<String>,
    /// Required, non-empty.
    issuers: Vec<String>,
    /// Default none; required (`["*"]` for any) when an issuer is a `{tenantid}` template.
    tenants: Option<Vec<String>>,
    /// Required, non-empty.
    audiences: Vec<String>,
    /// Default `"enforce"`.
    #[serde(default)]
    mode: Option<String>,
    /// Default `["RS256"]`.
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    /// Default empty (any).
    #[serde(default)]
    allowed_applications: Vec<String>,
    /// Default empty (any).
    #[serde(default)]
    allowed_principals: Vec<String>,
    /// Default empty (every path needs a token).
    #[serde(default)]
    excluded_paths: Vec<String>,
    /// Default `60s`.
    #[serde(default = "secs::<60>")]
    clock_skew: Dur,
    /// Default `29h`: Entra's managed-identity tokens carry `exp - iat` = 24 h 5 min and its
    /// continuous-access-evaluation tokens live up to 28 h; nothing legitimate lives longer.
    #[serde(default = "secs::<{ 29 * 3600 }>")]
    max_token_lifetime: Dur,
    /// Default 16384 bytes.
    #[serde(default = "default_max_token")]
    max_token_size: usize,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}

fn default_max_token() -> usize {
    16 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    path: String,
    #[serde(default)]
    methods: Vec<String>,
    /// Default empty (no role needed); a rule needs `roles` or `audiences`.
    #[serde(default)]
    roles: Vec<String>,
    /// Default empty (the global `auth.audiences` apply).
    #[serde(default)]
    audiences: Vec<String>,
    /// Default `"enforce"`.
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    /// Default `1h`.
    #[serde(default = "secs::<3600>")]
    refresh_interval: Dur,
    /// Default `10s`.
    #[serde(default = "secs::<10>")]
    unknown_kid_cooldown: Dur,
    /// Default `2s`.
    #[serde(default = "secs::<2>")]
    unknown_kid_wait: Dur,
    /// Default `5s`.
    #[serde(default = "secs::<5>")]
    fetch_timeout: Dur,
    /// Default `10s`.
    #[serde(default = "secs::<10>")]
    max_backoff: Dur,
}

impl Default for KeysFile {
    fn default() -> Self {
        KeysFile {
            refresh_interval: secs::<3600>(),
            unknown_kid_cooldown: secs::<10>(),
            unknown_kid_wait: secs::<2>(),
            fetch_timeout: secs::<5>(),
            max_backoff: secs::<10>(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    /// Default 10000.
    #[serde(default = "default_cache_entries")]
    max_entries: usize,
    /// Default 32 MiB.
    #[serde(default = "default_cache_bytes")]
    max_bytes: usize,
}

impl Default for CacheFile {
    fn default() -> Self {
        CacheFile {
            max_entries: default_cache_entries(),
            max_bytes: default_cache_bytes(),
        }
    }
}

fn default_cache_entries() -> usize {
    10_000
}

fn default_cache_bytes() -> usize {
    32 * 1024 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    /// Default `10s`.
    #[serde(default = "secs::<10>")]
    header_read_timeout: Dur,
    /// Default `30s`.
    #[serde(default = "secs::<30>")]
    shutdown_grace: Dur,
    /// Default 100.
    #[serde(default = "default_streams")]
    max_concurrent_streams: u32,
    /// Default 65536.
    #[serde(default = "default_header_bytes")]
    max_header_bytes: usize,
    /// Default 10000.
    #[serde(default = "default_connections")]
    max_connections: usize,
    /// Default 100.
    #[serde(default = "default_max_headers")]
    max_headers: usize,
    /// Default 0 (no limit).
    #[serde(default)]
    max_body_bytes: u64,
    /// Default `60s`.
    #[serde(default = "secs::<60>")]
    idle_timeout: Dur,
    /// Default `300s`.
    #[serde(default = "secs::<300>")]
    upgrade_idle_timeout: Dur,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            header_read_timeout: secs::<10>(),
            shutdown_grace: secs::<30>(),
            max_concurrent_streams: default_streams(),
            max_header_bytes: default_header_bytes(),
            max_connections: default_connections(),
            max_headers: default_max_headers(),
            max_body_bytes: 0,
            idle_timeout: secs::<60>(),
            upgrade_idle_timeout: secs::<300>(),
        }
    }
}

fn default_streams() -> u32 {
    100
}

fn default_header_bytes() -> usize {
    64 * 1024
}

fn default_connections() -> usize {
    10_000
}

fn default_max_headers() -> usize {
    100
}

fn yes() -> bool {
    true
}

fn secs<const N: u64>() -> Dur {
    Dur(Duration::from_secs(N))
}

/// A duration written as a string: `500ms`, `60s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

/// Parses `<integer><unit>` with unit `ms`, `s`, `m` or `h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. \"500ms\", \"60s\", \"1h\""))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "invalid duration {s:?}: unit must be one of ms, s, m, h (e.g. \"60s\")"
            ))
        }
    };
    Ok(d)
}

impl FileConfig {
    fn check(self, azure: &AzureEnv) -> Result<SidecarConfig, ConfigError> {
        let admin = parse_addr("admin.address", &self.admin.address)?;
        let caller =
            caller::config::check(self.identity, self.identity_endpoint, self.egress, azure)?;
        let (auth, upstream) = match (self.auth, self.upstream) {
            (Some(a), Some(u)) => (a, u),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "missing [upstream]: the callee side ([auth]) forwards validated requests \
                     to upstream.url",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "missing [auth]: [upstream] is the callee side's, and it needs [auth] to \
                     say which tokens are accepted",
                ))
            }
            (None, None) => {
                let Some(caller) = caller else {
                    return Err(ConfigError::new(
                        "nothing to run: add [auth] and [upstream] (the callee side), \
                         [identity] (the caller side), or both",
                    ));
                };
                if self.listen.is_some() {
                    return Err(ConfigError::new(
                        "listen.address is the callee side's public listener; this config has \
                         no [auth]",
                    ));
                }
                let shared = shared_settings(self.limits, self.tls)?;
                check_clashes(None, admin, Some(&caller))?;
                return Ok(SidecarConfig {
                    callee: None,
                    caller: Some(caller),
                    admin,
                    limits: shared.0,
                    extra_ca_certs: shared.1,
                });
            }
        };
        let listen_file = self.listen.unwrap_or_default();
        let listen = parse_addr("listen.address", &listen_file.address)?;
        let listen_tls = listen_file.tls()?;
        if listen == admin && listen.port() != 0 {
            return Err(ConfigError::new(
                "admin.address must differ from listen.address: admin endpoints are never served \
                 on the public listener",
            ));
        }
        check_clashes(Some(listen), admin, caller.as_ref())?;
        let upstream = upstream.check()?;
        let auth = auth.check()?;
        let k = self.keys;
        let keys = KeysConfig {
            refresh_interval: k.refresh_interval.0,
            unknown_kid_cooldown: k.unknown_kid_cooldown.0,
            unknown_kid_wait: k.unknown_kid_wait.0,
            fetch_timeout: k.fetch_timeout.0,
            max_backoff: k.max_backoff.0,
        };
        if keys.refresh_interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "keys.refresh_interval must be at least 1s",
            ));
        }
        if keys.fetch_timeout.is_zero() || keys.max_backoff.is_zero() {
            return Err(ConfigError::new(
                "keys.fetch_timeout and keys.max_backoff must be > 0",
            ));
        }
        let (limits, extra_ca_certs) = shared_settings(self.limits, self.tls)?;
        let config = Config {
            extra_ca_certs: extra_ca_certs.clone(),
            listen,
            listen_tls,
            admin,
            upstream,
            auth,
            keys,
            cache: CacheConfig {
                max_entries: self.cache.max_entries,
                max_bytes: self.cache.max_bytes,
            },
            limits: limits.clone(),
        };
        Ok(SidecarConfig {
            callee: Some(config),
            caller,
            admin,
            limits,
            extra_ca_certs,
        })
    }
}

/// `[limits]` and `[tls]`, which both sides use.
fn shared_settings(
    l: LimitsFile,
    tls: TlsFile,
) -> Result<
    (
        LimitsConfig,
        Vec<rustls::pki_types::CertificateDer<'static>>,
    ),
    ConfigError,
> {
    if l.max_connections == 0 || l.max_concurrent_streams == 0 {
        return Err(ConfigError::new(
            "limits.max_connections and limits.max_concurrent_streams must be > 0",
        ));
    }
    if l.max_headers == 0 || l.idle_timeout.0.is_zero() || l.upgrade_idle_timeout.0.is_zero() {
        return Err(ConfigError::new(
            "limits.max_headers, limits.idle_timeout and limits.upgrade_idle_timeout must be > 0",
        ));
    }
    if l.max_header_bytes < 8192 {
        return Err(ConfigError::new(
            "limits.max_header_bytes must be at least 8192",
        ));
    }
    let extra_ca_certs = match &tls.ca_file {
        None => Vec::new(),
        Some(path) => load_ca_file(path)?,
    };
    let limits = LimitsConfig {
        header_read_timeout: l.header_read_timeout.0,
        shutdown_grace: l.shutdown_grace.0,
        max_concurrent_streams: l.max_concurrent_streams,
        max_header_bytes: l.max_header_bytes,
        max_connections: l.max_connections,
        max_headers: l.max_headers,
        max_body_bytes: (l.max_body_bytes > 0).then_some(l.max_body_bytes),
        idle_timeout: l.idle_timeout.0,
        upgrade_idle_timeout: l.upgrade_idle_timeout.0,
    };
    Ok((limits, extra_ca_certs))
}

/// Every listener on its own address (port 0 excepted: the kernel picks distinct ones).
fn check_clashes(
    listen: Option<SocketAddr>,
    admin: SocketAddr,
    caller: Option<&CallerConfig>,
) -> Result<(), ConfigError> {
    let mut taken: Vec<(String, SocketAddr)> = vec![("admin.address".into(), admin)];
    if let Some(l) = listen {
        taken.push(("listen.address".into(), l));
    }
    for (key, addr) in caller.map(|c| c.addresses()).unwrap_or_default() {
        if addr.port() != 0 {
            if let Some((other, _)) = taken.iter().find(|(_, a)| *a == addr) {
                return Err(ConfigError::new(format!(
                    "{key}: {addr} is already {other}"
                )));
            }
        }
        taken.push((key, addr));
    }
    Ok(())
}

impl UpstreamFile {
    fn check(self) -> Result<UpstreamConfig, ConfigError> {
        let url = parse_http_url("upstream.url", &self.url)?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(ConfigError::new(format!(
                "upstream.url: {:?} must not have a path or query: the request's path is forwarded \
                 as is",
                self.url
            )));
        }
        if self.timeout.0.is_zero() || self.connect_timeout.0.is_zero() {
            return Err(ConfigError::new(
                "upstream.timeout and upstream.connect_timeout must be > 0",
            ));
        }
        Ok(UpstreamConfig {
            url,
            timeout: self.timeout.0,
            connect_timeout: self.connect_timeout.0,
            pool_idle_timeout: self.pool_idle_timeout.0,
            preserve_host: self.preserve_host,
            trust_forwarded_headers: self.trust_forwarded_headers,
            protocol: self.protocol,
            forward_token: self.forward_token,
        })
    }
}

impl AuthFile {
    fn check(self) -> Result<AuthConfig, ConfigError> {
        let keys = match (self.openid_configuration, self.jwks_uri) {
            (Some(d), None) => {
                KeySource::Discovery(parse_http_url("auth.openid_configuration", &d)?)
            }
            (None, Some(j)) => KeySource::Jwks(parse_http_url("auth.jwks_uri", &j)?),
            _ => {
                return Err(ConfigError::new(
                    "auth: set exactly one of openid_configuration and jwks_uri",
                ))
            }
        };
        non_empty("auth.issuers", &self.issuers)?;
        non_empty("auth.audiences", &self.audiences)?;
        let mut templated = false;
        for (i, iss) in self.issuers.iter().enumerate() {
            templated |= check_issuer(&format!("auth.issuers[{i}]"), iss)?;
        }
        let tenants = parse_tenants(self.tenants, templated)?;
        let mode = match &self.mode {
            None => Mode::Enforce,
            Some(m) => Mode::parse("auth.mode", m)?,
        };
        let mut algorithms = Vec::new();
        for name in &self.algorithms {
            let alg = Algorithm::from_name(name).ok_or_else(|| {
                ConfigError::new(format!(
                    "auth.algorithms: {name:?} is not supported (use RS256, RS384, RS512, PS256, \
                     ES256, ES384; `none` and HMAC are never accepted)"
                ))
            })?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if algorithms.is_empty() {
            return Err(ConfigError::new("auth.algorithms must not be empty"));
        }
        let excluded_paths = self
            .excluded_paths
            .iter()
            .map(|p| parse_prefix("auth.excluded_paths", p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rules = Vec::new();
        for (i, r) in self.rules.into_iter().enumerate() {
            let at = format!("auth.rules[{i}]");
            let path = parse_prefix(&format!("{at}.path"), &r.path)?;
            if has_escaped_non_ascii(path.as_str()) {
                // Rules match case-insensitively for ASCII only; ASP.NET Core also folds case
                // of `É`/`é`, so a non-ASCII rule could be bypassed by a case change.
                return Err(ConfigError::new(format!(
                    "{at}.path: {:?}: non-ASCII characters are not supported in rule paths \
                     (frameworks disagree on their letter case)",
                    r.path
                )));
            }
            let mut methods = Vec::new();
            for m in &r.methods {
                let upper = m.to_ascii_uppercase();
                let method = http::Method::from_bytes(upper.as_bytes())
                    .map_err(|_| ConfigError::new(format!("{at}.methods: invalid method {m:?}")))?;
                methods.push(method);
            }
            if r.roles.is_empty() && r.audiences.is_empty() {
                return Err(ConfigError::new(format!(
                    "{at}: a rule needs `roles`, `audiences` or both"
                )));
            }
            if !r.roles.is_empty() {
                non_empty(&format!("{at}.roles"), &r.roles)?;
            }
            if !r.audiences.is_empty() {
                non_empty(&format!("{at}.audiences"), &r.audiences)?;
            }
            let mode = match &r.mode {
                None => Mode::Enforce,
                Some(m) => Mode::parse(&format!("{at}.mode"), m)?,
            };
            rules.push(Rule {
                path,
                methods,
                roles: dedup(r.roles),
                audiences: dedup(r.audiences),
                mode,
            });
        }
        if self.max_token_size < 1024 || self.max_token_size > 64 * 1024 {
            return Err(ConfigError::new(
                "auth.max_token_size must be between 1024 and 65536 bytes",
            ));
        }
        if self.max_token_lifetime.0 < Duration::from_secs(60) {
            return Err(ConfigError::new(
                "auth.max_token_lifetime must be at least 60s",
            ));
        }
        let audiences = dedup(self.audiences);
        let reserved: BTreeSet<&str> = rules
            .iter()
            .flat_map(|r| r.audiences.iter().map(String::as_str))
            .collect();
        let open_audiences: Vec<String> = audiences
            .iter()
            .filter(|a| !reserved.contains(a.as_str()))
            .cloned()
            .collect();
        let token_audiences = dedup(
            audiences
                .iter()
                .chain(rules.iter().flat_map(|r| r.audiences.iter()))
                .cloned()
                .collect(),
        );
        Ok(AuthConfig {
            keys,
            issuers: dedup(self.issuers),
            tenants,
            audiences,
            open_audiences,
            token_audiences,
            mode,
            algorithms,
            allowed_applications: dedup(self.allowed_applications),
            allowed_principals: dedup(self.allowed_principals),
            excluded_paths,
            clock_skew: self.clock_skew.0,
            max_token_lifetime: self.max_token_lifetime.0,
            max_token_size: self.max_token_size,
            rules,
        })
    }
}

/// Checks one `auth.issuers` entry; returns whether it is a `{tenantid}` template.
fn check_issuer(key: &str, iss: &str) -> Result<bool, ConfigError> {
    let count = iss.matches(TENANT_PLACEHOLDER).count();
    let other_braces = iss.replace(TENANT_PLACEHOLDER, "").contains(['{', '}']);
    if count > 1 || other_braces {
        return Err(ConfigError::new(format!(
            "{key}: {iss:?}: the only placeholder is `{{tenantid}}`, at most once"
        )));
    }
    if count == 0 {
        return Ok(false);
    }
    let uri: Uri = iss.replace(TENANT_PLACEHOLDER, "t").parse().map_err(|_| {
        ConfigError::new(format!("{key}: {iss:?}: a template must be an https URL"))
    })?;
    let whole_segment = iss.split('/').any(|segment| segment == TENANT_PLACEHOLDER);
    if uri.scheme_str() != Some("https") || !whole_segment {
        return Err(ConfigError::new(format!(
            "{key}: {iss:?}: a template must be an https URL with `{{tenantid}}` as a whole path \
             segment, e.g. \"https://login.microsoftonline.com/{{tenantid}}/v2.0\""
        )));
    }
    Ok(true)
}

/// `auth.tenants`: required with an issuer template, `["*"]` for any tenant, else GUIDs.
fn parse_tenants(list: Option<Vec<String>>, templated: bool) -> Result<TenantPolicy, ConfigError> {
    let Some(list) = list else {
        if templated {
            return Err(ConfigError::new(
                "auth.tenants is required with a `{tenantid}` issuer template: list the tenant \
                 ids that may call, or set tenants = [\"*\"] to accept every Entra tenant",
            ));
        }
        return Ok(TenantPolicy::Unrestricted);
    };
    if list.len() == 1 && list[0] == "*" {
        return Ok(TenantPolicy::Any);
    }
    if list.is_empty() {
        return Err(ConfigError::new(
            "auth.tenants must not be empty (use [\"*\"] for any tenant)",
        ));
    }
    let mut out = Vec::new();
    for t in list {
        if !is_guid(&t) {
            return Err(ConfigError::new(format!(
                "auth.tenants: {t:?} is not a tenant id (a GUID; \"*\" only on its own)"
            )));
        }
        out.push(t.to_ascii_lowercase());
    }
    Ok(TenantPolicy::Only(dedup(out)))
}

fn load_ca_file(
    path: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConfigError::new(format!("tls.ca_file: {path}: {e}")))?;
    if certs.is_empty() {
        return Err(ConfigError::new(format!(
            "tls.ca_file: {path}: no PEM certificates"
        )));
    }
    Ok(certs)
}

/// Whether a normalized path holds a percent-escape of a byte >= 0x80 (normalization escapes
/// every non-ASCII byte, so this is "has non-ASCII characters").
fn has_escaped_non_ascii(path: &str) -> bool {
    path.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'%' && matches!(w[1], b'8'..=b'9' | b'A'..=b'F'))
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    v.into_iter().filter(|s| seen.insert(s.clone())).collect()
}

fn non_empty(key: &str, v: &[String]) -> Result<(), ConfigError> {
    if v.is_empty() || v.iter().any(|s| s.is_empty()) {
        return Err(ConfigError::new(format!(
            "{key} must be a non-empty list of non-empty strings"
        )));
    }
    Ok(())
}

fn parse_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::new(format!("{key}: {s:?} is not an IP:port socket address")))
}

fn parse_prefix(key: &str, s: &str) -> Result<Prefix, ConfigError> {
    Prefix::parse(s).map_err(|e| ConfigError::new(format!("{key}: {s:?}: {e}")))
}

fn parse_http_url(key: &str, s: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = s
        .parse()
        .map_err(|e| ConfigError::new(format!("{key}: {s:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(ConfigError::new(format!(
                "{key}: {s:?} must be an http or https URL"
            )))
        }
    }
    if uri.authority().is_none() {
        return Err(ConfigError::new(format!("{key}: {s:?} has no host")));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[upstream]
url = "http://127.0.0.1:3000"
[auth]
jwks_uri = "http://127.0.0.1:1/keys"
issuers = ["https://sts.windows.net/t/"]
audiences = ["api://x"]
"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.admin, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.upstream.timeout, Duration::from_secs(30));
        assert_eq!(c.auth.clock_skew, Duration::from_secs(60));
        assert_eq!(c.auth.max_token_lifetime, Duration::from_secs(29 * 3600));
        assert_eq!(c.auth.max_token_size, 16384);
        assert_eq!(c.auth.algorithms, vec![Algorithm::Rs256]);
        assert_eq!(c.keys.unknown_kid_cooldown, Duration::from_secs(10));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = format!("{MINIMAL}bogus_key = 1\n");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("bogus_key"), "{err}");
        assert!(err.contains("line 8"), "{err}");
    }

    #[test]
    fn both_or_neither_key_source_is_an_error() {
        let both = MINIMAL.replace("[auth]", "[auth]\nopenid_configuration = \"https://x/y\"");
        assert!(Config::from_toml(&both)
            .unwrap_err()
            .to_string()
            .contains("exactly one"));
        let neither = MINIMAL.replace("jwks_uri = \"http://127.0.0.1:1/keys\"", "");
        assert!(Config::from_toml(&neither).is_err());
    }

    #[test]
    fn durations_parse_and_bad_ones_name_the_key() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("60").is_err());
        assert!(parse_duration("1.5s").is_err());
        let text = MINIMAL.replace("audiences", "clock_skew = \"soon\"\naudiences");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(
            err.contains("clock_skew") && err.contains("invalid duration"),
            "{err}"
        );
    }

    #[test]
    fn hmac_and_none_are_refused() {
        for alg in ["HS256", "none"] {
            let text =
                MINIMAL.replace("audiences", &format!("algorithms = [\"{alg}\"]\naudiences"));
            assert!(Config::from_toml(&text).is_err(), "{alg}");
        }
    }

    #[test]
    fn environment_overrides_any_key() {
        let env = vec![
            (
                "TOKENGATE_AUTH__AUDIENCES".to_string(),
                r#"["api://y", "y"]"#.to_string(),
            ),
            (
                "TOKENGATE_UPSTREAM__URL".to_string(),
                "http://127.0.0.1:4000".to_string(),
            ),
            (
                "TOKENGATE_LIMITS__MAX_CONNECTIONS".to_string(),
                "7".to_string(),
            ),
            ("TOKENGATE_CONFIG".to_string(), "ignored".to_string()),
            ("TOKENGATE_CHECK_BUILD".to_string(), "1".to_string()),
        ];
        let c = Config::from_toml_with_env(MINIMAL, env).unwrap();
        assert_eq!(c.auth.audiences, vec!["api://y", "y"]);
        assert_eq!(c.upstream.url.port_u16(), Some(4000));
        assert_eq!(c.limits.max_connections, 7);
        let bad = vec![("TOKENGATE_AUTH__NOPE".to_string(), "1".to_string())];
        let err = Config::from_toml_with_env(MINIMAL, bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn issuer_templates_match_exactly_with_a_guid_tid() {
        let t = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let g = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let iss = format!("https://login.microsoftonline.com/{g}/v2.0");
        assert!(issuer_matches(t, &iss, Some(g)));
        assert!(!issuer_matches(t, &iss, None));
        assert!(!issuer_matches(
            t,
            &iss,
            Some("72f988bf-86f1-41af-91ab-2d7cd011db48")
        ));
        assert!(!issuer_matches(t, &format!("{iss}/"), Some(g)));
        assert!(!issuer_matches(
            t,
            "https://login.microsoftonline.com/x/v2.0",
            Some("x")
        ));
        assert!(
            !issuer_matches(t, t, Some(g)),
            "the template itself is no issuer"
        );
        assert!(issuer_matches("https://x/", "https://x/", None));
        assert!(!issuer_matches("https://x/", "https://x", None));
        assert!(is_guid(g) && !is_guid("72f988bf86f141af91ab2d7cd011db47"));
    }

    #[test]
    fn templates_need_tenants_and_tenants_must_be_guids() {
        let templ = MINIMAL.replace(
            "https://sts.windows.net/t/",
            "https://sts.windows.net/{tenantid}/",
        );
        let err = Config::from_toml(&templ).unwrap_err().to_string();
        assert!(err.contains("auth.tenants"), "{err}");
        let any = templ.replace("audiences", "tenants = [\"*\"]\naudiences");
        assert_eq!(
            Config::from_toml(&any).unwrap().auth.tenants,
            TenantPolicy::Any
        );
        let bad = templ.replace("audiences", "tenants = [\"contoso\"]\naudiences");
        assert!(Config::from_toml(&bad).is_err());
        let mixed = templ.replace(
            "audiences",
            "tenants = [\"*\", \"72f988bf-86f1-41af-91ab-2d7cd011db47\"]\naudiences",
        );
        assert!(Config::from_toml(&mixed).is_err());
        for wrong in [
            "https://x/{tenantid}x/",
            "https://x/{tenantid}/{tenantid}/",
            "http://x/{tenantid}/",
            "https://x/{tid}/",
        ] {
            let text = MINIMAL.replace("https://sts.windows.net/t/", wrong);
            assert!(Config::from_toml(&text).is_err(), "{wrong}");
        }
    }

    #[test]
    fn rule_audiences_are_reserved_to_their_routes() {
        let text = format!(
            "{MINIMAL}[[auth.rules]]\npath = \"/r\"\naudiences = [\"api://x\", \"api://r\"]\n"
        );
        let a = Config::from_toml(&text).unwrap().auth;
        assert!(a.open_audiences.is_empty());
        assert_eq!(a.token_audiences, vec!["api://x", "api://r"]);
        let empty = format!("{MINIMAL}[[auth.rules]]\npath = \"/r\"\n");
        assert!(Config::from_toml(&empty)
            .unwrap_err()
            .to_string()
            .contains("roles"));
        let mode =
            format!("{MINIMAL}[[auth.rules]]\npath = \"/r\"\nroles = [\"x\"]\nmode = \"audit\"\n");
        assert!(Config::from_toml(&mode)
            .unwrap_err()
            .to_string()
            .contains("mode"));
    }

    #[test]
    fn rule_paths_are_normalized_and_bad_ones_refused() {
        let text = format!("{MINIMAL}[[auth.rules]]\npath = \"/x/../Admin/\"\nroles = [\"r\"]\n");
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.auth.rules[0].path.as_str(), "/Admin");
        let accented = format!("{MINIMAL}[[auth.rules]]\npath = \"/caf%C3%A9\"\nroles = [\"r\"]\n");
        let err = Config::from_toml(&accented).unwrap_err().to_string();
        assert!(err.contains("non-ASCII"), "{err}");
        let bad = format!("{MINIMAL}[[auth.rules]]\npath = \"/a%2fb\"\nroles = [\"r\"]\n");
        assert!(Config::from_toml(&bad)
            .unwrap_err()
            .to_string()
            .contains("auth.rules[0].path"));
    }
}
