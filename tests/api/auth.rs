//! Each authentication scheme through HTTP: valid, missing, wrong; and no secret is stored.

use base64::Engine;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use crate::helpers::{Db, HMAC_SECRET, PUBLIC_URL, TestApp, fixture, json_of, spawn};

const PATH: &str = "/Sales/partners/{partner}/events/order.updated";

fn post(app: &TestApp, partner: &str, query: &str) -> RequestBuilder {
    let path = PATH.replace("{partner}", partner);
    app.client
        .post(format!("{}{path}{query}", app.base))
        .body(fixture("open_regular_tax_inclusive.json"))
}

/// Sends the request; asserts the status and, for refusals, the recorded reason.
async fn expect(app: &TestApp, request: RequestBuilder, status: StatusCode, reason: &str) -> Value {
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), status, "expected {reason}");
    let answer = json_of(response).await;
    let recorded = app.event(&answer["event_id"]).await;
    if status == StatusCode::BAD_REQUEST {
        assert_eq!(answer["error"], reason);
        assert_eq!(recorded["outcome"], "rejected");
        assert_eq!(recorded["reason"], reason);
    }
    recorded
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

async fn bearer_tokens_are_checked(db: Db) {
    let app = spawn(db).await;
    let ok = post(&app, "lightspeed", "").bearer_auth("ls-bearer-token");
    let stored = expect(&app, ok, StatusCode::OK, "accepted").await;
    assert!(
        stored["headers"].get("authorization").is_none(),
        "the token is never stored"
    );
    expect(
        &app,
        post(&app, "lightspeed", ""),
        StatusCode::BAD_REQUEST,
        "missing_credentials",
    )
    .await;
    let wrong = post(&app, "lightspeed", "").bearer_auth("ls-bearer-token-x");
    expect(&app, wrong, StatusCode::BAD_REQUEST, "bad_signature").await;
}

async fn basic_credentials_are_checked(db: Db) {
    let app = spawn(db).await;
    let ok =
        post(&app, "ls-basic", "").header("authorization", basic("lightspeed", "basic-password"));
    expect(&app, ok, StatusCode::OK, "accepted").await;
    expect(
        &app,
        post(&app, "ls-basic", ""),
        StatusCode::BAD_REQUEST,
        "missing_credentials",
    )
    .await;
    let wrong = post(&app, "ls-basic", "").header("authorization", basic("lightspeed", "guess"));
    expect(&app, wrong, StatusCode::BAD_REQUEST, "bad_signature").await;
}

async fn api_keys_in_a_header_or_the_query_are_checked(db: Db) {
    let app = spawn(db).await;
    let ok = post(&app, "ls-header-key", "").header("x-api-secret", "header-key-value");
    let stored = expect(&app, ok, StatusCode::OK, "accepted").await;
    assert!(
        stored["headers"].get("x-api-secret").is_none(),
        "the key is never stored"
    );
    expect(
        &app,
        post(&app, "ls-header-key", ""),
        StatusCode::BAD_REQUEST,
        "missing_credentials",
    )
    .await;
    let wrong = post(&app, "ls-header-key", "").header("x-api-secret", "nope");
    expect(&app, wrong, StatusCode::BAD_REQUEST, "bad_signature").await;

    let ok = post(&app, "ls-param-key", "?api_key=param-key-value&x=1");
    let stored = expect(&app, ok, StatusCode::OK, "accepted").await;
    assert_eq!(stored["query"], "api_key=[redacted]&x=1");
    expect(
        &app,
        post(&app, "ls-param-key", "?x=1"),
        StatusCode::BAD_REQUEST,
        "missing_credentials",
    )
    .await;
    expect(
        &app,
        post(&app, "ls-param-key", "?api_key=nope"),
        StatusCode::BAD_REQUEST,
        "bad_signature",
    )
    .await;
}

async fn url_tokens_are_checked(db: Db) {
    let app = spawn(db).await;
    let stored = expect(
        &app,
        post(&app, "ls-url-token", "?token=url-token-secret"),
        StatusCode::OK,
        "accepted",
    )
    .await;
    assert_eq!(stored["query"], "token=[redacted]");
    expect(
        &app,
        post(&app, "ls-url-token", ""),
        StatusCode::BAD_REQUEST,
        "missing_credentials",
    )
    .await;
    expect(
        &app,
        post(&app, "ls-url-token", "?token=guess"),
        StatusCode::BAD_REQUEST,
        "bad_signature",
    )
    .await;
}

async fn hmac_signatures_cover_the_body_and_the_url_with_its_query(db: Db) {
    let app = spawn(db).await;
    let body = fixture("open_regular_tax_inclusive.json");
    let path = "/Sales/partners/signed/events/order.updated?attempt=1";
    let response = app.post_signed(path, &body).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The same signature does not hold for another query string or another body.
    let url = format!("{PUBLIC_URL}{path}");
    let signature =
        diarysync::partners::auth::hmac_sha256_hex(HMAC_SECRET.as_bytes(), &body, Some(&url));
    let replayed_elsewhere = app
        .client
        .post(format!(
            "{}/Sales/partners/signed/events/order.updated?attempt=2",
            app.base
        ))
        .header("x-partner-signature", &signature)
        .body(body.clone());
    expect(
        &app,
        replayed_elsewhere,
        StatusCode::BAD_REQUEST,
        "bad_signature",
    )
    .await;
    let tampered = app
        .client
        .post(format!("{}{path}", app.base))
        .header("x-partner-signature", &signature)
        .body([&body[..], b" "].concat());
    expect(&app, tampered, StatusCode::BAD_REQUEST, "bad_signature").await;
    let unsigned = app.client.post(format!("{}{path}", app.base)).body(body);
    expect(
        &app,
        unsigned,
        StatusCode::BAD_REQUEST,
        "missing_credentials",
    )
    .await;
}

async fn body_only_hmac_uses_its_own_header(db: Db) {
    let app = spawn(db).await;
    let body = fixture("open_regular_tax_inclusive.json");
    let signature = diarysync::partners::auth::hmac_sha256_hex(HMAC_SECRET.as_bytes(), &body, None);
    let ok = post(&app, "signed-body", "?any=query").header("X-Body-Signature", &signature);
    let stored = expect(&app, ok, StatusCode::OK, "accepted").await;
    assert_eq!(
        stored["headers"]["x-body-signature"], signature,
        "signatures are kept for audit"
    );
    let wrong_header = post(&app, "signed-body", "").header("X-Partner-Signature", &signature);
    expect(
        &app,
        wrong_header,
        StatusCode::BAD_REQUEST,
        "missing_credentials",
    )
    .await;
}

async fn scheme_none_accepts_anything(db: Db) {
    let app = spawn(db).await;
    expect(&app, post(&app, "open", ""), StatusCode::OK, "accepted").await;
}

crate::on_both_stores!(
    bearer_tokens_are_checked,
    basic_credentials_are_checked,
    api_keys_in_a_header_or_the_query_are_checked,
    url_tokens_are_checked,
    hmac_signatures_cover_the_body_and_the_url_with_its_query,
    body_only_hmac_uses_its_own_header,
    scheme_none_accepts_anything,
);
