//! `kill -9` the server while it acknowledges writes: every 204'd point must be there after a
//! restart, for the sync policies that promise to survive a process crash.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use strata_e2e::server::{client, read_measurement, ServerBuilder};

const LINES: u64 = 200;

fn body(round: u64, batch: u64) -> String {
    (0..LINES)
        .map(|i| format!("crash,round=r{round} v={}i {}\n", batch * 1000 + i, batch * LINES + i))
        .collect()
}

#[test]
fn http_crash_acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked_all: Vec<(u64, u64)> = Vec::new();
    for (round, sync) in ["always", "never", "interval"].into_iter().enumerate() {
        let round = round as u64;
        let server = ServerBuilder::new(dir.path()).arg("--sync").arg(sync).start();
        let url = server.url("/write?db=crash");
        let acked = Arc::new(Mutex::new(Vec::new()));
        let dead = Arc::new(AtomicBool::new(false));
        let writer = {
            let (acked, dead) = (acked.clone(), dead.clone());
            std::thread::spawn(move || {
                let c = client();
                for batch in 0.. {
                    match c.post(&url).body(body(round, batch)).send() {
                        Ok(r) if r.status() == StatusCode::NO_CONTENT => acked.lock().unwrap().push(batch),
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) if dead.load(Ordering::SeqCst) => return,
                        Err(e) => panic!("request failed while the server was up: {e}"),
                    }
                }
            })
        };
        // Let it acknowledge some writes, then kill it mid-stream.
        std::thread::sleep(Duration::from_millis(400));
        dead.store(true, Ordering::SeqCst);
        server.kill9();
        writer.join().expect("writer panicked");
        let acked = acked.lock().unwrap().clone();
        assert!(
            acked.len() >= 3,
            "sync={sync}: too few acknowledged writes to mean anything: {}",
            acked.len()
        );
        acked_all.extend(acked.iter().map(|b| (round, *b)));

        // Recovery through the server itself: it must start and take writes again.
        let server = ServerBuilder::new(dir.path()).arg("--sync").arg(sync).start();
        let r = client().post(server.url("/write?db=crash")).body("after,round=x v=1 1\n").send().unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        server.kill9();

        let got = read_measurement(dir.path(), "crash", "crash");
        for &(round, batch) in &acked_all {
            for i in 0..LINES {
                let k = (format!("crash,round=r{round}"), "v".to_owned(), (batch * LINES + i) as i64);
                assert_eq!(
                    got.get(&k).map(String::as_str),
                    Some(format!("{}i", batch * 1000 + i).as_str()),
                    "sync={sync}: round {round} batch {batch} line {i} acknowledged but lost"
                );
            }
        }
        assert_eq!(read_measurement(dir.path(), "crash", "after").len(), 1, "sync={sync}");
    }
}
