//! Callee agreement (issue 9), one test per class, through the real binary: a request reaches the
//! upstream only if every mainstream framework would route it to a handler whose rule tokengate
//! evaluated, and the only identity the upstream can read is the one tokengate set.
//!
//! Each test starts `tokengate` as a process against a real IdP and a recording upstream on
//! loopback, sends what an attacker would, and checks both the answer and what the upstream saw.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::json;

use crate::process::{write_config, Process, TempFile};
use crate::support::{client, config_text, raw_request, Harness, Reply, SigningKey};

/// Rules the classes need, on top of the default test policy (`/admin` POST/DELETE, anonymous
/// `/public`, `/public/secret`).
const RULES: &str = r#"
[[auth.rules]]
path = "/public/admin"
methods = ["POST", "DELETE", "PURGE"]
roles = ["App.Admin"]
[[auth.rules]]
path = "/reports"
methods = ["GET"]
roles = ["App.Reports"]
[[auth.rules]]
path = "/odata/$batch"
roles = ["App.Admin"]
[[auth.rules]]
path = "/items:search@v1"
roles = ["App.Admin"]
[[auth.rules]]
path = "/orders"
methods = ["DELETE"]
roles = ["App.Admin"]
[[auth.rules]]
path = "/public/orders"
methods = ["PATCH"]
roles = ["App.Admin"]
"#;

/// The binary, started on a config file, killed on drop.
struct Gate {
    process: Process,
    _config: TempFile,
}

impl Gate {
    /// The parts in `h` behind a `tokengate` process; `edit` adjusts the config text.
    async fn start(h: &Harness, edit: impl Fn(String) -> String) -> Gate {
        let config = write_config(&edit(config_text(&h.idp, &h.upstream, RULES, "")));
        let process = Process::start(&config, &[]);
        process.wait_ready().await;
        Gate {
            process,
            _config: config,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.process.public)
    }

    /// `method` (sent exactly as spelled) on `path`, with a token and extra headers.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.send(method, path, token, headers, "").await
    }

    /// Like [`Gate::call`], with a request body.
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> Reply {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(self.url(path));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req: Request<Full<Bytes>> = b
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        Reply::read(client().request(req).await.expect("proxy answers")).await
    }
}

/// Class 1: a method spelling frameworks fold (Flask, Django, Express, ASP.NET Core) but Go does
/// not. Before: `post /public/admin` skipped the POST rule and, under the anonymous prefix,
/// needed no token at all.
#[tokio::test]
async fn method_spellings_with_two_readings_are_refused() {
    let h = Harness::unstarted().await;
    let g = Gate::start(&h, |t| t).await;
    let nobody = h.token(&[]);
    for method in ["post", "Post", "dELETE", "purge", "Purge", "get"] {
        for (path, token) in [("/public/admin", None), ("/admin", Some(nobody.as_str()))] {
            g.call(method, path, token, &[])
                .await
                .assert_refused(400, "invalid_method");
        }
    }
    assert_eq!(h.upstream.count(), 0, "{:?}", h.upstream.seen());
    // The upper-case spellings meet the rule, including an extension method.
    for method in ["POST", "PURGE"] {
        g.call(method, "/public/admin", None, &[])
            .await
            .assert_refused(401, "missing_token");
        g.call(method, "/public/admin", Some(&nobody), &[])
            .await
            .assert_refused(403, "missing_role");
    }
    g.call("DELETE", "/admin", Some(&nobody), &[])
        .await
        .assert_refused(403, "missing_role");
    let admin = h.token(&["App.Admin"]);
    assert_eq!(
        g.call("PURGE", "/public/admin", Some(&admin), &[])
            .await
            .status,
        200
    );
    assert_eq!(h.upstream.last().method.as_str(), "PURGE");
}

/// Class 2: frameworks run the GET handler for HEAD, so a GET rule must cover HEAD.
#[tokio::test]
async fn head_is_held_to_the_get_rule() {
    let h = Harness::unstarted().await;
    let g = Gate::start(&h, |t| t).await;
    let nobody = h.token(&[]);
    // HEAD answers carry no body; the reason is in the challenge.
    let r = g.call("HEAD", "/reports/q1", Some(&nobody), &[]).await;
    assert_eq!(r.status, 403);
    assert!(r.challenge().contains("missing_role"), "{}", r.challenge());
    assert_eq!(h.upstream.count(), 0);
    let reader = h.token(&["App.Reports"]);
    assert_eq!(
        g.call("HEAD", "/reports/q1", Some(&reader), &[])
            .await
            .status,
        200
    );
    assert_eq!(h.upstream.last().method, Method::HEAD);
    // Other methods are outside a GET-only rule, as before.
    assert_eq!(
        g.call("POST", "/reports/q1", Some(&nobody), &[])
            .await
            .status,
        200
    );
}

/// Class 3: method-override headers (and `_method` parameters) would let a POST run the DELETE
/// handler behind a rule that only evaluated POST.
#[tokio::test]
async fn method_override_headers_never_reach_the_upstream() {
    let h = Harness::unstarted().await;
    let g = Gate::start(&h, |t| t).await;
    let overrides = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X_HTTP_METHOD_OVERRIDE", "DELETE"),
        ("x_http_method", "DELETE"),
    ];
    let t = h.token(&[]);
    assert_eq!(
        g.call("POST", "/api/items/1", Some(&t), &overrides)
            .await
            .status,
        200
    );
    assert_eq!(
        g.call("POST", "/public/items/1", None, &overrides)
            .await
            .status,
        200
    );
    for seen in h.upstream.seen() {
        for (name, _) in seen.headers.iter() {
            assert!(
                !name.as_str().contains("method"),
                "{name} reached the upstream"
            );
        }
    }
    // The same class as a query parameter (Laravel, Symfony, Express's method-override).
    let before = h.upstream.count();
    for path in [
        "/admin/items/1?_method=DELETE",
        "/public/admin?a=1&_METHOD=DELETE",
        "/api?%5Fmethod=DELETE",
    ] {
        g.call("POST", path, Some(&t), &[])
            .await
            .assert_refused(400, "method_override");
    }
    assert_eq!(h.upstream.count(), before);
}

/// Class 3, body spelling: Rails, Laravel, Symfony and Express's `method-override` run the
/// handler a `_method` body field names. The body is streamed, never read, so a POST that may
/// carry a form or JSON body is held to the PUT, PATCH and DELETE rules of its path too.
#[tokio::test]
async fn a_post_body_may_name_another_method() {
    let h = Harness::unstarted().await;
    let g = Gate::start(&h, |t| t).await;
    let nobody = h.token(&[]);
    let form = "_method=DELETE";
    let parsed = [
        vec![("content-type", "application/x-www-form-urlencoded")],
        vec![(
            "content-type",
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        )],
        vec![("content-type", "multipart/form-data; boundary=x")],
        vec![("content-type", "application/json")],
        vec![("content-type", "application/merge-patch+json")],
        vec![],
    ];
    for headers in &parsed {
        g.send("POST", "/orders", Some(&nobody), headers, form)
            .await
            .assert_refused(403, "missing_role");
        // Under an anonymous prefix, a rule on another method makes the POST need a token.
        g.send("POST", "/public/orders", None, headers, form)
            .await
            .assert_refused(401, "missing_token");
    }
    assert_eq!(h.upstream.count(), 0, "{:?}", h.upstream.seen());
    // Bodies no framework reads `_method` from, and an empty body, are plain POSTs.
    let plain = [("content-type", "text/plain")];
    assert_eq!(
        g.send("POST", "/orders", Some(&nobody), &plain, form)
            .await
            .status,
        200
    );
    assert_eq!(
        g.send("POST", "/public/orders", None, &plain, form)
            .await
            .status,
        200
    );
    assert_eq!(
        g.call("POST", "/orders", Some(&nobody), &parsed[0])
            .await
            .status,
        200
    );
    // A caller holding every role the path's rules ask for passes with any body.
    let admin = h.token(&["App.Admin"]);
    assert_eq!(
        g.send("POST", "/orders", Some(&admin), &parsed[0], form)
            .await
            .status,
        200
    );
    assert_eq!(h.upstream.last().method, Method::POST);
    // For callees that honour no body override, the operator can say so.
    drop(g);
    let g = Gate::start(&h, |t| {
        t.replace("[auth]\n", "[auth]\nbody_method_override = false\n")
    })
    .await;
    assert_eq!(
        g.send("POST", "/orders", Some(&nobody), &parsed[0], form)
            .await
            .status,
        200
    );
}

/// Class 4: escaped sub-delims, `:` and `@` are literal to every framework, so they are to us:
/// the path we authorize is the path they route.
#[tokio::test]
async fn escaped_reserved_characters_cannot_skip_a_rule() {
    let h = Harness::unstarted().await;
    let g = Gate::start(&h, |t| t).await;
    let nobody = h.token(&[]);
    for path in [
        "/odata/%24batch",
        "/odata/%24BATCH",
        "/odata/%2524batch/../%24batch",
        "/items%3Asearch%40v1",
        "/items:search%40v1/x",
    ] {
        g.call("POST", path, Some(&nobody), &[])
            .await
            .assert_refused(403, "missing_role");
    }
    // Double encoding stays what it is: `%2524batch` is a different resource to every framework.
    assert_eq!(h.upstream.count(), 0);
    let admin = h.token(&["App.Admin"]);
    assert_eq!(
        g.call("POST", "/odata/%24batch", Some(&admin), &[])
            .await
            .status,
        200
    );
    assert_eq!(h.upstream.last().uri, "/odata/$batch");
    assert_eq!(
        g.call("GET", "/public/a%7cb%28c%29", None, &[])
            .await
            .status,
        200
    );
    assert_eq!(h.upstream.last().uri, "/public/a%7Cb(c)");
}

/// Class 5: CGI/WSGI-style servers read `_` and `-` as one, so a header name with `_` may be read
/// as any protected header; every such name is dropped, like nginx's default.
#[tokio::test]
async fn header_names_with_underscores_never_reach_the_upstream() {
    let h = Harness::unstarted().await;
    let g = Gate::start(&h, |t| t).await;
    let forged = [
        ("X_MS_CLIENT_PRINCIPAL", "forged"),
        ("x_ms_client_principal_id", "forged"),
        ("X_MS-CLIENT-PRINCIPAL-ID", "forged"),
        ("X_MS_TOKEN_AAD_ACCESS_TOKEN", "forged"),
        ("X_Forwarded_For", "forged"),
        ("Custom_Header", "forged"),
    ];
    assert_eq!(g.call("GET", "/public/me", None, &forged).await.status, 200);
    let t = h.token(&[]);
    assert_eq!(
        g.call("GET", "/api/me", Some(&t), &forged).await.status,
        200
    );
    for seen in h.upstream.seen() {
        for (name, value) in seen.headers.iter() {
            assert!(!name.as_str().contains('_'), "{name} reached the upstream");
            assert_ne!(value, "forged", "{name} carried the client's value");
        }
    }
}

const FRONT_END: &[(&str, &str)] = &[
    ("Forwarded", "for=203.0.113.9;proto=https"),
    ("X-Real-IP", "203.0.113.9"),
    ("X-Client-IP", "203.0.113.9"),
    ("True-Client-IP", "203.0.113.9"),
    ("X-Original-URL", "/admin"),
    ("X-Rewrite-URL", "/admin"),
    ("X-Original-Host", "victim.example"),
    ("X-ARR-SSL", "2048|256|CN=forged"),
    ("DISGUISED-HOST", "victim.example"),
    ("X-WAWS-Unencoded-URL", "/admin"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Forwarded-Server", "victim.example"),
    ("X-ARR-ClientCert", "MIIforged"),
    ("X-Forwarded-Client-Cert", "Hash=forged"),
    ("Client-Cert", ":MIIforged:"),
];

/// Class 6: headers App Service's front end writes (and apps written for it trust) are the
/// client's word here unless `trust_forwarded_headers`; client-certificate headers never are.
#[tokio::test]
async fn front_end_headers_pass_only_from_a_trusted_front_end() {
    let h = Harness::unstarted().await;
    let g = Gate::start(&h, |t| t).await;
    assert_eq!(
        g.call("GET", "/public/x", None, FRONT_END).await.status,
        200
    );
    let seen = h.upstream.last();
    for (name, _) in FRONT_END {
        assert!(
            !seen.headers.contains_key(*name),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    drop(g);

    let trusting = Gate::start(&h, |t| {
        t.replace("[admin]", "trust_forwarded_headers = true\n[admin]")
    })
    .await;
    assert_eq!(
        trusting
            .call("GET", "/public/x", None, FRONT_END)
            .await
            .status,
        200
    );
    let seen = h.upstream.last();
    for (name, value) in FRONT_END {
        let cert = name.to_ascii_lowercase().contains("cert");
        assert_eq!(
            seen.headers.get(*name).is_some(),
            !cert,
            "{name}: a trusted front end's headers pass, client certificates never"
        );
        if !cert {
            assert_eq!(seen.headers[*name], *value);
        }
    }
}

/// Class 7: CONNECT is re-targeted by the client after we authorized its path; TRACE echoes
/// request headers. Both are refused on every path, anonymous ones included.
#[tokio::test]
async fn connect_and_trace_are_refused_everywhere() {
    let h = Harness::unstarted().await;
    let g = Gate::start(&h, |t| t).await;
    let t = h.token(&["App.Admin"]);
    for method in ["TRACE", "TRACK"] {
        for (path, token) in [("/public/x", None), ("/api", Some(t.as_str()))] {
            let r = g.call(method, path, token, &[]).await;
            r.assert_refused(405, "method_not_allowed");
            let allow = r.headers["allow"].to_str().unwrap();
            assert!(
                !allow.contains("TRACE") && !allow.contains("CONNECT"),
                "{allow}"
            );
        }
    }
    for target in ["127.0.0.1:9", "/public/x"] {
        let answer = raw_request(
            g.process.public,
            format!("CONNECT {target} HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{target}: {answer}");
        assert!(answer.contains("method_not_allowed"), "{answer}");
    }
    assert_eq!(h.upstream.count(), 0);
    assert_eq!(h.upstream.connections(), 0);
}

/// Class 8: a `kid` the JWKS names more than once names no key, however many copies there are.
#[tokio::test]
async fn a_kid_published_three_times_trusts_none_of_them() {
    let h = Harness::unstarted().await;
    let attacker = SigningKey::rsa();
    let mut jwks = h.issuer.jwks();
    let keys = jwks["keys"].as_array_mut().unwrap();
    for _ in 0..2 {
        keys.push(SigningKey::rsa().jwk("dup", None));
    }
    keys.push(attacker.jwk("dup", None));
    h.idp.set_jwks(jwks);
    let g = Gate::start(&h, |t| t).await;
    let forged = attacker.sign(
        "RS256",
        &json!({"alg": "RS256", "kid": "dup"}),
        &h.issuer.v2_claims(&["App.Admin"]),
    );
    g.call("GET", "/api", Some(&forged), &[])
        .await
        .assert_refused(401, "unknown_kid");
    assert_eq!(h.upstream.count(), 0);
    // The unambiguous key still works.
    assert_eq!(
        g.call("GET", "/api", Some(&h.token(&[])), &[]).await.status,
        200
    );
}

/// Class 9: a signed token that (almost) never expires is refused; Entra managed-identity tokens
/// (`exp - iat` = 86,700 s) are not.
#[tokio::test]
async fn tokens_living_beyond_max_token_lifetime_are_refused() {
    let h = Harness::unstarted().await;
    let g = Gate::start(&h, |t| t).await;
    let now = tokengate::pipeline::unix_now();
    let token = |iat: Option<f64>, exp: f64| {
        let mut c = h.issuer.v2_claims(&[]);
        c["exp"] = json!(exp);
        match iat {
            Some(iat) => c["iat"] = json!(iat),
            None => drop(c.as_object_mut().unwrap().remove("iat")),
        }
        h.issuer.rs256(&c)
    };
    let now_f = now as f64;
    for t in [
        token(Some(now_f), 2e206),
        token(None, 2e206),
        token(Some(now_f), now_f + 10.0 * 365.0 * 86_400.0),
        token(None, now_f + 30.0 * 3600.0),
        // An iat in the future does not stretch the bound.
        token(Some(now_f + 86_400.0 * 365.0), now_f + 86_400.0 * 366.0),
    ] {
        g.call("GET", "/api", Some(&t), &[])
            .await
            .assert_refused(401, "token_lifetime_too_long");
    }
    assert_eq!(h.upstream.count(), 0);
    let managed_identity = token(Some(now_f - 300.0), now_f - 300.0 + 86_700.0);
    assert_eq!(
        g.call("GET", "/api", Some(&managed_identity), &[])
            .await
            .status,
        200
    );

    // Configurable: a tighter bound refuses that same token.
    let tight = Gate::start(&h, |t| {
        t.replace(
            "excluded_paths",
            "max_token_lifetime = \"2h\"\nexcluded_paths",
        )
    })
    .await;
    tight
        .call("GET", "/api", Some(&managed_identity), &[])
        .await
        .assert_refused(401, "token_lifetime_too_long");
}

/// Class 10: the framing guard must end every section where hyper does, or a crafted section
/// desynchronizes it and it stops seeing smuggling shapes for the rest of the connection.
#[tokio::test]
async fn the_framing_guard_reads_sections_as_hyper_does() {
    let h = Harness::unstarted().await;
    let g = Gate::start(&h, |t| t).await;
    let smuggled = "POST /public/smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\
Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let cases = [
        // `\n\r\n` is trailer data to hyper, the end of the trailers to the old guard.
        "POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
0\r\nX-T: 1\n\r\nA: b\r\nContent-Length: 200\r\n\r\n"
            .to_string(),
        // 17 hex digits are 5 bytes to hyper; the old guard gave up on the connection.
        "POST /public/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
00000000000000005\r\nhello\r\n0\r\n\r\n"
            .to_string(),
        // One field, two lengths: the guard flags it rather than give up (hyper refuses it too).
        "POST /public/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello".to_string(),
    ];
    for first in cases {
        let answer = raw_request(g.process.public, format!("{first}{smuggled}").as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{first:?}: {answer}");
        let paths: Vec<String> = h.upstream.seen().into_iter().map(|s| s.uri).collect();
        assert!(
            !paths.iter().any(|p| p.contains("smuggled")),
            "{first:?}: the smuggled request reached the upstream: {paths:?}"
        );
    }
}
