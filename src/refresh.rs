//! Fetch, keep the last good value, refresh ahead with backoff: the one loop for every value
//! tokengate keeps fresh from the network (signing keys on the callee side today, access tokens on
//! the caller side).
//!
//! A [`Fetch`] says how to get one value; a [`Refresher`] runs it forever in one task:
//!
//! ```text
//! fetch ──ok──► keep it (current), report Refreshed, sleep refresh_in ─┐
//!   ▲    └fail► keep the last good one, report Failed, sleep backoff ──┤ (or until refresh_now)
//!   └──────────────────────────────────────────────────────────────────┘
//! ```
//!
//! # Contract
//! - A failed fetch never replaces the last good value: [`Refresher::current`] is the newest value
//!   that was fetched successfully, or `None` before the first success. Whether an old value is
//!   still usable (a token past its expiry is not) is the value's business, not the refresher's.
//! - After a success the next round runs `refresh_in` later, as returned by the fetch ("refresh
//!   ahead": a token source returns less than the token's remaining lifetime). After a failure
//!   it runs after a backoff that starts at 250 ms and doubles up to [`Fetch::max_backoff`]; a
//!   success resets it.
//! - Rounds never overlap: one task runs them. [`Refresher::refresh_now`] asks for a round at once;
//!   callers asking while one is pending share it (single flight), and
//!   [`Refresher::wait_for`] waits, bounded, until a round that started after the ask finished
//!   (successfully or not). Rate-limiting asks (e.g. the unknown-`kid` cooldown) is the caller's.
//! - [`Fetch::report`] is called after every round, before waiters are woken, so a value
//!   published from there (into the snapshot, say) is visible to every woken waiter.
//! - A [`Refresher`] does nothing until [`Refresher::run`] is polled (or [`Refresher::spawn`]);
//!   an unrun one answers `current() == None` and its waits time out.

use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// First retry delay after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// How to get one fresh value.
pub trait Fetch: Send + Sync + 'static {
    /// What is fetched (a key set, an access token).
    type Value: Send + Sync + 'static;
    /// Why a fetch failed; shown in logs, so it must not hold a credential.
    type Error: std::fmt::Display + Send;

    /// Fetches a new value. `last` is the last good one, for values that carry state across
    /// refreshes (e.g. key identity).
    fn fetch(
        &self,
        last: Option<&Arc<Self::Value>>,
    ) -> impl Future<Output = Result<Fresh<Self::Value>, Self::Error>> + Send;

    /// Cap of the backoff after failures; read after every failure, so it may follow a reload.
    fn max_backoff(&self) -> Duration;

    /// Told the outcome of every round (logging, metrics, publishing the value elsewhere).
    fn report(&self, outcome: Outcome<'_, Self::Value, Self::Error>) {
        let _ = outcome;
    }
}

/// A freshly fetched value and when to fetch the next one.
#[derive(Debug)]
pub struct Fresh<T> {
    /// The value.
    pub value: T,
    /// Delay until the next round, if nobody asks sooner.
    pub refresh_in: Duration,
}

/// The outcome of one round, as told to [`Fetch::report`].
#[derive(Debug)]
pub enum Outcome<'a, T, E> {
    /// A new value is current.
    Refreshed(&'a Arc<T>),
    /// The fetch failed; `keeping` is still current (or nothing is, before the first success).
    Failed {
        /// Why.
        error: &'a E,
        /// The last good value, still current.
        keeping: Option<&'a Arc<T>>,
        /// Delay until the next attempt.
        retry_in: Duration,
        /// Failures in a row, this one included.
        failures: u32,
    },
}

/// A number naming a requested round; see [`Refresher::wait_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Round(u64);

/// Keeps one value fresh. Cheap to clone; clones share the value and the task.
pub struct Refresher<F: Fetch> {
    shared: Arc<Shared<F>>,
}

struct Shared<F: Fetch> {
    source: F,
    current: ArcSwapOption<F::Value>,
    trigger: Notify,
    /// Rounds asked for (the first round counts as asked); the task answers the highest it has
    /// seen when a round starts.
    requested: AtomicU64,
    /// The highest asked-for round that has finished.
    completed: watch::Sender<u64>,
    failures: AtomicU32,
}

impl<F: Fetch> Refresher<F> {
    /// A refresher for `source`, idle until [`Refresher::run`] is polled.
    pub fn new(source: F) -> Refresher<F> {
        Refresher {
            shared: Arc::new(Shared {
                source,
                current: ArcSwapOption::empty(),
                trigger: Notify::new(),
                // Round 1 is the one `run` starts with, asked for by nobody.
                requested: AtomicU64::new(1),
                completed: watch::channel(0).0,
                failures: AtomicU32::new(0),
            }),
        }
    }

    /// Runs [`Refresher::run`] on a new task; abort the handle to stop it.
    pub fn spawn(&self) -> JoinHandle<()> {
        tokio::spawn(self.clone().run())
    }

    /// Fetches now and then forever, as the module contract says. Never returns.
    pub async fn run(self) {
        let s = &*self.shared;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let target = s.requested.load(Ordering::SeqCst);
            let last = s.current.load_full();
            let next = match s.source.fetch(last.as_ref()).await {
                Ok(fresh) => {
                    let value = Arc::new(fresh.value);
                    s.current.store(Some(value.clone()));
                    s.failures.store(0, Ordering::SeqCst);
                    s.source.report(Outcome::Refreshed(&value));
                    backoff = FIRST_BACKOFF;
                    fresh.refresh_in
                }
                Err(error) => {
                    let failures = s.failures.fetch_add(1, Ordering::SeqCst).saturating_add(1);
                    let retry_in = backoff;
                    s.source.report(Outcome::Failed {
                        error: &error,
                        keeping: last.as_ref(),
                        retry_in,
                        failures,
                    });
                    backoff = (backoff * 2).min(s.source.max_backoff());
                    retry_in
                }
            };
            s.completed.send_replace(target);
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                _ = s.trigger.notified() => {}
            }
        }
    }

    /// The last good value, if any fetch has succeeded.
    pub fn current(&self) -> Option<Arc<F::Value>> {
        self.shared.current.load_full()
    }

    /// Failed rounds since the last success (or since the start).
    pub fn failures(&self) -> u32 {
        self.shared.failures.load(Ordering::SeqCst)
    }

    /// The source, for its own settings.
    pub fn source(&self) -> &F {
        &self.shared.source
    }

    /// Asks for a round now (waking the task from its sleep) and returns its name for
    /// [`Refresher::wait_for`]. Asks made before the round starts share it.
    pub fn refresh_now(&self) -> Round {
        let round = self.shared.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.trigger.notify_one();
        Round(round)
    }

    /// The round already asked for and not finished yet, if any: join it instead of asking.
    pub fn pending(&self) -> Option<Round> {
        let requested = self.shared.requested.load(Ordering::SeqCst);
        (*self.shared.completed.borrow() < requested).then_some(Round(requested))
    }

    /// Waits at most `wait` for `round` to finish. Returns whether it did (the fetch may still
    /// have failed: read [`Refresher::current`] or what the report published).
    pub async fn wait_for(&self, round: Round, wait: Duration) -> bool {
        let mut done = self.shared.completed.subscribe();
        tokio::time::timeout(wait, done.wait_for(|c| *c >= round.0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits at most `wait` for the first round (started by [`Refresher::run`]) to finish.
    pub async fn wait_first(&self, wait: Duration) -> bool {
        self.wait_for(Round(1), wait).await
    }

    /// [`Refresher::refresh_now`] then [`Refresher::wait_for`].
    pub async fn refresh_and_wait(&self, wait: Duration) -> bool {
        let round = self.refresh_now();
        self.wait_for(round, wait).await
    }
}

impl<F: Fetch> Clone for Refresher<F> {
    fn clone(&self) -> Self {
        Refresher {
            shared: self.shared.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    /// Answers from a script of results; records reports.
    struct Scripted {
        script: Mutex<Vec<Result<u32, &'static str>>>,
        calls: AtomicU32,
        reports: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(mut script: Vec<Result<u32, &'static str>>) -> Scripted {
            script.reverse();
            Scripted {
                script: Mutex::new(script),
                calls: AtomicU32::new(0),
                reports: Mutex::new(Vec::new()),
            }
        }
    }

    impl Fetch for Scripted {
        type Value = u32;
        type Error = &'static str;

        async fn fetch(&self, _last: Option<&Arc<u32>>) -> Result<Fresh<u32>, &'static str> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = self
                .script
                .lock()
                .unwrap()
                .pop()
                .unwrap_or(Err("script over"));
            next.map(|value| Fresh {
                value,
                refresh_in: Duration::from_secs(3600),
            })
        }

        fn max_backoff(&self) -> Duration {
            Duration::from_millis(600)
        }

        fn report(&self, outcome: Outcome<'_, u32, &'static str>) {
            let line = match outcome {
                Outcome::Refreshed(v) => format!("ok {v}"),
                Outcome::Failed {
                    error,
                    keeping,
                    retry_in,
                    failures,
                } => format!("failed {error} keeping {keeping:?} retry {retry_in:?} #{failures}"),
            };
            self.reports.lock().unwrap().push(line);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_the_last_good_value_and_backs_off_doubling_to_the_cap() {
        let r = Refresher::new(Scripted::new(vec![
            Ok(1),
            Err("a"),
            Err("b"),
            Err("c"),
            Err("d"),
            Ok(2),
        ]));
        let task = r.spawn();
        assert!(r.wait_first(Duration::from_secs(1)).await);
        assert_eq!(r.current().as_deref(), Some(&1));
        // Ask once: the failures then retry on their own, 250 ms, 500 ms, 600 ms (capped).
        assert!(r.refresh_and_wait(Duration::from_secs(1)).await);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(r.current().as_deref(), Some(&2));
        assert_eq!(r.failures(), 0);
        let reports = r.source().reports.lock().unwrap().clone();
        assert_eq!(
            reports,
            [
                "ok 1",
                "failed a keeping Some(1) retry 250ms #1",
                "failed b keeping Some(1) retry 500ms #2",
                "failed c keeping Some(1) retry 600ms #3",
                "failed d keeping Some(1) retry 600ms #4",
                "ok 2",
            ]
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_asks_share_one_round() {
        let r = Refresher::new(Scripted::new(vec![Ok(1), Ok(2), Ok(3)]));
        let task = r.spawn();
        assert!(r.wait_first(Duration::from_secs(1)).await);
        let first = r.refresh_now();
        let joined = r.pending().expect("a round is pending");
        assert_eq!(joined, first);
        let (a, b) = tokio::join!(
            r.wait_for(first, Duration::from_secs(1)),
            r.wait_for(joined, Duration::from_secs(1))
        );
        assert!(a && b);
        assert_eq!(r.source().calls.load(Ordering::SeqCst), 2);
        assert_eq!(r.current().as_deref(), Some(&2));
        assert_eq!(r.pending(), None);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unrun_refresher_has_nothing_and_its_waits_time_out() {
        let r = Refresher::new(Scripted::new(vec![Ok(1)]));
        assert!(!r.refresh_and_wait(Duration::from_millis(100)).await);
        assert_eq!(r.current(), None);
        assert_eq!(r.source().calls.load(Ordering::SeqCst), 0);
    }
}
