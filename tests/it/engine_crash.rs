//! Kill -9 the engine at random moments while it writes (and, in the lifecycle variant, while
//! it compacts, deletes and drops expired partitions); every acknowledged point must be
//! readable after recovery, with its value, exactly once, and no acknowledged delete may be
//! undone.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use strata_e2e::crash_model::{host, ts, value, CRASH_DB, HOSTS, POINTS};
use strata_engine::{Engine, EngineOptions, ScanRequest, TagPredicate, TimeRange, Values};

fn rounds() -> u64 {
    std::env::var("STRATA_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    run(false);
}

#[test]
fn acknowledged_writes_and_deletes_survive_kill_9_during_compaction_and_retention() {
    run(true);
}

/// Batches whose delete was acknowledged, and the one whose delete may have been under way.
#[derive(Default)]
struct Deletes {
    done: BTreeSet<(u64, u64)>,
    maybe: BTreeSet<(u64, u64)>,
}

fn run(lifecycle: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(if lifecycle { 0x11fe } else { 0x5eed });
    let mut deletes = Deletes::default();
    // (round, batch) acknowledged -> must be present.
    let mut acked: Vec<(u64, u64)> = Vec::new();
    // Highest batch started per round (may or may not be present).
    let mut started: Vec<u64> = Vec::new();
    for round in 0..rounds() {
        let sync = ["never", "always", "interval"][round as usize % 3];
        let mut child = Command::new(env!("CARGO_BIN_EXE_engine-crash-writer"))
            .arg(dir.path())
            .arg(round.to_string())
            .arg(sync)
            .args(lifecycle.then_some("lifecycle"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut acks, mut dels) = (Vec::new(), Vec::new());
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(b) = line.strip_prefix("ACK ") {
                    acks.push(b.parse::<u64>().unwrap());
                } else if let Some(b) = line.strip_prefix("DEL ") {
                    dels.push(b.parse::<u64>().unwrap());
                }
            }
            (acks, dels)
        });
        // Let it start and write for a random while, then kill -9.
        let deadline = Instant::now() + Duration::from_millis(rng.gen_range(150..700));
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("crash writer exited early: {status}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (acks, dels) = reader.join().unwrap();
        started.push(acks.last().map_or(0, |b| b + 1));
        acked.extend(acks.iter().map(|&b| (round, b)));
        // The writer deletes batch b - 10 right after acknowledging batch b when b % 20 == 19.
        if let Some(&last) = acks.last() {
            if lifecycle && last % 20 == 19 && !dels.contains(&(last - 10)) {
                deletes.maybe.insert((round, last - 10));
            }
        }
        deletes.done.extend(dels.iter().map(|&b| (round, b)));
        verify(dir.path(), &acked, &started, &deletes);
    }
    assert!(acked.len() > 20, "too few acknowledged batches to mean anything: {}", acked.len());
}

fn verify(dir: &std::path::Path, acked: &[(u64, u64)], started: &[u64], deletes: &Deletes) {
    let mut opts = EngineOptions::new(dir);
    opts.shards = 2;
    let engine = Engine::open(opts).expect("recovery must succeed after kill -9");
    if acked.is_empty() {
        return;
    }
    // Which batches must be present and which may be: every stored point names its batch
    // through its timestamp (`crash_model::ts` is invertible), so the check is one pass over
    // what is stored instead of a map of every expected point rebuilt after every round (that
    // map, not the engine, was most of this test's time).
    let mut must = HashSet::new();
    let mut maybe = HashSet::new();
    for &(round, b) in acked {
        if deletes.done.contains(&(round, b)) {
            continue;
        }
        if deletes.maybe.contains(&(round, b)) {
            maybe.insert((round, b));
        } else {
            must.insert((round, b));
        }
    }
    for (round, &next) in started.iter().enumerate() {
        maybe.insert((round as u64, next));
    }
    let res = engine
        .scan(&ScanRequest {
            db: CRASH_DB,
            measurement: "m",
            predicate: &TagPredicate::All,
            fields: Some(&["v"]),
            range: TimeRange::ALL,
        })
        .unwrap();
    let mut seen = 0;
    for s in &res {
        let h = s.key.tag("host").unwrap().to_string();
        let col = &s.columns[0];
        assert!(col.timestamps.windows(2).all(|w| w[0] < w[1]), "duplicates or disorder in {h}");
        let Values::F64(vals) = &col.values else { panic!("wrong type") };
        for (&t, v) in col.timestamps.iter().zip(vals) {
            let (round, b, i) = batch_of(t);
            assert_eq!(host(i), h, "point at {t} of batch ({round}, {b}) stored under the wrong host");
            let batch = (round, b);
            assert!(
                must.contains(&batch) || maybe.contains(&batch),
                "unexpected point {h} {t} = {v} of batch {batch:?}"
            );
            let want = value(round, b, i);
            assert_eq!(want.to_bits(), v.to_bits(), "wrong value at {h} {t} (batch {batch:?})");
            if must.contains(&batch) {
                seen += 1;
            }
        }
    }
    assert_eq!(seen, must.len() * POINTS as usize, "acknowledged points missing after recovery");
    assert_eq!(res.len() as u64, HOSTS.min(must.len() as u64 * POINTS));
    engine.close().unwrap();
}

/// The (round, batch, point) whose timestamp `crash_model::ts` gave `t`.
fn batch_of(t: i64) -> (u64, u64, u64) {
    let secs = t / 1_000_000_000;
    let (round, rem) = (secs as u64 / 10_000_000, secs as u64 % 10_000_000);
    let (b, j) = (rem / POINTS, rem % POINTS);
    // ts puts point i at offset (i * 37) % POINTS; 37 * 23 = 851 = 1 (mod 50) undoes it.
    const INVERSE_OF_37: u64 = 23;
    const _: () = assert!(POINTS == 50, "INVERSE_OF_37 is the inverse mod 50");
    let i = (j * INVERSE_OF_37) % POINTS;
    assert_eq!(ts(round, b, i), t, "timestamp {t} is not one the crash writer writes");
    (round, b, i)
}
