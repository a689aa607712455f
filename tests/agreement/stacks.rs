//! The callees, each a real framework on its own server, and the real tokengate binary in front
//! of each. Apps print `AGREEMENT_LISTENING <port>` once bound to a kernel-chosen port.
//!
//! The toolchains come from `.ci/agreement-env` (a venv and `node_modules` under
//! `TOKENGATE_AGREEMENT_HOME`, default `~/.cache/tokengate-agreement`; Go from Debian).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tokengate");

/// One framework behind tokengate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// Flask 3 on Werkzeug's server.
    Flask,
    /// Django 5 views on Django's own threaded WSGI server.
    Django,
    /// Starlette under uvicorn (httptools, as `uvicorn[standard]` runs).
    Starlette,
    /// Express 4 with method-override.
    Express,
    /// Go net/http ServeMux.
    Go,
    /// The Flask app under gunicorn 21: `_` and `-` fold to one CGI variable.
    Gunicorn,
}

impl Stack {
    pub const ALL: [Stack; 6] = [
        Stack::Flask,
        Stack::Django,
        Stack::Starlette,
        Stack::Express,
        Stack::Go,
        Stack::Gunicorn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stack::Flask => "flask",
            Stack::Django => "django",
            Stack::Starlette => "starlette",
            Stack::Express => "express",
            Stack::Go => "go",
            Stack::Gunicorn => "gunicorn21",
        }
    }

    /// The command that starts the app, or why it cannot be started here.
    pub fn command(self, env: &Toolchains) -> Result<Command, String> {
        let dir = source_dir();
        let python = |script: &str| -> Result<Command, String> {
            let py = env.home.join("venv/bin/python");
            if !py.exists() {
                return Err(format!(
                    "no venv at {} (run .ci/agreement-env)",
                    py.display()
                ));
            }
            let mut c = Command::new(py);
            c.arg(dir.join(script)).current_dir(&dir);
            Ok(c)
        };
        match self {
            Stack::Flask => python("flask_app.py"),
            Stack::Django => python("django_app.py"),
            Stack::Starlette => python("starlette_app.py"),
            Stack::Gunicorn => python("gunicorn_run.py"),
            Stack::Express => {
                let modules = env.home.join("express/node_modules");
                if !modules.join("express").exists() {
                    return Err(format!("no {} (run .ci/agreement-env)", modules.display()));
                }
                if !on_path("node") {
                    return Err("no node on PATH".into());
                }
                let mut c = Command::new("node");
                c.arg(dir.join("express/app.js")).env("NODE_PATH", modules);
                Ok(c)
            }
            Stack::Go => {
                if !on_path("go") {
                    return Err("no go on PATH (apt-get install golang-go)".into());
                }
                let out = target_dir().join("agreement/go-server");
                let status = Command::new("go")
                    .args(["build", "-o"])
                    .arg(&out)
                    .arg(dir.join("go/main.go"))
                    .env("GOCACHE", target_dir().join("agreement/gocache"))
                    .env("GOFLAGS", "")
                    .env("GO111MODULE", "off")
                    .status()
                    .map_err(|e| format!("go build: {e}"))?;
                if !status.success() {
                    return Err(format!("go build failed: {status}"));
                }
                Ok(Command::new(out))
            }
        }
    }
}

/// Where the installed callees live.
pub struct Toolchains {
    pub home: PathBuf,
}

impl Toolchains {
    pub fn find() -> Toolchains {
        let home = std::env::var_os("TOKENGATE_AGREEMENT_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                    .join(".cache/tokengate-agreement")
            });
        Toolchains { home }
    }
}

fn on_path(tool: &str) -> bool {
    Command::new(tool)
        .arg(if tool == "go" { "version" } else { "--version" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agreement")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// A child process killed (and reaped) on drop, with its stderr kept for failure messages.
pub struct Proc {
    child: Child,
    pub addr: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts an app and waits for its `AGREEMENT_LISTENING` line.
    pub fn app(mut cmd: Command) -> Result<Proc, String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let port = wait_for(&rx, Duration::from_secs(60), |line| {
            line.strip_prefix("AGREEMENT_LISTENING ")
                .and_then(|p| p.trim().parse::<u16>().ok())
        });
        match port {
            Some(port) => Ok(Proc {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                stderr,
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let err: Vec<String> = stderr.try_iter().collect();
                Err(format!(
                    "{cmd:?} did not announce its port; stderr:\n{}",
                    err.join("\n")
                ))
            }
        }
    }

    /// Starts `tokengate --config <path>` and waits for its "listening" line.
    pub fn tokengate(config: &Path) -> Proc {
        // Another build can be put under test (e.g. a branch's binary): AGREEMENT_TOKENGATE_BIN.
        let bin = std::env::var_os("AGREEMENT_TOKENGATE_BIN").unwrap_or_else(|| BIN.into());
        let mut child = Command::new(bin)
            .args([
                "--config",
                config.to_str().expect("utf-8 path"),
                "--log-format",
                "json",
            ])
            .env(
                "TOKENGATE_LOG",
                "info,tokengate::pipeline=warn,tokengate::callee=warn",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tokengate starts");
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        let addr = wait_for(&stderr, Duration::from_secs(30), |line| {
            let v: Value = serde_json::from_str(line).ok()?;
            (v["message"] == "tokengate listening")
                .then(|| v["public_addr"].as_str()?.parse().ok())
                .flatten()
        });
        match addr {
            Some(addr) => Proc {
                child,
                addr,
                stderr,
            },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tokengate did not start: {}",
                    stderr.try_iter().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines it wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let lines: Vec<String> = self.stderr.try_iter().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards a pipe's lines to a channel, keeping the pipe drained so the child never blocks.
fn drain(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::sync_channel(1024);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            // Full channel: drop the line rather than block the child.
            let _ = tx.try_send(line);
        }
    });
    rx
}

fn wait_for<T>(
    rx: &mpsc::Receiver<String>,
    limit: Duration,
    mut f: impl FnMut(&str) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(v) = f(&line) {
                    return Some(v);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
    None
}
