//! The handle on either database engine: which one, its transactions (a write, a write
//! queued into a shared batch, a read), each write followed by the messages of the changes
//! it noted, in its own transaction.

use super::super::db::{BoxFuture, Conn, Pending};
use super::super::postgres::Postgres;
use super::super::sqlite::Sqlite;
use super::super::{InFlight, StoreError, changes};

/// `op`, then the messages of the changes it noted, in its transaction (`changes::flush`).
fn flushing_once<T, F>(
    op: F,
) -> impl for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>> + Send + 'static
where
    T: Send + 'static,
    F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
        + Send
        + 'static,
{
    move |conn| {
        Box::pin(async move {
            let value = op(&mut *conn).await?;
            changes::flush(conn).await?;
            Ok(value)
        })
    }
}

/// [`flushing_once`] for a write that may run twice.
pub(super) fn flushing<T, F>(
    op: F,
) -> impl for<'a, 'c> Fn(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>> + Send + Sync + 'static
where
    T: Send + 'static,
    F: for<'a, 'c> Fn(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
        + Send
        + Sync
        + 'static,
{
    let op = std::sync::Arc::new(op);
    move |conn| {
        let op = std::sync::Arc::clone(&op);
        Box::pin(async move {
            let value = op(&mut *conn).await?;
            changes::flush(conn).await?;
            Ok(value)
        })
    }
}

/// A store over a SQL database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(super) engine: Engine,
    pub(super) in_flight: InFlight,
    /// The readiness probe running now, shared by whoever asks meanwhile.
    pub(super) readiness: super::readiness::Readiness,
}

#[derive(Debug, Clone)]
pub(super) enum Engine {
    Sqlite(Sqlite),
    Postgres(Postgres),
}

impl SqlStore {
    pub(in crate::store) fn sqlite(engine: Sqlite) -> SqlStore {
        SqlStore {
            engine: Engine::Sqlite(engine),
            in_flight: InFlight::default(),
            readiness: super::readiness::Readiness::default(),
        }
    }

    pub(in crate::store) fn postgres(engine: Postgres) -> SqlStore {
        SqlStore {
            engine: Engine::Postgres(engine),
            in_flight: InFlight::default(),
            readiness: super::readiness::Readiness::default(),
        }
    }

    /// This process's in-flight sale locks.
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// Runs `op` in a write transaction (on SQLite: the next group commit) and answers once
    /// it is durable.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let op = flushing_once(op);
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.write(op).await,
            Engine::Postgres(postgres) => postgres.write(op).await,
        }
    }

    /// Queues `op` for a write transaction shared with other writes, and returns once it is
    /// queued: on SQLite the next group commit, on PostgreSQL the next batch of the writer
    /// `route` picks (writes with the same route never contend with each other). Writes
    /// queued one after another on one route run in that order, so a sale's in-flight lock
    /// need only be held until its write is queued, not until it commits: a burst of one
    /// sale's deliveries shares one batch instead of waiting a commit each. `op` may run
    /// twice on PostgreSQL: a run that met a lock held elsewhere is rolled back and runs
    /// again alone.
    pub(super) async fn submit<T, F>(
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
        let op = flushing(op);
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.submit(op).await,
            Engine::Postgres(postgres) => postgres.submit(route, bytes, op).await,
        }
    }

    /// Runs `op` on a reading connection.
    pub(super) async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + 'static,
    {
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.read(op).await,
            Engine::Postgres(postgres) => postgres.read(op).await,
        }
    }

    /// Completes with the reason if the store can never write again in this process (the
    /// SQLite writer thread, or a PostgreSQL writer thread, died): the process must exit so
    /// a supervisor restarts it. PostgreSQL's connections recover on their own.
    pub async fn died(&self) -> String {
        let mut died = match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.died(),
            Engine::Postgres(postgres) => postgres.died(),
        };
        let reason = died
            .wait_for(Option::is_some)
            .await
            .ok()
            .map(|reason| reason.clone().unwrap_or_default());
        match (reason, &self.engine) {
            (Some(reason), _) => reason,
            (None, Engine::Sqlite(_)) => "the SQLite writer is gone".to_owned(),
            // The writers were closed with the store.
            (None, Engine::Postgres(_)) => std::future::pending().await,
        }
    }

    /// Waits for writes in progress, then closes the connections it can.
    pub async fn close(&self) {
        match &self.engine {
            Engine::Sqlite(sqlite) => sqlite.flush().await,
            Engine::Postgres(postgres) => postgres.close().await,
        }
    }
}
