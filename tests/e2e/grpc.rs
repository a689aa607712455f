//! gRPC through the real binary with real grpcio peers: every streaming shape with metadata and
//! trailers when authorized, and gRPC statuses (not transport errors) when refused.

use serde_json::Value;

use crate::proto_support::{peer_client, proxy_config, python_with, Binary, PeerServer};
use crate::support::{DevIssuer, IdpServer};

struct Setup {
    issuer: DevIssuer,
    _idp: IdpServer,
    _server: PeerServer,
    proxy: Binary,
    python: &'static str,
}

async fn setup(protocol: &str) -> Option<Setup> {
    let python = python_with(&["grpc"])?;
    let issuer = DevIssuer::generate();
    let idp = IdpServer::start(issuer.jwks()).await.unwrap();
    let server = PeerServer::start(python, "grpc_peer.py");
    let text = proxy_config(
        &idp,
        &format!("http://127.0.0.1:{}", server.port),
        "",
        &format!("protocol = \"{protocol}\""),
    );
    let proxy = Binary::start(&text).await;
    Some(Setup {
        issuer,
        _idp: idp,
        _server: server,
        proxy,
        python,
    })
}

impl Setup {
    async fn calls(&self, token: &str) -> Value {
        let target = self.proxy.public.to_string();
        peer_client(self.python, "grpc_peer.py", &[&target, token]).await
    }
}

#[track_caller]
fn assert_ok(call: &Value, payloads: &[&str]) {
    assert_eq!(call["code"], "OK", "{call:#}");
    let got: Vec<&str> = call["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["payload"].as_str().unwrap())
        .collect();
    assert_eq!(got, payloads, "{call:#}");
    assert_eq!(call["trailers"]["x-trailer"], "done", "{call:#}");
    for reply in call["replies"].as_array().unwrap() {
        let seen = &reply["headers"];
        assert_eq!(
            seen["x-call"], "meta-1",
            "client metadata reaches the server"
        );
        assert!(seen["x-ms-client-principal-id"].is_string(), "{seen}");
        assert!(
            seen["authorization"].is_null(),
            "the token never reaches it"
        );
        assert!(
            seen["x-arr-clientcert"].is_null(),
            "nor a spoofed cert header"
        );
    }
}

#[track_caller]
fn assert_refused(call: &Value, code: &str, label: &str) {
    assert_eq!(call["code"], code, "{call:#}");
    assert_eq!(call["details"], label, "{call:#}");
    assert!(call["replies"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcio_every_call_shape_through_an_http2_upstream() {
    let Some(s) = setup("http2").await else {
        return;
    };
    let token = s.issuer.rs256(&s.issuer.v2_claims(&["App.Read"]));
    let out = s.calls(&token).await;
    assert_ok(&out["unary"], &["hi"]);
    assert_eq!(out["unary"]["initial"]["x-initial"], "unary");
    assert_ok(&out["server_stream"], &["0", "1", "2"]);
    assert_ok(&out["client_stream"], &["a+b+c"]);
    assert_ok(&out["bidi"], &["X", "Y"]);
    // The same valid token without App.Admin: PERMISSION_DENIED, labelled like the JSON body.
    assert_refused(&out["admin"], "PERMISSION_DENIED", "missing_role");

    let admin = s.issuer.rs256(&s.issuer.v2_claims(&["App.Admin"]));
    assert_ok(&s.calls(&admin).await["admin"], &["hi"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcio_without_a_token_sees_unauthenticated_on_every_shape() {
    // Refusals are gRPC-shaped whatever the upstream protocol: here it is HTTP/1.1.
    let Some(s) = setup("http1").await else {
        return;
    };
    let out = s.calls("").await;
    for call in ["unary", "server_stream", "client_stream", "bidi", "admin"] {
        assert_refused(&out[call], "UNAUTHENTICATED", "missing_token");
    }
    let expired = {
        let mut claims = s.issuer.v2_claims(&["App.Read"]);
        claims["exp"] = serde_json::json!(1_000_000_000);
        s.issuer.rs256(&claims)
    };
    assert_refused(
        &s.calls(&expired).await["unary"],
        "UNAUTHENTICATED",
        "token_expired",
    );
    assert_eq!(
        s.proxy
            .metric("tokengate_requests_total{outcome=\"missing_token\"}")
            .await,
        5.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcio_through_match_uses_http2_for_http2_clients() {
    let Some(s) = setup("match").await else {
        return;
    };
    let token = s.issuer.rs256(&s.issuer.v2_claims(&["App.Read"]));
    let out = s.calls(&token).await;
    assert_ok(&out["bidi"], &["X", "Y"]);
    assert_ok(&out["client_stream"], &["a+b+c"]);
}
