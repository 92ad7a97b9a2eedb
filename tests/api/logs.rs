//! No secret and no guest personal data ever reaches the logs: a real diarysync logging at
//! debug, as JSON, goes through deliveries with every kind of credential (good and bad),
//! guests' names, e-mails and phones in payloads and in the admin API, the pages' login,
//! replay and partner health; then its whole log is searched for each of them.

use std::path::Path;

use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, Db, empty_database, fixture};
use crate::process::{LIGHTSPEED_TOKEN, Node};

const CHECKFRONT_TOKEN: &str = "cf-url-secret-4711";
const HMAC_SECRET: &str = "hmac-secret-for-the-log-test";
const GUEST: [&str; 3] = [
    "Prudence Privatename",
    "prudence@private.example",
    "+44 20 7946 0999",
];

async fn no_secret_or_personal_data_is_ever_logged(db: Db) {
    let database = empty_database(db).await;
    let dir = tempfile::tempdir().expect("dir");
    let extra = format!(
        r#"
log_format = "json"
[[partners]]
name = "checkfront"
handler = "checkfront"
[partners.auth]
scheme = "url-token"
secret = "{CHECKFRONT_TOKEN}"

[[partners]]
name = "signed"
handler = "lightspeed-kseries"
[partners.auth]
scheme = "hmac-sha256"
secret = "{HMAC_SECRET}"
"#
    );
    let node = Node::start_logging(dir.path(), &database.url, &extra, "debug").await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", node.base);

    client
        .post(api("/venues"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({ "name": "Log Cafe", "timezone": "Europe/London", "locations": [
            { "partner": "lightspeed", "location_id": "41910290874370" },
            { "partner": "checkfront", "location_id": "your-company.checkfront.com" } ] }),
        )
        .send()
        .await
        .expect("venue");
    client
        .post(api("/venues/1/bookings"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({ "reference": "224", "start": "2024-04-04T15:30:00Z", "covers": 2,
                       "customer": { "name": GUEST[0], "email": GUEST[1], "phone": GUEST[2] } }),
        )
        .send()
        .await
        .expect("booking");
    let lightspeed = format!(
        "{}/Sales/partners/lightspeed/events/order.updated",
        node.base
    );
    for token in [LIGHTSPEED_TOKEN, "a-wrong-token-0xdeadbeef"] {
        client
            .post(&lightspeed)
            .bearer_auth(token)
            .body(fixture("open_regular_tax_inclusive.json"))
            .send()
            .await
            .expect("delivery");
    }
    let signed = format!("{}/Sales/partners/signed/events/order.updated", node.base);
    let body = fixture("open_regular_tax_inclusive.json");
    let signature =
        diarysync::partners::auth::hmac_sha256_hex(HMAC_SECRET.as_bytes(), &body, Some(&signed));
    client
        .post(&signed)
        .header("x-partner-signature", signature)
        .body(body)
        .send()
        .await
        .expect("signed delivery");
    let checkfront_body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkfront/booking.json"),
    )
    .expect("fixture");
    for token in [CHECKFRONT_TOKEN, "wrong-cf-token"] {
        client
            .post(format!(
                "{}/partners/checkfront/webhooks/callback/booking?token={token}",
                node.base
            ))
            .header("content-type", "application/json")
            .body(checkfront_body.clone())
            .send()
            .await
            .expect("checkfront");
    }
    for form in [[("token", ADMIN_TOKEN)], [("token", "not-the-admin-token")]] {
        client
            .post(format!("{}/ui/login", node.base))
            .form(&form)
            .send()
            .await
            .expect("login");
    }
    for path in [
        "/events?limit=100",
        "/health",
        "/bookings/1",
        "/guests/1",
        "/events/1",
    ] {
        client
            .get(api(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("read");
    }
    client
        .get(api("/events"))
        .bearer_auth("a-wrong-admin-token-1234")
        .send()
        .await
        .expect("refused read");
    client
        .post(api("/events/replay"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .expect("replay");

    let log = node.log();
    assert!(
        log.contains("\"level\""),
        "JSON log lines were written: {log}"
    );
    assert!(log.lines().count() > 10, "the run logged at debug");
    for secret in [
        ADMIN_TOKEN,
        LIGHTSPEED_TOKEN,
        CHECKFRONT_TOKEN,
        HMAC_SECRET,
        "a-wrong-token-0xdeadbeef",
        "wrong-cf-token",
        "not-the-admin-token",
        "a-wrong-admin-token-1234",
    ] {
        assert!(
            !log.contains(secret),
            "a credential is in the log: {secret}"
        );
    }
    for personal in GUEST.iter().chain(&[
        "Your Customer",
        "support@checkfront.com",
        "559-0985",
        "170-422 Richards Street",
        "John Purple",
    ]) {
        assert!(
            !log.contains(personal),
            "personal data is in the log: {personal}"
        );
    }
}

/// A partner over its rate limit wrote a warning for every delivery answered 429, and
/// filled a node's disk (95 MB of log in two minutes, found by the outside attack on issue
/// 17). Such repeated warnings are logged once a second per partner and kind; the metrics
/// count every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_over_its_limit_costs_a_log_line_a_second_not_one_a_delivery() {
    let database = empty_database(Db::Sqlite).await;
    let dir = tempfile::tempdir().expect("dir");
    let extra = r#"
[[partners]]
name = "limited"
handler = "lightspeed-kseries"
rate_limit_per_second = 1
rate_limit_burst = 1
[partners.auth]
scheme = "bearer"
token = "limited-token"
"#;
    let node = Node::start_logging(dir.path(), &database.url, extra, "info").await;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut limited = 0;
    for _ in 0..200 {
        let response = client
            .post(format!(
                "{}/Sales/partners/limited/events/order.updated",
                node.base
            ))
            .bearer_auth("limited-token")
            .body(fixture("open_regular_tax_inclusive.json"))
            .send()
            .await
            .expect("delivery");
        limited += usize::from(response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS);
    }
    let seconds = started.elapsed().as_secs() as usize;
    assert!(limited > 150, "most were over the limit: {limited}");
    let lines = node.log().matches("delivery rate limited").count();
    assert!(
        (1..=seconds + 2).contains(&lines),
        "{lines} warnings for {limited} deliveries over {seconds} s"
    );
}

crate::on_both_stores!(no_secret_or_personal_data_is_ever_logged,);
