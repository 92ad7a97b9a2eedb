//! What a partner handler asks the gateway to do with one event.

use super::booking::{BookingStatus, Customer};
use super::event::Reason;
use super::sale::SaleSnapshot;
use super::table::TableKey;

/// A change to the diary, in our terms, produced by a partner handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create or update a sale from a full snapshot and match it to a booking.
    UpsertSale(Box<SaleSnapshot>),
    /// The partner's view of a booking changed (e.g. a POS's reservation status): move it
    /// through the state machine and take its tables and covers.
    UpdateBooking(BookingUpdate),
    /// The partner switched its integration for this location on or off.
    SetIntegration { enabled: bool },
    /// A guest profile the partner knows (e.g. a POS customer record).
    UpsertGuest(Customer),
}

/// A partner's statement about one booking, found by its reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingUpdate {
    pub reference: String,
    /// Our status for the partner's; `None` when it has no equivalent (recorded only).
    pub status: Option<BookingStatus>,
    /// The partner's own status name, kept for the record.
    pub partner_status: String,
    pub tables: Option<Vec<TableKey>>,
    pub covers: Option<i64>,
}

impl Command {
    /// The partner's id of the sale this command touches, which is also the in-flight lock key.
    pub fn sale_external_id(&self) -> Option<&str> {
        match self {
            Command::UpsertSale(sale) => Some(&sale.external_id),
            Command::UpdateBooking(_)
            | Command::SetIntegration { .. }
            | Command::UpsertGuest(_) => None,
        }
    }
}

/// The result of running a partner's handler over one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Apply `commands` to the venue behind the partner's `location_id`.
    Apply {
        location_id: String,
        commands: Vec<Command>,
    },
    /// Commands for several of the partner's locations (one delivery batching several
    /// shops); applied all or nothing.
    Batch(Vec<(String, Vec<Command>)>),
    /// A notice for the operator (an onboarding request, a partner-side error): recorded as
    /// processed with `detail`, nothing else to apply.
    Notice { detail: String },
    /// The handler itself failed (e.g. a script hit a limit): the event is stored as `failed`
    /// and the partner asked to retry; a fixed handler recovers it by replay.
    Fail { reason: Reason, detail: String },
    /// Store the event and do nothing, for `reason` (`detail` is for the operator).
    Ignore { reason: Reason, detail: String },
}
