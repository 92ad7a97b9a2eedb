//! Which booking a sale belongs to, decided by ranked rules and explained in words.
//!
//! The store gathers the evidence (bookings named by the sale's references, the booking of
//! the sale it was split from, the sale's current match, bookings near its table and time
//! with their checks, covers and guest names); [`decide`] picks one or none. Rules are
//! tried in order and the first that decides wins:
//!
//! 1. a booking reference the sale carries (`booking_reference`);
//! 2. lineage: the booking of the sale it was split, transferred or refunded from
//!    (`lineage`);
//! 3. the sale's own decided match, while its booking still holds it (`table_time`, kept):
//!    a later snapshot, a party moved to another table, never re-decides it;
//! 4. table and time (`table_time`, [`table_time`]), ranked as a host would.
//!
//! Operators' decisions (`manual`) are the store's: no rule ever overrides them. Nothing weak
//! (a name, covers, occupancy) ever overrides a reference or lineage. Equally good
//! candidates are ambiguous: the sale stays unmatched, with every candidate and the
//! evidence for each kept for the operator, never guessed between.

mod names;
mod suggest;
pub mod table_time;

use chrono::{DateTime, Utc};

pub use names::{NameEvidence, compare as compare_names};
pub use suggest::{SUGGEST_AFTER, SUGGEST_BEFORE, Suggestion, suggest};

use super::booking::BookingStatus;
use super::sale::{SaleFacts, SaleKind};
use super::table::TableKey;
use super::venue::Tolerances;

/// The rule that linked a sale to its booking. Names are the public API's (`match.rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchRule {
    BookingReference,
    Lineage,
    TableTime,
    Manual,
}

impl MatchRule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BookingReference => "booking_reference",
            Self::Lineage => "lineage",
            Self::TableTime => "table_time",
            Self::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::BookingReference,
            Self::Lineage,
            Self::TableTime,
            Self::Manual,
        ]
        .into_iter()
        .find(|rule| rule.as_str() == s)
    }
}

/// A booking as matching sees it, with what a host would look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateBooking {
    pub id: i64,
    pub reference: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub tables: Vec<TableKey>,
    pub status: BookingStatus,
    /// Booked covers (0: not known).
    pub covers: i64,
    /// The name the booking is under.
    pub guest_name: Option<super::booking::GuestName>,
    /// A walk-in booking made for a check, not a reservation.
    pub walk_in: bool,
    /// Its other live checks on its own tables that are still open, and that are closed
    /// (a tab at the bar or a check on another table does not hold this table).
    pub open_checks: usize,
    pub closed_checks: usize,
    /// All its other live checks, wherever they are (0: its party has no check at all).
    pub checks_anywhere: usize,
    /// When the last of those closed checks was first closed: when a party that has paid
    /// left (a check reopened for a tip afterwards does not bring it back).
    pub last_closed_at: Option<DateTime<Utc>>,
    /// When its party's checks had all left its tables (moved to other tables, or opened
    /// on another table than booked): from then on, its tables are free for another party.
    pub moved_away_at: Option<DateTime<Utc>>,
}

/// Which time of a sale decided its table-and-time match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBasis {
    /// When the check was opened, on the table it is on.
    Opened,
    /// When a later snapshot first put the check on its table (a bar tab moved to a
    /// table, a party moved): the time it got there.
    Placed,
}

impl TimeBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Placed => "placed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Opened, Self::Placed]
            .into_iter()
            .find(|basis| basis.as_str() == s)
    }
}

/// A decided match with its human-readable reason, and for table and time the table and
/// time that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedBooking {
    pub booking_id: i64,
    pub rule: MatchRule,
    pub reason: String,
    /// For `table_time`: the table, the time and which time it was.
    pub decided_by: Option<Decisive>,
}

/// The table and time a table-and-time match was decided on: what keeps it (see
/// [`holds`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decisive {
    pub table: TableKey,
    pub at: DateTime<Utc>,
    pub basis: TimeBasis,
}

/// What one candidate of an ambiguous sale had for and against it, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateEvidence {
    pub booking_id: i64,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchDecision {
    Matched(MatchedBooking),
    /// Several bookings fit equally well; the sale stays unmatched.
    Ambiguous {
        candidates: Vec<i64>,
        reason: String,
        evidence: Vec<CandidateEvidence>,
    },
    Unmatched,
}

/// A sale's match as it stands, for a later snapshot to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentMatch {
    /// Its booking as it is now.
    pub booking: CandidateBooking,
    pub reason: String,
    pub decided_by: Decisive,
}

/// Everything [`decide`] needs, gathered by the caller.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    pub sale: &'a SaleFacts,
    /// Bookings of the venue whose reference equals one of the sale's booking references.
    pub by_reference: &'a [CandidateBooking],
    /// The booking of the sale this one was split, transferred or refunded from, if matched.
    pub origin_booking: Option<i64>,
    /// The sale's table-and-time match as it stands, if it has one.
    pub current: Option<&'a CurrentMatch>,
    /// Bookings of the venue on the sale's tables whose widened window may contain its time.
    pub nearby: &'a [CandidateBooking],
    pub tolerances: Tolerances,
}

/// Applies the rules in order: booking reference, lineage, the current match while it
/// holds, table and time.
pub fn decide(input: MatchInput<'_>) -> MatchDecision {
    by_reference(input)
        .or_else(|| by_lineage(input))
        .or_else(|| kept(input))
        .unwrap_or_else(|| table_time::decide(input))
}

fn by_reference(input: MatchInput<'_>) -> Option<MatchDecision> {
    input.sale.booking_refs.iter().find_map(|reference| {
        input
            .by_reference
            .iter()
            .find(|booking| booking.reference.as_deref() == Some(reference.value.as_str()))
            .map(|booking| {
                MatchDecision::Matched(MatchedBooking {
                    booking_id: booking.id,
                    rule: MatchRule::BookingReference,
                    reason: format!(
                        "booking reference {} in {}",
                        reference.value, reference.source
                    ),
                    decided_by: None,
                })
            })
    })
}

fn by_lineage(input: MatchInput<'_>) -> Option<MatchDecision> {
    let origin = input.sale.origin_external_id.as_deref()?;
    let booking_id = input.origin_booking?;
    Some(MatchDecision::Matched(MatchedBooking {
        booking_id,
        rule: MatchRule::Lineage,
        reason: lineage_reason(input.sale.kind, origin),
        decided_by: None,
    }))
}

/// A decided table-and-time match is sticky: a later snapshot of the check (more items, a
/// payment, the party moved to another table) keeps it, as long as the booking still holds
/// it on the table and time that decided it.
fn kept(input: MatchInput<'_>) -> Option<MatchDecision> {
    let current = input.current?;
    // A booking moved to the table its check moved to (the POS or the host followed the
    // party) still holds it, as one still on the table that decided it does; one whose
    // check was done before it was due never did.
    let holding = holds(current, input.tolerances)
        || input
            .sale
            .tables
            .iter()
            .any(|table| holds_on(current, table, input.tolerances));
    let early = table_time::done_before_due(input.sale, &current.booking, current.decided_by.at);
    (holding && !early).then(|| {
        MatchDecision::Matched(MatchedBooking {
            booking_id: current.booking.id,
            rule: MatchRule::TableTime,
            reason: current.reason.clone(),
            decided_by: Some(current.decided_by.clone()),
        })
    })
}

/// Whether a booking still holds a table-and-time match it was given: not cancelled or a
/// no-show, still on the table that decided it, the time that decided it still in its
/// widened window, and its party had not paid and left before the check got there (a
/// `CLOSE` that arrived late shows the check was the next party's). A booking moved or
/// re-tabled since lets the sale go.
pub fn holds(current: &CurrentMatch, tolerances: Tolerances) -> bool {
    holds_on(current, &current.decided_by.table, tolerances)
}

/// [`holds`], with the booking on `table` in place of the table that decided the match.
fn holds_on(current: &CurrentMatch, table: &TableKey, tolerances: Tolerances) -> bool {
    let booking = &current.booking;
    let (from, to) = widened_window(booking.start, booking.end, tolerances);
    !booking.status.excluded_from_table_matching()
        && booking.tables.contains(table)
        && from <= current.decided_by.at
        && current.decided_by.at <= to
        && !table_time::left_before(booking, current.decided_by.at)
}

/// The reason recorded when a sale inherits the booking of the sale it came from.
pub fn lineage_reason(kind: SaleKind, origin: &str) -> String {
    format!("{} of sale {origin}", kind.as_str())
}

/// The earliest and latest times that still match `booking` by table and time.
pub fn widened_window(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    tolerances: Tolerances,
) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        super::time::minus(start, tolerances.before_start),
        super::time::plus(end, tolerances.after_end),
    )
}

/// How a sale's time lies against a booking's start, in words.
pub(crate) fn describe_offset(at: DateTime<Utc>, basis: TimeBasis, start: DateTime<Utc>) -> String {
    let verb = match basis {
        TimeBasis::Opened => "opened",
        TimeBasis::Placed => "placed on the table",
    };
    let minutes = at.signed_duration_since(start).num_minutes();
    match minutes {
        0 => format!("{verb} at the booking's start"),
        m if m > 0 => format!("{verb} {m} min after the booking's start"),
        m => format!("{verb} {} min before the booking's start", -m),
    }
}

#[cfg(test)]
mod tests;
