//! `strata query`: one-shot (`-e`) and the interactive prompt (through a pseudo-terminal),
//! against a fake server that answers in the InfluxDB 1.x JSON shape `/query` uses.

use std::process::Command;
use std::time::Duration;

use strata_e2e::fake_http::{FakeServer, Request};
use strata_e2e::pty::Pty;
use strata_e2e::workspace_bin;

fn answer(req: &Request) -> (u16, String) {
    let q = req.param("q").unwrap_or_default();
    if req.target != "/query" && !req.target.starts_with("/query?") {
        return (404, r#"{"error":"no route"}"#.into());
    }
    if q.contains("nosuch") {
        return (200, r#"{"results":[{"statement_id":0,"error":"measurement not found: nosuch"}]}"#.into());
    }
    let db = req.param("db").unwrap_or_default();
    let body = serde_json::json!({"results": [{"statement_id": 0, "series": [{
        "name": "cpu", "tags": {"host": "a,b"}, "columns": ["time", "usage", "db"],
        "values": [["2024-01-01T00:00:00Z", 1.5, db], ["2024-01-01T00:00:10Z", 2, db]]}]}]});
    (200, body.to_string())
}

fn strata(fake: &FakeServer) -> Command {
    let mut cmd = Command::new(workspace_bin("strata"));
    cmd.arg("query").arg("--url").arg(fake.url()).env_remove("STRATA_URL").env_remove("STRATA_TOKEN");
    cmd
}

#[test]
fn one_shot_table_csv_json_and_errors() {
    let fake = FakeServer::start(answer);
    let out = strata(&fake)
        .args(["-e", "SELECT * FROM cpu", "-d", "telemetry"])
        .env("STRATA_TOKEN", "cli-token-123")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "name: cpu\ntags: host=a,b\n\
         +----------------------+-------+-----------+\n\
         | time                 | usage | db        |\n\
         +----------------------+-------+-----------+\n\
         | 2024-01-01T00:00:00Z | 1.5   | telemetry |\n\
         | 2024-01-01T00:00:10Z | 2     | telemetry |\n\
         +----------------------+-------+-----------+\n\
         2 rows\n"
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].param("q").as_deref(), Some("SELECT * FROM cpu"));
    assert_eq!(reqs[0].param("db").as_deref(), Some("telemetry"));
    assert_eq!(reqs[0].header("authorization"), Some("Token cli-token-123"));

    let out = strata(&fake).args(["-e", "SELECT * FROM cpu", "--format", "csv"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "name,host,time,usage,db\ncpu,\"a,b\",2024-01-01T00:00:00Z,1.5,\ncpu,\"a,b\",2024-01-01T00:00:10Z,2,\n"
    );
    assert_eq!(fake.requests()[1].header("authorization"), None, "no token configured, none sent");

    let out = strata(&fake)
        .args(["-e", "SELECT * FROM cpu", "--format", "json", "--precision", "s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["series"][0]["name"], "cpu");
    assert_eq!(fake.requests()[2].param("epoch").as_deref(), Some("s"));

    let out = strata(&fake).args(["-e", "SELECT * FROM nosuch"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("measurement not found: nosuch"), "{err}");

    // A server error status is reported with the server's message.
    let down =
        FakeServer::start(|_| (501, r#"{"code":"not implemented","message":"no queries here"}"#.into()));
    let out = strata(&down).args(["-e", "SELECT 1"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("501") && err.contains("no queries here"), "{err}");
}

#[test]
fn interactive_prompt_on_a_pty() {
    let fake = FakeServer::start(answer);
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    std::fs::write(&history, "SELECT old FROM before\n").unwrap();
    let mut cmd = strata(&fake);
    cmd.arg("--history-file").arg(&history);
    let mut pty = Pty::spawn(cmd);
    let t = Duration::from_secs(20);
    let mut at = pty.expect("Type 'help'", 0, t);
    at = pty.expect("strata> ", at, t);
    pty.send("use telemetry");
    at = pty.expect("using database telemetry", at, t);
    at = pty.expect("strata:telemetry> ", at, t);
    pty.send("SELECT * FROM cpu");
    at = pty.expect("| 2024-01-01T00:00:10Z | 2     | telemetry |", at, t);
    at = pty.expect("2 rows", at, t);
    pty.send("SELECT * FROM nosuch");
    at = pty.expect("ERR: statement 0 failed: measurement not found: nosuch", at, t);
    pty.send("history");
    at = pty.expect("   4  SELECT * FROM nosuch", at, t);
    // !3 is the SELECT from this session (1 came from the file).
    pty.send("!3");
    at = pty.expect("2 rows", at, t);
    // The line editor: three times arrow-up recalls `SELECT * FROM nosuch` (past `history`
    // and the `!3` rerun); Ctrl-A then Ctrl-K clear a line typed by mistake.
    pty.send("\x1b[A\x1b[A\x1b[A");
    at = pty.expect("ERR: statement 0 failed: measurement not found: nosuch", at, t);
    at = pty.expect("strata:telemetry> ", at, t);
    pty.send("DROP EVERYTHING\x01\x0b");
    at = pty.expect("strata:telemetry> ", at, t);
    // A paste of two lines (bracketed, as a terminal sends it) runs both.
    pty.send("\x1b[200~format csv\nSELECT * FROM cpu\x1b[201~");
    at = pty.expect("cpu,\"a,b\",2024-01-01T00:00:00Z,1.5,telemetry", at, t);
    let _ = at;
    pty.send("exit");
    let deadline = std::time::Instant::now() + t;
    let status = loop {
        if let Some(s) = pty.child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the prompt did not exit:\n{}", pty.output);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let queries: Vec<String> = fake.requests().iter().filter_map(|r| r.param("q")).collect();
    assert_eq!(
        queries,
        [
            "SELECT * FROM cpu",
            "SELECT * FROM nosuch",
            "SELECT * FROM cpu",
            "SELECT * FROM nosuch",
            "SELECT * FROM cpu"
        ]
    );
    assert!(fake.requests().iter().all(|r| r.param("db").as_deref() == Some("telemetry")));
    let saved = std::fs::read_to_string(&history).unwrap();
    assert_eq!(
        saved.lines().collect::<Vec<_>>(),
        [
            "SELECT old FROM before",
            "use telemetry",
            "SELECT * FROM cpu",
            "SELECT * FROM nosuch",
            "history",
            "SELECT * FROM cpu",
            "SELECT * FROM nosuch",
            "format csv",
            "SELECT * FROM cpu",
            "exit"
        ]
    );
}
