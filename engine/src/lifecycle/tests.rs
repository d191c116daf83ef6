use std::path::Path;
use std::time::Duration;

use crate::model::FieldValue;
use crate::{
    Engine, EngineOptions, RejectReason, RetentionPolicy, ScanRequest, SyncPolicy, TagPredicate, TimeRange,
    WriteBatch,
};

use crate::model::now_ns;

const HOUR: i64 = 3_600_000_000_000;

fn open(dir: &Path) -> Engine {
    let mut o = EngineOptions::new(dir);
    o.shards = 2;
    o.sync = SyncPolicy::Never;
    o.partition_duration = Duration::from_secs(3600);
    // Maintenance is driven by the tests themselves.
    o.maintenance_interval = Duration::from_secs(3600);
    Engine::open(o).unwrap()
}

fn write(e: &Engine, db: &str, host: &str, points: &[(i64, f64)]) -> usize {
    let mut b = WriteBatch::new();
    for (ts, v) in points {
        b.point("m").tag("host", host).field("v", FieldValue::F64(*v)).finish(*ts).unwrap();
    }
    let out = e.write(db, &b).unwrap();
    out.points_written
}

fn timestamps(e: &Engine, db: &str) -> Vec<(String, Vec<i64>)> {
    let req = ScanRequest {
        db,
        measurement: "m",
        predicate: &TagPredicate::All,
        fields: None,
        range: TimeRange::ALL,
    };
    e.scan(&req)
        .unwrap()
        .into_iter()
        .map(|s| (s.key.to_string(), s.columns.into_iter().flat_map(|c| c.timestamps).collect()))
        .collect()
}

#[test]
fn retention_hides_refuses_and_drops_expired_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("db").unwrap();
    let now = now_ns();
    let old = now - 5 * HOUR;
    let recent = now - HOUR / 2;
    write(&e, "db", "a", &[(old, 1.0), (recent, 2.0)]);
    e.flush().unwrap();
    assert_eq!(e.retention_policy("db").unwrap(), RetentionPolicy::default());
    let rp = RetentionPolicy { name: "short".into(), duration: Some(2 * HOUR), partition_duration: None };
    e.set_retention_policy("db", rp.clone()).unwrap();
    // Hidden at once, before any partition is dropped.
    assert_eq!(timestamps(&e, "db"), vec![("m,host=a".to_string(), vec![recent])]);
    // Writes past the cutoff are refused, the rest of the batch is kept.
    let mut b = WriteBatch::new();
    b.point("m").tag("host", "a").field("v", FieldValue::F64(3.0)).finish(old).unwrap();
    b.point("m").tag("host", "a").field("v", FieldValue::F64(4.0)).finish(now).unwrap();
    let out = e.write("db", &b).unwrap();
    assert_eq!(out.points_written, 1);
    assert!(
        matches!(out.rejected[0].reason, RejectReason::BeyondRetention { timestamp, .. } if timestamp == old)
    );
    let files_before = e.segment_files().len();
    assert_eq!(e.enforce_retention().unwrap(), 1, "the partition of `old` is past the cutoff");
    assert_eq!(e.segment_files().len(), files_before - 1);
    assert!(!e
        .segment_files()
        .iter()
        .any(|p| p.to_string_lossy().contains(&format!("{}_", old - old % HOUR))));
    assert_eq!(e.enforce_retention().unwrap(), 0);
    e.close().unwrap();
    drop(e);
    let e = open(dir.path());
    assert_eq!(e.retention_policy("db").unwrap(), rp);
    assert_eq!(timestamps(&e, "db"), vec![("m,host=a".to_string(), vec![recent, now])]);
    assert!(e.set_retention_policy("db", RetentionPolicy { duration: Some(0), ..rp }).is_err());
}

#[test]
fn drop_database_removes_files_and_the_name_can_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("db").unwrap();
    write(&e, "db", "a", &[(1, 1.0)]);
    e.flush().unwrap();
    write(&e, "db", "a", &[(2, 2.0)]); // only in the memtable and WAL
    assert!(e.drop_database("db").unwrap());
    assert!(!e.database_exists("db"));
    assert!(!dir.path().join("dbs/db").exists());
    assert!(!e.drop_database("db").unwrap());
    e.create_database("db").unwrap();
    assert!(timestamps(&e, "db").is_empty());
    write(&e, "db", "b", &[(3, 3.0)]);
    e.simulate_crash();
    let e = open(dir.path());
    assert_eq!(timestamps(&e, "db"), vec![("m,host=b".to_string(), vec![3])]);
}

#[test]
fn interrupted_database_drop_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path());
        e.create_database("db").unwrap();
        write(&e, "db", "a", &[(1, 1.0)]);
        e.close().unwrap();
    }
    // A copy of the directory as a crash between the catalog record and the delete leaves it.
    let copy = dir.path().join("keep");
    std::fs::rename(dir.path().join("dbs/db"), &copy).unwrap();
    {
        let e = open(dir.path());
        assert!(e.drop_database("db").unwrap());
        e.close().unwrap();
    }
    std::fs::rename(&copy, dir.path().join("dbs/db")).unwrap();
    let e = open(dir.path());
    assert!(!dir.path().join("dbs/db").exists());
    assert!(!e.database_exists("db"));
}

#[test]
fn dropped_series_come_back_empty_under_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("db").unwrap();
    write(&e, "db", "a", &[(1, 1.0), (2, 2.0)]);
    write(&e, "db", "b", &[(1, 1.0)]);
    assert_eq!(e.drop_measurement("db", "m").unwrap(), 2);
    assert!(e.measurements("db").unwrap().is_empty());
    // The field type is free again once the measurement is gone.
    let mut b = WriteBatch::new();
    b.point("m").tag("host", "a").field("v", FieldValue::I64(7)).finish(5).unwrap();
    assert_eq!(e.write("db", &b).unwrap().points_written, 1);
    assert_eq!(timestamps(&e, "db"), vec![("m,host=a".to_string(), vec![5])]);
    e.simulate_crash();
    let e = open(dir.path());
    assert_eq!(timestamps(&e, "db"), vec![("m,host=a".to_string(), vec![5])]);
    assert_eq!(e.series_count("db").unwrap(), 1);
}

#[test]
fn compaction_merges_into_one_segment_and_crash_leftovers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("db").unwrap();
    for round in 0..4i64 {
        // Overlapping rounds: each rewrites the previous round's last point.
        let pts: Vec<(i64, f64)> = (round * 10..round * 10 + 11).map(|t| (t, round as f64)).collect();
        write(&e, "db", "a", &pts);
        e.flush().unwrap();
    }
    e.delete("db", Some("m"), &TagPredicate::All, TimeRange::new(0, 5)).unwrap();
    let before = timestamps(&e, "db");
    let inputs = e.segment_files();
    assert_eq!(inputs.len(), 4);
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> =
        inputs.iter().map(|p| (p.clone(), std::fs::read(p).unwrap())).collect();
    let report = e.compact().unwrap();
    assert_eq!((report.partitions, report.segments_in), (1, 4));
    let after = e.segment_files();
    assert_eq!(after.len(), 1);
    let name = after[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with("-g1.seg"), "{name}");
    assert_eq!(timestamps(&e, "db"), before);
    assert_eq!(before[0].1, (5..41).collect::<Vec<_>>());
    // The tombstoned points are physically gone.
    let r = crate::segment::SegmentReader::open(&after[0]).unwrap();
    assert_eq!(r.blocks().iter().map(|b| b.count as usize).sum::<usize>(), 36);
    assert_eq!(r.blocks()[0].min_ts, 5);
    e.close().unwrap();
    drop(e);
    // A crash after the output was published but before the inputs were deleted.
    for (p, bytes) in &saved {
        std::fs::write(p, bytes).unwrap();
    }
    let e = open(dir.path());
    assert_eq!(e.segment_files().len(), 1, "replaced inputs are deleted at open");
    assert_eq!(timestamps(&e, "db"), before);
    // Newer data after compaction still wins over the compacted copy.
    write(&e, "db", "a", &[(20, 99.0)]);
    e.flush().unwrap();
    e.compact().unwrap();
    let req = ScanRequest {
        db: "db",
        measurement: "m",
        predicate: &TagPredicate::All,
        fields: None,
        range: TimeRange::inclusive(20, 20),
    };
    let got = e.scan(&req).unwrap();
    assert_eq!(got[0].columns[0].values, crate::Values::F64(vec![99.0]));
    assert!(e.segment_files()[0].to_string_lossy().ends_with("-g2.seg"));
}

#[test]
fn new_databases_get_the_default_retention_and_keep_it_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let open_with_default = || {
        let mut o = EngineOptions::new(dir.path());
        o.shards = 1;
        o.sync = SyncPolicy::Never;
        o.maintenance_interval = Duration::from_secs(3600);
        o.default_retention = Some(Duration::from_secs(7 * 86_400));
        Engine::open(o).unwrap()
    };
    {
        // A database from before the default was configured keeps "forever".
        let e = open(dir.path());
        e.create_database("old").unwrap();
    }
    let e = open_with_default();
    e.create_database("new").unwrap();
    // Creating it again (every auto-created write does) must not reset a policy set since.
    let week = 7 * 24 * HOUR;
    assert_eq!(e.retention_policy("new").unwrap().duration, Some(week));
    e.set_retention_policy("new", RetentionPolicy { duration: Some(2 * week), ..RetentionPolicy::default() })
        .unwrap();
    e.create_database("new").unwrap();
    assert_eq!(e.retention_policy("new").unwrap().duration, Some(2 * week));
    assert_eq!(e.retention_policy("old").unwrap().duration, None);
    e.create_database("fresh").unwrap();
    drop(e);
    // Without the option the policies stay what they were when created.
    let e = open(dir.path());
    assert_eq!(e.retention_policy("fresh").unwrap().duration, Some(week));
    assert_eq!(e.retention_policy("new").unwrap().duration, Some(2 * week));
    assert_eq!(e.retention_policy("old").unwrap().duration, None);
}

#[test]
fn a_default_retention_under_an_hour_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = EngineOptions::new(dir.path());
    o.default_retention = Some(Duration::from_secs(60));
    let Err(err) = Engine::open(o).map(drop) else { panic!("a 60 s default retention was accepted") };
    let err = err.to_string();
    assert!(err.contains("default_retention"), "{err}");
}

fn tombstones(e: &Engine, db: &str) -> usize {
    e.tombstone_count(db).unwrap()
}

/// Compacts only the partition starting at `start` (a pass that stopped halfway, say).
fn compact_one(e: &Engine, db: &str, start: i64) {
    let inner = &e.inner;
    let _maintenance = inner.maintenance.lock();
    let id = inner.catalog.db_id(db).unwrap();
    let storage = inner.dbs.read().get(&id).cloned().unwrap();
    let part = storage.partitions.all().into_iter().find(|p| p.start == start).unwrap();
    let ts = inner.catalog.tombstones(id);
    let applied = crate::partition::applied_set(&ts);
    let mut report = crate::compaction::CompactionReport::default();
    inner.compact_partition(id, &part, &ts, &applied, &mut report).unwrap();
    assert_eq!(report.partitions, 1);
}

#[test]
fn tombstones_are_collected_once_compaction_rewrote_what_they_hide() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("db").unwrap();
    let pts: Vec<(i64, f64)> = (0..20).map(|t| (t, 1.0)).collect();
    write(&e, "db", "a", &pts[..10]);
    write(&e, "db", "b", &pts[..10]);
    e.flush().unwrap();
    write(&e, "db", "a", &pts[10..]);
    write(&e, "db", "b", &pts[10..]);
    e.flush().unwrap();
    e.delete("db", Some("m"), &TagPredicate::Eq("host".into(), "a".into()), TimeRange::new(5, 15)).unwrap();
    // Written after the delete, inside its range: must stay visible. It stays in the memtable
    // until after the compaction, so the output's number is below the tombstone's.
    write(&e, "db", "a", &[(7, 2.0)]);
    assert_eq!(tombstones(&e, "db"), 1);
    // Nothing was rewritten yet: collection alone keeps it.
    assert_eq!(e.inner.collect_tombstones().unwrap(), 0);
    assert_eq!(tombstones(&e, "db"), 1);

    e.compact().unwrap();
    // The output keeps the inputs' highest number (below the tombstone's) and host a's block
    // still spans 0..20, so only "compaction applied it" can tell the tombstone is done.
    let files = e.segment_files();
    assert_eq!(files.len(), 1);
    let r = crate::segment::SegmentReader::open(&files[0]).unwrap();
    assert!(r.blocks().iter().any(|b| b.min_ts < 5 && b.max_ts >= 15), "a block straddles the range");
    assert_eq!(tombstones(&e, "db"), 0, "compaction made the tombstone obsolete");
    e.flush().unwrap();
    assert_eq!(e.inner.catalog.tombstones(e.inner.catalog.db_id("db").unwrap()).len(), 0);
    let want_a: Vec<i64> = (0..5).chain([7]).chain(15..20).collect();
    let want = vec![("m,host=a".to_string(), want_a), ("m,host=b".to_string(), (0..20).collect())];
    assert_eq!(timestamps(&e, "db"), want);
    e.close().unwrap();
    drop(e);
    let e = open(dir.path());
    assert_eq!(tombstones(&e, "db"), 0, "the removal record replays");
    assert_eq!(timestamps(&e, "db"), want);
    // New deletes still work after a collection.
    e.delete("db", Some("m"), &TagPredicate::Eq("host".into(), "b".into()), TimeRange::new(0, 3)).unwrap();
    assert_eq!(tombstones(&e, "db"), 1);
    assert_eq!(timestamps(&e, "db")[1].1, (3..20).collect::<Vec<_>>());
}

#[test]
fn a_tombstone_stays_while_an_uncompacted_segment_still_holds_its_points() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("db").unwrap();
    // Two partitions, two segments each; the delete spans both.
    for round in 0..2 {
        let base = round as f64;
        write(&e, "db", "a", &[(10 + round, base), (HOUR + 10 + round, base)]);
        write(&e, "db", "b", &[(10 + round, base), (HOUR + 10 + round, base)]);
        e.flush().unwrap();
    }
    e.delete("db", Some("m"), &TagPredicate::Eq("host".into(), "a".into()), TimeRange::new(0, 2 * HOUR))
        .unwrap();
    compact_one(&e, "db", 0);
    assert_eq!(e.inner.collect_tombstones().unwrap(), 0);
    assert_eq!(tombstones(&e, "db"), 1, "the second partition still holds host a's deleted points");
    let want = vec![("m,host=b".to_string(), vec![10, 11, HOUR + 10, HOUR + 11])];
    assert_eq!(timestamps(&e, "db"), want);
    // A crash here: the tombstone is still in the catalog and still hides the old segments.
    e.simulate_crash();
    let e = open(dir.path());
    assert_eq!(tombstones(&e, "db"), 1);
    assert_eq!(timestamps(&e, "db"), want);
    e.compact().unwrap();
    assert_eq!(tombstones(&e, "db"), 0);
    assert_eq!(timestamps(&e, "db"), want);
    // A crash right after the collection: the removal record is durable.
    e.simulate_crash();
    let e = open(dir.path());
    assert_eq!(tombstones(&e, "db"), 0);
    assert_eq!(timestamps(&e, "db"), want);
}

#[test]
fn per_series_tombstones_only_wait_for_their_own_series() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("db").unwrap();
    write(&e, "db", "a", &[(10, 1.0), (20, 1.0)]);
    write(&e, "db", "b", &[(10, 1.0), (20, 1.0)]);
    e.flush().unwrap();
    // Host c has no data: its tombstone hides nothing anywhere, though its time range
    // overlaps the segment (the time-only check would keep it).
    write(&e, "db", "c", &[(HOUR + 1, 1.0)]);
    e.flush().unwrap();
    e.delete("db", Some("m"), &TagPredicate::Eq("host".into(), "c".into()), TimeRange::new(0, 100)).unwrap();
    // Host a's points at 10 and 20: blocks that do not overlap 30..40.
    e.delete("db", Some("m"), &TagPredicate::Eq("host".into(), "a".into()), TimeRange::new(30, 40)).unwrap();
    e.delete("db", Some("m"), &TagPredicate::Eq("host".into(), "b".into()), TimeRange::new(15, 40)).unwrap();
    assert_eq!(tombstones(&e, "db"), 3);
    assert_eq!(e.inner.collect_tombstones().unwrap(), 2, "only b's tombstone hides a block");
    assert_eq!(tombstones(&e, "db"), 1);
    e.simulate_crash();
    let e = open(dir.path());
    assert_eq!(tombstones(&e, "db"), 1);
    assert_eq!(
        timestamps(&e, "db"),
        vec![
            ("m,host=a".to_string(), vec![10, 20]),
            ("m,host=b".to_string(), vec![10]),
            ("m,host=c".to_string(), vec![HOUR + 1]),
        ]
    );
}

#[test]
fn retention_drops_take_their_tombstones_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("db").unwrap();
    let now = now_ns();
    let old = now - 5 * HOUR;
    let recent = now - HOUR / 2;
    write(&e, "db", "a", &[(old, 1.0), (old + 1, 1.0), (recent, 2.0), (recent + 1, 2.0)]);
    e.flush().unwrap();
    let a = TagPredicate::Eq("host".into(), "a".into());
    e.delete("db", Some("m"), &a, TimeRange::new(old, old + 1)).unwrap();
    e.delete("db", Some("m"), &a, TimeRange::new(recent, recent + 1)).unwrap();
    assert_eq!(tombstones(&e, "db"), 2);
    let rp = RetentionPolicy { name: "short".into(), duration: Some(2 * HOUR), partition_duration: None };
    e.set_retention_policy("db", rp).unwrap();
    assert_eq!(e.enforce_retention().unwrap(), 1);
    assert_eq!(tombstones(&e, "db"), 1, "the recent partition still holds the second one's point");
    e.close().unwrap();
    drop(e);
    let e = open(dir.path());
    assert_eq!(tombstones(&e, "db"), 1);
    assert_eq!(timestamps(&e, "db"), vec![("m,host=a".to_string(), vec![recent + 1])]);
}

#[test]
fn segment_numbers_stay_above_collected_tombstones() {
    // The model test's regression (`delete_everything_then_crash`-style): a delete of
    // everything, compaction leaves no file, the tombstone is collected. The next segment
    // number must not go back below the collected tombstone's `before_segment`.
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("db").unwrap();
    write(&e, "db", "a", &[(10, 1.0)]);
    e.flush().unwrap();
    e.delete("db", None, &TagPredicate::All, TimeRange::ALL).unwrap();
    let before = e.inner.next_segment.load(std::sync::atomic::Ordering::SeqCst);
    e.compact().unwrap();
    assert!(e.segment_files().is_empty());
    assert_eq!(tombstones(&e, "db"), 0);
    e.simulate_crash();
    let e = open(dir.path());
    assert_eq!(tombstones(&e, "db"), 0);
    assert!(e.inner.next_segment.load(std::sync::atomic::Ordering::SeqCst) >= before);
    write(&e, "db", "a", &[(10, 3.0)]);
    e.flush().unwrap();
    assert_eq!(timestamps(&e, "db"), vec![("m,host=a".to_string(), vec![10])]);
}

#[test]
fn a_shorter_then_longer_partition_duration_still_flushes() {
    // Partitions of an hour, then of a day: the day's aligned start is the hour partition's,
    // which does not hold a point two hours in. The flush used to be handed that partition
    // and never advanced.
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    e.create_database("db").unwrap();
    let hour = 3_600_000_000_000i64;
    let rp = |d: i64| RetentionPolicy { partition_duration: Some(d), ..RetentionPolicy::default() };
    e.set_retention_policy("db", rp(hour)).unwrap();
    write(&e, "db", "a", &[(hour / 2, 1.0)]);
    e.flush().unwrap();
    e.set_retention_policy("db", rp(24 * hour)).unwrap();
    write(&e, "db", "a", &[(2 * hour, 2.0), (30 * hour, 3.0)]);
    e.flush().unwrap();
    assert_eq!(timestamps(&e, "db"), vec![("m,host=a".to_string(), vec![hour / 2, 2 * hour, 30 * hour])]);
    e.close().unwrap();
    drop(e);
    let e = open(dir.path());
    assert_eq!(timestamps(&e, "db"), vec![("m,host=a".to_string(), vec![hour / 2, 2 * hour, 30 * hour])]);
}
