//! The server's counters: plain atomics that handlers bump and `/metrics` reads. Each crate
//! keeps its own counters (ingest: `strata_ingest::metrics`, MQTT: `strata_mqtt::metrics`);
//! [`Metrics`] holds them all and [`Metrics::encode_prometheus`] renders them together.
//!
//! Names follow the Prometheus conventions (`strata_<subsystem>_<thing>_<unit>`, counters end
//! in `_total`); [`Metrics::encode_prometheus`] writes them in the text exposition format.
//! Label sets are closed enums ([`Route`], [`QueryOutcome`], and the ingest crate's
//! [`LineReject`], [`RequestReject`]) indexing fixed arrays, so recording never allocates or
//! locks.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use strata_ingest::metrics::{escape_label, IngestByDb, IngestMetrics, LineReject, RequestReject};

/// The route of an HTTP request, for the `route` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    WriteV2,
    WriteV1,
    WriteJson,
    Query,
    Databases,
    Buckets,
    Ping,
    Health,
    Ready,
    Metrics,
    Backup,
    Backups,
    Other,
}

impl Route {
    pub const ALL: [Route; 13] = [
        Route::WriteV2,
        Route::WriteV1,
        Route::WriteJson,
        Route::Query,
        Route::Databases,
        Route::Buckets,
        Route::Ping,
        Route::Health,
        Route::Ready,
        Route::Metrics,
        Route::Backup,
        Route::Backups,
        Route::Other,
    ];

    /// The route of a matched axum path (`None` when no route matched).
    pub fn from_path(path: Option<&str>) -> Route {
        match path {
            Some("/api/v2/write") => Route::WriteV2,
            Some("/write") => Route::WriteV1,
            Some("/api/v1/json") => Route::WriteJson,
            Some("/query") | Some("/api/v2/query") => Route::Query,
            Some("/api/v1/databases") => Route::Databases,
            Some("/api/v2/buckets") => Route::Buckets,
            Some("/ping") => Route::Ping,
            Some("/health") => Route::Health,
            Some("/ready") => Route::Ready,
            Some("/metrics") => Route::Metrics,
            Some("/api/v1/backup") => Route::Backup,
            Some("/api/v1/backups") => Route::Backups,
            _ => Route::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::WriteV2 => "/api/v2/write",
            Route::WriteV1 => "/write",
            Route::WriteJson => "/api/v1/json",
            Route::Query => "/query",
            Route::Databases => "/api/v1/databases",
            Route::Buckets => "/api/v2/buckets",
            Route::Ping => "/ping",
            Route::Health => "/health",
            Route::Ready => "/ready",
            Route::Metrics => "/metrics",
            Route::Backup => "/api/v1/backup",
            Route::Backups => "/api/v1/backups",
            Route::Other => "other",
        }
    }
}

/// How a `/query` request ended, for the `outcome` label of `strata_query_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueryOutcome {
    /// Every statement ran.
    Ok,
    /// Bad parameters before parsing: no `q`, a bad `epoch`, an undecodable query string or
    /// form body, a write statement sent with `GET`: 400/405.
    BadRequest,
    /// InfluxQL that does not parse: 400.
    Parse,
    /// No, unknown or insufficient credentials: 401/403.
    Auth,
    /// A statement hit `query.max_series`, `max_points_*`, a bucket or the memory limit.
    Limit,
    /// A statement ran past `query.timeout`.
    Timeout,
    /// A statement was refused when run: unknown database, unsupported or invalid call, ...
    Invalid,
    /// A storage error or a failed query task.
    Internal,
    /// The client hung up on a streamed answer before it ended; the query stopped there.
    Cancelled,
}

impl QueryOutcome {
    pub const ALL: [QueryOutcome; 9] = [
        QueryOutcome::Ok,
        QueryOutcome::BadRequest,
        QueryOutcome::Parse,
        QueryOutcome::Auth,
        QueryOutcome::Limit,
        QueryOutcome::Timeout,
        QueryOutcome::Invalid,
        QueryOutcome::Internal,
        QueryOutcome::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryOutcome::Ok => "ok",
            QueryOutcome::BadRequest => "bad_request",
            QueryOutcome::Parse => "parse",
            QueryOutcome::Auth => "auth",
            QueryOutcome::Limit => "limit",
            QueryOutcome::Timeout => "timeout",
            QueryOutcome::Invalid => "invalid",
            QueryOutcome::Internal => "internal",
            QueryOutcome::Cancelled => "cancelled",
        }
    }

    /// The class of a statement's error.
    pub fn of_error(e: &strata_query::QueryError) -> QueryOutcome {
        use strata_query::QueryError as E;
        match e {
            E::Timeout { .. } => QueryOutcome::Timeout,
            E::Cancelled => QueryOutcome::Cancelled,
            e if e.is_limit() => QueryOutcome::Limit,
            E::Read(_) | E::Lifecycle(_) | E::Write(_) => QueryOutcome::Internal,
            _ => QueryOutcome::Invalid,
        }
    }
}

/// `/query` counters.
#[derive(Debug, Default)]
pub struct QueryMetrics {
    outcomes: [AtomicU64; QueryOutcome::ALL.len()],
    /// Time from the request's arrival to its encoded answer (early refusals included).
    pub duration: Histogram,
    /// Result series returned by successful statements.
    pub series_returned: AtomicU64,
    /// Result rows returned by successful statements.
    pub rows_returned: AtomicU64,
}

impl QueryMetrics {
    pub fn record(&self, outcome: QueryOutcome, elapsed: Duration) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(elapsed);
    }

    pub fn requests(&self, outcome: QueryOutcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }

    fn encode_prometheus(&self, out: &mut String) {
        let name = "strata_query_requests_total";
        let _ = writeln!(out, "# HELP {name} /query requests by outcome.\n# TYPE {name} counter");
        for o in QueryOutcome::ALL {
            let _ = writeln!(out, "{name}{{outcome=\"{}\"}} {}", o.as_str(), self.requests(o));
        }
        let name = "strata_query_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from /query request arrival to its encoded answer.\n# TYPE {name} histogram"
        );
        self.duration.encode(out, name, "");
        for (name, help, v) in [
            ("strata_query_series_returned_total", "Result series returned.", &self.series_returned),
            ("strata_query_rows_returned_total", "Result rows returned.", &self.rows_returned),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

/// Status codes counted individually; anything else lands in its class's `other` slot.
const STATUSES: [u16; 17] =
    [200, 201, 204, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429, 500, 501, 503, 0];

fn status_slot(status: u16) -> usize {
    STATUSES.iter().position(|&s| s == status).unwrap_or(STATUSES.len() - 1)
}

/// HTTP request counters by route and status.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: [[AtomicU64; STATUSES.len()]; Route::ALL.len()],
    /// Time from the request's arrival to its response's headers, by route.
    pub durations: [Histogram; Route::ALL.len()],
}

impl HttpMetrics {
    pub fn record(&self, route: Route, status: u16) {
        self.requests[route as usize][status_slot(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests seen for `route` with `status` (statuses not counted individually share one
    /// slot).
    pub fn requests(&self, route: Route, status: u16) -> u64 {
        self.requests[route as usize][status_slot(status)].load(Ordering::Relaxed)
    }
}

/// Every counter of the server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Shared with the write paths through their `IngestContext`.
    pub ingest: Arc<IngestMetrics>,
    pub http: HttpMetrics,
    /// MQTT listener counters (the MQTT crate's, shared with its broker).
    pub mqtt: Arc<strata_mqtt::metrics::MqttMetrics>,
    /// Online backups (`POST /api/v1/backup`).
    pub backup: BackupMetrics,
    /// `/query` requests.
    pub query: QueryMetrics,
}

/// Online backup counters.
#[derive(Debug, Default)]
pub struct BackupMetrics {
    /// Backups written.
    pub backups: AtomicU64,
    /// Backups that failed (I/O or engine errors; refused requests are not counted).
    pub errors: AtomicU64,
}

impl Metrics {
    /// Appends the counters in the Prometheus text exposition format (version 0.0.4).
    pub fn encode_prometheus(&self, out: &mut String) {
        self.ingest.encode_counters(out);
        let simple: [(&str, &str, &str, &AtomicU64); 2] = [
            ("strata_backups_total", "counter", "Online backups written.", &self.backup.backups),
            ("strata_backup_errors_total", "counter", "Online backups that failed.", &self.backup.errors),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        self.ingest.encode_rejections(out);
        self.mqtt.encode_prometheus(out);
        let name = "strata_http_requests_total";
        let _ = writeln!(out, "# HELP {name} HTTP requests by route and status.\n# TYPE {name} counter");
        for route in Route::ALL {
            for (slot, status) in STATUSES.iter().enumerate() {
                let n = self.http.requests[route as usize][slot].load(Ordering::Relaxed);
                if n > 0 {
                    let status = if *status == 0 { "other".to_string() } else { status.to_string() };
                    let _ = writeln!(out, "{name}{{route=\"{}\",status=\"{status}\"}} {n}", route.as_str());
                }
            }
        }
        let name = "strata_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from request arrival to response headers, by route.\n# TYPE {name} histogram"
        );
        for route in Route::ALL {
            let h = &self.http.durations[route as usize];
            if h.count() > 0 {
                h.encode(out, name, &format!("route=\"{}\"", route.as_str()));
            }
        }
        self.ingest.by_db.encode_prometheus(out);
        self.query.encode_prometheus(out);
    }
}

/// Upper bounds of the duration histograms, in seconds: 100 us to 10 s, about 2.5x apart. Fixed
/// so that series from different servers and versions aggregate.
pub const DURATION_BUCKETS: [f64; 13] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5, 10.0];

/// A Prometheus histogram with the fixed [`DURATION_BUCKETS`]: lock-free, one atomic add per
/// observation plus one for the sum.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = DURATION_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(DURATION_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Writes the `_bucket` (cumulative), `_sum` and `_count` samples; `labels` is
    /// `key="value",...` or empty. The `# TYPE` line is the caller's.
    pub fn encode(&self, out: &mut String, name: &str, labels: &str) {
        let mut total = 0;
        let cumulative: [u64; DURATION_BUCKETS.len() + 1] = std::array::from_fn(|i| {
            total += self.buckets[i].load(Ordering::Relaxed);
            total
        });
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encode_histogram(out, name, labels, &DURATION_BUCKETS, &cumulative, sum);
    }
}

/// Writes the `_bucket`, `_sum` and `_count` samples of a histogram; `cumulative` holds one
/// count per bound and then the `+Inf` count, which is also `_count`. `labels` is
/// `key="value",...` or empty. The `# TYPE` line is the caller's.
pub fn encode_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[f64],
    cumulative: &[u64],
    sum_seconds: f64,
) {
    debug_assert_eq!(bounds.len() + 1, cumulative.len());
    let sep = if labels.is_empty() { "" } else { "," };
    for (i, n) in cumulative.iter().enumerate() {
        match bounds.get(i) {
            Some(le) => {
                let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
            }
            None => {
                let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {n}");
            }
        }
    }
    let count = cumulative.last().copied().unwrap_or(0);
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {sum_seconds}");
    let _ = writeln!(out, "{name}_count{braces} {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_index_their_arrays() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            if *r != Route::Other {
                assert_eq!(Route::from_path(Some(r.as_str())), *r);
            }
        }
    }

    #[test]
    fn counts_and_encodes() {
        let m = Metrics::default();
        m.ingest.line_rejected(LineReject::SeriesLimit);
        m.ingest.line_rejected(LineReject::SeriesLimit);
        m.ingest.request_rejected(RequestReject::BodyTooLarge);
        m.http.record(Route::WriteV2, 204);
        m.http.record(Route::WriteV2, 418);
        assert_eq!(m.ingest.lines_rejected(LineReject::SeriesLimit), 2);
        assert_eq!(m.http.requests(Route::WriteV2, 204), 1);
        assert_eq!(m.http.requests(Route::WriteV2, 418), 1);
        let mut out = String::new();
        m.encode_prometheus(&mut out);
        assert!(out.contains("strata_ingest_lines_rejected_total{reason=\"series_limit\"} 2"), "{out}");
        assert!(out.contains("strata_ingest_requests_rejected_total{reason=\"body_too_large\"} 1"), "{out}");
        assert!(
            out.contains("strata_http_requests_total{route=\"/api/v2/write\",status=\"204\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("strata_http_requests_total{route=\"/api/v2/write\",status=\"other\"} 1"),
            "{out}"
        );
    }

    #[test]
    fn query_errors_are_classified() {
        use strata_query::QueryError as E;
        for (i, o) in QueryOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        assert_eq!(QueryOutcome::of_error(&E::Timeout { limit_ms: 5 }), QueryOutcome::Timeout);
        assert_eq!(QueryOutcome::of_error(&E::TooManySeries { count: 3, limit: 2 }), QueryOutcome::Limit);
        assert_eq!(QueryOutcome::of_error(&E::MemoryExceeded { limit: 1 }), QueryOutcome::Limit);
        assert_eq!(QueryOutcome::of_error(&E::DatabaseRequired), QueryOutcome::Invalid);
        assert_eq!(QueryOutcome::of_error(&E::Cancelled), QueryOutcome::Cancelled);
        assert_eq!(
            QueryOutcome::of_error(&E::Write(strata_engine::WriteError::Poisoned)),
            QueryOutcome::Internal
        );
        let m = Metrics::default();
        m.query.record(QueryOutcome::Parse, Duration::from_millis(1));
        let mut out = String::new();
        m.encode_prometheus(&mut out);
        assert!(out.contains("strata_query_requests_total{outcome=\"parse\"} 1\n"), "{out}");
        assert!(out.contains("strata_query_requests_total{outcome=\"ok\"} 0\n"), "{out}");
        assert!(out.contains("strata_query_duration_seconds_count 1\n"), "{out}");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.encode(&mut out, "x_seconds", "route=\"/a\"");
        assert!(out.contains("x_seconds_bucket{route=\"/a\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{route=\"/a\",le=\"0.0025\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{route=\"/a\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{route=\"/a\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count{route=\"/a\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum{route=\"/a\"} 60.00305\n"), "{out}");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
