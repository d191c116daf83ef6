//! MQTT counters, part of the server's `Metrics` (`metrics.mqtt`), exposed with the others.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the listener paused reading a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backpressure {
    /// The write-memory budget was exhausted.
    WriteMemory,
    /// The engine answered `Overloaded` (flushing behind).
    Engine,
    /// The device's token bucket was empty.
    RateLimit,
}

impl Backpressure {
    pub const ALL: [Backpressure; 3] =
        [Backpressure::WriteMemory, Backpressure::Engine, Backpressure::RateLimit];

    pub fn as_str(self) -> &'static str {
        match self {
            Backpressure::WriteMemory => "write_memory",
            Backpressure::Engine => "engine",
            Backpressure::RateLimit => "rate_limit",
        }
    }
}

#[derive(Debug, Default)]
pub struct MqttMetrics {
    /// Connections accepted (CONNACK 0).
    pub connections: AtomicU64,
    /// Connections open now (a gauge).
    pub connections_active: AtomicU64,
    /// Connections refused: bad credentials, not authorized, bad client id, too many.
    pub connections_refused: AtomicU64,
    /// PUBLISH packets received, by QoS 0 and 1.
    pub messages_qos0: AtomicU64,
    pub messages_qos1: AtomicU64,
    /// Engine writes (each covers one or more messages).
    pub batches: AtomicU64,
    /// Messages stored in the dead-letter store.
    pub dead_letters: AtomicU64,
    /// Dead letters deleted to make room.
    pub dead_letters_dropped: AtomicU64,
    /// PUBLISH or SUBSCRIBE refused by the ACL.
    pub acl_denied: AtomicU64,
    /// Connections closed for a malformed or forbidden packet (including QoS 2).
    pub protocol_errors: AtomicU64,
    /// Connections closed because the client was silent past 1.5 x its keep-alive.
    pub keepalive_timeouts: AtomicU64,
    /// Last Wills published.
    pub wills: AtomicU64,
    /// Commands published over HTTP, delivered to online sessions, queued for offline ones,
    /// and dropped (non-persistent offline session, or queue full).
    pub commands: AtomicU64,
    pub commands_delivered: AtomicU64,
    pub commands_queued: AtomicU64,
    pub commands_dropped: AtomicU64,
    /// Commands not delivered because their Message Expiry passed while they waited.
    pub commands_expired: AtomicU64,
    /// Connections accepted, by protocol version (3.1.1, 5.0).
    pub connections_v311: AtomicU64,
    pub connections_v5: AtomicU64,
    /// Bridge mode: messages received from the external broker, connections made to it, and
    /// connection attempts or connections that failed (refused, TLS handshake, lost).
    pub bridge_messages: AtomicU64,
    pub bridge_connects: AtomicU64,
    pub bridge_connect_errors: AtomicU64,
    backpressure: [AtomicU64; 3],
}

impl MqttMetrics {
    pub fn backpressure(&self, why: Backpressure) {
        self.backpressure[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn backpressure_count(&self, why: Backpressure) -> u64 {
        self.backpressure[why as usize].load(Ordering::Relaxed)
    }

    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the MQTT metrics in the Prometheus text format.
    pub fn encode_prometheus(&self, out: &mut String) {
        let simple: [(&str, &str, &str, &AtomicU64); 19] = [
            (
                "strata_mqtt_bridge_messages_total",
                "counter",
                "Messages received from the bridged broker.",
                &self.bridge_messages,
            ),
            (
                "strata_mqtt_bridge_connects_total",
                "counter",
                "Connections made to the bridged broker.",
                &self.bridge_connects,
            ),
            (
                "strata_mqtt_bridge_connect_errors_total",
                "counter",
                "Connection attempts to the bridged broker that failed, and connections to it lost.",
                &self.bridge_connect_errors,
            ),
            ("strata_mqtt_connections_total", "counter", "MQTT connections accepted.", &self.connections),
            ("strata_mqtt_connections_active", "gauge", "MQTT connections open.", &self.connections_active),
            (
                "strata_mqtt_connections_refused_total",
                "counter",
                "MQTT connections refused.",
                &self.connections_refused,
            ),
            ("strata_mqtt_batches_total", "counter", "Engine writes made for MQTT messages.", &self.batches),
            ("strata_mqtt_dead_letters_total", "counter", "Messages dead-lettered.", &self.dead_letters),
            (
                "strata_mqtt_dead_letters_dropped_total",
                "counter",
                "Dead letters deleted for room.",
                &self.dead_letters_dropped,
            ),
            (
                "strata_mqtt_acl_denied_total",
                "counter",
                "PUBLISH or SUBSCRIBE refused by the ACL.",
                &self.acl_denied,
            ),
            (
                "strata_mqtt_protocol_errors_total",
                "counter",
                "Connections closed for a protocol error.",
                &self.protocol_errors,
            ),
            (
                "strata_mqtt_keepalive_timeouts_total",
                "counter",
                "Connections closed at 1.5x keep-alive.",
                &self.keepalive_timeouts,
            ),
            ("strata_mqtt_wills_total", "counter", "Last Wills published.", &self.wills),
            ("strata_mqtt_commands_total", "counter", "Commands published over HTTP.", &self.commands),
            (
                "strata_mqtt_commands_delivered_total",
                "counter",
                "Commands sent to online devices.",
                &self.commands_delivered,
            ),
            (
                "strata_mqtt_commands_queued_total",
                "counter",
                "Commands kept for offline sessions.",
                &self.commands_queued,
            ),
            ("strata_mqtt_commands_dropped_total", "counter", "Commands dropped.", &self.commands_dropped),
            (
                "strata_mqtt_commands_expired_total",
                "counter",
                "Commands dropped undelivered at their message expiry.",
                &self.commands_expired,
            ),
            (
                "strata_mqtt_messages_qos1_total",
                "counter",
                "QoS 1 PUBLISH packets received.",
                &self.messages_qos1,
            ),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let name = "strata_mqtt_messages_qos0_total";
        let _ = writeln!(
            out,
            "# HELP {name} QoS 0 PUBLISH packets received.\n# TYPE {name} counter\n{name} {}",
            self.messages_qos0.load(Ordering::Relaxed)
        );
        let name = "strata_mqtt_connections_protocol_total";
        let _ = writeln!(
            out,
            "# HELP {name} MQTT connections accepted, by protocol version.\n# TYPE {name} counter\n{name}{{version=\"3.1.1\"}} {}\n{name}{{version=\"5.0\"}} {}",
            self.connections_v311.load(Ordering::Relaxed),
            self.connections_v5.load(Ordering::Relaxed)
        );
        let name = "strata_mqtt_backpressure_total";
        let _ = writeln!(
            out,
            "# HELP {name} Times reading a connection paused, by reason.\n# TYPE {name} counter"
        );
        for b in Backpressure::ALL {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {}", b.as_str(), self.backpressure_count(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        let m = MqttMetrics::default();
        MqttMetrics::inc(&m.dead_letters);
        MqttMetrics::inc(&m.connections_v5);
        m.backpressure(Backpressure::RateLimit);
        for (i, b) in Backpressure::ALL.iter().enumerate() {
            assert_eq!(*b as usize, i);
        }
        let mut out = String::new();
        m.encode_prometheus(&mut out);
        assert!(out.contains("strata_mqtt_dead_letters_total 1"), "{out}");
        assert!(out.contains("strata_mqtt_connections_protocol_total{version=\"5.0\"} 1"), "{out}");
        assert!(out.contains("strata_mqtt_backpressure_total{reason=\"rate_limit\"} 1"), "{out}");
    }
}
