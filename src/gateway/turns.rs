//! Turns for costly mappings (a script may run to its operation and time limits): one a core
//! on a node in all, and at most half of them for any one partner, so one partner's costly
//! deliveries never wait out another's (two deliveries of one partner's hungry script held
//! every other script partner for 35 s, found by the outside attack on issue 17). A mapping
//! runs on a thread the runtime replaces while it runs, never holding up the request threads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

#[derive(Debug)]
pub(super) struct CostlyTurns {
    all: Semaphore,
    /// Each partner's share, made on its first costly mapping (partners are few).
    partners: Mutex<HashMap<String, Arc<Semaphore>>>,
    share: usize,
}

impl CostlyTurns {
    pub(super) fn new() -> CostlyTurns {
        CostlyTurns::for_cores(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    fn for_cores(cores: usize) -> CostlyTurns {
        CostlyTurns {
            all: Semaphore::new(cores),
            partners: Mutex::new(HashMap::new()),
            share: (cores / 2).max(1),
        }
    }

    fn partner(&self, name: &str) -> Arc<Semaphore> {
        let mut partners = match self.partners.lock() {
            Ok(partners) => partners,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(
            partners
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.share))),
        )
    }

    /// Runs `map`: at once when it is not `costly`, else in `partner`'s turn.
    pub(super) async fn run<T>(&self, partner: &str, costly: bool, map: impl FnOnce() -> T) -> T {
        if !costly {
            return map();
        }
        let own = self.partner(partner);
        // Never closed, so acquiring only waits; were it closed, running is still right.
        let _own = own.acquire().await.ok();
        let _turn = self.all.acquire().await.ok();
        match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(map),
            _ => map(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_partners_costly_mapping_never_waits_out_anothers() {
        let turns = Arc::new(CostlyTurns::for_cores(2));
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (started, first_running) = tokio::sync::oneshot::channel();
        let first = tokio::spawn({
            let turns = Arc::clone(&turns);
            async move {
                turns
                    .run("hungry", true, move || {
                        let _ = started.send(());
                        let _ = held.recv();
                    })
                    .await;
            }
        });
        first_running.await.expect("the first mapping runs");
        let second_ran = Arc::new(AtomicBool::new(false));
        let second = tokio::spawn({
            let (turns, ran) = (Arc::clone(&turns), Arc::clone(&second_ran));
            async move {
                turns
                    .run("hungry", true, move || ran.store(true, Ordering::SeqCst))
                    .await;
            }
        });
        // Another partner's mapping runs while the hungry one holds its share.
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            turns.run("other", true, || ()),
        )
        .await
        .expect("another partner is not held up");
        assert!(
            !second_ran.load(Ordering::SeqCst),
            "the hungry partner waits for its own share"
        );
        hold.send(()).expect("release");
        first.await.expect("first");
        second.await.expect("second");
        assert!(second_ran.load(Ordering::SeqCst));
    }
}
