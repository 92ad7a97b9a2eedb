//! The dispatcher every node runs: queue what was committed, claim what is due (each message
//! by one node, a booking's messages one at a time), send, record, again.
//!
//! An attempt succeeds on any 2xx answer. Otherwise it is tried again after an exponential
//! back-off with jitter (`webhooks.retry_base_ms` doubling up to `retry_max_ms`; a receiver's
//! `Retry-After` is honoured within those bounds) until the message is `retry_for_seconds` old,
//! when it is given up as `failed` and the booking's next message goes. A subscription whose
//! every attempt failed for `disable_after_seconds` is disabled; its messages wait for it.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder as _;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tokio::sync::watch;

use super::sign;
use super::target::{self, Ranges, Resolver};
use crate::config::WebhookSettings;
use crate::store::changes::message_id;
use crate::store::{Attempt, ClaimedMessage, Store, StoreError};

/// The dispatcher of one node.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    settings: WebhookSettings,
    ranges: Arc<Ranges>,
}

/// Most bytes of a receiver's error answer kept with the message.
const KEPT_ERROR_BYTES: usize = 200;

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
            store,
            client,
            settings,
            ranges,
        })
    }

    /// The ranges subscriptions' URLs are checked against.
    pub fn ranges(&self) -> &Ranges {
        &self.ranges
    }

    /// Runs rounds every `poll_interval` until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            if let Err(error) = crate::store::guarded(self.round()).await {
                tracing::warn!(%error, "webhook round failed; the next round tries again");
            }
        }
    }

    /// Queues newly committed changes, then sends every message due, `concurrency` at a
    /// time. Returns how many attempts were made.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn round(&self) -> Result<usize, StoreError> {
        self.store.queue_webhooks(Utc::now()).await?;
        let mut attempts = 0;
        let batch = i64::try_from(self.settings.concurrency).unwrap_or(16);
        loop {
            let now = Utc::now();
            let lease = self
                .settings
                .timeout
                .saturating_mul(2)
                .saturating_add(Duration::from_secs(30));
            let lease_until = crate::domain::time::plus(
                now,
                chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX),
            );
            let claimed = self.store.claim_webhooks(now, lease_until, batch).await?;
            let count = claimed.len();
            let results = join_all(claimed.into_iter().map(|m| async move {
                let attempt = self.attempt(&m).await;
                (m, attempt)
            }))
            .await;
            for (message, attempt) in results {
                let outcome = match &attempt {
                    Attempt::Delivered { .. } => "delivered",
                    Attempt::Failed { retry_at: None, .. } => "failed",
                    Attempt::Failed { .. } => "retrying",
                };
                metrics::counter!(crate::telemetry::WEBHOOK_DELIVERIES, "outcome" => outcome)
                    .increment(1);
                self.store
                    .finish_webhook(message, attempt, Utc::now(), self.settings.disable_after)
                    .await?;
            }
            attempts += count;
            if i64::try_from(count).unwrap_or(0) < batch {
                return Ok(attempts);
            }
        }
    }

    /// Sends one message once.
    async fn attempt(&self, message: &ClaimedMessage) -> Attempt {
        let now = Utc::now();
        let failed = |status: Option<i64>, error: String, wait: Option<Duration>| Attempt::Failed {
            status,
            error,
            retry_at: self.retry_at(message, now, wait),
        };
        if let Err(error) = target::check(&message.url, &self.ranges) {
            return failed(None, error.to_string(), None);
        }
        let id = message_id(message.seq);
        let timestamp = now.timestamp();
        let signature = match sign::signature(&message.secret, &id, timestamp, &message.payload) {
            Ok(signature) => signature,
            Err(error) => return failed(None, error.to_string(), None),
        };
        let sent = self
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
        let retry_for = chrono::Duration::from_std(self.settings.retry_for).ok()?;
        if now.signed_duration_since(message.created_at) >= retry_for {
            return None;
        }
        let nth = usize::try_from(message.attempts).unwrap_or(usize::MAX);
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.settings.retry_base)
            .with_max_delay(self.settings.retry_max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(nth.min(64))
            .unwrap_or(self.settings.retry_max);
        let wait = asked.map_or(backoff, |asked| {
            asked.clamp(self.settings.retry_base, self.settings.retry_max)
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
