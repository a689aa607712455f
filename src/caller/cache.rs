//! Tokens cached per resource (and the one configured identity), refreshed ahead of expiry,
//! acquired one at a time per key. Each key is a [`Refresher`] (`crate::refresh`, shared with the
//! callee side's signing keys) over a `TokenFetch`.
//!
//! # Contract
//! - Single flight: each key has exactly one task that acquires (its refresher's); requests never
//!   acquire themselves, they read the slot or wait for it. A hundred concurrent first requests
//!   for a resource cost the authority one request.
//! - Refresh ahead: after a success the next round is at [`AccessToken::refresh_at`] (5 minutes
//!   before expiry, or half-life for tokens of 2 h or more), so requests normally never wait.
//! - Keep last good: a failed refresh keeps the cached token, which is served until it expires;
//!   the refresher retries with exponential backoff (250 ms doubling to [`MAX_BACKOFF`]). Waiting
//!   requests never trigger extra rounds, so a down authority is not hammered by app retries.
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
use crate::refresh::{Fetch, Fresh, Outcome, Refresher};

/// Most distinct resources held.
pub const MAX_RESOURCES: usize = 256;
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

/// What a slot shows requests: the last good token and the last round's outcome. Published by
/// [`TokenFetch::report`] after every round, before the refresher wakes its own waiters.
#[derive(Clone, Default)]
struct SlotState {
    token: Option<Arc<AccessToken>>,
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
    task: JoinHandle<()>,
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
                return Ok(AccessToken::clone(t));
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
        // Timed out (or the refresher is gone): answer with what went wrong last.
        let state = got.unwrap_or_else(|| rx.borrow().clone());
        match state.token.filter(|t| t.valid_at(unix_now())) {
            Some(t) => Ok(AccessToken::clone(&t)),
            None => Err(state
                .last_failure
                .map_or(Unavailable::Pending, Unavailable::Failed)),
        }
    }

    /// Starts acquiring `resource` now (at start, for egress routes) without waiting.
    pub fn prefetch(&self, resource: &Resource) {
        let _ = self.slot(resource);
    }

    /// Every held token's resource and expiry, for the seconds-left gauge and readiness.
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

    /// The slot for `resource`, created (with its refresher task) on first use.
    fn slot(&self, resource: &Resource) -> Result<watch::Receiver<SlotState>, Unavailable> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get(resource) {
            return Ok(s.state.clone());
        }
        if slots.len() >= MAX_RESOURCES {
            return Err(Unavailable::TooManyResources);
        }
        let (tx, rx) = watch::channel(SlotState::default());
        let refresher = Refresher::new(TokenFetch {
            source: self.source.clone(),
            metrics: self.metrics.clone(),
            resource: resource.clone(),
            refresh_before: self.refresh_before,
            state: tx,
        });
        slots.insert(
            resource.clone(),
            Slot {
                state: rx.clone(),
                task: refresher.spawn(),
            },
        );
        Ok(rx)
    }
}

impl Drop for TokenCache {
    fn drop(&mut self) {
        let slots = self.slots.get_mut().unwrap_or_else(|p| p.into_inner());
        for s in slots.values() {
            s.task.abort();
        }
    }
}

/// How to get one resource's token: one acquisition from the source.
struct TokenFetch {
    source: Arc<TokenSource>,
    metrics: Arc<CallerMetrics>,
    resource: Resource,
    refresh_before: u64,
    state: watch::Sender<SlotState>,
}

impl Fetch for TokenFetch {
    type Value = AccessToken;
    type Error = AcquireError;

    async fn fetch(
        &self,
        _last: Option<&Arc<AccessToken>>,
    ) -> Result<Fresh<AccessToken>, AcquireError> {
        let outcome = self.source.acquire(&self.resource).await;
        self.metrics
            .acquisition(outcome.as_ref().err().map(|e| e.failure));
        let token = outcome?;
        let next = token
            .refresh_at(self.refresh_before)
            .saturating_sub(unix_now())
            .max(1);
        Ok(Fresh {
            value: token,
            refresh_in: Duration::from_secs(next),
        })
    }

    fn max_backoff(&self) -> Duration {
        MAX_BACKOFF
    }

    fn report(&self, outcome: Outcome<'_, AccessToken, AcquireError>) {
        let now = unix_now();
        match outcome {
            Outcome::Refreshed(token) => {
                tracing::info!(
                    source = self.source.name(),
                    resource = %self.resource,
                    expires_in = token.seconds_left(now),
                    refresh_in = token.refresh_at(self.refresh_before).saturating_sub(now),
                    "token acquired"
                );
                self.state.send_modify(|s| {
                    s.token = Some(token.clone());
                    s.last_failure = None;
                    s.rounds += 1;
                });
            }
            Outcome::Failed {
                error,
                keeping,
                retry_in,
                failures,
            } => {
                tracing::warn!(
                    source = self.source.name(),
                    resource = %self.resource,
                    reason = error.failure.label(),
                    detail = %error.detail,
                    cached_seconds_left = keeping.map_or(0, |t| t.seconds_left(now)),
                    failures,
                    retry_in = ?retry_in,
                    "token acquisition failed"
                );
                self.state.send_modify(|s| {
                    s.last_failure = Some(error.failure);
                    s.rounds += 1;
                });
            }
        }
    }
}
