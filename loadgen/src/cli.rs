//! Command-line interface.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::schema::SchemaKind;

#[derive(Debug, Parser)]
#[command(
    name = "strata-loadgen",
    version,
    about = "Load generator for Strata and its peers: simulated IoT devices over HTTP or MQTT, and a query benchmark",
    after_help = "See docs/loadgen.md for examples, the tool's own ceiling and how to read the results."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write line protocol over HTTP (InfluxDB 1.x /write or 2.x /api/v2/write).
    Http(HttpArgs),
    /// Publish line protocol over MQTT, one topic per device and measurement.
    Mqtt(MqttArgs),
    /// Run the TSBS-iot queries N times against /query (InfluxQL) or /api/v1/query_range.
    Query(QueryArgs),
    /// A do-nothing HTTP server answering 204 to every write: the loadgen's own ceiling.
    Sink(SinkArgs),
}

/// What to simulate, how much, and what to do afterwards; shared by `http` and `mqtt`.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Data set to simulate.
    #[arg(long, value_enum, default_value_t = SchemaKind::Iot)]
    pub schema: SchemaKind,
    /// Number of simulated devices (trucks or sensors).
    #[arg(long, default_value_t = 100)]
    pub devices: u32,
    /// Stop after this many lines (points). With neither --points nor --duration: --duration 10s.
    #[arg(long)]
    pub points: Option<u64>,
    /// Stop after this much wall time, e.g. 30s, 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: offer this many lines per second and measure latency from each unit's due
    /// time (no coordinated omission). Without it: as fast as the server acknowledges.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seed of every device's value streams; the same seed writes the same points.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated time of each device's first point: RFC 3339, `now`, or `now-<duration>`
    /// (e.g. now-6h). The default is a fixed recent past window so every run writes the same
    /// timestamps and peers with retention limits accept them.
    #[arg(long, default_value = "2026-11-20T00:00:00Z")]
    pub start: String,
    /// Simulated interval between two points of a device (simulated time runs as fast as the
    /// load allows, independently of the wall clock).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub interval: Duration,
    /// Render every payload before the clock starts (needs --points), so generation is not
    /// part of the measurement.
    #[arg(long)]
    pub pregenerate: bool,
    /// Generator threads rendering payloads.
    #[arg(long, default_value_t = 1)]
    pub generators: u32,
    /// Database (InfluxDB 1.x db / 2.x bucket) written to and verified. Default: `loadgen`
    /// for `http`; for `mqtt` (verify only) `telemetry`, Strata's default `mqtt.database`.
    #[arg(long)]
    pub db: Option<String>,
    /// Afterwards, query /query and check every acknowledged point is there; exit 1 if not.
    #[arg(long)]
    pub verify: bool,
    /// How long --verify waits for counts to catch up (asynchronous ingest, e.g. MQTT QoS 0).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub verify_timeout: Duration,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

impl WorkloadArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.devices == 0 {
            bail!("--devices must be at least 1");
        }
        if self.generators == 0 {
            bail!("--generators must be at least 1");
        }
        if self.pregenerate && self.points.is_none() {
            bail!("--pregenerate needs --points (the payloads are built before the run)");
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                bail!("--rate must be a positive number of lines per second");
            }
        }
        if self.interval.is_zero() {
            bail!("--interval must be positive");
        }
        Ok(())
    }

    /// The wall-time bound: --duration, or 10 s when neither bound is given.
    pub fn deadline(&self) -> Option<Duration> {
        match (self.duration, self.points) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    pub fn start_ns(&self) -> anyhow::Result<i64> {
        parse_start(&self.start)
    }
}

/// `now`, `now-6h` or an RFC 3339 time, in nanoseconds since the epoch (whole seconds).
pub fn parse_start(s: &str) -> anyhow::Result<i64> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    let secs = if s == "now" {
        now()
    } else if let Some(ago) = s.strip_prefix("now-") {
        now()
            - humantime::parse_duration(ago).with_context(|| format!("bad duration in {s:?}"))?.as_secs()
                as i64
    } else {
        let t = humantime::parse_rfc3339_weak(s).with_context(|| format!("{s:?} is not an RFC 3339 time"))?;
        t.duration_since(std::time::UNIX_EPOCH).context("times before 1970 are not supported")?.as_secs()
            as i64
    };
    Ok(secs * 1_000_000_000)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Api {
    /// `POST /write?db=DB&precision=ns` (InfluxDB 1.x; Strata, InfluxDB and VictoriaMetrics).
    V1,
    /// `POST /api/v2/write?bucket=DB&precision=ns` (InfluxDB 2.x; Strata).
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sink {
    /// Send to --url.
    Http,
    /// Send nowhere: every unit is acknowledged at once (measures generation and dispatch).
    Null,
}

#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    #[command(flatten)]
    pub work: WorkloadArgs,
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    pub url: String,
    #[arg(long, value_enum, default_value_t = Api::V1)]
    pub api: Api,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    pub batch: u32,
    /// Requests in flight (each on its own pooled keep-alive connection).
    #[arg(long, default_value_t = 4)]
    pub concurrency: u32,
    /// Compress bodies (Content-Encoding: gzip).
    #[arg(long)]
    pub gzip: bool,
    /// API token, sent as `Authorization: Token ...`.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, value_enum, default_value_t = Sink::Http)]
    pub sink: Sink,
    /// Per-request timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Retries of a request answered 503 or 429 (after its Retry-After, at most 1 s).
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
}

#[derive(Debug, Clone, Args)]
pub struct MqttArgs {
    #[command(flatten)]
    pub work: WorkloadArgs,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Base URL of the server's HTTP API, for --verify.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    pub http_url: String,
    /// QoS of every publish: 0 (fire and forget) or 1 (PUBACK counted as acknowledged).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Lines in each message (consecutive points of one device and measurement).
    #[arg(long, default_value_t = 1)]
    pub lines_per_message: u32,
    /// MQTT connections; 0 gives every device its own (client id = prefix + device name).
    /// Fewer multiplex devices over connections (device d on connection d % N).
    #[arg(long, default_value_t = 0)]
    pub connections: u32,
    /// Topic template; `{device}` and `{measurement}` are substituted.
    #[arg(long, default_value = "telemetry/{device}/{measurement}")]
    pub topic: String,
    #[arg(long, default_value = "")]
    pub client_id_prefix: String,
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long, env = "STRATA_LOADGEN_MQTT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Connect over TLS (use --port 8883 for Strata's TLS listener).
    #[arg(long)]
    pub tls: bool,
    /// PEM CA certificate(s) to trust with --tls.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Unacknowledged QoS 1 messages per connection.
    #[arg(long, default_value_t = 100)]
    pub inflight: u16,
    /// After the last publish, how long to wait for outstanding PUBACKs.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub drain_timeout: Duration,
    /// Token for --verify's queries.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// InfluxQL over GET /query (Strata, InfluxDB 1.x).
    Influxql,
    /// MetricsQL/PromQL over GET /api/v1/query_range (VictoriaMetrics).
    Promql,
}

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    pub url: String,
    #[arg(long, value_enum, default_value_t = Flavor::Influxql)]
    pub flavor: Flavor,
    #[arg(long, default_value = "loadgen")]
    pub db: String,
    /// Timed runs of each query (after the warm-up runs).
    #[arg(long, default_value_t = 20)]
    pub runs: u32,
    #[arg(long, default_value_t = 2)]
    pub warmup: u32,
    /// Start of the data (as given to `http --start`).
    #[arg(long, default_value = "2026-11-20T00:00:00Z")]
    pub start: String,
    /// End of the data: RFC 3339, or a duration after --start (e.g. 4h).
    #[arg(long, default_value = "4h")]
    pub end: String,
    /// Truck of the single-truck query.
    #[arg(long, default_value = "truck_0")]
    pub truck: String,
    /// Fleet of the per-fleet query.
    #[arg(long, default_value = "East")]
    pub fleet: String,
    /// Comma-separated subset of: max-velocity-1h, fleet-fuel-10m, last-position, count-all.
    #[arg(long, value_delimiter = ',')]
    pub queries: Vec<String>,
    /// Per-query timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub timeout: Duration,
    /// PromQL only: VictoriaMetrics' `extra_label` filter, e.g. `db=c4` to query one of
    /// several copies written with different `?db=` (VictoriaMetrics stores it as a label).
    #[arg(long)]
    pub extra_label: Option<String>,
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SinkArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: String,
    /// Once listening, write {"http": "HOST:PORT"} to this file.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Exit after this long (the sink is for measurements, never left running).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub max_lifetime: Duration,
}
