//! Integer columns (`i64`, `u64`) and the frame-of-reference ("FOR") mini-block packer
//! that the timestamp and decimal codecs reuse.
//!
//! A FOR run splits its values into mini-blocks of [`MINIBLOCK`] values. Each mini-block
//! stores its minimum as a zigzag varint, one width byte `w` (0..=64), then every value
//! minus the minimum in exactly `w` bits, LSB-first, padded to a whole byte. A per
//! mini-block width adapts to local spread (a burst of noise costs only its own
//! mini-block) and a constant mini-block costs 2 bytes for 128 values.
//! Everything is wrapping arithmetic on the `i64` bit pattern: `v - min` computed with
//! `wrapping_sub` and read as `u64` is the exact distance for any `min <= v`, so the
//! full `i64`/`u64` range round-trips.
//!
//! Block modes, chosen per block by exact size (all three are cheap to size):
//! - `INT_CONST`: one zigzag varint, every value equal (or an empty block).
//! - `INT_FOR`: FOR over the values themselves (noisy gauges, ids).
//! - `INT_DELTA`: first value as zigzag varint, then FOR over the `count - 1` wrapping
//!   deltas (counters, random walks, sorted data).

use super::bits::{bit_width, put_varint, varint_len, zigzag, BitReader, BitWriter, ByteReader};
use super::{tag, CodecError};

/// Values per FOR mini-block. 128 keeps the 2-byte header under 0.13 bit per value
/// while still letting the width follow local changes.
pub(crate) const MINIBLOCK: usize = 128;

/// Bytes that [`for_encode`] writes for `n` values produced by `get(0..n)`.
#[inline]
pub(crate) fn for_size(n: usize, get: impl Fn(usize) -> i64) -> usize {
    let mut size = 0;
    let mut start = 0;
    while start < n {
        let len = MINIBLOCK.min(n - start);
        let (min, w) = min_width(start, len, &get);
        size += varint_len(zigzag(min)) + 1 + (len * w as usize).div_ceil(8);
        start += len;
    }
    size
}

#[inline]
fn min_width(start: usize, len: usize, get: &impl Fn(usize) -> i64) -> (i64, u32) {
    let mut min = i64::MAX;
    let mut max = i64::MIN;
    for i in start..start + len {
        let v = get(i);
        min = min.min(v);
        max = max.max(v);
    }
    (min, bit_width(max.wrapping_sub(min) as u64))
}

/// Appends the FOR mini-blocks of `get(0..n)`.
#[inline]
pub(crate) fn for_encode(n: usize, get: impl Fn(usize) -> i64, out: &mut Vec<u8>) {
    let mut start = 0;
    while start < n {
        let len = MINIBLOCK.min(n - start);
        let (min, w) = min_width(start, len, &get);
        put_varint(out, zigzag(min));
        out.push(w as u8);
        if w > 0 {
            let mut bw = BitWriter::new(out);
            for i in start..start + len {
                bw.write(get(i).wrapping_sub(min) as u64, w);
            }
            bw.finish();
        }
        start += len;
    }
}

/// Decodes `n` FOR values, handing each to `sink` in order.
#[inline]
pub(crate) fn for_decode(
    r: &mut ByteReader<'_>,
    n: usize,
    mut sink: impl FnMut(i64),
) -> Result<(), CodecError> {
    let mut left = n;
    while left > 0 {
        let len = MINIBLOCK.min(left);
        let min = r.zigzag()?;
        let w = u32::from(r.u8()?);
        if w > 64 {
            return Err(r.corrupt("bit width above 64"));
        }
        let bytes = r.take((len * w as usize).div_ceil(8))?;
        if w == 0 {
            for _ in 0..len {
                sink(min);
            }
        } else {
            let mut br = BitReader::new(bytes, r.codec);
            if w <= 56 {
                for _ in 0..len {
                    sink(min.wrapping_add(br.read(w)? as i64));
                }
            } else {
                for _ in 0..len {
                    sink(min.wrapping_add(br.read_u64(w)? as i64));
                }
            }
            br.finish()?;
        }
        left -= len;
    }
    Ok(())
}

/// Encodes `vals` as an `INT_*` block (tag byte first).
pub(crate) fn encode(vals: &[i64], out: &mut Vec<u8>) {
    let Some(&first) = vals.first() else {
        out.push(tag::INT_CONST);
        return;
    };
    if vals.iter().all(|&v| v == first) {
        out.push(tag::INT_CONST);
        put_varint(out, zigzag(first));
        return;
    }
    let n = vals.len();
    let raw = for_size(n, |i| vals[i]);
    let delta = varint_len(zigzag(first)) + for_size(n - 1, |i| vals[i + 1].wrapping_sub(vals[i]));
    if raw <= delta {
        out.push(tag::INT_FOR);
        for_encode(n, |i| vals[i], out);
    } else {
        out.push(tag::INT_DELTA);
        put_varint(out, zigzag(first));
        for_encode(n - 1, |i| vals[i + 1].wrapping_sub(vals[i]), out);
    }
}

/// Decodes an `INT_*` block of `count` values, appending `map(v)` for each. `out` may be
/// left partially appended on error; the public wrappers truncate it.
pub(crate) fn decode_with<T: Copy>(
    r: &mut ByteReader<'_>,
    count: usize,
    out: &mut Vec<T>,
    map: impl Fn(i64) -> T,
) -> Result<(), CodecError> {
    let t = r.u8()?;
    if !matches!(t, tag::INT_CONST | tag::INT_FOR | tag::INT_DELTA) {
        return Err(CodecError::UnknownCodec { family: "int", tag: t });
    }
    if count == 0 {
        return r.finish();
    }
    out.reserve(count);
    match t {
        tag::INT_CONST => {
            let v = map(r.zigzag()?);
            out.extend(std::iter::repeat_n(v, count));
        }
        tag::INT_FOR => for_decode(r, count, |v| out.push(map(v)))?,
        _ => {
            let mut prev = r.zigzag()?;
            out.push(map(prev));
            for_decode(r, count - 1, |d| {
                prev = prev.wrapping_add(d);
                out.push(map(prev));
            })?;
        }
    }
    r.finish()
}
