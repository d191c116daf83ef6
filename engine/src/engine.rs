//! The engine: ties WAL, memtables, segments, partitions and the catalog together.
//!
//! Write path, per shard (shard = hash of the series key, so ingest spreads over cores):
//! under the shard lock, resolve series and check field types, append the accepted points to
//! the shard's WAL buffer, insert them into the active memtable; release the lock; wait for the
//! WAL to say durable (group commit). A full memtable is frozen (the WAL rotates at the same
//! moment) and flushed by the shard's flusher thread; once its segments are durable, the WAL
//! files that covered it are deleted. When a shard already has `max_frozen_memtables` waiting,
//! writers wait for the flusher (backpressure) and give up with `Overloaded` after
//! `write_stall_timeout`.
//!
//! Read path: memtables first (copied under the shard lock), then the segment lists of the
//! overlapping partitions. That order guarantees a flush racing the read cannot hide data: it
//! publishes segments before it drops the frozen memtable.
//!
//! Layout: this file holds the shared state and the public API; `options` (the knobs),
//! `open` (lock, segment lists, threads), `recovery` (WAL replay), `write` (the write path),
//! `flush` (freezing, flusher threads, memtable -> segments).

mod flush;
mod open;
mod options;
mod recovery;
mod write;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use rustc_hash::FxBuildHasher;

use crate::batch::WriteBatch;
use crate::catalog::{Catalog, RetentionPolicy};
use crate::error::{FlushError, LifecycleError, ReadError, RejectedPoint, WriteError};
use crate::index::TagPredicate;
use crate::memtable::Memtable;
use crate::model::{DbId, FieldType, SeriesId, SeriesKey, TimeRange};
use crate::partition::PartitionSet;
use crate::wal::record::RecordEncoder;
use crate::wal::Wal;

pub use options::EngineOptions;
pub use write::validate_db_name;

/// What happened to a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub points_written: usize,
    pub values_written: usize,
    /// Points refused (the others were written).
    pub rejected: Vec<RejectedPoint>,
}

/// What a scan reads.
#[derive(Debug, Clone, Copy)]
pub struct ScanRequest<'a> {
    pub db: &'a str,
    pub measurement: &'a str,
    pub predicate: &'a TagPredicate,
    /// `None` reads every field.
    pub fields: Option<&'a [&'a str]>,
    pub range: TimeRange,
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub points_written: AtomicU64,
    pub values_written: AtomicU64,
    pub points_rejected: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_bytes: AtomicU64,
    /// Time spent in flushes, nanoseconds.
    pub flush_nanos: AtomicU64,
    pub segments_written: AtomicU64,
    pub write_stalls: AtomicU64,
    pub overloaded: AtomicU64,
    pub wal_replayed_records: AtomicU64,
    pub wal_truncated_tails: AtomicU64,
    /// Damaged ranges dropped at open under `Recovery::DropDamaged` (WAL and catalog).
    pub recovery_dropped_ranges: AtomicU64,
    /// Flushes that ran out of file descriptors or disk space and were retried later.
    pub flush_retries: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_bytes_in: AtomicU64,
    pub compaction_bytes_out: AtomicU64,
    pub compaction_values: AtomicU64,
    pub compaction_nanos: AtomicU64,
    pub partitions_dropped: AtomicU64,
    /// The write-ahead logs of all shards.
    pub wal: Arc<crate::stats::WalStats>,
}

pub(crate) struct SeriesSlot {
    pub(crate) id: SeriesId,
    fields: Vec<(Box<str>, FieldType)>,
}

pub(crate) struct Frozen {
    pub(crate) mem: Memtable,
    /// Every record of `mem` is in WAL files `<=` this sequence.
    wal_through: u64,
    /// (database, partition start) groups already published by an earlier attempt that ran
    /// out of resources half-way: a retry does not write them again.
    done: Mutex<HashSet<(DbId, i64)>>,
}

#[derive(Default)]
pub(crate) struct ShardState {
    pub(crate) lookup: HashMap<DbId, HashMap<Box<[u8]>, SeriesSlot, FxBuildHasher>, FxBuildHasher>,
    pub(crate) active: Memtable,
    pub(crate) frozen: VecDeque<Arc<Frozen>>,
    /// Builds this shard's WAL records (kept for its buffers).
    pub(crate) encoder: RecordEncoder,
}

pub(crate) struct Shard {
    pub(crate) state: Mutex<ShardState>,
    wal: Option<Wal>,
    /// Signalled when a memtable is frozen (wakes the flusher).
    frozen_cv: Condvar,
    /// Signalled when a frozen memtable is flushed (wakes stalled writers).
    flushed_cv: Condvar,
    /// Flush attempts of this shard that ran out of resources (the flusher retries them);
    /// `Engine::flush` reports instead of waiting when this moves while it waits.
    flush_failures: AtomicU64,
    /// What the last failed attempt hit.
    last_flush_error: Mutex<Option<(PathBuf, i32)>>,
}

impl Shard {
    fn wal(&self) -> &Wal {
        self.wal.as_ref().expect("WAL exists after recovery")
    }
}

pub(crate) struct DbStorage {
    pub(crate) dir: PathBuf,
    pub(crate) partitions: PartitionSet,
}

pub(crate) struct Inner {
    pub(crate) opts: EngineOptions,
    pub(crate) catalog: Catalog,
    pub(crate) shards: Vec<Shard>,
    pub(crate) dbs: RwLock<HashMap<DbId, Arc<DbStorage>>>,
    pub(crate) next_segment: AtomicU64,
    pub(crate) poisoned: Arc<AtomicBool>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) stats: EngineStats,
    pub(crate) shard_limit: usize,
    /// Serialises deletes, drops and policy changes.
    pub(crate) admin: Mutex<()>,
    /// Serialises compaction, retention drops, database drops, tombstone collection and the
    /// recording of a tombstone (a delete).
    pub(crate) maintenance: Mutex<()>,
    /// Held (shared) by a flush from allocating a segment sequence until the segment is in its
    /// partition; compaction takes it exclusively to snapshot its inputs, so no sequence inside
    /// a compaction's range can still be on its way.
    pub(crate) publish: RwLock<()>,
    pub(crate) trash_seq: AtomicU64,
    /// Set when a removal of segments may not be durable (an unlink or directory fsync
    /// failed where no compaction output replaces the files): the files may come back at
    /// the next open, so no tombstone is collected until then (see `collect_tombstones`).
    pub(crate) tombstone_gc_blocked: AtomicBool,
    /// Per database, starts of partitions that writes were allowed to create and that may not
    /// exist yet (their points are in memtables): see `max_new_partitions_per_write`.
    admitted_partitions: Mutex<HashMap<DbId, HashSet<i64>>>,
    /// The newest point of every column, kept by the write path (`last_value.rs`).
    pub(crate) last: crate::last_value::LastValues,
    /// Set (and signalled) by a write that created series, for the catalog-sync thread: once
    /// their records are durable, the WAL names them by id instead of by key.
    catalog_sync: (Mutex<bool>, Condvar),
    _lock: File,
}

/// The storage engine. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("data_dir", &self.inner.opts.data_dir).finish()
    }
}

impl Engine {
    pub fn options(&self) -> &EngineOptions {
        &self.inner.opts
    }

    pub fn stats(&self) -> &EngineStats {
        &self.inner.stats
    }

    pub fn is_poisoned(&self) -> bool {
        self.inner.poisoned.load(Ordering::Acquire)
    }

    /// Creates a database if it does not exist.
    pub fn create_database(&self, name: &str) -> Result<(), WriteError> {
        validate_db_name(name)?;
        let retention = self.inner.opts.default_retention.map(|d| RetentionPolicy {
            duration: Some(d.as_nanos().min(i64::MAX as u128) as i64),
            ..RetentionPolicy::default()
        });
        self.inner.catalog.create_db_with_retention(name, retention);
        self.inner.catalog.sync()?;
        Ok(())
    }

    pub fn database_exists(&self, name: &str) -> bool {
        self.inner.catalog.db_id(name).is_some()
    }

    pub fn databases(&self) -> Vec<String> {
        self.inner.catalog.database_names()
    }

    /// Writes a batch to database `db` and returns once it is durable per the sync policy.
    /// Points that cannot be stored (field type conflicts, series limit) are reported in the
    /// outcome; the others are written.
    pub fn write(&self, db: &str, batch: &WriteBatch) -> Result<WriteOutcome, WriteError> {
        self.inner.write(db, batch, true)
    }

    /// Like [`Engine::write`], but returns once the batch is written to the OS, without
    /// waiting for an fsync even under `SyncPolicy::Always`: for writes nobody is told are
    /// durable (MQTT QoS 0). They survive a crash of the process; on power loss they are
    /// lost unless a later synced commit (any writer's: an fsync covers the whole file) or
    /// the periodic sync ([`UNSYNCED_SYNC_EVERY`] under `Always`) came first.
    pub fn write_unsynced(&self, db: &str, batch: &WriteBatch) -> Result<WriteOutcome, WriteError> {
        self.inner.write(db, batch, false)
    }
}

/// Under `SyncPolicy::Always`, how often writes made with [`Engine::write_unsynced`] are
/// fsynced when no synced commit came along.
pub const UNSYNCED_SYNC_EVERY: Duration = Duration::from_secs(1);

impl Engine {
    /// Reads the matching series' columns in time order with last-write-wins applied.
    /// Resolves the series of a measurement matching `pred`, with their keys.
    pub fn series(
        &self,
        db: &str,
        measurement: &str,
        pred: &TagPredicate,
    ) -> Result<Vec<(SeriesId, Arc<SeriesKey>)>, ReadError> {
        let db_id = self.inner.db_id(db)?;
        let ids = self.inner.catalog.resolve(db_id, measurement, pred);
        Ok(ids
            .iter()
            .filter_map(|id| self.inner.catalog.series(SeriesId(id)).map(|m| (SeriesId(id), m.key)))
            .collect())
    }

    /// Measurement names of a database, sorted.
    pub fn measurements(&self, db: &str) -> Result<Vec<String>, ReadError> {
        let db_id = self.inner.db_id(db)?;
        Ok(self
            .inner
            .catalog
            .with_db(db_id, |d| {
                d.measurements
                    .iter()
                    .filter(|(_, m)| m.index.series_count() > 0)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Field names and types of a measurement, sorted by name.
    pub fn field_keys(&self, db: &str, measurement: &str) -> Result<Vec<(String, FieldType)>, ReadError> {
        let db_id = self.inner.db_id(db)?;
        Ok(self
            .inner
            .catalog
            .with_db(db_id, |d| {
                d.measurements
                    .get(measurement)
                    .map(|m| m.fields.iter().map(|(k, t)| (k.clone(), *t)).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default())
    }

    /// Tag keys of a measurement, sorted.
    pub fn tag_keys(&self, db: &str, measurement: &str) -> Result<Vec<String>, ReadError> {
        let db_id = self.inner.db_id(db)?;
        Ok(self
            .inner
            .catalog
            .with_db(db_id, |d| {
                d.measurements
                    .get(measurement)
                    .map(|m| m.index.tag_keys().map(str::to_owned).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default())
    }

    /// Values of one tag key of a measurement, sorted.
    pub fn tag_values(&self, db: &str, measurement: &str, key: &str) -> Result<Vec<String>, ReadError> {
        let db_id = self.inner.db_id(db)?;
        Ok(self
            .inner
            .catalog
            .with_db(db_id, |d| {
                d.measurements
                    .get(measurement)
                    .map(|m| m.index.tag_values(key).map(|(v, _)| v.to_owned()).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default())
    }

    /// Number of series in a database.
    pub fn series_count(&self, db: &str) -> Result<u64, ReadError> {
        let db_id = self.inner.db_id(db)?;
        Ok(self.inner.catalog.with_db(db_id, |d| d.series_count).unwrap_or(0))
    }

    /// Tombstones a database keeps (deletes whose points may still be in older segments;
    /// compaction and retention remove the rest, see docs/lifecycle.md).
    pub fn tombstone_count(&self, db: &str) -> Result<usize, ReadError> {
        Ok(self.inner.catalog.tombstone_count(self.inner.db_id(db)?))
    }

    /// Freezes every non-empty memtable and waits until all are flushed to segments.
    pub fn flush(&self) -> Result<(), FlushError> {
        self.inner.flush_shards(|_| true)
    }

    /// Flushes everything, syncs, and stops the background threads. Writes after this fail.
    /// Called by `Drop` too; calling it explicitly reports errors.
    pub fn close(&self) -> Result<(), FlushError> {
        if self.inner.shutdown.load(Ordering::Acquire) && self.threads.lock().is_empty() {
            return Ok(());
        }
        let flushed = if self.is_poisoned() { Ok(()) } else { self.flush() };
        self.inner.shutdown.store(true, Ordering::Release);
        self.inner.wake_catalog_sync();
        for shard in &self.inner.shards {
            let _g = shard.state.lock();
            shard.frozen_cv.notify_all();
            shard.flushed_cv.notify_all();
        }
        {
            let (lock, cv) = &*self.stop;
            *lock.lock() = true;
            cv.notify_all();
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        flushed?;
        if !self.is_poisoned() {
            for shard in &self.inner.shards {
                shard.wal().sync()?;
            }
            self.inner.catalog.sync()?;
        }
        Ok(())
    }

    /// Stops the background threads without flushing or syncing anything, as a crash would
    /// (what the OS already has stays). For recovery tests in this process.
    #[doc(hidden)]
    pub fn simulate_crash(self) {
        self.inner.shutdown.store(true, Ordering::Release);
        self.inner.wake_catalog_sync();
        for shard in &self.inner.shards {
            let _g = shard.state.lock();
            shard.frozen_cv.notify_all();
        }
        {
            let (lock, cv) = &*self.stop;
            *lock.lock() = true;
            cv.notify_all();
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        // Drop now sees a stopped engine and does nothing.
    }

    /// Every open partition and segment, for inspection and tests.
    pub fn segment_files(&self) -> Vec<PathBuf> {
        let dbs = self.inner.dbs.read();
        let mut out = Vec::new();
        for db in dbs.values() {
            for p in db.partitions.all() {
                out.extend(p.segments().iter().map(|s| s.path.clone()));
            }
        }
        out.sort();
        out
    }

    /// How many segments are currently memory-mapped (tests check partition pruning with it).
    pub fn open_segment_count(&self) -> usize {
        let dbs = self.inner.dbs.read();
        dbs.values()
            .flat_map(|d| d.partitions.all())
            .map(|p| p.segments().iter().filter(|s| s.is_open()).count())
            .sum()
    }

    /// Bytes held by active and frozen memtables.
    pub fn memtable_bytes(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| {
                let st = s.state.lock();
                st.active.bytes + st.frozen.iter().map(|f| f.mem.bytes).sum::<usize>()
            })
            .sum()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the engine failed; the WAL will be replayed at next open");
        }
    }
}

impl Inner {
    /// One maintenance pass: retention, then compaction. Errors are logged; the next pass
    /// retries.
    fn maintain(&self) {
        if self.poisoned.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.enforce_retention(crate::model::now_ns()) {
            tracing::error!(error = %e, "retention enforcement failed");
        }
        if let Err(e) = self.run_downsampling() {
            tracing::error!(error = %e, "downsampling failed");
        }
        match self.compact_pass(self.opts.compaction_min_segments) {
            Ok(_) | Err(LifecycleError::ShuttingDown) => {}
            Err(e) => tracing::error!(error = %e, "compaction failed"),
        }
    }

    /// Asks the catalog-sync thread to make the catalog's new series durable.
    pub(crate) fn request_catalog_sync(&self) {
        let (wanted, cv) = &self.catalog_sync;
        let mut w = wanted.lock();
        if !*w {
            *w = true;
            cv.notify_one();
        }
    }

    /// Wakes the catalog-sync thread (to see `shutdown`).
    fn wake_catalog_sync(&self) {
        let _g = self.catalog_sync.0.lock();
        self.catalog_sync.1.notify_all();
    }

    /// The catalog-sync thread: syncs the catalog when writes created series. A write that
    /// creates a series logs its key in the WAL; once the series' catalog record is durable,
    /// its later points are logged by id (a few bytes instead of the key). One fsync covers
    /// every series created since the last, so a burst of new series costs one or a few.
    fn catalog_syncer(&self) {
        let (wanted, cv) = &self.catalog_sync;
        loop {
            {
                let mut w = wanted.lock();
                while !*w && !self.shutdown.load(Ordering::Acquire) {
                    cv.wait(&mut w);
                }
                if self.shutdown.load(Ordering::Acquire) {
                    return;
                }
                *w = false;
            }
            if self.poisoned.load(Ordering::Acquire) || !self.catalog.has_unsynced_series() {
                continue;
            }
            match self.catalog.sync() {
                Ok(()) => {}
                // Nothing was written: keys stay in the WAL; the next request or flush retries.
                Err(e @ crate::error::CatalogError::OutOfResources { .. }) => {
                    tracing::warn!(error = %e, "catalog sync ran out of resources; retried later");
                }
                Err(e) => {
                    tracing::error!(error = %e, "catalog sync failed; engine poisoned");
                    self.poisoned.store(true, Ordering::Release);
                }
            }
        }
    }

    pub(crate) fn db_id(&self, name: &str) -> Result<DbId, ReadError> {
        self.catalog.db_id(name).ok_or_else(|| ReadError::DatabaseNotFound { name: name.to_owned() })
    }
}

#[cfg(test)]
mod tests;
