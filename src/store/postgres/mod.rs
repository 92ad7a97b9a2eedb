//! The PostgreSQL engine: the scale-out path, several stateless processes on one database.
//!
//! Each write is its own transaction on a pooled connection; PostgreSQL's own group commit
//! shares WAL flushes between concurrent commits. The in-flight lock on a sale must hold
//! across processes, so it lives in the database: a transaction-scoped advisory lock per
//! sale, taken before the event is written and released by the commit. A request that cannot
//! get it within the wait is answered 409.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::db::{BoxFuture, Conn, LockWait, Pending};
use super::{SaleKey, StoreError};

mod deferred;
mod writer;
pub use super::venue::FAIL_HOLDING_VENUE;
pub use writer::FAIL_BETWEEN_BATCHES;

/// The schema, in order; the `diarysync_schema` table records how many are applied.
const MIGRATIONS: [(&str, &str); 13] = [
    (
        "0001_init",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_fast_ingest",
        include_str!("../../../migrations/postgres/0002_fast_ingest.sql"),
    ),
    (
        "0003_retention",
        include_str!("../../../migrations/postgres/0003_retention.sql"),
    ),
    (
        "0004_resilience",
        include_str!("../../../migrations/postgres/0004_resilience.sql"),
    ),
    (
        "0005_partner_rank",
        include_str!("../../../migrations/postgres/0005_partner_rank.sql"),
    ),
    (
        "0006_api_budget",
        include_str!("../../../migrations/postgres/0006_api_budget.sql"),
    ),
    (
        "0007_floor_truth",
        include_str!("../../../migrations/postgres/0007_floor_truth.sql"),
    ),
    (
        "0008_table_history",
        include_str!("../../../migrations/postgres/0008_table_history.sql"),
    ),
    (
        "0009_platform_link",
        include_str!("../../../migrations/postgres/0009_platform_link.sql"),
    ),
    (
        "0010_operators",
        include_str!("../../../migrations/postgres/0010_operators.sql"),
    ),
    (
        "0011_partner_registry",
        include_str!("../../../migrations/postgres/0011_partner_registry.sql"),
    ),
    (
        "0012_partner_scripts",
        include_str!("../../../migrations/postgres/0012_partner_scripts.sql"),
    ),
    (
        "0013_event_replays",
        include_str!("../../../migrations/postgres/0013_event_replays.sql"),
    ),
];

/// A `fail` point in the migrations' transaction, its lock held: the test that proves a node
/// frozen while migrating does not keep the others from starting stops there.
pub const FAIL_MIGRATING: &str = "postgres-migrating";

/// The advisory lock held while migrating, so nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6469_6172_7973_796e;

/// Connections per process: most of a transaction's time is round trips and the commit's
/// flush, so more transactions in flight than cores keep both busy.
const POOL_SIZE: u32 = 32;

/// PostgreSQL's SQLSTATE for `lock_timeout` expiring.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Settings every session of ours starts with, so that one node that stops (frozen by
/// `SIGSTOP`, a stalled VM, a network partition) cannot hold the others up for long:
/// - `idle_in_transaction_session_timeout`: a transaction of ours never sits idle between
///   two statements for more than milliseconds (no handler, no outbound call runs inside
///   one), so one idle for 10 s belongs to a node that stopped. PostgreSQL ends its session,
///   which rolls it back and releases its sale and venue locks.
/// - `lock_timeout`: no wait for a lock lasts longer than 10 s (the wait for a sale or a
///   venue during a delivery is shorter, see `lock_sales` and `lock_venue`), so a held lock
///   costs the writes behind it an error they can retry, never a pool of stuck connections.
/// - TCP keepalives: a node gone from the network is noticed by the server in about 25 s
///   instead of the kernel's two hours, for sessions idle outside a transaction too.
const SESSION_SETTINGS: [(&str, &str); 5] = [
    ("idle_in_transaction_session_timeout", "10s"),
    ("lock_timeout", "10s"),
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
];

/// A pool on one database, and the writers that batch its events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Postgres {
    pool: PgPool,
    writers: std::sync::Arc<writer::Writers>,
}

/// Writer connections per process by default: enough to keep PostgreSQL's cores busy while
/// each waits for its round trips, few enough that they do not contend for them.
pub const DEFAULT_WRITERS: usize = 4;

/// How long a pooled connection is waited for before a write or read fails: far longer
/// than any transaction, far shorter than a partner's patience.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to and migrates the database at `url` (`postgres://...`). While the server is
/// unreachable or starting up, tries again with exponential back-off and jitter for up to
/// `connect_for`, logging the host, port and underlying error of each failed attempt; a
/// refusal that waiting cannot fix (bad password, no such database) fails at once.
///
/// # Errors
/// [`StoreError::Unavailable`] naming the host, port and last error when no connection
/// could be made in time; a migration's failure.
pub async fn open(
    url: &str,
    connect_for: Duration,
    writers: usize,
) -> Result<Postgres, StoreError> {
    use backon::Retryable as _;
    use sqlx::ConnectOptions as _;
    use sqlx::postgres::PgConnectOptions;
    let options: PgConnectOptions = url.parse().map_err(|e| {
        StoreError::Unsupported(format!("database_url is not a PostgreSQL URL: {e}"))
    })?;
    let options = options
        .options(SESSION_SETTINGS)
        .application_name("diarysync");
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times();
    let last_error = std::sync::Mutex::new(String::new());
    let attempts = (|| options.connect())
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|error| !connect_for.is_zero() && worth_waiting_for(error))
        .notify(|error, wait| {
            tracing::warn!(server = %target, error = %error, retry_in_ms = wait.as_millis(),
                "PostgreSQL is not reachable yet");
            if let Ok(mut last) = last_error.lock() {
                *last = error.to_string();
            }
        });
    let unreachable = |error: String| {
        StoreError::Unavailable(format!(
            "cannot connect to PostgreSQL at {target} (tried for {} s): {error}",
            connect_for.as_secs_f64()
        ))
    };
    let first = if connect_for.is_zero() {
        attempts.await.map_err(|e| unreachable(e.to_string()))?
    } else {
        match tokio::time::timeout(connect_for, attempts).await {
            Ok(connected) => connected.map_err(|e| unreachable(e.to_string()))?,
            Err(_) => {
                let last = last_error
                    .lock()
                    .map(|last| last.clone())
                    .unwrap_or_default();
                let last = if last.is_empty() {
                    "no answer to any attempt".to_owned()
                } else {
                    last
                };
                return Err(unreachable(last));
            }
        }
    };
    drop(first);
    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(options.clone());
    migrate(&pool).await?;
    let writers = std::sync::Arc::new(writer::Writers::start(&options, &pool, writers)?);
    Ok(Postgres { pool, writers })
}

/// Whether a failed connection attempt may succeed later: the server down, restarting or
/// full, a network fault; not a wrong password or a missing database.
fn worth_waiting_for(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        // cannot_connect_now (starting up or shutting down), too_many_connections,
        // admin_shutdown, crash_shutdown.
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("57P03" | "53300" | "57P01" | "57P02")
        ),
        _ => false,
    }
}

/// Applies the migrations not yet applied, in one transaction that holds the migration lock
/// for as long as it lasts.
///
/// A transaction's lock, tried and tried again, not a session's lock waited for: a node
/// frozen during its start (SIGSTOP, a paused VM) held the session lock while idle, which no
/// server timeout ends, and every node started after it waited silently for as long as the
/// freeze lasted (found by the outside attack on issue 15). A frozen transaction is ended by
/// `idle_in_transaction_session_timeout`, and a node waiting says so every 5 s.
async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    use sqlx::Connection as _;
    let mut conn = pool.acquire().await?;
    let waiting_since = std::time::Instant::now();
    let mut said = waiting_since;
    loop {
        let mut tx = conn.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if locked {
            fail::fail_point!(FAIL_MIGRATING);
            // However long another node's traffic holds a table a migration alters.
            sqlx::query("SET LOCAL lock_timeout = 0")
                .execute(&mut *tx)
                .await?;
            apply_migrations(&mut tx).await?;
            tx.commit().await?;
            return Ok(());
        }
        tx.rollback().await?;
        if said.elapsed() >= Duration::from_secs(5) {
            said = std::time::Instant::now();
            tracing::warn!(
                waited_s = waiting_since.elapsed().as_secs(),
                "waiting for another node to finish migrating the database"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn apply_migrations(conn: &mut PgConnection) -> Result<(), StoreError> {
    use sqlx::Connection;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS diarysync_schema (version BIGINT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    let mut version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM diarysync_schema")
        .fetch_one(&mut *conn)
        .await?;
    if version.is_none() {
        // Databases created before this runner recorded their migrations the sqlx way.
        let sqlx_table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&mut *conn)
                .await?;
        if sqlx_table.is_some() {
            version = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut *conn)
                .await?;
        }
    }
    let applied = version.unwrap_or(0);
    for (number, (name, sql)) in (1i64..).zip(MIGRATIONS) {
        if number <= applied {
            continue;
        }
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Unsupported(format!("migration {name}: {e}")))?;
        sqlx::query("DELETE FROM diarysync_schema")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO diarysync_schema (version) VALUES ($1)")
            .bind(number)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(migration = name, "applied");
    }
    Ok(())
}

/// Runs `op` in a transaction of its own on a pooled connection and commits it; locks are
/// waited for.
///
/// # Errors
/// What `op` returns (the transaction is rolled back), or the commit's failure.
async fn solo<T, F>(pool: &PgPool, op: F) -> Result<T, StoreError>
where
    F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>,
{
    use sqlx::Connection as _;
    let mut pooled = pool.acquire().await?;
    let result = {
        let mut tx = pooled.begin().await?;
        // A panic in one write fails that write alone: the transaction is rolled back when
        // it is dropped, and the connection goes back to the pool.
        match super::guarded(op(&mut Conn::postgres(&mut tx))).await {
            Ok(value) => {
                let committing = std::time::Instant::now();
                match tx.commit().await {
                    Ok(()) => {
                        metrics::histogram!(crate::telemetry::COMMIT_SECONDS, "backend" => "postgres")
                            .record(committing.elapsed().as_secs_f64());
                        Ok(value)
                    }
                    Err(error) => Err(error.into()),
                }
            }
            Err(error) => {
                let _ = tx.rollback().await;
                Err(error)
            }
        }
    };
    // A session that turned out read-only (it connected while the server was, or to a
    // standby) would fail every write it is given: closed, not returned to the pool.
    if result.as_ref().err().is_some_and(is_read_only) {
        pooled.close_on_drop();
    }
    result
}

/// Whether `error` is PostgreSQL refusing a write in a read-only transaction (SQLSTATE
/// 25006), however deep in a processing failure.
pub(super) fn is_read_only(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(db)) => db.code().as_deref() == Some("25006"),
        StoreError::Processing(cause) => is_read_only(cause),
        _ => false,
    }
}

impl Postgres {
    /// Runs `op` in a transaction of its own and commits it.
    ///
    /// # Errors
    /// What `op` returns (the transaction is rolled back), or the commit's failure.
    pub async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>,
    {
        solo(&self.pool, op).await
    }

    /// Queues `op` for the next batch of a writer (see `writer`): the writer `route` picks,
    /// so writes with the same route never contend with each other, and run in the order
    /// they were queued. `op` runs again alone if it met a lock another transaction holds.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] once the store is closed.
    pub async fn submit<T, F>(
        &self,
        route: Option<u64>,
        bytes: usize,
        op: F,
    ) -> Result<Pending<T>, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'c> Fn(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + Sync
            + 'static,
    {
        self.writers.submit(route, bytes, op).await
    }

    /// Runs `op` on a pooled connection, outside any transaction.
    ///
    /// # Errors
    /// What `op` returns, or a failure to get a connection.
    pub async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>,
    {
        let mut conn = self.pool.acquire().await?;
        op(&mut Conn::postgres(&mut conn)).await
    }

    /// Completes with the reason once a writer thread has died: the process must restart.
    pub fn died(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.writers.died()
    }

    pub async fn close(&self) {
        self.writers.close();
        self.pool.close().await;
    }

    /// Whether a write can commit now: a probe transaction (one heartbeat row, so a
    /// read-only server after a failover shows too) commits within `within`, and every
    /// writer commits a probe of its own on its connection within it, before the writes
    /// queued for it (so a node that is only busy stays ready).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] with the reason.
    pub async fn ready(&self, within: Duration) -> Result<(), StoreError> {
        let probe = async {
            tokio::try_join!(
                self.write(|conn| Box::pin(super::db::heartbeat(conn))),
                self.writers.probe(|conn| Box::pin(writable(conn))),
            )
            .map(|_| ())
        };
        match tokio::time::timeout(within, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(StoreError::Unavailable(format!(
                "a probe write failed: {error}{}",
                std::error::Error::source(&error)
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "a probe write did not commit within {} ms",
                within.as_millis()
            ))),
        }
    }
}

/// A statement only a writable session may run (it takes an event id, a gap nobody minds):
/// a writer reconnected to a server that is now read-only (a failover,
/// `default_transaction_read_only`) answers a plain query, and then fails every write.
async fn writable(conn: &mut Conn<'_>) -> Result<(), StoreError> {
    let Some(conn) = conn.as_postgres() else {
        return Ok(());
    };
    sqlx::query("SELECT nextval(pg_get_serial_sequence('events', 'id'))")
        .execute(conn)
        .await?;
    Ok(())
}

/// The advisory lock id of a sale: stable across processes, releases and backends (it is a
/// hash of the key), so every node locks the same id for the same sale.
pub fn advisory_key(key: &SaleKey) -> i64 {
    let mut hasher = Sha256::new();
    for part in [&key.partner, &key.location_id, &key.external_id] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    lock_id(hasher)
}

/// The advisory lock ids of `keys`, in the one order every transaction takes them.
fn lock_ids(keys: &[SaleKey]) -> Vec<i64> {
    let mut ids: Vec<i64> = keys.iter().map(advisory_key).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A lock id from a hash: its first 8 bytes, as a signed big-endian integer.
fn lock_id(hasher: Sha256) -> i64 {
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Takes the advisory locks of `keys` for the rest of the transaction, waiting at most
/// `wait`. Locks are taken in id order so two requests never deadlock on each other.
///
/// # Errors
/// [`StoreError::SaleBusy`] when another transaction still holds one after `wait`.
pub(in crate::store) async fn lock_sales(
    conn: &mut PgConnection,
    keys: &[SaleKey],
    wait: Duration,
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let ids = lock_ids(keys);
    set_lock_timeout(conn, wait).await?;
    for id in ids {
        let locked = sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(id)
            .execute(&mut *conn)
            .await;
        if lock_timed_out(&locked) {
            return Err(StoreError::SaleBusy);
        }
        locked?;
    }
    reset_lock_timeout(conn).await
}

/// Whether a lock wait ended because `lock_timeout` expired.
fn lock_timed_out<T>(result: &Result<T, sqlx::Error>) -> bool {
    matches!(result, Err(sqlx::Error::Database(error))
        if error.code().as_deref() == Some(LOCK_NOT_AVAILABLE))
}

/// Takes the advisory locks of `keys` for the rest of the transaction if nobody holds any of
/// them, in one statement, never waiting (a write in a batch).
///
/// # Errors
/// [`StoreError::Contended`] when another transaction holds one.
pub(in crate::store) async fn try_lock_sales(
    conn: &mut PgConnection,
    keys: &[SaleKey],
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let ids = lock_ids(keys);
    let locked: Option<bool> = sqlx::query_scalar(
        "SELECT bool_and(pg_try_advisory_xact_lock(id)) FROM unnest($1::bigint[]) AS id",
    )
    .bind(ids)
    .fetch_one(&mut *conn)
    .await?;
    if locked == Some(true) {
        Ok(())
    } else {
        Err(StoreError::Contended)
    }
}

/// Reserves the next event id and takes the sales' advisory locks: in the common case (one
/// sale, nobody else on it) a single statement; otherwise [`lock_sales`], waiting until
/// `deadline` at most, or not at all without one (a write in a batch).
///
/// # Errors
/// [`StoreError::SaleBusy`] when another transaction still holds a sale at `deadline`;
/// [`StoreError::Contended`] when one holds it and there is no deadline to wait until.
pub(in crate::store) async fn reserve_event_id_locking(
    conn: &mut PgConnection,
    keys: &[SaleKey],
    deadline: Option<tokio::time::Instant>,
) -> Result<i64, StoreError> {
    use sqlx::Row;
    const NEXT_ID: &str = "SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id";
    const NEXT_ID_LOCKING: &str = "SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id,
        pg_try_advisory_xact_lock($1) AS locked";
    let (id, locked): (i64, bool) = match keys {
        [key] => {
            let row = sqlx::query(NEXT_ID_LOCKING)
                .bind(advisory_key(key))
                .fetch_one(&mut *conn)
                .await?;
            (row.try_get("id")?, row.try_get("locked")?)
        }
        _ => {
            let row = sqlx::query(NEXT_ID).fetch_one(&mut *conn).await?;
            (row.try_get("id")?, keys.is_empty())
        }
    };
    if !locked {
        match deadline {
            // In a batch: several sales are tried in one statement (one alone was, above).
            None if keys.len() > 1 => try_lock_sales(conn, keys).await?,
            None => return Err(StoreError::Contended),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                lock_sales(conn, keys, left).await?;
            }
        }
    }
    Ok(id)
}

/// [`venue_key`] of the venue `v.id`, as PostgreSQL computes it: the first 8 bytes of the
/// SHA-256 of `venue\0` and the id's 8 big-endian bytes, as a signed big-endian integer.
pub const VENUE_KEY_OF_V_ID: &str = "('x' || left(encode(sha256('\\x76656e756500'::bytea \
    || int8send(v.id)), 'hex'), 16))::bit(64)::bigint";

/// The advisory lock id of a venue's diary: hashed like a sale's, in its own domain so the
/// two never collide. A batch computes the same key in SQL (`venue::locked_venue_of_location`,
/// one round trip for the venue and its lock): change both together.
pub fn venue_key(venue_id: i64) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(b"venue\0");
    hasher.update(venue_id.to_be_bytes());
    lock_id(hasher)
}

/// Holds the venue's diary for the rest of the transaction (see `Conn::lock_venue`),
/// waiting for it as `wait` says.
///
/// # Errors
/// [`StoreError::Contended`] when another transaction holds it and `wait` is `Never`;
/// [`StoreError::VenueBusy`] when it is still held when the wait ends.
pub(in crate::store) async fn lock_venue(
    conn: &mut PgConnection,
    venue_id: i64,
    wait: LockWait,
) -> Result<(), StoreError> {
    if let LockWait::Never = wait {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(venue_key(venue_id))
            .fetch_one(&mut *conn)
            .await?;
        return if locked {
            Ok(())
        } else {
            Err(StoreError::Contended)
        };
    }
    wait_for_venues(conn, &[venue_key(venue_id)], wait).await
}

/// Takes the venue locks `ids`, in that order, waiting as `wait` says.
///
/// # Errors
/// [`StoreError::VenueBusy`] when one is still held when the wait ends.
async fn wait_for_venues(
    conn: &mut PgConnection,
    ids: &[i64],
    wait: LockWait,
) -> Result<(), StoreError> {
    let deadline = match wait {
        LockWait::Until(deadline) => Some(deadline),
        LockWait::Never | LockWait::SessionLimit => None,
    };
    if let Some(deadline) = deadline {
        set_lock_timeout(
            conn,
            deadline.saturating_duration_since(tokio::time::Instant::now()),
        )
        .await?;
    }
    for &id in ids {
        let locked = sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(id)
            .execute(&mut *conn)
            .await;
        if lock_timed_out(&locked) {
            return Err(StoreError::VenueBusy);
        }
        locked?;
    }
    if deadline.is_some() {
        reset_lock_timeout(conn).await?;
    }
    Ok(())
}

/// Holds the diaries of the venues that `(partners[i], locations[i])` are mapped to, waiting
/// for each as `wait` says, taken in lock-id order so that two transactions holding several
/// venues never wait on each other in a circle.
///
/// # Errors
/// [`StoreError::VenueBusy`] when one is still held when the wait ends; when the database
/// fails.
pub(in crate::store) async fn lock_venues_of_locations(
    conn: &mut PgConnection,
    partners: &[String],
    locations: &[String],
    wait: LockWait,
) -> Result<(), StoreError> {
    let venues: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT l.venue_id FROM partner_locations l
         JOIN unnest($1::text[], $2::text[]) AS k(partner, location_id)
           ON l.partner = k.partner AND l.location_id = k.location_id",
    )
    .bind(partners)
    .bind(locations)
    .fetch_all(&mut *conn)
    .await?;
    let mut ids: Vec<i64> = venues.into_iter().map(venue_key).collect();
    ids.sort_unstable();
    ids.dedup();
    wait_for_venues(conn, &ids, wait).await
}

/// `SET LOCAL lock_timeout` to `wait` (at least a millisecond: 0 would mean no limit).
async fn set_lock_timeout(conn: &mut PgConnection, wait: Duration) -> Result<(), StoreError> {
    let millis = wait.as_millis().clamp(1, 600_000);
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(format!("{millis}ms"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Back to the session's `lock_timeout` ([`SESSION_SETTINGS`]) for the rest of the
/// transaction.
async fn reset_lock_timeout(conn: &mut PgConnection) -> Result<(), StoreError> {
    // A prepared statement, not `raw_sql`: its future must stay `Send` for any lifetime of
    // the batch's connection.
    sqlx::query("SET LOCAL lock_timeout TO DEFAULT")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
