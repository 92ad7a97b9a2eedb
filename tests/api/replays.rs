//! A replay is an operator's action: it ends, whatever the partner keeps sending, and it is
//! recorded in the audit trail with who ran it, even when the client gave up waiting.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Db, TestApp, spawn};

/// A Lightspeed OPEN of check `id` on table T1 of location 42.
fn open(id: &str) -> Vec<u8> {
    format!(
        r#"{{"notificationType":"OPEN","businessLocationId":"42","account":{{"id":"{id}","openDate":1712253600000,"tableName":"T1","totalAmount":5}}}}"#
    )
    .into_bytes()
}

async fn deliver(app: &TestApp, count: usize, prefix: &str) {
    for n in 0..count {
        let response = app.post_lightspeed(&open(&format!("{prefix}{n}"))).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK);
    }
}

/// A page session of the bootstrap admin (the admin token's login form): its cookie.
async fn admin_session(app: &TestApp) -> String {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}/ui/login", app.base))
        .form(&[("token", ADMIN_TOKEN), ("next", "/ui/diary")])
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The audit entries of bulk replays, newest first.
async fn bulk_replays(app: &TestApp) -> Vec<Value> {
    let trail = app.admin_get("/audit?limit=100").await;
    trail
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "events.replay")
        .cloned()
        .collect()
}

/// A replay whose client hung up (a proxy's or a browser's timeout on a long replay) ran
/// on, but no audit entry said who had re-run thousands of events (found by the outside
/// attack on issue 17). It now runs in a task of its own that records it when it ends.
async fn a_replay_whose_client_hung_up_runs_to_its_end_and_is_audited(db: Db) {
    let app = spawn(db).await;
    app.venue_with_location("lightspeed", "42", true).await;
    deliver(&app, 300, "hung-").await;
    let gave_up = app
        .client
        .post(format!("{}/api/v1/events/replay", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "partner": "lightspeed" }))
        .timeout(Duration::from_millis(20))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client gave up before the answer");
    let started = Instant::now();
    let entry = loop {
        if let Some(entry) = bulk_replays(&app).await.into_iter().next() {
            break entry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the replay left no audit entry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entry["actor"], "admin token", "{entry}");
    assert_eq!(entry["after"]["summary"]["replayed"], 300, "{entry}");
}

/// A replay without an end took the events that kept arriving while it ran, and at a
/// busy partner's rate never answered (found by the outside attack on issue 17). It now
/// ends when it starts, and its audit entry names that end.
async fn a_replay_without_an_end_ends_when_it_starts_and_says_so(db: Db) {
    let app = spawn(db).await;
    app.venue_with_location("lightspeed", "42", true).await;
    deliver(&app, 3, "open-ended-").await;
    let before = chrono::Utc::now();
    let (status, summary) = app
        .admin_post(
            "/events/replay",
            json!({ "partner": "lightspeed", "from": "2020-01-01T00:00:00Z" }),
        )
        .await;
    let after = chrono::Utc::now();
    assert_eq!(status, reqwest::StatusCode::OK, "{summary}");
    assert_eq!(summary["replayed"], 3, "{summary}");
    let entry = bulk_replays(&app)
        .await
        .into_iter()
        .next()
        .expect("audited");
    let end: chrono::DateTime<chrono::Utc> = entry["after"]["filter"]["to"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the entry names the replay's end: {entry}"));
    assert!(
        before <= end && end <= after,
        "{end} outside {before}..{after}"
    );
}

/// An event whose outcome a replay of many changed said "nothing done by hand": only a
/// replay of that event alone named it (found by the outside attack on issue 17). Its
/// history now lists every replay that re-ran it, through the API and on its page.
async fn an_events_history_lists_the_replays_of_many_that_re_ran_it(db: Db) {
    let app = spawn(db).await;
    // Unmapped at first: the event is ignored (unknown location), then recovered by the
    // replay that mapping the location runs, and re-run by a replay of the partner's events.
    let response = app.post_lightspeed(&open("history-1")).await;
    let answer: Value = response.json().await.expect("json");
    let event = answer["event_id"].as_i64().expect("event id");
    assert_eq!(answer["reason"], "unknown_location", "{answer}");
    let (status, venue) = app
        .admin_post(
            "/venues",
            json!({ "name": "Mapped later", "timezone": "UTC" }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{venue}");
    let (status, mapped) = app
        .admin_post(
            &format!("/venues/{}/locations", venue["id"]),
            json!({ "partner": "lightspeed", "location_id": "42" }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{mapped}");
    let (status, _) = app
        .admin_post("/events/replay", json!({ "partner": "lightspeed" }))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let history = app
        .admin_get(&format!("/audit?subject_type=event&subject_id={event}"))
        .await;
    let entries = history.as_array().expect("entries");
    assert_eq!(entries.len(), 2, "both replays that re-ran it: {history}");
    assert!(
        entries.iter().all(|e| e["action"] == "events.replay"),
        "{history}"
    );
    let page = app
        .client
        .get(format!("{}/ui/events/{event}", app.base))
        .header("cookie", admin_session(&app).await)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("events.replay") && !page.contains("nothing done by hand"),
        "the page's history lists them"
    );
    // Another event's history does not list them.
    let other = app
        .admin_get("/audit?subject_type=event&subject_id=999999")
        .await;
    assert_eq!(other.as_array().map(Vec::len), Some(0), "{other}");
}

crate::on_both_stores!(
    an_events_history_lists_the_replays_of_many_that_re_ran_it,
    a_replay_whose_client_hung_up_runs_to_its_end_and_is_audited,
    a_replay_without_an_end_ends_when_it_starts_and_says_so,
);
