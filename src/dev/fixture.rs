//! What tests, benches, examples and fuzz seeds share to build a proxy without the network.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::callee::forward::Upstream;
use crate::callee::pipeline::Proxy;
use crate::callee::validate::cache::TokenCache;
use crate::callee::validate::fetch::KeyFetcher;
use crate::config::UpstreamPool;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// A [`Proxy`] over `snapshot` with a cache of `cache_entries` entries (32 MiB at most) and no
/// key-fetching task: an unknown `kid` waits `keys.unknown_kid_wait` in vain and is refused.
pub fn offline_proxy(
    snapshot: Arc<Snapshot>,
    cache_entries: usize,
    metrics: Arc<Metrics>,
) -> Proxy {
    let pool = UpstreamPool {
        connect_timeout: Duration::from_secs(5),
        pool_idle_timeout: Duration::from_secs(90),
    };
    let upstream = Upstream::new(&pool, &[]);
    let cell = Arc::new(ArcSwap::new(snapshot));
    let key_fetcher = Arc::new(KeyFetcher::new(cell.clone(), metrics.clone(), &[]));
    Proxy::new(
        cell,
        TokenCache::new(cache_entries, 32 << 20),
        metrics,
        key_fetcher,
        upstream,
    )
}
