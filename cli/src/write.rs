//! `strata write` (line protocol from a file or stdin) and `strata import` (line protocol or
//! CSV from a file, with a progress bar): both post batches of lines to `/api/v2/write`.
//!
//! Batches retry on 429/503 after the server's `Retry-After` (capped, a few times). A 400
//! partial write is reported and counted, and the run goes on; the exit status is non-zero
//! if anything was refused.
//!
//! The CSV shape (also what `strata export --format csv` writes): a header
//! `measurement,time,tag:KEY...,field:KEY...`, then one row per point; `time` an integer in
//! `--precision`, tag values as text, field values as line-protocol tokens (`1.5`, `3i`,
//! `7u`, `true`, `"text"`). Empty cells are absent tags or fields. Quoted cells may contain
//! commas and doubled quotes but not line breaks. A header may appear again further down: it
//! applies to the rows after it (an export writes one per measurement).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::remote::{Remote, RemoteArgs};

/// Most waits after 429/503 for one batch.
const MAX_RETRIES: u32 = 5;
/// Longest single wait, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Database (created on first write if the server allows it).
    #[arg(short, long, visible_alias = "db", value_name = "DB")]
    pub database: String,
    /// Timestamp precision of the input: ns, us, ms or s.
    #[arg(long, default_value = "ns")]
    pub precision: String,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    pub batch_lines: usize,
    /// Input file; `-` or none reads stdin.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    /// InfluxDB line protocol.
    Lp,
    /// CSV with a `measurement,time,tag:K...,field:K...` header.
    Csv,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub write: WriteArgs,
    /// Input format.
    #[arg(long, value_enum, default_value = "lp")]
    pub format: DataFormat,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run_write(args: WriteArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote)?;
    let (reader, _) = open(args.file.as_ref())?;
    let stats = send(&remote, &args, reader, DataFormat::Lp, None)?;
    stats.finish()
}

pub fn run_import(args: ImportArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.write.remote)?;
    let (reader, len) = open(args.write.file.as_ref())?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let bar = len.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("a valid template"),
        );
        bar
    };
    let stats = send(&remote, &args.write, reader, args.format, Some(&bar))?;
    bar.finish_and_clear();
    stats.finish()
}

fn open(file: Option<&PathBuf>) -> anyhow::Result<(Box<dyn BufRead>, Option<u64>)> {
    match file {
        Some(p) if p.as_os_str() != "-" => {
            let f = std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            let len = f.metadata().ok().map(|m| m.len());
            Ok((Box::new(BufReader::new(f)), len))
        }
        _ => Ok((Box::new(BufReader::new(std::io::stdin())), None)),
    }
}

#[derive(Debug, Default)]
struct Stats {
    lines: u64,
    batches: u64,
    refused: u64,
    failed_batches: u64,
}

impl Stats {
    fn finish(self) -> anyhow::Result<()> {
        eprintln!("wrote {} lines in {} requests", self.lines - self.refused, self.batches);
        if self.refused > 0 || self.failed_batches > 0 {
            bail!("{} lines refused, {} requests failed", self.refused, self.failed_batches);
        }
        Ok(())
    }
}

fn send(
    remote: &Remote,
    args: &WriteArgs,
    mut reader: Box<dyn BufRead>,
    format: DataFormat,
    bar: Option<&ProgressBar>,
) -> anyhow::Result<Stats> {
    let mut stats = Stats::default();
    let mut batch = String::new();
    let mut in_batch = 0usize;
    let mut line = String::new();
    let mut csv_header: Option<CsvHeader> = None;
    let batch_lines = args.batch_lines.max(1);
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).context("reading the input")?;
        if let Some(b) = bar {
            b.inc(n as u64);
        }
        if n > 0 {
            number += 1;
            let text = line.trim_end_matches(['\n', '\r']);
            match format {
                DataFormat::Lp => {
                    if !text.trim().is_empty() && !text.trim_start().starts_with('#') {
                        batch.push_str(text);
                        batch.push('\n');
                        in_batch += 1;
                    }
                }
                DataFormat::Csv => {
                    if text.is_empty() {
                        continue;
                    }
                    match &csv_header {
                        None => {
                            csv_header =
                                Some(CsvHeader::parse(text).with_context(|| format!("line {number}"))?)
                        }
                        // A later header starts the next block (an export of several
                        // measurements has one per measurement). A data row never parses as
                        // one: its field cells would have to read `field:KEY`, which is not a
                        // field value.
                        Some(_) if CsvHeader::parse(text).is_ok() => {
                            csv_header = CsvHeader::parse(text).ok();
                        }
                        Some(h) => {
                            let lp = h.to_line(text).with_context(|| format!("line {number}"))?;
                            if let Some(lp) = lp {
                                batch.push_str(&lp);
                                batch.push('\n');
                                in_batch += 1;
                            }
                        }
                    }
                }
            }
        }
        if in_batch >= batch_lines || (n == 0 && in_batch > 0) {
            post(remote, args, &batch, in_batch, &mut stats, bar)?;
            batch.clear();
            in_batch = 0;
        }
        if n == 0 {
            return Ok(stats);
        }
    }
}

fn post(
    remote: &Remote,
    args: &WriteArgs,
    body: &str,
    lines: usize,
    stats: &mut Stats,
    bar: Option<&ProgressBar>,
) -> anyhow::Result<()> {
    let path =
        format!("/api/v2/write?bucket={}&precision={}", encode(&args.database), encode(&args.precision));
    stats.batches += 1;
    stats.lines += lines as u64;
    for attempt in 0.. {
        let resp = remote.post(&path).body(body.to_owned()).send().context("POST /api/v2/write")?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => return Ok(()),
            429 | 503 if attempt < MAX_RETRIES => {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs)
                    .min(MAX_WAIT);
                let msg = format!("server busy ({status}); retrying in {wait:?}");
                match bar {
                    Some(b) => b.set_message(msg),
                    None => eprintln!("{msg}"),
                }
                std::thread::sleep(wait);
            }
            400 => {
                let v: serde_json::Value = resp.json().unwrap_or_default();
                if let Some(n) = v.get("rejected_total").and_then(|n| n.as_u64()) {
                    stats.refused += n;
                    let msg = v.get("message").and_then(|m| m.as_str()).unwrap_or("partial write");
                    eprintln!("{msg}");
                    return Ok(());
                }
                bail!(
                    "server refused the request: {}",
                    v.get("message").and_then(|m| m.as_str()).unwrap_or("400")
                );
            }
            _ => {
                let e = super::remote::check(resp).expect_err("not a success");
                if status >= 500 || status == 429 {
                    stats.failed_batches += 1;
                    eprintln!("batch failed: {e:#}");
                    return Ok(());
                }
                return Err(e);
            }
        }
    }
    unreachable!("the loop returns")
}

/// Percent-encodes a query parameter value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits one CSV record (RFC 4180 quoting, no embedded line breaks).
pub fn split_csv(line: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
                continue;
            }
            (_, c) => cur.push(c),
        }
        at_start = false;
    }
    if quoted {
        bail!("unterminated quoted cell");
    }
    out.push(cur);
    Ok(out)
}

#[derive(Debug)]
enum Col {
    Measurement,
    Time,
    Tag(String),
    Field(String),
}

#[derive(Debug)]
struct CsvHeader {
    cols: Vec<Col>,
}

impl CsvHeader {
    fn parse(line: &str) -> anyhow::Result<CsvHeader> {
        let mut cols = Vec::new();
        for name in split_csv(line)? {
            cols.push(match name.as_str() {
                "measurement" => Col::Measurement,
                "time" => Col::Time,
                n => match (n.strip_prefix("tag:"), n.strip_prefix("field:")) {
                    (Some(t), _) => Col::Tag(t.to_owned()),
                    (_, Some(f)) => Col::Field(f.to_owned()),
                    _ => bail!("CSV header column {n:?}: expected measurement, time, tag:KEY or field:KEY"),
                },
            });
        }
        if !cols.iter().any(|c| matches!(c, Col::Measurement))
            || !cols.iter().any(|c| matches!(c, Col::Field(_)))
        {
            bail!("the CSV header needs a measurement column and at least one field:KEY column");
        }
        Ok(CsvHeader { cols })
    }

    /// The row as a line of line protocol; `None` for a row without fields.
    fn to_line(&self, row: &str) -> anyhow::Result<Option<String>> {
        let cells = split_csv(row)?;
        if cells.len() != self.cols.len() {
            bail!("{} cells, the header has {}", cells.len(), self.cols.len());
        }
        let (mut m, mut time, mut tags, mut fields) =
            (String::new(), String::new(), String::new(), String::new());
        for (col, v) in self.cols.iter().zip(&cells) {
            match col {
                Col::Measurement => m = escape(v, ", "),
                Col::Time => time = v.trim().to_owned(),
                Col::Tag(k) if !v.is_empty() => {
                    tags.push_str(&format!(",{}={}", escape(k, ",= "), escape(v, ",= ")));
                }
                Col::Field(k) if !v.is_empty() => {
                    if !fields.is_empty() {
                        fields.push(',');
                    }
                    fields.push_str(&format!("{}={v}", escape(k, ",= ")));
                }
                _ => {}
            }
        }
        if fields.is_empty() {
            return Ok(None);
        }
        let time = if time.is_empty() { String::new() } else { format!(" {time}") };
        Ok(Some(format!("{m}{tags} {fields}{time}")))
    }
}

/// Backslash-escapes `special` characters (and backslashes before them) for line protocol.
pub fn escape(s: &str, special: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if special.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_line_protocol() {
        let h = CsvHeader::parse("measurement,time,tag:host,tag:room name,field:v,field:note").unwrap();
        let l = h.to_line(r#"cpu load,1000,a b,,1.5,"""x, y""""#).unwrap().unwrap();
        assert_eq!(l, r#"cpu\ load,host=a\ b v=1.5,note="x, y" 1000"#);
        assert_eq!(h.to_line("m,5,,,,").unwrap(), None, "a row without fields is skipped");
        assert!(h.to_line("m,5").is_err());
        assert!(CsvHeader::parse("time,field:v").is_err());
        assert!(CsvHeader::parse("measurement,bogus,field:v").is_err());
    }

    #[test]
    fn csv_splitting() {
        assert_eq!(split_csv(r#"a,"b,c","d""e",,"#).unwrap(), vec!["a", "b,c", "d\"e", "", ""]);
        assert!(split_csv(r#""open"#).is_err());
        assert_eq!(encode("my db/rp"), "my%20db%2Frp");
    }
}
