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
//! # How
//! This runs once per distinct token, and with every request bringing a new token it is most of
//! what a request costs besides the signature check. So the JSON is written in one pass straight
//! from the verified payload: serde_json's streaming deserializer (the parser `validate` used, so
//! exactly the same payloads are accepted) calls a visitor that writes each claim as it is read
//! into a reused thread-local buffer; strings without escapes are copied as they are (a JSON
//! string without a backslash has nothing serde_json's writer would escape), escaped ones go
//! through serde_json's writer, numbers through serde_json's number formatting. Only object and
//! nested-array claim values (rare in Entra tokens) take the slow path through
//! `serde_json::Value`, rendered exactly as before. The header values then share one allocation
//! (see [`IdentityHeaders::with_token`]). `/.auth/me` is rendered only when asked for
//! ([`me_json`]), from the same payload. `tests/properties.rs` checks every rendering against the
//! `serde_json::Value`-based implementation this replaced, on generated payloads.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serializer as _};
use serde_json::Value;

/// EasyAuth's `name_typ` for Entra ID.
pub const NAME_TYPE: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress";
/// EasyAuth's `role_typ` for Entra ID.
pub const ROLE_TYPE: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role";
/// The identity provider name EasyAuth reports for Entra ID.
pub const IDP: &str = "aad";

/// What precedes the claims in `X-MS-CLIENT-PRINCIPAL`'s JSON.
const EASYAUTH_HEAD: &[u8] = br#"{"auth_typ":"aad","claims":["#;
/// What follows them.
const EASYAUTH_TAIL: &str = concat!(
    r#"],"name_typ":"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress","#,
    r#""role_typ":"http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}"#
);

/// The EasyAuth type of a JWT claim: the default inbound claim map of the .NET JWT handler,
/// which EasyAuth applies. Claims not listed (`None`) keep their JWT name.
fn mapped_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "oid" => "http://schemas.microsoft.com/identity/claims/objectidentifier",
        "tid" => "http://schemas.microsoft.com/identity/claims/tenantid",
        "scp" => "http://schemas.microsoft.com/identity/claims/scope",
        "idp" => "http://schemas.microsoft.com/identity/claims/identityprovider",
        "sub" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
        "upn" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
        "email" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "unique_name" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "given_name" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
        "family_name" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
        "gender" => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/gender",
        "amr" => "http://schemas.microsoft.com/claims/authnmethodsreferences",
        "auth_time" => {
            "http://schemas.microsoft.com/ws/2008/06/identity/claims/authenticationinstant"
        }
        _ => return None,
    })
}

/// The single-valued parts of the caller (the claims themselves are written, not kept).
/// Strings borrow from the payload unless they were JSON-escaped there.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal<'p> {
    id: Option<Cow<'p, str>>,
    name: Option<Cow<'p, str>>,
    tenant_id: Option<Cow<'p, str>>,
}

impl<'p> Principal<'p> {
    /// Reads a verified payload (a JSON object) once: appends its EasyAuth claims to `claims`, as
    /// comma-separated `{"typ":…,"val":…}` objects (what goes between `[` and `]`), and returns
    /// the id, name and tenant. Refuses exactly what serde_json refuses (and anything but an
    /// object); `claims` then holds a partial write.
    pub fn scan(
        payload: &'p [u8],
        claims: &mut Vec<u8>,
    ) -> Result<Principal<'p>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let start = claims.len();
        let found = de.deserialize_map(Members { out: claims, start })?;
        de.end()?;
        Ok(found.principal())
    }

    /// `X-MS-CLIENT-PRINCIPAL-ID`'s value.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// `X-MS-CLIENT-PRINCIPAL-NAME`'s value.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The caller's tenant (`tid`).
    pub fn tenant_id(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }
}

impl fmt::Debug for Principal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

/// The JSON EasyAuth base64-encodes into `X-MS-CLIENT-PRINCIPAL`, for a verified payload.
pub fn easyauth_json(payload: &[u8]) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(payload.len() * 2);
    write_easyauth(payload, &mut out)?;
    Ok(utf8(out))
}

/// The body of `GET /.auth/me` for a verified payload: EasyAuth's array of provider sessions,
/// without any token. Rendered on request only; nothing of it is kept.
pub fn me_json(payload: &[u8]) -> Result<String, serde_json::Error> {
    let mut claims = Vec::with_capacity(payload.len() * 2);
    let p = Principal::scan(payload, &mut claims)?;
    let mut out = Vec::with_capacity(claims.len() + 128);
    out.extend_from_slice(br#"[{"provider_name":"aad","user_id":"#);
    escaped(&mut out, p.name().or(p.id()).unwrap_or(""));
    if let Some(tid) = p.tenant_id() {
        out.extend_from_slice(br#","tenant_id":"#);
        escaped(&mut out, tid);
    }
    out.extend_from_slice(br#","user_claims":["#);
    out.extend_from_slice(&claims);
    out.extend_from_slice(b"]}]");
    Ok(utf8(out))
}

/// The pre-encoded upstream headers for one principal. The values share one heap buffer (see
/// [`IdentityHeaders::with_token`]), so building them costs two allocations and cloning them
/// onto a request none.
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
    /// Encodes the headers for a verified payload.
    pub fn from_payload(payload: &[u8]) -> Result<IdentityHeaders, serde_json::Error> {
        Self::with_token(payload, "").map(|(headers, _)| headers)
    }

    /// Encodes the headers for a verified payload, and copies `token` into the same buffer
    /// (the cache entry keeps both, and one allocation beats two). Values a header cannot carry
    /// (control characters) are left out rather than mangled; the full claim set is still in
    /// `X-MS-CLIENT-PRINCIPAL`.
    ///
    /// Allocates exactly twice in steady state: the buffer, sized exactly, and the reference
    /// count `bytes` shares it under (made here, by the first slice, rather than on the first
    /// request that clones a header value).
    pub fn with_token(
        payload: &[u8],
        token: &str,
    ) -> Result<(IdentityHeaders, Bytes), serde_json::Error> {
        JSON.with(|json| {
            // Not re-entrant: nothing below calls back into this module.
            let mut json = json.borrow_mut();
            json.clear();
            let p = write_easyauth(payload, &mut json)?;
            let id = p.id().map(str::as_bytes).filter(|v| header_safe(v));
            let name = p.name().map(str::as_bytes).filter(|v| header_safe(v));
            let b64 = json.len().div_ceil(3) * 4;
            let id_len = id.map_or(0, <[u8]>::len);
            let name_len = name.map_or(0, <[u8]>::len);
            let mut buf = Vec::with_capacity(b64 + id_len + name_len + token.len());
            buf.resize(b64, 0);
            STANDARD
                .encode_slice(&*json, &mut buf)
                .map_err(<serde_json::Error as de::Error>::custom)?;
            buf.extend_from_slice(id.unwrap_or_default());
            buf.extend_from_slice(name.unwrap_or_default());
            buf.extend_from_slice(token.as_bytes());
            let buf = Bytes::from(buf);
            let value = |from: usize, len: usize| {
                HeaderValue::from_maybe_shared(buf.slice(from..from + len))
            };
            let principal = value(0, b64).map_err(<serde_json::Error as de::Error>::custom)?;
            let headers = IdentityHeaders {
                principal,
                id: id.and_then(|_| value(b64, id_len).ok()),
                name: name.and_then(|_| value(b64 + id_len, name_len).ok()),
            };
            let token = buf.slice(b64 + id_len + name_len..);
            Ok((headers, token))
        })
    }

    /// The header values' bytes (all in one buffer).
    pub fn byte_len(&self) -> usize {
        self.principal.len()
            + self.id.as_ref().map_or(0, |v| v.len())
            + self.name.as_ref().map_or(0, |v| v.len())
    }
}

thread_local! {
    /// The EasyAuth JSON before base64: reused, so steady state allocates nothing for it.
    static JSON: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes `X-MS-CLIENT-PRINCIPAL`'s JSON for `payload` to `out`.
fn write_easyauth<'p>(
    payload: &'p [u8],
    out: &mut Vec<u8>,
) -> Result<Principal<'p>, serde_json::Error> {
    out.extend_from_slice(EASYAUTH_HEAD);
    let p = Principal::scan(payload, out)?;
    out.extend_from_slice(EASYAUTH_TAIL.as_bytes());
    Ok(p)
}

/// What `http` accepts in a header value (its `HeaderValue::from_bytes` rule).
fn header_safe(v: &[u8]) -> bool {
    v.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
}

/// Everything written is UTF-8 (copied `&str`s and serde_json's output); the lossy path is
/// never taken, and spares a panic.
fn utf8(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A JSON string, as serde_json writes it.
fn escaped(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::Serializer::new(out).serialize_str(s);
}

/// A JSON string that needs no escaping.
fn verbatim(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// The keys the single-valued headers read, in slot order. Each reads its key's *first*
/// occurrence, and only if that is a string.
const SLOTS: usize = 10;
const OID: usize = 0;
const SUB: usize = 1;
const TID: usize = 2;
/// `X-MS-CLIENT-PRINCIPAL-NAME`'s candidates (slots `NAMES..SLOTS`), in order of preference.
const NAMES: usize = 3;

fn slot(key: &str) -> Option<usize> {
    Some(match key {
        "oid" => OID,
        "sub" => SUB,
        "tid" => TID,
        "preferred_username" => 3,
        "upn" => 4,
        "unique_name" => 5,
        "email" => 6,
        "name" => 7,
        "appid" => 8,
        "azp" => 9,
        _ => return None,
    })
}

/// Per slot: `None` not seen yet, `Some(None)` seen but not a string, `Some(Some(s))` a string.
struct Found<'de>([Option<Option<Cow<'de, str>>>; SLOTS]);

impl<'de> Found<'de> {
    fn take(&mut self, i: usize) -> Option<Cow<'de, str>> {
        self.0[i].take().flatten()
    }

    fn principal(mut self) -> Principal<'de> {
        Principal {
            id: self.take(OID).or_else(|| self.take(SUB)),
            name: (NAMES..SLOTS).find_map(|i| self.take(i)),
            tenant_id: self.take(TID),
        }
    }
}

/// The payload object: one claim per member (one per element for an array).
struct Members<'o> {
    out: &'o mut Vec<u8>,
    /// Where this object's claims start in `out` (a comma goes before every later one).
    start: usize,
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found<'de>, A::Error> {
        let mut found = Found(Default::default());
        while let Some(key) = map.next_key_seed(Text)? {
            let fresh = slot(&key).filter(|&i| found.0[i].is_none());
            let typ = mapped_type(&key).map_or(Typ::Key(&key), Typ::Mapped);
            let text = map.next_value_seed(Claim {
                out: &mut *self.out,
                start: self.start,
                typ,
                array: true,
            })?;
            if let Some(i) = fresh {
                found.0[i] = Some(text);
            }
        }
        Ok(found)
    }
}

/// A key: borrowed from the payload when it has no escapes.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// A claim's EasyAuth type: one of [`mapped_type`]'s constants, or the key as read.
#[derive(Clone, Copy)]
enum Typ<'t> {
    Mapped(&'static str),
    Key(&'t Cow<'t, str>),
}

/// One member's value (`array: true`) or one element of an array member (`array: false`):
/// writes its claim(s) and returns the value if it is a string (for [`Found`]).
struct Claim<'o, 't> {
    out: &'o mut Vec<u8>,
    start: usize,
    typ: Typ<'t>,
    /// Whether an array is flattened into one claim per element (at the top level only; deeper
    /// arrays are rendered as JSON text).
    array: bool,
}

impl Claim<'_, '_> {
    /// Writes `{"typ":…,"val":` + `val` + `}`.
    fn write(&mut self, val: impl FnOnce(&mut Vec<u8>)) {
        if self.out.len() > self.start {
            self.out.push(b',');
        }
        self.out.extend_from_slice(br#"{"typ":"#);
        match self.typ {
            Typ::Mapped(t) => verbatim(self.out, t),
            // A key borrowed from the payload had no escapes in it, so it can be copied out
            // as it is.
            Typ::Key(Cow::Borrowed(k)) => verbatim(self.out, k),
            Typ::Key(Cow::Owned(k)) => escaped(self.out, k),
        }
        self.out.extend_from_slice(br#","val":"#);
        val(self.out);
        self.out.push(b'}');
    }

    /// A number as serde_json's `Number` displays it, quoted.
    fn number(&mut self, write: impl FnOnce(&mut serde_json::Serializer<&mut Vec<u8>>)) {
        self.write(|out| {
            out.push(b'"');
            write(&mut serde_json::Serializer::new(out));
            out.push(b'"');
        })
    }

    /// Objects and nested arrays go through `Value` and are rendered exactly as before (sorted
    /// keys, last duplicate wins), including `Value`'s quirk of reading an object whose first
    /// key is serde_json's private raw-value marker as the JSON text it holds (which may be
    /// a string, an array to flatten, ...): so this handles any `Value`, as the old code did.
    fn value<'de>(mut self, value: Value) -> Option<Cow<'de, str>> {
        match value {
            Value::Null => None,
            Value::String(s) => {
                self.write(|out| escaped(out, &s));
                Some(Cow::Owned(s))
            }
            Value::Array(items) if self.array => {
                for item in items {
                    Claim {
                        out: &mut *self.out,
                        start: self.start,
                        typ: self.typ,
                        array: false,
                    }
                    .value(item);
                }
                None
            }
            Value::Number(n) => {
                self.write(|out| verbatim(out, &n.to_string()));
                None
            }
            Value::Bool(b) => {
                self.write(|out| verbatim(out, if b { "true" } else { "false" }));
                None
            }
            other => {
                let text = other.to_string();
                self.write(|out| escaped(out, &text));
                None
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Claim<'_, '_> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Claim<'_, '_> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<Self::Value, E> {
        self.write(|out| verbatim(out, v));
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<Self::Value, E> {
        self.write(|out| escaped(out, v));
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<Self::Value, E> {
        self.number(|s| {
            let _ = s.serialize_u64(v);
        });
        Ok(None)
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<Self::Value, E> {
        self.number(|s| {
            let _ = s.serialize_i64(v);
        });
        Ok(None)
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Self::Value, E> {
        // `Value` turns a non-finite float (which serde_json's parser never yields) into null.
        if v.is_finite() {
            self.number(|s| {
                let _ = s.serialize_f64(v);
            });
        }
        Ok(None)
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<Self::Value, E> {
        self.write(|out| verbatim(out, if v { "true" } else { "false" }));
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if !self.array {
            let value = Value::deserialize(SeqAccessDeserializer::new(seq))?;
            return Ok(self.value(value));
        }
        while seq
            .next_element_seed(Claim {
                out: &mut *self.out,
                start: self.start,
                typ: self.typ,
                array: false,
            })?
            .is_some()
        {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let value = Value::deserialize(MapAccessDeserializer::new(map))?;
        Ok(self.value(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(payload: &[u8]) -> Vec<(String, String)> {
        let doc: Value = serde_json::from_str(&easyauth_json(payload).unwrap()).unwrap();
        doc["claims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["typ"].as_str().unwrap().to_string(),
                    c["val"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn claims_keep_order_map_types_and_stringify_values() {
        let payload = br#"{"aud":"api://x","iat":1700000000,"oid":"o-1","roles":["A","B"],"appid":"app","ok":true,"n":null}"#;
        let got = pairs(payload);
        let got: Vec<(&str, &str)> = got.iter().map(|(t, v)| (t.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
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
        let p = Principal::scan(payload, &mut Vec::new()).unwrap();
        assert_eq!(p.id(), Some("o-1"));
        assert_eq!(p.name(), Some("app"));
    }

    #[test]
    fn header_decodes_to_easyauth_document() {
        let h = IdentityHeaders::from_payload(br#"{"oid":"o","upn":"u@x"}"#).unwrap();
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

    #[test]
    fn token_shares_the_header_buffer() {
        let (h, token) =
            IdentityHeaders::with_token(br#"{"sub":"s\n","name":"n"}"#, "a.b.c").unwrap();
        assert_eq!(&token[..], b"a.b.c");
        assert!(h.id.is_none(), "a control character cannot go in a header");
        assert_eq!(h.name.unwrap(), "n");
    }

    #[test]
    fn tail_names_the_easyauth_types() {
        let tail = format!(r#"],"name_typ":"{NAME_TYPE}","role_typ":"{ROLE_TYPE}"}}"#);
        assert_eq!(EASYAUTH_TAIL, tail);
    }

    #[test]
    fn refuses_what_is_not_one_json_object() {
        for bad in [&b"[]"[..], b"{} {}", b"{\"a\":1e400}", b"{\"a\":", b"\"x\""] {
            assert!(
                easyauth_json(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(me_json(bad).is_err());
        }
    }
}
