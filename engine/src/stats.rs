//! Lock-free counters and a fixed-bucket histogram for the engine's metrics.
//!
//! The engine knows no metrics format: it bumps atomics here and the server renders them
//! (Prometheus text in `server/src/http/metrics.rs`). Recording is one or two relaxed atomic
//! adds and never locks or allocates, so it may sit on the WAL's commit path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in seconds, of [`WalStats::fsync_duration`]: 50 us (a battery-backed or
/// NVMe cache) to 2.5 s (a disk in trouble), about 2-2.5x apart. Fixed so that series from
/// different servers and versions aggregate.
pub const FSYNC_BUCKETS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5];

/// A histogram of durations with fixed bucket bounds: one relaxed add for the bucket and one
/// for the sum per observation.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in seconds, ascending.
    bounds: &'static [f64],
    /// Per bucket, not cumulative; one more slot than `bounds` for `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// A copy of a [`Histogram`] taken at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds in seconds, ascending (the `le` labels); `+Inf` is implied.
    pub bounds: &'static [f64],
    /// Cumulative counts per bound, then the `+Inf` bucket (== `count`).
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    /// A histogram with the given upper bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must ascend");
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = self.bounds.partition_point(|&b| b < secs);
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The counts, cumulative as Prometheus wants them. The count is derived from the buckets
    /// so `+Inf` always equals it, even while other threads observe.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: total,
        }
    }
}

/// Write-ahead log counters, summed over all shards.
#[derive(Debug)]
pub struct WalStats {
    /// Records appended (one per shard a write batch touches).
    pub appends: AtomicU64,
    /// Bytes appended, framing included (what ends up in the files).
    pub appended_bytes: AtomicU64,
    /// `write` calls that moved buffered records to the OS. `appends / writes` is how many
    /// records a group commit carries on average.
    pub writes: AtomicU64,
    /// Time of each `fdatasync` of WAL data (on commit under `sync = always`, on the interval
    /// timer, at rotation and at shutdown), failed ones included. Its count is the number of
    /// fsyncs. The header sync of a new file is not counted.
    pub fsync_duration: Histogram,
}

impl Default for WalStats {
    fn default() -> WalStats {
        WalStats {
            appends: AtomicU64::new(0),
            appended_bytes: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            fsync_duration: Histogram::new(&FSYNC_BUCKETS),
        }
    }
}

impl WalStats {
    /// The number of fsyncs so far (the histogram's count).
    pub fn fsyncs(&self) -> u64 {
        self.fsync_duration.snapshot().count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(1)); // on the bound: le="0.001" includes it
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 3, 4]);
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 3.00601).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn fsync_buckets_ascend() {
        assert!(FSYNC_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        let w = WalStats::default();
        w.fsync_duration.observe(Duration::from_micros(300));
        assert_eq!(w.fsyncs(), 1);
        assert_eq!(w.fsync_duration.snapshot().cumulative.len(), FSYNC_BUCKETS.len() + 1);
    }
}
