//! Writes the committed fuzz fixtures: `keys/jwks.json` and every `corpus/<target>/` seed.
//!
//! Run once from `fuzz/` with `cargo run --example gen_seeds`. It makes fresh RSA-2048 and P-256
//! key pairs, publishes their public halves as `keys/jwks.json`, signs the Entra-shaped seed
//! tokens (valid at `tokengate_fuzz::NOW`) and throws the private halves away, so re-running it
//! replaces the keys and the token seeds together.

use std::fs;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, RsaEncoding};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use tokengate::dev::{
    v1_issuer, v2_issuer, SigningKey, DEV_AUDIENCE, DEV_CALLER_APP, DEV_CALLER_OID, DEV_TENANT,
};
use tokengate_fuzz::{ISSUED_AT, SIGNED_HEADER};

const RSA_KID: &str = "rsa-fuzz-1";
const EC_KID: &str = "ec-fuzz-1";

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rsa = SigningKey::rsa();
    let ec = SigningKey::ec();
    let jwks = json!({ "keys": [rsa.jwk(RSA_KID, None), ec.jwk(EC_KID, None)] });
    write(
        &root.join("keys/jwks.json"),
        serde_json::to_string_pretty(&jwks).unwrap() + "\n",
    );

    let validate = root.join("corpus/validate");
    for (name, token) in tokens(&rsa, &ec) {
        write(&validate.join(name), token);
    }
    let signed = root.join("corpus/validate_signed");
    for (name, bytes) in signed_seeds() {
        write(&signed.join(name), bytes);
    }
    let text_seeds: [(&str, Vec<String>); 3] = [
        (
            "normalize",
            normalize_seeds().into_iter().map(String::from).collect(),
        ),
        ("bearer", bearer_seeds()),
        ("config", config_seeds()),
    ];
    for (target, seeds) in text_seeds {
        let dir = root.join("corpus").join(target);
        for (i, seed) in seeds.into_iter().enumerate() {
            write(&dir.join(format!("seed-{i:02}")), seed);
        }
    }
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Signs exactly `header` and `payload` (no re-serialization), so seeds can carry escapes,
/// duplicates and trailing bytes behind a valid signature.
fn sign_raw(key: &SigningKey, alg: &str, header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let rng = SystemRandom::new();
    let sig = match key {
        SigningKey::Rsa(k) => {
            let enc: &'static dyn RsaEncoding = match alg {
                "RS384" => &signature::RSA_PKCS1_SHA384,
                "RS512" => &signature::RSA_PKCS1_SHA512,
                "PS256" => &signature::RSA_PSS_SHA256,
                _ => &signature::RSA_PKCS1_SHA256,
            };
            let mut sig = vec![0u8; k.public_modulus_len()];
            k.sign(enc, &rng, input.as_bytes(), &mut sig).unwrap();
            sig
        }
        SigningKey::Ec(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Entra's header shape: `x5t` equal to `kid`.
fn header(alg: &str, kid: &str) -> String {
    json!({ "typ": "JWT", "alg": alg, "x5t": kid, "kid": kid }).to_string()
}

fn times(claims: &mut Value) {
    claims["iat"] = json!(ISSUED_AT);
    claims["nbf"] = json!(ISSUED_AT);
    claims["exp"] = json!(ISSUED_AT + 3600);
}

/// A v1 app-only token (client credentials, e.g. a managed identity).
fn v1_app(roles: &[&str]) -> Value {
    let mut c = json!({
        "aud": DEV_AUDIENCE,
        "iss": v1_issuer(DEV_TENANT),
        "iat": 0, "nbf": 0, "exp": 0,
        "aio": "k2BgYJjvzrxb9lP1/Zt3a0Ld9fNfAQA=",
        "appid": DEV_CALLER_APP,
        "appidacr": "2",
        "idp": v1_issuer(DEV_TENANT),
        "oid": DEV_CALLER_OID,
        "rh": "1.AQsAEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0VniQEjQLAAA.",
        "roles": roles,
        "sub": DEV_CALLER_OID,
        "tid": DEV_TENANT,
        "uti": "Xp9yB5nGp0aQ2xjZr3EAAA",
        "ver": "1.0",
        "xms_ftd": "aW50ZXJuYWwtZnVsbC10b2tlbi1kYXRh",
        "xms_idrel": "7 22",
    });
    times(&mut c);
    c
}

/// A v2 app-only token.
fn v2_app(roles: &[&str]) -> Value {
    let mut c = json!({
        "aud": DEV_AUDIENCE,
        "iss": v2_issuer(DEV_TENANT),
        "iat": 0, "nbf": 0, "exp": 0,
        "aio": "k2BgYJjvzrxb9lP1/Zt3a0Ld9fNfAQA=",
        "azp": DEV_CALLER_APP,
        "azpacr": "2",
        "oid": DEV_CALLER_OID,
        "rh": "1.AQsAEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0VniQEjQLAAA.",
        "roles": roles,
        "sub": DEV_CALLER_OID,
        "tid": DEV_TENANT,
        "uti": "Xp9yB5nGp0aQ2xjZr3EAAA",
        "ver": "2.0",
        "xms_ftd": "aW50ZXJuYWwtZnVsbC10b2tlbi1kYXRh",
    });
    times(&mut c);
    c
}

/// A v1 delegated (user) token.
fn v1_user() -> Value {
    let mut c = json!({
        "aud": DEV_AUDIENCE,
        "iss": v1_issuer(DEV_TENANT),
        "iat": 0, "nbf": 0, "exp": 0,
        "acr": "1",
        "aio": "AVQAq/8YAAAAq9HfyT4XJ8ksd0g1vIqz3U3mQk1P2QxAcdmX6o2Ct7E=",
        "amr": ["pwd", "mfa"],
        "appid": DEV_CALLER_APP,
        "appidacr": "0",
        "family_name": "Lovelace",
        "given_name": "Ada",
        "ipaddr": "203.0.113.7",
        "name": "Ada Lovelace",
        "oid": DEV_CALLER_OID,
        "rh": "1.AQsAEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0VniQEjQLAAA.",
        "scp": "user_impersonation Files.Read",
        "sid": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "sub": "q3Fz0Gv9m2jU8y4lV3pN6a5rW1oX7cT0bK2eH9dS4fA",
        "tid": DEV_TENANT,
        "unique_name": "ada@contoso.example",
        "upn": "ada@contoso.example",
        "uti": "Xp9yB5nGp0aQ2xjZr3EAAA",
        "ver": "1.0",
        "wids": ["b79fbf4d-3ef9-4689-8143-76b194e85509"],
    });
    times(&mut c);
    c
}

/// A v2 delegated (user) token.
fn v2_user() -> Value {
    let mut c = json!({
        "aud": DEV_AUDIENCE,
        "iss": v2_issuer(DEV_TENANT),
        "iat": 0, "nbf": 0, "exp": 0,
        "aio": "AVQAq/8YAAAAq9HfyT4XJ8ksd0g1vIqz3U3mQk1P2QxAcdmX6o2Ct7E=",
        "azp": DEV_CALLER_APP,
        "azpacr": "0",
        "name": "Ada Lovelace",
        "oid": DEV_CALLER_OID,
        "preferred_username": "ada@contoso.example",
        "rh": "1.AQsAEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0VniQEjQLAAA.",
        "roles": ["App.Read"],
        "scp": "access_as_user",
        "sid": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "sub": "q3Fz0Gv9m2jU8y4lV3pN6a5rW1oX7cT0bK2eH9dS4fA",
        "tid": DEV_TENANT,
        "uti": "Xp9yB5nGp0aQ2xjZr3EAAA",
        "ver": "2.0",
    });
    times(&mut c);
    c
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// Seeds for `validate`: valid tokens of every shape, then tokens refused by each check in turn
/// (signed, so the check is actually reached), then malformed framings.
fn tokens(rsa: &SigningKey, ec: &SigningKey) -> Vec<(&'static str, String)> {
    let rs =
        |claims: &Value| sign_raw(rsa, "RS256", &header("RS256", RSA_KID), &claims.to_string());
    let es = |claims: &Value| sign_raw(ec, "ES256", &header("ES256", EC_KID), &claims.to_string());
    let admin = ["App.Admin"];
    let mut t = vec![
        ("v1-app-rs256", rs(&v1_app(&admin))),
        ("v2-app-rs256", rs(&v2_app(&["App.Read", "App.Admin"]))),
        ("v1-user-rs256", rs(&v1_user())),
        ("v2-user-rs256", rs(&v2_user())),
        ("v1-app-es256", es(&v1_app(&admin))),
        ("v2-app-es256", es(&v2_app(&[]))),
        (
            "aud-array",
            rs(&with(
                v2_app(&admin),
                "aud",
                json!(["api://other", DEV_AUDIENCE]),
            )),
        ),
        (
            "roles-string",
            rs(&with(v2_app(&[]), "roles", json!("App.Admin"))),
        ),
        (
            "appid-azp-agree",
            rs(&with(v1_app(&admin), "azp", json!(DEV_CALLER_APP))),
        ),
        (
            "ps256",
            sign_raw(
                rsa,
                "PS256",
                &header("PS256", RSA_KID),
                &v2_app(&admin).to_string(),
            ),
        ),
        (
            "rs384",
            sign_raw(
                rsa,
                "RS384",
                &header("RS384", RSA_KID),
                &v2_app(&admin).to_string(),
            ),
        ),
        (
            "expired",
            rs(&with(v2_app(&admin), "exp", json!(ISSUED_AT))),
        ),
        (
            "nbf-future",
            rs(&with(v2_app(&admin), "nbf", json!(ISSUED_AT + 3000))),
        ),
        ("no-exp", rs(&without(v2_app(&admin), "exp"))),
        (
            "exp-string",
            rs(&with(v2_app(&admin), "exp", json!("1767229200"))),
        ),
        (
            "exp-float",
            rs(&with(v2_app(&admin), "exp", json!(1.7672292e9))),
        ),
        ("nbf-null", rs(&with(v2_app(&admin), "nbf", Value::Null))),
        (
            "wrong-iss",
            rs(&with(
                v2_app(&admin),
                "iss",
                json!(v2_issuer("other-tenant")),
            )),
        ),
        (
            "iss-array",
            rs(&with(v2_app(&admin), "iss", json!([v2_issuer(DEV_TENANT)]))),
        ),
        (
            "wrong-aud",
            rs(&with(v2_app(&admin), "aud", json!("api://other"))),
        ),
        ("aud-number", rs(&with(v2_app(&admin), "aud", json!(1)))),
        (
            "appid-azp-differ",
            rs(&with(v1_app(&admin), "azp", json!("someone-else"))),
        ),
        (
            "roles-number",
            rs(&with(v2_app(&[]), "roles", json!(["App.Admin", 1]))),
        ),
        (
            "escaped-strings",
            sign_raw(
                rsa,
                "RS256",
                r#"{"typ":"JWT","alg":"RS\u0032\u00356","kid":"rsa-fuzz-\u0031"}"#,
                &v2_app(&admin)
                    .to_string()
                    .replace("https://", "https:\\/\\/")
                    .replace("App.Admin", "App.\\u0041dmin"),
            ),
        ),
        (
            "duplicate-iss",
            sign_raw(
                rsa,
                "RS256",
                &header("RS256", RSA_KID),
                &v2_app(&admin)
                    .to_string()
                    .replacen('{', r#"{"iss":"https://evil.example/","#, 1),
            ),
        ),
        (
            "trailing-json",
            sign_raw(
                rsa,
                "RS256",
                &header("RS256", RSA_KID),
                &(v2_app(&admin).to_string() + "{}"),
            ),
        ),
        (
            "payload-array",
            sign_raw(rsa, "RS256", &header("RS256", RSA_KID), "[1,2,3]"),
        ),
        (
            "crit",
            sign_raw(
                rsa,
                "RS256",
                r#"{"alg":"RS256","kid":"rsa-fuzz-1","crit":["exp"],"exp":1}"#,
                &v2_app(&admin).to_string(),
            ),
        ),
        (
            "es256-header-rsa-kid",
            sign_raw(
                ec,
                "ES256",
                &header("ES256", RSA_KID),
                &v2_app(&admin).to_string(),
            ),
        ),
        (
            "unknown-kid",
            sign_raw(
                rsa,
                "RS256",
                &header("RS256", "nope"),
                &v2_app(&admin).to_string(),
            ),
        ),
        (
            "no-kid",
            sign_raw(
                rsa,
                "RS256",
                r#"{"alg":"RS256","typ":"JWT"}"#,
                &v2_app(&admin).to_string(),
            ),
        ),
        (
            "jku-ignored",
            sign_raw(
                rsa,
                "RS256",
                r#"{"alg":"RS256","kid":"rsa-fuzz-1","jku":"https://evil.example/keys","jwk":{"kty":"oct","k":"AA"}}"#,
                &v2_app(&admin).to_string(),
            ),
        ),
    ];
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(v2_app(&admin).to_string())
    );
    t.push(("alg-none", unsigned));
    t.push((
        "hs256",
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"rsa-fuzz-1"}"#),
            URL_SAFE_NO_PAD.encode(v2_app(&admin).to_string())
        ),
    ));
    let valid = t[0].1.clone();
    let mut flipped = valid.clone().into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    t.push(("flipped-signature", String::from_utf8(flipped).unwrap()));
    t.push(("padded", format!("{valid}==")));
    t.push(("four-parts", format!("{valid}.AAAA")));
    t
}

/// Seeds for `validate_signed`: `header NUL payload`, or a payload alone under the default header.
fn signed_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let pair = |h: &str, p: &Value| [h.as_bytes(), b"\0", p.to_string().as_bytes()].concat();
    let default = String::from_utf8(SIGNED_HEADER.to_vec()).unwrap();
    vec![
        ("v1-app", v1_app(&["App.Admin"]).to_string().into_bytes()),
        ("v2-app", v2_app(&["App.Read"]).to_string().into_bytes()),
        ("v1-user", v1_user().to_string().into_bytes()),
        ("v2-user", pair(&default, &v2_user())),
        (
            "odd-values",
            with(
                with(
                    v2_user(),
                    "nested",
                    json!({"a": [1, {"b": null}], "c": true}),
                ),
                "big",
                json!(1e300),
            )
            .to_string()
            .into_bytes(),
        ),
        (
            "control-chars",
            with(v2_user(), "name", json!("Ada\r\nX-Injected: 1\u{0}"))
                .to_string()
                .into_bytes(),
        ),
        (
            "unicode",
            with(v1_user(), "name", json!("Zoë 🦀 \u{202e}"))
                .to_string()
                .into_bytes(),
        ),
        (
            "escapes",
            v1_app(&["App.Admin"])
                .to_string()
                .replace("App.Admin", "App.\\u0041dmin\\ud83e\\udd80")
                .into_bytes(),
        ),
        (
            "no-oid-no-name",
            without(without(v2_app(&[]), "oid"), "azp")
                .to_string()
                .into_bytes(),
        ),
        (
            "header-crit",
            pair(
                r#"{"alg":"ES256","kid":"ec-signed","crit":[]}"#,
                &v2_app(&[]),
            ),
        ),
        (
            "header-wrong-alg",
            pair(r#"{"alg":"RS256","kid":"ec-signed"}"#, &v2_app(&[])),
        ),
        ("payload-not-object", b"\"just a string\"".to_vec()),
    ]
}

fn normalize_seeds() -> Vec<&'static str> {
    vec![
        "/",
        "/admin",
        "/admin/users/42",
        "/.well-known/openid-configuration",
        "/a/../admin",
        "/x//..//admin/",
        "/../../admin",
        "/%61dmin",
        "/%2e%2E/admin",
        "/x/%2e%2e/admin",
        "/a%20b",
        "/a%3fb",
        "/%252e%252e/admin",
        "/caf%C3%A9",
        "/café/%2e%2e/admin",
        "/a%2fadmin",
        "/a%5cadmin",
        "/a\\admin",
        "/public/..;/admin",
        "/admin#x",
        "/admin%00",
        "/admin%",
        "/%u002e%u002e/admin",
        "/%c0%ae%c0%ae/admin",
        "/ADMIN/./x",
        "/public/%2E./Admin",
        "*",
        "admin",
    ]
}

fn bearer_seeds() -> Vec<String> {
    let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJhdWQiOiJ4In0.c2ln";
    vec![
        format!("Bearer {jwt}"),
        format!("bearer {jwt}"),
        format!("BEARER    {jwt}"),
        format!("Bearer {jwt}\nBearer {jwt}"),
        "Basic dXNlcjpwYXNz".into(),
        "Bearer".into(),
        "Bearer ".into(),
        format!("Bearer{jwt}"),
        format!("Bearer {jwt} extra"),
        format!("Bearer\t{jwt}"),
        "Bearer abc+/def==".into(),
        format!("Bearer {}", "a".repeat(1025)),
    ]
}

fn config_seeds() -> Vec<String> {
    let minimal = r#"[upstream]
url = "http://127.0.0.1:3000"
[auth]
jwks_uri = "http://127.0.0.1:1/keys"
issuers = ["https://sts.windows.net/t/"]
audiences = ["api://x"]
"#;
    let full = r#"[listen]
address = "0.0.0.0:8080"
[upstream]
url = "https://app.internal:8443"
timeout = "30s"
connect_timeout = "500ms"
pool_idle_timeout = "90s"
preserve_host = false
trust_forwarded_headers = true
[admin]
address = "127.0.0.1:9090"
[auth]
openid_configuration = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration"
issuers = ["https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0", "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"]
audiences = ["api://tokengate-demo", "11111111-1111-4111-8111-111111111111"]
algorithms = ["RS256", "ES256"]
allowed_applications = ["11111111-1111-4111-8111-111111111111"]
allowed_principals = ["22222222-2222-4222-8222-222222222222"]
excluded_paths = ["/public", "/healthz", "/.well-known/"]
clock_skew = "2m"
max_token_size = 16384
[[auth.rules]]
path = "/admin"
methods = ["POST", "delete"]
roles = ["App.Admin"]
[[auth.rules]]
path = "/x/../Reports/%61"
roles = ["App.Read", "App.Admin"]
[keys]
refresh_interval = "1h"
unknown_kid_cooldown = "10s"
unknown_kid_wait = "2s"
fetch_timeout = "5s"
max_backoff = "10s"
[cache]
max_entries = 10000
max_bytes = 33554432
[limits]
header_read_timeout = "10s"
shutdown_grace = "30s"
max_concurrent_streams = 100
max_header_bytes = 65536
max_connections = 10000
"#;
    vec![
        minimal.to_string(),
        full.to_string(),
        include_str!("../../proxy.toml").to_string(),
        format!(
            "{minimal}\0TOKENGATE_AUTH__AUDIENCES=[\"api://y\", \"y\"]\n\
             TOKENGATE_UPSTREAM__URL=http://127.0.0.1:4000\nTOKENGATE_LIMITS__MAX_CONNECTIONS=7"
        ),
        format!("{minimal}\0TOKENGATE_AUTH=1\nTOKENGATE_X__Y__Z=\"s\"\nTOKENGATE___=1"),
        format!("{minimal}bogus_key = 1\n"),
        minimal.replace("[auth]", "[auth]\nopenid_configuration = \"https://x/y\""),
        minimal.replace("audiences", "clock_skew = \"soon\"\naudiences"),
        minimal.replace("audiences", "algorithms = [\"HS256\", \"none\"]\naudiences"),
        format!("{minimal}[[auth.rules]]\npath = \"/a%2fb\"\nroles = [\"r\"]\n"),
        format!("{minimal}[[auth.rules]]\npath = \"/a\"\nmethods = [\"GE T\"]\nroles = []\n"),
        minimal.replace("127.0.0.1:3000", "127.0.0.1:3000/base?q=1"),
        format!("{minimal}[limits]\nmax_header_bytes = 1\nmax_connections = 0\n"),
        format!("{minimal}[keys]\nrefresh_interval = \"18446744073709551615h\"\n"),
    ]
}
