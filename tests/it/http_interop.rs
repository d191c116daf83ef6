//! Interoperability with the real InfluxDB client libraries for Python: `influxdb` (1.x API)
//! and `influxdb-client` (2.x API) write through Strata, and what they wrote is read back from
//! the data directory and compared.
//!
//! Needs `$STRATA_TEST_PYTHON` (a Python with both packages; `scripts/test.sh` sets it up);
//! without it the test prints a notice and passes, except under `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use strata_e2e::server::{read_measurement, ServerBuilder, Stored};
use strata_e2e::tools;

const ADMIN: &str = "interop-admin-token-0123456789";

#[test]
fn http_interop_python_influx_clients() {
    let Some(python) = std::env::var_os("STRATA_TEST_PYTHON") else {
        tools::missing(
            "http_interop_python_influx_clients",
            "STRATA_TEST_PYTHON (a Python with influxdb and influxdb-client)",
            tools::PYTHON_INSTALL,
        );
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/influx_clients.py");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let out = Command::new(&python)
        .arg(&script)
        .args(["--url", &server.url(""), "--token", ADMIN, "--db1", "v1db", "--db2", "v2db"])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "influx_clients.py failed:\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("script prints JSON");
    server.stop();

    let report = &result["report"];
    assert!(report["v1_ping"].as_str().unwrap().starts_with("strata-"), "{report}");
    assert_eq!(report["v2_ping_plain"], true);
    assert!(report["v2_bad_line_message_gzip"].as_str().unwrap().contains("line 1"), "{report}");

    // (database, measurement) -> what the clients wrote there.
    let mut expected: BTreeMap<(String, String), Stored> = BTreeMap::new();
    for e in result["expected"].as_array().unwrap() {
        let s = |i: usize| e[i].as_str().unwrap().to_owned();
        expected.entry((s(0), s(1))).or_default().insert((s(2), s(3), e[4].as_i64().unwrap()), s(5));
    }
    assert_eq!(expected.len(), 2);
    for ((db, measurement), want) in &expected {
        let got = read_measurement(dir.path(), db, measurement);
        assert_eq!(&got, want, "{db}.{measurement}: stored data differs from what the client wrote");
    }
}
