//! TourCMS (Palisis) booking notifications.
//!
//! Spec: <https://www.tourcms.com/support/api/mp/webhooks/booking_notification.php> (async),
//! `…/booking_notification_inline.php` (inline), `…/booking_show.php` (Show Booking) and
//! `…/connection.php` (API signing; the official client `TourCMS/tourcms-php` is the
//! reference for the exact string to sign).
//!
//! - Asynchronous notifications are a GET with query parameters only (`event`,
//!   `account_id`, `channel_id`, `booking_id`) and no booking details: they map to a
//!   [`FetchRequest`]; the booking is fetched from Show Booking after the notification is
//!   stored, and retried with back-off while TourCMS is unreachable (`crate::fetcher`).
//! - Inline notifications are a POST of Show-Booking XML with a `<signed>` block, verified
//!   with the account's API private key before anything is applied.
//!
//! `booking_id` is unique per account only, so bookings are keyed `account_id/booking_id`;
//! the venue is the account (`account_id` as the location id). Show Booking's dates and
//! times are local to the account: they are read in the venue's zone.

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use hmac::{Hmac, Mac};
use rhai::Dynamic;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::tree::{self, at, decimal_of, items, text_at};
use super::{Delivery, PartnerHandler};
use crate::domain::{
    BookingSnapshot, BookingStatus, Command, Customer, FetchRequest, Mapped, Reason,
};

/// How to reach an account's TourCMS API (`[partners.api]`).
#[derive(Debug, Clone)]
pub struct TourCmsApi {
    /// `https://api.tourcms.com` in production.
    pub base_url: String,
    /// Operators use 0.
    pub marketplace_id: String,
    pub private_key: Arc<SecretString>,
    /// Calls per channel and hour we never exceed: TourCMS allows 3,000 GETs an hour
    /// (<https://www.tourcms.com/support/api/mp/useful.php>), fewer on older accounts.
    pub hourly_limit: std::num::NonZeroU32,
}

/// TourCMS's published limit of GET calls per channel and hour.
pub const HOURLY_LIMIT: std::num::NonZeroU32 = match std::num::NonZeroU32::new(3000) {
    Some(limit) => limit,
    None => std::num::NonZeroU32::MIN,
};

impl PartialEq for TourCmsApi {
    fn eq(&self, other: &Self) -> bool {
        self.base_url == other.base_url && self.marketplace_id == other.marketplace_id
    }
}

impl Eq for TourCmsApi {}

/// The `tourcms` handler.
#[derive(Debug, Clone)]
pub struct TourCms {
    pub api: TourCmsApi,
}

/// Our status for a notification's event; `None` for events that do not move the booking
/// (payment tokens), which are recorded in its partner status.
pub fn status_for_event(event: &str) -> Option<BookingStatus> {
    match event {
        e if e.starts_with("new_confirmed") => Some(BookingStatus::Confirmed),
        e if e.starts_with("new_provisional") || e.starts_with("new_temporary") => {
            Some(BookingStatus::Provisional)
        }
        e if e.starts_with("new_quotation") => Some(BookingStatus::Enquiry),
        "cancelled" | "expq_quotation" | "expp_provisional" | "temporary_booking_deleted" => {
            Some(BookingStatus::Cancelled)
        }
        "redeem_voucher" => Some(BookingStatus::Arrived),
        _ => None,
    }
}

fn ignore(reason: Reason, detail: impl Into<String>) -> Mapped {
    Mapped::Ignore {
        reason,
        detail: detail.into(),
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

impl PartnerHandler for TourCms {
    fn map(&self, delivery: Delivery<'_>) -> Mapped {
        let event =
            query_param(delivery.query, "event").unwrap_or_else(|| delivery.event_type.to_owned());
        if delivery.body.trim_ascii().is_empty() {
            let (Some(account), Some(booking), Some(channel)) = (
                query_param(delivery.query, "account_id"),
                query_param(delivery.query, "booking_id"),
                query_param(delivery.query, "channel_id"),
            ) else {
                return Mapped::invalid(
                    "notification without account_id, channel_id and booking_id",
                );
            };
            return Mapped::Fetch(FetchRequest {
                location_id: account,
                booking_id: booking,
                channel_id: channel,
                event,
            });
        }
        let document = match tree::parse(delivery.body) {
            Ok((tree::Format::Xml, document)) => document,
            Ok((format, _)) => {
                return ignore(
                    Reason::MalformedPayload,
                    format!("inline notifications are XML, not {}", format.as_str()),
                );
            }
            Err(error) => return ignore(Reason::MalformedPayload, error.to_string()),
        };
        if let Err(detail) = verify_signed(&document, &self.api.private_key) {
            return Mapped::Reject {
                reason: Reason::BadSignature,
                detail,
            };
        }
        match booking_of(&document, &event, query_param(delivery.query, "account_id")) {
            Ok((location_id, snapshot)) => Mapped::Apply {
                location_id,
                commands: vec![Command::UpsertBooking(Box::new(snapshot))],
            },
            Err(detail) => Mapped::invalid(detail),
        }
    }
}

/// The document's root element name and content.
fn root(document: &Dynamic) -> Option<(String, Dynamic)> {
    let map = document.read_lock::<rhai::Map>()?;
    let (name, content) = map.iter().next()?;
    Some((name.to_string(), content.clone()))
}

/// Checks the `<signed>` block of an inline notification: the values at `hash_fields`
/// (absolute paths, space-separated) joined with `|`, HMAC'd with the private key, must
/// equal `hash` (hex). Compared in constant time.
///
/// # Errors
/// Why the document is not signed as it should be.
pub fn verify_signed(document: &Dynamic, private_key: &SecretString) -> Result<(), String> {
    let (root_name, content) = root(document).ok_or("no root element")?;
    let signed = at(&content, &["signed"]).ok_or("no <signed> block")?;
    let algorithm = text_at(&signed, &["algorithm"]).unwrap_or_default();
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(format!("signing algorithm {algorithm:?} is not supported"));
    }
    let fields = text_at(&signed, &["hash_fields"]).ok_or("<signed> has no hash_fields")?;
    let presented = text_at(&signed, &["hash"]).ok_or("<signed> has no hash")?;
    let values = fields
        .split_whitespace()
        .map(|path| {
            let steps: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match steps.split_first() {
                Some((first, rest)) if *first == root_name => Ok(at(&content, rest)
                    .as_ref()
                    .and_then(tree::text_of)
                    .unwrap_or_default()),
                _ => Err(format!("hash field {path} is not under <{root_name}>")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signature = hex::decode(presented.trim()).map_err(|_| "hash is not hex")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(private_key.expose_secret().as_bytes())
        .map_err(|_| "unusable private key")?;
    mac.update(values.join("|").as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| "hash does not match the signed fields".to_owned())
}

fn date_time(
    date: Option<String>,
    time: Option<String>,
    default_time: NaiveTime,
) -> Option<DateTime<Utc>> {
    let date = NaiveDate::parse_from_str(date?.trim(), "%Y-%m-%d").ok()?;
    let time = time
        .and_then(|t| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .or_else(|_| NaiveTime::parse_from_str(t.trim(), "%H:%M:%S"))
                .ok()
        })
        .unwrap_or(default_time);
    let at = date.and_time(time).and_utc();
    crate::domain::time::in_range(at).then_some(at)
}

/// A Show Booking document (or an inline notification) as a booking snapshot.
fn booking_of(
    document: &Dynamic,
    event: &str,
    account: Option<String>,
) -> Result<(String, BookingSnapshot), String> {
    let (_, content) = root(document).ok_or("no root element")?;
    let booking = at(&content, &["booking"])
        .filter(Dynamic::is_map)
        .ok_or("no <booking>")?;
    let booking_id = text_at(&booking, &["booking_id"]).ok_or("booking has no booking_id")?;
    let account = text_at(&booking, &["account_id"])
        .or(account)
        .ok_or("booking has no account_id")?;
    let components = items(at(&booking, &["components", "component"]));
    let first = components.first();
    let midnight = NaiveTime::MIN;
    let last_minute = NaiveTime::from_hms_opt(23, 59, 0).unwrap_or(NaiveTime::MIN);
    let start = first
        .and_then(|c| {
            date_time(
                text_at(c, &["start_date"]),
                text_at(c, &["start_time"]),
                midnight,
            )
        })
        .or_else(|| date_time(text_at(&booking, &["start_date"]), None, midnight))
        .ok_or("booking has no start_date")?;
    let end = first
        .and_then(|c| {
            let end_time = text_at(c, &["end_time"])?;
            date_time(
                text_at(c, &["end_date"]).or_else(|| text_at(c, &["start_date"])),
                Some(end_time),
                last_minute,
            )
        })
        .or_else(|| date_time(text_at(&booking, &["end_date"]), None, last_minute))
        .unwrap_or(start)
        .max(start);
    let total = at(&booking, &["sales_revenue"]).filter(|v| tree::text_of(v).is_some());
    let total = match total {
        Some(value) => Some(decimal_of(&value).ok_or("sales_revenue is not an amount")?),
        None => None,
    };
    let snapshot = BookingSnapshot {
        rank: None,
        external_key: format!("{account}/{booking_id}"),
        reference: booking_id,
        status: status_for_event(event),
        partner_status: text_at(&booking, &["status_text"])
            .map_or_else(|| event.to_owned(), |s| format!("{s} ({event})")),
        start,
        end,
        covers: text_at(&booking, &["customer_count"]).and_then(|c| c.parse().ok()),
        skus: components
            .iter()
            .filter_map(|c| text_at(c, &["product_id"]))
            .collect(),
        customer: Customer {
            name: text_at(&booking, &["lead_customer_name"]),
            email: text_at(&booking, &["lead_customer_email"]),
            phone: text_at(&booking, &["lead_customer_tel_mobile"])
                .or_else(|| text_at(&booking, &["lead_customer_tel_home"])),
        },
        total,
        paid: None,
        currency: text_at(&booking, &["sale_currency"]),
        version: match text_at(&booking, &["updated_at_utc_seconds"]) {
            None => None,
            // The update time orders snapshots: one in the wrong unit (microseconds,
            // nanoseconds) would freeze the booking against every later update.
            Some(text) => Some(
                text.parse::<i64>()
                    .map_err(|_| format!("updated_at_utc_seconds {text:?} is not epoch seconds"))
                    .and_then(|s| {
                        crate::domain::time::from_seconds(s, "updated_at_utc_seconds")
                            .map_err(|e| e.to_string())
                    })?
                    .timestamp_millis(),
            ),
        },
        wall_clock: true,
    };
    Ok((account, snapshot))
}

/// Why a fetched Show Booking response cannot be used (the fetch is retried).
pub type FetchError = String;

/// Maps a Show Booking response for the notification that asked for it.
///
/// # Errors
/// When TourCMS answered with an error or a document that is not a booking.
pub fn complete(request: &FetchRequest, body: &[u8]) -> Result<Mapped, FetchError> {
    let document = match tree::parse(body) {
        Ok((tree::Format::Xml, document)) => document,
        Ok((format, _)) => {
            return Err(format!(
                "Show Booking answered {} instead of XML",
                format.as_str()
            ));
        }
        Err(error) => return Err(error.to_string()),
    };
    let (_, content) = root(&document).ok_or("no root element")?;
    if let Some(error) = text_at(&content, &["error"]).filter(|e| e != "OK") {
        return Err(format!("TourCMS error: {error}"));
    }
    // TourCMS answered with a booking: one that cannot be read (a field missing, a time out
    // of range) reads the same on every retry, so it is an invalid payload, kept for a replay.
    match booking_of(&document, &request.event, Some(request.location_id.clone())) {
        Ok((location_id, snapshot)) => Ok(Mapped::Apply {
            location_id,
            commands: vec![Command::UpsertBooking(Box::new(snapshot))],
        }),
        Err(detail) => Ok(Mapped::invalid(format!("Show Booking: {detail}"))),
    }
}

/// The Show Booking request for a notification, signed as the official client signs it:
/// `rawurlencode(base64(HMAC-SHA256(channel/marketplace/VERB/time + path)))`.
pub fn show_booking_request(
    api: &TourCmsApi,
    request: &FetchRequest,
    now: i64,
) -> (String, Vec<(&'static str, String)>) {
    let path = format!(
        "/c/booking/show.xml?booking_id={}",
        form_urlencoded::byte_serialize(request.booking_id.as_bytes()).collect::<String>()
    );
    let signature = sign(api, &request.channel_id, "GET", now, &path);
    let date = DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    // TourCMS asks every caller to name its application, then the marketplace and channel
    // in brackets (<https://www.tourcms.com/support/api/mp/useful.php>).
    let user_agent = format!(
        "diarysync/{} ({}_{})",
        env!("CARGO_PKG_VERSION"),
        api.marketplace_id,
        request.channel_id
    );
    let headers = vec![
        ("user-agent", user_agent),
        ("date", date.clone()),
        ("x-tourcms-date", date),
        (
            "authorization",
            format!(
                "TourCMS {}:{}:{signature}",
                request.channel_id, api.marketplace_id
            ),
        ),
    ];
    (
        format!("{}{path}", api.base_url.trim_end_matches('/')),
        headers,
    )
}

/// The request signature of TourCMS's API.
pub fn sign(api: &TourCmsApi, channel: &str, verb: &str, time: i64, path: &str) -> String {
    let to_sign = format!("{channel}/{}/{verb}/{time}{path}", api.marketplace_id);
    let mut mac = Hmac::<Sha256>::new_from_slice(api.private_key.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(to_sign.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    // PHP's rawurlencode: RFC 3986 unreserved characters stay, everything else is escaped.
    encoded
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_time_in_the_wrong_unit_is_an_invalid_payload_not_a_panic() {
        let show = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tourcms/show_booking_1234.xml"
        ))
        .expect("fixture");
        let request = FetchRequest {
            location_id: "4069".into(),
            booking_id: "1234".into(),
            channel_id: "3930".into(),
            event: "new_confirmed_web".into(),
        };
        for updated in ["1761991200000000000", "9223372036854775807", "-1", "soon"] {
            let body = show.replace(
                "<updated_at_utc_seconds>1773113040</updated_at_utc_seconds>",
                &format!("<updated_at_utc_seconds>{updated}</updated_at_utc_seconds>"),
            );
            match complete(&request, body.as_bytes()) {
                Ok(Mapped::Fail {
                    reason: crate::domain::Reason::InvalidPayload,
                    detail,
                }) => assert!(detail.contains("updated_at_utc_seconds"), "{detail}"),
                other => panic!("{updated}: {other:?}"),
            }
        }
    }

    fn api() -> TourCmsApi {
        TourCmsApi {
            base_url: "https://api.example".into(),
            marketplace_id: "0".into(),
            private_key: Arc::new("tourcms-test-private-key".into()),
            hourly_limit: HOURLY_LIMIT,
        }
    }

    #[test]
    fn events_map_to_statuses() {
        assert_eq!(
            status_for_event("new_confirmed_web"),
            Some(BookingStatus::Confirmed)
        );
        assert_eq!(
            status_for_event("new_provisional_staff"),
            Some(BookingStatus::Provisional)
        );
        assert_eq!(
            status_for_event("new_quotation_web"),
            Some(BookingStatus::Enquiry)
        );
        assert_eq!(
            status_for_event("expp_provisional"),
            Some(BookingStatus::Cancelled)
        );
        assert_eq!(
            status_for_event("redeem_voucher"),
            Some(BookingStatus::Arrived)
        );
        assert_eq!(status_for_event("token_failure"), None);
    }

    #[test]
    fn an_async_notification_asks_for_a_fetch() {
        let headers = http::HeaderMap::new();
        let mapped = TourCms { api: api() }.map(Delivery {
            event_type: "booking",
            headers: &headers,
            query: Some("event=new_confirmed_web&account_id=4069&account_name=testoperator&channel_id=3930&booking_id=1234"),
            body: b"",
        });
        assert_eq!(
            mapped,
            Mapped::Fetch(FetchRequest {
                location_id: "4069".into(),
                booking_id: "1234".into(),
                channel_id: "3930".into(),
                event: "new_confirmed_web".into(),
            })
        );
    }

    #[test]
    fn requests_are_signed_like_the_official_client() {
        let signature = sign(
            &api(),
            "3930",
            "GET",
            1773500000,
            "/c/booking/show.xml?booking_id=1234",
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"tourcms-test-private-key").expect("key");
        mac.update(b"3930/0/GET/1773500000/c/booking/show.xml?booking_id=1234");
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let decoded: String =
            form_urlencoded::parse(format!("s={}", signature.replace('+', "%2B")).as_bytes())
                .map(|(_, v)| v.into_owned())
                .collect();
        assert_eq!(decoded, expected);
        assert!(!signature.contains('+') && !signature.contains('/') && !signature.contains('='));
    }
}
