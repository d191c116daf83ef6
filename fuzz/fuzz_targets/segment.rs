//! Segment files (`strata_engine::fuzzing::segment_file`): a whole segment (header, block, index
//! and trailer checksums fixed up) or blocks framed from the input, through the index checks and
//! every column codec.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| strata_engine::fuzzing::segment_file(data));
