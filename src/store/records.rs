//! What the store takes in and hands back. Serialised as-is by the admin API, so field names
//! here are the public JSON names; money is a decimal string, times RFC 3339 UTC.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use crate::domain::{BookingStatus, Customer};

/// Writes an amount as a decimal string with at least two decimals ("63.20", "0.00"),
/// keeping every digit the partner sent ("-1.6667" stays as it is).
/// An amount as the API writes money: at least two decimals, every digit kept.
pub fn money_text(amount: Decimal) -> String {
    let mut amount = amount;
    if amount.scale() < 2 {
        amount.rescale(2);
    }
    amount.to_string()
}

fn money<S: Serializer>(amount: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&money_text(*amount))
}

fn opt_money<S: Serializer>(amount: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
    match amount {
        Some(amount) => money(amount, serializer),
        None => serializer.serialize_none(),
    }
}

/// A raw partner request, as it will be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub received_at: DateTime<Utc>,
    pub partner: String,
    /// `sales` or `callback`: which of the two contract routes it came in on.
    pub route: &'static str,
    pub method: String,
    pub event_type: String,
    pub path: String,
    /// The query string with secret parameters masked.
    pub query: Option<String>,
    /// Selected, non-secret headers.
    pub headers: BTreeMap<String, String>,
    /// The body as it will be stored (compressed when that is smaller).
    pub body: super::body::StoredBody,
    /// Hex SHA-256 of the body as received, worked out by the request, not by the store's
    /// writer.
    pub body_sha256: String,
    /// How long the body as received was, in bytes.
    pub body_bytes: usize,
    /// Whether `body` holds only the first bytes of it (a refused delivery).
    pub body_truncated: bool,
    /// The handler that maps it (`None` when the partner is unknown).
    pub handler: Option<String>,
    /// The version of that handler (a script's content hash), when it has versions.
    pub handler_version: Option<String>,
    /// Which of the partner's secrets verified it (its label), for a partner kept in the
    /// database; `None` for the configuration file's partners and unverified deliveries.
    pub secret_label: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewLocation {
    pub partner: String,
    pub location_id: String,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub struct NewVenue {
    pub name: String,
    /// A valid IANA zone name.
    pub timezone: String,
    pub currency: Option<String>,
    pub locations: Vec<NewLocation>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct LocationRecord {
    pub partner: String,
    pub location_id: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct TolerancesRecord {
    pub before_start_minutes: i64,
    pub after_end_minutes: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct VenueRecord {
    pub id: i64,
    pub name: String,
    pub timezone: String,
    pub currency: Option<String>,
    pub tolerances: TolerancesRecord,
    /// Normalised POS table name -> normalised diary table name.
    pub table_aliases: BTreeMap<String, String>,
    /// Whether an unmatched sale on a table creates a walk-in booking.
    pub walk_ins: bool,
    /// A booking platform's SKU or product id -> the diary table it stands for.
    pub sku_tables: BTreeMap<String, String>,
    /// What per-cover spend divides by: `booking` (the booked covers) or `pos` (the covers
    /// the POS counted on the booking's checks).
    pub covers_source: &'static str,
    pub locations: Vec<LocationRecord>,
}

/// Changes to a venue's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct VenueChanges {
    pub name: Option<String>,
    /// A valid IANA zone name.
    pub timezone: Option<String>,
    pub currency: Option<String>,
    pub tolerances: Option<TolerancesRecord>,
    /// Raw names, normalised on the way in.
    pub table_aliases: Option<BTreeMap<String, String>>,
    pub walk_ins: Option<bool>,
    pub sku_tables: Option<BTreeMap<String, String>>,
    pub covers_source: Option<crate::domain::venue::CoversSource>,
}

/// Changes to a booking; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BookingChanges {
    pub reference: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
    pub covers: Option<i64>,
    pub tables: Option<Vec<String>>,
    pub status: Option<BookingStatus>,
    pub customer: Option<Customer>,
}

#[derive(Debug, Clone)]
pub struct NewBooking {
    pub reference: Option<String>,
    pub start: DateTime<Utc>,
    pub duration_minutes: i64,
    pub covers: i64,
    /// Table names as the operator wrote them; normalised on the way in.
    pub tables: Vec<String>,
    pub status: BookingStatus,
    pub customer: Customer,
    /// Who made it: `admin` (an operator) or `platform` (the booking platform, by its
    /// reference).
    pub source: &'static str,
}

#[derive(Clone, Serialize, utoipa::ToSchema, PartialEq, Eq, Default)]
pub struct CustomerRecord {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl std::fmt::Debug for CustomerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerRecord([personal data redacted])")
    }
}

/// How a sale is linked to a booking; `rule` is null while unmatched.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq, Default)]
pub struct MatchRecord {
    pub rule: Option<&'static str>,
    pub reason: Option<String>,
    pub booking_id: Option<i64>,
    /// For an ambiguous sale: the bookings that fitted equally well.
    pub candidates: Vec<i64>,
    /// For an ambiguous sale: each candidate with what a host would weigh for and against
    /// it (table, time, its checks, covers, the guest's name), in words.
    pub evidence: Vec<EvidenceRecord>,
    /// For `table_time`: the table that decided the match (as the diary names it).
    pub table: Option<String>,
    /// For `table_time`: the time that decided it, a UTC instant.
    pub at: Option<DateTime<Utc>>,
    /// For `table_time`: which time that was: `opened` (when the check was opened) or
    /// `placed` (when a later snapshot first put it on its table: a bar tab moved to a
    /// table, a party moved).
    pub time_basis: Option<&'static str>,
}

/// One candidate of an ambiguous sale and the evidence for it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct EvidenceRecord {
    pub booking_id: i64,
    pub evidence: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct SpendRecord {
    /// Gross sales, tax included, less refunds.
    #[serde(serialize_with = "money")]
    pub total: Decimal,
    #[serde(serialize_with = "money")]
    pub paid: Decimal,
    #[serde(serialize_with = "money")]
    pub tax: Decimal,
    #[serde(serialize_with = "money")]
    pub net: Decimal,
    #[serde(serialize_with = "money")]
    pub tips: Decimal,
    #[serde(serialize_with = "money")]
    pub service_charge: Decimal,
    #[serde(serialize_with = "money")]
    pub discounts: Decimal,
    #[serde(serialize_with = "money")]
    pub deposits: Decimal,
    #[serde(serialize_with = "money")]
    pub refunds: Decimal,
    #[serde(serialize_with = "opt_money")]
    pub per_cover: Option<Decimal>,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct TransitionRecord {
    pub from: &'static str,
    pub to: &'static str,
    pub cause: String,
    pub event_id: Option<i64>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct BookingView {
    pub id: i64,
    pub venue_id: i64,
    pub reference: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub duration_minutes: i64,
    /// Covers booked.
    pub covers: i64,
    /// Covers the POS counted on the booking's live checks, beside the booked ones; `null`
    /// when no check carries covers.
    pub pos_covers: Option<i64>,
    pub tables: Vec<String>,
    pub status: &'static str,
    /// The last status a partner reported in its own words, if any.
    pub partner_status: Option<String>,
    /// `admin`, `walk_in`, or the partner that created it.
    pub source: String,
    pub customer: CustomerRecord,
    pub guest_id: Option<i64>,
    /// For a booking a booking platform owns: its key and money, and the payments it took.
    pub platform: Option<PlatformRecord>,
    pub sales: Vec<SaleRecord>,
    pub spend: SpendRecord,
    pub transitions: Vec<TransitionRecord>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct PlatformRecord {
    pub partner: String,
    pub external_key: String,
    #[serde(serialize_with = "opt_money")]
    pub total: Option<Decimal>,
    /// What the platform's last snapshot says was paid.
    #[serde(serialize_with = "opt_money")]
    pub paid: Option<Decimal>,
    pub currency: Option<String>,
    /// Payments less refunds recorded from the platform's payment notifications.
    #[serde(serialize_with = "money")]
    pub payments_net: Decimal,
    pub payments: Vec<PlatformPaymentRecord>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct PlatformPaymentRecord {
    pub transaction_id: String,
    #[serde(serialize_with = "money")]
    pub amount: Decimal,
    pub refund: bool,
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct SaleRecord {
    pub id: i64,
    pub venue_id: i64,
    pub partner: String,
    pub external_id: String,
    pub number: Option<String>,
    pub kind: &'static str,
    pub origin_external_id: Option<String>,
    pub state: &'static str,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub currency: Option<String>,
    #[serde(serialize_with = "money")]
    pub total: Decimal,
    #[serde(serialize_with = "money")]
    pub paid: Decimal,
    #[serde(serialize_with = "money")]
    pub tax: Decimal,
    #[serde(serialize_with = "money")]
    pub net: Decimal,
    #[serde(serialize_with = "money")]
    pub tip: Decimal,
    #[serde(serialize_with = "money")]
    pub service_charge: Decimal,
    #[serde(serialize_with = "money")]
    pub discount: Decimal,
    #[serde(serialize_with = "money")]
    pub deposit: Decimal,
    pub covers: Option<i64>,
    pub tables: Vec<String>,
    #[serde(rename = "match")]
    pub match_: MatchRecord,
    pub last_event_id: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct SaleLineRecord {
    pub external_id: Option<String>,
    pub description: String,
    pub quantity: Decimal,
    #[serde(serialize_with = "money")]
    pub unit_amount: Decimal,
    #[serde(serialize_with = "money")]
    pub amount: Decimal,
    pub tax_rate: Option<Decimal>,
    pub tax_included: Option<bool>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct PaymentRecord {
    pub external_id: Option<String>,
    pub method: Option<String>,
    #[serde(serialize_with = "money")]
    pub amount: Decimal,
    #[serde(serialize_with = "money")]
    pub tip: Decimal,
    pub paid_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct SaleDetail {
    #[serde(flatten)]
    pub sale: SaleRecord,
    pub lines: Vec<SaleLineRecord>,
    pub payments: Vec<PaymentRecord>,
}

/// One local day of a venue's diary.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct DiaryView {
    pub venue_id: i64,
    /// The venue's local date, `YYYY-MM-DD`.
    pub date: String,
    pub timezone: String,
    /// The UTC instants the local day spans.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bookings: Vec<BookingView>,
    pub totals: DiaryTotals,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct DiaryTotals {
    pub bookings: usize,
    pub covers: i64,
    #[serde(serialize_with = "money")]
    pub spend: Decimal,
    #[serde(serialize_with = "money")]
    pub paid: Decimal,
    #[serde(serialize_with = "opt_money")]
    pub spend_per_cover: Option<Decimal>,
    /// Sales of the venue opened that day that belong to no booking.
    pub unmatched_sales: usize,
}

/// A guest profile with what the venue earned from them.
#[derive(Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct GuestView {
    pub id: i64,
    pub venue_id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Bookings that came (seated, paid or completed).
    pub visits: i64,
    #[serde(serialize_with = "money")]
    pub lifetime_spend: Decimal,
    #[serde(serialize_with = "opt_money")]
    pub spend_per_visit: Option<Decimal>,
    pub bookings: Vec<i64>,
}

impl std::fmt::Debug for GuestView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GuestView({}, [personal data redacted])", self.id)
    }
}

/// A booking an operator might match an unmatched sale to, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct SuggestionRecord {
    pub booking_id: i64,
    pub reference: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub tables: Vec<String>,
    pub status: &'static str,
    pub covers: i64,
    pub customer_name: Option<String>,
    pub reason: String,
}

/// How one partner's events fared at one venue (or at none: `venue_id` null, e.g. unknown
/// locations) over the last hour and day.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct HealthRecord {
    pub partner: String,
    pub venue_id: Option<i64>,
    pub venue_name: Option<String>,
    pub last_event_at: Option<DateTime<Utc>>,
    /// Since when the partner has been unusually silent at this venue (`partner.silent`);
    /// absent while it sends as usual.
    pub silent_since: Option<DateTime<Utc>>,
    /// Events by outcome.
    pub last_hour: BTreeMap<String, i64>,
    pub last_day: BTreeMap<String, i64>,
    /// Sales written in the last day, and how many of them belong to a booking.
    pub sales_last_day: i64,
    pub matched_last_day: i64,
    /// What went wrong in the last day, most frequent first: up to 8 kinds, and up to 100
    /// unmapped locations.
    pub problems: Vec<HealthProblem>,
    /// Problems beyond those listed.
    pub problems_not_listed: i64,
}

/// Events of one outcome and reason (unknown locations: per location) in the last day.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct HealthProblem {
    pub outcome: String,
    pub reason: Option<String>,
    /// One event's detail, e.g. "location 123 is not mapped to a venue".
    pub example: Option<String>,
    /// For `unknown_location`: the location to map (`POST /api/v1/venues/{id}/locations`).
    pub location_id: Option<String>,
    pub events: i64,
    /// For failed events, their event type: "14 receipts.update failed (invalid_payload):
    /// a sale needs opened_at" says what to fix and what to replay.
    pub event_type: Option<String>,
}

/// What a purge erased.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct PurgeSummary {
    /// Events whose raw body, headers and query were erased.
    pub events: u64,
    /// Bookings whose customer's name, e-mail and phone were erased.
    pub bookings: u64,
    /// Guest profiles anonymised.
    pub guests: u64,
}

#[derive(Debug, Clone, Default)]
pub struct SaleFilter {
    pub partner: Option<String>,
    pub external_id: Option<String>,
    pub venue_id: Option<i64>,
    pub unmatched: Option<bool>,
    /// A page's cursor: only sales with a smaller id (lists are newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
    /// Only these venues' sales (a venue role's scope); `None`: every venue's.
    pub venue_limit: Option<Vec<i64>>,
}

/// Which stored events to replay. Rejected events (they failed authentication) and test
/// notifications are never replayed.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Just this event.
    pub event_id: Option<i64>,
    pub partner: Option<String>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only the events ignored because this partner location was not mapped to a venue
    /// (with `partner`): what mapping it should bring into the diary.
    pub unmapped_location: Option<String>,
}

impl ReplayFilter {
    /// This filter ending at `now` when it has no end: events received after a replay
    /// starts were mapped by the current handlers already, and a replay that took them too
    /// would never end while the partner keeps sending.
    #[must_use]
    pub fn received_by(mut self, now: DateTime<Utc>) -> ReplayFilter {
        if self.event_id.is_none() && self.to.is_none() {
            self.to = Some(now);
        }
        self
    }
}

/// A stored event as a handler needs it again.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: i64,
    pub partner: String,
    pub event_type: String,
    pub query: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub outcome: String,
    /// Why it ended so, when it was not processed (`duplicate_event`, ...).
    pub reason: Option<String>,
    /// Fetches tried so far (pending events).
    pub attempts: i64,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub partner: Option<String>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    /// Only events with an id below this one (paging backwards from the newest).
    pub before_id: Option<i64>,
    /// Only events received at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only events received before this instant.
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
    /// Only these venues' events (a venue role's scope: events of no venue are left out);
    /// `None`: every event.
    pub venue_limit: Option<Vec<i64>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct EventSummary {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub partner: String,
    pub route: String,
    pub method: String,
    pub event_type: String,
    pub handler: Option<String>,
    pub handler_version: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub venue_id: Option<i64>,
    pub sale_id: Option<i64>,
    pub processed_at: Option<DateTime<Utc>>,
    /// When the retention setting erased its raw payload; never replayed after.
    pub purged_at: Option<DateTime<Utc>>,
    /// Which of a stored partner's secrets verified it (`current`, `next`, ...); `null` for
    /// the configuration file's partners.
    pub verified_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventSummary,
    pub path: String,
    pub query: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body_sha256: String,
    /// The size of the body as stored (0 once purged, or for a body refused for its size).
    pub body_bytes: usize,
    /// The size of the body as received: more than `body_bytes` for a refused delivery
    /// (which keeps at most its first 4 KiB) or an oversized one (which keeps none).
    pub received_bytes: usize,
    /// Whether the stored body is only the first bytes of it: a refused delivery keeps at
    /// most 4 KiB, an oversized one none.
    pub body_truncated: bool,
    /// The body as text when it is valid UTF-8 ...
    pub body: Option<String>,
    /// ... else base64 of its bytes.
    pub body_base64: Option<String>,
}

/// One change of a diary, as the change feed serves it and a webhook carries it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq)]
pub struct ChangeRecord {
    /// The message's id, the same in the feed and in `webhook-id`: deduplicate by it.
    pub id: String,
    /// Its position in commit order: pass it as `after` to read what followed.
    pub cursor: String,
    /// `booking.paid`, `sale.matched`, ... (docs/INTEGRATION.md).
    pub r#type: String,
    pub venue_id: i64,
    pub booking_id: Option<i64>,
    pub sale_id: Option<i64>,
    /// When the change was made (UTC).
    pub at: DateTime<Utc>,
    /// The message as a webhook carries it: `{"type", "timestamp", "data"}`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// A booking as the platform states it, by its own reference (`PUT .../by-reference/{ref}`,
/// `bookings:sync`).
#[derive(Debug, Clone)]
pub struct PlatformBooking {
    pub start: DateTime<Utc>,
    pub duration_minutes: i64,
    pub covers: i64,
    /// Table names as the platform wrote them; normalised on the way in.
    pub tables: Vec<String>,
    /// `None` leaves the status as it is (a new booking is `confirmed`).
    pub status: Option<BookingStatus>,
    pub customer: Customer,
}

/// What a put did.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PutResult {
    Created,
    Updated,
    /// The booking already was as stated: nothing was written.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub id: i64,
    pub result: PutResult,
    /// What of the booking as stated was not applied, and why.
    pub not_applied: Vec<String>,
}

/// What a sync did, in counts of bookings.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct SyncOutcome {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// The platform's bookings in the range it no longer lists (`cancel_missing`).
    pub cancelled: u64,
}

/// Which bookings a page lists (`GET /api/v1/venues/{id}/bookings`).
#[derive(Debug, Clone)]
pub struct BookingPageFilter {
    pub venue_id: i64,
    /// Starting at or after.
    pub from: Option<DateTime<Utc>>,
    /// Starting before.
    pub to: Option<DateTime<Utc>>,
    pub status: Option<BookingStatus>,
    /// Changed at or after (any change: details, status, its sales' matches).
    pub updated_since: Option<DateTime<Utc>>,
    /// The previous page's `next`.
    pub after: Option<i64>,
    pub limit: i64,
}

/// A booking in a list: its details without its sales (`GET /api/v1/bookings/{id}` has them).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct BookingListRecord {
    pub id: i64,
    pub reference: Option<String>,
    pub status: &'static str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub covers: i64,
    pub tables: Vec<String>,
    /// `admin`, `platform`, `walk_in`, or the partner that made it.
    pub source: String,
    pub external_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of bookings; `next` is the `after` of the following page, absent on the last.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct BookingPage {
    pub bookings: Vec<BookingListRecord>,
    pub next: Option<String>,
}

/// A webhook subscription as the API shows it: never its secret, which only its creation
/// returns.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub id: i64,
    pub url: String,
    pub description: Option<String>,
    /// Message types it receives; empty: every type.
    pub event_types: Vec<String>,
    /// Venues it receives messages of; empty: every venue.
    pub venues: Vec<i64>,
    pub enabled: bool,
    /// Why it was disabled (by the dispatcher after failing too long, or by an operator).
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed; absent while the receiver answers.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Messages waiting for delivery, and given up.
    pub pending: i64,
    pub failed: i64,
    pub created_at: DateTime<Utc>,
}

/// A new subscription.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub url: String,
    /// `whsec_` and the base64 key.
    pub secret: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub venues: Vec<i64>,
}

/// Changes to a subscription; `None` leaves a field as it is. Enabling it again clears its
/// failure and lets its waiting messages go.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionChanges {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub venues: Option<Vec<i64>>,
    pub enabled: Option<bool>,
}

/// One message's delivery to one subscription.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct WebhookMessageRecord {
    /// The `webhook-id` it is sent with.
    pub id: String,
    pub cursor: String,
    pub r#type: String,
    /// `pending`, `delivered` or `failed` (given up after the retry period).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A message claimed for sending, with what it is sent to and signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimedMessage {
    /// The `webhook_messages` row.
    pub row: i64,
    pub subscription_id: i64,
    pub url: String,
    pub secret: String,
    pub seq: i64,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for ClaimedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedMessage")
            .field("row", &self.row)
            .field("subscription_id", &self.subscription_id)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered {
        status: i64,
    },
    /// Try again at `retry_at` (`None`: give it up); `status` if the receiver answered.
    Failed {
        status: Option<i64>,
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Which messages to send again (`POST /api/v1/webhooks/{id}/resend`).
#[derive(Debug, Clone, Default)]
pub struct ResendFilter {
    pub subscription_id: i64,
    /// One message, by its id (`msg_…`'s number).
    pub seq: Option<i64>,
    /// Only in this state (`failed`, `delivered`); default: both.
    pub state: Option<String>,
    /// Made at or after.
    pub since: Option<DateTime<Utc>>,
}

/// The outbound queue at a glance, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookBacklog {
    pub pending: i64,
    pub oldest_pending: Option<DateTime<Utc>>,
    pub disabled: i64,
}
