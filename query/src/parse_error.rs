//! The syntax error of the query language, shared by the lexer and the parser (it lives apart
//! from both so neither imports the other for it).

use std::fmt;

/// A syntax error with its position.
///
/// `Display` matches InfluxDB's `/query` error text, e.g.
/// `error parsing query: found FROM, expected identifier, string, number,
/// bool at line 1, char 8`. `line` and `char` are 1-based; `char` counts
/// Unicode scalar values, not bytes. Errors that are not about an unexpected
/// token (bad escapes, unknown functions, limits) carry a `message` instead
/// of an `expected` list and print as `error parsing query: <message> at
/// line L, char C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub char: usize,
    /// The offending token as InfluxDB shows it (`EOF` at end of input).
    pub found: String,
    /// What would have been accepted instead; empty when `message` is set.
    pub expected: Vec<String>,
    /// A description replacing "found X, expected Y".
    pub message: Option<String>,
}

impl ParseError {
    /// "found `found`, expected `expected`" at byte `offset` of `src`.
    pub(crate) fn new(src: &str, offset: usize, found: String, expected: &[&str]) -> Self {
        let (line, char) = line_char(src, offset);
        ParseError {
            line,
            char,
            found,
            expected: expected.iter().map(|s| s.to_string()).collect(),
            message: None,
        }
    }

    /// An error described by `message` at byte `offset` of `src`.
    pub(crate) fn with_message(src: &str, offset: usize, found: String, message: String) -> Self {
        let (line, char) = line_char(src, offset);
        ParseError { line, char, found, expected: Vec::new(), message: Some(message) }
    }
}

/// 1-based line and character of byte `offset`.
fn line_char(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let char = before[line_start..].chars().count() + 1;
    (line, char)
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("error parsing query: ")?;
        match &self.message {
            Some(m) => write!(f, "{m}")?,
            None => write!(f, "found {}, expected {}", self.found, self.expected.join(", "))?,
        }
        write!(f, " at line {}, char {}", self.line, self.char)
    }
}

impl std::error::Error for ParseError {}
