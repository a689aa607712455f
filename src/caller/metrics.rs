//! The caller side's series, registered on the shared admin registry:
//! - `tokengate_token_acquisitions_total{source,outcome}`: `outcome` is `ok` or a failure label;
//! - `tokengate_token_seconds_left{resource}`: seconds until the cached token for `resource`
//!   expires, computed when scraped (0 when there is none yet or it has expired).
//!
//! Resource labels are bounded by the cache's key limit; no token or other secret is a label.

use std::sync::{Arc, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts};

use super::cache::TokenCache;
use super::source::Failure;
use crate::metrics::Metrics;
use crate::pipeline::unix_now;

/// Pre-resolved acquisition counters.
pub struct CallerMetrics {
    ok: IntCounter,
    failed: Vec<(Failure, IntCounter)>,
}

impl CallerMetrics {
    /// Registers the acquisition counter for `source` on `metrics`.
    pub fn new(metrics: &Metrics, source: &'static str) -> CallerMetrics {
        let acquisitions = IntCounterVec::new(
            Opts::new(
                "tokengate_token_acquisitions_total",
                "Caller side: token acquisitions by source and outcome (ok or the failure).",
            ),
            &["source", "outcome"],
        )
        .expect("valid metric");
        metrics.register(Box::new(acquisitions.clone()));
        CallerMetrics {
            ok: acquisitions.with_label_values(&[source, "ok"]),
            failed: Failure::ALL
                .iter()
                .map(|f| (*f, acquisitions.with_label_values(&[source, f.label()])))
                .collect(),
        }
    }

    /// One acquisition finished: `None` is a success.
    pub fn acquisition(&self, failure: Option<Failure>) {
        match failure {
            None => self.ok.inc(),
            Some(f) => {
                if let Some((_, c)) = self.failed.iter().find(|(x, _)| *x == f) {
                    c.inc();
                }
            }
        }
    }
}

/// `tokengate_token_seconds_left`, read from the cache at scrape time.
pub struct SecondsLeft {
    cache: Weak<TokenCache>,
    gauge: IntGaugeVec,
}

impl SecondsLeft {
    /// Registers the gauge for `cache` on `metrics`.
    pub fn register(metrics: &Metrics, cache: &Arc<TokenCache>) {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "tokengate_token_seconds_left",
                "Caller side: seconds until the cached token for a resource expires.",
            ),
            &["resource"],
        )
        .expect("valid metric");
        metrics.register(Box::new(SecondsLeft {
            cache: Arc::downgrade(cache),
            gauge,
        }));
    }
}

impl Collector for SecondsLeft {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.gauge.reset();
        if let Some(cache) = self.cache.upgrade() {
            let now = unix_now();
            for (resource, expires_on) in cache.expiries() {
                let left = expires_on.map_or(0, |e| e.saturating_sub(now));
                self.gauge
                    .with_label_values(&[resource.as_str()])
                    .set(i64::try_from(left).unwrap_or(i64::MAX));
            }
        }
        self.gauge.collect()
    }
}
