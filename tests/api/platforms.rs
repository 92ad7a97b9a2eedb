//! Booking platforms through HTTP: Checkfront (JSON, XML, form; payments) and TourCMS
//! (async notifications fetched from a fake Show Booking API on loopback, inline signed).

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, fixture_in as fixture, json_of, spawn_beside, spawn_with};
use crate::tourcms_api::{PRIVATE_KEY, start_fake_tourcms};

const HOST: &str = "your-company.checkfront.com";

async fn spawn_platforms(db: Db, tourcms_url: &str) -> TestApp {
    spawn_with(db, &platforms_config(tourcms_url)).await
}

fn platforms_config(tourcms_url: &str) -> String {
    format!(
        r#"
fetch_interval_ms = 50
fetch_retry_base_ms = 100

[[partners]]
name = "checkfront"
handler = "checkfront"
[partners.status_map]
XCHK = "arrived"
[partners.auth]
scheme = "url-token"
secret = "cf-token"

[[partners]]
name = "tourcms"
handler = "tourcms"
[partners.api]
base_url = "{tourcms_url}"
private_key = "{PRIVATE_KEY}"
[partners.auth]
scheme = "url-token"
secret = "tc-token"
"#
    )
}

async fn venue(app: &TestApp, timezone: &str, locations: Value) -> i64 {
    let (status, venue) = app
        .admin_post(
            "/venues",
            json!({ "name": "Harbour", "timezone": timezone, "locations": locations }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{venue}");
    venue["id"].as_i64().expect("venue id")
}

/// The one booking of a venue on a local day, from the diary.
async fn only_booking(app: &TestApp, venue: i64, date: &str) -> Value {
    let diary = app
        .admin_get(&format!("/venues/{venue}/diary?date={date}"))
        .await;
    let bookings = diary["bookings"].as_array().cloned().unwrap_or_default();
    assert_eq!(bookings.len(), 1, "{diary}");
    bookings[0].clone()
}

async fn checkfront_bookings_arrive_in_json_xml_and_form_alike(db: Db) {
    for (file, content_type, currency) in [
        ("booking.json", "application/json", "CAD"),
        ("booking.xml", "text/xml", "CAD"),
        (
            "booking_form.txt",
            "application/x-www-form-urlencoded",
            "CAD",
        ),
        ("booking.json", "text/plain", "CAD"),
        ("booking_seed.json", "application/json", "CAD"),
        ("booking_seed.xml", "application/xml", "EUR"),
    ] {
        let app = spawn_platforms(db, "http://127.0.0.1:9").await;
        let venue = venue(
            &app,
            "America/Vancouver",
            json!([{ "partner": "checkfront", "location_id": HOST }]),
        )
        .await;
        let (status, answer) = app
            .post_checkfront(fixture("checkfront", file), content_type)
            .await;
        assert_eq!(status, StatusCode::OK, "{file}: {answer}");
        assert_eq!(answer["outcome"], "processed", "{file}: {answer}");
        let booking = only_booking(&app, venue, "2014-03-06").await;
        assert_eq!(booking["reference"], "KMVQ-060314", "{file}");
        assert_eq!(booking["status"], "provisional", "{file}: HOLD");
        assert_eq!(booking["partner_status"], "HOLD");
        assert_eq!(
            booking["start"], "2014-03-06T18:00:00Z",
            "{file}: 10:00 in Vancouver"
        );
        assert_eq!(booking["customer"]["name"], "Your Customer", "{file}");
        assert_eq!(
            booking["customer"]["email"], "support@checkfront.com",
            "{file}"
        );
        assert_eq!(booking["platform"]["total"], "48.30", "{file}");
        assert_eq!(booking["platform"]["paid"], "0.00", "{file}");
        assert_eq!(booking["platform"]["currency"], currency, "{file}");
        assert_eq!(booking["platform"]["external_key"], "KMVQ-060314");
    }
}

async fn checkfront_shapes_statuses_and_duplicates(db: Db) {
    let app = spawn_platforms(db, "http://127.0.0.1:9").await;
    let venue = venue(
        &app,
        "America/Vancouver",
        json!([{ "partner": "checkfront", "location_id": HOST },
        { "partner": "checkfront", "location_id": "harbour-kayaks.checkfront.com" }]),
    )
    .await;
    for file in ["booking_single_item.json", "booking_single_item.xml"] {
        let (status, answer) = app
            .post_checkfront(fixture("checkfront", file), "application/json")
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let single = only_booking(&app, venue, "2026-05-12").await;
    assert_eq!(single["reference"], "PQRS-120526");
    assert_eq!(single["status"], "confirmed", "PAID");
    assert_eq!(single["platform"]["currency"], "EUR");
    assert_eq!(single["start"], "2026-05-12T17:00:00Z", "10:00 PDT");

    let (_, first) = app
        .post_checkfront(fixture("checkfront", "booking.json"), "application/json")
        .await;
    assert_eq!(first["outcome"], "processed");
    let (_, again) = app
        .post_checkfront(fixture("checkfront", "booking.json"), "application/json")
        .await;
    assert_eq!(
        again["reason"], "duplicate_event",
        "Booking Modified and Status Change fire together"
    );
    // The fields.customer_* layout reads as the same customer: the same snapshot again.
    let (_, layout) = app
        .post_checkfront(
            fixture("checkfront", "booking_new_layout_only.json"),
            "application/json",
        )
        .await;
    assert_eq!(layout["reason"], "duplicate_event", "{layout}");
    let booking = only_booking(&app, venue, "2014-03-06").await;
    assert_eq!(booking["customer"]["email"], "support@checkfront.com");

    let (_, custom) = app
        .post_checkfront(
            fixture("checkfront", "booking_custom_status.json"),
            "application/json",
        )
        .await;
    assert!(
        custom["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("-> arrived"),
        "{custom}"
    );
    let (_, stop) = app
        .post_checkfront(
            fixture("checkfront", "booking_stop.json"),
            "application/json",
        )
        .await;
    assert!(
        stop["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("-> cancelled"),
        "{stop}"
    );
    assert_eq!(
        only_booking(&app, venue, "2014-03-06").await["status"],
        "cancelled"
    );
}

async fn checkfront_payments_and_refunds_update_what_was_paid(db: Db) {
    let app = spawn_platforms(db, "http://127.0.0.1:9").await;
    let venue = venue(
        &app,
        "America/Vancouver",
        json!([{ "partner": "checkfront", "location_id": HOST },
        { "partner": "checkfront", "location_id": "your-website.checkfront.com" }]),
    )
    .await;
    // A payment before its booking is kept and found once the booking arrives.
    let (_, paid) = app
        .post_checkfront(
            fixture("checkfront", "payment_for_current_booking.json"),
            "application/json",
        )
        .await;
    assert_eq!(paid["outcome"], "processed", "{paid}");
    app.post_checkfront(fixture("checkfront", "booking.json"), "application/json")
        .await;
    let (_, refund) = app
        .post_checkfront(fixture("checkfront", "refund.json"), "application/json")
        .await;
    assert_eq!(refund["outcome"], "processed", "{refund}");
    let (_, again) = app
        .post_checkfront(fixture("checkfront", "refund.json"), "application/json")
        .await;
    assert_eq!(again["reason"], "duplicate_event");
    let booking = only_booking(&app, venue, "2014-03-06").await;
    assert_eq!(
        booking["platform"]["payments_net"], "10.00",
        "20.00 paid less 10.00 refunded"
    );
    assert_eq!(
        booking["platform"]["payments"].as_array().map(Vec::len),
        Some(2)
    );
    for file in ["payment.json", "payment.xml"] {
        let (status, answer) = app
            .post_checkfront(fixture("checkfront", file), "application/json")
            .await;
        assert_eq!(status, StatusCode::OK, "{file}");
        assert_eq!(answer["outcome"], "processed", "{file}: {answer}");
    }
}

async fn checkfront_malformed_and_hostile_bodies_are_stored_and_answered(db: Db) {
    let app = spawn_platforms(db, "http://127.0.0.1:9").await;
    venue(
        &app,
        "America/Vancouver",
        json!([{ "partner": "checkfront", "location_id": HOST }]),
    )
    .await;
    for file in [
        "malformed.json",
        "malformed.xml",
        "xxe.xml",
        "billion_laughs.xml",
        "wrong_types.json",
    ] {
        let body = fixture("checkfront", file);
        let (status, answer) = app.post_checkfront(body.clone(), "application/xml").await;
        assert_eq!(status, StatusCode::OK, "{file}: {answer}");
        let expected = if file == "wrong_types.json" {
            "failed" // parsed, but no booking can be made of it: kept for a replay
        } else {
            "ignored"
        };
        assert_eq!(answer["outcome"], expected, "{file}: {answer}");
        let event = app.event(&answer["event_id"]).await;
        assert_eq!(
            event["body"].as_str().map(str::as_bytes),
            Some(body.as_slice()),
            "{file} kept whole"
        );
    }
}

async fn a_pos_sale_finds_the_checkfront_booking_by_code_or_by_its_tables(db: Db) {
    let app = spawn_platforms(db, "http://127.0.0.1:9").await;
    let venue = venue(
        &app,
        "America/Vancouver",
        json!([
        { "partner": "checkfront", "location_id": HOST },
        { "partner": "lightspeed", "location_id": "41910290874370" }]),
    )
    .await;
    let (status, _) = app
        .admin_patch(
            &format!("/venues/{venue}"),
            json!({ "sku_tables": { "paddleboard": "Table 1" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.post_checkfront(fixture("checkfront", "booking.json"), "application/json")
        .await;
    let booking = only_booking(&app, venue, "2014-03-06").await;
    assert_eq!(booking["tables"], json!(["1"]), "paddleboard -> table 1");

    // A Lightspeed order carrying the Checkfront code as its reservation id.
    let mut order: Value =
        serde_json::from_slice(&crate::helpers::fixture("open_regular_tax_inclusive.json"))
            .expect("json");
    order["platformReservationId"] = json!("KMVQ-060314");
    let response = app.post_lightspeed(order.to_string().as_bytes()).await;
    let answer = json_of(response).await;
    assert_eq!(
        answer["detail"],
        "matched by booking_reference: booking reference KMVQ-060314 in platformReservationId"
    );

    // Another order, no reference, at table 1 ten minutes after the booking's start.
    let mut walk = order.clone();
    walk["platformReservationId"] = Value::Null;
    walk["account"]["id"] = json!("99");
    walk["account"]["externalReferences"] = json!([]);
    walk["account"]["openDate"] = json!(1394129400000i64);
    walk["account"]["updateDate"] = json!(1394129400001i64);
    let response = app.post_lightspeed(walk.to_string().as_bytes()).await;
    let answer = json_of(response).await;
    assert_eq!(
        answer["detail"], "matched by table_time: table 1, opened 10 min after the booking's start",
        "{answer}"
    );
}

async fn notify_tourcms(app: &TestApp, query: &str) -> Value {
    let response = app
        .client
        .get(format!(
            "{}/partners/tourcms/webhooks/callback/booking?token=tc-token&{query}",
            app.base
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    json_of(response).await
}

/// Waits (bounded) until an event leaves `pending`.
async fn settled(app: &TestApp, event_id: &Value) -> Value {
    for _ in 0..100 {
        let event = app.event(event_id).await;
        if event["outcome"] != "pending" {
            return event;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.event(event_id).await
}

async fn tourcms_notifications_fetch_the_booking_they_name(db: Db) {
    let (url, fake) = start_fake_tourcms().await;
    let app = spawn_platforms(db, &url).await;
    let venue = venue(
        &app,
        "Australia/Sydney",
        json!([{ "partner": "tourcms", "location_id": "4069" }]),
    )
    .await;
    let other = venue_other(&app).await;
    let answer = notify_tourcms(&app, "event=new_confirmed_web&account_id=4069&account_name=testoperator&channel_id=3930&booking_id=1234").await;
    assert_eq!(
        answer["outcome"], "pending",
        "stored before anything is fetched: {answer}"
    );
    let event = settled(&app, &answer["event_id"]).await;
    assert_eq!(event["outcome"], "processed", "{event}");
    let booking = only_booking(&app, venue, "2026-03-14").await;
    assert_eq!(booking["status"], "confirmed");
    assert_eq!(booking["reference"], "1234");
    assert_eq!(booking["platform"]["external_key"], "4069/1234");
    assert!(
        booking["start"]
            .as_str()
            .unwrap_or_default()
            .starts_with("2026-03-14T08:00:00"),
        "19:00 in Sydney: {booking}"
    );
    assert!(booking["customer"]["name"].is_string());
    assert!(booking["covers"].as_i64().unwrap_or_default() > 0);

    // booking_id 1234 of another account is another booking.
    let answer = notify_tourcms(&app, "event=new_confirmed_web&account_id=5120&account_name=otheroperator&channel_id=4001&booking_id=1234&foo=bar").await;
    assert_eq!(
        settled(&app, &answer["event_id"]).await["outcome"],
        "processed"
    );
    let theirs = only_booking(&app, other, "2026-03-15").await;
    assert_eq!(theirs["platform"]["external_key"], "5120/1234");

    fake.cancelled.store(true, Ordering::SeqCst);
    let answer = notify_tourcms(
        &app,
        "event=cancelled&account_id=4069&account_name=testoperator&channel_id=3930&booking_id=1234",
    )
    .await;
    assert_eq!(
        settled(&app, &answer["event_id"]).await["outcome"],
        "processed"
    );
    assert_eq!(
        only_booking(&app, venue, "2026-03-14").await["status"],
        "cancelled"
    );
}

async fn venue_other(app: &TestApp) -> i64 {
    venue(
        app,
        "Pacific/Auckland",
        json!([{ "partner": "tourcms", "location_id": "5120" }]),
    )
    .await
}

async fn an_unreachable_tourcms_keeps_the_event_pending_and_retries(db: Db) {
    let (url, fake) = start_fake_tourcms().await;
    fake.down.store(true, Ordering::SeqCst);
    let app = spawn_platforms(db, &url).await;
    let venue = venue(
        &app,
        "Australia/Sydney",
        json!([{ "partner": "tourcms", "location_id": "4069" }]),
    )
    .await;
    let answer = notify_tourcms(&app, "event=new_provisional_web&account_id=4069&account_name=testoperator&channel_id=3930&booking_id=1234").await;
    for _ in 0..100 {
        if fake.requests.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(event["outcome"], "pending", "{event}");
    assert!(
        event["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("failed: TourCMS answered 503"),
        "{event}"
    );
    let pending = app.admin_get("/events?outcome=pending").await;
    assert_eq!(
        pending.as_array().map(Vec::len),
        Some(1),
        "the operator sees it"
    );
    fake.down.store(false, Ordering::SeqCst);
    let event = settled(&app, &answer["event_id"]).await;
    assert_eq!(event["outcome"], "processed", "{event}");
    assert_eq!(
        only_booking(&app, venue, "2026-03-14").await["status"],
        "provisional"
    );
}

async fn tourcms_inline_notifications_are_verified_before_use(db: Db) {
    let app = spawn_platforms(db, "http://127.0.0.1:9").await;
    venue(
        &app,
        "Australia/Sydney",
        json!([{ "partner": "tourcms", "location_id": "4069" }]),
    )
    .await;
    let post = |file: &'static str| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(format!(
                    "{}/partners/tourcms/webhooks/callback/booking?token=tc-token&event=new_temporary_web&account_id=4069&channel_id=3930&booking_id=5678",
                    app.base
                ))
                .header("content-type", "application/xml")
                .body(fixture("tourcms", file))
                .send()
                .await
                .expect("request");
            let status = response.status();
            (status, json_of(response).await)
        }
    };
    let (status, answer) = post("inline_new_temporary_web.xml").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"], "processed", "{answer}");
    for file in ["inline_tampered.xml", "inline_unsigned.xml"] {
        let (status, answer) = post(file).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{file}: {answer}");
        assert_eq!(answer["error"], "bad_signature", "{file}");
    }
}

/// Two nodes on one PostgreSQL both find the same pending events due every 50 ms; the
/// claim in the database lets exactly one of them fetch each booking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_fetch_each_pending_booking_once() {
    let (url, fake) = start_fake_tourcms().await;
    let first = spawn_platforms(Db::Postgres, &url).await;
    let second = spawn_beside(&first, &platforms_config(&url)).await;
    venue(
        &first,
        "Australia/Sydney",
        json!([{ "partner": "tourcms", "location_id": "4069" }]),
    )
    .await;
    let mut events = Vec::new();
    for n in 0..20 {
        let node = if n % 2 == 0 { &first } else { &second };
        let answer = notify_tourcms(
            node,
            &format!(
                "event=new_confirmed_web&account_id=4069&channel_id=3930&booking_id=1234&n={n}"
            ),
        )
        .await;
        assert_eq!(answer["outcome"], "pending", "{answer}");
        events.push(answer["event_id"].clone());
    }
    for event in &events {
        // The first applies the booking; the rest fetch the same snapshot: duplicates.
        let event = settled(&first, event).await;
        assert!(
            matches!(event["outcome"].as_str(), Some("processed" | "ignored")),
            "{event}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        events.len(),
        "one fetch per pending event, whichever node made it"
    );
}

/// A venue's `sku_tables` and `table_aliases` name diary tables, so they are held to a
/// table's bounds (422); a Checkfront booking whose items' SKUs put it on more tables than
/// the diary can store is an invalid payload, kept for a replay, not a 500 the partner
/// retries until it disables the webhook (found by the outside attack on issue 15).
async fn table_settings_and_sku_mappings_past_a_tables_bounds_are_refused_clearly(db: Db) {
    let app = spawn_platforms(db, "http://127.0.0.1:9").await;
    let venue = venue(
        &app,
        "America/Vancouver",
        json!([{ "partner": "checkfront", "location_id": HOST }]),
    )
    .await;
    let long = "x".repeat(3_000);
    for bad in [
        json!({ "sku_tables": { "paddle": long } }),
        json!({ "table_aliases": { "Table 7": long } }),
        json!({ "table_aliases": { long.clone(): "7" } }),
        json!({ "sku_tables": { "paddle": "   " } }),
    ] {
        let (status, answer) = app
            .admin_patch(&format!("/venues/{venue}"), bad.clone())
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {answer}");
    }
    // 80 SKUs, each on a table of its own: more tables than one booking may be on.
    let skus: serde_json::Map<String, Value> = (0..80)
        .map(|n| (format!("sku{n}"), json!(format!("Terrace {n:0>40}"))))
        .collect();
    let (status, answer) = app
        .admin_patch(&format!("/venues/{venue}"), json!({ "sku_tables": skus }))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut booking: Value =
        serde_json::from_slice(&fixture("checkfront", "booking.json")).expect("json");
    let item = booking["booking"]["order"]["items"]["item"][0].clone();
    booking["booking"]["order"]["items"]["item"] = (0..80)
        .map(|n| {
            let mut line = item.clone();
            line["sku"] = json!(format!("sku{n}"));
            line
        })
        .collect();
    let (status, answer) = app
        .post_checkfront(booking.to_string().into_bytes(), "application/json")
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["reason"], "invalid_payload", "{answer}");
}

crate::on_both_stores!(
    table_settings_and_sku_mappings_past_a_tables_bounds_are_refused_clearly,
    checkfront_bookings_arrive_in_json_xml_and_form_alike,
    checkfront_shapes_statuses_and_duplicates,
    checkfront_payments_and_refunds_update_what_was_paid,
    checkfront_malformed_and_hostile_bodies_are_stored_and_answered,
    a_pos_sale_finds_the_checkfront_booking_by_code_or_by_its_tables,
    tourcms_notifications_fetch_the_booking_they_name,
    an_unreachable_tourcms_keeps_the_event_pending_and_retries,
    tourcms_inline_notifications_are_verified_before_use,
);
