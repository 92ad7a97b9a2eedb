//! Bookings in a venue's diary and the guard rails on their status.

use std::fmt;
use std::str::FromStr;

/// Where a booking is in its life. The names are the public API's (`status` in JSON).
///
/// The order of the variants up to `Completed` is the order a booking normally moves through;
/// automatic moves only go forwards along it, so a late or duplicated partner event can never
/// move a booking backwards. `Cancelled` and `NoShow` are terminal for automatic moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BookingStatus {
    Enquiry,
    Provisional,
    Confirmed,
    Arrived,
    Seated,
    Paid,
    Completed,
    Cancelled,
    NoShow,
}

impl BookingStatus {
    pub const ALL: [BookingStatus; 9] = [
        Self::Enquiry,
        Self::Provisional,
        Self::Confirmed,
        Self::Arrived,
        Self::Seated,
        Self::Paid,
        Self::Completed,
        Self::Cancelled,
        Self::NoShow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enquiry => "enquiry",
            Self::Provisional => "provisional",
            Self::Confirmed => "confirmed",
            Self::Arrived => "arrived",
            Self::Seated => "seated",
            Self::Paid => "paid",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::NoShow => "no_show",
        }
    }

    /// Terminal statuses are never left by an automatic rule; only an operator moves them.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::NoShow)
    }

    /// Bookings in these statuses never attract sales by table and time.
    pub fn excluded_from_table_matching(self) -> bool {
        matches!(self, Self::Cancelled | Self::NoShow)
    }

    /// Where a status lies along a booking's life, for judging partners' snapshots that
    /// carry no version (see [`super::BookingSnapshot::rank`]): 0 for an enquiry up to 60
    /// for completed, 70 for cancelled and no-show; tens, so a partner may rank its own
    /// finer statuses in between.
    pub fn rank(self) -> i64 {
        i64::from(self.progress()) * 10
    }

    fn progress(self) -> u8 {
        match self {
            Self::Enquiry => 0,
            Self::Provisional => 1,
            Self::Confirmed => 2,
            Self::Arrived => 3,
            Self::Seated => 4,
            Self::Paid => 5,
            Self::Completed => 6,
            Self::Cancelled | Self::NoShow => 7,
        }
    }

    /// Whether `mover` may move a booking from this status to `target`.
    ///
    /// Operators may make any move. Partners (a POS's reservation status, a booking platform)
    /// never move a terminal booking; they may cancel one that is not terminal, mark a no-show
    /// before the guests sat down, and otherwise only move it forwards, so a late or duplicate
    /// event never moves a booking backwards. The platform moves as a partner, but never
    /// releases guests who arrived.
    pub fn may_move_to(self, target: BookingStatus, mover: Mover) -> bool {
        if target == self {
            return false;
        }
        match mover {
            Mover::Operator => true,
            Mover::Platform => {
                let releases = matches!(target, Self::Cancelled | Self::NoShow);
                // Money is the POS's to report: a platform's `paid` on an open check was
                // undone by the check at once, and done again by every repeat.
                let money = match target {
                    Self::Paid => false,
                    Self::Completed => self == Self::Paid,
                    _ => true,
                };
                money
                    && self.may_move_to(target, Mover::Partner)
                    && !(releases && self.progress() >= Self::Arrived.progress())
            }
            Mover::Partner => {
                !self.is_terminal()
                    && match target {
                        Self::Cancelled => true,
                        Self::NoShow => self.progress() < Self::Seated.progress(),
                        _ => target.progress() > self.progress(),
                    }
            }
        }
    }

    /// The status a booking should take after its sales changed, given the sales' states.
    ///
    /// `Some(next)` only when the move is allowed: forwards from a non-terminal status, or the
    /// one sanctioned step back, paid -> seated, when a check is reopened.
    pub fn after_sales(self, sales: SalesSummary) -> Option<BookingStatus> {
        if self.is_terminal() || sales.live == 0 {
            return None;
        }
        let target = if sales.open > 0 {
            Self::Seated
        } else {
            Self::Paid
        };
        let reopened = self == Self::Paid && target == Self::Seated;
        (target.progress() > self.progress() || reopened).then_some(target)
    }
}

impl BookingStatus {
    /// A booking marked a no-show whose own reference is on a live sale: the party came
    /// after all (late, after the table was released). It is seated, or paid when its
    /// checks are all closed; `None` for any other status, or without a live sale.
    pub fn after_late_arrival(self, sales: SalesSummary) -> Option<BookingStatus> {
        (self == Self::NoShow && sales.live > 0).then_some(if sales.open > 0 {
            Self::Seated
        } else {
            Self::Paid
        })
    }

    /// The status a booking goes back to when its last live sale has left it (re-matched,
    /// unmatched, voided): the one it had before its sales first moved it
    /// (`before_sales`), or cancelled for a walk-in booking made for a check. `None` when
    /// its sales had not moved it (it is not seated or paid, or nothing is known of before).
    pub fn without_sales(
        self,
        before_sales: Option<BookingStatus>,
        walk_in: bool,
    ) -> Option<BookingStatus> {
        if !matches!(self, Self::Seated | Self::Paid) {
            return None;
        }
        if walk_in {
            return Some(Self::Cancelled);
        }
        before_sales.filter(|before| *before != self)
    }

    /// Whether a partner's no-show or cancellation may take a booking its sales have seated
    /// or paid: only when no sale holds it by stronger evidence than table and time
    /// (`held_firmly`: a reference, lineage, an operator). The walk-in whose check was
    /// taken for the absent party's is then matched again.
    pub fn may_release_to(self, target: BookingStatus, held_firmly: bool) -> bool {
        matches!(target, Self::NoShow | Self::Cancelled)
            && matches!(self, Self::Seated | Self::Paid)
            && !held_firmly
    }
}

/// Who asks for a status move; see [`BookingStatus::may_move_to`]. Moves caused by the
/// booking's own sales are decided by [`BookingStatus::after_sales`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mover {
    Partner,
    /// The booking platform, by its own reference: a partner that never cancels or marks a
    /// no-show once the guests arrived, because its copy of the booking can be stale (the POS
    /// saw them; the platform may not know yet).
    Platform,
    Operator,
}

/// How many of a booking's sales are live (not voided) and how many of those are still open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SalesSummary {
    pub live: usize,
    pub open: usize,
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown booking status {0:?}; expected one of enquiry, provisional, confirmed, arrived, seated, paid, completed, cancelled, no_show"
)]
pub struct UnknownStatus(pub String);

impl FromStr for BookingStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A guest's name as a check or booking gives it. Personal data: prints redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct GuestName(pub String);

/// Bytes of the longest guest name compared: far beyond any person's, far below what makes
/// comparing a check's name with every candidate booking's cost seconds. A 450,000-character
/// name on a busy table held a writer for tens of seconds (found by the outside attack on
/// issue 15).
pub const MAX_GUEST_NAME: usize = 512;

impl GuestName {
    /// A name worth comparing: not empty, and no longer than [`MAX_GUEST_NAME`] bytes (a
    /// longer one is nobody's name and says nothing about the guest).
    pub fn of(name: Option<&str>) -> Option<GuestName> {
        name.map(str::trim)
            .filter(|n| !n.is_empty() && n.len() <= MAX_GUEST_NAME)
            .map(|n| GuestName(n.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Serialised redacted, as it prints: operators trying a handler see that a name was read,
/// not whose.
impl serde::Serialize for GuestName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(super::REDACTED)
    }
}

impl fmt::Debug for GuestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GuestName([personal data redacted])")
    }
}

/// The guest a booking is for. Personal data: never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Customer {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// Serialised with each field present redacted, as it prints.
impl serde::Serialize for Customer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let redacted = |field: &Option<String>| field.as_ref().map(|_| super::REDACTED);
        let mut customer = serializer.serialize_struct("Customer", 3)?;
        customer.serialize_field("name", &redacted(&self.name))?;
        customer.serialize_field("email", &redacted(&self.email))?;
        customer.serialize_field("phone", &redacted(&self.phone))?;
        customer.end()
    }
}

impl fmt::Debug for Customer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Customer([personal data redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_longer_than_anyones_is_not_compared() {
        assert!(GuestName::of(Some("Purple, John")).is_some());
        assert!(GuestName::of(Some(&"x".repeat(MAX_GUEST_NAME))).is_some());
        assert!(GuestName::of(Some(&"x".repeat(MAX_GUEST_NAME + 1))).is_none());
    }

    #[test]
    fn the_platform_never_releases_guests_who_arrived() {
        use BookingStatus::*;
        for came in [Arrived, Seated, Paid] {
            assert!(!came.may_move_to(Cancelled, Mover::Platform), "{came:?}");
            assert!(!came.may_move_to(NoShow, Mover::Platform), "{came:?}");
        }
        assert!(
            Seated.may_move_to(Cancelled, Mover::Partner),
            "a POS still may"
        );
        assert!(Confirmed.may_move_to(Cancelled, Mover::Platform));
        assert!(Confirmed.may_move_to(NoShow, Mover::Platform));
        assert!(Confirmed.may_move_to(Seated, Mover::Platform));
        assert!(!Seated.may_move_to(Confirmed, Mover::Platform));
        assert!(
            !Seated.may_move_to(Paid, Mover::Platform),
            "the POS says paid"
        );
        assert!(!Seated.may_move_to(Completed, Mover::Platform));
        assert!(Paid.may_move_to(Completed, Mover::Platform));
    }

    fn sales(live: usize, open: usize) -> SalesSummary {
        SalesSummary { live, open }
    }

    #[test]
    fn an_opened_sale_seats_a_confirmed_booking() {
        let next = BookingStatus::Confirmed.after_sales(sales(1, 1));
        assert_eq!(next, Some(BookingStatus::Seated));
    }

    #[test]
    fn all_sales_closed_makes_a_seated_booking_paid() {
        assert_eq!(
            BookingStatus::Seated.after_sales(sales(2, 0)),
            Some(BookingStatus::Paid)
        );
    }

    #[test]
    fn a_reopened_check_puts_a_paid_booking_back_to_seated() {
        assert_eq!(
            BookingStatus::Paid.after_sales(sales(1, 1)),
            Some(BookingStatus::Seated)
        );
    }

    #[test]
    fn terminal_bookings_never_move_automatically() {
        for status in [
            BookingStatus::Cancelled,
            BookingStatus::NoShow,
            BookingStatus::Completed,
        ] {
            assert_eq!(status.after_sales(sales(1, 1)), None, "{status}");
            assert_eq!(status.after_sales(sales(1, 0)), None, "{status}");
        }
    }

    #[test]
    fn only_voided_sales_leave_the_booking_alone() {
        assert_eq!(BookingStatus::Confirmed.after_sales(sales(0, 0)), None);
    }

    #[test]
    fn partners_move_bookings_forwards_only_and_never_out_of_a_terminal_status() {
        use BookingStatus::*;
        assert!(Confirmed.may_move_to(Seated, Mover::Partner));
        assert!(Seated.may_move_to(Completed, Mover::Partner));
        assert!(
            !Seated.may_move_to(Arrived, Mover::Partner),
            "never backwards"
        );
        assert!(!Paid.may_move_to(Seated, Mover::Partner));
        assert!(Seated.may_move_to(Cancelled, Mover::Partner));
        assert!(Arrived.may_move_to(NoShow, Mover::Partner));
        assert!(
            !Seated.may_move_to(NoShow, Mover::Partner),
            "seated guests are not a no-show"
        );
        for terminal in [Cancelled, NoShow, Completed] {
            assert!(!terminal.may_move_to(Seated, Mover::Partner), "{terminal}");
            assert!(
                terminal.may_move_to(Confirmed, Mover::Operator),
                "{terminal}"
            );
        }
        assert!(
            !Seated.may_move_to(Seated, Mover::Operator),
            "no move to the same status"
        );
    }

    #[test]
    fn status_names_round_trip() {
        for status in BookingStatus::ALL {
            assert_eq!(status.as_str().parse::<BookingStatus>(), Ok(status));
        }
        assert!("SEATED".parse::<BookingStatus>().is_err());
    }
}

crate::serialize_as_str!(BookingStatus);
