//! See `../hostile.rs`. Queries a read token can send to exhaust the server: answers that grow
//! far beyond the data read (`GROUP BY time(1ns)`, `fill(previous)` of long strings), an
//! unbounded `chunk_size`, `SHOW` over large cardinality, and loops that run past the deadline.
//! Each is refused with the limit's error (naming the `query.*` key to raise) while the
//! server's memory stays far below what the answer would take.

use serde_json::Value;
use strata_e2e::server::{client, ServerBuilder, StrataServer};

/// 2023-11-14T22:13:20Z in nanoseconds: the start of every test's data.
const T0: i64 = 1_700_000_000_000_000_000;

fn write(server: &StrataServer, db: &str, body: &str) {
    let r = client()
        .post(server.url(&format!("/write?db={db}&precision=ns")))
        .body(body.to_owned())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
}

fn query(server: &StrataServer, params: &[(&str, &str)]) -> (u16, String) {
    let r = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
        .get(server.url("/query"))
        .query(params)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// The error of the first statement of a (non-chunked) answer.
fn statement_error(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {:.300}", body));
    v["results"][0]["error"].as_str().unwrap_or_else(|| panic!("no error in {:.300}", body)).to_owned()
}

/// Peak resident memory of the server so far, in MiB.
fn peak_mib(server: &StrataServer) -> u64 {
    server.proc_status_kib("VmHWM") / 1024
}

/// The query of the issue: four series over 9 ms grouped by 1 ns with `fill(0)` asks for
/// 36 million rows from 40 points. Refused by `query.max_memory` before the buckets exist;
/// on a server that meters only the rows it read, it grew to gigabytes.
#[test]
fn group_by_1ns_is_refused_by_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("query.max_memory", "64MiB").start();
    let mut body = String::new();
    for i in 0..10 {
        for d in 0..4 {
            body.push_str(&format!("m,d=d{d} v={i} {}\n", T0 + i * 900_000 + d));
        }
    }
    write(&server, "db", &body);
    let q = format!(
        "SELECT mean(v) FROM m WHERE time >= {T0} AND time < {} GROUP BY time(1ns), d fill(0)",
        T0 + 9_000_000
    );
    let (status, body) = query(&server, &[("db", "db"), ("q", &q)]);
    assert_eq!(status, 200, "{body:.300}");
    let e = statement_error(&body);
    assert!(e.contains("memory limit exceeded") && e.contains("query.max_memory"), "{e}");
    let peak = peak_mib(&server);
    assert!(peak < 300, "the server peaked at {peak} MiB for a refused query");
    // The server still answers.
    let (status, body) = query(&server, &[("db", "db"), ("q", "SELECT count(v) FROM m")]);
    assert_eq!(status, 200);
    assert!(body.contains("40"), "{body}");
}

/// `fill(previous)` copies the previous bucket's value into every empty bucket: one 16 KiB
/// string over 20,000 buckets is 320 MiB of copies. Every copy is charged.
#[test]
fn fill_previous_of_long_strings_is_metered() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("query.max_memory", "64MiB").start();
    let long = "x".repeat(16 << 10);
    write(&server, "db", &format!("m s=\"{long}\" {T0}\nm s=\"{long}\" {}\n", T0 + 19_999));
    let q = format!(
        "SELECT last(s) FROM m WHERE time >= {T0} AND time < {} GROUP BY time(1ns) fill(previous)",
        T0 + 20_000
    );
    let (status, body) = query(&server, &[("db", "db"), ("q", &q)]);
    assert_eq!(status, 200, "{body:.300}");
    let e = statement_error(&body);
    assert!(e.contains("memory limit exceeded") && e.contains("query.max_memory"), "{e}");
    let peak = peak_mib(&server);
    assert!(peak < 200, "the server peaked at {peak} MiB for a refused query");
    // A small fill of the same strings still answers.
    let q = format!(
        "SELECT last(s) FROM m WHERE time >= {T0} AND time < {} GROUP BY time(1ns) fill(previous)",
        T0 + 4
    );
    let (status, body) = query(&server, &[("db", "db"), ("q", &q)]);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"][0]["series"][0]["values"].as_array().map(Vec::len), Some(4), "{body:.300}");
}

/// `chunk_size` is capped at 10,000 rows: a client asking for a billion gets chunks of at most
/// 10,000 rows, not the whole series in one line.
#[test]
fn huge_chunk_size_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let mut body = String::new();
    for i in 0..25_000 {
        body.push_str(&format!("m v={i}i {}\n", T0 + i));
    }
    write(&server, "db", &body);
    let (status, text) = query(
        &server,
        &[("db", "db"), ("q", "SELECT v FROM m"), ("chunked", "true"), ("chunk_size", "1000000000")],
    );
    assert_eq!(status, 200);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sizes: Vec<usize> =
        lines.iter().map(|l| l["results"][0]["series"][0]["values"].as_array().map_or(0, Vec::len)).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 25_000, "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 10_000), "chunks of {sizes:?} rows");
}

/// `SHOW SERIES`, `SHOW TAG VALUES` and `SHOW MEASUREMENTS` over thousands of long names are
/// charged to the query memory meter like any answer.
#[test]
fn show_over_large_cardinality_hits_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("query.max_memory", "256KiB").start();
    let pad = "p".repeat(300);
    let mut body = String::new();
    for i in 0..4_000 {
        body.push_str(&format!("m{i:05}{pad},id={i:05}{pad} v=1 {T0}\n"));
    }
    write(&server, "db", &body);
    for q in ["SHOW SERIES", "SHOW MEASUREMENTS", "SHOW TAG VALUES WITH KEY = \"id\""] {
        let (status, body) = query(&server, &[("db", "db"), ("q", q)]);
        assert_eq!(status, 200, "{q}: {body:.300}");
        let e = statement_error(&body);
        assert!(e.contains("memory limit exceeded") && e.contains("query.max_memory"), "{q}: {e}");
    }
    // Narrow enough, the same statements answer.
    let (status, body) = query(&server, &[("db", "db"), ("q", &format!("SHOW SERIES FROM m00001{pad}"))]);
    assert_eq!(status, 200);
    assert!(body.contains("id=00001"), "{body:.300}");
}

/// The deadline is checked inside the loops that build an answer, not only between series: two
/// million `GROUP BY time` buckets of one series stop at a 20 ms `query.timeout`.
#[test]
fn a_long_bucket_walk_hits_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("query.timeout", "20ms").start();
    write(&server, "db", &format!("m v=1 {T0}\nm v=2 {}\n", T0 + 1_999_999));
    let q = format!(
        "SELECT count(v) FROM m WHERE time >= {T0} AND time < {} GROUP BY time(1ns) fill(0)",
        T0 + 2_000_000
    );
    let (status, body) = query(&server, &[("db", "db"), ("q", &q)]);
    assert_eq!(status, 200, "{body:.300}");
    let e = statement_error(&body);
    assert!(e.contains("timeout") && e.contains("query.timeout"), "{e}");
}

/// A materialised answer holds the results of all its statements until it is encoded, then
/// their text: the statements share `query.max_memory`, and the text must fit in it too.
#[test]
fn statements_share_the_memory_limit_and_the_text_must_fit() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("query.max_memory", "3MiB").start();
    let plain = "y".repeat(1024);
    let escaped = "<".repeat(1024);
    let mut body = String::new();
    for i in 0..2_000 {
        body.push_str(&format!("m s=\"{plain}\" {}\n", T0 + i));
    }
    for i in 0..600 {
        body.push_str(&format!("e s=\"{escaped}\" {}\n", T0 + i));
    }
    write(&server, "db", &body);
    // About 2.2 MB held each: one fits, the second does not fit beside it.
    let (status, body) = query(&server, &[("db", "db"), ("q", "SELECT s FROM m; SELECT s FROM m")]);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"][0]["series"][0]["values"].as_array().map(Vec::len), Some(2_000));
    let e = v["results"][1]["error"].as_str().unwrap_or_else(|| panic!("no error in {:.300}", body));
    assert!(e.contains("memory limit exceeded") && e.contains("query.max_memory"), "{e}");
    // 0.7 MB held, but `<` is written `\u003c`: 3.7 MB of JSON.
    let (status, body) = query(&server, &[("db", "db"), ("q", "SELECT s FROM e")]);
    assert_eq!(status, 200);
    let e = statement_error(&body);
    assert!(e.contains("memory limit exceeded") && e.contains("query.max_memory"), "{e}");
}
