//! Retention: raw payloads and guests' personal data are kept for a while, not forever.
//!
//! Past the cutoff an event keeps its outcome, reason, detail and what it touched, but its
//! raw body, headers and query (which carry guests' names, e-mails and phones) are erased;
//! bookings that ended before it lose their customer's name, e-mail and phone, checks the
//! guest's name they carried for matching, and guest
//! profiles nobody booked with since are anonymised. Sales, their lines, payments and every
//! figure stay, so spend, diaries and reports do not change. Events go in batches, one
//! transaction each, so a large purge never holds the writer for long.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::db::{self, Conn};

/// Events erased per transaction.
pub(super) const BATCH: i64 = 1_000;

/// Erases the raw payload of up to [`BATCH`] events received before `before`; returns how
/// many.
pub(super) async fn purge_events(
    conn: &mut Conn<'_>,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    db::query(
        "UPDATE events SET body = $1, body_encoding = NULL, headers = '{}', query = NULL,
             purged_at = $2
         WHERE id IN (SELECT id FROM events WHERE purged_at IS NULL AND received_at < $3
                      ORDER BY id LIMIT $4)",
    )
    .bind(&[][..])
    .bind(now.timestamp_millis())
    .bind(before.timestamp_millis())
    .bind(BATCH)
    .execute(conn)
    .await
}

/// Erases the personal data of bookings that ended before `before` and of guests nobody
/// booked with since; returns how many bookings and guests.
pub(super) async fn purge_people(
    conn: &mut Conn<'_>,
    before: DateTime<Utc>,
) -> Result<(u64, u64), StoreError> {
    let cutoff = before.timestamp_millis();
    // The diary's messages go with the events that caused them; those still waiting for a
    // receiver stay until they are sent or given up.
    db::query("DELETE FROM webhook_messages WHERE state <> 'pending' AND created_at < $1")
        .bind(cutoff)
        .execute(conn)
        .await?;
    db::query(
        "DELETE FROM changes WHERE at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_messages m
             WHERE m.change_seq = changes.seq AND m.state = 'pending')",
    )
    .bind(cutoff)
    .execute(conn)
    .await?;
    let bookings = db::query(
        "UPDATE bookings SET customer_name = NULL, customer_email = NULL, customer_phone = NULL
         WHERE end_at < $1 AND (customer_name IS NOT NULL OR customer_email IS NOT NULL
             OR customer_phone IS NOT NULL)",
    )
    .bind(cutoff)
    .execute(conn)
    .await?;
    let guests = db::query(
        "UPDATE guests SET name = NULL, email = NULL, phone = NULL, email_key = NULL,
             phone_key = NULL
         WHERE updated_at < $1
           AND (name IS NOT NULL OR email IS NOT NULL OR phone IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.guest_id = guests.id
                           AND b.end_at >= $1)",
    )
    .bind(cutoff)
    .execute(conn)
    .await?;
    // The guest named on a check is kept for matching only: gone with the rest.
    db::query("UPDATE sales SET guest_name = NULL WHERE guest_name IS NOT NULL AND opened_at < $1")
        .bind(cutoff)
        .execute(conn)
        .await?;
    Ok((bookings, guests))
}
