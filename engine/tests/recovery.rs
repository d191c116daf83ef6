//! Opening after damage: a torn tail is cut, damage before intact records refuses to open
//! (naming file and offset) unless `Recovery::DropDamaged`, and series ids are never handed out
//! again after the catalog lost records.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use strata_engine::wal::Recovery;
use strata_engine::{
    Engine, EngineOptions, FieldValue, OpenError, ScanRequest, SyncPolicy, TagPredicate, TimeRange, WalError,
    WriteBatch,
};

fn opts(dir: &Path, recovery: Recovery) -> EngineOptions {
    let mut o = EngineOptions::new(dir);
    o.shards = 1;
    o.sync = SyncPolicy::Always;
    o.recovery = recovery;
    o
}

fn point(host: &str, t: i64) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.point("m").tag("host", host).field("v", FieldValue::F64(t as f64)).finish(t).unwrap();
    b
}

fn stored(e: &Engine, host: &str) -> Vec<i64> {
    let pred = TagPredicate::Eq("host".into(), host.into());
    let req =
        ScanRequest { db: "db", measurement: "m", predicate: &pred, fields: None, range: TimeRange::ALL };
    e.scan(&req).unwrap().into_iter().flat_map(|s| s.columns).flat_map(|c| c.timestamps).collect()
}

fn wal_file(dir: &Path) -> PathBuf {
    let d = dir.join("wal/00");
    let mut files: Vec<PathBuf> = fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.pop().unwrap()
}

#[test]
fn wal_damage_before_intact_records_refuses_to_open_until_drop_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap();
    e.create_database("db").unwrap();
    for t in 0..5 {
        e.write("db", &point("a", t)).unwrap();
    }
    e.simulate_crash();
    let path = wal_file(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes[16 + 12] ^= 0x20; // inside the first record's payload
    fs::write(&path, &bytes).unwrap();

    let err = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap_err();
    assert!(matches!(err, OpenError::Wal(WalError::Damaged { offset: 16, .. })), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("offset 16"), "{msg}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "a refused open changes nothing");

    let e = Engine::open(opts(dir.path(), Recovery::DropDamaged)).unwrap();
    assert_eq!(e.stats().recovery_dropped_ranges.load(Ordering::Relaxed), 1);
    assert_eq!(stored(&e, "a"), vec![1, 2, 3, 4], "only the damaged record is dropped");
}

#[test]
fn a_torn_wal_tail_is_cut_and_the_engine_opens() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap();
    e.create_database("db").unwrap();
    for t in 0..3 {
        e.write("db", &point("a", t)).unwrap();
    }
    e.simulate_crash();
    let path = wal_file(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 5).unwrap();
    let e = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap();
    assert_eq!(e.stats().wal_truncated_tails.load(Ordering::Relaxed), 1);
    assert_eq!(stored(&e, "a"), vec![0, 1]);
}

#[test]
fn series_ids_are_not_reused_after_the_catalog_lost_records() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog/catalog.log");
    let e = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap();
    e.create_database("db").unwrap();
    e.write("db", &point("a", 1)).unwrap();
    e.flush().unwrap();
    let before_b = fs::metadata(&catalog).unwrap().len();
    e.write("db", &point("b", 2)).unwrap();
    e.flush().unwrap(); // b's points are in a segment under b's id
    drop(e);
    // The catalog loses b's record (cut in its middle: a torn tail).
    fs::OpenOptions::new().write(true).open(&catalog).unwrap().set_len(before_b + 5).unwrap();
    let e = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap();
    e.write("db", &point("c", 3)).unwrap();
    assert_eq!(stored(&e, "c"), vec![3], "c got b's id and shows b's points");
    assert_eq!(stored(&e, "a"), vec![1]);
}
