//! The policy builder: every test, bench, example and fuzz seed writes its `proxy.toml` through
//! [`PolicyToml`], so the config shape lives in one place here besides `config/file.rs`.

use std::fmt;

use super::issuer::*;
use crate::config::Config;

/// A `proxy.toml` under construction. [`PolicyToml::new`] starts from the smallest valid policy
/// for a tenant (an upstream and JWKS on a closed port, the dev issuer's v1 and v2 issuers, the
/// dev audience, RS256 and ES256); each method replaces or adds one thing.
#[derive(Debug, Clone)]
pub struct PolicyToml {
    head: Option<String>,
    listen: Option<String>,
    admin: Option<String>,
    upstream: String,
    key_source: (&'static str, String),
    issuers: Vec<String>,
    audiences: Vec<String>,
    algorithms: Vec<String>,
    allowed_applications: Vec<String>,
    allowed_principals: Vec<String>,
    excluded_paths: Vec<String>,
    auth_lines: Vec<String>,
    rules: Vec<String>,
    tail: Vec<String>,
}

impl PolicyToml {
    /// The smallest valid policy for `tenant`'s dev issuers.
    pub fn new(tenant: &str) -> PolicyToml {
        PolicyToml {
            head: None,
            listen: None,
            admin: None,
            upstream: "http://127.0.0.1:1".into(),
            key_source: ("jwks_uri", "http://127.0.0.1:1/keys".into()),
            issuers: vec![v1_issuer(tenant), v2_issuer(tenant)],
            audiences: vec![DEV_AUDIENCE.into()],
            algorithms: vec!["RS256".into(), "ES256".into()],
            allowed_applications: Vec::new(),
            allowed_principals: Vec::new(),
            excluded_paths: Vec::new(),
            auth_lines: Vec::new(),
            rules: Vec::new(),
            tail: Vec::new(),
        }
    }

    /// The smallest valid policy for `issuer`.
    pub fn for_issuer(issuer: &DevIssuer) -> PolicyToml {
        PolicyToml::new(&issuer.tenant)
    }

    /// An Entra-shaped policy with allow-lists and three role rules, for the benches and the
    /// allocation proof: what is measured is exactly what is proved allocation-free.
    pub fn reference(issuer: &DevIssuer) -> PolicyToml {
        PolicyToml::for_issuer(issuer)
            .audiences(&["api://other", DEV_AUDIENCE])
            .allowed_applications(&["33333333-3333-4333-8333-333333333333", DEV_CALLER_APP])
            .allowed_principals(&["44444444-4444-4444-8444-444444444444", DEV_CALLER_OID])
            .excluded_paths(&["/public", "/healthz"])
            .rule("/admin", &[], &["App.Admin"])
            .rule("/api", &["GET", "HEAD"], &["App.Read", "App.Write"])
            .rule("/api/orders", &[], &["Orders.Read"])
    }

    /// `listen.address`.
    pub fn listen(mut self, addr: impl fmt::Display) -> Self {
        self.listen = Some(addr.to_string());
        self
    }

    /// `admin.address`.
    pub fn admin(mut self, addr: impl fmt::Display) -> Self {
        self.admin = Some(addr.to_string());
        self
    }

    /// `upstream.url`.
    pub fn upstream(mut self, url: impl fmt::Display) -> Self {
        self.upstream = url.to_string();
        self
    }

    /// Raw sections written before `[auth]` instead of `[listen]`, `[admin]` and `[upstream]`.
    pub fn head(mut self, toml: &str) -> Self {
        self.head = Some(toml.to_string());
        self
    }

    /// `auth.jwks_uri` (replacing any key source).
    pub fn jwks_uri(mut self, url: impl fmt::Display) -> Self {
        self.key_source = ("jwks_uri", url.to_string());
        self
    }

    /// `auth.openid_configuration` (replacing any key source).
    pub fn discovery(mut self, url: impl fmt::Display) -> Self {
        self.key_source = ("openid_configuration", url.to_string());
        self
    }

    /// `auth.issuers`.
    pub fn issuers(mut self, v: &[&str]) -> Self {
        self.issuers = strings(v);
        self
    }

    /// `auth.audiences`.
    pub fn audiences(mut self, v: &[&str]) -> Self {
        self.audiences = strings(v);
        self
    }

    /// `auth.algorithms`.
    pub fn algorithms(mut self, v: &[&str]) -> Self {
        self.algorithms = strings(v);
        self
    }

    /// `auth.allowed_applications`.
    pub fn allowed_applications(mut self, v: &[&str]) -> Self {
        self.allowed_applications = strings(v);
        self
    }

    /// `auth.allowed_principals`.
    pub fn allowed_principals(mut self, v: &[&str]) -> Self {
        self.allowed_principals = strings(v);
        self
    }

    /// `auth.excluded_paths`.
    pub fn excluded_paths(mut self, v: &[&str]) -> Self {
        self.excluded_paths = strings(v);
        self
    }

    /// One more raw `key = value` line in `[auth]`.
    pub fn auth_line(mut self, line: &str) -> Self {
        self.auth_lines.push(line.to_string());
        self
    }

    /// One more `[[auth.rules]]` (empty `methods`: every method).
    pub fn rule(mut self, path: &str, methods: &[&str], roles: &[&str]) -> Self {
        let mut r = format!("path = \"{path}\"\n");
        if !methods.is_empty() {
            r.push_str(&format!("methods = {}\n", list(&strings(methods))));
        }
        r.push_str(&format!("roles = {}\n", list(&strings(roles))));
        self.rules.push(r);
        self
    }

    /// One more `[[auth.rules]]`, its body written raw.
    pub fn rule_raw(mut self, body: &str) -> Self {
        self.rules.push(format!("{}\n", body.trim_end()));
        self
    }

    /// Raw sections after `[auth]` (`[keys]`, `[cache]`, `[limits]`, `[tls]`, ...).
    pub fn section(mut self, toml: &str) -> Self {
        self.tail.push(toml.to_string());
        self
    }

    /// The TOML text.
    pub fn toml(&self) -> String {
        let mut s = String::new();
        match &self.head {
            Some(head) => {
                s.push_str(head);
                s.push('\n');
            }
            None => {
                if let Some(a) = &self.listen {
                    s.push_str(&format!("[listen]\naddress = \"{a}\"\n"));
                }
                if let Some(a) = &self.admin {
                    s.push_str(&format!("[admin]\naddress = \"{a}\"\n"));
                }
                s.push_str(&format!("[upstream]\nurl = \"{}\"\n", self.upstream));
            }
        }
        s.push_str("[auth]\n");
        s.push_str(&format!(
            "{} = \"{}\"\n",
            self.key_source.0, self.key_source.1
        ));
        s.push_str(&format!("issuers = {}\n", list(&self.issuers)));
        s.push_str(&format!("audiences = {}\n", list(&self.audiences)));
        s.push_str(&format!("algorithms = {}\n", list(&self.algorithms)));
        for (key, v) in [
            ("allowed_applications", &self.allowed_applications),
            ("allowed_principals", &self.allowed_principals),
            ("excluded_paths", &self.excluded_paths),
        ] {
            if !v.is_empty() {
                s.push_str(&format!("{key} = {}\n", list(v)));
            }
        }
        for line in &self.auth_lines {
            s.push_str(line);
            s.push('\n');
        }
        for rule in &self.rules {
            s.push_str("[[auth.rules]]\n");
            s.push_str(rule);
        }
        for t in &self.tail {
            s.push_str(t);
            s.push('\n');
        }
        s
    }

    /// The parsed config; panics if it is not valid (it is test tooling).
    pub fn config(&self) -> Config {
        Config::from_toml(&self.toml()).expect("a valid dev policy")
    }
}

/// [`PolicyToml::reference`] with `head` (the sections before `[auth]`, at least `[upstream]`),
/// the JWKS at `jwks_uri`, and `tail` (the sections after it), as TOML text.
pub fn reference_policy_toml(issuer: &DevIssuer, head: &str, jwks_uri: &str, tail: &str) -> String {
    PolicyToml::reference(issuer)
        .head(head)
        .jwks_uri(jwks_uri)
        .section(tail)
        .toml()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A TOML array of strings (serde_json's string escaping is valid TOML basic-string escaping for
/// everything a policy holds).
fn list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_policy_parses_with_its_rules() {
        let issuer = DevIssuer {
            tenant: DEV_TENANT.into(),
            rsa: SigningKey::ec(),
            ec: SigningKey::ec(),
        };
        let c = PolicyToml::reference(&issuer)
            .listen("127.0.0.1:0")
            .admin("127.0.0.1:0")
            .section("[keys]\nrefresh_interval = \"2s\"")
            .config();
        let a = &c.policy.auth;
        assert_eq!(a.rules.len(), 3);
        assert_eq!(a.rules[1].methods.len(), 2);
        assert_eq!(a.allowed_applications.len(), 2);
        assert_eq!(a.issuers, [v1_issuer(DEV_TENANT), v2_issuer(DEV_TENANT)]);
        assert_eq!(
            c.policy.key_refresh.refresh_interval,
            std::time::Duration::from_secs(2)
        );
    }
}
