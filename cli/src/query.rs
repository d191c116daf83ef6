//! `strata query`: InfluxQL against a running server's `/query` (InfluxDB 1.x JSON shape),
//! one-shot with `-e` or at an interactive prompt; output as a table, CSV or JSON.
//!
//! At a terminal the prompt is a line editor (rustyline: arrow keys and Ctrl-R recall earlier
//! statements, Emacs-style editing; Ctrl-C clears the line, Ctrl-D leaves); with piped input it
//! reads plain lines from stdin. History is kept in a file (`~/.strata_history` by default,
//! one statement per line) and listed by `history`; `!N` runs entry N again.

use std::io::{BufRead, IsTerminal as _, Write};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use serde_json::Value;

use super::remote::{Remote, RemoteArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Run this statement (or `;`-separated statements) and exit; without it, start a prompt.
    #[arg(short = 'e', long = "execute", value_name = "STATEMENT")]
    pub execute: Option<String>,
    /// Database for statements that do not name one (`use DB` at the prompt).
    #[arg(short, long, visible_alias = "db", value_name = "DB")]
    pub database: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Timestamps as rfc3339 (default) or integers in h, m, s, ms, u or ns.
    #[arg(long, default_value = "rfc3339", value_name = "PRECISION")]
    pub precision: String,
    /// History file of the prompt.
    #[arg(long, value_name = "FILE")]
    pub history_file: Option<PathBuf>,
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote)?;
    let mut session = Session {
        db: args.database.clone(),
        format: args.format,
        epoch: (args.precision != "rfc3339").then(|| args.precision.clone()),
    };
    if let Some(q) = &args.execute {
        let body = remote.query(q, session.db.as_deref(), session.epoch.as_deref())?;
        let mut out = std::io::stdout().lock();
        return session.print(&body, &mut out);
    }
    prompt(&remote, &mut session, args.history_file.or_else(default_history))
}

fn default_history() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".strata_history"))
}

struct Session {
    db: Option<String>,
    format: OutputFormat,
    epoch: Option<String>,
}

impl Session {
    /// Prints a `/query` response; an error for a statement that failed.
    fn print(&self, body: &Value, out: &mut impl Write) -> anyhow::Result<()> {
        if self.format == OutputFormat::Json {
            writeln!(out, "{}", serde_json::to_string_pretty(body)?)?;
            return statement_errors(body);
        }
        if let Some(e) = body.get("error").and_then(Value::as_str) {
            bail!("query failed: {e}");
        }
        let results = body.get("results").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut first = true;
        for r in &results {
            if let Some(e) = r.get("error").and_then(Value::as_str) {
                bail!("statement {} failed: {e}", r.get("statement_id").unwrap_or(&Value::Null));
            }
            for s in r.get("series").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
                if !first && self.format == OutputFormat::Table {
                    writeln!(out)?;
                }
                first = false;
                print_series(s, self.format, out)?;
            }
        }
        if first && self.format == OutputFormat::Table {
            writeln!(out, "(no results)")?;
        }
        Ok(())
    }
}

fn statement_errors(body: &Value) -> anyhow::Result<()> {
    if let Some(e) = body.get("error").and_then(Value::as_str) {
        bail!("query failed: {e}");
    }
    for r in body.get("results").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        if let Some(e) = r.get("error").and_then(Value::as_str) {
            bail!("statement failed: {e}");
        }
    }
    Ok(())
}

/// A cell as text: strings bare, null empty, numbers and booleans as JSON prints them.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn print_series(s: &Value, format: OutputFormat, out: &mut impl Write) -> anyhow::Result<()> {
    let name = s.get("name").and_then(Value::as_str).unwrap_or("");
    let tags: Vec<(String, String)> = s
        .get("tags")
        .and_then(Value::as_object)
        .map(|t| t.iter().map(|(k, v)| (k.clone(), cell(v))).collect())
        .unwrap_or_default();
    let columns: Vec<String> =
        s.get("columns").and_then(Value::as_array).map(|c| c.iter().map(cell).collect()).unwrap_or_default();
    let rows: Vec<Vec<String>> = s
        .get("values")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|r| r.as_array().map(|r| r.iter().map(cell).collect()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    match format {
        OutputFormat::Table => {
            let tag_text: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if tag_text.is_empty() {
                writeln!(out, "name: {name}")?;
            } else {
                writeln!(out, "name: {name}\ntags: {}", tag_text.join(", "))?;
            }
            write_table(&columns, &rows, out)?;
        }
        OutputFormat::Csv => {
            let mut header = vec!["name".to_string()];
            header.extend(tags.iter().map(|(k, _)| k.clone()));
            header.extend(columns.iter().cloned());
            writeln!(out, "{}", csv_row(&header))?;
            for r in &rows {
                let mut line = vec![name.to_string()];
                line.extend(tags.iter().map(|(_, v)| v.clone()));
                line.extend(r.iter().cloned());
                writeln!(out, "{}", csv_row(&line))?;
            }
        }
        OutputFormat::Json => unreachable!("JSON is printed whole"),
    }
    Ok(())
}

/// One CSV record (RFC 4180 quoting).
pub fn csv_row(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A boxed table sized to its widest cells (characters, not bytes).
pub fn write_table(columns: &[String], rows: &[Vec<String>], out: &mut impl Write) -> std::io::Result<()> {
    let n = columns.len().max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let width = |i: usize| {
        let c = columns.get(i).map_or(0, |c| c.chars().count());
        rows.iter().map(|r| r.get(i).map_or(0, |v| v.chars().count())).max().unwrap_or(0).max(c)
    };
    let widths: Vec<usize> = (0..n).map(width).collect();
    let rule: String =
        format!("+{}+", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    let line = |cells: &[String]| {
        let parts: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let v = cells.get(i).map_or("", String::as_str);
                format!(" {v}{} ", " ".repeat(w - v.chars().count()))
            })
            .collect();
        format!("|{}|", parts.join("|"))
    };
    writeln!(out, "{rule}\n{}\n{rule}", line(columns))?;
    for r in rows {
        writeln!(out, "{}", line(r))?;
    }
    writeln!(out, "{rule}")?;
    writeln!(out, "{} row{}", rows.len(), if rows.len() == 1 { "" } else { "s" })
}

const HELP: &str = "\
Statements are sent to the server as typed (end them with Enter). Commands:
  use DB               default database for the statements that follow
  format table|csv|json
  precision rfc3339|h|m|s|ms|u|ns
  history              list the history; !N runs entry N again
  help                 this text
  exit, quit           leave (also Ctrl-D)";

fn prompt(remote: &Remote, session: &mut Session, history_file: Option<PathBuf>) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let mut history: Vec<String> = history_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut out = std::io::stdout();
    let mut input = if interactive {
        writeln!(out, "Connected to strata. Type 'help' for commands, 'exit' to leave.")?;
        let mut editor = rustyline::DefaultEditor::new().context("starting the line editor")?;
        for h in &history {
            // Recall only: a history entry the editor refuses is still listed by `history`.
            let _ = editor.add_history_entry(h.as_str());
        }
        Input::Editor { editor: Box::new(editor), pending: std::collections::VecDeque::new() }
    } else {
        Input::Lines(std::io::stdin().lock().lines())
    };
    loop {
        let prompt =
            format!("strata{}> ", session.db.as_deref().map(|d| format!(":{d}")).unwrap_or_default());
        let Some(line) = input.next(&prompt, &mut out)? else {
            writeln!(out)?;
            return Ok(());
        };
        let mut line = line.trim().to_owned();
        if line.is_empty() {
            continue;
        }
        if let Some(n) = line.strip_prefix('!') {
            match n.parse::<usize>().ok().and_then(|n| history.get(n.wrapping_sub(1))) {
                Some(h) => {
                    line = h.clone();
                    writeln!(out, "{line}")?;
                }
                None => {
                    writeln!(out, "no history entry {n}")?;
                    continue;
                }
            }
        }
        if history.last() != Some(&line) {
            history.push(line.clone());
            if let Some(p) = &history_file {
                append_history(p, &line);
            }
            if let Input::Editor { editor, .. } = &mut input {
                let _ = editor.add_history_entry(line.as_str());
            }
        }
        let lower = line.to_ascii_lowercase();
        let mut words = lower.split_whitespace();
        match (words.next(), words.next()) {
            (Some("exit" | "quit"), None) => return Ok(()),
            (Some("help"), None) => writeln!(out, "{HELP}")?,
            (Some("history"), None) => {
                for (i, h) in history.iter().enumerate() {
                    writeln!(out, "{:>4}  {h}", i + 1)?;
                }
            }
            (Some("use"), Some(_)) => {
                let db = line.split_whitespace().nth(1).unwrap_or_default().trim_matches('"').to_owned();
                writeln!(out, "using database {db}")?;
                session.db = Some(db);
            }
            (Some("format"), Some(f)) => match OutputFormat::from_str(f, true) {
                Ok(f) => session.format = f,
                Err(_) => writeln!(out, "unknown format {f:?}: table, csv or json")?,
            },
            (Some("precision"), Some(p)) => {
                session.epoch = (p != "rfc3339").then(|| p.to_owned());
            }
            _ => {
                let result = remote
                    .query(&line, session.db.as_deref(), session.epoch.as_deref())
                    .and_then(|body| session.print(&body, &mut out));
                if let Err(e) = result {
                    writeln!(out, "ERR: {e:#}")?;
                }
            }
        }
    }
}

/// Where the prompt's lines come from.
enum Input {
    /// A terminal: line editing and history recall. A paste of several lines comes back from
    /// the editor as one text (bracketed paste); its lines wait in `pending` and run one by
    /// one. Lines typed ahead while a statement runs are lost (the editor drops what it read
    /// past the end of a line); a paste is not.
    Editor { editor: Box<rustyline::DefaultEditor>, pending: std::collections::VecDeque<String> },
    /// Piped input: plain lines, the prompt still printed (so a transcript reads like a session).
    Lines(std::io::Lines<std::io::StdinLock<'static>>),
}

impl Input {
    /// The next line, `None` at the end of input (Ctrl-D). Ctrl-C abandons the line being typed.
    fn next(&mut self, prompt: &str, out: &mut impl Write) -> anyhow::Result<Option<String>> {
        match self {
            Input::Editor { editor, pending } => loop {
                if let Some(line) = pending.pop_front() {
                    writeln!(out, "{prompt}{line}")?;
                    return Ok(Some(line));
                }
                match editor.readline(prompt) {
                    Ok(text) => {
                        let mut lines = text.lines().map(str::to_owned);
                        let first = lines.next().unwrap_or_default();
                        pending.extend(lines);
                        return Ok(Some(first));
                    }
                    Err(rustyline::error::ReadlineError::Interrupted) => continue,
                    Err(rustyline::error::ReadlineError::Eof) => return Ok(None),
                    Err(err) => return Err(err).context("reading the terminal"),
                }
            },
            Input::Lines(lines) => {
                write!(out, "{prompt}")?;
                out.flush()?;
                lines.next().transpose().context("reading stdin")
            }
        }
    }
}

fn append_history(path: &std::path::Path, line: &str) {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
    if let Ok(mut f) = file {
        // History is a convenience: failing to save it must not stop the prompt.
        let _ = writeln!(f, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn render(body: Value, format: OutputFormat) -> String {
        let s = Session { db: None, format, epoch: None };
        let mut out = Vec::new();
        s.print(&body, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table_and_csv() {
        let body = json!({"results": [{"statement_id": 0, "series": [
            {"name": "cpu", "tags": {"host": "a"}, "columns": ["time", "usage"],
             "values": [["2024-01-01T00:00:00Z", 1.5], ["2024-01-01T00:00:10Z", null]]}]}]});
        let t = render(body.clone(), OutputFormat::Table);
        assert_eq!(
            t,
            "name: cpu\ntags: host=a\n\
             +----------------------+-------+\n\
             | time                 | usage |\n\
             +----------------------+-------+\n\
             | 2024-01-01T00:00:00Z | 1.5   |\n\
             | 2024-01-01T00:00:10Z |       |\n\
             +----------------------+-------+\n\
             2 rows\n"
        );
        let c = render(body, OutputFormat::Csv);
        assert_eq!(c, "name,host,time,usage\ncpu,a,2024-01-01T00:00:00Z,1.5\ncpu,a,2024-01-01T00:00:10Z,\n");
        assert_eq!(csv_row(&["a,b".into(), "say \"hi\"".into()]), "\"a,b\",\"say \"\"hi\"\"\"");
    }

    #[test]
    fn statement_errors_are_errors() {
        let s = Session { db: None, format: OutputFormat::Table, epoch: None };
        let body = json!({"results": [{"statement_id": 0, "error": "database not found: x"}]});
        let e = s.print(&body, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("database not found"), "{e}");
    }
}
