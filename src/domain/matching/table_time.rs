//! Matching by table and time, ranked as a host would on a real service floor.
//!
//! A booking is a candidate when one of the sale's tables is one of its own, the sale's time
//! lies in its window widened by the venue's tolerances, and it is not cancelled or a
//! no-show. The sale's time is when the check got onto its table: when it was opened, or,
//! for a bar tab moved to a table or a check placed later, the time a snapshot first showed
//! it there ([`super::TimeBasis`]). Then, in order, each step keeping the candidates it
//! prefers when it prefers any:
//!
//! 1. **Gone**: a party that has paid (or completed), or a walk-in whose checks are all
//!    closed, has left the table: never a candidate for a new check (a table turn). So has
//!    a party whose checks all moved to other tables (a transfer): the table it left is
//!    free for the next party.
//!    **Never came**: a reservation with no check at all whose booked end has passed, and
//!    that nobody marked arrived or seated, is not a candidate either: a party that has
//!    not sat down by the end of its booking is not coming, and a check opened then is the
//!    next party's (a walk-in on an unmarked no-show's table). The late tolerance is for
//!    checks of a party that is there: a second check, a round after the booked end. A
//!    walk-in booking with no other check is the sale's own stand-in, never a candidate.
//!    **Done before due**: a check opened and paid before a booking's start is not its
//!    party's (a quick walk-in in the gap before it, a deposit taken ahead).
//! 2. **Occupancy**: a booking with no open check of its own wins over one whose party
//!    already has its check.
//! 3. **Time**: the booking whose start is nearest the sale's time wins, unless another
//!    starts within [`TIE_MARGIN`] of it (then time cannot tell them apart).
//! 4. **Marked seated**: among those, a party the POS or the host marked arrived or seated
//!    that has no check yet wins over a booking not marked (it has not come yet).
//! 5. **Name**: among those, when the check names its guest, the bookings under the same
//!    family name win. A name only ever decides between otherwise equal candidates: the
//!    name on a check is often the payer's, not the booker's.
//! 6. **Covers**: among those, the one whose booked covers equal the check's, if only one.
//!
//! One left is the match; several are ambiguous and all are named, with the evidence for
//! each; none is unmatched. Each step that decided is said in the match's reason.

use chrono::{DateTime, Duration, Utc};

use super::names::{NameEvidence, compare};
use super::{
    CandidateBooking, CandidateEvidence, Decisive, MatchDecision, MatchInput, MatchRule,
    MatchedBooking, TimeBasis, describe_offset, widened_window,
};
use crate::domain::booking::{BookingStatus, GuestName};
use crate::domain::sale::{SaleFacts, SaleKind};
use crate::domain::table::TableKey;

/// Two bookings whose starts lie this close to a sale's time cannot be told apart by time.
pub const TIE_MARGIN: Duration = Duration::minutes(30);

/// A candidate and what is known of it against the sale.
#[derive(Debug, Clone)]
struct Candidate<'a> {
    booking: &'a CandidateBooking,
    table: &'a TableKey,
    name: NameEvidence,
    distance: Duration,
}

/// Whether a booking's party had left the table by `at`: its other checks are all closed
/// (it has paid), or the POS reported it departed, and `at` is after its last check closed
/// (a check opened before then is still theirs: an original whose split was paid first, a
/// second round). A party that left cannot take a new check. The counts are of the
/// booking's *other* checks, so a sale being re-decided never counts against itself.
pub fn gone(booking: &CandidateBooking, at: DateTime<Utc>) -> bool {
    let finished = booking.status == BookingStatus::Completed
        || (booking.closed_checks > 0 && booking.open_checks == 0);
    (finished && booking.last_closed_at.is_none_or(|left| at >= left))
        || booking.moved_away_at.is_some_and(|moved| at >= moved)
}

/// Whether a booking's other checks were all closed before `at`: the party had paid when
/// this check got onto its table, so the check is the next party's. What a late `CLOSE`
/// (a partner's retry, a POS back online) reveals about a match made before it arrived.
pub fn left_before(booking: &CandidateBooking, at: DateTime<Utc>) -> bool {
    booking.closed_checks > 0
        && booking.open_checks == 0
        && booking.last_closed_at.is_some_and(|left| at >= left)
}

/// Whether a booking's party had, by `at`, shown no sign of coming: no check at all, its
/// booked end passed, and nobody marked it arrived or seated.
pub fn never_came(booking: &CandidateBooking, at: DateTime<Utc>) -> bool {
    booking.checks_anywhere == 0
        && at >= booking.end
        && !matches!(
            booking.status,
            BookingStatus::Arrived | BookingStatus::Seated
        )
}

/// Whether a booking was marked arrived or seated (by the POS, by the host) before any
/// check of its own: its party is at the table, waiting for its first check.
fn marked_present(booking: &CandidateBooking) -> bool {
    matches!(
        booking.status,
        BookingStatus::Arrived | BookingStatus::Seated
    ) && booking.checks_anywhere == 0
}

/// Whether the check was opened and paid before the booking was even due: a quick walk-in
/// in the gap before a reservation ("yours if you are done by seven"), or a deposit taken
/// ahead. A party does not finish its meal before its booking starts.
pub fn done_before_due(sale: &SaleFacts, booking: &CandidateBooking, at: DateTime<Utc>) -> bool {
    at < booking.start && sale.paid_at.is_some_and(|paid| paid <= booking.start)
}

/// Whether a booking is only a walk-in made for the sale being decided: a walk-in with no
/// other check. It stands for that check, not for a party; deciding the check again must
/// not find the check's own stand-in.
pub fn placeholder(booking: &CandidateBooking) -> bool {
    booking.walk_in && booking.checks_anywhere == 0
}

/// Decides by table and time; see the module's documentation.
pub fn decide(input: MatchInput<'_>) -> MatchDecision {
    let sale = input.sale;
    // A refund says nothing about who sits at a table: it belongs to its origin's booking
    // (lineage) or to the one its reference names, never to whoever is booked there.
    if sale.kind == SaleKind::Refund {
        return MatchDecision::Unmatched;
    }
    let (at, basis) = sale.match_time();
    let fitting: Vec<Candidate<'_>> = input
        .nearby
        .iter()
        .filter(|booking| !booking.status.excluded_from_table_matching())
        .filter(|booking| {
            let (from, to) = widened_window(booking.start, booking.end, input.tolerances);
            from <= at && at <= to
        })
        .filter(|booking| !never_came(booking, at))
        .filter(|booking| !done_before_due(sale, booking, at))
        .filter(|booking| !placeholder(booking))
        .filter_map(|booking| {
            let table = sale.tables.iter().find(|t| booking.tables.contains(t))?;
            Some(Candidate {
                booking,
                table,
                name: compare(
                    sale.guest_name.as_ref().map(GuestName::as_str),
                    booking.guest_name.as_ref().map(GuestName::as_str),
                ),
                distance: at.signed_duration_since(booking.start).abs(),
            })
        })
        .collect();
    let mut notes: Vec<String> = Vec::new();
    let gone_ids: Vec<i64> = fitting
        .iter()
        .filter(|c| gone(c.booking, at))
        .map(|c| c.booking.id)
        .collect();
    let mut left: Vec<Candidate<'_>> = fitting
        .iter()
        .filter(|c| !gone(c.booking, at))
        .cloned()
        .collect();
    if !gone_ids.is_empty() && !left.is_empty() {
        notes.push(format!("{} had left the table", bookings_phrase(&gone_ids)));
    }
    if left.iter().any(|c| c.booking.open_checks == 0)
        && left.iter().any(|c| c.booking.open_checks > 0)
    {
        let busy: Vec<i64> = left
            .iter()
            .filter(|c| c.booking.open_checks > 0)
            .map(|c| c.booking.id)
            .collect();
        notes.push(format!(
            "{} already had an open check",
            bookings_phrase(&busy)
        ));
        left.retain(|c| c.booking.open_checks == 0);
    }
    let Some(nearest) = left.iter().map(|c| c.distance).min() else {
        return MatchDecision::Unmatched;
    };
    let before = left.len();
    let within = nearest.checked_add(&TIE_MARGIN).unwrap_or(Duration::MAX);
    left.retain(|c| c.distance <= within);
    if left.len() < before {
        notes.push("its start is the nearest".to_owned());
    }
    // A party the POS or the host marked arrived or seated, with no check yet, is the one
    // sitting there; a booking not marked has not come yet.
    if left.len() > 1
        && left.iter().any(|c| marked_present(c.booking))
        && left.iter().any(|c| !marked_present(c.booking))
    {
        left.retain(|c| marked_present(c.booking));
        notes.push("its party was marked seated".to_owned());
    }
    if left.len() > 1 && left.iter().any(|c| c.name == NameEvidence::Agrees) {
        left.retain(|c| c.name == NameEvidence::Agrees);
        notes.push("the guest's name on the check agrees".to_owned());
    }
    if left.len() > 1
        && let Some(covers) = sale.covers.filter(|c| *c > 0)
        && left.iter().filter(|c| c.booking.covers == covers).count() == 1
    {
        left.retain(|c| c.booking.covers == covers);
        notes.push(format!("{covers} covers, as booked"));
    }
    match left.as_slice() {
        [] => MatchDecision::Unmatched,
        [one] => {
            let mut reason = format!(
                "table {}, {}",
                one.table,
                describe_offset(at, basis, one.booking.start)
            );
            if basis == TimeBasis::Placed {
                reason.push_str(&format!(
                    " (opened {} elsewhere)",
                    sale.opened_at.format("%H:%M UTC")
                ));
            }
            for note in &notes {
                reason.push_str("; ");
                reason.push_str(note);
            }
            MatchDecision::Matched(MatchedBooking {
                booking_id: one.booking.id,
                rule: MatchRule::TableTime,
                reason,
                decided_by: Some(Decisive {
                    table: one.table.clone(),
                    at,
                    basis,
                }),
            })
        }
        tied => {
            let mut candidates: Vec<i64> = tied.iter().map(|c| c.booking.id).collect();
            candidates.sort_unstable();
            let mut tables: Vec<&str> = tied.iter().map(|c| c.table.as_str()).collect();
            tables.sort_unstable();
            tables.dedup();
            let each: Vec<String> = tied
                .iter()
                .map(|c| {
                    format!(
                        "booking {} ({}, {})",
                        c.booking.id,
                        c.booking.start.format("%H:%M UTC"),
                        tables_phrase(&c.booking.tables)
                    )
                })
                .collect();
            MatchDecision::Ambiguous {
                reason: format!(
                    "table{} {}: {} fit equally well",
                    if tables.len() > 1 { "s" } else { "" },
                    tables.join(", "),
                    each.join(", ")
                ),
                evidence: tied
                    .iter()
                    .map(|c| CandidateEvidence {
                        booking_id: c.booking.id,
                        evidence: evidence(sale, c.booking, at, basis),
                    })
                    .collect(),
                candidates,
            }
        }
    }
}

/// What a host would weigh about `booking` for `sale`, in words: the table, the time, the
/// checks it has, its covers and its guest's name against the check's.
pub fn evidence(
    sale: &SaleFacts,
    booking: &CandidateBooking,
    at: DateTime<Utc>,
    basis: TimeBasis,
) -> String {
    let mut parts = vec![
        tables_phrase(&booking.tables),
        describe_offset(at, basis, booking.start),
    ];
    parts.push(
        match (
            booking.open_checks,
            booking.closed_checks,
            booking.checks_anywhere,
        ) {
            (0, 0, 0) => "no other check yet".to_owned(),
            (0, 0, elsewhere) => format!("{elsewhere} other check(s), none on its tables"),
            (0, closed, _) => format!("{closed} other closed check(s), none open"),
            (open, _, _) => format!("{open} other open check(s)"),
        },
    );
    if booking.moved_away_at.is_some_and(|moved| at >= moved) {
        parts.push("its party moved to another table".to_owned());
    } else if gone(booking, at) {
        parts.push(format!("{} (the party has left)", booking.status));
    }
    if booking.covers > 0 {
        parts.push(match sale.covers.filter(|c| *c > 0) {
            Some(covers) if covers == booking.covers => format!("{covers} covers, as booked"),
            Some(covers) => format!("{} covers booked, {covers} on the check", booking.covers),
            None => format!("{} covers booked", booking.covers),
        });
    }
    match compare(
        sale.guest_name.as_ref().map(GuestName::as_str),
        booking.guest_name.as_ref().map(GuestName::as_str),
    ) {
        NameEvidence::Agrees => parts.push("the guest's name agrees".to_owned()),
        NameEvidence::Disagrees => parts.push("booked under another name".to_owned()),
        NameEvidence::Silent => {}
    }
    parts.join(", ")
}

fn bookings_phrase(ids: &[i64]) -> String {
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    if ids.len() == 1 {
        format!("booking {}", ids[0])
    } else {
        format!("bookings {}", ids.join(", "))
    }
}

fn tables_phrase(tables: &[TableKey]) -> String {
    let names: Vec<&str> = tables.iter().map(TableKey::as_str).collect();
    match names.len() {
        0 => "no table".to_owned(),
        1 => format!("table {}", names[0]),
        _ => format!("tables {}", names.join(", ")),
    }
}
