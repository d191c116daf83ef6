//! The `[mqtt]` section of the configuration (documented key by key in
//! `docs/configuration.md`).

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use strata_auth::Secret;
use strata_ingest::config::{ByteSize, HumanDuration, InvalidConfig, OptDuration};
use strata_lineproto::Precision;

use super::topic::TopicPattern;

/// The MQTT listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Serve MQTT at all. Default true.
    pub enabled: bool,
    /// `host:port` of the plain-TCP listener. Default `127.0.0.1:1883`. Port 0 picks a free
    /// port (announced in the `--ready-file` and the log).
    pub addr: String,
    /// Database the published points are written to. Default `telemetry`.
    pub database: String,
    /// Topic pattern of telemetry: `/`-separated levels, literal or `{device}` (required) or
    /// `{measurement}` (optional; without it JSON points must name their measurement).
    /// Default `telemetry/{device}/{measurement}`.
    pub topic_pattern: String,
    /// Tag that carries the device id on every point. Default `device`.
    pub device_tag: String,
    /// First topic level of cloud-to-device commands: `{prefix}/{device}/...`. Default
    /// `commands`.
    pub command_prefix: String,
    /// Enforce the ACL: a device publishes only under its own telemetry topics and subscribes
    /// only to its own command topics. Turn off for gateways that publish for many devices.
    /// Default true.
    pub acl: bool,
    /// Refuse devices without their own password in the device credentials file (`strata
    /// device add`; CONNACK 0x05): fleet tokens no longer open MQTT connections. Client
    /// certificates still do. Default false: registered devices need their own password,
    /// others authenticate as before (tokens, or nothing with auth off).
    pub require_device_credentials: bool,
    /// Unit of line-protocol timestamps in payloads: `ns`, `us`, `ms`, `s`. Default `ns`.
    pub line_precision: String,
    /// Unit of integer JSON timestamps in payloads. Default `ms` (what devices usually have).
    pub json_precision: String,
    /// Largest MQTT packet accepted; a larger one closes the connection. Default 1 MiB.
    pub max_packet_size: ByteSize,
    /// Most simultaneous connections; more are refused (CONNACK 3 server unavailable, 5.0
    /// 0x97 quota exceeded; `listener.rs` bounds the refusals too). Default 10000.
    pub max_connections: usize,
    /// Most QoS 1 messages of one connection written (and acknowledged) together; also the
    /// most messages one connection has in flight. Default 256.
    pub max_inflight: usize,
    /// How long a new connection may take to send CONNECT. Default 10 s.
    pub connect_timeout: HumanDuration,
    /// Largest CONNECT accepted (`mqtt.max_packet_size` if that is smaller): what a connection
    /// that has not authenticated yet may make the server buffer. A larger one is closed
    /// from its fixed header, before its body is read (5.0: CONNACK 0x95 first). A device's
    /// CONNECT (client id, credentials, a Last Will) is a few hundred bytes; 16 KiB leaves
    /// room for a will payload of ~15 KiB while 10,000 half-open connections hold at most
    /// ~180 MiB. Default 16 KiB; raise it for larger will payloads.
    pub max_connect_size: ByteSize,
    /// Most persistent sessions (3.1.1 `clean session = false`, 5.0 Session Expiry Interval
    /// above 0) one identity (device id: certificate CN, username, else client id) may hold; a
    /// further one is refused (CONNACK 3 / 5.0 0x97) while its existing ones still resume. A
    /// device needs one, a gateway one per connection. Default 16.
    pub max_sessions_per_identity: usize,
    /// Most persistent sessions the connections authenticated by one token (the password,
    /// auth on) may hold, whatever identities they present: with the ACL off a token's
    /// holder picks any username, so the per-identity cap alone does not bound it. A further
    /// one is refused (CONNACK 3 / 5.0 0x97). Registered devices and certificates are not
    /// counted. Default 10,000: a tenth of the session table (at least 100,000 sessions),
    /// room for a gateway's devices, while one leaked fleet token cannot fill it. 1 to
    /// 1,000,000; there is no "off", set it at or above the table size to lift it.
    pub max_sessions_per_token: usize,
    /// Most topic filters one session holds; past it a SUBSCRIBE's further filters get
    /// SUBACK 0x80 (5.0: 0x97 quota exceeded). A device needs one or two. Default 64.
    pub max_subscriptions_per_session: usize,
    /// Ceiling on the keep-alive a client may choose, whole seconds from 1 s to 65535 s. A
    /// client asking for 0 (no keep-alive) or more is held to this ceiling: a 5.0 client is
    /// told so (CONNACK Server Keep Alive), a 3.1.1 client cannot be and is timed out after
    /// 1.5 x this all the same. Why a ceiling at all: a device whose TCP connection dies
    /// silently (NAT timeout, power loss) is only noticed by the keep-alive; without one it
    /// would stay "online", hold its connection slot and never get its Last Will published.
    /// Default 3600 s (a dead connection is noticed within 90 minutes); lower it (e.g. AWS IoT
    /// Core's 1200 s) to notice sooner, at the cost of dropping 3.1.1 devices that asked for a
    /// longer keep-alive when they stay silent past 1.5 x the ceiling.
    pub max_keep_alive: HumanDuration,
    /// Messages per second one device may publish on average (token bucket); past it the
    /// listener stops reading that device's socket until tokens refill. One bucket per
    /// authenticated device, shared by all its connections (`rate.rs`); a gateway with
    /// `acl = false` is one device. 0 = off. Default 1000.
    pub rate_limit: u32,
    /// Burst of the rate limit (bucket size). Default 2000.
    pub rate_burst: u32,
    /// Dead letters kept on disk; the oldest is dropped past it. Default 10000.
    pub dead_letter_max_entries: usize,
    /// Bytes of dead letters kept on disk; the oldest are dropped past it. Default 256 MiB.
    pub dead_letter_max_size: ByteSize,
    /// QoS 1 commands kept for one offline persistent session; the oldest is dropped past it.
    /// Default 1000.
    pub session_max_queued: usize,
    /// `host:port` of the MQTT-over-TLS listener, empty = off (conventionally `:8883`).
    pub tls_addr: String,
    /// PEM certificate chain of the TLS listener.
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert`.
    pub tls_key: PathBuf,
    /// PEM CA certificates; when set, the TLS listener requires a client certificate signed by
    /// one of them, and its subject CN is the device id (mutual TLS). Empty = no client
    /// certificates.
    pub tls_client_ca: PathBuf,
    /// Bridge mode: subscribe to an external broker (`[mqtt.bridge]`).
    pub bridge: BridgeConfig,
}

/// `[mqtt.bridge]`: Strata subscribes to an existing broker (Mosquitto, EMQX, HiveMQ) and stores
/// what devices publish there, with the listener's topic mapping, payload decoding and dead
/// letters. Messages are acknowledged to the broker (QoS 1) only once durable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// Run the bridge. Default false.
    pub enabled: bool,
    /// `host:port` of the broker. Default `127.0.0.1:1883`.
    pub broker: String,
    /// MQTT client id at the broker. With `clean_session = false` the broker keeps the
    /// subscription and the QoS 1 messages while Strata is down. Default `strata-bridge`;
    /// give each Strata node its own.
    pub client_id: String,
    /// Username at the broker; empty = none.
    pub username: String,
    /// Password at the broker (prefer `STRATA_MQTT_BRIDGE_PASSWORD`).
    pub password: Secret,
    /// Topic filters to subscribe to at QoS 1, comma-separated (a string, so that
    /// `STRATA_MQTT_BRIDGE_TOPICS` and `--set` can set it). Default `telemetry/+/+` (the
    /// default `mqtt.topic_pattern`). A message whose topic does not match
    /// `mqtt.topic_pattern` is dead-lettered.
    pub topics: String,
    /// Shared-subscription group: subscribe to `$share/{group}/{filter}` so that several Strata
    /// nodes with the same group split the messages. Empty = plain subscriptions (every node
    /// gets every message).
    pub share_group: String,
    /// Ask the broker for a clean session at each connect. Default false (the broker keeps the
    /// session, and the messages published while Strata was away).
    pub clean_session: bool,
    /// Keep-alive towards the broker. Default 30 s.
    pub keep_alive: HumanDuration,
    /// Most messages written as one engine write. Default 1000.
    pub max_batch: usize,
    /// Longest wait between reconnection attempts (the wait doubles from 100 ms up to it).
    /// Default 30 s.
    pub max_backoff: HumanDuration,
    /// MQTT version spoken to the broker: `3.1.1` (default) or `5`.
    pub protocol: BridgeProtocol,
    /// MQTT 5.0 only, with `clean_session = false`: the Session Expiry Interval asked for, how
    /// long the broker keeps the session (subscriptions, queued QoS 1 messages) after Strata
    /// disconnects. Default `off`: never expires (0xFFFFFFFF), as a 3.1.1 persistent session;
    /// the broker may cap it (Mosquitto: `persistent_client_expiration`). Whole seconds,
    /// at least 1 s. A shorter value frees the broker's memory sooner after a node is retired
    /// and loses what was published while Strata was away longer than that.
    pub session_expiry: OptDuration,
    /// Connect to the broker over TLS (rustls). Default false.
    pub tls: bool,
    /// PEM CA certificates the broker's certificate must chain to (with `tls`). Empty = the
    /// system's roots (`SSL_CERT_FILE`, or the OS store). The server name checked is the host
    /// of `broker` (a DNS name or an IP address, which the certificate must list).
    pub ca: PathBuf,
    /// PEM client certificate chain presented to the broker (mutual TLS); needs `client_key`.
    /// Empty = none.
    pub client_cert: PathBuf,
    /// PEM private key of `client_cert`.
    pub client_key: PathBuf,
}

/// `mqtt.bridge.protocol`: written `"3.1.1"` or `"5"` (a string, so that the environment and
/// `--set` can set it; `5` and `"5.0"` are accepted too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BridgeProtocol {
    #[default]
    V311,
    V5,
}

impl Serialize for BridgeProtocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            BridgeProtocol::V311 => "3.1.1",
            BridgeProtocol::V5 => "5",
        })
    }
}

impl<'de> Deserialize<'de> for BridgeProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::Number(n) => n.to_string(),
        };
        match text.trim() {
            "3.1.1" | "4" => Ok(BridgeProtocol::V311),
            "5" | "5.0" => Ok(BridgeProtocol::V5),
            other => {
                Err(serde::de::Error::custom(format!("{other:?} is not an MQTT version: \"3.1.1\" or \"5\"")))
            }
        }
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            enabled: false,
            broker: "127.0.0.1:1883".into(),
            client_id: "strata-bridge".into(),
            username: String::new(),
            password: Secret::default(),
            topics: "telemetry/+/+".into(),
            share_group: String::new(),
            clean_session: false,
            keep_alive: HumanDuration::secs(30),
            max_batch: 1000,
            max_backoff: HumanDuration::secs(30),
            protocol: BridgeProtocol::V311,
            session_expiry: OptDuration::OFF,
            tls: false,
            ca: PathBuf::new(),
            client_cert: PathBuf::new(),
            client_key: PathBuf::new(),
        }
    }
}

impl BridgeConfig {
    /// The filters of `topics`.
    pub fn filters(&self) -> Vec<&str> {
        self.topics.split(',').map(str::trim).filter(|t| !t.is_empty()).collect()
    }

    /// The filters as subscribed (with the `$share/{group}/` prefix when set).
    pub fn subscriptions(&self) -> Vec<String> {
        self.filters()
            .into_iter()
            .map(|t| {
                if self.share_group.is_empty() {
                    (*t).to_owned()
                } else {
                    format!("$share/{}/{t}", self.share_group)
                }
            })
            .collect()
    }

    /// Host and port of `broker` (validated).
    pub fn host_port(&self) -> Option<(String, u16)> {
        let (host, port) = self.broker.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some((host.to_owned(), port.parse().ok()?)).filter(|(h, _)| !h.is_empty())
    }

    /// The Session Expiry Interval of an MQTT 5.0 CONNECT, in seconds: `None` (0, the session
    /// ends with the connection) with a clean session.
    pub fn session_expiry_secs(&self) -> Option<u32> {
        if self.clean_session {
            return None;
        }
        Some(match self.session_expiry.get() {
            None => u32::MAX,
            // u32::MAX itself means "never"; anything longer is as good as never.
            Some(d) => u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
        })
    }

    fn validate(&self) -> Result<(), InvalidConfig> {
        let bad = |key: &'static str, reason: String| Err(InvalidConfig { key, reason });
        if !self.enabled {
            return Ok(());
        }
        // TLS files are read (and their contents checked) when the bridge starts
        // (`bridge::tls`); here only the combinations.
        let set = |p: &PathBuf| !p.as_os_str().is_empty();
        if !self.tls {
            for (key, p) in [
                ("mqtt.bridge.ca", &self.ca),
                ("mqtt.bridge.client_cert", &self.client_cert),
                ("mqtt.bridge.client_key", &self.client_key),
            ] {
                // Likely a forgotten `tls = true`: refuse rather than connect in the clear.
                if set(p) {
                    return bad("mqtt.bridge.tls", format!("{key} is set but mqtt.bridge.tls is false"));
                }
            }
        }
        if set(&self.client_key) && !set(&self.client_cert) {
            return bad(
                "mqtt.bridge.client_cert",
                "mqtt.bridge.client_key is set without a certificate".into(),
            );
        }
        if set(&self.client_cert) && !set(&self.client_key) {
            return bad(
                "mqtt.bridge.client_key",
                "mqtt.bridge.client_cert is set without its private key".into(),
            );
        }
        if self.session_expiry.get().is_some_and(|d| d.as_secs() == 0) {
            return bad(
                "mqtt.bridge.session_expiry",
                "must be at least 1s (or off, never); for no session set mqtt.bridge.clean_session = true"
                    .into(),
            );
        }
        if self.host_port().is_none() {
            return bad("mqtt.bridge.broker", format!("{:?} is not host:port", self.broker));
        }
        if self.client_id.is_empty() || self.client_id.len() > 256 {
            return bad("mqtt.bridge.client_id", "must be 1 to 256 bytes".into());
        }
        if self.filters().is_empty() {
            return bad("mqtt.bridge.topics", "name at least one topic filter".into());
        }
        for t in self.filters() {
            if !rumqttc::valid_filter(t) || t.starts_with('$') {
                return bad("mqtt.bridge.topics", format!("{t:?} is not a topic filter"));
            }
        }
        if self.share_group.contains(['/', '+', '#']) {
            return bad(
                "mqtt.bridge.share_group",
                format!("{:?} must be one topic level without wildcards", self.share_group),
            );
        }
        if self.max_batch == 0 || self.max_batch > 65_535 {
            return bad("mqtt.bridge.max_batch", format!("{} is not between 1 and 65535", self.max_batch));
        }
        if self.keep_alive.get() < std::time::Duration::from_secs(5) {
            return bad("mqtt.bridge.keep_alive", "must be at least 5s".into());
        }
        if self.max_backoff.get() < std::time::Duration::from_millis(100) {
            return bad("mqtt.bridge.max_backoff", "must be at least 100ms".into());
        }
        Ok(())
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            addr: "127.0.0.1:1883".into(),
            database: "telemetry".into(),
            topic_pattern: "telemetry/{device}/{measurement}".into(),
            device_tag: "device".into(),
            command_prefix: "commands".into(),
            acl: true,
            require_device_credentials: false,
            line_precision: "ns".into(),
            json_precision: "ms".into(),
            max_packet_size: ByteSize::mib(1),
            max_connections: 10_000,
            max_inflight: 256,
            connect_timeout: HumanDuration::secs(10),
            max_connect_size: ByteSize::kib(16),
            max_sessions_per_identity: 16,
            max_sessions_per_token: 10_000,
            max_subscriptions_per_session: 64,
            max_keep_alive: HumanDuration::secs(3600),
            rate_limit: 1000,
            rate_burst: 2000,
            dead_letter_max_entries: 10_000,
            dead_letter_max_size: ByteSize::mib(256),
            session_max_queued: 1000,
            tls_addr: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_client_ca: PathBuf::new(),
            bridge: BridgeConfig::default(),
        }
    }
}

impl MqttConfig {
    /// Checks every `mqtt.*` key; the error names the key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let bad = |key: &'static str, reason: String| Err(InvalidConfig { key, reason });
        for (key, addr) in [("mqtt.addr", &self.addr), ("mqtt.tls_addr", &self.tls_addr)] {
            if key == "mqtt.tls_addr" && addr.is_empty() {
                continue;
            }
            match addr.to_socket_addrs().map(|mut a| a.next().is_some()) {
                Ok(true) => {}
                Ok(false) => return bad(key, format!("{addr:?} resolves to no address")),
                Err(e) => return bad(key, format!("{addr:?} is not a host:port address: {e}")),
            }
        }
        if let Err(e) = TopicPattern::parse(&self.topic_pattern) {
            return bad("mqtt.topic_pattern", e.to_string());
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        };
        if !name_ok(&self.database) || self.database.starts_with('.') {
            return bad("mqtt.database", format!("{:?} is not a database name", self.database));
        }
        if !name_ok(&self.device_tag) {
            return bad("mqtt.device_tag", format!("{:?} is not a tag key", self.device_tag));
        }
        if self.command_prefix.is_empty()
            || self.command_prefix.contains(['/', '+', '#'])
            || self.topic_pattern.split('/').next() == Some(self.command_prefix.as_str())
        {
            return bad(
                "mqtt.command_prefix",
                "must be one topic level, without wildcards, other than the first level of mqtt.topic_pattern"
                    .into(),
            );
        }
        for (key, p) in
            [("mqtt.line_precision", &self.line_precision), ("mqtt.json_precision", &self.json_precision)]
        {
            if Precision::from_str(p).is_err() {
                return bad(key, format!("{p:?} is not one of ns, us, ms, s"));
            }
        }
        if self.max_packet_size < ByteSize(64) || self.max_packet_size > ByteSize::mib(256) {
            return bad("mqtt.max_packet_size", "must be between 64B and 256MiB".into());
        }
        if self.max_connect_size < ByteSize(128) || self.max_connect_size > ByteSize::mib(256) {
            return bad("mqtt.max_connect_size", "must be between 128B and 256MiB".into());
        }
        let ranges: [(&'static str, usize, usize); 7] = [
            ("mqtt.max_connections", self.max_connections, 1_000_000),
            ("mqtt.max_sessions_per_identity", self.max_sessions_per_identity, 1_000_000),
            ("mqtt.max_sessions_per_token", self.max_sessions_per_token, 1_000_000),
            // The sessions file counts a session's filters in two bytes.
            ("mqtt.max_subscriptions_per_session", self.max_subscriptions_per_session, 65_535),
            ("mqtt.max_inflight", self.max_inflight, 65_535),
            ("mqtt.dead_letter_max_entries", self.dead_letter_max_entries, 10_000_000),
            ("mqtt.session_max_queued", self.session_max_queued, 1_000_000),
        ];
        for (key, v, max) in ranges {
            if v == 0 || v > max {
                return bad(key, format!("{v} is not between 1 and {max}"));
            }
        }
        if self.rate_limit > 0 && self.rate_burst == 0 {
            return bad("mqtt.rate_burst", "must be at least 1 when mqtt.rate_limit is on".into());
        }
        if self.connect_timeout.get().is_zero() {
            return bad("mqtt.connect_timeout", "must be positive".into());
        }
        let k = self.max_keep_alive.get();
        if k.subsec_nanos() != 0 || k.as_secs() == 0 || k.as_secs() > u64::from(u16::MAX) {
            // MQTT carries keep-alives as whole seconds in two bytes.
            return bad(
                "mqtt.max_keep_alive",
                format!("{} is not whole seconds from 1s to 65535s", self.max_keep_alive),
            );
        }
        if !self.tls_addr.is_empty()
            && (self.tls_cert.as_os_str().is_empty() || self.tls_key.as_os_str().is_empty())
        {
            return bad("mqtt.tls_cert", "mqtt.tls_addr needs mqtt.tls_cert and mqtt.tls_key".into());
        }
        self.bridge.validate()
    }

    /// `max_keep_alive` in seconds (validated: 1 to 65535).
    pub fn max_keep_alive_secs(&self) -> u16 {
        u16::try_from(self.max_keep_alive.get().as_secs()).unwrap_or(u16::MAX).max(1)
    }

    /// The largest CONNECT read: `max_connect_size`, or `max_packet_size` if smaller.
    pub fn connect_limit(&self) -> usize {
        self.max_connect_size.as_usize().min(self.max_packet_size.as_usize())
    }

    /// Line-protocol timestamp unit (validated).
    pub fn line_precision(&self) -> Precision {
        Precision::from_str(&self.line_precision).unwrap_or_default()
    }

    /// JSON timestamp unit (validated).
    pub fn json_precision(&self) -> Precision {
        Precision::from_str(&self.json_precision).unwrap_or(Precision::Milliseconds)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn on() -> BridgeConfig {
        BridgeConfig { enabled: true, ..Default::default() }
    }

    fn bridge(b: BridgeConfig) -> MqttConfig {
        MqttConfig { bridge: b, ..Default::default() }
    }

    #[test]
    fn bridge_subscriptions_and_address() {
        let b = BridgeConfig { share_group: "strata".into(), ..on() };
        assert_eq!(b.subscriptions(), vec!["$share/strata/telemetry/+/+"]);
        assert_eq!(on().subscriptions(), vec!["telemetry/+/+"]);
        let b = BridgeConfig { topics: "a/+/+, b/#".into(), ..on() };
        assert_eq!(b.subscriptions(), vec!["a/+/+", "b/#"]);
        assert_eq!(on().host_port(), Some(("127.0.0.1".into(), 1883)));
        let b = BridgeConfig { broker: "[::1]:1884".into(), ..on() };
        assert_eq!(b.host_port(), Some(("::1".into(), 1884)));
        bridge(on()).validate().unwrap();
    }

    #[test]
    fn bridge_protocol_and_session_expiry() {
        #[derive(Deserialize)]
        struct T {
            p: BridgeProtocol,
        }
        let parse = |s: &str| toml::from_str::<T>(s).map(|t| t.p).map_err(|e| e.to_string());
        assert_eq!(parse(r#"p = "3.1.1""#), Ok(BridgeProtocol::V311));
        assert_eq!(parse(r#"p = "5""#), Ok(BridgeProtocol::V5));
        assert_eq!(parse(r#"p = "5.0""#), Ok(BridgeProtocol::V5));
        assert_eq!(parse("p = 5"), Ok(BridgeProtocol::V5));
        assert!(parse(r#"p = "3.1""#).unwrap_err().contains("not an MQTT version"));
        // What the environment and --set produce: the default's type, a string.
        let tree = toml::Value::try_from(BridgeConfig::default()).unwrap();
        assert_eq!(tree.get("protocol").and_then(|v| v.as_str()), Some("3.1.1"));

        assert_eq!(on().session_expiry_secs(), Some(u32::MAX), "persistent and no expiry: never");
        let b = BridgeConfig { session_expiry: OptDuration(Some(Duration::from_secs(3600))), ..on() };
        assert_eq!(b.session_expiry_secs(), Some(3600));
        let b = BridgeConfig { session_expiry: OptDuration(Some(Duration::from_secs(1 << 40))), ..on() };
        assert_eq!(b.session_expiry_secs(), Some(u32::MAX));
        assert_eq!(BridgeConfig { clean_session: true, ..on() }.session_expiry_secs(), None);
        bridge(BridgeConfig {
            protocol: BridgeProtocol::V5,
            tls: true,
            ca: "ca.pem".into(),
            client_cert: "c.pem".into(),
            client_key: "k.pem".into(),
            ..on()
        })
        .validate()
        .unwrap();
    }

    #[test]
    fn defaults_validate_and_bad_keys_are_named() {
        MqttConfig::default().validate().unwrap();
        for secs in [1, 65_535] {
            let c = MqttConfig { max_keep_alive: HumanDuration::secs(secs), ..Default::default() };
            c.validate().unwrap();
            assert_eq!(u64::from(c.max_keep_alive_secs()), secs);
        }
        let cases: Vec<(MqttConfig, &str)> = vec![
            (MqttConfig { topic_pattern: "telemetry/x".into(), ..Default::default() }, "mqtt.topic_pattern"),
            (MqttConfig { database: "a b".into(), ..Default::default() }, "mqtt.database"),
            (MqttConfig { command_prefix: "telemetry".into(), ..Default::default() }, "mqtt.command_prefix"),
            (MqttConfig { json_precision: "days".into(), ..Default::default() }, "mqtt.json_precision"),
            (MqttConfig { max_inflight: 0, ..Default::default() }, "mqtt.max_inflight"),
            (
                MqttConfig { max_sessions_per_identity: 0, ..Default::default() },
                "mqtt.max_sessions_per_identity",
            ),
            (MqttConfig { max_sessions_per_token: 0, ..Default::default() }, "mqtt.max_sessions_per_token"),
            (
                MqttConfig { max_subscriptions_per_session: 65_536, ..Default::default() },
                "mqtt.max_subscriptions_per_session",
            ),
            (MqttConfig { max_connect_size: ByteSize(64), ..Default::default() }, "mqtt.max_connect_size"),
            (MqttConfig { tls_addr: "127.0.0.1:0".into(), ..Default::default() }, "mqtt.tls_cert"),
            (MqttConfig { addr: "nowhere".into(), ..Default::default() }, "mqtt.addr"),
            (
                MqttConfig { max_keep_alive: HumanDuration::secs(0), ..Default::default() },
                "mqtt.max_keep_alive",
            ),
            (
                MqttConfig { max_keep_alive: HumanDuration::secs(65_536), ..Default::default() },
                "mqtt.max_keep_alive",
            ),
            (
                MqttConfig { max_keep_alive: HumanDuration::millis(1500), ..Default::default() },
                "mqtt.max_keep_alive",
            ),
            (bridge(BridgeConfig { broker: "nohost".into(), ..on() }), "mqtt.bridge.broker"),
            (bridge(BridgeConfig { topics: " , ".into(), ..on() }), "mqtt.bridge.topics"),
            (bridge(BridgeConfig { topics: "ok/+,a/#/b".into(), ..on() }), "mqtt.bridge.topics"),
            (bridge(BridgeConfig { share_group: "a/b".into(), ..on() }), "mqtt.bridge.share_group"),
            (bridge(BridgeConfig { ca: "ca.pem".into(), ..on() }), "mqtt.bridge.tls"),
            (bridge(BridgeConfig { client_cert: "c.pem".into(), ..on() }), "mqtt.bridge.tls"),
            (
                bridge(BridgeConfig { tls: true, client_key: "k.pem".into(), ..on() }),
                "mqtt.bridge.client_cert",
            ),
            (
                bridge(BridgeConfig { tls: true, client_cert: "c.pem".into(), ..on() }),
                "mqtt.bridge.client_key",
            ),
            (
                bridge(BridgeConfig { session_expiry: OptDuration(Some(Duration::ZERO)), ..on() }),
                "mqtt.bridge.session_expiry",
            ),
        ];
        for (c, key) in cases {
            let err = c.validate().unwrap_err();
            assert!(matches!(&err, InvalidConfig { key: k, .. } if *k == key), "{key}: {err}");
        }
    }
}
