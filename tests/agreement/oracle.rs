//! The property, checked on every response:
//! *a protected handler ran only if tokengate authorized that request under that handler's rule,
//! and the identity the app read is the token's or none.*
//!
//! Concretely, when an app reports that a handler ran:
//! 1. if the handler is protected, a valid token the request carried has the role the handler's
//!    rule asks for (or any valid token, where only authentication is required), *and* the app
//!    read that token's `X-MS-CLIENT-PRINCIPAL-ID`: tokengate authenticated this very request;
//! 2. every identity header the app read (`X-MS-CLIENT-PRINCIPAL*`, `X-MS-TOKEN-*`, however the
//!    framework spells or folds the name) holds exactly what tokengate sets for a valid token the
//!    request carried: a forged value, or a forged one joined to the real one, is a disagreement;
//!    with no valid token there is none at all;
//! 3. no value the app read contains [`FORGED`]: no client-sent identity, front-end or URL
//!    header survived;
//! 4. the app never sees `Authorization`.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::gen::{TokenKind, FORGED};

/// What a handler needs, from the tokengate config the suite runs (see `policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    Token,
    Role(&'static str),
}

/// The route ids every app reports, and what each needs.
pub const ROUTES: &[(&str, Needs)] = &[
    ("admin", Needs::Role("App.Admin")),
    ("batch", Needs::Role("App.Batch")),
    ("odata", Needs::Token),
    ("item_delete", Needs::Role("App.Delete")),
    ("item_get", Needs::Token),
    ("report", Needs::Role("App.Read")),
    ("public", Needs::Nothing),
    ("public_me", Needs::Nothing),
    ("public_secret", Needs::Role("App.Secret")),
    ("me", Needs::Token),
];

/// The `[auth]` rules that give [`ROUTES`] their needs.
pub const POLICY: &str = r#"excluded_paths = ["/public"]
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
[[auth.rules]]
path = "/odata/$batch"
methods = ["POST"]
roles = ["App.Batch"]
[[auth.rules]]
path = "/items"
methods = ["DELETE"]
roles = ["App.Delete"]
[[auth.rules]]
path = "/reports"
methods = ["GET"]
roles = ["App.Read"]
[[auth.rules]]
path = "/public/secret"
methods = ["POST"]
roles = ["App.Secret"]
"#;

/// What an app reported about one request.
#[derive(Debug, Clone)]
pub struct Report {
    pub route: String,
    pub method: String,
    pub path: String,
    /// Every header (or CGI variable) as the framework lists it.
    pub headers: Vec<(String, String)>,
    /// Named headers read through the framework's accessor.
    pub api: Vec<(String, Option<String>)>,
}

impl Report {
    /// Decodes the `X-Agree-Report` header.
    pub fn decode(value: &str) -> Result<Report, String> {
        let bytes = STANDARD.decode(value.trim()).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let headers = v["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let api = v["api"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map(String::from)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Report {
            route: text("route"),
            method: text("method"),
            path: text("path"),
            headers,
            api,
        })
    }

    /// The identity-bearing values, keyed by the folded name (`X_MS_CLIENT_PRINCIPAL_ID`).
    pub fn identity(&self) -> Vec<(String, &str)> {
        let listed = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        let read = self
            .api
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), v.as_deref()?)));
        listed
            .chain(read)
            .filter_map(|(n, v)| {
                let folded = fold(n);
                is_identity(&folded).then_some((folded, v))
            })
            .collect()
    }

    /// `X-MS-CLIENT-PRINCIPAL-ID` read through the framework's accessor.
    pub fn principal_id(&self) -> Option<&str> {
        self.api
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("X-MS-CLIENT-PRINCIPAL-ID"))
            .and_then(|(_, v)| v.as_deref())
    }
}

/// A header name as a CGI-style server folds it: upper case, `-` as `_`, no `HTTP_` prefix.
pub fn fold(name: &str) -> String {
    let up = name.to_ascii_uppercase().replace('-', "_");
    up.strip_prefix("HTTP_").map(String::from).unwrap_or(up)
}

fn is_identity(folded: &str) -> bool {
    folded.starts_with("X_MS_CLIENT_PRINCIPAL")
        || folded.starts_with("X_MS_TOKEN_")
        || folded == "AUTHORIZATION"
}

/// What tokengate sets for each valid token, learned from one clean `/me` per token and stack,
/// keyed by folded header name.
pub type Identities = HashMap<TokenKind, HashMap<String, String>>;

/// Checks one app report against the property; `Err` names the broken clause.
pub fn check(
    report: &Report,
    sent: &[TokenKind],
    identities: &Identities,
    oids: &HashMap<TokenKind, String>,
) -> Result<(), String> {
    let needs = ROUTES
        .iter()
        .find(|(id, _)| *id == report.route)
        .map(|(_, n)| *n)
        .ok_or_else(|| format!("unknown route id {:?}", report.route))?;
    let valid: Vec<TokenKind> = sent
        .iter()
        .copied()
        .filter(|k| k.roles().is_some())
        .collect();

    // 3. Nothing the client forged reached the app.
    let forged = report
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(
            report
                .api
                .iter()
                .filter_map(|(n, v)| Some((n.as_str(), v.as_deref()?))),
        )
        .find(|(_, v)| v.contains(FORGED));
    if let Some((name, value)) = forged {
        return Err(format!("app read a forged header: {name}: {value}"));
    }

    // 2 and 4. Identity values are tokengate's, for a token the request carried.
    for (name, value) in report.identity() {
        if name == "AUTHORIZATION" {
            return Err("the app read Authorization".into());
        }
        let ours = valid.iter().any(|k| {
            identities
                .get(k)
                .and_then(|m| m.get(&name))
                .is_some_and(|v| v == value)
        });
        if !ours {
            return Err(format!(
                "app read identity {name}: {} that tokengate did not set for this request",
                abbreviate(value)
            ));
        }
    }

    // 1. A protected handler ran for an authorized, authenticated request.
    let authorized = |k: &TokenKind| match needs {
        Needs::Nothing => true,
        Needs::Token => true,
        Needs::Role(role) => k.roles().is_some_and(|r| r.contains(&role)),
    };
    if needs != Needs::Nothing {
        let seen_id = report.principal_id();
        let ok = valid
            .iter()
            .filter(|k| authorized(k))
            .any(|k| oids.get(k).map(String::as_str) == seen_id);
        if !ok {
            return Err(format!(
                "protected handler {} ({needs:?}) ran as {} {:?}; tokens sent {:?}, identity read {:?}",
                report.route, report.method, report.path, sent, seen_id
            ));
        }
    }
    Ok(())
}

fn abbreviate(v: &str) -> String {
    if v.len() > 60 {
        format!(
            "{}…",
            &v[..v.char_indices().nth(60).map_or(v.len(), |(i, _)| i)]
        )
    } else {
        v.to_string()
    }
}
