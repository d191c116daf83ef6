//! The `[auth]` section of the configuration, and [`Secret`], the string type of every secret
//! in it (also used by `[mqtt.bridge]`'s password).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A secret string: never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "<redacted>" })
    }
}

/// Authentication and authorization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require a token on every request except `/ping`, `/health` and `/ready`. Default false,
    /// which is allowed only while listening on loopback addresses.
    pub enabled: bool,
    /// A token with every permission (also `STRATA_ADMIN_TOKEN`). At least 16 characters.
    /// Default: none. Prefer the environment to a file for it.
    pub admin_token: Secret,
    /// Where `strata token` keeps token hashes. Default `<data_dir>/tokens.json`.
    pub tokens_file: PathBuf,
    /// Allow listening on a non-loopback address with `enabled = false`. Default false.
    pub insecure_allow_no_auth: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            admin_token: Secret::default(),
            tokens_file: PathBuf::new(),
            insecure_allow_no_auth: false,
        }
    }
}

impl AuthConfig {
    /// The tokens file: `tokens_file`, or `tokens.json` in the data directory.
    pub fn tokens_file_in(&self, data_dir: &Path) -> PathBuf {
        if self.tokens_file.as_os_str().is_empty() {
            data_dir.join("tokens.json")
        } else {
            self.tokens_file.clone()
        }
    }
}
