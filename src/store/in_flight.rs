//! The in-process half of the per-sale in-flight lock.
//!
//! Two requests for the same sale must not be applied at once: the second waits briefly, and
//! if the first is still running it is answered 409 so the partner retries. Within one
//! process this map is the lock; across processes on PostgreSQL an advisory lock taken in the
//! same transaction adds the same guarantee (see [`super::postgres`]).
//!
//! Each sale is a fair (first come, first served) `tokio::sync::RwLock`: a waiter is woken
//! the moment the sale is released, and in the order it came. A delivery holds its sale
//! shared, and only until its write is queued (writes of one sale queue on one writer and
//! run in order): a burst of one sale's deliveries never waits on itself. A replay of the
//! sale holds it exclusively until its commit, and deliveries meanwhile wait for it or get
//! their 409. The first version was one exclusive lock held until the commit, waking every
//! waiter on each release to race for it: a burst cost a commit per delivery, and an
//! unlucky waiter could lose every race until its deadline (a 409 after seconds).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard};
use tokio::time::Instant;

use super::{SaleKey, StoreError};

type SaleLock = Arc<tokio::sync::RwLock<()>>;

/// A hold on one sale.
#[derive(Debug)]
enum Guard {
    Exclusive(OwnedRwLockWriteGuard<()>),
    Shared(OwnedRwLockReadGuard<()>),
}

impl Guard {
    fn lock(&self) -> &SaleLock {
        match self {
            Guard::Exclusive(guard) => OwnedRwLockWriteGuard::rwlock(guard),
            Guard::Shared(guard) => OwnedRwLockReadGuard::rwlock(guard),
        }
    }
}

/// The sales currently held or waited for in this process, each with its lock.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    sales: Arc<Mutex<HashMap<SaleKey, SaleLock>>>,
}

/// Releases its keys when dropped.
#[derive(Debug)]
pub struct Held {
    owner: InFlight,
    guards: Vec<(SaleKey, Guard)>,
}

impl InFlight {
    /// Takes all `keys` for itself alone, waiting until `deadline` for others to release
    /// them; keys are taken in order, so two requests never wait on each other.
    ///
    /// # Errors
    /// [`StoreError::SaleBusy`] if some key is still held at `deadline`.
    pub async fn acquire(&self, keys: &[SaleKey], deadline: Instant) -> Result<Held, StoreError> {
        self.take(keys, deadline, true).await
    }

    /// Takes all `keys` shared with other shared holders, waiting until `deadline` for an
    /// exclusive holder to release them.
    ///
    /// # Errors
    /// [`StoreError::SaleBusy`] if some key is still held exclusively at `deadline`.
    pub async fn acquire_shared(
        &self,
        keys: &[SaleKey],
        deadline: Instant,
    ) -> Result<Held, StoreError> {
        self.take(keys, deadline, false).await
    }

    async fn take(
        &self,
        keys: &[SaleKey],
        deadline: Instant,
        exclusive: bool,
    ) -> Result<Held, StoreError> {
        let mut held = Held {
            owner: self.clone(),
            guards: Vec::with_capacity(keys.len()),
        };
        for key in ordered(keys) {
            let lock = self.lock_of(&key);
            let taken = if exclusive {
                let wait = Arc::clone(&lock).write_owned();
                tokio::time::timeout_at(deadline, wait)
                    .await
                    .map(Guard::Exclusive)
            } else {
                let wait = Arc::clone(&lock).read_owned();
                tokio::time::timeout_at(deadline, wait)
                    .await
                    .map(Guard::Shared)
            };
            match taken {
                Ok(guard) => {
                    drop(lock);
                    held.guards.push((key, guard));
                }
                Err(_) => {
                    self.forget_if_unused(&key, lock);
                    return Err(StoreError::SaleBusy);
                }
            }
        }
        Ok(held)
    }

    /// Takes all `keys` for itself alone if none is held.
    pub fn try_acquire(&self, keys: &[SaleKey]) -> Option<Held> {
        let mut held = Held {
            owner: self.clone(),
            guards: Vec::with_capacity(keys.len()),
        };
        for key in ordered(keys) {
            let lock = self.lock_of(&key);
            match Arc::clone(&lock).try_write_owned() {
                Ok(guard) => {
                    drop(lock);
                    held.guards.push((key, Guard::Exclusive(guard)));
                }
                Err(_) => {
                    self.forget_if_unused(&key, lock);
                    return None;
                }
            }
        }
        Some(held)
    }

    /// The lock of a sale, made on first use.
    fn lock_of(&self, key: &SaleKey) -> SaleLock {
        let mut sales = self.sales.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(sales.entry(key.clone()).or_default())
    }

    /// Drops this handle on a sale's lock, and the lock itself once nobody holds or waits
    /// for it (the map's own handle is the last).
    fn forget_if_unused(&self, key: &SaleKey, lock: SaleLock) {
        let mut sales = self.sales.lock().unwrap_or_else(PoisonError::into_inner);
        drop(lock);
        if sales
            .get(key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            sales.remove(key);
        }
    }

    /// Sales held or waited for, for the tests that prove none is left behind.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sales
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The keys sorted and without repeats.
fn ordered(keys: &[SaleKey]) -> Vec<SaleKey> {
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    keys
}

impl Drop for Held {
    fn drop(&mut self) {
        for (key, guard) in self.guards.drain(..) {
            let lock = Arc::clone(guard.lock());
            drop(guard);
            self.owner.forget_if_unused(&key, lock);
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
        assert_eq!(locks.tracked(), 0, "released sales are forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_for_one_sale_get_it_in_the_order_they_came() {
        let locks = InFlight::default();
        let first = locks.try_acquire(&[key("a")]).expect("free");
        let order = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut waiters = Vec::new();
        for n in 0..16 {
            let (locks, order) = (locks.clone(), Arc::clone(&order));
            waiters.push(tokio::spawn(async move {
                let held = locks.acquire(&[key("a")], deadline).await.expect("in time");
                order.lock().expect("order").push(n);
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(held);
            }));
            // Each waiter queues before the next one starts.
            tokio::task::yield_now().await;
        }
        drop(first);
        for waiter in waiters {
            waiter.await.expect("waiter");
        }
        let order = order.lock().expect("order").clone();
        assert_eq!(
            order,
            (0..16).collect::<Vec<_>>(),
            "first come, first served"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shared_holders_never_wait_on_each_other_but_wait_for_an_exclusive_one() {
        let locks = InFlight::default();
        let deadline = Instant::now() + Duration::from_millis(5);
        let first = locks.acquire_shared(&[key("a")], deadline).await;
        let second = locks.acquire_shared(&[key("a")], deadline).await;
        assert!(first.is_ok() && second.is_ok(), "deliveries share a sale");
        assert!(locks.try_acquire(&[key("a")]).is_none(), "a replay waits");
        drop((first, second));
        let replay = locks.try_acquire(&[key("a")]).expect("free again");
        let deadline = Instant::now() + Duration::from_millis(5);
        assert!(matches!(
            locks.acquire_shared(&[key("a")], deadline).await,
            Err(StoreError::SaleBusy)
        ));
        drop(replay);
        assert_eq!(locks.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let locks = InFlight::default();
        let first = locks.try_acquire(&[key("a"), key("b")]).expect("free");
        let deadline = Instant::now() + Duration::from_millis(5);
        assert!(matches!(
            locks.acquire(&[key("b"), key("c")], deadline).await,
            Err(StoreError::SaleBusy)
        ));
        drop(first);
        assert_eq!(locks.tracked(), 0, "nothing held, nothing tracked");
        assert!(locks.try_acquire(&[key("a"), key("b"), key("c")]).is_some());
    }
}
