use std::path::Path;
use std::time::Instant;

use super::*;
use crate::error::{OpenError, RejectReason};
use crate::model::{FieldValue, Values};
use crate::wal::SyncPolicy;

fn opts(dir: &Path) -> EngineOptions {
    let mut o = EngineOptions::new(dir);
    o.shards = 2;
    o.sync = SyncPolicy::Never;
    o.memtable_chunk_values = 4;
    o
}

fn batch(points: &[(&str, &str, i64, f64)]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for (m, host, ts, v) in points {
        b.point(m).tag("host", host).field("v", FieldValue::F64(*v)).finish(*ts).unwrap();
    }
    b
}

fn read_all(e: &Engine, db: &str, m: &str) -> Vec<(String, Vec<i64>, Values)> {
    let req = ScanRequest {
        db,
        measurement: m,
        predicate: &TagPredicate::All,
        fields: None,
        range: TimeRange::ALL,
    };
    let mut out: Vec<_> = e
        .scan(&req)
        .unwrap()
        .into_iter()
        .flat_map(|s| {
            let key = s.key.to_string();
            s.columns.into_iter().map(move |c| (format!("{key} {}", c.field), c.timestamps, c.values))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn write_read_flush_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(opts(dir.path())).unwrap();
    assert!(matches!(
        e.write("db", &batch(&[("cpu", "a", 1, 1.0)])),
        Err(WriteError::DatabaseNotFound { .. })
    ));
    e.create_database("db").unwrap();
    let out =
        e.write("db", &batch(&[("cpu", "a", 2, 2.0), ("cpu", "a", 1, 1.0), ("cpu", "b", 1, 9.0)])).unwrap();
    assert_eq!(out.points_written, 3);
    let want = vec![
        ("cpu,host=a v".to_string(), vec![1, 2], Values::F64(vec![1.0, 2.0])),
        ("cpu,host=b v".to_string(), vec![1], Values::F64(vec![9.0])),
    ];
    assert_eq!(read_all(&e, "db", "cpu"), want);
    e.flush().unwrap();
    assert!(!e.segment_files().is_empty());
    assert_eq!(read_all(&e, "db", "cpu"), want);
    assert!(e.stats().flushes.load(Ordering::Relaxed) >= 1);
    assert!(e.stats().flush_nanos.load(Ordering::Relaxed) > 0, "a flush takes some time");
    // Overwrite after flush: last write wins across segment and memtable.
    e.write("db", &batch(&[("cpu", "a", 2, 20.0)])).unwrap();
    let mut want2 = want.clone();
    want2[0].2 = Values::F64(vec![1.0, 20.0]);
    assert_eq!(read_all(&e, "db", "cpu"), want2);
    e.close().unwrap();
    drop(e);
    let e = Engine::open(opts(dir.path())).unwrap();
    assert_eq!(e.stats().wal_replayed_records.load(Ordering::Relaxed), 0, "clean shutdown replays nothing");
    assert_eq!(read_all(&e, "db", "cpu"), want2);
    assert_eq!(e.measurements("db").unwrap(), vec!["cpu"]);
    assert_eq!(e.tag_values("db", "cpu", "host").unwrap(), vec!["a", "b"]);
    assert_eq!(e.field_keys("db", "cpu").unwrap(), vec![("v".to_string(), FieldType::F64)]);
}

#[test]
fn unflushed_writes_are_replayed_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(opts(dir.path())).unwrap();
        e.create_database("db").unwrap();
        e.write("db", &batch(&[("m", "a", 5, 1.5), ("m", "b", 6, 2.5)])).unwrap();
        e.simulate_crash();
    }
    let e = Engine::open(opts(dir.path())).unwrap();
    assert!(e.stats().wal_replayed_records.load(Ordering::Relaxed) >= 1);
    let got = read_all(&e, "db", "m");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].2, Values::F64(vec![1.5]));
}

#[test]
fn second_open_of_a_locked_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _e = Engine::open(opts(dir.path())).unwrap();
    assert!(matches!(Engine::open(opts(dir.path())), Err(OpenError::Locked { .. })));
}

#[test]
fn field_type_conflict_rejects_only_that_point() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(opts(dir.path())).unwrap();
    e.create_database("db").unwrap();
    e.write("db", &batch(&[("m", "a", 1, 1.0)])).unwrap();
    let mut b = WriteBatch::new();
    b.point("m").tag("host", "a").field("v", FieldValue::I64(1)).finish(2).unwrap();
    b.point("m").tag("host", "z").field("v", FieldValue::F64(3.0)).finish(3).unwrap();
    let out = e.write("db", &b).unwrap();
    assert_eq!(out.points_written, 1);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].index, 0);
    assert!(matches!(out.rejected[0].reason, RejectReason::FieldTypeConflict { .. }));
    assert_eq!(read_all(&e, "db", "m").len(), 2);
}

#[test]
fn scans_filter_by_tags_fields_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(opts(dir.path())).unwrap();
    e.create_database("db").unwrap();
    let mut b = WriteBatch::new();
    for host in ["a", "b", "c"] {
        for t in 0..100 {
            b.point("m")
                .tag("host", host)
                .field("x", FieldValue::I64(t))
                .field("y", FieldValue::Bool(t % 2 == 0))
                .field("s", FieldValue::Str("hello"))
                .finish(t * 1000)
                .unwrap();
        }
    }
    e.write("db", &b).unwrap();
    let pred = TagPredicate::or(
        TagPredicate::Eq("host".into(), "a".into()),
        TagPredicate::Regex("host".into(), regex::Regex::new("^c$").unwrap()),
    );
    for flushed in [false, true] {
        if flushed {
            e.flush().unwrap();
        }
        let res = e
            .scan(&ScanRequest {
                db: "db",
                measurement: "m",
                predicate: &pred,
                fields: Some(&["y", "x"]),
                range: TimeRange::new(10_000, 20_000),
            })
            .unwrap();
        assert_eq!(res.len(), 2, "flushed={flushed}");
        for s in &res {
            assert_eq!(s.columns.len(), 2);
            assert_eq!(&*s.columns[0].field, "y");
            assert_eq!(s.columns[1].timestamps, (10..20).map(|t| t * 1000).collect::<Vec<_>>());
            assert_eq!(s.columns[1].values, Values::I64((10..20).collect()));
        }
    }
}

#[test]
fn partitions_outside_the_range_are_never_opened() {
    let dir = tempfile::tempdir().unwrap();
    let day = 86_400_000_000_000i64;
    {
        let e = Engine::open(opts(dir.path())).unwrap();
        e.create_database("db").unwrap();
        e.write("db", &batch(&[("m", "a", 0, 1.0), ("m", "a", day, 2.0), ("m", "a", 5 * day, 3.0)])).unwrap();
        e.close().unwrap();
    }
    let e = Engine::open(opts(dir.path())).unwrap();
    assert_eq!(e.open_segment_count(), 0);
    let res = e
        .scan(&ScanRequest {
            db: "db",
            measurement: "m",
            predicate: &TagPredicate::All,
            fields: None,
            range: TimeRange::new(day, 2 * day),
        })
        .unwrap();
    assert_eq!(res[0].columns[0].timestamps, vec![day]);
    assert_eq!(e.open_segment_count(), 1);
}

#[test]
fn backpressure_reports_overload_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.shards = 1;
    o.memtable_size = 64 << 10;
    o.max_frozen_memtables = 1;
    o.write_stall_timeout = Duration::from_millis(200);
    let e = Engine::open(o).unwrap();
    e.create_database("db").unwrap();
    let mut written = 0u64;
    for i in 0..2000 {
        let mut b = WriteBatch::new();
        for j in 0..100 {
            b.point("m")
                .tag("host", &format!("h{}", j % 50))
                .field("v", FieldValue::F64(j as f64))
                .finish(i * 100 + j)
                .unwrap();
        }
        match e.write("db", &b) {
            Ok(o) => written += o.points_written as u64,
            Err(WriteError::Overloaded) => {}
            Err(err) => panic!("{err}"),
        }
        // Memory stays bounded by the active + frozen limits (with slack for one batch).
        assert!(e.memtable_bytes() < 3 * (64 << 10) + (64 << 10), "memtable grew to {}", e.memtable_bytes());
    }
    e.flush().unwrap();
    let total: usize = read_all(&e, "db", "m").iter().map(|c| c.1.len()).sum();
    assert_eq!(total as u64, written);
}

#[test]
fn invalid_options_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.shards = 0;
    assert!(matches!(Engine::open(o), Err(OpenError::InvalidOption { option: "shards", .. })));
    let e = Engine::open(opts(dir.path())).unwrap();
    for bad in ["", "../x", "a/b", ".hidden", "sp ace"] {
        assert!(matches!(e.create_database(bad), Err(WriteError::InvalidDatabase { .. })), "{bad}");
    }
}

#[test]
fn unsynced_writes_skip_the_fsync_then_the_periodic_sync_covers_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.sync = SyncPolicy::Always;
    let e = Engine::open(o).unwrap();
    e.create_database("db").unwrap();
    let wal = &e.stats().wal;
    let before = wal.fsyncs();
    e.write_unsynced("db", &batch(&[("m", "a", 1, 1.0), ("m", "b", 2, 2.0)])).unwrap();
    e.write_unsynced("db", &batch(&[("m", "a", 3, 3.0)])).unwrap();
    // Readable at once, written to the OS, but not fsynced by the writer.
    assert_eq!(read_all(&e, "db", "m").len(), 2);
    assert!(wal.writes.load(Ordering::Relaxed) >= 2);
    let after_writes = wal.fsyncs();
    assert!(after_writes - before <= 1, "at most the periodic sync ran: {before} -> {after_writes}");
    // The periodic sync (every UNSYNCED_SYNC_EVERY under Always) makes them durable.
    let deadline = Instant::now() + UNSYNCED_SYNC_EVERY * 5;
    while wal.fsyncs() == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(wal.fsyncs() > before, "unsynced writes were never fsynced");
    // A synced write waits for its own fsync.
    let n = wal.fsyncs();
    e.write("db", &batch(&[("m", "a", 4, 4.0)])).unwrap();
    assert!(wal.fsyncs() > n);
    // And both kinds survive a crash of the process (they reached the OS).
    e.write_unsynced("db", &batch(&[("m", "c", 5, 5.0)])).unwrap();
    e.simulate_crash();
    let e = Engine::open(opts(dir.path())).unwrap();
    assert_eq!(read_all(&e, "db", "m").len(), 3);
}
