//! Venues and their matching settings.

use chrono::Duration;

/// How far outside a booking's time a sale may open and still match it by table and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tolerances {
    pub before_start: Duration,
    pub after_end: Duration,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            before_start: Duration::minutes(30),
            after_end: Duration::minutes(60),
        }
    }
}

/// What a venue's per-cover spend divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CoversSource {
    /// The covers booked (falling back to the POS's when none were booked).
    #[default]
    Booking,
    /// The covers the POS counted on the booking's checks (falling back to the booked ones
    /// when the checks carry none): the guests who really came.
    Pos,
}

impl CoversSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booking => "booking",
            Self::Pos => "pos",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Booking, Self::Pos]
            .into_iter()
            .find(|source| source.as_str() == s)
    }
}
