//! Discovery and JWKS: fetched at start, refreshed in the background, swapped atomically.
//!
//! # Contract
//! - The request path never waits on the network, except for a bounded wait
//!   (`keys.unknown_kid_wait`) after an unknown `kid`.
//! - Unknown `kid`s trigger at most one fetch per `keys.unknown_kid_cooldown`, shared by every
//!   request that arrives while it runs; a flood of random `kid`s costs the IdP one request per
//!   cooldown.
//! - A failed fetch (down, slow, non-200, oversized, not JSON, no usable key) never replaces the
//!   last good keys; it is retried with exponential backoff capped at `keys.max_backoff`. Until the
//!   first success there are no keys: `/readyz` says 503 and protected requests fail closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use tokio::sync::{watch, Notify};

use crate::config::{Config, KeySource};
use crate::forward::{https_connector, HttpsConnector};
use crate::metrics::Metrics;
use crate::snapshot::{self, Keys, SnapshotCell};
use crate::validate::KeySet;

/// Largest discovery or JWKS document we read.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// First retry delay after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The request path's handle on the background fetcher.
pub struct KeyControl {
    trigger: Notify,
    /// Fetch rounds asked for (by unknown `kid`s); the fetcher answers the highest it has seen.
    requested: AtomicU64,
    completed: watch::Sender<u64>,
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
}

impl KeyControl {
    /// A control with nothing requested.
    pub fn new() -> KeyControl {
        KeyControl {
            trigger: Notify::new(),
            requested: AtomicU64::new(0),
            completed: watch::channel(0).0,
            last_unknown_kid_fetch: Mutex::new(None),
        }
    }

    /// Asks for a fetch now (config reload), regardless of the unknown-`kid` cooldown.
    pub fn refresh_now(&self) {
        self.requested.fetch_add(1, Ordering::SeqCst);
        self.trigger.notify_one();
    }

    /// Called when a token names a `kid` we do not have. Starts a fetch if the cooldown allows,
    /// or joins one already running, and waits at most `wait` for it. Returns whether a fetch
    /// finished (the caller then reloads the snapshot and tries once more).
    pub async fn unknown_kid(&self, cooldown: Duration, wait: Duration) -> bool {
        let mut done = self.completed.subscribe();
        let target = {
            let mut last = self
                .last_unknown_kid_fetch
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let requested = self.requested.load(Ordering::SeqCst);
            if last.is_none_or(|t| t.elapsed() >= cooldown) {
                *last = Some(Instant::now());
                let target = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
                self.trigger.notify_one();
                target
            } else if *done.borrow() < requested {
                // A fetch is already on its way: share it.
                requested
            } else {
                return false;
            }
        };
        let finished = tokio::time::timeout(wait, done.wait_for(|c| *c >= target))
            .await
            .is_ok_and(|r| r.is_ok());
        finished
    }
}

impl Default for KeyControl {
    fn default() -> Self {
        KeyControl::new()
    }
}

/// Fetches keys forever (until the task is dropped), following the snapshot's current config.
pub async fn run_fetcher(cell: Arc<SnapshotCell>, control: Arc<KeyControl>, metrics: Arc<Metrics>) {
    // TLS trust is fixed at start (tls.ca_file changes need a restart, like the listeners).
    let extra_ca = cell.load().config.extra_ca_certs.clone();
    let client: Client<HttpsConnector, Empty<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https_connector(Duration::from_secs(5), &extra_ca));
    let mut backoff = FIRST_BACKOFF;
    loop {
        let target = control.requested.load(Ordering::SeqCst);
        let snap = cell.load_full();
        let previous = match &snap.keys {
            Keys::Loaded(k) => Some(k.clone()),
            Keys::Pending => None,
        };
        let next = match fetch(&client, &snap.config, previous.as_deref()).await {
            Ok((keys, skipped)) => {
                if skipped > 0 {
                    tracing::warn!(skipped, "JWKS: skipped unusable keys");
                }
                tracing::info!(keys = keys.len(), kids = ?keys.kids(), "JWKS: keys loaded");
                metrics.jwks_refresh(true, Some(keys.len()));
                snapshot::store_keys(&cell, Arc::new(keys));
                backoff = FIRST_BACKOFF;
                snap.config.keys.refresh_interval
            }
            Err(error) => {
                let keeping = previous.as_ref().map_or(0, |k| k.len());
                tracing::warn!(%error, keeping_keys = keeping, retry_in = ?backoff, "JWKS: refresh failed");
                metrics.jwks_refresh(false, None);
                let delay = backoff;
                backoff = (backoff * 2).min(snap.config.keys.max_backoff);
                delay
            }
        };
        control.completed.send_replace(target);
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = control.trigger.notified() => {}
        }
    }
}

/// One round: discovery (if configured), then the JWKS.
async fn fetch(
    client: &Client<HttpsConnector, Empty<Bytes>>,
    config: &Config,
    previous: Option<&KeySet>,
) -> Result<(KeySet, usize), String> {
    let timeout = config.keys.fetch_timeout;
    let jwks_uri = match &config.auth.keys {
        KeySource::Jwks(uri) => uri.clone(),
        KeySource::Discovery(uri) => {
            #[derive(serde::Deserialize)]
            struct Discovery {
                jwks_uri: String,
            }
            let body = get(client, uri, timeout).await?;
            let doc: Discovery = serde_json::from_slice(&body)
                .map_err(|e| format!("discovery document {uri}: {e}"))?;
            let jwks: Uri = doc
                .jwks_uri
                .parse()
                .map_err(|e| format!("discovery document {uri}: jwks_uri: {e}"))?;
            if !matches!(jwks.scheme_str(), Some("http" | "https")) {
                return Err(format!("discovery document {uri}: jwks_uri is not http(s)"));
            }
            jwks
        }
    };
    let body = get(client, &jwks_uri, timeout).await?;
    KeySet::from_jwks(&body, &config.auth.algorithms, previous)
        .map_err(|e| format!("JWKS {jwks_uri}: {e}"))
}

async fn get(
    client: &Client<HttpsConnector, Empty<Bytes>>,
    uri: &Uri,
    timeout: Duration,
) -> Result<Bytes, String> {
    let req = Request::get(uri.clone())
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("tokengate/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let work = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("GET {uri}: {e}"))?;
        if resp.status() != StatusCode::OK {
            return Err(format!("GET {uri}: status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|e| format!("GET {uri}: body: {e}"))?;
        Ok(body.to_bytes())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("GET {uri}: no answer within {timeout:?}"))?
}
