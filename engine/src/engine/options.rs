//! Engine options: every knob with its default, unit and trade-off, and their validation.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::OpenError;
use crate::fsutil::Fs;
use crate::wal::{Recovery, SyncPolicy};

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
    pub memtable_size: usize,
    /// Frozen memtables a shard may queue for flushing before writers wait. Default 2.
    pub max_frozen_memtables: usize,
    /// How long a writer waits for the flusher before `WriteError::Overloaded`. Default 5 s,
    /// the same as `storage.write_stall_timeout` (below the clients' usual 10 s request
    /// timeout, so the writer hears "overloaded, retry" before its client gives up).
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
            memtable_size: 64 << 20,
            max_frozen_memtables: 2,
            write_stall_timeout: Duration::from_secs(5),
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

    pub(super) fn validate(&self) -> Result<(), OpenError> {
        let bad = |option, reason: &str| Err(OpenError::InvalidOption { option, reason: reason.to_owned() });
        if self.shards == 0 || self.shards > 256 {
            return bad("shards", "must be between 1 and 256");
        }
        if self.memtable_size < 64 << 10 {
            return bad("memtable_size", "must be at least 64 KiB");
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
