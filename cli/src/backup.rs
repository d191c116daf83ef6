//! `strata backup` asks a running server for an online backup (`POST /api/v1/backup`) and
//! prints where it is (`--list` shows the server's backups instead); `strata restore` turns a
//! backup into a new data directory, offline, after verifying every segment's checksums.
//!
//! Restore never writes into a non-empty directory: restoring over a live or old data
//! directory would mix two histories. The operator moves the old one aside first.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::Value;
use strata_engine::backup::BACKUP_FILE;
use strata_engine::error::LifecycleError;

use super::remote::{check, Remote, RemoteArgs};

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Name of the backup: 1 to 64 of [A-Za-z0-9_.-], not starting with a dot. Default: the
    /// server's UTC time, e.g. 20261203T191500Z. Refused if a backup of that name exists.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// List the server's backups instead of taking one.
    #[arg(long, conflicts_with = "name")]
    pub list: bool,
    /// Print the server's JSON answer.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup directory (written by `strata backup`; it holds a BACKUP file).
    #[arg(long = "from", value_name = "BACKUP_DIR")]
    pub from: PathBuf,
    /// The data directory to create. Must be absent or empty.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

pub fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote)?;
    if args.list {
        let resp = remote.get("/api/v1/backups").send().context("GET /api/v1/backups")?;
        let body: Value = check(resp)?.json().context("the /api/v1/backups response is not JSON")?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&body)?);
            return Ok(());
        }
        println!("{:<28}  {:<20}  {:>10}  {:>8}  PATH", "NAME", "CREATED", "SIZE", "SEGMENTS");
        for b in body["backups"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let complete = b["complete"].as_bool().unwrap_or(false);
            println!(
                "{:<28}  {:<20}  {:>10}  {:>8}  {}{}",
                b["name"].as_str().unwrap_or_default(),
                b["created"].as_str().unwrap_or("-"),
                human_bytes(b["size"].as_u64().unwrap_or(0)),
                b["segments"].as_u64().map_or("-".to_owned(), |n| n.to_string()),
                b["path"].as_str().unwrap_or_default(),
                if complete { "" } else { "  (incomplete)" },
            );
        }
        return Ok(());
    }
    if let Some(name) = &args.name {
        strata_server::http::backup::validate_name(name).map_err(anyhow::Error::msg)?;
    }
    let mut req = remote.post("/api/v1/backup");
    if let Some(name) = &args.name {
        req = req.query(&[("name", name)]);
    }
    let resp = req.send().context("POST /api/v1/backup")?;
    let body: Value = check(resp)?.json().context("the /api/v1/backup response is not JSON")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let path = body["path"].as_str().unwrap_or_default();
    // The path alone on stdout, so scripts can capture it; the summary on stderr.
    println!("{path}");
    let n = |k: &str| body[k].as_u64().unwrap_or(0);
    eprintln!(
        "backup {} written on the server: {} database(s), {} segment(s) ({} hard-linked), {} in {} ms",
        body["name"].as_str().unwrap_or_default(),
        n("databases"),
        n("segments"),
        n("linked"),
        human_bytes(n("bytes")),
        n("elapsed_ms"),
    );
    eprintln!("restore it with: strata restore --from {path} --data-dir NEW_DIR");
    Ok(())
}

pub fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    let (from, to) = (&args.from, &args.data_dir);
    if !from.join(BACKUP_FILE).is_file() {
        bail!(
            "{} is not a Strata backup: it has no {BACKUP_FILE} file (not a backup directory, or a backup that never finished)",
            from.display()
        );
    }
    if !is_empty_or_absent(to)? {
        bail!(
            "{} is not empty: restore only writes into an empty or absent directory. Stop the server and move the old data directory aside (or choose a new directory), then run the restore again",
            to.display()
        );
    }
    let report = strata_engine::backup::restore(from, to).map_err(|e| match e {
        // Verification runs before anything is copied.
        LifecycleError::Segment(_) => anyhow::Error::new(e).context(format!(
            "the backup {} is damaged (a segment failed verification); nothing was written to {}",
            from.display(),
            to.display()
        )),
        e => anyhow::Error::new(e).context(format!("restoring {} into {}", from.display(), to.display())),
    })?;
    println!(
        "restored {} database(s), {} segment(s), {} from {} into {}",
        report.databases,
        report.segments,
        human_bytes(report.bytes),
        from.display(),
        to.display()
    );
    println!("start the server on it: strata serve --data-dir {}", to.display());
    Ok(())
}

fn is_empty_or_absent(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// `512 B`, `3.2 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn restore_refuses_non_backups_and_non_empty_targets() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("b");
        std::fs::create_dir(&backup).unwrap();
        let args = |to: &Path| RestoreArgs { from: backup.clone(), data_dir: to.to_owned() };
        let err = run_restore(args(&dir.path().join("new"))).unwrap_err();
        assert!(format!("{err:#}").contains("not a Strata backup"), "{err:#}");
        std::fs::write(backup.join(BACKUP_FILE), "strata backup\n").unwrap();
        let full = dir.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("LOCK"), "").unwrap();
        let err = run_restore(args(&full)).unwrap_err();
        assert!(format!("{err:#}").contains("is not empty"), "{err:#}");
        assert!(is_empty_or_absent(&dir.path().join("absent")).unwrap());
        assert!(!is_empty_or_absent(&full.join("LOCK")).unwrap());
    }
}
