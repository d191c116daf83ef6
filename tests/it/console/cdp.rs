//! A small Chrome DevTools Protocol client for the console's browser tests: starts headless
//! Chromium with `--remote-debugging-pipe` (CDP messages as NUL-terminated JSON on the
//! child's file descriptors 3, which it reads, and 4, which it writes: no port, no websocket,
//! nothing that another process on the machine could connect to), opens one page and
//! evaluates JavaScript in it.
//!
//! Tests drive the page the way its own scripts see it (setting input values, `click()`),
//! and read back the DOM; console errors and uncaught exceptions are collected from the
//! `Runtime` and `Log` events so a test can assert there were none.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one CDP command or one `wait_for` may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Debian's `chromium` (or the program `STRATA_TEST_CHROMIUM` names), if installed.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_TEST_CHROMIUM") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

pub struct Browser {
    child: Child,
    to_chrome: File,
    from_chrome: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Events that arrived while waiting for answers.
    events: Vec<Value>,
    stderr: PathBuf,
    _profile: tempfile::TempDir,
}

/// A pipe whose two ends are above the descriptors the child's 3 and 4 are made from, so the
/// `dup2`s in `pre_exec` cannot overwrite one another; both close on exec.
fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    let high = |fd: RawFd| {
        // SAFETY: duplicating and closing descriptors this function just created.
        unsafe {
            let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
            assert!(h >= 10, "fcntl(F_DUPFD_CLOEXEC)");
            libc::close(fd);
            h
        }
    };
    (high(fds[0]), high(fds[1]))
}

impl Browser {
    /// Starts Chromium and opens a blank page.
    pub fn launch(exe: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let stderr = profile.path().join("chromium.log");
        let (chrome_reads, we_write) = pipe();
        let (we_read, chrome_writes) = pipe();
        let mut cmd = Command::new(exe);
        cmd.args([
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox", // tests run as root in CI; the page is our own
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            // Nothing leaves the machine: no updates, no safe-browsing lists, no metrics.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-domain-reliability",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-pings",
            "--metrics-recording-only",
            "--password-store=basic",
            "--mute-audio",
            "--hide-scrollbars",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).expect("chromium log"));
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(chrome_reads, 3) < 0 || libc::dup2(chrome_writes, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        // SAFETY: the child has its copies; these ends are ours to close or own.
        let (to_chrome, from) = unsafe {
            libc::close(chrome_reads);
            libc::close(chrome_writes);
            (File::from_raw_fd(we_write), File::from_raw_fd(we_read))
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(from);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to_chrome,
            from_chrome: rx,
            next_id: 1,
            session: String::new(),
            events: Vec::new(),
            stderr,
            _profile: profile,
        };
        let target = b.send(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached =
            b.send(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true }));
        b.session = attached["sessionId"].as_str().expect("sessionId").to_owned();
        // Downloads (the CSV button) are refused rather than written into the working tree.
        b.send(None, "Browser.setDownloadBehavior", json!({ "behavior": "deny" }));
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            b.call(domain, json!({}));
        }
        // Times typed into the page mean the same on every machine.
        b.call("Emulation.setTimezoneOverride", json!({ "timezoneId": "UTC" }));
        b
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.to_chrome
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("writing to chromium: {e}\n{}", self.log()));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_chrome.recv_timeout(left) {
                Ok(v) if v["id"] == json!(id) => {
                    if let Some(err) = v.get("error") {
                        panic!("CDP {method} failed: {err}");
                    }
                    return v["result"].clone();
                }
                Ok(v) => {
                    if v.get("method").is_some() {
                        self.events.push(v);
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("CDP {method}: no answer within {TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium exited:\n{}", self.log()),
            }
        }
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params)
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// Evaluates `js` (awaiting a promise) and returns its value; panics on an exception.
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{js}\nthrew: {}", ex["exception"]["description"].as_str().unwrap_or(&ex.to_string()));
        }
        r["result"]["value"].clone()
    }

    /// Polls `js` until it is truthy; returns its value. On timeout, panics with `what` and
    /// the page's text.
    pub fn wait_for(&mut self, js: &str, what: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let v = self.eval(js);
            let truthy = !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let page = self.eval("document.body ? document.body.innerText : ''");
                let errors = self.errors();
                panic!(
                    "timed out waiting for {what} ({js})\nconsole errors: {errors:#?}\npage text:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Console errors, failed assertions and uncaught exceptions so far, as text.
    pub fn errors(&mut self) -> Vec<String> {
        while let Ok(v) = self.from_chrome.try_recv() {
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
        let mut out = Vec::new();
        for e in &self.events {
            let p = &e["params"];
            match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => out.push(format!("exception: {}", p["exceptionDetails"])),
                Some("Runtime.consoleAPICalled") if p["type"] == "error" || p["type"] == "assert" => {
                    out.push(format!("console.{}: {}", p["type"], p["args"]))
                }
                Some("Log.entryAdded") if p["entry"]["level"] == "error" => out.push(format!(
                    "log [{}] {} {}",
                    p["entry"]["source"].as_str().unwrap_or(""),
                    p["entry"]["text"].as_str().unwrap_or(""),
                    p["entry"]["url"].as_str().unwrap_or("")
                )),
                _ => {}
            }
        }
        out
    }

    /// A left-button drag from `(x0, y)` to `(x1, y)`, in CSS pixels of the viewport, as a
    /// user's mouse makes it (real input events, not synthetic DOM ones).
    pub fn drag(&mut self, x0: f64, x1: f64, y: f64) {
        let mouse = |t: &str, x: f64, buttons: u8| json!({ "type": t, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1 });
        self.call("Input.dispatchMouseEvent", mouse("mouseMoved", x0, 0));
        self.call("Input.dispatchMouseEvent", mouse("mousePressed", x0, 1));
        for i in 1..=5 {
            let x = x0 + (x1 - x0) * f64::from(i) / 5.0;
            self.call("Input.dispatchMouseEvent", mouse("mouseMoved", x, 1));
        }
        self.call("Input.dispatchMouseEvent", mouse("mouseReleased", x1, 0));
    }

    /// Presses and releases Enter on the focused element, as a keyboard does.
    pub fn press_enter(&mut self) {
        let key = |t: &str| json!({ "type": t, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r" });
        self.call("Input.dispatchKeyEvent", key("keyDown"));
        let mut up = key("keyUp");
        up.as_object_mut().expect("object").remove("text");
        self.call("Input.dispatchKeyEvent", up);
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self, path: &Path) {
        let r =
            self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true }));
        let png = base64_decode(r["data"].as_str().expect("screenshot data"));
        std::fs::write(path, png).expect("write screenshot");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (what CDP sends screenshots in); the test crate has no base64 dependency.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
