//! `GET /metrics`: counters move by exactly the traffic sent, and the whole exposition passes a
//! strict Prometheus text-format (0.0.4) validator.

use std::collections::{BTreeMap, HashMap, HashSet};

use strata_e2e::server::{client, ServerBuilder};

/// Parsed exposition: series (`name{labels}` exactly as printed) -> value, and family -> type.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: BTreeMap<String, f64>,
    pub types: HashMap<String, String>,
}

impl Exposition {
    /// The value of a series, 0 when absent (counters not yet touched).
    pub fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Parses `{a="x",b="y"}` (the part after the name); returns the labels and the rest.
/// Label (name, value) pairs in order.
type Labels = Vec<(String, String)>;

fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let Some(mut rest) = s.strip_prefix('{') else { return Ok((labels, s)) };
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("duplicate label {name}"));
        }
        labels.push((name.to_owned(), value));
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        s => s.parse::<f64>().map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// A strict validator of the text format: HELP/TYPE syntax, one TYPE per family before its
/// samples, families contiguous, names and labels well formed, no duplicate series, counters
/// named `_total` and non-negative, histograms with `le` buckets that are cumulative and end in
/// `+Inf` equal to `_count`.
pub fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut exp = Exposition::default();
    let mut seen_families: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut helped: HashSet<String> = HashSet::new();
    // Histogram state per (family, labels without le): last bucket value, saw +Inf.
    let mut buckets: HashMap<String, (f64, Option<f64>)> = HashMap::new();
    if !text.ends_with('\n') {
        return Err("exposition must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(err("empty line".into()));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap_or("");
            let name = parts.next().ok_or_else(|| err("no metric name".into()))?;
            if !is_metric_name(name) {
                return Err(err(format!("bad metric name {name:?}")));
            }
            match kw {
                "HELP" => {
                    if !helped.insert(name.to_owned()) {
                        return Err(err("second HELP".into()));
                    }
                }
                "TYPE" => {
                    let ty = parts.next().ok_or_else(|| err("TYPE without type".into()))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty) {
                        return Err(err(format!("unknown type {ty}")));
                    }
                    if exp.types.insert(name.to_owned(), ty.to_owned()).is_some() {
                        return Err(err("second TYPE".into()));
                    }
                    if ty == "counter" && !name.ends_with("_total") {
                        return Err(err("counter not named _total".into()));
                    }
                    if !seen_families.insert(name.to_owned()) {
                        return Err(err("TYPE after samples of its family".into()));
                    }
                    current = Some(name.to_owned());
                }
                _ => return Err(err(format!("unknown comment keyword {kw}"))),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(err("comment must be '# HELP' or '# TYPE'".into()));
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = parse_labels(&line[name_end..]).map_err(err)?;
        let mut fields =
            rest.strip_prefix(' ').ok_or_else(|| err("no space before value".into()))?.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|e| err(format!("bad timestamp: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing text".into()));
        }
        // Which family does the sample belong to?
        let family = match &current {
            Some(f)
                if name == f
                    || (exp.types[f] == "histogram"
                        && [format!("{f}_bucket"), format!("{f}_sum"), format!("{f}_count")]
                            .iter()
                            .any(|s| s == name)) =>
            {
                f.clone()
            }
            _ => {
                // An untyped sample: its own family, which must not appear twice.
                if !seen_families.insert(name.to_owned()) && current.as_deref() != Some(name) {
                    return Err(err("family not contiguous".into()));
                }
                current = Some(name.to_owned());
                exp.types.entry(name.to_owned()).or_insert_with(|| "untyped".into());
                name.to_owned()
            }
        };
        let ty = exp.types[&family].clone();
        if ty == "counter" && (value < 0.0 || value.is_nan()) {
            return Err(err("negative counter".into()));
        }
        if ty == "histogram" {
            let key_labels: Vec<String> =
                labels.iter().filter(|(k, _)| k != "le").map(|(k, v)| format!("{k}={v:?}")).collect();
            let key = format!("{family}{{{}}}", key_labels.join(","));
            if name.ends_with("_bucket") {
                let le =
                    labels.iter().find(|(k, _)| k == "le").ok_or_else(|| err("bucket without le".into()))?;
                let bound = parse_value(&le.1).map_err(err)?;
                let st = buckets.entry(key).or_insert((0.0, None));
                if st.1.is_some() {
                    return Err(err("bucket after +Inf".into()));
                }
                if value < st.0 {
                    return Err(err("buckets not cumulative".into()));
                }
                st.0 = value;
                if bound == f64::INFINITY {
                    st.1 = Some(value);
                }
            } else if name.ends_with("_count") {
                match buckets.get(&key) {
                    Some((_, Some(inf))) if *inf == value => {}
                    other => return Err(err(format!("_count does not match the +Inf bucket ({other:?})"))),
                }
            }
        }
        let series = line[..line.len() - rest.len()].to_owned();
        if exp.samples.insert(series, value).is_some() {
            return Err(err("duplicate series".into()));
        }
    }
    Ok(exp)
}

#[test]
fn validator_rejects_malformed_expositions() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\\\"\"} 1\n";
    assert!(parse_exposition(good).is_ok(), "{:?}", parse_exposition(good));
    let bad = [
        "a_total 1",                                      // no final newline
        "# TYPE a counter\na 1\n",                        // counter without _total
        "# TYPE a_total counter\na_total -1\n",           // negative counter
        "# TYPE a_total counter\na_total{k=v} 1\n",       // unquoted label
        "# TYPE a_total counter\na_total 1\na_total 2\n", // duplicate series
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n", // count mismatch
        "# TYPE g gauge\ng 1\n# TYPE g gauge\n",          // second TYPE
        "# TYPE g gauge\ng one\n",                        // bad value
        "g 1\nh 1\ng 2\n",                                // family not contiguous
    ];
    for b in bad {
        assert!(parse_exposition(b).is_err(), "accepted: {b:?}");
    }
}

pub fn scrape(url: &str) -> Exposition {
    let resp = client().get(url).send().expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().unwrap();
    parse_exposition(&text).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"))
}

#[test]
fn metrics_count_known_traffic_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerBuilder::new(dir.path()).start();
    let c = client();
    let before = scrape(&srv.url("/metrics"));

    // 3 points x 2 fields, line protocol v2: 204.
    let body =
        "cpu,host=a usage=1,idle=2 1000\ncpu,host=b usage=3,idle=4 1000\ncpu,host=a usage=5,idle=6 2000\n";
    let r = c.post(srv.url("/api/v2/write?bucket=opsdb&precision=s")).body(body).send().unwrap();
    assert_eq!(r.status(), 204);
    // 1.x: two good lines (1 field each) and one bad: 400 partial write.
    let body = "mem,host=a free=1 3000\nmem,host=a free= 3000\nmem,host=c free=2 3000\n";
    let r = c.post(srv.url("/write?db=opsdb&precision=s")).body(body).send().unwrap();
    assert_eq!(r.status(), 400);
    // JSON: 1 point with 3 fields.
    let body =
        r#"{"measurement":"dev","tags":{"id":"x"},"fields":{"t":1.5,"n":{"int":2},"ok":true},"ts":5000}"#;
    let r = c.post(srv.url("/api/v1/json?db=opsdb&precision=s")).body(body).send().unwrap();
    assert_eq!(r.status(), 204);
    // Unknown route and a database-less write.
    assert_eq!(c.get(srv.url("/nope")).send().unwrap().status(), 404);
    assert_eq!(c.post(srv.url("/api/v2/write")).body("x v=1").send().unwrap().status(), 400);

    let after = scrape(&srv.url("/metrics"));
    let delta = |s: &str| after.get(s) - before.get(s);
    assert_eq!(delta("strata_ingest_points_total"), 6.0);
    assert_eq!(delta("strata_ingest_values_total"), 6.0 + 2.0 + 3.0);
    assert_eq!(delta("strata_ingest_requests_total"), 3.0);
    assert_eq!(delta("strata_ingest_lines_rejected_total{reason=\"parse\"}"), 1.0);
    assert_eq!(delta("strata_ingest_requests_rejected_total{reason=\"bad_request\"}"), 1.0);
    assert_eq!(delta("strata_ingest_database_points_total{protocol=\"line\",db=\"opsdb\"}"), 5.0);
    assert_eq!(delta("strata_ingest_database_points_total{protocol=\"json\",db=\"opsdb\"}"), 1.0);
    assert_eq!(delta("strata_ingest_database_values_total{protocol=\"json\",db=\"opsdb\"}"), 3.0);
    assert_eq!(delta("strata_engine_points_written_total"), 6.0);
    assert_eq!(delta("strata_engine_values_written_total"), 11.0);
    assert_eq!(delta("strata_http_requests_total{route=\"/api/v2/write\",status=\"204\"}"), 1.0);
    assert_eq!(delta("strata_http_requests_total{route=\"/api/v2/write\",status=\"400\"}"), 1.0);
    assert_eq!(delta("strata_http_requests_total{route=\"/write\",status=\"400\"}"), 1.0);
    assert_eq!(delta("strata_http_requests_total{route=\"/api/v1/json\",status=\"204\"}"), 1.0);
    assert_eq!(delta("strata_http_requests_total{route=\"other\",status=\"404\"}"), 1.0);
    // The first scrape is counted once its response is sent.
    assert_eq!(delta("strata_http_requests_total{route=\"/metrics\",status=\"200\"}"), 1.0);
    assert_eq!(delta("strata_http_request_duration_seconds_count{route=\"/api/v2/write\"}"), 2.0);
    assert_eq!(after.types["strata_http_request_duration_seconds"], "histogram");
    // Series: cpu a, cpu b, mem a, mem c, dev x.
    assert_eq!(after.get("strata_engine_series{db=\"opsdb\"}"), 5.0);
    assert_eq!(after.get("strata_engine_databases"), 1.0);
    // No deletes yet: the per-database tombstone gauge is there and zero.
    assert_eq!(after.samples.get("strata_engine_tombstones{db=\"opsdb\"}"), Some(&0.0));
    assert_eq!(after.types["strata_engine_tombstones"], "gauge");
    assert!(after.get("strata_engine_memtable_bytes") > 0.0);
    assert_eq!(after.get(&format!("strata_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))), 1.0);
    assert!(after.get("strata_process_uptime_seconds") > 0.0);
    assert_eq!(after.get("strata_engine_poisoned"), 0.0);
    for family in
        ["strata_backpressure_events_total", "strata_engine_flushes_total", "strata_mqtt_connections_total"]
    {
        assert!(after.types.contains_key(family), "{family} missing");
    }
    for series in [
        "strata_backpressure_events_total{protocol=\"http\",reason=\"write_memory\"}",
        "strata_backpressure_events_total{protocol=\"mqtt\",reason=\"engine_overloaded\"}",
        "strata_backpressure_events_total{protocol=\"any\",reason=\"engine_write_stall\"}",
    ] {
        assert_eq!(after.samples.get(series), Some(&0.0), "{series}");
    }

    // After a restart (close flushes the memtables), segments are reported per partition and
    // their bytes match the files on disk.
    srv.stop();
    let srv = ServerBuilder::new(dir.path()).start();
    let m = scrape(&srv.url("/metrics"));
    let mut files = 0.0;
    let mut bytes = 0.0;
    for (series, v) in &m.samples {
        if series.starts_with("strata_engine_segments{db=\"opsdb\",partition=") {
            files += v;
        } else if series.starts_with("strata_engine_segment_bytes{db=\"opsdb\",partition=") {
            bytes += v;
        }
    }
    let mut on_disk = (0.0, 0.0);
    for part in std::fs::read_dir(dir.path().join("dbs/opsdb")).unwrap() {
        let part = part.unwrap().path();
        if !part.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&part).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "seg") {
                on_disk.0 += 1.0;
                on_disk.1 += f.metadata().unwrap().len() as f64;
            }
        }
    }
    assert!(files >= 1.0, "no segments reported:\n{:?}", m.samples);
    assert_eq!(m.types["strata_engine_flush_seconds_total"], "counter");
    assert_eq!((files, bytes), on_disk);
    assert_eq!(m.get("strata_engine_series{db=\"opsdb\"}"), 5.0);
    srv.stop();
}

/// The cumulative `_bucket` samples of an unlabelled histogram, in printed order, and its count.
fn buckets(m: &Exposition, family: &str) -> (Vec<(f64, f64)>, f64) {
    let prefix = format!("{family}_bucket{{le=\"");
    let mut out: Vec<(f64, f64)> = m
        .samples
        .iter()
        .filter_map(|(series, v)| {
            let le = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, *v))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    (out, m.get(&format!("{family}_count")))
}

#[test]
fn wal_and_query_metrics_count_known_traffic() {
    let dir = tempfile::tempdir().unwrap();
    // Two series per statement at most, so a SELECT over all five series hits the limit.
    let srv = ServerBuilder::new(dir.path()).set("query.max_series", 2).start();
    let c = client();
    let write = |body: String| {
        let r = c.post(srv.url("/api/v2/write?bucket=waldb&precision=s")).body(body).send().unwrap();
        assert_eq!(r.status(), 204);
    };
    // Creates the database, so the counted writes below only append points.
    write("wal,n=0 v=0 1000\n".into());
    let before = scrape(&srv.url("/metrics"));

    // N one-point writes, one after the other, with the default `storage.sync = "always"`: one
    // WAL record each (a point lives in one shard), each acknowledged after an fsync.
    const N: u64 = 5;
    for i in 0..N {
        write(format!("wal,n={i} v={i} {}\n", 2000 + i));
    }
    // M queries: two answer, one does not parse, one names an unknown database, one reads
    // more series than `query.max_series`.
    let query = |q: &str| c.get(srv.url("/query")).query(&[("db", "waldb"), ("q", q)]).send().unwrap();
    let ok = query("SELECT v FROM wal WHERE n = '1'");
    assert_eq!(ok.status(), 200);
    assert!(!ok.text().unwrap().contains("error"));
    assert_eq!(query("SHOW DATABASES").status(), 200);
    assert_eq!(query("SELEC v FROM wal").status(), 400);
    let unknown = query("SELECT v FROM nodb..wal");
    assert_eq!(unknown.status(), 200);
    assert!(unknown.text().unwrap().contains("database not found"));
    let limited = query("SELECT v FROM wal");
    assert_eq!(limited.status(), 200);
    assert!(limited.text().unwrap().contains("max-select-series"));
    const M: f64 = 5.0;

    let after = scrape(&srv.url("/metrics"));
    let delta = |s: &str| after.get(s) - before.get(s);

    // WAL. The start-up counters carry the WAL's prefix; their names until 0.1 stay as
    // aliases with the same values.
    for (name, alias) in [
        ("strata_wal_replayed_records_total", "strata_engine_wal_replayed_records_total"),
        ("strata_wal_truncated_tails_total", "strata_engine_wal_truncated_tails_total"),
    ] {
        assert_eq!(after.types[name], "counter");
        assert_eq!(after.types[alias], "counter");
        assert_eq!(after.get(name), after.get(alias), "{name}");
    }
    assert_eq!(delta("strata_wal_appends_total"), N as f64);
    // Each record: 8 bytes of framing, the database name with its length byte, the point.
    let min_bytes = N as f64 * (8.0 + 1.0 + "waldb".len() as f64 + "wal,n=0".len() as f64);
    assert!(
        delta("strata_wal_appended_bytes_total") >= min_bytes,
        "{}",
        delta("strata_wal_appended_bytes_total")
    );
    // Nothing else was writing: every acknowledged write needed its own write and fsync.
    assert_eq!(delta("strata_wal_writes_total"), N as f64);
    let fsyncs = delta("strata_wal_fsyncs_total");
    assert!((1.0..=N as f64).contains(&fsyncs), "{fsyncs} fsyncs for {N} sequential writes");
    assert_eq!(after.types["strata_wal_fsync_duration_seconds"], "histogram");
    let (wal_buckets, count) = buckets(&after, "strata_wal_fsync_duration_seconds");
    assert_eq!(count, after.get("strata_wal_fsyncs_total"));
    assert!(wal_buckets.len() > 2, "{wal_buckets:?}");
    assert!(wal_buckets.windows(2).all(|w| w[0].1 <= w[1].1), "not cumulative: {wal_buckets:?}");
    assert_eq!(wal_buckets.last().copied(), Some((f64::INFINITY, count)));
    assert_eq!(
        delta("strata_wal_fsync_duration_seconds_count"),
        fsyncs,
        "one histogram observation per fsync"
    );
    assert!(delta("strata_wal_fsync_duration_seconds_sum") > 0.0);

    // Queries: exactly M, each in its class.
    let outcome = |o: &str| delta(&format!("strata_query_requests_total{{outcome=\"{o}\"}}"));
    assert_eq!(outcome("ok"), 2.0);
    assert_eq!(outcome("parse"), 1.0);
    assert_eq!(outcome("invalid"), 1.0);
    assert_eq!(outcome("limit"), 1.0);
    for o in ["bad_request", "auth", "timeout", "internal"] {
        assert_eq!(outcome(o), 0.0, "{o}");
    }
    assert_eq!(delta("strata_query_duration_seconds_count"), M);
    let (query_buckets, count) = buckets(&after, "strata_query_duration_seconds");
    assert!(query_buckets.windows(2).all(|w| w[0].1 <= w[1].1), "not cumulative: {query_buckets:?}");
    assert_eq!(query_buckets.last().copied(), Some((f64::INFINITY, count)));
    // One series and row from the SELECT, one of each from SHOW DATABASES (one database).
    assert_eq!(delta("strata_query_series_returned_total"), 2.0);
    assert_eq!(delta("strata_query_rows_returned_total"), 2.0);
    assert_eq!(delta("strata_http_requests_total{route=\"/query\",status=\"200\"}"), 4.0);
    srv.stop();
}
