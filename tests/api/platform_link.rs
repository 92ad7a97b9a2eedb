//! The platform link: bookings in by the platform's own references, the diary out as Standard
//! Webhooks verified by the specification's own Python library, and the change feed.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, spawn, spawn_with};
use crate::on_both_stores;
use crate::process::{LIGHTSPEED_TOKEN, Node};
use crate::receiver::{Delivery, Receiver, verify_with_standardwebhooks};

const R224_LOCATION: &str = "41910290874370";

/// Webhooks to this machine's receivers (loopback allowed), retried within milliseconds.
const FAST_WEBHOOKS: &str = "[webhooks]\nallow_networks = [\"127.0.0.0/8\"]\n\
     retry_base_ms = 50\nretry_max_ms = 200\npoll_interval_ms = 50\n";

const WAIT: Duration = Duration::from_secs(30);

impl TestApp {
    /// Subscribes `url` to every message; returns the subscription's id and secret.
    async fn subscribe(&self, url: &str) -> (i64, String) {
        let (status, created) = self.admin_post("/webhooks", json!({ "url": url })).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let secret = created["secret"].as_str().expect("a secret").to_owned();
        (created["id"].as_i64().expect("an id"), secret)
    }

    async fn put_booking(&self, venue: i64, reference: &str, body: Value) -> (StatusCode, Value) {
        self.admin_put(
            &format!("/venues/{venue}/bookings/by-reference/{reference}"),
            body,
        )
        .await
    }

    /// Every change in the feed, read `page` at a time.
    async fn whole_feed(&self, page: usize) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let answer = self
                .admin_get(&format!("/changes?after={cursor}&limit={page}"))
                .await;
            let changes = answer["changes"].as_array().expect("changes").clone();
            let next = answer["next_cursor"].as_str().expect("a cursor").to_owned();
            if changes.is_empty() {
                let kept = if cursor.is_empty() {
                    "0"
                } else {
                    cursor.as_str()
                };
                assert_eq!(next, kept, "an empty page keeps the cursor");
                return all;
            }
            cursor = next;
            all.extend(changes);
        }
    }
}

fn types_of(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| d.json()["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn seq_of(id: &str) -> i64 {
    id.trim_start_matches("msg_").parse().expect("a message id")
}

fn booking_224() -> Value {
    json!({
        "start": "2024-04-04T15:30:00Z", "duration_minutes": 120, "covers": 4,
        "tables": ["Table 1"],
        "customer": { "name": "John Purple", "email": "john.purple@example.com" },
    })
}

async fn a_pos_close_reaches_the_platform_as_one_verified_booking_paid(db: Db) {
    let app = spawn_with(db, FAST_WEBHOOKS).await;
    let receiver = Receiver::start().await;
    let (_, secret) = app.subscribe(&receiver.url).await;
    let venue = app
        .venue_with_location("lightspeed", R224_LOCATION, true)
        .await;
    let (status, put) = app.put_booking(venue, "224", booking_224()).await;
    assert_eq!(status, StatusCode::CREATED, "{put}");
    assert_eq!(put["result"], "created");
    for fixture in [
        "open_regular_tax_inclusive.json",
        "r224_update_items.json",
        "r224_update_payment.json",
        "r224_close.json",
    ] {
        app.deliver_ok(fixture).await;
    }
    let deliveries = receiver
        .wait_for(WAIT, "booking.paid", |d| {
            types_of(d).iter().any(|t| t == "booking.paid")
        })
        .await;
    // Anything still on its way has had time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deliveries = receiver.accepted().await.max_by_len(deliveries);
    let types = types_of(&deliveries);
    assert_eq!(
        types.iter().filter(|t| *t == "booking.paid").count(),
        1,
        "{types:?}"
    );
    let position = |name: &str| types.iter().position(|t| t == name);
    assert!(
        position("booking.created") < position("booking.seated")
            && position("booking.seated") < position("booking.paid"),
        "a booking's messages arrive in the order they happened: {types:?}"
    );
    let paid = deliveries
        .iter()
        .find(|d| d.json()["type"] == "booking.paid")
        .expect("booking.paid")
        .json();
    assert_eq!(paid["data"]["booking"]["reference"], "224");
    assert_eq!(paid["data"]["booking"]["status"], "paid");
    assert_eq!(paid["data"]["previous_status"], "seated");
    assert_eq!(paid["data"]["booking"]["spend"]["total"], "63.20");
    assert_eq!(paid["data"]["booking"]["spend"]["currency"], "GBP");
    assert_eq!(paid["data"]["venue_id"], venue);
    let matched = deliveries
        .iter()
        .find(|d| d.json()["type"] == "sale.matched")
        .expect("sale.matched")
        .json();
    assert_eq!(matched["data"]["booking"]["reference"], "224");
    assert_eq!(
        matched["data"]["sale"]["match"]["rule"],
        "booking_reference"
    );
    assert!(
        matched["data"]["sale"]["total"]
            .as_str()
            .is_some_and(|t| t.split_once('.').is_some_and(|(_, cents)| cents.len() >= 2)),
        "money as the API writes it: {matched}"
    );
    for d in &deliveries {
        assert_eq!(d.header("content-type"), Some("application/json"));
        assert!(
            d.header("webhook-signature")
                .is_some_and(|s| s.starts_with("v1,"))
        );
    }
    // The specification's own library accepts every delivery, signature and timestamp.
    let verified = verify_with_standardwebhooks(&secret, &deliveries);
    let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
    assert_eq!(verified, ids);
    // The feed carries the same messages under the same ids.
    let feed: Vec<String> = app
        .whole_feed(100)
        .await
        .iter()
        .map(|c| c["id"].as_str().unwrap_or("").to_owned())
        .collect();
    for id in &ids {
        assert!(feed.contains(id), "{id} is in the feed");
    }
}

/// The longer of two snapshots of what a receiver got.
trait Longest {
    fn max_by_len(self, other: Self) -> Self;
}

impl Longest for Vec<Delivery> {
    fn max_by_len(self, other: Self) -> Self {
        if self.len() >= other.len() {
            self
        } else {
            other
        }
    }
}

async fn messages_wait_out_a_receiver_that_is_down_then_arrive_in_order_per_booking(db: Db) {
    let app = spawn_with(db, FAST_WEBHOOKS).await;
    let receiver = Receiver::start().await;
    receiver.fail(true);
    let (subscription, secret) = app.subscribe(&receiver.url).await;
    let venue = app.venue_with_location("lightspeed", "900001", true).await;
    for reference in ["A-1", "B-2"] {
        let mut body = booking_224();
        app.put_booking(venue, reference, body.clone()).await;
        for covers in [5, 6] {
            body["covers"] = json!(covers);
            let (status, put) = app.put_booking(venue, reference, body.clone()).await;
            assert_eq!(put["result"], "updated", "{status} {put}");
        }
        body["status"] = json!("cancelled");
        app.put_booking(venue, reference, body.clone()).await;
    }
    // The receiver is down: attempts fail and are retried, the head of each booking's line only.
    let deadline = Instant::now() + WAIT;
    while receiver.deliveries().await.len() < 8 {
        assert!(Instant::now() < deadline, "the dispatcher retries");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let refused = receiver.deliveries().await;
    let mut heads: BTreeMap<i64, i64> = BTreeMap::new();
    for d in &refused {
        let booking = d.json()["data"]["booking"]["id"]
            .as_i64()
            .expect("a booking");
        let head = heads.entry(booking).or_insert(seq_of(&d.id));
        assert_eq!(
            *head,
            seq_of(&d.id),
            "a booking's later message is not sent while its earlier one waits"
        );
    }
    let pending = app
        .admin_get(&format!("/webhooks/{subscription}/messages?state=pending"))
        .await;
    assert!(
        pending
            .as_array()
            .expect("messages")
            .iter()
            .any(|m| m["attempts"].as_i64() >= Some(1) && m["last_status"] == 503),
        "{pending}"
    );
    receiver.fail(false);
    let delivered = receiver
        .wait_for(WAIT, "all eight messages", |d| {
            d.iter()
                .map(|d| d.id.as_str())
                .collect::<HashSet<_>>()
                .len()
                == 8
        })
        .await;
    let mut per_booking: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    for d in &delivered {
        let message = d.json();
        per_booking
            .entry(
                message["data"]["booking"]["id"]
                    .as_i64()
                    .expect("a booking"),
            )
            .or_default()
            .push((
                seq_of(&d.id),
                message["type"].as_str().unwrap_or("").to_owned(),
            ));
    }
    for (booking, messages) in per_booking {
        let types: Vec<&str> = messages.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            types,
            [
                "booking.created",
                "booking.changed",
                "booking.changed",
                "booking.cancelled"
            ],
            "booking {booking}"
        );
        assert!(
            messages.windows(2).all(|w| w[0].0 < w[1].0),
            "in order: {messages:?}"
        );
    }
    verify_with_standardwebhooks(&secret, &delivered);
    let subscription = app.admin_get(&format!("/webhooks/{subscription}")).await;
    assert_eq!(subscription["failing_since"], Value::Null, "{subscription}");
    assert_eq!(subscription["pending"], 0);
}

async fn the_change_feed_pages_every_change_once_in_commit_order(db: Db) {
    let app = spawn(db).await;
    let venue = app.venue_with_location("lightspeed", "900002", true).await;
    for n in 0..5 {
        let mut body = booking_224();
        body["tables"] = json!([format!("T{n}")]);
        app.put_booking(venue, &format!("F-{n}"), body.clone())
            .await;
        body["covers"] = json!(2);
        app.put_booking(venue, &format!("F-{n}"), body).await;
    }
    let by_two = app.whole_feed(2).await;
    let by_all = app.whole_feed(1000).await;
    assert_eq!(by_two, by_all, "the cursor is stable across page sizes");
    assert_eq!(by_two.len(), 10, "created and changed, five times");
    let cursors: Vec<i64> = by_two
        .iter()
        .map(|c| {
            c["cursor"]
                .as_str()
                .expect("cursor")
                .parse()
                .expect("a number")
        })
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    for change in &by_two {
        assert_eq!(
            change["id"],
            format!("msg_{}", change["cursor"].as_str().unwrap_or(""))
        );
        assert_eq!(change["payload"]["type"], change["type"]);
    }
    let filtered = app
        .admin_get(&format!("/changes?venue={}", venue + 1000))
        .await;
    assert_eq!(filtered["changes"], json!([]));
    for bad in [
        "after=abc",
        "after=-1",
        "after=1.5",
        "limit=0",
        "limit=1001",
    ] {
        assert_eq!(
            app.admin_get_status(&format!("/changes?{bad}")).await,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

async fn a_put_by_reference_is_idempotent_and_never_takes_back_what_the_pos_reported(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", R224_LOCATION, true)
        .await;
    let (status, first) = app.put_booking(venue, "224", booking_224()).await;
    assert_eq!(
        (status, &first["result"]),
        (StatusCode::CREATED, &json!("created"))
    );
    let feed = app.whole_feed(1000).await.len();
    let (status, again) = app.put_booking(venue, "224", booking_224()).await;
    assert_eq!(
        (status, &again["result"]),
        (StatusCode::OK, &json!("unchanged"))
    );
    assert_eq!(again["booking"], first["booking"], "nothing was written");
    assert_eq!(
        app.whole_feed(1000).await.len(),
        feed,
        "and nothing was announced"
    );
    let mut moved = booking_224();
    moved["tables"] = json!(["Table 2", "table 2"]);
    let (_, changed) = app.put_booking(venue, "224", moved.clone()).await;
    assert_eq!(changed["result"], "updated");
    assert_eq!(changed["booking"]["tables"], json!(["2"]));
    let (_, same) = app.put_booking(venue, "224", moved.clone()).await;
    assert_eq!(
        same["result"], "unchanged",
        "table names compare normalised"
    );
    // The POS seats the party (the sale carries reference 224).
    app.deliver_ok("open_regular_tax_inclusive.json").await;
    let id = first["booking"]["id"].as_i64().expect("an id");
    assert_eq!(app.booking_view(id).await["status"], "seated");
    // The platform still thinks it is confirmed: it does not take the seat back, and says so.
    moved["status"] = json!("confirmed");
    let (_, stale) = app.put_booking(venue, "224", moved.clone()).await;
    assert_eq!(stale["result"], "unchanged");
    assert_eq!(stale["booking"]["status"], "seated");
    assert!(
        stale["not_applied"][0]
            .as_str()
            .is_some_and(|why| why.contains("seated")),
        "{stale}"
    );
    // Nor does it cancel guests who are at their table, by a PUT or by leaving them out of a
    // sync (found by the outside attack: a sync's cancel_missing did).
    moved["status"] = json!("cancelled");
    let (_, refused) = app.put_booking(venue, "224", moved).await;
    assert_eq!(refused["booking"]["status"], "seated", "{refused}");
    assert!(refused["not_applied"][0].is_string(), "{refused}");
    // Nor moves them: once they arrived, the POS says where they sit (found by the outside
    // attack: new tables took the check from the booking, a paid one went back to confirmed).
    let mut elsewhere = booking_224();
    elsewhere["tables"] = json!(["Table 9"]);
    elsewhere["start"] = json!("2024-04-04T18:00:00Z");
    let (_, kept) = app.put_booking(venue, "224", elsewhere).await;
    assert_eq!(kept["booking"]["tables"], json!(["2"]), "{kept}");
    assert_eq!(kept["booking"]["start"], "2024-04-04T15:30:00Z", "{kept}");
    assert_eq!(kept["booking"]["status"], "seated");
    assert_eq!(
        kept["not_applied"].as_array().map(Vec::len),
        Some(2),
        "{kept}"
    );
    let (status, synced) = app
        .admin_post(
            &format!("/venues/{venue}/bookings:sync"),
            json!({ "bookings": [], "cancel_missing": {
                "from": "2024-04-04T00:00:00Z", "to": "2024-04-05T00:00:00Z" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{synced}");
    assert_eq!(synced["cancelled"], 0);
    assert_eq!(app.booking_view(id).await["status"], "seated");
    // A start with finer digits than the store keeps is the same start sent again (found by
    // the outside attack: Python's isoformat() made every repeat an update).
    let mut fine = booking_224();
    fine["start"] = json!("2024-05-01T19:30:00.123456Z");
    let (status, _) = app.put_booking(venue, "FINE-1", fine.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, again) = app.put_booking(venue, "FINE-1", fine).await;
    assert_eq!(again["result"], "unchanged", "{again}");
    // Bad references and bodies are refused, not stored.
    for (reference, body) in [
        ("%20", booking_224()),
        ("%00", booking_224()),
        ("%20X1", booking_224()),
        ("X1%0A", booking_224()),
        (
            "225",
            json!({ "start": "2024-04-04T15:30:00Z", "covers": -1 }),
        ),
        ("226", json!({ "start": "9999-12-31T23:59:59Z" })),
        (
            "227",
            json!({ "start": "2024-04-04T15:30:00Z", "reference": "x" }),
        ),
        (
            "228",
            json!({ "start": "2024-04-04T15:30:00Z", "customer": { "name": "x".repeat(600) } }),
        ),
    ] {
        let (status, answer) = app.put_booking(venue, reference, body).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{reference}: {answer}"
        );
    }
    let (status, _) = app.put_booking(venue + 1000, "224", booking_224()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = app.put_booking(venue, "%FF%FE", booking_224()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

async fn a_sync_of_5000_bookings_upserts_idempotently_and_cancels_what_the_platform_dropped(
    db: Db,
) {
    let app = spawn(db).await;
    let venue = app.venue_with_location("lightspeed", "900003", true).await;
    let n = crate::helpers::setting("DIARYSYNC_SYNC_BOOKINGS", 5_000);
    let bookings: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "reference": format!("S-{i}"),
                "start": format!("2026-03-{:02}T{:02}:{:02}:00Z", 1 + i / 400 % 28, 10 + i % 12, i % 60),
                "duration_minutes": 120, "covers": 2 + i % 6, "status": "confirmed",
                "tables": [format!("T{}", i % 40)],
                "customer": { "name": format!("Guest {i} Example-Surname"),
                              "email": format!("guest{i}@example.com"),
                              "phone": format!("+44 20 7946 {:04}", i % 10_000) },
            })
        })
        .collect();
    let range = json!({ "from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z" });
    let size = json!({ "bookings": bookings }).to_string().len();
    eprintln!("a sync of {n} bookings is {size} bytes");
    let (status, _) = app
        .admin_post(
            &format!("/venues/{}/bookings:sync", venue + 1000),
            json!({ "bookings": [] }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such venue");
    let timed = |label: &'static str, started: Instant| {
        eprintln!("sync of {n} bookings, {label}: {:?}", started.elapsed());
    };
    let started = Instant::now();
    let (status, first) = app
        .admin_post(
            &format!("/venues/{venue}/bookings:sync"),
            json!({ "bookings": bookings }),
        )
        .await;
    timed("created", started);
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["created"], n);
    let started = Instant::now();
    let (_, again) = app
        .admin_post(
            &format!("/venues/{venue}/bookings:sync"),
            json!({ "bookings": bookings }),
        )
        .await;
    timed("unchanged", started);
    assert_eq!(
        again,
        json!({ "created": 0, "updated": 0, "unchanged": n, "cancelled": 0 })
    );
    let kept = &bookings[..n - 1];
    let (_, dropped) = app
        .admin_post(
            &format!("/venues/{venue}/bookings:sync"),
            json!({ "bookings": kept, "cancel_missing": range }),
        )
        .await;
    assert_eq!(
        dropped,
        json!({ "created": 0, "updated": 0, "unchanged": n - 1, "cancelled": 1 })
    );
    let mut seen = HashSet::new();
    let mut after = String::new();
    loop {
        let page = app
            .admin_get(&format!("/venues/{venue}/bookings?limit=1000{after}"))
            .await;
        for booking in page["bookings"].as_array().expect("bookings") {
            assert!(seen.insert(booking["id"].as_i64().expect("an id")));
        }
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), n, "every booking, each once");
    let cancelled = app
        .admin_get(&format!("/venues/{venue}/bookings?status=cancelled"))
        .await;
    assert_eq!(cancelled["bookings"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        cancelled["bookings"][0]["reference"],
        format!("S-{}", n - 1)
    );
    // One bad booking refuses the whole sync, naming it; a reference listed twice too.
    let mut bad = kept.to_vec();
    bad[3]["covers"] = json!(-4);
    let (status, answer) = app
        .admin_post(
            &format!("/venues/{venue}/bookings:sync"),
            json!({ "bookings": bad }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.to_string().contains("bookings[3]"), "{answer}");
    let mut unknown = bookings[0].clone();
    unknown["colour"] = json!("red");
    let (status, answer) = app
        .admin_post(
            &format!("/venues/{venue}/bookings:sync"),
            json!({ "bookings": [unknown] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer.to_string().contains("colour"), "{answer}");
    let twice = json!({ "bookings": [bookings[0], bookings[0]] });
    let (status, _) = app
        .admin_post(&format!("/venues/{venue}/bookings:sync"), twice)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn subscriptions_cannot_reach_internal_addresses_or_carry_credentials(db: Db) {
    // An allowed range elsewhere: names are then judged only by what they resolve to.
    let app = spawn_with(db, "[webhooks]\nallow_networks = [\"10.99.0.0/16\"]\n").await;
    let plain = spawn(db).await;
    let (status, answer) = plain
        .admin_post("/webhooks", json!({ "url": "http://localhost:9/hook" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/",
        "http://2130706433/",
        "https://user:secret@hooks.example.com/",
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "not a url",
    ] {
        let (status, answer) = app.admin_post("/webhooks", json!({ "url": url })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {answer}");
    }
    let (status, answer) = app
        .admin_post(
            "/webhooks",
            json!({ "url": "https://hooks.example.com/x", "event_types": ["booking.payed"] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    // A name that resolves to loopback is refused when it is used, not only when saved.
    let receiver = Receiver::start().await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let (subscription, secret) = app.subscribe(&by_name).await;
    let venue = app.venue_with_location("lightspeed", "900004", true).await;
    app.put_booking(venue, "N-1", booking_224()).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let messages = app
            .admin_get(&format!("/webhooks/{subscription}/messages"))
            .await;
        let error = messages[0]["last_error"].as_str().unwrap_or("").to_owned();
        if error.contains("denied") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the attempt is refused: {messages}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receiver.deliveries().await.is_empty(), "nothing reached it");
    // The secret is shown once, at creation.
    let listed = app.admin_get("/webhooks").await.to_string();
    let one = app
        .admin_get(&format!("/webhooks/{subscription}"))
        .await
        .to_string();
    assert!(!listed.contains(&secret) && !one.contains(&secret));
    assert!(!listed.contains("whsec_") && !one.contains("whsec_"));
}

async fn a_receiver_failing_too_long_is_disabled_and_its_messages_wait_for_it(db: Db) {
    let config = format!("{FAST_WEBHOOKS}disable_after_seconds = 1\n");
    let app = spawn_with(db, &config).await;
    let receiver = Receiver::start().await;
    receiver.fail(true);
    let (subscription, secret) = app.subscribe(&receiver.url).await;
    let venue = app.venue_with_location("lightspeed", "900005", true).await;
    app.put_booking(venue, "D-1", booking_224()).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let state = app.admin_get(&format!("/webhooks/{subscription}")).await;
        if state["enabled"] == false {
            assert_eq!(
                state["disabled_reason"],
                "every attempt failed for too long"
            );
            assert_eq!(state["pending"], 1, "{state}");
            break;
        }
        assert!(Instant::now() < deadline, "disabled in time: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // While it is disabled, messages wait rather than being tried.
    let tried = receiver.deliveries().await.len();
    let mut later = booking_224();
    later["covers"] = json!(9);
    app.put_booking(venue, "D-1", later).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.deliveries().await.len(), tried);
    receiver.fail(false);
    let (status, enabled) = app
        .admin_patch(
            &format!("/webhooks/{subscription}"),
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(
        (status, &enabled["enabled"]),
        (StatusCode::OK, &json!(true))
    );
    let delivered = receiver
        .wait_for(WAIT, "the messages that waited, in order", |d| {
            types_of(d) == ["booking.created", "booking.changed"]
        })
        .await;
    verify_with_standardwebhooks(&secret, &delivered);
    // One message sent again by its id: the same id, for the receiver to deduplicate.
    let (_, resent) = app
        .admin_post(
            &format!("/webhooks/{subscription}/resend"),
            json!({ "message_id": delivered[0].id }),
        )
        .await;
    assert_eq!(resent["resent"], 1);
    receiver
        .wait_for(WAIT, "the first message again", |d| {
            d.len() == 3 && d[2].id == d[0].id
        })
        .await;
}

async fn a_message_given_up_lets_its_bookings_next_one_go_and_can_be_sent_again(db: Db) {
    let config = format!("{FAST_WEBHOOKS}retry_for_seconds = 1\n");
    let app = spawn_with(db, &config).await;
    let receiver = Receiver::start().await;
    receiver.fail(true);
    let (subscription, _) = app.subscribe(&receiver.url).await;
    let venue = app.venue_with_location("lightspeed", "900006", true).await;
    app.put_booking(venue, "G-1", booking_224()).await;
    let deadline = Instant::now() + WAIT;
    while app.admin_get(&format!("/webhooks/{subscription}")).await["failed"] != 1 {
        assert!(Instant::now() < deadline, "given up after the retry period");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = app
        .admin_get(&format!("/webhooks/{subscription}/messages?state=failed"))
        .await;
    assert_eq!(failed[0]["type"], "booking.created", "{failed}");
    assert!(failed[0]["attempts"].as_i64() > Some(1), "{failed}");
    receiver.fail(false);
    let mut later = booking_224();
    later["covers"] = json!(9);
    app.put_booking(venue, "G-1", later).await;
    receiver
        .wait_for(WAIT, "the booking's next message", |d| {
            types_of(d) == ["booking.changed"]
        })
        .await;
    // An empty resend is a slip, not "everything" (found by the outside attack).
    let (status, _) = app
        .admin_post(&format!("/webhooks/{subscription}/resend"), json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, resent) = app
        .admin_post(
            &format!("/webhooks/{subscription}/resend"),
            json!({ "state": "failed" }),
        )
        .await;
    assert_eq!(resent["resent"], 1);
    receiver
        .wait_for(WAIT, "the given-up message, sent again", |d| {
            types_of(d) == ["booking.changed", "booking.created"]
        })
        .await;
}

/// A partner that sent at this hour of the week before, silent since: `partner.silent`, on
/// the health API and in `/metrics`, and `partner.resumed` once it sends again.
async fn a_partner_silent_at_an_hour_it_usually_sends_is_an_incident_until_it_resumes(db: Db) {
    let config = format!(
        "{FAST_WEBHOOKS}\n[silence]\nafter_minutes = 1\ncheck_interval_ms = 100\nhistory_weeks = 2\n"
    );
    let app = spawn_with(db, &config).await;
    let venue = app
        .venue_with_location("lightspeed", R224_LOCATION, true)
        .await;
    for fixture in [
        "open_regular_tax_inclusive.json",
        "r224_update_items.json",
        "r224_update_payment.json",
    ] {
        app.deliver_ok(fixture).await;
    }
    // Those events were a week ago, at this hour: the partner usually sends now.
    crate::helpers::run_sql_at(
        db,
        &app.database_url,
        "UPDATE events SET received_at = received_at - 604800000",
    )
    .await;
    let deadline = Instant::now() + WAIT;
    let silent = loop {
        let feed = app.whole_feed(1000).await;
        if let Some(change) = feed.iter().find(|c| c["type"] == "partner.silent") {
            break change.clone();
        }
        assert!(
            Instant::now() < deadline,
            "partner.silent is raised: {feed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(silent["payload"]["data"]["partner"], "lightspeed");
    assert_eq!(silent["payload"]["data"]["venue_id"], venue);
    let health = app.admin_get("/health").await;
    let row = health
        .as_array()
        .expect("health")
        .iter()
        .find(|r| r["partner"] == "lightspeed" && r["venue_id"] == venue)
        .cloned()
        .unwrap_or_default();
    assert!(row["silent_since"].is_string(), "{health}");
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let gauge = format!("diarysync_partner_silent{{partner=\"lightspeed\",venue=\"{venue}\"}} 1");
    assert!(metrics.contains(&gauge), "{metrics}");
    // It sends again.
    app.deliver_ok("r224_close.json").await;
    let deadline = Instant::now() + WAIT;
    while !app
        .whole_feed(1000)
        .await
        .iter()
        .any(|c| c["type"] == "partner.resumed")
    {
        assert!(Instant::now() < deadline, "partner.resumed follows");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let types: Vec<String> = app
        .whole_feed(1000)
        .await
        .iter()
        .filter_map(|c| c["type"].as_str().map(str::to_owned))
        .filter(|t| t.starts_with("partner."))
        .collect();
    assert_eq!(
        types,
        ["partner.silent", "partner.resumed"],
        "raised once, cleared once"
    );
    let health = app.admin_get("/health").await.to_string();
    assert!(!health.contains("silent_since\":\"2"), "{health}");
}

/// A receiver that takes connections and never answers holds its own subscription's share of
/// the node's attempts until they time out, never the other subscriptions': before, attempts
/// went in rounds and every round waited for its slowest (found by the outside attack).
async fn a_receiver_that_hangs_does_not_hold_back_other_subscriptions(db: Db) {
    let config = "[webhooks]\nallow_networks = [\"127.0.0.0/8\"]\npoll_interval_ms = 50\n\
                  timeout_ms = 300000\nconcurrency = 4\n";
    let app = spawn_with(db, config).await;
    let healthy = Receiver::start().await;
    let black_hole = Receiver::start().await;
    black_hole.hang();
    // As many hanging subscriptions as the node has slots: they may hold half of them, no
    // more (found by the second outside attack: four took every slot).
    let (stuck, _) = app.subscribe(&black_hole.url).await;
    for _ in 0..3 {
        app.subscribe(&format!("{}?again", black_hole.url)).await;
    }
    let (_, _) = app.subscribe(&healthy.url).await;
    let venue = app.venue_with_location("lightspeed", "900007", true).await;
    for n in 0..12 {
        let mut body = booking_224();
        body["tables"] = json!([format!("T{n}")]);
        app.put_booking(venue, &format!("H-{n}"), body).await;
    }
    // Long enough for a loaded machine, far shorter than the hanging attempts' timeout.
    healthy
        .wait_for(
            WAIT * 4,
            "every message, while the other receiver hangs",
            |d| d.len() == 12,
        )
        .await;
    let stuck = app
        .admin_get(&format!("/webhooks/{stuck}/messages?state=pending"))
        .await;
    let stuck = stuck.as_array().expect("messages");
    assert_eq!(stuck.len(), 12, "nothing of the hanging one's is lost");
    assert!(
        stuck.iter().all(|m| m["attempts"] == 0),
        "its first attempts are still waiting for an answer: {stuck:?}"
    );
    assert!(
        black_hole.deliveries().await.is_empty(),
        "it never answered, so nothing was recorded"
    );
}

/// A booking the platform states as cancelled, whose guests' check (carrying its reference)
/// is already on a table, is not created away; and a platform never says paid, which is the
/// POS's to report (found by the second outside attack: `paid` on an open check flapped
/// seated-paid-seated on every repeat, announcing a false booking.paid each time).
async fn the_platform_never_creates_seated_guests_away_nor_reports_payment(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", R224_LOCATION, true)
        .await;
    // The POS opens the check before the platform has sent its booking.
    let opened = app.deliver_ok("open_regular_tax_inclusive.json").await;
    assert_eq!(opened["detail"], "unmatched", "{opened}");
    let mut body = booking_224();
    body["status"] = json!("cancelled");
    let (status, created) = app.put_booking(venue, "224", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["booking"]["status"], "seated", "{created}");
    assert!(created["not_applied"][0].is_string(), "{created}");
    body["status"] = json!("paid");
    for _ in 0..3 {
        let (_, again) = app.put_booking(venue, "224", body.clone()).await;
        assert_eq!(again["result"], "unchanged", "{again}");
        assert_eq!(again["booking"]["status"], "seated");
    }
    let paid = app
        .whole_feed(1000)
        .await
        .iter()
        .filter(|c| c["type"] == "booking.paid")
        .count();
    assert_eq!(paid, 0, "no false booking.paid");
}

on_both_stores!(
    the_platform_never_creates_seated_guests_away_nor_reports_payment,
    a_receiver_that_hangs_does_not_hold_back_other_subscriptions,
    a_partner_silent_at_an_hour_it_usually_sends_is_an_incident_until_it_resumes,
    a_pos_close_reaches_the_platform_as_one_verified_booking_paid,
    messages_wait_out_a_receiver_that_is_down_then_arrive_in_order_per_booking,
    the_change_feed_pages_every_change_once_in_commit_order,
    a_put_by_reference_is_idempotent_and_never_takes_back_what_the_pos_reported,
    a_sync_of_5000_bookings_upserts_idempotently_and_cancels_what_the_platform_dropped,
    subscriptions_cannot_reach_internal_addresses_or_carry_credentials,
    a_receiver_failing_too_long_is_disabled_and_its_messages_wait_for_it,
    a_message_given_up_lets_its_bookings_next_one_go_and_can_be_sent_again,
);

/// Real processes: a node killed after committing, before sending, loses no message; on
/// PostgreSQL two nodes then share the sending and each message arrives once.
async fn a_crash_between_commit_and_delivery_loses_nothing_and_nodes_send_each_message_once(
    db: Db,
) {
    let database = crate::helpers::empty_database(db).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let receiver = Receiver::start().await;
    // This node looks for messages once a day: whatever it commits, it never sends.
    let slow = "[webhooks]\nallow_networks = [\"127.0.0.0/8\"]\npoll_interval_ms = 86400000\n";
    let mut first = Node::start(dir.path(), &database.url, slow).await;
    let client = reqwest::Client::new();
    let admin = |method: reqwest::Method, base: &str, path: &str, body: Value| {
        client
            .request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let created: Value = admin(
        reqwest::Method::POST,
        &first.base,
        "/webhooks",
        json!({ "url": receiver.url }),
    )
    .await
    .expect("subscribe")
    .json()
    .await
    .expect("JSON");
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    let venue: Value = admin(
        reqwest::Method::POST,
        &first.base,
        "/venues",
        json!({ "name": "Crash", "timezone": "Europe/London",
                "locations": [{ "partner": "lightspeed", "location_id": R224_LOCATION }] }),
    )
    .await
    .expect("venue")
    .json()
    .await
    .expect("JSON");
    let venue = venue["id"].as_i64().expect("an id");
    // The first is the booking the seed's POS order carries the reference of.
    let bookings: Vec<Value> = (0..30)
        .map(|i| {
            let reference = if i == 0 {
                "224".to_owned()
            } else {
                format!("C-{i}")
            };
            json!({ "reference": reference, "start": "2024-04-04T15:30:00Z",
                    "tables": [format!("T{i}")] })
        })
        .collect();
    let synced = admin(
        reqwest::Method::POST,
        &first.base,
        &format!("/venues/{venue}/bookings:sync"),
        json!({ "bookings": bookings }),
    )
    .await
    .expect("sync");
    assert_eq!(synced.status(), StatusCode::OK);
    let seated = client
        .post(format!(
            "{}/Sales/partners/lightspeed/events/order.updated",
            first.base
        ))
        .bearer_auth(LIGHTSPEED_TOKEN)
        .header("content-type", "application/json")
        .body(crate::helpers::fixture("open_regular_tax_inclusive.json"))
        .send()
        .await
        .expect("deliver");
    assert_eq!(seated.status(), StatusCode::OK);
    first.kill();
    assert!(
        receiver.deliveries().await.is_empty(),
        "the first node sent nothing"
    );
    let fast = "[webhooks]\nallow_networks = [\"127.0.0.0/8\"]\npoll_interval_ms = 20\n\
                retry_base_ms = 50\nretry_max_ms = 200\n";
    let _second = Node::start(dir.path(), &database.url, fast).await;
    let _third = match db {
        Db::Postgres => Some(Node::start(dir.path(), &database.url, fast).await),
        Db::Sqlite => None,
    };
    let feed: Value = admin(
        reqwest::Method::GET,
        &_second.base,
        "/changes?limit=1000",
        json!({}),
    )
    .await
    .expect("feed")
    .json()
    .await
    .expect("JSON");
    let expected = feed["changes"].as_array().map_or(0, Vec::len);
    assert!(
        expected > 31,
        "30 bookings created, a sale matched and its booking seated: {feed}"
    );
    let delivered = receiver
        .wait_for(WAIT, "every committed message", |d| {
            d.iter()
                .map(|d| d.id.as_str())
                .collect::<HashSet<_>>()
                .len()
                >= expected
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = receiver.accepted().await.max_by_len(delivered);
    let types = types_of(&delivered);
    assert_eq!(
        types.iter().filter(|t| *t == "booking.created").count(),
        30,
        "{types:?}"
    );
    assert!(types.iter().any(|t| t == "booking.seated"), "{types:?}");
    let ids: Vec<&str> = delivered.iter().map(|d| d.id.as_str()).collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "each message arrived once");
    verify_with_standardwebhooks(&secret, &delivered);
}

/// A reader following the feed's cursor while two nodes write never misses a change: a
/// position is handed out only as its transaction commits, so none appears behind the
/// cursor later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_reader_following_the_cursor_while_two_nodes_write_misses_nothing() {
    let first = crate::helpers::spawn(Db::Postgres).await;
    let second = crate::helpers::spawn_beside(&first, "").await;
    let venues = [
        first
            .venue_with_location("lightspeed", "910001", true)
            .await,
        first
            .venue_with_location("lightspeed", "910002", true)
            .await,
    ];
    let writers: Vec<_> = [&first, &second]
        .into_iter()
        .zip(venues)
        .map(|(app, venue)| {
            let base = app.base.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for n in 0..60 {
                    let mut body = booking_224();
                    body["tables"] = json!([format!("T{}", n % 7)]);
                    let answer = client
                        .put(format!(
                            "{base}/api/v1/venues/{venue}/bookings/by-reference/W-{n}"
                        ))
                        .bearer_auth(crate::helpers::ADMIN_TOKEN)
                        .json(&body)
                        .send()
                        .await
                        .expect("put");
                    assert!(answer.status().is_success());
                }
            })
        })
        .collect();
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor = "0".to_owned();
    let mut writing = true;
    while writing {
        writing = !writers.iter().all(|w| w.is_finished());
        let page = first
            .admin_get(&format!("/changes?after={cursor}&limit=7"))
            .await;
        seen.extend(page["changes"].as_array().expect("changes").iter().cloned());
        cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    }
    loop {
        let page = second
            .admin_get(&format!("/changes?after={cursor}&limit=1000"))
            .await;
        let changes = page["changes"].as_array().expect("changes").clone();
        if changes.is_empty() {
            break;
        }
        seen.extend(changes);
        cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    }
    let all = first.whole_feed(1000).await;
    assert_eq!(all.len(), 120, "a booking.created for each put");
    assert_eq!(
        seen, all,
        "the follower saw every change, once, in the feed's order"
    );
}

mod crash {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        a_crash_between_commit_and_delivery_loses_nothing_and_nodes_send_each_message_once(
            Db::Sqlite,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        a_crash_between_commit_and_delivery_loses_nothing_and_nodes_send_each_message_once(
            Db::Postgres,
        )
        .await
    }
}
