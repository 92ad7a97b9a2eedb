//! Batched writes on PostgreSQL: a few writer connections, each applying every write waiting
//! for it in one transaction with one commit.
//!
//! One transaction per event cost a commit (and its WAL flush) per event, and needed as many
//! connections as events in flight: 32 backends contending for two cores, most of their
//! time spent waiting on each other and on us. A writer instead takes every write queued for
//! it when it becomes free (no artificial delay: a write waits for one batch at most), runs
//! each in a savepoint of one transaction, commits once, and only then answers each write.
//!
//! - **A write fails alone.** It runs after `SAVEPOINT job`; when it fails it is rolled back
//!   to it, answered with its error, and the batch goes on. When the commit itself fails,
//!   every write of the batch gets the error and none a 2xx.
//! - **No batch waits on a lock.** A write in a batch takes its sale's and its venue's
//!   advisory locks only if they are free ([`Conn::postgres_batched`]). Two batches (on two
//!   nodes, or two writers of one node) waiting on each other's locks would stall every event
//!   of both until PostgreSQL's deadlock detector broke the tie a second later. A write that
//!   meets a held lock is rolled back to its savepoint and runs again alone, in a transaction
//!   of its own on a pooled connection, where it waits for the lock as before (a sale's
//!   until its deadline, then 409). Locks keep their meaning across nodes: they are the same
//!   advisory locks, held until the batch commits.
//! - **An event's row waits for the commit.** Nothing in a batch reads an event row back,
//!   so each write leaves its row to the batch ([`Conn::deferred_inserts`]), and the batch
//!   inserts them all in one statement just before `COMMIT`: a round trip per event less.
//!   If that statement fails (a row the database refuses), the batch is rolled back whole
//!   and runs again with each write inserting its own row, so the refused row fails only
//!   its own write.
//! - **A batch is bounded** by writes (`MAX_BATCH`) and by the bytes of the bodies it stores
//!   (`MAX_BATCH_BYTES`), so a small delivery never waits behind hundreds of MB of large ones.
//! - **A readiness probe does not wait its turn.** It goes to each writer's urgent lane,
//!   which the writer empties before its next batch, as a batch of its own: behind a
//!   saturated writer's queue it would outlast any balancer's check, and every busy node
//!   would be taken out exactly when the others need it.
//! - **A venue stays on one writer.** Writes are routed by a key (the partner's location), so
//!   within one node two writers never contend for the same venue's lock.
//!
//! A writer runs on a thread of its own and owns its connection; it opens a new one after a
//! connection fails, answering that batch's writes with the error.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;
use crate::store::db::{BoxFuture, Conn, Pending};

/// A `fail` point between two batches, for the test that proves a dead writer is noticed.
pub const FAIL_BETWEEN_BATCHES: &str = "postgres-writer-between-batches";

/// Writes per transaction at most. PostgreSQL keeps 64 subtransactions per backend in
/// shared memory; a batch's savepoints are released one by one, so only a write's own
/// savepoints nest, well under that.
const MAX_BATCH: usize = 256;
/// Bytes of event bodies per transaction at most (but always one write): a batch of the
/// largest deliveries would otherwise carry hundreds of MB in its one insert of event rows,
/// and every small delivery queued behind it would wait for all of it (found by the outside
/// attack: a tiny delivery waited 3 s behind 1 MB ones).
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Writes that may wait for one writer; beyond this, callers wait to enqueue.
const QUEUE: usize = 4096;

/// What a write returns, its type erased for the queue.
type Output = Box<dyn Any + Send>;

/// A write, callable again: once in a batch, and once more alone if it met a held lock.
type Op = Box<
    dyn for<'a, 'c> Fn(&'a mut Conn<'c>) -> BoxFuture<'a, Result<Output, StoreError>> + Send + Sync,
>;

/// Which writer a write goes to.
#[derive(Debug, Clone, Copy)]
enum Index {
    /// The one a route key hashes to.
    Route(u64),
    /// The next in turn.
    Any,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Output, StoreError>>,
    /// The bytes it stores (an event's body), for [`MAX_BATCH_BYTES`].
    bytes: usize,
}

/// Where a writer takes its work from.
struct Lane {
    queue: mpsc::Sender<Job>,
    /// Readiness probes: before the queue's next batch, as a batch of their own.
    urgent: mpsc::UnboundedSender<Job>,
}

/// The writer tasks of one process. Dropping the last handle (or [`Writers::close`]) ends
/// them once their queues are empty.
pub(super) struct Writers {
    lanes: Mutex<Vec<Lane>>,
    next: AtomicUsize,
    /// Set once, with the reason, if a writer thread dies: its locations' events could never
    /// be written again, so the process must restart.
    died: tokio::sync::watch::Sender<Option<String>>,
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writers").finish_non_exhaustive()
    }
}

impl Writers {
    /// Starts `count` writers (at least one), each on a thread of its own, that connect
    /// with `options` when they first have work; writes that must run alone go to `pool`,
    /// on the runtime this is called from.
    ///
    /// Why threads: a writer's batch is a dozen round trips per write, and on the HTTP
    /// runtime each wake-up after a reply waited in the run queue behind every request's
    /// task (measured: one writer there did 413 events/s, about 160 µs per round trip).
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub(super) fn start(
        options: &PgConnectOptions,
        pool: &PgPool,
        count: usize,
    ) -> Result<Writers, StoreError> {
        let mut lanes = Vec::with_capacity(count.max(1));
        let died = tokio::sync::watch::channel(None).0;
        for index in 0..count.max(1) {
            let (sender, queue) = mpsc::channel(QUEUE);
            let (urgent, probes) = mpsc::unbounded_channel();
            // Named, so that `pg_stat_activity` tells an operator which sessions batch.
            let options = options
                .clone()
                .application_name(&format!("diarysync-writer-{index}"));
            let pool = pool.clone();
            let home = tokio::runtime::Handle::current();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Unsupported(format!("a writer's runtime: {e}")))?;
            let died = died.clone();
            std::thread::Builder::new()
                .name(format!("postgres-writer-{index}"))
                .spawn(move || {
                    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        runtime.block_on(write_loop(options, pool, home, queue, probes));
                    }));
                    if let Err(panic) = stopped {
                        let why = format!(
                            "PostgreSQL writer {index} panicked outside a write: {}",
                            crate::store::panic_message(panic.as_ref())
                        );
                        tracing::error!(reason = %why, "a PostgreSQL writer stopped; the process must restart");
                        died.send_replace(Some(why));
                    }
                })
                .map_err(|e| StoreError::Unsupported(format!("starting a writer: {e}")))?;
            lanes.push(Lane {
                queue: sender,
                urgent,
            });
        }
        Ok(Writers {
            lanes: Mutex::new(lanes),
            next: AtomicUsize::new(0),
            died,
        })
    }

    /// Queues `op` for the next batch of the writer `route` picks (`None`: any) and returns
    /// once it is queued: writes queued one after another on one route run in that order.
    /// `op` may run twice: a run that met a held lock is rolled back and `op` runs again
    /// alone.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] once closed.
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
        let index = match route {
            Some(key) => Index::Route(key),
            None => Index::Any,
        };
        self.submit_to(index, bytes, op).await
    }

    /// Queues `op` on the writer `index` names; see [`Writers::submit`].
    async fn submit_to<T, F>(
        &self,
        index: Index,
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
        let queue = {
            let lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
            if lanes.is_empty() {
                return Err(closed());
            }
            let count = lanes.len();
            let index = match index {
                Index::Route(key) => usize::try_from(key % count as u64).unwrap_or(0),
                Index::Any => self.next.fetch_add(1, Ordering::Relaxed) % count,
            };
            lanes[index].queue.clone()
        };
        let (job, answer) = job_of(bytes, op);
        queue
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the PostgreSQL writer stopped".to_owned()))?;
        Ok(answer)
    }

    /// Whether every writer commits `op` (a probe write) on its own connection, each before
    /// the writes queued for it: a writer that cannot connect (the server's
    /// `max_connections` reached, a network fault) or whose session is read-only (a
    /// failover) fails every write routed to it, however well the pool's probe goes.
    ///
    /// # Errors
    /// The first writer's failure, naming it.
    pub(super) async fn probe<F>(&self, op: F) -> Result<(), StoreError>
    where
        F: for<'a, 'c> Fn(&'a mut Conn<'c>) -> BoxFuture<'a, Result<(), StoreError>>
            + Send
            + Sync
            + Clone
            + 'static,
    {
        let mut answers = Vec::new();
        {
            let lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
            if lanes.is_empty() {
                return Err(closed());
            }
            for lane in lanes.iter() {
                let (job, answer) = job_of(0, op.clone());
                lane.urgent.send(job).map_err(|_| {
                    StoreError::Unavailable("a PostgreSQL writer stopped".to_owned())
                })?;
                answers.push(answer);
            }
        }
        for (n, answer) in answers.into_iter().enumerate() {
            answer.wait().await.map_err(|error| {
                StoreError::Unavailable(format!("PostgreSQL writer {n} cannot write: {error}"))
            })?;
        }
        Ok(())
    }

    /// Completes with the reason once a writer has died (never, while they live).
    pub(super) fn died(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.died.subscribe()
    }

    /// Stops taking writes: the writers finish what is queued and end.
    pub(super) fn close(&self) {
        self.lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the PostgreSQL store is closed".to_owned())
}

/// `op` as a job for a writer (`bytes`: the body it stores), and its answer.
fn job_of<T, F>(bytes: usize, op: F) -> (Job, Pending<T>)
where
    T: Send + 'static,
    F: for<'a, 'c> Fn(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
        + Send
        + Sync
        + 'static,
{
    let op: Op = Box::new(move |conn| {
        let run = op(conn);
        Box::pin(async move { run.await.map(|value| Box::new(value) as Output) })
    });
    let (reply, answer) = oneshot::channel();
    (Job { op, reply, bytes }, Pending::erased(answer))
}

async fn write_loop(
    options: PgConnectOptions,
    pool: PgPool,
    home: tokio::runtime::Handle,
    mut queue: mpsc::Receiver<Job>,
    mut urgent: mpsc::UnboundedReceiver<Job>,
) {
    use sqlx::ConnectOptions as _;
    // Connected at once, so that a server refusing us shows in the log at start, not at
    // the first delivery (which would then fail); a failure here is tried again per batch.
    let mut connection: Option<PgConnection> = match options.connect().await {
        Ok(connected) => Some(connected),
        Err(error) => {
            tracing::warn!(error = %error, "a PostgreSQL writer cannot connect yet");
            None
        }
    };
    // Writes taken from the queue but left for the next batch (over MAX_BATCH_BYTES), first.
    let mut waiting = std::collections::VecDeque::with_capacity(MAX_BATCH);
    loop {
        let mut probes = Vec::new();
        while let Ok(job) = urgent.try_recv() {
            probes.push(job);
        }
        if probes.is_empty() && waiting.is_empty() {
            tokio::select! {
                biased;
                Some(job) = urgent.recv() => probes.push(job),
                job = queue.recv() => match job {
                    Some(job) => waiting.push_back(job),
                    None => break,
                },
            }
        }
        let batch = if probes.is_empty() {
            while waiting.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => waiting.push_back(job),
                    Err(_) => break,
                }
            }
            next_batch(&mut waiting)
        } else {
            probes
        };
        metrics::histogram!(crate::telemetry::BATCH_SIZE, "backend" => "postgres")
            .record(batch.len() as f64);
        commit(&mut connection, batch, &options, &pool, &home).await;
        fail::fail_point!(FAIL_BETWEEN_BATCHES);
    }
}

/// Runs `batch` on the writer's `connection` (made first if there is none), and once more
/// on a new one if the old one was found dead before anything was written, or with each
/// write inserting its own row if the rows deferred to the commit failed.
async fn commit(
    connection: &mut Option<PgConnection>,
    mut batch: Vec<Job>,
    options: &PgConnectOptions,
    pool: &PgPool,
    home: &tokio::runtime::Handle,
) {
    use sqlx::ConnectOptions as _;
    // A connection the server ended while it was idle (a failover, a DBA's reaper, an
    // idle timeout) is found dead by the batch's first statement, before anything was
    // written: the batch runs again once on a new connection instead of failing.
    let mut reconnected = false;
    // Whether event rows wait for the commit; a batch whose rows then fail runs again
    // with each write inserting its own, so that a row only fails its own write.
    let mut defer = true;
    loop {
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match options.connect().await {
                Ok(connected) => connection.insert(connected),
                Err(error) => {
                    tracing::error!(error = %error, "a PostgreSQL writer has no connection");
                    fail_all(batch.into_iter().map(|job| job.reply), &error);
                    return;
                }
            },
        };
        match run_batch(conn, batch, pool, home, defer).await {
            Ok(()) => return,
            Err(Broken::BeforeWriting(jobs, error)) if !reconnected => {
                tracing::warn!(error = %error, "a PostgreSQL writer's connection was gone; reconnecting");
                *connection = None;
                reconnected = true;
                batch = jobs;
            }
            Err(Broken::BeforeWriting(jobs, error)) => {
                fail_all(jobs.into_iter().map(|job| job.reply), &error);
                *connection = None;
                return;
            }
            Err(Broken::Deferred(jobs, error)) => {
                tracing::warn!(error = %error, "a batch's deferred rows failed; running its writes again one row each");
                defer = false;
                batch = jobs;
            }
            Err(Broken::Answered(error)) => {
                tracing::error!(error = %error, "a PostgreSQL writer's connection failed; reconnecting");
                *connection = None;
                return;
            }
        }
    }
}

/// The next batch from `waiting`: in order, up to [`MAX_BATCH`] writes and
/// [`MAX_BATCH_BYTES`] of bodies, and at least one write.
fn next_batch(waiting: &mut std::collections::VecDeque<Job>) -> Vec<Job> {
    let mut batch = Vec::with_capacity(waiting.len().min(MAX_BATCH));
    let mut bytes = 0usize;
    while let Some(job) = waiting.pop_front() {
        bytes = bytes.saturating_add(job.bytes);
        if batch.len() >= MAX_BATCH || (!batch.is_empty() && bytes > MAX_BATCH_BYTES) {
            waiting.push_front(job);
            break;
        }
        batch.push(job);
    }
    batch
}

/// Why a batch ended without committing, or its connection must not be used again.
enum Broken {
    /// Its first statement failed: nothing was written, and its writes are handed back to
    /// run again.
    BeforeWriting(Vec<Job>, sqlx::Error),
    /// Every write of it was answered (with the failure, or after the commit, and the
    /// session was found read-only).
    Answered(StoreError),
    /// The rows its writes deferred to the commit failed, and the batch was rolled back:
    /// its writes are handed back to run again, each inserting its own rows.
    Deferred(Vec<Job>, StoreError),
}

impl From<sqlx::Error> for Broken {
    fn from(error: sqlx::Error) -> Self {
        Broken::Answered(error.into())
    }
}

/// Runs one batch: every write in its savepoint, the rows they deferred (`defer`: see
/// [`Conn::deferred_inserts`]) in one statement, one commit, then every answer. Writes that met
/// a held lock go to run alone.
///
/// # Errors
/// [`Broken::BeforeWriting`] with the writes when its first statement failed;
/// [`Broken::Deferred`] with the writes when their deferred rows failed (nothing committed);
/// [`Broken::Answered`] when the connection failed later (every write of the batch was
/// answered with it) or turned out read-only.
async fn run_batch(
    conn: &mut PgConnection,
    batch: Vec<Job>,
    pool: &PgPool,
    home: &tokio::runtime::Handle,
    defer: bool,
) -> Result<(), Broken> {
    let mut answers: Vec<(Job, Result<Output, StoreError>)> = Vec::with_capacity(batch.len());
    // Whether a write failed because the session is read-only: the connection is then
    // dropped after the batch, so the next one connects to wherever writes go now.
    let mut read_only = false;
    let mut alone = Vec::new();
    let mut pending = batch.into_iter();
    if let Err(error) = simple(conn, "BEGIN; SAVEPOINT job").await {
        return Err(Broken::BeforeWriting(pending.collect(), error));
    }
    // Whether the savepoint `job` stands empty (just opened, or just rolled back to).
    let mut clean = true;
    // The rows the batch's writes left to insert just before the commit.
    let mut deferred = Vec::new();
    for job in pending.by_ref() {
        if !clean && let Err(error) = simple(conn, "RELEASE SAVEPOINT job; SAVEPOINT job").await {
            let replies = answers.into_iter().map(|(job, _)| job.reply);
            fail_all(
                replies.chain([job.reply]).chain(pending.map(|j| j.reply)),
                &error,
            );
            return Err(error.into());
        }
        let mut batched = Conn::postgres_batched(conn, defer);
        let result = crate::store::guarded((job.op)(&mut batched)).await;
        let inserts = batched.take_deferred_inserts();
        if result.is_ok() {
            clean = false;
            deferred.extend(inserts);
            answers.push((job, result));
            continue;
        }
        if let Err(error) = simple(conn, "ROLLBACK TO SAVEPOINT job").await {
            let replies = answers.into_iter().map(|(job, _)| job.reply);
            fail_all(
                replies.chain([job.reply]).chain(pending.map(|j| j.reply)),
                &error,
            );
            return Err(error.into());
        }
        clean = true;
        read_only |= result.as_ref().err().is_some_and(super::is_read_only);
        match result {
            Err(StoreError::Contended) => alone.push(job),
            failed => answers.push((job, failed)),
        }
    }
    if let Err(error) = super::deferred::insert_all(conn, deferred).await {
        // The transaction is aborted (a COMMIT now would roll it back and say it
        // committed): undone whole, and every write handed back, those that met a held
        // lock last, as they would have run after the commit.
        if let Err(rollback) = simple(conn, "ROLLBACK").await {
            let replies = answers.into_iter().map(|(job, _)| job.reply);
            fail_all(replies.chain(alone.into_iter().map(|j| j.reply)), &rollback);
            return Err(rollback.into());
        }
        let jobs = answers
            .into_iter()
            .map(|(job, _)| job)
            .chain(alone)
            .collect();
        return Err(Broken::Deferred(jobs, error));
    }
    let committing = Instant::now();
    let committed = simple(conn, "COMMIT").await;
    metrics::histogram!(crate::telemetry::COMMIT_SECONDS, "backend" => "postgres")
        .record(committing.elapsed().as_secs_f64());
    for job in alone {
        home.spawn(run_alone(pool.clone(), job));
    }
    match committed {
        Ok(()) => {
            for (job, result) in answers {
                let _ = job.reply.send(result);
            }
            if read_only {
                return Err(Broken::Answered(StoreError::Unavailable(
                    "the writer's session is read-only".to_owned(),
                )));
            }
            Ok(())
        }
        Err(error) => {
            fail_all(answers.into_iter().map(|(job, _)| job.reply), &error);
            Err(error.into())
        }
    }
}

/// Runs statements without parameters in one round trip (PostgreSQL's simple protocol).
fn simple<'a>(
    conn: &'a mut PgConnection,
    sql: &'static str,
) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    use sqlx::Executor as _;
    Box::pin(async move { conn.execute(sqlx::raw_sql(sql)).await.map(|_| ()) })
}

/// Answers every write with a failure of the batch's connection or commit.
fn fail_all(
    replies: impl Iterator<Item = oneshot::Sender<Result<Output, StoreError>>>,
    error: &sqlx::Error,
) {
    for reply in replies {
        let _ = reply.send(Err(StoreError::Unavailable(format!(
            "the batch's transaction failed: {error}"
        ))));
    }
}

/// Runs a write that met a held lock in a transaction of its own, where it waits.
async fn run_alone(pool: PgPool, job: Job) {
    let result = super::solo(&pool, &job.op).await;
    let _ = job.reply.send(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(bytes: usize) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            op: Box::new(|_| Box::pin(async { Ok(Box::new(()) as Output) })),
            reply,
            bytes,
        }
    }

    /// A batch of the largest deliveries carried hundreds of MB in one insert, and a small
    /// delivery behind it waited for all of it: batches stop at `MAX_BATCH_BYTES` of bodies
    /// (a larger write still goes, alone) and at `MAX_BATCH` writes, in queue order.
    #[test]
    fn a_batch_stops_at_its_bytes_and_its_writes_and_keeps_the_queues_order() {
        let mb = 1 << 20;
        let mut waiting: std::collections::VecDeque<Job> = [3 * mb, 3 * mb, 3 * mb, 1, 20 * mb, 1]
            .into_iter()
            .map(job)
            .collect();
        let sizes = |batch: Vec<Job>| batch.iter().map(|j| j.bytes).collect::<Vec<_>>();
        assert_eq!(sizes(next_batch(&mut waiting)), [3 * mb, 3 * mb]);
        assert_eq!(sizes(next_batch(&mut waiting)), [3 * mb, 1]);
        assert_eq!(sizes(next_batch(&mut waiting)), [20 * mb]);
        assert_eq!(sizes(next_batch(&mut waiting)), [1]);
        assert!(waiting.is_empty());

        let mut many: std::collections::VecDeque<Job> =
            (0..MAX_BATCH + 3).map(|_| job(10)).collect();
        assert_eq!(next_batch(&mut many).len(), MAX_BATCH);
        assert_eq!(next_batch(&mut many).len(), 3);
    }
}
