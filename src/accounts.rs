//! Operators' credentials: Argon2id password hashes (the `argon2` crate, its default
//! parameters: OWASP's m = 19 MiB, t = 2, p = 1) of the password in Unicode NFKC (NIST SP
//! 800-63B: the same password typed on any keyboard), what a valid e-mail and password are,
//! and the brakes on guessing: attempts counted per account and per address in the database
//! (every node shares them), and at most one hash per core at a time.

use std::net::IpAddr;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use unicode_normalization::UnicodeNormalization as _;

/// The shortest password accepted, in characters (NIST SP 800-63B's minimum).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest, in bytes: Argon2 takes any length, but hashing megabytes per guess is a
/// denial of service.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Login attempts that lock an account, and an address, until they have been quiet for
/// [`LOCK_FOR`]. An attempt counts before its password is checked (a burst cannot slip past
/// the count), and a successful login takes its account's count back to nothing.
pub const ACCOUNT_FAILURES: u32 = 5;
pub const ADDRESS_FAILURES: u32 = 20;
/// How long failures are remembered after the last one.
pub const LOCK_FOR: Duration = Duration::from_secs(15 * 60);

/// Why a password or e-mail is refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("{0:?} is not an e-mail address")]
    NotAnEmail(String),
    #[error("the password could not be hashed")]
    Hash,
}

/// `email` trimmed and lowercased, if it looks like an address (one `@`, text on both sides,
/// no spaces or control characters).
///
/// # Errors
/// [`CredentialError::NotAnEmail`].
pub fn normalise_email(email: &str) -> Result<String, CredentialError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split('@').count() == 2
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        // ASCII only: look-alike letters from other scripts would make two operators whose
        // e-mails read the same in the audit trail.
        && email.chars().all(|c| c.is_ascii_graphic());
    if valid {
        Ok(email)
    } else {
        Err(CredentialError::NotAnEmail(email))
    }
}

/// Checks a new password's length.
///
/// # Errors
/// [`CredentialError::TooShort`] or [`CredentialError::TooLong`].
pub fn valid_password(password: &str) -> Result<(), CredentialError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(CredentialError::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(CredentialError::TooShort);
    }
    Ok(())
}

/// The Argon2id hash of `password` with a fresh salt, as a PHC string. Takes tens of
/// milliseconds of CPU: call it off the async runtime (`spawn_blocking`).
///
/// # Errors
/// [`CredentialError`] for a password out of bounds, or when hashing fails.
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    valid_password(password)?;
    let password: String = password.nfkc().collect();
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| CredentialError::Hash)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| CredentialError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| CredentialError::Hash)
}

/// A hash of a password nobody has, verified when the account does not exist, so an unknown
/// e-mail takes as long to refuse as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash_password("decoy password never used").unwrap_or_default());
    &DECOY
}

/// Whether `password` matches `hash` (`None`: no such account or no password; the same work
/// is done). CPU-bound like [`hash_password`].
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let (hash, real) = match hash {
        Some(hash) => (hash, true),
        None => (decoy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let password: String = password.nfkc().collect();
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    real && matches
}

/// Bounds the password work a node does at once: each Argon2id hash takes 19 MiB and tens of
/// milliseconds of a core, so an unbounded burst of logins (no account needed) would take a
/// node's memory and starve its deliveries. At most one hash per core runs; a login that
/// cannot start within [`PasswordWork::WAIT`] is answered "busy" rather than queued.
#[derive(Debug)]
pub struct PasswordWork {
    permits: tokio::sync::Semaphore,
}

/// No password work could start in time.
#[derive(Debug, thiserror::Error)]
#[error("too many logins at once; try again in a few seconds")]
pub struct Busy;

impl Default for PasswordWork {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        PasswordWork {
            permits: tokio::sync::Semaphore::new(cores),
        }
    }
}

impl PasswordWork {
    /// How long a login waits for a hashing slot.
    pub const WAIT: Duration = Duration::from_secs(2);

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let _permit = tokio::time::timeout(Self::WAIT, self.permits.acquire())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(work).await.map_err(|_| Busy)
    }

    /// [`verify_password`], within the bound.
    ///
    /// # Errors
    /// [`Busy`].
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, Busy> {
        self.run(move || verify_password(&password, hash.as_deref()))
            .await
    }

    /// [`hash_password`], within the bound.
    ///
    /// # Errors
    /// [`Busy`] (outer), or the password's own problem (inner).
    pub async fn hash(&self, password: String) -> Result<Result<String, CredentialError>, Busy> {
        self.run(move || hash_password(&password)).await
    }
}

/// The keys a login attempt counts against: the account, and the address it came from.
pub fn attempt_keys(account: &str, address: Option<IpAddr>) -> Vec<(String, u32)> {
    let mut keys = vec![(format!("account:{account}"), ACCOUNT_FAILURES)];
    if let Some(address) = address {
        keys.push((format!("address:{address}"), ADDRESS_FAILURES));
    }
    keys
}

/// An operator's display name: 1 to 200 characters, no control characters.
///
/// # Errors
/// A sentence saying so.
pub fn valid_name(name: &str) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err("name must be 1 to 200 characters, without control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse battery").expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", Some(&hash)));
        assert!(!verify_password("correct horse batterY", Some(&hash)));
        assert!(!verify_password("correct horse battery", None));
        assert!(!verify_password("x", Some("not a hash")));
        assert_ne!(
            hash,
            hash_password("correct horse battery").expect("hashes")
        );
    }

    #[test]
    fn passwords_and_emails_out_of_bounds_are_refused() {
        assert!(matches!(
            hash_password("short"),
            Err(CredentialError::TooShort)
        ));
        assert!(matches!(
            hash_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(CredentialError::TooLong)
        ));
        assert_eq!(
            normalise_email("  Ana@Example.COM ").expect("valid"),
            "ana@example.com"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "a b@example.com",
            "a@b@c.com",
            "a@local",
        ] {
            assert!(normalise_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn equivalent_unicode_passwords_verify_alike() {
        let nfc = "p\u{e4}ssw\u{f6}rd caf\u{e9}";
        let nfd = "pa\u{308}sswo\u{308}rd cafe\u{301}";
        let hash = hash_password(nfc).expect("hashes");
        assert!(verify_password(nfd, Some(&hash)));
    }

    #[test]
    fn an_attempt_counts_against_its_account_and_address() {
        let keys = attempt_keys("a@example.com", "203.0.113.5".parse().ok());
        assert_eq!(
            keys[0],
            ("account:a@example.com".to_owned(), ACCOUNT_FAILURES)
        );
        assert_eq!(
            keys[1],
            ("address:203.0.113.5".to_owned(), ADDRESS_FAILURES)
        );
        assert_eq!(attempt_keys("admin-token", None).len(), 1);
    }
}
