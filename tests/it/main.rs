//! End-to-end tests, one test binary (see `tests/lib.rs` for helpers).

mod engine_crash;
