//! Helpers for the end-to-end tests in `it/`: the deterministic data model of the crash tests,
//! locating built binaries, starting them on ephemeral ports, and waiting for them.

pub mod crash_model {
    //! What the engine crash writer writes, so the test can recompute every acknowledged value.

    use strata_engine::{FieldValue, WriteBatch};

    pub const CRASH_DB: &str = "crash";
    /// Points per batch.
    pub const POINTS: u64 = 50;
    pub const HOSTS: u64 = 7;

    /// Timestamp of point `i` of batch `b` of `round`: unique across rounds and batches, and
    /// written out of order inside a batch (devices replaying buffers).
    pub fn ts(round: u64, b: u64, i: u64) -> i64 {
        let base = (round * 10_000_000 + b * POINTS) as i64 * 1_000_000_000;
        base + ((i * 37) % POINTS) as i64 * 1_000_000_000
    }

    /// Time range holding exactly the `POINTS` points of batch `b` (what a delete of the batch
    /// removes; the ten points the next batch re-writes are the same points).
    pub fn batch_range(round: u64, b: u64) -> strata_engine::TimeRange {
        strata_engine::TimeRange::new(ts(round, b, 0), ts(round, b + 1, 0))
    }

    pub fn host(i: u64) -> String {
        format!("h{}", i % HOSTS)
    }

    pub fn value(round: u64, b: u64, i: u64) -> f64 {
        ((round * 1_000_003 + b * 101 + i) % 100_000) as f64 / 100.0
    }

    /// Batch `b` of `round`: `POINTS` new points, plus a verbatim re-write of the previous
    /// batch's first ten points (duplicates that must not show up twice).
    pub fn batch_for(round: u64, b: u64) -> WriteBatch {
        let mut batch = WriteBatch::new();
        let mut add = |b: u64, i: u64| {
            batch
                .point("m")
                .tag("host", &host(i))
                .field("v", FieldValue::F64(value(round, b, i)))
                .field("n", FieldValue::I64((b * POINTS + i) as i64))
                .finish(ts(round, b, i))
                .expect("valid point");
        };
        for i in 0..POINTS {
            add(b, i);
        }
        if b > 0 {
            for i in 0..10 {
                add(b - 1, i);
            }
        }
        batch
    }
}

use std::path::PathBuf;

/// Path of a binary built from this workspace (`strata`, `strata-loadgen`): next to the test
/// executable's `deps/` directory.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(p.exists(), "{} not built: run `cargo build --workspace --bins` first", p.display());
    p
}

pub mod server {
    //! Starting the real `strata` binary on an ephemeral port, talking to it, stopping it, and
    //! reading what it stored by opening the engine on its data directory afterwards.

    use std::collections::BTreeMap;
    use std::fs::File;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::time::{Duration, Instant};

    use strata_engine::{Engine, EngineOptions, ScanRequest, TagPredicate, TimeRange, Values};

    use super::workspace_bin;

    /// How long a server may take to start or stop before a test fails.
    pub const START_TIMEOUT: Duration = Duration::from_secs(15);

    /// Options for starting `strata serve`.
    pub struct ServerBuilder {
        data_dir: PathBuf,
        /// `None`: [`workspace_bin`]`("strata")`.
        binary: Option<PathBuf>,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        http_addr: String,
    }

    impl ServerBuilder {
        pub fn new(data_dir: &Path) -> ServerBuilder {
            ServerBuilder {
                data_dir: data_dir.to_owned(),
                binary: None,
                args: Vec::new(),
                envs: Vec::new(),
                http_addr: "127.0.0.1:0".into(),
            }
        }

        /// Runs this `strata` executable instead of the workspace's (the crash soak takes it
        /// from its command line).
        pub fn binary(mut self, path: &Path) -> Self {
            self.binary = Some(path.to_owned());
            self
        }

        pub fn arg(mut self, a: impl Into<String>) -> Self {
            self.args.push(a.into());
            self
        }

        /// `--set key=value`.
        pub fn set(self, key: &str, value: impl std::fmt::Display) -> Self {
            self.arg("--set").arg(format!("{key}={value}"))
        }

        pub fn env(mut self, k: &str, v: &str) -> Self {
            self.envs.push((k.into(), v.into()));
            self
        }

        pub fn http_addr(mut self, addr: &str) -> Self {
            self.http_addr = addr.into();
            self
        }

        fn command(&self, logs: &Path, ready: &Path) -> Command {
            let mut cmd = Command::new(self.binary.clone().unwrap_or_else(|| workspace_bin("strata")));
            cmd.arg("serve")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--http-addr")
                .arg(&self.http_addr)
                .arg("--mqtt-addr")
                .arg("127.0.0.1:0")
                .arg("--ready-file")
                .arg(ready)
                .args(&self.args);
            // The test process's own STRATA_* variables must not leak into the server.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("STRATA_") {
                    cmd.env_remove(k);
                }
            }
            // Debug for every crate of the server, so that tests reading the log (no token in
            // it, for one) see the MQTT and ingest lines too.
            cmd.env(
                "RUST_LOG",
                "info,strata_server=debug,strata_mqtt=debug,strata_ingest=debug,strata_auth=debug",
            );
            for (k, v) in &self.envs {
                cmd.env(k, v);
            }
            let log = File::create(logs).expect("log file");
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("clone log file")))
                .stderr(Stdio::from(log));
            cmd
        }

        /// Starts the server and waits until it listens.
        pub fn start(self) -> StrataServer {
            let work = tempfile::tempdir().expect("tempdir");
            let log = work.path().join("strata.log");
            let ready = work.path().join("ready.json");
            let mut child = self.command(&log, &ready).spawn().expect("spawn strata");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(text) = std::fs::read_to_string(&ready) {
                    let v: serde_json::Value = serde_json::from_str(&text).expect("ready file is JSON");
                    let addr: SocketAddr =
                        v["http"].as_str().expect("http addr").parse().expect("socket addr");
                    let scheme = v["scheme"].as_str().unwrap_or("http").to_owned();
                    return StrataServer {
                        child: Some(child),
                        addr,
                        scheme,
                        data_dir: self.data_dir,
                        log,
                        _work: work,
                    };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("strata exited before listening ({status}):\n{}", read(&log));
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("strata did not listen within {START_TIMEOUT:?}:\n{}", read(&log));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        /// Runs a server that is expected to refuse to start; returns its status and output.
        pub fn start_expecting_failure(self) -> (ExitStatus, String) {
            let work = tempfile::tempdir().expect("tempdir");
            let log = work.path().join("strata.log");
            let ready = work.path().join("ready.json");
            let mut child = self.command(&log, &ready).spawn().expect("spawn strata");
            let status = wait_timeout(&mut child, START_TIMEOUT).unwrap_or_else(|| {
                let _ = child.kill();
                panic!("strata was expected to exit but kept running:\n{}", read(&log))
            });
            assert!(!ready.exists(), "strata wrote its ready file although it should refuse to start");
            (status, read(&log))
        }
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// A running `strata serve`. Killed (SIGKILL) on drop if still running.
    pub struct StrataServer {
        child: Option<Child>,
        pub addr: SocketAddr,
        /// `http` or `https`.
        pub scheme: String,
        pub data_dir: PathBuf,
        log: PathBuf,
        _work: tempfile::TempDir,
    }

    impl StrataServer {
        /// `http://127.0.0.1:PORT{path}`.
        pub fn url(&self, path: &str) -> String {
            format!("{}://{}{path}", self.scheme, self.addr)
        }

        pub fn pid(&self) -> u32 {
            self.child.as_ref().expect("running").id()
        }

        /// Everything the server printed so far.
        pub fn log(&self) -> String {
            read(&self.log)
        }

        /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
        pub fn proc_status_kib(&self, field: &str) -> u64 {
            let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
            text.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
        }

        /// Sends SIGTERM and waits for a clean exit (status 0); returns the log.
        pub fn stop(mut self) -> String {
            let mut child = self.child.take().expect("running");
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            assert_eq!(rc, 0, "kill(SIGTERM) failed");
            let status = wait_timeout(&mut child, START_TIMEOUT).unwrap_or_else(|| {
                let _ = child.kill();
                panic!("strata did not stop within {START_TIMEOUT:?} of SIGTERM:\n{}", self.log())
            });
            let log = self.log();
            assert!(status.success(), "strata exited with {status} after SIGTERM:\n{log}");
            log
        }

        /// SIGKILL: no chance to flush anything.
        pub fn kill9(mut self) {
            let mut child = self.child.take().expect("running");
            child.kill().expect("SIGKILL");
            child.wait().expect("wait");
        }

        /// Sends SIGTERM without waiting (to test shutdown while requests are in flight).
        pub fn sigterm(&self) {
            // SAFETY: as in `stop`.
            let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
            assert_eq!(rc, 0, "kill(SIGTERM) failed");
        }

        /// Waits for the process to exit (after [`StrataServer::sigterm`]); returns its status.
        pub fn wait_exit(mut self) -> (ExitStatus, String) {
            let mut child = self.child.take().expect("running");
            let status = wait_timeout(&mut child, START_TIMEOUT).unwrap_or_else(|| {
                let _ = child.kill();
                panic!("strata did not exit within {START_TIMEOUT:?}:\n{}", self.log())
            });
            (status, self.log())
        }
    }

    impl Drop for StrataServer {
        fn drop(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
                if std::thread::panicking() {
                    eprintln!("--- strata log ---\n{}", self.log());
                }
            }
        }
    }

    /// A blocking HTTP client with a bounded timeout.
    pub fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
    }

    /// One stored value, printed: `1.5`, `3i`, `7u`, `true`, `"text"`.
    pub type Stored = BTreeMap<(String, String, i64), String>;

    /// Every value of `measurement` in `db`, keyed by (series key, field, timestamp), read by
    /// opening the engine on the data directory (the server must be stopped).
    pub fn read_measurement(data_dir: &Path, db: &str, measurement: &str) -> Stored {
        let engine =
            Engine::open(EngineOptions::new(data_dir)).expect("open engine on the server's data dir");
        let mut out = Stored::new();
        if engine.database_exists(db) {
            let series = engine
                .scan(&ScanRequest {
                    db,
                    measurement,
                    predicate: &TagPredicate::All,
                    fields: None,
                    range: TimeRange::ALL,
                })
                .expect("scan");
            for s in series {
                let key = s.key.to_string();
                for c in s.columns {
                    let vals: Vec<String> = match &c.values {
                        Values::F64(v) => v.iter().map(|x| format!("{x}")).collect(),
                        Values::I64(v) => v.iter().map(|x| format!("{x}i")).collect(),
                        Values::U64(v) => v.iter().map(|x| format!("{x}u")).collect(),
                        Values::Bool(v) => v.iter().map(|x| format!("{x}")).collect(),
                        Values::Str(v) => v.iter().map(|x| format!("{x:?}")).collect(),
                    };
                    for (t, v) in c.timestamps.iter().zip(vals) {
                        out.insert((key.clone(), c.field.to_string(), *t), v);
                    }
                }
            }
        }
        engine.close().expect("close engine");
        out
    }

    /// Databases in the data directory (server stopped).
    pub fn databases(data_dir: &Path) -> Vec<String> {
        let engine = Engine::open(EngineOptions::new(data_dir)).expect("open engine");
        let mut dbs = engine.databases();
        dbs.sort();
        engine.close().expect("close engine");
        dbs
    }
}

pub mod mqtt {
    //! MQTT helpers: where a started server's MQTT listeners are (read from the line the
    //! binary prints once listening, `MQTT listening on mqtt://ADDR` / `mqtts://ADDR`), and
    //! raw packet I/O with rumqttc's codec for tests that need exact control of the bytes.

    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use rumqttc::mqttbytes::v4::{self, Packet};

    use crate::server::StrataServer;

    fn listening_addr(server: &StrataServer, scheme: &str) -> Option<SocketAddr> {
        let needle = format!("MQTT listening on {scheme}://");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = server.log();
            if let Some(rest) = log.lines().find_map(|l| l.split(needle.as_str()).nth(1)) {
                return rest.trim().parse().ok();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The plain MQTT listener's address.
    pub fn mqtt_addr(server: &StrataServer) -> SocketAddr {
        listening_addr(server, "mqtt")
            .unwrap_or_else(|| panic!("no MQTT listener in the log:\n{}", server.log()))
    }

    /// The MQTT-over-TLS listener's address.
    pub fn mqtt_tls_addr(server: &StrataServer) -> SocketAddr {
        listening_addr(server, "mqtts")
            .unwrap_or_else(|| panic!("no MQTT TLS listener in the log:\n{}", server.log()))
    }

    /// A raw MQTT 3.1.1 connection: packets written and read with rumqttc's codec.
    pub struct RawClient {
        pub stream: TcpStream,
        buf: bytes::BytesMut,
    }

    impl RawClient {
        pub fn connect(addr: SocketAddr) -> RawClient {
            let stream = TcpStream::connect(addr).expect("connect to the MQTT listener");
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            RawClient { stream, buf: bytes::BytesMut::new() }
        }

        pub fn send(&mut self, p: &Packet) {
            let mut out = bytes::BytesMut::new();
            match p {
                Packet::Connect(c) => c.write(&mut out),
                Packet::Publish(c) => c.write(&mut out),
                Packet::PubAck(c) => c.write(&mut out),
                Packet::Subscribe(c) => c.write(&mut out),
                Packet::PingReq => v4::PingReq.write(&mut out),
                Packet::Disconnect => v4::Disconnect.write(&mut out),
                other => panic!("RawClient cannot send {other:?}"),
            }
            .expect("encode");
            self.stream.write_all(&out).expect("write");
        }

        pub fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
            self.stream.write_all(b)
        }

        /// The next packet, or `None` when the server closed the connection (or the read
        /// timed out).
        pub fn recv(&mut self) -> Option<Packet> {
            loop {
                match v4::read(&mut self.buf, 1 << 20) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("server sent a malformed packet: {e}"),
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        }

        /// Connects as `client_id` and returns the CONNACK's code.
        pub fn handshake(
            &mut self,
            client_id: &str,
            keep_alive: u16,
            login: Option<(&str, &str)>,
        ) -> v4::ConnectReturnCode {
            let mut c = v4::Connect::new(client_id);
            c.keep_alive = keep_alive;
            if let Some((u, p)) = login {
                c.set_login(u, p);
            }
            self.send(&Packet::Connect(c));
            match self.recv() {
                Some(Packet::ConnAck(a)) => a.code,
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
    }
}

pub mod mqtt5 {
    //! A raw MQTT 5.0 connection: packets written and read with rumqttc's v5 codec, for tests
    //! that check reason codes and properties exactly (the rumqttc v5 client turns most
    //! negative codes into connection errors).

    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    use bytes::BytesMut;
    use rumqttc::v5::mqttbytes::v5::{
        ConnAck, Connect, ConnectProperties, Disconnect, DisconnectReasonCode, LastWill, Login, Packet,
        PubAck, PubAckReason, Publish, PublishProperties,
    };
    use rumqttc::v5::mqttbytes::QoS;

    pub struct RawClient5 {
        pub stream: TcpStream,
        buf: BytesMut,
    }

    /// What a CONNECT carries beyond the client id.
    #[derive(Default)]
    pub struct Connect5 {
        pub keep_alive: u16,
        pub clean_start: bool,
        pub session_expiry: Option<u32>,
        pub max_packet_size: Option<u32>,
        pub receive_maximum: Option<u16>,
        pub login: Option<(String, String)>,
        pub will: Option<LastWill>,
    }

    impl RawClient5 {
        pub fn connect(addr: SocketAddr) -> RawClient5 {
            let stream = TcpStream::connect(addr).expect("connect to the MQTT listener");
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            RawClient5 { stream, buf: BytesMut::new() }
        }

        pub fn send(&mut self, p: &Packet) {
            let mut out = BytesMut::new();
            p.write(&mut out).expect("encode");
            self.stream.write_all(&out).expect("write");
        }

        pub fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
            self.stream.write_all(b)
        }

        /// The next packet, or `None` when the server closed the connection (or the read
        /// timed out).
        pub fn recv(&mut self) -> Option<Packet> {
            loop {
                match Packet::read(&mut self.buf, None) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("server sent a malformed 5.0 packet: {e}"),
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        }

        /// Connects as `client_id` and returns the CONNACK.
        pub fn handshake(&mut self, client_id: &str, o: Connect5) -> ConnAck {
            let props = ConnectProperties {
                session_expiry_interval: o.session_expiry,
                max_packet_size: o.max_packet_size,
                receive_maximum: o.receive_maximum,
                ..ConnectProperties::new()
            };
            let c = Connect {
                keep_alive: o.keep_alive,
                client_id: client_id.into(),
                clean_start: o.clean_start,
                properties: Some(props),
            };
            let login = o.login.map(|(u, p)| Login::new(u, p));
            self.send(&Packet::Connect(c, o.will, login));
            match self.recv() {
                Some(Packet::ConnAck(a)) => a,
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }

        /// Publishes at QoS 1 with packet id `pkid` and returns the PUBACK.
        pub fn publish(
            &mut self,
            topic: &str,
            pkid: u16,
            payload: &str,
            props: Option<PublishProperties>,
        ) -> PubAck {
            self.send_publish(topic, QoS::AtLeastOnce, pkid, payload, props);
            match self.recv() {
                Some(Packet::PubAck(a)) => {
                    assert_eq!(a.pkid, pkid);
                    a
                }
                other => panic!("expected PUBACK {pkid}, got {other:?}"),
            }
        }

        pub fn send_publish(
            &mut self,
            topic: &str,
            qos: QoS,
            pkid: u16,
            payload: &str,
            props: Option<PublishProperties>,
        ) {
            let mut p = Publish::new(topic, qos, payload.to_owned(), props);
            p.pkid = pkid;
            self.send(&Packet::Publish(p));
        }

        /// Acknowledges a command.
        pub fn puback(&mut self, pkid: u16) {
            self.send(&Packet::PubAck(PubAck { pkid, reason: PubAckReason::Success, properties: None }));
        }

        pub fn disconnect(&mut self) {
            self.send(&Packet::Disconnect(Disconnect::new(DisconnectReasonCode::NormalDisconnection)));
        }

        /// Reads until the server's DISCONNECT and returns its reason code; panics if the
        /// connection closes without one.
        pub fn expect_disconnect(&mut self) -> (DisconnectReasonCode, Option<String>) {
            loop {
                match self.recv() {
                    Some(Packet::Disconnect(d)) => {
                        return (d.reason_code, d.properties.and_then(|p| p.reason_string))
                    }
                    Some(_) => {}
                    None => panic!("connection closed without a DISCONNECT"),
                }
            }
        }
    }
}

pub mod fake_http {
    //! A minimal HTTP/1.1 server for client tests: answers each request with what a handler
    //! returns and records the requests. One request per connection (`Connection: close`).

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    /// A request as received.
    #[derive(Debug, Clone)]
    pub struct Request {
        pub method: String,
        /// Path and query string.
        pub target: String,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Request {
        /// A parameter from the query string or a form body (percent-decoded).
        pub fn param(&self, name: &str) -> Option<String> {
            let query = self.target.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
            let body = String::from_utf8_lossy(&self.body).into_owned();
            for part in query.split('&').chain(body.split('&')) {
                if let Some((k, v)) = part.split_once('=') {
                    if k == name {
                        return Some(percent_decode(v));
                    }
                }
            }
            None
        }

        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    type Handler = dyn Fn(&Request) -> (u16, String) + Send + Sync;

    /// Stops and joins its thread on drop.
    pub struct FakeServer {
        pub addr: SocketAddr,
        pub requests: Arc<Mutex<Vec<Request>>>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl FakeServer {
        pub fn start(handler: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static) -> FakeServer {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            let addr = listener.local_addr().expect("addr");
            let requests = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let handler: Arc<Handler> = Arc::new(handler);
            let (reqs, stopped) = (requests.clone(), stop.clone());
            let thread = std::thread::spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                            if let Some(req) = read_request(&stream) {
                                let (status, body) = handler(&req);
                                reqs.lock().expect("lock").push(req);
                                let mut s = &stream;
                                let _ = write!(
                                    s,
                                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                    body.len()
                                );
                                let _ = s.flush();
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            FakeServer { addr, requests, stop, thread: Some(thread) }
        }

        pub fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        pub fn requests(&self) -> Vec<Request> {
            self.requests.lock().expect("lock").clone()
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn read_request(stream: &std::net::TcpStream) -> Option<Request> {
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let method = parts.next()?.to_owned();
        let target = parts.next()?.to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':')?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body).ok()?;
        Some(Request { method, target, headers, body })
    }
}

pub mod pty {
    //! Running a command on a pseudo-terminal, for interactive prompts.

    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A child whose stdin, stdout and stderr are the slave side of a pty.
    pub struct Pty {
        pub child: Child,
        master: File,
        /// Everything read so far.
        pub output: String,
    }

    impl Pty {
        pub fn spawn(mut cmd: Command) -> Pty {
            let (mut master, mut slave) = (0, 0);
            // SAFETY: openpty writes two fds into the given pointers; the name, termios and
            // winsize arguments may be null.
            let rc = unsafe {
                libc::openpty(
                    &mut master,
                    &mut slave,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null(),
                )
            };
            assert_eq!(rc, 0, "openpty failed");
            // SAFETY: both fds were just returned by openpty and are owned by nobody else.
            let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
            let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty slave"));
            cmd.stdin(io(&slave)).stdout(io(&slave)).stderr(io(&slave));
            let child = cmd.spawn().expect("spawn on pty");
            drop(slave);
            Pty { child, master, output: String::new() }
        }

        pub fn send(&mut self, line: &str) {
            self.master.write_all(line.as_bytes()).expect("write to pty");
            self.master.write_all(b"\n").expect("write to pty");
        }

        /// Reads until `needle` appears in the output after `from` (byte offset), or panics
        /// after `timeout`. Returns the offset just past the match.
        pub fn expect(&mut self, needle: &str, from: usize, timeout: Duration) -> usize {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(i) = self.output.get(from..).and_then(|s| s.find(needle)) {
                    return from + i + needle.len();
                }
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "{needle:?} did not appear within {timeout:?}; output:\n{}",
                    self.output
                );
                let mut pfd = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&self.master),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(100) as libc::c_int) };
                if n > 0 {
                    let mut buf = [0u8; 4096];
                    match self.master.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            assert!(
                                self.output.get(from..).is_some_and(|s| s.contains(needle)),
                                "pty closed before {needle:?}; output:\n{}",
                                self.output
                            );
                        }
                        Ok(k) => self.output.push_str(&String::from_utf8_lossy(&buf[..k])),
                    }
                }
            }
        }
    }

    impl Drop for Pty {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// Third-party programs the interoperability tests run (Python clients, Mosquitto).
pub mod tools {
    /// Whether missing programs fail the tests instead of skipping them: `CI=true` (or `1`),
    /// so the suite CI runs can never pass an interop test that tested nothing.
    pub fn required() -> bool {
        std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
    }

    /// Reports that `test` cannot run because `tool` is missing: panics under `CI=true`
    /// naming the tool and how to install it, else prints `SKIPPED` (the test then returns).
    pub fn missing(test: &str, tool: &str, install: &str) {
        assert!(
            !required(),
            "{test}: {tool} is missing and CI=true requires it. Install it: {install} (scripts/test.sh does)"
        );
        eprintln!("SKIPPED {test}: {tool} is missing ({install}; scripts/test.sh installs it)");
    }

    /// How to get the Python clients of `tests/python-requirements.txt`.
    pub const PYTHON_INSTALL: &str = "python3 -m venv .venv && .venv/bin/pip install -r \
        tests/python-requirements.txt, then STRATA_TEST_PYTHON=$PWD/.venv/bin/python";
}
