//! Online backup and restore.
//!
//! A backup is a data directory without a WAL: the catalog log and every segment file, plus a
//! `BACKUP` description. [`Engine::backup`] flushes first, so every write acknowledged before
//! the call is in a segment, then hard-links the immutable segment files (copying when the
//! destination is on another file system) and copies the catalog log *after* listing the
//! segments: the catalog is append-only and synced before any segment that refers to it is
//! published, so the copy knows every series the listed segments hold. Compaction, retention
//! drops and database drops wait while the files are linked; writes and queries go on.
//!
//! [`restore`] verifies every segment's checksums and copies the backup into an empty data
//! directory, which `Engine::open` (or `strata serve --data-dir`) then opens like any other.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::engine::Engine;
use crate::error::LifecycleError;
use crate::segment::SegmentReader;

/// Name of the description file written into a backup.
pub const BACKUP_FILE: &str = "BACKUP";

/// What a backup or restore holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub databases: usize,
    pub segments: usize,
    pub bytes: u64,
    /// Segment files hard-linked rather than copied.
    pub linked: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LifecycleError {
    let path = path.to_owned();
    move |source| LifecycleError::Io { path, source }
}

fn empty_dir(dir: &Path) -> Result<(), LifecycleError> {
    if dir.exists() && fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(LifecycleError::Io {
            path: dir.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "directory is not empty"),
        });
    }
    fs::create_dir_all(dir).map_err(io(dir))
}

impl Engine {
    /// Writes a consistent snapshot of every database into `dest` (which must be empty or
    /// absent) while the engine keeps running.
    pub fn backup(&self, dest: &Path) -> Result<BackupReport, LifecycleError> {
        empty_dir(dest)?;
        let inner = &self.inner;
        let _admin = inner.admin.lock();
        let _maintenance = inner.maintenance.lock();
        self.flush()?;
        let mut report = BackupReport::default();
        let dbs: Vec<_> = inner.dbs.read().iter().map(|(id, s)| (*id, s.clone())).collect();
        for (db, storage) in dbs {
            let Some(name) = inner.catalog.db_name(db) else { continue };
            report.databases += 1;
            for part in storage.partitions.all() {
                let Some(dir_name) = part.dir.file_name() else { continue };
                let target_dir = dest.join("dbs").join(&name).join(dir_name);
                fs::create_dir_all(&target_dir).map_err(io(&target_dir))?;
                for seg in part.segments().iter() {
                    let file_name = seg.path.file_name().expect("segment path has a file name");
                    let target = target_dir.join(file_name);
                    if fs::hard_link(&seg.path, &target).is_ok() {
                        report.linked += 1;
                    } else {
                        fs::copy(&seg.path, &target).map_err(io(&seg.path))?;
                        fs::File::open(&target).and_then(|f| f.sync_all()).map_err(io(&target))?;
                    }
                    report.segments += 1;
                    report.bytes += fs::metadata(&target).map_err(io(&target))?.len();
                }
                crate::fsutil::sync_dir(&target_dir).map_err(io(&target_dir))?;
            }
        }
        // After the segment lists: the catalog then knows every series they refer to.
        inner.catalog.sync()?;
        let catalog_src = inner.opts.data_dir.join("catalog").join("catalog.log");
        let catalog_dir = dest.join("catalog");
        fs::create_dir_all(&catalog_dir).map_err(io(&catalog_dir))?;
        let catalog_dst = catalog_dir.join("catalog.log");
        fs::copy(&catalog_src, &catalog_dst).map_err(io(&catalog_src))?;
        fs::File::open(&catalog_dst).and_then(|f| f.sync_all()).map_err(io(&catalog_dst))?;
        report.bytes += fs::metadata(&catalog_dst).map_err(io(&catalog_dst))?.len();
        write_description(dest, &report)?;
        tracing::info!(dest = %dest.display(), segments = report.segments, bytes = report.bytes, "backup written");
        Ok(report)
    }
}

fn write_description(dir: &Path, report: &BackupReport) -> Result<(), LifecycleError> {
    let path = dir.join(BACKUP_FILE);
    let mut f = fs::File::create(&path).map_err(io(&path))?;
    writeln!(
        f,
        "strata backup\nversion = {}\ncreated_unix_ns = {}\ndatabases = {}\nsegments = {}\nbytes = {}",
        env!("CARGO_PKG_VERSION"),
        crate::model::now_ns(),
        report.databases,
        report.segments,
        report.bytes
    )
    .and_then(|_| f.sync_all())
    .map_err(io(&path))?;
    crate::fsutil::sync_dir(dir).map_err(io(dir))
}

/// Copies the backup in `backup` into the empty (or absent) data directory `data_dir`, after
/// verifying every segment's checksums. Nothing is written if a segment is corrupt.
pub fn restore(backup: &Path, data_dir: &Path) -> Result<BackupReport, LifecycleError> {
    if !backup.join(BACKUP_FILE).exists() {
        return Err(LifecycleError::Io {
            path: backup.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a Strata backup (no BACKUP file)"),
        });
    }
    let mut files: Vec<PathBuf> = Vec::new();
    collect_files(backup, &mut files)?;
    let mut report = BackupReport::default();
    for f in &files {
        if f.extension().is_some_and(|e| e == "seg") {
            SegmentReader::open(f)?.verify()?;
            report.segments += 1;
        }
    }
    empty_dir(data_dir)?;
    for f in &files {
        let rel = f.strip_prefix(backup).expect("collected under the backup");
        if rel == Path::new(BACKUP_FILE) {
            continue;
        }
        let target = data_dir.join(rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::copy(f, &target).map_err(io(f))?;
        fs::File::open(&target).and_then(|f| f.sync_all()).map_err(io(&target))?;
        report.bytes += fs::metadata(&target).map_err(io(&target))?.len();
    }
    report.databases = fs::read_dir(data_dir.join("dbs")).map(|d| d.count()).unwrap_or(0);
    Ok(report)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LifecycleError> {
    for e in fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        if p.is_dir() {
            collect_files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::FieldValue;
    use crate::{EngineOptions, ScanRequest, SyncPolicy, TagPredicate, TimeRange, WriteBatch};

    fn open(dir: &Path) -> Engine {
        let mut o = EngineOptions::new(dir);
        o.shards = 2;
        o.sync = SyncPolicy::Never;
        o.maintenance_interval = Duration::from_secs(3600);
        Engine::open(o).unwrap()
    }

    fn count(e: &Engine) -> usize {
        let req = ScanRequest {
            db: "db",
            measurement: "m",
            predicate: &TagPredicate::All,
            fields: None,
            range: TimeRange::ALL,
        };
        e.scan(&req).unwrap().iter().map(|s| s.columns[0].timestamps.len()).sum()
    }

    #[test]
    fn backup_under_writes_restores_everything_acknowledged_before_it() {
        let src = tempfile::tempdir().unwrap();
        let e = std::sync::Arc::new(open(src.path()));
        e.create_database("db").unwrap();
        let write = |e: &Engine, from: i64, n: i64| {
            let mut b = WriteBatch::new();
            for t in from..from + n {
                b.point("m").tag("h", "a").field("v", FieldValue::F64(t as f64)).finish(t).unwrap();
            }
            e.write("db", &b).unwrap();
        };
        write(&e, 0, 500);
        e.flush().unwrap();
        write(&e, 500, 500); // only in the memtable when the backup starts
        let writer = {
            let e = e.clone();
            std::thread::spawn(move || {
                for k in 0..20 {
                    write(&e, 10_000 + k * 100, 100);
                }
            })
        };
        let dest = tempfile::tempdir().unwrap();
        let report = e.backup(&dest.path().join("b")).unwrap();
        writer.join().unwrap();
        assert!(report.segments >= 2 && report.databases == 1, "{report:?}");
        assert!(e.backup(&dest.path().join("b")).is_err(), "a non-empty destination is refused");
        let restored = tempfile::tempdir().unwrap();
        let data = restored.path().join("data");
        restore(&dest.path().join("b"), &data).unwrap();
        let r = open(&data);
        let n = count(&r);
        assert!((1000..=3000).contains(&n), "everything acknowledged before the backup: {n}");
        drop(r);
        // A flipped byte in a backed-up segment is refused before anything is copied.
        let seg = fs::read_dir(dest.path().join("b/dbs/db")).unwrap().next().unwrap().unwrap().path();
        let seg = fs::read_dir(seg).unwrap().next().unwrap().unwrap().path();
        let mut bytes = fs::read(&seg).unwrap();
        bytes[40] ^= 0x55;
        fs::remove_file(&seg).unwrap(); // break the hard link before writing
        fs::write(&seg, bytes).unwrap();
        let other = restored.path().join("other");
        assert!(restore(&dest.path().join("b"), &other).is_err());
        assert!(!other.exists());
    }
}
