//! What a partner handler asks the gateway to do with one event.

use super::event::Reason;
use super::sale::SaleSnapshot;

/// A change to the diary, in our terms, produced by a partner handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create or update a sale from a full snapshot and match it to a booking.
    UpsertSale(SaleSnapshot),
}

impl Command {
    /// The partner's id of the sale this command touches, which is also the in-flight lock key.
    pub fn sale_external_id(&self) -> Option<&str> {
        match self {
            Command::UpsertSale(sale) => Some(&sale.external_id),
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
    /// Store the event and do nothing, for `reason` (`detail` is for the operator).
    Ignore { reason: Reason, detail: String },
}
