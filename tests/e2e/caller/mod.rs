//! The caller side through the real binary: token sources against mock authorities, the cache's
//! refresh and single flight, the identity endpoint's two protocols, egress, the whole chain
//! into the callee side, unmodified azure-identity, and that no secret is ever logged.

mod chain;
mod endpoint;
mod python;
mod sources;
mod support;
