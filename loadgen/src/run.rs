//! What every load run shares: generator threads, the dispatcher that applies the open-loop
//! schedule and the bounds, the progress bar, and the end of a run (report, verify, output).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{mpsc, Notify};

use crate::cli::WorkloadArgs;
use crate::generator::{GenConfig, Generator, Pool, Unit};
use crate::schedule::Schedule;
use crate::stats::{Stats, UnitMeta};

/// A unit on its way to a worker.
pub struct Job {
    pub body: Bytes,
    pub meta: UnitMeta,
    pub device: u32,
    pub measurement: usize,
    /// Open loop: when the unit was due; latency is measured from here.
    pub due: Option<Instant>,
}

/// Stops a run early (Ctrl-C) or at its deadline.
#[derive(Default)]
pub struct Stop {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn stop(&self) {
        self.flag.store(true, Relaxed);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.flag.load(Relaxed)
    }

    /// Sleeps until `t` unless stopped first; returns false if stopped.
    pub async fn sleep_until(&self, t: Instant) -> bool {
        let notified = self.notify.notified();
        if self.is_stopped() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(t.into()) => !self.is_stopped(),
            _ = notified => false,
        }
    }
}

/// Where units come from: generator threads rendering while the run goes, or a queue built
/// before the clock started (`--pregenerate`).
enum Source {
    Live(mpsc::Receiver<Unit>),
    Pre(VecDeque<Unit>),
}

impl Source {
    async fn next(&mut self) -> Option<Unit> {
        match self {
            Source::Live(rx) => rx.recv().await,
            Source::Pre(q) => q.pop_front(),
        }
    }
}

pub struct Run {
    pub work: WorkloadArgs,
    pub stats: Arc<Stats>,
    pub stop: Arc<Stop>,
    pub pool: Pool,
    source: Option<Source>,
    progress: ProgressBar,
}

impl Run {
    /// Starts the generators (or pregenerates everything) and the Ctrl-C handler.
    pub fn start(cfg: GenConfig, work: WorkloadArgs, queue: usize) -> Run {
        let pool = Pool::default();
        let stop = Arc::new(Stop::default());
        let progress = if work.quiet {
            ProgressBar::hidden()
        } else {
            let pb = ProgressBar::with_draw_target(cfg.limit, ProgressDrawTarget::stderr_with_hz(4));
            let style = if cfg.limit.is_some() {
                "{elapsed_precise} [{bar:30}] {pos}/{len} lines  {msg}"
            } else {
                "{elapsed_precise} {pos} lines  {msg}"
            };
            pb.set_style(ProgressStyle::with_template(style).expect("static template").progress_chars("=> "));
            pb
        };
        let source = if work.pregenerate {
            progress.set_message("pregenerating...");
            let mut q = VecDeque::new();
            for g in 0..work.generators {
                let mut gen = Generator::new(&cfg, g, work.generators, pool.clone());
                while let Some(u) = gen.next_unit() {
                    q.push_back(u);
                }
            }
            Source::Pre(q)
        } else {
            let (tx, rx) = mpsc::channel(queue.max(1));
            for g in 0..work.generators {
                let mut gen = Generator::new(&cfg, g, work.generators, pool.clone());
                let tx = tx.clone();
                std::thread::Builder::new()
                    .name(format!("generator-{g}"))
                    .spawn(move || {
                        while let Some(u) = gen.next_unit() {
                            // The receiver is gone once the run is over: stop rendering.
                            if tx.blocking_send(u).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("spawn generator thread");
            }
            Source::Live(rx)
        };
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    stop.stop();
                }
            });
        }
        Run { work, stats: Arc::new(Stats::default()), stop, pool, source: Some(source), progress }
    }

    /// Feeds units to `outs[route(unit)]` until the source is exhausted, the deadline passes or
    /// the run is stopped. Open loop: each unit waits for its due time; it is handed on even if
    /// the worker queue is full (the wait is then charged to its latency). Returns when every
    /// unit has been handed on; dropping `outs` then tells the workers to finish.
    pub async fn dispatch<F>(&mut self, t0: Instant, outs: Vec<mpsc::Sender<Job>>, route: F)
    where
        F: Fn(&Unit) -> usize,
    {
        let schedule = Schedule::new(self.work.rate);
        let deadline = self.work.deadline().map(|d| t0 + d);
        let mut source = self.source.take().expect("dispatch runs once");
        let mut lines_before = 0u64;
        // Whether handing on the previous unit had to wait for a worker: then lateness is the
        // server's doing (and charged to latency), not the generator's.
        let mut waited_for_worker = false;
        let ticker = self.spawn_progress(t0);
        loop {
            if self.stop.is_stopped() {
                break;
            }
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d.into(), source.next()).await {
                    Ok(u) => u,
                    Err(_) => break,
                },
                None => source.next().await,
            };
            let Some(mut unit) = next else { break };
            let due = schedule.due(lines_before).map(|off| t0 + off);
            lines_before += u64::from(unit.lines);
            if let Some(due) = due {
                if deadline.is_some_and(|d| due >= d) {
                    break;
                }
                if !self.stop.sleep_until(due).await {
                    break;
                }
                if !waited_for_worker
                    && Instant::now().saturating_duration_since(due) > Duration::from_millis(5)
                {
                    self.stats.late_units.fetch_add(1, Relaxed);
                }
            }
            let out = &outs[route(&unit) % outs.len()];
            let meta = UnitMeta::of(&mut unit);
            let job = Job { body: unit.body, meta, device: unit.device, measurement: unit.measurement, due };
            let job = match out.try_send(job) {
                Ok(()) => {
                    waited_for_worker = false;
                    continue;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
                Err(mpsc::error::TrySendError::Full(job)) => job,
            };
            waited_for_worker = true;
            let sent = match deadline {
                Some(d) => matches!(tokio::time::timeout_at(d.into(), out.send(job)).await, Ok(Ok(()))),
                None => out.send(job).await.is_ok(),
            };
            if !sent {
                break;
            }
        }
        drop(outs);
        // Dropping the source stops the generator threads at their next unit.
        drop(source);
        ticker.abort();
    }

    fn spawn_progress(&self, t0: Instant) -> tokio::task::JoinHandle<()> {
        let pb = self.progress.clone();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let acked = stats.acked_lines.load(Relaxed);
                let now = Instant::now();
                let rate = (acked - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
                if now.duration_since(last.0) >= Duration::from_secs(1) {
                    last = (now, acked);
                }
                pb.set_position(acked);
                pb.set_message(format!(
                    "{:.0} lines/s now, {:.0} avg, {} errors",
                    rate,
                    acked as f64 / t0.elapsed().as_secs_f64().max(1e-3),
                    stats.error_count()
                ));
            }
        })
    }

    /// Builds the report, runs --verify, prints the table or JSON; returns the exit code.
    pub async fn finish(
        &self,
        elapsed: Duration,
        info: crate::stats::RunInfo,
        verify: Option<crate::verify::VerifyTarget>,
    ) -> i32 {
        self.progress.finish_and_clear();
        let mut report = self.stats.report(elapsed, info);
        if let Some(why) = self.stats.refusal() {
            // Nothing more to measure or verify: say why and stop.
            eprintln!("error: stopped after {} requests: {why}", report.sent_units);
            return 2;
        }
        let mut code = 0;
        if let Some(t) = verify {
            let v = crate::verify::verify(&t, &report, &self.stats.samples(), self.work.verify_timeout).await;
            if !v.ok {
                code = 1;
            }
            report.verify = Some(v);
        }
        if report.acked_units == 0 && report.sent_units > 0 && report.info.ack != "none" {
            // Nothing acknowledged at all: the target is down or refusing everything.
            code = code.max(2);
        }
        if self.work.json {
            eprint!("{}", report.table());
            println!("{}", serde_json::to_string(&report).expect("report serializes"));
        } else {
            print!("{}", report.table());
        }
        code
    }
}
