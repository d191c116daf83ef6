//! Error types of the engine, one per layer.

use std::io;
use std::path::PathBuf;

use crate::batch::{BatchDecodeError, PointError};
use crate::codec::CodecError;
use crate::model::{FieldType, SegmentId};

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a Strata WAL file of a supported version")]
    BadHeader { path: PathBuf },
    /// A bad record with intact data after it (not a torn tail): refused under
    /// `Recovery::Strict`.
    #[error("{path} is damaged at offset {offset} ({bytes_after} bytes from there to the end are not replayed): a bad record is followed by more data, so this is not a torn tail; the recovery setting \"drop-damaged\" drops the damaged bytes and opens")]
    Damaged { path: PathBuf, offset: u64, bytes_after: u64 },
    /// Out of file descriptors or disk space where nothing was torn: retry later.
    #[error("WAL {path}: out of resources ({source}); nothing was lost, retry later")]
    OutOfResources { path: PathBuf, source: io::Error },
    #[error("the engine is poisoned by an earlier I/O failure and refuses writes until reopened")]
    Poisoned,
}

/// Errors of reading or writing a segment file.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("segment I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("segment {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("segment {path} checksum mismatch in {section} at offset {offset}: expected {expected:#010x}, got {got:#010x}")]
    ChecksumMismatch { path: PathBuf, section: &'static str, offset: u64, expected: u32, got: u32 },
    #[error("segment {path} has format version {version}, this build reads version {supported}")]
    UnsupportedVersion { path: PathBuf, version: u16, supported: u16 },
    #[error("segment {path}, block at offset {offset}: {source}")]
    Codec { path: PathBuf, offset: u64, source: CodecError },
    /// Out of file descriptors or disk space while writing a segment that was not published
    /// yet (its temporary file is removed): retry later.
    #[error("segment {path}: out of resources ({source}); retry later")]
    OutOfResources { path: PathBuf, source: io::Error },
}

/// Errors of the series catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("catalog {path} is corrupt at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: &'static str },
    #[error("series limit reached: {limit} series")]
    SeriesLimit { limit: u64 },
    #[error("catalog {path} is damaged at offset {offset} ({bytes_after} bytes from there to the end are not replayed): a bad record is followed by more data, so this is not a torn tail; the recovery setting \"drop-damaged\" drops the damaged bytes and opens")]
    Damaged { path: PathBuf, offset: u64, bytes_after: u64 },
    /// Out of file descriptors or disk space before anything was written: retry later.
    #[error("catalog {path}: out of resources ({source}); nothing was lost, retry later")]
    OutOfResources { path: PathBuf, source: io::Error },
}

/// Errors of opening an engine.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    #[error("data directory {path} is locked by another process")]
    Locked { path: PathBuf },
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("WAL record in {path} does not decode: {source}")]
    BadWalRecord { path: PathBuf, source: BatchDecodeError },
    #[error("invalid option {option}: {reason}")]
    InvalidOption { option: &'static str, reason: String },
    #[error("recovery flush failed: {0}")]
    Flush(#[from] FlushError),
}

/// Errors of flushing a memtable to segments.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Out of file descriptors or disk space before anything was published: the flush is
    /// retried later and nothing is lost.
    #[error("flush: out of resources on {path} ({source}); retried later")]
    OutOfResources { path: PathBuf, source: io::Error },
}

impl FlushError {
    /// Whether the flush can be tried again later (nothing was published half-way and nothing
    /// needs an fsync retried): lack of file descriptors or disk space.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            FlushError::OutOfResources { .. }
                | FlushError::Segment(SegmentError::OutOfResources { .. })
                | FlushError::Catalog(CatalogError::OutOfResources { .. })
                | FlushError::Wal(WalError::OutOfResources { .. })
        )
    }
}

/// A point the engine refused; the rest of the batch was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedPoint {
    /// Index of the point in its batch (0-based).
    pub index: usize,
    pub reason: RejectReason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("field {field:?} is type {got}, already exists as type {expected}")]
    FieldTypeConflict { field: String, expected: FieldType, got: FieldType },
    #[error("database has reached its series limit ({limit}); new series refused")]
    SeriesLimit { limit: u64 },
    #[error("invalid point: {0}")]
    Invalid(#[from] PointError),
    #[error("timestamp {timestamp} is older than the database's retention policy keeps (cutoff {cutoff})")]
    BeyondRetention { timestamp: i64, cutoff: i64 },
    #[error("measurement {measurement:?} already has {limit} field keys (limits.max_fields_per_measurement); new field keys refused")]
    TooManyFields { measurement: String, limit: usize },
    #[error("timestamp {timestamp} would create a new time partition, and this write already creates {limit} (limits.max_new_partitions_per_write); split the write by time")]
    TooManyNewPartitions { timestamp: i64, limit: usize },
}

/// Errors of `Engine::write`.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid database name {name:?}: {reason}")]
    InvalidDatabase { name: String, reason: &'static str },
    #[error("database {name:?} does not exist")]
    DatabaseNotFound { name: String },
    #[error("the engine is overloaded: flushing is behind, retry later")]
    Overloaded,
    #[error("the engine is poisoned by an earlier I/O failure and refuses writes until reopened")]
    Poisoned,
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The disk (or quota) is full; nothing acknowledged was lost. Writes succeed again once
    /// space is freed, without a restart.
    #[error("disk full: {path}: {source}; the write was refused and nothing acknowledged was lost, retry once space is freed")]
    NoSpace { path: PathBuf, source: io::Error },
    /// Out of file descriptors (or another resource) right now; retry later.
    #[error("out of resources: {path}: {source}; retry later")]
    OutOfResources { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Wal(WalError),
    #[error(transparent)]
    Catalog(CatalogError),
}

impl WriteError {
    fn exhausted(path: PathBuf, source: io::Error) -> WriteError {
        if crate::fsutil::is_no_space(&source) {
            WriteError::NoSpace { path, source }
        } else {
            WriteError::OutOfResources { path, source }
        }
    }

    /// Whether retrying the same write later can succeed without a restart.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WriteError::Overloaded | WriteError::NoSpace { .. } | WriteError::OutOfResources { .. }
        )
    }
}

impl From<WalError> for WriteError {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Poisoned => WriteError::Poisoned,
            WalError::OutOfResources { path, source } => WriteError::exhausted(path, source),
            e => WriteError::Wal(e),
        }
    }
}

impl From<CatalogError> for WriteError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::OutOfResources { path, source } => WriteError::exhausted(path, source),
            e => WriteError::Catalog(e),
        }
    }
}

impl From<FlushError> for WriteError {
    /// A freeze or flush on the write path that failed: retryable for lack of resources,
    /// otherwise the engine is poisoned.
    fn from(e: FlushError) -> Self {
        match e {
            FlushError::Wal(w) => w.into(),
            FlushError::Catalog(c) => c.into(),
            FlushError::OutOfResources { path, source }
            | FlushError::Segment(SegmentError::OutOfResources { path, source }) => {
                WriteError::exhausted(path, source)
            }
            _ => WriteError::Poisoned,
        }
    }
}

/// Errors of reading (scans and metadata).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("database {name:?} does not exist")]
    DatabaseNotFound { name: String },
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("segment {segment} listed but missing: {source}")]
    MissingSegment { segment: SegmentId, source: io::Error },
    #[error("query limit exceeded: {what} (limit {limit})")]
    LimitExceeded { what: &'static str, limit: u64 },
}

/// Errors of deletes, drops, retention and compaction.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("database {name:?} does not exist")]
    DatabaseNotFound { name: String },
    #[error("invalid retention policy: {0}")]
    InvalidPolicy(String),
    #[error(transparent)]
    Flush(#[from] FlushError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("writing rollups failed: {0}")]
    Rollup(String),
}
