//! Matching on a real service floor, through HTTP. Checks are Lightspeed K-Series order
//! notifications shaped like seed 001's split-check account, with the floor's fields
//! changed; POS reservation statuses are seed 001's reservation-status notification.
//!
//! - `service`: turns, parties moved, bar tabs moved to tables, walk-ins on no-show tables,
//!   names, covers and occupancy, refunds, what an operator sees when candidates tie;
//! - `history`: deliveries out of order on the floor (a late close, a late first snapshot);
//! - `release`: a booking giving up its sales (POS no-shows and cancellations, operators'
//!   re-matches) and the splits and refunds that follow their check.

mod history;
mod release;
mod service;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, SPLIT_LOCATION, TestApp, fixture, json_of};

/// The POS reservation-status seed's location and reservation id.
pub const SAMPLE_LOCATION: &str = "9765040300495493";

/// Epoch milliseconds of an RFC 3339 instant, as Lightspeed sends times.
pub fn ms(at: &str) -> i64 {
    DateTime::parse_from_rfc3339(at)
        .expect("test instant")
        .with_timezone(&Utc)
        .timestamp_millis()
}

/// One snapshot of a check as Lightspeed notifies it.
#[derive(Clone)]
pub struct Check<'a> {
    id: &'a str,
    notification: &'a str,
    opened: &'a str,
    updated: &'a str,
    tables: &'a [&'a str],
    total: &'a str,
    covers: Option<i64>,
}

impl<'a> Check<'a> {
    fn open(id: &'a str, opened: &'a str, tables: &'a [&'a str]) -> Self {
        Self {
            id,
            notification: "OPEN",
            opened,
            updated: opened,
            tables,
            total: "40.00",
            covers: None,
        }
    }

    /// A later snapshot of the same check, on `tables`.
    fn update(&self, updated: &'a str, tables: &'a [&'a str]) -> Self {
        Self {
            notification: "UPDATE",
            updated,
            tables,
            ..self.clone()
        }
    }

    /// The check paid and closed at `updated`.
    fn close(&self, updated: &'a str) -> Self {
        Self {
            notification: "CLOSE",
            updated,
            ..self.clone()
        }
    }

    /// The notification's JSON, on the split-check venue's location.
    fn body(&self) -> Value {
        let mut body: Value = serde_json::from_slice(&fixture("open_split_check_original.json"))
            .expect("fixture is JSON");
        body["notificationType"] = json!(self.notification);
        let account = &mut body["account"];
        account["id"] = json!(self.id);
        account["openDate"] = json!(ms(self.opened));
        account["updateDate"] = json!(ms(self.updated));
        account["tables"] = json!(self.tables);
        account["tableName"] = self.tables.first().map_or(Value::Null, |t| json!(t));
        account["tableNumber"] = Value::Null;
        account["orderMode"] = json!(if self.tables.is_empty() {
            "BAR_TAB"
        } else {
            "TABLE"
        });
        let total: f64 = self.total.parse().expect("test total");
        account["totalAmount"] = json!(total);
        account["paidAmount"] = json!(if self.notification == "CLOSE" {
            total
        } else {
            0.0
        });
        account["taxAmount"] = json!(0);
        account["preTaxAmount"] = json!(total);
        account["transactionLines"] = json!([]);
        account["coverCount"] = self.covers.map_or(Value::Null, |c| json!(c));
        if self.notification == "CLOSE" {
            account["closeDate"] = json!(ms(self.updated));
        }
        body
    }
}

pub async fn post(app: &TestApp, body: &Value) -> Value {
    let response = app.post_lightspeed(body.to_string().as_bytes()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = json_of(response).await;
    assert_eq!(answer["outcome"], "processed", "{answer}");
    answer
}

/// Posts a notification, insisting on a 200 whatever the outcome; returns the answer.
pub async fn post_any(app: &TestApp, body: &Value) -> Value {
    let response = app.post_lightspeed(body.to_string().as_bytes()).await;
    assert_eq!(response.status(), StatusCode::OK);
    json_of(response).await
}

pub async fn send(app: &TestApp, check: &Check<'_>) -> Value {
    post(app, &check.body()).await
}

/// The one sale with this account id.
pub async fn sale(app: &TestApp, id: &str) -> Value {
    let sales = app.sales_with_external_id(id).await;
    assert_eq!(sales.len(), 1, "{sales:?}");
    sales.into_iter().next().unwrap_or_default()
}

pub async fn floor(app: &TestApp) -> i64 {
    app.venue_with_location("lightspeed", SPLIT_LOCATION, true)
        .await
}

pub async fn booked(app: &TestApp, venue: i64, start: &str, minutes: i64, table: &str) -> i64 {
    app.booking(
        venue,
        json!({ "start": start, "duration_minutes": minutes, "covers": 2, "tables": [table] }),
    )
    .await
}

pub fn sale_ids(booking: &Value) -> Vec<String> {
    booking["sales"]
        .as_array()
        .map(|sales| {
            sales
                .iter()
                .filter_map(|s| s["external_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A check's notification on the POS reservation seed's location.
pub fn at_pos(mut body: Value) -> Value {
    body["businessLocationId"] = json!(9_765_040_300_495_493u64);
    body["account"]["businessLocationId"] = json!(SAMPLE_LOCATION);
    body
}

/// The POS reservation-status seed for a reservation, in a given status.
pub fn pos_status(reservation: &str, status: &str) -> Value {
    let mut body: Value =
        serde_json::from_slice(&fixture("pos_reservation_seated.json")).expect("fixture is JSON");
    body["platformReservationId"] = json!(reservation);
    body["status"] = json!(status);
    body["tables"] = json!(["1"]);
    body["covers"] = json!(2);
    body
}

/// An operator's page (`/ui/...`), signed in with the admin token.
pub async fn operator_page(app: &TestApp, path: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = client
        .post(format!("{}/ui/login", app.base))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(!cookie.is_empty(), "signed in");
    let page = client
        .get(format!("{}{path}", app.base))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.expect("page text")
}

/// A joined table 5+6 with one booking on each half, both at 19:00.
pub async fn two_bookings_on_joined_tables(app: &TestApp) -> (i64, i64) {
    let venue = floor(app).await;
    let five = app
        .booking(venue, json!({ "start": "2026-03-06T19:00:00Z", "covers": 2, "tables": ["5"], "customer": { "name": "Ana Lopez" } }))
        .await;
    let six = app
        .booking(venue, json!({ "start": "2026-03-06T19:00:00Z", "covers": 6, "tables": ["6"], "customer": { "name": "Zoë Müller" } }))
        .await;
    (five, six)
}

pub fn joined(id: &str) -> Value {
    Check::open(id, "2026-03-06T19:04:00Z", &["5", "6"]).body()
}
