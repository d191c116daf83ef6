//! The packet loop of an accepted connection: read, parse, answer what needs no storage, hand
//! PUBLISHes to the store pipeline, deliver commands, enforce the keep-alive.

use super::*;

impl Conn {
    pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        keep_alive: Option<Duration>,
        pending: &mut VecDeque<Command>,
        rx: &mut tokio::sync::mpsc::Receiver<Command>,
        kicked: &tokio::sync::Notify,
        presence: &crate::status::Presence,
    ) -> EndReason {
        let mut shutdown = self.broker.shutdown_signal();
        if self.broker.shutting_down() {
            // Shutdown began while this connection was still in CONNECT: `changed()` would
            // not fire for it.
            return EndReason::Shutdown;
        }
        let max_inflight = self.broker.config.max_inflight;
        let mut last_rx = Instant::now();
        let mut inflight: VecDeque<PendingStore> = VecDeque::with_capacity(PIPELINE);
        loop {
            // 1. Handle every packet already buffered, and whatever else the socket holds
            //    right now (PUBLISHes as one batch), unless `PIPELINE` batches are in flight
            //    (then the socket is not read: backpressure).
            let mut publishes = Vec::new();
            let mut lost = false;
            let step = if inflight.len() >= PIPELINE {
                Step::More
            } else {
                loop {
                    let step = self.parse_buffered(&mut publishes, !inflight.is_empty());
                    if !matches!(step, Step::More) || publishes.len() >= max_inflight {
                        break step;
                    }
                    match self.fill_now(stream).await {
                        Some(Ok(())) => {
                            last_rx = Instant::now();
                            presence.touch();
                        }
                        Some(Err(_)) => {
                            // Store and acknowledge what arrived before the connection went.
                            lost = true;
                            break Step::More;
                        }
                        None => break Step::More,
                    }
                }
            };
            let stored = !publishes.is_empty();
            if stored {
                match self.start_store(publishes, false).await {
                    Ok(p) => inflight.push_back(p),
                    // Nothing of this batch was written; the ones before it still are.
                    Err(reason) => return self.settle(stream, &mut inflight, reason, true).await,
                }
            }
            // The batches in flight that must be answered before going on: all of them before
            // an answer to another packet or the end, else the oldest while the pipeline is full.
            let settle_all = lost || !matches!(step, Step::More);
            let mut waited = false;
            while !inflight.is_empty() && (settle_all || inflight.len() >= PIPELINE) {
                waited = true;
                if let Err(reason) = self.complete_oldest(&mut inflight).await {
                    // PUBACKs stay in order: nothing after a failed batch is acknowledged.
                    return self.settle(stream, &mut inflight, reason, false).await;
                }
            }
            if stored || waited {
                // The socket was not read meanwhile (the rate limit, the write-memory budget,
                // a full pipeline): the device's keep-alive restarts now.
                last_rx = Instant::now();
            }
            // Commands waiting (queued while offline, or arrived) while the window allows.
            while self.unacked.len() < self.window {
                let Some(c) = pending.pop_front() else { break };
                self.send_command(c);
            }
            if !write_out(stream, &mut self.out).await || lost {
                return self.settle(stream, &mut inflight, EndReason::ConnectionLost, true).await;
            }
            match step {
                Step::End(r) => return r,
                Step::Wait => continue, // answered after the batches before it, now done
                Step::More => {}
            }
            if wire::packet_buffered(&self.buf, self.max) {
                continue; // a complete (or malformed) packet is buffered: the batch was full
            }
            // 2. Wait for bytes, the oldest batch's write, a command, the keep-alive deadline,
            //    a takeover or shutdown. (At most one batch is in flight here: the loop above
            //    answers the oldest while the pipeline is full, so the socket is read.)
            let can_send = self.unacked.len() < self.window;
            let deadline = keep_alive.map(|k| tokio::time::Instant::from_std(last_rx + k));
            // The reason to end, and whether the batches still in flight may be acknowledged.
            let end = tokio::select! {
                r = fill(stream, &mut self.buf) => match r {
                    Ok(()) => {
                        last_rx = Instant::now();
                        presence.touch();
                        None
                    }
                    Err(_) => Some((EndReason::ConnectionLost, true)),
                },
                written = wait_oldest(&mut inflight), if !inflight.is_empty() => {
                    let oldest = inflight.pop_front().expect("a batch in flight");
                    match self.answer(oldest.acks, oldest.ack_of, written) {
                        Ok(acks) => {
                            self.queue_pubacks(&acks);
                            None
                        }
                        Err(reason) => Some((reason, false)),
                    }
                }
                Some(c) = rx.recv(), if can_send => {
                    self.send_command(c);
                    None
                }
                _ = sleep_until(deadline) => Some((EndReason::KeepAlive, true)),
                _ = kicked.notified() => Some((EndReason::TakenOver, true)),
                _ = shutdown.changed() => Some((EndReason::Shutdown, true)),
            };
            if let Some((reason, ack)) = end {
                return self.settle(stream, &mut inflight, reason, ack).await;
            }
        }
    }

    /// Reads what the socket holds right now, without waiting: `None` when it has nothing (or
    /// the buffer already holds `mqtt.max_packet_size` bytes, the per-connection bound).
    ///
    /// Why: one read returns a few KiB, a fraction of a 100-line message. Storing after every
    /// read made batches of ~3 messages and one engine write (and fsync) each; draining what
    /// the device has already sent before storing makes one write per up to `max_inflight`
    /// messages or a full buffer, at no extra memory (a single packet may fill it anyway).
    ///
    /// Two batches per connection are written at once ([`PIPELINE`]): on the 4-connection
    /// loadgen runs (1 line per message) QoS 0 went from 280-290 K to 360-430 K msg/s, as the
    /// socket is read and decoded while the previous batch is written; QoS 1 stayed at
    /// ~140 K: it is bound by the fsyncs (~400 us each here, back to back), and the client's
    /// in-flight window, not reading, bounds its batches (docs/benchmarks.md, session 6). An
    /// earlier try of the same idea, measured on a busy machine when QoS 0 waited for fsyncs,
    /// had shown nothing.
    pub(super) async fn fill_now<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Option<Result<(), ReadError>> {
        if self.buf.len() >= self.max {
            return None;
        }
        let mut read = std::pin::pin!(fill(stream, &mut self.buf));
        // Poll once: a pending read is dropped, which loses nothing (`read_buf` only takes
        // bytes that are there).
        match std::future::poll_fn(|cx| std::task::Poll::Ready(read.as_mut().poll(cx))).await {
            std::task::Poll::Ready(r) => Some(r),
            std::task::Poll::Pending => None,
        }
    }

    /// Ends the connection for a protocol violation: counted and logged.
    pub(super) fn violation(&self, close: Close, why: &'static str) -> Step {
        MqttMetrics::inc(&self.broker.metrics.protocol_errors);
        tracing::info!(client_id = %self.id.client_id, device = %self.id.device, reason = why, "MQTT protocol error; closing");
        Step::End(EndReason::Protocol(close, why))
    }

    /// Replaces a 5.0 topic alias by its topic, or records a new one (section 3.3.2.3.4).
    pub(super) fn resolve_alias(&mut self, p: &mut InPublish) -> Result<(), Step> {
        let Some(alias) = p.topic_alias else {
            if p.topic.is_empty() && self.writer.protocol == Protocol::V5 {
                // 5.0 section 3.3.2.3.4: an empty topic needs an alias.
                return Err(self.violation(Close::ProtocolError, "empty topic without a topic alias"));
            }
            return Ok(());
        };
        if alias == 0 || alias > TOPIC_ALIAS_MAX {
            return Err(
                self.violation(Close::TopicAliasInvalid, "topic alias 0 or above the Topic Alias Maximum")
            );
        }
        let i = usize::from(alias - 1);
        if p.topic.is_empty() {
            match self.aliases.get(i).filter(|t| !t.is_empty()) {
                Some(t) => p.topic.clone_from(t),
                None => {
                    return Err(self.violation(Close::ProtocolError, "topic alias used before it was set"))
                }
            }
            return Ok(());
        }
        if p.topic.len() > MAX_ALIASED_TOPIC {
            return Err(
                self.violation(Close::TopicAliasInvalid, "topic too long for an alias (256 bytes at most)")
            );
        }
        if self.aliases.len() <= i {
            self.aliases.resize(i + 1, String::new());
        }
        self.aliases[i].clone_from(&p.topic);
        Ok(())
    }

    /// Parses the buffered packets; answers the ones that need no storage at once (into
    /// `out`) and returns the PUBLISHes to store, in order.
    /// With `hold` (batches in flight), or once PUBLISHes were collected, it stops before a
    /// packet that needs an answer ([`Step::Wait`]): answers go out in the order of the
    /// packets, so a PINGRESP or SUBACK also says every PUBLISH before it was handled.
    pub(super) fn parse_buffered(&mut self, publishes: &mut Vec<InPublish>, hold: bool) -> Step {
        let broker = self.broker.clone();
        let metrics = &broker.metrics;
        let max_inflight = self.broker.config.max_inflight;
        let v5 = self.writer.protocol == Protocol::V5;
        while publishes.len() < max_inflight {
            if hold || !publishes.is_empty() {
                // PUBLISH (3) is batched, a PUBACK (4) needs no answer; anything else waits.
                if let Some(&first) = self.buf.first() {
                    if !matches!(first >> 4, 3 | 4) {
                        return Step::Wait;
                    }
                }
            }
            let packet = match wire::read(self.writer.protocol, &mut self.buf, self.max) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(WireError::TooLarge { size }) => {
                    tracing::info!(client_id = %self.id.client_id, size, "MQTT packet larger than mqtt.max_packet_size");
                    return self.violation(Close::PacketTooLarge, "packet exceeds the Maximum Packet Size");
                }
                Err(e) => {
                    tracing::info!(client_id = %self.id.client_id, error = %e, "malformed MQTT packet");
                    return self.violation(Close::Malformed, "malformed packet");
                }
            };
            match packet {
                Inbound::Publish(mut p) => {
                    if p.qos == QoS::ExactlyOnce {
                        tracing::info!(client_id = %self.id.client_id, topic = %p.topic, "QoS 2 PUBLISH");
                        return self
                            .violation(Close::QosNotSupported, "QoS 2 is not supported (Maximum QoS is 1)");
                    }
                    if v5 && p.retain {
                        // 3.1.1 clients' retain flags are ignored, as before; a 5.0 client was
                        // told Retain Available = 0, so the flag is an error (3.3.1.3).
                        return self
                            .violation(Close::RetainNotSupported, "retained messages are not supported");
                    }
                    if let Err(step) = self.resolve_alias(&mut p) {
                        return step;
                    }
                    MqttMetrics::inc(if p.qos == QoS::AtMostOnce {
                        &metrics.messages_qos0
                    } else {
                        &metrics.messages_qos1
                    });
                    publishes.push(p);
                }
                Inbound::PubAck(pkid) => {
                    // A 5.0 PUBACK with an error code ends the flow too: the device got the
                    // command and refused it, sending it again would not help.
                    self.unacked.remove(&pkid);
                }
                Inbound::PingReq => self.writer.pingresp(&mut self.out),
                Inbound::Subscribe { pkid, filters, with_id } => {
                    if with_id {
                        return self.violation(
                            Close::SubscriptionIdsNotSupported,
                            "subscription identifiers are not supported",
                        );
                    }
                    let mut codes = Vec::with_capacity(filters.len());
                    for (filter, qos) in &filters {
                        codes.push(self.subscribe(filter, *qos));
                    }
                    self.writer.suback(pkid, &codes, &mut self.out);
                }
                Inbound::Unsubscribe { pkid, filters } => {
                    for t in &filters {
                        self.broker.sessions.unsubscribe(&self.id.client_id, t);
                    }
                    self.writer.unsuback(pkid, filters.len(), &mut self.out);
                }
                Inbound::Disconnect { with_will, session_expiry } => {
                    if let Some(e) = session_expiry {
                        if self.session_expiry == 0 && e != 0 {
                            // 5.0 section 3.14.2.2.2.
                            return self.violation(
                                Close::ProtocolError,
                                "DISCONNECT may not set a session expiry when CONNECT had 0",
                            );
                        }
                        self.disconnect_expiry = Some(e);
                    }
                    return Step::End(if with_will {
                        EndReason::DisconnectWithWill
                    } else {
                        EndReason::Disconnect
                    });
                }
                Inbound::Connect(_) => return self.violation(Close::ProtocolError, "second CONNECT"),
                Inbound::Unexpected(name) => {
                    tracing::info!(client_id = %self.id.client_id, packet = name, "unexpected MQTT packet");
                    return self.violation(Close::ProtocolError, "unexpected packet");
                }
            }
        }
        Step::More
    }

    /// One filter of a SUBSCRIBE.
    pub(super) fn subscribe(&self, filter: &str, qos: QoS) -> SubCode {
        let metrics = &self.broker.metrics;
        if filter.starts_with("$share/") {
            return SubCode::SharedNotSupported;
        }
        if !rumqttc::valid_filter(filter) {
            return SubCode::FilterInvalid;
        }
        if !self.broker.acl.subscribe(&self.id.device, filter) {
            MqttMetrics::inc(&metrics.acl_denied);
            tracing::warn!(client_id = %self.id.client_id, device = %self.id.device, filter = %filter, "SUBSCRIBE refused by the ACL");
            return SubCode::NotAuthorized;
        }
        // QoS 2 subscriptions are granted QoS 1 (both versions let the server downgrade).
        let qos = if qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        match self.broker.sessions.subscribe(&self.id.client_id, filter, qos) {
            Ok(()) => SubCode::Granted(qos),
            Err(_) => SubCode::QuotaExceeded,
        }
    }

    pub(super) fn send_command(&mut self, c: Command) {
        let metrics = &self.broker.metrics;
        let now = now_ms();
        if c.expired(now) {
            // Message Expiry passed while it waited (queued offline, or in the channel).
            MqttMetrics::inc(&metrics.commands_expired);
            tracing::info!(client_id = %self.id.client_id, topic = %c.topic, "MQTT command expired undelivered");
            return;
        }
        let mut pkid = 0;
        if c.qos == QoS::AtLeastOnce {
            // Next free packet id (1..=65535); the window is far smaller than the id space.
            let mut id = self.next_pkid;
            while self.unacked.contains_key(&id) {
                id = id.checked_add(1).unwrap_or(1);
            }
            self.next_pkid = id.checked_add(1).unwrap_or(1);
            pkid = id;
        }
        if !self.writer.publish(&c.topic, c.qos, pkid, &c.payload, c.expiry_left_secs(now), &mut self.out) {
            // Larger than the client's Maximum Packet Size: 5.0 section 3.1.2.11.4 says to
            // discard it as if it had been delivered.
            MqttMetrics::inc(&metrics.commands_dropped);
            tracing::warn!(client_id = %self.id.client_id, topic = %c.topic, "MQTT command larger than the client's Maximum Packet Size; dropped");
            return;
        }
        if c.qos == QoS::AtLeastOnce {
            self.unacked.insert(pkid, c);
        }
    }
}

pub(super) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
