//! Crash soak: `kill -9` the real `strata` server many times, at random moments and in the
//! middle of flushes and compactions, under mixed HTTP and MQTT QoS 1 load, and check after
//! every restart that every acknowledged point is there with its value and that no point holds
//! a value that was never written.
//!
//! ```text
//! crash-soak [--rounds N] [--max-seconds S] [--strata PATH] [--data-dir DIR] [--seed N]
//!            [--http-writers N] [--mqtt-writers N] [--rate POINTS/S] [--full-every N] [--keep]
//! ```
//!
//! `--strata` defaults to `$STRATA_BIN`, else the `strata` next to this executable; the data
//! directory to a fresh one under `$TMPDIR`, deleted after a pass unless `--keep`.
//!
//! Each round starts the server on the data directory the previous round killed (so the
//! server's own recovery runs every time), checks what earlier rounds left, runs the load and
//! kills the server with SIGKILL after a random delay (uniform 50 ms - 2 s), or the moment a
//! segment file is being written by a flush or by a compaction (watched as `*.seg.tmp` files
//! in the data directory; after the kill, the files left behind say what was interrupted).
//!
//! Data: measurement `soak` in database `telemetry`; one series per writer and round
//! (`device=h<i>` for HTTP writers, `m<i>` for MQTT publishers, `round=r<n>`). Point `seq` of
//! a writer in round `n` has a timestamp and an integer value computed from (writer, round,
//! seq), so the expected data is three numbers per writer and round: points acknowledged (a
//! prefix: each writer waits for its answers in order), points sent (acknowledged or possibly
//! stored), and the round. HTTP points count as acknowledged after a 2xx; a 503 or 429 is
//! retried with the same points (writing a point twice is harmless). MQTT messages carry
//! explicit timestamps and count as acknowledged after their PUBACK.
//!
//! Verification after each restart, through the server's `/query` (CSV, epoch=ns):
//! - the round just killed, row by row: every acknowledged point present with its value; any
//!   other point only if it was sent, with its value; nothing else;
//! - the `RECENT_ROUNDS` (20) rounds before it by `count(v)` and `sum(v)` per series, which
//!   must equal what was found when that round was checked row by row (so a lost or changed
//!   point shows up);
//! - every `--full-every` (50) rounds all earlier rounds by count/sum and one of them row by
//!   row again; at the end every round row by row, then a clean stop (SIGTERM, exit 0).
//!
//! Checking every round row by row after every restart would make the run quadratic (20 M
//! points after 1,000 rounds); count and sum per series catch a lost, doubled or changed
//! point too (unless two changes cancel out exactly), at the cost of one aggregate query.
//!
//! The load is paced (`--rate`, 5,000 points/s per writer) so that a thousand rounds stay a
//! data set of ~20 M points. `storage.sync` stays at its default, `always`: a PUBACK or 2xx
//! comes after the fsync. (`interval` and `never` also survive `kill -9`, which keeps the page
//! cache; they lose acknowledged writes only on power loss, which this soak does not test.)
//!
//! Exit status 0 after the rounds (or `--max-seconds`) with a summary line; 1 at the first
//! failure, with the round, the series and points, and the server's logs written beside the
//! data directory, which is kept.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::mqttbytes::v4::{self, Packet};
use rumqttc::mqttbytes::QoS;
use strata_e2e::mqtt::mqtt_addr;
use strata_e2e::server::{ServerBuilder, StrataServer};

/// Time span of one round's points: rounds never share a timestamp range.
const ROUND_NS: i64 = 10_000_000_000;
/// Distance between consecutive points of one writer.
const STEP_NS: i64 = 100_000;
/// Most points one writer writes in a round (fills `ROUND_NS`).
const MAX_SEQ: u64 = (ROUND_NS / STEP_NS) as u64;
/// Longest a load phase lasts: random kills within 2 s, aimed kills give up at 3 s.
const AIM_TIMEOUT: Duration = Duration::from_secs(3);
/// Rounds checked by count/sum after every restart; all of them every `--full-every` rounds.
const RECENT_ROUNDS: u64 = 20;
const DB: &str = "telemetry";
const MEASUREMENT: &str = "soak";

struct Args {
    rounds: u64,
    max_seconds: u64,
    strata: PathBuf,
    data_dir: Option<PathBuf>,
    seed: u64,
    http_writers: u64,
    mqtt_writers: u64,
    full_every: u64,
    /// Points per second each writer sends at most.
    rate: u64,
    keep: bool,
    /// Test hook: after the kill of the last round, delete the WAL files, so the soak must
    /// report acknowledged points as lost (proves the checker can fail).
    sabotage_wal: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: crash-soak [--rounds N] [--max-seconds S] [--strata PATH] [--data-dir DIR] [--seed N]\n\
         \x20                 [--http-writers N] [--mqtt-writers N] [--rate POINTS/S] [--full-every N] [--keep]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let exe = std::env::current_exe().expect("current exe");
    let sibling = exe.parent().map(|d| d.join("strata")).unwrap_or_else(|| "strata".into());
    let mut a = Args {
        rounds: 1000,
        max_seconds: 3600,
        strata: std::env::var_os("STRATA_BIN").map(PathBuf::from).unwrap_or(sibling),
        data_dir: None,
        seed: SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
        http_writers: 2,
        mqtt_writers: 2,
        full_every: 50,
        rate: 5000,
        keep: false,
        sabotage_wal: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        let mut num = || value().parse::<u64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--rounds" => a.rounds = num(),
            "--max-seconds" => a.max_seconds = num(),
            "--seed" => a.seed = num(),
            "--http-writers" => a.http_writers = num(),
            "--mqtt-writers" => a.mqtt_writers = num(),
            "--full-every" => a.full_every = num().max(1),
            "--rate" => a.rate = num().max(1),
            "--strata" => a.strata = value().into(),
            "--data-dir" => a.data_dir = Some(value().into()),
            "--keep" => a.keep = true,
            "--sabotage-wal" => a.sabotage_wal = true,
            _ => usage(),
        }
    }
    if !a.strata.exists() {
        eprintln!("crash-soak: {} not found: build it or pass --strata PATH", a.strata.display());
        std::process::exit(2);
    }
    a
}

/// The deterministic data: where point `seq` of writer `device` in `round` lies and what it
/// holds.
#[derive(Clone, Copy)]
struct Model {
    /// Timestamp of round 0's first point.
    base: i64,
}

impl Model {
    fn round_start(&self, round: u64) -> i64 {
        self.base + round as i64 * ROUND_NS
    }

    fn ts(&self, round: u64, seq: u64) -> i64 {
        self.round_start(round) + seq as i64 * STEP_NS
    }

    /// The point a timestamp of `round` stands for, if any.
    fn seq_of(&self, round: u64, ts: i64) -> Option<u64> {
        let off = ts - self.round_start(round);
        (off >= 0 && off % STEP_NS == 0 && off < ROUND_NS).then_some((off / STEP_NS) as u64)
    }

    /// A value no other (device, round, seq) is likely to share, below 2^40 so that sums of
    /// a round's values stay exact in an i64.
    fn value(device: &str, round: u64, seq: u64) -> i64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in device.bytes().chain(round.to_le_bytes()).chain(seq.to_le_bytes()) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        (h >> 24) as i64
    }

    fn line(&self, tags: &str, device: &str, round: u64, seq: u64) -> String {
        format!(
            "{MEASUREMENT},{tags}round=r{round} v={}i {}\n",
            Model::value(device, round, seq),
            self.ts(round, seq)
        )
    }
}

/// How far one writer got in one round: points `0..acked` were acknowledged, `acked..sent`
/// may or may not be stored.
#[derive(Debug, Clone, Default)]
struct Progress {
    device: String,
    acked: u64,
    sent: u64,
    /// Something went wrong while the server was up (not a durability failure, but the soak
    /// stops on it: the server misbehaved under load).
    error: Option<String>,
}

/// What one round left, as found by its row-by-row check.
struct RoundRecord {
    writers: Vec<Progress>,
    /// (count, sum) of the stored values per device.
    found: BTreeMap<String, (u64, i64)>,
}

#[derive(Default)]
struct Totals {
    acked_http: u64,
    acked_mqtt: u64,
    maybe: u64,
    maybe_present: u64,
    kills_random: u64,
    aimed_flush: u64,
    aimed_flush_hit: u64,
    aimed_compaction: u64,
    aimed_compaction_hit: u64,
    /// What the files left behind by the kill say was in progress.
    cut_flush: u64,
    cut_compaction: u64,
    cut_compaction_unlink: u64,
    verified_rows: u64,
    queries: u64,
}

struct Failure {
    round: u64,
    what: String,
}

fn main() {
    let args = parse_args();
    let (data_dir, owned) = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).expect("create data dir");
            // Points of an earlier run would count as invented ones.
            if std::fs::read_dir(d).map_or(true, |mut e| e.next().is_some()) {
                eprintln!("crash-soak: {} is not an empty directory", d.display());
                std::process::exit(2);
            }
            (d.clone(), false)
        }
        None => (tempfile::Builder::new().prefix("crash-soak-").tempdir().expect("tempdir").keep(), true),
    };
    println!(
        "crash-soak: seed {} rounds {} max {} s, {} HTTP writers + {} MQTT QoS 1 publishers, strata {}, data {}",
        args.seed,
        args.rounds,
        args.max_seconds,
        args.http_writers,
        args.mqtt_writers,
        args.strata.display(),
        data_dir.display()
    );
    let started = Instant::now();
    let mut soak = Soak::new(&args, &data_dir);
    match soak.run(started) {
        Ok(()) => {
            let t = &soak.totals;
            println!(
                "crash-soak: PASS rounds {} in {:.0} s; acknowledged {} points (HTTP {}, MQTT {}), all verified; \
                 unacknowledged sent {} (present {}); rows checked {} in {} queries; kills: random {}, aimed at flush {} \
                 (hit {}), aimed at compaction {} (hit {}); cut by the kill: flush {}, compaction {}, compaction \
                 between rename and unlink {}",
                soak.rounds.len(),
                started.elapsed().as_secs_f64(),
                t.acked_http + t.acked_mqtt,
                t.acked_http,
                t.acked_mqtt,
                t.maybe,
                t.maybe_present,
                t.verified_rows,
                t.queries,
                t.kills_random,
                t.aimed_flush,
                t.aimed_flush_hit,
                t.aimed_compaction,
                t.aimed_compaction_hit,
                t.cut_flush,
                t.cut_compaction,
                t.cut_compaction_unlink
            );
            if owned && !args.keep {
                let _ = std::fs::remove_dir_all(&data_dir);
            }
        }
        Err(f) => {
            let logs = data_dir.with_extension("logs");
            let _ = std::fs::create_dir_all(&logs);
            for (name, text) in &soak.logs {
                let _ = std::fs::write(logs.join(name), text);
            }
            println!("crash-soak: FAIL round {}: {}", f.round, f.what);
            println!("crash-soak: data kept in {}, server logs in {}", data_dir.display(), logs.display());
            std::process::exit(1);
        }
    }
}

struct Soak<'a> {
    args: &'a Args,
    data_dir: &'a Path,
    model: Model,
    rng: StdRng,
    rounds: Vec<RoundRecord>,
    totals: Totals,
    /// The server logs of the round under way by name (before the kill, after the restart),
    /// written out on failure.
    logs: Vec<(String, String)>,
}

impl<'a> Soak<'a> {
    fn new(args: &'a Args, data_dir: &'a Path) -> Soak<'a> {
        // Points lie in the past (every round's range ends before the start), so no limit on
        // future timestamps can refuse them; one minute partitions get several rounds each.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as i64;
        let span = (args.rounds as i64 + 1) * ROUND_NS;
        let base = (now - span - 60_000_000_000) / 60_000_000_000 * 60_000_000_000;
        Soak {
            args,
            data_dir,
            model: Model { base },
            rng: StdRng::seed_from_u64(args.seed),
            rounds: Vec::new(),
            totals: Totals::default(),
            logs: Vec::new(),
        }
    }

    /// Small memtables, one minute partitions, compaction from two segments every second at
    /// the slowest allowed rate: flushes and compactions are under way most of the time.
    /// `storage.sync` stays at its default.
    fn start(&mut self) -> StrataServer {
        ServerBuilder::new(self.data_dir)
            .binary(&self.args.strata)
            .set("storage.shards", 2)
            .set("storage.memtable_size", "64KiB")
            .set("storage.partition_duration", "1m")
            .set("storage.maintenance_interval", "1s")
            .set("storage.compaction_min_segments", 2)
            .set("storage.compaction_rate", "1MiB")
            .env("RUST_LOG", "info")
            .start()
    }

    fn run(&mut self, started: Instant) -> Result<(), Failure> {
        let deadline = started + Duration::from_secs(self.args.max_seconds);
        let mut server = self.start();
        for round in 0..self.args.rounds {
            if Instant::now() >= deadline {
                println!("crash-soak: --max-seconds reached after {round} rounds");
                break;
            }
            let load = self.load_and_kill(round, server)?;
            if self.args.sabotage_wal && round + 1 == self.args.rounds {
                sabotage_wal(self.data_dir);
            }
            let t0 = Instant::now();
            server = self.start();
            let t1 = Instant::now();
            let outcome = self.verify(round, &server, load.writers);
            self.logs.push((format!("round-{round}-restarted.log"), server.log()));
            let (rows, earlier) = outcome?;
            self.logs.clear();
            println!(
                "round {round}: kill {} after {} ms{}; acked {} (unacked sent {}, present {}); checked {rows} rows \
                 + {earlier} rounds by count/sum; restart {} ms, verify {} ms",
                load.kind,
                load.after.as_millis(),
                load.cut.map(|c| format!(", cut {c}")).unwrap_or_default(),
                load.acked,
                load.maybe,
                rows - load.acked,
                (t1 - t0).as_millis(),
                t1.elapsed().as_millis(),
            );
        }
        // The end: every round row by row, then a clean stop.
        let last = self.rounds.len() as u64;
        for r in 0..self.rounds.len() as u64 {
            self.recheck(last, r, &server)?;
        }
        let earlier = self.check_earlier(0, last, &server)?;
        println!("crash-soak: final check of all {earlier} rounds row by row and by count/sum done");
        server.stop();
        Ok(())
    }

    fn load_and_kill(&mut self, round: u64, server: StrataServer) -> Result<Load, Failure> {
        let mqtt = mqtt_addr(&server);
        let dead = Arc::new(AtomicBool::new(false));
        let mut writers: Vec<JoinHandle<Progress>> = Vec::new();
        for i in 0..self.args.http_writers {
            let (url, dead, model, seed, rate) = (
                server.url(&format!("/write?db={DB}")),
                dead.clone(),
                self.model,
                self.rng.gen(),
                self.args.rate,
            );
            writers.push(std::thread::spawn(move || http_writer(&url, i, round, model, seed, rate, &dead)));
        }
        for i in 0..self.args.mqtt_writers {
            let (dead, model, seed, rate) = (dead.clone(), self.model, self.rng.gen(), self.args.rate);
            writers.push(std::thread::spawn(move || mqtt_writer(mqtt, i, round, model, seed, rate, &dead)));
        }
        let querier = {
            let (url, dead, model) = (server.url("/query"), dead.clone(), self.model);
            std::thread::spawn(move || query_load(&url, round, model, &dead))
        };

        let began = Instant::now();
        // The sabotaged round runs long enough that its WAL surely holds acknowledged points.
        let sabotaged = self.args.sabotage_wal && round + 1 == self.args.rounds;
        let kind = match if sabotaged { 0 } else { self.rng.gen_range(0..4) } {
            0 | 1 => {
                self.totals.kills_random += 1;
                let ms = if sabotaged { 800 } else { self.rng.gen_range(50..2000) };
                std::thread::sleep(Duration::from_millis(ms));
                "random"
            }
            aim => {
                let compaction = aim == 3;
                std::thread::sleep(Duration::from_millis(self.rng.gen_range(50..300)));
                let hit = wait_for_segment_write(self.data_dir, compaction, began + AIM_TIMEOUT);
                match (compaction, hit) {
                    (false, h) => {
                        self.totals.aimed_flush += 1;
                        self.totals.aimed_flush_hit += h as u64;
                    }
                    (true, h) => {
                        self.totals.aimed_compaction += 1;
                        self.totals.aimed_compaction_hit += h as u64;
                    }
                }
                match (compaction, hit) {
                    (false, true) => "at a flush",
                    (true, true) => "at a compaction",
                    (false, false) => "aimed at a flush (none seen)",
                    (true, false) => "aimed at a compaction (none seen)",
                }
            }
        };
        dead.store(true, Ordering::SeqCst);
        // SAFETY: kill(2) on our own, not yet reaped child: no memory-safety preconditions.
        let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill(SIGKILL) failed");
        let after = began.elapsed();
        // The log up to the kill (the file goes away with the server's work directory).
        self.logs.push((format!("round-{round}-killed.log"), server.log()));
        server.kill9();
        let cut = cut_by_kill(self.data_dir);
        self.totals.cut_flush += cut.flush as u64;
        self.totals.cut_compaction += cut.compaction as u64;
        self.totals.cut_compaction_unlink += cut.compaction_unlink as u64;

        let mut progress = Vec::new();
        for w in writers {
            progress.push(w.join().expect("writer thread panicked"));
        }
        if let Err(e) = querier.join().expect("query thread panicked") {
            return Err(Failure { round, what: format!("query load while the server was up: {e}") });
        }
        for p in &progress {
            if let Some(e) = &p.error {
                return Err(Failure {
                    round,
                    what: format!("writer {} while the server was up: {e}", p.device),
                });
            }
        }
        let acked: u64 = progress.iter().map(|p| p.acked).sum();
        let maybe: u64 = progress.iter().map(|p| p.sent - p.acked).sum();
        for p in &progress {
            if p.device.starts_with('h') {
                self.totals.acked_http += p.acked;
            } else {
                self.totals.acked_mqtt += p.acked;
            }
        }
        self.totals.maybe += maybe;
        Ok(Load { writers: progress, kind, after, cut: cut.describe(), acked, maybe })
    }

    /// Checks after a restart; returns (rows checked, earlier rounds checked by count/sum).
    fn verify(
        &mut self,
        round: u64,
        server: &StrataServer,
        writers: Vec<Progress>,
    ) -> Result<(u64, u64), Failure> {
        let found = self.check_rows(round, round, server, &writers)?;
        let rows: u64 = found.values().map(|(c, _)| c).sum();
        let acked: u64 = writers.iter().map(|p| p.acked).sum();
        self.totals.maybe_present += rows - acked;
        self.rounds.push(RoundRecord { writers, found });
        let full = round > 0 && round.is_multiple_of(self.args.full_every);
        let from = if full { 0 } else { (round + 1).saturating_sub(RECENT_ROUNDS) };
        let earlier = self.check_earlier(from, round + 1, server)?;
        if full {
            let r = self.rng.gen_range(0..round);
            self.recheck(round, r, server)?;
        }
        Ok((rows, earlier))
    }

    /// Row-by-row check of an earlier round; it must also still hold what it held when it was
    /// first checked.
    fn recheck(&mut self, now: u64, r: u64, server: &StrataServer) -> Result<(), Failure> {
        let writers = self.rounds[r as usize].writers.clone();
        let found = self.check_rows(now, r, server, &writers)?;
        if found != self.rounds[r as usize].found {
            return Err(Failure {
                round: now,
                what: format!(
                    "round {r} changed since it was checked: (count, sum) per device was {:?}, now {:?}",
                    self.rounds[r as usize].found, found
                ),
            });
        }
        Ok(())
    }

    /// Every stored point of round `r`: each acknowledged point present with its value, any
    /// other point sent and with its value. Returns (count, sum) per device.
    fn check_rows(
        &mut self,
        now: u64,
        r: u64,
        server: &StrataServer,
        writers: &[Progress],
    ) -> Result<BTreeMap<String, (u64, i64)>, Failure> {
        let fail = |what: String| Failure { round: now, what };
        let q = format!(
            "SELECT v FROM {MEASUREMENT} WHERE time >= {} AND time < {} GROUP BY *",
            self.model.round_start(r),
            self.model.round_start(r + 1)
        );
        let rows = query_csv(server, &q).map_err(|e| fail(format!("checking round {r}: {e}")))?;
        self.totals.queries += 1;
        let mut seen: BTreeMap<String, Vec<bool>> =
            writers.iter().map(|p| (p.device.clone(), vec![false; p.sent as usize])).collect();
        let mut found: BTreeMap<String, (u64, i64)> = BTreeMap::new();
        for row in rows {
            let [tags, time, v] = &row[..] else {
                return Err(fail(format!("round {r}: unexpected row {row:?}")));
            };
            let (device, round_tag) = parse_tags(tags);
            let (Ok(ts), Ok(v)) = (time.parse::<i64>(), v.parse::<i64>()) else {
                return Err(fail(format!("round {r}: unparsable row {row:?}")));
            };
            let phantom = |why: &str| {
                fail(format!("round {r}: stored point {tags} time {ts} value {v} was never written ({why})"))
            };
            if round_tag != format!("r{r}") {
                return Err(phantom("another round's series in this round's time range"));
            }
            let Some(bits) = seen.get_mut(&device) else {
                return Err(phantom("no such writer in this round"));
            };
            let Some(seq) = self.model.seq_of(r, ts) else {
                return Err(phantom("not a point timestamp"));
            };
            let Some(bit) = bits.get_mut(seq as usize) else {
                return Err(phantom(&format!("point {seq}, but only points below {} were sent", bits.len())));
            };
            if *bit {
                return Err(phantom(&format!("point {seq} returned twice")));
            }
            *bit = true;
            let expected = Model::value(&device, r, seq);
            if v != expected {
                return Err(fail(format!(
                    "round {r}: point {seq} of {device} at {ts} holds {v}, written was {expected}"
                )));
            }
            let e = found.entry(device).or_default();
            e.0 += 1;
            e.1 += v;
        }
        for p in writers {
            let bits = &seen[&p.device];
            let missing: Vec<u64> = (0..p.acked).filter(|&s| !bits[s as usize]).collect();
            if !missing.is_empty() {
                return Err(fail(format!(
                    "round {r}: {} of {} acknowledged points of {} are missing (acknowledged 0..{}, sent 0..{}): \
                     points {}",
                    missing.len(),
                    p.acked,
                    p.device,
                    p.acked,
                    p.sent,
                    ranges(&missing)
                )));
            }
        }
        self.totals.verified_rows += found.values().map(|(c, _)| c).sum::<u64>();
        Ok(found)
    }

    /// `count(v)` and `sum(v)` of every series of rounds `from..upto` equal what their
    /// row-by-row checks found. Returns the number of rounds compared.
    fn check_earlier(&mut self, from: u64, upto: u64, server: &StrataServer) -> Result<u64, Failure> {
        let now = upto.saturating_sub(1);
        if upto <= from {
            return Ok(0);
        }
        let q = format!(
            "SELECT count(v), sum(v) FROM {MEASUREMENT} WHERE time >= {} AND time < {} GROUP BY *",
            self.model.round_start(from),
            self.model.round_start(upto)
        );
        let rows = query_csv(server, &q)
            .map_err(|e| Failure { round: now, what: format!("count/sum query: {e}") })?;
        self.totals.queries += 1;
        let mut got: BTreeMap<(u64, String), (u64, i64)> = BTreeMap::new();
        for row in rows {
            let [tags, _time, count, sum] = &row[..] else {
                return Err(Failure { round: now, what: format!("unexpected count/sum row {row:?}") });
            };
            let (device, round_tag) = parse_tags(tags);
            let round = round_tag.strip_prefix('r').and_then(|n| n.parse::<u64>().ok());
            let (Some(round), Ok(count), Ok(sum)) = (round, count.parse::<u64>(), sum.parse::<i64>()) else {
                return Err(Failure { round: now, what: format!("unparsable count/sum row {row:?}") });
            };
            if count > 0 {
                got.insert((round, device), (count, sum));
            }
        }
        let want: BTreeMap<(u64, String), (u64, i64)> = self.rounds[from as usize..upto as usize]
            .iter()
            .enumerate()
            .flat_map(|(i, rec)| rec.found.iter().map(move |(d, cs)| ((from + i as u64, d.clone()), *cs)))
            .collect();
        if got != want {
            let diff: Vec<String> = want
                .keys()
                .chain(got.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|k| want.get(*k) != got.get(*k))
                .take(10)
                .map(|k| {
                    format!("round {} {}: (count, sum) was {:?}, now {:?}", k.0, k.1, want.get(k), got.get(k))
                })
                .collect();
            return Err(Failure { round: now, what: format!("earlier rounds changed: {}", diff.join("; ")) });
        }
        Ok(upto - from)
    }
}

struct Load {
    writers: Vec<Progress>,
    kind: &'static str,
    after: Duration,
    cut: Option<String>,
    acked: u64,
    maybe: u64,
}

fn http_writer(
    url: &str,
    idx: u64,
    round: u64,
    model: Model,
    seed: u64,
    rate: u64,
    dead: &AtomicBool,
) -> Progress {
    let device = format!("h{idx}");
    let tags = format!("device={device},");
    let mut p = Progress { device: device.clone(), ..Progress::default() };
    let mut rng = StdRng::seed_from_u64(seed);
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let began = Instant::now();
    while p.acked < MAX_SEQ && !dead.load(Ordering::SeqCst) {
        pace(began, p.acked, rate);
        let n = rng.gen_range(1..=100).min(MAX_SEQ - p.acked);
        let body: String = (p.acked..p.acked + n).map(|s| model.line(&tags, &device, round, s)).collect();
        p.sent = p.acked + n;
        loop {
            match client.post(url).body(body.clone()).send() {
                Ok(r) if r.status().is_success() => {
                    p.acked += n;
                    break;
                }
                // Pushed back: part of the request may be stored; send the same points again.
                Ok(r) if r.status() == 503 || r.status() == 429 => {
                    if dead.load(Ordering::SeqCst) {
                        return p;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ if dead.load(Ordering::SeqCst) => return p,
                Ok(r) => {
                    let status = r.status();
                    p.error = Some(format!("HTTP {status}: {}", r.text().unwrap_or_default()));
                    return p;
                }
                Err(e) => {
                    p.error = Some(format!("request failed: {e}"));
                    return p;
                }
            }
        }
    }
    p
}

fn mqtt_writer(
    addr: SocketAddr,
    idx: u64,
    round: u64,
    model: Model,
    seed: u64,
    rate: u64,
    dead: &AtomicBool,
) -> Progress {
    let device = format!("m{idx}");
    let mut p = Progress { device: device.clone(), ..Progress::default() };
    let mut rng = StdRng::seed_from_u64(seed);
    let fail = |mut p: Progress, e: String| {
        if !dead.load(Ordering::SeqCst) {
            p.error = Some(e);
        }
        p
    };
    let mut conn = match Mqtt::connect(addr, &device) {
        Ok(c) => c,
        Err(e) => return fail(p, e),
    };
    // Several messages in flight, so the server batches them and a kill can fall between a
    // batch's write and its PUBACKs.
    let window = rng.gen_range(1..=16usize);
    let mut in_flight: std::collections::VecDeque<(u16, u64)> = std::collections::VecDeque::new();
    let mut pkid = 0u16;
    let began = Instant::now();
    while p.sent < MAX_SEQ && !dead.load(Ordering::SeqCst) {
        pace(began, p.sent, rate);
        let n = rng.gen_range(1..=10).min(MAX_SEQ - p.sent);
        let payload: String = (p.sent..p.sent + n).map(|s| model.line("", &device, round, s)).collect();
        pkid = pkid % u16::MAX + 1;
        let mut msg = v4::Publish::new(format!("{DB}/{device}/{MEASUREMENT}"), QoS::AtLeastOnce, payload);
        msg.pkid = pkid;
        // Counted as sent before the bytes go out: a partly written message may be stored.
        p.sent += n;
        if let Err(e) = conn.send_publish(&msg) {
            return fail(p, format!("sending PUBLISH: {e}"));
        }
        in_flight.push_back((pkid, p.sent));
        while in_flight.len() >= window || (p.sent >= MAX_SEQ && !in_flight.is_empty()) {
            match conn.recv() {
                Ok(Packet::PubAck(a)) => {
                    let (id, end) = in_flight.pop_front().expect("in flight");
                    if a.pkid != id {
                        return fail(p, format!("PUBACK {} while {id} was the oldest in flight", a.pkid));
                    }
                    p.acked = end;
                }
                Ok(other) => return fail(p, format!("unexpected packet {other:?}")),
                Err(e) => return fail(p, e),
            }
        }
    }
    p
}

/// Sleeps until `points` are due at `rate` points per second since `began`: the load is paced
/// so that a thousand rounds stay a data set every round can be checked against quickly.
fn pace(began: Instant, points: u64, rate: u64) {
    let due = began + Duration::from_secs_f64(points as f64 / rate as f64);
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// A minimal MQTT 3.1.1 publisher over rumqttc's codec that reports errors instead of
/// panicking (the server dies under it on purpose).
struct Mqtt {
    stream: TcpStream,
    buf: bytes::BytesMut,
}

impl Mqtt {
    fn connect(addr: SocketAddr, client_id: &str) -> Result<Mqtt, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let mut c = Mqtt { stream, buf: bytes::BytesMut::new() };
        let mut out = bytes::BytesMut::new();
        let mut connect = v4::Connect::new(client_id);
        connect.keep_alive = 60;
        connect.write(&mut out).map_err(|e| e.to_string())?;
        c.stream.write_all(&out).map_err(|e| format!("sending CONNECT: {e}"))?;
        match c.recv()? {
            Packet::ConnAck(a) if a.code == v4::ConnectReturnCode::Success => Ok(c),
            other => Err(format!("expected CONNACK 0, got {other:?}")),
        }
    }

    fn send_publish(&mut self, p: &v4::Publish) -> std::io::Result<()> {
        let mut out = bytes::BytesMut::new();
        p.write(&mut out).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.stream.write_all(&out)
    }

    fn recv(&mut self) -> Result<Packet, String> {
        loop {
            match v4::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Ok(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(format!("malformed packet from the server: {e}")),
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading: {e}")),
            }
        }
    }
}

/// Queries beside the writers (no deletes): counts over the round so far.
fn query_load(url: &str, round: u64, model: Model, dead: &AtomicBool) -> Result<(), String> {
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let q = format!(
        "SELECT count(v), max(v) FROM {MEASUREMENT} WHERE time >= {} AND time < {} GROUP BY *",
        model.round_start(round.saturating_sub(3)),
        model.round_start(round + 1)
    );
    while !dead.load(Ordering::SeqCst) {
        match client.get(url).query(&[("db", DB), ("q", q.as_str())]).send() {
            Ok(r) if r.status().is_success() => {
                let _ = r.bytes();
            }
            _ if dead.load(Ordering::SeqCst) => return Ok(()),
            Ok(r) => return Err(format!("HTTP {}: {}", r.status(), r.text().unwrap_or_default())),
            Err(e) => return Err(format!("request failed: {e}")),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Runs `q` and returns its CSV rows without the measurement name: [tags, time, columns...].
fn query_csv(server: &StrataServer, q: &str) -> Result<Vec<Vec<String>>, String> {
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().expect("client");
    let r = client
        .get(server.url("/query"))
        .header("Accept", "application/csv")
        .query(&[("db", DB), ("epoch", "ns"), ("q", q)])
        .send()
        .map_err(|e| format!("query failed: {e}"))?;
    let status = r.status();
    let text = r.text().map_err(|e| format!("reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {text}"));
    }
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let fields = split_csv(line);
        match fields.first().map(String::as_str) {
            Some("name") => {}
            Some(MEASUREMENT) => rows.push(fields[1..].to_vec()),
            _ => return Err(format!("unexpected answer line {line:?} to {q}")),
        }
    }
    Ok(rows)
}

fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// `device=h0,round=r3` -> ("h0", "r3").
fn parse_tags(tags: &str) -> (String, String) {
    let (mut device, mut round) = (String::new(), String::new());
    for kv in tags.split(',') {
        match kv.split_once('=') {
            Some(("device", v)) => device = v.to_owned(),
            Some(("round", v)) => round = v.to_owned(),
            _ => {}
        }
    }
    (device, round)
}

/// `3, 4, 5, 9` -> `3-5, 9` (at most 20 ranges).
fn ranges(v: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() && out.len() < 20 {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
        i = j + 1;
    }
    if i < v.len() {
        out.push("...".into());
    }
    out.join(", ")
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => files(&p, out),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// A segment being written: `00000042.seg.tmp` by a flush, `<hi>-<lo>-g<n>.seg.tmp` by a
/// compaction (engine/src/partition.rs `SegmentName::file_name`).
fn is_segment_tmp(name: &str, compaction: bool) -> bool {
    name.ends_with(".seg.tmp") && name.contains("-g") == compaction
}

/// Polls the data directory until a flush (or compaction) is writing a segment; false if
/// none was seen before `deadline`.
fn wait_for_segment_write(dir: &Path, compaction: bool, deadline: Instant) -> bool {
    let mut found = Vec::new();
    while Instant::now() < deadline {
        found.clear();
        files(dir, &mut found);
        if found.iter().any(|p| is_segment_tmp(file_name(p), compaction)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// What the files a kill left behind say it interrupted.
#[derive(Default)]
struct Cut {
    flush: bool,
    compaction: bool,
    /// A compaction output renamed into place while inputs it replaces are still there.
    compaction_unlink: bool,
}

impl Cut {
    fn describe(&self) -> Option<String> {
        let parts: Vec<&str> = [
            (self.flush, "a flush"),
            (self.compaction, "a compaction"),
            (self.compaction_unlink, "a compaction between rename and unlink"),
        ]
        .iter()
        .filter(|(b, _)| *b)
        .map(|(_, s)| *s)
        .collect();
        (!parts.is_empty()).then(|| parts.join(" and "))
    }
}

fn cut_by_kill(dir: &Path) -> Cut {
    let mut all = Vec::new();
    files(dir, &mut all);
    let mut cut = Cut::default();
    let mut by_dir: BTreeMap<PathBuf, Vec<(u64, u64)>> = BTreeMap::new();
    for p in &all {
        let name = file_name(p);
        cut.flush |= is_segment_tmp(name, false);
        cut.compaction |= is_segment_tmp(name, true);
        if let Some(stem) = name.strip_suffix(".seg") {
            // `hi-lo-gN` covers lo..=hi; a plain `seq` covers itself.
            let mut it = stem.split('-');
            let hi = it.next().and_then(|s| s.parse::<u64>().ok());
            let lo = it.next().and_then(|s| s.parse::<u64>().ok()).or(hi);
            if let (Some(hi), Some(lo), Some(parent)) = (hi, lo, p.parent()) {
                by_dir.entry(parent.to_owned()).or_default().push((lo, hi));
            }
        }
    }
    for segs in by_dir.values() {
        cut.compaction_unlink |= segs
            .iter()
            .any(|a| segs.iter().any(|b| a != b && b.0 <= a.0 && a.1 <= b.1 && (b.1 - b.0) > (a.1 - a.0)));
    }
    cut
}

/// Deletes every WAL file (test hook: loses whatever was not flushed).
fn sabotage_wal(dir: &Path) {
    let mut all = Vec::new();
    files(dir, &mut all);
    for p in all.iter().filter(|p| file_name(p).ends_with(".wal")) {
        let _ = std::fs::remove_file(p);
    }
}
