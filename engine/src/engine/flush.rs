//! Flushing: freezing memtables, the per-shard flusher threads, and writing a frozen
//! memtable to segment files.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{FlushError, WalError};
use crate::fsutil;
use crate::memtable::{MemColumn, Memtable};
use crate::model::{DbId, SeriesId, TimeRange, Values};
use crate::partition::{Partition, PartitionSet, SegmentHandle, SegmentName};
use crate::segment::{SegmentReader, SegmentWriter};

use super::{DbStorage, Frozen, Inner, Shard, ShardState};

impl Inner {
    /// Freezes the memtables of the shards `pick` selects (given the shard's state) and waits
    /// until they and everything queued before them are flushed. A flush that runs out of
    /// resources while this waits is reported ([`FlushError::OutOfResources`]) rather than
    /// waited out: the flusher keeps retrying on its own.
    pub(crate) fn flush_shards(&self, pick: impl Fn(&ShardState) -> bool) -> Result<(), FlushError> {
        let mut picked = Vec::new();
        for (i, shard) in self.shards.iter().enumerate() {
            let mut st = shard.state.lock();
            if !pick(&st) {
                continue;
            }
            let failures = shard.flush_failures.load(Ordering::Acquire);
            self.freeze(shard, &mut st)?;
            picked.push((i, failures));
        }
        for (i, failures) in picked {
            let shard = &self.shards[i];
            let mut st = shard.state.lock();
            while !st.frozen.is_empty() {
                if self.poisoned.load(Ordering::Acquire) {
                    return Err(FlushError::Wal(WalError::Poisoned));
                }
                if shard.flush_failures.load(Ordering::Acquire) != failures {
                    let (path, errno) = shard.last_flush_error.lock().clone().unwrap_or_default();
                    let source =
                        std::io::Error::from_raw_os_error(if errno == 0 { libc::EIO } else { errno });
                    return Err(FlushError::OutOfResources { path, source });
                }
                shard.flushed_cv.wait_for(&mut st, Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

impl Inner {
    pub(super) fn db_storage(&self, db: DbId) -> Result<Arc<DbStorage>, FlushError> {
        if let Some(d) = self.dbs.read().get(&db) {
            return Ok(d.clone());
        }
        let name = self.catalog.db_name(db).ok_or_else(|| FlushError::Io {
            path: self.opts.data_dir.clone(),
            source: std::io::Error::other(format!("database id {} has no name in the catalog", db.0)),
        })?;
        let dir = self.opts.data_dir.join("dbs").join(&name);
        fs::create_dir_all(&dir).map_err(|source| FlushError::Io { path: dir.clone(), source })?;
        let mut dbs = self.dbs.write();
        Ok(dbs
            .entry(db)
            .or_insert_with(|| Arc::new(DbStorage { dir, partitions: PartitionSet::default() }))
            .clone())
    }

    /// Freezes the active memtable of a shard (caller holds its lock) and wakes its flusher.
    pub(super) fn freeze(&self, shard: &Shard, st: &mut ShardState) -> Result<(), FlushError> {
        if st.active.is_empty() {
            return Ok(());
        }
        let wal_through = shard.wal().rotate()?;
        let mem = std::mem::replace(&mut st.active, Memtable::new(self.opts.memtable_chunk_values));
        st.frozen.push_back(Arc::new(Frozen { mem, wal_through, done: Mutex::default() }));
        shard.frozen_cv.notify_all();
        Ok(())
    }

    /// The flusher thread of shard `i`: flushes frozen memtables oldest first.
    pub(super) fn flusher(&self, i: usize) {
        let shard = &self.shards[i];
        loop {
            let frozen = {
                let mut st = shard.state.lock();
                loop {
                    if let Some(f) = st.frozen.front() {
                        break f.clone();
                    }
                    if self.shutdown.load(Ordering::Acquire) {
                        return;
                    }
                    shard.frozen_cv.wait_for(&mut st, Duration::from_millis(200));
                }
            };
            if self.poisoned.load(Ordering::Acquire) {
                return;
            }
            let started = Instant::now();
            match self.flush_memtable(&frozen.mem, &frozen.done) {
                Ok(()) => {
                    // The WAL files go before the memtable leaves the queue: once `flush`
                    // returns, nothing it flushed can be replayed again (deletes rely on it).
                    // If they cannot be deleted, a restart would replay data that is already
                    // in segments over anything written since (and revive deleted points):
                    // poison, so no delete or newer write is acknowledged on top of them.
                    if let Err(e) = shard.wal().remove_through(frozen.wal_through) {
                        tracing::error!(shard = i, error = %e, "deleting flushed WAL files failed; engine poisoned");
                        self.poisoned.store(true, Ordering::Release);
                        let _st = shard.state.lock();
                        shard.flushed_cv.notify_all();
                        return;
                    }
                    {
                        let mut st = shard.state.lock();
                        st.frozen.pop_front();
                        *shard.last_flush_error.lock() = None;
                        shard.flushed_cv.notify_all();
                    }
                    tracing::debug!(shard = i, values = frozen.mem.values, elapsed = ?started.elapsed(), "memtable flushed");
                }
                Err(e) if e.is_retryable() => {
                    // Out of file descriptors or disk space before anything half-done was
                    // published: the memtable stays queued (writers get backpressure once the
                    // queue is full) and the flush is tried again.
                    tracing::warn!(shard = i, error = %e, "flush ran out of resources; retrying");
                    self.stats.flush_retries.fetch_add(1, Ordering::Relaxed);
                    *shard.last_flush_error.lock() = Some(flush_error_cause(&e));
                    shard.flush_failures.fetch_add(1, Ordering::AcqRel);
                    let mut st = shard.state.lock();
                    shard.flushed_cv.notify_all();
                    if self.shutdown.load(Ordering::Acquire) {
                        return; // the data stays in the WAL for the next open
                    }
                    shard.frozen_cv.wait_for(&mut st, self.opts.flush_retry_interval);
                }
                Err(e) => {
                    // Never carry on after a failed flush: the data is still in the WAL and
                    // the frozen memtable; refuse writes until reopened.
                    tracing::error!(shard = i, error = %e, "flush failed; engine poisoned");
                    self.poisoned.store(true, Ordering::Release);
                    let _st = shard.state.lock();
                    shard.flushed_cv.notify_all();
                    return;
                }
            }
        }
    }

    /// Marks the time ranges a memtable holds as dirty for every downsampling rule whose
    /// source they belong to, so the maintenance thread recomputes those rollup buckets.
    pub(super) fn mark_rollups_dirty(&self, mem: &Memtable) {
        let mut ranges: HashMap<(DbId, String), (i64, i64)> = HashMap::new();
        for (&id, series) in &mem.series {
            if !self.catalog.has_rules(series.db) {
                continue;
            }
            let Some(meta) = self.catalog.series(id) else { continue };
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for (min, max) in series.columns.iter().filter_map(|c| c.time_bounds()) {
                lo = lo.min(min);
                hi = hi.max(max);
            }
            if lo > hi {
                continue;
            }
            for rule in self.catalog.rules(series.db) {
                if *rule.source == *meta.key.measurement {
                    let e = ranges.entry((series.db, rule.name)).or_insert((lo, hi));
                    *e = (e.0.min(lo), e.1.max(hi));
                }
            }
        }
        for ((db, rule), (lo, hi)) in ranges {
            self.catalog.mark_dirty(db, &rule, TimeRange::inclusive(lo, hi));
        }
    }

    /// Writes a memtable to segment files, one per (database, partition), and publishes them.
    /// Groups in `done` were published by an earlier attempt and are skipped; each group
    /// published now is added, so an attempt that runs out of resources half-way can be
    /// retried without writing anything twice.
    pub(super) fn flush_memtable(
        &self,
        mem: &Memtable,
        done: &Mutex<HashSet<(DbId, i64)>>,
    ) -> Result<(), FlushError> {
        if mem.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.mark_rollups_dirty(mem);
        // Series ids in the segments (and the dirty marks of downsampling rules) must be
        // durable in the catalog first.
        self.catalog.sync()?;
        // Columns are decoded one at a time while the segment is written, not all up front: a
        // flush must not need the memtable's size again in decoded form. Only a column that
        // spans several partitions (rare: a partition boundary inside one memtable) is decoded
        // and split before.
        enum Source<'m> {
            Whole(&'m MemColumn),
            Split(Vec<i64>, Values),
        }
        type Group<'m> = Vec<(SeriesId, Arc<str>, Source<'m>)>;
        let mut groups: HashMap<(DbId, i64), (Arc<Partition>, Group<'_>)> = HashMap::new();
        let default_dur = self.opts.partition_duration.as_nanos().min(i64::MAX as u128) as i64;
        for (&id, series) in &mem.series {
            // Dropped since it was written (DROP SERIES/MEASUREMENT/DATABASE): nothing to keep.
            if self.catalog.series(id).is_none_or(|m| m.db != series.db) {
                continue;
            }
            let Some(rp) = self.catalog.retention(series.db) else { continue };
            let dur = rp.partition_duration.unwrap_or(default_dur);
            let storage = self.db_storage(series.db)?;
            let partition_of = |t: i64| {
                storage.partitions.get_or_create(&storage.dir, t, dur).map_err(|source| {
                    let path = storage.dir.clone();
                    if fsutil::is_resource_exhausted(&source) {
                        FlushError::OutOfResources { path, source }
                    } else {
                        FlushError::Io { path, source }
                    }
                })
            };
            for col in &series.columns {
                let Some((min, max)) = col.time_bounds() else { continue };
                let part = partition_of(min)?;
                if max < part.end() || part.end() == i64::MAX {
                    groups
                        .entry((series.db, part.start))
                        .or_insert_with(|| (part.clone(), Vec::new()))
                        .1
                        .push((id, col.field.clone(), Source::Whole(col)));
                    continue;
                }
                let (ts, values) = col.sorted(TimeRange::ALL);
                let mut start = 0;
                while start < ts.len() {
                    let part = partition_of(ts[start])?;
                    let end = if part.end() == i64::MAX && ts[ts.len() - 1] == i64::MAX {
                        ts.len()
                    } else {
                        start + ts[start..].partition_point(|&t| t < part.end())
                    };
                    // `get_or_create` returns a partition holding `ts[start]`; if that ever broke,
                    // this loop would spin forever holding a growing map.
                    assert!(end > start, "partition [{}, {}) misses {}", part.start, part.end(), ts[start]);
                    let perm: Vec<u32> = (start as u32..end as u32).collect();
                    groups
                        .entry((series.db, part.start))
                        .or_insert_with(|| (part.clone(), Vec::new()))
                        .1
                        .push((
                            id,
                            col.field.clone(),
                            Source::Split(ts[start..end].to_vec(), values.gather(&perm)),
                        ));
                    start = end;
                }
            }
        }
        let mut bytes = 0;
        let fs = &self.opts.fs;
        for (key, (part, mut cols)) in groups {
            if done.lock().contains(&key) {
                continue;
            }
            cols.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            let _publishing = self.publish.read();
            let name = SegmentName::flushed(self.next_segment.fetch_add(1, Ordering::Relaxed));
            let path = part.dir.join(name.file_name());
            let write = || {
                let mut w = SegmentWriter::create_with(fs, &path)?;
                for (series, field, source) in &cols {
                    match source {
                        Source::Whole(col) => {
                            let (ts, values) = col.sorted(TimeRange::ALL);
                            w.add_column(*series, field, &ts, &values)?;
                        }
                        Source::Split(ts, values) => w.add_column(*series, field, ts, values)?,
                    }
                }
                w.finish()
            };
            let (path, size) = write().inspect_err(|_| {
                // Never published: a retry writes it afresh under a new number.
                let _ = fs.remove_file(&path.with_extension("seg.tmp"));
            })?;
            fs.sync_dir(&part.dir).map_err(|source| FlushError::Io { path: part.dir.clone(), source })?;
            // The segment is published once renamed and its directory synced; if it cannot be
            // opened right now (no file descriptor), the first read opens it.
            let handle = match SegmentReader::open(&path) {
                Ok(reader) => SegmentHandle::with_reader(name, reader),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "opening a flushed segment failed; opened at first read");
                    SegmentHandle::new(name, path.clone())
                }
            };
            part.add_segment(Arc::new(handle));
            done.lock().insert(key);
            bytes += size;
            self.stats.segments_written.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.stats.flush_bytes.fetch_add(bytes, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.flush_nanos.fetch_add(nanos, Ordering::Relaxed);
        Ok(())
    }
}

/// The path and errno of a retryable flush error, for `Engine::flush` to report.
pub(super) fn flush_error_cause(e: &FlushError) -> (PathBuf, i32) {
    let (path, source) = match e {
        FlushError::OutOfResources { path, source }
        | FlushError::Segment(crate::error::SegmentError::OutOfResources { path, source })
        | FlushError::Catalog(crate::error::CatalogError::OutOfResources { path, source })
        | FlushError::Wal(WalError::OutOfResources { path, source }) => (path, source),
        _ => return (PathBuf::new(), libc::EIO),
    };
    (path.clone(), source.raw_os_error().unwrap_or(libc::EIO))
}
