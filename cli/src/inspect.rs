//! `strata inspect DATA_DIR`: an offline look at a data directory — databases, partitions,
//! segments, series, points, bytes per point and compression ratio — and, with `--verify`,
//! every checksum of every segment (header, blocks, index, trailer), reading the files only.
//!
//! It reads `dbs/<db>/<start>_<duration>/<id>.seg` and the WAL directory sizes; it does not
//! take the engine's directory lock, so it may run beside a server, but then it can see a
//! partition mid-compaction. Stop the server for a verification that must be exact.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Args;
use strata_engine::segment::reader::SegmentReader;

use super::query::write_table;

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The data directory (the server's `data_dir`).
    pub data_dir: PathBuf,
    /// Read every block and check every checksum; exit non-zero naming each bad file.
    #[arg(long)]
    pub verify: bool,
    /// One row per segment instead of per partition.
    #[arg(long)]
    pub segments: bool,
}

/// What one segment holds.
#[derive(Debug, Default, Clone)]
pub struct SegmentSummary {
    pub bytes: u64,
    pub blocks: u64,
    /// Field values.
    pub values: u64,
    /// Points, counted as the most values any one field of a series has (exact when every
    /// point of a series carries the same fields).
    pub points: u64,
    pub series: BTreeSet<u64>,
    pub min_ts: Option<i64>,
    pub max_ts: Option<i64>,
}

pub fn summarize(r: &SegmentReader) -> SegmentSummary {
    let mut s = SegmentSummary { bytes: r.size(), ..Default::default() };
    let mut per_field: BTreeMap<(u64, &str), u64> = BTreeMap::new();
    for b in r.blocks() {
        s.blocks += 1;
        s.values += u64::from(b.count);
        s.series.insert(u64::from(b.series.0));
        *per_field.entry((u64::from(b.series.0), &*b.field)).or_default() += u64::from(b.count);
        s.min_ts = Some(s.min_ts.map_or(b.min_ts, |t| t.min(b.min_ts)));
        s.max_ts = Some(s.max_ts.map_or(b.max_ts, |t| t.max(b.max_ts)));
    }
    let mut per_series: BTreeMap<u64, u64> = BTreeMap::new();
    for ((series, _), n) in per_field {
        let e = per_series.entry(series).or_default();
        *e = (*e).max(n);
    }
    s.points = per_series.values().sum();
    s
}

fn dirs(p: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).with_context(|| format!("cannot list {}", p.display()))? {
        let e = e.with_context(|| format!("cannot list {}", p.display()))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

fn name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `<start>_<duration>` (nanoseconds) as a readable start time.
fn partition_label(dir_name: &str) -> String {
    let start = dir_name.split('_').next().and_then(|s| s.parse::<u64>().ok());
    match start {
        Some(ns) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ns)).to_string(),
        None => dir_name.to_owned(),
    }
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn ratio(values: u64, bytes: u64) -> String {
    if bytes == 0 {
        return "-".into();
    }
    // Uncompressed: an 8-byte timestamp and an 8-byte value per field value.
    format!("{:.1}x", (values * 16) as f64 / bytes as f64)
}

fn per(bytes: u64, n: u64) -> String {
    if n == 0 {
        "-".into()
    } else {
        format!("{:.2}", bytes as f64 / n as f64)
    }
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let bad = inspect(&args, &mut out)?;
    if !bad.is_empty() {
        bail!(
            "{} corrupt segment file(s): {}",
            bad.len(),
            bad.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Prints the report; returns the files that failed to open or verify.
pub fn inspect(args: &InspectArgs, out: &mut impl Write) -> anyhow::Result<Vec<PathBuf>> {
    let root = &args.data_dir;
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let dbs_dir = root.join("dbs");
    let mut bad = Vec::new();
    let columns: Vec<String> = if args.segments {
        ["database", "partition", "segment", "series", "points", "values", "bytes", "B/point", "ratio"]
    } else {
        ["database", "partition", "segments", "series", "points", "values", "bytes", "B/point", "ratio"]
    }
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    let mut totals = SegmentSummary::default();
    let mut db_series: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let db_dirs = if dbs_dir.is_dir() { dirs(&dbs_dir)? } else { Vec::new() };
    for db_dir in &db_dirs {
        let db = name(db_dir);
        let series_of_db = db_series.entry(db.clone()).or_default();
        for part in dirs(db_dir)? {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&part)
                .with_context(|| format!("cannot list {}", part.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "seg"))
                .collect();
            files.sort();
            let mut part_sum = SegmentSummary::default();
            let mut count = 0u64;
            for f in &files {
                let reader = match SegmentReader::open(f) {
                    Ok(r) => r,
                    Err(e) => {
                        writeln!(out, "CORRUPT {}: {e}", f.display())?;
                        bad.push(f.clone());
                        continue;
                    }
                };
                if args.verify {
                    if let Err(e) = reader.verify() {
                        writeln!(out, "CORRUPT {}: {e}", f.display())?;
                        bad.push(f.clone());
                        continue;
                    }
                }
                let s = summarize(&reader);
                count += 1;
                if args.segments {
                    rows.push(vec![
                        db.clone(),
                        partition_label(&name(&part)),
                        name(f),
                        s.series.len().to_string(),
                        s.points.to_string(),
                        s.values.to_string(),
                        s.bytes.to_string(),
                        per(s.bytes, s.points),
                        ratio(s.values, s.bytes),
                    ]);
                }
                part_sum.bytes += s.bytes;
                part_sum.values += s.values;
                part_sum.points += s.points;
                part_sum.blocks += s.blocks;
                part_sum.series.extend(&s.series);
            }
            if !args.segments {
                rows.push(vec![
                    db.clone(),
                    partition_label(&name(&part)),
                    count.to_string(),
                    part_sum.series.len().to_string(),
                    part_sum.points.to_string(),
                    part_sum.values.to_string(),
                    part_sum.bytes.to_string(),
                    per(part_sum.bytes, part_sum.points),
                    ratio(part_sum.values, part_sum.bytes),
                ]);
            }
            series_of_db.extend(&part_sum.series);
            totals.bytes += part_sum.bytes;
            totals.values += part_sum.values;
            totals.points += part_sum.points;
            totals.blocks += part_sum.blocks;
        }
    }
    write_table(&columns, &rows, out)?;
    writeln!(out)?;
    for (db, s) in &db_series {
        writeln!(out, "database {db}: {} series in segments", s.len())?;
    }
    writeln!(
        out,
        "total: {} points, {} values, {} blocks, {} segment bytes ({} B/point, {} compression); WAL {} bytes",
        totals.points,
        totals.values,
        totals.blocks,
        totals.bytes,
        per(totals.bytes, totals.points),
        ratio(totals.values, totals.bytes),
        dir_bytes(&root.join("wal"))
    )?;
    if args.verify {
        if bad.is_empty() {
            writeln!(out, "verify: every segment checksum is good")?;
        } else {
            writeln!(out, "verify: {} corrupt segment file(s)", bad.len())?;
        }
    }
    Ok(bad)
}
