//! Path spellings: everything a common framework would route to a protected prefix meets that
//! prefix's rule; anonymous prefixes never let anything escape; the upstream gets the normalized
//! path.

use http::{Method, Request};
use http_body_util::Full;

use crate::support::{raw_request, Harness};

/// Spellings that ASP.NET Core, Express, Spring, Flask or nginx would route to /admin.
const ADMIN_SPELLINGS: &[&str] = &[
    "/admin",
    "/ADMIN",
    "/Admin/",
    "//admin",
    "/./admin",
    "/x/../admin",
    "/x/%2e%2e/admin",
    "/x/%2E%2E/admin",
    "/x/.%2e/admin",
    "/%61dmin",
    "/%41DMIN",
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/healthz/../admin",
    "/admin/./",
    "/admin//x",
    "/a/b/../../admin/users",
];

/// Spellings frameworks disagree on: refused with 400.
const AMBIGUOUS: &[&str] = &[
    "/admin;x=1",
    "/public/..;/admin",
    "/public;/../admin",
    "/public%2f..%2fadmin",
    "/public%2F..%2Fadmin",
    "/public\\..\\admin",
    "/public%5c..%5cadmin",
    "/admin%00",
    "/%c0%ae%c0%ae/admin",
    "/admin%zz",
];

#[tokio::test]
async fn every_spelling_of_a_protected_path_needs_the_role() {
    let h = Harness::start().await;
    let reader = h.token(&["App.Read"]);
    for path in ADMIN_SPELLINGS {
        let r = h.call(Method::POST, path, Some(&reader)).await;
        r.assert_refused(403, "missing_role");
        let anon = h.call(Method::POST, path, None).await;
        assert_eq!(anon.status, 401, "{path} without a token");
    }
    assert_eq!(h.upstream.count(), 0, "{:?}", h.upstream.seen());
}

#[tokio::test]
async fn ambiguous_spellings_are_bad_requests() {
    let h = Harness::start().await;
    let admin = h.token(&["App.Admin"]);
    for path in AMBIGUOUS {
        // Raw bytes on a socket: client libraries refuse to send some of these spellings.
        for auth in [String::new(), format!("Authorization: Bearer {admin}\r\n")] {
            let req = format!("POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\n\r\n");
            let resp = raw_request(h.proxy().public_addr, req.as_bytes()).await;
            assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        }
    }
    // Through a client too, where it can express the path: the precise reason is reported.
    for path in ["/admin;x=1", "/public%2F..%2Fadmin", "/admin%00"] {
        let req = Request::post(h.url(path)).body(Full::default()).unwrap();
        h.send(req).await.assert_refused(400, "invalid_path");
    }
    assert_eq!(h.upstream.count(), 0);
}

#[tokio::test]
async fn anonymous_prefixes_are_exact_and_never_shadow_rules() {
    let h = Harness::start().await;
    // Anonymous: forwarded without a token, with the normalized path.
    assert_eq!(h.get("/public/page", None).await.status, 200);
    assert_eq!(h.upstream.last().uri, "/public/page");
    assert_eq!(h.get("/public//a/./b/../c?x=%2F", None).await.status, 200);
    assert_eq!(h.upstream.last().uri, "/public/a/c?x=%2F");
    assert_eq!(h.get("/healthz", None).await.status, 200);
    // Case and segment boundaries do not widen anonymity.
    assert_eq!(h.get("/PUBLIC/page", None).await.status, 401);
    assert_eq!(h.get("/publicity", None).await.status, 401);
    // A rule under an anonymous prefix still applies, in any spelling.
    for path in [
        "/public/secret",
        "/public/SECRET/x",
        "/public/x/../secret",
        "/public/%73ecret",
    ] {
        assert_eq!(h.get(path, None).await.status, 401, "{path}");
        let reader = h.token(&["App.Read"]);
        h.get(path, Some(&reader))
            .await
            .assert_refused(403, "missing_role");
    }
    assert_eq!(h.upstream.count(), 3);
}

#[tokio::test]
async fn the_upstream_receives_the_normalized_path_and_raw_query() {
    let h = Harness::start().await;
    let t = h.token(&[]);
    let cases = [
        (
            "/api//v1/./items/../orders?id=1&x=%2F",
            "/api/v1/orders?id=1&x=%2F",
        ),
        ("/%61pi/caf%c3%a9", "/api/caf%C3%A9"),
        ("/api/a%20b/", "/api/a%20b/"),
        ("/../../api", "/api"),
    ];
    for (sent, want) in cases {
        assert_eq!(h.get(sent, Some(&t)).await.status, 200, "{sent}");
        assert_eq!(h.upstream.last().uri, want, "{sent}");
    }
}
