//! The SQLite dialect: one file, WAL, fsync-durable commits, one writer connection.
//!
//! `synchronous = FULL` makes every commit fsync the WAL before it returns, so an event
//! acknowledged with a 2xx survives a crash or power loss. All writes go through a pool of
//! exactly one connection: SQLite allows one writer at a time anyway, and serialising in the
//! pool avoids `SQLITE_BUSY` upgrade failures between competing writers. Readers use their own
//! connections and, in WAL mode, never block the writer.

use std::sync::LazyLock;

use sqlx::Executor;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

use super::sql::SqlStore;
use super::{Backend, StoreError};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                       PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

/// Readers beside the one writer.
const READERS: u32 = 4;

static DRIVERS: LazyLock<()> = LazyLock::new(sqlx::any::install_default_drivers);

/// Opens (creating if needed) and migrates the SQLite database at `url` (`sqlite://PATH`).
///
/// # Errors
/// When the file cannot be opened or created, or a migration fails.
pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
    LazyLock::force(&DRIVERS);
    let url = if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let options = || {
        AnyPoolOptions::new().after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(sqlx::raw_sql(PRAGMAS)).await?;
                Ok(())
            })
        })
    };
    let writer = options().max_connections(1).connect(&url).await?;
    MIGRATOR.run(&writer).await?;
    let reader = options().max_connections(READERS).connect(&url).await?;
    Ok(SqlStore::new(Backend::Sqlite, writer, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_commit_is_fsync_durable_in_wal_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let store = open(&url).await.expect("opens");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.writer())
            .await
            .expect("journal_mode");
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(store.writer())
            .await
            .expect("synchronous");
        assert_eq!(mode, "wal");
        assert_eq!(synchronous, 2, "FULL: the WAL is fsynced at every commit");
    }
}
