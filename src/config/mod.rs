//! Configuration: TOML file (plus `TOKENGATE_*` environment overrides) → a checked [`Config`], in
//! two parts: [`Startup`], read once when the process starts, and [`Policy`], which a reload
//! swaps for new requests.
//!
//! # Contract
//! - Parse, don't validate: the file structs ([`file`]) mirror `proxy.toml` exactly
//!   (`deny_unknown_fields`, so a misspelt key is an error naming the key and its line), and
//!   [`Config`] holds only parsed types (socket addresses, URIs, durations, normalized prefixes).
//!   Code that holds a `Config` never re-checks it.
//! - Every default is stated once, in its section's `Default` impl in [`file`], and in
//!   `proxy.toml`.
//! - Any key can be overridden from the environment as `TOKENGATE_<SECTION>__<KEY>` ([`env`]; for
//!   example `TOKENGATE_AUTH__AUDIENCES='["api://x"]'`,
//!   `TOKENGATE_UPSTREAM__URL=http://127.0.0.1:3000`). The value is read as a TOML value when it
//!   parses as one, else as a string.
//! - Where a setting lives decides whether it can be reloaded: everything in [`Startup`] is read
//!   once (listeners, connection pool, cache size, TLS trust) and a reload that changes any of it
//!   is refused whole ([`Startup::changed`] names what); everything in [`Policy`] is hot.
//! - Nothing here is secret (keys come from the IdP), so the effective config can be printed whole.
//!
//! Why this file is long: it is the whole typed config contract (both parts, every section's
//! type and doc) plus its tests; splitting the types further would scatter the contract.

mod env;
mod file;
pub mod lint;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

pub use file::parse_duration;

use crate::caller::config::{AzureEnv, CallerConfig};
pub use crate::net::tls::{ClientAuth, ListenTls};
use crate::normalize::Prefix;
use crate::validate::Algorithm;

/// Everything the proxy needs, parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Read once at start.
    pub startup: Startup,
    /// Swapped by a reload.
    pub policy: Policy,
}

/// A whole config file: the callee side (`[auth]`), the caller side (`[identity]`), or both,
/// with what they share. The callee side's [`Config`] does not change with the caller side's
/// existence: code that validates requests never sees `[identity]`.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// The callee side, when the file has `[auth]` (and then `[upstream]`).
    pub callee: Option<Config>,
    /// The caller side, when the file has `[identity]`. Read once at start.
    pub caller: Option<CallerConfig>,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`), shared by both sides.
    pub admin: SocketAddr,
    /// Connection limits, for every listener.
    pub limits: LimitsConfig,
    /// Extra CA certificates for every outgoing https connection (`tls.ca_file`).
    pub extra_ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl SidecarConfig {
    /// Reads `path`, applies `TOKENGATE_*` overrides and the caller side's `AZURE_*` defaults
    /// from the process environment, and checks.
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
        let file: file::FileConfig =
            toml::from_str(text).map_err(|e| ConfigError::new(e.to_string()))?;
        let overrides: Vec<&(String, String)> =
            env.iter().filter(|(k, _)| env::is_override(k)).collect();
        if overrides.is_empty() {
            return file.check(&azure);
        }
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::new(e.to_string()))?;
        for (name, value) in overrides {
            env::apply_override(&mut table, name, value)?;
        }
        let file = file::FileConfig::deserialize(table)
            .map_err(|e| ConfigError::new(format!("after environment overrides: {e}")))?;
        file.check(&azure)
    }

    /// A human summary of the effective settings of both sides, for `tokengate check`.
    pub fn summary(&self) -> String {
        let mut s = match &self.callee {
            Some(c) => c.summary(),
            None => format!("admin         {}\n", self.admin),
        };
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
            admin: config.startup.admin,
            limits: config.startup.limits.clone(),
            extra_ca_certs: config.startup.extra_ca_certs.clone(),
            callee: Some(config),
            caller: None,
        }
    }
}

/// Why [`Config::load`] refuses a file that only has the caller side.
const NO_CALLEE: &str = "no [auth] section: the callee side needs [auth] and [upstream]";

/// The settings read once, when the process starts. Compared whole on reload: any difference
/// refuses the reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Startup {
    /// Public listener (HTTP/1.1 and h2c prior knowledge, or TLS with ALPN h2/http1.1):
    /// `listen.address`.
    pub listen: SocketAddr,
    /// TLS on the public listener: file paths (`listen.tls_*`; their contents are re-read on
    /// SIGHUP, the paths only at start).
    pub listen_tls: Option<ListenTls>,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`): `admin.address`.
    pub admin: SocketAddr,
    /// The upstream connection pool.
    pub upstream_pool: UpstreamPool,
    /// Verified-token cache bounds.
    pub cache: CacheConfig,
    /// Connection limits.
    pub limits: LimitsConfig,
    /// Extra CA certificates trusted for https upstreams and IdPs, besides the system's
    /// (`tls.ca_file`).
    pub extra_ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Startup {
    /// The keys of the settings that differ between `self` and `new`, for the reload error.
    /// The destructuring has no `..`, so a new start-only field cannot compile until it is named
    /// here; the refusal itself is `self != new`, so it never depends on this list.
    pub fn changed(&self, new: &Startup) -> Vec<&'static str> {
        let Startup {
            listen,
            listen_tls,
            admin,
            upstream_pool:
                UpstreamPool {
                    connect_timeout,
                    pool_idle_timeout,
                    max_connections,
                },
            cache,
            limits,
            extra_ca_certs,
        } = self;
        [
            ("listen.address", *listen != new.listen),
            (
                "listen.tls_* (file paths; their contents reload)",
                *listen_tls != new.listen_tls,
            ),
            ("admin.address", *admin != new.admin),
            (
                "upstream.connect_timeout",
                *connect_timeout != new.upstream_pool.connect_timeout,
            ),
            (
                "upstream.pool_idle_timeout",
                *pool_idle_timeout != new.upstream_pool.pool_idle_timeout,
            ),
            (
                "upstream.max_connections",
                *max_connections != new.upstream_pool.max_connections,
            ),
            ("cache", *cache != new.cache),
            ("tls.ca_file", *extra_ca_certs != new.extra_ca_certs),
            ("limits (except max_body_bytes)", *limits != new.limits),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

/// The settings a reload swaps: what requests are checked against and where they go.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where and how requests are forwarded.
    pub upstream: UpstreamConfig,
    /// Token validation and authorization.
    pub auth: AuthConfig,
    /// Signing-key refresh timings (the `[keys]` section).
    pub key_refresh: KeyRefreshConfig,
    /// The per-request part of `[limits]`.
    pub request_limits: RequestLimits,
}

/// The per-request part of `[limits]`, read from the snapshot by each request (so reloadable).
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Largest request body forwarded (`limits.max_body_bytes`); `None` means no limit.
    pub max_body_bytes: Option<u64>,
    /// An upgraded (WebSocket) connection with no bytes moving either way for this long is
    /// closed (`limits.upgrade_idle_timeout`).
    pub upgrade_idle_timeout: Duration,
}

/// Where and how requests are forwarded (the reloadable part of `[upstream]`).
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `http` or `https` scheme plus authority; the request's path and query are appended.
    pub url: Uri,
    /// `url`'s authority as a `Host` value ([`UpstreamConfig::host_of`]), encoded once rather
    /// than per request.
    pub host: Option<http::HeaderValue>,
    /// Time to the upstream's response head before 504.
    pub timeout: Duration,
    /// Keep the client's `Host` header (true) or send the upstream's authority (false).
    pub preserve_host: bool,
    /// Keep client-sent `X-Forwarded-Proto`/`-Host` and append to `X-Forwarded-For` (true), or
    /// overwrite all three (false) because the client is not a trusted proxy.
    pub trust_forwarded_headers: bool,
    /// Forward the validated token as `X-MS-TOKEN-AAD-ACCESS-TOKEN` (EasyAuth's token-store
    /// header) for callees that make on-behalf-of calls. Client-sent copies are always stripped.
    pub forward_token: bool,
    /// The protocol spoken to the upstream (`upstream.protocol`).
    pub protocol: UpstreamProtocol,
}

impl UpstreamConfig {
    /// The `Host` value naming `url`'s authority.
    pub fn host_of(url: &Uri) -> Option<http::HeaderValue> {
        url.authority().and_then(|a| a.as_str().parse().ok())
    }
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

/// The upstream connection pool (the start-only part of `[upstream]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPool {
    /// Time to establish a TCP connection before 502.
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Most HTTP/1.1 upstream connections open at once (`upstream.max_connections`), shared
    /// evenly among the workers; a request finding its worker's share in use waits for one.
    pub max_connections: usize,
}

/// Where signing keys come from (`auth.openid_configuration` or `auth.jwks_uri`).
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
    pub key_source: KeySource,
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
    /// Whether a POST that may carry a form or JSON body is also held to the `PUT`, `PATCH` and
    /// `DELETE` rules of its path: Rails, Laravel, Symfony and Express's `method-override` run
    /// the handler named by a `_method` field in the body, which tokengate never reads.
    pub body_method_override: bool,
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

/// Timings of discovery/JWKS fetches (the `[keys]` section).
#[derive(Debug, Clone)]
pub struct KeyRefreshConfig {
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries held; 0 disables the cache.
    pub max_entries: usize,
    /// Most heap bytes the entries hold (counted exactly: the token, its pre-encoded headers
    /// and the entry itself; an Entra token of ~1.5 KB takes ~4 KiB). The maps' slots (under
    /// 1 MiB at the defaults) are allocated up front and not counted here.
    pub max_bytes: usize,
}

/// Connection limits (`[limits]` except the per-request ones in [`RequestLimits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// A connection with no bytes moving for this long is closed (after any in-flight request).
    pub idle_timeout: Duration,
    /// Threads serving the public listener, each with its own single-threaded runtime
    /// (`limits.workers`); 0 means one per core this process may run on.
    pub workers: usize,
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

    /// Parses TOML text, then applies overrides from `env` (name, value) pairs. The file must
    /// have the callee side (`[auth]`).
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
        let (a, st) = (&self.policy.auth, &self.startup);
        let list = |v: &[String]| {
            if v.is_empty() {
                "any".to_string()
            } else {
                v.join(", ")
            }
        };
        let _ = writeln!(s, "listen        {}", st.listen);
        let _ = writeln!(s, "admin         {}", st.admin);
        let _ = writeln!(
            s,
            "upstream      {} (timeout {:?})",
            self.policy.upstream.url, self.policy.upstream.timeout
        );
        let source = match &a.key_source {
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
        assert_eq!(c.startup.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.startup.admin, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.policy.upstream.timeout, Duration::from_secs(30));
        assert_eq!(c.policy.auth.clock_skew, Duration::from_secs(60));
        assert_eq!(
            c.policy.auth.max_token_lifetime,
            Duration::from_secs(29 * 3600)
        );
        assert_eq!(c.policy.auth.max_token_size, 16384);
        assert_eq!(c.policy.auth.algorithms, vec![Algorithm::Rs256]);
        assert_eq!(
            c.policy.key_refresh.unknown_kid_cooldown,
            Duration::from_secs(10)
        );
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
        assert_eq!(c.policy.auth.audiences, vec!["api://y", "y"]);
        assert_eq!(c.policy.upstream.url.port_u16(), Some(4000));
        assert_eq!(c.startup.limits.max_connections, 7);
        let bad = vec![("TOKENGATE_AUTH__NOPE".to_string(), "1".to_string())];
        let err = Config::from_toml_with_env(MINIMAL, bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn start_only_changes_are_named() {
        let old = Config::from_toml(MINIMAL).unwrap().startup;
        let mut new = old.clone();
        assert!(old.changed(&new).is_empty());
        new.listen = "127.0.0.1:1".parse().unwrap();
        new.limits.max_headers += 1;
        assert_eq!(
            old.changed(&new),
            ["listen.address", "limits (except max_body_bytes)"]
        );
    }

    #[test]
    fn required_keys_are_named() {
        let text = MINIMAL.replace("url = \"http://127.0.0.1:3000\"", "");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("upstream.url is required"), "{err}");
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
            Config::from_toml(&any).unwrap().policy.auth.tenants,
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
        let a = Config::from_toml(&text).unwrap().policy.auth;
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
        assert_eq!(c.policy.auth.rules[0].path.as_str(), "/Admin");
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
