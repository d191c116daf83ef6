//! The crash soak (`tests/src/bin/crash-soak.rs`, full run: `bench/crash-soak.sh`) for a few
//! rounds: `kill -9` under mixed HTTP and MQTT QoS 1 load, every acknowledged point checked
//! after each restart. And proof that the soak can fail: with the WAL deleted after the last
//! kill it must report acknowledged points as missing.

use std::process::Command;

use strata_e2e::workspace_bin;

fn soak(extra: &[&str]) -> (bool, String) {
    // A failing soak keeps its data directory and logs beside it: both inside this one.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crash-soak"))
        .arg("--strata")
        .arg(workspace_bin("strata"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--seed", "14", "--http-writers", "2", "--mqtt-writers", "2"])
        .args(extra)
        .output()
        .expect("run crash-soak");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The number after `key` in the soak's summary line.
fn number_after(text: &str, key: &str) -> u64 {
    text.split(key)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or_else(|| panic!("no {key:?} in the soak's output:\n{text}"))
}

#[test]
fn crash_soak_short_run_loses_nothing_acknowledged() {
    let (ok, text) = soak(&["--rounds", "5", "--max-seconds", "20", "--full-every", "2"]);
    assert!(ok, "crash soak failed:\n{text}");
    let summary = text
        .lines()
        .find(|l| l.starts_with("crash-soak: PASS"))
        .unwrap_or_else(|| panic!("no summary line:\n{text}"));
    // Not vacuous: rounds ran, and both protocols had points acknowledged.
    assert!(number_after(summary, "PASS rounds") >= 3, "{text}");
    assert!(number_after(summary, "(HTTP") > 0, "{text}");
    assert!(number_after(summary, ", MQTT") > 0, "{text}");
}

#[test]
fn crash_soak_reports_acknowledged_points_lost_with_the_wal() {
    let (ok, text) = soak(&["--rounds", "2", "--max-seconds", "20", "--sabotage-wal"]);
    assert!(!ok, "the soak passed although the WAL was deleted:\n{text}");
    assert!(text.contains("crash-soak: FAIL round 1"), "{text}");
    assert!(text.contains("acknowledged points of") && text.contains("are missing"), "{text}");
}
