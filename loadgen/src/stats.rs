//! Counters, latency histograms, the summary table and the `--json` report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::generator::{Sample, Unit};

/// Latencies are recorded in microseconds, 1 us to 1 hour, 3 significant digits.
const HIST_MAX_US: u64 = 3_600_000_000;
/// Histograms are striped so a thousand MQTT connection tasks rarely contend on one lock.
const STRIPES: usize = 16;
/// Spot-check samples kept for `--verify`.
const MAX_SAMPLES: usize = 32;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("static histogram bounds are valid")
}

/// Shared by every worker of a run.
pub struct Stats {
    pub sent_units: AtomicU64,
    pub sent_lines: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub acked_units: AtomicU64,
    pub acked_lines: AtomicU64,
    pub acked_values: AtomicU64,
    pub rejected_lines: AtomicU64,
    pub retries: AtomicU64,
    /// Open loop: units handed on more than 5 ms after their due time (the generator or the
    /// dispatcher could not keep up; their latency includes the lag, but the offered rate was
    /// lower than asked).
    pub late_units: AtomicU64,
    pub sent_per_measurement: [AtomicU64; 2],
    pub acked_per_measurement: [AtomicU64; 2],
    pub min_ts: AtomicI64,
    pub max_ts: AtomicI64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Why the run was abandoned: the server refused the credentials (401/403), so every
    /// further request would be refused too.
    refusal: Mutex<Option<String>>,
    hist: Vec<Mutex<Histogram<u64>>>,
    samples: Mutex<Vec<Sample>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sent_units: AtomicU64::new(0),
            sent_lines: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            acked_units: AtomicU64::new(0),
            acked_lines: AtomicU64::new(0),
            acked_values: AtomicU64::new(0),
            rejected_lines: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            late_units: AtomicU64::new(0),
            sent_per_measurement: Default::default(),
            acked_per_measurement: Default::default(),
            min_ts: AtomicI64::new(i64::MAX),
            max_ts: AtomicI64::new(i64::MIN),
            errors: Mutex::new(BTreeMap::new()),
            refusal: Mutex::new(None),
            hist: (0..STRIPES).map(|_| Mutex::new(histogram())).collect(),
            samples: Mutex::new(Vec::new()),
        }
    }
}

/// What is left of a unit once its payload is handed to the transport.
#[derive(Debug, Clone)]
pub struct UnitMeta {
    pub lines: u32,
    pub per_measurement: [u32; 2],
    pub values: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub sample: Option<Sample>,
}

impl UnitMeta {
    pub fn of(u: &mut Unit) -> UnitMeta {
        UnitMeta {
            lines: u.lines,
            per_measurement: u.per_measurement,
            values: u.values,
            min_ts: u.min_ts,
            max_ts: u.max_ts,
            sample: u.sample.take(),
        }
    }
}

impl Stats {
    pub fn on_sent(&self, meta: &UnitMeta, bytes: usize) {
        self.sent_units.fetch_add(1, Relaxed);
        self.sent_lines.fetch_add(u64::from(meta.lines), Relaxed);
        self.sent_bytes.fetch_add(bytes as u64, Relaxed);
        for (c, n) in self.sent_per_measurement.iter().zip(meta.per_measurement) {
            c.fetch_add(u64::from(n), Relaxed);
        }
        self.min_ts.fetch_min(meta.min_ts, Relaxed);
        self.max_ts.fetch_max(meta.max_ts, Relaxed);
    }

    /// The whole unit was acknowledged (204, PUBACK) after `latency`.
    pub fn on_acked(&self, meta: &UnitMeta, latency: Duration, stripe: usize) {
        self.acked_units.fetch_add(1, Relaxed);
        self.acked_lines.fetch_add(u64::from(meta.lines), Relaxed);
        self.acked_values.fetch_add(meta.values, Relaxed);
        for (c, n) in self.acked_per_measurement.iter().zip(meta.per_measurement) {
            c.fetch_add(u64::from(n), Relaxed);
        }
        if let Some(s) = &meta.sample {
            let mut samples = self.samples.lock().expect("samples lock");
            if samples.len() < MAX_SAMPLES {
                samples.push(s.clone());
            }
        }
        self.record_latency(latency, stripe);
    }

    /// Part of a unit was stored (an HTTP 400 partial write): only the totals are known, so
    /// per-measurement counts are not credited and `--verify` stays conservative.
    pub fn on_partial(&self, written: u64, rejected: u64, latency: Duration, stripe: usize) {
        self.acked_lines.fetch_add(written, Relaxed);
        self.rejected_lines.fetch_add(rejected, Relaxed);
        self.record_latency(latency, stripe);
    }

    pub fn record_latency(&self, latency: Duration, stripe: usize) {
        let us = (latency.as_micros() as u64).clamp(1, HIST_MAX_US);
        self.hist[stripe % STRIPES].lock().expect("histogram lock").saturating_record(us);
    }

    pub fn error(&self, kind: &str) {
        *self.errors.lock().expect("errors lock").entry(kind.to_owned()).or_insert(0) += 1;
    }

    /// Records the first refusal; later ones say the same.
    pub fn refuse(&self, why: String) {
        self.refusal.lock().expect("refusal lock").get_or_insert(why);
    }

    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().expect("refusal lock").clone()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.lock().expect("errors lock").values().sum()
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples lock").clone()
    }

    fn merged(&self) -> Histogram<u64> {
        let mut h = histogram();
        for s in &self.hist {
            h.add(&*s.lock().expect("histogram lock")).expect("same bounds");
        }
        h
    }

    pub fn report(&self, elapsed: Duration, info: RunInfo) -> Report {
        let h = self.merged();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let q = |p: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(p) as f64 / 1000.0 };
        let acked_lines = self.acked_lines.load(Relaxed);
        let acked_values = self.acked_values.load(Relaxed);
        let acked_units = self.acked_units.load(Relaxed);
        let sent_units = self.sent_units.load(Relaxed);
        let ms = info.measurements.clone();
        let per = |c: &[AtomicU64; 2]| -> BTreeMap<String, u64> {
            ms.iter().zip(c.iter()).map(|(m, n)| (m.clone(), n.load(Relaxed))).collect()
        };
        Report {
            sent_per_measurement: per(&self.sent_per_measurement),
            acked_per_measurement: per(&self.acked_per_measurement),
            info,
            elapsed_s: secs,
            sent_units,
            sent_lines: self.sent_lines.load(Relaxed),
            sent_bytes: self.sent_bytes.load(Relaxed),
            acked_units,
            acked_lines,
            acked_values,
            rejected_lines: self.rejected_lines.load(Relaxed),
            retries: self.retries.load(Relaxed),
            late_units: self.late_units.load(Relaxed),
            errors: self.errors.lock().expect("errors lock").clone(),
            lines_per_s: acked_lines as f64 / secs,
            values_per_s: acked_values as f64 / secs,
            units_per_s: acked_units as f64 / secs,
            sent_units_per_s: sent_units as f64 / secs,
            sent_mib_per_s: self.sent_bytes.load(Relaxed) as f64 / secs / (1024.0 * 1024.0),
            latency_ms: Latency {
                samples: h.len(),
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
            },
            first_ts: self.min_ts.load(Relaxed),
            last_ts: self.max_ts.load(Relaxed),
            verify: None,
        }
    }
}

/// The run's settings, echoed in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub transport: String,
    pub target: String,
    pub schema: crate::schema::SchemaKind,
    pub devices: u32,
    /// Lines per HTTP batch or MQTT message.
    pub unit_lines: u32,
    pub concurrency: u32,
    pub rate: Option<f64>,
    pub qos: Option<u8>,
    pub pregenerated: bool,
    pub gzip: bool,
    pub measurements: Vec<String>,
    /// What "acknowledged" means for this transport.
    pub ack: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub info: RunInfo,
    pub elapsed_s: f64,
    pub sent_units: u64,
    pub sent_lines: u64,
    pub sent_bytes: u64,
    pub acked_units: u64,
    pub acked_lines: u64,
    pub acked_values: u64,
    pub rejected_lines: u64,
    pub retries: u64,
    pub late_units: u64,
    pub errors: BTreeMap<String, u64>,
    pub sent_per_measurement: BTreeMap<String, u64>,
    pub acked_per_measurement: BTreeMap<String, u64>,
    /// Acknowledged lines per second of wall time.
    pub lines_per_s: f64,
    pub values_per_s: f64,
    /// Acknowledged units (requests or messages) per second.
    pub units_per_s: f64,
    pub sent_units_per_s: f64,
    pub sent_mib_per_s: f64,
    /// Per unit: request round trip (closed loop) or from the due time (open loop, `--rate`).
    pub latency_ms: Latency,
    pub first_ts: i64,
    pub last_ts: i64,
    pub verify: Option<VerifyReport>,
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} K", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

impl Report {
    /// The human summary table.
    pub fn table(&self) -> String {
        let i = &self.info;
        let unit = if i.transport == "mqtt" { "messages" } else { "requests" };
        let mut rows: Vec<(String, String)> = vec![
            ("target".into(), format!("{} ({})", i.target, i.transport)),
            (
                "workload".into(),
                format!(
                    "{:?} schema, {} devices, {} lines per {}, concurrency {}{}{}{}",
                    i.schema,
                    i.devices,
                    i.unit_lines,
                    &unit[..unit.len() - 1],
                    i.concurrency,
                    i.qos.map(|q| format!(", QoS {q}")).unwrap_or_default(),
                    i.rate.map(|r| format!(", open loop at {} lines/s", si(r))).unwrap_or_default(),
                    if i.gzip { ", gzip" } else { "" },
                ),
            ),
            ("elapsed".into(), format!("{:.2} s", self.elapsed_s)),
            (
                format!("sent {unit}"),
                format!("{} ({} lines, {:.1} MiB/s)", self.sent_units, self.sent_lines, self.sent_mib_per_s),
            ),
            (
                format!("acknowledged ({})", i.ack),
                format!("{} {unit}, {} lines", self.acked_units, self.acked_lines),
            ),
            ("rejected lines".into(), self.rejected_lines.to_string()),
            ("retries (503/429)".into(), self.retries.to_string()),
        ];
        let errors = if self.errors.is_empty() {
            "none".to_owned()
        } else {
            self.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
        };
        rows.push(("errors".into(), errors));
        if self.late_units > 0 {
            rows.push((
                "behind schedule".into(),
                format!(
                    "{} {unit} left > 5 ms late: the load generator could not offer the asked rate",
                    self.late_units
                ),
            ));
        }
        rows.push((
            "throughput".into(),
            format!(
                "{} lines/s, {} field values/s, {} {unit}/s",
                si(self.lines_per_s),
                si(self.values_per_s),
                si(self.units_per_s)
            ),
        ));
        let l = &self.latency_ms;
        rows.push((
            "latency (ms)".into(),
            format!(
                "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
                l.p50, l.p90, l.p99, l.p999, l.max, l.samples
            ),
        ));
        if let Some(v) = &self.verify {
            rows.push(("verify".into(), v.summary()));
        }
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            out.push_str(&format!("{k:<w$}  {v}\n"));
        }
        out
    }
}

/// What `--verify` found (filled in by `verify.rs`).
#[derive(Debug, Clone, Serialize)]
pub struct MeasurementCheck {
    pub measurement: String,
    pub field: String,
    pub acknowledged: u64,
    pub sent: u64,
    pub stored: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpotCheck {
    pub query: String,
    pub expected: String,
    pub got: Option<serde_json::Value>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub measurements: Vec<MeasurementCheck>,
    pub spot_checks: Vec<SpotCheck>,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn summary(&self) -> String {
        let counts: Vec<String> = self
            .measurements
            .iter()
            .map(|m| format!("{} {}/{} stored", m.measurement, m.stored, m.acknowledged))
            .collect();
        let spots = self.spot_checks.iter().filter(|s| s.ok).count();
        let mut s = format!(
            "{}: {}; spot checks {}/{} ok",
            if self.ok { "OK" } else { "FAILED" },
            if counts.is_empty() { "no measurement counted".into() } else { counts.join(", ") },
            spots,
            self.spot_checks.len()
        );
        for p in self.problems.iter().chain(&self.notes) {
            s.push_str("\n    ");
            s.push_str(p);
        }
        s
    }
}
