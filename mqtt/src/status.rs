//! Device status: online or offline, since when, last seen, and why it went offline. Updated
//! by connects, disconnects, keep-alive expiry and Last Will; read over HTTP.
//!
//! Bounded: at most `max` devices are remembered; past it the device offline the longest is
//! forgotten (online devices are never forgotten, and there are at most
//! `mqtt.max_connections` of those).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A device's status as reported over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceStatus {
    pub device: String,
    pub online: bool,
    pub client_id: String,
    /// Unix ms of the last connect.
    pub connected_at_ms: u64,
    /// Unix ms of the last packet received.
    pub last_seen_ms: u64,
    /// Unix ms of the last disconnect, if offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnected_at_ms: Option<u64>,
    /// `disconnect` (clean DISCONNECT), `keepalive_timeout`, `connection_lost`,
    /// `protocol_error`, `taken_over`, `shutdown`, ... if offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_reason: Option<String>,
    /// Whether the device's Last Will was published at the last disconnect.
    pub will_published: bool,
    pub connections: u64,
}

/// Live entry of a connected device: the session bumps `last_seen` without taking the map's
/// lock.
#[derive(Debug)]
pub struct Presence {
    last_seen_ms: AtomicU64,
    conn_id: u64,
}

impl Presence {
    pub fn touch(&self) {
        self.last_seen_ms.store(now_ms(), Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Entry {
    status: DeviceStatus,
    presence: Option<Arc<Presence>>,
}

#[derive(Debug)]
pub struct Registry {
    max: usize,
    devices: Mutex<HashMap<String, Entry>>,
}

impl Registry {
    pub fn new(max: usize) -> Registry {
        Registry { max: max.max(1), devices: Mutex::new(HashMap::new()) }
    }

    /// `device` connected as `client_id` on connection `conn_id`.
    pub fn connected(&self, device: &str, client_id: &str, conn_id: u64) -> Arc<Presence> {
        let now = now_ms();
        let presence = Arc::new(Presence { last_seen_ms: AtomicU64::new(now), conn_id });
        let mut map = self.devices.lock();
        if !map.contains_key(device) && map.len() >= self.max {
            let oldest = map
                .iter()
                .filter(|(_, e)| !e.status.online)
                .min_by_key(|(_, e)| e.status.disconnected_at_ms)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        let e = map.entry(device.to_owned()).or_insert_with(|| Entry {
            status: DeviceStatus {
                device: device.to_owned(),
                online: true,
                client_id: String::new(),
                connected_at_ms: now,
                last_seen_ms: now,
                disconnected_at_ms: None,
                offline_reason: None,
                will_published: false,
                connections: 0,
            },
            presence: None,
        });
        e.status.online = true;
        e.status.client_id = client_id.to_owned();
        e.status.connected_at_ms = now;
        e.status.last_seen_ms = now;
        e.status.disconnected_at_ms = None;
        e.status.offline_reason = None;
        e.status.will_published = false;
        e.status.connections += 1;
        e.presence = Some(presence.clone());
        presence
    }

    /// The connection `presence` of `device` ended. A later connection of the same device
    /// (a takeover) keeps it online.
    pub fn disconnected(&self, device: &str, presence: &Presence, reason: &str, will_published: bool) {
        let mut map = self.devices.lock();
        let Some(e) = map.get_mut(device) else { return };
        e.status.last_seen_ms = e.status.last_seen_ms.max(presence.last_seen_ms.load(Ordering::Relaxed));
        if e.presence.as_ref().is_some_and(|p| p.conn_id == presence.conn_id) {
            e.presence = None;
            e.status.online = false;
            e.status.disconnected_at_ms = Some(now_ms());
            e.status.offline_reason = Some(reason.to_owned());
            e.status.will_published = will_published;
        }
    }

    /// A delayed Last Will (5.0 Will Delay Interval) was published after the device went
    /// offline; a device back online since then is left as it is (its will was cancelled).
    pub fn will_published(&self, device: &str) {
        if let Some(e) = self.devices.lock().get_mut(device) {
            if !e.status.online {
                e.status.will_published = true;
            }
        }
    }

    fn snapshot(e: &Entry) -> DeviceStatus {
        let mut s = e.status.clone();
        if let Some(p) = &e.presence {
            s.last_seen_ms = s.last_seen_ms.max(p.last_seen_ms.load(Ordering::Relaxed));
        }
        s
    }

    pub fn get(&self, device: &str) -> Option<DeviceStatus> {
        self.devices.lock().get(device).map(Self::snapshot)
    }

    /// All devices, sorted by id.
    pub fn list(&self) -> Vec<DeviceStatus> {
        let mut v: Vec<DeviceStatus> = self.devices.lock().values().map(Self::snapshot).collect();
        v.sort_by(|a, b| a.device.cmp(&b.device));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_offline_takeover_and_bound() {
        let r = Registry::new(2);
        let p1 = r.connected("d1", "c1", 1);
        assert!(r.get("d1").unwrap().online);
        // A second connection of d1 takes over; the first one ending keeps d1 online.
        let p2 = r.connected("d1", "c1", 2);
        r.disconnected("d1", &p1, "taken_over", false);
        assert!(r.get("d1").unwrap().online);
        r.disconnected("d1", &p2, "keepalive_timeout", true);
        let s = r.get("d1").unwrap();
        assert!(!s.online && s.will_published);
        assert_eq!(s.offline_reason.as_deref(), Some("keepalive_timeout"));
        assert_eq!(s.connections, 2);
        let _p = r.connected("d2", "c2", 3);
        let _q = r.connected("d3", "c3", 4);
        assert!(r.get("d1").is_none(), "the offline device is forgotten first");
        assert_eq!(r.list().iter().map(|s| s.device.as_str()).collect::<Vec<_>>(), vec!["d2", "d3"]);
    }
}
