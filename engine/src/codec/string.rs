//! String columns (UTF-8): plain or dictionary body, optionally zstd-compressed, chosen
//! per block.
//!
//! Bodies:
//! - plain: `count × (len: varint, bytes)`.
//! - dict: `entries: varint (1..=count)`, `entries × (len: varint, bytes)`, then one
//!   index per value, bit-packed LSB-first in `w = bit_width(entries - 1)` bits (0 bits
//!   when the block holds a single distinct value), padded to a byte.
//!
//! Tags: `STR_PLAIN`/`STR_DICT` hold the body as is; `STR_PLAIN_ZSTD`/`STR_DICT_ZSTD`
//! hold `raw_len: varint` and one zstd frame of exactly `raw_len` bytes. The
//! dictionary is used when it is smaller than the plain body (few distinct values:
//! device states, firmware versions); zstd is kept when it saves bytes, which is
//! nearly always for bodies above a few dozen bytes.
//!
//! Decoding never allocates more than the input justifies: `raw_len` is capped at
//! [`MAX_DECOMPRESSED`], must match the frame header's content size, and the
//! decompression buffer is exactly `raw_len`; all lengths inside a body are checked
//! against the bytes actually present before anything is copied.

use std::collections::HashMap;

use super::bits::{bit_width, put_varint, varint_len, BitReader, BitWriter, ByteReader};
use super::{tag, CodecError};

const CODEC: &str = "string";

/// Upper bound on a decompressed string block. The segment writer cuts blocks far
/// below this; anything larger in a file is corruption, not data.
pub const MAX_DECOMPRESSED: usize = 64 << 20;

/// zstd level: 3 (zstd's default) compresses typical tag-like strings within a few
/// percent of level 9 at several times the speed.
const ZSTD_LEVEL: i32 = 3;
/// Bodies shorter than this are not worth a zstd frame header (~9 bytes).
const ZSTD_MIN_BODY: usize = 32;

pub(crate) fn encode<S: AsRef<[u8]>>(vals: &[S], out: &mut Vec<u8>) {
    if vals.is_empty() {
        out.push(tag::STR_PLAIN);
        return;
    }
    let plain_len: usize = vals
        .iter()
        .map(|s| {
            let len = s.as_ref().len();
            varint_len(len as u64) + len
        })
        .sum();

    // Dictionary, abandoned once it holds more than half the values (it cannot win
    // by much then, and hashing every string again is the expensive part).
    let mut dict: HashMap<&[u8], u32> = HashMap::new();
    let mut entries: Vec<&[u8]> = Vec::new();
    let mut indexes: Vec<u32> = Vec::with_capacity(vals.len());
    let max_entries = (vals.len() / 2).max(1);
    for s in vals {
        let s = s.as_ref();
        let next = entries.len() as u32;
        let idx = *dict.entry(s).or_insert(next);
        if idx == next {
            entries.push(s);
            if entries.len() > max_entries {
                break;
            }
        }
        indexes.push(idx);
    }
    let use_dict = indexes.len() == vals.len() && {
        let w = bit_width(entries.len() as u64 - 1) as usize;
        let dict_len = varint_len(entries.len() as u64)
            + entries.iter().map(|e| varint_len(e.len() as u64) + e.len()).sum::<usize>()
            + (vals.len() * w).div_ceil(8);
        dict_len < plain_len
    };

    let mut body = Vec::with_capacity(plain_len);
    if use_dict {
        put_varint(&mut body, entries.len() as u64);
        for e in &entries {
            put_varint(&mut body, e.len() as u64);
            body.extend_from_slice(e);
        }
        let w = bit_width(entries.len() as u64 - 1);
        if w > 0 {
            let mut bw = BitWriter::new(&mut body);
            for &i in &indexes {
                bw.write(u64::from(i), w);
            }
            bw.finish();
        }
    } else {
        for s in vals {
            let s = s.as_ref();
            put_varint(&mut body, s.len() as u64);
            body.extend_from_slice(s);
        }
    }

    let (raw_tag, zstd_tag) =
        if use_dict { (tag::STR_DICT, tag::STR_DICT_ZSTD) } else { (tag::STR_PLAIN, tag::STR_PLAIN_ZSTD) };
    if body.len() >= ZSTD_MIN_BODY && body.len() <= MAX_DECOMPRESSED {
        // An error here (out of memory in zstd's context) just means "store raw".
        if let Ok(frame) = zstd::bulk::compress(&body, ZSTD_LEVEL) {
            if varint_len(body.len() as u64) + frame.len() < body.len() {
                out.push(zstd_tag);
                put_varint(out, body.len() as u64);
                out.extend_from_slice(&frame);
                return;
            }
        }
    }
    out.push(raw_tag);
    out.extend_from_slice(&body);
}

pub(crate) fn decode(input: &[u8], count: usize, out: &mut Vec<String>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(input, CODEC);
    let t = r.u8()?;
    match t {
        tag::STR_PLAIN => decode_plain(r.rest(), count, out),
        tag::STR_DICT => decode_dict(r.rest(), count, out),
        tag::STR_PLAIN_ZSTD | tag::STR_DICT_ZSTD => {
            let body = decompress(&mut r)?;
            if t == tag::STR_PLAIN_ZSTD {
                decode_plain(&body, count, out)
            } else {
                decode_dict(&body, count, out)
            }
        }
        _ => Err(CodecError::UnknownCodec { family: CODEC, tag: t }),
    }
}

fn decompress(r: &mut ByteReader<'_>) -> Result<Vec<u8>, CodecError> {
    let raw_len = r.varint()?;
    if raw_len > MAX_DECOMPRESSED as u64 {
        return Err(CodecError::TooLarge { codec: CODEC, declared: raw_len, limit: MAX_DECOMPRESSED as u64 });
    }
    let frame = r.rest();
    let zstd_err = |reason| CodecError::Corrupt { codec: "zstd", reason };
    // Checked before allocating: the frame header must agree with `raw_len`, and the
    // frame must be the whole rest of the payload.
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n == raw_len => {}
        Ok(Some(_)) => return Err(zstd_err("frame content size differs from declared length")),
        Ok(None) | Err(_) => return Err(zstd_err("bad frame header")),
    }
    match zstd::zstd_safe::find_frame_compressed_size(frame) {
        Ok(n) if n == frame.len() => {}
        Ok(n) if n < frame.len() => {
            return Err(CodecError::TrailingBytes { codec: "zstd", extra: frame.len() - n })
        }
        _ => return Err(zstd_err("truncated frame")),
    }
    let body =
        zstd::bulk::decompress(frame, raw_len as usize).map_err(|_| zstd_err("decompression failed"))?;
    if body.len() as u64 != raw_len {
        return Err(zstd_err("decompressed length differs from declared length"));
    }
    Ok(body)
}

fn to_string(bytes: &[u8], index: usize) -> Result<String, CodecError> {
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| CodecError::InvalidUtf8 { index })
}

fn decode_plain(body: &[u8], count: usize, out: &mut Vec<String>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(body, CODEC);
    // Every value takes at least its 1-byte length, which bounds the reservation by
    // the input size, not by a possibly corrupt `count`.
    out.reserve(count.min(body.len()));
    for i in 0..count {
        let len = r.len_at_most(r.remaining(), "string length past the end")?;
        out.push(to_string(r.take(len)?, i)?);
    }
    r.finish()
}

fn decode_dict(body: &[u8], count: usize, out: &mut Vec<String>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(body, CODEC);
    let n = r.len_at_most(count.min(r.remaining()), "more dictionary entries than values")?;
    if n == 0 {
        return if count == 0 { r.finish() } else { Err(r.corrupt("empty dictionary")) };
    }
    // Validate UTF-8 once per entry; values are then clones of checked entries.
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        let len = r.len_at_most(r.remaining(), "string length past the end")?;
        entries.push(to_string(r.take(len)?, i)?);
    }
    let w = bit_width(n as u64 - 1);
    out.reserve(count);
    if w == 0 {
        r.finish()?;
        out.extend(std::iter::repeat_n(&entries[0], count).cloned());
        return Ok(());
    }
    let packed = r.take((count * w as usize).div_ceil(8))?;
    r.finish()?;
    let mut br = BitReader::new(packed, CODEC);
    for _ in 0..count {
        let i = br.read(w)? as usize;
        let s = entries
            .get(i)
            .ok_or(CodecError::Corrupt { codec: CODEC, reason: "dictionary index out of range" })?;
        out.push(s.clone());
    }
    br.finish()
}
