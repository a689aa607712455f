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
//! - The token never reaches the upstream, a log line, a metric label or an error body.
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
pub mod metrics;
pub mod net;
pub mod snapshot;

// The paths these modules had before the callee/net split (issue 10), kept so code written
// against them (tests, benches, fuzz, work in flight) still builds. New code names the rooms:
// `callee::validate`, `net::listener`, ...
#[doc(hidden)]
pub use callee::validate::fetch as keys;
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

pub use config::Config;
use snapshot::{Keys, Snapshot, SnapshotCell};

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
    cell: Arc<SnapshotCell>,
    keys: Arc<keys::KeyControl>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    fetcher: JoinHandle<()>,
}

/// Binds the listeners and starts serving `config`.
pub async fn start(config: Config) -> io::Result<Running> {
    install_crypto_providers();
    let public = TcpListener::bind(config.listen)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("listen.address {}: {e}", config.listen)))?;
    let admin = TcpListener::bind(config.admin)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("admin.address {}: {e}", config.admin)))?;
    let public_addr = public.local_addr()?;
    let admin_addr = admin.local_addr()?;

    let config = Arc::new(config);
    let cell: Arc<SnapshotCell> = Arc::new(ArcSwap::from_pointee(Snapshot::new(
        config.clone(),
        Keys::Pending,
    )));
    let metrics = Arc::new(metrics::Metrics::new());
    let key_control = Arc::new(keys::KeyControl::new());
    let fetcher = tokio::spawn(keys::run_fetcher(
        cell.clone(),
        key_control.clone(),
        metrics.clone(),
    ));

    let proxy = Arc::new(pipeline::Proxy::new(
        cell.clone(),
        validate::cache::TokenCache::new(config.cache.max_entries, config.cache.max_bytes),
        metrics.clone(),
        key_control.clone(),
        forward::Upstream::new(&config.upstream, &config.extra_ca_certs),
    ));
    let (shutdown, rx) = watch::channel(false);
    let limits = config.limits.clone();
    let public_server = tokio::spawn(listener::serve(
        public,
        limits.clone(),
        move |req, conn| {
            let proxy = proxy.clone();
            async move { proxy.handle(req, conn).await }
        },
        rx.clone(),
    ));
    let admin_cell = cell.clone();
    let admin_server = tokio::spawn(listener::serve(
        admin,
        limits,
        move |req, _conn| {
            let resp = admin::handle(&req, &admin_cell, &metrics);
            async move { resp }
        },
        rx,
    ));
    tracing::info!(%public_addr, %admin_addr, upstream = %config.upstream.url, "tokengate listening");
    Ok(Running {
        public_addr,
        admin_addr,
        cell,
        keys: key_control,
        shutdown,
        servers: vec![public_server, admin_server],
        fetcher,
    })
}

impl Running {
    /// Swaps in a new config for new requests. Settings fixed at start (listener addresses and
    /// limits, upstream connection pool, cache size, TLS trust) cannot change this way: such a
    /// config is refused whole, naming them, so nothing half-applies.
    pub fn reload(&self, config: Config) -> Result<(), String> {
        let current = self.cell.load();
        let fixed = restart_required(&current.config, &config);
        if !fixed.is_empty() {
            return Err(format!(
                "{} cannot change without a restart",
                fixed.join(", ")
            ));
        }
        let same_key_source = config.auth.keys == current.config.auth.keys
            && config.auth.algorithms == current.config.auth.algorithms;
        snapshot::store_config(&self.cell, Arc::new(config));
        if !same_key_source {
            self.keys.refresh_now();
        }
        Ok(())
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

/// The settings that differ between `old` and `new` but are only read at start.
fn restart_required(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.limits, &new.limits);
    let checks = [
        ("listen.address", old.listen != new.listen),
        ("admin.address", old.admin != new.admin),
        (
            "upstream.connect_timeout",
            old.upstream.connect_timeout != new.upstream.connect_timeout,
        ),
        (
            "upstream.pool_idle_timeout",
            old.upstream.pool_idle_timeout != new.upstream.pool_idle_timeout,
        ),
        (
            "cache",
            old.cache.max_entries != new.cache.max_entries
                || old.cache.max_bytes != new.cache.max_bytes,
        ),
        ("tls.ca_file", old.extra_ca_certs != new.extra_ca_certs),
        (
            "limits (except max_body_bytes)",
            o.header_read_timeout != n.header_read_timeout
                || o.shutdown_grace != n.shutdown_grace
                || o.max_concurrent_streams != n.max_concurrent_streams
                || o.max_header_bytes != n.max_header_bytes
                || o.max_connections != n.max_connections
                || o.max_headers != n.max_headers
                || o.idle_timeout != n.idle_timeout,
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(k, _)| k)
        .collect()
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
