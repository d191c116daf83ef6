//! `WriteBatch`: the unit of writing, in the exact binary form the WAL stores.
//!
//! A batch is built point by point into one flat buffer, so building allocates nothing per point
//! once the buffer has grown, and appending it to the WAL is a copy. The layout is specified in
//! `docs/file-formats.md` ("Write batch"); every integer is little-endian:
//!
//! ```text
//! point  := u32 body_len, body
//! body   := u16 key_len, key, i64 timestamp, u16 n_fields, field{n_fields}
//! key    := u16 m_len, measurement, u16 n_tags, (u16 k_len, k, u16 v_len, v){n_tags}   tags sorted by key
//! field  := u8 type, u16 name_len, name, value
//! value  := f64 | i64 | u64 (8 bytes) | bool (1 byte) | u32 len, utf-8 bytes
//! ```
//!
//! The series key is contiguous so the memtable can hash and look it up without decoding it.

use crate::model::{FieldType, FieldValue, SeriesKey};

/// Largest measurement, tag key/value or field name, in bytes.
pub const MAX_NAME_LEN: usize = 4096;
/// Largest string field value, in bytes.
pub const MAX_STRING_LEN: usize = 1 << 20;
/// Most tags per point.
pub const MAX_TAGS: usize = 256;
/// Most fields per point.
pub const MAX_FIELDS: usize = 1024;

/// Why a point could not be added to a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointError {
    #[error("measurement name is empty")]
    EmptyMeasurement,
    #[error("{what} is {len} bytes long, the limit is {max}")]
    TooLong { what: &'static str, len: usize, max: usize },
    #[error("tag key is empty")]
    EmptyTagKey,
    #[error("duplicate tag key {key:?}")]
    DuplicateTag { key: String },
    #[error("field key is empty")]
    EmptyFieldKey,
    #[error("point has no fields")]
    NoFields,
    #[error("point has {count} {what}, the limit is {max}")]
    TooMany { what: &'static str, count: usize, max: usize },
    #[error("field {field:?} is {got} but was {expected} earlier in the same point")]
    DuplicateFieldType { field: String, expected: FieldType, got: FieldType },
    #[error("series key reference outside the batch (was the batch cleared?)")]
    StaleKey,
}

/// Where the encoded series key of a point sits in its batch (see [`WriteBatch::last_key`]).
/// Valid until the batch is cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef {
    offset: u32,
    len: u16,
}

/// Why stored batch bytes could not be decoded (a WAL record that passed its checksum but does
/// not parse means a bug or an incompatible format, never silently skipped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed write batch at byte {offset}: {reason}")]
pub struct BatchDecodeError {
    pub offset: usize,
    pub reason: &'static str,
}

/// A batch of points for one database. Build with [`WriteBatch::point`].
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    buf: Vec<u8>,
    points: usize,
    field_values: usize,
    /// Scratch for sorting tags; kept to avoid allocating per point.
    tag_scratch: Vec<(usize, usize, usize, usize)>,
    key_scratch: Vec<u8>,
    /// The series key of the last point finished.
    last_key: Option<KeyRef>,
}

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    pub fn with_capacity(bytes: usize) -> WriteBatch {
        WriteBatch { buf: Vec::with_capacity(bytes), ..WriteBatch::default() }
    }

    /// An empty batch that encodes into `buf` (cleared first): lets a server reuse the buffer
    /// of an earlier batch, see [`WriteBatch::into_buffer`].
    pub fn with_buffer(mut buf: Vec<u8>) -> WriteBatch {
        buf.clear();
        WriteBatch { buf, ..WriteBatch::default() }
    }

    /// The batch's encoding buffer, for reuse by a later [`WriteBatch::with_buffer`].
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Starts a point. Nothing is added until [`PointBuilder::finish`] succeeds.
    pub fn point<'b>(&'b mut self, measurement: &str) -> PointBuilder<'b> {
        let start = self.buf.len();
        self.key_scratch.clear();
        self.tag_scratch.clear();
        let mut err = None;
        if measurement.is_empty() {
            err = Some(PointError::EmptyMeasurement);
        } else if measurement.len() > MAX_NAME_LEN {
            err =
                Some(PointError::TooLong { what: "measurement", len: measurement.len(), max: MAX_NAME_LEN });
        }
        // Tags are collected as (offset, len) pairs into key_scratch, sorted at finish.
        self.key_scratch.extend_from_slice(measurement.as_bytes());
        PointBuilder {
            batch: self,
            start,
            m_len: measurement.len(),
            n_fields: 0,
            fields_start: None,
            err,
            done: false,
            prebuilt: false,
        }
    }

    /// The series key of the last point finished, to start later points of the same series
    /// with [`WriteBatch::point_with_key`].
    pub fn last_key(&self) -> Option<KeyRef> {
        self.last_key
    }

    /// Starts a point of the series `key` (from [`WriteBatch::last_key`] of this batch): the
    /// key is copied as encoded, so the measurement and tags are neither given again nor
    /// checked and sorted again. Only fields follow; the header is written first and patched
    /// at [`PointBuilder::finish`], so the fields are not moved either.
    pub fn point_with_key(&mut self, key: KeyRef) -> PointBuilder<'_> {
        let start = self.buf.len();
        let range = key.offset as usize..key.offset as usize + key.len as usize;
        // Only an older point of this batch can hold the key: before `start`.
        let err = (range.end > start).then_some(PointError::StaleKey);
        if err.is_none() {
            self.buf.reserve(4 + 2 + range.len() + 8 + 2);
            self.buf.extend_from_slice(&[0; 4]); // body_len, patched by finish
            self.buf.extend_from_slice(&key.len.to_le_bytes());
            self.buf.extend_from_within(range);
            self.buf.extend_from_slice(&[0; 10]); // timestamp and n_fields, patched by finish
        }
        let fields_start = Some(self.buf.len());
        PointBuilder {
            batch: self,
            start,
            m_len: 0,
            n_fields: 0,
            fields_start,
            err,
            done: false,
            prebuilt: true,
        }
    }

    pub fn len_points(&self) -> usize {
        self.points
    }

    pub fn len_field_values(&self) -> usize {
        self.field_values
    }

    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.points = 0;
        self.field_values = 0;
        self.last_key = None;
    }

    /// Iterates the points of encoded batch bytes, validating as it goes.
    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter::trusted(&self.buf)
    }
}

/// Builds one point of a [`WriteBatch`]. Dropping it without `finish` discards the point.
pub struct PointBuilder<'b> {
    batch: &'b mut WriteBatch,
    start: usize,
    m_len: usize,
    n_fields: usize,
    fields_start: Option<usize>,
    err: Option<PointError>,
    done: bool,
    /// Started by [`WriteBatch::point_with_key`]: the header is in place, fields follow it.
    prebuilt: bool,
}

impl Drop for PointBuilder<'_> {
    fn drop(&mut self) {
        // Fields are staged in the batch buffer: an unfinished point must leave no bytes.
        if !self.done {
            self.batch.buf.truncate(self.start);
        }
    }
}

impl PointBuilder<'_> {
    /// Adds a tag. Tags may come in any order; they are sorted when the point finishes.
    pub fn tag(&mut self, key: &str, value: &str) -> &mut Self {
        if self.err.is_some() {
            return self;
        }
        if self.fields_start.is_some() {
            debug_assert!(false, "tags must be added before fields (and not to a prebuilt key)");
        }
        if key.is_empty() {
            self.err = Some(PointError::EmptyTagKey);
            return self;
        }
        if let Some(e) = check_len("tag key", key.len(), MAX_NAME_LEN)
            .or_else(|| check_len("tag value", value.len(), MAX_NAME_LEN))
        {
            self.err = Some(e);
            return self;
        }
        // InfluxDB drops tags with empty values rather than rejecting the point.
        if value.is_empty() {
            return self;
        }
        if self.batch.tag_scratch.len() >= MAX_TAGS {
            self.err = Some(PointError::TooMany {
                what: "tags",
                count: self.batch.tag_scratch.len() + 1,
                max: MAX_TAGS,
            });
            return self;
        }
        let ks = self.batch.key_scratch.len();
        self.batch.key_scratch.extend_from_slice(key.as_bytes());
        let vs = self.batch.key_scratch.len();
        self.batch.key_scratch.extend_from_slice(value.as_bytes());
        self.batch.tag_scratch.push((ks, key.len(), vs, value.len()));
        self
    }

    /// Adds a field. A repeated field name in one point keeps the last value (as InfluxDB).
    pub fn field(&mut self, name: &str, value: FieldValue<'_>) -> &mut Self {
        if self.err.is_some() {
            return self;
        }
        if name.is_empty() {
            self.err = Some(PointError::EmptyFieldKey);
            return self;
        }
        if let Some(e) = check_len("field key", name.len(), MAX_NAME_LEN) {
            self.err = Some(e);
            return self;
        }
        if let FieldValue::Str(s) = value {
            if let Some(e) = check_len("string field value", s.len(), MAX_STRING_LEN) {
                self.err = Some(e);
                return self;
            }
        }
        if self.n_fields >= MAX_FIELDS {
            self.err =
                Some(PointError::TooMany { what: "fields", count: self.n_fields + 1, max: MAX_FIELDS });
            return self;
        }
        // Fields are staged after the key scratch area in the batch buffer itself: we cannot
        // write the key yet (tags unsorted), so stage fields in a temporary region at the end of
        // buf and move them once the key is known.
        let buf = &mut self.batch.buf;
        if self.fields_start.is_none() {
            self.fields_start = Some(buf.len());
        }
        buf.push(value.field_type() as u8);
        buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
        buf.extend_from_slice(name.as_bytes());
        match value {
            FieldValue::F64(v) => buf.extend_from_slice(&v.to_bits().to_le_bytes()),
            FieldValue::I64(v) => buf.extend_from_slice(&v.to_le_bytes()),
            FieldValue::U64(v) => buf.extend_from_slice(&v.to_le_bytes()),
            FieldValue::Bool(v) => buf.push(v as u8),
            FieldValue::Str(s) => {
                buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
                buf.extend_from_slice(s.as_bytes());
            }
        }
        self.n_fields += 1;
        self
    }

    /// Finishes the point with its timestamp (ns). On error nothing was added to the batch.
    /// Calling it twice is an error-free no-op returning the first result's success.
    pub fn finish(&mut self, timestamp: i64) -> Result<(), PointError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let (start, m_len, n_fields, fields_start) =
            (self.start, self.m_len, self.n_fields, self.fields_start);
        let err = self.err.take();
        let prebuilt = self.prebuilt;
        let batch = &mut *self.batch;
        let result = (|| {
            if let Some(e) = err {
                return Err(e);
            }
            if n_fields == 0 {
                return Err(PointError::NoFields);
            }
            if prebuilt {
                let body_len = batch.buf.len() - start - 4;
                let key_len = u16::from_le_bytes([batch.buf[start + 4], batch.buf[start + 5]]) as usize;
                let ts_at = start + 6 + key_len;
                let buf = &mut batch.buf;
                buf[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
                buf[ts_at..ts_at + 8].copy_from_slice(&timestamp.to_le_bytes());
                buf[ts_at + 8..ts_at + 10].copy_from_slice(&(n_fields as u16).to_le_bytes());
                return Ok(key_len);
            }
            let fields_start = fields_start.expect("n_fields > 0 implies fields were staged");
            // Sort tags by key and reject duplicates.
            let scratch = &batch.key_scratch;
            let tags = &mut batch.tag_scratch;
            tags.sort_unstable_by(|a, b| scratch[a.0..a.0 + a.1].cmp(&scratch[b.0..b.0 + b.1]));
            for w in tags.windows(2) {
                if scratch[w[0].0..w[0].0 + w[0].1] == scratch[w[1].0..w[1].0 + w[1].1] {
                    return Err(PointError::DuplicateTag {
                        key: String::from_utf8_lossy(&scratch[w[0].0..w[0].0 + w[0].1]).into_owned(),
                    });
                }
            }
            let key_len = 2 + m_len + 2 + tags.iter().map(|t| 4 + t.1 + t.3).sum::<usize>();
            if key_len > u16::MAX as usize {
                return Err(PointError::TooLong { what: "series key", len: key_len, max: u16::MAX as usize });
            }
            let fields_len = batch.buf.len() - fields_start;
            let body_len = 2 + key_len + 8 + 2 + fields_len;
            // Layout: [staged fields] -> [u32 body_len][key][ts][n_fields][fields]. Build the
            // header in key_scratch's tail region, then rotate it in front of the fields.
            let header_start = batch.buf.len();
            let buf = &mut batch.buf;
            buf.extend_from_slice(&(body_len as u32).to_le_bytes());
            buf.extend_from_slice(&(key_len as u16).to_le_bytes());
            buf.extend_from_slice(&(m_len as u16).to_le_bytes());
            buf.extend_from_slice(&scratch[..m_len]);
            buf.extend_from_slice(&(tags.len() as u16).to_le_bytes());
            for &(ks, kl, vs, vl) in tags.iter() {
                buf.extend_from_slice(&(kl as u16).to_le_bytes());
                buf.extend_from_slice(&scratch[ks..ks + kl]);
                buf.extend_from_slice(&(vl as u16).to_le_bytes());
                buf.extend_from_slice(&scratch[vs..vs + vl]);
            }
            buf.extend_from_slice(&timestamp.to_le_bytes());
            buf.extend_from_slice(&(n_fields as u16).to_le_bytes());
            let header_len = buf.len() - header_start;
            buf[fields_start..].rotate_right(header_len);
            debug_assert_eq!(buf.len() - start, 4 + body_len);
            Ok(key_len)
        })();
        match result {
            Ok(key_len) => {
                batch.points += 1;
                batch.field_values += n_fields;
                // Both layouts put the key right after the u32 body length and u16 key length.
                batch.last_key =
                    u32::try_from(start + 6).ok().map(|offset| KeyRef { offset, len: key_len as u16 });
                Ok(())
            }
            Err(e) => {
                batch.buf.truncate(start);
                Err(e)
            }
        }
    }
}

fn check_len(what: &'static str, len: usize, max: usize) -> Option<PointError> {
    (len > max).then_some(PointError::TooLong { what, len, max })
}

/// A decoded view of one point in a batch. Borrowed; allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct PointRef<'a> {
    /// The whole encoded point including its length prefix.
    pub raw: &'a [u8],
    /// The series key bytes (see module docs).
    pub key: &'a [u8],
    pub timestamp: i64,
    pub n_fields: u16,
    fields: &'a [u8],
}

impl<'a> PointRef<'a> {
    pub fn measurement(&self) -> &'a [u8] {
        let m_len = u16::from_le_bytes([self.key[0], self.key[1]]) as usize;
        &self.key[2..2 + m_len]
    }

    /// The fields with their names as `&str`.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, FieldValue<'a>)> {
        self.field_bytes().filter_map(|(n, v)| Some((std::str::from_utf8(n).ok()?, v)))
    }

    /// The fields with their names as bytes (no UTF-8 check: the hot path).
    #[inline]
    pub fn field_bytes(&self) -> FieldIter<'a> {
        FieldIter { buf: self.fields, remaining: self.n_fields }
    }

    /// Decodes the series key into its owned form (only for new series).
    pub fn series_key(&self) -> SeriesKey {
        decode_series_key(self.key).expect("key validated when the point was decoded")
    }
}

/// Decodes the binary series key of a point; `None` if malformed.
pub(crate) fn decode_series_key(key: &[u8]) -> Option<SeriesKey> {
    let mut r = Reader { buf: key, pos: 0 };
    let m = r.str16()?;
    let n = r.u16()? as usize;
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        let k = r.str16()?;
        let v = r.str16()?;
        tags.push((Box::from(k), Box::from(v)));
    }
    if r.pos != key.len() {
        return None;
    }
    Some(SeriesKey { measurement: m.into(), tags })
}

/// Encodes a series key in the batch key format (used by tests and the catalog).
pub(crate) fn encode_series_key(key: &SeriesKey, out: &mut Vec<u8>) {
    out.extend_from_slice(&(key.measurement.len() as u16).to_le_bytes());
    out.extend_from_slice(key.measurement.as_bytes());
    out.extend_from_slice(&(key.tags.len() as u16).to_le_bytes());
    for (k, v) in &key.tags {
        out.extend_from_slice(&(k.len() as u16).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
}

/// Iterates the fields of one point.
#[derive(Debug, Clone)]
pub struct FieldIter<'a> {
    buf: &'a [u8],
    remaining: u16,
}

impl FieldIter<'_> {
    /// Fields not yet iterated.
    pub fn len(&self) -> u16 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl<'a> Iterator for FieldIter<'a> {
    /// Field name bytes (UTF-8: validated when the batch was built or replayed) and value.
    type Item = (&'a [u8], FieldValue<'a>);

    // Inlined into the write path's loops for the same reason as `decode_field`.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // Malformed bytes end the iteration; they cannot occur in a validated batch.
        let (name, value, used) = decode_field(self.buf)?;
        self.buf = &self.buf[used..];
        Some((name, value))
    }
}

// Inlined: returned through memory, the tuple cost a store-forwarding stall per field in the
// memtable insert loop (the hottest instruction of the write path).
#[inline(always)]
fn decode_field(buf: &[u8]) -> Option<(&[u8], FieldValue<'_>, usize)> {
    let mut r = Reader { buf, pos: 0 };
    let ty = FieldType::from_u8(r.u8()?)?;
    let n = r.u16()? as usize;
    let name = r.take(n)?;
    let value = match ty {
        FieldType::F64 => FieldValue::F64(f64::from_bits(r.u64()?)),
        FieldType::I64 => FieldValue::I64(r.u64()? as i64),
        FieldType::U64 => FieldValue::U64(r.u64()?),
        FieldType::Bool => FieldValue::Bool(match r.u8()? {
            0 => false,
            1 => true,
            _ => return None,
        }),
        FieldType::Str => {
            let len = r.u32()? as usize;
            FieldValue::Str(std::str::from_utf8(r.take(len)?).ok()?)
        }
    };
    Some((name, value, r.pos))
}

/// Iterates the points of encoded batch bytes.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Check every name and value (bytes from storage); off for bytes our builder made, whose
    /// structure and UTF-8 are valid by construction. Either way decoding is bounds-checked.
    validate: bool,
}

impl<'a> BatchIter<'a> {
    /// Iterates and fully validates encoded batch bytes that came from storage (the WAL).
    pub(crate) fn over(buf: &'a [u8]) -> BatchIter<'a> {
        BatchIter { buf, pos: 0, validate: true }
    }

    /// Iterates bytes built by [`WriteBatch`] (or already validated) without re-validating.
    pub(crate) fn trusted(buf: &'a [u8]) -> BatchIter<'a> {
        BatchIter { buf, pos: 0, validate: false }
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<PointRef<'a>, BatchDecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let res = decode_point(&self.buf[start..], self.validate)
            .ok_or(BatchDecodeError { offset: start, reason: "point does not decode" });
        match res {
            Ok(p) => {
                self.pos += p.raw.len();
                Some(Ok(p))
            }
            Err(e) => {
                self.pos = self.buf.len();
                Some(Err(e))
            }
        }
    }
}

/// Checks a series key's structure without allocating.
fn validate_series_key(key: &[u8]) -> Option<()> {
    let mut r = Reader { buf: key, pos: 0 };
    r.str16()?;
    let n = r.u16()?;
    for _ in 0..n {
        r.str16()?;
        r.str16()?;
    }
    (r.pos == key.len()).then_some(())
}

/// The point starting at byte `offset` of bytes a [`WriteBatch`] built or [`BatchIter::over`]
/// validated (not re-validated). `None` only for an offset that is not a point's start.
pub(crate) fn point_at(buf: &[u8], offset: usize) -> Option<PointRef<'_>> {
    decode_point(buf.get(offset..)?, false)
}

fn decode_point(buf: &[u8], validate: bool) -> Option<PointRef<'_>> {
    let mut r = Reader { buf, pos: 0 };
    let body_len = r.u32()? as usize;
    let body = r.take(body_len)?;
    let raw = &buf[..4 + body_len];
    let mut b = Reader { buf: body, pos: 0 };
    let key_len = b.u16()? as usize;
    let key = b.take(key_len)?;
    let timestamp = b.u64()? as i64;
    let n_fields = b.u16()?;
    let fields = &body[b.pos..];
    if !validate {
        return Some(PointRef { raw, key, timestamp, n_fields, fields });
    }
    validate_series_key(key)?;
    let mut off = 0;
    for _ in 0..n_fields {
        let (name, _, used) = decode_field(&fields[off..])?;
        std::str::from_utf8(name).ok()?;
        off += used;
    }
    if off != fields.len() || n_fields == 0 {
        return None;
    }
    Some(PointRef { raw, key, timestamp, n_fields, fields })
}

/// A bounds-checked little-endian reader over a byte slice.
pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub fn str16(&mut self) -> Option<&'a str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn point_round_trips_with_sorted_tags() {
        let mut b = WriteBatch::new();
        let mut p = b.point("cpu");
        p.tag("region", "eu").tag("host", "a");
        p.field("usage", FieldValue::F64(1.5)).field("n", FieldValue::I64(-3));
        p.field("s", FieldValue::Str("hi")).field("ok", FieldValue::Bool(true));
        p.finish(42).unwrap();
        drop(p);
        assert_eq!(b.len_points(), 1);
        assert_eq!(b.len_field_values(), 4);
        let pts: Vec<_> = b.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(pts.len(), 1);
        let key = pts[0].series_key();
        assert_eq!(&*key.measurement, "cpu");
        assert_eq!(key.tags[0].0.as_ref(), "host");
        assert_eq!(key.tags[1].0.as_ref(), "region");
        assert_eq!(pts[0].timestamp, 42);
        let fields: Vec<_> = pts[0].fields().collect();
        assert_eq!(fields[0], ("usage", FieldValue::F64(1.5)));
        assert_eq!(fields[2], ("s", FieldValue::Str("hi")));
        assert_eq!(fields[3], ("ok", FieldValue::Bool(true)));
    }

    #[test]
    fn point_with_key_encodes_like_a_full_point() {
        let full = |b: &mut WriteBatch, ts: i64, v: f64| {
            let mut p = b.point("cpu");
            p.tag("region", "eu").tag("host", "a");
            p.field("usage", FieldValue::F64(v)).field("s", FieldValue::Str("x"));
            p.finish(ts).unwrap();
        };
        let mut want = WriteBatch::new();
        full(&mut want, 1, 1.0);
        full(&mut want, 2, 2.0);
        full(&mut want, 3, 3.0);
        let mut b = WriteBatch::new();
        full(&mut b, 1, 1.0);
        let key = b.last_key().unwrap();
        b.point_with_key(key)
            .field("usage", FieldValue::F64(2.0))
            .field("s", FieldValue::Str("x"))
            .finish(2)
            .unwrap();
        // The key of a prebuilt point is as good as the first one.
        let key2 = b.last_key().unwrap();
        assert_ne!(key, key2);
        b.point_with_key(key2)
            .field("usage", FieldValue::F64(3.0))
            .field("s", FieldValue::Str("x"))
            .finish(3)
            .unwrap();
        assert_eq!(b.as_bytes(), want.as_bytes());
        assert_eq!((b.len_points(), b.len_field_values()), (3, 6));
        assert!(b.iter().all(|p| p.is_ok()));

        // A refused prebuilt point leaves nothing; a key from a cleared batch is refused.
        let before = b.as_bytes().to_vec();
        assert!(matches!(b.point_with_key(key).finish(4), Err(PointError::NoFields)));
        assert_eq!(b.as_bytes(), &before[..]);
        b.clear();
        assert_eq!(b.last_key(), None);
        let r = b.point_with_key(key2).field("v", FieldValue::F64(1.0)).finish(5);
        assert!(matches!(r, Err(PointError::StaleKey)), "{r:?}");
        assert!(b.as_bytes().is_empty());
    }

    #[test]
    fn rejected_point_leaves_batch_unchanged() {
        let mut b = WriteBatch::new();
        b.point("m").field("v", FieldValue::F64(1.0)).finish(1).unwrap();
        let before = b.as_bytes().to_vec();
        let mut p = b.point("m");
        p.tag("a", "1").tag("a", "2").field("v", FieldValue::F64(2.0));
        assert!(matches!(p.finish(2), Err(PointError::DuplicateTag { .. })));
        drop(p);
        assert!(matches!(b.point("m").finish(3), Err(PointError::NoFields)));
        assert!(matches!(
            b.point("").field("v", FieldValue::F64(1.0)).finish(3),
            Err(PointError::EmptyMeasurement)
        ));
        assert_eq!(b.as_bytes(), &before[..]);
        assert_eq!(b.len_points(), 1);
    }

    #[test]
    fn empty_tag_values_are_dropped() {
        let mut b = WriteBatch::new();
        b.point("m").tag("a", "").tag("b", "x").field("v", FieldValue::F64(1.0)).finish(1).unwrap();
        let p = b.iter().next().unwrap().unwrap();
        assert_eq!(p.series_key().tags.len(), 1);
    }

    #[test]
    fn truncated_batch_is_an_error() {
        let mut b = WriteBatch::new();
        b.point("m").tag("t", "x").field("v", FieldValue::Str("abc")).finish(1).unwrap();
        let bytes = b.as_bytes();
        for cut in 1..bytes.len() {
            let res: Result<Vec<_>, _> = BatchIter::over(&bytes[..cut]).collect();
            assert!(res.is_err(), "prefix of {cut} bytes decoded");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for p in BatchIter::over(&bytes).flatten() {
                let _ = p.series_key();
                let _ = p.fields().count();
            }
        }

        #[test]
        fn builder_round_trip(
            m in "[a-z]{1,8}",
            tags in proptest::collection::btree_map("[a-z]{1,4}", "[a-z0-9 ,=]{1,6}", 0..5),
            vals in proptest::collection::vec(any::<u64>(), 1..6),
            ts in any::<i64>(),
        ) {
            let mut b = WriteBatch::new();
            let mut p = b.point(&m);
            for (k, v) in tags.iter().rev() {
                p.tag(k, v);
            }
            for (i, v) in vals.iter().enumerate() {
                p.field(&format!("f{i}"), FieldValue::F64(f64::from_bits(*v)));
            }
            p.finish(ts).unwrap();
            drop(p);
            let pt = b.iter().next().unwrap().unwrap();
            let key = pt.series_key();
            prop_assert_eq!(&*key.measurement, m.as_str());
            let got: Vec<_> = key.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let want: Vec<_> = tags.into_iter().collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(pt.timestamp, ts);
            for ((_, fv), v) in pt.fields().zip(vals.iter()) {
                match fv {
                    FieldValue::F64(x) => prop_assert_eq!(x.to_bits(), *v),
                    _ => prop_assert!(false),
                }
            }
        }
    }
}
