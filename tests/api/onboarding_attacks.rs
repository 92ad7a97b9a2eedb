//! What the outside attack on onboarding found, kept as tests: a partner is never left
//! without a usable secret, not even by concurrent retirements on two nodes; labels name one
//! secret each; an expired secret is refused; a credential in a query string is never stored,
//! whatever the partner's scheme or with none known; renames, `scheme = "none"` and `..` are
//! refused.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::onboarding::{new_partner, sealing};

async fn a_rotation_never_leaves_a_partner_without_a_usable_secret(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    new_partner(&app, "careful", "careful-token-one").await;
    let (status, _) = app
        .admin_post(
            "/partners/careful/secrets",
            json!({ "secret": "careful-token-two", "valid_until": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an expired secret"
    );
    let (status, added) = app
        .admin_post(
            "/partners/careful/secrets",
            json!({ "secret": "careful-token-two", "label": "two" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let (status, _) = app
        .admin_post(
            "/partners/careful/secrets",
            json!({ "secret": "careful-token-six", "label": "two" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "labels name one secret each");
    let ids: Vec<i64> = added["partner"]["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .filter_map(|s| s["id"].as_i64())
        .collect();
    let other = match db {
        Db::Postgres => Some(spawn_beside(&app, &sealing()).await),
        Db::Sqlite => None,
    };
    let bases: Vec<String> = std::iter::once(app.base.clone())
        .chain(other.as_ref().map(|o| o.base.clone()))
        .collect();
    let retirements = ids.iter().enumerate().map(|(n, id)| {
        let url = format!(
            "{}/api/v1/partners/careful/secrets/{id}",
            bases[n % bases.len()]
        );
        async move {
            reqwest::Client::new()
                .delete(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("retire")
                .status()
        }
    });
    let answers = futures_util::future::join_all(retirements).await;
    assert_eq!(
        answers
            .iter()
            .filter(|s| **s == StatusCode::NO_CONTENT)
            .count(),
        1,
        "one of the two stays: {answers:?}"
    );
    let partner = app.admin_get("/partners/careful").await;
    assert_eq!(
        partner["secrets"].as_array().map(Vec::len),
        Some(1),
        "{partner}"
    );

    for (body, why) in [
        (
            json!({ "definition": { "name": "renamed", "handler": "lightspeed-kseries",
                                    "auth": { "scheme": "bearer" } } }),
            "a rename",
        ),
        (
            json!({ "definition": { "handler": "lightspeed-kseries",
                                    "auth": { "scheme": "none" } } }),
            "no authentication",
        ),
    ] {
        let (status, _) = app.admin_patch("/partners/careful", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}");
    }
    let (status, _) = app
        .admin_post(
            "/partners",
            json!({ "name": "..", "handler": "lightspeed-kseries",
                    "auth": { "scheme": "bearer" }, "secret": "dots-token-123" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn a_token_in_a_query_string_is_never_stored_whatever_the_scheme(db: Db) {
    let app = spawn_with(db, &sealing()).await;
    let (status, _) = app
        .admin_post(
            "/partners",
            json!({ "name": "by-url", "handler": "lightspeed-kseries",
                    "auth": { "scheme": "url-token", "param": "token" },
                    "secret": "url-secret-98765" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .admin_patch(
            "/partners/by-url",
            json!({ "definition": { "handler": "lightspeed-kseries",
                                    "auth": { "scheme": "api-key", "header": "x-api-key" } } }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the scheme changed, the secret kept"
    );
    for path in [
        // The partner still sends its old URL's token.
        "/Sales/partners/by-url/events/order.updated?token=url-secret-98765",
        // A partner we do not know, credentials in another case.
        "/Sales/partners/nobody/events/order.updated?TOKEN=url-secret-98765&apikey=k-12345",
    ] {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/json")
            .body(fixture("r224_close.json"))
            .send()
            .await
            .expect("delivery");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
    }
    let events = app.admin_get("/events?limit=100").await;
    assert_eq!(events.as_array().map(Vec::len), Some(2));
    for event in events.as_array().expect("list") {
        let detail = app.event(&event["id"]).await.to_string();
        assert!(
            !detail.contains("url-secret-98765") && !detail.contains("k-12345"),
            "{detail}"
        );
    }
}

crate::on_both_stores!(
    a_rotation_never_leaves_a_partner_without_a_usable_secret,
    a_token_in_a_query_string_is_never_stored_whatever_the_scheme,
);
