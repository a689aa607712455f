//! What happens to one request, top to bottom:
//!
//! ```text
//! load snapshot → normalize path → anonymous? ──yes──────────────────────────┐
//!                                     │ no                                     │
//!                 extract token → cache hit? → validate (keys; unknown kid →   │
//!                 one bounded refresh) → authorize → /.auth/me? answer here    │
//!                                     │                                        ▼
//!                 rewrite headers (strip token + spoofed identity + hop-by-hop, set identity)
//!                                     → forward (pooled, timeouts) → metrics, log
//! ```
//!
//! Every refusal is a [`Rejection`], turned into a response by `respond` and counted and logged
//! here, once. Nothing reaches the upstream unless the path normalized and either it is anonymous
//! or the token validated and authorized — or report mode is on (`auth.mode = "report"`, or a
//! `mode = "report"` rule) and the refusal is a token or authorization one: then the request is
//! forwarded, logged as `would deny` and counted in `tokengate_report_only_denials_total`, with
//! the identity headers only when the token itself was accepted. [`Proxy::decide`] is the one
//! decision function: the pipeline and `tokengate explain` both call it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::Either;
use hyper::body::Incoming;

use crate::authorize::{self, Access};
use crate::callee::upgrade;
use crate::config::Mode;
use crate::extract;
use crate::forward::{self, Pool, Protocol, Upstream};
use crate::listener::Conn;
use crate::metrics::Metrics;
use crate::normalize;
use crate::reject::Rejection;
use crate::respond::{self, Body};
use crate::rewrite::{self, RequestIds};
use crate::snapshot::{SigningKeys, Snapshot, SnapshotCell};
use crate::validate::cache::{CachedIdentity, TokenCache};
use crate::validate::fetch::KeyFetcher;
use crate::validate::validate;

thread_local! {
    /// Decoded payloads land here; the capacity is kept, so validation does not allocate.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(48 * 1024));
}

/// The EasyAuth endpoint answered on the public listener.
const AUTH_ME: &str = "/.auth/me";

/// What the policy says about one request, before anything is forwarded.
#[derive(Clone)]
pub enum Decision {
    /// An anonymous path: forwarded without identity, no token looked at.
    Anonymous,
    /// The token validated and every enforced check passed.
    Allow(Arc<CachedIdentity>),
    /// Enforcing the policy refuses it.
    Deny {
        /// Why.
        reason: Rejection,
        /// The caller, when the token itself was accepted and only authorization refused.
        identity: Option<Arc<CachedIdentity>>,
        /// Report mode: forward anyway (identity headers only with `identity`), log, count.
        report_only: bool,
    },
}

/// What one client connection keeps across its requests: its facts, and what is encoded once
/// per connection rather than per request.
pub struct ClientConnection {
    conn: Conn,
    /// The peer's address as an `X-Forwarded-For` value.
    peer: http::HeaderValue,
}

impl ClientConnection {
    /// The state of a newly accepted connection.
    pub fn new(conn: Conn) -> ClientConnection {
        ClientConnection {
            peer: rewrite::peer_value(conn.peer.ip()),
            conn,
        }
    }
}

/// Shared state of the public listener.
pub struct Proxy {
    /// The hot state.
    pub cell: Arc<SnapshotCell>,
    /// Verified tokens.
    pub cache: TokenCache,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Signing keys, asked for a refresh after an unknown `kid`.
    pub key_fetcher: Arc<KeyFetcher>,
    upstream: Upstream,
    request_ids: RequestIds,
}

impl Proxy {
    /// Assembles the proxy around its shared state.
    pub fn new(
        cell: Arc<SnapshotCell>,
        cache: TokenCache,
        metrics: Arc<Metrics>,
        key_fetcher: Arc<KeyFetcher>,
        upstream: Upstream,
    ) -> Proxy {
        Proxy {
            cell,
            cache,
            metrics,
            key_fetcher,
            upstream,
            request_ids: RequestIds::new(),
        }
    }

    /// Handles one request from `client`. Never fails: every error is a response.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        client: &ClientConnection,
    ) -> Response<Body> {
        let conn = &client.conn;
        let request_id = rewrite::request_id(req.headers_mut(), &self.request_ids);
        let method = req.method().clone();
        let grpc = crate::callee::grpc::is_grpc(req.headers());
        // gRPC's own deadline runs from the call's arrival, whatever we do before forwarding.
        let deadline = crate::callee::grpc::timeout(req.headers()).map(|t| (Instant::now() + t, t));
        let peer = conn.peer;
        let outcome = match conn.state.violation() {
            Some(_) => Err(Rejection::AmbiguousFraming),
            None => self.process(req, client, deadline, &request_id).await,
        };
        match outcome {
            Ok(resp) => {
                tracing::debug!(
                    status = resp.status().as_u16(),
                    %method,
                    %peer,
                    request_id = request_id.to_str().unwrap_or(""),
                    "request"
                );
                resp
            }
            Err(rejection) => {
                self.metrics.denied(rejection);
                tracing::info!(
                    reason = rejection.label(),
                    status = rejection.status().as_u16(),
                    %method,
                    %peer,
                    request_id = request_id.to_str().unwrap_or(""),
                    "request denied"
                );
                let mut resp = respond::rejection_for(rejection, grpc);
                resp.headers_mut()
                    .insert(rewrite::X_REQUEST_ID.clone(), request_id);
                resp
            }
        }
    }

    /// The request's path, one phase per line.
    async fn process(
        &self,
        mut req: Request<Incoming>,
        client: &ClientConnection,
        deadline: Option<(Instant, std::time::Duration)>,
        request_id: &http::HeaderValue,
    ) -> Result<Response<Body>, Rejection> {
        let conn = &client.conn;
        // One view of the hot state for the whole request.
        let mut snap = self.cell.load_full();
        // Normalize: the method, path and query we authorize are what the upstream gets.
        let target = normalize_request(&snap, &mut req)?;
        let path = target.path();
        // Extract → validate (cache, keys) → authorize, in `decide`, shared with `explain`.
        let decision = self
            .decide_with_refresh(&mut snap, req.headers(), path, req.method())
            .await;
        // Enforce, or in report mode forward and report.
        let identity = self.enforce(decision, req.method(), path, conn, request_id)?;
        // /.auth/me is answered here, never forwarded.
        if let (Some(id), true) = (&identity, is_auth_me(path)) {
            self.metrics.allowed();
            return Ok(auth_me(req.method(), id));
        }
        // Rewrite: strip what the client may not set, set the identity, pick the protocol.
        let outbound = rewrite_request(&snap, req, target, identity.as_deref(), client)?;
        // Forward; the response comes back through `handle`.
        self.forward(&snap, outbound, identity.is_some(), client, deadline)
            .await
    }

    /// What a decision lets through: the identity to forward (none when anonymous), or the
    /// refusal. A report-only refusal is logged as `would deny`, counted, and let through.
    fn enforce(
        &self,
        decision: Decision,
        method: &Method,
        path: &str,
        conn: &Conn,
        request_id: &http::HeaderValue,
    ) -> Result<Option<Arc<CachedIdentity>>, Rejection> {
        match decision {
            Decision::Anonymous => Ok(None),
            Decision::Allow(id) => Ok(Some(id)),
            // /.auth/me is ours, not the callee's: nothing to roll out there.
            Decision::Deny { reason, .. } if is_auth_me(path) => Err(reason),
            Decision::Deny {
                reason,
                report_only: false,
                ..
            } => Err(reason),
            Decision::Deny {
                reason,
                identity,
                report_only: true,
            } => {
                self.metrics.report_only_denial(reason);
                tracing::warn!(
                    reason = reason.label(),
                    status = reason.status().as_u16(),
                    %method,
                    path,
                    peer = %conn.peer,
                    identity = identity.is_some(),
                    request_id = request_id.to_str().unwrap_or(""),
                    "would deny"
                );
                Ok(identity)
            }
        }
    }

    /// Decides, and after an unknown `kid` waits once for a bounded key refresh, then decides
    /// again with the refreshed snapshot.
    async fn decide_with_refresh(
        &self,
        snap: &mut Arc<Snapshot>,
        headers: &HeaderMap,
        path: &str,
        method: &Method,
    ) -> Decision {
        let first = self.decide(snap, headers, path, method, unix_now());
        let Decision::Deny {
            reason: Rejection::UnknownKeyId,
            ..
        } = first
        else {
            return first;
        };
        let k = &snap.policy.key_refresh;
        if !self
            .key_fetcher
            .unknown_kid(k.unknown_kid_cooldown, k.unknown_kid_wait)
            .await
        {
            return first;
        }
        *snap = self.cell.load_full();
        self.decide(snap, headers, path, method, unix_now())
    }

    /// The policy's decision for a request to the normalized `path`: anonymous access, token
    /// validation, route audiences, tenants, allow-lists, rules, and report mode. Synchronous:
    /// it never waits on anything. This is the proxy's only decision code; `tokengate explain`
    /// calls it too.
    pub fn decide(
        &self,
        snap: &Snapshot,
        headers: &HeaderMap,
        path: &str,
        method: &Method,
        now: u64,
    ) -> Decision {
        let auth = &snap.policy.auth;
        // Every method the callee may run this request as must pass (a POST body's `_method`).
        let overrides = authorize::dispatched_as(auth, method, headers);
        let methods = || std::iter::once(method).chain(overrides);
        if methods().all(|m| authorize::access(auth, path, m) == Access::Anonymous)
            && !is_auth_me(path)
        {
            return Decision::Anonymous;
        }
        let report_all = auth.mode == Mode::Report;
        let deny = |reason: Rejection, identity| Decision::Deny {
            reason,
            identity,
            report_only: report_all && reason.reportable(),
        };
        let token = match extract::bearer_token(headers, auth.max_token_size) {
            Ok(token) => token,
            Err(reason) => return deny(reason, None),
        };
        let id = match self.validate(snap, token, now) {
            Ok(id) => id,
            Err(reason) => return deny(reason, None),
        };
        if let Err(reason) =
            methods().try_for_each(|m| authorize::authorize(auth, &id.identity, path, m))
        {
            let identity = reason.token_accepted().then(|| id.clone());
            return deny(reason, identity);
        }
        if methods().any(|m| authorize::has_report_rule(auth, path, m)) {
            if let Err(reason) =
                methods().try_for_each(|m| authorize::report(auth, &id.identity, path, m))
            {
                return Decision::Deny {
                    reason,
                    identity: Some(id),
                    report_only: true,
                };
            }
        }
        Decision::Allow(id)
    }

    /// Token → verified, authorized (enforced checks) identity. Synchronous.
    pub fn authenticate(
        &self,
        snap: &Snapshot,
        headers: &HeaderMap,
        path: &str,
        method: &Method,
        now: u64,
    ) -> Result<Arc<CachedIdentity>, Rejection> {
        let auth = &snap.policy.auth;
        let token = extract::bearer_token(headers, auth.max_token_size)?;
        let entry = self.validate(snap, token, now)?;
        let overrides = authorize::dispatched_as(auth, method, headers);
        std::iter::once(method)
            .chain(overrides)
            .try_for_each(|m| authorize::authorize(auth, &entry.identity, path, m))?;
        Ok(entry)
    }

    /// The validate phase: token → verified identity, from the cache or validated against the
    /// snapshot's keys and cached. Which route accepts it is decided by `authorize`, on every
    /// request.
    fn validate(
        &self,
        snap: &Snapshot,
        token: &str,
        now: u64,
    ) -> Result<Arc<CachedIdentity>, Rejection> {
        let keys = match &snap.keys {
            SigningKeys::Loaded(k) => k,
            SigningKeys::Pending => {
                extract::credential(token)?;
                return Err(Rejection::NoSigningKeys);
            }
        };
        let (hit, _) = self.cache.get(token, keys, snap.policy_generation, now);
        self.metrics.cache(hit.is_some());
        if let Some(entry) = hit {
            return Ok(entry);
        }
        // Checked once per distinct token: a cached one passed this when it was validated.
        extract::credential(token)?;
        let entry = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let verified = validate(token, &snap.validation(), keys, now, &mut scratch)?;
            CachedIdentity::new(token, &verified, snap.policy_generation)
                .map_err(|_| Rejection::MalformedToken)
        })?;
        let entry = Arc::new(entry);
        let evicted = self.cache.insert(entry.clone(), now);
        self.metrics.cache_evicted(evicted);
        Ok(entry)
    }

    /// The forward phase: sends the rewritten request (pooled, bounded by `upstream.timeout` or
    /// a shorter client deadline), counts it, and for an accepted WebSocket handshake splices the
    /// two connections.
    async fn forward(
        &self,
        snap: &Snapshot,
        outbound: Outbound,
        authenticated: bool,
        client: &ClientConnection,
        deadline: Option<(Instant, std::time::Duration)>,
    ) -> Result<Response<Body>, Rejection> {
        let conn = &client.conn;
        let up = &snap.policy.upstream;
        let Outbound {
            request,
            protocol,
            client_upgrade,
        } = outbound;
        // A client deadline shorter than upstream.timeout replaces it.
        let deadline = deadline.filter(|(_, t)| *t < up.timeout).map(|(at, _)| at);
        // A WebSocket handshake ends its upstream connection's HTTP life: never a worker's own.
        let pool = match client_upgrade {
            None => Pool::Worker,
            Some(_) => Pool::Shared,
        };
        let (mut resp, took) = self
            .upstream
            .send(request, protocol, pool, up.timeout, deadline)
            .await?;
        self.metrics.upstream(resp.status(), took.as_secs_f64());
        match authenticated {
            true => self.metrics.allowed(),
            false => self.metrics.anonymous(),
        }
        rewrite::strip_hop_by_hop(resp.headers_mut());
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_none() {
            // Only a WebSocket handshake we forwarded may switch protocols.
            tracing::warn!("upstream answered 101 to a request that asked for no upgrade");
            return Err(Rejection::UpstreamUnavailable);
        }
        if let (Some(client), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, resp.status()) {
            let upstream = hyper::upgrade::on(&mut resp);
            conn.state.upgraded();
            upgrade::restore_headers(resp.headers_mut());
            upgrade::spawn_splice(
                client,
                upstream,
                snap.policy.request_limits.upgrade_idle_timeout,
                self.metrics.clone(),
            );
        }
        Ok(resp.map(Either::Left))
    }
}

/// The rewrite phase: strips what a client may not send (credentials, client identity and
/// front-end headers, hop-by-hop), sets the caller's identity and the forwarding headers, and
/// chooses the upstream protocol (a WebSocket handshake claims the client's upgrade here, before
/// the request is taken apart). The body cap is attached here too.
fn rewrite_request(
    snap: &Snapshot,
    req: Request<Incoming>,
    target: Uri,
    identity: Option<&CachedIdentity>,
    client: &ClientConnection,
) -> Result<Outbound, Rejection> {
    let conn = &client.conn;
    let up = &snap.policy.upstream;
    let mut req = req;
    // A WebSocket handshake goes over HTTP/1.1 whatever upstream.protocol says; the
    // client's side of the upgrade is claimed now, before the request is taken apart.
    let websocket = upgrade::is_websocket(&req);
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let protocol = match websocket {
        true => Protocol::Http1,
        false => Protocol::choose(up.protocol, req.version()),
    };
    let (mut parts, body) = req.into_parts();
    // `te: trailers` is hop-by-hop, but an HTTP/2 upstream (gRPC) needs to hear that the
    // client accepts trailers; it is the only TE value HTTP/2 allows.
    let wants_trailers = protocol == Protocol::Http2 && accepts_trailers(&parts.headers);
    // The authority the client addressed: Host for HTTP/1.1, :authority for h2.
    let client_host = parts
        .headers
        .get(http::header::HOST)
        .cloned()
        .or_else(|| parts.uri.authority().and_then(|a| a.as_str().parse().ok()));

    let headers = &mut parts.headers;
    let scheme = match &conn.tls {
        Some(_) => rewrite::Scheme::Https,
        None => rewrite::Scheme::Http,
    };
    rewrite::request_headers(
        headers,
        &rewrite::Outgoing {
            identity: identity.map(|id| &id.headers),
            token: identity.filter(|_| up.forward_token).map(|id| id.token()),
            peer: &client.peer,
            client_host: client_host.as_ref(),
            scheme,
            client_cert: conn.tls.as_ref().and_then(|t| t.client_cert.as_ref()),
            trust_forwarded: up.trust_forwarded_headers,
        },
    );
    if websocket {
        // The handshake's own hop-by-hop pair, stripped above with the rest.
        upgrade::restore_headers(headers);
    }
    headers.remove(http::header::HOST);
    if wants_trailers {
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    // Over HTTP/2 the upstream's :authority comes from upstream.url; a differing `host`
    // field beside it would be a malformed request (RFC 9113 §8.3.1), so none is sent.
    let host = if up.preserve_host { client_host } else { None };
    let host = host.or_else(|| up.host.clone());
    if let (Some(h), Protocol::Http1) = (host, protocol) {
        headers.insert(http::header::HOST, h);
    }
    parts.uri = target;
    parts.version = protocol.version();
    let body = forward::limit_body(
        &parts.headers,
        body,
        snap.policy.request_limits.max_body_bytes,
    )?;
    Ok(Outbound {
        request: Request::from_parts(parts, body),
        protocol,
        client_upgrade,
    })
}

/// A request ready for the upstream: rewritten, capped, with its protocol and, for a WebSocket
/// handshake, the client's side of the upgrade.
struct Outbound {
    request: Request<forward::UpstreamBody>,
    protocol: Protocol,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// The normalize phase: refuses a method or `_method` query frameworks read differently, marks a
/// POST known to be bodiless as such, and returns the upstream URI with the normalized path.
fn normalize_request(snap: &Snapshot, req: &mut Request<Incoming>) -> Result<Uri, Rejection> {
    // One reading of the method, shared by us and every framework behind us.
    authorize::screen_method(req.method())?;
    authorize::screen_override(req.uri().query())?;
    // A POST known to have no body says so, so that our reading of a possible `_method` body
    // field (`authorize::dispatched_as`) and the upstream's agree there is none.
    if req.method() == Method::POST
        && req.body().is_end_stream()
        && !req.headers().contains_key(http::header::CONTENT_LENGTH)
    {
        req.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static("0"),
        );
    }
    upstream_target(snap, req.uri())
}

/// The upstream URI for a request: upstream scheme and authority, normalized path, query as sent.
/// A path already in normal form (the usual case) is reused as received, without a copy.
fn upstream_target(snap: &Snapshot, uri: &Uri) -> Result<Uri, Rejection> {
    let path = normalize::normalize(uri.path()).map_err(|_| Rejection::InvalidPath)?;
    let pq = match (path, uri.path_and_query()) {
        (Cow::Borrowed(_), Some(pq)) => pq.clone(),
        (path, _) => {
            let pq = match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.into_owned(),
            };
            PathAndQuery::from_maybe_shared(pq).map_err(|_| Rejection::InvalidPath)?
        }
    };
    let base = &snap.policy.upstream.url;
    let mut parts = http::uri::Parts::default();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts).map_err(|_| Rejection::InvalidPath)
}

/// Whether the client's `TE` lists `trailers`.
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

fn is_auth_me(path: &str) -> bool {
    path.eq_ignore_ascii_case(AUTH_ME)
}

fn auth_me(method: &Method, id: &CachedIdentity) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return respond::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    respond::json(StatusCode::OK, id.me_json())
}

/// Seconds since the Unix epoch (0 if the clock is before it, which fails every token closed).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
