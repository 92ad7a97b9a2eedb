//! One bad request never stops the service: poison times are invalid payloads, a write that
//! panics fails alone, readiness tells the truth, abuse without credentials costs the
//! attacker and not the partner.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{CHECKFRONT_PARTNER, Db, TestApp, json_of, spawn_with};

/// A Lightspeed OPEN on table T1 of location 42, with `open_date` as its raw JSON text.
fn open_at(id: &str, open_date: &str) -> Vec<u8> {
    format!(
        r#"{{"notificationType":"OPEN","businessLocationId":"42","account":{{"id":"{id}","openDate":{open_date},"tableName":"T1","totalAmount":5}}}}"#
    )
    .into_bytes()
}

/// A venue owning Lightspeed location 42 with a booking on T1 at 2024-04-04 18:00 UTC.
async fn venue_with_t1(app: &TestApp) -> (i64, i64) {
    let venue = app.venue_with_location("lightspeed", "42", true).await;
    let booking = app
        .booking(
            venue,
            json!({ "reference": "r1", "start": "2024-04-04T18:00:00Z", "duration_minutes": 120,
                    "covers": 2, "tables": ["T1"] }),
        )
        .await;
    (venue, booking)
}

async fn ready(app: &TestApp) -> StatusCode {
    app.client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz")
        .status()
}

async fn a_time_beyond_any_calendar_is_an_invalid_payload_and_the_next_delivery_is_processed(
    db: Db,
) {
    let app = spawn_with(db, "").await;
    let (_, booking) = venue_with_t1(&app).await;
    // Year 262,142 (chrono's edge), before 1970, i64's ends, beyond i64, as text.
    let poison = [
        "8210266876799999",
        "-8334601228800000",
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999999",
        "1e30",
        "\"8210266876799999\"",
        "7258118400000",
    ];
    for (n, open_date) in poison.iter().enumerate() {
        let response = app
            .post_lightspeed(&open_at(&format!("p{n}"), open_date))
            .await;
        let status = response.status();
        let answer = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "openDate {open_date}: {answer}");
        assert_eq!(answer["reason"], "invalid_payload", "openDate {open_date}");
        let event = app.event(&answer["event_id"]).await;
        assert_eq!(event["reason"], "invalid_payload");
        assert!(
            event["body"]
                .as_str()
                .is_some_and(|b| b.contains("openDate")),
            "the raw event is kept for a replay: {event}"
        );
    }
    // Nothing was applied, and the service goes on: the next delivery, an admin write and
    // readiness all work.
    assert!(app.sales_with_external_id("p0").await.is_empty());
    let answer = json_of(app.post_lightspeed(&open_at("good", "1712253600000")).await).await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
    let view = app.booking_view(booking).await;
    assert_eq!(view["status"], "seated", "{view}");
    let (status, _) = app
        .admin_post(
            "/venues",
            json!({ "name": "Another", "timezone": "UTC", "locations": [] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(ready(&app).await, StatusCode::OK);
    // A replay of the poison events is as harmless as their first delivery.
    let (status, summary) = app
        .admin_post("/events/replay", json!({ "reason": "invalid_payload" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["replayed"], poison.len(), "{summary}");
    assert_eq!(ready(&app).await, StatusCode::OK);
}

fn checkfront_booking(code: &str, start: &str, end: &str) -> Vec<u8> {
    json!({
        "@attributes": { "host": "your-company.checkfront.com" },
        "booking": { "status": "PAID", "code": code, "start_date": start, "end_date": end,
                     "customer": { "name": "A Guest" } }
    })
    .to_string()
    .into_bytes()
}

async fn a_booking_platforms_date_far_in_the_future_or_backwards_is_an_invalid_payload(db: Db) {
    let app = spawn_with(db, CHECKFRONT_PARTNER).await;
    app.venue_with_location("checkfront", "your-company.checkfront.com", true)
        .await;
    let cases = [
        ("FAR", "253402300800000", "253402300800000"),
        ("MAXED", "9223372036854775807", "9223372036854775807"),
        ("NEGATIVE", "-9223372036854775808", "1"),
        ("CENTURIES", "1712253600", "7258118400"),
        ("NOT-A-TIME", "1712253600", "soon"),
    ];
    for (code, start, end) in cases {
        let (status, answer) = app
            .post_checkfront(checkfront_booking(code, start, end), "application/json")
            .await;
        assert_eq!(status, StatusCode::OK, "{code}");
        assert_eq!(answer["reason"], "invalid_payload", "{code}: {answer}");
    }
    let (_, answer) = app
        .post_checkfront(
            checkfront_booking("GOOD", "1712253600", "1712260800"),
            "application/json",
        )
        .await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
    assert_eq!(ready(&app).await, StatusCode::OK);
}

async fn admin_times_outside_1970_to_2199_are_refused_and_the_service_goes_on(db: Db) {
    let app = spawn_with(db, "").await;
    let (venue, booking) = venue_with_t1(&app).await;
    for start in [
        "+262142-01-01T00:00:00Z",
        "-262143-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
    ] {
        let (status, answer) = app
            .admin_post(
                &format!("/venues/{venue}/bookings"),
                json!({ "start": start, "duration_minutes": 90, "covers": 2, "tables": ["T2"] }),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{start}: {answer}"
        );
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains("start")),
            "{answer}"
        );
        let (status, _) = app
            .admin_patch(&format!("/bookings/{booking}"), json!({ "start": start }))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "PATCH {start}");
    }
    assert_eq!(
        app.admin_get_status(&format!("/venues/{venue}/diary?date=1900-01-01"))
            .await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.admin_get_status(&format!("/venues/{venue}/diary?date=9999-12-31"))
            .await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.admin_get_status("/events?from=1800-01-01T00:00:00Z")
            .await,
        StatusCode::BAD_REQUEST
    );
    let (status, _) = app
        .admin_post(
            "/events/replay",
            json!({ "from": "+100000-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .admin_post(
            "/retention/purge",
            json!({ "before": "-100000-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Every write after them works.
    let (status, answer) = app
        .admin_post(
            &format!("/venues/{venue}/bookings"),
            json!({ "start": "2199-12-31T20:00:00Z", "duration_minutes": 90, "covers": 2,
                    "tables": ["T9"] }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the range's last evening: {answer}"
    );
    assert_eq!(
        app.admin_get_status(&format!("/venues/{venue}/diary?date=2199-12-31"))
            .await,
        StatusCode::OK
    );
    assert_eq!(ready(&app).await, StatusCode::OK);
}

/// A test notification that cannot be stored is never answered 2xx.
async fn a_test_notification_that_cannot_be_stored_is_answered_500(app: &TestApp) {
    let response = app
        .client
        .post(format!(
            "{}/Sales/partners/lightspeed/events/webhooks.test_notification",
            app.base
        ))
        .bearer_auth(crate::helpers::LIGHTSPEED_TOKEN)
        .body("{}")
        .send()
        .await
        .expect("request");
    let status = response.status();
    let answer = json_of(response).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["error"], "store_error");
}

/// While the database takes no writes, readiness is false and a delivery is never a 2xx;
/// once it does again, both recover.
async fn readiness_is_false_while_the_database_takes_no_writes_and_true_again_after(db: Db) {
    let app = spawn_with(db, "readiness_timeout_ms = 1000").await;
    venue_with_t1(&app).await;
    assert_eq!(ready(&app).await, StatusCode::OK);
    let outage = Outage::begin(db, &app).await;
    assert_eq!(ready(&app).await, StatusCode::SERVICE_UNAVAILABLE);
    let body = ready_body(&app).await;
    assert!(body.starts_with("not ready"), "{body}");
    a_test_notification_that_cannot_be_stored_is_answered_500(&app).await;
    let response = app
        .post_lightspeed(&open_at("during", "1712253600000"))
        .await;
    assert!(
        response.status().is_server_error(),
        "a delivery that cannot be stored is never acknowledged: {}",
        response.status()
    );
    outage.end().await;
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = ready(&app).await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK, "ready again once the database is");
    let answer = json_of(
        app.post_lightspeed(&open_at("after", "1712253600000"))
            .await,
    )
    .await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
}

async fn ready_body(app: &TestApp) -> String {
    app.client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz")
        .text()
        .await
        .expect("text")
}

/// The database taking no writes, as operators meet it: on SQLite another program holding
/// the write lock (the sqlite3 shell in a transaction); on PostgreSQL the database refusing
/// connections (and its sessions ended).
enum Outage {
    Sqlite(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>),
    Postgres(String, String),
}

impl Outage {
    async fn begin(db: Db, app: &TestApp) -> Outage {
        match db {
            Db::Sqlite => {
                let path = app.database_url.trim_start_matches("sqlite://").to_owned();
                let (release, released) = std::sync::mpsc::channel::<()>();
                let (locked, is_locked) = std::sync::mpsc::channel::<()>();
                let holder = std::thread::spawn(move || {
                    let conn = rusqlite::Connection::open(&path).expect("open");
                    conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
                    let _ = locked.send(());
                    let _ = released.recv();
                    let _ = conn.execute_batch("ROLLBACK");
                });
                is_locked.recv().expect("locked");
                Outage::Sqlite(release, holder)
            }
            Db::Postgres => {
                let admin = std::env::var("DIARYSYNC_TEST_PG_URL").expect("test server");
                let name = app
                    .database_url
                    .rsplit('/')
                    .next()
                    .expect("database name")
                    .to_owned();
                pg(
                    &admin,
                    &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
                )
                .await;
                pg(
                    &admin,
                    &format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                    ),
                )
                .await;
                Outage::Postgres(admin, name)
            }
        }
    }

    async fn end(self) {
        match self {
            Outage::Sqlite(release, holder) => {
                let _ = release.send(());
                holder.join().expect("lock holder");
            }
            Outage::Postgres(admin, name) => {
                pg(
                    &admin,
                    &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
                )
                .await;
            }
        }
    }
}

async fn pg(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
}

const LIMITED: &str = r#"
refused_rate_limit_per_second = 1000
refused_rate_limit_burst = 1000
client_refused_rate_limit_per_second = 1000
client_refused_rate_limit_burst = 1000

[[partners]]
name = "limited"
handler = "lightspeed-kseries"
rate_limit_per_second = 2
rate_limit_burst = 5
[partners.auth]
scheme = "bearer"
token = "limited-token"
"#;

async fn post_limited(app: &TestApp, token: &str, body: Vec<u8>) -> StatusCode {
    app.client
        .post(format!(
            "{}/Sales/partners/limited/events/order.updated",
            app.base
        ))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("request")
        .status()
}

async fn a_flood_with_a_wrong_token_never_costs_the_partner_a_single_429(db: Db) {
    let app = spawn_with(db, LIMITED).await;
    venue_with_t1(&app).await;
    let flood = (0..200).map(|n| {
        let app = &app;
        async move {
            post_limited(
                app,
                "wrong-token",
                open_at(&format!("f{n}"), "1712253600000"),
            )
            .await
        }
    });
    let statuses = futures_util::future::join_all(flood).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::BAD_REQUEST),
        "a wrong token is refused, never counted as the partner's: {statuses:?}"
    );
    for n in 0..5 {
        let status = post_limited(
            &app,
            "limited-token",
            open_at(&format!("ok{n}"), "1712253600000"),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the partner's delivery {n} after the flood"
        );
    }
}

const REFUSALS: &str = r#"
refused_body_bytes_per_hour = 10000
client_refused_rate_limit_per_second = 1
client_refused_rate_limit_burst = 4
"#;

async fn refused_deliveries_keep_size_hash_and_first_4_kib_within_limits_of_their_own(db: Db) {
    use sha2::Digest;
    let app = spawn_with(db, REFUSALS).await;
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let mut answers = Vec::new();
    for _ in 0..6 {
        let response = app
            .client
            .post(format!(
                "{}/Sales/partners/lightspeed/events/order.updated",
                app.base
            ))
            .bearer_auth("not-the-token")
            .body(body.clone())
            .send()
            .await
            .expect("request");
        let status = response.status();
        answers.push((status, json_of(response).await));
    }
    let statuses: Vec<StatusCode> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        &statuses[..4],
        &[StatusCode::BAD_REQUEST; 4],
        "the client's burst: {statuses:?}"
    );
    assert!(
        statuses[4..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "beyond the client's own limit: {statuses:?}"
    );
    let mut kept = Vec::new();
    for (_, answer) in &answers[..4] {
        let event = app.event(&answer["event_id"]).await;
        assert_eq!(event["reason"], "bad_signature");
        assert_eq!(event["body_sha256"], sha.as_str(), "of the whole body");
        assert_eq!(event["received_bytes"], 200_000, "its real size");
        assert_eq!(event["body_truncated"], true);
        kept.push(event["body"].as_str().map_or(0, str::len));
    }
    assert_eq!(
        kept,
        vec![4096, 4096, 0, 0],
        "4 KiB each until the hourly budget of refused bytes is spent"
    );
    let rejected = app.admin_get("/events?outcome=rejected&limit=100").await;
    assert_eq!(
        rejected.as_array().map(Vec::len),
        Some(4),
        "what is over the client's limit is not written"
    );
    // An unknown partner name is refused under the same limits, and does not touch
    // lightspeed's deliveries.
    let answer = json_of(app.post_lightspeed(&open_at("real", "1712253600000")).await).await;
    assert_ne!(answer["error"], "rate_limited", "{answer}");
}

/// Times found by an outside attack that reached the store unchecked: update times in the
/// wrong unit (which froze a sale), payment dates dropped in silence, local times that
/// leave the range once read in the venue's zone, leap seconds, and table names too long
/// for SQLite's LIKE.
async fn update_times_payment_dates_local_times_and_table_names_are_read_into_range(db: Db) {
    let salesplay =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("partners/salesplay.rhai");
    let extra = format!(
        "{CHECKFRONT_PARTNER}\n[[partners]]\nname = \"salesplay\"\nhandler = \"script\"\n\
         script = \"{}\"\n[partners.auth]\nscheme = \"url-token\"\nsecret = \"sp-token\"\n",
        salesplay.display()
    );
    let app = spawn_with(db, &extra).await;
    let (venue, booking) = venue_with_t1(&app).await;
    // An updateDate in microseconds: refused, and it does not freeze the sale.
    let body = |update: &str, kind: &str, total: u32| {
        format!(
            r#"{{"notificationType":"{kind}","businessLocationId":"42","account":{{"id":"frozen","openDate":1712253600000,"updateDate":{update},"closeDate":1712257200000,"tableName":"T1","totalAmount":{total},"paidAmount":{total}}}}}"#
        )
    };
    let answer = json_of(
        app.post_lightspeed(body("1712253600000000", "OPEN", 5).as_bytes())
            .await,
    )
    .await;
    assert_eq!(answer["reason"], "invalid_payload", "{answer}");
    let answer = json_of(
        app.post_lightspeed(body("1712253700000", "OPEN", 5).as_bytes())
            .await,
    )
    .await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
    let answer = json_of(
        app.post_lightspeed(body("1712257200000", "CLOSE", 99).as_bytes())
            .await,
    )
    .await;
    assert_eq!(
        answer["outcome"], "processed",
        "the CLOSE is not stale: {answer}"
    );
    assert_eq!(app.booking_view(booking).await["status"], "paid");
    // A table name no floor plan has: refused, and bookings around it can still be made.
    let long = format!(
        r#"{{"notificationType":"OPEN","businessLocationId":"42","account":{{"id":"long","openDate":1712253600000,"tableName":"{}","totalAmount":5}}}}"#,
        "T".repeat(60_000)
    );
    let answer = json_of(app.post_lightspeed(long.as_bytes()).await).await;
    assert_eq!(answer["reason"], "invalid_payload", "{answer}");
    let (status, created) = app
        .admin_post(
            &format!("/venues/{venue}/bookings"),
            json!({ "start": "2024-04-04T18:30:00Z", "duration_minutes": 90, "covers": 2,
                    "tables": ["T2"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = app
        .admin_post(
            &format!("/venues/{venue}/bookings"),
            json!({ "start": "2024-04-04T18:30:00Z", "tables": ["x".repeat(65)] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A leap second starts a whole booking: 120 minutes, ending on the minute.
    let (status, leap) = app
        .admin_post(
            &format!("/venues/{venue}/bookings"),
            json!({ "start": "2016-12-31T23:59:60Z", "duration_minutes": 120, "covers": 2 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{leap}");
    assert_eq!(leap["start"], "2017-01-01T00:00:00Z");
    assert_eq!(leap["end"], "2017-01-01T02:00:00Z");
    assert_eq!(leap["duration_minutes"], 120);
    // A Checkfront payment date out of range is refused, not stored as no date.
    app.venue_with_location("checkfront", "your-company.checkfront.com", true)
        .await;
    let payment = json!({ "@attributes": { "host": "your-company.checkfront.com" },
        "transaction": { "booking_id": "KMVQ-060314", "transaction_id": "T1", "amount": "10.00",
                         "status": "PAID", "date": "99999999999999999999999" } });
    let (_, answer) = app
        .post_checkfront(payment.to_string().into_bytes(), "application/json")
        .await;
    assert_eq!(answer["reason"], "invalid_payload", "{answer}");
    // A local time inside the range that leaves it in the venue's zone.
    let (status, la) = app
        .admin_post(
            "/venues",
            json!({ "name": "LA", "timezone": "America/Los_Angeles",
                    "locations": [{ "partner": "salesplay", "location_id": "la-shop" }] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{la}");
    for at in ["2199-12-31 23:59:59", "1970-01-01 00:30:00"] {
        let receipt = json!({ "merchant_id": "m", "type": "receipts.update", "created_at": at,
            "receipts": [{ "receipt_number": "1-1", "shop_id": "la-shop", "receipt_type": "SALE",
                           "receipt_date_time": at, "total_money": 10 }] });
        let response = app
            .client
            .post(format!(
                "{}/partners/salesplay/webhooks/callback/receipts.update?token=sp-token",
                app.base
            ))
            .body(receipt.to_string())
            .send()
            .await
            .expect("request");
        let answer = json_of(response).await;
        assert_eq!(answer["reason"], "invalid_payload", "{at}: {answer}");
    }
    // The diary of a day a zone skipped (Samoa, 2011-12-30) is empty, not an error.
    let (_, apia) = app
        .admin_post(
            "/venues",
            json!({ "name": "Apia", "timezone": "Pacific/Apia", "locations": [] }),
        )
        .await;
    for day in ["2011-12-29", "2011-12-30", "2011-12-31"] {
        let status = app
            .admin_get_status(&format!("/venues/{}/diary?date={day}", apia["id"]))
            .await;
        assert_eq!(status, StatusCode::OK, "{day}");
    }
}

/// A check id, an origin id or a location id longer than any partner's (a hostile partner,
/// a POS bug pasting a whole document): PostgreSQL cannot index a key that long, so the
/// write failed with a 500 that the partner would retry forever. Now it is an invalid
/// payload on both stores, kept for a replay, and the same burst's other deliveries are
/// processed (found by the outside attack on issue 15).
async fn an_identifier_longer_than_any_partners_is_an_invalid_payload_not_a_failed_write(db: Db) {
    let app = spawn_with(db, "").await;
    let (_, booking) = venue_with_t1(&app).await;
    let long = "x".repeat(3000);
    let poison = [
        format!(
            r#"{{"notificationType":"OPEN","businessLocationId":"42","account":{{"id":"{long}","openDate":1712253600000,"tableName":"T1","totalAmount":5}}}}"#
        ),
        format!(
            r#"{{"notificationType":"OPEN","businessLocationId":"42","account":{{"id":"split-1","originAccountId":"{long}","openDate":1712253600000,"tableName":"T1","totalAmount":5}}}}"#
        ),
        format!(
            r#"{{"notificationType":"OPEN","businessLocationId":"{long}","account":{{"id":"far-1","openDate":1712253600000,"tableName":"T1","totalAmount":5}}}}"#
        ),
    ];
    let sends = poison
        .iter()
        .map(|body| app.post_lightspeed(body.as_bytes()));
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|n| open_at(&format!("good-{n}"), "1712253600000"))
        .collect();
    let good = bodies.iter().map(|body| app.post_lightspeed(body));
    let (poisoned, good) = tokio::join!(
        futures_util::future::join_all(sends),
        futures_util::future::join_all(good)
    );
    for response in poisoned {
        let status = response.status();
        let answer = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["reason"], "invalid_payload", "{answer}");
        assert!(
            answer["detail"]
                .as_str()
                .is_some_and(|d| d.contains("at most 256")),
            "{answer}"
        );
    }
    for response in good {
        let answer = json_of(response).await;
        assert_eq!(answer["outcome"], "processed", "{answer}");
    }
    assert!(app.sales_with_external_id("split-1").await.is_empty());
    let view = app.booking_view(booking).await;
    assert_eq!(view["status"], "seated", "{view}");
}

/// The sqlite3 shell (or any program) opening a busy node's file for an exclusive session
/// believed it was the file's last user, checkpointed and deleted the node's WAL under it,
/// after which a crash lost acknowledged events (found by the outside attack on issue 17).
/// The checkpointer had synced the database through a descriptor it opened and closed each
/// time, and closing any descriptor of a file drops every POSIX lock the process holds on
/// it, SQLite's own included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_programs_exclusive_session_never_takes_a_busy_nodes_wal() {
    let app = spawn_with(Db::Sqlite, "").await;
    venue_with_t1(&app).await;
    // Enough commits for the checkpointer to copy and sync well past a WAL's restart.
    for n in 0..1_500 {
        let response = app
            .post_lightspeed(&open_at(&format!("wal-{n}"), "1712253600000"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let path = app.database_url.trim_start_matches("sqlite://").to_owned();
    let wal = format!("{path}-wal");
    assert!(std::path::Path::new(&wal).exists(), "the node's WAL");
    let python = std::env::var("DIARYSYNC_TEST_WEBHOOKS_PYTHON").unwrap_or("python3".into());
    let session = std::process::Command::new(python)
        .args([
            "-c",
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], timeout=0.2, isolation_level=None)\n\
             try:\n    c.execute('BEGIN EXCLUSIVE'); c.execute('COMMIT')\n\
             except sqlite3.OperationalError as e:\n    print(e)\n\
             c.close()",
            &path,
        ])
        .output()
        .expect("python3 with sqlite3");
    assert!(session.status.success(), "{session:?}");
    assert!(
        std::path::Path::new(&wal).exists(),
        "another program's session deleted the node's WAL"
    );
    let answer = json_of(
        app.post_lightspeed(&open_at("after", "1712253600000"))
            .await,
    )
    .await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
}

/// Fault injection: only in the test suite's build (`--features failpoints`).
#[cfg(feature = "failpoints")]
mod injected {
    use std::time::Duration;

    use super::*;

    /// A busy node was reported not ready: `/readyz`'s probe write waited its turn behind
    /// every delivery queued, so at saturation a balancer's check timed out and took the
    /// busy nodes out exactly when the others needed them (seen in `scripts/fleet`). The
    /// probe now goes before the queue, after the batch being written.
    async fn a_node_busy_with_a_queue_longer_than_the_readiness_timeout_is_ready(db: Db) {
        let _held = crate::helpers::FAIL_APPLY_SALE_HELD.lock().await;
        let app = std::sync::Arc::new(spawn_with(db, "readiness_timeout_ms = 1000").await);
        app.venue_with_location("lightspeed", "42", true).await;
        let point = diarysync::store::FAIL_APPLY_SALE;
        let sale = |n: usize| format!("{}busy{n}", diarysync::store::FAIL_POINT_SALES);
        // The writer stops inside a first delivery's batch...
        fail::cfg(point, "pause").expect("fail point");
        let first = tokio::spawn({
            let app = std::sync::Arc::clone(&app);
            let body = open_at(&sale(0), "1712253600000");
            async move { app.post_lightspeed(&body).await.status() }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // ...while 80 more queue behind it, 50 ms of work each: four seconds of queue.
        let queued: Vec<_> = (1..=80)
            .map(|n| {
                let app = std::sync::Arc::clone(&app);
                let body = open_at(&sale(n), "1712253600000");
                tokio::spawn(async move { app.post_lightspeed(&body).await.status() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let probe = tokio::spawn({
            let app = std::sync::Arc::clone(&app);
            async move { ready(&app).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        fail::cfg(point, "sleep(50)").expect("fail point");
        let readiness = probe.await.expect("probe");
        let done_before = queued.iter().filter(|q| q.is_finished()).count();
        fail::remove(point);
        assert_eq!(readiness, StatusCode::OK, "a busy node is ready");
        assert!(
            done_before < 40,
            "readiness answered before the queue was written ({done_before} of 80 done)"
        );
        assert_eq!(first.await.expect("first"), StatusCode::OK);
        for delivery in queued {
            assert_eq!(delivery.await.expect("delivery"), StatusCode::OK);
        }
    }

    crate::on_both_stores!(a_node_busy_with_a_queue_longer_than_the_readiness_timeout_is_ready);
}

crate::on_both_stores!(
    an_identifier_longer_than_any_partners_is_an_invalid_payload_not_a_failed_write,
    update_times_payment_dates_local_times_and_table_names_are_read_into_range,
    a_time_beyond_any_calendar_is_an_invalid_payload_and_the_next_delivery_is_processed,
    a_booking_platforms_date_far_in_the_future_or_backwards_is_an_invalid_payload,
    admin_times_outside_1970_to_2199_are_refused_and_the_service_goes_on,
    readiness_is_false_while_the_database_takes_no_writes_and_true_again_after,
    a_flood_with_a_wrong_token_never_costs_the_partner_a_single_429,
    refused_deliveries_keep_size_hash_and_first_4_kib_within_limits_of_their_own,
);
