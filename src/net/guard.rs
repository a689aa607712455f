//! A watchful wrapper around each client connection's byte stream.
//!
//! # Contract
//! - It frames HTTP/1.1 on the raw bytes as they are read, independently of hyper, and flags the
//!   request-smuggling shapes that a lenient parser would resolve silently: `Content-Length` with
//!   `Transfer-Encoding` (hyper drops the length and carries on, as RFC 9112 §6.3 permits), more
//!   than one `Content-Length` (even equal ones, and `5, 5` in one field: hyper refuses that
//!   today, but a guard that stopped looking at it would rely on that),
//!   and a bare LF line ending in a header or trailer section.
//!   The pipeline refuses every request of a flagged connection with 400 and closes it, so such a
//!   request is never forwarded. Shapes hyper itself refuses (obs-fold, invalid header names,
//!   differing lengths) never reach the pipeline at all.
//! - It records when bytes last moved, for the idle keep-alive timeout.
//! - It finds the end of each section exactly where hyper does, so it cannot be desynchronized and
//!   then blinded for the rest of the connection: a trailer section ends only at CRLF CRLF (a bare
//!   `\n\r\n` is trailer data to hyper), a chunk size is any run of hex digits (leading zeros
//!   included) up to `u64`, as hyper reads it.
//! - HTTP/2 (prior knowledge) is recognised by its preface and left to the h2 codec's own checks.
//!
//! Why this file is long: a byte-level HTTP/1 framing scanner and its tests; it must stay one
//! state machine.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Header sections longer than this are hyper's to refuse (431); we stop looking.
const MAX_SCANNED_HEAD: usize = 256 * 1024;

/// A smuggling shape seen on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// More than one `Content-Length`.
    DuplicateLength,
    /// A header line ended by LF without CR.
    BareLineFeed,
}

/// Per-connection facts shared between the byte stream and the request handler.
pub struct ConnState {
    /// Bytes moved since the listener last looked: a flag, not a time, so the hot path reads
    /// no clock (the listener samples it a few times per idle timeout).
    active: AtomicBool,
    violation: AtomicU8,
    upgraded: AtomicBool,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            active: AtomicBool::new(false),
            violation: AtomicU8::new(0),
            upgraded: AtomicBool::new(false),
        }
    }

    /// The connection is being upgraded (WebSocket): what follows is not HTTP/1, so framing
    /// stops being scanned and no buffered bytes are held for it.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    /// The smuggling shape seen on this connection, if any.
    pub fn violation(&self) -> Option<Violation> {
        match self.violation.load(Ordering::Acquire) {
            1 => Some(Violation::LengthAndChunked),
            2 => Some(Violation::DuplicateLength),
            3 => Some(Violation::BareLineFeed),
            _ => None,
        }
    }

    /// Whether bytes moved either way since the last call.
    pub fn take_activity(&self) -> bool {
        self.active.swap(false, Ordering::Relaxed)
    }

    fn touch(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    fn flag(&self, v: Violation) {
        let code = match v {
            Violation::LengthAndChunked => 1,
            Violation::DuplicateLength => 2,
            Violation::BareLineFeed => 3,
        };
        let _ = self
            .violation
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The client's byte stream (TCP, or the plaintext side of TLS), observed.
pub struct GuardedStream<S = TcpStream> {
    inner: S,
    state: Arc<ConnState>,
    framer: Framer,
}

impl<S> GuardedStream<S> {
    /// Wraps `inner`; the returned state is what the handler consults.
    pub fn new(inner: S) -> (GuardedStream<S>, Arc<ConnState>) {
        let state = Arc::new(ConnState::new());
        (
            GuardedStream {
                inner,
                state: state.clone(),
                framer: Framer::Start(Vec::new()),
            },
            state,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.state.touch();
                if this.state.upgraded.load(Ordering::Acquire) {
                    this.framer = Framer::Off;
                }
                if let Some(v) = this.framer.feed(new) {
                    this.state.flag(v);
                }
            }
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &res {
            if *n > 0 {
                this.state.touch();
            }
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &res {
            if *n > 0 {
                this.state.touch();
            }
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// HTTP/1.1 request framing over the raw bytes.
#[derive(Debug)]
enum Framer {
    /// The first bytes: HTTP/2 preface or an HTTP/1 header section.
    Start(Vec<u8>),
    /// Collecting a header section.
    Head(Vec<u8>),
    /// Skipping a body of known length.
    Body(u64),
    /// Chunked body: collecting a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Chunked body: skipping chunk data plus its CRLF.
    ChunkData(u64),
    /// Chunked body: trailer section, collecting until an empty line.
    Trailers(Vec<u8>),
    /// Not HTTP/1 (h2), already flagged, or beyond what we scan.
    Off,
}

impl Framer {
    /// Consumes `bytes`; returns a violation the first time one is seen.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<Violation> {
        while !bytes.is_empty() {
            let (next, used, violation) = match std::mem::replace(self, Framer::Off) {
                Framer::Off => return None,
                Framer::Start(mut seen) => {
                    let take = bytes.len().min(H2_PREFACE.len() - seen.len());
                    seen.extend_from_slice(&bytes[..take]);
                    if !H2_PREFACE.starts_with(&seen) {
                        // HTTP/1: replay what we held as the start of a header section.
                        *self = Framer::Head(Vec::new());
                        let v = self.feed(&seen);
                        if v.is_some() {
                            return v;
                        }
                        (std::mem::replace(self, Framer::Off), take, None)
                    } else if seen.len() == H2_PREFACE.len() {
                        (Framer::Off, take, None)
                    } else {
                        (Framer::Start(seen), take, None)
                    }
                }
                // The usual case: a whole header section in one read, scanned where it lies.
                Framer::Head(head) if head.is_empty() => match find_head_end(bytes, 0) {
                    Some(end) => match check_head(&bytes[..end]) {
                        Ok(next) => (next, end, None),
                        Err(v) => (Framer::Off, end, Some(v)),
                    },
                    None if bytes.len() > MAX_SCANNED_HEAD => (Framer::Off, bytes.len(), None),
                    None => (Framer::Head(bytes.to_vec()), bytes.len(), None),
                },
                Framer::Head(mut head) => {
                    let start = head.len();
                    head.extend_from_slice(bytes);
                    match find_head_end(&head, start.saturating_sub(3)) {
                        Some(end) => {
                            let used = end - start;
                            match check_head(&head[..end]) {
                                Ok(next) => (next, used, None),
                                Err(v) => (Framer::Off, used, Some(v)),
                            }
                        }
                        None if head.len() > MAX_SCANNED_HEAD => (Framer::Off, bytes.len(), None),
                        None => (Framer::Head(head), bytes.len(), None),
                    }
                }
                Framer::Body(n) => {
                    let take = (bytes.len() as u64).min(n);
                    let rest = n - take;
                    let next = if rest == 0 {
                        Framer::Head(Vec::new())
                    } else {
                        Framer::Body(rest)
                    };
                    (next, take as usize, None)
                }
                Framer::ChunkSize(mut line) => match bytes.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&bytes[..i]);
                        let size = parse_chunk_size(&line);
                        let next = match size {
                            Some(0) => Framer::Trailers(Vec::new()),
                            // Data plus its trailing CRLF.
                            Some(n) => Framer::ChunkData(n.saturating_add(2)),
                            // Malformed chunk framing: hyper refuses it; stop looking.
                            None => Framer::Off,
                        };
                        (next, i + 1, None)
                    }
                    None if line.len() > 1024 => (Framer::Off, bytes.len(), None),
                    None => {
                        line.extend_from_slice(bytes);
                        (Framer::ChunkSize(line), bytes.len(), None)
                    }
                },
                Framer::ChunkData(n) => {
                    let take = (bytes.len() as u64).min(n);
                    let rest = n - take;
                    let next = if rest == 0 {
                        Framer::ChunkSize(Vec::new())
                    } else {
                        Framer::ChunkData(rest)
                    };
                    (next, take as usize, None)
                }
                Framer::Trailers(mut t) => {
                    // Ends at an empty line: CRLF right away, or CRLFCRLF after trailer fields.
                    // Like hyper, only CRLF ends a line here: `\n\r\n` does not end the section.
                    let start = t.len();
                    t.extend_from_slice(bytes);
                    let end = if t.starts_with(b"\r\n") {
                        Some(2)
                    } else {
                        find_crlf_crlf(&t, start.saturating_sub(3))
                    };
                    match end {
                        Some(end) if has_bare_lf(&t[..end]) => {
                            (Framer::Off, end - start, Some(Violation::BareLineFeed))
                        }
                        Some(end) => (Framer::Head(Vec::new()), end - start, None),
                        None if t.len() > MAX_SCANNED_HEAD => (Framer::Off, bytes.len(), None),
                        None => (Framer::Trailers(t), bytes.len(), None),
                    }
                }
            };
            *self = next;
            if violation.is_some() {
                return violation;
            }
            bytes = &bytes[used..];
        }
        None
    }
}

/// Index just past the blank line ending a header section (CRLFCRLF or a bare-LF variant).
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.min(buf.len());
    memchr::memchr_iter(b'\n', &buf[from..])
        .map(|i| from + i)
        .find_map(|i| match (buf.get(i + 1), buf.get(i + 2)) {
            // "\n\n" or "\n\r\n" ends it.
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        })
}

/// Index just past the first CRLFCRLF at or after `from`.
fn find_crlf_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
}

/// Whether any LF in `section` lacks its CR.
fn has_bare_lf(section: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', section).any(|i| i == 0 || section[i - 1] != b'\r')
}

/// Checks a complete header section and says how its body is framed.
fn check_head(head: &[u8]) -> Result<Framer, Violation> {
    // Leading empty lines before a request line are allowed (RFC 9112 §2.2).
    let mut body = head;
    while body.starts_with(b"\r\n") {
        body = &body[2..];
    }
    if has_bare_lf(body) {
        return Err(Violation::BareLineFeed);
    }
    let mut lengths = 0;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    // Every line after the request line; only two field names matter, so most lines are passed
    // over on their first byte.
    for start in memchr::memchr_iter(b'\n', body).map(|i| i + 1) {
        let rest = &body[start..];
        if !matches!(rest.first(), Some(b'c' | b'C' | b't' | b'T')) {
            continue;
        }
        let line = &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = &line[..colon];
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            // hyper reads `5, 5` as one length; it is two to us, as two fields would be.
            lengths += 1 + value.iter().filter(|&&b| b == b',').count();
            length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| trim(last).eq_ignore_ascii_case(b"chunked"));
        }
    }
    if transfer_encoding && lengths > 0 {
        return Err(Violation::LengthAndChunked);
    }
    if lengths > 1 {
        return Err(Violation::DuplicateLength);
    }
    Ok(match (chunked, length) {
        (true, _) => Framer::ChunkSize(Vec::new()),
        (false, Some(n)) if n > 0 => Framer::Body(n),
        // A non-chunked transfer coding or a bad length: hyper refuses it; stop framing.
        (false, None) if transfer_encoding || lengths > 0 => Framer::Off,
        _ => Framer::Head(Vec::new()),
    })
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let hex = line.split(|&b| b == b';').next()?;
    // hyper: hex digits first (no sign, no leading space), then optional spaces or tabs.
    let hex = trim(hex);
    if hex.is_empty() || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    hex.iter().try_fold(0u64, |n, &d| {
        let digit = (d as char).to_digit(16)?;
        n.checked_mul(16)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> Option<Violation> {
        let mut f = Framer::Start(Vec::new());
        chunks.iter().find_map(|c| f.feed(c))
    }

    #[test]
    fn clean_pipelined_requests_pass_in_any_split() {
        let stream: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
POST /d HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n";
        for split in 1..stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(feed_all(&[a, b]), None, "split at {split}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(feed_all(&bytes), None);
    }

    #[test]
    fn body_text_that_looks_like_headers_is_not_scanned() {
        let req =
            b"POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\nTransfer-Encoding: chunked\nContent-Len";
        assert_eq!(feed_all(&[req]), None);
    }

    #[test]
    fn smuggling_shapes_are_flagged() {
        let cl_te = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(feed_all(&[cl_te]), Some(Violation::LengthAndChunked));
        let te_cl = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(feed_all(&[te_cl]), Some(Violation::LengthAndChunked));
        let two = b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(feed_all(&[two]), Some(Violation::DuplicateLength));
        let lf = b"GET / HTTP/1.1\nHost: x\n\n";
        assert_eq!(feed_all(&[lf]), Some(Violation::BareLineFeed));
        // The second request of a keep-alive connection is checked as well.
        let second = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(feed_all(&[second]), Some(Violation::LengthAndChunked));
    }

    #[test]
    fn sections_end_where_hyper_ends_them() {
        // Issue 9: `\n\r\n` ended the trailers for the guard but not for hyper, so the guard
        // read the rest of the trailer section as a new head and lost its place.
        let trailer = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n\r\n";
        assert_eq!(feed_all(&[trailer]), Some(Violation::BareLineFeed));
        // A well-formed trailer section, then a smuggling shape the guard must still see.
        let then = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n\r\n\
POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for split in 1..then.len() {
            let (a, b) = then.split_at(split);
            assert_eq!(
                feed_all(&[a, b]),
                Some(Violation::LengthAndChunked),
                "split at {split}"
            );
        }
        // Leading zeros: 17 hex digits are still 5 bytes to hyper.
        let zeros = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n\
POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(feed_all(&[zeros]), Some(Violation::LengthAndChunked));
        // A comma list in one Content-Length field is two lengths.
        let list = b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello";
        assert_eq!(feed_all(&[list]), Some(Violation::DuplicateLength));
        assert_eq!(parse_chunk_size(b"+5\r"), None);
        assert_eq!(parse_chunk_size(b"5 ;ext\r"), Some(5));
        assert_eq!(parse_chunk_size(b"fffffffffffffffff\r"), None);
    }

    #[test]
    fn http2_preface_turns_scanning_off() {
        let mut f = Framer::Start(Vec::new());
        assert_eq!(f.feed(H2_PREFACE), None);
        assert!(matches!(f, Framer::Off));
        assert_eq!(
            f.feed(b"\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            None
        );
    }

    #[tokio::test]
    async fn after_an_upgrade_bytes_are_not_scanned_or_held() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(4096);
        let (mut guarded, state) = GuardedStream::new(server);
        let mut buf = [0u8; 4096];
        client
            .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let _ = guarded.read(&mut buf).await.unwrap();
        state.upgraded();
        // WebSocket payload that would look like a smuggling head to the HTTP/1 framer.
        client
            .write_all(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            .await
            .unwrap();
        let _ = guarded.read(&mut buf).await.unwrap();
        assert_eq!(state.violation(), None);
        assert!(matches!(guarded.framer, Framer::Off));
    }
}
