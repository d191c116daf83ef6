//! The query benchmark: the four TSBS-iot questions of issue 4, run `--runs` times each, one at
//! a time, against InfluxQL `/query` (Strata, InfluxDB 1.x) or, with `--flavor promql`, the
//! equivalent MetricsQL against VictoriaMetrics' `/api/v1/query_range` (its Influx ingestion
//! names series `<measurement>_<field>` with the tags as labels). Latency is the full round
//! trip including reading the whole response; the first `--warmup` runs are not counted.
//! VictoriaMetrics gets `nocache=1` so its rollup result cache does not answer repeats.

use std::time::Instant;

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::{parse_start, Flavor, QueryArgs};

pub const QUERY_NAMES: [&str; 4] = ["max-velocity-1h", "fleet-fuel-10m", "last-position", "count-all"];

struct PromQuery {
    query: String,
    start_s: i64,
    end_s: i64,
    step_s: i64,
}

struct Named {
    name: &'static str,
    description: &'static str,
    influxql: String,
    promql: PromQuery,
}

const HOUR_S: i64 = 3600;

fn queries(truck: &str, fleet: &str, start_s: i64, end_s: i64) -> Vec<Named> {
    let (s_ms, e_ms) = (start_s * 1000, end_s * 1000);
    let range = end_s - start_s;
    vec![
        Named {
            name: "max-velocity-1h",
            description: "one truck's max velocity per minute over an hour",
            influxql: format!(
                "SELECT max(\"velocity\") FROM \"readings\" WHERE \"name\" = '{truck}' AND time >= {s_ms}ms AND time < {}ms GROUP BY time(1m)",
                s_ms + HOUR_S * 1000
            ),
            promql: PromQuery {
                query: format!("max_over_time(readings_velocity{{name=\"{truck}\"}}[1m])"),
                start_s: start_s + 60,
                end_s: start_s + HOUR_S,
                step_s: 60,
            },
        },
        Named {
            name: "fleet-fuel-10m",
            description: "mean fuel consumption per 10 minutes over the whole range, one fleet",
            influxql: format!(
                "SELECT mean(\"fuel_consumption\") FROM \"readings\" WHERE \"fleet\" = '{fleet}' AND time >= {s_ms}ms AND time < {e_ms}ms GROUP BY time(10m)"
            ),
            promql: PromQuery {
                query: format!(
                    "sum(sum_over_time(readings_fuel_consumption{{fleet=\"{fleet}\"}}[10m])) / sum(count_over_time(readings_fuel_consumption{{fleet=\"{fleet}\"}}[10m]))"
                ),
                start_s: start_s + 600,
                end_s,
                step_s: 600,
            },
        },
        Named {
            name: "last-position",
            description: "last position of every truck",
            influxql: format!(
                "SELECT last(\"latitude\"), last(\"longitude\") FROM \"readings\" WHERE time >= {s_ms}ms AND time < {e_ms}ms GROUP BY \"name\""
            ),
            promql: PromQuery {
                query: format!("last_over_time({{__name__=~\"readings_(latitude|longitude)\"}}[{range}s])"),
                start_s: end_s,
                end_s,
                step_s: 60,
            },
        },
        Named {
            name: "count-all",
            description: "count of all readings over the whole range",
            influxql: format!("SELECT count(\"velocity\") FROM \"readings\" WHERE time >= {s_ms}ms AND time < {e_ms}ms"),
            promql: PromQuery {
                query: format!("sum(count_over_time(readings_velocity[{range}s]))"),
                start_s: end_s,
                end_s,
                step_s: 60,
            },
        },
    ]
}

#[derive(Debug, Serialize)]
pub struct QueryResult {
    pub name: String,
    pub description: String,
    pub query: String,
    pub runs: u32,
    /// Values (rows x value columns) in the last answer, to compare targets.
    pub values: u64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct QueryReport {
    pub url: String,
    pub flavor: Flavor,
    pub db: String,
    pub start: String,
    pub end_s: i64,
    pub queries: Vec<QueryResult>,
}

pub async fn run(args: QueryArgs) -> anyhow::Result<i32> {
    let start_s = parse_start(&args.start)? / 1_000_000_000;
    let end_s = match humantime::parse_duration(&args.end) {
        Ok(d) => start_s + d.as_secs() as i64,
        Err(_) => parse_start(&args.end)? / 1_000_000_000,
    };
    if end_s <= start_s {
        bail!("--end must be after --start");
    }
    for q in &args.queries {
        if !QUERY_NAMES.contains(&q.as_str()) {
            bail!("unknown query {q:?}; known: {}", QUERY_NAMES.join(", "));
        }
    }
    let client = reqwest::Client::builder().timeout(args.timeout).build().context("HTTP client")?;
    let url = args.url.trim_end_matches('/').to_owned();
    let mut results = Vec::new();
    let mut failed = false;
    for q in queries(&args.truck, &args.fleet, start_s, end_s) {
        if !args.queries.is_empty() && !args.queries.iter().any(|n| n == q.name) {
            continue;
        }
        let text = match args.flavor {
            Flavor::Influxql => q.influxql.clone(),
            Flavor::Promql => q.promql.query.clone(),
        };
        let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds");
        let mut values = 0;
        let mut error = None;
        for i in 0..args.warmup + args.runs {
            let t = Instant::now();
            let r = match args.flavor {
                Flavor::Influxql => influxql_once(&client, &url, &args, &q.influxql).await,
                Flavor::Promql => promql_once(&client, &url, &q.promql, args.extra_label.as_deref()).await,
            };
            let took = t.elapsed();
            match r {
                Ok(n) => {
                    values = n;
                    if i >= args.warmup {
                        hist.saturating_record((took.as_micros() as u64).max(1));
                    }
                }
                Err(e) => {
                    error = Some(format!("{e:#}"));
                    break;
                }
            }
        }
        failed |= error.is_some();
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |p: f64| if hist.is_empty() { 0.0 } else { ms(hist.value_at_quantile(p)) };
        results.push(QueryResult {
            name: q.name.into(),
            description: q.description.into(),
            query: text,
            runs: hist.len() as u32,
            values,
            median_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            min_ms: if hist.is_empty() { 0.0 } else { ms(hist.min()) },
            max_ms: if hist.is_empty() { 0.0 } else { ms(hist.max()) },
            error,
        });
    }
    let report = QueryReport {
        url,
        flavor: args.flavor,
        db: args.db.clone(),
        start: args.start.clone(),
        end_s,
        queries: results,
    };
    let table = table(&report);
    if args.json {
        eprint!("{table}");
        println!("{}", serde_json::to_string(&report).expect("report serializes"));
    } else {
        print!("{table}");
    }
    Ok(if failed { 1 } else { 0 })
}

fn table(r: &QueryReport) -> String {
    let mut out = format!("{} ({:?}, db {})\n", r.url, r.flavor, r.db);
    out.push_str("| query | runs | values | median ms | p90 ms | p99 ms | min ms | max ms |\n|---|---|---|---|---|---|---|---|\n");
    for q in &r.queries {
        match &q.error {
            Some(e) => {
                out.push_str(&format!("| {} | error: {} | | | | | | |\n", q.name, e.replace('|', "/")))
            }
            None => out.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                q.name, q.runs, q.values, q.median_ms, q.p90_ms, q.p99_ms, q.min_ms, q.max_ms
            )),
        }
    }
    out
}

/// Runs one InfluxQL query; returns the number of values in the answer.
async fn influxql_once(
    client: &reqwest::Client,
    url: &str,
    args: &QueryArgs,
    q: &str,
) -> anyhow::Result<u64> {
    let r = crate::verify::influxql(client, url, &args.db, args.token.as_deref(), q).await?;
    let mut n = 0u64;
    for s in r["series"].as_array().into_iter().flatten() {
        for row in s["values"].as_array().into_iter().flatten() {
            n += row.as_array().map_or(0, |r| r.len().saturating_sub(1)) as u64;
        }
    }
    Ok(n)
}

async fn promql_once(
    client: &reqwest::Client,
    url: &str,
    q: &PromQuery,
    extra_label: Option<&str>,
) -> anyhow::Result<u64> {
    let mut params = vec![
        ("query", q.query.clone()),
        ("start", q.start_s.to_string()),
        ("end", q.end_s.to_string()),
        ("step", format!("{}s", q.step_s)),
        ("nocache", "1".into()),
    ];
    if let Some(l) = extra_label {
        params.push(("extra_label", l.to_owned()));
    }
    let resp = client
        .get(format!("{url}/api/v1/query_range"))
        .query(&params)
        .send()
        .await
        .context("GET /api/v1/query_range")?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("query_range answered {status}: {}", text.chars().take(300).collect::<String>());
    }
    let v: serde_json::Value = serde_json::from_str(&text).context("query_range did not answer JSON")?;
    if v["status"] != "success" {
        bail!("query_range: {}", v["error"]);
    }
    Ok(v["data"]["result"]
        .as_array()
        .map(|a| a.iter().map(|s| s["values"].as_array().map_or(0, Vec::len) as u64).sum())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_queries_cover_the_range() {
        let qs = queries("truck_3", "West", 1_000_000, 1_000_000 + 4 * HOUR_S);
        let names: Vec<&str> = qs.iter().map(|q| q.name).collect();
        assert_eq!(names, QUERY_NAMES);
        assert!(qs[0].influxql.contains("'truck_3'") && qs[0].influxql.contains("time < 1003600000ms"));
        assert!(qs[1].influxql.contains("'West'") && qs[1].influxql.contains("GROUP BY time(10m)"));
        assert!(qs[3].promql.query.contains("[14400s]"));
        assert_eq!(qs[1].promql.end_s - qs[1].promql.start_s, 4 * HOUR_S - 600);
    }
}
