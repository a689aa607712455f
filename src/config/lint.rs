//! `tokengate check` lint: configs that parse, but will not do what their author means.
//!
//! # Contract
//! - A [`Warning`] never stops the proxy: `check` prints each as one line starting with
//!   `warning:` on stdout and exits 0 (`--strict` exits 1), and the proxy logs them at start.
//! - Each warning names the keys involved, says what will happen (which tokens will never
//!   validate, who can call) and how to fix it, and carries a stable lint name in brackets so
//!   scripts and reviews can refer to it.
//! - The lint reads only the parsed [`Config`]: no network, so it is safe in CI.

use std::fmt;

use http::Method;

use super::{AuthConfig, Config, KeySource, Mode, Rule, TenantPolicy, TENANT_PLACEHOLDER};
use crate::callee::normalize::Case;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Stable lint name, e.g. `v2-issuer-app-id-uri`.
    pub lint: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "warning: {} [{}]", self.message, self.lint)
    }
}

/// Every warning for `config`, in a stable order.
pub fn lint(config: &Config) -> Vec<Warning> {
    let a = &config.policy.auth;
    let mut out = Vec::new();
    token_versions(a, &mut out);
    anyone_can_call(a, &mut out);
    tenants(a, &mut out);
    rules(a, &mut out);
    anonymous_prefixes(a, &mut out);
    report_mode(a, &mut out);
    out
}

fn warn(out: &mut Vec<Warning>, lint: &'static str, message: String) {
    out.push(Warning { lint, message });
}

/// Token version of an Entra ID issuer (`None` for other IdPs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// An Entra issuer is `https://<host>/<tenant>/` (v1) or `https://<host>/<tenant>/v2.0` (v2),
/// tenant a GUID or `{tenantid}`.
fn entra_version(issuer: &str) -> Option<Version> {
    let rest = issuer.strip_prefix("https://")?;
    let mut parts = rest.split('/');
    let _host = parts.next()?;
    let tenant = parts.next()?;
    if !(super::is_guid(tenant) || tenant == TENANT_PLACEHOLDER) {
        return None;
    }
    match (parts.next(), parts.next()) {
        (Some(""), None) | (None, None) => Some(Version::V1),
        (Some("v2.0"), None) => Some(Version::V2),
        _ => None,
    }
}

/// The tenant an issuer or endpoint URL names: its first path segment when that is a GUID (or
/// `common`, `organizations`, `consumers`, `{tenantid}`, returned as-is).
fn url_tenant(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let segment = rest.split('/').nth(1)?;
    let known = matches!(
        segment,
        "common" | "organizations" | "consumers" | TENANT_PLACEHOLDER
    );
    (super::is_guid(segment) || known).then_some(segment)
}

/// v1 tokens carry the App ID URI as `aud`, v2 tokens the client id (Entra's
/// `accessTokenAcceptedVersion` decides which one an API gets).
fn token_versions(a: &AuthConfig, out: &mut Vec<Warning>) {
    let versions: Vec<Version> = a.issuers.iter().filter_map(|i| entra_version(i)).collect();
    if versions.len() != a.issuers.len() || versions.is_empty() {
        return; // Not (only) Entra ID: no opinion.
    }
    let only_v2 = versions.iter().all(|v| *v == Version::V2);
    let only_v1 = versions.iter().all(|v| *v == Version::V1);
    let lists = std::iter::once(("auth.audiences".to_string(), &a.audiences)).chain(
        a.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.audiences.is_empty())
            .map(|(i, r)| (format!("auth.rules[{i}].audiences"), &r.audiences)),
    );
    for (key, audiences) in lists {
        let uris: Vec<&str> = audiences
            .iter()
            .filter(|x| !super::is_guid(x))
            .map(String::as_str)
            .collect();
        let ids = audiences.len() - uris.len();
        if only_v2 && !uris.is_empty() {
            let never = if ids == 0 {
                "no token will ever validate: "
            } else {
                ""
            };
            warn(
                out,
                "v2-issuer-app-id-uri",
                format!(
                    "{key}: {never}{uris:?} {is} an App ID URI, but auth.issuers accepts only v2 \
                     tokens, and v2 access tokens carry the API's client id (a GUID) as `aud`, so \
                     v2 tokens will never match {it}. Fix: put the API's client id in {key}, or, \
                     if the API issues v1 tokens (accessTokenAcceptedVersion null or 1 in its app \
                     manifest), add the v1 issuer https://sts.windows.net/<tenant>/ to auth.issuers",
                    is = if uris.len() == 1 { "is" } else { "are" },
                    it = if uris.len() == 1 { "it" } else { "them" },
                ),
            );
        }
        if only_v1 && uris.is_empty() {
            warn(
                out,
                "v1-issuer-client-id-audience",
                format!(
                    "{key}: only client ids ({audiences:?}), but auth.issuers accepts only v1 \
                     tokens, which carry the resource the caller asked for, usually the App ID \
                     URI (api://...), as `aud`: such tokens will never validate. Fix: add the \
                     API's App ID URI to {key}, or, if the API issues v2 tokens \
                     (accessTokenAcceptedVersion 2), add the v2 issuer \
                     https://login.microsoftonline.com/<tenant>/v2.0 to auth.issuers"
                ),
            );
        }
    }
}

fn anyone_can_call(a: &AuthConfig, out: &mut Vec<Warning>) {
    let role_rule = a.rules.iter().any(|r| !r.roles.is_empty());
    if a.allowed_applications.is_empty() && a.allowed_principals.is_empty() && !role_rule {
        warn(
            out,
            "any-application",
            "no auth.allowed_applications, no auth.allowed_principals and no rule with roles: \
             any application in the tenant can call (Entra issues tokens for your API to every \
             app unless \"Assignment required\" is on, and it is off by default). Fix: list the \
             callers in allowed_applications (their client ids) or allowed_principals (object \
             ids), or require an app role with [[auth.rules]] roles"
                .to_string(),
        );
    }
}

fn tenants(a: &AuthConfig, out: &mut Vec<Warning>) {
    if a.tenants == TenantPolicy::Any {
        warn(
            out,
            "any-tenant",
            "auth.tenants = [\"*\"]: tokens from every Entra tenant are accepted, including \
             tenants anyone can create for free; only allow-lists and roles stand between them \
             and the callee. Fix: list the tenant ids that may call"
                .to_string(),
        );
    }
    let key_url = a.key_source.url().to_string();
    let Some(key_tenant) = url_tenant(&key_url) else {
        return;
    };
    let which = match &a.key_source {
        KeySource::Discovery(_) => "auth.openid_configuration",
        KeySource::Jwks(_) => "auth.jwks_uri",
    };
    if matches!(key_tenant, "common" | "organizations" | TENANT_PLACEHOLDER) {
        return; // Multi-tenant endpoints publish every tenant's signing keys.
    }
    for iss in &a.issuers {
        let Some(t) = url_tenant(iss) else { continue };
        if t == TENANT_PLACEHOLDER {
            warn(
                out,
                "tenant-mismatch",
                format!(
                    "auth.issuers: {iss:?} accepts every tenant, but {which} is tenant \
                     {key_tenant}'s endpoint, whose keys may not sign other tenants' tokens. \
                     Fix: use the multi-tenant endpoint, e.g. \
                     https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration"
                ),
            );
        } else if !t.eq_ignore_ascii_case(key_tenant) {
            warn(
                out,
                "tenant-mismatch",
                format!(
                    "auth.issuers: {iss:?} is tenant {t}, but {which} is tenant {key_tenant}'s \
                     endpoint: keys and issuer belong to different tenants. Fix: point both at the \
                     same tenant"
                ),
            );
        }
    }
}

fn rules(a: &AuthConfig, out: &mut Vec<Warning>) {
    for (j, r) in a.rules.iter().enumerate() {
        let never_forwarded = |m: &Method| matches!(m.as_str(), "CONNECT" | "TRACE" | "TRACK");
        if !r.methods.is_empty() && r.methods.iter().all(never_forwarded) {
            warn(
                out,
                "rule-unreachable",
                format!(
                    "auth.rules[{j}] ({}): CONNECT, TRACE and TRACK are refused (405) before any \
                     rule is looked at, so this rule never matches",
                    describe(r)
                ),
            );
        }
        for (i, earlier) in a.rules.iter().enumerate().take(j) {
            if !covers(earlier, r) {
                continue;
            }
            if same_scope(earlier, r) {
                warn(
                    out,
                    "rule-duplicate",
                    format!(
                        "auth.rules[{j}] ({}) matches exactly the requests auth.rules[{i}] \
                         matches; every matching rule must be satisfied, so a caller needs a \
                         role from each. Fix: merge them into one rule",
                        describe(r)
                    ),
                );
                continue;
            }
            let ungranted: Vec<&String> = r
                .roles
                .iter()
                .filter(|x| !earlier.roles.is_empty() && !earlier.roles.contains(x))
                .collect();
            if !ungranted.is_empty() {
                warn(
                    out,
                    "rule-shadowed",
                    format!(
                        "auth.rules[{j}] ({}) is inside auth.rules[{i}] ({}): rules only add \
                         requirements (every matching rule must be satisfied, none grants), so \
                         a caller holding only {ungranted:?} is still refused by auth.rules[{i}]. \
                         Fix: if auth.rules[{j}] should let them in, narrow auth.rules[{i}] or add \
                         those roles to it",
                        describe(r),
                        describe(earlier)
                    ),
                );
            }
        }
        for aud in &r.audiences {
            if a.audiences.contains(aud) {
                warn(
                    out,
                    "rule-audience-reserved",
                    format!(
                        "auth.rules[{j}].audiences: {aud:?} is also in auth.audiences, but a \
                         rule's audiences are accepted only on the routes it matches, so tokens \
                         for it are refused everywhere else"
                    ),
                );
            }
        }
    }
    if a.open_audiences.is_empty() {
        warn(
            out,
            "no-open-audience",
            "every entry of auth.audiences is also a rule's audience: outside those rules' \
             routes no token is accepted"
                .to_string(),
        );
    }
}

fn anonymous_prefixes(a: &AuthConfig, out: &mut Vec<Warning>) {
    for p in &a.excluded_paths {
        let covered = |r: &Rule| p.covers(r.path.as_str(), Case::Sensitive);
        let root = p.as_str() == "/";
        if root || (!a.rules.is_empty() && a.rules.iter().all(covered)) {
            let what = if a.rules.is_empty() {
                "every path".to_string()
            } else {
                "every rule".to_string()
            };
            warn(
                out,
                "anonymous-covers-rules",
                format!(
                    "auth.excluded_paths: {:?} covers {what}: every request no rule matches \
                     (other paths under it, other methods) goes through without a token. Fix: \
                     list only the paths that must be anonymous (e.g. /healthz)",
                    p.as_str()
                ),
            );
        }
    }
}

fn report_mode(a: &AuthConfig, out: &mut Vec<Warning>) {
    if a.mode == Mode::Report {
        warn(
            out,
            "report-mode",
            "auth.mode = \"report\": nothing is enforced; refusals are only logged (`would \
             deny`) and counted in tokengate_report_only_denials_total. Switch to \"enforce\" \
             once that counter stays at zero"
                .to_string(),
        );
    }
    for (i, r) in a.rules.iter().enumerate() {
        if r.mode == Mode::Report && a.mode == Mode::Enforce {
            warn(
                out,
                "report-mode",
                format!(
                    "auth.rules[{i}] ({}) is in report mode: it is not enforced",
                    describe(r)
                ),
            );
        }
    }
}

/// Whether every request `inner` matches is also matched by `outer` (a GET rule covers HEAD,
/// as `authorize` applies it).
fn covers(outer: &Rule, inner: &Rule) -> bool {
    let has = |m: &Method| {
        outer.methods.contains(m) || (*m == Method::HEAD && outer.methods.contains(&Method::GET))
    };
    let methods =
        outer.methods.is_empty() || (!inner.methods.is_empty() && inner.methods.iter().all(has));
    methods && outer.path.covers(inner.path.as_str(), Case::Insensitive)
}

fn same_scope(a: &Rule, b: &Rule) -> bool {
    covers(a, b) && covers(b, a)
}

fn describe(r: &Rule) -> String {
    if r.methods.is_empty() {
        r.path.as_str().to_string()
    } else {
        let m: Vec<&str> = r.methods.iter().map(|m| m.as_str()).collect();
        format!("{} {}", m.join(","), r.path.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
    const V1: &str = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";
    const ID: &str = "3f0d6a4e-0000-4000-8000-000000000001";

    fn lints(issuers: &[&str], audiences: &[&str], extra: &str) -> Vec<&'static str> {
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[auth]\n\
             openid_configuration = \"https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration\"\n\
             issuers = {issuers:?}\naudiences = {audiences:?}\n\
             allowed_applications = [\"x\"]\n{extra}"
        );
        let c = Config::from_toml(&text).unwrap();
        lint(&c).into_iter().map(|w| w.lint).collect()
    }

    #[test]
    fn token_version_and_audience_shape_must_agree() {
        assert_eq!(lints(&[V2], &["api://x"], ""), ["v2-issuer-app-id-uri"]);
        assert_eq!(lints(&[V2], &["api://x", ID], ""), ["v2-issuer-app-id-uri"]);
        assert!(lints(&[V2], &[ID], "").is_empty());
        assert!(lints(&[V1, V2], &["api://x", ID], "").is_empty());
        assert!(lints(&[V1], &["api://x"], "").is_empty());
        assert_eq!(lints(&[V1], &[ID], ""), ["v1-issuer-client-id-audience"]);
        assert!(lints(&["https://idp.example/"], &["api://x"], "").is_empty());
    }

    #[test]
    fn entra_issuers_are_recognised() {
        assert_eq!(entra_version(V1), Some(Version::V1));
        assert_eq!(entra_version(V2), Some(Version::V2));
        let templ = "https://login.microsoftonline.us/{tenantid}/v2.0";
        assert_eq!(entra_version(templ), Some(Version::V2));
        assert_eq!(entra_version("https://accounts.google.com"), None);
    }
}
