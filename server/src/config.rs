//! The server's configuration: one serde tree with defaults for every key.
//!
//! Sources, lowest precedence first: the embedded defaults ([`Config::default`]), a TOML file
//! (`--config FILE`), `STRATA_*` environment variables, command-line flags. Every key has the
//! same name everywhere: the TOML key `limits.max_body_size` is the environment variable
//! `STRATA_LIMITS_MAX_BODY_SIZE` and the flag `--set limits.max_body_size=...`; the most used
//! keys also have their own flags (`--data-dir`, `--http-addr`, ...). Sizes are written with
//! units (`64MiB`), durations the humantime way (`10s`, `1d`). `docs/configuration.md` lists
//! every key; `strata.example.toml` at the repository root shows every default and is parsed
//! by a test so it cannot go stale.
//!
//! Sections live beside the code they configure: `[limits]` in `strata-ingest`
//! (`LimitsConfig`, with the unit types every section uses), `[auth]` in `strata-auth`,
//! `[mqtt]` in `strata-mqtt`; this module assembles the tree and loads it.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_engine::{EngineOptions, SyncPolicy};

pub use strata_auth::config::{AuthConfig, Secret};
pub use strata_ingest::config::{
    ByteSize, HumanDuration, InvalidConfig, LimitsConfig, OptDuration, RateUnit,
};
pub use strata_ingest::units;

/// Prefix of every environment variable the server reads.
pub const ENV_PREFIX: &str = "STRATA_";

/// Environment variables that are shorter spellings of a key (the generic name works too and
/// wins if both are set).
pub const ENV_ALIASES: &[(&str, &str)] = &[("STRATA_ADMIN_TOKEN", "auth.admin_token")];

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Root of all stored data (WAL, segments, catalog, tokens file). Default `./strata-data`.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub query: QueryConfig,
    pub backup: BackupConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./strata-data"),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            query: QueryConfig::default(),
            backup: BackupConfig::default(),
        }
    }
}

/// Online backups (`POST /api/v1/backup`, `strata backup`); see `docs/operations.md`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Directory that holds the backups, one subdirectory each. Default (empty)
    /// `<data_dir>/backups`: a backup hard-links the segment files, which only works on the
    /// data directory's file system (elsewhere they are copied, which costs their full size
    /// and time). The engine ignores directories it does not know in the data directory.
    pub dir: PathBuf,
}

/// Limits of `/query` requests (`[query]`); 0 turns a limit off. Documented in
/// `docs/configuration.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Wall-clock time a request's statements may take together. Default 60 s.
    pub timeout: OptDuration,
    /// Series one statement may read. Default 1,000,000.
    pub max_series: u64,
    /// Points one statement may read (decoded or from block statistics). Default 0 (off).
    pub max_points_scanned: u64,
    /// Rows one statement may return; also caps `GROUP BY time` buckets. Default 10,000,000.
    pub max_points_returned: u64,
    /// Intermediate memory one statement may hold (estimated). Default 1 GiB.
    pub max_memory: ByteSize,
    /// Rows per chunk with `chunked=true` when the request gives no `chunk_size`. Default 10000.
    pub chunk_size: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout: OptDuration(Some(std::time::Duration::from_secs(60))),
            max_series: 1_000_000,
            max_points_scanned: 0,
            max_points_returned: 10_000_000,
            max_memory: ByteSize::mib(1024),
            chunk_size: 10_000,
        }
    }
}

/// The HTTP listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port` to listen on. Default `127.0.0.1:8086` (InfluxDB's port, so clients work
    /// unchanged). Port 0 picks a free port.
    pub addr: String,
    /// PEM certificate chain; with `tls_key`, serves HTTPS instead of HTTP. Default: none.
    pub tls_cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`. Default: none.
    pub tls_key: PathBuf,
    /// Longest time a client may take to send a request body; a slow client holds write
    /// memory while it sends. Default 30 s.
    pub body_timeout: HumanDuration,
    /// On shutdown, how long in-flight requests get to finish before their connections are
    /// closed. Default 30 s.
    pub shutdown_timeout: HumanDuration,
    /// Time a client has to send a whole request header: from accept for its first request,
    /// from the first byte for later ones. A client that sends half a header is closed then.
    /// Shorter frees slow-header attackers' connections sooner; longer tolerates very slow
    /// links. Default 10 s.
    pub header_read_timeout: HumanDuration,
    /// Time a keep-alive connection may sit idle between requests before it is closed.
    /// Longer than the usual client reuse interval (Telegraf flushes every 10 s) so clients
    /// keep their connections. Default 60 s.
    pub idle_timeout: HumanDuration,
    /// Most HTTP connections open at once (past it: 503 with `Retry-After`, then closed).
    /// 0 derives it from the open files limit: what that leaves after the engine's reserve,
    /// minus `mqtt.max_connections` when MQTT is on (see `docs/operations.md`). A value
    /// above what the limit allows is lowered at start, with a warning. Default 0 (derived).
    pub max_connections: usize,
    /// Browser origins (`https://grafana.example.com`) allowed to send state-changing requests
    /// besides the server's own. Default: none.
    pub allowed_origins: Vec<String>,
    /// Host names accepted in `Host` besides loopback names when auth is off on a loopback
    /// listener (the DNS-rebinding check). Default: none.
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: "127.0.0.1:8086".into(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            body_timeout: HumanDuration::secs(30),
            shutdown_timeout: HumanDuration::secs(30),
            header_read_timeout: HumanDuration::secs(10),
            idle_timeout: HumanDuration::secs(60),
            max_connections: 0,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

impl HttpConfig {
    pub fn tls_enabled(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty()
    }
}

/// The MQTT listener: defined beside it, in `mqtt/config.rs`.
pub use strata_mqtt::config::MqttConfig;

/// When acknowledged writes reach stable storage; see [`SyncPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// fsync before acknowledging (group commit). Loses nothing acknowledged.
    Always,
    /// fsync every `storage.sync_interval`; loses at most that much on power loss.
    Interval,
    /// Never fsync the WAL except at rotation and shutdown; survives process crashes only.
    Never,
}

/// The storage engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Shards (WAL + memtable pairs); 0 means one per core. Default 0.
    pub shards: usize,
    /// `always`, `interval` or `never`. Default `always`.
    pub sync: SyncMode,
    /// fsync period when `sync = "interval"`. Default 1 s.
    pub sync_interval: HumanDuration,
    /// Memory for active memtables across all shards. Default 64 MiB. Frozen memtables
    /// waiting to be flushed take up to `max_frozen_memtables` times more.
    pub memtable_size: ByteSize,
    /// Frozen memtables a shard may queue before writers wait. Default 2.
    pub max_frozen_memtables: usize,
    /// How long a write waits for flushing to catch up before the server answers 503.
    /// Default 5 s (shorter than the clients' usual 10 s request timeout).
    pub write_stall_timeout: HumanDuration,
    /// Width of a time partition (retention drops whole partitions). Default 1 day.
    pub partition_duration: HumanDuration,
    /// Create a database on its first write. Default true; when false, writes to an unknown
    /// database get 404 and databases are created with `POST /api/v1/databases`.
    pub auto_create_databases: bool,
    /// How often the maintenance thread enforces retention, refreshes downsampling rules and
    /// compacts. Default 30 s.
    pub maintenance_interval: HumanDuration,
    /// A partition is compacted once it has this many segments. Default 4 (at least 2).
    pub compaction_min_segments: usize,
    /// Read budget of compaction, so ingest and queries keep the disk. Default 64 MiB/s.
    pub compaction_rate: ByteSize,
    /// Retention of newly created databases (first write, `CREATE DATABASE`, admin API) until
    /// a retention statement changes it. `0s` (default) keeps data forever; else at least 1h.
    pub default_retention: HumanDuration,
    /// What starting does with damage in the WAL or catalog that is not a torn tail:
    /// `strict` (default) refuses to start, naming file and offset; `drop-damaged` drops the
    /// damaged bytes (each range logged) and starts. Flag: `strata serve --recover drop-damaged`.
    pub recovery: RecoveryMode,
}

/// `storage.recovery`; see [`strata_engine::wal::Recovery`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryMode {
    #[default]
    Strict,
    DropDamaged,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            shards: 0,
            sync: SyncMode::Always,
            sync_interval: HumanDuration::secs(1),
            memtable_size: ByteSize::mib(64),
            max_frozen_memtables: 2,
            write_stall_timeout: HumanDuration::secs(5),
            partition_duration: HumanDuration::secs(86_400),
            auto_create_databases: true,
            maintenance_interval: HumanDuration::secs(30),
            default_retention: HumanDuration::secs(0),
            compaction_min_segments: 4,
            compaction_rate: ByteSize::mib(64),
            recovery: RecoveryMode::Strict,
        }
    }
}

/// Logging (to stderr).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter, e.g. `info` or `strata_server=debug,info`. `RUST_LOG` wins
    /// when set. Default `info`.
    pub level: String,
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
    }
}

/// A value set from outside the TOML file: an environment variable or a flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// Dotted key, e.g. `http.addr`.
    pub key: String,
    pub value: String,
    /// Where it came from, for error messages: `--http-addr`, `STRATA_HTTP_ADDR`.
    pub origin: String,
}

impl Override {
    pub fn new(key: impl Into<String>, value: impl Into<String>, origin: impl Into<String>) -> Override {
        Override { key: key.into(), value: value.into(), origin: origin.into() }
    }
}

/// Why a configuration could not be loaded. Every variant names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: unknown config key {key:?}")]
    UnknownKey { key: String, origin: String },
    #[error("{origin}: invalid value for {key}: {message}")]
    BadValue { key: String, origin: String, message: String },
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl From<InvalidConfig> for ConfigError {
    fn from(e: InvalidConfig) -> ConfigError {
        ConfigError::Invalid { key: e.key, reason: e.reason }
    }
}

impl Config {
    /// Loads the configuration: defaults, then `file`, then the `STRATA_*` variables among
    /// `env`, then `flags`. Validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[Override],
    ) -> Result<Config, ConfigError> {
        let base = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                Config::from_toml(&text)
                    .map_err(|message| ConfigError::Parse { path: path.to_owned(), message })?
            }
            None => Config::default(),
        };
        let mut overrides = env_overrides(env);
        overrides.extend_from_slice(flags);
        let config = base.with_overrides(&overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (keys missing from it keep their defaults; unknown keys are errors).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// This configuration with `overrides` applied in order (later ones win).
    pub fn with_overrides(&self, overrides: &[Override]) -> Result<Config, ConfigError> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let mut tree = self.to_tree();
        for o in overrides {
            set_leaf(&mut tree, o)?;
            // Deserialize after each override so a bad value is reported with its key and
            // origin rather than as an anonymous type error at the end.
            tree.clone().try_into::<Config>().map_err(|e| ConfigError::BadValue {
                key: o.key.clone(),
                origin: o.origin.clone(),
                message: e.to_string().trim_end().to_owned(),
            })?;
        }
        tree.try_into::<Config>().map_err(|e| ConfigError::BadValue {
            key: String::new(),
            origin: "overrides".into(),
            message: e.to_string(),
        })
    }

    fn to_tree(&self) -> toml::Value {
        toml::Value::try_from(self).expect("the config tree always serializes")
    }

    /// Every key, dotted (`limits.max_body_size`), sorted.
    pub fn keys() -> Vec<String> {
        fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        walk(&key, v, out);
                    }
                }
                _ => out.push(prefix.to_owned()),
            }
        }
        let mut out = Vec::new();
        walk("", &Config::default().to_tree(), &mut out);
        out
    }

    /// The environment variable of a key: `limits.max_body_size` -> `STRATA_LIMITS_MAX_BODY_SIZE`.
    pub fn env_name(key: &str) -> String {
        format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
    }

    /// Checks values that parse but make no sense; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must not be empty".into());
        }
        for (key, addr) in [("http.addr", &self.http.addr), ("mqtt.addr", &self.mqtt.addr)] {
            match addr.to_socket_addrs().map(|mut a| a.next().is_some()) {
                Ok(true) => {}
                Ok(false) => return bad(key, format!("{addr:?} resolves to no address")),
                Err(e) => return bad(key, format!("{addr:?} is not a host:port address: {e}")),
            }
        }
        self.mqtt.validate()?;
        if self.http.tls_cert.as_os_str().is_empty() != self.http.tls_key.as_os_str().is_empty() {
            let key = if self.http.tls_key.as_os_str().is_empty() { "http.tls_key" } else { "http.tls_cert" };
            return bad(key, "http.tls_cert and http.tls_key must be set together".into());
        }
        if self.http.body_timeout.get().is_zero() {
            return bad("http.body_timeout", "must be positive".into());
        }
        if self.http.header_read_timeout.get().is_zero() {
            return bad("http.header_read_timeout", "must be positive".into());
        }
        if self.http.idle_timeout.get().is_zero() {
            return bad("http.idle_timeout", "must be positive".into());
        }
        for o in &self.http.allowed_origins {
            if !(o.starts_with("http://") || o.starts_with("https://"))
                || o.trim_end_matches('/').matches('/').count() != 2
            {
                return bad(
                    "http.allowed_origins",
                    format!("{o:?} is not an origin like https://host[:port]"),
                );
            }
        }
        let s = &self.storage;
        if s.shards > 256 {
            return bad("storage.shards", format!("{} is more than 256", s.shards));
        }
        if s.sync == SyncMode::Interval && s.sync_interval.get().is_zero() {
            return bad("storage.sync_interval", "must be positive when storage.sync = \"interval\"".into());
        }
        if s.memtable_size < ByteSize::kib(64) {
            return bad("storage.memtable_size", format!("{} is less than 64KiB", s.memtable_size));
        }
        if s.max_frozen_memtables == 0 {
            return bad("storage.max_frozen_memtables", "must be at least 1".into());
        }
        let retention = s.default_retention.get();
        if !retention.is_zero() && retention < std::time::Duration::from_secs(3600) {
            return bad("storage.default_retention", "must be 0s (forever) or at least 1h".into());
        }
        if s.partition_duration.get() < std::time::Duration::from_secs(60) {
            return bad("storage.partition_duration", "must be at least 1m".into());
        }
        if s.maintenance_interval.get() < std::time::Duration::from_secs(1) {
            return bad("storage.maintenance_interval", "must be at least 1s".into());
        }
        if s.compaction_min_segments < 2 {
            return bad("storage.compaction_min_segments", "must be at least 2".into());
        }
        if s.compaction_rate < ByteSize::mib(1) {
            return bad("storage.compaction_rate", format!("{} is less than 1MiB", s.compaction_rate));
        }
        self.limits.validate()?;
        if self.auth.enabled && !self.auth.admin_token.is_empty() && self.auth.admin_token.expose().len() < 16
        {
            return bad("auth.admin_token", "must be at least 16 characters".into());
        }
        if self.log.level.trim().is_empty() {
            return bad("log.level", "must not be empty".into());
        }
        if let Some(reason) = backup_dir_clash(&self.data_dir, &self.backup_dir()) {
            return bad("backup.dir", reason);
        }
        Ok(())
    }

    /// The tokens file: `auth.tokens_file`, or `tokens.json` in the data directory.
    pub fn tokens_file(&self) -> PathBuf {
        self.auth.tokens_file_in(&self.data_dir)
    }

    /// The backup directory: `backup.dir`, or `backups` in the data directory.
    pub fn backup_dir(&self) -> PathBuf {
        if self.backup.dir.as_os_str().is_empty() {
            self.data_dir.join("backups")
        } else {
            self.backup.dir.clone()
        }
    }

    /// The engine's options for this configuration.
    pub fn engine_options(&self) -> EngineOptions {
        let s = &self.storage;
        let mut o = EngineOptions::new(&self.data_dir);
        if s.shards > 0 {
            o.shards = s.shards;
        }
        o.sync = match s.sync {
            SyncMode::Always => SyncPolicy::Always,
            SyncMode::Interval => SyncPolicy::Interval(s.sync_interval.get()),
            SyncMode::Never => SyncPolicy::Never,
        };
        o.memtable_size = s.memtable_size.as_usize();
        o.max_frozen_memtables = s.max_frozen_memtables;
        o.write_stall_timeout = s.write_stall_timeout.get();
        o.partition_duration = s.partition_duration.get();
        o.max_series_per_db = self.limits.max_series_per_database;
        o.max_fields_per_measurement = self.limits.max_fields_per_measurement;
        o.max_new_partitions_per_write = self.limits.max_new_partitions_per_write;
        o.recovery = match s.recovery {
            RecoveryMode::Strict => strata_engine::wal::Recovery::Strict,
            RecoveryMode::DropDamaged => strata_engine::wal::Recovery::DropDamaged,
        };
        o.maintenance_interval = s.maintenance_interval.get();
        o.compaction_min_segments = s.compaction_min_segments;
        o.compaction_bytes_per_sec = s.compaction_rate.0;
        o.default_retention = Some(s.default_retention.get()).filter(|d| !d.is_zero());
        o
    }
}

/// Directories of the data directory that the server owns: a backup directory there would be
/// read (or deleted: `dbs/` entries unknown to the catalog, `trash/`) as live data.
const DATA_DIR_ENTRIES: [&str; 5] = ["dbs", "wal", "catalog", "trash", "mqtt"];

/// Why `backup` cannot be the backup directory of `data_dir`, if it cannot. Compares paths as
/// written (after dropping `.` components), since neither needs to exist yet.
fn backup_dir_clash(data_dir: &Path, backup: &Path) -> Option<String> {
    let norm = |p: &Path| -> PathBuf {
        p.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
    };
    let (data, backup) = (norm(data_dir), norm(backup));
    if backup == data {
        return Some(
            "must not be the data directory itself (use a subdirectory, e.g. the default <data_dir>/backups)"
                .into(),
        );
    }
    DATA_DIR_ENTRIES
        .iter()
        .find(|e| backup.starts_with(data.join(e)))
        .map(|e| format!("{} is inside the data directory's {e}/, which the server owns", backup.display()))
}

/// The overrides given by `STRATA_*` variables among `env`, aliases first.
pub fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    let mut out = Vec::new();
    for (alias, key) in ENV_ALIASES {
        if let Some((_, v)) = vars.iter().find(|(k, _)| k == alias) {
            out.push(Override::new(*key, v.clone(), format!("environment variable {alias}")));
        }
    }
    for key in Config::keys() {
        let name = Config::env_name(&key);
        if let Some((_, v)) = vars.iter().find(|(k, _)| *k == name) {
            out.push(Override::new(key, v.clone(), format!("environment variable {name}")));
        }
    }
    out
}

/// `STRATA_*` variables among `env` that name no key (likely typos; the server warns).
pub fn unknown_env_vars(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let known: Vec<String> = Config::keys().iter().map(|k| Config::env_name(k)).collect();
    env.into_iter()
        .map(|(k, _)| k)
        .filter(|k| {
            k.starts_with(ENV_PREFIX)
                && !known.contains(k)
                && !ENV_ALIASES.iter().any(|(a, _)| a == k)
                // Variables of the test tooling, not of the server.
                && !k.starts_with("STRATA_TEST_")
                && !k.starts_with("STRATA_CRASH_")
        })
        .collect()
}

/// Sets the leaf `o.key` of `tree` from a string, converting it to the leaf's TOML type.
fn set_leaf(tree: &mut toml::Value, o: &Override) -> Result<(), ConfigError> {
    let unknown = || ConfigError::UnknownKey { key: o.key.clone(), origin: o.origin.clone() };
    let mut node = tree;
    for part in o.key.split('.') {
        node = node.as_table_mut().and_then(|t| t.get_mut(part)).ok_or_else(unknown)?;
    }
    let bad = |message: &str| ConfigError::BadValue {
        key: o.key.clone(),
        origin: o.origin.clone(),
        message: message.to_owned(),
    };
    let raw = o.value.trim();
    *node = match node {
        toml::Value::Table(_) => return Err(unknown()),
        // A list: TOML (`["a", "b"]`) or comma-separated (`a,b`, what an environment variable
        // holds).
        toml::Value::Array(_) => {
            if raw.starts_with('[') {
                let t: toml::Table = toml::from_str(&format!("v = {raw}"))
                    .map_err(|e| bad(&format!("{raw:?} is not a list: {e}")))?;
                t.get("v").cloned().ok_or_else(|| bad("not a list"))?
            } else {
                toml::Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| toml::Value::String(v.to_owned()))
                        .collect(),
                )
            }
        }
        toml::Value::String(_) => toml::Value::String(o.value.clone()),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.replace('_', "").parse().map_err(|_| bad(&format!("{raw:?} is not an integer")))?,
        ),
        toml::Value::Float(_) => {
            toml::Value::Float(raw.parse().map_err(|_| bad(&format!("{raw:?} is not a number")))?)
        }
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(bad(&format!("{raw:?} is not a boolean (true or false)"))),
        }),
        toml::Value::Datetime(_) => return Err(unknown()),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./strata-data"));
        assert_eq!(c.http.addr, "127.0.0.1:8086");
        assert_eq!(c.mqtt.addr, "127.0.0.1:1883");
        assert_eq!(c.storage.sync, SyncMode::Always);
        assert!(!c.auth.enabled);
        assert_eq!(c.tokens_file(), PathBuf::from("./strata-data/tokens.json"));
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("strata.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\n[http]\naddr = \"127.0.0.1:1000\"\n[limits]\nmax_body_size = \"1MiB\"\nmax_tags_per_point = 7\n",
        )
        .unwrap();
        let vars = env(&[
            ("STRATA_HTTP_ADDR", "127.0.0.1:2000"),
            ("STRATA_LIMITS_MAX_TAGS_PER_POINT", "9"),
            ("STRATA_STORAGE_SYNC", "never"),
            ("STRATA_STORAGE_MAINTENANCE_INTERVAL", "5s"),
            ("STRATA_STORAGE_COMPACTION_RATE", "8MiB"),
            ("UNRELATED", "x"),
        ]);
        let flags = [Override::new("limits.max_tags_per_point", "11", "--set")];
        let c = Config::load(Some(&file), vars, &flags).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from/file")); // file only
        assert_eq!(c.http.addr, "127.0.0.1:2000"); // env beats file
        assert_eq!(c.limits.max_body_size, ByteSize::mib(1)); // file beats default
        assert_eq!(c.limits.max_tags_per_point, 11); // flag beats env and file
        assert_eq!(c.storage.sync, SyncMode::Never);
        assert_eq!(c.limits.max_line_length, ByteSize::mib(1)); // default kept
        let opts = c.engine_options();
        assert_eq!(opts.sync, SyncPolicy::Never);
        assert_eq!(opts.max_series_per_db, 10_000_000);
        assert_eq!(opts.maintenance_interval, std::time::Duration::from_secs(5));
        assert_eq!(opts.compaction_bytes_per_sec, 8 << 20);
        assert_eq!(opts.compaction_min_segments, 4); // default kept
        let bad = [Override::new("storage.compaction_min_segments", "1", "--set")];
        let err = Config::load(None, env(&[]), &bad).unwrap_err().to_string();
        assert!(err.contains("storage.compaction_min_segments"), "{err}");
    }

    #[test]
    fn admin_token_alias_and_generic_name() {
        let c = Config::load(None, env(&[("STRATA_ADMIN_TOKEN", "0123456789abcdef-alias")]), &[]).unwrap();
        assert_eq!(c.auth.admin_token.expose(), "0123456789abcdef-alias");
        assert!(!format!("{c:?}").contains("alias"), "Debug must not print the token");
        let c = Config::load(
            None,
            env(&[
                ("STRATA_ADMIN_TOKEN", "0123456789abcdef-alias"),
                ("STRATA_AUTH_ADMIN_TOKEN", "0123456789abcdef-generic"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(c.auth.admin_token.expose(), "0123456789abcdef-generic");
    }

    #[test]
    fn errors_name_the_key_and_origin() {
        let err = Config::load(None, env(&[("STRATA_LIMITS_MAX_BODY_SIZE", "lots")]), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("STRATA_LIMITS_MAX_BODY_SIZE") && msg.contains("limits.max_body_size"), "{msg}");
        let err = Config::load(None, [], &[Override::new("storage.shards", "many", "--set")]).unwrap_err();
        assert!(
            err.to_string().contains("storage.shards") && err.to_string().contains("not an integer"),
            "{err}"
        );
        let err = Config::load(None, [], &[Override::new("http.adr", "x", "--set")]).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "http.adr"), "{err}");
        let err =
            Config::load(None, [], &[Override::new("storage.sync", "sometimes", "--sync")]).unwrap_err();
        assert!(err.to_string().contains("--sync") && err.to_string().contains("sometimes"), "{err}");
        let err = Config::load(None, [], &[Override::new("auth.enabled", "maybe", "--set")]).unwrap_err();
        assert!(err.to_string().contains("not a boolean"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[limits]\nmax_bodysize = \"1MiB\"\n").unwrap();
        let err = Config::load(Some(&file), [], &[]).unwrap_err();
        assert!(err.to_string().contains("max_bodysize") && err.to_string().contains("bad.toml"), "{err}");
        let err = Config::load(Some(&dir.path().join("missing.toml")), [], &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn lists_from_flags_and_environment() {
        let set =
            |v: &str| Config::default().with_overrides(&[Override::new("http.allowed_origins", v, "--set")]);
        let want = vec!["https://a.example".to_owned(), "http://b.example:3000".to_owned()];
        assert_eq!(set("https://a.example, http://b.example:3000").unwrap().http.allowed_origins, want);
        assert_eq!(
            set(r#"["https://a.example", "http://b.example:3000"]"#).unwrap().http.allowed_origins,
            want
        );
        assert!(set("").unwrap().http.allowed_origins.is_empty());
        let c = set("grafana.example").unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::Invalid { key: "http.allowed_origins", .. })));
    }

    #[test]
    fn validate_names_the_bad_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("http.addr", "not an address", "http.addr"),
            ("mqtt.addr", "127.0.0.1", "mqtt.addr"),
            ("http.tls_cert", "/x.pem", "http.tls_key"),
            ("storage.memtable_size", "1KiB", "storage.memtable_size"),
            ("storage.shards", "1000", "storage.shards"),
            ("limits.max_tags_per_point", "0", "limits.max_tags_per_point"),
            ("limits.max_fields_per_point", "5000", "limits.max_fields_per_point"),
            ("limits.max_name_length", "100000", "limits.max_name_length"),
            ("limits.max_string_length", "2MiB", "limits.max_string_length"),
            ("limits.max_line_length", "10B", "limits.max_line_length"),
            ("limits.write_memory", "64MiB", "limits.write_memory"),
            ("storage.partition_duration", "10s", "storage.partition_duration"),
            ("storage.default_retention", "30m", "storage.default_retention"),
        ];
        for (key, value, named) in cases {
            let err = Config::load(None, [], &[Override::new(*key, *value, "--set")]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key, .. } if key == named),
                "{key}={value}: expected an error naming {named}, got {err}"
            );
        }
        let err = Config::load(
            None,
            [],
            &[
                Override::new("auth.enabled", "true", "--set"),
                Override::new("auth.admin_token", "short", "--set"),
            ],
        )
        .unwrap_err();
        assert!(matches!(&err, ConfigError::Invalid { key: "auth.admin_token", .. }), "{err}");
    }

    #[test]
    fn backup_dir_defaults_inside_the_data_dir_but_not_in_its_own_directories() {
        let c = Config::load(None, [], &[Override::new("data_dir", "/d", "--data-dir")]).unwrap();
        assert_eq!(c.backup_dir(), PathBuf::from("/d/backups"));
        let c = Config::load(
            None,
            env(&[("STRATA_BACKUP_DIR", "/elsewhere/strata-backups")]),
            &[Override::new("data_dir", "/d", "--data-dir")],
        )
        .unwrap();
        assert_eq!(c.backup_dir(), PathBuf::from("/elsewhere/strata-backups"));
        for bad in ["/d", "/d/./", "/d/dbs", "/d/dbs/x", "/d/trash", "/d/wal/backups", "/d/catalog"] {
            let err = Config::load(
                None,
                [],
                &[Override::new("data_dir", "/d", "--data-dir"), Override::new("backup.dir", bad, "--set")],
            )
            .unwrap_err();
            assert!(matches!(&err, ConfigError::Invalid { key: "backup.dir", .. }), "{bad}: {err}");
        }
        for ok in ["/d/backups", "/d/dbs-backups", "/backups", "rel/backups"] {
            let c = Config::load(
                None,
                [],
                &[Override::new("data_dir", "/d", "--data-dir"), Override::new("backup.dir", ok, "--set")],
            );
            assert!(c.is_ok(), "{ok}: {c:?}");
        }
    }

    #[test]
    fn every_key_has_an_env_name_and_round_trips() {
        let keys = Config::keys();
        assert!(keys.contains(&"limits.max_body_size".to_string()));
        assert!(keys.contains(&"data_dir".to_string()));
        assert_eq!(Config::env_name("http.addr"), "STRATA_HTTP_ADDR");
        assert_eq!(Config::env_name("data_dir"), "STRATA_DATA_DIR");
        // Setting every key to its own default, as a string, is a no-op: each leaf type
        // converts from text.
        let tree = Config::default().to_tree();
        let overrides: Vec<Override> = keys
            .iter()
            .map(|k| {
                let mut v = &tree;
                for p in k.split('.') {
                    v = &v[p];
                }
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Override::new(k.clone(), text, "test")
            })
            .collect();
        assert_eq!(Config::default().with_overrides(&overrides).unwrap(), Config::default());
        let unknown = unknown_env_vars(env(&[
            ("STRATA_HTTP_ADDR", "x"),
            ("STRATA_HTTP_ADRESS", "x"),
            ("STRATA_ADMIN_TOKEN", "x"),
            ("STRATA_TEST_PYTHON", "x"),
        ]));
        assert_eq!(unknown, vec!["STRATA_HTTP_ADRESS".to_string()]);
    }

    /// `strata.example.toml` must parse, hold exactly the defaults and mention every key.
    #[test]
    fn example_config_is_the_defaults() {
        let text = include_str!("../../strata.example.toml");
        let parsed = Config::from_toml(text).unwrap();
        assert_eq!(parsed, Config::default(), "strata.example.toml differs from Config::default()");
        let tree: toml::Value = toml::from_str(text).unwrap();
        for key in Config::keys() {
            let mut v = Some(&tree);
            for p in key.split('.') {
                v = v.and_then(|v| v.get(p));
            }
            assert!(v.is_some(), "strata.example.toml does not set {key}");
        }
    }

    /// `docs/configuration.md` must document every key and its environment variable.
    #[test]
    fn configuration_doc_lists_every_key() {
        let doc = include_str!("../../docs/configuration.md");
        for key in Config::keys() {
            assert!(doc.contains(&format!("`{key}`")), "docs/configuration.md does not document `{key}`");
            let env = Config::env_name(&key);
            assert!(doc.contains(&env), "docs/configuration.md does not mention {env}");
        }
    }
}
