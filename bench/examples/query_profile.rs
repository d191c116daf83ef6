//! Where the time of one query goes, stage by stage, in process: parse, execute (planning,
//! series lookup, scan, aggregation) and JSON encoding, for the four TSBS-iot queries of
//! issue 4 over the same data as `benches/query.rs`. Medians of `--runs` repetitions, warm.
//!
//! `cargo run --release -p strata-bench --example query_profile -- [trucks] [hours] [runs] [query]`
//! (defaults 100 trucks x 4 h, 2000 runs, every query; a name such as `max-velocity-1h` runs
//! only that one, e.g. under `perf record`). The HTTP round trip is measured end to end by
//! `strata-loadgen query` against a running server instead.

use std::time::{Duration, Instant};

use strata_bench::datagen::{load_tsbs_trucks, START_NS};
use strata_query::encode::{encode_json, EncodeOptions};
use strata_query::{execute, parse_query, QueryContext, QueryLimits};

const HOUR: i64 = 3_600_000_000_000;

fn arg(i: usize, default: usize) -> usize {
    std::env::args().nth(i).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let (trucks, hours, runs) = (arg(1, 100), arg(2, 4), arg(3, 2000));
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = load_tsbs_trucks(dir.path(), trucks, hours);
    let (start, end) = (START_NS / 1_000_000, (START_NS + hours as i64 * HOUR) / 1_000_000);
    let queries = [
        ("max-velocity-1h", format!("SELECT max(\"velocity\") FROM \"readings\" WHERE \"name\" = 'truck_7' AND time >= {start}ms AND time < {}ms GROUP BY time(1m)", start + HOUR / 1_000_000)),
        ("fleet-fuel-10m", format!("SELECT mean(\"fuel_consumption\") FROM \"readings\" WHERE \"fleet\" = 'South' AND time >= {start}ms AND time < {end}ms GROUP BY time(10m)")),
        ("last-position", format!("SELECT last(\"latitude\"), last(\"longitude\") FROM \"readings\" WHERE time >= {start}ms AND time < {end}ms GROUP BY \"name\"")),
        ("count-all", format!("SELECT count(\"velocity\") FROM \"readings\" WHERE time >= {start}ms AND time < {end}ms")),
    ];
    let now = START_NS + hours as i64 * HOUR;
    println!("{trucks} trucks x {hours} h, {runs} runs, medians in microseconds");
    println!("{:<16} {:>9} {:>9} {:>9} {:>9}", "query", "parse", "execute", "encode", "total");
    let only = std::env::args().nth(4);
    for (name, q) in &queries {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let (mut tp, mut te, mut tj, mut tt) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let t0 = Instant::now();
            let stmts = parse_query(q).expect("query parses");
            let t1 = Instant::now();
            let ctx = QueryContext::new(&engine, Some("iot"), now, QueryLimits::default());
            let r = execute(&ctx, &stmts);
            let t2 = Instant::now();
            let body = encode_json(&r, EncodeOptions::default());
            let t3 = Instant::now();
            assert!(r[0].error.is_none() && body.len() > 50, "{name}: {:?}", r[0].error);
            tp.push(t1 - t0);
            te.push(t2 - t1);
            tj.push(t3 - t2);
            tt.push(t3 - t0);
        }
        println!(
            "{name:<16} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            median(tp),
            median(te),
            median(tj),
            median(tt)
        );
    }
}
