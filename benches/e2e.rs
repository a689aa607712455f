//! One request end to end over loopback: client → tokengate → upstream → back, on one
//! current-thread Tokio runtime, so a row is the total CPU work of one request across client,
//! proxy and upstream (one core, no scheduling noise between threads).
//!
//! - `direct`: client → upstream, no proxy: the floor every other row includes.
//! - `tokengate/same_token`: a valid RS256 token reused (cache hit), full allow-lists and rules.
//! - `tokengate/no_cache_rs256`: the same, with the cache disabled, so every request verifies the
//!   signature and builds the identity headers: what distinct tokens cost.
//! - `tokengate/401_no_token`: a request without a token, answered by the proxy itself.
//!
//! The upstream answers `200 ok` to everything; the client keeps one HTTP/1.1 connection alive.
//!
//! Run: `cargo bench --bench e2e -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use tokengate::config::Config;
use tokengate::dev::{DevIssuer, IdpServer};

use tokengate::dev::fixture::{PATH, ROLES};
use tokengate::dev::reference_policy_toml as config_toml;

/// An upstream that answers `200 ok` to everything, like nginx's `return 200`.
async fn serve_ok(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A keep-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

/// Sends one GET and reads the whole response; returns its status.
async fn get(send: &mut SendRequest<Empty<Bytes>>, authorization: Option<&str>) -> StatusCode {
    let mut req = Request::get(PATH).header(http::header::HOST, "bench.local");
    if let Some(a) = authorization {
        req = req.header(http::header::AUTHORIZATION, a);
    }
    send.ready().await.expect("connection ready");
    let resp = send
        .send_request(req.body(Empty::new()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    resp.into_body().collect().await.expect("body");
    status
}

/// Starts a tokengate in this runtime; `cache` is the `[cache]` section.
async fn start_proxy(
    issuer: &DevIssuer,
    idp: &IdpServer,
    upstream: SocketAddr,
    cache: &str,
) -> tokengate::Running {
    let head = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"http://{upstream}\""
    );
    let config =
        Config::from_toml(&config_toml(issuer, &head, &idp.jwks_url(), cache)).expect("config");
    let running = tokengate::start(config).await.expect("start");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running.ready() {
        assert!(Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running
}

struct Setup {
    rt: Runtime,
    upstream: SocketAddr,
    cached: SocketAddr,
    uncached: SocketAddr,
    authorization: String,
    // Kept alive for the duration of the bench.
    _idp: IdpServer,
    _proxies: Vec<tokengate::Running>,
}

fn setup() -> Setup {
    tokengate::install_crypto_providers();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let issuer = DevIssuer::generate();
    let (idp, upstream, cached, uncached) = rt.block_on(async {
        let idp = IdpServer::start(issuer.jwks()).await.expect("idp");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let upstream = listener.local_addr().expect("addr");
        tokio::spawn(serve_ok(listener));
        let cached = start_proxy(&issuer, &idp, upstream, "").await;
        let uncached = start_proxy(&issuer, &idp, upstream, "[cache]\nmax_entries = 0").await;
        (idp, upstream, cached, uncached)
    });
    let authorization = format!("Bearer {}", issuer.rs256(&issuer.v2_claims(&ROLES)));
    Setup {
        rt,
        upstream,
        cached: cached.public_addr,
        uncached: uncached.public_addr,
        authorization,
        _idp: idp,
        _proxies: vec![cached, uncached],
    }
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("e2e");
    let rows: [(&str, SocketAddr, Option<&str>, StatusCode); 4] = [
        ("direct", s.upstream, None, StatusCode::OK),
        (
            "tokengate/same_token",
            s.cached,
            Some(&s.authorization),
            StatusCode::OK,
        ),
        (
            "tokengate/no_cache_rs256",
            s.uncached,
            Some(&s.authorization),
            StatusCode::OK,
        ),
        (
            "tokengate/401_no_token",
            s.cached,
            None,
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (name, addr, authorization, want) in rows {
        let mut send = s.rt.block_on(connect(addr));
        assert_eq!(s.rt.block_on(get(&mut send, authorization)), want, "{name}");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                s.rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let status = get(&mut send, authorization).await;
                        debug_assert_eq!(status, want);
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(e2e, benches);
criterion_main!(e2e);
