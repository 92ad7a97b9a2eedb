//! The diary's changes as messages: rendered from a write's notes before it commits (the
//! transactional outbox), and read back in commit order (the change feed).
//!
//! A message is laid out as the Standard Webhooks specification recommends
//! (`{"type", "timestamp", "data"}`); `data` carries the venue, the booking as the write left it
//! (reference, status, times, tables, spend), the cause and, for a sale's match, the sale. The
//! same text is pushed to subscriptions (`crate::webhooks`) and served by
//! `GET /api/v1/changes`, with the feed position as its id, so a platform reading both can
//! deduplicate them.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::StoreError;
use super::db::{self, Conn};
use super::records::{ChangeRecord, SaleRecord, SpendRecord, money_text};
use super::spend::spend_of;
use super::sql::{SALE_COLUMNS, from_millis, parse_status, sale_record};
use crate::domain::change::{ChangeType, Note, Noted};
use crate::domain::venue::CoversSource;

/// Most changes one page of the feed returns.
pub const MAX_PAGE: i64 = 1_000;

/// A booking as a write leaves it, for its messages.
struct BookingState {
    venue_id: i64,
    data: Value,
    /// `total|paid|currency` now, and as last announced.
    spend_now: String,
    spend_notified: Option<String>,
    /// Its sales, for the messages of their matches.
    sales: Vec<SaleRecord>,
}

/// One message to write.
struct Message {
    kind: ChangeType,
    venue_id: i64,
    booking_id: Option<i64>,
    sale_id: Option<i64>,
    event_id: Option<i64>,
    at: DateTime<Utc>,
    data: Value,
}

impl Message {
    fn ordering_key(&self) -> String {
        match (self.booking_id, self.sale_id) {
            (Some(booking), _) => format!("booking:{booking}"),
            (None, Some(sale)) => format!("sale:{sale}"),
            (None, None) => format!("venue:{}", self.venue_id),
        }
    }

    fn payload(&self) -> String {
        json!({
            "type": self.kind.as_str(),
            "timestamp": self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": self.data,
        })
        .to_string()
    }
}

/// Renders the changes this write noted into messages, in the order they were made, with the
/// state of each booking as the write leaves it; a booking whose spend moved since it was
/// last announced gets `booking.spend_changed`. Runs at the end of every write, inside its
/// transaction (and its savepoint in a batch), so the messages commit or roll back with it.
///
/// # Errors
/// When the database fails.
pub(in crate::store) async fn flush(conn: &mut Conn<'_>) -> Result<(), StoreError> {
    let notes = conn.take_notes();
    if notes.is_empty() {
        return Ok(());
    }
    let mut bookings: HashMap<i64, Option<BookingState>> = HashMap::new();
    let mut order: Vec<i64> = Vec::new();
    for id in notes.iter().filter_map(|n| n.change.booking_id()) {
        if let std::collections::hash_map::Entry::Vacant(slot) = bookings.entry(id) {
            slot.insert(booking_state(conn, id).await?);
            order.push(id);
        }
    }
    let mut messages = Vec::with_capacity(notes.len());
    for note in &notes {
        if let Some(message) = render(conn, note, &bookings).await? {
            messages.push(message);
        }
    }
    // The spend, once per booking, after the changes that moved it.
    let mut spent = Vec::new();
    for id in order {
        let Some(Some(state)) = bookings.get(&id) else {
            continue;
        };
        let unchanged = match state.spend_notified.as_deref() {
            Some(notified) => notified == state.spend_now,
            None => state.spend_now.starts_with("0|0|"),
        };
        if unchanged {
            continue;
        }
        spent.push((id, state.spend_now.as_str()));
        let last = notes
            .iter()
            .rev()
            .find(|n| n.change.booking_id() == Some(id));
        messages.push(Message {
            kind: ChangeType::BookingSpendChanged,
            venue_id: state.venue_id,
            booking_id: Some(id),
            sale_id: None,
            event_id: last.and_then(|n| n.event_id),
            at: last.map_or_else(Utc::now, |n| n.at),
            data: json!({
                "venue_id": state.venue_id,
                "booking": state.data,
                "cause": last.map(|n| n.cause.as_str()),
            }),
        });
    }
    insert(conn, &messages, &spent).await
}

/// The message a note becomes, if any (a move to a status a platform does not act on, or a
/// booking deleted since, sends none).
async fn render(
    conn: &mut Conn<'_>,
    note: &Note,
    bookings: &HashMap<i64, Option<BookingState>>,
) -> Result<Option<Message>, StoreError> {
    let booking = note
        .change
        .booking_id()
        .and_then(|id| bookings.get(&id))
        .and_then(Option::as_ref);
    let mut data = json!({
        "cause": note.cause,
        "event_id": note.event_id,
    });
    let (kind, sale_id) = match &note.change {
        Noted::BookingCreated { .. } => (ChangeType::BookingCreated, None),
        Noted::BookingChanged { .. } => (ChangeType::BookingChanged, None),
        Noted::Status { from, to, .. } => {
            let Some(kind) = ChangeType::of_status(*to) else {
                return Ok(None);
            };
            data["previous_status"] = json!(from.as_str());
            (kind, None)
        }
        Noted::Sales { .. } => return Ok(None),
        Noted::Silence {
            partner,
            venue_id,
            last_event_at,
            resumed,
        } => {
            data["partner"] = json!(partner);
            data["venue_id"] = json!(venue_id);
            data["last_event_at"] = json!(last_event_at.to_rfc3339_opts(SecondsFormat::Secs, true));
            let kind = if *resumed {
                ChangeType::PartnerResumed
            } else {
                ChangeType::PartnerSilent
            };
            return Ok(Some(Message {
                kind,
                venue_id: *venue_id,
                booking_id: None,
                sale_id: None,
                event_id: note.event_id,
                at: note.at,
                data,
            }));
        }
        Noted::SaleLink {
            sale_id,
            booking_id,
            candidates,
        } => {
            let kind = match (booking_id, candidates.len()) {
                (Some(_), _) => ChangeType::SaleMatched,
                (None, 0) => ChangeType::SaleUnmatched,
                (None, _) => ChangeType::SaleNeedsReview,
            };
            let held = booking.and_then(|b| b.sales.iter().find(|s| s.id == *sale_id));
            let found = match held {
                Some(sale) => Some((sale.venue_id, sale_json(sale))),
                None => sale_data(conn, *sale_id).await?,
            };
            let Some((venue_id, sale)) = found else {
                return Ok(None);
            };
            data["sale"] = sale;
            if !candidates.is_empty() {
                data["candidates"] = json!(candidates);
            }
            if booking.is_none() {
                data["venue_id"] = json!(venue_id);
                return Ok(Some(Message {
                    kind,
                    venue_id,
                    booking_id: None,
                    sale_id: Some(*sale_id),
                    event_id: note.event_id,
                    at: note.at,
                    data,
                }));
            }
            (kind, Some(*sale_id))
        }
    };
    let Some(booking) = booking else {
        return Ok(None);
    };
    data["venue_id"] = json!(booking.venue_id);
    data["booking"] = booking.data.clone();
    Ok(Some(Message {
        kind,
        venue_id: booking.venue_id,
        booking_id: note.change.booking_id(),
        sale_id,
        event_id: note.event_id,
        at: note.at,
        data,
    }))
}

/// A booking with its venue's settings and its sales, in one statement: the sale columns
/// qualified, the booking's and venue's aliased apart from the sale's own.
/// A booking with its venue's currency and covers rule, and its sales (a row each, or one
/// row of nulls for them): what its messages show, and what its status follows
/// (`store::rematch::follow_sales`, which keeps the rows for [`flush`]).
pub(in crate::store) static BOOKING_WITH_SALES: LazyLock<String> = LazyLock::new(|| {
    let sale: Vec<String> = SALE_COLUMNS
        .split(',')
        .map(|c| format!("s.{}", c.trim()))
        .collect();
    format!(
        "SELECT b.venue_id AS b_venue_id, b.reference AS b_reference, b.status AS b_status,
             b.start_at AS b_start_at, b.end_at AS b_end_at, b.covers AS b_covers,
             b.tables AS b_tables, b.source AS b_source, b.external_key AS b_external_key,
             b.notified_spend AS b_notified_spend, b.pre_sales_status AS b_pre_sales_status,
             v.currency AS v_currency, v.covers_source AS v_covers_source,
             s.first_closed_at AS first_closed_at, {}
         FROM bookings b JOIN venues v ON v.id = b.venue_id
             LEFT JOIN sales s ON s.booking_id = b.id
         WHERE b.id = $1 ORDER BY s.opened_at, s.id",
        sale.join(", ")
    )
});

/// A booking's state for its messages; `None` if it no longer exists.
async fn booking_state(conn: &mut Conn<'_>, id: i64) -> Result<Option<BookingState>, StoreError> {
    let rows = match conn.take_booking_read_ahead(id) {
        Some(rows) => rows,
        None => {
            db::query(BOOKING_WITH_SALES.as_str())
                .bind(id)
                .fetch_all(conn)
                .await?
        }
    };
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let mut sales = Vec::with_capacity(rows.len());
    for sale in &rows {
        if sale.try_get::<Option<i64>>("id")?.is_some() {
            sales.push(sale_record(sale)?);
        }
    }
    let covers: i64 = row.try_get("b_covers")?;
    let currency: Option<String> = row.try_get("v_currency")?;
    let covers_source =
        CoversSource::parse(&row.try_get::<String>("v_covers_source")?).unwrap_or_default();
    let (spend, _) = spend_of(&sales, covers, currency.as_deref(), covers_source);
    let tables: Vec<String> =
        serde_json::from_str(&row.try_get::<String>("b_tables")?).unwrap_or_default();
    let status = parse_status(&row.try_get::<String>("b_status")?)?;
    let instant = |column: &str| -> Result<String, StoreError> {
        Ok(from_millis(row.try_get(column)?)?.to_rfc3339_opts(SecondsFormat::Secs, true))
    };
    let data = json!({
        "id": id,
        "reference": row.try_get::<Option<String>>("b_reference")?,
        "status": status.as_str(),
        "start": instant("b_start_at")?,
        "end": instant("b_end_at")?,
        "covers": covers,
        "tables": tables,
        "source": row.try_get::<String>("b_source")?,
        "external_key": row.try_get::<Option<String>>("b_external_key")?,
        "spend": spend_summary(&spend),
    });
    Ok(Some(BookingState {
        venue_id: row.try_get("b_venue_id")?,
        data,
        spend_now: spend_fingerprint(&spend),
        spend_notified: row.try_get("b_notified_spend")?,
        sales,
    }))
}

/// The spend a message carries, as the API shows a booking's: decimal strings in the venue's
/// currency.
fn spend_summary(spend: &SpendRecord) -> Value {
    serde_json::to_value(spend).unwrap_or(Value::Null)
}

fn spend_fingerprint(spend: &SpendRecord) -> String {
    format!(
        "{}|{}|{}",
        spend.total.normalize(),
        spend.paid.normalize(),
        spend.currency.as_deref().unwrap_or("")
    )
}

/// A sale as its messages show it, with its venue; `None` if it no longer exists.
async fn sale_data(conn: &mut Conn<'_>, id: i64) -> Result<Option<(i64, Value)>, StoreError> {
    let Some(row) = db::query(format!("SELECT {SALE_COLUMNS} FROM sales WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
    else {
        return Ok(None);
    };
    let sale = sale_record(&row)?;
    Ok(Some((sale.venue_id, sale_json(&sale))))
}

/// A sale as its messages show it.
fn sale_json(sale: &SaleRecord) -> Value {
    json!({
        "id": sale.id,
        "partner": sale.partner,
        "external_id": sale.external_id,
        "number": sale.number,
        "kind": sale.kind,
        "state": sale.state,
        "total": money_text(sale.total),
        "paid": money_text(sale.paid),
        "currency": sale.currency,
        "tables": sale.tables,
        "match": sale.match_,
    })
}

/// Inserts `messages` and records on each booking of `spent` (its id, its spend's
/// fingerprint) the spend its last message announced. On PostgreSQL the spends are written
/// by the first insert itself (data-modifying `WITH`s): one round trip instead of one more
/// per booking.
async fn insert(
    conn: &mut Conn<'_>,
    messages: &[Message],
    spent: &[(i64, &str)],
) -> Result<(), StoreError> {
    const WIDTH: usize = 8;
    let spent_with_insert = conn.is_postgres() && !messages.is_empty();
    if !spent_with_insert {
        for (id, spend) in spent {
            db::query("UPDATE bookings SET notified_spend = $1 WHERE id = $2")
                .bind(*spend)
                .bind(*id)
                .execute(conn)
                .await?;
        }
    }
    for (index, chunk) in messages.chunks(100).enumerate() {
        let values: Vec<String> = (0..chunk.len())
            .map(|row| {
                let cells: Vec<String> = (1..=WIDTH)
                    .map(|column| format!("${}", row * WIDTH + column))
                    .collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        let spends: &[(i64, &str)] = if spent_with_insert && index == 0 {
            spent
        } else {
            &[]
        };
        let after = chunk.len() * WIDTH;
        let updates: Vec<String> = (0..spends.len())
            .map(|n| {
                let (spend, id) = (after + 2 * n + 1, after + 2 * n + 2);
                format!(
                    "spent_{n} AS (UPDATE bookings SET notified_spend = ${spend} WHERE id = ${id})"
                )
            })
            .collect();
        let with = if updates.is_empty() {
            String::new()
        } else {
            format!("WITH {} ", updates.join(", "))
        };
        let mut statement = db::query(format!(
            "{with}INSERT INTO changes (type, venue_id, booking_id, sale_id, ordering_key,
                 event_id, payload, at) VALUES {}",
            values.join(", ")
        ));
        for message in chunk {
            statement = statement
                .bind(message.kind.as_str())
                .bind(message.venue_id)
                .bind(message.booking_id)
                .bind(message.sale_id)
                .bind(message.ordering_key())
                .bind(message.event_id)
                .bind(message.payload())
                .bind(message.at.timestamp_millis());
        }
        for (id, spend) in spends {
            statement = statement.bind(*spend).bind(*id);
        }
        statement.execute(conn).await?;
    }
    Ok(())
}

/// Up to `limit` changes after feed position `after`, in commit order, for `venue` if given.
///
/// # Errors
/// When the database fails.
pub(in crate::store) async fn feed(
    conn: &mut Conn<'_>,
    after: i64,
    limit: i64,
    venue: Option<i64>,
) -> Result<Vec<ChangeRecord>, StoreError> {
    let rows = db::query(
        "SELECT seq, type, venue_id, booking_id, sale_id, payload, at FROM changes
         WHERE seq > $1 AND ($3 IS NULL OR venue_id = $3) ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit.clamp(1, MAX_PAGE))
    .bind(venue)
    .fetch_all(conn)
    .await?;
    rows.iter().map(change_record).collect()
}

pub(in crate::store) fn change_record(row: &db::Row) -> Result<ChangeRecord, StoreError> {
    let seq: i64 = row.try_get("seq")?;
    let payload: String = row.try_get("payload")?;
    Ok(ChangeRecord {
        id: message_id(seq),
        cursor: seq.to_string(),
        r#type: row.try_get("type")?,
        venue_id: row.try_get("venue_id")?,
        booking_id: row.try_get("booking_id")?,
        sale_id: row.try_get("sale_id")?,
        at: from_millis(row.try_get("at")?)?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("change {seq}: {e}")))?,
    })
}

/// The id a change's message carries everywhere (`webhook-id`, the feed's `id`).
pub fn message_id(seq: i64) -> String {
    format!("msg_{seq}")
}
