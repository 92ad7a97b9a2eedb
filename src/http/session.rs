//! Operator sessions for the web pages: a signed, expiring cookie, never the admin token.
//!
//! Logging in with the admin token sets `diarysync_session = v1.<expiry>.<nonce>.<mac>`, where
//! the MAC is HMAC-SHA256 under a key derived from the admin token: nothing is stored on the
//! server, every node accepts the cookie, and changing the token ends every session. The
//! cookie is `HttpOnly` (scripts cannot read it), `Secure` and `SameSite=Strict` (other sites
//! cannot send it). Forms also carry a CSRF token derived from the session's nonce.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "diarysync_session";

/// How long a login lasts.
pub const LIFETIME: Duration = Duration::hours(12);

/// Signs and checks sessions with a key derived from the admin token.
#[derive(Clone)]
pub struct Sessions {
    key: [u8; 32],
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions([redacted])")
    }
}

/// A valid session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    nonce: String,
    pub expires: DateTime<Utc>,
}

impl Sessions {
    pub fn new(admin_token: &SecretString) -> Sessions {
        let mut hasher = Sha256::new();
        hasher.update(b"diarysync session key\0");
        hasher.update(admin_token.expose_secret().as_bytes());
        Sessions {
            key: hasher.finalize().into(),
        }
    }

    /// Whether `presented` is the admin token (compared in constant time, on digests so the
    /// length does not leak either).
    pub fn is_admin_token(admin_token: &SecretString, presented: &str) -> bool {
        let expected = Sha256::digest(admin_token.expose_secret().as_bytes());
        bool::from(Sha256::digest(presented.as_bytes()).ct_eq(&expected))
    }

    fn mac(&self, parts: &[&str]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// A new session from `now`, as the cookie value.
    pub fn start(&self, now: DateTime<Utc>) -> String {
        let expires = (now + LIFETIME).timestamp().to_string();
        let nonce = hex::encode(rand_bytes());
        let mac = self.mac(&["v1", &expires, &nonce]);
        format!("v1.{expires}.{nonce}.{mac}")
    }

    /// The session a cookie value stands for, if it is genuine and not expired at `now`.
    pub fn check(&self, cookie: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut parts = cookie.split('.');
        let (Some("v1"), Some(expires), Some(nonce), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expected = self.mac(&["v1", expires, nonce]);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let expires = DateTime::from_timestamp(expires.parse().ok()?, 0)?;
        (now < expires).then(|| Session {
            nonce: nonce.to_owned(),
            expires,
        })
    }

    /// The CSRF token forms of `session` carry.
    pub fn csrf(&self, session: &Session) -> String {
        self.mac(&["csrf", &session.nonce])
    }

    /// Whether `presented` is `session`'s CSRF token.
    pub fn csrf_ok(&self, session: &Session, presented: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// 16 bytes unique to one session (its CSRF token derives from them; the MAC, not these,
/// makes a cookie unforgeable): SHA-256 over the clock, a counter and std's per-process
/// random hasher keys.
fn rand_bytes() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    seed.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut hasher = Sha256::new();
    hasher.update(seed.finish().to_le_bytes());
    hasher.update(
        Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .to_le_bytes(),
    );
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; Path=/ui; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        LIFETIME.num_seconds()
    )
}

/// The `Set-Cookie` value that ends it.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// The session cookie's value among a request's `Cookie` headers.
pub fn cookie_value(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(token: &str) -> Sessions {
        Sessions::new(&SecretString::from(token.to_owned()))
    }

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_under_its_token() {
        let now = Utc::now();
        let cookie = sessions("token-one-0123").start(now);
        assert!(sessions("token-one-0123").check(&cookie, now).is_some());
        assert!(
            sessions("token-one-0123")
                .check(&cookie, now + LIFETIME)
                .is_none()
        );
        assert!(
            sessions("token-two-0123").check(&cookie, now).is_none(),
            "a new token ends every session"
        );
    }

    #[test]
    fn a_tampered_cookie_is_refused() {
        let now = Utc::now();
        let keys = sessions("token-one-0123");
        let cookie = keys.start(now);
        let parts: Vec<&str> = cookie.split('.').collect();
        let later = (now + Duration::days(365)).timestamp().to_string();
        let extended = format!("v1.{later}.{}.{}", parts[2], parts[3]);
        assert!(keys.check(&extended, now).is_none());
        assert!(keys.check("v1.1.2", now).is_none());
        assert!(keys.check("", now).is_none());
        assert!(keys.check(&format!("{cookie}.x"), now).is_none());
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let now = Utc::now();
        let keys = sessions("token-one-0123");
        let one = keys.check(&keys.start(now), now).expect("valid");
        let two = keys.check(&keys.start(now), now).expect("valid");
        assert!(keys.csrf_ok(&one, &keys.csrf(&one)));
        assert!(!keys.csrf_ok(&one, &keys.csrf(&two)));
        assert!(!keys.csrf_ok(&one, ""));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "a=1; diarysync_session=v1.x.y.z; b=2"
                .parse()
                .expect("header"),
        );
        assert_eq!(cookie_value(&headers), Some("v1.x.y.z"));
    }
}
