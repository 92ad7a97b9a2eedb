//! The SQL implementation of [`Store`], shared by SQLite and PostgreSQL.
//!
//! Statements use `$n` placeholders and types both databases accept (BIGINT, TEXT, bytes), so
//! one text serves both; the dialect modules hold what differs. The handle on either engine
//! and its transactions are in `engine`, event writes (a delivery's, a replay's) in `write`,
//! reading rows back into records in `rows`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::db;
use super::records::*;
use super::{
    Backend, Ingested, Reprocess, SaleKey, Store, StoreError, Verdict, api_budget, bookings,
    changes, health, platform, rematch, retention, silence, webhooks,
};
use crate::domain::access::Actor;
use crate::domain::{Mapped, Outcome, Reason};

mod engine;
mod manual;
mod operators;
mod partner_registry;
mod platform_sync;
mod readiness;
mod rows;
mod write;

use engine::Engine;
pub use engine::SqlStore;
use rows::*;
use write::*;

pub(in crate::store) use rows::{Conditions, insert_location, venue_record};
pub(in crate::store) use rows::{
    SALE_COLUMNS, decimal, decimal_text, from_millis, json_list, money_column, parse_status,
    sale_record,
};

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        match self.engine {
            Engine::Sqlite(_) => Backend::Sqlite,
            Engine::Postgres(_) => Backend::Postgres,
        }
    }

    async fn ingest(
        &self,
        event: NewEvent,
        mapped: Mapped,
        lock_keys: &[SaleKey],
        lock_wait: Duration,
    ) -> Result<Ingested, StoreError> {
        // The sale is held shared, and only until its write is queued: writes of one sale
        // queue on one writer (the route is the sale's location) and run one after another,
        // so a burst of one sale's deliveries shares a batch instead of waiting a commit
        // each. A replay holds it exclusively until its commit. Across nodes on PostgreSQL,
        // the sale's advisory lock waits until `deadline`.
        let deadline = Instant::now() + lock_wait;
        let held = self.in_flight.acquire_shared(lock_keys, deadline).await?;
        let route = route_of(&event.partner, lock_keys);
        let keys: Arc<[SaleKey]> = lock_keys.into();
        let event = Arc::new(event);
        let stored = Arc::clone(&event);
        let bytes = event.body.bytes.len();
        let queued = self
            .submit(route, bytes, move |conn| {
                Box::pin(ingest_locked(
                    conn,
                    Arc::clone(&keys),
                    deadline,
                    Arc::clone(&stored),
                    mapped.clone(),
                ))
            })
            .await?;
        drop(held);
        match queued.wait().await {
            Err(StoreError::Processing(cause)) => {
                let cause = Arc::new(*cause);
                self.submit(route, bytes, move |conn| {
                    let (event, cause) = (Arc::clone(&event), Arc::clone(&cause));
                    Box::pin(async move { record_processing_failure(conn, &event, &cause).await })
                })
                .await?
                .wait()
                .await
            }
            other => other,
        }
    }

    async fn replayable(
        &self,
        filter: &ReplayFilter,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conditions = replay_conditions(filter);
        conditions.int("id > $?", after_id);
        let query = conditions.query(
            STORED_EVENT,
            &format!("ORDER BY id LIMIT {}", limit.clamp(1, 10_000)),
        );
        self.read(move |conn| Box::pin(fetch_each(conn, query, stored_event)))
            .await
    }

    async fn due_fetches(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conditions = replay_conditions(&ReplayFilter::default());
        // A literal, so the partial index on pending events serves it.
        conditions.clauses.push("outcome = 'pending'".to_owned());
        conditions.int(
            "(next_attempt_at IS NULL OR next_attempt_at <= $?)",
            now.timestamp_millis(),
        );
        let query = conditions.query(
            STORED_EVENT,
            &format!("ORDER BY id LIMIT {}", limit.clamp(1, 1000)),
        );
        self.read(move |conn| Box::pin(fetch_each(conn, query, stored_event)))
            .await
    }

    async fn claim_fetch(
        &self,
        event_id: i64,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        channel: &str,
        hourly_limit: u32,
    ) -> Result<api_budget::FetchClaim, StoreError> {
        let channel = channel.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                if !api_budget::has_call(conn, &channel, now, hourly_limit).await? {
                    return Ok(api_budget::FetchClaim::OverBudget);
                }
                let claimed = db::query(
                    "UPDATE events SET next_attempt_at = $1
                     WHERE id = $2 AND outcome = 'pending'
                       AND (next_attempt_at IS NULL OR next_attempt_at <= $3)",
                )
                .bind(lease_until.timestamp_millis())
                .bind(event_id)
                .bind(now.timestamp_millis())
                .execute(conn)
                .await?;
                if claimed != 1 {
                    return Ok(api_budget::FetchClaim::Taken);
                }
                api_budget::count_call(conn, &channel, now).await?;
                Ok(api_budget::FetchClaim::Claimed)
            })
        })
        .await
    }

    async fn quiet_api(&self, channel: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let channel = channel.to_owned();
        self.write(move |conn| {
            Box::pin(async move { api_budget::quiet(conn, &channel, until).await })
        })
        .await
    }

    async fn fetch_failed(
        &self,
        event_id: i64,
        attempts: i64,
        retry_at: Option<DateTime<Utc>>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let (outcome, reason) = match retry_at {
            Some(_) => (Outcome::Pending, Reason::AwaitingFetch),
            None => (Outcome::Failed, Reason::FetchFailed),
        };
        let detail = detail.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                db::query(
                    "UPDATE events SET attempts = $1, next_attempt_at = $2, outcome = $3, reason = $4, detail = $5
                     WHERE id = $6 AND outcome = 'pending'",
                )
                .bind(attempts)
                .bind(retry_at.map(|t| t.timestamp_millis()))
                .bind(outcome.as_str())
                .bind(reason.as_str())
                .bind(detail)
                .bind(event_id)
                .execute(conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn count_replayable(&self, filter: &ReplayFilter) -> Result<i64, StoreError> {
        let query = replay_conditions(filter).query("SELECT COUNT(*) AS n FROM events", "");
        self.read(move |conn| {
            Box::pin(async move {
                let row = query.fetch_one(conn).await?;
                row.try_get("n")
            })
        })
        .await
    }

    async fn reprocess(
        &self,
        event_id: i64,
        mapped: Mapped,
        handler_version: Option<String>,
        lock_keys: &[SaleKey],
        lock_wait: Duration,
    ) -> Result<Ingested, StoreError> {
        let deadline = Instant::now() + lock_wait;
        let _held = self.in_flight.acquire(lock_keys, deadline).await?;
        let keys = lock_keys.to_vec();
        let reprocessed = self
            .write(move |conn| {
                Box::pin(reprocess_locked(
                    conn,
                    keys,
                    deadline,
                    event_id,
                    mapped,
                    handler_version,
                ))
            })
            .await;
        match reprocessed {
            Err(StoreError::Processing(cause)) => {
                self.write(move |conn| {
                    Box::pin(
                        async move { record_reprocessing_failure(conn, event_id, &cause).await },
                    )
                })
                .await
            }
            other => other,
        }
    }

    async fn reprocess_batch(
        &self,
        batch: Vec<Reprocess>,
        lock_wait: Duration,
    ) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
        let mut keys: Vec<SaleKey> = batch
            .iter()
            .flat_map(|item| item.lock_keys.iter().cloned())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let deadline = Instant::now() + lock_wait;
        let _held = self.in_flight.acquire(&keys, deadline).await?;
        self.write(move |conn| Box::pin(reprocess_all(conn, keys, deadline, batch)))
            .await
    }

    async fn record(&self, event: NewEvent, verdict: Verdict) -> Result<i64, StoreError> {
        let route = route_of(&event.partner, &[]);
        let bytes = event.body.bytes.len();
        let (event, verdict) = (Arc::new(event), Arc::new(verdict));
        self.submit(route, bytes, move |conn| {
            let (event, verdict) = (Arc::clone(&event), Arc::clone(&verdict));
            Box::pin(async move {
                let event_id = conn.next_event_id().await?;
                let stored = Ingested {
                    event_id,
                    outcome: verdict.outcome,
                    reason: verdict.reason,
                    detail: verdict.detail.clone(),
                    venue_id: None,
                    sale_id: None,
                    match_rule: None,
                };
                insert_event(conn, event_id, &event, &stored, Utc::now()).await
            })
        })
        .await?
        .wait()
        .await
    }

    async fn create_venue(&self, venue: NewVenue, by: Actor) -> Result<VenueRecord, StoreError> {
        let id = self
            .write(move |conn| {
                Box::pin(async move { manual::create_venue(conn, &venue, &by).await })
            })
            .await?;
        self.venue(id).await?.ok_or(StoreError::NotFound("venue"))
    }

    async fn venue(&self, id: i64) -> Result<Option<VenueRecord>, StoreError> {
        self.read(move |conn| Box::pin(venue_record(conn, id)))
            .await
    }

    async fn venues(&self) -> Result<Vec<VenueRecord>, StoreError> {
        self.read(|conn| {
            Box::pin(async move {
                let ids: Vec<i64> = db::query_scalar("SELECT id FROM venues ORDER BY name, id")
                    .fetch_all(conn)
                    .await?;
                let mut venues = Vec::with_capacity(ids.len());
                for id in ids {
                    venues.extend(venue_record(conn, id).await?);
                }
                Ok(venues)
            })
        })
        .await
    }

    async fn add_location(
        &self,
        venue_id: i64,
        location: NewLocation,
        by: Actor,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(async move { manual::add_location(conn, venue_id, &location, &by).await })
        })
        .await
    }

    async fn update_venue(
        &self,
        id: i64,
        changes: VenueChanges,
        by: Actor,
    ) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(manual::update_venue(conn, id, changes, by)))
            .await
    }

    async fn create_booking(
        &self,
        venue_id: i64,
        booking: NewBooking,
        by: Actor,
    ) -> Result<i64, StoreError> {
        self.write(move |conn| Box::pin(manual::create_booking(conn, venue_id, booking, by)))
            .await
    }

    async fn update_booking(
        &self,
        id: i64,
        changes: BookingChanges,
        by: Actor,
    ) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(manual::update_booking(conn, id, changes, by)))
            .await
    }

    async fn booking(&self, id: i64) -> Result<Option<BookingView>, StoreError> {
        self.read(move |conn| Box::pin(bookings::view(conn, id)))
            .await
    }

    async fn diary(&self, venue_id: i64, date: chrono::NaiveDate) -> Result<DiaryView, StoreError> {
        self.read(move |conn| Box::pin(bookings::diary(conn, venue_id, date)))
            .await
    }

    async fn put_booking(
        &self,
        venue_id: i64,
        reference: String,
        booking: PlatformBooking,
    ) -> Result<PutOutcome, StoreError> {
        self.write(move |conn| {
            Box::pin(async move { platform::put(conn, venue_id, &reference, &booking).await })
        })
        .await
    }

    async fn sync_bookings(
        &self,
        venue_id: i64,
        bookings: Vec<(String, PlatformBooking)>,
        cancel_missing: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<SyncOutcome, StoreError> {
        self.sync_in_chunks(venue_id, bookings, cancel_missing)
            .await
    }

    async fn booking_page(&self, filter: BookingPageFilter) -> Result<BookingPage, StoreError> {
        self.read(move |conn| Box::pin(async move { platform::page(conn, &filter).await }))
            .await
    }

    async fn changes(
        &self,
        after: i64,
        limit: i64,
        venue: Option<i64>,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        self.read(move |conn| Box::pin(changes::feed(conn, after, limit, venue)))
            .await
    }

    async fn create_subscription(
        &self,
        new: NewSubscription,
    ) -> Result<SubscriptionRecord, StoreError> {
        self.write(move |conn| Box::pin(async move { webhooks::create(conn, &new).await }))
            .await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError> {
        self.read(|conn| Box::pin(webhooks::list(conn))).await
    }

    async fn subscription(&self, id: i64) -> Result<Option<SubscriptionRecord>, StoreError> {
        self.read(move |conn| Box::pin(webhooks::get(conn, id)))
            .await
    }

    async fn update_subscription(
        &self,
        id: i64,
        changes: SubscriptionChanges,
    ) -> Result<SubscriptionRecord, StoreError> {
        self.write(move |conn| Box::pin(async move { webhooks::update(conn, id, &changes).await }))
            .await
    }

    async fn delete_subscription(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(webhooks::delete(conn, id)))
            .await
    }

    async fn queue_webhooks(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write(move |conn| Box::pin(webhooks::queue(conn, now)))
            .await
    }

    async fn claim_webhooks(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        skip: Vec<i64>,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        self.write(move |conn| {
            Box::pin(async move { webhooks::claim(conn, now, lease_until, limit, &skip).await })
        })
        .await
    }

    async fn release_webhooks(&self, rows: Vec<i64>) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(async move { webhooks::release(conn, &rows).await }))
            .await
    }

    async fn finish_webhook(
        &self,
        message: ClaimedMessage,
        attempt: Attempt,
        now: DateTime<Utc>,
        disable_after: Duration,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(
                async move { webhooks::finish(conn, &message, &attempt, now, disable_after).await },
            )
        })
        .await
    }

    async fn webhook_messages(
        &self,
        subscription_id: i64,
        state: Option<String>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<WebhookMessageRecord>, StoreError> {
        self.read(move |conn| {
            Box::pin(async move {
                webhooks::messages(conn, subscription_id, state.as_deref(), before, limit).await
            })
        })
        .await
    }

    async fn resend_webhooks(&self, filter: ResendFilter) -> Result<u64, StoreError> {
        self.write(move |conn| {
            Box::pin(async move { webhooks::resend(conn, &filter, Utc::now()).await })
        })
        .await
    }

    async fn webhook_backlog(&self) -> Result<WebhookBacklog, StoreError> {
        self.read(|conn| Box::pin(webhooks::backlog(conn))).await
    }

    async fn partner_traffic(
        &self,
        now: DateTime<Utc>,
        rule: silence::SilenceRule,
    ) -> Result<Vec<silence::Traffic>, StoreError> {
        self.read(move |conn| Box::pin(silence::traffic(conn, now, rule)))
            .await
    }

    async fn set_silence(
        &self,
        traffic: silence::Traffic,
        silent: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            Box::pin(async move {
                if silent {
                    silence::raise(conn, &traffic, now).await
                } else {
                    silence::clear(conn, &traffic, now).await
                }
            })
        })
        .await
    }

    async fn silences(&self) -> Result<Vec<(String, i64, bool)>, StoreError> {
        self.read(|conn| Box::pin(silence::states(conn))).await
    }

    async fn guest(&self, id: i64) -> Result<Option<GuestView>, StoreError> {
        self.read(move |conn| Box::pin(bookings::guest(conn, id)))
            .await
    }

    async fn match_sale(&self, sale_id: i64, booking_id: i64, by: Actor) -> Result<(), StoreError> {
        self.write(move |conn| {
            Box::pin(manual::link(
                conn,
                sale_id,
                Some(booking_id),
                by,
                "sale.match",
            ))
        })
        .await
    }

    async fn unmatch_sale(&self, sale_id: i64, by: Actor) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(manual::link(conn, sale_id, None, by, "sale.unmatch")))
            .await
    }

    async fn sales(&self, filter: &SaleFilter) -> Result<Vec<SaleRecord>, StoreError> {
        let mut conditions = Conditions::default();
        conditions.text("partner = $?", &filter.partner);
        conditions.text("external_id = $?", &filter.external_id);
        if let Some(venue_id) = filter.venue_id {
            conditions.int("venue_id = $?", venue_id);
        }
        if let Some(before) = filter.before_id {
            conditions.int("id < $?", before);
        }
        if let Some(venues) = &filter.venue_limit {
            conditions.int_in("venue_id", venues);
        }
        match filter.unmatched {
            Some(true) => conditions.clauses.push("booking_id IS NULL".to_owned()),
            Some(false) => conditions.clauses.push("booking_id IS NOT NULL".to_owned()),
            None => {}
        }
        let query = conditions.query(
            &format!("SELECT {SALE_COLUMNS} FROM sales"),
            &format!("ORDER BY id DESC LIMIT {}", filter.limit.clamp(1, 1000)),
        );
        self.read(move |conn| Box::pin(fetch_each(conn, query, sale_record)))
            .await
    }

    async fn suggestions(
        &self,
        sale_id: i64,
        limit: usize,
    ) -> Result<Option<Vec<SuggestionRecord>>, StoreError> {
        self.read(move |conn| Box::pin(rematch::suggestions(conn, sale_id, limit)))
            .await
    }

    async fn unmatched_sales(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            Box::pin(
                db::query_scalar(
                    "SELECT COUNT(*) FROM sales WHERE booking_id IS NULL AND state <> 'voided'",
                )
                .fetch_one(conn),
            )
        })
        .await
    }

    async fn health(&self, now: DateTime<Utc>) -> Result<Vec<HealthRecord>, StoreError> {
        self.read(move |conn| Box::pin(health::health(conn, now)))
            .await
    }

    async fn sale(&self, id: i64) -> Result<Option<SaleDetail>, StoreError> {
        self.read(move |conn| Box::pin(sale_detail(conn, id))).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventSummary>, StoreError> {
        let mut conditions = Conditions::default();
        conditions.text("partner = $?", &filter.partner);
        conditions.text("outcome = $?", &filter.outcome);
        conditions.text("reason = $?", &filter.reason);
        if let Some(before) = filter.before_id {
            conditions.int("id < $?", before);
        }
        if let Some(from) = filter.from {
            conditions.int("received_at >= $?", from.timestamp_millis());
        }
        if let Some(to) = filter.to {
            conditions.int("received_at < $?", to.timestamp_millis());
        }
        if let Some(venues) = &filter.venue_limit {
            conditions.int_in("venue_id", venues);
        }
        let query = conditions.query(
            &format!("SELECT {EVENT_COLUMNS} FROM events"),
            &format!("ORDER BY id DESC LIMIT {}", filter.limit.clamp(1, 1000)),
        );
        self.read(move |conn| Box::pin(fetch_each(conn, query, event_summary)))
            .await
    }

    async fn event(&self, id: i64) -> Result<Option<EventDetail>, StoreError> {
        self.read(move |conn| Box::pin(event_detail(conn, id)))
            .await
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<PurgeSummary, StoreError> {
        let mut summary = PurgeSummary::default();
        loop {
            let erased = self
                .write(move |conn| Box::pin(retention::purge_events(conn, before, Utc::now())))
                .await?;
            summary.events += erased;
            if erased < retention::BATCH.unsigned_abs() {
                break;
            }
        }
        let (bookings, guests) = self
            .write(move |conn| Box::pin(retention::purge_people(conn, before)))
            .await?;
        summary.bookings = bookings;
        summary.guests = guests;
        Ok(summary)
    }

    async fn ready(&self, within: Duration) -> Result<(), StoreError> {
        let engine = self.engine.clone();
        self.readiness
            .check(within, async move {
                match &engine {
                    Engine::Sqlite(sqlite) => sqlite.ready(within).await,
                    Engine::Postgres(postgres) => postgres.ready(within).await,
                }
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            Box::pin(async move {
                db::query("SELECT 1").fetch_all(conn).await?;
                Ok(())
            })
        })
        .await
    }
}
