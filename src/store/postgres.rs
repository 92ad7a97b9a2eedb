//! The PostgreSQL dialect: the scale-out path, several stateless processes on one database.
//!
//! The in-flight lock on a sale must hold across processes, so it lives in the database: a
//! transaction-scoped advisory lock per sale, taken before the event is written and released
//! by the commit. A request that cannot get it within the wait is answered 409.

use std::sync::LazyLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, Transaction};

use super::sql::SqlStore;
use super::{Backend, SaleKey, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Connections per process; PostgreSQL's own group commit batches their fsyncs.
const POOL_SIZE: u32 = 16;

/// PostgreSQL's SQLSTATE for `lock_timeout` expiring.
const LOCK_NOT_AVAILABLE: &str = "55P03";

static DRIVERS: LazyLock<()> = LazyLock::new(sqlx::any::install_default_drivers);

/// Connects to and migrates the database at `url` (`postgres://...`).
///
/// # Errors
/// When the server cannot be reached or a migration fails.
pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
    LazyLock::force(&DRIVERS);
    let pool = AnyPoolOptions::new()
        .max_connections(POOL_SIZE)
        .connect(url)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(SqlStore::new(Backend::Postgres, pool.clone(), pool))
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
    tx: &mut Transaction<'_, sqlx::Any>,
    keys: &[SaleKey],
    wait: Duration,
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let conn: &mut AnyConnection = tx;
    let mut ids: Vec<i64> = keys.iter().map(advisory_key).collect();
    ids.sort_unstable();
    ids.dedup();
    let millis = wait.as_millis().clamp(1, 600_000);
    sqlx::query(&format!("SET LOCAL lock_timeout = {millis}"))
        .execute(&mut *conn)
        .await?;
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
    sqlx::query("SET LOCAL lock_timeout = 0")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
