//! `SELECT`: planning (per measurement) and execution over the streaming scan.
//!
//! Three shapes of query, as InfluxQL has them:
//! - **raw**: fields and arithmetic on them; one row per point (per series);
//! - **aggregate**: expressions over aggregate/selector calls, one row per `GROUP BY time`
//!   bucket (or one row without it), optionally under a transformation
//!   (`derivative(mean(v))`);
//! - **raw transformation**: `derivative(v)`, `difference(v)`, ... over raw points.
//!
//! Series are grouped by the `GROUP BY` tags: every series of one group feeds the same
//! accumulators (aggregates) or row list (raw). Aggregates whose blocks lie wholly inside
//! one bucket are answered from block statistics ([`strata_engine::Piece::Summary`]).
//!
//! Layout: this file runs a statement (measurements, `SLIMIT`, `tz()`, streaming);
//! `plan` turns one measurement into a [`Plan`]; `rows` iterates a series' rows; `raw` and
//! `aggregate` execute the two families of plans; `split` spreads an aggregate over the
//! cores; `output` shapes rows into series.

mod aggregate;
mod output;
mod plan;
mod points;
mod raw;
mod rows;
mod split;

pub(crate) use output::Emit;
pub use output::STREAM_PART_ROWS;
pub use plan::to_tag_predicate;

use std::collections::BTreeMap;

use strata_engine::{ScanRequest, SeriesId, TimeRange as EngineRange};

use crate::ast::SelectStatement;
use crate::condition::split_time_condition;
use crate::error::QueryError;
use crate::exec::source::SeriesSource;
use crate::exec::tz::{TimeZone, Windows};
use crate::exec::{resolve_database, resolve_measurements, QueryContext};
use crate::limits::Meter;
use crate::result::{Series, Value};
use plan::*;
use raw::RawMerge;

/// Executes a `SELECT`.
pub(crate) fn select(
    ctx: &QueryContext<'_>,
    source: &dyn SeriesSource,
    stmt: &SelectStatement,
    meter: &mut Meter,
) -> Result<Vec<Series>, QueryError> {
    let first_db = stmt.sources.iter().find_map(|s| match s {
        crate::ast::Source::Measurement(m) => m.database.clone(),
    });
    let db = resolve_database(ctx, first_db.as_deref())?;
    // The target is checked before reading anything.
    let into = match &stmt.into {
        Some(m) => Some(super::into::target(ctx, m, &db)?),
        None => None,
    };
    let tz = match &stmt.tz {
        Some(z) => TimeZone::parse(z).ok_or_else(|| QueryError::UnknownTimeZone { zone: z.clone() })?,
        None => TimeZone::utc(),
    };
    let windows = stmt.group_by.time.map(|td| Windows::new(td.interval_ns, td.offset_ns, tz.clone()));
    let (range, rest) = match &stmt.condition {
        Some(c) => split_time_condition(c, ctx.now_ns)?,
        None => (Default::default(), None),
    };
    let mut out = Vec::new();
    if range.is_empty() {
        return Ok(out);
    }
    let measurements = resolve_measurements(ctx, &db, &stmt.sources)?;
    let schema = union_schema(ctx, &db, &measurements)?;
    for m in measurements {
        let plan = plan_measurement(ctx, &db, &m, stmt, rest.as_ref(), schema.as_ref())?;
        let Some(plan) = plan else { continue };
        let mut series = run_plan(ctx, source, &db, &plan, stmt, range, windows.as_ref(), meter, None)?;
        out.append(&mut series);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.tags.cmp(&b.tags)));
    // InfluxDB's ORDER BY time DESC also reverses the order of the series.
    if stmt.order_desc {
        out.reverse();
    }
    let mut out: Vec<Series> = out
        .into_iter()
        .skip(stmt.soffset as usize)
        .take(stmt.slimit.map_or(usize::MAX, |l| l as usize))
        .collect();
    if let Some((db, measurement)) = into {
        return super::into::write_into(ctx, &db, &measurement, &out);
    }
    if !tz.is_utc() {
        for s in &mut out {
            for row in &mut s.values {
                if let Some(Value::Time(t)) = row.first() {
                    let t = *t;
                    row[0] = tz.zoned(t);
                }
            }
        }
    }
    Ok(out)
}

/// [`select`], handing each series to `emit` as soon as it is complete, in the order
/// [`select`] returns them (measurement, then tag set), so a chunked answer never holds the
/// whole result.
///
/// Measurements are already sorted; within one, a raw `SELECT` reads one tag set at a time
/// (the index says which series make each set; without `GROUP BY` tags every series of the
/// measurement is one set) and streams it through [`RawMerge`], holding only the front of
/// each of its series, in either time order. Aggregates and transformations are computed
/// per measurement (their parallel split needs all its series) and emitted per series after
/// it.
/// The memory meter is reset after each emitted batch: what was handed on is no longer held.
/// `SELECT ... INTO` writes its result first and then emits the one `result` series.
pub(crate) fn select_each(
    ctx: &QueryContext<'_>,
    source: &dyn SeriesSource,
    stmt: &SelectStatement,
    meter: &mut Meter,
    emit: &mut Emit<'_>,
) -> Result<(), QueryError> {
    if stmt.into.is_some() {
        for s in select(ctx, source, stmt, meter)? {
            emit(s, false)?;
        }
        return Ok(());
    }
    let first_db = stmt.sources.iter().find_map(|s| match s {
        crate::ast::Source::Measurement(m) => m.database.clone(),
    });
    let db = resolve_database(ctx, first_db.as_deref())?;
    let tz = match &stmt.tz {
        Some(z) => TimeZone::parse(z).ok_or_else(|| QueryError::UnknownTimeZone { zone: z.clone() })?,
        None => TimeZone::utc(),
    };
    let windows = stmt.group_by.time.map(|td| Windows::new(td.interval_ns, td.offset_ns, tz.clone()));
    let (range, rest) = match &stmt.condition {
        Some(c) => split_time_condition(c, ctx.now_ns)?,
        None => (Default::default(), None),
    };
    if range.is_empty() {
        return Ok(());
    }
    let mut skip = stmt.soffset;
    let mut left = stmt.slimit.unwrap_or(u64::MAX);
    let left = &mut left;
    // Every measurement is planned before anything is read, so a statement that cannot be
    // planned fails before its first line, as the materialised answer does.
    let mut plans = Vec::new();
    let measurements = resolve_measurements(ctx, &db, &stmt.sources)?;
    let schema = union_schema(ctx, &db, &measurements)?;
    for m in &measurements {
        plans.extend(plan_measurement(ctx, &db, m, stmt, rest.as_ref(), schema.as_ref())?);
    }
    if stmt.order_desc {
        plans.reverse();
    }
    for plan in plans {
        // Raw rows: one merge per tag set, in tag-set order (without GROUP BY tags, one set of
        // every series).
        let sets: Vec<Option<(GroupKey, Vec<SeriesId>)>> = if matches!(plan.mode, Mode::Raw { .. }) {
            let mut by_set: BTreeMap<GroupKey, Vec<SeriesId>> = BTreeMap::new();
            for (id, key) in source.series(&db, &plan.measurement, &plan.tag_pred)? {
                if !tag_filter_ok(&plan, &key) {
                    continue;
                }
                let k = plan.group_key(&key);
                // Ids arrive ascending, so each set's list stays ascending as the cursors want.
                by_set.entry(k).or_default().push(id);
            }
            let sets = by_set.into_iter().map(|(k, ids)| Some((k, ids)));
            if stmt.order_desc {
                sets.rev().collect()
            } else {
                sets.collect()
            }
        } else {
            vec![None]
        };
        for set in sets {
            if let (Some((key, ids)), Mode::Raw { exprs, tag_only }) = (&set, &plan.mode) {
                if *left == 0 {
                    return Ok(());
                }
                let r = RawMerge { plan: &plan, stmt, exprs, tag_only, tz: &tz };
                r.run(source, &db, range, meter, key, ids, (&mut skip, &mut *left), emit)?;
                meter.memory = 0;
                continue;
            }
            let only = set.map(|(_, ids)| ids);
            let mut series =
                run_plan(ctx, source, &db, &plan, stmt, range, windows.as_ref(), meter, only.as_deref())?;
            series.sort_by(|a, b| a.tags.cmp(&b.tags));
            if stmt.order_desc {
                series.reverse();
            }
            for mut s in series {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if *left == 0 {
                    return Ok(());
                }
                *left -= 1;
                if !tz.is_utc() {
                    for row in &mut s.values {
                        if let Some(Value::Time(t)) = row.first() {
                            let t = *t;
                            row[0] = tz.zoned(t);
                        }
                    }
                }
                emit(s, false)?;
            }
            meter.memory = 0;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_plan(
    ctx: &QueryContext<'_>,
    source: &dyn SeriesSource,
    db: &str,
    plan: &Plan,
    stmt: &SelectStatement,
    range: crate::condition::TimeRange,
    windows: Option<&Windows>,
    meter: &mut Meter,
    only: Option<&[SeriesId]>,
) -> Result<Vec<Series>, QueryError> {
    let gb_time = windows;
    let field_refs: Vec<&str> = plan.scan_fields.iter().map(String::as_str).collect();
    let is_agg = matches!(plan.mode, Mode::Agg { .. } | Mode::Points(_));
    // Aggregates grouped by time stop at now() when the query gives no upper bound.
    let max = match (range.max, is_agg && gb_time.is_some()) {
        (Some(m), _) => m,
        (None, true) => ctx.now_ns,
        (None, false) => i64::MAX,
    };
    let min = range.min.unwrap_or(i64::MIN);
    if min > max || plan.scan_fields.is_empty() {
        return Ok(Vec::new());
    }
    let req = ScanRequest {
        db,
        measurement: &plan.measurement,
        predicate: &plan.tag_pred,
        fields: Some(&field_refs),
        range: EngineRange::inclusive(min, max),
    };
    match &plan.mode {
        Mode::Agg { calls, outs } => {
            aggregate::run(ctx, source, db, plan, stmt, req, range, windows, meter, calls, outs, max)
        }
        Mode::Raw { exprs, tag_only } => raw::run(source, plan, stmt, &req, meter, exprs, tag_only, only),
        Mode::RawTransform { outs } => raw::run_transform(source, plan, stmt, &req, meter, outs),
        Mode::Points(spec) => points::run(source, plan, stmt, &req, range, windows, meter, spec, max),
    }
}
