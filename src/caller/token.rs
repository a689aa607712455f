//! The values the caller side handles: the resource a token is for and the token itself.
//!
//! # Contract
//! - An [`AccessToken`]'s value is reachable only through [`AccessToken::secret`]; its `Debug`
//!   prints `[redacted]`, and it has no `Display`, so a `{:?}` or `%` in a log line cannot leak it.
//! - A [`Resource`] is checked once (visible ASCII, bounded length) and is then safe to put in a
//!   URL (encoded), a log line and a metric label.

use std::fmt;
use std::sync::Arc;

/// Longest resource (App ID URI or GUID) accepted.
pub const MAX_RESOURCE_LEN: usize = 512;

/// The audience a token is asked for: an App ID URI (`api://...`, `https://...`) or an app id.
/// Written without `/.default`; [`Resource::scope`] adds it for the v2 endpoint.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource(Arc<str>);

impl Resource {
    /// Checks `s`: 1 to 512 bytes of visible ASCII. A trailing `/.default` (a scope given where a
    /// resource was expected) is removed, so both spellings share one cache entry.
    pub fn parse(s: &str) -> Result<Resource, &'static str> {
        let s = s.strip_suffix("/.default").unwrap_or(s);
        if s.is_empty() {
            return Err("the resource is empty");
        }
        if s.len() > MAX_RESOURCE_LEN {
            return Err("the resource is longer than 512 bytes");
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the resource must be visible ASCII without spaces");
        }
        Ok(Resource(s.into()))
    }

    /// The resource as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The v2 scope: `{resource}/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.0)
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An access token and its lifetime, in Unix seconds.
#[derive(Clone)]
pub struct AccessToken {
    secret: Arc<str>,
    /// When it stops being valid.
    pub expires_on: u64,
    /// When we received it (the start of its lifetime, for the half-life rule).
    pub acquired_at: u64,
}

impl AccessToken {
    /// Wraps a token received at `acquired_at` that expires at `expires_on`.
    pub fn new(secret: String, acquired_at: u64, expires_on: u64) -> AccessToken {
        AccessToken {
            secret: secret.into(),
            expires_on,
            acquired_at,
        }
    }

    /// The token itself, for the one place that sends it (a response body or an
    /// `Authorization` header). Never log it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether it can still be handed out at `now`.
    pub fn valid_at(&self, now: u64) -> bool {
        now < self.expires_on
    }

    /// Seconds until it expires (0 once it has).
    pub fn seconds_left(&self, now: u64) -> u64 {
        self.expires_on.saturating_sub(now)
    }

    /// When to get the next one: `refresh_before` ahead of expiry, or at half-life for tokens of
    /// two hours or more (Entra's own advice, what MSAL does with `refresh_in`), and never before
    /// half-life, so a short-lived token is not refetched in a loop.
    pub fn refresh_at(&self, refresh_before: u64) -> u64 {
        let lifetime = self.expires_on.saturating_sub(self.acquired_at);
        let half_life = self.acquired_at + lifetime / 2;
        if lifetime >= 2 * 3600 {
            return half_life;
        }
        self.expires_on
            .saturating_sub(refresh_before)
            .max(half_life)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[redacted]")
            .field("expires_on", &self.expires_on)
            .field("acquired_at", &self.acquired_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let t = AccessToken::new("eyJsecret.payload.sig".into(), 100, 3700);
        let shown = format!("{t:?}");
        assert!(!shown.contains("eyJ"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn refresh_five_minutes_ahead_or_at_half_life() {
        // One hour: 5 minutes before expiry.
        let t = AccessToken::new(String::new(), 1000, 1000 + 3600);
        assert_eq!(t.refresh_at(300), 1000 + 3300);
        // 24 hours (IMDS tokens): at half-life.
        let t = AccessToken::new(String::new(), 1000, 1000 + 86400);
        assert_eq!(t.refresh_at(300), 1000 + 43200);
        // Exactly two hours: half-life.
        let t = AccessToken::new(String::new(), 0, 7200);
        assert_eq!(t.refresh_at(300), 3600);
        // Four minutes: never before half-life.
        let t = AccessToken::new(String::new(), 0, 240);
        assert_eq!(t.refresh_at(300), 120);
    }

    #[test]
    fn resources_are_checked_and_default_scope_is_folded() {
        assert_eq!(
            Resource::parse("api://x/.default").unwrap().as_str(),
            "api://x"
        );
        assert_eq!(
            Resource::parse("api://x").unwrap().scope(),
            "api://x/.default"
        );
        assert!(Resource::parse("").is_err());
        assert!(Resource::parse("/.default").is_err());
        assert!(Resource::parse("api://a b").is_err());
        assert!(Resource::parse("api://\u{e9}").is_err());
        assert!(Resource::parse(&"x".repeat(513)).is_err());
    }
}
