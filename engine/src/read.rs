//! The read path: streaming, statistics-aware scans.
//!
//! [`Engine::scan_pieces`] hands the caller one series at a time (so a query over a million
//! series never holds them all), each column as time-ordered, non-overlapping [`Piece`]s with
//! duplicates already resolved (the later write wins). A piece is either decoded data or, when
//! the caller says a block's time span is all it needs to know (`ScanOptions::summarize`), the
//! block's [`BlockSummary`] read from the segment index without touching the block itself.
//!
//! Memtable chunks (sealed runs of 128 values, see `memtable.rs`) are sources of the same
//! shape as segment blocks, with the same statistics: one planner reads both, so a chunk is
//! pruned by time range, summarised or decoded exactly as a block is.
//!
//! A block or chunk may only be summarised when it lies wholly inside the scan range and
//! nothing else holds data of the same column inside its time span: not another block (late or
//! rewritten data in a newer segment), not another chunk or a memtable head, not a tombstone
//! (tombstones only ever hide segment data: a delete flushes the memtables first). Everything
//! that overlaps is decoded and merged, oldest source first, so the newest write wins.
//!
//! Order of reading, per batch of series: memtables first (under the shard locks, taking
//! references to sealed chunks and copies of the small raw heads, decoding nothing), then the
//! segment lists of the overlapping partitions. A flush publishes its segment before dropping
//! the frozen memtable, so a flush racing the read cannot hide data.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::catalog::Tombstone;
use crate::engine::{Engine, Inner};
use crate::error::ReadError;
use crate::memtable::{sort_dedup_last_wins, MemRun, MemSource};
use crate::model::{Column, FieldType, SeriesData, SeriesId, SeriesKey, TimeRange, Values};
use crate::segment::{BlockMeta, BlockStats, SegmentReader};
use crate::ScanRequest;

mod cursor;
mod last;

pub use cursor::{ColumnCursor, SeriesCursor};

/// Series handed to the visitor per batch of memtable copies.
const SERIES_PER_BATCH: usize = 256;

/// How a streaming scan reads.
#[derive(Clone, Copy, Default)]
pub struct ScanOptions<'a> {
    /// Called with a block's `[min_ts, max_ts]`: `true` means a [`BlockSummary`] is enough for
    /// the caller (e.g. the block lies inside one `GROUP BY time` bucket and every aggregate
    /// asked can be computed from statistics). Only consulted for blocks that lie wholly inside
    /// the scan range and overlap nothing else. `None` decodes everything.
    pub summarize: Option<&'a (dyn Fn(i64, i64) -> bool + Sync)>,
    /// Read exactly these series (ascending ids; they must belong to the request's database
    /// and measurement) instead of resolving the request's predicate. Lets a caller split one
    /// query's series over threads.
    pub series: Option<&'a [SeriesId]>,
}

impl std::fmt::Debug for ScanOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanOptions")
            .field("summarize", &self.summarize.is_some())
            .field("series", &self.series.map(|s| s.len()))
            .finish()
    }
}

/// Statistics of a block, typed. Strings are never summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SummaryStats {
    /// `min`/`max` ignore NaN (they are NaN only if every value is).
    F64 {
        min: f64,
        max: f64,
        sum: f64,
        first: f64,
        last: f64,
    },
    /// `sum` wraps on overflow, like the engine's integer arithmetic.
    I64 {
        min: i64,
        max: i64,
        sum: i64,
        first: i64,
        last: i64,
    },
    U64 {
        min: u64,
        max: u64,
        sum: u64,
        first: u64,
        last: u64,
    },
    Bool {
        trues: u64,
        first: bool,
        last: bool,
    },
}

/// What the segment index says about a block: enough for count, sum, mean, min, max, first,
/// last and spread over the block's span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockSummary {
    pub min_ts: i64,
    pub max_ts: i64,
    pub count: u64,
    pub stats: SummaryStats,
}

impl BlockSummary {
    /// The summary of a run of `count` values of type `ty` between `min_ts` and `max_ts` with
    /// statistics `stats` (a segment block's index entry or a sealed memtable chunk's).
    fn new(ty: FieldType, min_ts: i64, max_ts: i64, count: u64, stats: &BlockStats) -> Option<BlockSummary> {
        let BlockStats { min, max, sum, first, last } = *stats;
        let stats = match ty {
            FieldType::F64 => SummaryStats::F64 {
                min: f64::from_bits(min),
                max: f64::from_bits(max),
                sum: f64::from_bits(sum),
                first: f64::from_bits(first),
                last: f64::from_bits(last),
            },
            FieldType::I64 => SummaryStats::I64 {
                min: min as i64,
                max: max as i64,
                sum: sum as i64,
                first: first as i64,
                last: last as i64,
            },
            FieldType::U64 => SummaryStats::U64 { min, max, sum, first, last },
            FieldType::Bool => SummaryStats::Bool { trues: sum, first: first != 0, last: last != 0 },
            FieldType::Str => return None,
        };
        Some(BlockSummary { min_ts, max_ts, count, stats })
    }
}

/// A time-ordered run of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Data { timestamps: Vec<i64>, values: Values },
    Summary(BlockSummary),
}

impl Piece {
    pub fn min_ts(&self) -> i64 {
        match self {
            Piece::Data { timestamps, .. } => timestamps[0],
            Piece::Summary(s) => s.min_ts,
        }
    }

    pub fn max_ts(&self) -> i64 {
        match self {
            Piece::Data { timestamps, .. } => timestamps[timestamps.len() - 1],
            Piece::Summary(s) => s.max_ts,
        }
    }

    /// Number of points in the piece.
    pub fn count(&self) -> u64 {
        match self {
            Piece::Data { timestamps, .. } => timestamps.len() as u64,
            Piece::Summary(s) => s.count,
        }
    }
}

/// One column of one series: pieces in time order, never overlapping, never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPieces {
    pub field: Arc<str>,
    pub field_type: FieldType,
    pub pieces: Vec<Piece>,
}

/// One series of a streaming scan. `columns` follow the request's field order (name order
/// when every field is read); a field without data in the range is absent.
#[derive(Debug, Clone)]
pub struct SeriesPieces {
    pub id: SeriesId,
    pub key: Arc<SeriesKey>,
    pub columns: Vec<ColumnPieces>,
}

/// What a scan did, for query statistics and limits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanSummary {
    pub series: u64,
    /// Segment blocks decoded and summarised.
    pub blocks_decoded: u64,
    pub blocks_summarized: u64,
    /// Sealed memtable chunks decoded and summarised.
    pub chunks_decoded: u64,
    pub chunks_summarized: u64,
    /// Columns answered from the last-value cache ([`Engine::scan_last`]).
    pub columns_cached: u64,
    /// Points decoded from blocks and chunks or copied from memtable heads (before range
    /// trimming).
    pub points_read: u64,
}

/// Where a run of a column comes from, while a series' pieces are planned.
enum Source<'a> {
    /// A block of the segment with the given sequence.
    Block(&'a SegmentReader, &'a BlockMeta, u64),
    /// A memtable chunk or head.
    Mem(MemSource),
}

impl Source<'_> {
    fn field_type(&self) -> FieldType {
        match self {
            Source::Block(_, b, _) => b.field_type,
            Source::Mem(MemSource::Chunk(c)) => c.values_type(),
            Source::Mem(MemSource::Span { chunks, .. }) => chunks[0].values_type(),
            Source::Mem(MemSource::Head(_, v)) => v.field_type(),
        }
    }

    /// The statistics of a block or chunk, to answer from instead of decoding it; `None` for
    /// a head, or when a tombstone hides part of the block.
    fn summary(&self, id: SeriesId, tombstones: &[Arc<Tombstone>]) -> Option<BlockSummary> {
        match self {
            Source::Block(_, b, seq) => {
                if tombstones.iter().any(|t| t.hides(*seq, id, b.min_ts, b.max_ts)) {
                    return None;
                }
                BlockSummary::new(b.field_type, b.min_ts, b.max_ts, b.count as u64, &b.stats)
            }
            Source::Mem(MemSource::Chunk(c)) => {
                BlockSummary::new(c.values_type(), c.min_ts(), c.max_ts(), c.count() as u64, c.stats())
            }
            Source::Mem(MemSource::Span { chunks, count, stats }) => BlockSummary::new(
                chunks[0].values_type(),
                chunks[0].min_ts(),
                chunks[chunks.len() - 1].max_ts(),
                *count,
                stats,
            ),
            Source::Mem(MemSource::Head(..)) => None,
        }
    }
}

struct Planned<'a> {
    /// Position in age order: larger is newer.
    age: usize,
    min: i64,
    max: i64,
    src: Source<'a>,
}

impl Engine {
    /// Streams the series of `req` to `visit`, one at a time in ascending id order, each
    /// column as [`Piece`]s. `visit` returns `ControlFlow::Break` to stop early.
    pub fn scan_pieces(
        &self,
        req: &ScanRequest<'_>,
        opts: &ScanOptions<'_>,
        visit: &mut dyn FnMut(SeriesPieces) -> ControlFlow<()>,
    ) -> Result<ScanSummary, ReadError> {
        self.inner.scan_pieces(req, opts, visit)
    }

    /// Reads every matching series whole (decoded, merged). Convenient for small reads and
    /// tests; queries use [`Engine::scan_pieces`].
    pub fn scan(&self, req: &ScanRequest<'_>) -> Result<Vec<SeriesData>, ReadError> {
        let mut out = Vec::new();
        self.scan_pieces(req, &ScanOptions::default(), &mut |s| {
            let columns = s
                .columns
                .into_iter()
                .map(|c| {
                    let mut timestamps =
                        Vec::with_capacity(c.pieces.iter().map(|p| p.count() as usize).sum());
                    let mut values = Values::new(c.field_type);
                    for p in c.pieces {
                        if let Piece::Data { timestamps: t, values: v } = p {
                            timestamps.extend_from_slice(&t);
                            values.append(v);
                        }
                    }
                    Column { field: c.field, timestamps, values }
                })
                .collect();
            out.push(SeriesData { id: s.id, key: s.key, columns });
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }
}

impl Inner {
    pub(crate) fn scan_pieces(
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
        for batch in ids.chunks(SERIES_PER_BATCH) {
            // 1. Memtables, oldest first.
            let mut mem = self.copy_memtables(batch, req.fields, range, opts.summarize);
            // 2. Segments of overlapping partitions, after the memtables (see module docs).
            // Tombstones before segments: tombstone collection removes one only after the
            // segments it hid are swapped out, so this order never pairs an old segment with
            // a list that lost its tombstone.
            let tombstones = self.catalog.tombstones(db);
            let readers = self.segment_readers(db, range)?;
            for &id in batch {
                let Some(meta) = self.catalog.series(id) else { continue };
                let ctx = ReadCtx { range, summarize: opts.summarize, tombstones: &tombstones };
                let columns = plan_series(
                    id,
                    &readers,
                    mem.remove(&id).unwrap_or_default(),
                    req.fields,
                    &ctx,
                    &mut summary,
                )?;
                if columns.is_empty() {
                    continue;
                }
                summary.series += 1;
                if visit(SeriesPieces { id, key: meta.key, columns }).is_break() {
                    return Ok(summary);
                }
            }
        }
        Ok(summary)
    }

    /// Takes what the memtables hold of `batch` in `range`, per series oldest first (frozen
    /// in order, then active): references to the sealed chunks that overlap `range` and
    /// copies of the raw heads, under each shard's lock in turn. Nothing is decoded.
    pub(crate) fn copy_memtables(
        &self,
        batch: &[SeriesId],
        fields: Option<&[&str]>,
        range: TimeRange,
        summarize: Option<&(dyn Fn(i64, i64) -> bool + Sync)>,
    ) -> HashMap<SeriesId, Vec<MemRun>> {
        let mut mem: HashMap<SeriesId, Vec<MemRun>> = HashMap::new();
        for shard in &self.shards {
            let (frozen, active) = {
                let st = shard.state.lock();
                let frozen: Vec<_> = st.frozen.iter().cloned().collect();
                let mut active: Vec<(SeriesId, Vec<MemRun>)> = Vec::new();
                for &id in batch {
                    let mut runs = Vec::new();
                    st.active.runs(id, fields, range, summarize, &mut runs);
                    if !runs.is_empty() {
                        active.push((id, runs));
                    }
                }
                (frozen, active)
            };
            for f in &frozen {
                for &id in batch {
                    let mut runs = Vec::new();
                    f.mem.runs(id, fields, range, summarize, &mut runs);
                    if !runs.is_empty() {
                        mem.entry(id).or_default().extend(runs);
                    }
                }
            }
            for (id, runs) in active {
                mem.entry(id).or_default().extend(runs);
            }
        }
        mem
    }

    /// Open readers of every segment that may hold data in `range`, oldest first.
    fn segment_readers(
        &self,
        db: crate::model::DbId,
        range: TimeRange,
    ) -> Result<Vec<(u64, Arc<SegmentReader>)>, ReadError> {
        let storage = self.dbs.read().get(&db).cloned();
        let mut out = Vec::new();
        if let Some(storage) = storage {
            for part in storage.partitions.overlapping(range) {
                for seg in part.segments().iter() {
                    out.push((seg.id.0, seg.reader()?));
                }
            }
        }
        Ok(out)
    }
}

/// What every series of one scan batch is read against.
struct ReadCtx<'a> {
    range: TimeRange,
    summarize: Option<&'a (dyn Fn(i64, i64) -> bool + Sync)>,
    tombstones: &'a [Arc<Tombstone>],
}

/// Plans and reads the pieces of one series.
fn plan_series(
    id: SeriesId,
    readers: &[(u64, Arc<SegmentReader>)],
    mem: Vec<MemRun>,
    fields: Option<&[&str]>,
    ctx: &ReadCtx<'_>,
    summary: &mut ScanSummary,
) -> Result<Vec<ColumnPieces>, ReadError> {
    let mut by_field: HashMap<Arc<str>, Vec<Planned<'_>>> = HashMap::new();
    let mut age = 0;
    for (seq, r) in readers {
        for b in r.series_blocks(id) {
            age += 1;
            if !ctx.range.overlaps(b.min_ts, b.max_ts) {
                continue;
            }
            if fields.is_some_and(|f| !f.contains(&&*b.field)) {
                continue;
            }
            by_field.entry(b.field.clone()).or_default().push(Planned {
                age,
                min: b.min_ts,
                max: b.max_ts,
                src: Source::Block(r, b, *seq),
            });
        }
    }
    for MemRun { field, min, max, src } in mem {
        age += 1;
        if let MemSource::Head(ts, _) = &src {
            summary.points_read += ts.len() as u64;
        }
        by_field.entry(field).or_default().push(Planned { age, min, max, src: Source::Mem(src) });
    }
    let mut columns = Vec::with_capacity(by_field.len());
    for (field, mut sources) in by_field {
        // The type of the oldest source wins.
        let field_type = sources[0].src.field_type();
        sources.sort_by_key(|s| (s.min, s.age));
        let mut pieces = Vec::new();
        let mut cluster: Vec<Planned<'_>> = Vec::new();
        let mut cluster_max = i64::MIN;
        for s in sources {
            if !cluster.is_empty() && s.min > cluster_max {
                let taken = std::mem::take(&mut cluster);
                read_cluster(taken, id, field_type, ctx, summary, &mut pieces)?;
            }
            cluster_max = if cluster.is_empty() { s.max } else { cluster_max.max(s.max) };
            cluster.push(s);
        }
        read_cluster(cluster, id, field_type, ctx, summary, &mut pieces)?;
        if !pieces.is_empty() {
            columns.push(ColumnPieces { field, field_type, pieces });
        }
    }
    match fields {
        Some(order) => columns.sort_by_key(|c| order.iter().position(|f| *f == &*c.field)),
        None => columns.sort_by(|a, b| a.field.cmp(&b.field)),
    }
    Ok(columns)
}

/// Turns a cluster of overlapping sources into at most one piece.
fn read_cluster(
    mut cluster: Vec<Planned<'_>>,
    id: SeriesId,
    field_type: FieldType,
    ctx: &ReadCtx<'_>,
    summary: &mut ScanSummary,
    out: &mut Vec<Piece>,
) -> Result<(), ReadError> {
    let ReadCtx { range, summarize, tombstones } = *ctx;
    if cluster.is_empty() {
        return Ok(());
    }
    // One block or chunk alone in its span: its statistics may be all the caller needs.
    if let [Planned { src, min, max, .. }] = cluster.as_slice() {
        if src.field_type() == field_type
            && range.contains(*min)
            && range.contains(*max)
            && summarize.is_some_and(|f| f(*min, *max))
        {
            if let Some(s) = src.summary(id, tombstones) {
                match src {
                    Source::Block(..) => summary.blocks_summarized += 1,
                    Source::Mem(MemSource::Span { chunks, .. }) => {
                        summary.chunks_summarized += chunks.len() as u64
                    }
                    Source::Mem(_) => summary.chunks_summarized += 1,
                }
                out.push(Piece::Summary(s));
                return Ok(());
            }
        }
    }
    // Oldest first, so that the newest write wins the merge.
    cluster.sort_by_key(|s| s.age);
    let mut chunks = Vec::with_capacity(cluster.len());
    for s in cluster {
        let (ts, vals) = match s.src {
            Source::Mem(MemSource::Head(ts, vals)) => (ts, vals),
            Source::Mem(MemSource::Chunk(c)) => {
                let mut ts = Vec::with_capacity(c.count() as usize);
                let mut vals = Values::new(c.values_type());
                c.decode(&mut ts, &mut vals);
                summary.chunks_decoded += 1;
                summary.points_read += ts.len() as u64;
                trim(ts, vals, range)
            }
            Source::Mem(MemSource::Span { chunks, count, .. }) => {
                // Ascending and disjoint: decoded one after the other, they stay sorted.
                let mut ts = Vec::with_capacity(count as usize);
                let mut vals = Values::new(chunks[0].values_type());
                for c in &chunks {
                    c.decode(&mut ts, &mut vals);
                }
                summary.chunks_decoded += chunks.len() as u64;
                summary.points_read += ts.len() as u64;
                trim(ts, vals, range)
            }
            Source::Block(r, b, seq) => {
                let mut ts = Vec::with_capacity(b.count as usize);
                let mut vals = Values::new(b.field_type);
                r.read_block(b, &mut ts, &mut vals)?;
                summary.blocks_decoded += 1;
                summary.points_read += ts.len() as u64;
                let (ts, vals) = trim(ts, vals, range);
                hide_deleted(ts, vals, id, seq, b, tombstones)
            }
        };
        if vals.field_type() == field_type && !ts.is_empty() {
            chunks.push((ts, vals));
        }
    }
    if let Some((timestamps, values)) = merge_chunks(chunks) {
        out.push(Piece::Data { timestamps, values });
    }
    Ok(())
}

/// Drops the points of a decoded block that tombstones hide.
fn hide_deleted(
    ts: Vec<i64>,
    vals: Values,
    id: SeriesId,
    seq: u64,
    b: &BlockMeta,
    tombstones: &[Arc<Tombstone>],
) -> (Vec<i64>, Values) {
    let hiding: Vec<&Tombstone> =
        tombstones.iter().filter(|t| t.hides(seq, id, b.min_ts, b.max_ts)).map(|t| &**t).collect();
    if hiding.is_empty() {
        return (ts, vals);
    }
    let keep: Vec<u32> =
        (0..ts.len() as u32).filter(|&i| !hiding.iter().any(|t| t.range.contains(ts[i as usize]))).collect();
    (keep.iter().map(|&i| ts[i as usize]).collect(), vals.gather(&keep))
}

/// Keeps the part of a sorted chunk inside `range`.
fn trim(ts: Vec<i64>, vals: Values, range: TimeRange) -> (Vec<i64>, Values) {
    let lo = ts.partition_point(|&t| t < range.start);
    let hi = if range.end == i64::MAX { ts.len() } else { ts.partition_point(|&t| t < range.end) };
    if lo == 0 && hi == ts.len() {
        return (ts, vals);
    }
    if lo >= hi {
        return (Vec::new(), Values::new(vals.field_type()));
    }
    let perm: Vec<u32> = (lo as u32..hi as u32).collect();
    (ts[lo..hi].to_vec(), vals.gather(&perm))
}

/// Merges sorted, unique chunks (oldest first) into one column; later chunks win ties.
fn merge_chunks(mut chunks: Vec<(Vec<i64>, Values)>) -> Option<(Vec<i64>, Values)> {
    if chunks.len() <= 1 {
        return chunks.pop();
    }
    let ty = chunks[0].1.field_type();
    let mut ts = Vec::with_capacity(chunks.iter().map(|c| c.0.len()).sum());
    let mut vals = Values::new(ty);
    for (t, v) in chunks {
        ts.extend_from_slice(&t);
        vals.append(v);
    }
    let mut perm: Vec<u32> = (0..ts.len() as u32).collect();
    sort_dedup_last_wins(&ts, &mut perm);
    let sorted_ts = perm.iter().map(|&i| ts[i as usize]).collect();
    Some((sorted_ts, vals.gather(&perm)))
}

#[cfg(test)]
mod tests;
