use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use crate::model::FieldValue;
use crate::{
    DownsampleRule, Engine, EngineOptions, ScanRequest, SyncPolicy, TagPredicate, TimeRange, Values,
    WriteBatch,
};

const INTERVAL: i64 = 1_000;

fn open(dir: &std::path::Path) -> Engine {
    let mut o = EngineOptions::new(dir);
    o.shards = 2;
    o.sync = SyncPolicy::Never;
    o.memtable_size = 64 << 10;
    o.maintenance_interval = Duration::from_secs(3600);
    Engine::open(o).unwrap()
}

/// (host, ts) -> value: the source as the oracle sees it (last write wins).
type Source = BTreeMap<(u8, i64), f64>;
/// (host, bucket) -> (count, sum, min, max).
type Rollups = BTreeMap<(u8, i64), (i64, f64, f64, f64)>;

fn expected(src: &Source) -> Rollups {
    let mut out = Rollups::new();
    for ((h, t), v) in src {
        let e = out.entry((*h, t.div_euclid(INTERVAL) * INTERVAL)).or_insert((
            0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.min(*v);
        e.3 = e.3.max(*v);
    }
    out
}

fn actual(e: &Engine) -> Rollups {
    let req = ScanRequest {
        db: "rollup",
        measurement: "m_1s",
        predicate: &TagPredicate::All,
        fields: Some(&["v_count", "v_sum", "v_min", "v_max", "v_mean"]),
        range: TimeRange::ALL,
    };
    let mut out = Rollups::new();
    for s in e.scan(&req).unwrap() {
        let h: u8 = s.key.tag("host").unwrap()[1..].parse().unwrap();
        let col = |i: usize| &s.columns[i];
        let Values::I64(count) = &col(0).values else { panic!("count is an integer") };
        let f = |i: usize| match &col(i).values {
            Values::F64(v) => v.clone(),
            _ => panic!("float"),
        };
        let (sum, min, max, mean) = (f(1), f(2), f(3), f(4));
        for (k, t) in col(0).timestamps.iter().enumerate() {
            assert!((mean[k] - sum[k] / count[k] as f64).abs() < 1e-9);
            out.insert((h, *t), (count[k], sum[k], min[k], max[k]));
        }
    }
    out
}

fn assert_close(got: &Rollups, want: &Rollups) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (k, g) in got {
        let w = want[k];
        prop_assert_eq!(g.0, w.0, "count of {:?}", k);
        prop_assert!((g.1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0), "sum of {:?}: {} vs {}", k, g.1, w.1);
        prop_assert_eq!((g.2, g.3), (w.2, w.3), "min/max of {:?}", k);
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<(u8, i64, i32)>),
    Flush,
    Rollup,
    Delete { host: u8, start: i64, end: i64 },
    Reopen,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => proptest::collection::vec((0u8..3, 0i64..8_000, any::<i32>()), 1..40).prop_map(Op::Write),
        2 => Just(Op::Flush),
        2 => Just(Op::Rollup),
        1 => (0u8..3, 0i64..8_000, 0i64..3_000).prop_map(|(host, start, len)| Op::Delete { host, start, end: start + len }),
        1 => Just(Op::Reopen),
    ]
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut e = open(dir.path());
    e.create_database("raw").unwrap();
    e.create_database("rollup").unwrap();
    let rule = DownsampleRule {
        name: "1s".into(),
        source: "m".into(),
        target_db: "rollup".into(),
        target: "m_1s".into(),
        interval: INTERVAL,
    };
    e.create_downsample_rule("raw", rule.clone()).unwrap();
    let mut src = Source::new();
    for op in ops {
        match op {
            Op::Write(points) => {
                let mut b = WriteBatch::new();
                for (h, t, v) in &points {
                    let v = *v as f64 / 8.0;
                    b.point("m")
                        .tag("host", &format!("h{h}"))
                        .field("v", FieldValue::F64(v))
                        .finish(*t)
                        .unwrap();
                    src.insert((*h, *t), v);
                }
                e.write("raw", &b).unwrap();
            }
            Op::Flush => e.flush().unwrap(),
            Op::Rollup => {
                e.run_downsampling().unwrap();
            }
            Op::Delete { host, start, end } => {
                let pred = TagPredicate::Eq("host".into(), format!("h{host}"));
                e.delete("raw", Some("m"), &pred, TimeRange::new(start, end)).unwrap();
                src.retain(|(h, t), _| !(*h == host && (start..end).contains(t)));
            }
            Op::Reopen => {
                e.close().unwrap();
                drop(e);
                e = open(dir.path());
            }
        }
    }
    // Rollups cover flushed data: flush, roll up, compare.
    e.flush().unwrap();
    e.run_downsampling().unwrap();
    assert_close(&actual(&e), &expected(&src))?;
    prop_assert_eq!(e.downsample_rules("raw").unwrap(), vec![rule]);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn rollups_match_the_oracle(ops in proptest::collection::vec(arb_op(), 1..16)) {
        run(ops)?;
    }
}

/// A late point dirties only its bucket, and the rollup follows it.
#[test]
fn late_data_updates_its_bucket() {
    run(vec![
        Op::Write(vec![(0, 100, 8), (0, 5_100, 16)]),
        Op::Flush,
        Op::Rollup,
        Op::Write(vec![(0, 150, 80)]),
        Op::Flush,
        Op::Rollup,
        Op::Reopen,
    ])
    .unwrap();
}

#[test]
fn rules_are_validated_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("raw").unwrap();
    let rule = DownsampleRule {
        name: "r".into(),
        source: "m".into(),
        target_db: "missing".into(),
        target: "m_1m".into(),
        interval: 60_000_000_000,
    };
    assert!(e.create_downsample_rule("raw", rule.clone()).is_err(), "target database must exist");
    let rule = DownsampleRule { target_db: "raw".into(), ..rule };
    assert!(e.create_downsample_rule("raw", DownsampleRule { interval: 0, ..rule.clone() }).is_err());
    assert!(e.create_downsample_rule("raw", DownsampleRule { target: "m".into(), ..rule.clone() }).is_err());
    e.create_downsample_rule("raw", rule.clone()).unwrap();
    e.close().unwrap();
    drop(e);
    let e = open(dir.path());
    assert_eq!(e.downsample_rules("raw").unwrap(), vec![rule]);
    assert!(e.drop_downsample_rule("raw", "r").unwrap());
    assert!(!e.drop_downsample_rule("raw", "r").unwrap());
    assert!(e.downsample_rules("raw").unwrap().is_empty());
}

/// Deleting every source point of a bucket removes the bucket's rollup (not only recomputes
/// the buckets that still have points).
#[test]
fn deleting_a_whole_bucket_removes_its_rollup() {
    run(vec![
        Op::Write(vec![(0, 100, 8), (0, 900, 8), (0, 1_500, 16), (1, 200, 1)]),
        Op::Flush,
        Op::Rollup,
        Op::Delete { host: 0, start: 0, end: 1_000 },
        Op::Rollup,
    ])
    .unwrap();
}

/// Regression (found wiring up online backups): ranges were marked clean without the
/// maintenance lock, so a backup, which holds it from its flush to its catalog copy, could copy
/// a catalog saying "clean" for rollup points written after its flush, which it does not hold;
/// the restored database never recomputed those buckets. The clean record must wait for the
/// lock.
#[test]
fn ranges_are_marked_clean_only_under_the_maintenance_lock() {
    let dir = tempfile::tempdir().unwrap();
    let e = std::sync::Arc::new(open(dir.path()));
    e.create_database("raw").unwrap();
    e.create_database("rollup").unwrap();
    let rule = DownsampleRule {
        name: "1s".into(),
        source: "m".into(),
        target_db: "rollup".into(),
        target: "m_1s".into(),
        interval: INTERVAL,
    };
    e.create_downsample_rule("raw", rule).unwrap();
    let mut b = WriteBatch::new();
    b.point("m").tag("host", "h0").field("v", FieldValue::F64(1.0)).finish(100).unwrap();
    e.write("raw", &b).unwrap();
    e.flush().unwrap();
    let raw = e.inner.catalog.db_id("raw").unwrap();
    let written = || e.stats().points_written.load(std::sync::atomic::Ordering::Relaxed);
    let before = written();

    let held = e.inner.maintenance.lock();
    let rollup = {
        let e = e.clone();
        std::thread::spawn(move || e.run_downsampling().unwrap())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while written() == before {
        assert!(std::time::Instant::now() < deadline, "the rollup point was never written");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The rollup is written; unlocked, the clean record would follow within microseconds.
    std::thread::sleep(Duration::from_millis(50));
    assert!(!e.inner.catalog.dirty(raw, "1s").is_empty(), "marked clean while the maintenance lock was held");
    drop(held);
    assert_eq!(rollup.join().unwrap(), 1);
    assert!(e.inner.catalog.dirty(raw, "1s").is_empty());
}
