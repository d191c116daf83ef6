//! The data model: series, fields, values and time ranges.

use std::fmt;
use std::sync::Arc;

/// Dense, node-local id of a series (database + measurement + tag set).
///
/// `u32` because the tag postings are roaring bitmaps of series ids, and 4 billion series per
/// node is far past what one node can index in memory anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u32);

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Dense id of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DbId(pub u32);

/// Id of an immutable segment file; also its file name (`00000042.seg`). Higher ids hold newer
/// data for the same (series, field, timestamp), which is how last-write-wins is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentId(pub u64);

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08}", self.0)
    }
}

/// The type of a field column. Fixed per (database, measurement, field) at first write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FieldType {
    F64 = 1,
    I64 = 2,
    U64 = 3,
    Bool = 4,
    Str = 5,
}

impl FieldType {
    pub fn from_u8(v: u8) -> Option<FieldType> {
        Some(match v {
            1 => FieldType::F64,
            2 => FieldType::I64,
            3 => FieldType::U64,
            4 => FieldType::Bool,
            5 => FieldType::Str,
            _ => return None,
        })
    }

    /// InfluxQL's name for the type (`SHOW FIELD KEYS`).
    pub fn influx_name(self) -> &'static str {
        match self {
            FieldType::F64 => "float",
            FieldType::I64 => "integer",
            FieldType::U64 => "unsigned",
            FieldType::Bool => "boolean",
            FieldType::Str => "string",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.influx_name())
    }
}

/// One field value as written by a client.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(&'a str),
}

impl FieldValue<'_> {
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::F64(_) => FieldType::F64,
            FieldValue::I64(_) => FieldType::I64,
            FieldValue::U64(_) => FieldType::U64,
            FieldValue::Bool(_) => FieldType::Bool,
            FieldValue::Str(_) => FieldType::Str,
        }
    }
}

/// Half-open time range `[start, end)` in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: i64,
    pub end: i64,
}

impl TimeRange {
    pub const ALL: TimeRange = TimeRange { start: i64::MIN, end: i64::MAX };

    pub fn new(start: i64, end: i64) -> TimeRange {
        TimeRange { start, end }
    }

    /// Inclusive bounds `[min, max]`, as query languages usually give them.
    pub fn inclusive(min: i64, max: i64) -> TimeRange {
        TimeRange { start: min, end: max.saturating_add(1) }
    }

    pub fn contains(&self, ts: i64) -> bool {
        ts >= self.start && (ts < self.end || (self.end == i64::MAX && ts == i64::MAX))
    }

    /// Whether `[min, max]` (inclusive) overlaps this range.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.contains(min) || self.contains(max) || (min <= self.start && max >= self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.start >= self.end && self.end != i64::MAX
    }
}

/// The identity of a series: its measurement and sorted tag set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub measurement: Box<str>,
    /// Sorted by tag key, keys unique.
    pub tags: Vec<(Box<str>, Box<str>)>,
}

impl SeriesKey {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok().map(|i| self.tags[i].1.as_ref())
    }
}

impl fmt::Display for SeriesKey {
    /// Line-protocol style: `cpu,host=a,region=eu` (InfluxDB's `SHOW SERIES` form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, &self.measurement, &[',', ' '])?;
        for (k, v) in &self.tags {
            f.write_str(",")?;
            write_escaped(f, k, &[',', ' ', '='])?;
            f.write_str("=")?;
            write_escaped(f, v, &[',', ' ', '='])?;
        }
        Ok(())
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str, special: &[char]) -> fmt::Result {
    for c in s.chars() {
        if special.contains(&c) {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    Ok(())
}

/// The values of one column, in time order.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F64(Vec<f64>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

impl Values {
    pub fn new(ty: FieldType) -> Values {
        match ty {
            FieldType::F64 => Values::F64(Vec::new()),
            FieldType::I64 => Values::I64(Vec::new()),
            FieldType::U64 => Values::U64(Vec::new()),
            FieldType::Bool => Values::Bool(Vec::new()),
            FieldType::Str => Values::Str(Vec::new()),
        }
    }

    pub fn field_type(&self) -> FieldType {
        match self {
            Values::F64(_) => FieldType::F64,
            Values::I64(_) => FieldType::I64,
            Values::U64(_) => FieldType::U64,
            Values::Bool(_) => FieldType::Bool,
            Values::Str(_) => FieldType::Str,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Values::F64(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::U64(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        match self {
            Values::F64(v) => v.clear(),
            Values::I64(v) => v.clear(),
            Values::U64(v) => v.clear(),
            Values::Bool(v) => v.clear(),
            Values::Str(v) => v.clear(),
        }
    }

    pub(crate) fn push_value(&mut self, v: &FieldValue<'_>) {
        match (self, v) {
            (Values::F64(a), FieldValue::F64(x)) => a.push(*x),
            (Values::I64(a), FieldValue::I64(x)) => a.push(*x),
            (Values::U64(a), FieldValue::U64(x)) => a.push(*x),
            (Values::Bool(a), FieldValue::Bool(x)) => a.push(*x),
            (Values::Str(a), FieldValue::Str(x)) => a.push((*x).to_owned()),
            _ => debug_assert!(false, "push_value of a different type"),
        }
    }

    /// Approximate heap bytes, for memtable accounting.
    /// Reorders by `perm` (a permutation of indices, possibly shorter: keeps only those).
    pub(crate) fn gather(&self, perm: &[u32]) -> Values {
        fn g<T: Clone>(v: &[T], perm: &[u32]) -> Vec<T> {
            perm.iter().map(|&i| v[i as usize].clone()).collect()
        }
        match self {
            Values::F64(v) => Values::F64(g(v, perm)),
            Values::I64(v) => Values::I64(g(v, perm)),
            Values::U64(v) => Values::U64(g(v, perm)),
            Values::Bool(v) => Values::Bool(g(v, perm)),
            Values::Str(v) => Values::Str(g(v, perm)),
        }
    }

    pub(crate) fn append(&mut self, other: Values) {
        match (self, other) {
            (Values::F64(a), Values::F64(mut b)) => a.append(&mut b),
            (Values::I64(a), Values::I64(mut b)) => a.append(&mut b),
            (Values::U64(a), Values::U64(mut b)) => a.append(&mut b),
            (Values::Bool(a), Values::Bool(mut b)) => a.append(&mut b),
            (Values::Str(a), Values::Str(mut b)) => a.append(&mut b),
            _ => debug_assert!(false, "append of a different type"),
        }
    }
}

/// One column of a series in a scan result: timestamps ascending, unique.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub field: Arc<str>,
    pub timestamps: Vec<i64>,
    pub values: Values,
}

/// One series of a scan result.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub id: SeriesId,
    pub key: Arc<SeriesKey>,
    /// One entry per requested field the series has, in request order (or name order for "all").
    pub columns: Vec<Column>,
}

/// Current time in ns since the epoch (saturating).
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_range_bounds() {
        let r = TimeRange::new(10, 20);
        assert!(r.contains(10));
        assert!(!r.contains(20));
        assert!(r.overlaps(0, 10));
        assert!(!r.overlaps(20, 30));
        assert!(r.overlaps(0, 100));
        assert!(TimeRange::ALL.contains(i64::MAX));
        assert!(TimeRange::ALL.contains(i64::MIN));
        assert!(TimeRange::inclusive(5, 5).contains(5));
        assert!(TimeRange::new(5, 5).is_empty());
    }

    #[test]
    fn series_key_display_escapes() {
        let k = SeriesKey { measurement: "my cpu".into(), tags: vec![("a=b".into(), "x,y".into())] };
        assert_eq!(k.to_string(), "my\\ cpu,a\\=b=x\\,y");
        assert_eq!(k.tag("a=b"), Some("x,y"));
        assert_eq!(k.tag("zz"), None);
    }
}
