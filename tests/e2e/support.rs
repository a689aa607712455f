//! Real parts for the end-to-end tests: a discovery/JWKS server, a recording upstream, the proxy
//! on loopback ports chosen by the kernel, and an HTTP client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;

pub use tokengate::dev::{DevIssuer, IdpMode, IdpServer, SigningKey};
use tokengate::{Config, Running};

/// What reached the upstream.
#[derive(Debug, Clone)]
pub struct Seen {
    #[allow(dead_code)]
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body_len: usize,
}

/// An HTTP upstream that records every request. Paths it understands:
/// `/__sleep/<ms>` waits before answering; `/__status/<code>` answers that status;
/// `/__bytes/<n>` streams n bytes back; anything else answers 200 `upstream ok`.
/// Request bodies are counted chunk by chunk, never buffered.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(answer(req, &s).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received a request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(req: Request<Incoming>, seen: &Mutex<Vec<Seen>>) -> Response<UpBody> {
    let (parts, mut body) = req.into_parts();
    let mut body_len = 0;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(d) = frame.data_ref() {
            body_len += d.len();
        }
    }
    let uri = parts.uri.to_string();
    seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        uri: uri.clone(),
        headers: parts.headers.clone(),
        body_len,
    });
    let path = parts.uri.path().to_string();
    let mut status = StatusCode::OK;
    if let Some(ms) = path.strip_prefix("/__sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if let Some(code) = path.strip_prefix("/__status/") {
        status = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
    }
    let body: UpBody = if let Some(n) = path.strip_prefix("/__bytes/") {
        Chunks {
            remaining: n.parse().unwrap_or(0),
        }
        .boxed()
    } else {
        Full::new(Bytes::from_static(b"upstream ok")).boxed()
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "connection",
        "keep-alive, x-upstream-secret".parse().unwrap(),
    );
    resp.headers_mut()
        .insert("x-upstream-secret", "hop".parse().unwrap());
    resp.headers_mut()
        .insert("x-upstream", "yes".parse().unwrap());
    resp
}

/// `remaining` bytes of `x`, produced 64 KiB at a time as the client reads them.
struct Chunks {
    remaining: usize,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.remaining.min(64 * 1024);
        self.remaining -= n;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n])))))
    }
}

/// Everything wired together.
pub struct Harness {
    pub issuer: DevIssuer,
    pub idp: IdpServer,
    pub upstream: Upstream,
    pub proxy: Option<Running>,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

/// Default auth section used by most tests; `extra` is appended inside `[auth]`.
pub fn config_text(idp: &IdpServer, upstream: &Upstream, extra_auth: &str, tail: &str) -> String {
    format!(
        r#"
[listen]
address = "127.0.0.1:0"
[upstream]
url = "{up}"
timeout = "2s"
connect_timeout = "1s"
[admin]
address = "127.0.0.1:0"
[auth]
openid_configuration = "{disc}"
issuers = ["{v1}", "{v2}"]
audiences = ["{aud}", "other-audience"]
algorithms = ["RS256", "ES256"]
excluded_paths = ["/public", "/healthz"]
{extra_auth}
[[auth.rules]]
path = "/admin"
methods = ["POST", "DELETE"]
roles = ["App.Admin"]
[[auth.rules]]
path = "/public/secret"
roles = ["App.Secret"]
[keys]
max_backoff = "200ms"
unknown_kid_cooldown = "1s"
unknown_kid_wait = "2s"
{tail}
"#,
        up = upstream.url(),
        disc = idp.discovery_url(),
        v1 = tokengate::dev::v1_issuer(tokengate::dev::DEV_TENANT),
        v2 = tokengate::dev::v2_issuer(tokengate::dev::DEV_TENANT),
        aud = tokengate::dev::DEV_AUDIENCE,
    )
}

impl Harness {
    /// Issuer, IdP, upstream and proxy with the default config; waits until ready.
    pub async fn start() -> Harness {
        Harness::with_config("", "").await
    }

    pub async fn with_config(extra_auth: &str, tail: &str) -> Harness {
        let h = Harness::unstarted().await;
        let text = config_text(&h.idp, &h.upstream, extra_auth, tail);
        h.launch(&text).await
    }

    /// The parts without the proxy.
    pub async fn unstarted() -> Harness {
        let issuer = DevIssuer::generate();
        let idp = IdpServer::start(issuer.jwks()).await.unwrap();
        let upstream = Upstream::start().await;
        Harness {
            issuer,
            idp,
            upstream,
            proxy: None,
            client: client(),
        }
    }

    /// Starts the proxy with `config_text` and waits until it is ready.
    pub async fn launch(mut self, config_text: &str) -> Harness {
        self.start_proxy(config_text).await;
        self.wait_ready().await;
        self
    }

    pub async fn start_proxy(&mut self, config_text: &str) {
        let config = Config::from_toml(config_text).expect("test config parses");
        self.proxy = Some(tokengate::start(config).await.expect("proxy starts"));
    }

    pub async fn wait_ready(&self) {
        for _ in 0..500 {
            if self.proxy().ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("proxy did not become ready");
    }

    pub fn proxy(&self) -> &Running {
        self.proxy.as_ref().expect("proxy started")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy().public_addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy().admin_addr, path)
    }

    /// A valid v2 RS256 token with `roles`.
    pub fn token(&self, roles: &[&str]) -> String {
        self.issuer.rs256(&self.issuer.v2_claims(roles))
    }

    /// GET `path` with `token` (if any).
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut b = Request::get(self.url(path));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(b.body(Full::default()).unwrap()).await
    }

    /// `method` on `path` with `token`.
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>) -> Reply {
        let mut b = Request::builder().method(method).uri(self.url(path));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(b.body(Full::default()).unwrap()).await
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        let resp = self.client.request(req).await.expect("proxy answers");
        Reply::read(resp).await
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let req = Request::get(self.admin_url("/metrics"))
            .body(Full::default())
            .unwrap();
        self.send(req).await.text()
    }

    /// The value of one metric series (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response with its body read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub async fn read(resp: Response<Incoming>) -> Reply {
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub fn challenge(&self) -> String {
        self.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    /// Asserts a refusal with `status` and, for token errors, `reason` in the challenge and body.
    #[track_caller]
    pub fn assert_refused(&self, status: u16, reason: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        let body = self.json();
        assert_eq!(body["error_description"], reason, "body: {}", self.text());
    }
}

/// Writes `request` on a fresh connection and returns what the server answered (up to close or
/// 2 s of silence).
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.len() > 12 {
                    // Headers are in; give the body a moment and stop.
                    if let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await
                    {
                        out.extend_from_slice(&buf[..n]);
                    }
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
