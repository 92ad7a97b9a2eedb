//! Persistence: the [`Store`] trait and its SQL implementation for SQLite and PostgreSQL.
//!
//! One SQL implementation ([`sql::SqlStore`], with `apply` and `bookings`) serves both
//! backends through one thin layer ([`db`]: `$n` statements, typed parameters, owned rows).
//! What differs lives in the engine modules: connections, durability and how writes are
//! batched ([`sqlite`]: one writer thread doing group commit; [`postgres`]: a pool, one
//! transaction per write), migrations, and how the in-flight lock on a sale is taken
//! (in-process on SQLite; a transaction-scoped advisory lock on PostgreSQL, so the guarantee
//! holds across processes).
//!
//! Money is stored as decimal text exactly as the partner wrote it; times as UTC epoch
//! milliseconds.

mod api_budget;
mod apply;
pub mod audit;
mod matching;
pub mod operators;
pub mod partner_registry;
pub mod partner_scripts;
mod rematch;
mod venue;
pub use apply::{FAIL_APPLY_SALE, FAIL_POINT_SALES};
pub mod body;
mod bookings;
pub mod changes;
pub mod db;
mod health;
mod in_flight;
pub mod platform;
pub mod postgres;
pub mod records;
mod retention;
pub mod silence;
mod spend;
pub mod sql;
pub mod sqlite;
mod webhooks;

use chrono::{DateTime, Utc};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::access::Actor;
use crate::domain::{Mapped, Outcome, Reason};
pub use api_budget::FetchClaim;
pub use in_flight::InFlight;
pub use records::*;
/// The concrete store the service runs on.
pub type SqlStoreHandle = sql::SqlStore;

/// Which database a store runs on (the configuration's, where it is read from the URL).
pub use crate::config::Backend;

/// Errors from the store. Internal: logged, never shown to partners in detail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    /// Applying an event failed; its effects are undone, the raw event is kept as `failed`.
    #[error("processing failed: {0}")]
    Processing(#[source] Box<StoreError>),
    /// Another request holds the in-flight lock of the same sale.
    #[error("the same sale is being processed by another request")]
    SaleBusy,
    /// The venue's diary stayed held by another transaction for longer than the write may
    /// wait (PostgreSQL only): retry later.
    #[error("the venue's diary is held by another transaction")]
    VenueBusy,
    /// A write running in a PostgreSQL batch met a lock another transaction holds: it never
    /// waits there (two batches waiting on each other would stall every event of both), so
    /// its savepoint is rolled back and it runs again on its own, where it may wait.
    /// Internal to the store: callers never see it.
    #[error("a lock is held by another transaction")]
    Contended,
    /// A write the caller asked for conflicts with stored data (e.g. a duplicate reference).
    #[error("{0}")]
    Conflict(String),
    /// A referenced row does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Unsupported(String),
    /// A write panicked (a bug, never the input's fault alone): it was rolled back and the
    /// writer went on with the next one.
    #[error("internal error: {0}")]
    Panicked(String),
    /// The store cannot take writes now (its writer stopped, or a probe write did not
    /// commit in time); readiness says so.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the database could not take the work now but may soon, through no fault of
    /// the request: no connection free or possible (a pool's wait ran out, the server's or
    /// the role's connection limit, a connection the server ended or lost), a read-only
    /// server after a failover. Such a request is answered "try again" (503), not as our bug.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::VenueBusy => true,
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => true,
            // Connection exceptions (08), insufficient resources (53: too many
            // connections), operator intervention (57: the session ended, the server
            // shutting down), a read-only transaction (25006), a session the server ended
            // for idling in its transaction (25P03: this node was frozen).
            StoreError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57")
                    || code == "25006"
                    || code == "25P03"
            }),
            StoreError::Processing(cause) => cause.is_transient(),
            _ => false,
        }
    }
}

/// The message a panic carried, for the log and the failed event's detail.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// Runs `work`, turning a panic inside it into [`StoreError::Panicked`]: one write's bug
/// fails that write only, on either backend, and never the writer or the connection.
///
/// # Errors
/// What `work` returns, or [`StoreError::Panicked`].
pub async fn guarded<T>(
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(panic = %message, "a write panicked; it is rolled back alone");
            Err(StoreError::Panicked(message))
        }
    }
}

/// The outcome decided for an event before any processing (rejections, test pings).
#[derive(Debug, Clone)]
pub struct Verdict {
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    pub detail: Option<String>,
}

/// What became of an ingested event, as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    pub event_id: i64,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    pub detail: Option<String>,
    pub venue_id: Option<i64>,
    pub sale_id: Option<i64>,
    /// The rule that matched the event's sale to a booking (`match.rule`), for the metrics.
    pub match_rule: Option<&'static str>,
}

/// A stored event to apply again with a fresh mapping.
#[derive(Debug)]
pub struct Reprocess {
    pub event_id: i64,
    pub mapped: Mapped,
    pub handler_version: Option<String>,
    pub lock_keys: Vec<SaleKey>,
}

/// The in-flight lock keys of one event: `(partner, location id, what it locks)`, where what
/// it locks is a sale's external id or `booking:<key>` for a platform's booking
/// ([`crate::domain::Command::lock_subject`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaleKey {
    pub partner: String,
    pub location_id: String,
    pub external_id: String,
}

/// Everything the service persists and reads back.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    fn backend(&self) -> Backend;

    /// Stores a raw event and, in the same transaction, applies what its handler mapped it to,
    /// then records the outcome. The raw event is written first and processing runs in a
    /// savepoint, so a processing failure still commits the event with outcome `failed`.
    /// Returns only after the commit is durable.
    ///
    /// # Errors
    /// [`StoreError::SaleBusy`] when `lock_keys` stay held elsewhere for longer than
    /// `lock_wait`; other errors when nothing could be committed.
    async fn ingest(
        &self,
        event: NewEvent,
        mapped: Mapped,
        lock_keys: &[SaleKey],
        lock_wait: Duration,
    ) -> Result<Ingested, StoreError>;

    /// Stored events matching `filter` with ids above `after_id`, oldest first.
    async fn replayable(
        &self,
        filter: &ReplayFilter,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    async fn count_replayable(&self, filter: &ReplayFilter) -> Result<i64, StoreError>;

    /// Applies a fresh mapping of a stored event, in one transaction, and records the new
    /// outcome on the event. Idempotent: an event that was processed and now maps to a
    /// duplicate of what is stored keeps its `processed` outcome.
    async fn reprocess(
        &self,
        event_id: i64,
        mapped: Mapped,
        handler_version: Option<String>,
        lock_keys: &[SaleKey],
        lock_wait: Duration,
    ) -> Result<Ingested, StoreError>;

    /// [`Store::reprocess`] for many stored events in one transaction (on SQLite, one group
    /// commit), in order, each in its own savepoint: one event's failure is its own result
    /// and does not undo the others. Replay goes through here.
    ///
    /// # Errors
    /// [`StoreError::SaleBusy`] when the batch's sales stay held elsewhere for longer than
    /// `lock_wait`; other errors when nothing could be committed.
    async fn reprocess_batch(
        &self,
        batch: Vec<Reprocess>,
        lock_wait: Duration,
    ) -> Result<Vec<Result<Ingested, StoreError>>, StoreError>;

    /// Pending events whose next fetch is due at `now`, oldest first.
    async fn due_fetches(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Claims a due pending event for one fetch until `lease_until`, counting the call
    /// against its API `channel`'s hour: [`FetchClaim::Claimed`] for exactly one caller,
    /// however many nodes found it due, so a booking is fetched once; nothing claimed and
    /// nothing counted when the channel has no call left this hour or was asked to wait
    /// ([`FetchClaim::OverBudget`]; it stays due). A node that dies mid-fetch lets the
    /// lease run out, and another node fetches it then.
    async fn claim_fetch(
        &self,
        event_id: i64,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
        channel: &str,
        hourly_limit: u32,
    ) -> Result<FetchClaim, StoreError>;
    /// Leaves a partner API `channel` alone until `until`, on every process.
    async fn quiet_api(
        &self,
        channel: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError>;
    /// Records a failed fetch of a pending event: it stays `pending` until `retry_at`, or,
    /// without one, is given up as `failed` (`fetch_failed`).
    async fn fetch_failed(
        &self,
        event_id: i64,
        attempts: i64,
        retry_at: Option<chrono::DateTime<chrono::Utc>>,
        detail: &str,
    ) -> Result<(), StoreError>;

    /// Stores a raw event with an outcome decided without processing it.
    async fn record(&self, event: NewEvent, verdict: Verdict) -> Result<i64, StoreError>;

    /// Creates a venue, recorded in the audit trail as `venue.create` by `by`.
    async fn create_venue(&self, venue: NewVenue, by: Actor) -> Result<VenueRecord, StoreError>;
    async fn venue(&self, id: i64) -> Result<Option<VenueRecord>, StoreError>;
    /// Every venue, by name.
    async fn venues(&self) -> Result<Vec<VenueRecord>, StoreError>;
    /// Maps a partner location to a venue, recorded as `venue.location_add`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown venue; [`StoreError::Conflict`] when the
    /// location belongs to a venue already.
    async fn add_location(
        &self,
        venue_id: i64,
        location: NewLocation,
        by: Actor,
    ) -> Result<(), StoreError>;
    /// Changes a venue's settings, recorded as `venue.change` with the settings before and after.
    async fn update_venue(
        &self,
        id: i64,
        changes: VenueChanges,
        by: Actor,
    ) -> Result<(), StoreError>;

    /// Creates a booking, links its guest profile, and matches the venue's waiting sales to it.
    /// Recorded as `booking.create`.
    async fn create_booking(
        &self,
        venue_id: i64,
        booking: NewBooking,
        by: Actor,
    ) -> Result<i64, StoreError>;
    /// Changes a booking (an operator's status change is recorded as `manual`) and matches
    /// again the sales the change concerns.
    /// Recorded as `booking.cancel` when it cancels, else `booking.change`.
    async fn update_booking(
        &self,
        id: i64,
        changes: BookingChanges,
        by: Actor,
    ) -> Result<(), StoreError>;
    async fn booking(&self, id: i64) -> Result<Option<BookingView>, StoreError>;
    /// The bookings that start on a local day of the venue, with their sales and spend.
    async fn diary(&self, venue_id: i64, date: chrono::NaiveDate) -> Result<DiaryView, StoreError>;
    async fn guest(&self, id: i64) -> Result<Option<GuestView>, StoreError>;

    /// Creates or replaces the venue's booking the platform calls `reference`; the same
    /// booking twice writes nothing the second time (`PutResult::Unchanged`).
    async fn put_booking(
        &self,
        venue_id: i64,
        reference: String,
        booking: PlatformBooking,
    ) -> Result<PutOutcome, StoreError>;
    /// Puts every booking (at most `platform::MAX_SYNC`), `platform::SYNC_CHUNK` to a
    /// transaction so partners' deliveries never wait for the whole sync; with
    /// `cancel_missing`, cancels the platform's bookings starting in that span it no longer
    /// lists.
    async fn sync_bookings(
        &self,
        venue_id: i64,
        bookings: Vec<(String, PlatformBooking)>,
        cancel_missing: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<SyncOutcome, StoreError>;
    async fn booking_page(&self, filter: BookingPageFilter) -> Result<BookingPage, StoreError>;
    /// Up to `limit` changes after feed position `after`, in commit order.
    async fn changes(
        &self,
        after: i64,
        limit: i64,
        venue: Option<i64>,
    ) -> Result<Vec<ChangeRecord>, StoreError>;

    async fn create_subscription(
        &self,
        new: NewSubscription,
    ) -> Result<SubscriptionRecord, StoreError>;
    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>, StoreError>;
    async fn subscription(&self, id: i64) -> Result<Option<SubscriptionRecord>, StoreError>;
    async fn update_subscription(
        &self,
        id: i64,
        changes: SubscriptionChanges,
    ) -> Result<SubscriptionRecord, StoreError>;
    async fn delete_subscription(&self, id: i64) -> Result<(), StoreError>;
    /// Queues the messages of newly committed changes for the subscriptions that want them.
    async fn queue_webhooks(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Claims due messages for sending until `lease_until`, none of the subscriptions in
    /// `skip` (see `webhooks::claim`).
    async fn claim_webhooks(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        skip: Vec<i64>,
    ) -> Result<Vec<ClaimedMessage>, StoreError>;
    /// Lets claimed messages go unsent (their claims end now).
    async fn release_webhooks(&self, rows: Vec<i64>) -> Result<(), StoreError>;
    async fn finish_webhook(
        &self,
        message: ClaimedMessage,
        attempt: Attempt,
        now: DateTime<Utc>,
        disable_after: Duration,
    ) -> Result<(), StoreError>;
    async fn webhook_messages(
        &self,
        subscription_id: i64,
        state: Option<String>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<WebhookMessageRecord>, StoreError>;
    async fn resend_webhooks(&self, filter: ResendFilter) -> Result<u64, StoreError>;
    async fn webhook_backlog(&self) -> Result<WebhookBacklog, StoreError>;

    /// Every partner and venue with events in the rule's weeks, with what is usual now.
    async fn partner_traffic(
        &self,
        now: DateTime<Utc>,
        rule: silence::SilenceRule,
    ) -> Result<Vec<silence::Traffic>, StoreError>;
    /// Raises (`silent`) or clears a partner's silence at a venue, announcing it as
    /// `partner.silent` or `partner.resumed` if no other node already did; returns whether
    /// this one did.
    async fn set_silence(
        &self,
        traffic: silence::Traffic,
        silent: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// `(partner, venue, silent now)` for every pair ever found silent.
    async fn silences(&self) -> Result<Vec<(String, i64, bool)>, StoreError>;

    /// Links a sale to a booking by hand; automatic rules never override it.
    /// Recorded as `sale.match`, with the sale's match before and after.
    async fn match_sale(&self, sale_id: i64, booking_id: i64, by: Actor) -> Result<(), StoreError>;
    /// Unlinks a sale by hand; automatic rules never link it again.
    /// Recorded as `sale.unmatch`.
    async fn unmatch_sale(&self, sale_id: i64, by: Actor) -> Result<(), StoreError>;
    async fn sales(&self, filter: &SaleFilter) -> Result<Vec<SaleRecord>, StoreError>;
    /// Bookings an operator might match an unmatched or ambiguous sale to, best first, each
    /// with its reason; `None` when there is no such sale.
    async fn suggestions(
        &self,
        sale_id: i64,
        limit: usize,
    ) -> Result<Option<Vec<SuggestionRecord>>, StoreError>;
    /// Sales of any venue that belong to no booking (voided ones aside).
    async fn unmatched_sales(&self) -> Result<i64, StoreError>;
    /// How each partner's events fared per venue in the last hour and day before `now`.
    async fn health(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<HealthRecord>, StoreError>;
    async fn sale(&self, id: i64) -> Result<Option<SaleDetail>, StoreError>;
    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventSummary>, StoreError>;
    async fn event(&self, id: i64) -> Result<Option<EventDetail>, StoreError>;

    /// Erases raw payloads received, and guests' personal data of bookings that ended,
    /// before `before` (see `store::retention`); sales figures stay.
    async fn purge(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<PurgeSummary, StoreError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether a write can commit now: a probe write commits within `within` (and, on
    /// SQLite, the writer thread is alive).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] saying why not.
    async fn ready(&self, within: Duration) -> Result<(), StoreError>;
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// PostgreSQL: how long to keep trying while the server is unreachable (zero: once).
    pub connect_for: Duration,
    /// SQLite: take the database for this process alone, so a second process writing to
    /// the same file refuses to start instead of sharing SQLite's locks in silence.
    pub exclusive: bool,
    /// PostgreSQL: writer connections that batch events (zero: the default,
    /// [`postgres::DEFAULT_WRITERS`]).
    pub writers: usize,
    /// SQLite: whether a commit waits for the disk.
    pub synchronous: crate::config::SqliteSynchronous,
}

/// Opens (and migrates) the store a `database_url` names, trying once, shared.
///
/// # Errors
/// As [`open_with`].
pub async fn open(database_url: &str) -> Result<sql::SqlStore, StoreError> {
    open_with(database_url, OpenOptions::default()).await
}

/// Opens (and migrates) the store a `database_url` names.
///
/// # Errors
/// When the URL names no supported backend, the database cannot be reached in time, another
/// process holds it (SQLite, `exclusive`), or the migrations fail.
pub async fn open_with(
    database_url: &str,
    options: OpenOptions,
) -> Result<sql::SqlStore, StoreError> {
    match Backend::of_url(database_url) {
        Some(Backend::Sqlite) => Ok(sql::SqlStore::sqlite(
            sqlite::open(database_url, options.exclusive, options.synchronous).await?,
        )),
        Some(Backend::Postgres) => Ok(sql::SqlStore::postgres(
            postgres::open(
                database_url,
                options.connect_for,
                if options.writers == 0 {
                    postgres::DEFAULT_WRITERS
                } else {
                    options.writers
                },
            )
            .await?,
        )),
        None => Err(StoreError::Unsupported(format!(
            "database_url must start with sqlite: or postgres://, got scheme {:?}",
            database_url.split(':').next().unwrap_or_default()
        ))),
    }
}
