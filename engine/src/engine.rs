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

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use rustc_hash::{FxBuildHasher, FxHasher};

use crate::batch::{encode_series_key, point_at, BatchIter, PointRef, WriteBatch};
use crate::catalog::{Catalog, RetentionPolicy};
use crate::error::{
    FlushError, LifecycleError, OpenError, ReadError, RejectReason, RejectedPoint, WalError, WriteError,
};
use crate::fsutil::{self, Fs};
use crate::index::TagPredicate;
use crate::memtable::{MemColumn, Memtable};
use crate::model::{DbId, FieldType, SeriesId, SeriesKey, TimeRange, Values};
use crate::partition::{self, Partition, PartitionSet, SegmentHandle, SegmentName};
use crate::segment::{SegmentReader, SegmentWriter};
use crate::wal::{self, Recovery, ReplayMode, SyncPolicy, Wal};

/// Options of an engine. The engine reads no files or environment of its own.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Root of the data directory.
    pub data_dir: PathBuf,
    /// Number of shards (memtable + WAL pairs). Default: available cores. More shards let more
    /// writers work in parallel; each adds a WAL file and a flusher thread.
    pub shards: usize,
    /// When acknowledged writes reach stable storage. Default: `Always` (group-committed fsync).
    pub sync: SyncPolicy,
    /// Memory for active memtables across shards, in bytes. Default 64 MiB. Bigger means fewer,
    /// larger segments; frozen memtables waiting for flush can take up to
    /// `max_frozen_memtables` times this much more. The server sets it from the config key
    /// `storage.memtable_size` (same default).
    pub memtable_bytes: usize,
    /// Frozen memtables a shard may queue for flushing before writers wait. Default 2.
    pub max_frozen_memtables: usize,
    /// How long a writer waits for the flusher before `WriteError::Overloaded`. Default 10 s
    /// for embedders; the server sets it from `storage.write_stall_timeout`, whose default is
    /// 5 s (below the clients' usual 10 s request timeout).
    pub write_stall_timeout: Duration,
    /// Width of a time partition. Default 1 day. Retention drops whole partitions.
    pub partition_duration: Duration,
    /// Series limit per database; new series past it are refused. Default 10 million.
    pub max_series_per_db: u64,
    /// How often the maintenance thread enforces retention and compacts. Default 30 s.
    pub maintenance_interval: Duration,
    /// A partition is compacted once it has this many segments. Default 4.
    pub compaction_min_segments: usize,
    /// Compaction write rate limit in bytes per second, so ingest and queries keep the disk
    /// and cores; 0 = unlimited. Default 64 MiB/s.
    pub compaction_bytes_per_sec: u64,
    /// Values a memtable column keeps raw before compressing them into a chunk. Default 128.
    /// Not a tuning knob for operators: tests make it tiny so that every code path sees sealed
    /// chunks.
    pub memtable_chunk_values: usize,
    /// Retention of databases created from now on (on first write, `CREATE DATABASE`, the
    /// admin API) until a retention statement changes it. `None` (default) keeps data forever.
    pub default_retention: Option<Duration>,
    /// New field keys of a measurement past this many are refused (the point is refused, the
    /// rest of the batch is written). Default 1024. Each field key is a column in every segment
    /// and a row in every schema answer; a device that writes a fresh key per reading
    /// (`reading_1717000000=1`) would otherwise grow them without bound.
    pub max_fields_per_measurement: usize,
    /// Time partitions one write may create that did not exist before; points that would
    /// create more are refused. Default 100. Each partition is a directory and, at every flush
    /// that touches it, a segment file: one request with timestamps spread over 200,000 days
    /// would otherwise make a flush write 200,000 files. 0 means no bound.
    pub max_new_partitions_per_write: usize,
    /// What opening does with damage in the WAL or catalog that is not a torn tail. Default
    /// `Strict` (refuse to open, naming file and offset).
    pub recovery: Recovery,
    /// How long a flusher waits before trying again after running out of file descriptors or
    /// disk space. Default 1 s.
    pub flush_retry_interval: Duration,
    /// The file-system layer (tests install a fault hook). Default: plain `std::fs`.
    pub fs: Fs,
}

impl EngineOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> EngineOptions {
        EngineOptions {
            data_dir: data_dir.into(),
            shards: std::thread::available_parallelism().map_or(2, |n| n.get()),
            sync: SyncPolicy::Always,
            memtable_bytes: 64 << 20,
            max_frozen_memtables: 2,
            write_stall_timeout: Duration::from_secs(10),
            partition_duration: Duration::from_secs(86_400),
            max_series_per_db: 10_000_000,
            maintenance_interval: Duration::from_secs(30),
            compaction_min_segments: 4,
            compaction_bytes_per_sec: 64 << 20,
            memtable_chunk_values: crate::memtable::CHUNK_VALUES,
            default_retention: None,
            max_fields_per_measurement: 1024,
            max_new_partitions_per_write: 100,
            recovery: Recovery::Strict,
            flush_retry_interval: Duration::from_secs(1),
            fs: Fs::default(),
        }
    }

    fn validate(&self) -> Result<(), OpenError> {
        let bad = |option, reason: &str| Err(OpenError::InvalidOption { option, reason: reason.to_owned() });
        if self.shards == 0 || self.shards > 256 {
            return bad("shards", "must be between 1 and 256");
        }
        if self.memtable_bytes < 64 << 10 {
            return bad("memtable_bytes", "must be at least 64 KiB");
        }
        if !(1..=crate::codec::MAX_BLOCK_VALUES).contains(&self.memtable_chunk_values) {
            return bad("memtable_chunk_values", "must be between 1 and 1048576");
        }
        if self.default_retention.is_some_and(|d| d < Duration::from_secs(3600)) {
            return bad("default_retention", "must be at least 1 hour (or none: forever)");
        }
        if self.max_frozen_memtables == 0 {
            return bad("max_frozen_memtables", "must be at least 1");
        }
        if self.partition_duration < Duration::from_secs(60) {
            return bad("partition_duration", "must be at least one minute");
        }
        if self.compaction_min_segments < 2 {
            return bad("compaction_min_segments", "must be at least 2");
        }
        if self.maintenance_interval.is_zero() {
            return bad("maintenance_interval", "must be positive");
        }
        if self.max_fields_per_measurement == 0 {
            return bad("max_fields_per_measurement", "must be at least 1");
        }
        if self.flush_retry_interval.is_zero() {
            return bad("flush_retry_interval", "must be positive");
        }
        if let SyncPolicy::Interval(d) = self.sync {
            if d.is_zero() {
                return bad("sync", "interval must be positive");
            }
        }
        Ok(())
    }
}

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

/// Where one point of a batch is, and its position in the batch (for rejections). Points are
/// passed to the shards by position rather than as decoded [`PointRef`]s: the per-shard lists
/// of a 5,000-point request stay small enough (120 KB) to come from the heap, where lists of
/// 72-byte `PointRef`s grew past the allocator's mmap threshold and were faulted in afresh on
/// every request (a third of the write path's page faults).
#[derive(Debug, Clone, Copy)]
struct PointAt {
    offset: usize,
    len: usize,
    index: usize,
}

impl PointAt {
    fn get<'a>(&self, bytes: &'a [u8]) -> PointRef<'a> {
        point_at(bytes, self.offset).expect("PointAt is the start of a point in validated batch bytes")
    }

    fn raw<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.offset..self.offset + self.len]
    }
}

/// Splits the points `iter` yields (over `bytes`) into one list per shard.
/// `keep(index, timestamp)` says whether a point is written at all (the partition bound).
fn split_by_shard(
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
        parts[s].push(PointAt { offset: p.raw.as_ptr() as usize - base, len: p.raw.len(), index });
    }
    Ok(parts)
}

fn shard_of(db: DbId, key: &[u8], shards: usize) -> usize {
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

impl Engine {
    /// Opens the engine: loads the catalog and segment lists, replays the WAL (truncating a
    /// torn tail), flushes what was replayed, and starts the background threads.
    pub fn open(opts: EngineOptions) -> Result<Engine, OpenError> {
        opts.validate()?;
        let root = opts.data_dir.clone();
        let dir_err = |path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::DataDir { path, source }
        };
        fs::create_dir_all(root.join("dbs")).map_err(dir_err(&root))?;
        let lock = lock_dir(&root)?;
        crate::lifecycle::empty_trash(&root).map_err(dir_err(&root))?;
        let catalog = Catalog::open_with(
            &root.join("catalog"),
            &crate::catalog::CatalogOptions {
                max_series_per_db: opts.max_series_per_db,
                max_fields_per_measurement: opts.max_fields_per_measurement,
                recovery: opts.recovery,
                fs: opts.fs.clone(),
            },
        )?;
        let poisoned = Arc::new(AtomicBool::new(false));
        let shard_limit = (opts.memtable_bytes / opts.shards).max(16 << 10);
        let mut inner = Inner {
            shards: (0..opts.shards)
                .map(|_| Shard {
                    state: Mutex::new(ShardState {
                        active: Memtable::new(opts.memtable_chunk_values),
                        ..ShardState::default()
                    }),
                    wal: None,
                    frozen_cv: Condvar::new(),
                    flushed_cv: Condvar::new(),
                    flush_failures: AtomicU64::new(0),
                    last_flush_error: Mutex::new(None),
                })
                .collect(),
            catalog,
            dbs: RwLock::new(HashMap::new()),
            next_segment: AtomicU64::new(1),
            poisoned: poisoned.clone(),
            shutdown: AtomicBool::new(false),
            stats: EngineStats::default(),
            shard_limit,
            admin: Mutex::new(()),
            maintenance: Mutex::new(()),
            publish: RwLock::new(()),
            trash_seq: AtomicU64::new(0),
            tombstone_gc_blocked: AtomicBool::new(false),
            admitted_partitions: Mutex::new(HashMap::new()),
            opts,
            _lock: lock,
        };
        inner.load_segments()?;
        if inner.catalog.lost_records() {
            inner.reserve_used_series_ids()?;
        }
        inner.load_lookup();
        let wal_root = root.join("wal");
        let replayed = inner.replay_wal(&wal_root)?;
        for (i, shard) in inner.shards.iter_mut().enumerate() {
            let dir = wal_root.join(format!("{i:02}"));
            let next = wal::list_files(&dir)?.last().map_or(1, |(s, _)| s + 1);
            shard.wal = Some(
                Wal::create_with(&inner.opts.fs, &dir, next, inner.opts.sync, poisoned.clone())?
                    .with_stats(inner.stats.wal.clone()),
            );
        }
        // Old files are deleted only now, after the replayed data is in durable segments and
        // the new WAL files exist.
        for (_, path) in replayed {
            inner.opts.fs.remove_file(&path).map_err(|source| WalError::Io { path, source })?;
        }
        fsutil::sync_dir(&wal_root).map_err(dir_err(&wal_root))?;
        let inner = Arc::new(inner);
        let engine = Engine {
            inner: inner.clone(),
            threads: Mutex::new(Vec::new()),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
        };
        engine.start_threads();
        Ok(engine)
    }

    fn start_threads(&self) {
        let mut threads = self.threads.lock();
        for i in 0..self.inner.shards.len() {
            let inner = self.inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("strata-flush-{i}"))
                    .spawn(move || inner.flusher(i))
                    .expect("spawning a thread"),
            );
        }
        {
            let inner = self.inner.clone();
            let stop = self.stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("strata-maintenance".into())
                    .spawn(move || {
                        let (lock, cv) = &*stop;
                        loop {
                            {
                                let mut stopped = lock.lock();
                                if *stopped {
                                    return;
                                }
                                cv.wait_for(&mut stopped, inner.opts.maintenance_interval);
                                if *stopped {
                                    return;
                                }
                            }
                            inner.maintain();
                        }
                    })
                    .expect("spawning a thread"),
            );
        }
        let periodic = match self.inner.opts.sync {
            SyncPolicy::Interval(every) => Some(every),
            // Only unsynced writes need it; `sync` costs nothing when everything is synced.
            SyncPolicy::Always => Some(UNSYNCED_SYNC_EVERY),
            SyncPolicy::Never => None,
        };
        if let Some(every) = periodic {
            let inner = self.inner.clone();
            let stop = self.stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("strata-wal-sync".into())
                    .spawn(move || {
                        let (lock, cv) = &*stop;
                        let mut stopped = lock.lock();
                        while !*stopped {
                            cv.wait_for(&mut stopped, every);
                            for s in &inner.shards {
                                if let Err(e) = s.wal().sync() {
                                    tracing::error!(error = %e, "periodic WAL sync failed; engine poisoned");
                                }
                            }
                        }
                    })
                    .expect("spawning a thread"),
            );
        }
    }

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
        let refused = bound.refused;
        drop(bound);
        // One shard holding the whole batch can log the batch bytes as they are.
        let whole = !refused && parts.iter().filter(|p| !p.is_empty()).count() == 1;
        for (s, points) in parts.iter().enumerate() {
            if points.is_empty() {
                continue;
            }
            let body = whole.then_some(bytes);
            if let Some(pos) = inner.write_shard(s, db_id, db, bytes, points, body, &mut outcome, true)? {
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

    /// The state of `max_new_partitions_per_write` for one write to `db`.
    fn partition_bound(&self, db: DbId) -> PartitionBound<'_> {
        let default_dur = self.opts.partition_duration.as_nanos().min(i64::MAX as u128) as i64;
        PartitionBound {
            limit: self.opts.max_new_partitions_per_write,
            dur: self.catalog.retention(db).and_then(|rp| rp.partition_duration).unwrap_or(default_dur),
            storage: self.dbs.read().get(&db).cloned(),
            known: (1, 0),
            created: 0,
            refused: false,
            admitted: &self.admitted_partitions,
            db,
        }
    }
}

/// Refuses the points of one write that would create more than `max_new_partitions_per_write`
/// partitions that do not exist yet. Consecutive points usually share a partition, so most
/// points cost one range comparison.
struct PartitionBound<'a> {
    limit: usize,
    dur: i64,
    storage: Option<Arc<DbStorage>>,
    /// A time range known to be in an existing or admitted partition (empty at first).
    known: (i64, i64),
    created: usize,
    refused: bool,
    admitted: &'a Mutex<HashMap<DbId, HashSet<i64>>>,
    db: DbId,
}

impl PartitionBound<'_> {
    fn admit(&mut self, index: usize, ts: i64, outcome: &mut WriteOutcome) -> bool {
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
        self.refused = true;
        let limit = self.limit;
        outcome.rejected.push(RejectedPoint {
            index,
            reason: RejectReason::TooManyNewPartitions { timestamp: ts, limit },
        });
        false
    }
}

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

fn lock_dir(root: &Path) -> Result<File, OpenError> {
    let path = root.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| OpenError::DataDir { path: path.clone(), source })?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is touched.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(OpenError::Locked { path: root.to_owned() });
    }
    Ok(f)
}

impl Inner {
    /// One maintenance pass: retention, then compaction. Errors are logged; the next pass
    /// retries.
    fn maintain(&self) {
        if self.poisoned.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.enforce_retention(crate::lifecycle::now_ns()) {
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

    pub(crate) fn db_id(&self, name: &str) -> Result<DbId, ReadError> {
        self.catalog.db_id(name).ok_or_else(|| ReadError::DatabaseNotFound { name: name.to_owned() })
    }

    fn db_storage(&self, db: DbId) -> Result<Arc<DbStorage>, FlushError> {
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

    /// Lists databases, partitions and segment files (without opening segments).
    fn load_segments(&mut self) -> Result<(), OpenError> {
        let root = self.opts.data_dir.join("dbs");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::DataDir { path, source }
        };
        let mut max_seg = 0;
        for entry in fs::read_dir(&root).map_err(io(&root))? {
            let entry = entry.map_err(io(&root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(db) = self.catalog.db_id(&name) else {
                if self.catalog.lost_records() {
                    // The catalog lost records at open (torn or damaged): this may be a live
                    // database whose record was lost, not an interrupted drop. Keep its files.
                    tracing::error!(dir = %entry.path().display(), "directory of a database the catalog does not know (catalog records were lost); left in place, not loaded");
                    continue;
                }
                // Only a DROP DATABASE interrupted between its catalog record and the delete
                // leaves such a directory (a database's records are durable before its first
                // segment): finish the drop.
                tracing::warn!(dir = %entry.path().display(), "directory of a dropped database; deleting it");
                fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
                continue;
            };
            let storage = DbStorage { dir: entry.path(), partitions: PartitionSet::default() };
            for pentry in fs::read_dir(entry.path()).map_err(io(&entry.path()))? {
                let pentry = pentry.map_err(io(&entry.path()))?;
                let pname = pentry.file_name().to_string_lossy().into_owned();
                let Some((start, dur)) = partition::parse_dir_name(&pname) else {
                    tracing::warn!(dir = %pentry.path().display(), "not a partition directory; ignored");
                    continue;
                };
                let part = Partition::new(start, dur, pentry.path());
                let mut found = Vec::new();
                for sentry in fs::read_dir(pentry.path()).map_err(io(&pentry.path()))? {
                    let sentry = sentry.map_err(io(&pentry.path()))?;
                    let fname = sentry.file_name().to_string_lossy().into_owned();
                    if fname.ends_with(".tmp") {
                        // An unfinished flush or compaction: never published, safe to delete.
                        fs::remove_file(sentry.path()).map_err(io(&sentry.path()))?;
                        continue;
                    }
                    let Some(name) = SegmentName::parse(&fname) else {
                        continue;
                    };
                    max_seg = max_seg.max(name.hi);
                    found.push((name, sentry.path()));
                }
                // A compaction that published its output but crashed before deleting its
                // inputs left them behind: they are obsolete, delete them now.
                for (name, path) in &found {
                    if found.iter().any(|(other, _)| other.replaces(name)) {
                        tracing::info!(file = %path.display(), "deleting a segment replaced by compaction");
                        fs::remove_file(path).map_err(io(path))?;
                    } else {
                        part.add_segment(Arc::new(SegmentHandle::new(*name, path.clone())));
                    }
                }
                storage.partitions.insert(Arc::new(part));
            }
            self.dbs.write().insert(db, Arc::new(storage));
        }
        // Segment numbers only grow. The files on disk alone do not say how far they got: a
        // compaction whose inputs were all deleted leaves no file behind, and a tombstone
        // recorded after it still names the number the next flush would have used.
        let next = (max_seg + 1).max(self.catalog.max_tombstone_segment());
        self.next_segment.store(next, Ordering::Relaxed);
        Ok(())
    }

    /// After the catalog lost records at open, raises its next series id past every id the
    /// segments and tombstones use, so that no new series takes the id of data on disk. Opens
    /// every segment's index, which is why it runs only then.
    fn reserve_used_series_ids(&self) -> Result<(), OpenError> {
        let mut max = self.catalog.max_tombstone_series();
        for db in self.dbs.read().values() {
            for part in db.partitions.all() {
                for seg in part.segments().iter() {
                    let reader = SegmentReader::open(&seg.path)?;
                    max = max.max(reader.blocks().iter().map(|b| b.series.0).max());
                }
            }
        }
        if let Some(max) = max {
            tracing::warn!(
                next_series_id = max as u64 + 1,
                "catalog records were lost at open; series ids up to the highest one in use are reserved"
            );
            self.catalog.reserve_series_ids(max.saturating_add(1));
        }
        Ok(())
    }

    /// Fills each shard's key -> series map from the catalog.
    fn load_lookup(&mut self) {
        let n = self.shards.len();
        let mut key = Vec::new();
        for (id, meta) in self.catalog.all_series() {
            key.clear();
            encode_series_key(&meta.key, &mut key);
            let s = shard_of(meta.db, &key, n);
            self.shards[s]
                .state
                .get_mut()
                .lookup
                .entry(meta.db)
                .or_default()
                .insert(key.as_slice().into(), SeriesSlot { id, fields: Vec::new() });
        }
    }

    /// Replays every WAL file into memtables, flushing as memory fills and at the end.
    /// Returns the replayed files, to be deleted once the new WAL is in place.
    fn replay_wal(&self, wal_root: &Path) -> Result<Vec<(u64, PathBuf)>, OpenError> {
        // Per shard directory, its files; only the newest of each may end in a torn record.
        let mut files: Vec<(u64, PathBuf)> = Vec::new();
        let mut newest: HashSet<PathBuf> = HashSet::new();
        if wal_root.exists() {
            let mut dirs: Vec<PathBuf> = fs::read_dir(wal_root)
                .map_err(|source| OpenError::DataDir { path: wal_root.to_owned(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            for d in dirs {
                let list = wal::list_files(&d)?;
                newest.extend(list.last().map(|(_, p)| p.clone()));
                files.extend(list);
            }
        }
        let n = self.shards.len();
        for (_, path) in &files {
            let mut bad = None;
            let mode = ReplayMode { last: newest.contains(path), recovery: self.opts.recovery };
            let stats = wal::replay_file_with(path, mode, |rec| {
                if let Err(e) = self.replay_record(rec, n) {
                    bad = Some(e);
                }
                Ok(())
            })?;
            if let Some(source) = bad {
                return Err(OpenError::BadWalRecord { path: path.clone(), source });
            }
            self.stats.wal_replayed_records.fetch_add(stats.records, Ordering::Relaxed);
            for d in &stats.dropped {
                self.stats.recovery_dropped_ranges.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    file = %path.display(),
                    offset = d.offset,
                    bytes = d.bytes,
                    "damaged WAL bytes dropped (recovery = drop-damaged): the points they held are lost"
                );
            }
            if let Some(at) = stats.truncated_at {
                self.stats.wal_truncated_tails.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %path.display(), offset = at, "WAL had a torn tail; truncated (unacknowledged writes)");
            }
            // Keep replay memory bounded like normal writes.
            for shard in &self.shards {
                let mut st = shard.state.lock();
                if st.active.bytes >= self.shard_limit {
                    let mem =
                        std::mem::replace(&mut st.active, Memtable::new(self.opts.memtable_chunk_values));
                    drop(st);
                    self.flush_memtable(&mem, &Mutex::default())?;
                }
            }
        }
        for shard in &self.shards {
            let mem = std::mem::take(&mut shard.state.lock().active);
            if !mem.is_empty() {
                self.flush_memtable(&mem, &Mutex::default())?;
            }
        }
        if !files.is_empty() {
            tracing::info!(
                files = files.len(),
                records = self.stats.wal_replayed_records.load(Ordering::Relaxed),
                "WAL replayed"
            );
        }
        Ok(files)
    }

    fn replay_record(&self, rec: &[u8], n: usize) -> Result<(), crate::batch::BatchDecodeError> {
        let (name, body) = wal::split_payload(rec)?;
        let db = self.catalog.create_db(name);
        let by_shard = split_by_shard(body, BatchIter::over(body), db, n, |_, _| true)?;
        let mut outcome = WriteOutcome::default();
        for (s, points) in by_shard.iter().enumerate() {
            if !points.is_empty() {
                // Without a WAL append the only possible errors are refused points.
                let _ = self.write_shard(s, db, name, body, points, None, &mut outcome, false);
            }
        }
        for r in &outcome.rejected {
            tracing::warn!(database = name, reason = %r.reason, "point in the WAL refused at replay");
        }
        Ok(())
    }

    /// Writes the points of one shard. Returns the WAL position to commit, if anything was
    /// appended. `body`, when given, is the encoding of exactly `points` (logged as is);
    /// `log` is false during replay.
    #[allow(clippy::too_many_arguments)]
    fn write_shard(
        &self,
        s: usize,
        db: DbId,
        db_name: &str,
        bytes: &[u8],
        points: &[PointAt],
        body: Option<&[u8]>,
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
        let cutoff = self.retention_cutoff(db, crate::lifecycle::now_ns()).unwrap_or(i64::MIN);
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
        let mut pos = None;
        if log {
            let db_hdr = [db_name.len() as u8];
            let head = [&db_hdr[..], db_name.as_bytes()];
            let wal = shard.wal();
            pos = Some(match body {
                Some(body) if accepted == ids.len() => wal.append_parts(&[&db_hdr, db_name.as_bytes(), body]),
                _ => wal.append_iter(head.into_iter().chain(
                    points.iter().zip(&ids).filter(|(_, id)| id.is_some()).map(|(at, _)| at.raw(bytes)),
                )),
            });
        }
        // Pass 2: insert.
        for (at, id) in points.iter().zip(&ids) {
            if let Some(id) = id {
                let p = at.get(bytes);
                st.active.insert(db, *id, p.timestamp, p.field_bytes());
                outcome.points_written += 1;
                outcome.values_written += p.n_fields as usize;
            }
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

    /// Freezes the active memtable of a shard (caller holds its lock) and wakes its flusher.
    fn freeze(&self, shard: &Shard, st: &mut ShardState) -> Result<(), FlushError> {
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
    fn flusher(&self, i: usize) {
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
    fn mark_rollups_dirty(&self, mem: &Memtable) {
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
    fn flush_memtable(&self, mem: &Memtable, done: &Mutex<HashSet<(DbId, i64)>>) -> Result<(), FlushError> {
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
fn flush_error_cause(e: &FlushError) -> (PathBuf, i32) {
    let (path, source) = match e {
        FlushError::OutOfResources { path, source }
        | FlushError::Segment(crate::error::SegmentError::OutOfResources { path, source })
        | FlushError::Catalog(crate::error::CatalogError::OutOfResources { path, source })
        | FlushError::Wal(WalError::OutOfResources { path, source }) => (path, source),
        _ => return (PathBuf::new(), libc::EIO),
    };
    (path.clone(), source.raw_os_error().unwrap_or(libc::EIO))
}

/// Resolves a point's series (creating it if new) and checks its field types.
fn resolve_point(
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

fn check_fields(
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

#[cfg(test)]
mod tests;
