//! End-to-end tests: real servers on loopback (discovery/JWKS, a recording upstream, the proxy),
//! real signed tokens, and the real binary where behaviour crosses processes.
//! One test binary with submodules, so it links once.

#[path = "e2e/process.rs"]
mod process;
#[path = "e2e/proto_support.rs"]
mod proto_support;
#[path = "common/provision.rs"]
mod provision;
#[path = "e2e/support.rs"]
mod support;

#[path = "e2e/agreement_classes.rs"]
mod agreement_classes;
#[path = "e2e/allocs.rs"]
mod allocs;
#[path = "e2e/authn.rs"]
mod authn;
#[path = "e2e/authz.rs"]
mod authz;
#[path = "e2e/binary.rs"]
mod binary;
#[path = "e2e/caller/mod.rs"]
mod caller;
#[path = "e2e/faults.rs"]
mod faults;
#[path = "e2e/grpc.rs"]
mod grpc;
#[path = "e2e/headers.rs"]
mod headers;
#[path = "e2e/hostile.rs"]
mod hostile;
#[path = "e2e/keys.rs"]
mod keys;
#[path = "e2e/paths.rs"]
mod paths;
#[path = "e2e/policy.rs"]
mod policy;
#[path = "e2e/streams.rs"]
mod streams;
#[path = "e2e/tls.rs"]
mod tls;
#[path = "e2e/upstream.rs"]
mod upstream;
#[path = "e2e/websocket.rs"]
mod websocket;
