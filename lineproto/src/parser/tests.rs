use super::*;
use crate::{FieldValue, LineErrorKind::*, Point, Value};

fn parse_all(input: &str) -> Vec<Result<Line<'_>, LineError>> {
    Parser::new(input.as_bytes()).collect()
}

fn one(input: &str) -> Line<'_> {
    let mut all = parse_all(input);
    assert_eq!(all.len(), 1, "{input:?}: {all:?}");
    all.remove(0).unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

/// (kind, line, column) of the single error in `input`.
fn fail(input: &str) -> (LineErrorKind, usize, usize) {
    let all = parse_all(input);
    assert_eq!(all.len(), 1, "{input:?}: {all:?}");
    match &all[0] {
        Ok(line) => panic!("{input:?} parsed: {line:?}"),
        Err(e) => (e.kind, e.line_no, e.column),
    }
}

fn tags<'a>(line: &Line<'a>) -> Vec<(String, String)> {
    line.tags().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn fields(line: &Line<'_>) -> Vec<(String, Value)> {
    line.fields().map(|(k, v)| (k.to_string(), v.into())).collect()
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

// ---- InfluxDB's documented examples -------------------------------------------

#[test]
fn docs_syntax_example() {
    let l = one(r#"myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000"#);
    assert_eq!(l.measurement, "myMeasurement");
    assert_eq!(tags(&l), [("tag1".into(), "value1".into()), ("tag2".into(), "value2".into())]);
    assert_eq!(fields(&l), [("fieldKey".into(), s("fieldValue"))]);
    assert_eq!(l.timestamp, Some(1556813561098000000));
    assert_eq!(l.line_no, 1);
}

#[test]
fn docs_home_example() {
    let body = "home,room=Living\\ Room temp=21.1,hum=35.9,co=0i 1641024000\n\
                home,room=Kitchen temp=21.0,hum=35.9,co=0i 1641024000\n";
    let lines: Vec<_> =
        Parser::new(body.as_bytes()).with_precision(Precision::Seconds).map(Result::unwrap).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].tag("room").unwrap(), "Living Room");
    assert_eq!(lines[1].tag("room").unwrap(), "Kitchen");
    assert_eq!(lines[1].field("temp"), Some(FieldValue::F64(21.0)));
    assert_eq!(lines[1].field("co"), Some(FieldValue::I64(0)));
    assert_eq!(lines[1].timestamp, Some(1_641_024_000_000_000_000));
    assert_eq!(lines[1].line_no, 2);
}

#[test]
fn docs_special_characters_example() {
    let l = one(
        r#""measurement\ with\ quo⚡️es\ and\ emoji",tag\ key\ with\ sp🚀ces=tag\,value\,with"commas" field_k\ey="string field value, only \" need be esc🍭ped""#,
    );
    assert_eq!(l.measurement, "\"measurement with quo⚡️es and emoji\"");
    assert_eq!(tags(&l), [("tag key with sp🚀ces".into(), "tag,value,with\"commas\"".into())]);
    assert_eq!(fields(&l), [("field_k\\ey".into(), s("string field value, only \" need be esc🍭ped"))]);
    assert_eq!(l.timestamp, None);
}

#[test]
fn docs_data_type_examples() {
    let cases: &[(&str, Value)] = &[
        ("myMeasurement fieldKey=1.0", Value::F64(1.0)),
        ("myMeasurement fieldKey=1", Value::F64(1.0)),
        ("myMeasurement fieldKey=-1.234456e+78", Value::F64(-1.234456e78)),
        ("myMeasurement fieldKey=1i", Value::I64(1)),
        ("myMeasurement fieldKey=12485903i", Value::I64(12485903)),
        ("myMeasurement fieldKey=12485903u", Value::U64(12485903)),
        (r#"myMeasurement fieldKey="this is a string""#, s("this is a string")),
        ("myMeasurement fieldKey=true", Value::Bool(true)),
        ("myMeasurement fieldKey=F", Value::Bool(false)),
    ];
    for (input, want) in cases {
        assert_eq!(fields(&one(input)), [("fieldKey".to_string(), want.clone())], "{input}");
    }
}

#[test]
fn docs_comment_example() {
    let body = "# This is a comment\nmyMeasurement fieldKey=\"string value\" 1556813561098000000\n";
    let l = one(body);
    assert_eq!(l.line_no, 2);
    assert_eq!(fields(&l), [("fieldKey".into(), s("string value"))]);
}

#[test]
fn docs_quoting_examples() {
    // Quotes are literal in measurements, tags and field keys.
    let l = one(r#""m",t="v" "f"=1"#);
    assert_eq!(l.measurement, "\"m\"");
    assert_eq!(tags(&l), [("t".into(), "\"v\"".into())]);
    assert_eq!(fields(&l), [("\"f\"".into(), Value::F64(1.0))]);
    // Single quotes are not string delimiters.
    assert_eq!(fail("m f='a'").0, InvalidFieldValue);
}

// ---- structure and whitespace ---------------------------------------------------

#[test]
fn tags_are_optional_and_kept_in_input_order() {
    let l = one("m f=1");
    assert_eq!(l.tag_count(), 0);
    assert_eq!(l.tags().count(), 0);
    let l = one("m,z=1,a=2,m=3 f=1");
    assert_eq!(tags(&l), [("z".into(), "1".into()), ("a".into(), "2".into()), ("m".into(), "3".into())]);
    assert_eq!(l.tag_count(), 3);
    assert_eq!(l.tag("a").unwrap(), "2");
    assert!(l.tag("b").is_none());
}

#[test]
fn long_integer_floats_regression() {
    // Found by the fuzzer: a float written as 20 digits without a dot overflowed
    // the fast path's u64 mantissa (a panic in debug, a wrong value in release).
    let l = one("m f=18446744073709551616,g=99999999999999999999,h=-12345678901234567890123");
    assert_eq!(
        fields(&l),
        [
            ("f".into(), Value::F64(18446744073709551616.0)),
            ("g".into(), Value::F64(1e20)),
            ("h".into(), Value::F64(-1.2345678901234568e22)),
        ]
    );
}

#[test]
fn multiple_fields_of_every_type() {
    let l = one(r#"m a=1.5,b=-2i,c=3u,d=t,e="x,y z=w",f=FALSE 9"#);
    assert_eq!(
        fields(&l),
        [
            ("a".into(), Value::F64(1.5)),
            ("b".into(), Value::I64(-2)),
            ("c".into(), Value::U64(3)),
            ("d".into(), Value::Bool(true)),
            ("e".into(), s("x,y z=w")),
            ("f".into(), Value::Bool(false)),
        ]
    );
    assert_eq!(l.field_count(), 6);
    assert_eq!(l.timestamp, Some(9));
    assert_eq!(l.field("e").map(|v| v.type_name()), Some("string"));
}

#[test]
fn whitespace_rules() {
    // Leading spaces and tabs are skipped; raw() starts at the measurement.
    let l = one(" \t m f=1");
    assert_eq!(l.measurement, "m");
    assert_eq!(l.raw(), "m f=1");
    // One or more spaces separate the sections.
    let l = one("m,t=1    f=1   5");
    assert_eq!(l.timestamp, Some(5));
    // Trailing spaces after fields or timestamp are fine.
    assert_eq!(one("m f=1   ").timestamp, None);
    assert_eq!(one("m f=1 5   ").timestamp, Some(5));
    // Tabs are ordinary bytes after the start of the line: a field key may start
    // with one (Go would skip it), and a trailing tab is an error.
    assert_eq!(fields(&one("m \tf=1")), [("\tf".into(), Value::F64(1.0))]);
    assert_eq!(fail("m f=1 5\t"), (InvalidTimestamp, 1, 8));
    // A tab is not a separator: it is part of the measurement, as in InfluxDB.
    assert_eq!(fail("m\tf=1"), (MissingFields, 1, 6));
    assert_eq!(one("m\tx f=1").measurement, "m\tx");
    // ... nor after a number.
    assert_eq!(fail("m f=1\t"), (InvalidNumber, 1, 5));
}

#[test]
fn line_endings_blank_lines_and_comments() {
    let body = "\n  \n# c1\n\t# c2\r\nm f=1\r\n\r\n \r\nm f=2\rx\nm f=3";
    let all = parse_all(body);
    assert_eq!(all.len(), 3, "{all:?}");
    let first = all[0].as_ref().unwrap();
    assert_eq!((first.line_no, first.raw()), (5, "m f=1"));
    // A `\r` that is not before `\n` is an ordinary byte.
    let second = all[1].as_ref().unwrap_err();
    assert_eq!((second.kind, second.line_no, second.column), (InvalidNumber, 8, 5));
    let third = all[2].as_ref().unwrap();
    assert_eq!((third.line_no, third.raw()), (9, "m f=3"));
    // `#` only starts a comment at the start of a line.
    assert_eq!(one("m#x f=1").measurement, "m#x");
    assert_eq!(fail("m f=1 #c"), (InvalidTimestamp, 1, 7));
    // A final `\r` without `\n` is dropped too.
    assert_eq!(one("m f=1 7\r").timestamp, Some(7));
}

#[test]
fn empty_and_comment_only_input() {
    assert_eq!(parse_all("").len(), 0);
    assert_eq!(parse_all("\n\n\r\n").len(), 0);
    assert_eq!(parse_all("# a\n#b\n   # c").len(), 0);
}

#[test]
fn line_numbers_and_resync_after_errors() {
    let body = "m f=1\nbad\n\nm,t f=1\nm f=2 3\nm f=\"open\nm f=\"x\" 4\n";
    let all = parse_all(body);
    let summary: Vec<_> = all
        .iter()
        .map(|r| match r {
            Ok(l) => (l.line_no, None),
            Err(e) => (e.line_no, Some(e.kind)),
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, None),
            (2, Some(MissingFields)),
            (4, Some(MissingTagValue)),
            (5, None),
            (6, Some(UnterminatedString)),
            (7, None),
        ]
    );
}

// ---- escaping -------------------------------------------------------------------

#[test]
fn measurement_escapes() {
    let l = one(r"my\ m\,x\=y,t=1 f=1");
    assert_eq!(l.measurement, r"my m,x\=y");
    assert!(l.measurement.is_escaped());
    assert_eq!(l.measurement.raw(), r"my\ m\,x\=y");
    // `=` needs no escape in a measurement.
    assert_eq!(one("a=b f=1").measurement, "a=b");
    // `\\` is one backslash; a backslash before an ordinary byte is literal.
    assert_eq!(one(r"a\\ f=1").measurement, r"a\");
    assert_eq!(one(r"a\b f=1").measurement, r"a\b");
    assert!(!one(r"a\b f=1").measurement.is_escaped());
}

#[test]
fn tag_and_field_key_escapes() {
    let l = one(r"m,k\ 1\,\==v\ 1\,\= f\ 1\,\==1,f\\=2,f\x=3");
    assert_eq!(tags(&l), [("k 1,=".into(), "v 1,=".into())]);
    assert_eq!(
        fields(&l),
        [
            ("f 1,=".into(), Value::F64(1.0)),
            (r"f\".into(), Value::F64(2.0)),
            (r"f\x".into(), Value::F64(3.0)),
        ]
    );
    let (k, v) = l.tags().next().unwrap();
    assert!(k.is_escaped() && v.is_escaped());
    let (plain_k, plain_v) = one("m,k=v f=1").tags().next().unwrap();
    assert!(!plain_k.is_escaped() && !plain_v.is_escaped());
    assert!(matches!(plain_v.as_str(), std::borrow::Cow::Borrowed("v")));
}

#[test]
fn string_field_escapes() {
    let l = one(r#"m a="q\"uote",b="back\\slash",c="lit\eral\,",d="",e="\\\"""#);
    assert_eq!(
        fields(&l),
        [
            ("a".into(), s("q\"uote")),
            ("b".into(), s("back\\slash")),
            ("c".into(), s("lit\\eral\\,")),
            ("d".into(), s("")),
            ("e".into(), s("\\\"")),
        ]
    );
    // Everything but `"` and `\` is literal inside quotes.
    let l = one(r#"m a=" ,= 1i t ""#);
    assert_eq!(fields(&l), [("a".into(), s(" ,= 1i t "))]);
}

#[test]
fn escaped_delimiters_do_not_split() {
    // A backslash always takes the next byte when delimiting, even where that byte
    // is not special, so `\=` does not end a measurement-side key.
    let l = one(r"m,a\=b=c\=d f\,g=1");
    assert_eq!(tags(&l), [("a=b".into(), "c=d".into())]);
    assert_eq!(fields(&l), [("f,g".into(), Value::F64(1.0))]);
}

#[test]
fn unicode_everywhere() {
    let l = one("温度,地点=東京 値=1.5,説明=\"暑い 🌞\" 1");
    assert_eq!(l.measurement, "温度");
    assert_eq!(tags(&l), [("地点".into(), "東京".into())]);
    assert_eq!(fields(&l), [("値".into(), Value::F64(1.5)), ("説明".into(), s("暑い 🌞"))]);
}

// ---- duplicates -----------------------------------------------------------------

#[test]
fn duplicate_tags_are_an_error() {
    assert_eq!(fail("m,a=1,b=2,a=3 f=1"), (DuplicateTagKey, 1, 11));
    // Compared unescaped: `\\k` and `\k` are both `\k`.
    assert_eq!(fail(r"m,\\k=1,\k=2 f=1"), (DuplicateTagKey, 1, 9));
    assert_eq!(fail(r"m,a\ b=1,a\ b=2 f=1").0, DuplicateTagKey);
    // An escaped key first, then the same key written plainly (and the reverse):
    // the Bloom-mask shortcut must not skip the comparison.
    assert_eq!(fail(r"m,\\k=1,x=0,\k=2 f=1"), (DuplicateTagKey, 1, 13));
    assert_eq!(fail(r"m,\k=1,x=0,\\k=2 f=1"), (DuplicateTagKey, 1, 12));
    assert_eq!(fail(r"m,a\=b=1,a\=b=2 f=1").0, DuplicateTagKey);
    // Wide line: the hash-table path.
    let mut line = "m".to_string();
    for i in 0..40 {
        line.push_str(&format!(",t{i}=v"));
    }
    line.push_str(",t7=x f=1");
    let (kind, _, column) = fail(&line);
    assert_eq!(kind, DuplicateTagKey);
    assert_eq!(&line[column - 1..column + 2], "t7=");
    assert_eq!(column, line.find(",t7=x").unwrap() + 2);
    // Distinct keys that hash alike are fine.
    let wide: String = (0..200).map(|i| format!(",k{i}=v")).collect();
    assert_eq!(one(&format!("m{wide} f=1")).tag_count(), 200);
}

#[test]
fn duplicate_fields_last_wins() {
    let l = one("m a=1,b=2,a=3i,a=\"s\",c=t");
    assert!(l.has_duplicate_fields());
    assert_eq!(l.field_count(), 3);
    assert_eq!(
        fields(&l),
        [("b".into(), Value::F64(2.0)), ("a".into(), s("s")), ("c".into(), Value::Bool(true)),]
    );
    assert_eq!(l.field("a"), one("m a=\"s\"").fields().next().map(|f| f.1));
    assert!(!one("m a=1,b=1").has_duplicate_fields());
    // Compared unescaped.
    let l = one(r"m a\ b=1,a\ b=2");
    assert_eq!(fields(&l), [("a b".into(), Value::F64(2.0))]);
}

#[test]
fn duplicate_fields_in_wide_lines() {
    for n in [20, 100] {
        let mut line = "m ".to_string();
        for i in 0..n {
            line.push_str(&format!("f{i}={i}i,"));
        }
        line.push_str("f3=-1i,f70=-2i");
        let l = one(&line);
        let got = fields(&l);
        // f70 is new when n <= 70
        let distinct = if n > 70 { n } else { n + 1 };
        assert_eq!(l.field_count(), distinct, "n={n}");
        assert_eq!(got.len(), distinct);
        assert_eq!(got.iter().filter(|(k, _)| k == "f3").count(), 1);
        assert_ne!(got[3].0, "f3", "the first f3 is dropped");
        assert_eq!(l.field("f3"), Some(FieldValue::I64(-1)));
        if n > 70 {
            assert_eq!(l.field("f70"), Some(FieldValue::I64(-2)));
            assert_eq!(got[n - 1], ("f70".into(), Value::I64(-2)));
        }
    }
}

// ---- every error kind, with position ----------------------------------------------

#[test]
fn error_kinds_and_positions() {
    let cases: &[(&str, LineErrorKind, usize)] = &[
        (",t=1 f=1", EmptyMeasurement, 1),
        ("  ,t=1 f=1", EmptyMeasurement, 3),
        ("cpu", MissingFields, 4),
        ("cpu ", MissingFields, 5),
        ("cpu  ", MissingFields, 6),
        ("cpu \t", InvalidFieldFormat, 6),
        ("cpu,t=1", MissingFields, 8),
        ("cpu,t=1 ", MissingFields, 9),
        (r"cpu\", MissingFields, 5),
        (r"cpu\ f=1", MissingFields, 9),
        ("cpu,", EmptyTagKey, 5),
        ("cpu,=1 f=1", EmptyTagKey, 5),
        ("cpu, f=1", EmptyTagKey, 5),
        ("cpu,,t=1 f=1", EmptyTagKey, 5),
        ("cpu,t=1, f=1", EmptyTagKey, 9),
        ("cpu,t", MissingTagValue, 6),
        ("cpu,t f=1", MissingTagValue, 6),
        ("cpu,t,u=1 f=1", MissingTagValue, 6),
        ("cpu,t= f=1", MissingTagValue, 7),
        ("cpu,t=,u=1 f=1", MissingTagValue, 7),
        ("cpu,t=", MissingTagValue, 7),
        ("cpu,t=a=b f=1", InvalidTagFormat, 8),
        ("cpu,t==b f=1", InvalidTagFormat, 7),
        ("cpu,t=1,t=2 f=1", DuplicateTagKey, 9),
        ("cpu =1", EmptyFieldKey, 5),
        ("cpu ,a=1", EmptyFieldKey, 5),
        ("cpu a=1,=2", EmptyFieldKey, 9),
        ("cpu a=1,", EmptyFieldKey, 9),
        ("cpu a=1, 5", EmptyFieldKey, 9),
        ("cpu a=", MissingFieldValue, 7),
        ("cpu a= 5", MissingFieldValue, 7),
        ("cpu a=,b=1", MissingFieldValue, 7),
        ("cpu a", InvalidFieldFormat, 6),
        ("cpu a,b=1", InvalidFieldFormat, 6),
        ("cpu a=1,b", InvalidFieldFormat, 10),
        ("cpu a=1,b 5", InvalidFieldFormat, 10),
        (r#"cpu a="x"y"#, InvalidFieldFormat, 10),
        (r#"cpu a="x""y""#, InvalidFieldFormat, 10),
        ("cpu a=@", InvalidFieldValue, 7),
        ("cpu a=x", InvalidFieldValue, 7),
        ("cpu a=1,b=1.2.3", InvalidNumber, 11),
        ("cpu a=12x", InvalidNumber, 7),
        ("cpu a=-", InvalidNumber, 7),
        ("cpu a=+1", InvalidNumber, 7),
        ("cpu a=1.5i", InvalidNumber, 7),
        ("cpu a=-1u", InvalidNumber, 7),
        ("cpu a=1e", InvalidNumber, 7),
        ("cpu a=tru", InvalidBoolean, 7),
        ("cpu a=True1", InvalidBoolean, 7),
        ("cpu a=9223372036854775808i", NumberOutOfRange, 7),
        ("cpu a=18446744073709551616u", NumberOutOfRange, 7),
        ("cpu a=1e400", NumberOutOfRange, 7),
        ("cpu a=NaN", NanOrInf, 7),
        ("cpu a=1,b=-Inf", NanOrInf, 11),
        ("cpu a=infinity", NanOrInf, 7),
        (r#"cpu a=""#, UnterminatedString, 7),
        (r#"cpu a="abc"#, UnterminatedString, 7),
        (r#"cpu a="abc\""#, UnterminatedString, 7),
        (r#"cpu a=1,b="x\"#, UnterminatedString, 11),
        ("cpu a=1 x", InvalidTimestamp, 9),
        ("cpu a=1 12x", InvalidTimestamp, 11),
        ("cpu a=1 1.5", InvalidTimestamp, 10),
        ("cpu a=1 -", InvalidTimestamp, 9),
        ("cpu a=1 --1", InvalidTimestamp, 10),
        ("cpu a=1 +1", InvalidTimestamp, 9),
        ("cpu a=1 9223372036854775808", TimestampOutOfRange, 9),
        ("cpu a=1 -9223372036854775809", TimestampOutOfRange, 9),
        ("cpu a=1 1 2", TrailingCharacters, 11),
        ("cpu a=1 1   x", TrailingCharacters, 13),
        ("cpu a=1 1 \t", TrailingCharacters, 11),
    ];
    for &(input, kind, column) in cases {
        assert_eq!(fail(input), (kind, 1, column), "{input:?}");
    }
}

#[test]
fn error_display_and_excerpt() {
    let e = parse_all("ok f=1\ncpu,host=a")[1].clone().unwrap_err();
    assert_eq!(e.to_string(), "line 2, column 11: unable to parse 'cpu,host=a': missing fields");
    let long = format!("cpu,host=a f={}x", "1".repeat(300));
    let e = parse_all(&long)[0].clone().unwrap_err();
    assert_eq!(e.kind, InvalidNumber);
    assert_eq!(e.column, 14);
    assert!(e.excerpt().len() <= crate::error::EXCERPT_MAX);
    assert!(e.excerpt().starts_with("cpu,host=a f=111"));
    assert!(e.excerpt_cut_after());
}

#[test]
fn invalid_utf8_is_reported_at_the_first_bad_byte() {
    let mut body = b"m,t=ok f=1\nm,t=".to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(b" f=1\nm f=2\n");
    let all: Vec<_> = Parser::new(&body).collect();
    assert_eq!(all.len(), 3);
    let e = all[1].as_ref().unwrap_err();
    assert_eq!((e.kind, e.line_no, e.column), (InvalidUtf8, 2, 5));
    assert!(e.excerpt().contains('\u{FFFD}'));
    assert_eq!(all[2].as_ref().unwrap().line_no, 3);
    // A truncated multi-byte character inside a string value.
    let mut body = b"m s=\"".to_vec();
    body.extend_from_slice(&"é".as_bytes()[..1]);
    body.extend_from_slice(b"\"");
    let e = Parser::new(&body).next().unwrap().unwrap_err();
    assert_eq!((e.kind, e.column), (InvalidUtf8, 6));
}

#[test]
fn raw_newline_inside_a_string_ends_the_line() {
    let body = "m s=\"first\nsecond\" 1\nm f=1\n";
    let all = parse_all(body);
    assert_eq!(all.len(), 3);
    let e = all[0].as_ref().unwrap_err();
    assert_eq!((e.kind, e.line_no, e.column), (UnterminatedString, 1, 5));
    assert_eq!(all[1].as_ref().unwrap_err().line_no, 2);
    assert_eq!(all[2].as_ref().unwrap().line_no, 3);
    // The two-character sequence `\n` is just a backslash and an `n`.
    let l = one(r#"m s="a\nb""#);
    assert_eq!(fields(&l), [("s".into(), s("a\\nb"))]);
}

// ---- timestamps and precision ----------------------------------------------------

#[test]
fn timestamps() {
    assert_eq!(one("m f=1 0").timestamp, Some(0));
    assert_eq!(one("m f=1 -1").timestamp, Some(-1));
    assert_eq!(one("m f=1 9223372036854775807").timestamp, Some(i64::MAX));
    assert_eq!(one("m f=1 -9223372036854775808").timestamp, Some(i64::MIN));
    assert_eq!(one("m f=1 0001").timestamp, Some(1));
    assert_eq!(one("m f=1").timestamp, None);
}

#[test]
fn precision_converts_to_nanoseconds_and_checks_overflow() {
    let body = "m f=1 1\nm f=1 9223372037\nm f=1\nm f=1 -3\n";
    let all: Vec<_> = Parser::new(body.as_bytes()).with_precision(Precision::Seconds).collect();
    assert_eq!(all[0].as_ref().unwrap().timestamp, Some(1_000_000_000));
    let e = all[1].as_ref().unwrap_err();
    assert_eq!((e.kind, e.line_no, e.column), (TimestampOutOfRange, 2, 7));
    assert_eq!(all[2].as_ref().unwrap().timestamp, None);
    assert_eq!(all[3].as_ref().unwrap().timestamp, Some(-3_000_000_000));
    let l = Parser::new(b"m f=1 5").with_precision(Precision::Microseconds).next().unwrap().unwrap();
    assert_eq!(l.timestamp, Some(5_000));
}

// ---- maximum line length ----------------------------------------------------------

#[test]
fn max_line_len() {
    let ok = "m f=12345"; // 9 bytes
    let parse = |body: &str, max: usize| -> Vec<Result<String, (LineErrorKind, usize, usize)>> {
        Parser::new(body.as_bytes())
            .with_max_line_len(max)
            .map(|r| r.map(|l| l.raw().to_string()).map_err(|e| (e.kind, e.line_no, e.column)))
            .collect()
    };
    assert_eq!(parse(ok, 9), [Ok(ok.to_string())]);
    assert_eq!(parse(&format!("{ok}\n"), 9), [Ok(ok.to_string())]);
    assert_eq!(parse(&format!("{ok}\r\n"), 9), [Ok(ok.to_string())]);
    assert_eq!(parse(&format!("{ok}\r\nm f=2"), 9), [Ok(ok.to_string()), Ok("m f=2".into())]);
    assert_eq!(parse(ok, 8), [Err((LineTooLong, 1, 9))]);
    assert_eq!(parse(&format!("{ok}\n"), 8), [Err((LineTooLong, 1, 9))]);
    assert_eq!(parse(&format!("{ok}\r\n"), 8), [Err((LineTooLong, 1, 9))]);
    // The parser resumes right after the long line, whether its newline fell inside
    // the looked-at window or beyond it.
    for long in ["m f=1234567", "m f=12345678901234567890"] {
        let body = format!("m f=1\n{long}\nm f=2\n{long}");
        assert_eq!(
            parse(&body, 9),
            [Ok("m f=1".into()), Err((LineTooLong, 2, 10)), Ok("m f=2".into()), Err((LineTooLong, 4, 10))],
            "{long}"
        );
    }
    // Long comments are skipped; blank lines are fine at any limit.
    let body = format!("# {}\nm f=1\n\n", "x".repeat(100));
    assert_eq!(parse(&body, 9), [Ok("m f=1".into())]);
    assert_eq!(parse("\n\n", 0), []);
    assert_eq!(parse("m f=1\n", 0), [Err((LineTooLong, 1, 1))]);
    // The excerpt of a too-long line is capped.
    let e = Parser::new("x".repeat(1000).as_bytes()).with_max_line_len(500).next().unwrap().unwrap_err();
    assert_eq!((e.kind, e.column), (LineTooLong, 501));
    assert!(e.excerpt().len() <= crate::error::EXCERPT_MAX);
}

// ---- printing ----------------------------------------------------------------------

#[test]
fn write_line_is_canonical_and_reparses() {
    let input = r#"  m\ x,b\=k=v\,1,a=2   f=1.0,g=-0,h=1E3,i=+0i,j="\"\q",k=T,f=5u 123"#;
    // `+0i` is invalid; drop the plus.
    let input = input.replace("+0i", "0i");
    let l = one(&input);
    let mut out = Vec::new();
    crate::write_line(&mut out, &l);
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text, "m\\ x,b\\=k=v\\,1,a=2 g=-0,h=1000,i=0i,j=\"\\\"\\\\q\",k=true,f=5u 123\n");
    let again = Parser::new(&out).next().unwrap().unwrap();
    assert_eq!(again.to_point(), l.to_point());
    let p: Point = l.to_point();
    let mut out2 = Vec::new();
    p.write_to(&mut out2).unwrap();
    assert_eq!(out2, out);
}

#[test]
fn line_debug_shows_unescaped_content() {
    let l = one(r"m,t=a\ b f=1i 5");
    let dbg = format!("{l:?}");
    assert!(dbg.contains(r#"measurement: "m""#), "{dbg}");
    assert!(dbg.contains(r#"("t", "a b")"#), "{dbg}");
    assert!(dbg.contains(r#"("f", I64(1))"#), "{dbg}");
}

// ---- internals -------------------------------------------------------------------

#[test]
fn find_byte_matches_naive_search() {
    let mut hay = Vec::new();
    for len in 0..40 {
        for at in 0..=len {
            hay.clear();
            hay.extend((0..len).map(|i| if i % 7 == 3 { 0x8a } else { b'a' + (i % 26) as u8 }));
            if at < len {
                hay[at] = b'\n';
            }
            let naive = hay.iter().position(|&b| b == b'\n');
            assert_eq!(find_byte(b'\n', &hay), naive, "len {len} at {at}");
        }
    }
    // Bytes just above and below the needle, and a needle after a match-like run.
    assert_eq!(find_byte(b'\n', b"\x0b\x09\x0b\x09\x0b\x09\x0b\x09\x0b\n"), Some(9));
    assert_eq!(find_byte(0x01, &[0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]), Some(1));
    assert_eq!(find_byte(0x00, &[0x01, 0x01, 0x01, 0x00, 0x01, 0x00, 0x01, 0x01]), Some(3));
}

#[test]
fn parser_does_not_allocate_per_line_for_narrow_lines() {
    // The scratch key vector is reused: after the first line its capacity is
    // enough for the rest, so parsing more lines does not grow it.
    let body = "m,a=1,b=2 x=1,y=2\n".repeat(100);
    let mut p = Parser::new(body.as_bytes());
    p.next().unwrap().unwrap();
    let capacity = p.keys.capacity();
    for line in p.by_ref() {
        line.unwrap();
    }
    assert_eq!(p.keys.capacity(), capacity);
    assert!(p.table.capacity() == 0, "narrow lines use the pairwise check");
}

#[test]
fn sizes_stay_small() {
    // Moved through the iterator for every line: keep them compact.
    assert!(std::mem::size_of::<Line<'_>>() <= 136, "{}", std::mem::size_of::<Line<'_>>());
    assert!(std::mem::size_of::<LineError>() <= 96, "{}", std::mem::size_of::<LineError>());
}

#[test]
fn series_is_the_measurement_and_tags_as_written() {
    let input = b"  cpu,host=a,dc=x usage=1 5\nmem free=2\nmy\\ m,t\\ k=v\\,1 f=\"a b\"\r\n";
    let got: Vec<String> = Parser::new(input).map(|l| l.unwrap().series().to_owned()).collect();
    assert_eq!(got, ["cpu,host=a,dc=x", "mem", "my\\ m,t\\ k=v\\,1"]);
}
