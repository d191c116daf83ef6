//! Catalog replay (`strata_engine::fuzzing::catalog_log`): a catalog log (checksums fixed up) or
//! framed payloads, opened with `Catalog::open`; a second open sees the same catalog, and one
//! opened on damage keeps working.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_engine::fuzzing::catalog_log(data));
