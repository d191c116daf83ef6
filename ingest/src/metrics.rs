//! The ingest counters, shared by every protocol: plain atomics that the write paths bump and
//! the server's `/metrics` renders (with the counters of the other crates).
//!
//! Names follow the Prometheus conventions (`strata_ingest_<thing>_<unit>`, counters end in
//! `_total`). Label sets are closed enums ([`LineReject`], [`RequestReject`]) indexing fixed
//! arrays, so recording never allocates or locks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Why a line (or JSON point) of a write request was refused; the rest of the request was
/// still written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LineReject {
    /// Not valid line protocol / JSON point.
    Parse,
    LineTooLong,
    TooManyTags,
    TooManyFields,
    NameTooLong,
    StringTooLong,
    TimestampOutOfWindow,
    /// The database is at `limits.max_series_per_database`.
    SeriesLimit,
    FieldTypeConflict,
    /// Refused by the engine's own checks (e.g. series key longer than 64 KiB).
    InvalidPoint,
}

impl LineReject {
    pub const ALL: [LineReject; 10] = [
        LineReject::Parse,
        LineReject::LineTooLong,
        LineReject::TooManyTags,
        LineReject::TooManyFields,
        LineReject::NameTooLong,
        LineReject::StringTooLong,
        LineReject::TimestampOutOfWindow,
        LineReject::SeriesLimit,
        LineReject::FieldTypeConflict,
        LineReject::InvalidPoint,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LineReject::Parse => "parse",
            LineReject::LineTooLong => "line_too_long",
            LineReject::TooManyTags => "too_many_tags",
            LineReject::TooManyFields => "too_many_fields",
            LineReject::NameTooLong => "name_too_long",
            LineReject::StringTooLong => "string_too_long",
            LineReject::TimestampOutOfWindow => "timestamp_out_of_window",
            LineReject::SeriesLimit => "series_limit",
            LineReject::FieldTypeConflict => "field_type_conflict",
            LineReject::InvalidPoint => "invalid_point",
        }
    }
}

/// Why a whole write request was refused (nothing of it written, except as noted on
/// [`RequestReject::Overloaded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestReject {
    /// Body larger than `limits.max_body_size` (compressed or decoded): 413.
    BodyTooLarge,
    /// The client took longer than `http.body_timeout` to send the body: 408.
    BodyTimeout,
    /// Bad parameters, encoding or body: 400/415.
    BadRequest,
    /// No or unknown credentials: 401.
    Unauthorized,
    /// Credentials without the needed permission: 403.
    Forbidden,
    /// Unknown database with auto-create off: 404.
    DatabaseNotFound,
    /// In-flight write memory exhausted: 503.
    WriteMemory,
    /// The engine's flushing is behind: 503. Part of the request may have been stored.
    Overloaded,
    /// Shutting down, poisoned engine or I/O error: 5xx.
    Unavailable,
    /// The client is over `limits.client_write_rate`: 429.
    RateLimited,
}

impl RequestReject {
    pub const ALL: [RequestReject; 10] = [
        RequestReject::BodyTooLarge,
        RequestReject::BodyTimeout,
        RequestReject::BadRequest,
        RequestReject::Unauthorized,
        RequestReject::Forbidden,
        RequestReject::DatabaseNotFound,
        RequestReject::WriteMemory,
        RequestReject::Overloaded,
        RequestReject::Unavailable,
        RequestReject::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestReject::BodyTooLarge => "body_too_large",
            RequestReject::BodyTimeout => "body_timeout",
            RequestReject::BadRequest => "bad_request",
            RequestReject::Unauthorized => "unauthorized",
            RequestReject::Forbidden => "forbidden",
            RequestReject::DatabaseNotFound => "database_not_found",
            RequestReject::WriteMemory => "write_memory",
            RequestReject::Overloaded => "overloaded",
            RequestReject::Unavailable => "unavailable",
            RequestReject::RateLimited => "rate_limited",
        }
    }
}

/// Ingest counters, of every protocol (HTTP and MQTT).
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Write requests that reached decoding.
    pub requests: AtomicU64,
    /// Points acknowledged as durable.
    pub points: AtomicU64,
    /// Field values acknowledged as durable.
    pub values: AtomicU64,
    /// Request body bytes as received (compressed if the client compressed).
    pub bytes_received: AtomicU64,
    /// Body bytes after decompression.
    pub bytes_decoded: AtomicU64,
    /// Bytes of write memory currently reserved by in-flight requests (a gauge).
    pub write_memory_bytes: AtomicU64,
    lines_rejected: [AtomicU64; LineReject::ALL.len()],
    requests_rejected: [AtomicU64; RequestReject::ALL.len()],
    /// Acknowledged ingest by protocol and database.
    pub by_db: IngestByDb,
}

impl IngestMetrics {
    pub fn line_rejected(&self, why: LineReject) {
        self.lines_rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn lines_rejected(&self, why: LineReject) -> u64 {
        self.lines_rejected[why as usize].load(Ordering::Relaxed)
    }

    pub fn request_rejected(&self, why: RequestReject) {
        self.requests_rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests_rejected(&self, why: RequestReject) -> u64 {
        self.requests_rejected[why as usize].load(Ordering::Relaxed)
    }

    /// Appends the plain counters and the write-memory gauge (`strata_ingest_*`) in the
    /// Prometheus text format. The server renders `/metrics` from every crate's counters, in
    /// the order [`IngestMetrics::encode_counters`], backups,
    /// [`IngestMetrics::encode_rejections`], MQTT, HTTP, [`IngestByDb::encode_prometheus`],
    /// queries.
    pub fn encode_counters(&self, out: &mut String) {
        let simple: [(&str, &str, &str, &AtomicU64); 6] = [
            ("strata_ingest_requests_total", "counter", "Write requests decoded.", &self.requests),
            ("strata_ingest_points_total", "counter", "Points acknowledged as durable.", &self.points),
            ("strata_ingest_values_total", "counter", "Field values acknowledged as durable.", &self.values),
            (
                "strata_ingest_received_bytes_total",
                "counter",
                "Write request body bytes as received.",
                &self.bytes_received,
            ),
            (
                "strata_ingest_decoded_bytes_total",
                "counter",
                "Write body bytes after decompression.",
                &self.bytes_decoded,
            ),
            (
                "strata_ingest_write_memory_bytes",
                "gauge",
                "Write memory reserved by in-flight requests.",
                &self.write_memory_bytes,
            ),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }

    /// Appends `strata_ingest_lines_rejected_total` and `strata_ingest_requests_rejected_total`.
    pub fn encode_rejections(&self, out: &mut String) {
        let name = "strata_ingest_lines_rejected_total";
        let _ =
            writeln!(out, "# HELP {name} Lines or JSON points refused, by reason.\n# TYPE {name} counter");
        for r in LineReject::ALL {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {}", r.as_str(), self.lines_rejected(r));
        }
        let name = "strata_ingest_requests_rejected_total";
        let _ =
            writeln!(out, "# HELP {name} Write requests refused whole, by reason.\n# TYPE {name} counter");
        for r in RequestReject::ALL {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {}", r.as_str(), self.requests_rejected(r));
        }
    }
}

/// Escapes a label value for the text format (backslash, double quote, newline).
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Acknowledged points, field values and body bytes by protocol (`line`, `json`, `mqtt`) and
/// database. A map under a mutex, touched once per request (not per point); its size is the
/// number of databases, which operators bound.
#[derive(Debug, Default)]
pub struct IngestByDb {
    map: Mutex<BTreeMap<(&'static str, String), [u64; 3]>>,
}

impl IngestByDb {
    pub fn record(&self, protocol: &'static str, db: &str, points: u64, values: u64, bytes: u64) {
        let mut map = self.map.lock();
        let slot = map.entry((protocol, db.to_owned())).or_default();
        slot[0] += points;
        slot[1] += values;
        slot[2] += bytes;
    }

    /// (points, values, bytes) recorded for `protocol` and `db`.
    pub fn get(&self, protocol: &'static str, db: &str) -> [u64; 3] {
        self.map.lock().get(&(protocol, db.to_owned())).copied().unwrap_or_default()
    }

    pub fn encode_prometheus(&self, out: &mut String) {
        let map = self.map.lock().clone();
        let metrics = [
            ("strata_ingest_database_points_total", "Points acknowledged, by protocol and database."),
            ("strata_ingest_database_values_total", "Field values acknowledged, by protocol and database."),
            (
                "strata_ingest_database_bytes_total",
                "Write body bytes (decoded) of acknowledged requests, by protocol and database.",
            ),
        ];
        for (i, (name, help)) in metrics.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((protocol, db), v) in &map {
                let _ =
                    writeln!(out, "{name}{{protocol=\"{protocol}\",db=\"{}\"}} {}", escape_label(db), v[i]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_index_their_arrays() {
        for (i, r) in LineReject::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, r) in RequestReject::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn by_db_escapes_database_names() {
        let m = IngestMetrics::default();
        m.by_db.record("line", "a\"b", 3, 4, 5);
        let mut out = String::new();
        m.by_db.encode_prometheus(&mut out);
        assert!(
            out.contains("strata_ingest_database_points_total{protocol=\"line\",db=\"a\\\"b\"} 3\n"),
            "{out}"
        );
        assert_eq!(m.by_db.get("line", "a\"b"), [3, 4, 5]);
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
