//! The whole chain on one machine: app -> caller sidecar ([[egress]]) -> callee sidecar
//! ([auth] with a role rule) -> callee app, which reads who called from X-MS-CLIENT-PRINCIPAL.
//! And: nothing secret in any log line, at trace level.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::support::*;
use tokengate::dev::IdpServer;

/// The callee app: answers with the identity EasyAuth's header says called it.
async fn callee_app() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let principal = req
                        .headers()
                        .get("x-ms-client-principal")
                        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
                        .unwrap_or(Value::Null);
                    let claim = |typ: &str| -> Vec<Value> {
                        principal["claims"]
                            .as_array()
                            .map(|c| {
                                c.iter()
                                    .filter(|x| x["typ"] == typ)
                                    .map(|x| x["val"].clone())
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    let body = json!({
                        "path": req.uri().path(),
                        "caller_app": claim("azp"),
                        "roles": claim("roles"),
                        "principal_id": req.headers().get("x-ms-client-principal-id")
                            .and_then(|v| v.to_str().ok()),
                        "saw_authorization": req.headers().contains_key("authorization"),
                    });
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn app_to_egress_to_callee_side_with_a_role_rule_to_callee_app() {
    let issuer = Arc::new(DevIssuer::generate());
    let idp = IdpServer::start(issuer.jwks()).await.unwrap();
    let app = callee_app().await;
    let callee = Sidecar::start(
        &format!(
            r#"
[listen]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[upstream]
url = "http://{app}"
[auth]
jwks_uri = "{jwks}"
issuers = ["{iss}"]
audiences = ["api://orders"]
[[auth.rules]]
path = "/orders"
roles = ["Orders.Read"]
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
"#,
            jwks = idp.jwks_url(),
            iss = tokengate::dev::v2_issuer(tokengate::dev::DEV_TENANT),
        ),
        &[],
        "info",
    );
    callee.wait_ready().await;

    let files = TestDir::new("chain");
    let file = files.write("token", "federated\n");
    let entra = MockEntra::start(Expect::Federated("federated".into()), issuer.clone()).await;
    entra.set(|s| s.roles = vec!["Orders.Read".into()]);
    let caller = Sidecar::start(
        &format!(
            r#"
[admin]
address = "127.0.0.1:0"
[identity]
source = "workload_identity"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
authority_host = "{authority}"
federated_token_file = "{file}"
[[egress]]
listen = "127.0.0.1:0"
upstream = "http://{callee}"
resource = "api://orders"
"#,
            authority = entra.authority(),
            file = file.display(),
            callee = callee.public.unwrap(),
        ),
        &[],
        "info",
    );
    // Ready means the egress route already holds a token.
    caller.wait_ready().await;
    let egress = caller.egress[0];

    // The app sends no credentials, or stale ones: ours replace them.
    for auth in [None, Some("Bearer app-sent-garbage")] {
        let mut b = Request::get(format!("http://{egress}/orders/42?x=1"));
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        let r = send(b.body(Full::default()).unwrap()).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), callee.logs());
        let seen = r.json();
        assert_eq!(seen["path"], "/orders/42");
        assert_eq!(seen["caller_app"], json!([CLIENT_ID]));
        assert_eq!(seen["roles"], json!(["Orders.Read"]));
        assert_eq!(seen["principal_id"], "0f9d1c2b-3a4e-4f5a-8b6c-7d8e9f0a1b2c");
        assert_eq!(
            seen["saw_authorization"], false,
            "the callee side strips the token"
        );
    }
    // The role rule still applies to the caller's token: 403 from the callee side.
    let r = send(
        Request::get(format!("http://{egress}/admin"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(entra.hits(), 1, "one token for every call");
    entra.assert_no_errors();
    assert!(
        caller
            .metric("tokengate_token_seconds_left{resource=\"api://orders\"}")
            .await
            > 3500.0
    );
}

#[tokio::test]
async fn no_token_assertion_or_secret_is_logged_at_trace_level() {
    let issuer = Arc::new(DevIssuer::generate());
    let upstream = crate::support::Upstream::start().await;
    let files = TestDir::new("leak");
    let (pem, public_key, x5t) = certificate("tokengate-leak");
    let cert = files.write("cert.pem", &pem);
    let federated = "eyJfederated.token-that-must-never-be-logged.sig";
    let token_file = files.write("token", federated);

    let cert_entra =
        MockEntra::start(Expect::Certificate { public_key, x5t }, issuer.clone()).await;
    let cert_side = Sidecar::start(
        &format!(
            r#"
[admin]
address = "127.0.0.1:0"
[identity]
source = "client_certificate"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
authority_host = "{authority}"
certificate_file = "{cert}"
[identity_endpoint]
address = "127.0.0.1:0"
secret_file = "{{dir}}/secret"
[[egress]]
listen = "127.0.0.1:0"
upstream = "{up}"
resource = "api://leak"
"#,
            authority = cert_entra.authority(),
            cert = cert.display(),
            up = upstream.url(),
        ),
        &[],
        "trace",
    );
    let wi_entra = MockEntra::start(Expect::Federated(federated.into()), issuer.clone()).await;
    let wi_side = Sidecar::start(
        &super::sources::workload_config(&wi_entra, &token_file, ""),
        &[],
        "trace",
    );
    for side in [&cert_side, &wi_side] {
        let secret = side.secret("secret");
        let r = side.app_service("api://leak", Some(&secret), "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = side
            .app_service("api://leak", Some("wrong-secret"), "")
            .await;
        assert_eq!(r.status, 401);
        let imds = send(
            Request::get(format!(
                "http://{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://leak",
                side.endpoint.unwrap()
            ))
            .header("Metadata", "true")
            .body(Full::default())
            .unwrap(),
        )
        .await;
        assert_eq!(imds.status, 200);
    }
    let r = send(
        Request::get(format!("http://{}/x", cert_side.egress[0]))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let sent = upstream.last().headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(sent.starts_with("Bearer eyJ"));
    cert_entra.assert_no_errors();
    wi_entra.assert_no_errors();

    let logs = format!("{}\n{}", cert_side.logs(), wi_side.logs());
    assert!(logs.lines().count() > 20, "trace logging is on:\n{logs}");
    let mut secrets: Vec<String> = vec![
        federated.to_string(),
        cert_side.secret("secret"),
        wi_side.secret("secret"),
    ];
    for entra in [&cert_entra, &wi_entra] {
        let s = entra.state.lock().unwrap();
        secrets.extend(s.issued.iter().cloned());
        secrets.extend(s.assertions.iter().cloned());
    }
    for secret in &secrets {
        // Any of a JWS's three parts is enough to leak it (the signature makes it usable).
        for part in secret.split('.').filter(|p| p.len() >= 16) {
            assert!(
                !logs.contains(part),
                "a credential part appears in the log:\n{}",
                logs.lines().find(|l| l.contains(part)).unwrap()
            );
        }
    }
}

#[tokio::test]
async fn tokengate_dev_prints_how_to_try_the_caller_side_and_it_works() {
    let dev = crate::process::Dev::start().await;
    let lines = &dev.lines;
    let find = |prefix: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{}", lines.join("\n")))
            .to_string()
    };
    // The egress route: no credentials from the app, an identity at the callee.
    let egress = lines
        .iter()
        .find(|l| l.starts_with("curl -s http://") && l.contains("X-MS-CLIENT-PRINCIPAL-ID"))
        .unwrap_or_else(|| panic!("no egress line in:\n{}", lines.join("\n")));
    let egress_url = egress.split_whitespace().nth(2).unwrap();
    let r = send(Request::get(egress_url).body(Full::default()).unwrap()).await;
    // The identity endpoint, with the printed exports.
    let endpoint = find("export IDENTITY_ENDPOINT=");
    let header = find("export IDENTITY_HEADER=");
    let t = send(
        Request::get(format!(
            "{endpoint}?api-version=2019-08-01&resource=api://tokengate-dev"
        ))
        .header("X-IDENTITY-HEADER", header)
        .body(Full::default())
        .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["headers"]["x-ms-client-principal-id"],
        tokengate::dev::DEV_CALLER_OID
    );
    assert_eq!(t.status, 200, "{}", t.text());
    assert!(t.json()["access_token"]
        .as_str()
        .unwrap()
        .starts_with("eyJ"));
}
