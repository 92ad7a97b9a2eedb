//! Writing events: a raw event stored with its outcome, a mapping applied under its sales'
//! and venues' locks (and across nodes on PostgreSQL), a failure kept for a replay.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::domain::{Mapped, Outcome, Reason};
use crate::store::db::{self, Conn, LockWait};
use crate::store::records::*;
use crate::store::{Ingested, Reprocess, SaleKey, StoreError, apply, postgres, venue};

/// The columns [`insert_event`] writes, in the order it gives their values.
const INSERTED_EVENT_COLUMNS: &str = "id, received_at, partner, route, method, event_type, path, query, \
    headers, body, body_encoding, body_sha256, handler, handler_version, outcome, reason, \
    detail, venue_id, sale_id, processed_at, body_bytes, body_truncated, secret_label";

static INSERT_EVENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=INSERTED_EVENT_COLUMNS.split(',').count())
        .map(|n| format!("${n}"))
        .collect();
    format!(
        "INSERT INTO events ({INSERTED_EVENT_COLUMNS}) VALUES ({})",
        placeholders.join(", ")
    )
});

/// Stores a raw event with its outcome under `id`, reserved with [`Conn::next_event_id`].
/// In a PostgreSQL batch the row is inserted with the batch's other events just before its
/// commit ([`Conn::deferred_inserts`]): nothing in a batch reads an event row back, and one
/// round trip per event less is what PostgreSQL's rate is bound by.
pub(in crate::store) async fn insert_event(
    conn: &mut Conn<'_>,
    id: i64,
    event: &NewEvent,
    outcome: &Ingested,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    use db::Bind;
    let headers = serde_json::to_string(&event.headers).unwrap_or_else(|_| "{}".to_owned());
    let processed_at = (outcome.outcome != Outcome::Pending).then(|| now.timestamp_millis());
    let values = vec![
        id.param(),
        event.received_at.timestamp_millis().param(),
        event.partner.as_str().param(),
        event.route.param(),
        event.method.as_str().param(),
        event.event_type.as_str().param(),
        event.path.as_str().param(),
        event.query.as_deref().param(),
        headers.param(),
        (&event.body.bytes[..]).param(),
        event.body.encoding.param(),
        event.body_sha256.as_str().param(),
        event.handler.as_deref().param(),
        event.handler_version.as_deref().param(),
        outcome.outcome.as_str().param(),
        outcome.reason.map(|r| r.as_str()).param(),
        outcome.detail.as_deref().param(),
        outcome.venue_id.param(),
        outcome.sale_id.param(),
        processed_at.param(),
        i64::try_from(event.body_bytes).ok().param(),
        event.body_truncated.param(),
        event.secret_label.as_deref().param(),
    ];
    if let Some(deferred) = conn.deferred_inserts() {
        deferred.push(db::DeferredInsert {
            table: "events",
            columns: INSERTED_EVENT_COLUMNS,
            values: values.into_iter().map(db::Param::into_owned).collect(),
        });
        return Ok(id);
    }
    db::query(INSERT_EVENT.as_str())
        .bind_params(values)
        .execute_unseen(conn)
        .await?;
    Ok(id)
}

pub(in crate::store) async fn record_outcome(
    conn: &mut Conn<'_>,
    result: &Ingested,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    db::query(
        "UPDATE events SET outcome = $1, reason = $2, detail = $3, venue_id = $4, sale_id = $5,
             processed_at = $6
         WHERE id = $7",
    )
    .bind(result.outcome.as_str())
    .bind(result.reason.map(|r| r.as_str()))
    .bind(result.detail.as_deref())
    .bind(result.venue_id)
    .bind(result.sale_id)
    .bind(now.timestamp_millis())
    .bind(result.event_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// On PostgreSQL, takes the sales' advisory locks for the transaction, waiting until
/// `deadline` at most (on SQLite the in-process lock already serialises them).
pub(super) async fn lock_across_nodes(
    conn: &mut Conn<'_>,
    keys: &[SaleKey],
    deadline: Instant,
) -> Result<(), StoreError> {
    if let Some(postgres) = conn.as_postgres() {
        let left = deadline.saturating_duration_since(Instant::now());
        postgres::lock_sales(postgres, keys, left).await?;
    }
    Ok(())
}

/// Which writer an event goes to on PostgreSQL: one per partner location, so a venue's
/// events never contend with each other for its lock on one node.
pub(super) fn route_of(partner: &str, keys: &[SaleKey]) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let key = keys.first()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (partner, key.location_id.as_str()).hash(&mut hasher);
    Some(hasher.finish())
}

pub(super) async fn ingest_locked(
    conn: &mut Conn<'_>,
    keys: Arc<[SaleKey]>,
    deadline: Instant,
    event: Arc<NewEvent>,
    mapped: Mapped,
) -> Result<Ingested, StoreError> {
    conn.wait_for_locks_until(deadline);
    let wait_until = conn.waits_for_locks().then_some(deadline);
    let event_id = match (&mapped, wait_until, &keys[..]) {
        // The usual delivery in a PostgreSQL batch: its id, its sale and its venue in one
        // round trip.
        (Mapped::Apply { location_id, .. }, None, [] | [_]) if conn.is_postgres() => {
            let sale = keys.first().map(postgres::advisory_key);
            venue::reserve_event_id_reading_venue(conn, &event.partner, location_id, sale).await?
        }
        _ => match conn.as_postgres() {
            Some(postgres) => {
                postgres::reserve_event_id_locking(postgres, &keys[..], wait_until).await?
            }
            None => conn.next_event_id().await?,
        },
    };
    ingest_event(conn, event_id, &event, mapped).await
}

/// Stores a raw event whose processing failed (its effects were undone with them) as
/// `failed`, so it is kept for a replay.
pub(super) async fn record_processing_failure(
    conn: &mut Conn<'_>,
    event: &NewEvent,
    cause: &StoreError,
) -> Result<Ingested, StoreError> {
    let event_id = conn.next_event_id().await?;
    let failed = failure(event_id, cause);
    insert_event(conn, event_id, event, &failed, Utc::now()).await?;
    Ok(failed)
}

/// The outcome of an event whose processing failed with `cause`: `internal_error` for a
/// panic (our bug), `processing_error` for anything else.
pub(super) fn failure(event_id: i64, cause: &StoreError) -> Ingested {
    let reason = match cause {
        StoreError::Panicked(_) => Reason::InternalError,
        _ => Reason::ProcessingError,
    };
    Ingested {
        event_id,
        outcome: Outcome::Failed,
        reason: Some(reason),
        detail: Some(cause.to_string()),
        venue_id: None,
        sale_id: None,
        match_rule: None,
    }
}

/// Records on a stored event that reprocessing it failed with `cause`.
pub(super) async fn record_reprocessing_failure(
    conn: &mut Conn<'_>,
    event_id: i64,
    cause: &StoreError,
) -> Result<Ingested, StoreError> {
    let failed = failure(event_id, cause);
    record_outcome(conn, &failed, Utc::now()).await?;
    db::query("UPDATE events SET replays = replays + 1 WHERE id = $1")
        .bind(event_id)
        .execute(conn)
        .await?;
    Ok(failed)
}

pub(super) async fn reprocess_locked(
    conn: &mut Conn<'_>,
    keys: Vec<SaleKey>,
    deadline: Instant,
    event_id: i64,
    mapped: Mapped,
    handler_version: Option<String>,
) -> Result<Ingested, StoreError> {
    conn.wait_for_locks_until(deadline);
    lock_across_nodes(conn, &keys, deadline).await?;
    reprocess_event(conn, event_id, mapped, handler_version).await
}

/// Applying a mapping, with a panic inside it (a bug in a rule) turned into a processing
/// failure: the caller undoes the write and keeps the raw event as `failed` with reason
/// `internal_error`, like any other processing failure.
pub(super) async fn processed(
    work: impl std::future::Future<Output = Result<Ingested, StoreError>>,
) -> Result<Ingested, StoreError> {
    crate::store::guarded(work)
        .await
        .map_err(|error| match error {
            StoreError::Panicked(_) => StoreError::Processing(Box::new(error)),
            other => other,
        })
}

/// Applies a raw event's mapping and stores the event with its outcome, in one insert under
/// an id reserved first (what it touches refers to it). If anything fails the whole write is
/// undone, and the raw event is then stored as `failed` on its own (by [`SqlStore::ingest`]
/// for a processing failure, by the gateway for any other), so it is never lost and can be
/// replayed.
pub(super) async fn ingest_event(
    conn: &mut Conn<'_>,
    event_id: i64,
    event: &NewEvent,
    mapped: Mapped,
) -> Result<Ingested, StoreError> {
    let now = Utc::now();
    let result = processed(apply::process(conn, event_id, &event.partner, mapped, now)).await?;
    insert_event(conn, event_id, event, &result, now).await?;
    Ok(result)
}

/// Applies a fresh mapping to a stored event. An event that was processed and now maps to a
/// duplicate of what is stored keeps its `processed` outcome, so replays converge.
pub(super) async fn reprocess_event(
    conn: &mut Conn<'_>,
    event_id: i64,
    mapped: Mapped,
    handler_version: Option<String>,
) -> Result<Ingested, StoreError> {
    let row = db::query("SELECT partner, outcome FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound("event"))?;
    let partner: String = row.try_get("partner")?;
    let before: String = row.try_get("outcome")?;
    let now = Utc::now();
    let result = processed(apply::process(conn, event_id, &partner, mapped, now)).await?;
    let converged = before == Outcome::Processed.as_str()
        && matches!(
            result.reason,
            Some(Reason::DuplicateEvent | Reason::StaleUpdate)
        );
    if converged {
        db::query("UPDATE events SET replays = replays + 1 WHERE id = $1")
            .bind(event_id)
            .execute(conn)
            .await?;
        return Ok(Ingested {
            outcome: Outcome::Processed,
            ..result
        });
    }
    record_outcome(conn, &result, now).await?;
    db::query("UPDATE events SET replays = replays + 1, handler_version = $1 WHERE id = $2")
        .bind(handler_version)
        .bind(event_id)
        .execute(conn)
        .await?;
    Ok(result)
}

/// On PostgreSQL, holds the diaries of every venue the sales of `keys` belong to, in lock-id
/// order, before anything is applied. A replay's page spans venues, and applying its events
/// in their own order would take the venues' locks in that order: two replays at once (or
/// a replay and an operator's change) would each hold a venue the other waits for, a
/// deadlock PostgreSQL breaks by failing one event (found by the outside attack on issue 15).
/// Taken in one order everywhere, they cannot wait on each other in a circle. A delivery's
/// write holds one venue, and in a batch never waits.
pub(super) async fn lock_venues_in_order(
    conn: &mut Conn<'_>,
    keys: &[SaleKey],
    deadline: Instant,
) -> Result<(), StoreError> {
    let Some(postgres) = conn.as_postgres() else {
        return Ok(());
    };
    if keys.is_empty() {
        return Ok(());
    }
    let partners: Vec<String> = keys.iter().map(|k| k.partner.clone()).collect();
    let locations: Vec<String> = keys.iter().map(|k| k.location_id.clone()).collect();
    let wait = LockWait::Until(deadline);
    postgres::lock_venues_of_locations(postgres, &partners, &locations, wait).await
}

/// Reprocesses each event of a batch in its own savepoint, in order.
pub(super) async fn reprocess_all(
    conn: &mut Conn<'_>,
    keys: Vec<SaleKey>,
    deadline: Instant,
    batch: Vec<Reprocess>,
) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
    conn.wait_for_locks_until(deadline);
    lock_across_nodes(conn, &keys, deadline).await?;
    lock_venues_in_order(conn, &keys, deadline).await?;
    let mut results = Vec::with_capacity(batch.len());
    for item in batch {
        let savepoint = conn.savepoint().await?;
        let result = reprocess_event(conn, item.event_id, item.mapped, item.handler_version).await;
        match result {
            Ok(ingested) => {
                savepoint.release(conn).await?;
                results.push(Ok(ingested));
            }
            Err(StoreError::Processing(cause)) => {
                savepoint.rollback(conn).await?;
                results.push(Ok(
                    record_reprocessing_failure(conn, item.event_id, &cause).await?
                ));
            }
            Err(error) => {
                savepoint.rollback(conn).await?;
                results.push(Err(error));
            }
        }
    }
    Ok(results)
}
