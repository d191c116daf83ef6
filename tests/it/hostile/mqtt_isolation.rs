//! MQTT device isolation and pre-authentication exhaustion (see `../hostile.rs`): one device
//! must never act as another (its Last Will, its client id), one credential must not fill the
//! session table, a connection that has not authenticated must not hold much, and malformed
//! packets close the connection as the spec says.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rumqttc::mqttbytes::v4::{self, ConnectReturnCode, LastWill, Packet, Subscribe, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    self as m5, ConnectReturnCode as Code5, DisconnectReasonCode, LastWill as LastWill5,
};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use serde_json::Value;
use strata_e2e::mqtt::{mqtt_addr, RawClient};
use strata_e2e::mqtt5::{Connect5, RawClient5};
use strata_e2e::server::{client, ServerBuilder, StrataServer};

/// Publishes a command over HTTP and returns the 202 body.
fn command(server: &StrataServer, device: &str, what: &str) -> Value {
    let url = server.url(&format!("/api/v1/mqtt/commands/{device}/{what}?qos=1"));
    let r = client().post(url).body(what.to_owned()).send().unwrap();
    assert_eq!(r.status(), 202);
    r.json().unwrap()
}

/// A 3.1.1 CONNECT as `username` (no password: auth is off) with client id `client_id`.
fn connect_as(
    raw: &mut RawClient,
    client_id: &str,
    username: &str,
    clean: bool,
    will: Option<LastWill>,
) -> (ConnectReturnCode, bool) {
    let mut c = v4::Connect::new(client_id);
    c.keep_alive = 30;
    c.clean_session = clean;
    c.set_login(username, "");
    c.last_will = will;
    raw.send(&Packet::Connect(c));
    match raw.recv() {
        Some(Packet::ConnAck(a)) => (a.code, a.session_present),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn subscribe(raw: &mut RawClient, pkid: u16, filters: &[&str]) -> Vec<SubscribeReasonCode> {
    let mut sub = Subscribe::new(filters[0], QoS::AtLeastOnce);
    for f in &filters[1..] {
        sub.add((*f).to_owned(), QoS::AtLeastOnce);
    }
    sub.pkid = pkid;
    raw.send(&Packet::Subscribe(sub));
    match raw.recv() {
        Some(Packet::SubAck(a)) if a.pkid == pkid => a.return_codes,
        other => panic!("expected SUBACK {pkid}, got {other:?}"),
    }
}

/// The next PUBLISH's topic (acknowledging it), skipping other packets.
fn next_command(raw: &mut RawClient) -> Option<String> {
    loop {
        match raw.recv()? {
            Packet::Publish(p) => {
                if p.pkid != 0 {
                    raw.send(&Packet::PubAck(v4::PubAck::new(p.pkid)));
                }
                return Some(p.topic);
            }
            _ => continue,
        }
    }
}

/// Whether the server closed the connection: reads until EOF or a reset. A read that only
/// times out (the server still holds the connection) is `false`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut scratch = [0u8; 1024];
    loop {
        match stream.read(&mut scratch) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

/// A Last Will names a topic its device may not publish to (another device's command or
/// telemetry topic): refused at CONNECT with 3.1.1 0x05 / 5.0 0x87 (not authorized), the
/// code PUBLISH refusals use; the device it names never receives it.
#[test]
fn last_will_to_another_device_is_refused_at_connect() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let mut victim = RawClient::connect(addr);
    assert_eq!(connect_as(&mut victim, "dev-b", "dev-b", true, None).0, ConnectReturnCode::Success);
    assert_eq!(
        subscribe(&mut victim, 1, &["commands/dev-b/#"]),
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    for topic in ["commands/dev-b/reboot", "telemetry/dev-b/status", "somewhere/else"] {
        let mut attacker = RawClient::connect(addr);
        let will = LastWill::new(topic, "reboot", QoS::AtLeastOnce, false);
        let (code, _) = connect_as(&mut attacker, "dev-a", "dev-a", true, Some(will));
        assert_eq!(code, ConnectReturnCode::NotAuthorized, "3.1.1 will on {topic}");
        // Whatever happened, the attacker's connection ends without DISCONNECT now.
        drop(attacker);
    }
    let mut attacker5 = RawClient5::connect(addr);
    let will = LastWill5::new("commands/dev-b/reboot", "reboot", QoS5::AtLeastOnce, false, None);
    let ack = attacker5.handshake(
        "dev-a5",
        Connect5 { keep_alive: 30, clean_start: true, will: Some(will), ..Default::default() },
    );
    assert_eq!(ack.code, Code5::NotAuthorized, "5.0 will on another device's command topic");
    drop(attacker5);

    // Its own telemetry topic is fine.
    let mut own = RawClient::connect(addr);
    let will = LastWill::new("telemetry/dev-a/status", "status online=false", QoS::AtLeastOnce, false);
    assert_eq!(connect_as(&mut own, "dev-a", "dev-a", true, Some(will)).0, ConnectReturnCode::Success);
    drop(own);

    // The victim's next message is the real command, not a will.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = command(&server, "dev-b", "real");
        if d["delivered"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "dev-b is not subscribed: {d}");
    }
    assert_eq!(next_command(&mut victim).as_deref(), Some("commands/dev-b/real"));
    let log = server.stop();
    assert!(log.contains("Last Will refused by the ACL"), "{log}");
}

/// Identity dev-a asking for dev-b's client id: refused (0x05) whether it resumes the
/// persistent session, starts clean over it or takes over dev-b's live connection; dev-b's
/// session, subscriptions and queued command stay, and dev-b gets them when it comes back.
#[test]
fn another_identity_cannot_take_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let mut b = RawClient::connect(addr);
    assert_eq!(connect_as(&mut b, "dev-b", "dev-b", false, None), (ConnectReturnCode::Success, false));
    assert_eq!(
        subscribe(&mut b, 1, &["commands/dev-b/#"]),
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    // Live takeover by another identity: refused, and dev-b's connection stays up.
    let mut a = RawClient::connect(addr);
    assert_eq!(connect_as(&mut a, "dev-b", "dev-a", false, None).0, ConnectReturnCode::NotAuthorized);
    b.send(&Packet::PingReq);
    assert!(matches!(b.recv(), Some(Packet::PingResp)), "dev-b was disconnected by another identity");
    b.send(&Packet::Disconnect);
    assert_eq!(b.recv(), None);

    let queued = command(&server, "dev-b", "unlock");
    assert_eq!(queued["queued"], 1, "{queued}");
    for clean in [false, true] {
        let mut a = RawClient::connect(addr);
        let (code, present) = connect_as(&mut a, "dev-b", "dev-a", clean, None);
        assert_eq!(code, ConnectReturnCode::NotAuthorized, "clean = {clean}");
        assert!(!present, "dev-a resumed dev-b's session");
    }
    // 5.0 too.
    let mut a5 = RawClient5::connect(addr);
    let ack = a5.handshake(
        "dev-b",
        Connect5 {
            keep_alive: 30,
            session_expiry: Some(3600),
            login: Some(("dev-a".into(), String::new())),
            ..Default::default()
        },
    );
    assert_eq!(ack.code, Code5::NotAuthorized);

    // dev-b resumes its session and gets the command queued for it.
    let mut b = RawClient::connect(addr);
    assert_eq!(connect_as(&mut b, "dev-b", "dev-b", false, None), (ConnectReturnCode::Success, true));
    assert_eq!(next_command(&mut b).as_deref(), Some("commands/dev-b/unlock"));
    let log = server.stop();
    assert!(log.contains("session belongs to another identity"), "{log}");
}

/// The TLS listener refuses a non-loopback address with authentication off, like the plain
/// listeners, naming the key. (Nothing is sent to it: the server must not start.)
#[test]
fn mqtt_tls_listener_refuses_public_address_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::mqtt_tls::make_pki("dev");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (status, log) = ServerBuilder::new(&dir.path().join("data"))
        .set("mqtt.tls_addr", "0.0.0.0:0")
        .set("mqtt.tls_cert", write("server.pem", &pki.server.0))
        .set("mqtt.tls_key", write("server.key", &pki.server.1))
        .start_expecting_failure();
    assert!(!status.success());
    assert!(log.contains("refusing to listen on non-loopback address"), "{log}");
    assert!(log.contains("mqtt.tls_addr"), "the error names the key: {log}");
}

/// One identity may hold `mqtt.max_sessions_per_identity` persistent sessions; past it a new
/// one is refused (3.1.1 0x03, 5.0 0x97) while its existing ones resume and other identities
/// are unaffected. A session holds at most `mqtt.max_subscriptions_per_session` filters
/// (SUBACK 0x80 / 5.0 0x97 past it).
#[test]
fn sessions_per_identity_and_subscriptions_per_session_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path())
        .set("mqtt.max_sessions_per_identity", 2)
        .set("mqtt.max_subscriptions_per_session", 3)
        .start();
    let addr = mqtt_addr(&server);
    for id in ["gw-1", "gw-2"] {
        let mut c = RawClient::connect(addr);
        assert_eq!(connect_as(&mut c, id, "gw", false, None).0, ConnectReturnCode::Success, "{id}");
        c.send(&Packet::Disconnect);
        assert_eq!(c.recv(), None);
    }
    let mut third = RawClient::connect(addr);
    assert_eq!(connect_as(&mut third, "gw-3", "gw", false, None).0, ConnectReturnCode::ServiceUnavailable);
    let mut third5 = RawClient5::connect(addr);
    let ack = third5.handshake(
        "gw-3",
        Connect5 {
            keep_alive: 30,
            session_expiry: Some(60),
            login: Some(("gw".into(), String::new())),
            ..Default::default()
        },
    );
    assert_eq!(ack.code, Code5::QuotaExceeded);
    // A clean session is no persistent session: allowed.
    let mut clean = RawClient::connect(addr);
    assert_eq!(connect_as(&mut clean, "gw-clean", "gw", true, None).0, ConnectReturnCode::Success);
    // Its own sessions resume; another identity is not affected.
    let mut again = RawClient::connect(addr);
    assert_eq!(connect_as(&mut again, "gw-1", "gw", false, None), (ConnectReturnCode::Success, true));
    let mut other = RawClient::connect(addr);
    assert_eq!(connect_as(&mut other, "other-1", "other", false, None).0, ConnectReturnCode::Success);

    let codes = subscribe(
        &mut other,
        1,
        &["commands/other/a", "commands/other/b", "commands/other/c", "commands/other/d"],
    );
    let ok = SubscribeReasonCode::Success(QoS::AtLeastOnce);
    assert_eq!(codes, vec![ok, ok, ok, SubscribeReasonCode::Failure]);
    // Subscribing again to a filter it holds is no new filter.
    assert_eq!(subscribe(&mut other, 2, &["commands/other/a"]), vec![ok]);
    let mut other5 = RawClient5::connect(addr);
    let ack =
        other5.handshake("other5", Connect5 { keep_alive: 30, clean_start: true, ..Default::default() });
    assert_eq!(ack.code, Code5::Success);
    let filters: Vec<m5::Filter> = ["a", "b", "c", "d"]
        .iter()
        .map(|f| m5::Filter::new(format!("commands/other5/{f}"), QoS5::AtLeastOnce))
        .collect();
    let mut sub = m5::Subscribe::new_many(filters, None);
    sub.pkid = 3;
    other5.send(&m5::Packet::Subscribe(sub));
    match other5.recv() {
        Some(m5::Packet::SubAck(a)) => {
            assert_eq!(a.return_codes[3], m5::SubscribeReasonCode::QuotaExceeded, "{a:?}");
            assert!(matches!(a.return_codes[2], m5::SubscribeReasonCode::Success(_)), "{a:?}");
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// A connection that has not authenticated may announce a CONNECT far larger than any device's
/// (a fixed header claiming 200 KiB): it is closed from that header, before the body is read
/// or waited for (not after `mqtt.connect_timeout`); a 5.0 one gets CONNACK 0x95 first.
#[test]
fn huge_connect_is_refused_from_its_fixed_header() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).set("mqtt.connect_timeout", "60s").start();
    let addr = mqtt_addr(&server);
    // Remaining length 200,000 (varint c0 9a 0c), then the start of a 3.1.1 CONNECT.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0x10, 0xc0, 0x9a, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04]).unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(5)), "the server waited for a 200 KiB CONNECT");

    let mut raw5 = RawClient5::connect(addr);
    raw5.send_bytes(&[0x10, 0xc0, 0x9a, 0x0c, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05]).unwrap();
    match raw5.recv() {
        Some(m5::Packet::ConnAck(a)) => assert_eq!(a.code, Code5::PacketTooLarge),
        other => panic!("expected CONNACK 0x95, got {other:?}"),
    }
    // An ordinary CONNECT still works.
    assert_eq!(RawClient::connect(addr).handshake("small", 30, None), ConnectReturnCode::Success);
}

/// Fuzz finding: a 5.0 UNSUBSCRIBE with reserved flags 0101 and no topic filter was answered
/// with an UNSUBACK without reason codes (itself malformed). It is a malformed packet:
/// DISCONNECT 0x81 and close (MQTT-3.10.1-1, MQTT-3.10.3-2). 3.1.1 SUBSCRIBE/UNSUBSCRIBE with
/// wrong reserved flags or without a filter close the connection (MQTT-3.8.1-1, 3.8.3-3,
/// 3.10.1-1, 3.10.3-2).
#[test]
fn malformed_subscribe_and_unsubscribe_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerBuilder::new(dir.path()).start();
    let addr = mqtt_addr(&server);
    let mut raw5 = RawClient5::connect(addr);
    assert_eq!(
        raw5.handshake("fuzz5", Connect5 { keep_alive: 30, clean_start: true, ..Default::default() }).code,
        Code5::Success
    );
    raw5.send_bytes(&[0xa5, 0x03, 0x04, 0xc3, 0x00]).unwrap();
    assert_eq!(raw5.expect_disconnect().0, DisconnectReasonCode::MalformedPacket);
    assert!(raw5.recv().is_none(), "closed after the DISCONNECT");

    let cases: [(&str, &[u8]); 5] = [
        ("UNSUBSCRIBE with flags 0000", &[0xa0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']),
        ("UNSUBSCRIBE without a filter", &[0xa2, 0x02, 0x00, 0x01]),
        ("SUBSCRIBE with flags 0000", &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01]),
        ("SUBSCRIBE without a filter", &[0x82, 0x02, 0x00, 0x01]),
        ("PINGREQ with flags 0001", &[0xc1, 0x00]),
    ];
    for (what, bytes) in cases {
        let mut raw = RawClient::connect(addr);
        assert_eq!(raw.handshake("raw", 30, None), ConnectReturnCode::Success);
        raw.send_bytes(bytes).unwrap();
        // A well-formed PINGREQ after it: answered only if the bad packet was accepted.
        raw.send_bytes(&[0xc0, 0x00]).unwrap();
        let mut answers = Vec::new();
        while let Some(p) = raw.recv() {
            answers.push(p);
        }
        assert!(answers.is_empty(), "{what}: answered {answers:?} instead of closing");
    }
}

/// A fleet token (the password, any username, ACL off) lets its holder invent identities, so
/// the per-identity cap alone does not bound it: `mqtt.max_sessions_per_token` does. Past it a
/// persistent session under yet another client id and username is refused (3.1.1 0x03,
/// 5.0 0x97); the token's own sessions resume, clean sessions are not counted, and a
/// registered device (own password) is not counted against any token.
#[test]
fn sessions_per_token_are_capped_whatever_identities_it_presents() {
    let dir = tempfile::tempdir().unwrap();
    let strata = |args: &[&str]| {
        let out = std::process::Command::new(strata_e2e::workspace_bin("strata"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("STRATA_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert!(out.status.success(), "strata {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let token = strata(&["token", "create", "--db", "telemetry", "--write"]);
    let device_pw = strata(&["device", "add", "registered-1"]);
    let server = ServerBuilder::new(dir.path())
        .arg("--auth")
        .env("STRATA_ADMIN_TOKEN", "admin-token-for-tests-0123456789")
        .set("mqtt.acl", false)
        .set("mqtt.max_sessions_per_token", 3)
        .start();
    let addr = mqtt_addr(&server);
    let connect = |client_id: &str, user: &str, password: &str, clean: bool| {
        let mut raw = RawClient::connect(addr);
        let mut c = v4::Connect::new(client_id);
        c.keep_alive = 30;
        c.clean_session = clean;
        c.set_login(user, password);
        raw.send(&Packet::Connect(c));
        let code = match raw.recv() {
            Some(Packet::ConnAck(a)) => (a.code, a.session_present),
            other => panic!("expected CONNACK, got {other:?}"),
        };
        (raw, code)
    };
    for i in 0..3 {
        let (mut raw, (code, _)) = connect(&format!("gw-{i}"), &format!("made-up-{i}"), &token, false);
        assert_eq!(code, ConnectReturnCode::Success, "session {i}");
        raw.send(&Packet::Disconnect);
        assert_eq!(raw.recv(), None);
    }
    let (_refused, (code, _)) = connect("gw-3", "made-up-3", &token, false);
    assert_eq!(code, ConnectReturnCode::ServiceUnavailable);
    let mut refused5 = RawClient5::connect(addr);
    let ack = refused5.handshake(
        "gw-4",
        Connect5 {
            keep_alive: 30,
            session_expiry: Some(60),
            login: Some(("made-up-4".into(), token.clone())),
            ..Default::default()
        },
    );
    assert_eq!(ack.code, Code5::QuotaExceeded);
    // Clean sessions are not counted; the token's own sessions resume.
    let (_clean, (code, _)) = connect("gw-clean", "made-up-5", &token, true);
    assert_eq!(code, ConnectReturnCode::Success);
    let (_again, code) = connect("gw-1", "made-up-1", &token, false);
    assert_eq!(code, (ConnectReturnCode::Success, true));
    // A registered device is not counted against the token.
    let (_device, (code, _)) = connect("registered-1", "registered-1", &device_pw, false);
    assert_eq!(code, ConnectReturnCode::Success);
    let log = server.stop();
    assert!(log.contains("mqtt.max_sessions_per_token"), "the refusal names the limit");
}
