//! A minimal WebSocket echo for `tokengate dev`'s upstream (RFC 6455 server side): enough to show
//! an authorized upgrade going through the proxy. Not public API; tests use real libraries.
//!
//! It answers the handshake, sends one text frame with the handshake's headers as JSON (so the
//! identity headers the proxy set are visible), then echoes text and binary frames, answers
//! pings, and echoes a close. Frames are unfragmented and at most 1 MiB.

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_FRAME: u64 = 1024 * 1024;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// Sends `greeting` as a text frame, then echoes frames until close or error.
pub async fn echo<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO, greeting: &str) {
    if write_frame(&mut io, 0x1, greeting.as_bytes())
        .await
        .is_err()
    {
        return;
    }
    loop {
        let Ok((opcode, payload)) = read_frame(&mut io).await else {
            return;
        };
        let reply = match opcode {
            0x1 | 0x2 => opcode,
            0x9 => 0xA,
            0x8 => {
                let _ = write_frame(&mut io, 0x8, &payload).await;
                return;
            }
            _ => continue,
        };
        if write_frame(&mut io, reply, &payload).await.is_err() {
            return;
        }
    }
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await?;
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => u64::from(r.read_u16().await?),
        127 => r.read_u64().await?,
        n => u64::from(n),
    };
    if len > MAX_FRAME {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((opcode, payload))
}

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    opcode: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    w.write_all(&frame).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn echoes_masked_frames_unmasked() {
        let (mut client, server) = tokio::io::duplex(4096);
        tokio::spawn(echo(server, "{}"));
        let (op, greeting) = read_frame(&mut client).await.unwrap();
        assert_eq!((op, greeting.as_slice()), (0x1, &b"{}"[..]));
        let mask = [1u8, 2, 3, 4];
        let masked: Vec<u8> = b"hi"
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        let mut frame = vec![0x81, 0x80 | 2];
        frame.extend_from_slice(&mask);
        frame.extend_from_slice(&masked);
        client.write_all(&frame).await.unwrap();
        let (op, payload) = read_frame(&mut client).await.unwrap();
        assert_eq!((op, payload.as_slice()), (0x1, &b"hi"[..]));
    }
}
