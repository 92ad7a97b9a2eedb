//! Operators' own accounts: roles, venue scoping (another venue's data is not found),
//! personal tokens, server-side sessions that end everywhere at once, the login brake, the
//! audit trail, and the `diarysync user` command.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const R224_LOCATION: &str = "41910290874370";

/// Two venues with a sale each: ours (an unmatched sale, a booking for it) and theirs.
struct Floor {
    mine: i64,
    my_booking: i64,
    my_sale: i64,
    theirs: i64,
    their_booking: i64,
    their_sale: i64,
    their_event: i64,
}

async fn floor(app: &TestApp) -> Floor {
    let mine = app
        .venue_with_location("lightspeed", R224_LOCATION, true)
        .await;
    let answer = app.deliver_ok("open_regular_tax_inclusive.json").await;
    assert_eq!(answer["detail"], "unmatched");
    let my_sale = app.admin_get(&format!("/venues/{mine}/sales")).await[0]["id"]
        .as_i64()
        .expect("sale id");
    let my_booking = app
        .booking(
            mine,
            json!({ "start": "2024-04-04T15:30:00Z", "covers": 2, "tables": ["9"],
                    "customer": { "name": "Ana Private", "phone": "+44 7700 900123" } }),
        )
        .await;
    let (theirs, their_booking) = app.split_venue_with_booking().await;
    let delivered = app.deliver_ok("open_split_check_original.json").await;
    let their_event = delivered["event_id"].as_i64().expect("event id");
    let their_sale = app.admin_get(&format!("/venues/{theirs}/sales")).await[0]["id"]
        .as_i64()
        .expect("sale id");
    Floor {
        mine,
        my_booking,
        my_sale,
        theirs,
        their_booking,
        their_sale,
        their_event,
    }
}

/// Creates a user through the API and gives them a token: (user id, token).
pub(crate) async fn user_with_token(
    app: &TestApp,
    email: &str,
    role: &str,
    venues: &[i64],
) -> (i64, String) {
    let (status, user) = app
        .admin_post(
            "/users",
            json!({ "name": email, "email": email, "role": role, "venues": venues,
                    "password": "a long enough password" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_i64().expect("user id");
    let (status, token) = app
        .admin_post(&format!("/users/{id}/tokens"), json!({ "name": "tests" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    (id, token["token"].as_str().expect("token").to_owned())
}

pub(crate) async fn call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app
        .client
        .request(method, format!("{}/api/v1{path}", app.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    call(app, token, reqwest::Method::GET, path, None).await
}

async fn a_venue_manager_sees_only_their_venue_and_another_venues_data_is_not_found(db: Db) {
    let app = spawn(db).await;
    let f = floor(&app).await;
    let (_, manager) =
        user_with_token(&app, "manager@example.com", "venue_manager", &[f.mine]).await;

    let (status, venues) = get_as(&app, &manager, "/venues").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<i64> = venues
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["id"].as_i64())
        .collect();
    assert_eq!(ids, vec![f.mine], "only their venue is listed");

    for path in [
        format!("/venues/{}", f.theirs),
        format!("/venues/{}/diary?date=2025-12-29", f.theirs),
        format!("/venues/{}/sales", f.theirs),
        format!("/venues/{}/bookings", f.theirs),
        format!("/bookings/{}", f.their_booking),
        format!("/sales/{}", f.their_sale),
        format!("/sales/{}/suggestions", f.their_sale),
        format!("/events/{}", f.their_event),
    ] {
        let (status, body) = get_as(&app, &manager, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {path}: {body}");
    }
    let writes = [
        (
            reqwest::Method::PATCH,
            format!("/bookings/{}", f.their_booking),
            json!({ "covers": 9 }),
        ),
        (
            reqwest::Method::POST,
            format!("/bookings/{}/cancel", f.their_booking),
            json!({}),
        ),
        (
            reqwest::Method::POST,
            format!("/sales/{}/unmatch", f.their_sale),
            json!({}),
        ),
        (
            reqwest::Method::POST,
            format!("/sales/{}/match", f.my_sale),
            json!({ "booking_id": f.their_booking }),
        ),
        (
            reqwest::Method::PATCH,
            format!("/venues/{}", f.theirs),
            json!({ "walk_ins": true }),
        ),
        (
            reqwest::Method::POST,
            format!("/venues/{}/bookings", f.theirs),
            json!({ "start": "2025-12-29T19:00:00Z" }),
        ),
    ];
    for (method, path, body) in writes {
        let (status, answer) = call(&app, &manager, method.clone(), &path, Some(body)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }
    let theirs = app.booking_view(f.their_booking).await;
    assert_eq!(theirs["covers"], 2, "nothing of theirs changed");
    assert_ne!(theirs["status"], "cancelled");

    // Lists hold their venue's rows only.
    let (_, sales) = get_as(&app, &manager, "/sales").await;
    assert!(
        sales
            .as_array()
            .expect("list")
            .iter()
            .all(|s| s["venue_id"] == f.mine),
        "{sales}"
    );
    let (_, events) = get_as(&app, &manager, "/events").await;
    let events = events.as_array().expect("list");
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["venue_id"] == f.mine), "{events:?}");

    // What the role may not do at all is forbidden, not hidden.
    for path in ["/health", "/users", "/changes", "/webhooks"] {
        let (status, _) = get_as(&app, &manager, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "GET {path}");
    }
    let (status, _) = call(
        &app,
        &manager,
        reqwest::Method::POST,
        "/venues",
        Some(json!({ "name": "Mine too", "timezone": "Europe/London" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Their own venue is theirs to run.
    let (status, matched) = call(
        &app,
        &manager,
        reqwest::Method::POST,
        &format!("/sales/{}/match", f.my_sale),
        Some(json!({ "booking_id": f.my_booking })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{matched}");
    assert_eq!(matched["match"]["booking_id"], f.my_booking);
    let (status, _) = call(
        &app,
        &manager,
        reqwest::Method::PATCH,
        &format!("/venues/{}", f.mine),
        Some(json!({ "walk_ins": true })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "settings of their own venue");
}

async fn personal_tokens_carry_their_users_role_and_stop_when_revoked_or_disabled(db: Db) {
    let app = spawn(db).await;
    let f = floor(&app).await;
    let (user, token) = user_with_token(&app, "Integrator@Example.com", "integrator", &[]).await;
    assert!(token.starts_with("dsk_"), "{token}");

    let (status, me) = get_as(&app, &token, "/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "integrator");
    assert_eq!(
        me["actor"], "integrator@example.com",
        "e-mails are lowercased"
    );
    assert_eq!(me["venues"], Value::Null, "an integrator sees every venue");

    // Integrating, yes; changing a diary or users by hand, no.
    assert_eq!(get_as(&app, &token, "/health").await.0, StatusCode::OK);
    let (status, _) = get_as(&app, &token, &format!("/bookings/{}", f.their_booking)).await;
    assert_eq!(status, StatusCode::OK, "reads every venue");
    let (status, _) = call(
        &app,
        &token,
        reqwest::Method::POST,
        &format!("/sales/{}/match", f.my_sale),
        Some(json!({ "booking_id": f.my_booking })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        get_as(&app, &token, "/users").await.0,
        StatusCode::FORBIDDEN
    );

    // The token is shown once: listings carry its prefix, never the token.
    let tokens = app.admin_get(&format!("/users/{user}/tokens")).await;
    let listed = tokens.to_string();
    assert!(!listed.contains(&token), "{listed}");
    assert_eq!(tokens[0]["prefix"], token[..10]);

    // A second token of their own; revoking it stops it at once.
    let (status, own) = call(
        &app,
        &token,
        reqwest::Method::POST,
        "/me/tokens",
        Some(json!({ "name": "cron", "expires_at": "2020-01-01T00:00:00Z" })),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "expiry in the past: {own}"
    );
    let (status, own) = call(
        &app,
        &token,
        reqwest::Method::POST,
        "/me/tokens",
        Some(json!({ "name": "cron", "expires_at": "2099-01-01T00:00:00Z" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    let second = own["token"].as_str().expect("token").to_owned();
    assert_eq!(get_as(&app, &second, "/me").await.0, StatusCode::OK);
    let (status, _) = call(
        &app,
        &token,
        reqwest::Method::DELETE,
        &format!("/me/tokens/{}", own["id"]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        get_as(&app, &second, "/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get_as(&app, &token, "/me").await.0, StatusCode::OK);

    // Disabling the user stops every token of theirs.
    let (status, _) = app
        .admin_patch(&format!("/users/{user}"), json!({ "disabled": true }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        get_as(&app, &token, "/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as(&app, "dsk_made-up-token", "/me").await.0,
        StatusCode::UNAUTHORIZED
    );

    // The admin token is not a user and has no personal tokens.
    let (status, _) = app.admin_post("/me/tokens", json!({ "name": "x" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// A client that does not follow redirects, so a login's cookie and a page's redirect to the
/// login form can be seen.
fn browserless() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Logs in on the pages: the session cookie, or the status the login was answered with.
async fn login(app: &TestApp, email: &str, password: &str) -> Result<String, StatusCode> {
    let response = browserless()
        .post(format!("{}/ui/login", app.base))
        .form(&[
            ("email", email),
            ("password", password),
            ("next", "/ui/diary"),
        ])
        .send()
        .await
        .expect("login");
    if response.status() != StatusCode::SEE_OTHER {
        return Err(response.status());
    }
    let cookie = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("diarysync_session="))
        .expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

/// Whether the cookie opens the diary page (else the page sends us to log in).
async fn signed_in(app: &TestApp, cookie: &str) -> bool {
    let response = browserless()
        .get(format!("{}/ui/diary", app.base))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("page");
    response.status() == StatusCode::OK
}

async fn disabling_a_user_or_a_new_password_ends_their_sessions_on_every_node(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", R224_LOCATION, true)
        .await;
    let (status, user) = app
        .admin_post(
            "/users",
            json!({ "name": "Mo", "email": "mo@example.com", "role": "venue_manager",
                    "venues": [venue], "password": "first password" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_i64().expect("id");
    let other = match db {
        Db::Postgres => Some(spawn_beside(&app, "").await),
        Db::Sqlite => None,
    };

    assert_eq!(
        login(&app, "mo@example.com", "wrong password").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    let cookie = login(&app, "MO@example.com ", "first password")
        .await
        .expect("logs in");
    assert!(signed_in(&app, &cookie).await);
    if let Some(other) = &other {
        assert!(
            signed_in(other, &cookie).await,
            "every node reads the session"
        );
    }
    let seen = app.admin_get(&format!("/users/{id}")).await;
    assert!(seen["last_login_at"].is_string(), "{seen}");

    // A new password ends the session everywhere; the new one logs in.
    let (status, _) = app
        .admin_patch(
            &format!("/users/{id}"),
            json!({ "password": "second password" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!signed_in(&app, &cookie).await);
    if let Some(other) = &other {
        assert!(!signed_in(other, &cookie).await);
    }
    assert!(
        login(&app, "mo@example.com", "first password")
            .await
            .is_err()
    );
    let cookie = login(&app, "mo@example.com", "second password")
        .await
        .expect("logs in");
    assert!(signed_in(&app, &cookie).await);

    // Disabling ends it too, and no login works after.
    let (status, _) = app
        .admin_patch(&format!("/users/{id}"), json!({ "disabled": true }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!signed_in(&app, &cookie).await);
    if let Some(other) = &other {
        assert!(!signed_in(other, &cookie).await);
    }
    assert_eq!(
        login(&app, "mo@example.com", "second password").await,
        Err(StatusCode::UNAUTHORIZED)
    );
}

async fn repeated_failed_logins_lock_the_account_even_for_the_right_password(db: Db) {
    let app = spawn(db).await;
    let (status, _) = app
        .admin_post(
            "/users",
            json!({ "name": "Al", "email": "al@example.com", "role": "admin",
                    "password": "the right password" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for _ in 0..5 {
        assert_eq!(
            login(&app, "al@example.com", "a guess at it").await,
            Err(StatusCode::UNAUTHORIZED)
        );
    }
    assert_eq!(
        login(&app, "al@example.com", "the right password").await,
        Err(StatusCode::TOO_MANY_REQUESTS),
        "locked: the right password is not even checked"
    );
    // Another account from another address is not locked by it (all tests come from one
    // address, under its own higher limit).
    let (status, _) = app
        .admin_post(
            "/users",
            json!({ "name": "Bo", "email": "bo@example.com", "role": "admin",
                    "password": "bo's own password" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        login(&app, "bo@example.com", "bo's own password")
            .await
            .is_ok()
    );
}

async fn every_manual_action_is_in_the_audit_trail_with_its_actor(db: Db) {
    let app = spawn(db).await;
    let f = floor(&app).await;
    let (_, manager) =
        user_with_token(&app, "manager@example.com", "venue_manager", &[f.mine]).await;
    let act = |method: reqwest::Method, path: String, body: Value| {
        let (app, manager) = (&app, manager.clone());
        async move {
            let (status, answer) = call(app, &manager, method, &path, Some(body)).await;
            assert!(status.is_success(), "{path}: {status} {answer}");
        }
    };
    act(
        reqwest::Method::POST,
        format!("/sales/{}/match", f.my_sale),
        json!({ "booking_id": f.my_booking }),
    )
    .await;
    act(
        reqwest::Method::POST,
        format!("/sales/{}/unmatch", f.my_sale),
        json!({}),
    )
    .await;
    act(
        reqwest::Method::PATCH,
        format!("/bookings/{}", f.my_booking),
        json!({ "covers": 4 }),
    )
    .await;
    act(
        reqwest::Method::POST,
        format!("/bookings/{}/cancel", f.my_booking),
        json!({}),
    )
    .await;
    let (status, _) = app
        .admin_patch(
            &format!("/venues/{}", f.theirs),
            json!({ "walk_ins": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .admin_post("/events/replay", json!({ "partner": "lightspeed" }))
        .await;
    assert_eq!(status, StatusCode::OK);

    let entries = app.admin_get("/audit?limit=100").await;
    let entries = entries.as_array().expect("list");
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default(),
                e["actor"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    for expected in [
        ("sale.match", "manager@example.com"),
        ("sale.unmatch", "manager@example.com"),
        ("booking.change", "manager@example.com"),
        ("booking.cancel", "manager@example.com"),
        ("venue.change", "admin token"),
        ("events.replay", "admin token"),
        ("user.create", "admin token"),
        ("token.create", "admin token"),
    ] {
        assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
    }
    let change = entries
        .iter()
        .find(|e| e["action"] == "booking.change")
        .expect("the change");
    assert_eq!(change["before"]["covers"], 2);
    assert_eq!(change["after"]["covers"], 4);
    assert_eq!(change["venue_id"], f.mine);
    let matched = entries
        .iter()
        .find(|e| e["action"] == "sale.match")
        .expect("the match");
    assert_eq!(matched["before"]["booking_id"], Value::Null);
    assert_eq!(matched["after"]["booking_id"], f.my_booking);
    let trail = Value::Array(entries.clone()).to_string();
    assert!(
        !trail.contains("Ana Private") && !trail.contains("7700"),
        "no guest's personal data in the trail: {trail}"
    );

    // Filters, and a venue manager reads their venues' entries only.
    let mine = app.admin_get("/audit?actor=manager@example.com").await;
    assert_eq!(mine.as_array().expect("list").len(), 4, "{mine}");
    let (status, seen) = get_as(&app, &manager, "/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        seen.as_array()
            .expect("list")
            .iter()
            .all(|e| e["venue_id"] == f.mine),
        "{seen}"
    );
    let history = app
        .admin_get(&format!(
            "/audit?subject_type=booking&subject_id={}",
            f.my_booking
        ))
        .await;
    assert_eq!(
        history.as_array().expect("list").len(),
        3,
        "created, changed, cancelled"
    );
}

crate::on_both_stores!(
    a_venue_manager_sees_only_their_venue_and_another_venues_data_is_not_found,
    personal_tokens_carry_their_users_role_and_stop_when_revoked_or_disabled,
    disabling_a_user_or_a_new_password_ends_their_sessions_on_every_node,
    repeated_failed_logins_lock_the_account_even_for_the_right_password,
    every_manual_action_is_in_the_audit_trail_with_its_actor,
);

/// The first admin comes from the command line, before the service ever ran; they log in on
/// the pages with the password given on standard input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_is_made_on_the_command_line_and_logs_in() {
    use std::io::Write as _;
    let database = empty_database(Db::Sqlite).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("diarysync.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\npublic_url = \"{PUBLIC_URL}\"\n\
             database_url = \"{}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n",
            database.url
        ),
    )
    .expect("config");
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_diarysync"))
            .arg("user")
            .args(args)
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("diarysync user");
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input.write_all(text.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("output")
    };
    let added = run(
        &[
            "add",
            "--email",
            "First@Example.com",
            "--name",
            "First Admin",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("the first password\n"),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let short = run(
        &[
            "reset-password",
            "--email",
            "first@example.com",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(!short.status.success(), "a short password is refused");
    let listed = run(&["list"], None);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listed.contains("first@example.com\tadmin\tFirst Admin"),
        "{listed}"
    );
    assert!(!listed.contains("argon2"), "{listed}");

    let app = spawn_on(database).await;
    let cookie = login(&app, "first@example.com", "the first password")
        .await
        .expect("logs in");
    assert!(signed_in(&app, &cookie).await);
    let trail = app.admin_get("/audit?actor=command%20line").await;
    assert_eq!(trail[0]["action"], "user.create", "{trail}");
}
