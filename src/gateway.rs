//! The partner-event pipeline, free of HTTP: authenticate, store, map, apply, answer.
//!
//! [`Gateway::receive`] takes one raw delivery and returns a [`Receipt`]; the HTTP edge turns
//! receipts into status codes with one table. The order of the steps is the contract:
//! an unknown partner or bad credentials are refused (and recorded) before anything is
//! parsed; an accepted request is durably stored together with its outcome before the
//! receipt is returned, so a 2xx always means "committed".

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

use tracing::Instrument;

use crate::config::{Config, PartnerConfig, RateLimit};
use crate::domain::{Command, Mapped, Outcome, Reason};
use crate::partners::auth::{AuthFailure, AuthScheme, Presented};
use crate::partners::{Delivery, HandlerSpec, PartnerHandler};
use crate::replay_cache::ReplayCache;
use crate::store::body::StoredBody;
use crate::store::{
    Ingested, NewEvent, ReplayFilter, Reprocess, SaleKey, Store, StoreError, StoredEvent, Verdict,
};
use crate::telemetry;

/// The event type partners send to check connectivity; answered 200 with no processing.
pub const TEST_NOTIFICATION: &str = "webhooks.test_notification";

/// Headers worth keeping with a stored event. Credentials are never among them.
const KEPT_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "user-agent",
    "x-request-id",
    "x-forwarded-for",
    "x-real-ip",
    "x-lightspeed-idempotency-key",
];

/// Which of the contract's two routes a delivery came in on. They differ only in whether a
/// busy sale may be answered 409.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /Sales/partners/{partnerName}/events/{eventType}`
    Sales,
    /// `POST|GET /partners/{partnerName}/webhooks/callback/{eventType}`
    Callback,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Sales => "sales",
            Route::Callback => "callback",
        }
    }
}

/// One request as received, before anything is decided about it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub route: Route,
    pub partner: String,
    pub event_type: String,
    pub method: String,
    /// The request path as received.
    pub path: String,
    /// The raw query string, without the `?`.
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The raw body, shared (never copied) between the pipeline and the stored event.
    pub body: Bytes,
    pub received_at: DateTime<Utc>,
}

/// What the gateway decided, for the HTTP edge to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Committed with this outcome (`processed` or `ignored`).
    Accepted {
        event_id: i64,
        outcome: Outcome,
        reason: Option<Reason>,
        detail: Option<String>,
        /// The rule that matched its sale to a booking, if it did.
        match_rule: Option<&'static str>,
    },
    /// A test notification: answered at once.
    TestNotification { event_id: Option<i64> },
    /// Unknown partner or bad credentials.
    Refused {
        event_id: Option<i64>,
        reason: Reason,
    },
    /// The same sale is being processed by another request; retry later.
    Busy { event_id: Option<i64> },
    /// Too many deliveries from this partner: refused unread, retry after the wait.
    RateLimited { retry_after: Duration },
    /// Our own failure; the partner should retry.
    Failed {
        event_id: Option<i64>,
        reason: Reason,
    },
}

impl Receipt {
    /// Its event id, outcome and reason, as recorded.
    fn summary(&self) -> (Option<i64>, &'static str, Option<Reason>) {
        match self {
            Receipt::Accepted {
                event_id,
                outcome,
                reason,
                ..
            } => (Some(*event_id), outcome.as_str(), *reason),
            Receipt::TestNotification { event_id } => (
                *event_id,
                Outcome::Ignored.as_str(),
                Some(Reason::TestNotification),
            ),
            Receipt::Refused { event_id, reason } => {
                (*event_id, Outcome::Rejected.as_str(), Some(*reason))
            }
            Receipt::Busy { event_id } => (
                *event_id,
                Outcome::Rejected.as_str(),
                Some(Reason::SaleInFlight),
            ),
            Receipt::Failed { event_id, reason } => {
                (*event_id, Outcome::Failed.as_str(), Some(*reason))
            }
            Receipt::RateLimited { .. } => {
                (None, Outcome::Rejected.as_str(), Some(Reason::RateLimited))
            }
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ReplaySummary {
    /// Events run through their partner's current handler again.
    pub replayed: usize,
    /// Events of partners no longer configured.
    pub skipped: usize,
    /// Events that were `failed` or `ignored` before and are `processed` now.
    pub recovered: usize,
    /// How many replayed events ended in each outcome.
    pub outcomes: BTreeMap<String, usize>,
}

/// How many stored events a replay reads at a time.
const REPLAY_PAGE: i64 = 500;

/// How long a busy sale is waited for on the callback route, which has no 409 in the contract.
const CALLBACK_LOCK_WAIT: Duration = Duration::from_secs(30);

/// A replay page being committed.
struct Committing {
    /// Each event's outcome before the replay.
    was: Vec<Outcome>,
    commit: tokio::task::JoinHandle<Result<Vec<Result<Ingested, StoreError>>, StoreError>>,
}

impl Committing {
    /// Waits for the page's commit and counts what became of each event.
    async fn tally(
        self,
        summary: &mut ReplaySummary,
        progress: &mut impl FnMut(),
    ) -> Result<(), StoreError> {
        let results = self
            .commit
            .await
            .map_err(|e| StoreError::Unsupported(format!("replay task: {e}")))?;
        let results = match results {
            Ok(results) => results,
            Err(StoreError::SaleBusy) => {
                let busy = self.was.len();
                *summary
                    .outcomes
                    .entry(Reason::SaleInFlight.as_str().to_owned())
                    .or_default() += busy;
                (0..busy).for_each(|_| progress());
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        for (result, was) in results.into_iter().zip(self.was) {
            let outcome = match result {
                Ok(ingested) => {
                    summary.replayed += 1;
                    if ingested.outcome == Outcome::Processed
                        && matches!(was, Outcome::Failed | Outcome::Ignored | Outcome::Pending)
                    {
                        summary.recovered += 1;
                    }
                    ingested.outcome.as_str()
                }
                Err(error) => {
                    tracing::error!(error = %error, "an event could not be replayed");
                    Reason::StoreError.as_str()
                }
            };
            *summary.outcomes.entry(outcome.to_owned()).or_default() += 1;
            progress();
        }
        Ok(())
    }
}

/// A rate limiter for one partner (or for every unknown partner name together).
type Limiter = governor::DefaultDirectRateLimiter;

fn limiter(limit: RateLimit) -> Limiter {
    governor::RateLimiter::direct(
        governor::Quota::per_second(limit.per_second).allow_burst(limit.burst),
    )
}

/// How long to wait before `limiter` lets a request through, if it does not now.
fn throttled(limiter: &Limiter) -> Option<Duration> {
    use governor::clock::Clock;
    limiter
        .check()
        .err()
        .map(|not_until| not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
}

/// A configured partner, ready to authenticate and map deliveries.
struct Partner {
    spec: HandlerSpec,
    handler: Arc<dyn PartnerHandler>,
    auth: AuthScheme,
    /// `None`: not rate limited.
    limiter: Option<Limiter>,
}

impl std::fmt::Debug for Partner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partner")
            .field("spec", &self.spec)
            .field("auth", &self.auth.name())
            .field("rate_limited", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

/// The pipeline. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Gateway {
    partners: HashMap<String, Partner>,
    store: Arc<dyn Store>,
    public_url: String,
    sale_lock_wait: Duration,
    /// Deliveries to partner names nobody configured share one limit: refusing them costs a
    /// write each, which a flood must not turn into a full disk.
    unknown_partners: Limiter,
    replays: ReplayCache,
}

impl Gateway {
    pub fn new(config: Config, store: Arc<dyn Store>) -> Gateway {
        let partners = config
            .partners
            .into_iter()
            .map(
                |PartnerConfig {
                     name,
                     handler,
                     auth,
                     rate_limit,
                 }| {
                    let partner = Partner {
                        handler: handler.build(),
                        spec: handler,
                        auth,
                        limiter: rate_limit.map(limiter),
                    };
                    (name, partner)
                },
            )
            .collect();
        Gateway {
            partners,
            store,
            public_url: config.public_url,
            sale_lock_wait: config.sale_lock_wait,
            unknown_partners: limiter(crate::config::DEFAULT_RATE_LIMIT),
            replays: ReplayCache::new(config.replay_window),
        }
    }

    /// The configured partners' names and handlers, by name.
    pub fn partners(&self) -> Vec<(&str, &'static str)> {
        let mut partners: Vec<(&str, &'static str)> = self
            .partners
            .iter()
            .map(|(name, partner)| (name.as_str(), partner.spec.name()))
            .collect();
        partners.sort_unstable();
        partners
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs one delivery through the pipeline, in a span naming its partner, event id and
    /// outcome, and counts it. Never panics on any input.
    pub async fn receive(&self, inbound: Inbound) -> Receipt {
        let partner = if self.partners.contains_key(&inbound.partner) {
            inbound.partner.clone()
        } else {
            "unknown".to_owned()
        };
        let span = tracing::info_span!(
            "event",
            partner = %partner,
            event_type = %inbound.event_type,
            event_id = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let receipt = self.run(inbound).instrument(span.clone()).await;
        let (event_id, outcome, reason) = receipt.summary();
        if let Some(event_id) = event_id {
            span.record("event_id", event_id);
        }
        span.record("outcome", outcome);
        metrics::counter!(telemetry::EVENTS, "partner" => partner.clone(), "outcome" => outcome,
            "reason" => reason.map_or("", Reason::as_str))
        .increment(1);
        metrics::histogram!(telemetry::EVENT_SECONDS, "partner" => partner)
            .record(started.elapsed().as_secs_f64());
        if let Receipt::Accepted {
            match_rule: Some(rule),
            ..
        } = &receipt
        {
            metrics::counter!(telemetry::MATCHES, "rule" => *rule).increment(1);
        }
        receipt
    }

    async fn run(&self, inbound: Inbound) -> Receipt {
        let Some(partner) = self.partners.get(&inbound.partner) else {
            if let Some(retry_after) = throttled(&self.unknown_partners) {
                return Receipt::RateLimited { retry_after };
            }
            let event = self.new_event(&inbound, None, None);
            let event_id = self
                .record(
                    event,
                    Outcome::Rejected,
                    Reason::UnknownPartner,
                    "no such partner is configured",
                )
                .await;
            return Receipt::Refused {
                event_id,
                reason: Reason::UnknownPartner,
            };
        };
        // Before authentication, so a flood of bad signatures is limited too.
        if let Some(retry_after) = partner.limiter.as_ref().and_then(throttled) {
            tracing::warn!(partner = %inbound.partner, "delivery rate limited");
            return Receipt::RateLimited { retry_after };
        }
        let event = self.new_event(&inbound, Some(partner), Some(partner.spec.name()));
        if inbound.event_type == TEST_NOTIFICATION {
            let event_id = self
                .record(
                    event,
                    Outcome::Ignored,
                    Reason::TestNotification,
                    "test notification, not processed",
                )
                .await;
            return Receipt::TestNotification { event_id };
        }
        let url = format!(
            "{}{}{}",
            self.public_url,
            inbound.path,
            inbound
                .query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default()
        );
        let presented = Presented {
            headers: &inbound.headers,
            query: inbound.query.as_deref(),
            body: &inbound.body,
            url: &url,
            received_at: inbound.received_at.timestamp(),
        };
        if let Err(failure) = partner.auth.verify(presented) {
            let reason = match failure {
                AuthFailure::Missing => Reason::MissingCredentials,
                AuthFailure::Invalid => Reason::BadSignature,
                AuthFailure::Expired => Reason::ExpiredSignature,
            };
            tracing::warn!(partner = %inbound.partner, %reason, "delivery refused");
            let event_id = self
                .record(event, Outcome::Rejected, reason, &failure.to_string())
                .await;
            return Receipt::Refused { event_id, reason };
        }
        let (mapped, handler_version) = map_guarded(
            partner.handler.as_ref(),
            Delivery {
                event_type: &inbound.event_type,
                headers: &inbound.headers,
                query: inbound.query.as_deref(),
                body: &inbound.body,
            },
        );
        let mut event = event;
        event.handler_version = handler_version;
        let replay = (!partner.auth.carries_timestamp()).then(|| ReplayCache::key(&event));
        if let Some(seen) = replay
            .as_ref()
            .and_then(|key| self.replays.seen(key, Instant::now()))
        {
            let detail = format!(
                "the same delivery as event {}, {} s earlier; not processed again",
                seen.event_id,
                seen.ago.as_secs()
            );
            let event_id = self
                .record(event, Outcome::Ignored, Reason::DuplicateEvent, &detail)
                .await;
            return match event_id {
                Some(event_id) => Receipt::Accepted {
                    event_id,
                    outcome: Outcome::Ignored,
                    reason: Some(Reason::DuplicateEvent),
                    detail: Some(detail),
                    match_rule: None,
                },
                None => Receipt::Failed {
                    event_id: None,
                    reason: Reason::StoreError,
                },
            };
        }
        let lock_keys = lock_keys(&inbound.partner, &mapped);
        let lock_wait = match inbound.route {
            Route::Sales => self.sale_lock_wait,
            Route::Callback => CALLBACK_LOCK_WAIT.max(self.sale_lock_wait),
        };
        match self
            .store
            .ingest(event.clone(), mapped, &lock_keys, lock_wait)
            .await
        {
            Ok(ingested) if ingested.outcome == Outcome::Rejected => Receipt::Refused {
                event_id: Some(ingested.event_id),
                reason: ingested.reason.unwrap_or(Reason::BadSignature),
            },
            Ok(ingested) if ingested.outcome == Outcome::Failed => Receipt::Failed {
                event_id: Some(ingested.event_id),
                reason: ingested.reason.unwrap_or(Reason::ProcessingError),
            },
            Ok(ingested) => {
                // Only what was applied: a delivery ignored for the state it met (an unknown
                // location, an integration switched off) must apply when sent again later.
                if let (Some(key), Outcome::Processed) = (replay, ingested.outcome) {
                    self.replays
                        .remember(key, ingested.event_id, Instant::now());
                }
                tracing::info!(
                    partner = %inbound.partner,
                    event_id = ingested.event_id,
                    outcome = %ingested.outcome,
                    reason = ingested.reason.map(Reason::as_str),
                    "event stored"
                );
                Receipt::Accepted {
                    event_id: ingested.event_id,
                    outcome: ingested.outcome,
                    reason: ingested.reason,
                    detail: ingested.detail,
                    match_rule: ingested.match_rule,
                }
            }
            Err(StoreError::SaleBusy) => {
                let event_id = self
                    .record(
                        event,
                        Outcome::Rejected,
                        Reason::SaleInFlight,
                        "the same sale is being processed",
                    )
                    .await;
                match inbound.route {
                    Route::Sales => Receipt::Busy { event_id },
                    Route::Callback => Receipt::Failed {
                        event_id,
                        reason: Reason::SaleInFlight,
                    },
                }
            }
            Err(error) => {
                tracing::error!(partner = %inbound.partner, error = %error, source = ?std::error::Error::source(&error), "ingest failed");
                let event_id = self
                    .record(
                        event,
                        Outcome::Failed,
                        Reason::StoreError,
                        "the event could not be processed",
                    )
                    .await;
                Receipt::Failed {
                    event_id,
                    reason: Reason::StoreError,
                }
            }
        }
    }

    /// How many stored events `filter` selects for replay.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn count_replayable(&self, filter: &ReplayFilter) -> Result<i64, StoreError> {
        self.store.count_replayable(filter).await
    }

    /// Runs the stored events `filter` selects through their partner's *current* handler
    /// again, oldest first, calling `progress` after each. Safe to repeat: sale snapshots
    /// apply only when newer, so events already processed converge to the same state, and
    /// events that failed or were ignored under an older handler are recovered.
    ///
    /// Events go to the store a page at a time, one transaction per page; the next page is
    /// read and mapped while the previous one commits.
    ///
    /// # Errors
    /// When the store fails as a whole; pages committed before that stay done. An event that
    /// fails alone is counted under `store_error` and the replay goes on.
    pub async fn replay(
        &self,
        filter: &ReplayFilter,
        mut progress: impl FnMut(),
    ) -> Result<ReplaySummary, StoreError> {
        let mut summary = ReplaySummary::default();
        let mut after = 0;
        let mut committing: Option<Committing> = None;
        loop {
            let page = self.store.replayable(filter, after, REPLAY_PAGE).await?;
            let next = self.map_page(&page, &mut summary, &mut progress);
            if let Some(previous) = committing.take() {
                previous.tally(&mut summary, &mut progress).await?;
            }
            let Some(last) = page.last() else { break };
            after = last.id;
            let store = Arc::clone(&self.store);
            let (batch, was) = next;
            committing = Some(Committing {
                was,
                commit: tokio::spawn(async move {
                    store.reprocess_batch(batch, CALLBACK_LOCK_WAIT).await
                }),
            });
        }
        Ok(summary)
    }

    /// Maps a page of stored events with their partners' current handlers; events of
    /// partners no longer configured are skipped. Returns the batch and each event's
    /// outcome before the replay.
    fn map_page(
        &self,
        page: &[StoredEvent],
        summary: &mut ReplaySummary,
        progress: &mut impl FnMut(),
    ) -> (Vec<Reprocess>, Vec<Outcome>) {
        let mut batch = Vec::with_capacity(page.len());
        let mut was = Vec::with_capacity(page.len());
        for event in page {
            let Some(partner) = self.partners.get(&event.partner) else {
                summary.skipped += 1;
                progress();
                continue;
            };
            let (mapped, handler_version) = self.map_stored(&partner.handler, event);
            batch.push(Reprocess {
                event_id: event.id,
                lock_keys: lock_keys(&event.partner, &mapped),
                mapped,
                handler_version,
            });
            was.push(Outcome::parse(&event.outcome).unwrap_or(Outcome::Pending));
        }
        (batch, was)
    }

    /// A configured partner's handler, with its spec.
    pub(crate) fn partner_handler(
        &self,
        name: &str,
    ) -> Option<(&HandlerSpec, &Arc<dyn PartnerHandler>)> {
        self.partners.get(name).map(|p| (&p.spec, &p.handler))
    }

    /// Maps a stored event again with `handler`, from its stored headers, query and body.
    pub(crate) fn map_stored(
        &self,
        handler: &Arc<dyn PartnerHandler>,
        event: &StoredEvent,
    ) -> (Mapped, Option<String>) {
        let mut headers = HeaderMap::new();
        for (name, value) in &event.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                http::HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        map_guarded(
            handler.as_ref(),
            Delivery {
                event_type: &event.event_type,
                headers: &headers,
                query: event.query.as_deref(),
                body: &event.body,
            },
        )
    }

    /// Applies a fresh mapping to a stored event and records its new outcome.
    pub(crate) async fn reapply(
        &self,
        event: &StoredEvent,
        mapped: Mapped,
        version: Option<String>,
    ) -> Result<Ingested, StoreError> {
        let keys = lock_keys(&event.partner, &mapped);
        self.store
            .reprocess(event.id, mapped, version, &keys, CALLBACK_LOCK_WAIT)
            .await
    }

    /// Records a delivery whose body exceeded the limit (answered 413): its metadata only,
    /// so the operator sees that the partner sent something we refused.
    pub async fn refuse_oversized(&self, mut inbound: Inbound, limit: usize) -> Option<i64> {
        inbound.body = Bytes::new();
        let partner = self.partners.get(&inbound.partner);
        let event = self.new_event(&inbound, partner, partner.map(|p| p.spec.name()));
        let detail = format!("body over the {limit}-byte limit; not stored");
        self.record(event, Outcome::Rejected, Reason::BodyTooLarge, &detail)
            .await
    }

    /// Stores an event with an outcome decided without processing. Best effort: a store
    /// failure here is logged, and the partner's answer does not depend on it.
    async fn record(
        &self,
        event: NewEvent,
        outcome: Outcome,
        reason: Reason,
        detail: &str,
    ) -> Option<i64> {
        let verdict = Verdict {
            outcome,
            reason: Some(reason),
            detail: Some(detail.to_owned()),
        };
        match self.store.record(event, verdict).await {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::error!(error = %error, source = ?std::error::Error::source(&error), "could not record an event");
                None
            }
        }
    }

    /// The event as it will be stored: selected headers only, secret query values masked.
    fn new_event(
        &self,
        inbound: &Inbound,
        partner: Option<&Partner>,
        handler: Option<&str>,
    ) -> NewEvent {
        let auth = partner.map(|p| &p.auth);
        NewEvent {
            received_at: inbound.received_at,
            partner: inbound.partner.clone(),
            route: inbound.route.as_str(),
            method: inbound.method.clone(),
            event_type: inbound.event_type.clone(),
            path: inbound.path.clone(),
            query: inbound
                .query
                .as_deref()
                .map(|q| mask_query(q, auth.and_then(AuthScheme::secret_param))),
            headers: kept_headers(&inbound.headers, auth.and_then(AuthScheme::secret_header)),
            body_sha256: hex::encode(Sha256::digest(&inbound.body)),
            body: StoredBody::encode(&inbound.body),
            handler: handler.map(str::to_owned),
            handler_version: None,
        }
    }
}

/// The in-flight lock keys of every sale a mapping touches.
fn lock_keys(partner: &str, mapped: &Mapped) -> Vec<SaleKey> {
    let groups: Vec<(&String, &Vec<Command>)> = match mapped {
        Mapped::Apply {
            location_id,
            commands,
        } => vec![(location_id, commands)],
        Mapped::Batch(groups) => groups.iter().map(|(l, c)| (l, c)).collect(),
        _ => Vec::new(),
    };
    groups
        .into_iter()
        .flat_map(|(location_id, commands)| {
            commands
                .iter()
                .filter_map(Command::lock_subject)
                .map(move |subject| SaleKey {
                    partner: partner.to_owned(),
                    location_id: location_id.clone(),
                    external_id: subject.into_owned(),
                })
        })
        .collect()
}

fn kept_headers(headers: &HeaderMap, secret: Option<&HeaderName>) -> BTreeMap<String, String> {
    headers
        .keys()
        .filter(|name| KEPT_HEADERS.contains(&name.as_str()) || name.as_str().contains("signature"))
        .filter(|name| Some(*name) != secret)
        .map(|name| {
            let values: Vec<String> = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (name.as_str().to_owned(), values.join(", "))
        })
        .collect()
}

/// The query string with the value of `secret_param` replaced, so stored events hold no
/// credentials.
fn mask_query(query: &str, secret_param: Option<&str>) -> String {
    let Some(secret_param) = secret_param else {
        return query.to_owned();
    };
    query
        .split('&')
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(key, _)| key);
            let decoded: String = form_urlencoded::parse(key.as_bytes())
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.into_owned()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            if decoded == secret_param {
                format!("{key}=[redacted]")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Maps a delivery, turning a handler's panic into a `failed` event instead of a dropped
/// connection. Handlers never panic by contract (fuzzed and property-tested); this is the
/// net under that contract: the raw event is still stored, the partner is asked to retry,
/// and a fixed handler recovers the event by replay.
fn map_guarded(handler: &dyn PartnerHandler, delivery: Delivery<'_>) -> (Mapped, Option<String>) {
    let mapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handler.map_versioned(delivery)
    }));
    mapped.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // The message stays in the stored event (operators only): it may quote the payload.
        tracing::error!(handler = ?handler, "a partner handler panicked; the event is failed");
        let detail = format!(
            "the handler panicked ({message}); the event is kept: replay it once the \
             handler is fixed"
        );
        let mapped = Mapped::Fail {
            reason: Reason::ProcessingError,
            detail,
        };
        (mapped, None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler with a bug, to prove the net under the never-panic contract holds.
    #[derive(Debug)]
    struct Panicking;

    impl PartnerHandler for Panicking {
        fn map(&self, delivery: Delivery<'_>) -> Mapped {
            let total: u8 = delivery.body.iter().sum();
            panic!("overflowed at {total}");
        }
    }

    #[test]
    fn a_panicking_handler_fails_the_event_instead_of_the_request() {
        let headers = HeaderMap::new();
        let delivery = Delivery {
            event_type: "order.updated",
            headers: &headers,
            query: None,
            body: b"\x01\x02",
        };
        let (mapped, version) = map_guarded(&Panicking, delivery);
        assert_eq!(version, None);
        match mapped {
            Mapped::Fail { reason, detail } => {
                assert_eq!(reason, Reason::ProcessingError);
                assert!(detail.contains("overflowed at 3"), "{detail}");
            }
            other => panic!("expected a failed event, got {other:?}"),
        }
    }

    #[test]
    fn secret_query_parameters_are_masked_and_others_kept() {
        assert_eq!(
            mask_query("a=1&token=s3cret&b=2", Some("token")),
            "a=1&token=[redacted]&b=2"
        );
        assert_eq!(mask_query("a=1&token=s3cret", None), "a=1&token=s3cret");
        assert_eq!(
            mask_query("tok%65n=s3cret", Some("token")),
            "tok%65n=[redacted]"
        );
    }

    #[test]
    fn credentials_are_never_kept_but_signatures_are() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer t".parse().expect("header"));
        headers.insert("x-api-secret", "k".parse().expect("header"));
        headers.insert("x-partner-signature", "abc".parse().expect("header"));
        headers.insert("content-type", "application/json".parse().expect("header"));
        let secret = HeaderName::from_static("x-api-secret");
        let kept = kept_headers(&headers, Some(&secret));
        assert_eq!(
            kept.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["content-type", "x-partner-signature"]
        );
    }
}
