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
    ProcessingError,
    ScriptError,
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
            Self::ProcessingError => "processing_error",
            Self::ScriptError => "script_error",
            Self::FetchFailed => "fetch_failed",
            Self::StoreError => "store_error",
            Self::InternalError => "internal_error",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
