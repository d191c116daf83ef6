//! Child process of the engine crash tests: writes deterministic batches to an engine and
//! prints `ACK <batch>` after each acknowledged one, until it is killed.
//!
//! Usage: engine-crash-writer DATA_DIR ROUND SYNC(always|never|interval) [lifecycle]
//!
//! With `lifecycle`, the engine also compacts continuously (hourly partitions, compaction from
//! two segments, maintenance every few milliseconds), deletes the points of batch `b - 10`
//! after every 20th batch (printing `DEL <batch>` once the delete returned), and churns a
//! second database through retention drops, so the kill lands in the middle of all of them.

use std::io::Write;
use std::time::Duration;

use strata_e2e::crash_model::{batch_for, batch_range, CRASH_DB};
use strata_engine::{
    Engine, EngineOptions, FieldValue, RetentionPolicy, SyncPolicy, TagPredicate, WriteBatch,
};

const HOUR: i64 = 3_600_000_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = &args[1];
    let round: u64 = args[2].parse().expect("round number");
    let lifecycle = args.get(4).is_some_and(|a| a == "lifecycle");
    let mut opts = EngineOptions::new(dir);
    opts.shards = 2;
    // Small memtables so flushes, WAL rotation and WAL deletion happen while we get killed.
    opts.memtable_size = 256 << 10;
    opts.sync = match args[3].as_str() {
        "always" => SyncPolicy::Always,
        "interval" => SyncPolicy::Interval(Duration::from_millis(20)),
        _ => SyncPolicy::Never,
    };
    if lifecycle {
        opts.partition_duration = Duration::from_secs(3600);
        opts.compaction_min_segments = 2;
        opts.compaction_bytes_per_sec = 0;
        opts.maintenance_interval = Duration::from_millis(5);
    }
    let engine = Engine::open(opts).expect("open engine");
    engine.create_database(CRASH_DB).expect("create database");
    if lifecycle {
        engine.create_database("churn").expect("create database");
    }
    let stdout = std::io::stdout();
    for b in 0..1_000_000u64 {
        let batch = batch_for(round, b);
        let out = engine.write(CRASH_DB, &batch).expect("write");
        assert!(out.rejected.is_empty(), "rejected: {:?}", out.rejected);
        let mut lock = stdout.lock();
        writeln!(lock, "ACK {b}").expect("stdout");
        lock.flush().expect("stdout");
        drop(lock);
        if lifecycle && b % 20 == 19 {
            let gone = b - 10;
            engine.delete(CRASH_DB, Some("m"), &TagPredicate::All, batch_range(round, gone)).expect("delete");
            let mut lock = stdout.lock();
            writeln!(lock, "DEL {gone}").expect("stdout");
            lock.flush().expect("stdout");
        }
        if lifecycle && b % 25 == 0 {
            churn_retention(&engine);
        }
    }
}

/// Writes a few hours of old data to `churn`, then lets retention drop it.
fn churn_retention(engine: &Engine) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let keep_all = RetentionPolicy { name: "churn".into(), duration: None, partition_duration: Some(HOUR) };
    engine.set_retention_policy("churn", keep_all.clone()).expect("retention");
    let mut batch = WriteBatch::new();
    for h in 0..6 {
        let ts = now - (5 - h) * HOUR;
        batch.point("old").tag("h", "x").field("v", FieldValue::F64(h as f64)).finish(ts).expect("point");
    }
    engine.write("churn", &batch).expect("write churn");
    engine.flush().expect("flush");
    let short = RetentionPolicy { duration: Some(2 * HOUR), ..keep_all };
    engine.set_retention_policy("churn", short).expect("retention");
    engine.enforce_retention().expect("enforce retention");
}
