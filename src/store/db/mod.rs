//! The one database layer both backends share: statement text with `$n` placeholders, typed
//! parameters, owned rows, savepoints.
//!
//! Why not sqlx's `Any` driver for both: its SQLite statements are messages to a worker
//! thread, about 25 µs each on a 2-core machine, and an event takes a dozen of them. Here
//! SQLite runs on rusqlite with cached prepared statements, called directly on the thread
//! that owns the connection (the group-commit writer, or a reader), a few µs each; PostgreSQL
//! keeps sqlx's native async driver. The code that decides what to write (`apply`,
//! `bookings`) is written once against [`Conn`]. On SQLite its futures never suspend, so the
//! writer thread runs them to completion with [`run_sync`].
//!
//! Every statement is one text for both databases: `$n` placeholders (SQLite gets them as
//! `?n`), BIGINT/TEXT/bytes columns only.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use sqlx::PgConnection;

use super::StoreError;
use crate::domain::change::Note;
use run::{postgres_batch, postgres_run, sqlite_run};

mod run;

/// A boxed future borrowing a connection for `'a`: what store operations return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A write queued for a writer: its answer, once its batch is committed.
#[derive(Debug)]
#[must_use = "a queued write's answer says whether it committed"]
pub struct Pending<T> {
    answer: Answer<T>,
}

#[derive(Debug)]
enum Answer<T> {
    Typed(tokio::sync::oneshot::Receiver<Result<T, StoreError>>),
    /// From a queue of writes of every type (PostgreSQL's writers).
    Erased(tokio::sync::oneshot::Receiver<Result<Box<dyn std::any::Any + Send>, StoreError>>),
}

impl<T: 'static> Pending<T> {
    pub(super) fn new(answer: tokio::sync::oneshot::Receiver<Result<T, StoreError>>) -> Self {
        Pending {
            answer: Answer::Typed(answer),
        }
    }

    pub(super) fn erased(
        answer: tokio::sync::oneshot::Receiver<Result<Box<dyn std::any::Any + Send>, StoreError>>,
    ) -> Self {
        Pending {
            answer: Answer::Erased(answer),
        }
    }

    /// Waits until the write's batch is committed (or it failed).
    ///
    /// # Errors
    /// The write's own error, the commit's, or [`StoreError::Unavailable`] when the writer
    /// stopped before answering.
    pub async fn wait(self) -> Result<T, StoreError> {
        let stopped = |_| StoreError::Unavailable("the writer stopped before answering".to_owned());
        match self.answer {
            Answer::Typed(answer) => answer.await.map_err(stopped)?,
            Answer::Erased(answer) => answer
                .await
                .map_err(stopped)??
                .downcast::<T>()
                .map(|value| *value)
                .map_err(|_| StoreError::Corrupt("a write answered another type".to_owned())),
        }
    }
}

/// How a transaction waits for a lock another one holds.
#[derive(Debug, Clone, Copy)]
pub enum LockWait {
    /// Not at all: a write in a batch, which reruns alone instead.
    Never,
    /// Until the instant, a delivery's or a replay's deadline.
    Until(tokio::time::Instant),
    /// As long as the session's `lock_timeout` allows (an operator's change).
    SessionLimit,
}

/// A connection inside a transaction, on either backend.
#[derive(Debug)]
pub struct Conn<'c> {
    link: Link<'c>,
    /// Savepoints opened so far, for unique names.
    savepoints: u32,
    /// How a lock another transaction holds is waited for: not at all in a PostgreSQL batch
    /// (answered at once with [`StoreError::Contended`]), until a delivery's deadline, or
    /// up to the session's limit.
    lock_wait: LockWait,
    /// The diary changes this write made so far, rendered into messages before it commits
    /// (`store::changes::flush`).
    notes: Vec<Note>,
    /// A venue row read ahead with the event's id, for the `(partner, location)` it is for:
    /// `None` inside when that location is mapped to no venue (`store::venue`).
    venue_read_ahead: Option<VenueReadAhead>,
    /// Rows to insert when the batch commits, in a PostgreSQL batch (`None` elsewhere: rows
    /// are inserted at once). See [`Conn::deferred_inserts`].
    deferred: Option<Vec<DeferredInsert>>,
    /// Statements run that may have changed something (anything but a `SELECT`, savepoints
    /// included): what a row read ahead is checked against.
    changes_run: u64,
    /// A booking with its sales, read ahead (`store::rematch::follow_sales`) for the outbox,
    /// with [`Conn::changes_run`] when it was kept.
    booking_read_ahead: Option<(i64, u64, Vec<Row>)>,
}

/// A row whose insert waits for its batch's commit: `values` in the order of `columns`.
#[derive(Debug)]
pub struct DeferredInsert {
    pub table: &'static str,
    pub columns: &'static str,
    pub values: Vec<Param<'static>>,
}

/// See [`Conn::read_venue_ahead`].
#[derive(Debug)]
struct VenueReadAhead {
    partner: String,
    location_id: String,
    row: Option<Row>,
}

#[derive(Debug)]
enum Link<'c> {
    Sqlite(&'c mut rusqlite::Connection),
    Postgres(&'c mut PgConnection),
}

impl<'c> Conn<'c> {
    pub fn sqlite(conn: &'c mut rusqlite::Connection) -> Conn<'c> {
        Conn::on(Link::Sqlite(conn), LockWait::SessionLimit, None)
    }

    /// A PostgreSQL connection in a transaction of its own: locks are waited for.
    pub fn postgres(conn: &'c mut PgConnection) -> Conn<'c> {
        Conn::on(Link::Postgres(conn), LockWait::SessionLimit, None)
    }

    /// A PostgreSQL connection in a batch of writes: a lock held elsewhere is not waited
    /// for but answered with [`StoreError::Contended`] (see `postgres::writer`).
    /// With `defer`, inserts that nothing in the batch reads back wait for its commit
    /// ([`Conn::deferred_inserts`]).
    pub fn postgres_batched(conn: &'c mut PgConnection, defer: bool) -> Conn<'c> {
        Conn::on(Link::Postgres(conn), LockWait::Never, defer.then(Vec::new))
    }

    fn on(link: Link<'c>, lock_wait: LockWait, deferred: Option<Vec<DeferredInsert>>) -> Self {
        Conn {
            link,
            savepoints: 0,
            lock_wait,
            notes: Vec::new(),
            venue_read_ahead: None,
            deferred,
            changes_run: 0,
            booking_read_ahead: None,
        }
    }

    /// Notes a change to the diary this write made; it becomes a message in the same
    /// transaction.
    pub fn note(&mut self, note: Note) {
        self.notes.push(note);
    }

    /// The changes noted so far, in the order they were made; the list is left empty.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// Keeps the row of the venue `(partner, location_id)` is mapped to (`None`: to none),
    /// read by a statement that did more (on PostgreSQL, with the event's id), for the
    /// next [`Conn::take_venue_read_ahead`] of that location in this write.
    pub fn read_venue_ahead(&mut self, partner: &str, location_id: &str, row: Option<Row>) {
        self.venue_read_ahead = Some(VenueReadAhead {
            partner: partner.to_owned(),
            location_id: location_id.to_owned(),
            row,
        });
    }

    /// The venue row read ahead for `(partner, location_id)`, once; `None` when none was.
    pub fn take_venue_read_ahead(
        &mut self,
        partner: &str,
        location_id: &str,
    ) -> Option<Option<Row>> {
        let ahead = self.venue_read_ahead.take()?;
        (ahead.partner == partner && ahead.location_id == location_id).then_some(ahead.row)
    }

    /// Where rows wait to be inserted with every other deferred row of the batch, in one
    /// statement just before its commit (`postgres::writer`), instead of a round trip each:
    /// `Some` in a PostgreSQL batch, else `None` and the caller inserts at once. Only for
    /// rows nothing in the batch reads or refers to. A savepoint rolled back drops the rows
    /// deferred after it.
    pub fn deferred_inserts(&mut self) -> Option<&mut Vec<DeferredInsert>> {
        self.deferred.as_mut()
    }

    /// The rows deferred so far; the list is left empty.
    pub fn take_deferred_inserts(&mut self) -> Vec<DeferredInsert> {
        self.deferred
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Keeps booking `booking_id` with its sales as `rows` show it now, for the outbox's
    /// [`Conn::take_booking_read_ahead`] at the end of this write: one read of the booking
    /// instead of two, when nothing was written after it.
    pub fn read_booking_ahead(&mut self, booking_id: i64, rows: Vec<Row>) {
        self.booking_read_ahead = Some((booking_id, self.changes_run, rows));
    }

    /// The rows kept by [`Conn::read_booking_ahead`] for `booking_id`, if no statement since
    /// could have changed anything; once.
    pub fn take_booking_read_ahead(&mut self, booking_id: i64) -> Option<Vec<Row>> {
        match self.booking_read_ahead.take() {
            Some((id, at, rows)) if id == booking_id && at == self.changes_run => Some(rows),
            kept => {
                self.booking_read_ahead = kept;
                None
            }
        }
    }

    /// Whether this is a PostgreSQL connection (for the few statements whose text differs).
    pub fn is_postgres(&self) -> bool {
        matches!(self.link, Link::Postgres(_))
    }

    /// Whether locks held by other transactions are waited for (see [`Conn::postgres_batched`]).
    pub fn waits_for_locks(&self) -> bool {
        !matches!(self.lock_wait, LockWait::Never)
    }

    /// Bounds this transaction's waits for locks by `deadline` (a delivery's or a replay's):
    /// a venue still held then is answered with [`StoreError::VenueBusy`]. A write in a
    /// batch keeps not waiting at all.
    pub fn wait_for_locks_until(&mut self, deadline: tokio::time::Instant) {
        if self.waits_for_locks() {
            self.lock_wait = LockWait::Until(deadline);
        }
    }

    /// The PostgreSQL connection, for what only PostgreSQL does (advisory locks).
    pub fn as_postgres(&mut self) -> Option<&mut PgConnection> {
        match &mut self.link {
            Link::Postgres(conn) => Some(conn),
            Link::Sqlite(_) => None,
        }
    }

    /// Reserves the id of the next stored event. SQLite has one writer, so the next id is
    /// the largest plus one for the rest of the transaction; PostgreSQL takes it from the
    /// column's sequence.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn next_event_id(&mut self) -> Result<i64, StoreError> {
        let sql = match self.link {
            Link::Sqlite(_) => "SELECT COALESCE(MAX(id), 0) + 1 FROM events",
            Link::Postgres(_) => "SELECT nextval(pg_get_serial_sequence('events', 'id'))",
        };
        query_scalar(sql).fetch_one(self).await
    }

    /// Serialises this transaction with every other one that changes the same venue's diary,
    /// until it ends. Matching and a booking's status read other sales and bookings of the
    /// venue; under PostgreSQL's READ COMMITTED two transactions (on two nodes, or two pooled
    /// connections) could each decide from a view without the other's change and both
    /// commit, e.g. a booking left `seated` after its last two sales closed at once. SQLite
    /// has one writer, so nothing to do there.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn lock_venue(&mut self, venue_id: i64) -> Result<(), StoreError> {
        if let Link::Postgres(conn) = &mut self.link {
            super::postgres::lock_venue(conn, venue_id, self.lock_wait).await?;
        }
        Ok(())
    }

    /// Opens a savepoint: work after it can be undone alone with [`Savepoint::rollback`].
    ///
    /// # Errors
    /// When the database refuses.
    pub async fn savepoint(&mut self) -> Result<Savepoint, StoreError> {
        self.savepoints += 1;
        let name = format!("sp{}", self.savepoints);
        self.batch(&format!("SAVEPOINT {name}")).await?;
        Ok(Savepoint {
            name,
            notes: self.notes.len(),
            deferred: self.deferred.as_ref().map_or(0, Vec::len),
        })
    }

    /// Runs one statement without parameters or results.
    async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.changes_run += 1;
        match &mut self.link {
            Link::Sqlite(conn) => {
                conn.prepare_cached(sql)?.execute([])?;
                Ok(())
            }
            Link::Postgres(conn) => postgres_batch(conn, sql).await,
        }
    }

    async fn run(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        want_rows: bool,
    ) -> Result<(Vec<Row>, u64), StoreError> {
        if !is_read(sql) {
            self.changes_run += 1;
        }
        match &mut self.link {
            Link::Sqlite(conn) => sqlite_run(conn, sql, params, want_rows),
            Link::Postgres(conn) => postgres_run(conn, sql, params, want_rows).await,
        }
    }
}

/// Whether `sql` only reads: a `SELECT` (a `WITH` may write, so it counts as a change).
fn is_read(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|start| start.eq_ignore_ascii_case("select"))
}

/// An open savepoint; release it to keep its work, roll back to drop it.
#[derive(Debug)]
#[must_use = "a savepoint is released or rolled back"]
pub struct Savepoint {
    name: String,
    /// How many changes were noted when it was opened: those noted after it go with it.
    notes: usize,
    /// Likewise for deferred inserts.
    deferred: usize,
}

impl Savepoint {
    /// Keeps the work done since the savepoint (it commits with the transaction).
    ///
    /// # Errors
    /// When the database refuses.
    pub async fn release(self, conn: &mut Conn<'_>) -> Result<(), StoreError> {
        conn.batch(&format!("RELEASE {}", self.name)).await
    }

    /// Undoes the work done since the savepoint; the transaction goes on.
    ///
    /// # Errors
    /// When the database refuses.
    pub async fn rollback(self, conn: &mut Conn<'_>) -> Result<(), StoreError> {
        conn.notes.truncate(self.notes);
        if let Some(deferred) = &mut conn.deferred {
            deferred.truncate(self.deferred);
        }
        conn.batch(&format!("ROLLBACK TO {}", self.name)).await?;
        conn.batch(&format!("RELEASE {}", self.name)).await
    }
}

/// A statement parameter. Null values keep their type, which PostgreSQL needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Param<'q> {
    Int(Option<i64>),
    Text(Option<Cow<'q, str>>),
    Bytes(Option<Cow<'q, [u8]>>),
}

impl Param<'_> {
    /// The same value, owning its text or bytes.
    pub fn into_owned(self) -> Param<'static> {
        match self {
            Param::Int(v) => Param::Int(v),
            Param::Text(v) => Param::Text(v.map(|t| Cow::Owned(t.into_owned()))),
            Param::Bytes(v) => Param::Bytes(v.map(|b| Cow::Owned(b.into_owned()))),
        }
    }
}

/// Values that bind as a [`Param`].
pub trait Bind<'q> {
    fn param(self) -> Param<'q>;
}

/// Text as both databases store it: PostgreSQL's `text` cannot hold NUL, so NUL becomes
/// U+FFFD on both backends (partner text such as `"A\u0000B"` must not fail a delivery on
/// one backend and pass on the other). Borrowed unless there is a NUL to replace.
fn storable<'q>(text: Cow<'q, str>) -> Cow<'q, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        text
    }
}

impl<'q> Bind<'q> for i64 {
    fn param(self) -> Param<'q> {
        Param::Int(Some(self))
    }
}
impl<'q> Bind<'q> for Option<i64> {
    fn param(self) -> Param<'q> {
        Param::Int(self)
    }
}
impl<'q> Bind<'q> for bool {
    fn param(self) -> Param<'q> {
        Param::Int(Some(i64::from(self)))
    }
}
impl<'q> Bind<'q> for &'q str {
    fn param(self) -> Param<'q> {
        Param::Text(Some(storable(Cow::Borrowed(self))))
    }
}
impl<'q> Bind<'q> for Option<&'q str> {
    fn param(self) -> Param<'q> {
        Param::Text(self.map(|t| storable(Cow::Borrowed(t))))
    }
}
impl<'q> Bind<'q> for String {
    fn param(self) -> Param<'q> {
        Param::Text(Some(storable(Cow::Owned(self))))
    }
}
impl<'q> Bind<'q> for Option<String> {
    fn param(self) -> Param<'q> {
        Param::Text(self.map(|t| storable(Cow::Owned(t))))
    }
}
impl<'q> Bind<'q> for &'q [u8] {
    fn param(self) -> Param<'q> {
        Param::Bytes(Some(Cow::Borrowed(self)))
    }
}

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// A result row: its values, looked up by column name.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The value of `column`, converted.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when there is no such column or its value has another type.
    pub fn try_get<T: FromValue>(&self, column: &str) -> Result<T, StoreError> {
        let index = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column:?}")))?;
        self.get(index)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column:?}")))
            .and_then(|value| {
                T::from_value(value)
                    .ok_or_else(|| StoreError::Corrupt(format!("column {column:?}: {value:?}")))
            })
    }

    fn get(&self, index: usize) -> Option<&Value> {
        self.values.get(index)
    }

    /// Sets `column` to `text`, for a row kept after a write this transaction made to what
    /// it shows (see [`Conn::read_booking_ahead`]); nothing if there is no such column.
    pub fn set_text(&mut self, column: &str, text: &str) {
        if let Some(index) = self.columns.iter().position(|c| c == column)
            && let Some(value) = self.values.get_mut(index)
        {
            *value = Value::Text(text.to_owned());
        }
    }
}

/// Types a [`Value`] converts to.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bytes(v) => Some(v.clone()),
            Value::Text(v) => Some(v.clone().into_bytes()),
            _ => None,
        }
    }
}
impl FromValue for bool {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).map(|v| v != 0)
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A statement and its parameters, ready to run on a [`Conn`].
#[derive(Debug)]
#[must_use = "a query does nothing until it is run"]
pub struct Query<'q> {
    sql: Cow<'q, str>,
    params: Vec<Param<'q>>,
}

/// A statement with `$n` placeholders.
pub fn query<'q>(sql: impl Into<Cow<'q, str>>) -> Query<'q> {
    Query {
        sql: sql.into(),
        params: Vec::new(),
    }
}

/// A statement whose first column is the result.
pub fn query_scalar<'q, T: FromValue>(sql: impl Into<Cow<'q, str>>) -> QueryScalar<'q, T> {
    QueryScalar {
        query: query(sql),
        output: PhantomData,
    }
}

impl<'q> Query<'q> {
    /// Binds the next `$n`.
    pub fn bind(mut self, value: impl Bind<'q>) -> Self {
        self.params.push(value.param());
        self
    }

    /// Binds an already built parameter.
    pub fn bind_param(mut self, param: Param<'q>) -> Self {
        let param = match param {
            Param::Text(Some(text)) => Param::Text(Some(storable(text))),
            other => other,
        };
        self.params.push(param);
        self
    }

    /// Binds already built parameters, in order.
    pub fn bind_params(self, params: impl IntoIterator<Item = Param<'q>>) -> Self {
        params.into_iter().fold(self, Query::bind_param)
    }

    /// Runs it for its effect; returns how many rows it changed.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn execute(self, conn: &mut Conn<'_>) -> Result<u64, StoreError> {
        Ok(conn.run(&self.sql, &self.params, false).await?.1)
    }

    /// Runs a write that no row read ahead shows (an event's own row), so what was read
    /// ahead stays valid ([`Conn::take_booking_read_ahead`]).
    ///
    /// # Errors
    /// When the database fails.
    pub async fn execute_unseen(self, conn: &mut Conn<'_>) -> Result<u64, StoreError> {
        let before = conn.changes_run;
        let changed = conn.run(&self.sql, &self.params, false).await?.1;
        conn.changes_run = before;
        Ok(changed)
    }

    /// # Errors
    /// When the database fails.
    pub async fn fetch_all(self, conn: &mut Conn<'_>) -> Result<Vec<Row>, StoreError> {
        Ok(conn.run(&self.sql, &self.params, true).await?.0)
    }

    /// # Errors
    /// When the database fails.
    pub async fn fetch_optional(self, conn: &mut Conn<'_>) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch_all(conn).await?.into_iter().next())
    }

    /// # Errors
    /// When the database fails, or [`StoreError::Corrupt`] when there is no row.
    pub async fn fetch_one(self, conn: &mut Conn<'_>) -> Result<Row, StoreError> {
        self.fetch_optional(conn)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a statement returned no row".to_owned()))
    }
}

/// A [`Query`] whose first column converts to `T`.
#[derive(Debug)]
#[must_use = "a query does nothing until it is run"]
pub struct QueryScalar<'q, T> {
    query: Query<'q>,
    output: PhantomData<fn() -> T>,
}

impl<'q, T: FromValue> QueryScalar<'q, T> {
    pub fn bind(mut self, value: impl Bind<'q>) -> Self {
        self.query = self.query.bind(value);
        self
    }

    /// See [`Query::bind_params`].
    pub fn bind_params(mut self, params: impl IntoIterator<Item = Param<'q>>) -> Self {
        self.query = self.query.bind_params(params);
        self
    }

    /// # Errors
    /// When the database fails or a value is not a `T`.
    pub async fn fetch_all(self, conn: &mut Conn<'_>) -> Result<Vec<T>, StoreError> {
        let rows = self.query.fetch_all(conn).await?;
        rows.iter().map(first).collect()
    }

    /// # Errors
    /// When the database fails or the value is not a `T`.
    pub async fn fetch_optional(self, conn: &mut Conn<'_>) -> Result<Option<T>, StoreError> {
        let row = self.query.fetch_optional(conn).await?;
        row.as_ref().map(first).transpose()
    }

    /// # Errors
    /// When the database fails, there is no row, or the value is not a `T`.
    pub async fn fetch_one(self, conn: &mut Conn<'_>) -> Result<T, StoreError> {
        first(&self.query.fetch_one(conn).await?)
    }
}

fn first<T: FromValue>(row: &Row) -> Result<T, StoreError> {
    row.get(0)
        .and_then(T::from_value)
        .ok_or_else(|| StoreError::Corrupt(format!("unexpected scalar {:?}", row.get(0))))
}

/// Rewrites the readiness heartbeat row: a write that commits only if the store can take
/// writes now (see the readiness probes of both engines).
///
/// # Errors
/// When the write fails.
pub async fn heartbeat(conn: &mut Conn<'_>) -> Result<(), StoreError> {
    query(
        "INSERT INTO store_heartbeat (id, at) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET at = excluded.at",
    )
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs a future that never suspends (store work on a SQLite connection) to completion on
/// this thread.
///
/// # Errors
/// [`StoreError::Unsupported`] if it does suspend, which would be a bug: SQLite work never
/// waits on anything.
pub fn run_sync<T>(work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let mut work = pin!(work);
    match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StoreError::Unsupported(
            "SQLite work suspended; it must run to completion".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests;
