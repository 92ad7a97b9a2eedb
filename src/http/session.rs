//! Operator sessions for the web pages: server-side, in our own database, through
//! `tower-sessions`.
//!
//! The cookie `diarysync_session` carries only a random session id (`HttpOnly`: scripts
//! cannot read it; `Secure`; `SameSite=Strict`: other sites cannot send it). The session
//! itself is a row of `operator_sessions`, keyed by the SHA-256 of that id and read on every
//! request, so deleting it (logging out, disabling the user, a new password) ends it on every
//! node at once. Forms carry the session's CSRF token (the synchronizer token pattern: a
//! random value kept in the session, compared in constant time).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;
use tower_sessions::cookie::SameSite;
use tower_sessions::cookie::time::{Duration as CookieDuration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, SessionManagerLayer};

use super::access::digest_hex;
use crate::store::operators::{Operators, SessionRow};

/// The cookie's name.
pub const COOKIE: &str = "diarysync_session";

/// How long a login lasts without use, in hours.
pub const LIFETIME_HOURS: i64 = 12;

/// Session keys: the user's id, or for the bootstrap admin token a digest of the token (so
/// changing it ends those sessions); and the CSRF token.
pub const USER_ID: &str = "user_id";
pub const BOOTSTRAP_ADMIN: &str = "bootstrap_admin";
pub const CSRF: &str = "csrf";

/// The pages' session layer over `operators`; the cookie is `Secure` when the service is
/// reached over HTTPS (`public_url`), so a site served over plain HTTP can still sign in.
pub fn layer(operators: Arc<dyn Operators>, secure: bool) -> SessionManagerLayer<SessionRecords> {
    SessionManagerLayer::new(SessionRecords { operators })
        .with_name(COOKIE)
        .with_path("/ui")
        .with_http_only(true)
        .with_secure(secure)
        .with_same_site(SameSite::Strict)
        .with_expiry(Expiry::OnInactivity(CookieDuration::hours(LIFETIME_HOURS)))
}

/// tower-sessions' store on our database.
#[derive(Debug, Clone)]
pub struct SessionRecords {
    operators: Arc<dyn Operators>,
}

fn backend(error: crate::store::StoreError) -> session_store::Error {
    session_store::Error::Backend(error.to_string())
}

fn instant(at: OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(at.unix_timestamp(), 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[async_trait]
impl SessionStore for SessionRecords {
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data)
            .map_err(|error| session_store::Error::Encode(error.to_string()))?;
        let row = SessionRow {
            id_hash: digest_hex(&record.id.to_string()),
            user_id: record.data.get(USER_ID).and_then(serde_json::Value::as_i64),
            data,
            expires_at: instant(record.expiry_date),
        };
        self.operators.save_session(row).await.map_err(backend)
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let row = self
            .operators
            .load_session(&digest_hex(&session_id.to_string()), Utc::now())
            .await
            .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let data = serde_json::from_str(&row.data)
            .map_err(|error| session_store::Error::Decode(error.to_string()))?;
        let expiry_date = OffsetDateTime::from_unix_timestamp(row.expires_at.timestamp())
            .map_err(|error| session_store::Error::Decode(error.to_string()))?;
        Ok(Some(Record {
            id: *session_id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.operators
            .delete_session(&digest_hex(&session_id.to_string()))
            .await
            .map_err(backend)
    }
}

/// A signed-in page request's session, as the pages need it: who acts, and the forms'
/// CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    csrf: String,
    pub actor: crate::domain::access::Actor,
}

impl Session {
    pub fn new(csrf: String, actor: crate::domain::access::Actor) -> Session {
        Session { csrf, actor }
    }

    /// The CSRF token forms of this session carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, presented: &str) -> bool {
        !self.csrf.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// A new CSRF token: 256 random bits, hex.
///
/// # Errors
/// When the system's random source fails.
pub fn new_csrf() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let admin = crate::domain::access::Actor::bootstrap_admin;
        let one = Session::new(new_csrf().expect("random"), admin());
        let two = Session::new(new_csrf().expect("random"), admin());
        assert!(one.csrf_ok(one.csrf()));
        assert!(!one.csrf_ok(two.csrf()));
        assert!(!one.csrf_ok(""));
        assert!(
            !Session::new(String::new(), admin()).csrf_ok(""),
            "no token, no form"
        );
    }
}
