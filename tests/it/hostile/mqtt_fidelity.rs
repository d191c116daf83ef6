//! See `../hostile.rs`. The MQTT data path: every acknowledged reading is kept (a device
//! without a clock publishing back to back), a dead letter is durable before its PUBACK, and
//! the rate limit is per device a message is for, so a gateway is not held to one device's
//! rate and a throttled publisher is slowed, not disconnected.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::{Client, Connection, MqttOptions, QoS};
use strata_e2e::mqtt::{mqtt_addr, RawClient};

use crate::mqtt_ingest::wait_acks;
use strata_e2e::server::{client, read_measurement, ServerBuilder, StrataServer};

/// Messages per test: more than one batch of rumqttc's in-flight window and far more than the
/// handful a single server timestamp per batch used to keep.
const N: usize = 60;

/// The payload a clockless device sends: no timestamp, so the server's clock stamps it.
fn reading(i: usize) -> String {
    format!("env temp={i}.5,hum=40i")
}

fn rumqttc_client(server: &StrataServer, id: &str) -> (Client, Connection) {
    let addr = mqtt_addr(server);
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(100);
    Client::new(opts, 2 * N)
}

/// Values of `temp` stored per device (distinct timestamps), read after the server stopped.
fn stored_per_device(dir: &std::path::Path) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for (series, field, _) in read_measurement(dir, "telemetry", "env").keys() {
        if field == "temp" {
            let device = series.split(",device=").nth(1).and_then(|r| r.split(',').next()).unwrap_or("");
            *per.entry(device.to_owned()).or_insert(0) += 1;
        }
    }
    per
}

/// `n` PUBLISHes of `topic` in one buffer, so the server drains them as one batch.
fn publishes(topic: &str, qos: QoS, n: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    for i in 0..n {
        let mut p = Publish::new(topic, qos, reading(i));
        p.pkid = if qos == QoS::AtMostOnce { 0 } else { u16::try_from(i + 1).unwrap() };
        p.write(&mut out).unwrap();
    }
    out.to_vec()
}

/// 50+ QoS 1 messages without a timestamp, back to back, from one device: every PUBACKed
/// message is stored (a single server time per batch kept ~6 of 50). Over rumqttc (what
/// `mosquitto_pub -l -q 1` does) and as raw packets in one write (one batch for sure).
#[test]
fn qos1_messages_without_timestamp_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let (c, mut conn) = rumqttc_client(&server, "dev-7");
    for i in 0..N {
        c.publish("telemetry/dev-7/env", QoS::AtLeastOnce, false, reading(i)).unwrap();
    }
    wait_acks(&mut conn, N);
    let acked_rumqttc = N;
    c.disconnect().unwrap();

    let mut raw = RawClient::connect(mqtt_addr(&server));
    raw.handshake("dev-8", 30, None);
    raw.stream.write_all(&publishes("telemetry/dev-8/env", QoS::AtLeastOnce, N)).unwrap();
    let mut acked_raw = 0;
    while acked_raw < N {
        match raw.recv() {
            Some(Packet::PubAck(_)) => acked_raw += 1,
            other => panic!("after {acked_raw} PUBACKs: {other:?}"),
        }
    }
    raw.send(&Packet::Disconnect);
    server.stop();
    let stored = stored_per_device(dir.path());
    assert_eq!(stored.get("dev-7").copied(), Some(acked_rumqttc), "rumqttc: stored vs acknowledged");
    assert_eq!(stored.get("dev-8").copied(), Some(acked_raw), "one batch: stored vs acknowledged");
}

/// The same at QoS 0 (batches written without waiting for the fsync) and over MQTT 5.0.
#[test]
fn qos0_and_mqtt5_messages_without_timestamp_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let mut raw = RawClient::connect(mqtt_addr(&server));
    raw.handshake("dev-q0", 30, None);
    raw.stream.write_all(&publishes("telemetry/dev-q0/env", QoS::AtMostOnce, N)).unwrap();
    // Packets are handled in order: the PINGRESP says every PUBLISH before it was stored.
    raw.send(&Packet::PingReq);
    assert!(matches!(raw.recv(), Some(Packet::PingResp)));
    raw.send(&Packet::Disconnect);

    let addr = mqtt_addr(&server);
    let mut o = rumqttc::v5::MqttOptions::new("dev-v5", addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (c5, mut conn5) = rumqttc::v5::Client::new(o, 2 * N);
    for i in 0..N {
        c5.publish("telemetry/dev-v5/env", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, reading(i))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut acked5 = 0;
    while acked5 < N {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {acked5} of {N} 5.0 PUBACKs within 15 s");
        match conn5.recv_timeout(left) {
            Ok(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(a)))) => {
                assert_eq!(a.reason, rumqttc::v5::mqttbytes::v5::PubAckReason::Success, "{a:?}");
                acked5 += 1;
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("5.0 connection error after {acked5} PUBACKs: {e}"),
        }
    }
    c5.disconnect().unwrap();
    server.stop();
    let stored = stored_per_device(dir.path());
    assert_eq!(stored.get("dev-q0").copied(), Some(N), "QoS 0: stored vs sent");
    assert_eq!(stored.get("dev-v5").copied(), Some(acked5), "5.0: stored vs acknowledged");
}

/// Lines inside one message keep InfluxDB's rule: one server time for the whole message, so
/// two timestamp-less lines of one series in one message are one point (the last wins).
#[test]
fn lines_inside_one_message_share_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let mut raw = RawClient::connect(mqtt_addr(&server));
    raw.handshake("dev-9", 30, None);
    let mut p =
        Publish::new("telemetry/dev-9/env", QoS::AtLeastOnce, "env temp=1.5\nenv temp=2.5\nenv hum=3i");
    p.pkid = 1;
    raw.send(&Packet::Publish(p));
    assert!(matches!(raw.recv(), Some(Packet::PubAck(_))));
    raw.send(&Packet::Disconnect);
    server.stop();
    let env = read_measurement(dir.path(), "telemetry", "env");
    let temps: Vec<&String> = env.iter().filter(|(k, _)| k.1 == "temp").map(|(_, v)| v).collect();
    assert_eq!(temps, vec!["2.5"], "{env:?}");
    let times: std::collections::BTreeSet<i64> = env.keys().map(|k| k.2).collect();
    assert_eq!(times.len(), 1, "every line of the message has the message's time: {env:?}");
}

fn metric(server: &StrataServer, series: &str) -> f64 {
    let text = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

const RATE_LIMITED: &str = "strata_mqtt_backpressure_total{reason=\"rate_limit\"}";

/// A gateway (ACL off, one identity) publishing for 50 devices over two connections, 5
/// messages per device: with 5 msg/s and a burst of 5 per device every message is within its
/// device's burst, so none waits. Charged to the gateway's identity they were 250 messages
/// through one bucket (~50 s). A device over its own burst is still slowed.
#[test]
fn a_gateway_is_limited_per_device_not_per_identity() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path())
        .set("mqtt.acl", false)
        .set("mqtt.rate_limit", 5)
        .set("mqtt.rate_burst", 5)
        .start();
    let addr = mqtt_addr(&server);
    let mut conns: Vec<RawClient> = ["gw-a", "gw-b"]
        .into_iter()
        .map(|id| {
            let mut raw = RawClient::connect(addr);
            raw.handshake(id, 30, Some(("gateway", "x")));
            raw
        })
        .collect();
    for (c, raw) in conns.iter_mut().enumerate() {
        let mut out = BytesMut::new();
        let mut pkid = 0u16;
        for d in 0..25 {
            for i in 0..5 {
                pkid += 1;
                let mut p = Publish::new(
                    format!("telemetry/dev-{}/env", c * 25 + d),
                    QoS::AtLeastOnce,
                    format!("env temp={i}.5 {}", i + 1),
                );
                p.pkid = pkid;
                p.write(&mut out).unwrap();
            }
        }
        raw.stream.write_all(&out).unwrap();
    }
    for (c, raw) in conns.iter_mut().enumerate() {
        for n in 0..125 {
            let got = raw.recv();
            assert!(matches!(got, Some(Packet::PubAck(_))), "connection {c}, PUBACK {n}: {got:?}");
        }
    }
    assert_eq!(metric(&server, RATE_LIMITED), 0.0, "no device exceeded its own burst");
    // dev-0 has spent its burst: three more wait for its bucket (0.6 s), on either connection.
    let mut out = BytesMut::new();
    for pkid in 1000..1003u16 {
        let mut p = Publish::new("telemetry/dev-0/env", QoS::AtLeastOnce, format!("env temp=9.5 {pkid}"));
        p.pkid = pkid;
        p.write(&mut out).unwrap();
    }
    conns[1].stream.write_all(&out).unwrap();
    for _ in 0..3 {
        assert!(matches!(conns[1].recv(), Some(Packet::PubAck(_))));
    }
    assert!(metric(&server, RATE_LIMITED) >= 1.0, "dev-0 over its burst is slowed");
    for raw in &mut conns {
        raw.send(&Packet::Disconnect);
    }
    server.stop();
    assert_eq!(stored_per_device(dir.path()).values().sum::<usize>(), 253);
}

/// The gateway at QoS 0 with a real client (rumqttc, keep-alive 5 s): charged to its
/// identity it was throttled for ~50 s, its PINGREQ waited behind the throttled messages and
/// the client dropped the connection. Per device it is not throttled and stays connected.
#[test]
fn a_qos0_gateway_stays_connected() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path())
        .set("mqtt.acl", false)
        .set("mqtt.rate_limit", 5)
        .set("mqtt.rate_burst", 5)
        .start();
    let addr = mqtt_addr(&server);
    let mut clients = Vec::new();
    for (c, id) in ["gw0-a", "gw0-b"].into_iter().enumerate() {
        let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_credentials("gateway", "x");
        let (cl, conn) = Client::new(opts, 300);
        for d in 0..25 {
            for i in 0..5 {
                let topic = format!("telemetry/dev-{}/env", c * 25 + d);
                cl.publish(topic, QoS::AtMostOnce, false, format!("env temp={i}.5 {}", i + 1)).unwrap();
            }
        }
        // Its PUBACK says every QoS 0 message before it was handled (answers keep order).
        cl.publish(format!("telemetry/marker-{c}/env"), QoS::AtLeastOnce, false, "env temp=0.5 1").unwrap();
        clients.push((cl, conn));
    }
    for (cl, conn) in clients.iter_mut() {
        wait_acks(conn, 1);
        cl.disconnect().unwrap();
    }
    assert_eq!(metric(&server, RATE_LIMITED), 0.0);
    server.stop();
    assert_eq!(stored_per_device(dir.path()).values().sum::<usize>(), 252);
}

/// A device over its own rate at QoS 0 is slowed (its socket not read), never disconnected:
/// 40 messages at 10/s with a burst of 5 hold it ~3.5 s, longer than 1.5 x its 1 s
/// keep-alive, and the server still answers its PINGREQ and stores everything.
#[test]
fn a_throttled_qos0_device_is_slowed_not_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("mqtt.rate_limit", 10).set("mqtt.rate_burst", 5).start();
    let mut raw = RawClient::connect(mqtt_addr(&server));
    raw.handshake("dev-slow", 1, None);
    raw.stream.write_all(&publishes("telemetry/dev-slow/env", QoS::AtMostOnce, 40)).unwrap();
    raw.send(&Packet::PingReq);
    assert!(matches!(raw.recv(), Some(Packet::PingResp)), "still connected after the throttle");
    assert!(metric(&server, RATE_LIMITED) >= 1.0, "it was throttled");
    raw.send(&Packet::Disconnect);
    server.stop();
    assert_eq!(stored_per_device(dir.path()).get("dev-slow").copied(), Some(40));
}
