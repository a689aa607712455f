//! The callee side: what happens to a request that arrives for the protected application.
//!
//! [`pipeline`] calls the phases in order; each phase is one module with its own contract:
//!
//! ```text
//! normalize → extract → validate → authorize → rewrite → forward → respond
//! ```
//!
//! - [`normalize`]: the path as the application will read it, or a refusal.
//! - [`extract`]: the bearer token from `Authorization`.
//! - [`validate`]: the token's signature and claims (with [`validate::cache`], the signing keys'
//!   parsing in [`validate::jwks`] and their fetching in [`validate::fetch`]).
//! - [`authorize`]: allow-lists and per-path rules.
//! - [`rewrite`]: strip client-sent identity and hop-by-hop headers, set EasyAuth's
//!   ([`principal`] encodes them).
//! - [`forward`]: the pooled upstream client (HTTP/1.1 or HTTP/2 per `upstream.protocol`).
//! - [`upgrade`]: WebSocket upgrades: recognised, forwarded, spliced after the upstream's 101.
//! - [`respond`]: the one place a [`reject::Rejection`] becomes a response (JSON, or gRPC's
//!   trailers-only shape for gRPC requests, see [`grpc`]).

pub mod authorize;
pub mod extract;
pub mod forward;
pub mod grpc;
pub mod normalize;
pub mod pipeline;
pub mod principal;
pub mod reject;
pub mod respond;
pub mod rewrite;
pub mod upgrade;
pub mod validate;
