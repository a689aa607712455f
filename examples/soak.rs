//! Soak test: minutes of mixed traffic against the real binary while signing keys rotate and the
//! identity provider flaps. Counts wrong answers (anything denied that should pass, anything
//! passed that should be denied, any token or spoofed identity reaching the upstream) and samples
//! the proxy's RSS. Not part of `cargo test`; run it and read the report:
//!
//! ```text
//! cargo build --release && cargo run --release --example soak -- --seconds 300
//! ```
//!
//! Exits 1 if any answer was wrong.

use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokengate::dev::{DevIssuer, IdpMode, IdpServer, SigningKey, DEV_AUDIENCE};

/// The kinds of request the soak sends, with the status each must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Class {
    Valid,
    ValidEs256,
    Admin,
    RoleDenied,
    Expired,
    Forged,
    WrongAudience,
    UnknownKid,
    Retired,
    Spoofed,
}

impl Class {
    const ALL: [Class; 10] = [
        Class::Valid,
        Class::ValidEs256,
        Class::Admin,
        Class::RoleDenied,
        Class::Expired,
        Class::Forged,
        Class::WrongAudience,
        Class::UnknownKid,
        Class::Retired,
        Class::Spoofed,
    ];

    fn expected(self) -> u16 {
        match self {
            Class::Valid | Class::ValidEs256 | Class::Admin | Class::Spoofed => 200,
            Class::RoleDenied => 403,
            _ => 401,
        }
    }
}

struct Keys {
    current: (String, SigningKey),
    /// A key that was published and has since been removed, with the instant its removal was
    /// certainly fetched (two refresh intervals after it left the JWKS).
    retired: Option<(String, SigningKey, Instant)>,
}

#[tokio::main]
async fn main() {
    let mut seconds = 180u64;
    let mut concurrency = 16usize;
    let mut bin = String::from("target/release/tokengate");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--seconds" => seconds = args[i + 1].parse().expect("--seconds N"),
            "--concurrency" => concurrency = args[i + 1].parse().expect("--concurrency N"),
            "--bin" => bin = args[i + 1].clone(),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    tokengate::install_crypto_providers();

    let issuer = Arc::new(DevIssuer::generate());
    let ec_jwk = issuer.ec.jwk("ec-1", None);
    let keys = Arc::new(RwLock::new(Keys {
        current: ("k-0".into(), SigningKey::rsa()),
        retired: None,
    }));
    let jwks = |k: &Keys| json!({"keys": [k.current.1.jwk(&k.current.0, None), ec_jwk.clone()]});
    let initial = jwks(&keys.read().unwrap());
    let idp = Arc::new(IdpServer::start(initial).await.unwrap());

    // The upstream: counts requests and any that carry what must never reach it.
    let leaks = Arc::new(AtomicUsize::new(0));
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    {
        let leaks = leaks.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = upstream.accept().await else {
                    continue;
                };
                let leaks = leaks.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let leaks = leaks.clone();
                        async move {
                            let h = req.headers();
                            let spoofed = h
                                .get_all("x-ms-client-principal-id")
                                .iter()
                                .any(|v| v == "spoofed");
                            if h.contains_key("authorization")
                                || spoofed
                                || !h.contains_key("x-ms-client-principal")
                            {
                                leaks.fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    }

    let dir = std::env::temp_dir().join(format!("tokengate-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("proxy.toml");
    let listen = free_port();
    let admin = free_port();
    let config = format!(
        r#"[listen]
address = "127.0.0.1:{listen}"
[admin]
address = "127.0.0.1:{admin}"
[upstream]
url = "http://{up_addr}"
[auth]
jwks_uri = "{jwks}"
issuers = ["{v1}", "{v2}"]
audiences = ["{DEV_AUDIENCE}"]
algorithms = ["RS256", "ES256"]
allowed_applications = ["{app}"]
[[auth.rules]]
path = "/admin"
methods = ["POST"]
roles = ["App.Admin"]
[keys]
refresh_interval = "2s"
unknown_kid_cooldown = "1s"
unknown_kid_wait = "1s"
fetch_timeout = "1s"
max_backoff = "500ms"
[cache]
max_entries = 2000
"#,
        jwks = idp.jwks_url(),
        v1 = tokengate::dev::v1_issuer(&issuer.tenant),
        v2 = tokengate::dev::v2_issuer(&issuer.tenant),
        app = tokengate::dev::DEV_CALLER_APP,
    );
    std::fs::File::create(&config_path)
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let mut child = std::process::Command::new(&bin)
        .args(["--config", config_path.to_str().unwrap()])
        .env("TOKENGATE_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e} (cargo build --release first)"));
    let pid = child.id();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let base = format!("http://127.0.0.1:{listen}");
    wait_ready(&client, admin).await;
    let rss_start = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let wrong: Arc<Mutex<Vec<(Class, u16)>>> = Arc::new(Mutex::new(Vec::new()));
    let per_class: Arc<Vec<AtomicU64>> =
        Arc::new(Class::ALL.iter().map(|_| AtomicU64::new(0)).collect());
    let attacker = Arc::new(SigningKey::rsa());

    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (client, base, stop, total, wrong, per_class) = (
            client.clone(),
            base.clone(),
            stop.clone(),
            total.clone(),
            wrong.clone(),
            per_class.clone(),
        );
        let (issuer, keys, attacker) = (issuer.clone(), keys.clone(), attacker.clone());
        workers.push(tokio::spawn(async move {
            let mut n = w as u64;
            while !stop.load(Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let class = Class::ALL[(n >> 33) as usize % Class::ALL.len()];
                let Some((method, path, token, spoof)) =
                    request_for(class, &issuer, &keys, &attacker, n)
                else {
                    continue;
                };
                let mut b = Request::builder()
                    .method(method)
                    .uri(format!("{base}{path}"));
                b = b.header("authorization", format!("Bearer {token}"));
                if spoof {
                    b = b.header("x-ms-client-principal-id", "spoofed");
                }
                let status = match client.request(b.body(Full::default()).unwrap()).await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.into_body().collect().await;
                        s
                    }
                    Err(_) => 0,
                };
                total.fetch_add(1, Ordering::Relaxed);
                per_class[Class::ALL.iter().position(|c| *c == class).unwrap()]
                    .fetch_add(1, Ordering::Relaxed);
                if status != class.expected() {
                    wrong.lock().unwrap().push((class, status));
                }
            }
        }));
    }

    // Control: flap the IdP and rotate keys, in rounds, until time is up.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut rss_max = rss_start;
    let mut rss_trace = vec![(0u64, rss_start)];
    let mut round = 0u64;
    let mut rotations = 0;
    let mut flaps = 0;
    while Instant::now() < deadline {
        round += 1;
        let bad = [IdpMode::Failing, IdpMode::Garbage, IdpMode::Hanging][(round % 3) as usize];
        idp.set_mode(bad);
        flaps += 1;
        tokio::time::sleep(Duration::from_secs(3)).await;
        idp.set_mode(IdpMode::Healthy);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if round % 2 == 0 {
            // Rotate: publish old + new, wait until the proxy has fetched it (two refreshes),
            // move callers to the new key, then retire the old one.
            let next_kid = format!("k-{round}");
            let next = SigningKey::rsa();
            let published = {
                let k = keys.read().unwrap();
                json!({"keys": [k.current.1.jwk(&k.current.0, None), next.jwk(&next_kid, None), ec_jwk.clone()]})
            };
            idp.set_jwks(published);
            tokio::time::sleep(Duration::from_secs(5)).await;
            let old = {
                let mut k = keys.write().unwrap();
                std::mem::replace(&mut k.current, (next_kid, next))
            };
            idp.set_jwks(jwks(&keys.read().unwrap()));
            // Its removal is certainly fetched after two refresh intervals (IdP healthy).
            let fetched_by = Instant::now() + Duration::from_secs(5);
            tokio::time::sleep(Duration::from_secs(5)).await;
            keys.write().unwrap().retired = Some((old.0, old.1, fetched_by));
            rotations += 1;
        }
        let rss = rss_kib(pid);
        rss_max = rss_max.max(rss);
        rss_trace.push((started.elapsed().as_secs(), rss));
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.await;
    }
    let rss_end = rss_kib(pid);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let wrong = wrong.lock().unwrap();
    let leaks = leaks.load(Ordering::Relaxed);
    println!(
        "soak: {:.0} s, {} requests, {} workers",
        started.elapsed().as_secs_f64(),
        total.load(Ordering::Relaxed),
        concurrency
    );
    println!("  IdP flaps: {flaps}, key rotations: {rotations}");
    for (i, c) in Class::ALL.iter().enumerate() {
        println!(
            "  {:<14} expect {}  sent {}",
            format!("{c:?}"),
            c.expected(),
            per_class[i].load(Ordering::Relaxed)
        );
    }
    println!(
        "  wrong answers: {}, leaks to upstream: {leaks}",
        wrong.len()
    );
    for (c, s) in wrong.iter().take(20) {
        println!("    {c:?} got {s}");
    }
    println!("  RSS KiB: start {rss_start}, end {rss_end}, max {rss_max}");
    let trace: Vec<String> = rss_trace.iter().map(|(t, r)| format!("{t}s:{r}")).collect();
    println!("  RSS trace: {}", trace.join(" "));
    println!("  proxy exit after SIGTERM: {exit}");
    if !wrong.is_empty() || leaks > 0 || !exit.success() {
        std::process::exit(1);
    }
}

/// Builds the request for `class`; `None` when the class cannot be sent yet (no retired key).
fn request_for(
    class: Class,
    issuer: &DevIssuer,
    keys: &RwLock<Keys>,
    attacker: &SigningKey,
    n: u64,
) -> Option<(Method, &'static str, String, bool)> {
    let k = keys.read().unwrap();
    let (kid, key) = (&k.current.0, &k.current.1);
    let rs =
        |claims: &serde_json::Value| key.sign("RS256", &json!({"alg":"RS256","kid":kid}), claims);
    // Distinct tokens now and then, so the cache is exercised on both paths.
    let mut base = issuer.v2_claims(&["App.Read"]);
    base["jti"] = json!(n % 4096);
    Some(match class {
        Class::Valid => (Method::GET, "/api", rs(&base), false),
        Class::ValidEs256 => (
            Method::GET,
            "/api",
            issuer.es256(&issuer.v1_claims(&[])),
            false,
        ),
        Class::Admin => (
            Method::POST,
            "/admin",
            rs(&issuer.v2_claims(&["App.Admin"])),
            false,
        ),
        Class::RoleDenied => (Method::POST, "/admin/x", rs(&base), false),
        Class::Spoofed => (Method::GET, "/api", rs(&base), true),
        Class::Expired => {
            let mut c = base.clone();
            c["exp"] = json!(1_600_000_000u64);
            (Method::GET, "/api", rs(&c), false)
        }
        Class::Forged => {
            let t = attacker.sign(
                "RS256",
                &json!({"alg":"RS256","kid":kid}),
                &issuer.v2_claims(&["App.Admin"]),
            );
            (Method::POST, "/admin", t, false)
        }
        Class::WrongAudience => {
            let mut c = base.clone();
            c["aud"] = json!("api://someone-else");
            (Method::GET, "/api", rs(&c), false)
        }
        Class::UnknownKid => {
            let t = attacker.sign(
                "RS256",
                &json!({"alg":"RS256","kid":format!("r-{n}")}),
                &base,
            );
            (Method::GET, "/api", t, false)
        }
        Class::Retired => {
            let (rkid, rkey, fetched_by) = k.retired.as_ref()?;
            if Instant::now() < *fetched_by {
                return None;
            }
            (
                Method::GET,
                "/api",
                rkey.sign("RS256", &json!({"alg":"RS256","kid":rkid}), &base),
                false,
            )
        }
    })
}

async fn wait_ready(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    admin: u16,
) {
    for _ in 0..500 {
        let req = Request::get(format!("http://127.0.0.1:{admin}/readyz"))
            .body(Full::default())
            .unwrap();
        if let Ok(r) = client.request(req).await {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("proxy never became ready");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
