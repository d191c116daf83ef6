//! Backpressure: a tiny memtable, a small write-memory budget and a flood of writes from
//! several threads. 503s with `Retry-After` must appear, the server's memory must stay
//! bounded, and every point of every 204'd request must be stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use strata_e2e::server::{client, ServerBuilder};
use strata_engine::{Engine, EngineOptions, ScanRequest, TagPredicate, TimeRange, Values};

const THREADS: u64 = 6;
/// Lines per request: ~180 KB bodies, so six writers in flight need several times the 1 MiB
/// write budget.
const LINES: u64 = 4_000;
const FLOOD: Duration = Duration::from_secs(3);
/// Peak resident memory the server may reach, in KiB. The budget (1 MiB), memtables
/// (64 KiB + one frozen) and buffers are far below this; without bounds the flood would keep
/// growing it.
const MAX_HWM_KIB: u64 = 128 * 1024;

/// Full-entropy values in [1, 2): memtables are compressed, so smooth values would let a 64 KiB
/// memtable hold the whole flood and never push back.
fn value(thread: u64, ts: u64) -> f64 {
    let mut z = ts.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ thread.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    f64::from_bits(0x3FF0_0000_0000_0000 | (z >> 12))
}

fn body(thread: u64, batch: u64) -> String {
    let mut s = String::with_capacity(LINES as usize * 48);
    for i in 0..LINES {
        let ts = batch * LINES + i;
        // Eight series per writer, so flushes have many columns to write.
        s.push_str(&format!("flood,t=w{thread},s={} v={} {ts}\n", ts % 8, value(thread, ts)));
    }
    s
}

#[test]
fn http_backpressure_bounded_memory_and_no_lost_acks() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path())
        .arg("--sync")
        .arg("never")
        .set("storage.shards", 2)
        .set("storage.memtable_size", "64KiB")
        .set("storage.max_frozen_memtables", 1)
        .set("storage.write_stall_timeout", "20ms")
        .set("limits.max_body_size", "256KiB")
        .set("limits.write_memory", "1MiB")
        .set("limits.write_memory_wait", "5ms")
        .start();
    let url = server.url("/write?db=bp");
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicU64::new(0));
    let overloaded = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + FLOOD;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (url, busy, overloaded, stop) = (url.clone(), busy.clone(), overloaded.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut acked = Vec::new();
                let mut batch = 0;
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let r = c.post(&url).body(body(t, batch)).send().expect("request");
                    match r.status() {
                        StatusCode::NO_CONTENT => acked.push(batch),
                        StatusCode::SERVICE_UNAVAILABLE => {
                            let retry =
                                r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                            assert_eq!(retry.as_deref(), Some("1"), "503 without Retry-After");
                            let text = r.text().unwrap();
                            if text.contains("in flight") {
                                busy.fetch_add(1, Ordering::Relaxed);
                            } else {
                                overloaded.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        s => {
                            stop.store(true, Ordering::Relaxed);
                            panic!("unexpected status {s}: {}", r.text().unwrap_or_default());
                        }
                    }
                    batch += 1;
                }
                acked
            })
        })
        .collect();
    let mut max_rss = 0;
    while Instant::now() < deadline {
        max_rss = max_rss.max(server.proc_status_kib("VmRSS"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let acked: Vec<Vec<u64>> = workers.into_iter().map(|w| w.join().expect("worker panicked")).collect();
    let hwm = server.proc_status_kib("VmHWM");
    let (busy, overloaded) = (busy.load(Ordering::Relaxed), overloaded.load(Ordering::Relaxed));
    let total_acked: usize = acked.iter().map(Vec::len).sum();
    eprintln!(
        "backpressure: {total_acked} requests acknowledged, 503s: {busy} write memory, {overloaded} engine overloaded; \
         peak RSS {hwm} KiB (sampled max {max_rss} KiB)"
    );
    assert!(busy + overloaded > 0, "a flood against a 64 KiB memtable and a 1 MiB budget must see 503s");
    assert!(total_acked > 0, "some writes must get through");
    assert!(hwm < MAX_HWM_KIB, "server peak RSS {hwm} KiB exceeds {MAX_HWM_KIB} KiB");
    server.stop();

    // Every point of every acknowledged request, with its value.
    let engine = Engine::open(EngineOptions::new(dir.path())).unwrap();
    let series = engine
        .scan(&ScanRequest {
            db: "bp",
            measurement: "flood",
            predicate: &TagPredicate::All,
            fields: Some(&["v"]),
            range: TimeRange::ALL,
        })
        .unwrap();
    let mut stored: HashMap<String, HashMap<i64, f64>> = HashMap::new();
    for s in series {
        let Values::F64(v) = &s.columns[0].values else { panic!("v is a float") };
        let m = stored.entry(s.key.tag("t").unwrap().to_owned()).or_default();
        m.extend(s.columns[0].timestamps.iter().copied().zip(v.iter().copied()));
    }
    for (t, batches) in acked.iter().enumerate() {
        let t = t as u64;
        let m = stored.get(&format!("w{t}"));
        for &b in batches {
            for i in 0..LINES {
                let ts = b * LINES + i;
                let got = m.and_then(|m| m.get(&(ts as i64)));
                assert_eq!(
                    got,
                    Some(&value(t, ts)),
                    "thread {t} batch {b} line {i} acknowledged but not stored"
                );
            }
        }
    }
    engine.close().unwrap();
}
