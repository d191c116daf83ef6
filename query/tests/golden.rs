//! Golden tests: fixed data, exact InfluxDB 1.x JSON for the query shapes clients send.
//! The expected texts were derived by hand from InfluxDB 1.x semantics (column naming,
//! bucket start times, fill modes, GROUP BY tags, selector times).

use strata_engine::{Engine, EngineOptions, FieldValue, WriteBatch};
use strata_query::encode::{encode_csv, encode_json, encode_json_chunks, ChunkEncoder, EncodeOptions};
use strata_query::{execute, execute_statement_each, parse_query, Epoch, QueryContext, QueryLimits};

const S: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * S; // 2023-11-14T22:13:20Z
const NOW: i64 = T0 + 3600 * S;

/// cpu: hosts a and b, region eu; `usage` float every 10 s for a minute, `count` integer,
/// `status` string. mem: one point.
fn fixture() -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    let mut b = WriteBatch::new();
    for i in 0..6i64 {
        for (h, host) in ["a", "b"].iter().enumerate() {
            let mut p = b.point("cpu");
            p.tag("host", host).tag("region", "eu");
            p.field("usage", FieldValue::F64(i as f64 + h as f64 * 10.0 + 0.5));
            p.field("count", FieldValue::I64(i * 2 + h as i64));
            if i % 2 == 0 {
                p.field("status", FieldValue::Str(if i == 4 { "hot" } else { "ok" }));
            }
            p.finish(T0 + i * 10 * S).unwrap();
        }
    }
    {
        let mut p = b.point("mem");
        p.tag("host", "a");
        p.field("free", FieldValue::I64(42));
        p.finish(T0).unwrap();
    }
    engine.create_database("db").unwrap();
    engine.write("db", &b).unwrap();
    (dir, engine)
}

fn run(engine: &Engine, q: &str) -> String {
    run_with(engine, q, EncodeOptions::default())
}

fn run_with(engine: &Engine, q: &str, opts: EncodeOptions) -> String {
    let stmts = parse_query(q).unwrap();
    let ctx = QueryContext::new(engine, Some("db"), NOW, QueryLimits::default());
    encode_json(&execute(&ctx, &stmts), opts).trim_end().to_owned()
}

#[test]
fn raw_select_with_tag_filter() {
    let (_d, e) = fixture();
    assert_eq!(
        run(&e, "SELECT usage FROM cpu WHERE host = 'a' AND time >= 1700000000s AND time < 1700000020s"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","usage"],"values":[["2023-11-14T22:13:20Z",0.5],["2023-11-14T22:13:30Z",1.5]]}]}]}"#
    );
}

#[test]
fn select_star_returns_tags_and_fields_sorted() {
    let (_d, e) = fixture();
    assert_eq!(
        run(&e, "SELECT * FROM cpu WHERE host = 'b' LIMIT 2"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","count","host","region","status","usage"],"values":[["2023-11-14T22:13:20Z",1,"b","eu","ok",10.5],["2023-11-14T22:13:30Z",3,"b","eu",null,11.5]]}]}]}"#
    );
}

#[test]
fn aggregates_without_group_by_time_use_range_start() {
    let (_d, e) = fixture();
    // Unbounded: time is 1970; mean of a: 0.5..5.5 = 3, b: 13; together 8.
    assert_eq!(
        run(&e, "SELECT mean(usage), count(usage), sum(count) FROM cpu"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","mean","count","sum"],"values":[["1970-01-01T00:00:00Z",8,12,66]]}]}]}"#
    );
    // A single selector reports its point's time.
    assert_eq!(
        run(&e, "SELECT max(usage) FROM cpu WHERE host = 'a'"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","max"],"values":[["2023-11-14T22:14:10Z",5.5]]}]}]}"#
    );
}

#[test]
fn group_by_time_and_tag_with_fill() {
    let (_d, e) = fixture();
    let q = "SELECT mean(usage) FROM cpu WHERE time >= 1700000000s AND time < 1700000080s GROUP BY time(20s), host fill(none)";
    assert_eq!(
        run(&e, q),
        concat!(
            r#"{"results":[{"statement_id":0,"series":["#,
            r#"{"name":"cpu","tags":{"host":"a"},"columns":["time","mean"],"values":[["2023-11-14T22:13:20Z",1],["2023-11-14T22:13:40Z",3],["2023-11-14T22:14:00Z",5]]},"#,
            r#"{"name":"cpu","tags":{"host":"b"},"columns":["time","mean"],"values":[["2023-11-14T22:13:20Z",11],["2023-11-14T22:13:40Z",13],["2023-11-14T22:14:00Z",15]]}"#,
            r#"]}]}"#
        )
    );
    let q = "SELECT mean(usage), count(usage) FROM cpu WHERE host = 'a' AND time >= 1700000000s AND time < 1700000080s GROUP BY time(20s) fill(null)";
    assert_eq!(
        run(&e, q),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","mean","count"],"values":[["2023-11-14T22:13:20Z",1,2],["2023-11-14T22:13:40Z",3,2],["2023-11-14T22:14:00Z",5,2],["2023-11-14T22:14:20Z",null,0]]}]}]}"#
    );
    let q = "SELECT max(usage) FROM cpu WHERE host = 'a' AND time >= 1700000000s AND time < 1700000080s GROUP BY time(20s) fill(previous)";
    assert!(
        run(&e, q).ends_with(r#"["2023-11-14T22:14:00Z",5.5],["2023-11-14T22:14:20Z",5.5]]}]}]}"#),
        "{}",
        run(&e, q)
    );
    let q = "SELECT max(usage) FROM cpu WHERE host = 'a' AND time >= 1700000000s AND time < 1700000080s GROUP BY time(20s) fill(-1)";
    assert!(run(&e, q).ends_with(r#"["2023-11-14T22:14:20Z",-1]]}]}]}"#), "{}", run(&e, q));
}

#[test]
fn grafana_shape_with_ms_time_filter_and_epoch() {
    let (_d, e) = fixture();
    let q = "SELECT mean(\"usage\") FROM \"cpu\" WHERE (\"host\" =~ /^a$/) AND time >= 1700000000000ms and time <= 1700000059999ms GROUP BY time(30s) fill(null)";
    assert_eq!(
        run_with(&e, q, EncodeOptions { epoch: Epoch::Milliseconds, pretty: false }),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","mean"],"values":[[1699999980000,0.5],[1700000010000,2.5],[1700000040000,5]]}]}]}"#
    );
}

#[test]
fn transformations_and_aliases() {
    let (_d, e) = fixture();
    assert_eq!(
        run(&e, "SELECT derivative(usage, 10s) AS d, difference(count) FROM cpu WHERE host = 'a' LIMIT 2"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","d","difference"],"values":[["2023-11-14T22:13:30Z",1,2],["2023-11-14T22:13:40Z",1,2]]}]}]}"#
    );
    assert_eq!(
        run(&e, "SELECT usage * 2 + 1, usage FROM cpu WHERE host = 'a' ORDER BY time DESC LIMIT 1"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","usage","usage_1"],"values":[["2023-11-14T22:14:10Z",12,5.5]]}]}]}"#
    );
}

#[test]
fn meta_statements() {
    let (_d, e) = fixture();
    assert_eq!(
        run(&e, "SHOW DATABASES; SHOW MEASUREMENTS; SHOW TAG KEYS FROM cpu"),
        concat!(
            r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["db"]]}]},"#,
            r#"{"statement_id":1,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["mem"]]}]},"#,
            r#"{"statement_id":2,"series":[{"name":"cpu","columns":["tagKey"],"values":[["host"],["region"]]}]}]}"#
        )
    );
    assert_eq!(
        run(&e, "SHOW TAG VALUES FROM cpu WITH KEY = \"host\""),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","a"],["host","b"]]}]}]}"#
    );
    assert_eq!(
        run(&e, "SHOW FIELD KEYS FROM cpu"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["fieldKey","fieldType"],"values":[["count","integer"],["status","string"],["usage","float"]]}]}]}"#
    );
    assert_eq!(
        run(&e, "SHOW SERIES WHERE host = 'a'"),
        r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["cpu,host=a,region=eu"],["mem,host=a"]]}]}]}"#
    );
    assert_eq!(
        run(&e, "SHOW RETENTION POLICIES"),
        r#"{"results":[{"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","24h0m0s",1,true]]}]}]}"#
    );
}

#[test]
fn errors_go_into_results_and_stop_later_statements() {
    let (_d, e) = fixture();
    assert_eq!(
        run(&e, "SELECT usage FROM nope; SELECT mean(usage), usage FROM cpu; SHOW DATABASES"),
        r#"{"results":[{"statement_id":0},{"statement_id":1,"error":"mixing aggregate and non-aggregate queries is not supported"}]}"#
    );
    let stmts = parse_query("SELECT usage FROM cpu").unwrap();
    let ctx = QueryContext::new(&e, Some("nodb"), NOW, QueryLimits::default());
    assert_eq!(
        encode_json(&execute(&ctx, &stmts), EncodeOptions::default()).trim_end(),
        r#"{"results":[{"statement_id":0,"error":"database not found: nodb"}]}"#
    );
}

#[test]
fn limits_give_clear_errors() {
    let (_d, e) = fixture();
    let stmts = parse_query("SELECT usage FROM cpu").unwrap();
    let limits = QueryLimits { max_series: 1, ..QueryLimits::default() };
    let ctx = QueryContext::new(&e, Some("db"), NOW, limits);
    let r = execute(&ctx, &stmts);
    assert_eq!(r[0].error.as_deref(), Some("max-select-series limit exceeded: (2/1)"));
    let limits = QueryLimits { max_points_returned: 3, ..QueryLimits::default() };
    let ctx = QueryContext::new(&e, Some("db"), NOW, limits);
    let r = execute(&ctx, &stmts);
    assert_eq!(r[0].error.as_deref(), Some("max-select-point limit exceeded: more than 3 points returned"));
    let limits = QueryLimits { max_points_scanned: 5, ..QueryLimits::default() };
    let ctx = QueryContext::new(&e, Some("db"), NOW, limits);
    assert!(execute(&ctx, &stmts)[0]
        .error
        .as_deref()
        .unwrap()
        .starts_with("max-select-point limit exceeded: (6/5)"));
    let stmts = parse_query("SELECT count(usage) FROM cpu WHERE time >= 0 GROUP BY time(1s)").unwrap();
    let ctx = QueryContext::new(&e, Some("db"), NOW, QueryLimits::default());
    assert!(execute(&ctx, &stmts)[0]
        .error
        .as_deref()
        .unwrap()
        .starts_with("max-select-buckets limit exceeded"));
    let stmts = parse_query("SELECT median(usage) FROM cpu").unwrap();
    let limits = QueryLimits { max_memory_bytes: 64, ..QueryLimits::default() };
    let ctx = QueryContext::new(&e, Some("db"), NOW, limits);
    assert_eq!(
        execute(&ctx, &stmts)[0].error.as_deref(),
        Some("query memory limit exceeded: more than 64 bytes (raise query.max_memory or narrow the query)")
    );
    let limits = QueryLimits { timeout: Some(std::time::Duration::ZERO), ..QueryLimits::default() };
    let ctx = QueryContext::new(&e, Some("db"), NOW, limits);
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert_eq!(
        execute(&ctx, &stmts)[0].error.as_deref(),
        Some("query timeout of 0 ms exceeded (raise query.timeout or narrow the query)")
    );
}

#[test]
fn csv_chunked_and_tz() {
    let (_d, e) = fixture();
    let stmts = parse_query("SELECT count FROM cpu WHERE host = 'a' LIMIT 2").unwrap();
    let ctx = QueryContext::new(&e, Some("db"), NOW, QueryLimits::default());
    let r = execute(&ctx, &stmts);
    assert_eq!(
        encode_csv(&r, EncodeOptions::default()),
        "name,tags,time,count\ncpu,,1700000000000000000,0\ncpu,,1700000010000000000,2\n"
    );
    let lines = encode_json_chunks(&r, EncodeOptions::default(), 1);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains(r#""partial":true}],"partial":true}"#), "{}", lines[0]);
    assert!(!lines[1].contains("partial"), "{}", lines[1]);
    if std::path::Path::new("/usr/share/zoneinfo/Europe/Paris").exists() {
        assert_eq!(
            run(&e, "SELECT count FROM cpu WHERE host = 'a' LIMIT 1 tz('Europe/Paris')"),
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","count"],"values":[["2023-11-14T23:13:20+01:00",0]]}]}]}"#
        );
    }
    assert_eq!(
        run(&e, "SELECT count FROM cpu tz('Mars/Olympus')"),
        r#"{"results":[{"statement_id":0,"error":"invalid tz: unknown time zone \"Mars/Olympus\""}]}"#
    );
}

#[test]
fn create_drop_database_and_delete() {
    let (_d, e) = fixture();
    run(&e, "CREATE DATABASE other WITH DURATION 1d NAME short");
    assert!(e.database_exists("other"));
    assert!(run(&e, "SHOW RETENTION POLICIES ON other").contains(r#"["short","24h0m0s""#));
    run(&e, "DROP DATABASE other");
    assert!(!e.database_exists("other"));
    run(&e, "DELETE FROM cpu WHERE host = 'a' AND time < 1700000030s");
    assert_eq!(
        run(&e, "SELECT count(usage) FROM cpu WHERE host = 'a'"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","count"],"values":[["1970-01-01T00:00:00Z",3]]}]}]}"#
    );
    run(&e, "DROP SERIES FROM cpu WHERE host = 'b'");
    assert_eq!(
        run(&e, "SHOW SERIES FROM cpu"),
        r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["cpu,host=a,region=eu"]]}]}]}"#
    );
    run(&e, "DROP MEASUREMENT mem");
    assert_eq!(
        run(&e, "SHOW MEASUREMENTS"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"]]}]}]}"#
    );
}

/// A continuous query is a downsampling rule: listed by SHOW CONTINUOUS QUERIES, its rollups
/// read like any measurement, and it can be dropped. Shapes a rule cannot keep are refused.
#[test]
fn continuous_queries_are_downsampling_rules() {
    let (_d, e) = fixture();
    e.create_database("db_1y").unwrap();
    assert_eq!(
        run(&e, "CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(*), max(usage) INTO db_1y..cpu_30s FROM cpu GROUP BY time(30s), * END"),
        r#"{"results":[{"statement_id":0}]}"#
    );
    assert_eq!(
        run(&e, "SHOW CONTINUOUS QUERIES"),
        concat!(
            r#"{"results":[{"statement_id":0,"series":[{"name":"db","columns":["name","query"],"values":[["cq","CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT count(*), sum(*), min(*), max(*), mean(*) INTO db_1y..cpu_30s FROM cpu GROUP BY time(30s), * END"]]},"#,
            r#"{"name":"db_1y","columns":["name","query"]}]}]}"#
        )
    );
    e.run_downsampling().unwrap();
    // Host a: usage 0.5..5.5 every 10 s from T0 = 22:13:20: buckets {0.5}, {1.5,2.5,3.5}, {4.5,5.5}.
    let stmts =
        parse_query("SELECT usage_mean, usage_max, usage_count FROM cpu_30s WHERE host = 'a'").unwrap();
    let ctx = QueryContext::new(&e, Some("db_1y"), NOW, QueryLimits::default());
    assert_eq!(
        encode_json(&execute(&ctx, &stmts), EncodeOptions::default()).trim_end(),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu_30s","columns":["time","usage_mean","usage_max","usage_count"],"values":[["2023-11-14T22:13:00Z",0.5,0.5,1],["2023-11-14T22:13:30Z",2.5,3.5,3],["2023-11-14T22:14:00Z",5,5.5,2]]}]}]}"#
    );
    for (q, why) in [
        ("CREATE CONTINUOUS QUERY x ON db BEGIN SELECT median(*) INTO t FROM cpu GROUP BY time(1m), * END", "count, sum, min, max or mean"),
        ("CREATE CONTINUOUS QUERY x ON db BEGIN SELECT mean(*) INTO t FROM cpu GROUP BY time(1m) END", "GROUP BY time(interval), *"),
        ("CREATE CONTINUOUS QUERY x ON db BEGIN SELECT mean(*) INTO t FROM cpu WHERE host = 'a' GROUP BY time(1m), * END", "WHERE is not supported"),
        ("CREATE CONTINUOUS QUERY x ON db BEGIN SELECT mean(*) INTO t FROM /c/ GROUP BY time(1m), * END", "regex"),
        ("CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(*) INTO t FROM cpu GROUP BY time(1m), * END", "already exists"),
        ("DROP CONTINUOUS QUERY nope ON db", "not found"),
    ] {
        let out = run(&e, q);
        assert!(out.contains(why), "{q}: {out}");
    }
    assert_eq!(run(&e, "DROP CONTINUOUS QUERY cq ON db"), r#"{"results":[{"statement_id":0}]}"#);
    assert!(e.downsample_rules("db").unwrap().is_empty());
}

/// Hourly points across Berlin's 2024 DST changes: `GROUP BY time(1d)` days start at local
/// midnight (23- and 25-hour days) and times print with the offset in force.
#[test]
fn tz_days_across_dst_changes() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(EngineOptions::new(dir.path())).unwrap();
    e.create_database("db").unwrap();
    let mut b = WriteBatch::new();
    for start in ["2024-03-30T00:00:00Z", "2024-10-26T00:00:00Z"] {
        let t0 = strata_query::time::parse_time(start).unwrap();
        for h in 0..55 {
            let mut p = b.point("power");
            p.field("w", FieldValue::I64(h));
            p.finish(t0 + h * 3600 * S).unwrap();
        }
    }
    e.write("db", &b).unwrap();
    // Spring: Mar 30 has 23 points (00:00Z-22:00Z), Mar 31 is 23 hours long, Apr 1 starts at
    // 2024-03-31T22:00Z.
    assert_eq!(
        run(&e, "SELECT count(w) FROM power WHERE time >= '2024-03-30T00:00:00Z' AND time <= '2024-04-01T06:00:00Z' GROUP BY time(1d) tz('Europe/Berlin')"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"power","columns":["time","count"],"values":[["2024-03-30T00:00:00+01:00",23],["2024-03-31T00:00:00+01:00",23],["2024-04-01T00:00:00+02:00",9]]}]}]}"#
    );
    // Autumn: Oct 27 is 25 hours long.
    assert_eq!(
        run(&e, "SELECT count(w) FROM power WHERE time >= '2024-10-26T00:00:00Z' AND time <= '2024-10-28T00:00:00Z' GROUP BY time(1d) tz('Europe/Berlin')"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"power","columns":["time","count"],"values":[["2024-10-26T00:00:00+02:00",22],["2024-10-27T00:00:00+02:00",25],["2024-10-28T00:00:00+01:00",2]]}]}]}"#
    );
    // The repeated local hour, raw.
    assert_eq!(
        run(&e, "SELECT w FROM power WHERE time >= '2024-10-27T00:00:00Z' AND time <= '2024-10-27T01:00:00Z' tz('Europe/Berlin')"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"power","columns":["time","w"],"values":[["2024-10-27T02:00:00+02:00",24],["2024-10-27T02:00:00+01:00",25]]}]}]}"#
    );
    // A 6-hour offset applies after the zone alignment: days from 06:00 local.
    assert_eq!(
        run(&e, "SELECT count(w) FROM power WHERE time >= '2024-03-30T05:00:00Z' AND time < '2024-03-31T04:00:00Z' GROUP BY time(1d, 6h) tz('Europe/Berlin')"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"power","columns":["time","count"],"values":[["2024-03-30T06:00:00+01:00",23]]}]}]}"#
    );
}

/// `tz()` with `epoch=`: times are integers (the zone only moves the buckets), in JSON and CSV,
/// as InfluxDB answers Grafana, which always sends `epoch=ms`.
#[test]
fn tz_with_epoch_prints_integers() {
    let (_d, e) = fixture();
    let t0 = strata_query::time::parse_time("2024-03-30T00:00:00Z").unwrap();
    let mut b = WriteBatch::new();
    for h in 0..55 {
        let mut p = b.point("power");
        p.field("w", FieldValue::I64(h));
        p.finish(t0 + h * 3600 * S).unwrap();
    }
    e.write("db", &b).unwrap();
    let q = "SELECT count(w) FROM power WHERE time >= '2024-03-30T00:00:00Z' AND time <= '2024-04-01T06:00:00Z' GROUP BY time(1d) tz('Europe/Berlin')";
    let ms = EncodeOptions { epoch: Epoch::Milliseconds, ..Default::default() };
    assert_eq!(
        run_with(&e, q, ms),
        r#"{"results":[{"statement_id":0,"series":[{"name":"power","columns":["time","count"],"values":[[1711753200000,23],[1711839600000,23],[1711922400000,9]]}]}]}"#
    );
    let ctx = QueryContext::new(&e, Some("db"), NOW, QueryLimits::default());
    let raw = "SELECT w FROM power WHERE time <= '2024-03-30T00:00:00Z' tz('Europe/Berlin')";
    assert_eq!(
        encode_csv(&execute(&ctx, &parse_query(raw).unwrap()), ms),
        "name,tags,time,w\npower,,1711756800000,0\n"
    );
}

/// Each statement's CSV is a block of its own (a blank line and a header, even when the
/// columns repeat), as InfluxDB writes it; series of one statement share a header.
#[test]
fn csv_statements_are_blocks() {
    let (_d, e) = fixture();
    let ctx = QueryContext::new(&e, Some("db"), NOW, QueryLimits::default());
    let q = "SELECT count(usage) FROM cpu GROUP BY host; SELECT count(free) FROM mem";
    assert_eq!(
        encode_csv(&execute(&ctx, &parse_query(q).unwrap()), EncodeOptions::default()),
        "name,tags,time,count\ncpu,host=a,0,6\ncpu,host=b,0,6\n\nname,tags,time,count\nmem,,0,1\n"
    );
}

#[test]
fn distinct_count_distinct_and_integral() {
    let (_d, e) = fixture();
    assert_eq!(
        run(&e, "SELECT distinct(status) FROM cpu"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","distinct"],"values":[["1970-01-01T00:00:00Z","ok"],["1970-01-01T00:00:00Z","hot"]]}]}]}"#
    );
    assert_eq!(
        run(&e, "SELECT count(distinct(status)) AS n FROM cpu GROUP BY host"),
        concat!(
            r#"{"results":[{"statement_id":0,"series":["#,
            r#"{"name":"cpu","tags":{"host":"a"},"columns":["time","n"],"values":[["1970-01-01T00:00:00Z",2]]},"#,
            r#"{"name":"cpu","tags":{"host":"b"},"columns":["time","n"],"values":[["1970-01-01T00:00:00Z",2]]}"#,
            r#"]}]}"#
        )
    );
    // Trapezoids between 0.5, 1.5, ..., 5.5 ten seconds apart: 150 value-seconds, 2.5 value-minutes.
    assert_eq!(
        run(&e, "SELECT integral(usage), integral(usage, 1m) FROM cpu WHERE host = 'a'"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","integral","integral_1"],"values":[["1970-01-01T00:00:00Z",150,2.5]]}]}]}"#
    );
    // By 30 s buckets, points 22:13:20 (0.5) to 22:13:50 (3.5): the first bucket holds one
    // point and is cut at 22:13:30, where the next point is (area 0.5 * (0.5 + 1.5) * 10 = 10);
    // the second holds 1.5, 2.5, 3.5 (20 + 30 = 50).
    let q = "SELECT integral(usage) FROM cpu WHERE host = 'a' AND time >= 1699999980s AND time < 1700000040s GROUP BY time(30s)";
    assert_eq!(
        run(&e, q),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","integral"],"values":[["2023-11-14T22:13:00Z",10],["2023-11-14T22:13:30Z",50]]}]}]}"#
    );
    assert_eq!(
        run(&e, "SELECT distinct(status), count(usage) FROM cpu"),
        r#"{"results":[{"statement_id":0,"error":"aggregate function distinct() cannot be combined with other functions or fields"}]}"#
    );
}

#[test]
fn select_into_writes_rows_as_points() {
    let (_d, e) = fixture();
    // Three 30 s buckets per host; GROUP BY * keeps host and region as tags.
    assert_eq!(
        run(&e, "SELECT mean(usage) INTO cpu_30s FROM cpu WHERE time >= 1700000000s AND time < 1700000060s GROUP BY time(30s), *"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"result","columns":["time","written"],"values":[["1970-01-01T00:00:00Z",6]]}]}]}"#
    );
    assert_eq!(
        run(&e, "SELECT mean, region FROM cpu_30s WHERE host = 'b'"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu_30s","columns":["time","mean","region"],"values":[["2023-11-14T22:13:00Z",10.5,"eu"],["2023-11-14T22:13:30Z",12.5,"eu"],["2023-11-14T22:14:00Z",15,"eu"]]}]}]}"#
    );
    assert_eq!(
        run(&e, "SHOW TAG KEYS FROM cpu_30s"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu_30s","columns":["tagKey"],"values":[["host"],["region"]]}]}]}"#
    );
    // Raw rows into another database; null cells (status on odd rows) are left out.
    run(&e, "CREATE DATABASE other");
    assert_eq!(
        run(&e, "SELECT count, status INTO other..copy FROM cpu WHERE host = 'a'"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"result","columns":["time","written"],"values":[["1970-01-01T00:00:00Z",6]]}]}]}"#
    );
    assert_eq!(
        run(&e, "SELECT count, status FROM other..copy LIMIT 2"),
        r#"{"results":[{"statement_id":0,"series":[{"name":"copy","columns":["time","count","status"],"values":[["2023-11-14T22:13:20Z",0,"ok"],["2023-11-14T22:13:30Z",2,null]]}]}]}"#
    );
    assert_eq!(
        run(&e, "SELECT count INTO nope..copy FROM cpu"),
        r#"{"results":[{"statement_id":0,"error":"database not found: nope"}]}"#
    );
    // A field type conflict with what the target holds is reported, not ignored.
    assert_eq!(
        run(&e, "SELECT status AS count INTO other..copy FROM cpu WHERE host = 'a'"),
        r#"{"results":[{"statement_id":0,"error":"partial write: 3 points rejected (field \"count\" is type string, already exists as type integer), 0 written"}]}"#
    );
}

/// Streams `q` through [`execute_statement_each`] and [`ChunkEncoder`], as the server does for
/// `chunked=true`: the lines, in order.
fn stream(engine: &Engine, q: &str, chunk_size: usize, limits: QueryLimits) -> Vec<String> {
    let stmts = parse_query(q).unwrap();
    let ctx = QueryContext::new(engine, Some("db"), NOW, limits);
    let mut enc = ChunkEncoder::new(EncodeOptions { epoch: Epoch::Seconds, pretty: false }, chunk_size);
    let mut lines = Vec::new();
    for (i, stmt) in stmts.iter().enumerate() {
        enc.begin(i);
        let r = execute_statement_each(&ctx, stmt, &mut |s, more| {
            enc.part(s, more, &mut lines);
            Ok(())
        });
        let error = r.err().map(|e| e.to_string());
        enc.end(error.as_deref(), &mut lines);
        if error.is_some() {
            break;
        }
    }
    lines
}

/// Chunk shapes: a series split in `chunk_size` pieces (`partial` on the series while rows
/// follow), `partial` on the result until the statement's last line, a statement without
/// series as one bare line, statement ids across several statements.
#[test]
fn chunked_stream_shapes() {
    let (_d, e) = fixture();
    let lines = stream(
        &e,
        "SELECT count FROM cpu GROUP BY host; SELECT count FROM nothing; SHOW DATABASES",
        4,
        QueryLimits::default(),
    );
    let expected = [
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","count"],"values":[[1700000000,0],[1700000010,2],[1700000020,4],[1700000030,6]],"partial":true}],"partial":true}]}"#,
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","count"],"values":[[1700000040,8],[1700000050,10]]}],"partial":true}]}"#,
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"b"},"columns":["time","count"],"values":[[1700000000,1],[1700000010,3],[1700000020,5],[1700000030,7]],"partial":true}],"partial":true}]}"#,
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"b"},"columns":["time","count"],"values":[[1700000040,9],[1700000050,11]]}]}]}"#,
        r#"{"results":[{"statement_id":1}]}"#,
        r#"{"results":[{"statement_id":2,"series":[{"name":"databases","columns":["name"],"values":[["db"]]}]}]}"#,
    ];
    assert_eq!(lines, expected);

    // A series of exactly chunk_size rows is one line, not followed by an empty one.
    let lines = stream(&e, "SELECT count FROM cpu WHERE host = 'a'", 6, QueryLimits::default());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(!lines[0].contains("partial"), "{}", lines[0]);
}

/// A statement failing after it sent series ends with a separate error line; the lines
/// before it say more follows. The statements after it do not run.
#[test]
fn chunked_stream_error_mid_statement() {
    let (_d, e) = fixture();
    // Rows are counted per tag set: host a's 6 rows pass a limit of 8, host b's do not.
    let limits = QueryLimits { max_points_returned: 8, ..QueryLimits::default() };
    let lines = stream(&e, "SELECT count FROM cpu GROUP BY host; SHOW DATABASES", 100, limits);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(r#""tags":{"host":"a"}"#) && lines[0].ends_with(r#""partial":true}]}"#),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        r#"{"results":[{"statement_id":0,"error":"max-select-point limit exceeded: more than 8 points returned"}]}"#
    );
}

/// Streaming gives the same series, in the same order, as the materialised answer, for raw,
/// grouped, aggregate, SLIMIT/SOFFSET and tz queries.
#[test]
fn chunked_stream_matches_materialised() {
    let (_d, e) = fixture();
    for q in [
        "SELECT * FROM cpu",
        "SELECT usage, status FROM cpu GROUP BY *",
        "SELECT usage FROM /.*/ GROUP BY host ORDER BY time DESC LIMIT 2 OFFSET 1",
        "SELECT usage FROM cpu GROUP BY host SLIMIT 1 SOFFSET 1",
        "SELECT mean(usage), max(count) FROM cpu WHERE time >= 1700000000s AND time < 1700000060s GROUP BY time(20s), host",
        "SELECT derivative(usage) FROM cpu GROUP BY host",
        "SELECT count FROM cpu WHERE host = 'b' AND count > 4",
        "SELECT free FROM mem; SHOW MEASUREMENTS",
    ] {
        let stmts = parse_query(q).unwrap();
        let ctx = QueryContext::new(&e, Some("db"), NOW, QueryLimits::default());
        let whole = encode_json_chunks(&execute(&ctx, &stmts), EncodeOptions { epoch: Epoch::Seconds, pretty: false }, 3);
        assert_eq!(stream(&e, q, 3, QueryLimits::default()), whole, "{q}");
    }
}

/// Series long enough to be streamed in several parts ([`strata_query::exec::STREAM_PART_ROWS`]
/// rows each): the lines equal the materialised answer's for chunk sizes below, at and above
/// a part, with LIMIT/OFFSET and SLIMIT/SOFFSET crossing part boundaries, a field condition
/// dropping rows and tz().
#[test]
fn chunked_stream_long_series_in_parts() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(EngineOptions::new(dir.path())).unwrap();
    let mut b = WriteBatch::new();
    for i in 0..2500i64 {
        for dev in ["d1", "d2", "d3"] {
            let mut p = b.point("long");
            p.tag("dev", dev);
            p.field("v", FieldValue::I64(i));
            if i % 3 == 0 {
                p.field("w", FieldValue::F64(i as f64 / 2.0));
            }
            p.finish(T0 + i * S).unwrap();
        }
    }
    e.create_database("db").unwrap();
    e.write("db", &b).unwrap();
    let part = strata_query::exec::STREAM_PART_ROWS;
    for q in [
        "SELECT v FROM long GROUP BY dev",
        "SELECT w FROM long GROUP BY *",
        "SELECT v, w FROM long WHERE v > 5 GROUP BY dev LIMIT 1500 OFFSET 1000",
        "SELECT v FROM long GROUP BY dev SLIMIT 2 SOFFSET 1",
        "SELECT v FROM long GROUP BY dev LIMIT 3 tz('UTC')",
        "SELECT v FROM long GROUP BY dev ORDER BY time DESC LIMIT 1100",
        "SELECT v FROM long WHERE dev = 'd2'",
    ] {
        for chunk in [999, part, part + 1, 5000] {
            let stmts = parse_query(q).unwrap();
            let ctx = QueryContext::new(&e, Some("db"), NOW, QueryLimits::default());
            let opts = EncodeOptions { epoch: Epoch::Seconds, pretty: false };
            let whole = encode_json_chunks(&execute(&ctx, &stmts), opts, chunk);
            let streamed = stream(&e, q, chunk, QueryLimits::default());
            assert!(streamed == whole, "{q} chunk_size={chunk}: {} lines vs {}", streamed.len(), whole.len());
        }
    }
    // A row limit passed in the middle of a streamed series: the rows before it went out.
    let limits = QueryLimits { max_points_returned: 3000, ..QueryLimits::default() };
    let lines = stream(&e, "SELECT v FROM long GROUP BY dev", 1000, limits);
    assert!(lines.last().unwrap().contains("max-select-point limit exceeded"), "{:?}", lines.last());
    assert!(lines.len() >= 3, "{}", lines.len());
}

/// A series fed in parts: chunks cut at `chunk_size` across parts, and an empty last part
/// still closes the series.
#[test]
fn chunk_encoder_parts() {
    let row = |i: i64| vec![strata_query::Value::Time(i * S), strata_query::Value::Integer(i)];
    let head = |values| strata_query::Series {
        name: "m".into(),
        tags: None,
        columns: vec!["time".into(), "v".into()],
        values,
    };
    let rest = |values| strata_query::Series { values, ..Default::default() };
    let mut enc = ChunkEncoder::new(EncodeOptions { epoch: Epoch::Seconds, pretty: false }, 2);
    let mut lines = Vec::new();
    enc.begin(0);
    enc.part(head((0..3).map(row).collect()), true, &mut lines);
    enc.part(rest(vec![row(3)]), true, &mut lines);
    enc.part(rest(Vec::new()), false, &mut lines);
    enc.end(None, &mut lines);
    assert_eq!(
        lines,
        [
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","v"],"values":[[0,0],[1,1]],"partial":true}],"partial":true}]}"#,
            r#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","v"],"values":[[2,2],[3,3]]}]}]}"#,
        ]
    );
}

/// A small deterministic generator (xorshift64*), so the random data of a failure can be
/// reproduced from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random trucks, several per region, written in batches with flushes between them: later
/// batches carry late points (older than what was flushed) and rewrites of existing
/// timestamps, and the last batch stays in the memtable. Timestamps are drawn from a narrow
/// range, so series share many of them (ties in the merge).
fn random_trucks(seed: u64) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(EngineOptions::new(dir.path())).unwrap();
    e.create_database("db").unwrap();
    let mut rng = Rng(seed | 1);
    for batch in 0..4 {
        let mut b = WriteBatch::new();
        for _ in 0..4000 {
            let truck = rng.below(9);
            let mut p = b.point("trucks");
            p.tag("region", &format!("r{}", truck % 3)).tag("truck", &format!("t{truck}"));
            p.field("v", FieldValue::I64(rng.below(1000) as i64));
            if rng.below(3) == 0 {
                p.field("w", FieldValue::F64(rng.below(100) as f64 / 4.0));
            }
            if rng.below(7) == 0 {
                p.field("s", FieldValue::Str(if rng.below(2) == 0 { "x" } else { "y" }));
            }
            p.finish(T0 + rng.below(3000) as i64 * S).unwrap();
        }
        e.write("db", &b).unwrap();
        if batch < 3 {
            e.flush().unwrap();
        }
    }
    (dir, e)
}

/// Raw selects over tag sets of several series and over whole measurements (no GROUP BY
/// tags) stream through a merge by time: the lines equal the materialised answer's for
/// random data with late and rewritten points, shared timestamps, both time orders,
/// LIMIT/OFFSET, SLIMIT/SOFFSET, conditions, tz() and chunk sizes around a part.
#[test]
fn chunked_stream_merges_many_series() {
    let part = strata_query::exec::STREAM_PART_ROWS;
    for seed in [7, 0x5eed_cafe] {
        let (_d, e) = random_trucks(seed);
        for q in [
            "SELECT v FROM trucks GROUP BY region",
            "SELECT * FROM trucks",
            "SELECT v, w FROM trucks WHERE v > 100 GROUP BY region LIMIT 1500 OFFSET 700",
            "SELECT v FROM trucks GROUP BY region ORDER BY time DESC LIMIT 2000 OFFSET 10",
            "SELECT v, truck, s FROM trucks ORDER BY time DESC",
            "SELECT w FROM trucks GROUP BY region SLIMIT 2 SOFFSET 1",
            "SELECT v FROM trucks WHERE truck =~ /t[13]/ OR region = 'r0' GROUP BY region LIMIT 1100 tz('Europe/Paris')",
            "SELECT v FROM trucks WHERE truck > 't4' AND time >= 1700000500s AND time <= 1700002000s",
            "SELECT s, v * 2 FROM trucks WHERE s = 'x' GROUP BY truck, region OFFSET 3",
            "SELECT v FROM trucks LIMIT 0",
            "SELECT v FROM trucks OFFSET 100000",
        ] {
            for chunk in [1000, part, part + 1, 3000] {
                let stmts = parse_query(q).unwrap();
                let ctx = QueryContext::new(&e, Some("db"), NOW, QueryLimits::default());
                let opts = EncodeOptions { epoch: Epoch::Seconds, pretty: false };
                let whole = encode_json_chunks(&execute(&ctx, &stmts), opts, chunk);
                let streamed = stream(&e, q, chunk, QueryLimits::default());
                assert!(
                    streamed == whole,
                    "seed {seed} {q} chunk_size={chunk}: {} lines vs {}\n{:.300}\n{:.300}",
                    streamed.len(),
                    whole.len(),
                    streamed.first().map_or("", |s| s.as_str()),
                    whole.first().map_or("", |s| s.as_str()),
                );
            }
        }
    }
}

/// A streamed merge holds a part, not the measurement: under a memory limit that the
/// materialised answer of every truck merged into one series exceeds, the stream completes
/// with every row.
#[test]
fn chunked_stream_merge_holds_a_part_not_the_measurement() {
    let (_d, e) = random_trucks(11);
    let q = "SELECT v, w FROM trucks";
    let limits = QueryLimits { max_memory_bytes: 256 * 1024, ..QueryLimits::default() };
    let ctx = QueryContext::new(&e, Some("db"), NOW, limits);
    let whole = execute(&ctx, &parse_query(q).unwrap());
    assert!(whole[0].error.as_deref().is_some_and(|m| m.contains("memory limit")), "{:?}", whole[0].error);
    let lines = stream(&e, q, 10_000, limits);
    let rows: usize = lines.iter().map(|l| l.matches("],[").count() + 1).sum();
    assert!(lines.iter().all(|l| !l.contains("error")), "{:?}", lines.last());
    let ctx = QueryContext::new(&e, Some("db"), NOW, QueryLimits::default());
    let all = execute(&ctx, &parse_query(q).unwrap());
    assert_eq!(rows, all[0].series[0].values.len());
    assert!(rows > 10_000, "{rows}");
}
