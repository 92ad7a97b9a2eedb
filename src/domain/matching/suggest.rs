//! Bookings an operator might match an unmatched or ambiguous sale to, best first, each with
//! the evidence a host would weigh.

use chrono::Duration;

use super::CandidateBooking;
use super::table_time::evidence;
use crate::domain::sale::SaleFacts;

/// A booking an operator might match an unmatched sale to, and why it is offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub booking_id: i64,
    pub reason: String,
}

/// How far before a sale's time suggestions look for bookings, and how far after.
pub const SUGGEST_BEFORE: Duration = Duration::hours(4);
pub const SUGGEST_AFTER: Duration = Duration::hours(2);

/// Ranks the bookings near an unmatched or ambiguous sale for an operator: those the rules
/// found equally good first (`tied`), then bookings on one of the sale's tables, then the
/// rest; within each, the nearest start to the sale's time first. Cancelled and no-show
/// bookings are never offered. At most `limit`; each reason is the candidate's evidence.
pub fn suggest(
    sale: &SaleFacts,
    nearby: &[CandidateBooking],
    tied: &[i64],
    limit: usize,
) -> Vec<Suggestion> {
    let (at, basis) = sale.match_time();
    let mut ranked: Vec<(u8, Duration, &CandidateBooking, bool)> = nearby
        .iter()
        .filter(|booking| !booking.status.excluded_from_table_matching())
        .map(|booking| {
            let shared = sale.tables.iter().any(|t| booking.tables.contains(t));
            let rank = if tied.contains(&booking.id) {
                0
            } else if shared {
                1
            } else {
                2
            };
            (
                rank,
                at.signed_duration_since(booking.start).abs(),
                booking,
                shared,
            )
        })
        .collect();
    ranked.sort_by_key(|(rank, distance, booking, _)| (*rank, *distance, booking.id));
    ranked
        .into_iter()
        .take(limit)
        .map(|(rank, _, booking, shared)| {
            let words = evidence(sale, booking, at, basis);
            let reason = match (rank, shared) {
                (0, _) => format!("fits as well as another: {words}"),
                (_, true) => words,
                (_, false) => format!("not the sale's table: {words}"),
            };
            Suggestion {
                booking_id: booking.id,
                reason,
            }
        })
        .collect()
}
