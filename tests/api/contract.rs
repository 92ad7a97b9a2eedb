//! The inbound contract of seed 000: routes, status codes, and that nothing is ever lost.

use diarysync::store::SaleKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Db, LIGHTSPEED_TOKEN, fixture, json_of, spawn, spawn_with};

const REGULAR_LOCATION: &str = "41910290874370";

async fn a_test_notification_is_answered_200_without_processing(db: Db) {
    let app = spawn(db).await;
    let response = app
        .client
        .post(format!(
            "{}/Sales/partners/lightspeed/events/webhooks.test_notification",
            app.base
        ))
        .body("whatever the partner sends to check the URL")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["reason"], "test_notification");
    let sales = app.admin_get("/sales").await;
    assert_eq!(sales, json!([]), "nothing is processed");

    let unknown = app
        .client
        .post(format!(
            "{}/Sales/partners/nobody/events/webhooks.test_notification",
            app.base
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(
        unknown.status(),
        StatusCode::BAD_REQUEST,
        "an unknown partner is still refused"
    );
}

async fn an_unknown_partner_is_refused_400_and_recorded(db: Db) {
    let app = spawn(db).await;
    let response = app
        .client
        .post(format!(
            "{}/Sales/partners/nobody/events/order.updated",
            app.base
        ))
        .body(fixture("open_regular_tax_inclusive.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer = json_of(response).await;
    assert_eq!(answer["error"], "unknown_partner");
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(event["outcome"], "rejected");
    assert_eq!(event["reason"], "unknown_partner");
    assert_eq!(event["partner"], "nobody");
}

async fn an_unknown_location_is_ignored_with_200_and_recorded(db: Db) {
    let app = spawn(db).await;
    let (status, answer) = app.deliver("open_regular_tax_inclusive.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["outcome"], "ignored");
    assert_eq!(answer["reason"], "unknown_location");
    let ignored = app.admin_get("/events?outcome=ignored").await;
    assert_eq!(ignored[0]["reason"], "unknown_location");
    assert!(
        ignored[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(REGULAR_LOCATION)
    );
    assert_eq!(app.admin_get("/sales").await, json!([]));
}

async fn a_disabled_integration_is_ignored_with_200_and_recorded(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", REGULAR_LOCATION, false)
        .await;
    let (status, answer) = app.deliver("open_regular_tax_inclusive.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["reason"], "integration_disabled");
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(event["venue_id"], venue);
    assert_eq!(app.admin_get("/sales").await, json!([]));
}

async fn an_unrecognised_model_is_ignored_with_200_and_recorded(db: Db) {
    let app = spawn(db).await;
    let response = app
        .post_lightspeed(br#"{"notificationType": "REFUND_ISSUED", "account": {}}"#)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["outcome"], "ignored");
    assert_eq!(answer["reason"], "unrecognised_model");
    assert_eq!(answer["detail"], "notification type \"REFUND_ISSUED\"");
    let response = app.post_lightspeed(br#"{"hello": "world"}"#).await;
    assert_eq!(json_of(response).await["reason"], "unrecognised_model");
}

async fn a_body_that_is_not_json_is_stored_byte_for_byte_and_answered(db: Db) {
    let app = spawn(db).await;
    for body in [
        &b"<order>not json</order>"[..],
        &b"\xff\xfe\x00binary"[..],
        &b"{\"notificationType\": \"OPEN\", \"acc"[..],
    ] {
        let response = app.post_lightspeed(body).await;
        assert_eq!(response.status(), StatusCode::OK);
        let answer = json_of(response).await;
        assert_eq!(answer["outcome"], "ignored");
        assert_eq!(answer["reason"], "malformed_payload");
        let event = app.event(&answer["event_id"]).await;
        let stored = match (&event["body"], &event["body_base64"]) {
            (Value::String(text), _) => text.as_bytes().to_vec(),
            (_, Value::String(encoded)) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .expect("base64 body")
            }
            other => panic!("no body in {other:?}"),
        };
        assert_eq!(stored, body, "the raw body is kept exactly");
        assert_eq!(event["method"], "POST");
        assert_eq!(event["route"], "sales");
        assert_eq!(event["event_type"], "order.updated");
        assert_eq!(event["headers"]["content-type"], "application/json");
        assert!(
            event["headers"].get("authorization").is_none(),
            "credentials are not stored"
        );
    }
}

async fn a_body_over_the_limit_is_refused_413_never_truncated(db: Db) {
    let app = spawn_with(db, "max_body_bytes = 2048").await;
    let body = vec![b'x'; 4096];
    let response = app.post_lightspeed(&body).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let answer = json_of(response).await;
    assert_eq!(answer["error"], "body_too_large");
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(event["reason"], "body_too_large");
    assert_eq!(
        event["body_bytes"], 0,
        "an oversized body is refused whole, not truncated"
    );

    // Without Content-Length (chunked), the limit holds too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'y'; 512])).collect();
    let response = app
        .client
        .post(format!(
            "{}/Sales/partners/lightspeed/events/order.updated",
            app.base
        ))
        .bearer_auth(LIGHTSPEED_TOKEN)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

async fn the_same_sale_in_flight_gets_409_with_retry_after(db: Db) {
    let app = spawn(db).await;
    app.venue_with_location("lightspeed", REGULAR_LOCATION, true)
        .await;
    let held = app
        .store
        .in_flight()
        .try_acquire(&[SaleKey {
            partner: "lightspeed".into(),
            location_id: REGULAR_LOCATION.into(),
            external_id: "1560383093473282".into(),
        }])
        .expect("the sale is free");
    let response = app
        .post_lightspeed(&fixture("open_regular_tax_inclusive.json"))
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.headers()["retry-after"], "60");
    let answer = json_of(response).await;
    assert_eq!(answer["error"], "sale_in_flight");
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(
        event["outcome"], "rejected",
        "the refused delivery is still recorded"
    );
    drop(held);
    let (status, answer) = app.deliver("open_regular_tax_inclusive.json").await;
    assert_eq!(status, StatusCode::OK, "the retry succeeds: {answer}");
    assert_eq!(answer["outcome"], "processed");
}

async fn our_own_failure_is_500_and_the_raw_event_survives(db: Db) {
    let app = spawn(db).await;
    app.venue_with_location("lightspeed", REGULAR_LOCATION, true)
        .await;
    break_sale_writes(&app.database_url, db).await;
    let (status, answer) = app.deliver("open_regular_tax_inclusive.json").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(answer["error"], "processing_error");
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(event["outcome"], "failed");
    assert_eq!(
        event["body"],
        String::from_utf8(fixture("open_regular_tax_inclusive.json")).expect("utf-8")
    );
    assert_eq!(
        app.admin_get("/sales").await,
        json!([]),
        "the failed processing left no partial sale"
    );
}

async fn concurrent_events_fail_alone_and_none_is_lost(db: Db) {
    let app = spawn(db).await;
    app.venue_with_location("lightspeed", REGULAR_LOCATION, true)
        .await;
    break_sale_writes(&app.database_url, db).await;
    let sale: Value =
        serde_json::from_slice(&fixture("open_regular_tax_inclusive.json")).expect("json");
    let notice: Value = serde_json::from_slice(&fixture("error_notification.json")).expect("json");
    async fn post(
        app: &crate::helpers::TestApp,
        body: Vec<u8>,
        is_sale: bool,
    ) -> (bool, StatusCode) {
        (is_sale, app.post_lightspeed(&body).await.status())
    }
    let mut requests = Vec::new();
    for i in 0..20 {
        let mut order = sale.clone();
        order["account"]["id"] = json!(format!("concurrent-{i}"));
        requests.push(post(&app, order.to_string().into_bytes(), true));
        // Each notice its own, as Lightspeed's carry a trace id each.
        let mut notice = notice.clone();
        notice["traceId"] = json!(format!("trace-{i}"));
        requests.push(post(&app, notice.to_string().into_bytes(), false));
    }
    let answers = futures_util::future::join_all(requests).await;
    for (is_sale, status) in &answers {
        let expected = if *is_sale {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        assert_eq!(*status, expected, "sale: {is_sale}");
    }
    let processed = app.admin_get("/events?outcome=processed&limit=1000").await;
    let failed = app.admin_get("/events?outcome=failed&limit=1000").await;
    assert_eq!(
        processed.as_array().map(Vec::len),
        Some(20),
        "every notice committed"
    );
    assert_eq!(
        failed.as_array().map(Vec::len),
        Some(20),
        "every failed sale kept"
    );
}

/// Sabotages the schema under the running service so that applying a sale fails: a trigger
/// refuses every write of a sale row.
async fn break_sale_writes(database_url: &str, db: Db) {
    match db {
        Db::Sqlite => {
            let path = database_url.trim_start_matches("sqlite://");
            let conn = rusqlite::Connection::open(path).expect("open");
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .expect("busy timeout");
            conn.execute_batch(
                "CREATE TRIGGER sabotage BEFORE INSERT ON sales BEGIN SELECT RAISE(ABORT, 'sabotaged'); END;",
            )
            .expect("trigger");
        }
        Db::Postgres => {
            let mut conn = sqlx::PgConnection::connect(database_url)
                .await
                .expect("connect");
            for sql in [
                "CREATE FUNCTION sabotage() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'sabotaged'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER sabotage BEFORE INSERT ON sales FOR EACH ROW EXECUTE FUNCTION sabotage()",
            ] {
                sqlx::query(sql).execute(&mut conn).await.expect("trigger");
            }
        }
    }
}

async fn the_callback_route_accepts_get_with_a_query_string_only(db: Db) {
    let app = spawn(db).await;
    let response = app
        .client
        .get(format!(
            "{}/partners/ls-url-token/webhooks/callback/new_confirmed_web?event=new_confirmed_web&booking_id=1234&token=url-token-secret",
            app.base
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(event["method"], "GET");
    assert_eq!(event["route"], "callback");
    assert_eq!(
        event["query"],
        "event=new_confirmed_web&booking_id=1234&token=[redacted]"
    );
}

async fn the_callback_route_processes_like_the_sales_route(db: Db) {
    let app = spawn(db).await;
    app.venue_with_location("lightspeed", REGULAR_LOCATION, true)
        .await;
    let response = app
        .client
        .post(format!(
            "{}/partners/lightspeed/webhooks/callback/order",
            app.base
        ))
        .bearer_auth(LIGHTSPEED_TOKEN)
        .body(fixture("open_regular_tax_inclusive.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["outcome"], "processed");
    assert_eq!(
        app.sales_with_external_id("1560383093473282").await.len(),
        1
    );
}

async fn the_service_reports_health_and_readiness(db: Db) {
    let app = spawn(db).await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

crate::on_both_stores!(
    a_test_notification_is_answered_200_without_processing,
    an_unknown_partner_is_refused_400_and_recorded,
    an_unknown_location_is_ignored_with_200_and_recorded,
    a_disabled_integration_is_ignored_with_200_and_recorded,
    an_unrecognised_model_is_ignored_with_200_and_recorded,
    a_body_that_is_not_json_is_stored_byte_for_byte_and_answered,
    a_body_over_the_limit_is_refused_413_never_truncated,
    the_same_sale_in_flight_gets_409_with_retry_after,
    our_own_failure_is_500_and_the_raw_event_survives,
    concurrent_events_fail_alone_and_none_is_lost,
    the_callback_route_accepts_get_with_a_query_string_only,
    the_callback_route_processes_like_the_sales_route,
    the_service_reports_health_and_readiness,
);

/// Across processes the in-flight lock lives in PostgreSQL: a lock held by another
/// connection (another diarysync node) makes this node answer 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_sale_locked_by_another_node_gets_409() {
    let app = spawn(Db::Postgres).await;
    app.venue_with_location("lightspeed", REGULAR_LOCATION, true)
        .await;
    let mut other_node = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("connect");
    let mut tx = other_node.begin().await.expect("begin");
    let key = diarysync::store::postgres::advisory_key(&SaleKey {
        partner: "lightspeed".into(),
        location_id: REGULAR_LOCATION.into(),
        external_id: "1560383093473282".into(),
    });
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut *tx)
        .await
        .expect("lock");
    let response = app
        .post_lightspeed(&fixture("open_regular_tax_inclusive.json"))
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    tx.rollback().await.expect("release");
    let (status, _) = app.deliver("open_regular_tax_inclusive.json").await;
    assert_eq!(status, StatusCode::OK);
}
