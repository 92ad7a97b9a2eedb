//! A day of Lightspeed notifications for the reliability tests (crash, several nodes): the
//! deliveries, the venue they land in, posting one until it is acknowledged, and the state
//! the store ends in, named so two runs compare.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{ADMIN_TOKEN, fixture};
use crate::process::LIGHTSPEED_TOKEN;

const LOCATION: &str = "1340570962231298";
const TABLES: i64 = 8;

/// One delivery of the workload: which sale and version, and its body.
#[derive(Clone)]
pub struct Delivery {
    pub key: String,
    pub body: Vec<u8>,
}

/// Each sale OPEN, UPDATE (more items) and CLOSE (paid), on one of the venue's tables
/// during its lunch; a few split into two checks; sales interleaved as a busy POS sends them.
pub fn workload(sales: usize) -> Vec<Delivery> {
    let template: Value =
        serde_json::from_slice(&fixture("open_split_check_original.json")).expect("json");
    let mut deliveries = Vec::new();
    for round in 0..3 {
        for sale in 0..sales {
            let mut order = template.clone();
            let table = i64::try_from(sale).unwrap_or(0) % TABLES + 1;
            let kind = ["OPEN", "UPDATE", "CLOSE"][round as usize];
            order["notificationType"] = json!(kind);
            let account = &mut order["account"];
            account["id"] = json!(format!("crash-{sale}"));
            account["accountNumber"] = json!(format!("C{sale}"));
            account["tableName"] = json!(format!("Table {table}"));
            account["tableNumber"] = json!(table);
            account["tables"] = json!([table.to_string()]);
            account["updateDate"] = json!(1_767_013_602_000_i64 + round);
            let lines = account["transactionLines"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let kept = (1 + round as usize + sale % 2).min(lines.len());
            account["transactionLines"] = json!(lines[..kept].to_vec());
            if kind == "CLOSE" {
                account["paidAmount"] = account["totalAmount"].clone();
                account["closeDate"] = json!(1_767_016_000_000_i64);
            }
            if sale % 5 == 4 {
                account["originAccountId"] = json!(format!("crash-{}", sale - 1));
                account["type"] = json!("SPLIT");
            }
            deliveries.push(Delivery {
                key: format!("{sale}/{kind}"),
                body: order.to_string().into_bytes(),
            });
        }
    }
    deliveries
}

pub async fn seed(base: &str) {
    let client = reqwest::Client::new();
    let venue: Value = client
        .post(format!("{base}/api/v1/venues"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "name": "Crash Cafe", "timezone": "Europe/Paris",
                       "locations": [{ "partner": "lightspeed", "location_id": LOCATION }] }))
        .send()
        .await
        .expect("venue")
        .json()
        .await
        .expect("venue JSON");
    let venue = venue["id"].as_i64().expect("venue id");
    for table in 1..=TABLES {
        let created = client
            .post(format!("{base}/api/v1/venues/{venue}/bookings"))
            .bearer_auth(ADMIN_TOKEN)
            .json(
                &json!({ "reference": format!("L{table}"), "start": "2025-12-29T11:45:00Z",
                           "duration_minutes": 120, "covers": 2, "tables": [table.to_string()] }),
            )
            .send()
            .await
            .expect("booking");
        assert!(created.status().is_success());
    }
}

/// Posts one delivery until it is acknowledged; returns the event id of the 2xx.
pub async fn deliver(client: &reqwest::Client, base: &Mutex<String>, body: &[u8]) -> i64 {
    loop {
        let url = format!(
            "{}/Sales/partners/lightspeed/events/order.updated",
            base.lock().await
        );
        let answer = client
            .post(url)
            .bearer_auth(LIGHTSPEED_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(response) = answer
            && response.status().is_success()
        {
            let json: Value = response.json().await.unwrap_or_default();
            if let Some(id) = json["event_id"].as_i64() {
                return id;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What the store ended up with: each sale's figures and link, each booking's status and
/// spend, by names that do not depend on ids.
pub async fn state(base: &str) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            client
                .get(path)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("admin read")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    // Every sale, a page at a time (newest first, `before` the last id seen).
    let mut sales = Vec::new();
    let mut before = String::new();
    loop {
        let page = get(format!(
            "{base}/api/v1/sales?partner=lightspeed&limit=1000{before}"
        ))
        .await;
        let page = page.as_array().cloned().unwrap_or_default();
        let Some(last) = page.last().and_then(|sale| sale["id"].as_i64()) else {
            break;
        };
        before = format!("&before={last}");
        sales.extend(page);
    }
    let mut by_sale = BTreeMap::new();
    let mut booking_ids = std::collections::BTreeSet::new();
    for sale in &sales {
        booking_ids.extend(sale["match"]["booking_id"].as_i64());
        let detail = get(format!("{base}/api/v1/sales/{}", sale["id"])).await;
        by_sale.insert(
            sale["external_id"].as_str().unwrap_or_default().to_owned(),
            json!({
                "version": sale["version"], "state": sale["state"], "total": sale["total"],
                "paid": sale["paid"], "booking": sale["match"]["booking_id"],
                "rule": sale["match"]["rule"], "lines": detail["lines"].as_array().map(Vec::len),
            }),
        );
    }
    let mut by_booking = BTreeMap::new();
    for id in booking_ids {
        let booking = get(format!("{base}/api/v1/bookings/{id}")).await;
        by_booking.insert(
            booking["reference"].as_str().unwrap_or_default().to_owned(),
            json!({ "status": booking["status"], "spend": booking["spend"],
                    "sales": booking["sales"].as_array().map(Vec::len) }),
        );
    }
    (by_sale, by_booking)
}
