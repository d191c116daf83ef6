//! Decimal float compression in the spirit of ALP (Afroozeh, Kuffó, Boncz, "ALP:
//! Adaptive Lossless floating-Point Compression", SIGMOD 2023).
//!
//! Telemetry values are usually decimals printed with a few digits (`21.37`,
//! `52.41234`) and parsed into the nearest `f64`. For such a value there is a small
//! exponent `e` such that `n = round(v * 10^e)` is an integer and `n as f64 / 10^e`
//! gives back exactly the same bits: the division is correctly rounded, so it lands on
//! the same nearest double the parser chose (exact whenever `|n| < 2^53` and
//! `e <= 22`). The block then stores the integers `n` with the integer codec (delta or
//! frame of reference + bit packing), and the few values that do not round-trip (NaN
//! with any payload, infinities, `-0.0`, values with more digits than `e`) as
//! exceptions: position + raw 64 bits. Every value is checked bit for bit at encode
//! time, so the codec is lossless whatever the input.
//!
//! Differences from ALP: one exponent per block and division instead of ALP's two
//! exponents `(e, f)` with multiplication by an inexact `10^-e`: division is slower to
//! decode (about 4 cycles throughput vs 1) but makes every decimal-origin value
//! round-trip, so there is no second exponent to search and fewer exceptions.
//!
//! Payload (after the `F64_DECIMAL` tag byte):
//! ```text
//! e: u8 (0..=18) | exceptions: varint | exceptions × (position gap: varint, bits: u64 LE)
//! | mantissas: an INT_* block (own tag byte) of `count` values
//! ```
//! Position gaps: the first is the position, later ones are `pos - prev_pos - 1`.
//! Exception slots hold the previous mantissa in the integer stream so they cost a
//! zero delta.

use super::bits::{put_varint, ByteReader};
use super::{int, CodecError};

const CODEC: &str = "decimal";

/// Largest exponent tried. `10^18` is exact in `f64` and keeps `v * 10^e` below
/// 2^63 for |v| < 9.2; larger values simply fail the round-trip check.
pub(crate) const MAX_EXPONENT: u8 = 18;

const POW10: [f64; MAX_EXPONENT as usize + 1] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18];

/// `1.5 * 2^52`: adding and subtracting it rounds an `f64` with |x| < 2^51 to the
/// nearest integer without a libm call (`f64::round` is not an instruction on baseline
/// x86-64). Out of that range the result is wrong, and the round-trip check rejects it.
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;

/// The mantissa of `v` at exponent `e`, if it round-trips bit for bit.
#[inline]
fn mantissa(v: f64, e: usize) -> Option<i64> {
    let n = ((v * POW10[e] + ROUND_MAGIC) - ROUND_MAGIC) as i64;
    (decode_one(n, POW10[e]).to_bits() == v.to_bits()).then_some(n)
}

#[inline]
fn decode_one(n: i64, pow: f64) -> f64 {
    n as f64 / pow
}

/// Values sampled to choose the exponent.
const SAMPLES: usize = 32;
/// Estimated cost of an exception in bits (position varint + 64 raw bits).
const EXCEPTION_BITS: u32 = 80;

/// Picks the exponent for a block from a strided sample, or `None` if the block does
/// not look decimal (more than half the sample would be exceptions).
///
/// Cost model per candidate `e`: exceptions × 80 bits + values × `e` × log2(10) bits,
/// since each extra decimal digit widens the packed mantissas by ~3.3 bits. This keeps a
/// single `0.1 + 0.2 = 0.30000000000000004` from forcing `e = 17` on the whole block.
pub(crate) fn choose_exponent(vals: &[f64]) -> Option<u8> {
    if vals.is_empty() {
        return None;
    }
    let step = (vals.len() / SAMPLES).max(1);
    // needs[e] = sampled values whose smallest round-tripping exponent is e.
    let mut needs = [0u32; MAX_EXPONENT as usize + 1];
    let mut sampled = 0u32;
    for &v in vals.iter().step_by(step).take(SAMPLES) {
        sampled += 1;
        if let Some(e) = (0..=MAX_EXPONENT as usize).find(|&e| mantissa(v, e).is_some()) {
            needs[e] += 1;
        }
    }
    let mut best = (u32::MAX, 0u8, 0u32);
    let mut ok = 0u32;
    for (e, &k) in needs.iter().enumerate() {
        ok += k;
        let fails = sampled - ok;
        let cost = fails * EXCEPTION_BITS + sampled * e as u32 * 10 / 3;
        if cost < best.0 {
            best = (cost, e as u8, fails);
        }
    }
    (best.2 * 2 <= sampled).then_some(best.1)
}

/// Encodes `vals` at exponent `e` (payload after the tag byte). `scratch` is reused for
/// the mantissas.
pub(crate) fn encode(vals: &[f64], e: u8, scratch: &mut Vec<i64>, out: &mut Vec<u8>) {
    debug_assert!(e <= MAX_EXPONENT);
    let ei = e as usize;
    scratch.clear();
    scratch.reserve(vals.len());
    out.push(e);
    // Exceptions are written after their count, which is only known after the pass:
    // collect them in a second pass over the (rare) failures instead of buffering.
    let mut exceptions = 0usize;
    let mut prev = vals.iter().find_map(|&v| mantissa(v, ei)).unwrap_or(0);
    for &v in vals {
        match mantissa(v, ei) {
            Some(n) => {
                prev = n;
                scratch.push(n);
            }
            None => {
                // Counted exactly as the second pass below tests it: by whether the
                // slot decodes to `v` (it can, when several mantissas above 2^53 map
                // to the same double).
                if decode_one(prev, POW10[ei]).to_bits() != v.to_bits() {
                    exceptions += 1;
                }
                scratch.push(prev);
            }
        }
    }
    put_varint(out, exceptions as u64);
    if exceptions > 0 {
        let mut last = None::<usize>;
        for (i, &v) in vals.iter().enumerate() {
            // Same test as above: a value is an exception iff its slot does not decode
            // to it.
            if decode_one(scratch[i], POW10[ei]).to_bits() != v.to_bits() {
                let gap = match last {
                    None => i,
                    Some(p) => i - p - 1,
                };
                put_varint(out, gap as u64);
                out.extend_from_slice(&v.to_bits().to_le_bytes());
                last = Some(i);
            }
        }
    }
    int::encode(scratch, out);
}

pub(crate) fn decode(input: &[u8], count: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(input, CODEC);
    let e = r.u8()?;
    if e > MAX_EXPONENT {
        return Err(r.corrupt("exponent above 18"));
    }
    let pow = POW10[e as usize];
    let exceptions = r.len_at_most(count, "more exceptions than values")?;
    // Validate the exception list now (positions strictly increasing and in range) and
    // patch it in after the mantissas, walking it a second time: no allocation.
    let exc_start = r.rest();
    let mut er = ByteReader::new(exc_start, CODEC);
    let mut next = 0usize;
    for _ in 0..exceptions {
        let gap = er.len_at_most(count, "exception position out of range")?;
        let pos = next + gap;
        if pos >= count {
            return Err(er.corrupt("exception position out of range"));
        }
        er.take(8)?;
        next = pos + 1;
    }
    let exc_len = exc_start.len() - er.remaining();
    let mut ints = ByteReader::new(&exc_start[exc_len..], CODEC);
    let base = out.len();
    int::decode_with(&mut ints, count, out, |n| decode_one(n, pow))?;
    let mut er = ByteReader::new(&exc_start[..exc_len], CODEC);
    let mut next = 0usize;
    for _ in 0..exceptions {
        let pos = next + er.varint()? as usize;
        out[base + pos] = f64::from_bits(er.u64_le()?);
        next = pos + 1;
    }
    Ok(())
}
