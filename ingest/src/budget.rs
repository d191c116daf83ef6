//! The write-memory budget: a bound on the bytes that in-flight write requests hold.
//!
//! Every write request reserves its body as it arrives, its decompressed body and an estimate
//! of its batch, and gives it all back when it finishes. When the budget is exhausted a request
//! waits up to `limits.write_memory_wait` and is then answered 503 with `Retry-After`, so
//! memory stays bounded whatever the offered load: requests never queue unboundedly behind a
//! slow engine while holding their bodies. The budget counts in KiB (a tokio semaphore's
//! permits are `u32`).
//!
//! The accounting is an estimate, not an allocator hook: a request's true peak may exceed its
//! reservation by a small constant factor (`Vec` growth, the engine's per-shard split of the
//! batch), never by an amount that grows with load.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::IngestMetrics;

/// The budget was exhausted for longer than the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("write memory exhausted: too many bytes in flight, retry later")]
pub struct Exhausted;

/// The shared budget.
#[derive(Debug, Clone)]
pub struct WriteMemory {
    sem: Arc<Semaphore>,
    total_kib: u32,
    wait: Duration,
    metrics: Arc<IngestMetrics>,
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl WriteMemory {
    pub fn new(total_bytes: u64, wait: Duration, metrics: Arc<IngestMetrics>) -> WriteMemory {
        let total_kib = u32::try_from(total_bytes / 1024).unwrap_or(u32::MAX).max(1);
        WriteMemory { sem: Arc::new(Semaphore::new(total_kib as usize)), total_kib, wait, metrics }
    }

    /// Bytes not reserved right now.
    pub fn available_bytes(&self) -> u64 {
        self.sem.available_permits() as u64 * 1024
    }

    /// Reserves `bytes`, waiting up to the configured wait.
    pub async fn reserve(&self, bytes: usize) -> Result<Reservation, Exhausted> {
        let mut r = Reservation { budget: self.clone(), permit: None, kib: 0 };
        r.grow(bytes).await?;
        Ok(r)
    }
}

/// Bytes held by one request; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: WriteMemory,
    permit: Option<OwnedSemaphorePermit>,
    kib: u32,
}

impl Reservation {
    /// Reserves `bytes` more, waiting up to the configured wait. A request is never refused
    /// for asking more than the whole budget: it is capped at the whole budget instead (it
    /// then runs alone), so no request is unservable.
    pub async fn grow(&mut self, bytes: usize) -> Result<(), Exhausted> {
        let add = kib(bytes).min(self.budget.total_kib - self.kib);
        if add == 0 {
            return Ok(());
        }
        let acquire = self.budget.sem.clone().acquire_many_owned(add);
        let permit = match tokio::time::timeout(self.budget.wait, acquire).await {
            Ok(Ok(p)) => p,
            // Timed out, or the semaphore was closed (never happens: it is never closed).
            _ => return Err(Exhausted),
        };
        self.add(permit, add);
        Ok(())
    }

    /// [`Reservation::grow`] from a blocking thread (one started by `spawn_blocking`).
    pub fn grow_blocking(&mut self, bytes: usize, rt: &tokio::runtime::Handle) -> Result<(), Exhausted> {
        rt.block_on(self.grow(bytes))
    }

    fn add(&mut self, permit: OwnedSemaphorePermit, add: u32) {
        match &mut self.permit {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
        self.kib += add;
        self.budget.metrics.write_memory_bytes.fetch_add(u64::from(add) * 1024, Ordering::Relaxed);
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        u64::from(self.kib) * 1024
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.metrics.write_memory_bytes.fetch_sub(self.bytes(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_and_released() {
        let m = Arc::new(IngestMetrics::default());
        let b = WriteMemory::new(100 << 10, Duration::from_millis(20), m.clone());
        let mut a = b.reserve(60 << 10).await.unwrap();
        assert_eq!(m.write_memory_bytes.load(Ordering::Relaxed), 60 << 10);
        assert_eq!(b.reserve(50 << 10).await.unwrap_err(), Exhausted);
        a.grow(40 << 10).await.unwrap();
        assert_eq!(b.available_bytes(), 0);
        // Asking for more than the whole budget caps at the budget.
        a.grow(1 << 30).await.unwrap();
        assert_eq!(a.bytes(), 100 << 10);
        drop(a);
        assert_eq!(b.available_bytes(), 100 << 10);
        assert_eq!(m.write_memory_bytes.load(Ordering::Relaxed), 0);
        let big = b.reserve(1 << 30).await.unwrap();
        assert_eq!(big.bytes(), 100 << 10);
    }

    #[tokio::test]
    async fn waiters_get_released_memory() {
        let m = Arc::new(IngestMetrics::default());
        let b = WriteMemory::new(10 << 10, Duration::from_secs(5), m);
        let a = b.reserve(10 << 10).await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.reserve(5 << 10).await.map(|r| r.bytes()) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        assert_eq!(waiter.await.unwrap(), Ok(5 << 10));
    }
}
