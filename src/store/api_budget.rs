//! The calls diarysync makes to a partner's API, counted in the database so a published
//! hourly limit holds across restarts and across every node of a platform (a budget kept
//! in one process restarts with it, and two nodes would each spend the whole of it).
//!
//! A sliding hour, not a token bucket: a bucket holding a full hour's calls lets nearly
//! twice the limit through in the first hour, and the partner counts calls per hour.

use chrono::{DateTime, Duration, Utc};

use super::StoreError;
use super::db::{self, Conn};

/// The window a partner's limit counts calls in.
const WINDOW: Duration = Duration::hours(1);

/// Takes the channel's row for the rest of the transaction: on PostgreSQL the upsert locks
/// it, so two nodes counting the same channel take turns; SQLite has one writer anyway.
async fn hold_channel(conn: &mut Conn<'_>, channel: &str) -> Result<i64, StoreError> {
    let row = db::query(
        "INSERT INTO api_channels (channel) VALUES ($1)
         ON CONFLICT (channel) DO UPDATE SET quiet_until = api_channels.quiet_until
         RETURNING quiet_until",
    )
    .bind(channel)
    .fetch_one(conn)
    .await?;
    row.try_get("quiet_until")
}

/// What came of claiming a pending event's fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchClaim {
    /// This caller fetches it; the call is counted.
    Claimed,
    /// Another node claimed it first.
    Taken,
    /// Its channel has no call left this hour, or was asked to wait: nothing claimed.
    OverBudget,
}

/// Whether `channel` may be called at `now`: the partner has not asked us to wait, and fewer
/// than `hourly_limit` calls went out in the hour before. Holds the channel's row for the
/// rest of the transaction, so [`count_call`] after it counts against what was seen.
///
/// # Errors
/// When the database refuses.
pub(super) async fn has_call(
    conn: &mut Conn<'_>,
    channel: &str,
    now: DateTime<Utc>,
    hourly_limit: u32,
) -> Result<bool, StoreError> {
    let quiet_until = hold_channel(conn, channel).await?;
    if quiet_until > now.timestamp_millis() {
        return Ok(false);
    }
    let window_start = now
        .checked_sub_signed(WINDOW)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .timestamp_millis();
    db::query("DELETE FROM api_calls WHERE channel = $1 AND called_at <= $2")
        .bind(channel)
        .bind(window_start)
        .execute(conn)
        .await?;
    let made: i64 = db::query("SELECT COUNT(*) AS made FROM api_calls WHERE channel = $1")
        .bind(channel)
        .fetch_one(conn)
        .await?
        .try_get("made")?;
    Ok(made < i64::from(hourly_limit))
}

/// Counts one call to `channel` at `now`.
///
/// # Errors
/// When the database refuses.
pub(super) async fn count_call(
    conn: &mut Conn<'_>,
    channel: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    db::query("INSERT INTO api_calls (channel, called_at) VALUES ($1, $2)")
        .bind(channel)
        .bind(now.timestamp_millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Leaves `channel` alone until `until` (the partner said to wait), for every node; a
/// later wait already asked for stands.
///
/// # Errors
/// When the database refuses.
pub(super) async fn quiet(
    conn: &mut Conn<'_>,
    channel: &str,
    until: DateTime<Utc>,
) -> Result<(), StoreError> {
    let until = until.timestamp_millis();
    hold_channel(conn, channel).await?;
    db::query("UPDATE api_channels SET quiet_until = $1 WHERE channel = $2 AND quiet_until < $1")
        .bind(until)
        .bind(channel)
        .execute(conn)
        .await?;
    Ok(())
}
