//! A booking giving up its sales: a POS no-show or cancellation of a booking held only by
//! table and time (refused while a sale carries its reference), and an operator moving a
//! check. Its splits and refunds always go where their check goes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::helpers::{Db, TestApp, spawn};

/// A venue on the POS reservation seed's location, walk-ins on.
async fn pos_venue(app: &TestApp) -> i64 {
    let venue = app
        .venue_with_location("lightspeed", SAMPLE_LOCATION, true)
        .await;
    let (status, _) = app
        .admin_patch(&format!("/venues/{venue}"), json!({ "walk_ins": true }))
        .await;
    assert_eq!(status, StatusCode::OK);
    venue
}

/// A split (`SPLIT`) or refund (`REFUND`) account of `origin`.
fn child_of(origin: &str, id: &str, kind: &str, at: &str, total: &str) -> Value {
    let mut child = Check::open(id, at, &[]).close(at);
    child.total = total;
    let mut body = child.body();
    body["account"]["type"] = json!(kind);
    body["account"]["originAccountId"] = json!(origin);
    body
}

fn rule_of(sale: &Value) -> &str {
    sale["match"]["rule"].as_str().unwrap_or("unmatched")
}

async fn a_pos_cancellation_is_refused_while_a_sale_carries_the_reference(db: Db) {
    let app = spawn(db).await;
    let venue = pos_venue(&app).await;
    let booking = app
        .booking(venue, json!({ "reference": "RES-88", "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["12"] }))
        .await;
    let mut own = at_pos(Check::open("9801", "2026-03-06T19:05:00Z", &["12"]).body());
    own["platformReservationId"] = json!("RES-88");
    post(&app, &own).await;
    for status in ["CANCELLED", "NO_SHOW"] {
        post(&app, &pos_status("RES-88", status)).await;
        let view = app.booking_view(booking).await;
        assert_eq!(view["status"], "seated", "{status}: {view}");
        assert_eq!(sale_ids(&view), ["9801"]);
    }
}

async fn a_pos_no_show_releases_a_walk_ins_check_with_its_split_and_refund(db: Db) {
    let app = spawn(db).await;
    let venue = pos_venue(&app).await;
    let absent = app
        .booking(venue, json!({ "reference": "NS-1", "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["12"] }))
        .await;
    post(
        &app,
        &at_pos(Check::open("9811", "2026-03-06T19:20:00Z", &["12"]).body()),
    )
    .await;
    post(
        &app,
        &at_pos(child_of(
            "9811",
            "9812",
            "SPLIT",
            "2026-03-06T20:00:00Z",
            "30.00",
        )),
    )
    .await;
    post(
        &app,
        &at_pos(child_of(
            "9811",
            "9813",
            "REFUND",
            "2026-03-07T12:00:00Z",
            "-5.00",
        )),
    )
    .await;
    assert_eq!(sale_ids(&app.booking_view(absent).await).len(), 3);

    post(&app, &pos_status("NS-1", "NO_SHOW")).await;
    let view = app.booking_view(absent).await;
    assert_eq!(view["status"], "no_show", "{view}");
    assert!(sale_ids(&view).is_empty(), "{view}");
    let walk_in = sale(&app, "9811").await["match"]["booking_id"].clone();
    assert!(walk_in.is_i64(), "a walk-in took the check");
    for child in ["9812", "9813"] {
        let followed = sale(&app, child).await;
        assert_eq!(followed["match"]["booking_id"], walk_in, "{followed}");
        assert_eq!(rule_of(&followed), "lineage");
    }

    // The same with a cancellation.
    let cancelled = app
        .booking(venue, json!({ "reference": "RM-3", "start": "2026-03-06T21:00:00Z", "covers": 2, "tables": ["13"] }))
        .await;
    post(
        &app,
        &at_pos(Check::open("9821", "2026-03-06T21:05:00Z", &["13"]).body()),
    )
    .await;
    post(
        &app,
        &at_pos(child_of(
            "9821",
            "9822",
            "SPLIT",
            "2026-03-06T21:50:00Z",
            "20.00",
        )),
    )
    .await;
    post(&app, &pos_status("RM-3", "CANCELLED")).await;
    let view = app.booking_view(cancelled).await;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert!(
        sale_ids(&view).is_empty(),
        "no live sale on a cancelled booking: {view}"
    );
}

async fn splits_and_refunds_follow_their_check_when_an_operator_moves_it(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let wrong = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "8").await;
    let right = booked(&app, venue, "2026-03-06T19:00:00Z", 120, "80").await;
    let mut check = Check::open("9831", "2026-03-06T19:05:00Z", &["8"]);
    check.total = "100.00";
    send(&app, &check).await;
    post(
        &app,
        &child_of("9831", "9832", "SPLIT", "2026-03-06T20:30:00Z", "40.00"),
    )
    .await;
    post(
        &app,
        &child_of("9831", "9833", "REFUND", "2026-03-07T12:00:00Z", "-10.00"),
    )
    .await;
    assert_eq!(sale_ids(&app.booking_view(wrong).await).len(), 3);

    let id = sale(&app, "9831").await["id"].as_i64().expect("sale id");
    let (status, _) = app
        .admin_post(
            &format!("/sales/{id}/match"),
            json!({ "booking_id": right }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let moved = app.booking_view(right).await;
    let mut ids = sale_ids(&moved);
    ids.sort();
    assert_eq!(ids, ["9831", "9832", "9833"], "{moved}");
    assert_eq!(moved["spend"]["refunds"], "10.00");
    let left = app.booking_view(wrong).await;
    assert!(sale_ids(&left).is_empty(), "{left}");
    assert_eq!(left["status"], "confirmed");

    // Unmatched by the operator: its lineage leaves with it, to the inbox.
    let (status, _) = app
        .admin_post(&format!("/sales/{id}/unmatch"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let emptied = app.booking_view(right).await;
    assert!(sale_ids(&emptied).is_empty(), "{emptied}");
    assert_eq!(emptied["status"], "confirmed");
    for child in ["9832", "9833"] {
        assert_eq!(sale(&app, child).await["match"]["booking_id"], Value::Null);
    }
    // A replay changes nothing: the diary does not depend on it.
    let (status, _) = app
        .admin_post("/events/replay", json!({ "partner": "lightspeed" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(sale_ids(&app.booking_view(right).await).is_empty());
    assert!(sale_ids(&app.booking_view(wrong).await).is_empty());
}

async fn a_no_show_whose_reference_turns_up_on_a_check_came_late(db: Db) {
    let app = spawn(db).await;
    let venue = pos_venue(&app).await;
    let late = app
        .booking(venue, json!({ "reference": "NS-2", "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["13"] }))
        .await;
    post(&app, &pos_status("NS-2", "NO_SHOW")).await;
    assert_eq!(app.booking_view(late).await["status"], "no_show");

    let mut arrived = at_pos(Check::open("9841", "2026-03-06T19:50:00Z", &["13"]).body());
    arrived["platformReservationId"] = json!("NS-2");
    post(&app, &arrived).await;
    let view = app.booking_view(late).await;
    assert_eq!(view["status"], "seated", "{view}");
    let last = view["transitions"]
        .as_array()
        .and_then(|t| t.last())
        .cloned()
        .unwrap_or_default();
    assert!(
        last["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("came late"),
        "{last}"
    );
    // Voided after all: back to the no-show it was.
    arrived["notificationType"] = json!("CANCEL");
    arrived["account"]["updateDate"] = json!(ms("2026-03-06T19:55:00Z"));
    post(&app, &arrived).await;
    assert_eq!(app.booking_view(late).await["status"], "no_show");
}

async fn an_operator_placing_a_bar_tab_never_pulls_in_the_next_party_and_replay_agrees(db: Db) {
    let app = spawn(db).await;
    let venue = floor(&app).await;
    let booking = booked(&app, venue, "2026-03-06T18:00:00Z", 105, "1").await;
    let mut table = Check::open("9851", "2026-03-06T18:05:00Z", &["1"]);
    table.total = "80.00";
    send(&app, &table.close("2026-03-06T19:30:00Z")).await;
    // The party moves to the bar; a walk-in sits at table 1.
    let mut tab = Check::open("9852", "2026-03-06T19:35:00Z", &[]);
    tab.total = "30.00";
    send(&app, &tab).await;
    send(&app, &Check::open("9853", "2026-03-06T19:50:00Z", &["1"])).await;
    let id = sale(&app, "9852").await["id"].as_i64().expect("sale id");
    let (status, _) = app
        .admin_post(
            &format!("/sales/{id}/match"),
            json!({ "booking_id": booking }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    send(&app, &tab.close("2026-03-06T22:00:00Z")).await;

    let check_diary = |view: Value| {
        let mut ids = sale_ids(&view);
        ids.sort();
        assert_eq!(ids, ["9851", "9852"], "{view}");
        assert_eq!(view["status"], "paid");
        assert_eq!(view["spend"]["total"], "110.00");
    };
    check_diary(app.booking_view(booking).await);
    assert_ne!(
        sale(&app, "9853").await["match"]["booking_id"],
        json!(booking)
    );
    let (status, _) = app
        .admin_post("/events/replay", json!({ "partner": "lightspeed" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    check_diary(app.booking_view(booking).await);
    assert_ne!(
        sale(&app, "9853").await["match"]["booking_id"],
        json!(booking)
    );
}

async fn a_pos_status_answer_says_where_the_booking_ended_up(db: Db) {
    let app = spawn(db).await;
    let venue = pos_venue(&app).await;
    let booking = app
        .booking(venue, json!({ "reference": "PD-1", "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["1"] }))
        .await;
    post(
        &app,
        &at_pos(Check::open("9861", "2026-03-06T19:05:00Z", &["1"]).body()),
    )
    .await;
    // The POS says PAID while the check is still open: the open check keeps the party
    // seated, and the answer says so.
    let answer = post(&app, &pos_status("PD-1", "PAID")).await;
    assert_eq!(app.booking_view(booking).await["status"], "seated");
    let detail = answer["detail"].as_str().unwrap_or_default();
    assert!(detail.ends_with("then seated by its sales"), "{detail}");
}

crate::on_both_stores!(
    a_pos_status_answer_says_where_the_booking_ended_up,
    an_operator_placing_a_bar_tab_never_pulls_in_the_next_party_and_replay_agrees,
    a_no_show_whose_reference_turns_up_on_a_check_came_late,
    a_pos_cancellation_is_refused_while_a_sale_carries_the_reference,
    a_pos_no_show_releases_a_walk_ins_check_with_its_split_and_refund,
    splits_and_refunds_follow_their_check_when_an_operator_moves_it,
);
