//! Lightspeed K-Series order notifications (seed 001 and fixtures derived from it) through
//! HTTP into bookings, sales and events.

use serde_json::{Value, json};

use crate::helpers::{Db, SPLIT_LOCATION, TestApp, fixture, json_of, spawn};

const R224_LOCATION: &str = "41910290874370";
const DEPOSIT_LOCATION: &str = "40570261078018";
const CAD_LOCATION: &str = "141948669132802";
const R224_SALE: &str = "1560383093473282";
const SPLIT_ORIGINAL: &str = "2190678134095876";
const SPLIT_CHILD: &str = "2190678134095890";

/// The reservation that seed 001's regular tax-inclusive OPEN belongs to.
async fn booking_224(app: &TestApp, status: &str) -> i64 {
    let venue = app
        .venue_with_location("lightspeed", R224_LOCATION, true)
        .await;
    app.booking(
        venue,
        json!({
            "reference": "224", "start": "2024-04-04T15:30:00Z", "duration_minutes": 120,
            "covers": 4, "tables": ["Table 1"], "status": status,
            "customer": { "name": "John Purple", "email": "john.purple@example.com" },
        }),
    )
    .await
}

/// A booking without a reference at table 10 around the split-check order's open time.
async fn booking_at_table_10(app: &TestApp) -> i64 {
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    app.booking(
        venue,
        json!({ "start": "2025-12-29T11:45:00Z", "duration_minutes": 90, "covers": 3, "tables": ["10"] }),
    )
    .await
}

async fn every_seed_order_notification_lands_on_its_reservation(db: Db) {
    let app = spawn(db).await;
    let r224 = booking_224(&app, "confirmed").await;
    let deposit_venue = app
        .venue_with_location("lightspeed", DEPOSIT_LOCATION, true)
        .await;
    let r342 = app
        .booking(deposit_venue, json!({ "reference": "342", "start": "2024-09-18T19:00:00Z", "covers": 2, "tables": ["8"] }))
        .await;
    let cad_venue = app
        .venue_with_location("lightspeed", CAD_LOCATION, true)
        .await;
    let r438 = app
        .booking(cad_venue, json!({ "reference": "438", "start": "2024-09-18T20:00:00Z", "covers": 2, "tables": ["1"] }))
        .await;
    let r94 = app
        .booking(cad_venue, json!({ "reference": "94", "start": "2024-09-18T19:30:00Z", "covers": 2, "tables": ["1"] }))
        .await;

    for (fixture, booking_id) in [
        ("open_regular_tax_inclusive.json", r224),
        ("open_deposit_tax_inclusive.json", r342),
        ("open_regular_tax_exclusive.json", r438),
        ("open_deposit_tax_exclusive.json", r94),
    ] {
        let answer = app.deliver_ok(fixture).await;
        assert_eq!(answer["outcome"], "processed", "{fixture}");
        let booking = app.booking_view(booking_id).await;
        assert_eq!(booking["status"], "seated", "{fixture}");
        assert_eq!(
            booking["sales"].as_array().map(Vec::len),
            Some(1),
            "{fixture}"
        );
        let sale = &booking["sales"][0];
        assert_eq!(sale["state"], "open");
        assert_eq!(sale["match"]["rule"], "booking_reference", "{fixture}");
        assert_eq!(sale["last_event_id"], answer["event_id"]);
    }
    // The two CAD reservations share table 1 but each sale found its own by reference.
    assert_eq!(
        app.booking_view(r94).await["sales"][0]["external_id"],
        "1717819414675459"
    );

    // The split-check example is a walk-in order without a reservation: stored, unmatched.
    let split_venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    app.deliver_ok("open_split_check_original.json").await;
    let unmatched = app
        .admin_get(&format!("/sales?venue={split_venue}&unmatched=true"))
        .await;
    assert_eq!(unmatched[0]["external_id"], SPLIT_ORIGINAL);
    assert_eq!(unmatched[0]["total"], "50.71");
    assert_eq!(unmatched[0]["match"]["rule"], Value::Null);

    // The legacy RTN transfer (numeric ids, negative amounts) at the deposit venue.
    let answer = app.deliver_ok("legacy_rtn_close_transitory.json").await;
    assert_eq!(answer["outcome"], "processed");
    let sale = &app.sales_with_external_id("379610684457348").await[0];
    assert_eq!(
        (sale["kind"].as_str(), sale["state"].as_str()),
        (Some("transfer"), Some("closed"))
    );
    assert_eq!(sale["tax"], "-1.6667", "every digit of the payload is kept");

    // The other reservation webhooks: notices are processed for the operator; the
    // integration and POS reservation samples name a location no venue owns.
    for fixture in ["onboarding.json", "error_notification.json"] {
        let answer = app.deliver_ok(fixture).await;
        assert_eq!(answer["outcome"], "processed", "{fixture}");
        assert_eq!(answer["reason"], Value::Null, "{fixture}");
    }
    for fixture in ["integration_activated.json", "pos_reservation_seated.json"] {
        assert_eq!(
            app.deliver_ok(fixture).await["reason"],
            "unknown_location",
            "{fixture}"
        );
    }
}

async fn a_reservation_lifecycle_makes_the_booking_paid_with_exact_spend(db: Db) {
    let app = spawn(db).await;
    let id = booking_224(&app, "confirmed").await;
    for fixture in [
        "open_regular_tax_inclusive.json",
        "r224_update_items.json",
        "r224_update_payment.json",
    ] {
        app.deliver_ok(fixture).await;
        assert_eq!(app.booking_view(id).await["status"], "seated", "{fixture}");
    }
    let close = app.deliver_ok("r224_close.json").await;
    let booking = app.booking_view(id).await;
    assert_eq!(booking["status"], "paid");
    assert_eq!(
        booking["spend"],
        json!({ "total": "63.20", "paid": "63.20", "tax": "10.53", "net": "52.67", "tips": "6.80",
                "service_charge": "0.00", "discounts": "0.00", "deposits": "0.00", "refunds": "0.00",
                "per_cover": "15.80", "currency": "GBP" })
    );
    let transitions: Vec<(&str, &str)> = booking["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap_or(""),
                t["to"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        transitions,
        vec![("confirmed", "seated"), ("seated", "paid")]
    );
    assert_eq!(
        booking["transitions"][1]["event_id"], close["event_id"],
        "the cause is recorded"
    );

    let sale = app
        .admin_get(&format!("/sales/{}", booking["sales"][0]["id"]))
        .await;
    assert_eq!(sale["lines"].as_array().map(Vec::len), Some(3));
    assert_eq!(sale["payments"][0]["amount"], "63.20");
    assert_eq!(sale["payments"][0]["tip"], "6.80");
    assert_eq!(sale["number"], "A90826.1");
    assert!(sale["closed_at"].is_string());
}

async fn an_update_that_changes_the_items_replaces_the_lines_and_one_that_does_not_keeps_them(
    db: Db,
) {
    let app = spawn(db).await;
    let original: Value =
        serde_json::from_slice(&fixture("open_split_check_original.json")).expect("json");
    let location = original["businessLocationId"].to_string();
    app.venue_with_location("lightspeed", location.trim_matches('"'), true)
        .await;
    app.deliver_ok("open_split_check_original.json").await;
    let external_id = original["account"]["id"].as_str().expect("account id");
    let sales = app.sales_with_external_id(external_id).await;
    let sale_id = sales.first().expect("the sale")["id"].clone();
    let lines_of = |sale: &Value| -> Vec<String> {
        sale["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| format!("{} {}", l["description"], l["amount"]))
            .collect()
    };
    let all = lines_of(&app.admin_get(&format!("/sales/{sale_id}")).await);
    assert!(all.len() >= 2, "the seed check has several lines: {all:?}");

    let mut fewer = original.clone();
    let update = original["account"]["updateDate"]
        .as_i64()
        .expect("updateDate");
    fewer["notificationType"] = json!("UPDATE");
    fewer["account"]["updateDate"] = json!(update + 1000);
    fewer["account"]["transactionLines"]
        .as_array_mut()
        .expect("lines")
        .remove(0);
    let answer = json_of(app.post_lightspeed(fewer.to_string().as_bytes()).await).await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
    let after_change = lines_of(&app.admin_get(&format!("/sales/{sale_id}")).await);
    assert_eq!(after_change, all[1..].to_vec(), "the removed line is gone");

    let mut paid = fewer.clone();
    paid["account"]["updateDate"] = json!(update + 2000);
    paid["account"]["paidAmount"] = json!(1);
    let answer = json_of(app.post_lightspeed(paid.to_string().as_bytes()).await).await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
    let sale = app.admin_get(&format!("/sales/{sale_id}")).await;
    assert_eq!(sale["paid"], "1.00", "the new totals are stored");
    assert_eq!(lines_of(&sale), after_change, "the same lines, once each");
}

async fn a_resubmitted_notification_changes_nothing(db: Db) {
    let app = spawn(db).await;
    let id = booking_224(&app, "confirmed").await;
    app.deliver_ok("r224_update_items.json").await;
    let before = app.booking_view(id).await;
    let again = app.deliver_ok("r224_update_items.json").await;
    assert_eq!(again["outcome"], "ignored");
    assert_eq!(again["reason"], "duplicate_event");
    let after = app.booking_view(id).await;
    assert_eq!(after["spend"], before["spend"]);
    assert_eq!(after["transitions"], before["transitions"]);
    assert_eq!(
        app.sales_with_external_id(R224_SALE).await.len(),
        1,
        "one sale record"
    );
}

async fn an_older_update_arriving_late_does_not_regress_the_sale(db: Db) {
    let app = spawn(db).await;
    let id = booking_224(&app, "confirmed").await;
    app.deliver_ok("r224_update_items.json").await;
    app.deliver_ok("r224_close.json").await;
    for late in [
        "r224_update_stale.json",
        "open_regular_tax_inclusive.json",
        "r224_update_payment.json",
    ] {
        let answer = app.deliver_ok(late).await;
        assert_eq!(answer["reason"], "stale_update", "{late}");
    }
    let booking = app.booking_view(id).await;
    assert_eq!(booking["status"], "paid");
    assert_eq!(booking["sales"][0]["state"], "closed");
    assert_eq!(booking["spend"]["total"], "63.20");
}

async fn a_split_order_belongs_to_its_origins_booking_and_is_summed_once(db: Db) {
    let app = spawn(db).await;
    let id = booking_at_table_10(&app).await;
    let first = app.deliver_ok("open_split_check_original.json").await;
    assert_eq!(
        first["detail"],
        "matched by table_time: table 10, opened 8 min after the booking's start"
    );
    for fixture in ["split_original_update.json", "split_child_open.json"] {
        app.deliver_ok(fixture).await;
    }
    let seated = app.booking_view(id).await;
    assert_eq!(seated["status"], "seated");
    let child = seated["sales"]
        .as_array()
        .and_then(|sales| sales.iter().find(|s| s["external_id"] == SPLIT_CHILD))
        .cloned()
        .expect("the split child is on the booking");
    assert_eq!(child["match"]["rule"], "lineage");
    assert_eq!(child["kind"], "split");
    app.deliver_ok("split_original_close.json").await;
    assert_eq!(
        app.booking_view(id).await["status"],
        "seated",
        "one check is still open"
    );
    app.deliver_ok("split_child_close.json").await;
    let paid = app.booking_view(id).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(
        paid["spend"]["total"], "50.71",
        "31.98 + 18.73, the original's OPEN total not added again"
    );
    assert_eq!(paid["spend"]["tips"], "1.27");
    assert_eq!(paid["spend"]["per_cover"], "16.90");
}

async fn a_split_that_arrives_before_its_origin_is_adopted_later(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    // 11:00-11:55, widened to 12:55: the original (opened 11:53) matches by table and time,
    // the split-off child (opened 13:08) cannot, so only lineage can link it.
    let id = app
        .booking(
            venue,
            json!({ "start": "2025-12-29T11:00:00Z", "duration_minutes": 55, "tables": ["10"] }),
        )
        .await;
    let child_first = app.deliver_ok("split_child_open.json").await;
    assert_eq!(child_first["detail"], "unmatched");
    app.deliver_ok("open_split_check_original.json").await;
    let child = &app.sales_with_external_id(SPLIT_CHILD).await[0];
    assert_eq!(child["match"]["booking_id"], id);
    assert_eq!(child["match"]["rule"], "lineage");
    assert_eq!(
        child["match"]["reason"],
        format!("split of sale {SPLIT_ORIGINAL}")
    );
    assert_eq!(
        app.booking_view(id).await["sales"].as_array().map(Vec::len),
        Some(2)
    );
}

async fn a_cancelled_order_is_voided_and_does_not_count(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", CAD_LOCATION, true)
        .await;
    let id = app
        .booking(venue, json!({ "reference": "438", "start": "2024-09-18T20:00:00Z", "covers": 2, "tables": ["1"] }))
        .await;
    app.deliver_ok("open_regular_tax_exclusive.json").await;
    app.deliver_ok("r438_cancel.json").await;
    let booking = app.booking_view(id).await;
    assert_eq!(booking["sales"][0]["state"], "voided");
    assert_eq!(
        booking["sales"][0]["total"], "18.93",
        "the voided sale keeps its figures"
    );
    assert_eq!(booking["spend"]["total"], "0.00", "but they do not count");
    assert_eq!(
        booking["status"], "confirmed",
        "no live sale seats it any more: back where it was before its sale"
    );
    let back = booking["transitions"]
        .as_array()
        .and_then(|t| t.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (back["from"].as_str(), back["to"].as_str()),
        (Some("seated"), Some("confirmed"))
    );
    assert!(
        back["cause"]
            .as_str()
            .is_some_and(|c| c.contains("voided") && c.contains("no live sale left")),
        "the move says why: {back}"
    );
}

async fn a_tax_exclusive_close_adds_tax_on_top(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", CAD_LOCATION, true)
        .await;
    let id = app
        .booking(venue, json!({ "reference": "438", "start": "2024-09-18T20:00:00Z", "covers": 2, "tables": ["1"] }))
        .await;
    // The CLOSE is newer than the CANCEL, so the order ends closed whatever the arrival order.
    app.deliver_ok("r438_close_tax_exclusive.json").await;
    app.deliver_ok("r438_cancel.json").await;
    let booking = app.booking_view(id).await;
    assert_eq!(booking["status"], "paid");
    assert_eq!(booking["spend"]["net"], "61.55");
    assert_eq!(booking["spend"]["tax"], "8.00");
    assert_eq!(booking["spend"]["total"], "69.55");
    assert_eq!(booking["spend"]["per_cover"], "34.78");
}

async fn a_cancelled_booking_is_never_moved(db: Db) {
    let app = spawn(db).await;
    let id = booking_224(&app, "cancelled").await;
    for fixture in ["open_regular_tax_inclusive.json", "r224_close.json"] {
        app.deliver_ok(fixture).await;
    }
    let booking = app.booking_view(id).await;
    assert_eq!(booking["status"], "cancelled");
    assert_eq!(booking["transitions"], json!([]));
}

async fn table_and_time_never_matches_a_cancelled_booking(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    app.booking(
        venue,
        json!({ "start": "2025-12-29T11:45:00Z", "covers": 2, "tables": ["10"], "status": "cancelled" }),
    )
    .await;
    let answer = app.deliver_ok("open_split_check_original.json").await;
    assert_eq!(answer["detail"], "unmatched");
}

async fn two_bookings_on_the_same_table_and_time_leave_the_sale_ambiguous(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    let a = app
        .booking(
            venue,
            json!({ "start": "2025-12-29T11:30:00Z", "tables": ["T10"] }),
        )
        .await;
    let b = app
        .booking(
            venue,
            json!({ "start": "2025-12-29T11:40:00Z", "tables": ["table 10"] }),
        )
        .await;
    let answer = app.deliver_ok("open_split_check_original.json").await;
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("ambiguous"),
        "{answer}"
    );
    let sale = &app.sales_with_external_id(SPLIT_ORIGINAL).await[0];
    assert_eq!(sale["match"]["booking_id"], Value::Null);
    assert_eq!(sale["match"]["candidates"], json!([a, b]));
}

crate::on_both_stores!(
    every_seed_order_notification_lands_on_its_reservation,
    a_reservation_lifecycle_makes_the_booking_paid_with_exact_spend,
    a_resubmitted_notification_changes_nothing,
    an_update_that_changes_the_items_replaces_the_lines_and_one_that_does_not_keeps_them,
    an_older_update_arriving_late_does_not_regress_the_sale,
    a_split_order_belongs_to_its_origins_booking_and_is_summed_once,
    a_split_that_arrives_before_its_origin_is_adopted_later,
    a_cancelled_order_is_voided_and_does_not_count,
    a_tax_exclusive_close_adds_tax_on_top,
    a_cancelled_booking_is_never_moved,
    table_and_time_never_matches_a_cancelled_booking,
    two_bookings_on_the_same_table_and_time_leave_the_sale_ambiguous,
);
