//! Per-client write rate limits (`limits.client_write_rate`): 429 with `Retry-After` past the
//! burst, counted in `/metrics`; other routes are not limited. The MQTT rate limit
//! (`mqtt.rate_limit`): one token bucket per device, shared by all its connections.

use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, Publish};
use rumqttc::QoS;
use strata_e2e::mqtt::{mqtt_addr, RawClient};
use strata_e2e::server::{client, read_measurement, ServerBuilder};

use crate::mqtt_sessions::device_cli;

fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

#[test]
fn requests_over_the_burst_get_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    // 0.01 requests/s: nothing refills during the test, so the outcome does not depend on
    // timing; a burst of 2.
    let srv = ServerBuilder::new(dir.path())
        .set("limits.client_write_rate", "0.01")
        .set("limits.client_write_rate_unit", "requests")
        .set("limits.client_write_burst", "2")
        .start();
    let c = client();
    let write = || c.post(srv.url("/api/v2/write?bucket=rl")).body("m v=1 1").send().unwrap();
    assert_eq!(write().status(), 204);
    assert_eq!(write().status(), 204);
    let r = write();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    // One token at 0.01/s is 100 s away.
    assert!((90..=100).contains(&retry), "Retry-After {retry}");
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["code"], "too many requests");
    // Queries and health checks are not limited.
    assert_eq!(c.get(srv.url("/health")).send().unwrap().status(), 200);
    let m = c.get(srv.url("/metrics")).send().unwrap().text().unwrap();
    assert_eq!(metric(&m, "strata_ingest_requests_rejected_total{reason=\"rate_limited\"}"), 1.0);
    assert_eq!(
        metric(&m, "strata_backpressure_events_total{protocol=\"http\",reason=\"rate_limited\"}"),
        1.0
    );
    assert_eq!(metric(&m, "strata_http_requests_total{route=\"/api/v2/write\",status=\"429\"}"), 1.0);
    assert_eq!(metric(&m, "strata_ingest_points_total"), 2.0, "the refused request stored nothing");
    srv.stop();
}

#[test]
fn points_mode_charges_the_points_of_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerBuilder::new(dir.path())
        .set("limits.client_write_rate", "0.01")
        .set("limits.client_write_burst", "10")
        .start();
    let c = client();
    let body: String = (0..15).map(|i| format!("m v={i} {i}\n")).collect();
    // The bucket is full: the 15-point request is admitted and leaves a debt of 5 points.
    let r = c.post(srv.url("/write?db=rl")).body(body.clone()).send().unwrap();
    assert_eq!(r.status(), 204);
    let r = c.post(srv.url("/write?db=rl")).body("m v=1 100").send().unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    // (1 + 5) points at 0.01/s: 600 s.
    assert!((590..=600).contains(&retry), "Retry-After {retry}");
    srv.stop();
}

#[test]
fn off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerBuilder::new(dir.path()).start();
    let c = client();
    for i in 0..50 {
        let r = c.post(srv.url("/write?db=rl")).body(format!("m v={i} {i}")).send().unwrap();
        assert_eq!(r.status(), 204);
    }
    srv.stop();
}

#[test]
fn mqtt_connections_of_one_device_share_its_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let password = device_cli(dir.path(), &["add", "pump-7"]).trim().to_owned();
    // 5 messages/s in bursts of 10, and each connection sends one burst. With a bucket per
    // connection neither would ever wait. With the device's bucket, the 20 messages cannot
    // all be acknowledged before the bucket refilled 10 tokens: 2 s after the first CONNECT.
    let srv = ServerBuilder::new(dir.path()).set("mqtt.rate_limit", 5).set("mqtt.rate_burst", 10).start();
    let addr = mqtt_addr(&srv);
    let start = Instant::now();
    // The same device credentials under two client ids.
    let mut conns: Vec<RawClient> = ["pump-7-a", "pump-7-b"]
        .into_iter()
        .map(|client_id| {
            let mut raw = RawClient::connect(addr);
            let code = raw.handshake(client_id, 30, Some(("pump-7", &password)));
            assert_eq!(code, ConnectReturnCode::Success, "{client_id}");
            raw
        })
        .collect();
    for (c, raw) in conns.iter_mut().enumerate() {
        for pkid in 1..=10u16 {
            let mut p =
                Publish::new("telemetry/pump-7/m", QoS::AtLeastOnce, format!("m,conn={c} v={pkid} {pkid}"));
            p.pkid = pkid;
            raw.send(&Packet::Publish(p));
        }
    }
    // Slowed, not refused: every message is acknowledged (and stored, below).
    for (c, raw) in conns.iter_mut().enumerate() {
        for pkid in 1..=10u16 {
            let got = raw.recv();
            assert!(
                matches!(&got, Some(Packet::PubAck(a)) if a.pkid == pkid),
                "connection {c}, PUBACK {pkid}: {got:?}"
            );
        }
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500),
        "20 messages through one bucket of 10 at 5/s take 2 s; acknowledged after {elapsed:?}"
    );
    let m = client().get(srv.url("/metrics")).send().unwrap().text().unwrap();
    let paused = metric(&m, "strata_mqtt_backpressure_total{reason=\"rate_limit\"}");
    assert!(paused >= 1.0, "the second burst must wait for the device's bucket: {paused}");
    for raw in &mut conns {
        raw.send(&Packet::Disconnect);
    }
    srv.stop();
    assert_eq!(read_measurement(dir.path(), "telemetry", "m").len(), 20, "every message stored");
}
