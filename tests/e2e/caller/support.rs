//! Real parts for the caller side's tests: the binary as a child process, a mock Entra token
//! endpoint that checks every form field and verifies client assertions, a mock IMDS that fails
//! on script, a stub `az`, and throwaway directories.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::process::Process;
use crate::support::{client, Reply};
pub use tokengate::dev::DevIssuer;

pub use crate::process::BIN;
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT_ID: &str = "5e3c3f3a-0b1f-4c7e-9a57-1d2c3b4a5f60";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A directory removed when dropped.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tokengate-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir(path)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        // Write-then-rename, like the kubelet's atomic projected-volume updates.
        let tmp = self.path(&format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real binary, running a config written into a directory of its own.
pub struct Sidecar {
    process: Process,
    pub public: Option<SocketAddr>,
    pub endpoint: Option<SocketAddr>,
    pub egress: Vec<SocketAddr>,
    pub dir: TestDir,
}

impl Sidecar {
    /// Writes `config` to a fresh directory (`{dir}` in it is replaced by that directory) and
    /// starts `tokengate --config` with `env`, at log level `level`.
    pub fn start(config: &str, env: &[(&str, &str)], level: &str) -> Sidecar {
        let dir = TestDir::new("sidecar");
        let text = config.replace("{dir}", dir.0.to_str().unwrap());
        let path = dir.write("tokengate.toml", &text);
        let process = Process::start_at(&path, env, level);
        Sidecar {
            public: Some(process.public).filter(|a| a.port() != 0),
            endpoint: process.endpoint,
            egress: process.egress.clone(),
            process,
            dir,
        }
    }

    /// Rewrites the config file (`{dir}` replaced as at start) and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        let text = config.replace("{dir}", self.dir.0.to_str().unwrap());
        self.dir.write("tokengate.toml", &text);
        self.process.signal("-HUP");
    }

    /// Every log line so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// Whether a log line containing `needle` shows up within 5 s.
    pub fn wait_log(&self, needle: &str) -> bool {
        self.process.has_logged(needle)
    }

    /// The App Service protocol's URL.
    pub fn identity_endpoint(&self) -> String {
        format!("http://{}/msi/token", self.endpoint.unwrap())
    }

    /// The identity secret the sidecar created.
    pub fn secret(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.path(file))
            .unwrap()
            .trim()
            .to_string()
    }

    /// GET the App Service protocol for `resource` with `secret`.
    pub async fn app_service(&self, resource: &str, secret: Option<&str>, extra: &str) -> Reply {
        let mut b = Request::get(format!(
            "{}?api-version=2019-08-01&resource={}{extra}",
            self.identity_endpoint(),
            tokengate::caller::form::encode(resource)
        ));
        if let Some(s) = secret {
            b = b.header("X-IDENTITY-HEADER", s);
        }
        send(b.body(Full::default()).unwrap()).await
    }

    /// The value of one admin metric series (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        self.process.metric(series).await
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        self.process.wait_ready().await
    }
}

pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    let resp = client().request(req).await.expect("answers");
    Reply::read(resp).await
}

/// What the mock Entra expects as the client assertion.
#[derive(Clone)]
pub enum Expect {
    /// This exact federated token.
    Federated(String),
    /// A PS256 JWT signed by the key whose RSAPublicKey DER is given, with this `x5t#S256`.
    Certificate { public_key: Vec<u8>, x5t: String },
}

/// The mock Entra's state, changed by tests while it runs.
pub struct EntraState {
    pub expect: Expect,
    pub expires_in: u64,
    pub roles: Vec<String>,
    /// Answer 503 to everything (the authority is down).
    pub down: bool,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Token requests received.
    pub hits: usize,
    /// Check failures, each a reason (empty when every request was right).
    pub errors: Vec<String>,
    /// Tokens handed out.
    pub issued: Vec<String>,
    /// Assertions received.
    pub assertions: Vec<String>,
    jtis: HashSet<String>,
}

/// A mock of Entra's v2 token endpoint for one tenant and client.
pub struct MockEntra {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<EntraState>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockEntra {
    pub async fn start(expect: Expect, issuer: Arc<DevIssuer>) -> MockEntra {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(EntraState {
            expect,
            expires_in: 3599,
            roles: vec![],
            down: false,
            delay: Duration::ZERO,
            hits: 0,
            errors: vec![],
            issued: vec![],
            assertions: vec![],
            jtis: HashSet::new(),
        }));
        let (st, iss) = (state.clone(), issuer);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, iss) = (st.clone(), iss.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (st, iss) = (st.clone(), iss.clone());
                        async move { Ok::<_, Infallible>(entra_answer(req, addr, &st, &iss).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        MockEntra { addr, state, task }
    }

    pub fn authority(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.state.lock().unwrap().hits
    }

    #[track_caller]
    pub fn assert_no_errors(&self) {
        let s = self.state.lock().unwrap();
        assert!(s.errors.is_empty(), "mock Entra saw: {:?}", s.errors);
    }

    pub fn set(&self, f: impl FnOnce(&mut EntraState)) {
        f(&mut self.state.lock().unwrap());
    }
}

impl Drop for MockEntra {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn entra_answer(
    req: Request<Incoming>,
    addr: SocketAddr,
    state: &Mutex<EntraState>,
    issuer: &DevIssuer,
) -> Response<Full<Bytes>> {
    let (down, delay) = {
        let s = state.lock().unwrap();
        (s.down, s.delay)
    };
    tokio::time::sleep(delay).await;
    if down {
        return json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "temporarily_unavailable", "error_description": "AADSTS90000: down"}),
        );
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let mut s = state.lock().unwrap();
    s.hits += 1;
    let checked = check_request(&parts, &body, addr, &mut s);
    match checked {
        Err(reason) => {
            s.errors.push(reason.clone());
            json_reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_client", "error_description": reason}),
            )
        }
        Ok(resource) => {
            let now = tokengate::pipeline::unix_now();
            let claims = json!({
                "aud": resource,
                "iss": tokengate::dev::v2_issuer(tokengate::dev::DEV_TENANT),
                "iat": now, "nbf": now, "exp": now + s.expires_in,
                "azp": CLIENT_ID, "azpacr": "2",
                "oid": "0f9d1c2b-3a4e-4f5a-8b6c-7d8e9f0a1b2c",
                "sub": "0f9d1c2b-3a4e-4f5a-8b6c-7d8e9f0a1b2c",
                "tid": tokengate::dev::DEV_TENANT,
                "roles": s.roles,
                "ver": "2.0",
                "jti": format!("token-{}", s.hits),
            });
            let token = issuer.rs256(&claims);
            s.issued.push(token.clone());
            json_reply(
                StatusCode::OK,
                json!({
                    "token_type": "Bearer",
                    "expires_in": s.expires_in,
                    "ext_expires_in": s.expires_in,
                    "access_token": token,
                }),
            )
        }
    }
}

/// Every form field, then the assertion. Returns the requested resource.
fn check_request(
    parts: &http::request::Parts,
    body: &[u8],
    addr: SocketAddr,
    s: &mut EntraState,
) -> Result<String, String> {
    if parts.method != http::Method::POST {
        return Err(format!("method {}", parts.method));
    }
    if parts.uri.path() != format!("/{TENANT}/oauth2/v2.0/token") {
        return Err(format!("path {}", parts.uri.path()));
    }
    let ct = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct != "application/x-www-form-urlencoded" {
        return Err(format!("content-type {ct:?}"));
    }
    let fields = parse_form(std::str::from_utf8(body).map_err(|_| "body not UTF-8")?)?;
    let mut names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    let expected = [
        "client_assertion",
        "client_assertion_type",
        "client_id",
        "grant_type",
        "scope",
    ];
    if names != expected {
        return Err(format!("fields {names:?}"));
    }
    let field = |n: &str| fields.iter().find(|(k, _)| k == n).unwrap().1.clone();
    if field("client_id") != CLIENT_ID {
        return Err(format!("client_id {}", field("client_id")));
    }
    if field("grant_type") != "client_credentials" {
        return Err(format!("grant_type {}", field("grant_type")));
    }
    if field("client_assertion_type") != JWT_BEARER {
        return Err(format!(
            "client_assertion_type {}",
            field("client_assertion_type")
        ));
    }
    let scope = field("scope");
    let resource = scope
        .strip_suffix("/.default")
        .ok_or(format!("scope {scope}"))?
        .to_string();
    let assertion = field("client_assertion");
    s.assertions.push(assertion.clone());
    match s.expect.clone() {
        Expect::Federated(token) => {
            if assertion != token {
                return Err("client_assertion is not the current federated token".into());
            }
        }
        Expect::Certificate { public_key, x5t } => {
            let aud = format!("http://{addr}/{TENANT}/oauth2/v2.0/token");
            verify_assertion(&assertion, &public_key, &x5t, &aud, &mut s.jtis)?;
        }
    }
    Ok(resource)
}

/// PS256 signature with the certificate's key, `x5t#S256`, `aud`, `iss` = `sub`, fresh `jti`,
/// and a lifetime of at most 10 minutes that covers now.
fn verify_assertion(
    jwt: &str,
    public_key: &[u8],
    x5t: &str,
    aud: &str,
    jtis: &mut HashSet<String>,
) -> Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Err("assertion is not a JWS".into());
    }
    let decode = |p: &str| -> Result<Value, String> {
        let raw = URL_SAFE_NO_PAD.decode(p).map_err(|e| e.to_string())?;
        serde_json::from_slice(&raw).map_err(|e| e.to_string())
    };
    let header = decode(parts[0])?;
    let claims = decode(parts[1])?;
    if header["alg"] != "PS256" || header["typ"] != "JWT" {
        return Err(format!("assertion header {header}"));
    }
    if header["x5t#S256"] != x5t {
        return Err(format!("x5t#S256 {} != {x5t}", header["x5t#S256"]));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(parts[2])
        .map_err(|e| e.to_string())?;
    let signed = format!("{}.{}", parts[0], parts[1]);
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
        public_key,
    )
    .verify(signed.as_bytes(), &sig)
    .map_err(|_| "assertion signature does not verify with the certificate's key".to_string())?;
    if claims["aud"] != aud {
        return Err(format!("aud {} != {aud}", claims["aud"]));
    }
    if claims["iss"] != CLIENT_ID || claims["sub"] != CLIENT_ID {
        return Err(format!("iss/sub {} {}", claims["iss"], claims["sub"]));
    }
    let jti = claims["jti"].as_str().unwrap_or("").to_string();
    if jti.is_empty() || !jtis.insert(jti) {
        return Err("jti missing or reused".into());
    }
    let now = tokengate::pipeline::unix_now();
    let (nbf, iat, exp) = (
        claims["nbf"].as_u64().unwrap_or(u64::MAX),
        claims["iat"].as_u64().unwrap_or(u64::MAX),
        claims["exp"].as_u64().unwrap_or(0),
    );
    if nbf > now + 5 || iat > now + 5 || exp <= now || exp - nbf > 600 {
        return Err(format!("lifetime nbf {nbf} iat {iat} exp {exp} now {now}"));
    }
    Ok(())
}

fn parse_form(text: &str) -> Result<Vec<(String, String)>, String> {
    // An independent decoder: the test must not trust the code under test to read its output.
    let decode = |s: &str| -> Result<String, String> {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = s.get(i + 1..i + 3).ok_or("short escape")?;
                    out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    };
    let mut fields = Vec::new();
    for pair in text.split('&') {
        let (k, v) = pair
            .split_once('=')
            .ok_or(format!("field without '=': {pair}"))?;
        fields.push((decode(k)?, decode(v)?));
    }
    Ok(fields)
}

fn json_reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// A mock IMDS: answers the scripted statuses first, then tokens.
pub struct MockImds {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<(Instant, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockImds {
    pub async fn start(script: &[u16]) -> MockImds {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (sc, h) = (script, hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (sc, h) = (sc.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (sc, h) = (sc.clone(), h.clone());
                        async move { Ok::<_, Infallible>(imds_answer(req, &sc, &h)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        MockImds { addr, hits, task }
    }
}

impl Drop for MockImds {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn imds_answer(
    req: Request<Incoming>,
    script: &Mutex<VecDeque<u16>>,
    hits: &Mutex<Vec<(Instant, String)>>,
) -> Response<Full<Bytes>> {
    let query = req.uri().query().unwrap_or("").to_string();
    hits.lock().unwrap().push((Instant::now(), query.clone()));
    if req.uri().path() != "/metadata/identity/oauth2/token"
        || req.headers().get("metadata").map(|v| v.as_bytes()) != Some(b"true")
    {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request_102", "error_description": "Required metadata header not specified"}),
        );
    }
    if !query.contains("api-version=2018-02-01") || !query.contains("resource=") {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "query"}),
        );
    }
    if let Some(code) = script.lock().unwrap().pop_front() {
        return json_reply(
            StatusCode::from_u16(code).unwrap(),
            json!({"error": "unavailable", "error_description": format!("scripted {code}")}),
        );
    }
    let now = tokengate::pipeline::unix_now();
    json_reply(
        StatusCode::OK,
        json!({
            "access_token": format!("imds-token-{now}-{}", hits.lock().unwrap().len()),
            "client_id": CLIENT_ID,
            "expires_in": "86399",
            "expires_on": (now + 86399).to_string(),
            "ext_expires_in": "86399",
            "not_before": now.to_string(),
            "resource": "r",
            "token_type": "Bearer",
        }),
    )
}

/// A stub `az` in `dir` (put `dir` first on `PATH`): records its arguments in `dir/az.args`
/// and prints a token response like Azure CLI 2.54+.
pub fn stub_az(dir: &Path, token: &str, expires_in: u64) {
    let script = format!(
        "#!/bin/sh\n\
         printf '%s\\n' \"$@\" > '{args}'\n\
         now=$(date +%s)\n\
         printf '{{\"accessToken\": \"{token}\", \"expiresOn\": \"2030-01-01 00:00:00.000000\", \
         \"expires_on\": %s, \"subscription\": \"s\", \"tenant\": \"t\", \"tokenType\": \"Bearer\"}}\\n' \
         $((now + {expires_in}))\n",
        args = dir.join("az.args").display()
    );
    let path = dir.join("az");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An RSA key and self-signed certificate: (PEM bundle key + cert, RSAPublicKey DER, x5t#S256).
pub fn certificate(name: &str) -> (String, Vec<u8>, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let x5t = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        cert.der(),
    ));
    let pem = format!("{}{}", key.serialize_pem(), cert.pem());
    (pem, key.public_key_raw().to_vec(), x5t)
}
