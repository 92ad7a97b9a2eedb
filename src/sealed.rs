//! Secrets sealed at rest: partners' secrets kept in the database are encrypted with
//! XChaCha20-Poly1305 (the RustCrypto `chacha20poly1305` crate) under a 256-bit key from the
//! environment (`secret_key` / `secret_key_env`), with a random 192-bit nonce each, and bound
//! to what they belong to (associated data: the partner and the secret's label), so a sealed
//! secret copied onto another partner does not open.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};

/// What a sealed value starts with: the format's version.
const PREFIX: &str = "v1.";
const NONCE_BYTES: usize = 24;

/// Why a secret cannot be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the secret key must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)")]
    BadKey,
    #[error("the sealed secret is not in a format this version reads")]
    Format,
    /// The key is not the one it was sealed with, or the value was tampered with or moved.
    #[error("the sealed secret does not open with this key")]
    Open,
    #[error("no random source")]
    Random,
}

/// Seals and opens secrets under one key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    /// A sealer from the key in base64.
    ///
    /// # Errors
    /// [`SealError::BadKey`] unless it decodes to exactly 32 bytes.
    pub fn from_base64(key: &SecretString) -> Result<Sealer, SealError> {
        let bytes = STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| SealError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SealError::BadKey)?;
        Ok(Sealer { cipher })
    }

    /// `secret` sealed, bound to `context`: `v1.` and base64 of nonce and ciphertext.
    ///
    /// # Errors
    /// [`SealError::Random`] when no nonce can be drawn.
    pub fn seal(&self, secret: &SecretString, context: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    /// The secret `sealed` holds, if it was sealed under this key for `context`.
    ///
    /// # Errors
    /// [`SealError::Format`] or [`SealError::Open`].
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, SealError> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|bytes| bytes.len() > NONCE_BYTES)
            .ok_or(SealError::Format)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| SealError::Format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretString {
        SecretString::from(STANDARD.encode([byte; 32]))
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_context_only() {
        let sealer = Sealer::from_base64(&key(7)).expect("key");
        let secret = SecretString::from("whsec-partner-secret".to_owned());
        let sealed = sealer.seal(&secret, "partner:a/current").expect("sealed");
        assert!(!sealed.contains("whsec"), "{sealed}");
        assert_ne!(
            sealed,
            sealer.seal(&secret, "partner:a/current").expect("sealed")
        );
        let opened = sealer.open(&sealed, "partner:a/current").expect("opens");
        assert_eq!(opened.expose_secret(), "whsec-partner-secret");
        assert!(matches!(
            sealer.open(&sealed, "partner:b/current"),
            Err(SealError::Open)
        ));
        let other = Sealer::from_base64(&key(8)).expect("key");
        assert!(matches!(
            other.open(&sealed, "partner:a/current"),
            Err(SealError::Open)
        ));
        assert!(matches!(
            sealer.open("v1.AAAA", "x"),
            Err(SealError::Format)
        ));
    }

    #[test]
    fn a_key_must_be_32_bytes_of_base64() {
        for bad in ["", "not base64!", "AAAA"] {
            assert!(Sealer::from_base64(&SecretString::from(bad.to_owned())).is_err());
        }
    }
}
