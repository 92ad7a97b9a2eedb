//! A partner's statements about bookings: a POS's reservation status, a booking platform's
//! whole snapshot (stale ones change nothing), its payments.

use crate::domain::{
    BookingSnapshot, BookingStatus, BookingUpdate, Mover, Outcome, PlatformPayment, Reason,
    TableKey,
};

use crate::store::db::{self, Conn};
use crate::store::sql::decimal_text;
use crate::store::{Ingested, StoreError};

use super::{Context, verdict};
use crate::store::rematch::{
    booking_status, held_firmly, record_transition, rematch_around_booking, write_booking_tables,
};
use crate::store::venue::note_booking_span;

/// A partner's statement about a booking (e.g. Lightspeed's POS reservation status).
pub(in crate::store) async fn update_booking_from_partner(
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
            let named = cx.venue.diary_tables(tables);
            let tables = tables_after_partner(conn, booking_id, named).await?;
            write_booking_tables(conn, booking_id, &tables).await?;
            true
        }
        _ => false,
    };
    let current = booking_status(conn, booking_id).await?;
    let mut detail = format!(
        "booking {booking_id}: {} reported {}",
        cx.partner, update.partner_status
    );
    let cause = format!("{} reported {}", cx.partner, update.partner_status);
    let moved = match update.status {
        Some(next) if partner_may_move(conn, booking_id, current, next).await? => {
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
            Some(next)
        }
        Some(next) if next != current => {
            detail.push_str(&format!(
                ", stays {current} (no move from {current} to {next})"
            ));
            None
        }
        _ => None,
    };
    let released = moved.is_some_and(BookingStatus::excluded_from_table_matching);
    if tables_changed || released {
        let cause = if released {
            cause
        } else {
            format!("tables of booking {booking_id} changed")
        };
        rematch_around_booking(
            conn,
            cx.venue,
            booking_id,
            &cause,
            Some(cx.event_id),
            cx.now,
        )
        .await?;
    }
    // Its sales have the last word (a POS `PAID` while a check is still open leaves the
    // party seated): the answer says where the booking ended up.
    if let Some(next) = moved {
        let after = booking_status(conn, booking_id).await?;
        if after != next {
            detail.push_str(&format!(", then {after} by its sales"));
        }
    }
    Ok(verdict(cx.event_id, Outcome::Processed, None, detail))
}

/// A booking platform's snapshot of one of its bookings: create or update it (found by the
/// partner's key, or adopting a booking made with the same reference by hand), move its
/// status as a partner may, and let the venue's waiting sales find it.
pub(in crate::store) async fn upsert_booking(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    booking: &BookingSnapshot,
) -> Result<Ingested, StoreError> {
    // The tables its items' SKUs put it on (the venue's `sku_tables`), each once. Checked
    // before anything is written: many SKUs on many tables could pass what the diary's index
    // holds, a write PostgreSQL would refuse on every retry.
    let mut tables: Vec<TableKey> = Vec::new();
    for table in booking
        .skus
        .iter()
        .filter_map(|sku| cx.venue.sku_tables.get(sku))
        .map(|table| TableKey::from_normalised(table.clone()))
    {
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    let what = format!("booking {}", booking.external_key);
    if let Err(invalid) = crate::domain::command::check_tables(&tables, &what) {
        return Ok(verdict(
            cx.event_id,
            Outcome::Failed,
            Some(Reason::InvalidPayload),
            format!("{invalid} (through the venue's sku_tables)"),
        ));
    }
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
        crate::store::bookings::link_guest(conn, cx.venue.id, &booking.customer, cx.now).await?;
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
    let may_move = match booking.status {
        Some(next) if existing_id.is_some() => partner_may_move(conn, id, current, next).await?,
        _ => false,
    };
    match booking.status {
        Some(next) if may_move => {
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

/// Whether a partner may move booking `booking_id` from `current` to `next`: as the state
/// machine allows partners, or a no-show or cancellation of a booking its sales seated
/// only by table and time (a walk-in's check taken for the absent party's), whose sales are
/// then matched again.
async fn partner_may_move(
    conn: &mut Conn<'_>,
    booking_id: i64,
    current: BookingStatus,
    next: BookingStatus,
) -> Result<bool, StoreError> {
    // Taking a seated or paid booking away (no-show, cancellation) is only for one its
    // sales hold by table and time alone: never while a sale carries its reference.
    if current.may_release_to(next, false) {
        return Ok(!held_firmly(conn, booking_id).await?);
    }
    Ok(current.may_move_to(next, Mover::Partner))
}

/// The tables a booking has after a partner names `named` for it: those, and while the
/// booking holds live sales, also the tables it had. A reservation's POS table and the
/// table its party's checks are on can differ (seated elsewhere, a late status from before
/// a transfer); the checks say where the party sat, so a status never takes that away.
async fn tables_after_partner(
    conn: &mut Conn<'_>,
    booking_id: i64,
    named: Vec<TableKey>,
) -> Result<Vec<TableKey>, StoreError> {
    let row = db::query(
        "SELECT b.tables, (SELECT COUNT(*) FROM sales s WHERE s.booking_id = b.id
             AND s.state <> 'voided') AS live
         FROM bookings b WHERE b.id = $1",
    )
    .bind(booking_id)
    .fetch_one(conn)
    .await?;
    if row.try_get::<i64>("live")? == 0 {
        return Ok(named);
    }
    let had: String = row.try_get("tables")?;
    let had: Vec<String> = serde_json::from_str(&had).unwrap_or_default();
    let mut tables = named;
    for table in had.into_iter().map(TableKey::from_normalised) {
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    Ok(tables)
}

/// Whether a partner's statement ranked `new` comes from before the one already applied,
/// ranked `stored`: only when both are known.
pub(in crate::store) fn behind(new: Option<i64>, stored: Option<i64>) -> bool {
    matches!((new, stored), (Some(new), Some(stored)) if new < stored)
}

/// Records a platform's payment or refund once per transaction id.
pub(in crate::store) async fn record_payment(
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
