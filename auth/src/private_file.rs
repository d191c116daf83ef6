//! Small secret-bearing files (token and device-password hashes): written so that a crash
//! leaves either the old or the new content, readable only by the server's user, never
//! through a symbolic link, and edited under a lock.
//!
//! - Symbolic links are refused, on reading and on writing (`O_NOFOLLOW`): a link planted in
//!   the data directory would otherwise make a root-run `strata token create` overwrite, or
//!   `chmod`, whatever it points to. The price: a secret file cannot itself be a link (point
//!   `auth.tokens_file` at the real file).
//! - Every write leaves mode 0600; a read that finds a looser mode tightens it and says so
//!   ([`read`] returns the old mode so the caller can log it).
//! - Read-modify-write edits (`strata token create|revoke`, `strata device add|remove`) hold
//!   an exclusive `flock` on `<file>.lock` beside the file ([`lock`]), so two edits at once
//!   cannot lose one another. Readers need no lock: the new content is renamed into place.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

/// The mode of every secret file.
pub const MODE: u32 = 0o600;

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    #[error("{path} is a symbolic link; refusing to follow it for a secret file (replace it with the file itself)")]
    Symlink { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl PrivateFileError {
    fn io(path: &Path, source: std::io::Error) -> PrivateFileError {
        // O_NOFOLLOW on a link fails with ELOOP.
        #[cfg(unix)]
        if source.raw_os_error() == Some(libc::ELOOP) {
            return PrivateFileError::Symlink { path: path.to_owned() };
        }
        PrivateFileError::Io { path: path.to_owned(), source }
    }

    /// True when the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, PrivateFileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn open_options() -> std::fs::OpenOptions {
    let mut opts = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).mode(MODE);
    }
    opts
}

fn refuse_symlink(path: &Path) -> Result<(), PrivateFileError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(PrivateFileError::Symlink { path: path.to_owned() }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PrivateFileError::io(path, e)),
    }
}

/// What [`read`] found.
#[derive(Debug)]
pub struct Contents {
    pub text: String,
    /// The file's mode before it was tightened to [`MODE`], when it was looser.
    pub loosened_mode: Option<u32>,
}

/// Reads `path` without following a symbolic link, and tightens its mode to 0600 if others
/// could read or write it. A missing file is `Ok(None)`.
pub fn read(path: &Path) -> Result<Option<Contents>, PrivateFileError> {
    let mut f = match open_options().read(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PrivateFileError::io(path, e)),
    };
    let loosened_mode = tighten(&f, path)?;
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(|e| PrivateFileError::io(path, e))?;
    Ok(Some(Contents { text, loosened_mode }))
}

/// Sets the mode of an open secret file to 0600 if it is looser; returns the old mode then.
fn tighten(f: &File, path: &Path) -> Result<Option<u32>, PrivateFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = f.metadata().map_err(|e| PrivateFileError::io(path, e))?.permissions().mode() & 0o7777;
        if m & !MODE != 0 {
            // fchmod on the descriptor: the same file that was checked, whatever the path is now.
            f.set_permissions(std::fs::Permissions::from_mode(MODE))
                .map_err(|e| PrivateFileError::io(path, e))?;
            return Ok(Some(m));
        }
    }
    #[cfg(not(unix))]
    let _ = (f, path);
    Ok(None)
}

/// Replaces `path`'s content atomically: a fresh temporary file beside it (created
/// exclusively, mode 0600, not through a link), fsync, rename, then an fsync of the directory
/// so the rename itself survives a power loss. Creates the parent directory if needed.
/// Refuses a `path` that is a symbolic link.
pub fn replace(path: &Path, contents: &[u8]) -> Result<(), PrivateFileError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| PrivateFileError::io(dir, e))?;
    }
    refuse_symlink(path)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    // A leftover (from a crash, or planted: perhaps a link) is removed, never written through.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PrivateFileError::io(&tmp, e)),
    }
    {
        let mut f = open_options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| PrivateFileError::io(&tmp, e))?;
        // The umask may have made it stricter; it can never have made it looser, but a
        // filesystem that ignores the create mode is fixed here too.
        tighten(&f, &tmp)?;
        f.write_all(contents).map_err(|e| PrivateFileError::io(&tmp, e))?;
        f.sync_all().map_err(|e| PrivateFileError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| PrivateFileError::io(path, e))?;
    if let Some(d) = dir.and_then(|d| File::open(d).ok()) {
        // Some filesystems cannot fsync a directory: harmless, the rename is still atomic.
        let _ = d.sync_all();
    }
    Ok(())
}

/// An exclusive lock on a secret file's edits; released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the exclusive lock of `path`'s edits (`flock` on `<path>.lock`), waiting for
/// another edit to finish. Creates the parent directory if needed.
pub fn lock(path: &Path) -> Result<Lock, PrivateFileError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| PrivateFileError::io(dir, e))?;
    }
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let file = open_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| PrivateFileError::io(&lock_path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(PrivateFileError::io(&lock_path, e));
            }
        }
    }
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("secrets.json");
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!dir.path().join("sub").join("secrets.json.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_are_refused_and_modes_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(read(&link), Err(PrivateFileError::Symlink { .. })));
        assert!(matches!(replace(&link, b"x"), Err(PrivateFileError::Symlink { .. })));
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = read(&target).unwrap().unwrap();
        assert_eq!((c.text.as_str(), c.loosened_mode), ("keep", Some(0o644)));
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read(&target).unwrap().unwrap().loosened_mode, None);
        assert!(read(&dir.path().join("missing")).unwrap().is_none());
        let _held = lock(&target).unwrap();
    }
}
