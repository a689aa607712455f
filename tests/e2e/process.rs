//! The real `tokengate` binary as a child process, started one way for every suite that crosses
//! the process boundary (CLI and signals, policy, the agreement classes, protocols, the caller
//! side): spawn with a config file, read its JSON log lines on a thread, wait until it listens
//! and is ready, signal it, and kill it on drop. Plus the one temporary-file helper they share.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use serde_json::Value;

use crate::support::{client, Reply};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

/// A running `tokengate`; killed on drop.
pub struct Process {
    /// The child, for exit codes and signals.
    pub child: Child,
    /// The public listener as logged (`0.0.0.0:0` when only the caller side runs).
    pub public: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The identity endpoint, when the caller side serves one.
    pub endpoint: Option<SocketAddr>,
    /// The egress listeners, in config order.
    pub egress: Vec<SocketAddr>,
    /// Every stderr line so far.
    lines: Arc<Mutex<Vec<String>>>,
    /// The same lines, each taken once by [`Process::wait_log`].
    unread: Mutex<Receiver<String>>,
}

impl Process {
    /// Starts `tokengate --config path` at log level `level` with `env` (and none of the
    /// `AZURE_*` variables of the test's own environment), and waits for its "listening" line.
    /// Panics with the lines seen if it exits or does not listen within 20 s.
    pub fn start_at(path: &Path, env: &[(&str, &str)], level: &str) -> Process {
        let mut cmd = Command::new(BIN);
        cmd.args(["--config", path.to_str().unwrap(), "--log-format", "json"])
            .env("TOKENGATE_LOG", level)
            .env_remove("AZURE_TENANT_ID")
            .env_remove("AZURE_CLIENT_ID")
            .env_remove("AZURE_FEDERATED_TOKEN_FILE")
            .env_remove("AZURE_AUTHORITY_HOST")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "tokengate exited with {status}:\n{}",
                        lines.lock().unwrap().join("\n")
                    );
                }
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["message"] != "tokengate listening" {
                continue;
            }
            let addr = |k: &str| v[k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
            let egress = v["egress"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .filter_map(|s| s.parse().ok())
                .collect();
            return Process {
                public: addr("public_addr").unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                admin: addr("admin_addr").expect("admin_addr in the listening line"),
                endpoint: addr("identity_endpoint"),
                egress,
                child,
                lines,
                unread: Mutex::new(rx),
            };
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "tokengate did not start:\n{}",
            lines.lock().unwrap().join("\n")
        );
    }

    /// [`Process::start_at`] at level `info`.
    pub fn start(path: &Path, env: &[(&str, &str)]) -> Process {
        Process::start_at(path, env, "info")
    }

    /// Sends `sig` (as `kill` spells it, e.g. `-HUP`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits (10 s) for the next log line containing `needle`, consuming the lines before it.
    pub fn wait_log(&self, needle: &str) -> String {
        let unread = self.unread.lock().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(line) = unread.recv_timeout(Duration::from_millis(100)) {
                if line.contains(needle) {
                    return line;
                }
            }
        }
        panic!("no log line containing {needle:?}");
    }

    /// Whether any line so far contains `needle`, waiting up to 5 s for it (stderr is read by a
    /// thread, so a line logged just before an answer may arrive just after it).
    pub fn has_logged(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Every log line so far.
    pub fn logs(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits (10 s) until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        for _ in 0..400 {
            let req = Request::get(format!("http://{}/readyz", self.admin))
                .body(Full::default())
                .unwrap();
            if let Ok(r) = client().request(req).await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("tokengate never became ready");
    }

    /// `GET path` on the public listener with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        let req = Request::get(format!("http://{}{path}", self.public))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        Reply::read(client().request(req).await.unwrap()).await
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let req = Request::get(format!("http://{}/metrics", self.admin))
            .body(Full::default())
            .unwrap();
        Reply::read(client().request(req).await.unwrap())
            .await
            .text()
    }

    /// The value of one metric series on the admin listener (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique file under the temp dir, removed on drop.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    /// A file ending in `.{ext}` holding `contents`.
    pub fn new(ext: &str, contents: &[u8]) -> TempFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("tokengate-test-{}-{n}.{ext}", std::process::id()));
        let f = TempFile(path);
        f.write(contents);
        f
    }

    /// Replaces the contents atomically (write beside, then rename).
    pub fn write(&self, contents: &[u8]) {
        let tmp = self.0.with_extension("tmp");
        std::fs::File::create(&tmp)
            .unwrap()
            .write_all(contents)
            .unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }

    /// The path, for command lines and configs.
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl std::ops::Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A config file holding `text`.
pub fn write_config(text: &str) -> TempFile {
    TempFile::new("toml", text.as_bytes())
}

/// `tokengate dev` on free ports, with every line it printed up to "Ctrl-C to stop."; killed on
/// drop.
pub struct Dev {
    child: Child,
    /// What it printed for the user, in order.
    pub lines: Vec<String>,
}

impl Dev {
    /// Starts `tokengate dev` and reads its printed lines.
    pub async fn start() -> Dev {
        let mut child = Command::new(BIN)
            .args(["dev", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .env("TOKENGATE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .take_while(|l| !l.starts_with("Ctrl-C"))
                .collect::<Vec<String>>()
        })
        .await
        .unwrap();
        Dev { child, lines }
    }

    /// The first printed line `pick` accepts.
    pub fn line(&self, what: &str, pick: impl Fn(&str) -> bool) -> &str {
        self.lines
            .iter()
            .find(|l| pick(l))
            .unwrap_or_else(|| panic!("no {what} line in:\n{}", self.lines.join("\n")))
    }

    /// Runs a printed `curl -s[i] -H 'Authorization: Bearer <token>' <url>` line.
    pub async fn curl(line: &str) -> Reply {
        let token = line
            .split("Bearer ")
            .nth(1)
            .and_then(|t| t.split('\'').next())
            .unwrap_or_else(|| panic!("no bearer token in {line:?}"));
        let url = line.rsplit(' ').next().unwrap();
        let req = Request::get(url)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        Reply::read(client().request(req).await.unwrap()).await
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
