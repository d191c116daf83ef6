//! `--verify`: ask the server, over InfluxQL `/query`, whether everything it acknowledged is
//! stored. Per measurement, `count()` of its first field over the written time range must be
//! at least the number of acknowledged lines; a few acknowledged lines (sampled while sending)
//! are looked up by series and exact timestamp and their value compared.
//!
//! Counts are a lower bound check: a database that already held points in the same range can
//! only make the count larger (reported as a note, not a failure). Lines of HTTP 400 partial
//! writes are not credited to any measurement, since the server does not say which were kept.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::generator::Sample;
use crate::stats::{MeasurementCheck, Report, SpotCheck, VerifyReport};

/// At most this many sampled lines are looked up.
const MAX_SPOT_CHECKS: usize = 10;

/// One InfluxQL query; returns the first statement's result object, or the error it reports.
pub async fn influxql(
    client: &reqwest::Client,
    url: &str,
    db: &str,
    token: Option<&str>,
    q: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut req = client.get(format!("{url}/query")).query(&[("db", db), ("q", q), ("epoch", "ns")]);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Token {t}"));
    }
    let resp = req.send().await.with_context(|| format!("GET {url}/query"))?;
    let status = resp.status();
    let text = resp.text().await.context("reading the /query response")?;
    if !status.is_success() {
        bail!("/query answered {status}: {}", text.chars().take(300).collect::<String>());
    }
    let v: serde_json::Value = serde_json::from_str(&text).context("/query did not answer JSON")?;
    if let Some(e) = v["error"].as_str() {
        bail!("/query error: {e}");
    }
    let r = v["results"].get(0).cloned().ok_or_else(|| anyhow!("/query answered no results: {text}"))?;
    if let Some(e) = r["error"].as_str() {
        bail!("query error: {e}");
    }
    Ok(r)
}

/// The first row's value column (index 1) of the first series, if any.
pub fn first_value(result: &serde_json::Value) -> Option<serde_json::Value> {
    result["series"].get(0)?["values"].get(0)?.get(1).cloned()
}

fn ms_floor(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

pub async fn verify(t: &VerifyTarget, report: &Report, samples: &[Sample], wait: Duration) -> VerifyReport {
    let mut out = VerifyReport {
        ok: true,
        measurements: Vec::new(),
        spot_checks: Vec::new(),
        problems: Vec::new(),
        notes: Vec::new(),
    };
    if report.sent_lines == 0 {
        out.notes.push("nothing was sent".into());
        return out;
    }
    if report.acked_lines == 0 {
        out.ok = false;
        let errors: Vec<String> = report.errors.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        out.problems.push(format!(
            "nothing was acknowledged, so there is nothing to check (errors: {})",
            if errors.is_empty() { "none".into() } else { errors.join(", ") }
        ));
        return out;
    }
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(30)).build() {
        Ok(c) => c,
        Err(e) => {
            out.ok = false;
            out.problems.push(format!("HTTP client: {e}"));
            return out;
        }
    };
    let (from, to) = (ms_floor(report.first_ts), ms_floor(report.last_ts) + 1);
    let measurements = t.kind.measurements();
    let deadline = Instant::now() + wait;
    // Poll until every count reaches its target or the wait is over: ingest that acknowledges
    // before it is queryable (MQTT QoS 0, peers without read-your-writes) gets `wait` to catch up.
    loop {
        out.measurements.clear();
        out.problems.clear();
        for (i, m) in measurements.iter().enumerate() {
            let field = t.kind.fields(i)[0];
            let q =
                format!("SELECT count(\"{field}\") FROM \"{m}\" WHERE time >= {from}ms AND time < {to}ms");
            let acknowledged = report.acked_per_measurement.get(*m).copied().unwrap_or(0);
            let sent = report.sent_per_measurement.get(*m).copied().unwrap_or(0);
            match influxql(&client, &t.url, &t.db, t.token.as_deref(), &q).await {
                Ok(r) => {
                    let stored = first_value(&r).and_then(|v| v.as_f64()).unwrap_or(0.0) as u64;
                    out.measurements.push(MeasurementCheck {
                        measurement: m.to_string(),
                        field: field.to_string(),
                        acknowledged,
                        sent,
                        stored,
                    });
                }
                Err(e) => out.problems.push(format!("{q}: {e:#}")),
            }
        }
        let target_met = out.problems.is_empty()
            && out
                .measurements
                .iter()
                .all(|c| c.stored >= if t.expect_acked { c.acknowledged } else { c.sent });
        if target_met || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for c in &out.measurements {
        if t.expect_acked && c.stored < c.acknowledged {
            out.problems.push(format!(
                "{}: {} acknowledged lines but only {} stored ({} missing)",
                c.measurement,
                c.acknowledged,
                c.stored,
                c.acknowledged - c.stored
            ));
        } else if c.stored > c.sent {
            out.notes.push(format!(
                "{}: {} stored but {} sent: the database already held points in this range",
                c.measurement, c.stored, c.sent
            ));
        } else if c.stored < c.sent {
            out.notes.push(format!("{}: {} of {} sent lines stored", c.measurement, c.stored, c.sent));
        }
    }
    let step = (samples.len() / MAX_SPOT_CHECKS).max(1);
    for s in samples.iter().step_by(step).take(MAX_SPOT_CHECKS) {
        let mut cond: Vec<String> = s.tags.iter().map(|(k, v)| format!("\"{k}\" = '{v}'")).collect();
        cond.push(format!("time = {}", s.ts));
        let q = format!("SELECT \"{}\" FROM \"{}\" WHERE {}", s.field, s.measurement, cond.join(" AND "));
        let got = influxql(&client, &t.url, &t.db, t.token.as_deref(), &q).await;
        let (got, ok) = match got {
            Ok(r) => {
                let v = first_value(&r);
                let want: f64 = s.value.trim_end_matches(['i', 'u']).parse().unwrap_or(f64::NAN);
                let ok = v
                    .as_ref()
                    .and_then(|v| v.as_f64())
                    .is_some_and(|g| (g - want).abs() <= 1e-9 * want.abs().max(1.0));
                (v, ok)
            }
            Err(e) => (Some(serde_json::Value::String(format!("{e:#}"))), false),
        };
        if !ok {
            out.problems.push(format!("spot check {q}: expected {}, got {:?}", s.value, got));
        }
        out.spot_checks.push(SpotCheck { query: q, expected: s.value.clone(), got, ok });
    }
    out.ok = out.problems.is_empty();
    out
}

/// Where `--verify` queries.
pub struct VerifyTarget {
    pub url: String,
    pub db: String,
    pub token: Option<String>,
    pub kind: crate::schema::SchemaKind,
    /// Every acknowledged line must be stored (false for MQTT QoS 0, where nothing is).
    pub expect_acked: bool,
}
