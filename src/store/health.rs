//! Partner health: how each partner's events fared per venue over the last hour and day, and
//! what went wrong, from the stored events themselves (so every node sees the same).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::StoreError;
use super::db::{self, Conn};
use super::records::{HealthProblem, HealthRecord};
use super::sql::from_millis;

/// Kinds of problem listed per partner and venue, at most.
const PROBLEMS: usize = 8;
/// Unmapped locations listed per partner, at most.
const UNMAPPED_LOCATIONS: usize = 100;

/// A partner and venue's record before anything is counted.
fn empty(key: &(String, Option<i64>)) -> HealthRecord {
    HealthRecord {
        partner: key.0.clone(),
        venue_id: key.1,
        venue_name: None,
        last_event_at: None,
        silent_since: None,
        last_hour: BTreeMap::new(),
        last_day: BTreeMap::new(),
        sales_last_day: 0,
        matched_last_day: 0,
        problems: Vec::new(),
        problems_not_listed: 0,
    }
}

/// The health of every partner and venue that had events in the day before `now`.
pub(super) async fn health(
    conn: &mut Conn<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<HealthRecord>, StoreError> {
    let day = (now - Duration::days(1)).timestamp_millis();
    let hour = (now - Duration::hours(1)).timestamp_millis();
    let mut records: BTreeMap<(String, Option<i64>), HealthRecord> = BTreeMap::new();
    let counts = db::query(
        "SELECT e.partner, e.venue_id, v.name AS venue_name, e.outcome,
             SUM(CASE WHEN e.received_at >= $2 THEN 1 ELSE 0 END) AS last_hour,
             COUNT(*) AS last_day, MAX(e.received_at) AS last_at
         FROM events e LEFT JOIN venues v ON v.id = e.venue_id
         WHERE e.received_at >= $1
         GROUP BY e.partner, e.venue_id, v.name, e.outcome",
    )
    .bind(day)
    .bind(hour)
    .fetch_all(conn)
    .await?;
    for row in &counts {
        let key = (row.try_get::<String>("partner")?, row.try_get("venue_id")?);
        let record = records.entry(key.clone()).or_insert_with(|| empty(&key));
        record.venue_name = row.try_get("venue_name")?;
        let outcome: String = row.try_get("outcome")?;
        let last_hour: i64 = row.try_get("last_hour")?;
        if last_hour > 0 {
            record.last_hour.insert(outcome.clone(), last_hour);
        }
        record.last_day.insert(outcome, row.try_get("last_day")?);
        let last_at = from_millis(row.try_get("last_at")?)?;
        record.last_event_at = record.last_event_at.max(Some(last_at));
    }
    let problems = db::query(
        "SELECT partner, venue_id, outcome, reason, MIN(detail) AS example, COUNT(*) AS events,
             CASE WHEN outcome = 'failed' THEN event_type END AS failed_type
         FROM events WHERE received_at >= $1
             AND (outcome <> 'processed' OR reason = 'unknown_location')
         GROUP BY partner, venue_id, outcome, reason,
             CASE WHEN reason = 'unknown_location' THEN detail ELSE '' END,
             CASE WHEN outcome = 'failed' THEN event_type END
         ORDER BY events DESC",
    )
    .bind(day)
    .fetch_all(conn)
    .await?;
    for row in &problems {
        let key = (row.try_get::<String>("partner")?, row.try_get("venue_id")?);
        let Some(record) = records.get_mut(&key) else {
            continue;
        };
        // Every unmapped location is something to map: they are listed far beyond the
        // other kinds (15 unknown locations showed 8, and the rest could not be mapped from
        // the health page, found by the outside attack on issue 17).
        let unmapped =
            row.try_get::<Option<String>>("reason")?.as_deref() == Some("unknown_location");
        let listed = record
            .problems
            .iter()
            .filter(|p| (p.reason.as_deref() == Some("unknown_location")) == unmapped)
            .count();
        if listed
            >= if unmapped {
                UNMAPPED_LOCATIONS
            } else {
                PROBLEMS
            }
        {
            record.problems_not_listed += 1;
            continue;
        }
        {
            record.problems.push(HealthProblem {
                outcome: row.try_get("outcome")?,
                reason: row.try_get("reason")?,
                location_id: row
                    .try_get::<Option<String>>("example")?
                    .as_deref()
                    .filter(|_| {
                        row.try_get::<Option<String>>("reason")
                            .ok()
                            .flatten()
                            .as_deref()
                            == Some("unknown_location")
                    })
                    .and_then(crate::domain::event::unmapped_location_of)
                    .map(str::to_owned),
                example: row.try_get("example")?,
                events: row.try_get("events")?,
                event_type: row.try_get("failed_type")?,
            });
        }
    }
    let sales = db::query(
        "SELECT partner, venue_id, COUNT(*) AS sales, COUNT(booking_id) AS matched
         FROM sales WHERE updated_at >= $1 GROUP BY partner, venue_id",
    )
    .bind(day)
    .fetch_all(conn)
    .await?;
    for row in &sales {
        let key = (row.try_get::<String>("partner")?, row.try_get("venue_id")?);
        if let Some(record) = records.get_mut(&key) {
            record.sales_last_day = row.try_get("sales")?;
            record.matched_last_day = row.try_get("matched")?;
        }
    }
    // A silence outlasts the day's events: every silent pair is listed.
    let silent = db::query(
        "SELECT s.partner, s.venue_id, s.silent_since, s.last_event_at, v.name AS venue_name
         FROM partner_silence s LEFT JOIN venues v ON v.id = s.venue_id
         WHERE s.silent_since IS NOT NULL",
    )
    .fetch_all(conn)
    .await?;
    for row in &silent {
        let key = (row.try_get::<String>("partner")?, row.try_get("venue_id")?);
        let record = records.entry(key.clone()).or_insert_with(|| empty(&key));
        record.venue_name = row.try_get("venue_name")?;
        record.silent_since = Some(from_millis(row.try_get("silent_since")?)?);
        let last = from_millis(row.try_get("last_event_at")?)?;
        record.last_event_at = record.last_event_at.max(Some(last));
    }
    Ok(records.into_values().collect())
}
