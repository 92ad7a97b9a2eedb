//! The conformance corpus: every real-world variant of each partner's deliveries
//! (`tests/fixtures/<partner>/variants/`, written by `tests/fixtures/make_variants.py`), each
//! posted to a fresh service, with the answer and the diary it must give
//! (`variants/cases.json`). One table-driven test per partner, on both stores.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{CHECKFRONT_PARTNER, Db, TestApp, json_of, spawn_with};

fn variants(partner: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(partner)
        .join("variants")
}

fn manifest(partner: &str) -> Value {
    let path = variants(partner).join("cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Whether `actual` holds everything `expected` says: objects key by key (others may have
/// more keys), arrays element by element and of the same length, the rest equal.
fn holds(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => expected
            .iter()
            .all(|(key, value)| holds(actual.get(key).unwrap_or(&Value::Null), value)),
        (Value::Array(actual), Value::Array(expected)) => {
            actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| holds(a, e))
        }
        (actual, expected) => actual == expected,
    }
}

async fn post(app: &TestApp, manifest: &Value, file: &str, headers: &Value) -> (StatusCode, Value) {
    let partner = text_of(&manifest["partner"]);
    let body =
        std::fs::read(variants(partner).join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut request = app
        .client
        .post(format!("{}{}", app.base, text_of(&manifest["url"])))
        .body(body);
    if let Some(token) = manifest["auth"]["bearer"].as_str() {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers.as_object().into_iter().flatten() {
        request = request.header(name.as_str(), text_of(value));
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    (status, json_of(response).await)
}

/// Runs one case on a fresh service; `Err` with what went wrong.
async fn run_case(db: Db, manifest: &Value, case: &Value) -> Result<(), String> {
    let name = text_of(&case["name"]);
    let partner = text_of(&manifest["partner"]);
    let salesplay = Path::new(env!("CARGO_MANIFEST_DIR")).join("partners/salesplay.rhai");
    let extra = format!(
        "{CHECKFRONT_PARTNER}\n[[partners]]\nname = \"salesplay\"\nhandler = \"script\"\n\
         script = \"{}\"\n[partners.auth]\nscheme = \"url-token\"\nsecret = \"sp-token\"\n",
        salesplay.display()
    );
    let app = spawn_with(db, &extra).await;
    let locations: Vec<Value> = manifest["venue"]["locations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|location| json!({ "partner": partner, "location_id": location }))
        .collect();
    let (status, venue) = app
        .admin_post(
            "/venues",
            json!({ "name": "Variants", "timezone": manifest["venue"]["timezone"],
                    "locations": locations }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{venue}");
    let venue = venue["id"].as_i64().expect("venue id");
    for booking in manifest["bookings"].as_array().into_iter().flatten() {
        app.booking(venue, booking.clone()).await;
    }
    for before in case["before"].as_array().into_iter().flatten() {
        let (status, answer) = post(
            &app,
            manifest,
            text_of(before),
            &json!({"content-type": "application/json"}),
        )
        .await;
        if status != StatusCode::OK {
            return Err(format!(
                "{name}: setting up with {before}: {status} {answer}"
            ));
        }
    }
    let (status, answer) = post(&app, manifest, text_of(&case["file"]), &case["headers"]).await;
    let expected = &case["answer"];
    if expected["status"].as_u64() != Some(u64::from(status.as_u16())) {
        return Err(format!(
            "{name}: answered {status} {answer}, expected {expected}"
        ));
    }
    let recorded = match answer.get("event_id").and_then(Value::as_i64) {
        Some(id) => app.admin_get(&format!("/events/{id}")).await,
        None => return Err(format!("{name}: no event recorded: {answer}")),
    };
    for key in ["outcome", "reason"] {
        if let Some(value) = expected.get(key)
            && &recorded[key] != value
        {
            return Err(format!(
                "{name}: {key} {} expected {value}: {recorded}",
                recorded[key]
            ));
        }
    }
    if let Some(sale) = case.get("sale") {
        let id = text_of(&sale["external_id"]);
        let found = app
            .admin_get(&format!("/sales?partner={partner}&external_id={id}"))
            .await;
        let Some(sale_id) = found.get(0).and_then(|s| s["id"].as_i64()) else {
            return Err(format!("{name}: no sale {id}: {found}"));
        };
        let detail = app.admin_get(&format!("/sales/{sale_id}")).await;
        if !holds(&detail, &sale["expect"]) {
            return Err(format!(
                "{name}: sale {id} is {detail}, expected {}",
                sale["expect"]
            ));
        }
        if let Some(lines) = sale.get("line_descriptions") {
            let descriptions: Vec<Value> = detail["lines"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|line| line["description"].clone())
                .collect();
            if &Value::Array(descriptions.clone()) != lines {
                return Err(format!("{name}: lines {descriptions:?}, expected {lines}"));
            }
        }
    }
    if let Some(booking) = case.get("booking") {
        let diary = app
            .admin_get(&format!(
                "/venues/{venue}/diary?date={}",
                text_of(&booking["date"])
            ))
            .await;
        let found = diary["bookings"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["reference"] == booking["reference"]);
        let Some(found) = found else {
            return Err(format!(
                "{name}: no booking {} in {diary}",
                booking["reference"]
            ));
        };
        if !holds(found, &booking["expect"]) {
            return Err(format!(
                "{name}: booking is {found}, expected {}",
                booking["expect"]
            ));
        }
    }
    Ok(())
}

/// Every case of `partner`'s corpus, four at a time, each on its own service.
async fn every_variant_gives_its_diary(db: Db, partner: &str, at_least: usize) {
    let manifest = manifest(partner);
    let cases = manifest["cases"].as_array().cloned().unwrap_or_default();
    assert!(
        cases.len() >= at_least,
        "{partner}: {} variants, at least {at_least} expected",
        cases.len()
    );
    let mut failures = Vec::new();
    for chunk in cases.chunks(4) {
        let results =
            futures_util::future::join_all(chunk.iter().map(|case| run_case(db, &manifest, case)))
                .await;
        failures.extend(results.into_iter().filter_map(Result::err));
    }
    assert!(
        failures.is_empty(),
        "{partner} variants:\n{}",
        failures.join("\n")
    );
}

async fn every_lightspeed_variant_gives_its_diary(db: Db) {
    every_variant_gives_its_diary(db, "lightspeed", 15).await;
}

async fn every_checkfront_variant_gives_its_diary(db: Db) {
    every_variant_gives_its_diary(db, "checkfront", 15).await;
}

async fn every_salesplay_variant_gives_its_diary(db: Db) {
    every_variant_gives_its_diary(db, "salesplay", 12).await;
}

crate::on_both_stores!(
    every_lightspeed_variant_gives_its_diary,
    every_checkfront_variant_gives_its_diary,
    every_salesplay_variant_gives_its_diary,
);
