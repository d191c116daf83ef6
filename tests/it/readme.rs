//! The README's tour, walked word for word against the real binary, so it cannot rot: every
//! `$ command` of "A five-minute tour" and "Size your deployment" runs in a shell in a fresh
//! directory, and the output the README shows under it must appear in what the command
//! printed (`...` in the README stands for anything; a time with fractions of a second is the
//! server's clock and matches any time).
//!
//! What is adapted, and only this: `cargo run --release --bin strata` is the binary the suite
//! built; the server listens on ephemeral ports (`STRATA_HTTP_ADDR`/`STRATA_MQTT_ADDR`, so the
//! command itself is unchanged) and the README's `127.0.0.1:8086`/`1883` become those ports;
//! `strata_4XyP...` is the token the tour created; the load generator runs for 2 s instead
//! of 30 s. Starting a server while one runs first stops the running one with Ctrl-C
//! (SIGINT), as the README tells the reader to.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;
use strata_e2e::workspace_bin;

/// The README sections whose commands are walked, in order.
const SECTIONS: &[&str] = &["A five-minute tour", "Size your deployment"];

/// Longest any one command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Step {
    /// 1-based line of the README where the command starts.
    line: usize,
    command: String,
    /// What the README shows below the command (may be empty).
    expected: String,
}

/// The commands of the walked sections with the output shown below each.
fn steps(readme: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut block: Option<Vec<(usize, &str)>> = None;
    for (i, line) in readme.lines().enumerate() {
        if let Some(b) = block.as_mut() {
            if line.trim_start().starts_with("```") {
                let b = block.take().expect("in a block");
                if SECTIONS.contains(&section.as_str()) {
                    out.extend(block_steps(&b));
                }
            } else {
                b.push((i + 1, line));
            }
            continue;
        }
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_owned();
        } else if line.trim_start().starts_with("```") {
            block = Some(Vec::new());
        }
    }
    out
}

/// One code block: lines starting with `$ ` are commands and what follows them up to the next
/// command is their output; a block without any `$ ` is all commands (a script).
fn block_steps(lines: &[(usize, &str)]) -> Vec<Step> {
    let prompted = lines.iter().any(|(_, l)| l.starts_with("$ "));
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (n, first) = lines[i];
        let start = if prompted { first.strip_prefix("$ ") } else { Some(first) };
        let Some(start) = start.filter(|s| !s.trim().is_empty()) else {
            i += 1;
            continue;
        };
        let mut command = start.to_owned();
        i += 1;
        while !complete(&command) && i < lines.len() {
            command.push('\n');
            command.push_str(lines[i].1);
            i += 1;
        }
        let mut expected = Vec::new();
        while prompted && i < lines.len() && !lines[i].1.starts_with("$ ") {
            expected.push(lines[i].1);
            i += 1;
        }
        steps.push(Step { line: n, command, expected: expected.join("\n") });
    }
    steps
}

/// Whether a shell command is whole: no single quote left open, no trailing `\` or `|`.
fn complete(cmd: &str) -> bool {
    let t = cmd.trim_end();
    cmd.matches('\'').count().is_multiple_of(2) && !t.ends_with('\\') && !t.ends_with('|')
}

/// The README's shown output as a regex: `...` is anything, a line break (the README wraps
/// long JSON) is any whitespace or none, a time with a fraction of a second is any time, a
/// trailing `  # comment` is not output.
fn expected_regex(expected: &str) -> Regex {
    let clock = Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z").expect("regex");
    let comment = Regex::new(r"\s{2,}#.*$").expect("regex");
    let mut pattern = String::from("(?s)");
    for (i, line) in expected.lines().map(|l| comment.replace(l, "")).enumerate() {
        if i > 0 {
            pattern.push_str(r"\s*");
        }
        for (j, piece) in line.trim().split("...").enumerate() {
            if j > 0 {
                pattern.push_str(".*?");
            }
            let mut last = 0;
            for m in clock.find_iter(piece.trim()) {
                pattern.push_str(&regex::escape(&piece.trim()[last..m.start()]));
                pattern.push_str(r"[0-9T:.Z-]+");
                last = m.end();
            }
            pattern.push_str(&regex::escape(&piece.trim()[last..]));
        }
    }
    Regex::new(&pattern).expect("expected output as a regex")
}

/// A server the tour started, with where it listens.
struct Running {
    child: Child,
    log: PathBuf,
    http: String,
    mqtt: String,
}

impl Running {
    /// Ctrl-C, then a clean exit.
    fn interrupt(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0, "kill(SIGINT)");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                assert!(status.success(), "the server exited with {status} after Ctrl-C:\n{log}");
                return log;
            }
            assert!(Instant::now() < deadline, "the server did not stop within 20 s of Ctrl-C");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tour's shell, with the `strata` process environment a reader would have (no leftover
/// `STRATA_*` from the test run).
fn shell(dir: &Path, command: &str) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(command).current_dir(dir).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn start_server(dir: &Path, command: &str, n: usize) -> Running {
    let log = dir.join(format!("server-{n}.log"));
    let f = File::create(&log).expect("log file");
    let child = shell(dir, &format!("exec env {command}"))
        .env("STRATA_HTTP_ADDR", "127.0.0.1:0")
        .env("STRATA_MQTT_ADDR", "127.0.0.1:0")
        .stdout(Stdio::from(f.try_clone().expect("clone")))
        .stderr(Stdio::from(f))
        .spawn()
        .expect("spawn the server");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut running = Running { child, log, http: String::new(), mqtt: String::new() };
    loop {
        let text = std::fs::read_to_string(&running.log).unwrap_or_default();
        let addr = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
        };
        if let (Some(h), Some(m)) = (addr("HTTP listening on "), addr("MQTT listening on ")) {
            running.http = h;
            running.mqtt = m;
            return running;
        }
        if let Some(status) = running.child.try_wait().expect("try_wait") {
            panic!("`{command}` exited with {status} before listening:\n{text}");
        }
        assert!(Instant::now() < deadline, "`{command}` did not listen within 15 s:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `VAR=value ... strata [--flags]`: a command that runs the server itself.
fn is_server(command: &str, strata: &str) -> bool {
    let words: Vec<&str> =
        command.split_whitespace().skip_while(|w| w.contains('=') && !w.starts_with('-')).collect();
    words.first() == Some(&strata) && words.get(1).is_none_or(|w| w.starts_with("--"))
}

#[test]
fn readme_tour_runs_word_for_word() {
    for tool in ["curl", "mosquitto_pub", "gzip"] {
        if which(tool).is_none() {
            strata_e2e::tools::missing(
                "readme_tour_runs_word_for_word",
                tool,
                "apt-get install curl mosquitto-clients gzip",
            );
            return;
        }
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("README.md");
    let steps = steps(&readme);
    assert!(steps.len() >= 15, "the tour should have its commands, found {}: {steps:#?}", steps.len());
    let strata = workspace_bin("strata").display().to_string();
    let loadgen = workspace_bin("strata-loadgen").display().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server: Option<Running> = None;
    let mut token = String::new();
    let mut servers = 0;
    let token_re = Regex::new(r"strata_[A-Za-z0-9_-]{20,}").expect("regex");
    for step in &steps {
        let mut cmd = step
            .command
            .replace("cargo run --release --bin strata --", &strata)
            .replace("cargo run --release --bin strata", &strata)
            .replace("cargo build --release -p strata-loadgen", "true")
            .replace("target/release/strata-loadgen", &loadgen)
            .replace("--duration 30s", "--duration 2s");
        if !token.is_empty() {
            cmd = cmd.replace("strata_4XyP...", &token);
        }
        let mut expected = step.expected.replace("strata_4XyP...", "strata_...");
        let where_ = format!("README.md line {}: `{}`", step.line, step.command);
        if is_server(&cmd, &strata) {
            if let Some(s) = server.take() {
                s.interrupt();
            }
            servers += 1;
            let s = start_server(dir.path(), &cmd, servers);
            expected = expected.replace("127.0.0.1:8086", &s.http).replace("127.0.0.1:1883", &s.mqtt);
            let log = std::fs::read_to_string(&s.log).unwrap_or_default();
            assert!(expected_regex(&expected).is_match(&log), "{where_}: expected\n{expected}\ngot\n{log}");
            server = Some(s);
            continue;
        }
        if let Some(s) = &server {
            let mqtt_port = s.mqtt.rsplit(':').next().expect("port");
            cmd = cmd.replace("127.0.0.1:8086", &s.http).replace("-p 1883", &format!("-p {mqtt_port}"));
            expected = expected.replace("127.0.0.1:8086", &s.http);
        }
        let out = run(dir.path(), &cmd, &where_);
        assert!(
            expected_regex(&expected).is_match(&out),
            "{where_}: the README shows\n{expected}\nbut it printed\n{out}"
        );
        if cmd.contains(" token create") {
            token = token_re
                .find(&out)
                .unwrap_or_else(|| panic!("{where_}: no token in\n{out}"))
                .as_str()
                .to_owned();
        }
    }
    assert!(servers >= 2, "the tour starts the server, then again with --auth");
    assert!(!token.is_empty(), "the tour creates a token");
    server.expect("a server runs at the end of the tour").interrupt();
}

/// Runs one command; it must succeed. Returns stdout and stderr together.
fn run(dir: &Path, cmd: &str, where_: &str) -> String {
    let mut child =
        shell(dir, &format!("exec 2>&1; {cmd}")).stdout(Stdio::piped()).spawn().expect("spawn bash");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{where_}: still running after {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = reader.join().expect("reader");
    assert!(status.success(), "{where_}: exited with {status}:\n{out}");
    out
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(tool)).find(|p| p.is_file())
}

#[test]
fn expected_output_patterns() {
    let re = expected_regex("{\"a\":1, ...\n  \"b\":[\"2026-12-03T21:09:44.754528676Z\"]}   # note");
    assert!(re.is_match("x {\"a\":1,\"zz\":3,\"b\":[\"2027-01-01T00:00:00.5Z\"]} y"));
    assert!(!re.is_match("{\"a\":2,\"b\":[\"2027-01-01T00:00:00.5Z\"]}"));
    assert!(!re.is_match("{\"a\":1,\"b\":[\"x\"]}"));
    let steps = block_steps(&[
        (1, "$ curl -XPOST 'http://h/x' --data-binary '"),
        (2, "a b"),
        (3, "c'"),
        (4, "HTTP/1.1 204 No Content"),
        (5, "$ printf 'x' |"),
        (6, "    gzip"),
    ]);
    assert_eq!(steps.len(), 2, "{steps:#?}");
    assert_eq!(steps[0].command, "curl -XPOST 'http://h/x' --data-binary '\na b\nc'");
    assert_eq!(steps[0].expected, "HTTP/1.1 204 No Content");
    assert_eq!(steps[1].command, "printf 'x' |\n    gzip");
    assert!(is_server("X=1 /bin/strata --auth", "/bin/strata"));
    assert!(is_server("/bin/strata", "/bin/strata"));
    assert!(!is_server("/bin/strata token create --db home", "/bin/strata"));
}
