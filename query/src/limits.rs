//! Per-query resource limits, and the meter that enforces them while a statement runs.

use std::time::{Duration, Instant};

use crate::error::QueryError;
use crate::result::{Series, Value};

/// Loop iterations between two deadline checks in loops whose length the answer decides
/// (buckets, fill, rows, catalog listings): `Instant::now()` costs ~20 ns, so checking every
/// 4,096 iterations keeps the check under 1% of even the cheapest loop body while stopping
/// within a few microseconds of the deadline.
pub const DEADLINE_EVERY: u64 = 4096;

/// Estimated bytes one [`Value`] holds: the enum itself plus a string's heap bytes.
pub fn value_bytes(v: &Value) -> u64 {
    let heap = match v {
        Value::String(s) => s.len() as u64,
        _ => 0,
    };
    std::mem::size_of::<Value>() as u64 + heap
}

/// Estimated bytes one result row holds: its `Vec` header and its values.
pub fn row_bytes(row: &[Value]) -> u64 {
    std::mem::size_of::<Vec<Value>>() as u64 + row.iter().map(value_bytes).sum::<u64>()
}

/// Estimated bytes a result series holds (name, tags, columns and rows).
pub fn series_bytes(s: &Series) -> u64 {
    let strings = s.name.len()
        + s.tags.iter().flatten().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>()
        + s.columns.iter().map(|c| c.len() + 24).sum::<usize>();
    std::mem::size_of::<Series>() as u64 + strings as u64 + s.values.iter().map(|r| row_bytes(r)).sum::<u64>()
}

/// Limits of one query (all statements of one request share the timeout; the counters are
/// per statement). `0` (or `None` for the timeout) disables a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Wall-clock time for the whole request. Default 60 s.
    pub timeout: Option<Duration>,
    /// Series a statement may read. Default 1,000,000.
    pub max_series: u64,
    /// Points a statement may read (decoded or summarised). Default 0 (unlimited).
    pub max_points_scanned: u64,
    /// Rows a statement may return (also caps `GROUP BY time` buckets). Default 10,000,000.
    pub max_points_returned: u64,
    /// Bytes of intermediate state (rows, values kept for median/percentile/mode) per
    /// statement, estimated. Default 1 GiB.
    pub max_memory_bytes: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            timeout: Some(Duration::from_secs(60)),
            max_series: 1_000_000,
            max_points_scanned: 0,
            max_points_returned: 10_000_000,
            max_memory_bytes: 1 << 30,
        }
    }
}

impl QueryLimits {
    /// No limits at all (tests, benchmarks).
    pub fn unlimited() -> Self {
        QueryLimits {
            timeout: None,
            max_series: 0,
            max_points_scanned: 0,
            max_points_returned: 0,
            max_memory_bytes: 0,
        }
    }
}

/// Counts what a statement uses and fails when a limit is passed.
#[derive(Debug)]
pub(crate) struct Meter {
    limits: QueryLimits,
    deadline: Option<Instant>,
    pub series: u64,
    pub points: u64,
    pub rows: u64,
    pub memory: u64,
}

impl Meter {
    pub fn new(limits: QueryLimits, deadline: Option<Instant>) -> Meter {
        Meter { limits, deadline, series: 0, points: 0, rows: 0, memory: 0 }
    }

    /// A meter for one of `n` workers reading a statement's series in parallel: each gets
    /// `1/n` of the series, points and memory budgets (so together they stay within them; an
    /// unbalanced split may fail slightly early) and the same deadline.
    pub fn split(&self, n: u64) -> Meter {
        let part = |l: u64| if l == 0 { 0 } else { l.div_ceil(n).max(1) };
        let limits = QueryLimits {
            max_series: part(self.limits.max_series),
            max_points_scanned: part(self.limits.max_points_scanned),
            max_memory_bytes: part(self.limits.max_memory_bytes),
            ..self.limits
        };
        Meter::new(limits, self.deadline)
    }

    /// A meter for one of `n` workers reading the same series over disjoint time ranges:
    /// each reads every series, so each keeps the whole series limit; points and memory are
    /// shared as in [`Meter::split`].
    pub fn split_time(&self, n: u64) -> Meter {
        let mut m = self.split(n);
        m.limits.max_series = self.limits.max_series;
        m
    }

    /// Adds what a time-range worker's meter counted (see [`Meter::split_time`]); the series
    /// are counted from the first worker only, since every worker read the same ones.
    pub fn absorb_time_part(&mut self, w: &Meter, first: bool) -> Result<(), QueryError> {
        if first {
            self.add_series_n(w.series)?;
        }
        self.add_points(w.points)?;
        self.add_memory(w.memory)?;
        self.add_rows(w.rows)
    }

    /// Adds what a worker's meter counted.
    pub fn absorb(&mut self, w: &Meter) -> Result<(), QueryError> {
        self.add_series_n(w.series)?;
        self.add_points(w.points)?;
        self.add_memory(w.memory)?;
        self.add_rows(w.rows)
    }

    fn add_series_n(&mut self, n: u64) -> Result<(), QueryError> {
        self.series += n;
        let l = self.limits.max_series;
        if l > 0 && self.series > l {
            return Err(QueryError::TooManySeries { count: self.series, limit: l });
        }
        Ok(())
    }

    /// [`Meter::check_time`] once every [`DEADLINE_EVERY`] calls, counted by `i` (the caller's
    /// loop counter): for loops whose length the answer decides.
    pub fn tick(&self, i: u64) -> Result<(), QueryError> {
        if i % DEADLINE_EVERY == DEADLINE_EVERY - 1 {
            return self.check_time();
        }
        Ok(())
    }

    pub fn check_time(&self) -> Result<(), QueryError> {
        match (self.deadline, self.limits.timeout) {
            (Some(d), Some(t)) if Instant::now() > d => {
                Err(QueryError::Timeout { limit_ms: t.as_millis() as u64 })
            }
            _ => Ok(()),
        }
    }

    pub fn add_series(&mut self) -> Result<(), QueryError> {
        self.series += 1;
        let l = self.limits.max_series;
        if l > 0 && self.series > l {
            return Err(QueryError::TooManySeries { count: self.series, limit: l });
        }
        self.check_time()
    }

    pub fn add_points(&mut self, n: u64) -> Result<(), QueryError> {
        self.points += n;
        let l = self.limits.max_points_scanned;
        if l > 0 && self.points > l {
            return Err(QueryError::TooManyPointsScanned { count: self.points, limit: l });
        }
        Ok(())
    }

    pub fn add_rows(&mut self, n: u64) -> Result<(), QueryError> {
        self.rows += n;
        let l = self.limits.max_points_returned;
        if l > 0 && self.rows > l {
            return Err(QueryError::TooManyPointsReturned { limit: l });
        }
        Ok(())
    }

    pub fn check_buckets(&self, n: u64) -> Result<(), QueryError> {
        let l = self.limits.max_points_returned;
        if l > 0 && n > l {
            return Err(QueryError::TooManyBuckets { count: n, limit: l });
        }
        Ok(())
    }

    /// Charges `bytes` the statement is about to hold; call it before allocating, so a
    /// refused allocation never happens.
    pub fn add_memory(&mut self, bytes: u64) -> Result<(), QueryError> {
        self.memory = self.memory.saturating_add(bytes);
        let l = self.limits.max_memory_bytes;
        if l > 0 && self.memory > l {
            return Err(QueryError::MemoryExceeded { limit: l });
        }
        Ok(())
    }

    /// Returns `bytes` charged with [`Meter::add_memory`] once they are freed or handed on.
    pub fn release(&mut self, bytes: u64) {
        self.memory = self.memory.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parts_count_their_series_once_and_share_points() {
        let limits = QueryLimits { max_series: 3, max_points_scanned: 100, ..QueryLimits::default() };
        let meter = Meter::new(limits, None);
        // Two workers over disjoint time ranges each read the same three series.
        let mut parts = [meter.split_time(2), meter.split_time(2)];
        for p in &mut parts {
            for _ in 0..3 {
                p.add_series().expect("each worker may read every series");
            }
            p.add_points(40).unwrap();
        }
        assert!(parts[0].add_points(11).is_err(), "points are shared: 50 each");
        let mut meter2 = Meter::new(limits, None);
        for (i, p) in [meter.split_time(2), meter.split_time(2)].iter_mut().enumerate() {
            for _ in 0..3 {
                p.add_series().unwrap();
            }
            p.add_points(40).unwrap();
            meter2.absorb_time_part(p, i == 0).expect("three series, 80 points");
        }
        assert_eq!((meter2.series, meter2.points), (3, 80));
        // A series limit the query really passes still trips.
        let mut tight = Meter::new(QueryLimits { max_series: 2, ..limits }, None);
        let mut p = tight.split_time(2);
        let _ = p.add_series();
        let _ = p.add_series();
        let _ = p.add_series();
        assert!(tight.absorb_time_part(&p, true).is_err());
    }
}
