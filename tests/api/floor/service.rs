//! Turns, parties moved, bar tabs moved to tables, walk-ins on no-show tables, names,
//! covers and occupancy, refunds, and what an operator sees when candidates tie.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::helpers::{Db, json_of, spawn};

async fn a_check_opened_after_a_party_paid_and_left_goes_to_the_next_booking(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let early = booked(&app, venue, "2026-03-06T18:00:00Z", 90, "5").await;
    let late = booked(&app, venue, "2026-03-06T19:30:00Z", 90, "5").await;

    let first = Check::open("9001", "2026-03-06T18:04:00Z", &["5"]);
    send(&app, &first).await;
    send(&app, &first.close("2026-03-06T19:15:00Z")).await;
    assert_eq!(app.booking_view(early).await["status"], "paid");

    // The next party is seated early, inside the first booking's window.
    let second = Check::open("9002", "2026-03-06T19:22:00Z", &["5"]);
    send(&app, &second).await;
    let early_view = app.booking_view(early).await;
    let late_view = app.booking_view(late).await;
    assert_eq!(sale_ids(&early_view), ["9001"]);
    assert_eq!(sale_ids(&late_view), ["9002"]);
    assert_eq!(
        early_view["status"], "paid",
        "a paid party is not seated again"
    );
    assert_eq!(late_view["status"], "seated");
    assert_eq!(late_view["sales"][0]["match"]["rule"], "table_time");
}

async fn a_party_moved_to_another_table_keeps_its_check_on_its_booking(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let moved = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "5").await;
    let other = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "6").await;

    let check = Check::open("9101", "2026-03-06T19:03:00Z", &["5"]);
    send(&app, &check).await;
    send(&app, &check.update("2026-03-06T19:40:00Z", &["6"])).await;

    let moved_view = app.booking_view(moved).await;
    assert_eq!(sale_ids(&moved_view), ["9101"], "the match is sticky");
    assert_eq!(moved_view["status"], "seated");
    let other_view = app.booking_view(other).await;
    assert!(sale_ids(&other_view).is_empty());
    assert_eq!(other_view["status"], "confirmed");
    let matched = sale(&app, "9101").await;
    assert_eq!(matched["match"]["rule"], "table_time");
    assert_eq!(
        matched["match"]["table"], "5",
        "decided on the table it opened on"
    );
}

async fn a_booking_whose_only_sale_leaves_returns_to_its_status_before_sales(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let voided = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "5").await;
    let unmatched = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "6").await;

    let check = Check::open("9201", "2026-03-06T19:05:00Z", &["5"]);
    send(&app, &check).await;
    assert_eq!(app.booking_view(voided).await["status"], "seated");
    let mut cancel = check.body();
    cancel["notificationType"] = json!("CANCEL");
    cancel["account"]["updateDate"] = json!(ms("2026-03-06T19:10:00Z"));
    post(&app, &cancel).await;
    let view = app.booking_view(voided).await;
    assert_eq!(view["status"], "confirmed", "{view}");
    let last = view["transitions"]
        .as_array()
        .and_then(|t| t.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["to"], "confirmed");
    assert!(
        last["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("no live sale"),
        "{last}"
    );

    send(&app, &Check::open("9202", "2026-03-06T19:05:00Z", &["6"])).await;
    assert_eq!(app.booking_view(unmatched).await["status"], "seated");
    let id = sale(&app, "9202").await["id"].as_i64().expect("sale id");
    let (status, _) = app
        .admin_post(&format!("/sales/{id}/unmatch"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let view = app.booking_view(unmatched).await;
    assert_eq!(view["status"], "confirmed", "{view}");
    assert!(sale_ids(&view).is_empty());
}

async fn a_bar_tab_moved_to_a_table_is_matched_by_when_it_got_there(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let booking = booked(&app, venue, "2026-03-06T19:30:00Z", 90, "7").await;

    // Drinks at the bar 40 minutes before the table's booking: too early to be its check.
    let tab = Check::open("9301", "2026-03-06T18:50:00Z", &[]);
    send(&app, &tab).await;
    assert_eq!(sale(&app, "9301").await["match"]["booking_id"], Value::Null);

    send(&app, &tab.update("2026-03-06T19:34:00Z", &["7"])).await;
    let matched = sale(&app, "9301").await;
    assert_eq!(matched["match"]["booking_id"], booking, "{matched}");
    assert_eq!(matched["match"]["rule"], "table_time");
    assert_eq!(matched["match"]["time_basis"], "placed");
    assert_eq!(matched["match"]["table"], "7");
    let at: DateTime<Utc> = matched["match"]["at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("decisive time");
    assert_eq!(at.timestamp_millis(), ms("2026-03-06T19:34:00Z"));
    assert_eq!(app.booking_view(booking).await["status"], "seated");

    // A check opened at its table is judged by its own open time.
    send(&app, &Check::open("9302", "2026-03-06T19:36:00Z", &["7"])).await;
    assert_eq!(sale(&app, "9302").await["match"]["time_basis"], "opened");
}

async fn a_pos_no_show_releases_a_booking_held_only_by_table_and_time(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SAMPLE_LOCATION, true)
        .await;
    let (status, _) = app
        .admin_patch(&format!("/venues/{venue}"), json!({ "walk_ins": true }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let absent = app
        .booking(venue, json!({ "reference": "R-absent", "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["1"] }))
        .await;
    let present = app
        .booking(venue, json!({ "reference": "R-present", "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["2"] }))
        .await;

    // A walk-in sits at the absent party's table; its check lands there by table and time.
    let walk_in = at_pos(Check::open("9401", "2026-03-06T19:20:00Z", &["1"]).body());
    post(&app, &walk_in).await;
    assert_eq!(app.booking_view(absent).await["status"], "seated");

    post(&app, &pos_status("R-absent", "NO_SHOW")).await;
    let view = app.booking_view(absent).await;
    assert_eq!(view["status"], "no_show", "{view}");
    assert!(sale_ids(&view).is_empty(), "the walk-in's spend left");
    let released = sale(&app, "9401").await;
    let walk_in_booking = released["match"]["booking_id"]
        .as_i64()
        .expect("a walk-in booking took the check");
    assert_ne!(walk_in_booking, absent);
    assert_eq!(app.booking_view(walk_in_booking).await["source"], "walk_in");

    // A check carrying the reservation's own reference is proof the party came.
    let mut own = at_pos(Check::open("9402", "2026-03-06T19:05:00Z", &["2"]).body());
    own["platformReservationId"] = json!("R-present");
    post(&app, &own).await;
    post(&app, &pos_status("R-present", "NO_SHOW")).await;
    let view = app.booking_view(present).await;
    assert_eq!(view["status"], "seated", "{view}");
    assert_eq!(sale_ids(&view), ["9402"]);

    // A cancellation of a booking held only by table and time is applied the same way.
    let cancelled = app
        .booking(venue, json!({ "reference": "R-cancel", "start": "2026-03-06T21:00:00Z", "covers": 2, "tables": ["3"] }))
        .await;
    let late = at_pos(Check::open("9403", "2026-03-06T21:05:00Z", &["3"]).body());
    post(&app, &late).await;
    post(&app, &pos_status("R-cancel", "CANCELLED")).await;
    let view = app.booking_view(cancelled).await;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert!(sale_ids(&view).is_empty());
}

async fn equal_candidates_stay_ambiguous_with_every_table_booking_and_their_evidence(db: Db) {
    let app = spawn(db).await;
    let (five, six) = two_bookings_on_joined_tables(&app).await;
    post(&app, &joined("9501")).await;
    let tied = sale(&app, "9501").await;
    let matched = &tied["match"];
    assert_eq!(matched["booking_id"], Value::Null, "{tied}");
    let reason = matched["reason"].as_str().unwrap_or_default();
    for word in ["5", "6", &five.to_string(), &six.to_string()] {
        assert!(reason.contains(word), "{word} missing from {reason:?}");
    }
    let mut candidates: Vec<i64> = matched["candidates"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    candidates.sort_unstable();
    assert_eq!(candidates, [five, six]);
    let evidence = matched["evidence"].as_array().cloned().unwrap_or_default();
    assert_eq!(evidence.len(), 2, "{matched}");
    for candidate in &evidence {
        assert!(
            !candidate["evidence"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{candidate}"
        );
    }
}

/// A booking's change decides again only the sales it can concern: those on its tables,
/// those naming it, and those that had it among their candidates. Before, every unmatched
/// sale in its window was decided again, three round trips each, holding the venue for
/// seconds at a bar with thousands of open tabs (found by the outside attack on issue 15).
/// A tie resolves when one of its bookings moves to another table; a tab on a table nobody
/// booked stays as it was.
async fn a_booking_moved_off_a_tied_table_leaves_the_sale_to_the_other_and_tabs_as_they_were(
    db: Db,
) {
    let app = spawn(db).await;
    let (five, six) = two_bookings_on_joined_tables(&app).await;
    post(&app, &joined("9511")).await;
    post(
        &app,
        &Check::open("9512", "2026-03-06T19:06:00Z", &["Bar 1"]).body(),
    )
    .await;
    assert_eq!(sale(&app, "9511").await["match"]["booking_id"], Value::Null);
    let tab_before = sale(&app, "9512").await["match"].clone();
    assert_eq!(tab_before["booking_id"], Value::Null, "{tab_before}");

    let (status, moved) = app
        .admin_patch(&format!("/bookings/{five}"), json!({ "tables": ["9"] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let resolved = sale(&app, "9511").await;
    assert_eq!(
        resolved["match"]["booking_id"], six,
        "the tie is over once booking {five} left table 5: {resolved}"
    );
    assert_eq!(
        sale(&app, "9512").await["match"],
        tab_before,
        "a tab on a table neither booking is on is left as it was"
    );
}

async fn the_inbox_shows_the_evidence_for_each_tied_booking(db: Db) {
    let app = spawn(db).await;
    let (five, six) = two_bookings_on_joined_tables(&app).await;
    post(&app, &joined("9551")).await;
    let venue = app.booking_view(five).await["venue_id"]
        .as_i64()
        .expect("venue id");
    let page = operator_page(&app, &format!("/ui/inbox?venue={venue}")).await;
    for (booking, covers, guest) in [(five, 2, "Ana Lopez"), (six, 6, "Zoë Müller")] {
        let row = page
            .split("<li>")
            .find(|row| row.contains(&format!("name=\"booking_id\" value=\"{booking}\"")))
            .unwrap_or_else(|| panic!("booking {booking} is offered: {page}"));
        assert!(row.contains("fits as well as another"), "{row}");
        assert!(row.contains(&format!("{covers} covers booked")), "{row}");
        assert!(row.contains("no other check yet"), "{row}");
        assert!(row.contains(guest), "{row}");
    }
}

async fn the_guests_name_on_the_check_decides_between_equal_bookings(db: Db) {
    let app = spawn(db).await;
    let (_, six) = two_bookings_on_joined_tables(&app).await;
    // Spelled as the POS had it: different case, decomposed diacritics.
    let mut named = joined("9601");
    named["account"]["consumerRecord"] = json!({
        "contactInformation": { "firstName": "zoe\u{0308}", "lastName": "MU\u{0308}LLER" }
    });
    post(&app, &named).await;
    let matched = sale(&app, "9601").await;
    assert_eq!(matched["match"]["booking_id"], six, "{matched}");
    assert_eq!(matched["match"]["rule"], "table_time");

    // A name nobody booked under decides nothing.
    let mut stranger = joined("9602");
    stranger["account"]["consumerRecord"] =
        json!({ "contactInformation": { "firstName": "Kim", "lastName": "Park" } });
    post(&app, &stranger).await;
    let unmatched = sale(&app, "9602").await;
    assert_ne!(unmatched["match"]["booking_id"], json!(six), "{unmatched}");
}

async fn covers_and_an_open_check_rank_otherwise_equal_bookings(db: Db) {
    let app = spawn(db).await;
    let (five, six) = two_bookings_on_joined_tables(&app).await;
    // Six covers on the check: the party of six booked on table 6.
    let mut six_guests = joined("9701");
    six_guests["account"]["coverCount"] = json!(6);
    post(&app, &six_guests).await;
    assert_eq!(sale(&app, "9701").await["match"]["booking_id"], six);

    // The next check on the joined table goes to the booking without an open check.
    post(&app, &joined("9702")).await;
    assert_eq!(sale(&app, "9702").await["match"]["booking_id"], five);
}

async fn a_name_never_overrides_a_reference(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let referenced = app
        .booking(venue, json!({ "reference": "R-77", "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["5"], "customer": { "name": "Ana Lopez" } }))
        .await;
    app.booking(venue, json!({ "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["5"], "customer": { "name": "Kim Park" } }))
        .await;
    let mut body = Check::open("9801", "2026-03-06T19:04:00Z", &["5"]).body();
    body["platformReservationId"] = json!("R-77");
    body["account"]["consumerRecord"] =
        json!({ "contactInformation": { "firstName": "Kim", "lastName": "Park" } });
    post(&app, &body).await;
    let matched = sale(&app, "9801").await;
    assert_eq!(matched["match"]["booking_id"], referenced);
    assert_eq!(matched["match"]["rule"], "booking_reference");
}

async fn refunds_naming_their_origin_are_counted_as_refunds(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let booking = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "5").await;
    let mut paid =
        Check::open("9901", "2026-03-06T19:04:00Z", &["5"]).close("2026-03-06T20:30:00Z");
    paid.total = "80.00";
    send(&app, &paid).await;

    // Days later, at the counter: a negative account naming the check it gives back on.
    let mut refund = Check::open("9902", "2026-03-09T12:00:00Z", &[]).close("2026-03-09T12:01:00Z");
    refund.total = "-15.50";
    let mut body = refund.body();
    body["account"]["originAccountId"] = json!("9901");
    post(&app, &body).await;
    // And one typed REFUND.
    let mut typed = Check::open("9903", "2026-03-09T12:05:00Z", &[]).close("2026-03-09T12:06:00Z");
    typed.total = "-4.50";
    let mut body = typed.body();
    body["account"]["type"] = json!("REFUND");
    body["account"]["originAccountId"] = json!("9901");
    post(&app, &body).await;

    let view = app.booking_view(booking).await;
    assert_eq!(view["spend"]["refunds"], "20.00", "{}", view["spend"]);
    assert_eq!(view["spend"]["total"], "60.00");
    assert_eq!(view["status"], "paid", "a refund does not reopen the table");
    assert_eq!(sale(&app, "9902").await["match"]["rule"], "lineage");
}

async fn pos_covers_stand_beside_booked_covers_and_the_venue_picks_the_divisor(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let booking = app
        .booking(
            venue,
            json!({ "start": "2026-03-06T19:00:00Z", "covers": 4, "tables": ["5"] }),
        )
        .await;
    let mut check = Check::open("9951", "2026-03-06T19:04:00Z", &["5"]);
    check.total = "90.00";
    check.covers = Some(3);
    send(&app, &check).await;

    let view = app.booking_view(booking).await;
    assert_eq!(view["covers"], 4);
    assert_eq!(view["pos_covers"], 3);
    assert_eq!(
        view["spend"]["per_cover"], "22.50",
        "booked covers by default"
    );

    let (status, patched) = app
        .admin_patch(
            &format!("/venues/{venue}"),
            json!({ "covers_source": "pos" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["covers_source"], "pos");
    assert_eq!(
        app.booking_view(booking).await["spend"]["per_cover"],
        "30.00"
    );

    let (status, refused) = app
        .admin_patch(
            &format!("/venues/{venue}"),
            json!({ "covers_source": "guests" }),
        )
        .await;
    assert!(status.is_client_error(), "{status} {refused}");
    assert_eq!(
        app.admin_get(&format!("/venues/{venue}")).await["covers_source"],
        "pos"
    );
}

async fn the_table_a_party_moved_away_from_is_free_for_the_next_party(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let anna = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "3").await;
    let dan = booked(&app, venue, "2026-03-06T20:30:00Z", 120, "12").await;

    // Anna's party moves from table 3 to table 12 at 20:10 and is still eating there.
    let check = Check::open("9151", "2026-03-06T19:02:00Z", &["3"]);
    send(&app, &check).await;
    send(&app, &check.update("2026-03-06T20:10:00Z", &["12"])).await;
    // A walk-in sits at table 3 at 20:20.
    send(&app, &Check::open("9152", "2026-03-06T20:20:00Z", &["3"])).await;
    let walk_in = sale(&app, "9152").await;
    assert_ne!(walk_in["match"]["booking_id"], json!(anna), "{walk_in}");
    assert_eq!(sale_ids(&app.booking_view(anna).await), ["9151"]);

    // Anna pays; Dan, booked on 12, is seated on 3 instead (a swap).
    send(
        &app,
        &check
            .update("2026-03-06T20:10:00Z", &["12"])
            .close("2026-03-06T21:00:00Z"),
    )
    .await;
    send(&app, &Check::open("9153", "2026-03-06T20:35:00Z", &["3"])).await;
    let anna_view = app.booking_view(anna).await;
    assert_eq!(
        anna_view["status"], "paid",
        "a paid party is not seated again"
    );
    assert_eq!(sale_ids(&anna_view), ["9151"]);
    let id = sale(&app, "9153").await["id"].as_i64().expect("sale id");
    let suggestions = app.admin_get(&format!("/sales/{id}/suggestions")).await;
    let for_anna = suggestions
        .as_array()
        .and_then(|all| all.iter().find(|s| s["booking_id"] == anna))
        .cloned()
        .unwrap_or_default();
    let reason = for_anna["reason"].as_str().unwrap_or_default();
    assert!(!reason.contains("no other check yet"), "{reason}");
    assert!(reason.contains("moved to another table"), "{reason}");
    let _ = dan;
}

async fn a_check_or_booking_on_too_many_tables_is_refused_clearly(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let many: Vec<String> = (0..1000).map(|t| t.to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let response = app
        .post_lightspeed(
            Check::open("9161", "2026-03-06T19:00:00Z", &many)
                .body()
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["reason"], "invalid_payload", "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("tables"),
        "{answer}"
    );

    // The same table named a thousand times is one table.
    let booking = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "30").await;
    let same = vec!["30"; 1000];
    post(
        &app,
        &Check::open("9162", "2026-03-06T19:05:00Z", &same).body(),
    )
    .await;
    assert_eq!(sale(&app, "9162").await["match"]["booking_id"], booking);

    let tables: Vec<String> = (0..65).map(|t| format!("T{t}")).collect();
    let (status, refused) = app
        .admin_post(
            &format!("/venues/{venue}/bookings"),
            json!({ "start": "2026-03-06T19:00:00Z", "tables": tables }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
}

async fn odd_origins_and_statuses_are_not_taken_as_evidence(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SAMPLE_LOCATION, true)
        .await;
    // An empty POS status says nothing.
    let answer = post_any(&app, &pos_status("R-1", "")).await;
    assert_eq!(answer["reason"], "invalid_payload", "{answer}");

    // An account naming itself as its origin is a plain sale, matched on its own evidence.
    let booking = app
        .booking(
            venue,
            json!({ "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["5"] }),
        )
        .await;
    let mut own = at_pos(Check::open("9171", "2026-03-06T19:05:00Z", &["5"]).body());
    own["account"]["originAccountId"] = json!("9171");
    post(&app, &own).await;
    let itself = sale(&app, "9171").await;
    assert_eq!(itself["origin_external_id"], Value::Null, "{itself}");
    assert_eq!(itself["match"]["rule"], "table_time");
    assert_eq!(itself["match"]["booking_id"], booking);
}

async fn a_party_the_pos_seated_wins_its_check_over_a_booking_not_yet_arrived(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SAMPLE_LOCATION, true)
        .await;
    let seated = app
        .booking(venue, json!({ "reference": "GS", "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["5"] }))
        .await;
    app.booking(
        venue,
        json!({ "reference": "HS", "start": "2026-03-06T19:15:00Z", "covers": 2, "tables": ["6"] }),
    )
    .await;
    let mut status = pos_status("GS", "SEATED");
    status["tables"] = json!(["6"]);
    post(&app, &status).await;
    let check = at_pos(Check::open("9181", "2026-03-06T19:03:00Z", &["6"]).body());
    post(&app, &check).await;
    let matched = sale(&app, "9181").await;
    assert_eq!(matched["match"]["booking_id"], seated, "{matched}");
    assert!(
        matched["match"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("marked seated"),
        "{matched}"
    );
}

async fn a_quick_walk_in_done_before_a_booking_is_due_leaves_it_its_own_check(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let booking = app
        .booking(
            venue,
            json!({ "start": "2026-03-06T19:00:00Z", "covers": 4, "tables": ["6"] }),
        )
        .await;
    // "You can have it if you are done by seven": a couple at 18:32, paid at 18:56.
    let walk_in = Check::open("9191", "2026-03-06T18:32:00Z", &["6"]);
    send(&app, &walk_in).await;
    send(&app, &walk_in.close("2026-03-06T18:56:00Z")).await;
    send(&app, &Check::open("9192", "2026-03-06T19:04:00Z", &["6"])).await;

    let view = app.booking_view(booking).await;
    assert_eq!(sale_ids(&view), ["9192"], "{view}");
    assert_eq!(view["status"], "seated");
    assert_ne!(
        sale(&app, "9191").await["match"]["booking_id"],
        json!(booking)
    );

    // A deposit taken on its own check before the meal does not make the party leave.
    let deposit_booking = app
        .booking(venue, json!({ "reference": "DEP-1", "start": "2026-03-06T19:00:00Z", "covers": 4, "tables": ["7"] }))
        .await;
    let mut deposit =
        Check::open("9193", "2026-03-06T18:40:00Z", &["7"]).close("2026-03-06T18:41:00Z");
    deposit.total = "50.00";
    let mut body = deposit.body();
    body["platformReservationId"] = json!("DEP-1");
    post(&app, &body).await;
    send(&app, &Check::open("9194", "2026-03-06T19:04:00Z", &["7"])).await;
    let mut ids = sale_ids(&app.booking_view(deposit_booking).await);
    ids.sort();
    assert_eq!(ids, ["9193", "9194"]);

    // Nor does one taken on arrival, paid within a minute, before the meal's check.
    let arrival = app
        .booking(venue, json!({ "reference": "DEP-2", "start": "2026-03-06T19:00:00Z", "covers": 4, "tables": ["8"] }))
        .await;
    let mut prepaid =
        Check::open("9196", "2026-03-06T19:01:00Z", &["8"]).close("2026-03-06T19:01:30Z");
    prepaid.total = "50.00";
    let mut body = prepaid.body();
    body["platformReservationId"] = json!("DEP-2");
    post(&app, &body).await;
    send(&app, &Check::open("9197", "2026-03-06T19:04:00Z", &["8"])).await;
    let mut ids = sale_ids(&app.booking_view(arrival).await);
    ids.sort();
    assert_eq!(ids, ["9196", "9197"]);
}

async fn a_booking_the_pos_moved_with_its_party_keeps_the_check(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SAMPLE_LOCATION, true)
        .await;
    let booking = app
        .booking(venue, json!({ "reference": "TR-1", "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["4"] }))
        .await;
    let mut check = Check::open("9195", "2026-03-06T19:03:00Z", &["4"]);
    check.total = "90.00";
    post(&app, &at_pos(check.body())).await;
    // Transferred to table 9; paid; the POS reports the reservation departed from table 9.
    post(
        &app,
        &at_pos(check.update("2026-03-06T19:40:00Z", &["9"]).body()),
    )
    .await;
    post(
        &app,
        &at_pos(
            check
                .update("2026-03-06T19:40:00Z", &["9"])
                .close("2026-03-06T20:30:00Z")
                .body(),
        ),
    )
    .await;
    let mut departed = pos_status("TR-1", "DEPARTED");
    departed["tables"] = json!(["9"]);
    post(&app, &departed).await;

    let view = app.booking_view(booking).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(sale_ids(&view), ["9195"]);
    assert_eq!(view["spend"]["total"], "90.00");

    // A late status naming the reservation's POS table, where the party never sat, takes
    // nothing away from it, and gives it nobody else's check.
    let other = app
        .booking(venue, json!({ "reference": "TR-2", "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["5"] }))
        .await;
    let mut paid =
        Check::open("9198", "2026-03-06T19:03:00Z", &["5"]).close("2026-03-06T20:20:00Z");
    paid.total = "80.00";
    post(&app, &at_pos(paid.body())).await;
    let mut seated = pos_status("TR-2", "SEATED");
    seated["tables"] = json!(["11"]);
    post(&app, &seated).await;
    post(
        &app,
        &at_pos(Check::open("9199", "2026-03-06T20:40:00Z", &["11"]).body()),
    )
    .await;
    let view = app.booking_view(other).await;
    assert_eq!(sale_ids(&view), ["9198"], "{view}");
    assert_eq!(view["status"], "paid");
}

crate::on_both_stores!(
    a_quick_walk_in_done_before_a_booking_is_due_leaves_it_its_own_check,
    a_booking_the_pos_moved_with_its_party_keeps_the_check,
    a_party_the_pos_seated_wins_its_check_over_a_booking_not_yet_arrived,
    a_check_opened_after_a_party_paid_and_left_goes_to_the_next_booking,
    a_party_moved_to_another_table_keeps_its_check_on_its_booking,
    a_booking_whose_only_sale_leaves_returns_to_its_status_before_sales,
    a_bar_tab_moved_to_a_table_is_matched_by_when_it_got_there,
    a_pos_no_show_releases_a_booking_held_only_by_table_and_time,
    equal_candidates_stay_ambiguous_with_every_table_booking_and_their_evidence,
    a_booking_moved_off_a_tied_table_leaves_the_sale_to_the_other_and_tabs_as_they_were,
    the_inbox_shows_the_evidence_for_each_tied_booking,
    the_guests_name_on_the_check_decides_between_equal_bookings,
    covers_and_an_open_check_rank_otherwise_equal_bookings,
    a_name_never_overrides_a_reference,
    refunds_naming_their_origin_are_counted_as_refunds,
    pos_covers_stand_beside_booked_covers_and_the_venue_picks_the_divisor,
    the_table_a_party_moved_away_from_is_free_for_the_next_party,
    a_check_or_booking_on_too_many_tables_is_refused_clearly,
    odd_origins_and_statuses_are_not_taken_as_evidence,
);
