//! Outbound HTTP: the one way tokengate opens connections to other servers (the upstream, the
//! IdP's discovery and JWKS documents, and on the caller side token endpoints).
//!
//! # Contract
//! - TLS is rustls with the system's CA certificates plus `tls.ca_file` ([`https_connector`]);
//!   plain `http` is allowed (loopback IdPs and upstreams in tests and sidecars).
//! - Connections are pooled (hyper-util's legacy client) and established within the given
//!   connect timeout.
//! - [`HttpClient`] is for small documents: every exchange is bounded in time (head and body
//!   together) and in body size, so a slow or hostile server costs at most `timeout` and
//!   `max_bytes`. Errors name the method and URL, never a request header (which may hold a
//!   credential) or the response body (which may hold a token).
//! - Nothing here retries: the caller decides (see [`crate::refresh`]).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;

/// TCP plus optional TLS.
pub type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The `User-Agent` of every request tokengate makes itself.
pub const TOKENGATE_USER_AGENT: &str = concat!("tokengate/", env!("CARGO_PKG_VERSION"));

/// Builds a connector trusting the system's CA certificates plus `extra_ca` (`tls.ca_file`),
/// connecting within `connect_timeout`.
pub fn https_connector(
    connect_timeout: Duration,
    extra_ca: &[CertificateDer<'static>],
) -> HttpsConnector {
    connector_for(connect_timeout, extra_ca, Alpn::Http1)
}

/// The one protocol a connector offers by ALPN on https (plain http is unaffected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1`.
    Http1,
    /// `h2`.
    Http2,
}

/// [`https_connector`] offering `alpn` on https.
pub fn connector_for(
    connect_timeout: Duration,
    extra_ca: &[CertificateDer<'static>],
    alpn: Alpn,
) -> HttpsConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "loading system CA certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    for cert in extra_ca {
        if let Err(error) = roots.add(cert.clone()) {
            tracing::warn!(%error, "tls.ca_file: certificate not usable as a trust anchor");
        }
    }
    if added == 0 && extra_ca.is_empty() {
        tracing::warn!("no CA certificates: https upstreams and IdPs will fail");
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    match alpn {
        Alpn::Http1 => builder.enable_http1().wrap_connector(http),
        Alpn::Http2 => builder.enable_http2().wrap_connector(http),
    }
}

/// A pooled client for small request/response documents (discovery, JWKS, token endpoints).
/// Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector, Full<Bytes>>,
}

impl HttpClient {
    /// A client connecting within `connect_timeout`, trusting the system's CAs plus `extra_ca`.
    pub fn new(connect_timeout: Duration, extra_ca: &[CertificateDer<'static>]) -> HttpClient {
        let client =
            Client::builder(TokioExecutor::new()).build(https_connector(connect_timeout, extra_ca));
        HttpClient { client }
    }

    /// `GET uri` with `Accept: application/json`; only a 200 is a success. The whole exchange
    /// takes at most `timeout` and the body at most `max_bytes`.
    pub async fn get(
        &self,
        uri: &Uri,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Bytes, FetchError> {
        let req = Request::get(uri.clone())
            .header(ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|e| FetchError::new(&Method::GET, uri, FetchErrorKind::Request(e)))?;
        let resp = self.send(req, timeout, max_bytes).await?;
        if resp.status() != StatusCode::OK {
            return Err(FetchError::new(
                &Method::GET,
                uri,
                FetchErrorKind::Status(resp.status()),
            ));
        }
        Ok(resp.into_body())
    }

    /// Sends `req` and reads the whole response, whatever its status (token endpoints answer
    /// errors as JSON documents the caller wants to read). Adds tokengate's `User-Agent` when
    /// `req` has none. The whole exchange takes at most `timeout` and the body at most
    /// `max_bytes`.
    pub async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<Response<Bytes>, FetchError> {
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let fail = |kind| FetchError::new(&method, &uri, kind);
        req.headers_mut()
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(TOKENGATE_USER_AGENT));
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| fail(FetchErrorKind::Transport(e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, max_bytes)
                .collect()
                .await
                .map_err(|e| fail(FetchErrorKind::Body(e)))?;
            Ok(Response::from_parts(parts, body.to_bytes()))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| fail(FetchErrorKind::Timeout(timeout)))?
    }
}

/// An outbound exchange that failed, naming the method and URL.
#[derive(Debug)]
pub struct FetchError {
    method: Method,
    uri: Uri,
    /// What went wrong.
    pub kind: FetchErrorKind,
}

/// What went wrong with an outbound exchange.
#[derive(Debug)]
pub enum FetchErrorKind {
    /// The request could not be built (a bad header value).
    Request(http::Error),
    /// Connecting, TLS, or the HTTP exchange itself failed.
    Transport(hyper_util::client::legacy::Error),
    /// The server answered with an unexpected status ([`HttpClient::get`] wants 200).
    Status(StatusCode),
    /// The body could not be read, or was larger than allowed.
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// No complete answer within the timeout.
    Timeout(Duration),
}

impl FetchError {
    fn new(method: &Method, uri: &Uri, kind: FetchErrorKind) -> FetchError {
        FetchError {
            method: method.clone(),
            uri: uri.clone(),
            kind,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.method, self.uri)?;
        match &self.kind {
            FetchErrorKind::Request(e) => write!(f, "{e}"),
            FetchErrorKind::Transport(e) => write!(f, "{e}"),
            FetchErrorKind::Status(s) => write!(f, "status {s}"),
            FetchErrorKind::Body(e) => write!(f, "body: {e}"),
            FetchErrorKind::Timeout(t) => write!(f, "no answer within {t:?}"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            FetchErrorKind::Request(e) => Some(e),
            FetchErrorKind::Transport(e) => Some(e),
            FetchErrorKind::Body(e) => Some(&**e),
            FetchErrorKind::Status(_) | FetchErrorKind::Timeout(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;

    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    /// Serves `body` with `status` to every request, after `delay`.
    async fn server(status: StatusCode, body: &'static [u8], delay: Duration) -> Uri {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        let ua = req.headers().get(USER_AGENT).cloned();
                        let mut resp = Response::new(Full::new(Bytes::from_static(body)));
                        *resp.status_mut() = status;
                        if let Some(ua) = ua {
                            resp.headers_mut().insert("x-seen-user-agent", ua);
                        }
                        Ok::<_, Infallible>(resp)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}/doc").parse().unwrap()
    }

    fn client() -> HttpClient {
        crate::install_crypto_providers();
        HttpClient::new(Duration::from_secs(2), &[])
    }

    #[tokio::test]
    async fn get_returns_a_200_body() {
        let uri = server(StatusCode::OK, b"{\"a\":1}", Duration::ZERO).await;
        let body = client().get(&uri, Duration::from_secs(5), 1024).await;
        assert_eq!(body.unwrap(), Bytes::from_static(b"{\"a\":1}"));
    }

    #[tokio::test]
    async fn get_refuses_other_statuses_naming_the_url() {
        let uri = server(StatusCode::NOT_FOUND, b"nope", Duration::ZERO).await;
        let err = client().get(&uri, Duration::from_secs(5), 1024).await;
        let err = err.unwrap_err();
        assert!(matches!(
            err.kind,
            FetchErrorKind::Status(StatusCode::NOT_FOUND)
        ));
        assert_eq!(err.to_string(), format!("GET {uri}: status 404 Not Found"));
    }

    #[tokio::test]
    async fn send_reads_any_status_and_sets_the_user_agent() {
        let uri = server(
            StatusCode::BAD_REQUEST,
            b"{\"error\":\"x\"}",
            Duration::ZERO,
        )
        .await;
        let req = Request::post(uri).body(Full::default()).unwrap();
        let resp = client().send(req, Duration::from_secs(5), 1024).await;
        let resp = resp.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()["x-seen-user-agent"], TOKENGATE_USER_AGENT);
        assert_eq!(resp.body().as_ref(), b"{\"error\":\"x\"}");
    }

    #[tokio::test]
    async fn oversized_bodies_and_slow_servers_are_errors() {
        let uri = server(StatusCode::OK, b"0123456789", Duration::ZERO).await;
        let err = client().get(&uri, Duration::from_secs(5), 4).await;
        assert!(matches!(err.unwrap_err().kind, FetchErrorKind::Body(_)));
        let slow = server(StatusCode::OK, b"{}", Duration::from_secs(30)).await;
        let err = client().get(&slow, Duration::from_millis(200), 1024).await;
        let err = err.unwrap_err();
        assert!(matches!(err.kind, FetchErrorKind::Timeout(_)));
        assert!(err.to_string().ends_with("no answer within 200ms"), "{err}");
    }

    #[tokio::test]
    async fn connection_refused_is_a_transport_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let uri: Uri = format!("http://{addr}/").parse().unwrap();
        let err = client().get(&uri, Duration::from_secs(5), 1024).await;
        assert!(matches!(
            err.unwrap_err().kind,
            FetchErrorKind::Transport(_)
        ));
    }
}
