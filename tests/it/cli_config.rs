//! The `strata` command line and configuration sources, end to end.

use std::process::Command;

use reqwest::StatusCode;
use strata_e2e::server::{client, ServerBuilder};
use strata_e2e::workspace_bin;

#[test]
fn cli_version_and_help() {
    let out = Command::new(workspace_bin("strata")).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("strata "), "{out:?}");
    let out = Command::new(workspace_bin("strata")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--data-dir", "--http-addr", "--mqtt-addr", "--config", "--set", "token"] {
        assert!(help.contains(flag), "--help does not mention {flag}:\n{help}");
    }
}

#[test]
fn cli_config_file_env_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("strata.toml");
    // The file sets a port (overridden by the --http-addr flag the harness passes) and a 1 KiB
    // body limit (overridden by the environment: 2 KiB).
    std::fs::write(
        &file,
        "[http]\naddr = \"127.0.0.1:1\"\n[limits]\nmax_body_size = \"1KiB\"\nwrite_memory = \"1MiB\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = ServerBuilder::new(&data)
        .arg("--config")
        .arg(file.to_str().unwrap())
        .env("STRATA_LIMITS_MAX_BODY_SIZE", "2KiB")
        .env("STRATA_LIMITS_MAX_BODYSIZE", "typo")
        .start();
    assert_ne!(server.addr.port(), 1, "the flag beats the file");
    let c = client();
    let line = "m v=1\n";
    let r = c.post(server.url("/write?db=c")).body(line.repeat(250)).send().unwrap(); // 1,500 bytes
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "the environment beats the file");
    let r = c.post(server.url("/write?db=c")).body(line.repeat(500)).send().unwrap(); // 3,000 bytes
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let log = server.stop();
    assert!(log.contains("STRATA_LIMITS_MAX_BODYSIZE"), "unknown STRATA_ variables are warned about:\n{log}");
    assert!(data.join("dbs").is_dir(), "--data-dir is used");
}

#[test]
fn cli_invalid_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (status, log) =
        ServerBuilder::new(dir.path()).set("limits.max_tags_per_point", 0).start_expecting_failure();
    assert!(!status.success());
    assert!(log.contains("limits.max_tags_per_point"), "{log}");
    let (status, log) =
        ServerBuilder::new(dir.path()).env("STRATA_STORAGE_MEMTABLE_SIZE", "huge").start_expecting_failure();
    assert!(!status.success());
    assert!(log.contains("STRATA_STORAGE_MEMTABLE_SIZE") && log.contains("storage.memtable_size"), "{log}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[storage]\nsink = \"always\"\n").unwrap();
    let (status, log) =
        ServerBuilder::new(dir.path()).arg("--config").arg(bad.to_str().unwrap()).start_expecting_failure();
    assert!(!status.success());
    assert!(log.contains("sink") && log.contains("bad.toml"), "{log}");
}

#[test]
fn cli_token_commands() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(workspace_bin("strata"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("STRATA_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let out = run(&["token", "create", "--db", "a", "--write", "--description", "pump 7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("strata_") && !token.contains(' '), "stdout is the token alone: {token:?}");
    let stored = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
    assert!(!stored.contains(&token), "the tokens file must hold hashes only");
    let out = run(&["token", "list"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("pump 7") && table.contains("write on a"), "{table}");
    assert!(!table.contains(&token));
    // Invalid scopes are refused with a reason.
    let out = run(&["token", "create", "--db", "a"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--read"));
    let id = table.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(run(&["token", "revoke", &id]).status.success());
    assert!(!run(&["token", "revoke", &id]).status.success(), "revoking twice fails");
    let out = run(&["token", "list", "--json"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "[]");
}

#[test]
fn cli_default_retention_applies_to_auto_created_databases() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("storage.default_retention", "7d").start();
    let c = client();
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // One point inside the week, one older than it: the old one is refused, the other stored.
    let body = format!("m v=1 {now_s}\nm v=2 {}\n", now_s - 8 * 86_400);
    let r = c.post(server.url("/write?db=fleet&precision=s")).body(body).send().unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "the point past retention is reported");
    let r = c.get(server.url("/query")).query(&[("q", "SHOW RETENTION POLICIES ON fleet")]).send().unwrap();
    let text = r.text().unwrap();
    assert!(text.contains("168h0m0s"), "auto-created database has the default retention: {text}");
    let r = c
        .get(server.url("/query"))
        .query(&[("db", "fleet"), ("q", "SELECT count(v) FROM m")])
        .send()
        .unwrap()
        .json::<serde_json::Value>()
        .unwrap();
    assert_eq!(r["results"][0]["series"][0]["values"][0][1], 1, "one point stored: {r}");
    server.stop();
}

/// Start-up errors a reader meets in the tour say each thing once and name what is wrong: a
/// second server on a locked data directory, a busy port (only the busy address, with its
/// key), and `--help` lists each environment variable once.
#[test]
fn cli_start_errors_say_it_once_and_name_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let first = ServerBuilder::new(dir.path()).start();

    let (status, log) = ServerBuilder::new(dir.path()).start_expecting_failure();
    assert!(!status.success());
    let line =
        log.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert_eq!(line.matches("locked by another process").count(), 1, "said once: {line}");

    let busy = first.addr.to_string();
    let other = tempfile::tempdir().unwrap();
    let (status, log) = ServerBuilder::new(other.path()).http_addr(&busy).start_expecting_failure();
    assert!(!status.success());
    let line =
        log.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(line.contains(&format!("cannot listen on {busy} (http.addr)")), "{line}");
    assert!(!line.contains("mqtt.addr"), "the MQTT address was free: {line}");
    assert_eq!(line.matches("in use").count(), 1, "said once: {line}");
    first.stop();

    let out = Command::new(workspace_bin("strata"))
        .args(["query", "--help"])
        .env_remove("STRATA_URL")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(help.matches("STRATA_URL").count(), 1, "{help}");
    assert_eq!(help.matches("STRATA_TOKEN").count(), 1, "{help}");
}

/// `off` switches the query timeout off, as the configuration docs say of time limits.
#[test]
fn cli_query_timeout_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("query.timeout", "off").start();
    let r = client().get(server.url("/query")).query(&[("q", "SHOW DATABASES")]).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    server.stop();
}
