//! MQTT connection handling: arbitrary bytes written to a fresh connection (the whole packet
//! path: framing by rumqttc's codec, CONNECT, the packet loop, PUBLISH decoding and storage)
//! must never panic, and everything the server writes back must be well-formed MQTT. Half the
//! inputs are prefixed with a valid CONNECT so the fuzzer reaches the packet loop quickly.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::v4;
use strata_server::mqtt::session::feed_for_test;
use strata_server::mqtt::{broker_for_tests, Broker};

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
    let mut input = Vec::with_capacity(data.len() + 32);
    if data.first().is_some_and(|b| b & 1 == 1) {
        let mut c = BytesMut::new();
        v4::Connect::new("fuzz").write(&mut c).expect("encode CONNECT");
        input.extend_from_slice(&c);
        input.extend_from_slice(&data[1..]);
    } else {
        input.extend_from_slice(data);
    }
    let out = h.rt.block_on(feed_for_test(h.broker.clone(), Bytes::from(input)));
    let mut b = BytesMut::from(&out[..]);
    while !b.is_empty() {
        v4::read(&mut b, 1 << 20).expect("the server wrote a malformed packet");
    }
});
