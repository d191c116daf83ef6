//! Newest points: [`Engine::scan_last`], the read behind `last()` per series, answered from the
//! last-value cache (`crate::last_value`) where it can and read from memtables and segments
//! where it cannot, with the same result either way.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::{ColumnPieces, Piece, ScanOptions, ScanSummary, SeriesPieces, SummaryStats};
use crate::engine::{Engine, Inner};
use crate::error::ReadError;
use crate::last_value::{Last, LastValue, Lookup};
use crate::model::{DbId, SeriesId, TimeRange};
use crate::segment::BlockMeta;
use crate::ScanRequest;

/// Series looked up in the cache per round (their fallback reads share one scan).
const SERIES_PER_ROUND: usize = 4096;

impl Engine {
    /// Streams the series of `req` to `visit` as [`Engine::scan_pieces`] does, but each
    /// column holds only its newest point in the range (one [`Piece::Data`] of one point).
    /// `opts.series` chooses the series; `opts.summarize` is not consulted.
    ///
    /// Answered from the last-value cache when it knows the newest point of every requested
    /// field of a series and that point lies before the range's end (the usual case of a range
    /// that reaches the present); other series are read. The first call for a database merges
    /// what its segments held at open into the cache, which opens all its partitions.
    pub fn scan_last(
        &self,
        req: &ScanRequest<'_>,
        opts: &ScanOptions<'_>,
        visit: &mut dyn FnMut(SeriesPieces) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ReadError> {
        self.inner.scan_last(req, opts, visit)
    }
}

impl Inner {
    fn scan_last(
        &self,
        req: &ScanRequest<'_>,
        opts: &ScanOptions<'_>,
        visit: &mut dyn FnMut(SeriesPieces) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ReadError> {
        let db = self.db_id(req.db)?;
        let mut summary = ScanSummary::default();
        let range = self.visible_range(db, req.range);
        if range.is_empty() {
            return Ok(summary);
        }
        let ids: Vec<SeriesId> = match opts.series {
            Some(ids) => ids.to_vec(),
            None => self.catalog.resolve(db, req.measurement, req.predicate).iter().map(SeriesId).collect(),
        };
        self.warm_last_values(db, req.db)?;
        let req = ScanRequest { range, ..*req };
        for round in ids.chunks(SERIES_PER_ROUND) {
            let answers: Vec<Lookup> =
                round.iter().map(|&id| self.last.lookup(id, req.fields, range)).collect();
            let unknown: Vec<SeriesId> = round
                .iter()
                .zip(&answers)
                .filter(|(_, a)| **a == Lookup::Unknown)
                .map(|(id, _)| *id)
                .collect();
            let mut read: HashMap<SeriesId, Vec<ColumnPieces>> = HashMap::new();
            if !unknown.is_empty() {
                let always = |_: i64, _: i64| true;
                let opts = ScanOptions { summarize: Some(&always), series: Some(&unknown) };
                let s = self.scan_pieces(&req, &opts, &mut |s| {
                    read.insert(s.id, s.columns.into_iter().filter_map(newest).collect());
                    ControlFlow::Continue(())
                })?;
                summary.blocks_decoded += s.blocks_decoded;
                summary.blocks_summarized += s.blocks_summarized;
                summary.chunks_decoded += s.chunks_decoded;
                summary.chunks_summarized += s.chunks_summarized;
                summary.points_read += s.points_read;
            }
            for (&id, answer) in round.iter().zip(answers) {
                let columns = match answer {
                    Lookup::Points(points) => {
                        summary.columns_cached += points.len() as u64;
                        points.into_iter().map(point_column).collect()
                    }
                    Lookup::Unknown => read.remove(&id).unwrap_or_default(),
                };
                if columns.is_empty() {
                    continue;
                }
                let Some(meta) = self.catalog.series(id) else { continue };
                summary.series += 1;
                if visit(SeriesPieces { id, key: meta.key, columns }).is_break() {
                    return Ok(summary);
                }
            }
        }
        Ok(summary)
    }

    /// Merges into the last-value cache what the segments of `db` held when the engine
    /// opened (once per database). Under the maintenance lock, so no delete, retention drop
    /// or compaction changes the segments or tombstones meanwhile. Writes may go on: the
    /// cache has their points already and wins ties against the segments.
    pub(crate) fn warm_last_values(&self, db: DbId, db_name: &str) -> Result<(), ReadError> {
        if self.last.is_warm(db) {
            return Ok(());
        }
        let _maintenance = self.maintenance.lock();
        if self.last.is_warm(db) {
            return Ok(());
        }
        let tombstones = self.catalog.tombstones(db);
        let readers = self.segment_readers(db, TimeRange::ALL)?;
        // Per column, the block holding its newest point: the latest `max_ts`, the newest
        // segment on a tie (readers are oldest first; one segment's blocks of a column never
        // overlap).
        let mut newest: HashMap<(SeriesId, &str), (u64, &BlockMeta)> = HashMap::new();
        for (seq, r) in &readers {
            for b in r.blocks() {
                match newest.entry((b.series, &*b.field)) {
                    Entry::Occupied(mut e) if b.max_ts >= e.get().1.max_ts => {
                        e.insert((*seq, b));
                    }
                    Entry::Occupied(_) => {}
                    Entry::Vacant(e) => {
                        e.insert((*seq, b));
                    }
                }
            }
        }
        // The index's `last` is the newest point unless a tombstone hides part of the block
        // (the newest visible point may then be anywhere) or the column holds strings (their
        // index statistics are empty): those columns are read, per field, newest first.
        let mut to_read: HashMap<Arc<str>, Vec<SeriesId>> = HashMap::new();
        for ((id, _), (seq, b)) in newest {
            if self.catalog.series(id).is_none() {
                continue;
            }
            let hidden = tombstones.iter().any(|t| t.hides(seq, id, b.min_ts, b.max_ts));
            match super::BlockSummary::new(b.field_type, b.min_ts, b.max_ts, b.count as u64, &b.stats) {
                Some(s) if !hidden => {
                    let v = summary_last(&s.stats);
                    self.last.merge_settled(db, id, &b.field, Last::Known(b.max_ts, v));
                }
                _ => to_read.entry(b.field.clone()).or_default().push(id),
            }
        }
        for (field, mut ids) in to_read {
            ids.sort_unstable();
            let fields = [&*field];
            let req = ScanRequest {
                db: db_name,
                measurement: "",
                predicate: &crate::TagPredicate::All,
                fields: Some(&fields),
                range: TimeRange::ALL,
            };
            // Not clipped to the retention period, like the rest of the cache: reads clip.
            for mut cursor in self.series_cursors_in(db, TimeRange::ALL, &req, &ids, true)? {
                let Some(col) = cursor.columns.first_mut() else { continue };
                if let Some(Piece::Data { timestamps, values }) = col.next_piece()? {
                    let last = Last::Known(timestamps[0], LastValue::at(&values, 0));
                    self.last.merge_settled(db, cursor.id, &field, last);
                }
            }
        }
        self.last.set_warm(db);
        Ok(())
    }
}

/// A column of one point.
fn point_column((field, ts, v): (Arc<str>, i64, LastValue)) -> ColumnPieces {
    let field_type = v.field_type();
    ColumnPieces {
        field,
        field_type,
        pieces: vec![Piece::Data { timestamps: vec![ts], values: v.into_values() }],
    }
}

/// The newest point of a column read with summaries allowed.
fn newest(c: ColumnPieces) -> Option<ColumnPieces> {
    let (ts, v) = match c.pieces.last()? {
        Piece::Summary(s) => (s.max_ts, summary_last(&s.stats)),
        Piece::Data { timestamps, values } => {
            (timestamps[timestamps.len() - 1], LastValue::at(values, values.len() - 1))
        }
    };
    Some(point_column((c.field, ts, v)))
}

fn summary_last(s: &SummaryStats) -> LastValue {
    match *s {
        SummaryStats::F64 { last, .. } => LastValue::F64(last),
        SummaryStats::I64 { last, .. } => LastValue::I64(last),
        SummaryStats::U64 { last, .. } => LastValue::U64(last),
        SummaryStats::Bool { last, .. } => LastValue::Bool(last),
    }
}
