//! [`Operators`] on the SQL store: each call one read or one write transaction.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::SqlStore;
use crate::domain::access::Actor;
use crate::store::StoreError;
use crate::store::audit::{self, AuditFilter, AuditRecord, Subject};
use crate::store::db;
use crate::store::operators::{
    self as ops, Login, NewToken, NewUser, Operators, SessionRow, TokenRecord, UserChanges,
    UserRecord,
};

/// How stale a token's `last_used_at` may get before a use writes it again: a token used in
/// a loop writes once a minute, not once a request.
const TOKEN_USE_GRANULARITY: Duration = Duration::minutes(1);

#[async_trait]
impl Operators for SqlStore {
    async fn create_user(&self, new: NewUser, by: Actor) -> Result<UserRecord, StoreError> {
        self.write(move |conn| Box::pin(async move { ops::create_user(conn, &new, &by).await }))
            .await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|conn| Box::pin(ops::users(conn))).await
    }

    async fn user(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        self.read(move |conn| Box::pin(ops::user(conn, id))).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.login(email).await?.map(|login| login.user))
    }

    async fn login(&self, email: &str) -> Result<Option<Login>, StoreError> {
        let email = email.to_owned();
        self.read(move |conn| Box::pin(async move { ops::login(conn, &email).await }))
            .await
    }

    async fn update_user(
        &self,
        id: i64,
        changes: UserChanges,
        by: Actor,
    ) -> Result<UserRecord, StoreError> {
        self.write(move |conn| {
            Box::pin(async move { ops::update_user(conn, id, &changes, &by).await })
        })
        .await
    }

    async fn logged_in(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(async move {
                db::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
                    .bind(at.timestamp_millis())
                    .bind(id)
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn login_attempt(
        &self,
        keys: Vec<(String, u32)>,
        now: DateTime<Utc>,
        window: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            Box::pin(async move {
                let mut within = true;
                for (key, limit) in &keys {
                    let attempts = ops::count_attempt(conn, key, now, window).await?;
                    within &= attempts <= i64::from(*limit);
                }
                Ok(within)
            })
        })
        .await
    }

    async fn login_succeeded(&self, account_key: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(async move {
                db::query("DELETE FROM login_attempts WHERE key = $1")
                    .bind(account_key.as_str())
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn user_actor(&self, id: i64) -> Result<Option<Actor>, StoreError> {
        self.read(move |conn| Box::pin(ops::user_actor(conn, id)))
            .await
    }

    async fn create_token(&self, new: NewToken, by: Actor) -> Result<TokenRecord, StoreError> {
        self.write(move |conn| Box::pin(async move { ops::create_token(conn, &new, &by).await }))
            .await
    }

    async fn tokens(&self, user_id: i64) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(move |conn| Box::pin(ops::tokens(conn, user_id)))
            .await
    }

    async fn revoke_token(&self, user_id: i64, token_id: i64, by: Actor) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(async move { ops::revoke_token(conn, user_id, token_id, &by).await })
        })
        .await
    }

    async fn token_actor(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Actor>, StoreError> {
        let hash = token_hash.to_owned();
        let found = self
            .read(move |conn| {
                Box::pin(async move {
                    let Some((token, user, last_used)) = ops::token_owner(conn, &hash, now).await?
                    else {
                        return Ok(None);
                    };
                    Ok(ops::user_actor(conn, user)
                        .await?
                        .map(|actor| (token, last_used, actor.via(format!("token {token}")))))
                })
            })
            .await?;
        let Some((token, last_used, actor)) = found else {
            return Ok(None);
        };
        let stale = last_used.is_none_or(|last| {
            now.timestamp_millis().saturating_sub(last) >= TOKEN_USE_GRANULARITY.num_milliseconds()
        });
        if stale
            && let Err(error) = self
                .write(move |conn| Box::pin(ops::note_token_use(conn, token, now)))
                .await
        {
            // The request goes on: when a token was last used is a hint, not a guard.
            tracing::warn!(error = %error, "a token's last use was not recorded");
        }
        Ok(Some(actor))
    }

    async fn load_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRow>, StoreError> {
        let hash = id_hash.to_owned();
        self.read(move |conn| Box::pin(async move { ops::load_session(conn, &hash, now).await }))
            .await
    }

    async fn save_session(&self, row: SessionRow) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(async move { ops::save_session(conn, &row).await }))
            .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let hash = id_hash.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                db::query("DELETE FROM operator_sessions WHERE id_hash = $1")
                    .bind(hash.as_str())
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write(move |conn| {
            Box::pin(async move {
                db::query("DELETE FROM operator_sessions WHERE expires_at <= $1")
                    .bind(now.timestamp_millis())
                    .execute(conn)
                    .await
            })
        })
        .await
    }

    async fn record_audit(
        &self,
        by: Actor,
        action: &'static str,
        venue_id: Option<i64>,
        subject: Subject,
        after: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(async move {
                audit::record(conn, &by, action, venue_id, subject, None, Some(after)).await
            })
        })
        .await
    }

    async fn record_replay_audit(
        &self,
        by: Actor,
        after: serde_json::Value,
        events: Vec<i64>,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(async move { audit::record_replay(conn, &by, after, &events).await })
        })
        .await
    }

    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |conn| Box::pin(async move { audit::list(conn, &filter).await }))
            .await
    }
}
