//! Operators' credentials: Argon2id password hashes (the `argon2` crate, its default
//! parameters: OWASP's m = 19 MiB, t = 2, p = 1), what a valid e-mail and password are, and
//! the brake on guessing (failed logins counted per account and per address, in a `moka`
//! cache whose entries expire on their own).

use std::net::IpAddr;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use moka::sync::Cache;

/// The shortest password accepted, in characters (NIST SP 800-63B's minimum).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest, in bytes: Argon2 takes any length, but hashing megabytes per guess is a
/// denial of service.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Failed logins that lock an account, and an address, until they have been quiet for
/// [`LOCK_FOR`].
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
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
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
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    real && matches
}

/// Counts failed logins per account and per address; either over its limit refuses logins
/// until it has had no failure for [`LOCK_FOR`]. One per process: a guesser spread over
/// several nodes gets a limit per node.
#[derive(Debug, Clone)]
pub struct LoginGuard {
    accounts: Cache<String, u32>,
    addresses: Cache<IpAddr, u32>,
}

impl Default for LoginGuard {
    fn default() -> Self {
        LoginGuard::new(LOCK_FOR)
    }
}

impl LoginGuard {
    pub fn new(lock_for: Duration) -> LoginGuard {
        LoginGuard {
            accounts: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(lock_for)
                .build(),
            addresses: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(lock_for)
                .build(),
        }
    }

    /// Whether a login for `email` from `address` must be refused without checking it.
    pub fn locked(&self, email: &str, address: Option<IpAddr>) -> bool {
        self.accounts
            .get(email)
            .is_some_and(|failures| failures >= ACCOUNT_FAILURES)
            || address.is_some_and(|address| {
                self.addresses
                    .get(&address)
                    .is_some_and(|failures| failures >= ADDRESS_FAILURES)
            })
    }

    /// Counts a failed login (each failure restarts its entry's time to live).
    pub fn failed(&self, email: &str, address: Option<IpAddr>) {
        let count = self.accounts.get(email).unwrap_or(0).saturating_add(1);
        self.accounts.insert(email.to_owned(), count);
        if let Some(address) = address {
            let count = self.addresses.get(&address).unwrap_or(0).saturating_add(1);
            self.addresses.insert(address, count);
        }
    }

    /// Forgets an account's failures after it logged in.
    pub fn succeeded(&self, email: &str) {
        self.accounts.invalidate(email);
    }
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
    fn repeated_failures_lock_the_account_and_the_address() {
        let guard = LoginGuard::new(Duration::from_secs(60));
        let here: IpAddr = "203.0.113.5".parse().expect("address");
        for _ in 0..ACCOUNT_FAILURES {
            assert!(!guard.locked("a@example.com", Some(here)));
            guard.failed("a@example.com", Some(here));
        }
        assert!(guard.locked("a@example.com", None), "the account");
        assert!(
            !guard.locked("b@example.com", Some(here)),
            "not yet the address"
        );
        for n in 0..ADDRESS_FAILURES {
            guard.failed(&format!("user{n}@example.com"), Some(here));
        }
        assert!(guard.locked("c@example.com", Some(here)), "the address");
        guard.succeeded("a@example.com");
        assert!(!guard.locked("a@example.com", None));
    }
}
