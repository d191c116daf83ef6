//! Aggregate `SELECT`s: points into per-group, per-bucket accumulators, then rows.

use std::collections::{BTreeMap, HashMap};

use strata_engine::{Piece, ScanOptions, ScanRequest, SeriesId, TimeRange as EngineRange};

use super::output::*;
use super::plan::*;
use super::rows::*;
use super::split::*;
use crate::ast::{Fill, SelectStatement};
use crate::condition::TimeRange;
use crate::error::QueryError;
use crate::exec::agg::{integral, Acc, AggKind, BucketValues, Col, IntegralWindow};
use crate::exec::eval::{CExpr, V};
use crate::exec::last_value::newest_points_suffice;
use crate::exec::source::SeriesSource;
use crate::exec::transform::apply_transform;
use crate::exec::tz::Windows;
use crate::exec::QueryContext;
use crate::limits::{row_bytes, Meter};
use crate::result::{Series, Value};

/// Per tag group, per bucket start: one accumulator per call.
pub(super) type AggGroups = HashMap<GroupKey, BTreeMap<i64, Vec<Acc>>>;

/// The accumulators of bucket `b`, made (and charged to `meter`: the map entry and one
/// [`Acc`] per call) when the bucket is new. A bucket is made per point at worst
/// (`GROUP BY time(1ns)`), so this is what holds memory when the points are many.
pub(super) fn bucket_accs<'b>(
    buckets: &'b mut BTreeMap<i64, Vec<Acc>>,
    b: i64,
    calls: &[CallSpec],
    meter: &mut Meter,
) -> Result<&'b mut Vec<Acc>, QueryError> {
    match buckets.entry(b) {
        std::collections::btree_map::Entry::Occupied(o) => Ok(o.into_mut()),
        std::collections::btree_map::Entry::Vacant(v) => {
            meter.add_memory(64 + (std::mem::size_of::<Acc>() * calls.len()) as u64)?;
            Ok(v.insert(calls.iter().map(|c| Acc::new(c.kind)).collect()))
        }
    }
}

pub(super) fn merge_agg_groups(into: &mut AggGroups, part: AggGroups) {
    for (key, buckets) in part {
        let dst = into.entry(key).or_default();
        for (b, accs) in buckets {
            match dst.entry(b) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(accs);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    for (d, a) in o.get_mut().iter_mut().zip(accs) {
                        d.merge(a);
                    }
                }
            }
        }
    }
}

/// Bytes one bucket costs per group while [`finish_agg`] builds the group's rows, besides the
/// rows themselves: per call, its value (`BucketValues`) and its filled value; one `present`
/// flag.
pub(super) fn bucket_temp_bytes(calls: usize) -> u64 {
    let per_call = std::mem::size_of::<Option<(Option<i64>, Value)>>() + std::mem::size_of::<Value>();
    (calls * per_call + 1) as u64
}

/// Turns the accumulators into rows, per group: the bucket list, each call's value per bucket,
/// its fill, then the output expressions or transformations. Everything here grows with the
/// number of buckets, not with the points read (`GROUP BY time(1ns)` over 9 ms is 9 million
/// buckets from a handful of points), so each vector is charged to `meter` before it is
/// built, the deadline is checked as buckets are walked, and a group's temporaries are
/// released once its rows are made.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish_agg(
    plan: &Plan,
    stmt: &SelectStatement,
    groups: HashMap<GroupKey, BTreeMap<i64, Vec<Acc>>>,
    calls: &[CallSpec],
    outs: &[AggOut],
    range: crate::condition::TimeRange,
    max: i64,
    gb_time: Option<&Windows>,
    single_selector_time: bool,
    meter: &mut Meter,
) -> Result<Vec<Series>, QueryError> {
    // Bucket list.
    let buckets: Vec<i64> = match gb_time {
        None => vec![0],
        Some(w) => {
            let lo_data = groups.values().filter_map(|b| b.keys().next().copied()).min();
            let Some(lo_data) = lo_data else { return Ok(Vec::new()) };
            let first = match range.min {
                Some(m) => w.start(m),
                None => lo_data,
            };
            let last = w.start(max);
            if last < first {
                return Ok(Vec::new());
            }
            // Checked before walking: windows are at least interval - 1h long (a DST change
            // shortens a day by the change), so this bounds the walk too.
            let n = ((last as i128 - first as i128) / w.interval() as i128) as u64 + 1;
            meter.check_buckets(n)?;
            // The list, and one group's columns over it: refused here, before either exists,
            // when the buckets alone pass the memory limit.
            meter.add_memory(8 * n)?;
            meter.add_memory(bucket_temp_bytes(calls.len()).saturating_mul(n))?;
            meter.release(bucket_temp_bytes(calls.len()).saturating_mul(n));
            let mut buckets = Vec::with_capacity(n as usize);
            let mut b = Some(first);
            let mut i = 0u64;
            while let Some(x) = b.filter(|&x| x <= last) {
                meter.tick(i)?;
                i += 1;
                buckets.push(x);
                b = w.next(x);
            }
            buckets
        }
    };
    let default_time = range.min.unwrap_or(0);
    let mut out = Vec::new();
    for (key, mut bmap) in groups {
        if bmap.values().all(|accs| accs.iter().all(|a| a.count() == 0)) {
            continue;
        }
        if calls.len() == 1 && calls[0].kind == AggKind::Distinct {
            let rows = distinct_rows(stmt, &buckets, &mut bmap, gb_time.is_some(), default_time, meter)?;
            meter.add_rows(rows.len() as u64)?;
            out.extend(make_series(plan, stmt, key, rows));
            continue;
        }
        // What this group holds until its rows are made; released below, rows excepted.
        let mark = meter.memory;
        let nb = buckets.len() as u64;
        meter.add_memory(bucket_temp_bytes(calls.len()).saturating_mul(nb))?;
        // Per call: value per bucket, after fill.
        let mut cols: Vec<BucketValues> = vec![Vec::with_capacity(buckets.len()); calls.len()];
        for (i, b) in buckets.iter().enumerate() {
            meter.tick(i as u64)?;
            match bmap.get_mut(b) {
                Some(accs) => {
                    for (ci, acc) in accs.iter_mut().enumerate() {
                        let v = acc.finish();
                        if let Some((_, Value::String(s))) = &v {
                            meter.add_memory(s.len() as u64)?;
                        }
                        cols[ci].push(v);
                    }
                }
                None => {
                    for c in cols.iter_mut() {
                        c.push(None);
                    }
                }
            }
        }
        for (ci, call) in calls.iter().enumerate() {
            if let AggKind::Integral { unit } = call.kind {
                cols[ci] = integral_column(&buckets, &mut bmap, ci, unit, gb_time, default_time);
            }
        }
        let present: Vec<bool> = (0..buckets.len()).map(|i| cols.iter().any(|c| c[i].is_some())).collect();
        let mut filled: Vec<Vec<Value>> = Vec::with_capacity(calls.len());
        for (c, spec) in cols.iter().zip(calls) {
            filled.push(crate::exec::transform::fill(stmt.fill, spec.kind, c, meter)?);
        }
        let has_transform = outs.iter().any(|o| matches!(o, AggOut::Transform { .. }));
        let row_time = |i: usize| -> i64 {
            if gb_time.is_some() {
                buckets[i]
            } else if single_selector_time {
                cols[0][i].as_ref().and_then(|x| x.0).unwrap_or(default_time)
            } else {
                default_time
            }
        };
        let keep = |i: usize| stmt.fill != Fill::None || present[i];
        // Bytes of the rows this group keeps.
        let mut kept = 0u64;
        let rows: Vec<Vec<Value>> = if !has_transform {
            let mut rows = Vec::new();
            let mut slots: Vec<V<'_>> = vec![V::Null; calls.len()];
            for i in 0..buckets.len() {
                meter.tick(i as u64)?;
                if !keep(i) {
                    continue;
                }
                for (ci, f) in filled.iter().enumerate() {
                    slots[ci] = V::from_value(&f[i]);
                }
                let mut row = Vec::with_capacity(outs.len() + 1);
                row.push(Value::Time(row_time(i)));
                for o in outs {
                    if let AggOut::Expr(e) = o {
                        row.push(e.eval(&slots).to_value());
                    }
                }
                let bytes = row_bytes(&row);
                meter.add_memory(bytes)?;
                kept += bytes;
                rows.push(row);
            }
            rows
        } else {
            let n_keep = (0..buckets.len()).filter(|&i| keep(i)).count() as u64;
            // Per output: its (time, value) sequence and, for transformations, their input;
            // then the merged rows.
            let seq_item = std::mem::size_of::<(i64, Value)>() as u64;
            let row = row_bytes(&vec![Value::Null; outs.len() + 1]);
            kept = n_keep.saturating_mul(row);
            meter.add_memory(n_keep.saturating_mul(2 * seq_item * outs.len() as u64).saturating_add(kept))?;
            let mut seqs: Vec<Vec<(i64, Value)>> = Vec::with_capacity(outs.len());
            for o in outs {
                let mut seq = Vec::new();
                let mut slots: Vec<V<'_>> = vec![V::Null; calls.len()];
                for i in 0..buckets.len() {
                    meter.tick(i as u64)?;
                    if !keep(i) {
                        continue;
                    }
                    let v = match o {
                        AggOut::Transform { call, .. } => {
                            if filled[*call][i].is_null() {
                                continue;
                            }
                            filled[*call][i].clone()
                        }
                        AggOut::Expr(e) => {
                            for (ci, f) in filled.iter().enumerate() {
                                slots[ci] = V::from_value(&f[i]);
                            }
                            e.eval(&slots).to_value()
                        }
                    };
                    if let Value::String(s) = &v {
                        meter.add_memory(s.len() as u64)?;
                        kept += s.len() as u64;
                    }
                    seq.push((row_time(i), v));
                }
                seqs.push(match o {
                    AggOut::Transform { kind, .. } => apply_transform(*kind, seq),
                    AggOut::Expr(_) => seq,
                });
            }
            merge_columns(seqs)
        };
        meter.add_rows(rows.len() as u64)?;
        drop((cols, present, filled));
        meter.memory = mark + kept;
        out.extend(make_series(plan, stmt, key, rows));
    }
    Ok(out)
}

/// `integral()` of one call per bucket: it needs each bucket's neighbours, so it runs over
/// the group's buckets in order instead of per accumulator.
pub(super) fn integral_column(
    buckets: &[i64],
    bmap: &mut BTreeMap<i64, Vec<Acc>>,
    call: usize,
    unit: i64,
    windows: Option<&Windows>,
    default_time: i64,
) -> BucketValues {
    let mut idx = Vec::new();
    let mut points = Vec::new();
    for (i, b) in buckets.iter().enumerate() {
        if let Some(accs) = bmap.get_mut(b) {
            let p = accs[call].integral_points();
            if !p.is_empty() {
                idx.push(i);
                points.push(p);
            }
        }
    }
    let wins: Vec<IntegralWindow<'_>> = idx
        .iter()
        .zip(&points)
        .map(|(&i, p)| {
            let (start, end) = match windows {
                Some(w) => w.bounds(buckets[i]),
                // Without GROUP BY time: one window from the query's start.
                None => (default_time, i64::MAX),
            };
            IntegralWindow { start, end, points: p }
        })
        .collect();
    let vals = integral(&wins, unit);
    let mut col: BucketValues = vec![None; buckets.len()];
    for (i, v) in idx.into_iter().zip(vals) {
        col[i] = v.map(|v| (None, Value::Float(v)));
    }
    col
}

/// The rows of `distinct(f)`: each bucket's distinct values, each a row timed at the bucket;
/// an empty bucket gives one row of the fill value (none for `fill(none)`, null for
/// `fill(previous|linear)` as there is no single previous value). Each row is charged to
/// `meter` as it is made.
pub(super) fn distinct_rows(
    stmt: &SelectStatement,
    buckets: &[i64],
    bmap: &mut BTreeMap<i64, Vec<Acc>>,
    grouped_by_time: bool,
    default_time: i64,
    meter: &mut Meter,
) -> Result<Vec<Vec<Value>>, QueryError> {
    let mut rows = Vec::new();
    for (i, b) in buckets.iter().enumerate() {
        meter.tick(i as u64)?;
        let t = if grouped_by_time { *b } else { default_time };
        let vals = bmap.get_mut(b).map(|accs| accs[0].distinct_values()).unwrap_or_default();
        if vals.is_empty() {
            let fill = match stmt.fill {
                Fill::None => continue,
                Fill::Number(f) => Value::Float(f),
                Fill::Integer(i) => Value::Integer(i),
                Fill::Null | Fill::Previous | Fill::Linear => Value::Null,
            };
            let row = vec![Value::Time(t), fill];
            meter.add_memory(row_bytes(&row))?;
            rows.push(row);
        }
        for v in vals {
            let row = vec![Value::Time(t), v];
            meter.add_memory(row_bytes(&row))?;
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Runs an aggregate plan: reads the series (split over the cores when they are many or the
/// range is long) into per-group, per-bucket accumulators and turns those into series.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    ctx: &QueryContext<'_>,
    source: &dyn SeriesSource,
    db: &str,
    plan: &Plan,
    stmt: &SelectStatement,
    req: ScanRequest<'_>,
    range: TimeRange,
    windows: Option<&Windows>,
    meter: &mut Meter,
    calls: &[CallSpec],
    outs: &[AggOut],
    max: i64,
) -> Result<Vec<Series>, QueryError> {
    let gb_time = windows;
    let min = range.min.unwrap_or(i64::MIN);
    let bucket_of = |t: i64| windows.map_or(0, |w| w.start(t));

    let single_selector_time = gb_time.is_none()
        && calls.len() == 1
        && calls[0].kind.is_selector()
        && outs.iter().all(|o| matches!(o, AggOut::Expr(CExpr::Slot(_))));
    let can_summarize = plan.cond.is_none()
        && plan.tag_filter.is_none()
        && calls.iter().all(|c| c.kind.summarizable())
        && !(single_selector_time && matches!(calls[0].kind, AggKind::Min | AggKind::Max));
    let summarize = move |a: i64, b: i64| bucket_of(a) == bucket_of(b);
    let retains = calls.iter().any(|c| c.kind.retains_values());
    let newest_only = newest_points_suffice(
        calls.iter().map(|c| c.kind),
        windows.is_some(),
        plan.cond.is_some(),
        plan.tag_filter.is_some(),
    );
    let read = if newest_only { <dyn SeriesSource>::scan_last } else { <dyn SeriesSource>::scan };
    // Reads some of the series (ascending ids) into per-group, per-bucket accumulators.
    let scan_range = |ids: &[SeriesId],
                      range: EngineRange,
                      meter: &mut Meter|
     -> Result<AggGroups, QueryError> {
        let req = ScanRequest { range, ..req };
        let opts =
            ScanOptions { summarize: if can_summarize { Some(&summarize) } else { None }, series: Some(ids) };
        let mut groups: AggGroups = HashMap::new();
        let mut failure: Option<QueryError> = None;
        read(source, &req, &opts, &mut |s| {
            let r = (|| -> Result<(), QueryError> {
                meter.add_series()?;
                let key = plan.group_key(&s.key);
                if !groups.contains_key(&key) {
                    meter.add_memory(64 + key.iter().map(|k| 24 + k.len() as u64).sum::<u64>())?;
                }
                let buckets = groups.entry(key).or_default();
                if plan.cond.is_some() {
                    for_each_row(&s, plan, meter, &mut |t, slots, meter| {
                        meter.add_points(1)?;
                        let accs = bucket_accs(buckets, bucket_of(t), calls, meter)?;
                        for (c, acc) in calls.iter().zip(accs.iter_mut()) {
                            let v = slots[c.slot];
                            if let V::S(text) = v {
                                if retains || c.kind.is_selector() {
                                    meter.add_memory(text.len() as u64)?;
                                }
                            }
                            acc.feed_one(t, v);
                        }
                        if retains {
                            meter.add_memory(16 * calls.len() as u64)?;
                        }
                        Ok(())
                    })?;
                    return Ok(());
                }
                for col in &s.columns {
                    let Some(fi) = plan.scan_fields.iter().position(|f| *f == *col.field) else {
                        continue;
                    };
                    for piece in &col.pieces {
                        meter.add_points(piece.count())?;
                        match piece {
                            Piece::Summary(sum) => {
                                let accs = bucket_accs(buckets, bucket_of(sum.min_ts), calls, meter)?;
                                for (c, acc) in calls.iter().zip(accs.iter_mut()) {
                                    if c.field == fi {
                                        acc.feed_summary(sum);
                                    }
                                }
                            }
                            Piece::Data { timestamps, values } => {
                                // A piece is one decoded block: checking per piece
                                // costs nothing next to decoding it.
                                meter.check_time()?;
                                let col_v = Col::from_values(values);
                                if retains {
                                    meter.add_memory(16 * timestamps.len() as u64)?;
                                }
                                // String values kept: every one by the aggregates
                                // that retain values, at most one per run by each
                                // selector.
                                let selectors =
                                    calls.iter().filter(|c| c.field == fi && c.kind.is_selector()).count()
                                        as u64;
                                let mut i = 0;
                                while i < timestamps.len() {
                                    let (b, j) = match windows {
                                        Some(w) => {
                                            let (b, end) = w.bounds(timestamps[i]);
                                            (b, i + timestamps[i..].partition_point(|&t| t < end))
                                        }
                                        None => (0, timestamps.len()),
                                    };
                                    if let Col::S(texts) = col_v {
                                        let run = &texts[i..j];
                                        let mut bytes =
                                            selectors * run.iter().map(String::len).max().unwrap_or(0) as u64;
                                        if retains {
                                            bytes += run.iter().map(|t| t.len() as u64).sum::<u64>();
                                        }
                                        meter.add_memory(bytes)?;
                                    }
                                    let accs = bucket_accs(buckets, b, calls, meter)?;
                                    for (c, acc) in calls.iter().zip(accs.iter_mut()) {
                                        if c.field == fi {
                                            acc.feed(&timestamps[i..j], col_v.slice(i, j));
                                        }
                                    }
                                    i = j;
                                }
                            }
                        }
                    }
                }
                Ok(())
            })();
            stop_on_error(r, &mut failure)
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(groups),
        }
    };
    let scan_part = |ids: &[SeriesId], meter: &mut Meter| scan_range(ids, req.range, meter);
    let ids = matching_series(source, db, plan)?;
    let groups = match time_split(ctx, ids.len(), min, max, windows) {
        Some(ranges) => run_time_split(&ids, meter, &ranges, &scan_range, merge_agg_groups)?,
        None => run_split(ctx, &ids, meter, &scan_part, merge_agg_groups)?,
    };
    finish_agg(plan, stmt, groups, calls, outs, range, max, windows, single_selector_time, meter)
}
