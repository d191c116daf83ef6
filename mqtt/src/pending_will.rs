//! [`PendingWill`]: a Last Will waiting for its Will Delay Interval (5.0), as the broker keeps
//! it (`Broker::delayed_wills`) and the sessions file stores it. Its own module so that the
//! broker, which holds them, and the connections, which leave and publish them, do not import
//! each other.

use crate::session_store::StoredWill;
use crate::wire::Will;

/// A delayed Last Will waiting in `Broker::delayed_wills` (by client id).
#[derive(Debug, Clone)]
pub struct PendingWill {
    /// The connection that left it (a will restored at start gets a fresh id): a will's timer
    /// publishes only its own entry, not one a later connection of the client left.
    pub conn: u64,
    pub device: String,
    pub will: Will,
    /// When it is due, Unix ms (wall clock, so that it means the same after a restart).
    pub due_ms: u64,
}

impl PendingWill {
    /// A will read from the sessions file.
    pub fn restored(w: StoredWill, conn: u64) -> PendingWill {
        PendingWill {
            conn,
            device: w.device,
            // Retained wills are refused at CONNECT and 3.1.1 wills are never delayed.
            will: Will { topic: w.topic, payload: w.payload, qos: w.qos, retain: false, delay_secs: 0 },
            due_ms: w.due_ms,
        }
    }

    /// The will as the sessions file stores it.
    pub fn stored(&self, client_id: &str) -> StoredWill {
        StoredWill {
            client_id: client_id.to_owned(),
            device: self.device.clone(),
            topic: self.will.topic.clone(),
            qos: self.will.qos,
            due_ms: self.due_ms,
            payload: self.will.payload.clone(),
        }
    }
}
