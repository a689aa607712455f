//! Discovery and JWKS: fetched at start, refreshed in the background (by [`crate::refresh`],
//! over [`crate::net::client`]), swapped into the snapshot atomically.
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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Uri;

use crate::config::{Config, KeySource, Policy};
use crate::metrics::Metrics;
use crate::net::client::HttpClient;
use crate::refresh::{Fetch, Fresh, Outcome, Refresher};
use crate::snapshot::{self, SnapshotCell};
use crate::validate::KeySet;

/// Largest discovery or JWKS document we read.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// Connect timeout towards the IdP.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The signing-key fetcher: a [`Refresher`] of [`KeySet`]s publishing into the snapshot, plus the
/// unknown-`kid` cooldown the request path goes through.
pub struct KeyFetcher {
    refresher: Refresher<JwksSource>,
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
}

impl KeyFetcher {
    /// A fetcher following `cell`'s current config, idle until [`KeyFetcher::run`] is polled.
    /// `extra_ca` (`tls.ca_file`) is fixed at start, like the listeners.
    pub fn new(
        cell: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
        extra_ca: &[rustls::pki_types::CertificateDer<'static>],
    ) -> KeyFetcher {
        let source = JwksSource {
            cell,
            metrics,
            client: HttpClient::new(CONNECT_TIMEOUT, extra_ca),
        };
        KeyFetcher {
            refresher: Refresher::new(source),
            last_unknown_kid_fetch: Mutex::new(None),
        }
    }

    /// Fetches keys forever (until the task is dropped), following the snapshot's current policy.
    pub async fn run(self: Arc<Self>) {
        self.refresher.clone().run().await
    }

    /// Asks for a fetch now (config reload), regardless of the unknown-`kid` cooldown.
    pub fn refresh_now(&self) {
        self.refresher.refresh_now();
    }

    /// Called when a token names a `kid` we do not have. Starts a fetch if the cooldown allows,
    /// or joins one already running, and waits at most `wait` for it. Returns whether a fetch
    /// finished (the caller then reloads the snapshot and tries once more).
    pub async fn unknown_kid(&self, cooldown: Duration, wait: Duration) -> bool {
        let round = {
            let mut last = self
                .last_unknown_kid_fetch
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed() >= cooldown) {
                *last = Some(Instant::now());
                self.refresher.refresh_now()
            } else if let Some(pending) = self.refresher.pending() {
                // A fetch is already on its way: share it.
                pending
            } else {
                return false;
            }
        };
        self.refresher.wait_for(round, wait).await
    }
}

/// Discovery + JWKS as a [`Fetch`]: reads the snapshot's current policy each round, publishes
/// each new key set into the snapshot.
struct JwksSource {
    cell: Arc<SnapshotCell>,
    metrics: Arc<Metrics>,
    client: HttpClient,
}

impl Fetch for JwksSource {
    type Value = KeySet;
    type Error = String;

    async fn fetch(&self, last: Option<&Arc<KeySet>>) -> Result<Fresh<KeySet>, String> {
        let snap = self.cell.load_full();
        let (keys, skipped) = fetch(&self.client, &snap.policy, last.map(|k| &**k)).await?;
        if skipped > 0 {
            tracing::warn!(skipped, "JWKS: skipped unusable keys");
        }
        Ok(Fresh {
            value: keys,
            refresh_in: snap.policy.key_refresh.refresh_interval,
        })
    }

    fn max_backoff(&self) -> Duration {
        self.cell.load().policy.key_refresh.max_backoff
    }

    fn report(&self, outcome: Outcome<'_, KeySet, String>) {
        match outcome {
            Outcome::Refreshed(keys) => {
                tracing::info!(keys = keys.len(), kids = ?keys.kids(), "JWKS: keys loaded");
                self.metrics.jwks_refresh(true, Some(keys.len()));
                snapshot::store_keys(&self.cell, keys.clone());
            }
            Outcome::Failed {
                error,
                keeping,
                retry_in,
                ..
            } => {
                let keeping = keeping.map_or(0, |k| k.len());
                tracing::warn!(%error, keeping_keys = keeping, ?retry_in, "JWKS: refresh failed");
                self.metrics.jwks_refresh(false, None);
            }
        }
    }
}

/// One fetch the way the proxy does it (discovery if configured, then the JWKS; same client,
/// limits and key pinning), for `tokengate explain`.
pub async fn fetch_once(config: &Config) -> Result<(KeySet, usize), String> {
    let client = HttpClient::new(CONNECT_TIMEOUT, &config.startup.extra_ca_certs);
    fetch(&client, &config.policy, None).await
}

/// One round: discovery (if configured), then the JWKS.
async fn fetch(
    client: &HttpClient,
    policy: &Policy,
    previous: Option<&KeySet>,
) -> Result<(KeySet, usize), String> {
    let timeout = policy.key_refresh.fetch_timeout;
    let get = |uri: Uri| async move {
        client
            .get(&uri, timeout, MAX_DOCUMENT)
            .await
            .map_err(|e| e.to_string())
    };
    let jwks_uri = match &policy.auth.key_source {
        KeySource::Jwks(uri) => uri.clone(),
        KeySource::Discovery(uri) => {
            #[derive(serde::Deserialize)]
            struct Discovery {
                jwks_uri: String,
            }
            let body = get(uri.clone()).await?;
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
    let body = get(jwks_uri.clone()).await?;
    KeySet::from_jwks(&body, &policy.auth.algorithms, previous)
        .map_err(|e| format!("JWKS {jwks_uri}: {e}"))
}
