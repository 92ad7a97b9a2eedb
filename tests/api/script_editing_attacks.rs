//! What the outside attack on editable scripts, the venue pages and the health page's
//! mapping form found, each kept as the kind of fault it is.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::onboarding::{csrf_of, sealing, signed_in_pages};
use crate::script_editing::{CHECK, harbour_booking};

/// A stored script partner `name` authenticating with `auth`, running `source`.
async fn scripted(app: &TestApp, name: &str, auth: Value, source: &str) {
    let (status, partner) = app
        .admin_post(
            "/partners",
            json!({ "name": name, "handler": "script", "auth": auth,
                    "secret": "a-partner-secret-123", "script_source": source }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{partner}");
}

async fn post(app: &TestApp, path_and_query: &str, bearer: Option<&str>, body: &str) -> Value {
    let mut request = app
        .client
        .post(format!("{}{path_and_query}", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("delivery");
    json_of(response).await
}

async fn try_draft(app: &TestApp, partner: &str, event_id: &Value, source: &str) -> Value {
    let (status, tried) = app
        .admin_post(
            &format!("/partners/{partner}/script/try"),
            json!({ "event_id": event_id, "source": source }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tried}");
    tried
}

async fn a_script_cannot_take_the_process_down_or_hold_a_thread(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    // The partner decides how deep: nesting data deeply overflowed a request thread's
    // stack, which aborts the process.
    let nesting = r#"fn handle(event) {
        let cur = #{};
        for i in 0..event.body.deep { cur = #{ next: cur }; }
        #{ notice: "built" }
    }"#;
    scripted(&app, "nester", json!({ "scheme": "bearer" }), nesting).await;
    for deep in [10_000, 1_000_000] {
        let answer = post(
            &app,
            "/Sales/partners/nester/events/deep",
            Some("a-partner-secret-123"),
            &format!("{{\"deep\": {deep}}}"),
        )
        .await;
        assert!(answer["event_id"].is_i64(), "{deep}: {answer}");
        let event = app.event(&answer["event_id"]).await;
        assert!(
            event["outcome"] == "processed" || event["reason"] == "script_limit",
            "{deep}: {event}"
        );
    }
    let health = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK, "the process lives on");

    // Trying such a draft fails the try only; sleeping is no part of a script.
    let answer = post(
        &app,
        "/Sales/partners/nester/events/deep",
        Some("a-partner-secret-123"),
        "{\"deep\": 1}",
    )
    .await;
    let deep_draft = "fn handle(event) { let c = #{}; for i in 0..1000000 { c = #{ n: c }; } #{ notice: \"x\" } }";
    let tried = try_draft(&app, "nester", &answer["event_id"], deep_draft).await;
    assert_eq!(
        tried["tried"]["mapped"]["fail"]["reason"], "script_limit",
        "{tried}"
    );
    // One step that would build the square of its inputs is refused before it is built.
    let squaring = r#"fn handle(event) {
        let s = ""; s.pad(20000, "x"); let t = s; t.replace("x", s); #{ notice: "built" }
    }"#;
    let tried = try_draft(&app, "nester", &answer["event_id"], squaring).await;
    assert_eq!(
        tried["tried"]["mapped"]["fail"]["reason"], "script_limit",
        "{tried}"
    );
    // Data hidden in a function pointer, or captured by a closure, escaped the size checks
    // and the time limit: neither is part of a script.
    for hiding in [
        "fn g(x) { 1 } fn handle(event) { let b = []; b.pad(9000, 1); let f = Fn(\"g\").curry(b); let a = []; a.pad(9000, f); #{ notice: `${a.len()}` } }",
        "fn handle(event) { let s = \"\"; s.pad(1000000, \"x\"); let a = []; a.pad(20000, 1); let b = a.filter(|x| !s.contains(\"y\")); #{ notice: `${b.len()}` } }",
    ] {
        let (status, refused) = app
            .admin_post(
                "/partners/nester/script/try",
                json!({ "event_id": answer["event_id"], "source": hiding }),
            )
            .await;
        let failed = status == StatusCode::UNPROCESSABLE_ENTITY
            || refused["tried"]["mapped"]["fail"].is_object();
        assert!(failed, "{status}: {refused}");
    }
    for sleeper in [
        "fn handle(event) { sleep(3); #{ notice: \"slept\" } }",
        "fn handle(event) { sleep(9223372036854775807); #{ notice: \"slept\" } }",
        "fn handle(event) { sleep(2.5); #{ notice: \"slept\" } }",
    ] {
        let tried = try_draft(&app, "nester", &answer["event_id"], sleeper).await;
        let detail = tried["tried"]["mapped"]["fail"]["detail"]
            .as_str()
            .unwrap_or_default();
        assert!(detail.contains("sleep is not available"), "{tried}");
    }
}

async fn a_script_never_sees_the_partners_credentials(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    let echo = r#"fn handle(event) { #{ notice: `${event.query} ${event.headers}` } }"#;
    scripted(
        &app,
        "by-query",
        json!({ "scheme": "url-token", "param": "token" }),
        echo,
    )
    .await;
    scripted(
        &app,
        "by-header",
        json!({ "scheme": "api-key", "header": "x-api-key" }),
        echo,
    )
    .await;
    let by_query = post(
        &app,
        "/partners/by-query/webhooks/callback/ping?token=a-partner-secret-123&shop=12&api_key=k-987654&client_secret=k-987654&jwt=k-987654",
        None,
        "{}",
    )
    .await;
    let response = app
        .client
        .post(format!(
            "{}/partners/by-header/webhooks/callback/ping?shop=12",
            app.base
        ))
        .header("x-api-key", "a-partner-secret-123")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("delivery");
    let by_header = json_of(response).await;
    for answer in [by_query, by_header] {
        let detail = answer["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains("shop"), "the rest is there: {answer}");
        assert!(
            !detail.contains("a-partner-secret-123") && !detail.contains("k-987654"),
            "{detail}"
        );
        let event = app.event(&answer["event_id"]).await;
        assert!(
            !event.to_string().contains("a-partner-secret-123"),
            "{event}"
        );
    }
}

async fn a_location_id_with_spaces_around_it_is_mapped_like_any_other(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    let padded = r#"fn handle(event) {
        let c = event.body.check;
        #{ location: "  " + event.body.venue + " ", commands: [#{
            type: "sale", id: c.no, opened_at: c.opened, closed_at: c.closed, state: "closed",
            total: c.amount, tax: c.vat, covers: c.guests, tables: [c.table] }] }
    }"#;
    scripted(&app, "tilltastic", json!({ "scheme": "bearer" }), padded).await;
    let unmapped = post(
        &app,
        "/Sales/partners/tilltastic/events/check.closed",
        Some("a-partner-secret-123"),
        CHECK,
    )
    .await;
    assert_eq!(unmapped["reason"], "unknown_location", "{unmapped}");
    let booking = harbour_booking(&app).await;
    let mapped = post(
        &app,
        "/Sales/partners/tilltastic/events/check.closed",
        Some("a-partner-secret-123"),
        &CHECK.replace("C-77", "C-78"),
    )
    .await;
    assert_eq!(mapped["outcome"], "processed", "{mapped}");
    assert_eq!(app.booking_view(booking).await["status"], "paid");
}

async fn a_form_sent_twice_makes_one_venue_and_the_try_list_holds_real_events(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    // An unmapped location, mapped to a new venue from partner health, twice.
    let mut order: Value =
        serde_json::from_slice(&fixture("open_regular_tax_inclusive.json")).expect("fixture");
    order["businessLocationId"] = json!(515_151);
    let answer = json_of(app.post_lightspeed(order.to_string().as_bytes()).await).await;
    assert_eq!(answer["reason"], "unknown_location", "{answer}");
    let (client, cookie) = signed_in_pages(&app).await;
    let csrf = csrf_of(&client, &cookie, &format!("{}/ui/health", app.base)).await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = client
            .post(format!("{}/ui/health/map", app.base))
            .header(reqwest::header::COOKIE, &cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("partner", "lightspeed"),
                ("location_id", "515151"),
                ("venue", "new"),
                ("new_name", "Double Click"),
                ("new_timezone", "Europe/London"),
            ])
            .send()
            .await
            .expect("map");
        answers.push(response.status());
    }
    assert_eq!(answers, [StatusCode::SEE_OTHER, StatusCode::BAD_REQUEST]);
    let venues = app.admin_get("/venues").await;
    let named: Vec<&Value> = venues
        .as_array()
        .expect("venues")
        .iter()
        .filter(|v| v["name"] == "Double Click")
        .collect();
    assert_eq!(named.len(), 1, "no venue without its location: {venues}");

    // Refused deliveries never crowd a partner's events out of the script page's list.
    scripted(
        &app,
        "tilltastic",
        json!({ "scheme": "bearer" }),
        "fn handle(event) { #{ notice: \"kept\" } }",
    )
    .await;
    let kept = post(
        &app,
        "/Sales/partners/tilltastic/events/check.closed",
        Some("a-partner-secret-123"),
        CHECK,
    )
    .await;
    for _ in 0..40 {
        post(
            &app,
            "/Sales/partners/tilltastic/events/check.closed",
            Some("a-wrong-token"),
            CHECK,
        )
        .await;
    }
    let script_page = format!("{}/ui/partners/tilltastic/script", app.base);
    let page = client
        .get(&script_page)
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let offered = page.matches("<option value=\"").count();
    assert_eq!(offered, 1, "only the one real event");
    assert!(page.contains(&format!("<option value=\"{}\"", kept["event_id"])));

    // A refused event cannot be tried, and the draft stays in the editor.
    let refused = app
        .admin_get("/events?partner=tilltastic&outcome=rejected&limit=1")
        .await;
    let csrf = csrf_of(&client, &cookie, &script_page).await;
    let draft = "fn handle(event) { #{ notice: \"my draft\" } }";
    let response = client
        .post(&script_page)
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "try"),
            ("source", draft),
            ("event_id", &refused[0]["id"].to_string()),
        ])
        .send()
        .await
        .expect("try");
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.expect("html");
    assert!(page.contains("cannot be tried"), "{page}");
    assert!(page.contains("my draft"), "the draft is kept");
}

async fn odd_script_text_and_look_alike_names_are_refused_or_read_as_meant(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    let partner = |name: &str, source: &str| {
        json!({ "name": name, "handler": "script", "auth": { "scheme": "bearer" },
                "secret": "a-partner-secret-123", "script_source": source })
    };
    let (status, answer) = app
        .admin_post(
            "/partners",
            partner("nul", "fn handle(event) { #{ notice: \"a\0b\" } }"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("NUL")
    );

    let source = "fn handle(event) { #{ notice: \"bom\" } }";
    let (status, answer) = app
        .admin_post("/partners", partner("bom", &format!("\u{feff}{source}")))
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "an editor's byte-order mark: {answer}"
    );
    let saved = app.admin_get("/partners/bom/script").await;
    assert_eq!(saved["current"]["source"], source);

    let (status, _) = app.admin_post("/partners", partner("BOM", source)).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "bom and BOM are one name to people"
    );
    let (status, _) = app
        .admin_post("/partners", partner("LightSpeed", source))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A draft is tried on its own partner's events only.
    let lightspeed = app.deliver_ok("open_regular_tax_inclusive.json").await;
    let (status, _) = app
        .admin_post(
            "/partners/bom/script/try",
            json!({ "event_id": lightspeed["event_id"], "source": source }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = app
        .admin_post(
            "/venues",
            json!({ "name": "x".repeat(201), "timezone": "Europe/London" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn a_partners_history_and_health_list_everything_to_act_on(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    scripted(
        &app,
        "tilltastic",
        json!({ "scheme": "bearer" }),
        "fn handle(event) { #{ location: event.body.venue, commands: [#{ type: \"guest\", name: \"A\" }] } }",
    )
    .await;
    let (status, _) = app
        .admin_post(
            "/partners/tilltastic/secrets",
            json!({ "secret": "the-next-secret-456" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Fifteen locations no venue owns: every one can be mapped from health.
    for shop in 0..15 {
        post(
            &app,
            "/Sales/partners/tilltastic/events/check.closed",
            Some("a-partner-secret-123"),
            &format!("{{\"venue\": \"shop-{shop}\"}}"),
        )
        .await;
    }
    let health = app.admin_get("/health").await;
    let record = health
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["partner"] == "tilltastic")
        .unwrap_or_else(|| panic!("tilltastic in {health}"));
    let locations: Vec<&str> = record["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["location_id"].as_str())
        .collect();
    assert_eq!(locations.len(), 15, "{record}");
    assert_eq!(record["problems_not_listed"], 0);

    let (status, _) = app
        .admin_post("/events/replay", json!({ "partner": "tilltastic" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let trail = app.admin_get("/audit?partner=tilltastic").await;
    let actions = audit_actions(&trail);
    assert_eq!(
        actions,
        [
            "events.replay",
            "partner.secret_add",
            "partner.create",
            "partner.script_save"
        ],
        "{trail}"
    );

    // Switched off, it is still listed with its scheme.
    let (status, off) = app
        .admin_patch("/partners/tilltastic", json!({ "enabled": false }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(off["scheme"], "bearer", "{off}");
}

crate::on_both_stores!(
    a_partners_history_and_health_list_everything_to_act_on,
    a_script_cannot_take_the_process_down_or_hold_a_thread,
    a_script_never_sees_the_partners_credentials,
    a_location_id_with_spaces_around_it_is_mapped_like_any_other,
    a_form_sent_twice_makes_one_venue_and_the_try_list_holds_real_events,
    odd_script_text_and_look_alike_names_are_refused_or_read_as_meant,
);
