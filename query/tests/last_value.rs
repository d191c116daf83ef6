//! `last()` per series is answered from the engine's last-value cache: property test against
//! the same query forced through a full scan (a condition on a field value that every point
//! meets) and against a naive oracle, with late, out-of-order and rewritten points, part
//! flushed, part in memtables, deletes and restarts in between.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_engine::{Engine, EngineOptions, FieldValue, TagPredicate, TimeRange, WriteBatch};
use strata_query::{execute, parse_query, QueryContext, QueryLimits, Series, Value};

const S: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * S;
const SPAN: i64 = 300;

/// (host, time offset s, v)
type Pt = (u8, i64, i64);

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Pt>),
    Flush,
    Reopen,
    /// Delete host (all hosts if `None`) in `[lo, hi)` seconds.
    Delete(Option<u8>, i64, i64),
}

fn open(dir: &std::path::Path) -> Engine {
    let mut o = EngineOptions::new(dir);
    o.shards = 2;
    // Small chunks: columns hold sealed chunks and a raw head at once.
    o.memtable_chunk_values = 4;
    let e = Engine::open(o).unwrap();
    if !e.database_exists("db") {
        e.create_database("db").unwrap();
    }
    e
}

fn write(e: &Engine, points: &[Pt]) {
    let mut b = WriteBatch::new();
    for &(h, t, v) in points {
        let mut p = b.point("m");
        p.tag("host", &format!("h{h}"));
        p.field("v", FieldValue::F64(v as f64 / 4.0));
        p.field("n", FieldValue::I64(v));
        let s = format!("s{v}");
        p.field("s", FieldValue::Str(&s));
        p.finish(T0 + t * S).unwrap();
    }
    e.write("db", &b).unwrap();
}

fn arb_op() -> impl Strategy<Value = Op> {
    let point = (0u8..4, -5i64..SPAN, -1000i64..1000);
    prop_oneof![
        6 => prop::collection::vec(point, 1..30).prop_map(Op::Write),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => (prop::option::of(0u8..4), -5i64..SPAN, 1i64..SPAN).prop_map(|(h, lo, len)| Op::Delete(h, lo, lo + len)),
    ]
}

/// `SELECT last(...)` text, with the same query forced through the full read when `forced`.
fn query(fields: &str, range: Option<(i64, i64)>, by_host: bool, forced: bool) -> String {
    let mut conds = Vec::new();
    if let Some((lo, hi)) = range {
        conds.push(format!("time >= {}s AND time < {}s", 1_700_000_000 + lo, 1_700_000_000 + hi));
    }
    if forced {
        conds.push("n > -100000".into());
    }
    let mut q = format!("SELECT {fields} FROM m");
    if !conds.is_empty() {
        q += &format!(" WHERE {}", conds.join(" AND "));
    }
    if by_host {
        q += " GROUP BY host";
    }
    q
}

fn run(e: &Engine, text: &str) -> Vec<Series> {
    let stmts = parse_query(text).unwrap();
    let ctx = QueryContext::new(e, Some("db"), T0 + 10_000 * S, QueryLimits::default());
    let mut res = execute(&ctx, &stmts);
    assert!(res[0].error.is_none(), "{text}: {:?}", res[0].error);
    res.remove(0).series
}

/// The newest `n` per host in the range, from the points that survived.
fn oracle(data: &BTreeMap<(u8, i64), i64>, range: Option<(i64, i64)>) -> BTreeMap<String, (i64, i64)> {
    let mut out = BTreeMap::new();
    for (&(h, t), &v) in data {
        if range.is_none_or(|(lo, hi)| t >= lo && t < hi) {
            // BTreeMap order: later times of a host come later.
            out.insert(format!("h{h}"), (t, v));
        }
    }
    out
}

fn check(
    e: &Engine,
    data: &BTreeMap<(u8, i64), i64>,
    range: Option<(i64, i64)>,
) -> Result<(), TestCaseError> {
    for by_host in [true, false] {
        for fields in ["last(v), last(n), last(s)", "last(*)", "last(n)"] {
            let fast = run(e, &query(fields, range, by_host, false));
            let full = run(e, &query(fields, range, by_host, true));
            prop_assert_eq!(&fast, &full, "{}", query(fields, range, by_host, false));
        }
    }
    let got: BTreeMap<String, (i64, i64)> = run(e, &query("last(n)", range, true, false))
        .into_iter()
        .map(|s| {
            let host = s.tags.as_ref().unwrap()[0].1.clone();
            let (Value::Time(t), Value::Integer(n)) = (&s.values[0][0], &s.values[0][1]) else {
                panic!("time and integer expected: {:?}", s.values)
            };
            (host, ((t - T0) / S, *n))
        })
        .collect();
    prop_assert_eq!(got, oracle(data, range));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn last_per_series_matches_a_full_scan(
        ops in prop::collection::vec(arb_op(), 1..12),
        ranges in prop::collection::vec(prop::option::of((-5i64..SPAN, 1i64..SPAN)), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut e = open(dir.path());
        let mut data: BTreeMap<(u8, i64), i64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Write(points) => {
                    write(&e, &points);
                    for (h, t, v) in points {
                        data.insert((h, t), v);
                    }
                }
                Op::Flush => e.flush().unwrap(),
                Op::Reopen => {
                    e.close().unwrap();
                    drop(e);
                    e = open(dir.path());
                }
                Op::Delete(h, lo, hi) => {
                    let pred = match h {
                        Some(h) => TagPredicate::Eq("host".into(), format!("h{h}")),
                        None => TagPredicate::All,
                    };
                    e.delete("db", Some("m"), &pred, TimeRange::new(T0 + lo * S, T0 + hi * S)).unwrap();
                    data.retain(|&(x, t), _| !(h.is_none_or(|h| h == x) && t >= lo && t < hi));
                }
            }
            for r in &ranges {
                check(&e, &data, r.map(|(lo, len)| (lo, lo + len)))?;
            }
        }
    }
}
