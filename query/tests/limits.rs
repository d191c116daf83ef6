//! The query memory meter and deadline on every path whose allocations grow with the answer
//! rather than with the points read: `GROUP BY time` buckets, fill rows, `distinct()` rows,
//! raw rows (materialised and streamed), `SHOW` listings. Each test sets a limit the
//! statement passes and checks the answer is refused with the limit's error, and (where the
//! path can answer within a limit) that a query within it still answers the same as without
//! limits, so the metering changes no result.

use strata_engine::{Engine, EngineOptions, FieldValue, WriteBatch};
use strata_query::{
    execute, execute_statement, execute_statement_each, parse_query, QueryContext, QueryError, QueryLimits,
    Series,
};

const T0: i64 = 1_700_000_000_000_000_000;
const NOW: i64 = T0 + 3_600_000_000_000;
const MIB: u64 = 1 << 20;

fn engine() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    engine.create_database("db").unwrap();
    (dir, engine)
}

/// Four series (`d=d0..d3`) of `v` over 9 ms, and one point of a long string `s` at each end
/// of the first 20 µs.
fn write_fixture(engine: &Engine, long: usize) {
    let mut b = WriteBatch::new();
    for i in 0..10i64 {
        for d in 0..4i64 {
            let tag = format!("d{d}");
            let mut p = b.point("m");
            p.tag("d", &tag);
            p.field("v", FieldValue::F64(i as f64));
            p.finish(T0 + i * 900_000 + d).unwrap();
        }
    }
    let text = "x".repeat(long);
    for t in [T0, T0 + 19_999] {
        let mut p = b.point("s");
        p.field("s", FieldValue::Str(&text));
        p.finish(t).unwrap();
    }
    engine.write("db", &b).unwrap();
}

fn limits(memory: u64) -> QueryLimits {
    QueryLimits { max_memory_bytes: memory, ..QueryLimits::default() }
}

fn run(engine: &Engine, limits: QueryLimits, q: &str) -> Result<Vec<Series>, QueryError> {
    let stmts = parse_query(q).unwrap();
    let ctx = QueryContext::new(engine, Some("db"), NOW, limits);
    execute_statement(&ctx, &stmts[0])
}

/// The same statement streamed (`chunked=true`): the series it emits, or its error.
fn run_each(engine: &Engine, limits: QueryLimits, q: &str) -> Result<Vec<Series>, QueryError> {
    let stmts = parse_query(q).unwrap();
    let ctx = QueryContext::new(engine, Some("db"), NOW, limits);
    let mut out: Vec<Series> = Vec::new();
    let mut continued = false;
    execute_statement_each(&ctx, &stmts[0], &mut |s, more| {
        match out.last_mut() {
            Some(last) if continued => last.values.extend(s.values),
            _ => out.push(s),
        }
        continued = more;
        Ok(())
    })?;
    Ok(out)
}

fn assert_memory_error(r: Result<Vec<Series>, QueryError>, what: &str) {
    match r {
        Err(QueryError::MemoryExceeded { .. }) => {}
        Err(e) => panic!("{what}: expected the memory limit, got {e}"),
        Ok(s) => panic!("{what}: expected the memory limit, got {} series", s.len()),
    }
}

#[test]
fn group_by_time_buckets_are_charged_before_they_exist() {
    let (_d, e) = engine();
    write_fixture(&e, 16);
    let q = format!(
        "SELECT mean(v) FROM m WHERE time >= {T0} AND time < {} GROUP BY time(1ns), d fill(0)",
        T0 + 9_000_000
    );
    // 9 million buckets: the list alone is 72 MB.
    assert_memory_error(run(&e, limits(64 * MIB), &q), "materialised");
    assert_memory_error(run_each(&e, limits(64 * MIB), &q), "streamed");
    // The rows of every group are held at once: a limit one group's rows pass is refused
    // even when the bucket list fits.
    let q = format!(
        "SELECT mean(v) FROM m WHERE time >= {T0} AND time < {} GROUP BY time(1ns), d fill(0)",
        T0 + 20_000
    );
    assert_memory_error(run(&e, limits(4 * MIB), &q), "rows of four groups");
    let within = run(&e, limits(64 * MIB), &q).unwrap();
    assert_eq!(within, run(&e, QueryLimits::unlimited(), &q).unwrap());
    assert_eq!(within.len(), 4);
    assert!(within.iter().all(|s| s.values.len() == 20_000));
}

#[test]
fn fill_previous_copies_of_strings_are_charged() {
    let (_d, e) = engine();
    write_fixture(&e, 16 << 10);
    // 20,000 copies of a 16 KiB string: 320 MiB.
    let q = format!(
        "SELECT last(s) FROM s WHERE time >= {T0} AND time < {} GROUP BY time(1ns) fill(previous)",
        T0 + 20_000
    );
    assert_memory_error(run(&e, limits(64 * MIB), &q), "fill(previous)");
    assert_memory_error(run_each(&e, limits(64 * MIB), &q), "fill(previous) streamed");
    let q = format!(
        "SELECT last(s) FROM s WHERE time >= {T0} AND time < {} GROUP BY time(1ns) fill(previous)",
        T0 + 100
    );
    let within = run(&e, limits(64 * MIB), &q).unwrap();
    assert_eq!(within, run(&e, QueryLimits::unlimited(), &q).unwrap());
    assert_eq!(within[0].values.len(), 100);
}

#[test]
fn distinct_fill_rows_are_charged() {
    let (_d, e) = engine();
    write_fixture(&e, 16);
    let q = format!(
        "SELECT distinct(v) FROM m WHERE time >= {T0} AND time < {} GROUP BY time(1ns) fill(0)",
        T0 + 2_000_000
    );
    // Two million fill rows of two values each.
    assert_memory_error(run(&e, limits(32 * MIB), &q), "distinct");
    let q = format!(
        "SELECT distinct(v) FROM m WHERE time >= {T0} AND time < {} GROUP BY time(1ns) fill(0)",
        T0 + 1_000
    );
    assert_eq!(run(&e, limits(32 * MIB), &q).unwrap(), run(&e, QueryLimits::unlimited(), &q).unwrap());
}

/// Raw rows are charged with their strings; the streamed form hands each part on and is
/// charged only for what it holds, so it answers within a limit the materialised form passes.
#[test]
fn raw_rows_charge_their_strings_and_streaming_releases_them() {
    let (_d, e) = engine();
    let text = "y".repeat(1024);
    let mut b = WriteBatch::new();
    for i in 0..5_000i64 {
        let mut p = b.point("r");
        p.field("s", FieldValue::Str(&text));
        p.finish(T0 + i).unwrap();
    }
    e.write("db", &b).unwrap();
    // 5,000 rows of 1 KiB strings: about 5 MiB held materialised, about 1 MiB streamed.
    assert_memory_error(run(&e, limits(2 * MIB), "SELECT s FROM r"), "raw materialised");
    let streamed = run_each(&e, limits(2 * MIB), "SELECT s FROM r").unwrap();
    assert_eq!(streamed, run(&e, QueryLimits::unlimited(), "SELECT s FROM r").unwrap());
    // A raw transformation keeps its input column.
    let mut b = WriteBatch::new();
    for i in 0..50_000i64 {
        let mut p = b.point("n");
        p.field("v", FieldValue::F64(i as f64));
        p.finish(T0 + i).unwrap();
    }
    e.write("db", &b).unwrap();
    assert_memory_error(run(&e, limits(MIB), "SELECT derivative(v) FROM n"), "raw transformation");
}

#[test]
fn show_listings_are_charged() {
    let (_d, e) = engine();
    let pad = "p".repeat(300);
    let mut b = WriteBatch::new();
    for i in 0..2_000 {
        let name = format!("m{i:05}{pad}");
        let id = format!("{i:05}{pad}");
        let mut p = b.point(&name);
        p.tag("id", &id);
        p.field("v", FieldValue::F64(1.0));
        p.finish(T0).unwrap();
    }
    e.write("db", &b).unwrap();
    for q in [
        "SHOW SERIES",
        "SHOW MEASUREMENTS",
        "SHOW TAG VALUES WITH KEY = \"id\"",
        "SHOW TAG VALUES WITH KEY = \"id\" WHERE id =~ /p/",
        "SHOW MEASUREMENTS WHERE id =~ /p/",
    ] {
        assert_memory_error(run(&e, limits(256 << 10), q), q);
        let within = run(&e, limits(64 * MIB), q).unwrap();
        assert_eq!(within, run(&e, QueryLimits::unlimited(), q).unwrap(), "{q}");
        assert!(!within.is_empty(), "{q}");
    }
}

/// The deadline stops a walk over millions of buckets that reads only two points. (A
/// statement is also checked when it starts; the timeout here is long enough for that check
/// and far too short for the walk.)
#[test]
fn the_deadline_stops_the_bucket_walk() {
    let (_d, e) = engine();
    write_fixture(&e, 16);
    let q = format!(
        "SELECT count(v) FROM m WHERE time >= {T0} AND time < {} GROUP BY time(1ns) fill(0)",
        T0 + 9_000_000
    );
    let limits = QueryLimits {
        timeout: Some(std::time::Duration::from_millis(20)),
        max_memory_bytes: 0,
        ..QueryLimits::default()
    };
    match run(&e, limits, &q) {
        Err(QueryError::Timeout { limit_ms: 20 }) => {}
        other => panic!("expected the timeout, got {:?}", other.map(|s| s.len())),
    }
}

/// `execute` reports the limit and how to raise it.
#[test]
fn memory_error_names_the_setting() {
    let (_d, e) = engine();
    write_fixture(&e, 16);
    let q =
        format!("SELECT mean(v) FROM m WHERE time >= {T0} AND time < {} GROUP BY time(1ns)", T0 + 9_000_000);
    let stmts = parse_query(&q).unwrap();
    let ctx = QueryContext::new(&e, Some("db"), NOW, limits(MIB));
    let r = execute(&ctx, &stmts);
    let error = r[0].error.as_deref().unwrap();
    assert!(error.contains("query memory limit exceeded") && error.contains("query.max_memory"), "{error}");
}

/// `top()` with tag arguments keeps the tag values of every candidate point: they are charged
/// (once per series, as they are held), so long tags cannot take memory the meter does not see.
#[test]
fn top_tag_arguments_are_charged() {
    let (_d, engine) = engine();
    let mut b = WriteBatch::new();
    for s in 0..100i64 {
        let big = format!("{s:02}{}", "t".repeat(4_000));
        for i in 0..5i64 {
            let mut p = b.point("t");
            p.tag("big", &big);
            p.field("v", FieldValue::F64((s * 100 + i) as f64));
            p.finish(T0 + i * 1_000).unwrap();
        }
    }
    engine.write("db", &b).unwrap();
    let q = "SELECT top(v, big, 1) FROM t";
    // 100 series x 4 KB of tag values (500 points): more than 200 KB held.
    assert_memory_error(run(&engine, limits(200 << 10), q), "top with long tag arguments");
    let s = run(&engine, limits(0), q).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].values.len(), 1);
    assert_eq!(s[0].values[0][1], strata_query::Value::Float(9904.0), "{:?}", s[0].values[0][1]);
}
