//! Query latency on TSBS-iot-like data (trucks with readings every 10 s), the four queries of
//! issue 4: (1) one truck's max velocity per minute over an hour, (2) mean fuel consumption
//! per 10 minutes over the whole range for one fleet, (3) the last position of every truck,
//! (4) a full-range count. Data is flushed to segments first (warm, memory-mapped), so (2)
//! and (4) mostly run from block statistics.
//!
//! `cargo bench -p strata-bench --bench query` (500 trucks x 4 h = 720k points x 9 fields;
//! `STRATA_BENCH_TRUCKS` and `STRATA_BENCH_HOURS` change the size). A second group reads one
//! truck over 30 days, on one thread and split by time over the cores.

use criterion::{criterion_group, criterion_main, Criterion};
use strata_bench::datagen::{load_tsbs_trucks, START_NS};
use strata_engine::Engine;
use strata_query::{execute, parse_query, QueryContext, QueryLimits};

const HOUR: i64 = 3_600_000_000_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn load(trucks: usize, hours: usize) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = load_tsbs_trucks(dir.path(), trucks, hours);
    (dir, engine)
}

fn bench(c: &mut Criterion) {
    let trucks = env("STRATA_BENCH_TRUCKS", 500);
    let hours = env("STRATA_BENCH_HOURS", 4);
    let (_dir, engine) = load(trucks, hours);
    let start = START_NS / 1_000_000;
    let end = (START_NS + hours as i64 * HOUR) / 1_000_000;
    let queries = [
        (
            "1_max_velocity_per_minute_one_truck_1h",
            format!(
                "SELECT max(velocity) FROM readings WHERE \"name\" = 'truck_7' AND time >= {}ms AND time < {}ms GROUP BY time(1m)",
                start + HOUR / 1_000_000,
                start + 2 * HOUR / 1_000_000
            ),
        ),
        (
            "2_mean_fuel_per_10m_one_fleet",
            format!(
                "SELECT mean(fuel_consumption) FROM readings WHERE fleet = 'South' AND time >= {start}ms AND time < {end}ms GROUP BY time(10m)"
            ),
        ),
        ("3_last_position_every_truck", "SELECT last(latitude), last(longitude) FROM readings GROUP BY \"name\"".to_owned()),
        ("4_full_range_count", "SELECT count(velocity) FROM readings".to_owned()),
    ];
    let mut g = c.benchmark_group("query");
    for (name, q) in &queries {
        let stmts = parse_query(q).expect("query parses");
        let now = START_NS + hours as i64 * HOUR;
        // Check once that the query answers something.
        let ctx = QueryContext::new(&engine, Some("iot"), now, QueryLimits::unlimited());
        let r = execute(&ctx, &stmts);
        assert!(r[0].error.is_none() && !r[0].series.is_empty(), "{name}: {:?}", r[0].error);
        g.bench_function(*name, |b| {
            b.iter(|| {
                let ctx = QueryContext::new(&engine, Some("iot"), now, QueryLimits::unlimited());
                execute(&ctx, &stmts)
            })
        });
    }
    g.finish();
}

/// One truck's hourly mean velocity over 30 days (259,200 points per field, blocks spanning
/// many windows, so every point is decoded): on one thread, and split by time over the cores
/// (`QueryContext::parallel_min_span_ns`). `STRATA_BENCH_LONG_DAYS` changes the range.
fn bench_long_range(c: &mut Criterion) {
    let days = env("STRATA_BENCH_LONG_DAYS", 30);
    let (_dir, engine) = load(2, days * 24);
    let start = START_NS / 1_000_000;
    let end = (START_NS + days as i64 * 24 * HOUR) / 1_000_000;
    let q = format!(
        "SELECT mean(velocity) FROM readings WHERE \"name\" = 'truck_1' AND time >= {start}ms AND time < {end}ms GROUP BY time(1h)"
    );
    let stmts = parse_query(&q).expect("query parses");
    let now = START_NS + days as i64 * 24 * HOUR;
    let mut g = c.benchmark_group("query_long_range");
    for (name, min_span) in
        [("hourly_mean_one_truck_30d_one_thread", i64::MAX), ("hourly_mean_one_truck_30d_split_by_time", 0)]
    {
        let ctx = || {
            let mut ctx = QueryContext::new(&engine, Some("iot"), now, QueryLimits::unlimited());
            ctx.parallel_min_span_ns = min_span;
            ctx
        };
        let r = execute(&ctx(), &stmts);
        assert!(r[0].error.is_none() && !r[0].series.is_empty(), "{name}: {:?}", r[0].error);
        g.bench_function(name, |b| b.iter(|| execute(&ctx(), &stmts)));
    }
    g.finish();
}

criterion_group!(benches, bench, bench_long_range);
criterion_main!(benches);
