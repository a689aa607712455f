//! Prometheus metrics, with every series resolved at start so the request path only increments.
//!
//! Series:
//! - `tokengate_requests_total{outcome}`: `allowed`, `anonymous`, or a rejection label;
//! - `tokengate_upstream_responses_total{class}` (`1xx`…`5xx`) and
//!   `tokengate_upstream_duration_seconds` (time to the upstream's response head);
//! - `tokengate_jwks_refresh_total{result}` (`ok`/`failed`) and `tokengate_jwks_keys`;
//! - `tokengate_token_cache_total{result}` (`hit`/`miss`/`eviction`);
//! - `tokengate_websocket_upgrades_total`, `tokengate_websocket_active` and
//!   `tokengate_websocket_closed_total{reason}` (`closed`/`idle_timeout`/`error`);
//! - `tokengate_report_only_denials_total{reason}`: requests report mode forwarded that enforce
//!   mode would have refused, by rejection label (only reportable reasons have a series).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::reject::Rejection;

/// All metrics of one proxy instance.
pub struct Metrics {
    registry: Registry,
    allowed: IntCounter,
    anonymous: IntCounter,
    denied: [IntCounter; Rejection::COUNT],
    /// Indexed like `denied`; `None` for reasons report mode never forwards.
    report_only: [Option<IntCounter>; Rejection::COUNT],
    upstream_class: [IntCounter; 5],
    upstream_latency: Histogram,
    jwks_ok: IntCounter,
    jwks_failed: IntCounter,
    jwks_keys: IntGauge,
    cache_hit: IntCounter,
    cache_miss: IntCounter,
    cache_eviction: IntCounter,
    ws_upgrades: IntCounter,
    ws_active: IntGauge,
    ws_closed: [IntCounter; 3],
}

/// Why a spliced (upgraded) connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceEnd {
    /// One side closed.
    Closed,
    /// No bytes moved for `limits.upgrade_idle_timeout`.
    IdleTimeout,
    /// An I/O error, or an upgrade that never completed.
    Error,
}

impl Metrics {
    /// Registers every series.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tokengate_requests_total",
                "Requests by outcome: allowed, anonymous, or the denial reason.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let upstream = IntCounterVec::new(
            Opts::new(
                "tokengate_upstream_responses_total",
                "Upstream responses by status class.",
            ),
            &["class"],
        )
        .expect("valid metric");
        let upstream_latency = Histogram::with_opts(
            HistogramOpts::new(
                "tokengate_upstream_duration_seconds",
                "Time from forwarding a request to the upstream's response head.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
        )
        .expect("valid metric");
        let jwks = IntCounterVec::new(
            Opts::new(
                "tokengate_jwks_refresh_total",
                "Discovery/JWKS refreshes by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let jwks_keys = IntGauge::new(
            "tokengate_jwks_keys",
            "Usable signing keys currently loaded.",
        )
        .expect("valid metric");
        let cache = IntCounterVec::new(
            Opts::new(
                "tokengate_token_cache_total",
                "Verified-token cache lookups and evictions.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let ws_upgrades = IntCounter::new(
            "tokengate_websocket_upgrades_total",
            "WebSocket upgrades forwarded and accepted by the upstream.",
        )
        .expect("valid metric");
        let ws_active = IntGauge::new(
            "tokengate_websocket_active",
            "WebSocket connections currently spliced.",
        )
        .expect("valid metric");
        let ws_closed = IntCounterVec::new(
            Opts::new(
                "tokengate_websocket_closed_total",
                "Spliced WebSocket connections ended, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let report_only = IntCounterVec::new(
            Opts::new(
                "tokengate_report_only_denials_total",
                "Requests forwarded in report mode that enforce mode would refuse, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for c in [
            Box::new(ws_upgrades.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ws_active.clone()),
            Box::new(ws_closed.clone()),
            Box::new(requests.clone()),
            Box::new(report_only.clone()),
            Box::new(upstream.clone()),
            Box::new(upstream_latency.clone()),
            Box::new(jwks.clone()),
            Box::new(jwks_keys.clone()),
            Box::new(cache.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            allowed: requests.with_label_values(&["allowed"]),
            anonymous: requests.with_label_values(&["anonymous"]),
            denied: Rejection::ALL.map(|r| requests.with_label_values(&[r.label()])),
            report_only: Rejection::ALL.map(|r| {
                r.reportable()
                    .then(|| report_only.with_label_values(&[r.label()]))
            }),
            upstream_class: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|c| upstream.with_label_values(&[c])),
            upstream_latency,
            jwks_ok: jwks.with_label_values(&["ok"]),
            jwks_failed: jwks.with_label_values(&["failed"]),
            jwks_keys,
            cache_hit: cache.with_label_values(&["hit"]),
            cache_miss: cache.with_label_values(&["miss"]),
            cache_eviction: cache.with_label_values(&["eviction"]),
            ws_upgrades,
            ws_active,
            ws_closed: ["closed", "idle_timeout", "error"]
                .map(|r| ws_closed.with_label_values(&[r])),
            registry,
        }
    }

    /// A WebSocket upgrade was accepted by the upstream and is now spliced.
    pub fn websocket_opened(&self) {
        self.ws_upgrades.inc();
        self.ws_active.inc();
    }

    /// A spliced WebSocket connection ended.
    pub fn websocket_closed(&self, end: SpliceEnd) {
        self.ws_active.dec();
        let i = match end {
            SpliceEnd::Closed => 0,
            SpliceEnd::IdleTimeout => 1,
            SpliceEnd::Error => 2,
        };
        self.ws_closed[i].inc();
    }

    /// A request that was forwarded with an identity.
    pub fn allowed(&self) {
        self.allowed.inc();
    }

    /// A request forwarded anonymously (excluded path).
    pub fn anonymous(&self) {
        self.anonymous.inc();
    }

    /// A refused request.
    pub fn denied(&self, r: Rejection) {
        self.denied[r.index()].inc();
    }

    /// A request report mode forwarded although enforce mode would refuse it for `r`.
    pub fn report_only_denial(&self, r: Rejection) {
        if let Some(c) = &self.report_only[r.index()] {
            c.inc();
        }
    }

    /// An upstream response head arrived after `seconds`.
    pub fn upstream(&self, status: http::StatusCode, seconds: f64) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.upstream_class[class].inc();
        self.upstream_latency.observe(seconds);
    }

    /// A key refresh finished.
    pub fn jwks_refresh(&self, ok: bool, keys: Option<usize>) {
        if ok {
            self.jwks_ok.inc()
        } else {
            self.jwks_failed.inc()
        }
        if let Some(n) = keys {
            self.jwks_keys.set(n as i64);
        }
    }

    /// A cache lookup.
    pub fn cache(&self, hit: bool) {
        if hit {
            self.cache_hit.inc()
        } else {
            self.cache_miss.inc()
        }
    }

    /// Entries evicted from the cache.
    pub fn cache_evicted(&self, n: usize) {
        if n > 0 {
            self.cache_eviction.inc_by(n as u64);
        }
    }

    /// Adds a collector owned elsewhere (the caller side's series) to the admin registry.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(error) = self.registry.register(collector) {
            tracing::error!(%error, "metric not registered");
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        // Encoding into a Vec only fails on I/O errors, which a Vec has none of.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
