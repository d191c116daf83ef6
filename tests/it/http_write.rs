//! Writes over HTTP with every endpoint, gzip, precisions and partial writes; read back from
//! the data directory after a clean stop.

use std::io::Write;

use reqwest::StatusCode;
use serde_json::Value;
use strata_e2e::server::{client, databases, read_measurement, ServerBuilder};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn key(series: &str, field: &str, ts: i64) -> (String, String, i64) {
    (series.to_owned(), field.to_owned(), ts)
}

#[test]
fn http_write_every_endpoint_and_precision() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let c = client();
    let post = |path: &str, body: &[u8]| c.post(server.url(path)).body(body.to_vec()).send().unwrap();

    // 2.x, nanoseconds by default, every field type and escapes.
    let r = post(
        "/api/v2/write?bucket=iot&org=anything",
        b"cpu,host=a,region=eu usage=0.5,count=3i,free=7u,ok=true,msg=\"hi \\\"there\\\"\" 1000\n\
          cpu,host=b usage=1.5e3 1000\r\n\
          # a comment\n\
          \n\
          my\\ room,sensor\\=id=x\\,y temp=21 2000\n",
    );
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    // 1.x, seconds; `db/rp` bucket form on 2.x, milliseconds.
    let r = post("/write?db=iot&rp=autogen&precision=s", b"cpu,host=a usage=2 1700000000\n");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = post("/api/v2/write?bucket=iot/autogen&precision=ms", b"cpu,host=a usage=3 1700000001000\n");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = post("/api/v2/write?bucket=iot&precision=us", b"cpu,host=a usage=4 1700000002000000\n");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = post("/write?db=iot&precision=h", b"cpu,host=a usage=5 472222\n");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Gzip on both line-protocol endpoints.
    let gz = |path: &str, body: &[u8]| {
        c.post(server.url(path)).header("Content-Encoding", "gzip").body(gzip(body)).send().unwrap()
    };
    let r = gz("/api/v2/write?bucket=iot&precision=s", b"cpu,host=gz usage=6 1700000003\n");
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    let r = gz("/write?db=iot&precision=s", b"cpu,host=gz usage=7 1700000004\n");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // JSON: one object, and an array with RFC 3339 and integer timestamps.
    let r = post(
        "/api/v1/json?db=iot&precision=ms",
        br#"{"measurement": "cpu", "tags": {"host": "json"}, "fields": {"usage": 8, "n": {"int": 9}}, "time": 1700000005000}"#,
    );
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    let r = post(
        "/api/v1/json?db=iot",
        br#"[{"measurement": "cpu", "tags": {"host": "json"}, "fields": {"usage": 10}, "time": "2023-11-14T22:13:26Z"},
             {"measurement": "cpu", "tags": {"host": "json"}, "fields": {"on": true}, "ts": 1700000007000000000}]"#,
    );
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    // A line without a timestamp gets the server's clock.
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let r = post("/api/v2/write?bucket=now", b"m v=1\n");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    // An empty body is fine and creates nothing.
    assert_eq!(post("/api/v2/write?bucket=empty", b"").status(), StatusCode::NO_CONTENT);
    server.stop();

    let got = read_measurement(dir.path(), "iot", "cpu");
    let s = 1_000_000_000i64;
    let want = [
        (key("cpu,host=a,region=eu", "usage", 1000), "0.5"),
        (key("cpu,host=a,region=eu", "count", 1000), "3i"),
        (key("cpu,host=a,region=eu", "free", 1000), "7u"),
        (key("cpu,host=a,region=eu", "ok", 1000), "true"),
        (key("cpu,host=a,region=eu", "msg", 1000), "\"hi \\\"there\\\"\""),
        (key("cpu,host=b", "usage", 1000), "1500"),
        (key("cpu,host=a", "usage", 1_700_000_000 * s), "2"),
        (key("cpu,host=a", "usage", 1_700_000_001 * s), "3"),
        (key("cpu,host=a", "usage", 1_700_000_002 * s), "4"),
        (key("cpu,host=a", "usage", 472_222 * 3600 * s), "5"),
        (key("cpu,host=gz", "usage", 1_700_000_003 * s), "6"),
        (key("cpu,host=gz", "usage", 1_700_000_004 * s), "7"),
        (key("cpu,host=json", "usage", 1_700_000_005 * s), "8"),
        (key("cpu,host=json", "n", 1_700_000_005 * s), "9i"),
        (key("cpu,host=json", "usage", 1_700_000_006 * s), "10"),
        (key("cpu,host=json", "on", 1_700_000_007 * s), "true"),
    ];
    for (k, v) in &want {
        assert_eq!(got.get(k).map(String::as_str), Some(*v), "{k:?} in {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
    let room = read_measurement(dir.path(), "iot", "my room");
    assert_eq!(
        room.get(&key("my\\ room,sensor\\=id=x\\,y", "temp", 2000)).map(String::as_str),
        Some("21"),
        "{room:?}"
    );
    let now = read_measurement(dir.path(), "now", "m");
    let (_, _, ts) = now.keys().next().expect("point without timestamp stored");
    assert!((before..=after).contains(ts), "{before} <= {ts} <= {after}");
    assert_eq!(databases(dir.path()), vec!["iot", "now"], "an empty write must not create a database");
}

#[test]
fn http_partial_write_names_each_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("limits.max_errors_reported", 3).start();
    let c = client();
    let body = "m,host=a v=1 1\n\
                m,host=a v= 2\n\
                m,host=a v=3 3\n\
                m,host=a v=\"oops 4\n\
                m,host=a v=5 5\n\
                m,host=a v=6i 6\n\
                bad\n\
                bad again\n\
                m,host=a v=9 9\n";
    let r = c.post(server.url("/write?db=p")).body(body).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().unwrap();
    assert_eq!(v["code"], "invalid");
    assert_eq!(v["points_written"], 4, "{v:#}");
    assert_eq!(v["rejected_total"], 5, "{v:#}");
    let rejected = v["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3, "capped at limits.max_errors_reported: {v:#}");
    assert_eq!(rejected[0]["line"], 2);
    assert_eq!(rejected[0]["reason"], "missing field value");
    assert_eq!(rejected[0]["excerpt"], "m,host=a v= 2");
    assert!(rejected[0]["column"].as_u64().is_some());
    assert_eq!(rejected[1]["line"], 4);
    assert_eq!(rejected[1]["reason"], "unbalanced quotes");
    // Line 6 is well-formed but an integer where the field is a float: refused by the engine,
    // reported in line order among the parse errors.
    assert_eq!(rejected[2]["line"], 6);
    assert_eq!(rejected[2]["kind"], "field_type_conflict", "{v:#}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("partial write") && msg.contains("line 2"), "{msg}");
    assert_eq!(v["error"], v["message"], "1.x clients read `error`");

    // JSON: bad points reported by index.
    let r = c
        .post(server.url("/api/v1/json?db=p"))
        .body(r#"[{"measurement": "j", "fields": {"v": 1}, "time": 1}, {"measurement": "j", "fields": {"v": [1]}}]"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().unwrap();
    assert_eq!(v["rejected"][0]["index"], 1, "{v:#}");
    assert_eq!(v["points_written"], 1);
    // A body that is not JSON at all.
    let r = c.post(server.url("/api/v1/json?db=p")).body("{nope").send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    server.stop();

    let got = read_measurement(dir.path(), "p", "m");
    let ts: Vec<i64> = got.keys().map(|k| k.2).collect();
    assert_eq!(ts, vec![1, 3, 5, 9], "exactly the good lines, no half lines: {got:?}");
    assert_eq!(read_measurement(dir.path(), "p", "j").len(), 1);
}

#[test]
fn http_bad_requests_and_gzip_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("limits.max_body_size", "64KiB").start();
    let c = client();
    let status = |r: reqwest::blocking::Response| r.status();
    // Missing or bad parameters.
    assert_eq!(
        status(c.post(server.url("/api/v2/write")).body("m v=1").send().unwrap()),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(status(c.post(server.url("/write")).body("m v=1").send().unwrap()), StatusCode::BAD_REQUEST);
    let r = c.post(server.url("/write?db=x&precision=fortnight")).body("m v=1").send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("precision"));
    let r = c.post(server.url("/write?db=../etc")).body("m v=1").send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Encodings.
    let r = c.post(server.url("/write?db=x")).header("Content-Encoding", "br").body("m v=1").send().unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r =
        c.post(server.url("/write?db=x")).header("Content-Encoding", "gzip").body("not gzip").send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains("gzip"));
    // A gzip bomb: 1 KiB on the wire, 10 MiB decompressed, limit 64 KiB.
    let bomb = gzip(&vec![b'#'; 10 << 20]);
    assert!(bomb.len() < 64 << 10);
    let r = c.post(server.url("/write?db=x")).header("Content-Encoding", "gzip").body(bomb).send().unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.text().unwrap().contains("decompressed"));
    // Wrong method, unknown route.
    assert_eq!(status(c.get(server.url("/write?db=x")).send().unwrap()), StatusCode::METHOD_NOT_ALLOWED);
    let r = c.get(server.url("/nope")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().unwrap()["code"], "not found");
    server.stop();
    assert!(databases(dir.path()).is_empty(), "no refused request may create a database");
}

#[test]
fn http_liveness_admin_and_query_basics() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("storage.auto_create_databases", false).start();
    let c = client();
    let r = c.get(server.url("/ping")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()["x-influxdb-version"].to_str().unwrap().starts_with("strata-"));
    assert_eq!(r.headers()["x-influxdb-build"], "OSS");
    assert!(!r.headers()["x-request-id"].is_empty());
    assert_eq!(c.head(server.url("/ping")).send().unwrap().status(), StatusCode::NO_CONTENT);
    let v: Value = c.get(server.url("/ping?verbose=true")).send().unwrap().json().unwrap();
    assert!(v["version"].as_str().unwrap().starts_with("strata-"));
    let r = c.get(server.url("/health")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().unwrap()["status"], "pass");
    let r = c.get(server.url("/ready")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().unwrap()["status"], "ready");
    let ids: Vec<String> = (0..2)
        .map(|_| {
            c.get(server.url("/ping")).send().unwrap().headers()["x-request-id"].to_str().unwrap().to_owned()
        })
        .collect();
    assert_ne!(ids[0], ids[1], "request ids are unique");

    // Auto-create is off: 404 until the database is created.
    let r = c.post(server.url("/api/v2/write?bucket=farm")).body("m v=1 1").send().unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c.post(server.url("/api/v1/databases?name=farm")).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(c.post(server.url("/api/v1/databases?name=farm")).send().unwrap().status(), StatusCode::OK);
    let r = c.post(server.url("/api/v1/databases?name=bad/name")).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.post(server.url("/api/v2/buckets")).body(r#"{"name": "barn", "orgID": "x"}"#).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = c.get(server.url("/api/v1/databases")).send().unwrap().json().unwrap();
    assert_eq!(v["databases"], serde_json::json!(["barn", "farm"]));
    let r = c.post(server.url("/api/v2/write?bucket=farm")).body("m v=1 1").send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // /query answers (tests/it/query_http.rs covers it in depth); no `q` is a named 400.
    let r = c.get(server.url("/query?q=SHOW+DATABASES")).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().unwrap();
    assert_eq!(v["results"][0]["series"][0]["values"], serde_json::json!([["barn"], ["farm"]]));
    let r = c.post(server.url("/query")).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().unwrap().contains('q'), "the error names the missing parameter");
    server.stop();
    assert_eq!(read_measurement(dir.path(), "farm", "m").len(), 1);
}
