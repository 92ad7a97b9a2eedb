//! Applying a handler's commands inside a write transaction: one module per kind of command
//! (`sales`, `bookings`); the re-matching they trigger is `store::rematch`'s.
//!
//! The decisions are the domain's ([`crate::domain::matching::decide`],
//! [`BookingStatus::after_sales`], [`BookingStatus::may_move_to`],
//! [`SaleSnapshot::supersedes`]); this module gathers their inputs and writes their results.

mod bookings;
mod history;
mod sales;

pub use sales::{FAIL_APPLY_SALE, FAIL_POINT_SALES};

use chrono::{DateTime, Utc};

use crate::domain::{Command, Mapped, Outcome, Reason};

use crate::store::db::{self, Conn};
use crate::store::{Ingested, StoreError};

use crate::store::venue::*;
use bookings::{record_payment, update_booking_from_partner, upsert_booking};
use sales::upsert_sale;

pub(in crate::store) fn verdict(
    event_id: i64,
    outcome: Outcome,
    reason: Option<Reason>,
    detail: impl Into<String>,
) -> Ingested {
    Ingested {
        event_id,
        outcome,
        reason,
        detail: Some(detail.into()),
        venue_id: None,
        sale_id: None,
        match_rule: None,
    }
}

/// Decides and applies what `mapped` asks for. A batch for several locations applies all or
/// nothing.
///
/// # Errors
/// [`StoreError::Processing`] when applying fails: the caller undoes the transaction (or its
/// savepoint) and records the raw event as `failed` on its own, so the event is kept and a
/// failure costs nothing when there is none.
pub(in crate::store) async fn process(
    conn: &mut Conn<'_>,
    event_id: i64,
    partner: &str,
    mapped: Mapped,
    now: DateTime<Utc>,
) -> Result<Ingested, StoreError> {
    let groups = match mapped {
        Mapped::Ignore { reason, detail } => {
            return Ok(verdict(event_id, Outcome::Ignored, Some(reason), detail));
        }
        Mapped::Notice { detail } => {
            return Ok(verdict(event_id, Outcome::Processed, None, detail));
        }
        Mapped::Fail { reason, detail } => {
            return Ok(verdict(event_id, Outcome::Failed, Some(reason), detail));
        }
        Mapped::Reject { reason, detail } => {
            return Ok(verdict(event_id, Outcome::Rejected, Some(reason), detail));
        }
        Mapped::Fetch(request) => {
            let detail = format!(
                "booking {} of {} to fetch ({})",
                request.booking_id, request.location_id, request.event
            );
            return Ok(verdict(
                event_id,
                Outcome::Pending,
                Some(Reason::AwaitingFetch),
                detail,
            ));
        }
        Mapped::Apply {
            location_id,
            commands,
        } => vec![(location_id, commands)],
        Mapped::Batch(groups) => groups,
    };
    let mut results = Vec::with_capacity(groups.len());
    for (location_id, commands) in groups {
        match apply_group(conn, event_id, partner, &location_id, commands, now).await {
            Ok(result) => results.push(result),
            // Not a failure of the event: a lock held elsewhere, waited for on a second run
            // (Contended) or for too long (busy: the partner retries later).
            Err(held @ (StoreError::Contended | StoreError::VenueBusy | StoreError::SaleBusy)) => {
                return Err(held);
            }
            Err(error) => {
                tracing::error!(event_id, error = %error, source = ?std::error::Error::source(&error), "processing failed");
                return Err(StoreError::Processing(Box::new(error)));
            }
        }
    }
    Ok(combine(event_id, results))
}

/// One event's outcome from its groups': processed if any group was, else the first's.
///
/// A batch whose other locations were processed but one of whose locations is mapped to no
/// venue (a shop added at SalesPlay before it is mapped here) is `processed` with reason
/// `unknown_location`, its detail naming those locations: so partner health lists it, and
/// a replay by `reason=unknown_location` after mapping the shop picks it up.
pub(in crate::store) fn combine(event_id: i64, mut results: Vec<Ingested>) -> Ingested {
    if results.len() <= 1 {
        return results
            .pop()
            .unwrap_or_else(|| verdict(event_id, Outcome::Processed, None, "no commands"));
    }
    let Some(first_processed) = results.iter().position(|r| r.outcome == Outcome::Processed) else {
        let detail = joined_details(results.iter());
        let mut result = results.swap_remove(0);
        result.detail = Some(detail);
        return result;
    };
    let unmapped: Vec<&Ingested> = results
        .iter()
        .filter(|r| r.reason == Some(Reason::UnknownLocation))
        .collect();
    let detail = if unmapped.is_empty() {
        joined_details(results.iter())
    } else {
        format!(
            "{}; {} other location(s) processed",
            joined_details(unmapped.iter().copied()),
            results.len() - unmapped.len()
        )
    };
    let partly_unmapped = !unmapped.is_empty();
    let mut result = results.swap_remove(first_processed);
    if partly_unmapped {
        result.reason = Some(Reason::UnknownLocation);
    }
    result.detail = Some(detail);
    result
}

fn joined_details<'r>(results: impl Iterator<Item = &'r Ingested>) -> String {
    results
        .filter_map(|r| r.detail.as_deref())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Applies the commands for one location of the partner.
pub(in crate::store) async fn apply_group(
    conn: &mut Conn<'_>,
    event_id: i64,
    partner: &str,
    location_id: &str,
    commands: Vec<Command>,
    now: DateTime<Utc>,
) -> Result<Ingested, StoreError> {
    let Some(venue) = locked_venue_of_location(conn, partner, location_id).await? else {
        let detail = crate::domain::event::unmapped_location_detail(location_id);
        return Ok(verdict(
            event_id,
            Outcome::Ignored,
            Some(Reason::UnknownLocation),
            detail,
        ));
    };
    // Switching the integration on must work while it is off.
    let switches_only = commands
        .iter()
        .all(|c| matches!(c, Command::SetIntegration { .. }));
    let mut result = if !venue.enabled && !switches_only {
        let detail = format!("{partner} integration is disabled for venue {}", venue.id);
        verdict(
            event_id,
            Outcome::Ignored,
            Some(Reason::IntegrationDisabled),
            detail,
        )
    } else {
        let mut result = verdict(event_id, Outcome::Processed, None, "no commands");
        for command in commands {
            let context = Context {
                event_id,
                partner,
                location_id,
                venue: &venue,
                now,
            };
            result = apply(conn, &context, command).await?;
        }
        result
    };
    result.venue_id = Some(venue.id);
    Ok(result)
}

/// What every command is applied in the light of.
pub(in crate::store) struct Context<'a> {
    event_id: i64,
    partner: &'a str,
    location_id: &'a str,
    venue: &'a Venue,
    now: DateTime<Utc>,
}

pub(in crate::store) async fn apply(
    conn: &mut Conn<'_>,
    cx: &Context<'_>,
    command: Command,
) -> Result<Ingested, StoreError> {
    match command {
        Command::UpsertSale(mut sale) => {
            sale.localise(cx.venue.zone);
            upsert_sale(conn, cx, &sale).await
        }
        Command::UpsertBooking(mut booking) => {
            booking.localise(cx.venue.zone);
            upsert_booking(conn, cx, &booking).await
        }
        Command::RecordPayment(payment) => record_payment(conn, cx, &payment).await,
        Command::UpsertGuest(customer) => {
            let guest =
                crate::store::bookings::link_guest(conn, cx.venue.id, &customer, cx.now).await?;
            let detail = match guest {
                Some(id) => format!("guest profile {id} at venue {}", cx.venue.id),
                None => "guest without e-mail or phone: not profiled".to_owned(),
            };
            Ok(verdict(cx.event_id, Outcome::Processed, None, detail))
        }
        Command::UpdateBooking(update) => update_booking_from_partner(conn, cx, update).await,
        Command::SetIntegration { enabled } => {
            db::query(
                "UPDATE partner_locations SET enabled = $1 WHERE partner = $2 AND location_id = $3",
            )
            .bind(i64::from(enabled))
            .bind(cx.partner)
            .bind(cx.location_id)
            .execute(conn)
            .await?;
            let state = if enabled { "enabled" } else { "disabled" };
            Ok(verdict(
                cx.event_id,
                Outcome::Processed,
                None,
                format!(
                    "{} integration {state} for venue {}",
                    cx.partner, cx.venue.id
                ),
            ))
        }
    }
}
