//! A booking platform's sync, written a chunk per transaction.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::SqlStore;
use crate::store::records::{PlatformBooking, SyncOutcome};
use crate::store::{StoreError, platform};

impl SqlStore {
    /// Puts `bookings` [`platform::SYNC_CHUNK`] to a transaction, then cancels what the
    /// platform no longer lists in `cancel_missing`: partners' deliveries to the venue wait
    /// for one chunk at most, not the whole sync.
    pub(super) async fn sync_in_chunks(
        &self,
        venue_id: i64,
        bookings: Vec<(String, PlatformBooking)>,
        cancel_missing: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<SyncOutcome, StoreError> {
        // Written a chunk per transaction (see `platform::SYNC_CHUNK`); the request was
        // validated whole before, and a sync sent again after a failure midway finds the
        // chunks already written unchanged.
        let listed: HashSet<String> = bookings.iter().map(|(r, _)| r.clone()).collect();
        let mut outcome = SyncOutcome::default();
        let mut pending = bookings.into_iter().peekable();
        while pending.peek().is_some() {
            let chunk: Vec<_> = pending.by_ref().take(platform::SYNC_CHUNK).collect();
            let done = self
                .write(move |conn| {
                    Box::pin(async move { platform::put_all(conn, venue_id, &chunk).await })
                })
                .await?;
            outcome.created += done.created;
            outcome.updated += done.updated;
            outcome.unchanged += done.unchanged;
        }
        if let Some(range) = cancel_missing {
            outcome.cancelled = self
                .write(move |conn| {
                    Box::pin(async move {
                        platform::cancel_missing(conn, venue_id, &listed, range).await
                    })
                })
                .await?;
        }
        Ok(outcome)
    }
}
