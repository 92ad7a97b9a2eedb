//! The SQL implementation of [`Store`], shared by SQLite and PostgreSQL.
//!
//! Statements use `$n` placeholders and types both databases accept (BIGINT, TEXT, bytes), so
//! one text serves both; the dialect modules hold what differs.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio::time::Instant;

use super::body;
use super::db::{self, BoxFuture, Conn, LockWait, Param, Pending, Row};
use super::postgres::Postgres;
use super::records::*;
use super::sqlite::Sqlite;
use super::{
    Backend, InFlight, Ingested, Reprocess, SaleKey, Store, StoreError, Verdict, api_budget, apply,
    bookings, health, postgres, rematch, retention,
};
use crate::domain::{BookingStatus, Mapped, MatchRule, Outcome, Reason, SaleKind, SaleState};

/// A store over a SQL database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqlStore {
    engine: Engine,
    in_flight: InFlight,
}

#[derive(Debug, Clone)]
enum Engine {
    Sqlite(Sqlite),
    Postgres(Postgres),
}

impl SqlStore {
    pub(super) fn sqlite(engine: Sqlite) -> SqlStore {
        SqlStore {
            engine: Engine::Sqlite(engine),
            in_flight: InFlight::default(),
        }
    }

    pub(super) fn postgres(engine: Postgres) -> SqlStore {
        SqlStore {
            engine: Engine::Postgres(engine),
            in_flight: InFlight::default(),
        }
    }

    /// This process's in-flight sale locks.
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// Runs `op` in a write transaction (on SQLite: the next group commit) and answers once
    /// it is durable.
    async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + 'static,
    {
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.write(op).await,
            Engine::Postgres(postgres) => postgres.write(op).await,
        }
    }

    /// Queues `op` for a write transaction shared with other writes, and returns once it is
    /// queued: on SQLite the next group commit, on PostgreSQL the next batch of the writer
    /// `route` picks (writes with the same route never contend with each other). Writes
    /// queued one after another on one route run in that order, so a sale's in-flight lock
    /// need only be held until its write is queued, not until it commits: a burst of one
    /// sale's deliveries shares one batch instead of waiting a commit each. `op` may run
    /// twice on PostgreSQL: a run that met a lock held elsewhere is rolled back and runs
    /// again alone.
    async fn submit<T, F>(&self, route: Option<u64>, op: F) -> Result<Pending<T>, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'c> Fn(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + Sync
            + 'static,
    {
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.submit(op).await,
            Engine::Postgres(postgres) => postgres.submit(route, op).await,
        }
    }

    /// Runs `op` on a reading connection.
    async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + 'static,
    {
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.read(op).await,
            Engine::Postgres(postgres) => postgres.read(op).await,
        }
    }

    /// Completes with the reason if the store can never write again in this process (the
    /// SQLite writer thread, or a PostgreSQL writer thread, died): the process must exit so
    /// a supervisor restarts it. PostgreSQL's connections recover on their own.
    pub async fn died(&self) -> String {
        let mut died = match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.died(),
            Engine::Postgres(postgres) => postgres.died(),
        };
        let reason = died
            .wait_for(Option::is_some)
            .await
            .ok()
            .map(|reason| reason.clone().unwrap_or_default());
        match (reason, &self.engine) {
            (Some(reason), _) => reason,
            (None, Engine::Sqlite(_)) => "the SQLite writer is gone".to_owned(),
            // The writers were closed with the store.
            (None, Engine::Postgres(_)) => std::future::pending().await,
        }
    }

    /// Waits for writes in progress, then closes the connections it can.
    pub async fn close(&self) {
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.flush().await,
            Engine::Postgres(postgres) => postgres.close().await,
        }
    }
}

pub(super) fn decimal_text(value: Decimal) -> String {
    value.to_string()
}

pub(super) fn decimal(text: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str(text).map_err(|_| StoreError::Corrupt(format!("amount {text:?}")))
}

/// A decimal column (stored as text) of a row.
pub(super) fn money_column(row: &Row, column: &str) -> Result<Decimal, StoreError> {
    decimal(&row.try_get::<String>(column)?)
}

fn opt_decimal(text: Option<String>) -> Result<Option<Decimal>, StoreError> {
    text.as_deref().map(decimal).transpose()
}

pub(super) fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("time {ms}")))
}

fn opt_millis(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(from_millis).transpose()
}

pub(super) fn parse_status(text: &str) -> Result<BookingStatus, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("booking status {text:?}")))
}

pub(super) fn json_list<S: serde::Serialize>(items: impl Iterator<Item = S>) -> String {
    let items: Vec<S> = items.collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_json_list<T: serde::de::DeserializeOwned>(text: Option<String>) -> Vec<T> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Stores a raw event with its outcome under `id`, reserved with [`Conn::next_event_id`].
pub(super) async fn insert_event(
    conn: &mut Conn<'_>,
    id: i64,
    event: &NewEvent,
    outcome: &Ingested,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let headers = serde_json::to_string(&event.headers).unwrap_or_else(|_| "{}".to_owned());
    let processed_at = (outcome.outcome != Outcome::Pending).then(|| now.timestamp_millis());
    db::query_scalar(
        "INSERT INTO events (id, received_at, partner, route, method, event_type, path, query,
             headers, body, body_encoding, body_sha256, handler, handler_version, outcome, reason,
             detail, venue_id, sale_id, processed_at, body_bytes, body_truncated)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
             $18, $19, $20, $21, $22)
         RETURNING id",
    )
    .bind(id)
    .bind(event.received_at.timestamp_millis())
    .bind(event.partner.as_str())
    .bind(event.route)
    .bind(event.method.as_str())
    .bind(event.event_type.as_str())
    .bind(event.path.as_str())
    .bind(event.query.as_deref())
    .bind(headers)
    .bind(&event.body.bytes[..])
    .bind(event.body.encoding)
    .bind(event.body_sha256.as_str())
    .bind(event.handler.as_deref())
    .bind(event.handler_version.as_deref())
    .bind(outcome.outcome.as_str())
    .bind(outcome.reason.map(|r| r.as_str()))
    .bind(outcome.detail.as_deref())
    .bind(outcome.venue_id)
    .bind(outcome.sale_id)
    .bind(processed_at)
    .bind(i64::try_from(event.body_bytes).ok())
    .bind(event.body_truncated)
    .fetch_one(conn)
    .await
}

pub(super) async fn record_outcome(
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
async fn lock_across_nodes(
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
fn route_of(partner: &str, keys: &[SaleKey]) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let key = keys.first()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (partner, key.location_id.as_str()).hash(&mut hasher);
    Some(hasher.finish())
}

async fn ingest_locked(
    conn: &mut Conn<'_>,
    keys: Arc<[SaleKey]>,
    deadline: Instant,
    event: Arc<NewEvent>,
    mapped: Mapped,
) -> Result<Ingested, StoreError> {
    conn.wait_for_locks_until(deadline);
    let wait_until = conn.waits_for_locks().then_some(deadline);
    let event_id = match conn.as_postgres() {
        Some(postgres) => {
            postgres::reserve_event_id_locking(postgres, &keys[..], wait_until).await?
        }
        None => conn.next_event_id().await?,
    };
    ingest_event(conn, event_id, &event, mapped).await
}

/// Stores a raw event whose processing failed (its effects were undone with them) as
/// `failed`, so it is kept for a replay.
async fn record_processing_failure(
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
fn failure(event_id: i64, cause: &StoreError) -> Ingested {
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
async fn record_reprocessing_failure(
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

async fn reprocess_locked(
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
async fn processed(
    work: impl std::future::Future<Output = Result<Ingested, StoreError>>,
) -> Result<Ingested, StoreError> {
    super::guarded(work).await.map_err(|error| match error {
        StoreError::Panicked(_) => StoreError::Processing(Box::new(error)),
        other => other,
    })
}

/// Applies a raw event's mapping and stores the event with its outcome, in one insert under
/// an id reserved first (what it touches refers to it). If anything fails the whole write is
/// undone, and the raw event is then stored as `failed` on its own (by [`SqlStore::ingest`]
/// for a processing failure, by the gateway for any other), so it is never lost and can be
/// replayed.
async fn ingest_event(
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
async fn reprocess_event(
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
async fn lock_venues_in_order(
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
async fn reprocess_all(
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

pub(super) const SALE_COLUMNS: &str = "id, venue_id, partner, external_id, number, kind, origin_external_id,
    state, opened_at, closed_at, version, currency, total, paid, tax, net, tip, service_charge,
    discount, deposit, covers, tables, booking_id, match_rule, match_reason, match_candidates, last_event_id,
    matched_table, matched_at, time_basis, match_evidence";

pub(super) fn sale_record(row: &Row) -> Result<SaleRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let rule: Option<String> = row.try_get("match_rule")?;
    Ok(SaleRecord {
        id: row.try_get("id")?,
        venue_id: row.try_get("venue_id")?,
        partner: row.try_get("partner")?,
        external_id: row.try_get("external_id")?,
        number: row.try_get("number")?,
        kind: SaleKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("sale kind {kind:?}")))?
            .as_str(),
        origin_external_id: row.try_get("origin_external_id")?,
        state: SaleState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("sale state {state:?}")))?
            .as_str(),
        opened_at: from_millis(row.try_get("opened_at")?)?,
        closed_at: opt_millis(row.try_get("closed_at")?)?,
        version: row.try_get("version")?,
        currency: row.try_get("currency")?,
        total: money_column(row, "total")?,
        paid: money_column(row, "paid")?,
        tax: money_column(row, "tax")?,
        net: money_column(row, "net")?,
        tip: money_column(row, "tip")?,
        service_charge: money_column(row, "service_charge")?,
        discount: money_column(row, "discount")?,
        deposit: money_column(row, "deposit")?,
        covers: row.try_get("covers")?,
        tables: parse_json_list(row.try_get("tables")?),
        match_: MatchRecord {
            rule: rule
                .as_deref()
                .and_then(MatchRule::parse)
                .map(MatchRule::as_str),
            reason: row.try_get("match_reason")?,
            booking_id: row.try_get("booking_id")?,
            candidates: parse_json_list(row.try_get("match_candidates")?),
            evidence: super::matching::stored_evidence(row.try_get("match_evidence")?)
                .into_iter()
                .map(|e| EvidenceRecord {
                    booking_id: e.booking_id,
                    evidence: e.evidence,
                })
                .collect(),
            table: row.try_get("matched_table")?,
            at: row
                .try_get::<Option<i64>>("matched_at")?
                .map(from_millis)
                .transpose()?,
            time_basis: row
                .try_get::<Option<String>>("time_basis")?
                .as_deref()
                .and_then(crate::domain::matching::TimeBasis::parse)
                .map(crate::domain::matching::TimeBasis::as_str),
        },
        last_event_id: row.try_get("last_event_id")?,
    })
}

const EVENT_COLUMNS: &str = "id, received_at, partner, route, method, event_type, handler,
    handler_version, outcome, reason, detail, venue_id, sale_id, processed_at, purged_at";

fn event_summary(row: &Row) -> Result<EventSummary, StoreError> {
    Ok(EventSummary {
        id: row.try_get("id")?,
        received_at: from_millis(row.try_get("received_at")?)?,
        partner: row.try_get("partner")?,
        route: row.try_get("route")?,
        method: row.try_get("method")?,
        event_type: row.try_get("event_type")?,
        handler: row.try_get("handler")?,
        handler_version: row.try_get("handler_version")?,
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        detail: row.try_get("detail")?,
        venue_id: row.try_get("venue_id")?,
        sale_id: row.try_get("sale_id")?,
        processed_at: opt_millis(row.try_get("processed_at")?)?,
        purged_at: opt_millis(row.try_get("purged_at")?)?,
    })
}

/// A `WHERE` clause built from optional filters, with its `$n` parameters in order.
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    params: Vec<Param<'static>>,
}

impl Conditions {
    fn push(&mut self, clause: &str, param: Param<'static>) {
        self.params.push(param);
        self.clauses
            .push(clause.replace("$?", &format!("${}", self.params.len())));
    }

    fn text(&mut self, clause: &str, value: &Option<String>) {
        if let Some(value) = value {
            self.push(clause, Param::Text(Some(value.clone().into())));
        }
    }

    fn int(&mut self, clause: &str, value: i64) {
        self.push(clause, Param::Int(Some(value)));
    }

    /// The whole statement, ready to run.
    fn query(self, select: &str, order_and_limit: &str) -> db::Query<'static> {
        let mut sql = select.to_owned();
        if !self.clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.clauses.join(" AND "));
        }
        sql.push(' ');
        sql.push_str(order_and_limit);
        self.params
            .into_iter()
            .fold(db::query(sql), db::Query::bind_param)
    }
}

const STORED_EVENT: &str = "SELECT id, partner, event_type, query, headers, body, body_encoding,
    outcome, reason, attempts FROM events";

fn stored_event(row: &Row) -> Result<StoredEvent, StoreError> {
    let headers: String = row.try_get("headers")?;
    Ok(StoredEvent {
        id: row.try_get("id")?,
        partner: row.try_get("partner")?,
        event_type: row.try_get("event_type")?,
        query: row.try_get("query")?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: body::decode(
            row.try_get("body")?,
            row.try_get::<Option<String>>("body_encoding")?.as_deref(),
        )?,
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        attempts: row.try_get("attempts")?,
    })
}

fn replay_conditions(filter: &ReplayFilter) -> Conditions {
    let mut conditions = Conditions::default();
    // Rejected events failed authentication, but for those that did authenticate and
    // could not be read then (an unsupported charset or encoding).
    let readable_later: Vec<String> = Reason::REPLAYABLE_REFUSALS
        .iter()
        .map(|r| format!("'{}'", r.as_str()))
        .collect();
    conditions.clauses.push(format!(
        "(outcome <> 'rejected' OR reason IN ({}))",
        readable_later.join(", ")
    ));
    conditions
        .clauses
        .push("(reason IS NULL OR reason <> 'test_notification')".to_owned());
    // A purged event has no payload left to map.
    conditions.clauses.push("purged_at IS NULL".to_owned());
    if let Some(id) = filter.event_id {
        conditions.int("id = $?", id);
    }
    conditions.text("partner = $?", &filter.partner);
    conditions.text("outcome = $?", &filter.outcome);
    conditions.text("reason = $?", &filter.reason);
    if let Some(from) = filter.from {
        conditions.int("received_at >= $?", from.timestamp_millis());
    }
    if let Some(to) = filter.to {
        conditions.int("received_at < $?", to.timestamp_millis());
    }
    conditions
}

/// Rows of `query`, each made into a `T`.
async fn fetch_each<T>(
    conn: &mut Conn<'_>,
    query: db::Query<'_>,
    make: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    query.fetch_all(conn).await?.iter().map(make).collect()
}

async fn venue_record(conn: &mut Conn<'_>, id: i64) -> Result<Option<VenueRecord>, StoreError> {
    let Some(row) = db::query(
        "SELECT id, name, timezone, currency, tolerance_before_min, tolerance_after_min,
             table_aliases, walk_ins, sku_tables, covers_source
         FROM venues WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let locations = db::query(
        "SELECT partner, location_id, enabled FROM partner_locations WHERE venue_id = $1
         ORDER BY id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|l| {
        Ok(LocationRecord {
            partner: l.try_get("partner")?,
            location_id: l.try_get("location_id")?,
            enabled: l.try_get("enabled")?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let aliases: String = row.try_get("table_aliases")?;
    let skus: String = row.try_get("sku_tables")?;
    Ok(Some(VenueRecord {
        id: row.try_get("id")?,
        table_aliases: serde_json::from_str(&aliases).unwrap_or_default(),
        sku_tables: serde_json::from_str(&skus).unwrap_or_default(),
        walk_ins: row.try_get("walk_ins")?,
        covers_source: crate::domain::venue::CoversSource::parse(
            &row.try_get::<String>("covers_source")?,
        )
        .unwrap_or_default()
        .as_str(),
        name: row.try_get("name")?,
        timezone: row.try_get("timezone")?,
        currency: row.try_get("currency")?,
        tolerances: TolerancesRecord {
            before_start_minutes: row.try_get("tolerance_before_min")?,
            after_end_minutes: row.try_get("tolerance_after_min")?,
        },
        locations,
    }))
}

async fn insert_venue(conn: &mut Conn<'_>, venue: &NewVenue) -> Result<i64, StoreError> {
    let id: i64 = db::query_scalar(
        "INSERT INTO venues (name, timezone, currency, created_at) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(venue.name.as_str())
    .bind(venue.timezone.as_str())
    .bind(venue.currency.as_deref())
    .bind(Utc::now().timestamp_millis())
    .fetch_one(conn)
    .await?;
    for location in &venue.locations {
        let taken: Option<i64> = db::query_scalar(
            "SELECT venue_id FROM partner_locations WHERE partner = $1 AND location_id = $2",
        )
        .bind(location.partner.as_str())
        .bind(location.location_id.as_str())
        .fetch_optional(conn)
        .await?;
        if let Some(other) = taken {
            return Err(StoreError::Conflict(format!(
                "location {} of partner {} already belongs to venue {other}",
                location.location_id, location.partner
            )));
        }
        db::query(
            "INSERT INTO partner_locations (venue_id, partner, location_id, enabled)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(location.partner.as_str())
        .bind(location.location_id.as_str())
        .bind(location.enabled)
        .execute(conn)
        .await?;
    }
    Ok(id)
}

async fn sale_detail(conn: &mut Conn<'_>, id: i64) -> Result<Option<SaleDetail>, StoreError> {
    let Some(row) = db::query(format!("SELECT {SALE_COLUMNS} FROM sales WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
    else {
        return Ok(None);
    };
    let lines = db::query(
        "SELECT external_id, description, quantity, unit_amount, amount, tax_rate, tax_included
         FROM sale_lines WHERE sale_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|l| {
        Ok(SaleLineRecord {
            external_id: l.try_get("external_id")?,
            description: l.try_get("description")?,
            quantity: money_column(l, "quantity")?,
            unit_amount: money_column(l, "unit_amount")?,
            amount: money_column(l, "amount")?,
            tax_rate: opt_decimal(l.try_get("tax_rate")?)?,
            tax_included: l.try_get("tax_included")?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let payments = db::query(
        "SELECT external_id, method, amount, tip, paid_at FROM sale_payments
         WHERE sale_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|p| {
        Ok(PaymentRecord {
            external_id: p.try_get("external_id")?,
            method: p.try_get("method")?,
            amount: money_column(p, "amount")?,
            tip: money_column(p, "tip")?,
            paid_at: opt_millis(p.try_get("paid_at")?)?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(SaleDetail {
        sale: sale_record(&row)?,
        lines,
        payments,
    }))
}

async fn event_detail(conn: &mut Conn<'_>, id: i64) -> Result<Option<EventDetail>, StoreError> {
    let Some(row) = db::query(format!(
        "SELECT {EVENT_COLUMNS}, path, query, headers, body, body_encoding, body_sha256,
             body_bytes, body_truncated
         FROM events WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let body = body::decode(
        row.try_get("body")?,
        row.try_get::<Option<String>>("body_encoding")?.as_deref(),
    )?;
    let headers: String = row.try_get("headers")?;
    let headers: BTreeMap<String, String> = serde_json::from_str(&headers).unwrap_or_default();
    let body_bytes = body.len();
    let received_bytes = row
        .try_get::<Option<i64>>("body_bytes")?
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(body_bytes);
    let body_truncated = row.try_get::<i64>("body_truncated")? != 0;
    let (text, base64) = match String::from_utf8(body) {
        Ok(text) => (Some(text), None),
        Err(error) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(error.into_bytes())),
        ),
    };
    Ok(Some(EventDetail {
        summary: event_summary(&row)?,
        path: row.try_get("path")?,
        query: row.try_get("query")?,
        headers,
        body_sha256: row.try_get("body_sha256")?,
        body_bytes,
        received_bytes,
        body_truncated,
        body: text,
        body_base64: base64,
    }))
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        match self.engine {
            Engine::Sqlite(_) => Backend::Sqlite,
            Engine::Postgres(_) => Backend::Postgres,
        }
    }

    async fn ingest(
        &self,
        event: NewEvent,
        mapped: Mapped,
        lock_keys: &[SaleKey],
        lock_wait: Duration,
    ) -> Result<Ingested, StoreError> {
        // The sale is held shared, and only until its write is queued: writes of one sale
        // queue on one writer (the route is the sale's location) and run one after another,
        // so a burst of one sale's deliveries shares a batch instead of waiting a commit
        // each. A replay holds it exclusively until its commit. Across nodes on PostgreSQL,
        // the sale's advisory lock waits until `deadline`.
        let deadline = Instant::now() + lock_wait;
        let held = self.in_flight.acquire_shared(lock_keys, deadline).await?;
        let route = route_of(&event.partner, lock_keys);
        let keys: Arc<[SaleKey]> = lock_keys.into();
        let event = Arc::new(event);
        let stored = Arc::clone(&event);
        let queued = self
            .submit(route, move |conn| {
                Box::pin(ingest_locked(
                    conn,
                    Arc::clone(&keys),
                    deadline,
                    Arc::clone(&stored),
                    mapped.clone(),
                ))
            })
            .await?;
        drop(held);
        match queued.wait().await {
            Err(StoreError::Processing(cause)) => {
                let cause = Arc::new(*cause);
                self.submit(route, move |conn| {
                    let (event, cause) = (Arc::clone(&event), Arc::clone(&cause));
                    Box::pin(async move { record_processing_failure(conn, &event, &cause).await })
                })
                .await?
                .wait()
                .await
            }
            other => other,
        }
    }

    async fn replayable(
        &self,
        filter: &ReplayFilter,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conditions = replay_conditions(filter);
        conditions.int("id > $?", after_id);
        let query = conditions.query(
            STORED_EVENT,
            &format!("ORDER BY id LIMIT {}", limit.clamp(1, 10_000)),
        );
        self.read(move |conn| Box::pin(fetch_each(conn, query, stored_event)))
            .await
    }

    async fn due_fetches(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conditions = replay_conditions(&ReplayFilter::default());
        // A literal, so the partial index on pending events serves it.
        conditions.clauses.push("outcome = 'pending'".to_owned());
        conditions.int(
            "(next_attempt_at IS NULL OR next_attempt_at <= $?)",
            now.timestamp_millis(),
        );
        let query = conditions.query(
            STORED_EVENT,
            &format!("ORDER BY id LIMIT {}", limit.clamp(1, 1000)),
        );
        self.read(move |conn| Box::pin(fetch_each(conn, query, stored_event)))
            .await
    }

    async fn claim_fetch(
        &self,
        event_id: i64,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        channel: &str,
        hourly_limit: u32,
    ) -> Result<api_budget::FetchClaim, StoreError> {
        let channel = channel.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                if !api_budget::has_call(conn, &channel, now, hourly_limit).await? {
                    return Ok(api_budget::FetchClaim::OverBudget);
                }
                let claimed = db::query(
                    "UPDATE events SET next_attempt_at = $1
                     WHERE id = $2 AND outcome = 'pending'
                       AND (next_attempt_at IS NULL OR next_attempt_at <= $3)",
                )
                .bind(lease_until.timestamp_millis())
                .bind(event_id)
                .bind(now.timestamp_millis())
                .execute(conn)
                .await?;
                if claimed != 1 {
                    return Ok(api_budget::FetchClaim::Taken);
                }
                api_budget::count_call(conn, &channel, now).await?;
                Ok(api_budget::FetchClaim::Claimed)
            })
        })
        .await
    }

    async fn quiet_api(&self, channel: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let channel = channel.to_owned();
        self.write(move |conn| {
            Box::pin(async move { api_budget::quiet(conn, &channel, until).await })
        })
        .await
    }

    async fn fetch_failed(
        &self,
        event_id: i64,
        attempts: i64,
        retry_at: Option<DateTime<Utc>>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let (outcome, reason) = match retry_at {
            Some(_) => (Outcome::Pending, Reason::AwaitingFetch),
            None => (Outcome::Failed, Reason::FetchFailed),
        };
        let detail = detail.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                db::query(
                    "UPDATE events SET attempts = $1, next_attempt_at = $2, outcome = $3, reason = $4, detail = $5
                     WHERE id = $6 AND outcome = 'pending'",
                )
                .bind(attempts)
                .bind(retry_at.map(|t| t.timestamp_millis()))
                .bind(outcome.as_str())
                .bind(reason.as_str())
                .bind(detail)
                .bind(event_id)
                .execute(conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn count_replayable(&self, filter: &ReplayFilter) -> Result<i64, StoreError> {
        let query = replay_conditions(filter).query("SELECT COUNT(*) AS n FROM events", "");
        self.read(move |conn| {
            Box::pin(async move {
                let row = query.fetch_one(conn).await?;
                row.try_get("n")
            })
        })
        .await
    }

    async fn reprocess(
        &self,
        event_id: i64,
        mapped: Mapped,
        handler_version: Option<String>,
        lock_keys: &[SaleKey],
        lock_wait: Duration,
    ) -> Result<Ingested, StoreError> {
        let deadline = Instant::now() + lock_wait;
        let _held = self.in_flight.acquire(lock_keys, deadline).await?;
        let keys = lock_keys.to_vec();
        let reprocessed = self
            .write(move |conn| {
                Box::pin(reprocess_locked(
                    conn,
                    keys,
                    deadline,
                    event_id,
                    mapped,
                    handler_version,
                ))
            })
            .await;
        match reprocessed {
            Err(StoreError::Processing(cause)) => {
                self.write(move |conn| {
                    Box::pin(
                        async move { record_reprocessing_failure(conn, event_id, &cause).await },
                    )
                })
                .await
            }
            other => other,
        }
    }

    async fn reprocess_batch(
        &self,
        batch: Vec<Reprocess>,
        lock_wait: Duration,
    ) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
        let mut keys: Vec<SaleKey> = batch
            .iter()
            .flat_map(|item| item.lock_keys.iter().cloned())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let deadline = Instant::now() + lock_wait;
        let _held = self.in_flight.acquire(&keys, deadline).await?;
        self.write(move |conn| Box::pin(reprocess_all(conn, keys, deadline, batch)))
            .await
    }

    async fn record(&self, event: NewEvent, verdict: Verdict) -> Result<i64, StoreError> {
        let route = route_of(&event.partner, &[]);
        let (event, verdict) = (Arc::new(event), Arc::new(verdict));
        self.submit(route, move |conn| {
            let (event, verdict) = (Arc::clone(&event), Arc::clone(&verdict));
            Box::pin(async move {
                let event_id = conn.next_event_id().await?;
                let stored = Ingested {
                    event_id,
                    outcome: verdict.outcome,
                    reason: verdict.reason,
                    detail: verdict.detail.clone(),
                    venue_id: None,
                    sale_id: None,
                    match_rule: None,
                };
                insert_event(conn, event_id, &event, &stored, Utc::now()).await
            })
        })
        .await?
        .wait()
        .await
    }

    async fn create_venue(&self, venue: NewVenue) -> Result<VenueRecord, StoreError> {
        let id = self
            .write(move |conn| Box::pin(async move { insert_venue(conn, &venue).await }))
            .await?;
        self.venue(id).await?.ok_or(StoreError::NotFound("venue"))
    }

    async fn venue(&self, id: i64) -> Result<Option<VenueRecord>, StoreError> {
        self.read(move |conn| Box::pin(venue_record(conn, id)))
            .await
    }

    async fn venues(&self) -> Result<Vec<VenueRecord>, StoreError> {
        self.read(|conn| {
            Box::pin(async move {
                let ids: Vec<i64> = db::query_scalar("SELECT id FROM venues ORDER BY name, id")
                    .fetch_all(conn)
                    .await?;
                let mut venues = Vec::with_capacity(ids.len());
                for id in ids {
                    venues.extend(venue_record(conn, id).await?);
                }
                Ok(venues)
            })
        })
        .await
    }

    async fn update_venue(&self, id: i64, changes: VenueChanges) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(bookings::update_venue(conn, id, changes)))
            .await
    }

    async fn create_booking(&self, venue_id: i64, booking: NewBooking) -> Result<i64, StoreError> {
        self.write(move |conn| Box::pin(bookings::create(conn, venue_id, booking)))
            .await
    }

    async fn update_booking(&self, id: i64, changes: BookingChanges) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(bookings::update(conn, id, changes)))
            .await
    }

    async fn booking(&self, id: i64) -> Result<Option<BookingView>, StoreError> {
        self.read(move |conn| Box::pin(bookings::view(conn, id)))
            .await
    }

    async fn diary(&self, venue_id: i64, date: chrono::NaiveDate) -> Result<DiaryView, StoreError> {
        self.read(move |conn| Box::pin(bookings::diary(conn, venue_id, date)))
            .await
    }

    async fn guest(&self, id: i64) -> Result<Option<GuestView>, StoreError> {
        self.read(move |conn| Box::pin(bookings::guest(conn, id)))
            .await
    }

    async fn match_sale(&self, sale_id: i64, booking_id: i64) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(bookings::set_manual_link(conn, sale_id, Some(booking_id))))
            .await
    }

    async fn unmatch_sale(&self, sale_id: i64) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(bookings::set_manual_link(conn, sale_id, None)))
            .await
    }

    async fn sales(&self, filter: &SaleFilter) -> Result<Vec<SaleRecord>, StoreError> {
        let mut conditions = Conditions::default();
        conditions.text("partner = $?", &filter.partner);
        conditions.text("external_id = $?", &filter.external_id);
        if let Some(venue_id) = filter.venue_id {
            conditions.int("venue_id = $?", venue_id);
        }
        if let Some(before) = filter.before_id {
            conditions.int("id < $?", before);
        }
        match filter.unmatched {
            Some(true) => conditions.clauses.push("booking_id IS NULL".to_owned()),
            Some(false) => conditions.clauses.push("booking_id IS NOT NULL".to_owned()),
            None => {}
        }
        let query = conditions.query(
            &format!("SELECT {SALE_COLUMNS} FROM sales"),
            &format!("ORDER BY id DESC LIMIT {}", filter.limit.clamp(1, 1000)),
        );
        self.read(move |conn| Box::pin(fetch_each(conn, query, sale_record)))
            .await
    }

    async fn suggestions(
        &self,
        sale_id: i64,
        limit: usize,
    ) -> Result<Option<Vec<SuggestionRecord>>, StoreError> {
        self.read(move |conn| Box::pin(rematch::suggestions(conn, sale_id, limit)))
            .await
    }

    async fn unmatched_sales(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            Box::pin(
                db::query_scalar(
                    "SELECT COUNT(*) FROM sales WHERE booking_id IS NULL AND state <> 'voided'",
                )
                .fetch_one(conn),
            )
        })
        .await
    }

    async fn health(&self, now: DateTime<Utc>) -> Result<Vec<HealthRecord>, StoreError> {
        self.read(move |conn| Box::pin(health::health(conn, now)))
            .await
    }

    async fn sale(&self, id: i64) -> Result<Option<SaleDetail>, StoreError> {
        self.read(move |conn| Box::pin(sale_detail(conn, id))).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventSummary>, StoreError> {
        let mut conditions = Conditions::default();
        conditions.text("partner = $?", &filter.partner);
        conditions.text("outcome = $?", &filter.outcome);
        conditions.text("reason = $?", &filter.reason);
        if let Some(before) = filter.before_id {
            conditions.int("id < $?", before);
        }
        if let Some(from) = filter.from {
            conditions.int("received_at >= $?", from.timestamp_millis());
        }
        if let Some(to) = filter.to {
            conditions.int("received_at < $?", to.timestamp_millis());
        }
        let query = conditions.query(
            &format!("SELECT {EVENT_COLUMNS} FROM events"),
            &format!("ORDER BY id DESC LIMIT {}", filter.limit.clamp(1, 1000)),
        );
        self.read(move |conn| Box::pin(fetch_each(conn, query, event_summary)))
            .await
    }

    async fn event(&self, id: i64) -> Result<Option<EventDetail>, StoreError> {
        self.read(move |conn| Box::pin(event_detail(conn, id)))
            .await
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<PurgeSummary, StoreError> {
        let mut summary = PurgeSummary::default();
        loop {
            let erased = self
                .write(move |conn| Box::pin(retention::purge_events(conn, before, Utc::now())))
                .await?;
            summary.events += erased;
            if erased < retention::BATCH.unsigned_abs() {
                break;
            }
        }
        let (bookings, guests) = self
            .write(move |conn| Box::pin(retention::purge_people(conn, before)))
            .await?;
        summary.bookings = bookings;
        summary.guests = guests;
        Ok(summary)
    }

    async fn ready(&self, within: Duration) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.ready(within).await,
            Engine::Postgres(postgres) => postgres.ready(within).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            Box::pin(async move {
                db::query("SELECT 1").fetch_all(conn).await?;
                Ok(())
            })
        })
        .await
    }
}
