//! A stored partner's script, edited without a restart: tried on an event the partner really
//! sent (nothing saved, nothing applied), saved as a new numbered version that the partner
//! runs at once, and its events replayed into the diary; what could reach the server's files
//! or fail every event is refused.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::accounts::{call, user_with_token};
use crate::helpers::*;
use crate::onboarding::sealing;

/// A POS that never existed in the code: its checks look like this.
pub(crate) const CHECK: &str = r#"{
  "venue": "tt-harbour",
  "check": { "no": "C-77", "table": "Table 7A", "opened": "2026-03-14T19:10:00+11:00",
             "closed": "2026-03-14T21:02:00+11:00", "amount": "88.40", "vat": "8.04",
             "guests": 2, "guest": "Ada Lovelace" }
}"#;

/// The first version: every delivery kept as a notice until the mapping is written.
const KEEP: &str = "fn handle(event) {\n    #{ notice: \"kept: \" + event.type }\n}\n";

/// The mapping, written once deliveries were there to try it on.
pub(crate) const MAPPING: &str = r#"
fn handle(event) {
    let c = event.body.check;
    if c == () { return #{ ignore: "unrecognised_model", detail: "no check" }; }
    #{
        location: event.body.venue,
        commands: [#{
            type: "sale", id: c.no, opened_at: c.opened, closed_at: c.closed, state: "closed",
            total: c.amount, tax: c.vat, covers: c.guests, tables: [c.table],
            guest: c.guest
        }]
    }
}
"#;

async fn script_partner(app: &TestApp, name: &str, source: &str) -> (StatusCode, Value) {
    app.admin_post(
        "/partners",
        json!({ "name": name, "handler": "script", "auth": { "scheme": "bearer" },
                "secret": "tilltastic-token", "script_source": source }),
    )
    .await
}

/// A venue owning tilltastic's `tt-harbour`, and the booking its check belongs to.
pub(crate) async fn harbour_booking(app: &TestApp) -> i64 {
    let (status, venue) = app
        .admin_post(
            "/venues",
            json!({ "name": "Harbour", "timezone": "Australia/Sydney", "currency": "AUD",
                    "locations": [{ "partner": "tilltastic", "location_id": "tt-harbour" }] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{venue}");
    app.booking(
        venue["id"].as_i64().expect("venue"),
        json!({ "start": "2026-03-14T19:00:00+11:00", "covers": 2, "tables": ["7a"] }),
    )
    .await
}

async fn deliver(app: &TestApp, partner: &str, body: &str) -> Value {
    let response = app
        .client
        .post(format!(
            "{}/Sales/partners/{partner}/events/check.closed",
            app.base
        ))
        .bearer_auth("tilltastic-token")
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("delivery");
    assert_eq!(response.status(), StatusCode::OK);
    json_of(response).await
}

async fn a_script_is_tried_on_a_stored_event_then_saved_as_a_new_version(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    let (status, partner) = script_partner(&app, "tilltastic", KEEP).await;
    assert_eq!(status, StatusCode::CREATED, "{partner}");
    assert_eq!(partner["handler"], "script");
    assert_eq!(partner["script"]["number"], 1);
    let booking = harbour_booking(&app).await;

    // Delivered under version 1: kept, nothing in the diary yet.
    let answer = deliver(&app, "tilltastic", CHECK).await;
    assert_eq!(answer["detail"], "kept: check.closed", "{answer}");
    let event_id = answer["event_id"].as_i64().expect("event");
    let first = app.event(&answer["event_id"]).await;
    let v1 = first["handler_version"].as_str().expect("hash").to_owned();

    // The mapping, tried on that event: what it would do beside what runs now.
    let (status, tried) = app
        .admin_post(
            "/partners/tilltastic/script/try",
            json!({ "event_id": event_id, "source": MAPPING }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tried}");
    let apply = &tried["tried"]["mapped"]["apply"];
    assert_eq!(apply["location_id"], "tt-harbour", "{tried}");
    assert_eq!(apply["commands"][0]["command"], "upsert_sale");
    assert_eq!(apply["commands"][0]["with"]["totals"]["total"], "88.40");
    assert_eq!(
        apply["commands"][0]["with"]["guest_name"], "[personal data redacted]",
        "a guest read from the payload is shown as read, never by name"
    );
    assert!(!tried.to_string().contains("Lovelace"), "{tried}");
    assert_eq!(
        tried["current"]["mapped"]["notice"]["detail"],
        "kept: check.closed"
    );
    assert_eq!(tried["current"]["handler_version"], v1.as_str());
    assert_eq!(tried["same_as_current"], false);
    assert_eq!(tried["outcome"], "processed");
    // Nothing was applied or changed by trying.
    assert_eq!(app.booking_view(booking).await["status"], "confirmed");
    assert_eq!(app.event(&answer["event_id"]).await, first);

    // Saved: version 2, run at once; the same text again saves nothing.
    let (status, saved) = app
        .admin_put("/partners/tilltastic/script", json!({ "source": MAPPING }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    assert_eq!(
        (saved["number"].as_i64(), saved["created"].as_bool()),
        (Some(2), Some(true))
    );
    let v2 = saved["version"].as_str().expect("hash").to_owned();
    assert_ne!(v1, v2);
    assert_eq!(saved["partner"]["script"]["number"], 2);
    let (status, again) = app
        .admin_put("/partners/tilltastic/script", json!({ "source": MAPPING }))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (again["number"].as_i64(), again["created"].as_bool()),
        (Some(2), Some(false))
    );

    let script = app.admin_get("/partners/tilltastic/script").await;
    assert_eq!(script["current"]["number"], 2);
    assert_eq!(script["current"]["source"], MAPPING);
    assert_eq!(script["current"]["created_by"], "admin token");
    let numbers: Vec<i64> = script["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["number"].as_i64())
        .collect();
    assert_eq!(numbers, [2, 1]);
    assert!(
        script["versions"][0].get("source").is_none(),
        "lists carry no text"
    );
    let old = app
        .admin_get("/partners/tilltastic/script/versions/1")
        .await;
    assert_eq!(old["source"], KEEP);
    assert_eq!(old["version"], v1.as_str());
    assert_eq!(
        app.admin_get_status("/partners/tilltastic/script/versions/9")
            .await,
        StatusCode::NOT_FOUND
    );

    // The stored event replayed under version 2 lands in the diary.
    let (status, replayed) = app
        .admin_post(&format!("/events/{event_id}/replay"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    assert_eq!(app.booking_view(booking).await["status"], "paid");
    assert_eq!(
        app.event(&answer["event_id"]).await["handler_version"],
        v2.as_str()
    );

    // The save is in the trail, with both versions' numbers and hashes, not the text.
    let trail = app.admin_get("/audit?partner=tilltastic").await;
    let save = trail
        .as_array()
        .expect("trail")
        .iter()
        .find(|e| e["action"] == "partner.script_save" && e["before"].is_object())
        .expect("the save of version 2");
    assert_eq!(save["before"]["script"]["number"], 1);
    assert_eq!(save["after"]["script"]["number"], 2);
    assert_eq!(save["after"]["script"]["version"], v2.as_str());
    assert_eq!(save["actor"], "admin token");
    assert!(!save.to_string().contains("event.body"), "{save}");
    let actions = audit_actions(&trail);
    assert_eq!(
        actions,
        [
            "partner.script_save",
            "partner.create",
            "partner.script_save"
        ],
        "the partner's whole history, its script's first version saved with its creation"
    );
    let of_all = app.admin_get("/audit?subject_type=partner").await;
    assert_eq!(of_all.as_array().map(Vec::len), Some(3));
    assert_eq!(
        app.admin_get("/audit?partner=someone-else").await,
        json!([])
    );
}

async fn a_script_that_could_reach_the_servers_files_or_fail_every_event_is_refused(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    let refused = |answer: (StatusCode, Value), needle: &str| {
        assert_eq!(answer.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.1);
        let message = answer.1["message"].as_str().unwrap_or_default().to_owned();
        assert!(
            message.contains(needle),
            "{message:?} should say {needle:?}"
        );
    };
    // A stored partner never names a file of the server's: its text is in the database.
    refused(
        app.admin_post(
            "/partners",
            json!({ "name": "reader", "handler": "script", "script": "/etc/passwd",
                    "auth": { "scheme": "bearer" }, "secret": "tilltastic-token",
                    "script_source": KEEP }),
        )
        .await,
        "never read from a file",
    );
    refused(script_partner(&app, "empty", "").await, "fn handle(event)");
    refused(
        app.admin_post(
            "/partners",
            json!({ "name": "missing", "handler": "script", "auth": { "scheme": "bearer" },
                    "secret": "tilltastic-token" }),
        )
        .await,
        "script_source",
    );
    refused(
        script_partner(&app, "broken", "fn handle(event) { #{ notice: ").await,
        "does not compile",
    );
    refused(
        script_partner(&app, "huge", &format!("{KEEP}//{}", "x".repeat(300 * 1024))).await,
        "at most",
    );
    refused(
        script_partner(
            &app,
            "misnamed",
            "fn handle_event(event) { #{ notice: \"x\" } }",
        )
        .await,
        "fn handle(event)",
    );
    let partners = app.admin_get("/partners").await;
    assert!(
        !partners.to_string().contains("\"reader\""),
        "nothing refused was created: {partners}"
    );

    // Saving is as strict, and a broken draft never replaces what runs.
    let (status, _) = script_partner(&app, "tilltastic", KEEP).await;
    assert_eq!(status, StatusCode::CREATED);
    refused(
        app.admin_put(
            "/partners/tilltastic/script",
            json!({ "source": "fn handle(event) { let x = ; }" }),
        )
        .await,
        "does not compile",
    );
    assert_eq!(
        app.admin_get("/partners/tilltastic/script").await["current"]["number"],
        1
    );
    let answer = deliver(&app, "tilltastic", CHECK).await;
    assert_eq!(answer["detail"], "kept: check.closed");
    let event_id = answer["event_id"].as_i64().expect("event");
    refused(
        app.admin_post(
            "/partners/tilltastic/script/try",
            json!({ "event_id": event_id, "source": "fn handle(event) {" }),
        )
        .await,
        "does not compile",
    );
    let (status, _) = app
        .admin_post(
            "/partners/tilltastic/script/try",
            json!({ "event_id": 999_999, "source": KEEP }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A runaway draft fails its try, with its limit, and nothing else.
    let (status, tried) = app
        .admin_post(
            "/partners/tilltastic/script/try",
            json!({ "event_id": event_id, "source": "fn handle(event) { loop { } }" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tried}");
    assert_eq!(
        tried["tried"]["mapped"]["fail"]["reason"], "script_limit",
        "{tried}"
    );

    // The file's partners keep their scripts in files; unknown partners are not found.
    let (status, _) = app
        .admin_put("/partners/lightspeed/script", json!({ "source": KEEP }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app
        .admin_put("/partners/nobody/script", json!({ "source": KEEP }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A partner switched to `script` must have one saved first.
    let (status, _) = app
        .admin_post(
            "/partners",
            json!({ "name": "switching", "handler": "lightspeed-kseries",
                    "auth": { "scheme": "bearer" }, "secret": "tilltastic-token" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let to_script =
        json!({ "definition": { "handler": "script", "auth": { "scheme": "bearer" } } });
    refused(
        app.admin_patch("/partners/switching", to_script.clone())
            .await,
        "script_source",
    );
    let (status, saved) = app
        .admin_put("/partners/switching/script", json!({ "source": KEEP }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let (status, switched) = app.admin_patch("/partners/switching", to_script).await;
    assert_eq!(status, StatusCode::OK, "{switched}");
    assert_eq!(switched["handler"], "script");
    let answer = deliver(&app, "switching", CHECK).await;
    assert_eq!(answer["detail"], "kept: check.closed", "{answer}");

    // Only those who integrate edit scripts.
    let venue = app
        .venue_with_location("lightspeed", "41910290874370", true)
        .await;
    let (_, manager) =
        user_with_token(&app, "manager@example.com", "venue_manager", &[venue]).await;
    for (method, path, body) in [
        (reqwest::Method::GET, "/partners/tilltastic/script", None),
        (
            reqwest::Method::PUT,
            "/partners/tilltastic/script",
            Some(json!({ "source": MAPPING })),
        ),
        (
            reqwest::Method::POST,
            "/partners/tilltastic/script/try",
            Some(json!({ "event_id": event_id })),
        ),
    ] {
        let (status, _) = call(&app, &manager, method, path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
}

/// Two processes on one PostgreSQL: a script saved through one runs on the other within
/// seconds, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_saved_on_one_node_runs_on_another_within_seconds() {
    use crate::process::Node;
    let database = empty_database(Db::Postgres).await;
    let dir = tempfile::tempdir().expect("dir");
    let one = Node::start(dir.path(), &database.url, &sealing()).await;
    let two = Node::start(dir.path(), &database.url, &sealing()).await;
    let admin = |node: &Node, method: reqwest::Method, path: &str| {
        reqwest::Client::new()
            .request(method, format!("{}/api/v1{path}", node.base))
            .bearer_auth(ADMIN_TOKEN)
    };
    let created = admin(&one, reqwest::Method::POST, "/partners")
        .json(&json!({ "name": "tilltastic", "handler": "script",
                       "auth": { "scheme": "bearer" }, "secret": "tilltastic-token",
                       "script_source": KEEP }))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let detail_on_two = || async {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/Sales/partners/tilltastic/events/ping",
                two.base
            ))
            .bearer_auth("tilltastic-token")
            .body("{}")
            .send()
            .await
            .expect("delivery");
        json_of(response).await["detail"].clone()
    };
    let waits_for = |wanted: &'static str| async move {
        let started = std::time::Instant::now();
        let mut seen = Value::Null;
        while started.elapsed() < std::time::Duration::from_secs(10) {
            seen = detail_on_two().await;
            if seen == wanted {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        panic!("node two answered {seen}, not {wanted:?}");
    };
    waits_for("kept: ping").await;
    let saved = admin(&one, reqwest::Method::PUT, "/partners/tilltastic/script")
        .json(&json!({ "source": "fn handle(event) { #{ notice: \"version two\" } }" }))
        .send()
        .await
        .expect("save");
    assert_eq!(saved.status(), StatusCode::CREATED);
    waits_for("version two").await;
}

crate::on_both_stores!(
    a_script_is_tried_on_a_stored_event_then_saved_as_a_new_version,
    a_script_that_could_reach_the_servers_files_or_fail_every_event_is_refused,
);
