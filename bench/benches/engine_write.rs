//! Engine write throughput in field values per second: TSBS-iot-like truck readings (7 float
//! fields per point) in batches of 5,000 points, 1 and 2 writer threads, per sync policy.
//! Flushing runs in the background as in production, so this is sustained throughput.
//!
//! `cargo bench -p strata-bench --bench engine_write`

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_engine::{Engine, EngineOptions, FieldValue, SyncPolicy, WriteBatch};

const TRUCKS: usize = 1000;
const BATCH: usize = 5000;
const FIELDS: [&str; 7] =
    ["latitude", "longitude", "elevation", "velocity", "heading", "grade", "fuel_consumption"];

/// Pre-built batches: round `r` covers timestamps `r * 10 s` for every truck.
fn batches(rounds: usize) -> Vec<WriteBatch> {
    let mut out = Vec::new();
    let mut b = WriteBatch::with_capacity(BATCH * 260);
    let names: Vec<String> = (0..TRUCKS).map(|t| format!("truck_{t}")).collect();
    for r in 0..rounds {
        for (t, name) in names.iter().enumerate() {
            let mut p = b.point("readings");
            p.tag("name", name).tag("fleet", ["East", "West", "North", "South"][t % 4]).tag("model", "H-2");
            for (i, f) in FIELDS.iter().enumerate() {
                let v = ((r * 7 + t * 13 + i) % 1000) as f64 / 10.0;
                p.field(f, FieldValue::F64(v));
            }
            p.finish(1_700_000_000_000_000_000 + r as i64 * 10_000_000_000).unwrap();
            drop(p);
            if b.len_points() == BATCH {
                out.push(std::mem::replace(&mut b, WriteBatch::with_capacity(BATCH * 260)));
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let data = Arc::new(batches(40));
    let mut g = c.benchmark_group("engine_write");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements((BATCH * FIELDS.len()) as u64));
    for (policy_name, policy) in [
        ("interval_100ms", SyncPolicy::Interval(Duration::from_millis(100))),
        ("always", SyncPolicy::Always),
        ("never", SyncPolicy::Never),
    ] {
        for threads in [1usize, 2] {
            let dir = tempfile::tempdir().unwrap();
            let mut o = EngineOptions::new(dir.path());
            o.sync = policy;
            let engine = Arc::new(Engine::open(o).unwrap());
            engine.create_database("bench").unwrap();
            let next = Arc::new(AtomicI64::new(0));
            g.bench_function(format!("{policy_name}/{threads}_writers"), |b| {
                b.iter_custom(|iters| {
                    // `iters` batches split across the writer threads.
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..threads {
                            let (engine, data, next) = (&engine, &data, &next);
                            s.spawn(move || loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                if i as u64 >= iters {
                                    break;
                                }
                                let batch = &data[i as usize % data.len()];
                                engine.write("bench", batch).unwrap();
                            });
                        }
                    });
                    next.store(0, Ordering::Relaxed);
                    start.elapsed()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
