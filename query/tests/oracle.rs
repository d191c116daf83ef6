//! Property tests against a naive oracle: random data (late and duplicate points, part in
//! segments and part in memtables) and random aggregate queries; every aggregate, fill mode
//! and transformation is recomputed here from the plain list of points and compared with
//! a relative tolerance of 1e-9. Also: arbitrary query text never panics the executor.

// The oracle indexes rows by position on purpose: it mirrors the definition, not the code.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_engine::{Engine, EngineOptions, FieldValue, WriteBatch};
use strata_query::{execute, parse_query, QueryContext, QueryLimits, Value};

const S: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * S;
const SPAN: i64 = 300; // seconds of data

/// (host, time offset s, v, n)
type Pt = (u8, i64, f64, i64);

fn load(points: &[Pt], flush_at: usize) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    engine.create_database("db").unwrap();
    for (k, part) in [&points[..flush_at], &points[flush_at..]].into_iter().enumerate() {
        let mut b = WriteBatch::new();
        for &(h, t, v, n) in part {
            let mut p = b.point("m");
            p.tag("host", &format!("h{h}"));
            p.field("v", FieldValue::F64(v));
            p.field("n", FieldValue::I64(n));
            p.finish(T0 + t * S).unwrap();
        }
        engine.write("db", &b).unwrap();
        if k == 0 {
            engine.flush().unwrap();
        }
    }
    (dir, engine)
}

/// Last write wins per (host, t).
fn dedup(points: &[Pt]) -> BTreeMap<(u8, i64), (f64, i64)> {
    let mut m = BTreeMap::new();
    for &(h, t, v, n) in points {
        m.insert((h, t), (v, n));
    }
    m
}

#[derive(Debug, Clone)]
struct Q {
    agg: &'static str,
    field: &'static str,
    pct: i64,
    interval: i64,
    lo: i64,
    hi: i64,
    host: Option<u8>,
    by_host: bool,
    fill: &'static str,
    transform: Option<&'static str>,
}

impl Q {
    fn text(&self) -> String {
        let arg = if self.agg == "percentile" {
            format!("percentile({}, {})", self.field, self.pct)
        } else if self.agg == "count_distinct" {
            format!("count(distinct({}))", self.field)
        } else if self.agg == "integral" && self.pct % 2 == 1 {
            format!("integral({}, 2s)", self.field)
        } else {
            format!("{}({})", self.agg, self.field)
        };
        let sel = match self.transform {
            Some("moving_average") => format!("moving_average({arg}, 2)"),
            Some(t) => format!("{t}({arg})"),
            None => arg,
        };
        let mut q = format!(
            "SELECT {sel} FROM m WHERE time >= {}s AND time < {}s",
            1_700_000_000 + self.lo,
            1_700_000_000 + self.hi
        );
        if let Some(h) = self.host {
            q += &format!(" AND host = 'h{h}'");
        }
        q += &format!(" GROUP BY time({}s)", self.interval);
        if self.by_host {
            q += ", host";
        }
        q += &format!(" fill({})", self.fill);
        q
    }
}

fn arb_query() -> impl Strategy<Value = Q> {
    (
        prop::sample::select(vec![
            "count",
            "sum",
            "mean",
            "median",
            "mode",
            "spread",
            "stddev",
            "min",
            "max",
            "first",
            "last",
            "percentile",
            "count_distinct",
            "integral",
        ]),
        prop::sample::select(vec!["v", "n"]),
        0i64..=100,
        prop::sample::select(vec![7i64, 10, 30, 60, 1000]),
        -20i64..SPAN,
        1i64..SPAN + 20,
        prop::option::of(0u8..3),
        any::<bool>(),
        prop::sample::select(vec!["null", "none", "previous", "linear", "0"]),
        prop::option::of(prop::sample::select(vec![
            "derivative",
            "difference",
            "cumulative_sum",
            "moving_average",
        ])),
    )
        .prop_map(|(agg, field, pct, interval, lo, len, host, by_host, fill, transform)| Q {
            agg,
            field,
            pct,
            interval,
            lo,
            hi: lo + len,
            host,
            by_host,
            fill,
            transform,
        })
}

/// The oracle's value of one aggregate over `vals` (time-sorted (t, x) pairs), as f64, and
/// whether the aggregate is defined.
fn oracle_agg(q: &Q, vals: &[(i64, f64)]) -> Option<f64> {
    if vals.is_empty() {
        return None;
    }
    let mut xs: Vec<f64> = vals.iter().map(|p| p.1).collect();
    let n = xs.len();
    Some(match q.agg {
        "count" => n as f64,
        "sum" => xs.iter().sum(),
        "mean" => xs.iter().sum::<f64>() / n as f64,
        "spread" => xs.iter().cloned().fold(f64::MIN, f64::max) - xs.iter().cloned().fold(f64::MAX, f64::min),
        "min" => xs.iter().cloned().fold(f64::MAX, f64::min),
        "max" => xs.iter().cloned().fold(f64::MIN, f64::max),
        // Equal timestamps (two series in one group): InfluxDB keeps the larger value.
        "first" => vals.iter().filter(|p| p.0 == vals[0].0).map(|p| p.1).fold(f64::MIN, f64::max),
        "last" => vals.iter().filter(|p| p.0 == vals[n - 1].0).map(|p| p.1).fold(f64::MIN, f64::max),
        "median" => {
            xs.sort_by(f64::total_cmp);
            if n % 2 == 1 {
                xs[n / 2]
            } else {
                (xs[n / 2 - 1] + xs[n / 2]) / 2.0
            }
        }
        "stddev" => {
            if n < 2 {
                return None;
            }
            let m = xs.iter().sum::<f64>() / n as f64;
            (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64).sqrt()
        }
        "percentile" => {
            xs.sort_by(f64::total_cmp);
            let i = (n as f64 * q.pct as f64 / 100.0 + 0.5).floor() as i64 - 1;
            if i < 0 || i as usize >= n {
                return None;
            }
            xs[i as usize]
        }
        "count_distinct" => {
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            xs.len() as f64
        }
        "mode" => {
            xs.sort_by(f64::total_cmp);
            let (mut best, mut best_len, mut i) = (xs[0], 0, 0);
            while i < n {
                let mut j = i;
                while j < n && xs[j] == xs[i] {
                    j += 1;
                }
                if j - i > best_len {
                    best = xs[i];
                    best_len = j - i;
                }
                i = j;
            }
            best
        }
        _ => unreachable!(),
    })
}

/// integral() per bucket (bucket start s -> area), InfluxDB's rule restated pairwise: each
/// pair of consecutive points (one per timestamp, the larger value) adds its trapezoid to
/// its bucket; a pair spanning buckets is cut at the first bucket's end, where the value is
/// interpolated, and that bucket is closed (reported). The last point's bucket is reported
/// unless that point sits at the bucket's start.
fn oracle_integral(q: &Q, pts: &[(i64, f64)], bstart: impl Fn(i64) -> i64) -> BTreeMap<i64, f64> {
    let unit = if q.pct % 2 == 1 { 2.0 } else { 1.0 };
    let mut one: Vec<(i64, f64)> = Vec::new();
    for &(t, v) in pts {
        match one.last_mut() {
            Some(last) if last.0 == t => last.1 = last.1.max(v),
            _ => one.push((t, v)),
        }
    }
    let trap = |a: (f64, f64), b: (f64, f64)| 0.5 * (a.1 + b.1) * (b.0 - a.0) / unit;
    let mut area: BTreeMap<i64, f64> = BTreeMap::new();
    let mut reported: Vec<i64> = Vec::new();
    for w in one.windows(2) {
        let (a, b) = ((w[0].0 as f64, w[0].1), (w[1].0 as f64, w[1].1));
        let (ba, bb) = (bstart(w[0].0), bstart(w[1].0));
        if ba == bb {
            *area.entry(ba).or_default() += trap(a, b);
        } else {
            // Absolute bucket end, back to the points' offset seconds.
            let end = (ba + q.interval - 1_700_000_000) as f64;
            let at_end = (end, a.1 + (b.1 - a.1) * (end - a.0) / (b.0 - a.0));
            *area.entry(ba).or_default() += trap(a, at_end);
            *area.entry(bb).or_default() += trap(at_end, b);
            reported.push(ba);
        }
    }
    if let Some(&(t, _)) = one.last() {
        if bstart(t) != 1_700_000_000 + t {
            reported.push(bstart(t));
        }
    }
    reported.into_iter().map(|b| (b, area.get(&b).copied().unwrap_or(0.0))).collect()
}

/// Expected output: group key -> rows (time s offset, value or None).
fn oracle(q: &Q, data: &BTreeMap<(u8, i64), (f64, i64)>) -> BTreeMap<String, Vec<(i64, Option<f64>)>> {
    let mut groups: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (&(h, t), &(v, n)) in data {
        if t < q.lo || t >= q.hi || q.host.is_some_and(|x| x != h) {
            continue;
        }
        let key = if q.by_host { format!("h{h}") } else { String::new() };
        groups.entry(key).or_default().push((t, if q.field == "v" { v } else { n as f64 }));
    }
    let abs = |t: i64| 1_700_000_000 + t;
    let bstart = |t: i64| abs(t) - abs(t).rem_euclid(q.interval);
    let mut out = BTreeMap::new();
    for (key, mut pts) in groups {
        pts.sort_by_key(|p| p.0);
        let (first, last) = (bstart(q.lo), bstart(q.hi - 1));
        let mut rows: Vec<(i64, Option<f64>, bool)> = Vec::new();
        let integrals = (q.agg == "integral").then(|| oracle_integral(q, &pts, bstart));
        let mut b = first;
        while b <= last {
            let in_b: Vec<(i64, f64)> = pts.iter().copied().filter(|p| bstart(p.0) == b).collect();
            let mut v = match &integrals {
                Some(m) => m.get(&b).copied(),
                None => oracle_agg(q, &in_b),
            };
            // A bucket whose aggregate is undefined (no points, a one-point stddev, an
            // out-of-range percentile) yields no point: fill(none) drops it.
            let present = v.is_some();
            if v.is_none() && matches!(q.agg, "count" | "count_distinct") && matches!(q.fill, "null" | "none")
            {
                v = Some(0.0);
            }
            rows.push((b, v, present));
            b += q.interval;
        }
        // Fill.
        match q.fill {
            "none" => rows.retain(|r| r.2),
            "0" => rows.iter_mut().filter(|r| r.1.is_none()).for_each(|r| r.1 = Some(0.0)),
            "previous" => {
                let mut prev = None;
                for r in rows.iter_mut() {
                    if r.1.is_some() {
                        prev = r.1;
                    } else {
                        r.1 = prev;
                    }
                }
            }
            "linear" => {
                let known: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].1.is_some()).collect();
                for w in known.windows(2) {
                    let (a, c) = (w[0], w[1]);
                    let (va, vc) = (rows[a].1.unwrap(), rows[c].1.unwrap());
                    for i in a + 1..c {
                        let int = matches!(q.agg, "count" | "count_distinct")
                            || (q.field == "n"
                                && !matches!(q.agg, "mean" | "median" | "stddev" | "integral"));
                        rows[i].1 = Some(if int {
                            (va as i64 + (vc as i64 - va as i64) * (i - a) as i64 / (c - a) as i64) as f64
                        } else {
                            va + (vc - va) * (i - a) as f64 / (c - a) as f64
                        });
                    }
                }
            }
            _ => {}
        }
        let mut seq: Vec<(i64, Option<f64>)> = rows.into_iter().map(|r| (r.0, r.1)).collect();
        if let Some(t) = q.transform {
            let known: Vec<(i64, f64)> = seq.iter().filter_map(|(t, v)| v.map(|v| (*t, v))).collect();
            seq = match t {
                "derivative" => known
                    .windows(2)
                    .map(|w| {
                        (w[1].0, Some((w[1].1 - w[0].1) / ((w[1].0 - w[0].0) as f64 / q.interval as f64)))
                    })
                    .collect(),
                "difference" => known.windows(2).map(|w| (w[1].0, Some(w[1].1 - w[0].1))).collect(),
                "moving_average" => {
                    known.windows(2).map(|w| (w[1].0, Some((w[0].1 + w[1].1) / 2.0))).collect()
                }
                _ => {
                    let mut s = 0.0;
                    known
                        .iter()
                        .map(|(t, v)| {
                            s += v;
                            (*t, Some(s))
                        })
                        .collect()
                }
            };
        }
        if !seq.is_empty() {
            out.insert(key, seq);
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn arb_points() -> impl Strategy<Value = (Vec<Pt>, usize)> {
    prop::collection::vec(
        (
            0u8..3,
            0i64..SPAN,
            prop::sample::select(vec![0.5f64, 1.0, 2.25, -3.0, 7.5, 100.0, 1e-3]),
            -5i64..50,
        ),
        1..120,
    )
    .prop_flat_map(|pts| {
        let n = pts.len();
        (Just(pts), 0..=n)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_match_the_oracle((points, flush_at) in arb_points(), queries in prop::collection::vec(arb_query(), 1..6)) {
        let (_dir, engine) = load(&points, flush_at);
        let data = dedup(&points);
        for q in queries {
            let text = q.text();
            let stmts = parse_query(&text).unwrap();
            let expected = oracle(&q, &data);
            // On the calling thread, split over threads by series (merged accumulators), and
            // split by time (contiguous runs of windows; only for GROUP BY time).
            for (parallel_min_series, parallel_min_span_ns) in [(usize::MAX, i64::MAX), (1, i64::MAX), (usize::MAX, 0)] {
            let mut ctx = QueryContext::new(&engine, Some("db"), T0 + 10_000 * S, QueryLimits::default());
            ctx.parallel_min_series = parallel_min_series;
            ctx.parallel_min_span_ns = parallel_min_span_ns;
            let res = execute(&ctx, &stmts);
            prop_assert!(res[0].error.is_none(), "{text}: {:?}", res[0].error);
            let mut got: BTreeMap<String, Vec<(i64, Option<f64>)>> = BTreeMap::new();
            for s in &res[0].series {
                let key = s.tags.as_ref().and_then(|t| t.first()).map(|t| t.1.clone()).unwrap_or_default();
                let rows = s.values.iter().map(|r| {
                    let Value::Time(t) = r[0] else { panic!("time column") };
                    (t / S, r[1].as_f64())
                }).collect();
                got.insert(key, rows);
            }
            prop_assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{}", text);
            for (k, exp) in &expected {
                let g = &got[k];
                prop_assert_eq!(g.len(), exp.len(), "{} group {:?}: got {:?} expected {:?}", text, k, g, exp);
                for (a, b) in g.iter().zip(exp) {
                    prop_assert_eq!(a.0, b.0, "{} times: got {:?} expected {:?}", text, g, exp);
                    match (a.1, b.1) {
                        (Some(x), Some(y)) => prop_assert!(close(x, y), "{}: {} vs {} (got {:?} expected {:?})", text, x, y, g, exp),
                        (x, y) => prop_assert_eq!(x, y, "{}: got {:?} expected {:?}", text, g, exp),
                    }
                }
            }
            }
        }
    }

    /// Whatever parses must execute without panicking (errors are fine).
    #[test]
    fn arbitrary_text_never_panics_the_executor(text in "\\PC{0,80}", prefix in prop::sample::select(vec![
        "", "SELECT ", "SELECT mean(v) FROM m WHERE ", "SELECT * FROM m GROUP BY ", "SHOW TAG VALUES WITH KEY = ",
    ])) {
        let (_dir, engine) = load(&[(0, 1, 1.0, 1), (1, 2, 2.0, 2)], 1);
        if let Ok(stmts) = parse_query(&format!("{prefix}{text}")) {
            let ctx = QueryContext::new(&engine, Some("db"), T0, QueryLimits::default());
            let _ = execute(&ctx, &stmts);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// distinct(n): per bucket, each value once, ordered by its first occurrence (then value).
    #[test]
    fn distinct_matches_the_oracle(
        (points, flush_at) in arb_points(),
        interval in prop::sample::select(vec![7i64, 30, 1000]),
        lo in -20i64..SPAN,
        len in 1i64..SPAN + 20,
        by_host in any::<bool>(),
        grouped in any::<bool>(),
    ) {
        let (_dir, engine) = load(&points, flush_at);
        let data = dedup(&points);
        let hi = lo + len;
        let mut text = format!(
            "SELECT distinct(n) FROM m WHERE time >= {}s AND time < {}s",
            1_700_000_000 + lo,
            1_700_000_000 + hi
        );
        let mut dims = Vec::new();
        if grouped {
            dims.push(format!("time({interval}s)"));
        }
        if by_host {
            dims.push("host".to_owned());
        }
        if !dims.is_empty() {
            text += &format!(" GROUP BY {}", dims.join(", "));
        }
        text += " fill(none)";
        // Oracle: group -> bucket -> value -> first time.
        let mut exp: BTreeMap<String, BTreeMap<i64, BTreeMap<i64, i64>>> = BTreeMap::new();
        for (&(h, t), &(_, n)) in &data {
            if t < lo || t >= hi {
                continue;
            }
            let key = if by_host { format!("h{h}") } else { String::new() };
            let abs = 1_700_000_000 + t;
            let b = if grouped { abs - abs.rem_euclid(interval) } else { 1_700_000_000 + lo };
            let first = exp.entry(key).or_default().entry(b).or_default().entry(n).or_insert(t);
            *first = (*first).min(t);
        }
        let expected: BTreeMap<String, Vec<(i64, i64)>> = exp
            .into_iter()
            .map(|(k, buckets)| {
                let mut rows = Vec::new();
                for (b, vals) in buckets {
                    let mut v: Vec<(i64, i64)> = vals.into_iter().map(|(n, t)| (t, n)).collect();
                    v.sort();
                    rows.extend(v.into_iter().map(|(_, n)| (b, n)));
                }
                (k, rows)
            })
            .collect();
        let stmts = parse_query(&text).unwrap();
        let ctx = QueryContext::new(&engine, Some("db"), T0 + 10_000 * S, QueryLimits::default());
        let res = execute(&ctx, &stmts);
        prop_assert!(res[0].error.is_none(), "{text}: {:?}", res[0].error);
        let mut got: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        for s in &res[0].series {
            prop_assert_eq!(&s.columns, &vec!["time".to_owned(), "distinct".to_owned()]);
            let key = s.tags.as_ref().and_then(|t| t.first()).map(|t| t.1.clone()).unwrap_or_default();
            let rows = s.values.iter().map(|r| {
                let (Value::Time(t), Value::Integer(n)) = (&r[0], &r[1]) else { panic!("row {r:?}") };
                (t / S, *n)
            }).collect();
            got.insert(key, rows);
        }
        prop_assert_eq!(got, expected, "{}", text);
    }
}

mod tz {
    //! `tz('Europe/Berlin')` against an oracle that finds each point's local day with jiff's
    //! civil-time arithmetic (a different road from the executor's window rule).
    use super::*;
    use jiff::civil::Date;
    use jiff::tz::TimeZone;
    use jiff::Timestamp;

    const MIN: i64 = 60 * S;

    /// Days around the 2024 spring-forward and fall-back changes in Berlin (UTC midnight).
    const ANCHORS: [&str; 2] = ["2024-03-28T00:00:00Z", "2024-10-24T00:00:00Z"];
    /// Minutes of data after the anchor: 6 days.
    const SPAN_MIN: i64 = 6 * 24 * 60;

    fn anchor(i: usize) -> i64 {
        strata_query::time::parse_time(ANCHORS[i]).unwrap()
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn ts(ns: i64) -> Timestamp {
        Timestamp::from_nanosecond(ns as i128).unwrap()
    }

    /// The bucket start holding `t`, and the next bucket's start.
    fn bucket(t: i64, interval_min: i64) -> (i64, i64) {
        if interval_min == 24 * 60 {
            let tz = berlin();
            let day: Date = ts(t).to_zoned(tz.clone()).date();
            let at = |d: Date| d.to_zoned(tz.clone()).unwrap().timestamp().as_nanosecond() as i64;
            (at(day), at(day.tomorrow().unwrap()))
        } else {
            // Berlin's offsets are whole hours: shorter windows are plain UTC ones.
            let d = interval_min * MIN;
            let b = t - t.rem_euclid(d);
            (b, b + d)
        }
    }

    fn format(t: i64) -> String {
        ts(t).to_zoned(berlin()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn local_days_match_the_oracle(
            which in 0usize..2,
            mins in prop::collection::vec((0u8..2, 0i64..SPAN_MIN), 1..80),
            flush_at in 0usize..80,
            lo in 0i64..SPAN_MIN,
            len in 1i64..SPAN_MIN,
            interval_min in prop::sample::select(vec![30i64, 60, 24 * 60]),
            by_host in any::<bool>(),
        ) {
            let a = anchor(which);
            let dir = tempfile::tempdir().unwrap();
            let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
            engine.create_database("db").unwrap();
            let flush_at = flush_at.min(mins.len());
            for (k, part) in [&mins[..flush_at], &mins[flush_at..]].into_iter().enumerate() {
                let mut b = WriteBatch::new();
                for &(h, m) in part {
                    let mut p = b.point("m");
                    p.tag("host", &format!("h{h}"));
                    p.field("v", FieldValue::F64(m as f64));
                    p.finish(a + m * MIN).unwrap();
                }
                engine.write("db", &b).unwrap();
                if k == 0 {
                    engine.flush().unwrap();
                }
            }
            let (lo, hi) = (a + lo * MIN, a + (lo + len) * MIN);
            let text = format!(
                "SELECT count(v), sum(v) FROM m WHERE time >= {lo} AND time < {hi} GROUP BY time({interval_min}m){} fill(0) tz('Europe/Berlin')",
                if by_host { ", host" } else { "" }
            );
            // Oracle: last write wins per (host, minute).
            let mut data: BTreeMap<(u8, i64), f64> = BTreeMap::new();
            for &(h, m) in &mins {
                data.insert((h, a + m * MIN), m as f64);
            }
            let mut groups: BTreeMap<String, BTreeMap<i64, (i64, f64)>> = BTreeMap::new();
            for (&(h, t), &v) in &data {
                if t < lo || t >= hi {
                    continue;
                }
                let key = if by_host { format!("h{h}") } else { String::new() };
                let e = groups.entry(key).or_default().entry(bucket(t, interval_min).0).or_default();
                e.0 += 1;
                e.1 += v;
            }
            let mut expected: BTreeMap<String, Vec<(String, i64, f64)>> = BTreeMap::new();
            for (key, buckets) in groups {
                let mut rows = Vec::new();
                let mut b = bucket(lo, interval_min).0;
                let last = bucket(hi - 1, interval_min).0;
                while b <= last {
                    let (c, s) = buckets.get(&b).copied().unwrap_or((0, 0.0));
                    rows.push((format(b), c, s));
                    b = bucket(b, interval_min).1;
                }
                expected.insert(key, rows);
            }

            let stmts = parse_query(&text).unwrap();
            let ctx = QueryContext::new(&engine, Some("db"), a + 30 * 24 * 60 * MIN, QueryLimits::default());
            let res = execute(&ctx, &stmts);
            prop_assert!(res[0].error.is_none(), "{text}: {:?}", res[0].error);
            let mut got: BTreeMap<String, Vec<(String, i64, f64)>> = BTreeMap::new();
            for s in &res[0].series {
                let key = s.tags.as_ref().and_then(|t| t.first()).map(|t| t.1.clone()).unwrap_or_default();
                let rows = s.values.iter().map(|r| {
                    let Value::ZonedTime { ns, offset_secs } = r[0] else { panic!("time column is zoned: {r:?}") };
                    let mut t = String::new();
                    strata_query::time::write_time_offset(&mut t, ns, offset_secs);
                    (t, r[1].as_f64().unwrap() as i64, r[2].as_f64().unwrap())
                }).collect();
                got.insert(key, rows);
            }
            prop_assert_eq!(got, expected, "{}", text);
        }
    }
}
