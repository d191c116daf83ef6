//! HTTP before and around authentication: clients that never finish a request header or body,
//! more connections than the server takes, unauthenticated bodies, cross-site requests from
//! a browser, and the delete permission. See `../hostile.rs`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use strata_e2e::server::{client, ServerBuilder, StrataServer};

use crate::http_auth::strata_token;

const ADMIN: &str = "admin-token-for-tests-0123456789";

/// A connection that sent `head` (usually an unfinished request) and waits.
fn open(addr: SocketAddr, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(head.as_bytes()).expect("send");
    s
}

/// What the server sent before it closed `s` (or `limit` passed: `None`).
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
            // Reset: closed too.
            Err(_) => return Some(String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

/// Sends one whole request on a fresh connection and returns the status line's code (0 when
/// the connection was closed without an answer).
fn raw_status(addr: SocketAddr, request: &str, limit: Duration) -> Option<u16> {
    let mut s = open(addr, request);
    let text = read_until_closed(&mut s, limit)?;
    Some(text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

#[test]
fn hostile_http_half_headers_are_closed_and_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("http.header_read_timeout", "1s").start();
    let half = "POST /write?db=x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n";
    let mut slow: Vec<TcpStream> = (0..200).map(|_| open(server.addr, half)).collect();
    // A normal client is served while they hang.
    assert_eq!(client().get(server.url("/ping")).send().unwrap().status(), StatusCode::NO_CONTENT);
    let started = Instant::now();
    for (i, s) in slow.iter_mut().enumerate() {
        let left = Duration::from_secs(8).saturating_sub(started.elapsed());
        assert!(
            read_until_closed(s, left).is_some(),
            "connection {i} with half a header still open {:?} after the others",
            started.elapsed()
        );
    }
    // An idle connection (nothing sent) is closed too.
    let mut idle = TcpStream::connect(server.addr).unwrap();
    assert!(read_until_closed(&mut idle, Duration::from_secs(5)).is_some(), "idle connection kept open");
    assert_eq!(client().get(server.url("/ping")).send().unwrap().status(), StatusCode::NO_CONTENT);
    server.stop();
}

#[test]
fn hostile_http_connection_cap_refuses_quickly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("http.max_connections", 16).start();
    let half = "GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    // More than the cap: connections are admitted in the background in no fixed order, and
    // the ones past the cap are refused, so at least 16 end up holding every place.
    let held: Vec<TcpStream> = (0..24).map(|_| open(server.addr, half)).collect();
    let ping = "GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Answered or closed within 3 s, never left hanging.
        let status = raw_status(server.addr, ping, Duration::from_secs(3));
        assert!(status.is_some(), "a connection past the cap got no answer and was not closed");
        if status == Some(503) || status == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "still served ({status:?}) with 24 connections held (cap 16)");
    }
    // The refusal says why and when to come back.
    let mut s = open(server.addr, ping);
    let text = read_until_closed(&mut s, Duration::from_secs(3)).expect("closed");
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after:"), "{text}");
    assert!(text.contains("http.max_connections"), "{text}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while raw_status(server.addr, ping, Duration::from_secs(3)) != Some(204) {
        assert!(Instant::now() < deadline, "not served again after the held connections closed");
    }
    server.stop();
}

fn write_memory_bytes(server: &StrataServer) -> u64 {
    let text = client().get(server.url("/metrics")).send().unwrap().text().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("strata_ingest_write_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn hostile_http_slow_bodies_hold_only_what_they_sent() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path())
        .set("limits.max_body_size", "1MiB")
        .set("limits.write_memory", "4MiB")
        .set("limits.write_memory_wait", "200ms")
        .set("http.body_timeout", "2s")
        .start();
    let head = "POST /write?db=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1048576\r\n\r\nm v=1 1\n";
    let mut slow: Vec<TcpStream> = (0..8).map(|_| open(server.addr, head)).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while write_memory_bytes(&server) < 8 * 1024 {
        assert!(Instant::now() < deadline, "the slow bodies were never read");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Declared 8 MiB in all, sent a few bytes: a normal writer still gets in.
    let r = client().post(server.url("/write?db=slow")).body("m v=2 2\n").send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{}", r.text().unwrap());
    // The slow bodies are cut off with 408.
    for s in &mut slow {
        let text = read_until_closed(s, Duration::from_secs(8)).expect("slow body never cut off");
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    }
    server.stop();
}

#[test]
fn hostile_http_unauthenticated_bodies_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    // A body that would take forever: the answer comes before it.
    for (path, ct) in [
        ("/query", "text/plain"),
        ("/query?db=x", "application/x-www-form-urlencoded"),
        ("/api/v2/buckets", "application/json"),
        ("/api/v1/mqtt/commands/dev/reboot", "application/octet-stream"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ct}\r\nContent-Length: 1000000\r\n\r\nq=SELECT"
        );
        let mut s = open(server.addr, &head);
        let text = read_until_closed(&mut s, Duration::from_secs(3))
            .unwrap_or_else(|| panic!("{path}: no answer while the body was unfinished"));
        assert!(text.starts_with("HTTP/1.1 401"), "{path}: {text}");
    }
    // A token in a small form body still works (Grafana sends p there).
    let r =
        client().post(server.url("/query")).form(&[("q", "SHOW DATABASES"), ("p", ADMIN)]).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().unwrap());
    server.stop();
}

#[test]
fn hostile_http_cross_site_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerBuilder::new(dir.path()).set("http.allowed_origins", "https://grafana.example").start();
    let c = client();
    let port = server.addr.port();
    let q = server.url("/query");
    let refused = |r: reqwest::blocking::Response, what: &str| {
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}");
        let v: Value = r.json().unwrap();
        let msg = v["error"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains("cross-site"), "{what}: {msg}");
    };
    // A page elsewhere posting a form, or text/plain: refused, nothing done.
    refused(
        c.post(&q)
            .header("Origin", "http://evil.example")
            .form(&[("q", "CREATE DATABASE pwned")])
            .send()
            .unwrap(),
        "form from another origin",
    );
    refused(
        c.post(&q)
            .header("Origin", "null")
            .header("Content-Type", "text/plain")
            .body("CREATE DATABASE pwned")
            .send()
            .unwrap(),
        "text/plain from an opaque origin",
    );
    refused(
        c.post(server.url("/write?db=pwned"))
            .header("Origin", format!("http://localhost:{}", port + 1))
            .body("m v=1 1\n")
            .send()
            .unwrap(),
        "write from another port",
    );
    refused(
        c.post(&q)
            .header("Sec-Fetch-Site", "cross-site")
            .form(&[("q", "CREATE DATABASE pwned")])
            .send()
            .unwrap(),
        "Sec-Fetch-Site: cross-site",
    );
    // DNS rebinding: a name that resolves to 127.0.0.1 but is not a loopback name.
    refused(
        c.get(server.url("/query?q=SHOW+DATABASES"))
            .header("Host", format!("rebind.evil.example:{port}"))
            .send()
            .unwrap(),
        "foreign Host",
    );
    let r = c.get(server.url("/query?q=SHOW+DATABASES")).send().unwrap();
    let v: Value = r.json().unwrap();
    assert!(!v.to_string().contains("pwned"), "a cross-site request created a database: {v}");
    // Non-browser clients (no Origin), the same origin, and a configured origin work.
    let ok = |r: reqwest::blocking::Response, what: &str| {
        assert!(r.status().is_success(), "{what}: {} {}", r.status(), r.text().unwrap());
    };
    ok(c.post(&q).form(&[("q", "CREATE DATABASE a")]).send().unwrap(), "no Origin");
    ok(
        c.post(&q)
            .header("Origin", format!("http://127.0.0.1:{port}"))
            .header("Sec-Fetch-Site", "same-origin")
            .form(&[("q", "CREATE DATABASE b")])
            .send()
            .unwrap(),
        "same origin",
    );
    ok(
        c.post(&q)
            .header("Origin", "https://grafana.example")
            .header("Sec-Fetch-Site", "cross-site")
            .form(&[("q", "CREATE DATABASE c")])
            .send()
            .unwrap(),
        "allowed origin",
    );
    ok(
        c.post(server.url("/write?db=a"))
            .header("Host", format!("localhost:{port}"))
            .body("m v=1 1\n")
            .send()
            .unwrap(),
        "localhost Host",
    );
    server.stop();
}

#[test]
fn hostile_http_delete_needs_its_own_permission() {
    let dir = tempfile::tempdir().unwrap();
    let writer =
        strata_token(dir.path(), &["create", "--db", "plant", "--write", "--read"]).trim().to_owned();
    let deleter =
        strata_token(dir.path(), &["create", "--db", "plant", "--write", "--delete"]).trim().to_owned();
    let server = ServerBuilder::new(dir.path()).arg("--auth").env("STRATA_ADMIN_TOKEN", ADMIN).start();
    let c = client();
    let r = c.post(server.url("/write?db=plant")).bearer_auth(&writer).body("m,d=1 v=1 1\n").send().unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let q = server.url("/query?db=plant");
    for stmt in ["DELETE FROM m", "DROP SERIES FROM m", "DROP MEASUREMENT m"] {
        let r = c.post(&q).bearer_auth(&writer).form(&[("q", stmt)]).send().unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{stmt} with a write token");
        let v: Value = r.json().unwrap();
        assert!(v["error"].as_str().unwrap_or_default().contains("delete"), "{stmt}: {v}");
    }
    let r = c.get(server.url("/query?db=plant&q=SELECT+v+FROM+m")).bearer_auth(&writer).send().unwrap();
    assert!(r.text().unwrap().contains("\"values\""), "the refused deletes deleted");
    let r = c.post(&q).bearer_auth(&deleter).form(&[("q", "DELETE FROM m")]).send().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().unwrap();
    assert!(v["results"][0].get("error").is_none(), "{v}");
    let list: Value = serde_json::from_str(&strata_token(dir.path(), &["list", "--json"])).unwrap();
    let deletes: Vec<bool> = list.as_array().unwrap().iter().map(|t| t["delete"] == true).collect();
    assert_eq!(deletes, [false, true], "{list:#}");
    server.stop();
}
