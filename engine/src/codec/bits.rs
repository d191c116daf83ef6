//! Bit and byte primitives shared by every codec: an LSB-first [`BitWriter`] /
//! [`BitReader`] pair with a 64-bit accumulator, a bounds-checked [`ByteReader`]
//! cursor, LEB128 varints and zigzag.
//!
//! Bit order: bits are packed least-significant-bit first, i.e. the first bit written
//! is bit 0 of byte 0. With that order a writer only ever does `acc |= v << n`, and a
//! reader can classify a prefix code with one `trailing_ones()` on the accumulator
//! instead of a loop over single bits (Gorilla's control bits, the timestamp buckets).

use super::CodecError;

/// Appends bits to a `Vec<u8>` through a 64-bit accumulator; one `extend_from_slice` of
/// 8 bytes per 64 bits written, nothing per value.
pub(crate) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Number of valid bits in `acc`, always `< 64`.
    n: u32,
}

impl<'a> BitWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter { out, acc: 0, n: 0 }
    }

    /// Writes the low `nbits` bits of `v` (`nbits <= 64`); the bits of `v` above `nbits`
    /// must be zero.
    #[inline]
    pub(crate) fn write(&mut self, v: u64, nbits: u32) {
        debug_assert!(nbits <= 64);
        debug_assert!(nbits == 64 || v >> nbits == 0, "value wider than {nbits} bits");
        self.acc |= v << self.n;
        let total = self.n + nbits;
        if total >= 64 {
            self.out.extend_from_slice(&self.acc.to_le_bytes());
            // The bits of `v` that did not fit; `self.n == 0` means all 64 did.
            self.acc = if self.n == 0 { 0 } else { v >> (64 - self.n) };
            self.n = total - 64;
        } else {
            self.n = total;
        }
    }

    /// Flushes the partial byte (padding bits are zero).
    pub(crate) fn finish(self) {
        let bytes = self.n.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
    }
}

#[inline]
pub(crate) fn mask(nbits: u32) -> u64 {
    if nbits >= 64 {
        u64::MAX
    } else {
        (1u64 << nbits) - 1
    }
}

/// Reads bits written by [`BitWriter`]. Every read is bounds checked and returns
/// [`CodecError::Truncated`] past the end; it never panics.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load into `acc`.
    pos: usize,
    /// Bits `[0, n)` are the next unread bits. Bits above `n` may hold a copy of the
    /// following stream bits (see `refill`), never anything else.
    acc: u64,
    n: u32,
    codec: &'static str,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8], codec: &'static str) -> Self {
        BitReader { data, pos: 0, acc: 0, n: 0, codec }
    }

    /// Tops `acc` up to at least 56 valid bits, or to the end of the input.
    ///
    /// Fast path: an unaligned 8-byte load, `pos` advances by whole bytes only
    /// ("variant 4" of F. Giesen's bit reader series). The bits of the partially loaded
    /// byte land above `n` and are ORed in again, identically, by the next refill.
    #[inline]
    fn refill(&mut self) {
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("slice of length 8"));
            self.acc |= word << self.n;
            self.pos += ((63 - self.n) >> 3) as usize;
            self.n |= 56;
        } else {
            while self.n <= 56 && self.pos < self.data.len() {
                self.acc |= u64::from(self.data[self.pos]) << self.n;
                self.pos += 1;
                self.n += 8;
            }
        }
    }

    #[cold]
    fn truncated(&self, nbits: u32) -> CodecError {
        CodecError::Truncated {
            codec: self.codec,
            needed: (nbits - self.n).div_ceil(8) as usize,
            available: 0,
        }
    }

    /// Reads `nbits <= 56` bits.
    #[inline]
    pub(crate) fn read(&mut self, nbits: u32) -> Result<u64, CodecError> {
        debug_assert!(nbits <= 56);
        if self.n < nbits {
            self.refill();
            if self.n < nbits {
                return Err(self.truncated(nbits));
            }
        }
        let v = self.acc & ((1u64 << nbits) - 1);
        self.acc >>= nbits;
        self.n -= nbits;
        Ok(v)
    }

    /// Reads `nbits <= 64` bits.
    #[inline]
    pub(crate) fn read_u64(&mut self, nbits: u32) -> Result<u64, CodecError> {
        if nbits <= 56 {
            self.read(nbits)
        } else {
            let lo = self.read(32)?;
            let hi = self.read(nbits - 32)?;
            Ok(lo | (hi << 32))
        }
    }

    /// Returns up to `nbits <= 56` upcoming bits without consuming them; bits past the
    /// end of the input read as zero. Pair with [`BitReader::consume`], which checks.
    #[inline]
    pub(crate) fn peek(&mut self, nbits: u32) -> u64 {
        debug_assert!(nbits <= 56);
        if self.n < nbits {
            self.refill();
        }
        self.acc & mask(self.n.min(nbits))
    }

    #[inline]
    pub(crate) fn consume(&mut self, nbits: u32) -> Result<(), CodecError> {
        debug_assert!(nbits <= 56);
        if self.n < nbits {
            return Err(self.truncated(nbits));
        }
        self.acc >>= nbits;
        self.n -= nbits;
        Ok(())
    }

    /// Ends the stream: the bits read must account for every input byte and the padding
    /// bits of the last byte must be zero, so that any extra or flipped trailing byte is
    /// reported instead of silently ignored.
    pub(crate) fn finish(self) -> Result<(), CodecError> {
        let consumed_bits = self.pos * 8 - self.n as usize;
        let used = consumed_bits.div_ceil(8);
        if used < self.data.len() {
            return Err(CodecError::TrailingBytes { codec: self.codec, extra: self.data.len() - used });
        }
        // `used <= pos`, so the padding bits are loaded and are the low bits of `acc`.
        let pad = (used * 8 - consumed_bits) as u32;
        if self.acc & mask(pad) != 0 {
            return Err(CodecError::Corrupt { codec: self.codec, reason: "non-zero padding bits" });
        }
        Ok(())
    }
}

/// A bounds-checked cursor over a byte slice.
pub(crate) struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
    pub(crate) codec: &'static str,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(data: &'a [u8], codec: &'static str) -> Self {
        ByteReader { data, pos: 0, codec }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    #[cold]
    fn truncated(&self, needed: usize) -> CodecError {
        CodecError::Truncated { codec: self.codec, needed, available: self.remaining() }
    }

    pub(crate) fn corrupt(&self, reason: &'static str) -> CodecError {
        CodecError::Corrupt { codec: self.codec, reason }
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self.data.get(self.pos).ok_or_else(|| self.truncated(1))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        if len > self.remaining() {
            return Err(self.truncated(len));
        }
        let s = &self.data[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    #[inline]
    pub(crate) fn u64_le(&mut self) -> Result<u64, CodecError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("slice of length 8")))
    }

    /// LEB128, at most 10 bytes; an overlong or overflowing encoding is corrupt.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(self.corrupt("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.corrupt("varint longer than 10 bytes"))
    }

    #[inline]
    pub(crate) fn zigzag(&mut self) -> Result<i64, CodecError> {
        Ok(unzigzag(self.varint()?))
    }

    /// A varint that must be `<= max` (lengths, counts), as `usize`.
    #[inline]
    pub(crate) fn len_at_most(&mut self, max: usize, reason: &'static str) -> Result<usize, CodecError> {
        let v = self.varint()?;
        if v > max as u64 {
            return Err(self.corrupt(reason));
        }
        Ok(v as usize)
    }

    /// The unread rest of the input; the cursor moves to the end.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.data[self.pos..];
        self.pos = self.data.len();
        s
    }

    /// Errors if any input byte is left unread.
    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        if self.remaining() != 0 {
            return Err(CodecError::TrailingBytes { codec: self.codec, extra: self.remaining() });
        }
        Ok(())
    }
}

#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 significant bits, at least 1.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Bits needed to hold `v` (0 for 0).
#[inline]
pub(crate) fn bit_width(v: u64) -> u32 {
    64 - v.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zigzag_extremes() {
        for v in [0, 1, -1, i64::MAX, i64::MIN, 63, -64] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn varint_lengths_match_encoding() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX, 1 << 63] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = ByteReader::new(&out, "test");
            assert_eq!(r.varint(), Ok(v));
            assert!(r.finish().is_ok());
        }
    }

    #[test]
    fn varint_rejects_overflow_and_truncation() {
        let over = [0xff; 9].iter().copied().chain([0x02]).collect::<Vec<_>>();
        assert!(matches!(ByteReader::new(&over, "t").varint(), Err(CodecError::Corrupt { .. })));
        assert!(matches!(ByteReader::new(&[0x80, 0x80], "t").varint(), Err(CodecError::Truncated { .. })));
    }

    #[test]
    fn bit_reader_reports_trailing_and_padding() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        w.write(0b101, 3);
        w.finish();
        assert_eq!(out, [0b101]);
        let mut r = BitReader::new(&out, "t");
        assert_eq!(r.read(3), Ok(0b101));
        assert!(r.finish().is_ok());

        let mut r = BitReader::new(&[0b1101], "t");
        assert_eq!(r.read(3), Ok(0b101));
        assert!(matches!(r.finish(), Err(CodecError::Corrupt { .. })));

        let mut r = BitReader::new(&[0b101, 0], "t");
        assert_eq!(r.read(3), Ok(0b101));
        assert!(matches!(r.finish(), Err(CodecError::TrailingBytes { extra: 1, .. })));

        let mut r = BitReader::new(&[0xff], "t");
        assert!(matches!(r.read(9), Err(CodecError::Truncated { .. })));
    }

    proptest! {
        #[test]
        fn bits_round_trip(items in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..300)) {
            let items: Vec<(u64, u32)> = items.into_iter().map(|(v, n)| (v & mask(n), n)).collect();
            let mut out = Vec::new();
            let mut w = BitWriter::new(&mut out);
            for &(v, n) in &items {
                w.write(v, n);
            }
            w.finish();
            let total: u32 = items.iter().map(|x| x.1).sum();
            prop_assert_eq!(out.len(), total.div_ceil(8) as usize);
            let mut r = BitReader::new(&out, "t");
            for &(v, n) in &items {
                prop_assert_eq!(r.read_u64(n), Ok(v));
            }
            prop_assert!(r.finish().is_ok());
        }
    }
}
