//! The open-loop send schedule.
//!
//! With `--rate R` (lines per second) and units (batches or messages) of `n` lines, unit `k` is
//! *due* at `k * n / R` seconds after the start, whatever happened to the units before it. The
//! dispatcher waits until a unit is due and hands it on; a worker measures that unit's latency
//! from its due time, not from when it actually went out. So when the server stalls, the units
//! queued behind the stall are charged for the wait (no coordinated omission, Gil Tene's
//! "How NOT to measure latency"). Offsets are computed from `k` in integer nanoseconds, never
//! by adding intervals, so they do not drift over long runs.

use std::time::Duration;

/// When each unit is due, relative to the start of the run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Lines per second; `None` sends as fast as the workers can (closed loop).
    rate: Option<f64>,
}

impl Schedule {
    pub fn new(rate: Option<f64>) -> Schedule {
        Schedule { rate: rate.filter(|r| *r > 0.0) }
    }

    #[cfg(test)]
    pub fn is_open_loop(&self) -> bool {
        self.rate.is_some()
    }

    /// Due offset of the unit that starts after `lines_before` lines have been scheduled.
    /// Taking the running line count (not `k * n`) keeps the schedule exact when the last unit
    /// is short or units have different sizes.
    pub fn due(&self, lines_before: u64) -> Option<Duration> {
        let rate = self.rate?;
        if rate.fract() == 0.0 && rate <= u64::MAX as f64 {
            // Integer rates (the usual case): exact, rounded to the nearest nanosecond.
            let r = rate as u128;
            let nanos = (u128::from(lines_before) * 1_000_000_000 + r / 2) / r;
            return Some(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)));
        }
        let nanos = (lines_before as f64 / rate * 1e9).round();
        Some(Duration::from_nanos(nanos as u64))
    }

    /// How many units of `n` lines fall due within `elapsed`.
    #[cfg(test)]
    pub fn units_due_within(&self, n: u64, elapsed: Duration) -> Option<u64> {
        let rate = self.rate?;
        let lines = elapsed.as_secs_f64() * rate;
        Some((lines / n as f64).floor() as u64 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loop_has_no_due_times() {
        let s = Schedule::new(None);
        assert!(!s.is_open_loop());
        assert_eq!(s.due(1000), None);
        assert!(!Schedule::new(Some(0.0)).is_open_loop());
    }

    #[test]
    fn due_times_are_evenly_spaced() {
        // 1,000 lines/s in batches of 100: one batch every 100 ms.
        let s = Schedule::new(Some(1000.0));
        let due: Vec<Duration> = (0..4).map(|k| s.due(k * 100).unwrap()).collect();
        assert_eq!(due, [0, 100, 200, 300].map(Duration::from_millis).to_vec(),);
    }

    #[test]
    fn no_drift_over_long_runs() {
        // 3 lines/s does not divide a second evenly; after a million units the offset is still
        // exact to the nanosecond (an accumulating `+= interval` would be off by rounding * k).
        let s = Schedule::new(Some(3.0));
        let d = s.due(3_000_000).unwrap();
        assert_eq!(d, Duration::from_secs(1_000_000));
        let d = s.due(1).unwrap();
        assert_eq!(d, Duration::from_nanos(333_333_333));
        let d = s.due(3_000_001).unwrap();
        assert_eq!(d, Duration::from_nanos(1_000_000_333_333_333));
    }

    #[test]
    fn rate_is_honoured_over_a_window() {
        // 50,000 lines/s in 5,000-line batches: 10 per second, so 100 batches are due within
        // 9.95 s (batch 0 at t=0, batch 99 at 9.9 s).
        let s = Schedule::new(Some(50_000.0));
        assert_eq!(s.units_due_within(5_000, Duration::from_millis(9_950)), Some(100));
        // And the due time of batch k times the rate gives back the lines before it.
        for k in [0u64, 1, 17, 12_345] {
            let due = s.due(k * 5_000).unwrap().as_secs_f64();
            assert!((due * 50_000.0 - (k * 5_000) as f64).abs() < 1e-3, "k={k}");
        }
    }

    #[test]
    fn short_units_keep_the_schedule() {
        // Units of 7, 3, 10 lines at 10 lines/s are due at 0, 0.7, 1.0 s.
        let s = Schedule::new(Some(10.0));
        let mut before = 0;
        let mut due = Vec::new();
        for n in [7, 3, 10] {
            due.push(s.due(before).unwrap());
            before += n;
        }
        assert_eq!(due, [0, 700, 1000].map(Duration::from_millis).to_vec());
    }
}
