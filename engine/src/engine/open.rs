//! Opening an engine: the data-directory lock, the segment lists, the series lookup, the
//! background threads. WAL replay is in `recovery`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::encode_series_key;
use crate::catalog::Catalog;
use crate::error::{OpenError, WalError};
use crate::fsutil;
use crate::memtable::Memtable;
use crate::partition::{self, Partition, PartitionSet, SegmentHandle, SegmentName};
use crate::segment::SegmentReader;
use crate::wal::{self, SyncPolicy, Wal};

use super::write::shard_of;
use super::{
    DbStorage, Engine, EngineOptions, EngineStats, Inner, SeriesSlot, Shard, ShardState, UNSYNCED_SYNC_EVERY,
};

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
        crate::fsutil::empty_trash(&root).map_err(dir_err(&root))?;
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
        let shard_limit = (opts.memtable_size / opts.shards).max(16 << 10);
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
            last: Default::default(),
            catalog_sync: (Mutex::new(false), Condvar::new()),
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

    pub(super) fn start_threads(&self) {
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
        {
            let inner = self.inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("strata-catalog-sync".into())
                    .spawn(move || inner.catalog_syncer())
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
}

pub(super) fn lock_dir(root: &Path) -> Result<File, OpenError> {
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
    /// Lists databases, partitions and segment files (without opening segments).
    pub(super) fn load_segments(&mut self) -> Result<(), OpenError> {
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
    pub(super) fn reserve_used_series_ids(&self) -> Result<(), OpenError> {
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
    pub(super) fn load_lookup(&mut self) {
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
}
