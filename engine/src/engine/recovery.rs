//! WAL replay at open: every record back into memtables, flushed as memory fills.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::batch::BatchIter;
use crate::error::OpenError;
use crate::memtable::Memtable;
use crate::wal::{self, ReplayMode};

use super::write::split_by_shard;
use super::{Inner, WriteOutcome};

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

    pub(super) fn replay_record(&self, rec: &[u8], n: usize) -> Result<(), crate::batch::BatchDecodeError> {
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
}
