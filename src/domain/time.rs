//! Instants from outside, read into the range diarysync works in, and arithmetic on instants
//! that cannot overflow.
//!
//! chrono represents roughly ±262,000 years and panics when an addition leaves that range.
//! A partner's `openDate` of `8210266876799999` ms (year 262,142) is a valid chrono instant,
//! and adding a 30-minute tolerance to it panicked on the store's writer thread. So every
//! instant read from a payload or the admin API is checked against [`EARLIEST`] ..
//! [`LATEST`] at the edge (a business cannot have a sale before 1970 or a booking after
//! 2200), and the arithmetic the rules do on instants goes through [`plus`] and [`minus`],
//! which saturate instead of panicking, for whatever a database from before this check
//! might still hold.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

/// The earliest instant accepted from outside: 1970-01-01T00:00:00Z (epoch 0).
pub const EARLIEST_MS: i64 = 0;
/// The latest instant accepted from outside: 2199-12-31T23:59:59.999Z.
pub const LATEST_MS: i64 = 7_258_118_399_999;
/// How the accepted range reads in messages.
pub const RANGE: &str = "1970-01-01T00:00:00Z to 2199-12-31T23:59:59.999Z";

/// The earliest accepted instant, as a time.
pub const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// The latest accepted instant, as a time.
pub fn latest() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(LATEST_MS).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A time outside [`RANGE`]: a partner's or operator's mistake, answered as invalid input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value} is outside {RANGE}")]
pub struct OutOfRange {
    /// The field it was read from, as the sender named it (`openDate`, `start`).
    pub field: String,
    /// The value as given (epoch number or text).
    pub value: String,
}

impl OutOfRange {
    pub fn new(field: impl Into<String>, value: impl ToString) -> OutOfRange {
        OutOfRange {
            field: field.into(),
            value: value.to_string(),
        }
    }
}

/// Whether `t` lies in the accepted range.
pub fn in_range(t: DateTime<Utc>) -> bool {
    (EARLIEST_MS..=LATEST_MS).contains(&t.timestamp_millis())
}

/// `t` if it lies in the accepted range.
///
/// # Errors
/// [`OutOfRange`] naming `field`.
pub fn bounded(t: DateTime<Utc>, field: &str) -> Result<DateTime<Utc>, OutOfRange> {
    if in_range(t) {
        Ok(without_leap_second(t))
    } else {
        Err(OutOfRange::new(field, t.to_rfc3339()))
    }
}

/// `t` with a leap second (`23:59:60`, which chrono holds as `23:59:59` plus a second of
/// nanoseconds) read as the next second's start, so durations from it stay whole.
pub fn without_leap_second(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    let nanos = t.nanosecond();
    if nanos < 1_000_000_000 {
        return t;
    }
    t.with_nanosecond(nanos - 1_000_000_000)
        .and_then(|t| t.checked_add_signed(Duration::seconds(1)))
        .unwrap_or(t)
}

/// The instant `ms` milliseconds after the Unix epoch, if it lies in the accepted range.
///
/// # Errors
/// [`OutOfRange`] naming `field`.
pub fn from_millis(ms: i64, field: &str) -> Result<DateTime<Utc>, OutOfRange> {
    (EARLIEST_MS..=LATEST_MS)
        .contains(&ms)
        .then(|| DateTime::from_timestamp_millis(ms))
        .flatten()
        .ok_or_else(|| OutOfRange::new(field, ms))
}

/// The instant `seconds` after the Unix epoch, if it lies in the accepted range.
///
/// # Errors
/// [`OutOfRange`] naming `field`.
pub fn from_seconds(seconds: i64, field: &str) -> Result<DateTime<Utc>, OutOfRange> {
    seconds
        .checked_mul(1000)
        .ok_or_else(|| OutOfRange::new(field, seconds))
        .and_then(|ms| from_millis(ms, field))
        .map_err(|_| OutOfRange::new(field, seconds))
}

/// A wall-clock time (no zone, read in a venue's zone later) if it lies a day inside the
/// accepted range: no zone is more than a day from UTC, so the instant it becomes is in
/// range whatever the venue's zone.
///
/// # Errors
/// [`OutOfRange`] naming `field`.
pub fn bounded_naive(t: NaiveDateTime, field: &str) -> Result<NaiveDateTime, OutOfRange> {
    const DAY_MS: i64 = 86_400_000;
    let ms = t.and_utc().timestamp_millis();
    if (EARLIEST_MS + DAY_MS..=LATEST_MS - DAY_MS).contains(&ms) {
        Ok(t)
    } else {
        Err(OutOfRange::new(field, t))
    }
}

/// `t + d`, saturating at chrono's limits instead of panicking.
pub fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(if d < Duration::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// `t - d`, saturating at chrono's limits instead of panicking.
pub fn minus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_sub_signed(d).unwrap_or(if d < Duration::zero() {
        DateTime::<Utc>::MAX_UTC
    } else {
        DateTime::<Utc>::MIN_UTC
    })
}

/// `n` minutes, saturating at the largest duration chrono holds.
pub fn minutes(n: i64) -> Duration {
    Duration::try_minutes(n).unwrap_or(if n < 0 { Duration::MIN } else { Duration::MAX })
}

/// `n` milliseconds (any `i64` is a valid duration).
pub fn millis(n: i64) -> Duration {
    Duration::milliseconds(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_runs_from_1970_to_the_end_of_2199() {
        assert_eq!(EARLIEST.to_rfc3339(), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            latest().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "2199-12-31T23:59:59.999Z"
        );
        assert!(from_millis(LATEST_MS, "t").is_ok());
        assert!(from_millis(LATEST_MS + 1, "t").is_err());
        assert!(from_millis(-1, "t").is_err());
    }

    #[test]
    fn extreme_epoch_numbers_are_refused_not_panicked_on() {
        for ms in [
            i64::MIN,
            i64::MAX,
            8_210_266_876_799_999,
            -8_334_601_228_800_000,
        ] {
            let error = from_millis(ms, "openDate").expect_err("out of range");
            assert_eq!(error.field, "openDate");
            assert!(error.to_string().contains(&ms.to_string()), "{error}");
        }
        for s in [i64::MIN, i64::MAX, i64::MAX / 1000 + 1, 253_402_300_800_000] {
            assert!(from_seconds(s, "start_date").is_err(), "{s}");
        }
        assert_eq!(
            from_seconds(1_700_000_000, "start_date").map(|t| t.timestamp()),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn arithmetic_at_chronos_limits_saturates() {
        let max = DateTime::<Utc>::MAX_UTC;
        let min = DateTime::<Utc>::MIN_UTC;
        assert_eq!(plus(max, minutes(30)), max);
        assert_eq!(minus(min, minutes(30)), min);
        assert_eq!(plus(min, minutes(-30)), min);
        assert_eq!(minus(max, minutes(-30)), max);
        assert_eq!(minutes(i64::MAX), Duration::MAX);
        assert_eq!(minutes(i64::MIN), Duration::MIN);
        let t = EARLIEST;
        assert_eq!(plus(t, minutes(90)).timestamp(), 5400);
    }
}
