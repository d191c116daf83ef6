//! The tokens file: what `strata token create|list|revoke` edits and the server reads.
//!
//! Only SHA-256 hashes of tokens are stored; a token is shown once, when it is created. A
//! token is `strata_` followed by 32 random bytes in unpadded URL-safe base64 (256 bits, so a
//! fast unsalted hash is enough: there is nothing to brute-force). The file is JSON, written
//! to a temporary file, fsynced and renamed over the old one (readers never see half a file),
//! with mode 0600, never through a symbolic link, and edited under a lock so two
//! `strata token create` at once both land (`crate::private_file`).
//!
//! ```json
//! {"version": 1, "tokens": [{"id": "3f9c0a1b2c3d4e5f", "description": "weather station",
//!   "sha256": "…64 hex…", "admin": false, "databases": ["weather"], "read": false,
//!   "write": true, "delete": false, "created": "2024-05-01T12:00:00Z"}]}
//! ```
//!
//! `delete` (InfluxQL `DELETE`, `DROP SERIES`, `DROP MEASUREMENT`) is a permission of its
//! own: a write token cannot delete unless it was created with `--delete`. Files written
//! before the permission existed read as `delete: false`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Every token starts with this, so secret scanners and humans can recognise one.
pub const TOKEN_PREFIX: &str = "strata_";
const FILE_VERSION: u32 = 1;

/// One token as stored: its hash and what it may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public handle for `list` and `revoke` (16 hex digits, random; not derived from the token).
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// Every permission, including creating databases.
    #[serde(default)]
    pub admin: bool,
    /// Databases the token applies to; `*` means all.
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub read: bool,
    #[serde(default)]
    pub write: bool,
    /// May delete data on its databases (not implied by `write`).
    #[serde(default)]
    pub delete: bool,
    /// RFC 3339, seconds.
    #[serde(default)]
    pub created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokensFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// Errors of reading or changing the tokens file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("tokens file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("tokens file: {0}")]
    File(#[from] crate::private_file::PrivateFileError),
    #[error("tokens file {path} is not valid: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("tokens file {path} has version {version}; this build reads version {FILE_VERSION}")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("no token with id {id:?}")]
    NotFound { id: String },
    #[error("invalid token scope: {reason}")]
    InvalidScope { reason: String },
}

/// What a new token may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSpec {
    pub description: String,
    pub admin: bool,
    pub databases: Vec<String>,
    pub read: bool,
    pub write: bool,
    pub delete: bool,
}

/// A fresh random token.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The tokens in `path`; a missing file holds none. A symbolic link is refused; a mode
/// looser than 0600 is tightened, with a warning.
pub fn load(path: &Path) -> Result<Vec<TokenRecord>, TokenError> {
    let Some(contents) = crate::private_file::read(path)? else { return Ok(Vec::new()) };
    if let Some(mode) = contents.loosened_mode {
        tracing::warn!(path = %path.display(), mode = %format!("{mode:04o}"), "the tokens file was readable or writable by others; its mode is now 0600");
    }
    let text = contents.text;
    let file: TokensFile = serde_json::from_str(&text)
        .map_err(|e| TokenError::Corrupt { path: path.to_owned(), message: e.to_string() })?;
    if file.version != FILE_VERSION {
        return Err(TokenError::UnsupportedVersion { path: path.to_owned(), version: file.version });
    }
    for t in &file.tokens {
        if decode_hash(&t.sha256).is_none() {
            return Err(TokenError::Corrupt {
                path: path.to_owned(),
                message: format!("token {}: sha256 is not 64 hex digits", t.id),
            });
        }
    }
    Ok(file.tokens)
}

/// The 32 bytes of a hex SHA-256.
pub fn decode_hash(hex_text: &str) -> Option<[u8; 32]> {
    let v = hex::decode(hex_text).ok()?;
    v.try_into().ok()
}

/// Replaces the file's content atomically (temporary file, fsync, rename, directory fsync).
pub fn save(path: &Path, tokens: &[TokenRecord]) -> Result<(), TokenError> {
    let file = TokensFile { version: FILE_VERSION, tokens: tokens.to_vec() };
    let mut text = serde_json::to_string_pretty(&file).expect("tokens serialize");
    text.push('\n');
    Ok(crate::private_file::replace(path, text.as_bytes())?)
}

/// Creates a token with `spec`, stores its hash, and returns the token (shown once) and its
/// record.
pub fn create(path: &Path, spec: &TokenSpec) -> Result<(String, TokenRecord), TokenError> {
    let scope = |reason: &str| Err(TokenError::InvalidScope { reason: reason.to_owned() });
    if !spec.admin {
        if spec.databases.is_empty() {
            return scope("name at least one database (--db NAME, or --db '*' for all) or use --admin");
        }
        if !spec.read && !spec.write && !spec.delete {
            return scope("grant --read, --write, --delete or a combination");
        }
        for db in &spec.databases {
            if db != "*" {
                strata_engine::validate_db_name(db)
                    .map_err(|e| TokenError::InvalidScope { reason: e.to_string() })?;
            }
        }
    }
    let _lock = crate::private_file::lock(path)?;
    let mut tokens = load(path)?;
    let token = generate();
    let mut id_bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut id_bytes);
    let record = TokenRecord {
        id: hex::encode(id_bytes),
        description: spec.description.clone(),
        sha256: hex::encode(hash(&token)),
        admin: spec.admin,
        databases: if spec.admin { Vec::new() } else { spec.databases.clone() },
        read: spec.read || spec.admin,
        write: spec.write || spec.admin,
        delete: spec.delete || spec.admin,
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    tokens.push(record.clone());
    save(path, &tokens)?;
    Ok((token, record))
}

/// Removes the token with `id` and returns its record.
pub fn revoke(path: &Path, id: &str) -> Result<TokenRecord, TokenError> {
    let _lock = crate::private_file::lock(path)?;
    let mut tokens = load(path)?;
    let pos =
        tokens.iter().position(|t| t.id == id).ok_or_else(|| TokenError::NotFound { id: id.to_owned() })?;
    let removed = tokens.remove(pos);
    save(path, &tokens)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_revoke_store_only_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tokens.json");
        assert!(load(&path).unwrap().is_empty());
        let spec = TokenSpec {
            description: "station".into(),
            databases: vec!["weather".into()],
            write: true,
            ..TokenSpec::default()
        };
        let (token, rec) = create(&path, &spec).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 43, "{token}");
        let (token2, _) = create(&path, &TokenSpec { admin: true, ..TokenSpec::default() }).unwrap();
        assert_ne!(token, token2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&token) && !text.contains(&token[TOKEN_PREFIX.len()..]),
            "token stored in clear"
        );
        assert!(text.contains(&hex::encode(hash(&token))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let all = load(&path).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], rec);
        assert!(all[1].admin && all[1].read && all[1].write && all[1].delete);
        assert!(!all[0].delete, "write does not imply delete");
        revoke(&path, &rec.id).unwrap();
        assert_eq!(load(&path).unwrap().len(), 1);
        assert!(matches!(revoke(&path, &rec.id), Err(TokenError::NotFound { .. })));
    }

    #[test]
    fn scope_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        for spec in [
            TokenSpec { read: true, ..TokenSpec::default() },
            TokenSpec { databases: vec!["x".into()], ..TokenSpec::default() },
            TokenSpec { databases: vec!["../x".into()], read: true, ..TokenSpec::default() },
        ] {
            assert!(matches!(create(&path, &spec), Err(TokenError::InvalidScope { .. })), "{spec:?}");
        }
        assert!(!path.exists());
    }

    #[test]
    fn corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(load(&path), Err(TokenError::Corrupt { .. })));
        std::fs::write(&path, r#"{"version": 9, "tokens": []}"#).unwrap();
        assert!(matches!(load(&path), Err(TokenError::UnsupportedVersion { version: 9, .. })));
        std::fs::write(&path, r#"{"version": 1, "tokens": [{"id": "a", "sha256": "zz"}]}"#).unwrap();
        assert!(matches!(load(&path), Err(TokenError::Corrupt { .. })));
    }
}
