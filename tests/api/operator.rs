//! What operators read beside the diary: venues, suggestions for unmatched sales, partner
//! health and the event log by time.

use serde_json::{Value, json};

use crate::helpers::{Db, SPLIT_LOCATION, fixture, spawn};

async fn an_unmatched_sale_comes_with_ranked_explained_suggestions(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    // The seed check opens at 11:53 on table 10; no booking is on table 10.
    let later = app
        .booking(
            venue,
            json!({ "start": "2025-12-29T13:00:00Z", "covers": 2, "tables": ["5"] }),
        )
        .await;
    let around = app
        .booking(
            venue,
            json!({ "start": "2025-12-29T11:45:00Z", "covers": 3, "tables": ["4"] }),
        )
        .await;
    let cancelled = app
        .booking(
            venue,
            json!({ "start": "2025-12-29T11:50:00Z", "covers": 2, "tables": ["10"] }),
        )
        .await;
    let (status, _) = app
        .admin_post(&format!("/bookings/{cancelled}/cancel"), json!({}))
        .await;
    assert!(status.is_success());
    let answer = app.deliver_ok("open_split_check_original.json").await;
    assert_eq!(answer["detail"], "unmatched");
    let sale = app.sales_with_external_id("2190678134095876").await[0]["id"].clone();

    let suggestions = app.admin_get(&format!("/sales/{sale}/suggestions")).await;
    let ids: Vec<i64> = suggestions
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["booking_id"].as_i64())
        .collect();
    assert_eq!(
        ids,
        vec![around, later],
        "nearest first, cancelled never offered"
    );
    assert_eq!(
        suggestions[0]["reason"],
        "not the sale's table: table 4, opened 8 min after the booking's start, no other check yet, \
         3 covers booked, 2 on the check"
    );
    assert_eq!(suggestions[0]["covers"], 3);
    let missing = app
        .client
        .get(format!("{}/api/v1/sales/999999/suggestions", app.base))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
}

async fn partner_health_counts_outcomes_and_names_unknown_locations(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await;
    app.deliver_ok("open_split_check_original.json").await;
    let mut stranger: Value =
        serde_json::from_slice(&fixture("open_split_check_original.json")).expect("json");
    stranger["businessLocationId"] = json!(424242);
    stranger["account"]["businessLocationId"] = json!("424242");
    for _ in 0..2 {
        app.post_lightspeed(stranger.to_string().as_bytes()).await;
    }

    let health = app.admin_get("/health").await;
    let rows = health.as_array().expect("a list");
    let at_venue = rows
        .iter()
        .find(|r| r["venue_id"] == json!(venue))
        .expect("the venue's row");
    assert_eq!(at_venue["partner"], "lightspeed");
    assert_eq!(at_venue["last_day"]["processed"], 1);
    assert_eq!(at_venue["last_hour"]["processed"], 1);
    assert_eq!(at_venue["sales_last_day"], 1);
    assert!(at_venue["last_event_at"].is_string());
    let nowhere = rows
        .iter()
        .find(|r| r["venue_id"].is_null() && r["partner"] == "lightspeed")
        .expect("events that reached no venue");
    assert_eq!(nowhere["last_day"]["ignored"], 2);
    assert_eq!(nowhere["problems"][0]["reason"], "unknown_location");
    assert_eq!(nowhere["problems"][0]["events"], 2);
    assert_eq!(
        nowhere["problems"][0]["example"],
        "location 424242 is not mapped to a venue"
    );
    assert_eq!(
        nowhere["problems"][0]["location_id"], "424242",
        "what to map, without parsing the sentence"
    );
}

async fn the_event_log_filters_by_time(db: Db) {
    let app = spawn(db).await;
    app.deliver_ok("open_split_check_original.json").await;
    let all = app.admin_get("/events").await;
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    let received = all[0]["received_at"].as_str().expect("time").to_owned();
    let since = app
        .admin_get(&format!("/events?from={}", received.replace('+', "%2B")))
        .await;
    assert_eq!(since.as_array().map(Vec::len), Some(1), "from is inclusive");
    let before = app
        .admin_get(&format!("/events?to={}", received.replace('+', "%2B")))
        .await;
    assert_eq!(before.as_array().map(Vec::len), Some(0), "to is exclusive");
    let venues = app.admin_get("/venues").await;
    assert_eq!(venues, json!([]));
}

/// The value of the first sample of `metric` whose labels include every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(metric))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn metrics_count_events_matches_latency_and_unmatched_sales(db: Db) {
    let app = spawn(db).await;
    app.split_venue_with_booking().await;
    let answer = app.deliver_ok("open_split_check_original.json").await;
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or("")
            .contains("table_time")
    );
    let text = app.metrics_text().await;
    let processed = sample(
        &text,
        "diarysync_events_total",
        &[r#"partner="lightspeed""#, r#"outcome="processed""#],
    );
    assert!(processed.is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        sample(&text, "diarysync_matches_total", &[r#"rule="table_time""#])
            .is_some_and(|n| n >= 1.0)
    );
    assert!(sample(&text, "diarysync_unmatched_sales", &[]).is_some());
    let backend = match db {
        Db::Sqlite => r#"backend="sqlite""#,
        Db::Postgres => r#"backend="postgres""#,
    };
    assert!(
        sample(&text, "diarysync_store_commit_seconds_count", &[backend]).is_some_and(|n| n >= 1.0)
    );
    assert!(
        sample(
            &text,
            "diarysync_http_request_duration_seconds_count",
            &[
                r#"route="/Sales/partners/{partner}/events/{event_type}""#,
                r#"status="200""#
            ],
        )
        .is_some_and(|n| n >= 1.0),
        "requests are labelled by route pattern: {text}"
    );
    assert!(
        !text.contains("2190678134095876"),
        "no raw path or sale id as a label"
    );
}

/// The one SQLite writer says per group commit how much processor time it spent and how long
/// its `COMMIT` (the WAL's write and sync) took: what tells a writer saturated on the
/// processor from one waiting on the disk.
#[tokio::test]
async fn a_sqlite_node_reports_its_writers_processor_time_and_its_commits_sync() {
    let app = spawn(Db::Sqlite).await;
    app.split_venue_with_booking().await;
    app.deliver_ok("open_split_check_original.json").await;
    let text = app.metrics_text().await;
    // Other tests' nodes share the process's recorder, so only the presence of samples and
    // of measured time is asserted, not counts.
    for metric in [
        "diarysync_store_writer_cpu_seconds",
        "diarysync_store_commit_sync_seconds",
    ] {
        let count = sample(&text, &format!("{metric}_count"), &[]);
        assert!(
            count.is_some_and(|n| n >= 1.0),
            "{metric} per group commit: {text}"
        );
        let sum = sample(&text, &format!("{metric}_sum"), &[]);
        assert!(
            sum.is_some_and(|s| s > 0.0),
            "{metric} measured some time: {text}"
        );
    }
}

crate::on_both_stores!(
    metrics_count_events_matches_latency_and_unmatched_sales,
    an_unmatched_sale_comes_with_ranked_explained_suggestions,
    partner_health_counts_outcomes_and_names_unknown_locations,
    the_event_log_filters_by_time,
);
