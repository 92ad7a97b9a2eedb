//! Logs and metrics.
//!
//! Logs: human-readable or JSON lines, filtered by `RUST_LOG`, one span per partner event
//! with its partner, event id and outcome. Nothing logged anywhere carries a secret or a
//! guest's personal data: spans name the path (never the query string, which may hold a
//! token), and customer types print redacted.
//!
//! Metrics: the names below, rendered in Prometheus's text format at `/metrics`. Labels are
//! bounded: partners are the configured ones (`unknown` otherwise), reasons a fixed set,
//! routes their pattern, never a raw path.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Partner events by `partner`, `outcome` and `reason` (empty when there is none).
pub const EVENTS: &str = "diarysync_events_total";
/// Seconds from receiving a partner event to its committed outcome, by `partner`.
pub const EVENT_SECONDS: &str = "diarysync_event_processing_seconds";
/// HTTP request latency in seconds, by `route` (its pattern), `method` and `status`.
pub const REQUEST_SECONDS: &str = "diarysync_http_request_duration_seconds";
/// Sales matched to a booking, by `rule`.
pub const MATCHES: &str = "diarysync_matches_total";
/// Sales that belong to no booking (voided ones aside), read when scraped.
pub const UNMATCHED: &str = "diarysync_unmatched_sales";
/// Seconds a store commit took, by `backend` (SQLite: one group commit).
pub const COMMIT_SECONDS: &str = "diarysync_store_commit_seconds";
/// Writes per SQLite group commit.
pub const BATCH_SIZE: &str = "diarysync_store_batch_writes";
/// CPU seconds the SQLite writer thread spent on one group commit (its writes and its
/// `COMMIT`). Beside [`COMMIT_SECONDS`] it tells a batch slow on the processor from one slow
/// on the disk: the rate of its sum is the share of a core the one writer uses, and the rate
/// of [`COMMIT_SECONDS`]' sum how busy it is (1 is saturated).
pub const WRITER_CPU_SECONDS: &str = "diarysync_store_writer_cpu_seconds";
/// Seconds the `COMMIT` of one SQLite group commit took: writing the batch's pages to the
/// WAL and syncing it.
pub const COMMIT_SYNC_SECONDS: &str = "diarysync_store_commit_sync_seconds";

/// Outbound webhook attempts, by `outcome`: `delivered`, `retrying` (failed, tried again
/// later) or `failed` (given up after the retry period).
pub const WEBHOOK_DELIVERIES: &str = "diarysync_webhook_deliveries_total";
/// Messages waiting for delivery, read when scraped.
pub const WEBHOOK_BACKLOG: &str = "diarysync_webhook_backlog";
/// Age in seconds of the oldest message waiting for delivery (0 when none), read when scraped.
pub const WEBHOOK_OLDEST: &str = "diarysync_webhook_oldest_pending_seconds";
/// Subscriptions disabled (after failing too long, or by an operator), read when scraped.
pub const WEBHOOK_DISABLED: &str = "diarysync_webhook_subscriptions_disabled";
/// 1 while a partner that usually sends events for a venue at this hour of the week has
/// been silent too long, by `partner` and `venue`; 0 once it resumed.
pub const PARTNER_SILENT: &str = "diarysync_partner_silent";

const LATENCY_BUCKETS: [f64; 16] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Installs the global subscriber. Calling it twice keeps the first.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _already_set = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The process's metrics, installed as the global recorder on first use (every app in the
/// process shares it, as they share the process). `None` if another recorder was installed.
pub fn metrics() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(BATCH_SIZE.to_owned()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                })
                .map(PrometheusBuilder::build_recorder);
            let recorder = match recorder {
                Ok(recorder) => recorder,
                Err(error) => {
                    tracing::error!(error = %error, "metrics are off");
                    return None;
                }
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics is empty");
                return None;
            }
            describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EVENTS, "Partner events by partner, outcome and reason");
    describe_histogram!(
        EVENT_SECONDS,
        Unit::Seconds,
        "From receiving a partner event to its committed outcome"
    );
    describe_histogram!(REQUEST_SECONDS, Unit::Seconds, "HTTP request latency");
    describe_counter!(MATCHES, "Sales matched to a booking, by rule");
    describe_gauge!(UNMATCHED, "Sales that belong to no booking");
    describe_histogram!(COMMIT_SECONDS, Unit::Seconds, "Store commit latency");
    describe_histogram!(BATCH_SIZE, "Writes per SQLite group commit");
    describe_histogram!(
        WRITER_CPU_SECONDS,
        Unit::Seconds,
        "CPU time of the SQLite writer thread per group commit"
    );
    describe_histogram!(
        COMMIT_SYNC_SECONDS,
        Unit::Seconds,
        "Time of a SQLite group commit's COMMIT: its WAL write and sync"
    );
    describe_counter!(WEBHOOK_DELIVERIES, "Outbound webhook attempts by outcome");
    describe_gauge!(WEBHOOK_BACKLOG, "Webhook messages waiting for delivery");
    describe_gauge!(
        WEBHOOK_OLDEST,
        Unit::Seconds,
        "Age of the oldest webhook message waiting for delivery"
    );
    describe_gauge!(WEBHOOK_DISABLED, "Webhook subscriptions disabled");
    describe_gauge!(
        PARTNER_SILENT,
        "1 while a partner is unusually silent at a venue, by partner and venue"
    );
}
