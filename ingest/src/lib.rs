//! strata-ingest: what every write path shares, from bytes that arrived to a `WriteBatch`
//! for the engine. HTTP writes, the MQTT listener and bridge, and later consumers (rules,
//! NATS) all take one [`IngestContext`]: the engine, auth, the per-point limits, the
//! write-memory budget, the buffer pool, the ingest counters and the per-client rate limits.
//!
//! Decoding is protocol-independent: a front end hands a whole decoded body to
//! [`lineproto::decode`] or [`json::decode`] and gets a [`Decoded`]: the batch of good points,
//! where each point came from, and the bad lines. A point enters the batch whole or not at all
//! (the engine's `PointBuilder` discards an unfinished point), so a bad line never leaves half
//! a point behind. After the engine's write, [`Decoded::finish`] folds the points the engine
//! refused (series limit, field type conflicts) into the same error list.
//!
//! Layout: this file (limits, [`Decoded`], error lists); [`lineproto`] (InfluxDB line
//! protocol), [`json`] (the JSON document format of `docs/http-api.md`), [`time`] (server
//! times and RFC 3339 timestamps for JSON); [`context`] ([`IngestContext`]); [`budget`]
//! (write memory), [`bufpool`] (idle buffers), [`ratelimit`] (token buckets, per-client
//! limits); [`metrics`] (`strata_ingest_*` counters); [`config`] (`[limits]`, and [`units`]).
//!
//! What it is not: a protocol front end (HTTP is the server's, MQTT is `strata-mqtt`'s), nor
//! the place that maps errors to HTTP statuses or MQTT reason codes.

pub mod budget;
pub mod bufpool;
pub mod config;
pub mod context;
pub mod json;
pub mod lineproto;
pub mod metrics;
pub mod ratelimit;
pub mod time;
pub mod units;

pub use context::IngestContext;

use serde::Serialize;
use strata_engine::{RejectReason, WriteBatch, WriteOutcome};

use crate::config::LimitsConfig;
use crate::metrics::{IngestMetrics, LineReject};

/// What a protocol front end adds to every point it decodes (the MQTT listener's topic
/// mapping). The default adds nothing, which is what HTTP uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct PointContext<'a> {
    /// Measurement of JSON points that name none; also enables the flat JSON shape
    /// (`{"ts": .., "temperature": 21.5, "tags": {..}}`, see `docs/mqtt.md`).
    pub measurement: Option<&'a str>,
    /// A tag added to every point. A point that carries the same tag key with another value
    /// is refused (`invalid_point`): a device cannot write as another device.
    pub tag: Option<(&'a str, &'a str)>,
}

/// The per-point limits (a copy of the `limits.*` keys that apply to single points).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PointLimits {
    pub max_line_length: usize,
    pub max_tags: usize,
    pub max_fields: usize,
    pub max_name_length: usize,
    pub max_string_length: usize,
    /// Nanoseconds a timestamp may be ahead of the server clock.
    pub max_future_ns: Option<i64>,
    /// Nanoseconds a timestamp may be behind the server clock.
    pub max_past_ns: Option<i64>,
    /// Most errors listed in one response.
    pub max_errors: usize,
}

impl PointLimits {
    pub fn from_config(l: &LimitsConfig) -> PointLimits {
        let ns = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        PointLimits {
            max_line_length: l.max_line_length.as_usize(),
            max_tags: l.max_tags_per_point,
            max_fields: l.max_fields_per_point,
            max_name_length: l.max_name_length,
            max_string_length: l.max_string_length.as_usize(),
            max_future_ns: l.max_future.get().map(ns),
            max_past_ns: l.max_past.get().map(ns),
            max_errors: l.max_errors_reported,
        }
    }

    /// Checks a timestamp against the window around `now`.
    fn check_time(&self, ts: i64, now: i64) -> Result<(), Refusal> {
        if let Some(max) = self.max_future_ns {
            if ts > now.saturating_add(max) {
                return Err(Refusal::new(
                    LineReject::TimestampOutOfWindow,
                    format!("timestamp {ts} is more than {} ahead of the server clock", fmt_ns(max)),
                ));
            }
        }
        if let Some(max) = self.max_past_ns {
            if ts < now.saturating_sub(max) {
                return Err(Refusal::new(
                    LineReject::TimestampOutOfWindow,
                    format!("timestamp {ts} is more than {} behind the server clock", fmt_ns(max)),
                ));
            }
        }
        Ok(())
    }

    fn check_counts(&self, tags: usize, fields: usize) -> Result<(), Refusal> {
        if tags > self.max_tags {
            return Err(Refusal::new(
                LineReject::TooManyTags,
                format!("point has {tags} tags, the limit is {}", self.max_tags),
            ));
        }
        if fields > self.max_fields {
            return Err(Refusal::new(
                LineReject::TooManyFields,
                format!("point has {fields} fields, the limit is {}", self.max_fields),
            ));
        }
        Ok(())
    }

    fn check_name(&self, what: &str, name: &str) -> Result<(), Refusal> {
        if name.len() > self.max_name_length {
            return Err(Refusal::new(
                LineReject::NameTooLong,
                format!("{what} is {} bytes long, the limit is {}", name.len(), self.max_name_length),
            ));
        }
        Ok(())
    }

    fn check_string(&self, field: &str, value: &str) -> Result<(), Refusal> {
        if value.len() > self.max_string_length {
            return Err(Refusal::new(
                LineReject::StringTooLong,
                format!(
                    "string value of field {field:?} is {} bytes long, the limit is {}",
                    value.len(),
                    self.max_string_length
                ),
            ));
        }
        Ok(())
    }
}

fn fmt_ns(ns: i64) -> String {
    humantime::format_duration(std::time::Duration::from_nanos(ns.max(0) as u64)).to_string()
}

/// Why one point was refused, before it is tied to a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub kind: LineReject,
    pub reason: String,
}

impl Refusal {
    pub(crate) fn new(kind: LineReject, reason: String) -> Refusal {
        Refusal { kind, reason }
    }
}

/// A refused line (line protocol) or point (JSON), as reported to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadPoint {
    /// Line protocol: 1-based line number in the (decompressed) body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Line protocol parse errors: 1-based byte column in the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// JSON: 0-based position of the point in the array (0 for a single object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Stable machine-readable reason (the metrics label): `parse`, `series_limit`, ...
    pub kind: &'static str,
    /// Human-readable reason.
    pub reason: String,
    /// At most [`EXCERPT_MAX`] bytes of the line or point, `...` marking a cut.
    pub excerpt: String,
    #[serde(skip)]
    pub(crate) sort_key: usize,
}

/// Longest excerpt of a bad line in an error response, in bytes (before the `...`).
pub const EXCERPT_MAX: usize = 64;

/// The first [`EXCERPT_MAX`] bytes of `text` (cut at a character boundary), `...` if cut.
pub fn excerpt(text: &str) -> String {
    if text.len() <= EXCERPT_MAX {
        return text.to_owned();
    }
    let mut end = EXCERPT_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The bad points of a request: the first `cap` in full, and counts of all of them.
#[derive(Debug, Clone, Default)]
pub struct ErrorList {
    pub items: Vec<BadPoint>,
    /// Every bad point, including those past the cap.
    pub total: usize,
    counts: [u32; LineReject::ALL.len()],
    cap: usize,
}

impl ErrorList {
    pub fn new(cap: usize) -> ErrorList {
        ErrorList { cap, ..ErrorList::default() }
    }

    fn push(&mut self, kind: LineReject, p: impl FnOnce() -> BadPoint) {
        self.total += 1;
        self.counts[kind as usize] += 1;
        // Decoding meets lines in order, so the first `cap` are the ones to keep; the engine's
        // refusals are merged in line order later (see `Decoded::finish`).
        if self.items.len() < self.cap {
            self.items.push(p());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Adds the counts to the metrics (one increment per bad point).
    pub fn record(&self, m: &IngestMetrics) {
        for kind in LineReject::ALL {
            for _ in 0..self.counts[kind as usize] {
                m.line_rejected(kind);
            }
        }
    }

    pub fn count(&self, kind: LineReject) -> usize {
        self.counts[kind as usize] as usize
    }
}

/// Where a point of the batch came from, to report the engine's refusals.
#[derive(Debug, Clone, Copy)]
struct Origin {
    /// Line number (line protocol) or index (JSON).
    pos: usize,
    /// Byte range of the line or point in the body.
    start: usize,
    len: usize,
}

/// The input format, for reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    LineProtocol,
    Json,
}

/// A decoded write payload.
#[derive(Debug)]
pub struct Decoded {
    pub batch: WriteBatch,
    pub errors: ErrorList,
    /// Lines (line protocol, comments and blank lines excluded) or points (JSON) seen.
    pub seen: usize,
    format: Format,
    origins: Vec<Origin>,
    /// Whether `origins` are recorded (for [`Decoded::finish`]); the MQTT listener reports
    /// the engine's refusals per message instead and skips them.
    keep_origins: bool,
}

impl Decoded {
    fn new(format: Format, cap: usize) -> Decoded {
        Decoded {
            batch: WriteBatch::new(),
            errors: ErrorList::new(cap),
            seen: 0,
            format,
            origins: Vec::new(),
            keep_origins: true,
        }
    }

    /// A decoder state that appends many payloads (MQTT messages) to `batch`, one after the
    /// other, without recording origins: [`Decoded::finish`] does not apply to it. Take each
    /// payload's errors with [`Decoded::take_errors`].
    pub fn appending(batch: WriteBatch, cap: usize) -> Decoded {
        Decoded { batch, keep_origins: false, ..Decoded::new(Format::LineProtocol, cap) }
    }

    /// The bad points listed since the last call (or the start), leaving an empty list.
    pub fn take_errors(&mut self) -> ErrorList {
        let cap = self.errors.cap;
        std::mem::replace(&mut self.errors, ErrorList::new(cap))
    }

    /// Records where the point just added to the batch came from.
    fn origin(&mut self, pos: usize, start: usize, len: usize) {
        if self.keep_origins {
            self.origins.push(Origin { pos, start, len });
        }
    }

    /// Approximate heap bytes held (batch plus bookkeeping), for the write-memory budget.
    pub fn heap_bytes(&self) -> usize {
        self.batch.encoded_len() + self.origins.capacity() * std::mem::size_of::<Origin>()
    }

    fn refuse(&mut self, pos: usize, text: &str, r: Refusal) {
        let format = self.format;
        self.errors.push(r.kind, || bad_point(format, pos, None, r.kind, r.reason, excerpt(text)));
    }

    /// Folds the points the engine refused into the error list (in line order, capped) and
    /// returns it. `body` is the payload this was decoded from.
    pub fn finish(mut self, outcome: &WriteOutcome, body: &[u8]) -> ErrorList {
        if outcome.rejected.is_empty() {
            return self.errors;
        }
        for r in &outcome.rejected {
            let Some(origin) = self.origins.get(r.index).copied() else { continue };
            let kind = match r.reason {
                RejectReason::SeriesLimit { .. } => LineReject::SeriesLimit,
                RejectReason::FieldTypeConflict { .. } => LineReject::FieldTypeConflict,
                RejectReason::Invalid(_) => LineReject::InvalidPoint,
                RejectReason::BeyondRetention { .. } => LineReject::TimestampOutOfWindow,
                RejectReason::TooManyFields { .. } => LineReject::TooManyFields,
                RejectReason::TooManyNewPartitions { .. } => LineReject::TimestampOutOfWindow,
            };
            let text = source_text(body, origin.start, origin.len);
            let format = self.format;
            // The engine's refusals may sort before parse errors already kept, so they are
            // kept regardless of the cap here and the merged list is cut below.
            self.errors.total += 1;
            self.errors.counts[kind as usize] += 1;
            self.errors.items.push(bad_point(
                format,
                origin.pos,
                None,
                kind,
                r.reason.to_string(),
                excerpt(&text),
            ));
        }
        self.errors.items.sort_by_key(|b| b.sort_key);
        self.errors.items.truncate(self.errors.cap);
        self.errors
    }
}

fn bad_point(
    format: Format,
    pos: usize,
    column: Option<usize>,
    kind: LineReject,
    reason: String,
    excerpt: String,
) -> BadPoint {
    let (line, index) = match format {
        Format::LineProtocol => (Some(pos), None),
        Format::Json => (None, Some(pos)),
    };
    BadPoint { line, column, index, kind: kind.as_str(), reason, excerpt, sort_key: pos }
}

/// Enough of the line (or JSON point) at `body[start..start + len]` for an excerpt.
fn source_text(body: &[u8], start: usize, len: usize) -> String {
    let rest = body.get(start..).unwrap_or_default();
    let end = len.min(rest.len()).min(EXCERPT_MAX * 2);
    String::from_utf8_lossy(&rest[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_at_char_boundaries() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(40); // 80 bytes
        let e = excerpt(&long);
        assert!(e.ends_with("...") && e.len() <= EXCERPT_MAX + 3, "{e}");
        assert_eq!(e.trim_end_matches("...").chars().count(), 32);
    }

    #[test]
    fn error_list_caps_items_but_counts_all() {
        let mut l = ErrorList::new(2);
        for i in 0..5 {
            l.push(LineReject::Parse, || {
                bad_point(Format::LineProtocol, i, None, LineReject::Parse, "x".into(), "".into())
            });
        }
        assert_eq!(l.items.len(), 2);
        assert_eq!(l.total, 5);
        assert_eq!(l.count(LineReject::Parse), 5);
        let m = IngestMetrics::default();
        l.record(&m);
        assert_eq!(m.lines_rejected(LineReject::Parse), 5);
    }

    #[test]
    fn time_window() {
        let mut l = PointLimits::from_config(&LimitsConfig::default());
        // Defaults: the past is open (devices buffer; clocks in 1970), the far future is not.
        assert!(l.check_time(i64::MAX, 0).is_err() && l.check_time(i64::MIN, 0).is_ok());
        assert!(l.check_time(86_400_000_000_000, 0).is_ok());
        l.max_future_ns = Some(10);
        l.max_past_ns = Some(100);
        assert!(l.check_time(1010, 1000).is_ok());
        assert_eq!(l.check_time(1011, 1000).unwrap_err().kind, LineReject::TimestampOutOfWindow);
        assert!(l.check_time(900, 1000).is_ok());
        assert!(l.check_time(899, 1000).is_err());
        assert!(l.check_time(i64::MIN, i64::MIN + 5).is_ok());
    }
}
