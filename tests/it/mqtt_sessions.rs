//! MQTT connections and sessions end to end: credentials, the ACL, keep-alive expiry, Last
//! Will, device status, and a persistent session that receives a command published over HTTP
//! while the device was offline.

use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::{ConnectReturnCode, LastWill, Packet, Publish, Subscribe, SubscribeReasonCode};
use rumqttc::QoS;
use serde_json::Value;
use strata_e2e::mqtt::{mqtt_addr, RawClient};
use strata_e2e::server::{client, read_measurement, ServerBuilder, StrataServer};

const ADMIN: &str = "mqtt-admin-token-0123456789";

fn publish(raw: &mut RawClient, topic: &str, pkid: u16, payload: &str) {
    let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
    p.pkid = pkid;
    raw.send(&Packet::Publish(p));
    assert!(matches!(raw.recv(), Some(Packet::PubAck(a)) if a.pkid == pkid), "PUBACK {pkid}");
}

fn device(server: &StrataServer, id: &str, token: Option<&str>) -> Value {
    let mut req = client().get(server.url(&format!("/api/v1/mqtt/devices/{id}")));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Token {t}"));
    }
    let r = req.send().unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

#[test]
fn mqtt_credentials_and_acl() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let addr = mqtt_addr(&server);
    assert_eq!(RawClient::connect(addr).handshake("d1", 30, None), ConnectReturnCode::BadUserNamePassword);
    assert_eq!(
        RawClient::connect(addr).handshake("d1", 30, Some(("d1", "wrong-password"))),
        ConnectReturnCode::BadUserNamePassword
    );
    let mut raw = RawClient::connect(addr);
    assert_eq!(raw.handshake("client-1", 30, Some(("d1", ADMIN))), ConnectReturnCode::Success);
    // The device is the username: its own topics work, another device's are acknowledged
    // and dropped (3.1.1 has no negative PUBACK), and counted.
    publish(&mut raw, "telemetry/d1/temp", 1, "temp v=1 1");
    publish(&mut raw, "telemetry/d2/temp", 2, "temp v=2 2");
    publish(&mut raw, "somewhere/else", 3, "temp v=3 3");
    let mut sub = Subscribe::new("commands/d1/#", QoS::AtLeastOnce);
    sub.add("commands/d2/#".into(), QoS::AtLeastOnce);
    sub.pkid = 4;
    raw.send(&Packet::Subscribe(sub));
    match raw.recv() {
        Some(Packet::SubAck(a)) => assert_eq!(
            a.return_codes,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce), SubscribeReasonCode::Failure]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    raw.send(&Packet::Disconnect);
    // The HTTP side needs the admin token too.
    let r = client().get(server.url("/api/v1/mqtt/devices")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(device(&server, "d1", Some(ADMIN))["client_id"], "client-1");
    let log = server.stop();
    assert!(
        log.contains("PUBLISH refused by the ACL") && log.contains("SUBSCRIBE refused by the ACL"),
        "{log}"
    );
    assert!(!log.contains(ADMIN), "the token must never be logged");
    let temp = read_measurement(dir.path(), "telemetry", "temp");
    assert_eq!(temp.keys().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["temp,device=d1"]);
}

#[test]
fn mqtt_keepalive_expiry_publishes_the_last_will() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let mut raw = RawClient::connect(mqtt_addr(&server));
    let mut c = rumqttc::mqttbytes::v4::Connect::new("d9");
    c.keep_alive = 1;
    c.last_will = Some(LastWill::new("telemetry/d9/status", r#"{"online": false}"#, QoS::AtLeastOnce, false));
    raw.send(&Packet::Connect(c));
    assert!(matches!(raw.recv(), Some(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success));
    assert_eq!(device(&server, "d9", None)["online"], true);
    // Silent past 1.5 x 1 s: the server closes the connection.
    let start = Instant::now();
    assert_eq!(raw.recv(), None);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5), "{waited:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let s = device(&server, "d9", None);
        if s["online"] == false || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["online"], false, "{status}");
    assert_eq!(status["offline_reason"], "keepalive_timeout", "{status}");
    assert_eq!(status["will_published"], true, "{status}");
    server.stop();
    let st = read_measurement(dir.path(), "telemetry", "status");
    assert_eq!(st.len(), 1, "{st:?}");
    let ((key, field, _), value) = st.iter().next().unwrap();
    assert_eq!((key.as_str(), field.as_str(), value.as_str()), ("status,device=d9", "online", "false"));
}

#[test]
fn mqtt_persistent_session_gets_a_command_sent_while_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let persistent = |raw: &mut RawClient| -> bool {
        let mut c = rumqttc::mqttbytes::v4::Connect::new("d5");
        c.clean_session = false;
        c.keep_alive = 30;
        raw.send(&Packet::Connect(c));
        match raw.recv() {
            Some(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success => a.session_present,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    };
    let mut raw = RawClient::connect(addr);
    assert!(!persistent(&mut raw));
    let mut sub = Subscribe::new("commands/d5/#", QoS::AtLeastOnce);
    sub.pkid = 1;
    raw.send(&Packet::Subscribe(sub));
    assert!(matches!(raw.recv(), Some(Packet::SubAck(_))));
    // Online: the command arrives at once.
    let http = client();
    let send = |what: &str| -> Value {
        let r = http
            .post(server.url(&format!("/api/v1/mqtt/commands/d5/{what}?qos=1")))
            .body("now")
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json().unwrap()
    };
    assert_eq!(send("ping")["delivered"], 1);
    match raw.recv() {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic, "commands/d5/ping");
            raw.send(&Packet::PubAck(rumqttc::mqttbytes::v4::PubAck::new(p.pkid)));
        }
        other => panic!("expected the command, got {other:?}"),
    }
    raw.send(&Packet::Disconnect);
    assert_eq!(raw.recv(), None);
    // Offline: kept for the persistent session.
    let deadline = Instant::now() + Duration::from_secs(5);
    let r = loop {
        let r = send("reboot");
        if r["queued"] == 1 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(r["queued"], 1, "{r}");
    let mut raw = RawClient::connect(addr);
    assert!(persistent(&mut raw), "the session must be present");
    match raw.recv() {
        Some(Packet::Publish(p)) if p.topic == "commands/d5/reboot" => {
            assert_eq!(&p.payload[..], b"now");
            raw.send(&Packet::PubAck(rumqttc::mqttbytes::v4::PubAck::new(p.pkid)));
        }
        other => panic!("expected the queued command, got {other:?}"),
    }
    raw.send(&Packet::Disconnect);
    server.stop();
}
