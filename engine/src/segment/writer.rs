//! Writes a segment file: blocks as columns arrive, then the index and trailer.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{BlockMeta, BlockStats, BLOCK_MAX_VALUES, SEGMENT_END_MAGIC, SEGMENT_MAGIC, SEGMENT_VERSION};
use crate::codec;
use crate::error::SegmentError;
use crate::fsutil::{self, Fs, FsFile};
use crate::model::{SeriesId, Values};

/// Builds one segment. Columns must be added in (series, field) order, each sorted by time
/// with unique timestamps. Nothing is visible until [`SegmentWriter::finish`] renames the file.
pub struct SegmentWriter {
    path: PathBuf,
    tmp_path: PathBuf,
    fs: Fs,
    out: BufWriter<FsFile>,
    offset: u64,
    index: Vec<BlockMeta>,
    block: Vec<u8>,
    last_key: Option<(SeriesId, Arc<str>)>,
}

impl SegmentWriter {
    pub fn create(path: &Path) -> Result<SegmentWriter, SegmentError> {
        SegmentWriter::create_with(&Fs::default(), path)
    }

    /// [`SegmentWriter::create`] doing its file operations through `fs`. Errors that mean
    /// "out of file descriptors or disk space" before the file is published are
    /// [`SegmentError::OutOfResources`] (the caller removes the temporary file and retries).
    pub fn create_with(fs: &Fs, path: &Path) -> Result<SegmentWriter, SegmentError> {
        let tmp_path = path.with_extension("seg.tmp");
        let io = |source| write_error(&tmp_path, source);
        let file =
            fs.open(&tmp_path, OpenOptions::new().create(true).truncate(true).write(true)).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; super::HEADER_LEN];
        header[..8].copy_from_slice(SEGMENT_MAGIC);
        header[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        let crc = crc32c::crc32c(&header[..12]);
        header[12..16].copy_from_slice(&crc.to_le_bytes());
        out.write_all(&header).map_err(io)?;
        Ok(SegmentWriter {
            path: path.to_owned(),
            tmp_path: tmp_path.clone(),
            fs: fs.clone(),
            out,
            offset: super::HEADER_LEN as u64,
            index: Vec::new(),
            block: Vec::with_capacity(64 << 10),
            last_key: None,
        })
    }

    /// Adds one column (sorted, unique timestamps), split into blocks of at most
    /// [`BLOCK_MAX_VALUES`].
    pub fn add_column(
        &mut self,
        series: SeriesId,
        field: &Arc<str>,
        ts: &[i64],
        values: &Values,
    ) -> Result<(), SegmentError> {
        debug_assert_eq!(ts.len(), values.len());
        debug_assert!(ts.windows(2).all(|w| w[0] < w[1]), "column must be sorted and unique");
        if let Some((s, f)) = &self.last_key {
            debug_assert!((*s, f.as_ref()) < (series, field.as_ref()), "columns out of order");
        }
        self.last_key = Some((series, field.clone()));
        let mut start = 0;
        while start < ts.len() {
            let end = (start + BLOCK_MAX_VALUES).min(ts.len());
            let chunk = slice_values(values, start, end);
            self.write_block(series, field, &ts[start..end], &chunk)?;
            start = end;
        }
        Ok(())
    }

    fn write_block(
        &mut self,
        series: SeriesId,
        field: &Arc<str>,
        ts: &[i64],
        values: &Values,
    ) -> Result<(), SegmentError> {
        let b = &mut self.block;
        b.clear();
        b.extend_from_slice(&[0; 4]);
        codec::encode_timestamps(ts, b);
        let ts_len = (b.len() - 4) as u32;
        b[..4].copy_from_slice(&ts_len.to_le_bytes());
        codec::encode_values(values, b);
        let crc = crc32c::crc32c(b);
        b.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(b).map_err(|source| write_error(&self.tmp_path, source))?;
        self.index.push(BlockMeta {
            series,
            field: field.clone(),
            field_type: values.field_type(),
            count: ts.len() as u32,
            min_ts: ts[0],
            max_ts: *ts.last().expect("non-empty block"),
            offset: self.offset,
            len: b.len() as u32,
            stats: BlockStats::compute(values),
        });
        self.offset += b.len() as u64;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes written so far (header and blocks).
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Writes index and trailer, fsyncs and renames into place (the caller fsyncs the
    /// directory). Returns the final path and the file size.
    pub fn finish(mut self) -> Result<(PathBuf, u64), SegmentError> {
        let mut index = Vec::with_capacity(self.index.len() * 80);
        encode_index(&self.index, &mut index);
        let mut trailer = [0u8; super::TRAILER_LEN];
        trailer[..8].copy_from_slice(&self.offset.to_le_bytes());
        trailer[8..12].copy_from_slice(&(index.len() as u32).to_le_bytes());
        trailer[12..16].copy_from_slice(&crc32c::crc32c(&index).to_le_bytes());
        trailer[16..18].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        let tcrc = crc32c::crc32c(&trailer[..20]);
        trailer[20..24].copy_from_slice(&tcrc.to_le_bytes());
        trailer[24..32].copy_from_slice(SEGMENT_END_MAGIC);
        let tmp = self.tmp_path.clone();
        let wr = |source| write_error(&tmp, source);
        self.out.write_all(&index).map_err(wr)?;
        self.out.write_all(&trailer).map_err(wr)?;
        let file = self.out.into_inner().map_err(|e| wr(e.into_error()))?;
        // A failed fsync is never retried (fsyncgate): a plain I/O error, which poisons.
        let io = |source| SegmentError::Io { path: tmp.clone(), source };
        file.sync_all().map_err(io)?;
        let size = self.offset + index.len() as u64 + trailer.len() as u64;
        self.fs.rename(&self.tmp_path, &self.path).map_err(io)?;
        Ok((self.path, size))
    }

    /// The temporary file this writer writes until [`SegmentWriter::finish`].
    pub fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }
}

/// An error creating or writing the (unpublished) temporary file.
fn write_error(tmp: &Path, source: io::Error) -> SegmentError {
    if fsutil::is_resource_exhausted(&source) {
        SegmentError::OutOfResources { path: tmp.to_owned(), source }
    } else {
        SegmentError::Io { path: tmp.to_owned(), source }
    }
}

/// Index entry layout (little-endian):
/// `u32 series, u16 field_len, field, u8 type, u32 count, i64 min_ts, i64 max_ts, u64 offset,
/// u32 len, u64 min, u64 max, u64 sum, u64 first, u64 last`.
pub(crate) fn encode_index(entries: &[BlockMeta], out: &mut Vec<u8>) {
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.series.0.to_le_bytes());
        out.extend_from_slice(&(e.field.len() as u16).to_le_bytes());
        out.extend_from_slice(e.field.as_bytes());
        out.push(e.field_type as u8);
        out.extend_from_slice(&e.count.to_le_bytes());
        out.extend_from_slice(&e.min_ts.to_le_bytes());
        out.extend_from_slice(&e.max_ts.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
        for v in [e.stats.min, e.stats.max, e.stats.sum, e.stats.first, e.stats.last] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn slice_values(v: &Values, start: usize, end: usize) -> Values {
    match v {
        Values::F64(x) => Values::F64(x[start..end].to_vec()),
        Values::I64(x) => Values::I64(x[start..end].to_vec()),
        Values::U64(x) => Values::U64(x[start..end].to_vec()),
        Values::Bool(x) => Values::Bool(x[start..end].to_vec()),
        Values::Str(x) => Values::Str(x[start..end].to_vec()),
    }
}
