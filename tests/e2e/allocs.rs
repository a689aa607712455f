//! Whole-process heap allocations per request of the real binary (issue 12, items 2 and 5).
//!
//! `tests/alloc.rs` proves that *our* validation and authorization code allocate nothing, with a
//! Rust `#[global_allocator]` on one thread. That cannot see the rest of a request's cost: aws-lc
//! (the signature backend) is C and calls `malloc` directly, and hyper's connection tasks, the
//! upstream client and the runtime run on other threads. So this test counts at the malloc level,
//! for the whole process: `tests/alloc_count/alloc_count.c` is an `LD_PRELOAD` shim (glibc) that
//! counts every malloc/calloc/realloc/memalign-family call on every thread and, on `SIGUSR2`,
//! writes the running count to `$ALLOC_COUNT_FILE`. The binary is the unmodified one cargo built.
//!
//! The driver keeps everything else out of the count: the IdP (JWKS), a canned keep-alive upstream
//! and a raw keep-alive client all run in this test process; tokengate logs at `info`, and a
//! forwarded request logs only at `debug`. After a warm-up (pooled upstream connection, caches,
//! buffers), it snapshots the count, sends N requests one after another on one connection, and
//! snapshots again: allocations per request = delta / N. Background work (key refresh timers) is
//! rare enough that it moves the result by far less than the headroom in the bounds.
//!
//! Three request kinds: the same token every time (a verified-token cache hit), a fresh token
//! every time (RS256 verify and a new cache entry), and an anonymous path (no token at all).
//! Each has an upper bound below, set from what main measured plus a little headroom: the test
//! fails when the request path gets heavier. Tighten them as it gets leaner.
//! `benches/compare.sh` reports the same numbers for the release build under wrk.
//!
//! Needs a C compiler (`cc`, or `$CC`) to build the shim; without one it skips, except in CI
//! (`CI=true`), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use tokengate::dev::{v2_issuer, DevIssuer, IdpServer, DEV_AUDIENCE, DEV_TENANT};

use crate::process::{write_config, Process, TempFile};

// The bounds are counts of the debug build `cargo test` runs (benches/compare.sh reports the
// release build's). The count repeats to two decimals from run to run, so one allocation per
// request of headroom catches a real regression.

/// Most whole-process allocations per request on a cache hit (same token); the issue's target is
/// <= 10. Measured 24.00 at 9a85b0d (shared pool, work-stealing runtime), 8.03 with worker
/// runtimes owning their upstream connections, 7.03 once the framing guard stopped copying each
/// request head.
const HIT_MAX: f64 = 8.0;
/// Most per request with a fresh token each time (RS256 verify, a new cache entry). Main
/// measured 126.04 at 9a85b0d, 110.07 after the request-path shape, 37.03 once the cache entry
/// was built in 4 allocations (EasyAuth principal written in one pass), 33.03 with the digest
/// taken outside aws-lc's EVP_DigestVerify (whose RSA verify still mallocs 21 times), 32.03
/// with the guard's copy gone; the issue's target is <= 25.
const FRESH_MAX: f64 = 33.0;
/// Most per request on an anonymous path (no token: rewrite and forward only). Measured 7.03
/// (24.00 at 9a85b0d).
const ANON_MAX: f64 = 8.0;

/// Requests before the first snapshot: the upstream connection, caches and buffers fill here.
const WARMUP: usize = 500;
/// Measured cache hits.
const HIT_N: usize = 5_000;
/// Measured fresh tokens (each minted beforehand, about a millisecond apiece).
const FRESH_N: usize = 2_000;
/// Fresh tokens before the fresh-token snapshot (the miss path's own first-use work).
const FRESH_WARMUP: usize = 100;
/// Measured anonymous requests.
const ANON_N: usize = 2_000;

const PATH: &str = "/api/orders/42";

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_process_allocations_per_request_stay_bounded() {
    let Some(shim) = build_shim() else {
        return;
    };
    let issuer = DevIssuer::generate();
    // Minting is the slow part (RS256 signing in a debug build).
    let minting = tokio::task::spawn_blocking(move || {
        let claims = issuer.v2_claims(&["App.Read"]);
        let tokens: Vec<String> = (0..FRESH_WARMUP + FRESH_N + 1)
            .map(|n| {
                let mut c = claims.clone();
                c["uti"] = Value::from(format!("alloc-{n}"));
                issuer.rs256(&c)
            })
            .collect();
        (issuer, tokens)
    });
    let (issuer, mut tokens) = minting.await.unwrap();
    let same = tokens.pop().expect("a token for the cache-hit run");
    let idp = IdpServer::start(issuer.jwks()).await.unwrap();
    let upstream = canned_upstream().await;
    let config = write_config(&format!(
        r#"
[listen]
address = "127.0.0.1:0"
[upstream]
url = "http://{upstream}"
[admin]
address = "127.0.0.1:0"
[auth]
openid_configuration = "{disc}"
issuers = ["{iss}"]
audiences = ["{DEV_AUDIENCE}"]
algorithms = ["RS256"]
excluded_paths = ["/public"]
"#,
        disc = idp.discovery_url(),
        iss = v2_issuer(DEV_TENANT),
    ));
    let counts = TempFile::new("allocs", b"");
    let p = Process::start_at(
        &config,
        &[
            ("LD_PRELOAD", shim.to_str().unwrap()),
            ("ALLOC_COUNT_FILE", counts.path()),
        ],
        "info",
    );
    p.wait_ready().await;
    let started = Instant::now();
    let mut conn = Client::connect(&p).await;

    let hit = request(PATH, Some(&same));
    for _ in 0..WARMUP {
        conn.roundtrip(&hit).await;
    }
    let before = snapshot(&p, &counts).await;
    for _ in 0..HIT_N {
        conn.roundtrip(&hit).await;
    }
    let after = snapshot(&p, &counts).await;
    let hit_rate = after.per_request(&before, HIT_N);

    let fresh: Vec<Vec<u8>> = tokens.iter().map(|t| request(PATH, Some(t))).collect();
    let (warm, measured) = fresh.split_at(FRESH_WARMUP);
    for r in warm {
        conn.roundtrip(r).await;
    }
    let before = snapshot(&p, &counts).await;
    for r in measured {
        conn.roundtrip(r).await;
    }
    let after = snapshot(&p, &counts).await;
    let fresh_rate = after.per_request(&before, measured.len());

    let anon = request("/public/ping", None);
    for _ in 0..WARMUP {
        conn.roundtrip(&anon).await;
    }
    let before = snapshot(&p, &counts).await;
    for _ in 0..ANON_N {
        conn.roundtrip(&anon).await;
    }
    let after = snapshot(&p, &counts).await;
    let anon_rate = after.per_request(&before, ANON_N);

    eprintln!(
        "whole-process heap allocations per request (debug build, malloc level): \
         cache hit {hit_rate}, fresh token {fresh_rate}, anonymous {anon_rate} \
         (measured in {:.1}s)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        hit_rate.allocations <= HIT_MAX,
        "cache hit: {hit_rate} allocations per request, bound {HIT_MAX}"
    );
    assert!(
        fresh_rate.allocations <= FRESH_MAX,
        "fresh token: {fresh_rate} allocations per request, bound {FRESH_MAX}"
    );
    assert!(
        anon_rate.allocations <= ANON_MAX,
        "anonymous: {anon_rate} allocations per request, bound {ANON_MAX}"
    );
}

/// Compiles the shim into cargo's per-test scratch directory. `None` (skip) only outside CI when
/// there is no C compiler.
fn build_shim() -> Option<PathBuf> {
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/alloc_count/alloc_count.c"
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("alloc_count.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(src)
        .status();
    match status {
        Ok(s) => assert!(s.success(), "{cc} could not build {src}: {s}"),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI: no C compiler ({cc}: {e}) to build the malloc counter")
        }
        Err(e) => {
            eprintln!("skipped: no C compiler ({cc}: {e}) to build the malloc counter");
            return None;
        }
    }
    Some(out)
}

/// The shim's counters at one moment.
struct Counts {
    allocations: u64,
    bytes: u64,
}

/// Allocations and bytes per request between two snapshots.
struct Rate {
    allocations: f64,
    bytes: f64,
}

impl Counts {
    fn per_request(&self, before: &Counts, n: usize) -> Rate {
        Rate {
            allocations: (self.allocations - before.allocations) as f64 / n as f64,
            bytes: (self.bytes - before.bytes) as f64 / n as f64,
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ({:.0} bytes)", self.allocations, self.bytes)
    }
}

/// Asks the process for its counts (SIGUSR2) and waits for the shim to write them.
async fn snapshot(p: &Process, file: &Path) -> Counts {
    let _ = std::fs::remove_file(file);
    p.signal("-USR2");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(line) = std::fs::read_to_string(file) {
            let mut fields = line.split_whitespace().map(|f| f.parse::<u64>().unwrap());
            return Counts {
                allocations: fields.next().expect("allocations"),
                bytes: fields.next().expect("bytes"),
            };
        }
        assert!(Instant::now() < deadline, "the shim wrote no counts");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A GET of `path` on a keep-alive connection, with `token` as its bearer.
fn request(path: &str, token: Option<&str>) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: api.example\r\n{auth}\r\n").into_bytes()
}

/// A keep-alive HTTP/1.1 client that reads each response into one fixed buffer.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(p: &Process) -> Client {
        let stream = TcpStream::connect(p.public).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Sends `req` and reads its whole response; panics unless it is a 200.
    async fn roundtrip(&mut self, req: &[u8]) {
        self.stream.write_all(req).await.unwrap();
        let mut have = 0;
        let (head, body) = loop {
            let n = self.stream.read(&mut self.buf[have..]).await.unwrap();
            assert!(n > 0, "tokengate closed the connection");
            have += n;
            if let Some(end) = find(&self.buf[..have], b"\r\n\r\n") {
                break (end + 4, content_length(&self.buf[..end]));
            }
            assert!(have < self.buf.len(), "response head too large");
        };
        while have < head + body {
            let n = self.stream.read(&mut self.buf[have..]).await.unwrap();
            assert!(n > 0, "tokengate closed the connection mid-body");
            have += n;
        }
        assert!(
            self.buf.starts_with(b"HTTP/1.1 200 "),
            "{}",
            String::from_utf8_lossy(&self.buf[..have])
        );
    }
}

/// The `Content-Length` of a response head (0 when absent: the upstream always sends one).
fn content_length(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .find_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An upstream that answers every request head it reads with a canned `200 ok`, keep-alive.
/// GETs only: a request ends at its blank line.
async fn canned_upstream() -> std::net::SocketAddr {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut have = 0;
                loop {
                    let Ok(n) = stream.read(&mut buf[have..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    have += n;
                    while let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                        if stream.write_all(OK).await.is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                    if have == buf.len() {
                        return;
                    }
                }
            });
        }
    });
    addr
}
