//! Fetching what notifications only point at.
//!
//! Some partners notify without details (TourCMS's asynchronous notifications carry only a
//! booking id). Those events are stored `pending` first, so the partner gets its 200 at
//! once and nothing is lost; this worker then fetches the booking from the partner's API
//! and applies it to the same event. While the API is unreachable or answers with an error
//! the event stays `pending`, retried with exponential back-off, each attempt and the next
//! one written in the event's detail for the operator; after [`MAX_ATTEMPTS`] it is
//! `failed` (`fetch_failed`) and can be replayed by hand.
//!
//! Several processes may run it against one database: two fetching the same event at once
//! apply the same snapshot, which the second records as a duplicate.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::domain::Mapped;
use crate::gateway::Gateway;
use crate::partners::{HandlerSpec, tourcms};
use crate::store::{StoreError, StoredEvent};

/// Fetches tried before an event is given up as failed (about a day at the cap).
pub const MAX_ATTEMPTS: i64 = 30;
/// Back-off never waits longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claimed fetch is this node's: well over one request's timeout, so a lease
/// only runs out when the node that took it died.
const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// Due events handled per round.
const BATCH: i64 = 50;

pub use crate::config::Cadence;

/// Runs until `stop` turns true.
pub async fn run(gateway: Arc<Gateway>, cadence: Cadence, mut stop: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the HTTP client; pending fetches will wait");
            return;
        }
    };
    let mut tick = tokio::time::interval(cadence.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(error) = fetch_due(&gateway, &client, cadence.retry_base).await {
            tracing::error!(%error, "fetch round failed");
        }
    }
}

/// Fetches every due pending event once; returns how many were tried.
///
/// # Errors
/// When the store cannot be read or written.
pub async fn fetch_due(
    gateway: &Gateway,
    client: &reqwest::Client,
    retry_base: Duration,
) -> Result<usize, StoreError> {
    let store = gateway.store();
    let due = store.due_fetches(Utc::now(), BATCH).await?;
    let mut tried = 0;
    for event in &due {
        // Several nodes find the same due events; the claim lets one of them fetch each.
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(CLAIM_LEASE).unwrap_or_default();
        if store.claim_fetch(event.id, now, lease_until).await? {
            fetch_one(gateway, client, retry_base, event).await?;
            tried += 1;
        }
    }
    Ok(tried)
}

async fn fetch_one(
    gateway: &Gateway,
    client: &reqwest::Client,
    retry_base: Duration,
    event: &StoredEvent,
) -> Result<(), StoreError> {
    let store = gateway.store();
    let attempts = event.attempts + 1;
    let Some((HandlerSpec::TourCms(api), handler)) = gateway.partner_handler(&event.partner) else {
        let detail = format!("partner {} is not configured to fetch", event.partner);
        return store.fetch_failed(event.id, attempts, None, &detail).await;
    };
    let (mapped, version) = gateway.map_stored(handler, event);
    let Mapped::Fetch(request) = mapped else {
        // The handler no longer asks for a fetch: apply what it says now.
        return gateway.reapply(event, mapped, version).await.map(drop);
    };
    let (url, headers) = tourcms::show_booking_request(api, &request, Utc::now().timestamp());
    let mut call = client.get(&url);
    for (name, value) in headers {
        call = call.header(name, value);
    }
    let fetched = match call.send().await {
        Ok(response) if response.status().is_success() => match response.bytes().await {
            Ok(body) => tourcms::complete(&request, &body),
            Err(error) => Err(format!("reading the answer: {error}")),
        },
        Ok(response) => Err(format!("TourCMS answered {}", response.status())),
        Err(error) => Err(format!("TourCMS unreachable: {error}")),
    };
    match fetched {
        Ok(mapped) => {
            let result = gateway.reapply(event, mapped, version).await?;
            tracing::info!(event_id = event.id, attempts, outcome = %result.outcome, "fetched booking applied");
            Ok(())
        }
        Err(error) if attempts >= MAX_ATTEMPTS => {
            let detail = format!("gave up after {attempts} attempts; last: {error}");
            tracing::warn!(event_id = event.id, attempts, "fetch given up");
            store.fetch_failed(event.id, attempts, None, &detail).await
        }
        Err(error) => {
            let exponent = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(20);
            let delay = retry_base
                .saturating_mul(2u32.saturating_pow(exponent))
                .min(MAX_BACKOFF);
            let retry_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            let detail = format!(
                "attempt {attempts} failed: {error}; next at {}",
                retry_at.to_rfc3339()
            );
            tracing::warn!(event_id = event.id, attempts, "fetch failed, will retry");
            store
                .fetch_failed(event.id, attempts, Some(retry_at), &detail)
                .await
        }
    }
}
