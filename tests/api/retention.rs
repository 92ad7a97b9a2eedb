//! Retention: past the cutoff, raw payloads and guests' personal data are erased, while
//! outcomes, sales and every figure stay; purged events are never replayed.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Db, spawn_with};

const R224_LOCATION: &str = "41910290874370";

async fn a_purge_erases_payloads_and_personal_data_and_keeps_the_figures(db: Db) {
    let app = spawn_with(db, "retention_days = 30").await;
    let venue = app
        .venue_with_location("lightspeed", R224_LOCATION, true)
        .await;
    let booking = app
        .booking(
            venue,
            json!({ "reference": "224", "start": "2024-04-04T15:30:00Z", "covers": 4,
                    "customer": { "name": "John Purple", "email": "john@purple.example",
                                  "phone": "+44 20 7946 0018" } }),
        )
        .await;
    let opened = app.deliver_ok("open_regular_tax_inclusive.json").await;
    app.deliver_ok("r224_close.json").await;
    let before = app.booking_view(booking).await;
    let guest = before["guest_id"].clone();
    assert!(guest.is_i64());

    // With retention_days = 30: the events are new and the guest was seen today, but the
    // booking ended in 2024.
    let (status, due) = app.admin_post("/retention/purge", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{due}");
    assert_eq!(due, json!({ "events": 0, "bookings": 1, "guests": 0 }));

    let later = (chrono::Utc::now() + chrono::Duration::days(400)).to_rfc3339();
    let (status, purged) = app
        .admin_post("/retention/purge", json!({ "before": later }))
        .await;
    assert_eq!(status, StatusCode::OK, "{purged}");
    assert_eq!(purged["events"], 2);
    assert_eq!(purged["bookings"], 0, "already erased");
    assert_eq!(purged["guests"], 1);

    let event = app.event(&opened["event_id"]).await;
    assert_eq!(event["outcome"], "processed", "the outcome stays");
    assert_eq!(event["body_bytes"], 0, "the payload is gone");
    assert_eq!(event["headers"], json!({}));
    assert!(event["purged_at"].is_string());
    let after = app.booking_view(booking).await;
    assert_eq!(
        after["customer"],
        json!({ "name": null, "email": null, "phone": null })
    );
    assert_eq!(after["spend"], before["spend"], "the figures stay");
    assert_eq!(after["status"], before["status"]);
    assert_eq!(after["sales"], before["sales"]);
    let profile = app.admin_get(&format!("/guests/{guest}")).await;
    assert_eq!(profile["name"], json!(null));
    assert_eq!(profile["email"], json!(null));
    assert_eq!(profile["lifetime_spend"], before["spend"]["total"]);

    let (status, replayed) = app.admin_post("/events/replay", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replayed["replayed"], 0, "purged events are never replayed");
    let (_, again) = app
        .admin_post("/retention/purge", json!({ "before": later }))
        .await;
    assert_eq!(again, json!({ "events": 0, "bookings": 0, "guests": 0 }));
}

async fn a_purge_without_a_cutoff_is_refused(db: Db) {
    let app = spawn_with(db, "").await;
    let (status, answer) = app.admin_post("/retention/purge", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
}

crate::on_both_stores!(
    a_purge_erases_payloads_and_personal_data_and_keeps_the_figures,
    a_purge_without_a_cutoff_is_refused,
);
