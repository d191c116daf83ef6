//! The last-value cache: per series, the newest point of every field, so `last()` per series
//! (dashboards, "where is every truck now") is a lookup instead of a read.
//!
//! Kept exact by four rules:
//! - every accepted point updates it on the write path, under its shard's lock, so two writes
//!   of one series update it in WAL order: a later write of the same timestamp wins, as it
//!   does in the memtables; a late point older than the known newest changes nothing. WAL
//!   replay goes through the same path;
//! - what segments held before this process opened them is merged in once per database, when
//!   the first query asks (`Inner::warm_last_values`), from the segment index (the newest
//!   block of each column and its `last` statistic). Lazily, because segments of old
//!   partitions are opened only when a read touches them; a full scan for `last()` would open
//!   them all anyway;
//! - a delete (or dropped partition) that removes a field's newest point leaves
//!   [`Last::Below`]: the newest remaining point is older than a bound but unknown, and a read
//!   of that field falls back to the segments; a later write at or above the bound is the
//!   newest again;
//! - an entry answers a read of `[start, end)` only if its point lies before `end` (the entry
//!   is the newest point of all time, so then it is also the newest in the range, and if it
//!   lies before `start` the range holds nothing). Otherwise the read falls back.
//!
//! Memory: one entry per (series, field) that ever had a point, about 48 bytes plus the field
//! name and, for strings, the value; bounded like the series by `max_series_per_db`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;
use rustc_hash::FxBuildHasher;

use crate::model::{DbId, FieldType, FieldValue, SeriesId, TimeRange, Values};

/// Independent locks, by series id, so readers and the writers of different shards rarely meet.
const STRIPES: usize = 64;

/// A value of a cached point.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LastValue {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(String),
}

impl LastValue {
    fn of(v: &FieldValue<'_>) -> LastValue {
        match *v {
            FieldValue::F64(x) => LastValue::F64(x),
            FieldValue::I64(x) => LastValue::I64(x),
            FieldValue::U64(x) => LastValue::U64(x),
            FieldValue::Bool(x) => LastValue::Bool(x),
            FieldValue::Str(s) => LastValue::Str(s.to_owned()),
        }
    }

    /// The value at `i` of `values`.
    pub fn at(values: &Values, i: usize) -> LastValue {
        match values {
            Values::F64(v) => LastValue::F64(v[i]),
            Values::I64(v) => LastValue::I64(v[i]),
            Values::U64(v) => LastValue::U64(v[i]),
            Values::Bool(v) => LastValue::Bool(v[i]),
            Values::Str(v) => LastValue::Str(v[i].clone()),
        }
    }

    pub fn field_type(&self) -> FieldType {
        match self {
            LastValue::F64(_) => FieldType::F64,
            LastValue::I64(_) => FieldType::I64,
            LastValue::U64(_) => FieldType::U64,
            LastValue::Bool(_) => FieldType::Bool,
            LastValue::Str(_) => FieldType::Str,
        }
    }

    /// As a one-value column.
    pub fn into_values(self) -> Values {
        match self {
            LastValue::F64(x) => Values::F64(vec![x]),
            LastValue::I64(x) => Values::I64(vec![x]),
            LastValue::U64(x) => Values::U64(vec![x]),
            LastValue::Bool(x) => Values::Bool(vec![x]),
            LastValue::Str(x) => Values::Str(vec![x]),
        }
    }
}

/// What the cache knows of one column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Last {
    /// The column's newest point: no point of the column is later.
    Known(i64, LastValue),
    /// Every point of the column is older than this bound; which is newest is not known.
    Below(i64),
}

impl Last {
    /// Combines what is known of two sets of points of one column (`self` from newer writes
    /// than `other`, which loses a tie).
    fn merge(self, other: Last) -> Last {
        match (self, other) {
            (Last::Known(t, v), Last::Known(u, w)) => {
                if u > t {
                    Last::Known(u, w)
                } else {
                    Last::Known(t, v)
                }
            }
            (Last::Known(t, v), Last::Below(b)) | (Last::Below(b), Last::Known(t, v)) => {
                if t >= b {
                    Last::Known(t, v)
                } else {
                    Last::Below(b)
                }
            }
            (Last::Below(a), Last::Below(b)) => Last::Below(a.max(b)),
        }
    }

    /// After the points in `range` are removed. `None`: nothing can remain.
    fn remove(self, range: TimeRange) -> Option<Last> {
        let bound = match &self {
            Last::Known(t, _) if range.contains(*t) => *t,
            Last::Below(b) if *b > range.start && (range.end == i64::MAX || *b <= range.end) => *b,
            _ => return Some(self),
        };
        // Every point was below `bound`, and those in `[range.start, bound)` are gone.
        debug_assert!(bound >= range.start);
        (range.start > i64::MIN).then_some(Last::Below(range.start))
    }
}

#[derive(Debug)]
struct FieldLast {
    field: Arc<str>,
    last: Last,
}

#[derive(Debug)]
struct SeriesLast {
    db: DbId,
    fields: Vec<FieldLast>,
}

/// The answer of the cache for one series and a range.
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup {
    /// The newest point of each requested field in the range, in the request's field order
    /// (name order when every field is requested); fields without a point are absent.
    Points(Vec<(Arc<str>, i64, LastValue)>),
    /// The cache cannot tell: read the series.
    Unknown,
}

/// The cache of one engine.
#[derive(Debug)]
pub(crate) struct LastValues {
    stripes: Box<[Mutex<Stripe>]>,
    /// Databases whose segments written before the engine opened have been merged in.
    warm: RwLock<HashSet<DbId>>,
}

impl Default for LastValues {
    fn default() -> LastValues {
        LastValues {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::default())).collect(),
            warm: RwLock::default(),
        }
    }
}

impl LastValues {
    fn stripe(&self, id: SeriesId) -> &Mutex<Stripe> {
        &self.stripes[stripe_of(id)]
    }

    /// An updater for the points of one write, under the shard lock: it keeps the stripe of
    /// the last point locked while the next points fall in the same one (a batch's points are
    /// mostly consecutive series ids, which share stripes), so most points take no lock.
    pub fn writer(&self) -> LastWriter<'_> {
        LastWriter { cache: self, held: None }
    }

    /// A point was accepted. Called under the series' shard lock, in WAL order.
    #[cfg(test)]
    pub fn observe<'a>(
        &self,
        db: DbId,
        id: SeriesId,
        ts: i64,
        fields: impl Iterator<Item = (&'a [u8], FieldValue<'a>)>,
    ) {
        self.writer().observe(db, id, ts, fields);
    }

    /// Whether the segments of `db` from before the open are merged in.
    pub fn is_warm(&self, db: DbId) -> bool {
        self.warm.read().contains(&db)
    }

    pub fn set_warm(&self, db: DbId) {
        self.warm.write().insert(db);
    }

    /// Merges what the segments say of one column; the cache wins a tie (its points are newer
    /// writes than anything the segments held before the open).
    pub fn merge_settled(&self, db: DbId, id: SeriesId, field: &Arc<str>, last: Last) {
        let mut stripe = self.stripe(id).lock();
        let series = stripe.entry(id).or_insert_with(|| SeriesLast { db, fields: Vec::new() });
        match series.fields.iter_mut().find(|f| f.field == *field) {
            Some(f) => {
                let cur = std::mem::replace(&mut f.last, Last::Below(i64::MIN));
                f.last = cur.merge(last);
            }
            None => series.fields.push(FieldLast { field: field.clone(), last }),
        }
    }

    /// Points of `series` in `range` were deleted. Called after the tombstone is recorded.
    pub fn deleted(&self, series: &RoaringBitmap, range: TimeRange) {
        for id in series.iter().map(SeriesId) {
            let mut stripe = self.stripe(id).lock();
            if let Some(s) = stripe.get_mut(&id) {
                remove_range(s, range);
            }
        }
    }

    /// Every point of `db` in `range` is gone (a partition dropped by retention).
    pub fn expired(&self, db: DbId, range: TimeRange) {
        for stripe in self.stripes.iter() {
            for s in stripe.lock().values_mut().filter(|s| s.db == db) {
                remove_range(s, range);
            }
        }
    }

    /// Series dropped (or whole databases): their ids are never used again.
    pub fn forget(&self, dropped: impl Fn(DbId, SeriesId) -> bool) {
        for stripe in self.stripes.iter() {
            stripe.lock().retain(|&id, s| !dropped(s.db, id));
        }
    }

    /// What the cache can say of series `id` in `range` (after retention clipping).
    pub fn lookup(&self, id: SeriesId, fields: Option<&[&str]>, range: TimeRange) -> Lookup {
        let stripe = self.stripe(id).lock();
        let Some(series) = stripe.get(&id) else {
            return Lookup::Points(Vec::new());
        };
        let mut out = Vec::new();
        let wanted = series.fields.iter().filter(|f| fields.is_none_or(|w| w.contains(&&*f.field)));
        for f in wanted {
            match &f.last {
                Last::Known(t, _) if *t < range.start => {}
                Last::Known(t, v) if range.contains(*t) => out.push((f.field.clone(), *t, v.clone())),
                Last::Below(b) if *b <= range.start => {}
                _ => return Lookup::Unknown,
            }
        }
        match fields {
            Some(order) => out.sort_by_key(|c| order.iter().position(|f| *f == &*c.0)),
            None => out.sort_by(|a, b| a.0.cmp(&b.0)),
        }
        Lookup::Points(out)
    }
}

type Stripe = HashMap<SeriesId, SeriesLast, FxBuildHasher>;

/// See [`LastValues::writer`]. Dropping it releases the stripe it holds.
pub(crate) struct LastWriter<'a> {
    cache: &'a LastValues,
    held: Option<(usize, parking_lot::MutexGuard<'a, Stripe>)>,
}

impl LastWriter<'_> {
    /// A point was accepted. Called under the series' shard lock, in WAL order.
    pub fn observe<'a>(
        &mut self,
        db: DbId,
        id: SeriesId,
        ts: i64,
        fields: impl Iterator<Item = (&'a [u8], FieldValue<'a>)>,
    ) {
        let i = stripe_of(id);
        if self.held.as_ref().is_none_or(|(held, _)| *held != i) {
            self.held = None;
            self.held = Some((i, self.cache.stripes[i].lock()));
        }
        let (_, stripe) = self.held.as_mut().expect("locked above");
        let series = stripe.entry(id).or_insert_with(|| SeriesLast { db, fields: Vec::new() });
        for (j, (name, value)) in fields.enumerate() {
            // Devices send their fields in the same order every time: try position j first.
            let hit = series.fields.get(j).is_some_and(|f| f.field.as_bytes() == name);
            let idx =
                if hit { Some(j) } else { series.fields.iter().position(|f| f.field.as_bytes() == name) };
            let Some(i) = idx else {
                let name = std::str::from_utf8(name).expect("field names are validated UTF-8");
                series
                    .fields
                    .push(FieldLast { field: Arc::from(name), last: Last::Known(ts, LastValue::of(&value)) });
                continue;
            };
            let f = &mut series.fields[i];
            match &mut f.last {
                Last::Known(t, _) if ts < *t => {}
                Last::Below(b) if ts < *b => {}
                // The common case: a newer string replaces the old one in its buffer.
                Last::Known(t, LastValue::Str(s)) if matches!(value, FieldValue::Str(_)) => {
                    let FieldValue::Str(new) = value else { unreachable!("matched above") };
                    *t = ts;
                    s.clear();
                    s.push_str(new);
                }
                last => *last = Last::Known(ts, LastValue::of(&value)),
            }
        }
    }
}

/// Runs of 64 consecutive ids per stripe, not `id % STRIPES`: the keys of one stripe would
/// then share their low bits, and so would their Fx hashes, which hashbrown uses to pick a
/// bucket (measured: long probe chains at 100,000 series).
fn stripe_of(id: SeriesId) -> usize {
    (id.0 as usize >> 6) % STRIPES
}

fn remove_range(s: &mut SeriesLast, range: TimeRange) {
    s.fields.retain_mut(|f| {
        let cur = std::mem::replace(&mut f.last, Last::Below(i64::MIN));
        match cur.remove(range) {
            Some(l) => {
                f.last = l;
                true
            }
            None => false,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> LastValue {
        LastValue::F64(v)
    }

    fn observe(c: &LastValues, id: u32, ts: i64, v: f64) {
        c.observe(DbId(0), SeriesId(id), ts, [(&b"v"[..], FieldValue::F64(v))].into_iter());
    }

    fn points(c: &LastValues, id: u32, range: TimeRange) -> Lookup {
        c.lookup(SeriesId(id), None, range)
    }

    fn one(ts: i64, v: f64) -> Lookup {
        Lookup::Points(vec![(Arc::from("v"), ts, f(v))])
    }

    #[test]
    fn later_writes_win_and_late_points_change_nothing() {
        let c = LastValues::default();
        observe(&c, 1, 10, 1.0);
        observe(&c, 1, 5, 2.0);
        assert_eq!(points(&c, 1, TimeRange::ALL), one(10, 1.0));
        observe(&c, 1, 10, 3.0);
        assert_eq!(points(&c, 1, TimeRange::ALL), one(10, 3.0));
        // A range ending at or before the newest point cannot be answered; one starting after
        // it holds nothing.
        assert_eq!(points(&c, 1, TimeRange::new(0, 10)), Lookup::Unknown);
        assert_eq!(points(&c, 1, TimeRange::new(11, 20)), Lookup::Points(vec![]));
        assert_eq!(points(&c, 2, TimeRange::ALL), Lookup::Points(vec![]));
    }

    #[test]
    fn deletes_leave_a_bound_until_a_newer_write() {
        let c = LastValues::default();
        observe(&c, 1, 10, 1.0);
        let ids: RoaringBitmap = [1].into_iter().collect();
        // A delete that misses the newest point changes nothing.
        c.deleted(&ids, TimeRange::new(0, 10));
        assert_eq!(points(&c, 1, TimeRange::ALL), one(10, 1.0));
        c.deleted(&ids, TimeRange::new(5, 20));
        assert_eq!(points(&c, 1, TimeRange::ALL), Lookup::Unknown);
        assert_eq!(
            points(&c, 1, TimeRange::new(5, 100)),
            Lookup::Points(vec![]),
            "nothing left at or after 5"
        );
        observe(&c, 1, 3, 4.0);
        assert_eq!(points(&c, 1, TimeRange::ALL), Lookup::Unknown, "3 may not be the newest below 5");
        observe(&c, 1, 7, 5.0);
        assert_eq!(points(&c, 1, TimeRange::ALL), one(7, 5.0));
        // Deleting everything forgets the column.
        c.deleted(&ids, TimeRange::ALL);
        assert_eq!(points(&c, 1, TimeRange::ALL), Lookup::Points(vec![]));
    }

    #[test]
    fn settled_points_merge_under_newer_writes() {
        let c = LastValues::default();
        let v: Arc<str> = Arc::from("v");
        observe(&c, 1, 10, 1.0);
        c.merge_settled(DbId(0), SeriesId(1), &v, Last::Known(10, f(9.0)));
        assert_eq!(points(&c, 1, TimeRange::ALL), one(10, 1.0), "the cache wins a tie");
        c.merge_settled(DbId(0), SeriesId(1), &v, Last::Known(20, f(9.0)));
        assert_eq!(points(&c, 1, TimeRange::ALL), one(20, 9.0));
        c.merge_settled(DbId(0), SeriesId(2), &v, Last::Below(30));
        assert_eq!(points(&c, 2, TimeRange::ALL), Lookup::Unknown);
        observe(&c, 2, 30, 2.0);
        assert_eq!(points(&c, 2, TimeRange::ALL), one(30, 2.0));
        c.expired(DbId(0), TimeRange::new(0, 100));
        assert_eq!(points(&c, 2, TimeRange::ALL), Lookup::Unknown);
        assert_eq!(points(&c, 2, TimeRange::new(0, i64::MAX)), Lookup::Points(vec![]));
        c.forget(|_, id| id == SeriesId(2));
        assert_eq!(points(&c, 2, TimeRange::ALL), Lookup::Points(vec![]));
    }
}
