//! Graceful shutdown: a request in flight when SIGTERM arrives is finished and stored, new
//! connections are refused, and the process exits 0 after flushing the engine.

use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use strata_e2e::server::{client, read_measurement, ServerBuilder};

/// A body that sends `first`, then waits for the test to release `rest`.
struct Gated {
    first: Option<Vec<u8>>,
    gate: mpsc::Receiver<Vec<u8>>,
    rest: Option<std::io::Cursor<Vec<u8>>>,
}

impl Read for Gated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(first) = self.first.take() {
            buf[..first.len()].copy_from_slice(&first);
            return Ok(first.len());
        }
        if self.rest.is_none() {
            let rest = self.gate.recv().unwrap_or_default();
            self.rest = Some(std::io::Cursor::new(rest));
        }
        self.rest.as_mut().expect("set above").read(buf)
    }
}

#[test]
fn http_shutdown_finishes_in_flight_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let url = server.url("/api/v2/write?bucket=sd");
    let (release, gate) = mpsc::channel();
    let body = Gated { first: Some(b"m v=1 1\nm v=2 2\n".to_vec()), gate, rest: None };
    let inflight = std::thread::spawn(move || {
        client().post(url).body(reqwest::blocking::Body::new(body)).send().map(|r| r.status())
    });
    // Let the request start, then ask the server to stop while its body is half sent.
    std::thread::sleep(Duration::from_millis(500));
    server.sigterm();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect_timeout(&server.addr, Duration::from_secs(1)).is_ok() {
        assert!(Instant::now() < deadline, "a shutting-down server must stop accepting connections");
        std::thread::sleep(Duration::from_millis(20));
    }
    release.send(b"m v=3 3\n".to_vec()).unwrap();
    assert_eq!(inflight.join().unwrap().expect("in-flight request answered"), StatusCode::NO_CONTENT);
    let (status, log) = server.wait_exit();
    assert!(status.success(), "exit status {status}:\n{log}");
    assert!(log.contains("storage engine closed"), "{log}");
    let got = read_measurement(dir.path(), "sd", "m");
    assert_eq!(got.keys().map(|k| k.2).collect::<Vec<_>>(), vec![1, 2, 3]);
}
