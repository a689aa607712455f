//! The caller side: get Entra access tokens for this workload's identity, hand them to unmodified
//! apps, and attach them to outgoing calls.
//!
//! ```text
//!   source (workload identity | certificate | IMDS | Azure CLI | dev)
//!      │  one acquisition at a time per resource, ahead of expiry, keep last good
//!      ▼
//!   cache ──► endpoint  /msi/token (App Service), /metadata/identity/oauth2/token (IMDS)
//!      └────► egress    app ─► http://{listen}/... ─► upstream + Authorization: Bearer
//! ```
//!
//! - [`config`]: `[identity]`, `[identity_endpoint]`, `[[egress]]` (public API).
//! - [`source`]: one acquisition from the configured source; [`assertion`] signs certificate
//!   client assertions.
//! - [`cache`]: per-resource slots with one driver task each (single flight, refresh ahead).
//! - [`endpoint`]: the two local token protocols; [`secret`] guards the App Service one.
//! - [`egress`]: forwarding with the callee side's client (`callee::forward`).
//! - [`metrics`]: acquisitions and seconds left, on the shared admin listener.
//!
//! # Security contract
//! - A token, a client assertion, the federated token or the identity secret never appears in a
//!   log line, a metric label or an error body, at any level: the types that hold them redact
//!   `Debug` and have no `Display`.
//! - Tokens go to the authority only over https (plain http to loopback only; IMDS on link-local).
//! - The App Service endpoint answers only with the secret; the IMDS one only with
//!   `Metadata: true` and not through a proxy. Both bind loopback unless told otherwise, and
//!   `check` warns when told otherwise.

pub mod assertion;
pub mod cache;
pub mod config;
pub mod egress;
pub mod endpoint;
pub mod form;
pub mod metrics;
pub mod secret;
pub mod source;
pub mod token;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::cache::TokenCache;
use self::config::{CallerConfig, EndpointConfig};
use self::secret::IdentitySecret;
use crate::config::LimitsConfig;
use crate::metrics::Metrics;
use crate::net::listener;
use crate::pipeline::unix_now;

/// The caller side, running.
pub struct CallerSide {
    /// The identity endpoint's bound address, if configured.
    pub endpoint_addr: Option<SocketAddr>,
    /// Each `[[egress]]` route's bound address, in config order.
    pub egress_addrs: Vec<SocketAddr>,
    cache: Arc<TokenCache>,
    egress_resources: Vec<token::Resource>,
    servers: Vec<JoinHandle<()>>,
}

/// Binds the caller side's listeners and starts serving. Every listener drains on `shutdown`.
pub async fn start(
    config: CallerConfig,
    limits: &LimitsConfig,
    extra_ca: &[CertificateDer<'static>],
    metrics: &Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<CallerSide> {
    let source = Arc::new(source::TokenSource::new(config.identity.clone(), extra_ca));
    let caller_metrics = Arc::new(metrics::CallerMetrics::new(metrics, source.name()));
    let cache = Arc::new(TokenCache::new(source.clone(), caller_metrics));
    metrics::SecondsLeft::register(metrics, &cache);
    let mut servers = Vec::new();

    let endpoint_addr = match &config.endpoint {
        None => None,
        Some(e) => {
            let socket = bind("identity_endpoint.address", e.address).await?;
            let addr = socket.local_addr()?;
            let secret = IdentitySecret::load_or_create(&e.secret_file)?;
            let endpoint = Arc::new(endpoint::Endpoint::new(
                cache.clone(),
                secret,
                e.wait_timeout,
            ));
            servers.push(tokio::spawn(listener::serve_shared(
                socket,
                limits.clone(),
                move |req| {
                    let endpoint = endpoint.clone();
                    async move { Ok::<_, Infallible>(endpoint.handle(req).await) }
                },
                shutdown.clone(),
            )));
            Some(addr)
        }
    };

    let mut egress_addrs = Vec::new();
    let mut egress_resources = Vec::new();
    for (i, route) in config.egress.into_iter().enumerate() {
        let socket = bind(&format!("egress[{i}].listen"), route.listen).await?;
        egress_addrs.push(socket.local_addr()?);
        egress_resources.push(route.resource.clone());
        let egress = Arc::new(egress::Egress::new(route, cache.clone(), extra_ca));
        servers.push(tokio::spawn(listener::serve_shared(
            socket,
            limits.clone(),
            move |req| {
                let egress = egress.clone();
                async move { Ok::<_, Infallible>(egress.handle(req).await) }
            },
            shutdown.clone(),
        )));
    }
    tracing::info!(
        source = source.name(),
        endpoint = ?endpoint_addr,
        egress = ?egress_addrs,
        "caller side listening"
    );
    Ok(CallerSide {
        endpoint_addr,
        egress_addrs,
        cache,
        egress_resources,
        servers,
    })
}

impl CallerSide {
    /// A check, callable from anywhere, of whether every egress route holds a valid token (so
    /// the first call does not wait).
    pub fn readiness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let cache = self.cache.clone();
        let resources = self.egress_resources.clone();
        move || {
            let now = unix_now();
            let held = cache.expiries();
            resources.iter().all(|r| {
                held.iter()
                    .any(|(k, exp)| k == r && exp.is_some_and(|e| now < e))
            })
        }
    }

    /// Waits for the listeners to finish draining (after shutdown was signalled).
    pub async fn drained(self) {
        for s in self.servers {
            let _ = s.await;
        }
    }
}

/// What `tokengate identity-env` prints: the variables azure-identity and MSAL read to find an
/// App Service-style endpoint. Creates the secret file if missing, like the running side does.
pub fn identity_env(endpoint: &EndpointConfig) -> io::Result<String> {
    let secret = IdentitySecret::load_or_create(&endpoint.secret_file)?;
    // An unspecified bind address is reached over loopback from the same host or pod.
    let mut addr = endpoint.address;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!(
        "export IDENTITY_ENDPOINT=http://{addr}{}\n\
         export IDENTITY_HEADER={}\n\
         # IMDS-shaped clients instead: export AZURE_POD_IDENTITY_AUTHORITY_HOST=http://{addr}\n",
        endpoint::APP_SERVICE_PATH,
        secret.reveal(),
    ))
}

async fn bind(key: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("{key} {addr}: {e}")))
}
