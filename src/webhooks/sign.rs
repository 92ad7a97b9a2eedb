//! Standard Webhooks signing: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the secret's bytes (the base64 after
//! `whsec_`), as the specification's libraries (`standardwebhooks` on PyPI and npm) verify it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a secret, as the specification writes it.
pub const SECRET_PREFIX: &str = "whsec_";

/// Bytes of a new secret's key (the specification asks for 24 to 64).
const KEY_BYTES: usize = 32;

/// Why a secret cannot sign.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the secret is not `whsec_` followed by base64")]
    Malformed,
    #[error("the system's random source failed")]
    Random,
}

/// A new secret: `whsec_` and the base64 of 32 random bytes from the operating system.
///
/// # Errors
/// [`SecretError::Random`] when the operating system's random source fails.
pub fn new_secret() -> Result<String, SecretError> {
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key).map_err(|_| SecretError::Random)?;
    Ok(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

/// The `webhook-signature` value of a message `id` sent at `timestamp` (Unix seconds) with
/// `body`.
///
/// # Errors
/// [`SecretError::Malformed`] when `secret` is not `whsec_` and base64.
pub fn signature(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &str,
) -> Result<String, SecretError> {
    let key = STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|_| SecretError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SecretError::Malformed)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_own_example_signs_as_published() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, id, 1_614_265_330, body).as_deref(),
            Ok("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn new_secrets_are_distinct_and_sign() {
        let (a, b) = (
            new_secret().unwrap_or_default(),
            new_secret().unwrap_or_default(),
        );
        assert!(a.starts_with(SECRET_PREFIX) && a != b);
        assert!(signature(&a, "msg_1", 1, "{}").is_ok());
        assert_eq!(
            signature("whsec_***", "msg_1", 1, "{}"),
            Err(SecretError::Malformed)
        );
    }
}
