//! Online backups: `POST /api/v1/backup[?name=NAME]` writes one into `<backup.dir>/NAME` with
//! [`Engine::backup`], and `GET /api/v1/backups` lists what the backup directory holds. Both
//! need an admin token when auth is on.
//!
//! A backup holds every write acknowledged before the request arrived: the engine flushes the
//! memtables, hard-links the (immutable) segment files and copies the catalog, while writes
//! and queries go on (`engine/src/backup.rs`). It runs on a blocking thread. Its directory is
//! created here first with `create_dir`, which fails when the name exists: that is the
//! "name taken" check (409), atomic, so two concurrent requests for one name cannot both pass
//! it. A failed backup's directory is removed, so a half-written backup is never left behind
//! looking like one (a complete backup has a `BACKUP` file, written last).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use strata_auth::Access;
use strata_engine::backup::{BackupReport, BACKUP_FILE};
use strata_engine::error::LifecycleError;
use strata_engine::Engine;

use super::{ApiError, AppState};

/// Longest backup name.
pub const MAX_NAME_LEN: usize = 64;

/// How many `-2`, `-3`, ... suffixes a default (timestamp) name tries when backups are
/// requested faster than one per second.
const DEFAULT_NAME_SUFFIXES: u32 = 9;

#[derive(Debug, Default, Deserialize)]
pub struct BackupParams {
    pub name: Option<String>,
    /// A token as the 1.x `p` parameter.
    pub p: Option<String>,
}

/// Checks a backup name: 1 to 64 of `[A-Za-z0-9_.-]`, not starting with a dot (so never `.`,
/// `..` or a hidden directory, and never a path).
pub fn validate_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid backup name {name:?}: {why}"));
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad(&format!("must be 1 to {MAX_NAME_LEN} characters"));
    }
    if name.starts_with('.') {
        return bad("must not start with a dot");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return bad("only ASCII letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

/// The default name of a backup taken at `t`: its UTC time, `20261203T191500Z`.
pub fn default_name(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string().replace(['-', ':'], "")
}

/// A finished backup.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub name: String,
    pub path: PathBuf,
    /// UTC, RFC 3339.
    pub created: String,
    pub databases: usize,
    pub segments: usize,
    pub bytes: u64,
    /// Segments hard-linked (the rest were copied: another file system).
    pub linked: usize,
    pub elapsed_ms: u64,
}

/// Why a backup was not written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("a backup named {name:?} already exists in {}", dir.display())]
    Exists { name: String, dir: PathBuf },
    #[error("cannot create the backup directory {}: {source}", path.display())]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("backup {name:?} failed: {source}")]
    Engine { name: String, source: LifecycleError },
}

/// The handlers' error: an [`ApiError`], or 409 for a taken name (a status only these routes
/// answer, so it is shaped here like every other error body).
#[derive(Debug)]
pub enum BackupResponseError {
    Api(ApiError),
    Conflict(String),
}

impl From<ApiError> for BackupResponseError {
    fn from(e: ApiError) -> Self {
        BackupResponseError::Api(e)
    }
}

impl IntoResponse for BackupResponseError {
    fn into_response(self) -> Response {
        match self {
            BackupResponseError::Api(e) => e.into_response(),
            BackupResponseError::Conflict(message) => (
                StatusCode::CONFLICT,
                Json(json!({ "code": "conflict", "message": message, "error": message })),
            )
                .into_response(),
        }
    }
}

pub async fn create_backup(
    State(st): State<AppState>,
    params: Result<Query<BackupParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, BackupResponseError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    st.authorize(&headers, p.p.as_deref(), Access::Admin)?;
    if let Some(name) = &p.name {
        validate_name(name).map_err(ApiError::BadRequest)?;
    }
    if st.shutting_down.load(Ordering::Acquire) {
        return Err(ApiError::ShuttingDown.into());
    }
    let dir = st.config.backup_dir();
    let engine = st.engine.clone();
    let result = tokio::task::spawn_blocking(move || write_backup(&engine, &dir, p.name.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(format!("backup task failed: {e}")))?;
    match result {
        Ok(w) => {
            st.metrics.backup.backups.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                name = %w.name,
                path = %w.path.display(),
                segments = w.segments,
                linked = w.linked,
                bytes = w.bytes,
                elapsed_ms = w.elapsed_ms,
                "backup done"
            );
            Ok((StatusCode::CREATED, Json(w)).into_response())
        }
        Err(e @ BackupError::Exists { .. }) => Err(BackupResponseError::Conflict(e.to_string())),
        Err(e) => {
            st.metrics.backup.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "backup failed");
            Err(ApiError::Internal(e.to_string()).into())
        }
    }
}

/// Writes a backup named `name` (default: the current UTC time) into `dir`.
pub fn write_backup(engine: &Engine, dir: &Path, name: Option<&str>) -> Result<Written, BackupError> {
    fs::create_dir_all(dir).map_err(|source| BackupError::Dir { path: dir.to_owned(), source })?;
    // Absolute paths in answers and messages: `backup.dir` may be relative to the server's
    // working directory, which the client does not know.
    let dir = &fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let now = SystemTime::now();
    let (name, dest) = reserve(dir, name, now)?;
    let start = Instant::now();
    let report: BackupReport = match engine.backup(&dest) {
        Ok(r) => r,
        Err(source) => {
            // Best effort: the error being reported matters more than a failed cleanup.
            if let Err(e) = fs::remove_dir_all(&dest) {
                tracing::warn!(error = %e, path = %dest.display(), "cannot remove the failed backup");
            }
            return Err(BackupError::Engine { name, source });
        }
    };
    let elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(Written {
        path: dest,
        name,
        created: humantime::format_rfc3339_seconds(now).to_string(),
        databases: report.databases,
        segments: report.segments,
        bytes: report.bytes,
        linked: report.linked,
        elapsed_ms,
    })
}

/// Creates the backup's (empty) directory; the creation is the claim on the name.
fn reserve(dir: &Path, name: Option<&str>, now: SystemTime) -> Result<(String, PathBuf), BackupError> {
    let candidates: Vec<String> = match name {
        Some(n) => vec![n.to_owned()],
        None => {
            let base = default_name(now);
            std::iter::once(base.clone())
                .chain((2..=DEFAULT_NAME_SUFFIXES + 1).map(|i| format!("{base}-{i}")))
                .collect()
        }
    };
    for candidate in &candidates {
        let dest = dir.join(candidate);
        match fs::create_dir(&dest) {
            Ok(()) => return Ok((candidate.clone(), dest)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(BackupError::Dir { path: dest, source }),
        }
    }
    Err(BackupError::Exists { name: candidates[0].clone(), dir: dir.to_owned() })
}

/// One entry of `GET /api/v1/backups`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackupInfo {
    pub name: String,
    pub path: PathBuf,
    /// UTC, RFC 3339: from the `BACKUP` file, else the directory's modification time.
    pub created: Option<String>,
    /// Whether the `BACKUP` file (written last) is there; false while a backup is being
    /// written, or if the server stopped in the middle of one.
    pub complete: bool,
    pub databases: Option<u64>,
    pub segments: Option<u64>,
    /// Bytes of all its files. Segments are hard links shared with the data directory (until
    /// compaction or retention replaces them there), so this overstates the disk it costs.
    pub size: u64,
}

pub async fn list_backups(
    State(st): State<AppState>,
    params: Result<Query<BackupParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    st.authorize(&headers, p.p.as_deref(), Access::Admin)?;
    let configured = st.config.backup_dir();
    let dir = configured.clone();
    let (dir, backups) = tokio::task::spawn_blocking(move || {
        let dir = fs::canonicalize(&dir).unwrap_or(dir);
        list(&dir).map(|backups| (dir, backups))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("listing task failed: {e}")))?
    .map_err(|e| ApiError::Internal(format!("cannot list {}: {e}", configured.display())))?;
    Ok(Json(json!({ "dir": dir, "backups": backups })).into_response())
}

/// The backups in `dir`, by name (default names sort by time). An absent `dir` holds none.
pub fn list(dir: &Path) -> std::io::Result<Vec<BackupInfo>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type()?.is_dir() {
            continue;
        }
        let path = e.path();
        let description = fs::read_to_string(path.join(BACKUP_FILE)).ok();
        let field = |key: &str| -> Option<u64> {
            description.as_deref()?.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().parse().ok()).flatten()
            })
        };
        let created = field("created_unix_ns")
            .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns))
            .or_else(|| e.metadata().and_then(|m| m.modified()).ok())
            .map(|t| humantime::format_rfc3339_seconds(t).to_string());
        out.push(BackupInfo {
            complete: description.is_some(),
            created,
            databases: field("databases"),
            segments: field("segments"),
            size: tree_size(&path),
            name,
            path,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Bytes of the files under `dir` (unreadable entries count 0: a listing should not fail
/// because a backup is being written or deleted at the same moment).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "nightly-2026.12.03", "A_b-c.d", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "../x", "a b", "ü", "a\\b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        let t = UNIX_EPOCH + Duration::from_secs(1_796_325_300); // 2026-12-03T19:15:00Z
        assert_eq!(default_name(t), "20261203T191500Z");
        assert!(validate_name(&default_name(SystemTime::now())).is_ok());
    }

    #[test]
    fn reserve_claims_names_and_suffixes_default_ones() {
        let dir = tempfile::tempdir().unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(1_796_325_300);
        let (n, p) = reserve(dir.path(), Some("x"), t).unwrap();
        assert_eq!((n.as_str(), p.is_dir()), ("x", true));
        assert!(matches!(reserve(dir.path(), Some("x"), t), Err(BackupError::Exists { .. })));
        assert_eq!(reserve(dir.path(), None, t).unwrap().0, "20261203T191500Z");
        assert_eq!(reserve(dir.path(), None, t).unwrap().0, "20261203T191500Z-2");
        for _ in 3..=10 {
            reserve(dir.path(), None, t).unwrap();
        }
        assert!(matches!(reserve(dir.path(), None, t), Err(BackupError::Exists { .. })));
    }

    #[test]
    fn list_reads_descriptions_and_skips_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(&dir.path().join("absent")).unwrap().is_empty());
        let b = dir.path().join("b1");
        fs::create_dir_all(b.join("dbs/db")).unwrap();
        fs::write(b.join("dbs/db/1.seg"), [0u8; 100]).unwrap();
        fs::write(
            b.join(BACKUP_FILE),
            "strata backup\nversion = 0.1.0\ncreated_unix_ns = 1796325300000000000\ndatabases = 1\nsegments = 1\nbytes = 100\n",
        )
        .unwrap();
        fs::create_dir(dir.path().join("a0-partial")).unwrap();
        fs::create_dir(dir.path().join(".tmp")).unwrap();
        fs::write(dir.path().join("file"), "x").unwrap();
        let got = list(dir.path()).unwrap();
        assert_eq!(got.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["a0-partial", "b1"]);
        assert!(!got[0].complete && got[0].created.is_some() && got[0].segments.is_none());
        let desc_len = fs::metadata(b.join(BACKUP_FILE)).unwrap().len();
        assert_eq!(
            (got[1].complete, got[1].created.as_deref(), got[1].databases, got[1].segments, got[1].size),
            (true, Some("2026-12-03T19:15:00Z"), Some(1), Some(1), 100 + desc_len)
        );
    }
}
