//! A parsed line and the lazy iterators over its tags and fields.
//!
//! A [`Line`] keeps the validated tag and field sections as slices and re-scans
//! them on iteration instead of storing per-tag offsets: the line stays small
//! (a few machine words, no heap, no fixed capacity) and a caller that only needs
//! some fields does not pay for the rest. The re-scan runs over bytes that were
//! just in cache and that carry no surprises (validated, with a "no backslash"
//! fast path); in the TSBS bench profile the two iterators' scanning is under a
//! fifth of the total. An offset table was not built to compare; see
//! `docs/line-protocol.md`. Numbers are validated at parse time but converted
//! only during iteration, so each value is converted once.

use std::fmt;

use crate::escape::{Context, Escaped};
use crate::number;

/// A typed field value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue<'a> {
    /// A number without suffix: `1`, `1.5`, `-1.5e-3`. Never NaN or infinite.
    F64(f64),
    /// `123i`.
    I64(i64),
    /// `123u`.
    U64(u64),
    /// `t`, `true`, `F`, `FALSE`, ...
    Bool(bool),
    /// A quoted string; `\"` and `\\` are unescaped by [`Escaped::as_str`].
    Str(Escaped<'a>),
}

impl FieldValue<'_> {
    /// The InfluxDB name of the value's type: `float`, `integer`, `unsigned`,
    /// `boolean` or `string`.
    pub fn type_name(&self) -> &'static str {
        match self {
            FieldValue::F64(_) => "float",
            FieldValue::I64(_) => "integer",
            FieldValue::U64(_) => "unsigned",
            FieldValue::Bool(_) => "boolean",
            FieldValue::Str(_) => "string",
        }
    }
}

/// Which field indices are overridden by a later field with the same key.
/// Allocates only for lines that both repeat a field key and have more than 64
/// fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Shadowed {
    #[default]
    None,
    Small(u64),
    Large(Box<[u64]>),
}

impl Shadowed {
    pub(crate) fn with_capacity(n: usize) -> Self {
        if n <= 64 {
            Shadowed::Small(0)
        } else {
            Shadowed::Large(vec![0; n.div_ceil(64)].into_boxed_slice())
        }
    }

    pub(crate) fn set(&mut self, i: usize) {
        match self {
            Shadowed::None => unreachable!("set on Shadowed::None"),
            Shadowed::Small(bits) => *bits |= 1 << i,
            Shadowed::Large(words) => words[i / 64] |= 1 << (i % 64),
        }
    }

    #[inline]
    fn get(&self, i: usize) -> bool {
        match self {
            Shadowed::None => false,
            Shadowed::Small(bits) => bits >> i & 1 == 1,
            Shadowed::Large(words) => words[i / 64] >> (i % 64) & 1 == 1,
        }
    }

    pub(crate) fn count(&self) -> usize {
        match self {
            Shadowed::None => 0,
            Shadowed::Small(bits) => bits.count_ones() as usize,
            Shadowed::Large(words) => words.iter().map(|w| w.count_ones() as usize).sum(),
        }
    }
}

/// One parsed line of line protocol, borrowing from the input.
#[derive(Clone)]
pub struct Line<'a> {
    /// 1-based line number in the input.
    pub line_no: usize,
    pub measurement: Escaped<'a>,
    /// In nanoseconds (converted with the parser's [`Precision`](crate::Precision));
    /// `None` if the line had no timestamp, and the server should use its clock.
    pub timestamp: Option<i64>,
    pub(crate) raw: &'a str,
    /// Tag section without the leading comma: `k=v,k2=v2`; empty if no tags.
    pub(crate) tags: &'a str,
    /// The tag section contains a backslash (else iteration takes a fast path).
    pub(crate) tags_backslash: bool,
    pub(crate) tag_count: u32,
    /// Field section: `k=v,k2="s"`.
    pub(crate) fields: &'a str,
    pub(crate) fields_backslash: bool,
    /// Fields as written, duplicates included.
    pub(crate) written_field_count: u32,
    pub(crate) shadowed: Shadowed,
}

impl<'a> Line<'a> {
    /// The line as written, from the measurement to the end of the line (leading
    /// whitespace and the line terminator excluded).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The measurement and tag section exactly as written (escapes included, tags in input
    /// order): `cpu,host=a,dc=x`. Two lines with the same text here name the same series, so
    /// a caller can cache whatever it derives from the measurement and tags under this key.
    pub fn series(&self) -> &'a str {
        // `raw` starts with the measurement, and the measurement and the tag section are
        // slices of it, so the section ends where the last of them ends.
        let section = if self.tag_count > 0 { self.tags } else { self.measurement.raw() };
        let end = section.as_ptr() as usize + section.len() - self.raw.as_ptr() as usize;
        &self.raw[..end]
    }

    /// The tags in input order (not sorted), each key and value still escaped.
    /// Tag keys are unique.
    pub fn tags(&self) -> Tags<'a> {
        Tags { rest: self.tags, backslash: self.tags_backslash }
    }

    /// The fields in input order. If a field key appears more than once, only the
    /// last occurrence is yielded (last wins, as in InfluxDB), at its position.
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            rest: self.fields,
            backslash: self.fields_backslash,
            index: 0,
            shadowed: if self.shadowed == Shadowed::None { None } else { Some(self.shadowed.clone()) },
        }
    }

    /// Number of tags.
    pub fn tag_count(&self) -> usize {
        self.tag_count as usize
    }

    /// Number of distinct fields (what [`Line::fields`] yields).
    pub fn field_count(&self) -> usize {
        self.written_field_count as usize - self.shadowed.count()
    }

    /// True if a field key was repeated in the line and earlier values dropped.
    pub fn has_duplicate_fields(&self) -> bool {
        self.shadowed != Shadowed::None
    }

    /// The value of tag `key` (compared unescaped). Linear scan.
    pub fn tag(&self, key: &str) -> Option<Escaped<'a>> {
        self.tags().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The value of field `key` (compared unescaped, last one wins). Linear scan.
    pub fn field(&self, key: &str) -> Option<FieldValue<'a>> {
        self.fields().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl fmt::Debug for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct List<I>(I);
        impl<I: Iterator<Item = T> + Clone, T: fmt::Debug> fmt::Debug for List<I> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.clone()).finish()
            }
        }
        f.debug_struct("Line")
            .field("line_no", &self.line_no)
            .field("measurement", &self.measurement)
            .field("tags", &List(self.tags()))
            .field("fields", &List(self.fields()))
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// Finds the first unescaped `delim` in `b[from..]` (or `b.len()`), and whether
/// the text before it contains escape sequences of `ctx`. Without backslashes in
/// the section this is a plain byte search.
#[inline]
fn scan_to(b: &[u8], from: usize, delim: u8, backslash: bool, ctx: Context) -> (usize, bool) {
    if !backslash {
        let end = b[from..].iter().position(|&c| c == delim).map_or(b.len(), |k| from + k);
        return (end, false);
    }
    let mut i = from;
    let mut escaped = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            if i + 1 < b.len() {
                escaped |= ctx.is_escapable(b[i + 1]);
                i += 2;
            } else {
                i += 1;
            }
        } else if c == delim {
            return (i, escaped);
        } else {
            i += 1;
        }
    }
    (b.len(), escaped)
}

/// Iterator over a line's tags; see [`Line::tags`].
#[derive(Clone, Debug)]
pub struct Tags<'a> {
    rest: &'a str,
    backslash: bool,
}

impl<'a> Iterator for Tags<'a> {
    type Item = (Escaped<'a>, Escaped<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let b = self.rest.as_bytes();
        // The section was validated: every tag is `key=value`, both non-empty.
        let (key_end, key_escaped) = scan_to(b, 0, b'=', self.backslash, Context::Key);
        let (value_end, value_escaped) = scan_to(b, key_end + 1, b',', self.backslash, Context::Key);
        let key = Escaped::new(&self.rest[..key_end], Context::Key, key_escaped);
        let value = Escaped::new(&self.rest[key_end + 1..value_end], Context::Key, value_escaped);
        self.rest = self.rest.get(value_end + 1..).unwrap_or("");
        Some((key, value))
    }
}

/// Iterator over a line's fields; see [`Line::fields`].
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    rest: &'a str,
    backslash: bool,
    index: usize,
    /// `None` when the line has no duplicate field keys (the common case).
    shadowed: Option<Shadowed>,
}

impl<'a> Fields<'a> {
    fn next_written(&mut self) -> Option<(Escaped<'a>, FieldValue<'a>)> {
        if self.rest.is_empty() {
            return None;
        }
        let b = self.rest.as_bytes();
        let (key_end, key_escaped) = scan_to(b, 0, b'=', self.backslash, Context::Key);
        let key = Escaped::new(&self.rest[..key_end], Context::Key, key_escaped);
        let v = key_end + 1;
        let (value, value_end) = if b[v] == b'"' {
            let (close, escaped) = scan_to(b, v + 1, b'"', self.backslash, Context::Str);
            (string_value(&self.rest[v + 1..close], escaped), close + 1)
        } else {
            let end = b[v..].iter().position(|&c| c == b',').map_or(b.len(), |k| v + k);
            (convert(&self.rest[v..end]), end)
        };
        self.rest = self.rest.get(value_end + 1..).unwrap_or("");
        Some((key, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (Escaped<'a>, FieldValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let item = self.next_written()?;
            let index = self.index;
            self.index += 1;
            match &self.shadowed {
                Some(s) if s.get(index) => continue,
                _ => return Some(item),
            }
        }
    }
}

/// The typed value of an unquoted field value that passed [`validate`].
pub(crate) fn convert(v: &str) -> FieldValue<'_> {
    let b = v.as_bytes();
    match b[0] {
        b't' | b'T' => FieldValue::Bool(true),
        b'f' | b'F' => FieldValue::Bool(false),
        _ => match b[b.len() - 1] {
            b'i' => FieldValue::I64(
                number::parse_i64(&b[..b.len() - 1]).expect("integer validated when the line was parsed"),
            ),
            b'u' => FieldValue::U64(
                number::parse_u64(&b[..b.len() - 1]).expect("unsigned validated when the line was parsed"),
            ),
            _ => FieldValue::F64(number::parse_f64(v)),
        },
    }
}

/// The value of a quoted string field: `raw` is the text between the quotes.
fn string_value(raw: &str, escaped: bool) -> FieldValue<'_> {
    FieldValue::Str(Escaped::new(raw, Context::Str, escaped))
}
