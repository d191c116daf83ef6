//! Interoperability with third-party MQTT clients: Debian's `mosquitto_pub` and Python's
//! `paho-mqtt` publish into Strata, and the data is read back from the data directory.
//!
//! Each test prints a notice and passes when its client is missing (`scripts/test.sh`
//! installs both).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use strata_e2e::mqtt::mqtt_addr;
use strata_e2e::server::{read_measurement, ServerBuilder};

#[test]
fn mqtt_interop_mosquitto_pub() {
    let Ok(out) = Command::new("mosquitto_pub").arg("--help").output() else {
        eprintln!("SKIPPED mqtt_interop_mosquitto_pub: mosquitto_pub is not installed (apt-get install mosquitto-clients)");
        return;
    };
    let _ = out;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let port = addr.port().to_string();
    let run = |args: &[&str]| {
        let out = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv311", "-i", "mosq-1", "-q", "1"])
            .args(args)
            .output()
            .expect("run mosquitto_pub");
        assert!(
            out.status.success(),
            "mosquitto_pub {args:?} failed: {}\n--- server log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
    };
    run(&["-t", "telemetry/mosq-1/x", "-m", "mosq,site=a v=1 1000\nmosq,site=a v=2 2000"]);
    run(&["-t", "telemetry/mosq-1/mosqjson", "-m", r#"{"ts": 3, "v": 3.5}"#]);
    server.stop();
    let got = read_measurement(dir.path(), "telemetry", "mosq");
    let vals: Vec<(String, i64, String)> =
        got.iter().map(|((k, _, t), v)| (k.clone(), *t, v.clone())).collect();
    assert_eq!(
        vals,
        vec![
            ("mosq,device=mosq-1,site=a".into(), 1000, "1".into()),
            ("mosq,device=mosq-1,site=a".into(), 2000, "2".into())
        ]
    );
    let got = read_measurement(dir.path(), "telemetry", "mosqjson");
    assert_eq!(
        got.get(&("mosqjson,device=mosq-1".into(), "v".into(), 3_000_000)).map(String::as_str),
        Some("3.5")
    );
}

#[test]
fn mqtt_interop_python_paho() {
    let Some(python) = std::env::var_os("STRATA_TEST_PYTHON") else {
        eprintln!(
            "SKIPPED mqtt_interop_python_paho: STRATA_TEST_PYTHON is not set (scripts/test.sh sets it)"
        );
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/mqtt_paho.py");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let out = Command::new(&python)
        .arg(&script)
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string(), "--device", "paho-1"])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "mqtt_paho.py failed:\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("script prints JSON");
    server.stop();
    let expected = result["expected"].as_array().unwrap();
    assert_eq!(expected.len(), 15);
    for e in expected {
        let key = e[0].as_str().unwrap().to_owned();
        let measurement = key.split(',').next().unwrap().to_owned();
        let got = read_measurement(dir.path(), "telemetry", &measurement);
        let k = (key, e[1].as_str().unwrap().to_owned(), e[2].as_i64().unwrap());
        assert_eq!(got.get(&k).map(String::as_str), e[3].as_str(), "{k:?}: {got:?}");
    }
}
