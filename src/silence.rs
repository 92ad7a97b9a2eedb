//! Watching for silent partners: the commonest real failure is that nothing arrives (a POS
//! disabled our webhook after failures, an integration was switched off). Every
//! `silence.check_interval_ms`, each node compares each partner and venue's recent traffic
//! with what is usual at this hour of the week (`store::silence`), raises `partner.silent`
//! for one silent `silence.after_minutes` at an hour it usually sends, and `partner.resumed`
//! once it sends again.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;

use crate::config::SilenceSettings;
use crate::store::silence::SilenceRule;
use crate::store::{Store, StoreError};

/// The rule the settings describe.
pub fn rule(settings: &SilenceSettings) -> SilenceRule {
    SilenceRule {
        after: chrono::Duration::from_std(settings.after).unwrap_or(chrono::Duration::MAX),
        min_events_per_hour: settings.min_events_per_hour,
        weeks: settings.history_weeks,
    }
}

/// Runs checks until `stop` turns true, the first one a period after start: the check
/// reads weeks of events, which a node starting (or restarting in a crash loop) need not.
pub async fn run(store: Arc<dyn Store>, settings: SilenceSettings, stop: watch::Receiver<bool>) {
    let period = settings.check_interval;
    crate::schedule::every(period, period, stop, "silence check", || {
        check(store.as_ref(), rule(&settings))
    })
    .await;
}

/// One check: raises and clears silences. Returns how many this node raised or cleared.
///
/// # Errors
/// When the store fails.
pub async fn check(store: &dyn Store, rule: SilenceRule) -> Result<usize, StoreError> {
    let now = Utc::now();
    let mut changed = 0;
    for traffic in store.partner_traffic(now, rule).await? {
        let silent = traffic.is_silent(now, rule);
        let was_silent = traffic.silent_since.is_some();
        if silent != was_silent && store.set_silence(traffic.clone(), silent, now).await? {
            changed += 1;
            if silent {
                tracing::warn!(partner = %traffic.partner, venue = traffic.venue_id,
                    last_event_at = %traffic.last_event_at, "partner silent");
            } else {
                tracing::info!(partner = %traffic.partner, venue = traffic.venue_id,
                    "partner sends again");
            }
        }
    }
    Ok(changed)
}
