//! The business model and its rules: venues, bookings, sales, matching, status transitions and
//! spend.
//!
//! Nothing in here knows about HTTP, SQL or any partner's wire format: handlers translate their
//! payloads *into* these types, the store persists them, and the decisions in between (which
//! booking a sale belongs to, whether a booking may move to a new status) are made here, so they
//! can be unit-tested without a database.

pub mod access;
pub mod booking;
pub mod change;
pub mod command;
pub mod event;
pub mod matching;
pub mod sale;
pub mod spend;
pub mod table;
pub mod time;
pub mod venue;

/// What personal data reads as wherever it is shown to operators.
pub const REDACTED: &str = "[personal data redacted]";

/// Serialises each of these types as its `as_str()` name: the names of the public API.
#[macro_export]
macro_rules! serialize_as_str {
    ($($kind:ty),+) => {$(
        impl serde::Serialize for $kind {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    )+};
}

pub use booking::{BookingStatus, Customer, GuestName, Mover};
pub use command::{
    BookingSnapshot, BookingUpdate, Command, FetchRequest, InvalidCommand, Mapped, PlatformPayment,
};
pub use event::{Outcome, Reason};
pub use matching::{MatchDecision, MatchRule, MatchedBooking};
pub use sale::{SaleFacts, SaleKind, SaleLine, SalePayment, SaleSnapshot, SaleState, SaleTotals};
pub use spend::{SaleFigures, Spend};
pub use table::TableKey;
pub use venue::Tolerances;
