//! The memtable of one shard: recent writes, column by column, in arrival order.
//!
//! Values are appended as they arrive (an append is the cheapest thing a write can do); sorting
//! and last-write-wins deduplication happen once, when the memtable is flushed or read. A column
//! remembers whether its timestamps have only grown so the common in-order case skips the sort.
//!
//! Columns are kept compressed: the newest values wait in a small raw head; every
//! [`CHUNK_VALUES`] values the head is sealed into a chunk encoded with the segment codecs
//! (timestamps, then values). Raw, a value costs 16 bytes; sealed, typically 1-3. So the same
//! memory holds 5-10 times more points, memtables fill and flush that much less often (fewer,
//! larger segments), and the memory bound of `storage.memtable_size` buys far more. Reads and
//! flushes decode the chunks they need; a chunk's time bounds let reads skip it.
//!
//! A sealed chunk is shaped like a segment block: its timestamps are sorted and unique (a head
//! written out of order is sorted when it is sealed, the later write winning a repeated
//! timestamp) and it carries the same count, time bounds and min/max/sum/first/last a block's
//! index entry does, so the read path treats both alike: it summarises a chunk without decoding
//! it under the same rules as a block, and shares the chunk's bytes (an `Arc`) instead of
//! copying them under the shard lock.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use crate::codec;
use crate::model::{DbId, FieldType, FieldValue, SeriesId, TimeRange, Values};
use crate::segment::BlockStats;

/// Values a column keeps raw before sealing them into a chunk. A power of two, so the head's
/// `Vec`s grow by doubling to exactly this capacity and then keep it.
pub(crate) const CHUNK_VALUES: usize = 128;
/// Fixed cost charged per new series / column (map entries, the column struct, plus its name).
const SERIES_OVERHEAD: usize = 96;
const COLUMN_OVERHEAD: usize = 160;

/// Sealed values of a column: timestamps (sorted, unique) then values, each in its segment
/// codec, with the statistics a segment block's index entry has. Cloning shares the bytes.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    count: u32,
    ty: FieldType,
    min_ts: i64,
    max_ts: i64,
    /// Where the values' encoding starts in `bytes`.
    split: u32,
    stats: BlockStats,
    /// Shared, so a read takes a chunk under the shard lock for the price of a reference count.
    bytes: Arc<[u8]>,
}

/// Heap bytes of an `Arc<[u8]>` beyond its data: the strong and weak counts.
const ARC_HEADER: usize = 16;

impl Chunk {
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn min_ts(&self) -> i64 {
        self.min_ts
    }

    pub fn max_ts(&self) -> i64 {
        self.max_ts
    }

    pub fn stats(&self) -> &BlockStats {
        &self.stats
    }

    pub fn values_type(&self) -> FieldType {
        self.ty
    }

    /// Appends the chunk's points to `ts` and `values` (sorted, unique timestamps).
    pub fn decode(&self, ts: &mut Vec<i64>, values: &mut Values) {
        let (t, v) = self.bytes.split_at(self.split as usize);
        let n = self.count as usize;
        // Encoded by this process, never read from disk: failing to decode is a bug in the
        // codecs, not bad input.
        codec::decode_timestamps(t, n, ts).expect("memtable chunk timestamps decode");
        codec::decode_values(v, n, values).expect("memtable chunk values decode");
    }
}

/// One time-ordered run of a memtable column taken by a read: a sealed chunk (shared, decoded
/// or summarised later) or the raw head (copied, sorted, trimmed to the read's range).
#[derive(Debug)]
pub(crate) enum MemSource {
    Chunk(Chunk),
    /// Consecutive chunks of one column, each newer than the one before (sorted, disjoint),
    /// with their statistics combined: taken as one source when the caller may summarise their
    /// whole span, so that a read hands one summary instead of one per chunk.
    Span {
        chunks: Vec<Chunk>,
        count: u64,
        stats: BlockStats,
    },
    Head(Vec<i64>, Values),
}

/// A [`MemSource`] of one column with its time bounds. The runs a read takes of one column of
/// one memtable are in write order (oldest first): later runs win repeated timestamps.
#[derive(Debug)]
pub(crate) struct MemRun {
    pub field: Arc<str>,
    pub min: i64,
    pub max: i64,
    pub src: MemSource,
}

impl MemRun {
    pub fn field_type(&self) -> FieldType {
        match &self.src {
            MemSource::Chunk(c) => c.values_type(),
            MemSource::Span { chunks, .. } => chunks[0].values_type(),
            MemSource::Head(_, v) => v.field_type(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct MemColumn {
    pub field: Arc<str>,
    chunks: Vec<Chunk>,
    head_ts: Vec<i64>,
    head: Values,
    /// Bytes of the strings in `head` (their `String` headers are in the capacity).
    head_str_bytes: usize,
    bytes_sealed: usize,
    min_ts: i64,
    max_ts: i64,
    /// Timestamps strictly increasing so far (no sort or dedup needed).
    pub strictly_increasing: bool,
    /// Every sealed chunk is newer than the one before it (no two overlap).
    chunks_ascending: bool,
}

impl MemColumn {
    fn new(field: &str, ty: FieldType) -> MemColumn {
        MemColumn {
            field: Arc::from(field),
            chunks: Vec::new(),
            head_ts: Vec::new(),
            head: Values::new(ty),
            head_str_bytes: 0,
            bytes_sealed: 0,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            strictly_increasing: true,
            chunks_ascending: true,
        }
    }

    pub fn field_type(&self) -> FieldType {
        self.head.field_type()
    }

    /// Heap bytes held, counting vector capacities (what the allocator really gave out).
    fn heap_bytes(&self) -> usize {
        let head_values = match &self.head {
            Values::F64(v) => v.capacity() * 8,
            Values::I64(v) => v.capacity() * 8,
            Values::U64(v) => v.capacity() * 8,
            Values::Bool(v) => v.capacity(),
            Values::Str(v) => v.capacity() * std::mem::size_of::<String>() + self.head_str_bytes,
        };
        self.bytes_sealed
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.head_ts.capacity() * 8
            + head_values
    }

    /// The smallest and largest timestamp held, `None` when empty.
    pub fn time_bounds(&self) -> Option<(i64, i64)> {
        (self.min_ts <= self.max_ts).then_some((self.min_ts, self.max_ts))
    }

    fn push(&mut self, ts: i64, value: &FieldValue<'_>, chunk_values: usize, scratch: &mut Vec<u8>) {
        if ts <= self.max_ts {
            self.strictly_increasing = false;
        }
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        self.head_ts.push(ts);
        self.head.push_value(value);
        if let FieldValue::Str(s) = value {
            self.head_str_bytes += s.len();
        }
        if self.head_ts.len() >= chunk_values {
            self.seal(chunk_values, scratch);
        }
    }

    /// Encodes the head into a chunk (keeping the head's capacity). A head written out of
    /// order is sorted first (the later write wins a repeated timestamp), so every chunk is a
    /// sorted, unique run like a segment block.
    ///
    /// Once a column has seen points out of order, the newest quarter of the head stays in it
    /// instead of being sealed. Concurrent writers deliver a device's batches slightly out of
    /// order, and a point older than a sealed chunk's newest overlaps that chunk: overlapping
    /// chunks must be decoded and merged on every read, never summarised. Held back, the
    /// stragglers of the last batches join the next chunk instead. Columns written in order
    /// seal whole heads.
    fn seal(&mut self, chunk_values: usize, scratch: &mut Vec<u8>) {
        if !self.head_ts.windows(2).all(|w| w[0] < w[1]) {
            let mut perm: Vec<u32> = (0..self.head_ts.len() as u32).collect();
            sort_dedup_last_wins(&self.head_ts, &mut perm);
            let mut ts = Vec::with_capacity(chunk_values);
            ts.extend(perm.iter().map(|&i| self.head_ts[i as usize]));
            self.head_ts = ts;
            self.head = self.head.gather(&perm);
        }
        let n = self.head_ts.len();
        let keep = if self.strictly_increasing { 0 } else { (chunk_values / 4).min(n - 1) };
        let cut = n - keep;
        let kept_ts = self.head_ts.split_off(cut);
        let kept = split_values(&mut self.head, cut);
        scratch.clear();
        codec::encode_timestamps(&self.head_ts, scratch);
        let split = scratch.len() as u32;
        codec::encode_values(&self.head, scratch);
        let bytes: Arc<[u8]> = Arc::from(scratch.as_slice());
        self.bytes_sealed += bytes.len() + ARC_HEADER;
        if self.chunks.last().is_some_and(|prev| prev.max_ts >= self.head_ts[0]) {
            self.chunks_ascending = false;
        }
        self.chunks.push(Chunk {
            count: cut as u32,
            ty: self.head.field_type(),
            min_ts: self.head_ts[0],
            max_ts: self.head_ts[cut - 1],
            split,
            stats: BlockStats::compute(&self.head),
            bytes,
        });
        self.head_ts.clear();
        self.head_ts.extend_from_slice(&kept_ts);
        if let Values::Str(v) = &mut self.head {
            // Strings own their bytes: give them back rather than keep a head of big strings.
            *v = Vec::new();
        } else {
            self.head.clear();
        }
        self.head.append(kept);
        self.head_str_bytes = match &self.head {
            Values::Str(v) => v.iter().map(String::len).sum(),
            _ => 0,
        };
    }

    /// Every value whose chunk overlaps `range`, in write order (not yet trimmed to `range`).
    fn gather(&self, range: TimeRange) -> (Vec<i64>, Values) {
        let mut ts = Vec::new();
        let mut values = Values::new(self.field_type());
        for c in self.chunks.iter().filter(|c| range.overlaps(c.min_ts, c.max_ts)) {
            c.decode(&mut ts, &mut values);
        }
        ts.extend_from_slice(&self.head_ts);
        values.append(self.head.clone());
        (ts, values)
    }

    /// What a read of `range` needs of this column, oldest first: the chunks overlapping it
    /// (shared, not decoded) and the head's points inside it (sorted, unique). Chunks that lie
    /// wholly inside `range`, one after the other, whose span `summarize` accepts, are taken as
    /// one [`MemSource::Span`].
    fn runs(
        &self,
        range: TimeRange,
        summarize: Option<&(dyn Fn(i64, i64) -> bool + Sync)>,
        out: &mut Vec<MemRun>,
    ) {
        let chunks = &self.chunks;
        // The run of chunks wholly inside `range` (contiguous when the chunks ascend).
        let inside = |c: &Chunk| range.contains(c.min_ts) && range.contains(c.max_ts);
        let (lo, hi) = if self.chunks_ascending && self.field_type() != FieldType::Str {
            let lo = chunks.partition_point(|c| c.min_ts < range.start);
            let hi = lo + chunks[lo..].iter().take_while(|c| inside(c)).count();
            (lo, hi)
        } else {
            (0, 0)
        };
        let span = hi - lo > 1 && summarize.is_some_and(|f| f(chunks[lo].min_ts, chunks[hi - 1].max_ts));
        for (i, c) in chunks.iter().enumerate() {
            if span && i == lo {
                let run = &chunks[lo..hi];
                let ty = self.field_type();
                let stats = run[1..].iter().fold(run[0].stats, |acc, c| combine_stats(ty, &acc, &c.stats));
                out.push(MemRun {
                    field: self.field.clone(),
                    min: run[0].min_ts,
                    max: run[run.len() - 1].max_ts,
                    src: MemSource::Span {
                        chunks: run.to_vec(),
                        count: run.iter().map(|c| c.count as u64).sum(),
                        stats,
                    },
                });
            }
            if (span && i >= lo && i < hi) || !range.overlaps(c.min_ts, c.max_ts) {
                continue;
            }
            out.push(MemRun {
                field: self.field.clone(),
                min: c.min_ts,
                max: c.max_ts,
                src: MemSource::Chunk(c.clone()),
            });
        }
        let in_range: Vec<u32> =
            (0..self.head_ts.len() as u32).filter(|&i| range.contains(self.head_ts[i as usize])).collect();
        if in_range.is_empty() {
            return;
        }
        let mut perm = in_range;
        let sorted = self.head_ts.windows(2).all(|w| w[0] < w[1]);
        if !sorted {
            sort_dedup_last_wins(&self.head_ts, &mut perm);
        }
        let ts: Vec<i64> = perm.iter().map(|&i| self.head_ts[i as usize]).collect();
        let whole = sorted && perm.len() == self.head_ts.len();
        let values = if whole { self.head.clone() } else { self.head.gather(&perm) };
        out.push(MemRun {
            field: self.field.clone(),
            min: ts[0],
            max: ts[ts.len() - 1],
            src: MemSource::Head(ts, values),
        });
    }

    /// The column sorted by time with duplicates resolved (the later write wins), limited to
    /// `range`.
    pub fn sorted(&self, range: TimeRange) -> (Vec<i64>, Values) {
        let (ts, values) = self.gather(range);
        if self.strictly_increasing {
            let lo = ts.partition_point(|&t| t < range.start);
            let hi = if range.end == i64::MAX { ts.len() } else { ts.partition_point(|&t| t < range.end) };
            if lo == 0 && hi == ts.len() {
                return (ts, values);
            }
            let perm: Vec<u32> = (lo as u32..hi as u32).collect();
            return (ts[lo..hi].to_vec(), values.gather(&perm));
        }
        let mut perm: Vec<u32> = (0..ts.len() as u32).filter(|&i| range.contains(ts[i as usize])).collect();
        sort_dedup_last_wins(&ts, &mut perm);
        let sorted_ts = perm.iter().map(|&i| ts[i as usize]).collect();
        (sorted_ts, values.gather(&perm))
    }
}

/// The statistics of two runs of one column, `a` before `b`, as one (see [`BlockStats`]).
fn combine_stats(ty: FieldType, a: &BlockStats, b: &BlockStats) -> BlockStats {
    let (first, last) = (a.first, b.last);
    match ty {
        FieldType::F64 => {
            let f = f64::from_bits;
            BlockStats {
                // `f64::min`/`max` ignore NaN, as the per-block statistics do.
                min: f(a.min).min(f(b.min)).to_bits(),
                max: f(a.max).max(f(b.max)).to_bits(),
                sum: (f(a.sum) + f(b.sum)).to_bits(),
                first,
                last,
            }
        }
        FieldType::I64 => BlockStats {
            min: (a.min as i64).min(b.min as i64) as u64,
            max: (a.max as i64).max(b.max as i64) as u64,
            sum: a.sum.wrapping_add(b.sum),
            first,
            last,
        },
        FieldType::U64 | FieldType::Bool => BlockStats {
            min: a.min.min(b.min),
            max: a.max.max(b.max),
            sum: a.sum.wrapping_add(b.sum),
            first,
            last,
        },
        FieldType::Str => BlockStats::default(),
    }
}

/// Splits `v` at `at`: `v` keeps the values before it, the rest is returned.
fn split_values(v: &mut Values, at: usize) -> Values {
    match v {
        Values::F64(x) => Values::F64(x.split_off(at)),
        Values::I64(x) => Values::I64(x.split_off(at)),
        Values::U64(x) => Values::U64(x.split_off(at)),
        Values::Bool(x) => Values::Bool(x.split_off(at)),
        Values::Str(x) => Values::Str(x.split_off(at)),
    }
}

/// Sorts `perm` (indices into `ts`, in write order) by timestamp and keeps, for each timestamp,
/// only the index written last. Stable sort: equal timestamps keep write order.
pub(crate) fn sort_dedup_last_wins(ts: &[i64], perm: &mut Vec<u32>) {
    perm.sort_by_key(|&i| ts[i as usize]);
    let mut out = 0;
    for i in 0..perm.len() {
        let last_of_run = i + 1 == perm.len() || ts[perm[i + 1] as usize] != ts[perm[i] as usize];
        if last_of_run {
            perm[out] = perm[i];
            out += 1;
        }
    }
    perm.truncate(out);
}

#[derive(Debug)]
pub(crate) struct MemSeries {
    pub db: DbId,
    pub columns: Vec<MemColumn>,
}

/// The memtable. Not thread-safe by itself: the shard lock guards the active one, frozen ones
/// are immutable behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Memtable {
    pub series: HashMap<SeriesId, MemSeries, FxBuildHasher>,
    /// Approximate heap bytes held.
    pub bytes: usize,
    /// Values a column keeps raw before sealing them ([`CHUNK_VALUES`] but in tests).
    chunk_values: usize,
    /// Reused buffer for sealing chunks.
    scratch: Vec<u8>,
    pub values: u64,
    pub min_ts: Option<i64>,
    pub max_ts: Option<i64>,
}

impl Default for Memtable {
    fn default() -> Memtable {
        Memtable::new(CHUNK_VALUES)
    }
}

impl Memtable {
    pub fn new(chunk_values: usize) -> Memtable {
        Memtable {
            series: HashMap::default(),
            bytes: 0,
            chunk_values: chunk_values.max(1),
            scratch: Vec::new(),
            values: 0,
            min_ts: None,
            max_ts: None,
        }
    }

    /// Appends one point's fields. Types were checked by the caller against the catalog.
    pub fn insert<'a>(
        &mut self,
        db: DbId,
        id: SeriesId,
        ts: i64,
        fields: impl Iterator<Item = (&'a [u8], FieldValue<'a>)>,
    ) {
        let series = self.series.entry(id).or_insert_with(|| {
            self.bytes += SERIES_OVERHEAD;
            MemSeries { db, columns: Vec::new() }
        });
        for (j, (name, value)) in fields.enumerate() {
            // Devices send their fields in the same order every time: try position j first.
            let hit = series.columns.get(j).is_some_and(|c| c.field.as_bytes() == name);
            let idx =
                if hit { Some(j) } else { series.columns.iter().position(|c| c.field.as_bytes() == name) };
            let col = match idx {
                Some(i) => &mut series.columns[i],
                None => {
                    self.bytes += COLUMN_OVERHEAD + name.len();
                    let name = std::str::from_utf8(name).expect("field names are validated UTF-8");
                    series.columns.push(MemColumn::new(name, value.field_type()));
                    series.columns.last_mut().expect("just pushed")
                }
            };
            if col.field_type() != value.field_type() {
                debug_assert!(false, "type checked by caller");
                continue;
            }
            let before = col.heap_bytes();
            col.push(ts, &value, self.chunk_values, &mut self.scratch);
            self.bytes = self.bytes + col.heap_bytes() - before;
            self.values += 1;
        }
        self.min_ts = Some(self.min_ts.map_or(ts, |m| m.min(ts)));
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Appends what a read of `range` needs of the requested columns of one series to `out`:
    /// per column, oldest first, its overlapping chunks (shared) and its head's points in
    /// `range`. Cheap enough to run under the shard lock: nothing is decoded.
    pub fn runs(
        &self,
        id: SeriesId,
        fields: Option<&[&str]>,
        range: TimeRange,
        summarize: Option<&(dyn Fn(i64, i64) -> bool + Sync)>,
        out: &mut Vec<MemRun>,
    ) {
        let Some(series) = self.series.get(&id) else {
            return;
        };
        if let (Some(min), Some(max)) = (self.min_ts, self.max_ts) {
            if !range.overlaps(min, max) {
                return;
            }
        }
        for c in series.columns.iter().filter(|c| fields.is_none_or(|f| f.contains(&&*c.field))) {
            if c.time_bounds().is_some_and(|(min, max)| range.overlaps(min, max)) {
                c.runs(range, summarize, out);
            }
        }
    }

    /// Copies the requested columns of one series within `range`, sorted and deduplicated.
    #[cfg(test)]
    pub fn read(
        &self,
        id: SeriesId,
        fields: Option<&[&str]>,
        range: TimeRange,
    ) -> Vec<(Arc<str>, Vec<i64>, Values)> {
        let Some(series) = self.series.get(&id) else {
            return Vec::new();
        };
        series
            .columns
            .iter()
            .filter(|c| fields.is_none_or(|f| f.contains(&&*c.field)))
            .map(|c| {
                let (ts, vals) = c.sorted(range);
                (c.field.clone(), ts, vals)
            })
            .filter(|(_, ts, _)| !ts.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_last_written() {
        let ts = vec![5, 3, 5, 1, 3];
        let mut perm: Vec<u32> = (0..5).collect();
        sort_dedup_last_wins(&ts, &mut perm);
        assert_eq!(perm, vec![3, 4, 2]);
    }

    #[test]
    fn out_of_order_and_duplicates() {
        let mut m = Memtable::default();
        let id = SeriesId(7);
        for (ts, v) in [(10, 1.0), (5, 2.0), (10, 3.0), (7, 4.0)] {
            m.insert(DbId(0), id, ts, [(&b"v"[..], FieldValue::F64(v))].into_iter());
        }
        let cols = m.read(id, None, TimeRange::ALL);
        assert_eq!(cols.len(), 1);
        assert_eq!(cols[0].1, vec![5, 7, 10]);
        assert_eq!(cols[0].2, Values::F64(vec![2.0, 4.0, 3.0]));
        let cols = m.read(id, Some(&["v"]), TimeRange::new(6, 10));
        assert_eq!(cols[0].1, vec![7]);
        assert!(m.read(id, Some(&["other"]), TimeRange::ALL).is_empty());
        assert!(m.read(id, None, TimeRange::new(11, 20)).is_empty());
        assert!(m.bytes > 0);
    }

    #[test]
    fn in_order_fast_path_respects_range() {
        let mut m = Memtable::default();
        let id = SeriesId(1);
        for ts in 0..10 {
            m.insert(DbId(0), id, ts, [(&b"v"[..], FieldValue::I64(ts * 10))].into_iter());
        }
        let cols = m.read(id, None, TimeRange::new(3, 6));
        assert_eq!(cols[0].1, vec![3, 4, 5]);
        assert_eq!(cols[0].2, Values::I64(vec![30, 40, 50]));
    }

    #[test]
    fn sealed_chunks_read_back_in_order_and_out_of_order() {
        let mut m = Memtable::default();
        let (a, b) = (SeriesId(1), SeriesId(2));
        let n = CHUNK_VALUES as i64 * 3 + 17;
        for ts in 0..n {
            m.insert(DbId(0), a, ts * 10, [(&b"v"[..], FieldValue::F64(ts as f64 * 0.5))].into_iter());
            // b: every timestamp written twice, the second time with a later value, backwards.
            let t = (n - 1 - ts) * 10;
            m.insert(DbId(0), b, t, [(&b"v"[..], FieldValue::I64(t))].into_iter());
        }
        for ts in 0..n {
            let t = ts * 10;
            m.insert(DbId(0), b, t, [(&b"v"[..], FieldValue::I64(-t))].into_iter());
        }
        let col = &m.series[&a].columns[0];
        assert_eq!(col.chunks.len(), 3);
        assert_eq!(col.time_bounds(), Some((0, (n - 1) * 10)));
        let cols = m.read(a, None, TimeRange::ALL);
        assert_eq!(cols[0].1, (0..n).map(|t| t * 10).collect::<Vec<_>>());
        assert_eq!(cols[0].2, Values::F64((0..n).map(|t| t as f64 * 0.5).collect()));
        // A range inside the second chunk skips the others and trims to the range.
        let cols = m.read(a, None, TimeRange::new(3000, 3050));
        assert_eq!(cols[0].1, vec![3000, 3010, 3020, 3030, 3040]);
        let cols = m.read(b, None, TimeRange::ALL);
        assert_eq!(cols[0].1, (0..n).map(|t| t * 10).collect::<Vec<_>>());
        assert_eq!(cols[0].2, Values::I64((0..n).map(|t| -t * 10).collect()));
        let cols = m.read(b, None, TimeRange::new(100, 120));
        assert_eq!(cols[0].2, Values::I64(vec![-100, -110]));
    }

    #[test]
    fn strings_and_bools_seal() {
        let mut m = Memtable::default();
        let id = SeriesId(3);
        let n = CHUNK_VALUES * 2 + 3;
        let words: Vec<String> = (0..n).map(|i| format!("state-{}", i % 5)).collect();
        for (i, w) in words.iter().enumerate() {
            let fields =
                [(&b"s"[..], FieldValue::Str(w.as_str())), (&b"ok"[..], FieldValue::Bool(i % 3 == 0))];
            m.insert(DbId(0), id, i as i64, fields.into_iter());
        }
        let cols = m.read(id, None, TimeRange::ALL);
        assert_eq!(cols[0].2, Values::Str(words));
        assert_eq!(cols[1].2, Values::Bool((0..n).map(|i| i % 3 == 0).collect()));
    }

    #[test]
    fn sealed_values_cost_less_than_raw() {
        let mut m = Memtable::default();
        let n = CHUNK_VALUES * 40;
        for i in 0..n {
            let v = 20.0 + (i % 17) as f64 * 0.25;
            m.insert(
                DbId(0),
                SeriesId(9),
                i as i64 * 1_000_000_000,
                [(&b"t"[..], FieldValue::F64(v))].into_iter(),
            );
        }
        // Raw: 16 bytes a value. Sealed: a few, plus one raw head of capacity CHUNK_VALUES.
        assert!(m.bytes < n * 4, "{} bytes for {n} values", m.bytes);
        let col = &m.series[&SeriesId(9)].columns[0];
        assert_eq!(m.bytes, col.heap_bytes() + SERIES_OVERHEAD + COLUMN_OVERHEAD + 1);
    }
}
