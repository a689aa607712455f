//! Property tests for the three invariants a request's fate rests on:
//! 1. normalization is idempotent: a normalized path normalizes to itself, so what we authorize
//!    and what the upstream re-reads are one spelling;
//! 2. no path bypasses a rule: hostile spellings of a protected prefix (percent-encoding of any
//!    byte, dot segments, repeated slashes, case, `;`, backslashes, `%2f`, raw UTF-8, mixes) are
//!    either refused by `normalize` or normalize to a path the rule covers, judged by an
//!    independent reference decoder; and whatever a rule covers is refused to a caller without
//!    the role, even under an anonymous prefix;
//! 3. no tampered token is accepted: a valid RS256 or ES256 token with any header, payload or
//!    signature byte changed (or a segment spliced from another valid token) never validates
//!    unless it is byte-identical to a valid token;
//! 4. the one-pass EasyAuth writer renders every payload exactly as the `serde_json::Value`-based
//!    implementation it replaced (kept in `properties/principal_reference.rs`): the
//!    `X-MS-CLIENT-PRINCIPAL*` headers, `/.auth/me`, and which payloads are refused, over nested
//!    arrays and objects, every kind of number, Unicode, escapes and duplicate keys.
//!
//! Cases are bounded (see each `ProptestConfig`) so the file runs in seconds in debug. Failures
//! are not persisted to disk: proptest prints the shrunk input, which belongs in a named unit test
//! next to the code it breaks (as `normalize::tests::raw_utf8_is_escaped_like_its_encoded_spelling`).

use std::sync::LazyLock;

#[path = "properties/principal_reference.rs"]
mod principal_reference;

use http::Method;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config as ProptestConfig;

use tokengate::authorize::{access, authorize, Access};
use tokengate::config::{AuthConfig, Config};
use tokengate::dev::{v1_issuer, v2_issuer, DevIssuer, DEV_AUDIENCE};
use tokengate::normalize::{normalize, Case, Prefix};
use tokengate::principal::{self, IdentityHeaders, Principal};
use tokengate::reject::Rejection;
use tokengate::validate::cache::Identity;
use tokengate::validate::{validate, Algorithm, KeySet, ValidationPolicy};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- 1. Idempotence ----

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn normalize_is_idempotent(path in any_path()) {
        if let Ok(once) = normalize(&path) {
            let twice = normalize(&once);
            prop_assert_eq!(twice.as_deref(), Ok(&*once), "input {:?}", path);
        }
    }
}

/// Hostile spellings around the protected prefixes, plus unstructured ASCII and Unicode.
fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => hostile_path(&["admin"]),
        2 => hostile_path(&["public", "secret"]),
        1 => "/[ -~]{0,24}",
        1 => "/\\PC{0,16}",
        1 => proptest::collection::vec(escape(), 0..8).prop_map(|v| format!("/{}", v.concat())),
    ]
}

// ---- 2. No bypass ----

/// Two rules, one of them under an anonymous prefix, so both "rule applies" and "anonymous never
/// shadows a rule" are exercised.
const POLICY: &str = r#"
[upstream]
url = "http://127.0.0.1:1"
[auth]
jwks_uri = "http://127.0.0.1:1/keys"
issuers = ["i"]
audiences = ["a"]
excluded_paths = ["/public", "/healthz"]
[[auth.rules]]
path = "/admin"
roles = ["App.Admin"]
[[auth.rules]]
path = "/public/secret"
roles = ["App.Secret"]
[[auth.rules]]
path = "/odata/$batch"
roles = ["App.Admin"]
[[auth.rules]]
path = "/sub/!$&'()*+,=:@"
roles = ["App.Admin"]
"#;

static AUTH: LazyLock<AuthConfig> =
    LazyLock::new(|| Config::from_toml(POLICY).expect("test policy").policy.auth);

/// A caller holding audience `a` and the given roles.
fn caller(roles: &[&str]) -> Identity {
    Identity::new(Some("app"), Some("oid"), None, &["a"], roles)
}

static READER: LazyLock<Identity> = LazyLock::new(|| caller(&["App.Read"]));
static EVERYONE: LazyLock<Identity> = LazyLock::new(|| caller(&["App.Admin", "App.Secret"]));

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn no_spelling_of_a_protected_path_escapes_its_rule(
        (protected, path) in prop_oneof![
            hostile_path(&["admin"]).prop_map(|p| ("/admin", p)),
            hostile_path(&["public", "secret"]).prop_map(|p| ("/public/secret", p)),
            // Issue 9: escaped sub-delims, `:` and `@` are literal to every framework.
            hostile_path(&["odata", "$batch"]).prop_map(|p| ("/odata/$batch", p)),
            hostile_path(&["sub", "!$&'()*+,=:@"]).prop_map(|p| ("/sub/!$&'()*+,=:@", p)),
        ],
        method in select(vec![Method::GET, Method::POST, Method::DELETE, Method::OPTIONS]),
    ) {
        let rule = Prefix::parse(protected).expect("prefix");
        let reaches = framework_views(&path).iter().any(|v| under(v, protected));
        let Ok(normalized) = normalize(&path) else {
            // 400 invalid_path: nothing reaches the upstream.
            return Ok(());
        };
        let covered = rule.covers(&normalized, Case::Insensitive);
        prop_assert!(
            covered || !reaches,
            "{:?} reads as {} to a framework but normalizes to {:?}, outside the rule",
            path, protected, normalized
        );
        if covered {
            prop_assert_eq!(
                authorize(&AUTH, &READER, &normalized, &method),
                Err(Rejection::MissingRole),
                "{:?} -> {:?}", path, normalized
            );
            prop_assert_eq!(access(&AUTH, &normalized, &method), Access::Authenticated);
            // The refusal is the rule's doing, not a blanket one.
            prop_assert_eq!(authorize(&AUTH, &EVERYONE, &normalized, &method), Ok(()));
        }
    }
}

/// `/` + segments + tail, where the target segments are spelled with random case and escapes,
/// and every separator and filler segment is drawn from what parsers disagree on.
fn hostile_path(target: &'static [&'static str]) -> impl Strategy<Value = String> {
    let part = || prop_oneof![3 => filler(), 2 => dot_segment()];
    let target = target
        .iter()
        .map(|seg| spell(seg).boxed())
        .collect::<Vec<_>>();
    (
        proptest::collection::vec((separator(), part()), 0..4),
        proptest::collection::vec(separator(), 2),
        target,
        proptest::collection::vec((separator(), part()), 0..4),
        prop_oneof![
            4 => Just(""),
            4 => Just("/"),
            1 => Just("//"),
            2 => Just("/."),
            2 => Just("/.."),
            1 => Just("%2f"),
        ],
    )
        .prop_map(|(before, seps, target, after, tail)| {
            let mut p = String::new();
            for (sep, seg) in before {
                p.push_str(&sep);
                p.push_str(&seg);
            }
            for (i, seg) in target.iter().enumerate() {
                p.push_str(&seps[i.min(1)]);
                p.push_str(seg);
            }
            for (sep, seg) in after {
                p.push_str(&sep);
                p.push_str(&seg);
            }
            p.push_str(tail);
            if !p.starts_with('/') {
                p.insert(0, '/');
            }
            p
        })
}

/// One ASCII segment with each character kept, case-flipped or percent-encoded (either hex case).
fn spell(segment: &'static str) -> impl Strategy<Value = String> {
    segment
        .chars()
        .map(|c| {
            let upper = c.to_ascii_uppercase();
            prop_oneof![
                4 => Just(c.to_string()),
                2 => Just(upper.to_string()),
                1 => Just(format!("%{:02x}", c as u32)),
                1 => Just(format!("%{:02X}", c as u32)),
                1 => Just(format!("%{:02X}", upper as u32)),
            ]
        })
        .collect::<Vec<_>>()
        .prop_map(|chars| chars.concat())
}

/// Mostly `/` (every refused separator refuses the whole path, hiding the rest of it).
fn separator() -> impl Strategy<Value = String> {
    prop_oneof![
        100 => Just("/"),
        12 => Just("//"),
        2 => Just("///"),
        1 => Just("\\"),
        1 => Just("/\\"),
        1 => Just("%2f"),
        1 => Just("%2F"),
        1 => Just("%5c"),
        1 => Just("/;/"),
        1 => Just(";/"),
        1 => Just("/./"),
    ]
    .prop_map(String::from)
}

fn dot_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(vec![
            "..", "..", ".", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%2e", "%2E", "...", "%252e%252e",
        ]),
        1 => select(vec!["..;", ".;", "%c0%ae%c0%ae", "%e0%80%ae"]),
    ]
    .prop_map(String::from)
}

fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(vec![
            "x", "public", "healthz", "admin", "ADMIN", "adminx", "administrator", "secret",
            "public;x=1", ".well-known", "~u", "a b", "é", "%C3%A9", "%41dmin", "admin%00",
        ])
        .prop_map(String::from),
        4 => "[a-zA-Z0-9._~-]{0,6}",
        2 => proptest::collection::vec(escape(), 1..4).prop_map(|v| v.concat()),
        1 => "\\PC{1,3}",
    ]
}

/// `%XX` of a byte (mostly ASCII: most escaped non-ASCII bytes are not UTF-8 and refused), hex
/// digits in either case, unreserved characters included.
fn escape() -> impl Strategy<Value = String> {
    let byte = prop_oneof![4 => 0x20..0x7fu8, 1 => any::<u8>()];
    (byte, any::<bool>()).prop_map(|(b, lower)| {
        if lower {
            format!("%{b:02x}")
        } else {
            format!("%{b:02X}")
        }
    })
}

/// Every reading of `raw` a framework behind us might make, written independently of
/// `normalize`: one full percent-decode (lenient: a malformed escape stays literal); then with and
/// without `\` as a separator (IIS, ASP.NET) and with and without `;params` cut from each segment
/// (Tomcat, Spring); repeated slashes merged (nginx, Spring); RFC 3986 §5.2.4 remove_dot_segments;
/// ASCII lower-case (ASP.NET Core and Express route case-insensitively). Double decoding is not
/// modelled: `%252e` is `%2e` to every framework we target.
fn framework_views(raw: &str) -> Vec<Vec<u8>> {
    let decoded = percent_decode(raw.as_bytes());
    let mut views = Vec::new();
    for backslash_separates in [false, true] {
        for cut_params in [false, true] {
            let mut path: Vec<u8> = decoded
                .iter()
                .map(|&b| {
                    if backslash_separates && b == b'\\' {
                        b'/'
                    } else {
                        b
                    }
                })
                .collect();
            if cut_params {
                path = cut_path_params(&path);
            }
            let merged = merge_slashes(&path);
            let mut view = remove_dot_segments(&merged);
            view.make_ascii_lowercase();
            views.push(view);
        }
    }
    views
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// `/a;x/b;y` → `/a/b`.
fn cut_path_params(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut in_params = false;
    for &b in path {
        match b {
            b'/' => {
                in_params = false;
                out.push(b);
            }
            b';' => in_params = true,
            _ if in_params => {}
            _ => out.push(b),
        }
    }
    out
}

fn merge_slashes(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    for &b in path {
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        out.push(b);
    }
    out
}

/// RFC 3986 §5.2.4, literally: an input buffer consumed by rules A–E into an output buffer.
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    let mut input = path.to_vec();
    let mut output: Vec<u8> = Vec::new();
    while !input.is_empty() {
        if input.starts_with(b"../") {
            // A
            input.drain(..3);
        } else if input.starts_with(b"./") || input.starts_with(b"/./") {
            // A, B: "./" goes, "/./" becomes "/"
            input.drain(..2);
        } else if input == b"/." {
            // B
            input = b"/".to_vec();
        } else if input.starts_with(b"/../") || input == b"/.." {
            // C
            let n = if input == b"/.." { 3 } else { 4 };
            input.splice(..n, *b"/");
            let cut = output.iter().rposition(|&b| b == b'/').unwrap_or(0);
            output.truncate(cut);
        } else if input == b"." || input == b".." {
            // D
            input.clear();
        } else {
            // E
            let start = usize::from(input[0] == b'/');
            let end = input[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(input.len(), |p| p + start);
            output.extend(input.drain(..end));
        }
    }
    output
}

/// Whether `view` is `prefix` or below it, on whole segments.
fn under(view: &[u8], prefix: &str) -> bool {
    let p = prefix.as_bytes();
    view.starts_with(p) && (view.len() == p.len() || view[p.len()] == b'/')
}

#[test]
fn reference_decoder_reads_what_frameworks_read() {
    let reads = |raw: &str| {
        framework_views(raw)
            .into_iter()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(reads("/x/%2E%2e/ADMIN")[0], "/admin");
    assert_eq!(reads("/a/b/../../c/./d/")[0], "/c/d/");
    assert_eq!(reads("/x//..//admin")[0], "/admin");
    assert_eq!(reads("/public/..;/admin")[1], "/admin");
    assert_eq!(reads("/x\\..\\admin")[2], "/admin");
    assert_eq!(reads("/../../admin")[0], "/admin");
    assert_eq!(reads("/%zz%2")[0], "/%zz%2");
    assert!(under(b"/admin", "/admin") && under(b"/admin/x", "/admin"));
    assert!(!under(b"/administrator", "/admin"));
}

// ---- 3. Token tampering ----

struct Tokens {
    keys: KeySet,
    issuers: Vec<String>,
    audiences: Vec<String>,
    valid: Vec<String>,
}

static TOKENS: LazyLock<Tokens> = LazyLock::new(|| {
    let issuer = DevIssuer::generate();
    let algorithms = [Algorithm::Rs256, Algorithm::Es256];
    let jwks = issuer.jwks().to_string();
    let (keys, _) = KeySet::from_jwks(jwks.as_bytes(), &algorithms, None).expect("dev JWKS");
    let valid = vec![
        issuer.rs256(&issuer.v1_claims(&["App.Read"])),
        issuer.rs256(&issuer.v2_claims(&["App.Read"])),
        issuer.es256(&issuer.v1_claims(&["App.Read"])),
        issuer.es256(&issuer.v2_claims(&[])),
    ];
    Tokens {
        keys,
        issuers: vec![v1_issuer(&issuer.tenant), v2_issuer(&issuer.tenant)],
        audiences: vec![DEV_AUDIENCE.to_string()],
        valid,
    }
});

const ALGORITHMS: [Algorithm; 2] = [Algorithm::Rs256, Algorithm::Es256];

fn check(token: &str) -> Result<(), Rejection> {
    let t = &*TOKENS;
    let policy = ValidationPolicy {
        issuers: &t.issuers,
        audiences: &t.audiences,
        algorithms: &ALGORITHMS,
        clock_skew_secs: 60,
        max_lifetime_secs: 29 * 3600,
    };
    let mut scratch = Vec::new();
    validate(
        token,
        &policy,
        &t.keys,
        tokengate::pipeline::unix_now(),
        &mut scratch,
    )
    .map(|_| ())
}

/// One edit to one segment (0 header, 1 payload, 2 signature) of the token.
#[derive(Debug, Clone)]
enum Tamper {
    /// Replace the character at `at` (modulo the segment's length).
    Replace {
        segment: usize,
        at: usize,
        with: char,
    },
    /// Flip one bit of one decoded byte and re-encode, so the base64 stays canonical.
    FlipBit { segment: usize, at: usize, bit: u8 },
    /// Insert a character.
    Insert {
        segment: usize,
        at: usize,
        with: char,
    },
    /// Delete a character.
    Delete { segment: usize, at: usize },
    /// Take the segment from another valid token.
    Splice { segment: usize, from: usize },
    /// Rewrite a claim in the decoded payload and re-encode it (the privilege-escalation edit).
    Claim { edit: usize },
}

fn tamper() -> impl Strategy<Value = Tamper> {
    let segment = 0..3usize;
    let ch = prop_oneof![
        8 => select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                .chars()
                .collect::<Vec<_>>()
        ),
        1 => select(vec!['=', '+', '/', '.', ' ', '%', 'é']),
    ];
    prop_oneof![
        4 => (segment.clone(), any::<usize>(), ch.clone())
            .prop_map(|(segment, at, with)| Tamper::Replace { segment, at, with }),
        4 => (segment.clone(), any::<usize>(), 0..8u8)
            .prop_map(|(segment, at, bit)| Tamper::FlipBit { segment, at, bit }),
        1 => (segment.clone(), any::<usize>(), ch)
            .prop_map(|(segment, at, with)| Tamper::Insert { segment, at, with }),
        1 => (segment.clone(), any::<usize>())
            .prop_map(|(segment, at)| Tamper::Delete { segment, at }),
        1 => (segment, 0..4usize).prop_map(|(segment, from)| Tamper::Splice { segment, from }),
        2 => (0..5usize).prop_map(|edit| Tamper::Claim { edit }),
    ]
}

fn apply(token: &str, edit: &Tamper) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    let mut parts: Vec<String> = token.splitn(3, '.').map(String::from).collect();
    match *edit {
        Tamper::Replace { segment, at, with } => {
            let s = &mut parts[segment];
            if !s.is_empty() {
                let i = at % s.len();
                if s.is_char_boundary(i) {
                    let end = s[i..].chars().next().map_or(i, |c| i + c.len_utf8());
                    s.replace_range(i..end, with.encode_utf8(&mut [0; 4]));
                }
            }
        }
        Tamper::FlipBit { segment, at, bit } => {
            if let Ok(mut raw) = URL_SAFE_NO_PAD.decode(&parts[segment]) {
                if !raw.is_empty() {
                    let i = at % raw.len();
                    raw[i] ^= 1 << bit;
                    parts[segment] = URL_SAFE_NO_PAD.encode(raw);
                }
            }
        }
        Tamper::Insert { segment, at, with } => {
            let s = &mut parts[segment];
            let i = at % (s.len() + 1);
            if s.is_char_boundary(i) {
                s.insert(i, with);
            }
        }
        Tamper::Delete { segment, at } => {
            let s = &mut parts[segment];
            if !s.is_empty() {
                let i = at % s.len();
                if s.is_char_boundary(i) {
                    s.remove(i);
                }
            }
        }
        Tamper::Splice { segment, from } => {
            let other = &TOKENS.valid[from];
            parts[segment] = other.split('.').nth(segment).unwrap_or("").to_string();
        }
        Tamper::Claim { edit } => {
            let Ok(raw) = URL_SAFE_NO_PAD.decode(&parts[1]) else {
                return parts.join(".");
            };
            let Ok(mut claims) = serde_json::from_slice::<serde_json::Value>(&raw) else {
                return parts.join(".");
            };
            match edit {
                0 => claims["roles"] = serde_json::json!(["App.Admin"]),
                1 => claims["exp"] = serde_json::json!(claims["exp"].as_u64().unwrap_or(0) + 1),
                2 => claims["aud"] = serde_json::json!("api://another-api"),
                3 => claims["oid"] = serde_json::json!("33333333-3333-4333-8333-333333333333"),
                _ => claims["xms_extra"] = serde_json::json!(true),
            }
            parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        }
    }
    parts.join(".")
}

#[test]
fn untampered_tokens_validate() {
    for token in &TOKENS.valid {
        assert_eq!(check(token), Ok(()));
    }
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn tampered_tokens_never_validate(
        which in 0..4usize,
        edits in proptest::collection::vec(tamper(), 1..4),
    ) {
        let original = &TOKENS.valid[which];
        let tampered = edits.iter().fold(original.clone(), |t, e| apply(&t, e));
        if check(&tampered).is_ok() {
            // Only an edit that cancelled out (or spliced in a whole other valid token) may pass.
            prop_assert!(
                TOKENS.valid.contains(&tampered),
                "tampered token accepted after {:?}", edits
            );
        }
    }
}

// ---- 4. The one-pass EasyAuth writer agrees with the reference ----

/// A JSON value whose text we control: numbers as written, strings in one of several escape
/// styles, objects with duplicate keys kept.
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    Str(Text),
    Array(Vec<Json>),
    Object(Vec<(Text, Json)>),
}

/// A string and how to spell it: 0 as serde_json writes it, 1 every non-alphanumeric character
/// as `\uXXXX` (surrogate pairs beyond the BMP), 2 with `\/` and `\u` for ASCII letters.
#[derive(Debug, Clone)]
struct Text(String, u8);

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::Str(t) => t.write(out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push_str("{ ");
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    k.write(out);
                    out.push_str(" :");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl Text {
    fn write(&self, out: &mut String) {
        let Text(s, style) = self;
        match style {
            0 => out.push_str(&serde_json::to_string(s).expect("string")),
            1 => {
                out.push('"');
                for c in s.chars() {
                    if c.is_ascii_alphanumeric() {
                        out.push(c);
                        continue;
                    }
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                out.push('"');
            }
            _ => {
                let plain = serde_json::to_string(s).expect("string");
                for c in plain.chars() {
                    match c {
                        '/' => out.push_str("\\/"),
                        'a' | 'e' => out.push_str(&format!("\\u{:04X}", c as u32)),
                        c => out.push(c),
                    }
                }
            }
        }
    }
}

/// Claim names: the ones EasyAuth maps or the headers read (so first-occurrence and fallback
/// rules are exercised with duplicates), and anything else.
fn claim_name() -> impl Strategy<Value = Text> {
    let known = select(vec![
        "oid",
        "sub",
        "tid",
        "preferred_username",
        "upn",
        "unique_name",
        "email",
        "name",
        "appid",
        "azp",
        "roles",
        "aud",
        "scp",
        "amr",
        "idp",
        "auth_time",
        "given_name",
        "wids",
    ]);
    (
        prop_oneof![3 => known.prop_map(String::from), 1 => any_text()],
        0..3u8,
    )
        .prop_map(|(s, style)| Text(s, style))
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z@.]{0,10}",
        "(?s).{0,10}",
        "[\\x00-\\x1f\"\\\\/\\x7f]{0,4}",
        "[\u{80}-\u{10ffff}]{0,4}",
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        (any::<i32>(), 0..1000u32).prop_map(|(i, f)| format!("{i}.{f}")),
        select(vec![
            "0",
            "-0",
            "-0.0",
            "1e3",
            "1E+2",
            "-1.5e-7",
            "0.1",
            "1.0",
            "100e-2",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "5e-324",
            "1.7976931348623157e308",
            "1e400",
            "-1e400",
        ])
        .prop_map(String::from),
    ]
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number().prop_map(Json::Number),
        (any_text(), 0..3u8).prop_map(|(s, style)| Json::Str(Text(s, style))),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
            proptest::collection::vec((claim_name(), inner), 0..4).prop_map(Json::Object),
        ]
    })
}

/// What the single-valued headers read (`oid`/`sub`, `tid`, the name candidates), mostly as
/// strings, so that their order of preference and first-occurrence rules are exercised.
fn identity_member() -> impl Strategy<Value = (Text, Json)> {
    let key = select(vec![
        "oid",
        "sub",
        "tid",
        "preferred_username",
        "upn",
        "unique_name",
        "email",
        "name",
        "appid",
        "azp",
    ]);
    let value = prop_oneof![
        3 => (any_text(), 0..3u8).prop_map(|(s, style)| Json::Str(Text(s, style))),
        1 => json_value(),
    ];
    (key, 0..3u8, value).prop_map(|(k, style, v)| (Text(k.to_string(), style), v))
}

/// A payload: an object of claims, duplicates allowed, sometimes with whitespace around it.
fn payload() -> impl Strategy<Value = String> {
    let members = (
        proptest::collection::vec((claim_name(), json_value()), 0..10),
        proptest::collection::vec(identity_member(), 0..6),
    )
        .prop_map(|(mut a, b)| {
            a.extend(b);
            a
        })
        .prop_shuffle();
    (members, any::<bool>()).prop_map(|(members, padded)| {
        let mut out = String::new();
        if padded {
            out.push_str(" \n");
        }
        Json::Object(members).write(&mut out);
        if padded {
            out.push_str("\t ");
        }
        out
    })
}

fn header_bytes(h: Option<&http::HeaderValue>) -> Option<&[u8]> {
    h.map(|v| v.as_bytes())
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn principal_matches_the_reference(payload in payload()) {
        let bytes = payload.as_bytes();
        let reference = principal_reference::Principal::from_payload(bytes);
        let easyauth = principal::easyauth_json(bytes);
        let me = principal::me_json(bytes);
        let headers = IdentityHeaders::from_payload(bytes);
        let mut claims = Vec::new();
        let scanned = Principal::scan(bytes, &mut claims);
        let Ok(reference) = reference else {
            prop_assert!(easyauth.is_err() && me.is_err() && headers.is_err() && scanned.is_err(),
                "the reference refuses {:?}", payload);
            return Ok(());
        };
        prop_assert_eq!(easyauth.expect("easyauth"), reference.easyauth_json(), "{}", payload);
        prop_assert_eq!(me.expect("me"), reference.me_json(), "{}", payload);
        let scanned = scanned.expect("scan");
        prop_assert_eq!(scanned.id(), reference.id());
        prop_assert_eq!(scanned.name(), reference.name());
        prop_assert_eq!(scanned.tenant_id(), reference.tenant_id());
        let (ours, theirs) = (headers.expect("headers"), reference.headers());
        prop_assert_eq!(ours.principal.as_bytes(), theirs.principal.as_bytes());
        prop_assert_eq!(header_bytes(ours.id.as_ref()), header_bytes(theirs.id.as_ref()));
        prop_assert_eq!(header_bytes(ours.name.as_ref()), header_bytes(theirs.name.as_ref()));
    }
}

/// Shapes the generator reaches only by chance, pinned.
#[test]
fn principal_matches_the_reference_on_pinned_payloads() {
    for payload in [
        r#"{}"#,
        r#"{"roles":[],"aud":[[1,2],{"b":1,"a":[true,null]}],"x":{"k":1,"k":2}}"#,
        r#"{"oid":5,"oid":"late","sub":"s","name":["n"],"upn":"u","tid":null}"#,
        r#"{"n":[1.0,-0,1e3,18446744073709551616,-9223372036854775809,0.30000000000000004]}"#,
        r#"{"e\u0301":"\ud83d\ude00\u0000\u001f\"\\\/","emoji":"😀","del":""}"#,
        r#"{"preferred_username":"a\tb","oid":"o\u0007"}"#,
        // serde_json's `Value` reads an object whose first key is its private raw-value marker
        // as the JSON text it holds: the reference flattens this `o` into two claims, and takes
        // this `oid` as a string.
        r#"{"$serde_json::private::RawValue":"1","o":{"$serde_json::private::RawValue":"[1, 2]"}}"#,
        r#"{"oid":{"$serde_json::private::RawValue":"\"x\""},"a":[{"$serde_json::private::RawValue":"[{}]"}]}"#,
    ] {
        let reference = principal_reference::Principal::from_payload(payload.as_bytes());
        let ours = principal::easyauth_json(payload.as_bytes());
        match reference {
            Ok(r) => {
                assert_eq!(ours.expect(payload), r.easyauth_json(), "{payload}");
                let p = Principal::scan(payload.as_bytes(), &mut Vec::new()).expect(payload);
                assert_eq!(
                    (p.id(), p.name(), p.tenant_id()),
                    (r.id(), r.name(), r.tenant_id())
                );
                assert_eq!(
                    principal::me_json(payload.as_bytes()).expect(payload),
                    r.me_json()
                );
            }
            Err(_) => assert!(ours.is_err(), "{payload}"),
        }
    }
}
