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
