//! Column codecs: turn one block of a column (up to [`MAX_BLOCK_VALUES`] values of one
//! type) into bytes and back.
//!
//! The segment writer calls one `encode_*` per column block and stores the payload
//! length and the value count itself; payloads therefore carry neither. Each payload
//! starts with a one-byte codec tag (see [`tag`]); the tags of all families are
//! distinct, so decoding a block with the wrong function fails with
//! [`CodecError::UnknownCodec`] instead of returning garbage, and
//! [`block_codec_name`] can name the codec of any block for stats and `inspect`.
//!
//! Layout: `bits` (bit/byte primitives), `int` (frame-of-reference mini-blocks, shared),
//! `timestamp` (delta-of-delta), `gorilla` (XOR floats), `decimal` (ALP-style floats),
//! `float` (per-block choice between them), `boolean`, `string`. Byte-level layouts
//! and measured figures: `docs/codecs.md`.
//!
//! Contract for every decoder:
//! - it appends exactly `count` values to `out`, or returns an error and leaves `out`
//!   as it was;
//! - trailing bytes after the payload, and non-zero padding bits, are errors
//!   ([`CodecError::TrailingBytes`], [`CodecError::Corrupt`]): the caller passes the
//!   exact payload, so anything extra is corruption;
//! - corrupt or truncated input returns an error, never panics, never loops more than
//!   `count` times, and never allocates more than `count` values plus what the input
//!   bytes justify (string blocks: at most [`MAX_DECOMPRESSED`] bytes).
//!
//! What this module is not: it knows nothing about files, checksums or series; the
//! segment layer checksums blocks (CRC32C) before decoding them.

pub(crate) mod bits;
mod boolean;
mod decimal;
mod float;
mod gorilla;
mod int;
mod string;
mod timestamp;

#[cfg(test)]
mod tests;

pub use string::MAX_DECOMPRESSED;

use crate::model::Values;

/// Most values a block may hold. Encoders panic above it (a caller bug: the segment
/// writer cuts blocks far smaller); decoders reject a larger `count` before
/// allocating anything.
pub const MAX_BLOCK_VALUES: usize = 1 << 20;

/// Codec tag bytes: the first byte of every payload. Values are part of the on-disk
/// format: never renumber, only add.
pub mod tag {
    /// Timestamps: first value and one delta (perfectly regular block), or nothing for
    /// an empty block.
    pub const TS_CONST: u8 = 0x01;
    /// Timestamps: scaled delta-of-delta in Gorilla-style buckets.
    pub const TS_DOD: u8 = 0x02;
    /// Timestamps: scaled deltas in frame-of-reference mini-blocks.
    pub const TS_PACKED: u8 = 0x03;
    /// Timestamps: scaled residuals from a line, in frame-of-reference mini-blocks.
    pub const TS_LINEAR: u8 = 0x04;
    /// f64: Gorilla XOR stream.
    pub const F64_GORILLA: u8 = 0x10;
    /// f64: decimal mantissas (ALP-style) + exceptions.
    pub const F64_DECIMAL: u8 = 0x11;
    /// f64: one value repeated (8 raw bytes).
    pub const F64_CONST: u8 = 0x12;
    /// i64/u64: one value repeated.
    pub const INT_CONST: u8 = 0x20;
    /// i64/u64: frame-of-reference mini-blocks over the values.
    pub const INT_FOR: u8 = 0x21;
    /// i64/u64: first value + frame-of-reference mini-blocks over the deltas.
    pub const INT_DELTA: u8 = 0x22;
    /// bool: bitmap.
    pub const BOOL_BITMAP: u8 = 0x30;
    /// bool: run lengths.
    pub const BOOL_RLE: u8 = 0x31;
    /// string: length-prefixed values.
    pub const STR_PLAIN: u8 = 0x40;
    /// string: dictionary + bit-packed indexes.
    pub const STR_DICT: u8 = 0x41;
    /// string: zstd over a plain body.
    pub const STR_PLAIN_ZSTD: u8 = 0x42;
    /// string: zstd over a dictionary body.
    pub const STR_DICT_ZSTD: u8 = 0x43;
}

/// Why a block could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CodecError {
    /// The payload ended early. `needed` bytes were wanted at a point where `available`
    /// were left. Cheap and unboxed: it is the common symptom of a torn block.
    #[error("{codec} block truncated: needed {needed} more bytes, {available} available")]
    Truncated { codec: &'static str, needed: usize, available: usize },
    /// The tag byte names no codec of this column type.
    #[error("unknown {family} codec tag {tag:#04x}")]
    UnknownCodec { family: &'static str, tag: u8 },
    /// A field holds a value the encoder never writes.
    #[error("corrupt {codec} block: {reason}")]
    Corrupt { codec: &'static str, reason: &'static str },
    /// Bytes were left after the payload was fully decoded.
    #[error("{extra} trailing bytes after {codec} block")]
    TrailingBytes { codec: &'static str, extra: usize },
    /// String `index` (value index for plain blocks, dictionary entry for dictionary
    /// blocks) is not UTF-8.
    #[error("string {index} is not valid UTF-8")]
    InvalidUtf8 { index: usize },
    /// The caller asked for more values than a block may hold.
    #[error("block of {count} values exceeds the limit of {max}")]
    TooManyValues { count: usize, max: usize },
    /// A declared size is above the decoder's allocation limit.
    #[error("{codec} block declares {declared} bytes, limit is {limit}")]
    TooLarge { codec: &'static str, declared: u64, limit: u64 },
}

/// The float codecs, as reported by [`float_codec_name`] and forced by
/// [`encode_f64_with`] (benchmarks, compression reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatCodec {
    Gorilla,
    Decimal,
    Constant,
}

impl FloatCodec {
    pub fn name(self) -> &'static str {
        match self {
            FloatCodec::Gorilla => "gorilla",
            FloatCodec::Decimal => "decimal",
            FloatCodec::Constant => "constant",
        }
    }
}

#[inline]
fn check_encode_len(len: usize) {
    assert!(len <= MAX_BLOCK_VALUES, "block of {len} values exceeds MAX_BLOCK_VALUES ({MAX_BLOCK_VALUES})");
}

/// Runs a decoder with the shared contract: `count` bounded, `out` restored on error.
#[inline]
fn decode_guarded<T>(
    count: usize,
    out: &mut Vec<T>,
    f: impl FnOnce(&mut Vec<T>) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    if count > MAX_BLOCK_VALUES {
        return Err(CodecError::TooManyValues { count, max: MAX_BLOCK_VALUES });
    }
    let base = out.len();
    let res = f(out);
    match res {
        Ok(()) => debug_assert_eq!(out.len() - base, count),
        Err(_) => out.truncate(base),
    }
    res
}

/// Appends the encoding of a timestamp block. Any values round-trip; near-regular
/// ascending ones compress best (a perfectly regular block costs a few bytes total).
pub fn encode_timestamps(ts: &[i64], out: &mut Vec<u8>) {
    check_encode_len(ts.len());
    timestamp::encode(ts, out);
}

/// Appends exactly `count` timestamps decoded from `input`.
pub fn decode_timestamps(input: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    decode_guarded(count, out, |out| timestamp::decode(input, count, out))
}

/// Appends the encoding of an `f64` block: per block, the smaller of Gorilla XOR and
/// the decimal codec (or a constant). Lossless for every bit pattern, NaN payloads
/// included.
pub fn encode_f64(vals: &[f64], out: &mut Vec<u8>) {
    check_encode_len(vals.len());
    float::encode(vals, out);
}

/// Like [`encode_f64`] but with the codec forced (for comparisons). `Decimal` on
/// non-decimal data stays lossless through exceptions; `Constant` falls back to
/// Gorilla unless all values are bit-identical.
pub fn encode_f64_with(vals: &[f64], codec: FloatCodec, out: &mut Vec<u8>) {
    check_encode_len(vals.len());
    float::encode_with(vals, codec, out);
}

/// Appends exactly `count` floats decoded from `input`.
pub fn decode_f64(input: &[u8], count: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    decode_guarded(count, out, |out| float::decode(input, count, out))
}

/// Which float codec an `encode_f64` block used: `"gorilla"`, `"decimal"` or
/// `"constant"`; `None` if `input` is empty or not a float block.
pub fn float_codec_name(input: &[u8]) -> Option<&'static str> {
    float::codec(input).map(FloatCodec::name)
}

/// Appends the encoding of an `i64` block.
pub fn encode_i64(vals: &[i64], out: &mut Vec<u8>) {
    check_encode_len(vals.len());
    int::encode(vals, out);
}

/// Appends exactly `count` integers decoded from `input`.
pub fn decode_i64(input: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    decode_guarded(count, out, |out| {
        int::decode_with(&mut bits::ByteReader::new(input, "int"), count, out, |v| v)
    })
}

/// Appends the encoding of a `u64` block: the `i64` codec on the same bits (all
/// arithmetic wraps, so `u64::MAX` and friends round-trip).
pub fn encode_u64(vals: &[u64], out: &mut Vec<u8>) {
    check_encode_len(vals.len());
    // Reinterpreting the slice would need `unsafe`; one copy per block is cheap next to
    // the encoding itself and keeps this module free of it.
    let as_i64: Vec<i64> = vals.iter().map(|&v| v as i64).collect();
    int::encode(&as_i64, out);
}

/// Appends exactly `count` unsigned integers decoded from `input`.
pub fn decode_u64(input: &[u8], count: usize, out: &mut Vec<u64>) -> Result<(), CodecError> {
    decode_guarded(count, out, |out| {
        int::decode_with(&mut bits::ByteReader::new(input, "int"), count, out, |v| v as u64)
    })
}

/// Appends the encoding of a `bool` block (bitmap or run lengths).
pub fn encode_bool(vals: &[bool], out: &mut Vec<u8>) {
    check_encode_len(vals.len());
    boolean::encode(vals, out);
}

/// Appends exactly `count` booleans decoded from `input`.
pub fn decode_bool(input: &[u8], count: usize, out: &mut Vec<bool>) -> Result<(), CodecError> {
    decode_guarded(count, out, |out| boolean::decode(input, count, out))
}

/// Appends the encoding of a string block. Values should be UTF-8 (the decoder
/// rejects anything else with [`CodecError::InvalidUtf8`]).
pub fn encode_str<S: AsRef<[u8]>>(vals: &[S], out: &mut Vec<u8>) {
    check_encode_len(vals.len());
    string::encode(vals, out);
}

/// Appends exactly `count` strings decoded from `input`.
pub fn decode_str(input: &[u8], count: usize, out: &mut Vec<String>) -> Result<(), CodecError> {
    decode_guarded(count, out, |out| string::decode(input, count, out))
}

/// Appends the encoding of a value column of any type (the codec of its type).
pub fn encode_values(values: &Values, out: &mut Vec<u8>) {
    match values {
        Values::F64(v) => encode_f64(v, out),
        Values::I64(v) => encode_i64(v, out),
        Values::U64(v) => encode_u64(v, out),
        Values::Bool(v) => encode_bool(v, out),
        Values::Str(v) => encode_str(v, out),
    }
}

/// Appends exactly `count` values decoded from `input` to `out`, in `out`'s type.
pub fn decode_values(input: &[u8], count: usize, out: &mut Values) -> Result<(), CodecError> {
    match out {
        Values::F64(v) => decode_f64(input, count, v),
        Values::I64(v) => decode_i64(input, count, v),
        Values::U64(v) => decode_u64(input, count, v),
        Values::Bool(v) => decode_bool(input, count, v),
        Values::Str(v) => decode_str(input, count, v),
    }
}

/// Names the codec of any block by its tag byte (`"ts-const"`, `"gorilla"`,
/// `"int-delta"`, ...), for `inspect` and stats; `None` for an unknown tag.
pub fn block_codec_name(input: &[u8]) -> Option<&'static str> {
    Some(match *input.first()? {
        tag::TS_CONST => "ts-const",
        tag::TS_DOD => "ts-dod",
        tag::TS_PACKED => "ts-packed",
        tag::TS_LINEAR => "ts-linear",
        tag::F64_GORILLA => "gorilla",
        tag::F64_DECIMAL => "decimal",
        tag::F64_CONST => "constant",
        tag::INT_CONST => "int-const",
        tag::INT_FOR => "int-for",
        tag::INT_DELTA => "int-delta",
        tag::BOOL_BITMAP => "bool-bitmap",
        tag::BOOL_RLE => "bool-rle",
        tag::STR_PLAIN => "str-plain",
        tag::STR_DICT => "str-dict",
        tag::STR_PLAIN_ZSTD => "str-plain-zstd",
        tag::STR_DICT_ZSTD => "str-dict-zstd",
        _ => return None,
    })
}
