//! Per-device MQTT credentials: what `strata device add|list|remove` edits and the listener
//! checks at CONNECT.
//!
//! A device listed here may connect only with its own password, whatever `auth.enabled` says
//! (registering a device opts it into authentication); a token, or another device's password,
//! is refused with CONNACK 0x04. Passwords are generated (`strata_dev_` + 32 random bytes in
//! URL-safe base64, 256 bits) and shown once; only their SHA-256 is stored, as for API tokens
//! (`strata_auth::tokens`): with that much entropy a fast unsalted hash leaves nothing to
//! brute-force, and CONNECT stays cheap. The file is `<data_dir>/mqtt/devices.json`, JSON,
//! written to a temporary file, fsynced and renamed (mode 0600, never through a symbolic
//! link, `add` and `remove` under a lock: `strata_auth::private_file`):
//!
//! ```json
//! {"version": 1, "devices": [{"device": "pump-7", "sha256": "…64 hex…",
//!   "created": "2026-12-03T22:00:00Z", "description": ""}]}
//! ```
//!
//! The running server re-reads the file when its size, time or inode changed (checked on a
//! CONNECT by a device it does not know, and at most every [`RECHECK`] otherwise), so `add`
//! and `remove` take effect without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use parking_lot::Mutex;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_auth::tokens::decode_hash;

use super::topic::valid_device_id;

/// Every device password starts with this (secret scanners and humans recognise one).
pub const PASSWORD_PREFIX: &str = "strata_dev_";
const FILE_VERSION: u32 = 1;
/// A known device's CONNECT re-checks the file at most this often (a removed device is
/// refused within this time).
pub const RECHECK: Duration = Duration::from_secs(2);

/// One device as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub device: String,
    /// Hex SHA-256 of the password.
    pub sha256: String,
    /// RFC 3339, seconds.
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DevicesFile {
    version: u32,
    devices: Vec<DeviceRecord>,
}

/// Errors of reading or changing the device credentials file.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device credentials file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("device credentials file: {0}")]
    File(#[from] strata_auth::private_file::PrivateFileError),
    #[error("device credentials file {path} is not valid: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("device credentials file {path} has version {version}; this build reads version {FILE_VERSION}")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("device {device:?} is already registered (remove it first to issue a new password)")]
    Exists { device: String },
    #[error("no device {device:?} is registered")]
    NotFound { device: String },
    #[error("{device:?} is not a device id (one topic level without / + #, at most 128 bytes)")]
    InvalidId { device: String },
}

/// The credentials file of a data directory.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("mqtt").join("devices.json")
}

fn hash(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

/// The devices in `path`; a missing file holds none.
pub fn load(path: &Path) -> Result<Vec<DeviceRecord>, DeviceError> {
    let Some(contents) = strata_auth::private_file::read(path)? else { return Ok(Vec::new()) };
    if let Some(mode) = contents.loosened_mode {
        tracing::warn!(path = %path.display(), mode = %format!("{mode:04o}"), "the device credentials file was readable or writable by others; its mode is now 0600");
    }
    let text = contents.text;
    let corrupt = |message: String| DeviceError::Corrupt { path: path.to_owned(), message };
    let file: DevicesFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.version != FILE_VERSION {
        return Err(DeviceError::UnsupportedVersion { path: path.to_owned(), version: file.version });
    }
    for d in &file.devices {
        if decode_hash(&d.sha256).is_none() {
            return Err(corrupt(format!("device {:?}: sha256 is not 64 hex digits", d.device)));
        }
        if !valid_device_id(&d.device) {
            return Err(corrupt(format!("{:?} is not a device id", d.device)));
        }
    }
    Ok(file.devices)
}

/// Replaces the file's content atomically (temporary file, fsync, rename, directory fsync).
fn save(path: &Path, devices: &[DeviceRecord]) -> Result<(), DeviceError> {
    let file = DevicesFile { version: FILE_VERSION, devices: devices.to_vec() };
    let mut text = serde_json::to_string_pretty(&file).expect("device records serialize");
    text.push('\n');
    Ok(strata_auth::private_file::replace(path, text.as_bytes())?)
}

/// Registers `device` and returns its password (shown once) and record.
pub fn add(path: &Path, device: &str, description: &str) -> Result<(String, DeviceRecord), DeviceError> {
    if !valid_device_id(device) {
        return Err(DeviceError::InvalidId { device: device.to_owned() });
    }
    let _lock = strata_auth::private_file::lock(path)?;
    let mut devices = load(path)?;
    if devices.iter().any(|d| d.device == device) {
        return Err(DeviceError::Exists { device: device.to_owned() });
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let password =
        format!("{PASSWORD_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let record = DeviceRecord {
        device: device.to_owned(),
        sha256: hex::encode(hash(&password)),
        created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        description: description.to_owned(),
    };
    devices.push(record.clone());
    save(path, &devices)?;
    Ok((password, record))
}

/// Removes `device` and returns its record.
pub fn remove(path: &Path, device: &str) -> Result<DeviceRecord, DeviceError> {
    let _lock = strata_auth::private_file::lock(path)?;
    let mut devices = load(path)?;
    let pos = devices
        .iter()
        .position(|d| d.device == device)
        .ok_or_else(|| DeviceError::NotFound { device: device.to_owned() })?;
    let removed = devices.remove(pos);
    save(path, &devices)?;
    Ok(removed)
}

/// The verdict on a CONNECT's device and password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The device is registered and the password is its own.
    Accepted,
    /// The device is registered and the password is missing or not its own.
    Refused,
    /// The device is not registered: the other rules (tokens, auth off) decide.
    Unknown,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

#[derive(Debug)]
struct Loaded {
    /// `None` until the first read; then the file's stamp (`Some(None)`: no file).
    stamp: Option<Option<Stamp>>,
    checked: Option<Instant>,
    by_device: HashMap<String, [u8; 32]>,
}

/// The listener's view of the credentials file, re-read when it changes.
#[derive(Debug)]
pub struct DeviceCredentials {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

fn stamp(path: &Path) -> Result<Option<Stamp>, DeviceError> {
    match std::fs::metadata(path) {
        Ok(m) => {
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let inode = 0;
            Ok(Some(Stamp { modified: m.modified().ok(), len: m.len(), inode }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DeviceError::Io { path: path.to_owned(), source }),
    }
}

impl DeviceCredentials {
    /// Reads the file (a missing one registers no device). A bad file is an error at start.
    pub fn open(path: PathBuf) -> Result<DeviceCredentials, DeviceError> {
        let c = DeviceCredentials {
            path,
            loaded: Mutex::new(Loaded { stamp: None, checked: None, by_device: HashMap::new() }),
        };
        c.reload(true)?;
        Ok(c)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file if it changed (`force`: whatever the last check). On error the
    /// devices loaded before stay in force.
    fn reload(&self, force: bool) -> Result<(), DeviceError> {
        let mut l = self.loaded.lock();
        if !force && l.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return Ok(());
        }
        let s = stamp(&self.path)?;
        l.checked = Some(Instant::now());
        // `save` renames a new file into place, so a change always changes the inode.
        if l.stamp == Some(s) {
            return Ok(());
        }
        let records = load(&self.path)?;
        l.by_device =
            records.into_iter().filter_map(|r| decode_hash(&r.sha256).map(|h| (r.device, h))).collect();
        l.stamp = Some(s);
        Ok(())
    }

    /// Checks `password` for `device`. Blocking (may re-read the file).
    pub fn check(&self, device: &str, password: Option<&[u8]>) -> Check {
        // A device not known yet may have been added a moment ago: look at the file now.
        // A known one is re-checked at most every RECHECK (it may have been removed).
        let known = self.loaded.lock().by_device.contains_key(device);
        if let Err(e) = self.reload(!known) {
            tracing::warn!(error = %e, "cannot re-read the device credentials file; keeping the devices loaded before");
        }
        let l = self.loaded.lock();
        let Some(expected) = l.by_device.get(device) else { return Check::Unknown };
        let Some(password) = password.filter(|p| !p.is_empty()) else { return Check::Refused };
        let got: [u8; 32] = Sha256::digest(password).into();
        // Comparing hashes, not passwords: timing reveals nothing useful about the password.
        if got == *expected {
            Check::Accepted
        } else {
            Check::Refused
        }
    }

    /// Devices registered (as last read).
    pub fn len(&self) -> usize {
        self.loaded.lock().by_device.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_check_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let creds = DeviceCredentials::open(path.clone()).unwrap();
        assert_eq!(creds.check("pump-7", Some(b"x")), Check::Unknown);
        let (pw7, rec) = add(&path, "pump-7", "north hall").unwrap();
        let (pw8, _) = add(&path, "pump-8", "").unwrap();
        assert!(pw7.starts_with(PASSWORD_PREFIX) && pw7 != pw8);
        assert!(matches!(add(&path, "pump-7", ""), Err(DeviceError::Exists { .. })));
        assert!(matches!(add(&path, "a/b", ""), Err(DeviceError::InvalidId { .. })));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&pw7[PASSWORD_PREFIX.len()..]), "password stored in clear");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Added after open: seen at the next CONNECT of that device.
        assert_eq!(creds.check("pump-7", Some(pw7.as_bytes())), Check::Accepted);
        assert_eq!(creds.check("pump-7", Some(pw8.as_bytes())), Check::Refused, "another device's password");
        assert_eq!(creds.check("pump-7", Some(b"")), Check::Refused);
        assert_eq!(creds.check("pump-7", None), Check::Refused);
        assert_eq!(creds.check("pump-9", Some(pw7.as_bytes())), Check::Unknown);
        assert_eq!(load(&path).unwrap()[0], rec);
        remove(&path, "pump-7").unwrap();
        assert!(matches!(remove(&path, "pump-7"), Err(DeviceError::NotFound { .. })));
        assert_eq!(load(&path).unwrap().len(), 1);
        // A fresh view (as after a restart) no longer knows pump-7.
        let creds = DeviceCredentials::open(path).unwrap();
        assert_eq!(creds.check("pump-7", Some(pw7.as_bytes())), Check::Unknown);
        assert_eq!(creds.len(), 1);
    }

    #[test]
    fn corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devices.json");
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(load(&path), Err(DeviceError::Corrupt { .. })));
        assert!(DeviceCredentials::open(path.clone()).is_err());
        std::fs::write(&path, r#"{"version": 2, "devices": []}"#).unwrap();
        assert!(matches!(load(&path), Err(DeviceError::UnsupportedVersion { version: 2, .. })));
        std::fs::write(&path, r#"{"version": 1, "devices": [{"device": "d", "sha256": "zz"}]}"#).unwrap();
        assert!(matches!(load(&path), Err(DeviceError::Corrupt { .. })));
    }
}
