//! Network plumbing shared by both sides: accepting connections (with the byte-level framing
//! guard) and opening them (the outbound HTTP client). Nothing here knows about tokens.
//!
//! - [`listener`]: accept, HTTP/1.1 + h2c (or TLS), limits, idle timeout, graceful shutdown.
//! - [`tls`]: the public listener's TLS: certificate reload, client certificates.
//! - [`guard`]: a connection's byte stream watched for request-smuggling shapes and idleness.
//! - [`client`]: outbound HTTP: TLS roots (system + `tls.ca_file`), pooling, timeouts, size caps.

pub mod client;
pub mod guard;
pub mod listener;
pub mod tls;
pub mod workers;
