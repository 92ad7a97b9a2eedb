//! Bookings the booking platform owns, addressed by its own reference: created or replaced
//! idempotently, synced a day or a range at a time, and paged.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::StoreError;
use super::bookings::{self, table_keys};
use super::db::{self, Conn};
use super::records::{
    BookingChanges, BookingListRecord, BookingPage, BookingPageFilter, NewBooking, PlatformBooking,
    PutOutcome, PutResult, SyncOutcome,
};
use super::sql::{from_millis, parse_status};
use crate::domain::{BookingStatus, Customer, Mover, TableKey, time};

/// What bookings made by the platform are stored with as their source.
pub const PLATFORM: &str = "platform";

/// Why a platform's status was not applied.
fn not_moved(wanted: BookingStatus, status: BookingStatus) -> String {
    format!(
        "status {}: the booking is {}; a platform moves it only forwards, never to paid (the \
         POS reports payment), never releasing guests who arrived",
        wanted.as_str(),
        status.as_str()
    )
}

/// Most bookings one sync may carry.
pub const MAX_SYNC: usize = 5_000;

/// Creates or replaces the venue's booking with `reference` so it is as `booking` says;
/// the same booking twice changes nothing the second time and says so.
///
/// The platform's status is a partner's statement: it creates a booking in any status, but
/// afterwards only moves it as a partner may (forwards, cancelled, a no-show before seating):
/// a platform re-sending `confirmed` never takes back the `seated` a POS reported.
///
/// # Errors
/// [`StoreError::NotFound`] for an unknown venue; what the database says.
pub(super) async fn put(
    conn: &mut Conn<'_>,
    venue_id: i64,
    reference: &str,
    booking: &PlatformBooking,
) -> Result<PutOutcome, StoreError> {
    conn.lock_venue(venue_id).await?;
    put_locked(conn, venue_id, reference, booking).await
}

/// [`put`] in a transaction that holds the venue already (a sync's chunk: one lock for all).
async fn put_locked(
    conn: &mut Conn<'_>,
    venue_id: i64,
    reference: &str,
    booking: &PlatformBooking,
) -> Result<PutOutcome, StoreError> {
    let existing = db::query(
        "SELECT id, start_at, end_at, covers, status, tables, customer_name, customer_email,
             customer_phone
         FROM bookings WHERE venue_id = $1 AND reference = $2",
    )
    .bind(venue_id)
    .bind(reference)
    .fetch_optional(conn)
    .await?;
    let Some(row) = existing else {
        // A booking stated as cancelled or a no-show is made confirmed first, and released
        // only if no waiting check carrying its reference seated it meanwhile: guests at
        // their table are never created away.
        let wanted = booking.status.unwrap_or(BookingStatus::Confirmed);
        let releases = matches!(wanted, BookingStatus::Cancelled | BookingStatus::NoShow);
        let created = if releases || wanted == BookingStatus::Paid {
            BookingStatus::Confirmed
        } else {
            wanted
        };
        let id = bookings::create(
            conn,
            venue_id,
            NewBooking {
                reference: Some(reference.to_owned()),
                start: booking.start,
                duration_minutes: booking.duration_minutes,
                covers: booking.covers,
                tables: booking.tables.clone(),
                status: created,
                customer: booking.customer.clone(),
                source: PLATFORM,
            },
        )
        .await?;
        let mut not_applied = Vec::new();
        if wanted != created {
            let now = crate::store::rematch::booking_status(conn, id).await?;
            if now.may_move_to(wanted, Mover::Platform) {
                let changes = BookingChanges {
                    status: Some(wanted),
                    ..BookingChanges::default()
                };
                bookings::update(conn, id, changes, PLATFORM).await?;
            } else {
                not_applied.push(not_moved(wanted, now));
            }
        }
        return Ok(PutOutcome {
            id,
            result: PutResult::Created,
            not_applied,
        });
    };
    let id: i64 = row.try_get("id")?;
    let start = from_millis(row.try_get("start_at")?)?;
    let end = from_millis(row.try_get("end_at")?)?;
    let status = parse_status(&row.try_get::<String>("status")?)?;
    let tables: Vec<String> =
        serde_json::from_str(&row.try_get::<String>("tables")?).unwrap_or_default();
    let wanted_tables: Vec<String> = table_keys(&booking.tables)
        .iter()
        .map(|k| TableKey::as_str(k).to_owned())
        .collect();
    let customer = Customer {
        name: row.try_get("customer_name")?,
        email: row.try_get("customer_email")?,
        phone: row.try_get("customer_phone")?,
    };
    let end_wanted = time::plus(booking.start, time::minutes(booking.duration_minutes));
    let mut changes = BookingChanges {
        reference: None,
        start: (start != booking.start).then_some(booking.start),
        duration_minutes: (end != end_wanted || start != booking.start)
            .then_some(booking.duration_minutes),
        covers: (row.try_get::<i64>("covers")? != booking.covers).then_some(booking.covers),
        tables: (tables != wanted_tables).then(|| booking.tables.clone()),
        status: booking
            .status
            .filter(|wanted| status.may_move_to(*wanted, Mover::Platform)),
        customer: (customer != booking.customer).then(|| booking.customer.clone()),
    };
    let mut not_applied = Vec::new();
    if let Some(wanted) = booking.status
        && wanted != status
        && changes.status.is_none()
    {
        not_applied.push(not_moved(wanted, status));
    }
    // Once the guests arrived, where and when they sit is what the POS says: moving the
    // booking would take their checks from it (a paid booking back to confirmed).
    let arrived = matches!(
        status,
        BookingStatus::Arrived
            | BookingStatus::Seated
            | BookingStatus::Paid
            | BookingStatus::Completed
    );
    if arrived && (changes.start.is_some() || changes.duration_minutes.is_some()) {
        changes.start = None;
        changes.duration_minutes = None;
        not_applied.push(format!(
            "start and duration: the guests arrived (the booking is {})",
            status.as_str()
        ));
    }
    if arrived && changes.tables.is_some() {
        changes.tables = None;
        not_applied.push(format!(
            "tables: the guests arrived (the booking is {}); the POS says where they sit",
            status.as_str()
        ));
    }
    if changes == BookingChanges::default() {
        return Ok(PutOutcome {
            id,
            result: PutResult::Unchanged,
            not_applied,
        });
    }
    bookings::update(conn, id, changes, PLATFORM).await?;
    Ok(PutOutcome {
        id,
        result: PutResult::Updated,
        not_applied,
    })
}

/// Bookings one transaction of a sync writes: partners' deliveries to the venue (and, on
/// SQLite, to every venue) wait for at most one of them, not for the whole sync.
pub const SYNC_CHUNK: usize = 100;

/// Puts every booking of `items` (reference, booking), one chunk of a sync, in this
/// transaction; adds what each did to `outcome`.
///
/// # Errors
/// As [`put`].
pub(super) async fn put_all(
    conn: &mut Conn<'_>,
    venue_id: i64,
    items: &[(String, PlatformBooking)],
) -> Result<SyncOutcome, StoreError> {
    conn.lock_venue(venue_id).await?;
    let mut outcome = SyncOutcome::default();
    for (reference, booking) in items {
        match put_locked(conn, venue_id, reference, booking).await?.result {
            PutResult::Created => outcome.created += 1,
            PutResult::Updated => outcome.updated += 1,
            PutResult::Unchanged => outcome.unchanged += 1,
        }
    }
    Ok(outcome)
}

/// Cancels the platform's bookings starting in `from..to` that `listed` does not name, as
/// the platform may (never guests who arrived); returns how many.
///
/// # Errors
/// What the database says.
pub(super) async fn cancel_missing(
    conn: &mut Conn<'_>,
    venue_id: i64,
    listed: &HashSet<String>,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
) -> Result<u64, StoreError> {
    conn.lock_venue(venue_id).await?;
    let rows = db::query(
        "SELECT id, reference, status FROM bookings
         WHERE venue_id = $1 AND source = $2 AND start_at >= $3 AND start_at < $4
           AND reference IS NOT NULL",
    )
    .bind(venue_id)
    .bind(PLATFORM)
    .bind(from.timestamp_millis())
    .bind(to.timestamp_millis())
    .fetch_all(conn)
    .await?;
    let mut cancelled = 0;
    for row in rows {
        let reference: String = row.try_get("reference")?;
        let status = parse_status(&row.try_get::<String>("status")?)?;
        if listed.contains(&reference)
            || !status.may_move_to(BookingStatus::Cancelled, Mover::Platform)
        {
            continue;
        }
        let changes = BookingChanges {
            status: Some(BookingStatus::Cancelled),
            ..BookingChanges::default()
        };
        bookings::update(
            conn,
            row.try_get("id")?,
            changes,
            "platform sync: no longer listed",
        )
        .await?;
        cancelled += 1;
    }
    Ok(cancelled)
}

/// A page of the venue's bookings in id order, as `filter` selects them.
///
/// # Errors
/// When the database fails.
pub(super) async fn page(
    conn: &mut Conn<'_>,
    filter: &BookingPageFilter,
) -> Result<BookingPage, StoreError> {
    let limit = filter.limit.clamp(1, 1_000);
    let rows = db::query(
        "SELECT id, reference, status, start_at, end_at, covers, tables, source, external_key,
             created_at, updated_at
         FROM bookings
         WHERE venue_id = $1 AND id > $2
           AND ($3 IS NULL OR start_at >= $3) AND ($4 IS NULL OR start_at < $4)
           AND ($5 IS NULL OR status = $5) AND ($6 IS NULL OR updated_at >= $6)
         ORDER BY id LIMIT $7",
    )
    .bind(filter.venue_id)
    .bind(filter.after.unwrap_or(0))
    .bind(filter.from.map(|t| t.timestamp_millis()))
    .bind(filter.to.map(|t| t.timestamp_millis()))
    .bind(filter.status.map(BookingStatus::as_str))
    .bind(filter.updated_since.map(|t| t.timestamp_millis()))
    .bind(limit + 1)
    .fetch_all(conn)
    .await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    let mut bookings = Vec::with_capacity(rows.len());
    for row in rows
        .iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
    {
        bookings.push(BookingListRecord {
            id: row.try_get("id")?,
            reference: row.try_get("reference")?,
            status: parse_status(&row.try_get::<String>("status")?)?.as_str(),
            start: from_millis(row.try_get("start_at")?)?,
            end: from_millis(row.try_get("end_at")?)?,
            covers: row.try_get("covers")?,
            tables: serde_json::from_str(&row.try_get::<String>("tables")?).unwrap_or_default(),
            source: row.try_get("source")?,
            external_key: row.try_get("external_key")?,
            created_at: from_millis(row.try_get("created_at")?)?,
            updated_at: from_millis(row.try_get("updated_at")?)?,
        });
    }
    let next = more
        .then(|| bookings.last().map(|b| b.id.to_string()))
        .flatten();
    Ok(BookingPage { bookings, next })
}
