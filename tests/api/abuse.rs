//! Defences against replayed and flooding deliveries: signed timestamps and their window,
//! the replay cache for schemes without one, and per-partner rate limits.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Db, PUBLIC_URL, TestApp, fixture, json_of, spawn_with};

const EXTRA: &str = r#"
[[partners]]
name = "stamped"
handler = "lightspeed-kseries"
[partners.auth]
scheme = "hmac-sha256"
secret = "stamped-secret"
timestamp_header = "X-Partner-Timestamp"
tolerance_seconds = 300

[[partners]]
name = "limited"
handler = "lightspeed-kseries"
rate_limit_per_second = 1
rate_limit_burst = 2
[partners.auth]
scheme = "bearer"
token = "limited-token"
"#;

async fn post_stamped(app: &TestApp, timestamp: i64, body: &[u8]) -> (StatusCode, Value) {
    let path = "/Sales/partners/stamped/events/order.updated";
    let signature = diarysync::partners::auth::hmac_sha256_hex_at(
        b"stamped-secret",
        Some(timestamp),
        body,
        Some(&format!("{PUBLIC_URL}{path}")),
    );
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .header("x-partner-signature", signature)
        .header("x-partner-timestamp", timestamp.to_string())
        .body(body.to_vec())
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, json_of(response).await)
}

async fn a_signed_timestamp_outside_its_window_is_refused_and_recorded(db: Db) {
    let app = spawn_with(db, EXTRA).await;
    let body = fixture("open_regular_tax_inclusive.json");
    let now = chrono::Utc::now().timestamp();
    let (status, answer) = post_stamped(&app, now, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = post_stamped(&app, now - 3600, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "expired_signature");
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(event["outcome"], "rejected");
    assert_eq!(event["reason"], "expired_signature");
    // Within the window the same body is not a replay: the timestamp stands for freshness.
    let (status, answer) = post_stamped(&app, now + 1, &body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("same delivery")
    );
}

async fn the_same_applied_delivery_again_is_a_recorded_duplicate_not_applied_twice(db: Db) {
    let app = spawn_with(db, EXTRA).await;
    app.venue_with_location("lightspeed", "9765040300495493", true)
        .await;
    let body = fixture("integration_activated.json");
    let first = json_of(app.post_lightspeed(&body).await).await;
    assert_eq!(first["outcome"], "processed", "{first}");
    let again = json_of(app.post_lightspeed(&body).await).await;
    assert_eq!(again["outcome"], "ignored");
    assert_eq!(again["reason"], "duplicate_event");
    assert!(
        again["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("the same delivery as event {}", first["event_id"])),
        "{again}"
    );
    let event = app.event(&again["event_id"]).await;
    assert_eq!(event["outcome"], "ignored", "the replay is recorded");
}

async fn a_partner_over_its_rate_gets_429_with_retry_after(db: Db) {
    let app = spawn_with(db, EXTRA).await;
    let path = format!("{}/Sales/partners/limited/events/order.updated", app.base);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let response = app
            .client
            .post(&path)
            .bearer_auth("limited-token")
            .body(fixture("open_regular_tax_inclusive.json"))
            .send()
            .await
            .expect("request");
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let answer = json_of(response).await;
            assert_eq!(answer["error"], "rate_limited");
        }
    }
    assert_eq!(
        &statuses[..2],
        &[StatusCode::OK, StatusCode::OK],
        "the burst"
    );
    assert!(
        statuses[2..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "Retry-After in seconds"
    );
    // Other partners are not held back by it.
    let (status, _) = app.deliver("open_regular_tax_inclusive.json").await;
    assert_eq!(status, StatusCode::OK);
    let stored = app.admin_get("/events?partner=limited&limit=100").await;
    assert_eq!(
        stored.as_array().map(Vec::len),
        Some(2),
        "refused floods are not written"
    );
}

crate::on_both_stores!(
    a_signed_timestamp_outside_its_window_is_refused_and_recorded,
    the_same_applied_delivery_again_is_a_recorded_duplicate_not_applied_twice,
    a_partner_over_its_rate_gets_429_with_retry_after,
);
