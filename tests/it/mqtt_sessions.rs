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

/// Runs `strata device ...` on the data directory and returns stdout.
pub fn device_cli(data_dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new(strata_e2e::workspace_bin("strata"))
        .arg("device")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "strata device {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn mqtt_device_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let pw1 = device_cli(dir.path(), &["add", "dev-1", "--description", "north hall"]).trim().to_owned();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let addr = mqtt_addr(&server);
    // Registered while the server runs: seen at the device's next CONNECT.
    let pw2 = device_cli(dir.path(), &["add", "dev-2"]).trim().to_owned();
    assert!(pw1.starts_with("strata_dev_") && pw1 != pw2);
    let list = device_cli(dir.path(), &["list", "--json"]);
    assert!(list.contains("dev-1") && list.contains("north hall") && !list.contains(&pw1), "{list}");

    let handshake = |client: &str, user: &str, pass: &str| {
        RawClient::connect(addr).handshake(client, 30, Some((user, pass)))
    };
    assert_eq!(handshake("c1", "dev-1", &pw1), ConnectReturnCode::Success, "own password");
    assert_eq!(handshake("c2", "dev-2", &pw2), ConnectReturnCode::Success, "added while running");
    assert_eq!(handshake("c1", "dev-1", "strata_dev_wrong"), ConnectReturnCode::BadUserNamePassword);
    assert_eq!(handshake("c1", "dev-1", &pw2), ConnectReturnCode::BadUserNamePassword, "dev-2's password");
    assert_eq!(
        handshake("c1", "dev-1", ADMIN),
        ConnectReturnCode::BadUserNamePassword,
        "a registered device needs its own password"
    );
    assert_eq!(RawClient::connect(addr).handshake("dev-1", 30, None), ConnectReturnCode::BadUserNamePassword);
    // An unregistered device still authenticates with a token.
    assert_eq!(handshake("c3", "dev-3", ADMIN), ConnectReturnCode::Success);
    assert_eq!(handshake("c3", "dev-3", &pw1), ConnectReturnCode::BadUserNamePassword);

    // The ACL keys on the registered device: its own topics are stored, another's dropped.
    let mut raw = RawClient::connect(addr);
    assert_eq!(raw.handshake("c1", 30, Some(("dev-1", &pw1))), ConnectReturnCode::Success);
    publish(&mut raw, "telemetry/dev-1/temp", 1, "temp v=1 1");
    publish(&mut raw, "telemetry/dev-2/temp", 2, "temp v=2 2");
    raw.send(&Packet::Disconnect);

    // Removed: refused within the re-check interval (2 s).
    device_cli(dir.path(), &["remove", "dev-1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let code = handshake("c1", "dev-1", &pw1);
        if code == ConnectReturnCode::BadUserNamePassword {
            break;
        }
        assert!(Instant::now() < deadline, "a removed device still connects: {code:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = server.stop();
    assert!(!log.contains(&pw1) && !log.contains(&pw2), "passwords must never be logged");
    let temp = read_measurement(dir.path(), "telemetry", "temp");
    assert_eq!(temp.keys().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["temp,device=dev-1"]);
}

#[test]
fn mqtt_required_device_credentials_refuse_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let pw = device_cli(dir.path(), &["add", "dev-1"]).trim().to_owned();
    let server = ServerBuilder::new(dir.path())
        .arg("--auth")
        .env("STRATA_ADMIN_TOKEN", ADMIN)
        .set("mqtt.require_device_credentials", true)
        .start();
    let addr = mqtt_addr(&server);
    assert_eq!(
        RawClient::connect(addr).handshake("c1", 30, Some(("dev-1", &pw))),
        ConnectReturnCode::Success
    );
    assert_eq!(
        RawClient::connect(addr).handshake("c2", 30, Some(("dev-2", ADMIN))),
        ConnectReturnCode::NotAuthorized
    );
    server.stop();
}

#[test]
fn mqtt_persistent_session_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let connect = |addr| -> (RawClient, bool) {
        let mut raw = RawClient::connect(addr);
        let mut c = rumqttc::mqttbytes::v4::Connect::new("d6");
        c.clean_session = false;
        c.keep_alive = 30;
        raw.send(&Packet::Connect(c));
        match raw.recv() {
            Some(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success => (raw, a.session_present),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    };
    let send = |server: &StrataServer, what: &str| -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = client()
                .post(server.url(&format!("/api/v1/mqtt/commands/d6/{what}?qos=1")))
                .body(what.to_owned())
                .send()
                .unwrap();
            assert_eq!(r.status(), 202);
            let v: Value = r.json().unwrap();
            // The disconnect is noticed asynchronously: until then the command is delivered
            // to the closing connection (and handed back to the session).
            if v["queued"] == 1 || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    let server = ServerBuilder::new(dir.path()).start();
    let (mut raw, present) = connect(mqtt_addr(&server));
    assert!(!present);
    let mut sub = Subscribe::new("commands/d6/#", QoS::AtLeastOnce);
    sub.pkid = 1;
    raw.send(&Packet::Subscribe(sub));
    assert!(matches!(raw.recv(), Some(Packet::SubAck(_))));
    raw.send(&Packet::Disconnect);
    assert_eq!(raw.recv(), None);
    assert_eq!(send(&server, "before")["queued"], 1);
    server.stop();
    assert!(dir.path().join("mqtt/sessions.bin").exists());

    // After the restart the subscription is known (a command published now is queued for the
    // offline device) and the command queued before the restart is still there.
    let server = ServerBuilder::new(dir.path()).start();
    let r = send(&server, "after");
    assert_eq!(r["queued"], 1, "the subscription must survive the restart: {r}");
    let (mut raw, present) = connect(mqtt_addr(&server));
    assert!(present, "the session must be present after a restart");
    let mut got = Vec::new();
    for _ in 0..2 {
        match raw.recv() {
            Some(Packet::Publish(p)) => {
                raw.send(&Packet::PubAck(rumqttc::mqttbytes::v4::PubAck::new(p.pkid)));
                got.push((p.topic.clone(), String::from_utf8(p.payload.to_vec()).unwrap()));
            }
            other => panic!("expected a queued command, got {other:?}"),
        }
    }
    assert_eq!(
        got,
        vec![
            ("commands/d6/before".to_owned(), "before".to_owned()),
            ("commands/d6/after".to_owned(), "after".to_owned())
        ]
    );
    raw.send(&Packet::Disconnect);
    server.stop();
}
