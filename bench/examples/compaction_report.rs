//! Compaction on TSBS-iot-like data: throughput, on-disk bytes per field value before and
//! after, and the latency of a partition-wide aggregate scan on the uncompacted vs compacted
//! partition.
//!
//! ```text
//! cargo run --release -p strata-bench --example compaction_report [-- TRUCKS POINTS_PER_TRUCK]
//! ```
//! Defaults: 200 trucks x 2,000 points (10 s apart, 0-99 ms jitter) x 9 fields = 3.6 M field
//! values in one day partition, written in small batches with a 4 MiB memtable so that flushes
//! leave many small segments, as a busy ingest does.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use strata_bench::datagen;
use strata_engine::{
    Engine, EngineOptions, FieldValue, Piece, ScanOptions, ScanRequest, SyncPolicy, TagPredicate, TimeRange,
    WriteBatch,
};

fn disk_bytes(e: &Engine) -> u64 {
    e.segment_files().iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum()
}

/// Median latency of `max(velocity)` per truck over the whole range, with block summaries.
fn scan_latency(e: &Engine) -> (Duration, u64) {
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..15 {
        let t = Instant::now();
        let always = |_: i64, _: i64| true;
        let opts = ScanOptions { summarize: Some(&always), series: None };
        let req = ScanRequest {
            db: "bench",
            measurement: "readings",
            predicate: &TagPredicate::All,
            fields: Some(&["velocity"]),
            range: TimeRange::ALL,
        };
        n = 0;
        e.scan_pieces(&req, &opts, &mut |s| {
            for c in &s.columns {
                n += c.pieces.iter().map(Piece::count).sum::<u64>();
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], n)
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let trucks = args.first().copied().unwrap_or(200);
    let points = args.get(1).copied().unwrap_or(2_000);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = EngineOptions::new(dir.path());
    opts.sync = SyncPolicy::Never;
    opts.memtable_size = 4 << 20;
    opts.maintenance_interval = Duration::from_secs(3600);
    opts.compaction_bytes_per_sec = 0;
    let e = Engine::open(opts).unwrap();
    e.create_database("bench").unwrap();
    let data: Vec<_> = (0..trucks).map(|t| datagen::tsbs_truck(t as u64, points, 99)).collect();
    let mut values = 0u64;
    // Interleave trucks in time order, 100 points per batch, as devices would send them.
    for chunk in (0..points).collect::<Vec<_>>().chunks(50) {
        for (t, d) in data.iter().enumerate() {
            let mut b = WriteBatch::new();
            let name = format!("truck_{t}");
            for &i in chunk {
                let mut p = b.point("readings");
                p.tag("name", &name).tag("fleet", ["East", "West", "North", "South"][t % 4]);
                for f in &d.fields {
                    p.field(f.name, FieldValue::F64(f.values[i]));
                }
                p.finish(d.timestamps[i]).unwrap();
                values += d.fields.len() as u64;
            }
            e.write("bench", &b).unwrap();
        }
    }
    e.flush().unwrap();
    let segments_before = e.segment_files().len();
    let bytes_before = disk_bytes(&e);
    let (lat_before, n_before) = scan_latency(&e);
    let t = Instant::now();
    let report = e.compact().unwrap();
    let took = t.elapsed();
    let bytes_after = disk_bytes(&e);
    let (lat_after, n_after) = scan_latency(&e);
    assert_eq!(n_before, n_after, "compaction must not change the data");
    assert_eq!(report.values, values);
    println!("TSBS-iot-like readings: {trucks} trucks x {points} points x 9 fields = {values} field values");
    println!("| | segments | bytes on disk | bytes per field value | max(velocity) scan, median |");
    println!("|---|---|---|---|---|");
    println!(
        "| before compaction | {segments_before} | {bytes_before} | {:.3} | {:.2} ms |",
        bytes_before as f64 / values as f64,
        lat_before.as_secs_f64() * 1e3
    );
    println!(
        "| after compaction | {} | {bytes_after} | {:.3} | {:.2} ms |",
        e.segment_files().len(),
        bytes_after as f64 / values as f64,
        lat_after.as_secs_f64() * 1e3
    );
    println!(
        "compaction: {} segments in {:.2} s = {:.2} M field values/s ({:.1} MB/s read)",
        report.segments_in,
        took.as_secs_f64(),
        report.values as f64 / took.as_secs_f64() / 1e6,
        report.bytes_in as f64 / took.as_secs_f64() / 1e6
    );
}
