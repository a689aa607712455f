//! The caller's identity in App Service EasyAuth's shapes.
//!
//! # Contract
//! Code written for App Service reads these and must work unchanged, so we follow Microsoft's
//! "Work with user identities in Azure App Service authentication":
//! - `X-MS-CLIENT-PRINCIPAL`: standard base64 (with padding) of
//!   `{"auth_typ":"aad","claims":[{"typ":…,"val":…},…],"name_typ":…,"role_typ":…}`, where every
//!   claim of the token appears in token order, an array claim as one pair per element, every `val`
//!   a string (numbers in decimal, booleans as `true`/`false`, objects as compact JSON), and claim
//!   types go through the same default mapping EasyAuth applies (e.g. `oid` →
//!   `http://schemas.microsoft.com/identity/claims/objectidentifier`); `roles` stays `roles`.
//! - `X-MS-CLIENT-PRINCIPAL-ID`: `oid` (falling back to `sub`).
//! - `X-MS-CLIENT-PRINCIPAL-NAME`: the first of `preferred_username`, `upn`, `unique_name`,
//!   `email`, `name`; for app-only tokens (managed identities) that carry none, the caller's
//!   `appid`/`azp`.
//! - `X-MS-CLIENT-PRINCIPAL-IDP`: `aad`.
//! - The caller's tenant (`tid`) is a claim like any other in `X-MS-CLIENT-PRINCIPAL` (as
//!   `http://schemas.microsoft.com/identity/claims/tenantid`), and `/.auth/me` also gives it as
//!   `tenant_id`, so a multi-tenant callee need not dig for it.
//!
//! This runs once per distinct token (the cache keeps the encoded headers), so it may allocate.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::HeaderValue;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Serialize;
use serde_json::Value;

/// EasyAuth's `name_typ` for Entra ID.
pub const NAME_TYPE: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress";
/// EasyAuth's `role_typ` for Entra ID.
pub const ROLE_TYPE: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role";
/// The identity provider name EasyAuth reports for Entra ID.
pub const IDP: &str = "aad";

/// JWT claim names EasyAuth reports under a long claim-type URI (the default inbound claim map
/// of the .NET JWT handler, which EasyAuth applies). Claims not listed keep their JWT name.
const CLAIM_TYPE_MAP: &[(&str, &str)] = &[
    (
        "oid",
        "http://schemas.microsoft.com/identity/claims/objectidentifier",
    ),
    (
        "tid",
        "http://schemas.microsoft.com/identity/claims/tenantid",
    ),
    ("scp", "http://schemas.microsoft.com/identity/claims/scope"),
    (
        "idp",
        "http://schemas.microsoft.com/identity/claims/identityprovider",
    ),
    (
        "sub",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
    ),
    (
        "upn",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    ),
    (
        "email",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ),
    (
        "unique_name",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    ),
    (
        "given_name",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    ),
    (
        "family_name",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    ),
    (
        "gender",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/gender",
    ),
    (
        "amr",
        "http://schemas.microsoft.com/claims/authnmethodsreferences",
    ),
    (
        "auth_time",
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/authenticationinstant",
    ),
];

/// One EasyAuth claim pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    /// Claim type (mapped).
    pub typ: String,
    /// Claim value, always a string.
    pub val: String,
}

/// The caller, ready to be rendered as EasyAuth headers or `/.auth/me`.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    claims: Vec<Claim>,
    id: Option<String>,
    name: Option<String>,
    tenant_id: Option<String>,
}

/// The pre-encoded upstream headers for one principal.
#[derive(Clone)]
pub struct IdentityHeaders {
    /// `X-MS-CLIENT-PRINCIPAL`.
    pub principal: HeaderValue,
    /// `X-MS-CLIENT-PRINCIPAL-ID`.
    pub id: Option<HeaderValue>,
    /// `X-MS-CLIENT-PRINCIPAL-NAME`.
    pub name: Option<HeaderValue>,
}

impl IdentityHeaders {
    /// Approximate heap size, for the cache's memory bound.
    pub fn byte_len(&self) -> usize {
        self.principal.len()
            + self.id.as_ref().map_or(0, |v| v.len())
            + self.name.as_ref().map_or(0, |v| v.len())
    }
}

impl Principal {
    /// Builds the principal from a verified payload (a JSON object).
    pub fn from_payload(payload: &[u8]) -> Result<Principal, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let raw: Vec<(String, Value)> = de.deserialize_map(OrderedObject)?;
        de.end()?;
        let text = |k: &str| {
            raw.iter()
                .find(|(name, _)| name == k)
                .and_then(|(_, v)| v.as_str())
                .map(String::from)
        };
        let id = text("oid").or_else(|| text("sub"));
        let tenant_id = text("tid");
        let name = [
            "preferred_username",
            "upn",
            "unique_name",
            "email",
            "name",
            "appid",
            "azp",
        ]
        .iter()
        .find_map(|k| text(k));
        let mut claims = Vec::with_capacity(raw.len());
        for (name, value) in &raw {
            let typ = mapped_type(name);
            match value {
                Value::Array(items) => {
                    for item in items {
                        if let Some(val) = claim_value(item) {
                            claims.push(Claim {
                                typ: typ.to_string(),
                                val,
                            });
                        }
                    }
                }
                v => {
                    if let Some(val) = claim_value(v) {
                        claims.push(Claim {
                            typ: typ.to_string(),
                            val,
                        });
                    }
                }
            }
        }
        Ok(Principal {
            claims,
            id,
            name,
            tenant_id,
        })
    }

    /// The claims, mapped, in token order.
    pub fn claims(&self) -> &[Claim] {
        &self.claims
    }

    /// `X-MS-CLIENT-PRINCIPAL-ID`'s value.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The caller's tenant (`tid`).
    pub fn tenant_id(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }

    /// `X-MS-CLIENT-PRINCIPAL-NAME`'s value.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The JSON EasyAuth base64-encodes into `X-MS-CLIENT-PRINCIPAL`.
    pub fn easyauth_json(&self) -> String {
        #[derive(Serialize)]
        struct Doc<'a> {
            auth_typ: &'a str,
            claims: &'a [Claim],
            name_typ: &'a str,
            role_typ: &'a str,
        }
        let doc = Doc {
            auth_typ: IDP,
            claims: &self.claims,
            name_typ: NAME_TYPE,
            role_typ: ROLE_TYPE,
        };
        serde_json::to_string(&doc).expect("serializing strings cannot fail")
    }

    /// The body of `GET /.auth/me`: EasyAuth's array of provider sessions, without any token.
    pub fn me_json(&self) -> String {
        #[derive(Serialize)]
        struct Session<'a> {
            provider_name: &'a str,
            user_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            tenant_id: Option<&'a str>,
            user_claims: &'a [Claim],
        }
        let user_id = self.name.as_deref().or(self.id.as_deref()).unwrap_or("");
        let doc = [Session {
            provider_name: IDP,
            user_id,
            tenant_id: self.tenant_id.as_deref(),
            user_claims: &self.claims,
        }];
        serde_json::to_string(&doc).expect("serializing strings cannot fail")
    }

    /// Encodes the upstream headers. Values a header cannot carry (control characters) are left
    /// out rather than mangled; the full claim set is still in `X-MS-CLIENT-PRINCIPAL`.
    pub fn headers(&self) -> IdentityHeaders {
        let encoded = STANDARD.encode(self.easyauth_json());
        IdentityHeaders {
            principal: HeaderValue::from_str(&encoded).expect("base64 is a valid header value"),
            id: self
                .id
                .as_deref()
                .and_then(|v| HeaderValue::from_str(v).ok()),
            name: self
                .name
                .as_deref()
                .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()),
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

fn mapped_type(name: &str) -> &str {
    CLAIM_TYPE_MAP
        .iter()
        .find(|(k, _)| *k == name)
        .map_or(name, |(_, v)| v)
}

fn claim_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Reads a JSON object keeping its key order (serde_json's `Map` would sort it).
struct OrderedObject;

impl<'de> Visitor<'de> for OrderedObject {
    type Value = Vec<(String, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            out.push((k, v));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_keep_order_map_types_and_stringify_values() {
        let payload = br#"{"aud":"api://x","iat":1700000000,"oid":"o-1","roles":["A","B"],"appid":"app","ok":true,"n":null}"#;
        let p = Principal::from_payload(payload).unwrap();
        let pairs: Vec<(&str, &str)> = p
            .claims()
            .iter()
            .map(|c| (c.typ.as_str(), c.val.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("aud", "api://x"),
                ("iat", "1700000000"),
                (
                    "http://schemas.microsoft.com/identity/claims/objectidentifier",
                    "o-1"
                ),
                ("roles", "A"),
                ("roles", "B"),
                ("appid", "app"),
                ("ok", "true"),
            ]
        );
        assert_eq!(p.id(), Some("o-1"));
        assert_eq!(p.name(), Some("app"));
    }

    #[test]
    fn header_decodes_to_easyauth_document() {
        let p = Principal::from_payload(br#"{"oid":"o","upn":"u@x"}"#).unwrap();
        let h = p.headers();
        let json = STANDARD.decode(h.principal.as_bytes()).unwrap();
        let doc: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(doc["auth_typ"], "aad");
        assert_eq!(doc["name_typ"], NAME_TYPE);
        assert_eq!(doc["role_typ"], ROLE_TYPE);
        assert_eq!(
            doc["claims"][1]["typ"],
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
        );
        assert_eq!(h.name.unwrap(), "u@x");
        assert_eq!(h.id.unwrap(), "o");
    }
}
