//! Per-client write rate limits (`limits.client_write_rate`): 429 with `Retry-After` past the
//! burst, counted in `/metrics`; other routes are not limited.

use strata_e2e::server::{client, ServerBuilder};

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
