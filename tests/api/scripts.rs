//! Partners onboarded by a config entry and a script: a made-up POS, SalesPlay, limits,
//! hot reload and replay, through HTTP.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, json_of, spawn_with};

const SALESPLAY_SHOP: &str = "bHF2M2pMakkzTVZ0NFh2SE1WNnNoUT09";

/// A POS that never existed in the code: its checks look like this.
const TILLTASTIC_CHECK: &str = r#"{
  "venue": "tt-harbour",
  "check": { "no": "C-77", "table": "Table 7A", "opened": "2026-03-14T19:10:00+11:00",
             "closed": "2026-03-14T21:02:00+11:00", "amount": "88.40", "vat": "8.04",
             "guests": 2, "booking": null }
}"#;

const TILLTASTIC_SCRIPT: &str = r#"
fn handle(event) {
    if event.type == "ping" { return #{ notice: "pong" }; }
    let c = event.body.check;
    if c == () { return #{ ignore: "unrecognised_model", detail: "no check" }; }
    #{
        location: event.body.venue,
        commands: [#{
            type: "sale", id: c.no, opened_at: c.opened, closed_at: c.closed, state: "closed",
            total: c.amount, tax: c.vat, covers: c.guests, tables: [c.table],
            booking_refs: if c.booking == () { [] } else { [c.booking] }
        }]
    }
}
"#;

/// Spawns with `tilltastic` (a script in `dir`) and `salesplay` (the shipped script).
async fn spawn_scripted(db: Db, dir: &Path, script: &str) -> TestApp {
    let path = dir.join("tilltastic.rhai");
    std::fs::write(&path, script).expect("write script");
    let salesplay = Path::new(env!("CARGO_MANIFEST_DIR")).join("partners/salesplay.rhai");
    let extra = format!(
        r#"
[[partners]]
name = "tilltastic"
handler = "script"
script = "{}"
[partners.auth]
scheme = "bearer"
token = "tt-token"

[[partners]]
name = "salesplay"
handler = "script"
script = "{}"
[partners.auth]
scheme = "url-token"
secret = "sp-token"

[[partners]]
name = "tilltastic-retried"
handler = "script"
script = "{}"
on_handler_error = "retry"
[partners.auth]
scheme = "bearer"
token = "tt-token"
"#,
        path.display(),
        salesplay.display(),
        path.display()
    );
    spawn_with(db, &extra).await
}

async fn post_tilltastic(app: &TestApp, event_type: &str, body: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!(
            "{}/Sales/partners/tilltastic/events/{event_type}",
            app.base
        ))
        .bearer_auth("tt-token")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, json_of(response).await)
}

/// Posts a SalesPlay fixture to the URL registered for its event type.
async fn post_salesplay(app: &TestApp, fixture: &str) -> (StatusCode, Value) {
    let path = format!(
        "{}/tests/fixtures/salesplay/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).expect("fixture");
    let parsed: Value = serde_json::from_slice(&body).expect("fixture is JSON");
    let event_type = parsed["type"].as_str().unwrap_or("unknown").to_owned();
    let response = app
        .client
        .post(format!(
            "{}/partners/salesplay/webhooks/callback/{event_type}?token=sp-token",
            app.base
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, json_of(response).await)
}

async fn sydney_venue(app: &TestApp, partner: &str, location: &str) -> i64 {
    let (status, venue) = app
        .admin_post(
            "/venues",
            json!({ "name": format!("{partner} venue"), "timezone": "Australia/Sydney", "currency": "AUD",
                    "locations": [{ "partner": partner, "location_id": location }] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{venue}");
    venue["id"].as_i64().expect("venue id")
}

async fn a_made_up_pos_is_onboarded_with_a_config_entry_and_a_script(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_scripted(db, dir.path(), TILLTASTIC_SCRIPT).await;
    let venue = sydney_venue(&app, "tilltastic", "tt-harbour").await;
    let booking = app
        .booking(
            venue,
            json!({ "start": "2026-03-14T19:00:00+11:00", "covers": 2, "tables": ["7a"] }),
        )
        .await;
    let (status, answer) = post_tilltastic(&app, "check.closed", TILLTASTIC_CHECK).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["detail"],
        "matched by table_time: table 7A, opened 10 min after the booking's start"
    );
    let seen = app.admin_get(&format!("/bookings/{booking}")).await;
    assert_eq!(seen["status"], "paid");
    assert_eq!(seen["spend"]["total"], "88.40");
    assert_eq!(seen["spend"]["per_cover"], "44.20");
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(event["handler"], "script");
    assert_eq!(event["handler_version"].as_str().map(str::len), Some(16));
    let (_, pong) = post_tilltastic(&app, "ping", "{}").await;
    assert_eq!(pong["detail"], "pong");
}

async fn a_script_over_its_limits_fails_only_that_event_kept_for_a_replay(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let greedy = r#"
        fn handle(event) {
            if event.type == "spin" { loop { } }
            if event.type == "hoard" { let a = []; a.pad(50000000, "x"); }
            #{ notice: "fine" }
        }
    "#;
    let app = spawn_scripted(db, dir.path(), greedy).await;
    for event_type in ["spin", "hoard"] {
        // Answered 200 by default: a partner retrying would only hit the limit again, and
        // partners disable webhooks that keep failing.
        let (status, answer) = post_tilltastic(&app, event_type, "{}").await;
        assert_eq!(status, StatusCode::OK, "{event_type}: {answer}");
        assert_eq!(answer["outcome"], "failed");
        assert_eq!(answer["reason"], "script_limit");
        // A partner configured with on_handler_error = "retry" is asked to retry.
        let retried = app
            .client
            .post(format!(
                "{}/Sales/partners/tilltastic-retried/events/{event_type}",
                app.base
            ))
            .bearer_auth("tt-token")
            .body("{}")
            .send()
            .await
            .expect("request");
        assert_eq!(retried.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(json_of(retried).await["error"], "script_limit");
        let event = app.event(&answer["event_id"]).await;
        assert_eq!(event["outcome"], "failed");
        assert!(
            event["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("script failed"),
            "{event}"
        );
    }
    let (status, answer) = post_tilltastic(&app, "other", "{}").await;
    assert_eq!(
        (status, answer["detail"].as_str()),
        (StatusCode::OK, Some("fine")),
        "the process carries on"
    );
}

async fn a_changed_script_takes_effect_without_a_restart(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_scripted(
        db,
        dir.path(),
        "fn handle(event) { #{ notice: \"first\" } }",
    )
    .await;
    let (_, first) = post_tilltastic(&app, "x", "{}").await;
    assert_eq!(first["detail"], "first");
    std::fs::write(
        dir.path().join("tilltastic.rhai"),
        "fn handle(event) { #{ notice: \"second version\" } }",
    )
    .expect("rewrite");
    let (_, second) = post_tilltastic(&app, "x", "{}").await;
    assert_eq!(second["detail"], "second version");
    let v1 = app.event(&first["event_id"]).await["handler_version"].clone();
    let v2 = app.event(&second["event_id"]).await["handler_version"].clone();
    assert!(v1.is_string() && v2.is_string());
    assert_ne!(v1, v2, "each event records the version that mapped it");
}

async fn replay_after_a_script_fix_recovers_failed_events(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = TILLTASTIC_SCRIPT.replace(
        "let c = event.body.check;",
        "let c = event.body.check; throw \"field renamed\";",
    );
    let app = spawn_scripted(db, dir.path(), &broken).await;
    let venue = sydney_venue(&app, "tilltastic", "tt-harbour").await;
    let (status, failed) = post_tilltastic(&app, "check.closed", TILLTASTIC_CHECK).await;
    assert_eq!(status, StatusCode::OK, "stored for a replay: {failed}");
    assert_eq!(
        (failed["outcome"].as_str(), failed["reason"].as_str()),
        (Some("failed"), Some("script_error"))
    );
    // The operator sees it in the event log's filter and in partner health, by event type.
    let listed = app
        .admin_get("/events?partner=tilltastic&outcome=failed&reason=script_error")
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let health = app.admin_get("/health").await;
    let problem = health
        .as_array()
        .into_iter()
        .flatten()
        .filter(|record| record["partner"] == "tilltastic")
        .flat_map(|record| record["problems"].as_array().cloned().unwrap_or_default())
        .find(|problem| problem["reason"] == "script_error");
    let problem = problem.unwrap_or_else(|| panic!("no script_error in {health}"));
    assert_eq!(problem["event_type"], "check.closed");
    assert_eq!(problem["events"], 1);
    assert!(
        problem["example"]
            .as_str()
            .is_some_and(|e| e.contains("field renamed")),
        "{problem}"
    );
    assert_eq!(
        app.admin_get(&format!("/venues/{venue}/sales")).await,
        json!([])
    );

    std::fs::write(dir.path().join("tilltastic.rhai"), TILLTASTIC_SCRIPT).expect("fix");
    let (status, summary) = app
        .admin_post(
            "/events/replay",
            json!({ "partner": "tilltastic", "outcome": "failed" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["replayed"], 1);
    assert_eq!(summary["recovered"], 1);
    let event = app.event(&failed["event_id"]).await;
    assert_eq!(event["outcome"], "processed");
    let sales = app.admin_get(&format!("/venues/{venue}/sales")).await;
    assert_eq!(sales[0]["total"], "88.40");

    // Replaying everything again converges: nothing changes, nothing is counted twice.
    let (_, again) = app
        .admin_post("/events/replay", json!({ "partner": "tilltastic" }))
        .await;
    assert_eq!(again["outcomes"]["processed"], 1);
    assert_eq!(app.event(&failed["event_id"]).await["outcome"], "processed");
    assert_eq!(
        app.admin_get(&format!("/venues/{venue}/sales"))
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let (status, one) = app
        .admin_post(&format!("/events/{}/replay", failed["event_id"]), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["event"]["outcome"], "processed");
}

async fn salesplay_receipts_credit_notes_and_customers(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_scripted(db, dir.path(), TILLTASTIC_SCRIPT).await;
    let venue = sydney_venue(&app, "salesplay", SALESPLAY_SHOP).await;
    // 19:12 in Sydney (AEST, UTC+10) on 30 June 2025.
    let booking = app
        .booking(
            venue,
            json!({ "start": "2025-06-30T19:00:00+10:00", "covers": 2, "tables": ["7"] }),
        )
        .await;

    let (status, receipt) = post_salesplay(&app, "receipts_update.json").await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(
        receipt["detail"],
        "matched by table_time: table 7, opened 12 min after the booking's start"
    );
    let (_, duplicate) = post_salesplay(&app, "receipts_update.json").await;
    assert_eq!(
        duplicate["reason"], "duplicate_event",
        "SalesPlay retries are harmless"
    );

    let (_, refund) = post_salesplay(&app, "credit_note_update.json").await;
    assert_eq!(
        refund["detail"],
        "matched by lineage: refund of sale UmVjZWlwdC0xMDAx"
    );
    let seen = app.admin_get(&format!("/bookings/{booking}")).await;
    assert_eq!(
        seen["spend"]["total"], "68.00",
        "88.00 less the 20.00 credit note"
    );
    assert_eq!(seen["spend"]["refunds"], "20.00");
    assert_eq!(seen["spend"]["tips"], "5.00");
    let sale = &app
        .admin_get("/sales?partner=salesplay&external_id=UmVjZWlwdC0xMDAx")
        .await[0];
    assert_eq!(
        sale["opened_at"], "2025-06-30T09:12:40Z",
        "created_at read in the venue's zone"
    );

    for fixture in ["inventory_levels_update.json", "products_update.json"] {
        let (status, answer) = post_salesplay(&app, fixture).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["reason"], "unrecognised_model", "{fixture}");
    }

    let (_, customers) = post_salesplay(&app, "customers_update.json").await;
    assert_eq!(customers["outcome"], "processed", "{customers}");
    assert!(
        customers["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("guest profile")
    );
}

/// The fixture's receipt and a second one (`receipt_id`, for `shop`, of `total`).
fn batch_with_another_shop(receipt_id: &str, shop: &str, total: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/salesplay/receipts_update.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut body: Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    let mut other = body["receipts"][0].clone();
    other["receipt_id"] = json!(receipt_id);
    other["shop_id"] = json!(shop);
    other["total"] = json!(total);
    body["receipts"]
        .as_array_mut()
        .expect("receipts")
        .push(other);
    body
}

async fn a_salesplay_delivery_batching_two_shops_lands_in_each_venue(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_scripted(db, dir.path(), TILLTASTIC_SCRIPT).await;
    let first = sydney_venue(&app, "salesplay", SALESPLAY_SHOP).await;
    let second = sydney_venue(&app, "salesplay", "U2hvcC1Ud28=").await;
    let body = batch_with_another_shop("UmVjZWlwdC0yMDAy", "U2hvcC1Ud28=", "12.00");
    let response = app
        .client
        .post(format!(
            "{}/partners/salesplay/webhooks/callback/receipts.update?token=sp-token",
            app.base
        ))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["outcome"], "processed");
    for (venue, total) in [(first, "88.00"), (second, "12.00")] {
        let sales = app.admin_get(&format!("/venues/{venue}/sales")).await;
        assert_eq!(sales.as_array().map(Vec::len), Some(1), "venue {venue}");
        assert_eq!(sales[0]["total"], total);
    }
}

async fn a_receipt_for_an_unmapped_shop_in_a_batch_is_shown_and_replayable(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_scripted(db, dir.path(), TILLTASTIC_SCRIPT).await;
    let mapped = sydney_venue(&app, "salesplay", SALESPLAY_SHOP).await;
    let response = app
        .client
        .post(format!(
            "{}/partners/salesplay/webhooks/callback/receipts.update?token=sp-token",
            app.base
        ))
        .json(&batch_with_another_shop(
            "UmVjZWlwdC0zMDAz",
            "U2hvcC1OZXc=",
            "31.50",
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
    assert_eq!(answer["reason"], "unknown_location", "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|d| d.contains("U2hvcC1OZXc=")),
        "{answer}"
    );
    // Partner health names the shop.
    let health = app.admin_get("/health").await;
    let named = health
        .as_array()
        .into_iter()
        .flatten()
        .filter(|record| record["partner"] == "salesplay")
        .flat_map(|record| record["problems"].as_array().cloned().unwrap_or_default())
        .any(|problem| {
            problem["reason"] == "unknown_location"
                && problem["example"]
                    .as_str()
                    .is_some_and(|e| e.contains("U2hvcC1OZXc="))
        });
    assert!(named, "health names the unmapped shop: {health}");
    // Once the shop is mapped, a replay by reason brings its receipt in, and the mapped
    // shop's sale is not counted twice.
    let new_shop = sydney_venue(&app, "salesplay", "U2hvcC1OZXc=").await;
    let (status, summary) = app
        .admin_post(
            "/events/replay",
            json!({ "partner": "salesplay", "reason": "unknown_location" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["replayed"], 1, "{summary}");
    for (venue, total) in [(mapped, "88.00"), (new_shop, "31.50")] {
        let sales = app.admin_get(&format!("/venues/{venue}/sales")).await;
        assert_eq!(
            sales.as_array().map(Vec::len),
            Some(1),
            "venue {venue}: {sales}"
        );
        assert_eq!(sales[0]["total"], total);
    }
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(event["outcome"], "processed");
    assert_eq!(
        event["reason"],
        Value::Null,
        "nothing unmapped any more: {event}"
    );
}

async fn replaying_the_event_that_wrote_a_sale_reads_it_again(db: Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    // A handler bug: every check read as a refund.
    let misread = TILLTASTIC_SCRIPT.replace(
        "type: \"sale\", id: c.no,",
        "type: \"sale\", kind: \"refund\", id: c.no,",
    );
    assert_ne!(misread, TILLTASTIC_SCRIPT);
    let app = spawn_scripted(db, dir.path(), &misread).await;
    let venue = sydney_venue(&app, "tilltastic", "tt-harbour").await;
    let (status, first) = post_tilltastic(&app, "check.closed", TILLTASTIC_CHECK).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let sales = app.admin_get(&format!("/venues/{venue}/sales")).await;
    assert_eq!(sales[0]["kind"], "refund", "{sales}");
    std::fs::write(dir.path().join("tilltastic.rhai"), TILLTASTIC_SCRIPT).expect("fix");
    // A second delivery of the same check is still a duplicate ...
    let (_, again) = post_tilltastic(&app, "check.closed", TILLTASTIC_CHECK).await;
    assert_eq!(again["reason"], "duplicate_event", "{again}");
    // ... but the event that wrote the sale, replayed, is read by the fixed handler.
    let (status, replayed) = app
        .admin_post(&format!("/events/{}/replay", first["event_id"]), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(replayed["event"]["outcome"], "processed", "{replayed}");
    let sales = app.admin_get(&format!("/venues/{venue}/sales")).await;
    assert_eq!(sales.as_array().map(Vec::len), Some(1), "{sales}");
    assert_eq!(sales[0]["kind"], "sale", "{sales}");
    assert_eq!(sales[0]["total"], "88.40");
}

crate::on_both_stores!(
    a_receipt_for_an_unmapped_shop_in_a_batch_is_shown_and_replayable,
    replaying_the_event_that_wrote_a_sale_reads_it_again,
    a_salesplay_delivery_batching_two_shops_lands_in_each_venue,
    a_made_up_pos_is_onboarded_with_a_config_entry_and_a_script,
    a_script_over_its_limits_fails_only_that_event_kept_for_a_replay,
    a_changed_script_takes_effect_without_a_restart,
    replay_after_a_script_fix_recovers_failed_events,
    salesplay_receipts_credit_notes_and_customers,
);
