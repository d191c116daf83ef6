//! [`Parser`]: splits a body into lines and validates each line in one pass.
//!
//! Lines end at every `\n` (an optional `\r` before it is dropped). A raw newline
//! is never part of a value, even inside quotes — the line protocol spec does not
//! support newlines in tag or field values — so a bad line can never swallow the
//! lines after it: the parser always resumes at the next `\n`.
//!
//! The scanner walks each line once, left to right, with a 256-entry table of the
//! bytes that matter (`\`, `,`, ` `, `=`), and records only section boundaries;
//! [`Line::tags`] and [`Line::fields`] re-scan those sections lazily. Keys are
//! collected into a scratch vector owned by the parser (reused across lines) for
//! the duplicate-key check, so steady-state parsing does not allocate.

use crate::error::{LineError, LineErrorKind};
use crate::escape::{Context, Escaped};
use crate::line::{Line, Shadowed};
use crate::number;
use crate::precision::Precision;

/// Iterator over the lines of a line-protocol body, yielding one
/// `Result<Line, LineError>` per line that is neither blank nor a comment.
///
/// ```
/// use strata_lineproto::{LineErrorKind, Parser};
///
/// let body = b"# comment\ncpu v=1\n\ncpu,host=a\nmem free=2i 10\n";
/// let results: Vec<_> = Parser::new(body).collect();
/// assert_eq!(results.len(), 3);
/// assert_eq!(results[0].as_ref().unwrap().line_no, 2);
/// let err = results[1].as_ref().unwrap_err();
/// assert_eq!((err.line_no, err.kind), (4, LineErrorKind::MissingFields));
/// assert_eq!(results[2].as_ref().unwrap().timestamp, Some(10));
/// ```
#[derive(Debug, Clone)]
pub struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// Line number of the line starting at `pos`.
    line_no: usize,
    max_line_len: usize,
    precision: Precision,
    /// Scratch: spans of this line's tag keys, then its field keys.
    keys: Vec<KeySpan>,
    /// Scratch: open-addressing table for the duplicate-key check of wide lines.
    table: Vec<u32>,
}

impl<'a> Parser<'a> {
    /// A parser over a whole body. Timestamps are taken as nanoseconds and lines
    /// may be of any length; see the `with_*` setters.
    pub fn new(input: &'a [u8]) -> Self {
        Parser {
            input,
            pos: 0,
            line_no: 1,
            max_line_len: usize::MAX,
            precision: Precision::Nanoseconds,
            keys: Vec::new(),
            table: Vec::new(),
        }
    }

    /// Lines longer than `max` bytes (excluding the `\r\n` or `\n` terminator)
    /// yield [`LineErrorKind::LineTooLong`]; only the first `max + 2` bytes of such a
    /// line are looked at before the parser skips to the next line. Comment lines
    /// are skipped whatever their length. Default: unlimited (the HTTP layer bounds
    /// the body size).
    pub fn with_max_line_len(mut self, max: usize) -> Self {
        self.max_line_len = max;
        self
    }

    /// The unit of the timestamps in the input; [`Line::timestamp`] is always
    /// converted to nanoseconds, and a timestamp that overflows `i64` nanoseconds
    /// yields [`LineErrorKind::TimestampOutOfRange`]. Default: nanoseconds.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Parses one line (`line` excludes its terminator); `start` is the first byte
    /// after leading whitespace.
    fn parse_line(&mut self, line: &'a [u8], start: usize, line_no: usize) -> Result<Line<'a>, LineError> {
        let err = |pos: usize, kind: LineErrorKind| LineError::new(line_no, pos, kind, line);
        self.keys.clear();
        let spans = scan_line(line, start, &mut self.keys).map_err(|(kind, pos)| err(pos, kind))?;
        // Every span boundary below is at an ASCII delimiter or at the line's ends,
        // so validating the whole line once makes every slice of it valid UTF-8.
        let text = std::str::from_utf8(line).map_err(|e| err(e.valid_up_to(), LineErrorKind::InvalidUtf8))?;

        let (tag_keys, field_keys) = self.keys.split_at(spans.tag_count);
        if let Some(dup) = first_duplicate_tag(line, tag_keys, &mut self.table) {
            return Err(err(tag_keys[dup].start, LineErrorKind::DuplicateTagKey));
        }
        let shadowed = shadowed_fields(line, field_keys, &mut self.table);

        let timestamp = match spans.timestamp {
            None => None,
            Some((ts, pos)) => Some(
                self.precision.to_nanos(ts).ok_or_else(|| err(pos, LineErrorKind::TimestampOutOfRange))?,
            ),
        };
        let (m0, m1) = spans.measurement;
        let (t0, t1) = spans.tags;
        let (f0, f1) = spans.fields;
        Ok(Line {
            line_no,
            measurement: Escaped::new(&text[m0..m1], Context::Measurement, spans.measurement_escaped),
            timestamp,
            raw: &text[start..],
            tags: &text[t0..t1],
            tags_backslash: spans.tags_backslash,
            tag_count: count_u32(spans.tag_count),
            fields: &text[f0..f1],
            fields_backslash: spans.fields_backslash,
            written_field_count: count_u32(field_keys.len()),
            shadowed,
        })
    }
}

fn count_u32(n: usize) -> u32 {
    // A tag or field takes at least 4 bytes (`,k=v`), so more than 2^32 of them
    // would need a 16 GiB line.
    u32::try_from(n).expect("fewer than 2^32 tags or fields in one line")
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Line<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = &self.input[self.pos..];
            if rest.is_empty() {
                return None;
            }
            let line_no = self.line_no;
            self.line_no += 1;

            // Find the end of the line, looking at no more than `max + 2` bytes when
            // the line is too long.
            let len = if rest.len() > self.max_line_len {
                let window = &rest[..rest.len().min(self.max_line_len.saturating_add(2))];
                let newline = find_byte(b'\n', window);
                match newline {
                    Some(k)
                        if k <= self.max_line_len || (k == self.max_line_len + 1 && rest[k - 1] == b'\r') =>
                    {
                        k
                    }
                    _ => {
                        let shown = &rest[..self.max_line_len];
                        let skip = match newline {
                            Some(k) => k + 1,
                            None => find_byte(b'\n', &rest[window.len()..])
                                .map_or(rest.len(), |k| window.len() + k + 1),
                        };
                        self.pos += skip;
                        let start = skip_whitespace(shown);
                        if shown.get(start) == Some(&b'#') {
                            continue;
                        }
                        return Some(Err(LineError::new(
                            line_no,
                            self.max_line_len,
                            LineErrorKind::LineTooLong,
                            shown,
                        )));
                    }
                }
            } else {
                find_byte(b'\n', rest).unwrap_or(rest.len())
            };
            self.pos += (len + 1).min(rest.len());

            let mut line = &rest[..len];
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            let start = skip_whitespace(line);
            if start == line.len() || line[start] == b'#' {
                continue; // blank line or comment
            }
            return Some(self.parse_line(line, start, line_no));
        }
    }
}

fn skip_whitespace(line: &[u8]) -> usize {
    line.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(line.len())
}

/// Position of the first `needle` in `hay`, eight bytes at a time (SWAR: a byte
/// of `w ^ needle*0x01..01` is zero exactly where `needle` is). Newline search
/// runs over every byte of the input, so it is worth the word trick over a plain
/// byte loop (measured: ~4x on 200-byte lines).
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().expect("chunks_exact(8)")) ^ pattern;
        // The lowest flagged byte is always a real match (borrows only propagate
        // upwards), and little-endian puts the first byte lowest.
        let found = w.wrapping_sub(LO) & !w & HI;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks.remainder().iter().position(|&b| b == needle).map(|k| offset + k)
}

/// Span of one tag or field key in the line, for the duplicate check.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeySpan {
    start: usize,
    end: usize,
    /// Contains escape sequences (compare unescaped).
    escaped: bool,
    /// Length, first and last byte packed, or 0 for escaped keys: two keys whose
    /// non-zero fingerprints differ cannot be equal, which settles nearly every
    /// pair without touching the bytes. Measured on the TSBS bench body
    /// (cachegrind): 102 fewer instructions per line; the Bloom mask in
    /// `for_each_duplicate` then saved 182 more (4,308 -> 4,126 per line).
    fingerprint: u32,
}

impl KeySpan {
    fn new(l: &[u8], start: usize, end: usize, escaped: bool) -> Self {
        let fingerprint = if escaped {
            0
        } else {
            let len = (end - start).min(0x7fff) as u32;
            0x8000_0000 | len << 16 | u32::from(l[start]) << 8 | u32::from(l[end - 1])
        };
        KeySpan { start, end, escaped, fingerprint }
    }
}

/// Section boundaries of a valid line (byte offsets into the line).
#[derive(Debug)]
struct Spans {
    measurement: (usize, usize),
    measurement_escaped: bool,
    tags: (usize, usize),
    tags_backslash: bool,
    tag_count: usize,
    fields: (usize, usize),
    fields_backslash: bool,
    /// Raw timestamp and its offset (for the precision-overflow error).
    timestamp: Option<(i64, usize)>,
}

/// Bytes that end a run of ordinary bytes in a measurement or key: `\` `,` ` ` `=`.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'\\' as usize] = true;
    t[b',' as usize] = true;
    t[b' ' as usize] = true;
    t[b'=' as usize] = true;
    t
};

/// Advances past ordinary bytes. (An `iter().position()` version, which avoids
/// the visible bounds check, measured 236 instructions per line *more* on the
/// TSBS body, so the plain loop stays.)
#[inline(always)]
fn skip_plain(l: &[u8], mut i: usize) -> usize {
    while i < l.len() && !SPECIAL[l[i] as usize] {
        i += 1;
    }
    i
}

type Fail = (LineErrorKind, usize);

/// Validates one line (no terminator; `start` is past leading whitespace and not
/// at `#`) and returns its section boundaries. Pushes tag keys then field keys to
/// `keys`.
fn scan_line(l: &[u8], start: usize, keys: &mut Vec<KeySpan>) -> Result<Spans, Fail> {
    use LineErrorKind::*;
    let n = l.len();
    let mut i = start;

    // Measurement: up to an unescaped `,` (tags follow) or ` ` (fields follow).
    if l[i] == b',' {
        return Err((EmptyMeasurement, i));
    }
    let mut measurement_escaped = false;
    loop {
        i = skip_plain(l, i);
        if i >= n {
            return Err((MissingFields, i));
        }
        match l[i] {
            b'\\' if i + 1 < n => {
                measurement_escaped |= Context::Measurement.is_escapable(l[i + 1]);
                i += 2;
            }
            b',' | b' ' => break,
            _ => i += 1, // `=` is an ordinary byte here; so is a final `\`
        }
    }
    let measurement = (start, i);

    // Tags: `,key=value` repeated, up to an unescaped ` `.
    let mut tags = (i, i);
    let mut tags_backslash = false;
    if l[i] == b',' {
        i += 1;
        let section = i;
        loop {
            let key = i;
            let mut escaped = false;
            loop {
                i = skip_plain(l, i);
                if i >= n {
                    return Err((if i == key { EmptyTagKey } else { MissingTagValue }, i));
                }
                match l[i] {
                    b'\\' => {
                        tags_backslash = true;
                        if i + 1 < n {
                            escaped |= Context::Key.is_escapable(l[i + 1]);
                            i += 2;
                        } else {
                            i += 1;
                        }
                    }
                    b'=' => break,
                    _ => return Err((if i == key { EmptyTagKey } else { MissingTagValue }, i)),
                }
            }
            if i == key {
                return Err((EmptyTagKey, i));
            }
            keys.push(KeySpan::new(l, key, i, escaped));
            i += 1;
            let value = i;
            loop {
                i = skip_plain(l, i);
                if i >= n {
                    return Err((if i == value { MissingTagValue } else { MissingFields }, i));
                }
                match l[i] {
                    b'\\' => {
                        tags_backslash = true;
                        i = (i + 2).min(n);
                    }
                    b'=' => return Err((InvalidTagFormat, i)),
                    _ => break, // `,` or ` `
                }
            }
            if i == value {
                return Err((MissingTagValue, i));
            }
            if l[i] == b' ' {
                break;
            }
            i += 1;
        }
        tags = (section, i);
    }
    let tag_count = keys.len();

    // Fields: `key=value` separated by `,`, after one or more spaces. Unlike Go's
    // skipWhitespace we do not skip tabs here: a tab is an ordinary byte
    // everywhere but at the start of a line, so a field key may start with one.
    while i < n && l[i] == b' ' {
        i += 1;
    }
    if i >= n {
        return Err((MissingFields, i));
    }
    let section = i;
    let mut fields_backslash = false;
    loop {
        let key = i;
        let mut escaped = false;
        loop {
            i = skip_plain(l, i);
            if i >= n {
                return Err((if i == key { EmptyFieldKey } else { InvalidFieldFormat }, i));
            }
            match l[i] {
                b'\\' => {
                    fields_backslash = true;
                    if i + 1 < n {
                        escaped |= Context::Key.is_escapable(l[i + 1]);
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                b'=' => break,
                _ => return Err((if i == key { EmptyFieldKey } else { InvalidFieldFormat }, i)),
            }
        }
        if i == key {
            return Err((EmptyFieldKey, i));
        }
        keys.push(KeySpan::new(l, key, i, escaped));
        i += 1;
        if i >= n || l[i] == b',' || l[i] == b' ' {
            return Err((MissingFieldValue, i));
        }
        if l[i] == b'"' {
            let quote = i;
            i += 1;
            loop {
                while i < n && l[i] != b'"' && l[i] != b'\\' {
                    i += 1;
                }
                if i >= n {
                    return Err((UnterminatedString, quote));
                }
                if l[i] == b'"' {
                    break;
                }
                fields_backslash = true;
                i += 2;
            }
            i += 1;
            if i < n && l[i] != b',' && l[i] != b' ' {
                return Err((InvalidFieldFormat, i));
            }
        } else {
            let value = i;
            while i < n && l[i] != b',' && l[i] != b' ' {
                i += 1;
            }
            number::validate(&l[value..i]).map_err(|kind| (kind, value))?;
        }
        if i >= n || l[i] == b' ' {
            break;
        }
        i += 1; // `,`
    }
    let fields = (section, i);

    // Optional timestamp, then optional trailing spaces.
    let mut timestamp = None;
    while i < n && l[i] == b' ' {
        i += 1;
    }
    if i < n {
        let ts = i;
        let negative = l[i] == b'-';
        if negative {
            i += 1;
        }
        let digits = i;
        while i < n && l[i].is_ascii_digit() {
            i += 1;
        }
        if i < n && l[i] != b' ' {
            return Err((InvalidTimestamp, i));
        }
        if i == digits {
            return Err((InvalidTimestamp, ts));
        }
        let value = number::parse_i64(&l[ts..i]).map_err(|kind| {
            let kind = if kind == NumberOutOfRange { TimestampOutOfRange } else { InvalidTimestamp };
            (kind, ts)
        })?;
        timestamp = Some((value, ts));
        while i < n && l[i] == b' ' {
            i += 1;
        }
        if i < n {
            return Err((TrailingCharacters, i));
        }
    }

    Ok(Spans {
        measurement,
        measurement_escaped,
        tags,
        tags_backslash,
        tag_count,
        fields,
        fields_backslash,
        timestamp,
    })
}

/// Lines with at most this many keys are checked pairwise (cheaper than hashing
/// for the usual handful of tags and fields); wider lines use a hash table.
const PAIRWISE_MAX: usize = 16;

fn key_eq(l: &[u8], a: KeySpan, b: KeySpan) -> bool {
    if a.fingerprint != b.fingerprint && a.fingerprint != 0 && b.fingerprint != 0 {
        return false;
    }
    let (x, y) = (&l[a.start..a.end], &l[b.start..b.end]);
    if !a.escaped && !b.escaped {
        return x == y;
    }
    unescaped(x).eq(unescaped(y))
}

/// Unescaped bytes of a key (tag key and field key rules).
fn unescaped(mut raw: &[u8]) -> impl Iterator<Item = u8> + '_ {
    std::iter::from_fn(move || match raw {
        [] => None,
        [b'\\', next, rest @ ..] if Context::Key.is_escapable(*next) => {
            let next = *next;
            raw = rest;
            Some(next)
        }
        [b, rest @ ..] => {
            let b = *b;
            raw = rest;
            Some(b)
        }
    })
}

fn key_hash(l: &[u8], k: KeySpan) -> u64 {
    // FxHash-style; keys are short and attacker-chosen collisions only cost probes
    // within one line.
    let mix = |h: u64, b: u8| (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
    let raw = &l[k.start..k.end];
    if k.escaped {
        unescaped(raw).fold(0, mix)
    } else {
        raw.iter().fold(0, |h, &b| mix(h, b))
    }
}

/// Calls `on_dup(earlier, later)` for every key equal to an earlier one, with
/// `earlier` the closest previous occurrence; stops when it returns `true`.
fn for_each_duplicate(
    l: &[u8],
    keys: &[KeySpan],
    table: &mut Vec<u32>,
    mut on_dup: impl FnMut(usize, usize) -> bool,
) {
    if keys.len() <= PAIRWISE_MAX {
        // A 64-bit Bloom mask over the fingerprints: a key whose bit is not set yet
        // cannot equal an earlier key, so the pairwise comparison only runs on a
        // bit collision. Escaped keys have no fingerprint: once one is involved,
        // every later key is compared.
        let mut seen = 0u64;
        let mut escaped_seen = false;
        for (j, key) in keys.iter().enumerate() {
            let bit = 1u64 << (u64::from(key.fingerprint).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58);
            let maybe_seen = seen & bit != 0 || ((key.escaped || escaped_seen) && j > 0);
            seen |= bit;
            escaped_seen |= key.escaped;
            if !maybe_seen {
                continue;
            }
            if let Some(i) = (0..j).rev().find(|&i| key_eq(l, keys[i], *key)) {
                if on_dup(i, j) {
                    return;
                }
            }
        }
        return;
    }
    let size = (keys.len() * 2).next_power_of_two();
    let mask = size - 1;
    table.clear();
    table.resize(size, 0);
    for (j, &key) in keys.iter().enumerate() {
        let mut slot = key_hash(l, key) as usize & mask;
        loop {
            match table[slot] {
                0 => {
                    table[slot] = j as u32 + 1;
                    break;
                }
                occupant => {
                    let i = occupant as usize - 1;
                    if key_eq(l, keys[i], key) {
                        if on_dup(i, j) {
                            return;
                        }
                        table[slot] = j as u32 + 1;
                        break;
                    }
                    slot = (slot + 1) & mask;
                }
            }
        }
    }
}

/// Index of the first tag key that repeats an earlier one.
fn first_duplicate_tag(l: &[u8], keys: &[KeySpan], table: &mut Vec<u32>) -> Option<usize> {
    let mut found = None;
    for_each_duplicate(l, keys, table, |_, later| {
        found = Some(later);
        true
    });
    found
}

/// Which fields are overridden by a later field with the same key (last wins).
fn shadowed_fields(l: &[u8], keys: &[KeySpan], table: &mut Vec<u32>) -> Shadowed {
    let mut shadowed = Shadowed::None;
    for_each_duplicate(l, keys, table, |earlier, _| {
        if shadowed == Shadowed::None {
            shadowed = Shadowed::with_capacity(keys.len());
        }
        shadowed.set(earlier);
        false
    });
    shadowed
}

#[cfg(test)]
mod tests;
