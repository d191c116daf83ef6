//! HTTP transport: `--concurrency` workers, each sending one batch at a time over a pooled
//! keep-alive connection (reqwest on hyper).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::sync::{mpsc, Mutex};

use crate::cli::{Api, HttpArgs, Sink};
use crate::generator::{GenConfig, Layout, Pool};
use crate::run::{Job, Run, Stop};
use crate::stats::{RunInfo, Stats};
use crate::verify::VerifyTarget;

/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);

pub async fn run(args: HttpArgs) -> anyhow::Result<i32> {
    let mut args = args;
    args.work.db.get_or_insert_with(|| "loadgen".into());
    let w = &args.work;
    w.validate()?;
    let db = w.db.clone().expect("defaulted above");
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    if !db.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        bail!("--db {db:?}: use letters, digits, `_`, `-` and `.`");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let url = match args.api {
        Api::V1 => format!("{base}/write?db={db}&precision=ns"),
        Api::V2 => format!("{base}/api/v2/write?bucket={db}&precision=ns"),
    };
    let cfg = GenConfig {
        kind: w.schema,
        seed: w.seed,
        devices: w.devices,
        start_ns: w.start_ns()?,
        interval_ns: w.interval.as_nanos() as i64,
        layout: Layout::Batch(args.batch),
        limit: w.points,
        gzip: args.gzip,
        sample_every: 16,
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .timeout(args.timeout)
        .tcp_nodelay(true)
        .http1_only()
        .build()
        .context("building the HTTP client")?;
    if args.sink == Sink::Http {
        // Fail fast with a clear message rather than a run full of connection errors.
        client
            .get(format!("{base}/ping"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
    }

    let c = args.concurrency as usize;
    let mut run = Run::start(cfg, w.clone(), c * 2);
    let (tx, rx) = mpsc::channel::<Job>(c);
    let rx = Arc::new(Mutex::new(rx));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for i in 0..c {
        let worker = Worker {
            id: i,
            client: client.clone(),
            url: url.clone(),
            gzip: args.gzip,
            token: args.token.clone(),
            null: args.sink == Sink::Null,
            max_retries: args.max_retries,
            stats: run.stats.clone(),
            pool: run.pool.clone(),
            stop: run.stop.clone(),
        };
        let rx = rx.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let job = rx.lock().await.recv().await;
                let Some(job) = job else { break };
                worker.send(job).await;
            }
        }));
    }
    run.dispatch(t0, vec![tx], |_| 0).await;
    for w in workers {
        w.await.context("HTTP worker panicked")?;
    }
    let elapsed = t0.elapsed();
    let info = RunInfo {
        transport: "http".into(),
        target: if args.sink == Sink::Null { "null sink".into() } else { url.clone() },
        schema: w.schema,
        devices: w.devices,
        unit_lines: args.batch,
        concurrency: args.concurrency,
        rate: w.rate,
        qos: None,
        pregenerated: w.pregenerate,
        gzip: args.gzip,
        measurements: w.schema.measurements().iter().map(|s| s.to_string()).collect(),
        ack: "HTTP 204".into(),
    };
    let verify = (w.verify && args.sink == Sink::Http).then(|| VerifyTarget {
        url: base.clone(),
        db: db.clone(),
        token: args.token.clone(),
        kind: w.schema,
        expect_acked: true,
    });
    Ok(run.finish(elapsed, info, verify).await)
}

struct Worker {
    id: usize,
    client: reqwest::Client,
    url: String,
    gzip: bool,
    token: Option<String>,
    null: bool,
    max_retries: u32,
    stats: Arc<Stats>,
    pool: Pool,
    stop: Arc<Stop>,
}

/// What the server said about one batch.
enum Outcome {
    Stored,
    Partial {
        written: u64,
        rejected: u64,
    },
    Retry(Duration),
    Failed(String),
    /// 401/403: the token is missing or not allowed; every other request will fail alike.
    Refused(String),
}

impl Worker {
    async fn send(&self, job: Job) {
        if self.stats.refusal().is_some() {
            // The run is being abandoned: the jobs still queued are not sent.
            self.pool.recycle(job.body);
            return;
        }
        let start = job.due.unwrap_or_else(Instant::now);
        self.stats.on_sent(&job.meta, job.body.len());
        if self.null {
            self.stats.on_acked(&job.meta, start.elapsed(), self.id);
            self.pool.recycle(job.body);
            return;
        }
        let mut attempt = 0;
        loop {
            match self.post(&job).await {
                Outcome::Stored => {
                    self.stats.on_acked(&job.meta, start.elapsed(), self.id);
                    break;
                }
                Outcome::Partial { written, rejected } => {
                    self.stats.error("http_400_partial");
                    self.stats.on_partial(written, rejected, start.elapsed(), self.id);
                    break;
                }
                Outcome::Retry(wait) if attempt < self.max_retries => {
                    attempt += 1;
                    self.stats.retries.fetch_add(1, Relaxed);
                    tokio::time::sleep(wait).await;
                }
                Outcome::Retry(_) => {
                    self.stats.error("retries_exhausted");
                    break;
                }
                Outcome::Failed(kind) => {
                    self.stats.error(&kind);
                    break;
                }
                Outcome::Refused(why) => {
                    self.stats.error("refused");
                    self.stats.refuse(why);
                    self.stop.stop();
                    break;
                }
            }
        }
        self.pool.recycle(job.body);
    }

    async fn post(&self, job: &Job) -> Outcome {
        let mut req = self.client.post(&self.url).body(job.body.clone());
        if self.gzip {
            req = req.header("Content-Encoding", "gzip");
        }
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Token {t}"));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(error_kind(&e)),
        };
        let status = resp.status().as_u16();
        match status {
            200 | 204 => {
                // Drain the (empty) body so the connection goes back to the pool.
                let _ = resp.bytes().await;
                Outcome::Stored
            }
            429 | 503 => {
                self.stats.error(&format!("http_{status}"));
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                    .map_or(Duration::from_millis(100), Duration::from_secs)
                    .min(MAX_RETRY_WAIT);
                let _ = resp.bytes().await;
                Outcome::Retry(wait)
            }
            400 => {
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                match (body["points_written"].as_u64(), body["rejected_total"].as_u64()) {
                    (Some(written), Some(rejected)) => Outcome::Partial { written, rejected },
                    _ => Outcome::Failed("http_400".into()),
                }
            }
            401 | 403 => {
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                let message = body["message"].as_str().or(body["error"].as_str()).unwrap_or("");
                let hint = if self.token.is_some() {
                    "check the token and that it may write to this database"
                } else {
                    "authentication is on: pass --token or set STRATA_TOKEN"
                };
                Outcome::Refused(format!("the server answered {status} ({message}): {hint}"))
            }
            s => {
                let _ = resp.bytes().await;
                Outcome::Failed(format!("http_{s}"))
            }
        }
    }
}

fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "io".into()
    }
}
