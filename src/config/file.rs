//! The file's shape: `proxy.toml` as serde structs (`deny_unknown_fields`, so a misspelt key is an
//! error naming the key and its line), and the checks that turn it into a [`Config`].
//!
//! Every optional key's default is written once, in its section's `Default` impl (which serde uses
//! through `#[serde(default)]`), with a comment; `proxy.toml` documents the same values. Required
//! keys are `Option`s here so that the checks can name them.
//!
//! Why this file is long: one serde struct, one `Default` and one check per `proxy.toml` section;
//! they read best side by side with the keys they mirror.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use http::Uri;
use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::{
    is_guid, AuthConfig, CacheConfig, ClientAuth, Config, ConfigError, KeyRefreshConfig, KeySource,
    LimitsConfig, ListenTls, Mode, Policy, RequestLimits, Rule, SidecarConfig, Startup,
    TenantPolicy, UpstreamConfig, UpstreamPool, UpstreamProtocol, TENANT_PLACEHOLDER,
};
use crate::caller;
use crate::caller::config::{AzureEnv, CallerConfig, EgressFile, EndpointFile, IdentityFile};
use crate::normalize::Prefix;
use crate::validate::Algorithm;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    /// The callee side's public listener; refused without `[auth]`.
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
#[serde(default, deny_unknown_fields)]
struct TlsFile {
    /// PEM file of extra CA certificates. Default: none (system CAs only).
    ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ListenFile {
    address: String,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    tls_client_ca_file: Option<String>,
    tls_client_auth: Option<ClientAuth>,
}

impl Default for ListenFile {
    fn default() -> Self {
        ListenFile {
            address: "0.0.0.0:8080".into(),
            // PEM certificate chain and key; both or neither (none: plain HTTP).
            tls_cert_file: None,
            tls_key_file: None,
            // PEM CAs client certificates must chain to (none: no client certificates asked).
            tls_client_ca_file: None,
            // "optional" (with tls_client_ca_file) or "required".
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

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AdminFile {
    address: String,
}

impl Default for AdminFile {
    fn default() -> Self {
        AdminFile {
            address: "127.0.0.1:9090".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct UpstreamFile {
    url: Option<String>,
    timeout: Dur,
    connect_timeout: Dur,
    pool_idle_timeout: Dur,
    max_connections: usize,
    preserve_host: bool,
    trust_forwarded_headers: bool,
    forward_token: bool,
    protocol: UpstreamProtocol,
}

impl Default for UpstreamFile {
    fn default() -> Self {
        UpstreamFile {
            url: None, // required
            timeout: secs(30),
            connect_timeout: secs(5),
            pool_idle_timeout: secs(90),
            max_connections: 128,
            preserve_host: true,
            trust_forwarded_headers: false,
            forward_token: false,
            protocol: UpstreamProtocol::Http1,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AuthFile {
    openid_configuration: Option<String>,
    jwks_uri: Option<String>,
    issuers: Vec<String>,
    tenants: Option<Vec<String>>,
    audiences: Vec<String>,
    mode: Option<String>,
    algorithms: Vec<String>,
    allowed_applications: Vec<String>,
    allowed_principals: Vec<String>,
    excluded_paths: Vec<String>,
    clock_skew: Dur,
    max_token_lifetime: Dur,
    max_token_size: usize,
    body_method_override: bool,
    rules: Vec<RuleFile>,
}

impl Default for AuthFile {
    fn default() -> Self {
        AuthFile {
            // Exactly one of these two is required.
            openid_configuration: None,
            jwks_uri: None,
            // Required, non-empty.
            issuers: Vec::new(),
            // None; required (`["*"]` for any) when an issuer is a `{tenantid}` template.
            tenants: None,
            audiences: Vec::new(),
            // None: "enforce".
            mode: None,
            algorithms: vec!["RS256".into()],
            // Empty: any application, any principal.
            allowed_applications: Vec::new(),
            allowed_principals: Vec::new(),
            // Empty: every path needs a token.
            excluded_paths: Vec::new(),
            clock_skew: secs(60),
            // 29 h: Entra's managed-identity tokens carry `exp - iat` = 24 h 5 min and its
            // continuous-access-evaluation tokens live up to 28 h; nothing legitimate lives longer.
            max_token_lifetime: secs(29 * 3600),
            max_token_size: 16 * 1024,
            // On: fail closed for callees that dispatch on a `_method` body field.
            body_method_override: true,
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    path: String,
    /// Default empty (every method).
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
#[serde(default, deny_unknown_fields)]
struct KeysFile {
    refresh_interval: Dur,
    unknown_kid_cooldown: Dur,
    unknown_kid_wait: Dur,
    fetch_timeout: Dur,
    max_backoff: Dur,
}

impl Default for KeysFile {
    fn default() -> Self {
        KeysFile {
            refresh_interval: secs(3600),
            unknown_kid_cooldown: secs(10),
            unknown_kid_wait: secs(2),
            fetch_timeout: secs(5),
            max_backoff: secs(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CacheFile {
    max_entries: usize,
    max_bytes: usize,
}

impl Default for CacheFile {
    fn default() -> Self {
        CacheFile {
            max_entries: 10_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct LimitsFile {
    header_read_timeout: Dur,
    shutdown_grace: Dur,
    max_concurrent_streams: u32,
    max_header_bytes: usize,
    max_connections: usize,
    max_headers: usize,
    max_body_bytes: u64,
    idle_timeout: Dur,
    upgrade_idle_timeout: Dur,
    workers: usize,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            header_read_timeout: secs(10),
            shutdown_grace: secs(30),
            max_concurrent_streams: 100,
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            max_headers: 100,
            // 0: no limit.
            max_body_bytes: 0,
            idle_timeout: secs(60),
            upgrade_idle_timeout: secs(300),
            // 0: one per core this process may run on.
            workers: 0,
        }
    }
}

const fn secs(n: u64) -> Dur {
    Dur(Duration::from_secs(n))
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
    pub(super) fn check(self, azure: &AzureEnv) -> Result<SidecarConfig, ConfigError> {
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
                let (limits, _, extra_ca_certs) = shared_settings(self.limits, self.tls)?;
                check_clashes(None, admin, Some(&caller))?;
                return Ok(SidecarConfig {
                    callee: None,
                    caller: Some(caller),
                    admin,
                    limits,
                    extra_ca_certs,
                });
            }
        };
        let listen_file = self.listen.unwrap_or_default();
        let listen = parse_addr("listen.address", &listen_file.address)?;
        let listen_tls = listen_file.tls()?;
        check_clashes(Some(listen), admin, caller.as_ref())?;
        if listen == admin && listen.port() != 0 {
            return Err(ConfigError::new(
                "admin.address must differ from listen.address: admin endpoints are never served \
                 on the public listener",
            ));
        }
        let (upstream, upstream_pool) = upstream.check()?;
        let auth = auth.check()?;
        let k = self.keys;
        let key_refresh = KeyRefreshConfig {
            refresh_interval: k.refresh_interval.0,
            unknown_kid_cooldown: k.unknown_kid_cooldown.0,
            unknown_kid_wait: k.unknown_kid_wait.0,
            fetch_timeout: k.fetch_timeout.0,
            max_backoff: k.max_backoff.0,
        };
        if key_refresh.refresh_interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "keys.refresh_interval must be at least 1s",
            ));
        }
        if key_refresh.fetch_timeout.is_zero() || key_refresh.max_backoff.is_zero() {
            return Err(ConfigError::new(
                "keys.fetch_timeout and keys.max_backoff must be > 0",
            ));
        }
        let (limits, request_limits, extra_ca_certs) = shared_settings(self.limits, self.tls)?;
        let config = Config {
            startup: Startup {
                listen,
                listen_tls,
                admin,
                upstream_pool,
                cache: CacheConfig {
                    max_entries: self.cache.max_entries,
                    max_bytes: self.cache.max_bytes,
                },
                limits: limits.clone(),
                extra_ca_certs: extra_ca_certs.clone(),
            },
            policy: Policy {
                upstream,
                auth,
                key_refresh,
                request_limits,
            },
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

/// `[limits]` and `[tls]`, which both sides' listeners and clients use.
fn shared_settings(
    l: LimitsFile,
    tls: TlsFile,
) -> Result<
    (
        LimitsConfig,
        RequestLimits,
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
        idle_timeout: l.idle_timeout.0,
        workers: l.workers,
    };
    let request_limits = RequestLimits {
        max_body_bytes: (l.max_body_bytes > 0).then_some(l.max_body_bytes),
        upgrade_idle_timeout: l.upgrade_idle_timeout.0,
    };
    Ok((limits, request_limits, extra_ca_certs))
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
    fn check(self) -> Result<(UpstreamConfig, UpstreamPool), ConfigError> {
        let Some(raw_url) = self.url else {
            return Err(ConfigError::new("upstream.url is required"));
        };
        let url = parse_http_url("upstream.url", &raw_url)?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(ConfigError::new(format!(
                "upstream.url: {:?} must not have a path or query: the request's path is forwarded \
                 as is",
                raw_url
            )));
        }
        if self.timeout.0.is_zero() || self.connect_timeout.0.is_zero() {
            return Err(ConfigError::new(
                "upstream.timeout and upstream.connect_timeout must be > 0",
            ));
        }
        let upstream = UpstreamConfig {
            host: UpstreamConfig::host_of(&url),
            url,
            timeout: self.timeout.0,
            preserve_host: self.preserve_host,
            trust_forwarded_headers: self.trust_forwarded_headers,
            forward_token: self.forward_token,
            protocol: self.protocol,
        };
        if self.max_connections == 0 {
            return Err(ConfigError::new("upstream.max_connections must be > 0"));
        }
        let pool = UpstreamPool {
            connect_timeout: self.connect_timeout.0,
            pool_idle_timeout: self.pool_idle_timeout.0,
            max_connections: self.max_connections,
        };
        Ok((upstream, pool))
    }
}

impl AuthFile {
    fn check(self) -> Result<AuthConfig, ConfigError> {
        let key_source = match (self.openid_configuration, self.jwks_uri) {
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
            key_source,
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
            body_method_override: self.body_method_override,
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
