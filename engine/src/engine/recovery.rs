//! WAL replay at open: every record back into memtables, flushed as memory fills.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::batch::{encode_series_key, BatchDecodeError, BatchIter};
use crate::error::OpenError;
use crate::memtable::Memtable;
use crate::model::{DbId, SeriesId};
use crate::wal::record::{self, IdLookup};
use crate::wal::{self, Recovery, ReplayMode, WAL_VERSION_BATCH};

use super::write::split_by_shard;
use super::{Inner, WriteOutcome};

/// State kept across the records of one replay.
#[derive(Default)]
pub(super) struct Replay {
    /// Batch-format keys of the catalog series records named by id, with their database.
    keys: HashMap<SeriesId, (DbId, Vec<u8>)>,
    /// A version-2 record decoded back into write-batch bytes.
    batch: Vec<u8>,
}

impl Inner {
    /// Replays every WAL file into memtables, flushing as memory fills and at the end.
    /// Returns the replayed files, to be deleted once the new WAL is in place.
    pub(super) fn replay_wal(&self, wal_root: &Path) -> Result<Vec<(u64, PathBuf)>, OpenError> {
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
        let mut replay = Replay::default();
        for (_, path) in &files {
            let mut bad = None;
            let mode = ReplayMode { last: newest.contains(path), recovery: self.opts.recovery };
            let stats = wal::replay_wal_file(path, mode, |version, rec| {
                if let Err(e) = self.replay_record(version, rec, n, &mut replay, path) {
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

    /// Replays one record of a file of WAL format `version`.
    pub(super) fn replay_record(
        &self,
        version: u16,
        rec: &[u8],
        n: usize,
        replay: &mut Replay,
        path: &Path,
    ) -> Result<(), BatchDecodeError> {
        let (name, body) = wal::split_payload(rec)?;
        let db = self.catalog.create_db(name);
        let body = if version == WAL_VERSION_BATCH {
            body
        } else {
            let Replay { keys, batch } = replay;
            batch.clear();
            let strict = self.opts.recovery == Recovery::Strict;
            let skipped = record::decode(body, batch, strict, |id, out| self.replay_key(db, id, keys, out))?;
            if skipped.dropped > 0 {
                tracing::info!(file = %path.display(), points = skipped.dropped, "WAL points of series dropped since were discarded");
            }
            if let Some(id) = skipped.first_unknown {
                // Only after catalog damage was dropped: the series these points named is gone.
                self.stats.recovery_dropped_ranges.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    file = %path.display(),
                    points = skipped.unknown,
                    series_id = id.0,
                    "WAL points of series the catalog lost were dropped (recovery = drop-damaged)"
                );
            }
            &batch[..]
        };
        let by_shard = split_by_shard(body, BatchIter::over(body), db, n, |_, _| true)?;
        let mut outcome = WriteOutcome::default();
        for (s, points) in by_shard.iter().enumerate() {
            if !points.is_empty() {
                // Without a WAL append the only possible errors are refused points.
                let _ = self.write_shard(s, db, name, body, points, &mut outcome, false);
            }
        }
        for r in &outcome.rejected {
            tracing::warn!(database = name, reason = %r.reason, "point in the WAL refused at replay");
        }
        Ok(())
    }

    /// Appends the batch-format key of series `id` of database `db` for a version-2 record.
    fn replay_key(
        &self,
        db: DbId,
        id: SeriesId,
        keys: &mut HashMap<SeriesId, (DbId, Vec<u8>)>,
        out: &mut Vec<u8>,
    ) -> IdLookup {
        if let Some((key_db, key)) = keys.get(&id) {
            if *key_db != db {
                return IdLookup::Unknown;
            }
            out.extend_from_slice(key);
            return IdLookup::Found;
        }
        match self.catalog.series(id) {
            Some(meta) if meta.db == db => {
                let mut key = Vec::new();
                encode_series_key(&meta.key, &mut key);
                out.extend_from_slice(&key);
                keys.insert(id, (db, key));
                IdLookup::Found
            }
            Some(_) => IdLookup::Unknown,
            // An id below the end without a series was dropped, unless the catalog lost records.
            None if id.0 < self.catalog.series_id_end() && !self.catalog.lost_records() => IdLookup::Dropped,
            None => IdLookup::Unknown,
        }
    }
}
