//! Keeping the diary right: deciding a sale's booking from what the store knows (the
//! domain's [`decide`] on candidates gathered with indexed queries), re-matching the sales a
//! booking's change concerns, and moving bookings to the status their sales imply, each move
//! recorded with its cause. Ingest (`apply`) and operators' changes (`bookings`) both call it.

use chrono::{DateTime, Utc};

use crate::domain::booking::SalesSummary;
use crate::domain::change::{Note, Noted};
use crate::domain::matching::{
    SUGGEST_AFTER, SUGGEST_BEFORE, lineage_reason, suggest, widened_window,
};
use crate::domain::{BookingStatus, MatchRule, SaleKind, SaleState, TableKey, time};

use crate::store::StoreError;
use crate::store::changes::BOOKING_WITH_SALES;
use crate::store::db::{self, Conn};
use crate::store::records::SuggestionRecord;
use crate::store::sql::{from_millis, json_list, parse_status};

use crate::store::matching::{
    FACT_COLUMNS, Link, SaleToMatch, WalkIn, candidate_select, candidates, current_match,
    decide_match, json_member_pattern, note_presence, or_walk_in, set_link, stored_facts,
};
use crate::store::venue::*;

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

/// Sales split, transferred or refunded from sale `origin` follow it to `booking_id`: those
/// that arrived before their origin was matched, found a booking by table and time on their
/// own, or inherited the origin's previous booking (the origin re-matched, unmatched by an
/// operator, released by a no-show). With the origin unmatched, its lineage leaves with it.
/// Lineage ranks above table and time, so the final link does not depend on arrival order
/// or on whether anyone replayed. Followed down the lineage (a refund of a split), each
/// sale once. Returns the bookings such sales left or joined.
pub(in crate::store) async fn follow_origin(
    conn: &mut Conn<'_>,
    partner: &str,
    venue_id: i64,
    origin: &str,
    booking_id: Option<i64>,
) -> Result<Vec<i64>, StoreError> {
    let mut touched = Vec::new();
    let mut pending = vec![(origin.to_owned(), booking_id)];
    let mut seen = vec![origin.to_owned()];
    while let Some((origin, booking_id)) = pending.pop() {
        let rows = db::query(
            "SELECT id, kind, external_id, booking_id, match_rule FROM sales
             WHERE partner = $1 AND venue_id = $2 AND origin_external_id = $3
               AND ((booking_id IS NULL AND match_rule IS NULL)
                    OR match_rule IN ('table_time', 'lineage'))",
        )
        .bind(partner)
        .bind(venue_id)
        .bind(origin.as_str())
        .fetch_all(conn)
        .await?;
        for row in rows {
            let external_id: String = row.try_get("external_id")?;
            if seen.contains(&external_id) {
                continue;
            }
            seen.push(external_id.clone());
            let previous: Option<i64> = row.try_get("booking_id")?;
            let rule: Option<String> = row.try_get("match_rule")?;
            let kind: String = row.try_get("kind")?;
            let kind = SaleKind::parse(&kind).unwrap_or(SaleKind::Sale);
            let link = match booking_id {
                Some(booking_id) => Link {
                    booking_id: Some(booking_id),
                    rule: Some(MatchRule::Lineage.as_str()),
                    reason: Some(lineage_reason(kind, &origin)),
                    ..Link::default()
                },
                // Only what came with the origin leaves with it.
                None if rule.as_deref() == Some(MatchRule::Lineage.as_str()) => Link {
                    reason: Some(format!(
                        "{} of sale {origin}, which is unmatched",
                        kind.as_str()
                    )),
                    ..Link::default()
                },
                None => continue,
            };
            if previous == booking_id && rule.as_deref() == link.rule {
                continue;
            }
            set_link(conn, row.try_get("id")?, &link).await?;
            touched.extend(previous);
            touched.extend(booking_id);
            pending.push((external_id, booking_id));
        }
    }
    Ok(touched)
}

/// Moves a booking to the status its sales imply, if the state machine allows it; and when
/// its last live sale has left (re-matched, unmatched, voided), back to the status it had
/// before its sales moved it (a walk-in made for a check is cancelled): no booking stays
/// seated or paid on a sale it no longer has. Each move is recorded with `cause`.
pub(in crate::store) async fn follow_sales(
    conn: &mut Conn<'_>,
    booking_id: i64,
    cause: &str,
    event_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.note(Note {
        change: Noted::Sales { booking_id },
        cause: cause.to_owned(),
        event_id,
        at: now,
    });
    // What the outbox renders too: kept for it, so that the booking is read once per write.
    let mut rows = db::query(BOOKING_WITH_SALES.as_str())
        .bind(booking_id)
        .fetch_all(conn)
        .await?;
    let first = rows.first().ok_or(StoreError::NotFound("booking"))?;
    let current = parse_status(&first.try_get::<String>("b_status")?)?;
    let before_sales = first
        .try_get::<Option<String>>("b_pre_sales_status")?
        .as_deref()
        .map(parse_status)
        .transpose()?;
    let walk_in = first.try_get::<Option<String>>("b_source")?.as_deref() == Some("walk_in");
    let mut summary = SalesSummary::default();
    let mut referenced = SalesSummary::default();
    for row in &rows {
        let state: Option<String> = row.try_get("state")?;
        let rule: Option<String> = row.try_get("match_rule")?;
        match state.as_deref().and_then(SaleState::parse) {
            Some(SaleState::Voided) | None => {}
            Some(state) => {
                summary.live += 1;
                let reopened_after_leaving = reopened_after_leaving(row)?;
                summary.open += usize::from(state == SaleState::Open && !reopened_after_leaving);
                if rule.as_deref() == Some(MatchRule::BookingReference.as_str()) {
                    referenced.live += 1;
                }
            }
        }
    }
    // A no-show whose own reference turns up on a check: the party came, late.
    let remember = if before_sales.is_none() {
        BeforeSales::Set(current)
    } else {
        BeforeSales::Keep
    };
    let late = SalesSummary {
        live: referenced.live,
        open: summary.open,
    };
    let moved = if let Some(next) = current.after_late_arrival(late) {
        let cause = format!("{cause}: a check carries its reference, the party came late");
        Some((StatusChange::new(current, next, remember), cause))
    } else if summary.live == 0 {
        current.without_sales(before_sales, walk_in).map(|back| {
            let cause = format!("{cause}; no live sale left");
            (StatusChange::new(current, back, BeforeSales::Forget), cause)
        })
    } else {
        current
            .after_sales(summary)
            .map(|next| (StatusChange::new(current, next, remember), cause.to_owned()))
    };
    if let Some((change, cause)) = moved {
        move_booking(conn, booking_id, change, &cause, event_id, now).await?;
        for row in &mut rows {
            row.set_text("b_status", change.to.as_str());
        }
    }
    conn.read_booking_ahead(booking_id, rows);
    Ok(())
}

/// How long after its first close a reopened check may still be its party's (a last round,
/// a payment taken again at the table).
const STILL_AT_THE_TABLE: chrono::Duration = chrono::Duration::minutes(30);

/// Whether a row's sale is a check reopened after its party left: first closed, open again
/// at a time past both its booking's end and a while after that close (a tip added, a
/// correction made in the office days later). It does not seat the party again.
fn reopened_after_leaving(row: &db::Row) -> Result<bool, StoreError> {
    let (Some(first_closed), Some(version)) = (
        row.try_get::<Option<i64>>("first_closed_at")?,
        row.try_get::<Option<i64>>("version")?,
    ) else {
        return Ok(false);
    };
    let end: i64 = row.try_get("b_end_at")?;
    let grace = STILL_AT_THE_TABLE.num_milliseconds();
    Ok(version > end && version > first_closed.saturating_add(grace))
}

/// What a status move does with the status a booking had before its sales moved it.
#[derive(Debug, Clone, Copy)]
enum BeforeSales {
    Keep,
    Set(BookingStatus),
    Forget,
}

/// A booking's status move and what it remembers of before its sales.
#[derive(Debug, Clone, Copy)]
struct StatusChange {
    from: BookingStatus,
    to: BookingStatus,
    before_sales: BeforeSales,
}

impl StatusChange {
    fn new(from: BookingStatus, to: BookingStatus, before_sales: BeforeSales) -> Self {
        Self {
            from,
            to,
            before_sales,
        }
    }
}

/// Moves a booking as its sales say, remembering (or forgetting) its status before them in
/// the same statement, and records the move with `cause`.
async fn move_booking(
    conn: &mut Conn<'_>,
    booking_id: i64,
    change: StatusChange,
    cause: &str,
    event_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let before = match change.before_sales {
        BeforeSales::Keep => None,
        BeforeSales::Set(status) => Some(Some(status.as_str())),
        BeforeSales::Forget => Some(None),
    };
    let moved = Move {
        booking_id,
        from: change.from,
        to: change.to,
        before_sales: before,
    };
    write_move(conn, &moved, cause, event_id, now).await
}

/// Whether a live sale holds the booking by stronger evidence than table and time (its
/// reference, an operator; a split or refund only follows its origin): then a partner's no-show or cancellation cannot take it
/// from seated or paid (see [`BookingStatus::may_release_to`]).
pub(in crate::store) async fn held_firmly(
    conn: &mut Conn<'_>,
    booking_id: i64,
) -> Result<bool, StoreError> {
    let firm: i64 = db::query_scalar(
        "SELECT COUNT(*) FROM sales WHERE booking_id = $1 AND state <> 'voided'
             AND match_rule IN ('booking_reference', 'manual')",
    )
    .bind(booking_id)
    .fetch_one(conn)
    .await?;
    Ok(firm > 0)
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

/// Moves booking `booking_id` from `from` to `to` and records the move in its history with
/// `cause` (and the event that caused it, if one did); its status before its sales stays.
///
/// # Errors
/// Store failures only.
pub(in crate::store) async fn record_transition(
    conn: &mut Conn<'_>,
    booking_id: i64,
    from: BookingStatus,
    to: BookingStatus,
    cause: &str,
    event_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let moved = Move {
        booking_id,
        from,
        to,
        before_sales: None,
    };
    write_move(conn, &moved, cause, event_id, now).await
}

/// A status move as it is written.
struct Move<'a> {
    booking_id: i64,
    from: BookingStatus,
    to: BookingStatus,
    /// The status before its sales to remember (`Some(None)`: to forget); `None` keeps it.
    before_sales: Option<Option<&'a str>>,
}

/// A status move's statements. Their parameters: $1 the booking, $2 now, $3 the new status,
/// $4 the old one, $5 the cause, $6 the event, $7 the status before its sales (only when
/// the move sets or forgets it).
const SET_STATUS: &str = "UPDATE bookings SET status = $3, updated_at = $2 WHERE id = $1";
const SET_STATUS_AND_BEFORE_SALES: &str =
    "UPDATE bookings SET status = $3, updated_at = $2, pre_sales_status = $7 WHERE id = $1";
const INSERT_TRANSITION: &str = "INSERT INTO booking_transitions
     (booking_id, from_status, to_status, cause, event_id, at) VALUES ($1, $4, $3, $5, $6, $2)";

/// On PostgreSQL, each update with the history line in one statement (a data-modifying
/// `WITH`): without and with the status before its sales.
static MOVE_IN_ONE: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    [SET_STATUS, SET_STATUS_AND_BEFORE_SALES]
        .map(|update| format!("WITH moved AS ({update}) {INSERT_TRANSITION}"))
});

/// Writes a status move and its line in the booking's history, noted for the outbox. On
/// PostgreSQL in one statement: each statement there is a round trip and PostgreSQL's
/// per-statement work, and a move is one in three events.
async fn write_move(
    conn: &mut Conn<'_>,
    moved: &Move<'_>,
    cause: &str,
    event_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    use db::Bind;
    conn.note(Note {
        change: Noted::Status {
            booking_id: moved.booking_id,
            from: moved.from,
            to: moved.to,
        },
        cause: cause.to_owned(),
        event_id,
        at: now,
    });
    let mut params = vec![
        moved.booking_id.param(),
        now.timestamp_millis().param(),
        moved.to.as_str().param(),
        moved.from.as_str().param(),
        cause.param(),
        event_id.param(),
    ];
    let remembers = moved.before_sales.is_some();
    if let Some(before) = moved.before_sales {
        params.push(before.param());
    }
    if conn.is_postgres() {
        db::query(MOVE_IN_ONE[usize::from(remembers)].as_str())
            .bind_params(params)
            .execute(conn)
            .await?;
        return Ok(());
    }
    // SQLite binds by number, up to the highest number a statement names.
    let (update, named) = if remembers {
        (SET_STATUS_AND_BEFORE_SALES, 7)
    } else {
        (SET_STATUS, 3)
    };
    db::query(update)
        .bind_params(params.iter().take(named).cloned())
        .execute(conn)
        .await?;
    db::query(INSERT_TRANSITION)
        .bind_params(params.into_iter().take(6))
        .execute(conn)
        .await?;
    Ok(())
}

/// The bookings an operator might match sale `sale_id` to, ranked and explained by
/// [`suggest`]; `None` when there is no such sale.
pub(in crate::store) async fn suggestions(
    conn: &mut Conn<'_>,
    sale_id: i64,
    limit: usize,
) -> Result<Option<Vec<SuggestionRecord>>, StoreError> {
    let Some(row) = db::query(format!(
        "SELECT {FACT_COLUMNS}, venue_id, match_candidates FROM sales WHERE id = $1"
    ))
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
    let (opened, _) = sale.facts.match_time();
    // The candidates' checks are counted as matching counts them, so the evidence an
    // operator reads is the evidence the rules weighed.
    let rows = db::query(format!(
        "{} WHERE b.venue_id = $1 AND b.start_at >= $2 AND b.start_at <= $3
         ORDER BY b.start_at, b.id LIMIT 500",
        candidate_select(4)
    ))
    .bind(venue.id)
    .bind(time::minus(opened, SUGGEST_BEFORE).timestamp_millis())
    .bind(time::plus(opened, SUGGEST_AFTER).timestamp_millis())
    .bind(sale_id)
    .fetch_all(conn)
    .await?;
    let mut nearby = candidates(rows.clone())?;
    note_presence(conn, &venue, &mut nearby, sale_id).await?;
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

/// Matches again the sales a booking's creation or change may concern: the sales it holds by
/// table and time (which may no longer fit), unmatched sales carrying its reference, and
/// unmatched sales in its widened window that are on one of its tables or had it among
/// their candidates. Manual decisions are left alone. Then every booking that gained or lost
/// a sale follows its sales' states.
///
/// Why not every unmatched sale in the window: a sale's table-and-time candidates are the
/// bookings on its own tables (`matching::bookings_near`), so a booking elsewhere cannot
/// change its decision; one it left (moved, re-tabled, cancelled) was among its candidates
/// if it mattered. Deciding each of them again cost three round trips a sale and held the
/// venue for seconds at a bar with thousands of open tabs (found by the outside attack on
/// issue 15). A sale whose decision did not change is not written.
pub(in crate::store) async fn rematch_around_booking(
    conn: &mut Conn<'_>,
    venue: &Venue,
    booking_id: i64,
    cause: &str,
    event_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let row = db::query("SELECT start_at, end_at, reference, tables FROM bookings WHERE id = $1")
        .bind(booking_id)
        .fetch_one(conn)
        .await?;
    let (from, to) = widened_window(
        from_millis(row.try_get("start_at")?)?,
        from_millis(row.try_get("end_at")?)?,
        venue.tolerances,
    );
    let reference: Option<String> = row.try_get("reference")?;
    let its_tables: Vec<TableKey> =
        serde_json::from_str::<Vec<String>>(&row.try_get::<String>("tables")?)
            .unwrap_or_default()
            .into_iter()
            .map(TableKey::from_normalised)
            .collect();
    // Unmatched sales that name the reference, found by it in their stored references (a
    // JSON list): every unmatched sale that named any reference, all of the venue's history,
    // was read and decided again before.
    let names_reference = reference
        .as_deref()
        .map_or_else(String::new, json_member_pattern);
    let rows = db::query(format!(
        "SELECT {FACT_COLUMNS}, match_candidates FROM sales
         WHERE venue_id = $1 AND (match_rule IS NULL OR match_rule <> 'manual') AND (
             (booking_id IS NULL AND ((opened_at >= $2 AND opened_at <= $3)
                 OR (placed_at >= $2 AND placed_at <= $3)
                 OR ($5 <> '' AND booking_refs LIKE $5 ESCAPE '\\')))
             OR (booking_id = $4 AND match_rule = 'table_time'))
         ORDER BY opened_at, id"
    ))
    .bind(venue.id)
    .bind(from.timestamp_millis())
    .bind(to.timestamp_millis())
    .bind(booking_id)
    .bind(names_reference)
    .fetch_all(conn)
    .await?;
    let mut touched = vec![booking_id];
    for row in &rows {
        let mut sale = stored_facts(row)?;
        sale.facts.tables = venue.diary_tables(&sale.facts.tables);
        let (at, _) = sale.facts.match_time();
        let in_window = from <= at && at <= to;
        let names_booking = reference
            .as_deref()
            .is_some_and(|r| sale.facts.booking_refs.iter().any(|b| b.value == r));
        let candidates: Vec<i64> = row
            .try_get::<Option<String>>("match_candidates")?
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or_default();
        let concerned = names_booking
            || (in_window
                && (candidates.contains(&booking_id)
                    || sale.facts.tables.iter().any(|t| its_tables.contains(t))));
        if sale.link.booking_id.is_none() && !concerned {
            continue;
        }
        let current = current_match(conn, venue, sale.id, &sale.link).await?;
        let decision = decide_match(
            conn,
            &sale.partner,
            venue,
            SaleToMatch {
                facts: &sale.facts,
                id: Some(sale.id),
                current: current.as_ref(),
            },
        )
        .await?;
        if let crate::domain::MatchDecision::Matched(m) = &decision
            && Some(m.booking_id) == sale.link.booking_id
        {
            continue;
        }
        let walk_in = WalkIn {
            kind: sale.facts.kind,
            state: sale.state,
            at,
            covers: sale.facts.covers,
            tables: &sale.facts.tables,
        };
        let link = or_walk_in(conn, venue, Link::of(decision), walk_in, now).await?;
        // Nobody's before and after, with no candidate to show evidence for.
        let unchanged = link.booking_id.is_none()
            && sale.link.booking_id.is_none()
            && link.candidates.is_empty()
            && candidates.is_empty()
            && link.reason == sale.link.reason;
        if unchanged {
            continue;
        }
        set_link(conn, sale.id, &link).await?;
        touched.extend(sale.link.booking_id);
        touched.extend(link.booking_id);
        touched.extend(
            follow_origin(
                conn,
                &sale.partner,
                venue.id,
                &sale.external_id,
                link.booking_id,
            )
            .await?,
        );
    }
    follow_all(conn, touched, cause, event_id, now).await
}

/// Lets every booking in `touched` (once each, whatever the repeats) follow its sales.
pub(in crate::store) async fn follow_all(
    conn: &mut Conn<'_>,
    mut touched: Vec<i64>,
    cause: &str,
    event_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    touched.sort_unstable();
    touched.dedup();
    for booking_id in touched {
        follow_sales(conn, booking_id, cause, event_id, now).await?;
    }
    Ok(())
}
