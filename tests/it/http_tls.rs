//! HTTPS with a certificate generated for the test: a client that trusts it writes; one that
//! does not, or that speaks plain HTTP, gets nowhere.

use reqwest::StatusCode;
use strata_e2e::server::{read_measurement, ServerBuilder};

#[test]
fn http_tls_serves_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["strata.test".to_string()]).unwrap();
    let cert_pem = ck.cert.pem();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let server = ServerBuilder::new(dir.path())
        .arg("--tls-cert")
        .arg(cert.to_str().unwrap())
        .arg("--tls-key")
        .arg(key.to_str().unwrap())
        .start();
    assert_eq!(server.scheme, "https");
    assert!(server.log().contains("HTTP listening on https://"), "{}", server.log());
    let url = format!("https://strata.test:{}/api/v2/write?bucket=secure&precision=s", server.addr.port());
    let trusting = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve("strata.test", server.addr)
        .build()
        .unwrap();
    for i in 0..2 {
        let r = trusting.post(&url).body(format!("m v={i} {i}\n")).send().unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    // Untrusted certificate: the handshake fails.
    let untrusting =
        reqwest::blocking::Client::builder().resolve("strata.test", server.addr).build().unwrap();
    assert!(untrusting.post(&url).body("m v=9 9\n").send().is_err());
    // Plain HTTP to the TLS port: no HTTP response.
    let plain = format!("http://{}/api/v2/write?bucket=secure&precision=s", server.addr);
    let r = reqwest::blocking::Client::new().post(plain).body("m v=8 8\n").send();
    assert!(r.is_err() || !r.unwrap().status().is_success());
    server.stop();
    let got = read_measurement(dir.path(), "secure", "m");
    assert_eq!(got.keys().map(|k| k.2 / 1_000_000_000).collect::<Vec<_>>(), vec![0, 1]);
}

#[test]
fn http_tls_bad_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    let ck = rcgen::generate_simple_self_signed(vec!["strata.test".to_string()]).unwrap();
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let (status, log) = ServerBuilder::new(dir.path())
        .arg("--tls-cert")
        .arg(cert.to_str().unwrap())
        .arg("--tls-key")
        .arg(key.to_str().unwrap())
        .start_expecting_failure();
    assert!(!status.success());
    assert!(log.contains("http.tls_key"), "the error names the key: {log}");
}
