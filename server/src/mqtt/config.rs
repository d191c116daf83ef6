//! The `[mqtt]` section of the configuration (documented key by key in
//! `docs/configuration.md`).

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use strata_lineproto::Precision;

use super::topic::TopicPattern;
use crate::config::{ByteSize, ConfigError, HumanDuration};

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
    /// Most simultaneous connections; more are refused (CONNACK 3, server unavailable).
    /// Default 10000.
    pub max_connections: usize,
    /// Most QoS 1 messages of one connection written (and acknowledged) together; also the
    /// most messages one connection has in flight. Default 256.
    pub max_inflight: usize,
    /// How long a new connection may take to send CONNECT. Default 10 s.
    pub connect_timeout: HumanDuration,
    /// Messages per second one device may publish on average (token bucket); past it the
    /// listener stops reading that device's socket until tokens refill. 0 = off. Default 1000.
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
            rate_limit: 1000,
            rate_burst: 2000,
            dead_letter_max_entries: 10_000,
            dead_letter_max_size: ByteSize::mib(256),
            session_max_queued: 1000,
            tls_addr: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_client_ca: PathBuf::new(),
        }
    }
}

impl MqttConfig {
    /// Checks every `mqtt.*` key; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: String| Err(ConfigError::Invalid { key, reason });
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
        let ranges: [(&'static str, usize, usize); 4] = [
            ("mqtt.max_connections", self.max_connections, 1_000_000),
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
        if !self.tls_addr.is_empty()
            && (self.tls_cert.as_os_str().is_empty() || self.tls_key.as_os_str().is_empty())
        {
            return bad("mqtt.tls_cert", "mqtt.tls_addr needs mqtt.tls_cert and mqtt.tls_key".into());
        }
        Ok(())
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
    use super::*;

    #[test]
    fn defaults_validate_and_bad_keys_are_named() {
        MqttConfig::default().validate().unwrap();
        let cases: Vec<(MqttConfig, &str)> = vec![
            (MqttConfig { topic_pattern: "telemetry/x".into(), ..Default::default() }, "mqtt.topic_pattern"),
            (MqttConfig { database: "a b".into(), ..Default::default() }, "mqtt.database"),
            (MqttConfig { command_prefix: "telemetry".into(), ..Default::default() }, "mqtt.command_prefix"),
            (MqttConfig { json_precision: "days".into(), ..Default::default() }, "mqtt.json_precision"),
            (MqttConfig { max_inflight: 0, ..Default::default() }, "mqtt.max_inflight"),
            (MqttConfig { tls_addr: "127.0.0.1:0".into(), ..Default::default() }, "mqtt.tls_cert"),
            (MqttConfig { addr: "nowhere".into(), ..Default::default() }, "mqtt.addr"),
        ];
        for (c, key) in cases {
            let err = c.validate().unwrap_err();
            assert!(matches!(&err, ConfigError::Invalid { key: k, .. } if *k == key), "{key}: {err}");
        }
    }
}
