//! The memtable of one shard: recent writes, column by column, in arrival order.
//!
//! Values are appended as they arrive (an append is the cheapest thing a write can do); sorting
//! and last-write-wins deduplication happen once, when the memtable is flushed or read. A column
//! remembers whether its timestamps have only grown so the common in-order case skips the sort.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use crate::model::{DbId, FieldType, FieldValue, SeriesId, TimeRange, Values};

/// Per-value bookkeeping overhead assumed by the byte accounting (the timestamp).
const TS_BYTES: usize = 8;
/// Fixed cost charged per new series / column (maps, vectors, names).
const SERIES_OVERHEAD: usize = 96;
const COLUMN_OVERHEAD: usize = 96;

#[derive(Debug)]
pub(crate) struct MemColumn {
    pub field: Arc<str>,
    pub ts: Vec<i64>,
    pub values: Values,
    /// Timestamps strictly increasing so far (no sort or dedup needed).
    pub strictly_increasing: bool,
}

impl MemColumn {
    fn new(field: &str, ty: FieldType) -> MemColumn {
        MemColumn {
            field: Arc::from(field),
            ts: Vec::new(),
            values: Values::new(ty),
            strictly_increasing: true,
        }
    }

    /// The column sorted by time with duplicates resolved (the later write wins), limited to
    /// `range`.
    pub fn sorted(&self, range: TimeRange) -> (Vec<i64>, Values) {
        if self.strictly_increasing {
            let lo = self.ts.partition_point(|&t| t < range.start);
            let hi = if range.end == i64::MAX {
                self.ts.len()
            } else {
                self.ts.partition_point(|&t| t < range.end)
            };
            if lo == 0 && hi == self.ts.len() {
                return (self.ts.clone(), self.values.clone());
            }
            let perm: Vec<u32> = (lo as u32..hi as u32).collect();
            return (self.ts[lo..hi].to_vec(), self.values.gather(&perm));
        }
        let mut perm: Vec<u32> =
            (0..self.ts.len() as u32).filter(|&i| range.contains(self.ts[i as usize])).collect();
        sort_dedup_last_wins(&self.ts, &mut perm);
        let ts = perm.iter().map(|&i| self.ts[i as usize]).collect();
        (ts, self.values.gather(&perm))
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
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    pub series: HashMap<SeriesId, MemSeries, FxBuildHasher>,
    /// Approximate heap bytes held.
    pub bytes: usize,
    pub values: u64,
    pub min_ts: Option<i64>,
    pub max_ts: Option<i64>,
}

impl Memtable {
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
            if col.values.field_type() != value.field_type() {
                debug_assert!(false, "type checked by caller");
                continue;
            }
            if let Some(&last) = col.ts.last() {
                if ts <= last {
                    col.strictly_increasing = false;
                }
            }
            col.ts.push(ts);
            col.values.push_value(&value);
            self.bytes += TS_BYTES + Values::value_bytes(&value);
            self.values += 1;
        }
        self.min_ts = Some(self.min_ts.map_or(ts, |m| m.min(ts)));
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Copies the requested columns of one series within `range`, sorted and deduplicated.
    pub fn read(
        &self,
        id: SeriesId,
        fields: Option<&[&str]>,
        range: TimeRange,
    ) -> Vec<(Arc<str>, Vec<i64>, Values)> {
        let Some(series) = self.series.get(&id) else {
            return Vec::new();
        };
        if let (Some(min), Some(max)) = (self.min_ts, self.max_ts) {
            if !range.overlaps(min, max) {
                return Vec::new();
            }
        }
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
}
