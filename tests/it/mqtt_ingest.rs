//! MQTT ingest end to end: rumqttc clients publish line protocol and JSON at QoS 0 and 1 to
//! the real binary; what they wrote is read back from the data directory. Bad payloads are
//! dead-lettered (listed and replayed over HTTP) while the connection stays up; QoS 2 is
//! refused by closing the connection.

use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use strata_e2e::mqtt::{mqtt_addr, RawClient};
use strata_e2e::server::{client, read_measurement, ServerBuilder, StrataServer};

pub fn connect(server: &StrataServer, id: &str) -> (Client, Connection) {
    let addr = mqtt_addr(server);
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    Client::new(opts, 100)
}

/// Drives the connection until `n` PUBACKs arrived; panics after 15 s or on an error.
pub fn wait_acks(conn: &mut Connection, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut acks = 0;
    while acks < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {acks} of {n} PUBACKs within 15 s");
        match conn.recv_timeout(left) {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acks += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("connection error after {acks} PUBACKs: {e}"),
            Err(_) => {}
        }
    }
}

#[test]
fn mqtt_publish_qos0_qos1_lines_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let (c, mut conn) = connect(&server, "dev1");
    // Several lines per message; the topic's device becomes a tag, the line's measurement stays.
    c.publish(
        "telemetry/dev1/temp",
        QoS::AtLeastOnce,
        false,
        "temp,room=lab v=1.5 1000\ntemp v=2 2000\ntemp w=3i,ok=true 3000\n",
    )
    .unwrap();
    // JSON, flat shape: the topic names the measurement; ts in milliseconds.
    c.publish(
        "telemetry/dev1/climate",
        QoS::AtLeastOnce,
        false,
        r#"{"ts": 1700000000000, "temperature": 21.5, "tags": {"room": "lab"}}"#,
    )
    .unwrap();
    c.publish("telemetry/dev1/climate", QoS::AtLeastOnce, false, r#"[{"ts": 1700000001000, "temperature": 22}, {"measurement": "other", "fields": {"n": {"int": 7}}, "time": 5}]"#).unwrap();
    c.publish("telemetry/dev1/temp", QoS::AtMostOnce, false, "temp v=4 4000").unwrap();
    // Acknowledged after the QoS 0 message before it, on the same connection: when this
    // PUBACK arrives, the QoS 0 message is stored too.
    c.publish("telemetry/dev1/temp", QoS::AtLeastOnce, false, "temp v=5 5000").unwrap();
    wait_acks(&mut conn, 4);
    c.disconnect().unwrap();
    server.stop();

    let temp = read_measurement(dir.path(), "telemetry", "temp");
    let mut got: Vec<String> = temp.iter().map(|((k, f, t), v)| format!("{k} {f}={v} {t}")).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            "temp,device=dev1 ok=true 3000",
            "temp,device=dev1 v=2 2000",
            "temp,device=dev1 v=4 4000",
            "temp,device=dev1 v=5 5000",
            "temp,device=dev1 w=3i 3000",
            "temp,device=dev1,room=lab v=1.5 1000",
        ],
        "{temp:?}"
    );
    let climate = read_measurement(dir.path(), "telemetry", "climate");
    let mut got: Vec<String> = climate.iter().map(|((k, f, t), v)| format!("{k} {f}={v} {t}")).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            "climate,device=dev1 temperature=22 1700000001000000000",
            "climate,device=dev1,room=lab temperature=21.5 1700000000000000000",
        ]
    );
    let other = read_measurement(dir.path(), "telemetry", "other");
    assert_eq!(
        other.get(&("other,device=dev1".into(), "n".into(), 5_000_000)).map(String::as_str),
        Some("7i")
    );
}

fn dead_letters(server: &StrataServer) -> Value {
    let r = client().get(server.url("/api/v1/mqtt/dead-letters")).send().unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

#[test]
fn mqtt_bad_payloads_are_dead_lettered_and_the_connection_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let (c, mut conn) = connect(&server, "dev2");
    c.publish("telemetry/dev2/temp", QoS::AtLeastOnce, false, "this is not line protocol").unwrap();
    c.publish("telemetry/dev2/temp", QoS::AtLeastOnce, false, "{\"temperature\": ").unwrap();
    // Good and bad lines in one message: the good one is stored, the message dead-lettered.
    c.publish("telemetry/dev2/temp", QoS::AtLeastOnce, false, "temp v=1 1\ntemp v= 2\n").unwrap();
    c.publish("telemetry/dev2/temp", QoS::AtLeastOnce, false, "temp v=3 3").unwrap();
    wait_acks(&mut conn, 4);
    let list = dead_letters(&server);
    assert_eq!(list["total"], 3, "{list}");
    let items = list["dead_letters"].as_array().unwrap();
    assert!(items.iter().all(|d| d["device"] == "dev2" && d["topic"] == "telemetry/dev2/temp"), "{list}");
    assert!(items[0]["reason"].as_str().unwrap().contains("line 1"), "{list}");
    assert!(items[1]["reason"].as_str().unwrap().contains("invalid JSON"), "{list}");
    assert!(items[2]["reason"].as_str().unwrap().contains("1 of 2 rejected"), "{list}");
    assert_eq!(items[2]["payload"], "temp v=1 1\ntemp v= 2\n");
    // The connection is still up: one more message goes through.
    c.publish("telemetry/dev2/temp", QoS::AtLeastOnce, false, "temp v=4 4").unwrap();
    wait_acks(&mut conn, 1);
    c.disconnect().unwrap();
    // A connection still open at shutdown does not hold the server up.
    let mut idle = RawClient::connect(mqtt_addr(&server));
    assert_eq!(idle.handshake("idle", 60, None), rumqttc::mqttbytes::v4::ConnectReturnCode::Success);
    let log = server.stop();
    assert_eq!(idle.recv(), None, "the server closes open connections when it stops");
    assert!(log.contains("MQTT message dead-lettered") && log.contains("device=dev2"), "{log}");
    let temp = read_measurement(dir.path(), "telemetry", "temp");
    let ts: Vec<i64> = temp.keys().map(|k| k.2).collect();
    assert_eq!(ts, vec![1, 3, 4]);
}

#[test]
fn mqtt_dead_letters_replay_once_the_cause_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("storage.auto_create_databases", "false").start();
    let (c, mut conn) = connect(&server, "dev3");
    c.publish("telemetry/dev3/temp", QoS::AtLeastOnce, false, "temp v=1 1\ntemp v=2 2").unwrap();
    wait_acks(&mut conn, 1);
    let list = dead_letters(&server);
    assert_eq!(list["total"], 1, "{list}");
    assert!(list["dead_letters"][0]["reason"].as_str().unwrap().contains("does not exist"), "{list}");
    let http = client();
    let replay = || -> Value {
        let r = http.post(server.url("/api/v1/mqtt/dead-letters/replay")).send().unwrap();
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    };
    let r = replay();
    assert_eq!(r["replayed"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["failed"].as_array().unwrap().len(), 1, "{r}");
    let r = http.post(server.url("/api/v1/databases?name=telemetry")).send().unwrap();
    assert_eq!(r.status(), 201);
    let r = replay();
    assert_eq!(r["replayed"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(dead_letters(&server)["total"], 0);
    c.disconnect().unwrap();
    server.stop();
    assert_eq!(read_measurement(dir.path(), "telemetry", "temp").len(), 2);
}

#[test]
fn mqtt_qos2_is_refused_by_closing_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let mut raw = RawClient::connect(mqtt_addr(&server));
    assert_eq!(raw.handshake("dev4", 30, None), rumqttc::mqttbytes::v4::ConnectReturnCode::Success);
    let mut p = rumqttc::mqttbytes::v4::Publish::new("telemetry/dev4/temp", QoS::AtLeastOnce, "temp v=1 1");
    p.pkid = 1;
    raw.send(&rumqttc::mqttbytes::v4::Packet::Publish(p));
    assert!(matches!(raw.recv(), Some(rumqttc::mqttbytes::v4::Packet::PubAck(a)) if a.pkid == 1));
    let mut p = rumqttc::mqttbytes::v4::Publish::new("telemetry/dev4/temp", QoS::ExactlyOnce, "temp v=2 2");
    p.pkid = 2;
    raw.send(&rumqttc::mqttbytes::v4::Packet::Publish(p));
    assert_eq!(raw.recv(), None, "QoS 2 must close the connection");
    let log = server.stop();
    assert!(log.contains("QoS 2 is not supported"), "{log}");
    let temp = read_measurement(dir.path(), "telemetry", "temp");
    assert_eq!(temp.keys().map(|k| k.2).collect::<Vec<_>>(), vec![1]);
}

/// Past `mqtt.max_connections` a client is told why: CONNACK 3 (server unavailable) for
/// 3.1.1, 0x97 (quota exceeded) for 5.0, as rumqttc reports them; once a connection ends,
/// there is room again.
#[test]
fn mqtt_connections_past_the_limit_get_a_connack_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("mqtt.max_connections", 2).start();
    let addr = mqtt_addr(&server);
    let mut held = Vec::new();
    for id in ["held1", "held2"] {
        let mut raw = RawClient::connect(addr);
        assert_eq!(raw.handshake(id, 30, None), rumqttc::ConnectReturnCode::Success);
        held.push(raw);
    }
    let (_c, mut conn) = connect(&server, "third4");
    match conn.recv_timeout(Duration::from_secs(10)) {
        Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::ServiceUnavailable)
        }
        other => panic!("expected CONNACK 3, got {other:?}"),
    }
    let mut o5 = rumqttc::v5::MqttOptions::new("third5", addr.ip().to_string(), addr.port());
    o5.set_keep_alive(Duration::from_secs(30));
    let (_c5, mut conn5) = rumqttc::v5::Client::new(o5, 10);
    match conn5.recv_timeout(Duration::from_secs(10)) {
        Ok(Err(rumqttc::v5::ConnectionError::ConnectionRefused(code))) => {
            assert_eq!(code, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::QuotaExceeded)
        }
        other => panic!("expected CONNACK 0x97, got {other:?}"),
    }
    let metrics = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("strata_mqtt_connections_refused_total 2"), "{metrics}");
    // A connection ends: the next one is accepted.
    held.pop().unwrap().send(&rumqttc::mqttbytes::v4::Packet::Disconnect);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let code = RawClient::connect(addr).handshake("fourth", 30, None);
        if code == rumqttc::ConnectReturnCode::Success {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a disconnect: {code:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}
