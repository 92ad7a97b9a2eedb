//! Applying changes inside a write transaction: a handler's commands, and the re-matching
//! that keeps the diary right when bookings change.
//!
//! The decisions are the domain's ([`decide`], [`BookingStatus::after_sales`],
//! [`BookingStatus::may_move_to`], [`SaleSnapshot::supersedes`]); this module gathers their
//! inputs with indexed queries and writes their results.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::db::{self, Conn, Row};
use super::records::SuggestionRecord;
use super::sql::{decimal_text, from_millis, json_list, parse_status};
use super::{Ingested, StoreError};
use crate::domain::booking::SalesSummary;
use crate::domain::matching::{
    CandidateBooking, MatchInput, SUGGEST_AFTER, SUGGEST_BEFORE, decide, lineage_reason, suggest,
    widened_window,
};
use crate::domain::sale::{BookingRef, Freshness};
use crate::domain::{
    BookingSnapshot, BookingStatus, BookingUpdate, Command, Mapped, MatchDecision, MatchRule,
    Mover, Outcome, PlatformPayment, Reason, SaleFacts, SaleKind, SaleSnapshot, SaleState,
    TableKey, Tolerances, time,
};

/// Default length of a walk-in booking created from a sale.
const WALK_IN_MINUTES: i64 = 90;

/// A venue as processing needs it.
pub(super) struct Venue {
    pub id: i64,
    pub enabled: bool,
    pub tolerances: Tolerances,
    /// Normalised POS table name -> normalised diary table name.
    pub aliases: HashMap<String, String>,
    pub walk_ins: bool,
    /// The venue's zone, for partners that send wall-clock times.
    pub zone: chrono_tz::Tz,
    /// A booking platform's SKU -> normalised diary table.
    pub sku_tables: HashMap<String, String>,
    /// The longest booking the venue has had: no booking starting earlier than this before
    /// a sale can still be running, which bounds the table-and-time lookup.
    pub longest_booking: Duration,
}

impl Venue {
    /// The sale's tables as the diary names them.
    fn diary_tables(&self, tables: &[TableKey]) -> Vec<TableKey> {
        tables
            .iter()
            .map(|t| match self.aliases.get(t.as_str()) {
                Some(alias) => TableKey::from_normalised(alias.clone()),
                None => t.clone(),
            })
            .collect()
    }
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
        match_rule: None,
    }
}

/// Decides and applies what `mapped` asks for. A batch for several locations applies all or
/// nothing.
///
/// # Errors
/// [`StoreError::Processing`] when applying fails: the caller undoes the transaction (or its
/// savepoint) and records the raw event as `failed` on its own, so the event is kept and a
/// failure costs nothing when there is none.
pub(super) async fn process(
    conn: &mut Conn<'_>,
    event_id: i64,
    partner: &str,
    mapped: Mapped,
    now: DateTime<Utc>,
) -> Result<Ingested, StoreError> {
    let groups = match mapped {
        Mapped::Ignore { reason, detail } => {
            return Ok(verdict(event_id, Outcome::Ignored, Some(reason), detail));
        }
        Mapped::Notice { detail } => {
            return Ok(verdict(event_id, Outcome::Processed, None, detail));
        }
        Mapped::Fail { reason, detail } => {
            return Ok(verdict(event_id, Outcome::Failed, Some(reason), detail));
        }
        Mapped::Reject { reason, detail } => {
            return Ok(verdict(event_id, Outcome::Rejected, Some(reason), detail));
        }
        Mapped::Fetch(request) => {
            let detail = format!(
                "booking {} of {} to fetch ({})",
                request.booking_id, request.location_id, request.event
            );
            return Ok(verdict(
                event_id,
                Outcome::Pending,
                Some(Reason::AwaitingFetch),
                detail,
            ));
        }
        Mapped::Apply {
            location_id,
            commands,
        } => vec![(location_id, commands)],
        Mapped::Batch(groups) => groups,
    };
    let mut results = Vec::with_capacity(groups.len());
    for (location_id, commands) in groups {
        match apply_group(conn, event_id, partner, &location_id, commands, now).await {
            Ok(result) => results.push(result),
            Err(error) => {
                tracing::error!(event_id, error = %error, source = ?std::error::Error::source(&error), "processing failed");
                return Err(StoreError::Processing(Box::new(error)));
            }
        }
    }
    Ok(combine(event_id, results))
}

/// One event's outcome from its groups': processed if any group was, else the first's.
fn combine(event_id: i64, mut results: Vec<Ingested>) -> Ingested {
    if results.len() <= 1 {
        return results
            .pop()
            .unwrap_or_else(|| verdict(event_id, Outcome::Processed, None, "no commands"));
    }
    let detail = results
        .iter()
        .filter_map(|r| r.detail.as_deref())
        .collect::<Vec<_>>()
        .join("; ");
    let first_processed = results.iter().position(|r| r.outcome == Outcome::Processed);
    let mut result = results.swap_remove(first_processed.unwrap_or(0));
    result.detail = Some(detail);
    result
}

/// Applies the commands for one location of the partner.
async fn apply_group(
    conn: &mut Conn<'_>,
    event_id: i64,
    partner: &str,
    location_id: &str,
    commands: Vec<Command>,
    now: DateTime<Utc>,
) -> Result<Ingested, StoreError> {
    let Some(venue) = venue_of_location(conn, partner, location_id).await? else {
        let detail = format!("location {location_id} is not mapped to a venue");
        return Ok(verdict(
            event_id,
            Outcome::Ignored,
            Some(Reason::UnknownLocation),
            detail,
        ));
    };
    conn.lock_venue(venue.id).await?;
    // Switching the integration on must work while it is off.
    let switches_only = commands
        .iter()
        .all(|c| matches!(c, Command::SetIntegration { .. }));
    let mut result = if !venue.enabled && !switches_only {
        let detail = format!("{partner} integration is disabled for venue {}", venue.id);
        verdict(
            event_id,
            Outcome::Ignored,
            Some(Reason::IntegrationDisabled),
            detail,
        )
    } else {
        let mut result = verdict(event_id, Outcome::Processed, None, "no commands");
        for command in commands {
            let context = Context {
                event_id,
                partner,
                location_id,
                venue: &venue,
                now,
            };
            result = apply(conn, &context, command).await?;
        }
        result
    };
    result.venue_id = Some(venue.id);
    Ok(result)
}

/// What every command is applied in the light of.
struct Context<'a> {
    event_id: i64,
    partner: &'a str,
    location_id: &'a str,
    venue: &'a Venue,
    now: DateTime<Utc>,
}

async fn apply(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    command: Command,
) -> Result<Ingested, StoreError> {
    match command {
        Command::UpsertSale(mut sale) => {
            sale.localise(cx.venue.zone);
            upsert_sale(conn, cx, &sale).await
        }
        Command::UpsertBooking(mut booking) => {
            booking.localise(cx.venue.zone);
            upsert_booking(conn, cx, &booking).await
        }
        Command::RecordPayment(payment) => record_payment(conn, cx, &payment).await,
        Command::UpsertGuest(customer) => {
            let guest = super::bookings::link_guest(conn, cx.venue.id, &customer, cx.now).await?;
            let detail = match guest {
                Some(id) => format!("guest profile {id} at venue {}", cx.venue.id),
                None => "guest without e-mail or phone: not profiled".to_owned(),
            };
            Ok(verdict(cx.event_id, Outcome::Processed, None, detail))
        }
        Command::UpdateBooking(update) => update_booking_from_partner(conn, cx, update).await,
        Command::SetIntegration { enabled } => {
            db::query(
                "UPDATE partner_locations SET enabled = $1 WHERE partner = $2 AND location_id = $3",
            )
            .bind(i64::from(enabled))
            .bind(cx.partner)
            .bind(cx.location_id)
            .execute(conn)
            .await?;
            let state = if enabled { "enabled" } else { "disabled" };
            Ok(verdict(
                cx.event_id,
                Outcome::Processed,
                None,
                format!(
                    "{} integration {state} for venue {}",
                    cx.partner, cx.venue.id
                ),
            ))
        }
    }
}

/// The venue columns processing reads, as a literal so whole statements stay constants.
macro_rules! venue_columns {
    () => {
        "v.id, v.tolerance_before_min, v.tolerance_after_min, v.table_aliases, v.walk_ins,
         v.timezone, v.sku_tables, v.longest_booking_ms"
    };
}

const VENUE_OF_LOCATION: &str = concat!(
    "SELECT ",
    venue_columns!(),
    ", l.enabled FROM partner_locations l JOIN venues v ON v.id = l.venue_id
     WHERE l.partner = $1 AND l.location_id = $2"
);

const VENUE_BY_ID: &str = concat!(
    "SELECT ",
    venue_columns!(),
    " FROM venues v WHERE v.id = $1"
);

fn venue_from_row(row: &Row, enabled: bool) -> Result<Venue, StoreError> {
    let aliases: String = row.try_get("table_aliases")?;
    Ok(Venue {
        id: row.try_get("id")?,
        enabled,
        tolerances: Tolerances {
            before_start: time::minutes(row.try_get("tolerance_before_min")?),
            after_end: time::minutes(row.try_get("tolerance_after_min")?),
        },
        aliases: serde_json::from_str(&aliases).unwrap_or_default(),
        walk_ins: row.try_get::<i64>("walk_ins")? != 0,
        zone: {
            let zone: String = row.try_get("timezone")?;
            zone.parse()
                .map_err(|_| StoreError::Corrupt(format!("time zone {zone:?}")))?
        },
        sku_tables: {
            let skus: String = row.try_get("sku_tables")?;
            serde_json::from_str(&skus).unwrap_or_default()
        },
        longest_booking: time::millis(row.try_get("longest_booking_ms")?),
    })
}

async fn venue_of_location(
    conn: &mut Conn<'_>,
    partner: &str,
    location_id: &str,
) -> Result<Option<Venue>, StoreError> {
    let row = db::query(VENUE_OF_LOCATION)
        .bind(partner)
        .bind(location_id)
        .fetch_optional(conn)
        .await?;
    row.map(|row| {
        let enabled = row.try_get::<i64>("enabled")? != 0;
        venue_from_row(&row, enabled)
    })
    .transpose()
}

/// A venue by id, for the re-matching that admin changes trigger.
pub(super) async fn venue(conn: &mut Conn<'_>, venue_id: i64) -> Result<Venue, StoreError> {
    let row = db::query(VENUE_BY_ID)
        .bind(venue_id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound("venue"))?;
    venue_from_row(&row, true)
}

/// A booking reference as stored with a sale, so it can be matched again later.
#[derive(Serialize, Deserialize)]
struct StoredRef {
    value: String,
    source: String,
}

/// The stored state of a sale that decides how a new snapshot applies.
struct StoredSale {
    id: i64,
    version: i64,
    /// See [`items_digest`].
    items_digest: Option<String>,
    state: SaleState,
    booking_id: Option<i64>,
    match_rule: Option<String>,
    match_reason: Option<String>,
}

async fn stored_sale(
    conn: &mut Conn<'_>,
    partner: &str,
    venue_id: i64,
    external_id: &str,
) -> Result<Option<StoredSale>, StoreError> {
    let row = db::query(
        "SELECT id, version, state, booking_id, match_rule, match_reason, items_digest FROM sales
         WHERE partner = $1 AND venue_id = $2 AND external_id = $3",
    )
    .bind(partner)
    .bind(venue_id)
    .bind(external_id)
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        let state: String = row.try_get("state")?;
        Ok(StoredSale {
            id: row.try_get("id")?,
            version: row.try_get("version")?,
            items_digest: row.try_get("items_digest")?,
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Link {
    pub booking_id: Option<i64>,
    pub rule: Option<&'static str>,
    pub reason: Option<String>,
    pub candidates: Vec<i64>,
}

impl Link {
    fn of(decision: MatchDecision) -> Link {
        match decision {
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
            MatchDecision::Unmatched => Link::default(),
        }
    }

    /// An operator's decision, which automatic rules never override.
    pub(super) fn manual(booking_id: Option<i64>, reason: String) -> Link {
        Link {
            booking_id,
            rule: Some(MatchRule::Manual.as_str()),
            reason: Some(reason),
            candidates: Vec::new(),
        }
    }

    fn describe(&self) -> String {
        match (&self.rule, &self.reason) {
            (Some(rule), Some(reason)) => format!("matched by {rule}: {reason}"),
            (None, Some(reason)) => format!("ambiguous: {reason}"),
            _ => "unmatched".to_owned(),
        }
    }
}

/// A fail point in applying a sale, for the tests that prove a panic inside one write fails
/// that write alone. Only sales whose id starts with [`FAIL_POINT_SALES`] reach it, so a test
/// that configures it never disturbs another's sales (fail points are global to a process).
pub const FAIL_APPLY_SALE: &str = "apply-upsert-sale";
/// See [`FAIL_APPLY_SALE`].
pub const FAIL_POINT_SALES: &str = "fail-point-";

async fn upsert_sale(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    sale: &SaleSnapshot,
) -> Result<Ingested, StoreError> {
    fail::fail_point!(
        FAIL_APPLY_SALE,
        sale.external_id.starts_with(FAIL_POINT_SALES),
        |_| Err(StoreError::Unsupported("fail point".to_owned()))
    );
    let stored = stored_sale(conn, cx.partner, cx.venue.id, &sale.external_id).await?;
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
            let mut result = verdict(cx.event_id, Outcome::Ignored, Some(reason), detail);
            result.sale_id = Some(stored.id);
            return Ok(result);
        }
    }
    let mut facts = sale.facts();
    facts.tables = cx.venue.diary_tables(&facts.tables);
    let manual = stored
        .as_ref()
        .filter(|s| s.match_rule.as_deref() == Some(MatchRule::Manual.as_str()));
    let mut link = match manual {
        Some(manual) => Link::manual(
            manual.booking_id,
            manual.match_reason.clone().unwrap_or_default(),
        ),
        None => Link::of(decide_match(conn, cx.partner, cx.venue, &facts).await?),
    };
    let walk_in = link == Link::default()
        && cx.venue.walk_ins
        && sale.kind == SaleKind::Sale
        && sale.state != SaleState::Voided
        && !facts.tables.is_empty();
    if walk_in {
        link = create_walk_in(conn, cx, sale, &facts.tables).await?;
    }
    let sale_id = write_sale(conn, cx, sale, &link, stored.as_ref()).await?;
    let cause = format!("sale {} {}", sale.external_id, sale.state.as_str());
    let mut touched: Vec<i64> = link.booking_id.into_iter().collect();
    if let Some(booking_id) = link.booking_id {
        touched.extend(
            adopt_lineage(conn, cx.partner, cx.venue.id, &sale.external_id, booking_id).await?,
        );
    }
    touched.extend(stored.and_then(|s| s.booking_id));
    touched.sort_unstable();
    touched.dedup();
    for booking_id in touched {
        follow_sales(conn, booking_id, &cause, Some(cx.event_id), cx.now).await?;
    }
    let mut result = verdict(cx.event_id, Outcome::Processed, None, link.describe());
    result.sale_id = Some(sale_id);
    result.match_rule = link.rule;
    Ok(result)
}

/// Creates the walk-in booking an unmatched sale on a table stands for.
async fn create_walk_in(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    sale: &SaleSnapshot,
    tables: &[TableKey],
) -> Result<Link, StoreError> {
    let start = sale.opened_at;
    let end = time::plus(start, Duration::minutes(WALK_IN_MINUTES));
    let booking_id: i64 = db::query_scalar(
        "INSERT INTO bookings (venue_id, start_at, end_at, covers, status, source, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'walk_in', $6, $6) RETURNING id",
    )
    .bind(cx.venue.id)
    .bind(start.timestamp_millis())
    .bind(end.timestamp_millis())
    .bind(sale.covers.unwrap_or(0).max(0))
    .bind(BookingStatus::Confirmed.as_str())
    .bind(cx.now.timestamp_millis())
    .fetch_one(conn)
    .await?;
    write_booking_tables(conn, booking_id, tables).await?;
    note_booking_span(conn, cx.venue.id, start, end).await?;
    let names: Vec<&str> = tables.iter().map(TableKey::as_str).collect();
    Ok(Link {
        booking_id: Some(booking_id),
        rule: Some(MatchRule::TableTime.as_str()),
        reason: Some(format!(
            "walk-in booking created for table {}",
            names.join(", ")
        )),
        candidates: Vec::new(),
    })
}

/// Sets a booking's tables (normalised keys, in the order given).
pub(super) async fn write_booking_tables(
    conn: &mut Conn<'_>,
    booking_id: i64,
    tables: &[TableKey],
) -> Result<(), StoreError> {
    db::query("UPDATE bookings SET tables = $1 WHERE id = $2")
        .bind(json_list(tables.iter().map(TableKey::as_str)))
        .bind(booking_id)
        .execute(conn)
        .await?;
    Ok(())
}

async fn decide_match(
    conn: &mut Conn<'_>,
    partner: &str,
    venue: &Venue,
    sale: &SaleFacts,
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
        let origin_booking: Option<Option<i64>> =
            db::query_scalar("SELECT booking_id FROM sales WHERE partner = $1 AND venue_id = $2 AND external_id = $3")
                .bind(partner)
                .bind(venue.id)
                .bind(origin.as_str())
                .fetch_optional(conn)
                .await?;
        if let Some(booking) = origin_booking.flatten() {
            return Ok(decide(input(&[], Some(booking), &[])));
        }
    }
    if sale.tables.is_empty() {
        return Ok(MatchDecision::Unmatched);
    }
    let nearby = bookings_near(conn, venue, sale.opened_at, &sale.tables).await?;
    Ok(decide(input(&[], None, &nearby)))
}

/// Everything matching reads of a booking.
macro_rules! candidate_columns {
    () => {
        "SELECT b.id, b.reference, b.start_at, b.end_at, b.status, b.tables FROM bookings b"
    };
}

async fn bookings_by_reference(
    conn: &mut Conn<'_>,
    venue_id: i64,
    references: &[&str],
) -> Result<Vec<CandidateBooking>, StoreError> {
    let placeholders: Vec<String> = (0..references.len())
        .map(|i| format!("${}", i + 2))
        .collect();
    let sql = format!(
        "{} WHERE b.venue_id = $1 AND b.reference IN ({}) ORDER BY b.id",
        candidate_columns!(),
        placeholders.join(", ")
    );
    let mut query = db::query(&sql).bind(venue_id);
    for reference in references {
        query = query.bind(*reference);
    }
    candidates(query.fetch_all(conn).await?)
}

/// Bookings on one of `tables` whose window, widened by the venue's tolerances, contains
/// `opened` (table and time never matches any other). The scan of the `bookings_venue_start`
/// index is bounded on both sides (by the venue's longest booking from below), so its cost
/// does not grow with the diary's history, and the table filter is checked in the index, so
/// only the bookings on the sale's tables are read.
async fn bookings_near(
    conn: &mut Conn<'_>,
    venue: &Venue,
    opened: DateTime<Utc>,
    tables: &[TableKey],
) -> Result<Vec<CandidateBooking>, StoreError> {
    let latest_start = time::plus(opened, venue.tolerances.before_start).timestamp_millis();
    let earliest_end = time::minus(opened, venue.tolerances.after_end);
    let earliest_start = time::minus(earliest_end, venue.longest_booking).timestamp_millis();
    let on_tables: Vec<String> = (0..tables.len())
        .map(|i| format!("b.tables LIKE ${} ESCAPE '\\'", i + 5))
        .collect();
    let mut query = db::query(format!(
        "{} WHERE b.venue_id = $1 AND b.start_at <= $2 AND b.start_at >= $4 AND b.end_at >= $3
         AND ({}) AND b.status NOT IN ('cancelled', 'no_show')",
        candidate_columns!(),
        on_tables.join(" OR ")
    ))
    .bind(venue.id)
    .bind(latest_start)
    .bind(earliest_end.timestamp_millis())
    .bind(earliest_start);
    for table in tables {
        query = query.bind(json_member_pattern(table.as_str()));
    }
    candidates(query.fetch_all(conn).await?)
}

/// A `LIKE` pattern (escaped with `\`) finding `value` as a member of a JSON list of strings.
/// It may find more (a case-insensitive `LIKE`, a member's escaped text), never less: the
/// domain decides on the parsed lists.
fn json_member_pattern(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    let mut pattern = String::with_capacity(quoted.len() + 4);
    pattern.push('%');
    for c in quoted.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Records a booking's length on its venue when it is the longest so far (see
/// [`Venue::longest_booking`]). Every write of a booking's times calls this.
pub(super) async fn note_booking_span(
    conn: &mut Conn<'_>,
    venue_id: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(), StoreError> {
    let span = end.signed_duration_since(start).num_milliseconds().max(0);
    db::query(
        "UPDATE venues SET longest_booking_ms = $1 WHERE id = $2 AND longest_booking_ms < $1",
    )
    .bind(span)
    .bind(venue_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Booking rows as matching candidates.
fn candidates(rows: Vec<Row>) -> Result<Vec<CandidateBooking>, StoreError> {
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            let tables: String = row.try_get("tables")?;
            let tables: Vec<String> = serde_json::from_str(&tables).unwrap_or_default();
            Ok(CandidateBooking {
                id: row.try_get("id")?,
                reference: row.try_get("reference")?,
                start: from_millis(row.try_get("start_at")?)?,
                end: from_millis(row.try_get("end_at")?)?,
                tables: tables.into_iter().map(TableKey::from_normalised).collect(),
                status: parse_status(&status)?,
            })
        })
        .collect()
}

async fn write_sale(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    sale: &SaleSnapshot,
    link: &Link,
    stored: Option<&StoredSale>,
) -> Result<i64, StoreError> {
    let tables = json_list(sale.tables.iter().map(TableKey::as_str));
    let refs = json_list(sale.booking_refs.iter().map(|r| StoredRef {
        value: r.value.clone(),
        source: r.source.clone(),
    }));
    let candidates = (!link.candidates.is_empty()).then(|| json_list(link.candidates.iter()));
    let lines = line_rows(sale);
    let payments = payment_rows(sale);
    let digest = items_digest(&lines, &payments);
    let totals = &sale.totals;
    let sale_id: i64 = db::query_scalar(
        "INSERT INTO sales (venue_id, partner, external_id, number, kind, origin_external_id, state,
             opened_at, closed_at, version, currency, total, paid, tax, net, tip, service_charge,
             discount, deposit, covers, tables, booking_refs, booking_id, match_rule, match_reason,
             match_candidates, last_event_id, created_at, updated_at, items_digest)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
             $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $28, $29)
         ON CONFLICT (partner, venue_id, external_id) DO UPDATE SET
             number = excluded.number, kind = excluded.kind,
             origin_external_id = excluded.origin_external_id, state = excluded.state,
             opened_at = excluded.opened_at, closed_at = excluded.closed_at,
             version = excluded.version, currency = excluded.currency, total = excluded.total,
             paid = excluded.paid, tax = excluded.tax, net = excluded.net, tip = excluded.tip,
             service_charge = excluded.service_charge, discount = excluded.discount,
             deposit = excluded.deposit, covers = excluded.covers,
             tables = excluded.tables, booking_refs = excluded.booking_refs,
             booking_id = excluded.booking_id, match_rule = excluded.match_rule,
             match_reason = excluded.match_reason, match_candidates = excluded.match_candidates,
             last_event_id = excluded.last_event_id, updated_at = excluded.updated_at,
             items_digest = excluded.items_digest
         RETURNING id",
    )
    .bind(cx.venue.id)
    .bind(cx.partner)
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
    .bind(decimal_text(totals.discount))
    .bind(decimal_text(totals.deposit))
    .bind(sale.covers)
    .bind(tables)
    .bind(refs)
    .bind(link.booking_id)
    .bind(link.rule)
    .bind(link.reason.as_deref())
    .bind(candidates)
    .bind(cx.event_id)
    .bind(cx.now.timestamp_millis())
    .bind(digest.as_str())
    .fetch_one(conn)
    .await?;
    match stored {
        Some(stored) if stored.items_digest.as_deref() == Some(digest.as_str()) => {}
        _ => {
            let replacing = stored.is_some();
            replace_rows(conn, "sale_lines", LINE_COLUMNS, sale_id, lines, replacing).await?;
            replace_rows(
                conn,
                "sale_payments",
                PAYMENT_COLUMNS,
                sale_id,
                payments,
                replacing,
            )
            .await?;
        }
    }
    Ok(sale_id)
}

const LINE_COLUMNS: &str = "sale_id, position, external_id, description, quantity, unit_amount, \
                            amount, tax_rate, tax_included";
const PAYMENT_COLUMNS: &str = "sale_id, position, external_id, method, amount, tip, paid_at";

/// A sale's lines as rows of `sale_lines`, without `sale_id` and `position`.
fn line_rows(sale: &SaleSnapshot) -> Vec<Vec<db::Param<'_>>> {
    use db::Bind;
    sale.lines
        .iter()
        .map(|line| {
            vec![
                line.external_id.as_deref().param(),
                line.description.as_str().param(),
                decimal_text(line.quantity).param(),
                decimal_text(line.unit_amount).param(),
                decimal_text(line.amount).param(),
                line.tax_rate.map(decimal_text).param(),
                line.tax_included.map(i64::from).param(),
            ]
        })
        .collect()
}

/// A sale's payments as rows of `sale_payments`, without `sale_id` and `position`.
fn payment_rows(sale: &SaleSnapshot) -> Vec<Vec<db::Param<'_>>> {
    use db::Bind;
    sale.payments
        .iter()
        .map(|payment| {
            vec![
                payment.external_id.as_deref().param(),
                payment.method.as_deref().param(),
                decimal_text(payment.amount).param(),
                decimal_text(payment.tip).param(),
                payment.paid_at.map(|t| t.timestamp_millis()).param(),
            ]
        })
        .collect()
}

/// A digest of exactly what the lines and payments would be written as: equal digests mean
/// the stored rows can stay.
fn items_digest(lines: &[Vec<db::Param<'_>>], payments: &[Vec<db::Param<'_>>]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (table, rows) in [(b'L', lines), (b'P', payments)] {
        for row in rows {
            hasher.update([table]);
            for param in row {
                match param {
                    db::Param::Int(Some(v)) => hasher.update(v.to_le_bytes()),
                    db::Param::Text(Some(v)) => {
                        hasher.update((v.len() as u64).to_le_bytes());
                        hasher.update(v.as_bytes());
                    }
                    db::Param::Bytes(Some(v)) => {
                        hasher.update((v.len() as u64).to_le_bytes());
                        hasher.update(v);
                    }
                    db::Param::Int(None) | db::Param::Text(None) | db::Param::Bytes(None) => {
                        hasher.update([0xff]);
                    }
                }
                hasher.update([0x1f]);
            }
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

/// Rows per multi-row insert, well under both databases' parameter limits.
const ROWS_PER_INSERT: usize = 100;

/// Writes a sale's rows in `table` (each preceded by `sale_id` and its position), a hundred
/// rows per statement, after deleting the old ones when `replacing`.
async fn replace_rows(
    conn: &mut Conn<'_>,
    table: &str,
    columns: &str,
    sale_id: i64,
    rows: Vec<Vec<db::Param<'_>>>,
    replacing: bool,
) -> Result<(), StoreError> {
    if replacing {
        db::query(format!("DELETE FROM {table} WHERE sale_id = $1"))
            .bind(sale_id)
            .execute(conn)
            .await?;
    }
    let mut position = 0i64;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(ROWS_PER_INSERT).collect();
        let width = chunk.first().map_or(0, Vec::len) + 2;
        let values: Vec<String> = (0..chunk.len())
            .map(|row| {
                let placeholders: Vec<String> = (1..=width)
                    .map(|column| format!("${}", row * width + column))
                    .collect();
                format!("({})", placeholders.join(", "))
            })
            .collect();
        let mut insert = db::query(format!(
            "INSERT INTO {table} ({columns}) VALUES {}",
            values.join(", ")
        ));
        for row in chunk {
            insert = insert.bind(sale_id).bind(position);
            position += 1;
            for param in row {
                insert = insert.bind_param(param);
            }
        }
        insert.execute(conn).await?;
    }
    Ok(())
}

/// Links the splits, transfers and refunds of `origin` to its booking: they may have arrived
/// before their origin was matched, or found a booking by table and time on their own;
/// lineage ranks above table and time, so the final link does not depend on arrival order.
/// Returns the bookings such sales left.
async fn adopt_lineage(
    conn: &mut Conn<'_>,
    partner: &str,
    venue_id: i64,
    origin: &str,
    booking_id: i64,
) -> Result<Vec<i64>, StoreError> {
    let rows = db::query(
        "SELECT id, kind, booking_id FROM sales
         WHERE partner = $1 AND venue_id = $2 AND origin_external_id = $3
           AND ((booking_id IS NULL AND match_rule IS NULL) OR match_rule = 'table_time')",
    )
    .bind(partner)
    .bind(venue_id)
    .bind(origin)
    .fetch_all(conn)
    .await?;
    let mut left = Vec::new();
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let kind = SaleKind::parse(&kind).unwrap_or(SaleKind::Sale);
        left.extend(row.try_get::<Option<i64>>("booking_id")?);
        let link = Link {
            booking_id: Some(booking_id),
            rule: Some(MatchRule::Lineage.as_str()),
            reason: Some(lineage_reason(kind, origin)),
            candidates: Vec::new(),
        };
        set_link(conn, row.try_get("id")?, &link).await?;
    }
    Ok(left)
}

pub(super) async fn set_link(
    conn: &mut Conn<'_>,
    sale_id: i64,
    link: &Link,
) -> Result<(), StoreError> {
    let candidates = (!link.candidates.is_empty()).then(|| json_list(link.candidates.iter()));
    db::query("UPDATE sales SET booking_id = $1, match_rule = $2, match_reason = $3, match_candidates = $4 WHERE id = $5")
        .bind(link.booking_id)
        .bind(link.rule)
        .bind(link.reason.as_deref())
        .bind(candidates)
        .bind(sale_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves a booking to the status its sales imply, if the state machine allows it.
pub(super) async fn follow_sales(
    conn: &mut Conn<'_>,
    booking_id: i64,
    cause: &str,
    event_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let rows = db::query(
        "SELECT b.status, s.state FROM bookings b LEFT JOIN sales s ON s.booking_id = b.id
         WHERE b.id = $1",
    )
    .bind(booking_id)
    .fetch_all(conn)
    .await?;
    let status: String = rows
        .first()
        .ok_or(StoreError::NotFound("booking"))?
        .try_get("status")?;
    let current = parse_status(&status)?;
    let mut summary = SalesSummary::default();
    for row in &rows {
        let state: Option<String> = row.try_get("state")?;
        match state.as_deref().and_then(SaleState::parse) {
            Some(SaleState::Voided) | None => {}
            Some(state) => {
                summary.live += 1;
                summary.open += usize::from(state == SaleState::Open);
            }
        }
    }
    if let Some(next) = current.after_sales(summary) {
        record_transition(conn, booking_id, current, next, cause, event_id, now).await?;
    }
    Ok(())
}

pub(super) async fn booking_status(
    conn: &mut Conn<'_>,
    booking_id: i64,
) -> Result<BookingStatus, StoreError> {
    let status: Option<String> = db::query_scalar("SELECT status FROM bookings WHERE id = $1")
        .bind(booking_id)
        .fetch_optional(conn)
        .await?;
    parse_status(&status.ok_or(StoreError::NotFound("booking"))?)
}

pub(super) async fn record_transition(
    conn: &mut Conn<'_>,
    booking_id: i64,
    from: BookingStatus,
    to: BookingStatus,
    cause: &str,
    event_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    db::query("UPDATE bookings SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(to.as_str())
        .bind(now.timestamp_millis())
        .bind(booking_id)
        .execute(conn)
        .await?;
    db::query(
        "INSERT INTO booking_transitions (booking_id, from_status, to_status, cause, event_id, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(booking_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(cause)
    .bind(event_id)
    .bind(now.timestamp_millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// A partner's statement about a booking (e.g. Lightspeed's POS reservation status).
async fn update_booking_from_partner(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    update: BookingUpdate,
) -> Result<Ingested, StoreError> {
    let row =
        db::query("SELECT id, partner_rank FROM bookings WHERE venue_id = $1 AND reference = $2")
            .bind(cx.venue.id)
            .bind(update.reference.as_str())
            .fetch_optional(conn)
            .await?;
    let (booking_id, stored_rank) = match row {
        Some(row) => (
            Some(row.try_get::<i64>("id")?),
            row.try_get::<Option<i64>>("partner_rank")?,
        ),
        None => (None, None),
    };
    let Some(booking_id) = booking_id else {
        let detail = format!(
            "no booking with reference {} at venue {}",
            update.reference, cx.venue.id
        );
        return Ok(verdict(
            cx.event_id,
            Outcome::Ignored,
            Some(Reason::UnknownBooking),
            detail,
        ));
    };
    let rank = update.status.map(BookingStatus::rank);
    if behind(rank, stored_rank) {
        // A late statement (SEATED after PAID): its status, tables and covers are all
        // from before what was applied, so none of it is.
        let detail = format!(
            "{} reported {} for booking {booking_id}, behind what it reported before",
            cx.partner, update.partner_status
        );
        let mut result = verdict(
            cx.event_id,
            Outcome::Ignored,
            Some(Reason::StaleUpdate),
            detail,
        );
        result.venue_id = Some(cx.venue.id);
        return Ok(result);
    }
    db::query(
        "UPDATE bookings SET partner_status = $1, updated_at = $2,
             partner_rank = COALESCE($4, partner_rank)
         WHERE id = $3",
    )
    .bind(update.partner_status.as_str())
    .bind(cx.now.timestamp_millis())
    .bind(booking_id)
    .bind(rank)
    .execute(conn)
    .await?;
    if let Some(covers) = update.covers.filter(|c| *c > 0) {
        db::query("UPDATE bookings SET covers = $1 WHERE id = $2")
            .bind(covers)
            .bind(booking_id)
            .execute(conn)
            .await?;
    }
    let tables_changed = match &update.tables {
        Some(tables) if !tables.is_empty() => {
            write_booking_tables(conn, booking_id, &cx.venue.diary_tables(tables)).await?;
            true
        }
        _ => false,
    };
    let current = booking_status(conn, booking_id).await?;
    let mut detail = format!(
        "booking {booking_id}: {} reported {}",
        cx.partner, update.partner_status
    );
    match update.status {
        Some(next) if current.may_move_to(next, Mover::Partner) => {
            let cause = format!("{} reported {}", cx.partner, update.partner_status);
            record_transition(
                conn,
                booking_id,
                current,
                next,
                &cause,
                Some(cx.event_id),
                cx.now,
            )
            .await?;
            detail.push_str(&format!(", {current} -> {next}"));
        }
        Some(next) if next != current => detail.push_str(&format!(
            ", stays {current} (no move from {current} to {next})"
        )),
        _ => {}
    }
    if tables_changed {
        rematch_around_booking(
            conn,
            cx.venue,
            booking_id,
            &format!("tables of booking {booking_id} changed"),
            Some(cx.event_id),
            cx.now,
        )
        .await?;
    }
    Ok(verdict(cx.event_id, Outcome::Processed, None, detail))
}

/// A stored sale's matching facts and current link.
struct StoredFacts {
    id: i64,
    partner: String,
    external_id: String,
    facts: SaleFacts,
    booking_id: Option<i64>,
}

fn stored_facts(row: &Row) -> Result<StoredFacts, StoreError> {
    let kind: String = row.try_get("kind")?;
    let tables: String = row.try_get("tables")?;
    let refs: String = row.try_get("booking_refs")?;
    let tables: Vec<String> = serde_json::from_str(&tables).unwrap_or_default();
    let refs: Vec<StoredRef> = serde_json::from_str(&refs).unwrap_or_default();
    Ok(StoredFacts {
        id: row.try_get("id")?,
        partner: row.try_get("partner")?,
        external_id: row.try_get("external_id")?,
        booking_id: row.try_get("booking_id")?,
        facts: SaleFacts {
            kind: SaleKind::parse(&kind).unwrap_or(SaleKind::Sale),
            origin_external_id: row.try_get("origin_external_id")?,
            opened_at: from_millis(row.try_get("opened_at")?)?,
            tables: tables.into_iter().map(TableKey::from_normalised).collect(),
            booking_refs: refs
                .into_iter()
                .map(|r| BookingRef {
                    value: r.value,
                    source: r.source,
                })
                .collect(),
        },
    })
}

/// The bookings an operator might match sale `sale_id` to, ranked and explained by
/// [`suggest`]; `None` when there is no such sale.
pub(super) async fn suggestions(
    conn: &mut Conn<'_>,
    sale_id: i64,
    limit: usize,
) -> Result<Option<Vec<SuggestionRecord>>, StoreError> {
    let Some(row) = db::query(
        "SELECT id, partner, external_id, kind, origin_external_id, opened_at, tables, booking_refs,
             booking_id, venue_id, match_candidates
         FROM sales WHERE id = $1",
    )
    .bind(sale_id)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let mut sale = stored_facts(&row)?;
    let venue = venue(conn, row.try_get("venue_id")?).await?;
    sale.facts.tables = venue.diary_tables(&sale.facts.tables);
    let tied: Vec<i64> = row
        .try_get::<Option<String>>("match_candidates")?
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or_default();
    let opened = sale.facts.opened_at;
    let rows = db::query(
        "SELECT b.id, b.reference, b.start_at, b.end_at, b.status, b.tables, b.covers,
             b.customer_name
         FROM bookings b WHERE b.venue_id = $1 AND b.start_at >= $2 AND b.start_at <= $3
         ORDER BY b.start_at, b.id LIMIT 500",
    )
    .bind(venue.id)
    .bind(time::minus(opened, SUGGEST_BEFORE).timestamp_millis())
    .bind(time::plus(opened, SUGGEST_AFTER).timestamp_millis())
    .fetch_all(conn)
    .await?;
    let nearby = candidates(rows.clone())?;
    let ranked = suggest(&sale.facts, &nearby, &tied, limit);
    let mut records = Vec::with_capacity(ranked.len());
    for suggestion in ranked {
        let (Some(booking), Some(row)) = (
            nearby.iter().find(|b| b.id == suggestion.booking_id),
            rows.iter()
                .find(|r| r.try_get::<i64>("id").ok() == Some(suggestion.booking_id)),
        ) else {
            continue;
        };
        records.push(SuggestionRecord {
            booking_id: booking.id,
            reference: booking.reference.clone(),
            start: booking.start,
            end: booking.end,
            tables: booking
                .tables
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            status: booking.status.as_str(),
            covers: row.try_get("covers")?,
            customer_name: row.try_get("customer_name")?,
            reason: suggestion.reason,
        });
    }
    Ok(Some(records))
}

/// Matches again the sales a booking's creation or change may concern: unmatched sales of
/// the venue in its widened window or carrying its reference, and the sales it holds by table
/// and time (which may no longer fit). Manual decisions are left alone. Then every booking
/// that gained or lost a sale follows its sales' states.
pub(super) async fn rematch_around_booking(
    conn: &mut Conn<'_>,
    venue: &Venue,
    booking_id: i64,
    cause: &str,
    event_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let row = db::query("SELECT start_at, end_at, reference FROM bookings WHERE id = $1")
        .bind(booking_id)
        .fetch_one(conn)
        .await?;
    let (from, to) = widened_window(
        from_millis(row.try_get("start_at")?)?,
        from_millis(row.try_get("end_at")?)?,
        venue.tolerances,
    );
    let reference: Option<String> = row.try_get("reference")?;
    let rows = db::query(
        "SELECT id, partner, external_id, kind, origin_external_id, opened_at, tables, booking_refs, booking_id FROM sales
         WHERE venue_id = $1 AND (match_rule IS NULL OR match_rule <> 'manual') AND (
             (booking_id IS NULL AND ((opened_at >= $2 AND opened_at <= $3) OR booking_refs <> '[]'))
             OR (booking_id = $4 AND match_rule = 'table_time'))
         ORDER BY opened_at, id",
    )
    .bind(venue.id)
    .bind(from.timestamp_millis())
    .bind(to.timestamp_millis())
    .bind(booking_id)
    .fetch_all(conn)
    .await?;
    let mut touched = vec![booking_id];
    for row in &rows {
        let mut sale = stored_facts(row)?;
        let in_window = from <= sale.facts.opened_at && sale.facts.opened_at <= to;
        let names_booking = reference
            .as_deref()
            .is_some_and(|r| sale.facts.booking_refs.iter().any(|b| b.value == r));
        if sale.booking_id.is_none() && !in_window && !names_booking {
            continue;
        }
        sale.facts.tables = venue.diary_tables(&sale.facts.tables);
        let link = Link::of(decide_match(conn, &sale.partner, venue, &sale.facts).await?);
        if link.booking_id == sale.booking_id && link.booking_id.is_some() {
            continue;
        }
        set_link(conn, sale.id, &link).await?;
        touched.extend(sale.booking_id);
        touched.extend(link.booking_id);
        if let Some(booking_id) = link.booking_id {
            touched.extend(
                adopt_lineage(conn, &sale.partner, venue.id, &sale.external_id, booking_id).await?,
            );
        }
    }
    touched.sort_unstable();
    touched.dedup();
    for id in touched {
        follow_sales(conn, id, cause, event_id, now).await?;
    }
    Ok(())
}

/// A booking platform's snapshot of one of its bookings: create or update it (found by the
/// partner's key, or adopting a booking made with the same reference by hand), move its
/// status as a partner may, and let the venue's waiting sales find it.
async fn upsert_booking(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    booking: &BookingSnapshot,
) -> Result<Ingested, StoreError> {
    let by_key = db::query(
        "SELECT id, partner_version, fingerprint, partner_rank FROM bookings
         WHERE venue_id = $1 AND source = $2 AND external_key = $3",
    )
    .bind(cx.venue.id)
    .bind(cx.partner)
    .bind(booking.external_key.as_str())
    .fetch_optional(conn)
    .await?;
    let existing = match by_key {
        Some(row) => Some(row),
        None => {
            db::query(
                "SELECT id, partner_version, fingerprint, partner_rank FROM bookings
                 WHERE venue_id = $1 AND reference = $2 AND external_key IS NULL",
            )
            .bind(cx.venue.id)
            .bind(booking.reference.as_str())
            .fetch_optional(conn)
            .await?
        }
    };
    let fingerprint = booking.fingerprint();
    if let Some(row) = &existing {
        let id: i64 = row.try_get("id")?;
        let stored_version: Option<i64> = row.try_get("partner_version")?;
        let stored_print: Option<String> = row.try_get("fingerprint")?;
        let stored_rank: Option<i64> = row.try_get("partner_rank")?;
        let skipped = if stored_print.as_deref() == Some(fingerprint.as_str()) {
            Some((
                Reason::DuplicateEvent,
                format!("booking {id} already holds this snapshot"),
            ))
        } else {
            match (booking.version, stored_version) {
                (Some(new), Some(old)) if new < old => Some((
                    Reason::StaleUpdate,
                    format!("snapshot version {new} is older than the stored {old}"),
                )),
                // Without versions, the partner's status says how far along a snapshot is:
                // one behind the last applied is a late retry, and its status, money and
                // partner status all belong to that older moment.
                (None, _) | (_, None) => behind(booking.effective_rank(), stored_rank).then(|| {
                    (
                        Reason::StaleUpdate,
                        format!(
                            "snapshot status {} is behind the status already applied to booking {id}",
                            booking.partner_status
                        ),
                    )
                }),
                _ => None,
            }
        };
        if let Some((reason, detail)) = skipped {
            let mut result = verdict(cx.event_id, Outcome::Ignored, Some(reason), detail);
            result.venue_id = Some(cx.venue.id);
            return Ok(result);
        }
    }
    let reference_free: Option<i64> =
        db::query_scalar("SELECT id FROM bookings WHERE venue_id = $1 AND reference = $2")
            .bind(cx.venue.id)
            .bind(booking.reference.as_str())
            .fetch_optional(conn)
            .await?;
    let existing_id: Option<i64> = existing.as_ref().map(|r| r.try_get("id")).transpose()?;
    let reference = match reference_free {
        Some(other) if Some(other) != existing_id => None,
        _ => Some(booking.reference.as_str()),
    };
    let guest_id =
        super::bookings::link_guest(conn, cx.venue.id, &booking.customer, cx.now).await?;
    let now = cx.now.timestamp_millis();
    // A new booking starts as a minimal row; one UPDATE then writes the snapshot either way.
    let id = match existing_id {
        Some(id) => id,
        None => {
            db::query_scalar(
                "INSERT INTO bookings (venue_id, start_at, end_at, covers, status, source, external_key,
                     created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                 RETURNING id",
            )
            .bind(cx.venue.id)
            .bind(booking.start.timestamp_millis())
            .bind(booking.end.timestamp_millis())
            .bind(booking.covers.unwrap_or(0).max(0))
            .bind(booking.status.unwrap_or(BookingStatus::Confirmed).as_str())
            .bind(cx.partner)
            .bind(booking.external_key.as_str())
            .bind(now)
            .fetch_one(conn)
            .await?
        }
    };
    db::query(
        "UPDATE bookings SET reference = COALESCE($1, reference), start_at = $2, end_at = $3,
             covers = COALESCE($4, covers), customer_name = $5, customer_email = $6,
             customer_phone = $7, guest_id = COALESCE($8, guest_id), source = $9,
             external_key = $10, total = $11, paid = $12, currency = $13,
             partner_version = $14, fingerprint = $15, partner_status = $16, updated_at = $17,
             partner_rank = COALESCE($19, partner_rank)
         WHERE id = $18",
    )
    .bind(reference)
    .bind(booking.start.timestamp_millis())
    .bind(booking.end.timestamp_millis())
    .bind(booking.covers)
    .bind(booking.customer.name.as_deref())
    .bind(booking.customer.email.as_deref())
    .bind(booking.customer.phone.as_deref())
    .bind(guest_id)
    .bind(cx.partner)
    .bind(booking.external_key.as_str())
    .bind(booking.total.map(decimal_text))
    .bind(booking.paid.map(decimal_text))
    .bind(booking.currency.as_deref())
    .bind(booking.version)
    .bind(fingerprint.as_str())
    .bind(booking.partner_status.as_str())
    .bind(now)
    .bind(id)
    .bind(booking.effective_rank())
    .execute(conn)
    .await?;
    note_booking_span(conn, cx.venue.id, booking.start, booking.end).await?;
    let mut tables: Vec<TableKey> = booking
        .skus
        .iter()
        .filter_map(|sku| cx.venue.sku_tables.get(sku))
        .map(|table| TableKey::from_normalised(table.clone()))
        .collect();
    tables.dedup();
    if !tables.is_empty() {
        write_booking_tables(conn, id, &tables).await?;
    }
    let current = booking_status(conn, id).await?;
    let cause = format!("{} reported {}", cx.partner, booking.partner_status);
    let mut detail = format!(
        "booking {id} {} from {} {}",
        if existing_id.is_some() {
            "updated"
        } else {
            "created"
        },
        cx.partner,
        booking.external_key
    );
    match booking.status {
        Some(next) if existing_id.is_some() && current.may_move_to(next, Mover::Partner) => {
            record_transition(conn, id, current, next, &cause, Some(cx.event_id), cx.now).await?;
            detail.push_str(&format!(", {current} -> {next}"));
        }
        Some(next) if next != current && existing_id.is_some() => {
            detail.push_str(&format!(", stays {current} (no move to {next})"));
        }
        None => detail.push_str(&format!(
            ", status {} kept as {current}",
            booking.partner_status
        )),
        _ => detail.push_str(&format!(", {current}")),
    }
    rematch_around_booking(conn, cx.venue, id, &cause, Some(cx.event_id), cx.now).await?;
    let mut result = verdict(cx.event_id, Outcome::Processed, None, detail);
    result.venue_id = Some(cx.venue.id);
    Ok(result)
}

/// Whether a partner's statement ranked `new` comes from before the one already applied,
/// ranked `stored`: only when both are known.
fn behind(new: Option<i64>, stored: Option<i64>) -> bool {
    matches!((new, stored), (Some(new), Some(stored)) if new < stored)
}

/// Records a platform's payment or refund once per transaction id.
async fn record_payment(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    payment: &PlatformPayment,
) -> Result<Ingested, StoreError> {
    let inserted = db::query(
        "INSERT INTO platform_payments (venue_id, partner, booking_reference, transaction_id, amount,
             refund, at, event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (venue_id, partner, transaction_id) DO NOTHING",
    )
    .bind(cx.venue.id)
    .bind(cx.partner)
    .bind(payment.booking_reference.as_str())
    .bind(payment.transaction_id.as_str())
    .bind(decimal_text(payment.amount))
    .bind(i64::from(payment.refund))
    .bind(payment.at.map(|t| t.timestamp_millis()))
    .bind(cx.event_id)
    .execute(conn)
    .await?;
    let what = if payment.refund { "refund" } else { "payment" };
    let mut result = if inserted == 0 {
        verdict(
            cx.event_id,
            Outcome::Ignored,
            Some(Reason::DuplicateEvent),
            format!("{what} {} is already recorded", payment.transaction_id),
        )
    } else {
        verdict(
            cx.event_id,
            Outcome::Processed,
            None,
            format!(
                "{what} {} of {} for booking {}",
                payment.transaction_id, payment.amount, payment.booking_reference
            ),
        )
    };
    result.venue_id = Some(cx.venue.id);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::json_member_pattern;

    #[test]
    fn a_table_pattern_finds_the_member_and_escapes_like_wildcards() {
        assert_eq!(json_member_pattern("10"), r#"%"10"%"#);
        assert_eq!(json_member_pattern("5_%"), r#"%"5\_\%"%"#);
        assert_eq!(json_member_pattern(r#"A"B"#), r#"%"A\\"B"%"#);
    }
}
