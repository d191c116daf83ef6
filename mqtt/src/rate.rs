//! A token bucket per device (the same [`TokenBucket`] as the HTTP per-client limits): `rate`
//! messages per second on average, bursts of `burst`. Time is passed in, so tests drive it
//! without sleeping.
//!
//! The device is the one a message is *for*: the topic's `{device}` (for a message the ACL
//! refused or that is not on a telemetry topic, the connection's own device). With the ACL
//! on that is the connection's device anyway, and every connection of a device draws on its
//! one bucket, so more connections under the same credentials do not multiply its rate. A
//! gateway (`mqtt.acl = false`, one credential publishing for many devices) draws on each
//! device's bucket, so it is held to `rate` per device it speaks for, not to one device's
//! rate for the whole fleet behind it. There is no second, per-connection budget: see
//! docs/mqtt.md ("Rate limit") for why.
//!
//! Buckets live in [`DeviceBuckets`], a sharded map keyed by device. A bucket that has
//! refilled to its burst is the same as no bucket, so it can be dropped without changing what
//! anyone may send: the map keeps only devices that sent within the last `burst / rate`
//! seconds (2 s by default). Idle buckets are swept when a shard has doubled since its last
//! sweep and every few seconds ([`DeviceBuckets::sweep`]); a hard cap on entries (the device
//! registry's, at least 100,000) bounds the map even if a gateway invents device ids faster
//! than they go idle: past it, the fullest buckets are dropped first, which at worst gives
//! such a device a fresh burst.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The token bucket of the HTTP per-client limits, told `Instant`s.
pub type TokenBucket = strata_ingest::ratelimit::TokenBucket<Instant>;

/// A full bucket of `rate` tokens per second and `burst` tokens, both at least 1.
fn new_bucket(rate: u32, burst: u32, now: Instant) -> TokenBucket {
    TokenBucket::new(f64::from(rate.max(1)), f64::from(burst.max(1)), now)
}

/// Shards of the bucket map: a batch locks only the shard of each device it charges, so
/// connections publishing for different devices rarely contend.
const SHARDS: usize = 32;
/// A shard is swept of full buckets when it holds this many more than after its last sweep
/// (and at least this many).
const SWEEP_MIN: usize = 64;

/// The token buckets of the devices that sent recently, shared through the `Broker`.
#[derive(Debug)]
pub struct DeviceBuckets {
    inner: Arc<Registry>,
}

#[derive(Debug)]
struct Registry {
    rate: u32,
    burst: u32,
    /// Entries per shard at most (the cap divided among the shards).
    shard_cap: usize,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Debug, Default)]
struct Shard {
    buckets: HashMap<Box<str>, TokenBucket>,
    /// Sweep when `buckets` reaches this size.
    sweep_at: usize,
}

impl Shard {
    /// Drops the buckets that are full at `now`; returns how many.
    fn sweep(&mut self, now: Instant) -> usize {
        let before = self.buckets.len();
        self.buckets.retain(|_, b| !b.full_at(now));
        if self.buckets.capacity() > 4 * self.buckets.len().max(SWEEP_MIN) {
            self.buckets.shrink_to(2 * self.buckets.len());
        }
        self.sweep_at = (2 * self.buckets.len()).max(SWEEP_MIN);
        before - self.buckets.len()
    }

    /// Makes room for one more bucket under `cap`: full buckets first, then the fullest
    /// eighth (a new bucket would start full, so these lose the least).
    fn make_room(&mut self, cap: usize, now: Instant) {
        if self.buckets.len() >= self.sweep_at || self.buckets.len() >= cap {
            self.sweep(now);
        }
        if self.buckets.len() >= cap {
            let mut levels: Vec<f64> = self.buckets.values().map(|b| b.level_at(now)).collect();
            let drop = (levels.len() / 8).max(1);
            let nth = levels.len() - drop;
            levels.select_nth_unstable_by(nth, f64::total_cmp);
            let threshold = levels[nth];
            let mut left = drop;
            self.buckets.retain(|_, b| {
                if left > 0 && b.level_at(now) >= threshold {
                    left -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }
}

impl DeviceBuckets {
    /// Buckets of `rate` messages per second and `burst` messages, for at most `max_devices`
    /// devices at a time; `rate` 0 turns the rate limit off ([`DeviceBuckets::acquire`]
    /// returns `None`).
    pub fn new(rate: u32, burst: u32, max_devices: usize) -> DeviceBuckets {
        let shards =
            (0..SHARDS).map(|_| Mutex::new(Shard { sweep_at: SWEEP_MIN, ..Shard::default() })).collect();
        DeviceBuckets {
            inner: Arc::new(Registry {
                rate,
                burst,
                shard_cap: (max_devices / SHARDS).max(SWEEP_MIN),
                hasher: std::collections::hash_map::RandomState::new(),
                shards,
            }),
        }
    }

    /// A connection's handle on the buckets, charging what it cannot attribute to another
    /// device to `device` (its own). `None` when the rate limit is off. The handle holds no
    /// bucket: buckets outlive connections until they refill, so reconnecting does not
    /// refill one.
    pub fn acquire(&self, device: &str, _now: Instant) -> Option<DeviceBucket> {
        (self.inner.rate > 0).then(|| DeviceBucket { device: device.into(), registry: self.inner.clone() })
    }

    /// Takes `n` tokens from `device`'s bucket (a new, full one if it has none); returns how
    /// long the caller must wait before reading more, zero if none.
    pub fn take(&self, device: &str, n: u32, now: Instant) -> Duration {
        self.inner.take(device, n, now)
    }

    /// Drops the buckets that have refilled (called every few seconds, so a map that grew
    /// during a burst of many devices shrinks again when they go quiet); returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        self.inner.shards.iter().map(|s| s.lock().sweep(now)).sum()
    }

    /// Devices with a bucket (that sent within the last `burst / rate` seconds, or since the
    /// last sweep).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().buckets.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Registry {
    fn take(&self, device: &str, n: u32, now: Instant) -> Duration {
        // Truncation is the point: the low bits pick the shard.
        let shard = &self.shards[(self.hasher.hash_one(device) as usize) % SHARDS];
        let mut shard = shard.lock();
        if let Some(b) = shard.buckets.get_mut(device) {
            return b.take(f64::from(n), now);
        }
        shard.make_room(self.shard_cap, now);
        let mut b = new_bucket(self.rate, self.burst, now);
        let wait = b.take(f64::from(n), now);
        shard.buckets.insert(device.into(), b);
        wait
    }
}

/// A connection's handle on the device buckets ([`DeviceBuckets::acquire`]).
#[derive(Debug)]
pub struct DeviceBucket {
    /// The connection's own device: charged for messages not attributed to another.
    device: Box<str>,
    registry: Arc<Registry>,
}

impl DeviceBucket {
    /// Takes `n` tokens from the connection's own device's bucket.
    pub fn take(&self, n: u32, now: Instant) -> Duration {
        self.registry.take(&self.device, n, now)
    }

    /// Takes `n` tokens from `device`'s bucket (the device a message is for).
    pub fn take_for(&self, device: &str, n: u32, now: Instant) -> Duration {
        self.registry.take(device, n, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_throttles_then_refills() {
        let t0 = Instant::now();
        let mut b = new_bucket(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(b.take(1.0, t0), Duration::ZERO);
        }
        // Sixth message at the same instant: one token of debt, 100 ms at 10/s.
        let wait = b.take(1.0, t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // After the wait the debt is paid; after 0.5 s more, five tokens again (the burst cap).
        assert_eq!(b.take(0.0, t0 + Duration::from_millis(100)), Duration::ZERO);
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..5 {
            assert_eq!(b.take(1.0, t1), Duration::ZERO);
        }
        assert!(b.take(1.0, t1) > Duration::ZERO, "the bucket never holds more than the burst");
    }

    #[test]
    fn big_batches_go_into_debt() {
        let t0 = Instant::now();
        let mut b = new_bucket(100, 10, t0);
        let wait = b.take(110.0, t0);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-9, "{wait:?}");
    }

    #[test]
    fn connections_of_one_device_share_its_bucket() {
        let t0 = Instant::now();
        let reg = DeviceBuckets::new(10, 5, 1000);
        let a = reg.acquire("pump-7", t0).expect("rate limit on");
        let b = reg.acquire("pump-7", t0).expect("rate limit on");
        // Three from one connection, two from the other: the burst of 5 is spent together.
        assert_eq!(a.take(3, t0), Duration::ZERO);
        assert_eq!(b.take(2, t0), Duration::ZERO);
        assert_eq!(reg.len(), 1, "one bucket per device, not per connection");
        assert!(a.take(1, t0) > Duration::ZERO, "the other connection spent the rest");
        assert!(b.take(1, t0) > Duration::ZERO, "and the debt is shared too");
    }

    #[test]
    fn devices_have_independent_buckets() {
        let t0 = Instant::now();
        let reg = DeviceBuckets::new(10, 5, 1000);
        let a = reg.acquire("pump-7", t0).expect("rate limit on");
        let b = reg.acquire("pump-8", t0).expect("rate limit on");
        assert!(a.take(6, t0) > Duration::ZERO);
        assert_eq!(b.take(5, t0), Duration::ZERO, "pump-7's debt is not pump-8's");
        assert_eq!(reg.len(), 2);
    }

    /// A gateway's connection charges each message to the device it is for: 50 devices of
    /// one burst each pass without a wait, where one bucket for the connection would have
    /// held them to one device's rate; the gateway's own identity is not charged.
    #[test]
    fn a_gateway_is_charged_per_device_it_publishes_for() {
        let t0 = Instant::now();
        let reg = DeviceBuckets::new(5, 5, 1000);
        let gw = reg.acquire("gateway", t0).expect("rate limit on");
        for i in 0..50 {
            assert_eq!(gw.take_for(&format!("dev-{i}"), 5, t0), Duration::ZERO, "dev-{i}");
        }
        assert!(gw.take_for("dev-3", 1, t0) > Duration::ZERO, "each device still has its limit");
        assert_eq!(gw.take(5, t0), Duration::ZERO, "the gateway's own bucket was not drawn on");
    }

    /// A bucket outlives its connections until it has refilled: reconnecting does not give a
    /// device a fresh burst, and a refilled bucket is dropped (it equals a new one).
    #[test]
    fn buckets_outlive_connections_until_refilled() {
        let t0 = Instant::now();
        let reg = DeviceBuckets::new(10, 5, 1000);
        let a = reg.acquire("pump-7", t0).expect("rate limit on");
        assert!(a.take(6, t0) > Duration::ZERO);
        drop(a);
        let b = reg.acquire("pump-7", t0).expect("rate limit on");
        assert!(b.take(1, t0) > Duration::ZERO, "the debt survives the reconnect");
        assert_eq!(reg.sweep(t0), 0, "in debt: kept");
        assert_eq!(reg.sweep(t0 + Duration::from_secs(1)), 1, "refilled after 0.7 s: dropped");
        assert!(reg.is_empty());
    }

    /// 100,000 devices sending once each do not stay in memory: buckets sweep once they have
    /// refilled, and the map never holds more than its cap even when none has.
    #[test]
    fn the_map_is_bounded_by_idle_sweeps_and_its_cap() {
        let t0 = Instant::now();
        let reg = DeviceBuckets::new(1000, 2000, 10_000);
        // One message each, at 100 us apart: a bucket refills 1 token in 1 ms.
        for i in 0..100_000u64 {
            let now = t0 + Duration::from_micros(100 * i);
            assert_eq!(reg.take(&format!("dev-{i}"), 1, now), Duration::ZERO);
        }
        let held = reg.len();
        // A shard sweeps when it reaches `SWEEP_MIN`, and here only the newest survive.
        assert!(held <= SHARDS * SWEEP_MIN, "idle buckets are swept as the map grows: {held} held");
        // All at the same instant (nothing refills): the cap holds.
        let reg = DeviceBuckets::new(1, 5, 10_000);
        for i in 0..100_000u64 {
            reg.take(&format!("dev-{i}"), 1, t0);
        }
        let held = reg.len();
        assert!(held <= 10_000 + SHARDS, "capped at 10,000 devices: {held} held");
        assert!(held >= 5_000, "the cap evicts an eighth at a time, not everything: {held}");
        assert_eq!(reg.sweep(t0 + Duration::from_secs(5)), held, "and all go once refilled");
    }

    #[test]
    fn off_when_the_rate_is_zero() {
        let reg = DeviceBuckets::new(0, 5, 1000);
        assert!(reg.acquire("pump-7", Instant::now()).is_none());
        assert!(reg.is_empty());
    }
}
