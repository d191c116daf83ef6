//! Authentication (who is calling: a token) and authorization (may it read or write this
//! database).
//!
//! Tokens come from the `Authorization` header (`Token X`, `Bearer X`, or `Basic` with the
//! token as password, as InfluxDB's 1.x compatibility API takes it) or the 1.x `p` query
//! parameter. Grants come from the admin token in the config and from the tokens file
//! ([`tokens`]), which `strata token` edits while the server runs: the server re-reads it when
//! it changes (checked every two seconds, and at once when an unknown token shows up, so a
//! fresh token works immediately and a revoked one stops within two seconds). A tokens file
//! that cannot be read or parsed fails closed: every token from it stops working (only the
//! configured admin token still does) until the file is fixed, and the error is logged.
//!
//! Requests are authenticated ([`Auth::authenticate`]: is this a token?) before anything of
//! their body is read, and authorized ([`Grant::check`]) as soon as what they want is known.
//!
//! Tokens are never logged; a grant is known in logs by its id.
//!
//! Layout: this file (grants, [`Auth`], [`request_token`]); [`tokens`]: the tokens file and
//! its records; [`private_file`]: how secret-bearing files are read and written (also the MQTT
//! device-password file's); [`pem`]: TLS certificates and private keys from PEM files (every
//! listener's and the bridge's); [`config`]: the `[auth]` section and [`Secret`].
//!
//! Its own crate (strata-auth) because both ingest paths (HTTP writes, MQTT) and the query
//! path authorize with it, and the `strata token` command edits its file: below the ingest
//! crate, it depends on no other Strata crate. What it is not: the MQTT device passwords
//! (`strata-mqtt`'s `devices`), nor the mapping of its errors to HTTP statuses (the server's
//! `http::error`).

pub mod config;
pub mod pem;
pub mod private_file;
pub mod tokens;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use http::{header, HeaderMap};
use parking_lot::RwLock;

pub use self::config::{AuthConfig, Secret};
use self::tokens::{TokenError, TokenRecord};

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    Read(&'a str),
    Write(&'a str),
    /// Deleting data (InfluxQL `DELETE`, `DROP SERIES`, `DROP MEASUREMENT`): not implied by
    /// `Write`.
    Delete(&'a str),
    /// Administration: creating databases, listing all of them.
    Admin,
}

/// What a token may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The token's id (`admin` for the configured admin token); safe to log.
    pub id: Arc<str>,
    pub admin: bool,
    /// Databases covered; `*` means all.
    pub databases: Vec<String>,
    pub read: bool,
    pub write: bool,
    pub delete: bool,
}

impl Grant {
    pub fn allows(&self, access: Access<'_>) -> bool {
        if self.admin {
            return true;
        }
        let covers = |db: &str| self.databases.iter().any(|d| d == "*" || d == db);
        match access {
            Access::Read(db) => self.read && covers(db),
            Access::Write(db) => self.write && covers(db),
            Access::Delete(db) => self.delete && covers(db),
            Access::Admin => false,
        }
    }

    /// [`Grant::allows`] as a result whose error names the missing permission.
    pub fn check(&self, access: Access<'_>) -> Result<(), AuthError> {
        if self.allows(access) {
            return Ok(());
        }
        let what = match access {
            Access::Read(db) => format!("read database {db:?}"),
            Access::Write(db) => format!("write database {db:?}"),
            Access::Delete(db) => {
                format!("delete from database {db:?} (the delete permission: create a token with --delete)")
            }
            Access::Admin => "administer the server".to_owned(),
        };
        Err(AuthError::Forbidden { token_id: self.id.clone(), what })
    }

    fn from_record(r: &TokenRecord) -> Grant {
        Grant {
            id: r.id.as_str().into(),
            admin: r.admin,
            databases: r.databases.clone(),
            read: r.read,
            write: r.write,
            delete: r.delete,
        }
    }
}

/// Why a request is not allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send a token (Authorization: Token <token>)")]
    MissingCredentials,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("invalid token")]
    InvalidToken,
    #[error("token {token_id} may not {what}")]
    Forbidden { token_id: Arc<str>, what: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    /// Every save renames a new file into place, so the inode changes even when the mtime
    /// (coarse on most filesystems) and the length do not.
    inode: u64,
}

struct Loaded {
    stamp: Option<FileStamp>,
    by_hash: HashMap<[u8; 32], Grant>,
}

/// The authenticator: configured admin token plus the tokens file.
pub struct Auth {
    enabled: bool,
    admin_hash: Option<[u8; 32]>,
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("enabled", &self.enabled).field("path", &self.path).finish()
    }
}

impl Auth {
    /// Reads the tokens file of `config` (in `data_dir` unless `auth.tokens_file` says
    /// elsewhere; a missing one holds no tokens).
    pub fn new(config: &AuthConfig, data_dir: &Path) -> Result<Auth, TokenError> {
        let admin = config.admin_token.expose();
        let auth = Auth {
            enabled: config.enabled,
            admin_hash: (!admin.is_empty()).then(|| tokens::hash(admin)),
            path: config.tokens_file_in(data_dir),
            loaded: RwLock::new(Loaded { stamp: None, by_hash: HashMap::new() }),
        };
        auth.reload_if_changed()?;
        Ok(auth)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Tokens that can authenticate (admin token included).
    pub fn token_count(&self) -> usize {
        self.loaded.read().by_hash.len() + usize::from(self.admin_hash.is_some())
    }

    /// Re-reads the tokens file if it changed since the last read. Returns whether it did.
    /// On error it fails closed: the grants from the file are dropped (the configured admin
    /// token keeps working), and stay dropped until the file changes and reads well.
    pub fn reload_if_changed(&self) -> Result<bool, TokenError> {
        let stamp = match std::fs::symlink_metadata(&self.path) {
            Ok(m) => Some(FileStamp { modified: m.modified().ok(), len: m.len(), inode: inode(&m) }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                self.drop_grants(None);
                return Err(TokenError::Io { path: self.path.clone(), source });
            }
        };
        if self.loaded.read().stamp == stamp {
            return Ok(false);
        }
        let records = match tokens::load(&self.path) {
            Ok(r) => r,
            Err(e) => {
                // Remember the bad file's stamp: it is not re-read (nor re-logged) until it
                // changes, and its tokens stay refused meanwhile.
                self.drop_grants(stamp);
                return Err(e);
            }
        };
        let by_hash = records
            .iter()
            .filter_map(|r| tokens::decode_hash(&r.sha256).map(|h| (h, Grant::from_record(r))))
            .collect();
        *self.loaded.write() = Loaded { stamp, by_hash };
        Ok(true)
    }

    fn drop_grants(&self, stamp: Option<FileStamp>) {
        *self.loaded.write() = Loaded { stamp, by_hash: HashMap::new() };
    }

    /// The grant of a token, if it is one.
    fn lookup(&self, token: &str) -> Option<Grant> {
        let h = tokens::hash(token);
        if self.admin_hash == Some(h) {
            return Some(Grant {
                id: "admin".into(),
                admin: true,
                databases: Vec::new(),
                read: true,
                write: true,
                delete: true,
            });
        }
        if let Some(g) = self.loaded.read().by_hash.get(&h) {
            return Some(g.clone());
        }
        // Perhaps created a moment ago by `strata token create`.
        match self.reload_if_changed() {
            Ok(true) => self.loaded.read().by_hash.get(&h).cloned(),
            Ok(false) => None,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the tokens file: refusing every token from it until it is fixed");
                None
            }
        }
    }

    /// Who `token` is: its grant, or 401. With auth disabled, `Ok(None)`.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Option<Grant>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let token = token.ok_or(AuthError::MissingCredentials)?;
        self.lookup(token).map(Some).ok_or(AuthError::InvalidToken)
    }

    /// Checks that `token` may do `access`. With auth disabled everything is allowed and the
    /// result is `None`.
    pub fn authorize(&self, token: Option<&str>, access: Access<'_>) -> Result<Option<Grant>, AuthError> {
        let Some(grant) = self.authenticate(token)? else { return Ok(None) };
        grant.check(access)?;
        Ok(Some(grant))
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// The token a request presents: the `Authorization` header (`Token`, `Bearer` or `Basic`)
/// or else the 1.x `p` query parameter (`u` is ignored: the token alone identifies the
/// caller).
pub fn request_token(headers: &HeaderMap, query_password: Option<&str>) -> Result<Option<String>, AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::Malformed("not ASCII"))?.trim();
        let (scheme, rest) =
            value.split_once(' ').ok_or(AuthError::Malformed("expected '<scheme> <credentials>'"))?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
            if rest.is_empty() {
                return Err(AuthError::Malformed("empty token"));
            }
            return Ok(Some(rest.to_owned()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| AuthError::Malformed("basic credentials are not base64"))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| AuthError::Malformed("basic credentials are not UTF-8"))?;
            let (user, password) = text.split_once(':').unwrap_or((text.as_str(), ""));
            // InfluxDB's 1.x compatibility takes the token as the password; accept it as the
            // user name when the password is empty.
            let token = if password.is_empty() { user } else { password };
            return Ok((!token.is_empty()).then(|| token.to_owned()));
        }
        return Err(AuthError::Malformed("unsupported scheme: use Token, Bearer or Basic"));
    }
    Ok(query_password.filter(|p| !p.is_empty()).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::tokens::TokenSpec;
    use super::*;

    /// The parts of the server's configuration that auth reads.
    struct Config {
        data_dir: PathBuf,
        auth: AuthConfig,
    }

    impl Config {
        fn tokens_file(&self) -> PathBuf {
            self.auth.tokens_file_in(&self.data_dir)
        }
    }

    fn config(dir: &std::path::Path) -> Config {
        let mut c = Config { data_dir: dir.to_owned(), auth: AuthConfig::default() };
        c.auth.enabled = true;
        c.auth.admin_token = Secret("admin-token-0123456789".into());
        c
    }

    #[test]
    fn scopes() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let path = c.tokens_file();
        let spec = |dbs: &[&str], read, write| TokenSpec {
            databases: dbs.iter().map(|s| s.to_string()).collect(),
            read,
            write,
            ..TokenSpec::default()
        };
        let (d, _) = tokens::create(
            &path,
            &TokenSpec { databases: vec!["a".into()], write: true, delete: true, ..TokenSpec::default() },
        )
        .unwrap();
        let (w, _) = tokens::create(&path, &spec(&["a"], false, true)).unwrap();
        let (r, _) = tokens::create(&path, &spec(&["a", "b"], true, false)).unwrap();
        let (all, _) = tokens::create(&path, &spec(&["*"], true, true)).unwrap();
        let auth = Auth::new(&c.auth, &c.data_dir).unwrap();
        assert_eq!(auth.token_count(), 5);
        let ok = |t: &str, a| auth.authorize(Some(t), a).is_ok();
        assert!(!ok(&w, Access::Delete("a")), "write does not imply delete");
        assert!(ok(&d, Access::Delete("a")));
        assert!(!ok(&d, Access::Delete("b")));
        assert!(ok("admin-token-0123456789", Access::Delete("x")));
        let msg = auth.authorize(Some(&w), Access::Delete("a")).unwrap_err().to_string();
        assert!(msg.contains("--delete"), "{msg}");
        assert!(ok(&w, Access::Write("a")));
        assert!(!ok(&w, Access::Write("b")));
        assert!(!ok(&w, Access::Read("a")));
        assert!(ok(&r, Access::Read("b")));
        assert!(!ok(&r, Access::Write("a")));
        assert!(ok(&all, Access::Write("anything")));
        assert!(!ok(&all, Access::Admin));
        assert!(ok("admin-token-0123456789", Access::Admin));
        assert!(matches!(auth.authorize(Some(&w), Access::Read("a")), Err(AuthError::Forbidden { .. })));
        assert_eq!(auth.authorize(Some("strata_nope"), Access::Read("a")), Err(AuthError::InvalidToken));
        assert_eq!(auth.authorize(None, Access::Read("a")), Err(AuthError::MissingCredentials));
        let msg = auth.authorize(Some(&w), Access::Read("a")).unwrap_err().to_string();
        assert!(!msg.contains(&w), "errors must not echo the token: {msg}");
    }

    #[test]
    fn disabled_allows_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.auth.enabled = false;
        let auth = Auth::new(&c.auth, &c.data_dir).unwrap();
        assert_eq!(auth.authorize(None, Access::Admin), Ok(None));
    }

    #[test]
    fn picks_up_new_and_revoked_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let auth = Auth::new(&c.auth, &c.data_dir).unwrap();
        let spec = TokenSpec { databases: vec!["a".into()], read: true, ..TokenSpec::default() };
        let (t, rec) = tokens::create(&c.tokens_file(), &spec).unwrap();
        assert!(auth.authorize(Some(&t), Access::Read("a")).is_ok(), "new token must work at once");
        tokens::revoke(&c.tokens_file(), &rec.id).unwrap();
        auth.reload_if_changed().unwrap();
        assert_eq!(auth.authorize(Some(&t), Access::Read("a")), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_corrupt_file_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let spec = TokenSpec { databases: vec!["a".into()], read: true, ..TokenSpec::default() };
        let (t, _) = tokens::create(&c.tokens_file(), &spec).unwrap();
        let auth = Auth::new(&c.auth, &c.data_dir).unwrap();
        assert!(auth.authorize(Some(&t), Access::Read("a")).is_ok());
        std::fs::write(c.tokens_file(), "{").unwrap();
        assert!(auth.reload_if_changed().is_err());
        assert_eq!(auth.authorize(Some(&t), Access::Read("a")), Err(AuthError::InvalidToken));
        assert!(auth.authorize(Some("admin-token-0123456789"), Access::Admin).is_ok());
        // Unchanged, the bad file is not re-read; fixed, its tokens work again.
        assert!(!auth.reload_if_changed().unwrap());
        let (t2, _) = {
            std::fs::remove_file(c.tokens_file()).unwrap();
            tokens::create(&c.tokens_file(), &spec).unwrap()
        };
        assert!(auth.authorize(Some(&t2), Access::Read("a")).is_ok());
    }

    #[test]
    fn extracts_tokens_from_every_place() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(request_token(&h("Token abc"), None), Ok(Some("abc".into())));
        assert_eq!(request_token(&h("bearer abc"), Some("other")), Ok(Some("abc".into())));
        assert_eq!(request_token(&h(&format!("Basic {}", b64("user:abc"))), None), Ok(Some("abc".into())));
        assert_eq!(request_token(&h(&format!("Basic {}", b64("abc:"))), None), Ok(Some("abc".into())));
        assert_eq!(request_token(&HeaderMap::new(), Some("abc")), Ok(Some("abc".into())));
        assert_eq!(request_token(&HeaderMap::new(), Some("")), Ok(None));
        assert_eq!(request_token(&HeaderMap::new(), None), Ok(None));
        assert!(request_token(&h("Token"), None).is_err());
        assert!(request_token(&h("Digest abc"), None).is_err());
        assert!(request_token(&h("Basic !!!"), None).is_err());
    }
}
