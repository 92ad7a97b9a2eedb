//! A sale's snapshot applied: fresher than the stored one or not, its match decided (or kept),
//! a walk-in made for it, its lines and payments written, its bookings moved.

use chrono::{DateTime, Utc};

use crate::domain::sale::Freshness;
use crate::domain::{Outcome, Reason, SaleSnapshot, SaleState, TableKey};

use crate::store::db::{self, Conn};
use crate::store::matching::{
    LINK_COLUMNS, Link, SaleToMatch, StoredLink, StoredRef, WalkIn, current_match, decide_match,
    or_walk_in,
};
use crate::store::rematch::{follow_all, follow_origin, rematch_around_booking};
use crate::store::sql::{decimal_text, from_millis, json_list};
use crate::store::{Ingested, StoreError};

use super::history::learn_from_stale;
use super::{Context, verdict};

/// The stored state of a sale that decides how a new snapshot applies.
pub(in crate::store) struct StoredSale {
    id: i64,
    version: i64,
    /// See [`items_digest`].
    items_digest: Option<String>,
    state: SaleState,
    /// The tables it was on, as the partner named them.
    tables: Vec<String>,
    placed_at: Option<DateTime<Utc>>,
    link: StoredLink,
    /// The event that last wrote the sale.
    last_event_id: i64,
}

/// The stored sale `external_id` of `partner` at `venue_id`, if any, and whether any sale
/// names it as its origin (a split, a refund): read together, in one round trip, because
/// almost every sale has no such sale and then nothing follows it ([`follow_origin`]).
pub(in crate::store) async fn stored_sale(
    conn: &mut Conn<'_>,
    partner: &str,
    venue_id: i64,
    external_id: &str,
) -> Result<(Option<StoredSale>, bool), StoreError> {
    // One row whether or not the sale is stored: `id` is null when it is not.
    let row = db::query(format!(
        "SELECT s.id, s.version, s.state, s.items_digest, s.last_event_id, s.tables,
             s.placed_at, {LINK_COLUMNS},
             EXISTS (SELECT 1 FROM sales c WHERE c.venue_id = $2 AND c.partner = $1
                     AND c.origin_external_id = $3) AS has_lineage
         FROM (SELECT 1 AS one) AS one
             LEFT JOIN sales s ON s.partner = $1 AND s.venue_id = $2 AND s.external_id = $3"
    ))
    .bind(partner)
    .bind(venue_id)
    .bind(external_id)
    .fetch_one(conn)
    .await?;
    let has_lineage = row.try_get::<bool>("has_lineage")?;
    let Some(id) = row.try_get::<Option<i64>>("id")? else {
        return Ok((None, has_lineage));
    };
    let state: String = row.try_get("state")?;
    let tables: String = row.try_get("tables")?;
    let stored = StoredSale {
        id,
        version: row.try_get("version")?,
        items_digest: row.try_get("items_digest")?,
        state: SaleState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("sale state {state:?}")))?,
        tables: serde_json::from_str(&tables).unwrap_or_default(),
        placed_at: row
            .try_get::<Option<i64>>("placed_at")?
            .map(from_millis)
            .transpose()?,
        link: StoredLink::from_row(&row)?,
        last_event_id: row.try_get("last_event_id")?,
    };
    Ok((Some(stored), has_lineage))
}

/// When a snapshot put the check on the tables it is on, if after it was first seen: the
/// stored time while the tables stay; this snapshot's own time (the partner's update time,
/// else now) when they changed to some (a bar tab moved to a table, a party moved).
fn placed_at(
    stored: Option<&StoredSale>,
    sale: &SaleSnapshot,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let stored = stored?;
    let tables: Vec<&str> = sale.tables.iter().map(TableKey::as_str).collect();
    let unchanged = stored
        .tables
        .iter()
        .map(String::as_str)
        .eq(tables.iter().copied());
    if unchanged || tables.is_empty() {
        return stored.placed_at;
    }
    Some(sale.updated_at.unwrap_or(now).max(sale.opened_at))
}

/// How far ahead of this server's clock a snapshot's own time may be: POS clocks drift
/// and venues sit in every zone, but not by a day.
const MAX_CLOCK_AHEAD: chrono::Duration = chrono::Duration::days(1);

/// A fail point in applying a sale, for the tests that prove a panic inside one write fails
/// that write alone. Only sales whose id starts with [`FAIL_POINT_SALES`] reach it, so a test
/// that configures it never disturbs another's sales (fail points are global to a process).
pub const FAIL_APPLY_SALE: &str = "apply-upsert-sale";

/// See [`FAIL_APPLY_SALE`].
pub const FAIL_POINT_SALES: &str = "fail-point-";

pub(in crate::store) async fn upsert_sale(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    sale: &SaleSnapshot,
) -> Result<Ingested, StoreError> {
    fail::fail_point!(
        FAIL_APPLY_SALE,
        sale.external_id.starts_with(FAIL_POINT_SALES),
        |_| Err(StoreError::Unsupported("fail point".to_owned()))
    );
    // A snapshot stamped far ahead of our clock (a POS clock gone wrong, a hostile partner)
    // would outrank every real snapshot after it and freeze the check: not applied.
    if sale.version > crate::domain::time::plus(cx.now, MAX_CLOCK_AHEAD).timestamp_millis() {
        return Ok(verdict(
            cx.event_id,
            Outcome::Failed,
            Some(Reason::InvalidPayload),
            format!(
                "snapshot of sale {} is stamped more than a day ahead of this server's clock",
                sale.external_id
            ),
        ));
    }
    let (stored, has_lineage) =
        stored_sale(conn, cx.partner, cx.venue.id, &sale.external_id).await?;
    if let Some(stored) = &stored {
        let skipped = match sale.supersedes(stored.version, stored.state) {
            Freshness::Newer => None,
            // The very event that wrote the sale, replayed after its handler changed: its
            // mapping now is the truth (a receipt misread as a refund is read again).
            Freshness::Duplicate if stored.last_event_id == cx.event_id => None,
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
        if let Some((reason, mut detail)) = skipped {
            if reason == Reason::StaleUpdate
                && let Some(learned) = learn_from_stale(conn, cx, stored.id, sale).await?
            {
                detail.push_str("; ");
                detail.push_str(&learned);
            }
            let mut result = verdict(cx.event_id, Outcome::Ignored, Some(reason), detail);
            result.sale_id = Some(stored.id);
            return Ok(result);
        }
    }
    let stored_state = stored.as_ref().map(|s| s.state);
    let mut facts = sale.facts();
    facts.tables = cx.venue.diary_tables(&facts.tables);
    facts.placed_at = placed_at(stored.as_ref(), sale, cx.now);
    let link = match &stored {
        Some(stored) if stored.link.is_manual() => Link::manual(
            stored.link.booking_id,
            stored.link.reason.clone().unwrap_or_default(),
        ),
        _ => {
            let current = match &stored {
                Some(stored) => current_match(conn, cx.venue, stored.id, &stored.link).await?,
                None => None,
            };
            let to_match = SaleToMatch {
                facts: &facts,
                id: stored.as_ref().map(|s| s.id),
                current: current.as_ref(),
            };
            let decided = Link::of(decide_match(conn, cx.partner, cx.venue, to_match).await?);
            let walk_in = WalkIn {
                kind: sale.kind,
                state: sale.state,
                at: facts.match_time().0,
                covers: sale.covers,
                tables: &facts.tables,
            };
            or_walk_in(conn, cx.venue, decided, walk_in, cx.now).await?
        }
    };
    let sale = Placed {
        snapshot: sale,
        placed_at: facts.placed_at,
    };
    let sale_id = write_sale(conn, cx, &sale, &link, stored.as_ref()).await?;
    let sale = sale.snapshot;
    let cause = format!("sale {} {}", sale.external_id, sale.state.as_str());
    let mut touched: Vec<i64> = link.booking_id.into_iter().collect();
    if has_lineage {
        touched.extend(
            follow_origin(
                conn,
                cx.partner,
                cx.venue.id,
                &sale.external_id,
                link.booking_id,
            )
            .await?,
        );
    }
    touched.extend(stored.and_then(|s| s.link.booking_id));
    follow_all(conn, touched, &cause, Some(cx.event_id), cx.now).await?;
    // A check that closes says when its party left: a check its booking was given by table
    // and time after that (delivered before this CLOSE) is the next party's.
    let closing = sale.state == SaleState::Closed
        && stored_state.is_none_or(|state| state != SaleState::Closed);
    if let (true, Some(booking_id)) = (closing, link.booking_id) {
        recheck_after_close(conn, cx, booking_id, sale_id, sale.paid_at(), &cause).await?;
    }
    let mut result = verdict(cx.event_id, Outcome::Processed, None, link.describe());
    result.sale_id = Some(sale_id);
    result.match_rule = link.rule;
    Ok(result)
}

/// Matches again booking `booking_id`'s table-and-time checks (but `sale_id`) that were
/// decided at or after `closed_at`, when its party paid and left: only those can be the
/// next party's. Nothing to do, and nothing read but one count, for the usual close.
///
/// # Errors
/// Store failures only.
pub(in crate::store) async fn recheck_after_close(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    booking_id: i64,
    sale_id: i64,
    closed_at: DateTime<Utc>,
    cause: &str,
) -> Result<(), StoreError> {
    let later: i64 = db::query_scalar(
        "SELECT COUNT(*) FROM sales WHERE booking_id = $1 AND id <> $2
             AND match_rule = 'table_time' AND matched_at >= $3",
    )
    .bind(booking_id)
    .bind(sale_id)
    .bind(closed_at.timestamp_millis())
    .fetch_one(conn)
    .await?;
    if later > 0 {
        rematch_around_booking(conn, cx.venue, booking_id, cause, Some(cx.event_id), cx.now)
            .await?;
    }
    Ok(())
}

/// A snapshot with the time it got onto its tables.
pub(in crate::store) struct Placed<'a> {
    pub snapshot: &'a SaleSnapshot,
    pub placed_at: Option<DateTime<Utc>>,
}

pub(in crate::store) async fn write_sale(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    placed: &Placed<'_>,
    link: &Link,
    stored: Option<&StoredSale>,
) -> Result<i64, StoreError> {
    let sale = placed.snapshot;
    let tables = json_list(sale.tables.iter().map(TableKey::as_str));
    let refs = json_list(sale.booking_refs.iter().map(|r| StoredRef {
        value: r.value.clone(),
        source: r.source.clone(),
    }));
    let lines = line_rows(sale);
    let payments = payment_rows(sale);
    let digest = items_digest(&lines, &payments);
    let totals = &sale.totals;
    let sale_id: i64 = db::query_scalar(
        "INSERT INTO sales (venue_id, partner, external_id, number, kind, origin_external_id, state,
             opened_at, closed_at, version, currency, total, paid, tax, net, tip, service_charge,
             discount, deposit, covers, tables, booking_refs, last_event_id, created_at,
             updated_at, items_digest, placed_at, guest_name, first_seen_at, first_closed_at,
             booking_id, match_rule, match_reason, match_candidates, matched_table, matched_at,
             time_basis, match_evidence)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
             $19, $20, $21, $22, $23, $24, $24, $25, $26, $27, $28, $29,
             $30, $31, $32, $33, $34, $35, $36, $37)
         ON CONFLICT (partner, venue_id, external_id) DO UPDATE SET
             number = excluded.number, kind = excluded.kind,
             origin_external_id = excluded.origin_external_id, state = excluded.state,
             opened_at = excluded.opened_at, closed_at = excluded.closed_at,
             version = excluded.version, currency = excluded.currency, total = excluded.total,
             paid = excluded.paid, tax = excluded.tax, net = excluded.net, tip = excluded.tip,
             service_charge = excluded.service_charge, discount = excluded.discount,
             deposit = excluded.deposit, covers = excluded.covers,
             tables = excluded.tables, booking_refs = excluded.booking_refs,
             last_event_id = excluded.last_event_id, updated_at = excluded.updated_at,
             items_digest = excluded.items_digest, placed_at = excluded.placed_at,
             guest_name = excluded.guest_name,
             first_closed_at = COALESCE(sales.first_closed_at, excluded.first_closed_at),
             booking_id = excluded.booking_id, match_rule = excluded.match_rule,
             match_reason = excluded.match_reason, match_candidates = excluded.match_candidates,
             matched_table = excluded.matched_table, matched_at = excluded.matched_at,
             time_basis = excluded.time_basis, match_evidence = excluded.match_evidence
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
    .bind(cx.event_id)
    .bind(cx.now.timestamp_millis())
    .bind(digest.as_str())
    .bind(placed.placed_at.map(|t| t.timestamp_millis()))
    .bind(sale.guest_name.as_ref().map(|n| n.as_str()))
    // When this snapshot was taken: for the first one, when the check was first seen on
    // its tables (a late older snapshot may show it was elsewhere before).
    .bind(sale.updated_at.unwrap_or(sale.opened_at).timestamp_millis())
    // The first close is when the party left; a reopened check keeps it.
    .bind(
        (sale.state == SaleState::Closed)
            .then(|| sale.paid_at())
            .map(|t| t.timestamp_millis()),
    )
    // The match decided before the write, written with the sale in one statement (as
    // `set_link` writes it): an UPDATE of the row just inserted was the costliest
    // statement of an event on PostgreSQL.
    .bind_params(link.params())
    .fetch_one(conn)
    .await?;
    let decided_again = stored.is_none_or(|stored| {
        stored.link.booking_id != link.booking_id
            || (link.booking_id.is_none() && stored.link.reason != link.reason)
    });
    if decided_again {
        link.note(conn, sale_id, Some(cx.event_id), cx.now);
    }
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

pub(in crate::store) const LINE_COLUMNS: &str = "sale_id, position, external_id, description, quantity, unit_amount, \
                            amount, tax_rate, tax_included";

pub(in crate::store) const PAYMENT_COLUMNS: &str =
    "sale_id, position, external_id, method, amount, tip, paid_at";

/// A sale's lines as rows of `sale_lines`, without `sale_id` and `position`.
pub(in crate::store) fn line_rows(sale: &SaleSnapshot) -> Vec<Vec<db::Param<'_>>> {
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
pub(in crate::store) fn payment_rows(sale: &SaleSnapshot) -> Vec<Vec<db::Param<'_>>> {
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
pub(in crate::store) fn items_digest(
    lines: &[Vec<db::Param<'_>>],
    payments: &[Vec<db::Param<'_>>],
) -> String {
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
pub(in crate::store) const ROWS_PER_INSERT: usize = 100;

/// Writes a sale's rows in `table` (each preceded by `sale_id` and its position), a hundred
/// rows per statement, after deleting the old ones when `replacing`.
pub(in crate::store) async fn replace_rows(
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
