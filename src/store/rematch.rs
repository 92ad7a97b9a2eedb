//! Keeping the diary right: deciding a sale's booking from what the store knows (the
//! domain's [`decide`] on candidates gathered with indexed queries), re-matching the sales a
//! booking's change concerns, and moving bookings to the status their sales imply, each move
//! recorded with its cause. Ingest (`apply`) and operators' changes (`bookings`) both call it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::booking::SalesSummary;
use crate::domain::matching::{
    CandidateBooking, MatchInput, SUGGEST_AFTER, SUGGEST_BEFORE, decide, lineage_reason, suggest,
    widened_window,
};
use crate::domain::sale::BookingRef;
use crate::domain::{
    BookingStatus, MatchDecision, MatchRule, SaleFacts, SaleKind, SaleState, TableKey, time,
};

use crate::store::StoreError;
use crate::store::db::{self, Conn, Row};
use crate::store::records::SuggestionRecord;
use crate::store::sql::{from_millis, json_list, parse_status};

use crate::store::venue::*;

/// A booking reference as stored with a sale, so it can be matched again later.
#[derive(Serialize, Deserialize)]
pub(in crate::store) struct StoredRef {
    pub(in crate::store) value: String,
    pub(in crate::store) source: String,
}

/// The link a sale ends up with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(in crate::store) struct Link {
    pub booking_id: Option<i64>,
    pub rule: Option<&'static str>,
    pub reason: Option<String>,
    pub candidates: Vec<i64>,
}

impl Link {
    pub(in crate::store) fn of(decision: MatchDecision) -> Link {
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

    pub(in crate::store) fn describe(&self) -> String {
        match (&self.rule, &self.reason) {
            (Some(rule), Some(reason)) => format!("matched by {rule}: {reason}"),
            (None, Some(reason)) => format!("ambiguous: {reason}"),
            _ => "unmatched".to_owned(),
        }
    }
}

/// Sets a booking's tables (normalised keys, in the order given).
pub(in crate::store) async fn write_booking_tables(
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

pub(in crate::store) async fn decide_match(
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

pub(in crate::store) async fn bookings_by_reference(
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
pub(in crate::store) async fn bookings_near(
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
pub(in crate::store) fn json_member_pattern(value: &str) -> String {
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

/// Booking rows as matching candidates.
pub(in crate::store) fn candidates(rows: Vec<Row>) -> Result<Vec<CandidateBooking>, StoreError> {
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

/// Links the splits, transfers and refunds of `origin` to its booking: they may have arrived
/// before their origin was matched, or found a booking by table and time on their own;
/// lineage ranks above table and time, so the final link does not depend on arrival order.
/// Returns the bookings such sales left.
pub(in crate::store) async fn adopt_lineage(
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

pub(in crate::store) async fn set_link(
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
pub(in crate::store) async fn follow_sales(
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

pub(in crate::store) async fn booking_status(
    conn: &mut Conn<'_>,
    booking_id: i64,
) -> Result<BookingStatus, StoreError> {
    let status: Option<String> = db::query_scalar("SELECT status FROM bookings WHERE id = $1")
        .bind(booking_id)
        .fetch_optional(conn)
        .await?;
    parse_status(&status.ok_or(StoreError::NotFound("booking"))?)
}

pub(in crate::store) async fn record_transition(
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

/// A stored sale's matching facts and current link.
pub(in crate::store) struct StoredFacts {
    id: i64,
    partner: String,
    external_id: String,
    facts: SaleFacts,
    booking_id: Option<i64>,
}

pub(in crate::store) fn stored_facts(row: &Row) -> Result<StoredFacts, StoreError> {
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
pub(in crate::store) async fn suggestions(
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
pub(in crate::store) async fn rematch_around_booking(
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
