//! Filesystem helpers shared by the WAL, segments and catalog, and the [`Fs`] seam that tests
//! use to make file operations fail.
//!
//! [`Fs`] is how the WAL, the catalog, the segment writer and the flush create, open, write,
//! fsync, rename and delete files. In production it holds no hook and every call goes straight
//! to `std::fs` (one `Option` check per call). Tests install a [`FaultHook`] that fails chosen
//! operations (EMFILE, ENOSPC, EIO on fsync) or shortens writes, to check what the engine does
//! about each: push back (a retryable error, nothing lost) or poison (refuse writes until
//! reopened). See `engine/tests/faults.rs` and `docs/operations.md`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file operations a [`FaultHook`] can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsOp {
    /// Opening or creating a file.
    Open,
    /// One `write` call on a file opened through [`Fs`].
    Write,
    /// `fsync`/`fdatasync` of a file opened through [`Fs`], or of a directory.
    Sync,
    Rename,
    Remove,
    CreateDir,
}

/// Decides which file operations fail. Called before each operation; returning `Some(err)`
/// fails it with `err` (the operation is not performed).
pub trait FaultHook: Send + Sync {
    fn fail(&self, op: FsOp, path: &Path) -> Option<io::Error>;

    /// For a `write` of `len` bytes to `path`: write only this many bytes (a short write, which
    /// callers must loop over). `None` writes everything. Called after [`FaultHook::fail`]
    /// allowed the write.
    fn short_write(&self, _path: &Path, _len: usize) -> Option<usize> {
        None
    }
}

/// The engine's file-system layer: `std::fs`, plus an optional [`FaultHook`] for tests.
#[derive(Clone, Default)]
pub struct Fs {
    hook: Option<Arc<dyn FaultHook>>,
}

impl fmt::Debug for Fs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fs").field("fault_hook", &self.hook.is_some()).finish()
    }
}

impl Fs {
    /// The real file system with `hook` deciding which operations fail.
    pub fn with_hook(hook: Arc<dyn FaultHook>) -> Fs {
        Fs { hook: Some(hook) }
    }

    fn check(&self, op: FsOp, path: &Path) -> io::Result<()> {
        match self.hook.as_ref().and_then(|h| h.fail(op, path)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn open(&self, path: &Path, opts: &OpenOptions) -> io::Result<FsFile> {
        self.check(FsOp::Open, path)?;
        let file = opts.open(path)?;
        Ok(FsFile { file, path: path.to_owned(), hook: self.hook.clone() })
    }

    pub fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.check(FsOp::CreateDir, dir)?;
        fs::create_dir_all(dir)
    }

    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(FsOp::Rename, from)?;
        fs::rename(from, to)
    }

    pub fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(FsOp::Remove, path)?;
        fs::remove_file(path)
    }

    /// Fsyncs a directory so that file creations, renames and deletions in it are durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(FsOp::Open, dir)?;
        let f = File::open(dir)?;
        self.check(FsOp::Sync, dir)?;
        f.sync_all()
    }
}

/// A file opened through [`Fs`]: writes and syncs go through its hook.
pub struct FsFile {
    file: File,
    path: PathBuf,
    hook: Option<Arc<dyn FaultHook>>,
}

impl FsFile {
    fn check(&self, op: FsOp) -> io::Result<()> {
        match self.hook.as_ref().and_then(|h| h.fail(op, &self.path)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sync_data(&self) -> io::Result<()> {
        self.check(FsOp::Sync)?;
        self.file.sync_data()
    }

    pub fn sync_all(&self) -> io::Result<()> {
        self.check(FsOp::Sync)?;
        self.file.sync_all()
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    pub fn metadata(&self) -> io::Result<fs::Metadata> {
        self.file.metadata()
    }

    pub fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }

    /// Like `write_all`, but on failure also says how many bytes reached the file before it:
    /// 0 means the file is as it was (the failure tore nothing).
    pub fn write_all_counted(&mut self, mut buf: &[u8]) -> Result<(), (usize, io::Error)> {
        let mut done = 0;
        while !buf.is_empty() {
            match self.write(buf) {
                Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    done += n;
                    buf = &buf[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((done, e)),
            }
        }
        Ok(())
    }
}

impl Write for FsFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(hook) = &self.hook else { return self.file.write(buf) };
        if let Some(e) = hook.fail(FsOp::Write, &self.path) {
            return Err(e);
        }
        let n = hook.short_write(&self.path, buf.len()).map_or(buf.len(), |n| n.min(buf.len()));
        self.file.write(&buf[..n])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Whether an I/O error means "out of a resource right now" (file descriptors, disk space,
/// quota) rather than a failing device: such errors push back (a retryable error) where
/// nothing was torn, instead of poisoning the engine.
pub fn is_resource_exhausted(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOSPC | libc::EDQUOT))
}

/// Whether an I/O error means the disk (or the quota) is full.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Fsyncs a directory so that file creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the directory.
/// A crash leaves either the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Empties `<data>/trash/` at open: what is there was being deleted when the process stopped.
pub(crate) fn empty_trash(data_dir: &Path) -> std::io::Result<()> {
    let trash = data_dir.join("trash");
    if trash.exists() {
        for e in fs::read_dir(&trash)? {
            let p = e?.path();
            if p.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
    }
    Ok(())
}
