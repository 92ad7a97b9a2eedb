//! Replayed deliveries, recognised without processing them again.
//!
//! Schemes without a signed timestamp (bearer, basic, API keys, URL tokens, body-only HMAC)
//! cannot tell a captured request sent again from the original. Sale and booking snapshots
//! are versioned, so replaying them changes nothing, but a replayed switch (a Lightspeed
//! DEACTIVATED notice, say) would. This cache remembers, for a window, the deliveries
//! applied recently (keyed by partner, route, event type, query, the body's SHA-256 and the
//! handler's version): the same delivery again within the window is recorded as a duplicate
//! and answered 200 without being applied. Deliveries that were ignored for the state they
//! met (an unknown location, an integration switched off) are not remembered: sent again
//! once that changed, they apply. A partner that sends byte-identical bodies on purpose
//! should sign a timestamp, or run with `replay_window_seconds = 0`.
//!
//! It lives in each node's memory: a replay that reaches another node is caught there by
//! idempotency instead. Bounded: a `moka` cache whose entries live for the window, and which
//! evicts the least used first when full.

use std::time::{Duration, Instant};

use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::store::NewEvent;

/// Deliveries remembered at most.
const CAPACITY: u64 = 200_000;

/// A delivery's identity in the cache.
pub type ReplayKey = [u8; 32];

#[derive(Debug)]
pub struct ReplayCache {
    window: Duration,
    /// The event that accepted a delivery, and when.
    entries: Cache<ReplayKey, (i64, Instant)>,
}

/// What the cache knows of a delivery seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub event_id: i64,
    pub ago: Duration,
}

impl ReplayCache {
    /// A cache remembering deliveries for `window`; a zero window remembers nothing.
    pub fn new(window: Duration) -> ReplayCache {
        ReplayCache {
            window,
            entries: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(window.max(Duration::from_millis(1)))
                .build(),
        }
    }

    /// The key of a delivery as it will be stored (its query already masked).
    pub fn key(event: &NewEvent) -> ReplayKey {
        let mut hasher = Sha256::new();
        for part in [
            event.partner.as_str(),
            event.route,
            event.method.as_str(),
            event.event_type.as_str(),
            event.query.as_deref().unwrap_or_default(),
            event.body_sha256.as_str(),
            event.handler_version.as_deref().unwrap_or_default(),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hasher.finalize().into()
    }

    /// The event that accepted the same delivery within the window, if any.
    pub fn seen(&self, key: &ReplayKey, now: Instant) -> Option<Seen> {
        if self.window.is_zero() {
            return None;
        }
        let (event_id, at) = self.entries.get(key)?;
        let ago = now.saturating_duration_since(at);
        (ago <= self.window).then_some(Seen { event_id, ago })
    }

    /// Remembers that `event_id` accepted the delivery `key` at `now`.
    pub fn remember(&self, key: ReplayKey, event_id: i64, now: Instant) {
        if self.window.is_zero() {
            return;
        }
        self.entries.insert(key, (event_id, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_recognised_within_the_window_only() {
        let cache = ReplayCache::new(Duration::from_secs(300));
        let start = Instant::now();
        let key = [7u8; 32];
        assert_eq!(cache.seen(&key, start), None);
        cache.remember(key, 42, start);
        assert_eq!(
            cache.seen(&key, start + Duration::from_secs(10)),
            Some(Seen {
                event_id: 42,
                ago: Duration::from_secs(10)
            })
        );
        assert_eq!(cache.seen(&key, start + Duration::from_secs(301)), None);
        assert_eq!(cache.seen(&[8u8; 32], start), None);
    }

    #[test]
    fn entries_expire_on_their_own_and_a_zero_window_remembers_nothing() {
        let cache = ReplayCache::new(Duration::from_millis(50));
        let start = Instant::now();
        cache.remember([1u8; 32], 1, start);
        std::thread::sleep(Duration::from_millis(120));
        cache.entries.run_pending_tasks();
        assert_eq!(cache.entries.entry_count(), 0, "the expired one went");
        assert_eq!(cache.seen(&[1u8; 32], start), None);
        let off = ReplayCache::new(Duration::ZERO);
        off.remember([1u8; 32], 1, start);
        assert_eq!(off.seen(&[1u8; 32], start), None);
    }
}
