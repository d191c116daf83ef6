//! Dead-letter entries (`strata_mqtt::fuzzing::dead_letter`): the JSON of one entry and its
//! base64 payload; what decodes survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_mqtt::fuzzing::dead_letter(data));
