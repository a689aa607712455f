//! `tokengate explain`: why would the proxy accept or refuse this token, here?
//!
//! # Contract
//! - The verdict comes from [`Proxy::decide`](crate::callee::pipeline::Proxy::decide), the proxy's own decision function, run over a
//!   snapshot built from the same config file and the same keys (fetched the way the proxy
//!   fetches them, or read from `--jwks`): explain can never disagree with the proxy, because it
//!   has no decision code of its own.
//! - It prints the decoded header and claims, never the signature; which keys of the JWKS verify
//!   the signature (and what each is pinned to); and `verdict: allow` or
//!   `verdict: deny <reason label> (<status>)`, the label being the one the proxy logs and puts
//!   in `error_description`.
//! - The token is the developer's own; it is printed nowhere else and never logged.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;

use crate::callee::pipeline::{unix_now, Decision};
use crate::callee::reject::Rejection;
use crate::callee::validate::fetch::fetch_once;
use crate::callee::validate::{Algorithm, KeyPin, KeySet};
use crate::callee::{authorize, normalize};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::snapshot::{SigningKeys, Snapshot};

/// What to explain.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request path, as a client would send it (normalized like the proxy does).
    pub path: String,
    /// The method.
    pub method: String,
    /// A JWKS file to use instead of fetching keys.
    pub jwks: Option<std::path::PathBuf>,
    /// The body's `Content-Type`; `None` is a request without a body.
    pub content_type: Option<String>,
    /// The token (a leading `Bearer ` is ignored).
    pub token: String,
}

/// The report and whether the proxy would let the request through.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// Human-readable report, ending with the `verdict:` line.
    pub text: String,
    /// `verdict: allow`.
    pub allow: bool,
}

/// Explains `req` under `config`. Errors are about the inputs (unreadable JWKS file, bad
/// method), not about the token: every token gets a verdict.
pub async fn explain(config: Config, req: &Request) -> Result<Explanation, String> {
    let token = req.token.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token)
        .trim();
    let method = Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("--method: {:?} is not an HTTP method", req.method))?;
    let mut out = String::new();
    let parts = decode(token, &mut out);

    let keys = match &req.jwks {
        Some(path) => Some(read_jwks(path, &config)?),
        None => match fetch_once(&config).await {
            Ok((keys, _)) => Some(keys),
            Err(e) => {
                let _ = writeln!(out, "keys\n  could not fetch them: {e}");
                None
            }
        },
    };
    if let (Some(keys), Some((header, signing_input, sig))) = (&keys, &parts) {
        describe_keys(keys, header, signing_input, sig, &mut out);
    }

    let (path, query) = match req.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.path.as_str(), None),
    };
    let _ = writeln!(out, "request\n  {method} {path}");
    let mut headers = HeaderMap::new();
    match &req.content_type {
        Some(ct) => {
            let ct = HeaderValue::from_str(ct)
                .map_err(|_| format!("--content-type: {ct:?} is not a header value"))?;
            let _ = writeln!(
                out,
                "  with a body: content-type {}",
                ct.to_str().unwrap_or("?")
            );
            headers.insert(http::header::CONTENT_TYPE, ct);
        }
        // As the pipeline states a POST's empty body before deciding.
        None => {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
    }
    // The same screens the pipeline runs before deciding.
    let screened =
        authorize::screen_method(&method).and_then(|()| authorize::screen_override(query));
    let verdict = match (screened, normalize::normalize(path)) {
        (Err(reason), _) => Decision::Deny {
            reason,
            identity: None,
            report_only: false,
        },
        (_, Err(_)) => Decision::Deny {
            reason: Rejection::InvalidPath,
            identity: None,
            report_only: false,
        },
        (Ok(()), Ok(normalized)) => {
            let keys = match keys {
                Some(k) => SigningKeys::Loaded(Arc::new(k)),
                None => SigningKeys::Pending,
            };
            let snapshot = Arc::new(Snapshot::new(Arc::new(config.policy), keys));
            let proxy =
                crate::dev::fixture::offline_proxy(snapshot.clone(), 0, Arc::new(Metrics::new()));
            match HeaderValue::from_str(&format!("Bearer {token}")) {
                Ok(v) => {
                    headers.insert(http::header::AUTHORIZATION, v);
                    proxy.decide(&snapshot, &headers, &normalized, &method, unix_now())
                }
                Err(_) => Decision::Deny {
                    reason: Rejection::MalformedAuthorization,
                    identity: None,
                    report_only: false,
                },
            }
        }
    };
    let allow = match &verdict {
        Decision::Anonymous => {
            let _ = writeln!(
                out,
                "verdict: allow (anonymous: under auth.excluded_paths and no rule applies; \
                 the token is not looked at)"
            );
            true
        }
        Decision::Allow(id) => {
            let _ = writeln!(
                out,
                "caller\n  application {}\n  principal   {}\n  tenant      {}",
                id.identity.application().unwrap_or("-"),
                id.identity.object_id().unwrap_or("-"),
                id.identity.tenant_id().unwrap_or("-"),
            );
            let _ = writeln!(out, "verdict: allow");
            true
        }
        Decision::Deny {
            reason,
            report_only,
            ..
        } => {
            let _ = writeln!(
                out,
                "verdict: deny {} ({})",
                reason.label(),
                reason.status().as_u16()
            );
            if *report_only {
                let _ = writeln!(
                    out,
                    "  report mode: the proxy forwards this request anyway and logs `would deny`"
                );
            }
            false
        }
    };
    Ok(Explanation { text: out, allow })
}

fn read_jwks(path: &Path, config: &Config) -> Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("--jwks {}: {e}", path.display()))?;
    KeySet::from_jwks(&bytes, &config.policy.auth.algorithms, None)
        .map(|(k, _)| k)
        .map_err(|e| format!("--jwks {}: {e}", path.display()))
}

/// Prints header and claims; returns the header, the signing input and the signature bytes.
fn decode<'t>(token: &'t str, out: &mut String) -> Option<(Value, &'t str, Vec<u8>)> {
    let Some((signing_input, sig_b64)) = token.rsplit_once('.') else {
        let _ = writeln!(
            out,
            "token\n  not a JWS (expected header.payload.signature)"
        );
        return None;
    };
    let Some((header_b64, payload_b64)) = signing_input.split_once('.') else {
        let _ = writeln!(
            out,
            "token\n  not a JWS (expected header.payload.signature)"
        );
        return None;
    };
    let json = |b64: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|e| format!("not base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
    };
    let header = json(header_b64);
    for (name, part) in [("header", &header), ("claims", &json(payload_b64))] {
        let _ = writeln!(out, "{name}");
        match part {
            Ok(v) => {
                let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
                for line in pretty.lines() {
                    let _ = writeln!(out, "  {line}");
                }
                if name == "claims" {
                    times(v, out);
                }
            }
            Err(e) => {
                let _ = writeln!(out, "  {e}");
            }
        }
    }
    let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap_or_default();
    let _ = writeln!(out, "signature\n  {} bytes (not shown)", sig.len());
    Some((header.ok()?, signing_input, sig))
}

/// `iat`, `nbf`, `exp` relative to now.
fn times(claims: &Value, out: &mut String) {
    let now = unix_now() as i64;
    for name in ["iat", "nbf", "exp"] {
        let Some(t) = claims.get(name).and_then(Value::as_i64) else {
            continue;
        };
        let delta = t - now;
        let when = if delta >= 0 {
            format!("in {}", human(delta))
        } else {
            format!("{} ago", human(-delta))
        };
        let _ = writeln!(out, "  {name} {t} = {when}");
    }
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m {}s", s / 60, s % 60),
        s if s < 172_800 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d", s / 86_400),
    }
}

fn describe_keys(keys: &KeySet, header: &Value, signing_input: &str, sig: &[u8], out: &mut String) {
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::from_name);
    let kid = header.get("kid").and_then(Value::as_str);
    let _ = writeln!(out, "keys ({} in the JWKS)", keys.len());
    let mut any = false;
    for key in keys.entries() {
        let algs: Vec<&str> = key.algs().iter().map(|a| a.name()).collect();
        let pin = match key.pin() {
            KeyPin::Any => "any tenant".to_string(),
            KeyPin::Tenant(t) => format!("tenant {t}"),
            KeyPin::Issuer(i) => format!("issuer {i}"),
        };
        let verdict = match alg.and_then(|a| key.verifier(a)) {
            None => match alg {
                Some(a) => format!("not usable with {a}"),
                None => "no supported alg in the header".to_string(),
            },
            Some(v) => match v.verify_sig(signing_input.as_bytes(), sig) {
                Ok(()) => {
                    any = true;
                    "verifies the signature".to_string()
                }
                Err(_) => "does not verify it".to_string(),
            },
        };
        let named = if Some(key.kid()) == kid {
            " (the header's kid)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} [{}; {pin}]{named}: {verdict}",
            key.kid(),
            algs.join(",")
        );
    }
    if !any {
        let _ = writeln!(out, "  no key in the JWKS verifies this signature");
    }
}
