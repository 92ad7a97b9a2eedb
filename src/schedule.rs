//! Background work on a schedule, stopped with the service: the fetcher's rounds, the
//! silence check.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::StoreError;

/// Runs `round` every `period`, the first time after `first_after`, until `stop` turns true.
/// A round that fails (or panics) is logged as `what` and the next one tries again; a round
/// that overruns delays the next rather than bunching them.
pub async fn every<T, F, Fut>(
    period: Duration,
    first_after: Duration,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first_after, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(error) = crate::store::guarded(round()).await {
            tracing::error!(%error, round = what, "a round failed; the next one tries again");
        }
    }
}
