//! Operators' manual actions on the diary and venues, each audited in its own transaction:
//! the venue's lock is taken before the before-state is read, so the trail's entries form a
//! true chain however many nodes change the same booking at once.

use super::{bookings, insert_location, insert_venue};
use crate::domain::access::Actor;
use crate::store::StoreError;
use crate::store::audit::{self, Subject};
use crate::store::db::Conn;
use crate::store::records::{BookingChanges, NewBooking, NewLocation, NewVenue, VenueChanges};

/// Links (or with `None` unlinks) a sale by hand, recorded in the audit trail as `action`.
///
/// # Errors
/// The store's, and `NotFound` for an unknown sale.
pub(super) async fn link(
    conn: &mut Conn<'_>,
    sale_id: i64,
    booking_id: Option<i64>,
    by: Actor,
    action: &'static str,
) -> Result<(), StoreError> {
    bookings::lock_venue_of(conn, "sales", sale_id, "sale").await?;
    let before = audit::sale(conn, sale_id).await?;
    bookings::set_manual_link(conn, sale_id, booking_id).await?;
    let after = audit::sale(conn, sale_id).await?;
    audit::record_snapshots(conn, &by, action, Subject::Sale(sale_id), before, after).await
}

/// # Errors
/// The store's; `Conflict` for a location that belongs to a venue already.
pub(super) async fn create_venue(
    conn: &mut Conn<'_>,
    venue: &NewVenue,
    by: &Actor,
) -> Result<i64, StoreError> {
    let id = insert_venue(conn, venue).await?;
    let after = audit::venue(conn, id).await?;
    let subject = Subject::Venue(id);
    audit::record(conn, by, "venue.create", Some(id), subject, None, after).await?;
    Ok(id)
}

/// # Errors
/// `NotFound` for an unknown venue; `Conflict` for a location mapped already.
pub(super) async fn add_location(
    conn: &mut Conn<'_>,
    venue_id: i64,
    location: &NewLocation,
    by: &Actor,
) -> Result<(), StoreError> {
    conn.lock_venue(venue_id).await?;
    let before = audit::venue(conn, venue_id)
        .await?
        .ok_or(StoreError::NotFound("venue"))?;
    insert_location(conn, venue_id, location).await?;
    let after = audit::venue(conn, venue_id).await?;
    let subject = Subject::Venue(venue_id);
    let action = "venue.location_add";
    audit::record(
        conn,
        by,
        action,
        Some(venue_id),
        subject,
        Some(before),
        after,
    )
    .await
}

/// # Errors
/// The store's.
pub(super) async fn update_venue(
    conn: &mut Conn<'_>,
    id: i64,
    changes: VenueChanges,
    by: Actor,
) -> Result<(), StoreError> {
    conn.lock_venue(id).await?;
    let before = audit::venue(conn, id).await?;
    bookings::update_venue(conn, id, changes).await?;
    let after = audit::venue(conn, id).await?;
    let subject = Subject::Venue(id);
    audit::record(conn, &by, "venue.change", Some(id), subject, before, after).await
}

/// # Errors
/// The store's.
pub(super) async fn create_booking(
    conn: &mut Conn<'_>,
    venue_id: i64,
    booking: NewBooking,
    by: Actor,
) -> Result<i64, StoreError> {
    let id = bookings::create(conn, venue_id, booking).await?;
    let after = audit::booking(conn, id).await?;
    let subject = Subject::Booking(id);
    audit::record_snapshots(conn, &by, "booking.create", subject, None, after).await?;
    Ok(id)
}

/// Recorded as `booking.cancel` when it cancels, else `booking.change`; a change to the
/// guest's details shows as `customer_changed`, never the details.
///
/// # Errors
/// The store's; `NotFound` for an unknown booking.
pub(super) async fn update_booking(
    conn: &mut Conn<'_>,
    id: i64,
    changes: BookingChanges,
    by: Actor,
) -> Result<(), StoreError> {
    let action = if changes.status == Some(crate::domain::BookingStatus::Cancelled) {
        "booking.cancel"
    } else {
        "booking.change"
    };
    bookings::lock_venue_of(conn, "bookings", id, "booking").await?;
    let customer_changed = changes.customer.is_some();
    let before = audit::booking(conn, id).await?;
    bookings::update(conn, id, changes, "manual").await?;
    let mut after = audit::booking(conn, id).await?;
    if customer_changed && let Some((_, after)) = after.as_mut() {
        after["customer_changed"] = true.into();
    }
    audit::record_snapshots(conn, &by, action, Subject::Booking(id), before, after).await
}
