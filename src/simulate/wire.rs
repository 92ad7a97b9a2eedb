//! The floor's snapshots as Lightspeed K-Series sends them: order notifications shaped
//! like seed 001's accounts, and the POS reservation-status notification.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// One snapshot of a check (a Lightspeed account) at one time.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    pub account_id: String,
    pub location_id: String,
    /// `OPEN`, `UPDATE` or `CLOSE`.
    pub notification: &'static str,
    pub opened: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub tables: Vec<String>,
    pub total_cents: i64,
    pub paid_cents: i64,
    pub tip_cents: i64,
    pub covers: Option<i64>,
    /// The guest named on the check (`consumerRecord`).
    pub guest: Option<String>,
    /// The reservation the POS seated it from (`platformReservationId`).
    pub reference: Option<String>,
    /// `SALE`, `SPLIT` or `REFUND`.
    pub kind: &'static str,
    /// `originAccountId`.
    pub origin: Option<String>,
}

impl Snapshot {
    /// A later snapshot: another notification at `at`, on `tables`, with a new total.
    pub fn next(
        &self,
        notification: &'static str,
        at: DateTime<Utc>,
        tables: &[String],
        total_cents: i64,
    ) -> Snapshot {
        Snapshot {
            notification,
            updated: at,
            tables: tables.to_vec(),
            total_cents,
            ..self.clone()
        }
    }

    /// The check closed at `at`, paid in full: `amount_cents` and a tip.
    pub fn paid(&self, at: DateTime<Utc>, amount_cents: i64, tip_cents: i64) -> Snapshot {
        Snapshot {
            notification: "CLOSE",
            updated: at,
            total_cents: amount_cents,
            paid_cents: amount_cents,
            tip_cents,
            ..self.clone()
        }
    }

    /// The same snapshot on other tables.
    pub fn on(mut self, tables: &[String]) -> Snapshot {
        self.tables = tables.to_vec();
        self
    }
}

fn money(cents: i64) -> Value {
    // Lightspeed sends amounts as JSON numbers with two decimals.
    json!(cents as f64 / 100.0)
}

fn location_number(location_id: &str) -> Value {
    location_id
        .parse::<u64>()
        .map_or_else(|_| json!(location_id), |n| json!(n))
}

/// The order notification for a snapshot.
pub(super) fn order_notification(s: &Snapshot) -> Value {
    let consumer = s.guest.as_ref().map_or(Value::Null, |name| {
        let (first, last) = name.split_once(' ').unwrap_or(("", name));
        json!({ "contactInformation": { "firstName": first, "lastName": last } })
    });
    json!({
        "notificationType": s.notification,
        "account": {
            "id": s.account_id,
            "businessLocationId": s.location_id,
            "name": s.tables.first().map_or_else(|| "Bar".to_owned(), |t| format!("Table {t}")),
            "accountNumber": format!("A{}", s.account_id),
            "currencyCode": "GBP",
            "openDate": s.opened.timestamp_millis(),
            "closeDate": (s.notification == "CLOSE").then(|| s.updated.timestamp_millis()),
            "updateDate": s.updated.timestamp_millis(),
            "paidAmount": money(s.paid_cents),
            "totalAmount": money(s.total_cents),
            "gratuityAmount": money(s.tip_cents),
            "taxAmount": money(s.total_cents / 6),
            "preTaxAmount": money(s.total_cents - s.total_cents / 6),
            "serviceCharge": 0,
            "coverCount": s.covers,
            "orderMode": if s.tables.is_empty() { "BAR_TAB" } else { "TABLE" },
            "tableName": s.tables.first().map(|t| format!("Table {t}")),
            "tableNumber": Value::Null,
            "tables": s.tables,
            "type": s.kind,
            "originAccountId": s.origin,
            "transactionLines": [],
            "paymentLines": [],
            "externalReferences": [],
            "consumerRecord": consumer,
        },
        "businessLocationId": location_number(&s.location_id),
        "platformRestaurantId": "simulated",
        "sequenceId": format!("{}.{}", s.account_id, s.updated.timestamp_millis()),
        "platformReservationId": s.reference,
    })
}

/// The POS's reservation-status notification (`NO_SHOW`, `CANCELLED`, ...).
pub(super) fn reservation_status(location_id: &str, reference: &str, status: &str) -> Value {
    json!({
        "platformCode": "diarysync-simulate",
        "platformRestaurantId": "simulated",
        "platformReservationId": reference,
        "businessLocationId": location_number(location_id),
        "status": status,
    })
}
