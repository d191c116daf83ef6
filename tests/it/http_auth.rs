//! Authentication and authorization end to end: admin token from the environment, scoped
//! tokens from `strata token create`, every way of presenting a token, wrong scopes,
//! revocation while running, and the refusal to run open on a public address.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use strata_e2e::server::{client, read_measurement, ServerBuilder};
use strata_e2e::workspace_bin;

const ADMIN: &str = "admin-token-for-tests-0123456789";

/// Runs `strata token ARGS --data-dir DIR`; returns stdout, asserting success.
pub fn strata_token(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(workspace_bin("strata"))
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("STRATA_ADMIN_TOKEN")
        .output()
        .expect("run strata token");
    assert!(out.status.success(), "strata token {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn http_auth_tokens_and_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let writer = strata_token(dir.path(), &["create", "--db", "plant", "--write", "--description", "line 1"]);
    let writer = writer.trim().to_owned();
    assert!(writer.starts_with("strata_"), "{writer}");
    let reader = strata_token(dir.path(), &["create", "--db", "plant", "--read"]).trim().to_owned();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let c = client();
    let url = server.url("/api/v2/write?bucket=plant&precision=s");
    let write = |req: reqwest::blocking::RequestBuilder, ts: u32| {
        req.body(format!("m v={ts} {ts}\n")).send().unwrap()
    };

    // No token, a wrong token, a malformed header.
    let r = write(c.post(&url), 1);
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().unwrap()["code"], "unauthorized");
    assert_eq!(
        write(c.post(&url).header("Authorization", "Token strata_wrong"), 2).status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(write(c.post(&url).header("Authorization", "Digest x"), 3).status(), StatusCode::UNAUTHORIZED);
    // Right token, wrong scope: a read token cannot write; a write token cannot write elsewhere.
    let r = write(c.post(&url).header("Authorization", format!("Token {reader}")), 4);
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let text = r.text().unwrap();
    assert!(!text.contains(&reader), "responses never echo tokens: {text}");
    let other = server.url("/api/v2/write?bucket=office&precision=s");
    let r = write(c.post(&other).header("Authorization", format!("Token {writer}")), 5);
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Every way of presenting the write token works.
    assert_eq!(
        write(c.post(&url).header("Authorization", format!("Token {writer}")), 10).status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(write(c.post(&url).bearer_auth(&writer), 11).status(), StatusCode::NO_CONTENT);
    assert_eq!(write(c.post(&url).basic_auth("anyone", Some(&writer)), 12).status(), StatusCode::NO_CONTENT);
    let v1 = server.url(&format!("/write?db=plant&precision=s&u=anyone&p={writer}"));
    assert_eq!(write(c.post(&v1), 13).status(), StatusCode::NO_CONTENT);
    let json = server.url("/api/v1/json?db=plant&precision=s");
    let r = c
        .post(&json)
        .bearer_auth(&writer)
        .body(r#"{"measurement": "m", "fields": {"v": 14}, "time": 14}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Admin: creating databases needs it; the admin token can also write anywhere.
    let r = c.post(server.url("/api/v1/databases?name=office")).bearer_auth(&writer).send().unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c.post(server.url("/api/v1/databases?name=office")).bearer_auth(ADMIN).send().unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(write(c.post(&other).bearer_auth(ADMIN), 20).status(), StatusCode::NO_CONTENT);
    // Liveness needs no token.
    assert_eq!(c.get(server.url("/ping")).send().unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(c.get(server.url("/health")).send().unwrap().status(), StatusCode::OK);

    // A token created while the server runs works at once; a revoked one stops working.
    let late = strata_token(dir.path(), &["create", "--db", "*", "--write"]).trim().to_owned();
    assert_eq!(write(c.post(&url).bearer_auth(&late), 30).status(), StatusCode::NO_CONTENT);
    let list: Value = serde_json::from_str(&strata_token(dir.path(), &["list", "--json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|t| t.get("sha256").is_none()), "list must not print hashes or tokens");
    let writer_id =
        list.iter().find(|t| t["description"] == "line 1").unwrap()["id"].as_str().unwrap().to_owned();
    strata_token(dir.path(), &["revoke", &writer_id]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = write(c.post(&url).bearer_auth(&writer), 40).status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(Instant::now() < deadline, "revoked token still accepted after 5 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(write(c.post(&url).bearer_auth(&late), 41).status(), StatusCode::NO_CONTENT);
    let log = server.stop();
    for t in [&writer, &reader, &late] {
        assert!(!log.contains(t.as_str()), "a token appeared in the log");
    }
    assert!(!log.contains(ADMIN), "the admin token appeared in the log");

    let got = read_measurement(dir.path(), "plant", "m");
    let ts: Vec<i64> = got.keys().map(|k| k.2 / 1_000_000_000).collect();
    assert!(ts.starts_with(&[10, 11, 12, 13, 14, 30]), "{ts:?}");
    assert!(ts.ends_with(&[41]), "{ts:?}");
    assert!(!ts.iter().any(|t| *t < 10), "refused writes stored: {ts:?}");
    assert_eq!(read_measurement(dir.path(), "office", "m").len(), 1);
}

#[test]
fn http_auth_refuses_public_address_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let (status, log) = ServerBuilder::new(dir.path()).http_addr("0.0.0.0:0").start_expecting_failure();
    assert!(!status.success());
    assert!(log.contains("refusing to listen on non-loopback address"), "{log}");
    // With auth on it starts; with the explicit flag too.
    let server = ServerBuilder::new(dir.path())
        .http_addr("0.0.0.0:0")
        .arg("--auth")
        .env("STRATA_ADMIN_TOKEN", ADMIN)
        .start();
    let port = server.addr.port();
    let r = client().get(format!("http://127.0.0.1:{port}/ping")).send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    server.stop();
    let server =
        ServerBuilder::new(dir.path()).http_addr("0.0.0.0:0").arg("--insecure-allow-no-auth").start();
    assert!(server.log().contains("authentication is off on a non-loopback address"));
    server.stop();
}
