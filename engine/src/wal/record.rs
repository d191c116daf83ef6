//! The compact WAL record (WAL format version 2): the points of one shard write, with series
//! named by catalog id and values encoded by type, about a tenth of the write-batch bytes that
//! version 1 logged.
//!
//! ```text
//! payload   := db_len u8, database, point*
//! point     := series, ts_delta zigzag-varint, fieldset, value*      (one value per field of the set)
//! series    := varint s; s even: catalog id s >> 1 (durable in the catalog before this record)
//!                        s odd:  entry s >> 1 of this record's key table; the entry one past
//!                                the table's end is new and is followed by key_len varint, key
//! fieldset  := varint f: entry f of this record's field-set table; f = table length is a new
//!              entry, followed by n varint, (type u8, name_len varint, name) * n
//! value     := f64: varint v; k = v & 31: k <= 18: the decimal (v >> 5 unzigzagged) / 10^k
//!                                          k == 31 (v == 31): the raw f64 bits follow (u64)
//!              i64: zigzag-varint; u64: varint; bool: u8 0 | 1; string: len varint, UTF-8
//! ```
//!
//! `ts_delta` is the difference to the previous point of the record (the first point's to 0).
//! Every table starts empty in each record, so a record decodes on its own: replay can drop a
//! damaged record without losing the meaning of the ones after it. A series id is written only
//! for a series whose catalog record is durable (see `Catalog::durable_series`); any other
//! series carries its key, once per record. Replay turns a record back into write-batch bytes
//! ([`decode`]) and goes through the same path as version 1.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use crate::batch::{BatchDecodeError, FieldIter, MAX_FIELDS, MAX_NAME_LEN, MAX_STRING_LEN};
use crate::codec::bits::{put_varint, unzigzag, zigzag};
use crate::model::{FieldType, FieldValue, SeriesId};

/// Largest number of decimals a float is written with; `10^18` is exact in `f64`.
const MAX_DECIMALS: usize = 18;
const POW10: [f64; MAX_DECIMALS + 1] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18];
/// The low bits of a float's varint saying "raw bits follow".
const RAW_F64: u64 = 31;
/// Field sets searched linearly before a record falls back to a map (most records hold a
/// handful: one per measurement).
const LINEAR_SETS: usize = 8;

/// The decimal form of `v`: `(mantissa, decimals)` with `mantissa as f64 / 10^decimals`
/// giving back the same bits, for the fewest decimals that do; `None` for values that have
/// none (NaN, infinities, `-0.0`, more than 18 decimals or 51 bits of mantissa).
///
/// A division per candidate would cost a few cycles per decimal tried, for every float of
/// every point; the multiplication finds the one candidate worth checking with a division.
/// Trying the decimals of the previous value at the same field position first (one division,
/// no search) measured no faster by a hand-run timing on TSBS-like lines (about 105 ns per
/// 5-value line to encode either way, on the shared 2-core VM) and made records 7% larger (a
/// non-minimal exponent); so did checking the field set while writing the values instead of
/// in a pass before. Neither was kept.
#[inline]
fn decimal(v: f64) -> Option<(i64, u64)> {
    // Adding and subtracting `1.5 * 2^52` rounds |s| < 2^51 to an integer without a libm call
    // (`f64::round` is one on baseline x86-64, and showed in the write path's profile).
    const LIMIT: f64 = (1u64 << 51) as f64;
    const ROUND: f64 = 6_755_399_441_055_744.0;
    for (k, &pow) in POW10.iter().enumerate() {
        let s = v * pow;
        if s.is_nan() || s.abs() >= LIMIT {
            return None;
        }
        let n = (s + ROUND) - ROUND;
        if (s - n).abs() <= s.abs() * 4.0 * f64::EPSILON {
            let m = n as i64;
            if (m as f64 / pow).to_bits() == v.to_bits() {
                return Some((m, k as u64));
            }
        }
    }
    None
}

/// Builds version-2 record payloads. Reused across records (keeps its buffers).
#[derive(Default)]
pub struct RecordEncoder {
    buf: Vec<u8>,
    /// Series id -> key table entry, for series that carry their key in this record.
    keys: HashMap<u32, u32, FxBuildHasher>,
    /// Field-set definitions of this record (their encoded bytes, as written).
    sets: Vec<Vec<u8>>,
    set_index: HashMap<Vec<u8>, u32, FxBuildHasher>,
    last_set: u32,
    scratch: Vec<u8>,
    last_ts: i64,
}

impl RecordEncoder {
    /// Starts a record for database `db` (at most 255 bytes: database names are at most 64).
    pub fn begin(&mut self, db: &str) {
        debug_assert!(db.len() <= u8::MAX as usize);
        self.buf.clear();
        self.keys.clear();
        self.sets.clear();
        self.set_index.clear();
        self.last_set = 0;
        self.last_ts = 0;
        self.buf.push(db.len() as u8);
        self.buf.extend_from_slice(db.as_bytes());
    }

    /// Adds a point of series `id`, whose catalog record is durable when `durable` (else its
    /// batch-format `key` is logged with it, once per record).
    pub fn push(&mut self, id: SeriesId, durable: bool, key: &[u8], ts: i64, fields: FieldIter<'_>) {
        if durable {
            put_varint(&mut self.buf, u64::from(id.0) << 1);
        } else {
            let next = self.keys.len() as u32;
            let entry = *self.keys.entry(id.0).or_insert(next);
            put_varint(&mut self.buf, (u64::from(entry) << 1) | 1);
            if entry == next {
                put_varint(&mut self.buf, key.len() as u64);
                self.buf.extend_from_slice(key);
            }
        }
        put_varint(&mut self.buf, zigzag(ts.wrapping_sub(self.last_ts)));
        self.last_ts = ts;
        self.push_fieldset(fields.clone());
        for (_, value) in fields {
            match value {
                FieldValue::F64(v) => match decimal(v) {
                    Some((m, k)) if zigzag(m) < 1 << 58 => put_varint(&mut self.buf, (zigzag(m) << 5) | k),
                    _ => {
                        self.buf.push(RAW_F64 as u8);
                        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
                    }
                },
                FieldValue::I64(v) => put_varint(&mut self.buf, zigzag(v)),
                FieldValue::U64(v) => put_varint(&mut self.buf, v),
                FieldValue::Bool(v) => self.buf.push(v as u8),
                FieldValue::Str(s) => {
                    put_varint(&mut self.buf, s.len() as u64);
                    self.buf.extend_from_slice(s.as_bytes());
                }
            }
        }
    }

    fn push_fieldset(&mut self, fields: FieldIter<'_>) {
        // The previous point's set first (a series' points come in runs), then the others.
        let n = self.sets.len();
        if n <= LINEAR_SETS {
            let order = (self.last_set as usize..n).chain(0..(self.last_set as usize).min(n));
            for i in order {
                if set_matches(&self.sets[i], fields.clone()) {
                    self.last_set = i as u32;
                    put_varint(&mut self.buf, i as u64);
                    return;
                }
            }
        }
        self.scratch.clear();
        put_varint(&mut self.scratch, u64::from(fields.len()));
        for (name, value) in fields {
            self.scratch.push(value.field_type() as u8);
            put_varint(&mut self.scratch, name.len() as u64);
            self.scratch.extend_from_slice(name);
        }
        if n > LINEAR_SETS {
            if let Some(&i) = self.set_index.get(&self.scratch) {
                self.last_set = i;
                put_varint(&mut self.buf, u64::from(i));
                return;
            }
        }
        put_varint(&mut self.buf, n as u64);
        self.buf.extend_from_slice(&self.scratch);
        if n >= LINEAR_SETS {
            if n == LINEAR_SETS {
                for (i, s) in self.sets.iter().enumerate() {
                    self.set_index.insert(s.clone(), i as u32);
                }
            }
            self.set_index.insert(self.scratch.clone(), n as u32);
        }
        self.sets.push(self.scratch.clone());
        self.last_set = n as u32;
    }

    /// The payload built so far.
    pub fn payload(&self) -> &[u8] {
        &self.buf
    }

    /// Whether no point was added since [`RecordEncoder::begin`].
    pub fn is_empty(&self) -> bool {
        self.buf.first().is_none_or(|&n| self.buf.len() == 1 + usize::from(n))
    }
}

/// Whether the encoded field-set definition `def` names exactly the fields (names and types,
/// in order) of `fields`.
fn set_matches(def: &[u8], fields: FieldIter<'_>) -> bool {
    let mut r = Cursor { buf: def, pos: 0 };
    if r.varint() != Some(u64::from(fields.len())) {
        return false;
    }
    for (name, value) in fields {
        let Some(ty) = r.u8() else { return false };
        let Some(len) = r.varint() else { return false };
        if ty != value.field_type() as u8 || len != name.len() as u64 || r.take(name.len()) != Some(name) {
            return false;
        }
    }
    true
}

/// What the catalog says about a series id named in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdLookup {
    /// The key was appended to the output.
    Found,
    /// The series was dropped since (its points are discarded, as a flush would).
    Dropped,
    /// No such series: the catalog lost records the WAL relies on.
    Unknown,
}

/// What [`decode`] skipped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Points of series dropped since they were logged.
    pub dropped: u64,
    /// Points of series the catalog does not know (only when not refused).
    pub unknown: u64,
    /// The first unknown id.
    pub first_unknown: Option<SeriesId>,
}

/// Decodes the points of a version-2 record body (the payload after the database name) into
/// write-batch bytes appended to `out`. `key_of(id, out)` appends the batch-format key of a
/// catalog series. Points of unknown series are an error when `refuse_unknown`, else skipped.
/// The output is built from checked lengths only; its names, keys and strings are validated
/// when the caller iterates it with `BatchIter::over`.
pub fn decode(
    body: &[u8],
    out: &mut Vec<u8>,
    refuse_unknown: bool,
    mut key_of: impl FnMut(SeriesId, &mut Vec<u8>) -> IdLookup,
) -> Result<Skipped, BatchDecodeError> {
    let mut r = Cursor { buf: body, pos: 0 };
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut sets: Vec<Vec<(FieldType, &[u8])>> = Vec::new();
    let mut skipped = Skipped::default();
    let mut ts = 0i64;
    while r.pos < body.len() {
        let at = r.pos;
        let bad = |reason| BatchDecodeError { offset: at, reason };
        let start = out.len();
        out.extend_from_slice(&[0; 6]); // body_len u32 and key_len u16, patched below
        let s = r.varint().ok_or(bad("series reference"))?;
        let mut keep = true;
        if s & 1 == 1 {
            let entry = s >> 1;
            if entry == keys.len() as u64 {
                let len = r.varint().filter(|&n| n <= u64::from(u16::MAX)).ok_or(bad("series key length"))?;
                keys.push(r.take(len as usize).ok_or(bad("series key past the record end"))?);
            }
            let key = keys.get(entry as usize).ok_or(bad("series key entry not defined"))?;
            out.extend_from_slice(key);
        } else {
            let id = u32::try_from(s >> 1).map_err(|_| bad("series id out of range"))?;
            match key_of(SeriesId(id), out) {
                IdLookup::Found => {}
                IdLookup::Dropped => {
                    skipped.dropped += 1;
                    keep = false;
                }
                IdLookup::Unknown if refuse_unknown => return Err(bad("series id unknown to the catalog")),
                IdLookup::Unknown => {
                    skipped.unknown += 1;
                    skipped.first_unknown.get_or_insert(SeriesId(id));
                    keep = false;
                }
            }
        }
        let key_len = out.len() - start - 6;
        let key_len = u16::try_from(key_len).map_err(|_| bad("series key too long"))?;
        out[start + 4..start + 6].copy_from_slice(&key_len.to_le_bytes());
        let delta = r.varint().ok_or(bad("timestamp"))?;
        ts = ts.wrapping_add(unzigzag(delta));
        out.extend_from_slice(&ts.to_le_bytes());
        let f = r.varint().ok_or(bad("field set reference"))?;
        if f == sets.len() as u64 {
            let n = r.varint().filter(|&n| (1..=MAX_FIELDS as u64).contains(&n)).ok_or(bad("field count"))?;
            let mut set = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let ty = r.u8().and_then(FieldType::from_u8).ok_or(bad("field type"))?;
                let len = r.varint().filter(|&n| n <= MAX_NAME_LEN as u64).ok_or(bad("field name length"))?;
                set.push((ty, r.take(len as usize).ok_or(bad("field name past the record end"))?));
            }
            sets.push(set);
        }
        let set = sets.get(f as usize).ok_or(bad("field set entry not defined"))?;
        out.extend_from_slice(&(set.len() as u16).to_le_bytes());
        for &(ty, name) in set {
            out.push(ty as u8);
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name);
            match ty {
                FieldType::F64 => {
                    let v = r.varint().ok_or(bad("float value"))?;
                    let x = if v == RAW_F64 {
                        f64::from_bits(r.u64().ok_or(bad("float bits"))?)
                    } else {
                        let k = (v & 31) as usize;
                        let pow = POW10.get(k).ok_or(bad("float decimals"))?;
                        unzigzag(v >> 5) as f64 / pow
                    };
                    out.extend_from_slice(&x.to_bits().to_le_bytes());
                }
                FieldType::I64 => {
                    let v = unzigzag(r.varint().ok_or(bad("integer value"))?);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                FieldType::U64 => {
                    out.extend_from_slice(&r.varint().ok_or(bad("unsigned value"))?.to_le_bytes())
                }
                FieldType::Bool => match r.u8() {
                    Some(b @ (0 | 1)) => out.push(b),
                    _ => return Err(bad("boolean value")),
                },
                FieldType::Str => {
                    let len =
                        r.varint().filter(|&n| n <= MAX_STRING_LEN as u64).ok_or(bad("string length"))?;
                    out.extend_from_slice(&(len as u32).to_le_bytes());
                    out.extend_from_slice(r.take(len as usize).ok_or(bad("string past the record end"))?);
                }
            }
        }
        if keep {
            let body_len = u32::try_from(out.len() - start - 4).map_err(|_| bad("point too long"))?;
            out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
        } else {
            out.truncate(start);
        }
    }
    Ok(skipped)
}

/// A bounds-checked reader of record bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            // The tenth byte may only hold the top bit.
            if shift == 63 && b > 1 {
                return None;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
