//! The series catalog: databases, series ids, field types and the tag index, persisted as an
//! append-only log (`catalog/catalog.log`, same framing as the WAL).
//!
//! Durability rule: a catalog record must be durable before any segment that refers to its id is
//! published. New records are buffered and [`Catalog::sync`] runs before every flush publishes
//! segments. A record lost in a crash is harmless: no segment refers to it, and the WAL still
//! holds the points, whose replay re-creates the series (possibly under another id).
//!
//! The WAL names a series by id only once its record is durable ([`Catalog::durable_series`]);
//! before that a WAL record carries the series key, so no WAL record ever names an id that a
//! crash can take from the catalog.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;

use crate::batch::{decode_series_key, Reader};
use crate::error::{CatalogError, RejectReason, WalError};
use crate::fsutil::{self, Fs, FsFile};
use crate::index::{TagIndex, TagPredicate};
use crate::model::{DbId, FieldType, SeriesId, SeriesKey, TimeRange};
use crate::wal::{frame_record, log_header, replay_log_with, Recovery, ReplayMode};

pub const CATALOG_MAGIC: &[u8; 8] = b"STRATCAT";
pub const CATALOG_VERSION: u16 = 1;

/// How far the id of one series or database record may skip past the highest id before it.
/// Ids are dense and skip only past records lost to damage (see
/// [`Catalog::reserve_series_ids`]); a damaged id must neither size the series table (16 MiB
/// per skip at most) nor bring the next database id near `u32::MAX`.
const MAX_ID_SKIP: usize = 1 << 20;

const REC_DATABASE: u8 = 1;
const REC_SERIES: u8 = 2;
const REC_FIELD: u8 = 3;
const REC_DROP_DATABASE: u8 = 4;
const REC_DROP_SERIES: u8 = 5;
const REC_TOMBSTONE: u8 = 6;
const REC_RETENTION: u8 = 7;
const REC_RULE: u8 = 8;
const REC_DROP_RULE: u8 = 9;
const REC_DIRTY: u8 = 10;
const REC_CLEAN: u8 = 11;
const REC_DROP_TOMBSTONE: u8 = 12;

/// A downsampling rule: every `interval` of `source` (a measurement of this database) is
/// summarised into `target` in database `target_db` (same tags; per numeric field `f`, fields
/// `f_count`, `f_sum`, `f_min`, `f_max`, `f_mean`; time = bucket start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownsampleRule {
    pub name: String,
    pub source: String,
    pub target_db: String,
    pub target: String,
    /// Bucket width in nanoseconds.
    pub interval: i64,
}

/// A time range of a rule's source that changed since its rollup was last computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirtyRange {
    pub seq: u64,
    pub range: TimeRange,
}

/// Deleted data: points of `series` with timestamps in `range`, in segments whose sequence is
/// below `before_segment`. Newer segments and memtables hold only data written after the delete
/// (the engine flushes before recording one), which the tombstone must not hide.
#[derive(Debug, Clone, PartialEq)]
pub struct Tombstone {
    pub series: RoaringBitmap,
    pub range: TimeRange,
    pub before_segment: u64,
}

impl Tombstone {
    /// Whether this tombstone hides anything of `series` in `[min, max]` of segment `seq`.
    pub fn hides(&self, seq: u64, series: SeriesId, min: i64, max: i64) -> bool {
        seq < self.before_segment && self.range.overlaps(min, max) && self.series.contains(series.0)
    }
}

/// How long a database keeps data and how it is partitioned. One policy per database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub name: String,
    /// Nanoseconds; `None` keeps data forever.
    pub duration: Option<i64>,
    /// Nanoseconds; `None` uses the engine's default partition duration.
    pub partition_duration: Option<i64>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy { name: "autogen".into(), duration: None, partition_duration: None }
    }
}

/// What the catalog knows about one series.
#[derive(Debug, Clone)]
pub struct SeriesMeta {
    pub db: DbId,
    pub key: Arc<SeriesKey>,
}

/// A measurement's schema and postings.
#[derive(Debug, Default, Clone)]
pub struct MeasurementMeta {
    pub fields: BTreeMap<String, FieldType>,
    pub index: TagIndex,
}

/// A database's metadata.
#[derive(Debug, Default, Clone)]
pub struct DatabaseMeta {
    pub id: Option<DbId>,
    pub name: String,
    pub measurements: BTreeMap<String, MeasurementMeta>,
    pub series_count: u64,
    pub tombstones: Vec<Arc<Tombstone>>,
    pub retention: RetentionPolicy,
    pub rules: Vec<DownsampleRule>,
    /// Per rule name, ranges waiting for their rollup.
    pub dirty: HashMap<String, Vec<DirtyRange>>,
}

#[derive(Default)]
struct State {
    dbs: HashMap<DbId, DatabaseMeta>,
    db_by_name: HashMap<String, DbId>,
    next_db: u32,
    /// Indexed by `SeriesId`; `None` for dropped or never-persisted ids.
    series: Vec<Option<SeriesMeta>>,
    next_dirty: u64,
    /// The highest `before_segment` of any tombstone ever recorded, removed ones included
    /// (every tombstone record stays in the log, so replay rebuilds it). See
    /// [`Catalog::max_tombstone_segment`].
    tombstone_floor: u64,
}

struct Log {
    file: FsFile,
    pending: Vec<u8>,
    payload: Vec<u8>,
    /// A write or fsync of the log failed: the file may end in a torn record, and anything
    /// appended after it would be lost on replay (which stops at the first bad record), so
    /// no later sync succeeds until the engine is reopened (the WAL's fsyncgate rule).
    failed: bool,
}

/// The catalog. Reads take a read lock; only new databases, series and fields write.
pub struct Catalog {
    path: PathBuf,
    state: RwLock<State>,
    log: Mutex<Log>,
    max_series_per_db: u64,
    max_fields_per_measurement: usize,
    /// Records were cut off (a torn tail) or dropped (damage) at open: ids that segments use
    /// may have lost their record, see [`Catalog::lost_records`].
    lost_records: bool,
    /// Every series id below this has its record durable (fsynced) in the log.
    durable_series: AtomicU32,
    /// One past the highest series id whose record was appended (durable or not).
    appended_series: AtomicU32,
}

/// How to open a catalog.
#[derive(Debug, Clone)]
pub struct CatalogOptions {
    pub max_series_per_db: u64,
    /// New field keys of a measurement past this many are refused.
    pub max_fields_per_measurement: usize,
    pub recovery: Recovery,
    pub fs: Fs,
}

impl CatalogOptions {
    pub fn new(max_series_per_db: u64) -> CatalogOptions {
        CatalogOptions {
            max_series_per_db,
            max_fields_per_measurement: usize::MAX,
            recovery: Recovery::Strict,
            fs: Fs::default(),
        }
    }
}

impl Catalog {
    /// Opens (or creates) the catalog in `dir`, truncating a torn tail.
    pub fn open(dir: &Path, max_series_per_db: u64) -> Result<Catalog, CatalogError> {
        Catalog::open_with(dir, &CatalogOptions::new(max_series_per_db))
    }

    /// Opens (or creates) the catalog in `dir`. A torn tail is truncated; damage before intact
    /// records is refused ([`CatalogError::Damaged`]) or, under [`Recovery::DropDamaged`],
    /// skipped and logged.
    pub fn open_with(dir: &Path, opts: &CatalogOptions) -> Result<Catalog, CatalogError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CatalogError::Io { path, source }
        };
        opts.fs.create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("catalog.log");
        let header = log_header(CATALOG_MAGIC, CATALOG_VERSION);
        let mut state = State::default();
        let mut lost_records = false;
        if path.exists() {
            let mut offset = 0u64;
            let drop_damaged = opts.recovery == Recovery::DropDamaged;
            let mode = ReplayMode { last: true, recovery: opts.recovery };
            let stats = replay_log_with(&path, &header, mode, |rec| {
                if let Err(reason) = apply_record(&mut state, rec) {
                    if !drop_damaged {
                        return Err(WalError::Io {
                            path: path.clone(),
                            source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
                        });
                    }
                    lost_records = true;
                    tracing::error!(file = %path.display(), offset, reason, "catalog record does not decode; dropped (recovery = drop-damaged)");
                }
                offset += rec.len() as u64 + 8;
                Ok(())
            })
            .map_err(|e| match e {
                WalError::Io { path, source } if source.kind() == std::io::ErrorKind::InvalidData => {
                    CatalogError::Corrupt { path, offset, reason: "record does not decode" }
                }
                WalError::Io { path, source } | WalError::OutOfResources { path, source } => {
                    CatalogError::Io { path, source }
                }
                WalError::BadHeader { path } => {
                    CatalogError::Corrupt { path, offset: 0, reason: "bad header" }
                }
                WalError::Damaged { path, offset, bytes_after } => {
                    CatalogError::Damaged { path, offset, bytes_after }
                }
                WalError::Poisoned => unreachable!("replay never poisons"),
            })?;
            for d in &stats.dropped {
                lost_records = true;
                tracing::error!(file = %path.display(), offset = d.offset, bytes = d.bytes, "damaged catalog bytes dropped (recovery = drop-damaged)");
            }
            if let Some(at) = stats.truncated_at {
                lost_records = true;
                tracing::warn!(path = %path.display(), offset = at, "catalog had a torn tail; truncated");
            }
        }
        let mut file =
            opts.fs.open(&path, OpenOptions::new().create(true).append(true)).map_err(io(&path))?;
        if file.metadata().map_err(io(&path))?.len() < header.len() as u64 {
            file.set_len(0).map_err(io(&path))?;
            file.write_all_counted(&header).map_err(|(_, e)| io(&path)(e))?;
            file.sync_all().map_err(io(&path))?;
            opts.fs.sync_dir(dir).map_err(io(dir))?;
        } else {
            // What was read may be records an earlier process wrote but never synced (it was
            // killed): they are in the page cache, not necessarily on disk. Synced now, they
            // are durable, as `durable_series` says of every series read.
            file.sync_data().map_err(io(&path))?;
        }
        let series = u32::try_from(state.series.len()).unwrap_or(u32::MAX);
        Ok(Catalog {
            path,
            state: RwLock::new(state),
            log: Mutex::new(Log { file, pending: Vec::new(), payload: Vec::new(), failed: false }),
            max_series_per_db: opts.max_series_per_db,
            max_fields_per_measurement: opts.max_fields_per_measurement,
            lost_records,
            durable_series: AtomicU32::new(series),
            appended_series: AtomicU32::new(series),
        })
    }

    /// Whether opening cut off or dropped records. A lost series record would let its id be
    /// handed out again while segments still hold data under it, so the engine then raises the
    /// next id past every id its segments and tombstones use ([`Catalog::reserve_series_ids`]).
    pub fn lost_records(&self) -> bool {
        self.lost_records
    }

    /// Every series id below this has a durable record: the WAL may name them by id alone.
    pub fn durable_series(&self) -> u32 {
        self.durable_series.load(Ordering::Acquire)
    }

    /// One past the highest series id handed out (or reserved): an id below it without a
    /// series was dropped, or its record was lost (see [`Catalog::lost_records`]).
    pub fn series_id_end(&self) -> u32 {
        u32::try_from(self.state.read().series.len()).unwrap_or(u32::MAX)
    }

    /// Whether a series record was appended since the last sync (see [`Catalog::sync`]).
    pub fn has_unsynced_series(&self) -> bool {
        self.appended_series.load(Ordering::Acquire) > self.durable_series.load(Ordering::Acquire)
    }

    /// Makes sure no series id below `next` is ever handed out.
    pub fn reserve_series_ids(&self, next: u32) {
        let mut st = self.state.write();
        if st.series.len() < next as usize {
            st.series.resize(next as usize, None);
        }
    }

    /// The highest series id any tombstone names (tombstones outlive dropped series records).
    pub fn max_tombstone_series(&self) -> Option<u32> {
        let st = self.state.read();
        st.dbs.values().flat_map(|d| d.tombstones.iter()).filter_map(|t| t.series.max()).max()
    }

    fn append(&self, log: &mut Log, build: impl FnOnce(&mut Vec<u8>)) {
        log.payload.clear();
        build(&mut log.payload);
        let Log { pending, payload, .. } = log;
        frame_record(payload, pending);
    }

    /// Makes every buffered record durable. A write that fails before any byte reached the file
    /// for lack of resources keeps the records buffered and returns
    /// [`CatalogError::OutOfResources`] (retry later); any other failure is final until reopen.
    pub fn sync(&self) -> Result<(), CatalogError> {
        let mut log = self.log.lock();
        if log.pending.is_empty() {
            return Ok(());
        }
        if log.failed {
            log.pending.clear(); // never written: do not let it grow
            return Err(CatalogError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("an earlier write of the catalog failed; reopen the engine"),
            });
        }
        // Under the log lock no series record is appended: this one covers every id below.
        let appended = self.appended_series.load(Ordering::Acquire);
        let Log { file, pending, failed, .. } = &mut *log;
        match file.write_all_counted(pending) {
            Err((0, source)) if fsutil::is_resource_exhausted(&source) => {
                return Err(CatalogError::OutOfResources { path: self.path.clone(), source });
            }
            Err((_, source)) => {
                pending.clear();
                *failed = true;
                return Err(CatalogError::Io { path: self.path.clone(), source });
            }
            Ok(()) => pending.clear(),
        }
        let res = file.sync_data();
        *failed = res.is_err();
        if res.is_ok() {
            self.durable_series.fetch_max(appended, Ordering::AcqRel);
        }
        res.map_err(|source| CatalogError::Io { path: self.path.clone(), source })
    }

    /// Looks a database up by name.
    pub fn db_id(&self, name: &str) -> Option<DbId> {
        self.state.read().db_by_name.get(name).copied()
    }

    /// Returns the id of database `name`, creating it if needed.
    pub fn create_db(&self, name: &str) -> DbId {
        self.create_db_with_retention(name, None)
    }

    /// Like [`Catalog::create_db`]; a database created now gets `retention` (an existing one
    /// keeps its own). Both records are logged under one lock, so no reader or concurrent
    /// creator sees the database without its policy.
    pub fn create_db_with_retention(&self, name: &str, retention: Option<RetentionPolicy>) -> DbId {
        if let Some(id) = self.db_id(name) {
            return id;
        }
        let mut log = self.log.lock();
        let mut st = self.state.write();
        if let Some(&id) = st.db_by_name.get(name) {
            return id;
        }
        let id = DbId(st.next_db);
        self.append(&mut log, |p| {
            p.push(REC_DATABASE);
            p.extend_from_slice(&id.0.to_le_bytes());
            p.extend_from_slice(name.as_bytes());
        });
        insert_db(&mut st, id, name);
        if let Some(rp) = retention {
            self.append(&mut log, |p| encode_retention(p, id, &rp));
            if let Some(d) = st.dbs.get_mut(&id) {
                d.retention = rp;
            }
        }
        id
    }

    /// Drops a database from the catalog (its series ids become unused).
    pub fn drop_db(&self, name: &str) -> Option<DbId> {
        let mut log = self.log.lock();
        let mut st = self.state.write();
        let id = *st.db_by_name.get(name)?;
        self.append(&mut log, |p| {
            p.push(REC_DROP_DATABASE);
            p.extend_from_slice(&id.0.to_le_bytes());
        });
        remove_db(&mut st, id);
        Some(id)
    }

    pub fn db_name(&self, id: DbId) -> Option<String> {
        self.state.read().dbs.get(&id).map(|d| d.name.clone())
    }

    pub fn database_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.state.read().db_by_name.keys().cloned().collect();
        v.sort();
        v
    }

    /// Registers a new series. `key_bytes` is the batch-format key of `key`.
    pub fn add_series(
        &self,
        db: DbId,
        key_bytes: &[u8],
        key: SeriesKey,
    ) -> Result<(SeriesId, Arc<SeriesKey>), RejectReason> {
        let mut log = self.log.lock();
        let mut st = self.state.write();
        let count = st.dbs.get(&db).map(|d| d.series_count).unwrap_or(0);
        if count >= self.max_series_per_db {
            return Err(RejectReason::SeriesLimit { limit: self.max_series_per_db });
        }
        if st.series.len() >= u32::MAX as usize {
            return Err(RejectReason::SeriesLimit { limit: u32::MAX as u64 });
        }
        let id = SeriesId(st.series.len() as u32);
        self.append(&mut log, |p| {
            p.push(REC_SERIES);
            p.extend_from_slice(&id.0.to_le_bytes());
            p.extend_from_slice(&db.0.to_le_bytes());
            p.extend_from_slice(key_bytes);
        });
        self.appended_series.fetch_max(id.0 + 1, Ordering::AcqRel);
        let key = Arc::new(key);
        insert_series(&mut st, id, db, key.clone());
        Ok((id, key))
    }

    /// Removes series from the catalog and index (DROP SERIES / DROP MEASUREMENT).
    pub fn drop_series(&self, ids: &RoaringBitmap) {
        let mut log = self.log.lock();
        let mut st = self.state.write();
        for id in ids {
            self.append(&mut log, |p| {
                p.push(REC_DROP_SERIES);
                p.extend_from_slice(&id.to_le_bytes());
            });
            remove_series(&mut st, SeriesId(id));
        }
    }

    /// Checks (and on first use records) the type of a field of a measurement.
    pub fn check_field(
        &self,
        db: DbId,
        measurement: &str,
        field: &str,
        ty: FieldType,
    ) -> Result<(), RejectReason> {
        let conflict = |expected: FieldType| RejectReason::FieldTypeConflict {
            field: field.to_owned(),
            expected,
            got: ty,
        };
        {
            let st = self.state.read();
            if let Some(&t) = st
                .dbs
                .get(&db)
                .and_then(|d| d.measurements.get(measurement))
                .and_then(|m| m.fields.get(field))
            {
                return if t == ty { Ok(()) } else { Err(conflict(t)) };
            }
        }
        let mut log = self.log.lock();
        let mut st = self.state.write();
        let m = st.dbs.entry(db).or_default().measurements.entry(measurement.to_owned()).or_default();
        if let Some(&t) = m.fields.get(field) {
            return if t == ty { Ok(()) } else { Err(conflict(t)) };
        }
        if m.fields.len() >= self.max_fields_per_measurement {
            return Err(RejectReason::TooManyFields {
                measurement: measurement.to_owned(),
                limit: self.max_fields_per_measurement,
            });
        }
        m.fields.insert(field.to_owned(), ty);
        self.append(&mut log, |p| {
            p.push(REC_FIELD);
            p.extend_from_slice(&db.0.to_le_bytes());
            p.extend_from_slice(&(measurement.len() as u16).to_le_bytes());
            p.extend_from_slice(measurement.as_bytes());
            p.extend_from_slice(&(field.len() as u16).to_le_bytes());
            p.extend_from_slice(field.as_bytes());
            p.push(ty as u8);
        });
        Ok(())
    }

    pub fn series(&self, id: SeriesId) -> Option<SeriesMeta> {
        self.state.read().series.get(id.0 as usize).and_then(|s| s.clone())
    }

    /// Every live series with its database (used to rebuild shard lookup maps at open).
    pub fn all_series(&self) -> Vec<(SeriesId, SeriesMeta)> {
        let st = self.state.read();
        st.series.iter().enumerate().filter_map(|(i, s)| s.clone().map(|s| (SeriesId(i as u32), s))).collect()
    }

    /// Resolves series of a measurement matching a predicate.
    pub fn resolve(&self, db: DbId, measurement: &str, pred: &TagPredicate) -> RoaringBitmap {
        let st = self.state.read();
        st.dbs
            .get(&db)
            .and_then(|d| d.measurements.get(measurement))
            .map(|m| m.index.resolve(pred))
            .unwrap_or_default()
    }

    /// Records deleted data (see [`Tombstone`]). Durable only after [`Catalog::sync`].
    pub fn add_tombstone(&self, db: DbId, t: Tombstone) {
        let mut log = self.log.lock();
        let mut st = self.state.write();
        self.append(&mut log, |p| encode_tombstone(p, REC_TOMBSTONE, db, &t));
        apply_tombstone(&mut st, db, t);
    }

    /// Forgets tombstones that can no longer hide anything (tombstone garbage collection, see
    /// `Inner::collect_tombstones`). `obsolete` are entries of [`Catalog::tombstones`]; each
    /// is logged as a "drop tombstone" record naming it by content. Durable only after
    /// [`Catalog::sync`]; a crash before that brings them back, which is harmless (they hide
    /// nothing) and the next collection removes them again.
    pub fn remove_tombstones(&self, db: DbId, obsolete: &[Arc<Tombstone>]) {
        let mut log = self.log.lock();
        let mut st = self.state.write();
        let Some(d) = st.dbs.get_mut(&db) else { return };
        for t in obsolete {
            let Some(i) = d.tombstones.iter().position(|x| Arc::ptr_eq(x, t)) else { continue };
            self.append(&mut log, |p| encode_tombstone(p, REC_DROP_TOMBSTONE, db, t));
            d.tombstones.remove(i);
        }
    }

    /// The highest `before_segment` of any tombstone ever recorded, including tombstones
    /// removed since: segment numbers below it must never be handed out again, or a tombstone
    /// would hide data written after it.
    ///
    /// Why removed tombstones still count: strictly, only the *remaining* tombstones need
    /// the floor (a removed tombstone hides nothing, so a new segment numbered below its
    /// `before_segment` could not be hidden by it, and every remaining tombstone is in the
    /// max). But keeping the floor where it was means segment numbers never go backwards at
    /// all, so nothing else that assumes "numbers only grow" (compaction's `lo..=hi` names,
    /// which open uses to delete replaced inputs) has to be revisited. It costs nothing: the
    /// tombstone records stay in the log anyway, so replay rebuilds the floor.
    pub fn max_tombstone_segment(&self) -> u64 {
        self.state.read().tombstone_floor
    }

    pub fn tombstones(&self, db: DbId) -> Vec<Arc<Tombstone>> {
        self.state.read().dbs.get(&db).map(|d| d.tombstones.clone()).unwrap_or_default()
    }

    /// How many tombstones a database has (each is checked by every read of an older block).
    pub fn tombstone_count(&self, db: DbId) -> usize {
        self.state.read().dbs.get(&db).map_or(0, |d| d.tombstones.len())
    }

    /// Sets a database's retention policy. Durable only after [`Catalog::sync`].
    pub fn set_retention(&self, db: DbId, rp: RetentionPolicy) {
        let mut log = self.log.lock();
        let mut st = self.state.write();
        self.append(&mut log, |p| encode_retention(p, db, &rp));
        if let Some(d) = st.dbs.get_mut(&db) {
            d.retention = rp;
        }
    }

    pub fn retention(&self, db: DbId) -> Option<RetentionPolicy> {
        self.state.read().dbs.get(&db).map(|d| d.retention.clone())
    }

    pub fn add_rule(&self, db: DbId, rule: DownsampleRule) {
        let mut log = self.log.lock();
        let mut st = self.state.write();
        self.append(&mut log, |p| {
            p.push(REC_RULE);
            p.extend_from_slice(&db.0.to_le_bytes());
            p.extend_from_slice(&rule.interval.to_le_bytes());
            for s in [&rule.name, &rule.source, &rule.target_db, &rule.target] {
                put_str16(p, s);
            }
        });
        apply_rule(&mut st, db, rule);
    }

    pub fn drop_rule(&self, db: DbId, name: &str) {
        let mut log = self.log.lock();
        let mut st = self.state.write();
        self.append(&mut log, |p| {
            p.push(REC_DROP_RULE);
            p.extend_from_slice(&db.0.to_le_bytes());
            put_str16(p, name);
        });
        drop_rule(&mut st, db, name);
    }

    pub fn rules(&self, db: DbId) -> Vec<DownsampleRule> {
        self.state.read().dbs.get(&db).map(|d| d.rules.clone()).unwrap_or_default()
    }

    /// Every database's rules whose source is `measurement`.
    pub fn has_rules(&self, db: DbId) -> bool {
        self.state.read().dbs.get(&db).is_some_and(|d| !d.rules.is_empty())
    }

    /// Records that `range` of a rule's source changed. Durable with the next [`Catalog::sync`],
    /// which every flush runs before publishing its segments.
    pub fn mark_dirty(&self, db: DbId, rule: &str, range: TimeRange) {
        let mut log = self.log.lock();
        let mut st = self.state.write();
        st.next_dirty += 1;
        let seq = st.next_dirty;
        self.append(&mut log, |p| {
            p.push(REC_DIRTY);
            p.extend_from_slice(&db.0.to_le_bytes());
            p.extend_from_slice(&seq.to_le_bytes());
            p.extend_from_slice(&range.start.to_le_bytes());
            p.extend_from_slice(&range.end.to_le_bytes());
            put_str16(p, rule);
        });
        apply_dirty(&mut st, db, rule, DirtyRange { seq, range });
    }

    pub fn dirty(&self, db: DbId, rule: &str) -> Vec<DirtyRange> {
        self.state.read().dbs.get(&db).and_then(|d| d.dirty.get(rule).cloned()).unwrap_or_default()
    }

    /// Forgets the dirty ranges of a rule up to sequence `through` (their rollup is written).
    pub fn mark_clean(&self, db: DbId, rule: &str, through: u64) {
        let mut log = self.log.lock();
        let mut st = self.state.write();
        self.append(&mut log, |p| {
            p.push(REC_CLEAN);
            p.extend_from_slice(&db.0.to_le_bytes());
            p.extend_from_slice(&through.to_le_bytes());
            put_str16(p, rule);
        });
        apply_clean(&mut st, db, rule, through);
    }

    /// Runs `f` over a database's metadata under the read lock.
    pub fn with_db<R>(&self, db: DbId, f: impl FnOnce(&DatabaseMeta) -> R) -> Option<R> {
        self.state.read().dbs.get(&db).map(f)
    }
}

fn encode_retention(p: &mut Vec<u8>, db: DbId, rp: &RetentionPolicy) {
    p.push(REC_RETENTION);
    p.extend_from_slice(&db.0.to_le_bytes());
    p.extend_from_slice(&rp.duration.unwrap_or(0).to_le_bytes());
    p.extend_from_slice(&rp.partition_duration.unwrap_or(0).to_le_bytes());
    p.extend_from_slice(rp.name.as_bytes());
}

fn insert_db(st: &mut State, id: DbId, name: &str) {
    st.db_by_name.insert(name.to_owned(), id);
    let d = st.dbs.entry(id).or_default();
    d.id = Some(id);
    d.name = name.to_owned();
    st.next_db = st.next_db.max(id.0 + 1);
}

fn remove_db(st: &mut State, id: DbId) {
    if let Some(d) = st.dbs.remove(&id) {
        st.db_by_name.remove(&d.name);
    }
    for s in st.series.iter_mut() {
        if s.as_ref().is_some_and(|s| s.db == id) {
            *s = None;
        }
    }
}

fn insert_series(st: &mut State, id: SeriesId, db: DbId, key: Arc<SeriesKey>) {
    let idx = id.0 as usize;
    if st.series.len() <= idx {
        st.series.resize(idx + 1, None);
    }
    let d = st.dbs.entry(db).or_default();
    d.series_count += 1;
    d.measurements.entry(key.measurement.to_string()).or_default().index.insert(id, &key);
    st.series[idx] = Some(SeriesMeta { db, key });
}

fn remove_series(st: &mut State, id: SeriesId) {
    let Some(meta) = st.series.get_mut(id.0 as usize).and_then(|s| s.take()) else {
        return;
    };
    if let Some(d) = st.dbs.get_mut(&meta.db) {
        d.series_count = d.series_count.saturating_sub(1);
        if let Some(m) = d.measurements.get_mut(meta.key.measurement.as_ref()) {
            m.index.remove(id, &meta.key);
            if m.index.series_count() == 0 {
                d.measurements.remove(meta.key.measurement.as_ref());
            }
        }
    }
}

fn apply_record(st: &mut State, rec: &[u8]) -> Result<(), &'static str> {
    let mut r = Reader { buf: rec, pos: 0 };
    match r.u8().ok_or("empty record")? {
        REC_DATABASE => {
            let id = DbId(r.u32().ok_or("short database record")?);
            if id.0 as usize > (st.next_db as usize).saturating_add(MAX_ID_SKIP) {
                return Err("database id skips too far past the previous ones");
            }
            let name = std::str::from_utf8(&rec[r.pos..]).map_err(|_| "database name not utf-8")?;
            insert_db(st, id, name);
        }
        REC_SERIES => {
            let id = SeriesId(r.u32().ok_or("short series record")?);
            // The series table is a Vec indexed by id.
            if id.0 as usize > st.series.len().saturating_add(MAX_ID_SKIP) {
                return Err("series id skips too far past the previous ones");
            }
            let db = DbId(r.u32().ok_or("short series record")?);
            let key = decode_series_key(&rec[r.pos..]).ok_or("series key does not decode")?;
            insert_series(st, id, db, Arc::new(key));
        }
        REC_FIELD => {
            let db = DbId(r.u32().ok_or("short field record")?);
            let m = r.str16().ok_or("short field record")?.to_owned();
            let f = r.str16().ok_or("short field record")?.to_owned();
            let ty = FieldType::from_u8(r.u8().ok_or("short field record")?).ok_or("bad field type")?;
            st.dbs.entry(db).or_default().measurements.entry(m).or_default().fields.insert(f, ty);
        }
        REC_DROP_DATABASE => remove_db(st, DbId(r.u32().ok_or("short drop record")?)),
        REC_DROP_SERIES => remove_series(st, SeriesId(r.u32().ok_or("short drop record")?)),
        kind @ (REC_TOMBSTONE | REC_DROP_TOMBSTONE) => {
            let short = "short tombstone record";
            let db = DbId(r.u32().ok_or(short)?);
            let start = r.u64().ok_or(short)? as i64;
            let end = r.u64().ok_or(short)? as i64;
            let before_segment = r.u64().ok_or(short)?;
            let series = RoaringBitmap::deserialize_from(&rec[r.pos..])
                .map_err(|_| "tombstone series do not decode")?;
            let t = Tombstone { series, range: TimeRange { start, end }, before_segment };
            if kind == REC_TOMBSTONE {
                apply_tombstone(st, db, t);
            } else if let Some(d) = st.dbs.get_mut(&db) {
                // Equal tombstones are interchangeable: removing any one of them is the same.
                if let Some(i) = d.tombstones.iter().position(|x| **x == t) {
                    d.tombstones.remove(i);
                }
            }
        }
        REC_RULE => {
            let short = "short rule record";
            let db = DbId(r.u32().ok_or(short)?);
            let interval = r.u64().ok_or(short)? as i64;
            let mut next = || r.str16().map(str::to_owned).ok_or(short);
            let rule = DownsampleRule {
                name: next()?,
                source: next()?,
                target_db: next()?,
                target: next()?,
                interval,
            };
            apply_rule(st, db, rule);
        }
        REC_DROP_RULE => {
            let db = DbId(r.u32().ok_or("short drop rule record")?);
            let name = r.str16().ok_or("short drop rule record")?.to_owned();
            drop_rule(st, db, &name);
        }
        REC_DIRTY => {
            let short = "short dirty record";
            let db = DbId(r.u32().ok_or(short)?);
            let seq = r.u64().ok_or(short)?;
            let start = r.u64().ok_or(short)? as i64;
            let end = r.u64().ok_or(short)? as i64;
            let rule = r.str16().ok_or(short)?.to_owned();
            apply_dirty(st, db, &rule, DirtyRange { seq, range: TimeRange { start, end } });
        }
        REC_CLEAN => {
            let short = "short clean record";
            let db = DbId(r.u32().ok_or(short)?);
            let through = r.u64().ok_or(short)?;
            let rule = r.str16().ok_or(short)?.to_owned();
            apply_clean(st, db, &rule, through);
        }
        REC_RETENTION => {
            let short = "short retention record";
            let db = DbId(r.u32().ok_or(short)?);
            let duration = r.u64().ok_or(short)? as i64;
            let partition = r.u64().ok_or(short)? as i64;
            let name = std::str::from_utf8(&rec[r.pos..]).map_err(|_| "retention name not utf-8")?;
            if let Some(d) = st.dbs.get_mut(&db) {
                d.retention = RetentionPolicy {
                    name: name.to_owned(),
                    duration: (duration > 0).then_some(duration),
                    partition_duration: (partition > 0).then_some(partition),
                };
            }
        }
        _ => return Err("unknown record type"),
    }
    Ok(())
}

fn put_str16(p: &mut Vec<u8>, s: &str) {
    let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    p.extend_from_slice(&(s.len() as u16).to_le_bytes());
    p.extend_from_slice(s);
}

fn apply_rule(st: &mut State, db: DbId, rule: DownsampleRule) {
    if let Some(d) = st.dbs.get_mut(&db) {
        d.rules.retain(|r| r.name != rule.name);
        d.rules.push(rule);
    }
}

fn drop_rule(st: &mut State, db: DbId, name: &str) {
    if let Some(d) = st.dbs.get_mut(&db) {
        d.rules.retain(|r| r.name != name);
        d.dirty.remove(name);
    }
}

fn apply_dirty(st: &mut State, db: DbId, rule: &str, r: DirtyRange) {
    st.next_dirty = st.next_dirty.max(r.seq);
    if let Some(d) = st.dbs.get_mut(&db) {
        d.dirty.entry(rule.to_owned()).or_default().push(r);
    }
}

fn apply_clean(st: &mut State, db: DbId, rule: &str, through: u64) {
    if let Some(v) = st.dbs.get_mut(&db).and_then(|d| d.dirty.get_mut(rule)) {
        v.retain(|r| r.seq > through);
    }
}

fn apply_tombstone(st: &mut State, db: DbId, t: Tombstone) {
    st.tombstone_floor = st.tombstone_floor.max(t.before_segment);
    if let Some(d) = st.dbs.get_mut(&db) {
        d.tombstones.push(Arc::new(t));
    }
}

/// A tombstone record (`kind` = [`REC_TOMBSTONE`]) or the record that removes it
/// ([`REC_DROP_TOMBSTONE`]): same layout, so a removal names its tombstone by content.
fn encode_tombstone(p: &mut Vec<u8>, kind: u8, db: DbId, t: &Tombstone) {
    p.push(kind);
    p.extend_from_slice(&db.0.to_le_bytes());
    p.extend_from_slice(&t.range.start.to_le_bytes());
    p.extend_from_slice(&t.range.end.to_le_bytes());
    p.extend_from_slice(&t.before_segment.to_le_bytes());
    t.series.serialize_into(&mut *p).expect("writing to a Vec cannot fail");
}

/// Encodes a series key (test helper shared with other modules' tests).
#[cfg(test)]
pub(crate) fn key_bytes(key: &SeriesKey) -> Vec<u8> {
    let mut v = Vec::new();
    crate::batch::encode_series_key(key, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the catalog fuzz target (`fuzzing::catalog_log`): a series record whose id
    /// was damaged to ~2 billion resized the series table to match, a 31 GB allocation that
    /// aborted the process instead of an error naming the record.
    /// Found by the catalog fuzz target: a database record with id `u32::MAX` overflowed
    /// the next database id (`id + 1`), and one with `u32::MAX - 1` made the next
    /// `create_db` overflow it: a panic with overflow checks (tests, fuzzing), a silently
    /// wrapped next id without.
    #[test]
    fn database_id_near_u32_max_is_refused_not_overflowed() {
        let mut st = State::default();
        let mut rec = vec![REC_DATABASE];
        rec.extend_from_slice(&u32::MAX.to_le_bytes());
        rec.extend_from_slice(b"db");
        assert!(matches!(apply_record(&mut st, &rec), Err(r) if r.contains("skips")));
        rec[1..5].copy_from_slice(&(u32::MAX - 1).to_le_bytes());
        assert!(matches!(apply_record(&mut st, &rec), Err(r) if r.contains("skips")));
        assert!(st.dbs.is_empty());
        rec[1..5].copy_from_slice(&(MAX_ID_SKIP as u32).to_le_bytes());
        assert!(matches!(apply_record(&mut st, &rec), Ok(())), "a skip past lost records still reads");
        assert_eq!(st.next_db as usize, MAX_ID_SKIP + 1);
    }

    #[test]
    fn series_id_far_past_the_end_is_refused_not_allocated() {
        let mut st = State::default();
        let mut rec = vec![REC_SERIES];
        rec.extend_from_slice(&0x7530_0000u32.to_le_bytes());
        rec.extend_from_slice(&0u32.to_le_bytes());
        rec.extend_from_slice(&key_bytes(&SeriesKey { measurement: "m".into(), tags: vec![] }));
        assert!(matches!(apply_record(&mut st, &rec), Err(r) if r.contains("skips")));
        assert!(st.series.is_empty());
        rec[1..5].copy_from_slice(&(MAX_ID_SKIP as u32).to_le_bytes());
        assert!(matches!(apply_record(&mut st, &rec), Ok(())), "a skip past lost records still reads");
    }
    use std::fs;

    fn key(m: &str, host: &str) -> SeriesKey {
        SeriesKey { measurement: m.into(), tags: vec![("host".into(), host.into())] }
    }

    #[test]
    fn persists_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Catalog::open(dir.path(), 100).unwrap();
            let db = c.create_db("telemetry");
            let k = key("cpu", "a");
            let (id, _) = c.add_series(db, &key_bytes(&k), k).unwrap();
            assert_eq!(id, SeriesId(0));
            c.check_field(db, "cpu", "usage", FieldType::F64).unwrap();
            assert!(matches!(
                c.check_field(db, "cpu", "usage", FieldType::I64),
                Err(RejectReason::FieldTypeConflict { .. })
            ));
            c.sync().unwrap();
            // Not synced: lost on "crash" (we drop without sync).
            let k2 = key("cpu", "b");
            c.add_series(db, &key_bytes(&k2), k2).unwrap();
        }
        let c = Catalog::open(dir.path(), 100).unwrap();
        let db = c.db_id("telemetry").unwrap();
        assert_eq!(c.all_series().len(), 1);
        assert!(c.check_field(db, "cpu", "usage", FieldType::I64).is_err());
        let ids = c.resolve(db, "cpu", &TagPredicate::Eq("host".into(), "a".into()));
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn series_limit_per_database() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path(), 2).unwrap();
        let db = c.create_db("d");
        for h in ["a", "b"] {
            let k = key("m", h);
            c.add_series(db, &key_bytes(&k), k).unwrap();
        }
        let k = key("m", "c");
        assert!(matches!(c.add_series(db, &key_bytes(&k), k), Err(RejectReason::SeriesLimit { limit: 2 })));
    }

    #[test]
    fn torn_catalog_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Catalog::open(dir.path(), 100).unwrap();
            let db = c.create_db("d");
            for h in ["a", "b", "c"] {
                let k = key("m", h);
                c.add_series(db, &key_bytes(&k), k).unwrap();
            }
            c.sync().unwrap();
        }
        let path = dir.path().join("catalog.log");
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let c = Catalog::open(dir.path(), 100).unwrap();
        assert_eq!(c.all_series().len(), 2);
        // And it keeps working after the truncation.
        let db = c.db_id("d").unwrap();
        let k = key("m", "z");
        c.add_series(db, &key_bytes(&k), k).unwrap();
        c.sync().unwrap();
        drop(c);
        assert_eq!(Catalog::open(dir.path(), 100).unwrap().all_series().len(), 3);
    }

    #[test]
    fn tombstones_and_retention_persist() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tombstone {
            series: [1u32, 5, 70_000].into_iter().collect(),
            range: TimeRange { start: -5, end: i64::MAX },
            before_segment: 42,
        };
        let rp = RetentionPolicy {
            name: "week".into(),
            duration: Some(7 * 86_400_000_000_000),
            partition_duration: Some(3_600_000_000_000),
        };
        {
            let c = Catalog::open(dir.path(), 100).unwrap();
            let db = c.create_db("d");
            c.add_tombstone(db, t.clone());
            c.set_retention(db, rp.clone());
            c.sync().unwrap();
        }
        let c = Catalog::open(dir.path(), 100).unwrap();
        let db = c.db_id("d").unwrap();
        assert_eq!(c.tombstones(db).iter().map(|t| (**t).clone()).collect::<Vec<_>>(), vec![t.clone()]);
        assert_eq!(c.retention(db), Some(rp));
        assert!(t.hides(41, SeriesId(5), 0, 10));
        assert!(!t.hides(42, SeriesId(5), 0, 10), "segments written after the delete are not hidden");
        assert!(!t.hides(1, SeriesId(2), 0, 10));
        assert!(!t.hides(1, SeriesId(5), -10, -6));
    }

    #[test]
    fn removed_tombstones_stay_removed_and_keep_the_segment_floor() {
        let dir = tempfile::tempdir().unwrap();
        let t = |series: &[u32], before_segment| Tombstone {
            series: series.iter().copied().collect(),
            range: TimeRange { start: 0, end: 100 },
            before_segment,
        };
        {
            let c = Catalog::open(dir.path(), 100).unwrap();
            let db = c.create_db("d");
            // Two equal tombstones (the same delete run twice) and two others.
            c.add_tombstone(db, t(&[1], 5));
            c.add_tombstone(db, t(&[1], 5));
            c.add_tombstone(db, t(&[2], 5));
            c.add_tombstone(db, t(&[3], 9));
            let all = c.tombstones(db);
            // One of the equal pair, and the one with the highest `before_segment`.
            c.remove_tombstones(db, &[all[1].clone(), all[3].clone()]);
            assert_eq!(c.tombstone_count(db), 2);
            assert_eq!(c.max_tombstone_segment(), 9, "removal does not lower the floor");
            c.sync().unwrap();
        }
        let c = Catalog::open(dir.path(), 100).unwrap();
        let db = c.db_id("d").unwrap();
        let left: Vec<Tombstone> = c.tombstones(db).iter().map(|t| (**t).clone()).collect();
        assert_eq!(left, vec![t(&[1], 5), t(&[2], 5)]);
        assert_eq!(c.max_tombstone_segment(), 9, "replay rebuilds the floor from the tombstone records");
    }
}
