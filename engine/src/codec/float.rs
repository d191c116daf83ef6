//! `f64` columns: per block, the smaller of Gorilla XOR and the decimal codec, with a
//! constant fast path.
//!
//! Choice: the decimal codec is only tried when a 32-value sample says the block looks
//! decimal (see [`decimal::choose_exponent`]). It is then encoded for real, and the
//! exact Gorilla size is computed with a counting pass that writes nothing (cheaper than
//! a second encode); Gorilla is written only if it is strictly smaller. Blocks of
//! random-looking doubles skip the decimal attempt after the sample.

use super::bits::ByteReader;
use super::{decimal, gorilla, tag, CodecError, FloatCodec};

const CODEC: &str = "f64";

pub(crate) fn encode(vals: &[f64], out: &mut Vec<u8>) {
    let Some(first) = vals.first() else {
        out.push(tag::F64_GORILLA);
        return;
    };
    if vals.iter().all(|v| v.to_bits() == first.to_bits()) {
        encode_const(first.to_bits(), out);
        return;
    }
    match decimal::choose_exponent(vals) {
        Some(e) => {
            let start = out.len();
            out.push(tag::F64_DECIMAL);
            decimal::encode(vals, e, &mut Vec::new(), out);
            let decimal_len = out.len() - start;
            let gorilla_len = 1 + gorilla::size_bits(vals).div_ceil(8) as usize;
            if gorilla_len < decimal_len {
                out.truncate(start);
                encode_gorilla(vals, out);
            }
        }
        None => encode_gorilla(vals, out),
    }
}

fn encode_const(bits: u64, out: &mut Vec<u8>) {
    out.push(tag::F64_CONST);
    out.extend_from_slice(&bits.to_le_bytes());
}

fn encode_gorilla(vals: &[f64], out: &mut Vec<u8>) {
    out.push(tag::F64_GORILLA);
    gorilla::encode(vals, out);
}

pub(crate) fn encode_with(vals: &[f64], codec: FloatCodec, out: &mut Vec<u8>) {
    match (codec, vals.first()) {
        (_, None) => out.push(tag::F64_GORILLA),
        (FloatCodec::Gorilla, _) => encode_gorilla(vals, out),
        (FloatCodec::Decimal, _) => {
            out.push(tag::F64_DECIMAL);
            let e = decimal::choose_exponent(vals).unwrap_or(0);
            decimal::encode(vals, e, &mut Vec::new(), out);
        }
        (FloatCodec::Constant, Some(first)) => {
            if vals.iter().all(|v| v.to_bits() == first.to_bits()) {
                encode_const(first.to_bits(), out);
            } else {
                encode_gorilla(vals, out);
            }
        }
    }
}

pub(crate) fn decode(input: &[u8], count: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(input, CODEC);
    let t = r.u8()?;
    match t {
        tag::F64_GORILLA => gorilla::decode(r.rest(), count, out),
        tag::F64_DECIMAL => decimal::decode(r.rest(), count, out),
        tag::F64_CONST => {
            if count == 0 {
                return r.finish();
            }
            let v = f64::from_bits(r.u64_le()?);
            r.finish()?;
            out.extend(std::iter::repeat_n(v, count));
            Ok(())
        }
        _ => Err(CodecError::UnknownCodec { family: CODEC, tag: t }),
    }
}

pub(crate) fn codec(input: &[u8]) -> Option<FloatCodec> {
    match *input.first()? {
        tag::F64_GORILLA => Some(FloatCodec::Gorilla),
        tag::F64_DECIMAL => Some(FloatCodec::Decimal),
        tag::F64_CONST => Some(FloatCodec::Constant),
        _ => None,
    }
}
