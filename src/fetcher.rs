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
use crate::store::{FetchClaim, StoreError, StoredEvent};

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

/// How long to leave a channel alone when TourCMS says it has no calls left this hour and
/// gives no time to wait: its window is an hour, so a quarter of one, then ask again.
const EXHAUSTED_PAUSE: Duration = Duration::from_secs(900);

/// What an answer says about waiting: `Retry-After` in seconds (or an HTTP date), or an
/// exhausted `X-RateLimit-Remaining`.
fn asked_to_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_secs)
                .ok()
                .or_else(|| {
                    chrono::DateTime::parse_from_rfc2822(v.trim())
                        .ok()
                        .and_then(|at| (at.with_timezone(&Utc) - Utc::now()).to_std().ok())
                })
        });
    let exhausted = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .is_some_and(|left| left <= 0);
    retry_after.or(exhausted.then_some(EXHAUSTED_PAUSE))
}

/// The wait before attempt `attempts + 1`: `base` doubling per attempt, capped at an hour,
/// with full jitter over its upper half so nodes and events do not retry in step.
fn backoff(base: Duration, attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    let ceiling = base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// Runs until `stop` turns true.
pub async fn run(gateway: Arc<Gateway>, cadence: Cadence, stop: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the HTTP client; pending fetches will wait");
            return;
        }
    };
    crate::schedule::every(cadence.interval, Duration::ZERO, stop, "fetch", || {
        fetch_due(&gateway, &client, cadence.retry_base)
    })
    .await;
}

/// Fetches every due pending event once (those whose channel may be called now); returns
/// how many were tried.
///
/// A channel is called as the partner's API docs ask: never over its published hourly
/// limit (`[partners.api] hourly_limit`, counted in the store so it holds across restarts
/// and nodes), and not while the API has said to wait (`Retry-After`, or
/// `X-RateLimit-Remaining: 0`).
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
        let Some((HandlerSpec::TourCms(api), _)) = gateway.partner_handler(&event.partner) else {
            let detail = format!("partner {} is not configured to fetch", event.partner);
            store
                .fetch_failed(event.id, event.attempts + 1, None, &detail)
                .await?;
            continue;
        };
        let Some((mapped, version)) = gateway.map_stored(event) else {
            continue;
        };
        let Mapped::Fetch(request) = mapped else {
            // The handler no longer asks for a fetch: apply what it says now.
            gateway.reapply(event, mapped, version).await?;
            continue;
        };
        let channel = format!(
            "{}/{}/{}",
            event.partner, api.marketplace_id, request.channel_id
        );
        // Several nodes find the same due events; the claim lets one of them fetch each,
        // and only then is a call counted against the channel's hour.
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(CLAIM_LEASE).unwrap_or_default();
        let claim = store
            .claim_fetch(event.id, now, lease_until, &channel, api.hourly_limit.get())
            .await?;
        // Over budget is not an attempt: it stays due, for a round when the channel may
        // be called.
        if claim == FetchClaim::Claimed {
            let call = Call {
                api: &api,
                request: &request,
                version,
                channel: &channel,
            };
            // One event's fault (even a bug) fails that event, never the fetcher.
            let fetched =
                crate::store::guarded(fetch_one(gateway, client, retry_base, event, call)).await;
            if let Err(StoreError::Panicked(message)) = fetched {
                let detail = format!("internal error while fetching: {message}");
                store
                    .fetch_failed(event.id, event.attempts + 1, None, &detail)
                    .await?;
            } else {
                fetched?;
            }
            tried += 1;
        }
    }
    Ok(tried)
}

/// [`tourcms::complete`], a panic inside it (a bug the answer's content set off) turned
/// into an invalid payload for that event, never the end of the fetcher.
fn complete_guarded(
    request: &crate::domain::FetchRequest,
    document: &[u8],
) -> Result<Mapped, tourcms::FetchError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tourcms::complete(request, document)
    }))
    .unwrap_or_else(|panic| {
        let message = crate::store::panic_message(panic.as_ref());
        tracing::error!(panic = %message, "reading a fetched booking panicked");
        Ok(Mapped::invalid(format!(
            "the fetched booking could not be read (internal error: {message})"
        )))
    })
}

/// One call to make for a pending event.
struct Call<'a> {
    api: &'a tourcms::TourCmsApi,
    request: &'a crate::domain::FetchRequest,
    version: Option<String>,
    channel: &'a str,
}

async fn fetch_one(
    gateway: &Gateway,
    client: &reqwest::Client,
    retry_base: Duration,
    event: &StoredEvent,
    call: Call<'_>,
) -> Result<(), StoreError> {
    let store = gateway.store();
    let attempts = event.attempts + 1;
    let (url, headers) =
        tourcms::show_booking_request(call.api, call.request, Utc::now().timestamp());
    let mut request = client.get(&url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let (fetched, wait) = match request.send().await {
        Ok(response) => {
            let wait = asked_to_wait(response.headers());
            if response.status().is_success() {
                let headers = response.headers().clone();
                let body = response.bytes().await;
                let fetched = match body {
                    Ok(body) => match gateway.decode_from(&event.partner, &body, &headers) {
                        Ok(document) => complete_guarded(call.request, &document),
                        Err(error) => Err(format!("reading the answer: {error}")),
                    },
                    Err(error) => Err(format!("reading the answer: {error}")),
                };
                (fetched, wait)
            } else {
                (Err(format!("TourCMS answered {}", response.status())), wait)
            }
        }
        Err(error) => (Err(format!("TourCMS unreachable: {error}")), None),
    };
    if let Some(wait) = wait {
        tracing::info!(
            channel = call.channel,
            wait_s = wait.as_secs(),
            "TourCMS asks us to wait"
        );
        let until = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        store.quiet_api(call.channel, until).await?;
    }
    match fetched {
        Ok(mapped) => {
            let result = gateway.reapply(event, mapped, call.version).await?;
            tracing::info!(event_id = event.id, attempts, outcome = %result.outcome, "fetched booking applied");
            Ok(())
        }
        Err(error) if attempts >= MAX_ATTEMPTS => {
            let detail = format!("gave up after {attempts} attempts; last: {error}");
            tracing::warn!(event_id = event.id, attempts, "fetch given up");
            store.fetch_failed(event.id, attempts, None, &detail).await
        }
        Err(error) => {
            let delay = backoff(retry_base, attempts).max(wait.unwrap_or_default());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_an_hour() {
        let base = Duration::from_secs(5);
        for attempts in 1..40 {
            let ceiling = base
                .saturating_mul(
                    2u32.saturating_pow(u32::try_from(attempts - 1).unwrap_or(20).min(20)),
                )
                .min(MAX_BACKOFF);
            let delay = backoff(base, attempts);
            assert!(
                delay <= ceiling && delay >= ceiling / 2,
                "{attempts}: {delay:?}"
            );
        }
        let spread: std::collections::BTreeSet<u128> =
            (0..20).map(|_| backoff(base, 5).as_millis()).collect();
        assert!(spread.len() > 1, "jittered");
    }

    #[test]
    fn retry_after_and_an_exhausted_limit_are_waits() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(asked_to_wait(&headers), None);
        headers.insert("x-ratelimit-remaining", "12".parse().expect("value"));
        assert_eq!(asked_to_wait(&headers), None);
        headers.insert("x-ratelimit-remaining", "0".parse().expect("value"));
        assert_eq!(asked_to_wait(&headers), Some(EXHAUSTED_PAUSE));
        headers.insert("retry-after", "120".parse().expect("value"));
        assert_eq!(asked_to_wait(&headers), Some(Duration::from_secs(120)));
    }
}
