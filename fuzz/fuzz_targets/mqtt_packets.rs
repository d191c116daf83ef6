//! MQTT connection handling: arbitrary bytes written to a fresh connection (the whole packet
//! path: framing by rumqttc's codec, CONNECT, the packet loop, PUBLISH decoding and storage)
//! must never panic, and everything the server writes back must be well-formed MQTT of the
//! connection's version. A quarter of the inputs are prefixed with a valid 3.1.1 CONNECT and
//! a quarter with a valid 5.0 CONNECT (with properties), so the fuzzer reaches both packet
//! loops quickly.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use strata_mqtt::connection::feed_for_test;
use strata_mqtt::wire::connect_protocol_level;
use strata_mqtt::{broker_for_tests, Broker};

struct Harness {
    rt: tokio::runtime::Runtime,
    broker: Arc<Broker>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("strata-fuzz-mqtt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let broker = broker_for_tests(&dir).expect("broker");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Harness { rt, broker }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let mut input = Vec::with_capacity(data.len() + 64);
    let mut c = BytesMut::new();
    match data.first().map(|b| b & 3) {
        Some(1) => {
            v4::Connect::new("fuzz").write(&mut c).expect("encode CONNECT");
        }
        Some(3) => {
            let props = v5::ConnectProperties {
                session_expiry_interval: Some(5),
                receive_maximum: Some(2),
                max_packet_size: Some(128),
                topic_alias_max: Some(2),
                ..v5::ConnectProperties::new()
            };
            v5::Connect { keep_alive: 30, client_id: "fuzz5".into(), clean_start: true, properties: Some(props) }
                .write(&None, &None, &mut c)
                .expect("encode CONNECT");
        }
        _ => {}
    }
    input.extend_from_slice(&c);
    input.extend_from_slice(if c.is_empty() { data } else { &data[1..] });
    // The server answers in the CONNECT's version (levels above 5 get a 5.0 refusal); anything
    // it wrote must parse as that version.
    let v5 = connect_protocol_level(&input).is_some_and(|l| l >= 5);
    let out = h.rt.block_on(feed_for_test(h.broker.clone(), Bytes::from(input)));
    let mut b = BytesMut::from(&out[..]);
    while !b.is_empty() {
        if v5 {
            v5::Packet::read(&mut b, None).expect("the server wrote a malformed 5.0 packet");
        } else {
            v4::read(&mut b, 1 << 20).expect("the server wrote a malformed packet");
        }
    }
});
