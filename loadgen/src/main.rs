//! strata-loadgen: simulated IoT devices writing to Strata (or InfluxDB, VictoriaMetrics,
//! Mosquitto) over HTTP or MQTT, and the TSBS-iot query benchmark.
//!
//! # Layout
//! - [`cli`]: the command line (`http`, `mqtt`, `query`, `sink`).
//! - [`schema`]: the simulated devices (`iot` trucks, `sensors`) and their line protocol.
//! - [`generator`]: cutting device streams into HTTP batches or MQTT messages, in reused buffers.
//! - [`schedule`]: the open-loop schedule (`--rate`): when each unit is due.
//! - [`run`]: generator threads, the dispatcher, the progress bar, the end of a run.
//! - [`http`], [`mqtt`]: the transports. [`sink`]: a null HTTP server for the tool's ceiling.
//! - [`stats`]: counters, HDR latency histograms, the summary table and `--json` report.
//! - [`verify`]: `--verify`, checking every acknowledged point through `/query`.
//! - [`query`]: the query benchmark.
//!
//! It is not a correctness test suite for the server beyond `--verify`, and it does not read
//! data back at scale: `query` only times answers.
//! How to use it and read its output: docs/loadgen.md.

mod cli;
mod generator;
mod http;
mod mqtt;
mod query;
mod run;
mod schedule;
mod schema;
mod sink;
mod stats;
mod verify;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // `STRATA_TOKEN` is the one variable the `strata` CLI and the load generator read; the
    // older `STRATA_LOADGEN_TOKEN` still works when `STRATA_TOKEN` is unset.
    if std::env::var_os("STRATA_TOKEN").is_none() {
        if let Some(t) = std::env::var_os("STRATA_LOADGEN_TOKEN") {
            std::env::set_var("STRATA_TOKEN", t);
        }
    }
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            cli::Command::Http(a) => http::run(a).await,
            cli::Command::Mqtt(a) => mqtt::run(a).await,
            cli::Command::Query(a) => query::run(a).await,
            cli::Command::Sink(a) => sink::run(a).await,
        }
    });
    // Generator threads blocked on a full queue must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
