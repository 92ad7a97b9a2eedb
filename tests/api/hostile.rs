//! Hostile and malformed input gets a clear 4xx or an `ignored` record, never a panic, a 500
//! or a hang: every body below goes to every handler (Lightspeed's JSON, Checkfront's
//! JSON/XML/form, TourCMS's signed XML, a script), and odd headers and paths to the routes.
//! After each, the service still answers `/readyz`.

use std::path::Path;

use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::helpers::{CHECKFRONT_PARTNER, Db, LIGHTSPEED_TOKEN, TestApp, json_of, spawn_with};

/// The bodies, by name.
fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let fixture = |partner: &str, name: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(partner)
                .join(name),
        )
        .expect("fixture")
    };
    let mut noise = 0x9e37_79b9_7f4a_7c15_u64;
    let binary: Vec<u8> = (0..65_536)
        .map(|_| {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            noise.to_le_bytes()[0]
        })
        .collect();
    vec![
        ("empty", Vec::new()),
        ("invalid UTF-8", b"\xff\xfe{\"notificationType\":\"OPEN\"}\xc3\x28".to_vec()),
        (
            "truncated JSON",
            br#"{"notificationType": "CLOSE", "businessLocationId": 1340570962231298, "account": {"id": "1"#.to_vec(),
        ),
        ("truncated XML", b"<booking_updated><booking><code>AB".to_vec()),
        (
            "deeply nested JSON",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
        (
            "deeply nested objects",
            format!("{}1{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000)).into_bytes(),
        ),
        (
            "deeply nested XML",
            format!("{}{}", "<a>".repeat(50_000), "</a>".repeat(50_000)).into_bytes(),
        ),
        ("billion laughs", fixture("checkfront", "billion_laughs.xml")),
        ("external entity", fixture("checkfront", "xxe.xml")),
        (
            "huge numbers",
            br#"{"notificationType":"CLOSE","businessLocationId":1e400,"account":{"id":99999999999999999999999999999999,"totalAmount":123456789012345678901234567890.1234567890123,"updateDate":-1e308,"openDate":18446744073709551616,"coverCount":-99999999999999999999}}"#.to_vec(),
        ),
        (
            "wrong types everywhere",
            br#"{"notificationType":5,"businessLocationId":{"x":[1]},"account":[{"id":{}},"x",null,true],"booking":"nope","transaction":7}"#.to_vec(),
        ),
        (
            "duplicate keys",
            br#"{"notificationType":"OPEN","notificationType":"CLOSE","businessLocationId":1340570962231298,"businessLocationId":"x","account":{"id":"d1","id":"d2","totalAmount":1,"totalAmount":"lots"}}"#.to_vec(),
        ),
        (
            "escapes and NULs",
            "{\"notificationType\":\"OPEN\\u0000\",\"account\":{\"id\":\"\\ud800\",\"name\":\"\u{0}\u{202e}\"}}".as_bytes().to_vec(),
        ),
        ("form with broken escapes", b"booking[code]=%ZZ&booking[status]=%FF%FE&&=&a[=[&%00=1".to_vec()),
        ("random bytes", binary),
        (
            // rust_decimal's parser recursed once per `_` separator: a stack overflow that
            // killed the process (found by fuzzing); amounts are now plain literals only.
            "an amount of 200,000 separators",
            format!(
                r#"{{"notificationType":"CLOSE","businessLocationId":"1","account":{{"id":"u","totalAmount":"1{0}","amount":"1{0}","total":"1{0}"}}}}"#,
                "_".repeat(200_000)
            )
            .into_bytes(),
        ),
        ("a lone string", b"\"just a string\"".to_vec()),
        ("a number", b"42".to_vec()),
    ]
}

/// Every partner handler, each on a route it can authenticate.
fn routes() -> Vec<(&'static str, String)> {
    vec![
        (
            "lightspeed",
            "/Sales/partners/lightspeed/events/order.updated".to_owned(),
        ),
        (
            "checkfront",
            "/partners/checkfront/webhooks/callback/booking?token=cf-token".to_owned(),
        ),
        (
            "tourcms",
            "/partners/tourcms/webhooks/callback/booking?token=tc-token".to_owned(),
        ),
        (
            "salesplay",
            "/partners/salesplay/webhooks/callback/receipts.update?token=sp-token".to_owned(),
        ),
    ]
}

async fn spawn_all_handlers(db: Db) -> TestApp {
    let salesplay = Path::new(env!("CARGO_MANIFEST_DIR")).join("partners/salesplay.rhai");
    let extra = format!(
        r#"{CHECKFRONT_PARTNER}

[[partners]]
name = "tourcms"
handler = "tourcms"
[partners.api]
base_url = "http://127.0.0.1:9"
private_key = "tourcms-test-private-key"
[partners.auth]
scheme = "url-token"
secret = "tc-token"

[[partners]]
name = "salesplay"
handler = "script"
script = "{}"
[partners.auth]
scheme = "url-token"
secret = "sp-token"
"#,
        salesplay.display()
    );
    spawn_with(db, &extra).await
}

async fn still_ready(app: &TestApp, after: &str) {
    let ready = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("the service died after {after}: {e}"));
    assert_eq!(ready.status(), StatusCode::OK, "not ready after {after}");
}

async fn every_hostile_body_gets_a_clear_answer_from_every_handler(db: Db) {
    let app = spawn_all_handlers(db).await;
    let mut tried = 0;
    for (route_name, route) in routes() {
        for (body_name, body) in bodies() {
            for content_type in [
                "application/json",
                "application/xml",
                "application/x-www-form-urlencoded",
            ] {
                let what = format!("{body_name} to {route_name} as {content_type}");
                let response = app
                    .client
                    .post(format!("{}{route}", app.base))
                    .bearer_auth(LIGHTSPEED_TOKEN)
                    .header("content-type", content_type)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{what}: no answer ({e})"));
                let status = response.status();
                let answer: Value = json_of(response).await;
                tried += 1;
                match status {
                    StatusCode::OK => {
                        // A body a handler cannot make a command of is stored `failed` for
                        // a replay, and still answered 200.
                        let content_failure = answer["outcome"] == "failed"
                            && matches!(
                                answer["reason"].as_str(),
                                Some("invalid_payload" | "script_error" | "script_limit")
                            );
                        assert!(
                            content_failure
                                || matches!(
                                    answer["outcome"].as_str(),
                                    Some("ignored" | "processed" | "pending")
                                ),
                            "{what}: {answer}"
                        );
                        let event = app.event(&answer["event_id"]).await;
                        assert_eq!(event["body_bytes"], body.len(), "{what}: kept whole");
                    }
                    StatusCode::BAD_REQUEST => {
                        assert!(answer["error"].is_string(), "{what}: {answer}");
                    }
                    other => panic!("{what}: {other} {answer}"),
                }
            }
            still_ready(&app, body_name).await;
        }
    }
    assert_eq!(tried, 4 * bodies().len() * 3);
}

async fn odd_headers_and_paths_are_refused_or_recorded_never_a_500(db: Db) {
    let app = spawn_all_handlers(db).await;
    let lightspeed = format!(
        "{}/Sales/partners/lightspeed/events/order.updated",
        app.base
    );
    // Header values that are not UTF-8, everywhere a handler or the auth looks.
    for (name, value) in [
        ("content-type", &b"application/json\xff"[..]),
        ("authorization", &b"Bearer \xff\xfe"[..]),
        ("x-partner-signature", &b"\xc3\x28"[..]),
        ("x-request-id", &b"\x80\x81\x82"[..]),
    ] {
        let response = app
            .client
            .post(&lightspeed)
            .bearer_auth(LIGHTSPEED_TOKEN)
            .header(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(value).expect("obs-text is a valid header value"),
            )
            .body(r#"{"notificationType":"OPEN"}"#)
            .send()
            .await
            .expect("answered");
        assert!(
            response.status().is_success() || response.status().is_client_error(),
            "{name}: {}",
            response.status()
        );
        still_ready(&app, name).await;
    }
    // Path segments with odd characters.
    let long = "p".repeat(20_000);
    for segment in [
        "%00",
        "%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "%FF%FE",
        "caf%C3%A9%E2%80%AE",
        "%E2%80%8B",
        long.as_str(),
        "a%0d%0aSet-Cookie:%20x=1",
        "lightspeed%00",
    ] {
        for path in [
            format!("/Sales/partners/{segment}/events/order.updated"),
            format!("/Sales/partners/lightspeed/events/{segment}"),
            format!("/partners/{segment}/webhooks/callback/{segment}"),
        ] {
            let response = app
                .client
                .post(format!("{}{path}", app.base))
                .bearer_auth(LIGHTSPEED_TOKEN)
                .body("{}")
                .send()
                .await
                .expect("answered");
            let status = response.status();
            assert!(
                status == StatusCode::OK
                    || status == StatusCode::BAD_REQUEST
                    || status == StatusCode::NOT_FOUND
                    || status == StatusCode::URI_TOO_LONG,
                "{path}: {status}"
            );
            assert!(
                response.headers().get("set-cookie").is_none(),
                "{path}: no header injection"
            );
        }
        still_ready(&app, segment).await;
    }
}

async fn partner_text_with_a_nul_is_stored_on_both_databases_not_refused(db: Db) {
    let app = spawn_all_handlers(db).await;
    app.venue_with_location("lightspeed", "1340570962231298", true)
        .await;
    let mut order: Value =
        serde_json::from_slice(&crate::helpers::fixture("open_split_check_original.json"))
            .expect("json");
    order["account"]["accountNumber"] = serde_json::json!("A\u{0}B");
    let response = app.post_lightspeed(order.to_string().as_bytes()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
    let sales = app.sales_with_external_id("2190678134095876").await;
    assert_eq!(sales[0]["number"], "A\u{fffd}B");
}

/// Sets every `...Amount` field of a JSON document to `amount`, as a numeric string.
fn set_amounts(value: &mut Value, amount: &str) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                if key.ends_with("Amount") && (field.is_number() || field.is_string()) {
                    *field = Value::String(amount.to_owned());
                } else {
                    set_amounts(field, amount);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| set_amounts(item, amount)),
        _ => {}
    }
}

/// Amounts that parse but whose sums would overflow `Decimal` (its largest value in every
/// line and payment) are refused where they are read: the event is `ignored` as invalid.
/// Found by schemathesis's sibling, a diary whose covers summed past `i64::MAX`.
async fn amounts_beyond_any_sale_are_ignored_not_summed_into_a_panic(db: Db) {
    let app = spawn_with(db, "").await;
    app.venue_with_location("lightspeed", "41910290874370", true)
        .await;
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lightspeed/r224_close.json");
    let mut document: Value =
        serde_json::from_slice(&std::fs::read(fixture).expect("fixture")).expect("JSON");
    for amount in [
        "79228162514264337593543950335",
        "-1000000000000000001",
        "1e19",
    ] {
        set_amounts(&mut document, amount);
        let body = serde_json::to_vec(&document).expect("JSON");
        let response = app.post_lightspeed(&body).await;
        assert_eq!(response.status(), StatusCode::OK, "{amount}");
        let answer = json_of(response).await;
        assert_eq!(
            answer["outcome"], "failed",
            "kept for a replay: {amount}: {answer}"
        );
        assert_eq!(answer["reason"], "invalid_payload", "{amount}: {answer}");
        still_ready(&app, amount).await;
    }
    set_amounts(&mut document, "1000000000000000000");
    let response = app
        .post_lightspeed(&serde_json::to_vec(&document).expect("JSON"))
        .await;
    let answer = json_of(response).await;
    assert_eq!(
        answer["outcome"], "processed",
        "the bound itself is an amount: {answer}"
    );
}

crate::on_both_stores!(
    amounts_beyond_any_sale_are_ignored_not_summed_into_a_panic,
    partner_text_with_a_nul_is_stored_on_both_databases_not_refused,
    every_hostile_body_gets_a_clear_answer_from_every_handler,
    odd_headers_and_paths_are_refused_or_recorded_never_a_500,
);
