//! Connections driven in-process: CONNECT handling, batching, wills, fuzzed bytes.

use proptest::prelude::*;
use rumqttc::mqttbytes::v4::{self, ConnectReturnCode, Packet, Publish};
use rumqttc::v5::mqttbytes::v5;
use rumqttc::v5::mqttbytes::QoS as V5QoS;

use super::*;

fn connect_bytes(id: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    v4::Connect::new(id).write(&mut b).unwrap();
    b.to_vec()
}

fn connect5_bytes(id: &str, props: Option<v5::ConnectProperties>) -> Vec<u8> {
    let mut b = BytesMut::new();
    v5::Connect { keep_alive: 30, client_id: id.into(), clean_start: true, properties: props }
        .write(&None, &None, &mut b)
        .unwrap();
    b.to_vec()
}

fn publish5_bytes(topic: &str, pkid: u16, payload: &str, props: Option<v5::PublishProperties>) -> Vec<u8> {
    let mut p = v5::Publish::new(topic, V5QoS::AtLeastOnce, payload.to_owned(), props);
    p.pkid = pkid;
    let mut b = BytesMut::new();
    p.write(&mut b).unwrap();
    b.to_vec()
}

/// What the server wrote must itself be well-formed MQTT of the connection's version.
fn parses(out: &[u8], protocol: Protocol) -> bool {
    let mut b = BytesMut::from(out);
    while !b.is_empty() {
        let ok = match protocol {
            Protocol::V311 => v4::read(&mut b, 1 << 20).is_ok(),
            Protocol::V5 => v5::Packet::read(&mut b, None).is_ok(),
        };
        if !ok {
            return false;
        }
    }
    true
}

fn v5_packets(out: &[u8]) -> Vec<v5::Packet> {
    let mut b = BytesMut::from(out);
    let mut packets = Vec::new();
    while let Ok(p) = v5::Packet::read(&mut b, None) {
        packets.push(p);
    }
    packets
}

fn run(broker: &Arc<Broker>, input: Vec<u8>) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(feed_for_test(broker.clone(), Bytes::from(input)))
}

#[test]
fn publish_batch_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    let mut input = connect_bytes("dev1");
    for i in 1..=3u16 {
        let mut p = Publish::new("telemetry/dev1/m", QoS::AtLeastOnce, format!("m v={i} {i}"));
        p.pkid = i;
        let mut b = BytesMut::new();
        p.write(&mut b).unwrap();
        input.extend_from_slice(&b);
    }
    let out = run(&broker, input);
    let mut b = BytesMut::from(&out[..]);
    let mut packets = Vec::new();
    while let Ok(p) = v4::read(&mut b, 1 << 20) {
        packets.push(p);
    }
    assert!(
        matches!(packets[0], Packet::ConnAck(ref a) if a.code == ConnectReturnCode::Success),
        "{packets:?}"
    );
    let acks: Vec<u16> =
        packets.iter().filter_map(|p| if let Packet::PubAck(a) = p { Some(a.pkid) } else { None }).collect();
    assert_eq!(acks, vec![1, 2, 3]);
    assert_eq!(
        broker.metrics.batches.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one engine write for the three"
    );
}

/// A batch of QoS 0 messages is written without waiting for an fsync (nothing was
/// acknowledged); one holding a QoS 1 message waits for its own.
#[test]
fn qos0_batches_skip_the_fsync_and_qos1_batches_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    let batch = |qos: QoS, pkid: u16| {
        let mut input = connect_bytes("dev1");
        let mut p = Publish::new("telemetry/dev1/m", qos, format!("m v={pkid} {pkid}"));
        p.pkid = pkid;
        let mut b = BytesMut::new();
        p.write(&mut b).unwrap();
        input.extend_from_slice(&b);
        input
    };
    let wal = &broker.ingest.engine.stats().wal;
    let before = wal.fsyncs();
    for _ in 0..4 {
        run(&broker, batch(QoS::AtMostOnce, 0));
    }
    let stored = broker.metrics.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(stored, 4, "four connections, one batch each");
    // At most the engine's periodic sync (once a second) ran meanwhile.
    assert!(wal.fsyncs() - before <= 1, "QoS 0 batches fsynced: {} -> {}", before, wal.fsyncs());
    let before = wal.fsyncs();
    run(&broker, batch(QoS::AtLeastOnce, 1));
    assert!(wal.fsyncs() > before, "a QoS 1 batch is acknowledged before its fsync");
}

/// Answers go out in the order of the packets even with batches in flight: a PINGRESP or
/// SUBACK follows the PUBACKs of every PUBLISH before it and precedes those after it.
#[test]
fn answers_keep_packet_order_across_pipelined_batches() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    let mut input = connect_bytes("dev1");
    let publish = |input: &mut Vec<u8>, pkids: std::ops::RangeInclusive<u16>| {
        for i in pkids {
            // Padded so that the reads come in pieces and batches overlap.
            let line = format!("m,n=x v={i},pad=\"{:060}\" {i}", 0);
            let mut p = Publish::new("telemetry/dev1/m", QoS::AtLeastOnce, line);
            p.pkid = i;
            let mut b = BytesMut::new();
            p.write(&mut b).unwrap();
            input.extend_from_slice(&b);
        }
    };
    publish(&mut input, 1..=600);
    input.extend_from_slice(&[0xC0, 0]); // PINGREQ
    publish(&mut input, 601..=1200);
    let mut b = BytesMut::new();
    let mut sub = v4::Subscribe::new("commands/dev1/#", QoS::AtLeastOnce);
    sub.pkid = 9;
    sub.write(&mut b).unwrap();
    input.extend_from_slice(&b);
    publish(&mut input, 1201..=1300);
    let out = run(&broker, input);
    let mut b = BytesMut::from(&out[..]);
    let mut order = Vec::new();
    while let Ok(p) = v4::read(&mut b, 1 << 20) {
        match p {
            Packet::ConnAck(_) => {}
            Packet::PubAck(a) => order.push(format!("{}", a.pkid)),
            Packet::PingResp => order.push("ping".into()),
            Packet::SubAck(_) => order.push("sub".into()),
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut want: Vec<String> = (1..=600).map(|i| i.to_string()).collect();
    want.push("ping".into());
    want.extend((601..=1200).map(|i| i.to_string()));
    want.push("sub".into());
    want.extend((1201..=1300).map(|i| i.to_string()));
    assert_eq!(order, want);
    let batches = broker.metrics.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert!(batches >= 3, "split at the PINGREQ and the SUBSCRIBE: {batches} batches");
}

/// 5.0 in process: CONNACK properties, a topic alias, PUBACK codes for a stored, a denied
/// and a dead-lettered message, and DISCONNECT 0x9B for QoS 2.
#[test]
fn v5_connection_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    let mut input = connect5_bytes("", None);
    let alias = |a| Some(v5::PublishProperties { topic_alias: Some(a), ..Default::default() });
    input.extend(publish5_bytes("telemetry/strata/m", 1, "m v=1 1", alias(3)));
    input.extend(publish5_bytes("", 2, "m v=2 2", alias(3)));
    input.extend(publish5_bytes("telemetry/other/m", 3, "m v=3 3", None));
    input.extend(publish5_bytes("telemetry/strata/m", 4, "not line protocol", None));
    let mut q2 = v5::Publish::new("telemetry/strata/m", V5QoS::ExactlyOnce, "m v=5 5", None);
    q2.pkid = 5;
    let mut b = BytesMut::new();
    q2.write(&mut b).unwrap();
    input.extend_from_slice(&b);
    let out = run(&broker, input);
    let packets = v5_packets(&out);
    let v5::Packet::ConnAck(ack) = &packets[0] else { panic!("{packets:?}") };
    assert_eq!(ack.code, v5::ConnectReturnCode::Success);
    let props = ack.properties.as_ref().unwrap();
    let assigned = props.assigned_client_identifier.clone().expect("an assigned client id");
    assert!(assigned.starts_with("strata-"), "{assigned}");
    assert_eq!(props.max_qos, Some(1));
    assert_eq!(props.retain_available, Some(0));
    assert_eq!(props.topic_alias_max, Some(TOPIC_ALIAS_MAX));
    assert_eq!(props.receive_max, Some(256));
    let acks: Vec<(u16, v5::PubAckReason)> = packets
        .iter()
        .filter_map(|p| if let v5::Packet::PubAck(a) = p { Some((a.pkid, a.reason)) } else { None })
        .collect();
    // The device is the assigned id, so "telemetry/strata/m" is another device's topic:
    // all four are refused by the ACL (the aliased one included), in order.
    assert!(acks.iter().all(|(_, r)| *r == v5::PubAckReason::NotAuthorized), "{acks:?}");
    assert_eq!(acks.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(
        matches!(packets.last(), Some(v5::Packet::Disconnect(d)) if d.reason_code == v5::DisconnectReasonCode::QoSNotSupported),
        "{packets:?}"
    );
}

/// 5.0 with a named client: stored, dead-lettered (0x00 with a reason string), aliased.
#[test]
fn v5_puback_codes_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    let mut input = connect5_bytes("d5", None);
    let alias = |a| Some(v5::PublishProperties { topic_alias: Some(a), ..Default::default() });
    input.extend(publish5_bytes("telemetry/d5/m", 1, "m v=1 1", alias(3)));
    input.extend(publish5_bytes("", 2, "m v=2 2", alias(3)));
    input.extend(publish5_bytes("telemetry/other/m", 3, "m v=3 3", None));
    input.extend(publish5_bytes("telemetry/d5/m", 4, "not line protocol", None));
    input.extend(publish5_bytes("", 5, "m v=5 5", alias(4)));
    let out = run(&broker, input);
    let packets = v5_packets(&out);
    let acks: Vec<(u16, v5::PubAckReason, Option<String>)> = packets
        .iter()
        .filter_map(|p| match p {
            v5::Packet::PubAck(a) => {
                Some((a.pkid, a.reason, a.properties.as_ref().and_then(|p| p.reason_string.clone())))
            }
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 4, "{packets:?}");
    assert_eq!((acks[0].0, acks[0].1), (1, v5::PubAckReason::Success));
    assert_eq!((acks[1].0, acks[1].1), (2, v5::PubAckReason::Success), "the alias resolved");
    assert_eq!((acks[2].0, acks[2].1), (3, v5::PubAckReason::NotAuthorized));
    assert_eq!((acks[3].0, acks[3].1), (4, v5::PubAckReason::Success));
    assert!(acks[3].2.as_deref().is_some_and(|r| r.starts_with("dead-lettered")), "{acks:?}");
    assert!(
        matches!(packets.last(), Some(v5::Packet::Disconnect(d)) if d.reason_code == v5::DisconnectReasonCode::ProtocolError),
        "an alias never set: {packets:?}"
    );
    assert_eq!(broker.dead_letters.list(0, 10).len(), 1);
}

/// A connection past `mqtt.max_connections` gets the busy CONNACK of its own protocol after
/// its CONNECT (a large one from its fixed header); anything else gets nothing.
#[test]
fn refused_connections_get_the_busy_connack() {
    let refuse = |input: Vec<u8>| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (client, mut server) = tokio::io::duplex(64 * 1024);
            let task = tokio::spawn(async move { refuse_busy(&mut server).await });
            let (mut rd, mut wr) = tokio::io::split(client);
            wr.write_all(&input).await.unwrap();
            let mut out = Vec::new();
            rd.read_to_end(&mut out).await.unwrap();
            // The client closes once refused (else the server would linger 1 s for it).
            drop((rd, wr));
            (task.await.unwrap(), out)
        })
    };
    assert_eq!(refuse(connect_bytes("x")), (true, vec![0x20, 0x02, 0x00, 0x03]));
    let (answered, out) = refuse(connect5_bytes("x", None));
    assert!(answered);
    assert!(
        matches!(&v5_packets(&out)[..], [v5::Packet::ConnAck(a)] if a.code == v5::ConnectReturnCode::QuotaExceeded),
        "{out:?}"
    );
    // A CONNECT over the 4 KiB read for refusals: answered from its first bytes.
    let mut big = v4::Connect::new("big");
    big.set_login("u", "p".repeat(REFUSED_MAX_CONNECT));
    let mut b = BytesMut::new();
    big.write(&mut b).unwrap();
    assert_eq!(refuse(b.to_vec()), (true, vec![0x20, 0x02, 0x00, 0x03]));
    let mut publish = BytesMut::new();
    Publish::new("telemetry/x/m", QoS::AtMostOnce, "m v=1 1").write(&mut publish).unwrap();
    assert_eq!(refuse(publish.to_vec()), (false, vec![]), "not a CONNECT: closed unanswered");
    let mut level3 = connect_bytes("x");
    level3[8] = 3;
    assert_eq!(refuse(level3), (false, vec![]));
}

/// Fuzz finding (`mqtt_packets`, the first input it stopped at): a 5.0 UNSUBSCRIBE with
/// reserved flags 0101 and no topic filter was answered with an UNSUBACK without reason
/// codes, itself malformed. It is a malformed packet: DISCONNECT 0x81, nothing else.
#[test]
fn unsubscribe_with_reserved_flags_and_no_filter_is_malformed_regression() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    let mut input = connect5_bytes("u5", None);
    input.extend_from_slice(&[0xa5, 0x03, 0x04, 0xc3, 0x00]);
    input.extend_from_slice(&[0xc0, 0x00]); // a PINGREQ that must not be answered
    let out = run(&broker, input);
    let packets = v5_packets(&out);
    assert!(
        matches!(&packets[..], [v5::Packet::ConnAck(_), v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::MalformedPacket),
        "{packets:?}"
    );
    // 3.1.1: closed, nothing answered after the CONNACK.
    for bad in [
        &[0xa2u8, 0x02, 0x00, 0x01][..],
        &[0xa0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],
        &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01],
    ] {
        let mut input = connect_bytes("u4");
        input.extend_from_slice(bad);
        input.extend_from_slice(&[0xc0, 0x00]);
        assert_eq!(run(&broker, input), vec![0x20, 0x02, 0x00, 0x00], "{bad:02x?}");
    }
}

/// A Last Will on a topic the ACL refuses the device is refused at CONNECT (3.1.1 0x05,
/// 5.0 0x87); one on its own telemetry topic is accepted.
#[test]
fn wills_pass_the_publish_acl_at_connect() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    let with_will = |topic: &str| {
        let mut c = v4::Connect::new("w1");
        c.last_will = Some(v4::LastWill::new(topic, "x", QoS::AtMostOnce, false));
        let mut b = BytesMut::new();
        c.write(&mut b).unwrap();
        run(&broker, b.to_vec())
    };
    assert_eq!(with_will("commands/w2/reboot"), vec![0x20, 0x02, 0x00, 0x05]);
    assert_eq!(with_will("telemetry/w2/status"), vec![0x20, 0x02, 0x00, 0x05]);
    assert_eq!(with_will("telemetry/w1/status"), vec![0x20, 0x02, 0x00, 0x00]);
}

/// A will restored from the sessions file (saved by a version that did not check wills)
/// passes the PUBLISH ACL when published: one on another device's command or telemetry
/// topic goes nowhere (no command subscriber gets it), its device's own is stored.
#[test]
fn restored_wills_pass_the_publish_acl() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let victim = broker.sessions.attach("d2", "d2", true, 0, 99, 0).unwrap();
    broker.sessions.subscribe("d2", "commands/d2/#", QoS::AtLeastOnce).unwrap();
    let mut rx = victim.rx;
    let publish = |topic: &str| {
        let will = Will {
            topic: topic.into(),
            payload: Bytes::from_static(b"w v=1i 1"),
            qos: QoS::AtLeastOnce,
            retain: false,
            delay_secs: 0,
        };
        let id = Identity { client_id: "d1".into(), device: "d1".into() };
        rt.block_on(async { will_conn(broker.clone(), id).publish_will(&will).await })
    };
    assert!(!publish("commands/d2/reboot"));
    assert!(!publish("telemetry/d2/w"));
    assert!(rx.try_recv().is_err(), "a will reached another device's command subscriber");
    assert!(publish("telemetry/d1/w"));
    let denied = broker.metrics.acl_denied.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(denied, 2);
}

/// A CONNECT announcing more than `mqtt.max_connect_size` is refused from its fixed header.
#[test]
fn connect_larger_than_max_connect_size_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    let limit = broker.config.connect_limit();
    let mut c = v5::Connect { keep_alive: 5, client_id: "big".into(), clean_start: true, properties: None };
    c.client_id = "b".repeat(10);
    let login = Some(v5::Login::new("u", "p".repeat(limit)));
    let mut b = BytesMut::new();
    c.write(&None, &login, &mut b).unwrap();
    // Only the first bytes: the server must answer without waiting for the rest.
    let out = run(&broker, b[..32].to_vec());
    assert!(
        matches!(&v5_packets(&out)[..], [v5::Packet::ConnAck(a)] if a.code == v5::ConnectReturnCode::PacketTooLarge),
        "{out:?}"
    );
}

#[test]
fn keep_alive_ceiling() {
    assert_eq!(keep_alive(0, 3600), (3600, Some(3600)), "no keep-alive is held to the ceiling");
    assert_eq!(keep_alive(3601, 3600), (3600, Some(3600)));
    assert_eq!(keep_alive(u16::MAX, 60), (60, Some(60)));
    assert_eq!(keep_alive(3600, 3600), (3600, None), "the client's own value stands");
    assert_eq!(keep_alive(30, 3600), (30, None));
}

/// A 5.0 client asking for keep-alive 0 (or more than `mqtt.max_keep_alive`) is told the
/// ceiling in CONNACK's Server Keep Alive; one within it is not told anything.
#[test]
fn server_keep_alive_in_connack() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    let connack = |keep_alive: u16| {
        let mut b = BytesMut::new();
        v5::Connect { keep_alive, client_id: "ka".into(), clean_start: true, properties: None }
            .write(&None, &None, &mut b)
            .unwrap();
        match v5_packets(&run(&broker, b.to_vec())).first() {
            Some(v5::Packet::ConnAck(a)) => a.properties.as_ref().and_then(|p| p.server_keep_alive),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(connack(0), Some(3600));
    assert_eq!(connack(7200), Some(3600));
    assert_eq!(connack(30), None);
    assert_eq!(connack(3600), None);
}

#[test]
fn unsupported_levels_get_the_right_connack() {
    let dir = tempfile::tempdir().unwrap();
    let broker = super::super::broker_for_tests(dir.path()).unwrap();
    // Level 3 (MQTT 3.1): the 3.1.1-shaped CONNACK 0x01.
    let mut c = connect_bytes("x");
    c[8] = 3;
    let out = run(&broker, c);
    assert_eq!(out, vec![0x20, 0x02, 0x00, 0x01]);
    // Level 6: a 5.0 CONNACK 0x84.
    let mut c = connect5_bytes("x", None);
    c[8] = 6;
    let out = run(&broker, c);
    assert!(
        matches!(&v5_packets(&out)[..], [v5::Packet::ConnAck(a)] if a.code == v5::ConnectReturnCode::UnsupportedProtocolVersion),
        "{out:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary bytes, alone or after a valid CONNECT, never panic the connection and
    /// never make it write malformed packets.
    #[test]
    fn arbitrary_bytes_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..512), after_connect in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let mut input = if after_connect { connect_bytes("p") } else { Vec::new() };
        input.extend_from_slice(&junk);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let out = rt.block_on(feed_for_test(broker, Bytes::from(input)));
        prop_assert!(parses(&out, Protocol::V311), "{out:?}");
    }

    /// The same over 5.0: arbitrary bytes after a 5.0 CONNECT (with properties), or
    /// arbitrary 5.0-looking packets (a valid fixed header and property length, random
    /// body), never panic and every answer is a well-formed 5.0 packet.
    #[test]
    fn arbitrary_bytes_never_panic_v5(
        junk in proptest::collection::vec(any::<u8>(), 0..512),
        kind in 0u8..16,
        props in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let p = props.then(|| v5::ConnectProperties {
            session_expiry_interval: Some(10),
            receive_maximum: Some(2),
            max_packet_size: Some(64),
            topic_alias_max: Some(4),
            ..v5::ConnectProperties::new()
        });
        let mut input = connect5_bytes("p5", p);
        // Half the time frame the junk as one packet of a random type, so it gets past
        // the fixed header into the 5.0 packet parsers.
        if kind & 1 == 1 && junk.len() < 128 {
            input.push((kind << 4) | (junk.first().copied().unwrap_or(0) & 0x0f));
            input.push(junk.len() as u8);
        }
        input.extend_from_slice(&junk);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let out = rt.block_on(feed_for_test(broker, Bytes::from(input)));
        prop_assert!(parses(&out, Protocol::V5), "{out:?}");
    }
}
