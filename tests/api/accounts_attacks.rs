//! What the outside attack on operators' accounts found, each kept as a test: login bursts
//! and several nodes cannot pass the attempt limits, the admin token's form is limited too,
//! forms posted from other sites are refused, tokens do not outlive a reset, the audit
//! trail's before-states form a true chain under concurrent changes, and it records the
//! platform link, webhooks and how the actor signed in.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn browserless() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn post_login(app: &TestApp, form: &[(&str, &str)]) -> StatusCode {
    browserless()
        .post(format!("{}/ui/login", app.base))
        .form(form)
        .send()
        .await
        .expect("login")
        .status()
}

async fn admin_user(app: &TestApp, email: &str, password: &str) -> i64 {
    let (status, user) = app
        .admin_post(
            "/users",
            json!({ "name": email, "email": email, "role": "admin", "password": password }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    user["id"].as_i64().expect("id")
}

async fn a_burst_of_guesses_gets_no_more_tries_than_the_limit_on_any_node(db: Db) {
    let app = spawn(db).await;
    admin_user(&app, "target@example.com", "the right password").await;
    let other = match db {
        Db::Postgres => Some(spawn_beside(&app, "").await),
        Db::Sqlite => None,
    };
    let nodes: Vec<&TestApp> = std::iter::once(&app).chain(other.as_ref()).collect();
    let guesses = (0..30).map(|n| {
        let node = nodes[n % nodes.len()];
        async move {
            let guess = format!("guess number {n}");
            post_login(
                node,
                &[("email", "target@example.com"), ("password", &guess)],
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(
        checked <= 5,
        "at most 5 guesses checked, not {checked}: {answers:?}"
    );
    assert!(answers.iter().all(|s| matches!(
        *s,
        StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    )));
    for node in &nodes {
        let status = post_login(
            node,
            &[
                ("email", "target@example.com"),
                ("password", "the right password"),
            ],
        )
        .await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "locked on every node"
        );
    }
}

async fn the_admin_tokens_login_form_is_limited_like_a_password(db: Db) {
    let app = spawn(db).await;
    for _ in 0..5 {
        assert_eq!(
            post_login(&app, &[("token", "not-the-admin-token")]).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        post_login(&app, &[("token", ADMIN_TOKEN)]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn a_reset_password_or_enabling_again_lets_a_locked_operator_in_and_stops_old_tokens(db: Db) {
    let app = spawn(db).await;
    let id = admin_user(&app, "locked@example.com", "first password").await;
    let (_, token) = app
        .admin_post(&format!("/users/{id}/tokens"), json!({ "name": "leaked" }))
        .await;
    let token = token["token"].as_str().expect("token").to_owned();
    for _ in 0..6 {
        post_login(
            &app,
            &[("email", "locked@example.com"), ("password", "wrong guess")],
        )
        .await;
    }
    let (status, _) = app
        .admin_patch(
            &format!("/users/{id}"),
            json!({ "password": "second password" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        post_login(
            &app,
            &[
                ("email", "locked@example.com"),
                ("password", "second password")
            ]
        )
        .await,
        StatusCode::SEE_OTHER,
        "the reset unlocked the account"
    );
    let me = |token: String| {
        let app = &app;
        async move {
            app.client
                .get(format!("{}/api/v1/me", app.base))
                .bearer_auth(token)
                .send()
                .await
                .expect("me")
                .status()
        }
    };
    assert_eq!(
        me(token.clone()).await,
        StatusCode::UNAUTHORIZED,
        "the reset stopped it"
    );
    app.admin_patch(&format!("/users/{id}"), json!({ "disabled": true }))
        .await;
    app.admin_patch(&format!("/users/{id}"), json!({ "disabled": false }))
        .await;
    assert_eq!(
        me(token).await,
        StatusCode::UNAUTHORIZED,
        "and it stays stopped"
    );
}

async fn a_form_posted_from_another_site_is_refused(db: Db) {
    let app = spawn(db).await;
    admin_user(&app, "victim@example.com", "victim's password").await;
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "null"),
    ] {
        let status = browserless()
            .post(format!("{}/ui/login", app.base))
            .header(name, value)
            .form(&[
                ("email", "victim@example.com"),
                ("password", "victim's password"),
            ])
            .send()
            .await
            .expect("login")
            .status();
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {value}");
    }
    let own = app.base.clone();
    let status = browserless()
        .post(format!("{}/ui/login", app.base))
        .header("origin", own)
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("email", "victim@example.com"),
            ("password", "victim's password"),
        ])
        .send()
        .await
        .expect("login")
        .status();
    assert_eq!(status, StatusCode::SEE_OTHER, "our own form logs in");
}

async fn concurrent_changes_leave_a_true_chain_of_before_and_after(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", "41910290874370", true)
        .await;
    let booking = app
        .booking(
            venue,
            json!({ "start": "2025-12-29T19:00:00Z", "covers": 2 }),
        )
        .await;
    let other = match db {
        Db::Postgres => Some(spawn_beside(&app, "").await),
        Db::Sqlite => None,
    };
    let nodes: Vec<&TestApp> = std::iter::once(&app).chain(other.as_ref()).collect();
    let changes = (3..23).map(|covers| {
        let node = nodes[usize::try_from(covers).unwrap_or(0) % nodes.len()];
        async move {
            node.admin_patch(&format!("/bookings/{booking}"), json!({ "covers": covers }))
                .await
                .0
        }
    });
    for status in futures_util::future::join_all(changes).await {
        assert_eq!(status, StatusCode::OK);
    }
    let trail = app
        .admin_get(&format!(
            "/audit?subject_type=booking&subject_id={booking}&limit=100"
        ))
        .await;
    let mut entries: Vec<Value> = trail.as_array().expect("list").clone();
    entries.reverse();
    assert_eq!(entries.len(), 21, "created and 20 changes");
    for pair in entries.windows(2) {
        assert_eq!(
            pair[0]["after"]["covers"], pair[1]["before"]["covers"],
            "each change starts where the one before it ended: {pair:?}"
        );
    }
}

async fn the_trail_names_how_an_actor_signed_in_and_records_the_platform_link_and_webhooks(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", "41910290874370", true)
        .await;
    let (_, user) = app
        .admin_post(
            "/users",
            json!({ "name": "Ivy", "email": "ivy@example.com", "role": "integrator" }),
        )
        .await;
    let id = user["id"].as_i64().expect("id");
    let (_, token) = app
        .admin_post(
            &format!("/users/{id}/tokens"),
            json!({ "name": "platform" }),
        )
        .await;
    let token_id = token["id"].as_i64().expect("token id");
    let token = token["token"].as_str().expect("token").to_owned();
    let put = app
        .client
        .put(format!(
            "{}/api/v1/venues/{venue}/bookings/by-reference/PL-1",
            app.base
        ))
        .bearer_auth(&token)
        .json(&json!({ "start": "2025-12-29T19:00:00Z", "covers": 2 }))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), StatusCode::CREATED);
    let (status, _) = app
        .admin_post(
            "/webhooks",
            json!({ "url": "https://receiver.example/hook?key=secret-in-url" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let trail = app.admin_get("/audit?limit=100").await;
    let entries = trail.as_array().expect("list");
    let put = entries
        .iter()
        .find(|e| e["action"] == "booking.put")
        .expect("the platform's put");
    assert_eq!(put["actor"], "ivy@example.com");
    assert_eq!(put["actor_via"], format!("token {token_id}"));
    let hook = entries
        .iter()
        .find(|e| e["action"] == "webhook.create")
        .expect("the subscription");
    assert_eq!(hook["actor_via"], "admin token");
    assert!(!trail.to_string().contains("secret-in-url"), "{trail}");

    // An integrator reads the trail, but not the operators' directory in it.
    let theirs = app
        .client
        .get(format!("{}/api/v1/audit?limit=100", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("audit");
    let theirs = json_of(theirs).await;
    assert!(
        theirs
            .as_array()
            .expect("list")
            .iter()
            .all(|e| e["subject_type"] != "user" || e["subject_id"] == id),
        "{theirs}"
    );
}

async fn a_user_given_the_same_venue_twice_is_made_with_it_once(db: Db) {
    let app = spawn(db).await;
    let venue = app
        .venue_with_location("lightspeed", "41910290874370", true)
        .await;
    let (status, user) = app
        .admin_post(
            "/users",
            json!({ "name": "Twice", "email": "twice@example.com", "role": "venue_manager",
                    "venues": [venue, venue] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["venues"], json!([venue]));
}

crate::on_both_stores!(
    a_burst_of_guesses_gets_no_more_tries_than_the_limit_on_any_node,
    the_admin_tokens_login_form_is_limited_like_a_password,
    a_reset_password_or_enabling_again_lets_a_locked_operator_in_and_stops_old_tokens,
    a_form_posted_from_another_site_is_refused,
    concurrent_changes_leave_a_true_chain_of_before_and_after,
    the_trail_names_how_an_actor_signed_in_and_records_the_platform_link_and_webhooks,
    a_user_given_the_same_venue_twice_is_made_with_it_once,
);
