//! Logging set-up: human-readable or JSON lines, filtered by `RUST_LOG`.
//!
//! Nothing logged anywhere carries a secret or a guest's personal data: spans name the path
//! (never the query string, which may hold a token), and customer types print redacted.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

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
