//! Operators' accounts: users and the venues a venue role may see, personal API tokens, the
//! pages' server-side sessions, and the audit trail they read ([`Operators`]).
//!
//! Nothing secret is stored in the clear: passwords as Argon2id hashes (made at the edge,
//! `http::accounts`), tokens and session ids as their SHA-256 (both are 256 random bits, so a
//! fast hash is enough and a lookup stays one index probe).

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use super::audit::{self, AuditFilter, AuditRecord, Subject};
use super::db::{self, Conn, Row};
use super::sql::from_millis;
use crate::domain::access::{Actor, Role};

/// A user, as the API shows it (never the password's hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub name: String,
    /// Lowercased.
    pub email: String,
    #[schema(value_type = String, example = "venue_manager")]
    pub role: Role,
    /// The venues a `venue_manager` sees; empty for other roles.
    pub venues: Vec<i64>,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    /// Lowercased by the caller.
    pub email: String,
    pub role: Role,
    pub venues: Vec<i64>,
    /// Argon2id, PHC string; `None`: no password login until one is set.
    pub password_hash: Option<String>,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub venues: Option<Vec<i64>>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
}

/// A personal API token, as the API shows it after creation (never the token).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub user_id: i64,
    pub name: String,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    pub prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A stored page session (tower-sessions' record, its data as JSON).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the session id, hex.
    pub id_hash: String,
    pub user_id: Option<i64>,
    pub data: String,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRow")
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A user's login details: the record, its password hash, and whether it may log in.
#[derive(Clone)]
pub struct Login {
    pub user: UserRecord,
    pub password_hash: Option<String>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user.id)
            .finish_non_exhaustive()
    }
}

/// Operators' accounts, sessions and the audit trail.
#[async_trait]
pub trait Operators: Send + Sync + fmt::Debug {
    /// # Errors
    /// [`StoreError::Conflict`] when the e-mail is taken; [`StoreError::NotFound`] for an
    /// unknown venue.
    async fn create_user(&self, new: NewUser, by: Actor) -> Result<UserRecord, StoreError>;
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    async fn user(&self, id: i64) -> Result<Option<UserRecord>, StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// The login details of the user with `email` (lowercased).
    async fn login(&self, email: &str) -> Result<Option<Login>, StoreError>;
    /// Changes a user. Disabling them or setting a password ends their sessions on every node
    /// (the sessions are deleted; every request reads its session from the database).
    async fn update_user(
        &self,
        id: i64,
        changes: UserChanges,
        by: Actor,
    ) -> Result<UserRecord, StoreError>;
    async fn logged_in(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Counts a login attempt against each `(key, limit)` (`accounts::attempt_keys`), keys
    /// quiet for `window` starting again from nothing; answers whether every key is still
    /// within its limit. Counted before the password is checked, in one statement per key,
    /// so concurrent attempts on any nodes cannot pass the limit together.
    async fn login_attempt(
        &self,
        keys: Vec<(String, u32)>,
        now: DateTime<Utc>,
        window: std::time::Duration,
    ) -> Result<bool, StoreError>;
    /// A login succeeded: its account's attempts are forgotten.
    async fn login_succeeded(&self, account_key: String) -> Result<(), StoreError>;
    /// The actor a user acts as now; `None` when there is no such user or they are disabled.
    async fn user_actor(&self, id: i64) -> Result<Option<Actor>, StoreError>;

    async fn create_token(&self, new: NewToken, by: Actor) -> Result<TokenRecord, StoreError>;
    async fn tokens(&self, user_id: i64) -> Result<Vec<TokenRecord>, StoreError>;
    /// # Errors
    /// [`StoreError::NotFound`] when the user has no such token.
    async fn revoke_token(&self, user_id: i64, token_id: i64, by: Actor) -> Result<(), StoreError>;
    /// The actor a token (by its SHA-256) acts as at `now`; `None` when it is unknown,
    /// revoked, expired, or its user is disabled. Notes the use (at most once a minute).
    async fn token_actor(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Actor>, StoreError>;

    async fn load_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRow>, StoreError>;
    async fn save_session(&self, row: SessionRow) -> Result<(), StoreError>;
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Records an action whose own write is elsewhere (a replay).
    async fn record_audit(
        &self,
        by: Actor,
        action: &'static str,
        venue_id: Option<i64>,
        subject: Subject,
        after: serde_json::Value,
    ) -> Result<(), StoreError>;
    /// Records a replay of many events (`events.replay`) with what it did (`after`), and
    /// links each event it re-ran (`events`, by id) to the entry for that event's history.
    async fn record_replay_audit(
        &self,
        by: Actor,
        after: serde_json::Value,
        events: Vec<i64>,
    ) -> Result<(), StoreError>;
    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
}

fn millis(t: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    t.map(from_millis).transpose()
}

const USER_COLUMNS: &str = "id, name, email, role, created_at, last_login_at, disabled_at";

async fn user_record(conn: &mut Conn<'_>, row: &Row) -> Result<UserRecord, StoreError> {
    let id: i64 = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    let role = role
        .parse::<Role>()
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let venues = db::query_scalar::<i64>(
        "SELECT venue_id FROM user_venues WHERE user_id = $1 ORDER BY venue_id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(UserRecord {
        id,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        role,
        venues,
        created_at: from_millis(row.try_get("created_at")?)?,
        last_login_at: millis(row.try_get("last_login_at")?)?,
        disabled_at: millis(row.try_get("disabled_at")?)?,
    })
}

/// # Errors
/// When the database fails.
pub(super) async fn user(conn: &mut Conn<'_>, id: i64) -> Result<Option<UserRecord>, StoreError> {
    let row = db::query(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    match row {
        Some(row) => Ok(Some(user_record(conn, &row).await?)),
        None => Ok(None),
    }
}

/// # Errors
/// When the database fails.
pub(super) async fn users(conn: &mut Conn<'_>) -> Result<Vec<UserRecord>, StoreError> {
    let rows = db::query(format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
        .fetch_all(conn)
        .await?;
    let mut users = Vec::with_capacity(rows.len());
    for row in &rows {
        users.push(user_record(conn, row).await?);
    }
    Ok(users)
}

/// # Errors
/// When the database fails.
pub(super) async fn login(conn: &mut Conn<'_>, email: &str) -> Result<Option<Login>, StoreError> {
    let row = db::query(format!(
        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1"
    ))
    .bind(email)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Login {
        password_hash: row.try_get("password_hash")?,
        user: user_record(conn, &row).await?,
    }))
}

async fn set_venues(conn: &mut Conn<'_>, id: i64, venues: &[i64]) -> Result<(), StoreError> {
    db::query("DELETE FROM user_venues WHERE user_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    let mut venues = venues.to_vec();
    venues.sort_unstable();
    venues.dedup();
    for venue in &venues {
        let known = db::query_scalar::<i64>("SELECT id FROM venues WHERE id = $1")
            .bind(*venue)
            .fetch_optional(conn)
            .await?;
        if known.is_none() {
            return Err(StoreError::NotFound("venue"));
        }
        db::query("INSERT INTO user_venues (user_id, venue_id) VALUES ($1, $2)")
            .bind(id)
            .bind(*venue)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Creates a user, recorded in the trail as `user.create`.
///
/// # Errors
/// [`StoreError::Conflict`] when the e-mail is taken; [`StoreError::NotFound`] for an unknown
/// venue.
pub(super) async fn create_user(
    conn: &mut Conn<'_>,
    new: &NewUser,
    by: &Actor,
) -> Result<UserRecord, StoreError> {
    let taken = db::query_scalar::<i64>("SELECT id FROM users WHERE email = $1")
        .bind(new.email.as_str())
        .fetch_optional(conn)
        .await?;
    if taken.is_some() {
        return Err(StoreError::Conflict(format!(
            "a user with e-mail {} exists",
            new.email
        )));
    }
    let id: i64 = db::query_scalar(
        "INSERT INTO users (name, email, role, password_hash, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(new.name.as_str())
    .bind(new.email.as_str())
    .bind(new.role.as_str())
    .bind(new.password_hash.as_deref())
    .bind(Utc::now().timestamp_millis())
    .fetch_one(conn)
    .await?;
    set_venues(conn, id, &new.venues).await?;
    let after = audit::user(conn, id).await?;
    audit::record(
        conn,
        by,
        "user.create",
        None,
        Subject::User(id),
        None,
        after,
    )
    .await?;
    user(conn, id).await?.ok_or(StoreError::NotFound("user"))
}

/// Changes a user, recorded as `user.change` (a new password shows as `password_changed`,
/// never the hash); disabling them or a new password deletes their sessions.
///
/// # Errors
/// [`StoreError::NotFound`] for an unknown user or venue.
pub(super) async fn update_user(
    conn: &mut Conn<'_>,
    id: i64,
    changes: &UserChanges,
    by: &Actor,
) -> Result<UserRecord, StoreError> {
    let before = audit::user(conn, id)
        .await?
        .ok_or(StoreError::NotFound("user"))?;
    if let Some(name) = &changes.name {
        db::query("UPDATE users SET name = $1 WHERE id = $2")
            .bind(name.as_str())
            .bind(id)
            .execute(conn)
            .await?;
    }
    if let Some(role) = changes.role {
        db::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(id)
            .execute(conn)
            .await?;
    }
    if let Some(venues) = &changes.venues {
        set_venues(conn, id, venues).await?;
    }
    let now = Utc::now().timestamp_millis();
    if let Some(disabled) = changes.disabled {
        db::query(
            "UPDATE users SET disabled_at = CASE WHEN $1 = 1 THEN COALESCE(disabled_at, $2)
             ELSE NULL END WHERE id = $3",
        )
        .bind(i64::from(disabled))
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    }
    if let Some(hash) = &changes.password_hash {
        db::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash.as_str())
            .bind(id)
            .execute(conn)
            .await?;
    }
    if changes.disabled == Some(true) || changes.password_hash.is_some() {
        // Their sessions end, and their tokens stop for good: a token that leaked with the
        // password must not outlive the reset, nor come back when the user is enabled again.
        db::query("DELETE FROM operator_sessions WHERE user_id = $1")
            .bind(id)
            .execute(conn)
            .await?;
        db::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    }
    if changes.disabled == Some(false) || changes.password_hash.is_some() {
        // A reset or an enabling is how an admin lets a locked-out operator back in.
        let email = before["email"].as_str().unwrap_or_default().to_owned();
        db::query("DELETE FROM login_attempts WHERE key = $1")
            .bind(format!("account:{email}"))
            .execute(conn)
            .await?;
    }
    let mut after = audit::user(conn, id).await?;
    if changes.password_hash.is_some()
        && let Some(serde_json::Value::Object(fields)) = after.as_mut()
    {
        fields.insert("password_changed".into(), true.into());
    }
    audit::record(
        conn,
        by,
        "user.change",
        None,
        Subject::User(id),
        Some(before),
        after,
    )
    .await?;
    user(conn, id).await?.ok_or(StoreError::NotFound("user"))
}

/// # Errors
/// When the database fails.
/// Counts one attempt against `key`; the count after it.
///
/// # Errors
/// When the database fails.
pub(super) async fn count_attempt(
    conn: &mut Conn<'_>,
    key: &str,
    now: DateTime<Utc>,
    window: std::time::Duration,
) -> Result<i64, StoreError> {
    let quiet_since = now
        .timestamp_millis()
        .saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
    db::query_scalar(
        "INSERT INTO login_attempts (key, attempts, last_at) VALUES ($1, 1, $2)
         ON CONFLICT (key) DO UPDATE SET
             attempts = CASE WHEN login_attempts.last_at < $3 THEN 1
                             ELSE login_attempts.attempts + 1 END,
             last_at = $2
         RETURNING attempts",
    )
    .bind(key)
    .bind(now.timestamp_millis())
    .bind(quiet_since)
    .fetch_one(conn)
    .await
}

pub(super) async fn user_actor(conn: &mut Conn<'_>, id: i64) -> Result<Option<Actor>, StoreError> {
    Ok(user(conn, id)
        .await?
        .filter(|user| user.disabled_at.is_none())
        .map(|user| Actor::user(user.id, &user.email, user.role, user.venues)))
}

fn token_record(row: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        created_at: from_millis(row.try_get("created_at")?)?,
        expires_at: millis(row.try_get("expires_at")?)?,
        last_used_at: millis(row.try_get("last_used_at")?)?,
        revoked_at: millis(row.try_get("revoked_at")?)?,
    })
}

const TOKEN_COLUMNS: &str =
    "id, user_id, name, prefix, created_at, expires_at, last_used_at, revoked_at";

/// Stores a token, recorded as `token.create` (its name and prefix, never the token).
///
/// # Errors
/// [`StoreError::NotFound`] for an unknown user.
pub(super) async fn create_token(
    conn: &mut Conn<'_>,
    new: &NewToken,
    by: &Actor,
) -> Result<TokenRecord, StoreError> {
    if user(conn, new.user_id).await?.is_none() {
        return Err(StoreError::NotFound("user"));
    }
    let row = db::query(format!(
        "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TOKEN_COLUMNS}"
    ))
    .bind(new.user_id)
    .bind(new.name.as_str())
    .bind(new.token_hash.as_str())
    .bind(new.prefix.as_str())
    .bind(Utc::now().timestamp_millis())
    .bind(new.expires_at.map(|t| t.timestamp_millis()))
    .fetch_one(conn)
    .await?;
    let token = token_record(&row)?;
    let after = serde_json::json!({
        "token_id": token.id, "name": token.name, "prefix": token.prefix,
        "expires_at": token.expires_at,
    });
    audit::record(
        conn,
        by,
        "token.create",
        None,
        Subject::User(new.user_id),
        None,
        Some(after),
    )
    .await?;
    Ok(token)
}

/// # Errors
/// When the database fails.
pub(super) async fn tokens(
    conn: &mut Conn<'_>,
    user_id: i64,
) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = db::query(format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY id"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(token_record).collect()
}

/// Revokes a token, recorded as `token.revoke`.
///
/// # Errors
/// [`StoreError::NotFound`] when the user has no such token.
pub(super) async fn revoke_token(
    conn: &mut Conn<'_>,
    user_id: i64,
    token_id: i64,
    by: &Actor,
) -> Result<(), StoreError> {
    let revoked = db::query(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1)
         WHERE id = $2 AND user_id = $3",
    )
    .bind(Utc::now().timestamp_millis())
    .bind(token_id)
    .bind(user_id)
    .execute(conn)
    .await?;
    if revoked == 0 {
        return Err(StoreError::NotFound("token"));
    }
    audit::record(
        conn,
        by,
        "token.revoke",
        None,
        Subject::User(user_id),
        None,
        Some(serde_json::json!({ "token_id": token_id })),
    )
    .await
}

/// The token's user and when it was last noted as used, if it is valid at `now`.
///
/// # Errors
/// When the database fails.
pub(super) async fn token_owner(
    conn: &mut Conn<'_>,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<(i64, i64, Option<i64>)>, StoreError> {
    let row = db::query(
        "SELECT id, user_id, last_used_at FROM api_tokens
         WHERE token_hash = $1 AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(token_hash)
    .bind(now.timestamp_millis())
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok((
            row.try_get("id")?,
            row.try_get("user_id")?,
            row.try_get("last_used_at")?,
        ))
    })
    .transpose()
}

/// # Errors
/// When the database fails.
pub(super) async fn note_token_use(
    conn: &mut Conn<'_>,
    token_id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    db::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
        .bind(now.timestamp_millis())
        .bind(token_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// # Errors
/// When the database fails.
pub(super) async fn load_session(
    conn: &mut Conn<'_>,
    id_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<SessionRow>, StoreError> {
    let row = db::query(
        "SELECT id_hash, user_id, data, expires_at FROM operator_sessions
         WHERE id_hash = $1 AND expires_at > $2",
    )
    .bind(id_hash)
    .bind(now.timestamp_millis())
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(SessionRow {
            id_hash: row.try_get("id_hash")?,
            user_id: row.try_get("user_id")?,
            data: row.try_get("data")?,
            expires_at: from_millis(row.try_get("expires_at")?)?,
        })
    })
    .transpose()
}

/// Inserts or replaces a session.
///
/// # Errors
/// When the database fails.
pub(super) async fn save_session(conn: &mut Conn<'_>, row: &SessionRow) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO operator_sessions (id_hash, user_id, data, expires_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (id_hash) DO UPDATE SET user_id = excluded.user_id, data = excluded.data,
             expires_at = excluded.expires_at",
    )
    .bind(row.id_hash.as_str())
    .bind(row.user_id)
    .bind(row.data.as_str())
    .bind(row.expires_at.timestamp_millis())
    .execute(conn)
    .await?;
    Ok(())
}
