//! Partner authentication schemes, checked on the raw request before anything is parsed.
//!
//! Every comparison of a presented credential with a configured one runs in constant time:
//! HMACs through [`Mac::verify_slice`], static secrets by comparing SHA-256 digests of both
//! sides with [`subtle`], which hides their lengths too.
//!
//! A scheme that carries a timestamp (`hmac-sha256` with `timestamp_header`) signs it with the
//! body and refuses it outside a tolerance window, so a captured request cannot be replayed
//! later; for the schemes without one, the gateway keeps a replay cache instead.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The signature header of the platform's own scheme when a partner has no other agreed.
pub const DEFAULT_SIGNATURE_HEADER: &str = "x-partner-signature";
/// The query parameter of the `url-token` scheme when none is configured.
pub const DEFAULT_TOKEN_PARAM: &str = "token";
/// How far a signed timestamp may be from our clock, either way, when none is configured.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

/// A signed timestamp (Unix seconds) in a header, and how far from our clock it may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampWindow {
    pub header: HeaderName,
    pub tolerance: std::time::Duration,
}

/// What an `hmac-sha256` signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedPart {
    /// The raw body followed directly by the request URL (`public_url` + path + query).
    BodyAndUrl,
    /// The raw body only, for partners that cannot know the URL they post to.
    Body,
}

/// Where a static API key travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    Header(HeaderName),
    Param(String),
}

/// One partner's configured authentication, with its secrets.
#[derive(Debug)]
pub enum AuthScheme {
    HmacSha256 {
        secret: SecretString,
        header: HeaderName,
        signed: SignedPart,
        /// When set, the signature covers `<timestamp>.` before the body, and a timestamp
        /// outside the window is refused.
        timestamp: Option<TimestampWindow>,
    },
    Basic {
        username: String,
        password: SecretString,
    },
    Bearer {
        token: SecretString,
    },
    ApiKey {
        location: KeyLocation,
        value: SecretString,
    },
    UrlToken {
        param: String,
        secret: SecretString,
    },
    /// No authentication at all; only when configured explicitly, and warned about at start.
    None,
}

/// The parts of a request that authentication may look at.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub headers: &'a HeaderMap,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    /// The URL the partner signed: `public_url` followed by the path and query as received.
    pub url: &'a str,
    /// When it arrived, Unix seconds: signed timestamps are checked against it.
    pub received_at: i64,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("credentials missing")]
    Missing,
    #[error("credentials invalid")]
    Invalid,
    /// A correctly signed timestamp outside the tolerance window: a late or replayed request.
    #[error("signed timestamp outside the accepted window")]
    Expired,
}

impl AuthScheme {
    /// The scheme's name in the config file.
    pub fn name(&self) -> &'static str {
        match self {
            Self::HmacSha256 { .. } => "hmac-sha256",
            Self::Basic { .. } => "basic",
            Self::Bearer { .. } => "bearer",
            Self::ApiKey { .. } => "api-key",
            Self::UrlToken { .. } => "url-token",
            Self::None => "none",
        }
    }

    /// Checks the presented credentials.
    ///
    /// # Errors
    /// [`AuthFailure::Missing`] when the credential is absent, [`AuthFailure::Invalid`] when it
    /// is present and wrong or unreadable.
    pub fn verify(&self, request: Presented<'_>) -> Result<(), AuthFailure> {
        match self {
            Self::HmacSha256 {
                secret,
                header,
                signed,
                timestamp,
            } => {
                let presented = header_value(request.headers, header)?;
                let presented = presented.strip_prefix("sha256=").unwrap_or(presented);
                let signature = hex::decode(presented.trim()).map_err(|_| AuthFailure::Invalid)?;
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
                    .map_err(|_| AuthFailure::Invalid)?;
                let signed_at = match timestamp {
                    Some(window) => {
                        let value = header_value(request.headers, &window.header)?.trim();
                        let at: i64 = value.parse().map_err(|_| AuthFailure::Invalid)?;
                        mac.update(value.as_bytes());
                        mac.update(b".");
                        Some((at, window.tolerance))
                    }
                    None => None,
                };
                mac.update(request.body);
                if *signed == SignedPart::BodyAndUrl {
                    mac.update(request.url.as_bytes());
                }
                mac.verify_slice(&signature)
                    .map_err(|_| AuthFailure::Invalid)?;
                // Checked after the signature, so only a genuine request learns it was late.
                match signed_at {
                    Some((at, tolerance))
                        if request.received_at.abs_diff(at) > tolerance.as_secs() =>
                    {
                        Err(AuthFailure::Expired)
                    }
                    _ => Ok(()),
                }
            }
            Self::Basic { username, password } => {
                let encoded = authorization(request.headers, "basic")?;
                let decoded = BASE64
                    .decode(encoded.trim())
                    .map_err(|_| AuthFailure::Invalid)?;
                let (user, pass) = split_once_byte(&decoded, b':').ok_or(AuthFailure::Invalid)?;
                let user_ok = secure_eq(user, username.as_bytes());
                let pass_ok = secure_eq(pass, password.expose_secret().as_bytes());
                (user_ok & pass_ok)
                    .then_some(())
                    .ok_or(AuthFailure::Invalid)
            }
            Self::Bearer { token } => {
                let presented = authorization(request.headers, "bearer")?;
                expect_secret(presented.trim(), token)
            }
            Self::ApiKey { location, value } => match location {
                KeyLocation::Header(name) => {
                    expect_secret(header_value(request.headers, name)?, value)
                }
                KeyLocation::Param(param) => {
                    expect_secret(&query_param(request.query, param)?, value)
                }
            },
            Self::UrlToken { param, secret } => {
                expect_secret(&query_param(request.query, param)?, secret)
            }
            Self::None => Ok(()),
        }
    }

    /// Whether requests under this scheme carry a signed timestamp (and so cannot be
    /// replayed outside its window); the others rely on the replay cache.
    pub fn carries_timestamp(&self) -> bool {
        matches!(
            self,
            Self::HmacSha256 {
                timestamp: Some(_),
                ..
            }
        )
    }

    /// The query parameter that carries a secret under this scheme, to be masked in storage.
    pub fn secret_param(&self) -> Option<&str> {
        match self {
            Self::UrlToken { param, .. } => Some(param),
            Self::ApiKey {
                location: KeyLocation::Param(param),
                ..
            } => Some(param),
            _ => None,
        }
    }

    /// The header that carries a secret under this scheme, never to be stored.
    pub fn secret_header(&self) -> Option<&HeaderName> {
        match self {
            Self::Basic { .. } | Self::Bearer { .. } => Some(&AUTHORIZATION),
            Self::ApiKey {
                location: KeyLocation::Header(name),
                ..
            } => Some(name),
            _ => None,
        }
    }
}

fn expect_secret(presented: &str, secret: &SecretString) -> Result<(), AuthFailure> {
    secure_eq(presented.as_bytes(), secret.expose_secret().as_bytes())
        .then_some(())
        .ok_or(AuthFailure::Invalid)
}

/// Constant-time equality that does not leak either length: compares SHA-256 digests.
fn secure_eq(presented: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(presented)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

fn split_once_byte(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|b| *b == separator)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

fn header_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, AuthFailure> {
    let value = headers.get(name).ok_or(AuthFailure::Missing)?;
    let value = value.to_str().map_err(|_| AuthFailure::Invalid)?;
    if value.trim().is_empty() {
        return Err(AuthFailure::Missing);
    }
    Ok(value)
}

/// The credentials of an `Authorization: <scheme> <credentials>` header.
fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Result<&'a str, AuthFailure> {
    let value = header_value(headers, &AUTHORIZATION)?;
    let (presented_scheme, credentials) = value.split_once(' ').ok_or(AuthFailure::Invalid)?;
    if !presented_scheme.eq_ignore_ascii_case(scheme) {
        return Err(AuthFailure::Invalid);
    }
    Ok(credentials)
}

fn query_param(query: Option<&str>, name: &str) -> Result<String, AuthFailure> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
        .ok_or(AuthFailure::Missing)
}

/// Computes the lowercase hex signature of the platform's own scheme. For partners' test
/// tooling and our tests: what a correctly signing partner sends.
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8], url: Option<&str>) -> String {
    hmac_sha256_hex_at(secret, None, body, url)
}

/// [`hmac_sha256_hex`] for schemes with a signed timestamp: `<timestamp>.` comes first.
pub fn hmac_sha256_hex_at(
    secret: &[u8],
    timestamp: Option<i64>,
    body: &[u8],
    url: Option<&str>,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    if let Some(timestamp) = timestamp {
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    if let Some(url) = url {
        mac.update(url.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const URL: &str = "https://gw.example/Sales/partners/acme/events/order.updated?x=1";
    const NOW: i64 = 1_790_000_000;

    fn request<'a>(
        headers: &'a HeaderMap,
        query: Option<&'a str>,
        body: &'a [u8],
    ) -> Presented<'a> {
        Presented {
            headers,
            query,
            body,
            url: URL,
            received_at: NOW,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("test header"));
        }
        map
    }

    fn bearer() -> AuthScheme {
        AuthScheme::Bearer {
            token: SecretString::from("a-bearer-token".to_owned()),
        }
    }

    fn hmac(signed: SignedPart) -> AuthScheme {
        AuthScheme::HmacSha256 {
            secret: "s3cret".into(),
            header: HeaderName::from_static(DEFAULT_SIGNATURE_HEADER),
            signed,
            timestamp: None,
        }
    }

    proptest::proptest! {
        #[test]
        fn no_made_up_signature_verifies(
            signature in "(sha256=)?[0-9a-fA-F]{0,80}",
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let scheme = hmac(SignedPart::BodyAndUrl);
            let presented = headers(&[("x-partner-signature", &signature)]);
            let verdict = scheme.verify(request(&presented, None, &body));
            proptest::prop_assert!(verdict.is_err());
        }

        #[test]
        fn any_header_bytes_are_refused_without_panicking(
            value in proptest::collection::vec(0x20u8..=0xff, 0..64),
        ) {
            let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            let body: &[u8] = b"{}";
            for scheme in [hmac(SignedPart::Body), bearer()] {
                let mut presented = HeaderMap::new();
                presented.insert("x-partner-signature", value.clone());
                presented.insert(AUTHORIZATION, value.clone());
                let verdict = scheme.verify(request(&presented, None, body));
                proptest::prop_assert!(verdict.is_err());
            }
        }
    }

    #[test]
    fn a_signed_timestamp_is_accepted_only_inside_its_window() {
        let scheme = AuthScheme::HmacSha256 {
            secret: SecretString::from("s3cret".to_owned()),
            header: HeaderName::from_static(DEFAULT_SIGNATURE_HEADER),
            signed: SignedPart::Body,
            timestamp: Some(TimestampWindow {
                header: HeaderName::from_static("x-partner-timestamp"),
                tolerance: std::time::Duration::from_secs(300),
            }),
        };
        let body = b"{\"a\":1}";
        let signed_at = |at: i64| {
            let signature = hmac_sha256_hex_at(b"s3cret", Some(at), body, None);
            headers(&[
                ("x-partner-signature", &signature),
                ("x-partner-timestamp", &at.to_string()),
            ])
        };
        let fresh = signed_at(NOW - 299);
        assert_eq!(scheme.verify(request(&fresh, None, body)), Ok(()));
        let late = signed_at(NOW - 301);
        assert_eq!(
            scheme.verify(request(&late, None, body)),
            Err(AuthFailure::Expired)
        );
        let early = signed_at(NOW + 301);
        assert_eq!(
            scheme.verify(request(&early, None, body)),
            Err(AuthFailure::Expired)
        );
        // Moving the timestamp breaks the signature: it is signed.
        let mut moved = signed_at(NOW - 600);
        moved.insert("x-partner-timestamp", HeaderValue::from(NOW));
        assert_eq!(
            scheme.verify(request(&moved, None, body)),
            Err(AuthFailure::Invalid)
        );
        let unsigned = headers(&[("x-partner-signature", "00")]);
        assert_eq!(
            scheme.verify(request(&unsigned, None, body)),
            Err(AuthFailure::Missing)
        );
        assert!(scheme.carries_timestamp());
    }

    #[test]
    fn hmac_over_body_and_url_accepts_the_right_signature_only() {
        let body = br#"{"a":1}"#;
        let good = hmac_sha256_hex(b"s3cret", body, Some(URL));
        let scheme = hmac(SignedPart::BodyAndUrl);
        let ok = headers(&[("x-partner-signature", &good)]);
        assert_eq!(scheme.verify(request(&ok, None, body)), Ok(()));
        let upper = headers(&[("x-partner-signature", &good.to_uppercase())]);
        assert_eq!(scheme.verify(request(&upper, None, body)), Ok(()));
        let body_only = hmac_sha256_hex(b"s3cret", body, None);
        let wrong = headers(&[("x-partner-signature", &body_only)]);
        assert_eq!(
            scheme.verify(request(&wrong, None, body)),
            Err(AuthFailure::Invalid)
        );
        let garbage = headers(&[("x-partner-signature", "not-hex")]);
        assert_eq!(
            scheme.verify(request(&garbage, None, body)),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            scheme.verify(request(&HeaderMap::new(), None, body)),
            Err(AuthFailure::Missing)
        );
    }

    #[test]
    fn hmac_over_the_body_only_ignores_the_url() {
        let body = b"payload";
        let sig = hmac_sha256_hex(b"s3cret", body, None);
        let h = headers(&[("x-partner-signature", &sig)]);
        assert_eq!(
            hmac(SignedPart::Body).verify(request(&h, None, body)),
            Ok(())
        );
    }

    #[test]
    fn basic_auth_needs_both_user_and_password() {
        let scheme = AuthScheme::Basic {
            username: "ls".into(),
            password: "pw".into(),
        };
        let good = format!("Basic {}", BASE64.encode("ls:pw"));
        let bad = format!("Basic {}", BASE64.encode("ls:nope"));
        assert_eq!(
            scheme.verify(request(&headers(&[("authorization", &good)]), None, b"")),
            Ok(())
        );
        assert_eq!(
            scheme.verify(request(&headers(&[("authorization", &bad)]), None, b"")),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            scheme.verify(request(
                &headers(&[("authorization", "Bearer pw")]),
                None,
                b""
            )),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            scheme.verify(request(&HeaderMap::new(), None, b"")),
            Err(AuthFailure::Missing)
        );
    }

    #[test]
    fn bearer_api_key_and_url_token_compare_the_secret() {
        let bearer = AuthScheme::Bearer {
            token: "tok".into(),
        };
        assert_eq!(
            bearer.verify(request(
                &headers(&[("authorization", "bearer tok")]),
                None,
                b""
            )),
            Ok(())
        );
        assert_eq!(
            bearer.verify(request(
                &headers(&[("authorization", "Bearer toke")]),
                None,
                b""
            )),
            Err(AuthFailure::Invalid)
        );

        let header_key = AuthScheme::ApiKey {
            location: KeyLocation::Header(HeaderName::from_static("x-api-secret")),
            value: "k".into(),
        };
        assert_eq!(
            header_key.verify(request(&headers(&[("x-api-secret", "k")]), None, b"")),
            Ok(())
        );
        assert_eq!(
            header_key.verify(request(&HeaderMap::new(), None, b"")),
            Err(AuthFailure::Missing)
        );

        let param_key = AuthScheme::ApiKey {
            location: KeyLocation::Param("key".into()),
            value: "k v".into(),
        };
        assert_eq!(
            param_key.verify(request(&HeaderMap::new(), Some("a=1&key=k+v"), b"")),
            Ok(())
        );

        let token = AuthScheme::UrlToken {
            param: DEFAULT_TOKEN_PARAM.into(),
            secret: "t0k".into(),
        };
        assert_eq!(
            token.verify(request(&HeaderMap::new(), Some("token=t0k"), b"")),
            Ok(())
        );
        assert_eq!(
            token.verify(request(&HeaderMap::new(), Some("token=t0"), b"")),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            token.verify(request(&HeaderMap::new(), Some("tok=t0k"), b"")),
            Err(AuthFailure::Missing)
        );
    }

    #[test]
    fn secrets_never_print() {
        let scheme = AuthScheme::Bearer {
            token: "super-secret-token".into(),
        };
        assert!(!format!("{scheme:?}").contains("super-secret-token"));
    }
}
