//! Pull-based reading of single series: [`Engine::series_cursors`].
//!
//! [`Engine::scan_pieces`] pushes each series whole to its visitor, which is what aggregates
//! want (one series at a time, every piece at once). A query that merges the rows of many
//! series by time (a raw `SELECT` over a tag set of several series, streamed to a client)
//! needs all of them open at once but only the front of each: a [`SeriesCursor`] per series
//! plans the series' sources (block metadata, memtable chunks and heads) when it is opened and decodes
//! one *cluster* (a run of overlapping sources of one column, usually one block of at most
//! [`crate::segment::BLOCK_MAX_VALUES`] points) only when the caller asks for the next piece.
//! So memory is one cluster per column per open series, plus the memtable heads (at most 128
//! values a column; sealed memtable chunks are shared, not copied), plus the block metadata,
//! never the series' decoded data.
//!
//! Clusters of a column never overlap in time, so reading them newest first and reversing
//! each gives the column in descending time order at the same cost ([`SeriesCursor`]
//! `descending`): `ORDER BY time DESC` needs no buffering either.

use std::collections::HashMap;
use std::sync::Arc;

use super::{read_cluster, Planned, ReadCtx, Source, SERIES_PER_BATCH};
use crate::catalog::Tombstone;
use crate::engine::{Engine, Inner};
use crate::error::ReadError;
use crate::memtable::{MemRun, MemSource};
use crate::model::{DbId, FieldType, SeriesId, SeriesKey, TimeRange};
use crate::read::{Piece, ScanSummary};
use crate::segment::SegmentReader;
use crate::ScanRequest;

/// What every cursor of one [`Engine::series_cursors`] call reads against: the segments
/// (kept open, so a compaction that deletes one does not pull it from under a slow reader;
/// segment files are only unlinked, never rewritten), the tombstones and the range.
struct Shared {
    readers: Vec<(u64, Arc<SegmentReader>)>,
    tombstones: Vec<Arc<Tombstone>>,
    range: TimeRange,
}

/// Where a source of a column comes from, by position so the plan holds no borrows.
#[derive(Debug, Clone, Copy)]
enum SrcRef {
    /// `readers[reader].series_blocks(id)[block]`.
    Block { reader: u32, block: u32 },
    /// The column's `mem[i]`.
    Mem(u32),
}

#[derive(Debug, Clone, Copy)]
struct Ref {
    age: usize,
    min: i64,
    max: i64,
    src: SrcRef,
}

/// One open series of [`Engine::series_cursors`].
pub struct SeriesCursor {
    pub id: SeriesId,
    pub key: Arc<SeriesKey>,
    /// The request's fields that have sources in the range, in the request's order (name
    /// order when it reads every field).
    pub columns: Vec<ColumnCursor>,
}

/// One column of a [`SeriesCursor`]: its pieces, one at a time.
pub struct ColumnCursor {
    pub field: Arc<str>,
    pub field_type: FieldType,
    id: SeriesId,
    descending: bool,
    shared: Arc<Shared>,
    /// Clusters in ascending time order; a read one is left empty.
    clusters: Vec<Vec<Ref>>,
    /// Clusters handed out (from the end when descending).
    taken: usize,
    /// The column's memtable chunks and heads, taken when their cluster is read.
    mem: Vec<Option<MemSource>>,
    summary: ScanSummary,
}

impl std::fmt::Debug for ColumnCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnCursor")
            .field("field", &self.field)
            .field("clusters", &self.clusters.len())
            .field("taken", &self.taken)
            .finish()
    }
}

impl ColumnCursor {
    /// The next piece of the column (data, never empty), in the cursor's time order; `None`
    /// at the end. Decodes one cluster.
    pub fn next_piece(&mut self) -> Result<Option<Piece>, ReadError> {
        while self.taken < self.clusters.len() {
            let k = if self.descending { self.clusters.len() - 1 - self.taken } else { self.taken };
            self.taken += 1;
            let cluster = std::mem::take(&mut self.clusters[k]);
            let shared = &*self.shared;
            let mut planned = Vec::with_capacity(cluster.len());
            for r in cluster {
                let src = match r.src {
                    SrcRef::Block { reader, block } => {
                        let (seq, rd) = &shared.readers[reader as usize];
                        Source::Block(rd, &rd.series_blocks(self.id)[block as usize], *seq)
                    }
                    SrcRef::Mem(i) => match self.mem[i as usize].take() {
                        Some(m) => Source::Mem(m),
                        None => continue,
                    },
                };
                planned.push(Planned { age: r.age, min: r.min, max: r.max, src });
            }
            let ctx = ReadCtx { range: shared.range, summarize: None, tombstones: &shared.tombstones };
            let mut out = Vec::with_capacity(1);
            read_cluster(planned, self.id, self.field_type, &ctx, &mut self.summary, &mut out)?;
            if let Some(p) = out.pop() {
                return Ok(Some(if self.descending { reverse(p) } else { p }));
            }
        }
        Ok(None)
    }

    /// What this column's reads decoded so far.
    pub fn summary(&self) -> ScanSummary {
        self.summary
    }
}

fn reverse(p: Piece) -> Piece {
    match p {
        Piece::Data { mut timestamps, values } => {
            timestamps.reverse();
            let perm: Vec<u32> = (0..values.len() as u32).rev().collect();
            Piece::Data { timestamps, values: values.gather(&perm) }
        }
        s @ Piece::Summary(_) => s,
    }
}

impl Engine {
    /// Opens one cursor per series of `ids` (ascending; they must belong to the request's
    /// database and measurement) that has data of the request's fields in its range, in `ids`
    /// order. Each column reads ascending, or descending with `descending`. The request's
    /// predicate is not consulted.
    ///
    /// Everything is planned now (memtables copied first, then the segment lists taken, as
    /// [`Engine::scan_pieces`] does, so a racing flush cannot hide data); blocks are decoded
    /// as the cursors advance.
    pub fn series_cursors(
        &self,
        req: &ScanRequest<'_>,
        ids: &[SeriesId],
        descending: bool,
    ) -> Result<Vec<SeriesCursor>, ReadError> {
        self.inner.series_cursors(req, ids, descending)
    }
}

impl Inner {
    fn series_cursors(
        &self,
        req: &ScanRequest<'_>,
        ids: &[SeriesId],
        descending: bool,
    ) -> Result<Vec<SeriesCursor>, ReadError> {
        let db = self.db_id(req.db)?;
        let range = self.visible_range(db, req.range);
        self.series_cursors_in(db, range, req, ids, descending)
    }

    /// [`Engine::series_cursors`] over `range` as given (not clipped to the retention period).
    pub(crate) fn series_cursors_in(
        &self,
        db: DbId,
        range: TimeRange,
        req: &ScanRequest<'_>,
        ids: &[SeriesId],
        descending: bool,
    ) -> Result<Vec<SeriesCursor>, ReadError> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        // Batched so that no shard lock is held across the copies of thousands of series.
        let mut mem: HashMap<SeriesId, Vec<MemRun>> = HashMap::new();
        for batch in ids.chunks(SERIES_PER_BATCH) {
            mem.extend(self.copy_memtables(batch, req.fields, range, None));
        }
        // Tombstones before segments (see `scan_pieces`).
        let tombstones = self.catalog.tombstones(db);
        let shared = Arc::new(Shared { readers: self.segment_readers(db, range)?, tombstones, range });
        let mut out = Vec::new();
        for &id in ids {
            let Some(meta) = self.catalog.series(id) else { continue };
            let columns =
                plan_columns(id, &shared, mem.remove(&id).unwrap_or_default(), req.fields, descending);
            if !columns.is_empty() {
                out.push(SeriesCursor { id, key: meta.key, columns });
            }
        }
        Ok(out)
    }
}

/// The clusters of each column of one series, as `plan_series` forms them (same ages, so
/// the same write wins), without reading anything.
fn plan_columns(
    id: SeriesId,
    shared: &Arc<Shared>,
    mem: Vec<MemRun>,
    fields: Option<&[&str]>,
    descending: bool,
) -> Vec<ColumnCursor> {
    type Col = (Vec<Ref>, Vec<Option<MemSource>>, Option<FieldType>);
    let mut by_field: HashMap<Arc<str>, Col> = HashMap::new();
    let mut age = 0;
    for (ri, (_, r)) in shared.readers.iter().enumerate() {
        for (bi, b) in r.series_blocks(id).iter().enumerate() {
            age += 1;
            if !shared.range.overlaps(b.min_ts, b.max_ts) {
                continue;
            }
            if fields.is_some_and(|f| !f.contains(&&*b.field)) {
                continue;
            }
            let e = by_field.entry(b.field.clone()).or_default();
            e.2.get_or_insert(b.field_type);
            let src = SrcRef::Block { reader: ri as u32, block: bi as u32 };
            e.0.push(Ref { age, min: b.min_ts, max: b.max_ts, src });
        }
    }
    for run in mem {
        age += 1;
        let ty = run.field_type();
        let MemRun { field, min, max, src } = run;
        let e = by_field.entry(field).or_default();
        e.2.get_or_insert(ty);
        e.0.push(Ref { age, min, max, src: SrcRef::Mem(e.1.len() as u32) });
        e.1.push(Some(src));
    }
    let mut columns = Vec::with_capacity(by_field.len());
    for (field, (mut refs, mem, ty)) in by_field {
        let Some(field_type) = ty else { continue };

        // The type of the oldest source wins (the first planned), as in `plan_series`.
        refs.sort_by_key(|s| (s.min, s.age));
        let mut clusters: Vec<Vec<Ref>> = Vec::new();
        let mut cluster_max = i64::MIN;
        for r in refs {
            match clusters.last_mut() {
                Some(c) if r.min <= cluster_max => {
                    c.push(r);
                    cluster_max = cluster_max.max(r.max);
                }
                _ => {
                    clusters.push(vec![r]);
                    cluster_max = r.max;
                }
            }
        }
        columns.push(ColumnCursor {
            field,
            field_type,
            id,
            descending,
            shared: Arc::clone(shared),
            clusters,
            taken: 0,
            mem,
            summary: ScanSummary::default(),
        });
    }
    match fields {
        Some(order) => columns.sort_by_key(|c| order.iter().position(|f| *f == &*c.field)),
        None => columns.sort_by(|a, b| a.field.cmp(&b.field)),
    }
    columns
}
