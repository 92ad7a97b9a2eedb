//! Checkfront booking and payment webhooks.
//!
//! Spec: <https://api.checkfront.com/ref/notifications.html>,
//! <https://api.checkfront.com/ref/webhook/booking.html> and `…/webhook/payment.html`.
//!
//! Checkfront posts the same notification as JSON, XML or a form, chosen per webhook; the
//! format is sniffed from the body. Its JSON is a mechanical XML-to-JSON conversion
//! (attributes under `@attributes`, every scalar a string, empty elements as `{}`, a single
//! item or tax collapsed from an array to an object), so all three become the same tree
//! ([`super::tree`]) and are read once. Venue: the account `host`. Booking key and the
//! reference POS sales carry: `code`. Times: epoch seconds. Money: strings, currency on
//! `order.@attributes.currency_id`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rhai::Dynamic;

use super::tree::{self, at, decimal_of, items, text_at};
use super::{Delivery, PartnerHandler};
use crate::domain::time;
use crate::domain::{
    BookingSnapshot, BookingStatus, Command, Customer, Mapped, PlatformPayment, Reason,
};

/// The `checkfront` handler. Account-defined statuses map through the partner's
/// `[partners.status_map]`; unmapped ones keep the booking's status and are recorded.
#[derive(Debug, Clone, Default)]
pub struct Checkfront {
    pub status_map: BTreeMap<String, BookingStatus>,
}

/// Where one of Checkfront's default status ids lies along a booking's life, finer than
/// our statuses: PART (part paid) and PAID are both confirmed, but a PART after PAID is a
/// late retry. Checkfront's booking webhooks carry no version or update time
/// (<https://api.checkfront.com/ref/webhook/booking.html>), so this is how a stale
/// snapshot is told.
fn default_rank(id: &str) -> Option<i64> {
    let confirmed = BookingStatus::Confirmed.rank();
    Some(match id.to_ascii_uppercase().as_str() {
        "PART" => confirmed,
        "PAID" => confirmed + 5,
        _ => return None,
    })
}

/// Our status for one of Checkfront's default status ids, in any case: a `pend` from a
/// hand-built or older integration is still PEND, and must meet the stale-snapshot rule.
fn default_status(id: &str) -> Option<BookingStatus> {
    Some(match id.to_ascii_uppercase().as_str() {
        "WAIT" => BookingStatus::Enquiry,
        "PEND" | "HOLD" => BookingStatus::Provisional,
        "PART" | "PAID" => BookingStatus::Confirmed,
        "STOP" | "VOID" => BookingStatus::Cancelled,
        _ => return None,
    })
}

fn ignore(reason: Reason, detail: impl Into<String>) -> Mapped {
    Mapped::Ignore {
        reason,
        detail: detail.into(),
    }
}

impl PartnerHandler for Checkfront {
    fn map(&self, delivery: Delivery<'_>) -> Mapped {
        let (format, body) = match tree::parse(delivery.body) {
            Ok(parsed) => parsed,
            Err(error) => return ignore(Reason::MalformedPayload, error.to_string()),
        };
        if !matches!(
            format,
            tree::Format::Json | tree::Format::Xml | tree::Format::Form
        ) {
            return ignore(
                Reason::MalformedPayload,
                format!(
                    "a {} body is not a Checkfront notification",
                    format.as_str()
                ),
            );
        }
        // XML has the root element `<checkfront-notify>`; JSON and forms are its content.
        let root = at(&body, &["checkfront-notify"]).unwrap_or(body);
        let Some(host) =
            text_at(&root, &["@attributes", "host"]).or_else(|| text_at(&root, &["host"]))
        else {
            return Mapped::invalid("no account host");
        };
        if let Some(booking) = at(&root, &["booking"]).filter(Dynamic::is_map) {
            return match self.booking(&booking) {
                Ok(snapshot) => Mapped::Apply {
                    location_id: host,
                    commands: vec![Command::UpsertBooking(Box::new(snapshot))],
                },
                Err(detail) => Mapped::invalid(detail),
            };
        }
        if let Some(transaction) = at(&root, &["transaction"]).filter(Dynamic::is_map) {
            return match payment(&transaction) {
                Ok(payment) => Mapped::Apply {
                    location_id: host,
                    commands: vec![Command::RecordPayment(payment)],
                },
                Err(detail) => Mapped::invalid(detail),
            };
        }
        let kind =
            text_at(&root, &["type"]).unwrap_or_else(|| "no booking or transaction".to_owned());
        ignore(
            Reason::UnrecognisedModel,
            format!("Checkfront notification: {kind}"),
        )
    }
}

fn epoch_seconds(node: &Dynamic, field: &str) -> Result<DateTime<Utc>, String> {
    let text = text_at(node, &[field]).ok_or_else(|| format!("booking has no {field}"))?;
    let seconds = text
        .parse::<i64>()
        .map_err(|_| format!("{field} {text:?} is not epoch seconds"))?;
    time::from_seconds(seconds, field).map_err(|e| e.to_string())
}

impl Checkfront {
    /// The account's own mapping of a status id (`status_map`), exact first, then in any case.
    fn own_status(&self, id: &str) -> Option<BookingStatus> {
        self.status_map.get(id).copied().or_else(|| {
            self.status_map
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(id))
                .map(|(_, status)| *status)
        })
    }

    fn booking(&self, booking: &Dynamic) -> Result<BookingSnapshot, String> {
        let code = text_at(booking, &["code"]).ok_or("booking has no code")?;
        let partner_status = text_at(booking, &["status"]).unwrap_or_default();
        let mapped = self.own_status(&partner_status);
        let status = mapped.or_else(|| default_status(&partner_status));
        let start = epoch_seconds(booking, "start_date")?;
        // Checkfront's day bookings end where they start (or at that day's midnight, before
        // the start time): a booking lasts at least nothing. An end that is there but is no
        // time in range is a mistake, not a missing end.
        let end = match text_at(booking, &["end_date"]) {
            None => start,
            Some(_) => epoch_seconds(booking, "end_date")?.max(start),
        };
        // Two published layouts: `customer.name` ..., or `fields.customer_name` ...
        let customer_field = |short: &str| {
            text_at(booking, &["customer", short])
                .or_else(|| text_at(booking, &["fields", &format!("customer_{short}")]))
        };
        let order = at(booking, &["order"]).filter(Dynamic::is_map);
        let order_text = |field: &str| order.as_ref().and_then(|o| text_at(o, &[field]));
        let order_money = |field: &str| -> Result<_, String> {
            match order
                .as_ref()
                .and_then(|o| at(o, &[field]))
                .filter(|v| tree::text_of(v).is_some())
            {
                None => Ok(None),
                Some(value) => decimal_of(&value)
                    .map(Some)
                    .ok_or_else(|| format!("order.{field} is not an amount")),
            }
        };
        let skus = items(order.as_ref().and_then(|o| at(o, &["items", "item"])))
            .iter()
            .filter_map(|item| text_at(item, &["sku"]))
            .collect();
        // An account's own status mapped to ours ranks as ours does.
        let rank = if mapped.is_some() {
            None
        } else {
            default_rank(&partner_status)
        };
        Ok(BookingSnapshot {
            external_key: code.clone(),
            reference: code,
            status,
            partner_status,
            start,
            end,
            covers: None,
            skus,
            customer: Customer {
                name: customer_field("name"),
                email: customer_field("email"),
                phone: customer_field("phone"),
            },
            total: order_money("total")?,
            paid: order_money("paid_total")?,
            currency: order
                .as_ref()
                .and_then(|o| text_at(o, &["@attributes", "currency_id"]))
                .or_else(|| order_text("currency_id")),
            version: None,
            rank,
            wall_clock: false,
        })
    }
}

/// A "New Payment/Refund" notification.
fn payment(transaction: &Dynamic) -> Result<PlatformPayment, String> {
    let status = text_at(transaction, &["status"]).unwrap_or_default();
    let refund = match status.to_ascii_uppercase().as_str() {
        "PAID" => false,
        "REFUND" => true,
        other => {
            return Err(format!(
                "transaction status {other:?}: expected PAID or REFUND"
            ));
        }
    };
    let amount = at(transaction, &["amount"])
        .as_ref()
        .and_then(decimal_of)
        .ok_or("transaction has no amount")?;
    Ok(PlatformPayment {
        booking_reference: text_at(transaction, &["booking_id"])
            .ok_or("transaction has no booking_id")?,
        transaction_id: text_at(transaction, &["transaction_id"])
            .ok_or("transaction has no transaction_id")?,
        amount: amount.abs(),
        refund,
        at: match text_at(transaction, &["date"]) {
            None => None,
            Some(date) => Some(
                date.parse::<i64>()
                    .map_err(|_| format!("transaction date {date:?} is not epoch seconds"))
                    .and_then(|s| time::from_seconds(s, "date").map_err(|e| e.to_string()))?,
            ),
        },
    })
}
