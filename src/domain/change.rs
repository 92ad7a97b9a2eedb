//! What changed in a venue's diary, as the booking platform hears it: the message types of the
//! outbound webhooks and the change feed (`docs/INTEGRATION.md`).
//!
//! A write notes each change as it makes it ([`Noted`]); before the write's transaction ends the
//! store renders the notes into messages with the booking's state at that moment, so a message
//! exists exactly when the change it reports was committed (a transactional outbox).

use chrono::{DateTime, Utc};

use super::BookingStatus;

/// A message type. The names are the public contract (`type` in a message, `event_types` of a
/// subscription).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeType {
    BookingCreated,
    BookingChanged,
    BookingConfirmed,
    BookingSeated,
    BookingPaid,
    BookingCompleted,
    BookingNoShow,
    BookingCancelled,
    BookingSpendChanged,
    SaleMatched,
    SaleUnmatched,
    SaleNeedsReview,
    PartnerSilent,
    PartnerResumed,
}

impl ChangeType {
    pub const ALL: [ChangeType; 14] = [
        Self::BookingCreated,
        Self::BookingChanged,
        Self::BookingConfirmed,
        Self::BookingSeated,
        Self::BookingPaid,
        Self::BookingCompleted,
        Self::BookingNoShow,
        Self::BookingCancelled,
        Self::BookingSpendChanged,
        Self::SaleMatched,
        Self::SaleUnmatched,
        Self::SaleNeedsReview,
        Self::PartnerSilent,
        Self::PartnerResumed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BookingCreated => "booking.created",
            Self::BookingChanged => "booking.changed",
            Self::BookingConfirmed => "booking.confirmed",
            Self::BookingSeated => "booking.seated",
            Self::BookingPaid => "booking.paid",
            Self::BookingCompleted => "booking.completed",
            Self::BookingNoShow => "booking.no_show",
            Self::BookingCancelled => "booking.cancelled",
            Self::BookingSpendChanged => "booking.spend_changed",
            Self::SaleMatched => "sale.matched",
            Self::SaleUnmatched => "sale.unmatched",
            Self::SaleNeedsReview => "sale.needs_review",
            Self::PartnerSilent => "partner.silent",
            Self::PartnerResumed => "partner.resumed",
        }
    }

    /// The type named `name`, if any.
    pub fn parse(name: &str) -> Option<ChangeType> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The message a booking's move to `status` sends; `None` for the statuses before a
    /// confirmed booking (an enquiry, a provisional hold), which a platform does not act on,
    /// and for a guest who arrived but is not yet seated.
    pub fn of_status(status: BookingStatus) -> Option<ChangeType> {
        match status {
            BookingStatus::Confirmed => Some(Self::BookingConfirmed),
            BookingStatus::Seated => Some(Self::BookingSeated),
            BookingStatus::Paid => Some(Self::BookingPaid),
            BookingStatus::Completed => Some(Self::BookingCompleted),
            BookingStatus::NoShow => Some(Self::BookingNoShow),
            BookingStatus::Cancelled => Some(Self::BookingCancelled),
            BookingStatus::Enquiry | BookingStatus::Provisional | BookingStatus::Arrived => None,
        }
    }
}

/// A change a write made, noted while it runs and rendered into a message before it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Noted {
    /// A booking was created (by an operator or the platform).
    BookingCreated { booking_id: i64 },
    /// A booking's details (time, tables, covers, guest, reference) were changed.
    BookingChanged { booking_id: i64 },
    /// A booking moved from one status to another.
    Status {
        booking_id: i64,
        from: BookingStatus,
        to: BookingStatus,
    },
    /// The sales a booking holds changed (one joined, left or changed its figures): its spend
    /// is compared with the last one sent, and `booking.spend_changed` sent if it moved.
    Sales { booking_id: i64 },
    /// A sale's match was decided: to a booking, to nobody, or left for an operator between
    /// equally good candidates.
    SaleLink {
        sale_id: i64,
        booking_id: Option<i64>,
        /// The bookings an unmatched sale is left between (empty when nobody fits).
        candidates: Vec<i64>,
    },
    /// A partner that usually sends events for the venue at this hour of the week has been
    /// silent since its last event (`resumed: false`), or sends again (`resumed: true`).
    Silence {
        partner: String,
        venue_id: i64,
        last_event_at: DateTime<Utc>,
        resumed: bool,
    },
}

impl Noted {
    /// The booking the change concerns, if any: messages about one booking are delivered in
    /// the order they were made.
    pub fn booking_id(&self) -> Option<i64> {
        match self {
            Self::BookingCreated { booking_id }
            | Self::BookingChanged { booking_id }
            | Self::Status { booking_id, .. }
            | Self::Sales { booking_id } => Some(*booking_id),
            Self::SaleLink { booking_id, .. } => *booking_id,
            Self::Silence { .. } => None,
        }
    }
}

/// A change noted by a write, with why and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub change: Noted,
    /// Why, in the words the booking's history uses (`sale 12 closed`, `manual`, ...).
    pub cause: String,
    /// The stored partner event that caused it, if one did.
    pub event_id: Option<i64>,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_reads_back_from_its_name_and_no_other_name_reads() {
        for t in ChangeType::ALL {
            assert_eq!(ChangeType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ChangeType::parse("booking.Paid"), None);
        assert_eq!(ChangeType::parse(""), None);
    }

    #[test]
    fn statuses_a_platform_acts_on_send_their_own_message() {
        assert_eq!(
            ChangeType::of_status(BookingStatus::NoShow),
            Some(ChangeType::BookingNoShow)
        );
        assert_eq!(ChangeType::of_status(BookingStatus::Enquiry), None);
    }
}
