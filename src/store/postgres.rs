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

use super::db::{BoxFuture, Conn};
use super::{SaleKey, StoreError};

/// The schema, in order; the `diarysync_schema` table records how many are applied.
const MIGRATIONS: [(&str, &str); 3] = [
    (
        "0001_init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_fast_ingest",
        include_str!("../../migrations/postgres/0002_fast_ingest.sql"),
    ),
    (
        "0003_retention",
        include_str!("../../migrations/postgres/0003_retention.sql"),
    ),
];

/// The advisory lock held while migrating, so nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6469_6172_7973_796e;

/// Connections per process: most of a transaction's time is round trips and the commit's
/// flush, so more transactions in flight than cores keep both busy.
const POOL_SIZE: u32 = 32;

/// PostgreSQL's SQLSTATE for `lock_timeout` expiring.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// A pool on one database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Postgres {
    pool: PgPool,
}

/// Connects to and migrates the database at `url` (`postgres://...`).
///
/// # Errors
/// When the server cannot be reached or a migration fails.
pub async fn open(url: &str) -> Result<Postgres, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .connect(url)
        .await?;
    migrate(&pool).await?;
    Ok(Postgres { pool })
}

/// Applies the migrations not yet applied, each in its own transaction, under a session
/// advisory lock.
async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let applied = apply_migrations(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    applied?;
    unlocked?;
    Ok(())
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

impl Postgres {
    /// Runs `op` in a transaction of its own and commits it.
    ///
    /// # Errors
    /// What `op` returns (the transaction is rolled back), or the commit's failure.
    pub async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>,
    {
        let mut tx = self.pool.begin().await?;
        let result = op(&mut Conn::postgres(&mut tx)).await;
        match result {
            Ok(value) => {
                let committing = std::time::Instant::now();
                tx.commit().await?;
                metrics::histogram!(crate::telemetry::COMMIT_SECONDS, "backend" => "postgres")
                    .record(committing.elapsed().as_secs_f64());
                Ok(value)
            }
            Err(error) => {
                let _ = tx.rollback().await;
                Err(error)
            }
        }
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

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The advisory lock id of a sale: stable across processes, releases and backends (it is a
/// hash of the key), so every node locks the same id for the same sale.
pub fn advisory_key(key: &SaleKey) -> i64 {
    let mut hasher = Sha256::new();
    for part in [&key.partner, &key.location_id, &key.external_id] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
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
pub(super) async fn lock_sales(
    conn: &mut PgConnection,
    keys: &[SaleKey],
    wait: Duration,
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<i64> = keys.iter().map(advisory_key).collect();
    ids.sort_unstable();
    ids.dedup();
    let millis = wait.as_millis().clamp(1, 600_000);
    set_lock_timeout(conn, &format!("{millis}ms")).await?;
    for id in ids {
        let locked = sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(id)
            .execute(&mut *conn)
            .await;
        match locked {
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some(LOCK_NOT_AVAILABLE) =>
            {
                return Err(StoreError::SaleBusy);
            }
            other => {
                other?;
            }
        }
    }
    set_lock_timeout(conn, "0").await
}

/// Reserves the next event id and takes the sales' advisory locks: in the common case (one
/// sale, nobody else on it) a single statement; otherwise [`lock_sales`], waiting until
/// `deadline` at most.
///
/// # Errors
/// [`StoreError::SaleBusy`] when another transaction still holds a sale at `deadline`.
pub(super) async fn reserve_event_id_locking(
    conn: &mut PgConnection,
    keys: &[SaleKey],
    deadline: tokio::time::Instant,
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
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        lock_sales(conn, keys, left).await?;
    }
    Ok(id)
}

/// The advisory lock id of a venue's diary: hashed like a sale's, in its own domain so the
/// two never collide.
fn venue_key(venue_id: i64) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(b"venue\0");
    hasher.update(venue_id.to_be_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Holds the venue's diary for the rest of the transaction (see `Conn::lock_venue`).
pub(super) async fn lock_venue(conn: &mut PgConnection, venue_id: i64) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(venue_key(venue_id))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `SET LOCAL lock_timeout`, as a statement that takes a parameter.
async fn set_lock_timeout(conn: &mut PgConnection, timeout: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('lock_timeout', $1, true)")
        .bind(timeout)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
