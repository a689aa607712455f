//! Header rewriting between client and upstream, as `pipeline::Proxy::forward` runs it on every
//! authenticated request: strip hop-by-hop, strip the token and spoofed identity headers, set the
//! EasyAuth identity headers (pre-encoded, from the cache entry) and `X-Forwarded-*`; plus the
//! request id.
//!
//! Each iteration works on a fresh clone of a realistic request header map; the clone is made
//! outside the timed section (`iter_batched`).
//!
//! Run: `cargo bench --bench rewrite -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

use tokengate::dev::DevIssuer;
use tokengate::principal::IdentityHeaders;
use tokengate::rewrite::{self, RequestIds};

/// What a typical service-to-service request carries.
fn client_headers(token: &str, spoofed: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut add = |name: &'static str, value: &str| {
        h.append(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("header"),
        );
    };
    add("host", "orders.internal.example");
    add("user-agent", "azsdk-net-Orders/1.4.0 (.NET 8.0.4; Linux)");
    add("accept", "application/json");
    add("accept-encoding", "gzip, deflate, br");
    add("authorization", &format!("Bearer {token}"));
    add("connection", "keep-alive");
    add(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    add("x-request-id", "b1f6d7c0-8a1e-4d55-9d3c-0c6f2e1a9b77");
    add("content-type", "application/json");
    add("content-length", "512");
    if spoofed {
        add("x-ms-client-principal-name", "admin@contoso.example");
        add("x-ms-token-aad-access-token", "forged");
    }
    h
}

fn identity(issuer: &DevIssuer) -> IdentityHeaders {
    let payload = issuer.v2_claims(&["Orders.Read", "App.Read"]).to_string();
    IdentityHeaders::from_payload(payload.as_bytes()).expect("principal")
}

fn benches(c: &mut Criterion) {
    tokengate::install_crypto_providers();
    let issuer = DevIssuer::generate();
    let token = issuer.rs256(&issuer.v2_claims(&["Orders.Read"]));
    let id = identity(&issuer);
    // Encoded once per connection by the proxy, so outside the measured loop.
    let peer = rewrite::peer_value(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    let plain = client_headers(&token, false);
    let spoofed = client_headers(&token, true);
    let host = plain.get(header::HOST).cloned();
    let ids = RequestIds::new();

    let mut g = c.benchmark_group("rewrite");
    for (name, input) in [("full", &plain), ("full_with_spoofed_identity", &spoofed)] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || input.clone(),
                |mut h| {
                    rewrite::request_headers(
                        &mut h,
                        &rewrite::Outgoing {
                            identity: Some(&id),
                            token: None,
                            peer: &peer,
                            client_host: host.as_ref(),
                            scheme: rewrite::Scheme::Http,
                            client_cert: None,
                            trust_forwarded: false,
                        },
                    );
                    h
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("strip_hop_by_hop", |b| {
        b.iter_batched(
            || plain.clone(),
            |mut h| {
                rewrite::strip_hop_by_hop(&mut h);
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("strip_credentials", |b| {
        b.iter_batched(
            || plain.clone(),
            |mut h| {
                rewrite::strip_credentials(&mut h);
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("set_identity", |b| {
        b.iter_batched(
            || plain.clone(),
            |mut h| {
                rewrite::set_identity(&mut h, black_box(&id));
                h
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("set_forwarded", |b| {
        b.iter_batched(
            || plain.clone(),
            |mut h| {
                rewrite::set_forwarded(&mut h, &peer, host.as_ref(), rewrite::Scheme::Http, false);
                h
            },
            BatchSize::SmallInput,
        )
    });
    let mut without_id = plain.clone();
    without_id.remove("x-request-id");
    for (name, input) in [
        ("request_id_kept", &plain),
        ("request_id_generated", &without_id),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || input.clone(),
                |mut h| rewrite::request_id(&mut h, &ids),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(rewrite_benches, benches);
criterion_main!(rewrite_benches);
