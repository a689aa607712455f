//! Network plumbing shared by both sides: accepting connections (with the byte-level framing
//! guard) and opening them (the outbound HTTP client). Nothing here knows about tokens.
//!
//! - [`listener`]: accept, HTTP/1.1 + h2c, limits, idle timeout, graceful shutdown.
//! - [`guard`]: a connection's byte stream watched for request-smuggling shapes and idleness.
//! - [`client`]: outbound HTTP: TLS roots (system + `tls.ca_file`), pooling, timeouts, size caps.

pub mod client;
pub mod guard;
pub mod listener;
