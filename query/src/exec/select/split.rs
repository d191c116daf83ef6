//! Splitting an aggregate over the cores, by series or by time, with merged results that do
//! not depend on thread timing.

use rayon::prelude::*;
use strata_engine::{SeriesId, TimeRange as EngineRange};

use crate::error::QueryError;
use crate::exec::tz::Windows;
use crate::exec::QueryContext;
use crate::limits::Meter;

/// Reads some series (ascending ids) into a partial result.
pub(super) type PartFn<'a, T> = dyn Fn(&[SeriesId], &mut Meter) -> Result<T, QueryError> + Sync + 'a;

/// Runs `part` over `ids`: on the calling thread, or, when the query reads at least
/// `ctx.parallel_min_series` series and there is more than one core, over contiguous slices
/// of them on rayon's pool (one slice per thread), each with its share of the limits
/// ([`Meter::split`]); the partial results are merged in slice order, so the answer does not
/// depend on thread timing.
pub(super) fn run_split<T: Send>(
    ctx: &QueryContext<'_>,
    ids: &[SeriesId],
    meter: &mut Meter,
    part: &PartFn<'_, T>,
    merge: impl Fn(&mut T, T),
) -> Result<T, QueryError> {
    let threads = rayon::current_num_threads();
    if threads < 2 || ids.len() < ctx.parallel_min_series.max(2) {
        return part(ids, meter);
    }
    let n = threads.min(ids.len());
    let chunk = ids.len().div_ceil(n);
    let base: &Meter = meter;
    let results: Vec<(Result<T, QueryError>, Meter)> = ids
        .par_chunks(chunk)
        .map(|c| {
            let mut m = base.split(n as u64);
            let r = part(c, &mut m);
            (r, m)
        })
        .collect();
    let mut out: Option<T> = None;
    for (r, m) in results {
        meter.absorb(&m)?;
        let r = r?;
        match &mut out {
            None => out = Some(r),
            Some(o) => merge(o, r),
        }
    }
    match out {
        Some(o) => Ok(o),
        None => part(&[], meter),
    }
}

/// Reads the given series over one time range into a partial result.
pub(super) type RangePartFn<'a, T> =
    dyn Fn(&[SeriesId], EngineRange, &mut Meter) -> Result<T, QueryError> + Sync + 'a;

/// Where to cut `[min, max]` for reading `series` series on several threads by time: `None`
/// (read on one thread, or split by series) unless the query groups by time, reads fewer
/// series than the series split needs, its range is bounded and at least
/// `ctx.parallel_min_span_ns` long, and there is more than one core. The cuts are window
/// starts, so every window lies in exactly one range and the partial results merge without
/// combining any window's accumulators.
pub(super) fn time_split(
    ctx: &QueryContext<'_>,
    series: usize,
    min: i64,
    max: i64,
    windows: Option<&Windows>,
) -> Option<Vec<(i64, i64)>> {
    let w = windows?;
    let threads = rayon::current_num_threads();
    if threads < 2 || series == 0 || series >= ctx.parallel_min_series.max(2) || min == i64::MIN {
        return None;
    }
    if (max as i128 - min as i128) < ctx.parallel_min_span_ns as i128 {
        return None;
    }
    let n = threads as i128;
    let mut ranges = Vec::with_capacity(threads);
    let mut lo = min;
    for k in 1..n {
        let t = (min as i128 + (max as i128 - min as i128) * k / n) as i64;
        let (cut, _) = w.bounds(t);
        if cut > lo && cut <= max {
            ranges.push((lo, cut - 1));
            lo = cut;
        }
    }
    ranges.push((lo, max));
    (ranges.len() >= 2).then_some(ranges)
}

/// Runs `part` over every range of `ranges` on rayon's pool, each with its share of the
/// points and memory limits ([`Meter::split_time`]), and merges the partial results in range
/// order, so the answer does not depend on thread timing.
pub(super) fn run_time_split<T: Send + Default>(
    ids: &[SeriesId],
    meter: &mut Meter,
    ranges: &[(i64, i64)],
    part: &RangePartFn<'_, T>,
    merge: impl Fn(&mut T, T),
) -> Result<T, QueryError> {
    let base: &Meter = meter;
    let n = ranges.len() as u64;
    let results: Vec<(Result<T, QueryError>, Meter)> = ranges
        .par_iter()
        .map(|&(a, b)| {
            let mut m = base.split_time(n);
            let r = part(ids, EngineRange::inclusive(a, b), &mut m);
            (r, m)
        })
        .collect();
    let mut out = T::default();
    for (i, (r, m)) in results.into_iter().enumerate() {
        meter.absorb_time_part(&m, i == 0)?;
        merge(&mut out, r?);
    }
    Ok(out)
}
