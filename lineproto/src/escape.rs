//! Backslash escaping, per element.
//!
//! | element                            | escapable with `\`          |
//! |------------------------------------|-----------------------------|
//! | measurement                        | `,` ` ` `\`                 |
//! | tag key, tag value, field key      | `,` `=` ` ` `\`             |
//! | string field value (inside quotes) | `"` `\`                     |
//!
//! A backslash followed by one of its element's escapable bytes is an escape and is
//! removed when unescaping; a backslash followed by anything else is a literal
//! backslash (so `a\b` is `a\b`, and `\\` is one backslash, as in InfluxDB's
//! documented backslash table). When *delimiting*, a backslash always takes the
//! next byte with it, so `\=` never ends a key even in a measurement, where `=` is
//! not special.

use std::borrow::Cow;
use std::fmt;

/// Which escaping rules apply to a piece of text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Context {
    Measurement,
    /// Tag keys, tag values and field keys.
    Key,
    /// The inside of a quoted string field value.
    Str,
}

impl Context {
    /// Whether `\` followed by `b` is an escape sequence (as opposed to a literal
    /// backslash) in this context.
    #[inline]
    pub(crate) fn is_escapable(self, b: u8) -> bool {
        match self {
            Context::Measurement => matches!(b, b',' | b' ' | b'\\'),
            Context::Key => matches!(b, b',' | b'=' | b' ' | b'\\'),
            Context::Str => matches!(b, b'"' | b'\\'),
        }
    }
}

/// A measurement, key or string value as it appears in the input, still escaped.
///
/// Borrowing the input keeps parsing allocation-free; [`Escaped::as_str`] only
/// allocates when the text really contained escape sequences, which
/// [`Escaped::is_escaped`] reports. The text is valid UTF-8 (checked once per line
/// at parse time).
///
/// Equality (`==` with another `Escaped` or a `str`) and `Display` use the
/// unescaped text.
#[derive(Clone, Copy)]
pub struct Escaped<'a> {
    raw: &'a str,
    ctx: Context,
    escaped: bool,
}

impl<'a> Escaped<'a> {
    /// `escaped` must be true iff `raw` contains a backslash followed by a byte
    /// escapable in `ctx` (the scanner computes it while delimiting).
    pub(crate) fn new(raw: &'a str, ctx: Context, escaped: bool) -> Self {
        Escaped { raw, ctx, escaped }
    }

    /// The text exactly as it appeared in the input, escape sequences included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// True if the input contained escape sequences, i.e. the unescaped text
    /// differs from [`Escaped::raw`] and [`Escaped::as_str`] would allocate.
    pub fn is_escaped(&self) -> bool {
        self.escaped
    }

    /// The unescaped text; borrowed from the input unless it contained escapes.
    pub fn as_str(&self) -> Cow<'a, str> {
        if self.escaped {
            Cow::Owned(self.chunks().collect())
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// The unescaped text as borrowed pieces of the input: concatenated they give
    /// [`Escaped::as_str`]. Lets callers copy unescaped text into their own buffers
    /// without an intermediate allocation.
    pub fn chunks(&self) -> Chunks<'a> {
        Chunks { rest: self.raw, ctx: self.ctx, escaped: self.escaped, skip_first: false }
    }

    /// Appends the unescaped text to `out`.
    pub fn push_to(&self, out: &mut String) {
        for chunk in self.chunks() {
            out.push_str(chunk);
        }
    }

    /// Appends the unescaped text, as UTF-8 bytes, to `out`.
    pub fn write_unescaped(&self, out: &mut Vec<u8>) {
        for chunk in self.chunks() {
            out.extend_from_slice(chunk.as_bytes());
        }
    }

    /// Length in bytes of the unescaped text.
    pub fn unescaped_len(&self) -> usize {
        self.chunks().map(str::len).sum()
    }

    /// The unescaped bytes, one at a time.
    pub(crate) fn bytes(&self) -> impl Iterator<Item = u8> + 'a {
        self.chunks().flat_map(str::bytes)
    }
}

impl PartialEq for Escaped<'_> {
    fn eq(&self, other: &Self) -> bool {
        if !self.escaped && !other.escaped {
            self.raw == other.raw
        } else {
            self.bytes().eq(other.bytes())
        }
    }
}

impl Eq for Escaped<'_> {}

impl PartialEq<str> for Escaped<'_> {
    fn eq(&self, other: &str) -> bool {
        if self.escaped {
            self.bytes().eq(other.bytes())
        } else {
            self.raw == other
        }
    }
}

impl PartialEq<&str> for Escaped<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.chunks() {
            f.write_str(chunk)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Iterator over the borrowed pieces of an [`Escaped`]'s unescaped text; see
/// [`Escaped::chunks`]. Escapes are removed by splitting the raw text at each
/// escaping backslash and dropping it.
#[derive(Clone, Debug)]
pub struct Chunks<'a> {
    rest: &'a str,
    ctx: Context,
    escaped: bool,
    /// The first byte of `rest` is an escaped byte and must be taken literally.
    skip_first: bool,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            if !self.escaped {
                return Some(std::mem::take(&mut self.rest));
            }
            let b = self.rest.as_bytes();
            let mut i = usize::from(self.skip_first);
            let mut split = None;
            while i + 1 < b.len() {
                if b[i] == b'\\' && self.ctx.is_escapable(b[i + 1]) {
                    split = Some(i);
                    break;
                }
                i += 1;
            }
            match split {
                Some(i) => {
                    // `i` and `i + 1` are positions of ASCII bytes, so both are
                    // char boundaries.
                    let chunk = &self.rest[..i];
                    self.rest = &self.rest[i + 1..];
                    self.skip_first = true;
                    if !chunk.is_empty() {
                        return Some(chunk);
                    }
                }
                None => {
                    self.skip_first = false;
                    return Some(std::mem::take(&mut self.rest));
                }
            }
        }
    }
}

/// Appends `text` to `out`, escaping every byte that is escapable in `ctx`
/// (including every backslash: the canonical form never relies on a lone `\`
/// being literal).
pub(crate) fn push_escaped(out: &mut Vec<u8>, text: &[u8], ctx: Context) {
    for &b in text {
        if ctx.is_escapable(b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(raw: &str, ctx: Context) -> Escaped<'_> {
        let b = raw.as_bytes();
        let escaped =
            b.windows(2).enumerate().any(|(i, w)| w[0] == b'\\' && ctx.is_escapable(w[1]) && !preceded(b, i));
        Escaped::new(raw, ctx, escaped)
    }

    // true if the backslash at `i` is itself the escaped byte of a pair
    fn preceded(b: &[u8], i: usize) -> bool {
        let mut n = 0;
        let mut j = i;
        while j > 0 && b[j - 1] == b'\\' {
            n += 1;
            j -= 1;
        }
        n % 2 == 1
    }

    #[test]
    fn documented_backslash_table() {
        // docs.influxdata.com "Escaping backslashes": \ -> \, \\ -> \, \\\ -> \\,
        // \\\\ -> \\, \\\\\ -> \\\, \\\\\\ -> \\\
        let cases = [
            (r"\", r"\"),
            (r"\\", r"\"),
            (r"\\\", r"\\"),
            (r"\\\\", r"\\"),
            (r"\\\\\", r"\\\"),
            (r"\\\\\\", r"\\\"),
        ];
        for (raw, want) in cases {
            for ctx in [Context::Measurement, Context::Key, Context::Str] {
                assert_eq!(esc(raw, ctx).as_str(), want, "{raw} in {ctx:?}");
            }
        }
    }

    #[test]
    fn context_specific_escapes() {
        assert_eq!(esc(r"a\,b\ c\=d", Context::Key).as_str(), "a,b c=d");
        assert_eq!(esc(r"a\,b\ c\=d", Context::Measurement).as_str(), r"a,b c\=d");
        assert_eq!(esc(r#"a\"b\,c"#, Context::Str).as_str(), r#"a"b\,c"#);
        assert_eq!(esc(r"\é\,", Context::Key).as_str(), r"\é,");
    }

    #[test]
    fn chunks_are_borrowed_and_equality_is_logical() {
        let e = esc(r"ab\,cd\\", Context::Key);
        assert!(e.is_escaped());
        assert_eq!(e.chunks().collect::<Vec<_>>(), vec!["ab", ",cd", "\\"]);
        assert_eq!(e, "ab,cd\\");
        assert_eq!(e.unescaped_len(), 6);
        assert_eq!(e, esc("ab,cd\\", Context::Key));
        assert_ne!(e, esc("ab,cd", Context::Key));
        let plain = esc("plain", Context::Key);
        assert!(matches!(plain.as_str(), Cow::Borrowed("plain")));
        assert_eq!(plain.to_string(), "plain");
    }

    #[test]
    fn push_escaped_round_trips() {
        for ctx in [Context::Measurement, Context::Key, Context::Str] {
            let text = "a,b c=d\\e\"f\\";
            let mut out = Vec::new();
            push_escaped(&mut out, text.as_bytes(), ctx);
            let out = String::from_utf8(out).unwrap();
            assert_eq!(esc(&out, ctx).as_str(), text, "{ctx:?}: {out}");
        }
    }
}
