//! Timestamp columns: delta-of-delta with a common-divisor scale, three block modes.
//!
//! All arithmetic is wrapping on `i64`, so any sequence (unsorted, duplicates,
//! `i64::MIN`/`MAX` neighbours) round-trips; only the compression assumes the usual
//! near-regular, ascending case.
//!
//! 1. The deltas `d[i] = t[i] - t[i-1]` are computed once. If they are all equal the
//!    block is `TS_CONST`: first value and delta, a few bytes for the whole block, so a
//!    perfectly regular series costs ~0 bits per point.
//! 2. Otherwise `g`, the greatest common divisor of `|d[i]|`, scales the deltas:
//!    `q[i] = d[i] / g` (exact). Nanosecond timestamps from devices that report whole
//!    seconds or milliseconds lose their 30 or 20 always-zero low bits here, and a
//!    regular series with gaps has `g = interval` and tiny `q`. Division is done as an
//!    exact division (shift plus multiplication by the modular inverse of the odd part).
//! 3. The scaled series is then written in whichever of three forms is smallest (all
//!    three sizes are computed exactly, without writing):
//!    - `TS_DOD`: Gorilla-style delta-of-delta buckets over `q`: 1 bit per unchanged
//!      delta, best when deviations are rare and isolated;
//!    - `TS_PACKED`: FOR mini-blocks over `q`: best for irregular (event-driven)
//!      series, where deltas wander;
//!    - `TS_LINEAR`: FOR mini-blocks over the residuals from a straight line,
//!      `r[i] = s[i] - i * D` with `s[i] = (t[i] - t[0]) / g` and `D` the mean scaled
//!      delta: best for jitter around a fixed period (a device that reports every
//!      10 s, plus 0-99 ms of delay). The residuals span the jitter range once, where
//!      deltas span it twice and delta-of-deltas four times: one bit per point less
//!      than `TS_PACKED` on such data.

use super::bits::{put_varint, unzigzag, varint_len, zigzag, BitReader, BitWriter, ByteReader};
use super::{int, tag, CodecError};

const CODEC: &str = "timestamp";

/// `(control bits, control length, payload bits)` of each delta-of-delta bucket, by
/// zigzag magnitude. Control codes are written LSB-first: `0`, `10`, `110`, `1110`,
/// `11110`, `11111`; the decoder counts trailing ones.
const BUCKETS: [(u64, u32, u32); 5] =
    [(0b01, 2, 7), (0b011, 3, 9), (0b0111, 4, 12), (0b01111, 5, 32), (0b11111, 5, 64)];

#[inline]
fn bucket(u: u64) -> usize {
    match u {
        0..=0x7f => 0,
        0x80..=0x1ff => 1,
        0x200..=0xfff => 2,
        0x1000..=0xffff_ffff => 3,
        _ => 4,
    }
}

#[inline]
fn dod_bits(u: u64) -> u64 {
    if u == 0 {
        1
    } else {
        let (_, clen, plen) = BUCKETS[bucket(u)];
        u64::from(clen + plen)
    }
}

#[inline]
fn write_dod(w: &mut BitWriter<'_>, u: u64) {
    if u == 0 {
        w.write(0, 1);
        return;
    }
    let (code, clen, plen) = BUCKETS[bucket(u)];
    if plen <= 32 {
        w.write(code | (u << clen), clen + plen);
    } else {
        w.write(code, clen);
        w.write(u, 64);
    }
}

#[inline]
fn read_dod(r: &mut BitReader<'_>) -> Result<u64, CodecError> {
    let ones = r.peek(5).trailing_ones();
    if ones == 0 {
        r.consume(1)?;
        return Ok(0);
    }
    let (_, clen, plen) = BUCKETS[(ones - 1).min(4) as usize];
    r.consume(clen)?;
    r.read_u64(plen)
}

/// Exact division by a fixed divisor `g = odd << shift`: for `d` a multiple of `g`,
/// `d / g == (d >> shift) * odd^-1 (mod 2^64)`. Costs a shift and a multiply instead of a
/// 40-cycle `idiv` per value.
#[derive(Clone, Copy)]
struct ExactDiv {
    shift: u32,
    inv: u64,
    /// `u64::MAX / odd`: `x` is a multiple of `odd` iff `x * inv <= limit`
    /// (Granlund & Montgomery 1994, section 9).
    limit: u64,
}

impl ExactDiv {
    fn new(g: u64) -> Self {
        debug_assert!(g != 0);
        let shift = g.trailing_zeros();
        let odd = g >> shift;
        // Newton iteration for the inverse mod 2^64: each step doubles the correct low
        // bits, starting from 3 (odd * odd == 1 mod 8).
        let mut inv = odd;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inv)));
        }
        debug_assert_eq!(odd.wrapping_mul(inv), 1);
        ExactDiv { shift, inv, limit: u64::MAX / odd }
    }

    #[inline]
    fn divides(&self, d: u64) -> bool {
        d.trailing_zeros() >= self.shift && (d >> self.shift).wrapping_mul(self.inv) <= self.limit
    }

    /// `d / g` for `d` a multiple of `g` (arithmetic shift keeps the sign).
    #[inline]
    fn div(&self, d: i64) -> i64 {
        ((d >> self.shift) as u64).wrapping_mul(self.inv) as i64
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// The gcd of all `|t[i] - t[i-1]|` (wrapping), 1 if there is no useful common factor.
fn delta_gcd(ts: &[i64]) -> u64 {
    let mut g = 0u64;
    let mut div = None::<ExactDiv>;
    for w in ts.windows(2) {
        let d = w[1].wrapping_sub(w[0]).unsigned_abs();
        if div.is_some_and(|x| x.divides(d)) {
            continue;
        }
        g = gcd(g, d);
        if g == 1 {
            return 1;
        }
        if g != 0 {
            div = Some(ExactDiv::new(g));
        }
    }
    g.max(1)
}

/// `x / m` rounded to nearest (`m >= 1`), without overflow.
fn div_round(x: i64, m: i64) -> i64 {
    let (x, m) = (i128::from(x), i128::from(m));
    let q = x.div_euclid(m) + i128::from(2 * x.rem_euclid(m) >= m);
    // |x / m| <= |x| for m >= 2; m == 1 returns x exactly.
    q as i64
}

pub(crate) fn encode(ts: &[i64], out: &mut Vec<u8>) {
    let n = ts.len();
    if n == 0 {
        out.push(tag::TS_CONST);
        return;
    }
    let first = ts[0];
    if n == 1 {
        out.push(tag::TS_CONST);
        put_varint(out, zigzag(first));
        return;
    }
    let d0 = ts[1].wrapping_sub(ts[0]);
    if ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == d0) {
        out.push(tag::TS_CONST);
        put_varint(out, zigzag(first));
        put_varint(out, zigzag(d0));
        return;
    }

    let g = delta_gcd(ts);
    let div = ExactDiv::new(g);
    let q = |i: usize| div.div(ts[i + 1].wrapping_sub(ts[i]));
    let header = varint_len(zigzag(first)) + varint_len(g);

    let q0 = q(0);
    let mut bits = 0u64;
    let mut prev = q0;
    for i in 1..n - 1 {
        let qi = q(i);
        bits += dod_bits(zigzag(qi.wrapping_sub(prev)));
        prev = qi;
    }
    let dod_size = varint_len(zigzag(q0)) + bits.div_ceil(8) as usize;
    let packed_size = int::for_size(n - 1, q);
    // Residuals from the line through the first point with the mean slope. `s` is
    // exact modulo 2^64 even when the span wraps (every delta is a multiple of `g`).
    let s = |i: usize| div.div(ts[i].wrapping_sub(first));
    // Rounded to nearest, not truncated: a slope off by one drifts the residuals by
    // one unit per point (measured: 9.2 instead of 8.0 bits/point on 0-199 ms jitter).
    let slope = div_round(s(n - 1), n as i64 - 1);
    let r = |i: usize| s(i + 1).wrapping_sub(slope.wrapping_mul(i as i64 + 1));
    let linear_size = varint_len(zigzag(slope)) + int::for_size(n - 1, r);

    if linear_size < packed_size && linear_size < dod_size {
        out.reserve(header + linear_size + 1);
        out.push(tag::TS_LINEAR);
        put_varint(out, zigzag(first));
        put_varint(out, g);
        put_varint(out, zigzag(slope));
        int::for_encode(n - 1, r, out);
    } else if dod_size < packed_size {
        out.reserve(header + dod_size + 1);
        out.push(tag::TS_DOD);
        put_varint(out, zigzag(first));
        put_varint(out, g);
        put_varint(out, zigzag(q0));
        let mut w = BitWriter::new(out);
        let mut prev = q0;
        for i in 1..n - 1 {
            let qi = q(i);
            write_dod(&mut w, zigzag(qi.wrapping_sub(prev)));
            prev = qi;
        }
        w.finish();
    } else {
        out.reserve(header + packed_size + 1);
        out.push(tag::TS_PACKED);
        put_varint(out, zigzag(first));
        put_varint(out, g);
        int::for_encode(n - 1, q, out);
    }
}

pub(crate) fn decode(input: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(input, CODEC);
    let mode = r.u8()?;
    match mode {
        tag::TS_CONST => {
            if count == 0 {
                return r.finish();
            }
            let first = r.zigzag()?;
            let delta = if count > 1 { r.zigzag()? } else { 0 };
            r.finish()?;
            out.reserve(count);
            let mut v = first;
            for _ in 0..count {
                out.push(v);
                v = v.wrapping_add(delta);
            }
            Ok(())
        }
        tag::TS_DOD | tag::TS_PACKED | tag::TS_LINEAR => {
            if count < 2 {
                return Err(r.corrupt("delta mode needs at least two values"));
            }
            let first = r.zigzag()?;
            let g = r.varint()?;
            if g == 0 {
                return Err(r.corrupt("zero delta scale"));
            }
            let g = g as i64;
            out.reserve(count);
            out.push(first);
            let mut t = first;
            if mode == tag::TS_DOD {
                let mut q = r.zigzag()?;
                t = t.wrapping_add(q.wrapping_mul(g));
                out.push(t);
                let mut br = BitReader::new(r.rest(), CODEC);
                for _ in 2..count {
                    q = q.wrapping_add(unzigzag(read_dod(&mut br)?));
                    t = t.wrapping_add(q.wrapping_mul(g));
                    out.push(t);
                }
                br.finish()
            } else if mode == tag::TS_LINEAR {
                let slope = r.zigzag()?;
                let mut line = first;
                let step = slope.wrapping_mul(g);
                int::for_decode(&mut r, count - 1, |res| {
                    // t[i] = first + (i * slope + r[i]) * g, all wrapping.
                    line = line.wrapping_add(step);
                    out.push(line.wrapping_add(res.wrapping_mul(g)));
                })?;
                r.finish()
            } else {
                int::for_decode(&mut r, count - 1, |q| {
                    t = t.wrapping_add(q.wrapping_mul(g));
                    out.push(t);
                })?;
                r.finish()
            }
        }
        _ => Err(CodecError::UnknownCodec { family: CODEC, tag: mode }),
    }
}
