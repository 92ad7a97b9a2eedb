//! The admin API's OpenAPI document: served without the token, and every operation it
//! documents exists and answers with JSON (its data or the API's error body), never with
//! the router's bare "no such route".

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Db, spawn};

async fn every_documented_operation_exists_and_answers_json(db: Db) {
    let app = spawn(db).await;
    let document: Value = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{document}"
    );
    assert!(document["components"]["securitySchemes"]["admin"].is_object());
    let (venue, booking) = app.split_venue_with_booking().await;
    let event = app.deliver_ok("open_split_check_original.json").await["event_id"].clone();
    let sale = app.sales_with_external_id("2190678134095876").await[0]["id"].clone();
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 15, "{}", paths.len());
    for (path, operations) in paths {
        let id = if path.starts_with("/api/v1/webhooks/") {
            // No such subscription: every operation answers, none deletes anything.
            "999999".to_owned()
        } else if path.starts_with("/api/v1/venues/") {
            venue.to_string()
        } else if path.starts_with("/api/v1/bookings/") {
            booking.to_string()
        } else if path.starts_with("/api/v1/events/") {
            event.to_string()
        } else {
            sale.to_string()
        };
        let url = format!(
            "{}{}",
            app.base,
            path.replace("{id}", &id).replace("{reference}", "R-1")
        );
        for (method, operation) in operations.as_object().expect("operations") {
            assert_eq!(
                operation["security"][0]["admin"],
                json!([]),
                "{method} {path} names the admin token"
            );
            let request = match method.as_str() {
                "get" if path.ends_with("/diary") => {
                    app.client.get(&url).query(&[("date", "2025-12-29")])
                }
                "get" => app.client.get(&url),
                "post" => app.client.post(&url).json(&json!({})),
                "patch" => app.client.patch(&url).json(&json!({})),
                "put" => app.client.put(&url).json(&json!({})),
                "delete" => app.client.delete(&url),
                other => panic!("undocumented method {other}"),
            };
            let response = request.bearer_auth(ADMIN_TOKEN).send().await.expect("send");
            let status = response.status();
            let body: Value = response
                .json()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {status}, not JSON ({e})"));
            assert!(
                status.is_success() || body["error"].is_string(),
                "{method} {path}: {status} {body}"
            );
            assert_ne!(
                status,
                reqwest::StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
    }
}

crate::on_both_stores!(every_documented_operation_exists_and_answers_json,);
