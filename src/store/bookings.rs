//! Bookings, guests and the diary: operator changes and the views built from them.
//!
//! Every change that can move sales between bookings (a new booking, a booking moved,
//! re-tabled or cancelled, a manual match) runs the re-matching in [`apply`] in the same
//! transaction, so the diary heals itself: a sale that arrived before its booking finds it.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

use super::StoreError;
use super::db::{self, Conn, Row};
use super::matching::{Link, set_link};
use super::records::*;
use super::rematch as apply;
use super::spend::{sales_of, spend_of_row};
use super::sql::{from_millis, parse_status};
use super::venue;
use crate::domain::change::{Note, Noted};
use crate::domain::{BookingStatus, Customer, TableKey, time};

/// Statuses of a booking whose guests came.
const VISITED: [BookingStatus; 3] = [
    BookingStatus::Seated,
    BookingStatus::Paid,
    BookingStatus::Completed,
];

/// The longest e-mail address that can be delivered to (RFC 5321's path limit less its
/// brackets); a longer one is kept on the booking but not indexed to find the guest by.
const MAX_EMAIL: usize = 254;
/// The most digits a phone number has with any prefix and extension (E.164 allows 15).
const MAX_PHONE_DIGITS: usize = 20;

/// What a guest is found by from an e-mail address: lower case, trimmed; none for what is
/// no deliverable address (no `@`, longer than [`MAX_EMAIL`], which PostgreSQL's index
/// could not hold either).
fn email_key(email: Option<&str>) -> Option<String> {
    email
        .map(|e| e.trim().to_lowercase())
        .filter(|e| e.contains('@') && e.len() <= MAX_EMAIL)
}

/// What a guest is found by from a phone number: its digits, if it has 6 to
/// [`MAX_PHONE_DIGITS`].
fn phone_key(phone: Option<&str>) -> Option<String> {
    let digits: String = phone?.chars().filter(char::is_ascii_digit).collect();
    (6..=MAX_PHONE_DIGITS)
        .contains(&digits.len())
        .then_some(digits)
}

/// The guest profile of `customer` at a venue, found by e-mail or phone, else created.
pub(super) async fn link_guest(
    conn: &mut Conn<'_>,
    venue_id: i64,
    customer: &Customer,
    now: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    let email = email_key(customer.email.as_deref());
    let phone = phone_key(customer.phone.as_deref());
    if email.is_none() && phone.is_none() {
        return Ok(None);
    }
    let existing: Option<i64> = db::query_scalar(
        "SELECT id FROM guests WHERE venue_id = $1 AND (email_key = $2 OR phone_key = $3) ORDER BY id LIMIT 1",
    )
    .bind(venue_id)
    .bind(email.as_deref())
    .bind(phone.as_deref())
    .fetch_optional(conn)
    .await?;
    if let Some(id) = existing {
        db::query(
            "UPDATE guests SET name = COALESCE(name, $1), email = COALESCE(email, $2),
                 email_key = COALESCE(email_key, $3), phone = COALESCE(phone, $4),
                 phone_key = COALESCE(phone_key, $5), updated_at = $6
             WHERE id = $7",
        )
        .bind(customer.name.as_deref())
        .bind(customer.email.as_deref())
        .bind(email.as_deref())
        .bind(customer.phone.as_deref())
        .bind(phone.as_deref())
        .bind(now.timestamp_millis())
        .bind(id)
        .execute(conn)
        .await?;
        return Ok(Some(id));
    }
    let id = db::query_scalar(
        "INSERT INTO guests (venue_id, name, email, phone, email_key, phone_key, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
    )
    .bind(venue_id)
    .bind(customer.name.as_deref())
    .bind(customer.email.as_deref())
    .bind(customer.phone.as_deref())
    .bind(email.as_deref())
    .bind(phone.as_deref())
    .bind(now.timestamp_millis())
    .fetch_one(conn)
    .await?;
    Ok(Some(id))
}

async fn reference_taken(
    conn: &mut Conn<'_>,
    venue_id: i64,
    reference: &str,
    except: Option<i64>,
) -> Result<(), StoreError> {
    let taken: Option<i64> =
        db::query_scalar("SELECT id FROM bookings WHERE venue_id = $1 AND reference = $2")
            .bind(venue_id)
            .bind(reference)
            .fetch_optional(conn)
            .await?;
    match taken {
        Some(other) if Some(other) != except => Err(StoreError::Conflict(format!(
            "booking reference {reference} is already booking {other}"
        ))),
        _ => Ok(()),
    }
}

/// The distinct keys of a booking's table names, in the order first given: a table named
/// twice is one table, and stored once.
pub(super) fn table_keys(tables: &[String]) -> Vec<TableKey> {
    let mut keys: Vec<TableKey> = Vec::with_capacity(tables.len());
    for key in tables.iter().filter_map(|t| TableKey::parse(t)) {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

pub(super) async fn create(
    conn: &mut Conn<'_>,
    venue_id: i64,
    booking: NewBooking,
) -> Result<i64, StoreError> {
    conn.lock_venue(venue_id).await?;
    let venue = venue::venue(conn, venue_id).await?;
    if let Some(reference) = &booking.reference {
        reference_taken(conn, venue_id, reference, None).await?;
    }
    let now = Utc::now();
    let guest_id = link_guest(conn, venue_id, &booking.customer, now).await?;
    let end = time::plus(booking.start, time::minutes(booking.duration_minutes));
    let id: i64 = db::query_scalar(
        "INSERT INTO bookings (venue_id, reference, start_at, end_at, covers, status,
             customer_name, customer_email, customer_phone, guest_id, created_at, updated_at,
             source)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12)
         RETURNING id",
    )
    .bind(venue_id)
    .bind(booking.reference.as_deref())
    .bind(booking.start.timestamp_millis())
    .bind(end.timestamp_millis())
    .bind(booking.covers)
    .bind(booking.status.as_str())
    .bind(booking.customer.name.as_deref())
    .bind(booking.customer.email.as_deref())
    .bind(booking.customer.phone.as_deref())
    .bind(guest_id)
    .bind(now.timestamp_millis())
    .bind(booking.source)
    .fetch_one(conn)
    .await?;
    apply::write_booking_tables(conn, id, &table_keys(&booking.tables)).await?;
    venue::note_booking_span(conn, venue_id, booking.start, end).await?;
    conn.note(Note {
        change: Noted::BookingCreated { booking_id: id },
        cause: format!("created by {}", booking.source),
        event_id: None,
        at: now,
    });
    apply::rematch_around_booking(
        conn,
        &venue,
        id,
        &format!("booking {id} created"),
        None,
        now,
    )
    .await?;
    Ok(id)
}

/// Locks the venue of row `id` of `table` (bookings or sales) for the rest of the
/// transaction and returns its id.
pub(super) async fn lock_venue_of(
    conn: &mut Conn<'_>,
    table: &str,
    id: i64,
    what: &'static str,
) -> Result<i64, StoreError> {
    let venue_id: i64 = db::query_scalar(format!("SELECT venue_id FROM {table} WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound(what))?;
    conn.lock_venue(venue_id).await?;
    Ok(venue_id)
}

/// Changes booking `id`; a status move is recorded with `cause` (`manual` for an operator).
pub(super) async fn update(
    conn: &mut Conn<'_>,
    id: i64,
    changes: BookingChanges,
    cause: &str,
) -> Result<(), StoreError> {
    let venue_id = lock_venue_of(conn, "bookings", id, "booking").await?;
    // Read under the venue's lock, so no concurrent change is missed.
    let row = db::query("SELECT start_at, end_at FROM bookings WHERE id = $1")
        .bind(id)
        .fetch_one(conn)
        .await?;
    let venue = venue::venue(conn, venue_id).await?;
    let now = Utc::now();
    let old_start = from_millis(row.try_get("start_at")?)?;
    let old_end = from_millis(row.try_get("end_at")?)?;
    let details_changed = changes.reference.is_some()
        || changes.start.is_some()
        || changes.duration_minutes.is_some()
        || changes.covers.is_some()
        || changes.tables.is_some()
        || changes.customer.is_some();
    if details_changed {
        conn.note(Note {
            change: Noted::BookingChanged { booking_id: id },
            cause: cause.to_owned(),
            event_id: None,
            at: now,
        });
    }
    if let Some(reference) = &changes.reference {
        reference_taken(conn, venue_id, reference, Some(id)).await?;
        db::query("UPDATE bookings SET reference = $1 WHERE id = $2")
            .bind(reference.as_str())
            .bind(id)
            .execute(conn)
            .await?;
    }
    if changes.start.is_some() || changes.duration_minutes.is_some() {
        let start = changes.start.unwrap_or(old_start);
        let minutes = changes
            .duration_minutes
            .unwrap_or((old_end - old_start).num_minutes());
        let end = time::plus(start, time::minutes(minutes));
        db::query("UPDATE bookings SET start_at = $1, end_at = $2 WHERE id = $3")
            .bind(start.timestamp_millis())
            .bind(end.timestamp_millis())
            .bind(id)
            .execute(conn)
            .await?;
        venue::note_booking_span(conn, venue_id, start, end).await?;
    }
    if let Some(covers) = changes.covers {
        db::query("UPDATE bookings SET covers = $1 WHERE id = $2")
            .bind(covers)
            .bind(id)
            .execute(conn)
            .await?;
    }
    if let Some(tables) = &changes.tables {
        apply::write_booking_tables(conn, id, &table_keys(tables)).await?;
    }
    if let Some(customer) = &changes.customer {
        let guest_id = link_guest(conn, venue_id, customer, now).await?;
        db::query("UPDATE bookings SET customer_name = $1, customer_email = $2, customer_phone = $3, guest_id = $4 WHERE id = $5")
            .bind(customer.name.as_deref())
            .bind(customer.email.as_deref())
            .bind(customer.phone.as_deref())
            .bind(guest_id)
            .bind(id)
            .execute(conn)
            .await?;
    }
    if let Some(status) = changes.status {
        let current = apply::booking_status(conn, id).await?;
        if current != status {
            apply::record_transition(conn, id, current, status, cause, None, now).await?;
        }
    }
    db::query("UPDATE bookings SET updated_at = $1 WHERE id = $2")
        .bind(now.timestamp_millis())
        .bind(id)
        .execute(conn)
        .await?;
    apply::rematch_around_booking(
        conn,
        &venue,
        id,
        &format!("booking {id} changed"),
        None,
        now,
    )
    .await
}

/// Sets a sale's link by hand and lets the bookings it left and joined follow their sales.
pub(super) async fn set_manual_link(
    conn: &mut Conn<'_>,
    sale_id: i64,
    booking_id: Option<i64>,
) -> Result<(), StoreError> {
    let venue_id = lock_venue_of(conn, "sales", sale_id, "sale").await?;
    // Read under the venue's lock, so no concurrent change is missed.
    let row = db::query("SELECT booking_id, external_id, partner FROM sales WHERE id = $1")
        .bind(sale_id)
        .fetch_one(conn)
        .await?;
    let previous: Option<i64> = row.try_get("booking_id")?;
    let external_id: String = row.try_get("external_id")?;
    let partner: String = row.try_get("partner")?;
    let reason = match booking_id {
        Some(booking_id) => {
            let booking_venue: Option<i64> =
                db::query_scalar("SELECT venue_id FROM bookings WHERE id = $1")
                    .bind(booking_id)
                    .fetch_optional(conn)
                    .await?;
            match booking_venue {
                None => return Err(StoreError::NotFound("booking")),
                Some(v) if v != venue_id => {
                    return Err(StoreError::Conflict(format!(
                        "booking {booking_id} is at another venue than sale {sale_id}"
                    )));
                }
                Some(_) => format!("matched by an operator to booking {booking_id}"),
            }
        }
        None => "unmatched by an operator".to_owned(),
    };
    set_link(conn, sale_id, &Link::manual(booking_id, reason)).await?;
    let now = Utc::now();
    let cause = match booking_id {
        Some(_) => format!("manual match of sale {external_id}"),
        None => format!("manual unmatch of sale {external_id}"),
    };
    // Its splits and refunds go where it goes.
    let mut touched =
        crate::store::rematch::follow_origin(conn, &partner, venue_id, &external_id, booking_id)
            .await?;
    touched.extend(booking_id);
    touched.extend(previous);
    crate::store::rematch::follow_all(conn, touched, &cause, None, now).await
}

pub(super) async fn update_venue(
    conn: &mut Conn<'_>,
    id: i64,
    changes: VenueChanges,
) -> Result<(), StoreError> {
    conn.lock_venue(id).await?;
    venue::venue(conn, id).await?;
    if let Some(name) = &changes.name {
        db::query("UPDATE venues SET name = $1 WHERE id = $2")
            .bind(name.as_str())
            .bind(id)
            .execute(conn)
            .await?;
    }
    if let Some(timezone) = &changes.timezone {
        db::query("UPDATE venues SET timezone = $1 WHERE id = $2")
            .bind(timezone.as_str())
            .bind(id)
            .execute(conn)
            .await?;
    }
    if let Some(currency) = &changes.currency {
        db::query("UPDATE venues SET currency = $1 WHERE id = $2")
            .bind(currency.as_str())
            .bind(id)
            .execute(conn)
            .await?;
    }
    if let Some(tolerances) = &changes.tolerances {
        db::query(
            "UPDATE venues SET tolerance_before_min = $1, tolerance_after_min = $2 WHERE id = $3",
        )
        .bind(tolerances.before_start_minutes)
        .bind(tolerances.after_end_minutes)
        .bind(id)
        .execute(conn)
        .await?;
    }
    if let Some(aliases) = &changes.table_aliases {
        let normalised: std::collections::BTreeMap<String, String> = aliases
            .iter()
            .filter_map(|(alias, table)| {
                Some((
                    TableKey::parse(alias)?.to_string(),
                    TableKey::parse(table)?.to_string(),
                ))
            })
            .collect();
        let json = serde_json::to_string(&normalised).unwrap_or_else(|_| "{}".to_owned());
        db::query("UPDATE venues SET table_aliases = $1 WHERE id = $2")
            .bind(json)
            .bind(id)
            .execute(conn)
            .await?;
    }
    if let Some(skus) = &changes.sku_tables {
        let normalised: std::collections::BTreeMap<String, String> = skus
            .iter()
            .filter_map(|(sku, table)| Some((sku.clone(), TableKey::parse(table)?.to_string())))
            .collect();
        let json = serde_json::to_string(&normalised).unwrap_or_else(|_| "{}".to_owned());
        db::query("UPDATE venues SET sku_tables = $1 WHERE id = $2")
            .bind(json)
            .bind(id)
            .execute(conn)
            .await?;
    }
    if let Some(source) = changes.covers_source {
        db::query("UPDATE venues SET covers_source = $1 WHERE id = $2")
            .bind(source.as_str())
            .bind(id)
            .execute(conn)
            .await?;
    }
    if let Some(walk_ins) = changes.walk_ins {
        db::query("UPDATE venues SET walk_ins = $1 WHERE id = $2")
            .bind(i64::from(walk_ins))
            .bind(id)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// A booking with its tables, sales, spend and transitions.
pub(super) async fn view(conn: &mut Conn<'_>, id: i64) -> Result<Option<BookingView>, StoreError> {
    let Some(row) = db::query(
        "SELECT b.id, b.venue_id, b.reference, b.start_at, b.end_at, b.covers, b.status, b.partner_status, b.tables,
             b.source, b.customer_name, b.customer_email, b.customer_phone, b.guest_id, v.currency,
             v.covers_source, b.external_key, b.total, b.paid, b.currency AS booked_currency
         FROM bookings b JOIN venues v ON v.id = b.venue_id WHERE b.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let sales = sales_of(conn, id).await?;
    let transitions = db::query(
        "SELECT from_status, to_status, cause, event_id, at FROM booking_transitions WHERE booking_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|t| {
        let from: String = t.try_get("from_status")?;
        let to: String = t.try_get("to_status")?;
        Ok(TransitionRecord {
            from: parse_status(&from)?.as_str(),
            to: parse_status(&to)?.as_str(),
            cause: t.try_get("cause")?,
            event_id: t.try_get("event_id")?,
            at: from_millis(t.try_get("at")?)?,
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    let covers: i64 = row.try_get("covers")?;
    let tables: Vec<String> =
        serde_json::from_str(&row.try_get::<String>("tables")?).unwrap_or_default();
    let (spend, pos_covers) = spend_of_row(&row, &sales)?;
    let start = from_millis(row.try_get("start_at")?)?;
    let end = from_millis(row.try_get("end_at")?)?;
    let status: String = row.try_get("status")?;
    Ok(Some(BookingView {
        id: row.try_get("id")?,
        venue_id: row.try_get("venue_id")?,
        reference: row.try_get("reference")?,
        start,
        end,
        duration_minutes: (end - start).num_minutes(),
        pos_covers,
        covers,
        tables,
        status: parse_status(&status)?.as_str(),
        partner_status: row.try_get("partner_status")?,
        source: row.try_get("source")?,
        customer: CustomerRecord {
            name: row.try_get("customer_name")?,
            email: row.try_get("customer_email")?,
            phone: row.try_get("customer_phone")?,
        },
        guest_id: row.try_get("guest_id")?,
        platform: platform(conn, &row).await?,
        sales,
        spend,
        transitions,
    }))
}

/// A platform-owned booking's money and the payments its platform recorded for it.
async fn platform(conn: &mut Conn<'_>, row: &Row) -> Result<Option<PlatformRecord>, StoreError> {
    let Some(external_key) = row.try_get::<Option<String>>("external_key")? else {
        return Ok(None);
    };
    let partner: String = row.try_get("source")?;
    let venue_id: i64 = row.try_get("venue_id")?;
    let reference: Option<String> = row.try_get("reference")?;
    let mut payments = Vec::new();
    if let Some(reference) = reference {
        let rows = db::query(
            "SELECT transaction_id, amount, refund, at FROM platform_payments
             WHERE venue_id = $1 AND partner = $2 AND booking_reference = $3 ORDER BY id",
        )
        .bind(venue_id)
        .bind(partner.as_str())
        .bind(reference)
        .fetch_all(conn)
        .await?;
        for p in rows {
            payments.push(PlatformPaymentRecord {
                transaction_id: p.try_get("transaction_id")?,
                amount: super::sql::money_column(&p, "amount")?,
                refund: p.try_get::<i64>("refund")? != 0,
                at: p
                    .try_get::<Option<i64>>("at")?
                    .map(from_millis)
                    .transpose()?,
            });
        }
    }
    let payments_net = payments
        .iter()
        .map(|p| if p.refund { -p.amount } else { p.amount })
        .fold(Decimal::ZERO, Decimal::saturating_add);
    let money = |column: &str| -> Result<Option<Decimal>, StoreError> {
        row.try_get::<Option<String>>(column)?
            .as_deref()
            .map(super::sql::decimal)
            .transpose()
    };
    Ok(Some(PlatformRecord {
        partner,
        external_key,
        total: money("total")?,
        paid: money("paid")?,
        currency: row.try_get("booked_currency")?,
        payments_net,
        payments,
    }))
}

/// The UTC span of a local day in `zone`, across daylight-saving changes.
fn local_day(zone: chrono_tz::Tz, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    // A day starts at the first local time of it that exists: where midnight does not (a DST
    // jump at 00:00) it starts later; where the whole day does not (Samoa skipped
    // 2011-12-30), its start is the next day's, and it is empty.
    let start_of = |day: NaiveDate| {
        let midnight = day.and_hms_opt(0, 0, 0)?;
        (0..=48).find_map(|half_hours| {
            let local = midnight.checked_add_signed(Duration::minutes(30 * half_hours))?;
            zone.from_local_datetime(&local)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        })
    };
    Some((start_of(date)?, start_of(date.succ_opt()?)?))
}

pub(super) async fn diary(
    conn: &mut Conn<'_>,
    venue_id: i64,
    date: NaiveDate,
) -> Result<DiaryView, StoreError> {
    let timezone: Option<String> = db::query_scalar("SELECT timezone FROM venues WHERE id = $1")
        .bind(venue_id)
        .fetch_optional(conn)
        .await?;
    let timezone = timezone.ok_or(StoreError::NotFound("venue"))?;
    let zone = chrono_tz::Tz::from_str(&timezone)
        .map_err(|_| StoreError::Corrupt(format!("time zone {timezone:?}")))?;
    let (from, to) =
        local_day(zone, date).ok_or_else(|| StoreError::Corrupt(format!("date {date}")))?;
    let ids: Vec<i64> = db::query_scalar("SELECT id FROM bookings WHERE venue_id = $1 AND start_at >= $2 AND start_at < $3 ORDER BY start_at, id")
        .bind(venue_id)
        .bind(from.timestamp_millis())
        .bind(to.timestamp_millis())
        .fetch_all(conn)
        .await?;
    let mut bookings = Vec::with_capacity(ids.len());
    for id in ids {
        bookings.extend(view(conn, id).await?);
    }
    let unmatched_sales: i64 = db::query_scalar(
        "SELECT COUNT(*) FROM sales WHERE venue_id = $1 AND booking_id IS NULL AND state <> 'voided'
         AND opened_at >= $2 AND opened_at < $3",
    )
    .bind(venue_id)
    .bind(from.timestamp_millis())
    .bind(to.timestamp_millis())
    .fetch_one(conn)
    .await?;
    let live = bookings
        .iter()
        .filter(|b| !matches!(b.status, "cancelled" | "no_show"));
    // Saturating: a day's totals are for display and must never panic on odd figures.
    let covers = live
        .clone()
        .map(|b| b.covers)
        .fold(0i64, i64::saturating_add);
    let spend = bookings
        .iter()
        .map(|b| b.spend.total)
        .fold(Decimal::ZERO, Decimal::saturating_add);
    let paid = bookings
        .iter()
        .map(|b| b.spend.paid)
        .fold(Decimal::ZERO, Decimal::saturating_add);
    Ok(DiaryView {
        venue_id,
        date: date.to_string(),
        timezone,
        from,
        to,
        totals: DiaryTotals {
            bookings: live.count(),
            covers,
            spend,
            paid,
            spend_per_cover: (covers > 0).then(|| (spend / Decimal::from(covers)).round_dp(2)),
            unmatched_sales: usize::try_from(unmatched_sales).unwrap_or_default(),
        },
        bookings,
    })
}

pub(super) async fn guest(conn: &mut Conn<'_>, id: i64) -> Result<Option<GuestView>, StoreError> {
    let Some(row) = db::query("SELECT id, venue_id, name, email, phone FROM guests WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
    else {
        return Ok(None);
    };
    let ids: Vec<i64> =
        db::query_scalar("SELECT id FROM bookings WHERE guest_id = $1 ORDER BY start_at, id")
            .bind(id)
            .fetch_all(conn)
            .await?;
    let mut visits = 0i64;
    let mut lifetime_spend = Decimal::ZERO;
    for booking_id in &ids {
        let Some(booking) = view(conn, *booking_id).await? else {
            continue;
        };
        if VISITED.iter().any(|s| s.as_str() == booking.status) {
            visits += 1;
            lifetime_spend += booking.spend.total;
        }
    }
    Ok(Some(GuestView {
        id: row.try_get("id")?,
        venue_id: row.try_get("venue_id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        phone: row.try_get("phone")?,
        visits,
        lifetime_spend,
        spend_per_visit: (visits > 0).then(|| (lifetime_spend / Decimal::from(visits)).round_dp(2)),
        bookings: ids,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_a_zone_skipped_is_empty_and_its_neighbours_end_and_start_where_time_exists() {
        let apia = chrono_tz::Pacific::Apia;
        let day = |d: u32| NaiveDate::from_ymd_opt(2011, 12, d).expect("date");
        let (from, to) = local_day(apia, day(30)).expect("a span");
        assert_eq!(from, to, "Samoa skipped 2011-12-30: an empty day");
        let (_, end_29) = local_day(apia, day(29)).expect("a span");
        let (start_31, _) = local_day(apia, day(31)).expect("a span");
        assert_eq!(end_29, start_31, "the 29th ends where the 31st starts");
    }

    #[test]
    fn a_local_day_spans_its_own_hours_across_daylight_saving() {
        let sydney = chrono_tz::Australia::Sydney;
        let date = NaiveDate::from_ymd_opt(2026, 3, 14).expect("date");
        let (from, to) = local_day(sydney, date).expect("day");
        assert_eq!(
            from.to_rfc3339(),
            "2026-03-13T13:00:00+00:00",
            "AEDT is UTC+11"
        );
        assert_eq!((to - from).num_hours(), 24);
        let london = chrono_tz::Europe::London;
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).expect("date");
        let (from, to) = local_day(london, spring).expect("day");
        assert_eq!((to - from).num_hours(), 23, "the day the clocks go forward");
    }

    #[test]
    fn guests_are_keyed_by_normalised_email_and_phone() {
        assert_eq!(
            email_key(Some(" John.Purple@Example.com ")).as_deref(),
            Some("john.purple@example.com")
        );
        assert_eq!(email_key(Some("not an email")), None);
        assert_eq!(
            phone_key(Some("+44 (0)20 7946 0018")).as_deref(),
            Some("4402079460018")
        );
        assert_eq!(phone_key(Some("123")), None);
    }
}
