use proptest::prelude::*;

use super::*;
use crate::batch::{BatchIter, WriteBatch};

/// Encodes the points of `batch` as one record, naming series `i` (in order of first
/// appearance) by id when `durable(i)`, and decodes it back with those ids resolvable.
fn round_trip(batch: &WriteBatch, durable: impl Fn(u32) -> bool) -> (Vec<u8>, Vec<u8>) {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut enc = RecordEncoder::default();
    enc.begin("db");
    for p in batch.iter() {
        let p = p.unwrap();
        let id = match keys.iter().position(|k| k == p.key) {
            Some(i) => i as u32,
            None => {
                keys.push(p.key.to_vec());
                keys.len() as u32 - 1
            }
        };
        enc.push(SeriesId(id), durable(id), p.key, p.timestamp, p.field_bytes());
    }
    let payload = enc.payload().to_vec();
    let body = &payload[1 + 2..];
    let mut out = Vec::new();
    let skipped = decode(body, &mut out, true, |id, out| {
        out.extend_from_slice(&keys[id.0 as usize]);
        IdLookup::Found
    })
    .unwrap();
    assert_eq!(skipped, Skipped::default());
    (payload, out)
}

fn tsbs_like(lines: usize) -> WriteBatch {
    let mut b = WriteBatch::new();
    for i in 0..lines {
        let truck = format!("truck_{}", i % 50);
        let t = 1_700_000_000_000_000_000 + (i / 50) as i64 * 10_000_000_000;
        let mut p = b.point("readings");
        p.tag("name", &truck).tag("fleet", "East").tag("driver", "Derek").tag("model", "F-150");
        p.tag("device_version", "v1.0").tag("load_capacity", "1500").tag("fuel_capacity", "150");
        p.tag("nominal_fuel_consumption", "12");
        let f = |x: f64| FieldValue::F64(x);
        p.field("latitude", f(52.31854 + i as f64 * 1e-5))
            .field("longitude", f(4.71234))
            .field("elevation", f(120.0))
            .field("velocity", f(55.0))
            .field("heading", f(271.0))
            .field("grade", f(3.0))
            .field("fuel_consumption", f(24.7));
        p.finish(t).unwrap();
    }
    b
}

#[test]
fn points_round_trip_to_the_same_batch_bytes() {
    let b = tsbs_like(500);
    for durable in [true, false] {
        let (_, out) = round_trip(&b, |_| durable);
        assert_eq!(out, b.as_bytes(), "durable ids: {durable}");
    }
}

#[test]
fn durable_series_cost_a_small_fraction_of_the_batch() {
    let b = tsbs_like(1000);
    let (payload, _) = round_trip(&b, |_| true);
    let per_line = payload.len() as f64 / 1000.0;
    // About 22 bytes per line here; the batch format takes over 250.
    assert!(per_line < 30.0, "{per_line} bytes per line");
    assert!(b.encoded_len() as f64 / 1000.0 > 250.0);
    // Keys are logged once per record for series not yet durable.
    let (with_keys, _) = round_trip(&b, |_| false);
    assert!(with_keys.len() < payload.len() + 50 * 200, "{} vs {}", with_keys.len(), payload.len());
}

#[test]
fn floats_take_the_decimal_form_only_when_it_gives_the_same_bits() {
    for v in [0.0, 1.0, -1.5, 52.31854, 4.71234, 24.7, 1e15, 123456.789, -123.456] {
        let (m, k) = decimal(v).unwrap_or_else(|| panic!("{v} has a decimal form"));
        assert_eq!((m as f64 / POW10[k as usize]).to_bits(), v.to_bits(), "{v}");
    }
    assert_eq!(decimal(52.31854), Some((5231854, 5)));
    for v in [
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e300,
        f64::MIN_POSITIVE,
        std::f64::consts::PI * 1e-10,
        0.1 + 0.2,
    ] {
        assert_eq!(decimal(v), None, "{v}");
    }
}

#[test]
fn every_point_of_a_record_decodes_alone_of_other_records() {
    // Two records: the second redefines its keys and field sets rather than referring to the
    // first's tables.
    let b = tsbs_like(3);
    let mut enc = RecordEncoder::default();
    let mut sizes = Vec::new();
    for _ in 0..2 {
        enc.begin("db");
        for p in b.iter() {
            let p = p.unwrap();
            enc.push(SeriesId(0), false, p.key, p.timestamp, p.field_bytes());
        }
        sizes.push(enc.payload().len());
    }
    assert_eq!(sizes[0], sizes[1]);
}

#[test]
fn unknown_and_dropped_ids_are_refused_or_skipped() {
    let b = tsbs_like(4);
    let mut enc = RecordEncoder::default();
    enc.begin("db");
    for (i, p) in b.iter().enumerate() {
        let p = p.unwrap();
        enc.push(SeriesId(i as u32), true, p.key, p.timestamp, p.field_bytes());
    }
    let body = enc.payload()[3..].to_vec();
    let lookup = |id: SeriesId, out: &mut Vec<u8>| match id.0 {
        0 => IdLookup::Dropped,
        1 => IdLookup::Unknown,
        _ => {
            out.extend_from_slice(b.iter().nth(id.0 as usize).unwrap().unwrap().key);
            IdLookup::Found
        }
    };
    let err = decode(&body, &mut Vec::new(), true, lookup).unwrap_err();
    assert_eq!(err.reason, "series id unknown to the catalog");
    let mut out = Vec::new();
    let skipped = decode(&body, &mut out, false, lookup).unwrap();
    assert_eq!(skipped, Skipped { dropped: 1, unknown: 1, first_unknown: Some(SeriesId(1)) });
    let kept: Vec<i64> = BatchIter::over(&out).map(|p| p.unwrap().timestamp).collect();
    let want: Vec<i64> = b.iter().skip(2).map(|p| p.unwrap().timestamp).collect();
    assert_eq!(kept, want);
}

#[test]
fn many_field_sets_in_one_record_are_found_again() {
    let mut b = WriteBatch::new();
    for i in 0..40 {
        let name = format!("f{}", i % 20);
        b.point("m").tag("k", "v").field(&name, FieldValue::I64(i)).finish(i).unwrap();
    }
    let (payload, out) = round_trip(&b, |_| true);
    assert_eq!(out, b.as_bytes());
    // 20 field sets, each defined once: the second 20 points are a few bytes each.
    let (first_half, _) = round_trip(
        &{
            let mut h = WriteBatch::new();
            for p in b.iter().take(20) {
                let p = p.unwrap();
                let (name, v) = p.fields().next().unwrap();
                h.point("m").tag("k", "v").field(name, v).finish(p.timestamp).unwrap();
            }
            h
        },
        |_| true,
    );
    assert!(payload.len() - first_half.len() <= 20 * 5, "{} {}", payload.len(), first_half.len());
}

fn value() -> impl Strategy<Value = FieldValue<'static>> {
    prop_oneof![
        any::<u64>().prop_map(|b| FieldValue::F64(f64::from_bits(b))),
        (-1_000_000i64..1_000_000, 0u32..8)
            .prop_map(|(m, k)| FieldValue::F64(m as f64 / 10f64.powi(k as i32))),
        any::<i64>().prop_map(FieldValue::I64),
        any::<u64>().prop_map(FieldValue::U64),
        any::<bool>().prop_map(FieldValue::Bool),
        prop_oneof![Just(""), Just("x"), Just("a longer string, with \"quotes\"")].prop_map(FieldValue::Str),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::fuzzing::proptest_cases(64)))]

    /// Any points, any timestamps, any values, any mix of series named by id and by key:
    /// decoding gives back the exact batch bytes.
    #[test]
    fn any_batch_round_trips(
        points in proptest::collection::vec(
            (0u8..6, any::<i64>(), proptest::collection::vec((0u8..4, value()), 1..5)),
            1..40,
        ),
        durable_mask in any::<u8>(),
    ) {
        let mut b = WriteBatch::new();
        for (series, ts, fields) in &points {
            let mut p = b.point(if series % 2 == 0 { "a" } else { "b" });
            p.tag("s", &series.to_string());
            let mut seen = Vec::new();
            for (name, v) in fields {
                if seen.contains(name) {
                    continue;
                }
                seen.push(*name);
                p.field(&format!("f{name}"), *v);
            }
            p.finish(*ts).unwrap();
        }
        let (_, out) = round_trip(&b, |i| durable_mask & (1 << (i % 8)) != 0);
        prop_assert_eq!(out, b.as_bytes().to_vec());
    }
}
