//! tokengate: an authenticating reverse proxy for service-to-service calls with Microsoft Entra
//! ID access tokens, doing what App Service Authentication ("EasyAuth") does, anywhere.
//!
//! ```text
//!            public listener (h1 + h2c)                      admin listener
//!   client ──► listener ──► pipeline ──► forward ──► upstream   /healthz /readyz /metrics
//!                             │
//!     normalize → extract → validate (cache, keys) → authorize → rewrite → forward → metrics
//!                                  ▲
//!              keys fetcher ───────┘ (discovery + JWKS, background, one ArcSwap<Snapshot>)
//! ```
//!
//! # Security contract
//! - Nothing reaches the upstream unless its normalized path is anonymous (and covered by no
//!   rule), or it carries a token that validated (`validate`) and was authorized (`authorize`).
//!   The one opt-in exception is report mode (`auth.mode = "report"`, or a rule's
//!   `mode = "report"`): a 401/403 refusal is forwarded, logged `would deny` and counted, with
//!   identity headers only when the token itself was accepted; malformed requests, methods we
//!   never forward and a proxy without keys are refused in every mode.
//! - The token never reaches a log line, a metric label or an error body, nor the upstream
//!   unless `upstream.forward_token = true` (then only a validated token, as
//!   `X-MS-TOKEN-AAD-ACCESS-TOKEN`).
//! - Client-sent `X-MS-CLIENT-PRINCIPAL*` and `X-MS-TOKEN-*` headers never reach the upstream.
//! - Without signing keys every protected request fails closed (503) and `/readyz` is 503.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub mod admin;
pub mod callee;
pub mod config;
#[doc(hidden)]
pub mod dev;
pub mod explain;
pub mod metrics;
pub mod net;
pub mod refresh;
pub mod snapshot;

// The paths these modules had before the callee/net split (issue 10), kept so code written
// against them (tests, benches, fuzz, work in flight) still builds. New code names the rooms:
// `callee::validate`, `net::listener`, ...
#[doc(hidden)]
pub use callee::{
    authorize, extract, forward, normalize, pipeline, principal, reject, respond, rewrite, validate,
};
#[doc(hidden)]
pub use net::{guard, listener};

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use callee::forward::Upstream;
use callee::pipeline::Proxy;
use callee::validate::cache::TokenCache;
use callee::validate::fetch::KeyFetcher;
pub use config::Config;
use snapshot::{SigningKeys, Snapshot, SnapshotCell};

/// Installs the process-wide crypto providers (aws-lc-rs for rustls and jsonwebtoken) so that no
/// stray crate feature can change them or make the first use panic. Idempotent.
pub fn install_crypto_providers() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// A running proxy: both listeners bound, keys being fetched.
pub struct Running {
    /// The public listener's bound address.
    pub public_addr: SocketAddr,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    startup: config::Startup,
    tls: Option<Arc<net::tls::Acceptor>>,
    cell: Arc<SnapshotCell>,
    key_fetcher: Arc<KeyFetcher>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    fetcher: JoinHandle<()>,
}

/// Binds the listeners and starts serving `config`.
pub async fn start(config: Config) -> io::Result<Running> {
    install_crypto_providers();
    let Config { startup, policy } = config;
    let public = TcpListener::bind(startup.listen)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("listen.address {}: {e}", startup.listen)))?;
    let admin = TcpListener::bind(startup.admin)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("admin.address {}: {e}", startup.admin)))?;
    let public_addr = public.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let tls = match &startup.listen_tls {
        None => None,
        Some(files) => Some(Arc::new(
            net::tls::Acceptor::load(files.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        )),
    };

    let upstream_url = policy.upstream.url.clone();
    let cell: Arc<SnapshotCell> = Arc::new(ArcSwap::from_pointee(Snapshot::new(
        Arc::new(policy),
        SigningKeys::Pending,
    )));
    let metrics = Arc::new(metrics::Metrics::new());
    let key_fetcher = Arc::new(KeyFetcher::new(
        cell.clone(),
        metrics.clone(),
        &startup.extra_ca_certs,
    ));
    let fetcher = tokio::spawn(key_fetcher.clone().run());

    let proxy = Arc::new(Proxy::new(
        cell.clone(),
        TokenCache::new(startup.cache.max_entries, startup.cache.max_bytes),
        metrics.clone(),
        key_fetcher.clone(),
        Upstream::new(&startup.upstream_pool, &startup.extra_ca_certs),
    ));
    let (shutdown, rx) = watch::channel(false);
    let limits = startup.limits.clone();
    let public_server = tokio::spawn(net::listener::serve(
        public,
        limits.clone(),
        tls.clone(),
        move |req, conn| {
            let proxy = proxy.clone();
            async move { proxy.handle(req, conn).await }
        },
        rx.clone(),
    ));
    let admin_cell = cell.clone();
    let admin_server = tokio::spawn(net::listener::serve(
        admin,
        limits,
        None,
        move |req, _conn| {
            let resp = admin::handle(&req, &admin_cell, &metrics);
            async move { resp }
        },
        rx,
    ));
    tracing::info!(
        %public_addr,
        %admin_addr,
        tls = tls.is_some(),
        upstream = %upstream_url,
        "tokengate listening"
    );
    Ok(Running {
        public_addr,
        admin_addr,
        startup,
        tls,
        cell,
        key_fetcher,
        shutdown,
        servers: vec![public_server, admin_server],
        fetcher,
    })
}

impl Running {
    /// Swaps in a new policy for new requests. Settings fixed at start ([`config::Startup`]:
    /// listener addresses and limits, upstream connection pool, cache size, TLS trust) cannot
    /// change this way: a config that differs there is refused whole, naming them, so nothing
    /// half-applies.
    pub fn reload(&self, config: Config) -> Result<(), String> {
        let Config { startup, policy } = config;
        if startup != self.startup {
            let changed = self.startup.changed(&startup);
            let names = if changed.is_empty() {
                "start-only settings".to_string()
            } else {
                changed.join(", ")
            };
            return Err(format!("{names} cannot change without a restart"));
        }
        let current = self.cell.load();
        let (old, new) = (&current.policy.auth, &policy.auth);
        let same_key_source = new.key_source == old.key_source && new.algorithms == old.algorithms;
        snapshot::store_policy(&self.cell, Arc::new(policy));
        if !same_key_source {
            self.key_fetcher.refresh_now();
        }
        Ok(())
    }

    /// Re-reads the public listener's certificate, key and client CA files (SIGHUP). Without
    /// TLS there is nothing to do. On error the current certificate stays in use and the error
    /// names the file; connections are never dropped either way.
    pub fn reload_tls(&self) -> Result<bool, String> {
        match &self.tls {
            None => Ok(false),
            Some(tls) => tls.reload().map(|()| true),
        }
    }

    /// Whether signing keys are loaded.
    pub fn ready(&self) -> bool {
        self.cell.load().ready()
    }

    /// Stops accepting, drains in-flight requests (bounded by `limits.shutdown_grace`), stops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for s in self.servers {
            let _ = s.await;
        }
        self.fetcher.abort();
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
