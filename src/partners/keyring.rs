//! A partner's credentials over time: one scheme with one or more secrets, each valid in its
//! own window, so a partner can switch signing keys with no failed delivery (the current and
//! the next secret are both accepted while both are valid). A delivery is verified against
//! every secret valid when it arrived; the first that verifies it is recorded on the event.

use chrono::{DateTime, Utc};

use super::auth::{AuthFailure, AuthScheme, Presented};

/// One secret of a partner, as a ready scheme.
#[derive(Debug)]
pub struct Key {
    /// The secret's name (`current`, `next`, ...); `None` for the configuration file's only one.
    pub label: Option<String>,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub scheme: AuthScheme,
}

impl Key {
    /// The configuration file's scheme: one secret, always valid.
    pub fn always(scheme: AuthScheme) -> Key {
        Key {
            label: None,
            valid_from: None,
            valid_until: None,
            scheme,
        }
    }

    fn valid_at(&self, at: DateTime<Utc>) -> bool {
        self.valid_from.is_none_or(|from| from <= at)
            && self.valid_until.is_none_or(|until| at < until)
    }
}

/// A partner's keys; never empty.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// The keys, first the one whose scheme names headers and parameters; `None` when empty.
    pub fn new(keys: Vec<Key>) -> Option<Keyring> {
        (!keys.is_empty()).then_some(Keyring { keys })
    }

    /// A keyring of one key always valid.
    pub fn single(scheme: AuthScheme) -> Keyring {
        Keyring {
            keys: vec![Key::always(scheme)],
        }
    }

    /// Whether any key is valid at `at`. A partner with none (its secrets all ended, or
    /// not begun) cannot verify anything: its deliveries must be retried later, not refused.
    pub fn any_valid_at(&self, at: DateTime<Utc>) -> bool {
        self.keys.iter().any(|key| key.valid_at(at))
    }

    /// The scheme that names the partner's headers and parameters (every key shares them).
    pub fn primary(&self) -> &AuthScheme {
        &self.keys[0].scheme
    }

    /// Verifies a delivery against every key valid at `at`, and says which one took it
    /// (`Some(label)`; `None` for a file's key).
    ///
    /// # Errors
    /// The most telling failure among the keys: `Expired` (a genuine signature, late) before
    /// `Invalid` before `Missing`; `Invalid` when no key is valid at `at`.
    pub fn verify(
        &self,
        request: Presented<'_>,
        at: DateTime<Utc>,
    ) -> Result<Option<&str>, AuthFailure> {
        let mut worst: Option<AuthFailure> = None;
        for key in self.keys.iter().filter(|key| key.valid_at(at)) {
            match key.scheme.verify(request) {
                Ok(()) => return Ok(key.label.as_deref()),
                Err(failure) => {
                    worst = Some(match (worst, failure) {
                        (Some(AuthFailure::Expired), _) | (_, AuthFailure::Expired) => {
                            AuthFailure::Expired
                        }
                        (Some(AuthFailure::Invalid), _) | (_, AuthFailure::Invalid) => {
                            AuthFailure::Invalid
                        }
                        _ => AuthFailure::Missing,
                    });
                }
            }
        }
        Err(worst.unwrap_or(AuthFailure::Invalid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn bearer(token: &str) -> AuthScheme {
        AuthScheme::Bearer {
            token: SecretString::from(token.to_owned()),
        }
    }

    fn presented(headers: &http::HeaderMap) -> Presented<'_> {
        Presented {
            headers,
            query: None,
            body: b"{}",
            url: "https://gateway.test/x",
            received_at: 0,
        }
    }

    #[test]
    fn during_a_rotation_both_secrets_verify_and_the_one_used_is_named() {
        let now = Utc::now();
        let ring = Keyring::new(vec![
            Key {
                label: Some("current".into()),
                valid_from: None,
                valid_until: Some(now + chrono::Duration::hours(1)),
                scheme: bearer("old-token"),
            },
            Key {
                label: Some("next".into()),
                valid_from: Some(now - chrono::Duration::minutes(1)),
                valid_until: None,
                scheme: bearer("new-token"),
            },
        ])
        .expect("keys");
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer old-token".parse().expect("header"));
        assert_eq!(ring.verify(presented(&headers), now), Ok(Some("current")));
        headers.insert("authorization", "Bearer new-token".parse().expect("header"));
        assert_eq!(ring.verify(presented(&headers), now), Ok(Some("next")));
        // After the old one's window, only the new one verifies.
        let later = now + chrono::Duration::hours(2);
        assert_eq!(ring.verify(presented(&headers), later), Ok(Some("next")));
        headers.insert("authorization", "Bearer old-token".parse().expect("header"));
        assert_eq!(
            ring.verify(presented(&headers), later),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            ring.verify(presented(&http::HeaderMap::new()), now),
            Err(AuthFailure::Missing)
        );
    }
}
