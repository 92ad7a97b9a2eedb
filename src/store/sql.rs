//! The SQL implementation of [`Store`], shared by SQLite and PostgreSQL.
//!
//! Statements use `$n` placeholders and types both databases accept (BIGINT, TEXT, bytes), so
//! one text serves both; the dialect modules hold what differs.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tokio::time::Instant;

use super::records::*;
use super::{
    Backend, InFlight, Ingested, SaleKey, Store, StoreError, Verdict, apply, bookings, postgres,
};
use crate::domain::{BookingStatus, MatchRule, Outcome, SaleKind, SaleState};

/// A store over a SQL database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqlStore {
    backend: Backend,
    /// Every write goes through this pool: one connection on SQLite, the pool on PostgreSQL.
    writer: AnyPool,
    reader: AnyPool,
    in_flight: InFlight,
    /// SQLite: the group-commit writer every ingest goes through.
    group: Option<super::group_commit::GroupWriter>,
}

impl SqlStore {
    pub(super) fn new(backend: Backend, writer: AnyPool, reader: AnyPool) -> SqlStore {
        let group = (backend == Backend::Sqlite)
            .then(|| super::group_commit::GroupWriter::start(writer.clone()));
        SqlStore {
            backend,
            writer,
            reader,
            in_flight: InFlight::default(),
            group,
        }
    }

    /// This process's in-flight sale locks.
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// The pool writes go through (for dialect-level checks).
    #[cfg(test)]
    pub(super) fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

pub(super) fn decimal_text(value: Decimal) -> String {
    value.to_string()
}

pub(super) fn decimal(text: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str(text).map_err(|_| StoreError::Corrupt(format!("amount {text:?}")))
}

/// A decimal column (stored as text) of a row.
pub(super) fn money_column(row: &AnyRow, column: &str) -> Result<Decimal, StoreError> {
    decimal(&row.try_get::<String, _>(column)?)
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

pub(super) async fn insert_event(
    conn: &mut AnyConnection,
    event: &NewEvent,
    verdict: &Verdict,
) -> Result<i64, StoreError> {
    let headers = serde_json::to_string(&event.headers).unwrap_or_else(|_| "{}".to_owned());
    let sha = hex::encode(Sha256::digest(&event.body));
    let id = sqlx::query_scalar(
        "INSERT INTO events (received_at, partner, route, method, event_type, path, query, headers,
             body, body_sha256, handler, handler_version, outcome, reason, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         RETURNING id",
    )
    .bind(event.received_at.timestamp_millis())
    .bind(event.partner.as_str())
    .bind(event.route)
    .bind(event.method.as_str())
    .bind(event.event_type.as_str())
    .bind(event.path.as_str())
    .bind(event.query.as_deref())
    .bind(headers)
    .bind(event.body.as_slice())
    .bind(sha)
    .bind(event.handler.as_deref())
    .bind(event.handler_version.as_deref())
    .bind(verdict.outcome.as_str())
    .bind(verdict.reason.map(|r| r.as_str()))
    .bind(verdict.detail.as_deref())
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

pub(super) async fn record_outcome(
    conn: &mut AnyConnection,
    result: &Ingested,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
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
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) const SALE_COLUMNS: &str = "id, venue_id, partner, external_id, number, kind, origin_external_id,
    state, opened_at, closed_at, version, currency, total, paid, tax, net, tip, service_charge,
    discount, deposit, covers, tables, booking_id, match_rule, match_reason, match_candidates, last_event_id";

pub(super) fn sale_record(row: &AnyRow) -> Result<SaleRecord, StoreError> {
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
        },
        last_event_id: row.try_get("last_event_id")?,
    })
}

const EVENT_COLUMNS: &str = "id, received_at, partner, route, method, event_type, handler,
    handler_version, outcome, reason, detail, venue_id, sale_id, processed_at";

fn event_summary(row: &AnyRow) -> Result<EventSummary, StoreError> {
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
    })
}

/// A `WHERE` clause built from optional filters, with its `$n` arguments in order.
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

enum Arg {
    Text(String),
    Int(i64),
}

impl Conditions {
    fn push(&mut self, clause: &str, arg: Arg) {
        self.args.push(arg);
        self.clauses
            .push(clause.replace("$?", &format!("${}", self.args.len())));
    }

    fn text(&mut self, clause: &str, value: &Option<String>) {
        if let Some(value) = value {
            self.push(clause, Arg::Text(value.clone()));
        }
    }

    fn sql(&self, select: &str, order_and_limit: &str) -> String {
        let mut sql = select.to_owned();
        if !self.clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.clauses.join(" AND "));
        }
        sql.push(' ');
        sql.push_str(order_and_limit);
        sql
    }

    async fn fetch_all(
        self,
        pool: &AnyPool,
        select: &str,
        order_and_limit: &str,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let sql = self.sql(select, order_and_limit);
        let mut query = sqlx::query(&sql);
        for arg in self.args {
            query = match arg {
                Arg::Text(text) => query.bind(text),
                Arg::Int(int) => query.bind(int),
            };
        }
        Ok(query.fetch_all(pool).await?)
    }
}

const STORED_EVENT: &str =
    "SELECT id, partner, event_type, query, headers, body, outcome, attempts FROM events";

fn stored_event(row: &AnyRow) -> Result<StoredEvent, StoreError> {
    let headers: String = row.try_get("headers")?;
    Ok(StoredEvent {
        id: row.try_get("id")?,
        partner: row.try_get("partner")?,
        event_type: row.try_get("event_type")?,
        query: row.try_get("query")?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: row.try_get("body")?,
        outcome: row.try_get("outcome")?,
        attempts: row.try_get("attempts")?,
    })
}

fn replay_conditions(filter: &ReplayFilter) -> Conditions {
    let mut conditions = Conditions::default();
    conditions.clauses.push("outcome <> 'rejected'".to_owned());
    conditions
        .clauses
        .push("(reason IS NULL OR reason <> 'test_notification')".to_owned());
    if let Some(id) = filter.event_id {
        conditions.push("id = $?", Arg::Int(id));
    }
    conditions.text("partner = $?", &filter.partner);
    conditions.text("outcome = $?", &filter.outcome);
    conditions.text("reason = $?", &filter.reason);
    if let Some(from) = filter.from {
        conditions.push("received_at >= $?", Arg::Int(from.timestamp_millis()));
    }
    if let Some(to) = filter.to {
        conditions.push("received_at < $?", Arg::Int(to.timestamp_millis()));
    }
    conditions
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ingest(
        &self,
        event: NewEvent,
        mapped: crate::domain::Mapped,
        lock_keys: &[SaleKey],
        lock_wait: Duration,
    ) -> Result<Ingested, StoreError> {
        let deadline = Instant::now() + lock_wait;
        let _held = self.in_flight.acquire(lock_keys, deadline).await?;
        if let Some(group) = &self.group {
            return group.ingest(event, mapped).await;
        }
        let mut tx = self.writer.begin().await?;
        if self.backend == Backend::Postgres {
            let left = deadline.saturating_duration_since(Instant::now());
            postgres::lock_sales(&mut tx, lock_keys, left).await?;
        }
        let pending = Verdict {
            outcome: Outcome::Pending,
            reason: None,
            detail: None,
        };
        let event_id = insert_event(&mut tx, &event, &pending).await?;
        let now = Utc::now();
        let result = apply::process(&mut tx, event_id, &event.partner, mapped, now).await?;
        record_outcome(&mut tx, &result, now).await?;
        tx.commit().await?;
        Ok(result)
    }

    async fn replayable(
        &self,
        filter: &ReplayFilter,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conditions = replay_conditions(filter);
        conditions.push("id > $?", Arg::Int(after_id));
        let rows = conditions
            .fetch_all(
                &self.reader,
                STORED_EVENT,
                &format!("ORDER BY id LIMIT {}", limit.clamp(1, 10_000)),
            )
            .await?;
        rows.iter().map(stored_event).collect()
    }

    async fn due_fetches(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let filter = ReplayFilter {
            outcome: Some(Outcome::Pending.as_str().to_owned()),
            ..ReplayFilter::default()
        };
        let mut conditions = replay_conditions(&filter);
        conditions.push(
            "(next_attempt_at IS NULL OR next_attempt_at <= $?)",
            Arg::Int(now.timestamp_millis()),
        );
        let rows = conditions
            .fetch_all(
                &self.reader,
                STORED_EVENT,
                &format!("ORDER BY id LIMIT {}", limit.clamp(1, 1000)),
            )
            .await?;
        rows.iter().map(stored_event).collect()
    }

    async fn fetch_failed(
        &self,
        event_id: i64,
        attempts: i64,
        retry_at: Option<DateTime<Utc>>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let (outcome, reason) = match retry_at {
            Some(_) => (Outcome::Pending, crate::domain::Reason::AwaitingFetch),
            None => (Outcome::Failed, crate::domain::Reason::FetchFailed),
        };
        sqlx::query(
            "UPDATE events SET attempts = $1, next_attempt_at = $2, outcome = $3, reason = $4, detail = $5
             WHERE id = $6 AND outcome = 'pending'",
        )
        .bind(attempts)
        .bind(retry_at.map(|t| t.timestamp_millis()))
        .bind(outcome.as_str())
        .bind(reason.as_str())
        .bind(detail)
        .bind(event_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn count_replayable(&self, filter: &ReplayFilter) -> Result<i64, StoreError> {
        let rows = replay_conditions(filter)
            .fetch_all(&self.reader, "SELECT COUNT(*) AS n FROM events", "")
            .await?;
        let count = rows.first().map(|row| row.try_get("n")).transpose()?;
        Ok(count.unwrap_or(0))
    }

    async fn reprocess(
        &self,
        event_id: i64,
        mapped: crate::domain::Mapped,
        handler_version: Option<String>,
        lock_keys: &[SaleKey],
        lock_wait: Duration,
    ) -> Result<Ingested, StoreError> {
        let deadline = Instant::now() + lock_wait;
        let _held = self.in_flight.acquire(lock_keys, deadline).await?;
        let mut tx = self.writer.begin().await?;
        if self.backend == Backend::Postgres {
            let left = deadline.saturating_duration_since(Instant::now());
            postgres::lock_sales(&mut tx, lock_keys, left).await?;
        }
        let row = sqlx::query("SELECT partner, outcome FROM events WHERE id = $1")
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("event"))?;
        let partner: String = row.try_get("partner")?;
        let before: String = row.try_get("outcome")?;
        let now = Utc::now();
        let result = apply::process(&mut tx, event_id, &partner, mapped, now).await?;
        let converged = before == Outcome::Processed.as_str()
            && matches!(
                result.reason,
                Some(crate::domain::Reason::DuplicateEvent | crate::domain::Reason::StaleUpdate)
            );
        if converged {
            sqlx::query("UPDATE events SET replays = replays + 1 WHERE id = $1")
                .bind(event_id)
                .execute(&mut *tx)
                .await?;
        } else {
            record_outcome(&mut tx, &result, now).await?;
            sqlx::query(
                "UPDATE events SET replays = replays + 1, handler_version = $1 WHERE id = $2",
            )
            .bind(handler_version.as_deref())
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if converged {
            return Ok(Ingested {
                outcome: Outcome::Processed,
                ..result
            });
        }
        Ok(result)
    }

    async fn record(&self, event: NewEvent, verdict: Verdict) -> Result<i64, StoreError> {
        let mut conn = self.writer.acquire().await?;
        insert_event(&mut conn, &event, &verdict).await
    }

    async fn create_venue(&self, venue: NewVenue) -> Result<VenueRecord, StoreError> {
        let mut tx = self.writer.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO venues (name, timezone, currency, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id",
        )
        .bind(venue.name.as_str())
        .bind(venue.timezone.as_str())
        .bind(venue.currency.as_deref())
        .bind(Utc::now().timestamp_millis())
        .fetch_one(&mut *tx)
        .await?;
        for location in &venue.locations {
            let taken: Option<i64> = sqlx::query_scalar(
                "SELECT venue_id FROM partner_locations WHERE partner = $1 AND location_id = $2",
            )
            .bind(location.partner.as_str())
            .bind(location.location_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(other) = taken {
                return Err(StoreError::Conflict(format!(
                    "location {} of partner {} already belongs to venue {other}",
                    location.location_id, location.partner
                )));
            }
            sqlx::query(
                "INSERT INTO partner_locations (venue_id, partner, location_id, enabled)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(location.partner.as_str())
            .bind(location.location_id.as_str())
            .bind(i64::from(location.enabled))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.venue(id).await?.ok_or(StoreError::NotFound("venue"))
    }

    async fn venue(&self, id: i64) -> Result<Option<VenueRecord>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, name, timezone, currency, tolerance_before_min, tolerance_after_min,
                 table_aliases, walk_ins, sku_tables
             FROM venues WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        else {
            return Ok(None);
        };
        let locations = sqlx::query(
            "SELECT partner, location_id, enabled FROM partner_locations WHERE venue_id = $1
             ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|l| {
            Ok(LocationRecord {
                partner: l.try_get("partner")?,
                location_id: l.try_get("location_id")?,
                enabled: l.try_get::<i64, _>("enabled")? != 0,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let aliases: String = row.try_get("table_aliases")?;
        Ok(Some(VenueRecord {
            id: row.try_get("id")?,
            table_aliases: serde_json::from_str(&aliases).unwrap_or_default(),
            sku_tables: {
                let skus: String = row.try_get("sku_tables")?;
                serde_json::from_str(&skus).unwrap_or_default()
            },
            walk_ins: row.try_get::<i64, _>("walk_ins")? != 0,
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

    async fn update_venue(&self, id: i64, changes: VenueChanges) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        bookings::update_venue(&mut tx, id, changes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_booking(&self, venue_id: i64, booking: NewBooking) -> Result<i64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let id = bookings::create(&mut tx, venue_id, booking).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn update_booking(&self, id: i64, changes: BookingChanges) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        bookings::update(&mut tx, id, changes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn booking(&self, id: i64) -> Result<Option<BookingView>, StoreError> {
        bookings::view(&self.reader, id).await
    }

    async fn diary(&self, venue_id: i64, date: chrono::NaiveDate) -> Result<DiaryView, StoreError> {
        bookings::diary(&self.reader, venue_id, date).await
    }

    async fn guest(&self, id: i64) -> Result<Option<GuestView>, StoreError> {
        bookings::guest(&self.reader, id).await
    }

    async fn match_sale(&self, sale_id: i64, booking_id: i64) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        bookings::set_manual_link(&mut tx, sale_id, Some(booking_id)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn unmatch_sale(&self, sale_id: i64) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        bookings::set_manual_link(&mut tx, sale_id, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sales(&self, filter: &SaleFilter) -> Result<Vec<SaleRecord>, StoreError> {
        let mut conditions = Conditions::default();
        conditions.text("partner = $?", &filter.partner);
        conditions.text("external_id = $?", &filter.external_id);
        if let Some(venue_id) = filter.venue_id {
            conditions.push("venue_id = $?", Arg::Int(venue_id));
        }
        match filter.unmatched {
            Some(true) => conditions.clauses.push("booking_id IS NULL".to_owned()),
            Some(false) => conditions.clauses.push("booking_id IS NOT NULL".to_owned()),
            None => {}
        }
        let rows = conditions
            .fetch_all(
                &self.reader,
                &format!("SELECT {SALE_COLUMNS} FROM sales"),
                &format!("ORDER BY id DESC LIMIT {}", filter.limit.clamp(1, 1000)),
            )
            .await?;
        rows.iter().map(sale_record).collect()
    }

    async fn sale(&self, id: i64) -> Result<Option<SaleDetail>, StoreError> {
        let Some(row) = sqlx::query(&format!("SELECT {SALE_COLUMNS} FROM sales WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
        else {
            return Ok(None);
        };
        let lines = sqlx::query(
            "SELECT external_id, description, quantity, unit_amount, amount, tax_rate, tax_included
             FROM sale_lines WHERE sale_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(&self.reader)
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
                tax_included: l.try_get::<Option<i64>, _>("tax_included")?.map(|v| v != 0),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let payments = sqlx::query(
            "SELECT external_id, method, amount, tip, paid_at FROM sale_payments
             WHERE sale_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(&self.reader)
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

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventSummary>, StoreError> {
        let mut conditions = Conditions::default();
        conditions.text("partner = $?", &filter.partner);
        conditions.text("outcome = $?", &filter.outcome);
        conditions.text("reason = $?", &filter.reason);
        if let Some(before) = filter.before_id {
            conditions.push("id < $?", Arg::Int(before));
        }
        let rows = conditions
            .fetch_all(
                &self.reader,
                &format!("SELECT {EVENT_COLUMNS} FROM events"),
                &format!("ORDER BY id DESC LIMIT {}", filter.limit.clamp(1, 1000)),
            )
            .await?;
        rows.iter().map(event_summary).collect()
    }

    async fn event(&self, id: i64) -> Result<Option<EventDetail>, StoreError> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS}, path, query, headers, body, body_sha256 FROM events WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        else {
            return Ok(None);
        };
        let body: Vec<u8> = row.try_get("body")?;
        let headers: String = row.try_get("headers")?;
        let headers: BTreeMap<String, String> = serde_json::from_str(&headers).unwrap_or_default();
        let body_bytes = body.len();
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
            body: text,
            body_base64: base64,
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}
