//! Result encoders: InfluxDB 1.x JSON (plain, pretty, chunked) and CSV.
//!
//! The JSON is written by hand rather than through `serde_json::Value` for two observable
//! details: keys come in InfluxDB's order (`statement_id`, `series`, `error`; `name`, `tags`,
//! `columns`, `values`), and floats print as Go prints them (`2`, not `2.0`; Python clients
//! then read `2` as an int, as they do against InfluxDB).

use std::fmt::Write as _;

use crate::limits::row_bytes;
use crate::result::{Epoch, Series, StatementResult, Value};
use crate::time::{write_time, write_time_offset};

/// How to print results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    pub epoch: Epoch,
    /// Indent JSON (`pretty=true`).
    pub pretty: bool,
}

enum J<'a> {
    Raw(String),
    Str(&'a str),
    Arr(Vec<J<'a>>),
    /// An object; keys are fixed names or, for tags, borrowed from the result.
    Obj(Vec<(&'a str, J<'a>)>),
    /// A series' rows, written straight from the result: an array of arrays, without a
    /// node or a string per value (encoding was half the in-process time of a small query).
    Rows(&'a [Vec<Value>], Epoch),
}

/// One value as JSON, appended to `out`.
fn write_value(out: &mut String, v: &Value, epoch: Epoch) {
    // Writing to a String cannot fail.
    match v {
        Value::Null => out.push_str("null"),
        Value::Float(f) if f.is_finite() => write_finite_float(out, *f),
        Value::Float(f) => out.push_str(&format_float(*f)),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Unsigned(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => write_str(out, s),
        Value::Time(t) => match epoch.divisor() {
            None => {
                out.push('"');
                write_time(out, *t);
                out.push('"');
            }
            Some(d) => {
                let _ = write!(out, "{}", t / d);
            }
        },
        Value::ZonedTime { ns, offset_secs } => match epoch.divisor() {
            None => {
                out.push('"');
                write_time_offset(out, *ns, *offset_secs);
                out.push('"');
            }
            Some(d) => {
                let _ = write!(out, "{}", ns / d);
            }
        },
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Go's `encoding/json` prints it; `null` for NaN and infinities.
pub fn format_float(v: f64) -> String {
    if !v.is_finite() {
        return "null".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        // Go: exponent form with at least two exponent digits and a sign (`1e+21`, `1e-07`).
        let s = format!("{v:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match e.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', e),
        };
        return format!("{m}e{sign}{digits:0>2}");
    }
    format!("{v}")
}

fn series_json<'a>(s: &'a Series, rows: &'a [Vec<Value>], epoch: Epoch, partial: bool) -> J<'a> {
    let mut o: Vec<(&'static str, J<'a>)> = Vec::new();
    if !s.name.is_empty() {
        o.push(("name", J::Str(&s.name)));
    }
    if let Some(tags) = &s.tags {
        o.push(("tags", J::Obj(tags.iter().map(|(k, v)| (k.as_str(), J::Str(v))).collect())));
    }
    o.push(("columns", J::Arr(s.columns.iter().map(|c| J::Str(c)).collect())));
    if !rows.is_empty() {
        o.push(("values", J::Rows(rows, epoch)));
    }
    if partial {
        o.push(("partial", J::Raw("true".into())));
    }
    J::Obj(o)
}

fn render(j: &J<'_>, pretty: bool, depth: usize, out: &mut String) {
    let nl = |out: &mut String, d: usize| {
        if pretty {
            out.push('\n');
            for _ in 0..d {
                out.push_str("    ");
            }
        }
    };
    match j {
        J::Raw(s) => out.push_str(s),
        J::Str(s) => write_str(out, s),
        J::Arr(items) => {
            out.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                render(it, pretty, depth + 1, out);
            }
            if !items.is_empty() {
                nl(out, depth);
            }
            out.push(']');
        }
        J::Rows(rows, epoch) => {
            // The same layout as `Arr` of `Arr`s of values.
            out.push('[');
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                out.push('[');
                for (k, v) in row.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    nl(out, depth + 2);
                    write_value(out, v, *epoch);
                }
                if !row.is_empty() {
                    nl(out, depth + 1);
                }
                out.push(']');
            }
            if !rows.is_empty() {
                nl(out, depth);
            }
            out.push(']');
        }
        J::Obj(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                write_str(out, k);
                out.push(':');
                if pretty {
                    out.push(' ');
                }
                render(v, pretty, depth + 1, out);
            }
            if !fields.is_empty() {
                nl(out, depth);
            }
            out.push('}');
        }
    }
}

fn result_json<'a>(r: &'a StatementResult, series: Vec<J<'a>>, partial: bool) -> J<'a> {
    let mut o: Vec<(&'static str, J<'a>)> = vec![("statement_id", J::Raw(r.statement_id.to_string()))];
    if !series.is_empty() {
        o.push(("series", J::Arr(series)));
    }
    if let Some(e) = &r.error {
        o.push(("error", J::Str(e)));
    }
    if partial {
        o.push(("partial", J::Raw("true".into())));
    }
    J::Obj(o)
}

/// `{"results": [...]}` for the whole request.
pub fn encode_json(results: &[StatementResult], opts: EncodeOptions) -> String {
    let rs = results
        .iter()
        .map(|r| {
            let series = r.series.iter().map(|s| series_json(s, &s.values, opts.epoch, false)).collect();
            result_json(r, series, false)
        })
        .collect();
    // Roughly 24 bytes per value: one allocation for most answers.
    let values: usize =
        results.iter().flat_map(|r| &r.series).map(|s| s.values.len() * (s.columns.len() + 1)).sum();
    let mut out = String::with_capacity(256 + 24 * values);
    render(&J::Obj(vec![("results", J::Arr(rs))]), opts.pretty, 0, &mut out);
    out.push('\n');
    out
}

/// A bound on the bytes [`encode_json`] writes for `series` (one statement's; never fewer than
/// it writes), computed without writing them: the server checks it against the query memory limit before it encodes a
/// materialised answer, whose text is held whole next to the results. Numbers and times count
/// their longest form; strings count their escapes exactly once a cheap bound (six bytes per
/// byte, `\u003c` for `<`) passes `exact_above`.
pub fn json_len_bound(series: &[Series], opts: EncodeOptions, exact_above: u64) -> u64 {
    // Indentation and line breaks of `pretty=true`: at most this deep per value.
    let pad = if opts.pretty { 34 } else { 0 };
    let time = if opts.epoch == Epoch::Rfc3339 { 32 } else { 20 };
    let mut total = 0u64;
    let mut strings = 0u64;
    for s in series {
        let names = s.name.len()
            + s.columns.iter().map(|c| c.len() + 3).sum::<usize>()
            + s.tags.iter().flatten().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>();
        total += 6 * names as u64 + 64 + 4 * pad;
        for row in &s.values {
            total += 2 + pad;
            for v in row {
                total += 1 + pad;
                total += match v {
                    Value::Null => 4,
                    Value::Boolean(_) => 5,
                    Value::Float(_) => 24,
                    Value::Integer(_) | Value::Unsigned(_) => 20,
                    Value::Time(_) => time,
                    Value::ZonedTime { .. } => time + 6,
                    Value::String(text) => {
                        strings += text.len() as u64;
                        2
                    }
                };
            }
        }
    }
    if total + 6 * strings <= exact_above {
        return total + 6 * strings;
    }
    let escaped = |text: &str| -> u64 {
        text.chars()
            .map(|c| match c {
                '"' | '\\' | '\n' | '\r' | '\t' => 2,
                '<' | '>' | '&' => 6,
                c if (c as u32) < 0x20 => 6,
                c => c.len_utf8() as u64,
            })
            .sum()
    };
    let exact: u64 = series
        .iter()
        .flat_map(|s| &s.values)
        .flatten()
        .map(|v| match v {
            Value::String(text) => escaped(text),
            _ => 0,
        })
        .sum();
    total + exact
}

/// `chunked=true`: one JSON document per line, each with at most `chunk_size` rows of one
/// series. `partial: true` marks a series continued in the next chunk and a statement whose
/// results continue. The materialised form of [`ChunkEncoder`], for callers that already hold
/// every result.
pub fn encode_json_chunks(
    results: &[StatementResult],
    opts: EncodeOptions,
    chunk_size: usize,
) -> Vec<String> {
    let mut enc = ChunkEncoder::new(opts, chunk_size);
    let mut lines = Vec::new();
    for r in results {
        enc.begin(r.statement_id);
        for s in &r.series {
            enc.series(s.clone(), &mut lines);
        }
        enc.end(r.error.as_deref(), &mut lines);
    }
    lines
}

/// Writes InfluxDB 1.x chunked JSON (`chunked=true`) as series arrive, one line per chunk of at
/// most `chunk_size` rows of one series:
///
/// - a series' chunks but the last carry `"partial": true` on the series;
/// - every line of a statement but its last carries `"partial": true` on the result, so a
///   client knows when a statement is complete;
/// - a statement without series is one `{"results":[{"statement_id":N}]}` line;
/// - a statement that fails after some series were sent ends with a separate
///   `{"results":[{"statement_id":N,"error":"..."}]}` line.
///
/// Whether a line is a statement's last (or a series' last) is only known when the next
/// series or the end arrives, so the last chunk of the latest series waits here until then:
/// the encoder holds at most `chunk_size` rows of a series fed in parts, or the series it
/// was given whole (which its producer held anyway).
///
/// A line also ends, whatever `chunk_size` says, once its rows pass [`CHUNK_BYTES`] (as held
/// in memory, close to their JSON length), so a line of wide rows never grows past about a
/// mebibyte plus one row.
#[derive(Debug)]
pub struct ChunkEncoder {
    opts: EncodeOptions,
    chunk_size: usize,
    statement_id: usize,
    /// The latest series: its rows from `sent` on are not written yet.
    current: Option<Series>,
    sent: usize,
    /// Rows `sent..scanned` of `current` are measured; `bytes` is their size.
    scanned: usize,
    bytes: u64,
    /// More rows of `current` are coming ([`ChunkEncoder::part`] with `more`).
    open: bool,
}

/// Bytes of rows (estimated as [`row_bytes`]) after which a chunked JSON line ends even when
/// it has fewer than `chunk_size` rows.
pub const CHUNK_BYTES: u64 = 1 << 20;

impl ChunkEncoder {
    pub fn new(opts: EncodeOptions, chunk_size: usize) -> ChunkEncoder {
        ChunkEncoder {
            opts,
            chunk_size: chunk_size.max(1),
            statement_id: 0,
            current: None,
            sent: 0,
            scanned: 0,
            bytes: 0,
            open: false,
        }
    }

    /// Starts the next statement.
    pub fn begin(&mut self, statement_id: usize) {
        self.statement_id = statement_id;
        self.current = None;
        self.sent = 0;
        self.scanned = 0;
        self.bytes = 0;
        self.open = false;
    }

    /// Adds a whole series of the current statement; pushes the lines that are now final to
    /// `out`.
    pub fn series(&mut self, s: Series, out: &mut Vec<String>) {
        self.part(s, false, out);
    }

    /// Adds rows of a series: the continuation of the previous part when that one had `more`
    /// set (only `values` is read then), else a new series. `more`: rows of this series follow
    /// in later parts.
    pub fn part(&mut self, s: Series, more: bool, out: &mut Vec<String>) {
        match &mut self.current {
            Some(cur) if self.open => {
                // Drop what was written, so the buffer never grows past chunk_size + a part.
                cur.values.drain(..self.sent);
                self.scanned -= self.sent;
                self.sent = 0;
                cur.values.extend(s.values);
            }
            _ => {
                self.flush_held(true, out);
                self.current = Some(s);
                self.sent = 0;
                self.scanned = 0;
                self.bytes = 0;
            }
        }
        self.open = more;
        // A chunk goes out once a row after it is known, so its `partial` flag is right.
        if let Some(cur) = &self.current {
            loop {
                while self.scanned < cur.values.len()
                    && self.scanned - self.sent < self.chunk_size
                    && self.bytes < CHUNK_BYTES
                {
                    self.bytes += row_bytes(&cur.values[self.scanned]);
                    self.scanned += 1;
                }
                let full = self.scanned - self.sent == self.chunk_size || self.bytes >= CHUNK_BYTES;
                if !full || self.scanned == cur.values.len() {
                    break;
                }
                out.push(self.line(cur, self.sent, self.scanned, true, true));
                self.sent = self.scanned;
                self.bytes = 0;
            }
        }
    }

    /// Ends the current statement, with its error if it failed.
    pub fn end(&mut self, error: Option<&str>, out: &mut Vec<String>) {
        let had_series = self.current.is_some();
        self.flush_held(error.is_some(), out);
        if error.is_some() || !had_series {
            let r = StatementResult {
                statement_id: self.statement_id,
                series: Vec::new(),
                error: error.map(str::to_owned),
            };
            out.push(self.render(result_json(&r, Vec::new(), false)));
        }
    }

    /// Writes the held rows of the latest series; `more`: the statement continues.
    fn flush_held(&mut self, more: bool, out: &mut Vec<String>) {
        if let Some(cur) = self.current.take() {
            out.push(self.line(&cur, self.sent, cur.values.len(), self.open, more));
        }
        self.sent = 0;
        self.scanned = 0;
        self.bytes = 0;
        self.open = false;
    }

    /// Rows `a..b` of `s`.
    fn line(&self, s: &Series, a: usize, b: usize, series_partial: bool, more: bool) -> String {
        let series = vec![series_json(s, &s.values[a..b], self.opts.epoch, series_partial)];
        let r = StatementResult { statement_id: self.statement_id, series: Vec::new(), error: None };
        self.render(result_json(&r, series, more))
    }

    fn render(&self, result: J<'_>) -> String {
        let mut out = String::new();
        render(&J::Obj(vec![("results", J::Arr(vec![result]))]), self.opts.pretty, 0, &mut out);
        out
    }
}

/// `{"error": "..."}`: a request-level error (bad parameters, parse error).
pub fn encode_error_json(message: &str) -> String {
    let mut out = String::from("{\"error\":");
    write_str(&mut out, message);
    out.push_str("}\n");
    out
}

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// A finite float as JSON and CSV write it: Rust's shortest form where it has no exponent,
/// else [`format_float`] (Go's `strconv` form, as InfluxDB prints it).
fn write_finite_float(out: &mut String, f: f64) {
    let a = f.abs();
    if a == 0.0 || (1e-6..1e21).contains(&a) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{f}");
    } else {
        out.push_str(&format_float(f));
    }
}

/// One value as a CSV field, appended to `out` without a temporary string (only strings can
/// need quoting).
fn write_csv_value(out: &mut String, v: &Value, epoch: Epoch) {
    // Writing to a String cannot fail.
    match v {
        Value::Null => {}
        Value::Float(f) if f.is_finite() => write_finite_float(out, *f),
        // NaN and infinities are empty fields (JSON's null).
        Value::Float(_) => {}
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Unsigned(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => csv_field(out, s),
        // CSV times are integers (nanoseconds unless `epoch=` says otherwise), as InfluxDB.
        Value::Time(t) | Value::ZonedTime { ns: t, .. } => {
            let _ = write!(out, "{}", t / epoch.divisor().unwrap_or(1));
        }
    }
}

/// CSV as InfluxDB 1.x writes it for `Accept: application/csv`: a `name,tags,<columns>`
/// header whenever the columns change, then one line per row; tags as `k=v,k=v`.
pub fn encode_csv(results: &[StatementResult], opts: EncodeOptions) -> String {
    let mut enc = CsvEncoder::new(opts);
    let mut out = String::new();
    for r in results {
        if let Some(e) = &r.error {
            enc.error(e, &mut out);
            continue;
        }
        for s in &r.series {
            enc.part(s, false, &mut out);
        }
        enc.end_statement();
    }
    out
}

/// Writes CSV ([`encode_csv`]) as series arrive, whole or in parts, so a streamed answer can
/// be sent as it is produced. Holds only the header state and the current series' name and
/// tags; the text goes to the caller's buffer, which it sends when it likes.
#[derive(Debug)]
pub struct CsvEncoder {
    opts: EncodeOptions,
    /// The columns of the last header written; `None` at the start and after an error.
    columns: Option<Vec<String>>,
    /// The current series' name and tags as CSV fields (`name,tags`), for its later parts.
    prefix: String,
    /// More rows of the current series are coming ([`CsvEncoder::part`] with `more`).
    open: bool,
    /// A statement that wrote rows ended: the next series starts a new block.
    block_ended: bool,
}

impl CsvEncoder {
    pub fn new(opts: EncodeOptions) -> CsvEncoder {
        CsvEncoder { opts, columns: None, prefix: String::new(), open: false, block_ended: false }
    }

    /// Writes rows of a series: the continuation of the previous part when that one had
    /// `more` set (only `values` is read then), else a new series (a header first when its
    /// columns differ from the last header's).
    pub fn part(&mut self, s: &Series, more: bool, out: &mut String) {
        if !self.open {
            if self.columns.as_deref() != Some(&s.columns[..]) {
                if self.columns.is_some() || self.block_ended {
                    out.push('\n');
                }
                self.block_ended = false;
                out.push_str("name,tags");
                for c in &s.columns {
                    out.push(',');
                    csv_field(out, c);
                }
                out.push('\n');
                self.columns = Some(s.columns.clone());
            }
            self.prefix.clear();
            csv_field(&mut self.prefix, &s.name);
            self.prefix.push(',');
            let mut tags = String::new();
            for (i, (k, v)) in s.tags.iter().flatten().enumerate() {
                if i > 0 {
                    tags.push(',');
                }
                let _ = write!(tags, "{k}={v}");
            }
            csv_field(&mut self.prefix, &tags);
        }
        self.open = more;
        for row in &s.values {
            out.push_str(&self.prefix);
            for v in row {
                out.push(',');
                write_csv_value(out, v, self.opts.epoch);
            }
            out.push('\n');
        }
    }

    /// Writes a statement's error (`error` and the message); the next series gets a header.
    pub fn error(&mut self, message: &str, out: &mut String) {
        out.push_str("error\n");
        csv_field(out, message);
        out.push('\n');
        self.columns = None;
        self.open = false;
        self.block_ended = false;
    }

    /// Ends a statement: the next series starts a block of its own (a blank line, then a
    /// header, even with the same columns), as InfluxDB writes each statement's CSV apart.
    pub fn end_statement(&mut self) {
        self.block_ended = self.columns.is_some();
        self.columns = None;
        self.open = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `J::Rows` must lay out exactly as the nested arrays it replaced, pretty or not.
    #[test]
    fn rows_render_like_nested_arrays() {
        let rows = vec![
            vec![Value::Time(1_500_000_000), Value::Float(2.5), Value::Null, Value::String("a\"b".into())],
            vec![Value::Time(-1), Value::Integer(-3), Value::Boolean(true), Value::Unsigned(7)],
            vec![Value::Time(120), Value::Float(1e-7), Value::Float(f64::NAN), Value::Float(3.0)],
        ];
        for pretty in [false, true] {
            for epoch in [Epoch::Rfc3339, Epoch::Milliseconds] {
                let mut direct = String::new();
                render(&J::Rows(&rows, epoch), pretty, 2, &mut direct);
                let nested = J::Arr(
                    rows.iter()
                        .map(|r| {
                            J::Arr(
                                r.iter()
                                    .map(|v| {
                                        let mut s = String::new();
                                        write_value(&mut s, v, epoch);
                                        J::Raw(s)
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                );
                let mut tree = String::new();
                render(&nested, pretty, 2, &mut tree);
                assert_eq!(direct, tree, "pretty={pretty} epoch={epoch:?}");
            }
        }
        let mut compact = String::new();
        render(&J::Rows(&rows, Epoch::Rfc3339), false, 0, &mut compact);
        assert_eq!(
            compact,
            r#"[["1970-01-01T00:00:01.5Z",2.5,null,"a\"b"],["1969-12-31T23:59:59.999999999Z",-3,true,7],["1970-01-01T00:00:00.00000012Z",1e-07,null,3]]"#
        );
    }

    fn wide_series(rows: usize, width: usize) -> Series {
        Series {
            name: "m".into(),
            tags: None,
            columns: vec!["time".into(), "s".into()],
            values: (0..rows)
                .map(|i| vec![Value::Time(i as i64), Value::String("w".repeat(width))])
                .collect(),
        }
    }

    /// Wide rows end a chunked line at [`CHUNK_BYTES`] whatever `chunk_size` says; every row
    /// is sent once, in order, with the `partial` flags of row-count chunks.
    #[test]
    fn chunked_lines_end_at_chunk_bytes() {
        let series = wide_series(100, 100 << 10);
        let mut enc = ChunkEncoder::new(EncodeOptions::default(), 10_000);
        let mut lines = Vec::new();
        enc.begin(0);
        // In parts, as a streamed raw query hands them over.
        for (k, part) in series.values.chunks(7).enumerate() {
            let s = if k == 0 {
                Series { values: part.to_vec(), ..series.clone() }
            } else {
                Series { values: part.to_vec(), ..Series::default() }
            };
            enc.part(s, (k + 1) * 7 < series.values.len(), &mut lines);
        }
        enc.end(None, &mut lines);
        let mut next = 0i64;
        for (k, line) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let values = v["results"][0]["series"][0]["values"].as_array().unwrap();
            assert!(line.len() < (CHUNK_BYTES as usize) + (200 << 10), "line {k}: {} bytes", line.len());
            let last = k + 1 == lines.len();
            assert_eq!(v["results"][0].get("partial").is_some(), !last, "line {k}");
            for row in values {
                assert_eq!(row[0], serde_json::json!(write_time_string(next)));
                next += 1;
            }
        }
        assert_eq!(next, 100);
        assert!(lines.len() >= 9, "{} lines", lines.len());
        // Narrow rows still follow chunk_size exactly.
        let narrow = wide_series(25, 1);
        let lines = encode_json_chunks(
            &[StatementResult { statement_id: 0, series: vec![narrow], error: None }],
            EncodeOptions::default(),
            10,
        );
        let sizes: Vec<usize> = lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["results"][0]["series"][0]["values"].as_array().unwrap().len()
            })
            .collect();
        assert_eq!(sizes, [10, 10, 5]);
    }

    fn write_time_string(t: i64) -> String {
        let mut s = String::new();
        write_time(&mut s, t);
        s
    }

    /// The bound is never below what `encode_json` writes, pretty or not, whatever needs
    /// escaping, and the cheap form is used only when it already fits.
    #[test]
    fn json_len_bound_is_never_below_the_text() {
        let strings = ["", "plain", "<>&\"\\\n\t\u{1}", "é漢字🦀", &"<".repeat(1000)];
        let mut values = Vec::new();
        for (i, s) in strings.iter().enumerate() {
            values.push(vec![
                Value::Time(-1_000_000_000_000_000_000 + i as i64),
                Value::String((*s).to_owned()),
                Value::Float(-1.2345678901234567e-300),
                Value::Integer(i64::MIN),
                Value::Unsigned(u64::MAX),
                Value::Boolean(false),
                Value::Null,
            ]);
        }
        let series = vec![Series {
            name: "m<\"".into(),
            tags: Some(vec![("k<".into(), "v&".into())]),
            columns: ["time", "s", "f", "i", "u", "b", "n"].map(String::from).to_vec(),
            values,
        }];
        for pretty in [false, true] {
            for epoch in [Epoch::Rfc3339, Epoch::Nanoseconds] {
                let opts = EncodeOptions { epoch, pretty };
                let r = [StatementResult { statement_id: 0, series: series.clone(), error: None }];
                let empty = [StatementResult { statement_id: 0, series: Vec::new(), error: None }];
                // What the series add to the document.
                let text = (encode_json(&r, opts).len() - encode_json(&empty, opts).len()) as u64;
                let exact = json_len_bound(&series, opts, 0);
                let cheap = json_len_bound(&series, opts, u64::MAX);
                assert!(exact >= text, "pretty={pretty} {epoch:?}: {exact} < {text}");
                assert!(exact < 2 * text, "pretty={pretty} {epoch:?}: {exact} is no bound to use");
                assert!(cheap >= exact, "pretty={pretty} {epoch:?}");
            }
        }
    }
}
