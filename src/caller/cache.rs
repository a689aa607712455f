//! Tokens cached per resource (and the one configured identity), refreshed ahead of expiry,
//! acquired one at a time per key.
//!
//! # Contract
//! - Single flight: each key has exactly one task that acquires (the slot's driver); requests
//!   never acquire themselves, they read the slot or wait for it. A hundred concurrent first
//!   requests for a resource cost the authority one request.
//! - Refresh ahead: after a success the driver sleeps until [`AccessToken::refresh_at`] (5
//!   minutes before expiry, or half-life for tokens of 2 h or more), so requests normally never
//!   wait.
//! - Keep last good: a failed refresh keeps the cached token, which is served until it expires;
//!   the driver retries with exponential backoff (first 250 ms, capped at [`MAX_BACKOFF`]).
//! - A request without a valid cached token waits at most its bound while the failures are
//!   transient, and is answered at once with the failure once a non-transient one is seen.
//! - At most [`MAX_RESOURCES`] keys: a local app asking for endless distinct resources cannot make
//!   us spawn endless tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::metrics::CallerMetrics;
use super::source::{AcquireError, Failure, TokenSource};
use super::token::{AccessToken, Resource};
use crate::pipeline::unix_now;

/// Most distinct resources held.
pub const MAX_RESOURCES: usize = 256;
/// First retry delay after a failed acquisition.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest delay between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why no token could be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The source failed with this (the last failure seen).
    Failed(Failure),
    /// The bound passed while the first acquisition was still running.
    Pending,
    /// [`MAX_RESOURCES`] distinct resources are already held.
    TooManyResources,
}

impl Unavailable {
    /// The label in logs and error bodies.
    pub fn label(self) -> &'static str {
        match self {
            Unavailable::Failed(f) => f.label(),
            Unavailable::Pending => "acquisition_pending",
            Unavailable::TooManyResources => "too_many_resources",
        }
    }
}

/// What a slot holds: the last good token and the last round's outcome.
#[derive(Clone, Default)]
struct SlotState {
    token: Option<AccessToken>,
    last_failure: Option<Failure>,
    rounds: u64,
}

/// The cache.
pub struct TokenCache {
    source: Arc<TokenSource>,
    metrics: Arc<CallerMetrics>,
    refresh_before: u64,
    slots: Mutex<HashMap<Resource, Slot>>,
}

struct Slot {
    state: watch::Receiver<SlotState>,
    driver: JoinHandle<()>,
}

impl TokenCache {
    /// An empty cache over `source`.
    pub fn new(source: Arc<TokenSource>, metrics: Arc<CallerMetrics>) -> TokenCache {
        let refresh_before = source.identity().refresh_before.as_secs();
        TokenCache {
            source,
            metrics,
            refresh_before,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The token source.
    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// A valid token for `resource`, waiting at most `wait` for one.
    pub async fn token(
        &self,
        resource: &Resource,
        wait: Duration,
    ) -> Result<AccessToken, Unavailable> {
        let mut rx = self.slot(resource)?;
        let seen = {
            let s = rx.borrow_and_update();
            if let Some(t) = s.token.as_ref().filter(|t| t.valid_at(unix_now())) {
                return Ok(t.clone());
            }
            if let Some(f) = s.last_failure.filter(|f| !f.transient()) {
                return Err(Unavailable::Failed(f));
            }
            s.rounds
        };
        let got = match tokio::time::timeout(
            wait,
            rx.wait_for(|s| {
                s.token.as_ref().is_some_and(|t| t.valid_at(unix_now()))
                    || (s.rounds > seen && s.last_failure.is_some_and(|f| !f.transient()))
            }),
        )
        .await
        {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        // Timed out (or the driver is gone): answer with what went wrong last.
        let state = got.unwrap_or_else(|| rx.borrow().clone());
        match state.token.filter(|t| t.valid_at(unix_now())) {
            Some(t) => Ok(t),
            None => Err(state
                .last_failure
                .map_or(Unavailable::Pending, Unavailable::Failed)),
        }
    }

    /// Starts acquiring `resource` now (at start, for egress routes) without waiting.
    pub fn prefetch(&self, resource: &Resource) {
        let _ = self.slot(resource);
    }

    /// Every held token's resource and expiry, for the seconds-left gauge.
    pub fn expiries(&self) -> Vec<(Resource, Option<u64>)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .map(|(r, s)| {
                (
                    r.clone(),
                    s.state.borrow().token.as_ref().map(|t| t.expires_on),
                )
            })
            .collect()
    }

    /// The slot for `resource`, created (with its driver) on first use.
    fn slot(&self, resource: &Resource) -> Result<watch::Receiver<SlotState>, Unavailable> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get(resource) {
            return Ok(s.state.clone());
        }
        if slots.len() >= MAX_RESOURCES {
            return Err(Unavailable::TooManyResources);
        }
        let (tx, rx) = watch::channel(SlotState::default());
        let driver = tokio::spawn(drive(
            self.source.clone(),
            self.metrics.clone(),
            resource.clone(),
            self.refresh_before,
            tx,
        ));
        slots.insert(
            resource.clone(),
            Slot {
                state: rx.clone(),
                driver,
            },
        );
        Ok(rx)
    }
}

impl Drop for TokenCache {
    fn drop(&mut self) {
        let slots = self.slots.get_mut().unwrap_or_else(|p| p.into_inner());
        for s in slots.values() {
            s.driver.abort();
        }
    }
}

/// The one task that acquires tokens for `resource`, forever.
async fn drive(
    source: Arc<TokenSource>,
    metrics: Arc<CallerMetrics>,
    resource: Resource,
    refresh_before: u64,
    state: watch::Sender<SlotState>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let outcome = source.acquire(&resource).await;
        metrics.acquisition(outcome.as_ref().err().map(|e| e.failure));
        let sleep = match outcome {
            Ok(token) => {
                let now = unix_now();
                let next = token.refresh_at(refresh_before).saturating_sub(now).max(1);
                tracing::info!(
                    source = source.name(),
                    %resource,
                    expires_in = token.seconds_left(now),
                    refresh_in = next,
                    "token acquired"
                );
                state.send_modify(|s| {
                    s.token = Some(token);
                    s.last_failure = None;
                    s.rounds += 1;
                });
                backoff = FIRST_BACKOFF;
                Duration::from_secs(next)
            }
            Err(error) => {
                log_failure(&source, &resource, &error, &state.borrow(), backoff);
                state.send_modify(|s| {
                    s.last_failure = Some(error.failure);
                    s.rounds += 1;
                });
                let delay = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                delay
            }
        };
        tokio::time::sleep(sleep).await;
    }
}

fn log_failure(
    source: &TokenSource,
    resource: &Resource,
    error: &AcquireError,
    state: &SlotState,
    retry_in: Duration,
) {
    let now = unix_now();
    let cached_seconds_left = state.token.as_ref().map_or(0, |t| t.seconds_left(now));
    tracing::warn!(
        source = source.name(),
        %resource,
        reason = error.failure.label(),
        detail = %error.detail,
        cached_seconds_left,
        retry_in = ?retry_in,
        "token acquisition failed"
    );
}
