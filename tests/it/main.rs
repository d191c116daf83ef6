//! End-to-end tests, one test binary (see `tests/lib.rs` for helpers).

mod cli_config;
mod cli_export;
mod cli_query;
mod cli_write;
mod engine_crash;
mod hostile;
mod http_auth;
mod http_backpressure;
mod http_crash;
mod http_interop;
mod http_limits;
mod http_shutdown;
mod http_tls;
mod http_write;
mod loadgen;
mod mqtt5;
mod mqtt_crash;
mod mqtt_ingest;
mod mqtt_interop;
mod mqtt_sessions;
mod mqtt_tls;
mod ops_backup;
mod ops_logs;
mod ops_metrics;
mod ops_ratelimit;
mod query_http;
