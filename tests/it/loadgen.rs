//! `strata-loadgen` end to end: briefly against the real server with `--verify`, and against a
//! fake server that acknowledges writes but stores nothing, where `--verify` must fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_e2e::server::ServerBuilder;
use strata_e2e::workspace_bin;

/// Longest a loadgen run in these tests may take before it is killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `strata-loadgen ARGS --json -q`; returns its exit code and parsed report.
fn loadgen(args: &[&str]) -> (i32, serde_json::Value, Output) {
    let mut child = Command::new(workspace_bin("strata-loadgen"))
        .args(args)
        .args(["--json", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata-loadgen");
    let deadline = Instant::now() + RUN_TIMEOUT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "strata-loadgen ran longer than {RUN_TIMEOUT:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("wait");
    let code = out.status.code().expect("exited normally");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "loadgen printed no JSON report ({e}), exit {code}:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report, out)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn http_load_is_verified_against_strata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(dir.path()).start();
    let url = server.url("");
    let (code, r, out) = loadgen(&[
        "http",
        "--url",
        &url,
        "--points",
        "20000",
        "--devices",
        "25",
        "--batch",
        "1000",
        "--concurrency",
        "2",
        "--verify",
    ]);
    assert_eq!(code, 0, "loadgen failed:\n{}", stderr(&out));
    assert_eq!(r["acked_lines"], 20_000, "{r}");
    assert_eq!(r["acked_per_measurement"]["readings"], 10_000, "{r}");
    assert_eq!(r["verify"]["ok"], true, "{r}");
    let checks = r["verify"]["measurements"].as_array().expect("measurement checks");
    assert_eq!(checks.len(), 2, "{r}");
    for c in checks {
        assert_eq!(c["stored"], 10_000, "{r}");
    }
    assert!(!r["verify"]["spot_checks"].as_array().expect("spot checks").is_empty(), "{r}");
    server.stop();
}

/// Waits for the server's log to announce its MQTT listener; returns the port.
fn mqtt_port(server: &strata_e2e::server::StrataServer) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        let port = log.lines().filter(|l| l.to_ascii_lowercase().contains("mqtt")).find_map(|l| {
            let at = l.find("127.0.0.1:")? + "127.0.0.1:".len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u16>().ok().filter(|p| *p != 0)
        });
        if let Some(p) = port {
            return p;
        }
        assert!(Instant::now() < deadline, "the server never announced an MQTT listener:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mqtt_load_is_verified_against_strata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(dir.path()).set("mqtt.rate_limit", 0).start();
    let port = mqtt_port(&server).to_string();
    let http = server.url("");
    // One connection per device (client id = device name, as the ACL wants), QoS 1.
    let (code, r, out) = loadgen(&[
        "mqtt",
        "--port",
        &port,
        "--http-url",
        &http,
        "--points",
        "4000",
        "--devices",
        "20",
        "--qos",
        "1",
        "--lines-per-message",
        "10",
        "--verify",
    ]);
    assert_eq!(code, 0, "loadgen failed:\n{}", stderr(&out));
    assert_eq!(r["acked_lines"], 4_000, "{r}");
    assert_eq!(r["verify"]["ok"], true, "{r}");
    server.stop();
}

/// A server that answers every write 204 and stores nothing, and answers every query with an
/// empty result: the failure `--verify` exists to catch.
struct DroppingServer {
    addr: String,
    writes: Arc<AtomicU64>,
    queries: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DroppingServer {
    fn start() -> DroppingServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = format!("http://{}", listener.local_addr().expect("addr"));
        let (writes, queries, stop) = (Arc::default(), Arc::default(), Arc::new(AtomicBool::new(false)));
        let (w, q, s) = (Arc::clone(&writes), Arc::clone(&queries), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            // Bounded: stops when asked, or after the longest a test may run.
            let deadline = Instant::now() + RUN_TIMEOUT * 2;
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (w, q) = (Arc::clone(&w), Arc::clone(&q));
                        std::thread::spawn(move || serve(conn, &w, &q));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        DroppingServer { addr, writes, queries, stop, thread: Some(thread) }
    }
}

impl Drop for DroppingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// HTTP/1.1 keep-alive: one request after another until the client closes.
fn serve(conn: TcpStream, writes: &AtomicU64, queries: &AtomicU64) {
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut out = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if r.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split(' ').nth(1).unwrap_or("");
        let response = if path.starts_with("/query") {
            queries.fetch_add(1, Ordering::Relaxed);
            let json = r#"{"results":[{"statement_id":0}]}"#;
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            )
        } else {
            if path.starts_with("/write") {
                writes.fetch_add(1, Ordering::Relaxed);
            }
            "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
        };
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn verify_fails_when_the_server_drops_acknowledged_writes() {
    let fake = DroppingServer::start();
    let (code, r, out) = loadgen(&[
        "http",
        "--url",
        &fake.addr,
        "--points",
        "3000",
        "--devices",
        "10",
        "--batch",
        "500",
        "--verify",
        "--verify-timeout",
        "300ms",
    ]);
    // Every write was acknowledged, so the load itself succeeded...
    assert_eq!(r["acked_lines"], 3_000, "{r}");
    assert_eq!(fake.writes.load(Ordering::Relaxed), 6);
    // ...but nothing is there, and --verify says so with exit code 1.
    assert_eq!(code, 1, "expected --verify to fail:\n{}", stderr(&out));
    assert_eq!(r["verify"]["ok"], false, "{r}");
    let problems = r["verify"]["problems"].as_array().expect("problems");
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.contains("1500 acknowledged lines but only 0 stored"))),
        "{r}"
    );
    assert!(fake.queries.load(Ordering::Relaxed) >= 2, "verify did not query");
    assert!(stderr(&out).contains("FAILED"), "{}", stderr(&out));
}

#[test]
fn without_verify_the_same_run_succeeds() {
    // The control for the test above: the fake server is a fine write target.
    let fake = DroppingServer::start();
    let (code, r, out) =
        loadgen(&["http", "--url", &fake.addr, "--points", "3000", "--devices", "10", "--batch", "500"]);
    assert_eq!(code, 0, "{}", stderr(&out));
    assert_eq!(r["acked_lines"], 3_000, "{r}");
    assert!(r["verify"].is_null(), "{r}");
    assert_eq!(fake.queries.load(Ordering::Relaxed), 0);
}

/// Against a server with auth on and no token, the run stops at the first refusal and says
/// what to do, instead of sending every batch into a 401 and verifying nothing; the token is
/// read from `STRATA_TOKEN` like the `strata` CLI's (the older `STRATA_LOADGEN_TOKEN` too).
#[test]
fn http_load_stops_at_a_refused_token_and_says_why() {
    const ADMIN: &str = "admin-token-for-loadgen-0123456789";
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let url = server.url("");
    let run = |env: Option<(&str, &str)>| {
        let mut cmd = Command::new(workspace_bin("strata-loadgen"));
        cmd.args(["http", "--url", &url, "--points", "200000", "--devices", "50", "--batch", "1000"])
            .args(["--concurrency", "2", "--verify", "-q"])
            .env_remove("STRATA_TOKEN")
            .env_remove("STRATA_LOADGEN_TOKEN")
            .stdin(Stdio::null());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        cmd.output().expect("run strata-loadgen")
    };
    let out = run(None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("401") && err.contains("STRATA_TOKEN"), "the reason and the fix: {err}");
    let sent: u64 = err
        .split("stopped after ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no request count in: {err}"));
    assert!(sent <= 8, "it should stop at the first refusals, sent {sent}: {err}");

    for var in ["STRATA_TOKEN", "STRATA_LOADGEN_TOKEN"] {
        let out = run(Some((var, ADMIN)));
        assert!(out.status.success(), "with {var}: {}", stderr(&out));
    }
    server.stop();
}
