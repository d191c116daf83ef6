//! The write path: split a batch by shard, bound new partitions, resolve series and check
//! field types, log to the WAL, insert into the memtable, commit.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use rustc_hash::{FxBuildHasher, FxHasher};

use crate::batch::{point_at, BatchIter, PointRef, WriteBatch};
use crate::catalog::Catalog;
use crate::error::{RejectReason, RejectedPoint, WriteError};
use crate::model::{DbId, SeriesId};
use crate::partition;

use super::{DbStorage, Inner, SeriesSlot, WriteOutcome};

/// Where one point of a batch is, and its position in the batch (for rejections). Points are
/// passed to the shards by position rather than as decoded [`PointRef`]s: the per-shard lists
/// of a 5,000-point request stay small enough (80 KB) to come from the heap, where lists of
/// 72-byte `PointRef`s grew past the allocator's mmap threshold and were faulted in afresh on
/// every request (a third of the write path's page faults).
#[derive(Debug, Clone, Copy)]
pub(super) struct PointAt {
    offset: usize,
    index: usize,
}

impl PointAt {
    pub(super) fn get<'a>(&self, bytes: &'a [u8]) -> PointRef<'a> {
        point_at(bytes, self.offset).expect("PointAt is the start of a point in validated batch bytes")
    }
}

/// Splits the points `iter` yields (over `bytes`) into one list per shard.
/// `keep(index, timestamp)` says whether a point is written at all (the partition bound).
pub(super) fn split_by_shard(
    bytes: &[u8],
    iter: BatchIter<'_>,
    db: DbId,
    shards: usize,
    mut keep: impl FnMut(usize, i64) -> bool,
) -> Result<Vec<Vec<PointAt>>, crate::batch::BatchDecodeError> {
    let mut parts: Vec<Vec<PointAt>> = (0..shards).map(|_| Vec::new()).collect();
    let base = bytes.as_ptr() as usize;
    for (index, p) in iter.enumerate() {
        let p = p?;
        if !keep(index, p.timestamp) {
            continue;
        }
        let s = if shards == 1 { 0 } else { shard_of(db, p.key, shards) };
        parts[s].push(PointAt { offset: p.raw.as_ptr() as usize - base, index });
    }
    Ok(parts)
}

pub(super) fn shard_of(db: DbId, key: &[u8], shards: usize) -> usize {
    let mut h = FxHasher::default();
    h.write_u32(db.0);
    h.write(key);
    // Fx's low bits are weak; use the high ones.
    ((h.finish() >> 32) as usize) % shards
}

/// Database names become directory names: keep them portable and unambiguous.
pub fn validate_db_name(name: &str) -> Result<(), WriteError> {
    let bad = |reason| Err(WriteError::InvalidDatabase { name: name.to_owned(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 64 {
        return bad("longer than 64 bytes");
    }
    if name.starts_with('.') {
        return bad("starts with a dot");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
        return bad("only ASCII letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

impl Inner {
    /// `sync`: wait for an fsync as the policy says (else only for the write to the OS).
    pub(crate) fn write(&self, db: &str, batch: &WriteBatch, sync: bool) -> Result<WriteOutcome, WriteError> {
        let inner = self;
        if inner.poisoned.load(Ordering::Acquire) {
            return Err(WriteError::Poisoned);
        }
        if inner.shutdown.load(Ordering::Acquire) {
            return Err(WriteError::ShuttingDown);
        }
        let db_id =
            inner.catalog.db_id(db).ok_or_else(|| WriteError::DatabaseNotFound { name: db.to_owned() })?;
        let mut outcome = WriteOutcome::default();
        if batch.is_empty() {
            return Ok(outcome);
        }
        let n = inner.shards.len();
        let mut commits: Vec<(usize, u64)> = Vec::with_capacity(n);
        let bytes = batch.as_bytes();
        let mut bound = inner.partition_bound(db_id);
        let parts = split_by_shard(bytes, BatchIter::trusted(bytes), db_id, n, |index, ts| {
            bound.admit(index, ts, &mut outcome)
        })
        .expect("a WriteBatch built by its builder always decodes");
        drop(bound);
        for (s, points) in parts.iter().enumerate() {
            if points.is_empty() {
                continue;
            }
            if let Some(pos) = inner.write_shard(s, db_id, db, bytes, points, &mut outcome, true)? {
                commits.push((s, pos));
            }
        }
        for (s, pos) in commits {
            inner.shards[s].wal().commit_with(pos, sync)?;
        }
        outcome.rejected.sort_by_key(|r| r.index);
        let st = &inner.stats;
        st.points_written.fetch_add(outcome.points_written as u64, Ordering::Relaxed);
        st.values_written.fetch_add(outcome.values_written as u64, Ordering::Relaxed);
        st.points_rejected.fetch_add(outcome.rejected.len() as u64, Ordering::Relaxed);
        Ok(outcome)
    }
}

impl Inner {
    /// The state of `max_new_partitions_per_write` for one write to `db`.
    pub(super) fn partition_bound(&self, db: DbId) -> PartitionBound<'_> {
        let default_dur = self.opts.partition_duration.as_nanos().min(i64::MAX as u128) as i64;
        PartitionBound {
            limit: self.opts.max_new_partitions_per_write,
            dur: self.catalog.retention(db).and_then(|rp| rp.partition_duration).unwrap_or(default_dur),
            storage: self.dbs.read().get(&db).cloned(),
            known: (1, 0),
            created: 0,
            admitted: &self.admitted_partitions,
            db,
        }
    }
}

/// Refuses the points of one write that would create more than `max_new_partitions_per_write`
/// partitions that do not exist yet. Consecutive points usually share a partition, so most
/// points cost one range comparison.
pub(super) struct PartitionBound<'a> {
    limit: usize,
    dur: i64,
    storage: Option<Arc<DbStorage>>,
    /// A time range known to be in an existing or admitted partition (empty at first).
    known: (i64, i64),
    created: usize,
    admitted: &'a Mutex<HashMap<DbId, HashSet<i64>>>,
    db: DbId,
}

impl PartitionBound<'_> {
    pub(super) fn admit(&mut self, index: usize, ts: i64, outcome: &mut WriteOutcome) -> bool {
        if self.limit == 0 || (self.known.0 <= ts && ts <= self.known.1) {
            return true;
        }
        if let Some(part) = self.storage.as_ref().and_then(|s| s.partitions.find(ts)) {
            self.known = (part.start, part.max_ts());
            return true;
        }
        let start = partition::partition_start(ts, self.dur);
        let range = (start, start.saturating_add(self.dur - 1));
        let mut admitted = self.admitted.lock();
        let set = admitted.entry(self.db).or_default();
        if set.contains(&start) || self.created < self.limit {
            if set.insert(start) {
                self.created += 1;
            }
            self.known = range;
            return true;
        }
        let limit = self.limit;
        outcome.rejected.push(RejectedPoint {
            index,
            reason: RejectReason::TooManyNewPartitions { timestamp: ts, limit },
        });
        false
    }
}

impl Inner {
    /// Writes the points of one shard. Returns the WAL position to commit, if anything was
    /// appended. `log` is false during replay.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_shard(
        &self,
        s: usize,
        db: DbId,
        db_name: &str,
        bytes: &[u8],
        points: &[PointAt],
        outcome: &mut WriteOutcome,
        log: bool,
    ) -> Result<Option<u64>, WriteError> {
        let shard = &self.shards[s];
        let mut st = shard.state.lock();
        if log && st.frozen.len() >= self.opts.max_frozen_memtables {
            self.stats.write_stalls.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + self.opts.write_stall_timeout;
            while st.frozen.len() >= self.opts.max_frozen_memtables {
                if self.poisoned.load(Ordering::Acquire) {
                    return Err(WriteError::Poisoned);
                }
                if self.shutdown.load(Ordering::Acquire) {
                    return Err(WriteError::ShuttingDown);
                }
                if shard.flushed_cv.wait_until(&mut st, deadline).timed_out()
                    && st.frozen.len() >= self.opts.max_frozen_memtables
                {
                    self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
                    return Err(WriteError::Overloaded);
                }
            }
        }
        let st = &mut *st;
        if log && st.active.bytes >= self.shard_limit {
            // An earlier freeze ran out of resources and left the memtable full: try again,
            // and refuse this write (nothing is logged yet) if it fails again.
            self.freeze(shard, st)?;
        }
        // Pass 1: resolve series and check field types; nothing is logged or inserted yet, so
        // a refused point never reaches the WAL.
        let mut ids: Vec<Option<SeriesId>> = Vec::with_capacity(points.len());
        let lookup = st.lookup.entry(db).or_default();
        let cutoff = self.retention_cutoff(db, crate::model::now_ns()).unwrap_or(i64::MIN);
        for at in points {
            let p = at.get(bytes);
            if p.timestamp < cutoff {
                ids.push(None);
                let reason = RejectReason::BeyondRetention { timestamp: p.timestamp, cutoff };
                outcome.rejected.push(RejectedPoint { index: at.index, reason });
                continue;
            }
            match resolve_point(&self.catalog, lookup, db, &p) {
                Ok(id) => ids.push(Some(id)),
                Err(reason) => {
                    ids.push(None);
                    outcome.rejected.push(RejectedPoint { index: at.index, reason });
                }
            }
        }
        let accepted = ids.iter().filter(|i| i.is_some()).count();
        if accepted == 0 {
            return Ok(None);
        }
        // Pass 2: log and insert. Both happen under the shard lock, so WAL order is memtable
        // order, and nothing can fail between them.
        // Ids below `durable` are in the catalog on disk: the WAL names those by id alone.
        let durable = self.catalog.durable_series();
        if log {
            st.encoder.begin(db_name);
        }
        let mut last = self.last.writer();
        for (at, id) in points.iter().zip(&ids) {
            if let Some(id) = id {
                let p = at.get(bytes);
                if log {
                    st.encoder.push(*id, id.0 < durable, p.key, p.timestamp, p.field_bytes());
                }
                st.active.insert(db, *id, p.timestamp, p.field_bytes());
                last.observe(db, *id, p.timestamp, p.field_bytes());
                outcome.points_written += 1;
                outcome.values_written += p.n_fields as usize;
            }
        }
        drop(last);
        let pos = log.then(|| shard.wal().append(st.encoder.payload()));
        if log && self.catalog.has_unsynced_series() {
            // New series: have the catalog synced soon, so their later points name them by id.
            self.request_catalog_sync();
        }
        if log && st.active.bytes >= self.shard_limit {
            match self.freeze(shard, st) {
                Ok(()) => {}
                // The points are logged and in the memtable: this write goes on to its commit;
                // the next write of the shard tries the freeze again (above).
                Err(e) if e.is_retryable() => {
                    tracing::warn!(shard = s, error = %e, "freezing the memtable failed for lack of resources; retried on the next write");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(pos)
    }
}

/// Resolves a point's series (creating it if new) and checks its field types.
pub(super) fn resolve_point(
    catalog: &Catalog,
    lookup: &mut HashMap<Box<[u8]>, SeriesSlot, FxBuildHasher>,
    db: DbId,
    p: &crate::batch::PointRef<'_>,
) -> Result<SeriesId, RejectReason> {
    if let Some(slot) = lookup.get_mut(p.key) {
        return check_fields(catalog, db, p, slot);
    }
    let (id, _) = catalog.add_series(db, p.key, p.series_key())?;
    let mut slot = SeriesSlot { id, fields: Vec::new() };
    let res = check_fields(catalog, db, p, &mut slot);
    lookup.insert(p.key.into(), slot);
    res
}

pub(super) fn check_fields(
    catalog: &Catalog,
    db: DbId,
    p: &crate::batch::PointRef<'_>,
    slot: &mut SeriesSlot,
) -> Result<SeriesId, RejectReason> {
    for (j, (name, value)) in p.field_bytes().enumerate() {
        let ty = value.field_type();
        // Same order as last time is the common case: try position j first.
        let known = match slot.fields.get(j) {
            Some((n, t)) if n.as_bytes() == name => Some(*t),
            _ => slot.fields.iter().find(|(n, _)| n.as_bytes() == name).map(|(_, t)| *t),
        };
        let name_str = || std::str::from_utf8(name).expect("validated utf-8");
        match known {
            Some(t) if t == ty => {}
            Some(t) => {
                return Err(RejectReason::FieldTypeConflict {
                    field: name_str().to_owned(),
                    expected: t,
                    got: ty,
                });
            }
            None => {
                let measurement = std::str::from_utf8(p.measurement()).expect("validated utf-8");
                catalog.check_field(db, measurement, name_str(), ty)?;
                slot.fields.push((name_str().into(), ty));
            }
        }
    }
    Ok(slot.id)
}
