//! Abuse without credentials costs the attacker, not the partner.
//!
//! A partner's own rate limit counts authenticated deliveries only. What arrives without
//! valid credentials (an unknown partner name, a missing or wrong signature, a test
//! notification nobody signed) has limits of its own, per partner name and per client
//! address, that never spend a partner's budget: a flood with a wrong token never makes the
//! real partner see a 429. Each refused delivery costs one write with at most
//! [`REFUSED_BODY_KEPT`] bytes of its body, and those bytes come from an hourly budget per
//! partner name, after which only the metadata (headers, size, SHA-256) is recorded.
//!
//! All of it is per node (governor's in-memory limiters), like the partners' rate limits.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};

use crate::config::{RateLimit, RefusalLimits};

/// The most of a refused delivery's body that is stored: enough to see what was sent.
pub const REFUSED_BODY_KEPT: usize = 4096;

/// The key refused deliveries to partner names nobody configured share (no configured
/// partner can be named `*`).
pub(super) const UNKNOWN_PARTNER: &str = "*";

/// How many client addresses the per-client limiter remembers before it forgets the idle
/// ones: an attacker cycling addresses must not grow memory without bound.
const CLIENTS_REMEMBERED: usize = 10_000;

/// A limiter over one stream of requests.
pub(super) type Limiter = governor::DefaultDirectRateLimiter;
type Keyed<K> = governor::DefaultKeyedRateLimiter<K>;

/// A limiter allowing `limit`.
pub(super) fn limiter(limit: RateLimit) -> Limiter {
    governor::RateLimiter::direct(quota(limit))
}

fn quota(limit: RateLimit) -> governor::Quota {
    governor::Quota::per_second(limit.per_second).allow_burst(limit.burst)
}

/// How long to wait before `limiter` lets a request through, if it does not now.
pub(super) fn throttled(limiter: &Limiter) -> Option<Duration> {
    limiter
        .check()
        .err()
        .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

/// The state of those limits on this node.
#[derive(Debug)]
pub(super) struct Refusals {
    per_partner: Keyed<String>,
    per_client: Keyed<IpAddr>,
    body_bytes: Option<Keyed<String>>,
    /// Log lines a partner's own traffic repeats at its rate (each delivery held, refused or
    /// rate limited): [`Refusals::worth_logging`].
    warnings: Keyed<(String, &'static str)>,
}

/// Lines a second logged per partner and kind of warning; the rest are only counted in the
/// metrics (`diarysync_events_total`).
const WARNINGS_PER_SECOND: NonZeroU32 = NonZeroU32::MIN;

impl Refusals {
    pub(super) fn new(limits: RefusalLimits) -> Refusals {
        let body_bytes = NonZeroU32::new(limits.body_bytes_per_hour)
            .map(|bytes| governor::RateLimiter::keyed(governor::Quota::per_hour(bytes)));
        Refusals {
            per_partner: governor::RateLimiter::keyed(quota(limits.per_partner)),
            per_client: governor::RateLimiter::keyed(quota(limits.per_client)),
            body_bytes,
            warnings: governor::RateLimiter::keyed(governor::Quota::per_second(
                WARNINGS_PER_SECOND,
            )),
        }
    }

    /// Whether a warning of `kind` about a configured `partner`'s delivery is logged now: one
    /// a second per partner and kind. A partner over its limit sends thousands a second, and
    /// a line for each filled a node's disk in minutes (about 95 MB in two, found by the
    /// outside attack on issue 17); the metrics count every one of them.
    pub(super) fn worth_logging(&self, partner: &str, kind: &'static str) -> bool {
        self.warnings.check_key(&(partner.to_owned(), kind)).is_ok()
    }

    /// Counts one delivery without valid credentials to `partner` (a configured name or
    /// [`UNKNOWN_PARTNER`]) from `client`: how long to wait when it is over a limit (then it
    /// is answered 429 and not stored).
    pub(super) fn over_limit(&self, partner: &str, client: Option<IpAddr>) -> Option<Duration> {
        let now = DefaultClock::default().now();
        let by_partner = self.per_partner.check_key(&partner.to_owned());
        let by_client = client.map(|client| {
            if self.per_client.len() > CLIENTS_REMEMBERED {
                self.per_client.retain_recent();
            }
            self.per_client.check_key(&client)
        });
        [Some(by_partner), by_client]
            .into_iter()
            .flatten()
            .filter_map(Result::err)
            .map(|not_until| not_until.wait_time_from(now))
            .max()
    }

    /// How many of a refused body's `len` bytes to store: up to [`REFUSED_BODY_KEPT`], while
    /// the partner name's hourly budget lasts; none after it.
    pub(super) fn body_to_keep(&self, partner: &str, len: usize) -> usize {
        let wanted = len.min(REFUSED_BODY_KEPT);
        let Some(budget) = &self.body_bytes else {
            return 0;
        };
        let Some(cells) = u32::try_from(wanted).ok().and_then(NonZeroU32::new) else {
            return 0;
        };
        match budget.check_key_n(&partner.to_owned(), cells) {
            Ok(Ok(())) => wanted,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_partner: u32, per_client: u32, bytes: u32) -> RefusalLimits {
        let rate = |n: u32| RateLimit {
            per_second: NonZeroU32::new(n).expect("nonzero"),
            burst: NonZeroU32::new(n).expect("nonzero"),
        };
        RefusalLimits {
            per_partner: rate(per_partner),
            per_client: rate(per_client),
            body_bytes_per_hour: bytes,
        }
    }

    #[test]
    fn refusals_are_limited_per_partner_name_and_per_client_apart() {
        let refusals = Refusals::new(limits(3, 2, 1 << 20));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(refusals.over_limit("lightspeed", Some(a)), None);
        assert_eq!(refusals.over_limit("lightspeed", Some(a)), None);
        assert!(
            refusals.over_limit("lightspeed", Some(a)).is_some(),
            "a's third"
        );
        // Another client still has its own allowance; the partner name's is spent by then.
        assert!(refusals.over_limit("lightspeed", Some(b)).is_some());
        assert_eq!(refusals.over_limit("checkfront", Some(b)), None);
    }

    #[test]
    fn a_partners_repeated_warnings_are_logged_once_a_second_per_kind() {
        let refusals = Refusals::new(limits(100, 100, 10_000));
        assert!(refusals.worth_logging("lightspeed", "rate limited"));
        assert!(!refusals.worth_logging("lightspeed", "rate limited"));
        assert!(refusals.worth_logging("lightspeed", "refused"), "per kind");
        assert!(
            refusals.worth_logging("checkfront", "rate limited"),
            "per partner"
        );
    }

    #[test]
    fn refused_bodies_are_kept_to_4_kib_until_the_hourly_budget_is_spent() {
        let refusals = Refusals::new(limits(100, 100, 10_000));
        assert_eq!(refusals.body_to_keep("x", 1_000_000), REFUSED_BODY_KEPT);
        assert_eq!(refusals.body_to_keep("x", 100), 100);
        assert_eq!(refusals.body_to_keep("x", 4096), 4096);
        assert_eq!(refusals.body_to_keep("x", 4096), 0, "budget spent");
        assert_eq!(refusals.body_to_keep("y", 10), 10, "per partner name");
        assert_eq!(refusals.body_to_keep("y", 0), 0);
    }
}
