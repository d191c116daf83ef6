//! Immutable columnar segment files: one per (database, time partition, flush).
//!
//! ```text
//! header   "STRATSEG" u16 version u16 flags u32 crc32c(header[0..12])          16 bytes
//! block*   u32 ts_len, ts_payload, values_payload, u32 crc32c(all before it)   one per column chunk
//! index    u32 n_entries, entry{n}                                             sorted (series, field, min_ts)
//! trailer  u64 index_offset u32 index_len u32 crc32c(index) u16 version u16 0
//!          u32 crc32c(trailer[0..20]) "STRATEND"                                  32 bytes
//! ```
//!
//! The index entry of a block carries its count, time bounds and value statistics
//! (min/max/sum/first/last), so queries prune blocks and answer aggregates without touching
//! them. The full byte layout is in `docs/file-formats.md`; a test there pins it.

pub mod reader;
pub mod writer;

pub use reader::SegmentReader;
pub use writer::SegmentWriter;

use std::sync::Arc;

use crate::model::{FieldType, SeriesId, Values};

pub const SEGMENT_MAGIC: &[u8; 8] = b"STRATSEG";
pub const SEGMENT_END_MAGIC: &[u8; 8] = b"STRATEND";
pub const SEGMENT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 16;
pub const TRAILER_LEN: usize = 32;
/// Most values in one block. Big enough for the decimal float codec to find a shared exponent
/// and amortise its header; small enough that a point query decodes little it does not need.
pub const BLOCK_MAX_VALUES: usize = 4096;

pub fn file_name(id: crate::model::SegmentId) -> String {
    format!("{id}.seg")
}

/// Summary statistics of one block, by column type:
/// F64: min/max/sum/first/last as f64 bits (min/max ignore NaN);
/// I64/U64: as integers (sum wraps on overflow); Bool: min/max/first/last as 0/1, sum = count of
/// `true`; Str: all zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockStats {
    pub min: u64,
    pub max: u64,
    pub sum: u64,
    pub first: u64,
    pub last: u64,
}

impl BlockStats {
    pub fn compute(values: &Values) -> BlockStats {
        fn ints<T: Copy + Ord>(v: &[T], to: impl Fn(T) -> u64, add: impl Fn(u64, T) -> u64) -> BlockStats {
            let (Some(&first), Some(&last)) = (v.first(), v.last()) else {
                return BlockStats::default();
            };
            BlockStats {
                min: to(*v.iter().min().expect("non-empty")),
                max: to(*v.iter().max().expect("non-empty")),
                sum: v.iter().fold(0u64, |s, &x| add(s, x)),
                first: to(first),
                last: to(last),
            }
        }
        match values {
            Values::F64(v) => {
                let (Some(first), Some(last)) = (v.first(), v.last()) else {
                    return BlockStats::default();
                };
                BlockStats {
                    min: v.iter().copied().fold(f64::NAN, f64::min).to_bits(),
                    max: v.iter().copied().fold(f64::NAN, f64::max).to_bits(),
                    sum: v.iter().sum::<f64>().to_bits(),
                    first: first.to_bits(),
                    last: last.to_bits(),
                }
            }
            Values::I64(v) => ints(v, |x| x as u64, |s, x| s.wrapping_add(x as u64)),
            Values::U64(v) => ints(v, |x| x, |s, x| s.wrapping_add(x)),
            Values::Bool(v) => {
                let mut s = ints(v, |x| x as u64, |s, x| s + x as u64);
                s.sum = v.iter().filter(|&&b| b).count() as u64;
                s
            }
            Values::Str(_) => BlockStats::default(),
        }
    }
}

/// Where a block lives and what it holds.
#[derive(Debug, Clone)]
pub struct BlockMeta {
    pub series: SeriesId,
    pub field: Arc<str>,
    pub field_type: FieldType,
    pub count: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    pub offset: u64,
    /// Block length including its trailing crc.
    pub len: u32,
    pub stats: BlockStats,
}

#[cfg(test)]
mod tests;
