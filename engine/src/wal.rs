//! The write-ahead log of one shard: segmented, append-only, checksummed, group-committed.
//!
//! Records are appended to an in-memory buffer under the shard lock (so WAL order equals
//! memtable order, which keeps last-write-wins identical before and after a restart). A writer
//! then calls [`Wal::commit`] with the position it needs durable; whichever writer gets the I/O
//! lock first writes everything buffered so far with one `write` (and one `fdatasync` under
//! [`SyncPolicy::Always`]) for all writers waiting behind it: group commit.
//!
//! File layout (see `docs/file-formats.md`): a 16-byte header `"STRATWAL" u16 version
//! u16 reserved u32 crc32c(first 12 bytes)`, then records `u32 len, u32 crc32c(payload), payload`.
//! The payload of version 2 is a compact record ([`record`]: series ids, typed values); version
//! 1 files (a write batch per record) are still replayed.

pub mod record;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::WalError;
use crate::fsutil::{self, Fs, FsFile};
use crate::stats::WalStats;

pub const WAL_MAGIC: &[u8; 8] = b"STRATWAL";
/// The version new WAL files are written in.
pub const WAL_VERSION: u16 = 2;
/// The first version: each record's payload is a database name and a write batch. Read, no
/// longer written.
pub const WAL_VERSION_BATCH: u16 = 1;
pub const WAL_HEADER_LEN: usize = 16;
/// Largest record accepted on replay; a larger length field is a torn or corrupt tail.
pub const MAX_RECORD_LEN: usize = 256 << 20;

/// When an acknowledged write reaches stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fdatasync` before every acknowledgement (shared by concurrent writers: group commit).
    /// Loses nothing acknowledged on power loss.
    Always,
    /// Written to the OS before acknowledging, `fdatasync` every interval. Survives a process
    /// crash (`kill -9`); loses at most the last interval of acknowledged writes on power loss.
    Interval(Duration),
    /// Written to the OS before acknowledging, never synced except at rotation and shutdown.
    /// Survives a process crash; on power loss loses whatever the OS had not written back.
    Never,
}

impl SyncPolicy {
    fn fsync_on_commit(self) -> bool {
        matches!(self, SyncPolicy::Always)
    }
}

pub fn file_name(seq: u64) -> String {
    format!("{seq:08}.wal")
}

fn header_bytes() -> [u8; WAL_HEADER_LEN] {
    log_header(WAL_MAGIC, WAL_VERSION)
}

/// The 16-byte header shared by Strata's log files (WAL, catalog): magic, version, reserved,
/// crc32c of the first 12 bytes.
pub fn log_header(magic: &[u8; 8], version: u16) -> [u8; WAL_HEADER_LEN] {
    let mut h = [0u8; WAL_HEADER_LEN];
    h[..8].copy_from_slice(magic);
    h[8..10].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Splits a WAL record payload into its database name and its write-batch body
/// (`docs/file-formats.md`, "WAL record payload").
pub fn split_payload(rec: &[u8]) -> Result<(&str, &[u8]), crate::batch::BatchDecodeError> {
    let bad = |reason| crate::batch::BatchDecodeError { offset: 0, reason };
    let (&len, rest) = rec.split_first().ok_or(bad("empty record"))?;
    let name = rest.get(..usize::from(len)).ok_or(bad("database name past the record end"))?;
    let name = std::str::from_utf8(name).map_err(|_| bad("database name is not utf-8"))?;
    Ok((name, &rest[usize::from(len)..]))
}

/// Appends a framed record to `out`.
pub fn frame_record(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

struct Io {
    file: FsFile,
    /// Sequence number of the file being written.
    file_seq: u64,
    /// Logical bytes written to the OS (all files).
    written: u64,
    /// Logical bytes known durable.
    synced: u64,
    /// Reused write buffer (swapped with `pending`).
    spare: Vec<u8>,
}

/// The WAL of one shard.
pub struct Wal {
    dir: PathBuf,
    fs: Fs,
    policy: SyncPolicy,
    /// Records appended but not yet written; logical position = `pending_base + pending.len()`.
    pending: Mutex<Pending>,
    io: Mutex<Io>,
    /// Signalled when `synced` or `written` advances, for writers that lost the leader race.
    progress: Condvar,
    progress_lock: Mutex<()>,
    written_pos: AtomicU64,
    synced_pos: AtomicU64,
    poisoned: Arc<AtomicBool>,
    /// Shared by the WAL of every shard so the engine reports one set of counters.
    stats: Arc<WalStats>,
}

struct Pending {
    buf: Vec<u8>,
    base: u64,
}

impl Wal {
    /// Creates a fresh WAL file `seq` in `dir` (which must hold no newer files).
    pub fn create(
        dir: &Path,
        seq: u64,
        policy: SyncPolicy,
        poisoned: Arc<AtomicBool>,
    ) -> Result<Wal, WalError> {
        Wal::create_with(&Fs::default(), dir, seq, policy, poisoned)
    }

    /// [`Wal::create`] doing its file operations through `fs`.
    pub fn create_with(
        fs: &Fs,
        dir: &Path,
        seq: u64,
        policy: SyncPolicy,
        poisoned: Arc<AtomicBool>,
    ) -> Result<Wal, WalError> {
        fs.create_dir_all(dir).map_err(|source| WalError::Io { path: dir.to_owned(), source })?;
        let file = new_file(fs, dir, seq).map_err(|(e, _)| e)?;
        Ok(Wal {
            dir: dir.to_owned(),
            fs: fs.clone(),
            policy,
            pending: Mutex::new(Pending { buf: Vec::with_capacity(1 << 20), base: 0 }),
            io: Mutex::new(Io { file, file_seq: seq, written: 0, synced: 0, spare: Vec::new() }),
            progress: Condvar::new(),
            progress_lock: Mutex::new(()),
            written_pos: AtomicU64::new(0),
            synced_pos: AtomicU64::new(0),
            poisoned,
            stats: Arc::default(),
        })
    }

    /// Records this WAL's appends, writes and fsyncs in `stats` (shared with other WALs).
    pub fn with_stats(mut self, stats: Arc<WalStats>) -> Wal {
        self.stats = stats;
        self
    }

    /// Buffers a record; returns the logical position the caller must commit to.
    /// Callers serialize appends (the shard lock), which fixes the WAL order.
    pub fn append(&self, payload: &[u8]) -> u64 {
        self.append_parts(&[payload])
    }

    /// Like [`Wal::append`] for a payload given in parts (saves the caller a copy).
    pub fn append_parts(&self, parts: &[&[u8]]) -> u64 {
        self.append_iter(parts.iter().copied())
    }

    /// Appends one record whose payload is the concatenation of `parts`, copying each part
    /// once, straight into the pending buffer.
    pub fn append_iter<'a>(&self, parts: impl Iterator<Item = &'a [u8]> + Clone) -> u64 {
        let (len, crc) = parts
            .clone()
            .fold((0usize, 0u32), |(len, crc), p| (len + p.len(), crc32c::crc32c_append(crc, p)));
        let mut p = self.pending.lock();
        p.buf.reserve(8 + len);
        p.buf.extend_from_slice(&(len as u32).to_le_bytes());
        p.buf.extend_from_slice(&crc.to_le_bytes());
        for part in parts {
            p.buf.extend_from_slice(part);
        }
        let end = p.base + p.buf.len() as u64;
        drop(p);
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        self.stats.appended_bytes.fetch_add(8 + len as u64, Ordering::Relaxed);
        end
    }

    /// Blocks until everything up to `pos` is written to the OS, and synced if the policy says
    /// so. Concurrent callers share one write and one fsync.
    pub fn commit(&self, pos: u64) -> Result<(), WalError> {
        self.commit_with(pos, true)
    }

    /// [`Wal::commit`]; with `sync` false it waits only for the write to the OS, whatever the
    /// policy (the next synced commit or [`Wal::sync`] makes it durable).
    pub fn commit_with(&self, pos: u64, sync: bool) -> Result<(), WalError> {
        let need_sync = sync && self.policy.fsync_on_commit();
        loop {
            if self.poisoned.load(Ordering::Acquire) {
                return Err(WalError::Poisoned);
            }
            let done = if need_sync {
                self.synced_pos.load(Ordering::Acquire) >= pos
            } else {
                self.written_pos.load(Ordering::Acquire) >= pos
            };
            if done {
                return Ok(());
            }
            // Become the leader if nobody is doing I/O; otherwise wait for the leader.
            if let Some(mut io) = self.io.try_lock() {
                return self.write_pending(&mut io, need_sync);
            }
            let mut g = self.progress_lock.lock();
            // Re-check under the progress lock to avoid a lost wake-up.
            let done = if need_sync {
                self.synced_pos.load(Ordering::Acquire) >= pos
            } else {
                self.written_pos.load(Ordering::Acquire) >= pos
            };
            if !done {
                self.progress.wait_for(&mut g, Duration::from_millis(5));
            }
        }
    }

    /// Writes all pending records (and fsyncs if asked). Caller holds the io lock.
    ///
    /// A write that fails for lack of resources (disk full, quota) tears nothing once the
    /// bytes that did reach the file are cut off again (the kernel writes what fits, then says
    /// ENOSPC): the records go back to the front of the pending buffer and the callers get
    /// [`WalError::OutOfResources`]; the next commit writes them again. Those bytes were never
    /// synced or acknowledged, and shrinking a file needs no space. Any other failure (an I/O
    /// error part of the way, a cut that fails, an fsync) poisons.
    fn write_pending(&self, io: &mut Io, sync: bool) -> Result<(), WalError> {
        let end = {
            let mut p = self.pending.lock();
            std::mem::swap(&mut p.buf, &mut io.spare);
            p.base += io.spare.len() as u64;
            p.base
        };
        if !io.spare.is_empty() {
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
            match io.file.write_all_counted(&io.spare) {
                Ok(()) => io.written = end,
                Err((n, source)) if fsutil::is_resource_exhausted(&source) && Self::cut_back(io, n) => {
                    let mut p = self.pending.lock();
                    p.base -= io.spare.len() as u64;
                    io.spare.extend_from_slice(&p.buf);
                    std::mem::swap(&mut p.buf, &mut io.spare);
                    io.spare.clear();
                    drop(p);
                    self.wake();
                    return Err(WalError::OutOfResources { path: self.path_of(io.file_seq), source });
                }
                Err((_, source)) => return Err(self.poison(io, source)),
            }
        }
        io.spare.clear();
        if sync && io.synced < io.written {
            let started = Instant::now();
            let res = io.file.sync_data();
            self.stats.fsync_duration.observe(started.elapsed());
            if let Err(source) = res {
                return Err(self.poison(io, source));
            }
            io.synced = io.written;
        }
        self.written_pos.store(io.written, Ordering::Release);
        self.synced_pos.store(io.synced, Ordering::Release);
        self.wake();
        Ok(())
    }

    /// Cuts the `n` bytes a failed write left at the end of the file and moves the cursor back
    /// before them; whether the file is as it was before the write.
    fn cut_back(io: &mut Io, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let Ok(end) = io.file.seek(SeekFrom::Current(0)) else { return false };
        let Some(before) = end.checked_sub(n as u64) else { return false };
        io.file.set_len(before).is_ok() && io.file.seek(SeekFrom::Start(before)).is_ok()
    }

    /// fsyncgate: after a torn write or a failed fsync the file's state is unknown; never
    /// retry, refuse all further writes until the engine is reopened.
    fn poison(&self, io: &mut Io, source: io::Error) -> WalError {
        io.spare.clear();
        self.poisoned.store(true, Ordering::Release);
        self.wake();
        WalError::Io { path: self.path_of(io.file_seq), source }
    }

    fn wake(&self) {
        let _g = self.progress_lock.lock();
        self.progress.notify_all();
    }

    /// Writes and fsyncs everything pending (interval sync, shutdown).
    pub fn sync(&self) -> Result<(), WalError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(WalError::Poisoned);
        }
        let mut io = self.io.lock();
        self.write_pending(&mut io, true)
    }

    /// Syncs the current file and starts file `seq + 1`. Returns the sequence number of the file
    /// that was closed: every record appended before this call lives in files `<=` that.
    /// Callers hold the shard lock so no append races the switch.
    ///
    /// When the new file cannot be created for lack of resources (EMFILE, ENFILE, ENOSPC) the
    /// current file stays in use and [`WalError::OutOfResources`] is returned: nothing is lost
    /// and a later call tries again.
    pub fn rotate(&self) -> Result<u64, WalError> {
        let mut io = self.io.lock();
        self.write_pending(&mut io, true)?;
        let old = io.file_seq;
        let file = new_file(&self.fs, &self.dir, old + 1).map_err(|(e, poison)| {
            if poison {
                self.poisoned.store(true, Ordering::Release);
            }
            e
        })?;
        io.file = file;
        io.file_seq = old + 1;
        Ok(old)
    }

    /// Deletes WAL files with sequence `<= upto` (their data is in durable segments).
    pub fn remove_through(&self, upto: u64) -> Result<(), WalError> {
        for (seq, path) in list_files(&self.dir)? {
            if seq <= upto {
                self.fs.remove_file(&path).map_err(|source| WalError::Io { path, source })?;
            }
        }
        Ok(())
    }

    pub fn current_seq(&self) -> u64 {
        self.io.lock().file_seq
    }

    fn path_of(&self, seq: u64) -> PathBuf {
        self.dir.join(file_name(seq))
    }
}

/// Creates WAL file `seq`. On error, also says whether the engine must be poisoned: not when
/// the file could not be created, or could not get its header for lack of resources and was
/// removed again (nothing refers to it); yes when an fsync failed or the half-made file stays.
fn new_file(fs: &Fs, dir: &Path, seq: u64) -> Result<FsFile, (WalError, bool)> {
    let path = dir.join(file_name(seq));
    let err = |source: io::Error, poison: bool| {
        let e = if !poison && fsutil::is_resource_exhausted(&source) {
            WalError::OutOfResources { path: path.clone(), source }
        } else {
            WalError::Io { path: path.clone(), source }
        };
        (e, poison)
    };
    let mut f = fs.open(&path, OpenOptions::new().create_new(true).write(true)).map_err(|e| {
        let poison = !fsutil::is_resource_exhausted(&e);
        err(e, poison)
    })?;
    if let Err((_, source)) = f.write_all_counted(&header_bytes()) {
        drop(f);
        let removed = fs.remove_file(&path).is_ok();
        let exhausted = fsutil::is_resource_exhausted(&source);
        return Err(err(source, !(removed && exhausted)));
    }
    f.sync_all().map_err(|e| err(e, true))?;
    fs.sync_dir(dir).map_err(|e| err(e, true))?;
    Ok(f)
}

/// Lists `*.wal` files of `dir` sorted by sequence.
pub fn list_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(WalError::Io { path: dir.to_owned(), source }),
    };
    for entry in rd {
        let entry = entry.map_err(|source| WalError::Io { path: dir.to_owned(), source })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".wal") {
            if let Ok(seq) = stem.parse::<u64>() {
                out.push((seq, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What recovery does with damage in a log file (WAL or catalog) that is not a torn tail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Recovery {
    /// Refuse to open, naming the file and offset (default): nothing acknowledged is dropped
    /// without an operator deciding so.
    #[default]
    Strict,
    /// Skip the damaged bytes (resynchronising on the next intact record), log every dropped
    /// range, and open.
    DropDamaged,
}

/// How to replay one log file.
#[derive(Debug, Clone, Copy)]
pub struct ReplayMode {
    /// The newest file of its log: only this one may end in a torn record (every older file
    /// was synced whole before the next one was created).
    pub last: bool,
    pub recovery: Recovery,
}

impl ReplayMode {
    pub const LAST_STRICT: ReplayMode = ReplayMode { last: true, recovery: Recovery::Strict };
}

/// Bytes that recovery dropped from the middle of a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedRange {
    pub offset: u64,
    pub bytes: u64,
}

/// What replaying one WAL file found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub records: u64,
    pub bytes: u64,
    /// Set when a torn tail was cut off at this offset.
    pub truncated_at: Option<u64>,
    /// Damaged ranges skipped under [`Recovery::DropDamaged`] (the file itself is left as it
    /// is, except for a dropped range at its end, which is cut off like a torn tail).
    pub dropped: Vec<DroppedRange>,
}

/// Reads every intact record of one WAL file, calling `f` for each payload. A torn tail is
/// truncated (the file is cut at the last good record) and reported in the stats; damage before
/// intact data is an error ([`WalError::Damaged`]) unless `mode` says to drop it.
pub fn replay_file(
    path: &Path,
    f: impl FnMut(&[u8]) -> Result<(), WalError>,
) -> Result<ReplayStats, WalError> {
    replay_file_with(path, ReplayMode::LAST_STRICT, f)
}

/// [`replay_file`] of a file that may not be the newest of its log, or with another recovery.
/// Either version's payloads are passed on as they are.
pub fn replay_file_with(
    path: &Path,
    mode: ReplayMode,
    mut f: impl FnMut(&[u8]) -> Result<(), WalError>,
) -> Result<ReplayStats, WalError> {
    replay_wal_file(path, mode, |_, rec| f(rec))
}

/// [`replay_file_with`] passing each payload with the version of the file it is in (the
/// payload format depends on it: [`WAL_VERSION_BATCH`] or [`WAL_VERSION`]).
pub fn replay_wal_file(
    path: &Path,
    mode: ReplayMode,
    mut f: impl FnMut(u16, &[u8]) -> Result<(), WalError>,
) -> Result<ReplayStats, WalError> {
    let version = file_version(path)?;
    replay_log_with(path, &log_header(WAL_MAGIC, version), mode, |rec| f(version, rec))
}

/// The version of a WAL file from its header. A file shorter than a header (a crash while it
/// was created) counts as the current version; a header of no known version is refused.
pub fn file_version(path: &Path) -> Result<u16, WalError> {
    let mut head = Vec::with_capacity(WAL_HEADER_LEN);
    File::open(path)
        .and_then(|f| f.take(WAL_HEADER_LEN as u64).read_to_end(&mut head))
        .map_err(|source| WalError::Io { path: path.to_owned(), source })?;
    let known = [WAL_VERSION, WAL_VERSION_BATCH];
    if head.len() < WAL_HEADER_LEN {
        return Ok(known
            .into_iter()
            .find(|&v| log_header(WAL_MAGIC, v).starts_with(&head))
            .unwrap_or(WAL_VERSION));
    }
    known
        .into_iter()
        .find(|&v| head[..] == log_header(WAL_MAGIC, v)[..])
        .ok_or_else(|| WalError::BadHeader { path: path.to_owned() })
}

/// The length of the intact record at `pos`, if there is one. Empty records are never written
/// (every WAL and catalog record has a type or name byte), so a zeroed region is not a run of
/// valid empty records.
fn record_at(data: &[u8], pos: usize) -> Option<usize> {
    let rest = &data[pos..];
    if rest.len() < 8 {
        return None;
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_RECORD_LEN || rest.len() - 8 < len {
        return None;
    }
    (crc32c::crc32c(&rest[8..8 + len]) == crc).then_some(len)
}

/// Whether the bad record at `pos` is a torn tail: the last record, cut short by a crash. It
/// is when it runs to (or past) the end of the file, or when only zeros follow it (space the
/// file system allocated but the crash left unwritten). Anything else after it means intact
/// data follows damage.
fn is_torn_tail(data: &[u8], pos: usize) -> bool {
    let rest = &data[pos..];
    if rest.len() < 8 || rest.iter().all(|&b| b == 0) {
        return true;
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_RECORD_LEN {
        return false;
    }
    let end = 8 + len;
    end >= rest.len() || rest[end..].iter().all(|&b| b == 0)
}

/// Replays any framed log file with the given header (WAL, catalog); see [`replay_file`].
pub fn replay_log(
    path: &Path,
    header: &[u8; WAL_HEADER_LEN],
    f: impl FnMut(&[u8]) -> Result<(), WalError>,
) -> Result<ReplayStats, WalError> {
    replay_log_with(path, header, ReplayMode::LAST_STRICT, f)
}

/// [`replay_log`] with a [`ReplayMode`].
pub fn replay_log_with(
    path: &Path,
    header: &[u8; WAL_HEADER_LEN],
    mode: ReplayMode,
    mut f: impl FnMut(&[u8]) -> Result<(), WalError>,
) -> Result<ReplayStats, WalError> {
    let io_err = |source| WalError::Io { path: path.to_owned(), source };
    let mut data = Vec::new();
    File::open(path).and_then(|mut file| file.read_to_end(&mut data)).map_err(io_err)?;
    let mut stats = ReplayStats::default();
    let good_header = data.len() >= WAL_HEADER_LEN && data[..WAL_HEADER_LEN] == header[..];
    if !good_header {
        // A header that is short can only be a crash during creation; anything else is not
        // our file (or another version) and must not be silently deleted.
        if data.len() < WAL_HEADER_LEN && header.starts_with(&data) {
            stats.truncated_at = Some(0);
            rewrite_truncated(path, 0)?;
            return Ok(stats);
        }
        return Err(WalError::BadHeader { path: path.to_owned() });
    }
    let mut pos = WAL_HEADER_LEN;
    while pos < data.len() {
        if let Some(len) = record_at(&data, pos) {
            f(&data[pos + 8..pos + 8 + len])?;
            stats.records += 1;
            stats.bytes += len as u64;
            pos += 8 + len;
            continue;
        }
        if mode.last && is_torn_tail(&data, pos) {
            stats.truncated_at = Some(pos as u64);
            break;
        }
        if mode.recovery == Recovery::Strict {
            return Err(WalError::Damaged {
                path: path.to_owned(),
                offset: pos as u64,
                bytes_after: (data.len() - pos) as u64,
            });
        }
        // Resynchronise on the next intact record; a false match needs a length that fits and
        // a CRC32C that matches by chance.
        let next = (pos + 1..data.len()).find(|&p| record_at(&data, p).is_some());
        let until = next.unwrap_or(data.len());
        stats.dropped.push(DroppedRange { offset: pos as u64, bytes: (until - pos) as u64 });
        match next {
            Some(next) => pos = next,
            None => {
                stats.truncated_at = Some(pos as u64);
                break;
            }
        }
    }
    if let Some(at) = stats.truncated_at {
        rewrite_truncated(path, at)?;
    }
    Ok(stats)
}

fn rewrite_truncated(path: &Path, at: u64) -> Result<(), WalError> {
    let res = (|| {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(at)?;
        f.sync_all()
    })();
    res.map_err(|source| WalError::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal(dir: &Path, policy: SyncPolicy) -> Wal {
        Wal::create(dir, 1, policy, Arc::new(AtomicBool::new(false))).unwrap()
    }

    fn read_all(dir: &Path) -> (Vec<Vec<u8>>, Vec<ReplayStats>) {
        let mut recs = Vec::new();
        let mut stats = Vec::new();
        for (_, p) in list_files(dir).unwrap() {
            stats.push(
                replay_file(&p, |r| {
                    recs.push(r.to_vec());
                    Ok(())
                })
                .unwrap(),
            );
        }
        (recs, stats)
    }

    #[test]
    fn append_commit_replay() {
        let dir = tempfile::tempdir().unwrap();
        let w = wal(dir.path(), SyncPolicy::Always);
        for i in 0..10u8 {
            let pos = w.append(&[i; 5]);
            w.commit(pos).unwrap();
        }
        let old = w.rotate().unwrap();
        assert_eq!(old, 1);
        let pos = w.append(b"after");
        w.commit(pos).unwrap();
        drop(w);
        let (recs, stats) = read_all(dir.path());
        assert_eq!(recs.len(), 11);
        assert_eq!(recs[3], vec![3u8; 5]);
        assert_eq!(recs[10], b"after");
        assert!(stats.iter().all(|s| s.truncated_at.is_none()));
    }

    #[test]
    fn torn_tail_is_truncated_at_every_cut() {
        let dir = tempfile::tempdir().unwrap();
        let w = wal(dir.path(), SyncPolicy::Never);
        let mut ends = vec![];
        for i in 0..4u8 {
            ends.push(w.append(&vec![i; 10 + i as usize]));
        }
        w.commit(*ends.last().unwrap()).unwrap();
        drop(w);
        let path = dir.path().join(file_name(1));
        let full = fs::read(&path).unwrap();
        for cut in WAL_HEADER_LEN..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let mut n = 0;
            let stats = replay_file(&path, |_| {
                n += 1;
                Ok(())
            })
            .unwrap();
            let whole = ends.iter().filter(|&&e| (e as usize) + WAL_HEADER_LEN <= cut).count();
            assert_eq!(n, whole, "cut at {cut}");
            let len_after = fs::metadata(&path).unwrap().len() as usize;
            if stats.truncated_at.is_some() {
                assert!(len_after < cut);
            }
            // A second replay of the truncated file is clean.
            let again = replay_file(&path, |_| Ok(())).unwrap();
            assert_eq!(again.truncated_at, None);
            assert_eq!(again.records as usize, whole);
        }
    }

    #[test]
    fn flipped_byte_stops_replay_there() {
        let dir = tempfile::tempdir().unwrap();
        let w = wal(dir.path(), SyncPolicy::Never);
        let first = w.append(b"aaaa");
        let last = w.append(b"bbbb");
        w.commit(last).unwrap();
        drop(w);
        let path = dir.path().join(file_name(1));
        let mut bytes = fs::read(&path).unwrap();
        let idx = WAL_HEADER_LEN + first as usize + 9; // inside the second payload
        bytes[idx] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let (recs, stats) = read_all(dir.path());
        assert_eq!(recs, vec![b"aaaa".to_vec()]);
        assert_eq!(stats[0].truncated_at, Some(WAL_HEADER_LEN as u64 + first));
    }

    #[test]
    fn foreign_file_is_refused_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(1));
        fs::write(&path, b"this is not a wal file at all").unwrap();
        assert!(matches!(replay_file(&path, |_| Ok(())), Err(WalError::BadHeader { .. })));
        assert!(path.exists());
    }

    #[test]
    fn stats_count_appends_writes_and_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(WalStats::default());
        let w = wal(dir.path(), SyncPolicy::Always).with_stats(stats.clone());
        let a = w.append(b"abc");
        let b = w.append_parts(&[b"de", b"f"]);
        w.commit(b).unwrap();
        // Already durable: no second write or fsync.
        w.commit(a).unwrap();
        assert_eq!(stats.appends.load(Ordering::Relaxed), 2);
        assert_eq!(stats.appended_bytes.load(Ordering::Relaxed), 2 * (8 + 3));
        assert_eq!(stats.writes.load(Ordering::Relaxed), 1);
        assert_eq!(stats.fsyncs(), 1);
        // Rotation syncs what is pending; nothing pending means no data fsync.
        w.rotate().unwrap();
        assert_eq!(stats.fsyncs(), 1);
        let c = w.append(b"g");
        w.rotate().unwrap();
        assert!(c > b);
        assert_eq!((stats.writes.load(Ordering::Relaxed), stats.fsyncs()), (2, 2));

        // Under `Never`, commits write but never fsync.
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(WalStats::default());
        let w = wal(dir.path(), SyncPolicy::Never).with_stats(stats.clone());
        let pos = w.append(b"x");
        w.commit(pos).unwrap();
        assert_eq!((stats.writes.load(Ordering::Relaxed), stats.fsyncs()), (1, 0));
    }

    #[test]
    fn concurrent_writers_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let w = Arc::new(wal(dir.path(), SyncPolicy::Always));
        let lock = Arc::new(Mutex::new(()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for i in 0..50u32 {
                        let pos = {
                            let _g = lock.lock();
                            w.append(&[t as u8, i as u8])
                        };
                        w.commit(pos).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(w);
        let (recs, _) = read_all(dir.path());
        assert_eq!(recs.len(), 200);
    }

    fn three_records(dir: &Path) -> (PathBuf, Vec<u64>) {
        let w = wal(dir, SyncPolicy::Never);
        let ends: Vec<u64> = [&b"first"[..], b"second", b"third"].iter().map(|r| w.append(r)).collect();
        w.commit(ends[2]).unwrap();
        drop(w);
        (dir.join(file_name(1)), ends)
    }

    #[test]
    fn damage_before_intact_records_refuses_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = three_records(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[WAL_HEADER_LEN + 9] ^= 0x01; // inside the first payload
        fs::write(&path, &bytes).unwrap();
        let err = replay_file(&path, |_| Ok(())).unwrap_err();
        assert!(
            matches!(err, WalError::Damaged { offset, .. } if offset == WAL_HEADER_LEN as u64),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()) && msg.contains("offset 16"), "{msg}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "nothing is cut when refusing");
    }

    #[test]
    fn drop_damaged_skips_the_bad_record_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = three_records(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes[WAL_HEADER_LEN + 9] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let mut recs = Vec::new();
        let mode = ReplayMode { last: true, recovery: Recovery::DropDamaged };
        let stats = replay_file_with(&path, mode, |r| {
            recs.push(r.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(recs, vec![b"second".to_vec(), b"third".to_vec()]);
        assert_eq!(stats.dropped, vec![DroppedRange { offset: WAL_HEADER_LEN as u64, bytes: ends[0] }]);
        assert_eq!(stats.truncated_at, None);
    }

    #[test]
    fn a_torn_tail_followed_by_zeros_is_cut_but_not_in_an_older_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = three_records(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(WAL_HEADER_LEN + ends[2] as usize - 2);
        let torn = bytes.clone();
        bytes.extend_from_slice(&[0; 4096]); // allocated, never written
        fs::write(&path, &bytes).unwrap();
        let older = ReplayMode { last: false, recovery: Recovery::Strict };
        let err = replay_file_with(&path, older, |_| Ok(())).unwrap_err();
        assert!(matches!(err, WalError::Damaged { .. }), "an older file was synced whole: {err:?}");
        let stats = replay_file(&path, |_| Ok(())).unwrap();
        assert_eq!((stats.records, stats.truncated_at), (2, Some(WAL_HEADER_LEN as u64 + ends[1])));
        fs::write(&path, &torn).unwrap();
        assert_eq!(replay_file(&path, |_| Ok(())).unwrap().records, 2);
    }
}
