//! Mints keys, tokens and configs for `benches/compare.sh`.
//!
//! ```text
//! cargo run --release --example mint -- --out DIR [--tokens N] [--jwks-url URL]
//!     [--upstream URL] [--listen ADDR] [--admin ADDR] [--lifetime SECS]
//! ```
//!
//! Writes into DIR:
//! - `jwks.json`: the RSA signing key as a JWKS (`kid` `rsa-1`, no `alg`, like Entra's);
//! - `public.pem`: the same key as SPKI PEM, for HAProxy's `jwt_verify`;
//! - `proxy.toml`: a tokengate config with `jwks_uri` = `--jwks-url`, exact `iss` and `aud`,
//!   RS256 only, an `allowed_applications` list and `[[auth.rules]]` the tokens satisfy on `/api`;
//! - `token.txt`: one token (the "same token" mode);
//! - `tokens.txt`: N distinct tokens, one per line (the "distinct tokens" mode);
//! - `claims.env`: `ISSUER=…` and `AUDIENCE=…`, for the HAProxy config.
//!
//! Tokens are v2 app-only (managed-identity shaped) RS256 tokens padded with the opaque claims a
//! real Entra token carries (`aio`, `rh`, `uti`, …), so they are about as long as real ones.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;

use tokengate::dev::{self, DevIssuer, DEV_AUDIENCE, DEV_CALLER_APP};

struct Args {
    out: PathBuf,
    tokens: usize,
    jwks_url: String,
    upstream: String,
    listen: String,
    admin: String,
    lifetime: u64,
}

fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mint: {e}\nusage: mint --out DIR [--tokens N] [--jwks-url URL] [--upstream URL] [--listen ADDR] [--admin ADDR] [--lifetime SECS]");
            std::process::exit(64);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("mint: {e}");
        std::process::exit(1);
    }
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        out: PathBuf::new(),
        tokens: 200_000,
        jwks_url: "http://127.0.0.1:18081/jwks.json".into(),
        upstream: "http://127.0.0.1:18080".into(),
        listen: "127.0.0.1:18090".into(),
        admin: "127.0.0.1:18091".into(),
        lifetime: 4 * 3600,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => a.out = value()?.into(),
            "--tokens" => a.tokens = value()?.parse().map_err(|e| format!("--tokens: {e}"))?,
            "--jwks-url" => a.jwks_url = value()?,
            "--upstream" => a.upstream = value()?,
            "--listen" => a.listen = value()?,
            "--admin" => a.admin = value()?,
            "--lifetime" => {
                a.lifetime = value()?.parse().map_err(|e| format!("--lifetime: {e}"))?
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if a.out.as_os_str().is_empty() {
        return Err("--out DIR is required".into());
    }
    Ok(a)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    tokengate::install_crypto_providers();
    fs::create_dir_all(&args.out)?;
    let issuer = DevIssuer::generate();
    let iss = dev::v2_issuer(&issuer.tenant);

    let jwks = serde_json::json!({ "keys": [issuer.rsa.jwk("rsa-1", None)] });
    fs::write(args.out.join("jwks.json"), jwks.to_string())?;
    fs::write(args.out.join("public.pem"), issuer.rsa.public_pem())?;
    fs::write(
        args.out.join("claims.env"),
        format!("ISSUER='{iss}'\nAUDIENCE='{DEV_AUDIENCE}'\n"),
    )?;
    fs::write(
        args.out.join("proxy.toml"),
        format!(
            r#"# Written by `cargo run --example mint` for benches/compare.sh.
[listen]
address = "{listen}"
[admin]
address = "{admin}"
[upstream]
url = "{upstream}"
[auth]
jwks_uri = "{jwks_url}"
issuers = ["{iss}"]
audiences = ["{DEV_AUDIENCE}"]
algorithms = ["RS256"]
allowed_applications = ["33333333-3333-4333-8333-333333333333", "{DEV_CALLER_APP}"]
excluded_paths = ["/public"]
[[auth.rules]]
path = "/api"
methods = ["GET", "HEAD"]
roles = ["App.Read", "App.Write"]
[[auth.rules]]
path = "/api/orders"
roles = ["Orders.Read"]
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
"#,
            listen = args.listen,
            admin = args.admin,
            upstream = args.upstream,
            jwks_url = args.jwks_url,
        ),
    )?;

    let exp = tokengate::pipeline::unix_now() + args.lifetime;
    let claims = |n: usize| -> Value {
        let mut c = issuer.v2_claims(&["Orders.Read", "App.Read"]);
        c["exp"] = Value::from(exp);
        // Opaque claims every Entra access token carries; unique per token like the real `uti`.
        c["aio"] = Value::from(format!(
            "k2BgYJg{n:010}/xUVZ8cl1vIf9Gk+6e7Ujm6N4yBWf1lJcLHzJ3pRWuq3bnH0p4AA=E4YtZ9Sx2Q0AAAA"
        ));
        c["rh"] = Value::from("1.AXEAv4j5cvGGr0GRqy180BHbR-b7JM4t6U9KsZ8sxd0hNIFxAAA.");
        c["uti"] = Value::from(format!("bench{n:017}"));
        c["idtyp"] = Value::from("app");
        c["xms_idrel"] = Value::from("7 14");
        c["xms_ftd"] = Value::from("V4WmVG2nTtXQvSnVdMNpYpOGcF8WkE1vGJhY2tqJ9V0BdXNub3J0aC1kc21z");
        c
    };
    fs::write(
        args.out.join("token.txt"),
        issuer.rs256(&claims(usize::MAX)) + "\n",
    )?;

    // RSA signing is ~1 ms a token: spread it over every core.
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = args.tokens.div_ceil(threads.max(1)).max(1);
    let parts: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.tokens)
            .step_by(chunk)
            .map(|start| {
                let end = (start + chunk).min(args.tokens);
                let (issuer, claims) = (&issuer, &claims);
                s.spawn(move || {
                    (start..end)
                        .map(|n| issuer.rs256(&claims(n)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("minting thread"))
            .collect()
    });
    let mut out = BufWriter::new(fs::File::create(args.out.join("tokens.txt"))?);
    let mut len = 0;
    for token in parts.iter().flatten() {
        len = token.len();
        out.write_all(token.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!(
        "mint: {} tokens of ~{len} bytes in {:.1?} into {}",
        args.tokens,
        started.elapsed(),
        args.out.display()
    );
    Ok(())
}
