//! Helpers for the end-to-end tests in `it/`: the deterministic data model of the crash tests,
//! locating built binaries, starting them on ephemeral ports, and waiting for them.

pub mod crash_model {
    //! What the engine crash writer writes, so the test can recompute every acknowledged value.

    use strata_engine::{FieldValue, WriteBatch};

    pub const CRASH_DB: &str = "crash";
    /// Points per batch.
    pub const POINTS: u64 = 50;
    pub const HOSTS: u64 = 7;

    /// Timestamp of point `i` of batch `b` of `round`: unique across rounds and batches, and
    /// written out of order inside a batch (devices replaying buffers).
    pub fn ts(round: u64, b: u64, i: u64) -> i64 {
        let base = (round * 10_000_000 + b * POINTS) as i64 * 1_000_000_000;
        base + ((i * 37) % POINTS) as i64 * 1_000_000_000
    }

    pub fn host(i: u64) -> String {
        format!("h{}", i % HOSTS)
    }

    pub fn value(round: u64, b: u64, i: u64) -> f64 {
        ((round * 1_000_003 + b * 101 + i) % 100_000) as f64 / 100.0
    }

    /// Batch `b` of `round`: `POINTS` new points, plus a verbatim re-write of the previous
    /// batch's first ten points (duplicates that must not show up twice).
    pub fn batch_for(round: u64, b: u64) -> WriteBatch {
        let mut batch = WriteBatch::new();
        let mut add = |b: u64, i: u64| {
            batch
                .point("m")
                .tag("host", &host(i))
                .field("v", FieldValue::F64(value(round, b, i)))
                .field("n", FieldValue::I64((b * POINTS + i) as i64))
                .finish(ts(round, b, i))
                .expect("valid point");
        };
        for i in 0..POINTS {
            add(b, i);
        }
        if b > 0 {
            for i in 0..10 {
                add(b - 1, i);
            }
        }
        batch
    }
}

use std::path::PathBuf;

/// Path of a binary built from this workspace (`strata`, `strata-loadgen`): next to the test
/// executable's `deps/` directory.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(p.exists(), "{} not built: run `cargo build --workspace --bins` first", p.display());
    p
}
