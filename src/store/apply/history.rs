//! What a late, older snapshot still tells: where the check was, and when.
//!
//! A snapshot older than the sale's stored one is never applied (money and items do not go
//! backwards, `SaleSnapshot::supersedes`). But when it shows the check on other tables
//! than it is on now (a POS back online flushing its queue, a partner's retry), it is the
//! check's table history that arrived out of order: the check was opened on another table
//! and moved (a transfer), or sat at the bar before it was moved to its table. Had the
//! snapshots come in order, the check would have been matched by where it was first
//! placed, or by when it got onto its table; so it is matched again now as it would have
//! been, and the stored placement time corrected. A late `CLOSE` still says when the party
//! first paid and left.

use chrono::{DateTime, Duration};

use crate::domain::{MatchDecision, MatchRule, SaleSnapshot, SaleState};
use crate::store::StoreError;
use crate::store::db::{self, Conn};
use crate::store::matching::{
    FACT_COLUMNS, Link, SaleToMatch, StoredFacts, decide_match, set_link, stored_facts,
};
use crate::store::rematch::{follow_all, follow_origin};

use super::Context;
use super::sales::recheck_after_close;

/// A snapshot time this close to the open time is the opening itself.
const AT_OPENING: Duration = Duration::minutes(1);

/// Re-decides sale `sale_id` from the table history in `stale`, a snapshot older than the
/// stored one; returns what changed, in words, or `None` when it told nothing new.
/// Operators' decisions, references and lineage are never touched.
///
/// # Errors
/// Store failures only.
pub(in crate::store) async fn learn_from_stale(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    sale_id: i64,
    stale: &SaleSnapshot,
) -> Result<Option<String>, StoreError> {
    let row = db::query(format!(
        "SELECT {FACT_COLUMNS}, first_seen_at, first_closed_at FROM sales WHERE id = $1"
    ))
    .bind(sale_id)
    .fetch_one(conn)
    .await?;
    let mut stored = stored_facts(&row)?;
    // A late CLOSE still says when the party first paid and left: earlier than we knew,
    // the checks its booking was given by table and time since then are the next party's.
    let first_closed_at: Option<i64> = row.try_get("first_closed_at")?;
    if stale.state == SaleState::Closed {
        let closed = stale.paid_at();
        if first_closed_at.is_none_or(|known| closed.timestamp_millis() < known) {
            db::query("UPDATE sales SET first_closed_at = $1 WHERE id = $2")
                .bind(closed.timestamp_millis())
                .bind(sale_id)
                .execute(conn)
                .await?;
            if let Some(booking_id) = stored.link.booking_id {
                let cause = format!("sale {} closed earlier than known", stored.external_id);
                recheck_after_close(conn, cx, booking_id, sale_id, closed, &cause).await?;
            }
        }
    }
    let first_seen_at = row
        .try_get::<Option<i64>>("first_seen_at")?
        .and_then(DateTime::from_timestamp_millis);
    let firm = [
        MatchRule::Manual,
        MatchRule::BookingReference,
        MatchRule::Lineage,
    ];
    if stored
        .link
        .rule
        .as_deref()
        .is_some_and(|rule| firm.iter().any(|f| f.as_str() == rule))
    {
        return Ok(None);
    }
    let then_tables = cx.venue.diary_tables(&stale.tables);
    let now_tables = cx.venue.diary_tables(&stored.facts.tables);
    if then_tables == now_tables {
        return Ok(None);
    }
    let seen_at = stale.updated_at.unwrap_or(stale.opened_at);
    let opened_at = stored.facts.opened_at;

    // 1. It was on other tables at `seen_at`, before what decided it now: where a check is
    //    first placed decides it, and a later move keeps that match (as it would had this
    //    come first). A snapshot from after that decision would only have been kept.
    let placement = stored.facts.placed_at.unwrap_or(opened_at);
    let decided_at = stored
        .link
        .decided_by
        .as_ref()
        .map_or(placement, |decisive| decisive.at);
    let mut decision = None;
    if !then_tables.is_empty() && seen_at < decided_at.max(opened_at + AT_OPENING) {
        let mut then = stored.facts.clone();
        then.tables = then_tables.clone();
        then.placed_at = (seen_at > opened_at + AT_OPENING).then_some(seen_at);
        let earlier = decide_match(
            conn,
            cx.partner,
            cx.venue,
            SaleToMatch {
                facts: &then,
                id: Some(sale_id),
                current: None,
            },
        )
        .await?;
        if matches!(earlier, MatchDecision::Matched(_)) {
            decision = Some(earlier);
        }
    }

    // 2. It was not yet on its tables at `seen_at`: it got there after, when it was first
    //    seen there (its placement time was taken to be its opening).
    let placed_later = match (stored.facts.placed_at, first_seen_at) {
        (None, Some(first_seen)) if placement <= seen_at && seen_at < first_seen => {
            Some(first_seen)
        }
        _ => None,
    };
    if let Some(placed) = placed_later {
        db::query("UPDATE sales SET placed_at = $1 WHERE id = $2")
            .bind(placed.timestamp_millis())
            .bind(sale_id)
            .execute(conn)
            .await?;
        stored.facts.placed_at = Some(placed);
        if decision.is_none() {
            let mut facts = stored.facts.clone();
            facts.tables = now_tables;
            decision = Some(
                decide_match(
                    conn,
                    cx.partner,
                    cx.venue,
                    SaleToMatch {
                        facts: &facts,
                        id: Some(sale_id),
                        current: None,
                    },
                )
                .await?,
            );
        }
    }
    // Only a match is adopted: a history that decides nothing leaves the sale as it is.
    match decision {
        Some(decision @ MatchDecision::Matched(_)) => {
            relink(conn, cx, &stored, Link::of(decision)).await
        }
        _ => Ok(None),
    }
}

/// Writes the new link if it differs, and lets the bookings and the sale's lineage follow.
async fn relink(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    stored: &StoredFacts,
    link: Link,
) -> Result<Option<String>, StoreError> {
    if link.booking_id == stored.link.booking_id {
        return Ok(None);
    }
    set_link(conn, stored.id, &link).await?;
    let cause = format!(
        "sale {} re-matched by the table history of a late snapshot",
        stored.external_id
    );
    let mut touched = follow_origin(
        conn,
        cx.partner,
        cx.venue.id,
        &stored.external_id,
        link.booking_id,
    )
    .await?;
    touched.extend(link.booking_id);
    touched.extend(stored.link.booking_id);
    follow_all(conn, touched, &cause, Some(cx.event_id), cx.now).await?;
    Ok(Some(format!(
        "its table history re-decided the sale: {}",
        link.describe()
    )))
}
