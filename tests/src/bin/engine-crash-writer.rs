//! Child process of the engine crash test: writes deterministic batches to an engine and prints
//! `ACK <batch>` after each acknowledged one, until it is killed.
//!
//! Usage: engine-crash-writer DATA_DIR ROUND SYNC(always|never|interval)

use std::io::Write;
use std::time::Duration;

use strata_e2e::crash_model::{batch_for, CRASH_DB};
use strata_engine::{Engine, EngineOptions, SyncPolicy};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = &args[1];
    let round: u64 = args[2].parse().expect("round number");
    let mut opts = EngineOptions::new(dir);
    opts.shards = 2;
    // Small memtables so flushes, WAL rotation and WAL deletion happen while we get killed.
    opts.memtable_bytes = 256 << 10;
    opts.sync = match args[3].as_str() {
        "always" => SyncPolicy::Always,
        "interval" => SyncPolicy::Interval(Duration::from_millis(20)),
        _ => SyncPolicy::Never,
    };
    let engine = Engine::open(opts).expect("open engine");
    engine.create_database(CRASH_DB).expect("create database");
    let stdout = std::io::stdout();
    for b in 0..1_000_000u64 {
        let batch = batch_for(round, b);
        let out = engine.write(CRASH_DB, &batch).expect("write");
        assert!(out.rejected.is_empty(), "rejected: {:?}", out.rejected);
        let mut lock = stdout.lock();
        writeln!(lock, "ACK {b}").expect("stdout");
        lock.flush().expect("stdout");
    }
}
