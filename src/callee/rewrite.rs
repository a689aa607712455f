//! Header rewriting between the client and the upstream.
//!
//! # Contract
//! On every forwarded request, authenticated or anonymous:
//! - `Authorization` is removed: the token is a credential of the caller and never reaches the
//!   upstream (nor any log);
//! - every client-sent header named `X-MS-CLIENT-PRINCIPAL*` or `X-MS-TOKEN-*`, in any case, is
//!   removed, so only we can set identity;
//! - every client-sent header whose name contains `_` is removed (nginx's
//!   `underscores_in_headers off`): CGI/WSGI-style servers (wsgiref, gunicorn < 22, uWSGI,
//!   Django's `META`, Rack, PHP-FPM) read `X_MS_CLIENT_PRINCIPAL` and `X-MS-CLIENT-PRINCIPAL` as
//!   one variable, so a name with `_` may be read as any protected name;
//! - method-override headers (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`)
//!   are removed: the method we authorized is the method the framework dispatches;
//! - client-certificate headers (`X-ARR-ClientCert`, `X-Forwarded-Client-Cert`, `Client-Cert`,
//!   `Client-Cert-Chain`, `X-Client-Cert`, `X-SSL-Client-Cert`) are always removed: only a
//!   verified TLS handshake may ever set them;
//! - unless `upstream.trust_forwarded_headers`, the headers a front end sets about the client
//!   (`Forwarded`, every `X-Forwarded-*`, every `X-Original-*`, every `X-ARR-*`, every `X-WAWS-*`,
//!   `X-Real-IP`, `X-Client-IP`, `True-Client-IP`, `X-Rewrite-URL`, `DISGUISED-HOST`, …) are
//!   removed, since code written for App Service trusts what its front end writes there;
//! - hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and the fields it lists, `Keep-Alive`,
//!   `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`, `Proxy-Authorization`) are removed;
//! - `X-Forwarded-For` gets the peer address, `X-Forwarded-Proto` (`https` on the TLS listener)
//!   and `X-Forwarded-Host` are set (kept from the client only when
//!   `upstream.trust_forwarded_headers`);
//! - `X-Request-Id` is kept when the client sent a well-formed one, otherwise generated.
//!
//! Then, for authenticated requests only, EasyAuth's identity headers are added, and with
//! `upstream.forward_token` the validated token as `X-MS-TOKEN-AAD-ACCESS-TOKEN`.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

use crate::principal::{IdentityHeaders, IDP};

/// `X-MS-CLIENT-PRINCIPAL`.
pub static X_MS_CLIENT_PRINCIPAL: HeaderName = HeaderName::from_static("x-ms-client-principal");
/// `X-MS-CLIENT-PRINCIPAL-ID`.
pub static X_MS_CLIENT_PRINCIPAL_ID: HeaderName =
    HeaderName::from_static("x-ms-client-principal-id");
/// `X-MS-CLIENT-PRINCIPAL-NAME`.
pub static X_MS_CLIENT_PRINCIPAL_NAME: HeaderName =
    HeaderName::from_static("x-ms-client-principal-name");
/// `X-MS-CLIENT-PRINCIPAL-IDP`.
pub static X_MS_CLIENT_PRINCIPAL_IDP: HeaderName =
    HeaderName::from_static("x-ms-client-principal-idp");
/// `X-ARR-ClientCert`: the client's verified TLS certificate, base64 DER (App Service's name).
pub static X_ARR_CLIENT_CERT: HeaderName = HeaderName::from_static("x-arr-clientcert");
/// `X-MS-TOKEN-AAD-ACCESS-TOKEN`.
pub static X_MS_TOKEN_AAD_ACCESS_TOKEN: HeaderName =
    HeaderName::from_static("x-ms-token-aad-access-token");
/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

const HOP_BY_HOP: [&HeaderName; 8] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
];

/// What [`request_headers`] sets on a request on its way upstream.
pub struct Outgoing<'a> {
    /// The validated caller's pre-encoded EasyAuth headers; `None` on anonymous paths.
    pub identity: Option<&'a IdentityHeaders>,
    /// The token to forward as `X-MS-TOKEN-AAD-ACCESS-TOKEN` (`upstream.forward_token`).
    pub token: Option<&'a str>,
    /// The client's address as a header value ([`peer_value`], encoded once per connection),
    /// for `X-Forwarded-For`.
    pub peer: &'a HeaderValue,
    /// The authority the client addressed, for `X-Forwarded-Host`.
    pub client_host: Option<&'a HeaderValue>,
    /// Whether the client came over TLS, for `X-Forwarded-Proto`.
    pub scheme: Scheme,
    /// The client certificate, when the TLS listener asked for one.
    pub client_cert: Option<&'a HeaderValue>,
    /// `upstream.trust_forwarded_headers`.
    pub trust_forwarded: bool,
}

/// The request rewrite, the one entry point the proxy and its bench use: strip, then set.
/// Hop-by-hop headers, the credential and every client-sent identity or client-only header go
/// first, on authenticated and anonymous paths alike; then the identity (and token, if asked),
/// the forwarding headers and the client certificate are set from what we know.
pub fn request_headers(headers: &mut HeaderMap, out: &Outgoing<'_>) {
    strip_hop_by_hop(headers);
    strip_credentials(headers);
    strip_client_only(headers, out.trust_forwarded);
    if let Some(identity) = out.identity {
        set_identity(headers, identity);
    }
    if let Some(token) = out.token {
        set_token(headers, token);
    }
    set_forwarded(
        headers,
        out.peer,
        out.client_host,
        out.scheme,
        out.trust_forwarded,
    );
    if let Some(cert) = out.client_cert {
        set_client_cert(headers, cert);
    }
}

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    // Usually none is present: one pass over the names (standard ones compare as tags) costs
    // less than looking each of the eight up (issue 12).
    if !headers.keys().any(|n| HOP_BY_HOP.contains(&n)) {
        return;
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Removes the token and any client-supplied identity header.
pub fn strip_credentials(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(&X_ARR_CLIENT_CERT);
    // Header names are stored lower-case, so a byte prefix test covers every spelling.
    let is_identity = |n: &HeaderName| {
        let s = n.as_str();
        s.starts_with("x-ms-client-principal") || s.starts_with("x-ms-token-")
    };
    if !headers.keys().any(is_identity) {
        return;
    }
    let spoofed: Vec<HeaderName> = headers.keys().filter(|n| is_identity(n)).cloned().collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Removes the headers only a front end or tokengate itself may set (see the module contract).
/// Allocates only when the client sent one.
pub fn strip_client_only(headers: &mut HeaderMap, trust_forwarded: bool) {
    let refused = |n: &HeaderName| !client_may_send(n.as_str(), trust_forwarded);
    if !headers.keys().any(refused) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| refused(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Whether a client-sent header (lower-case name) may reach the upstream.
fn client_may_send(name: &str, trust_forwarded: bool) -> bool {
    const OVERRIDES: [&str; 3] = [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    ];
    const CLIENT_CERT: [&str; 6] = [
        "x-arr-clientcert",
        "x-forwarded-client-cert",
        "client-cert",
        "client-cert-chain",
        "x-client-cert",
        "x-ssl-client-cert",
    ];
    const FRONT_END: [&str; 12] = [
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "x-client-port",
        "true-client-ip",
        "x-cluster-client-ip",
        "x-rewrite-url",
        "disguised-host",
        "x-appservice-proto",
        "front-end-https",
        "x-url-scheme",
        "x-host",
    ];
    const FRONT_END_PREFIXES: [&str; 4] = ["x-forwarded-", "x-original-", "x-arr-", "x-waws-"];
    if name.contains('_') || OVERRIDES.contains(&name) || CLIENT_CERT.contains(&name) {
        return false;
    }
    trust_forwarded
        || !(FRONT_END.contains(&name) || FRONT_END_PREFIXES.iter().any(|p| name.starts_with(p)))
}

/// Adds EasyAuth's identity headers.
pub fn set_identity(headers: &mut HeaderMap, identity: &IdentityHeaders) {
    headers.insert(X_MS_CLIENT_PRINCIPAL.clone(), identity.principal.clone());
    if let Some(id) = &identity.id {
        headers.insert(X_MS_CLIENT_PRINCIPAL_ID.clone(), id.clone());
    }
    if let Some(name) = &identity.name {
        headers.insert(X_MS_CLIENT_PRINCIPAL_NAME.clone(), name.clone());
    }
    headers.insert(
        X_MS_CLIENT_PRINCIPAL_IDP.clone(),
        HeaderValue::from_static(IDP),
    );
}

/// Sets `X-MS-TOKEN-AAD-ACCESS-TOKEN` to the validated token (`upstream.forward_token`), as
/// EasyAuth's token store does. Called after [`strip_credentials`], so a client-sent copy can
/// never survive.
pub fn set_token(headers: &mut HeaderMap, token: &str) {
    // The token came out of a header value and validated as base64url JWS: always valid.
    if let Ok(mut v) = HeaderValue::from_str(token) {
        v.set_sensitive(true);
        headers.insert(X_MS_TOKEN_AAD_ACCESS_TOKEN.clone(), v);
    }
}

/// Sets `X-ARR-ClientCert` to the verified client certificate (after `strip_credentials`).
pub fn set_client_cert(headers: &mut HeaderMap, cert: &HeaderValue) {
    headers.insert(X_ARR_CLIENT_CERT.clone(), cert.clone());
}

/// The scheme the client used, for `X-Forwarded-Proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// TLS on the public listener.
    Https,
}

/// Sets `X-Forwarded-For/-Proto/-Host`. `host` is the authority the client addressed.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    host: Option<&HeaderValue>,
    scheme: Scheme,
    trust: bool,
) {
    let prior = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .filter(|p| trust && !p.is_empty());
    let xff = match prior {
        // The one case that builds a value per request: a trusted front end's list, extended.
        Some(prior) => {
            let joined = format!("{prior}, {}", peer.to_str().unwrap_or_default());
            HeaderValue::from_str(&joined).ok()
        }
        None => Some(peer.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !trust || !headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !trust || !headers.contains_key(&X_FORWARDED_HOST) {
        match host {
            Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

/// A client address as an `X-Forwarded-For` value, encoded once per connection.
pub fn peer_value(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_string()).expect("an IP address is a valid header value")
}

/// Returns the client's `X-Request-Id` if well-formed (1–128 of `[A-Za-z0-9._-]`), else a new
/// one; either way the header is set to it.
pub fn request_id(headers: &mut HeaderMap, ids: &RequestIds) -> HeaderValue {
    let kept = headers.get(&X_REQUEST_ID).filter(|v| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    });
    let id = match kept {
        Some(v) => v.clone(),
        None => ids.next(),
    };
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// Generates unique request ids: a random per-generator prefix and a counter, 32 hex digits.
///
/// Ids are handed out in blocks: a thread reserves `ID_BLOCK` counter values at once and
/// encodes them into one buffer, and each id is a slice of it, so a request id costs no
/// allocation of its own and no lock (issue 12). Ids stay unique; their order across threads
/// follows the blocks.
pub struct RequestIds {
    /// Tells this generator's blocks from another's in a thread's cache.
    instance: u64,
    prefix: u64,
    counter: AtomicU64,
}

/// Ids reserved per block.
const ID_BLOCK: u64 = 64;
/// Hex digits per id.
const ID_LEN: usize = 32;

/// The current thread's block: its generator, its ids, and how many are used.
struct IdBlock {
    instance: u64,
    ids: Bytes,
    used: usize,
}

thread_local! {
    static ID_BLOCKS: RefCell<Option<IdBlock>> = const { RefCell::new(None) };
}

impl RequestIds {
    /// A generator with a fresh random prefix.
    pub fn new() -> RequestIds {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let mut bytes = [0u8; 8];
        // A failing system RNG would be remarkable; a fixed prefix still yields unique ids.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        RequestIds {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            prefix: u64::from_le_bytes(bytes),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> HeaderValue {
        ID_BLOCKS.with(|cell| {
            let mut cell = cell.borrow_mut();
            let block = match cell.as_mut() {
                Some(b) if b.instance == self.instance && b.used < b.ids.len() / ID_LEN => b,
                _ => cell.insert(self.reserve()),
            };
            let at = block.used * ID_LEN;
            block.used += 1;
            HeaderValue::from_maybe_shared(block.ids.slice(at..at + ID_LEN))
                .expect("hex is a valid header value")
        })
    }

    /// Reserves the next block of counter values and encodes them.
    fn reserve(&self) -> IdBlock {
        use std::fmt::Write as _;
        let first = self.counter.fetch_add(ID_BLOCK, Ordering::Relaxed);
        let mut text = String::with_capacity(ID_BLOCK as usize * ID_LEN);
        for n in first..first + ID_BLOCK {
            let _ = write!(text, "{:016x}{:016x}", self.prefix, n);
        }
        IdBlock {
            instance: self.instance,
            ids: Bytes::from(text),
            used: 0,
        }
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_are_stripped_in_any_case() {
        let mut h = HeaderMap::new();
        for name in [
            "X-MS-CLIENT-PRINCIPAL",
            "x-ms-client-principal-id",
            "X-Ms-Client-Principal-Name",
            "x-ms-client-principal-idp",
            "X-MS-CLIENT-PRINCIPALX",
            "x-ms-token-aad-access-token",
            "authorization",
            "X-ARR-ClientCert",
        ] {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("spoof"),
            );
        }
        h.insert("x-ms-other", HeaderValue::from_static("keep"));
        strip_credentials(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-ms-other"));
    }

    #[test]
    fn client_only_headers_are_stripped() {
        let names = [
            "x_ms_client_principal",
            "X_MS-CLIENT-PRINCIPAL-ID",
            "x-custom_header",
            "X-HTTP-Method-Override",
            "x-http-method",
            "X-Method-Override",
            "X-ARR-ClientCert",
            "x-forwarded-client-cert",
            "Forwarded",
            "X-Real-IP",
            "X-Client-IP",
            "X-Original-URL",
            "X-Original-Host",
            "X-Rewrite-URL",
            "X-ARR-SSL",
            "DISGUISED-HOST",
            "X-WAWS-Unencoded-URL",
            "X-Forwarded-Port",
            "X-Forwarded-Prefix",
            "X-Forwarded-Server",
        ];
        let build = || {
            let mut h = HeaderMap::new();
            for name in names {
                h.insert(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_static("spoof"),
                );
            }
            h.insert("x-client-request-id", HeaderValue::from_static("keep"));
            h.insert("content-type", HeaderValue::from_static("keep"));
            h
        };
        let mut h = build();
        strip_client_only(&mut h, false);
        let mut kept: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        kept.sort();
        assert_eq!(kept, ["content-type", "x-client-request-id"]);

        // Trusting a front end keeps what it writes, never what only TLS or we may set.
        let mut h = build();
        strip_client_only(&mut h, true);
        for gone in &names[..8] {
            assert!(
                !h.contains_key(gone.to_ascii_lowercase().as_str()),
                "{gone}"
            );
        }
        for kept in &names[8..] {
            assert!(h.contains_key(kept.to_ascii_lowercase().as_str()), "{kept}");
        }
    }

    #[test]
    fn connection_listed_headers_are_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["x-keep"]
        );
    }

    #[test]
    fn request_ids_are_kept_when_well_formed() {
        let ids = RequestIds::new();
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&mut h, &ids), "abc-123");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("bad id\"x"));
        let fresh = request_id(&mut h, &ids);
        assert_eq!(fresh.len(), 32);
        assert_eq!(h.get(&X_REQUEST_ID), Some(&fresh));
    }
}
