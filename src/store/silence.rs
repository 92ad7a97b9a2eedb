//! Partner silence: per partner and venue, how many events usually arrive at this hour of the
//! week (from the stored events of the last weeks), and whether one that usually sends has
//! been silent too long. Raising and clearing are conditional updates, so of several nodes
//! checking at once one raises (and announces) each silence.

use chrono::{DateTime, Duration, Utc};

use super::StoreError;
use super::db::{self, Conn};
use super::sql::from_millis;
use crate::domain::change::{Note, Noted};

/// What the silence check weighs.
#[derive(Debug, Clone, Copy)]
pub struct SilenceRule {
    /// Silent at least this long...
    pub after: Duration,
    /// ...at an hour of the week with, on average over `weeks`, at least this many events.
    pub min_events_per_hour: f64,
    pub weeks: u32,
}

/// A partner and venue's recent traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    pub partner: String,
    pub venue_id: i64,
    pub last_event_at: DateTime<Utc>,
    /// Events per week, on average, in this hour of the week in the weeks before this hour.
    pub usual_per_hour: f64,
    /// In how many of those weeks this hour had events at all.
    pub weeks_with_events: u32,
    /// The weeks looked at.
    pub weeks: u32,
    pub silent_since: Option<DateTime<Utc>>,
}

/// The hour of the week of `t` in UTC, Monday 00:00 being 0 (the epoch was a Thursday).
fn hour_of_week(t: DateTime<Utc>) -> i64 {
    (t.timestamp().div_euclid(3_600) + 72).rem_euclid(168)
}

/// Every partner and venue with events in the last `rule.weeks`, with what is usual now:
/// counted from the weeks before the last hour only, so a venue's first burst (or this hour's
/// own events) never makes an hour look usual.
///
/// # Errors
/// When the database fails.
pub(super) async fn traffic(
    conn: &mut Conn<'_>,
    now: DateTime<Utc>,
    rule: SilenceRule,
) -> Result<Vec<Traffic>, StoreError> {
    let from = now - Duration::weeks(i64::from(rule.weeks));
    let history_ends = now - Duration::hours(1);
    let rows = db::query(
        "SELECT e.partner, e.venue_id, MAX(e.received_at) AS last_at,
             SUM(CASE WHEN e.received_at < $3 AND (e.received_at / 3600000 + 72) % 168 = $2
                 THEN 1 ELSE 0 END) AS in_slot,
             COUNT(DISTINCT CASE WHEN e.received_at < $3
                     AND (e.received_at / 3600000 + 72) % 168 = $2
                 THEN (e.received_at / 3600000 + 72) / 168 END) AS weeks_in_slot,
             MAX(s.silent_since) AS silent_since
         FROM events e LEFT JOIN partner_silence s
             ON s.partner = e.partner AND s.venue_id = e.venue_id
         WHERE e.received_at >= $1 AND e.venue_id IS NOT NULL
         GROUP BY e.partner, e.venue_id",
    )
    .bind(from.timestamp_millis())
    .bind(hour_of_week(now))
    .bind(history_ends.timestamp_millis())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let in_slot: i64 = row.try_get("in_slot")?;
            let weeks_in_slot: i64 = row.try_get("weeks_in_slot")?;
            Ok(Traffic {
                partner: row.try_get("partner")?,
                venue_id: row.try_get("venue_id")?,
                last_event_at: from_millis(row.try_get("last_at")?)?,
                usual_per_hour: in_slot as f64 / f64::from(rule.weeks.max(1)),
                weeks_with_events: u32::try_from(weeks_in_slot).unwrap_or(0),
                weeks: rule.weeks.max(1),
                silent_since: row
                    .try_get::<Option<i64>>("silent_since")?
                    .map(from_millis)
                    .transpose()?,
            })
        })
        .collect()
}

impl Traffic {
    /// Whether this hour is one the partner usually sends in: events in at least half of
    /// the weeks looked at (a one-off burst is not a habit), and on average at least
    /// `rule.min_events_per_hour`.
    pub fn is_usual(&self, rule: SilenceRule) -> bool {
        self.weeks_with_events.saturating_mul(2) >= self.weeks
            && self.usual_per_hour >= rule.min_events_per_hour
    }

    /// Whether this is a silence now: a partner that usually sends at this hour has sent
    /// nothing for `rule.after`.
    pub fn is_silent(&self, now: DateTime<Utc>, rule: SilenceRule) -> bool {
        self.is_usual(rule) && now.signed_duration_since(self.last_event_at) >= rule.after
    }
}

/// Raises the silence of `traffic` if no node has yet; notes `partner.silent` if this did.
///
/// # Errors
/// When the database fails.
pub(super) async fn raise(
    conn: &mut Conn<'_>,
    traffic: &Traffic,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let raised = db::query(
        "INSERT INTO partner_silence (partner, venue_id, silent_since, last_event_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (partner, venue_id) DO UPDATE SET silent_since = excluded.silent_since,
             last_event_at = excluded.last_event_at, cleared_at = NULL
         WHERE partner_silence.silent_since IS NULL",
    )
    .bind(traffic.partner.as_str())
    .bind(traffic.venue_id)
    .bind(now.timestamp_millis())
    .bind(traffic.last_event_at.timestamp_millis())
    .execute(conn)
    .await?
        > 0;
    if raised {
        note(conn, traffic, now, false);
    }
    Ok(raised)
}

/// Clears the silence of `traffic` (its events resumed) if no node has yet; notes
/// `partner.resumed` if this did.
///
/// # Errors
/// When the database fails.
pub(super) async fn clear(
    conn: &mut Conn<'_>,
    traffic: &Traffic,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let cleared = db::query(
        "UPDATE partner_silence SET silent_since = NULL, cleared_at = $3, last_event_at = $4
         WHERE partner = $1 AND venue_id = $2 AND silent_since IS NOT NULL",
    )
    .bind(traffic.partner.as_str())
    .bind(traffic.venue_id)
    .bind(now.timestamp_millis())
    .bind(traffic.last_event_at.timestamp_millis())
    .execute(conn)
    .await?
        > 0;
    if cleared {
        note(conn, traffic, now, true);
    }
    Ok(cleared)
}

fn note(conn: &mut Conn<'_>, traffic: &Traffic, now: DateTime<Utc>, resumed: bool) {
    conn.note(Note {
        change: Noted::Silence {
            partner: traffic.partner.clone(),
            venue_id: traffic.venue_id,
            last_event_at: traffic.last_event_at,
            resumed,
        },
        cause: if resumed {
            "events resumed".to_owned()
        } else {
            "no events at an hour the venue usually sends them".to_owned()
        },
        event_id: None,
        at: now,
    });
}

/// Every partner and venue ever found silent: `(partner, venue, silent)`.
///
/// # Errors
/// When the database fails.
pub(super) async fn states(conn: &mut Conn<'_>) -> Result<Vec<(String, i64, bool)>, StoreError> {
    db::query("SELECT partner, venue_id, silent_since FROM partner_silence")
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("partner")?,
                row.try_get("venue_id")?,
                row.try_get::<Option<i64>>("silent_since")?.is_some(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(
        weeks_with_events: u32,
        per_hour: f64,
        quiet_minutes: i64,
    ) -> (Traffic, DateTime<Utc>) {
        let now = Utc::now();
        let traffic = Traffic {
            partner: "pos".to_owned(),
            venue_id: 1,
            last_event_at: now - Duration::minutes(quiet_minutes),
            usual_per_hour: per_hour,
            weeks_with_events,
            weeks: 4,
            silent_since: None,
        };
        (traffic, now)
    }

    #[test]
    fn only_a_habit_broken_long_enough_is_a_silence() {
        let rule = SilenceRule {
            after: Duration::minutes(60),
            min_events_per_hour: 1.0,
            weeks: 4,
        };
        let (usual, now) = traffic(3, 5.0, 90);
        assert!(usual.is_silent(now, rule));
        let (recent, now) = traffic(3, 5.0, 30);
        assert!(!recent.is_silent(now, rule), "not silent long enough");
        let (burst, now) = traffic(1, 5.0, 90);
        assert!(
            !burst.is_silent(now, rule),
            "one week's burst is not a habit"
        );
        let (trickle, now) = traffic(4, 0.5, 90);
        assert!(
            !trickle.is_silent(now, rule),
            "too few events to expect one now"
        );
    }

    #[test]
    fn the_week_starts_on_monday_at_midnight_utc() {
        let monday = DateTime::parse_from_rfc3339("2026-11-30T00:30:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(hour_of_week(monday), 0);
        assert_eq!(hour_of_week(monday + Duration::hours(167)), 167);
        assert_eq!(hour_of_week(monday + Duration::hours(168)), 0);
    }
}
