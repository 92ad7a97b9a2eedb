//! The retention setting at work: every hour (and a minute after start), erase the raw
//! payloads and guests' personal data older than `retention_days` (`Store::purge`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::gateway::Gateway;

const EVERY: Duration = Duration::from_secs(3_600);
const FIRST_AFTER: Duration = Duration::from_secs(60);

/// The instant before which data is past a retention of `keep`; `None` when that lies
/// before any representable time (nothing is that old).
pub fn cutoff(keep: Duration) -> Option<chrono::DateTime<Utc>> {
    Utc::now().checked_sub_signed(chrono::Duration::from_std(keep).ok()?)
}

/// Purges on schedule until `stop` turns true.
pub async fn run(gateway: Arc<Gateway>, keep: Duration, mut stop: watch::Receiver<bool>) {
    let mut wait = FIRST_AFTER;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        wait = EVERY;
        let Some(before) = cutoff(keep) else { continue };
        match gateway.store().purge(before).await {
            Ok(summary) => tracing::info!(
                events = summary.events,
                bookings = summary.bookings,
                guests = summary.guests,
                "retention purge"
            ),
            Err(error) => tracing::error!(error = %error, "retention purge failed; will try again"),
        }
    }
}
