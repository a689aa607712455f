//! The EasyAuth principal as tokengate built it before issue 12 (a `serde_json::Value` per
//! claim, then `serde::Serialize`), kept verbatim as the reference the one-pass writer in
//! `src/callee/principal.rs` must match byte for byte (`tests/properties.rs`, invariant 4).

#![allow(dead_code)]

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
