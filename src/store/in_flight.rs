//! The in-process half of the per-sale in-flight lock.
//!
//! Two requests for the same sale must not be applied at once: the second waits briefly, and
//! if the first is still running it is answered 409 so the partner retries. Within one
//! process this map is the lock; across processes on PostgreSQL an advisory lock taken in the
//! same transaction adds the same guarantee (see [`super::postgres`]).
//!
//! A waiter sleeps until the sale it waits for is released, not for a polling interval: a
//! POS sends a check's UPDATE milliseconds after its OPEN, and a poll would add its period to
//! that delivery's latency.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{SaleKey, StoreError};

/// The sales currently being processed in this process, each with the signal its release
/// sends to whoever waits for it.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    held: Arc<Mutex<HashMap<SaleKey, Arc<Notify>>>>,
}

/// Releases its keys when dropped.
#[derive(Debug)]
pub struct Held {
    owner: InFlight,
    keys: Vec<SaleKey>,
}

impl InFlight {
    /// Takes all `keys` at once, waiting until `deadline` for others to release them.
    ///
    /// # Errors
    /// [`StoreError::SaleBusy`] if some key is still held at `deadline`.
    pub async fn acquire(&self, keys: &[SaleKey], deadline: Instant) -> Result<Held, StoreError> {
        loop {
            let release = {
                let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
                match keys.iter().find_map(|key| held.get(key)) {
                    Some(release) => Arc::clone(release),
                    None => {
                        for key in keys {
                            held.insert(key.clone(), Arc::new(Notify::new()));
                        }
                        return Ok(Held {
                            owner: self.clone(),
                            keys: keys.to_vec(),
                        });
                    }
                }
            };
            // Registered before looking again, so a release in between still wakes us.
            let mut released = pin!(release.notified());
            released.as_mut().enable();
            if self.is_free(keys) {
                continue;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(StoreError::SaleBusy);
            }
        }
    }

    /// Takes all `keys` if none is held.
    pub fn try_acquire(&self, keys: &[SaleKey]) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.iter().any(|key| held.contains_key(key)) {
            return None;
        }
        for key in keys {
            held.insert(key.clone(), Arc::new(Notify::new()));
        }
        Some(Held {
            owner: self.clone(),
            keys: keys.to_vec(),
        })
    }

    fn is_free(&self, keys: &[SaleKey]) -> bool {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        !keys.iter().any(|key| held.contains_key(key))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self
            .owner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for key in &self.keys {
            if let Some(release) = held.remove(key) {
                release.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(id: &str) -> SaleKey {
        SaleKey {
            partner: "p".into(),
            location_id: "l".into(),
            external_id: id.into(),
        }
    }

    #[tokio::test]
    async fn a_held_sale_is_busy_until_released() {
        let locks = InFlight::default();
        let first = locks.try_acquire(&[key("a")]).expect("free");
        assert!(locks.try_acquire(&[key("a")]).is_none());
        assert!(locks.try_acquire(&[key("b")]).is_some());
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(matches!(
            locks.acquire(&[key("a")], deadline).await,
            Err(StoreError::SaleBusy)
        ));
        drop(first);
        assert!(locks.acquire(&[key("a")], deadline).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_sale_the_moment_it_is_released() {
        let locks = InFlight::default();
        let first = locks.try_acquire(&[key("a")]).expect("free");
        let waiting = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let deadline = started + Duration::from_secs(10);
                let held = locks.acquire(&[key("a")], deadline).await;
                (held.is_ok(), started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(3)).await;
        drop(first);
        let (acquired, waited) = waiting.await.expect("waiter");
        assert!(acquired);
        assert_eq!(
            waited,
            Duration::from_millis(3),
            "woken by the release, not by a poll"
        );
    }

    #[tokio::test]
    async fn many_waiters_for_one_sale_each_get_it_in_turn() {
        let locks = InFlight::default();
        let first = locks.try_acquire(&[key("a")]).expect("free");
        let deadline = Instant::now() + Duration::from_secs(5);
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let locks = locks.clone();
                tokio::spawn(async move {
                    let held = locks.acquire(&[key("a")], deadline).await;
                    tokio::task::yield_now().await;
                    held.is_ok()
                })
            })
            .collect();
        tokio::task::yield_now().await;
        drop(first);
        for waiter in waiters {
            assert!(waiter.await.expect("waiter"), "no waiter is left behind");
        }
    }
}
