//! The outbound queue: subscriptions, the messages queued for each from the change feed, and
//! their claims and attempts. Several nodes share it: a subscription's queuing and a message's
//! claim are each taken by one node (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
//! process).

use chrono::{DateTime, Duration, Utc};

use super::StoreError;
use super::changes::message_id;
use super::db::{self, Conn, Row};
use super::records::{
    Attempt, ClaimedMessage, NewSubscription, ResendFilter, SubscriptionChanges,
    SubscriptionRecord, WebhookBacklog, WebhookMessageRecord,
};
use super::sql::{from_millis, json_list};

/// Changes a subscription's queuing reads at a time.
const QUEUE_STEP: i64 = 500;

fn list_of<T: serde::de::DeserializeOwned>(text: &str) -> Vec<T> {
    serde_json::from_str(text).unwrap_or_default()
}

fn millis(t: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    t.map(from_millis).transpose()
}

const SUBSCRIPTION_COLUMNS: &str = "s.id, s.url, s.description, s.event_types, s.venues, s.enabled,
    s.disabled_reason, s.failing_since, s.last_success_at, s.created_at,
    (SELECT COUNT(*) FROM webhook_messages m WHERE m.subscription_id = s.id AND m.state = 'pending') AS pending,
    (SELECT COUNT(*) FROM webhook_messages m WHERE m.subscription_id = s.id AND m.state = 'failed') AS failed";

fn subscription_record(row: &Row) -> Result<SubscriptionRecord, StoreError> {
    Ok(SubscriptionRecord {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: list_of(&row.try_get::<String>("event_types")?),
        venues: list_of(&row.try_get::<String>("venues")?),
        enabled: row.try_get::<i64>("enabled")? != 0,
        disabled_reason: row.try_get("disabled_reason")?,
        failing_since: millis(row.try_get("failing_since")?)?,
        last_success_at: millis(row.try_get("last_success_at")?)?,
        pending: row.try_get("pending")?,
        failed: row.try_get("failed")?,
        created_at: from_millis(row.try_get("created_at")?)?,
    })
}

/// Creates a subscription that receives the changes committed from now on.
///
/// # Errors
/// When the database fails.
pub(super) async fn create(
    conn: &mut Conn<'_>,
    new: &NewSubscription,
) -> Result<SubscriptionRecord, StoreError> {
    let now = Utc::now().timestamp_millis();
    let id: i64 = db::query_scalar(
        "INSERT INTO webhook_subscriptions (url, secret, description, event_types, venues,
             queued_to, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, (SELECT COALESCE(MAX(seq), 0) FROM changes), $6, $6)
         RETURNING id",
    )
    .bind(new.url.as_str())
    .bind(new.secret.as_str())
    .bind(new.description.as_deref())
    .bind(json_list(new.event_types.iter()))
    .bind(json_list(new.venues.iter()))
    .bind(now)
    .fetch_one(conn)
    .await?;
    get(conn, id)
        .await?
        .ok_or(StoreError::NotFound("subscription"))
}

/// # Errors
/// When the database fails.
pub(super) async fn get(
    conn: &mut Conn<'_>,
    id: i64,
) -> Result<Option<SubscriptionRecord>, StoreError> {
    db::query(format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions s WHERE s.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(subscription_record)
    .transpose()
}

/// # Errors
/// When the database fails.
pub(super) async fn list(conn: &mut Conn<'_>) -> Result<Vec<SubscriptionRecord>, StoreError> {
    db::query(format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions s ORDER BY s.id"
    ))
    .fetch_all(conn)
    .await?
    .iter()
    .map(subscription_record)
    .collect()
}

/// # Errors
/// [`StoreError::NotFound`]; when the database fails.
pub(super) async fn update(
    conn: &mut Conn<'_>,
    id: i64,
    changes: &SubscriptionChanges,
) -> Result<SubscriptionRecord, StoreError> {
    let now = Utc::now().timestamp_millis();
    let found = db::query(
        "UPDATE webhook_subscriptions SET
             url = COALESCE($2, url),
             description = COALESCE($3, description),
             event_types = COALESCE($4, event_types),
             venues = COALESCE($5, venues),
             enabled = COALESCE($6, enabled),
             disabled_reason = CASE WHEN $6 = 1 THEN NULL
                 WHEN $6 = 0 THEN 'disabled by an operator' ELSE disabled_reason END,
             failing_since = CASE WHEN $6 = 1 THEN NULL ELSE failing_since END,
             updated_at = $7
         WHERE id = $1",
    )
    .bind(id)
    .bind(changes.url.as_deref())
    .bind(changes.description.as_deref())
    .bind(changes.event_types.as_ref().map(|t| json_list(t.iter())))
    .bind(changes.venues.as_ref().map(|v| json_list(v.iter())))
    .bind(changes.enabled.map(i64::from))
    .bind(now)
    .execute(conn)
    .await?;
    if found == 0 {
        return Err(StoreError::NotFound("subscription"));
    }
    get(conn, id)
        .await?
        .ok_or(StoreError::NotFound("subscription"))
}

/// Deletes a subscription and its queued messages.
///
/// # Errors
/// [`StoreError::NotFound`]; when the database fails.
pub(super) async fn delete(conn: &mut Conn<'_>, id: i64) -> Result<(), StoreError> {
    db::query("DELETE FROM webhook_messages WHERE subscription_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    let found = db::query("DELETE FROM webhook_subscriptions WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    if found == 0 {
        return Err(StoreError::NotFound("subscription"));
    }
    Ok(())
}

/// Queues, for each enabled subscription no other node is queuing, the messages of the changes
/// committed since its last queuing that it subscribes to. Returns how many were queued.
///
/// # Errors
/// When the database fails.
pub(super) async fn queue(conn: &mut Conn<'_>, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let lock = if conn.is_postgres() {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let subscriptions = db::query(format!(
        "SELECT id, event_types, venues, queued_to FROM webhook_subscriptions
         WHERE enabled = 1 AND queued_to < (SELECT COALESCE(MAX(seq), 0) FROM changes)
         ORDER BY id{lock}"
    ))
    .fetch_all(conn)
    .await?;
    let mut queued = 0;
    for subscription in subscriptions {
        let id: i64 = subscription.try_get("id")?;
        let types: Vec<String> = list_of(&subscription.try_get::<String>("event_types")?);
        let venues: Vec<i64> = list_of(&subscription.try_get::<String>("venues")?);
        let from: i64 = subscription.try_get("queued_to")?;
        let changes = db::query(
            "SELECT seq, type, venue_id, ordering_key FROM changes WHERE seq > $1
             ORDER BY seq LIMIT $2",
        )
        .bind(from)
        .bind(QUEUE_STEP)
        .fetch_all(conn)
        .await?;
        let Some(last) = changes.last() else {
            continue;
        };
        let to: i64 = last.try_get("seq")?;
        let mut rows = Vec::new();
        for change in &changes {
            let kind: String = change.try_get("type")?;
            let venue: i64 = change.try_get("venue_id")?;
            if (types.is_empty() || types.contains(&kind))
                && (venues.is_empty() || venues.contains(&venue))
            {
                rows.push((
                    change.try_get::<i64>("seq")?,
                    change.try_get::<String>("ordering_key")?,
                    kind,
                ));
            }
        }
        for chunk in rows.chunks(100) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = i * 3;
                    format!(
                        "($1, ${}, ${}, ${}, 'pending', $2, $2)",
                        n + 3,
                        n + 4,
                        n + 5
                    )
                })
                .collect();
            let mut insert = db::query(format!(
                "INSERT INTO webhook_messages (subscription_id, change_seq, ordering_key, type,
                     state, next_attempt_at, created_at) VALUES {}
                 ON CONFLICT (subscription_id, change_seq) DO NOTHING",
                values.join(", ")
            ))
            .bind(id)
            .bind(now.timestamp_millis());
            for (seq, key, kind) in chunk {
                insert = insert.bind(*seq).bind(key.as_str()).bind(kind.as_str());
            }
            queued += insert.execute(conn).await?;
        }
        db::query("UPDATE webhook_subscriptions SET queued_to = $1 WHERE id = $2")
            .bind(to)
            .bind(id)
            .execute(conn)
            .await?;
    }
    Ok(queued)
}

/// Claims up to `limit` messages due at `now` until `lease_until`, none of the subscriptions
/// in `skip` (this node's busiest): of each subscription and ordering key only the oldest
/// waiting message, so a booking's messages go one at a time, in order; a message another
/// node holds is skipped.
///
/// # Errors
/// When the database fails.
pub(super) async fn claim(
    conn: &mut Conn<'_>,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
    skip: &[i64],
) -> Result<Vec<ClaimedMessage>, StoreError> {
    let lock = if conn.is_postgres() {
        " FOR UPDATE OF m SKIP LOCKED"
    } else {
        ""
    };
    let skipped = if skip.is_empty() {
        String::new()
    } else {
        let places: Vec<String> = (0..skip.len()).map(|i| format!("${}", i + 3)).collect();
        format!(" AND m.subscription_id NOT IN ({})", places.join(", "))
    };
    let mut select = db::query_scalar(format!(
        "SELECT m.id FROM webhook_messages m
             JOIN webhook_subscriptions s ON s.id = m.subscription_id
         WHERE m.state = 'pending' AND m.next_attempt_at <= $1
           AND (m.claimed_until IS NULL OR m.claimed_until < $1) AND s.enabled = 1
           AND NOT EXISTS (SELECT 1 FROM webhook_messages e
               WHERE e.subscription_id = m.subscription_id AND e.ordering_key = m.ordering_key
                 AND e.state = 'pending' AND e.change_seq < m.change_seq){skipped}
         ORDER BY m.next_attempt_at, m.id LIMIT $2{lock}"
    ))
    .bind(now.timestamp_millis())
    .bind(limit);
    for id in skip {
        select = select.bind(*id);
    }
    let ids: Vec<i64> = select.fetch_all(conn).await?;
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        let row = db::query(
            "UPDATE webhook_messages SET claimed_until = $2 WHERE id = $1
             RETURNING subscription_id, change_seq, created_at, attempts",
        )
        .bind(id)
        .bind(lease_until.timestamp_millis())
        .fetch_one(conn)
        .await?;
        let seq: i64 = row.try_get("change_seq")?;
        let subscription_id: i64 = row.try_get("subscription_id")?;
        let target = db::query(
            "SELECT s.url, s.secret, c.payload FROM webhook_subscriptions s, changes c
             WHERE s.id = $1 AND c.seq = $2",
        )
        .bind(subscription_id)
        .bind(seq)
        .fetch_optional(conn)
        .await?;
        let Some(target) = target else {
            // The change was purged (retention): nothing left to send.
            db::query(
                "UPDATE webhook_messages SET state = 'failed', last_error = 'purged' WHERE id = $1",
            )
            .bind(id)
            .execute(conn)
            .await?;
            continue;
        };
        claimed.push(ClaimedMessage {
            row: id,
            subscription_id,
            url: target.try_get("url")?,
            secret: target.try_get("secret")?,
            seq,
            payload: target.try_get("payload")?,
            attempts: row.try_get("attempts")?,
            created_at: from_millis(row.try_get("created_at")?)?,
        });
    }
    Ok(claimed)
}

/// Ends the claims on `rows` without an attempt.
///
/// # Errors
/// When the database fails.
pub(super) async fn release(conn: &mut Conn<'_>, rows: &[i64]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let places: Vec<String> = (1..=rows.len()).map(|i| format!("${i}")).collect();
    let mut release = db::query(format!(
        "UPDATE webhook_messages SET claimed_until = NULL
         WHERE state = 'pending' AND id IN ({})",
        places.join(", ")
    ));
    for row in rows {
        release = release.bind(*row);
    }
    release.execute(conn).await?;
    Ok(())
}

/// Records how an attempt ended, and what it says of its subscription: a delivery clears its
/// failure; a failure starts or continues it, and one that has lasted `disable_after` disables
/// the subscription (its messages wait).
///
/// # Errors
/// When the database fails.
pub(super) async fn finish(
    conn: &mut Conn<'_>,
    message: &ClaimedMessage,
    attempt: &Attempt,
    now: DateTime<Utc>,
    disable_after: std::time::Duration,
) -> Result<(), StoreError> {
    let at = now.timestamp_millis();
    match attempt {
        Attempt::Delivered { status } => {
            db::query(
                "UPDATE webhook_messages SET state = 'delivered', attempts = attempts + 1,
                     delivered_at = $2, last_status = $3, last_error = NULL, claimed_until = NULL
                 WHERE id = $1",
            )
            .bind(message.row)
            .bind(at)
            .bind(*status)
            .execute(conn)
            .await?;
            db::query(
                "UPDATE webhook_subscriptions SET failing_since = NULL, last_success_at = $2
                 WHERE id = $1",
            )
            .bind(message.subscription_id)
            .bind(at)
            .execute(conn)
            .await?;
        }
        Attempt::Failed {
            status,
            error,
            retry_at,
        } => {
            db::query(
                "UPDATE webhook_messages SET attempts = attempts + 1, last_status = $2,
                     last_error = $3, claimed_until = NULL,
                     state = CASE WHEN $4 IS NULL THEN 'failed' ELSE 'pending' END,
                     next_attempt_at = COALESCE($4, next_attempt_at)
                 WHERE id = $1",
            )
            .bind(message.row)
            .bind(*status)
            .bind(error.as_str())
            .bind(retry_at.map(|t| t.timestamp_millis()))
            .execute(conn)
            .await?;
            let window = Duration::from_std(disable_after).unwrap_or(Duration::MAX);
            let disable_before = now
                .checked_sub_signed(window)
                .map_or(i64::MIN, |t| t.timestamp_millis());
            db::query(
                "UPDATE webhook_subscriptions SET failing_since = COALESCE(failing_since, $2),
                     enabled = CASE WHEN failing_since IS NOT NULL AND failing_since <= $3
                         THEN 0 ELSE enabled END,
                     disabled_reason = CASE WHEN failing_since IS NOT NULL AND failing_since <= $3
                         THEN 'every attempt failed for too long' ELSE disabled_reason END
                 WHERE id = $1",
            )
            .bind(message.subscription_id)
            .bind(at)
            .bind(disable_before)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// A subscription's messages, newest first, in `state` if given.
///
/// # Errors
/// When the database fails.
pub(super) async fn messages(
    conn: &mut Conn<'_>,
    subscription_id: i64,
    state: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<WebhookMessageRecord>, StoreError> {
    let rows = db::query(
        "SELECT change_seq, type, state, attempts, next_attempt_at, last_status, last_error,
             created_at, delivered_at
         FROM webhook_messages WHERE subscription_id = $1 AND ($2 IS NULL OR state = $2)
           AND change_seq < $3
         ORDER BY change_seq DESC LIMIT $4",
    )
    .bind(subscription_id)
    .bind(state)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit.clamp(1, 1_000))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get("change_seq")?;
            let state: String = row.try_get("state")?;
            Ok(WebhookMessageRecord {
                id: message_id(seq),
                cursor: seq.to_string(),
                r#type: row.try_get("type")?,
                next_attempt_at: if state == "pending" {
                    millis(row.try_get("next_attempt_at")?)?
                } else {
                    None
                },
                state,
                attempts: row.try_get("attempts")?,
                last_status: row.try_get("last_status")?,
                last_error: row.try_get("last_error")?,
                created_at: from_millis(row.try_get("created_at")?)?,
                delivered_at: millis(row.try_get("delivered_at")?)?,
            })
        })
        .collect()
}

/// Sends the messages `filter` selects again, from now, as new attempts. Returns how many.
///
/// # Errors
/// When the database fails.
pub(super) async fn resend(
    conn: &mut Conn<'_>,
    filter: &ResendFilter,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    db::query(
        "UPDATE webhook_messages SET state = 'pending', attempts = 0, next_attempt_at = $2,
             claimed_until = NULL, created_at = $2
         WHERE subscription_id = $1 AND state <> 'pending'
           AND ($3 IS NULL OR change_seq = $3) AND ($4 IS NULL OR state = $4)
           AND ($5 IS NULL OR created_at >= $5)",
    )
    .bind(filter.subscription_id)
    .bind(now.timestamp_millis())
    .bind(filter.seq)
    .bind(filter.state.as_deref())
    .bind(filter.since.map(|t| t.timestamp_millis()))
    .execute(conn)
    .await
}

/// # Errors
/// When the database fails.
pub(super) async fn backlog(conn: &mut Conn<'_>) -> Result<WebhookBacklog, StoreError> {
    let row = db::query(
        "SELECT COUNT(*) AS pending, MIN(created_at) AS oldest,
             (SELECT COUNT(*) FROM webhook_subscriptions WHERE enabled = 0) AS disabled
         FROM webhook_messages WHERE state = 'pending'",
    )
    .fetch_one(conn)
    .await?;
    Ok(WebhookBacklog {
        pending: row.try_get("pending")?,
        oldest_pending: millis(row.try_get("oldest")?)?,
        disabled: row.try_get("disabled")?,
    })
}
