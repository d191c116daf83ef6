//! Losing acknowledged data quietly at restart: damage in the middle of the WAL is not a torn
//! tail. The server must refuse to start and name the file and offset; `--recover
//! drop-damaged` starts it and logs what was dropped.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use strata_e2e::server::{client, read_measurement, ServerBuilder};

fn wal_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(data_dir.join("wal")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if std::fs::metadata(&p).unwrap().len() > 16 {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_flipped_byte_mid_wal_refuses_to_start_until_drop_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("storage.shards", 1).start();
    let c = client();
    for t in 1..=5 {
        let r = c.post(server.url("/write?db=rec")).body(format!("env,dev=d1 v={t} {t}")).send().unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    // SIGKILL: the points stay in the WAL only (a clean stop would flush them to segments).
    server.kill9();
    let wal = wal_files(dir.path());
    assert_eq!(wal.len(), 1, "{wal:?}");
    let mut bytes = std::fs::read(&wal[0]).unwrap();
    bytes[16 + 12] ^= 0x20; // inside the first record; four intact records follow
    std::fs::write(&wal[0], &bytes).unwrap();

    let (status, log) = ServerBuilder::new(dir.path()).set("storage.shards", 1).start_expecting_failure();
    assert!(!status.success());
    let name = wal[0].display().to_string();
    assert!(log.contains(&name) && log.contains("offset 16"), "refusal names file and offset:\n{log}");
    assert!(log.contains("drop-damaged"), "refusal says how to start anyway:\n{log}");
    assert_eq!(std::fs::read(&wal[0]).unwrap(), bytes, "a refused start changes nothing");

    let server =
        ServerBuilder::new(dir.path()).set("storage.shards", 1).arg("--recover").arg("drop-damaged").start();
    let log = server.stop();
    assert!(log.contains("damaged WAL bytes dropped") && log.contains(&name), "the drop is logged:\n{log}");
    let stored = read_measurement(dir.path(), "rec", "env");
    let times: Vec<i64> = stored.keys().map(|(_, _, t)| *t).collect();
    assert_eq!(times, vec![2, 3, 4, 5], "only the damaged record is dropped");
}
