//! `[webhooks]`: how the diary's messages are pushed to subscriptions, and `[silence]`: when a
//! partner's silence is an incident.

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, invalid};

/// Address ranges a subscription's URL may not reach unless allowed: loopback, private,
/// link-local (cloud metadata services), carrier-grade NAT, multicast and reserved ranges, and
/// their IPv6 counterparts. A subscription must not become a way to probe internal services.
pub const DEFAULT_DENIED: [&str; 31] = [
    // IPv4: "this" network, private, carrier-grade NAT, loopback, link-local (cloud
    // metadata), IETF protocol assignments, documentation, 6to4 relays, benchmarking,
    // multicast, reserved and broadcast; Azure's host endpoint.
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "168.63.129.16/32",
    // IPv6: unspecified, loopback, IPv4-compatible, IPv4-mapped and IPv4-translated (an IPv4
    // address inside), NAT64 (well-known and local), discard, Teredo and 6to4 (IPv4 inside
    // again), documentation, unique local, site-local, link-local, multicast.
    "::/128",
    "::1/128",
    "::/96",
    "::ffff:0:0/96",
    "::ffff:0:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/32",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fec0::/10",
    "fe80::/10",
    "ff00::/8",
];

/// The dispatcher's settings.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The first retry's delay; each later one doubles, with jitter, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long a message is retried before it is given up as `failed` (three days).
    pub retry_for: Duration,
    /// How long a subscription may fail every attempt before it is disabled (four days).
    pub disable_after: Duration,
    /// How often the dispatcher looks for messages (a local commit also wakes it).
    pub poll_interval: Duration,
    /// One attempt's deadline, connecting included.
    pub timeout: Duration,
    /// Attempts in flight at once per node.
    pub concurrency: usize,
    /// Ranges a subscription's URL may not resolve into...
    pub denied: Vec<IpNet>,
    /// ...unless they are in one of these (a platform on the same private network, tests).
    pub allowed: Vec<IpNet>,
}

/// When a partner's silence at a venue is an incident.
#[derive(Debug, Clone)]
pub struct SilenceSettings {
    /// Silent this long, at an hour of the week the venue usually sends events in.
    pub after: Duration,
    /// How often silence is checked.
    pub check_interval: Duration,
    /// Weeks of history that make an hour of the week "usual".
    pub history_weeks: u32,
    /// Events at that hour, on average over the history, for it to count as usual.
    pub min_events_per_hour: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhooks {
    #[serde(default = "default_retry_base_ms")]
    retry_base_ms: u64,
    #[serde(default = "default_retry_max_ms")]
    retry_max_ms: u64,
    #[serde(default = "default_retry_for_seconds")]
    retry_for_seconds: u64,
    #[serde(default = "default_disable_after_seconds")]
    disable_after_seconds: u64,
    #[serde(default = "default_poll_interval_ms")]
    poll_interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    deny_networks: Option<Vec<String>>,
    #[serde(default)]
    allow_networks: Vec<String>,
}

impl Default for RawWebhooks {
    fn default() -> Self {
        RawWebhooks {
            retry_base_ms: default_retry_base_ms(),
            retry_max_ms: default_retry_max_ms(),
            retry_for_seconds: default_retry_for_seconds(),
            disable_after_seconds: default_disable_after_seconds(),
            poll_interval_ms: default_poll_interval_ms(),
            timeout_ms: default_timeout_ms(),
            concurrency: default_concurrency(),
            deny_networks: None,
            allow_networks: Vec::new(),
        }
    }
}

fn default_retry_base_ms() -> u64 {
    5_000
}
fn default_retry_max_ms() -> u64 {
    2 * 3_600_000
}
/// Three days.
fn default_retry_for_seconds() -> u64 {
    3 * 86_400
}
/// Four days: a receiver down for the whole retry period is disabled a day after its oldest
/// messages were given up.
fn default_disable_after_seconds() -> u64 {
    4 * 86_400
}
fn default_poll_interval_ms() -> u64 {
    500
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_concurrency() -> usize {
    16
}

/// The longest retry or failing period: a year.
const LONGEST_SECONDS: u64 = 365 * 86_400;

/// Seconds as a duration, at least one and at most a year.
fn seconds(key: &str, seconds: u64) -> Result<Duration, ConfigError> {
    if !(1..=LONGEST_SECONDS).contains(&seconds) {
        return Err(invalid(format!(
            "webhooks.{key} must be between 1 and {LONGEST_SECONDS} (a year)"
        )));
    }
    Ok(Duration::from_secs(seconds))
}

fn networks(key: &str, ranges: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    ranges
        .iter()
        .map(|range| {
            range.trim().parse::<IpNet>().or_else(|_| {
                range
                    .trim()
                    .parse::<std::net::IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| {
                        invalid(format!(
                            "webhooks.{key}: {range:?} is not an address range like 10.0.0.0/8"
                        ))
                    })
            })
        })
        .collect()
}

impl RawWebhooks {
    pub(super) fn validate(self) -> Result<WebhookSettings, ConfigError> {
        let retry_base = super::millis("webhooks.retry_base_ms", self.retry_base_ms)?;
        let retry_max = super::millis("webhooks.retry_max_ms", self.retry_max_ms)?;
        if retry_max < retry_base {
            return Err(invalid(
                "webhooks.retry_max_ms must not be below webhooks.retry_base_ms",
            ));
        }
        if !(1..=1_024).contains(&self.concurrency) {
            return Err(invalid("webhooks.concurrency must be between 1 and 1024"));
        }
        let denied = match &self.deny_networks {
            Some(ranges) => networks("deny_networks", ranges)?,
            None => networks("deny_networks", &DEFAULT_DENIED.map(str::to_owned))?,
        };
        Ok(WebhookSettings {
            retry_base,
            retry_max,
            retry_for: seconds("retry_for_seconds", self.retry_for_seconds)?,
            disable_after: seconds("disable_after_seconds", self.disable_after_seconds)?,
            poll_interval: super::millis("webhooks.poll_interval_ms", self.poll_interval_ms)?,
            timeout: super::millis("webhooks.timeout_ms", self.timeout_ms)?,
            concurrency: self.concurrency,
            denied,
            allowed: networks("allow_networks", &self.allow_networks)?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSilence {
    #[serde(default = "default_silent_after_minutes")]
    after_minutes: u64,
    #[serde(default = "default_silence_check_ms")]
    check_interval_ms: u64,
    #[serde(default = "default_history_weeks")]
    history_weeks: u32,
    #[serde(default = "default_min_events_per_hour")]
    min_events_per_hour: f64,
}

impl Default for RawSilence {
    fn default() -> Self {
        RawSilence {
            after_minutes: default_silent_after_minutes(),
            check_interval_ms: default_silence_check_ms(),
            history_weeks: default_history_weeks(),
            min_events_per_hour: default_min_events_per_hour(),
        }
    }
}

fn default_silent_after_minutes() -> u64 {
    60
}
fn default_silence_check_ms() -> u64 {
    60_000
}
fn default_history_weeks() -> u32 {
    4
}
fn default_min_events_per_hour() -> f64 {
    1.0
}

impl RawSilence {
    pub(super) fn validate(self) -> Result<SilenceSettings, ConfigError> {
        if !(1..=10_080).contains(&self.after_minutes) {
            return Err(invalid(
                "silence.after_minutes must be between 1 and 10080 (a week)",
            ));
        }
        if !(1..=52).contains(&self.history_weeks) {
            return Err(invalid("silence.history_weeks must be between 1 and 52"));
        }
        if !(self.min_events_per_hour.is_finite() && self.min_events_per_hour > 0.0) {
            return Err(invalid("silence.min_events_per_hour must be positive"));
        }
        Ok(SilenceSettings {
            after: Duration::from_secs(self.after_minutes * 60),
            check_interval: super::millis("silence.check_interval_ms", self.check_interval_ms)?,
            history_weeks: self.history_weeks,
            min_events_per_hour: self.min_events_per_hour,
        })
    }
}
