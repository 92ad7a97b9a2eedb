//! The SQLite engine: one file, WAL, fsync-durable commits, one writer thread doing group
//! commit, a few reader connections.
//!
//! `synchronous = FULL` makes every commit fsync the WAL before it returns, so an event
//! acknowledged with a 2xx survives a crash or power loss. A flush costs about as much as
//! processing dozens of events, so one transaction per request would cap throughput at the
//! disk's flush rate. Instead every write goes to one thread that owns the write connection:
//! it takes every job waiting when it becomes free (no artificial delay: latency stays
//! bounded by one batch), runs each in its own savepoint of one transaction, commits once,
//! and only then answers each job. A job that fails is rolled back to its savepoint alone;
//! if the commit itself fails, every job of the batch gets the error and none a 2xx.
//!
//! A readiness probe does not wait its turn: it goes to an urgent list the writer empties
//! before each batch, as a transaction of its own. Queued behind a saturated node's writes,
//! it would take longer than any balancer's check allows, and the balancer would take every
//! busy node out exactly when the others need it; ahead of them, it waits at most for the
//! batch being committed.
//!
//! Readers use their own connections and, in WAL mode, never block the writer. Copying the
//! WAL back into the database (a checkpoint, with its own fsync) is mostly the checkpointer
//! thread's job, not the writer's: SQLite would otherwise run it inside a commit every 1,000
//! pages. Under sustained load the WAL could then never be restarted (a checkpoint only
//! completes if nothing was committed while it ran), so once it is long the checkpointer
//! syncs the database file and asks the writer to finish the short tail between two batches,
//! after which the next transaction reuses the WAL from its start. No lock is ever contended,
//! so nobody waits in SQLite's busy-handler back-off.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use self::checkpoint::{Checkpointing, checkpoint_loop};
use super::StoreError;
use super::db::{BoxFuture, Conn, Pending, run_sync};
use crate::config::SqliteSynchronous;
use crate::telemetry;

/// Jobs per transaction at most; more wait for the next one.
const MAX_BATCH: usize = 512;
/// Jobs that may wait for the writer; beyond this, callers wait to enqueue.
const QUEUE: usize = 8192;
/// How long SQLite waits for a lock another program holds before the write fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle reader connections kept open.
const READERS: usize = 4;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;

/// The schema, in order; `PRAGMA user_version` records how many are applied.
const MIGRATIONS: [(&str, &str); 14] = [
    (
        "0001_init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        "0002_fast_ingest",
        include_str!("../../migrations/sqlite/0002_fast_ingest.sql"),
    ),
    (
        "0003_retention",
        include_str!("../../migrations/sqlite/0003_retention.sql"),
    ),
    (
        "0004_resilience",
        include_str!("../../migrations/sqlite/0004_resilience.sql"),
    ),
    (
        "0005_partner_rank",
        include_str!("../../migrations/sqlite/0005_partner_rank.sql"),
    ),
    (
        "0006_api_budget",
        include_str!("../../migrations/sqlite/0006_api_budget.sql"),
    ),
    (
        "0007_floor_truth",
        include_str!("../../migrations/sqlite/0007_floor_truth.sql"),
    ),
    (
        "0008_table_history",
        include_str!("../../migrations/sqlite/0008_table_history.sql"),
    ),
    (
        "0009_platform_link",
        include_str!("../../migrations/sqlite/0009_platform_link.sql"),
    ),
    (
        "0010_operators",
        include_str!("../../migrations/sqlite/0010_operators.sql"),
    ),
    (
        "0011_partner_registry",
        include_str!("../../migrations/sqlite/0011_partner_registry.sql"),
    ),
    (
        "0012_partner_scripts",
        include_str!("../../migrations/sqlite/0012_partner_scripts.sql"),
    ),
    (
        "0013_change_position_is_the_id",
        include_str!("../../migrations/sqlite/0013_change_position_is_the_id.sql"),
    ),
    (
        "0014_event_replays",
        include_str!("../../migrations/sqlite/0014_event_replays.sql"),
    ),
];

/// What a job leaves for after the commit: whether its savepoint stands, and how to answer.
struct Finished {
    kept: bool,
    answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

type Job = Box<dyn FnOnce(&mut Connection) -> Finished + Send>;

/// Jobs that run before the queue's next batch, in a transaction of their own.
type Urgent = Arc<Mutex<Vec<Job>>>;

/// A handle on the writer thread and the reader pool. Cheap to clone.
#[derive(Clone)]
pub struct Sqlite {
    jobs: mpsc::Sender<Job>,
    urgent: Urgent,
    readers: Arc<Readers>,
    writer: Arc<WriterHealth>,
}

/// What the writer thread tells the rest of the process about itself.
#[derive(Debug)]
pub struct WriterHealth {
    /// False once the thread has stopped for any reason but the store being closed.
    alive: AtomicBool,
    /// Whether the last group commit failed (a full disk, the file locked by another
    /// process): readiness is false until a write commits again.
    last_commit_failed: AtomicBool,
    /// Set once, with the reason, when the writer dies: the process must restart.
    died: tokio::sync::watch::Sender<Option<String>>,
}

impl WriterHealth {
    fn new() -> WriterHealth {
        WriterHealth {
            alive: AtomicBool::new(true),
            last_commit_failed: AtomicBool::new(false),
            died: tokio::sync::watch::channel(None).0,
        }
    }

    fn die(&self, why: String) {
        tracing::error!(reason = %why, "the SQLite writer stopped; the process must restart");
        self.alive.store(false, Ordering::Release);
        self.died.send_replace(Some(why));
    }
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite")
            .field("path", &self.readers.path)
            .finish_non_exhaustive()
    }
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// The file a `sqlite:` URL names (`sqlite://data/d.db`, `sqlite:d.db?mode=rwc`).
fn path_of(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Unsupported(format!("not a sqlite: URL: {url}")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Unsupported(
            "SQLite needs a file (sqlite://PATH): an in-memory database would lose every event"
                .to_owned(),
        ));
    }
    Ok(PathBuf::from(path))
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The one connection that writes, in WAL mode with fsync-durable commits.
    Writer,
    /// Reads only.
    Reader,
    /// Copies the WAL back into the database file.
    Checkpointer,
}

fn connect(
    path: &Path,
    role: Role,
    synchronous: SqliteSynchronous,
) -> Result<Connection, StoreError> {
    let access = match role {
        Role::Writer => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        Role::Checkpointer => OpenFlags::SQLITE_OPEN_READ_WRITE,
        Role::Reader => OpenFlags::SQLITE_OPEN_READ_ONLY,
    };
    let conn = Connection::open_with_flags(path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Only another program (the sqlite3 shell, a backup tool) can hold the write lock: a
    // second diarysync refuses to start. Waiting longer would only hold up every request.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Plans that do not depend on bound values. Without it, a statement whose `LIKE` has a
    // bound pattern (the candidates' table filter) is compiled again every time the pattern
    // changes, since SQLite may plan a `LIKE` by its pattern's prefix; ours all start with
    // `%`, so that never helps. The recompiling was 17 % of the writer's time (a profile of
    // the ingest benchmark). The same holds for plans from `sqlite_stat4`, which the bundled
    // SQLite is built with.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // temp_store: savepoints journal the pages they change; in memory, not in a temp file.
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY; \
         PRAGMA synchronous = {};",
        synchronous.pragma()
    ))?;
    if role == Role::Writer {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
             PRAGMA journal_size_limit = 67108864;",
        )?;
    }
    Ok(conn)
}

/// Applies the migrations not yet applied, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let mut applied: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if applied == 0 {
        // Databases created before this runner recorded their migrations the sqlx way.
        let sqlx_versions: Option<i64> = conn
            .query_row(
                "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
                [],
                |row| row.get(0),
            )
            .unwrap_or(None);
        applied = sqlx_versions.unwrap_or(0);
    }
    for (number, (name, sql)) in (1i64..).zip(MIGRATIONS) {
        if number <= applied {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Unsupported(format!("migration {name}: {e}")))?;
        tx.execute_batch(&format!("PRAGMA user_version = {number}"))?;
        tx.commit()?;
        tracing::info!(migration = name, "applied");
    }
    Ok(())
}

/// Where the process holding a database writes its id, for the message a second one prints:
/// beside the database's real file (symbolic links resolved), `d.db` -> `d.db.pid`.
fn pid_path(path: &Path) -> PathBuf {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut name = real.into_os_string();
    name.push(".pid");
    PathBuf::from(name)
}

/// Takes the database for this process alone: SQLite's own locking would let a second
/// process write to the same file in silence, each writer then waiting on the other's
/// locks. The lock (`flock`) is on the database file itself, so a second process reaching
/// it through a symbolic or hard link is refused too; SQLite's own locks are `fcntl` locks,
/// which it does not touch. The writer thread holds it until its connection is closed: an
/// open file of the database closed before that would drop SQLite's locks with it.
///
/// # Errors
/// [`StoreError::Unavailable`] naming the file and the process holding it.
fn lock_exclusively(path: &Path) -> Result<std::fs::File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open the database {}: {e}", path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => {
            // Best effort: only ever read for a message.
            let _ = std::fs::write(pid_path(path), std::process::id().to_string());
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(pid_path(path)).unwrap_or_default();
            Err(StoreError::Unavailable(format!(
                "the SQLite database {} is in use by another diarysync process (pid {}); \
                 one process serves a SQLite file: stop the other one, or use PostgreSQL to \
                 run several nodes",
                path.display(),
                if holder.trim().is_empty() {
                    "unknown"
                } else {
                    holder.trim()
                }
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// Opens (creating if needed) and migrates the SQLite database at `url`, and starts its
/// writer thread; with `exclusive`, first takes the database for this process alone.
///
/// # Errors
/// When the file cannot be opened or created, another process holds it (`exclusive`), or
/// a migration fails.
pub async fn open(
    url: &str,
    exclusive: bool,
    synchronous: SqliteSynchronous,
) -> Result<Sqlite, StoreError> {
    let path = path_of(url)?;
    if synchronous == SqliteSynchronous::Normal {
        tracing::warn!(
            "sqlite_synchronous = \"normal\": commits do not wait for the disk; a power failure \
             or kernel crash loses the events acknowledged since the last checkpoint"
        );
    }
    let lock = exclusive.then(|| lock_exclusively(&path)).transpose()?;
    let writer_path = path.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut conn = connect(&writer_path, Role::Writer, synchronous)?;
        migrate(&mut conn)?;
        Ok::<_, StoreError>(conn)
    })
    .await
    .map_err(|e| StoreError::Unsupported(format!("opening SQLite: {e}")))??;
    // One descriptor on the database file for the whole store: the exclusive lock's, and the
    // one the checkpointer syncs. Closing any descriptor of a file drops every POSIX lock the
    // process holds on it, SQLite's own included: a sync through a descriptor opened and
    // closed each time let the sqlite3 shell believe it was the file's last user, checkpoint
    // and delete our WAL under us (found by the outside attack on issue 17). This one is
    // closed only after the writer's and the checkpointer's connections.
    let file = Arc::new(match lock {
        Some(lock) => lock,
        None => std::fs::File::open(&path).map_err(|e| {
            StoreError::Unavailable(format!("cannot open the database {}: {e}", path.display()))
        })?,
    });
    let (jobs, queue) = mpsc::channel(QUEUE);
    let urgent = Urgent::default();
    let health = Arc::new(WriterHealth::new());
    let (writer_alive, writer_gone) = std::sync::mpsc::channel::<()>();
    let checkpointing = Arc::new(Checkpointing::default());
    let (checkpointer_path, asks) = (path.clone(), Arc::clone(&checkpointing));
    let checkpointer_file = Arc::clone(&file);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".to_owned())
        .spawn(move || {
            checkpoint_loop(&checkpointer_path, &checkpointer_file, &writer_gone, &asks);
            drop(checkpointer_file);
        })
        .map_err(|e| StoreError::Unsupported(format!("starting the checkpointer: {e}")))?;
    let (writer_health, writer_urgent) = (Arc::clone(&health), Arc::clone(&urgent));
    std::thread::Builder::new()
        .name("sqlite-writer".to_owned())
        .spawn(move || {
            let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                write_loop(
                    writer,
                    queue,
                    &writer_urgent,
                    &checkpointing,
                    &writer_health,
                );
            }));
            // The connection is closed (write_loop took it): only now the lock goes.
            drop(file);
            if let Err(panic) = stopped {
                writer_health.die(format!(
                    "the writer thread panicked outside a write: {}",
                    super::panic_message(panic.as_ref())
                ));
            }
            drop(writer_alive);
        })
        .map_err(|e| StoreError::Unsupported(format!("starting the writer thread: {e}")))?;
    Ok(Sqlite {
        jobs,
        urgent,
        readers: Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }),
        writer: health,
    })
}

impl Sqlite {
    /// Runs `op` in the next group-committed transaction; answers once it is durable.
    ///
    /// # Errors
    /// What `op` returns, or the commit's failure.
    pub async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(op).await?.wait().await
    }

    /// Queues `op` for the next group-committed transaction and returns once it is queued:
    /// writes queued one after another run in that order.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the writer has stopped.
    pub async fn submit<T, F>(&self, op: F) -> Result<Pending<T>, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (job, answer) = job_of(op);
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".to_owned()))?;
        Ok(answer)
    }

    /// Runs `op` before every write queued, in a transaction of its own that commits after
    /// the batch being written now; answers once it is durable. For the readiness probe
    /// only: it says whether a write can commit, not how long the queue is.
    ///
    /// # Errors
    /// What `op` returns, the commit's failure, or [`StoreError::Unavailable`] when the
    /// writer has stopped.
    async fn write_urgently<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (job, answer) = job_of(op);
        self.urgent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(job);
        // Wakes a writer waiting for work; a full queue means it is busy and looks at the
        // urgent jobs before its next batch anyway.
        let wake: Job = Box::new(|_| Finished {
            kept: true,
            answer: Box::new(|_| {}),
        });
        if let Err(mpsc::error::TrySendError::Closed(_)) = self.jobs.try_send(wake) {
            return Err(StoreError::Unavailable(
                "the SQLite writer has stopped".to_owned(),
            ));
        }
        answer.wait().await
    }

    /// Runs `op` on a reader connection, off the async threads.
    ///
    /// # Errors
    /// What `op` returns, or a failure to open a reader.
    pub async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let idle = readers
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut connection = match idle {
                Some(connection) => connection,
                None => connect(&readers.path, Role::Reader, SqliteSynchronous::Full)?,
            };
            let result = run_sync(op(&mut Conn::sqlite(&mut connection)));
            let mut idle = readers.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < READERS && connection.is_autocommit() {
                idle.push(connection);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Unsupported(format!("a SQLite read was cancelled: {e}")))?
    }

    /// Waits until every write enqueued before it is committed.
    pub async fn flush(&self) {
        let _ = self.write(|_| Box::pin(async { Ok(()) })).await;
    }

    /// The writer thread's state.
    pub fn writer(&self) -> &WriterHealth {
        &self.writer
    }

    /// Completes with the reason once the writer has died (never, while it lives).
    pub fn died(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.writer.died.subscribe()
    }

    /// Whether a write can commit now: the writer is alive, the last commit did not fail,
    /// and a probe write (one heartbeat row, so a full disk or a lock held by another
    /// process shows) commits within `within`. The probe goes before the writes queued, so
    /// a node that is only busy stays ready.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] saying which of these does not hold.
    pub async fn ready(&self, within: Duration) -> Result<(), StoreError> {
        if !self.writer.alive.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "the writer thread has stopped".into(),
            ));
        }
        let probe = self.write_urgently(|conn| Box::pin(super::db::heartbeat(conn)));
        match tokio::time::timeout(within, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(StoreError::Unavailable(format!(
                "a probe write failed: {error}"
            ))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "a probe write did not commit within {} ms (the database may be locked by another process)",
                within.as_millis()
            ))),
        }
    }
}

/// Writes a consistent copy of the SQLite database at `url` to `target` while the service
/// may be running: `VACUUM INTO` reads one snapshot of the database (the WAL's committed
/// transactions included, which copying the file alone would miss) in a read transaction
/// that never blocks the writer, and writes a compact, self-contained file.
///
/// # Errors
/// When the database cannot be opened, `target` exists already, or the copy fails.
pub fn backup(url: &str, target: &Path) -> Result<(), StoreError> {
    let path = path_of(url)?;
    if target.exists() {
        return Err(StoreError::Unsupported(format!(
            "{} exists already; back up to a new file",
            target.display()
        )));
    }
    let conn = connect(&path, Role::Reader, SqliteSynchronous::Full)?;
    let target_text = target
        .to_str()
        .ok_or_else(|| StoreError::Unsupported("the backup path must be UTF-8".to_owned()))?;
    conn.execute("VACUUM INTO ?1", [target_text])?;
    Ok(())
}

/// `op` as a job for the writer thread, and its answer.
fn job_of<T, F>(op: F) -> (Job, Pending<T>)
where
    T: Send + 'static,
    F: for<'a, 'c> FnOnce(&'a mut Conn<'c>) -> BoxFuture<'a, Result<T, StoreError>>
        + Send
        + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |connection| {
        // A panic in one write fails that write alone: its savepoint is rolled back and
        // the writer goes on with the rest of the batch.
        let result = run_sync(super::guarded(op(&mut Conn::sqlite(connection))));
        Finished {
            kept: result.is_ok(),
            answer: Box::new(move |committed| {
                let _ = reply.send(committed.and(result));
            }),
        }
    });
    (job, Pending::new(answer))
}

/// A commit that took this long is logged with what it overlapped.
const SLOW_COMMIT: Duration = Duration::from_millis(100);

/// `fail` point names in the writer, for the tests that prove a dead writer is noticed.
pub const FAIL_BETWEEN_BATCHES: &str = "sqlite-writer-between-batches";

fn write_loop(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Job>,
    urgent: &Mutex<Vec<Job>>,
    checkpointing: &Checkpointing,
    health: &WriterHealth,
) {
    while let Some(first) = queue.blocking_recv() {
        let probes = std::mem::take(&mut *urgent.lock().unwrap_or_else(PoisonError::into_inner));
        if !probes.is_empty() {
            commit_recording(&mut conn, probes, health, checkpointing);
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_recording(&mut conn, batch, health, checkpointing);
        if checkpointing.restart_due.swap(false, Ordering::AcqRel) {
            // The checkpointer copied and synced nearly everything: finish the tail here,
            // so the checkpoint completes and the next transaction restarts the WAL.
            if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                tracing::warn!(error = %error, "finishing a checkpoint failed; will try again");
            }
        }
        fail::fail_point!(FAIL_BETWEEN_BATCHES);
    }
    // Every handle is gone: fold the WAL into the database before closing.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

/// [`commit_batch`], with what it did in the writer's health and metrics.
/// A slow one ([`SLOW_COMMIT`]) is logged with its size, how much of it was the writer's own
/// processor time and how much the `COMMIT` (the WAL's write and sync), and what the
/// checkpointer was doing as it began and ended: the few slow commits are what sets the tail
/// at a steady rate, and these say whether the disk or the processor made them slow.
fn commit_recording(
    conn: &mut Connection,
    batch: Vec<Job>,
    health: &WriterHealth,
    checkpointing: &Checkpointing,
) {
    let size = batch.len();
    let started = Instant::now();
    let cpu_before = thread_cpu_time();
    let checkpointer_before = checkpointing.busy_with();
    let Committed { ok, commit } = commit_batch(conn, batch);
    health.last_commit_failed.store(!ok, Ordering::Release);
    let took = started.elapsed();
    let cpu = thread_cpu_time().saturating_sub(cpu_before);
    metrics::histogram!(telemetry::COMMIT_SECONDS, "backend" => "sqlite")
        .record(took.as_secs_f64());
    metrics::histogram!(telemetry::BATCH_SIZE).record(size as f64);
    metrics::histogram!(telemetry::WRITER_CPU_SECONDS).record(cpu.as_secs_f64());
    metrics::histogram!(telemetry::COMMIT_SYNC_SECONDS).record(commit.as_secs_f64());
    if took >= SLOW_COMMIT {
        tracing::warn!(
            ms = took.as_millis(),
            writes = size,
            cpu_ms = cpu.as_millis(),
            commit_ms = commit.as_millis(),
            checkpointer_before,
            checkpointer_after = checkpointing.busy_with(),
            "a slow commit"
        );
    }
}

/// CPU time the calling thread has used since it started (user and system).
fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// What [`commit_batch`] did: whether the batch committed, and how long its `COMMIT` took
/// (zero if it never got that far).
struct Committed {
    ok: bool,
    commit: Duration,
}

/// Runs every job in its own savepoint of one transaction, commits once, then answers.
fn commit_batch(conn: &mut Connection, batch: Vec<Job>) -> Committed {
    let mut commit = Duration::ZERO;
    let mut answers = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    let ran = (|| {
        run(conn, "BEGIN IMMEDIATE")?;
        for job in jobs.by_ref() {
            run(conn, "SAVEPOINT job")?;
            // `write` already turns a panic inside a write into its error; this catches one
            // while the write is being set up, whose caller then hears the job was lost.
            let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn)));
            let kept = match finished {
                Ok(finished) => {
                    answers.push(finished.answer);
                    finished.kept
                }
                Err(panic) => {
                    let message = super::panic_message(panic.as_ref());
                    tracing::error!(panic = %message, "a write panicked; rolled back alone");
                    false
                }
            };
            if !kept {
                run(conn, "ROLLBACK TO job")?;
            }
            run(conn, "RELEASE job")?;
        }
        let committing = Instant::now();
        let committed = run(conn, "COMMIT");
        commit = committing.elapsed();
        committed
    })();
    match ran {
        Ok(()) => {
            for answer in answers {
                answer(Ok(()));
            }
            Committed { ok: true, commit }
        }
        Err(error) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            tracing::error!(error = %error, jobs = answers.len(), "group commit failed");
            for answer in answers {
                answer(Err(StoreError::Unsupported(format!(
                    "group commit failed: {error}"
                ))));
            }
            // Jobs not yet run are dropped with `jobs`: their callers see the writer's error.
            Committed { ok: false, commit }
        }
    }
}

/// Runs a statement without parameters, prepared once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

mod checkpoint;
#[cfg(test)]
mod tests;
