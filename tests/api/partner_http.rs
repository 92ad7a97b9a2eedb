//! HTTP as partners speak it: probes answered without side effects, paths a partner gets
//! slightly wrong, what TourCMS really answers when we fetch, and calling TourCMS as its API
//! docs ask (a User-Agent naming us and the account, Retry-After and rate-limit headers
//! honoured, never over the hourly limit).

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Db, LIGHTSPEED_TOKEN, TestApp, fixture, json_of, run_sql_at, spawn_beside, spawn_with,
};
use crate::tourcms_api::{FakeTourCms, PRIVATE_KEY, Scripted, start_fake_tourcms};

fn tourcms_partner(url: &str, extra: &str) -> String {
    format!(
        r#"
fetch_interval_ms = 50
fetch_retry_base_ms = 100

[[partners]]
name = "tourcms"
handler = "tourcms"
[partners.api]
base_url = "{url}"
private_key = "{PRIVATE_KEY}"
{extra}
[partners.auth]
scheme = "url-token"
secret = "tc-token"
"#
    )
}

async fn venue(app: &TestApp, timezone: &str, partner: &str, location: &str) -> i64 {
    let (status, venue) = app
        .admin_post(
            "/venues",
            json!({ "name": "Harbour", "timezone": timezone,
                    "locations": [{ "partner": partner, "location_id": location }] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{venue}");
    venue["id"].as_i64().expect("venue id")
}

fn notification(booking_id: &str) -> String {
    format!(
        "event=new_confirmed_web&account_id=4069&account_name=testoperator&channel_id=3930&booking_id={booking_id}"
    )
}

async fn notify(app: &TestApp, path: &str, query: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .get(format!("{}{path}?token=tc-token&{query}", app.base))
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, json_of(response).await)
}

async fn settled(app: &TestApp, event_id: &Value) -> Value {
    for _ in 0..200 {
        let event = app.event(event_id).await;
        if event["outcome"] != "pending" {
            return event;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.event(event_id).await
}

async fn events(app: &TestApp) -> usize {
    app.admin_get("/events?limit=1000")
        .await
        .as_array()
        .map_or(0, Vec::len)
}

async fn head_and_options_probe_without_side_effects(db: Db) {
    let (url, fake) = start_fake_tourcms().await;
    let app = spawn_with(db, &tourcms_partner(&url, "")).await;
    venue(&app, "Australia/Sydney", "tourcms", "4069").await;
    let callback = format!(
        "{}/partners/tourcms/webhooks/callback/booking?token=tc-token&{}",
        app.base,
        notification("1234")
    );
    let head = app.client.head(&callback).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    let options = app
        .client
        .request(reqwest::Method::OPTIONS, &callback)
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    assert!(
        options
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("POST") && a.contains("GET")),
        "{:?}",
        options.headers()
    );
    let sales = format!(
        "{}/Sales/partners/lightspeed/events/order.updated",
        app.base
    );
    let head = app.client.head(&sales).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    let unknown = format!("{}/Sales/partners/nobody/events/order.updated", app.base);
    let head = app.client.head(&unknown).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::NOT_FOUND, "no such partner");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events(&app).await, 0, "nothing stored");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 0, "nothing fetched");
    assert!(
        app.admin_get("/venues/1/diary?date=2026-03-14").await["bookings"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

async fn a_method_a_route_does_not_take_is_answered_in_json_and_recorded(db: Db) {
    let app = spawn_with(db, "").await;
    // A GET pointed at the sales URL (as a TourCMS notification would be), a DELETE on the
    // callback route, a trailing slash on top.
    for (method, path) in [
        (
            reqwest::Method::GET,
            "/Sales/partners/lightspeed/events/booking?booking_id=1234",
        ),
        (
            reqwest::Method::PUT,
            "/Sales/partners/lightspeed/events/order.updated/",
        ),
        (
            reqwest::Method::DELETE,
            "/partners/lightspeed/webhooks/callback/booking",
        ),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        let status = response.status();
        let allow = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = json_of(response).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {answer}"
        );
        assert_eq!(answer["error"], "method_not_allowed", "{method} {path}");
        assert!(allow.is_some_and(|a| a.contains("POST")), "{method} {path}");
        let event = app.event(&answer["event_id"]).await;
        assert_eq!(event["outcome"], "rejected", "{event}");
        assert_eq!(event["reason"], "method_not_allowed", "{event}");
    }
    let health = app.admin_get("/health").await;
    assert!(
        health
            .as_array()
            .into_iter()
            .flatten()
            .any(|record| record["partner"] == "lightspeed"
                && record.to_string().contains("method_not_allowed")),
        "partner health shows the misdirected sender: {health}"
    );
}

async fn a_path_a_partner_gets_slightly_wrong_still_reaches_its_route_or_is_recorded(db: Db) {
    let app = spawn_with(db, "").await;
    app.venue_with_location("lightspeed", "41910290874370", true)
        .await;
    for path in [
        "/Sales/partners/lightspeed/events/order.updated/",
        "/sales/partners/lightspeed/events/order.updated",
        "/SALES/Partners/lightspeed/Events/order.updated",
        "//Sales/partners/lightspeed/events/order.updated",
    ] {
        let response = app
            .client
            .post(format!("{}{path}", app.base))
            .bearer_auth(LIGHTSPEED_TOKEN)
            .header("content-type", "application/json")
            .body(fixture("r224_close.json"))
            .send()
            .await
            .expect("request");
        let status = response.status();
        let answer = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        assert!(
            matches!(answer["outcome"].as_str(), Some("processed" | "ignored")),
            "{path}: {answer}"
        );
    }
    for path in [
        "/Sales/partners/lightspeed/event/order.updated",
        "/partners/lightspeed/webhook/callback/order.updated",
        "/Sales/partners/lightspeed",
    ] {
        let response = app
            .client
            .post(format!("{}{path}", app.base))
            .bearer_auth(LIGHTSPEED_TOKEN)
            .body("{}")
            .send()
            .await
            .expect("request");
        let status = response.status();
        let answer = json_of(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
        assert_eq!(answer["error"], "unknown_route", "{path}");
        let event = app.event(&answer["event_id"]).await;
        assert_eq!(event["reason"], "unknown_route");
        assert_eq!(
            event["partner"], "lightspeed",
            "shown under the partner it names"
        );
    }
    let health = app.admin_get("/health").await;
    assert!(
        health.to_string().contains("unknown_route"),
        "partner health shows it: {health}"
    );
    let response = app
        .client
        .get(format!("{}/nowhere/at/all", app.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

async fn every_tourcms_show_booking_variant_gives_its_diary(db: Db) {
    let dir = format!(
        "{}/tests/fixtures/tourcms/variants",
        env!("CARGO_MANIFEST_DIR")
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/cases.json")).expect("cases.json"),
    )
    .expect("JSON");
    let cases = manifest["cases"].as_array().cloned().unwrap_or_default();
    assert!(cases.len() >= 9, "{} variants", cases.len());
    let (url, fake) = start_fake_tourcms().await;
    let app = spawn_with(db, &tourcms_partner(&url, "")).await;
    let venue = venue(&app, "Australia/Sydney", "tourcms", "4069").await;
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or_default();
        let booking_id = case["booking_id"].as_str().unwrap_or_default();
        let body = std::fs::read(format!(
            "{dir}/{}",
            case["file"].as_str().unwrap_or_default()
        ))
        .expect("variant");
        let headers = case["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, value)| {
                (
                    if name == "content-encoding" {
                        "content-encoding"
                    } else {
                        "content-type"
                    },
                    value.as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        fake.script(
            booking_id,
            Scripted {
                status: 200,
                headers,
                body,
            },
        );
        let (_, answer) = notify(
            &app,
            "/partners/tourcms/webhooks/callback/booking",
            &notification(booking_id),
        )
        .await;
        let event = settled(&app, &answer["event_id"]).await;
        if event["outcome"] != "processed" {
            failures.push(format!("{name}: {event}"));
            continue;
        }
        let diary = app
            .admin_get(&format!(
                "/venues/{venue}/diary?date={}",
                case["booking"]["date"].as_str().unwrap_or_default()
            ))
            .await;
        let found = diary["bookings"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["reference"] == case["booking"]["reference"])
            .cloned();
        match found {
            Some(booking) if holds(&booking, &case["booking"]["expect"]) => {}
            other => failures.push(format!("{name}: {other:?}, expected {}", case["booking"])),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn holds(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => expected
            .iter()
            .all(|(key, value)| holds(actual.get(key).unwrap_or(&Value::Null), value)),
        (actual, expected) => actual == expected,
    }
}

/// Waits until the fake has been asked `calls` times (bounded).
async fn asked(fake: &FakeTourCms, calls: usize) {
    for _ in 0..100 {
        if fake.requests.load(Ordering::SeqCst) >= calls {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn tourcms_is_called_as_its_api_docs_ask(db: Db) {
    let (url, fake) = start_fake_tourcms().await;
    let app = spawn_with(db, &tourcms_partner(&url, "hourly_limit = 3")).await;
    venue(&app, "Australia/Sydney", "tourcms", "4069").await;
    // It says who calls: our name and version, then marketplace and channel in brackets.
    let (_, answer) = notify(
        &app,
        "/partners/tourcms/webhooks/callback/booking",
        &notification("1234"),
    )
    .await;
    assert_eq!(
        settled(&app, &answer["event_id"]).await["outcome"],
        "processed"
    );
    let agents = fake.user_agents();
    assert!(
        agents
            .first()
            .is_some_and(|a| a.starts_with("diarysync/") && a.ends_with("(0_3930)")),
        "{agents:?}"
    );
    // Asked to wait: no call before the time is up, and the event waits at least as long.
    fake.script(
        "7001",
        Scripted {
            status: 503,
            headers: vec![("retry-after", "3600".to_owned())],
            body: b"busy".to_vec(),
        },
    );
    let (_, waiting) = notify(
        &app,
        "/partners/tourcms/webhooks/callback/booking",
        &notification("7001"),
    )
    .await;
    asked(&fake, 2).await;
    let (_, after) = notify(
        &app,
        "/partners/tourcms/webhooks/callback/booking",
        &notification("7002"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        2,
        "the channel is left alone while TourCMS asked us to wait"
    );
    let event = app.event(&waiting["event_id"]).await;
    assert_eq!(event["outcome"], "pending");
    let detail = event["detail"].as_str().unwrap_or_default().to_owned();
    let next = detail
        .rsplit("next at ")
        .next()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .expect("the next attempt's time");
    assert!(
        next.with_timezone(&chrono::Utc) > chrono::Utc::now() + chrono::Duration::minutes(55),
        "retry after the hour TourCMS asked for: {detail}"
    );
    assert_eq!(app.event(&after["event_id"]).await["outcome"], "pending");
}

async fn tourcms_is_never_called_over_its_hourly_limit(db: Db) {
    let (url, fake) = start_fake_tourcms().await;
    let app = spawn_with(db, &tourcms_partner(&url, "hourly_limit = 2")).await;
    venue(&app, "Australia/Sydney", "tourcms", "4069").await;
    let mut answers = Vec::new();
    for booking in ["1234", "8001", "8002", "8003"] {
        answers.push(
            notify(
                &app,
                "/partners/tourcms/webhooks/callback/booking",
                &notification(booking),
            )
            .await
            .1,
        );
    }
    asked(&fake, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        2,
        "two calls in this hour, as configured"
    );
    // 1234 was fetched, 8001 was asked for and not found (it waits for a retry), and the
    // last two were never tried: they wait for the next hour, none given up.
    for answer in &answers[2..] {
        let event = app.event(&answer["event_id"]).await;
        assert_eq!(event["outcome"], "pending", "{event}");
        assert!(
            event["detail"]
                .as_str()
                .is_some_and(|d| d.contains("to fetch")),
            "not yet tried: {event}"
        );
    }
}

async fn the_hourly_limit_counts_calls_made_by_every_process_on_the_database(db: Db) {
    let (url, fake) = start_fake_tourcms().await;
    let config = tourcms_partner(&url, "hourly_limit = 3");
    let app = spawn_with(db, &config).await;
    venue(&app, "Australia/Sydney", "tourcms", "4069").await;
    // Two calls this hour by a process before a restart, or by another node.
    let ten_minutes_ago = (chrono::Utc::now() - chrono::Duration::minutes(10)).timestamp_millis();
    let two_hours_ago = (chrono::Utc::now() - chrono::Duration::hours(2)).timestamp_millis();
    run_sql_at(
        db,
        &app.database_url,
        &format!(
            "INSERT INTO api_calls (channel, called_at) VALUES
             ('tourcms/0/3930', {ten_minutes_ago}), ('tourcms/0/3930', {ten_minutes_ago}),
             ('tourcms/0/3930', {two_hours_ago}), ('tourcms/0/3930', {two_hours_ago});",
        ),
    )
    .await;
    let mut answers = Vec::new();
    for booking in ["1234", "8101", "8102"] {
        let (_, answer) = notify(
            &app,
            "/partners/tourcms/webhooks/callback/booking",
            &notification(booking),
        )
        .await;
        answers.push(answer);
    }
    if db == Db::Postgres {
        // A second node on the same database spends from the same hour.
        let beside = spawn_beside(&app, &config).await;
        for booking in ["8103", "8104"] {
            notify(
                &beside,
                "/partners/tourcms/webhooks/callback/booking",
                &notification(booking),
            )
            .await;
        }
    }
    asked(&fake, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        1,
        "one call left of three: the two in the database count, the older ones do not"
    );
    let untried = answers.len() - 1;
    let mut pending = 0;
    for answer in &answers {
        let event = app.event(&answer["event_id"]).await;
        if event["outcome"] == "pending" {
            pending += 1;
        }
    }
    assert_eq!(
        pending, untried,
        "the rest wait for the next hour, none lost"
    );
}

async fn an_exhausted_tourcms_rate_limit_pauses_the_channel(db: Db) {
    let (url, fake) = start_fake_tourcms().await;
    let app = spawn_with(db, &tourcms_partner(&url, "")).await;
    venue(&app, "Australia/Sydney", "tourcms", "4069").await;
    let body = std::fs::read(format!(
        "{}/tests/fixtures/tourcms/show_booking_1234.xml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    fake.script(
        "1234",
        Scripted {
            status: 200,
            headers: vec![
                ("x-ratelimit-limit", "3000".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
            ],
            body,
        },
    );
    let (_, first) = notify(
        &app,
        "/partners/tourcms/webhooks/callback/booking",
        &notification("1234"),
    )
    .await;
    assert_eq!(
        settled(&app, &first["event_id"]).await["outcome"],
        "processed"
    );
    let (_, second) = notify(
        &app,
        "/partners/tourcms/webhooks/callback/booking",
        &notification("9001"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        1,
        "no call with none left"
    );
    assert_eq!(app.event(&second["event_id"]).await["outcome"], "pending");
}

async fn a_compressed_signed_delivery_is_verified_on_its_bytes_as_sent_and_replays_alike(db: Db) {
    use std::io::Write;
    let app = spawn_with(db, "").await;
    app.venue_with_location("signed", "41910290874370", true)
        .await;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&fixture("r224_close.json")).expect("gzip");
    let compressed = gzip.finish().expect("gzip");
    let path = "/Sales/partners/signed/events/order.updated";
    let url = format!("{}{path}", crate::helpers::PUBLIC_URL);
    let signature = diarysync::partners::auth::hmac_sha256_hex(
        crate::helpers::HMAC_SECRET.as_bytes(),
        &compressed,
        Some(&url),
    );
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .header("x-partner-signature", signature)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(compressed.clone())
        .send()
        .await
        .expect("request");
    let answer = json_of(response).await;
    assert_eq!(
        answer["outcome"], "processed",
        "signed as sent, read decompressed: {answer}"
    );
    let event = app.event(&answer["event_id"]).await;
    use base64::Engine;
    let stored = base64::engine::general_purpose::STANDARD
        .decode(event["body_base64"].as_str().unwrap_or_default())
        .expect("the stored body is the gzip stream");
    assert_eq!(stored, compressed, "the exact bytes received are kept");
    assert_eq!(
        event["headers"]["content-encoding"], "gzip",
        "and what decodes them"
    );
    let (status, replayed) = app
        .admin_post(&format!("/events/{}/replay", answer["event_id"]), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(
        replayed["event"]["outcome"], "processed",
        "decoded alike on replay: {replayed}"
    );
    // A signature over the decompressed body is not what was sent: refused.
    let signature = diarysync::partners::auth::hmac_sha256_hex(
        crate::helpers::HMAC_SECRET.as_bytes(),
        &fixture("r224_close.json"),
        Some(&url),
    );
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .header("x-partner-signature", signature)
        .header("content-encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

async fn a_late_pos_reservation_status_changes_nothing(db: Db) {
    let app = spawn_with(db, "").await;
    let venue = app
        .venue_with_location("lightspeed", "9765040300495493", true)
        .await;
    let booking = app
        .booking(
            venue,
            json!({ "reference": "Reservation-123", "start": "2026-03-14T19:00:00Z",
                    "duration_minutes": 120, "covers": 4, "tables": ["5"] }),
        )
        .await;
    let status = |status: &str, tables: Value, covers: i64| {
        json!({ "platformCode": "MyPlatform", "platformRestaurantId": "Restaurant-123",
                "platformReservationId": "Reservation-123", "businessLocationId": 9765040300495493u64,
                "status": status, "tables": tables, "covers": covers })
    };
    for (body, expected) in [
        (status("SEATED", json!(["1A"]), 4), "processed"),
        (status("PAID", json!(["1A"]), 4), "processed"),
        (status("SEATED", json!(["9"]), 42), "ignored"),
    ] {
        let answer = json_of(app.post_lightspeed(body.to_string().as_bytes()).await).await;
        assert_eq!(answer["outcome"], expected, "{answer}");
    }
    let view = app.booking_view(booking).await;
    assert_eq!(view["status"], "paid");
    assert_eq!(
        view["partner_status"], "PAID",
        "the late SEATED does not overwrite it"
    );
    assert_eq!(view["tables"], json!(["1A"]), "nor its tables");
    assert_eq!(view["covers"], 4, "nor its covers");
}

async fn a_fetched_booking_that_cannot_be_read_fails_alone_and_fetching_goes_on(db: Db) {
    let (url, fake) = start_fake_tourcms().await;
    let app = spawn_with(db, &tourcms_partner(&url, "")).await;
    venue(&app, "Australia/Sydney", "tourcms", "4069").await;
    let show = std::fs::read_to_string(format!(
        "{}/tests/fixtures/tourcms/show_booking_1234.xml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    // Nanoseconds where TourCMS means seconds: it once panicked the fetcher for good.
    let poisoned = show
        .replace(
            "<booking_id>1234</booking_id>",
            "<booking_id>6001</booking_id>",
        )
        .replace(
            "<updated_at_utc_seconds>1773113040</updated_at_utc_seconds>",
            "<updated_at_utc_seconds>1761991200000000000</updated_at_utc_seconds>",
        );
    fake.script(
        "6001",
        Scripted {
            status: 200,
            headers: vec![("content-type", "text/xml".to_owned())],
            body: poisoned.into_bytes(),
        },
    );
    let (_, bad) = notify(
        &app,
        "/partners/tourcms/webhooks/callback/booking",
        &notification("6001"),
    )
    .await;
    let event = settled(&app, &bad["event_id"]).await;
    assert_eq!(event["outcome"], "failed", "{event}");
    assert_eq!(event["reason"], "invalid_payload", "{event}");
    let (_, good) = notify(
        &app,
        "/partners/tourcms/webhooks/callback/booking",
        &notification("1234"),
    )
    .await;
    assert_eq!(
        settled(&app, &good["event_id"]).await["outcome"],
        "processed",
        "the fetcher goes on"
    );
}

crate::on_both_stores!(
    a_method_a_route_does_not_take_is_answered_in_json_and_recorded,
    a_fetched_booking_that_cannot_be_read_fails_alone_and_fetching_goes_on,
    a_compressed_signed_delivery_is_verified_on_its_bytes_as_sent_and_replays_alike,
    a_late_pos_reservation_status_changes_nothing,
    head_and_options_probe_without_side_effects,
    a_path_a_partner_gets_slightly_wrong_still_reaches_its_route_or_is_recorded,
    every_tourcms_show_booking_variant_gives_its_diary,
    tourcms_is_called_as_its_api_docs_ask,
    tourcms_is_never_called_over_its_hourly_limit,
    the_hourly_limit_counts_calls_made_by_every_process_on_the_database,
    an_exhausted_tourcms_rate_limit_pauses_the_channel,
);
