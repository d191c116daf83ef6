//! Property tests of the JSON write decoder (the in-suite companion of the `json_write` fuzz
//! target in `fuzz/`): arbitrary bytes, and JSON-shaped inputs built from point fragments,
//! never panic, and every point seen is either in the batch or counted as refused.

use proptest::prelude::*;
use strata_ingest::config::LimitsConfig;
use strata_ingest::{json, PointLimits};
use strata_lineproto::Precision;

fn limits() -> PointLimits {
    PointLimits::from_config(&LimitsConfig {
        max_tags_per_point: 4,
        max_fields_per_point: 4,
        max_name_length: 16,
        ..LimitsConfig::default()
    })
}

fn check(data: &[u8]) {
    if let Ok(d) = json::decode(data, Precision::Nanoseconds, 1_700_000_000_000_000_000, &limits()) {
        assert_eq!(
            d.batch.len_points() + d.errors.total,
            d.seen,
            "input {:?}",
            String::from_utf8_lossy(data)
        );
        assert!(d.errors.items.len() <= d.errors.total);
    }
}

/// Pieces of valid and nearly valid point objects, so generated inputs get past the JSON
/// syntax check often.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#""measurement":"m""#.to_string()),
        Just(r#""measurement":"""#.to_string()),
        Just(r#""measurement":7"#.to_string()),
        Just(r#""tags":{"a":"b"}"#.to_string()),
        Just(r#""tags":{"a":1}"#.to_string()),
        Just(r#""tags":{"":"x","b\u0000":"y"}"#.to_string()),
        Just(r#""fields":{"v":1.5}"#.to_string()),
        Just(r#""fields":{}"#.to_string()),
        Just(r#""fields":{"i":{"int":-9223372036854775808},"u":{"uint":18446744073709551615}}"#.to_string()),
        Just(r#""fields":{"i":{"int":9223372036854775808}}"#.to_string()),
        Just(r#""fields":{"s":"txt","b":true,"f":{"float":1e308}}"#.to_string()),
        Just(r#""fields":{"n":null}"#.to_string()),
        Just(r#""time":"2024-05-01T12:00:00Z""#.to_string()),
        Just(r#""time":"9999-99-99T99:99:99Z""#.to_string()),
        Just(r#""ts":-9223372036854775808"#.to_string()),
        Just(r#""ts":1e30"#.to_string()),
        Just(r#""field":{"v":1}"#.to_string()),
        "[a-z\"{}:,\\[\\]0-9.\\\\]{0,12}",
    ]
}

fn object() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..6).prop_map(|f| format!("{{{}}}", f.join(",")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&data);
    }

    #[test]
    fn json_shaped_inputs_never_panic(points in prop::collection::vec(object(), 0..6), array in any::<bool>()) {
        let text = if array || points.len() != 1 { format!("[{}]", points.join(",")) } else { points[0].clone() };
        check(text.as_bytes());
    }
}

#[test]
fn a_good_and_a_bad_point_are_both_accounted_for() {
    let body = br#"[{"measurement":"m","fields":{"v":1}},{"measurement":"m","fields":{}}]"#;
    let d = json::decode(body, Precision::Nanoseconds, 0, &limits()).expect("valid JSON");
    assert_eq!((d.seen, d.batch.len_points(), d.errors.total), (2, 1, 1));
}
