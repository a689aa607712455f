//! Network plumbing shared by both sides: accepting connections (with the byte-level framing
//! guard) and, soon, the outbound HTTP client. Nothing here knows about tokens.
//!
//! - [`listener`]: accept, HTTP/1.1 + h2c, limits, idle timeout, graceful shutdown.
//! - [`guard`]: a connection's byte stream watched for request-smuggling shapes and idleness.

pub mod guard;
pub mod listener;
