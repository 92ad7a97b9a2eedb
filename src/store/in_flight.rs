//! The in-process half of the per-sale in-flight lock.
//!
//! Two requests for the same sale must not be applied at once: the second waits briefly, and
//! if the first is still running it is answered 409 so the partner retries. Within one
//! process this set is the lock; across processes on PostgreSQL an advisory lock taken in the
//! same transaction adds the same guarantee (see [`super::postgres`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{SaleKey, StoreError};

const POLL: Duration = Duration::from_millis(5);

/// The sales currently being processed in this process.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    held: Arc<Mutex<HashSet<SaleKey>>>,
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
            if let Some(held) = self.try_acquire(keys) {
                return Ok(held);
            }
            if Instant::now() + POLL > deadline {
                return Err(StoreError::SaleBusy);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Takes all `keys` if none is held.
    pub fn try_acquire(&self, keys: &[SaleKey]) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.iter().any(|key| held.contains(key)) {
            return None;
        }
        held.extend(keys.iter().cloned());
        Some(Held {
            owner: self.clone(),
            keys: keys.to_vec(),
        })
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
            held.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
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
}
