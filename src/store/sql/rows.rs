//! Reading rows back: money and times from their stored text and milliseconds, and the
//! records the admin API and pages show (sales, events, venues), with the filters that
//! select them.

use std::collections::BTreeMap;
use std::str::FromStr;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::{BookingStatus, MatchRule, Reason, SaleKind, SaleState};
use crate::store::db::{self, Conn, Param, Row};
use crate::store::records::*;
use crate::store::{StoreError, body};

pub(in crate::store) fn decimal_text(value: Decimal) -> String {
    value.to_string()
}

pub(in crate::store) fn decimal(text: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str(text).map_err(|_| StoreError::Corrupt(format!("amount {text:?}")))
}

/// A decimal column (stored as text) of a row.
pub(in crate::store) fn money_column(row: &Row, column: &str) -> Result<Decimal, StoreError> {
    decimal(&row.try_get::<String>(column)?)
}

pub(super) fn opt_decimal(text: Option<String>) -> Result<Option<Decimal>, StoreError> {
    text.as_deref().map(decimal).transpose()
}

pub(in crate::store) fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("time {ms}")))
}

pub(super) fn opt_millis(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(from_millis).transpose()
}

pub(in crate::store) fn parse_status(text: &str) -> Result<BookingStatus, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("booking status {text:?}")))
}

pub(in crate::store) fn json_list<S: serde::Serialize>(items: impl Iterator<Item = S>) -> String {
    let items: Vec<S> = items.collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned())
}

pub(super) fn parse_json_list<T: serde::de::DeserializeOwned>(text: Option<String>) -> Vec<T> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub(in crate::store) const SALE_COLUMNS: &str = "id, venue_id, partner, external_id, number, kind, origin_external_id,
    state, opened_at, closed_at, version, currency, total, paid, tax, net, tip, service_charge,
    discount, deposit, covers, tables, booking_id, match_rule, match_reason, match_candidates, last_event_id,
    matched_table, matched_at, time_basis, match_evidence";

pub(in crate::store) fn sale_record(row: &Row) -> Result<SaleRecord, StoreError> {
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
            evidence: crate::store::matching::stored_evidence(row.try_get("match_evidence")?)
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

pub(super) const EVENT_COLUMNS: &str =
    "id, received_at, partner, route, method, event_type, handler,
    handler_version, outcome, reason, detail, venue_id, sale_id, processed_at, purged_at,
    secret_label";

pub(super) fn event_summary(row: &Row) -> Result<EventSummary, StoreError> {
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
        verified_by: row.try_get("secret_label")?,
    })
}

/// A `WHERE` clause built from optional filters, with its `$n` parameters in order.
#[derive(Default)]
pub(in crate::store) struct Conditions {
    pub(super) clauses: Vec<String>,
    params: Vec<Param<'static>>,
}

impl Conditions {
    pub(super) fn push(&mut self, clause: &str, param: Param<'static>) {
        self.params.push(param);
        self.clauses
            .push(clause.replace("$?", &format!("${}", self.params.len())));
    }

    pub(in crate::store) fn text(&mut self, clause: &str, value: &Option<String>) {
        if let Some(value) = value {
            self.push(clause, Param::Text(Some(value.clone().into())));
        }
    }

    pub(in crate::store) fn int(&mut self, clause: &str, value: i64) {
        self.push(clause, Param::Int(Some(value)));
    }

    /// `clause` with each `$?` bound to the next of `params`, in order.
    pub(in crate::store) fn push_each(&mut self, clause: &str, params: Vec<Param<'static>>) {
        let mut text = String::new();
        let mut rest = clause;
        for param in params {
            let Some((before, after)) = rest.split_once("$?") else {
                break;
            };
            self.params.push(param);
            text.push_str(before);
            text.push_str(&format!("${}", self.params.len()));
            rest = after;
        }
        text.push_str(rest);
        self.clauses.push(text);
    }

    /// `column IN (...)` over `values`; no values match nothing.
    pub(in crate::store) fn int_in(&mut self, column: &str, values: &[i64]) {
        if values.is_empty() {
            self.clauses.push("1 = 0".to_owned());
            return;
        }
        let mut placeholders = Vec::with_capacity(values.len());
        for value in values {
            self.params.push(Param::Int(Some(*value)));
            placeholders.push(format!("${}", self.params.len()));
        }
        self.clauses
            .push(format!("{column} IN ({})", placeholders.join(", ")));
    }

    /// The whole statement, ready to run.
    pub(in crate::store) fn query(self, select: &str, order_and_limit: &str) -> db::Query<'static> {
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

pub(super) const STORED_EVENT: &str =
    "SELECT id, partner, event_type, query, headers, body, body_encoding,
    outcome, reason, attempts FROM events";

pub(super) fn stored_event(row: &Row) -> Result<StoredEvent, StoreError> {
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

pub(super) fn replay_conditions(filter: &ReplayFilter) -> Conditions {
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
    if let Some(location) = &filter.unmapped_location {
        // The detail names the location first, alone or before other locations' results.
        let detail = crate::domain::event::unmapped_location_detail(location);
        let escaped = detail
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        conditions
            .clauses
            .push("reason = 'unknown_location'".to_owned());
        conditions.push_each(
            "(detail = $? OR detail LIKE $? ESCAPE '\\')",
            vec![
                db::Param::Text(Some(detail.into())),
                db::Param::Text(Some(format!("{escaped}; %").into())),
            ],
        );
    }
    conditions
}

/// Rows of `query`, each made into a `T`.
pub(super) async fn fetch_each<T>(
    conn: &mut Conn<'_>,
    query: db::Query<'_>,
    make: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    query.fetch_all(conn).await?.iter().map(make).collect()
}

pub(in crate::store) async fn venue_record(
    conn: &mut Conn<'_>,
    id: i64,
) -> Result<Option<VenueRecord>, StoreError> {
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

pub(super) async fn insert_venue(conn: &mut Conn<'_>, venue: &NewVenue) -> Result<i64, StoreError> {
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
        insert_location(conn, id, location).await?;
    }
    Ok(id)
}

/// Maps a partner location to venue `venue_id`.
///
/// # Errors
/// [`StoreError::Conflict`] when it belongs to a venue already.
pub(in crate::store) async fn insert_location(
    conn: &mut Conn<'_>,
    venue_id: i64,
    location: &NewLocation,
) -> Result<(), StoreError> {
    // Inserted first and read only when it was taken: a check before the insert let two
    // nodes mapping one location at once both pass it, and the second insert was a 500.
    let inserted: Option<i64> = db::query_scalar(
        "INSERT INTO partner_locations (venue_id, partner, location_id, enabled)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (partner, location_id) DO NOTHING
         RETURNING id",
    )
    .bind(venue_id)
    .bind(location.partner.as_str())
    .bind(location.location_id.as_str())
    .bind(location.enabled)
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_some() {
        return Ok(());
    }
    let other: Option<i64> = db::query_scalar(
        "SELECT venue_id FROM partner_locations WHERE partner = $1 AND location_id = $2",
    )
    .bind(location.partner.as_str())
    .bind(location.location_id.as_str())
    .fetch_optional(conn)
    .await?;
    Err(StoreError::Conflict(format!(
        "location {} of partner {} already belongs to venue {}",
        location.location_id,
        location.partner,
        other.map_or_else(|| "another".to_owned(), |v| v.to_string())
    )))
}

pub(super) async fn sale_detail(
    conn: &mut Conn<'_>,
    id: i64,
) -> Result<Option<SaleDetail>, StoreError> {
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

pub(super) async fn event_detail(
    conn: &mut Conn<'_>,
    id: i64,
) -> Result<Option<EventDetail>, StoreError> {
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
