//! strata-cli: the `strata` binary's command line. `strata [serve]` hands over to
//! `strata_server::Server`; `strata token create|list|revoke` and `strata device
//! add|list|remove` (MQTT device passwords, [`device`]) edit files in the data directory; the
//! client and offline commands are one module each: [`query`], [`write`] (`write` and
//! `import`), [`export`], [`backup`] (`backup` over HTTP, `restore` of a data directory) and
//! [`inspect`] (a data directory); [`remote`] is the HTTP client they share.
//!
//! What it is not: the server (`strata-server`); this crate only parses arguments, reads the
//! configuration and talks to a server over HTTP, which is why the HTTP client (reqwest) and
//! the progress bars live here and not in the server.
//!
//! Flags are the highest-precedence configuration source; each maps to a config key (see
//! [`ServeArgs::overrides`]), and `--set KEY=VALUE` reaches every other key.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use strata_server::config::Override;

pub mod backup;
pub mod device;
pub mod export;
pub mod inspect;
pub mod query;
pub mod remote;
pub mod write;

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: a time-series database for IoT telemetry",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, the default command.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Create, list and revoke API tokens (stored hashed in the tokens file).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run InfluxQL against a running server: one-shot with -e, or an interactive prompt.
    Query(query::QueryArgs),
    /// Write line protocol from a file or stdin to a running server.
    Write(write::WriteArgs),
    /// Import line protocol or CSV from a file into a running server (with progress).
    Import(write::ImportArgs),
    /// Export a database from a running server as line protocol or CSV.
    Export(export::ExportArgs),
    /// Offline: summarize a data directory and optionally verify every checksum.
    Inspect(inspect::InspectArgs),
    /// Ask a running server for an online backup (or list its backups) and print where it is.
    Backup(backup::BackupArgs),
    /// Offline: verify a backup and copy it into a new (empty or absent) data directory.
    Restore(backup::RestoreArgs),
    /// Register, list and remove MQTT devices with their own passwords (stored hashed).
    Device(device::DeviceArgs),
}

/// Where the configuration comes from; shared by every command.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// TOML configuration file (keys: see docs/configuration.md).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory [key: data_dir, env: STRATA_DATA_DIR].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Set any configuration key, e.g. --set limits.max_body_size=64MiB (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// The flags as config overrides, in precedence order.
    pub fn overrides(&self) -> Result<Vec<Override>, String> {
        let mut out = Vec::new();
        if let Some(d) = &self.data_dir {
            out.push(Override::new("data_dir", path_str(d)?, "--data-dir"));
        }
        for s in &self.set {
            let (k, v) = s.split_once('=').ok_or_else(|| format!("--set {s:?}: expected KEY=VALUE"))?;
            out.push(Override::new(k.trim(), v, format!("--set {}", k.trim())));
        }
        Ok(out)
    }
}

fn path_str(p: &std::path::Path) -> Result<String, String> {
    p.to_str().map(str::to_owned).ok_or_else(|| format!("{} is not valid UTF-8", p.display()))
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// HTTP listen address, host:port [key: http.addr, env: STRATA_HTTP_ADDR].
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// MQTT listen address for devices (3.1.1 and 5.0) [key: mqtt.addr].
    #[arg(long, value_name = "HOST:PORT")]
    pub mqtt_addr: Option<String>,
    /// PEM certificate chain; enables HTTPS with --tls-key [key: http.tls_cert].
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key [key: http.tls_key].
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// WAL sync policy: always, interval or never [key: storage.sync].
    #[arg(long, value_name = "POLICY")]
    pub sync: Option<String>,
    /// Damage in the WAL or catalog that is not a torn tail: strict (refuse to start) or
    /// drop-damaged (drop it, log each range, start) [key: storage.recovery].
    #[arg(long, value_name = "MODE")]
    pub recover: Option<String>,
    /// Require tokens [key: auth.enabled=true].
    #[arg(long)]
    pub auth: bool,
    /// Allow a non-loopback listen address without authentication [key: auth.insecure_allow_no_auth].
    #[arg(long)]
    pub insecure_allow_no_auth: bool,
    /// Log filter, e.g. info or strata_server=debug [key: log.level; RUST_LOG wins].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format: text (human-readable) or json (one object per line) [key: log.format].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Once listening, write {"http": "HOST:PORT", "scheme": "http"} to this file (for
    /// scripts and tests that listen on port 0).
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The flags as config overrides: `--set` first, then the named flags (which win).
    pub fn overrides(&self) -> Result<Vec<Override>, String> {
        let mut out = self.config.overrides()?;
        let mut push = |key: &str, value: Option<String>, flag: &str| {
            if let Some(v) = value {
                out.push(Override::new(key, v, flag));
            }
        };
        push("http.addr", self.http_addr.clone(), "--http-addr");
        push("mqtt.addr", self.mqtt_addr.clone(), "--mqtt-addr");
        push("http.tls_cert", self.tls_cert.as_deref().map(path_str).transpose()?, "--tls-cert");
        push("http.tls_key", self.tls_key.as_deref().map(path_str).transpose()?, "--tls-key");
        push("storage.sync", self.sync.clone(), "--sync");
        push("storage.recovery", self.recover.clone(), "--recover");
        push("auth.enabled", self.auth.then(|| "true".into()), "--auth");
        push(
            "auth.insecure_allow_no_auth",
            self.insecure_allow_no_auth.then(|| "true".into()),
            "--insecure-allow-no-auth",
        );
        push("log.level", self.log_level.clone(), "--log-level");
        push("log.format", self.log_format.clone(), "--log-format");
        Ok(out)
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once: only its hash is stored).
    Create(TokenCreateArgs),
    /// List tokens (ids, scopes; never the tokens themselves).
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id (running servers notice within two seconds).
    Revoke {
        #[command(flatten)]
        config: ConfigArgs,
        /// The token's id, as printed by `create` and `list`.
        id: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Database the token applies to (repeatable; '*' for all).
    #[arg(long = "db", value_name = "NAME")]
    pub databases: Vec<String>,
    /// Allow reading (queries).
    #[arg(long)]
    pub read: bool,
    /// Allow writing.
    #[arg(long)]
    pub write: bool,
    /// Allow deleting data (InfluxQL DELETE, DROP SERIES, DROP MEASUREMENT); --write does
    /// not include it.
    #[arg(long)]
    pub delete: bool,
    /// Every permission, including creating databases.
    #[arg(long)]
    pub admin: bool,
    /// A note to recognise the token by in `list`.
    #[arg(long, default_value = "")]
    pub description: String,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default_and_flags_map_to_keys() {
        let cli = Cli::parse_from([
            "strata",
            "--data-dir",
            "/d",
            "--http-addr",
            "127.0.0.1:0",
            "--set",
            "limits.max_body_size=1MiB",
            "--set",
            "http.addr=ignored:1",
            "--auth",
        ]);
        assert!(cli.command.is_none());
        let o = cli.serve.overrides().unwrap();
        let find = |k: &str| o.iter().rev().find(|x| x.key == k).map(|x| x.value.clone());
        assert_eq!(find("data_dir").as_deref(), Some("/d"));
        assert_eq!(find("http.addr").as_deref(), Some("127.0.0.1:0"), "named flags win over --set");
        assert_eq!(find("limits.max_body_size").as_deref(), Some("1MiB"));
        assert_eq!(find("auth.enabled").as_deref(), Some("true"));
        let cli = Cli::parse_from(["strata", "serve", "--mqtt-addr", "127.0.0.1:0"]);
        assert!(
            matches!(cli.command, Some(Command::Serve(ref a)) if a.mqtt_addr.as_deref() == Some("127.0.0.1:0"))
        );
        assert!(ServeArgs {
            config: ConfigArgs { set: vec!["novalue".into()], ..Default::default() },
            ..Default::default()
        }
        .overrides()
        .is_err());
    }

    #[test]
    fn db_is_an_alias_of_database_everywhere() {
        // `token create` and loadgen say `--db`; the README tour says `strata query --db home`.
        for cmd in [
            ["strata", "query", "--db", "home"],
            ["strata", "export", "--db", "home"],
            ["strata", "write", "--db", "home"],
        ] {
            let cli = Cli::try_parse_from(cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            let db = match cli.command {
                Some(Command::Query(a)) => a.database,
                Some(Command::Export(a)) => Some(a.database),
                Some(Command::Write(a)) => Some(a.database),
                _ => None,
            };
            assert_eq!(db.as_deref(), Some("home"), "{cmd:?}");
        }
    }

    #[test]
    fn token_commands_parse() {
        let cli = Cli::parse_from([
            "strata",
            "token",
            "create",
            "--db",
            "a",
            "--db",
            "b",
            "--read",
            "--data-dir",
            "/d",
        ]);
        let Some(Command::Token { command: TokenCommand::Create(a) }) = cli.command else {
            panic!("not create")
        };
        assert_eq!(a.databases, vec!["a", "b"]);
        assert!(a.read && !a.write && !a.admin);
        assert_eq!(a.config.data_dir, Some(PathBuf::from("/d")));
        let cli = Cli::parse_from(["strata", "restore", "--from", "/b/x", "--data-dir", "/d"]);
        assert!(
            matches!(cli.command, Some(Command::Restore(ref a)) if a.from == std::path::Path::new("/b/x") && a.data_dir == std::path::Path::new("/d"))
        );
        let cli = Cli::parse_from(["strata", "backup", "--name", "nightly", "--url", "http://h:1"]);
        assert!(
            matches!(cli.command, Some(Command::Backup(ref a)) if a.name.as_deref() == Some("nightly") && a.remote.url == "http://h:1")
        );
        let cli = Cli::parse_from(["strata", "device", "add", "pump-7", "--data-dir", "/d"]);
        assert!(
            matches!(cli.command, Some(Command::Device(device::DeviceArgs { command: device::DeviceCommand::Add { ref device, .. } })) if device == "pump-7")
        );
        let cli = Cli::parse_from(["strata", "token", "revoke", "abc"]);
        assert!(
            matches!(cli.command, Some(Command::Token { command: TokenCommand::Revoke { ref id, .. } }) if id == "abc")
        );
    }
}
