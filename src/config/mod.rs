//! The service's configuration: a TOML file, overridable by `DIARYSYNC_*` environment
//! variables, validated once at start so a mistake fails loudly before any request arrives.
//!
//! Secrets (`admin_token`, partner secrets) are [`SecretString`]s that print as `[REDACTED]`;
//! each may be given inline or, better, as the name of an environment variable (`*_env`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use http::HeaderName;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod partners;
mod webhooks;

pub use partners::{AUTH_SCHEMES, STORED_HANDLERS, secret_field, stored_partner};
pub use webhooks::{DEFAULT_DENIED, SilenceSettings, WebhookSettings};

use crate::partners::HandlerSpec;
use crate::partners::auth::{
    AuthScheme, DEFAULT_SIGNATURE_HEADER, DEFAULT_TOKEN_PARAM, DEFAULT_TOLERANCE_SECONDS,
    KeyLocation, SignedPart,
};

/// Top-level keys that `DIARYSYNC_<KEY>` environment variables may override.
const ENV_KEYS: [&str; 29] = [
    "database_writers",
    "sqlite_synchronous",
    "replay_window_seconds",
    "refused_rate_limit_per_second",
    "refused_rate_limit_burst",
    "client_refused_rate_limit_per_second",
    "client_refused_rate_limit_burst",
    "refused_body_bytes_per_hour",
    "client_ip_header",
    "header_read_timeout_ms",
    "body_read_timeout_ms",
    "body_min_bytes_per_second",
    "max_connections",
    "shutdown_timeout_ms",
    "database_connect_timeout_ms",
    "readiness_timeout_ms",
    "retention_days",
    "fetch_interval_ms",
    "fetch_retry_base_ms",
    "listen",
    "public_url",
    "database_url",
    "admin_token",
    "admin_token_env",
    "secret_key",
    "secret_key_env",
    "max_body_bytes",
    "sale_lock_wait_ms",
    "log_format",
];

/// A configuration that passed validation.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// The scheme and authority partners post to, without a trailing slash; the
    /// `hmac-sha256` scheme signs this followed by the path and query.
    pub public_url: String,
    pub database_url: String,
    pub admin_token: SecretString,
    /// The key partners' secrets are sealed with in the database (`secret_key`, 32 bytes in
    /// base64, usually through `secret_key_env`); without it, partners made through the API
    /// cannot hold secrets.
    pub secret_key: Option<SecretString>,
    /// Bodies above this are refused with 413, never truncated.
    pub max_body_bytes: usize,
    /// How long a request waits for another request on the same sale before a 409.
    pub sale_lock_wait: Duration,
    pub log_format: LogFormat,
    /// How often pending fetches are looked for, and the first retry delay (doubling).
    pub fetch: Cadence,
    /// For partners whose scheme carries no timestamp: a delivery identical to one accepted
    /// this recently is recorded as a duplicate and not processed again. Zero: off.
    pub replay_window: Duration,
    /// Raw payloads and guests' personal data older than this are purged (sales figures
    /// stay); `None` keeps everything.
    pub retention: Option<Duration>,
    /// Limits on deliveries without valid credentials (see `gateway::abuse`).
    pub refusals: RefusalLimits,
    /// Where the client's address comes from: the connection's peer, or (behind a proxy
    /// that sets it) the last address of this header.
    pub client_ip_header: Option<HeaderName>,
    /// Deadlines and limits on connections.
    pub connections: ConnectionLimits,
    /// PostgreSQL: how long start-up keeps trying while the server is unreachable.
    pub database_connect_timeout: Duration,
    /// How long `/readyz` waits for its probe write to commit.
    pub readiness_timeout: Duration,
    /// PostgreSQL: writer connections per process, each committing the events waiting for it
    /// in one transaction.
    pub database_writers: usize,
    /// SQLite: whether a commit waits for the disk.
    pub sqlite_synchronous: SqliteSynchronous,
    pub partners: Vec<PartnerConfig>,
    /// `[webhooks]`: pushing the diary's messages to subscriptions.
    pub webhooks: WebhookSettings,
    /// `[silence]`: when a partner's silence at a venue raises `partner.silent`.
    pub silence: SilenceSettings,
}

/// When a SQLite commit is durable (`PRAGMA synchronous`, WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    /// Every commit waits for the disk's flush before any event of it is acknowledged:
    /// nothing acknowledged is lost, on a crash or a power failure. The default.
    #[default]
    Full,
    /// Commits do not wait for the disk; the WAL is flushed at checkpoints. A crash of the
    /// process loses nothing (the operating system has the writes), but a power failure or a
    /// kernel crash loses the events acknowledged since the last flush (at most the
    /// checkpointer's interval, a fraction of a second). An operator's choice, never the
    /// default.
    Normal,
}

impl SqliteSynchronous {
    /// The `PRAGMA synchronous` value.
    pub fn pragma(self) -> &'static str {
        match self {
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Normal => "NORMAL",
        }
    }
}

/// The limits on deliveries without valid credentials (unknown partner names, missing or
/// wrong credentials), which never spend a partner's own rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalLimits {
    /// Refused deliveries per partner name (every unknown name together counts as one).
    pub per_partner: RateLimit,
    /// Refused deliveries per client address.
    pub per_client: RateLimit,
    /// Body bytes of refused deliveries stored per partner name and hour (each keeps at most
    /// its first 4 KiB); 0 stores none.
    pub body_bytes_per_hour: u32,
}

/// Deadlines and limits on the HTTP connections partners and operators open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time allowed for a request's headers. hyper starts it when a connection opens and
    /// again when a kept-alive connection goes idle after a response, so it is also the
    /// idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// The longest pause while a body arrives, and the grace before the minimum rate counts.
    pub body_read_timeout: Duration,
    /// A body must arrive at least this fast on average (after the grace), bytes per second.
    pub body_min_bytes_per_second: u32,
    /// Connections served at once; beyond it new ones wait in the listen queue.
    pub max_connections: usize,
    /// After SIGTERM, how long requests in progress may finish before they are cut.
    pub shutdown_timeout: Duration,
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a `database_url` names.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// How often the worker looks for due fetches, and the first retry delay.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub interval: Duration,
    pub retry_base: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug)]
pub struct PartnerConfig {
    /// The `{partnerName}` path segment.
    pub name: String,
    pub handler: HandlerSpec,
    pub auth: AuthScheme,
    /// Deliveries beyond this are answered 429 with Retry-After; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// How a delivery its handler cannot map is answered (`on_handler_error`).
    pub on_handler_error: HandlerErrors,
    /// The charset of a body that declares none and is not UTF-8 (`undeclared_charset`);
    /// `None`: such a body is malformed.
    pub undeclared_charset: Option<&'static encoding_rs::Encoding>,
}

/// How a delivery is answered when its handler or script cannot build a valid command
/// from it (`invalid_payload`, `script_error`, `script_limit`). The event is stored
/// `failed` either way, and recovered by a replay once the handler is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandlerErrors {
    /// 200: the partner does not retry, the event waits in the log (the default: partners
    /// such as SalesPlay and Checkfront disable a webhook that keeps failing).
    #[default]
    Store,
    /// 500: for partners whose retries are harmless and wanted.
    Retry,
}

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

/// The rate limit of a partner that sets none, and of deliveries to unknown partner names.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    per_second: std::num::NonZeroU32::new(500).expect("nonzero"),
    burst: std::num::NonZeroU32::new(1000).expect("nonzero"),
};

/// Why a configuration was refused, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_listen")]
    listen: String,
    public_url: Option<String>,
    #[serde(default = "default_database_url")]
    database_url: String,
    admin_token: Option<SecretString>,
    secret_key: Option<SecretString>,
    secret_key_env: Option<String>,
    admin_token_env: Option<String>,
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
    #[serde(default = "default_sale_lock_wait_ms")]
    sale_lock_wait_ms: u64,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default = "default_fetch_interval_ms")]
    fetch_interval_ms: u64,
    #[serde(default = "default_fetch_retry_base_ms")]
    fetch_retry_base_ms: u64,
    #[serde(default = "default_replay_window_seconds")]
    replay_window_seconds: u64,
    #[serde(default)]
    retention_days: u64,
    #[serde(default = "default_refused_per_second")]
    refused_rate_limit_per_second: u32,
    #[serde(default = "default_refused_burst")]
    refused_rate_limit_burst: u32,
    #[serde(default = "default_client_refused_per_second")]
    client_refused_rate_limit_per_second: u32,
    #[serde(default = "default_client_refused_burst")]
    client_refused_rate_limit_burst: u32,
    #[serde(default = "default_refused_body_bytes_per_hour")]
    refused_body_bytes_per_hour: u32,
    client_ip_header: Option<String>,
    #[serde(default = "default_header_read_timeout_ms")]
    header_read_timeout_ms: u64,
    #[serde(default = "default_body_read_timeout_ms")]
    body_read_timeout_ms: u64,
    #[serde(default = "default_body_min_bytes_per_second")]
    body_min_bytes_per_second: u32,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_shutdown_timeout_ms")]
    shutdown_timeout_ms: u64,
    #[serde(default = "default_database_connect_timeout_ms")]
    database_connect_timeout_ms: u64,
    #[serde(default = "default_readiness_timeout_ms")]
    readiness_timeout_ms: u64,
    #[serde(default = "default_database_writers")]
    database_writers: usize,
    #[serde(default = "default_sqlite_synchronous")]
    sqlite_synchronous: String,
    #[serde(default)]
    partners: Vec<partners::RawPartner>,
    #[serde(default)]
    webhooks: webhooks::RawWebhooks,
    #[serde(default)]
    silence: webhooks::RawSilence,
}

fn default_refused_per_second() -> u32 {
    20
}
fn default_refused_burst() -> u32 {
    100
}
fn default_client_refused_per_second() -> u32 {
    10
}
fn default_client_refused_burst() -> u32 {
    100
}
fn default_refused_body_bytes_per_hour() -> u32 {
    1024 * 1024
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_body_read_timeout_ms() -> u64 {
    10_000
}
fn default_body_min_bytes_per_second() -> u32 {
    4096
}
fn default_max_connections() -> usize {
    4096
}
fn default_shutdown_timeout_ms() -> u64 {
    10_000
}
fn default_database_connect_timeout_ms() -> u64 {
    30_000
}
fn default_readiness_timeout_ms() -> u64 {
    2_000
}
fn default_database_writers() -> usize {
    4
}
fn default_sqlite_synchronous() -> String {
    "full".to_owned()
}

/// A rate from a per-second count and a burst, both positive.
fn rate(what: &str, per_second: u32, burst: u32) -> Result<RateLimit, ConfigError> {
    let positive = |n: u32, key: &str| {
        std::num::NonZeroU32::new(n).ok_or_else(|| invalid(format!("{what}{key} must be positive")))
    };
    Ok(RateLimit {
        per_second: positive(per_second, "_per_second")?,
        burst: positive(burst, "_burst")?,
    })
}

/// The longest deadline a key may set: a day. Longer is a typo, and would leave shutdown or
/// start-up without a bound.
const LONGEST_MS: u64 = 86_400_000;

/// A positive number of milliseconds, at most a day.
fn millis(key: &str, ms: u64) -> Result<Duration, ConfigError> {
    if ms == 0 || ms > LONGEST_MS {
        return Err(invalid(format!(
            "{key} must be between 1 and {LONGEST_MS} (a day)"
        )));
    }
    Ok(Duration::from_millis(ms))
}

fn default_replay_window_seconds() -> u64 {
    300
}

fn default_fetch_interval_ms() -> u64 {
    1_000
}
fn default_fetch_retry_base_ms() -> u64 {
    5_000
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_database_url() -> String {
    "sqlite://diarysync.db".to_owned()
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_sale_lock_wait_ms() -> u64 {
    2_000
}

impl Config {
    /// Loads `path`, applies `DIARYSYNC_*` overrides, and validates the result.
    ///
    /// # Errors
    /// When the file cannot be read or parsed, or a setting is missing or invalid.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let figment = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed("DIARYSYNC_").only(&ENV_KEYS));
        Self::from_figment(figment)
    }

    /// Parses and validates a configuration given as TOML text (tests, tooling).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let raw: RawConfig = figment.extract().map_err(Box::new)?;
        raw.validate()
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            invalid(format!(
                "listen {:?} is not an address like 127.0.0.1:8080",
                self.listen
            ))
        })?;
        let public_url = self
            .public_url
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(invalid(format!(
                "public_url {public_url:?} must start with http:// or https://"
            )));
        }
        if Backend::of_url(&self.database_url).is_none() {
            return Err(invalid(
                "database_url must start with sqlite:// or postgres://",
            ));
        }
        let admin_token = secret(
            "admin_token",
            self.admin_token,
            self.admin_token_env.as_deref(),
        )?
        .ok_or_else(|| {
            invalid("admin_token (or admin_token_env) is required: it guards the admin API")
        })?;
        if admin_token.expose_secret().len() < 12 {
            return Err(invalid("admin_token must be at least 12 characters"));
        }
        let secret_key = secret(
            "secret_key",
            self.secret_key,
            self.secret_key_env.as_deref(),
        )?;
        if let Some(key) = &secret_key {
            crate::sealed::Sealer::from_base64(key)
                .map_err(|e| invalid(format!("secret_key: {e}")))?;
        }
        if self.max_body_bytes == 0 {
            return Err(invalid("max_body_bytes must be positive"));
        }
        let mut names = HashSet::new();
        let partners = self
            .partners
            .into_iter()
            .map(|partner| {
                if !names.insert(partner.name.clone()) {
                    return Err(invalid(format!(
                        "partner {:?} is configured twice",
                        partner.name
                    )));
                }
                partner.validate()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Config {
            webhooks: self.webhooks.validate()?,
            silence: self.silence.validate()?,
            listen,
            public_url,
            database_url: self.database_url,
            admin_token,
            secret_key,
            max_body_bytes: self.max_body_bytes,
            sale_lock_wait: Duration::from_millis(self.sale_lock_wait_ms),
            log_format: self.log_format,
            fetch: Cadence {
                interval: Duration::from_millis(self.fetch_interval_ms.max(10)),
                retry_base: Duration::from_millis(self.fetch_retry_base_ms.max(10)),
            },
            replay_window: Duration::from_secs(self.replay_window_seconds),
            retention: (self.retention_days > 0)
                .then(|| Duration::from_secs(self.retention_days.saturating_mul(86_400))),
            refusals: RefusalLimits {
                per_partner: rate(
                    "refused_rate_limit",
                    self.refused_rate_limit_per_second,
                    self.refused_rate_limit_burst,
                )?,
                per_client: rate(
                    "client_refused_rate_limit",
                    self.client_refused_rate_limit_per_second,
                    self.client_refused_rate_limit_burst,
                )?,
                body_bytes_per_hour: self.refused_body_bytes_per_hour,
            },
            client_ip_header: self
                .client_ip_header
                .as_deref()
                .map(header_name)
                .transpose()?,
            connections: ConnectionLimits {
                header_read_timeout: millis("header_read_timeout_ms", self.header_read_timeout_ms)?,
                body_read_timeout: millis("body_read_timeout_ms", self.body_read_timeout_ms)?,
                body_min_bytes_per_second: match self.body_min_bytes_per_second {
                    0 => return Err(invalid("body_min_bytes_per_second must be positive")),
                    rate => rate,
                },
                max_connections: match self.max_connections {
                    n @ 1..=1_000_000 => n,
                    _ => return Err(invalid("max_connections must be between 1 and 1000000")),
                },
                shutdown_timeout: millis("shutdown_timeout_ms", self.shutdown_timeout_ms)?,
            },
            database_connect_timeout: match self.database_connect_timeout_ms {
                0 => Duration::ZERO,
                ms => millis("database_connect_timeout_ms", ms)?,
            },
            readiness_timeout: millis("readiness_timeout_ms", self.readiness_timeout_ms)?,
            database_writers: match self.database_writers {
                n @ 1..=64 => n,
                _ => return Err(invalid("database_writers must be between 1 and 64")),
            },
            sqlite_synchronous: match self.sqlite_synchronous.to_ascii_lowercase().as_str() {
                "full" => SqliteSynchronous::Full,
                "normal" => SqliteSynchronous::Normal,
                other => {
                    return Err(invalid(format!(
                        "sqlite_synchronous must be \"full\" or \"normal\", got {other:?}"
                    )));
                }
            },
            partners,
        })
    }
}

/// A secret given inline or through an environment variable; both is a mistake.
fn secret(
    what: &str,
    inline: Option<SecretString>,
    env: Option<&str>,
) -> Result<Option<SecretString>, ConfigError> {
    match (inline, env) {
        (Some(_), Some(_)) => Err(invalid(format!("give {what} or {what}_env, not both"))),
        (Some(value), None) if value.expose_secret().is_empty() => {
            Err(invalid(format!("{what} is empty")))
        }
        (Some(value), None) => Ok(Some(value)),
        (None, Some(var)) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(value.into())),
            _ => Err(invalid(format!(
                "{what}_env names {var}, which is not set or empty"
            ))),
        },
        (None, None) => Ok(None),
    }
}

fn required(
    what: &str,
    inline: Option<SecretString>,
    env: Option<&str>,
) -> Result<SecretString, ConfigError> {
    secret(what, inline, env)?.ok_or_else(|| invalid(format!("{what} (or {what}_env) is required")))
}

fn header_name(name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::try_from(name)
        .map_err(|_| invalid(format!("header {name:?} is not a valid header name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        admin_token = "an-admin-token-for-tests"
        database_url = "sqlite://x.db"
    "#;

    fn with_partner(auth: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!(
            "{BASE}\n[[partners]]\nname = \"ls\"\nhandler = \"lightspeed-kseries\"\n[partners.auth]\n{auth}"
        ))
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../config/example.toml");
        let config = Config::from_toml(text).expect("example config validates");
        assert!(!config.partners.is_empty());
    }

    #[test]
    fn every_scheme_validates_with_its_keys() {
        for auth in [
            "scheme = \"hmac-sha256\"\nsecret = \"s\"",
            "scheme = \"hmac-sha256\"\nsecret = \"s\"\nheader = \"X-Sig\"\nsigned = \"body\"",
            "scheme = \"basic\"\nusername = \"u\"\npassword = \"p\"",
            "scheme = \"bearer\"\ntoken = \"t\"",
            "scheme = \"api-key\"\nheader = \"X-API-SECRET\"\nvalue = \"v\"",
            "scheme = \"api-key\"\nparam = \"key\"\nvalue = \"v\"",
            "scheme = \"url-token\"\nsecret = \"s\"",
            "scheme = \"none\"",
        ] {
            with_partner(auth).unwrap_or_else(|e| panic!("{auth}: {e}"));
        }
    }

    #[test]
    fn mistakes_fail_with_a_message_naming_them() {
        let cases = [
            ("scheme = \"hmac-sha256\"", "secret"),
            (
                "scheme = \"bearer\"\ntoken_env = \"DIARYSYNC_SURELY_UNSET_VAR\"",
                "DIARYSYNC_SURELY_UNSET_VAR",
            ),
            (
                "scheme = \"api-key\"\nvalue = \"v\"",
                "exactly one of header or param",
            ),
            ("scheme = \"oauth\"", "oauth"),
            ("scheme = \"bearer\"\ntoken = \"t\"\ntokn = \"x\"", "tokn"),
            (
                "scheme = \"hmac-sha256\"\nsecret = \"s\"\ntimestamp_header = \"X-T\"\ntolerance_seconds = 0",
                "tolerance_seconds",
            ),
            (
                "scheme = \"basic\"\nusername = \"a:b\"\npassword = \"p\"",
                "without ':'",
            ),
        ];
        for (auth, expected) in cases {
            let error = with_partner(auth).expect_err(auth).to_string();
            assert!(error.contains(expected), "{auth}: {error}");
        }
    }

    #[test]
    fn the_admin_token_is_required_and_never_printed() {
        let error = Config::from_toml("database_url = \"sqlite://x.db\"").expect_err("no token");
        assert!(error.to_string().contains("admin_token"));
        let config = Config::from_toml(BASE).expect("valid");
        assert!(!format!("{config:?}").contains("an-admin-token-for-tests"));
    }
}
