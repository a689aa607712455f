//! Path normalization (`normalize::normalize`) and the anonymous/rule decision on its output
//! (`authorize::access`), for the spellings a proxy actually sees.
//!
//! Canonical paths are the common case and must only cost one scan (they borrow); paths with
//! dot segments or escapes pay one allocation for the rewritten copy; refusals stop at the first
//! forbidden byte.
//!
//! Run: `cargo bench --bench normalize -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;

use tokengate::authorize;
use tokengate::normalize;

use tokengate::dev::fixture::Fixture;

const CASES: [(&str, &str); 6] = [
    ("canonical_short", "/api/orders/42"),
    (
        "canonical_long",
        "/api/v1/tenants/00000000-0000-4000-8000-00000000c0de/orders/42/items/7/attachments/report.pdf",
    ),
    ("dot_segments", "/api/./v1//orders/../orders/42/"),
    ("percent_encoded", "/api/%7Euser/caf%c3%a9/%61dmin/x%20y"),
    ("traversal", "/public/%2e%2e/%2E%2e/admin"),
    ("refused_semicolon", "/public/..;/admin"),
];

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    for (name, path) in CASES {
        g.bench_function(name, |b| b.iter(|| normalize::normalize(black_box(path))));
    }
    g.finish();

    // The decision made on every request right after normalizing: anonymous or not.
    let fx = Fixture::new();
    let auth = &fx.snapshot.policy.auth;
    let mut g = c.benchmark_group("access");
    for (name, path) in [
        ("protected", "/api/orders/42"),
        ("anonymous", "/public/logo.png"),
        ("rule_protected", "/admin/users"),
    ] {
        let path = normalize::normalize(path).expect("normalizes").into_owned();
        g.bench_function(name, |b| {
            b.iter(|| authorize::access(auth, black_box(&path), &Method::GET))
        });
    }
    g.finish();
}

criterion_group!(normalize_benches, benches);
criterion_main!(normalize_benches);
