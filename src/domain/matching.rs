//! Which booking a sale belongs to, decided by ranked rules and explained in words.
//!
//! The store gathers the candidates (bookings named by the sale's references, the booking of
//! the sale it was split from, bookings near its table and time); [`decide`] picks one or none.
//! Rules are tried in order and the first that decides wins. Two equally good candidates are
//! ambiguous: the sale stays unmatched and the candidates are kept, never guessed between.

use chrono::{DateTime, Duration, Utc};

use super::booking::BookingStatus;
use super::sale::SaleFacts;
use super::sale::SaleKind;
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

/// A booking as matching sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateBooking {
    pub id: i64,
    pub reference: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub tables: Vec<TableKey>,
    pub status: BookingStatus,
}

/// A decided match with its human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedBooking {
    pub booking_id: i64,
    pub rule: MatchRule,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchDecision {
    Matched(MatchedBooking),
    /// Several bookings fit equally well; the sale stays unmatched.
    Ambiguous {
        candidates: Vec<i64>,
        reason: String,
    },
    Unmatched,
}

/// Everything [`decide`] needs, gathered by the caller.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    pub sale: &'a SaleFacts,
    /// Bookings of the venue whose reference equals one of the sale's booking references.
    pub by_reference: &'a [CandidateBooking],
    /// The booking of the sale this one was split, transferred or refunded from, if matched.
    pub origin_booking: Option<i64>,
    /// Bookings of the venue whose widened window contains the sale's open time.
    pub nearby: &'a [CandidateBooking],
    pub tolerances: Tolerances,
}

/// Applies the rules in order: booking reference, lineage, table and time.
pub fn decide(input: MatchInput<'_>) -> MatchDecision {
    by_reference(input)
        .or_else(|| by_lineage(input))
        .unwrap_or_else(|| by_table_and_time(input))
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
    }))
}

/// The reason recorded when a sale inherits the booking of the sale it came from.
pub fn lineage_reason(kind: SaleKind, origin: &str) -> String {
    format!("{} of sale {origin}", kind.as_str())
}

/// The earliest and latest open times that still match `booking` by table and time.
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

fn by_table_and_time(input: MatchInput<'_>) -> MatchDecision {
    let opened = input.sale.opened_at;
    let mut scored: Vec<(Duration, &CandidateBooking, &TableKey)> = input
        .nearby
        .iter()
        .filter(|booking| !booking.status.excluded_from_table_matching())
        .filter(|booking| {
            let (from, to) = widened_window(booking.start, booking.end, input.tolerances);
            from <= opened && opened <= to
        })
        .filter_map(|booking| {
            let table = input
                .sale
                .tables
                .iter()
                .find(|table| booking.tables.contains(table))?;
            Some((distance_outside(opened, booking), booking, table))
        })
        .collect();
    scored.sort_by_key(|(distance, booking, _)| (*distance, booking.id));
    let Some(&(best, booking, table)) = scored.first() else {
        return MatchDecision::Unmatched;
    };
    let tied: Vec<i64> = scored
        .iter()
        .take_while(|(distance, _, _)| *distance == best)
        .map(|(_, booking, _)| booking.id)
        .collect();
    if tied.len() > 1 {
        return MatchDecision::Ambiguous {
            reason: format!(
                "table {table}: {} bookings fit the open time equally well",
                tied.len()
            ),
            candidates: tied,
        };
    }
    MatchDecision::Matched(MatchedBooking {
        booking_id: booking.id,
        rule: MatchRule::TableTime,
        reason: format!("table {table}, {}", describe_offset(opened, booking)),
    })
}

/// A booking an operator might match an unmatched sale to, and why it is offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub booking_id: i64,
    pub reason: String,
}

/// How far before a sale's open time suggestions look for bookings, and how far after.
pub const SUGGEST_BEFORE: Duration = Duration::hours(4);
pub const SUGGEST_AFTER: Duration = Duration::hours(2);

/// Ranks the bookings near an unmatched or ambiguous sale for an operator: those the rules
/// found equally good first (`tied`), then bookings on one of the sale's tables, then the
/// rest; within each, the nearest to the open time first. Cancelled and no-show bookings are
/// never offered. At most `limit`.
pub fn suggest(
    sale: &SaleFacts,
    nearby: &[CandidateBooking],
    tied: &[i64],
    limit: usize,
) -> Vec<Suggestion> {
    let opened = sale.opened_at;
    let mut ranked: Vec<(u8, Duration, &CandidateBooking, Option<&TableKey>)> = nearby
        .iter()
        .filter(|booking| !booking.status.excluded_from_table_matching())
        .map(|booking| {
            let shared = sale.tables.iter().find(|t| booking.tables.contains(t));
            let rank = if tied.contains(&booking.id) {
                0
            } else if shared.is_some() {
                1
            } else {
                2
            };
            (rank, distance_outside(opened, booking), booking, shared)
        })
        .collect();
    ranked.sort_by_key(|(rank, distance, booking, _)| (*rank, *distance, booking.id));
    ranked
        .into_iter()
        .take(limit)
        .map(|(rank, _, booking, shared)| {
            let timing = describe_offset(opened, booking);
            let reason = match (rank, shared) {
                (0, Some(table)) => format!("fits as well as another: table {table}, {timing}"),
                (_, Some(table)) => format!("table {table}, {timing}"),
                _ => {
                    let booked: Vec<&str> = booking.tables.iter().map(TableKey::as_str).collect();
                    let tables = if booked.is_empty() {
                        "no table".to_owned()
                    } else {
                        format!("table {}", booked.join(", "))
                    };
                    format!("{tables} (not the sale's), {timing}")
                }
            };
            Suggestion {
                booking_id: booking.id,
                reason,
            }
        })
        .collect()
}

/// How far the open time lies outside the booking's own window (zero inside it).
fn distance_outside(opened: DateTime<Utc>, booking: &CandidateBooking) -> Duration {
    if opened < booking.start {
        booking.start - opened
    } else if opened > booking.end {
        opened - booking.end
    } else {
        Duration::zero()
    }
}

fn describe_offset(opened: DateTime<Utc>, booking: &CandidateBooking) -> String {
    let minutes = (opened - booking.start).num_minutes();
    match minutes {
        0 => "opened at the booking's start".to_owned(),
        m if m > 0 => format!("opened {m} min after the booking's start"),
        m => format!("opened {} min before the booking's start", -m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sale::{BookingRef, SaleKind, SaleSnapshot, SaleState, SaleTotals};
    use chrono::TimeZone;

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 14, hour, minute, 0)
            .single()
            .expect("valid test time")
    }

    fn table(name: &str) -> TableKey {
        TableKey::parse(name).expect("table name")
    }

    fn sale(opened_at: DateTime<Utc>, tables: &[&str]) -> SaleSnapshot {
        SaleSnapshot {
            external_id: "S1".into(),
            number: None,
            kind: SaleKind::Sale,
            origin_external_id: None,
            state: SaleState::Open,
            opened_at,
            closed_at: None,
            version: 1,
            currency: None,
            totals: SaleTotals::default(),
            covers: None,
            tables: tables.iter().map(|t| table(t)).collect(),
            lines: vec![],
            payments: vec![],
            booking_refs: vec![],
            wall_clock: false,
        }
    }

    fn booking(id: i64, start: DateTime<Utc>, tables: &[&str]) -> CandidateBooking {
        CandidateBooking {
            id,
            reference: Some(format!("ref-{id}")),
            start,
            end: start + Duration::minutes(90),
            tables: tables.iter().map(|t| table(t)).collect(),
            status: BookingStatus::Confirmed,
        }
    }

    fn decide_with(
        sale: &SaleSnapshot,
        by_reference: &[CandidateBooking],
        nearby: &[CandidateBooking],
    ) -> MatchDecision {
        decide(MatchInput {
            sale: &sale.facts(),
            by_reference,
            origin_booking: None,
            nearby,
            tolerances: Tolerances::default(),
        })
    }

    #[test]
    fn suggestions_put_tied_bookings_first_then_the_sales_table_then_the_nearest() {
        let s = sale(at(19, 12), &["10"]);
        let tied_a = booking(1, at(19, 0), &["10"]);
        let tied_b = booking(2, at(19, 0), &["10"]);
        let same_table_later = booking(3, at(20, 30), &["10"]);
        let other_table_near = booking(4, at(19, 10), &["4"]);
        let mut cancelled = booking(5, at(19, 5), &["10"]);
        cancelled.status = BookingStatus::Cancelled;
        let nearby = [
            other_table_near,
            same_table_later,
            tied_b,
            cancelled,
            tied_a,
        ];
        let suggestions = suggest(&s.facts(), &nearby, &[1, 2], 10);
        let ids: Vec<i64> = suggestions.iter().map(|s| s.booking_id).collect();
        assert_eq!(
            ids,
            vec![1, 2, 3, 4],
            "cancelled bookings are never offered"
        );
        assert_eq!(
            suggestions[0].reason,
            "fits as well as another: table 10, opened 12 min after the booking's start"
        );
        assert_eq!(
            suggestions[3].reason,
            "table 4 (not the sale's), opened 2 min after the booking's start"
        );
        assert_eq!(suggest(&s.facts(), &nearby, &[], 2).len(), 2);
    }

    #[test]
    fn a_booking_reference_wins_over_table_and_time() {
        let mut s = sale(at(19, 12), &["10"]);
        s.booking_refs.push(BookingRef {
            value: "ref-2".into(),
            source: "platformReservationId".into(),
        });
        let referenced = booking(2, at(12, 0), &["3"]);
        let by_table = booking(1, at(19, 0), &["10"]);
        let decision = decide_with(&s, &[referenced], &[by_table]);
        let MatchDecision::Matched(m) = decision else {
            panic!("expected a match, got {decision:?}")
        };
        assert_eq!((m.booking_id, m.rule), (2, MatchRule::BookingReference));
        assert_eq!(m.reason, "booking reference ref-2 in platformReservationId");
    }

    #[test]
    fn table_and_time_matches_within_the_tolerance_and_explains_it() {
        let s = sale(at(19, 12), &["Table 10"]);
        let decision = decide_with(&s, &[], &[booking(1, at(19, 0), &["10"])]);
        let MatchDecision::Matched(m) = decision else {
            panic!("expected a match, got {decision:?}")
        };
        assert_eq!(m.rule, MatchRule::TableTime);
        assert_eq!(
            m.reason,
            "table 10, opened 12 min after the booking's start"
        );
    }

    #[test]
    fn a_sale_outside_the_widened_window_is_unmatched() {
        let early = sale(at(18, 29), &["10"]);
        assert_eq!(
            decide_with(&early, &[], &[booking(1, at(19, 0), &["10"])]),
            MatchDecision::Unmatched
        );
        let late = sale(at(21, 31), &["10"]);
        assert_eq!(
            decide_with(&late, &[], &[booking(1, at(19, 0), &["10"])]),
            MatchDecision::Unmatched
        );
    }

    #[test]
    fn another_table_never_matches() {
        let s = sale(at(19, 5), &["11"]);
        assert_eq!(
            decide_with(&s, &[], &[booking(1, at(19, 0), &["10"])]),
            MatchDecision::Unmatched
        );
    }

    #[test]
    fn cancelled_and_no_show_bookings_never_match_by_table() {
        let s = sale(at(19, 5), &["10"]);
        for status in [BookingStatus::Cancelled, BookingStatus::NoShow] {
            let mut b = booking(1, at(19, 0), &["10"]);
            b.status = status;
            assert_eq!(
                decide_with(&s, &[], &[b]),
                MatchDecision::Unmatched,
                "{status}"
            );
        }
    }

    #[test]
    fn the_booking_whose_own_window_holds_the_sale_beats_one_in_tolerance() {
        let s = sale(at(20, 40), &["10"]);
        let earlier = booking(1, at(19, 0), &["10"]); // ends 20:30, sale 10 min after
        let later = booking(2, at(20, 30), &["10"]); // sale inside
        let MatchDecision::Matched(m) = decide_with(&s, &[], &[earlier, later]) else {
            panic!()
        };
        assert_eq!(m.booking_id, 2);
    }

    #[test]
    fn two_equally_good_bookings_are_ambiguous() {
        let s = sale(at(19, 15), &["10"]);
        let decision = decide_with(
            &s,
            &[],
            &[
                booking(1, at(19, 0), &["10"]),
                booking(2, at(19, 10), &["10", "11"]),
            ],
        );
        let MatchDecision::Ambiguous { candidates, .. } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(candidates, vec![1, 2]);
    }

    #[test]
    fn a_split_inherits_the_booking_of_its_origin() {
        let mut s = sale(at(19, 15), &["10"]);
        s.kind = SaleKind::Split;
        s.origin_external_id = Some("S0".into());
        let decision = decide(MatchInput {
            sale: &s.facts(),
            by_reference: &[],
            origin_booking: Some(7),
            nearby: &[booking(1, at(19, 0), &["10"])],
            tolerances: Tolerances::default(),
        });
        let MatchDecision::Matched(m) = decision else {
            panic!()
        };
        assert_eq!((m.booking_id, m.rule), (7, MatchRule::Lineage));
        assert_eq!(m.reason, "split of sale S0");
    }
}
