//! Real parts for the protocol tests (gRPC, WebSocket, TLS): the tokengate binary as a child
//! process, real third-party peers (Python grpcio and websockets, curl), and a test CA.
//!
//! The peers are installed by `.ci/test-peers`, which the first test needing one runs (see
//! `provision`). Outside CI a missing tool skips its test with a
//! note on stderr; in CI (`CI` set) it fails the test, so CI can never pass by skipping.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::Value;

use crate::process::Process;
pub use crate::support::IdpServer;

/// Returns `python3` when it imports every one of `modules`; otherwise skips (None) outside CI
/// and panics in CI.
pub fn python_with(modules: &[&str]) -> Option<&'static str> {
    crate::provision::ensure_test_peers();
    let import = format!("import {}", modules.join(", "));
    let ok = Command::new("python3")
        .args(["-c", &import])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some("python3");
    }
    missing(&format!("python3 with {}", modules.join(", ")))
}

/// Returns `curl` when it is installed with HTTP/2 support (see [`python_with`] for skipping).
pub fn curl() -> Option<&'static str> {
    crate::provision::ensure_test_peers();
    let ok = Command::new("curl")
        .arg("-V")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("HTTP2"));
    if ok {
        return Some("curl");
    }
    missing("curl with HTTP2")
}

fn missing<T>(what: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required in CI (.ci/test-peers installs it)");
    }
    eprintln!("SKIPPED: {what} not available (.ci/test-peers installs it)");
    None
}

/// The path of a peer script under `tests/e2e/peers`.
pub fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/peers")
        .join(name)
}

/// A peer server process that announced `PORT <n>` on stdout; killed on drop.
pub struct PeerServer {
    child: Child,
    pub port: u16,
}

impl PeerServer {
    pub fn start(python: &str, script: &str) -> PeerServer {
        let mut child = Command::new(python)
            .arg(peer_script(script))
            .arg("server")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("peer prints its port").unwrap();
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected peer output {line:?}"));
        PeerServer { child, port }
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a peer script as a client and parses the one JSON document it prints.
pub async fn peer_client(python: &str, script: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new(python);
    cmd.arg(peer_script(script)).arg("client").args(args);
    let run = tokio::task::spawn_blocking(move || cmd.output());
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("peer client finishes")
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "peer client printed {stdout:?}, stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The proxy config used by the protocol tests: `/echo.Admin` and `/admin` need `App.Admin`.
pub fn proxy_config(idp: &IdpServer, upstream_url: &str, listen_extra: &str, tail: &str) -> String {
    format!(
        r#"
[listen]
address = "127.0.0.1:0"
{listen_extra}
[admin]
address = "127.0.0.1:0"
[upstream]
url = "{upstream_url}"
timeout = "5s"
connect_timeout = "2s"
{tail}
[auth]
openid_configuration = "{disc}"
issuers = ["{v2}"]
audiences = ["{aud}"]
[[auth.rules]]
path = "/echo.Admin"
roles = ["App.Admin"]
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
"#,
        disc = idp.discovery_url(),
        v2 = tokengate::dev::v2_issuer(tokengate::dev::DEV_TENANT),
        aud = tokengate::dev::DEV_AUDIENCE,
    )
}

pub use crate::process::TempFile;

/// The tokengate binary running a config text; killed on drop.
pub struct Binary {
    process: Process,
    _config: TempFile,
}

impl Binary {
    /// Starts `tokengate --config <file with text>` and waits until it is listening and ready.
    pub async fn start(text: &str) -> Binary {
        let config = crate::process::write_config(text);
        let process = Process::start(&config, &[]);
        process.wait_ready().await;
        Binary {
            process,
            _config: config,
        }
    }
}

impl std::ops::Deref for Binary {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

/// A test CA issuing server certificates for 127.0.0.1/localhost and client certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

/// A certificate with its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost` named `cn`.
    pub fn server(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, cn);
        self.sign(params)
    }

    /// A client certificate named `cn`.
    pub fn client(&self, cn: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}
