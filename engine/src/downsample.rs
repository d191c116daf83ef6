//! Downsampling: rollups of a measurement into fixed time buckets, kept up to date as data
//! arrives, late data included.
//!
//! A [`DownsampleRule`] summarises every `interval` of a source measurement into a target
//! measurement (usually in another database with a longer retention policy: "keep raw data 7
//! days, 1-minute rollups a year"). Per series and bucket it writes one point with the source's
//! tags at the bucket start and, per numeric field `f`, the fields `f_count`, `f_sum`, `f_min`,
//! `f_max` and `f_mean` (all floats except the integer count). Boolean and string fields are
//! not rolled up.
//!
//! Incremental and crash-safe: every flush records, in the catalog and before its segments are
//! published, the time range it wrote for each rule's source (a *dirty range*). The
//! maintenance thread recomputes the buckets of the dirty ranges from the source (block
//! statistics answer whole blocks inside a bucket), writes the rollup points through the normal
//! write path (WAL, so they are durable before the ranges are marked clean) and then marks the
//! ranges clean. A crash in between recomputes the same buckets again, which rewrites identical
//! points (last write wins). A late point dirties only its own bucket. A `DELETE` on the source
//! deletes the covering rollup buckets and dirties them, so they are recomputed from what is
//! left.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use crate::catalog::DownsampleRule;
use crate::engine::{Engine, Inner};
use crate::error::LifecycleError;
use crate::index::TagPredicate;
use crate::model::{FieldValue, TimeRange, Values};
use crate::read::{Piece, ScanOptions, SummaryStats};
use crate::{ScanRequest, WriteBatch};

/// Points per write batch of rollup output.
const OUTPUT_BATCH: usize = 5_000;

/// Accumulated statistics of one field in one bucket.
#[derive(Debug, Clone, Copy)]
struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Acc {
    const EMPTY: Acc = Acc { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY };

    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn merge(&mut self, count: u64, sum: f64, min: f64, max: f64) {
        self.count += count;
        self.sum += sum;
        self.min = self.min.min(min);
        self.max = self.max.max(max);
    }
}

/// Start of the bucket of `ts` (floor division, so negative times work).
fn bucket(ts: i64, interval: i64) -> i64 {
    ts.div_euclid(interval).saturating_mul(interval)
}

impl Engine {
    /// Adds (or replaces) a downsampling rule on database `db`. The target database must exist.
    /// Existing data of the source is rolled up by the next maintenance pass (or
    /// [`Engine::run_downsampling`]).
    pub fn create_downsample_rule(&self, db: &str, rule: DownsampleRule) -> Result<(), LifecycleError> {
        let id = self
            .inner
            .catalog
            .db_id(db)
            .ok_or_else(|| LifecycleError::DatabaseNotFound { name: db.into() })?;
        let bad =
            |m: &str| Err(LifecycleError::InvalidPolicy(format!("downsampling rule {:?}: {m}", rule.name)));
        if rule.name.is_empty() || rule.name.len() > 64 {
            return bad("name must be 1 to 64 bytes");
        }
        if rule.interval <= 0 {
            return bad("interval must be positive");
        }
        if rule.source.is_empty() || rule.target.is_empty() {
            return bad("source and target measurements must be named");
        }
        if self.inner.catalog.db_id(&rule.target_db).is_none() {
            return Err(LifecycleError::DatabaseNotFound { name: rule.target_db.clone() });
        }
        if rule.target_db == db && rule.target == rule.source {
            return bad("target must differ from the source");
        }
        let _admin = self.inner.admin.lock();
        let name = rule.name.clone();
        self.inner.catalog.add_rule(id, rule);
        self.inner.catalog.mark_dirty(id, &name, TimeRange::ALL);
        self.inner.catalog.sync()?;
        Ok(())
    }

    /// Removes a rule (its rollups stay). `false` if there was none of that name.
    pub fn drop_downsample_rule(&self, db: &str, name: &str) -> Result<bool, LifecycleError> {
        let id = self
            .inner
            .catalog
            .db_id(db)
            .ok_or_else(|| LifecycleError::DatabaseNotFound { name: db.into() })?;
        if !self.inner.catalog.rules(id).iter().any(|r| r.name == name) {
            return Ok(false);
        }
        let _admin = self.inner.admin.lock();
        self.inner.catalog.drop_rule(id, name);
        self.inner.catalog.sync()?;
        Ok(true)
    }

    pub fn downsample_rules(&self, db: &str) -> Result<Vec<DownsampleRule>, LifecycleError> {
        let id = self
            .inner
            .catalog
            .db_id(db)
            .ok_or_else(|| LifecycleError::DatabaseNotFound { name: db.into() })?;
        Ok(self.inner.catalog.rules(id))
    }

    /// Recomputes every dirty rollup bucket now. Returns the rollup points written.
    pub fn run_downsampling(&self) -> Result<u64, LifecycleError> {
        self.inner.run_downsampling()
    }

    /// Called by `delete`: removes the rollup buckets covering a deleted range of a source and
    /// marks them dirty, so they are recomputed from what is left.
    pub(crate) fn delete_rollups(
        &self,
        db: &str,
        measurement: Option<&str>,
        pred: &TagPredicate,
        range: TimeRange,
    ) -> Result<(), LifecycleError> {
        let Some(id) = self.inner.catalog.db_id(db) else { return Ok(()) };
        for rule in self.inner.catalog.rules(id) {
            if measurement.is_some_and(|m| m != rule.source) {
                continue;
            }
            let start = bucket(range.start, rule.interval);
            let end = if range.end == i64::MAX {
                i64::MAX
            } else {
                bucket(range.end - 1, rule.interval).saturating_add(rule.interval)
            };
            let aligned = TimeRange { start, end };
            if self.database_exists(&rule.target_db) {
                self.delete(&rule.target_db, Some(&rule.target), pred, aligned)?;
            }
            self.inner.catalog.mark_dirty(id, &rule.name, aligned);
            self.inner.catalog.sync()?;
        }
        Ok(())
    }
}

impl Inner {
    /// Recomputes every dirty rollup bucket. Returns the rollup points written.
    pub(crate) fn run_downsampling(&self) -> Result<u64, LifecycleError> {
        let mut written = 0;
        for db in self.catalog.database_names() {
            let Some(id) = self.catalog.db_id(&db) else { continue };
            for rule in self.catalog.rules(id) {
                let dirty = self.catalog.dirty(id, &rule.name);
                let Some(through) = dirty.iter().map(|d| d.seq).max() else { continue };
                for range in merge_ranges(dirty.iter().map(|d| d.range).collect(), rule.interval) {
                    written += self.roll_up(&db, &rule, range)?;
                }
                // Under the maintenance lock, which `Engine::backup` holds from its flush to its
                // catalog copy: rollup points written after that flush are not in the backup's
                // segments, so its catalog must still call their ranges dirty (the restored
                // engine recomputes them). Unlocked, a backup could copy a "clean" record for
                // rollups it does not hold, and they would never be recomputed.
                let _maintenance = self.maintenance.lock();
                self.catalog.mark_clean(id, &rule.name, through);
                self.catalog.sync()?;
            }
        }
        Ok(written)
    }

    /// Recomputes the buckets of `range` (bucket-aligned) for one rule.
    fn roll_up(&self, db: &str, rule: &DownsampleRule, range: TimeRange) -> Result<u64, LifecycleError> {
        if self.catalog.db_id(&rule.target_db).is_none() {
            tracing::warn!(rule = %rule.name, target = %rule.target_db, "downsampling target database is gone; skipped");
            return Ok(0);
        }
        let interval = rule.interval;
        let one_bucket = move |lo: i64, hi: i64| bucket(lo, interval) == bucket(hi, interval);
        let opts = ScanOptions { summarize: Some(&one_bucket), series: None };
        let req =
            ScanRequest { db, measurement: &rule.source, predicate: &TagPredicate::All, fields: None, range };
        let mut out = WriteBatch::new();
        let mut written = 0u64;
        let mut error = None;
        let mut names: BTreeMap<String, [String; 5]> = BTreeMap::new();
        self.scan_pieces(&req, &opts, &mut |series| {
            // bucket -> field -> stats
            let mut buckets: BTreeMap<i64, Vec<(usize, Acc)>> = BTreeMap::new();
            let fields: Vec<&str> = series.columns.iter().map(|c| &*c.field).collect();
            for (fi, col) in series.columns.iter().enumerate() {
                for piece in &col.pieces {
                    accumulate(piece, fi, interval, &mut buckets);
                }
            }
            for (start, accs) in buckets {
                let mut p = out.point(&rule.target);
                for (k, v) in &series.key.tags {
                    p.tag(k, v);
                }
                for (fi, acc) in accs.iter().filter(|(_, a)| a.count > 0) {
                    let n = names.entry(fields[*fi].to_owned()).or_insert_with_key(|f| {
                        ["count", "sum", "min", "max", "mean"].map(|s| format!("{f}_{s}"))
                    });
                    p.field(&n[0], FieldValue::I64(acc.count as i64))
                        .field(&n[1], FieldValue::F64(acc.sum))
                        .field(&n[2], FieldValue::F64(acc.min))
                        .field(&n[3], FieldValue::F64(acc.max))
                        .field(&n[4], FieldValue::F64(acc.sum / acc.count as f64));
                }
                if let Err(e) = p.finish(start) {
                    tracing::warn!(rule = %rule.name, error = %e, "rollup point refused");
                }
            }
            if out.len_points() >= OUTPUT_BATCH {
                match self.write(&rule.target_db, &out, true) {
                    Ok(o) => written += o.points_written as u64,
                    Err(e) => {
                        error = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                out = WriteBatch::new();
            }
            ControlFlow::Continue(())
        })?;
        if let Some(e) = error {
            return Err(LifecycleError::Rollup(e.to_string()));
        }
        if !out.is_empty() {
            written += self
                .write(&rule.target_db, &out, true)
                .map_err(|e| LifecycleError::Rollup(e.to_string()))?
                .points_written as u64;
        }
        Ok(written)
    }
}

/// Adds a piece's points (or its summary) to the bucket accumulators of field `fi`.
fn accumulate(piece: &Piece, fi: usize, interval: i64, buckets: &mut BTreeMap<i64, Vec<(usize, Acc)>>) {
    fn slot(buckets: &mut BTreeMap<i64, Vec<(usize, Acc)>>, b: i64, fi: usize) -> &mut Acc {
        let v = buckets.entry(b).or_default();
        let i = match v.iter().position(|(f, _)| *f == fi) {
            Some(i) => i,
            None => {
                v.push((fi, Acc::EMPTY));
                v.len() - 1
            }
        };
        &mut v[i].1
    }
    match piece {
        Piece::Summary(s) => {
            let (sum, min, max) = match s.stats {
                SummaryStats::F64 { sum, min, max, .. } => (sum, min, max),
                SummaryStats::I64 { sum, min, max, .. } => (sum as f64, min as f64, max as f64),
                SummaryStats::U64 { sum, min, max, .. } => (sum as f64, min as f64, max as f64),
                SummaryStats::Bool { .. } => return,
            };
            slot(buckets, bucket(s.min_ts, interval), fi).merge(s.count, sum, min, max);
        }
        Piece::Data { timestamps, values } => {
            let mut add = |get: &dyn Fn(usize) -> f64| {
                let mut cur = i64::MIN;
                let mut acc: Option<&mut Acc> = None;
                for (i, &t) in timestamps.iter().enumerate() {
                    let b = bucket(t, interval);
                    if acc.is_none() || b != cur {
                        cur = b;
                        acc = Some(slot(buckets, b, fi));
                    }
                    acc.as_mut().expect("set above").add(get(i));
                }
            };
            match values {
                Values::F64(v) => add(&|i| v[i]),
                Values::I64(v) => add(&|i| v[i] as f64),
                Values::U64(v) => add(&|i| v[i] as f64),
                Values::Bool(_) | Values::Str(_) => {}
            }
        }
    }
}

/// Aligns ranges to bucket boundaries and merges those that touch.
fn merge_ranges(mut ranges: Vec<TimeRange>, interval: i64) -> Vec<TimeRange> {
    for r in ranges.iter_mut() {
        r.start = bucket(r.start, interval);
        if r.end != i64::MAX {
            r.end = bucket(r.end.saturating_sub(1), interval).saturating_add(interval);
        }
    }
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<TimeRange> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests;
