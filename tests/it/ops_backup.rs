//! Online backup and restore end to end: two writers keep writing over HTTP while
//! `POST /api/v1/backup` runs; `strata restore` (the real binary) turns the backup into a new
//! data directory; a server started on it answers queries holding every batch acknowledged
//! before the backup request was sent, each whole and with the values written. Also: admin
//! only, name validation, 409 for a taken name, the listing, restore refusing a non-empty
//! directory and a backup with a flipped byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use strata_e2e::server::{client, ServerBuilder};
use strata_e2e::workspace_bin;

const ADMIN: &str = "backup-admin-token-0123456789";
const WRITERS: u64 = 2;
const BATCHES: u64 = 250;
const POINTS: u64 = 100;

/// Line protocol of batch `b` of writer `w`: `POINTS` points at distinct seconds, each
/// carrying its batch number and a value the check recomputes.
fn batch(w: u64, b: u64) -> String {
    (0..POINTS).map(|i| format!("m,w=w{w} b={b}i,v={} {}\n", value(w, b, i), ts(w, b, i))).collect()
}

fn ts(w: u64, b: u64, i: u64) -> u64 {
    1_700_000_000 + w * 1_000_000 + b * POINTS + i
}

fn value(w: u64, b: u64, i: u64) -> f64 {
    (w * 7 + b * 13 + i) as f64 / 4.0
}

fn strata(args: &[&str]) -> Output {
    Command::new(workspace_bin("strata")).args(args).env_remove("STRATA_URL").output().expect("run strata")
}

fn restore(from: &Path, to: &Path) -> Output {
    strata(&["restore", "--from", path(from), "--data-dir", path(to)])
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Every `(writer, batch)` stored, with the number of its points whose value is right.
fn stored_batches(url: &str) -> BTreeMap<(u64, u64), u64> {
    let r = client()
        .get(format!("{url}/query"))
        .query(&[("db", "plant"), ("q", "SELECT b, v FROM m GROUP BY w"), ("epoch", "s")])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().unwrap();
    assert!(body["results"][0].get("error").is_none(), "{body}");
    let mut out = BTreeMap::new();
    for s in body["results"][0]["series"].as_array().expect("series") {
        let w: u64 = s["tags"]["w"].as_str().unwrap()[1..].parse().unwrap();
        for row in s["values"].as_array().unwrap() {
            let (t, b, v) = (row[0].as_u64().unwrap(), row[1].as_u64().unwrap(), row[2].as_f64().unwrap());
            let i = t - ts(w, b, 0);
            assert!(i < POINTS, "point at {t} does not belong to batch {b} of writer {w}");
            assert_eq!(v, value(w, b, i), "writer {w} batch {b} point {i}: wrong value");
            *out.entry((w, b)).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn ops_backup_under_writes_and_restore() {
    let data = tempfile::tempdir().unwrap();
    let scoped = Command::new(workspace_bin("strata"))
        .args(["token", "create", "--db", "plant", "--write", "--data-dir", path(data.path())])
        .output()
        .unwrap();
    assert!(scoped.status.success(), "{}", text(&scoped.stderr));
    let scoped = text(&scoped.stdout).trim().to_owned();
    // Small memtables and eager compaction: flushes and compactions run during the backup.
    let server = ServerBuilder::new(data.path())
        .arg("--auth")
        .env("STRATA_ADMIN_TOKEN", ADMIN)
        .set("storage.memtable_size", "128KiB")
        .set("storage.shards", 2)
        .set("storage.compaction_min_segments", 2)
        .set("storage.maintenance_interval", "1s")
        .start();
    let url = server.url("");
    let acked = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (url, acked) = (url.clone(), acked.clone());
            std::thread::spawn(move || {
                let c = client();
                // (batch, when it was sent, when its 204 arrived)
                let mut done = Vec::new();
                for b in 0..BATCHES {
                    let started = Instant::now();
                    let r = c
                        .post(format!("{url}/api/v2/write?bucket=plant&precision=s"))
                        .bearer_auth(ADMIN)
                        .body(batch(w, b))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap_or_default());
                    done.push((b, started, Instant::now()));
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                done
            })
        })
        .collect();

    let c = client();
    let backup = |req: &str| c.post(format!("{url}/api/v1/backup{req}"));
    // Refusals first, while the writers get going: no admin token, bad names.
    assert_eq!(backup("").send().unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(backup("").bearer_auth(&scoped).send().unwrap().status(), StatusCode::FORBIDDEN);
    for bad in [".hidden", "..", "a%2Fb", "sp%20ace", "", &"x".repeat(65)] {
        let r = backup(&format!("?name={bad}")).bearer_auth(ADMIN).send().unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "name {bad:?}");
        assert_eq!(r.json::<Value>().unwrap()["code"], "invalid");
    }

    // The backup, in the middle of the writes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.load(Ordering::Relaxed) < (WRITERS * BATCHES / 3) as usize {
        assert!(Instant::now() < deadline, "writers made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Instant::now();
    let r = backup("?name=mid-run").bearer_auth(ADMIN).send().unwrap();
    let returned = Instant::now();
    assert_eq!(r.status(), StatusCode::CREATED);
    let report: Value = r.json().unwrap();
    let backup_dir = PathBuf::from(report["path"].as_str().unwrap());
    assert_eq!(report["name"], "mid-run");
    assert_eq!(backup_dir, data.path().canonicalize().unwrap().join("backups/mid-run"));
    assert!(report["segments"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["linked"], report["segments"], "same file system: every segment hard-linked");
    assert!(report["bytes"].as_u64().unwrap() > 0 && report["elapsed_ms"].is_u64(), "{report}");

    // A taken name is refused; a default name is a UTC timestamp.
    let r = backup("?name=mid-run").bearer_auth(ADMIN).send().unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().unwrap();
    assert!(body["message"].as_str().unwrap().contains("already exists"), "{body}");
    let out = strata(&["backup", "--url", &url, "--token", ADMIN]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let default_path = PathBuf::from(text(&out.stdout).trim());
    let default_name = default_path.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        default_name.len() == 16 && default_name.starts_with("20") && default_name.ends_with('Z'),
        "{default_name}"
    );
    assert!(default_path.join("BACKUP").is_file());

    let per_writer: Vec<Vec<(u64, Instant, Instant)>> =
        writers.into_iter().map(|h| h.join().unwrap()).collect();
    let batches = |f: &dyn Fn(Instant, Instant) -> bool| -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (w, done) in per_writer.iter().enumerate() {
            out.extend(done.iter().filter(|(_, s, a)| f(*s, *a)).map(|(b, _, _)| (w as u64, *b)));
        }
        out
    };
    // Acknowledged before the request was sent: must be in the backup. Sent after its answer
    // came back: cannot be.
    let before = batches(&|_, acked| acked < sent);
    let later = batches(&|started, _| started > returned);
    assert!(!before.is_empty() && !later.is_empty(), "the backup did not run during the writes");

    // The listing.
    let r = c.get(format!("{url}/api/v1/backups")).send().unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let list: Value =
        c.get(format!("{url}/api/v1/backups")).bearer_auth(ADMIN).send().unwrap().json().unwrap();
    let names: Vec<&str> =
        list["backups"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, [default_name.as_str(), "mid-run"]);
    let mid = &list["backups"][1];
    assert!(mid["complete"] == true && mid["size"].as_u64().unwrap() >= report["bytes"].as_u64().unwrap());
    assert!(mid["created"].as_str().unwrap().ends_with('Z'), "{mid}");
    let metrics = c.get(format!("{url}/metrics")).send().unwrap().text().unwrap();
    assert!(metrics.contains("\nstrata_backups_total 2\n"), "{metrics}");
    assert!(metrics.contains("strata_http_requests_total{route=\"/api/v1/backup\",status=\"409\"} 1"));
    server.stop();

    // Restore refuses a non-empty directory (here: the original data directory).
    let out = restore(&backup_dir, data.path());
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("is not empty"), "{}", text(&out.stderr));

    // The backups inside the data directory do not disturb it: it reopens with every batch.
    let server = ServerBuilder::new(data.path()).start();
    assert_eq!(stored_batches(&server.url("")).len(), (WRITERS * BATCHES) as usize);
    server.stop();

    // Restore into a fresh directory, verify it and query it.
    let work = tempfile::tempdir().unwrap();
    let restored = work.path().join("restored");
    let out = restore(&backup_dir, &restored);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("restored 1 database(s)"), "{}", text(&out.stdout));
    let out = strata(&["inspect", "--verify", path(&restored)]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let server = ServerBuilder::new(&restored).start();
    let stored = stored_batches(&server.url(""));
    server.stop();
    for key in &before {
        assert_eq!(stored.get(key), Some(&POINTS), "batch {key:?} acknowledged before the backup");
    }
    for key in &later {
        assert_eq!(stored.get(key), None, "batch {key:?} was sent after the backup finished");
    }
    // A batch is one series, so one shard: in flight during the backup it is there whole or
    // not at all.
    for (key, n) in &stored {
        assert_eq!(*n, POINTS, "batch {key:?} is torn");
    }

    // A flipped byte in one segment of the backup: restore refuses and writes nothing.
    let seg = find_segment(&backup_dir).expect("a segment in the backup");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    // The backup's segments are hard links into the data directory: replace, do not edit.
    std::fs::remove_file(&seg).unwrap();
    std::fs::write(&seg, bytes).unwrap();
    let target = work.path().join("from-corrupt");
    let out = restore(&backup_dir, &target);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("damaged") && err.contains(seg.file_name().unwrap().to_str().unwrap()), "{err}");
    assert!(!target.exists(), "nothing may be written from a corrupt backup");
}

fn find_segment(dir: &Path) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.is_dir() {
            if let Some(s) = find_segment(&p) {
                return Some(s);
            }
        } else if p.extension().is_some_and(|x| x == "seg") {
            return Some(p);
        }
    }
    None
}
