//! The `sync` phase: how long the booking platform's `bookings:sync` of 5,000 bookings takes,
//! new and again unchanged, on each store (issue 16's figure).

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::Summary;
use crate::load::{Server, spawn_diarysync};

/// Bookings per sync: the most one request may carry.
const BOOKINGS: usize = 5_000;

const ADMIN_TOKEN: &str = "bench-admin-token-0123";

fn bookings() -> Vec<Value> {
    (0..BOOKINGS)
        .map(|i| {
            json!({
                "reference": format!("PLAT-{i}"),
                "start": format!("2026-03-{:02}T{:02}:{:02}:00Z", 1 + i / 400 % 28, 10 + i % 12, i % 60),
                "covers": 2 + i % 6,
                "tables": [format!("T{}", i % 40)],
                "customer": { "name": format!("Guest {i}"), "email": format!("guest{i}@example.com") },
            })
        })
        .collect()
}

async fn timed_sync(
    client: &reqwest::Client,
    server: &Server,
    venue: i64,
    body: &Value,
) -> (f64, Value) {
    let started = Instant::now();
    let answer: Value = client
        .post(format!(
            "http://{}/api/v1/venues/{venue}/bookings:sync",
            server.addr
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .expect("sync")
        .json()
        .await
        .expect("JSON");
    (started.elapsed().as_secs_f64(), answer)
}

/// Syncs 5,000 new bookings into an empty venue, then the same 5,000 again.
pub async fn sync_phase(summary: &mut Summary, dir: &Path, store: &str, url: &str) {
    let server = spawn_diarysync(dir, url, &[]).await;
    let client = reqwest::Client::new();
    let venue: Value = client
        .post(format!("http://{}/api/v1/venues", server.addr))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "name": "Sync", "timezone": "Europe/London", "locations": [] }))
        .send()
        .await
        .expect("venue")
        .json()
        .await
        .expect("JSON");
    let venue = venue["id"].as_i64().expect("a venue id");
    let body = json!({ "bookings": bookings() });
    let (new, created) = timed_sync(&client, &server, venue, &body).await;
    let (again, unchanged) = timed_sync(&client, &server, venue, &body).await;
    for (label, seconds, answer) in [("new", new, created), ("unchanged", again, unchanged)] {
        summary.note(format!(
            "| bookings:sync, {BOOKINGS} {label}, {store} | {:.0} bookings/s | {seconds:.2} s | {answer} |",
            BOOKINGS as f64 / seconds
        ));
    }
    server.stop();
}
