use chrono::{Duration, TimeZone};

use super::*;
use crate::domain::booking::GuestName;
use crate::domain::sale::{BookingRef, SaleKind};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, hour, minute, 0)
        .single()
        .expect("valid test time")
}

fn table(name: &str) -> TableKey {
    TableKey::parse(name).expect("table name")
}

fn sale(opened_at: DateTime<Utc>, tables: &[&str]) -> SaleFacts {
    SaleFacts {
        kind: SaleKind::Sale,
        origin_external_id: None,
        opened_at,
        placed_at: None,
        tables: tables.iter().map(|t| table(t)).collect(),
        booking_refs: vec![],
        covers: None,
        guest_name: None,
        paid_at: None,
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
        covers: 0,
        guest_name: None,
        walk_in: false,
        open_checks: 0,
        closed_checks: 0,
        last_closed_at: None,
        moved_away_at: None,
        checks_anywhere: 0,
    }
}

fn named(mut b: CandidateBooking, name: &str) -> CandidateBooking {
    b.guest_name = GuestName::of(Some(name));
    b
}

fn decide_with(sale: &SaleFacts, nearby: &[CandidateBooking]) -> MatchDecision {
    decide(MatchInput {
        sale,
        by_reference: &[],
        origin_booking: None,
        current: None,
        nearby,
        tolerances: Tolerances::default(),
    })
}

fn matched(decision: MatchDecision) -> MatchedBooking {
    match decision {
        MatchDecision::Matched(m) => m,
        other => panic!("expected a match, got {other:?}"),
    }
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
    let m = matched(decide(MatchInput {
        sale: &s,
        by_reference: &[referenced],
        origin_booking: None,
        current: None,
        nearby: &[by_table],
        tolerances: Tolerances::default(),
    }));
    assert_eq!((m.booking_id, m.rule), (2, MatchRule::BookingReference));
    assert_eq!(m.reason, "booking reference ref-2 in platformReservationId");
    assert_eq!(m.decided_by, None);
}

#[test]
fn table_and_time_matches_within_the_tolerance_and_explains_it() {
    let s = sale(at(19, 12), &["Table 10"]);
    let m = matched(decide_with(&s, &[booking(1, at(19, 0), &["10"])]));
    assert_eq!(m.rule, MatchRule::TableTime);
    assert_eq!(
        m.reason,
        "table 10, opened 12 min after the booking's start"
    );
    assert_eq!(
        m.decided_by,
        Some(Decisive {
            table: table("10"),
            at: at(19, 12),
            basis: TimeBasis::Opened
        })
    );
}

#[test]
fn a_sale_outside_the_widened_window_or_on_another_table_is_unmatched() {
    let b = booking(1, at(19, 0), &["10"]);
    for s in [
        sale(at(18, 29), &["10"]),
        sale(at(21, 31), &["10"]),
        sale(at(19, 5), &["11"]),
    ] {
        assert_eq!(
            decide_with(&s, std::slice::from_ref(&b)),
            MatchDecision::Unmatched
        );
    }
}

#[test]
fn cancelled_and_no_show_bookings_never_match_by_table() {
    let s = sale(at(19, 5), &["10"]);
    for status in [BookingStatus::Cancelled, BookingStatus::NoShow] {
        let mut b = booking(1, at(19, 0), &["10"]);
        b.status = status;
        assert_eq!(decide_with(&s, &[b]), MatchDecision::Unmatched, "{status}");
    }
}

#[test]
fn a_match_made_before_a_late_close_is_let_go_when_the_party_had_left() {
    let mut b = booking(1, at(19, 0), &["10"]);
    let current = |b: &CandidateBooking, at_time| CurrentMatch {
        booking: b.clone(),
        reason: "table 10".to_owned(),
        decided_by: Decisive {
            table: table("10"),
            at: at_time,
            basis: TimeBasis::Opened,
        },
    };
    assert!(holds(&current(&b, at(20, 35)), Tolerances::default()));
    // Its other check closed at 20:30: a check placed at 20:35 was the next party's...
    b.closed_checks = 1;
    b.checks_anywhere = 1;
    b.last_closed_at = Some(at(20, 30));
    assert!(!holds(&current(&b, at(20, 35)), Tolerances::default()));
    // ...one placed before it closed is still theirs.
    assert!(holds(&current(&b, at(20, 10)), Tolerances::default()));
}

#[test]
fn the_table_a_party_moved_away_from_is_free_for_the_next_check() {
    let mut b = booking(1, at(19, 0), &["3"]);
    b.open_checks = 1;
    b.checks_anywhere = 1;
    b.moved_away_at = Some(at(20, 10));
    assert_eq!(
        decide_with(&sale(at(20, 20), &["3"]), std::slice::from_ref(&b)),
        MatchDecision::Unmatched
    );
    // A check on the table before the party moved is still theirs.
    assert_eq!(
        matched(decide_with(&sale(at(19, 30), &["3"]), &[b])).booking_id,
        1
    );
}

#[test]
fn a_walk_in_made_for_the_sale_itself_is_not_its_candidate() {
    let mut stand_in = booking(1, at(18, 50), &["10"]);
    stand_in.walk_in = true;
    let reserved = booking(2, at(19, 30), &["10"]);
    let s = sale(at(19, 25), &["10"]);
    assert_eq!(
        matched(decide_with(&s, &[stand_in.clone(), reserved])).booking_id,
        2
    );
    // A walk-in with another check is a party at the table.
    stand_in.open_checks = 1;
    stand_in.checks_anywhere = 1;
    assert_eq!(matched(decide_with(&s, &[stand_in])).booking_id, 1);
}

#[test]
fn a_booking_with_no_check_by_its_end_is_not_given_a_later_first_check() {
    // Booked 19:00-20:30; a check opened at 20:40 on its table is the next party's.
    let b = booking(1, at(19, 0), &["10"]);
    let late = sale(at(20, 40), &["10"]);
    assert_eq!(
        decide_with(&late, std::slice::from_ref(&b)),
        MatchDecision::Unmatched
    );
    // Marked seated, or holding a check already: the party is there, the late tolerance
    // covers its later check.
    let mut seated = b.clone();
    seated.status = BookingStatus::Seated;
    assert_eq!(matched(decide_with(&late, &[seated])).booking_id, 1);
    let mut eating = b.clone();
    eating.open_checks = 1;
    eating.checks_anywhere = 1;
    assert_eq!(matched(decide_with(&late, &[eating])).booking_id, 1);
    // Before its end it is still a candidate.
    let on_time = sale(at(20, 20), &["10"]);
    assert_eq!(matched(decide_with(&on_time, &[b])).booking_id, 1);
}

#[test]
fn on_a_table_turn_the_party_that_paid_and_left_is_passed_over() {
    // 18:00 party paid; the 19:30 party's check opens at 19:25.
    let mut first = booking(1, at(18, 0), &["10"]);
    first.status = BookingStatus::Paid;
    first.closed_checks = 1;
    first.checks_anywhere = 1;
    let second = booking(2, at(19, 30), &["10"]);
    let m = matched(decide_with(
        &sale(at(19, 25), &["10"]),
        &[first.clone(), second],
    ));
    assert_eq!(m.booking_id, 2);
    assert!(
        m.reason.contains("booking 1 had left the table"),
        "{}",
        m.reason
    );
    // A completed booking, or a walk-in whose checks are all closed, has left too.
    for left in [BookingStatus::Completed, BookingStatus::Seated] {
        let mut earlier = booking(3, at(18, 0), &["10"]);
        earlier.status = left;
        if left == BookingStatus::Seated {
            earlier.walk_in = true;
            earlier.closed_checks = 1;
            earlier.checks_anywhere = 1;
        }
        let later = booking(4, at(19, 30), &["10"]);
        let m = matched(decide_with(&sale(at(19, 20), &["10"]), &[earlier, later]));
        assert_eq!(m.booking_id, 4, "{left}");
    }
    // With nobody else on the table, a new check after the party paid is nobody's.
    first.last_closed_at = Some(at(18, 55));
    assert_eq!(
        decide_with(&sale(at(19, 0), &["10"]), std::slice::from_ref(&first)),
        MatchDecision::Unmatched
    );
    // But a check opened before their last one closed is still theirs (an original check
    // whose split was paid first arrives late).
    let m = matched(decide_with(&sale(at(18, 20), &["10"]), &[first]));
    assert_eq!(m.booking_id, 1);
}

#[test]
fn a_booking_whose_party_has_its_check_yields_to_one_without() {
    // The 18:00 party's check is still open (closed late); the 19:15 party sits down.
    let mut first = booking(1, at(18, 0), &["10"]);
    first.status = BookingStatus::Seated;
    first.open_checks = 1;
    first.checks_anywhere = 1;
    let second = booking(2, at(19, 15), &["10"]);
    let m = matched(decide_with(&sale(at(19, 0), &["10"]), &[first, second]));
    assert_eq!(m.booking_id, 2);
    assert!(
        m.reason.contains("booking 1 already had an open check"),
        "{}",
        m.reason
    );
}

#[test]
fn the_nearest_start_wins_and_starts_within_the_margin_tie() {
    let s = sale(at(20, 40), &["10"]);
    let m = matched(decide_with(
        &s,
        &[
            booking(1, at(19, 30), &["10"]),
            booking(2, at(20, 30), &["10"]),
        ],
    ));
    assert_eq!(m.booking_id, 2);
    assert!(
        m.reason.contains("its start is the nearest"),
        "{}",
        m.reason
    );
    let decision = decide_with(
        &sale(at(19, 15), &["10"]),
        &[
            booking(1, at(19, 0), &["10"]),
            booking(2, at(19, 10), &["10", "11"]),
        ],
    );
    let MatchDecision::Ambiguous {
        candidates,
        reason,
        evidence,
    } = decision
    else {
        panic!("{decision:?}")
    };
    assert_eq!(candidates, vec![1, 2]);
    assert_eq!(evidence.len(), 2);
    assert!(
        reason.contains("booking 1") && reason.contains("booking 2"),
        "every tied booking is named: {reason}"
    );
}

#[test]
fn the_ambiguity_names_every_table_and_booking_that_tied() {
    let s = sale(at(19, 5), &["10", "11"]);
    let decision = decide_with(
        &s,
        &[
            booking(1, at(19, 0), &["10"]),
            booking(2, at(19, 0), &["11"]),
        ],
    );
    let MatchDecision::Ambiguous {
        reason, evidence, ..
    } = decision
    else {
        panic!("{decision:?}")
    };
    assert!(reason.starts_with("tables 10, 11:"), "{reason}");
    assert!(
        reason.contains("booking 1 (19:00 UTC, table 10)"),
        "{reason}"
    );
    assert!(
        reason.contains("booking 2 (19:00 UTC, table 11)"),
        "{reason}"
    );
    assert_eq!(
        evidence[0],
        CandidateEvidence {
            booking_id: 1,
            evidence: "table 10, opened 5 min after the booking's start, no other check yet".into()
        }
    );
}

#[test]
fn the_guests_name_decides_between_otherwise_equal_bookings_only() {
    let mut s = sale(at(19, 5), &["10"]);
    s.guest_name = GuestName::of(Some("JOSÉ GARCÍA"));
    let m = matched(decide_with(
        &s,
        &[
            named(booking(1, at(19, 0), &["10"]), "Anna Smith"),
            named(booking(2, at(19, 0), &["10"]), "Garcia, Jose"),
        ],
    ));
    assert_eq!(m.booking_id, 2);
    assert!(
        m.reason.contains("the guest's name on the check agrees"),
        "{}",
        m.reason
    );
    // The name on a check is often the payer's: alone, another name does not unmatch.
    let m = matched(decide_with(
        &s,
        &[named(booking(3, at(19, 0), &["10"]), "Anna Smith")],
    ));
    assert_eq!(m.booking_id, 3);
    // And it never beats time: a booking nearer by more than the margin wins.
    let m = matched(decide_with(
        &s,
        &[
            named(booking(4, at(17, 50), &["10"]), "José García"),
            booking(5, at(19, 0), &["10"]),
        ],
    ));
    assert_eq!(m.booking_id, 5);
}

#[test]
fn covers_decide_between_otherwise_equal_bookings() {
    let mut s = sale(at(19, 5), &["10"]);
    s.covers = Some(4);
    let mut two = booking(1, at(19, 0), &["10"]);
    two.covers = 2;
    let mut four = booking(2, at(19, 0), &["10"]);
    four.covers = 4;
    let m = matched(decide_with(&s, &[two, four]));
    assert_eq!(m.booking_id, 2);
    assert!(m.reason.ends_with("4 covers, as booked"), "{}", m.reason);
}

#[test]
fn a_bar_tab_moved_to_a_table_is_judged_by_when_it_got_there() {
    let mut s = sale(at(18, 50), &["10"]);
    let b = booking(1, at(19, 30), &["10"]);
    assert_eq!(
        decide_with(&s, std::slice::from_ref(&b)),
        MatchDecision::Unmatched,
        "opened 40 min before the booking"
    );
    s.placed_at = Some(at(19, 34));
    let m = matched(decide_with(&s, &[b]));
    assert_eq!(m.booking_id, 1);
    assert_eq!(
        m.reason,
        "table 10, placed on the table 4 min after the booking's start (opened 18:50 UTC elsewhere)"
    );
    assert_eq!(
        m.decided_by.map(|d| (d.at, d.basis)),
        Some((at(19, 34), TimeBasis::Placed))
    );
}

#[test]
fn a_decided_match_is_kept_while_its_booking_holds_it() {
    let mut first = booking(1, at(19, 0), &["10"]);
    first.status = BookingStatus::Seated;
    let current = CurrentMatch {
        booking: first.clone(),
        reason: "table 10, opened 5 min after the booking's start".into(),
        decided_by: Decisive {
            table: table("10"),
            at: at(19, 5),
            basis: TimeBasis::Opened,
        },
    };
    // The party moved to table 12, where another booking sits.
    let s = sale(at(19, 5), &["12"]);
    let other = booking(2, at(19, 0), &["12"]);
    let decide_now = |current: &CurrentMatch| {
        decide(MatchInput {
            sale: &s,
            by_reference: &[],
            origin_booking: None,
            current: Some(current),
            nearby: std::slice::from_ref(&other),
            tolerances: Tolerances::default(),
        })
    };
    let m = matched(decide_now(&current));
    assert_eq!((m.booking_id, m.rule), (1, MatchRule::TableTime));
    assert_eq!(m.reason, current.reason);
    // A booking marked a no-show, or moved off the table that decided, lets it go.
    let mut no_show = current.clone();
    no_show.booking.status = BookingStatus::NoShow;
    assert_eq!(matched(decide_now(&no_show)).booking_id, 2);
    let mut moved = current.clone();
    moved.booking.tables = vec![table("14")];
    assert_eq!(matched(decide_now(&moved)).booking_id, 2);
    // A reference still beats it.
    let mut referenced = s.clone();
    referenced.booking_refs.push(BookingRef {
        value: "ref-9".into(),
        source: "script".into(),
    });
    let m = matched(decide(MatchInput {
        sale: &referenced,
        by_reference: &[booking(9, at(12, 0), &["1"])],
        origin_booking: None,
        current: Some(&current),
        nearby: &[],
        tolerances: Tolerances::default(),
    }));
    assert_eq!((m.booking_id, m.rule), (9, MatchRule::BookingReference));
}

#[test]
fn a_split_inherits_the_booking_of_its_origin() {
    let mut s = sale(at(19, 15), &["10"]);
    s.kind = SaleKind::Split;
    s.origin_external_id = Some("S0".into());
    let m = matched(decide(MatchInput {
        sale: &s,
        by_reference: &[],
        origin_booking: Some(7),
        current: None,
        nearby: &[booking(1, at(19, 0), &["10"])],
        tolerances: Tolerances::default(),
    }));
    assert_eq!((m.booking_id, m.rule), (7, MatchRule::Lineage));
    assert_eq!(m.reason, "split of sale S0");
}

#[test]
fn suggestions_put_tied_bookings_first_then_the_sales_table_then_the_nearest() {
    let s = sale(at(19, 12), &["10"]);
    let mut cancelled = booking(5, at(19, 5), &["10"]);
    cancelled.status = BookingStatus::Cancelled;
    let nearby = [
        booking(4, at(19, 10), &["4"]),
        booking(3, at(20, 30), &["10"]),
        booking(2, at(19, 0), &["10"]),
        cancelled,
        booking(1, at(19, 0), &["10"]),
    ];
    let suggestions = suggest(&s, &nearby, &[1, 2], 10);
    let ids: Vec<i64> = suggestions.iter().map(|s| s.booking_id).collect();
    assert_eq!(
        ids,
        vec![1, 2, 3, 4],
        "cancelled bookings are never offered"
    );
    assert_eq!(
        suggestions[0].reason,
        "fits as well as another: table 10, opened 12 min after the booking's start, no other check yet"
    );
    assert!(
        suggestions[3]
            .reason
            .starts_with("not the sale's table: table 4"),
        "{}",
        suggestions[3].reason
    );
    assert_eq!(suggest(&s, &nearby, &[], 2).len(), 2);
}
