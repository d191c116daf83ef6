//! Reads a segment file through a memory map. The index is parsed and checked at open; each
//! block's checksum is verified when the block is read, so corruption is reported, never
//! silently returned.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::{
    BlockMeta, BlockStats, HEADER_LEN, SEGMENT_END_MAGIC, SEGMENT_MAGIC, SEGMENT_VERSION, TRAILER_LEN,
};
use crate::batch::Reader;
use crate::codec;
use crate::error::SegmentError;
use crate::model::{FieldType, SeriesId, Values};

pub struct SegmentReader {
    path: PathBuf,
    mmap: Mmap,
    /// Sorted by (series, field, min_ts).
    blocks: Vec<BlockMeta>,
}

impl std::fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReader").field("path", &self.path).field("blocks", &self.blocks.len()).finish()
    }
}

impl SegmentReader {
    pub fn open(path: &Path) -> Result<SegmentReader, SegmentError> {
        let io = |source| SegmentError::Io { path: path.to_owned(), source };
        let file = File::open(path).map_err(io)?;
        // SAFETY: segment files are immutable once renamed into place and only deleted (never
        // modified) by this process; a file truncated by another process would fault, which
        // is the documented contract of memmap2 for files shared with others.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let blocks = parse(path, &mmap)?;
        Ok(SegmentReader { path: path.to_owned(), mmap, blocks })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> u64 {
        self.mmap.len() as u64
    }

    pub fn blocks(&self) -> &[BlockMeta] {
        &self.blocks
    }

    /// The blocks of one series, sorted by field then time.
    pub fn series_blocks(&self, series: SeriesId) -> &[BlockMeta] {
        let lo = self.blocks.partition_point(|b| b.series < series);
        let hi = self.blocks.partition_point(|b| b.series <= series);
        &self.blocks[lo..hi]
    }

    /// Decodes one block, appending to `ts` and `values` (whose type must match).
    pub fn read_block(
        &self,
        b: &BlockMeta,
        ts: &mut Vec<i64>,
        values: &mut Values,
    ) -> Result<(), SegmentError> {
        read_block_in(&self.path, &self.mmap, b, ts, values)
    }

    /// Reads and checks every block (for `strata inspect` and tests).
    pub fn verify(&self) -> Result<(), SegmentError> {
        let mut ts = Vec::new();
        for b in &self.blocks {
            let mut v = Values::new(b.field_type);
            ts.clear();
            self.read_block(b, &mut ts, &mut v)?;
        }
        Ok(())
    }
}

/// Decodes one block of a segment held in `data` (checked by [`parse`]: in bounds, `len >= 8`).
fn read_block_in(
    path: &Path,
    data: &[u8],
    b: &BlockMeta,
    ts: &mut Vec<i64>,
    values: &mut Values,
) -> Result<(), SegmentError> {
    let corrupt = |reason: String| SegmentError::Corrupt { path: path.to_owned(), reason };
    let start = b.offset as usize;
    let end = start + b.len as usize;
    let data = &data[start..end];
    let (body, crc) = data.split_at(data.len() - 4);
    let expected = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let got = crc32c::crc32c(body);
    if expected != got {
        return Err(SegmentError::ChecksumMismatch {
            path: path.to_owned(),
            section: "block",
            offset: b.offset,
            expected,
            got,
        });
    }
    let ts_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if ts_len > body.len() - 4 {
        return Err(corrupt(format!("block at {} has timestamp length {ts_len} past its end", b.offset)));
    }
    let (ts_bytes, val_bytes) = body[4..].split_at(ts_len);
    let n = b.count as usize;
    let codec_err = |source| SegmentError::Codec { path: path.to_owned(), offset: b.offset, source };
    codec::decode_timestamps(ts_bytes, n, ts).map_err(codec_err)?;
    codec::decode_values(val_bytes, n, values).map_err(codec_err)?;
    Ok(())
}

/// Parses a whole segment held in memory and decodes every block into `each`: the decoders
/// of [`SegmentReader`] without a file, for the fuzz targets (`strata_engine::fuzzing`).
#[doc(hidden)]
pub fn decode_bytes(
    data: &[u8],
    mut each: impl FnMut(&BlockMeta, Result<(Vec<i64>, Values), SegmentError>),
) -> Result<Vec<BlockMeta>, SegmentError> {
    let path = Path::new("<memory>");
    let blocks = parse(path, data)?;
    for b in &blocks {
        let mut ts = Vec::new();
        let mut v = Values::new(b.field_type);
        let res = read_block_in(path, data, b, &mut ts, &mut v).map(|()| (ts, v));
        each(b, res);
    }
    Ok(blocks)
}

fn parse(path: &Path, data: &[u8]) -> Result<Vec<BlockMeta>, SegmentError> {
    let corrupt = |reason: &str| SegmentError::Corrupt { path: path.to_owned(), reason: reason.to_owned() };
    if data.len() < HEADER_LEN + TRAILER_LEN {
        return Err(corrupt("file shorter than header and trailer"));
    }
    if &data[..8] != SEGMENT_MAGIC {
        return Err(corrupt("bad magic: not a Strata segment"));
    }
    let hcrc = u32::from_le_bytes(data[12..16].try_into().expect("4 bytes"));
    if crc32c::crc32c(&data[..12]) != hcrc {
        return Err(SegmentError::ChecksumMismatch {
            path: path.to_owned(),
            section: "header",
            offset: 0,
            expected: hcrc,
            got: crc32c::crc32c(&data[..12]),
        });
    }
    let version = u16::from_le_bytes([data[8], data[9]]);
    if version != SEGMENT_VERSION {
        return Err(SegmentError::UnsupportedVersion {
            path: path.to_owned(),
            version,
            supported: SEGMENT_VERSION,
        });
    }
    let t = &data[data.len() - TRAILER_LEN..];
    if &t[24..32] != SEGMENT_END_MAGIC {
        return Err(corrupt("bad trailer magic: file truncated or not finished"));
    }
    let tcrc = u32::from_le_bytes(t[20..24].try_into().expect("4 bytes"));
    if crc32c::crc32c(&t[..20]) != tcrc {
        return Err(SegmentError::ChecksumMismatch {
            path: path.to_owned(),
            section: "trailer",
            offset: (data.len() - TRAILER_LEN) as u64,
            expected: tcrc,
            got: crc32c::crc32c(&t[..20]),
        });
    }
    let index_offset = u64::from_le_bytes(t[..8].try_into().expect("8 bytes"));
    let index_len = u32::from_le_bytes(t[8..12].try_into().expect("4 bytes")) as u64;
    let index_crc = u32::from_le_bytes(t[12..16].try_into().expect("4 bytes"));
    let trailer_at = (data.len() - TRAILER_LEN) as u64;
    if index_offset < HEADER_LEN as u64 || index_offset.checked_add(index_len) != Some(trailer_at) {
        return Err(corrupt("index bounds do not match the file size"));
    }
    let index = &data[index_offset as usize..trailer_at as usize];
    let got = crc32c::crc32c(index);
    if got != index_crc {
        return Err(SegmentError::ChecksumMismatch {
            path: path.to_owned(),
            section: "index",
            offset: index_offset,
            expected: index_crc,
            got,
        });
    }
    let mut r = Reader { buf: index, pos: 0 };
    let n = r.u32().ok_or_else(|| corrupt("index too short"))? as usize;
    // Each entry is at least 71 bytes: bound the allocation by what the index can hold.
    if n > index.len() / 71 + 1 {
        return Err(corrupt("index entry count exceeds index size"));
    }
    let mut names: HashMap<&str, Arc<str>> = HashMap::new();
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        let e = (|| {
            let series = SeriesId(r.u32()?);
            let field = r.str16()?;
            let field_type = FieldType::from_u8(r.u8()?)?;
            let count = r.u32()?;
            let min_ts = r.u64()? as i64;
            let max_ts = r.u64()? as i64;
            let offset = r.u64()?;
            let len = r.u32()?;
            let stats =
                BlockStats { min: r.u64()?, max: r.u64()?, sum: r.u64()?, first: r.u64()?, last: r.u64()? };
            let field = names.entry(field).or_insert_with(|| Arc::from(field)).clone();
            Some(BlockMeta { series, field, field_type, count, min_ts, max_ts, offset, len, stats })
        })()
        .ok_or_else(|| corrupt("index entry truncated or malformed"))?;
        let in_bounds = e.offset >= HEADER_LEN as u64
            && e.len >= 8
            && e.offset.checked_add(e.len as u64).is_some_and(|end| end <= index_offset);
        if !in_bounds || e.count == 0 || e.min_ts > e.max_ts {
            return Err(corrupt("index entry points outside the block area or is inconsistent"));
        }
        blocks.push(e);
    }
    if r.remaining() != 0 {
        return Err(corrupt("trailing bytes after the index"));
    }
    let sorted = blocks
        .windows(2)
        .all(|w| (w[0].series, &w[0].field, w[0].min_ts) < (w[1].series, &w[1].field, w[1].min_ts));
    if !sorted {
        return Err(corrupt("index entries are not sorted"));
    }
    Ok(blocks)
}
