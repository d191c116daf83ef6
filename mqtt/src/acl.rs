//! The topic ACL: a device publishes only to its own telemetry topics and subscribes only to
//! its own command topics (`{prefix}/{device}/...`). With `mqtt.acl = false` (gateways that
//! speak for many devices) any telemetry topic may be published to and any command filter
//! subscribed to; non-telemetry topics are still not stored.

use super::topic::{command_device, TopicMatch, TopicPattern};

/// The verdict on a PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishVerdict<'a> {
    /// A telemetry topic this client may publish to.
    Telemetry(TopicMatch<'a>),
    /// Refused by the ACL: another device's topic, or not a telemetry topic.
    Denied(&'static str),
    /// ACL off and not a telemetry topic: nothing to store it as (dead-lettered).
    NotTelemetry,
}

/// The access rules of one listener.
#[derive(Debug, Clone)]
pub struct Acl {
    pub enabled: bool,
    pub pattern: TopicPattern,
    pub command_prefix: String,
}

impl Acl {
    /// May `device` publish to `topic`, and what does the topic name?
    pub fn publish<'a>(&self, device: &str, topic: &'a str) -> PublishVerdict<'a> {
        match self.pattern.matches(topic) {
            Some(m) if !self.enabled || m.device == device => PublishVerdict::Telemetry(m),
            Some(_) => PublishVerdict::Denied("topic of another device"),
            None if self.enabled => PublishVerdict::Denied("not a telemetry topic"),
            None => PublishVerdict::NotTelemetry,
        }
    }

    /// May `device` subscribe to `filter`? Only command topics; with the ACL on, only its own
    /// (the device level must be literally the device id, not a wildcard).
    pub fn subscribe(&self, device: &str, filter: &str) -> bool {
        if !rumqttc::valid_filter(filter) {
            return false;
        }
        let mut parts = filter.splitn(3, '/');
        if parts.next() != Some(self.command_prefix.as_str()) {
            return false;
        }
        if !self.enabled {
            return true;
        }
        command_device(&self.command_prefix, filter) == Some(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(enabled: bool) -> Acl {
        Acl {
            enabled,
            pattern: TopicPattern::parse("telemetry/{device}/{measurement}").unwrap(),
            command_prefix: "commands".into(),
        }
    }

    #[test]
    fn publish_rules() {
        let a = acl(true);
        assert!(
            matches!(a.publish("d1", "telemetry/d1/temp"), PublishVerdict::Telemetry(m) if m.device == "d1")
        );
        assert_eq!(a.publish("d1", "telemetry/d2/temp"), PublishVerdict::Denied("topic of another device"));
        assert_eq!(a.publish("d1", "commands/d1/x"), PublishVerdict::Denied("not a telemetry topic"));
        let open = acl(false);
        assert!(
            matches!(open.publish("gw", "telemetry/d2/temp"), PublishVerdict::Telemetry(m) if m.device == "d2")
        );
        assert_eq!(open.publish("gw", "other/topic"), PublishVerdict::NotTelemetry);
    }

    #[test]
    fn subscribe_rules() {
        let a = acl(true);
        assert!(a.subscribe("d1", "commands/d1/#"));
        assert!(a.subscribe("d1", "commands/d1/reboot"));
        assert!(a.subscribe("d1", "commands/d1"));
        assert!(!a.subscribe("d1", "commands/d2/#"));
        assert!(!a.subscribe("d1", "commands/+/#"));
        assert!(!a.subscribe("d1", "commands/#"));
        assert!(!a.subscribe("d1", "#"));
        assert!(!a.subscribe("d1", "telemetry/d1/#"));
        assert!(!a.subscribe("d1", "commands/d1/#/x"), "invalid filter");
        let open = acl(false);
        assert!(open.subscribe("gw", "commands/+/#"));
        assert!(!open.subscribe("gw", "telemetry/#"));
    }
}
