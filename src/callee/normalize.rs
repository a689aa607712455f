//! Path canonicalization: one spelling per resource, or a refusal.
//!
//! # Contract
//! Rules and anonymous prefixes are matched against the output of [`normalize`], and the same output
//! is what the upstream receives. So whatever framework runs behind us (ASP.NET Core, Express,
//! Spring, Flask, nginx) routes exactly the path we authorized. To get there we:
//! - give every byte one spelling: a byte that is legal raw in a path segment (RFC 3986 `pchar`:
//!   unreserved, sub-delims, `:` and `@`) is decoded to its literal form, every other byte is
//!   percent-encoded with upper-case hex (§6.2.2.1), whether it arrived raw or escaped. Frameworks
//!   decode escapes before routing, so `/odata/%24batch` and `/odata/$batch`, `/%61dmin` and
//!   `/admin`, `/a%7cb` and `/a|b` are one path to them, and now to us;
//! - percent-encode raw non-ASCII bytes (the UTF-8 an IRI carries, RFC 3987 §3.1), so `/café` and
//!   `/caf%C3%A9` are one path too, the output is ASCII, and normalizing it again changes nothing;
//! - merge repeated slashes (nginx `merge_slashes`, Spring's firewall) and remove dot segments after
//!   decoding (§5.2.4), so `/x/%2e%2e//admin` is `/admin`; `..` never climbs above `/`;
//! - refuse (400) what frameworks disagree on and we cannot make unambiguous: an encoded slash or
//!   backslash (`%2F`, `%5C`), a literal backslash (IIS and ASP.NET treat it as `/`), a `;`
//!   (Tomcat and Spring strip `;params` before resolving `..`, so `/public/..;/admin` is `/admin`
//!   to them; an encoded `%3B` too, in case a framework decodes first), a `#`, control characters and NUL (raw or encoded), a malformed escape, escaped
//!   bytes that are not UTF-8 (overlong `%C0%AE` is `.` to lenient decoders), and anything that is
//!   not origin-form.
//!
//! Letter case is not changed (Flask and nginx are case-sensitive); instead [`Prefix::covers`]
//! offers both matches: rules use the case-insensitive one (ASP.NET Core and Express route
//! `/ADMIN` to `/admin`), anonymous prefixes the exact one, so case can only ever add protection.

use std::borrow::Cow;
use std::fmt;

/// Why a path was refused; all of them answer 400 `invalid_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form (`*`, or not starting with `/`).
    NotOriginForm,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` or `%5C`: frameworks disagree on whether it separates segments.
    EncodedSeparator,
    /// A literal `\`.
    Backslash,
    /// A `;` path parameter.
    Semicolon,
    /// A `#` (a fragment never belongs in a request target).
    Fragment,
    /// A control character or NUL, raw or encoded.
    ControlCharacter,
    /// Percent-encoded bytes that are not valid UTF-8.
    InvalidUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            PathError::NotOriginForm => "path is not origin-form",
            PathError::BadEscape => "malformed percent-escape",
            PathError::EncodedSeparator => "encoded slash or backslash",
            PathError::Backslash => "backslash in path",
            PathError::Semicolon => "';' path parameter",
            PathError::Fragment => "'#' in path",
            PathError::ControlCharacter => "control character in path",
            PathError::InvalidUtf8 => "percent-encoded bytes are not UTF-8",
        };
        f.write_str(what)
    }
}

impl std::error::Error for PathError {}

/// Canonicalizes an origin-form path (no query). Borrows when the input is already canonical,
/// which is the common case, so most requests pay one scan and no allocation.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if is_canonical(bytes)? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(bytes)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// One pass that both refuses forbidden bytes and tells whether any rewriting is needed.
fn is_canonical(bytes: &[u8]) -> Result<bool, PathError> {
    let mut canonical = true;
    let mut prev = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            b'#' => return Err(PathError::Fragment),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            b'%' | 0x80..=0xff => canonical = false,
            b if !is_pchar(b) && b != b'/' => canonical = false,
            b'/' if prev == b'/' => canonical = false,
            b'.' if prev == b'/' => {
                // "." or ".." as a whole segment needs resolving; ".well-known" does not.
                let rest = &bytes[i..];
                let seg_len = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
                if seg_len <= 2 && rest[..seg_len].iter().all(|&c| c == b'.') {
                    canonical = false;
                }
            }
            _ => {}
        }
        prev = b;
    }
    Ok(canonical)
}

/// RFC 3986 `pchar` (minus `pct-encoded`): the bytes a path segment may carry literally. `;` is
/// one, but it never gets this far.
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes escapes of `pchar` bytes, escapes (upper-case) every other byte, and refuses
/// separators and controls.
fn decode(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    // Escaped non-ASCII bytes are collected so their UTF-8 validity can be checked as a run.
    let mut high_run: Vec<u8> = Vec::new();
    while i < bytes.len() {
        let b = bytes[i];
        if b >= 0x80 {
            // Raw UTF-8 (the input is a `str`): escaped, joining any escaped run it continues.
            high_run.push(b);
            push_escape(&mut out, b);
            i += 1;
            continue;
        }
        if b != b'%' {
            check_utf8_run(&mut high_run)?;
            if is_pchar(b) || b == b'/' {
                out.push(b as char);
            } else {
                push_escape(&mut out, b);
            }
            i += 1;
            continue;
        }
        let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(&h), Some(&l)) => (h, l),
            _ => return Err(PathError::BadEscape),
        };
        let value = match (hex_value(hi), hex_value(lo)) {
            (Some(h), Some(l)) => (h << 4) | l,
            _ => return Err(PathError::BadEscape),
        };
        i += 3;
        if value >= 0x80 {
            high_run.push(value);
        } else {
            check_utf8_run(&mut high_run)?;
        }
        match value {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            // Decoded before `;params` are cut, `%3B` is a parameter delimiter too.
            b';' => return Err(PathError::Semicolon),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            v if is_pchar(v) => {
                out.push(v as char);
                continue;
            }
            _ => {}
        }
        push_escape(&mut out, value);
    }
    check_utf8_run(&mut high_run)?;
    Ok(out)
}

fn push_escape(out: &mut String, value: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(value >> 4)] as char);
    out.push(HEX[usize::from(value & 0xf)] as char);
}

fn check_utf8_run(run: &mut Vec<u8>) -> Result<(), PathError> {
    if run.is_empty() {
        return Ok(());
    }
    let valid = std::str::from_utf8(run).is_ok();
    run.clear();
    if valid {
        Ok(())
    } else {
        Err(PathError::InvalidUtf8)
    }
}

/// RFC 3986 §5.2.4 on a decoded path, also merging empty segments (repeated slashes).
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    out
}

/// A normalized path prefix from the config, matched on whole segments: `/admin` covers `/admin`
/// and `/admin/x`, never `/administrator`.
#[derive(Clone, PartialEq, Eq)]
pub struct Prefix(Box<str>);

impl Prefix {
    /// Normalizes a configured prefix with the same rules as request paths, so a config that says
    /// `/Admin/./x` means what a request for it would mean.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let normalized = normalize(raw)?;
        let trimmed = normalized.trim_end_matches('/');
        Ok(Prefix(if trimmed.is_empty() {
            "/".into()
        } else {
            trimmed.into()
        }))
    }

    /// The normalized prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` (normalized) lies under this prefix. `ignore_case` is ASCII-only, matching
    /// how case-insensitive routers compare.
    pub fn covers(&self, path: &str, ignore_case: Case) -> bool {
        let prefix = self.0.as_bytes();
        if prefix == b"/" {
            return true;
        }
        let path = path.as_bytes();
        if path.len() < prefix.len() {
            return false;
        }
        let head = &path[..prefix.len()];
        let same = match ignore_case {
            Case::Insensitive => head.eq_ignore_ascii_case(prefix),
            Case::Sensitive => head == prefix,
        };
        same && (path.len() == prefix.len() || path[prefix.len()] == b'/')
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// How [`Prefix::covers`] compares letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// `/ADMIN` is under `/admin`: used for rules, so case can only add protection.
    Insensitive,
    /// Exact: used for anonymous prefixes, so case can never remove protection.
    Sensitive,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        normalize(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .into_owned()
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in [
            "/",
            "/admin",
            "/a/b/",
            "/.well-known/x",
            "/a.b/c..d",
            "/~user",
        ] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_slashes_resolve() {
        assert_eq!(ok("/a/../admin"), "/admin");
        assert_eq!(ok("/a/./admin"), "/a/admin");
        assert_eq!(ok("//admin"), "/admin");
        assert_eq!(ok("/x//..//admin/"), "/admin/");
        assert_eq!(ok("/../../admin"), "/admin");
        assert_eq!(ok("/admin/.."), "/");
        assert_eq!(ok("/admin/."), "/admin/");
        assert_eq!(ok("/a/b/.."), "/a/");
    }

    #[test]
    fn unreserved_escapes_decode_and_others_uppercase() {
        assert_eq!(ok("/%61dmin"), "/admin");
        assert_eq!(ok("/%2e%2E/admin"), "/admin");
        assert_eq!(ok("/x/%2e%2e/admin"), "/admin");
        assert_eq!(ok("/a%20b"), "/a%20b");
        assert_eq!(ok("/a%3fb"), "/a%3Fb");
        assert_eq!(ok("/%252e%252e/admin"), "/%252e%252e/admin");
        assert_eq!(ok("/a%25"), "/a%25");
        assert_eq!(ok("/a%23b"), "/a%23b");
        assert_eq!(ok("/caf%C3%A9"), "/caf%C3%A9");
    }

    #[test]
    fn reserved_characters_have_one_spelling() {
        // Issue 9: a rule on `/odata/$batch` was skipped by `/odata/%24batch`.
        assert_eq!(ok("/odata/%24batch"), "/odata/$batch");
        for b in b"!$&'()*+,=:@".iter().copied() {
            let literal = format!("/x{}y", b as char);
            assert_eq!(ok(&format!("/x%{b:02x}y")), literal);
            assert_eq!(ok(&format!("/x%{b:02X}y")), literal);
            assert!(
                matches!(normalize(&literal), Ok(Cow::Borrowed(_))),
                "{literal}"
            );
        }
        // Not legal raw in a path: one escaped spelling, raw or not.
        assert_eq!(ok("/a|b"), "/a%7Cb");
        assert_eq!(ok("/a%7cb"), "/a%7Cb");
        assert_eq!(ok("/a b"), "/a%20b");
        assert_eq!(ok("/{x}"), "/%7Bx%7D");
        let rule = Prefix::parse("/odata/$batch").unwrap();
        assert!(rule.covers(&ok("/odata/%24BATCH"), Case::Insensitive));
    }

    #[test]
    fn raw_utf8_is_escaped_like_its_encoded_spelling() {
        // Found by fuzz/normalize: raw non-ASCII bytes were copied as Latin-1 chars (`é` became
        // `Ã©`), so the upstream got another path, normalizing twice changed it again, and a rule
        // for `/café` did not cover `/caf%C3%A9`.
        assert_eq!(ok("/cafcafé/%3emin"), "/cafcaf%C3%A9/%3Emin");
        assert_eq!(ok("/café"), "/caf%C3%A9");
        assert_eq!(ok("/caf%c3%a9"), ok("/café"));
        assert_eq!(ok("/🦀/../x"), "/x");
        assert_eq!(ok(&ok("/é/%20")), ok("/é/%20"));
        assert_eq!(normalize("/caf%C3é"), Err(PathError::InvalidUtf8));
        let rule = Prefix::parse("/café").unwrap();
        assert!(rule.covers(&ok("/caf%c3%a9/x"), Case::Insensitive));
        assert!(Prefix::parse("/caf%C3%A9")
            .unwrap()
            .covers(&ok("/café"), Case::Insensitive));
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        let cases = [
            ("/a%2fadmin", PathError::EncodedSeparator),
            ("/a%2Fadmin", PathError::EncodedSeparator),
            ("/a%5cadmin", PathError::EncodedSeparator),
            ("/a\\admin", PathError::Backslash),
            ("/public/..;/admin", PathError::Semicolon),
            ("/admin;jsessionid=1", PathError::Semicolon),
            ("/x/%3B/%2e%2e/admin", PathError::Semicolon),
            ("/public%3b/../admin", PathError::Semicolon),
            ("/admin#x", PathError::Fragment),
            ("/admin%00", PathError::ControlCharacter),
            ("/admin%0a", PathError::ControlCharacter),
            ("/admin%", PathError::BadEscape),
            ("/admin%g0", PathError::BadEscape),
            ("/%u002e%u002e/admin", PathError::BadEscape),
            ("/%c0%ae%c0%ae/admin", PathError::InvalidUtf8),
            ("*", PathError::NotOriginForm),
            ("admin", PathError::NotOriginForm),
            ("", PathError::NotOriginForm),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), Err(want), "{input}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let p = Prefix::parse("/admin").unwrap();
        assert!(p.covers("/admin", Case::Sensitive));
        assert!(p.covers("/admin/", Case::Sensitive));
        assert!(p.covers("/admin/x", Case::Sensitive));
        assert!(!p.covers("/administrator", Case::Insensitive));
        assert!(!p.covers("/ADMIN", Case::Sensitive));
        assert!(p.covers("/ADMIN/x", Case::Insensitive));
        assert!(Prefix::parse("/")
            .unwrap()
            .covers("/anything", Case::Sensitive));
        assert_eq!(Prefix::parse("/admin/").unwrap().as_str(), "/admin");
        assert_eq!(Prefix::parse("/a/../%61dmin").unwrap().as_str(), "/admin");
    }
}
