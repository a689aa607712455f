//! TLS on the public listener: the acceptor, its reload, and the client certificate.
//!
//! # Contract
//! - Enabled by `listen.tls_cert_file` + `listen.tls_key_file` (PEM; the cert file may hold the
//!   chain, leaf first). TLS 1.2 and 1.3 only (rustls has nothing older); ALPN offers `h2` and
//!   `http/1.1`.
//! - The file paths are read at start only; their contents are re-read by [`Acceptor::reload`]
//!   (on SIGHUP). A reload that fails (unreadable file, no key, key not matching the
//!   certificate, bad CA file) keeps the current certificate and returns an error naming the
//!   file. Connections already open keep the configuration they were accepted with; new ones get
//!   the new one at once. Nothing is dropped.
//! - With `listen.tls_client_ca_file`, clients are asked for a certificate chaining to one of its
//!   CAs: `tls_client_auth = "optional"` (default) lets clients without one in, `"required"`
//!   refuses the handshake. A certificate that is presented is always verified; an invalid one
//!   fails the handshake. The verified leaf is forwarded as `X-ARR-ClientCert` (base64 of the
//!   DER, one line), as App Service does; a client-sent `X-ARR-ClientCert` never reaches the
//!   upstream (`rewrite::strip_credentials`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;
use http::HeaderValue;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// `listen.tls_client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Ask for a client certificate; connections without one are served (the default).
    Optional,
    /// Refuse the handshake without a valid client certificate.
    Required,
}

/// The TLS settings of the public listener (all paths; contents are read by [`Acceptor`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenTls {
    /// `listen.tls_cert_file`: PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// `listen.tls_key_file`: PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// `listen.tls_client_ca_file`: PEM CA certificates for client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// `listen.tls_client_auth`.
    pub client_auth: ClientAuth,
}

/// What the handshake established about the client, for the request handler.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The verified client leaf certificate, as the `X-ARR-ClientCert` value.
    pub client_cert: Option<HeaderValue>,
}

/// The listener's TLS configuration, swappable whole.
pub struct Acceptor {
    files: ListenTls,
    current: ArcSwap<ServerConfig>,
}

impl Acceptor {
    /// Reads the files named in `files`; the error names the file at fault.
    pub fn load(files: ListenTls) -> Result<Acceptor, String> {
        let config = server_config(&files)?;
        Ok(Acceptor {
            files,
            current: ArcSwap::from_pointee(config),
        })
    }

    /// Re-reads the files. On error the current configuration stays in use.
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.files)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// The configured file paths.
    pub fn files(&self) -> &ListenTls {
        &self.files
    }

    /// Runs the server handshake on `io` with the current configuration.
    pub async fn accept<IO>(&self, io: IO) -> io::Result<(TlsStream<IO>, Peer)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current.load_full());
        let stream = acceptor.accept(io).await?;
        let client_cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(leaf.as_ref());
                HeaderValue::from_str(&b64).ok()
            });
        Ok((stream, Peer { client_cert }))
    }
}

/// Builds a rustls server configuration from the files.
fn server_config(files: &ListenTls) -> Result<ServerConfig, String> {
    let certs = read_certs("listen.tls_cert_file", &files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| format!("listen.tls_key_file {}: {e}", files.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("listen TLS: {e}"))?;
    let builder = match &files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs("listen.tls_client_ca_file", path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("listen.tls_client_ca_file {}: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match files.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("listen.tls_client_ca_file {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "listen.tls_cert_file {} with listen.tls_key_file {}: {e}",
            files.cert_file.display(),
            files.key_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {}: no PEM certificates", path.display()));
    }
    Ok(certs)
}
