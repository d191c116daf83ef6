//! Time partitions: a directory of segment files per (database, time window).
//!
//! Layout: `<data>/dbs/<database>/<start_ns>_<duration_ns>/<segment id>.seg`. A partition's
//! directory is listed at open, but its segments are only opened (memory-mapped, index parsed)
//! the first time a scan touches its time window, so a query over one hour never opens last
//! year's partitions.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::RwLock;

use crate::catalog::Tombstone;
use crate::error::{ReadError, SegmentError};
use crate::model::{SegmentId, TimeRange};
use crate::segment::SegmentReader;

/// Start of the partition of `ts` for windows of `dur` ns (floor division, so negative
/// timestamps work).
pub fn partition_start(ts: i64, dur: i64) -> i64 {
    // The first window can start before i64::MIN; clamp it (it still contains ts).
    ts.div_euclid(dur).checked_mul(dur).unwrap_or(i64::MIN)
}

pub fn dir_name(start: i64, dur: i64) -> String {
    format!("{start}_{dur}")
}

pub fn parse_dir_name(name: &str) -> Option<(i64, i64)> {
    let (s, d) = name.split_once('_')?;
    let (s, d) = (s.parse().ok()?, d.parse().ok()?);
    (d > 0).then_some((s, d))
}

/// What a segment's file name says. A flush writes `<seq>.seg` (generation 0, `lo == hi`);
/// compaction writes `<hi>-<lo>-g<generation>.seg`, which replaces every segment of its
/// partition with a sequence in `lo..=hi` and a lower generation. The sequence orders data by
/// age (a newer write of the same point wins), and the name alone tells, after a crash, which
/// files a finished compaction made obsolete: the rename that publishes the output is the
/// atomic switch, no separate manifest is needed (see docs/lifecycle.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    pub hi: u64,
    pub generation: u32,
    pub lo: u64,
}

impl SegmentName {
    pub fn flushed(seq: u64) -> SegmentName {
        SegmentName { hi: seq, generation: 0, lo: seq }
    }

    pub fn file_name(&self) -> String {
        if self.generation == 0 && self.lo == self.hi {
            crate::segment::file_name(SegmentId(self.hi))
        } else {
            format!("{}-{}-g{}.seg", SegmentId(self.hi), SegmentId(self.lo), self.generation)
        }
    }

    pub fn parse(file_name: &str) -> Option<SegmentName> {
        let stem = file_name.strip_suffix(".seg")?;
        let mut parts = stem.split('-');
        let hi = parts.next()?.parse().ok()?;
        match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => Some(SegmentName::flushed(hi)),
            (Some(lo), Some(g), None) => {
                let lo: u64 = lo.parse().ok()?;
                let generation = g.strip_prefix('g')?.parse().ok()?;
                (lo <= hi && generation > 0).then_some(SegmentName { hi, generation, lo })
            }
            _ => None,
        }
    }

    /// Whether compaction output `self` holds everything `other` held.
    pub fn replaces(&self, other: &SegmentName) -> bool {
        other.generation < self.generation && self.lo <= other.lo && other.hi <= self.hi
    }
}

/// One segment file, opened on first use.
#[derive(Debug)]
pub struct SegmentHandle {
    /// The newest sequence of data inside (`name.hi`).
    pub id: SegmentId,
    pub name: SegmentName,
    pub path: PathBuf,
    reader: OnceLock<Arc<SegmentReader>>,
    /// Tombstones already applied to this segment's data: compaction wrote it with them
    /// filtered out, so they hide nothing here even where block statistics still overlap
    /// them. In memory only (a restart forgets it; tombstone collection then falls back to the
    /// block statistics). Weak, so a collected tombstone is not kept alive by its outputs;
    /// a `Weak` still keeps the allocation, so its address cannot be reused by a later
    /// tombstone while this list exists. Sorted by address (see [`applied_set`]).
    applied: Arc<[Weak<Tombstone>]>,
}

impl SegmentHandle {
    pub fn new(name: SegmentName, path: PathBuf) -> SegmentHandle {
        SegmentHandle { id: SegmentId(name.hi), name, path, reader: OnceLock::new(), applied: Arc::new([]) }
    }

    /// Marks `tombstones` (built by [`applied_set`]) as applied to this segment's data.
    pub fn with_applied(mut self, tombstones: Arc<[Weak<Tombstone>]>) -> SegmentHandle {
        self.applied = tombstones;
        self
    }

    /// Whether compaction already removed what `t` hides from this segment.
    pub fn has_applied(&self, t: &Arc<Tombstone>) -> bool {
        let addr = Arc::as_ptr(t) as usize;
        self.applied.binary_search_by_key(&addr, |w| w.as_ptr() as usize).is_ok()
    }

    pub fn with_reader(name: SegmentName, reader: SegmentReader) -> SegmentHandle {
        let h = SegmentHandle::new(name, reader.path().to_owned());
        let _ = h.reader.set(Arc::new(reader));
        h
    }

    /// Opens the segment if needed. A failure is returned every time (not cached), so a
    /// segment restored by an operator becomes readable without a restart.
    pub fn reader(&self) -> Result<Arc<SegmentReader>, ReadError> {
        if let Some(r) = self.reader.get() {
            return Ok(r.clone());
        }
        let r = SegmentReader::open(&self.path).map_err(|e| match e {
            SegmentError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ReadError::MissingSegment { segment: self.id, source }
            }
            e => ReadError::Segment(e),
        })?;
        Ok(self.reader.get_or_init(|| Arc::new(r)).clone())
    }

    pub fn is_open(&self) -> bool {
        self.reader.get().is_some()
    }
}

/// The tombstones a compaction applies, in the form [`SegmentHandle::with_applied`] takes:
/// sorted by address, so the check per (segment, tombstone) is a binary search, not a scan
/// (a database with thousands of per-device deletes would otherwise make tombstone
/// collection quadratic per segment).
pub fn applied_set(tombstones: &[Arc<Tombstone>]) -> Arc<[Weak<Tombstone>]> {
    let mut v: Vec<Weak<Tombstone>> = tombstones.iter().map(Arc::downgrade).collect();
    v.sort_by_key(|w| w.as_ptr() as usize);
    v.into()
}

/// One time partition of one database.
#[derive(Debug)]
pub struct Partition {
    pub start: i64,
    pub duration: i64,
    pub dir: PathBuf,
    /// Sorted by name (oldest data first); replaced wholesale when segments are added or
    /// removed, so readers hold a consistent snapshot.
    segments: RwLock<Arc<Vec<Arc<SegmentHandle>>>>,
}

impl Partition {
    pub fn new(start: i64, duration: i64, dir: PathBuf) -> Partition {
        Partition { start, duration, dir, segments: RwLock::new(Arc::new(Vec::new())) }
    }

    pub fn end(&self) -> i64 {
        self.start.saturating_add(self.duration)
    }

    /// Last timestamp inside the partition. The last window is cut at i64::MAX, which it
    /// includes.
    pub fn max_ts(&self) -> i64 {
        match self.start.checked_add(self.duration) {
            Some(end) => end - 1,
            None => i64::MAX,
        }
    }

    pub fn overlaps(&self, range: TimeRange) -> bool {
        range.overlaps(self.start, self.max_ts())
    }

    /// A consistent snapshot of the segment list.
    pub fn segments(&self) -> Arc<Vec<Arc<SegmentHandle>>> {
        self.segments.read().clone()
    }

    pub fn add_segment(&self, seg: Arc<SegmentHandle>) {
        let mut g = self.segments.write();
        let mut v: Vec<_> = g.as_ref().clone();
        v.push(seg);
        v.sort_by_key(|s| s.name);
        *g = Arc::new(v);
    }

    /// Swaps compaction inputs for their output in one step; segments added meanwhile stay.
    pub fn replace_segments(&self, inputs: &[Arc<SegmentHandle>], output: Option<Arc<SegmentHandle>>) {
        let mut g = self.segments.write();
        let mut v: Vec<_> = g.iter().filter(|s| !inputs.iter().any(|i| Arc::ptr_eq(i, s))).cloned().collect();
        v.extend(output);
        v.sort_by_key(|s| s.name);
        *g = Arc::new(v);
    }
}

/// The partitions of one database, by start time.
#[derive(Debug, Default)]
pub struct PartitionSet {
    parts: RwLock<BTreeMap<i64, Arc<Partition>>>,
}

impl PartitionSet {
    /// Partitions overlapping `range`, oldest first.
    pub fn overlapping(&self, range: TimeRange) -> Vec<Arc<Partition>> {
        self.parts.read().values().filter(|p| p.overlaps(range)).cloned().collect()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.parts.read().values().cloned().collect()
    }

    /// The partition holding `ts`, created (directory included) if missing.
    pub fn get_or_create(&self, db_dir: &Path, ts: i64, duration: i64) -> std::io::Result<Arc<Partition>> {
        // An existing partition may have another duration (the setting changed): use it if it
        // covers ts.
        if let Some(p) = self.find(ts) {
            return Ok(p);
        }
        let mut parts = self.parts.write();
        if let Some((_, p)) = parts.range(..=ts).next_back() {
            if ts <= p.max_ts() {
                return Ok(p.clone()); // created meanwhile
            }
        }
        // The aligned range, cut to the gap between the neighbours: partitions made under
        // another duration (the setting changed) may overlap it, and partitions never overlap.
        // Without the cut, the partition at the aligned start (made with a shorter duration)
        // was returned although it does not hold `ts`, and the flush splitting a memtable by
        // partition never advanced past that point.
        let aligned = i128::from(partition_start(ts, duration));
        let mut start = aligned;
        let mut end = aligned + i128::from(duration);
        if let Some((_, prev)) = parts.range(..=ts).next_back() {
            start = start.max(i128::from(prev.max_ts()) + 1);
        }
        if let Some((&next, _)) =
            parts.range((std::ops::Bound::Excluded(ts), std::ops::Bound::Unbounded)).next()
        {
            end = end.min(i128::from(next));
        }
        let start = i64::try_from(start).expect("between two partitions' bounds");
        let duration = i64::try_from(end - i128::from(start)).unwrap_or(i64::MAX);
        let dir = db_dir.join(dir_name(start, duration));
        fs::create_dir_all(&dir)?;
        crate::fsutil::sync_dir(db_dir)?;
        let p = Arc::new(Partition::new(start, duration, dir));
        parts.insert(start, p.clone());
        Ok(p)
    }

    /// The partition holding `ts`, if it exists.
    pub fn find(&self, ts: i64) -> Option<Arc<Partition>> {
        let parts = self.parts.read();
        let (_, p) = parts.range(..=ts).next_back()?;
        (ts <= p.max_ts()).then(|| p.clone())
    }

    pub fn insert(&self, p: Arc<Partition>) {
        self.parts.write().insert(p.start, p);
    }

    pub fn remove(&self, start: i64) -> Option<Arc<Partition>> {
        self.parts.write().remove(&start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_duration_never_returns_a_partition_that_misses_the_point() {
        let dir = tempfile::tempdir().unwrap();
        let parts = PartitionSet::default();
        let hour = 3_600_000_000_000i64;
        let day = 24 * hour;
        let first = parts.get_or_create(dir.path(), hour / 2, hour).unwrap();
        assert_eq!((first.start, first.max_ts()), (0, hour - 1));
        // The setting became a day: the aligned day [0, 24h) overlaps the hour partition.
        let p = parts.get_or_create(dir.path(), 2 * hour, day).unwrap();
        assert!(p.start <= 2 * hour && 2 * hour <= p.max_ts(), "[{}, {}]", p.start, p.max_ts());
        assert_eq!((p.start, p.max_ts()), (hour, day - 1), "the rest of the day, after the hour");
        // A point before an existing partition: cut at that partition's start.
        let later = parts.get_or_create(dir.path(), 5 * day + hour, hour).unwrap();
        let p = parts.get_or_create(dir.path(), 5 * day + hour / 2, day).unwrap();
        assert_eq!((p.start, p.max_ts()), (5 * day, later.start - 1));
        // And the same partition again for a point it holds.
        assert!(Arc::ptr_eq(&p, &parts.get_or_create(dir.path(), 5 * day, day).unwrap()));
    }

    #[test]
    fn partition_math_handles_negative_time() {
        let day = 86_400_000_000_000;
        assert_eq!(partition_start(0, day), 0);
        assert_eq!(partition_start(day - 1, day), 0);
        assert_eq!(partition_start(-1, day), -day);
        assert_eq!(partition_start(i64::MIN, day), i64::MIN);
        assert_eq!(partition_start(i64::MAX, day), i64::MAX.div_euclid(day) * day);
        assert_eq!(parse_dir_name(&dir_name(-day, day)), Some((-day, day)));
        assert_eq!(parse_dir_name("junk"), None);
        assert_eq!(parse_dir_name("1_0"), None);
    }

    #[test]
    fn applied_tombstones_are_found_by_identity() {
        let t = |n: u32| {
            Arc::new(Tombstone {
                series: [n].into_iter().collect(),
                range: TimeRange::new(0, 10),
                before_segment: 5,
            })
        };
        let ts: Vec<_> = (0..50).map(t).collect();
        let h = SegmentHandle::new(SegmentName::flushed(1), PathBuf::from("x.seg"))
            .with_applied(applied_set(&ts[..40]));
        assert!(ts[..40].iter().all(|t| h.has_applied(t)));
        assert!(!ts[40..].iter().any(|t| h.has_applied(t)));
        // Equal content is not enough: only the tombstones the compaction had count.
        assert!(!h.has_applied(&t(0)));
        assert!(!SegmentHandle::new(SegmentName::flushed(2), PathBuf::from("y.seg")).has_applied(&ts[0]));
    }
}
