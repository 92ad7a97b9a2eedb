//! The dispatcher every node runs: queue what was committed, claim what is due (each message
//! by one node, a booking's messages one at a time), send, record, again.
//!
//! An attempt succeeds on any 2xx answer. Otherwise it is tried again after an exponential
//! back-off with jitter (`webhooks.retry_base_ms` doubling up to `retry_max_ms`; a receiver's
//! `Retry-After` is honoured within those bounds) until the message is `retry_for_seconds` old,
//! when it is given up as `failed` and the booking's next message goes. A subscription whose
//! every attempt failed for `disable_after_seconds` is disabled; its messages wait for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::BackoffBuilder as _;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::{Notify, Semaphore, watch};

use super::sign;
use super::target::{self, Ranges, Resolver};
use crate::config::WebhookSettings;
use crate::store::changes::message_id;
use crate::store::{Attempt, ClaimedMessage, Store, StoreError};

/// The dispatcher of one node. Cheap to clone: every attempt runs as its own task.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    settings: WebhookSettings,
    ranges: Arc<Ranges>,
    /// Attempts in flight on this node, at most `concurrency`.
    slots: Arc<Semaphore>,
    /// When each attempt in flight began, per subscription: at most
    /// [`Inner::per_subscription`] each, and subscriptions slow to answer hold at most half
    /// the slots together, so receivers that hang never take every slot.
    busy: Mutex<HashMap<i64, Vec<Instant>>>,
    /// Attempts slow to answer (past [`SLOW`]) give their slot back and go on under one of
    /// these: receivers that hang never keep the others waiting.
    slow_lane: Arc<Semaphore>,
    /// Woken when an attempt ends or turns slow, so its slot is used again at once.
    freed: Notify,
}

/// Most bytes of a receiver's error answer kept with the message.
const KEPT_ERROR_BYTES: usize = 200;

/// An attempt in flight this long makes its subscription slow.
const SLOW: Duration = Duration::from_secs(1);

impl Inner {
    /// A quarter of the node's slots, at least one.
    fn per_subscription(&self) -> usize {
        (self.settings.concurrency / 4).max(1)
    }

    /// The subscriptions no more attempts may start for now: those at their share, and, once
    /// slow ones hold half the slots, every slow one.
    fn saturated(&self, busy: &HashMap<i64, Vec<Instant>>) -> Vec<i64> {
        let slow = |starts: &Vec<Instant>| starts.iter().any(|s| s.elapsed() >= SLOW);
        let slow_slots: usize = busy.values().filter(|s| slow(s)).map(Vec::len).sum();
        let slow_full = slow_slots.saturating_mul(2) >= self.settings.concurrency;
        busy.iter()
            .filter(|(_, starts)| {
                starts.len() >= self.per_subscription() || (slow_full && slow(starts))
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

impl Dispatcher {
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub fn new(store: Arc<dyn Store>, settings: WebhookSettings) -> Result<Dispatcher, String> {
        let ranges = Arc::new(Ranges {
            denied: settings.denied.clone(),
            allowed: settings.allowed.clone(),
        });
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(Resolver::new(Arc::clone(&ranges))))
            .user_agent(concat!("diarysync-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Dispatcher {
            inner: Arc::new(Inner {
                store,
                client,
                slots: Arc::new(Semaphore::new(settings.concurrency)),
                slow_lane: Arc::new(Semaphore::new(settings.concurrency.saturating_mul(4))),
                settings,
                ranges,
                busy: Mutex::new(HashMap::new()),
                freed: Notify::new(),
            }),
        })
    }

    /// The ranges subscriptions' URLs are checked against.
    pub fn ranges(&self) -> &Ranges {
        &self.inner.ranges
    }

    /// Runs rounds every `poll_interval`, and whenever an attempt ends, until `stop` turns
    /// true. Attempts still in flight then end on their own (or at the process's end: their
    /// claims lapse and another node sends them again).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.inner.settings.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // New changes are queued on the period's ticks; an attempt's end only frees a
            // slot for what is already queued.
            let queue = tokio::select! {
                _ = tick.tick() => true,
                () = self.inner.freed.notified() => false,
                _ = stop.changed() => return,
            };
            if *stop.borrow() {
                return;
            }
            if let Err(error) = crate::store::guarded(self.round(queue)).await {
                tracing::warn!(%error, "webhook round failed; the next round tries again");
            }
        }
    }

    /// Queues newly committed changes (with `queue`), then starts an attempt for every
    /// message due, as far as free slots allow; each attempt records its own end. Returns how
    /// many started.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn round(&self, queue: bool) -> Result<usize, StoreError> {
        let inner = &self.inner;
        if queue {
            inner.store.queue_webhooks(Utc::now()).await?;
        }
        let mut started = 0;
        loop {
            let free = inner.slots.available_permits();
            if free == 0 {
                return Ok(started);
            }
            let full: Vec<i64> = {
                let busy = inner.busy.lock().unwrap_or_else(PoisonError::into_inner);
                inner.saturated(&busy)
            };
            let now = Utc::now();
            let lease = inner
                .settings
                .timeout
                .saturating_mul(2)
                .saturating_add(Duration::from_secs(30));
            let lease_until = crate::domain::time::plus(
                now,
                chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX),
            );
            let want = i64::try_from(free).unwrap_or(16);
            let claimed = inner
                .store
                .claim_webhooks(now, lease_until, want, full)
                .await?;
            let count = claimed.len();
            // One claim may bring more of a subscription's messages than its share: those
            // are let go at once, for this node's next round or another node.
            let mut over_share = Vec::new();
            for message in claimed {
                {
                    let mut busy = inner.busy.lock().unwrap_or_else(PoisonError::into_inner);
                    if inner.saturated(&busy).contains(&message.subscription_id) {
                        over_share.push(message.row);
                        continue;
                    }
                    busy.entry(message.subscription_id)
                        .or_default()
                        .push(Instant::now());
                }
                let Ok(slot) = Arc::clone(&inner.slots).try_acquire_owned() else {
                    // Only this loop takes slots, and it claimed no more than were free.
                    over_share.push(message.row);
                    self.release_share(message.subscription_id);
                    continue;
                };
                let this = self.clone();
                tokio::spawn(async move {
                    let attempt = this.send_and_record(message);
                    tokio::pin!(attempt);
                    let mut slot = Some(slot);
                    tokio::select! {
                        () = &mut attempt => {}
                        () = tokio::time::sleep(SLOW) => {
                            let slow = Arc::clone(&this.inner.slow_lane).try_acquire_owned().ok();
                            if slow.is_some() {
                                drop(slot.take());
                                this.inner.freed.notify_one();
                            }
                            attempt.await;
                            drop(slow);
                        }
                    }
                    drop(slot);
                    this.inner.freed.notify_one();
                });
                started += 1;
            }
            if !over_share.is_empty() {
                inner.store.release_webhooks(over_share).await?;
                return Ok(started);
            }
            if i64::try_from(count).unwrap_or(0) < want {
                return Ok(started);
            }
        }
    }

    /// One attempt of `subscription` fewer in flight (the oldest: they end in about the
    /// order they began, and only slowness reads the times).
    fn release_share(&self, subscription: i64) {
        let mut busy = self
            .inner
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(starts) = busy.get_mut(&subscription) {
            if !starts.is_empty() {
                starts.remove(0);
            }
            if starts.is_empty() {
                busy.remove(&subscription);
            }
        }
    }

    /// One attempt of `message`, and its end recorded; a failure to record is logged (the
    /// claim lapses and the message is sent again: at least once).
    async fn send_and_record(&self, message: ClaimedMessage) {
        let inner = &self.inner;
        let subscription = message.subscription_id;
        let attempt = self.attempt(&message).await;
        let outcome = match &attempt {
            Attempt::Delivered { .. } => "delivered",
            Attempt::Failed { retry_at: None, .. } => "failed",
            Attempt::Failed { .. } => "retrying",
        };
        metrics::counter!(crate::telemetry::WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
        let recorded = inner
            .store
            .finish_webhook(message, attempt, Utc::now(), inner.settings.disable_after)
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, subscription, "a webhook attempt's end was not recorded; it will be sent again");
        }
        self.release_share(subscription);
    }

    /// Sends one message once.
    async fn attempt(&self, message: &ClaimedMessage) -> Attempt {
        let now = Utc::now();
        let failed = |status: Option<i64>, error: String, wait: Option<Duration>| Attempt::Failed {
            status,
            error,
            retry_at: self.retry_at(message, now, wait),
        };
        if let Err(error) = target::check(&message.url, &self.inner.ranges) {
            return failed(None, error.to_string(), None);
        }
        let id = message_id(message.seq);
        let timestamp = now.timestamp();
        let signature = match sign::signature(&message.secret, &id, timestamp, &message.payload) {
            Ok(signature) => signature,
            Err(error) => return failed(None, error.to_string(), None),
        };
        let sent = self
            .inner
            .client
            .post(message.url.as_str())
            .header("content-type", "application/json")
            .header("webhook-id", id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(message.payload.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return failed(None, describe(&error), None),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered {
                status: i64::from(status.as_u16()),
            };
        }
        let wait = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        let mut error = format!("HTTP {}", status.as_u16());
        if !body.trim().is_empty() {
            let kept: String = body.chars().take(KEPT_ERROR_BYTES).collect();
            error = format!("{error}: {}", kept.trim());
        }
        failed(Some(i64::from(status.as_u16())), error, wait)
    }

    /// When a message that just failed is tried again: after the back-off for its attempt
    /// count (or the receiver's `Retry-After`, within the back-off's bounds); `None` once it
    /// is older than the retry period.
    fn retry_at(
        &self,
        message: &ClaimedMessage,
        now: DateTime<Utc>,
        asked: Option<Duration>,
    ) -> Option<DateTime<Utc>> {
        let retry_for = chrono::Duration::from_std(self.inner.settings.retry_for).ok()?;
        if now.signed_duration_since(message.created_at) >= retry_for {
            return None;
        }
        let nth = usize::try_from(message.attempts).unwrap_or(usize::MAX);
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.inner.settings.retry_base)
            .with_max_delay(self.inner.settings.retry_max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(nth.min(64))
            .unwrap_or(self.inner.settings.retry_max);
        let wait = asked.map_or(backoff, |asked| {
            asked.clamp(
                self.inner.settings.retry_base,
                self.inner.settings.retry_max,
            )
        });
        Some(crate::domain::time::plus(
            now,
            chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
        ))
    }
}

/// An error of the HTTP client in words for the operator, its causes included.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(KEPT_ERROR_BYTES * 2).collect()
}
