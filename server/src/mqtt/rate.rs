//! A token bucket per device: `rate` messages per second on average, bursts of `burst`. Time
//! is passed in, so tests drive it without sleeping.
//!
//! Every connection authenticated as the same device (`Identity.device`: the certificate's
//! CN, else the username, else the client id) shares one bucket through [`DeviceBuckets`], so
//! opening more connections, e.g. under other client ids with the same credentials, does not
//! multiply the device's rate. A gateway publishing for many devices under its own identity
//! (`mqtt.acl = false`) is one device here: its identity's bucket covers everything it sends.
//!
//! The registry holds a device's bucket only while the device has a connection open (a count
//! of handles per entry; the last [`DeviceBucket`] dropped removes it), so it holds at most
//! one entry per open connection, whatever the churn of device ids. The price: a device whose
//! last connection closes comes back with a full bucket, as it did when buckets were per
//! connection (a reconnect costs a TCP and maybe a TLS handshake plus authentication, and is
//! bounded by `mqtt.max_connections`). Keeping emptied buckets around until they refill, as
//! the HTTP limiter (`crate::ratelimit`) does, would close that gap at the cost of a map that
//! has to be swept.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` is in tokens per second and must be positive.
    pub fn new(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket { rate: f64::from(rate.max(1)), burst, tokens: burst, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes `n` tokens. The bucket may go into debt (a batch larger than the burst is taken
    /// whole); the result is how long the caller must wait before it reads more, zero if none.
    pub fn take(&mut self, n: u32, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= f64::from(n);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The token buckets of the devices that have a connection open, shared through the `Broker`.
///
/// The map is locked only when a connection starts or ends ([`DeviceBuckets::acquire`], the
/// handle's `Drop`); a batch locks only its own device's bucket, so devices never contend
/// with each other on the hot path.
#[derive(Debug)]
pub struct DeviceBuckets {
    inner: Arc<Registry>,
}

#[derive(Debug)]
struct Registry {
    rate: u32,
    burst: u32,
    /// Device id -> its bucket and how many handles (connections) hold it. The lock orders
    /// the count with removal: an entry is removed only by the handle that takes its count
    /// to zero, and a new handle is counted under the same lock, so a connection that starts
    /// while another ends never gets a bucket that is no longer in the map.
    devices: Mutex<HashMap<Box<str>, Entry>>,
}

#[derive(Debug)]
struct Entry {
    bucket: Arc<Mutex<TokenBucket>>,
    handles: usize,
}

impl DeviceBuckets {
    /// A registry of buckets of `rate` messages per second and `burst` messages; `rate` 0
    /// turns the rate limit off ([`DeviceBuckets::acquire`] returns `None`).
    pub fn new(rate: u32, burst: u32) -> DeviceBuckets {
        DeviceBuckets { inner: Arc::new(Registry { rate, burst, devices: Mutex::new(HashMap::new()) }) }
    }

    /// The bucket of `device`, shared with its other open connections; a full one if it has
    /// none open. `None` when the rate limit is off. Hold the handle for the connection's
    /// lifetime: dropping the last one of a device forgets its bucket.
    pub fn acquire(&self, device: &str, now: Instant) -> Option<DeviceBucket> {
        let r = &self.inner;
        if r.rate == 0 {
            return None;
        }
        let mut devices = r.devices.lock();
        let bucket = match devices.get_mut(device) {
            Some(e) => {
                e.handles += 1;
                e.bucket.clone()
            }
            None => {
                let bucket = Arc::new(Mutex::new(TokenBucket::new(r.rate, r.burst, now)));
                devices.insert(device.into(), Entry { bucket: bucket.clone(), handles: 1 });
                bucket
            }
        };
        Some(DeviceBucket { bucket, device: device.into(), registry: self.inner.clone() })
    }

    /// Devices with a bucket, i.e. with at least one connection open.
    pub fn len(&self) -> usize {
        self.inner.devices.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One connection's hold on its device's bucket ([`DeviceBuckets::acquire`]).
#[derive(Debug)]
pub struct DeviceBucket {
    bucket: Arc<Mutex<TokenBucket>>,
    device: Box<str>,
    registry: Arc<Registry>,
}

impl DeviceBucket {
    /// [`TokenBucket::take`] on the device's shared bucket: one uncontended lock unless the
    /// device has several connections publishing at once.
    pub fn take(&self, n: u32, now: Instant) -> Duration {
        self.bucket.lock().take(n, now)
    }
}

impl Drop for DeviceBucket {
    fn drop(&mut self) {
        let mut devices = self.registry.devices.lock();
        if let Some(e) = devices.get_mut(&self.device) {
            e.handles -= 1;
            if e.handles == 0 {
                devices.remove(&self.device);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_throttles_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(b.take(1, t0), Duration::ZERO);
        }
        // Sixth message at the same instant: one token of debt, 100 ms at 10/s.
        let wait = b.take(1, t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // After the wait the debt is paid; after 0.5 s more, five tokens again (the burst cap).
        assert_eq!(b.take(0, t0 + Duration::from_millis(100)), Duration::ZERO);
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..5 {
            assert_eq!(b.take(1, t1), Duration::ZERO);
        }
        assert!(b.take(1, t1) > Duration::ZERO, "the bucket never holds more than the burst");
    }

    #[test]
    fn big_batches_go_into_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 10, t0);
        let wait = b.take(110, t0);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-9, "{wait:?}");
    }

    #[test]
    fn connections_of_one_device_share_its_bucket() {
        let t0 = Instant::now();
        let reg = DeviceBuckets::new(10, 5);
        let a = reg.acquire("pump-7", t0).expect("rate limit on");
        let b = reg.acquire("pump-7", t0).expect("rate limit on");
        assert_eq!(reg.len(), 1, "one bucket per device, not per connection");
        // Three from one connection, two from the other: the burst of 5 is spent together.
        assert_eq!(a.take(3, t0), Duration::ZERO);
        assert_eq!(b.take(2, t0), Duration::ZERO);
        assert!(a.take(1, t0) > Duration::ZERO, "the other connection spent the rest");
        assert!(b.take(1, t0) > Duration::ZERO, "and the debt is shared too");
    }

    #[test]
    fn devices_have_independent_buckets() {
        let t0 = Instant::now();
        let reg = DeviceBuckets::new(10, 5);
        let a = reg.acquire("pump-7", t0).expect("rate limit on");
        let b = reg.acquire("pump-8", t0).expect("rate limit on");
        assert_eq!(reg.len(), 2);
        assert!(a.take(6, t0) > Duration::ZERO);
        assert_eq!(b.take(5, t0), Duration::ZERO, "pump-7's debt is not pump-8's");
    }

    #[test]
    fn the_last_connection_of_a_device_removes_its_bucket() {
        let t0 = Instant::now();
        let reg = DeviceBuckets::new(10, 5);
        let a = reg.acquire("pump-7", t0).expect("rate limit on");
        let b = reg.acquire("pump-7", t0).expect("rate limit on");
        assert!(a.take(6, t0) > Duration::ZERO);
        drop(a);
        assert_eq!(reg.len(), 1, "still held by the other connection");
        assert!(b.take(1, t0) > Duration::ZERO, "the remaining connection keeps the debt");
        drop(b);
        assert!(reg.is_empty(), "no connection open: nothing kept");
        // Back with a full bucket.
        let c = reg.acquire("pump-7", t0).expect("rate limit on");
        assert_eq!(c.take(5, t0), Duration::ZERO);
        drop(c);
        // A churn of device ids leaves nothing behind.
        for i in 0..1000 {
            let h = reg.acquire(&format!("dev-{i}"), t0);
            assert!(h.is_some());
        }
        assert!(reg.is_empty());
    }

    #[test]
    fn off_when_the_rate_is_zero() {
        let reg = DeviceBuckets::new(0, 5);
        assert!(reg.acquire("pump-7", Instant::now()).is_none());
        assert!(reg.is_empty());
    }
}
