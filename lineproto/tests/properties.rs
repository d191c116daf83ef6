//! Property tests over the public API:
//! - no input makes the parser panic, and every line it accepts survives a
//!   print / re-parse cycle unchanged;
//! - every representable point prints and parses back to itself (floats bit for
//!   bit), and unrepresentable points are refused by the printer;
//! - the line-length limit changes nothing but the over-long lines;
//! - on canonical lines we agree with InfluxDB IOx's parser (`influxdb-line-protocol`).

use proptest::prelude::*;
use strata_lineproto::{write_line, LineErrorKind, Parser, Point, Value};

/// Floats as bit patterns so `-0.0 != 0.0` and lost precision are noticed.
fn canon(p: &Point) -> Point {
    let mut p = p.clone();
    for (_, v) in &mut p.fields {
        if let Value::F64(f) = *v {
            *v = Value::Str(format!("f64:{:016x}", f.to_bits()));
        }
    }
    p
}

/// Parses `body`, checks every error is well-formed and every accepted line
/// round-trips through `write_line`. Returns the accepted lines as points.
fn check_body(body: &[u8]) -> Vec<Point> {
    let physical_lines = body.split(|&b| b == b'\n').count();
    let mut points = Vec::new();
    let mut last_line = 0;
    for result in Parser::new(body) {
        match result {
            Ok(line) => {
                assert!(line.line_no > last_line && line.line_no <= physical_lines);
                last_line = line.line_no;
                // Iterating must not panic, and counts must agree.
                assert_eq!(line.tags().count(), line.tag_count());
                assert_eq!(line.fields().count(), line.field_count());
                assert!(line.field_count() >= 1);
                let point = line.to_point();
                let mut printed = Vec::new();
                write_line(&mut printed, &line);
                let mut again = Parser::new(&printed);
                let reparsed = again
                    .next()
                    .expect("one line")
                    .unwrap_or_else(|e| panic!("printed {:?}: {e}", String::from_utf8_lossy(&printed)));
                assert!(again.next().is_none());
                assert_eq!(canon(&reparsed.to_point()), canon(&point));
                // The owned printer produces the same canonical bytes.
                let mut owned = Vec::new();
                point.write_to(&mut owned).expect("a parsed line is representable");
                assert_eq!(owned, printed);
                points.push(point);
            }
            Err(e) => {
                assert!(e.line_no > last_line && e.line_no <= physical_lines, "{e}");
                last_line = e.line_no;
                assert!(e.column >= 1);
                assert!(e.excerpt().len() <= 64 * 3, "{e}"); // lossy may widen bytes
                let _ = e.to_string();
            }
        }
    }
    points
}

/// Bytes biased towards line-protocol syntax so the scanner's branches are hit.
fn lineish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        8 => prop::sample::select(b"ab ,=\\\"\n\r\t#.-+eEiutfTF0123456789".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..120)
}

/// Lines built from valid-ish pieces with occasional damage.
fn lineish_lines() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        "m",
        "cpu",
        "\\ ",
        "\\,",
        "\\=",
        "\\\\",
        "\\",
        ",t=v",
        ",",
        "=",
        " ",
        "  ",
        "\t",
        "f=1",
        "f=-1.5e3",
        "f=1i",
        "f=2u",
        "f=t",
        "f=\"s\"",
        "f=\"a\\\"b\"",
        "\"",
        ",g=",
        " 123",
        " -5",
        "\n",
        "\r\n",
        "#c",
        "é",
        "NaN",
        "1e999",
    ]);
    prop::collection::vec(piece, 0..20).prop_map(|v| v.concat().into_bytes())
}

fn name(allow_newline: bool) -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => prop::char::range('a', 'e'),
        4 => prop::sample::select(vec![',', ' ', '=', '\\', '"', '#', '\t', '\r', 'é', '⚡', '\u{0}']),
        1 => any::<char>().prop_filter("newline", move |c| allow_newline || *c != '\n'),
    ];
    prop::collection::vec(ch, 0..6).prop_map(String::from_iter)
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        prop::sample::select(vec![
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            1e16,
            1e-5,
            f64::from_bits(1e16f64.to_bits() - 1), // largest below 1e16
            0.1,
        ]),
    ]
}

fn value(allow_newline: bool) -> impl Strategy<Value = Value> {
    prop_oneof![
        float().prop_map(Value::F64),
        any::<i64>().prop_map(Value::I64),
        prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1]).prop_map(Value::I64),
        any::<u64>().prop_map(Value::U64),
        prop::sample::select(vec![u64::MAX, 0]).prop_map(Value::U64),
        any::<bool>().prop_map(Value::Bool),
        name(allow_newline).prop_map(Value::Str),
    ]
}

fn point(allow_newline: bool) -> impl Strategy<Value = Point> {
    (
        name(allow_newline),
        prop::collection::vec((name(allow_newline), name(allow_newline)), 0..5),
        prop::collection::vec((name(allow_newline), value(allow_newline)), 0..5),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(measurement, tags, fields, timestamp)| Point {
            measurement,
            tags,
            fields,
            timestamp,
        })
}

/// Names IOx's parser accepts back: no tab, NUL or newline, no trailing backslash.
fn tame_name() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => prop::char::range('a', 'e'),
        4 => prop::sample::select(vec![',', ' ', '=', '\\', '"', '#', '\r', 'é', '⚡']),
        1 => any::<char>().prop_filter("tame", |c| !matches!(c, '\n' | '\t' | '\0')),
    ];
    prop::collection::vec(ch, 1..6)
        .prop_map(String::from_iter)
        .prop_filter("IOx rejects a trailing backslash", |s| !s.ends_with('\\'))
}

/// Representable points made of tame names, with unique keys.
fn tame_point() -> impl Strategy<Value = Point> {
    let value = prop_oneof![
        float().prop_filter("finite", |f| f.is_finite()).prop_map(Value::F64),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(Value::U64),
        any::<bool>().prop_map(Value::Bool),
        tame_name().prop_map(Value::Str),
        Just(Value::Str(String::new())),
    ];
    (
        tame_name().prop_filter("comment", |m| !m.starts_with('#')),
        prop::collection::btree_map(tame_name(), tame_name(), 0..5),
        prop::collection::btree_map(tame_name(), value, 1..5),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(measurement, tags, fields, timestamp)| Point {
            measurement,
            tags: tags.into_iter().collect(),
            fields: fields.into_iter().collect(),
            timestamp,
        })
}

/// Test oracle, written independently of `Point::validate`.
fn representable(p: &Point) -> bool {
    let ok = |s: &str| !s.is_empty() && !s.contains('\n');
    let unique = |keys: Vec<&String>| {
        let mut k = keys.clone();
        k.sort();
        k.dedup();
        k.len() == keys.len()
    };
    ok(&p.measurement)
        && !p.measurement.starts_with('#')
        && !p.measurement.starts_with('\t')
        && p.tags.iter().all(|(k, v)| ok(k) && ok(v))
        && unique(p.tags.iter().map(|(k, _)| k).collect())
        && !p.fields.is_empty()
        && unique(p.fields.iter().map(|(k, _)| k).collect())
        && p.fields.iter().all(|(k, v)| {
            ok(k)
                && match v {
                    Value::F64(f) => f.is_finite(),
                    Value::Str(s) => !s.contains('\n'),
                    _ => true,
                }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
        check_body(&body);
    }

    #[test]
    fn lineish_bytes_never_panic_and_round_trip(body in lineish_bytes()) {
        check_body(&body);
    }

    #[test]
    fn lineish_lines_never_panic_and_round_trip(body in lineish_lines()) {
        check_body(&body);
    }

    #[test]
    fn points_round_trip(p in point(true)) {
        let mut out = b"prefix ".to_vec();
        let result = p.write_to(&mut out);
        prop_assert_eq!(result.is_ok(), representable(&p), "{:?} -> {:?}", p, result);
        if result.is_err() {
            prop_assert_eq!(&out, b"prefix ");
            return Ok(());
        }
        let printed = &out[b"prefix ".len()..];
        let mut parser = Parser::new(printed);
        let line = parser.next().expect("one line");
        let line = line.map_err(|e| TestCaseError::fail(format!("{:?}: {e}", String::from_utf8_lossy(printed))))?;
        prop_assert!(parser.next().is_none());
        prop_assert_eq!(canon(&line.to_point()), canon(&p));
        let mut again = Vec::new();
        write_line(&mut again, &line);
        prop_assert_eq!(again.as_slice(), printed);
    }

    #[test]
    fn many_points_in_one_body(points in prop::collection::vec(point(false), 1..20)) {
        let mut body = Vec::new();
        let mut expected = Vec::new();
        for p in &points {
            if p.write_to(&mut body).is_ok() {
                expected.push(canon(p));
                if expected.len() % 3 == 0 {
                    body.extend_from_slice(b"# comment\r\n\n");
                }
            }
        }
        let parsed: Vec<Point> = check_body(&body).iter().map(canon).collect();
        prop_assert_eq!(parsed, expected);
    }

    /// Limiting line length only turns lines longer than the limit into
    /// `LineTooLong`; every other line parses exactly as without a limit.
    #[test]
    fn max_line_len_only_affects_long_lines(body in lineish_lines(), max in 0usize..40) {
        let lengths: Vec<usize> = body
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
            .collect();
        type Summary = Vec<(usize, Result<String, (LineErrorKind, usize)>)>;
        let summarize = |p: Parser<'_>| -> Summary {
            p.map(|r| match r {
                Ok(l) => (l.line_no, Ok(l.raw().to_string())),
                Err(e) => (e.line_no, Err((e.kind, e.column))),
            })
            .collect()
        };
        let unlimited = summarize(Parser::new(&body));
        let limited = summarize(Parser::new(&body).with_max_line_len(max));
        let mut u = unlimited.iter().peekable();
        for (line_no, result) in &limited {
            let long = lengths[line_no - 1] > max;
            if long {
                prop_assert_eq!(result, &Err((LineErrorKind::LineTooLong, max + 1)));
                if u.peek().map(|(n, _)| n) == Some(line_no) {
                    u.next();
                }
            } else {
                prop_assert_eq!(u.next(), Some(&(*line_no, result.clone())));
            }
        }
        // Whatever the unlimited parser still has left are long lines skipped by
        // the limited one as comments... which cannot be: comments are skipped by
        // both. So nothing may be left.
        prop_assert!(u.next().is_none());
    }

    /// IOx's parser reads our canonical output the same way (restricted to names
    /// IOx accepts: it rejects any name ending in a backslash, and treats tabs and
    /// NULs specially).
    #[test]
    fn agrees_with_influxdb_line_protocol_on_canonical_lines(p in tame_point()) {
        prop_assert!(representable(&p));
        let mut out = Vec::new();
        p.write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let theirs: Vec<_> = influxdb_line_protocol::parse_lines(&text).collect();
        prop_assert_eq!(theirs.len(), 1, "{}", text);
        let theirs = theirs.into_iter().next().unwrap()
            .map_err(|e| TestCaseError::fail(format!("IOx rejects {text:?}: {e}")))?;
        prop_assert_eq!(theirs.series.measurement.as_str(), p.measurement.as_str());
        let their_tags: Vec<(String, String)> = theirs.series.tag_set.iter().flatten()
            .map(|(k, v)| (k.to_string(), v.to_string())).collect();
        prop_assert_eq!(their_tags, p.tags.clone());
        let their_fields: Vec<(String, Value)> = theirs.field_set.iter().map(|(k, v)| {
            use influxdb_line_protocol::FieldValue as F;
            let v = match v {
                F::F64(f) => Value::F64(*f),
                F::I64(i) => Value::I64(*i),
                F::U64(u) => Value::U64(*u),
                F::Boolean(b) => Value::Bool(*b),
                F::String(s) => Value::Str(s.to_string()),
            };
            (k.to_string(), v)
        }).collect();
        let theirs_point = Point { fields: their_fields, ..p.clone() };
        prop_assert_eq!(canon(&theirs_point), canon(&p));
        prop_assert_eq!(theirs.timestamp, p.timestamp);
    }

    /// Where both parsers accept an arbitrary line, they read the same point
    /// (differences are only in what each rejects).
    #[test]
    fn agrees_with_influxdb_line_protocol_when_both_accept(body in lineish_lines()) {
        let Ok(text) = std::str::from_utf8(&body) else { return Ok(()) };
        // Compare line by line: IOx keeps newlines inside quotes, we do not.
        for line in text.split('\n') {
            let ours: Vec<_> = Parser::new(line.as_bytes()).collect();
            let theirs: Vec<_> = influxdb_line_protocol::parse_lines(line).collect();
            let (Some(Ok(ours)), Some(Ok(theirs))) = (ours.first(), theirs.first()) else { continue };
            prop_assert_eq!(ours.measurement.as_str(), theirs.series.measurement.as_str(), "{:?}", line);
            let our_tags: Vec<_> = ours.tags().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let their_tags: Vec<_> = theirs.series.tag_set.iter().flatten()
                .map(|(k, v)| (k.to_string(), v.to_string())).collect();
            prop_assert_eq!(our_tags, their_tags, "{:?}", line);
            prop_assert_eq!(ours.timestamp, theirs.timestamp, "{:?}", line);
        }
    }
}
