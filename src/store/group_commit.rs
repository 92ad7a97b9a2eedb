//! Group commit for SQLite: concurrent events share one durable transaction.
//!
//! Each fsync-durable commit costs a disk flush, so one transaction per request caps
//! throughput at the disk's flush rate. The writer task here takes every event waiting when
//! it becomes free (no artificial delay: latency stays bounded by one batch), runs each in
//! its own savepoint inside one transaction, commits once, and only then answers each
//! request with its own outcome. An event whose processing fails is rolled back to its
//! savepoint and stored as `failed`; its batch-mates are unaffected. If the commit itself
//! fails, every request of the batch gets the error (and a 500), none a 2xx.

use sqlx::{Acquire, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::sql::{insert_event, record_outcome};
use super::{Ingested, NewEvent, StoreError, Verdict, apply};
use crate::domain::{Mapped, Outcome, Reason};

/// Events per transaction at most; more wait for the next one.
const MAX_BATCH: usize = 256;
/// Requests that may wait for the writer; beyond this, callers wait to enqueue.
const QUEUE: usize = 4096;

struct Job {
    event: NewEvent,
    mapped: Mapped,
    reply: oneshot::Sender<Result<Ingested, StoreError>>,
}

/// The handle requests use to reach the writer.
#[derive(Debug, Clone)]
pub struct GroupWriter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl GroupWriter {
    /// Starts the writer task on `pool` (SQLite's single writer connection).
    pub fn start(pool: AnyPool) -> GroupWriter {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, queue));
        GroupWriter { jobs }
    }

    /// Stores and applies one event in the next group; returns once it is durable.
    ///
    /// # Errors
    /// When the batch could not be committed.
    pub async fn ingest(&self, event: NewEvent, mapped: Mapped) -> Result<Ingested, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                event,
                mapped,
                reply,
            })
            .await
            .map_err(|_| StoreError::Unsupported("the writer has stopped".to_owned()))?;
        answer.await.map_err(|_| {
            StoreError::Unsupported("the writer stopped before answering".to_owned())
        })?
    }
}

async fn run(pool: AnyPool, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len();
        match commit_batch(&pool, &mut batch).await {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(error = %error, size, "group commit failed");
                for job in batch {
                    let _ = job.reply.send(Err(StoreError::Unsupported(format!(
                        "group commit failed: {error}"
                    ))));
                }
            }
        }
    }
}

/// Runs every job in its own savepoint of one transaction and commits once.
async fn commit_batch(
    pool: &AnyPool,
    batch: &mut [Job],
) -> Result<Vec<Result<Ingested, StoreError>>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter_mut() {
        let mapped = std::mem::replace(
            &mut job.mapped,
            Mapped::Notice {
                detail: String::new(),
            },
        );
        let mut savepoint = tx.begin().await?;
        let applied = async {
            let pending = Verdict {
                outcome: Outcome::Pending,
                reason: None,
                detail: None,
            };
            let event_id = insert_event(&mut savepoint, &job.event, &pending).await?;
            let now = chrono::Utc::now();
            let result =
                apply::process(&mut savepoint, event_id, &job.event.partner, mapped, now).await?;
            record_outcome(&mut savepoint, &result, now).await?;
            Ok::<_, StoreError>(result)
        }
        .await;
        match applied {
            Ok(result) => {
                savepoint.commit().await?;
                results.push(Ok(result));
            }
            Err(error) => {
                savepoint.rollback().await?;
                // The raw event is still stored, as failed, in the same commit.
                let failed = Verdict {
                    outcome: Outcome::Failed,
                    reason: Some(Reason::StoreError),
                    detail: Some("the event could not be processed".to_owned()),
                };
                let stored = insert_event(&mut tx, &job.event, &failed).await;
                tracing::error!(error = %error, stored = stored.is_ok(), "event failed in its group");
                results.push(Err(error));
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}
