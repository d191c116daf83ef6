//! `strata export`: a database's points as line protocol or CSV (the shape `strata import`
//! reads), through `/query`: `SHOW MEASUREMENTS`, `SHOW FIELD KEYS` for the field types (the
//! JSON results do not say whether `3` is an integer or a float), then
//! `SELECT * FROM "m" GROUP BY * LIMIT n OFFSET k` per measurement, chunk by chunk (LIMIT and
//! OFFSET count points per series), with nanosecond timestamps.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::query::csv_row;
use super::remote::{Remote, RemoteArgs};
use super::write::{escape, DataFormat};

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[arg(short, long, visible_alias = "db", value_name = "DB")]
    pub database: String,
    /// Only these measurements (repeatable); default all.
    #[arg(short, long = "measurement", value_name = "NAME")]
    pub measurements: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "lp")]
    pub format: DataFormat,
    /// Points per series per request.
    #[arg(long, default_value_t = 10_000)]
    pub chunk: usize,
    /// Output file; stdout when absent.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The rows of the first series of the first result.
fn first_series_values(body: &Value) -> anyhow::Result<Vec<Vec<Value>>> {
    if let Some(e) = body.pointer("/results/0/error").and_then(Value::as_str) {
        bail!("{e}");
    }
    let mut out = Vec::new();
    for s in
        body.pointer("/results/0/series").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    {
        for r in s.get("values").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            out.push(r.as_array().cloned().unwrap_or_default());
        }
    }
    Ok(out)
}

/// A field value as a line-protocol token, given its declared type.
pub fn lp_value(v: &Value, ty: &str) -> Option<String> {
    Some(match (v, ty) {
        (Value::Null, _) => return None,
        (Value::Bool(b), _) => b.to_string(),
        (Value::String(s), _) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        (Value::Number(n), "integer") => format!("{n}i"),
        (Value::Number(n), "unsigned") => format!("{n}u"),
        (Value::Number(n), _) => {
            let f = n.as_f64()?;
            // Keep floats recognisably floats where the text would read as an integer.
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{f:.1}")
            } else {
                format!("{f}")
            }
        }
        _ => return None,
    })
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote)?;
    let db = Some(args.database.as_str());
    let measurements = if args.measurements.is_empty() {
        let body = remote.query("SHOW MEASUREMENTS", db, None)?;
        first_series_values(&body)?
            .into_iter()
            .filter_map(|r| r.first()?.as_str().map(str::to_owned))
            .collect()
    } else {
        args.measurements.clone()
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(measurements.len() as u64);
        b.set_style(
            ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} measurements, {msg}")
                .expect("a valid template"),
        );
        b
    };
    let mut points = 0u64;
    for m in &measurements {
        bar.set_message(format!("{points} points; {m}"));
        let body = remote.query(&format!("SHOW FIELD KEYS FROM {}", quote_ident(m)), db, None)?;
        let types: BTreeMap<String, String> = first_series_values(&body)?
            .into_iter()
            .filter_map(|r| Some((r.first()?.as_str()?.to_owned(), r.get(1)?.as_str()?.to_owned())))
            .collect();
        // CSV: one header per measurement naming every tag key and field of it, so series
        // with different tag keys share it (their missing tags are empty cells).
        let tag_keys: Vec<String> = if args.format == DataFormat::Csv {
            let body = remote.query(&format!("SHOW TAG KEYS FROM {}", quote_ident(m)), db, None)?;
            first_series_values(&body)?
                .into_iter()
                .filter_map(|r| Some(r.first()?.as_str()?.to_owned()))
                .collect()
        } else {
            Vec::new()
        };
        let mut header_written = false;
        let chunk = args.chunk.max(1);
        for page in 0.. {
            let q =
                format!("SELECT * FROM {} GROUP BY * LIMIT {chunk} OFFSET {}", quote_ident(m), page * chunk);
            let body = remote.query(&q, db, Some("ns"))?;
            if let Some(e) = body.pointer("/results/0/error").and_then(Value::as_str) {
                bail!("exporting {m}: {e}");
            }
            let series =
                body.pointer("/results/0/series").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut full = false;
            for s in &series {
                let tags: BTreeMap<String, String> = s
                    .get("tags")
                    .and_then(Value::as_object)
                    .map(|t| {
                        t.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                            .filter(|(_, v)| !v.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                let columns: Vec<String> = s
                    .get("columns")
                    .and_then(Value::as_array)
                    .map(|c| c.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let rows = s.get("values").and_then(Value::as_array).cloned().unwrap_or_default();
                full |= rows.len() >= chunk;
                for row in &rows {
                    let row = row.as_array().cloned().unwrap_or_default();
                    let mut time = String::new();
                    let mut fields = Vec::new();
                    for (c, v) in columns.iter().zip(&row) {
                        if c == "time" {
                            time = v.to_string();
                        } else if let Some(tok) = lp_value(v, types.get(c).map_or("float", String::as_str)) {
                            fields.push((c.clone(), tok));
                        }
                    }
                    if fields.is_empty() {
                        continue;
                    }
                    points += 1;
                    match args.format {
                        DataFormat::Lp => {
                            let tag_text: String = tags
                                .iter()
                                .map(|(k, v)| format!(",{}={}", escape(k, ",= "), escape(v, ",= ")))
                                .collect();
                            let field_text: Vec<String> =
                                fields.iter().map(|(k, v)| format!("{}={v}", escape(k, ",= "))).collect();
                            writeln!(out, "{}{tag_text} {} {time}", escape(m, ", "), field_text.join(","))?;
                        }
                        DataFormat::Csv => {
                            let all_fields: Vec<&String> = types.keys().collect();
                            if tags.keys().any(|k| !tag_keys.contains(k)) {
                                bail!("measurement {m}: a series has a tag key SHOW TAG KEYS did not list (written during the export?); retry");
                            }
                            if !header_written {
                                header_written = true;
                                let mut h = vec!["measurement".to_string(), "time".to_string()];
                                h.extend(tag_keys.iter().map(|k| format!("tag:{k}")));
                                h.extend(all_fields.iter().map(|f| format!("field:{f}")));
                                writeln!(out, "{}", csv_row(&h))?;
                            }
                            let mut r = vec![m.clone(), time.clone()];
                            r.extend(tag_keys.iter().map(|k| tags.get(k).cloned().unwrap_or_default()));
                            r.extend(all_fields.iter().map(|f| {
                                fields
                                    .iter()
                                    .find(|(k, _)| &k == f)
                                    .map(|(_, v)| v.clone())
                                    .unwrap_or_default()
                            }));
                            writeln!(out, "{}", csv_row(&r))?;
                        }
                    }
                }
            }
            if !full {
                break;
            }
        }
        bar.inc(1);
    }
    out.flush()?;
    bar.finish_and_clear();
    eprintln!("exported {points} points from {} measurements", measurements.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_keep_their_types() {
        assert_eq!(lp_value(&json!(3), "integer").unwrap(), "3i");
        assert_eq!(lp_value(&json!(3), "unsigned").unwrap(), "3u");
        assert_eq!(lp_value(&json!(3), "float").unwrap(), "3.0");
        assert_eq!(lp_value(&json!(1.25), "float").unwrap(), "1.25");
        assert_eq!(lp_value(&json!(true), "boolean").unwrap(), "true");
        assert_eq!(lp_value(&json!("a\"b"), "string").unwrap(), "\"a\\\"b\"");
        assert_eq!(lp_value(&json!(null), "float"), None);
        assert_eq!(quote_ident("we\"ird"), "\"we\\\"ird\"");
    }
}
