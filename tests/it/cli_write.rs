//! `strata write` and `strata import` against a real server, then `strata inspect` on the
//! data directory it left, including `--verify` catching a flipped byte.

use std::io::Write;
use std::process::{Command, Stdio};

use strata_e2e::server::{client, read_measurement, ServerBuilder};
use strata_e2e::workspace_bin;

fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

fn strata() -> Command {
    let mut cmd = Command::new(workspace_bin("strata"));
    cmd.env_remove("STRATA_URL").env_remove("STRATA_TOKEN");
    cmd
}

#[test]
fn write_import_then_inspect_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let srv = ServerBuilder::new(dir.path()).start();
    let url = srv.url("");

    // 12 lines (plus a comment and a blank line) in batches of 5: 3 requests.
    let mut lp = String::from("# a comment\n\n");
    for i in 0..12 {
        lp.push_str(&format!("temp,room=r{} c={}.5,n={i}i {}\n", i % 3, i, 1_700_000_000 + i));
    }
    let file = work.path().join("in.lp");
    std::fs::write(&file, &lp).unwrap();
    let out = strata()
        .args(["write", "--url", &url, "-d", "clidb", "--precision", "s", "--batch-lines", "5"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let m = client().get(srv.url("/metrics")).send().unwrap().text().unwrap();
    assert_eq!(metric(&m, "strata_ingest_requests_total"), 3.0);
    assert_eq!(metric(&m, "strata_ingest_points_total"), 12.0);

    // From stdin, with one bad line: exit status non-zero, the good lines stored.
    let mut child = strata()
        .args(["write", "--url", &url, "-d", "clidb"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"other v=1 1\nother v= 2\nother v=3 3\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "a refused line must fail the command");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 lines refused"), "{out:?}");

    // CSV import.
    let csv = "measurement,time,tag:site,field:kw,field:ok\n\
               power,1000,north,1.5,true\n\
               power,2000,\"so,uth\",2.5,\n\
               power,3000,,3i,false\n";
    let csv_file = work.path().join("in.csv");
    std::fs::write(&csv_file, csv).unwrap();
    let out = strata()
        .args(["import", "--url", &url, "-d", "clidb", "--format", "csv", "--quiet"])
        .arg(&csv_file)
        .output()
        .unwrap();
    // 3i into a float field is a type conflict: the other two rows are stored.
    assert!(!out.status.success(), "{out:?}");
    srv.stop();

    let temp = read_measurement(dir.path(), "clidb", "temp");
    assert_eq!(temp.len(), 24, "12 points x 2 fields: {temp:?}");
    assert_eq!(read_measurement(dir.path(), "clidb", "other").len(), 2);
    let power = read_measurement(dir.path(), "clidb", "power");
    assert_eq!(power.get(&("power,site=north".into(), "kw".into(), 1000)).map(String::as_str), Some("1.5"));
    let south: Vec<_> =
        power.iter().filter(|((k, f, t), _)| k.contains("uth") && f == "kw" && *t == 2000).collect();
    assert_eq!(south.len(), 1, "{power:?}");
    assert_eq!(south[0].1, "2.5");
    assert_eq!(power.len(), 3, "{power:?}");

    // inspect: a clean directory verifies.
    let out = strata().arg("inspect").arg(dir.path()).arg("--verify").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("database clidb: 6 series in segments"), "{text}");
    assert!(text.contains("every segment checksum is good"), "{text}");
    assert!(text.contains("total: 16 points, 29 values"), "{text}");

    // Flip one byte in the middle of a segment's data.
    let mut segs = Vec::new();
    for part in std::fs::read_dir(dir.path().join("dbs/clidb")).unwrap() {
        let part = part.unwrap().path();
        if part.is_dir() {
            for f in std::fs::read_dir(&part).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "seg") {
                    segs.push(f);
                }
            }
        }
    }
    segs.sort();
    let victim = segs.first().expect("a segment").clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&victim, &bytes).unwrap();
    let out = strata().arg("inspect").arg(dir.path()).arg("--verify").output().unwrap();
    assert!(!out.status.success(), "a flipped byte must fail --verify: {out:?}");
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let name = victim.display().to_string();
    assert!(all.contains(&format!("CORRUPT {name}")), "the report must name {name}:\n{all}");
    assert!(all.contains("1 corrupt segment file(s)"), "{all}");
}
