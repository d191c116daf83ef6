//! `GET /metrics`: every counter in the Prometheus text exposition format (0.0.4).
//!
//! Three sources: the server's own counters ([`crate::metrics::Metrics`], bumped by the
//! handlers), the engine's counters ([`strata_engine::EngineStats`]), and gauges computed here
//! at scrape time (memtable bytes, series per database, segment files and bytes per partition,
//! uptime). The gauges stat the segment files, so the work runs on a blocking thread. No token
//! is needed, like `/health`: the output holds database names and counts, never data. The
//! reference of every metric is in `docs/operations.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_engine::stats::WalStats;
use strata_engine::{Engine, EngineStats};
use strata_mqtt::metrics::Backpressure;

use super::AppState;
use crate::metrics::{encode_histogram, escape_label, RequestReject};

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(st): State<AppState>) -> Response {
    let body = tokio::task::spawn_blocking(move || render(&st)).await;
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering metrics failed: {e}")).into_response()
        }
    }
}

/// The whole exposition.
pub fn render(st: &AppState) -> String {
    let mut out = String::with_capacity(32 << 10);
    st.metrics.encode_prometheus(&mut out);
    encode_backpressure(st, &mut out);
    encode_engine_stats(st.engine.stats(), &mut out);
    encode_engine_gauges(&st.engine, &mut out);
    encode_process(st, &mut out);
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Times a write was pushed back, by protocol and reason: one metric for dashboards. The same
/// events are also counted in `strata_ingest_requests_rejected_total` (HTTP),
/// `strata_mqtt_backpressure_total` (MQTT) and the engine's stall counter; the engine does not
/// know which protocol a stalled write came from, so its stalls carry `protocol="any"`.
fn encode_backpressure(st: &AppState, out: &mut String) {
    let name = "strata_backpressure_events_total";
    family(
        out,
        name,
        "counter",
        "Writes pushed back (503/429, paused MQTT reads) or stalled, by protocol and reason.",
    );
    let i = &st.metrics.ingest;
    let m = &st.metrics.mqtt;
    let events = [
        ("http", "write_memory", i.requests_rejected(RequestReject::WriteMemory)),
        ("http", "engine_overloaded", i.requests_rejected(RequestReject::Overloaded)),
        ("http", "rate_limited", i.requests_rejected(RequestReject::RateLimited)),
        ("mqtt", "write_memory", m.backpressure_count(Backpressure::WriteMemory)),
        ("mqtt", "engine_overloaded", m.backpressure_count(Backpressure::Engine)),
        ("mqtt", "rate_limited", m.backpressure_count(Backpressure::RateLimit)),
        ("any", "engine_write_stall", st.engine.stats().write_stalls.load(Ordering::Relaxed)),
    ];
    for (protocol, reason, n) in events {
        let _ = writeln!(out, "{name}{{protocol=\"{protocol}\",reason=\"{reason}\"}} {n}");
    }
}

fn encode_engine_stats(s: &EngineStats, out: &mut String) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let counters: [(&str, &str, u64); 17] = [
        ("strata_engine_points_written_total", "Points written to the engine.", load(&s.points_written)),
        (
            "strata_engine_values_written_total",
            "Field values written to the engine.",
            load(&s.values_written),
        ),
        ("strata_engine_points_rejected_total", "Points refused by the engine.", load(&s.points_rejected)),
        ("strata_engine_flushes_total", "Memtables flushed to segments.", load(&s.flushes)),
        ("strata_engine_flush_bytes_total", "Segment bytes written by flushes.", load(&s.flush_bytes)),
        (
            "strata_engine_segments_written_total",
            "Segment files written (flushes and compactions).",
            load(&s.segments_written),
        ),
        (
            "strata_engine_write_stalls_total",
            "Writes that waited for a flush to free memtable room.",
            load(&s.write_stalls),
        ),
        (
            "strata_engine_overloaded_total",
            "Writes refused because flushing was behind.",
            load(&s.overloaded),
        ),
        (
            "strata_wal_replayed_records_total",
            "WAL records replayed at startup.",
            load(&s.wal_replayed_records),
        ),
        (
            "strata_wal_truncated_tails_total",
            "Torn WAL tails cut off at startup.",
            load(&s.wal_truncated_tails),
        ),
        // The names these had until 0.1: kept for one release so dashboards can move.
        (
            "strata_engine_wal_replayed_records_total",
            "Deprecated alias of strata_wal_replayed_records_total (removed after 0.2).",
            load(&s.wal_replayed_records),
        ),
        (
            "strata_engine_wal_truncated_tails_total",
            "Deprecated alias of strata_wal_truncated_tails_total (removed after 0.2).",
            load(&s.wal_truncated_tails),
        ),
        ("strata_engine_compactions_total", "Compactions finished.", load(&s.compactions)),
        (
            "strata_engine_compaction_read_bytes_total",
            "Segment bytes read by compactions.",
            load(&s.compaction_bytes_in),
        ),
        (
            "strata_engine_compaction_written_bytes_total",
            "Segment bytes written by compactions.",
            load(&s.compaction_bytes_out),
        ),
        (
            "strata_engine_compaction_values_total",
            "Field values rewritten by compactions.",
            load(&s.compaction_values),
        ),
        (
            "strata_engine_partitions_dropped_total",
            "Partitions deleted by retention.",
            load(&s.partitions_dropped),
        ),
    ];
    for (name, help, v) in counters {
        sample(out, name, "counter", help, v);
    }
    let secs = load(&s.compaction_nanos) as f64 / 1e9;
    sample(out, "strata_engine_compaction_seconds_total", "counter", "Time spent compacting.", secs);
    let secs = load(&s.flush_nanos) as f64 / 1e9;
    sample(out, "strata_engine_flush_seconds_total", "counter", "Time spent flushing memtables.", secs);
    encode_wal_stats(&s.wal, out);
}

fn encode_wal_stats(w: &WalStats, out: &mut String) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    // One snapshot gives both the fsync counter and the histogram, so they always agree.
    let fsync = w.fsync_duration.snapshot();
    let counters = [
        (
            "strata_wal_appends_total",
            "Records appended to the WAL (one per shard a write touches).",
            load(&w.appends),
        ),
        (
            "strata_wal_appended_bytes_total",
            "Bytes appended to the WAL, framing included.",
            load(&w.appended_bytes),
        ),
        ("strata_wal_writes_total", "WAL writes to the OS (one per group commit).", load(&w.writes)),
        ("strata_wal_fsyncs_total", "fdatasync calls on WAL data.", fsync.count),
    ];
    for (name, help, v) in counters {
        sample(out, name, "counter", help, v);
    }
    let name = "strata_wal_fsync_duration_seconds";
    family(out, name, "histogram", "Time of each fdatasync of WAL data.");
    encode_histogram(out, name, "", fsync.bounds, &fsync.cumulative, fsync.sum_seconds);
}

/// Per-partition segment files and bytes, keyed by (db, partition), from paths
/// `<data_dir>/dbs/<db>/<partition>/<id>.seg`.
pub fn segments_by_partition(files: &[impl AsRef<Path>]) -> BTreeMap<(String, String), (u64, u64)> {
    let mut out: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for f in files {
        let f = f.as_ref();
        let Some(part_dir) = f.parent() else { continue };
        let Some(db_dir) = part_dir.parent() else { continue };
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // A file deleted by compaction between listing and stat counts as 0 bytes.
        let bytes = std::fs::metadata(f).map_or(0, |m| m.len());
        let slot = out.entry((name(db_dir), name(part_dir))).or_default();
        slot.0 += 1;
        slot.1 += bytes;
    }
    out
}

fn encode_engine_gauges(engine: &Engine, out: &mut String) {
    sample(
        out,
        "strata_engine_memtable_bytes",
        "gauge",
        "Bytes held by active and frozen memtables.",
        engine.memtable_bytes(),
    );
    let mut dbs = engine.databases();
    dbs.sort();
    let name = "strata_engine_series";
    family(out, name, "gauge", "Series per database.");
    for db in &dbs {
        if let Ok(n) = engine.series_count(db) {
            let _ = writeln!(out, "{name}{{db=\"{}\"}} {n}", escape_label(db));
        }
    }
    let name = "strata_engine_tombstones";
    family(out, name, "gauge", "Tombstones (deletes not yet compacted away) per database.");
    for db in &dbs {
        if let Ok(n) = engine.tombstone_count(db) {
            let _ = writeln!(out, "{name}{{db=\"{}\"}} {n}", escape_label(db));
        }
    }
    sample(out, "strata_engine_databases", "gauge", "Databases.", dbs.len());
    let parts = segments_by_partition(&engine.segment_files());
    for (i, (name, help)) in [
        ("strata_engine_segments", "Segment files per partition."),
        ("strata_engine_segment_bytes", "Segment bytes per partition."),
    ]
    .into_iter()
    .enumerate()
    {
        family(out, name, "gauge", help);
        for ((db, partition), (files, bytes)) in &parts {
            let v = if i == 0 { *files } else { *bytes };
            let _ = writeln!(
                out,
                "{name}{{db=\"{}\",partition=\"{}\"}} {v}",
                escape_label(db),
                escape_label(partition)
            );
        }
    }
}

fn encode_process(st: &AppState, out: &mut String) {
    let start = st.started.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    sample(out, "strata_process_start_time_seconds", "gauge", "Start time, Unix seconds.", start);
    let up = SystemTime::now().duration_since(st.started).unwrap_or_default().as_secs_f64();
    sample(out, "strata_process_uptime_seconds", "gauge", "Seconds since the server started.", up);
    let name = "strata_build_info";
    family(out, name, "gauge", "Always 1; the labels say which build is running.");
    let _ = writeln!(out, "{name}{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    let poisoned = u8::from(st.engine.is_poisoned());
    sample(
        out,
        "strata_engine_poisoned",
        "gauge",
        "1 once an I/O error poisoned the engine (restart needed).",
        poisoned,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_grouped_by_db_and_partition() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |rel: &str, len: usize| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![0u8; len]).unwrap();
            p
        };
        let files = vec![
            mk("dbs/a/p1/00000001.seg", 10),
            mk("dbs/a/p1/00000002.seg", 5),
            mk("dbs/a/p2/00000003.seg", 7),
            mk("dbs/b/p1/00000004.seg", 1),
            dir.path().join("dbs/b/p1/gone.seg"),
        ];
        let m = segments_by_partition(&files);
        assert_eq!(m[&("a".to_string(), "p1".to_string())], (2, 15));
        assert_eq!(m[&("a".to_string(), "p2".to_string())], (1, 7));
        assert_eq!(m[&("b".to_string(), "p1".to_string())], (2, 1));
        assert_eq!(m.len(), 3);
    }
}
