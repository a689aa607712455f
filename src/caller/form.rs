//! `application/x-www-form-urlencoded`: the token request bodies we send and the query strings
//! the identity endpoint reads. Small on purpose: two functions, no allocation surprises.

/// Percent-encodes `s` for a query string or form body: unreserved characters stay, every other
/// byte becomes `%XX` (space too, which every decoder accepts).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// `k1=v1&k2=v2` from pairs, each side encoded.
pub fn build(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// Decodes `a=b&c=d` (`+` is a space). `None` when an escape is malformed or a value is not
/// UTF-8: such a query is refused, never half-read.
pub fn parse(query: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Some(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| char::from(*c).to_digit(16))?;
                let lo = bytes.get(i + 2).and_then(|c| char::from(*c).to_digit(16))?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_what_azure_identity_sends() {
        let q = build(&[
            ("resource", "api://callee app/x?y=1&z"),
            ("api-version", "2019-08-01"),
        ]);
        assert_eq!(
            q,
            "resource=api%3A%2F%2Fcallee%20app%2Fx%3Fy%3D1%26z&api-version=2019-08-01"
        );
        let back = parse(&q).unwrap();
        assert_eq!(back[0].1, "api://callee app/x?y=1&z");
        assert_eq!(parse("a=b+c&d").unwrap()[1], ("d".into(), "".into()));
        assert_eq!(parse("a=b+c").unwrap()[0].1, "b c");
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert!(parse("a=%zz").is_none());
        assert!(parse("a=%4").is_none());
        assert!(parse("a=%ff").is_none(), "not UTF-8");
    }
}
