//! Replay: stored events run through their partners' current handlers again, a page at a
//! time, each page in one transaction committed while the next is read and mapped.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use super::{CALLBACK_LOCK_WAIT, Gateway, lock_keys, map_guarded, undecodable_mapping, vetted};
use crate::domain::{Mapped, Outcome, Reason};
use crate::partners::decode::decode;
use crate::partners::{Delivery, HandlerSpec, PartnerHandler};
use crate::store::{Ingested, ReplayFilter, Reprocess, StoreError, StoredEvent};

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ReplaySummary {
    /// Events run through their partner's current handler again.
    pub replayed: usize,
    /// Events of partners no longer configured.
    pub skipped: usize,
    /// Events recorded as duplicates of an earlier delivery (`duplicate_event`): the earlier
    /// one is replayed, a copy never is, so that a copy re-sent after later changes does
    /// not roll them back and the diary is the same with or without a replay.
    pub duplicates: usize,
    /// Events that were `failed` or `ignored` before and are `processed` now.
    pub recovered: usize,
    /// How many replayed events ended in each outcome.
    pub outcomes: BTreeMap<String, usize>,
    /// The events re-run, by id: not part of the answer (a replay may re-run thousands),
    /// but linked to its audit entry, so that each event's history shows it.
    #[serde(skip)]
    pub events: Vec<i64>,
}

/// How many stored events a replay reads at a time.
const REPLAY_PAGE: i64 = 500;

/// A replay page being committed.
struct Committing {
    /// Each event's id and outcome before the replay.
    was: Vec<(i64, Outcome)>,
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
            Err(busy @ (StoreError::SaleBusy | StoreError::VenueBusy)) => {
                let reason = match busy {
                    StoreError::VenueBusy => Reason::VenueBusy,
                    _ => Reason::SaleInFlight,
                };
                let busy = self.was.len();
                *summary
                    .outcomes
                    .entry(reason.as_str().to_owned())
                    .or_default() += busy;
                (0..busy).for_each(|_| progress());
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        for (result, (id, was)) in results.into_iter().zip(self.was) {
            let outcome = match result {
                Ok(ingested) => {
                    summary.replayed += 1;
                    summary.events.push(id);
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

impl Gateway {
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
    /// read and mapped while the previous one commits. A filter without an end ends when the
    /// replay starts ([`ReplayFilter::received_by`]).
    ///
    /// # Errors
    /// When the store fails as a whole; pages committed before that stay done. An event that
    /// fails alone is counted under `store_error` and the replay goes on.
    pub async fn replay(
        &self,
        filter: &ReplayFilter,
        mut progress: impl FnMut(),
    ) -> Result<ReplaySummary, StoreError> {
        let filter = &filter.clone().received_by(chrono::Utc::now());
        let mut summary = ReplaySummary::default();
        let mut after = 0;
        let mut committing: Option<Committing> = None;
        loop {
            let page = self.store.replayable(filter, after, REPLAY_PAGE).await?;
            let next = self.map_page(&page, &mut summary, &mut progress).await;
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
    async fn map_page(
        &self,
        page: &[StoredEvent],
        summary: &mut ReplaySummary,
        progress: &mut impl FnMut(),
    ) -> (Vec<Reprocess>, Vec<(i64, Outcome)>) {
        let mut batch = Vec::with_capacity(page.len());
        let mut was = Vec::with_capacity(page.len());
        for event in page {
            if event.reason.as_deref() == Some(Reason::DuplicateEvent.as_str()) {
                summary.duplicates += 1;
                progress();
                continue;
            }
            let costly = self
                .partner(&event.partner)
                .is_some_and(|p| p.handler.is_costly());
            let mapped = self
                .costly
                .run(&event.partner, costly, || self.map_stored(event))
                .await;
            let Some((mapped, handler_version)) = mapped else {
                summary.skipped += 1;
                progress();
                continue;
            };
            batch.push(Reprocess {
                event_id: event.id,
                lock_keys: lock_keys(&event.partner, &mapped),
                mapped,
                handler_version,
            });
            was.push((
                event.id,
                Outcome::parse(&event.outcome).unwrap_or(Outcome::Pending),
            ));
        }
        (batch, was)
    }

    /// A partner's handler, with its spec.
    pub(crate) fn partner_handler(
        &self,
        name: &str,
    ) -> Option<(HandlerSpec, Arc<dyn PartnerHandler>)> {
        self.partner(name)
            .map(|p| (p.spec.clone(), Arc::clone(&p.handler)))
    }

    /// Maps a stored event again with its partner's current handler, from its stored
    /// headers, query and body, decoded as on its first delivery; `None` when the partner is
    /// no longer configured.
    pub(crate) fn map_stored(&self, event: &StoredEvent) -> Option<(Mapped, Option<String>)> {
        let partner = self.partner(&event.partner)?;
        Some(map_with(event, partner.handler.as_ref(), partner.body))
    }

    /// Maps a stored event with `handler` as a delivery to `partner` would be: decoded with
    /// that partner's body settings (the defaults for a partner not configured). Nothing is
    /// written: this is an operator trying a handler before saving it.
    pub fn try_stored(
        &self,
        event: &StoredEvent,
        partner: &str,
        handler: &dyn PartnerHandler,
    ) -> (Mapped, Option<String>) {
        let policy = self.partner(partner).map_or(
            crate::partners::decode::BodyPolicy {
                max_bytes: self.max_body_bytes,
                undeclared: None,
            },
            |p| p.body,
        );
        map_with(event, handler, policy)
    }

    /// A body `partner` sent us by other means than a delivery (a booking fetched from its
    /// API), decoded as its deliveries are: compression, charset and byte-order marks.
    ///
    /// # Errors
    /// [`crate::partners::decode::Undecodable`] as for a delivery; an unknown partner's
    /// body is too large to read, as nothing of it is.
    pub(crate) fn decode_from(
        &self,
        partner: &str,
        body: &[u8],
        headers: &http::HeaderMap,
    ) -> Result<Vec<u8>, crate::partners::decode::Undecodable> {
        let policy = self
            .partner(partner)
            .map(|p| p.body)
            .ok_or(crate::partners::decode::Undecodable::TooLarge { limit: 0 })?;
        decode(body, headers, policy).map(std::borrow::Cow::into_owned)
    }

    /// Applies a fresh mapping to a stored event and records its new outcome.
    pub(crate) async fn reapply(
        &self,
        event: &StoredEvent,
        mapped: Mapped,
        version: Option<String>,
    ) -> Result<Ingested, StoreError> {
        let mapped = vetted(mapped);
        let keys = lock_keys(&event.partner, &mapped);
        self.store
            .reprocess(event.id, mapped, version, &keys, CALLBACK_LOCK_WAIT)
            .await
    }
}

/// Stored headers as a handler reads them.
pub(super) fn header_map(stored: &BTreeMap<String, String>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in stored {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            http::HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}

/// Maps a stored event with `handler`, from its stored headers, query and body, decoded by
/// `policy`.
fn map_with(
    event: &StoredEvent,
    handler: &dyn PartnerHandler,
    policy: crate::partners::decode::BodyPolicy,
) -> (Mapped, Option<String>) {
    let headers = header_map(&event.headers);
    match decode(&event.body, &headers, policy) {
        Ok(document) => map_guarded(
            handler,
            Delivery {
                event_type: &event.event_type,
                headers: &headers,
                query: event.query.as_deref(),
                body: &document,
            },
        ),
        Err(undecodable) => (undecodable_mapping(&undecodable), None),
    }
}
