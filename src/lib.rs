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
pub mod caller;
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

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use net::listener::Placement;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use callee::forward::Upstream;
use callee::pipeline::{ClientConnection, Proxy};
use callee::validate::cache::TokenCache;
use callee::validate::fetch::KeyFetcher;
pub use config::{Config, SidecarConfig};
use snapshot::{SigningKeys, Snapshot, SnapshotCell};

/// Installs the process-wide crypto providers (aws-lc-rs for rustls and jsonwebtoken) so that no
/// stray crate feature can change them or make the first use panic. Idempotent.
pub fn install_crypto_providers() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// A running process: the admin listener, the callee side (`[auth]`), the caller side
/// (`[identity]`), or both.
pub struct Running {
    /// The callee side's public listener. When the config has no `[auth]` nothing listens for it
    /// and this is the unspecified address `0.0.0.0:0`.
    pub public_addr: SocketAddr,
    /// The admin listener's bound address.
    pub admin_addr: SocketAddr,
    callee: Option<CalleeState>,
    caller: Option<caller::CallerSide>,
    caller_config: Option<String>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

/// The callee side's handles.
struct CalleeState {
    startup: config::Startup,
    tls: Option<Arc<net::tls::Acceptor>>,
    cell: Arc<SnapshotCell>,
    key_fetcher: Arc<KeyFetcher>,
    fetcher: JoinHandle<()>,
}

/// Binds the listeners and starts serving a callee-side `config`.
pub async fn start(config: Config) -> io::Result<Running> {
    start_sidecar(SidecarConfig::from(config)).await
}

/// Binds the listeners of whichever sides `config` has and starts serving.
pub async fn start_sidecar(config: SidecarConfig) -> io::Result<Running> {
    install_crypto_providers();
    let metrics = Arc::new(metrics::Metrics::new());
    let (shutdown, rx) = watch::channel(false);
    let mut servers = Vec::new();

    let mut public_addr = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut upstream = String::new();
    let callee = match config.callee {
        None => None,
        Some(c) => {
            let public = TcpListener::bind(c.startup.listen).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("listen.address {}: {e}", c.startup.listen),
                )
            })?;
            public_addr = public.local_addr()?;
            upstream = c.policy.upstream.url.to_string();
            let (state, server) = start_callee(c, public, &metrics, rx.clone())?;
            servers.push(server);
            Some(state)
        }
    };
    let admin = TcpListener::bind(config.admin)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("admin.address {}: {e}", config.admin)))?;
    let admin_addr = admin.local_addr()?;
    let caller_config = config.caller.as_ref().map(|c| format!("{c:?}"));
    let caller = match config.caller {
        None => None,
        Some(c) => Some(
            caller::start(
                c,
                &config.limits,
                &config.extra_ca_certs,
                &metrics,
                rx.clone(),
            )
            .await?,
        ),
    };

    let callee_ready = callee.as_ref().map(|c| c.cell.clone());
    let caller_ready = caller.as_ref().map(|c| c.readiness());
    let not_ready = move || {
        if callee_ready.as_ref().is_some_and(|c| !c.load().ready()) {
            return Some("not ready: no signing keys yet\n");
        }
        if caller_ready.as_ref().is_some_and(|ready| !ready()) {
            return Some("not ready: an egress route has no token yet\n");
        }
        None
    };
    servers.push(tokio::spawn(net::listener::serve_shared(
        admin,
        config.limits.clone(),
        move |req| {
            let resp = admin::handle(&req, &not_ready, &metrics);
            async move { Ok::<_, Infallible>(resp) }
        },
        rx,
    )));
    let endpoint = caller
        .as_ref()
        .and_then(|c| c.endpoint_addr)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let egress: Vec<String> = caller
        .as_ref()
        .map(|c| c.egress_addrs.iter().map(|a| a.to_string()).collect())
        .unwrap_or_default();
    tracing::info!(
        %public_addr,
        %admin_addr,
        tls = callee.as_ref().is_some_and(|c| c.tls.is_some()),
        %upstream,
        identity_endpoint = %endpoint,
        egress = %egress.join(","),
        "tokengate listening"
    );
    Ok(Running {
        public_addr,
        admin_addr,
        callee,
        caller,
        caller_config,
        shutdown,
        servers,
    })
}

/// The callee side on `public`: TLS, key fetcher and pipeline.
fn start_callee(
    config: Config,
    public: TcpListener,
    metrics: &Arc<metrics::Metrics>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<(CalleeState, JoinHandle<()>)> {
    let Config { startup, policy } = config;
    let tls = match &startup.listen_tls {
        None => None,
        Some(files) => Some(Arc::new(
            net::tls::Acceptor::load(files.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        )),
    };
    let workers = match startup.limits.workers {
        0 => net::workers::default_count(),
        n => n,
    };
    let cell: Arc<SnapshotCell> = Arc::new(ArcSwap::from_pointee(Snapshot::new(
        Arc::new(policy),
        SigningKeys::Pending,
    )));
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
        Upstream::new(&startup.upstream_pool, &startup.extra_ca_certs, workers),
    ));
    let server = tokio::spawn(net::listener::serve(
        public,
        startup.limits.clone(),
        tls.clone(),
        Placement::Workers(workers),
        move |conn| {
            let client = Arc::new(ClientConnection::new(conn));
            let proxy = proxy.clone();
            move |req| {
                let (proxy, client) = (proxy.clone(), client.clone());
                async move { Ok::<_, Infallible>(proxy.handle(req, &client).await) }
            }
        },
        shutdown,
    ));
    let state = CalleeState {
        startup,
        tls,
        cell,
        key_fetcher,
        fetcher,
    };
    Ok((state, server))
}

impl Running {
    /// Swaps in a new policy for new requests. Settings fixed at start ([`config::Startup`]:
    /// listener addresses and limits, upstream connection pool, cache size, TLS trust) cannot
    /// change this way: a config that differs there is refused whole, naming them, so nothing
    /// half-applies.
    pub fn reload(&self, config: Config) -> Result<(), String> {
        let Some(callee) = &self.callee else {
            return Err("this process runs no callee side ([auth]); restart to add one".into());
        };
        let Config { startup, policy } = config;
        if startup != callee.startup {
            let changed = callee.startup.changed(&startup);
            let names = if changed.is_empty() {
                "start-only settings".to_string()
            } else {
                changed.join(", ")
            };
            return Err(format!("{names} cannot change without a restart"));
        }
        let current = callee.cell.load();
        let (old, new) = (&current.policy.auth, &policy.auth);
        let same_key_source = new.key_source == old.key_source && new.algorithms == old.algorithms;
        snapshot::store_policy(&callee.cell, Arc::new(policy));
        if !same_key_source {
            callee.key_fetcher.refresh_now();
        }
        Ok(())
    }

    /// Reloads a whole file: the callee side's policy as [`Running::reload`]; the caller side is
    /// read once at start, so a changed `[identity]`, `[identity_endpoint]` or `[[egress]]` is
    /// refused whole.
    pub fn reload_sidecar(&self, config: SidecarConfig) -> Result<(), String> {
        let caller = config.caller.as_ref().map(|c| format!("{c:?}"));
        if caller != self.caller_config {
            return Err(
                "[identity], [identity_endpoint] and [[egress]] cannot change without a restart"
                    .into(),
            );
        }
        match (config.callee, &self.callee) {
            (Some(c), Some(_)) => self.reload(c),
            (None, None) => Ok(()),
            _ => Err("adding or removing the callee side ([auth]) needs a restart".into()),
        }
    }

    /// The caller side, when the config has `[identity]`.
    pub fn caller(&self) -> Option<&caller::CallerSide> {
        self.caller.as_ref()
    }

    /// Re-reads the public listener's certificate, key and client CA files (SIGHUP). Without
    /// TLS there is nothing to do. On error the current certificate stays in use and the error
    /// names the file; connections are never dropped either way.
    pub fn reload_tls(&self) -> Result<bool, String> {
        match self.callee.as_ref().and_then(|c| c.tls.as_ref()) {
            None => Ok(false),
            Some(tls) => tls.reload().map(|()| true),
        }
    }

    /// Whether signing keys are loaded (callee side) and every egress route holds a token
    /// (caller side).
    pub fn ready(&self) -> bool {
        self.callee.as_ref().is_none_or(|c| c.cell.load().ready())
            && self.caller.as_ref().is_none_or(|c| (c.readiness())())
    }

    /// Stops accepting, drains in-flight requests (bounded by `limits.shutdown_grace`), stops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for s in self.servers {
            let _ = s.await;
        }
        if let Some(c) = self.caller {
            c.drained().await;
        }
        if let Some(c) = self.callee {
            c.fetcher.abort();
        }
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
