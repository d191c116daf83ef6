//! Raw `SELECT`s (one row per point) and raw transformations (`derivative(v)`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use strata_engine::{Piece, ScanOptions, ScanRequest, SeriesId, TimeRange as EngineRange};

use super::output::*;
use super::plan::*;
use super::rows::*;
use crate::ast::SelectStatement;
use crate::error::QueryError;
use crate::exec::agg::Col;
use crate::exec::eval::{CExpr, V};
use crate::exec::source::SeriesSource;
use crate::exec::transform::apply_transform;
use crate::exec::tz::TimeZone;
use crate::limits::{row_bytes, value_bytes, Meter};
use crate::result::{Series, Value};

/// Rows a series' cursor produces per refill while its tag set is merged: small, since every
/// series of the set holds this many rows at once, yet enough to make the per-refill setup
/// (two small vectors) negligible per row.
pub(super) const ROWS_PER_FILL: usize = 64;

/// A raw `SELECT` over one tag set, streamed: the rows of its series are merged by time (a
/// k-way merge over one [`SeriesRows`] per series) and handed on in parts of
/// [`STREAM_PART_ROWS`] as they are produced. Held at once: per series, one decoded cluster
/// per column ([`strata_engine::SeriesCursor`]) and up to [`ROWS_PER_FILL`] rows; plus the
/// part being filled. `ORDER BY time DESC` reads the cursors backwards, so it streams too.
///
/// Ties keep the materialised answer's order: rows of equal time in the series-key order
/// (as text), reversed with the rows for `ORDER BY time DESC`.
pub(super) struct RawMerge<'p> {
    pub(super) plan: &'p Plan,
    pub(super) stmt: &'p SelectStatement,
    pub(super) exprs: &'p [CExpr],
    pub(super) tag_only: &'p [bool],
    pub(super) tz: &'p TimeZone,
}

impl RawMerge<'_> {
    /// `slimit`: (series still to skip, series still to send) of the statement.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
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
                let time = self.tz.zoned(t);
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
    pub(super) fn head(&self, key: &GroupKey, values: Vec<Vec<Value>>, continued: bool) -> Series {
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

/// Per output column: (time, series ordinal, value) of a raw transformation's input.
pub(super) type RawColumns = Vec<Vec<(i64, u32, Value)>>;

/// Runs a raw plan over the series `only` names (all matching ones when `None`), materialised:
/// the rows of each group sorted by time, ties in series-key order.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    source: &dyn SeriesSource,
    plan: &Plan,
    stmt: &SelectStatement,
    req: &ScanRequest<'_>,
    meter: &mut Meter,
    exprs: &[CExpr],
    tag_only: &[bool],
    only: Option<&[SeriesId]>,
) -> Result<Vec<Series>, QueryError> {
    let mut failure: Option<QueryError> = None;

    let mut groups: HashMap<GroupKey, Vec<(i64, u32, Vec<Value>)>> = HashMap::new();
    let mut keys: Vec<String> = Vec::new();
    source.scan(req, &ScanOptions { summarize: None, series: only }, &mut |s| {
        let r = (|| -> Result<(), QueryError> {
            meter.add_series()?;
            if !tag_filter_ok(plan, &s.key) {
                return Ok(());
            }
            let ord = keys.len() as u32;
            keys.push(s.key.to_string());
            let rows = groups.entry(plan.group_key(&s.key)).or_default();
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
                    // A series without the tag has no value for it: null, as InfluxDB.
                    row.push(if *tag && v == V::S("") { Value::Null } else { v.to_value() });
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

/// Runs a raw transformation plan: each output column's points of a group in time order
/// (ties in series-key order) through its transformation, then merged into rows by time.
pub(super) fn run_transform(
    source: &dyn SeriesSource,
    plan: &Plan,
    stmt: &SelectStatement,
    req: &ScanRequest<'_>,
    meter: &mut Meter,
    outs: &[RawTransform],
) -> Result<Vec<Series>, QueryError> {
    let mut failure: Option<QueryError> = None;
    let mut groups: HashMap<GroupKey, RawColumns> = HashMap::new();
    let mut keys: Vec<String> = Vec::new();
    source.scan(req, &ScanOptions::default(), &mut |s| {
        let r = (|| -> Result<(), QueryError> {
            meter.add_series()?;
            if !tag_filter_ok(plan, &s.key) {
                return Ok(());
            }
            let ord = keys.len() as u32;
            keys.push(s.key.to_string());
            let cols = groups
                .entry(plan.group_key(&s.key))
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
                c.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| keys[a.1 as usize].cmp(&keys[b.1 as usize])));
                apply_transform(o.kind, c.into_iter().map(|(t, _, v)| (t, v)).collect())
            })
            .collect();
        let rows = merge_columns(seqs);
        meter.add_rows(rows.len() as u64)?;
        out.extend(make_series(plan, stmt, key, rows));
    }
    Ok(out)
}

/// The raw rows of one series, produced a few at a time from its cursor: the pull form of
/// [`for_each_row`] (same rows, same condition, all-null rows dropped), in ascending or (with
/// a descending cursor) descending time order.
pub(super) struct SeriesRows {
    pub(super) cursor: strata_engine::SeriesCursor,
    /// Per scan field: the cursor column holding it.
    pub(super) col_of_field: Vec<Option<usize>>,
    /// Per cursor column: its current piece (`None` once it has no more) and the position in it.
    pub(super) pieces: Vec<Option<(Vec<i64>, strata_engine::Values)>>,
    pub(super) pos: Vec<usize>,
    /// Rows produced and not yet taken: (time, row with `Value::Time` first, the bytes it was
    /// charged).
    pub(super) buf: VecDeque<(i64, Vec<Value>, u64)>,
    pub(super) done: bool,
}

impl SeriesRows {
    pub(super) fn new(cursor: strata_engine::SeriesCursor, plan: &Plan) -> SeriesRows {
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
    pub(super) fn fill(
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
                        // A series without the tag has no value for it: null, as InfluxDB.
                        row.push(if *tag && v == V::S("") { Value::Null } else { v.to_value() });
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
