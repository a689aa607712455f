//! A raw HTTP/1.1 client over keep-alive TCP: writes exactly the bytes it is given (so a variant
//! can carry any method spelling, target or header name) and reads one response back.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one response may take before the exchange counts as a timeout.
const READ_TIMEOUT: Duration = Duration::from_secs(8);
/// A response head larger than this is a broken exchange, not a response.
const MAX_HEAD: usize = 256 * 1024;

/// One response: status and headers (names lower-cased); the body is read and dropped.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why an exchange produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server closed the connection without answering.
    Closed,
    /// No complete answer within [`READ_TIMEOUT`].
    Timeout,
    /// Bytes that do not parse as an HTTP/1.1 response.
    Garbled,
}

/// A connection that is opened lazily and reopened after the server closes it.
pub struct Client {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Sends `request` and reads its response. A reused connection that the server had already
    /// closed is retried once on a fresh one.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Response, Failure> {
        let reused = self.stream.is_some();
        match self.try_exchange(request).await {
            Err(Failure::Closed) if reused => {
                self.stream = None;
                self.try_exchange(request).await
            }
            other => other,
        }
    }

    async fn try_exchange(&mut self, request: &[u8]) -> Result<Response, Failure> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .map_err(|_| Failure::Closed)?;
            s.set_nodelay(true).ok();
            self.stream = Some(s);
            self.buf.clear();
        }
        let result = tokio::time::timeout(READ_TIMEOUT, self.round_trip(request)).await;
        let result = result.unwrap_or(Err(Failure::Timeout));
        if !matches!(result, Ok((_, true))) {
            // Anything but a cleanly delimited response leaves the connection unusable.
            self.stream = None;
        }
        result.map(|(r, _)| r)
    }

    /// Returns the response and whether the connection may carry another request.
    async fn round_trip(&mut self, request: &[u8]) -> Result<(Response, bool), Failure> {
        let stream = self.stream.as_mut().ok_or(Failure::Closed)?;
        stream
            .write_all(request)
            .await
            .map_err(|_| Failure::Closed)?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Failure::Garbled);
            }
            if read_more(stream, &mut self.buf).await? == 0 {
                return Err(Failure::Closed);
            }
        };
        let response = parse_head(&self.buf[..head_end])?;
        self.buf.drain(..head_end);

        let method = request.split(|&b| b == b' ').next().unwrap_or_default();
        // A response to something hyper may not treat as HEAD (`head`) or that turns the
        // connection into a tunnel (CONNECT) has no length we can trust: read no further.
        if !method.eq(b"HEAD") && method.eq_ignore_ascii_case(b"HEAD")
            || method.eq_ignore_ascii_case(b"CONNECT")
        {
            return Ok((response, false));
        }
        let closing = response
            .header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        let bodiless = method == b"HEAD" || matches!(response.status, 100..=199 | 204 | 304);
        if bodiless {
            return Ok((response, !closing));
        }
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = response
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok());
        if chunked {
            self.read_chunked().await?;
        } else if let Some(n) = length {
            self.read_exact_body(n).await?;
        } else {
            // Delimited by close.
            while read_more(self.stream.as_mut().ok_or(Failure::Closed)?, &mut self.buf).await? > 0
            {
                self.buf.clear();
            }
            return Ok((response, false));
        }
        Ok((response, !closing))
    }

    async fn read_exact_body(&mut self, n: usize) -> Result<(), Failure> {
        let stream = self.stream.as_mut().ok_or(Failure::Closed)?;
        while self.buf.len() < n {
            if read_more(stream, &mut self.buf).await? == 0 {
                return Err(Failure::Closed);
            }
        }
        self.buf.drain(..n);
        Ok(())
    }

    async fn read_chunked(&mut self) -> Result<(), Failure> {
        loop {
            let line_end = self.line().await?;
            let line =
                std::str::from_utf8(&self.buf[..line_end - 2]).map_err(|_| Failure::Garbled)?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| Failure::Garbled)?;
            self.buf.drain(..line_end);
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let end = self.line().await?;
                    self.buf.drain(..end);
                    if end == 2 {
                        return Ok(());
                    }
                }
            }
            self.read_exact_body(size + 2).await?;
        }
    }

    /// Reads until the buffer holds a CRLF-terminated line; returns its length with the CRLF.
    async fn line(&mut self) -> Result<usize, Failure> {
        let stream = self.stream.as_mut().ok_or(Failure::Closed)?;
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                return Ok(i + 2);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Failure::Garbled);
            }
            if read_more(stream, &mut self.buf).await? == 0 {
                return Err(Failure::Closed);
            }
        }
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, Failure> {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(_) => Err(Failure::Closed),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Result<Response, Failure> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or(Failure::Garbled)?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(Failure::Garbled);
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(Failure::Garbled)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response { status, headers })
}
