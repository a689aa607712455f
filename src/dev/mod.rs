//! A local identity provider and echo upstream, for `tokengate dev`, the tests and the benches.
//!
//! [`DevIssuer`] makes real key pairs at start (RSA-2048 and P-256) and signs real JWS tokens
//! shaped like Entra ID's. [`IdpServer`] serves its OIDC discovery document and JWKS over HTTP on
//! loopback, and can be told to misbehave (fail, hang, return garbage) so the proxy can be tested
//! against a real server doing what real IdPs do on a bad day. Nothing here is used by the proxy
//! itself when it runs with a config file.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub mod fixture;
pub mod token;
pub mod ws_echo;

/// The tenant id the dev issuer pretends to be.
pub const DEV_TENANT: &str = "00000000-0000-4000-8000-00000000c0de";
/// The audience dev tokens are minted for.
pub const DEV_AUDIENCE: &str = "api://tokengate-dev";
/// The calling application id in dev tokens.
pub const DEV_CALLER_APP: &str = "11111111-1111-4111-8111-111111111111";
/// The calling principal's object id in dev tokens.
pub const DEV_CALLER_OID: &str = "22222222-2222-4222-8222-222222222222";

/// The v1 issuer for `tenant`.
pub fn v1_issuer(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

/// The v2 issuer for `tenant`.
pub fn v2_issuer(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

/// A signing key of the dev issuer.
pub enum SigningKey {
    /// RSA-2048.
    Rsa(RsaKeyPair),
    /// ECDSA P-256.
    Ec(EcdsaKeyPair),
}

impl SigningKey {
    /// A fresh RSA-2048 key.
    pub fn rsa() -> SigningKey {
        SigningKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"))
    }

    /// A fresh P-256 key.
    pub fn ec() -> SigningKey {
        SigningKey::Ec(
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("EC key generation"),
        )
    }

    /// The public JWK (no `alg`, like Entra's, unless `alg` is given).
    pub fn jwk(&self, kid: &str, alg: Option<&str>) -> Value {
        let mut jwk = match self {
            SigningKey::Rsa(k) => {
                let pk = k.public_key();
                json!({
                    "kty": "RSA", "use": "sig", "kid": kid,
                    "n": URL_SAFE_NO_PAD.encode(pk.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(pk.exponent().big_endian_without_leading_zero()),
                })
            }
            SigningKey::Ec(k) => {
                let point = k.public_key().as_ref();
                json!({
                    "kty": "EC", "use": "sig", "kid": kid, "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                })
            }
        };
        if let Some(a) = alg {
            jwk["alg"] = json!(a);
        }
        jwk
    }

    /// The public key as PEM SubjectPublicKeyInfo (for HAProxy's `jwt_verify` in the benches).
    pub fn public_pem(&self) -> String {
        use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
        let der: PublicKeyX509Der<'static> = match self {
            SigningKey::Rsa(k) => k.public_key().as_der().expect("DER"),
            SigningKey::Ec(k) => k.public_key().as_der().expect("DER"),
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Signs `header.payload` with `alg` (`RS256`, `RS384`, `RS512`, `PS256` for RSA; `ES256`).
    pub fn sign(&self, alg: &str, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            SigningKey::Rsa(k) => {
                let enc: &'static dyn signature::RsaEncoding = match alg {
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(enc, &rng, input.as_bytes(), &mut sig)
                    .expect("RSA sign");
                sig
            }
            SigningKey::Ec(k) => k
                .sign(&rng, input.as_bytes())
                .expect("EC sign")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// A local issuer with one RSA and one EC key.
pub struct DevIssuer {
    /// Tenant id used in issuers.
    pub tenant: String,
    /// RSA key, published as `rsa-1`.
    pub rsa: SigningKey,
    /// EC key, published as `ec-1`.
    pub ec: SigningKey,
}

impl DevIssuer {
    /// Makes fresh keys.
    pub fn generate() -> DevIssuer {
        DevIssuer {
            tenant: DEV_TENANT.into(),
            rsa: SigningKey::rsa(),
            ec: SigningKey::ec(),
        }
    }

    /// The JWKS with both keys.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.rsa.jwk("rsa-1", None), self.ec.jwk("ec-1", None)] })
    }

    /// Claims of a v2 app-only token (what a managed identity gets), valid for an hour.
    pub fn v2_claims(&self, roles: &[&str]) -> Value {
        let now = crate::pipeline::unix_now();
        json!({
            "aud": DEV_AUDIENCE,
            "iss": v2_issuer(&self.tenant),
            "iat": now, "nbf": now, "exp": now + 3600,
            "azp": DEV_CALLER_APP,
            "azpacr": "2",
            "oid": DEV_CALLER_OID,
            "sub": DEV_CALLER_OID,
            "tid": self.tenant,
            "roles": roles,
            "ver": "2.0",
        })
    }

    /// Claims of a v1 app-only token.
    pub fn v1_claims(&self, roles: &[&str]) -> Value {
        let now = crate::pipeline::unix_now();
        json!({
            "aud": DEV_AUDIENCE,
            "iss": v1_issuer(&self.tenant),
            "iat": now, "nbf": now, "exp": now + 3600,
            "appid": DEV_CALLER_APP,
            "appidacr": "2",
            "idp": v1_issuer(&self.tenant),
            "oid": DEV_CALLER_OID,
            "sub": DEV_CALLER_OID,
            "tid": self.tenant,
            "roles": roles,
            "ver": "1.0",
        })
    }

    /// An RS256 token over `claims`, signed with `rsa-1`.
    pub fn rs256(&self, claims: &Value) -> String {
        self.rsa.sign(
            "RS256",
            &json!({"alg":"RS256","typ":"JWT","kid":"rsa-1"}),
            claims,
        )
    }

    /// An ES256 token over `claims`, signed with `ec-1`.
    pub fn es256(&self, claims: &Value) -> String {
        self.ec.sign(
            "ES256",
            &json!({"alg":"ES256","typ":"JWT","kid":"ec-1"}),
            claims,
        )
    }
}

/// An Entra-shaped policy with allow-lists and three role rules, for the benches and the
/// allocation proof: what is measured is exactly what is proved allocation-free. `head` holds
/// the sections before `[auth]` (at least `[upstream]`), `tail` those after it.
pub fn reference_policy_toml(issuer: &DevIssuer, head: &str, jwks_uri: &str, tail: &str) -> String {
    format!(
        r#"{head}
[auth]
jwks_uri = "{jwks_uri}"
issuers = ["{v1}", "{v2}"]
audiences = ["api://other", "{DEV_AUDIENCE}"]
algorithms = ["RS256", "ES256"]
allowed_applications = ["33333333-3333-4333-8333-333333333333", "{DEV_CALLER_APP}"]
allowed_principals = ["44444444-4444-4444-8444-444444444444", "{DEV_CALLER_OID}"]
excluded_paths = ["/public", "/healthz"]
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
[[auth.rules]]
path = "/api"
methods = ["GET", "HEAD"]
roles = ["App.Read", "App.Write"]
[[auth.rules]]
path = "/api/orders"
roles = ["Orders.Read"]
{tail}
"#,
        v1 = v1_issuer(&issuer.tenant),
        v2 = v2_issuer(&issuer.tenant),
    )
}

/// How the [`IdpServer`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpMode {
    /// Serve discovery and JWKS.
    Healthy,
    /// Answer 500 to everything.
    Failing,
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Accept, then never answer.
    Hanging,
}

/// A discovery + JWKS server on loopback whose answers tests can change.
pub struct IdpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<(IdpMode, Value)>>,
    jwks_hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl IdpServer {
    /// Serves `jwks` on `127.0.0.1:0` at `/keys`, with discovery at
    /// `/.well-known/openid-configuration`.
    pub async fn start(jwks: Value) -> std::io::Result<IdpServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new((IdpMode::Healthy, jwks)));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let (st, hits) = (state.clone(), jwks_hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, hits) = (st.clone(), hits.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (st, hits) = (st.clone(), hits.clone());
                        async move { Ok::<_, Infallible>(idp_answer(req, addr, &st, &hits).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(IdpServer {
            addr,
            state,
            jwks_hits,
            task,
        })
    }

    /// The discovery URL.
    pub fn discovery_url(&self) -> String {
        format!("http://{}/.well-known/openid-configuration", self.addr)
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/keys", self.addr)
    }

    /// Changes how it answers.
    pub fn set_mode(&self, mode: IdpMode) {
        self.state.lock().expect("idp state").0 = mode;
    }

    /// Changes the published keys.
    pub fn set_jwks(&self, jwks: Value) {
        self.state.lock().expect("idp state").1 = jwks;
    }

    /// How many JWKS requests it has received.
    pub fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

impl Drop for IdpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn idp_answer(
    req: Request<Incoming>,
    addr: SocketAddr,
    state: &Mutex<(IdpMode, Value)>,
    hits: &AtomicUsize,
) -> Response<Full<Bytes>> {
    let (mode, jwks) = state.lock().expect("idp state").clone();
    if req.uri().path() == "/keys" {
        hits.fetch_add(1, Ordering::SeqCst);
    }
    let respond = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    match mode {
        IdpMode::Failing => return respond(StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
        IdpMode::Garbage => return respond(StatusCode::OK, "<html>not json".into()),
        IdpMode::Hanging => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        IdpMode::Healthy => {}
    }
    let path = req.uri().path();
    // Discovery at the root and, like Entra, under `/<tenant>/v2.0/` and the multi-tenant
    // `/common/v2.0/` and `/organizations/v2.0/`, whose issuer is the `{tenantid}` template.
    if let Some(prefix) = path.strip_suffix("/.well-known/openid-configuration") {
        let tenant = prefix
            .trim_start_matches('/')
            .split('/')
            .next()
            .filter(|t| !t.is_empty())
            .unwrap_or(DEV_TENANT);
        let tenant = match tenant {
            "common" | "organizations" => "{tenantid}",
            t => t,
        };
        return respond(
            StatusCode::OK,
            json!({
                "issuer": v2_issuer(tenant),
                "jwks_uri": format!("http://{addr}/keys"),
                "id_token_signing_alg_values_supported": ["RS256"],
            })
            .to_string(),
        );
    }
    match path {
        "/keys" => respond(StatusCode::OK, jwks.to_string()),
        _ => respond(StatusCode::NOT_FOUND, String::new()),
    }
}

/// An upstream that answers every request with a JSON echo of what reached it; a WebSocket
/// handshake is accepted, its headers sent as the first text frame, then frames are echoed.
pub async fn serve_echo(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(|mut req: Request<Incoming>| async move {
                let headers: serde_json::Map<String, Value> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
                    .collect();
                if let Some(key) = req.headers().get("sec-websocket-key").cloned() {
                    let on_upgrade = hyper::upgrade::on(&mut req);
                    let greeting =
                        serde_json::to_string(&json!({ "headers": headers })).unwrap_or_default();
                    tokio::spawn(async move {
                        if let Ok(upgraded) = on_upgrade.await {
                            ws_echo::echo(TokioIo::new(upgraded), &greeting).await;
                        }
                    });
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                    let h = r.headers_mut();
                    h.insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("upgrade"),
                    );
                    h.insert(
                        http::header::UPGRADE,
                        http::HeaderValue::from_static("websocket"),
                    );
                    if let Ok(v) = http::HeaderValue::from_str(&ws_echo::accept_key(key.as_bytes()))
                    {
                        h.insert("sec-websocket-accept", v);
                    }
                    return Ok::<_, Infallible>(r);
                }
                let (parts, body) = req.into_parts();
                let body_len = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes().len())
                    .unwrap_or(0);
                let doc = json!({
                    "method": parts.method.as_str(),
                    "uri": parts.uri.to_string(),
                    "headers": headers,
                    "body_bytes": body_len,
                });
                let mut r = Response::new(Full::new(Bytes::from(
                    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
                )));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(r)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// `tokengate dev`: issuer, echo upstream and proxy in one process; prints a working `curl`.
pub async fn run(listen: SocketAddr, admin: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let issuer = Arc::new(DevIssuer::generate());
    let idp = IdpServer::start(issuer.jwks()).await?;
    let tokens = token::DevTokenServer::start(issuer.clone()).await?;
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    tokio::spawn(serve_echo(echo));
    // The caller side's secret lives in a directory of its own, gone with the process's tmp.
    let secret_dir = std::env::temp_dir().join(format!("tokengate-dev-{}", std::process::id()));
    std::fs::create_dir_all(&secret_dir)?;
    let secret_file = secret_dir.join("identity-secret");
    // The egress route calls this process's own callee side, over loopback, so the callee's
    // port must be known before start: `--listen ...:0` gets a free one picked here.
    let mut listen = listen;
    if listen.port() == 0 {
        listen.set_port(
            TcpListener::bind((listen.ip(), 0))
                .await?
                .local_addr()?
                .port(),
        );
    }
    let mut callee_addr = listen;
    if callee_addr.ip().is_unspecified() {
        callee_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }

    let text = format!(
        r#"
[listen]
address = "{listen}"
[upstream]
url = "http://{echo_addr}"
[admin]
address = "{admin}"
[auth]
openid_configuration = "{discovery}"
issuers = ["{v1}", "{v2}"]
audiences = ["{DEV_AUDIENCE}"]
algorithms = ["RS256", "ES256"]
excluded_paths = ["/public"]
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
# Being rolled out: not enforced yet, refusals only logged (`would deny`) and counted.
[[auth.rules]]
path = "/beta"
roles = ["Beta.Tester"]
mode = "report"

# The caller side: tokens from the dev issuer, for apps and for calls through the egress route.
[identity]
source = "dev"
authority_host = "{dev_authority}"
dev_roles = ["App.Read"]
[identity_endpoint]
address = "127.0.0.1:0"
secret_file = "{secret}"
[[egress]]
listen = "127.0.0.1:0"
upstream = "http://{callee_addr}"
resource = "{DEV_AUDIENCE}"
"#,
        discovery = idp.discovery_url(),
        v1 = v1_issuer(&issuer.tenant),
        v2 = v2_issuer(&issuer.tenant),
        dev_authority = tokens.authority(),
        secret = secret_file.display(),
    );
    let config = crate::SidecarConfig::from_toml(&text)?;
    // Written out so `tokengate explain --config` can be shown against the same policy.
    let config_file =
        std::env::temp_dir().join(format!("tokengate-dev-{}.toml", std::process::id()));
    std::fs::write(&config_file, &text)?;
    let endpoint_config = config
        .caller
        .as_ref()
        .and_then(|c| c.endpoint.clone())
        .ok_or("dev config has an identity endpoint")?;
    let running = crate::start_sidecar(config).await?;
    while !running.ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reader = issuer.rs256(&issuer.v2_claims(&["App.Read"]));
    let admin_token = issuer.es256(&issuer.v1_claims(&["App.Admin"]));
    let mut expired = issuer.v2_claims(&["App.Admin"]);
    expired["exp"] = json!(crate::pipeline::unix_now().saturating_sub(7200));
    let expired = issuer.rs256(&expired);
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "tokengate".into());
    let cfg = config_file.display();
    let base = format!("http://{}", running.public_addr);
    println!(
        "tokengate dev: local issuer {}, echo upstream {echo_addr}",
        idp.addr
    );
    println!("proxy on {base}, admin on http://{}", running.admin_addr);
    println!();
    println!("# a valid v2 RS256 token (role App.Read): 200, identity headers in the echo");
    println!("curl -s -H 'Authorization: Bearer {reader}' {base}/hello");
    println!();
    println!("# the same token on /admin (needs App.Admin): 403");
    println!("curl -si -H 'Authorization: Bearer {reader}' {base}/admin");
    println!();
    println!("# a v1 ES256 token with App.Admin: 200");
    println!("curl -s -H 'Authorization: Bearer {admin_token}' {base}/admin");
    println!();
    println!("# gRPC refusals are gRPC statuses (trailers-only, HTTP 200): grpc-status 16");
    println!("# UNAUTHENTICATED without a token, 7 PERMISSION_DENIED without the role (grpcurl -plaintext");
    println!("# -H 'authorization: Bearer <token>' ... shows the same against a gRPC callee)");
    println!("curl -si --http2-prior-knowledge -X POST -H 'content-type: application/grpc' {base}/echo.Echo/Say");
    println!("curl -si --http2-prior-knowledge -X POST -H 'content-type: application/grpc' -H 'Authorization: Bearer {reader}' {base}/admin/echo.Echo/Say");
    println!();
    println!("# WebSocket: authorized like any request, then spliced to the echo (pip install websockets)");
    println!(
        "python3 -c \"from websockets.sync.client import connect\nwith connect('ws://{}/ws', \
         additional_headers={{'Authorization': 'Bearer {reader}'}}) as ws: print(ws.recv()); \
         ws.send('hello'); print(ws.recv())\"",
        running.public_addr
    );
    println!();
    println!("# no token: 401; anonymous prefix /public: 200");
    println!("curl -si {base}/hello; curl -s {base}/public/x");
    println!();
    println!("# report mode: the /beta rule (needs Beta.Tester) has mode = \"report\": the reader");
    println!("# token is forwarded (200, identity headers in the echo), logged as `would deny`");
    println!("# and counted in tokengate_report_only_denials_total{{reason=\"missing_role\"}}");
    println!("curl -s -H 'Authorization: Bearer {reader}' {base}/beta/x");
    println!(
        "curl -s http://{}/metrics | grep report_only",
        running.admin_addr
    );
    println!();
    println!("# explain: decoded token, the keys that verify it, and the proxy's verdict");
    println!("# verdict: deny missing_role (403), exit 1");
    println!("{exe} explain --config {cfg} --path /admin --method POST {reader}");
    println!("# verdict: deny token_expired (401), exit 1");
    println!("{exe} explain --config {cfg} --path /hello {expired}");
    println!();
    println!("# who am I (EasyAuth /.auth/me), readiness and metrics");
    println!("curl -s -H 'Authorization: Bearer {reader}' {base}/.auth/me");
    println!(
        "curl -s http://{}/readyz; curl -s http://{}/metrics",
        running.admin_addr, running.admin_addr
    );
    println!();
    if let Some(caller) = running.caller() {
        let mut endpoint = endpoint_config;
        if let Some(a) = caller.endpoint_addr {
            endpoint.address = a;
        }
        let exports = crate::caller::identity_env(&endpoint)?;
        println!("# the caller side: an app's calls through the egress route get a token attached");
        for egress in &caller.egress_addrs {
            println!("curl -s http://{egress}/hello    # the echo shows X-MS-CLIENT-PRINCIPAL-ID");
        }
        println!();
        println!("# unmodified apps (azure-identity, MSAL) find the identity endpoint with:");
        print!("{exports}");
        println!(
            "curl -s -H \"X-IDENTITY-HEADER: $IDENTITY_HEADER\" \
             \"$IDENTITY_ENDPOINT?api-version=2019-08-01&resource={DEV_AUDIENCE}\""
        );
        println!();
    }
    println!("Ctrl-C to stop.");
    crate::wait_for_shutdown_signal().await;
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&secret_dir);
    let _ = std::fs::remove_file(&config_file);
    Ok(())
}
