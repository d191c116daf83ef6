//! strata-engine: Strata's storage engine.
//!
//! Points come in as a [`WriteBatch`], go to a per-shard write-ahead log ([`wal`]) and an
//! in-memory [`memtable`], and are flushed to immutable columnar [`segment`] files, one set per
//! database and time [`partition`]. The [`catalog`] maps series keys to dense [`SeriesId`]s and
//! holds the tag [`index`] (roaring postings). Column data is compressed by our own [`codec`]s
//! (delta-of-delta timestamps, Gorilla XOR or decimal floats, bit-packed integers, ...).
//!
//! Module layout follows the data path:
//! `model` (types) -> `batch` (write format) -> `wal` -> `memtable` -> `segment::{writer, reader}`
//! -> `partition` -> `engine` (orchestration, recovery, scans).
//!
//! What it is not: it knows no protocol (line protocol, HTTP, MQTT live in the server) and no
//! query language (the `strata-query` crate reads through [`Engine::scan_pieces`]).

pub mod backup;
pub mod batch;
pub mod catalog;
pub mod codec;
pub mod compaction;
pub mod downsample;
pub mod engine;
pub mod error;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub(crate) mod last_value;
pub mod lifecycle;
pub(crate) mod memtable;
pub mod model;
pub mod partition;
pub mod read;
pub mod segment;
pub mod stats;
pub mod wal;

pub use batch::{KeyRef, PointBuilder, PointError, WriteBatch};
pub use catalog::{DownsampleRule, RetentionPolicy, Tombstone};
pub use engine::{validate_db_name, Engine, EngineOptions, EngineStats, ScanRequest, WriteOutcome};
pub use error::{
    FlushError, LifecycleError, OpenError, ReadError, RejectReason, RejectedPoint, WalError, WriteError,
};
pub use index::TagPredicate;
pub use model::{
    Column, FieldType, FieldValue, SegmentId, SeriesData, SeriesId, SeriesKey, TimeRange, Values,
};
pub use read::{
    BlockSummary, ColumnCursor, ColumnPieces, Piece, ScanOptions, ScanSummary, SeriesCursor, SeriesPieces,
    SummaryStats,
};
pub use wal::SyncPolicy;
