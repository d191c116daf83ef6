//! Kill -9 the engine at random moments while it writes (and, in the lifecycle variant, while
//! it compacts, deletes and drops expired partitions); every acknowledged point must be
//! readable after recovery, with its value, exactly once, and no acknowledged delete may be
//! undone.

use std::collections::{BTreeMap, BTreeSet};
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
    // Expected (host, ts) -> value for acknowledged points; "maybe" points of the batch in
    // flight (one past the last ack) may be present or not.
    let mut must = BTreeMap::new();
    let mut maybe = BTreeMap::new();
    for &(round, b) in acked {
        if deletes.done.contains(&(round, b)) {
            continue;
        }
        let map = if deletes.maybe.contains(&(round, b)) { &mut maybe } else { &mut must };
        for i in 0..POINTS {
            map.insert((host(i), ts(round, b, i)), value(round, b, i));
        }
    }
    for (round, &next) in started.iter().enumerate() {
        for i in 0..POINTS {
            maybe.insert((host(i), ts(round as u64, next, i)), value(round as u64, next, i));
        }
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
        for (t, v) in col.timestamps.iter().zip(vals) {
            let key = (h.clone(), *t);
            match must.get(&key).or_else(|| maybe.get(&key)) {
                Some(want) => assert_eq!(want.to_bits(), v.to_bits(), "wrong value at {key:?}"),
                None => panic!("unexpected point {key:?} = {v}"),
            }
            if must.contains_key(&key) {
                seen += 1;
            }
        }
    }
    assert_eq!(seen, must.len(), "acknowledged points missing after recovery");
    assert_eq!(res.len() as u64, HOSTS.min(must.len() as u64));
    engine.close().unwrap();
}
