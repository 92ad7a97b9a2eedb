//! Applying a handler's commands inside the ingest transaction.
//!
//! The decisions are the domain's ([`crate::domain::matching::decide`],
//! [`BookingStatus::after_sales`], [`SaleSnapshot::supersedes`]); this module gathers their
//! inputs with indexed queries and writes their results.

use chrono::{DateTime, Duration, Utc};
use sqlx::{Acquire, AnyConnection, Row, Transaction};

use super::sql::{decimal_text, from_millis, json_list, parse_status};
use super::{Ingested, StoreError};
use crate::domain::booking::SalesSummary;
use crate::domain::matching::{CandidateBooking, MatchInput, decide};
use crate::domain::sale::Freshness;
use crate::domain::{
    BookingStatus, Command, Mapped, MatchDecision, MatchRule, Outcome, Reason, SaleSnapshot,
    SaleState, TableKey, Tolerances,
};

/// The venue an event's location resolved to.
struct Venue {
    id: i64,
    enabled: bool,
    tolerances: Tolerances,
}

fn verdict(
    event_id: i64,
    outcome: Outcome,
    reason: Option<Reason>,
    detail: impl Into<String>,
) -> Ingested {
    Ingested {
        event_id,
        outcome,
        reason,
        detail: Some(detail.into()),
        venue_id: None,
        sale_id: None,
    }
}

/// Decides and applies what `mapped` asks for. Processing errors are caught here: the
/// savepoint is rolled back and the event is marked `failed`, so the raw event still commits.
pub(super) async fn process(
    tx: &mut Transaction<'_, sqlx::Any>,
    event_id: i64,
    partner: &str,
    mapped: Mapped,
    now: DateTime<Utc>,
) -> Result<Ingested, StoreError> {
    let (location_id, commands) = match mapped {
        Mapped::Ignore { reason, detail } => {
            return Ok(verdict(event_id, Outcome::Ignored, Some(reason), detail));
        }
        Mapped::Apply {
            location_id,
            commands,
        } => (location_id, commands),
    };
    let Some(venue) = resolve_venue(tx, partner, &location_id).await? else {
        let detail = format!("location {location_id} is not mapped to a venue");
        return Ok(verdict(
            event_id,
            Outcome::Ignored,
            Some(Reason::UnknownLocation),
            detail,
        ));
    };
    if !venue.enabled {
        let detail = format!("{partner} integration is disabled for venue {}", venue.id);
        let mut result = verdict(
            event_id,
            Outcome::Ignored,
            Some(Reason::IntegrationDisabled),
            detail,
        );
        result.venue_id = Some(venue.id);
        return Ok(result);
    }
    let mut savepoint = tx.begin().await?;
    let mut result = verdict(event_id, Outcome::Processed, None, "no commands");
    let mut failure = None;
    for command in commands {
        match apply(&mut savepoint, event_id, partner, &venue, command, now).await {
            Ok(applied) => result = applied,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    if let Some(error) = failure {
        savepoint.rollback().await?;
        tracing::error!(event_id, error = %error, source = ?std::error::Error::source(&error), "processing failed");
        result = verdict(
            event_id,
            Outcome::Failed,
            Some(Reason::ProcessingError),
            error.to_string(),
        );
    } else {
        savepoint.commit().await?;
    }
    result.venue_id = Some(venue.id);
    Ok(result)
}

async fn apply(
    conn: &mut AnyConnection,
    event_id: i64,
    partner: &str,
    venue: &Venue,
    command: Command,
    now: DateTime<Utc>,
) -> Result<Ingested, StoreError> {
    match command {
        Command::UpsertSale(sale) => upsert_sale(conn, event_id, partner, venue, &sale, now).await,
    }
}

async fn resolve_venue(
    conn: &mut AnyConnection,
    partner: &str,
    location_id: &str,
) -> Result<Option<Venue>, StoreError> {
    let row = sqlx::query(
        "SELECT v.id, v.tolerance_before_min, v.tolerance_after_min, l.enabled
         FROM partner_locations l JOIN venues v ON v.id = l.venue_id
         WHERE l.partner = $1 AND l.location_id = $2",
    )
    .bind(partner)
    .bind(location_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(Venue {
            id: row.try_get("id")?,
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            tolerances: Tolerances {
                before_start: Duration::minutes(row.try_get("tolerance_before_min")?),
                after_end: Duration::minutes(row.try_get("tolerance_after_min")?),
            },
        })
    })
    .transpose()
}

/// The stored state of a sale that decides how a new snapshot applies.
struct StoredSale {
    id: i64,
    version: i64,
    state: SaleState,
    booking_id: Option<i64>,
    match_rule: Option<String>,
    match_reason: Option<String>,
}

async fn stored_sale(
    conn: &mut AnyConnection,
    partner: &str,
    venue_id: i64,
    external_id: &str,
) -> Result<Option<StoredSale>, StoreError> {
    let row = sqlx::query(
        "SELECT id, version, state, booking_id, match_rule, match_reason FROM sales
         WHERE partner = $1 AND venue_id = $2 AND external_id = $3",
    )
    .bind(partner)
    .bind(venue_id)
    .bind(external_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        let state: String = row.try_get("state")?;
        Ok(StoredSale {
            id: row.try_get("id")?,
            version: row.try_get("version")?,
            state: SaleState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("sale state {state:?}")))?,
            booking_id: row.try_get("booking_id")?,
            match_rule: row.try_get("match_rule")?,
            match_reason: row.try_get("match_reason")?,
        })
    })
    .transpose()
}

/// The link a sale ends up with.
struct Link {
    booking_id: Option<i64>,
    rule: Option<&'static str>,
    reason: Option<String>,
    candidates: Vec<i64>,
}

async fn upsert_sale(
    conn: &mut AnyConnection,
    event_id: i64,
    partner: &str,
    venue: &Venue,
    sale: &SaleSnapshot,
    now: DateTime<Utc>,
) -> Result<Ingested, StoreError> {
    let stored = stored_sale(conn, partner, venue.id, &sale.external_id).await?;
    if let Some(stored) = &stored {
        let skipped = match sale.supersedes(stored.version, stored.state) {
            Freshness::Newer => None,
            Freshness::Duplicate => Some((
                Reason::DuplicateEvent,
                format!(
                    "sale {} is already at version {}",
                    sale.external_id, stored.version
                ),
            )),
            Freshness::Stale => Some((
                Reason::StaleUpdate,
                format!(
                    "snapshot version {} is older than the stored version {}",
                    sale.version, stored.version
                ),
            )),
        };
        if let Some((reason, detail)) = skipped {
            let mut result = verdict(event_id, Outcome::Ignored, Some(reason), detail);
            result.sale_id = Some(stored.id);
            return Ok(result);
        }
    }
    let link = match stored
        .as_ref()
        .filter(|s| s.match_rule.as_deref() == Some(MatchRule::Manual.as_str()))
    {
        Some(manual) => Link {
            booking_id: manual.booking_id,
            rule: Some(MatchRule::Manual.as_str()),
            reason: manual.match_reason.clone(),
            candidates: Vec::new(),
        },
        None => match decide_match(conn, partner, venue, sale).await? {
            MatchDecision::Matched(m) => Link {
                booking_id: Some(m.booking_id),
                rule: Some(m.rule.as_str()),
                reason: Some(m.reason),
                candidates: Vec::new(),
            },
            MatchDecision::Ambiguous { candidates, reason } => Link {
                booking_id: None,
                rule: None,
                reason: Some(reason),
                candidates,
            },
            MatchDecision::Unmatched => Link {
                booking_id: None,
                rule: None,
                reason: None,
                candidates: Vec::new(),
            },
        },
    };
    let sale_id = write_sale(conn, event_id, partner, venue.id, sale, &link, now).await?;
    if let Some(booking_id) = link.booking_id {
        adopt_lineage(conn, partner, venue.id, &sale.external_id, booking_id).await?;
    }
    let previous = stored
        .and_then(|s| s.booking_id)
        .filter(|b| Some(*b) != link.booking_id);
    let cause = format!("sale {} {}", sale.external_id, sale.state.as_str());
    for booking_id in link.booking_id.into_iter().chain(previous) {
        refresh_booking_status(conn, booking_id, &cause, event_id, now).await?;
    }
    let detail = match (&link.rule, &link.reason) {
        (Some(rule), Some(reason)) => format!("matched by {rule}: {reason}"),
        (None, Some(reason)) => format!("ambiguous: {reason}"),
        _ => "unmatched".to_owned(),
    };
    let mut result = verdict(event_id, Outcome::Processed, None, detail);
    result.sale_id = Some(sale_id);
    Ok(result)
}

async fn decide_match(
    conn: &mut AnyConnection,
    partner: &str,
    venue: &Venue,
    sale: &SaleSnapshot,
) -> Result<MatchDecision, StoreError> {
    let input = |by_reference, origin_booking, nearby| MatchInput {
        sale,
        by_reference,
        origin_booking,
        nearby,
        tolerances: venue.tolerances,
    };
    if !sale.booking_refs.is_empty() {
        let references: Vec<&str> = sale.booking_refs.iter().map(|r| r.value.as_str()).collect();
        let by_reference = bookings_by_reference(conn, venue.id, &references).await?;
        if !by_reference.is_empty() {
            return Ok(decide(input(&by_reference, None, &[])));
        }
    }
    if let Some(origin) = &sale.origin_external_id {
        let origin_booking: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT booking_id FROM sales WHERE partner = $1 AND venue_id = $2 AND external_id = $3",
        )
        .bind(partner)
        .bind(venue.id)
        .bind(origin.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(booking) = origin_booking.flatten() {
            return Ok(decide(input(&[], Some(booking), &[])));
        }
    }
    if sale.tables.is_empty() {
        return Ok(MatchDecision::Unmatched);
    }
    let nearby = bookings_near(conn, venue, sale.opened_at).await?;
    Ok(decide(input(&[], None, &nearby)))
}

const CANDIDATE_COLUMNS: &str =
    "SELECT b.id, b.reference, b.start_at, b.end_at, b.status, t.table_key
     FROM bookings b LEFT JOIN booking_tables t ON t.booking_id = b.id";

async fn bookings_by_reference(
    conn: &mut AnyConnection,
    venue_id: i64,
    references: &[&str],
) -> Result<Vec<CandidateBooking>, StoreError> {
    let placeholders: Vec<String> = (0..references.len())
        .map(|i| format!("${}", i + 2))
        .collect();
    let sql = format!(
        "{CANDIDATE_COLUMNS} WHERE b.venue_id = $1 AND b.reference IN ({}) ORDER BY b.id, t.position",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(venue_id);
    for reference in references {
        query = query.bind(*reference);
    }
    candidates(query.fetch_all(&mut *conn).await?)
}

/// Bookings whose window, widened by the venue's tolerances, contains `opened`.
async fn bookings_near(
    conn: &mut AnyConnection,
    venue: &Venue,
    opened: DateTime<Utc>,
) -> Result<Vec<CandidateBooking>, StoreError> {
    let latest_start = (opened + venue.tolerances.before_start).timestamp_millis();
    let earliest_end = (opened - venue.tolerances.after_end).timestamp_millis();
    let sql = format!(
        "{CANDIDATE_COLUMNS} WHERE b.venue_id = $1 AND b.start_at <= $2 AND b.end_at >= $3
         AND b.status NOT IN ('cancelled', 'no_show') ORDER BY b.id, t.position"
    );
    let rows = sqlx::query(&sql)
        .bind(venue.id)
        .bind(latest_start)
        .bind(earliest_end)
        .fetch_all(&mut *conn)
        .await?;
    candidates(rows)
}

/// Folds booking rows joined with their tables into candidates.
fn candidates(rows: Vec<sqlx::any::AnyRow>) -> Result<Vec<CandidateBooking>, StoreError> {
    let mut out: Vec<CandidateBooking> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let table: Option<String> = row.try_get("table_key")?;
        if out.last().is_none_or(|last| last.id != id) {
            let status: String = row.try_get("status")?;
            out.push(CandidateBooking {
                id,
                reference: row.try_get("reference")?,
                start: from_millis(row.try_get("start_at")?)?,
                end: from_millis(row.try_get("end_at")?)?,
                tables: Vec::new(),
                status: parse_status(&status)?,
            });
        }
        if let (Some(table), Some(last)) = (table, out.last_mut()) {
            last.tables.push(TableKey::from_normalised(table));
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn write_sale(
    conn: &mut AnyConnection,
    event_id: i64,
    partner: &str,
    venue_id: i64,
    sale: &SaleSnapshot,
    link: &Link,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let tables = json_list(sale.tables.iter().map(TableKey::as_str));
    let refs = json_list(sale.booking_refs.iter().map(|r| r.value.as_str()));
    let candidates = (!link.candidates.is_empty())
        .then(|| json_list(link.candidates.iter().map(i64::to_string)));
    let totals = &sale.totals;
    let sale_id: i64 = sqlx::query_scalar(
        "INSERT INTO sales (venue_id, partner, external_id, number, kind, origin_external_id, state,
             opened_at, closed_at, version, currency, total, paid, tax, net, tip, service_charge,
             covers, tables, booking_refs, booking_id, match_rule, match_reason, match_candidates,
             last_event_id, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
             $19, $20, $21, $22, $23, $24, $25, $26, $26)
         ON CONFLICT (partner, venue_id, external_id) DO UPDATE SET
             number = excluded.number, kind = excluded.kind,
             origin_external_id = excluded.origin_external_id, state = excluded.state,
             opened_at = excluded.opened_at, closed_at = excluded.closed_at,
             version = excluded.version, currency = excluded.currency, total = excluded.total,
             paid = excluded.paid, tax = excluded.tax, net = excluded.net, tip = excluded.tip,
             service_charge = excluded.service_charge, covers = excluded.covers,
             tables = excluded.tables, booking_refs = excluded.booking_refs,
             booking_id = excluded.booking_id, match_rule = excluded.match_rule,
             match_reason = excluded.match_reason, match_candidates = excluded.match_candidates,
             last_event_id = excluded.last_event_id, updated_at = excluded.updated_at
         RETURNING id",
    )
    .bind(venue_id)
    .bind(partner)
    .bind(sale.external_id.as_str())
    .bind(sale.number.as_deref())
    .bind(sale.kind.as_str())
    .bind(sale.origin_external_id.as_deref())
    .bind(sale.state.as_str())
    .bind(sale.opened_at.timestamp_millis())
    .bind(sale.closed_at.map(|t| t.timestamp_millis()))
    .bind(sale.version)
    .bind(sale.currency.as_deref())
    .bind(decimal_text(totals.total))
    .bind(decimal_text(totals.paid))
    .bind(decimal_text(totals.tax))
    .bind(decimal_text(totals.net))
    .bind(decimal_text(totals.tip))
    .bind(decimal_text(totals.service_charge))
    .bind(sale.covers)
    .bind(tables)
    .bind(refs)
    .bind(link.booking_id)
    .bind(link.rule)
    .bind(link.reason.as_deref())
    .bind(candidates)
    .bind(event_id)
    .bind(now.timestamp_millis())
    .fetch_one(&mut *conn)
    .await?;

    sqlx::query("DELETE FROM sale_lines WHERE sale_id = $1")
        .bind(sale_id)
        .execute(&mut *conn)
        .await?;
    for (position, line) in (0i64..).zip(&sale.lines) {
        sqlx::query(
            "INSERT INTO sale_lines (sale_id, position, external_id, description, quantity,
                 unit_amount, amount, tax_rate, tax_included)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(sale_id)
        .bind(position)
        .bind(line.external_id.as_deref())
        .bind(line.description.as_str())
        .bind(decimal_text(line.quantity))
        .bind(decimal_text(line.unit_amount))
        .bind(decimal_text(line.amount))
        .bind(line.tax_rate.map(decimal_text))
        .bind(line.tax_included.map(i64::from))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM sale_payments WHERE sale_id = $1")
        .bind(sale_id)
        .execute(&mut *conn)
        .await?;
    for (position, payment) in (0i64..).zip(&sale.payments) {
        sqlx::query(
            "INSERT INTO sale_payments (sale_id, position, external_id, method, amount, tip, paid_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(sale_id)
        .bind(position)
        .bind(payment.external_id.as_deref())
        .bind(payment.method.as_deref())
        .bind(decimal_text(payment.amount))
        .bind(decimal_text(payment.tip))
        .bind(payment.paid_at.map(|t| t.timestamp_millis()))
        .execute(&mut *conn)
        .await?;
    }
    Ok(sale_id)
}

/// Links the unmatched splits, transfers and refunds of `origin` to its booking: they may
/// have arrived before their origin was matched.
async fn adopt_lineage(
    conn: &mut AnyConnection,
    partner: &str,
    venue_id: i64,
    origin: &str,
    booking_id: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sales SET booking_id = $1, match_rule = 'lineage',
             match_reason = kind || ' of sale ' || $4, match_candidates = NULL
         WHERE partner = $2 AND venue_id = $3 AND origin_external_id = $4
           AND booking_id IS NULL AND (match_rule IS NULL OR match_rule <> 'manual')",
    )
    .bind(booking_id)
    .bind(partner)
    .bind(venue_id)
    .bind(origin)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves a booking to the status its sales imply, if the state machine allows it, and
/// records the transition with its cause.
async fn refresh_booking_status(
    conn: &mut AnyConnection,
    booking_id: i64,
    cause: &str,
    event_id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let status: String = sqlx::query_scalar("SELECT status FROM bookings WHERE id = $1")
        .bind(booking_id)
        .fetch_one(&mut *conn)
        .await?;
    let current = parse_status(&status)?;
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM sales WHERE booking_id = $1")
        .bind(booking_id)
        .fetch_all(&mut *conn)
        .await?;
    let mut summary = SalesSummary::default();
    for state in states.iter().filter_map(|s| SaleState::parse(s)) {
        if state != SaleState::Voided {
            summary.live += 1;
            summary.open += usize::from(state == SaleState::Open);
        }
    }
    let Some(next) = current.after_sales(summary) else {
        return Ok(());
    };
    record_transition(conn, booking_id, current, next, cause, Some(event_id), now).await
}

pub(super) async fn record_transition(
    conn: &mut AnyConnection,
    booking_id: i64,
    from: BookingStatus,
    to: BookingStatus,
    cause: &str,
    event_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE bookings SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(to.as_str())
        .bind(now.timestamp_millis())
        .bind(booking_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO booking_transitions (booking_id, from_status, to_status, cause, event_id, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(booking_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(cause)
    .bind(event_id)
    .bind(now.timestamp_millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
