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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::ops::ControlFlow;

use rayon::prelude::*;
use strata_engine::{
    FieldType, Piece, ScanOptions, ScanRequest, SeriesId, SeriesPieces, TagPredicate,
    TimeRange as EngineRange,
};

use super::agg::{integral, Acc, AggKind, BucketValues, Col, IntegralWindow};
use super::eval::{compile, CExpr, V};
use super::source::SeriesSource;
use super::transform::{apply_transform, TKind};
use super::tz::{TimeZone, Windows};
use super::{resolve_database, resolve_measurements, QueryContext};
use crate::ast::{BinaryOp, DataType, Expr, Field, Fill, SelectStatement, TagDimension, WildcardKind};
use crate::condition::{split_tag_condition, split_time_condition};
use crate::error::QueryError;
use crate::limits::{row_bytes, value_bytes, Meter};
use crate::result::{Series, Value};

/// Where a row slot's value comes from.
#[derive(Debug, Clone, PartialEq)]
enum SlotSrc {
    /// Index into the scan's fields.
    Field(usize),
    Tag(String),
}

#[derive(Debug)]
struct CallSpec {
    kind: AggKind,
    /// Index into the scan's fields.
    field: usize,
    /// Row slot of the field (for the row path).
    slot: usize,
}

#[derive(Debug)]
enum AggOut {
    Expr(CExpr),
    Transform { kind: TKind, call: usize },
}

#[derive(Debug)]
struct RawTransform {
    kind: TKind,
    slot: usize,
}

#[derive(Debug)]
enum Mode {
    Raw { exprs: Vec<CExpr>, tag_only: Vec<bool> },
    Agg { calls: Vec<CallSpec>, outs: Vec<AggOut> },
    RawTransform { outs: Vec<RawTransform> },
}

struct Plan {
    measurement: String,
    columns: Vec<String>,
    scan_fields: Vec<String>,
    slots: Vec<SlotSrc>,
    cond: Option<CExpr>,
    tag_pred: TagPredicate,
    /// Tag condition the index cannot answer, evaluated per series over `tag_filter_slots`.
    tag_filter: Option<(CExpr, Vec<String>)>,
    group_tags: Vec<String>,
    mode: Mode,
}

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
    for m in measurements {
        let plan = plan_measurement(ctx, &db, &m, stmt, rest.as_ref())?;
        let Some(plan) = plan else { continue };
        let mut series = run_plan(ctx, source, &db, &plan, stmt, range, windows.as_ref(), meter, None)?;
        out.append(&mut series);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.tags.cmp(&b.tags)));
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
                    row[0] = Value::String(tz.format(t));
                }
            }
        }
    }
    Ok(out)
}

/// Receives the series of a streamed statement in order, whole or in parts: `(series, more)`,
/// where `more` says further rows of the same series follow in the next call (which then
/// carries only rows in `values`). An error stops the statement (the caller's way to say
/// "the client went away").
pub(crate) type Emit<'e> = dyn FnMut(Series, bool) -> Result<(), QueryError> + 'e;

/// Rows per part when a series is streamed in parts.
pub const STREAM_PART_ROWS: usize = 1024;

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
    for m in resolve_measurements(ctx, &db, &stmt.sources)? {
        plans.extend(plan_measurement(ctx, &db, &m, stmt, rest.as_ref())?);
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
                let k: GroupKey =
                    plan.group_tags.iter().map(|t| key.tag(t).unwrap_or("").to_owned()).collect();
                // Ids arrive ascending, so each set's list stays ascending as the cursors want.
                by_set.entry(k).or_default().push(id);
            }
            by_set.into_iter().map(|(k, ids)| Some((k, ids))).collect()
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
                            row[0] = Value::String(tz.format(t));
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

/// True when a series key passes the tag condition the index cannot answer.
fn tag_filter_ok(plan: &Plan, key: &strata_engine::SeriesKey) -> bool {
    match &plan.tag_filter {
        None => true,
        Some((e, names)) => {
            let slots: Vec<V<'_>> = names.iter().map(|n| V::S(key.tag(n).unwrap_or(""))).collect();
            e.test(&slots)
        }
    }
}

/// Rows a series' cursor produces per refill while its tag set is merged: small, since every
/// series of the set holds this many rows at once, yet enough to make the per-refill setup
/// (two small vectors) negligible per row.
const ROWS_PER_FILL: usize = 64;

/// A raw `SELECT` over one tag set, streamed: the rows of its series are merged by time (a
/// k-way merge over one [`SeriesRows`] per series) and handed on in parts of
/// [`STREAM_PART_ROWS`] as they are produced. Held at once: per series, one decoded cluster
/// per column ([`strata_engine::SeriesCursor`]) and up to [`ROWS_PER_FILL`] rows; plus the
/// part being filled. `ORDER BY time DESC` reads the cursors backwards, so it streams too.
///
/// Ties keep the materialised answer's order: rows of equal time in the series-key order
/// (as text), reversed with the rows for `ORDER BY time DESC`.
struct RawMerge<'p> {
    plan: &'p Plan,
    stmt: &'p SelectStatement,
    exprs: &'p [CExpr],
    tag_only: &'p [bool],
    tz: &'p TimeZone,
}

impl RawMerge<'_> {
    /// `slimit`: (series still to skip, series still to send) of the statement.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        source: &dyn SeriesSource,
        db: &str,
        range: crate::condition::TimeRange,
        meter: &mut Meter,
        key: &GroupKey,
        ids: &[SeriesId],
        slimit: (&mut u64, &mut u64),
        emit: &mut Emit<'_>,
    ) -> Result<(), QueryError> {
        let (plan, stmt) = (self.plan, self.stmt);
        let (min, max) = (range.min.unwrap_or(i64::MIN), range.max.unwrap_or(i64::MAX));
        if min > max || plan.scan_fields.is_empty() {
            return Ok(());
        }
        let offset = stmt.offset;
        let end = offset.saturating_add(stmt.limit.unwrap_or(u64::MAX));
        if end == offset {
            // LIMIT 0 keeps no row, so there is nothing to read.
            return Ok(());
        }
        let field_refs: Vec<&str> = plan.scan_fields.iter().map(String::as_str).collect();
        let req = ScanRequest {
            db,
            measurement: &plan.measurement,
            predicate: &plan.tag_pred,
            fields: Some(&field_refs),
            range: EngineRange::inclusive(min, max),
        };
        let desc = stmt.order_desc;
        let mut series = Vec::new();
        for c in source.cursors(&req, ids, desc)? {
            meter.add_series()?;
            series.push(SeriesRows::new(c, plan));
        }
        series.sort_by_cached_key(|s| s.cursor.key.to_string());
        // Min-heap of (time, rank) in output order: for DESC both are complemented, which
        // reverses their order without overflow.
        let order = |t: i64, i: usize| if desc { (!t, !(i as u64)) } else { (t, i as u64) };
        let mut heap = BinaryHeap::with_capacity(series.len());
        let mut read = 0u64;
        for (i, s) in series.iter_mut().enumerate() {
            s.fill(self, desc, meter, &mut read)?;
            if let Some((t, ..)) = s.buf.front() {
                heap.push(Reverse((order(*t, i), i)));
            }
        }
        let (skip_series, left_series) = slimit;
        // Rows kept so far (all-null rows are never produced), whether a part was sent.
        let (mut kept, mut sent_any) = (0u64, false);
        let mut part: Vec<Vec<Value>> = Vec::new();
        // Bytes of `part`, charged to the meter until it is handed on.
        let mut part_bytes = 0u64;
        while let Some(Reverse((_, i))) = heap.pop() {
            let s = &mut series[i];
            let (t, mut row, mut bytes) = s.buf.pop_front().expect("a series is in the heap only with a row");
            if s.buf.is_empty() {
                s.fill(self, desc, meter, &mut read)?;
            }
            if let Some((nt, ..)) = s.buf.front() {
                heap.push(Reverse((order(*nt, i), i)));
            }
            kept += 1;
            if kept <= offset {
                // Charged by `fill` while buffered; a row that joins the part stays charged.
                meter.release(bytes);
                continue;
            }
            if kept == offset + 1 {
                // The tag set has a row: SOFFSET and SLIMIT count it.
                if *skip_series > 0 {
                    *skip_series -= 1;
                    return Ok(());
                }
                *left_series -= 1;
            }
            meter.add_rows(1)?;
            if !self.tz.is_utc() {
                let time = Value::String(self.tz.format(t));
                meter.add_memory(value_bytes(&time))?;
                bytes += value_bytes(&time);
                row[0] = time;
            }
            part_bytes += bytes;
            part.push(row);
            if kept >= end {
                break;
            }
            if part.len() >= STREAM_PART_ROWS {
                let values = std::mem::take(&mut part);
                emit(self.head(key, values, sent_any), true)?;
                sent_any = true;
                meter.release(part_bytes);
                part_bytes = 0;
            }
        }
        if !part.is_empty() || sent_any {
            emit(self.head(key, part, sent_any), false)?;
        }
        Ok(())
    }

    /// The series with `values`; a continuation part carries only its rows.
    fn head(&self, key: &GroupKey, values: Vec<Vec<Value>>, continued: bool) -> Series {
        if continued {
            return Series { values, ..Series::default() };
        }
        let mut columns = Vec::with_capacity(self.plan.columns.len() + 1);
        columns.push("time".to_owned());
        columns.extend(self.plan.columns.iter().cloned());
        let tags = if self.stmt.group_by.tags.is_empty() {
            None
        } else {
            Some(self.plan.group_tags.iter().cloned().zip(key.iter().cloned()).collect())
        };
        Series { name: self.plan.measurement.clone(), tags, columns, values }
    }
}

/// The raw rows of one series, produced a few at a time from its cursor: the pull form of
/// [`for_each_row`] (same rows, same condition, all-null rows dropped), in ascending or (with
/// a descending cursor) descending time order.
struct SeriesRows {
    cursor: strata_engine::SeriesCursor,
    /// Per scan field: the cursor column holding it.
    col_of_field: Vec<Option<usize>>,
    /// Per cursor column: its current piece (`None` once it has no more) and the position in it.
    pieces: Vec<Option<(Vec<i64>, strata_engine::Values)>>,
    pos: Vec<usize>,
    /// Rows produced and not yet taken: (time, row with `Value::Time` first, the bytes it was
    /// charged).
    buf: VecDeque<(i64, Vec<Value>, u64)>,
    done: bool,
}

impl SeriesRows {
    fn new(cursor: strata_engine::SeriesCursor, plan: &Plan) -> SeriesRows {
        let col_of_field =
            plan.scan_fields.iter().map(|f| cursor.columns.iter().position(|c| &*c.field == f)).collect();
        let n = cursor.columns.len();
        SeriesRows {
            cursor,
            col_of_field,
            pieces: (0..n).map(|_| None).collect(),
            pos: vec![0; n],
            buf: VecDeque::new(),
            done: false,
        }
    }

    /// Produces up to [`ROWS_PER_FILL`] more rows into `buf` (fewer only at the end). `read`
    /// counts the rows read by every series of the merge, for the deadline check (a condition
    /// that drops most rows may read a whole series in one call).
    fn fill(
        &mut self,
        m: &RawMerge<'_>,
        desc: bool,
        meter: &mut Meter,
        read: &mut u64,
    ) -> Result<(), QueryError> {
        let plan = m.plan;
        while !self.done && self.buf.len() < ROWS_PER_FILL {
            // Every column gets a piece with rows left, or none when it has no more.
            for (c, col) in self.cursor.columns.iter_mut().enumerate() {
                let exhausted = self.pieces[c].as_ref().is_none_or(|(ts, _)| self.pos[c] >= ts.len());
                if exhausted {
                    self.pieces[c] = match col.next_piece()? {
                        Some(Piece::Data { timestamps, values }) => Some((timestamps, values)),
                        // Cursors are never asked to summarise.
                        Some(Piece::Summary(_)) | None => None,
                    };
                    self.pos[c] = 0;
                }
            }
            // Rows until a column's piece runs out (it must be refilled before its next time
            // can be compared) or enough are buffered.
            let cols: Vec<Option<(&[i64], Col<'_>)>> = self
                .pieces
                .iter()
                .map(|p| p.as_ref().map(|(ts, v)| (&ts[..], Col::from_values(v))))
                .collect();
            let key = &self.cursor.key;
            let mut slots: Vec<V<'_>> = plan
                .slots
                .iter()
                .map(|src| match src {
                    SlotSrc::Tag(k) => V::S(key.tag(k).unwrap_or("")),
                    SlotSrc::Field(_) => V::Null,
                })
                .collect();
            let pos = &mut self.pos;
            loop {
                let mut next: Option<i64> = None;
                for (c, col) in cols.iter().enumerate() {
                    if let Some((ts, _)) = col {
                        let t = ts[pos[c]];
                        let better = match next {
                            None => true,
                            Some(n) => (desc && t > n) || (!desc && t < n),
                        };
                        if better {
                            next = Some(t);
                        }
                    }
                }
                let Some(t) = next else {
                    self.done = true;
                    break;
                };
                for (k, src) in plan.slots.iter().enumerate() {
                    if let SlotSrc::Field(fi) = src {
                        slots[k] = V::Null;
                        if let Some(c) = self.col_of_field[*fi] {
                            if let Some((ts, vals)) = cols[c] {
                                if ts[pos[c]] == t {
                                    slots[k] = vals.get(pos[c]);
                                }
                            }
                        }
                    }
                }
                let mut ran_out = false;
                for (c, col) in cols.iter().enumerate() {
                    if let Some((ts, _)) = col {
                        if ts[pos[c]] == t {
                            pos[c] += 1;
                            ran_out |= pos[c] == ts.len();
                        }
                    }
                }
                *read += 1;
                if read.is_multiple_of(65_536) {
                    meter.check_time()?;
                }
                let pass = plan.cond.as_ref().is_none_or(|cond| cond.test(&slots));
                if pass {
                    meter.add_points(1)?;
                    let mut all_null = true;
                    let mut row = Vec::with_capacity(m.exprs.len() + 1);
                    row.push(Value::Time(t));
                    for (e, tag) in m.exprs.iter().zip(m.tag_only) {
                        let v = e.eval(&slots);
                        if !*tag && v != V::Null {
                            all_null = false;
                        }
                        row.push(v.to_value());
                    }
                    if !all_null {
                        let bytes = row_bytes(&row);
                        meter.add_memory(bytes)?;
                        self.buf.push_back((t, row, bytes));
                    }
                }
                if ran_out || self.buf.len() >= ROWS_PER_FILL {
                    break;
                }
            }
        }
        Ok(())
    }
}

fn field_type_ok(dt: Option<DataType>, ty: FieldType) -> bool {
    match dt {
        None | Some(DataType::Field) => true,
        Some(DataType::Float) => ty == FieldType::F64,
        Some(DataType::Integer) => ty == FieldType::I64,
        Some(DataType::Unsigned) => ty == FieldType::U64,
        Some(DataType::String) => ty == FieldType::Str,
        Some(DataType::Boolean) => ty == FieldType::Bool,
        Some(DataType::Tag) => false,
    }
}

/// Expands `*` fields and `f(*)` calls against the measurement's schema.
fn expand_fields(
    stmt: &SelectStatement,
    fields: &[(String, FieldType)],
    tags: &[String],
    group_tags: &[String],
) -> Vec<Field> {
    let mut out = Vec::new();
    for f in &stmt.fields {
        match &f.expr {
            Expr::Wildcard(kind) => {
                let mut names: Vec<(String, Option<DataType>)> = Vec::new();
                if *kind != WildcardKind::Tags {
                    names.extend(fields.iter().map(|(n, _)| (n.clone(), Some(DataType::Field))));
                }
                if *kind != WildcardKind::Fields {
                    names.extend(
                        tags.iter()
                            .filter(|t| !group_tags.contains(t) && !fields.iter().any(|(n, _)| n == *t))
                            .map(|t| (t.clone(), Some(DataType::Tag))),
                    );
                }
                names.sort_by(|a, b| a.0.cmp(&b.0));
                for (name, dt) in names {
                    out.push(Field { expr: Expr::VarRef { name, data_type: dt }, alias: None });
                }
            }
            Expr::Call { name, args }
                if matches!(args.first(), Some(Expr::Wildcard(_)) | Some(Expr::Regex(_))) =>
            {
                let kind = AggKind::from_name(name);
                for (fname, ty) in fields {
                    if let Some(Expr::Regex(re)) = args.first() {
                        if !re.is_match(fname) {
                            continue;
                        }
                    }
                    if kind.is_some_and(|k| !k.accepts(*ty)) {
                        continue;
                    }
                    let mut new_args = args.clone();
                    new_args[0] = Expr::VarRef { name: fname.clone(), data_type: None };
                    let alias = Some(format!("{}_{fname}", f.alias.as_deref().unwrap_or(name)));
                    out.push(Field { expr: Expr::Call { name: name.clone(), args: new_args }, alias });
                }
            }
            _ => out.push(f.clone()),
        }
    }
    out
}

fn has_call(e: &Expr) -> bool {
    let mut found = false;
    e.walk(&mut |x| found |= matches!(x, Expr::Call { .. }));
    found
}

fn plan_measurement(
    ctx: &QueryContext<'_>,
    db: &str,
    measurement: &str,
    stmt: &SelectStatement,
    rest: Option<&Expr>,
) -> Result<Option<Plan>, QueryError> {
    let fields = ctx.engine.field_keys(db, measurement)?;
    let tags = ctx.engine.tag_keys(db, measurement)?;
    let is_field = |n: &str| fields.iter().any(|(f, _)| f == n);
    let is_tag = |n: &str| tags.iter().any(|t| t == n) && !is_field(n);

    // GROUP BY tags.
    let mut group_tags: Vec<String> = Vec::new();
    for d in &stmt.group_by.tags {
        match d {
            TagDimension::Name(n) => {
                if !group_tags.contains(n) {
                    group_tags.push(n.clone())
                }
            }
            TagDimension::Wildcard => {
                for t in &tags {
                    if !group_tags.contains(t) {
                        group_tags.push(t.clone())
                    }
                }
            }
            TagDimension::Regex(re) => {
                for t in tags.iter().filter(|t| re.is_match(t)) {
                    if !group_tags.contains(t) {
                        group_tags.push(t.clone())
                    }
                }
            }
        }
    }
    group_tags.sort();

    let expanded = expand_fields(stmt, &fields, &tags, &group_tags);
    if expanded.is_empty() {
        return Ok(None);
    }
    let columns = SelectStatement { fields: expanded.clone(), ..Default::default() }.column_names();

    let mut scan_fields: Vec<String> = Vec::new();
    let mut slots: Vec<SlotSrc> = Vec::new();
    let slot_of =
        |name: &str, dt: Option<DataType>, slots: &mut Vec<SlotSrc>, scan_fields: &mut Vec<String>| {
            let src = if dt == Some(DataType::Tag) || (dt.is_none() && is_tag(name)) {
                SlotSrc::Tag(name.to_owned())
            } else if let Some((_, ty)) = fields.iter().find(|(f, _)| f == name) {
                if !field_type_ok(dt, *ty) {
                    return None;
                }
                let i = scan_fields.iter().position(|f| f == name).unwrap_or_else(|| {
                    scan_fields.push(name.to_owned());
                    scan_fields.len() - 1
                });
                SlotSrc::Field(i)
            } else {
                return None;
            };
            Some(slots.iter().position(|s| *s == src).unwrap_or_else(|| {
                slots.push(src);
                slots.len() - 1
            }))
        };

    // Conditions.
    let split = rest.map(|c| split_tag_condition(c, |n| is_tag(n)));
    let (tag_cond, field_cond) = split.map(|s| (s.tags, s.fields)).unwrap_or((None, None));
    let (tag_pred, tag_filter) = match &tag_cond {
        None => (TagPredicate::All, None),
        Some(c) => match to_tag_predicate(c) {
            Some(p) => (p, None),
            None => {
                let mut names: Vec<String> = Vec::new();
                let e = compile(c, &mut |x| match x {
                    Expr::VarRef { name, .. } => {
                        Some(names.iter().position(|n| n == name).unwrap_or_else(|| {
                            names.push(name.clone());
                            names.len() - 1
                        }))
                    }
                    _ => None,
                });
                (TagPredicate::All, Some((e, names)))
            }
        },
    };

    let any_call = expanded.iter().any(|f| has_call(&f.expr));
    let all_call = expanded
        .iter()
        .all(|f| has_call(&f.expr) || matches!(f.expr.strip_parens(), Expr::Number(_) | Expr::Integer(_)));
    if any_call && !all_call {
        return Err(QueryError::MixedAggregate);
    }

    let mode = if !any_call {
        if stmt.group_by.time.is_some() {
            return Err(QueryError::Invalid("GROUP BY requires at least one aggregate function".into()));
        }
        let mut exprs = Vec::new();
        let mut tag_only = Vec::new();
        for f in &expanded {
            let mut only_tags = true;
            let mut any_var = false;
            let e = compile(&f.expr, &mut |x| match x {
                Expr::VarRef { name, data_type } => {
                    any_var = true;
                    let s = slot_of(name, *data_type, &mut slots, &mut scan_fields);
                    if let Some(s) = s {
                        if !matches!(slots[s], SlotSrc::Tag(_)) {
                            only_tags = false;
                        }
                    }
                    s
                }
                _ => None,
            });
            exprs.push(e);
            tag_only.push(only_tags && any_var);
        }
        if tag_only.iter().all(|t| *t) {
            return Err(QueryError::NoFields);
        }
        Mode::Raw { exprs, tag_only }
    } else {
        // Top-level transformations?
        let is_transform = |e: &Expr| matches!(e.strip_parens(), Expr::Call { name, .. } if TKind::from_name(name).is_some());
        let n_trans = expanded.iter().filter(|f| is_transform(&f.expr)).count();
        let raw_transform = n_trans > 0
            && expanded.iter().all(|f| match f.expr.strip_parens() {
                Expr::Call { name, args } if TKind::from_name(name).is_some() => {
                    matches!(args.first().map(Expr::strip_parens), Some(Expr::VarRef { .. }))
                }
                _ => false,
            });
        if raw_transform {
            if stmt.group_by.time.is_some() {
                let name = match expanded[0].expr.strip_parens() {
                    Expr::Call { name, .. } => name.clone(),
                    _ => String::new(),
                };
                return Err(QueryError::invalid_call(&name, "aggregate function required inside the call"));
            }
            let mut outs = Vec::new();
            for f in &expanded {
                let Expr::Call { name, args } = f.expr.strip_parens() else { unreachable!("checked above") };
                let Some(Expr::VarRef { name: v, data_type }) = args.first().map(Expr::strip_parens) else {
                    unreachable!("checked above")
                };
                let kind = TKind::parse(name, args.get(1), None)?;
                let Some(slot) = slot_of(v, *data_type, &mut slots, &mut scan_fields) else {
                    continue;
                };
                outs.push(RawTransform { kind, slot });
            }
            if outs.is_empty() {
                return Ok(None);
            }
            Mode::RawTransform { outs }
        } else {
            let mut calls: Vec<CallSpec> = Vec::new();
            let mut outs = Vec::new();
            let mut err: Option<QueryError> = None;
            let mut add_call = |name: &str,
                                args: &[Expr],
                                slots: &mut Vec<SlotSrc>,
                                scan_fields: &mut Vec<String>,
                                err: &mut Option<QueryError>|
             -> Option<usize> {
                let Some(mut kind) = AggKind::from_name(name) else {
                    *err = Some(QueryError::Unsupported { what: format!("{name}()") });
                    return None;
                };
                if let AggKind::Percentile(_) = kind {
                    let p = match args.get(1).map(Expr::strip_parens) {
                        Some(Expr::Integer(i)) => *i as f64,
                        Some(Expr::Number(f)) => *f,
                        _ => {
                            *err = Some(QueryError::invalid_call(
                                name,
                                "expected float argument in percentile()",
                            ));
                            return None;
                        }
                    };
                    kind = AggKind::Percentile(p);
                }
                if let AggKind::Integral { .. } = kind {
                    match args.get(1).map(Expr::strip_parens) {
                        None => {}
                        Some(Expr::Duration(d)) if *d > 0 => kind = AggKind::Integral { unit: *d },
                        Some(other) => {
                            *err = Some(QueryError::invalid_call(
                                name,
                                format!("second argument must be a duration, got {other}"),
                            ));
                            return None;
                        }
                    }
                }
                let (v, dt) = match args.first().map(Expr::strip_parens) {
                    Some(Expr::VarRef { name, data_type }) => (name.as_str(), *data_type),
                    // count(distinct(f)): the parser allows no other nesting of aggregates.
                    Some(Expr::Call { name: inner, args: inner_args })
                        if name == "count" && inner == "distinct" =>
                    {
                        kind = AggKind::CountDistinct;
                        match inner_args.first().map(Expr::strip_parens) {
                            Some(Expr::VarRef { name, data_type }) => (name.as_str(), *data_type),
                            _ => {
                                *err = Some(QueryError::invalid_call(inner, "expected field argument"));
                                return None;
                            }
                        }
                    }
                    Some(Expr::Call { .. }) => {
                        *err = Some(QueryError::invalid_call(name, "expected field argument, got a call"));
                        return None;
                    }
                    _ => {
                        *err = Some(QueryError::invalid_call(name, "expected field argument"));
                        return None;
                    }
                };
                let slot = slot_of(v, dt, slots, scan_fields)?;
                let SlotSrc::Field(field) = slots[slot] else { return None };
                calls.push(CallSpec { kind, field, slot });
                Some(calls.len() - 1)
            };
            for f in &expanded {
                match f.expr.strip_parens() {
                    Expr::Call { name, args } if TKind::from_name(name).is_some() => {
                        if stmt.group_by.time.is_none() {
                            return Err(QueryError::invalid_call(
                                name,
                                "aggregate function required inside the call needs GROUP BY time",
                            ));
                        }
                        let kind =
                            TKind::parse(name, args.get(1), stmt.group_by.time.map(|t| t.interval_ns))?;
                        let Some(Expr::Call { name: inner, args: inner_args }) =
                            args.first().map(Expr::strip_parens)
                        else {
                            return Err(QueryError::invalid_call(
                                name,
                                "expected an aggregate call as argument",
                            ));
                        };
                        match add_call(inner, inner_args, &mut slots, &mut scan_fields, &mut err) {
                            Some(call) => outs.push(AggOut::Transform { kind, call }),
                            None => outs.push(AggOut::Expr(CExpr::Const(Value::Null))),
                        }
                    }
                    e => {
                        let compiled = compile(e, &mut |x| match x {
                            Expr::Call { name, args } => {
                                if TKind::from_name(name).is_some() {
                                    err = Some(QueryError::Unsupported {
                                        what: format!("{name}() inside an expression"),
                                    });
                                    return None;
                                }
                                add_call(name, args, &mut slots, &mut scan_fields, &mut err)
                            }
                            _ => None,
                        });
                        outs.push(AggOut::Expr(compiled));
                    }
                }
                if let Some(e) = err.take() {
                    return Err(e);
                }
            }
            // distinct() yields several rows per bucket: nothing can share them (InfluxDB's rule).
            let has_distinct = calls.iter().any(|c| c.kind == AggKind::Distinct);
            if has_distinct && !(outs.len() == 1 && matches!(outs[0], AggOut::Expr(CExpr::Slot(_)))) {
                return Err(QueryError::Invalid(
                    "aggregate function distinct() cannot be combined with other functions or fields".into(),
                ));
            }
            Mode::Agg { calls, outs }
        }
    };

    let cond = field_cond.as_ref().map(|c| {
        compile(c, &mut |x| match x {
            Expr::VarRef { name, data_type } => slot_of(name, *data_type, &mut slots, &mut scan_fields),
            _ => None,
        })
    });
    Ok(Some(Plan {
        measurement: measurement.to_owned(),
        columns,
        scan_fields,
        slots,
        cond,
        tag_pred,
        tag_filter,
        group_tags,
        mode,
    }))
}

/// Converts a tag condition to an index predicate, if it only uses what the index answers.
pub fn to_tag_predicate(e: &Expr) -> Option<TagPredicate> {
    match e.strip_parens() {
        Expr::Binary { op: BinaryOp::And, lhs, rhs } => {
            Some(TagPredicate::and(to_tag_predicate(lhs)?, to_tag_predicate(rhs)?))
        }
        Expr::Binary { op: BinaryOp::Or, lhs, rhs } => {
            Some(TagPredicate::or(to_tag_predicate(lhs)?, to_tag_predicate(rhs)?))
        }
        Expr::Bool(true) => Some(TagPredicate::All),
        Expr::Binary { op, lhs, rhs } => {
            let (name, other) = match (lhs.strip_parens(), rhs.strip_parens()) {
                (Expr::VarRef { name, .. }, o) => (name.clone(), o),
                (o, Expr::VarRef { name, .. }) if matches!(op, BinaryOp::Eq | BinaryOp::Neq) => {
                    (name.clone(), o)
                }
                _ => return None,
            };
            match (op, other) {
                (BinaryOp::Eq, Expr::String(v)) => Some(TagPredicate::Eq(name, v.clone())),
                (BinaryOp::Neq, Expr::String(v)) => Some(TagPredicate::NotEq(name, v.clone())),
                (BinaryOp::EqRegex, Expr::Regex(re)) => Some(TagPredicate::Regex(name, re.regex().clone())),
                (BinaryOp::NeqRegex, Expr::Regex(re)) => {
                    Some(TagPredicate::NotRegex(name, re.regex().clone()))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// A cursor over one column's pieces (data only).
struct ColCursor<'a> {
    pieces: &'a [Piece],
    p: usize,
    i: usize,
}

impl<'a> ColCursor<'a> {
    fn peek(&mut self) -> Option<i64> {
        while self.p < self.pieces.len() {
            match &self.pieces[self.p] {
                Piece::Data { timestamps, .. } if self.i < timestamps.len() => {
                    return Some(timestamps[self.i])
                }
                _ => {
                    self.p += 1;
                    self.i = 0;
                }
            }
        }
        None
    }

    fn take(&mut self) -> V<'a> {
        let pieces = self.pieces;
        let v = match &pieces[self.p] {
            Piece::Data { values, .. } => Col::from_values(values).get(self.i),
            Piece::Summary(_) => V::Null,
        };
        self.i += 1;
        v
    }
}

/// Iterates the rows of one series (the union of its columns' timestamps), filling
/// `slots` and calling `f(time, slots)` for rows passing `cond`.
fn for_each_row<'a>(
    s: &'a SeriesPieces,
    plan: &'a Plan,
    meter: &mut Meter,
    f: &mut RowFn<'a, '_>,
) -> Result<(), QueryError> {
    // Column index per scan field.
    let mut cursors: Vec<Option<ColCursor<'a>>> = plan
        .scan_fields
        .iter()
        .map(|f| {
            s.columns.iter().find(|c| &*c.field == f).map(|c| ColCursor { pieces: &c.pieces, p: 0, i: 0 })
        })
        .collect();
    let mut slots: Vec<V<'a>> = plan
        .slots
        .iter()
        .map(|src| match src {
            SlotSrc::Tag(k) => V::S(s.key.tag(k).unwrap_or("")),
            SlotSrc::Field(_) => V::Null,
        })
        .collect();
    let mut rows = 0u64;
    loop {
        let mut t = i64::MAX;
        let mut any = false;
        for c in cursors.iter_mut().flatten() {
            if let Some(ts) = c.peek() {
                any = true;
                t = t.min(ts);
            }
        }
        if !any {
            break;
        }
        for (k, src) in plan.slots.iter().enumerate() {
            if let SlotSrc::Field(fi) = src {
                slots[k] = V::Null;
                if let Some(c) = cursors[*fi].as_mut() {
                    if c.peek() == Some(t) {
                        slots[k] = c.take();
                    }
                }
            }
        }
        // Fields not in any slot still need advancing.
        for c in cursors.iter_mut().flatten() {
            if c.peek() == Some(t) {
                c.take();
            }
        }
        rows += 1;
        if rows.is_multiple_of(65_536) {
            meter.check_time()?;
        }
        if let Some(cond) = &plan.cond {
            if !cond.test(&slots) {
                continue;
            }
        }
        f(t, &slots, meter)?;
    }
    Ok(())
}

type GroupKey = Vec<String>;

/// Called per row: time, slots, meter.
type RowFn<'a, 'f> = dyn FnMut(i64, &[V<'a>], &mut Meter) -> Result<(), QueryError> + 'f;

/// Per output column: (time, series ordinal, value) of a raw transformation's input.
type RawColumns = Vec<Vec<(i64, u32, Value)>>;

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
    let is_agg = matches!(plan.mode, Mode::Agg { .. });
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
    let bucket_of = |t: i64| windows.map_or(0, |w| w.start(t));

    let group_key = |s: &SeriesPieces| -> GroupKey {
        plan.group_tags.iter().map(|k| s.key.tag(k).unwrap_or("").to_owned()).collect()
    };
    let tag_ok = |s: &SeriesPieces| match &plan.tag_filter {
        None => true,
        Some((e, names)) => {
            let slots: Vec<V<'_>> = names.iter().map(|n| V::S(s.key.tag(n).unwrap_or(""))).collect();
            e.test(&slots)
        }
    };
    let mut failure: Option<QueryError> = None;

    match &plan.mode {
        Mode::Agg { calls, outs } => {
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
            // Reads some of the series (ascending ids) into per-group, per-bucket accumulators.
            let scan_range = |ids: &[SeriesId],
                              range: EngineRange,
                              meter: &mut Meter|
             -> Result<AggGroups, QueryError> {
                let req = ScanRequest { range, ..req };
                let opts = ScanOptions {
                    summarize: if can_summarize { Some(&summarize) } else { None },
                    series: Some(ids),
                };
                let mut groups: AggGroups = HashMap::new();
                let mut failure: Option<QueryError> = None;
                source.scan(&req, &opts, &mut |s| {
                    let r = (|| -> Result<(), QueryError> {
                        meter.add_series()?;
                        let key = group_key(&s);
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
                                        let selectors = calls
                                            .iter()
                                            .filter(|c| c.field == fi && c.kind.is_selector())
                                            .count()
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
                                                let mut bytes = selectors
                                                    * run.iter().map(String::len).max().unwrap_or(0) as u64;
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
                Some(ranges) => run_time_split(&ids, meter, &ranges, &scan_range)?,
                None => run_split(ctx, &ids, meter, &scan_part, merge_agg_groups)?,
            };
            finish_agg(plan, stmt, groups, calls, outs, range, max, windows, single_selector_time, meter)
        }
        Mode::Raw { exprs, tag_only } => {
            let mut groups: HashMap<GroupKey, Vec<(i64, u32, Vec<Value>)>> = HashMap::new();
            let mut keys: Vec<String> = Vec::new();
            source.scan(&req, &ScanOptions { summarize: None, series: only }, &mut |s| {
                let r = (|| -> Result<(), QueryError> {
                    meter.add_series()?;
                    if !tag_ok(&s) {
                        return Ok(());
                    }
                    let ord = keys.len() as u32;
                    keys.push(s.key.to_string());
                    let rows = groups.entry(group_key(&s)).or_default();
                    for_each_row(&s, plan, meter, &mut |t, slots, meter| {
                        meter.add_points(1)?;
                        let mut all_null = true;
                        let mut row = Vec::with_capacity(exprs.len() + 1);
                        row.push(Value::Time(t));
                        for (e, tag) in exprs.iter().zip(tag_only) {
                            let v = e.eval(slots);
                            if !*tag && v != V::Null {
                                all_null = false;
                            }
                            row.push(v.to_value());
                        }
                        if !all_null {
                            meter.add_memory(row_bytes(&row) + 16)?;
                            meter.add_rows(1)?;
                            rows.push((t, ord, row));
                        }
                        Ok(())
                    })
                })();
                stop_on_error(r, &mut failure)
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            let mut out = Vec::new();
            for (key, mut rows) in groups {
                if rows.is_empty() {
                    continue;
                }
                rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| keys[a.1 as usize].cmp(&keys[b.1 as usize])));
                let values = rows.into_iter().map(|r| r.2).collect();
                out.extend(make_series(plan, stmt, key, values));
            }
            Ok(out)
        }
        Mode::RawTransform { outs } => {
            let mut groups: HashMap<GroupKey, RawColumns> = HashMap::new();
            let mut keys: Vec<String> = Vec::new();
            source.scan(&req, &ScanOptions::default(), &mut |s| {
                let r = (|| -> Result<(), QueryError> {
                    meter.add_series()?;
                    if !tag_ok(&s) {
                        return Ok(());
                    }
                    let ord = keys.len() as u32;
                    keys.push(s.key.to_string());
                    let cols = groups
                        .entry(group_key(&s))
                        .or_insert_with(|| outs.iter().map(|_| Vec::new()).collect());
                    for_each_row(&s, plan, meter, &mut |t, slots, meter| {
                        meter.add_points(1)?;
                        for (o, col) in outs.iter().zip(cols.iter_mut()) {
                            let v = slots[o.slot];
                            if v != V::Null {
                                let v = v.to_value();
                                meter.add_memory(16 + value_bytes(&v))?;
                                col.push((t, ord, v));
                            }
                        }
                        Ok(())
                    })
                })();
                stop_on_error(r, &mut failure)
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            let mut out = Vec::new();
            for (key, cols) in groups {
                let seqs: Vec<Vec<(i64, Value)>> = cols
                    .into_iter()
                    .zip(outs)
                    .map(|(mut c, o)| {
                        c.sort_by(|a, b| {
                            a.0.cmp(&b.0).then_with(|| keys[a.1 as usize].cmp(&keys[b.1 as usize]))
                        });
                        apply_transform(o.kind, c.into_iter().map(|(t, _, v)| (t, v)).collect())
                    })
                    .collect();
                let rows = merge_columns(seqs);
                meter.add_rows(rows.len() as u64)?;
                out.extend(make_series(plan, stmt, key, rows));
            }
            Ok(out)
        }
    }
}

/// Per tag group, per bucket start: one accumulator per call.
type AggGroups = HashMap<GroupKey, BTreeMap<i64, Vec<Acc>>>;

/// The accumulators of bucket `b`, made (and charged to `meter`: the map entry and one
/// [`Acc`] per call) when the bucket is new. A bucket is made per point at worst
/// (`GROUP BY time(1ns)`), so this is what holds memory when the points are many.
fn bucket_accs<'b>(
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

fn merge_agg_groups(into: &mut AggGroups, part: AggGroups) {
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

/// The series a plan reads: the index's answer to its tag predicate, minus those failing the
/// tag condition the index cannot answer (checked on the key, before any data is read).
fn matching_series(source: &dyn SeriesSource, db: &str, plan: &Plan) -> Result<Vec<SeriesId>, QueryError> {
    let series = source.series(db, &plan.measurement, &plan.tag_pred)?;
    Ok(series
        .into_iter()
        .filter(|(_, key)| match &plan.tag_filter {
            None => true,
            Some((e, names)) => {
                let slots: Vec<V<'_>> = names.iter().map(|n| V::S(key.tag(n).unwrap_or(""))).collect();
                e.test(&slots)
            }
        })
        .map(|(id, _)| id)
        .collect())
}

/// Reads some series (ascending ids) into a partial result.
type PartFn<'a, T> = dyn Fn(&[SeriesId], &mut Meter) -> Result<T, QueryError> + Sync + 'a;

/// Runs `part` over `ids`: on the calling thread, or, when the query reads at least
/// `ctx.parallel_min_series` series and there is more than one core, over contiguous slices
/// of them on rayon's pool (one slice per thread), each with its share of the limits
/// ([`Meter::split`]); the partial results are merged in slice order, so the answer does not
/// depend on thread timing.
fn run_split<T: Send>(
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

/// Reads the given series over one time range into per-group, per-bucket accumulators.
type RangePartFn<'a> =
    dyn Fn(&[SeriesId], EngineRange, &mut Meter) -> Result<AggGroups, QueryError> + Sync + 'a;

/// Where to cut `[min, max]` for reading `series` series on several threads by time: `None`
/// (read on one thread, or split by series) unless the query groups by time, reads fewer
/// series than the series split needs, its range is bounded and at least
/// `ctx.parallel_min_span_ns` long, and there is more than one core. The cuts are window
/// starts, so every window lies in exactly one range and the partial results merge without
/// combining any window's accumulators.
fn time_split(
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
fn run_time_split(
    ids: &[SeriesId],
    meter: &mut Meter,
    ranges: &[(i64, i64)],
    part: &RangePartFn<'_>,
) -> Result<AggGroups, QueryError> {
    let base: &Meter = meter;
    let n = ranges.len() as u64;
    let results: Vec<(Result<AggGroups, QueryError>, Meter)> = ranges
        .par_iter()
        .map(|&(a, b)| {
            let mut m = base.split_time(n);
            let r = part(ids, EngineRange::inclusive(a, b), &mut m);
            (r, m)
        })
        .collect();
    let mut out = AggGroups::new();
    for (i, (r, m)) in results.into_iter().enumerate() {
        meter.absorb_time_part(&m, i == 0)?;
        merge_agg_groups(&mut out, r?);
    }
    Ok(out)
}

/// Merges per-column `(time, value)` sequences (each ascending) into rows by time.
fn merge_columns(cols: Vec<Vec<(i64, Value)>>) -> Vec<Vec<Value>> {
    let mut idx = vec![0usize; cols.len()];
    let mut rows = Vec::new();
    loop {
        let t = cols.iter().zip(&idx).filter_map(|(c, &i)| c.get(i).map(|x| x.0)).min();
        let Some(t) = t else { break };
        let mut row = Vec::with_capacity(cols.len() + 1);
        row.push(Value::Time(t));
        for (c, i) in cols.iter().zip(idx.iter_mut()) {
            match c.get(*i) {
                Some((ct, v)) if *ct == t => {
                    row.push(v.clone());
                    *i += 1;
                }
                _ => row.push(Value::Null),
            }
        }
        rows.push(row);
    }
    rows
}

/// Builds an output series: ORDER BY, OFFSET, LIMIT; `None` when no row is left.
fn make_series(
    plan: &Plan,
    stmt: &SelectStatement,
    key: GroupKey,
    mut values: Vec<Vec<Value>>,
) -> Option<Series> {
    if stmt.order_desc {
        values.reverse();
    }
    let values: Vec<Vec<Value>> = values
        .into_iter()
        .skip(stmt.offset as usize)
        .take(stmt.limit.map_or(usize::MAX, |l| l as usize))
        .collect();
    if values.is_empty() {
        return None;
    }
    let mut columns = Vec::with_capacity(plan.columns.len() + 1);
    columns.push("time".to_owned());
    columns.extend(plan.columns.iter().cloned());
    let tags = if stmt.group_by.tags.is_empty() {
        None
    } else {
        Some(plan.group_tags.iter().cloned().zip(key).collect())
    };
    Some(Series { name: plan.measurement.clone(), tags, columns, values })
}

/// Bytes one bucket costs per group while [`finish_agg`] builds the group's rows, besides the
/// rows themselves: per call, its value (`BucketValues`) and its filled value; one `present`
/// flag.
fn bucket_temp_bytes(calls: usize) -> u64 {
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
fn finish_agg(
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
            filled.push(super::transform::fill(stmt.fill, spec.kind, c, meter)?);
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
fn integral_column(
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
fn distinct_rows(
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

/// Scan callbacks cannot return errors: keep the first one and stop the scan.
fn stop_on_error(r: Result<(), QueryError>, failure: &mut Option<QueryError>) -> ControlFlow<()> {
    match r {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            *failure = Some(e);
            ControlFlow::Break(())
        }
    }
}
