//! Gorilla XOR float compression (Pelkonen et al., "Gorilla: A Fast, Scalable,
//! In-Memory Time Series Database", VLDB 2015, section 4.1.2,
//! <https://www.vldb.org/pvldb/vol8/p1816-teller.pdf>).
//!
//! Payload (after the `F64_GORILLA` tag byte), one LSB-first bit stream:
//! - the first value's 64 bits;
//! - for each next value, `x = bits ^ prev_bits`:
//!   - `0`: `x == 0` (same value);
//!   - `1 0` + `sig` bits: `x` fits the current window (at least as many leading and
//!     trailing zeros as the window): its meaningful bits `x >> tz`;
//!   - `1 1` + 5 bits leading zeros (capped at 31, as in the paper) + 6 bits `sig - 1`
//!     + `sig` bits: a new window.
//!
//! The paper's format is kept as is: it is the baseline the decimal codec must beat.

use super::bits::{BitReader, BitWriter};
use super::CodecError;

const CODEC: &str = "gorilla";

/// Leading/trailing zero counts of `x != 0`, leading zeros capped to fit 5 bits.
#[inline]
fn window(x: u64) -> (u32, u32) {
    (x.leading_zeros().min(31), x.trailing_zeros())
}

/// Exact size in bits of the Gorilla stream for `vals` (non-empty).
pub(crate) fn size_bits(vals: &[f64]) -> u64 {
    let mut bits = 64u64;
    let mut prev = vals[0].to_bits();
    // No window yet: (lead, trail) = (64, 64) can never be matched.
    let (mut lead, mut trail) = (64u32, 64u32);
    for v in &vals[1..] {
        let cur = v.to_bits();
        let x = cur ^ prev;
        prev = cur;
        if x == 0 {
            bits += 1;
            continue;
        }
        let (l, t) = window(x);
        if l >= lead && t >= trail {
            bits += 2 + u64::from(64 - lead - trail);
        } else {
            bits += 2 + 5 + 6 + u64::from(64 - l - t);
            lead = l;
            trail = t;
        }
    }
    bits
}

pub(crate) fn encode(vals: &[f64], out: &mut Vec<u8>) {
    let Some(first) = vals.first() else { return };
    let mut w = BitWriter::new(out);
    let mut prev = first.to_bits();
    w.write(prev, 64);
    let (mut lead, mut trail) = (64u32, 64u32);
    for v in &vals[1..] {
        let cur = v.to_bits();
        let x = cur ^ prev;
        prev = cur;
        if x == 0 {
            w.write(0, 1);
            continue;
        }
        let (l, t) = window(x);
        if l >= lead && t >= trail {
            w.write(0b01, 2);
            w.write(x >> trail, 64 - lead - trail);
        } else {
            let sig = 64 - l - t;
            // '11', 5 bits leading zeros, 6 bits (sig - 1): 13 control bits in one write.
            w.write(0b11 | (u64::from(l) << 2) | (u64::from(sig - 1) << 7), 13);
            w.write(x >> t, sig);
            lead = l;
            trail = t;
        }
    }
    w.finish();
}

pub(crate) fn decode(input: &[u8], count: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    let mut r = BitReader::new(input, CODEC);
    if count == 0 {
        return r.finish();
    }
    out.reserve(count);
    let mut prev = r.read_u64(64)?;
    out.push(f64::from_bits(prev));
    // sig == 0 marks "no window yet".
    let (mut trail, mut sig) = (0u32, 0u32);
    for _ in 1..count {
        let ctl = r.peek(2);
        if ctl & 1 == 0 {
            r.consume(1)?;
        } else {
            r.consume(2)?;
            if ctl & 2 != 0 {
                let hdr = r.read(11)? as u32;
                let lead = hdr & 31;
                sig = (hdr >> 5) + 1;
                if lead + sig > 64 {
                    return Err(CodecError::Corrupt { codec: CODEC, reason: "window wider than 64 bits" });
                }
                trail = 64 - lead - sig;
            } else if sig == 0 {
                return Err(CodecError::Corrupt { codec: CODEC, reason: "window reused before being set" });
            }
            prev ^= r.read_u64(sig)? << trail;
        }
        out.push(f64::from_bits(prev));
    }
    r.finish()
}
