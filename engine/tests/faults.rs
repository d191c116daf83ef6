//! I/O fault injection: what the engine does when a file operation fails.
//!
//! Each test opens an engine whose [`Fs`] carries a [`Hook`] that fails chosen operations on
//! chosen files once armed, and checks the rule of `docs/operations.md` ("When the disk or the
//! file descriptors run out"): lack of file descriptors or disk space where nothing was torn
//! pushes back (a retryable error, nothing lost, no restart needed); a failed fsync, a torn
//! write or a failed unlink of flushed WAL files poisons (writes refused until reopened).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_engine::fsutil::{FaultHook, Fs, FsOp};
use strata_engine::{
    Engine, EngineOptions, FieldValue, FlushError, LifecycleError, RejectReason, ScanRequest, SyncPolicy,
    TagPredicate, TimeRange, WriteBatch, WriteError,
};

/// Fails `op` on files whose name ends with `suffix` while armed; optionally lets the first
/// `write` through short (`torn_after`: bytes of it that reach the file) before failing.
#[derive(Default)]
struct Hook {
    rule: Mutex<Option<(FsOp, &'static str, i32)>>,
    armed: AtomicBool,
    /// Writes cut to at most this many bytes (short writes the caller must loop over).
    short: AtomicUsize,
    /// 1: the next WAL write is cut to 7 bytes, and the call after it fails with `torn_errno`
    /// (ENOSPC when 0).
    torn: AtomicUsize,
    torn_errno: AtomicUsize,
    hits: AtomicUsize,
}

impl Hook {
    fn arm(&self, op: FsOp, suffix: &'static str, errno: i32) {
        *self.rule.lock() = Some((op, suffix, errno));
        self.armed.store(true, Ordering::SeqCst);
    }

    fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

impl FaultHook for Hook {
    fn fail(&self, op: FsOp, path: &Path) -> Option<io::Error> {
        let wal = path.to_string_lossy().ends_with(".wal");
        if op == FsOp::Write
            && wal
            && self.torn.compare_exchange(2, 0, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            let errno = match self.torn_errno.load(Ordering::SeqCst) {
                0 => libc::ENOSPC,
                e => e as i32,
            };
            return Some(io::Error::from_raw_os_error(errno));
        }
        if !self.armed.load(Ordering::SeqCst) {
            return None;
        }
        let (want, suffix, errno) = (*self.rule.lock())?;
        if op == want && path.to_string_lossy().ends_with(suffix) {
            self.hits.fetch_add(1, Ordering::SeqCst);
            return Some(io::Error::from_raw_os_error(errno));
        }
        None
    }

    fn short_write(&self, path: &Path, len: usize) -> Option<usize> {
        let wal = path.to_string_lossy().ends_with(".wal");
        if wal && self.torn.compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return Some(7.min(len));
        }
        match self.short.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n.min(len)),
        }
    }
}

fn open(dir: &Path, hook: &Arc<Hook>, sync: SyncPolicy) -> Engine {
    let mut o = EngineOptions::new(dir);
    o.shards = 1;
    o.sync = sync;
    o.memtable_size = 64 << 10;
    o.flush_retry_interval = Duration::from_millis(10);
    o.fs = Fs::with_hook(hook.clone());
    let e = Engine::open(o).unwrap();
    e.create_database("db").unwrap();
    e
}

fn reopen(dir: &Path) -> Engine {
    let mut o = EngineOptions::new(dir);
    o.shards = 1;
    Engine::open(o).unwrap()
}

fn batch(from: i64, n: i64) -> WriteBatch {
    let mut b = WriteBatch::new();
    for t in from..from + n {
        b.point("m").tag("host", "a").field("v", FieldValue::F64(t as f64)).finish(t).unwrap();
    }
    b
}

/// Timestamps stored for `m,host=a`.
fn stored(e: &Engine) -> Vec<i64> {
    let req = ScanRequest {
        db: "db",
        measurement: "m",
        predicate: &TagPredicate::All,
        fields: None,
        range: TimeRange::ALL,
    };
    e.scan(&req).unwrap().into_iter().flat_map(|s| s.columns).flat_map(|c| c.timestamps).collect()
}

#[test]
fn failed_wal_fsync_poisons_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Hook::default());
    let e = open(dir.path(), &hook, SyncPolicy::Always);
    e.write("db", &batch(0, 10)).unwrap();
    hook.arm(FsOp::Sync, ".wal", libc::EIO);
    assert!(matches!(e.write("db", &batch(10, 10)), Err(WriteError::Wal(_))));
    assert!(e.is_poisoned());
    hook.disarm();
    // Never retried and carried on: still refused although the fsync would work now.
    assert!(matches!(e.write("db", &batch(20, 10)), Err(WriteError::Poisoned)));
    e.simulate_crash();
    let e = reopen(dir.path());
    let got = stored(&e);
    assert!(got.starts_with(&(0..10).collect::<Vec<_>>()), "acknowledged points kept: {got:?}");
    assert!(!got.contains(&20));
}

#[test]
fn emfile_on_a_new_wal_file_pushes_back_and_recovers_without_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Hook::default());
    let e = open(dir.path(), &hook, SyncPolicy::Never);
    hook.arm(FsOp::Open, ".wal", libc::EMFILE);
    let mut acked = 0;
    let mut refused = None;
    for i in 0..2_000 {
        match e.write("db", &batch(i * 100, 100)) {
            Ok(o) => {
                assert_eq!(o.points_written, 100);
                acked = (i + 1) * 100;
            }
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    let err = refused.expect("a full memtable that cannot rotate its WAL refuses writes");
    assert!(matches!(err, WriteError::OutOfResources { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(!e.is_poisoned(), "EMFILE is push-back, not poison");
    assert!(hook.hits.load(Ordering::SeqCst) >= 1);
    hook.disarm();
    e.write("db", &batch(acked, 100)).unwrap();
    e.flush().unwrap();
    let want: Vec<i64> = (0..acked + 100).collect();
    assert_eq!(stored(&e), want);
    drop(e);
    assert_eq!(stored(&reopen(dir.path())), want);
}

#[test]
fn emfile_on_a_segment_file_retries_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Hook::default());
    let e = open(dir.path(), &hook, SyncPolicy::Never);
    e.write("db", &batch(0, 100)).unwrap();
    hook.arm(FsOp::Open, ".seg.tmp", libc::EMFILE);
    let err = e.flush().unwrap_err();
    assert!(matches!(err, FlushError::OutOfResources { .. }), "{err:?}");
    assert!(!e.is_poisoned());
    assert!(e.stats().flush_retries.load(Ordering::Relaxed) >= 1);
    // Writes still work while the flusher retries.
    e.write("db", &batch(100, 10)).unwrap();
    hook.disarm();
    e.flush().unwrap();
    assert!(!e.segment_files().is_empty());
    let want: Vec<i64> = (0..110).collect();
    assert_eq!(stored(&e), want);
    drop(e);
    assert_eq!(stored(&reopen(dir.path())), want);
}

#[test]
fn disk_full_before_a_wal_write_refuses_with_507_material_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Hook::default());
    let e = open(dir.path(), &hook, SyncPolicy::Always);
    e.write("db", &batch(0, 10)).unwrap();
    hook.arm(FsOp::Write, ".wal", libc::ENOSPC);
    let err = e.write("db", &batch(10, 10)).unwrap_err();
    assert!(matches!(err, WriteError::NoSpace { .. }), "{err:?}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(!e.is_poisoned(), "nothing was torn: no poison");
    hook.disarm();
    // Space is back: writes succeed without a reopen.
    e.write("db", &batch(20, 10)).unwrap();
    e.simulate_crash();
    let got = stored(&reopen(dir.path()));
    for t in (0..10).chain(20..30) {
        assert!(got.contains(&t), "acknowledged point {t} lost: {got:?}");
    }
}

#[test]
fn a_wal_write_cut_short_by_a_full_disk_is_cut_back_refused_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Hook::default());
    let e = open(dir.path(), &hook, SyncPolicy::Always);
    e.write("db", &batch(0, 10)).unwrap();
    // The next WAL write gets 7 bytes into the file, then the disk is full: what the kernel
    // does when the space runs out in the middle of a write.
    hook.torn.store(1, Ordering::SeqCst);
    let err = e.write("db", &batch(10, 10)).unwrap_err();
    assert!(matches!(err, WriteError::NoSpace { .. }), "{err:?}");
    assert!(!e.is_poisoned(), "the 7 bytes were cut off again: nothing is torn");
    // Space is back: later writes land after the cut, and replay reads every record.
    e.write("db", &batch(20, 10)).unwrap();
    e.simulate_crash();
    let got = stored(&reopen(dir.path()));
    // The refused records stay pending and the next commit writes them (like a write refused
    // before any byte landed): they may be there, once; the acknowledged ones must be.
    for t in (0..10).chain(20..30) {
        assert!(got.contains(&t), "acknowledged point {t} lost: {got:?}");
    }
    assert!(got.windows(2).all(|w| w[0] < w[1]) && got.iter().all(|t| (0..30).contains(t)), "{got:?}");
}

#[test]
fn a_wal_write_torn_by_an_io_error_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Hook::default());
    let e = open(dir.path(), &hook, SyncPolicy::Always);
    e.write("db", &batch(0, 10)).unwrap();
    // The next WAL write gets 7 bytes into the file, then the device fails.
    hook.torn_errno.store(libc::EIO as usize, Ordering::SeqCst);
    hook.torn.store(1, Ordering::SeqCst);
    let err = e.write("db", &batch(10, 10)).unwrap_err();
    assert!(matches!(err, WriteError::Wal(_)), "{err:?}");
    assert!(e.is_poisoned(), "a WAL append torn half-way poisons");
    assert!(matches!(e.write("db", &batch(20, 1)), Err(WriteError::Poisoned)));
    e.simulate_crash();
    let got = stored(&reopen(dir.path()));
    assert_eq!(got, (0..10).collect::<Vec<_>>(), "acknowledged points kept, the torn record cut");
}

#[test]
fn short_writes_are_completed() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Hook::default());
    hook.short.store(3, Ordering::SeqCst);
    let e = open(dir.path(), &hook, SyncPolicy::Always);
    for i in 0..20 {
        e.write("db", &batch(i * 50, 50)).unwrap();
    }
    e.flush().unwrap();
    e.write("db", &batch(1000, 50)).unwrap();
    e.simulate_crash();
    let want: Vec<i64> = (0..1050).collect();
    assert_eq!(stored(&reopen(dir.path())), want);
}

#[test]
fn failed_unlink_of_flushed_wal_files_poisons_and_the_delete_fails() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Hook::default());
    let e = open(dir.path(), &hook, SyncPolicy::Never);
    e.write("db", &batch(0, 10)).unwrap();
    hook.arm(FsOp::Remove, ".wal", libc::EIO);
    let err = e.delete("db", Some("m"), &TagPredicate::All, TimeRange::ALL).unwrap_err();
    assert!(matches!(err, LifecycleError::Flush(_)), "{err:?}");
    assert!(e.is_poisoned());
    assert_eq!(e.tombstone_count("db").unwrap(), 0, "no tombstone recorded on top of a stale WAL");
}

#[test]
fn a_delete_flushes_only_the_shards_holding_its_series() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = EngineOptions::new(dir.path());
    o.shards = 4;
    o.sync = SyncPolicy::Never;
    let e = Engine::open(o).unwrap();
    e.create_database("a").unwrap();
    e.create_database("b").unwrap();
    let many = |db: &str, from: i64| {
        let mut b = WriteBatch::new();
        for h in 0..32 {
            b.point("m").tag("host", &format!("h{h}")).field("v", FieldValue::F64(1.0)).finish(from).unwrap();
        }
        e.write(db, &b).unwrap();
    };
    many("a", 1);
    many("b", 1);
    e.flush().unwrap();
    many("b", 2);
    let flushes = e.stats().flushes.load(Ordering::Relaxed);
    // Database a has nothing in memory: its delete flushes nothing, b stays in memory.
    let n = e.delete("a", Some("m"), &TagPredicate::All, TimeRange::ALL).unwrap();
    assert_eq!(n, 32);
    assert_eq!(e.stats().flushes.load(Ordering::Relaxed), flushes, "a delete in a flushed b");
    assert!(e.memtable_bytes() > 0);
    // One series of a in memory: only its shard is flushed.
    let mut one = WriteBatch::new();
    one.point("m").tag("host", "x").field("v", FieldValue::F64(1.0)).finish(5).unwrap();
    e.write("a", &one).unwrap();
    let pred = TagPredicate::Eq("host".into(), "x".into());
    e.delete("a", Some("m"), &pred, TimeRange::ALL).unwrap();
    let after = e.stats().flushes.load(Ordering::Relaxed);
    assert_eq!(after, flushes + 1, "one shard flushed, not four");
    let req = ScanRequest {
        db: "a",
        measurement: "m",
        predicate: &TagPredicate::All,
        fields: None,
        range: TimeRange::ALL,
    };
    assert!(e.scan(&req).unwrap().iter().all(|s| s.columns.iter().all(|c| c.timestamps.is_empty())));
}

#[test]
fn new_field_keys_past_the_measurement_bound_are_refused_per_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = EngineOptions::new(dir.path());
    o.max_fields_per_measurement = 3;
    let e = Engine::open(o).unwrap();
    e.create_database("db").unwrap();
    let mut b = WriteBatch::new();
    for (i, f) in ["a", "b", "c", "d", "a"].iter().enumerate() {
        b.point("m").field(f, FieldValue::F64(1.0)).finish(i as i64).unwrap();
    }
    let out = e.write("db", &b).unwrap();
    assert_eq!(out.points_written, 4);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].index, 3);
    assert!(matches!(&out.rejected[0].reason, RejectReason::TooManyFields { limit: 3, .. }));
    assert!(out.rejected[0].reason.to_string().contains("max_fields_per_measurement"));
    // Another measurement has its own budget.
    let mut b = WriteBatch::new();
    b.point("other").field("d", FieldValue::F64(1.0)).finish(1).unwrap();
    assert!(e.write("db", &b).unwrap().rejected.is_empty());
}

#[test]
fn one_write_creates_a_bounded_number_of_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = EngineOptions::new(dir.path());
    o.max_new_partitions_per_write = 10;
    let e = Engine::open(o).unwrap();
    e.create_database("db").unwrap();
    const DAY: i64 = 86_400_000_000_000;
    let mut b = WriteBatch::new();
    // 5,000 days, two points a day.
    for d in 0..5_000 {
        for k in 0..2 {
            b.point("m").field("v", FieldValue::F64(1.0)).finish(d * DAY + k).unwrap();
        }
    }
    let out = e.write("db", &b).unwrap();
    assert_eq!(out.points_written, 20);
    assert_eq!(out.rejected.len(), 9_980);
    assert!(out
        .rejected
        .iter()
        .all(|r| matches!(r.reason, RejectReason::TooManyNewPartitions { limit: 10, .. })));
    e.flush().unwrap();
    let dirs = std::fs::read_dir(dir.path().join("dbs/db")).unwrap().count();
    assert_eq!(dirs, 10);
    // Existing partitions cost nothing: the same days again are all accepted.
    let mut b = WriteBatch::new();
    for d in 0..10 {
        b.point("m").field("v", FieldValue::F64(2.0)).finish(d * DAY).unwrap();
    }
    assert!(e.write("db", &b).unwrap().rejected.is_empty());
}

#[test]
fn disk_full_while_writing_a_segment_retries_the_flush_without_poison() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Arc::new(Hook::default());
    let e = open(dir.path(), &hook, SyncPolicy::Never);
    e.write("db", &batch(0, 100)).unwrap();
    hook.arm(FsOp::Write, ".seg.tmp", libc::ENOSPC);
    let err = e.flush().unwrap_err();
    assert!(matches!(err, FlushError::OutOfResources { .. }), "{err:?}");
    assert!(!e.is_poisoned());
    // The unpublished temporary file is removed, not left to fill the disk further.
    let tmp_left = e.segment_files().iter().any(|p| p.to_string_lossy().ends_with(".tmp"));
    assert!(!tmp_left);
    hook.disarm();
    e.flush().unwrap();
    let want: Vec<i64> = (0..100).collect();
    assert_eq!(stored(&e), want);
    drop(e);
    assert_eq!(stored(&reopen(dir.path())), want);
}
