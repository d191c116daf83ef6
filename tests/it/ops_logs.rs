//! Logs: JSON with `--log-format json`, request ids in log lines and the `X-Request-Id`
//! header, and no token or password in any log line, whichever way a client sends it.

use strata_e2e::server::{client, ServerBuilder};

const ADMIN: &str = "adm1n-SECRET-token-0123456789";
const WRONG: &str = "wr0ng-SECRET-guess-9876543210";

#[test]
fn no_secret_in_logs_and_every_request_has_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerBuilder::new(dir.path())
        .arg("--auth")
        .arg("--log-format")
        .arg("json")
        .env("STRATA_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "debug")
        .start();
    let c = client();
    let mut ids = Vec::new();
    for secret in [ADMIN, WRONG] {
        let reqs = [
            c.post(srv.url("/api/v2/write?bucket=logs")).header("Authorization", format!("Token {secret}")),
            c.post(srv.url("/api/v2/write?bucket=logs")).header("Authorization", format!("Bearer {secret}")),
            c.post(srv.url(&format!("/write?db=logs&u=someone&p={secret}"))),
            c.post(srv.url("/write?db=logs")).basic_auth("someone", Some(secret)),
            c.post(srv.url(&format!("/api/v1/json?db=logs&p={secret}"))),
            c.get(srv.url(&format!("/query?db=logs&p={secret}&q=SELECT%20*%20FROM%20m"))),
        ];
        for (i, r) in reqs.into_iter().enumerate() {
            let body =
                if i == 4 { r#"{"measurement":"m","fields":{"v":1}}"#.to_string() } else { "m v=1 1".into() };
            let resp = r.body(body).send().unwrap();
            let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
            if secret == WRONG && i < 5 {
                assert_eq!(resp.status(), 401, "request {i} with a wrong token");
            } else if i < 5 {
                assert_eq!(resp.status(), 204, "request {i} with the admin token");
            }
            ids.push(id);
        }
    }
    let log = srv.stop();
    for secret in [ADMIN, WRONG] {
        // Also the distinctive part alone, in case something logs a prefix or an excerpt.
        for needle in [secret, &secret[..12]] {
            assert!(!log.contains(needle), "the log contains {needle:?}:\n{log}");
        }
    }
    let mut json_lines = 0;
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some() && v.get("timestamp").is_some(), "{line}");
        json_lines += 1;
    }
    assert!(json_lines >= ids.len(), "expected JSON log lines, got:\n{log}");
    // Every request id shows up in the log (the span field of its "request done" line).
    for id in &ids {
        assert!(log.contains(id.as_str()), "request id {id} not in the log:\n{log}");
    }
}

#[test]
fn text_logs_are_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerBuilder::new(dir.path()).start();
    let resp = client().get(srv.url("/health")).send().unwrap();
    assert_eq!(resp.status(), 200);
    let log = srv.stop();
    assert!(log.contains("HTTP listening"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with('{')), "JSON lines in a text log:\n{log}");
}
