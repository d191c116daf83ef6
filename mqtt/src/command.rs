//! [`Command`]: a message for devices (`POST /api/v1/mqtt/commands`), as the sessions queue it
//! and the sessions file stores it. Its own module so that `sessions` and `session_store`,
//! which both hold commands, do not import each other.

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;

/// A message for devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    /// Unix ms after which it must not be delivered (the HTTP `expiry` parameter); `None`:
    /// never expires.
    pub expires_at_ms: Option<u64>,
}

impl Command {
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| t <= now_ms)
    }

    /// Seconds left before it expires, rounded up (what a 5.0 PUBLISH carries), if it expires.
    pub fn expiry_left_secs(&self, now_ms: u64) -> Option<u32> {
        self.expires_at_ms
            .map(|t| u32::try_from(t.saturating_sub(now_ms).div_ceil(1000)).unwrap_or(u32::MAX).max(1))
    }
}
