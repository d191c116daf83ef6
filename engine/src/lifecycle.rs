//! Data lifecycle: deletes, drops and retention policies.
//!
//! Every operation that removes data first flushes the memtables (and with them the WAL files
//! that covered them), then records its decision in the catalog log and syncs it. That order is
//! what makes them crash-safe: after a restart nothing the WAL replays predates the record, so
//! no deleted point can come back, and a crash before the record is durable means the operation
//! was never acknowledged.
//!
//! - `DELETE` adds a [`Tombstone`]: matching points in segments older than the tombstone are
//!   hidden from reads at once and removed for good by compaction; once no segment can hold
//!   them any more, the tombstone itself is collected ([`Inner::collect_tombstones`]).
//! - `DROP SERIES` / `DROP MEASUREMENT` remove series from the catalog and index: they vanish
//!   from reads at once (series ids are never reused); compaction drops their blocks.
//! - `DROP DATABASE` removes the database from the catalog, then moves its directory to
//!   `<data>/trash/` and deletes it; a directory of a database the catalog does not know is a
//!   leftover of a crash during a drop and is deleted at open.
//! - Retention: one [`RetentionPolicy`] per database. Reads never see points older than
//!   `now - duration`, writes of such points are refused, and the maintenance thread drops whole
//!   partitions once their newest possible timestamp is past the cutoff.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use roaring::RoaringBitmap;

use crate::catalog::{RetentionPolicy, Tombstone};
use crate::engine::{Engine, Inner};
use crate::error::LifecycleError;
use crate::index::TagPredicate;
use crate::model::{now_ns, DbId, SeriesId, TimeRange};

impl Engine {
    fn lifecycle_db(&self, name: &str) -> Result<DbId, LifecycleError> {
        self.inner
            .catalog
            .db_id(name)
            .ok_or_else(|| LifecycleError::DatabaseNotFound { name: name.to_owned() })
    }

    /// `DELETE FROM <measurement> WHERE <pred> AND time in range`: hides the matching points
    /// (every measurement when `measurement` is `None`). Returns the number of series touched.
    pub fn delete(
        &self,
        db: &str,
        measurement: Option<&str>,
        pred: &TagPredicate,
        range: TimeRange,
    ) -> Result<u64, LifecycleError> {
        let id = self.lifecycle_db(db)?;
        let series = self.inner.matching_series(id, measurement, pred);
        if series.is_empty() || range.is_empty() {
            return Ok(0);
        }
        let n = {
            let _admin = self.inner.admin.lock();
            // No compaction may run between reading `before_segment` and recording the tombstone:
            // one that snapshotted its inputs in between could merge pre-delete data into an
            // output newer than the tombstone without knowing the tombstone.
            let _maintenance = self.inner.maintenance.lock();
            // Only the shards whose memtables hold one of these series are flushed: the
            // others hold nothing the tombstone must cover (their WAL files hold no more
            // than their memtables), and other databases' data stays in memory.
            self.inner.flush_shards(|st| holds(st, |d, s| d == id && series.contains(s.0)))?;
            let before_segment = self.inner.next_segment.load(Ordering::SeqCst);
            let n = series.len();
            self.inner.last.deleted(&series, range);
            self.inner.catalog.add_tombstone(id, Tombstone { series, range, before_segment });
            self.inner.catalog.sync()?;
            tracing::info!(
                database = db,
                measurement,
                series = n,
                ?range,
                "points deleted (tombstone recorded)"
            );
            n
        };
        self.delete_rollups(db, measurement, pred, range)?;
        Ok(n)
    }

    /// `DROP SERIES`: removes matching series and all their data. Returns how many.
    pub fn drop_series(
        &self,
        db: &str,
        measurement: Option<&str>,
        pred: &TagPredicate,
    ) -> Result<u64, LifecycleError> {
        let id = self.lifecycle_db(db)?;
        let _admin = self.inner.admin.lock();
        let series = self.inner.matching_series(id, measurement, pred);
        if series.is_empty() {
            return Ok(0);
        }
        // Flush first so the WAL holds nothing of these series that a replay could revive
        // (only shards whose memtables hold them: a shard's WAL holds no more than those).
        self.inner.flush_shards(|st| holds(st, |d, s| d == id && series.contains(s.0)))?;
        self.inner.catalog.drop_series(&series);
        self.inner.catalog.sync()?;
        self.inner.forget_series(|_, sid| series.contains(sid.0));
        tracing::info!(database = db, measurement, series = series.len(), "series dropped");
        Ok(series.len())
    }

    /// `DROP MEASUREMENT`: drops every series of the measurement (and with the last one, its
    /// field types).
    pub fn drop_measurement(&self, db: &str, measurement: &str) -> Result<u64, LifecycleError> {
        self.drop_series(db, Some(measurement), &TagPredicate::All)
    }

    /// `DROP DATABASE`: removes the database and its files. `false` if it did not exist.
    pub fn drop_database(&self, db: &str) -> Result<bool, LifecycleError> {
        let Some(id) = self.inner.catalog.db_id(db) else { return Ok(false) };
        let _admin = self.inner.admin.lock();
        let _maintenance = self.inner.maintenance.lock();
        self.inner.flush_shards(|st| holds(st, |d, _| d == id))?;
        if self.inner.catalog.drop_db(db).is_none() {
            return Ok(false);
        }
        self.inner.catalog.sync()?;
        self.inner.forget_series(|d, _| d == id);
        let storage = self.inner.dbs.write().remove(&id);
        let dir =
            storage.map(|s| s.dir.clone()).unwrap_or_else(|| self.inner.opts.data_dir.join("dbs").join(db));
        self.inner.trash(&dir)?;
        tracing::info!(database = db, "database dropped");
        Ok(true)
    }

    /// The retention policy of a database.
    pub fn retention_policy(&self, db: &str) -> Result<RetentionPolicy, LifecycleError> {
        let id = self.lifecycle_db(db)?;
        Ok(self.inner.catalog.retention(id).unwrap_or_default())
    }

    /// Sets the retention policy of a database. Shortening it hides expired data at once;
    /// the next maintenance pass (or [`Engine::enforce_retention`]) deletes it.
    pub fn set_retention_policy(&self, db: &str, rp: RetentionPolicy) -> Result<(), LifecycleError> {
        let id = self.lifecycle_db(db)?;
        if rp.name.is_empty() || rp.name.len() > 64 {
            return Err(LifecycleError::InvalidPolicy(format!("name {:?} must be 1 to 64 bytes", rp.name)));
        }
        if rp.duration.is_some_and(|d| d <= 0) {
            return Err(LifecycleError::InvalidPolicy("duration must be positive (or infinite)".into()));
        }
        if rp.partition_duration.is_some_and(|d| d <= 0) {
            return Err(LifecycleError::InvalidPolicy("partition duration must be positive".into()));
        }
        let _admin = self.inner.admin.lock();
        self.inner.catalog.set_retention(id, rp);
        self.inner.catalog.sync()?;
        Ok(())
    }

    /// Drops every partition wholly past its database's retention. Returns how many.
    pub fn enforce_retention(&self) -> Result<usize, LifecycleError> {
        self.inner.enforce_retention(now_ns())
    }
}

/// Whether a shard's memtables (active or frozen) hold a series `f` selects.
fn holds(st: &crate::engine::ShardState, f: impl Fn(DbId, SeriesId) -> bool) -> bool {
    let mem_holds = |m: &crate::memtable::Memtable| m.series.iter().any(|(&id, s)| f(s.db, id));
    mem_holds(&st.active) || st.frozen.iter().any(|fz| mem_holds(&fz.mem))
}

impl Inner {
    /// Series of `measurement` (or of every measurement) matching `pred`.
    pub(crate) fn matching_series(
        &self,
        db: DbId,
        measurement: Option<&str>,
        pred: &TagPredicate,
    ) -> RoaringBitmap {
        match measurement {
            Some(m) => self.catalog.resolve(db, m, pred),
            None => {
                let names: Vec<String> = self
                    .catalog
                    .with_db(db, |d| d.measurements.keys().cloned().collect())
                    .unwrap_or_default();
                names
                    .iter()
                    .map(|m| self.catalog.resolve(db, m, pred))
                    .fold(RoaringBitmap::new(), |a, b| a | b)
            }
        }
    }

    /// Removes series from the shards' key lookups so that new writes of the same key get a
    /// fresh series id instead of the dropped one.
    fn forget_series(&self, dropped: impl Fn(DbId, SeriesId) -> bool) {
        self.last.forget(&dropped);
        for shard in &self.shards {
            let mut st = shard.state.lock();
            for (&db, lookup) in st.lookup.iter_mut() {
                lookup.retain(|_, slot| !dropped(db, slot.id));
            }
        }
    }

    /// The oldest timestamp a database still keeps, if its policy expires data.
    pub(crate) fn retention_cutoff(&self, db: DbId, now: i64) -> Option<i64> {
        let d = self.catalog.retention(db)?.duration?;
        Some(now.saturating_sub(d))
    }

    /// The part of `range` a database's retention policy still keeps.
    pub(crate) fn visible_range(&self, db: DbId, range: TimeRange) -> TimeRange {
        match self.retention_cutoff(db, now_ns()) {
            Some(cutoff) if cutoff > range.start => TimeRange { start: cutoff, end: range.end },
            _ => range,
        }
    }

    pub(crate) fn enforce_retention(&self, now: i64) -> Result<usize, LifecycleError> {
        let _maintenance = self.maintenance.lock();
        let dbs: Vec<_> = self.dbs.read().iter().map(|(id, s)| (*id, s.clone())).collect();
        let mut dropped = 0;
        for (db, storage) in dbs {
            let Some(cutoff) = self.retention_cutoff(db, now) else { continue };
            for part in storage.partitions.all() {
                if part.max_ts() >= cutoff {
                    continue;
                }
                storage.partitions.remove(part.start);
                self.last.expired(db, TimeRange::inclusive(part.start, part.max_ts()));
                if let Err(e) = self.trash(&part.dir) {
                    // The partition may still be on disk at the next open.
                    self.tombstone_gc_blocked.store(true, Ordering::Release);
                    return Err(e);
                }
                dropped += 1;
                self.stats.partitions_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(dir = %part.dir.display(), "partition past retention dropped");
            }
        }
        if dropped > 0 {
            self.collect_tombstones()?;
        }
        Ok(dropped)
    }

    /// Tombstone garbage collection: removes (from memory and, with a catalog record, from
    /// the log) every tombstone that can no longer hide anything, so reads stop checking it.
    /// Runs after every compaction pass and retention drop; `DROP DATABASE` needs none (the
    /// tombstones leave with the database's catalog entry). Returns how many it removed.
    ///
    /// A tombstone `t` hides points of its series in its range in segments numbered below
    /// `t.before_segment`. It is obsolete once every live segment of its database in a
    /// partition overlapping `t.range` is either numbered `>= before_segment`, or was written
    /// by a compaction that had `t` (the output has its points filtered out, though it keeps
    /// the highest input number, so numbers alone cannot say), or has no block that `t` hides
    /// by its statistics (series and time: exact at block granularity and cheap, as the
    /// segment index is in memory; the time-only check would keep every per-device tombstone
    /// as long as any other device had old data in the range, which is the common case).
    ///
    /// Races: the caller holds `maintenance`, so no compaction swaps segments and no delete
    /// adds a tombstone meanwhile (a delete holds it too). Readers take their tombstone list
    /// *before* their segment lists, so a reader that no longer sees `t` got its segments
    /// after the swap or drop that made `t` obsolete. Segment numbering is unaffected: see
    /// [`crate::catalog::Catalog::max_tombstone_segment`].
    pub(crate) fn collect_tombstones(&self) -> Result<usize, LifecycleError> {
        if self.tombstone_gc_blocked.load(Ordering::Acquire) || self.poisoned.load(Ordering::Acquire) {
            return Ok(0);
        }
        let dbs: Vec<_> = self.dbs.read().iter().map(|(id, s)| (*id, s.clone())).collect();
        let mut removed = 0;
        for (db, storage) in dbs {
            let tombstones = self.catalog.tombstones(db);
            if tombstones.is_empty() {
                continue;
            }
            let mut obsolete = Vec::new();
            'tombstone: for t in &tombstones {
                for part in storage.partitions.overlapping(t.range) {
                    for seg in part.segments().iter() {
                        if seg.id.0 >= t.before_segment || seg.has_applied(t) {
                            continue;
                        }
                        // A segment that does not open is kept safe by its tombstones.
                        let Ok(r) = seg.reader() else { continue 'tombstone };
                        let hides =
                            |b: &crate::segment::BlockMeta| t.hides(seg.id.0, b.series, b.min_ts, b.max_ts);
                        // A per-device delete names a few series: look up their blocks (sorted
                        // by series) instead of walking every block of the segment.
                        let hidden = if t.series.len() < r.blocks().len() as u64 {
                            t.series.iter().any(|s| r.series_blocks(SeriesId(s)).iter().any(hides))
                        } else {
                            r.blocks().iter().any(hides)
                        };
                        if hidden {
                            continue 'tombstone;
                        }
                    }
                }
                obsolete.push(t.clone());
            }
            if obsolete.is_empty() {
                continue;
            }
            self.catalog.remove_tombstones(db, &obsolete);
            removed += obsolete.len();
            tracing::info!(db = db.0, tombstones = obsolete.len(), "obsolete tombstones removed");
        }
        if removed > 0 {
            // Not strictly needed for safety (a lost removal brings back tombstones that hide
            // nothing), but it keeps the log and memory in step.
            self.catalog.sync()?;
        }
        Ok(removed)
    }

    /// Deletes a directory tree crash-safely: one atomic rename into `<data>/trash/` (so a
    /// half-deleted tree is never mistaken for live data), then the recursive delete.
    pub(crate) fn trash(&self, dir: &Path) -> Result<(), LifecycleError> {
        if !dir.exists() {
            return Ok(());
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LifecycleError::Io { path, source }
        };
        let trash = self.opts.data_dir.join("trash");
        fs::create_dir_all(&trash).map_err(io(&trash))?;
        let n = self.trash_seq.fetch_add(1, Ordering::Relaxed);
        let target: PathBuf = trash.join(format!("{}-{n}", now_ns()));
        fs::rename(dir, &target).map_err(io(dir))?;
        if let Some(parent) = dir.parent() {
            crate::fsutil::sync_dir(parent).map_err(io(parent))?;
        }
        fs::remove_dir_all(&target).map_err(io(&target))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
