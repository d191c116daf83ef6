//! Bodies of the fuzz targets for the engine's on-disk decoders: the WAL, the catalog log and
//! segment files. `fuzz/fuzz_targets/{wal,catalog,segment}.rs` (cargo-fuzz, long runs) and the
//! property tests at the bottom of this file (the suite, a few hundred cases each) call the
//! same functions, so the checks are written once.
//!
//! Every format is checksummed, so bytes a fuzzer mutates would almost always stop at the
//! checksum. Each body therefore **fixes the checksums up** before decoding, and the decoders
//! behind them are what gets fuzzed:
//!
//! - input that starts with the file's magic is a whole file (a seed written by the real
//!   writers, then mutated): its header, record, block, index and trailer checksums are
//!   recomputed wherever the (mutated) lengths and offsets say they are;
//! - any other input is a list of payloads, each `len u8` + `len` bytes, that the body frames
//!   with valid lengths and checksums (so arbitrary bytes reach the payload decoders at once).
//!
//! Decoding must never panic, and must refuse what it cannot read with a typed error; what it
//! accepts is checked for consistency (counts, round trips, a second open seeing the same).
//! Not part of the API: `#[doc(hidden)]`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::batch::{encode_series_key, BatchIter, WriteBatch};
use crate::catalog::{Catalog, DownsampleRule, RetentionPolicy, Tombstone, CATALOG_MAGIC, CATALOG_VERSION};
use crate::index::TagPredicate;
use crate::model::{FieldType, FieldValue, SeriesId, SeriesKey, TimeRange, Values};
use crate::segment::{self, SegmentWriter, HEADER_LEN, SEGMENT_MAGIC, TRAILER_LEN};
use crate::wal::record::{self, IdLookup, RecordEncoder};
use crate::wal::{
    self, frame_record, log_header, ReplayMode, Wal, WAL_HEADER_LEN, WAL_MAGIC, WAL_VERSION,
    WAL_VERSION_BATCH,
};

/// A directory of this thread's own, removed when the thread ends. Under `/dev/shm` where there
/// is one: replay fsyncs what it truncates, and a fuzzer truncates on most inputs.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_owned() } else { std::env::temp_dir() };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("strata-fuzz-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).expect("the temporary directory is writable");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scratch() -> PathBuf {
    thread_local! {
        static DIR: Scratch = Scratch::new();
    }
    DIR.with(|d| d.0.clone())
}

/// Recomputes the checksums of a log file (WAL, catalog): the header's, then each record's
/// as far as the record lengths lead (a length past the end is a torn tail, left as is).
pub fn fix_log_crcs(file: &mut [u8]) {
    if file.len() < WAL_HEADER_LEN {
        return;
    }
    let crc = crc32c::crc32c(&file[..12]);
    file[12..16].copy_from_slice(&crc.to_le_bytes());
    let mut pos = WAL_HEADER_LEN;
    while file.len() - pos >= 8 {
        let len = u32::from_le_bytes(file[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if file.len() - pos - 8 < len {
            break;
        }
        let crc = crc32c::crc32c(&file[pos + 8..pos + 8 + len]);
        file[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos += 8 + len;
    }
}

/// A log file of `header` whose records are the payloads of `data` (`len u8`, bytes; a length
/// past the end takes what is left). A last lone byte is kept as a torn tail.
fn frame_payloads(header: &[u8; WAL_HEADER_LEN], data: &[u8]) -> Vec<u8> {
    let mut out = header.to_vec();
    let mut rest = data;
    while rest.len() >= 2 {
        let n = usize::from(rest[0]).min(rest.len() - 1);
        frame_record(&rest[1..1 + n], &mut out);
        rest = &rest[1 + n..];
    }
    out.extend_from_slice(rest);
    out
}

fn log_file(magic: &[u8; 8], version: u16, data: &[u8]) -> Vec<u8> {
    if data.starts_with(magic) {
        let mut file = data.to_vec();
        fix_log_crcs(&mut file);
        file
    } else {
        frame_payloads(&log_header(magic, version), data)
    }
}

/// WAL replay: the framing (`wal::replay_wal_file`), the record payload
/// (`wal::split_payload`), the compact record of version 2 (`wal::record::decode`) and the
/// write batch of points (`BatchIter::over`, what replay validates storage bytes with). A whole
/// file says its version in its header (both versions get fuzzed); payload lists are version 2.
pub fn wal_file(data: &[u8]) {
    let file = log_file(WAL_MAGIC, WAL_VERSION, data);
    let path = scratch().join(wal::file_name(1));
    fs::write(&path, &file).expect("the scratch directory is writable");
    let mut seen = 0u64;
    let Ok(stats) = wal::replay_wal_file(&path, ReplayMode::LAST_STRICT, |version, rec| {
        seen += 1;
        check_wal_payload(version, rec);
        Ok(())
    }) else {
        return;
    };
    assert_eq!(stats.records, seen);
    // What replay left (cut at a torn tail) replays again to the same records, cleanly.
    let again = wal::replay_file(&path, |_| Ok(())).expect("a replayed WAL file replays again");
    // A file cut inside its header is emptied, and an empty file reads as cut at 0 again.
    let emptied = seen == 0 && stats.truncated_at == Some(0);
    assert_eq!((again.records, again.truncated_at.filter(|_| !emptied)), (seen, None));
}

/// The batch-format key the fuzz bodies and seeds give catalog series id `id` (ids 0..4 exist;
/// 4 and 5 were dropped; the others are unknown).
fn seed_key(id: u32, out: &mut Vec<u8>) -> IdLookup {
    match id {
        0..4 => {
            let host = format!("h{id}");
            let key = SeriesKey { measurement: "cpu".into(), tags: vec![("host".into(), host.into())] };
            encode_series_key(&key, out);
            IdLookup::Found
        }
        4 | 5 => IdLookup::Dropped,
        _ => IdLookup::Unknown,
    }
}

fn check_wal_payload(version: u16, rec: &[u8]) {
    let Ok((_db, body)) = wal::split_payload(rec) else { return };
    let decoded;
    let body = if version == WAL_VERSION_BATCH {
        body
    } else {
        let mut out = Vec::new();
        if record::decode(body, &mut out, false, |id, out| seed_key(id.0, out)).is_err() {
            return;
        }
        decoded = out;
        check_record_round_trip(&decoded);
        &decoded[..]
    };
    let mut key = Vec::new();
    for point in BatchIter::over(body) {
        let Ok(p) = point else { break };
        // `series_key` expects what `over` validated: a panic here is a validation gap.
        let series = p.series_key();
        key.clear();
        encode_series_key(&series, &mut key);
        assert_eq!(key, p.key, "a decoded series key encodes back to its bytes");
        assert_eq!(p.measurement(), series.measurement.as_bytes());
        assert_eq!(p.fields().count(), usize::from(p.n_fields), "every field name is UTF-8");
    }
}

/// Catalog replay (`Catalog::open` on a log holding the input), then every read of what it
/// built; a second open must see the same, and a catalog opened on damage keeps working.
pub fn catalog_log(data: &[u8]) {
    let file = log_file(CATALOG_MAGIC, CATALOG_VERSION, data);
    let dir = scratch().join("catalog");
    fs::create_dir_all(&dir).expect("the scratch directory is writable");
    let path = dir.join("catalog.log");
    fs::write(&path, &file).expect("the scratch directory is writable");
    let Ok(c) = Catalog::open(&dir, 1_000) else { return };
    let before = summary(&c);
    let floor = c.max_tombstone_segment();
    drop(c);
    let c = Catalog::open(&dir, 1_000).expect("an opened catalog opens again");
    assert_eq!(summary(&c), before, "a second open sees what the first saw");
    assert_eq!(c.max_tombstone_segment(), floor);
    let db = c.create_db("fuzz-new-db");
    let key = SeriesKey { measurement: "m".into(), tags: vec![("k".into(), "v".into())] };
    let mut kb = Vec::new();
    encode_series_key(&key, &mut kb);
    let added = c.add_series(db, &kb, key).ok().map(|(id, _)| id);
    c.sync().expect("the scratch directory is writable");
    drop(c);
    let c = Catalog::open(&dir, 1_000).expect("a catalog written after a fuzzed one opens");
    assert_eq!(c.db_id("fuzz-new-db"), Some(db));
    if let Some(id) = added {
        assert!(c.series(id).is_some(), "a series added after the fuzzed records survives");
    }
}

/// Everything a catalog answers, as text (for "a second open sees the same").
fn summary(c: &Catalog) -> Vec<String> {
    let mut out = Vec::new();
    for (id, meta) in c.all_series() {
        assert!(c.series(id).is_some());
        out.push(format!("series {} {:?} {:?}", id.0, meta.db, meta.key));
    }
    for name in c.database_names() {
        let db = c.db_id(name.as_str()).expect("a listed database has an id");
        out.push(format!("db {name} {db:?} {:?} {}", c.retention(db), c.tombstone_count(db)));
        for t in c.tombstones(db) {
            out.push(format!("tombstone {:?} {:?} {}", t.series, t.range, t.before_segment));
        }
        for r in c.rules(db) {
            out.push(format!("rule {r:?} {:?}", c.dirty(db, &r.name)));
        }
        let measurements: Vec<String> =
            c.with_db(db, |d| d.measurements.keys().cloned().collect()).unwrap_or_default();
        for m in measurements {
            let all = c.resolve(db, &m, &TagPredicate::NotEq(String::new(), "\u{0}".into()));
            out.push(format!("measurement {m} {all:?}"));
        }
    }
    out
}

/// Recomputes a segment's checksums: the header's, every block's that an index entry places
/// inside the block area, the index's and the trailer's (wherever the mutated trailer says).
pub fn fix_segment_crcs(file: &mut [u8]) {
    if file.len() < HEADER_LEN {
        return;
    }
    let crc = crc32c::crc32c(&file[..12]);
    file[12..16].copy_from_slice(&crc.to_le_bytes());
    if file.len() < HEADER_LEN + TRAILER_LEN {
        return;
    }
    let trailer_at = file.len() - TRAILER_LEN;
    let t = &file[trailer_at..];
    let index_offset = u64::from_le_bytes(t[..8].try_into().expect("8 bytes"));
    let index_len = u64::from(u32::from_le_bytes(t[8..12].try_into().expect("4 bytes")));
    if index_offset >= HEADER_LEN as u64 && index_offset.checked_add(index_len) == Some(trailer_at as u64) {
        let index_at = index_offset as usize;
        for (offset, len) in index_blocks(&file[index_at..trailer_at]) {
            let (Ok(start), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else { continue };
            let Some(end) = start.checked_add(len) else { continue };
            if start >= HEADER_LEN && len >= 8 && end <= index_at {
                let crc = crc32c::crc32c(&file[start..end - 4]);
                file[end - 4..end].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&file[index_at..trailer_at]);
        file[trailer_at + 12..trailer_at + 16].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32c::crc32c(&file[trailer_at..trailer_at + 20]);
    file[trailer_at + 20..trailer_at + 24].copy_from_slice(&crc.to_le_bytes());
}

/// The (offset, len) of each entry of an index, as far as it reads (the entry layout of
/// `docs/file-formats.md`).
fn index_blocks(index: &[u8]) -> Vec<(u64, u32)> {
    let mut r = crate::batch::Reader { buf: index, pos: 0 };
    let mut out = Vec::new();
    let Some(n) = r.u32() else { return out };
    for _ in 0..n {
        let entry = (|| {
            r.u32()?;
            let f_len = r.u16()?;
            r.take(usize::from(f_len) + 1 + 4 + 8 + 8)?;
            let offset = r.u64()?;
            let len = r.u32()?;
            r.take(5 * 8)?;
            Some((offset, len))
        })();
        match entry {
            Some(e) => out.push(e),
            None => break,
        }
    }
    out
}

/// A segment whose blocks are the payloads of `data`: each `type u8, count u16, ts_len u8,
/// values_len u8`, then the timestamp and value bytes, framed as a block with a valid
/// checksum and an index entry (series = block number, so the index is sorted).
fn segment_from_payloads(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(SEGMENT_MAGIC);
    out.extend_from_slice(&segment::SEGMENT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    let crc = crc32c::crc32c(&out[..12]);
    out.extend_from_slice(&crc.to_le_bytes());
    let mut index = Vec::new();
    let mut n = 0u32;
    let mut r = crate::batch::Reader { buf: data, pos: 0 };
    while let Some(head) = r.take(5) {
        let ty = head[0];
        let count = u16::from_le_bytes([head[1], head[2]]);
        let ts_len = usize::from(head[3]).min(r.remaining());
        let ts = r.take(ts_len).expect("bounded by what remains");
        let v_len = usize::from(head[4]).min(r.remaining());
        let vals = r.take(v_len).expect("bounded by what remains");
        let offset = out.len() as u64;
        out.extend_from_slice(&(ts.len() as u32).to_le_bytes());
        out.extend_from_slice(ts);
        out.extend_from_slice(vals);
        let crc = crc32c::crc32c(&out[offset as usize..]);
        out.extend_from_slice(&crc.to_le_bytes());
        index.extend_from_slice(&n.to_le_bytes());
        index.extend_from_slice(&1u16.to_le_bytes());
        index.push(b'v');
        index.push(ty);
        index.extend_from_slice(&u32::from(count).to_le_bytes());
        index.extend_from_slice(&0i64.to_le_bytes());
        index.extend_from_slice(&i64::MAX.to_le_bytes());
        index.extend_from_slice(&offset.to_le_bytes());
        index.extend_from_slice(&((out.len() as u64 - offset) as u32).to_le_bytes());
        index.extend_from_slice(&[0; 40]);
        n += 1;
    }
    let index_offset = out.len() as u64;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&index);
    let index_len = (out.len() as u64 - index_offset) as u32;
    let trailer_at = out.len();
    out.extend_from_slice(&index_offset.to_le_bytes());
    out.extend_from_slice(&index_len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&out[index_offset as usize..trailer_at]).to_le_bytes());
    out.extend_from_slice(&segment::SEGMENT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&crc32c::crc32c(&out[trailer_at..trailer_at + 20]).to_le_bytes());
    out.extend_from_slice(segment::SEGMENT_END_MAGIC);
    out
}

/// Segment reading: the header, trailer and index (`SegmentReader::open`'s checks) and every
/// block's codecs. A block that decodes holds exactly its entry's count of its entry's type.
pub fn segment_file(data: &[u8]) {
    let file = if data.starts_with(SEGMENT_MAGIC) {
        let mut file = data.to_vec();
        fix_segment_crcs(&mut file);
        file
    } else {
        segment_from_payloads(data)
    };
    let mut blocks = 0;
    let res = segment::reader::decode_bytes(&file, |b, res| {
        blocks += 1;
        if let Ok((ts, values)) = res {
            assert_eq!(ts.len(), b.count as usize, "timestamps of a block");
            assert_eq!(values.len(), b.count as usize, "values of a block");
            assert_eq!(values.field_type(), b.field_type);
        }
    });
    if let Ok(index) = res {
        assert_eq!(index.len(), blocks);
    }
}

/// Batch bytes decoded from a record that validate as a batch encode again (every series by
/// key) into a record that decodes to the same bytes.
fn check_record_round_trip(batch: &[u8]) {
    let Ok(points) = BatchIter::over(batch).collect::<Result<Vec<_>, _>>() else { return };
    let mut enc = RecordEncoder::default();
    enc.begin("db");
    // The encoder keys its table by id: one id per point, as points may be of any series.
    for (i, p) in points.iter().enumerate() {
        enc.push(SeriesId(i as u32), false, p.key, p.timestamp, p.field_bytes());
    }
    let mut again = Vec::new();
    let (_, body) = wal::split_payload(enc.payload()).expect("a record the encoder made");
    record::decode(body, &mut again, true, |_, _| IdLookup::Unknown).expect("a record the encoder made");
    assert_eq!(again, batch, "a decoded record encodes and decodes to the same points");
}

/// Real files written by the engine's writers, to start the fuzzers from (`scripts/fuzz.sh`
/// writes them to `fuzz/corpus/<target>/`) and to mutate in the property tests:
/// `(target, file name, bytes)`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let dir = scratch().join("seeds");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("the scratch directory is writable");
    let mut out = Vec::new();
    for (i, wal) in seed_wals(&dir).into_iter().enumerate() {
        out.push(("wal", format!("seed-{i}.wal"), wal));
    }
    out.push(("catalog", "seed-0.log".into(), seed_catalog(&dir)));
    for (i, seg) in seed_segments(&dir).into_iter().enumerate() {
        out.push(("segment", format!("seed-{i}.seg"), seg));
    }
    let _ = fs::remove_dir_all(&dir);
    out
}

fn batch_payload(db: &str, batch: &WriteBatch) -> Vec<u8> {
    let mut p = vec![db.len() as u8];
    p.extend_from_slice(db.as_bytes());
    p.extend_from_slice(batch.as_bytes());
    p
}

fn seed_batch(points: usize, round: usize) -> WriteBatch {
    let mut b = WriteBatch::new();
    for i in 0..points {
        let mut p = b.point(if i % 2 == 0 { "cpu" } else { "env" });
        p.tag("host", if i % 3 == 0 { "a" } else { "b" }).tag("region", "eu");
        p.field("usage", FieldValue::F64(i as f64 * 1.5))
            .field("n", FieldValue::I64(-(i as i64)))
            .field("u", FieldValue::U64(i as u64))
            .field("ok", FieldValue::Bool(i % 2 == 0))
            .field("msg", FieldValue::Str("hello"));
        p.finish(1_700_000_000_000_000_000 + (round * 100 + i) as i64).expect("a valid point");
    }
    b
}

/// Version-2 files written by [`Wal`] (even points by catalog id 0..4 of [`seed_key`], odd
/// ones by key), and one version-1 file of write batches.
fn seed_wals(dir: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    let mut enc = RecordEncoder::default();
    for (n, points) in [(0usize, 1usize), (1, 3), (2, 8)] {
        let wal_dir = dir.join(format!("wal-{n}"));
        let poisoned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w = Wal::create(&wal_dir, 1, wal::SyncPolicy::Never, poisoned).expect("scratch WAL");
        let mut last = 0;
        for r in 0..=n {
            let b = seed_batch(points, r);
            enc.begin(if r == 1 { "other" } else { "telemetry" });
            for (i, p) in b.iter().enumerate() {
                let p = p.expect("a batch the builder made");
                let id = SeriesId((i % 4) as u32);
                enc.push(id, i % 2 == 0, p.key, p.timestamp, p.field_bytes());
            }
            last = w.append(enc.payload());
        }
        w.commit(last).expect("scratch WAL");
        drop(w);
        files.push(fs::read(wal_dir.join(wal::file_name(1))).expect("written above"));
    }
    let mut v1 = log_header(WAL_MAGIC, WAL_VERSION_BATCH).to_vec();
    for r in 0..2 {
        frame_record(&batch_payload("telemetry", &seed_batch(3, r)), &mut v1);
    }
    files.push(v1);
    files
}

fn seed_catalog(dir: &Path) -> Vec<u8> {
    let cat_dir = dir.join("catalog");
    let c = Catalog::open(&cat_dir, 1_000).expect("scratch catalog");
    let db = c.create_db_with_retention(
        "telemetry",
        Some(RetentionPolicy {
            name: "week".into(),
            duration: Some(7 * 86_400_000_000_000),
            partition_duration: Some(3_600_000_000_000),
        }),
    );
    let other = c.create_db("other");
    let mut ids = Vec::new();
    for host in ["a", "b", "c"] {
        let key = SeriesKey { measurement: "cpu".into(), tags: vec![("host".into(), host.into())] };
        let mut kb = Vec::new();
        encode_series_key(&key, &mut kb);
        ids.push(c.add_series(db, &kb, key).expect("under the limit").0);
    }
    c.check_field(db, "cpu", "usage", FieldType::F64).expect("first use");
    c.check_field(db, "cpu", "msg", FieldType::Str).expect("first use");
    let t = Tombstone {
        series: ids.iter().map(|id| id.0).collect(),
        range: TimeRange { start: 0, end: 100 },
        before_segment: 7,
    };
    c.add_tombstone(db, t.clone());
    c.add_tombstone(db, Tombstone { before_segment: 9, ..t });
    let first = c.tombstones(db)[0].clone();
    c.remove_tombstones(db, &[first]);
    c.add_rule(
        db,
        DownsampleRule {
            name: "hourly".into(),
            source: "cpu".into(),
            target_db: "other".into(),
            target: "cpu_1h".into(),
            interval: 3_600_000_000_000,
        },
    );
    c.mark_dirty(db, "hourly", TimeRange { start: 0, end: 3_600_000_000_000 });
    c.mark_clean(db, "hourly", 1);
    c.drop_rule(db, "hourly");
    c.drop_series(&[ids[2].0].into_iter().collect());
    c.set_retention(other, RetentionPolicy::default());
    c.drop_db("other");
    c.sync().expect("scratch catalog");
    drop(c);
    fs::read(cat_dir.join("catalog.log")).expect("written above")
}

fn seed_segments(dir: &Path) -> Vec<Vec<u8>> {
    let path = dir.join("00000001.seg");
    let mut w = SegmentWriter::create(&path).expect("scratch segment");
    let ts: Vec<i64> = (0..300).map(|i| 1_700_000_000_000_000_000 + i * 10_000_000_000 + (i % 3)).collect();
    let col = |name: &str| -> Arc<str> { Arc::from(name) };
    let columns: Vec<(u32, &str, Values)> = vec![
        (1, "b", Values::Bool((0..300).map(|i| i % 5 == 0).collect())),
        (1, "d", Values::F64((0..300).map(|i| 20.0 + f64::from(i % 7) * 0.1).collect())),
        (1, "g", Values::F64((0..300).map(|i| f64::from(i).sin()).collect())),
        (1, "i", Values::I64((0..300).map(|i| i * 1_000 - 7).collect())),
        (1, "s", Values::Str((0..300).map(|i| ["ok", "warn", "fail"][i % 3].to_owned()).collect())),
        (1, "t", Values::Str((0..300).map(|i| format!("free text {i}")).collect())),
        (1, "u", Values::U64((0..300).map(|i| u64::MAX - i).collect())),
        (2, "c", Values::F64(vec![1.5; 300])),
    ];
    for (series, name, values) in &columns {
        w.add_column(SeriesId(*series), &col(name), &ts, values).expect("scratch segment");
    }
    w.finish().expect("scratch segment");
    let big = fs::read(&path).expect("written above");
    let path = dir.join("00000002.seg");
    let mut w = SegmentWriter::create(&path).expect("scratch segment");
    w.add_column(SeriesId(1), &col("v"), &[10, 20], &Values::F64(vec![1.5, 2.5])).expect("scratch segment");
    w.finish().expect("scratch segment");
    vec![fs::read(&path).expect("written above"), big]
}

/// A seed with the byte edits applied (offsets wrap around its length) and maybe cut short:
/// what the property tests start from, as the fuzzers do from their corpus.
pub fn mutate(seed: &[u8], edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut f = seed.to_vec();
    if !f.is_empty() {
        for &(at, byte) in edits {
            let at = at % f.len();
            f[at] = byte;
        }
    }
    if let Some(cut) = cut {
        f.truncate(cut % (f.len() + 1));
    }
    f
}

/// `$PROPTEST_CASES` for a long run, else `default` (the suite).
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The seeds, once per test process.
    fn seed_files(target: &str) -> Vec<Vec<u8>> {
        static SEEDS: std::sync::OnceLock<Vec<(&'static str, String, Vec<u8>)>> = std::sync::OnceLock::new();
        SEEDS.get_or_init(seeds).iter().filter(|s| s.0 == target).map(|s| s.2.clone()).collect()
    }

    /// A seed with a few bytes overwritten and maybe cut short: what the fuzzers start from.
    fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
        let files = seed_files(target);
        (
            0..files.len(),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            any::<Option<usize>>(),
        )
            .prop_map(move |(i, edits, cut)| mutate(&files[i], &edits, cut))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: proptest_cases(300), failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn wal_payloads_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            wal_file(&data);
        }

        #[test]
        fn wal_files_mutated_never_panic(data in mutated("wal")) {
            wal_file(&data);
        }

        #[test]
        fn catalog_payloads_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            catalog_log(&data);
        }

        #[test]
        fn catalog_files_mutated_never_panic(data in mutated("catalog")) {
            catalog_log(&data);
        }

        #[test]
        fn segment_payloads_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            segment_file(&data);
        }

        #[test]
        fn segment_files_mutated_never_panic(data in mutated("segment")) {
            segment_file(&data);
        }
    }

    /// The seeds are real files the decoders accept whole (so the fuzzers start deep).
    #[test]
    fn seeds_decode() {
        let mut versions = Vec::new();
        for wal in seed_files("wal") {
            let path = scratch().join("seed.wal");
            fs::write(&path, &wal).unwrap();
            let mut points = 0;
            let stats = wal::replay_wal_file(&path, ReplayMode::LAST_STRICT, |version, rec| {
                let (_, body) = wal::split_payload(rec).unwrap();
                let mut out = Vec::new();
                let body = if version == WAL_VERSION_BATCH {
                    body
                } else {
                    let skipped =
                        record::decode(body, &mut out, true, |id, out| seed_key(id.0, out)).unwrap();
                    assert_eq!(skipped, record::Skipped::default());
                    &out[..]
                };
                points += BatchIter::over(body).collect::<Result<Vec<_>, _>>().unwrap().len();
                versions.push(version);
                Ok(())
            })
            .unwrap();
            assert!(stats.records >= 1 && points >= 1 && stats.truncated_at.is_none());
        }
        assert!(versions.contains(&WAL_VERSION) && versions.contains(&WAL_VERSION_BATCH));
        let cat = seed_files("catalog").remove(0);
        let dir = scratch().join("seed-catalog");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("catalog.log"), &cat).unwrap();
        let c = Catalog::open(&dir, 1_000).unwrap();
        assert_eq!(c.all_series().len(), 2);
        assert_eq!(c.database_names(), vec!["telemetry".to_owned()]);
        let mut decoded = 0;
        for seg in seed_files("segment") {
            segment::reader::decode_bytes(&seg, |_, res| {
                res.unwrap();
                decoded += 1;
            })
            .unwrap();
        }
        assert_eq!(decoded, 1 + 8);
    }

    /// Fixing checksums up is what lets mutated bytes through: a flipped payload byte that
    /// the plain reader refuses at the checksum is read by the decoder once fixed.
    #[test]
    fn checksum_fix_up_reaches_the_decoder() {
        let mut seg = seed_files("segment").remove(0);
        seg[HEADER_LEN + 5] ^= 0x01; // inside the first block's timestamps
        let mut refused = 0;
        segment::reader::decode_bytes(&seg, |_, res| {
            if matches!(res, Err(crate::error::SegmentError::ChecksumMismatch { section: "block", .. })) {
                refused += 1;
            }
        })
        .unwrap();
        assert_eq!(refused, 1, "the plain reader refuses the flipped block at its checksum");
        fix_segment_crcs(&mut seg);
        segment::reader::decode_bytes(&seg, |_, res| {
            assert!(!matches!(res, Err(crate::error::SegmentError::ChecksumMismatch { .. })), "{res:?}")
        })
        .unwrap();

        let mut wal = seed_files("wal").remove(0);
        let last = wal.len() - 1;
        wal[last] ^= 0x01;
        let path = scratch().join("fixed.wal");
        fs::write(&path, &wal).unwrap();
        let plain = wal::replay_file(&path, |_| Ok(()));
        assert!(!matches!(plain, Ok(ref s) if s.records == 1), "refused at the checksum: {plain:?}");
        fix_log_crcs(&mut wal);
        fs::write(&path, &wal).unwrap();
        assert_eq!(wal::replay_file(&path, |_| Ok(())).unwrap().records, 1, "read once fixed");
    }

    /// Writes the seeds to `$STRATA_FUZZ_SEEDS/<target>/` (`scripts/fuzz.sh` runs this).
    #[test]
    #[ignore = "writes files; run by scripts/fuzz.sh"]
    fn write_fuzz_seeds() {
        let Some(out) = std::env::var_os("STRATA_FUZZ_SEEDS") else { return };
        for (target, name, bytes) in seeds() {
            let dir = Path::new(&out).join(target);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
