//! End-to-end tests, one test binary (see `tests/lib.rs` for helpers).

mod cli_config;
mod engine_crash;
mod http_auth;
mod http_backpressure;
mod http_crash;
mod http_interop;
mod http_limits;
mod http_shutdown;
mod http_tls;
mod http_write;
