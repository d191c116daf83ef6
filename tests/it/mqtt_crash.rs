//! `kill -9` the server while it acknowledges QoS 1 messages: every PUBACK'd point must be
//! there after a restart. Also: arbitrary bytes on MQTT connections never take the server
//! down, and good clients keep working beside them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, Publish};
use rumqttc::QoS;
use strata_e2e::mqtt::{mqtt_addr, RawClient};
use strata_e2e::server::{client, read_measurement, ServerBuilder};

const LINES: u64 = 50;

fn payload(round: u64, msg: u64) -> String {
    (0..LINES).map(|i| format!("crash,round=r{round} v={}i {}\n", msg * 1000 + i, msg * LINES + i)).collect()
}

#[test]
fn mqtt_crash_acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked_all: Vec<(u64, u64)> = Vec::new();
    for (round, sync) in ["always", "never"].into_iter().enumerate() {
        let round = round as u64;
        let server = ServerBuilder::new(dir.path()).arg("--sync").arg(sync).start();
        let addr = mqtt_addr(&server);
        let acked = Arc::new(Mutex::new(Vec::new()));
        let dead = Arc::new(AtomicBool::new(false));
        let writer = {
            let (acked, dead) = (acked.clone(), dead.clone());
            std::thread::spawn(move || {
                let mut raw = RawClient::connect(addr);
                assert_eq!(raw.handshake("crasher", 60, None), ConnectReturnCode::Success);
                // Up to 8 messages in flight, so the server batches them.
                let mut in_flight = std::collections::VecDeque::new();
                for msg in 0..100_000u64 {
                    let mut p = Publish::new("telemetry/crasher/m", QoS::AtLeastOnce, payload(round, msg));
                    p.pkid = (msg % 60_000) as u16 + 1;
                    if raw
                        .send_bytes(&{
                            let mut b = bytes::BytesMut::new();
                            p.write(&mut b).unwrap();
                            b
                        })
                        .is_err()
                    {
                        assert!(dead.load(Ordering::SeqCst), "write failed while the server was up");
                        return;
                    }
                    in_flight.push_back((p.pkid, msg));
                    while in_flight.len() >= 8 {
                        match raw.recv() {
                            Some(Packet::PubAck(a)) => {
                                let (pkid, m) = in_flight.pop_front().unwrap();
                                assert_eq!(a.pkid, pkid, "PUBACKs come in order");
                                acked.lock().unwrap().push(m);
                            }
                            Some(other) => panic!("unexpected {other:?}"),
                            None => {
                                assert!(
                                    dead.load(Ordering::SeqCst),
                                    "connection closed while the server was up"
                                );
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
        assert!(acked.len() >= 5, "sync={sync}: too few acknowledged messages: {}", acked.len());
        acked_all.extend(acked.iter().map(|m| (round, *m)));

        let server = ServerBuilder::new(dir.path()).arg("--sync").arg(sync).start();
        let r = client().post(server.url("/write?db=telemetry")).body("after v=1 1\n").send().unwrap();
        assert_eq!(r.status(), 204);
        server.kill9();
        let got = read_measurement(dir.path(), "telemetry", "crash");
        for &(round, msg) in &acked_all {
            for i in 0..LINES {
                let k = (
                    format!("crash,device=crasher,round=r{round}"),
                    "v".to_owned(),
                    (msg * LINES + i) as i64,
                );
                assert_eq!(
                    got.get(&k).map(String::as_str),
                    Some(format!("{}i", msg * 1000 + i).as_str()),
                    "sync={sync}: round {round} message {msg} line {i} acknowledged but lost"
                );
            }
        }
    }
}

#[test]
fn mqtt_garbage_bytes_never_take_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("mqtt.max_packet_size", "64KiB").start();
    let addr = mqtt_addr(&server);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for i in 0..100 {
        let mut raw = RawClient::connect(addr);
        raw.stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut junk: Vec<u8> = (0..rng.gen_range(0..2048)).map(|_| rng.gen()).collect();
        if i % 2 == 0 {
            // After a valid CONNECT, so the packet loop sees the junk too.
            let mut c = bytes::BytesMut::new();
            rumqttc::mqttbytes::v4::Connect::new(format!("junk{i}")).write(&mut c).unwrap();
            junk.splice(0..0, c.iter().copied());
        }
        let _ = raw.send_bytes(&junk);
        while raw.recv().is_some() {}
    }
    // Still serving, and serving well.
    let mut raw = RawClient::connect(addr);
    assert_eq!(raw.handshake("good", 30, None), ConnectReturnCode::Success);
    let mut p = Publish::new("telemetry/good/m", QoS::AtLeastOnce, "m v=1 1");
    p.pkid = 7;
    raw.send(&Packet::Publish(p));
    assert!(matches!(raw.recv(), Some(Packet::PubAck(a)) if a.pkid == 7));
    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// QoS 0 batches are not fsynced before the connection reads on (nothing was acknowledged),
/// but they are written to the OS first, so a crash of the process loses none of them once
/// the connection answered a later PINGREQ (packets are handled in order).
#[test]
fn mqtt_crash_qos0_messages_handled_before_a_ping_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).arg("--sync").arg("always").start();
    let mut raw = RawClient::connect(mqtt_addr(&server));
    assert_eq!(raw.handshake("q0", 60, None), ConnectReturnCode::Success);
    let mut bytes = bytes::BytesMut::new();
    for msg in 0..400u64 {
        Publish::new("telemetry/q0/m", QoS::AtMostOnce, payload(9, msg)).write(&mut bytes).unwrap();
    }
    raw.send_bytes(&bytes).unwrap();
    raw.send(&Packet::PingReq);
    raw.stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert!(matches!(raw.recv(), Some(Packet::PingResp)), "no PINGRESP");
    server.kill9();
    let got = read_measurement(dir.path(), "telemetry", "crash");
    for msg in 0..400u64 {
        for i in 0..LINES {
            let k = ("crash,device=q0,round=r9".to_owned(), "v".to_owned(), (msg * LINES + i) as i64);
            assert!(
                got.contains_key(&k),
                "QoS 0 message {msg} line {i} handled before the PINGRESP but lost"
            );
        }
    }
}
