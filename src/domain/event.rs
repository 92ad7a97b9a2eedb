//! What became of a stored partner event, in words operators and machines can rely on.

use std::fmt;

/// The outcome of one partner event. Names are the public API's (`outcome` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Processed,
    /// Accepted and deliberately not applied; `reason` says why.
    Ignored,
    /// Refused (bad credentials, unknown partner, sale in flight); the partner got a 4xx.
    Rejected,
    /// Our own failure; the partner got a 500 and will retry.
    Failed,
    /// Stored, waiting for work that happens later.
    Pending,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Self::Processed,
        Self::Ignored,
        Self::Rejected,
        Self::Failed,
        Self::Pending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Ignored => "ignored",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|outcome| outcome.as_str() == s)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The machine-readable reason attached to every outcome but a plain `processed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    UnknownPartner,
    MissingCredentials,
    BadSignature,
    /// A correctly signed timestamp outside the accepted window.
    ExpiredSignature,
    /// Over the partner's rate limit; answered 429 and not stored.
    RateLimited,
    TestNotification,
    UnknownLocation,
    IntegrationDisabled,
    UnrecognisedModel,
    UnknownBooking,
    AwaitingFetch,
    MalformedPayload,
    InvalidPayload,
    BodyTooLarge,
    DuplicateEvent,
    StaleUpdate,
    SaleInFlight,
    /// The venue's diary stayed held by another transaction past the delivery's lock wait
    /// (on PostgreSQL: another node's write, a replay, or a node that stopped mid-write
    /// until the server ends its session). Answered 409 like a sale in flight: retry later.
    VenueBusy,
    ProcessingError,
    ScriptError,
    /// A script hit one of its limits (operations, data size, depth, commands).
    ScriptLimit,
    /// The body's `Content-Encoding` is not one we can undo; answered 415.
    UnsupportedEncoding,
    /// The body's charset is not a known character encoding; answered 415.
    UnsupportedCharset,
    /// A path under a partner prefix that matches no route; recorded, answered 404.
    UnknownRoute,
    /// A partner route asked with a method it does not take (a `GET` at the sales route);
    /// recorded, answered 405 with `Allow`.
    MethodNotAllowed,
    /// A partner kept in the database that is switched off or cannot be served now (a
    /// secret this node cannot open): answered 503 with `Retry-After`, unrecorded, so the
    /// partner keeps the delivery and sends it again, and nothing is lost.
    PartnerUnavailable,
    FetchFailed,
    StoreError,
    /// Our own bug, caught: the write was rolled back and the event kept as `failed`.
    InternalError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownPartner => "unknown_partner",
            Self::MissingCredentials => "missing_credentials",
            Self::BadSignature => "bad_signature",
            Self::ExpiredSignature => "expired_signature",
            Self::RateLimited => "rate_limited",
            Self::TestNotification => "test_notification",
            Self::UnknownLocation => "unknown_location",
            Self::IntegrationDisabled => "integration_disabled",
            Self::UnrecognisedModel => "unrecognised_model",
            Self::UnknownBooking => "unknown_booking",
            Self::AwaitingFetch => "awaiting_fetch",
            Self::MalformedPayload => "malformed_payload",
            Self::InvalidPayload => "invalid_payload",
            Self::BodyTooLarge => "body_too_large",
            Self::DuplicateEvent => "duplicate_event",
            Self::StaleUpdate => "stale_update",
            Self::SaleInFlight => "sale_in_flight",
            Self::VenueBusy => "venue_busy",
            Self::ProcessingError => "processing_error",
            Self::ScriptError => "script_error",
            Self::ScriptLimit => "script_limit",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::UnsupportedCharset => "unsupported_charset",
            Self::UnknownRoute => "unknown_route",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PartnerUnavailable => "partner_unavailable",
            Self::FetchFailed => "fetch_failed",
            Self::StoreError => "store_error",
            Self::InternalError => "internal_error",
        }
    }
}

impl Reason {
    /// Refusals of deliveries that did authenticate but could not be read (an unsupported
    /// charset or content encoding): unlike other rejected events they are replayed, so
    /// they are read once support exists.
    pub const REPLAYABLE_REFUSALS: [Reason; 2] =
        [Reason::UnsupportedCharset, Reason::UnsupportedEncoding];

    /// Whether a rejected event with this reason may be replayed.
    pub fn replayable_refusal(self) -> bool {
        Self::REPLAYABLE_REFUSALS.contains(&self)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an event names a partner location no venue owns (`unknown_location`): the event's
/// detail, which health groups by and a mapping replays by.
pub fn unmapped_location_detail(location_id: &str) -> String {
    format!("location {location_id} is not mapped to a venue")
}

/// The location an [`unmapped_location_detail`] names, if `detail` starts with one.
pub fn unmapped_location_of(detail: &str) -> Option<&str> {
    let first = detail.split("; ").next()?;
    first
        .strip_prefix("location ")?
        .strip_suffix(" is not mapped to a venue")
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod unmapped_tests {
    use super::*;

    #[test]
    fn an_unmapped_locations_detail_names_it_back() {
        for id in ["424242", "a b", "x_%\\"] {
            assert_eq!(
                unmapped_location_of(&unmapped_location_detail(id)),
                Some(id)
            );
        }
        let partly = format!(
            "{}; 2 other location(s) processed",
            unmapped_location_detail("9")
        );
        assert_eq!(unmapped_location_of(&partly), Some("9"));
        assert_eq!(unmapped_location_of("no such thing"), None);
    }
}

crate::serialize_as_str!(Reason, Outcome);
