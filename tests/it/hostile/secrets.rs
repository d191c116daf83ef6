//! Secret files (the tokens file, the MQTT device passwords): never written through a
//! symbolic link, always mode 0600, edited under a lock, and a tokens file that cannot be read
//! revokes every token in it instead of leaving the old grants in force. See `../hostile.rs`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use strata_e2e::server::{client, ServerBuilder};
use strata_e2e::workspace_bin;

use crate::http_auth::strata_token;

const ADMIN: &str = "admin-token-for-tests-0123456789";

fn strata(dir: &Path, args: &[&str]) -> Output {
    Command::new(workspace_bin("strata"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("STRATA_ADMIN_TOKEN")
        .output()
        .expect("run strata")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn hostile_secrets_symlinks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let tokens = dir.path().join("tokens.json");
    std::os::unix::fs::symlink(&victim, &tokens).unwrap();
    let out = strata(dir.path(), &["token", "create", "--db", "a", "--write"]);
    assert!(!out.status.success(), "token create wrote through a symlink");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(mode(&victim), 0o644, "the link's target had its mode changed");
    assert!(std::fs::symlink_metadata(&tokens).unwrap().file_type().is_symlink(), "the link was replaced");
    // The temporary file beside it is not followed either.
    std::fs::remove_file(&tokens).unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("tokens.json.tmp")).unwrap();
    strata_token(dir.path(), &["create", "--db", "a", "--write"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!std::fs::symlink_metadata(&tokens).unwrap().file_type().is_symlink());
    // The server refuses a symlinked tokens file at start, naming it.
    std::fs::remove_file(&tokens).unwrap();
    std::os::unix::fs::symlink(&victim, &tokens).unwrap();
    let (status, log) = ServerBuilder::new(dir.path()).arg("--auth").start_expecting_failure();
    assert!(!status.success());
    assert!(log.contains("symbolic link") && log.contains("tokens.json"), "{log}");
    // Device passwords likewise.
    let devices = dir.path().join("mqtt").join("devices.json");
    std::fs::create_dir_all(devices.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &devices).unwrap();
    let out = strata(dir.path(), &["device", "add", "dev-1"]);
    assert!(!out.status.success(), "device add wrote through a symlink");
    assert!(String::from_utf8_lossy(&out.stderr).contains("symbolic link"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn hostile_secrets_mode_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.json");
    let token = strata_token(dir.path(), &["create", "--db", "a", "--write"]).trim().to_owned();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A stale temporary file with a loose mode is not reused as it is.
    let tmp = dir.path().join("tokens.json.tmp");
    std::fs::write(&tmp, "").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
    strata_token(dir.path(), &["create", "--db", "b", "--read"]);
    assert_eq!(mode(&tokens), 0o600, "a write left the tokens file readable by others");
    // A file made readable by hand is tightened by the server, with a warning.
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = ServerBuilder::new(dir.path()).arg("--auth").start();
    assert_eq!(mode(&tokens), 0o600, "the server left the tokens file readable by others");
    let r = client().post(server.url("/write?db=a")).bearer_auth(&token).body("m v=1 1\n").send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let log = server.stop();
    assert!(log.contains("0644") && log.contains("tokens.json"), "no warning about the mode:\n{log}");
    // Device passwords likewise.
    let out = strata(dir.path(), &["device", "add", "dev-1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let devices = dir.path().join("mqtt").join("devices.json");
    std::fs::set_permissions(&devices, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = strata(dir.path(), &["device", "add", "dev-2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&devices), 0o600);
}

#[test]
fn hostile_secrets_corrupt_tokens_file_revokes_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let token = strata_token(dir.path(), &["create", "--db", "a", "--write"]).trim().to_owned();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let c = client();
    let write =
        |t: &str| c.post(server.url("/write?db=a")).bearer_auth(t).body("m v=1 1\n").send().unwrap().status();
    assert_eq!(write(&token), StatusCode::NO_CONTENT);
    let tokens = dir.path().join("tokens.json");
    let mut text = std::fs::read_to_string(&tokens).unwrap();
    text.truncate(text.len() / 2);
    std::fs::write(&tokens, text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let status = write(&token);
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(Instant::now() < deadline, "a token from a corrupt tokens file still accepted after 6 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(write(ADMIN), StatusCode::NO_CONTENT, "the configured admin token must keep working");
    let log = server.stop();
    assert!(log.contains("ERROR") && log.contains("tokens.json"), "no error logged:\n{log}");
}

#[test]
fn hostile_secrets_concurrent_token_creates_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let n = 12;
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(workspace_bin("strata"))
                .args(["token", "create", "--db", "a", "--read", "--description", &format!("t{i}")])
                .arg("--data-dir")
                .arg(dir.path())
                .env_remove("STRATA_ADMIN_TOKEN")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let list: Value = serde_json::from_str(&strata_token(dir.path(), &["list", "--json"])).unwrap();
    let mut got: Vec<String> =
        list.as_array().unwrap().iter().map(|t| t["description"].as_str().unwrap().to_owned()).collect();
    got.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    want.sort();
    assert_eq!(got, want, "concurrent `strata token create` lost tokens");
}
