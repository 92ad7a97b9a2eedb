//! A venue as writes see it: its matching settings, found by a partner's location or by id.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::domain::{TableKey, Tolerances, time};

use crate::store::StoreError;
use crate::store::db::{self, Conn, Row};

/// A venue as processing needs it.
pub(in crate::store) struct Venue {
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
    pub(in crate::store) fn diary_tables(&self, tables: &[TableKey]) -> Vec<TableKey> {
        let mut diary: Vec<TableKey> = Vec::with_capacity(tables.len());
        for table in tables {
            let table = match self.aliases.get(table.as_str()) {
                Some(alias) => TableKey::from_normalised(alias.clone()),
                None => table.clone(),
            };
            // A table named twice (or two names aliased to one) is one table.
            if !diary.contains(&table) {
                diary.push(table);
            }
        }
        diary
    }
}

/// The venue columns processing reads, as a literal so whole statements stay constants.
macro_rules! venue_columns {
    () => {
        "v.id, v.tolerance_before_min, v.tolerance_after_min, v.table_aliases, v.walk_ins,
         v.timezone, v.sku_tables, v.longest_booking_ms"
    };
}

pub(in crate::store) const VENUE_OF_LOCATION: &str = concat!(
    "SELECT ",
    venue_columns!(),
    ", l.enabled FROM partner_locations l JOIN venues v ON v.id = l.venue_id
     WHERE l.partner = $1 AND l.location_id = $2"
);

/// [`VENUE_OF_LOCATION`] taking the venue's diary lock in the same statement, if free
/// (PostgreSQL; the key is [`crate::store::postgres::venue_key`]'s, computed by the server).
static VENUE_OF_LOCATION_TRY_LOCK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {}, l.enabled, pg_try_advisory_xact_lock({}) AS locked
         FROM partner_locations l JOIN venues v ON v.id = l.venue_id
         WHERE l.partner = $1 AND l.location_id = $2",
        venue_columns!(),
        crate::store::postgres::VENUE_KEY_OF_V_ID
    )
});

pub(in crate::store) const VENUE_BY_ID: &str = concat!(
    "SELECT ",
    venue_columns!(),
    " FROM venues v WHERE v.id = $1"
);

pub(in crate::store) fn venue_from_row(row: &Row, enabled: bool) -> Result<Venue, StoreError> {
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

pub(in crate::store) async fn venue_of_location(
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

/// A `fail` point in a PostgreSQL batch right after a venue's lock was taken, for the test
/// that proves a stopped node does not hold other nodes' deliveries for long.
pub const FAIL_HOLDING_VENUE: &str = "postgres-batch-holding-venue";

/// The venue a partner's location is mapped to, its diary held for the rest of the
/// transaction ([`Conn::lock_venue`]). In a PostgreSQL batch, read and locked in one round
/// trip.
///
/// # Errors
/// [`StoreError::Contended`] in a batch when another transaction holds the venue.
pub(in crate::store) async fn locked_venue_of_location(
    conn: &mut Conn<'_>,
    partner: &str,
    location_id: &str,
) -> Result<Option<Venue>, StoreError> {
    if conn.waits_for_locks() || conn.as_postgres().is_none() {
        let venue = venue_of_location(conn, partner, location_id).await?;
        if let Some(venue) = &venue {
            conn.lock_venue(venue.id).await?;
        }
        return Ok(venue);
    }
    let row = match conn.take_venue_read_ahead(partner, location_id) {
        Some(row) => row,
        None => {
            db::query(VENUE_OF_LOCATION_TRY_LOCK.as_str())
                .bind(partner)
                .bind(location_id)
                .fetch_optional(conn)
                .await?
        }
    };
    let Some(row) = row else {
        return Ok(None);
    };
    if !row.try_get::<bool>("locked")? {
        return Err(StoreError::Contended);
    }
    // A node that stops here (SIGSTOP, a stalled VM) holds the venue until PostgreSQL ends
    // its idle session; the test of that blocks the writer's thread at this point.
    fail::fail_point!(FAIL_HOLDING_VENUE);
    let enabled = row.try_get::<i64>("enabled")? != 0;
    venue_from_row(&row, enabled).map(Some)
}

/// [`VENUE_OF_LOCATION_TRY_LOCK`] with the next event id and the sale's lock: one row
/// whether the location is mapped or not (`id` null when not). `$3` is the sale's lock id,
/// null when the event locks no sale.
static EVENT_ID_AND_VENUE_TRY_LOCK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT nextval(pg_get_serial_sequence('events', 'id')) AS event_id,
                 COALESCE(pg_try_advisory_xact_lock($3), true) AS sale_locked,
                 {}, l.enabled, pg_try_advisory_xact_lock({}) AS locked
             FROM (SELECT 1 AS one) AS one
                 LEFT JOIN (partner_locations l JOIN venues v ON v.id = l.venue_id)
                     ON l.partner = $1 AND l.location_id = $2",
        venue_columns!(),
        crate::store::postgres::VENUE_KEY_OF_V_ID
    )
});

/// In a PostgreSQL batch, reserves the next event's id, takes its sale's lock (`sale`, an
/// advisory lock id, if it has one) and reads and locks the venue `(partner, location_id)` is
/// mapped to, in one round trip instead of two: the venue is kept for
/// [`locked_venue_of_location`]. Each statement of an event is a round trip and PostgreSQL's
/// per-statement work, what bounds PostgreSQL's rate (`docs/PERFORMANCE.md`).
///
/// # Errors
/// [`StoreError::Contended`] when another transaction holds the sale.
pub(in crate::store) async fn reserve_event_id_reading_venue(
    conn: &mut Conn<'_>,
    partner: &str,
    location_id: &str,
    sale: Option<i64>,
) -> Result<i64, StoreError> {
    let row = db::query(EVENT_ID_AND_VENUE_TRY_LOCK.as_str())
        .bind(partner)
        .bind(location_id)
        .bind(sale)
        .fetch_one(conn)
        .await?;
    if !row.try_get::<bool>("sale_locked")? {
        return Err(StoreError::Contended);
    }
    let event_id = row.try_get("event_id")?;
    let mapped = row.try_get::<Option<i64>>("id")?.is_some();
    conn.read_venue_ahead(partner, location_id, mapped.then_some(row));
    Ok(event_id)
}

/// A venue by id, for the re-matching that admin changes trigger.
pub(in crate::store) async fn venue(
    conn: &mut Conn<'_>,
    venue_id: i64,
) -> Result<Venue, StoreError> {
    let row = db::query(VENUE_BY_ID)
        .bind(venue_id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound("venue"))?;
    venue_from_row(&row, true)
}

/// Records a booking's length on its venue when it is the longest so far (see
/// [`Venue::longest_booking`]). Every write of a booking's times calls this.
pub(in crate::store) async fn note_booking_span(
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
