//! strata-server: the server behind the `strata` binary (whose command line is `strata-cli`).
//! Configuration, the HTTP API (InfluxDB 1.x and 2.x compatible writes, a JSON write format, liveness), payload decoding with limits,
//! authentication, write-memory backpressure and metrics, around the `strata-engine` storage
//! engine.
//!
//! Layout, in the order a write passes through it:
//! - [`config`]: the configuration tree, its sources (TOML, `STRATA_*` environment, flags)
//!   and validation.
//! - [`server`]: [`Server::start`] / [`run`] on caller-bound [`Listeners`], graceful shutdown;
//!   [`tls`]: rustls setup.
//! - [`http`]: the axum router, per-request middleware, and one module per group of routes;
//!   `http::error` maps every error to its status code.
//! - [`auth`]: tokens, scopes, the tokens file.
//! - [`budget`]: the write-memory budget that bounds what in-flight requests hold.
//! - [`ingest`]: line protocol and JSON to a `WriteBatch`, with per-point limits.
//! - [`metrics`]: counters for `/metrics`; [`ratelimit`]: per-client write rate limits.
//! - [`mqtt`]: the MQTT listener (devices publish telemetry; `docs/mqtt.md`).
//!
//! What it is not: the storage engine (`strata-engine`), the line-protocol parser
//! (`strata-lineproto`), the query language (`strata-query`) or the command line
//! (`strata-cli`).

pub mod auth;
pub mod budget;
pub mod bufpool;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod mqtt;
pub mod private_file;
pub mod ratelimit;
pub mod server;
pub mod tls;

pub use config::Config;
pub use server::{run, Listeners, ServeError, Server};
