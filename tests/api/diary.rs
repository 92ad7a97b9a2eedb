//! The diary and the matching engine through HTTP: self-healing, manual decisions, the
//! booking state machine, spend, guests, walk-ins and local days.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Db, SPLIT_LOCATION, TestApp, fixture, json_of, spawn, split_venue_booking};

const R224_LOCATION: &str = "41910290874370";
const LEGACY_LOCATION: &str = "40570261078018";
const SAMPLE_LOCATION: &str = "9765040300495493";
const SPLIT_ORIGINAL: &str = "2190678134095876";

async fn post_ok(app: &TestApp, body: &Value) -> Value {
    let response = app.post_lightspeed(body.to_string().as_bytes()).await;
    assert_eq!(response.status(), StatusCode::OK);
    json_of(response).await
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).expect("fixture is JSON")
}

async fn a_sale_that_arrived_before_its_booking_finds_it(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", R224_LOCATION, true)
        .await;
    assert_eq!(
        app.deliver_ok("open_regular_tax_inclusive.json").await["detail"],
        "unmatched"
    );
    let id = app
        .booking(
            venue,
            json!({ "reference": "224", "start": "2024-04-04T15:30:00Z", "covers": 4 }),
        )
        .await;
    let healed = app.booking_view(id).await;
    assert_eq!(healed["sales"][0]["match"]["rule"], "booking_reference");
    assert_eq!(
        healed["status"], "seated",
        "the late booking catches up with its open sale"
    );
    assert_eq!(
        healed["transitions"][0]["cause"],
        format!("booking {id} created")
    );

    // By table and time too.
    let split_venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    app.deliver_ok("open_split_check_original.json").await;
    let id = app.booking(split_venue, split_venue_booking()).await;
    assert_eq!(
        app.booking_view(id).await["sales"][0]["match"]["rule"],
        "table_time"
    );
}

async fn a_manual_match_is_never_overridden(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    let by_table = app.booking(venue, split_venue_booking()).await;
    let chosen = app
        .booking(
            venue,
            json!({ "start": "2025-12-29T18:00:00Z", "covers": 2, "tables": ["4"] }),
        )
        .await;
    app.deliver_ok("open_split_check_original.json").await;
    let sale_id = app.booking_view(by_table).await["sales"][0]["id"]
        .as_i64()
        .expect("sale id");

    let (status, sale) = app
        .admin_post(
            &format!("/sales/{sale_id}/match"),
            json!({ "booking_id": chosen }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sale}");
    assert_eq!(sale["match"]["rule"], "manual");
    app.deliver_ok("split_original_update.json").await;
    let kept = &app.sales_with_external_id(SPLIT_ORIGINAL).await[0];
    assert_eq!(
        (
            kept["match"]["rule"].as_str(),
            kept["match"]["booking_id"].as_i64()
        ),
        (Some("manual"), Some(chosen))
    );
    assert_eq!(app.booking_view(chosen).await["status"], "seated");
    let (status, _) = app
        .admin_patch(&format!("/bookings/{by_table}"), json!({ "covers": 3 }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.sales_with_external_id(SPLIT_ORIGINAL).await[0]["match"]["booking_id"],
        chosen,
        "re-matching leaves it alone"
    );

    let (status, sale) = app
        .admin_post(&format!("/sales/{sale_id}/unmatch"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sale["match"]["booking_id"], Value::Null);
    app.deliver_ok("split_original_close.json").await;
    assert_eq!(
        app.sales_with_external_id(SPLIT_ORIGINAL).await[0]["match"]["booking_id"],
        Value::Null,
        "an unmatch sticks too"
    );

    let other_venue = app
        .venue_with_location("lightspeed", "elsewhere", true)
        .await;
    let foreign = app
        .booking(other_venue, json!({ "start": "2025-12-29T12:00:00Z" }))
        .await;
    let (status, _) = app
        .admin_post(
            &format!("/sales/{sale_id}/match"),
            json!({ "booking_id": foreign }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a sale cannot join another venue's booking"
    );
}

async fn a_manually_unmatched_split_is_not_adopted_by_its_origin(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    let id = app.booking(venue, split_venue_booking()).await;
    app.deliver_ok("split_child_open.json").await;
    let child = app.sales_with_external_id("2190678134095890").await[0]["id"]
        .as_i64()
        .expect("sale id");
    let (status, _) = app
        .admin_post(&format!("/sales/{child}/unmatch"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    app.deliver_ok("open_split_check_original.json").await;
    let sales = app.booking_view(id).await["sales"].clone();
    let on_booking: Vec<&str> = sales
        .as_array()
        .expect("sales")
        .iter()
        .filter_map(|s| s["external_id"].as_str())
        .collect();
    assert_eq!(
        on_booking,
        vec![SPLIT_ORIGINAL],
        "the operator's unmatch holds against lineage"
    );
}

async fn moving_or_cancelling_a_booking_releases_its_table_sales(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    let id = app.booking(venue, split_venue_booking()).await;
    app.deliver_ok("open_split_check_original.json").await;
    assert_eq!(
        app.booking_view(id).await["sales"].as_array().map(Vec::len),
        Some(1)
    );

    let (status, moved) = app
        .admin_patch(
            &format!("/bookings/{id}"),
            json!({ "start": "2025-12-29T19:00:00Z" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        moved["sales"],
        json!([]),
        "the lunch sale no longer fits an evening booking"
    );
    app.admin_patch(
        &format!("/bookings/{id}"),
        json!({ "start": "2025-12-29T11:45:00Z" }),
    )
    .await;
    assert_eq!(
        app.booking_view(id).await["sales"].as_array().map(Vec::len),
        Some(1),
        "and finds it again"
    );

    let (status, cancelled) = app
        .admin_post(&format!("/bookings/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        cancelled["sales"],
        json!([]),
        "a cancelled booking never holds sales by table"
    );
    let last = cancelled["transitions"]
        .as_array()
        .and_then(|t| t.last())
        .cloned()
        .expect("transition");
    assert_eq!(last["cause"], "manual");
}

async fn pos_reservation_updates_move_the_booking_forwards_only(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SAMPLE_LOCATION, true)
        .await;
    let id = app
        .booking(venue, json!({ "reference": "Reservation-123", "start": "2026-01-10T19:00:00Z", "covers": 4, "tables": ["1"] }))
        .await;
    let seated = fixture_json("pos_reservation_seated.json");
    let answer = post_ok(&app, &seated).await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
    let after = app.booking_view(id).await;
    assert_eq!(after["status"], "seated");
    assert_eq!(after["partner_status"], "SEATED");
    assert_eq!(after["tables"], json!(["1A", "2B"]));
    assert_eq!(after["covers"], 42);
    assert_eq!(
        after["transitions"][0]["cause"],
        "lightspeed reported SEATED"
    );
    assert_eq!(after["transitions"][0]["event_id"], answer["event_id"]);

    let mut arrived = seated.clone();
    arrived["status"] = json!("ARRIVED");
    post_ok(&app, &arrived).await;
    assert_eq!(
        app.booking_view(id).await["status"],
        "seated",
        "a late ARRIVED never moves it back"
    );
    let mut departed = seated.clone();
    departed["status"] = json!("DEPARTED");
    post_ok(&app, &departed).await;
    assert_eq!(app.booking_view(id).await["status"], "completed");
    let mut no_show = seated.clone();
    no_show["status"] = json!("NO_SHOW");
    post_ok(&app, &no_show).await;
    assert_eq!(
        app.booking_view(id).await["status"],
        "completed",
        "completed is terminal"
    );

    let mut unknown = seated;
    unknown["platformReservationId"] = json!("nobody");
    assert_eq!(post_ok(&app, &unknown).await["reason"], "unknown_booking");
}

async fn integration_notifications_switch_the_venue_on_and_off(db: Db) {
    let app = spawn(db).await;
    app.venue_with_location("lightspeed", SAMPLE_LOCATION, true)
        .await;
    let activated = fixture_json("integration_activated.json");
    let mut deactivated = activated.clone();
    deactivated["notificationType"] = json!("DEACTIVATED");
    let mut order = fixture_json("open_regular_tax_inclusive.json");
    order["businessLocationId"] = json!(9765040300495493u64);

    assert_eq!(post_ok(&app, &deactivated).await["outcome"], "processed");
    assert_eq!(
        post_ok(&app, &order).await["reason"],
        "integration_disabled"
    );
    assert_eq!(
        post_ok(&app, &activated).await["outcome"],
        "processed",
        "switching on works while off"
    );
    assert_eq!(post_ok(&app, &order).await["outcome"], "processed");
}

async fn a_refund_of_a_matched_sale_reduces_the_bookings_spend(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", LEGACY_LOCATION, true)
        .await;
    let id = app
        .booking(
            venue,
            json!({ "start": "2021-12-02T19:15:00Z", "covers": 2, "tables": ["Table 2"] }),
        )
        .await;
    // The legacy transfer's origin check, at the same table: 25.00 paid.
    let mut origin = fixture_json("legacy_rtn_close_transitory.json");
    let account = &mut origin["account"];
    account["id"] = json!(379610684457338u64);
    account["type"] = json!("SALE");
    account["originAccountId"] = Value::Null;
    for field in ["paidAmount", "totalAmount"] {
        account[field] = json!(25);
    }
    account["taxAmount"] = json!(4.1667);
    account["preTaxAmount"] = json!(20.8333);
    account["coverCount"] = json!(2);
    account["updateDate"] = json!(1638473550000u64);
    assert!(
        post_ok(&app, &origin).await["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("table_time")
    );
    app.deliver_ok("legacy_rtn_close_transitory.json").await;
    let booking = app.booking_view(id).await;
    let rules: Vec<&str> = booking["sales"]
        .as_array()
        .expect("sales")
        .iter()
        .filter_map(|s| s["match"]["rule"].as_str())
        .collect();
    assert_eq!(rules, vec!["table_time", "lineage"]);
    assert_eq!(
        booking["spend"]["total"], "15.00",
        "25.00 less the 10.00 taken back"
    );
    assert_eq!(booking["spend"]["per_cover"], "7.50");
}

async fn guests_are_deduplicated_and_their_lifetime_spend_follows_their_sales(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", R224_LOCATION, true)
        .await;
    let first = app
        .booking(
            venue,
            json!({ "reference": "224", "start": "2024-04-04T15:30:00Z", "covers": 4,
                    "customer": { "name": "John Purple", "email": "john.purple@example.com", "phone": "+44 20 7946 0018" } }),
        )
        .await;
    let second = app
        .booking(
            venue,
            json!({ "reference": "225", "start": "2024-05-04T15:30:00Z", "covers": 2,
                    "customer": { "name": "J. Purple", "email": "John.Purple@EXAMPLE.com" } }),
        )
        .await;
    let third = app
        .booking(venue, json!({ "reference": "226", "start": "2024-06-04T15:30:00Z", "customer": { "phone": "0044 20 7946 0018" } }))
        .await;
    let guest_id = app.booking_view(first).await["guest_id"]
        .as_i64()
        .expect("guest");
    assert_eq!(
        app.booking_view(second).await["guest_id"],
        guest_id,
        "same e-mail, other case"
    );
    assert_ne!(
        app.booking_view(third).await["guest_id"],
        guest_id,
        "0044... is not +44...: no guess"
    );
    for fixture in ["open_regular_tax_inclusive.json", "r224_close.json"] {
        app.deliver_ok(fixture).await;
    }
    let guest = app.admin_get(&format!("/guests/{guest_id}")).await;
    assert_eq!(guest["visits"], 1, "the second booking has not come yet");
    assert_eq!(guest["lifetime_spend"], "63.20");
    assert_eq!(guest["spend_per_visit"], "63.20");
    assert_eq!(guest["bookings"], json!([first, second]));
}

async fn a_walk_in_gets_a_booking_when_the_venue_wants_it(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    let (status, settings) = app
        .admin_patch(&format!("/venues/{venue}"), json!({ "walk_ins": true }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["walk_ins"], true);
    let answer = app.deliver_ok("open_split_check_original.json").await;
    assert_eq!(
        answer["detail"],
        "matched by table_time: walk-in booking created for table 10"
    );
    let diary = app
        .admin_get(&format!("/venues/{venue}/diary?date=2025-12-29"))
        .await;
    let walk_in = &diary["bookings"][0];
    assert_eq!(walk_in["source"], "walk_in");
    assert_eq!(walk_in["status"], "seated");
    assert_eq!(walk_in["tables"], json!(["10"]));
    assert_eq!(walk_in["covers"], 2);
    assert_eq!(diary["totals"]["spend"], "50.71");
}

async fn venue_table_aliases_link_pos_names_to_diary_tables(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    let (status, _) = app
        .admin_patch(
            &format!("/venues/{venue}"),
            json!({ "table_aliases": { "Patio 3": "P3" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = app
        .booking(
            venue,
            json!({ "start": "2025-12-29T11:45:00Z", "covers": 2, "tables": ["p3"] }),
        )
        .await;
    let mut order = fixture_json("open_split_check_original.json");
    order["account"]["tables"] = json!(["Patio 3"]);
    let answer = post_ok(&app, &order).await;
    assert_eq!(
        answer["detail"],
        "matched by table_time: table P3, opened 8 min after the booking's start"
    );
    assert_eq!(
        app.booking_view(id).await["sales"].as_array().map(Vec::len),
        Some(1)
    );
}

async fn venue_tolerances_decide_how_far_from_a_booking_a_sale_may_open(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    // The order opens at 11:53; the booking starts at 12:00.
    let (status, _) = app
        .admin_patch(
            &format!("/venues/{venue}"),
            json!({ "tolerances": { "before_start_minutes": 5, "after_end_minutes": 60 } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = app
        .booking(
            venue,
            json!({ "start": "2025-12-29T12:00:00Z", "tables": ["10"] }),
        )
        .await;
    assert_eq!(
        app.deliver_ok("open_split_check_original.json").await["detail"],
        "unmatched"
    );
    let (_, widened) = app
        .admin_patch(
            &format!("/venues/{venue}"),
            json!({ "tolerances": { "before_start_minutes": 10, "after_end_minutes": 60 } }),
        )
        .await;
    assert_eq!(widened["tolerances"]["before_start_minutes"], 10);
    app.admin_patch(&format!("/bookings/{id}"), json!({ "covers": 2 }))
        .await;
    let matched = app.booking_view(id).await;
    assert_eq!(
        matched["sales"][0]["match"]["reason"],
        "table 10, opened 6 min before the booking's start"
    );
}

async fn the_diary_shows_a_local_day_in_the_venues_time_zone(db: Db) {
    let app = spawn(db).await;
    let (status, venue) = app
        .admin_post(
            "/venues",
            json!({ "name": "Corner", "timezone": "America/New_York", "currency": "USD",
                    "locations": [{ "partner": "lightspeed", "location_id": SPLIT_LOCATION }] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let venue = venue["id"].as_i64().expect("venue");
    // 23:30 in New York on 14 March is 03:30 UTC on the 15th.
    let late = app
        .booking(
            venue,
            json!({ "reference": "late", "start": "2026-03-14T23:30:00-04:00", "covers": 2 }),
        )
        .await;
    let day = app
        .admin_get(&format!("/venues/{venue}/diary?date=2026-03-14"))
        .await;
    let ids: Vec<i64> = day["bookings"]
        .as_array()
        .expect("bookings")
        .iter()
        .filter_map(|b| b["id"].as_i64())
        .collect();
    assert_eq!(ids, vec![late]);
    assert_eq!(day["from"], "2026-03-14T04:00:00Z");
    assert_eq!(day["totals"]["covers"], 2);
    let next = app
        .admin_get(&format!("/venues/{venue}/diary?date=2026-03-15"))
        .await;
    assert_eq!(next["bookings"], json!([]));

    let response = app
        .client
        .get(format!(
            "{}/api/v1/venues/{venue}/diary?date=14-03-2026",
            app.base
        ))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

async fn the_diary_day_sums_spend_and_counts_unmatched_sales(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    app.booking(venue, split_venue_booking()).await;
    for fixture in [
        "open_split_check_original.json",
        "split_original_update.json",
        "split_child_open.json",
    ] {
        app.deliver_ok(fixture).await;
    }
    let mut stray = fixture_json("open_split_check_original.json");
    stray["account"]["id"] = json!("777");
    stray["account"]["tables"] = json!(["40"]);
    stray["account"]["updateDate"] = json!(1767013602149u64);
    post_ok(&app, &stray).await;
    let day = app
        .admin_get(&format!("/venues/{venue}/diary?date=2025-12-29"))
        .await;
    assert_eq!(day["totals"]["bookings"], 1);
    assert_eq!(day["totals"]["spend"], "50.71");
    assert_eq!(day["totals"]["spend_per_cover"], "25.36");
    assert_eq!(day["totals"]["unmatched_sales"], 1);
    let unmatched = app
        .admin_get(&format!("/venues/{venue}/sales?unmatched=true"))
        .await;
    let ids: Vec<&str> = unmatched
        .as_array()
        .expect("sales")
        .iter()
        .filter_map(|s| s["external_id"].as_str())
        .collect();
    assert_eq!(ids, vec!["777"]);
}

crate::on_both_stores!(
    a_sale_that_arrived_before_its_booking_finds_it,
    a_manual_match_is_never_overridden,
    a_manually_unmatched_split_is_not_adopted_by_its_origin,
    moving_or_cancelling_a_booking_releases_its_table_sales,
    pos_reservation_updates_move_the_booking_forwards_only,
    integration_notifications_switch_the_venue_on_and_off,
    a_refund_of_a_matched_sale_reduces_the_bookings_spend,
    guests_are_deduplicated_and_their_lifetime_spend_follows_their_sales,
    a_walk_in_gets_a_booking_when_the_venue_wants_it,
    venue_table_aliases_link_pos_names_to_diary_tables,
    venue_tolerances_decide_how_far_from_a_booking_a_sale_may_open,
    the_diary_shows_a_local_day_in_the_venues_time_zone,
    the_diary_day_sums_spend_and_counts_unmatched_sales,
);
