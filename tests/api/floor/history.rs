//! Deliveries out of order on the floor: a party's `CLOSE` that arrives after the next
//! party's check, and a check's first snapshot that arrives after it moved tables (a POS
//! back online, a partner's retry). The diary must end as if they had come in order.

use serde_json::json;

use super::*;
use crate::helpers::{Db, spawn};

async fn a_late_close_gives_back_the_check_the_next_party_opened(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let early = booked(&app, venue, "2026-03-06T18:00:00Z", 105, "5").await;
    booked(&app, venue, "2026-03-06T21:00:00Z", 105, "5").await;

    let first = Check::open("9051", "2026-03-06T18:02:00Z", &["5"]);
    send(&app, &first).await;
    // A walk-in sits down at 19:50; the first party paid at 19:40, but that CLOSE is
    // delivered only after the walk-in's check (a partner retry).
    send(&app, &Check::open("9052", "2026-03-06T19:50:00Z", &["5"])).await;
    send(&app, &first.close("2026-03-06T19:40:00Z")).await;

    let view = app.booking_view(early).await;
    assert_eq!(sale_ids(&view), ["9051"], "{view}");
    assert_eq!(view["status"], "paid");
    let walk_in = sale(&app, "9052").await;
    assert_ne!(walk_in["match"]["booking_id"], json!(early), "{walk_in}");
}

async fn a_late_first_snapshot_still_says_which_table_the_check_was_opened_on(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let anna = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "3").await;
    let dan = booked(&app, venue, "2026-03-06T20:30:00Z", 120, "12").await;

    // Opened on table 3 at 19:02, moved to table 12 by 20:10; the OPEN arrives last.
    let check = Check::open("9061", "2026-03-06T19:02:00Z", &["3"]);
    let mut moved = check.update("2026-03-06T20:10:00Z", &["12"]);
    moved.total = "65.00";
    send(&app, &moved).await;
    let stale = post_any(&app, &check.body()).await;
    assert_eq!(stale["reason"], "stale_update", "{stale}");

    let moved = sale(&app, "9061").await;
    assert_eq!(moved["match"]["booking_id"], anna, "{moved}");
    assert_eq!(moved["match"]["table"], "3");
    assert_eq!(
        moved["total"], "65.00",
        "the older snapshot's figures are not applied"
    );
    assert_eq!(app.booking_view(anna).await["status"], "seated");
    let dan_view = app.booking_view(dan).await;
    assert!(sale_ids(&dan_view).is_empty(), "{dan_view}");
    assert_eq!(dan_view["status"], "confirmed");

    // Later snapshots keep it with Anna.
    send(
        &app,
        &check
            .update("2026-03-06T20:40:00Z", &["12"])
            .close("2026-03-06T20:50:00Z"),
    )
    .await;
    assert_eq!(sale(&app, "9061").await["match"]["booking_id"], anna);
    assert_eq!(app.booking_view(anna).await["status"], "paid");
}

async fn a_late_first_snapshot_at_the_bar_makes_the_tab_judged_by_when_it_reached_the_table(
    db: Db,
) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let app_walk_ins = app
        .admin_patch(&format!("/venues/{venue}"), json!({ "walk_ins": true }))
        .await;
    assert!(app_walk_ins.0.is_success());
    let booking = booked(&app, venue, "2026-03-06T19:30:00Z", 90, "4").await;

    // A tab opened at the bar at 18:50, on table 4 by 19:34; the OPEN (no table) is late.
    let tab = Check::open("9071", "2026-03-06T18:50:00Z", &[]);
    send(&app, &tab.update("2026-03-06T19:34:00Z", &["4"])).await;
    let first = sale(&app, "9071").await;
    assert_ne!(
        first["match"]["booking_id"],
        json!(booking),
        "judged by 18:50 at first"
    );
    let stale = post_any(&app, &tab.body()).await;
    assert_eq!(stale["reason"], "stale_update", "{stale}");

    let placed = sale(&app, "9071").await;
    assert_eq!(placed["match"]["booking_id"], booking, "{placed}");
    assert_eq!(placed["match"]["time_basis"], "placed");
    let view = app.booking_view(booking).await;
    assert_eq!(view["status"], "seated");
    assert_eq!(sale_ids(&view), ["9071"]);
    // The walk-in booking made for the tab meanwhile gave it up.
    let stand_in = first["match"]["booking_id"]
        .as_i64()
        .expect("a walk-in took the tab");
    assert_eq!(app.booking_view(stand_in).await["status"], "cancelled");
}

async fn a_check_reopened_for_a_tip_does_not_bring_its_party_back_to_the_table(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let first = booked(&app, venue, "2026-03-06T18:15:00Z", 105, "5").await;
    let next = booked(&app, venue, "2026-03-06T20:00:00Z", 105, "5").await;

    let paid = Check::open("9081", "2026-03-06T18:20:00Z", &["5"]);
    send(&app, &paid.close("2026-03-06T20:11:00Z")).await;
    send(&app, &Check::open("9082", "2026-03-06T20:16:00Z", &["5"])).await;
    // The first party's check is reopened to add a tip, and closed again.
    send(&app, &paid.update("2026-03-06T20:26:00Z", &["5"])).await;
    send(&app, &paid.close("2026-03-06T20:27:00Z")).await;
    // The next party's second check (one per guest), opened at 20:17, arrives now.
    send(&app, &Check::open("9083", "2026-03-06T20:17:00Z", &["5"])).await;

    let mut ids = sale_ids(&app.booking_view(next).await);
    ids.sort();
    assert_eq!(ids, ["9082", "9083"]);
    assert_eq!(sale_ids(&app.booking_view(first).await), ["9081"]);
}

async fn a_late_first_close_gives_back_a_check_given_while_the_party_seemed_to_stay(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let first = booked(&app, venue, "2026-03-06T18:00:00Z", 105, "8").await;

    let paid = Check::open("9091", "2026-03-06T18:05:00Z", &["8"]);
    send(&app, &paid).await;
    // Paid at 20:08, but that CLOSE is stuck in the POS's queue; a walk-in sits down at
    // 20:14; the check is reopened for a tip at 20:15 and closed at 20:16.
    send(&app, &Check::open("9092", "2026-03-06T20:14:00Z", &["8"])).await;
    send(&app, &paid.update("2026-03-06T20:15:00Z", &["8"])).await;
    send(&app, &paid.close("2026-03-06T20:16:00Z")).await;
    let stale = post_any(&app, &paid.close("2026-03-06T20:08:00Z").body()).await;
    assert_eq!(stale["reason"], "stale_update", "{stale}");

    assert_eq!(sale_ids(&app.booking_view(first).await), ["9091"]);
    assert_ne!(
        sale(&app, "9092").await["match"]["booking_id"],
        json!(first)
    );
}

async fn a_snapshot_stamped_far_in_the_future_does_not_freeze_the_check(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let booking = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "5").await;
    let check = Check::open("9095", "2026-03-06T19:05:00Z", &["5"]);
    send(&app, &check).await;
    let future = post_any(&app, &check.update("2190-01-01T00:00:00Z", &["5"]).body()).await;
    assert_eq!(future["reason"], "invalid_payload", "{future}");
    send(&app, &check.close("2026-03-06T20:30:00Z")).await;
    assert_eq!(sale(&app, "9095").await["state"], "closed");
    assert_eq!(app.booking_view(booking).await["status"], "paid");
}

async fn a_check_reopened_days_later_does_not_seat_its_party_again(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let friday = booked(&app, venue, "2026-03-06T19:00:00Z", 105, "9").await;
    let check = Check::open("9096", "2026-03-06T19:05:00Z", &["9"]);
    send(&app, &check.close("2026-03-06T20:40:00Z")).await;
    assert_eq!(app.booking_view(friday).await["status"], "paid");
    // Monday: reopened in the office to correct the tip, and left open.
    send(&app, &check.update("2026-03-09T12:10:00Z", &["9"])).await;
    let view = app.booking_view(friday).await;
    assert_eq!(view["status"], "paid", "{view}");
    assert_eq!(sale_ids(&view), ["9096"]);
}

async fn a_refund_whose_origin_never_came_sits_in_the_inbox_not_on_the_table(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let booking = booked(&app, venue, "2026-03-06T19:00:00Z", 105, "4").await;
    // A refund at table 4 of a check from before the integration went live.
    let mut refund =
        Check::open("9097", "2026-03-06T19:10:00Z", &["4"]).close("2026-03-06T19:10:00Z");
    refund.total = "-15.00";
    let mut body = refund.body();
    body["account"]["type"] = json!("REFUND");
    body["account"]["originAccountId"] = json!("555000111");
    post(&app, &body).await;
    assert_eq!(
        sale(&app, "9097").await["match"]["booking_id"],
        serde_json::Value::Null
    );
    // The party's own check is theirs.
    let mut own = Check::open("9098", "2026-03-06T19:15:00Z", &["4"]);
    own.total = "95.00";
    send(&app, &own.close("2026-03-06T20:30:00Z")).await;
    let view = app.booking_view(booking).await;
    assert_eq!(sale_ids(&view), ["9098"], "{view}");
    assert_eq!(view["spend"]["total"], "95.00");
}

/// The start of the one booking on 2014-03-06 (Checkfront's sample booking's day).
async fn sample_booking_start(app: &crate::helpers::TestApp, venue: i64) -> serde_json::Value {
    let diary = app
        .admin_get(&format!("/venues/{venue}/diary?date=2014-03-06"))
        .await;
    diary["bookings"][0]["start"].clone()
}

async fn a_replay_never_applies_a_copy_recorded_as_a_duplicate(db: Db) {
    let app = crate::helpers::spawn_with(db, crate::helpers::CHECKFRONT_PARTNER).await;
    let venue = app
        .venue_with_location("checkfront", "your-company.checkfront.com", true)
        .await;
    let first = crate::helpers::fixture_in("checkfront", "booking.json");
    // The guest moves the booking two hours later; then Checkfront re-sends the first
    // snapshot (Booking Modified and Booking Status Change both fire).
    let moved = String::from_utf8_lossy(&first)
        .replace("1394128800", "1394136000")
        .into_bytes();
    for (body, expected) in [
        (first.clone(), "processed"),
        (moved, "processed"),
        (first, "ignored"),
    ] {
        let (status, answer) = app.post_checkfront(body, "application/json").await;
        assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
        assert_eq!(answer["outcome"], expected, "{answer}");
    }
    let live = sample_booking_start(&app, venue).await;
    assert_eq!(live, "2014-03-06T20:00:00Z");
    let (status, summary) = app
        .admin_post("/events/replay", json!({ "partner": "checkfront" }))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{summary}");
    assert_eq!(summary["duplicates"], 1, "{summary}");
    assert_eq!(
        sample_booking_start(&app, venue).await,
        live,
        "the diary is the same"
    );
}

crate::on_both_stores!(
    a_replay_never_applies_a_copy_recorded_as_a_duplicate,
    a_check_reopened_days_later_does_not_seat_its_party_again,
    a_refund_whose_origin_never_came_sits_in_the_inbox_not_on_the_table,
    a_snapshot_stamped_far_in_the_future_does_not_freeze_the_check,
    a_check_reopened_for_a_tip_does_not_bring_its_party_back_to_the_table,
    a_late_first_close_gives_back_a_check_given_while_the_party_seemed_to_stay,
    a_late_close_gives_back_the_check_the_next_party_opened,
    a_late_first_snapshot_still_says_which_table_the_check_was_opened_on,
    a_late_first_snapshot_at_the_bar_makes_the_tab_judged_by_when_it_reached_the_table,
);
