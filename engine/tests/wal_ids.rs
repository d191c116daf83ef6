//! The WAL names a series by catalog id only once the catalog record of that id is durable;
//! until then its records carry the series key. These tests crash the engine at each side of
//! that line and check that replay restores every acknowledged point, and that a WAL naming
//! ids the catalog lost (catalog damage) is refused, or dropped under `drop-damaged`.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_engine::error::CatalogError;
use strata_engine::fsutil::{FaultHook, Fs, FsOp};
use strata_engine::wal::Recovery;
use strata_engine::{
    Engine, EngineOptions, FieldValue, OpenError, ScanRequest, SyncPolicy, TagPredicate, TimeRange,
    WriteBatch,
};

/// Fails every write of the catalog log with ENOSPC while armed: its records stay in memory,
/// as if the machine lost power before they reached the disk.
#[derive(Default)]
struct CatalogFull(AtomicBool);

impl FaultHook for CatalogFull {
    fn fail(&self, op: FsOp, path: &Path) -> Option<io::Error> {
        let hit = self.0.load(Ordering::SeqCst) && op == FsOp::Write && path.ends_with("catalog.log");
        hit.then(|| io::Error::from_raw_os_error(libc::ENOSPC))
    }
}

fn opts(dir: &Path, recovery: Recovery) -> EngineOptions {
    let mut o = EngineOptions::new(dir);
    o.shards = 1;
    o.sync = SyncPolicy::Always;
    o.recovery = recovery;
    o
}

fn batch(hosts: std::ops::Range<u32>, t: i64) -> WriteBatch {
    let mut b = WriteBatch::new();
    for h in hosts {
        b.point("m")
            .tag("host", &format!("host-{h:04}"))
            .tag("rack", "a fairly long tag value that makes a key cost bytes")
            .field("v", FieldValue::F64(t as f64 + 0.5))
            .finish(t)
            .unwrap();
    }
    b
}

/// (host, timestamps) of every stored series.
fn stored(e: &Engine) -> Vec<(String, Vec<i64>)> {
    let req = ScanRequest {
        db: "db",
        measurement: "m",
        predicate: &TagPredicate::All,
        fields: None,
        range: TimeRange::ALL,
    };
    let mut out: Vec<_> = e
        .scan(&req)
        .unwrap()
        .into_iter()
        .map(|s| {
            let host = s.key.tags.iter().find(|(k, _)| &**k == "host").unwrap().1.to_string();
            (host, s.columns.into_iter().flat_map(|c| c.timestamps).collect())
        })
        .collect();
    out.sort();
    out
}

fn appended(e: &Engine) -> u64 {
    e.stats().wal.appended_bytes.load(Ordering::Relaxed)
}

/// Writes one point to each of `hosts` at `t` and returns the WAL bytes it took.
fn write_cost(e: &Engine, hosts: std::ops::Range<u32>, t: i64) -> u64 {
    let before = appended(e);
    e.write("db", &batch(hosts, t)).unwrap();
    appended(e) - before
}

/// Writes rounds of points to `hosts` until a round is logged by id (the catalog-sync thread
/// made the series durable), at most 10 s. Returns the timestamps written.
fn write_until_logged_by_id(e: &Engine, hosts: std::ops::Range<u32>, mut t: i64) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut written = Vec::new();
    loop {
        let cost = write_cost(e, hosts.clone(), t);
        written.push(t);
        t += 1;
        // By key a point costs over 60 bytes here; by id under 10.
        if cost < 10 * hosts.len() as u64 + 32 {
            return written;
        }
        assert!(Instant::now() < deadline, "series never logged by id (last round {cost} bytes)");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn points_of_series_whose_catalog_record_never_reached_the_disk_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(CatalogFull::default());
    let mut o = opts(dir.path(), Recovery::Strict);
    o.fs = Fs::with_hook(hook.clone());
    let e = Engine::open(o).unwrap();
    e.create_database("db").unwrap();
    hook.0.store(true, Ordering::SeqCst);
    // The catalog cannot be synced, so the series stay unknown on disk: every record carries
    // their keys, and replay re-creates the series from them.
    for t in 0..20 {
        let cost = write_cost(&e, 0..50, t);
        assert!(cost > 50 * 60, "round {t}: {cost} bytes: the keys are in the record");
    }
    e.simulate_crash();
    let e = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap();
    let got = stored(&e);
    assert_eq!(got.len(), 50);
    assert!(got.iter().all(|(_, ts)| *ts == (0..20).collect::<Vec<_>>()), "{got:?}");
}

#[test]
fn series_are_logged_by_id_once_durable_and_replay_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap();
    e.create_database("db").unwrap();
    let first = write_cost(&e, 0..50, 0);
    let mut want = vec![0];
    want.extend(write_until_logged_by_id(&e, 0..50, 1));
    let by_id = write_cost(&e, 0..50, 1000);
    want.push(1000);
    assert!(by_id * 5 < first, "by id {by_id} bytes, by key {first}");
    // New series beside known ones: only the new carry keys.
    let mixed = write_cost(&e, 0..60, 1001);
    assert!(mixed > by_id && mixed < first, "{mixed}");
    e.simulate_crash();

    let e = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap();
    let got = stored(&e);
    assert_eq!(got.len(), 60);
    for (host, ts) in &got {
        let n: u32 = host[5..].parse().unwrap();
        let expect: Vec<i64> = if n < 50 { want.iter().copied().chain([1001]).collect() } else { vec![1001] };
        assert_eq!(ts, &expect, "{host}");
    }
}

#[test]
fn a_wal_naming_ids_the_damaged_catalog_lost_is_refused_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap();
    e.create_database("db").unwrap();
    write_until_logged_by_id(&e, 0..2, 0);
    // A later catalog record, so damage to the series records is not a torn tail.
    e.create_database("other").unwrap();
    write_cost(&e, 0..2, 500);
    e.simulate_crash();

    // Flip a byte inside the first series record: the catalog refuses to open (strict), or
    // drops it (drop-damaged) and the WAL's points of that id go with it.
    let cat = dir.path().join("catalog/catalog.log");
    let mut bytes = fs::read(&cat).unwrap();
    let at = bytes.windows(9).position(|w| w == b"host-0000").expect("the first series record");
    bytes[at] ^= 0x20;
    fs::write(&cat, &bytes).unwrap();

    let err = Engine::open(opts(dir.path(), Recovery::Strict)).unwrap_err();
    assert!(matches!(err, OpenError::Catalog(CatalogError::Damaged { .. })), "{err:?}");
    let e = Engine::open(opts(dir.path(), Recovery::DropDamaged)).unwrap();
    let got = stored(&e);
    // host-0001 keeps every point; host-0000 only those its WAL records logged by key (replay
    // re-created the series from them), not those logged by its lost id.
    let ts = |host: &str| got.iter().find(|(h, _)| h == host).map(|(_, ts)| ts.clone()).unwrap_or_default();
    assert!(ts("host-0001").contains(&500), "{got:?}");
    assert!(ts("host-0000").contains(&0) && !ts("host-0000").contains(&500), "{got:?}");
    // The catalog range and at least one WAL record's points of the lost id.
    assert!(e.stats().recovery_dropped_ranges.load(Ordering::Relaxed) >= 2);
}
