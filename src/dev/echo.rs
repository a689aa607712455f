//! The echo upstream: answers every request with a JSON echo of what reached it (method, URI,
//! headers, body size), and echoes WebSocket frames after the handshake.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::ws_echo;

/// An upstream that answers every request with a JSON echo of what reached it; a WebSocket
/// handshake is accepted, its headers sent as the first text frame, then frames are echoed.
pub async fn serve_echo(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(|mut req: Request<Incoming>| async move {
                let headers: serde_json::Map<String, Value> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
                    .collect();
                if let Some(key) = req.headers().get("sec-websocket-key").cloned() {
                    let on_upgrade = hyper::upgrade::on(&mut req);
                    let greeting =
                        serde_json::to_string(&json!({ "headers": headers })).unwrap_or_default();
                    tokio::spawn(async move {
                        if let Ok(upgraded) = on_upgrade.await {
                            ws_echo::echo(TokioIo::new(upgraded), &greeting).await;
                        }
                    });
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                    let h = r.headers_mut();
                    h.insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("upgrade"),
                    );
                    h.insert(
                        http::header::UPGRADE,
                        http::HeaderValue::from_static("websocket"),
                    );
                    if let Ok(v) = http::HeaderValue::from_str(&ws_echo::accept_key(key.as_bytes()))
                    {
                        h.insert("sec-websocket-accept", v);
                    }
                    return Ok::<_, Infallible>(r);
                }
                let (parts, body) = req.into_parts();
                let body_len = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes().len())
                    .unwrap_or(0);
                let doc = json!({
                    "method": parts.method.as_str(),
                    "uri": parts.uri.to_string(),
                    "headers": headers,
                    "body_bytes": body_len,
                });
                let mut r = Response::new(Full::new(Bytes::from(
                    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
                )));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(r)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}
