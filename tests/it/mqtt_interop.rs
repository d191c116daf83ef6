//! Interoperability with third-party MQTT software: Debian's `mosquitto_pub` and Python's
//! `paho-mqtt` publish into Strata, and the data is read back from the data directory; bridge
//! mode subscribes to Debian's `mosquitto` broker (started here on an ephemeral loopback port
//! with a generated config, killed by PID) and stores what is published there.
//!
//! Each test prints a notice and passes when its program is missing, except under `CI=true`,
//! where it fails naming the program (`scripts/test.sh` installs them).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use strata_e2e::mqtt::mqtt_addr;
use strata_e2e::server::{read_measurement, ServerBuilder};
use strata_e2e::tools;

/// How to get `mosquitto` and `mosquitto_pub`.
const MOSQUITTO_INSTALL: &str = "apt-get install mosquitto mosquitto-clients";

#[test]
fn mqtt_interop_mosquitto_pub() {
    if Command::new("mosquitto_pub").arg("--help").output().is_err() {
        tools::missing("mqtt_interop_mosquitto_pub", "mosquitto_pub", MOSQUITTO_INSTALL);
        return;
    }
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

/// Runs `tests/python/<script>` (a paho-mqtt client publishing as `device`) against a fresh
/// server, stops the server and returns the script's JSON report with the data directory to
/// read back. `None` (the test is skipped) when `STRATA_TEST_PYTHON` is not set; under
/// `CI=true` that fails instead.
pub(crate) fn run_paho_script(test: &str, script: &str, device: &str) -> Option<(Value, tempfile::TempDir)> {
    let Some(python) = std::env::var_os("STRATA_TEST_PYTHON") else {
        tools::missing(test, "STRATA_TEST_PYTHON (a Python with paho-mqtt)", tools::PYTHON_INSTALL);
        return None;
    };
    let script_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join(script);
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let out = Command::new(&python)
        .arg(&script_path)
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string(), "--device", device])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("script prints JSON");
    server.stop();
    Some((result, dir))
}

#[test]
fn mqtt_interop_python_paho() {
    let Some((result, dir)) = run_paho_script("mqtt_interop_python_paho", "mqtt_paho.py", "paho-1") else {
        return;
    };
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

/// A Mosquitto broker on an ephemeral loopback port, killed (by PID) when dropped; with
/// [`Mosquitto::start_tls`] also a TLS listener on `tls_port`.
struct Mosquitto {
    child: std::process::Child,
    port: u16,
    tls_port: u16,
    dir: tempfile::TempDir,
}

/// The TLS listener of a test broker: its certificates, and whether it requires a client
/// certificate signed by the same CA (mutual TLS).
struct BrokerTls<'a> {
    pki: &'a crate::mqtt_tls::Pki,
    require_certificate: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Mosquitto {
    /// `None` when `/usr/sbin/mosquitto` is not installed.
    fn start() -> Option<Mosquitto> {
        Self::launch(None)
    }

    fn start_tls(tls: BrokerTls<'_>) -> Option<Mosquitto> {
        Self::launch(Some(tls))
    }

    fn launch(tls: Option<BrokerTls<'_>>) -> Option<Mosquitto> {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let dir = tempfile::tempdir().unwrap();
        // Free a port for the broker (it cannot report one it picked itself).
        let port = free_port();
        let log = dir.path().join("mosquitto.log");
        // Run as root, mosquitto drops to the `mosquitto` user before it opens its log.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(&log, "").unwrap();
            std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        // Keep every QoS 1 message queued for a slow or offline subscriber (the default keeps
        // 1000 and drops the rest). The log says which protocol each client spoke.
        let mut conf = format!(
            "log_dest file {}\nlog_type all\nallow_anonymous true\npersistence false\n\
             max_queued_messages 1000000\nlistener {port} 127.0.0.1\n",
            log.display()
        );
        let mut tls_port = 0;
        if let Some(t) = tls {
            tls_port = free_port();
            let write = |name: &str, text: &str| {
                let p = dir.path().join(name);
                std::fs::write(&p, text).unwrap();
                p.display().to_string()
            };
            // The TLS options that follow a `listener` line are that listener's.
            conf += &format!(
                "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {}\n",
                write("ca.pem", &t.pki.ca_pem),
                write("server.pem", &t.pki.server.0),
                write("server.key", &t.pki.server.1),
                t.require_certificate,
            );
        }
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let m = Mosquitto { child, port, tls_port, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for p in [port, tls_port].into_iter().filter(|p| *p != 0) {
            while std::net::TcpStream::connect(("127.0.0.1", p)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "mosquitto did not start on port {p}:\n{}",
                    m.log()
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Some(m)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Strata node bridged to `port`, in `data_dir`, with an optional shared-subscription group
/// and `extra` lines of `[mqtt.bridge]`.
fn bridged_node(
    data_dir: &std::path::Path,
    port: u16,
    client_id: &str,
    group: &str,
    extra: &str,
) -> strata_e2e::server::StrataServer {
    bridged_node_builder(data_dir, port, client_id, group, extra).start()
}

fn bridged_node_builder(
    data_dir: &std::path::Path,
    port: u16,
    client_id: &str,
    group: &str,
    extra: &str,
) -> ServerBuilder {
    let conf = data_dir.with_extension("toml");
    std::fs::write(
        &conf,
        format!(
            "[mqtt.bridge]\nenabled = true\nbroker = \"127.0.0.1:{port}\"\nclient_id = \"{client_id}\"\n\
             topics = \"telemetry/+/+\"\nshare_group = \"{group}\"\n{extra}"
        ),
    )
    .unwrap();
    ServerBuilder::new(data_dir).arg("--config").arg(conf.to_str().unwrap())
}

fn metric(server: &strata_e2e::server::StrataServer, name: &str) -> u64 {
    let text = strata_e2e::server::client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

/// Publishes through the broker with rumqttc at QoS 1 and waits for every PUBACK.
fn publish_via_broker(port: u16, messages: &[(String, String)]) {
    let mut opts = rumqttc::MqttOptions::new("publisher", "127.0.0.1", port);
    opts.set_keep_alive(std::time::Duration::from_secs(30));
    let (client, mut conn) = rumqttc::Client::new(opts, 64);
    let n = messages.len();
    let sender = {
        let messages = messages.to_vec();
        std::thread::spawn(move || {
            for (t, p) in messages {
                client.publish(t, rumqttc::QoS::AtLeastOnce, false, p).unwrap();
            }
            client
        })
    };
    let mut acked = 0;
    for ev in conn.iter() {
        match ev {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                acked += 1;
                if acked == n {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("publisher: {e}"),
        }
    }
    let client = sender.join().unwrap();
    let _ = client.disconnect();
}

/// Publishes probes until every node's bridge has received one (so it has subscribed);
/// returns how many messages the nodes received, once the last probes have arrived.
fn wait_subscribed(port: u16, nodes: &[&strata_e2e::server::StrataServer]) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut probes = 0;
    while nodes.iter().any(|n| metric(n, "strata_mqtt_bridge_messages_total") == 0) {
        assert!(std::time::Instant::now() < deadline, "the bridge did not subscribe");
        publish_via_broker(port, &[("telemetry/probe/probe".into(), format!("probe v={probes} {probes}"))]);
        probes += 1;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    nodes.iter().map(|n| metric(n, "strata_mqtt_bridge_messages_total")).sum()
}

fn wait_total(nodes: &[&strata_e2e::server::StrataServer], want: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let got: u64 = nodes.iter().map(|n| metric(n, "strata_mqtt_bridge_messages_total")).sum();
        if got >= want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the bridges received {got} of {want} messages");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn numbered(n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("telemetry/dev-{}/m", i % 7), format!("m v={i} {}", i + 1))).collect()
}

#[test]
fn mqtt_bridge_stores_what_devices_publish_to_mosquitto() {
    let Some(mosq) = Mosquitto::start() else {
        tools::missing(
            "mqtt_bridge_stores_what_devices_publish_to_mosquitto",
            "mosquitto (the broker)",
            MOSQUITTO_INSTALL,
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = bridged_node(&dir.path().join("a"), mosq.port, "strata-a", "", "");
    stores_what_devices_publish(&mosq, node, &dir.path().join("a"));
    // The client id, protocol level (p2 = 3.1.1), clean session flag (c0) and keep-alive.
    assert!(mosq.log().contains("as strata-a (p2, c0, k30"), "{}", mosq.log());
}

/// Publishes 300 messages and a bad payload through `mosq` to the bridged `node`, stops it
/// and checks that each message was stored once and the bad one dead-lettered.
fn stores_what_devices_publish(
    mosq: &Mosquitto,
    node: strata_e2e::server::StrataServer,
    data: &std::path::Path,
) {
    let received = wait_subscribed(mosq.port, &[&node]);
    let mut messages = numbered(300);
    // A payload that is not line protocol: dead-lettered as by the listener, and acknowledged.
    messages.push(("telemetry/dev-1/bad".into(), "this is not line protocol".into()));
    publish_via_broker(mosq.port, &messages);
    wait_total(&[&node], received + messages.len() as u64);
    // The bridge counts a message when it arrives; its dead letter is stored with the batch
    // write that follows, so wait for it (bounded) rather than race it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let dead = strata_e2e::server::client()
            .get(node.url("/api/v1/mqtt/dead-letters"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        if dead.contains("telemetry/dev-1/bad") && dead.contains("\"total\":1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no dead letter for the bad payload: {dead}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    node.stop();
    let got = read_measurement(data, "telemetry", "m");
    assert_eq!(got.len(), 300, "every message stored once: {} points", got.len());
    assert_eq!(got.get(&("m,device=dev-3".into(), "v".into(), 11)).map(String::as_str), Some("10"));
}

/// `mqtt.bridge.protocol = "5"`: the same as over 3.1.1, and the persistent session survives a
/// restart of the node (clean start off and a Session Expiry Interval: without one the broker
/// would end the session at the DISCONNECT and drop what was published meanwhile).
#[test]
fn mqtt_bridge_speaks_mqtt_5_to_mosquitto() {
    let Some(mosq) = Mosquitto::start() else {
        tools::missing("mqtt_bridge_speaks_mqtt_5_to_mosquitto", "mosquitto (the broker)", MOSQUITTO_INSTALL);
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let v5 = "protocol = \"5\"\n";
    stores_what_devices_publish(&mosq, bridged_node(&data, mosq.port, "strata-a", "", v5), &data);
    // p5: MQTT 5.0; c0: clean start off.
    assert!(mosq.log().contains("as strata-a (p5, c0, k30"), "{}", mosq.log());
    // stores_what_devices_publish stopped the node (a clean DISCONNECT): publish while it is
    // away, then restart it.
    let away: Vec<_> =
        (300..400).map(|i| (format!("telemetry/dev-{}/m", i % 7), format!("m v={i} {}", i + 1))).collect();
    publish_via_broker(mosq.port, &away);
    let node = bridged_node(&data, mosq.port, "strata-a", "", v5);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stored_count(&node) < 400 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 400 points stored after the restart\n--- log ---\n{}",
            stored_count(&node),
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    node.stop();
    assert_eq!(read_measurement(&data, "telemetry", "m").len(), 400);
}

/// The `[mqtt.bridge]` lines of a TLS bridge trusting `ca` (and, given one, presenting a
/// client certificate), with the files written into `dir`.
fn tls_bridge_conf(dir: &std::path::Path, ca: &str, client: Option<&(String, String)>) -> String {
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let mut conf = format!("tls = true\nca = \"{}\"\n", write("bridge-ca.pem", ca));
    if let Some((cert, key)) = client {
        conf += &format!(
            "client_cert = \"{}\"\nclient_key = \"{}\"\n",
            write("bridge-client.pem", cert),
            write("bridge-client.key", key)
        );
    }
    conf
}

/// TLS to the broker, with a client certificate the broker requires (mutual TLS); the server
/// name checked is the broker's host, here an IP address the certificate lists.
#[test]
fn mqtt_bridge_over_mutual_tls() {
    let pki = crate::mqtt_tls::make_pki("strata-bridge");
    let Some(mosq) = Mosquitto::start_tls(BrokerTls { pki: &pki, require_certificate: true }) else {
        tools::missing("mqtt_bridge_over_mutual_tls", "mosquitto (the broker)", MOSQUITTO_INSTALL);
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let conf = tls_bridge_conf(dir.path(), &pki.ca_pem, Some(&pki.client)) + "protocol = \"5\"\n";
    // Devices publish on the plain listener; the bridge subscribes on the TLS one.
    let node = bridged_node(&data, mosq.tls_port, "strata-a", "", &conf);
    let received = wait_subscribed(mosq.port, &[&node]);
    let messages = numbered(100);
    publish_via_broker(mosq.port, &messages);
    wait_total(&[&node], received + 100);
    assert_eq!(metric(&node, "strata_mqtt_bridge_connect_errors_total"), 0, "{}", node.log());
    node.stop();
    assert_eq!(read_measurement(&data, "telemetry", "m").len(), 100);

    // Without the client certificate the broker refuses the handshake.
    let data = dir.path().join("b");
    let conf = tls_bridge_conf(dir.path(), &pki.ca_pem, None);
    let node = bridged_node(&data, mosq.tls_port, "strata-b", "", &conf);
    wait_connect_errors(&node, 2);
    assert_eq!(metric(&node, "strata_mqtt_bridge_connects_total"), 0);
    node.stop();
}

fn wait_connect_errors(node: &strata_e2e::server::StrataServer, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while metric(node, "strata_mqtt_bridge_connect_errors_total") < n {
        assert!(
            std::time::Instant::now() < deadline,
            "no connection errors counted\n--- log ---\n{}",
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A broker whose certificate does not chain to `mqtt.bridge.ca`: no connection, no data,
/// the errors counted and logged, and the node otherwise healthy.
#[test]
fn mqtt_bridge_refuses_a_broker_its_ca_did_not_sign() {
    let pki = crate::mqtt_tls::make_pki("unused");
    let other = crate::mqtt_tls::make_pki("unused");
    let Some(mosq) = Mosquitto::start_tls(BrokerTls { pki: &pki, require_certificate: false }) else {
        tools::missing(
            "mqtt_bridge_refuses_a_broker_its_ca_did_not_sign",
            "mosquitto (the broker)",
            MOSQUITTO_INSTALL,
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = tls_bridge_conf(dir.path(), &other.ca_pem, None);
    let node = bridged_node(&dir.path().join("a"), mosq.tls_port, "strata-a", "", &conf);
    wait_connect_errors(&node, 2);
    publish_via_broker(mosq.port, &numbered(10));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(metric(&node, "strata_mqtt_bridge_connects_total"), 0);
    assert_eq!(metric(&node, "strata_mqtt_bridge_messages_total"), 0);
    let health = strata_e2e::server::client().get(node.url("/health")).send().unwrap();
    assert_eq!(health.status(), 200);
    let log = node.stop();
    assert!(
        log.contains("MQTT bridge: connection to the broker failed")
            && log.contains("invalid peer certificate"),
        "{log}"
    );
}

/// Unusable TLS files stop the server at start, naming the key and the file.
#[test]
fn mqtt_bridge_tls_files_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.pem");
    let conf = format!("tls = true\nca = \"{}\"\n", missing.display());
    let (status, log) =
        bridged_node_builder(&dir.path().join("a"), 1, "strata-a", "", &conf).start_expecting_failure();
    assert!(!status.success());
    assert!(log.contains("mqtt.bridge.ca: cannot read") && log.contains("nowhere.pem"), "{log}");
    let not_pem = dir.path().join("ca.txt");
    std::fs::write(&not_pem, "hello").unwrap();
    let conf = format!("tls = true\nca = \"{}\"\n", not_pem.display());
    let (_, log) =
        bridged_node_builder(&dir.path().join("b"), 1, "strata-a", "", &conf).start_expecting_failure();
    assert!(log.contains("mqtt.bridge.ca: ") && log.contains("ca.txt is not a PEM file"), "{log}");
}

#[test]
fn mqtt_bridge_shared_subscription_splits_the_messages() {
    let Some(mosq) = Mosquitto::start() else {
        tools::missing(
            "mqtt_bridge_shared_subscription_splits_the_messages",
            "mosquitto (the broker)",
            MOSQUITTO_INSTALL,
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = bridged_node(&dir.path().join("a"), mosq.port, "strata-a", "strata", "");
    let b = bridged_node(&dir.path().join("b"), mosq.port, "strata-b", "strata", "");
    let received = wait_subscribed(mosq.port, &[&a, &b]);
    let messages = numbered(400);
    publish_via_broker(mosq.port, &messages);
    wait_total(&[&a, &b], received + 400);
    let (got_a, got_b) =
        (metric(&a, "strata_mqtt_bridge_messages_total"), metric(&b, "strata_mqtt_bridge_messages_total"));
    a.stop();
    b.stop();
    let sa = read_measurement(&dir.path().join("a"), "telemetry", "m");
    let sb = read_measurement(&dir.path().join("b"), "telemetry", "m");
    eprintln!("shared subscription: node a stored {} points, node b {}", sa.len(), sb.len());
    assert!(!sa.is_empty() && !sb.is_empty(), "both nodes get a share: {} and {}", sa.len(), sb.len());
    let mut all: Vec<_> = sa.keys().chain(sb.keys()).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 400, "none lost (a received {got_a}, b {got_b})");
}

/// Points of `m` a running node has stored (InfluxQL count over every device).
fn stored_count(server: &strata_e2e::server::StrataServer) -> u64 {
    let r = strata_e2e::server::client()
        .get(server.url("/query"))
        .query(&[("db", "telemetry"), ("q", "SELECT count(v) FROM m")])
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    v["results"][0]["series"][0]["values"][0][1].as_u64().unwrap_or(0)
}

/// A bridged node killed with SIGKILL while it writes loses nothing: it acknowledged to the
/// broker only what was durable, and the broker redelivers the rest to the restarted node
/// (persistent session).
#[test]
fn mqtt_bridge_kill_9_loses_nothing_the_broker_accepted() {
    let Some(mosq) = Mosquitto::start() else {
        tools::missing(
            "mqtt_bridge_kill_9_loses_nothing_the_broker_accepted",
            "mosquitto (the broker)",
            MOSQUITTO_INSTALL,
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let node = bridged_node(&data, mosq.port, "strata-a", "", "");
    wait_subscribed(mosq.port, &[&node]);
    const N: usize = 3000;
    let port = mosq.port;
    let publisher = std::thread::spawn(move || publish_via_broker(port, &numbered(N)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while metric(&node, "strata_mqtt_bridge_messages_total") < 300 {
        assert!(std::time::Instant::now() < deadline, "the bridge received too little");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    node.kill9();
    publisher.join().unwrap();
    let node = bridged_node(&data, mosq.port, "strata-a", "", "");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let n = stored_count(&node);
        if n >= N as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} of {N} points stored after the restart ({} received)\n--- log ---\n{}",
            metric(&node, "strata_mqtt_bridge_messages_total"),
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    node.stop();
    let got = read_measurement(&data, "telemetry", "m");
    assert_eq!(got.len(), N, "every message the broker accepted is stored, once");
    for i in [0usize, 1234, N - 1] {
        let key = (format!("m,device=dev-{}", i % 7), "v".to_owned(), i as i64 + 1);
        assert_eq!(got.get(&key).map(String::as_str), Some(i.to_string().as_str()), "{key:?}");
    }
}
