//! `strata export`: measurements, field types and chunked `SELECT ... GROUP BY * LIMIT n
//! OFFSET k` pages through `/query` (a fake server in the 1.x JSON shape), printed as line
//! protocol or CSV; the line protocol then imports into a real server.

use std::process::Command;

use serde_json::json;
use strata_e2e::fake_http::{FakeServer, Request};
use strata_e2e::server::{read_measurement, ServerBuilder};
use strata_e2e::workspace_bin;

fn answer(req: &Request) -> (u16, String) {
    let q = req.param("q").unwrap_or_default();
    let series = |name: &str, tags: serde_json::Value, rows: serde_json::Value| json!({"name": name, "tags": tags, "columns": ["time", "n", "s", "usage"], "values": rows});
    let body = if q == "SHOW MEASUREMENTS" {
        json!({"results": [{"statement_id": 0, "series": [{"name": "measurements", "columns": ["name"], "values": [["cpu"]]}]}]})
    } else if q == "SHOW FIELD KEYS FROM \"cpu\"" {
        json!({"results": [{"statement_id": 0, "series": [{"name": "cpu", "columns": ["fieldKey", "fieldType"],
            "values": [["n", "integer"], ["s", "string"], ["usage", "float"]]}]}]})
    } else if q == "SHOW TAG KEYS FROM \"cpu\"" {
        json!({"results": [{"statement_id": 0, "series": [{"name": "cpu", "columns": ["tagKey"], "values": [["host"]]}]}]})
    } else if q == "SELECT * FROM \"cpu\" GROUP BY * LIMIT 2 OFFSET 0" {
        json!({"results": [{"statement_id": 0, "series": [
            series("cpu", json!({"host": "a"}), json!([[1, 1, "x y", 0.5], [2, 2, null, 3]])),
            series("cpu", json!({"host": "b c"}), json!([[1, null, "q\"uote", 1.25]]))]}]})
    } else if q == "SELECT * FROM \"cpu\" GROUP BY * LIMIT 2 OFFSET 2" {
        json!({"results": [{"statement_id": 0, "series": [
            series("cpu", json!({"host": "a"}), json!([[3, 3, null, null]]))]}]})
    } else {
        json!({"results": [{"statement_id": 0, "error": format!("unexpected query {q}")}]})
    };
    (200, body.to_string())
}

const EXPECTED_LP: &str = "cpu,host=a n=1i,s=\"x y\",usage=0.5 1\n\
                           cpu,host=a n=2i,usage=3.0 2\n\
                           cpu,host=b\\ c s=\"q\\\"uote\",usage=1.25 1\n\
                           cpu,host=a n=3i 3\n";

#[test]
fn export_pages_through_query_and_reimports() {
    let fake = FakeServer::start(answer);
    let work = tempfile::tempdir().unwrap();
    let out_file = work.path().join("out.lp");
    let out = Command::new(workspace_bin("strata"))
        .args(["export", "--url", &fake.url(), "-d", "src", "--chunk", "2", "--quiet", "-o"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), EXPECTED_LP);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 4, "measurements, field keys, two pages: {reqs:?}");
    assert!(reqs.iter().all(|r| r.param("db").as_deref() == Some("src")));
    assert_eq!(reqs[2].param("epoch").as_deref(), Some("ns"));

    // CSV, to stdout.
    let out = Command::new(workspace_bin("strata"))
        .args(["export", "--url", &fake.url(), "-d", "src", "--chunk", "2", "--quiet", "--format", "csv"])
        .output()
        .unwrap();
    // Series with different tag keys are fine here (all have `host`).
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "measurement,time,tag:host,field:n,field:s,field:usage\n\
         cpu,1,a,1i,\"\"\"x y\"\"\",0.5\n\
         cpu,2,a,2i,,3.0\n\
         cpu,1,b c,,\"\"\"q\\\"\"uote\"\"\",1.25\n\
         cpu,3,a,3i,,\n"
    );

    // The exported line protocol imports into a real server unchanged.
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerBuilder::new(dir.path()).start();
    let out = Command::new(workspace_bin("strata"))
        .args(["import", "--url", &srv.url(""), "-d", "dst", "--quiet"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    srv.stop();
    let stored = read_measurement(dir.path(), "dst", "cpu");
    assert_eq!(stored.len(), 8, "{stored:?}");
    assert!(stored.values().any(|v| v == "\"q\\\"uote\""), "{stored:?}");
}

/// A CSV export of a database with several measurements, whose series do not all have the
/// same tag keys, imports back into another database point for point.
#[test]
fn csv_export_of_several_measurements_reimports() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerBuilder::new(dir.path()).start();
    let c = strata_e2e::server::client();
    let lp = "climate,room=kitchen temp=21.5,humidity=48i 1000\n\
              climate,room=cellar,floor=-1 temp=14.0 2000\n\
              climate temp=9.5 3000\n\
              power,meter=m1 watts=312.5,ok=true,note=\"a, \\\"b\\\"\" 1000\n";
    let r = c.post(srv.url("/write?db=src&precision=s")).body(lp).send().unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
    let work = tempfile::tempdir().unwrap();
    let csv = work.path().join("out.csv");
    let out = Command::new(workspace_bin("strata"))
        .args(["export", "--url", &srv.url(""), "-d", "src", "--quiet", "--format", "csv", "-o"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("measurement,")).count(), 2, "{text}");
    let out = Command::new(workspace_bin("strata"))
        .args(["import", "--url", &srv.url(""), "-d", "dst", "--quiet", "--format", "csv"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{text}", String::from_utf8_lossy(&out.stderr));
    let all = |db: &str, m: &str| {
        let body: serde_json::Value = c
            .get(srv.url("/query"))
            .query(&[("db", db), ("q", &format!("SELECT * FROM {m} GROUP BY *")), ("epoch", "s")])
            .send()
            .unwrap()
            .json()
            .unwrap();
        body["results"][0]["series"].clone()
    };
    for m in ["climate", "power"] {
        let (src, dst) = (all("src", m), all("dst", m));
        assert!(src.as_array().is_some_and(|a| !a.is_empty()), "{m}: {src}");
        assert_eq!(src, dst, "{m} differs after the round trip through\n{text}");
    }
    srv.stop();
}
