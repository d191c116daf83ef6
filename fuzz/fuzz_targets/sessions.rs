//! The MQTT sessions file (`strata_mqtt::fuzzing::sessions_file`): a whole file (checksums and
//! record length fixed up) or a version and a body, through `session_store::decode`; what
//! decodes encodes and decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_mqtt::fuzzing::sessions_file(data));
