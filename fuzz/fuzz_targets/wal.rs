//! WAL replay (`strata_engine::fuzzing::wal_file`): a whole WAL file (record checksums fixed up)
//! or a list of payloads framed with valid checksums, through the framing, the record payload, the
//! compact record of WAL format 2 and the write-batch decoder. Never panics; what decodes is
//! consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_engine::fuzzing::wal_file(data));
