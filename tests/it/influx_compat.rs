//! Differential test against a real InfluxDB 1.x: the same data (`influx_compat/data.lp`) is
//! written to `influxd` (Debian's `influxdb` package, started here on loopback with a temporary
//! directory) and to Strata, then every query of `influx_compat/corpus.influxql` runs against
//! both and the answers must be equal (JSON always, CSV where the corpus says `@csv`).
//!
//! Queries marked `@differs=ID` are deliberate differences documented in
//! `docs/query-language.md`; they must still differ, so the page cannot go stale. Without
//! `influxd` the test is skipped, except under `CI=true`, where it fails.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_e2e::server::{client, ServerBuilder, StrataServer};
use strata_e2e::tools;

const DB: &str = "telemetry";
const DATA: &str = include_str!("influx_compat/data.lp");
const CORPUS: &str = include_str!("influx_compat/corpus.influxql");
const INFLUXD: &str = "/usr/bin/influxd";
const INSTALL: &str = "apt-get install influxdb";

/// A running `influxd` on loopback ports chosen here, with its data in a temporary directory.
/// Killed (by its PID, through `Child`) on drop.
struct Influxd {
    child: Child,
    url: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Influxd {
    /// Starts `influxd` and waits until `/ping` answers; `None` (after [`tools::missing`]) when
    /// it is not installed.
    fn start(test: &str) -> Option<Influxd> {
        // STRATA_TEST_INFLUXD names another build (or, for a check of the CI=true refusal, none).
        let bin = std::env::var("STRATA_TEST_INFLUXD").unwrap_or_else(|_| INFLUXD.to_owned());
        if !Path::new(&bin).exists() {
            tools::missing(test, "influxd (InfluxDB 1.x)", INSTALL);
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (http, rpc) = (free_port(), free_port());
        let d = dir.path().display();
        // Everything that would write outside the directory, listen beyond loopback or start
        // background work the comparison does not need is off.
        let conf = format!(
            "bind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n  logging-enabled = false\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [subscriber]\n  enabled = false\n\
             [continuous_queries]\n  enabled = false\n\
             [retention]\n  enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n\
             [logging]\n  level = \"warn\"\n  suppress-logo = true\n"
        );
        let conf_path = dir.path().join("influxdb.conf");
        std::fs::write(&conf_path, conf).expect("write influxdb.conf");
        let log = dir.path().join("influxd.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&bin)
            .arg("run")
            .arg("-config")
            .arg(&conf_path)
            .env("INFLUXDB_REPORTING_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("clone log")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn influxd");
        let mut influxd = Influxd { child, url: format!("http://127.0.0.1:{http}"), log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = client().get(format!("{}/ping", influxd.url)).send() {
                if r.status().as_u16() == 204 {
                    return Some(influxd);
                }
            }
            if let Ok(Some(status)) = influxd.child.try_wait() {
                panic!("influxd exited ({status}):\n{}", influxd.log());
            }
            assert!(
                Instant::now() < deadline,
                "influxd did not answer /ping within 15 s:\n{}",
                influxd.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now (the OS's choice for port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("addr").port()
}

/// One line of the corpus.
struct Case {
    line: usize,
    query: String,
    epoch: Option<String>,
    csv: bool,
    post: bool,
    differs: Option<String>,
    /// `@todo`: not answered as InfluxDB does yet (listed in docs/query-language.md).
    todo: bool,
}

fn parse_corpus(text: &str) -> Vec<Case> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let mut rest = raw.trim();
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        let mut case = Case {
            line: i + 1,
            query: String::new(),
            epoch: None,
            csv: false,
            post: false,
            differs: None,
            todo: false,
        };
        while let Some(opt) = rest.strip_prefix('@') {
            let (word, tail) = opt.split_once(' ').unwrap_or((opt, ""));
            match word.split_once('=') {
                Some(("epoch", v)) => case.epoch = Some(v.to_owned()),
                Some(("differs", v)) => case.differs = Some(v.to_owned()),
                None if word == "csv" => case.csv = true,
                None if word == "post" => case.post = true,
                None if word == "todo" => case.todo = true,
                _ => panic!("corpus line {}: unknown option @{word}", i + 1),
            }
            rest = tail.trim_start();
        }
        case.query = rest.to_owned();
        out.push(case);
    }
    out
}

/// The answer of `base` (`http://host:port`) to `case`: the JSON document, or the CSV text.
fn ask(base: &str, case: &Case, csv: bool) -> String {
    let mut params = vec![("db", DB.to_owned()), ("q", case.query.clone())];
    if let Some(e) = &case.epoch {
        params.push(("epoch", e.clone()));
    }
    let url = format!("{base}/query");
    let req = if case.post { client().post(url).form(&params) } else { client().get(url).query(&params) };
    let req = if csv { req.header("Accept", "application/csv") } else { req };
    let r = req.send().unwrap_or_else(|e| panic!("line {}: {e}", case.line));
    let status = r.status().as_u16();
    let body = r.text().expect("body");
    if csv {
        format!("HTTP {status}\n{body}")
    } else {
        // Status and document together: a 400 with an error and a 200 with one differ.
        format!("{status} {}", body.trim_end())
    }
}

/// Equal JSON, where numbers are equal when both are the same integer or, as floats, within a
/// relative 1e-12 (sums and means may be added up in another order).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => {
                let (f, g) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                f == g || (f - g).abs() <= 1e-12 * f.abs().max(g.abs())
            }
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Compares two answers of [`ask`]; JSON bodies structurally, anything else as text.
fn same_answer(a: &str, b: &str) -> bool {
    let split =
        |s: &str| s.split_once(' ').map(|(st, body)| (st.to_owned(), serde_json::from_str::<Value>(body)));
    match (split(a), split(b)) {
        (Some((sa, Ok(ja))), Some((sb, Ok(jb)))) => sa == sb && same_json(&ja, &jb),
        _ => a == b,
    }
}

/// Both answers, one per line when they are JSON (pretty, so a diff tool lines them up).
fn show(answer: &str) -> String {
    match answer.split_once(' ').map(|(st, body)| (st, serde_json::from_str::<Value>(body))) {
        Some((st, Ok(v))) => {
            let pretty = serde_json::to_string(&v).expect("print");
            format!("{st} {pretty}")
        }
        _ => answer.to_owned(),
    }
}

fn load(base: &str, data: &str) {
    let r = client()
        .post(format!("{base}/query"))
        .form(&[("q", format!("CREATE DATABASE {DB}"))])
        .send()
        .unwrap();
    assert!(r.status().is_success(), "CREATE DATABASE at {base}: {}", r.text().unwrap());
    let r = client().post(format!("{base}/write?db={DB}&precision=ns")).body(data.to_owned()).send().unwrap();
    assert_eq!(r.status().as_u16(), 204, "write to {base}: {}", r.text().unwrap());
}

#[test]
fn influxql_answers_match_influxdb() {
    let Some(influxd) = Influxd::start("influx_compat::influxql_answers_match_influxdb") else { return };
    let dir = tempfile::tempdir().unwrap();
    let strata: StrataServer = ServerBuilder::new(dir.path()).start();
    let strata_url = strata.url("");
    load(&influxd.url, DATA);
    load(&strata_url, DATA);

    let cases = parse_corpus(CORPUS);
    assert!(cases.len() > 50, "the corpus lost its queries");
    let (mut matched, mut report, mut failures) = (0, String::new(), 0);
    for case in &cases {
        let mut answers = vec![(ask(&influxd.url, case, false), ask(&strata_url, case, false))];
        if case.csv {
            answers.push((ask(&influxd.url, case, true), ask(&strata_url, case, true)));
        }
        let same = answers.iter().all(|(a, b)| same_answer(a, b));
        if same {
            matched += 1;
        }
        let expected_to_differ = case.differs.is_some() || case.todo;
        let verdict = match (expected_to_differ, same) {
            (false, true) => continue,
            (false, false) => "differs from InfluxDB",
            (true, false) if case.todo => "differs (not done yet)",
            (true, false) => "differs (documented)",
            (true, true) => {
                "now matches InfluxDB: remove its @differs/@todo and its entry in docs/query-language.md"
            }
        };
        if expected_to_differ == same {
            failures += 1;
        }
        let _ = writeln!(report, "\nline {}: {verdict}: {}", case.line, case.query);
        for (a, b) in &answers {
            let _ = writeln!(report, "  influxdb: {}\n  strata:   {}", show(a), show(b));
        }
    }
    eprintln!("influx_compat: {matched} of {} queries answer as InfluxDB 1.x does{report}", cases.len());
    // Stopped first so a failure shows the report, not the server's whole log.
    strata.stop();
    drop(influxd);
    assert!(failures == 0, "{failures} corpus queries answer differently from InfluxDB (see above)");
}
