//! The request generator: variant `i` of seed `s` is a pure function of `(s, i)`, so a run is
//! replayed with `AGREEMENT_SEED` and one failure by its index, on every stack alike.
//!
//! A variant is a request template: raw bytes with `{HOST}` and `{TOKEN:<kind>}` placeholders,
//! filled in when sent (tokens are minted per run). Regression cases are stored in the same form.

/// The tokens a variant can carry. Each valid one has its own `oid`, so the identity an app
/// read can be traced to the token it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Valid, no roles.
    Plain,
    Read,
    Admin,
    Batch,
    Delete,
    Secret,
    /// Valid, every role.
    All,
    /// Valid, roles that differ from the needed ones only in case.
    WrongCase,
    /// All roles, signature broken.
    Forged,
    /// All roles, expired.
    Expired,
    /// All roles, validly signed, but `exp` in the year 2e206 (issue 9 class 9).
    Eternal,
}

impl TokenKind {
    pub const ALL: [TokenKind; 11] = [
        TokenKind::Plain,
        TokenKind::Read,
        TokenKind::Admin,
        TokenKind::Batch,
        TokenKind::Delete,
        TokenKind::Secret,
        TokenKind::All,
        TokenKind::WrongCase,
        TokenKind::Forged,
        TokenKind::Expired,
        TokenKind::Eternal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TokenKind::Plain => "plain",
            TokenKind::Read => "read",
            TokenKind::Admin => "admin",
            TokenKind::Batch => "batch",
            TokenKind::Delete => "delete",
            TokenKind::Secret => "secret",
            TokenKind::All => "all",
            TokenKind::WrongCase => "wrongcase",
            TokenKind::Forged => "forged",
            TokenKind::Expired => "expired",
            TokenKind::Eternal => "eternal",
        }
    }

    pub fn from_name(name: &str) -> Option<TokenKind> {
        TokenKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The roles of a token tokengate must accept; `None` for one it must refuse.
    pub fn roles(self) -> Option<&'static [&'static str]> {
        let roles: &'static [&'static str] = match self {
            TokenKind::Plain => &[],
            TokenKind::Read => &["App.Read"],
            TokenKind::Admin => &["App.Admin"],
            TokenKind::Batch => &["App.Batch"],
            TokenKind::Delete => &["App.Delete"],
            TokenKind::Secret => &["App.Secret"],
            TokenKind::All | TokenKind::Forged | TokenKind::Expired | TokenKind::Eternal => &ROLES,
            TokenKind::WrongCase => &[
                "app.admin",
                "APP.BATCH",
                "app.delete",
                "App.read",
                "app.Secret",
            ],
        };
        let refused = matches!(
            self,
            TokenKind::Forged | TokenKind::Expired | TokenKind::Eternal
        );
        Some(roles).filter(|_| !refused)
    }
}

/// Every role a rule asks for.
pub const ROLES: [&str; 5] = [
    "App.Admin",
    "App.Batch",
    "App.Delete",
    "App.Read",
    "App.Secret",
];

/// The value every forged identity or front-end header carries: whatever the app reads that
/// contains it came from the client, not from tokengate.
pub const FORGED: &str = "f0rg3d";

/// A small, fast, seedable generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn for_variant(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The paths the apps route with the methods their handlers take, and a few paths they do not
/// route. Most variants start from one of these so that most reach a handler.
const ROUTED: &[(&str, &[&str])] = &[
    ("/admin", &["GET", "POST", "DELETE", "PUT"]),
    ("/admin/users", &["GET", "POST", "DELETE", "PATCH"]),
    ("/odata/$batch", &["POST"]),
    ("/odata/People", &["GET", "HEAD"]),
    ("/items/7", &["DELETE", "GET"]),
    ("/reports", &["GET", "HEAD"]),
    ("/public/page", &["GET"]),
    ("/public/me", &["GET"]),
    ("/public/secret", &["POST"]),
    ("/me", &["GET", "HEAD"]),
    ("/.auth/me", &["GET"]),
    ("/", &["GET"]),
    ("/nothing", &["GET"]),
];

/// Ways to start under the anonymous prefix and climb out of it.
const CLIMBS: &[&str] = &[
    "/public/..",
    "/public/x/../..",
    "/public/%2e%2e",
    "/public/%2E.",
    "/public/./..",
    "/public//..",
    "/public/..;",
    "/public/%2e%2e%2f..",
    "/public/..%2f",
    "/public/..\\",
    "/public/.%2e",
    "/PUBLIC/..",
];

const SUFFIXES: &[&str] = &[
    "/",
    "/.",
    "/..",
    ".",
    "%20",
    "%00",
    "%0a",
    "?",
    "?x=1",
    "?_method=DELETE",
    "#frag",
    ";x=1",
    "%3B",
    "/%2e",
    "~",
    "%2F",
    "%2fx",
    "%5c",
    "..",
    "/x/..",
    "%09",
    "%ff",
    "%c0%ae",
    " ",
    "*",
];

/// Letters whose Unicode case mapping lands on ASCII (`ı`→`I`, `ſ`→`S`, `K` Kelvin→`k`),
/// full-width look-alikes, and other non-ASCII.
const UNICODE: &[(char, &str)] = &[
    ('i', "ı"),
    ('s', "ſ"),
    ('k', "\u{212A}"),
    ('a', "ａ"),
    ('e', "é"),
    ('m', "ｍ"),
    ('/', "／"),
    ('.', "。"),
];

const METHODS: &[&str] = &[
    "GET", "GET", "GET", "GET", "HEAD", "HEAD", "POST", "POST", "POST", "DELETE", "DELETE", "PUT",
    "PATCH", "OPTIONS", "TRACE", "FOO", "CONNECT",
];

const IDENTITY_HEADERS: &[&str] = &[
    "X-MS-CLIENT-PRINCIPAL",
    "X-MS-CLIENT-PRINCIPAL-ID",
    "X-MS-CLIENT-PRINCIPAL-NAME",
    "X-MS-CLIENT-PRINCIPAL-IDP",
    "X-MS-TOKEN-AAD-ACCESS-TOKEN",
    "X-MS-TOKEN-AAD-ID-TOKEN",
];

const FRONT_END_HEADERS: &[&str] = &[
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "X-Real-IP",
    "X-Client-IP",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-ARR-ClientCert",
    "X-ARR-SSL",
    "DISGUISED-HOST",
    "X-WAWS-Unencoded-URL",
    "X-Original-Host",
];

/// `_method` in the query, as method-override (Express), Rack and Laravel read it.
const OVERRIDE_QUERIES: &[&str] = &[
    "?_method=DELETE",
    "?_method=delete",
    "?a=1&_method=DELETE",
    "?%5Fmethod=DELETE",
    "?%5f%6Dethod=PUT",
    "?_METHOD=DELETE",
    "?_method=DELETE&_method=GET",
    "?_method[]=DELETE",
    "?x=1;_method=DELETE",
    "?_method=POST",
    "?_method",
    "?+_method=DELETE",
    "?_method%3DDELETE",
    "?_method=%44ELETE",
];

const OVERRIDE_HEADERS: &[&str] = &[
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
];
const OVERRIDE_VALUES: &[&str] = &["DELETE", "PUT", "POST", "GET", "PATCH", "delete", "HEAD"];

/// Bodies naming another method, with the content types frameworks parse them from (and two
/// they do not).
const BODY_OVERRIDES: &[(&str, &str)] = &[
    ("application/x-www-form-urlencoded", "_method=DELETE"),
    (
        "application/x-www-form-urlencoded; charset=utf-8",
        "a=1&_method=delete",
    ),
    ("application/x-www-form-urlencoded", "_method=PUT"),
    ("application/json", "{\"_method\":\"DELETE\"}"),
    ("application/merge-patch+json", "{\"_method\":\"PATCH\"}"),
    ("", "_method=DELETE"),
    ("text/plain", "_method=DELETE"),
];

/// Variant `index` of `seed`.
pub fn variant(seed: u64, index: u64) -> Vec<u8> {
    let mut r = Rng::for_variant(seed, index);
    let (base, methods) = *r.pick(ROUTED);
    let method = if r.chance(60) {
        *r.pick(methods)
    } else {
        *r.pick(METHODS)
    };
    let method = spell_method(&mut r, method);
    let target = target(&mut r, &method, base);
    let version = if r.chance(3) { "HTTP/1.0" } else { "HTTP/1.1" };
    let mut req = format!("{method} {target} {version}\r\n").into_bytes();

    let mut headers: Vec<String> = Vec::new();
    if !r.chance(2) {
        headers.push(format!("{}: {{HOST}}", spell_name(&mut r, "Host", false)));
    }
    if !r.chance(12) {
        let kinds = if r.chance(4) { 2 } else { 1 };
        for _ in 0..kinds {
            let kind = r.pick(&TokenKind::ALL).name();
            let name = spell_name(&mut r, "Authorization", false);
            let scheme = *r.pick(&["Bearer", "Bearer", "Bearer", "bearer", "BEARER"]);
            headers.push(format!("{name}: {scheme} {{TOKEN:{kind}}}"));
        }
    }
    if r.chance(50) {
        for n in 0..=r.below(3) {
            let base = *r.pick(IDENTITY_HEADERS);
            let name = spell_name(&mut r, base, true);
            headers.push(format!("{name}: {FORGED}-{n}"));
        }
    }
    if r.chance(30) {
        for _ in 0..=r.below(2) {
            let base = *r.pick(FRONT_END_HEADERS);
            let name = spell_name(&mut r, base, true);
            let value = match base {
                "X-Original-URL" | "X-Rewrite-URL" | "X-WAWS-Unencoded-URL" => {
                    format!("/admin?{FORGED}")
                }
                _ => format!("{FORGED}.example"),
            };
            headers.push(format!("{name}: {value}"));
        }
    }
    if r.chance(15) {
        let base = *r.pick(OVERRIDE_HEADERS);
        let name = spell_name(&mut r, base, true);
        let value = *r.pick(OVERRIDE_VALUES);
        headers.push(format!("{name}: {value}"));
    }
    if r.chance(3) {
        // Hop-by-hop abuse: a Connection header naming the identity headers tokengate sets.
        let base = *r.pick(IDENTITY_HEADERS);
        headers.push(format!(
            "Connection: keep-alive, {}",
            spell_name(&mut r, base, false)
        ));
    }
    if r.chance(2) {
        // The upgrade path (WebSocket) is authorized like any other request.
        headers.push("Connection: Upgrade".into());
        headers.push("Upgrade: websocket".into());
        headers.push("Sec-WebSocket-Version: 13".into());
        headers.push("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into());
    }
    let mut body: &[u8] = b"";
    if !method.eq_ignore_ascii_case("GET") && !method.eq_ignore_ascii_case("HEAD") || r.chance(10) {
        if r.chance(20) {
            // `_method` in the body (Rails, Laravel, Express's method-override with a body
            // parser): tokengate never reads bodies, so it must authorize every method the body
            // could name.
            let (content_type, content) = *r.pick(BODY_OVERRIDES);
            if !content_type.is_empty() {
                headers.push(format!("Content-Type: {content_type}"));
            }
            headers.push(format!("Content-Length: {}", content.len()));
            body = content.as_bytes();
        } else if r.chance(10) {
            let name = spell_name(&mut r, "Transfer-Encoding", false);
            headers.push(format!("{name}: chunked"));
            body = b"0\r\n\r\n";
        } else {
            headers.push("Content-Length: 0".into());
        }
    }
    // Shuffle so that order effects (first vs last duplicate) are covered too.
    for i in (1..headers.len()).rev() {
        headers.swap(i, r.below(i + 1));
    }
    for h in headers {
        req.extend_from_slice(h.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    req
}

fn spell_method(r: &mut Rng, m: &str) -> String {
    match r.below(20) {
        0 => m.to_ascii_lowercase(),
        1 => random_case(r, m),
        _ => m.to_string(),
    }
}

fn target(r: &mut Rng, method: &str, base: &str) -> String {
    let connect = method.eq_ignore_ascii_case("CONNECT");
    match r.below(100) {
        _ if connect && r.chance(70) => {
            (*r.pick(&["{HOST}", "127.0.0.1:1", "admin:443", "{HOST}/admin"])).to_string()
        }
        0..=1 => "*".into(),
        2..=8 => format!("http://{{HOST}}{}", path(r, base)),
        // Another authority than ours. Not marked as forged: like a `Host` header it is the
        // client's to choose, and `X-Forwarded-Host` rightly reports it.
        9..=10 => format!("http://elsewhere.example{}", path(r, base)),
        _ => path(r, base),
    }
}

fn path(r: &mut Rng, base: &str) -> String {
    let mut p = if r.chance(20) {
        format!("{}{}", r.pick(CLIMBS), base)
    } else {
        base.to_string()
    };
    if r.chance(20) {
        p = p.replacen('/', "//", 1 + r.below(2));
    }
    if r.chance(15) {
        let q = *r.pick(&[20, 50, 100]);
        p = p
            .chars()
            .map(|c| {
                if c.is_ascii_alphabetic() && r.chance(q) {
                    flip(c)
                } else {
                    c
                }
            })
            .collect();
    }
    if r.chance(5) {
        let (from, to) = *r.pick(UNICODE);
        if let Some(i) = p.rfind(from) {
            p.replace_range(i..i + from.len_utf8(), to);
        }
    }
    if r.chance(30) {
        let q = *r.pick(&[10, 30, 100]);
        let upper = r.chance(50);
        let mut out = String::new();
        for b in p.bytes() {
            // The leading slash stays: without it the target is not origin-form at all.
            // Separators rarely: an encoded `/` is refused outright, which teaches little.
            let q = if b == b'/' { q / 20 } else { q };
            if out.is_empty() || !r.chance(q) {
                push_byte(&mut out, b);
            } else if upper {
                out.push_str(&format!("%{b:02X}"));
            } else {
                out.push_str(&format!("%{b:02x}"));
            }
        }
        p = out;
    }
    if r.chance(15) {
        let suffix = *r.pick(SUFFIXES);
        p.push_str(suffix);
    }
    if r.chance(5) {
        let query = *r.pick(OVERRIDE_QUERIES);
        p.push_str(query);
    }
    p
}

/// Appends a byte of a UTF-8 string being rebuilt byte by byte.
fn push_byte(out: &mut String, b: u8) {
    // Safe to treat as Latin-1 only for ASCII; multi-byte UTF-8 is re-escaped instead, which
    // is one more spelling the normalizer must handle.
    if b.is_ascii() {
        out.push(b as char);
    } else {
        out.push_str(&format!("%{b:02X}"));
    }
}

fn flip(c: char) -> char {
    if c.is_ascii_uppercase() {
        c.to_ascii_lowercase()
    } else {
        c.to_ascii_uppercase()
    }
}

fn random_case(r: &mut Rng, s: &str) -> String {
    s.chars()
        .map(|c| if r.chance(50) { flip(c) } else { c })
        .collect()
}

/// A header name in one of the spellings servers may fold together: case, and (for the names
/// a CGI-style server maps to one variable) `_` for any `-`.
fn spell_name(r: &mut Rng, name: &str, underscores: bool) -> String {
    let mut s = match r.below(4) {
        0 => name.to_ascii_lowercase(),
        1 => name.to_ascii_uppercase(),
        2 => random_case(r, name),
        _ => name.to_string(),
    };
    if r.below(300) == 0 {
        // Whitespace before the colon: RFC 9112 says reject; some servers trim it instead.
        s.push(' ');
    }
    if underscores && r.chance(35) {
        let all = r.chance(50);
        s = s
            .chars()
            .map(|c| {
                if c == '-' && (all || r.chance(50)) {
                    '_'
                } else {
                    c
                }
            })
            .collect();
    }
    s
}

/// Fills a template's placeholders.
pub fn fill(template: &[u8], host: &str, token: impl Fn(TokenKind) -> String) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len() + 2048);
    let mut rest = template;
    while let Some(i) = rest.iter().position(|&b| b == b'{') {
        out.extend_from_slice(&rest[..i]);
        rest = &rest[i..];
        if let Some(tail) = rest.strip_prefix(b"{HOST}") {
            out.extend_from_slice(host.as_bytes());
            rest = tail;
            continue;
        }
        if let Some(tail) = rest.strip_prefix(b"{TOKEN:") {
            if let Some(end) = tail.iter().position(|&b| b == b'}') {
                if let Some(kind) = std::str::from_utf8(&tail[..end])
                    .ok()
                    .and_then(TokenKind::from_name)
                {
                    out.extend_from_slice(token(kind).as_bytes());
                    rest = &tail[end + 1..];
                    continue;
                }
            }
        }
        out.push(b'{');
        rest = &rest[1..];
    }
    out.extend_from_slice(rest);
    out
}

/// The token kinds a template sends.
pub fn tokens_in(template: &[u8]) -> Vec<TokenKind> {
    let text = String::from_utf8_lossy(template);
    text.split("{TOKEN:")
        .skip(1)
        .filter_map(|s| s.split('}').next())
        .filter_map(TokenKind::from_name)
        .collect()
}

/// One line of the regression file: printable ASCII, with `\r`, `\n`, `\\` and `\xNN` escapes.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// The inverse of [`escape`].
pub fn unescape(line: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = line.get(i + 2..i + 4).ok_or("short \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                i += 2;
            }
            _ => return Err(format!("bad escape at {i}")),
        }
        i += 2;
    }
    Ok(out)
}
