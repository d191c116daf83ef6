//! `bool` columns: a bitmap, or run lengths when the value rarely changes (door open,
//! alarm raised: typical IoT flags), whichever is smaller.
//!
//! - `BOOL_BITMAP`: `ceil(count / 8)` bytes, value `i` in bit `i % 8` of byte `i / 8`;
//!   padding bits are zero.
//! - `BOOL_RLE`: first value as one byte (0 or 1), then the length of every run as a
//!   varint (each >= 1, values alternate, lengths add up to `count`).

use super::bits::{put_varint, varint_len, ByteReader};
use super::{tag, CodecError};

const CODEC: &str = "bool";

pub(crate) fn encode(vals: &[bool], out: &mut Vec<u8>) {
    let Some(&first) = vals.first() else {
        out.push(tag::BOOL_BITMAP);
        return;
    };
    let bitmap_len = vals.len().div_ceil(8);
    // RLE size, giving up as soon as it cannot win.
    let mut rle_len = 1usize;
    let mut run = 0u64;
    let mut cur = first;
    let mut rle_wins = true;
    for &v in vals {
        if v != cur {
            rle_len += varint_len(run);
            if rle_len >= bitmap_len {
                rle_wins = false;
                break;
            }
            run = 0;
            cur = v;
        }
        run += 1;
    }
    rle_len += varint_len(run);
    if rle_wins && rle_len < bitmap_len {
        out.push(tag::BOOL_RLE);
        out.push(u8::from(first));
        let mut run = 0u64;
        let mut cur = first;
        for &v in vals {
            if v != cur {
                put_varint(out, run);
                run = 0;
                cur = v;
            }
            run += 1;
        }
        put_varint(out, run);
    } else {
        out.push(tag::BOOL_BITMAP);
        out.reserve(bitmap_len);
        for chunk in vals.chunks(8) {
            let byte = chunk.iter().enumerate().fold(0u8, |b, (i, &v)| b | (u8::from(v) << i));
            out.push(byte);
        }
    }
}

pub(crate) fn decode(input: &[u8], count: usize, out: &mut Vec<bool>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(input, CODEC);
    let t = r.u8()?;
    match t {
        tag::BOOL_BITMAP => {
            let bytes = r.take(count.div_ceil(8))?;
            r.finish()?;
            if count & 7 != 0 && bytes[bytes.len() - 1] >> (count & 7) != 0 {
                return Err(r.corrupt("non-zero padding bits"));
            }
            out.reserve(count);
            out.extend((0..count).map(|i| bytes[i / 8] >> (i % 8) & 1 != 0));
            Ok(())
        }
        tag::BOOL_RLE => {
            if count == 0 {
                return Err(r.corrupt("run-length block with no values"));
            }
            let mut cur = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(r.corrupt("first value is not 0 or 1")),
            };
            out.reserve(count);
            let mut left = count;
            while left > 0 {
                let run = r.len_at_most(left, "runs longer than the block")?;
                if run == 0 {
                    return Err(r.corrupt("empty run"));
                }
                out.extend(std::iter::repeat_n(cur, run));
                left -= run;
                cur = !cur;
            }
            r.finish()
        }
        _ => Err(CodecError::UnknownCodec { family: CODEC, tag: t }),
    }
}
