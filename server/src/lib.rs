//! strata-server: the server behind the `strata` binary (whose command line is `strata-cli`).
//! Configuration, the HTTP API (InfluxDB 1.x and 2.x compatible writes, a JSON write format,
//! queries, liveness) and metrics, around the `strata-engine` storage engine.
//!
//! Layout, in the order a write passes through it:
//! - [`config`]: the configuration tree, its sources (TOML, `STRATA_*` environment, flags)
//!   and validation.
//! - [`server`]: [`Server::start`] / [`run`] on caller-bound [`Listeners`], graceful shutdown;
//!   [`tls`]: rustls setup.
//! - [`http`]: the axum router, per-request middleware, and one module per group of routes;
//!   `http::error` maps every error to its status code.
//! - [`metrics`]: the HTTP, query and backup counters, and `/metrics` rendered from every
//!   crate's counters.
//! - the MQTT listener is `strata-mqtt`; the server starts it beside HTTP ([`server`]) and
//!   serves its HTTP routes (`http::mqtt`).
//!
//! What it is not: the storage engine (`strata-engine`), the line-protocol parser
//! (`strata-lineproto`), the query language (`strata-query`), what every write path shares
//! (decoding with limits, the write-memory budget, rate limits: `strata-ingest`), tokens
//! (`strata-auth`) or the command line (`strata-cli`).

pub mod config;
pub mod http;
pub mod metrics;
pub mod server;
pub mod tls;

pub use config::Config;
pub use server::{run, Listeners, ServeError, Server};
