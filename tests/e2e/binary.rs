//! The real binary, for what crosses process boundaries: CLI and exit codes, config errors,
//! signals (graceful drain, reload), `tokengate dev`, environment overrides.

use std::process::Command;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use serde_json::Value;

use crate::support::{client, config_text, Harness, Reply};

pub use crate::process::{write_config, Dev, Process as Proc, TempFile, BIN};

#[test]
fn bad_configs_exit_64_naming_the_problem() {
    let cases = [
        (
            "[upstream]\nurl = \"http://127.0.0.1:1\"\nbogus = 1\n",
            "bogus",
        ),
        ("[upstream]\nurl = \"http://127.0.0.1:1\"\n", "auth"),
        ("not toml at all = = =", "line 1"),
    ];
    for (text, needle) in cases {
        let path = write_config(text);
        let out = Command::new(BIN)
            .args(["--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    let missing = Command::new(BIN)
        .args(["--config", "/nonexistent/proxy.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
    let usage = Command::new(BIN).arg("--frobnicate").output().unwrap();
    assert_eq!(usage.status.code(), Some(64));
    let none = Command::new(BIN)
        .env_remove("TOKENGATE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(64));
}

#[test]
fn check_validates_like_nginx_t() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(BIN)
        .args(["check", "--config", &format!("{repo}/proxy.toml")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OK") && text.contains("audiences"), "{text}");
    let bad = write_config("[upstream]\nurl = \"ftp://x\"\n[auth]\njwks_uri=\"http://x/k\"\nissuers=[\"i\"]\naudiences=[\"a\"]\n");
    let out = Command::new(BIN)
        .args(["check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("upstream.url"));
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let h = Harness::unstarted().await;
    let path = write_config(&config_text(&h.idp, &h.upstream, "", ""));
    let mut p = Proc::start(&path, &[]);
    p.wait_ready().await;
    let token = h.token(&[]);
    let public = p.public;
    let in_flight = tokio::spawn({
        let token = token.clone();
        async move {
            let req = Request::get(format!("http://{public}/__sleep/1000"))
                .header("authorization", format!("Bearer {token}"))
                .body(Full::default())
                .unwrap();
            Reply::read(client().request(req).await.unwrap()).await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.signal("-TERM");
    let reply = in_flight.await.unwrap();
    assert_eq!(
        reply.status,
        200,
        "in-flight request cut off: {}",
        reply.text()
    );
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = p.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    // New connections are refused once it has stopped.
    assert!(tokio::net::TcpStream::connect(public).await.is_err());
}

#[tokio::test]
async fn sighup_reloads_a_valid_config_and_keeps_the_old_on_error() {
    let h = Harness::unstarted().await;
    let base = config_text(&h.idp, &h.upstream, "", "");
    let path = write_config(&base);
    let p = Proc::start(&path, &[]);
    p.wait_ready().await;
    let token = h.token(&[]);
    assert_eq!(p.get("/api", &token).await.status, 200);
    // New rule: /api needs App.Admin.
    let stricter = format!("{base}\n").replace(
        "[[auth.rules]]\npath = \"/admin\"",
        "[[auth.rules]]\npath = \"/api\"\nroles = [\"App.Admin\"]\n[[auth.rules]]\npath = \"/admin\"",
    );
    std::fs::write(&*path, &stricter).unwrap();
    p.signal("-HUP");
    p.wait_log("config reloaded");
    p.get("/api", &token)
        .await
        .assert_refused(403, "missing_role");
    // A broken file is refused and the last good config stays.
    std::fs::write(&*path, "this is = not [valid").unwrap();
    p.signal("-HUP");
    let line = p.wait_log("config reload refused");
    assert!(line.contains("ERROR"), "{line}");
    p.get("/api", &token)
        .await
        .assert_refused(403, "missing_role");
}

#[tokio::test]
async fn environment_overrides_config_keys() {
    let h = Harness::unstarted().await;
    // The file points at a dead upstream; the environment fixes it.
    let text =
        config_text(&h.idp, &h.upstream, "", "").replace(&h.upstream.url(), "http://127.0.0.1:9");
    let path = write_config(&text);
    let up = h.upstream.url();
    let p = Proc::start(&path, &[("TOKENGATE_UPSTREAM__URL", up.as_str())]);
    p.wait_ready().await;
    assert_eq!(p.get("/api", &h.token(&[])).await.status, 200);
    assert_eq!(h.upstream.count(), 1);
}

#[tokio::test]
async fn denials_are_logged_once_with_their_reason_and_never_the_token() {
    let h = Harness::unstarted().await;
    let path = write_config(&config_text(&h.idp, &h.upstream, "", ""));
    let p = Proc::start(&path, &[]);
    p.wait_ready().await;
    let mut claims = h.issuer.v2_claims(&[]);
    claims["exp"] = serde_json::json!(1);
    let expired = h.issuer.rs256(&claims);
    p.get("/api", &expired)
        .await
        .assert_refused(401, "token_expired");
    let line = p.wait_log("request denied");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["reason"], "token_expired");
    assert_eq!(v["level"], "INFO");
    assert!(v["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    let (_, sig) = expired.rsplit_once('.').unwrap();
    assert!(
        !line.contains(sig) && !line.contains("eyJ"),
        "token in log: {line}"
    );
}

#[tokio::test]
async fn dev_command_prints_a_working_curl_line() {
    let dev = Dev::start().await;
    let line = dev.line("curl", |l| {
        l.starts_with("curl -s -H 'Authorization: Bearer ")
    });
    let reply = Dev::curl(line).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let echo = reply.json();
    assert!(echo["headers"]["x-ms-client-principal"].is_string());
    assert!(echo["headers"].get("authorization").is_none());
}

#[tokio::test]
async fn systemd_notify_readiness_and_stopping() {
    let h = Harness::unstarted().await;
    let path = write_config(&config_text(&h.idp, &h.upstream, "", ""));
    let sock_path = TempFile(
        std::env::temp_dir().join(format!("tokengate-test-{}-notify.sock", std::process::id())),
    );
    let sock = std::os::unix::net::UnixDatagram::bind(&*sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let p = Proc::start(&path, &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    let mut buf = [0u8; 256];
    // sd_notify(3): newline-separated assignments, one datagram per state change.
    let assignments = |n: usize, buf: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_string)
            .collect()
    };
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(assignments(n, &buf), ["READY=1"]);
    p.signal("-TERM");
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(assignments(n, &buf), ["STOPPING=1"]);
}
