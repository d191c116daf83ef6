//! WAL format compatibility: a data directory whose WAL was written by the previous format
//! (version 1, `tests/data/wal-v1/`, made by the engine of that time and left unflushed by a
//! simulated crash) opens, and every point it logged is read back. The fixture was written by
//! the `generate_v1_fixture` test of commit af758c1 (open with 2 shards, create `fx`, write
//! `fixture_batches()`, `simulate_crash`, remove `LOCK`), which the format-2 engine can no
//! longer run.

use std::fs;
use std::path::Path;

use strata_engine::{
    Engine, EngineOptions, FieldValue, ScanRequest, SyncPolicy, TagPredicate, TimeRange, Values, WriteBatch,
};

/// The batches the fixture holds, in write order.
fn fixture_batches() -> Vec<WriteBatch> {
    let mut out = Vec::new();
    let mut b = WriteBatch::new();
    for i in 0..20i64 {
        b.point("weather")
            .tag("location", if i % 2 == 0 { "us west" } else { "eu,north" })
            .tag("sensor", &format!("s{}", i % 3))
            .field("temp", FieldValue::F64(20.5 + i as f64 * 0.25))
            .field("count", FieldValue::I64(-7 * i))
            .field("big", FieldValue::U64(u64::MAX - i as u64))
            .field("ok", FieldValue::Bool(i % 3 == 0))
            .field("note", FieldValue::Str(if i % 4 == 0 { "hello \"world\"" } else { "" }))
            .finish(1_700_000_000_000_000_000 + i * 10_000_000_000)
            .unwrap();
    }
    out.push(b);
    let mut b = WriteBatch::new();
    for i in 0..30i64 {
        let v = match i % 5 {
            0 => 0.1 + 0.2,
            1 => -0.0,
            2 => 1e300,
            3 => -123.456,
            _ => i as f64 / 7.0,
        };
        b.point("cpu")
            .tag("host", &format!("h{}", i % 10))
            .field("usage", FieldValue::F64(v))
            // Out of order and repeated timestamps: the last write of a timestamp wins.
            .finish(1_700_000_000_000_000_000 - (i % 7) * 1_000_000_000)
            .unwrap();
    }
    out.push(b);
    out
}

/// What the fixture's points read back as: per (measurement, series key, field), the
/// timestamps and values, last write wins.
fn expected() -> Vec<(String, String, Vec<i64>, Values)> {
    use std::collections::BTreeMap;
    let mut cols: BTreeMap<(String, String, String), BTreeMap<i64, FieldValue<'static>>> = BTreeMap::new();
    for b in fixture_batches() {
        for p in b.iter() {
            let p = p.unwrap();
            let key = p.series_key();
            for (name, value) in p.fields() {
                let value = match value {
                    FieldValue::Str(s) => FieldValue::Str(Box::leak(s.to_owned().into_boxed_str())),
                    FieldValue::F64(v) => FieldValue::F64(v),
                    FieldValue::I64(v) => FieldValue::I64(v),
                    FieldValue::U64(v) => FieldValue::U64(v),
                    FieldValue::Bool(v) => FieldValue::Bool(v),
                };
                cols.entry((key.measurement.to_string(), key.to_string(), name.to_owned()))
                    .or_default()
                    .insert(p.timestamp, value);
            }
        }
    }
    cols.into_iter()
        .map(|((m, key, field), points)| {
            let first = *points.values().next().unwrap();
            let mut values = Values::new(first.field_type());
            for v in points.values() {
                match (&mut values, v) {
                    (Values::F64(a), FieldValue::F64(x)) => a.push(*x),
                    (Values::I64(a), FieldValue::I64(x)) => a.push(*x),
                    (Values::U64(a), FieldValue::U64(x)) => a.push(*x),
                    (Values::Bool(a), FieldValue::Bool(x)) => a.push(*x),
                    (Values::Str(a), FieldValue::Str(x)) => a.push((*x).to_owned()),
                    _ => panic!("one type per field"),
                }
            }
            (m, format!("{key} {field}"), points.keys().copied().collect(), values)
        })
        .collect()
}

fn opts(dir: &Path) -> EngineOptions {
    let mut o = EngineOptions::new(dir);
    o.shards = 2;
    o.sync = SyncPolicy::Always;
    o
}

fn read_back(e: &Engine) -> Vec<(String, String, Vec<i64>, Values)> {
    let mut out = Vec::new();
    for m in ["cpu", "weather"] {
        let req = ScanRequest {
            db: "fx",
            measurement: m,
            predicate: &TagPredicate::All,
            fields: None,
            range: TimeRange::ALL,
        };
        for s in e.scan(&req).unwrap() {
            for c in s.columns {
                out.push((m.to_owned(), format!("{} {}", s.key, c.field), c.timestamps, c.values));
            }
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// Floats as bits, so that `-0.0` read back as `0.0` is a difference.
fn bits(cols: Vec<(String, String, Vec<i64>, Values)>) -> Vec<(String, String, Vec<i64>, Values)> {
    cols.into_iter()
        .map(|(m, k, ts, v)| match v {
            Values::F64(f) => (m, k, ts, Values::U64(f.iter().map(|x| x.to_bits()).collect())),
            v => (m, k, ts, v),
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_data_dir_with_a_version_1_wal_opens_and_replays_every_point() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wal-v1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let e = Engine::open(opts(dir.path())).unwrap();
    assert_eq!(e.stats().wal_replayed_records.load(std::sync::atomic::Ordering::Relaxed), 4);
    let got = read_back(&e);
    assert_eq!(got.len(), expected().len());
    assert_eq!(bits(got), bits(expected()));
    drop(e);
    // Replayed data was flushed and the old files deleted: a second open reads segments only.
    let e = Engine::open(opts(dir.path())).unwrap();
    assert_eq!(e.stats().wal_replayed_records.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(bits(read_back(&e)), bits(expected()));
}
