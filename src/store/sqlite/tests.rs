//! The SQLite store's own tests: durability and planner settings, the writer's failure handling, opening.

use super::*;

#[tokio::test]
async fn every_commit_is_fsync_durable_in_wal_mode() {
    let (_dir, _, store) = fresh(false).await;
    let (mode, synchronous) = store
        .write(|conn| {
            Box::pin(async move {
                let mode: String = super::super::db::query_scalar("PRAGMA journal_mode")
                    .fetch_one(conn)
                    .await?;
                let synchronous: i64 = super::super::db::query_scalar("PRAGMA synchronous")
                    .fetch_one(conn)
                    .await?;
                Ok((mode, synchronous))
            })
        })
        .await
        .expect("pragmas");
    assert_eq!(mode, "wal");
    assert_eq!(synchronous, 2, "FULL: the WAL is fsynced at every commit");
}

/// A store on a fresh file, and the directory that keeps it.
async fn fresh(exclusive: bool) -> (tempfile::TempDir, String, Sqlite) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    let store = open(&url, exclusive, SqliteSynchronous::Full)
        .await
        .expect("opens");
    (dir, url, store)
}

/// What a test write does after inserting its venue.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    Keep,
    Refuse,
    Panic,
}

async fn insert(store: &Sqlite, name: &'static str, then: Then) -> Result<(), StoreError> {
    store
        .write(move |conn| {
            Box::pin(async move {
                super::super::db::query(
                    "INSERT INTO venues (name, timezone, created_at) VALUES ($1, 'UTC', 0)",
                )
                .bind(name)
                .execute(conn)
                .await?;
                assert!(then != Then::Panic, "a bug in write {name}");
                if then == Then::Refuse {
                    return Err(StoreError::Conflict("refused".to_owned()));
                }
                Ok(())
            })
        })
        .await
}

async fn names(store: &Sqlite) -> Vec<String> {
    store
        .read(|conn| {
            Box::pin(
                super::super::db::query_scalar("SELECT name FROM venues ORDER BY name")
                    .fetch_all(conn),
            )
        })
        .await
        .expect("read")
}

#[tokio::test]
async fn a_failing_job_is_rolled_back_alone_and_its_batch_mates_commit() {
    let (_dir, _, store) = fresh(false).await;
    let (a, b, c) = tokio::join!(
        insert(&store, "a", Then::Keep),
        insert(&store, "b", Then::Refuse),
        insert(&store, "c", Then::Keep)
    );
    assert!(a.is_ok() && c.is_ok());
    assert!(matches!(b, Err(StoreError::Conflict(_))));
    assert_eq!(names(&store).await, ["a", "c"]);
}

#[tokio::test]
async fn a_write_that_panics_is_rolled_back_alone_and_its_batch_mates_commit() {
    let (_dir, _, store) = fresh(false).await;
    let (a, b, c) = tokio::join!(
        insert(&store, "a", Then::Keep),
        insert(&store, "b", Then::Panic),
        insert(&store, "c", Then::Keep)
    );
    assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
    match b {
        Err(StoreError::Panicked(message)) => assert!(message.contains("a bug in write b")),
        other => panic!("expected the panic as the write's error, got {other:?}"),
    }
    insert(&store, "d", Then::Keep)
        .await
        .expect("the writer goes on");
    assert_eq!(names(&store).await, ["a", "c", "d"]);
    assert!(store.ready(Duration::from_secs(5)).await.is_ok());
}

#[tokio::test]
async fn a_dead_writer_is_not_ready_and_says_why() {
    let (_dir, _, store) = fresh(false).await;
    assert!(store.ready(Duration::from_secs(5)).await.is_ok());
    let mut died = store.died();
    store.writer().die("injected".to_owned());
    assert!(matches!(
        store.ready(Duration::from_secs(5)).await,
        Err(StoreError::Unavailable(_))
    ));
    let reason = died.wait_for(Option::is_some).await.expect("told").clone();
    assert_eq!(reason.as_deref(), Some("injected"));
}

#[tokio::test]
async fn a_second_exclusive_open_of_one_file_is_refused_with_the_holders_pid() {
    let (_dir, url, first) = fresh(true).await;
    match open(&url, true, SqliteSynchronous::Full).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(
                message.contains("in use by another diarysync process"),
                "{message}"
            );
            assert!(
                message.contains(&std::process::id().to_string()),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(first);
}

#[test]
fn only_file_urls_are_accepted() {
    assert_eq!(
        path_of("sqlite://data/d.db?mode=rwc").expect("path"),
        PathBuf::from("data/d.db")
    );
    assert_eq!(path_of("sqlite:d.db").expect("path"), PathBuf::from("d.db"));
    assert!(path_of("sqlite::memory:").is_err());
    assert!(path_of("postgres://x").is_err());
}

/// The candidates' table filter is a `LIKE` with a bound pattern, a new pattern on every
/// sale: SQLite compiled such a statement again for each one until the connection asked
/// for plans that do not depend on bound values (17 % of the writer's time).
#[test]
fn a_statement_with_a_bound_like_pattern_is_compiled_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conn = connect(
        &dir.path().join("d.db"),
        Role::Writer,
        SqliteSynchronous::Full,
    )
    .expect("connects");
    conn.execute_batch("CREATE TABLE t (tables TEXT); INSERT INTO t VALUES ('[\"4\"]');")
        .expect("table");
    let mut statement = conn
        .prepare("SELECT count(*) FROM t WHERE tables LIKE ?1 ESCAPE '\\'")
        .expect("prepares");
    let mut found = Vec::new();
    for pattern in ["%\"4\"%", "%\"12\"%", "%\"4\"%", "%\"7\"%"] {
        let count: i64 = statement
            .query_row([pattern], |row| row.get(0))
            .expect("runs");
        found.push(count);
    }
    assert_eq!(found, [1, 0, 1, 0], "the filter still finds its rows");
    assert_eq!(
        statement.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "compiled again for a new pattern"
    );
}
