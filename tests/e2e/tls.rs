//! The TLS listener through the real binary: curl (HTTP/1.1 and HTTP/2, with and without a
//! client certificate), a rustls + hyper HTTP/2 client, protocol floor, and certificate reload
//! on SIGHUP while requests keep flowing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::proto_support::{curl, proxy_config, Binary, Leaf, TempFile, TestCa};
use crate::support::{DevIssuer, IdpServer, Upstream};

/// The proxy's TLS files, rewritable.
struct Files {
    cert: TempFile,
    key: TempFile,
    ca: TempFile,
}

impl Files {
    fn new(ca: &TestCa, leaf: &Leaf) -> Files {
        Files {
            cert: TempFile::new("pem", leaf.cert_pem.as_bytes()),
            key: TempFile::new("pem", leaf.key_pem.as_bytes()),
            ca: TempFile::new("pem", ca.cert_pem.as_bytes()),
        }
    }

    fn listen(&self, client_auth: Option<&str>) -> String {
        let mut s = format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            self.cert.path(),
            self.key.path()
        );
        if let Some(mode) = client_auth {
            s += &format!(
                "tls_client_ca_file = \"{}\"\ntls_client_auth = \"{mode}\"\n",
                self.ca.path()
            );
        }
        s
    }
}

struct Setup {
    issuer: DevIssuer,
    _idp: IdpServer,
    upstream: Upstream,
    ca: TestCa,
    files: Files,
    proxy: Binary,
}

async fn setup(client_auth: Option<&str>) -> Setup {
    tokengate::install_crypto_providers();
    let issuer = DevIssuer::generate();
    let idp = IdpServer::start(issuer.jwks()).await.unwrap();
    let upstream = Upstream::start().await;
    let ca = TestCa::new("tokengate test CA");
    let files = Files::new(&ca, &ca.server("first"));
    let text = proxy_config(&idp, &upstream.url(), &files.listen(client_auth), "");
    let proxy = Binary::start(&text).await;
    Setup {
        issuer,
        _idp: idp,
        upstream,
        ca,
        files,
        proxy,
    }
}

impl Setup {
    fn token(&self) -> String {
        self.issuer.rs256(&self.issuer.v2_claims(&["App.Read"]))
    }

    /// Runs curl against `path` on the TLS listener; returns (exit ok, stdout).
    async fn curl(&self, curl: &str, path: &str, extra: &[&str]) -> (bool, String) {
        let mut cmd = std::process::Command::new(curl);
        cmd.args(["-s", "--max-time", "10", "--cacert", self.files.ca.path()])
            .args(["-w", "\\n%{http_code} %{http_version}"])
            .args(extra)
            .arg(format!(
                "https://127.0.0.1:{}{path}",
                self.proxy.public.port()
            ));
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_over_tls_with_and_without_a_client_certificate() {
    let Some(curl) = curl() else {
        return;
    };
    let s = setup(Some("optional")).await;
    let auth = format!("Authorization: Bearer {}", s.token());

    // HTTP/1.1, no client certificate: forwarded as https, a spoofed cert header dropped.
    let (ok, out) = s
        .curl(
            curl,
            "/hello",
            &["--http1.1", "-H", &auth, "-H", "X-ARR-ClientCert: spoofed"],
        )
        .await;
    assert!(ok, "{out}");
    assert!(out.ends_with("200 1.1"), "{out}");
    let seen = s.upstream.last();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert!(!seen.headers.contains_key("x-arr-clientcert"));
    assert!(!seen.headers.contains_key("authorization"));

    // HTTP/2 (ALPN) with a client certificate from the CA: its DER reaches the upstream.
    let client = s.ca.client("caller");
    let cert = TempFile::new("pem", client.cert_pem.as_bytes());
    let key = TempFile::new("pem", client.key_pem.as_bytes());
    let (ok, out) = s
        .curl(
            curl,
            "/hello",
            &[
                "--http2",
                "-H",
                &auth,
                "-H",
                "X-ARR-ClientCert: spoofed",
                "--cert",
                cert.path(),
                "--key",
                key.path(),
            ],
        )
        .await;
    assert!(ok, "{out}");
    assert!(out.ends_with("200 2"), "{out}");
    let seen = s.upstream.last();
    let expected = base64::engine::general_purpose::STANDARD.encode(&client.der);
    assert_eq!(seen.headers["x-arr-clientcert"], expected.as_str());

    // Still authenticated by token: a certificate alone is not a credential.
    let (ok, out) = s
        .curl(
            curl,
            "/hello",
            &["--cert", cert.path(), "--key", key.path()],
        )
        .await;
    assert!(ok && out.ends_with("401 2"), "{out}");

    // A certificate from another CA fails the handshake.
    let stranger = TestCa::new("other CA").client("stranger");
    let cert = TempFile::new("pem", stranger.cert_pem.as_bytes());
    let key = TempFile::new("pem", stranger.key_pem.as_bytes());
    let (ok, out) = s
        .curl(
            curl,
            "/hello",
            &["--cert", cert.path(), "--key", key.path()],
        )
        .await;
    assert!(!ok, "{out}");

    // TLS 1.1 and older are refused; 1.2 works.
    let (ok, _) = s
        .curl(curl, "/hello", &["--tlsv1.1", "--tls-max", "1.1"])
        .await;
    assert!(!ok, "TLS 1.1 must be refused");
    let (ok, out) = s
        .curl(
            curl,
            "/hello",
            &["--tlsv1.2", "--tls-max", "1.2", "-H", &auth],
        )
        .await;
    assert!(ok && out.ends_with("200 2"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn required_client_auth_refuses_the_handshake_without_a_certificate() {
    let Some(curl) = curl() else {
        return;
    };
    let s = setup(Some("required")).await;
    let before = s.upstream.count();
    let (ok, _) = s
        .curl(
            curl,
            "/hello",
            &["-H", &format!("Authorization: Bearer {}", s.token())],
        )
        .await;
    assert!(!ok, "no certificate: no connection");
    assert_eq!(s.upstream.count(), before);
    let client = s.ca.client("caller");
    let (cert, key) = (
        TempFile::new("pem", client.cert_pem.as_bytes()),
        TempFile::new("pem", client.key_pem.as_bytes()),
    );
    let auth = format!("Authorization: Bearer {}", s.token());
    let (ok, out) = s
        .curl(
            curl,
            "/hello",
            &["-H", &auth, "--cert", cert.path(), "--key", key.path()],
        )
        .await;
    assert!(ok && out.ends_with("200 2"), "{out}");
}

/// A rustls client trusting `ca_pem`, offering `alpn`.
fn tls_client(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// An HTTP/2 connection over TLS; returns the sender and the server's leaf certificate.
async fn h2_connect(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
) -> std::io::Result<(
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    Vec<u8>,
)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await?;
    let (_, session) = tls.get_ref();
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    let leaf = session.peer_certificates().unwrap()[0].to_vec();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok((sender, leaf))
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    token: &str,
) -> std::io::Result<u16> {
    let req = Request::get("https://localhost/hello")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let resp = sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    assert_eq!(resp.version(), Version::HTTP_2);
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?;
    Ok(status)
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_reloads_on_sighup_under_load_without_dropped_requests() {
    let s = setup(None).await;
    let connector = tls_client(&s.ca.cert_pem, &[b"h2"]);
    let token = s.token();
    let first_leaf = |der: &[u8]| {
        let pem = &s.files.cert;
        let current = std::fs::read(&pem.0).unwrap();
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&current)
            .map(|c| c.unwrap().to_vec())
            .collect();
        certs[0] == der
    };

    // A long-lived connection opened before any reload must keep working after it.
    let (mut long_lived, leaf) = h2_connect(&connector, s.proxy.public).await.unwrap();
    assert!(first_leaf(&leaf));
    assert_eq!(h2_get(&mut long_lived, &token).await.unwrap(), 200);

    // Load: four workers, each opening a fresh TLS connection per request.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let (connector, addr, token) = (connector.clone(), s.proxy.public, token.clone());
        workers.push(tokio::spawn(async move {
            let mut leaves = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let result = async {
                    let (mut sender, leaf) = h2_connect(&connector, addr).await?;
                    let status = h2_get(&mut sender, &token).await?;
                    Ok::<_, std::io::Error>((status, leaf))
                }
                .await;
                match result {
                    Ok((200, leaf)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        leaves.push(leaf);
                    }
                    Ok((status, _)) => panic!("status {status} under reload"),
                    Err(e) => {
                        eprintln!("request failed under reload: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            leaves
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Rotate to a new certificate, then try a bad pair (the new cert with a foreign key).
    let second = s.ca.server("second");
    s.files.key.write(second.key_pem.as_bytes());
    s.files.cert.write(second.cert_pem.as_bytes());
    s.proxy.signal("-HUP");
    s.proxy.wait_log("TLS certificate reloaded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_good = ok.load(Ordering::Relaxed);

    let foreign = s.ca.server("foreign");
    s.files.key.write(foreign.key_pem.as_bytes());
    s.proxy.signal("-HUP");
    let line = s.proxy.wait_log("TLS reload failed");
    assert!(line.contains(s.files.key.path()), "names the file: {line}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    let mut leaves = Vec::new();
    for w in workers {
        leaves.extend(w.await.unwrap());
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request may fail");
    assert!(ok.load(Ordering::Relaxed) > after_good, "load kept flowing");
    assert!(
        leaves.contains(&second.der),
        "the new certificate was served"
    );
    // After the bad pair, new connections still get the second certificate.
    let (mut fresh, leaf) = h2_connect(&connector, s.proxy.public).await.unwrap();
    assert_eq!(leaf, second.der);
    assert_eq!(h2_get(&mut fresh, &token).await.unwrap(), 200);
    // And the connection from before both reloads is still open and serving.
    assert_eq!(h2_get(&mut long_lived, &token).await.unwrap(), 200);
    eprintln!(
        "reload under load: {} requests, each on a new TLS connection, none failed",
        ok.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_certificate_files_are_config_errors_naming_the_file() {
    let issuer = DevIssuer::generate();
    let idp = IdpServer::start(issuer.jwks()).await.unwrap();
    let ca = TestCa::new("ca");
    let leaf = ca.server("first");
    let cert = TempFile::new("pem", leaf.cert_pem.as_bytes());
    let foreign_key = TempFile::new("pem", ca.server("other").key_pem.as_bytes());
    let text = proxy_config(
        &idp,
        "http://127.0.0.1:1",
        &format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            cert.path(),
            foreign_key.path()
        ),
        "",
    );
    let config = TempFile::new("toml", text.as_bytes());
    let bin = env!("CARGO_BIN_EXE_tokengate");
    let check = std::process::Command::new(bin)
        .args(["check", "--config", config.path()])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains(foreign_key.path()), "{err}");
    let run = std::process::Command::new(bin)
        .args(["--config", config.path()])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&run.stderr).contains(foreign_key.path()));
    // Half a pair is refused by the config itself, naming both keys.
    let half = text.replace(&format!("tls_key_file = \"{}\"\n", foreign_key.path()), "");
    let half_file = TempFile::new("toml", half.as_bytes());
    let out = std::process::Command::new(bin)
        .args(["check", "--config", half_file.path()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_key_file"));
}
