//! Development and test tooling: `tokengate dev`, and what the tests, benches, examples and fuzz
//! seeds share. Hidden from the docs (`#[doc(hidden)]` at the crate root): not public API, and
//! nothing here is used by the proxy itself when it runs with a config file.
//!
//! - [`issuer`]: [`DevIssuer`], real keys signing Entra-shaped tokens.
//! - [`idp`]: [`IdpServer`], discovery + JWKS on loopback, with faults on demand.
//! - [`echo`]: [`serve_echo`], an upstream that echoes what reached it (HTTP and WebSocket).
//! - [`policy`]: [`PolicyToml`], the one policy builder.
//! - [`token`]: a dev token endpoint for the caller side ([`token::DevTokenServer`]).
//! - [`ws_echo`]: the WebSocket half of the echo upstream.
//! - [`fixture`]: [`fixture::Fixture`], the one test fixture (issuer + snapshot + keys), and an
//!   offline [`crate::callee::pipeline::Proxy`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub mod echo;
pub mod fixture;
pub mod idp;
pub mod issuer;
pub mod policy;
pub mod token;
pub mod ws_echo;

pub use echo::serve_echo;
pub use idp::{IdpMode, IdpServer};
pub use issuer::{
    v1_issuer, v2_issuer, DevIssuer, SigningKey, DEV_AUDIENCE, DEV_CALLER_APP, DEV_CALLER_OID,
    DEV_TENANT,
};
pub use policy::{reference_policy_toml, PolicyToml};

/// `tokengate dev`: issuer, echo upstream and proxy in one process; prints a working `curl`.
pub async fn run(listen: SocketAddr, admin: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let issuer = Arc::new(DevIssuer::generate());
    let idp = IdpServer::start(issuer.jwks()).await?;
    let tokens = token::DevTokenServer::start(issuer.clone()).await?;
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    tokio::spawn(serve_echo(echo));
    // The caller side's secret lives in a directory of its own, gone with the process's tmp.
    let secret_dir = std::env::temp_dir().join(format!("tokengate-dev-{}", std::process::id()));
    std::fs::create_dir_all(&secret_dir)?;
    let secret_file = secret_dir.join("identity-secret");
    // The egress route calls this process's own callee side, over loopback, so the callee's
    // port must be known before start: `--listen ...:0` gets a free one picked here.
    let mut listen = listen;
    if listen.port() == 0 {
        listen.set_port(
            TcpListener::bind((listen.ip(), 0))
                .await?
                .local_addr()?
                .port(),
        );
    }
    let mut callee_addr = listen;
    if callee_addr.ip().is_unspecified() {
        callee_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }

    let text = PolicyToml::for_issuer(&issuer)
        .listen(listen)
        .admin(admin)
        .upstream(format!("http://{echo_addr}"))
        .discovery(idp.discovery_url())
        .excluded_paths(&["/public"])
        .rule("/admin", &[], &["App.Admin"])
        // Being rolled out: not enforced yet, refusals only logged (`would deny`) and counted.
        .rule_raw("path = \"/beta\"\nroles = [\"Beta.Tester\"]\nmode = \"report\"")
        // The caller side: tokens from the dev issuer, for apps and for calls through the
        // egress route.
        .section(&format!(
            r#"[identity]
source = "dev"
authority_host = "{dev_authority}"
dev_roles = ["App.Read"]
[identity_endpoint]
address = "127.0.0.1:0"
secret_file = "{secret}"
[[egress]]
listen = "127.0.0.1:0"
upstream = "http://{callee_addr}"
resource = "{DEV_AUDIENCE}""#,
            dev_authority = tokens.authority(),
            secret = secret_file.display(),
        ))
        .toml();
    let config = crate::SidecarConfig::from_toml(&text)?;
    // Written out so `tokengate explain --config` can be shown against the same policy.
    let config_file =
        std::env::temp_dir().join(format!("tokengate-dev-{}.toml", std::process::id()));
    std::fs::write(&config_file, &text)?;
    let endpoint_config = config
        .caller
        .as_ref()
        .and_then(|c| c.endpoint.clone())
        .ok_or("dev config has an identity endpoint")?;
    let running = crate::start_sidecar(config).await?;
    while !running.ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reader = issuer.rs256(&issuer.v2_claims(&["App.Read"]));
    let admin_token = issuer.es256(&issuer.v1_claims(&["App.Admin"]));
    let mut expired = issuer.v2_claims(&["App.Admin"]);
    expired["exp"] = serde_json::json!(crate::pipeline::unix_now().saturating_sub(7200));
    let expired = issuer.rs256(&expired);
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "tokengate".into());
    let cfg = config_file.display();
    let base = format!("http://{}", running.public_addr);
    println!(
        "tokengate dev: local issuer {}, echo upstream {echo_addr}",
        idp.addr
    );
    println!("proxy on {base}, admin on http://{}", running.admin_addr);
    println!();
    println!("# a valid v2 RS256 token (role App.Read): 200, identity headers in the echo");
    println!("curl -s -H 'Authorization: Bearer {reader}' {base}/hello");
    println!();
    println!("# the same token on /admin (needs App.Admin): 403");
    println!("curl -si -H 'Authorization: Bearer {reader}' {base}/admin");
    println!();
    println!("# a v1 ES256 token with App.Admin: 200");
    println!("curl -s -H 'Authorization: Bearer {admin_token}' {base}/admin");
    println!();
    println!("# gRPC refusals are gRPC statuses (trailers-only, HTTP 200): grpc-status 16");
    println!("# UNAUTHENTICATED without a token, 7 PERMISSION_DENIED without the role (grpcurl -plaintext");
    println!("# -H 'authorization: Bearer <token>' ... shows the same against a gRPC callee)");
    println!("curl -si --http2-prior-knowledge -X POST -H 'content-type: application/grpc' {base}/echo.Echo/Say");
    println!("curl -si --http2-prior-knowledge -X POST -H 'content-type: application/grpc' -H 'Authorization: Bearer {reader}' {base}/admin/echo.Echo/Say");
    println!();
    println!("# WebSocket: authorized like any request, then spliced to the echo (pip install websockets)");
    println!(
        "python3 -c \"from websockets.sync.client import connect\nwith connect('ws://{}/ws', \
         additional_headers={{'Authorization': 'Bearer {reader}'}}) as ws: print(ws.recv()); \
         ws.send('hello'); print(ws.recv())\"",
        running.public_addr
    );
    println!();
    println!("# no token: 401; anonymous prefix /public: 200");
    println!("curl -si {base}/hello; curl -s {base}/public/x");
    println!();
    println!("# report mode: the /beta rule (needs Beta.Tester) has mode = \"report\": the reader");
    println!("# token is forwarded (200, identity headers in the echo), logged as `would deny`");
    println!("# and counted in tokengate_report_only_denials_total{{reason=\"missing_role\"}}");
    println!("curl -s -H 'Authorization: Bearer {reader}' {base}/beta/x");
    println!(
        "curl -s http://{}/metrics | grep report_only",
        running.admin_addr
    );
    println!();
    println!("# explain: decoded token, the keys that verify it, and the proxy's verdict");
    println!("# verdict: deny missing_role (403), exit 1");
    println!("{exe} explain --config {cfg} --path /admin --method POST {reader}");
    println!("# verdict: deny token_expired (401), exit 1");
    println!("{exe} explain --config {cfg} --path /hello {expired}");
    println!();
    println!("# who am I (EasyAuth /.auth/me), readiness and metrics");
    println!("curl -s -H 'Authorization: Bearer {reader}' {base}/.auth/me");
    println!(
        "curl -s http://{}/readyz; curl -s http://{}/metrics",
        running.admin_addr, running.admin_addr
    );
    println!();
    if let Some(caller) = running.caller() {
        let mut endpoint = endpoint_config;
        if let Some(a) = caller.endpoint_addr {
            endpoint.address = a;
        }
        let exports = crate::caller::identity_env(&endpoint)?;
        println!("# the caller side: an app's calls through the egress route get a token attached");
        for egress in &caller.egress_addrs {
            println!("curl -s http://{egress}/hello    # the echo shows X-MS-CLIENT-PRINCIPAL-ID");
        }
        println!();
        println!("# unmodified apps (azure-identity, MSAL) find the identity endpoint with:");
        print!("{exports}");
        println!(
            "curl -s -H \"X-IDENTITY-HEADER: $IDENTITY_HEADER\" \
             \"$IDENTITY_ENDPOINT?api-version=2019-08-01&resource={DEV_AUDIENCE}\""
        );
        println!();
    }
    println!("Ctrl-C to stop.");
    crate::wait_for_shutdown_signal().await;
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&secret_dir);
    let _ = std::fs::remove_file(&config_file);
    Ok(())
}
