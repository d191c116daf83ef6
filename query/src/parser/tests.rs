//! Parser tests: every statement and literal kind, precedence, the request
//! shapes of Grafana and the Python `influxdb` client, positioned errors,
//! resource limits, and property tests (no panics; print/parse round trip).

use super::*;
use crate::ast::{format_query, Measurement};
use crate::condition::{split_tag_condition, split_time_condition, TimeRange};
use crate::time::{NANOS_PER_HOUR, NANOS_PER_MILLI, NANOS_PER_MINUTE, NANOS_PER_SECOND};

fn stmt(q: &str) -> Statement {
    parse_statement(q).unwrap_or_else(|e| panic!("{q}\n{e}"))
}

fn select(q: &str) -> SelectStatement {
    match stmt(q) {
        Statement::Select(s) => s,
        other => panic!("not a SELECT: {other:?}"),
    }
}

fn expr(s: &str) -> Expr {
    parse_expr(s).unwrap_or_else(|e| panic!("{s}\n{e}"))
}

fn err(q: &str) -> ParseError {
    match parse_query(q) {
        Ok(ast) => panic!("expected an error for {q:?}, got {ast:?}"),
        Err(e) => e,
    }
}

/// Parses, prints, parses again and checks both trees are equal.
fn assert_round_trip(q: &str) {
    let first = parse_query(q).unwrap_or_else(|e| panic!("{q}\n{e}"));
    let printed = format_query(&first);
    let second = parse_query(&printed).unwrap_or_else(|e| panic!("{printed}\n{e}"));
    assert_eq!(first, second, "printed as: {printed}");
}

fn var(name: &str) -> Expr {
    Expr::var(name)
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Call { name: name.into(), args }
}

fn bin(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
    Expr::binary(op, lhs, rhs)
}

fn paren(e: Expr) -> Expr {
    Expr::Paren(Box::new(e))
}

fn re(s: &str) -> RegexLiteral {
    RegexLiteral::new(s).expect("valid regex")
}

fn m(name: &str) -> Source {
    Source::Measurement(Measurement::named(name))
}

fn field(expr: Expr) -> Field {
    Field { expr, alias: None }
}

// ---------------------------------------------------------------------------
// Client request shapes
// ---------------------------------------------------------------------------

#[test]
fn grafana_aggregate_query() {
    let q = r#"SELECT mean("value") FROM "cpu" WHERE ("host" =~ /^server1$/) AND time >= 1700000000000ms and time <= 1700003600000ms GROUP BY time(10s), "host" fill(null) ORDER BY time ASC"#;
    let s = select(q);
    let host = paren(bin(BinaryOp::EqRegex, var("host"), Expr::Regex(re("^server1$"))));
    let from = 1_700_000_000_000 * NANOS_PER_MILLI;
    let to = 1_700_003_600_000 * NANOS_PER_MILLI;
    let expected = SelectStatement {
        fields: vec![field(call("mean", vec![var("value")]))],
        sources: vec![m("cpu")],
        condition: Some(bin(
            BinaryOp::And,
            bin(BinaryOp::And, host.clone(), bin(BinaryOp::Gte, var("time"), Expr::Duration(from))),
            bin(BinaryOp::Lte, var("time"), Expr::Duration(to)),
        )),
        group_by: GroupBy {
            time: Some(TimeDimension { interval_ns: 10 * NANOS_PER_SECOND, offset_ns: 0 }),
            tags: vec![TagDimension::Name("host".into())],
        },
        fill: Fill::Null,
        ..SelectStatement::default()
    };
    assert_eq!(s, expected);

    // The executor's view: time bounds plus the tag predicate.
    let (range, rest) = split_time_condition(s.condition.as_ref().expect("where"), 0).expect("time range");
    assert_eq!(range, TimeRange { min: Some(from), max: Some(to) });
    assert_eq!(rest, Some(host.clone()));
    let split = split_tag_condition(rest.as_ref().expect("rest"), |t| t == "host");
    assert_eq!(split.tags, Some(host));
    assert_eq!(split.fields, None);
    assert_round_trip(q);
}

#[test]
fn grafana_meta_queries() {
    assert_eq!(
        stmt(r#"SHOW TAG VALUES FROM "cpu" WITH KEY = "host" WHERE time > now() - 1h"#),
        Statement::ShowTagValues {
            database: None,
            sources: vec![m("cpu")],
            key: TagKeyFilter::Eq("host".into()),
            condition: Some(bin(
                BinaryOp::Gt,
                var("time"),
                bin(BinaryOp::Sub, Expr::Now, Expr::Duration(NANOS_PER_HOUR)),
            )),
            limit: None,
            offset: 0,
        }
    );
    assert_eq!(
        stmt("SHOW MEASUREMENTS LIMIT 100"),
        Statement::ShowMeasurements {
            database: None,
            measurement: None,
            condition: None,
            limit: Some(100),
            offset: 0,
        }
    );
    assert_eq!(
        stmt("SHOW MEASUREMENTS WITH MEASUREMENT =~ /cpu/ LIMIT 100"),
        Statement::ShowMeasurements {
            database: None,
            measurement: Some(MeasurementName::Regex(re("cpu"))),
            condition: None,
            limit: Some(100),
            offset: 0,
        }
    );
    assert_eq!(
        stmt(r#"SHOW RETENTION POLICIES on "telemetry""#),
        Statement::ShowRetentionPolicies { database: Some("telemetry".into()) }
    );
    assert_eq!(
        stmt(r#"SHOW FIELD KEYS FROM "cpu""#),
        Statement::ShowFieldKeys { database: None, sources: vec![m("cpu")], limit: None, offset: 0 }
    );
    assert_eq!(
        stmt(r#"SHOW TAG KEYS FROM "cpu""#),
        Statement::ShowTagKeys {
            database: None,
            sources: vec![m("cpu")],
            condition: None,
            limit: None,
            offset: 0,
        }
    );
}

#[test]
fn grafana_retention_policy_and_relative_time() {
    let s = select(r#"SELECT "value" FROM "autogen"."cpu" WHERE time >= now() - 6h"#);
    assert_eq!(
        s.sources,
        vec![Source::Measurement(Measurement {
            database: None,
            retention_policy: Some("autogen".into()),
            name: MeasurementName::Name("cpu".into()),
        })]
    );
    let now = 100 * NANOS_PER_HOUR;
    let range = crate::condition::time_range(s.condition.as_ref().expect("where"), now).expect("range");
    assert_eq!(range.min, Some(now - 6 * NANOS_PER_HOUR));
    assert_eq!(range.max, None);
}

#[test]
fn grafana_multi_statement_with_tz_and_variables() {
    let q = r#"SELECT mean("temp") AS "t" FROM "sensors" WHERE ("room" =~ /^(kitchen|hall)$/ AND "floor"::tag = '1') AND $timeFilter GROUP BY time(1m)"#
        .replace("$timeFilter", "time >= 1700000000000ms and time <= 1700003600000ms");
    let q = format!(
        "{q} fill(previous) tz('Europe/Paris');SELECT count(\"v\") FROM \"m\" WHERE time > now() - 5m"
    );
    let query = parse_query(&q).expect("parses");
    assert_eq!(query.len(), 2);
    let Statement::Select(first) = &query[0] else { panic!("select") };
    assert_eq!(first.fields[0].alias.as_deref(), Some("t"));
    assert_eq!(first.fill, Fill::Previous);
    assert_eq!(first.tz.as_deref(), Some("Europe/Paris"));
    assert_round_trip(&q);
}

#[test]
fn python_client_shapes() {
    assert_eq!(stmt("SHOW DATABASES"), Statement::ShowDatabases);
    assert_eq!(
        stmt(r#"CREATE DATABASE "x""#),
        Statement::CreateDatabase { name: "x".into(), retention: None }
    );
    assert_eq!(stmt(r#"DROP DATABASE "x""#), Statement::DropDatabase { name: "x".into() });
    let s = select(r#"SELECT * FROM "m""#);
    assert_eq!(s.fields, vec![field(Expr::Wildcard(WildcardKind::All))]);
    assert_eq!(s.sources, vec![m("m")]);
    assert_eq!(
        stmt(
            r#"CREATE RETENTION POLICY "one_day" ON "db" DURATION 1d REPLICATION 1 SHARD DURATION 0s DEFAULT"#
        ),
        Statement::CreateRetentionPolicy {
            name: "one_day".into(),
            database: "db".into(),
            duration: 24 * NANOS_PER_HOUR,
            replication: 1,
            shard_duration: Some(0),
            default: true,
        }
    );
    assert_eq!(
        stmt(r#"ALTER RETENTION POLICY "one_day" ON "db" DURATION INF REPLICATION 2 DEFAULT"#),
        Statement::AlterRetentionPolicy {
            name: "one_day".into(),
            database: "db".into(),
            duration: Some(0),
            replication: Some(2),
            shard_duration: None,
            default: true,
        }
    );
    assert_eq!(
        stmt(r#"DROP RETENTION POLICY "one_day" ON "db""#),
        Statement::DropRetentionPolicy { name: "one_day".into(), database: "db".into() }
    );
    assert_eq!(
        stmt(r#"DROP SERIES FROM "m" WHERE "tag" = 'v'"#),
        Statement::DropSeries {
            sources: vec![m("m")],
            condition: Some(bin(BinaryOp::Eq, var("tag"), Expr::String("v".into()))),
        }
    );
    assert_eq!(stmt(r#"DROP MEASUREMENT "m""#), Statement::DropMeasurement { name: "m".into() });
    let Statement::CreateContinuousQuery { name, database, select } = stmt(
        r#"CREATE CONTINUOUS QUERY cq_1m ON farm BEGIN SELECT mean(*), max(temp) INTO farm_1y..readings_1m FROM readings GROUP BY time(1m), * END"#,
    ) else {
        panic!("not a continuous query")
    };
    assert_eq!((name.as_str(), database.as_str()), ("cq_1m", "farm"));
    assert_eq!(select.into.as_ref().and_then(|m| m.database.as_deref()), Some("farm_1y"));
    assert_eq!(select.group_by.time.map(|t| t.interval_ns), Some(60_000_000_000));
    assert_eq!(
        stmt("DROP CONTINUOUS QUERY cq ON db"),
        Statement::DropContinuousQuery { name: "cq".into(), database: "db".into() }
    );
    assert!(err("CREATE CONTINUOUS QUERY cq ON db RESAMPLE EVERY 1m BEGIN SELECT mean(*) INTO x FROM y GROUP BY time(1m) END")
        .to_string()
        .contains("RESAMPLE is not supported"));
    assert!(err("CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(*) INTO x FROM y GROUP BY time(1m)")
        .to_string()
        .contains("expected END"));
    assert_eq!(
        stmt(r#"SHOW SERIES ON "db" FROM "m" WHERE "host" = 'a'"#),
        Statement::ShowSeries {
            database: Some("db".into()),
            sources: vec![m("m")],
            condition: Some(bin(BinaryOp::Eq, var("host"), Expr::String("a".into()))),
            limit: None,
            offset: 0,
        }
    );
}

// ---------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------

#[test]
fn every_statement_kind_parses_and_round_trips() {
    let queries = [
        "SELECT value FROM cpu",
        "SELECT a, b AS c, * FROM db.rp.cpu, rp.mem, db..disk, /^net/, db.rp./x/",
        "SELECT *::field, *::tag FROM cpu",
        "SELECT mean(value) INTO db.rp.downsampled FROM cpu GROUP BY time(1h, 15m), *",
        "SELECT value FROM cpu WHERE host = 'a' GROUP BY /^h/ fill(none) ORDER BY time DESC LIMIT 10 OFFSET 5 SLIMIT 3 SOFFSET 1 tz('UTC')",
        "SELECT max(v) FROM cpu GROUP BY time(10s, -5s) fill(linear)",
        "SELECT max(v) FROM cpu GROUP BY time(10s) fill(-1.5)",
        "SELECT max(v) FROM cpu GROUP BY time(10s) fill(0)",
        "SHOW DATABASES",
        "SHOW MEASUREMENTS ON db WITH MEASUREMENT = cpu WHERE host = 'a' LIMIT 5 OFFSET 2",
        "SHOW TAG KEYS ON db FROM cpu, mem WHERE host = 'a' LIMIT 1 OFFSET 1",
        "SHOW TAG VALUES ON db FROM cpu WITH KEY IN (host, \"region\") WHERE a = 'b' LIMIT 3",
        "SHOW TAG VALUES WITH KEY != host",
        "SHOW MEASUREMENTS WITH MEASUREMENT = /^c/",
        "SHOW TAG VALUES WITH KEY =~ /h.*/",
        "SHOW TAG VALUES WITH KEY !~ /h.*/",
        "SHOW FIELD KEYS ON db FROM cpu LIMIT 2 OFFSET 4",
        "SHOW SERIES ON db FROM cpu WHERE host = 'a' LIMIT 10",
        "SHOW RETENTION POLICIES",
        "SHOW CONTINUOUS QUERIES",
        "CREATE DATABASE telemetry WITH DURATION 30d REPLICATION 1 SHARD DURATION 1d NAME thirty",
        "CREATE DATABASE telemetry WITH NAME rp",
        "CREATE DATABASE telemetry WITH DURATION INF",
        "DROP DATABASE telemetry",
        "CREATE RETENTION POLICY rp ON db DURATION INF REPLICATION 3",
        "ALTER RETENTION POLICY rp ON db SHARD DURATION 2h",
        "ALTER RETENTION POLICY rp ON db DEFAULT REPLICATION 2",
        "DROP RETENTION POLICY rp ON db",
        "DELETE FROM cpu WHERE time < '2024-01-01'",
        "DELETE FROM /^c/",
        "DELETE WHERE host = 'a'",
        "DROP SERIES FROM cpu",
        "DROP SERIES WHERE host = 'a'",
        "DROP MEASUREMENT cpu",
    ];
    for q in queries {
        assert_round_trip(q);
    }
    // Each statement kind once, checked for shape.
    assert!(
        matches!(stmt("DELETE WHERE host = 'a'"), Statement::Delete { ref sources, condition: Some(_) } if sources.is_empty())
    );
    assert!(matches!(
        stmt("ALTER RETENTION POLICY rp ON db DEFAULT REPLICATION 2"),
        Statement::AlterRetentionPolicy {
            duration: None,
            replication: Some(2),
            shard_duration: None,
            default: true,
            ..
        }
    ));
    assert_eq!(
        stmt("CREATE DATABASE telemetry WITH DURATION 30d REPLICATION 1 SHARD DURATION 1d NAME thirty"),
        Statement::CreateDatabase {
            name: "telemetry".into(),
            retention: Some(RetentionPolicySpec {
                duration: Some(30 * 24 * NANOS_PER_HOUR),
                replication: Some(1),
                shard_duration: Some(24 * NANOS_PER_HOUR),
                name: Some("thirty".into()),
            }),
        }
    );
}

#[test]
fn printing_is_canonical() {
    // Input, and how Display prints it.
    let cases = [
        (
            r#"select MEAN("value") from "cpu" where ("host" =~ /^a\/b$/) and time >= '2024-01-01' and time <= now() - 90m group by time(10s), "host" fill(null) order by time asc"#,
            "SELECT mean(value) FROM cpu WHERE (host =~ /^a\\/b$/) AND time >= '2024-01-01T00:00:00Z' AND time <= now() - 90m GROUP BY time(10s), host",
        ),
        (
            r#"SELECT "select", "my field"::float AS "x y", 1.0, 5400s FROM "db".."m-1" WHERE a <> 'it\'s' LIMIT 5"#,
            r#"SELECT "select", "my field"::float AS "x y", 1.0, 90m FROM db.."m-1" WHERE a != 'it\'s' LIMIT 5"#,
        ),
        (
            "SELECT -v, - 2 * v FROM m WHERE time > 1700000000000ms",
            "SELECT (-1 * v), -2 * v FROM m WHERE time > 1700000000s",
        ),
        (
            "create retention policy rp on db duration 0s replication 1 shard duration 1440m default",
            "CREATE RETENTION POLICY rp ON db DURATION INF REPLICATION 1 SHARD DURATION 1d DEFAULT",
        ),
        (
            r#"SHOW TAG VALUES WITH KEY IN ("host", 'region')"#,
            "SHOW TAG VALUES WITH KEY IN (host, region)",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(stmt(input).to_string(), want, "input: {input}");
        assert_round_trip(input);
    }
}

#[test]
fn select_clauses() {
    let s = select(
        "SELECT mean(value) INTO db.rp.down FROM cpu WHERE host = 'a' GROUP BY time(1h, 15m), *, /^h/ fill(-2) ORDER BY DESC LIMIT 10 OFFSET 5 SLIMIT 3 SOFFSET 1 tz('Europe/Paris')",
    );
    assert_eq!(
        s.into,
        Some(Measurement {
            database: Some("db".into()),
            retention_policy: Some("rp".into()),
            name: MeasurementName::Name("down".into()),
        })
    );
    assert_eq!(
        s.group_by,
        GroupBy {
            time: Some(TimeDimension { interval_ns: NANOS_PER_HOUR, offset_ns: 15 * NANOS_PER_MINUTE }),
            tags: vec![TagDimension::Wildcard, TagDimension::Regex(re("^h"))],
        }
    );
    assert_eq!(s.fill, Fill::Integer(-2));
    assert!(s.order_desc);
    assert_eq!((s.limit, s.offset, s.slimit, s.soffset), (Some(10), 5, Some(3), 1));
    assert_eq!(s.tz.as_deref(), Some("Europe/Paris"));

    // Time may come after tags in GROUP BY, `::tag` is accepted on tags, and
    // keywords are case-insensitive.
    let s = select("select MEAN(v) from cpu group by host::tag, TIME(5m) FILL(NONE) order by time asc");
    assert_eq!(s.fields[0].expr, call("mean", vec![var("v")]));
    assert_eq!(s.group_by.tags, vec![TagDimension::Name("host".into())]);
    assert_eq!(s.group_by.time.map(|t| t.interval_ns), Some(5 * NANOS_PER_MINUTE));
    assert_eq!(s.fill, Fill::None);
    assert!(!s.order_desc);

    // Sources: qualified names and regexes.
    let s = select(r#"SELECT v FROM "db"."rp"."m", db..m2, /c.*/, "my db".."my m""#);
    assert_eq!(
        s.sources,
        vec![
            Source::Measurement(Measurement {
                database: Some("db".into()),
                retention_policy: Some("rp".into()),
                name: MeasurementName::Name("m".into()),
            }),
            Source::Measurement(Measurement {
                database: Some("db".into()),
                retention_policy: None,
                name: MeasurementName::Name("m2".into()),
            }),
            Source::Measurement(Measurement {
                database: None,
                retention_policy: None,
                name: MeasurementName::Regex(re("c.*")),
            }),
            Source::Measurement(Measurement {
                database: Some("my db".into()),
                retention_policy: None,
                name: MeasurementName::Name("my m".into()),
            }),
        ]
    );
}

#[test]
fn functions_and_casts() {
    let s = select(
        "SELECT derivative(mean(v), 1s), non_negative_derivative(max(v)), difference(v), non_negative_difference(v), moving_average(v, 3), cumulative_sum(v), elapsed(v, 1ms), percentile(v, 95), percentile(v, 99.9), count(distinct(host)), DISTINCT host, integral(v, 1h), spread(v), stddev(v), mode(v), median(v), first(v), last(v), min(v), sum(v), count(*), mean(/^temp/) FROM m",
    );
    let names: Vec<String> = s
        .fields
        .iter()
        .map(|f| match &f.expr {
            Expr::Call { name, .. } => name.clone(),
            other => panic!("not a call: {other}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "derivative",
            "non_negative_derivative",
            "difference",
            "non_negative_difference",
            "moving_average",
            "cumulative_sum",
            "elapsed",
            "percentile",
            "percentile",
            "count",
            "distinct",
            "integral",
            "spread",
            "stddev",
            "mode",
            "median",
            "first",
            "last",
            "min",
            "sum",
            "count",
            "mean",
        ]
    );
    assert_eq!(
        s.fields[0].expr,
        call("derivative", vec![call("mean", vec![var("v")]), Expr::Duration(NANOS_PER_SECOND)])
    );
    assert_eq!(s.fields[9].expr, call("count", vec![call("distinct", vec![var("host")])]));
    assert_eq!(s.fields[10].expr, call("distinct", vec![var("host")]));
    assert_eq!(s.fields[20].expr, call("count", vec![Expr::Wildcard(WildcardKind::All)]));
    assert_eq!(s.fields[21].expr, call("mean", vec![Expr::Regex(re("^temp"))]));
    assert!(s.has_calls());

    for (text, t) in [
        ("v::float", DataType::Float),
        ("v::integer", DataType::Integer),
        ("v::unsigned", DataType::Unsigned),
        ("v::string", DataType::String),
        ("v::boolean", DataType::Boolean),
        ("v::field", DataType::Field),
        ("v::TAG", DataType::Tag),
    ] {
        assert_eq!(expr(text), Expr::VarRef { name: "v".into(), data_type: Some(t) });
    }
}

// ---------------------------------------------------------------------------
// Literals and expressions
// ---------------------------------------------------------------------------

#[test]
fn every_literal_kind() {
    assert_eq!(expr("42"), Expr::Integer(42));
    assert_eq!(expr("-42"), Expr::Integer(-42));
    assert_eq!(expr("-9223372036854775808"), Expr::Integer(i64::MIN));
    assert_eq!(expr("3.25"), Expr::Number(3.25));
    assert_eq!(expr(".5"), Expr::Number(0.5));
    assert_eq!(expr("-0.5"), Expr::Number(-0.5));
    assert_eq!(expr("'it\\'s'"), Expr::String("it's".into()));
    assert_eq!(expr("'line\\nbreak \\\\ \\\"'"), Expr::String("line\nbreak \\ \"".into()));
    assert_eq!(expr("true"), Expr::Bool(true));
    assert_eq!(expr("FALSE"), Expr::Bool(false));
    assert_eq!(expr("now()"), Expr::Now);
    assert_eq!(expr("NOW()"), Expr::Now);
    assert_eq!(expr("/a\\/b/"), Expr::Regex(re("a/b")));
    assert_eq!(expr("\"quoted \\\" ident\""), var("quoted \" ident"));
    assert_eq!(expr("\"select\""), var("select"));
    for (text, ns) in [
        ("1ns", 1),
        ("1u", 1_000),
        ("1µ", 1_000),
        ("1ms", NANOS_PER_MILLI),
        ("1s", NANOS_PER_SECOND),
        ("1m", NANOS_PER_MINUTE),
        ("1h", NANOS_PER_HOUR),
        ("1d", 24 * NANOS_PER_HOUR),
        ("1w", 7 * 24 * NANOS_PER_HOUR),
        ("1h30m", 90 * NANOS_PER_MINUTE),
        ("-5m", -5 * NANOS_PER_MINUTE),
        ("1700000000000ms", 1_700_000_000_000 * NANOS_PER_MILLI),
    ] {
        assert_eq!(expr(text), Expr::Duration(ns), "{text}");
    }
    // Time strings compared with `time`, on either side, in every format.
    let t0 = 1_704_067_200 * NANOS_PER_SECOND;
    for text in [
        "time > '2024-01-01T00:00:00Z'",
        "time > '2024-01-01T01:00:00+01:00'",
        "time > '2024-01-01'",
        "time > '2024-01-01 00:00:00'",
        "'2024-01-01T00:00:00.000000000Z' < time",
        "TIME > '2024-01-01'",
        "\"time\" > '2024-01-01'",
    ] {
        let e = expr(text);
        let (lhs, rhs) = match &e {
            Expr::Binary { lhs, rhs, .. } => (&**lhs, &**rhs),
            other => panic!("{other:?}"),
        };
        assert!(
            (lhs.is_time_ref() && *rhs == Expr::Time(t0)) || (rhs.is_time_ref() && *lhs == Expr::Time(t0)),
            "{text}: {e:?}"
        );
    }
    assert_eq!(
        expr("time >= '2024-01-01' - 1h"),
        bin(BinaryOp::Gte, var("time"), bin(BinaryOp::Sub, Expr::Time(t0), Expr::Duration(NANOS_PER_HOUR)))
    );
    // Not compared with time: stays a string.
    assert_eq!(
        expr("host = '2024-01-01'"),
        bin(BinaryOp::Eq, var("host"), Expr::String("2024-01-01".into()))
    );
}

#[test]
fn precedence_and_associativity() {
    let (a, b, c, d) = (var("a"), var("b"), var("c"), var("d"));
    assert_eq!(expr("a + b * c"), bin(BinaryOp::Add, a.clone(), bin(BinaryOp::Mul, b.clone(), c.clone())));
    assert_eq!(expr("a * b + c"), bin(BinaryOp::Add, bin(BinaryOp::Mul, a.clone(), b.clone()), c.clone()));
    assert_eq!(expr("a - b - c"), bin(BinaryOp::Sub, bin(BinaryOp::Sub, a.clone(), b.clone()), c.clone()));
    assert_eq!(expr("a / b % c"), bin(BinaryOp::Mod, bin(BinaryOp::Div, a.clone(), b.clone()), c.clone()));
    assert_eq!(
        expr("(a + b) * c"),
        bin(BinaryOp::Mul, paren(bin(BinaryOp::Add, a.clone(), b.clone())), c.clone())
    );
    assert_eq!(
        expr("a = 1 OR b = 2 AND c = 3"),
        bin(
            BinaryOp::Or,
            bin(BinaryOp::Eq, a.clone(), Expr::Integer(1)),
            bin(
                BinaryOp::And,
                bin(BinaryOp::Eq, b.clone(), Expr::Integer(2)),
                bin(BinaryOp::Eq, c.clone(), Expr::Integer(3))
            )
        )
    );
    assert_eq!(
        expr("a + 1 > b * 2 AND c <> d"),
        bin(
            BinaryOp::And,
            bin(
                BinaryOp::Gt,
                bin(BinaryOp::Add, a.clone(), Expr::Integer(1)),
                bin(BinaryOp::Mul, b.clone(), Expr::Integer(2))
            ),
            bin(BinaryOp::Neq, c.clone(), d.clone())
        )
    );
    assert_eq!(
        expr("a & b | c ^ d"),
        bin(
            BinaryOp::BitXor,
            bin(BinaryOp::BitOr, bin(BinaryOp::BitAnd, a.clone(), b.clone()), c.clone()),
            d.clone()
        )
    );
    // Unary minus: literals fold, anything else becomes (-1 * x).
    assert_eq!(
        expr("-a * b"),
        bin(BinaryOp::Mul, paren(bin(BinaryOp::Mul, Expr::Integer(-1), a.clone())), b.clone())
    );
    assert_eq!(expr("a - -1"), bin(BinaryOp::Sub, a.clone(), Expr::Integer(-1)));
    assert_eq!(expr("+a"), a.clone());
    assert_eq!(
        expr("host =~ /a/ AND host !~ /b/"),
        bin(
            BinaryOp::And,
            bin(BinaryOp::EqRegex, var("host"), Expr::Regex(re("a"))),
            bin(BinaryOp::NeqRegex, var("host"), Expr::Regex(re("b")))
        )
    );
    for q in [
        "SELECT a + b * c, (a + b) * c, a - (b - c), -a * b, -(a + b), 2 * -a, a - -1 FROM m",
        "SELECT v FROM m WHERE a = 1 OR b = 2 AND (c = 3 OR d = 4)",
        "SELECT v FROM m WHERE ((a = 1))",
    ] {
        assert_round_trip(q);
    }
}

#[test]
fn comments_and_whitespace() {
    let q = "-- leading comment\nSELECT /* inline */ value\n\tFROM cpu -- trailing\n;\n/* done */";
    let query = parse_query(q).expect("parses");
    assert_eq!(query.len(), 1);
    assert_eq!(parse_query("").expect("empty"), Vec::new());
    assert_eq!(parse_query(" ;; ").expect("only separators"), Vec::new());
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Each case: query, full error text.
const ERROR_CASES: &[(&str, &str)] = &[
    (
        "SELECT",
        "error parsing query: found EOF, expected identifier, string, number, bool at line 1, char 7",
    ),
    (
        "CREATE DATABASE foo CREATE DATABASE bar",
        "error parsing query: found CREATE, expected ; at line 1, char 21",
    ),
    (
        "SELECT value FROM",
        "error parsing query: found EOF, expected identifier, regex at line 1, char 18",
    ),
    (
        "SELECT value cpu",
        "error parsing query: found cpu, expected FROM at line 1, char 14",
    ),
    (
        "SELECT mean(value FROM cpu",
        "error parsing query: found FROM, expected ) at line 1, char 19",
    ),
    (
        "SELECT foo(value) FROM cpu",
        "error parsing query: undefined function foo() at line 1, char 8",
    ),
    (
        "SELECT mean(value, 2) FROM cpu",
        "error parsing query: invalid number of arguments for mean, expected 1, got 2 at line 1, char 8",
    ),
    (
        "SELECT value FROM cpu WHERE host = 'abc",
        "error parsing query: unterminated string at line 1, char 36",
    ),
    (
        "SELECT value FROM cpu WHERE host = 'a\\qb'",
        "error parsing query: bad escape: \\q at line 1, char 38",
    ),
    (
        "SELECT value FROM cpu WHERE host =~ /(/",
        "error parsing query: invalid regex: unclosed group at line 1, char 37",
    ),
    (
        "SELECT value FROM cpu WHERE host =~ /abc",
        "error parsing query: unterminated regex at line 1, char 37",
    ),
    (
        "SELECT value FROM cpu WHERE host =~ 'abc'",
        "error parsing query: found abc, expected regex at line 1, char 37",
    ),
    (
        "SELECT value FROM cpu WHERE time > now() - 1x",
        "error parsing query: invalid duration at line 1, char 44",
    ),
    (
        "SELECT value\nFROM cpu\nWHERE host = = 'a'",
        "error parsing query: found =, expected identifier, string, number, bool at line 3, char 14",
    ),
    (
        "SELECT value FROM cpu GROUP BY time",
        "error parsing query: time() is a function and expects at least one argument at line 1, char 32",
    ),
    (
        "SELECT value FROM cpu LIMIT -1",
        "error parsing query: found -, expected integer at line 1, char 29",
    ),
    (
        "SELECT value FROM cpu WHERE time > 'yesterday'",
        "error parsing query: invalid time string 'yesterday' at line 1, char 36",
    ),
    (
        "SELECT value FROM cpu WHERE mean(value) > 1",
        "error parsing query: invalid function call in condition: mean() at line 1, char 29",
    ),
    (
        "SELECT mean(value) FROM cpu GROUP BY time(1m) fill(foo)",
        "error parsing query: found foo, expected null, none, previous, linear, number at line 1, char 52",
    ),
    (
        "SELECT * FROM (SELECT * FROM cpu)",
        "error parsing query: subqueries are not supported at line 1, char 15",
    ),
    (
        "SELECT value FROM cpu /* never closed",
        "error parsing query: unterminated comment at line 1, char 23",
    ),
    (
        "DELETE FROM db.rp.cpu WHERE time < now()",
        "error parsing query: database not supported at line 1, char 8",
    ),
    (
        "DROP SERIES FROM autogen.cpu",
        "error parsing query: retention policy not supported at line 1, char 13",
    ),
    (
        "CREATE RETENTION POLICY rp ON db DURATION 1d REPLICATION 0",
        "error parsing query: invalid value 0: must be 1 <= n <= 2147483647 at line 1, char 58",
    ),
    (
        "SELECT moving_average(value, 1) FROM cpu",
        "error parsing query: moving_average window must be greater than 1, got 1 at line 1, char 8",
    ),
    (
        "SELECT derivative(value, 10) FROM cpu",
        "error parsing query: second argument to derivative must be a duration at line 1, char 8",
    ),
    (
        "SELECT value FROM cpu WHERE x > 99999999999999999999",
        "error parsing query: unable to parse integer at line 1, char 33",
    ),
    (
        "SHOW TAG VALUES FROM \"cpu\" WITH KEY \"host\"",
        "error parsing query: found host, expected IN, =, =~ at line 1, char 37",
    ),
    (
        "SELECT \"température\" FROM capteurs WHERE x = ~1",
        "error parsing query: found ~, expected identifier, string, number, bool at line 1, char 46",
    ),
    (
        "SELECT value > 1 FROM cpu",
        "error parsing query: invalid operator > in SELECT clause; operator is intended for WHERE clause at line 1, char 8",
    ),
    (
        "SELECT value::int FROM cpu",
        "error parsing query: found int, expected float, integer, unsigned, string, boolean, field, tag at line 1, char 15",
    ),
    (
        "ALTER RETENTION POLICY rp ON db DURATION 1d DURATION 2d",
        "error parsing query: found duplicate DURATION option at line 1, char 45",
    ),
    (
        "CREATE RETENTION POLICY rp ON db DURATION 1d REPLICATION 1 SHARD DURATION INF",
        "error parsing query: invalid duration INF for shard duration at line 1, char 75",
    ),
    (
        "SHOW USERS",
        "error parsing query: found USERS, expected CONTINUOUS, DATABASES, FIELD, MEASUREMENTS, RETENTION, SERIES, TAG at line 1, char 6",
    ),
    (
        "DROP SERIES",
        "error parsing query: found EOF, expected FROM, WHERE at line 1, char 12",
    ),
    (
        "EXPLAIN SELECT * FROM cpu",
        "error parsing query: found EXPLAIN, expected SELECT, DELETE, SHOW, CREATE, DROP, ALTER at line 1, char 1",
    ),
    (
        "SELECT value FROM cpu ORDER BY value",
        "error parsing query: only ORDER BY time supported at this time at line 1, char 32",
    ),
    (
        "SELECT value FROM cpu WHERE a = 1 GROUP BY time(0s)",
        "error parsing query: time dimension interval must be positive at line 1, char 49",
    ),
    (
        "SELECT v FROM m WHERE a =~ /x/ + 1",
        "error parsing query: the right side of =~ must be a regex at line 1, char 25",
    ),
    (
        "SELECT key FROM cpu",
        "error parsing query: found KEY, expected identifier, string, number, bool at line 1, char 8",
    ),
];

#[test]
fn errors_report_exact_positions() {
    for (q, want) in ERROR_CASES {
        let e = err(q);
        assert_eq!(e.to_string(), *want, "query: {q}");
    }
}

#[test]
fn error_fields_are_structured() {
    let e = err("SELECT value cpu");
    assert_eq!(
        e,
        ParseError { line: 1, char: 14, found: "cpu".into(), expected: vec!["FROM".into()], message: None }
    );
    let e = err("SELECT foo(x) FROM m");
    assert_eq!(e.message.as_deref(), Some("undefined function foo()"));
    assert!(e.expected.is_empty());
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn input_length_is_bounded() {
    let long = format!("SELECT v FROM m WHERE s = '{}'", "x".repeat(MAX_QUERY_BYTES));
    let e = err(&long);
    assert!(e.message.as_deref().is_some_and(|m| m.contains("longer than the limit")), "{e}");
    // Just under the limit still parses.
    let fits = format!("SELECT v FROM m WHERE s = '{}'", "x".repeat(MAX_QUERY_BYTES - 64));
    assert!(parse_query(&fits).is_ok());
}

#[test]
fn nesting_is_bounded() {
    // The deepest allowed nesting, in the most stack-hungry shape (every
    // precedence level open at each level), parses on a test thread.
    let depth = MAX_NESTING - 1;
    let shape = "a OR b AND c = d + e * ";
    let q = format!("SELECT v FROM m WHERE {}x{}", format!("{shape}(").repeat(depth), ")".repeat(depth));
    let parsed = parse_query(&q).expect("max nesting parses");
    assert_eq!(parse_query(&format_query(&parsed)).expect("reparse"), parsed);

    let q = format!("SELECT {}v{} FROM m", "(".repeat(100_000), ")".repeat(100_000));
    let e = err(&q);
    assert!(e.message.as_deref().is_some_and(|m| m.contains("nested too deeply")), "{e}");
    let q = format!("SELECT {}v{} FROM m", "-(".repeat(10_000), ")".repeat(10_000));
    assert!(err(&q).to_string().contains("nested too deeply"));
    // As in InfluxQL, a unary minus applies to a literal, a name or a
    // parenthesized expression, not to another minus.
    assert_eq!(
        err("SELECT - -v FROM m").to_string(),
        "error parsing query: found -, expected identifier, number, duration, ( at line 1, char 10"
    );
    let q = format!("SELECT {}v{} FROM m", "sum(".repeat(10_000), ")".repeat(10_000));
    assert!(parse_query(&q).is_err());
}

#[test]
fn expression_depth_is_bounded() {
    // `a = 1` is two levels deep and each OR adds one: 999 comparisons make
    // a tree exactly MAX_EXPR_DEPTH deep. It is accepted, and printing,
    // cloning, comparing, splitting and dropping it do not overflow.
    let chain = |n: usize| {
        let cond = vec!["a = 1"; n].join(" OR ");
        format!("SELECT v FROM m WHERE {cond}")
    };
    let parsed = parse_query(&chain(MAX_EXPR_DEPTH - 1)).expect("deepest tree parses");
    let printed = format_query(&parsed);
    assert_eq!(parse_query(&printed).expect("reparse"), parsed.clone());
    let Statement::Select(s) = &parsed[0] else { panic!("select") };
    let cond = s.condition.as_ref().expect("where");
    assert_eq!(split_time_condition(cond, 0).expect("no time").1.as_ref(), Some(cond));
    assert_eq!(split_tag_condition(cond, |_| true).tags.as_ref(), Some(cond));

    let e = err(&chain(MAX_EXPR_DEPTH));
    assert!(e.to_string().contains("expression is too deep"), "{e}");
    let cond = vec!["a"; MAX_EXPR_DEPTH + 2].join(" + ");
    let e = err(&format!("SELECT {cond} FROM m"));
    assert!(e.to_string().contains("expression is too deep"), "{e}");
}

#[test]
fn huge_regexes_are_refused() {
    let e = err("SELECT v FROM m WHERE host =~ /(a{1000}){1000}/");
    assert!(e.message.as_deref().is_some_and(|m| m.starts_with("invalid regex")), "{e}");
    // Many different regexes in one query are refused, repeats are free.
    let many: Vec<String> = (0..=MAX_REGEXES).map(|i| format!("/a{i}/")).collect();
    let e = err(&format!("SELECT {} FROM m", many.join(", ")));
    assert!(e.to_string().contains("too many regexes"), "{e}");
    let fine = format!("SELECT {} FROM m", many[..MAX_REGEXES].join(", "));
    assert!(parse_query(&fine).is_ok());
    let repeated = vec!["SELECT v FROM m WHERE host =~ /^(a|b)$/"; 5_000].join("; ");
    assert_eq!(parse_query(&repeated).expect("same regex 5000 times").len(), 5_000);
    // A Grafana multi-value variable with a thousand hosts is fine.
    let hosts: Vec<String> = (0..1000).map(|i| format!("server{i:04}")).collect();
    let q = format!("SELECT mean(v) FROM m WHERE host =~ /^({})$/", hosts.join("|"));
    assert!(parse_query(&q).is_ok());
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

mod props {
    use super::*;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP",
        "BY",
        "time",
        "(",
        ")",
        ",",
        ";",
        "AND",
        "OR",
        "=",
        "=~",
        "!=",
        "<",
        ">=",
        "/",
        "/^a$/",
        "*",
        "+",
        "-",
        "mean",
        "now()",
        "1h",
        "10s",
        "'x'",
        "\"q\"",
        "fill(null)",
        "LIMIT",
        "10",
        "1.5",
        "SHOW",
        "TAG",
        "VALUES",
        "WITH",
        "KEY",
        "CREATE",
        "DATABASE",
        "DROP",
        "SERIES",
        "::",
        "tag",
        ".",
        "..",
        "INF",
        "DURATION",
        "REPLICATION",
        "ORDER",
        "DESC",
        "tz('UTC')",
        "derivative",
        "'2024-01-01'",
        "--",
        "/*",
        "*/",
        "\\",
        "'",
        "\"",
        "µ",
        "\n",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,200}") {
            let _ = parse_query(&s);
        }

        #[test]
        fn token_soup_never_panics(words in prop::collection::vec(prop::sample::select(WORDS), 0..40)) {
            let q = words.join(" ");
            let _ = parse_query(&q);
            let q = words.concat();
            let _ = parse_query(&q);
        }

        #[test]
        fn valid_prefixes_and_mutations_never_panic(cut in 0usize..200, insert in ".{0,3}") {
            let base = r#"SELECT mean("value") FROM "cpu" WHERE ("host" =~ /^server1$/) AND time >= 1700000000000ms and time <= now() - 1h GROUP BY time(10s), "host" fill(null) ORDER BY time DESC LIMIT 10 tz('UTC')"#;
            let mut cut = cut.min(base.len());
            while !base.is_char_boundary(cut) {
                cut -= 1;
            }
            let _ = parse_query(&base[..cut]);
            let mutated = format!("{}{}{}", &base[..cut], insert, &base[cut..]);
            let _ = parse_query(&mutated);
        }

        /// The fuzz target's property (`fuzz/fuzz_targets/query.rs`) over the same inputs as
        /// the tests above: whatever parses prints to text that parses back to the same tree.
        #[test]
        fn whatever_parses_prints_back_to_the_same_tree(
            words in prop::collection::vec(prop::sample::select(WORDS), 0..40),
            s in ".{0,120}",
            cut in 0usize..200,
            insert in ".{0,3}",
        ) {
            let base = r#"SELECT mean("value") FROM "cpu" WHERE ("host" =~ /^server1$/) AND time >= 1700000000000ms and time <= now() - 1h GROUP BY time(10s), "host" fill(null) ORDER BY time DESC LIMIT 10 tz('UTC')"#;
            let mut cut = cut.min(base.len());
            while !base.is_char_boundary(cut) {
                cut -= 1;
            }
            let inputs = [
                words.join(" "),
                words.concat(),
                s,
                base[..cut].to_owned(),
                format!("{}{}{}", &base[..cut], insert, &base[cut..]),
            ];
            for q in &inputs {
                if let Ok(first) = parse_query(q) {
                    let printed = format_query(&first);
                    let second = parse_query(&printed);
                    prop_assert!(second.is_ok(), "{q:?} printed as {printed:?}: {:?}", second.err());
                    prop_assert_eq!(second.ok(), Some(first), "{:?} printed as {:?}", q, printed);
                }
            }
        }

        #[test]
        fn printed_statements_parse_back_to_the_same_tree(s in gen::statement()) {
            let printed = s.to_string();
            let parsed = parse_statement(&printed);
            prop_assert!(parsed.is_ok(), "{printed}\n{:?}", parsed.err());
            prop_assert_eq!(parsed.ok(), Some(s), "{}", printed);
        }
    }
}

/// Generators of canonical ASTs: trees the parser itself would produce
/// (parenthesized where precedence requires, `time` comparisons holding
/// `Time` values, calls with valid arguments).
mod gen {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::BoxedStrategy;

    /// Identifiers, including ones that need quoting.
    pub fn ident() -> BoxedStrategy<String> {
        prop_oneof![
            4 => "[a-z_][a-z0-9_]{0,7}",
            1 => "[ -~]{0,6}",
            1 => ".{0,4}",
            1 => prop::sample::select(vec!["select", "FROM", "key", "and", "true", "fill", "tz", "now", "mean"]).prop_map(String::from),
        ]
        .prop_filter("time is special", |name| !name.eq_ignore_ascii_case("time"))
        .boxed()
    }

    pub fn regex() -> BoxedStrategy<RegexLiteral> {
        prop_oneof![
            prop::sample::select(vec![
                "^server1$",
                "cpu.*",
                "a/b",
                r"\d+",
                r"^(a|b)$",
                r"a\/b",
                r"a\\b",
                r"[\\]",
                r"x\\/y",
                ".",
                "/",
            ])
            .prop_map(String::from),
            "[a-z]{1,6}",
        ]
        .prop_filter_map("must compile", |s| RegexLiteral::new(s).ok())
        .boxed()
    }

    fn number() -> BoxedStrategy<f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            (-1000i32..1000).prop_map(|v| f64::from(v) / 8.0),
        ]
        .boxed()
    }

    fn data_type() -> BoxedStrategy<Option<DataType>> {
        prop::option::of(prop::sample::select(vec![
            DataType::Float,
            DataType::Integer,
            DataType::Unsigned,
            DataType::String,
            DataType::Boolean,
            DataType::Field,
            DataType::Tag,
        ]))
        .boxed()
    }

    fn var_ref() -> BoxedStrategy<Expr> {
        (ident(), data_type()).prop_map(|(name, data_type)| Expr::VarRef { name, data_type }).boxed()
    }

    /// `lhs op rhs` with parentheses where the parser would need them.
    pub fn canonical(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
        let wrap = |e: Expr, strict: bool| match &e {
            Expr::Binary { op: inner, .. }
                if inner.precedence() < op.precedence()
                    || (strict && inner.precedence() == op.precedence()) =>
            {
                paren(e)
            }
            _ => e,
        };
        Expr::binary(op, wrap(lhs, false), wrap(rhs, true))
    }

    fn arith_op() -> BoxedStrategy<BinaryOp> {
        prop::sample::select(vec![
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
            BinaryOp::Mod,
            BinaryOp::BitAnd,
            BinaryOp::BitOr,
            BinaryOp::BitXor,
        ])
        .boxed()
    }

    /// A call with arguments the parser accepts.
    fn call_expr() -> BoxedStrategy<Expr> {
        let field_arg = prop_oneof![
            4 => var_ref(),
            1 => Just(Expr::Wildcard(WildcardKind::All)),
            1 => Just(Expr::Wildcard(WildcardKind::Fields)),
            1 => regex().prop_map(Expr::Regex),
        ];
        let simple = prop::sample::select(vec![
            "count", "mean", "median", "mode", "spread", "stddev", "sum", "first", "last", "max", "min",
            "distinct",
        ]);
        let aggregate = (simple, field_arg.clone()).prop_map(|(name, arg)| call(name, vec![arg])).boxed();
        let positive = 1i64..1_000_000_000_000;
        prop_oneof![
            aggregate.clone(),
            (
                field_arg.clone(),
                prop_oneof![(0i64..100).prop_map(Expr::Integer), number().prop_map(Expr::Number)]
            )
                .prop_map(|(a, p)| call("percentile", vec![a, p])),
            (
                prop::sample::select(vec!["derivative", "non_negative_derivative", "elapsed", "integral"]),
                prop_oneof![aggregate.clone(), field_arg.clone()],
                prop::option::of(positive.prop_map(Expr::Duration)),
            )
                .prop_map(|(name, a, unit)| {
                    let name = if name == "integral" && matches!(a, Expr::Call { .. }) {
                        "derivative"
                    } else {
                        name
                    };
                    call(name, std::iter::once(a).chain(unit).collect())
                }),
            (
                prop::sample::select(vec!["difference", "non_negative_difference", "cumulative_sum"]),
                prop_oneof![aggregate.clone(), field_arg.clone()],
            )
                .prop_map(|(name, a)| call(name, vec![a])),
            (prop_oneof![aggregate, field_arg], 2i64..100)
                .prop_map(|(a, n)| call("moving_average", vec![a, Expr::Integer(n)])),
            var_ref().prop_map(|v| call("count", vec![call("distinct", vec![v])])),
        ]
        .boxed()
    }

    /// Arithmetic field expressions.
    pub fn field_expr() -> BoxedStrategy<Expr> {
        let leaf = prop_oneof![
            4 => var_ref(),
            2 => call_expr(),
            1 => any::<i64>().prop_map(Expr::Integer),
            1 => number().prop_map(Expr::Number),
            1 => ".{0,5}".prop_map(Expr::String),
            1 => any::<i64>().prop_map(Expr::Duration),
            1 => any::<bool>().prop_map(Expr::Bool),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (arith_op(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| canonical(op, l, r)),
                inner.prop_map(paren),
            ]
        })
        .boxed()
    }

    fn time_value() -> BoxedStrategy<Expr> {
        prop_oneof![
            Just(Expr::Now),
            (0i64..1_000_000_000_000_000).prop_map(|d| canonical(
                BinaryOp::Sub,
                Expr::Now,
                Expr::Duration(d)
            )),
            any::<i64>().prop_map(Expr::Time),
            any::<i64>().prop_map(Expr::Integer),
            any::<i64>().prop_map(Expr::Duration),
            (any::<i64>(), 0i64..1_000_000_000).prop_map(|(t, d)| canonical(
                BinaryOp::Add,
                Expr::Time(t),
                Expr::Duration(d)
            )),
        ]
        .boxed()
    }

    /// Conditions: comparisons combined with AND/OR and parentheses.
    pub fn condition() -> BoxedStrategy<Expr> {
        let cmp_op = prop::sample::select(vec![
            BinaryOp::Eq,
            BinaryOp::Neq,
            BinaryOp::Lt,
            BinaryOp::Lte,
            BinaryOp::Gt,
            BinaryOp::Gte,
        ]);
        let literal = prop_oneof![
            ".{0,6}".prop_map(Expr::String),
            any::<i64>().prop_map(Expr::Integer),
            number().prop_map(Expr::Number),
            any::<bool>().prop_map(Expr::Bool),
        ];
        let leaf = prop_oneof![
            (var_ref(), cmp_op.clone(), literal).prop_map(|(v, op, l)| canonical(op, v, l)),
            (var_ref(), any::<bool>(), regex()).prop_map(|(v, neg, r)| {
                let op = if neg { BinaryOp::NeqRegex } else { BinaryOp::EqRegex };
                canonical(op, v, Expr::Regex(r))
            }),
            (cmp_op, time_value(), any::<bool>()).prop_map(|(op, t, time_left)| {
                if time_left {
                    canonical(op, var("time"), t)
                } else {
                    canonical(op, t, var("time"))
                }
            }),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (prop::sample::select(vec![BinaryOp::And, BinaryOp::Or]), inner.clone(), inner.clone())
                    .prop_map(|(op, l, r)| canonical(op, l, r)),
                inner.prop_map(paren),
            ]
        })
        .boxed()
    }

    fn measurement(allow_regex: bool) -> BoxedStrategy<Measurement> {
        let name = if allow_regex {
            prop_oneof![
                3 => ident().prop_map(MeasurementName::Name),
                1 => regex().prop_map(MeasurementName::Regex),
            ]
            .boxed()
        } else {
            ident().prop_map(MeasurementName::Name).boxed()
        };
        let qual = prop::option::of(ident().prop_filter("non-empty", |s| !s.is_empty()));
        (qual.clone(), qual, name)
            .prop_map(|(database, retention_policy, name)| Measurement { database, retention_policy, name })
            .boxed()
    }

    fn sources() -> BoxedStrategy<Vec<Source>> {
        prop::collection::vec(measurement(true).prop_map(Source::Measurement), 1..3).boxed()
    }

    /// A source without database or retention policy (`DELETE`, `DROP SERIES`).
    fn unqualified_source() -> BoxedStrategy<Source> {
        measurement(true)
            .prop_map(|mut m| {
                m.database = None;
                m.retention_policy = None;
                Source::Measurement(m)
            })
            .boxed()
    }

    fn fill() -> BoxedStrategy<Fill> {
        prop_oneof![
            Just(Fill::Null),
            Just(Fill::None),
            Just(Fill::Previous),
            Just(Fill::Linear),
            number().prop_map(Fill::Number),
            any::<i64>().prop_map(Fill::Integer),
        ]
        .boxed()
    }

    fn group_by() -> BoxedStrategy<GroupBy> {
        let time = prop::option::of(
            (1i64..i64::MAX, any::<i64>())
                .prop_map(|(interval_ns, offset_ns)| TimeDimension { interval_ns, offset_ns }),
        );
        let tag = prop_oneof![
            3 => ident().prop_map(TagDimension::Name),
            1 => Just(TagDimension::Wildcard),
            1 => regex().prop_map(TagDimension::Regex),
        ];
        (time, prop::collection::vec(tag, 0..3)).prop_map(|(time, tags)| GroupBy { time, tags }).boxed()
    }

    fn select_statement() -> BoxedStrategy<SelectStatement> {
        let field = (
            prop_oneof![
                6 => field_expr(),
                1 => Just(Expr::Wildcard(WildcardKind::All)),
                1 => Just(Expr::Wildcard(WildcardKind::Tags)),
                1 => regex().prop_map(Expr::Regex),
            ],
            prop::option::of(ident()),
        )
            .prop_map(|(expr, alias)| Field { expr, alias });
        (
            (
                prop::collection::vec(field, 1..4),
                prop::option::of(measurement(false)),
                sources(),
                prop::option::of(condition()),
                group_by(),
                fill(),
            ),
            (
                any::<bool>(),
                prop::option::of(any::<u64>()),
                any::<u64>(),
                prop::option::of(any::<u64>()),
                any::<u64>(),
                prop::option::of(".{0,8}"),
            ),
        )
            .prop_map(
                |(
                    (fields, into, sources, condition, group_by, fill),
                    (order_desc, limit, offset, slimit, soffset, tz),
                )| SelectStatement {
                    fields,
                    into,
                    sources,
                    condition,
                    group_by,
                    fill,
                    order_desc,
                    limit,
                    offset,
                    slimit,
                    soffset,
                    tz,
                },
            )
            .boxed()
    }

    fn tag_key_filter() -> BoxedStrategy<TagKeyFilter> {
        prop_oneof![
            ident().prop_map(TagKeyFilter::Eq),
            ident().prop_map(TagKeyFilter::NotEq),
            prop::collection::vec(ident(), 1..4).prop_map(TagKeyFilter::In),
            regex().prop_map(TagKeyFilter::Regex),
            regex().prop_map(TagKeyFilter::NotRegex),
        ]
        .boxed()
    }

    pub fn statement() -> BoxedStrategy<Statement> {
        let db = prop::option::of(ident());
        let limit = prop::option::of(any::<u64>());
        let duration = 0i64..i64::MAX;
        let replication = 1u32..=i32::MAX as u32;
        let meta = prop_oneof![
            Just(Statement::ShowDatabases),
            Just(Statement::ShowContinuousQueries),
            (
                db.clone(),
                prop::option::of(prop_oneof![
                    ident().prop_map(MeasurementName::Name),
                    regex().prop_map(MeasurementName::Regex)
                ]),
                prop::option::of(condition()),
                limit.clone(),
                any::<u64>()
            )
                .prop_map(|(database, measurement, condition, limit, offset)| {
                    Statement::ShowMeasurements { database, measurement, condition, limit, offset }
                }),
            (
                db.clone(),
                prop::collection::vec(measurement(true).prop_map(Source::Measurement), 0..3),
                prop::option::of(condition()),
                limit.clone(),
                any::<u64>()
            )
                .prop_map(|(database, sources, condition, limit, offset)| {
                    Statement::ShowTagKeys { database, sources, condition, limit, offset }
                }),
            (
                db.clone(),
                prop::collection::vec(measurement(true).prop_map(Source::Measurement), 0..3),
                tag_key_filter(),
                prop::option::of(condition()),
                limit.clone(),
                any::<u64>()
            )
                .prop_map(|(database, sources, key, condition, limit, offset)| {
                    Statement::ShowTagValues { database, sources, key, condition, limit, offset }
                }),
            (
                db.clone(),
                prop::collection::vec(measurement(true).prop_map(Source::Measurement), 0..3),
                limit.clone(),
                any::<u64>()
            )
                .prop_map(|(database, sources, limit, offset)| {
                    Statement::ShowFieldKeys { database, sources, limit, offset }
                }),
            (
                db.clone(),
                prop::collection::vec(measurement(true).prop_map(Source::Measurement), 0..3),
                prop::option::of(condition()),
                limit,
                any::<u64>()
            )
                .prop_map(|(database, sources, condition, limit, offset)| {
                    Statement::ShowSeries { database, sources, condition, limit, offset }
                }),
            db.prop_map(|database| Statement::ShowRetentionPolicies { database }),
        ];
        let admin = prop_oneof![
            (
                ident(),
                prop::option::of(
                    (
                        prop::option::of(duration.clone()),
                        prop::option::of(replication.clone()),
                        prop::option::of(duration.clone()),
                        prop::option::of(ident())
                    )
                        .prop_map(|(duration, replication, shard_duration, name)| {
                            RetentionPolicySpec { duration, replication, shard_duration, name }
                        })
                        .prop_filter("WITH needs an option", |s| *s != RetentionPolicySpec::default())
                )
            )
                .prop_map(|(name, retention)| Statement::CreateDatabase { name, retention }),
            ident().prop_map(|name| Statement::DropDatabase { name }),
            (
                ident(),
                ident(),
                duration.clone(),
                replication.clone(),
                prop::option::of(duration.clone()),
                any::<bool>()
            )
                .prop_map(|(name, database, duration, replication, shard_duration, default)| {
                    Statement::CreateRetentionPolicy {
                        name,
                        database,
                        duration,
                        replication,
                        shard_duration,
                        default,
                    }
                }),
            (
                ident(),
                ident(),
                prop::option::of(duration.clone()),
                prop::option::of(replication),
                prop::option::of(duration),
                any::<bool>()
            )
                .prop_filter("ALTER needs an option", |(_, _, d, r, s, def)| {
                    d.is_some() || r.is_some() || s.is_some() || *def
                })
                .prop_map(|(name, database, duration, replication, shard_duration, default)| {
                    Statement::AlterRetentionPolicy {
                        name,
                        database,
                        duration,
                        replication,
                        shard_duration,
                        default,
                    }
                }),
            (ident(), ident()).prop_map(|(name, database)| Statement::DropRetentionPolicy { name, database }),
            (prop::collection::vec(unqualified_source(), 0..3), prop::option::of(condition()))
                .prop_filter("FROM or WHERE", |(s, c)| !s.is_empty() || c.is_some())
                .prop_map(|(sources, condition)| Statement::Delete { sources, condition }),
            (prop::collection::vec(unqualified_source(), 0..3), prop::option::of(condition()))
                .prop_filter("FROM or WHERE", |(s, c)| !s.is_empty() || c.is_some())
                .prop_map(|(sources, condition)| Statement::DropSeries { sources, condition }),
            ident().prop_map(|name| Statement::DropMeasurement { name }),
            (ident(), ident(), select_statement()).prop_map(|(name, database, s)| {
                Statement::CreateContinuousQuery { name, database, select: Box::new(s) }
            }),
            (ident(), ident()).prop_map(|(name, database)| Statement::DropContinuousQuery { name, database }),
        ];
        prop_oneof![
            4 => select_statement().prop_map(Statement::Select),
            2 => meta,
            2 => admin,
        ]
        .boxed()
    }
}
