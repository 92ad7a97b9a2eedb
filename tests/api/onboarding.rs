//! Onboarding without a restart: partners created through the API take deliveries at once
//! and on every node within seconds (two processes on one PostgreSQL), their secrets sealed at
//! rest and rotated with no failed delivery; a location mapped to a venue brings exactly the
//! events it sent while unmapped into the diary.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// 32 bytes of base64: the key partners' secrets are sealed with in these tests.
pub(crate) const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

pub(crate) fn sealing() -> String {
    format!("secret_key = \"{SECRET_KEY}\"")
}

/// A Lightspeed fixture posted as partner `name` with bearer `token`.
pub(crate) async fn deliver_as(
    app_base: &str,
    name: &str,
    token: &str,
    fixture_name: &str,
) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{app_base}/Sales/partners/{name}/events/order.updated"
        ))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(fixture(fixture_name))
        .send()
        .await
        .expect("delivery");
    let status = response.status();
    (status, json_of(response).await)
}

pub(crate) async fn new_partner(app: &TestApp, name: &str, token: &str) -> Value {
    let (status, partner) = app
        .admin_post(
            "/partners",
            json!({ "name": name, "handler": "lightspeed-kseries",
                    "auth": { "scheme": "bearer" }, "secret": token }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{partner}");
    partner
}

async fn a_partner_added_through_the_api_takes_deliveries_at_once(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    let partner = new_partner(&app, "lightspeed-two", "second-partner-token").await;
    assert_eq!(partner["managed_by"], "database");
    assert_eq!(partner["scheme"], "bearer");
    assert!(!partner.to_string().contains("second-partner-token"));

    let (status, answer) = deliver_as(
        &app.base,
        "lightspeed-two",
        "second-partner-token",
        "open_regular_tax_inclusive.json",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let event = app.event(&answer["event_id"]).await;
    assert_eq!(event["verified_by"], "current");
    let (status, _) = deliver_as(
        &app.base,
        "lightspeed-two",
        "a-wrong-token",
        "open_regular_tax_inclusive.json",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The file's partners are listed as the file's, and are not the API's to change.
    let partners = app.admin_get("/partners").await;
    let file = partners
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["name"] == "lightspeed")
        .expect("the file's partner");
    assert_eq!(file["managed_by"], "file");
    let (status, _) = app
        .admin_patch("/partners/lightspeed", json!({ "enabled": false }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app
        .admin_post(
            "/partners",
            json!({ "name": "lightspeed", "handler": "lightspeed-kseries",
                    "auth": { "scheme": "bearer" }, "secret": "another-token-123" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Disabled, it takes no deliveries; enabled again, it does.
    let (status, _) = app
        .admin_patch("/partners/lightspeed-two", json!({ "enabled": false }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = deliver_as(
        &app.base,
        "lightspeed-two",
        "second-partner-token",
        "r224_close.json",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "held back, so the partner sends it again later and nothing is lost: {answer}"
    );
    assert_eq!(answer["error"], "partner_unavailable");
    app.admin_patch("/partners/lightspeed-two", json!({ "enabled": true }))
        .await;
    let (status, _) = deliver_as(
        &app.base,
        "lightspeed-two",
        "second-partner-token",
        "r224_close.json",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

async fn a_partner_rotates_its_secret_with_no_failed_delivery(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    new_partner(&app, "rotating", "the-old-token-1234").await;
    let (status, added) = app
        .admin_post(
            "/partners/rotating/secrets",
            json!({ "secret": "the-new-token-5678" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let labels: Vec<&str> = added["partner"]["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .filter_map(|s| s["label"].as_str())
        .collect();
    assert_eq!(labels, ["current", "next"]);

    // While both are live, deliveries signed with either are taken, and named.
    for (token, label) in [
        ("the-old-token-1234", "current"),
        ("the-new-token-5678", "next"),
    ] {
        let (status, answer) = deliver_as(
            &app.base,
            "rotating",
            token,
            "open_regular_tax_inclusive.json",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{token}: {answer}");
        assert_eq!(app.event(&answer["event_id"]).await["verified_by"], label);
    }
    // The old one retired, only the new one is taken.
    let current = added["partner"]["secrets"][0]["id"].as_i64().expect("id");
    let retired = app
        .client
        .delete(format!(
            "{}/api/v1/partners/rotating/secrets/{current}",
            app.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("retire");
    assert_eq!(retired.status(), StatusCode::NO_CONTENT);
    let (status, _) = deliver_as(
        &app.base,
        "rotating",
        "the-old-token-1234",
        "r224_close.json",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = deliver_as(
        &app.base,
        "rotating",
        "the-new-token-5678",
        "r224_close.json",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The last secret stays.
    let next = added["id"].as_i64().expect("id");
    let last = app
        .client
        .delete(format!(
            "{}/api/v1/partners/rotating/secrets/{next}",
            app.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("retire");
    assert_eq!(last.status(), StatusCode::CONFLICT);

    // Sealed at rest: the database never holds a secret in the clear; the trail names the
    // rotation and who did it, never the secret.
    let trail = app.admin_get("/audit?limit=100").await;
    let actions = audit_actions(&trail);
    for action in [
        "partner.create",
        "partner.secret_add",
        "partner.secret_retire",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let text = trail.to_string();
    assert!(
        !text.contains("token-1234") && !text.contains("token-5678"),
        "{text}"
    );
    let sealed = sealed_secrets(db, &app.database_url).await;
    assert_eq!(sealed.len(), 2);
    for value in &sealed {
        assert!(
            value.starts_with("v1.") && !value.contains("token"),
            "{value}"
        );
    }
}

/// The sealed secrets as the database holds them.
async fn sealed_secrets(db: Db, url: &str) -> Vec<String> {
    match db {
        Db::Sqlite => {
            let path = url.trim_start_matches("sqlite://");
            let conn = rusqlite::Connection::open(path).expect("open");
            let mut statement = conn
                .prepare("SELECT sealed FROM partner_secrets ORDER BY id")
                .expect("prepare");
            statement
                .query_map([], |row| row.get::<_, String>(0))
                .expect("query")
                .filter_map(Result::ok)
                .collect()
        }
        Db::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query_scalar("SELECT sealed FROM partner_secrets ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .expect("query")
        }
    }
}

async fn without_a_secret_key_no_partner_secret_is_stored(db: Db) {
    let app = spawn(db).await;
    let (status, answer) = app
        .admin_post(
            "/partners",
            json!({ "name": "unsealed", "handler": "lightspeed-kseries",
                    "auth": { "scheme": "bearer" }, "secret": "would-be-in-clear" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("secret_key")
    );
    // Nor a secret in the definition, nor one read from the server's environment.
    let app = spawn_with(db, &sealing()).await;
    for auth in [
        json!({ "scheme": "bearer", "token": "inline-token-123" }),
        json!({ "scheme": "bearer", "token_env": "DIARYSYNC_ADMIN_TOKEN" }),
    ] {
        let (status, _) = app
            .admin_post(
                "/partners",
                json!({ "name": "sneaky", "handler": "lightspeed-kseries", "auth": auth,
                        "secret": "a-real-secret-123" }),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (status, _) = app
        .admin_post(
            "/partners",
            json!({ "name": "scripted", "handler": "script", "script": "/etc/passwd",
                    "auth": { "scheme": "none" } }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "scripts stay in the file"
    );
}

async fn mapping_an_unknown_location_replays_exactly_its_events_into_the_diary(db: Db) {
    let app = spawn(db).await;
    // Deliveries for two locations no venue owns yet.
    let mut stranger: Value =
        serde_json::from_slice(&fixture("open_split_check_original.json")).expect("json");
    stranger["businessLocationId"] = json!(424242);
    let mut other = stranger.clone();
    other["businessLocationId"] = json!(5555);
    other["account"]["id"] = json!("2190678134091111");
    for body in [&stranger, &stranger, &other] {
        let answer = json_of(app.post_lightspeed(body.to_string().as_bytes()).await).await;
        assert_eq!(answer["reason"], "unknown_location", "{answer}");
    }
    let (status, venue) = app
        .admin_post(
            "/venues",
            json!({ "name": "Late Venue", "timezone": "Europe/London" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let venue = venue["id"].as_i64().expect("id");
    let (status, mapped) = app
        .admin_post(
            &format!("/venues/{venue}/locations"),
            json!({ "partner": "lightspeed", "location_id": "424242" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mapped}");
    assert_eq!(
        mapped["replay"]["replayed"], 2,
        "its two events, not the other's: {mapped}"
    );
    assert_eq!(mapped["venue"]["locations"][0]["location_id"], "424242");
    let sales = app.admin_get(&format!("/venues/{venue}/sales")).await;
    assert_eq!(sales.as_array().expect("list").len(), 1, "{sales}");
    let waiting = app
        .admin_get("/events?reason=unknown_location&outcome=ignored")
        .await;
    assert_eq!(
        waiting.as_array().expect("list").len(),
        1,
        "the other location's waits"
    );
    let (status, _) = app
        .admin_post(
            &format!("/venues/{venue}/locations"),
            json!({ "partner": "lightspeed", "location_id": "424242" }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a location belongs to one venue"
    );
    let trail = app.admin_get(&format!("/audit?venue={venue}")).await;
    assert_eq!(trail[0]["action"], "venue.location_add", "{trail}");
}

crate::on_both_stores!(
    a_partner_added_through_the_api_takes_deliveries_at_once,
    a_partner_rotates_its_secret_with_no_failed_delivery,
    without_a_secret_key_no_partner_secret_is_stored,
    mapping_an_unknown_location_replays_exactly_its_events_into_the_diary,
    a_venue_is_made_set_up_and_given_a_location_on_the_pages,
);

/// Two processes on one PostgreSQL: a partner added through one is taken by the other
/// within seconds, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_added_on_one_node_is_accepted_by_another_within_seconds() {
    use crate::process::Node;
    let database = empty_database(Db::Postgres).await;
    let dir = tempfile::tempdir().expect("dir");
    let one = Node::start(dir.path(), &database.url, &sealing()).await;
    let two = Node::start(dir.path(), &database.url, &sealing()).await;
    let created = reqwest::Client::new()
        .post(format!("{}/api/v1/partners", one.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({ "name": "everywhere", "handler": "lightspeed-kseries",
                       "auth": { "scheme": "bearer" }, "secret": "everywhere-token-1" }),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let started = std::time::Instant::now();
    let mut answered = StatusCode::BAD_REQUEST;
    while started.elapsed() < Duration::from_secs(10) {
        answered = deliver_as(
            &two.base,
            "everywhere",
            "everywhere-token-1",
            "open_regular_tax_inclusive.json",
        )
        .await
        .0;
        if answered == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(answered, StatusCode::OK, "the other node took it");
}

/// Signs in on the pages with the admin token: (client keeping the cookie, cookie).
pub(crate) async fn signed_in_pages(app: &TestApp) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .post(format!("{}/ui/login", app.base))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("diarysync_session="))
        .and_then(|v| v.split(';').next())
        .expect("cookie")
        .to_owned();
    (client, cookie)
}

/// The CSRF token of a page's forms.
pub(crate) async fn csrf_of(client: &reqwest::Client, cookie: &str, url: &str) -> String {
    let page = client
        .get(url)
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form with its CSRF token")
        .to_owned()
}

async fn a_venue_is_made_set_up_and_given_a_location_on_the_pages(db: Db) {
    let app = spawn(db).await;
    let (client, cookie) = signed_in_pages(&app).await;
    let venues = format!("{}/ui/venues", app.base);
    let csrf = csrf_of(&client, &cookie, &venues).await;
    let made = client
        .post(&venues)
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "Pier Cafe"),
            ("timezone", "Europe/Lisbon"),
            ("currency", "EUR"),
        ])
        .send()
        .await
        .expect("create");
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    let page = made
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("the venue's page")
        .to_owned();
    let id: i64 = page
        .trim_start_matches("/ui/venues/")
        .split('?')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("venue id");
    let saved = client
        .post(format!("{}/ui/venues/{id}", app.base))
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "Pier Cafe"),
            ("timezone", "Europe/Lisbon"),
            ("currency", "EUR"),
            ("before_start_minutes", "20"),
            ("after_end_minutes", "45"),
            ("walk_ins", "on"),
            ("covers_source", "pos"),
            ("table_aliases", "Terrace 1 = T1\nBar = B"),
            ("sku_tables", ""),
        ])
        .send()
        .await
        .expect("save");
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let venue = app.admin_get(&format!("/venues/{id}")).await;
    assert_eq!(venue["walk_ins"], true);
    assert_eq!(venue["covers_source"], "pos");
    assert_eq!(venue["tolerances"]["after_end_minutes"], 45);
    assert_eq!(
        venue["table_aliases"].as_object().map(|a| a.len()),
        Some(2),
        "{venue}"
    );
    let bad = client
        .post(format!("{}/ui/venues/{id}", app.base))
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "Pier Cafe"),
            ("timezone", "Mars/Olympus"),
            ("before_start_minutes", "20"),
            ("after_end_minutes", "45"),
            ("covers_source", "pos"),
            ("table_aliases", ""),
            ("sku_tables", ""),
        ])
        .send()
        .await
        .expect("save");
    assert_eq!(
        bad.status(),
        StatusCode::BAD_REQUEST,
        "an unknown time zone"
    );
    let mapped = client
        .post(format!("{}/ui/venues/{id}/locations", app.base))
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("partner", "lightspeed"),
            ("location_id", "41910290874370"),
        ])
        .send()
        .await
        .expect("map");
    assert_eq!(mapped.status(), StatusCode::SEE_OTHER);
    let venue = app.admin_get(&format!("/venues/{id}")).await;
    assert_eq!(venue["locations"][0]["location_id"], "41910290874370");
    let history = app.admin_get(&format!("/audit?venue={id}")).await;
    let actions = audit_actions(&history);
    assert_eq!(
        actions,
        ["venue.location_add", "venue.change", "venue.create"]
    );
}
