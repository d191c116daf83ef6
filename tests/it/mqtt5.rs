//! MQTT 5.0 end to end against the real binary: rumqttc's v5 client (`rumqttc::v5::Client`,
//! the blocking wrapper of `AsyncClient`) for the ordinary paths, and raw 5.0 packets
//! (`strata_e2e::mqtt5::RawClient5`, rumqttc's v5 codec) where reason codes and properties
//! must be seen exactly. 3.1.1 and 5.0 clients share one server; kill -9 durability of 5.0
//! PUBACKs; paho-mqtt with `protocol=MQTTv5`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, DisconnectReasonCode, Filter, LastWill, LastWillProperties, Packet, PubAckReason,
    PublishProperties, Subscribe, SubscribeProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, ConnectionError, Event, MqttOptions, StateError};
use serde_json::Value;
use strata_e2e::mqtt::mqtt_addr;
use strata_e2e::mqtt5::{Connect5, RawClient5};
use strata_e2e::server::{client, read_measurement, ServerBuilder, StrataServer};

const ADMIN: &str = "mqtt5-admin-token-0123456789";

fn opts(server: &StrataServer, id: &str) -> MqttOptions {
    let addr = mqtt_addr(server);
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Drives a v5 connection until `n` PUBACKs arrived; returns the CONNACK seen on the way.
fn wait_acks(conn: &mut rumqttc::v5::Connection, n: usize) -> Option<rumqttc::v5::mqttbytes::v5::ConnAck> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut acks = 0;
    let mut connack = None;
    while acks < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {acks} of {n} PUBACKs within 15 s");
        match conn.recv_timeout(left) {
            Ok(Ok(Event::Incoming(Packet::PubAck(a)))) => {
                assert_eq!(a.reason, PubAckReason::Success, "{a:?}");
                acks += 1;
            }
            Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) => connack = Some(a),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("connection error after {acks} PUBACKs: {e}"),
            Err(_) => {}
        }
    }
    connack
}

fn get(server: &StrataServer, path: &str) -> Value {
    let r = client().get(server.url(path)).send().unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

fn command(server: &StrataServer, path: &str, body: &str) -> Value {
    let r = client().post(server.url(path)).body(body.to_owned()).send().unwrap();
    assert_eq!(r.status(), 202, "{path}");
    r.json().unwrap()
}

fn sorted_lines(dir: &std::path::Path, measurement: &str) -> Vec<String> {
    let m = read_measurement(dir, "telemetry", measurement);
    let mut got: Vec<String> = m.iter().map(|((k, f, t), v)| format!("{k} {f}={v} {t}")).collect();
    got.sort();
    got
}

#[test]
fn mqtt5_publish_qos0_qos1_lines_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let (c, mut conn) = Client::new(opts(&server, "v5dev"), 100);
    c.publish(
        "telemetry/v5dev/temp",
        QoS::AtLeastOnce,
        false,
        "temp,room=lab v=1.5 1000\ntemp v=2 2000\ntemp w=3i 3000\n",
    )
    .unwrap();
    c.publish(
        "telemetry/v5dev/climate",
        QoS::AtLeastOnce,
        false,
        r#"[{"ts": 1700000000000, "temperature": 21.5}, {"ts": 1700000001000, "temperature": 22}]"#,
    )
    .unwrap();
    c.publish("telemetry/v5dev/temp", QoS::AtMostOnce, false, "temp v=4 4000").unwrap();
    // User properties and a content type are accepted and ignored.
    let props = PublishProperties {
        user_properties: vec![("k".into(), "v".into())],
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    c.publish_with_properties("telemetry/v5dev/temp", QoS::AtLeastOnce, false, "temp v=5 5000", props)
        .unwrap();
    let connack = wait_acks(&mut conn, 3).expect("CONNACK");
    let p = connack.properties.expect("CONNACK properties");
    assert_eq!((p.max_qos, p.retain_available, p.receive_max), (Some(1), Some(0), Some(256)));
    assert_eq!(p.max_packet_size, Some(1 << 20));
    assert_eq!(p.topic_alias_max, Some(16));
    c.disconnect().unwrap();
    let metrics = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("strata_mqtt_connections_protocol_total{version=\"5.0\"} 1"), "{metrics}");
    server.stop();
    assert_eq!(
        sorted_lines(dir.path(), "temp"),
        vec![
            "temp,device=v5dev v=2 2000",
            "temp,device=v5dev v=4 4000",
            "temp,device=v5dev v=5 5000",
            "temp,device=v5dev w=3i 3000",
            "temp,device=v5dev,room=lab v=1.5 1000",
        ]
    );
    assert_eq!(
        sorted_lines(dir.path(), "climate"),
        vec![
            "climate,device=v5dev temperature=21.5 1700000000000000000",
            "climate,device=v5dev temperature=22 1700000001000000000",
        ]
    );
}

#[test]
fn mqtt5_bad_payload_dead_lettered_acl_0x87_and_connection_alive() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let mut raw = RawClient5::connect(mqtt_addr(&server));
    let ack = raw.handshake("bad5", Connect5 { keep_alive: 30, clean_start: true, ..Default::default() });
    assert_eq!(ack.code, ConnectReturnCode::Success);
    // A bad payload: dead-lettered and acknowledged 0x00 (it is kept, not refused), with the
    // reason as reason string.
    let a = raw.publish("telemetry/bad5/m", 1, "this is not line protocol", None);
    assert_eq!(a.reason, PubAckReason::Success);
    let why = a.properties.and_then(|p| p.reason_string).expect("a reason string");
    assert!(why.starts_with("dead-lettered"), "{why}");
    // Another device's topic: 0x87, never stored nor dead-lettered.
    let a = raw.publish("telemetry/other/m", 2, "m v=1 1", None);
    assert_eq!(a.reason, PubAckReason::NotAuthorized);
    // The connection is alive: a good message is stored.
    let a = raw.publish("telemetry/bad5/m", 3, "m v=2 2", None);
    assert_eq!(a.reason, PubAckReason::Success);
    assert!(a.properties.is_none(), "{a:?}");
    // SUBACK per filter: own commands granted, another device's 0x87, shared 0x9E, invalid 0x8F.
    raw.send(&Packet::Subscribe(Subscribe::new_many(
        [
            Filter::new("commands/bad5/#", QoS::ExactlyOnce),
            Filter::new("commands/other/#", QoS::AtLeastOnce),
            Filter::new("$share/g/commands/bad5/x", QoS::AtLeastOnce),
            Filter::new("commands/bad5/#/x", QoS::AtLeastOnce),
        ],
        None,
    )));
    match raw.recv() {
        Some(Packet::SubAck(s)) => assert_eq!(
            s.return_codes,
            vec![
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::NotAuthorized,
                SubscribeReasonCode::SharedSubscriptionsNotSupported,
                SubscribeReasonCode::TopicFilterInvalid,
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    raw.disconnect();
    let letters = get(&server, "/api/v1/mqtt/dead-letters");
    assert_eq!(letters["total"], 1, "{letters}");
    assert_eq!(letters["dead_letters"][0]["topic"], "telemetry/bad5/m");
    server.stop();
    assert_eq!(sorted_lines(dir.path(), "m"), vec!["m,device=bad5 v=2 2"]);
}

#[test]
fn mqtt5_wrong_password_and_not_authorized_reason_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let addr = mqtt_addr(&server);
    let login = |u: &str, p: &str| Some((u.to_owned(), p.to_owned()));
    let ack = RawClient5::connect(addr)
        .handshake("p5", Connect5 { login: login("p5", "wrong"), ..Default::default() });
    assert_eq!(ack.code, ConnectReturnCode::BadUserNamePassword);
    let why = ack.properties.and_then(|p| p.reason_string).unwrap_or_default();
    assert_eq!(why, "invalid token");
    let ack = RawClient5::connect(addr).handshake("p5", Connect5::default());
    assert_eq!(ack.code, ConnectReturnCode::BadUserNamePassword);
    // The rumqttc v5 client sees the same code.
    let mut o = opts(&server, "p5");
    o.set_credentials("p5", "nope");
    let (_c, mut conn) = Client::new(o, 10);
    match conn.recv_timeout(Duration::from_secs(10)) {
        Ok(Err(ConnectionError::ConnectionRefused(code))) => {
            assert_eq!(code, ConnectReturnCode::BadUserNamePassword)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The admin token works.
    let ack = RawClient5::connect(addr)
        .handshake("p5", Connect5 { login: login("p5", ADMIN), ..Default::default() });
    assert_eq!(ack.code, ConnectReturnCode::Success);
    server.stop();

    // Devices must be registered: an unknown one is not authorized (0x87).
    let server = ServerBuilder::new(dir.path()).set("mqtt.require_device_credentials", true).start();
    let ack = RawClient5::connect(mqtt_addr(&server)).handshake("stranger", Connect5::default());
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
    server.stop();
}

#[test]
fn mqtt5_keep_alive_timeout_sends_0x8d_and_publishes_the_will() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let mut raw = RawClient5::connect(mqtt_addr(&server));
    let will = LastWill::new("telemetry/ka5/status", "status online=false", QoS::AtMostOnce, false, None);
    let ack = raw.handshake("ka5", Connect5 { keep_alive: 1, will: Some(will), ..Default::default() });
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let t = Instant::now();
    let (code, why) = raw.expect_disconnect();
    assert_eq!(code, DisconnectReasonCode::KeepAliveTimeout, "{why:?}");
    assert!(t.elapsed() >= Duration::from_millis(1400), "{:?}", t.elapsed());
    // The DISCONNECT goes out before the status is updated: wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let s = get(&server, "/api/v1/mqtt/devices/ka5");
        if s["online"] == false || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["offline_reason"], "keepalive_timeout");
    assert_eq!(status["will_published"], true);
    server.stop();
    let lines = sorted_lines(dir.path(), "status");
    assert!(
        lines.len() == 1 && lines[0].starts_with("status,device=ka5 online=false "),
        "the will was stored: {lines:?}"
    );
}

/// `mqtt.max_keep_alive`: a 5.0 client asking for no keep-alive (0) is told the ceiling as
/// Server Keep Alive and, silent, is dropped (0x8D) after 1.5 x the ceiling; a 3.1.1 client
/// with keep-alive 0, which cannot be told, is held to the same ceiling.
#[test]
fn mqtt5_keep_alive_0_gets_server_keep_alive_and_the_ceiling_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("mqtt.max_keep_alive", "1s").start();
    let addr = mqtt_addr(&server);
    let mut raw = RawClient5::connect(addr);
    let ack = raw.handshake("ka0", Connect5 { keep_alive: 0, ..Default::default() });
    let t = Instant::now();
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert_eq!(ack.properties.and_then(|p| p.server_keep_alive), Some(1));
    let (code, why) = raw.expect_disconnect();
    assert_eq!(code, DisconnectReasonCode::KeepAliveTimeout, "{why:?}");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5), "{took:?}");
    // Within the ceiling the client's own keep-alive stands: nothing to tell.
    let mut raw = RawClient5::connect(addr);
    let ack = raw.handshake("ka1", Connect5 { keep_alive: 1, ..Default::default() });
    assert_eq!(ack.properties.and_then(|p| p.server_keep_alive), None);
    drop(raw);

    let mut raw4 = strata_e2e::mqtt::RawClient::connect(addr);
    assert_eq!(raw4.handshake("ka4", 0, None), rumqttc::mqttbytes::v4::ConnectReturnCode::Success);
    let t = Instant::now();
    // `recv` gives `None` when the server closes, or after its 10 s read timeout.
    assert!(raw4.recv().is_none());
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(5), "{took:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
        if metrics.contains("strata_mqtt_keepalive_timeouts_total 2") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

fn will_with_delay(topic: &str, delay: u32) -> LastWill {
    let props = LastWillProperties {
        delay_interval: Some(delay),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
    };
    LastWill::new(topic, "gone v=1i 1", QoS::AtMostOnce, false, Some(props))
}

#[test]
fn mqtt5_will_delay_publishes_late_and_a_reconnect_cancels_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    // w1 drops its connection and stays away: its will goes out after 2 s, not before.
    let mut w1 = RawClient5::connect(addr);
    let c = Connect5 {
        keep_alive: 30,
        session_expiry: Some(60),
        will: Some(will_with_delay("telemetry/w1/gone", 2)),
        ..Default::default()
    };
    assert_eq!(w1.handshake("w1", c).code, ConnectReturnCode::Success);
    // w2 drops too but comes back within the delay: no will.
    let mut w2 = RawClient5::connect(addr);
    let c = Connect5 {
        keep_alive: 30,
        session_expiry: Some(60),
        will: Some(will_with_delay("telemetry/w2/gone", 2)),
        ..Default::default()
    };
    assert_eq!(w2.handshake("w2", c).code, ConnectReturnCode::Success);
    drop(w1);
    drop(w2);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(get(&server, "/api/v1/mqtt/devices/w1")["will_published"], false, "too early");
    let mut back = RawClient5::connect(addr);
    let ack =
        back.handshake("w2", Connect5 { keep_alive: 30, session_expiry: Some(60), ..Default::default() });
    assert!(ack.session_present);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&server, "/api/v1/mqtt/devices/w1")["will_published"] != true {
        assert!(Instant::now() < deadline, "the delayed will was not published");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2000));
    back.disconnect();
    server.stop();
    assert_eq!(sorted_lines(dir.path(), "gone"), vec!["gone,device=w1 v=1i 1"], "w2's will was cancelled");
}

/// The devices whose `gone` will is stored, asked over HTTP (`/query`) while the server runs.
fn wills_stored(server: &StrataServer) -> Vec<String> {
    let r = client()
        .get(server.url("/query"))
        .query(&[("db", "telemetry"), ("q", "SHOW TAG VALUES FROM \"gone\" WITH KEY = \"device\"")])
        .send()
        .unwrap();
    let body: Value = r.json().unwrap();
    let values = body["results"][0]["series"][0]["values"].as_array().cloned().unwrap_or_default();
    values.iter().filter_map(|v| v[1].as_str().map(str::to_owned)).collect()
}

/// Delayed wills pending at a graceful shutdown are saved in the sessions file: after the
/// restart one is published when its delay (counted from the disconnect, wall clock) runs
/// out; the other's client reconnects after the restart, within the delay, which cancels it
/// (even though it leaves again before the delay is over).
#[test]
fn mqtt5_delayed_will_survives_a_restart_unless_the_client_reconnects() {
    const DELAY: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let c = |id: &str| Connect5 {
        keep_alive: 30,
        session_expiry: Some(60),
        will: Some(will_with_delay(&format!("telemetry/{id}/gone"), DELAY as u32)),
        ..Default::default()
    };
    let mut clients = Vec::new();
    for id in ["rw1", "rw2"] {
        let mut raw = RawClient5::connect(addr);
        assert_eq!(raw.handshake(id, c(id)).code, ConnectReturnCode::Success);
        clients.push(raw);
    }
    // Both connections drop (no DISCONNECT): their wills are delayed.
    drop(clients);
    let dropped = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    for id in ["rw1", "rw2"] {
        while get(&server, &format!("/api/v1/mqtt/devices/{id}"))["online"] != false {
            assert!(Instant::now() < deadline, "{id} still online");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    server.stop();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let mut back = RawClient5::connect(addr);
    let ack =
        back.handshake("rw2", Connect5 { keep_alive: 30, session_expiry: Some(60), ..Default::default() });
    assert!(ack.session_present);
    // Gone again before the delay ran out, cleanly: the reconnect alone cancelled the will.
    back.disconnect();
    drop(back);
    if dropped.elapsed() < Duration::from_secs(DELAY - 1) {
        assert!(wills_stored(&server).is_empty(), "published before its delay ran out");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while wills_stored(&server).is_empty() {
        assert!(Instant::now() < deadline, "the saved will was not published after the restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = dropped.elapsed();
    assert!(took >= Duration::from_millis(DELAY * 1000 - 100), "published after {took:?}");
    // Well past rw2's delay: its will stays cancelled.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(wills_stored(&server), vec!["rw1"]);
    server.stop();
    assert_eq!(sorted_lines(dir.path(), "gone"), vec!["gone,device=rw1 v=1i 1"]);
}

#[test]
fn mqtt5_persistent_session_gets_a_command_after_reconnect_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let mut raw = RawClient5::connect(mqtt_addr(&server));
    let c = Connect5 { keep_alive: 30, clean_start: true, session_expiry: Some(300), ..Default::default() };
    let ack = raw.handshake("cmd5", c);
    assert!(!ack.session_present);
    raw.send(&Packet::Subscribe(Subscribe::new(Filter::new("commands/cmd5/#", QoS::AtLeastOnce), None)));
    assert!(matches!(raw.recv(), Some(Packet::SubAck(_))));
    raw.disconnect();
    drop(raw);
    std::thread::sleep(Duration::from_millis(200));
    // Offline: queued, with and without an expiry; one expires before the device is back.
    assert_eq!(command(&server, "/api/v1/mqtt/commands/cmd5/reboot?qos=1", "now")["queued"], 1);
    assert_eq!(command(&server, "/api/v1/mqtt/commands/cmd5/short?qos=1&expiry=1s", "too late")["queued"], 1);
    assert_eq!(command(&server, "/api/v1/mqtt/commands/cmd5/long?qos=1&expiry=1h", "in time")["queued"], 1);
    // A restart in between: the session and its queue come back from the sessions file.
    server.stop();
    std::thread::sleep(Duration::from_millis(1200));
    let server = ServerBuilder::new(dir.path()).start();
    let mut raw = RawClient5::connect(mqtt_addr(&server));
    let c = Connect5 { keep_alive: 30, clean_start: false, session_expiry: Some(300), ..Default::default() };
    assert!(raw.handshake("cmd5", c).session_present);
    let mut got = Vec::new();
    while got.len() < 2 {
        match raw.recv() {
            Some(Packet::Publish(p)) => {
                raw.puback(p.pkid);
                let expiry = p.properties.and_then(|p| p.message_expiry_interval);
                got.push((String::from_utf8(p.topic.to_vec()).unwrap(), expiry));
            }
            other => panic!("expected a command, got {other:?}"),
        }
    }
    assert_eq!(got[0], ("commands/cmd5/reboot".to_owned(), None));
    assert_eq!(got[1].0, "commands/cmd5/long");
    assert!(got[1].1.is_some_and(|s| s > 3000 && s <= 3600), "the remaining expiry: {got:?}");
    // The expired one never comes.
    raw.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    assert!(raw.recv().is_none(), "an expired command was delivered");
    server.stop();
}

#[test]
fn mqtt5_session_expiry_ends_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let c = || Connect5 { keep_alive: 30, session_expiry: Some(1), ..Default::default() };
    let mut raw = RawClient5::connect(addr);
    raw.handshake("exp5", c());
    raw.disconnect();
    drop(raw);
    // Within the expiry: resumed.
    std::thread::sleep(Duration::from_millis(200));
    let mut raw = RawClient5::connect(addr);
    assert!(raw.handshake("exp5", c()).session_present);
    raw.disconnect();
    drop(raw);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!RawClient5::connect(addr).handshake("exp5", c()).session_present, "expired");
    // Expiry 0 (the 5.0 default): the session ends with the connection.
    let mut raw = RawClient5::connect(addr);
    raw.handshake("zero5", Connect5 { keep_alive: 30, ..Default::default() });
    raw.disconnect();
    drop(raw);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!RawClient5::connect(addr).handshake("zero5", Connect5::default()).session_present);
    // An empty client id gets one assigned, and can resume with it.
    let mut raw = RawClient5::connect(addr);
    let ack = raw.handshake("", Connect5 { keep_alive: 30, session_expiry: Some(60), ..Default::default() });
    let id = ack.properties.and_then(|p| p.assigned_client_identifier).expect("assigned id");
    raw.disconnect();
    drop(raw);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        RawClient5::connect(addr)
            .handshake(&id, Connect5 { session_expiry: Some(60), ..Default::default() })
            .session_present
    );
    server.stop();
}

#[test]
fn mqtt5_topic_alias_packet_too_large_and_qos2() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("mqtt.max_packet_size", "1KiB").start();
    let addr = mqtt_addr(&server);
    let alias = |a| Some(PublishProperties { topic_alias: Some(a), ..Default::default() });
    let mut raw = RawClient5::connect(addr);
    let ack = raw.handshake("al5", Connect5 { keep_alive: 30, ..Default::default() });
    assert_eq!(ack.properties.and_then(|p| p.max_packet_size), Some(1024));
    assert_eq!(raw.publish("telemetry/al5/m", 1, "m v=1 1", alias(2)).reason, PubAckReason::Success);
    assert_eq!(raw.publish("", 2, "m v=2 2", alias(2)).reason, PubAckReason::Success);
    // An alias above our Topic Alias Maximum: DISCONNECT 0x94.
    raw.send_publish("telemetry/al5/m", QoS::AtLeastOnce, 3, "m v=3 3", alias(17));
    assert_eq!(raw.expect_disconnect().0, DisconnectReasonCode::TopicAliasInvalid);

    // Too large: 0x95, from the fixed header.
    let mut raw = RawClient5::connect(addr);
    raw.handshake("big5", Connect5 { keep_alive: 30, ..Default::default() });
    raw.send_publish("telemetry/big5/m", QoS::AtLeastOnce, 1, &"m v=1 1\n".repeat(300), None);
    assert_eq!(raw.expect_disconnect().0, DisconnectReasonCode::PacketTooLarge);

    // QoS 2: the QoS 1 message before it is stored and acknowledged, then 0x9B.
    let mut raw = RawClient5::connect(addr);
    raw.handshake("q25", Connect5 { keep_alive: 30, ..Default::default() });
    raw.send_publish("telemetry/q25/m", QoS::AtLeastOnce, 1, "m v=4 4", None);
    raw.send_publish("telemetry/q25/m", QoS::ExactlyOnce, 2, "m v=5 5", None);
    assert!(matches!(raw.recv(), Some(Packet::PubAck(a)) if a.pkid == 1));
    assert_eq!(raw.expect_disconnect().0, DisconnectReasonCode::QoSNotSupported);

    // Subscription identifiers are not available: 0xA1.
    let mut raw = RawClient5::connect(addr);
    raw.handshake("sid5", Connect5 { keep_alive: 30, ..Default::default() });
    let props = SubscribeProperties { id: Some(7), user_properties: Vec::new() };
    raw.send(&Packet::Subscribe(Subscribe::new(
        Filter::new("commands/sid5/#", QoS::AtLeastOnce),
        Some(props),
    )));
    assert_eq!(raw.expect_disconnect().0, DisconnectReasonCode::SubscriptionIdentifiersNotSupported);

    // A command larger than the client's Maximum Packet Size is not sent (dropped).
    let mut raw = RawClient5::connect(addr);
    raw.handshake("small5", Connect5 { keep_alive: 30, max_packet_size: Some(64), ..Default::default() });
    raw.send(&Packet::Subscribe(Subscribe::new(Filter::new("commands/small5/#", QoS::AtLeastOnce), None)));
    assert!(matches!(raw.recv(), Some(Packet::SubAck(_))));
    assert_eq!(command(&server, "/api/v1/mqtt/commands/small5/x?qos=1", &"x".repeat(100))["delivered"], 1);
    assert_eq!(command(&server, "/api/v1/mqtt/commands/small5/y?qos=1", "fits")["delivered"], 1);
    match raw.recv() {
        Some(Packet::Publish(p)) => assert_eq!(&p.topic[..], b"commands/small5/y"),
        other => panic!("expected the small command, got {other:?}"),
    }
    raw.disconnect();
    let metrics = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    server.stop();
    assert!(metrics.contains("strata_mqtt_commands_dropped_total 1"), "{metrics}");
    assert_eq!(
        sorted_lines(dir.path(), "m"),
        vec!["m,device=al5 v=1 1", "m,device=al5 v=2 2", "m,device=q25 v=4 4"]
    );
}

/// Commands in flight to a 5.0 device are bounded by its Receive Maximum; and a protocol
/// level above 5 gets the 5.0 CONNACK 0x84.
#[test]
fn mqtt5_receive_maximum_and_unsupported_level() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let mut raw = RawClient5::connect(addr);
    raw.handshake("rm5", Connect5 { keep_alive: 30, receive_maximum: Some(1), ..Default::default() });
    raw.send(&Packet::Subscribe(Subscribe::new(Filter::new("commands/rm5/#", QoS::AtLeastOnce), None)));
    assert!(matches!(raw.recv(), Some(Packet::SubAck(_))));
    for i in 0..3 {
        assert_eq!(command(&server, &format!("/api/v1/mqtt/commands/rm5/c{i}?qos=1"), "go")["delivered"], 1);
    }
    raw.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    for i in 0..3 {
        let p = match raw.recv() {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected command {i}, got {other:?}"),
        };
        assert_eq!(p.topic, format!("commands/rm5/c{i}").as_bytes());
        // Nothing more until this one is acknowledged.
        assert!(raw.recv().is_none(), "a second command in flight beyond Receive Maximum 1");
        raw.puback(p.pkid);
    }
    raw.disconnect();

    let mut bytes = bytes::BytesMut::new();
    rumqttc::v5::mqttbytes::v5::Connect {
        keep_alive: 5,
        client_id: "x".into(),
        clean_start: true,
        properties: None,
    }
    .write(&None, &None, &mut bytes)
    .unwrap();
    bytes[8] = 6; // protocol level 6
    let mut raw = RawClient5::connect(addr);
    raw.send_bytes(&bytes).unwrap();
    match raw.recv() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::UnsupportedProtocolVersion),
        other => panic!("expected CONNACK 0x84, got {other:?}"),
    }
    assert!(raw.recv().is_none(), "closed after the refusal");
    server.stop();
}

#[test]
fn mqtt5_takeover_0x8e_and_shutdown_0x8b() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let mut first = RawClient5::connect(addr);
    // A delayed will: the takeover is a reconnect within the delay, so it is cancelled.
    let will = Some(will_with_delay("telemetry/same5/gone", 1));
    first.handshake(
        "same5",
        Connect5 { keep_alive: 30, session_expiry: Some(60), will, ..Default::default() },
    );
    let mut second = RawClient5::connect(addr);
    second.handshake("same5", Connect5 { keep_alive: 30, ..Default::default() });
    assert_eq!(first.expect_disconnect().0, DisconnectReasonCode::SessionTakenOver);
    std::thread::sleep(Duration::from_millis(1500));
    server.sigterm();
    assert_eq!(second.expect_disconnect().0, DisconnectReasonCode::ServerShuttingDown);
    let (status, _) = server.wait_exit();
    assert!(status.success());
    assert!(read_measurement(dir.path(), "telemetry", "gone").is_empty(), "the will was not cancelled");
}

#[test]
fn mqtt5_and_mqtt311_clients_share_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let (c5, mut conn5) = Client::new(opts(&server, "mix5"), 100);
    let mut o4 = rumqttc::MqttOptions::new("mix4", addr.ip().to_string(), addr.port());
    o4.set_keep_alive(Duration::from_secs(30));
    let (c4, mut conn4) = rumqttc::Client::new(o4, 100);
    for i in 0..20 {
        c5.publish("telemetry/mix5/mix", QoS::AtLeastOnce, false, format!("mix v={i}i {i}")).unwrap();
        c4.publish("telemetry/mix4/mix", rumqttc::QoS::AtLeastOnce, false, format!("mix v={i}i {i}"))
            .unwrap();
    }
    let t4 = std::thread::spawn(move || {
        crate::mqtt_ingest::wait_acks(&mut conn4, 20);
        c4.disconnect().unwrap();
    });
    wait_acks(&mut conn5, 20);
    c5.disconnect().unwrap();
    t4.join().unwrap();
    let metrics = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("strata_mqtt_connections_protocol_total{version=\"3.1.1\"} 1"), "{metrics}");
    assert!(metrics.contains("strata_mqtt_connections_protocol_total{version=\"5.0\"} 1"), "{metrics}");
    server.stop();
    let m = read_measurement(dir.path(), "telemetry", "mix");
    assert_eq!(m.len(), 40, "{m:?}");
}

/// The 5.0 twin of `mqtt_crash_acknowledged_messages_survive_kill_9`: every point a 5.0
/// PUBACK (code 0x00) acknowledged is there after kill -9 and a restart.
#[test]
fn mqtt5_crash_acknowledged_messages_survive_kill_9() {
    const LINES: u64 = 50;
    let payload = |msg: u64| -> String {
        (0..LINES).map(|i| format!("crash5 v={}i {}\n", msg * 1000 + i, msg * LINES + i)).collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).arg("--sync").arg("always").start();
    let addr = mqtt_addr(&server);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let dead = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, dead) = (acked.clone(), dead.clone());
        std::thread::spawn(move || {
            let mut raw = RawClient5::connect(addr);
            let ack = raw.handshake("crasher5", Connect5 { keep_alive: 60, ..Default::default() });
            assert_eq!(ack.code, ConnectReturnCode::Success);
            let mut in_flight = std::collections::VecDeque::new();
            for msg in 0..100_000u64 {
                let pkid = (msg % 60_000) as u16 + 1;
                let mut p = rumqttc::v5::mqttbytes::v5::Publish::new(
                    "telemetry/crasher5/m",
                    QoS::AtLeastOnce,
                    payload(msg),
                    None,
                );
                p.pkid = pkid;
                let mut b = bytes::BytesMut::new();
                p.write(&mut b).unwrap();
                if raw.send_bytes(&b).is_err() {
                    assert!(dead.load(Ordering::SeqCst), "write failed while the server was up");
                    return;
                }
                in_flight.push_back((pkid, msg));
                while in_flight.len() >= 8 {
                    match raw.recv() {
                        Some(Packet::PubAck(a)) => {
                            let (pkid, m) = in_flight.pop_front().unwrap();
                            assert_eq!(a.pkid, pkid, "PUBACKs come in order");
                            assert_eq!(a.reason, PubAckReason::Success);
                            acked.lock().unwrap().push(m);
                        }
                        Some(other) => panic!("unexpected {other:?}"),
                        None => {
                            assert!(dead.load(Ordering::SeqCst), "connection closed while the server was up");
                            return;
                        }
                    }
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(600));
    dead.store(true, Ordering::SeqCst);
    server.kill9();
    writer.join().expect("writer panicked");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 5, "too few acknowledged messages: {}", acked.len());
    let server = ServerBuilder::new(dir.path()).start();
    server.kill9();
    let got = read_measurement(dir.path(), "telemetry", "crash5");
    for &msg in &acked {
        for i in 0..LINES {
            let k = ("crash5,device=crasher5".to_owned(), "v".to_owned(), (msg * LINES + i) as i64);
            assert_eq!(
                got.get(&k).map(String::as_str),
                Some(format!("{}i", msg * 1000 + i).as_str()),
                "message {msg} line {i} acknowledged but lost"
            );
        }
    }
}

#[test]
fn mqtt5_interop_python_paho() {
    let run = crate::mqtt_interop::run_paho_script("mqtt5_interop_python_paho", "mqtt_paho5.py", "paho5");
    let Some((result, dir)) = run else { return };
    let codes = &result["codes"];
    for i in 0..5 {
        assert_eq!(codes[format!("line{i}")], 0, "{result}");
    }
    assert_eq!(codes["json"], 0, "{result}");
    assert_eq!(codes["acl"], 0x87, "{result}");
    assert_eq!(codes["bad"], 0, "dead-lettered, acknowledged: {result}");
    assert_eq!(codes["after"], 0, "{result}");
    assert_eq!(result["granted"], serde_json::json!([1, 0x87]), "{result}");
    assert_eq!(result["connack"]["max_qos"], 1, "{result}");
    let expected = result["expected"].as_array().unwrap();
    assert_eq!(expected.len(), 14);
    for e in expected {
        let key = e[0].as_str().unwrap().to_owned();
        let measurement = key.split(',').next().unwrap().to_owned();
        let got = read_measurement(dir.path(), "telemetry", &measurement);
        let k = (key, e[1].as_str().unwrap().to_owned(), e[2].as_i64().unwrap());
        assert_eq!(got.get(&k).map(String::as_str), e[3].as_str(), "{k:?}: {got:?}");
    }
}

/// The rumqttc v5 client reports a negative PUBACK as an error of its own connection (a
/// client-side choice: the server keeps the connection, as the raw tests show).
#[test]
fn mqtt5_rumqttc_client_sees_acl_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let (c, mut conn) = Client::new(opts(&server, "rq5"), 10);
    c.publish("telemetry/not-rq5/m", QoS::AtLeastOnce, false, "m v=1 1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no refusal");
        match conn.recv_timeout(Duration::from_secs(1)) {
            Ok(Err(ConnectionError::MqttState(StateError::PubAckFail { reason }))) => {
                assert_eq!(reason, PubAckReason::NotAuthorized);
                break;
            }
            Ok(Err(e)) => panic!("unexpected error {e}"),
            _ => {}
        }
    }
    server.stop();
}
