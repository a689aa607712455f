//! Authorization: who may call, and which roles each path and method needs.
//!
//! # Contract
//! Evaluated on every request, cached token or not, against the snapshot the request loaded.
//! A rule *matches* when its path covers the request path (case-insensitively, whole segments)
//! and its methods include the request method. Considering only rules in enforce mode:
//! 1. audience: every matching rule with `audiences` must find one of them in the token's `aud`;
//!    when no matching rule has `audiences`, `aud` must hold one of `auth.audiences` that no rule
//!    reserves (a rule's audiences are accepted only where it matches) — else 401
//!    `invalid_audience`;
//! 2. `auth.tenants` (when configured) must contain the caller's `tid` — else 403
//!    `tenant_not_allowed`;
//! 3. `allowed_applications` (when non-empty) must contain the caller's `appid`/`azp`;
//! 4. `allowed_principals` (when non-empty) must contain the caller's `oid`;
//! 5. every matching rule with `roles` must find one of them in the token's `roles` claim.
//!
//! A `GET` rule covers `HEAD` too: Flask, Express, Django, Spring and Go run the GET handler for a
//! HEAD request. Before any of that, [`screen_method`] refuses methods no framework reads the
//! same way: a spelling with a lower-case letter (Go compares methods as sent; Flask, Django,
//! Express and ASP.NET Core fold case, so `post` is POST to some and an unknown method to others)
//! is 400 `invalid_method`, on every method, standard or extension; `CONNECT` (re-targeted by the
//! client after we authorized its path) and `TRACE`/`TRACK` (echo the request's headers) are 405.
//! What passes is upper-case, so the exact comparison with the upper-cased rule methods is the
//! same comparison every framework makes. [`screen_override`] refuses a `_method` query
//! parameter (400 `method_override`), which Laravel, Symfony and Express's `method-override`
//! dispatch on; the header spellings are stripped by `rewrite`. The body spelling cannot be
//! screened without reading the body, so [`dispatched_as`] holds a POST that may carry a form or
//! JSON body (`auth.body_method_override`, on by default) to the rules of every method a
//! framework could dispatch it as: POST, PUT, PATCH and DELETE. It is anonymous only if all four
//! are, and authorized only if all four are.
//!
//! [`report`] evaluates the same with every rule, for `mode = "report"` rules: what it refuses
//! and [`authorize`] allows is forwarded and only reported.
//!
//! A path is anonymous only when an `excluded_paths` prefix covers it with exact case *and* no
//! rule applies to it: an anonymous prefix never lets a request escape a rule.
//! Nothing here allocates.
//!
//! Why this file is long: about half of it is the tests of the rules' matching contract.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method};

use crate::config::{AuthConfig, Mode, Rule};
use crate::normalize::Case;
use crate::reject::Rejection;
use crate::validate::cache::Identity;

/// Whether a request needs a token at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Under an excluded prefix and no rule: forwarded without identity.
    Anonymous,
    /// Everything else.
    Authenticated,
}

/// Refuses a method that frameworks would read differently, or that we never forward.
pub fn screen_method(method: &Method) -> Result<(), Rejection> {
    let m = method.as_str().as_bytes();
    if m.iter().any(u8::is_ascii_lowercase) {
        return Err(Rejection::InvalidMethod);
    }
    if matches!(m, b"CONNECT" | b"TRACE" | b"TRACK") {
        return Err(Rejection::MethodNotAllowed);
    }
    Ok(())
}

/// Refuses a query naming a `_method` parameter, in any letter case or percent-encoding.
/// Allocation-free: each parameter name is decoded on the fly.
pub fn screen_override(query: Option<&str>) -> Result<(), Rejection> {
    const NAME: &[u8] = b"_method";
    let Some(query) = query else {
        return Ok(());
    };
    for pair in query.split(['&', ';']) {
        let name = pair.split('=').next().unwrap_or("").as_bytes();
        let mut decoded = [0u8; 7];
        let (mut i, mut n) = (0, 0);
        while i < name.len() && n <= NAME.len() {
            let mut b = name[i];
            i += 1;
            if b == b'%' && i + 2 <= name.len() {
                let hex = std::str::from_utf8(&name[i..i + 2]).ok();
                if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    b = v;
                    i += 2;
                }
            }
            if n < NAME.len() {
                decoded[n] = b;
            }
            n += 1;
        }
        if n == NAME.len() && i == name.len() && decoded.eq_ignore_ascii_case(NAME) {
            return Err(Rejection::MethodOverride);
        }
    }
    Ok(())
}

/// The methods a body `_method` field can turn a POST into (Rack::MethodOverride's list).
static BODY_OVERRIDES: [Method; 3] = [Method::PUT, Method::PATCH, Method::DELETE];

/// The methods besides `method` that the callee may run this request as. Rack reads `_method`
/// from a POST with no `Content-Type` or a form one; Laravel also from JSON. `Content-Length: 0`
/// is the only proof of an empty body a proxy can read from the head (an HTTP/2 request may
/// send DATA without one), so anything else is assumed to have a body.
pub fn dispatched_as(auth: &AuthConfig, method: &Method, headers: &HeaderMap) -> &'static [Method] {
    if !auth.body_method_override || method != Method::POST {
        return &[];
    }
    if headers
        .get(CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() == b"0")
    {
        return &[];
    }
    let parsed = match headers.get(CONTENT_TYPE) {
        None => true,
        Some(v) => {
            let v = v.as_bytes();
            let essence = v.split(|&b| b == b';').next().unwrap_or(v).trim_ascii();
            let is = |t: &[u8]| essence.eq_ignore_ascii_case(t);
            let subtype = essence.rsplit(|&b| b == b'+').next().unwrap_or(b"");
            is(b"application/x-www-form-urlencoded")
                || is(b"multipart/form-data")
                || is(b"application/json")
                || (essence.contains(&b'+') && subtype.eq_ignore_ascii_case(b"json"))
        }
    };
    if parsed {
        &BODY_OVERRIDES
    } else {
        &[]
    }
}

/// Decides whether `path` (normalized) with `method` may go through without a token.
pub fn access(auth: &AuthConfig, path: &str, method: &Method) -> Access {
    let excluded = auth
        .excluded_paths
        .iter()
        .any(|p| p.covers(path, Case::Sensitive));
    if excluded && !auth.rules.iter().any(|r| rule_applies(r, path, method)) {
        Access::Anonymous
    } else {
        Access::Authenticated
    }
}

/// Checks route audiences, tenants, allow-lists and enforced rules for an authenticated caller.
pub fn authorize(
    auth: &AuthConfig,
    subject: &Identity,
    path: &str,
    method: &Method,
) -> Result<(), Rejection> {
    check(auth, subject, path, method, false)
}

/// What enforcing every rule, report-mode ones included, would refuse. The pipeline calls it
/// only after [`authorize`] allowed the request, so a refusal here is a report-only one.
pub fn report(
    auth: &AuthConfig,
    subject: &Identity,
    path: &str,
    method: &Method,
) -> Result<(), Rejection> {
    check(auth, subject, path, method, true)
}

/// Whether some rule in report mode matches the request (only then can [`report`] differ from
/// [`authorize`]).
pub fn has_report_rule(auth: &AuthConfig, path: &str, method: &Method) -> bool {
    auth.rules
        .iter()
        .any(|r| r.mode == Mode::Report && rule_applies(r, path, method))
}

fn check(
    auth: &AuthConfig,
    subject: &Identity,
    path: &str,
    method: &Method,
    with_report_rules: bool,
) -> Result<(), Rejection> {
    let counted =
        |r: &Rule| (with_report_rules || r.mode == Mode::Enforce) && rule_applies(r, path, method);
    let mut route_audiences = false;
    for rule in auth.rules.iter().filter(|r| !r.audiences.is_empty()) {
        if counted(rule) {
            route_audiences = true;
            if !subject.has_any_audience(&rule.audiences) {
                return Err(Rejection::InvalidAudience);
            }
        }
    }
    if !route_audiences && !subject.has_any_audience(&auth.open_audiences) {
        return Err(Rejection::InvalidAudience);
    }
    if !auth.tenants.allows(subject.tenant_id()) {
        return Err(Rejection::TenantNotAllowed);
    }
    if !auth.allowed_applications.is_empty() {
        let app = subject
            .application()
            .ok_or(Rejection::ApplicationNotAllowed)?;
        if !auth.allowed_applications.iter().any(|a| a == app) {
            return Err(Rejection::ApplicationNotAllowed);
        }
    }
    if !auth.allowed_principals.is_empty() {
        let oid = subject.object_id().ok_or(Rejection::PrincipalNotAllowed)?;
        if !auth.allowed_principals.iter().any(|p| p == oid) {
            return Err(Rejection::PrincipalNotAllowed);
        }
    }
    for rule in &auth.rules {
        if counted(rule) && !rule.roles.is_empty() && !subject.has_any_role(&rule.roles) {
            return Err(Rejection::MissingRole);
        }
    }
    Ok(())
}

fn rule_applies(rule: &Rule, path: &str, method: &Method) -> bool {
    rule.path.covers(path, Case::Insensitive)
        && (rule.methods.is_empty()
            || rule
                .methods
                .iter()
                .any(|m| m == method || (*m == Method::GET && method == Method::HEAD)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_that_may_carry_a_parsed_body_may_run_as_put_patch_or_delete() {
        let mut a = auth("");
        let post = |ct: Option<&str>, cl: Option<&str>, a: &AuthConfig| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(CONTENT_TYPE, ct.parse().unwrap());
            }
            if let Some(cl) = cl {
                h.insert(CONTENT_LENGTH, cl.parse().unwrap());
            }
            dispatched_as(a, &Method::POST, &h).len()
        };
        for ct in [
            None,
            Some("application/x-www-form-urlencoded"),
            Some("MULTIPART/FORM-DATA; boundary=x"),
            Some("application/json;charset=utf-8"),
            Some("application/vnd.api+json"),
        ] {
            assert_eq!(post(ct, None, &a), 3, "{ct:?}");
            assert_eq!(post(ct, Some("12"), &a), 3, "{ct:?}");
            assert_eq!(post(ct, Some("0"), &a), 0, "{ct:?}");
        }
        for ct in ["text/plain", "application/octet-stream", "application/grpc"] {
            assert_eq!(post(Some(ct), None, &a), 0, "{ct}");
        }
        let form = HeaderMap::new();
        assert!(dispatched_as(&a, &Method::PUT, &form).is_empty());
        a.body_method_override = false;
        assert_eq!(post(None, None, &a), 0);
    }
    use crate::config::Config;

    struct Caller {
        app: Option<&'static str>,
        oid: Option<&'static str>,
        roles: &'static [&'static str],
    }

    impl From<Caller> for Identity {
        fn from(c: Caller) -> Identity {
            Identity::new(c.app, c.oid, None, &["a"], c.roles)
        }
    }

    fn auth(extra: &str) -> AuthConfig {
        let text = format!(
            r#"[upstream]
url = "http://127.0.0.1:1"
[auth]
jwks_uri = "http://127.0.0.1:1/k"
issuers = ["i"]
audiences = ["a"]
{extra}"#
        );
        Config::from_toml(&text).unwrap().policy.auth
    }

    const RULES: &str = r#"excluded_paths = ["/public", "/healthz"]
[[auth.rules]]
path = "/admin"
methods = ["POST", "delete"]
roles = ["App.Admin"]
[[auth.rules]]
path = "/public/secret"
roles = ["App.Secret"]
"#;

    #[test]
    fn rules_match_segment_prefix_method_and_case() {
        let a = auth(RULES);
        let nobody = Identity::from(Caller {
            app: Some("x"),
            oid: Some("o"),
            roles: &[],
        });
        let admin = Identity::from(Caller {
            app: Some("x"),
            oid: Some("o"),
            roles: &["App.Admin"],
        });
        let post = Method::POST;
        assert_eq!(
            authorize(&a, &nobody, "/admin", &post),
            Err(Rejection::MissingRole)
        );
        assert_eq!(
            authorize(&a, &nobody, "/ADMIN/x", &post),
            Err(Rejection::MissingRole)
        );
        assert_eq!(
            authorize(&a, &nobody, "/admin", &Method::DELETE),
            Err(Rejection::MissingRole)
        );
        assert_eq!(authorize(&a, &nobody, "/admin", &Method::GET), Ok(()));
        assert_eq!(authorize(&a, &nobody, "/administrator", &post), Ok(()));
        assert_eq!(authorize(&a, &admin, "/admin/x", &post), Ok(()));
    }

    #[test]
    fn method_override_parameters_are_refused() {
        for q in [
            "_method=DELETE",
            "a=1&_method=DELETE",
            "_METHOD=delete",
            "%5Fmethod=DELETE",
            "%5f%6Dethod=x",
            "_method",
            "x=1;_method=PUT",
        ] {
            assert_eq!(
                screen_override(Some(q)),
                Err(Rejection::MethodOverride),
                "{q}"
            );
        }
        for q in [
            "method=DELETE",
            "_methods=1",
            "x_method=1",
            "a=_method",
            "_metho",
            "",
        ] {
            assert_eq!(screen_override(Some(q)), Ok(()), "{q}");
        }
        assert_eq!(screen_override(None), Ok(()));
    }

    /// A caller with chosen audiences, tenant and roles.
    struct Token {
        aud: &'static [&'static str],
        tid: Option<&'static str>,
        roles: &'static [&'static str],
    }

    impl From<Token> for Identity {
        fn from(t: Token) -> Identity {
            Identity::new(Some("app"), Some("oid"), t.tid, t.aud, t.roles)
        }
    }

    #[test]
    fn report_rules_are_enforced_only_by_report() {
        let a = auth(
            "[[auth.rules]]\npath = \"/beta\"\naudiences = [\"b\"]\nroles = [\"Beta\"]\nmode = \"report\"\n",
        );
        let plain = Identity::from(Token {
            aud: &["a"],
            tid: None,
            roles: &[],
        });
        let beta = Identity::from(Token {
            aud: &["b"],
            tid: None,
            roles: &["Beta"],
        });
        let get = Method::GET;
        // Enforced: the report rule does not exist, so its audience is not accepted yet...
        assert_eq!(authorize(&a, &plain, "/beta", &get), Ok(()));
        assert_eq!(
            authorize(&a, &beta, "/beta", &get),
            Err(Rejection::InvalidAudience)
        );
        // ...and reported: what enforcing it would do.
        assert!(has_report_rule(&a, "/beta/x", &get));
        assert!(!has_report_rule(&a, "/other", &get));
        assert_eq!(
            report(&a, &plain, "/beta", &get),
            Err(Rejection::InvalidAudience)
        );
        assert_eq!(report(&a, &beta, "/beta", &get), Ok(()));
        // Its audience is reserved to its route even while only reported.
        assert_eq!(
            authorize(&a, &beta, "/other", &get),
            Err(Rejection::InvalidAudience)
        );
    }

    #[test]
    fn tenants_are_checked_after_the_audience() {
        let t = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let a = auth(&format!("tenants = [\"{t}\"]\n"));
        let get = Method::GET;
        let ours = Identity::from(Token {
            aud: &["a"],
            tid: Some("72f988bf-86f1-41af-91ab-2d7cd011db47"),
            roles: &[],
        });
        let theirs = Identity::from(Token {
            aud: &["a"],
            tid: Some("00000000-0000-4000-8000-000000000001"),
            roles: &[],
        });
        let none = Identity::from(Token {
            aud: &["a"],
            tid: None,
            roles: &[],
        });
        let wrong_aud = Identity::from(Token {
            aud: &["x"],
            tid: Some("00000000-0000-4000-8000-000000000001"),
            roles: &[],
        });
        assert_eq!(authorize(&a, &ours, "/", &get), Ok(()));
        assert_eq!(
            authorize(&a, &theirs, "/", &get),
            Err(Rejection::TenantNotAllowed)
        );
        assert_eq!(
            authorize(&a, &none, "/", &get),
            Err(Rejection::TenantNotAllowed)
        );
        assert_eq!(
            authorize(&a, &wrong_aud, "/", &get),
            Err(Rejection::InvalidAudience)
        );
    }

    #[test]
    fn a_get_rule_covers_head() {
        let a = auth("[[auth.rules]]\npath = \"/reports\"\nmethods = [\"GET\"]\nroles = [\"R\"]\n");
        let nobody = Identity::from(Caller {
            app: None,
            oid: None,
            roles: &[],
        });
        for m in [Method::GET, Method::HEAD] {
            assert_eq!(
                authorize(&a, &nobody, "/reports", &m),
                Err(Rejection::MissingRole),
                "{m}"
            );
        }
        assert_eq!(authorize(&a, &nobody, "/reports", &Method::POST), Ok(()));
    }

    #[test]
    fn methods_with_one_reading_pass_the_screen() {
        let m = |s: &str| Method::from_bytes(s.as_bytes()).unwrap();
        for ok in [
            "GET", "HEAD", "POST", "DELETE", "PATCH", "OPTIONS", "PURGE", "M-SEARCH",
        ] {
            assert_eq!(screen_method(&m(ok)), Ok(()), "{ok}");
        }
        for bad in ["post", "Delete", "gET", "purge", "Purge", "connect"] {
            assert_eq!(
                screen_method(&m(bad)),
                Err(Rejection::InvalidMethod),
                "{bad}"
            );
        }
        for refused in ["CONNECT", "TRACE", "TRACK"] {
            assert_eq!(
                screen_method(&m(refused)),
                Err(Rejection::MethodNotAllowed),
                "{refused}"
            );
        }
    }

    #[test]
    fn anonymous_prefixes_never_shadow_rules() {
        let a = auth(RULES);
        assert_eq!(access(&a, "/public/page", &Method::GET), Access::Anonymous);
        assert_eq!(
            access(&a, "/public/secret", &Method::GET),
            Access::Authenticated
        );
        assert_eq!(
            access(&a, "/public/SECRET/x", &Method::GET),
            Access::Authenticated
        );
        assert_eq!(
            access(&a, "/PUBLIC/page", &Method::GET),
            Access::Authenticated
        );
        assert_eq!(
            access(&a, "/publicity", &Method::GET),
            Access::Authenticated
        );
        assert_eq!(access(&a, "/healthz", &Method::GET), Access::Anonymous);
    }

    #[test]
    fn allow_lists_need_both_when_both_set() {
        let a = auth("allowed_applications = [\"app-1\"]\nallowed_principals = [\"oid-1\"]\n");
        let ok = Identity::from(Caller {
            app: Some("app-1"),
            oid: Some("oid-1"),
            roles: &[],
        });
        let wrong_app = Identity::from(Caller {
            app: Some("app-2"),
            oid: Some("oid-1"),
            roles: &[],
        });
        let wrong_oid = Identity::from(Caller {
            app: Some("app-1"),
            oid: Some("oid-2"),
            roles: &[],
        });
        let no_app = Identity::from(Caller {
            app: None,
            oid: Some("oid-1"),
            roles: &[],
        });
        let m = Method::GET;
        assert_eq!(authorize(&a, &ok, "/", &m), Ok(()));
        assert_eq!(
            authorize(&a, &wrong_app, "/", &m),
            Err(Rejection::ApplicationNotAllowed)
        );
        assert_eq!(
            authorize(&a, &wrong_oid, "/", &m),
            Err(Rejection::PrincipalNotAllowed)
        );
        assert_eq!(
            authorize(&a, &no_app, "/", &m),
            Err(Rejection::ApplicationNotAllowed)
        );
    }
}
