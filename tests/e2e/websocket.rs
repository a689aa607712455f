//! WebSocket through the real binary with the real `websockets` library on both ends: the
//! handshake is authenticated like any request, then frames flow both ways.

use crate::proto_support::{peer_client, proxy_config, python_with, Binary, PeerServer};
use crate::support::{DevIssuer, IdpServer};

#[tokio::test(flavor = "multi_thread")]
async fn websockets_echo_through_the_proxy_only_with_a_token() {
    let Some(python) = python_with(&["websockets"]) else {
        return;
    };
    let issuer = DevIssuer::generate();
    let idp = IdpServer::start(issuer.jwks()).await.unwrap();
    let server = PeerServer::start(python, "ws_peer.py");
    let text = proxy_config(
        &idp,
        &format!("http://127.0.0.1:{}", server.port),
        "",
        // Even with an HTTP/2 upstream configured, the handshake goes over HTTP/1.1.
        "protocol = \"match\"",
    );
    let proxy = Binary::start(&text).await;
    let url = format!("ws://{}/chat", proxy.public);

    let token = issuer.rs256(&issuer.v2_claims(&["App.Read"]));
    let ok = peer_client(python, "ws_peer.py", &[&url, &token]).await;
    assert_eq!(ok["status"], 101, "{ok:#}");
    assert_eq!(ok["text"], "hello");
    assert_eq!(ok["binary"], "000162696e617279");
    let seen = &ok["seen"];
    assert!(seen["x-ms-client-principal-name"].is_string(), "{seen}");
    assert!(
        seen["authorization"].is_null(),
        "the token never reaches the server"
    );
    assert!(
        seen["x-arr-clientcert"].is_null(),
        "nor a spoofed cert header"
    );
    assert_eq!(seen["x-forwarded-proto"], "http");

    let refused = peer_client(python, "ws_peer.py", &[&url, ""]).await;
    assert_eq!(refused["status"], 401, "{refused:#}");
    assert!(refused["body"].as_str().unwrap().contains("missing_token"));
    let admin_url = format!("ws://{}/admin/chat", proxy.public);
    let denied = peer_client(python, "ws_peer.py", &[&admin_url, &token]).await;
    assert_eq!(denied["status"], 403, "{denied:#}");

    assert_eq!(
        proxy.metric("tokengate_websocket_upgrades_total").await,
        1.0
    );
    // The client closed: the splice ends and is counted (give the task a moment).
    for _ in 0..100 {
        if proxy.metric("tokengate_websocket_active").await == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.metric("tokengate_websocket_active").await, 0.0);
    assert_eq!(
        proxy
            .metric("tokengate_websocket_closed_total{reason=\"closed\"}")
            .await,
        1.0
    );
}
