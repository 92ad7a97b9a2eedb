//! The partner-event pipeline, free of HTTP: authenticate, store, map, apply, answer.
//!
//! [`Gateway::receive`] takes one raw delivery and returns a [`Receipt`]; the HTTP edge turns
//! receipts into status codes with one table. The order of the steps is the contract:
//! an unknown partner or bad credentials are refused (and recorded) before anything is
//! parsed; an accepted request is durably stored together with its outcome before the
//! receipt is returned, so a 2xx always means "committed".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::HeaderMap;

use tracing::Instrument;

use crate::config::{Config, HandlerErrors, PartnerConfig};
use crate::domain::{Outcome, Reason};
use crate::partners::Delivery;
use crate::partners::auth::{AuthFailure, Presented};
use crate::partners::decode::{BodyPolicy, Undecodable, decode};
use crate::partners::keyring::Keyring;
use crate::replay_cache::ReplayCache;
use crate::store::{NewEvent, Store, StoreError, Verdict};
use crate::telemetry;

use registry::Partner;

mod abuse;
pub mod fuzzing;
mod mapping;
pub mod registry;
mod replay;
mod stored;
mod turns;

pub use abuse::REFUSED_BODY_KEPT;
use abuse::{Refusals, limiter, throttled};
#[cfg(test)]
pub(crate) use mapping::map_for_tests;
pub(crate) use mapping::vetted;
use mapping::{is_content_failure, lock_keys, map_guarded, undecodable_mapping};
pub use replay::ReplaySummary;
use stored::Keep;

/// How long a busy sale is waited for on the callback route, which has no 409 in the contract.
const CALLBACK_LOCK_WAIT: Duration = Duration::from_secs(30);

/// How long a partner switched off or not servable is asked to wait before sending again.
const HELD_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The event type partners send to check connectivity; answered 200 with no processing.
pub const TEST_NOTIFICATION: &str = "webhooks.test_notification";

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
    /// How long the body really was, when `body` does not hold it all (a body refused for
    /// its size is not read); `None`: `body` is all of it.
    pub body_bytes: Option<usize>,
    pub received_at: DateTime<Utc>,
    /// The client's address, for the limits on deliveries without credentials.
    pub client: Option<std::net::IpAddr>,
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
    /// A test notification: answered once stored, without processing.
    TestNotification { event_id: i64 },
    /// Unknown partner or bad credentials.
    Refused {
        event_id: Option<i64>,
        reason: Reason,
    },
    /// The same sale is being processed by another request; retry later.
    Busy {
        event_id: Option<i64>,
        /// `sale_in_flight` or `venue_busy`.
        reason: Reason,
    },
    /// Too many deliveries from this partner: refused unread, retry after the wait.
    RateLimited { retry_after: Duration },
    /// The body once decompressed is over the limit: refused whole (413).
    TooLarge { event_id: Option<i64>, limit: usize },
    /// The body's encoding or charset is one we cannot read (415); stored.
    Unsupported {
        event_id: Option<i64>,
        reason: Reason,
    },
    /// The partner is one of the database's, switched off or not servable now: nothing
    /// stored, retry later (503).
    Held { retry_after: Duration },
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
                Some(*event_id),
                Outcome::Ignored.as_str(),
                Some(Reason::TestNotification),
            ),
            Receipt::Refused { event_id, reason } => {
                (*event_id, Outcome::Rejected.as_str(), Some(*reason))
            }
            Receipt::Busy { event_id, reason } => {
                (*event_id, Outcome::Rejected.as_str(), Some(*reason))
            }
            Receipt::Held { .. } => (
                None,
                Outcome::Rejected.as_str(),
                Some(Reason::PartnerUnavailable),
            ),
            Receipt::Failed { event_id, reason } => {
                (*event_id, Outcome::Failed.as_str(), Some(*reason))
            }
            Receipt::RateLimited { .. } => {
                (None, Outcome::Rejected.as_str(), Some(Reason::RateLimited))
            }
            Receipt::TooLarge { event_id, .. } => (
                *event_id,
                Outcome::Rejected.as_str(),
                Some(Reason::BodyTooLarge),
            ),
            Receipt::Unsupported { event_id, reason } => {
                (*event_id, Outcome::Rejected.as_str(), Some(*reason))
            }
        }
    }
}

/// The pipeline. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Gateway {
    /// Every partner by name: the file's and the database's, swapped whole when the
    /// database's change (`registry`).
    partners: std::sync::RwLock<Arc<HashMap<String, Arc<Partner>>>>,
    /// The database's partners that take no deliveries now (switched off, or a definition or
    /// secrets this node cannot serve): their deliveries are answered "retry later".
    held: std::sync::RwLock<Arc<std::collections::HashSet<String>>>,
    store: Arc<dyn Store>,
    public_url: String,
    sale_lock_wait: Duration,
    /// The body limit partners built later (from the database) get.
    max_body_bytes: usize,
    /// Limits on deliveries without valid credentials.
    refusals: Refusals,
    replays: ReplayCache,
    /// Turns for costly mappings (scripts), shared fairly between partners.
    costly: turns::CostlyTurns,
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
                     on_handler_error,
                     undeclared_charset,
                 }| {
                    let partner = Partner {
                        handler: handler.build(),
                        body: BodyPolicy {
                            max_bytes: config.max_body_bytes,
                            // No partner we ship documents a charset other than UTF-8
                            // for bodies that declare none; operators may set one.
                            undeclared: undeclared_charset,
                        },
                        spec: handler,
                        keys: Keyring::single(auth),
                        source: registry::Source::File,
                        limiter: rate_limit.map(limiter),
                        on_handler_error,
                    };
                    (name, Arc::new(partner))
                },
            )
            .collect();
        Gateway {
            partners: std::sync::RwLock::new(Arc::new(partners)),
            held: std::sync::RwLock::new(Arc::default()),
            max_body_bytes: config.max_body_bytes,
            store,
            public_url: config.public_url,
            sale_lock_wait: config.sale_lock_wait,
            refusals: Refusals::new(config.refusals),
            replays: ReplayCache::new(config.replay_window),
            costly: turns::CostlyTurns::new(),
        }
    }

    /// The partners' names and handlers, by name.
    pub fn partners(&self) -> Vec<(String, &'static str)> {
        let mut partners: Vec<(String, &'static str)> = self
            .registry()
            .iter()
            .map(|(name, partner)| (name.clone(), partner.spec.name()))
            .collect();
        partners.sort_unstable();
        partners
    }

    /// Whether a partner of this name takes deliveries now.
    pub fn has_partner(&self, name: &str) -> bool {
        self.registry().contains_key(name)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs one delivery through the pipeline, in a span naming its partner, event id and
    /// outcome, and counts it. Never panics on any input.
    pub async fn receive(&self, inbound: Inbound) -> Receipt {
        // The registry is read once per delivery: the same partner labels the metrics and
        // runs it, even if a change swaps the registry meanwhile.
        let found = self.partner(&inbound.partner);
        let partner = if found.is_some() {
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
        let receipt = self.run(inbound, found).instrument(span.clone()).await;
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

    async fn run(&self, inbound: Inbound, partner: Option<Arc<Partner>>) -> Receipt {
        let Some(partner) = partner else {
            if self.is_held(&inbound.partner) {
                if self.refusals.worth_logging(&inbound.partner, "held") {
                    tracing::warn!(partner = %inbound.partner, "a delivery for a partner switched off or not servable was held back (503)");
                }
                return Receipt::Held {
                    retry_after: HELD_RETRY_AFTER,
                };
            }
            let detail = "no such partner is configured";
            return self
                .refuse(&inbound, None, Reason::UnknownPartner, detail)
                .await;
        };
        let partner = partner.as_ref();
        if !partner.keys.any_valid_at(inbound.received_at) {
            if self
                .refusals
                .worth_logging(&inbound.partner, "no valid secret")
            {
                tracing::warn!(partner = %inbound.partner, "a delivery for a partner with no secret valid now was held back (503)");
            }
            return Receipt::Held {
                retry_after: HELD_RETRY_AFTER,
            };
        }
        let url = self.signed_url(&inbound);
        let presented = Presented {
            headers: &inbound.headers,
            query: inbound.query.as_deref(),
            body: &inbound.body,
            url: &url,
            received_at: inbound.received_at.timestamp(),
        };
        let verified = partner.keys.verify(presented, inbound.received_at);
        if inbound.event_type == TEST_NOTIFICATION {
            return self
                .test_notification(&inbound, partner, verified.is_ok())
                .await;
        }
        let secret_label = match verified {
            Ok(label) => label.map(str::to_owned),
            Err(_) => None,
        };
        if let Err(failure) = verified {
            let reason = match failure {
                AuthFailure::Missing => Reason::MissingCredentials,
                AuthFailure::Invalid => Reason::BadSignature,
                AuthFailure::Expired => Reason::ExpiredSignature,
            };
            if self.refusals.worth_logging(&inbound.partner, "refused") {
                tracing::warn!(partner = %inbound.partner, %reason, "delivery refused");
            }
            return self
                .refuse(&inbound, Some(partner), reason, &failure.to_string())
                .await;
        }
        // The partner's own budget counts its authenticated deliveries only.
        if let Some(retry_after) = partner.limiter.as_ref().and_then(throttled) {
            if self
                .refusals
                .worth_logging(&inbound.partner, "rate limited")
            {
                tracing::warn!(partner = %inbound.partner, "delivery rate limited");
            }
            return Receipt::RateLimited { retry_after };
        }
        let mut event = stored::new_event(
            &inbound,
            Some(partner.keys.primary()),
            Some(partner.spec.name()),
            Keep::Whole,
        );
        event.secret_label = secret_label;
        // The handler sees the delivery as it is stored (kept headers, credentials masked in
        // the query): never a secret a script could copy into its result, and the same
        // delivery a replay gives it later.
        let headers = replay::header_map(&event.headers);
        let (mapped, handler_version) = match decode(&inbound.body, &inbound.headers, partner.body)
        {
            Ok(document) => {
                let costly = partner.handler.is_costly();
                self.costly
                    .run(&inbound.partner, costly, || {
                        map_guarded(
                            partner.handler.as_ref(),
                            Delivery {
                                event_type: &inbound.event_type,
                                headers: &headers,
                                query: event.query.as_deref(),
                                body: &document,
                            },
                        )
                    })
                    .await
            }
            Err(Undecodable::TooLarge { limit }) => {
                let event_id = self.refuse_oversized(inbound, limit).await;
                return Receipt::TooLarge { event_id, limit };
            }
            Err(undecodable) => (undecodable_mapping(&undecodable), None),
        };
        event.handler_version = handler_version;
        let replay =
            (!partner.keys.primary().carries_timestamp()).then(|| ReplayCache::key(&event));
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
            Ok(ingested)
                if ingested.outcome == Outcome::Failed
                    && !(partner.on_handler_error == HandlerErrors::Store
                        && ingested.reason.is_some_and(is_content_failure)) =>
            {
                Receipt::Failed {
                    event_id: Some(ingested.event_id),
                    reason: ingested.reason.unwrap_or(Reason::ProcessingError),
                }
            }
            Ok(ingested) if ingested.outcome == Outcome::Rejected => match ingested.reason {
                Some(reason @ (Reason::UnsupportedCharset | Reason::UnsupportedEncoding)) => {
                    Receipt::Unsupported {
                        event_id: Some(ingested.event_id),
                        reason,
                    }
                }
                reason => Receipt::Refused {
                    event_id: Some(ingested.event_id),
                    reason: reason.unwrap_or(Reason::BadSignature),
                },
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
            Err(busy @ (StoreError::SaleBusy | StoreError::VenueBusy)) => {
                let (reason, detail) = match busy {
                    StoreError::VenueBusy => (
                        Reason::VenueBusy,
                        "the venue's diary is held by another write",
                    ),
                    _ => (Reason::SaleInFlight, "the same sale is being processed"),
                };
                let event_id = self.record(event, Outcome::Rejected, reason, detail).await;
                match inbound.route {
                    Route::Sales => Receipt::Busy { event_id, reason },
                    Route::Callback => Receipt::Failed { event_id, reason },
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

    /// What the HMAC scheme signs after the body: the public URL, path and query.
    fn signed_url(&self, inbound: &Inbound) -> String {
        let query = inbound
            .query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        format!("{}{}{query}", self.public_url, inbound.path)
    }

    /// A test notification: answered 200 without processing, once it is stored. One that
    /// does not authenticate is still answered (the contract has no credentials for it),
    /// but under the limits of deliveries without credentials, with only its first bytes
    /// kept.
    async fn test_notification(
        &self,
        inbound: &Inbound,
        partner: &Partner,
        authenticated: bool,
    ) -> Receipt {
        let keep = if authenticated {
            if let Some(retry_after) = partner.limiter.as_ref().and_then(throttled) {
                return Receipt::RateLimited { retry_after };
            }
            Keep::Whole
        } else {
            if let Some(retry_after) = self.refusals.over_limit(&inbound.partner, inbound.client) {
                return Receipt::RateLimited { retry_after };
            }
            Keep::First(
                self.refusals
                    .body_to_keep(&inbound.partner, inbound.body.len()),
            )
        };
        let event = stored::new_event(
            inbound,
            Some(partner.keys.primary()),
            Some(partner.spec.name()),
            keep,
        );
        let detail = "test notification, not processed";
        match self
            .record(event, Outcome::Ignored, Reason::TestNotification, detail)
            .await
        {
            Some(event_id) => Receipt::TestNotification { event_id },
            None => Receipt::Failed {
                event_id: None,
                reason: Reason::StoreError,
            },
        }
    }

    /// Refuses a delivery without valid credentials: answered 400 and recorded with its
    /// headers, size, SHA-256 and at most its first 4 KiB, or, over the limits of such
    /// deliveries (per partner name and per client address), answered 429 unrecorded.
    async fn refuse(
        &self,
        inbound: &Inbound,
        partner: Option<&Partner>,
        reason: Reason,
        detail: &str,
    ) -> Receipt {
        let name = match partner {
            Some(_) => inbound.partner.as_str(),
            None => abuse::UNKNOWN_PARTNER,
        };
        if let Some(retry_after) = self.refusals.over_limit(name, inbound.client) {
            return Receipt::RateLimited { retry_after };
        }
        let keep = self.refusals.body_to_keep(name, inbound.body.len());
        let event = stored::new_event(
            inbound,
            partner.map(|p| p.keys.primary()),
            partner.map(|p| p.spec.name()),
            Keep::First(keep),
        );
        let event_id = self.record(event, Outcome::Rejected, reason, detail).await;
        Receipt::Refused { event_id, reason }
    }

    /// Refuses a request under a partner prefix that matches no route (a mistyped webhook
    /// URL): recorded as `rejected/unknown_route` under the partner it names (if that is
    /// one), within the limits on refusals, so partner health shows it.
    pub async fn refuse_unknown_route(&self, inbound: Inbound) -> Receipt {
        let partner = self.partner(&inbound.partner);
        let detail = format!("no partner route at {}", inbound.path);
        self.refuse(&inbound, partner.as_deref(), Reason::UnknownRoute, &detail)
            .await
    }

    /// Refuses a request on a partner route with a method the route does not take (a
    /// TourCMS `GET` sent to the sales URL): recorded as `rejected/method_not_allowed`, within
    /// the limits on refusals, so partner health shows a sender pointed at the wrong route
    /// instead of a bare 405 nobody sees.
    pub async fn refuse_method(&self, inbound: Inbound) -> Receipt {
        let partner = self.partner(&inbound.partner);
        let detail = format!("{} is not taken at {}", inbound.method, inbound.path);
        self.refuse(
            &inbound,
            partner.as_deref(),
            Reason::MethodNotAllowed,
            &detail,
        )
        .await
    }

    /// Records a delivery whose body exceeded the limit (answered 413): its metadata only,
    /// so the operator sees that the partner sent something we refused; `None` when it was
    /// not recorded (over the limits of refused deliveries, or the store failed).
    pub async fn refuse_oversized(&self, inbound: Inbound, limit: usize) -> Option<i64> {
        let partner = self.partner(&inbound.partner);
        let partner = partner.as_deref();
        let name = match partner {
            Some(_) => inbound.partner.as_str(),
            None => abuse::UNKNOWN_PARTNER,
        };
        if self.refusals.over_limit(name, inbound.client).is_some() {
            return None;
        }
        let event = stored::new_event(
            &inbound,
            partner.map(|p| p.keys.primary()),
            partner.map(|p| p.spec.name()),
            Keep::First(0),
        );
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
}
