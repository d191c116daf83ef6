//! Tests of the broker's write path across its parts (connection, engine, dead-letter store).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{self, Packet, Publish};
use rumqttc::mqttbytes::QoS;

use super::{unshared_broker_for_tests, Broker};
use crate::connection::feed_for_test;
use crate::dead_letter::{DeadLetters, SyncFn};

fn connect_and_publish(client_id: &str, publishes: &[(QoS, u16, &str)]) -> Vec<u8> {
    let mut b = BytesMut::new();
    v4::Connect::new(client_id).write(&mut b).unwrap();
    for (qos, pkid, payload) in publishes {
        let mut p = Publish::new(format!("telemetry/{client_id}/m"), *qos, payload.to_string());
        p.pkid = *pkid;
        p.write(&mut b).unwrap();
    }
    b.to_vec()
}

fn run(broker: &Arc<Broker>, input: Vec<u8>) -> Vec<Packet> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let out = rt.block_on(feed_for_test(broker.clone(), Bytes::from(input)));
    let mut b = BytesMut::from(&out[..]);
    let mut packets = Vec::new();
    while let Ok(p) = v4::read(&mut b, 1 << 20) {
        packets.push(p);
    }
    packets
}

fn pubacks(packets: &[Packet]) -> Vec<u16> {
    packets.iter().filter_map(|p| if let Packet::PubAck(a) = p { Some(a.pkid) } else { None }).collect()
}

/// A broker whose dead-letter store counts its fsyncs and fails them while `fail` is set.
fn broker_with_dead_letter_seam(dir: &std::path::Path) -> (Arc<Broker>, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let syncs = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(AtomicBool::new(false));
    let (s, f) = (syncs.clone(), fail.clone());
    let sync: SyncFn = Arc::new(move |file: &std::fs::File| {
        s.fetch_add(1, Ordering::SeqCst);
        if f.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        file.sync_all()
    });
    let mut broker = unshared_broker_for_tests(dir, |_| {}).unwrap();
    broker.dead_letters =
        DeadLetters::open_with_sync(&dir.join("dead-letters-seam"), 100, 1 << 20, sync).unwrap();
    (Arc::new(broker), syncs, fail)
}

/// A dead letter is the only copy of an acknowledged message: its PUBACK waits until it is
/// fsynced (file and directory), and a dead letter that cannot be made durable is not
/// acknowledged at all (the connection closes; the device sends it again). QoS 0 dead letters
/// are not fsynced (nothing is acknowledged).
#[test]
fn a_dead_letter_is_durable_before_its_puback() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, syncs, fail) = broker_with_dead_letter_seam(dir.path());

    let packets = run(&broker, connect_and_publish("dl0", &[(QoS::AtMostOnce, 0, "not line protocol")]));
    assert!(pubacks(&packets).is_empty());
    assert_eq!(broker.dead_letters.len(), 1);
    assert_eq!(syncs.load(Ordering::SeqCst), 0, "a QoS 0 dead letter is not fsynced");

    let packets = run(&broker, connect_and_publish("dl1", &[(QoS::AtLeastOnce, 1, "not line protocol")]));
    assert_eq!(pubacks(&packets), vec![1]);
    assert_eq!(broker.dead_letters.len(), 2);
    assert_eq!(syncs.load(Ordering::SeqCst), 2, "the dead letter's file and the directory");

    fail.store(true, Ordering::SeqCst);
    let packets = run(
        &broker,
        connect_and_publish(
            "dl2",
            &[(QoS::AtLeastOnce, 1, "m v=1 1"), (QoS::AtLeastOnce, 2, "not line protocol")],
        ),
    );
    assert!(
        pubacks(&packets).is_empty(),
        "a batch whose dead letter failed to sync is not acknowledged: {packets:?}"
    );
    assert_eq!(broker.dead_letters.len(), 2, "the failed dead letter is not listed");
}
