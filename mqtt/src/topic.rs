//! Topic mapping: which topics carry telemetry, and which device and measurement a topic names.
//!
//! A pattern is `/`-separated levels, each a literal, `{device}` (exactly once) or
//! `{measurement}` (at most once): `telemetry/{device}/{measurement}` maps
//! `telemetry/pump-7/pressure` to device `pump-7`, measurement `pressure`. Wildcards have no
//! place in a pattern (it names what devices publish to, not a filter).

/// A parsed `mqtt.topic_pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Device,
    Measurement,
}

/// Why a pattern is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the pattern must contain {{device}} exactly once")]
    Device,
    #[error("the pattern may contain {{measurement}} at most once")]
    Measurement,
    #[error("level {0:?} is empty, has a wildcard (+, #) or an unknown placeholder")]
    BadLevel(String),
}

/// What a telemetry topic names. Borrowed from the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicMatch<'a> {
    pub device: &'a str,
    pub measurement: Option<&'a str>,
}

/// Whether `s` can be a device id: one non-empty topic level without wildcards, at most 128
/// bytes, no control characters.
pub fn valid_device_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && !s.contains(['/', '+', '#']) && !s.chars().any(char::is_control)
}

impl TopicPattern {
    pub fn parse(pattern: &str) -> Result<TopicPattern, PatternError> {
        let mut levels = Vec::new();
        for level in pattern.split('/') {
            levels.push(match level {
                "{device}" => Level::Device,
                "{measurement}" => Level::Measurement,
                l if l.is_empty() || l.contains(['+', '#', '{', '}']) => {
                    return Err(PatternError::BadLevel(l.to_owned()))
                }
                l => Level::Literal(l.to_owned()),
            });
        }
        let count = |x: &Level| levels.iter().filter(|l| *l == x).count();
        if count(&Level::Device) != 1 {
            return Err(PatternError::Device);
        }
        if count(&Level::Measurement) > 1 {
            return Err(PatternError::Measurement);
        }
        Ok(TopicPattern { levels })
    }

    /// The device and measurement `topic` names, or `None` if it is not a telemetry topic.
    pub fn matches<'a>(&self, topic: &'a str) -> Option<TopicMatch<'a>> {
        let mut device = None;
        let mut measurement = None;
        let mut parts = topic.split('/');
        for level in &self.levels {
            let part = parts.next()?;
            match level {
                Level::Literal(l) => {
                    if l != part {
                        return None;
                    }
                }
                Level::Device => {
                    if !valid_device_id(part) {
                        return None;
                    }
                    device = Some(part);
                }
                Level::Measurement => {
                    if part.is_empty() || part.contains(['+', '#']) {
                        return None;
                    }
                    measurement = Some(part);
                }
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(TopicMatch { device: device?, measurement })
    }

    /// The pattern with `{device}` filled in (`telemetry/pump-7/{measurement}`), for messages.
    pub fn for_device(&self, device: &str) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::Device => device,
                Level::Measurement => "{measurement}",
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The device a command topic (`{prefix}/{device}/...`) is for, if it is one.
pub fn command_device<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    let mut parts = topic.splitn(3, '/');
    if parts.next()? != prefix {
        return None;
    }
    let device = parts.next()?;
    valid_device_id(device).then_some(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pattern() {
        let p = TopicPattern::parse("telemetry/{device}/{measurement}").unwrap();
        assert_eq!(
            p.matches("telemetry/pump-7/pressure"),
            Some(TopicMatch { device: "pump-7", measurement: Some("pressure") })
        );
        for t in [
            "telemetry/pump-7",
            "telemetry/pump-7/pressure/extra",
            "telemetri/pump-7/pressure",
            "telemetry//pressure",
            "telemetry/pump-7/",
            "telemetry/+/pressure",
            "",
        ] {
            assert_eq!(p.matches(t), None, "{t:?}");
        }
        assert_eq!(p.for_device("d1"), "telemetry/d1/{measurement}");
    }

    #[test]
    fn other_patterns() {
        let p = TopicPattern::parse("site/a/{measurement}/{device}").unwrap();
        assert_eq!(p.matches("site/a/temp/d9"), Some(TopicMatch { device: "d9", measurement: Some("temp") }));
        assert_eq!(p.matches("site/b/temp/d9"), None);
        let p = TopicPattern::parse("dev/{device}").unwrap();
        assert_eq!(p.matches("dev/x"), Some(TopicMatch { device: "x", measurement: None }));
        for bad in [
            "telemetry/x",
            "{device}/{device}",
            "a/{device}/{measurement}/{measurement}",
            "a//{device}",
            "a/+/{device}",
            "a/{dev}/{device}",
        ] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_topics_and_device_ids() {
        assert_eq!(command_device("commands", "commands/d1/reboot"), Some("d1"));
        assert_eq!(command_device("commands", "commands/d1"), Some("d1"));
        assert_eq!(command_device("commands", "commands/+/x"), None);
        assert_eq!(command_device("commands", "telemetry/d1/x"), None);
        assert!(valid_device_id("pump-7"));
        assert!(!valid_device_id("a/b") && !valid_device_id("") && !valid_device_id("a\nb"));
        assert!(!valid_device_id(&"x".repeat(129)));
    }
}
