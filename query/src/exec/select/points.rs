//! Selectors that report whole points: `SELECT last(temp), host, msg` (the selected point's
//! other fields and tags, as InfluxDB returns them) and `top()`/`bottom()`.
//!
//! Rows are read like a raw query's ([`for_each_row`]) and reduced per group and bucket to
//! the points the selector picks, each kept with its other columns.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use strata_engine::{ScanOptions, ScanRequest};

use super::output::*;
use super::plan::*;
use super::rows::*;
use crate::ast::{Fill, SelectStatement};
use crate::condition::TimeRange;
use crate::error::QueryError;
use crate::exec::eval::V;
use crate::exec::source::SeriesSource;
use crate::exec::tz::Windows;
use crate::limits::{row_bytes, Meter};
use crate::result::{Series, Value};

/// A candidate point: its time, its selected value, the series it came from (for ties), the
/// values of `top()`'s tag arguments (shared by the points of one series: a copy per point
/// would be memory the meter does not see), and the other columns.
struct Point {
    t: i64,
    value: Value,
    series: u32,
    tags: Arc<[String]>,
    aux: Vec<Value>,
}

/// Orders two points so that the one `pick` prefers comes first.
fn prefer(pick: PointPick, a: &Point, b: &Point) -> Ordering {
    let by_value = |a: &Point, b: &Point| match (a.value.as_f64(), b.value.as_f64()) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => match (&a.value, &b.value) {
            (Value::String(x), Value::String(y)) => x.cmp(y),
            (Value::Boolean(x), Value::Boolean(y)) => x.cmp(y),
            _ => Ordering::Equal,
        },
    };
    let earlier = a.t.cmp(&b.t).then(a.series.cmp(&b.series));
    match pick {
        // Of points at the same time (several series), the larger value, as the aggregate
        // path's first() and last() do.
        PointPick::First => a.t.cmp(&b.t).then_with(|| by_value(b, a)).then(a.series.cmp(&b.series)),
        PointPick::Last => b.t.cmp(&a.t).then_with(|| by_value(b, a)).then(a.series.cmp(&b.series)),
        PointPick::Min | PointPick::Bottom(_) => by_value(a, b).then(earlier),
        PointPick::Max | PointPick::Top(_) => by_value(b, a).then(earlier),
    }
}

/// Runs a [`Mode::Points`] plan.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    source: &dyn SeriesSource,
    plan: &Plan,
    stmt: &SelectStatement,
    req: &ScanRequest<'_>,
    range: TimeRange,
    windows: Option<&Windows>,
    meter: &mut Meter,
    spec: &PointsSpec,
    max: i64,
) -> Result<Vec<Series>, QueryError> {
    let mut failure: Option<QueryError> = None;
    let numeric_only = !matches!(spec.pick, PointPick::First | PointPick::Last);
    let mut groups: HashMap<GroupKey, BTreeMap<i64, Vec<Point>>> = HashMap::new();
    let mut next_series = 0u32;
    let mut first_time = i64::MAX;
    source.scan(req, &ScanOptions { summarize: None, series: None }, &mut |s| {
        let r = (|| -> Result<(), QueryError> {
            meter.add_series()?;
            if !tag_filter_ok(plan, &s.key) {
                return Ok(());
            }
            let series = next_series;
            next_series += 1;
            let tags: Arc<[String]> =
                spec.tag_args.iter().map(|t| s.key.tag(t).unwrap_or("").to_owned()).collect();
            meter.add_memory(tags.iter().map(|t| t.len() as u64 + 24).sum::<u64>() + 16)?;
            let buckets = groups.entry(plan.group_key(&s.key)).or_default();
            for_each_row(&s, plan, meter, &mut |t, slots, meter| {
                meter.add_points(1)?;
                let v = slots[spec.value];
                if v == V::Null || (numeric_only && !matches!(v, V::F(_) | V::I(_) | V::U(_))) {
                    return Ok(());
                }
                first_time = first_time.min(t);
                let aux: Vec<Value> = spec
                    .aux
                    .iter()
                    .map(|(e, is_tag)| match e.eval(slots) {
                        V::S("") if *is_tag => Value::Null,
                        x => x.to_value(),
                    })
                    .collect();
                let p = Point { t, value: v.to_value(), series, tags: tags.clone(), aux };
                let bucket = windows.map_or(0, |w| w.start(t));
                let kept = buckets.entry(bucket).or_default();
                match spec.pick {
                    PointPick::Top(_) | PointPick::Bottom(_) => {
                        meter.add_memory(row_bytes(&p.aux) + 64)?;
                        kept.push(p);
                    }
                    pick => match kept.first_mut() {
                        Some(best) if prefer(pick, best, &p) != Ordering::Greater => {}
                        Some(best) => {
                            // The slot holds the largest point it has held: charge growth.
                            let (new, old) = (row_bytes(&p.aux), row_bytes(&best.aux));
                            meter.add_memory(new.saturating_sub(old))?;
                            *best = p;
                        }
                        None => {
                            meter.add_memory(row_bytes(&p.aux) + 64)?;
                            kept.push(p);
                        }
                    },
                }
                Ok(())
            })
        })();
        stop_on_error(r, &mut failure)
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    // The bucket list for the fill of empty buckets (first/last/min/max grouped by time).
    let all_buckets: Option<Vec<i64>> = match (windows, spec.pick) {
        (Some(w), PointPick::First | PointPick::Last | PointPick::Min | PointPick::Max)
            if stmt.fill != Fill::None && first_time != i64::MAX =>
        {
            let mut out = Vec::new();
            let mut b = w.start(range.min.unwrap_or(first_time));
            while b <= max {
                meter.add_memory(8)?;
                meter.check_time()?;
                out.push(b);
                let next = w.bounds(b).1;
                if next <= b {
                    break;
                }
                b = next;
            }
            Some(out)
        }
        _ => None,
    };
    let width = 1 + spec.tag_args.len() + spec.aux.len();
    let mut out = Vec::new();
    for (key, mut buckets) in groups {
        let mut rows: Vec<Vec<Value>> = Vec::new();
        let row_of = |time: i64, p: Point| -> Vec<Value> {
            let mut row = Vec::with_capacity(width + 1);
            row.push(Value::Time(time));
            row.push(p.value);
            row.extend(p.tags.iter().cloned().map(Value::String));
            row.extend(p.aux);
            row
        };
        match spec.pick {
            PointPick::Top(n) | PointPick::Bottom(n) => {
                for (_, mut points) in buckets {
                    points.sort_by(|a, b| prefer(spec.pick, a, b));
                    if !spec.tag_args.is_empty() {
                        // The best point of each tag combination (the first seen, as sorted).
                        let mut seen = std::collections::HashSet::new();
                        points.retain(|p| seen.insert(p.tags.clone()));
                    }
                    points.truncate(n);
                    points.sort_by(|a, b| a.t.cmp(&b.t).then(a.series.cmp(&b.series)));
                    // InfluxDB's ORDER BY time DESC reverses the buckets but keeps each
                    // bucket's points in time order; make_series reverses every row.
                    if stmt.order_desc {
                        points.reverse();
                    }
                    rows.extend(points.into_iter().map(|p| row_of(p.t, p)));
                }
            }
            _ => match &all_buckets {
                Some(all) => {
                    for &b in all {
                        meter.check_time()?;
                        match buckets.remove(&b).and_then(|mut v| v.pop()) {
                            Some(p) => rows.push(row_of(b, p)),
                            None => {
                                let mut row = vec![Value::Time(b)];
                                row.resize(width + 1, Value::Null);
                                rows.push(row);
                            }
                        }
                    }
                }
                None => {
                    for (b, mut points) in buckets {
                        if let Some(p) = points.pop() {
                            let time = if windows.is_some() { b } else { p.t };
                            rows.push(row_of(time, p));
                        }
                    }
                }
            },
        }
        meter.add_rows(rows.len() as u64)?;
        out.extend(make_series(plan, stmt, key, rows));
    }
    Ok(out)
}
