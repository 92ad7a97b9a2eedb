//! One readiness probe at a time per process: callers that ask while a probe is running
//! share its answer instead of starting their own.
//!
//! A probe is a write that goes before every write queued (see the engines' `ready`). A
//! balancer, a supervisor and anybody on the network may all poll `/readyz`; a probe each
//! would let them push writes ahead of the deliveries as fast as they can ask.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};

use super::super::StoreError;

/// The probe running now, if any: its answer, `Err` with why the store is not ready.
type Running = Shared<BoxFuture<'static, Result<(), String>>>;

/// See the module's documentation. Cheap to clone: clones share the probe.
#[derive(Clone, Default)]
pub(super) struct Readiness {
    /// The last probe, and when it started.
    running: Arc<Mutex<Option<(Instant, Running)>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").finish_non_exhaustive()
    }
}

impl Readiness {
    /// The answer of the probe running now, or of `probe`, started now if none is: the last
    /// one has answered (an answer is never reused) or started more than `within` ago (it
    /// answers within that itself; one nobody waits for any more is not joined late).
    /// `probe` runs on a task of its own, so a caller that hangs up (a balancer's check
    /// timing out) does not leave it half done for the next.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] with the probe's reason.
    pub(super) async fn check<F>(&self, within: Duration, probe: F) -> Result<(), StoreError>
    where
        F: Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        let running = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            match running.as_ref() {
                Some((started, shared))
                    if shared.peek().is_none() && started.elapsed() < within =>
                {
                    shared.clone()
                }
                _ => {
                    let task = tokio::spawn(probe);
                    let shared = async move {
                        match task.await {
                            Ok(answer) => answer.map_err(|e| match e {
                                StoreError::Unavailable(why) => why,
                                other => other.to_string(),
                            }),
                            Err(e) => Err(format!("the readiness probe stopped: {e}")),
                        }
                    }
                    .boxed()
                    .shared();
                    *running = Some((Instant::now(), shared.clone()));
                    shared
                }
            }
        };
        running.await.map_err(StoreError::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    const WITHIN: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn callers_during_a_probe_share_it_and_a_later_caller_starts_another() {
        let readiness = Readiness::default();
        let started = Arc::new(AtomicUsize::new(0));
        let probe = |started: &Arc<AtomicUsize>| {
            let started = Arc::clone(started);
            async move {
                let n = started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                if n == 0 {
                    Ok(())
                } else {
                    Err(StoreError::Unavailable("the second probe".to_owned()))
                }
            }
        };
        let answers = futures_util::future::join_all(
            (0..20).map(|_| readiness.check(WITHIN, probe(&started))),
        )
        .await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "one probe for 20 callers"
        );
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        let later = readiness.check(WITHIN, probe(&started)).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "an answer is never reused"
        );
        assert!(
            matches!(&later, Err(StoreError::Unavailable(why)) if why.contains("second")),
            "{later:?}"
        );
    }

    #[tokio::test]
    async fn a_probe_its_callers_left_is_finished_and_never_joined_past_its_time() {
        let readiness = Readiness::default();
        let finished = Arc::new(AtomicUsize::new(0));
        let slow = {
            let finished = Arc::clone(&finished);
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        };
        let within = Duration::from_millis(20);
        // The caller hangs up at once, as a balancer whose check timed out.
        let left = tokio::time::timeout(Duration::from_millis(1), readiness.check(within, slow));
        assert!(left.await.is_err(), "the caller gave up first");
        tokio::time::sleep(Duration::from_millis(30)).await;
        let fresh = readiness
            .check(within, async {
                Err(StoreError::Unavailable("fresh".to_owned()))
            })
            .await;
        assert!(
            matches!(&fresh, Err(StoreError::Unavailable(why)) if why == "fresh"),
            "past its time the old probe is not joined: {fresh:?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the left probe ran to its end"
        );
    }
}
