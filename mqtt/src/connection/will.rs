//! Last Wills: published when a connection ends badly, or after their Will Delay Interval (5.0)
//! unless the client comes back first; delayed ones survive a restart in the sessions file.

use super::*;

/// Publishes `will` after `delay` unless the client reconnects first (which removes its
/// entry in `Broker::delayed_wills`) or the server stops first: wills are not published at
/// shutdown, but a pending one stays in `delayed_wills`, is saved in the sessions file and is
/// published after the restart when due (`schedule_restored_wills`).
pub(super) fn delay_will(mut conn: Conn, will: Will, conn_id: u64, delay: Duration) {
    let broker = conn.broker.clone();
    let due_ms = now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
    let pending = PendingWill { conn: conn_id, device: conn.id.device.clone(), will: will.clone(), due_ms };
    broker.delayed_wills.lock().insert(conn.id.client_id.clone(), pending);
    // Saved with the sessions within `SESSION_SAVE_DELAY` (the session's own detach asks for
    // a save too), so it survives a crash from then on.
    broker.sessions.touch();
    // The task holds the connection's state but not its buffers, nor its rate-limit handle:
    // a will waiting for its delay is no open connection, and its one message is not
    // rate-limited, like a will restored at start (`will_conn`).
    conn.buf = BytesMut::new();
    conn.out = BytesMut::new();
    conn.bucket = None;
    tracing::info!(client_id = %conn.id.client_id, device = %conn.id.device, delay_secs = delay.as_secs(), "Last Will delayed");
    tokio::spawn(will_timer(conn, will, conn_id, due_ms));
}

/// Schedules the delayed wills restored from the sessions file (at start): each is published
/// when due, at once if it fell due while the server was down, unless its client connects
/// first.
pub fn schedule_restored_wills(broker: &Arc<Broker>) {
    let restored: Vec<(String, PendingWill)> =
        broker.delayed_wills.lock().iter().map(|(id, w)| (id.clone(), w.clone())).collect();
    for (client_id, w) in restored {
        tracing::info!(client_id = %client_id, device = %w.device, due_in_ms = w.due_ms.saturating_sub(now_ms()), "delayed Last Will restored");
        let conn = will_conn(broker.clone(), Identity { client_id, device: w.device });
        tokio::spawn(will_timer(conn, w.will, w.conn, w.due_ms));
    }
}

/// The connection state a will restored at start is published through, as a connection of
/// its device would publish it (`Conn::publish_will`).
pub(super) fn will_conn(broker: Arc<Broker>, id: Identity) -> Conn {
    Conn {
        max: broker.config.max_packet_size.as_usize(),
        broker,
        client_arc: id.client_id.as_str().into(),
        id,
        buf: BytesMut::new(),
        out: BytesMut::new(),
        unacked: BTreeMap::new(),
        next_pkid: 1,
        window: 1,
        writer: Writer { protocol: Protocol::V5, problem_info: false, client_max: usize::MAX },
        aliases: Vec::new(),
        session_expiry: 0,
        disconnect_expiry: None,
        bucket: None,
    }
}

/// Waits until `due_ms`, then publishes the will if its entry in `Broker::delayed_wills` is
/// still `conn_id`'s (a reconnect removed it otherwise) and the client is not online.
pub(super) async fn will_timer(mut conn: Conn, will: Will, conn_id: u64, due_ms: u64) {
    let broker = conn.broker.clone();
    let client_id = conn.id.client_id.clone();
    let mut shutdown = broker.shutdown_signal();
    if broker.shutting_down() {
        return; // stays in `delayed_wills`: saved at shutdown
    }
    let wait = Duration::from_millis(due_ms.saturating_sub(now_ms()));
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.changed() => return,
    }
    let ours = |wills: &std::collections::HashMap<String, PendingWill>| {
        wills.get(&client_id).is_some_and(|w| w.conn == conn_id)
    };
    if !ours(&broker.delayed_wills.lock()) {
        return;
    }
    // A client that came back while this connection was still ending removed the entry
    // before it was inserted: that it is online says it came back, which cancels the will.
    let back = broker.sessions.is_online(&client_id);
    // Removed from `delayed_wills` (and the file) only once published: a crash or a shutdown
    // while it is being stored publishes it again after the restart rather than never.
    if !back && conn.publish_will(&will).await {
        broker.status.will_published(&conn.id.device);
    }
    {
        let mut wills = broker.delayed_wills.lock();
        if ours(&wills) {
            wills.remove(&client_id);
        }
    }
    broker.sessions.touch();
}

impl Conn {
    /// Publishes the Last Will as a PUBLISH of its device: through the same ACL (checked at
    /// CONNECT already; again here for wills restored from the sessions file, which an older
    /// version accepted unchecked), stored like a message (bad payloads dead-lettered). A will
    /// never reaches command subscribers: commands come from the HTTP command endpoint only.
    /// Returns whether it was stored.
    pub(super) async fn publish_will(&mut self, will: &Will) -> bool {
        let broker = self.broker.clone();
        if let PublishVerdict::Denied(why) = broker.acl.publish(&self.id.device, &will.topic) {
            MqttMetrics::inc(&broker.metrics.acl_denied);
            tracing::warn!(client_id = %self.id.client_id, device = %self.id.device, topic = %will.topic, reason = why, "Last Will refused by the ACL; not published");
            return false;
        }
        MqttMetrics::inc(&broker.metrics.wills);
        tracing::info!(client_id = %self.id.client_id, device = %self.id.device, topic = %will.topic, "publishing Last Will");
        let publish = InPublish {
            topic: will.topic.clone(),
            qos: QoS::AtMostOnce,
            pkid: 0,
            payload: will.payload.clone(),
            retain: false,
            topic_alias: None,
        };
        // Synced although QoS 0: the will may already be gone from the sessions file.
        self.store(vec![publish], true).await.is_ok()
    }
}
