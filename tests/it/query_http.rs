//! `/query` end to end: the real binary, the request shapes Grafana's InfluxDB (InfluxQL)
//! data source sends, the Python `influxdb` client, CSV, chunked, auth and errors.

use std::process::Command;

use serde_json::{json, Value};
use strata_e2e::server::{client, ServerBuilder};

const ADMIN: &str = "query-admin-token-0123456789";

fn write(server: &strata_e2e::server::StrataServer, db: &str, body: &str) {
    let r = client()
        .post(server.url(&format!("/write?db={db}&precision=s")))
        .header("Authorization", format!("Token {ADMIN}"))
        .body(body.to_owned())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
}

fn get(server: &strata_e2e::server::StrataServer, params: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .get(server.url("/query"))
        .query(params)
        .header("Authorization", format!("Token {ADMIN}"))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().unwrap()).unwrap())
}

const DATA: &str = "cpu,host=a,region=eu usage=1.5,n=1i 1700000000
cpu,host=a,region=eu usage=2.5,n=2i 1700000010
cpu,host=b,region=us usage=10,n=3i 1700000000
cpu,host=b,region=us usage=20,n=4i 1700000050
";

#[test]
fn query_grafana_request_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    write(&server, "telemetry", DATA);

    // Panel query: $timeFilter in ms, GROUP BY time($__interval) fill(null), epoch=ms.
    let q = "SELECT mean(\"usage\") FROM \"cpu\" WHERE (\"host\" =~ /^(a|b)$/) AND time >= 1700000000000ms and time <= 1700000059999ms GROUP BY time(30s), \"host\" fill(null) ORDER BY time ASC";
    let (status, body) = get(&server, &[("db", "telemetry"), ("q", q), ("epoch", "ms")]);
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"results": [{"statement_id": 0, "series": [
            {"name": "cpu", "tags": {"host": "a"}, "columns": ["time", "mean"], "values": [[1699999980000i64, 1.5], [1700000010000i64, 2.5], [1700000040000i64, null]]},
            {"name": "cpu", "tags": {"host": "b"}, "columns": ["time", "mean"], "values": [[1699999980000i64, 10], [1700000010000i64, null], [1700000040000i64, 20]]}
        ]}]})
    );

    // Variable queries.
    let (_, body) =
        get(&server, &[("db", "telemetry"), ("q", "SHOW TAG VALUES FROM \"cpu\" WITH KEY = \"host\"")]);
    assert_eq!(
        body,
        json!({"results": [{"statement_id": 0, "series": [{"name": "cpu", "columns": ["key", "value"], "values": [["host", "a"], ["host", "b"]]}]}]})
    );
    let (_, body) = get(
        &server,
        &[("db", "telemetry"), ("q", "SHOW MEASUREMENTS LIMIT 100; SHOW FIELD KEYS FROM \"cpu\"")],
    );
    assert_eq!(body["results"][0]["series"][0]["values"], json!([["cpu"]]));
    assert_eq!(body["results"][1]["series"][0]["values"], json!([["n", "integer"], ["usage", "float"]]));

    // Grafana POSTs a form body when configured with the POST method.
    let r = client()
        .post(server.url("/query"))
        .header("Authorization", format!("Token {ADMIN}"))
        .form(&[
            ("db", "telemetry"),
            ("q", "SELECT last(\"usage\") FROM \"cpu\" GROUP BY \"host\""),
            ("epoch", "s"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().unwrap();
    assert_eq!(body["results"][0]["series"][0]["values"], json!([[1700000010i64, 2.5]]));
    assert_eq!(body["results"][0]["series"][1]["values"], json!([[1700000050i64, 20]]));

    // Parse errors are request-level 400s in InfluxDB's words.
    let (status, body) = get(&server, &[("db", "telemetry"), ("q", "SELECT FROM cpu")]);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "error parsing query: found FROM, expected identifier, string, number, bool at line 1, char 8"})
    );
    let (status, body) = get(&server, &[("db", "telemetry")]);
    assert_eq!((status, body), (400, json!({"error": "missing required parameter \"q\""})));
    // Statement errors go into results.
    let (status, body) = get(&server, &[("db", "nope"), ("q", "SELECT usage FROM cpu")]);
    assert_eq!(
        (status, body),
        (200, json!({"results": [{"statement_id": 0, "error": "database not found: nope"}]}))
    );
    // Writes over GET are refused.
    let (status, _) = get(&server, &[("q", "DROP DATABASE telemetry")]);
    assert_eq!(status, 405);

    // CSV.
    let r = client()
        .get(server.url("/query"))
        .query(&[("db", "telemetry"), ("q", "SELECT usage FROM cpu WHERE host = 'a'")])
        .header("Authorization", format!("Token {ADMIN}"))
        .header("Accept", "application/csv")
        .send()
        .unwrap();
    assert_eq!(
        r.text().unwrap(),
        "name,tags,time,usage\ncpu,,1700000000000000000,1.5\ncpu,,1700000010000000000,2.5\n"
    );
    // Chunked: one JSON document per line.
    let r = client()
        .get(server.url("/query"))
        .query(&[
            ("db", "telemetry"),
            ("q", "SELECT usage FROM cpu"),
            ("chunked", "true"),
            ("chunk_size", "2"),
        ])
        .header("Authorization", format!("Token {ADMIN}"))
        .send()
        .unwrap();
    let text = r.text().unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["results"][0]["partial"], json!(true));
    assert_eq!(lines[1]["results"][0].get("partial"), None);

    // Without a token: 401.
    let r = client().get(server.url("/query")).query(&[("q", "SHOW DATABASES")]).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

const PY: &str = r#"
import sys
from influxdb import InfluxDBClient
port = int(sys.argv[1]); token = sys.argv[2]
c = InfluxDBClient(host="127.0.0.1", port=port, username="any", password=token, database="pyq")
c.create_database("pyq")
assert {"name": "pyq"} in c.get_list_database(), c.get_list_database()
c.write_points([{"measurement": "temp", "tags": {"room": "k"}, "time": 1700000000000000000 + i * 1000000000, "fields": {"v": float(i)}} for i in range(10)])
rs = c.query('SELECT mean("v"), max("v") FROM "temp" WHERE time >= 1700000000s AND time < 1700000010s GROUP BY time(5s), "room" fill(none)', epoch="s")
pts = list(rs.get_points(measurement="temp", tags={"room": "k"}))
assert pts == [{"time": 1700000000, "mean": 2, "max": 4}, {"time": 1700000005, "mean": 7, "max": 9}], pts
rs = c.query('SELECT * FROM "temp" ORDER BY time DESC LIMIT 1')
assert list(rs.get_points()) == [{"time": "2023-11-14T22:13:29Z", "room": "k", "v": 9}], list(rs.get_points())
assert c.get_list_measurements() == [{"name": "temp"}]
assert c.get_list_retention_policies("pyq")[0]["name"] == "autogen"
c.query("DROP MEASUREMENT temp", method="POST")
assert c.get_list_measurements() == []
c.drop_database("pyq")
print("ok")
"#;

#[test]
fn query_python_influxdb_client() {
    let Some(python) = std::env::var_os("STRATA_TEST_PYTHON") else {
        strata_e2e::tools::missing(
            "query_python_influxdb_client",
            "STRATA_TEST_PYTHON (a Python with influxdb)",
            strata_e2e::tools::PYTHON_INSTALL,
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let out = Command::new(&python)
        .arg("-c")
        .arg(PY)
        .arg(server.addr.port().to_string())
        .arg(ADMIN)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python influxdb client failed:\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

/// POSTs `q` to /query on `db` with `token`; returns the status and the body.
fn post_query(server: &strata_e2e::server::StrataServer, token: &str, db: &str, q: &str) -> (u16, Value) {
    let r = client()
        .post(server.url("/query"))
        .form(&[("db", db), ("q", q)])
        .header("Authorization", format!("Token {token}"))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().unwrap()).unwrap())
}

#[test]
fn query_select_into_writes_durably_with_write_access() {
    let dir = tempfile::tempdir().unwrap();
    let reader = crate::http_auth::strata_token(dir.path(), &["create", "--db", "telemetry", "--read"]);
    let reader = reader.trim();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    write(&server, "telemetry", DATA);
    let into = "SELECT mean(usage) INTO telemetry..cpu_1m FROM cpu WHERE time >= 1700000000s AND time < 1700000060s GROUP BY time(1m), *";

    // A token that may only read cannot write through INTO; GET cannot write at all.
    let (status, body) = post_query(&server, reader, "telemetry", into);
    assert_eq!(status, 403, "{body}");
    let (status, _) = get(&server, &[("db", "telemetry"), ("q", into)]);
    assert_eq!(status, 405);

    // Host a: one minute (mean 2); host b: two minutes (10, 20); a's empty minute is not written.
    let (status, body) = post_query(&server, ADMIN, "telemetry", into);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"results": [{"statement_id": 0, "series": [
            {"name": "result", "columns": ["time", "written"], "values": [["1970-01-01T00:00:00Z", 3]]}
        ]}]})
    );

    // Durable when answered: the points survive a kill -9.
    server.kill9();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let (status, body) = get(
        &server,
        &[("db", "telemetry"), ("q", "SELECT mean FROM cpu_1m GROUP BY host, region"), ("epoch", "s")],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"results": [{"statement_id": 0, "series": [
            {"name": "cpu_1m", "tags": {"host": "a", "region": "eu"}, "columns": ["time", "mean"], "values": [[1699999980, 2]]},
            {"name": "cpu_1m", "tags": {"host": "b", "region": "us"}, "columns": ["time", "mean"], "values": [[1699999980, 10], [1700000040, 20]]}
        ]}]})
    );
}

/// `big`: `SERIES` series (`s=s00`...) of `ROWS` rows at the same seconds; `n` numbers the
/// rows in the order an ungrouped SELECT returns them (time, then series), `pad` makes rows
/// heavy enough that a stalled client's socket buffers hold only a fraction of the answer.
const SERIES: usize = 50;
const ROWS: usize = 1000;
const PAD: usize = 800;

fn write_big(server: &strata_e2e::server::StrataServer) {
    let pad = "x".repeat(PAD);
    let c = client();
    for i0 in (0..ROWS).step_by(100) {
        let mut body = String::new();
        for i in i0..i0 + 100 {
            for s in 0..SERIES {
                body.push_str(&format!(
                    "big,s=s{s:02} n={}i,pad=\"{pad}\" {}\n",
                    i * SERIES + s,
                    1_700_000_000 + i
                ));
            }
        }
        let r = c.post(server.url("/write?db=big&precision=s")).body(body).send().unwrap();
        assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    }
}

/// Reads a chunked answer line by line as it arrives.
fn chunked_lines(server: &strata_e2e::server::StrataServer, q: &str, chunk_size: usize) -> Vec<Value> {
    use std::io::BufRead;
    let r = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
        .get(server.url("/query"))
        .query(&[("db", "big"), ("q", q), ("chunked", "true"), ("chunk_size", &chunk_size.to_string())])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    std::io::BufReader::new(r).lines().map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect()
}

/// A large chunked answer read incrementally: every row exactly once, in order, in chunks of
/// `chunk_size` rows with InfluxDB's `partial` flags.
#[test]
fn query_chunked_streams_large_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    write_big(&server);

    // Ungrouped: one series of SERIES x ROWS rows, ordered by time then series.
    let lines = chunked_lines(&server, "SELECT n FROM big", 1000);
    assert_eq!(lines.len(), SERIES * ROWS / 1000);
    let mut next = 0i64;
    for (k, line) in lines.iter().enumerate() {
        let last = k + 1 == lines.len();
        let result = &line["results"][0];
        assert_eq!(result["statement_id"], json!(0));
        assert_eq!(result.get("partial"), (!last).then_some(&json!(true)), "line {k}");
        let series = &result["series"][0];
        assert_eq!(series.get("partial"), (!last).then_some(&json!(true)), "line {k}");
        let values = series["values"].as_array().unwrap();
        assert_eq!(values.len(), 1000);
        for row in values {
            assert_eq!(row[1], json!(next), "line {k}");
            next += 1;
        }
    }
    assert_eq!(next, (SERIES * ROWS) as i64);

    // GROUP BY *: series in tag order, each in chunks of 300, 300, 300, 100.
    let lines = chunked_lines(&server, "SELECT n FROM big GROUP BY *", 300);
    assert_eq!(lines.len(), SERIES * 4);
    for (k, line) in lines.iter().enumerate() {
        let (s, piece) = (k / 4, k % 4);
        let result = &line["results"][0];
        assert_eq!(result.get("partial"), (k + 1 < lines.len()).then_some(&json!(true)), "line {k}");
        let series = &result["series"][0];
        assert_eq!(series["tags"], json!({"s": format!("s{s:02}")}), "line {k}");
        assert_eq!(series.get("partial"), (piece < 3).then_some(&json!(true)), "line {k}");
        let values = series["values"].as_array().unwrap();
        assert_eq!(values.len(), if piece < 3 { 300 } else { 100 }, "line {k}");
        for (j, row) in values.iter().enumerate() {
            let i = piece * 300 + j;
            assert_eq!(row[1], json!(i * SERIES + s), "line {k}");
        }
    }
}

/// One counter or labelled sample of `/metrics`.
fn metric(server: &strata_e2e::server::StrataServer, name: &str) -> f64 {
    let text = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Polls `name` until it holds still for half a second (bounded); returns its value.
fn settled(server: &strata_e2e::server::StrataServer, name: &str) -> f64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (mut last, mut still) = (metric(server, name), 0);
    while still < 5 {
        assert!(std::time::Instant::now() < deadline, "{name} did not settle");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let v = metric(server, name);
        still = if v == last { still + 1 } else { 0 };
        last = v;
    }
    last
}

/// A client that stops reading a chunked answer holds the query thread back (the channel to
/// the connection is bounded): far fewer rows are produced than the answer has and the query
/// does not finish; once the client hangs up the query stops and is counted.
#[test]
fn query_chunked_stalled_client_blocks_the_query() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    write_big(&server);
    let rows = "strata_query_rows_returned_total";
    let ok = "strata_query_requests_total{outcome=\"ok\"}";
    let (rows_before, ok_before) = (metric(&server, rows), metric(&server, ok));

    // A raw connection, so nothing reads ahead on the client's side.
    let addr = server.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let q = "SELECT%20n%2C%20pad%20FROM%20big%20GROUP%20BY%20*";
    write!(conn, "GET /query?db=big&chunked=true&chunk_size=100&q={q} HTTP/1.1\r\nHost: {addr}\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(conn);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");

    // The client reads nothing more; the query produces until the channel and the socket
    // buffers are full, then waits.
    let produced = settled(&server, rows) - rows_before;
    let total = (SERIES * ROWS) as f64;
    assert!(produced < total / 2.0, "{produced} of {total} rows produced for a client that reads nothing");
    assert_eq!(metric(&server, ok), ok_before, "the query finished although nobody read it");

    // Hanging up ends the query (at its next line) and it is counted as cancelled, not ok.
    let cancelled = "strata_query_requests_total{outcome=\"cancelled\"}";
    let cancelled_before = metric(&server, cancelled);
    drop(reader);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&server, cancelled) == cancelled_before {
        assert!(std::time::Instant::now() < deadline, "the query did not stop after the client left");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(settled(&server, rows) - rows_before < total, "the query ran to the end");
    assert_eq!(metric(&server, ok), ok_before, "a query the client left was counted as ok");
}

/// The query timeout covers the time a streamed query waits for a stalled client: the query
/// ends as timed out instead of holding its thread.
#[test]
fn query_chunked_stalled_client_times_out() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("query.timeout", "1s").start();
    write_big(&server);
    let timeout = "strata_query_requests_total{outcome=\"timeout\"}";
    let before = metric(&server, timeout);
    let addr = server.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let q = "SELECT%20n%2C%20pad%20FROM%20big%20GROUP%20BY%20*";
    write!(conn, "GET /query?db=big&chunked=true&chunk_size=100&q={q} HTTP/1.1\r\nHost: {addr}\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(conn);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&server, timeout) == before {
        assert!(std::time::Instant::now() < deadline, "the stalled query never timed out");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(reader);
}

/// Trucks in regions, every truck reporting at the same instants: tag sets of several series
/// whose rows tie on time, and a measurement of TRUCKS x TICKS rows.
const TRUCKS: usize = 60;
const TICKS: usize = 1000;

fn write_fleet(server: &strata_e2e::server::StrataServer) {
    let c = client();
    for i0 in (0..TICKS).step_by(100) {
        let mut body = String::new();
        for i in i0..i0 + 100 {
            for t in 0..TRUCKS {
                body.push_str(&format!(
                    "fleet,region=r{},truck=t{t:02} v={}i {}\n",
                    t % 4,
                    (i * 7 + t * 13) % 1000,
                    1_700_000_000 + i
                ));
            }
        }
        let r = c.post(server.url("/write?db=fleet&precision=s")).body(body).send().unwrap();
        assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    }
}

/// `GET /query` on the fleet database with `extra` parameters and an optional `Accept`: the
/// body, read as it arrives.
fn fleet_query(
    server: &strata_e2e::server::StrataServer,
    extra: &[(&str, &str)],
    accept: Option<&str>,
) -> String {
    use std::io::Read;
    let mut req = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
        .get(server.url("/query"))
        .query(&[("db", "fleet"), ("epoch", "ns")])
        .query(extra);
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let mut r = req.send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut body = String::new();
    r.read_to_string(&mut body).unwrap();
    body
}

/// The series of a chunked answer, put back together: consecutive lines of a series marked
/// `partial` are one series.
fn unchunk(text: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let result = &v["results"][0];
        assert!(result.get("error").is_none(), "{line:.300}");
        for s in result["series"].as_array().into_iter().flatten() {
            let mut s = s.clone();
            let more = s.as_object_mut().unwrap().remove("partial").is_some();
            match out.last_mut() {
                Some(prev) if open => {
                    let rows = s["values"].as_array().unwrap().clone();
                    prev["values"].as_array_mut().unwrap().extend(rows);
                }
                _ => out.push(s),
            }
            open = more;
        }
    }
    out
}

/// The CSV a materialised JSON answer stands for (one statement, one set of columns, values
/// without characters CSV quotes).
fn csv_of(series: &[Value]) -> String {
    let mut out = String::new();
    for (k, s) in series.iter().enumerate() {
        if k == 0 {
            out.push_str("name,tags");
            for c in s["columns"].as_array().unwrap() {
                out.push(',');
                out.push_str(c.as_str().unwrap());
            }
            out.push('\n');
        }
        let tags: Vec<String> = s
            .get("tags")
            .and_then(Value::as_object)
            .map(|t| t.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect())
            .unwrap_or_default();
        let tags = if tags.len() > 1 { format!("\"{}\"", tags.join(",")) } else { tags.join(",") };
        for row in s["values"].as_array().unwrap() {
            out.push_str(s["name"].as_str().unwrap());
            out.push(',');
            out.push_str(&tags);
            for v in row.as_array().unwrap() {
                out.push(',');
                match v {
                    Value::String(x) => out.push_str(x),
                    Value::Null => {}
                    other => out.push_str(&other.to_string()),
                }
            }
            out.push('\n');
        }
    }
    out
}

/// Raw selects over many series, streamed (tag sets of 15 trucks merged by time, the whole
/// measurement of 60,000 rows as one series, newest first with LIMIT/OFFSET): the chunked
/// JSON answer puts back together to exactly the non-chunked answer, and the chunked and
/// plain CSV answers are exactly its CSV.
#[test]
fn query_streams_multi_series_raw_selects_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    write_fleet(&server);
    for (q, rows) in [
        ("SELECT v FROM fleet GROUP BY region", TRUCKS * TICKS),
        ("SELECT v, truck FROM fleet", TRUCKS * TICKS),
        ("SELECT v, truck FROM fleet GROUP BY region ORDER BY time DESC LIMIT 5000 OFFSET 7", 4 * 5000),
    ] {
        let whole: Value = serde_json::from_str(&fleet_query(&server, &[("q", q)], None)).unwrap();
        let whole = whole["results"][0]["series"].as_array().unwrap().clone();
        assert_eq!(whole.iter().map(|s| s["values"].as_array().unwrap().len()).sum::<usize>(), rows, "{q}");
        for chunk in ["999", "1024", "10000"] {
            let chunked = fleet_query(&server, &[("q", q), ("chunked", "true"), ("chunk_size", chunk)], None);
            let max = chunk.parse::<usize>().unwrap();
            assert!(chunked.lines().count() >= rows / max, "{q} chunk_size={chunk}");
            assert!(unchunk(&chunked) == whole, "{q} chunk_size={chunk}");
        }
        let csv = csv_of(&whole);
        let chunked_csv = fleet_query(
            &server,
            &[("q", q), ("chunked", "true"), ("chunk_size", "1000")],
            Some("application/csv"),
        );
        assert!(chunked_csv == csv, "{q}: chunked CSV differs:\n{chunked_csv:.300}\n{csv:.300}");
        let plain_csv = fleet_query(&server, &[("q", q)], Some("text/csv"));
        assert!(plain_csv == csv, "{q}: CSV differs");
    }
}

/// Small SELECTs run on the request's task with tighter series and points limits and are run
/// again on the blocking pool when those trip (server/src/http/query.rs `run_small_inline`):
/// queries on either side of the 16-series / 16,384-point line answer completely, and a
/// configured limit tighter than the inline one still fails the query with its own numbers.
#[test]
fn query_small_inline_and_large_on_the_pool_answer_alike() {
    let mut body = String::new();
    for i in 0..20_000 {
        body.push_str(&format!("one v={i}i {}\n", 1_700_000_000 + i));
    }
    for h in 0..20 {
        body.push_str(&format!("many,host=h{h:02} v={h}i 1700000000\n"));
    }
    let (count_one, last_many) = ("SELECT count(v) FROM one", "SELECT last(v) FROM many GROUP BY host");

    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    write(&server, "inl", &body);
    let (status, r) = get(&server, &[("db", "inl"), ("q", count_one)]);
    assert_eq!(status, 200);
    assert_eq!(r["results"][0]["series"][0]["values"][0][1], json!(20_000), "{r}");
    let (_, r) = get(&server, &[("db", "inl"), ("q", "SELECT v FROM one LIMIT 3"), ("epoch", "s")]);
    assert_eq!(
        r["results"][0]["series"][0]["values"],
        json!([[1_700_000_000, 0], [1_700_000_001, 1], [1_700_000_002, 2]])
    );
    let (_, r) = get(&server, &[("db", "inl"), ("q", last_many)]);
    let series = r["results"][0]["series"].as_array().unwrap();
    assert_eq!(series.len(), 20, "{r}");
    assert_eq!(series[19]["tags"], json!({"host": "h19"}));
    assert_eq!(series[19]["values"][0][1], json!(19));
    server.stop();

    let server = ServerBuilder::new(dir.path())
        .set("query.max_points_scanned", "100")
        .set("query.max_series", "5")
        .start();
    let (_, r) = get(&server, &[("db", "inl"), ("q", count_one)]);
    let e = r["results"][0]["error"].as_str().unwrap_or_default();
    assert!(e.starts_with("max-select-point limit exceeded") && e.ends_with("/100) points scanned"), "{r}");
    let (_, r) = get(&server, &[("db", "inl"), ("q", last_many)]);
    let e = r["results"][0]["error"].as_str().unwrap_or_default();
    assert!(e.starts_with("max-select-series limit exceeded") && e.contains("/5)"), "{r}");
    server.stop();
}
