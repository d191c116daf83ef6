//! Parse errors: what went wrong, where, and a short excerpt of the line.

use std::borrow::Cow;
use std::fmt;

/// Longest excerpt of the offending line kept in a [`LineError`], in bytes.
pub const EXCERPT_MAX: usize = 64;

/// What is wrong with a line. The `Display` text follows InfluxDB's messages where
/// InfluxDB has one (`missing fields`, `invalid tag format`, `bad timestamp`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum LineErrorKind {
    /// The line starts with `,`: `,tag=a value=1`.
    #[error("missing measurement")]
    EmptyMeasurement,
    /// Nothing (or only whitespace) after the measurement and tags: `cpu`,
    /// `cpu,host=a`, `cpu `.
    #[error("missing fields")]
    MissingFields,
    /// A tag with an empty key: `cpu,=a v=1`, `cpu, v=1`, `cpu,a=b, v=1`.
    #[error("missing tag key")]
    EmptyTagKey,
    /// A tag key without `=value`, or with an empty value: `cpu,host v=1`,
    /// `cpu,host= v=1`.
    #[error("missing tag value")]
    MissingTagValue,
    /// An unescaped `=` inside a tag value: `cpu,host=a=b v=1`.
    #[error("invalid tag format")]
    InvalidTagFormat,
    /// The same tag key twice in one line (compared unescaped).
    #[error("duplicate tags")]
    DuplicateTagKey,
    /// A field with an empty key: `cpu =1`, `cpu a=1,=2`, `cpu a=1,`.
    #[error("missing field key")]
    EmptyFieldKey,
    /// A field key followed by `=` and nothing: `cpu a=`, `cpu a=,b=1`.
    #[error("missing field value")]
    MissingFieldValue,
    /// A field without `=`, or text glued to a string value: `cpu a`,
    /// `cpu a=1,b`, `cpu a="x"y`.
    #[error("invalid field format")]
    InvalidFieldFormat,
    /// A field value that starts like no field type: `cpu a=@`, `cpu a=name`.
    #[error("invalid field value")]
    InvalidFieldValue,
    /// Bad numeric syntax: `1.2.3`, `12x`, `1e`, `-`, `+1`, `1.5i`, `-1u`.
    #[error("invalid number")]
    InvalidNumber,
    /// A value starting with `t`/`f`/`T`/`F` that is not one of `t T true True TRUE
    /// f F false False FALSE`.
    #[error("invalid boolean")]
    InvalidBoolean,
    /// An integer outside `i64`/`u64`, or a float that overflows to infinity
    /// (`1e999`).
    #[error("value out of range")]
    NumberOutOfRange,
    /// `NaN`, `inf` or `infinity` (any case, optionally signed) as a field value;
    /// InfluxDB does not store them.
    #[error("NaN and infinity are not supported")]
    NanOrInf,
    /// A string field value without its closing quote before the end of the line
    /// (raw newlines are not allowed inside strings).
    #[error("unbalanced quotes")]
    UnterminatedString,
    /// The timestamp is not an optionally signed decimal integer.
    #[error("bad timestamp")]
    InvalidTimestamp,
    /// The timestamp, after conversion to nanoseconds with the parser's precision,
    /// does not fit in an `i64`.
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    /// Something other than whitespace after the timestamp: `cpu v=1 1 2`.
    #[error("unexpected text after timestamp")]
    TrailingCharacters,
    /// The line is not valid UTF-8; the column points at the first bad byte.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// The line is longer than [`Parser::with_max_line_len`](crate::Parser::with_max_line_len);
    /// the column is one past the limit.
    #[error("line too long")]
    LineTooLong,
}

/// A line that could not be parsed. Other lines are not affected: the parser
/// resumes at the next line.
///
/// `Display` gives `line 3, column 9: unable to parse 'cpu,host=a': missing fields`.
#[derive(Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the input (every `\n` counts, including blank and
    /// comment lines).
    pub line_no: usize,
    /// 1-based byte column of the error within the line.
    pub column: usize,
    pub kind: LineErrorKind,
    excerpt: [u8; EXCERPT_MAX],
    excerpt_len: u8,
    cut_before: bool,
    cut_after: bool,
}

impl LineError {
    /// `pos` is the 0-based byte offset of the error in `line` (the line without
    /// its terminator).
    pub(crate) fn new(line_no: usize, pos: usize, kind: LineErrorKind, line: &[u8]) -> Self {
        // Show the whole line if short; otherwise a window that contains the error
        // position, snapped to UTF-8 character boundaries.
        let (mut start, mut end) = if line.len() <= EXCERPT_MAX {
            (0, line.len())
        } else {
            let start = if pos < EXCERPT_MAX * 3 / 4 {
                0
            } else {
                (pos - EXCERPT_MAX / 2).min(line.len() - EXCERPT_MAX)
            };
            (start, start + EXCERPT_MAX)
        };
        let is_continuation = |b: u8| b & 0xC0 == 0x80;
        while start < end && is_continuation(line[start]) {
            start += 1;
        }
        while end > start && end < line.len() && is_continuation(line[end]) {
            end -= 1;
        }
        let mut excerpt = [0; EXCERPT_MAX];
        excerpt[..end - start].copy_from_slice(&line[start..end]);
        LineError {
            line_no,
            column: pos + 1,
            kind,
            excerpt,
            excerpt_len: u8::try_from(end - start).expect("excerpt is at most 64 bytes"),
            cut_before: start > 0,
            cut_after: end < line.len(),
        }
    }

    /// At most [`EXCERPT_MAX`] bytes of the offending line, around the error (lossy
    /// if the line is not valid UTF-8).
    pub fn excerpt(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.excerpt[..usize::from(self.excerpt_len)])
    }

    /// True if the excerpt does not start at the beginning of the line.
    pub fn excerpt_cut_before(&self) -> bool {
        self.cut_before
    }

    /// True if the excerpt does not reach the end of the line.
    pub fn excerpt_cut_after(&self) -> bool {
        self.cut_after
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: unable to parse '{}{}{}': {}",
            self.line_no,
            self.column,
            if self.cut_before { "..." } else { "" },
            self.excerpt(),
            if self.cut_after { "..." } else { "" },
            self.kind
        )
    }
}

impl fmt::Debug for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineError")
            .field("line_no", &self.line_no)
            .field("column", &self.column)
            .field("kind", &self.kind)
            .field("excerpt", &self.excerpt())
            .finish()
    }
}

impl std::error::Error for LineError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_influx_like() {
        let e = LineError::new(3, 10, LineErrorKind::MissingFields, b"cpu,host=a");
        assert_eq!(e.to_string(), "line 3, column 11: unable to parse 'cpu,host=a': missing fields");
        assert!(!e.excerpt_cut_before() && !e.excerpt_cut_after());
    }

    #[test]
    fn excerpt_is_capped_and_contains_the_error() {
        let mut line = vec![b'a'; 200];
        line[150] = b'!';
        let e = LineError::new(1, 150, LineErrorKind::InvalidNumber, &line);
        assert_eq!(e.excerpt().len(), EXCERPT_MAX);
        assert!(e.excerpt().contains('!'));
        assert!(e.excerpt_cut_before() && e.excerpt_cut_after());
        assert!(e.to_string().contains("'...a"), "{e}");

        let e = LineError::new(1, 199, LineErrorKind::InvalidNumber, &line);
        assert!(e.excerpt_cut_before() && !e.excerpt_cut_after());
        let e = LineError::new(1, 3, LineErrorKind::InvalidNumber, &line);
        assert!(!e.excerpt_cut_before() && e.excerpt_cut_after());
    }

    #[test]
    fn excerpt_does_not_split_characters() {
        let line = "é".repeat(100);
        for pos in [0, 1, 57, 100, 199] {
            let e = LineError::new(1, pos, LineErrorKind::InvalidNumber, line.as_bytes());
            assert!(!e.excerpt().contains('\u{FFFD}'), "pos {pos}: {e}");
            assert!(e.excerpt().len() <= EXCERPT_MAX && e.excerpt().len() >= EXCERPT_MAX - 3);
        }
    }
}
