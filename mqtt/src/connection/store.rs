//! The store pipeline: a batch of PUBLISHes is charged to the rate limit and the write-memory
//! budget, written to the engine on the blocking pool (two batches in flight per connection)
//! and answered with PUBACKs, in order, once durable.

use super::*;

/// Batches of one connection being written at once: while one waits for its fsync the next
/// is read, decoded and appended, so the WAL's group commit covers both and a device's
/// in-flight window is not idle during the fsync (see `Conn::run`).
pub(super) const PIPELINE: usize = 2;

/// What an engine write of a batch returned: per message, why it was dead-lettered.
pub(super) type Written =
    Result<Result<Vec<Option<String>>, crate::broker::BatchError>, tokio::task::JoinError>;

/// A batch handed to the engine and not answered yet.
pub(super) struct PendingStore {
    /// The engine write; `None` when nothing of the batch is written (all refused by the ACL).
    pub(super) write: Option<tokio::task::JoinHandle<Result<Vec<Option<String>>, crate::broker::BatchError>>>,
    /// The PUBACKs to send once written, in order.
    pub(super) acks: Vec<(u16, Ack)>,
    /// For each message written: its PUBACK's index in `acks` (QoS 1), to report a dead letter.
    pub(super) ack_of: Vec<Option<usize>>,
}

impl Conn {
    /// Stores a batch of PUBLISHes; returns the PUBACKs to send, in order. An error closes
    /// the connection without acknowledging anything of the batch.
    pub(super) async fn store(
        &mut self,
        publishes: Vec<InPublish>,
        sync: bool,
    ) -> Result<Vec<(u16, Ack)>, EndReason> {
        let pending = self.start_store(publishes, sync).await?;
        self.finish_store(pending).await
    }

    /// Hands a batch of PUBLISHes to the engine (on the blocking pool) and returns at once
    /// with what is needed to answer them: [`Conn::finish_store`] waits for the write. The
    /// rate limit and the write-memory budget are waited for here, so a slowed connection
    /// reads nothing meanwhile.
    /// `sync`: wait for the fsync even if every message is QoS 0 (a Last Will).
    pub(super) async fn start_store(
        &mut self,
        publishes: Vec<InPublish>,
        sync: bool,
    ) -> Result<PendingStore, EndReason> {
        let broker = self.broker.clone();
        let metrics = &broker.metrics;
        let mut acks: Vec<(u16, Ack)> = Vec::new();
        // For each message stored: its PUBACK's index in `acks` (QoS 1), to report a dead letter.
        let mut ack_of: Vec<Option<usize>> = Vec::with_capacity(publishes.len());
        let mut messages = Vec::with_capacity(publishes.len());
        // Refused by the ACL: charged to the connection's own device (below).
        let mut denied = 0u32;
        for p in publishes {
            let qos1 = p.qos == QoS::AtLeastOnce;
            let verdict = broker.acl.publish(&self.id.device, &p.topic);
            let (unmapped_device, refused) = match verdict {
                // Device and measurement are the topic's: found again when decoding.
                PublishVerdict::Telemetry(_) => (String::new(), None),
                PublishVerdict::Denied(why) => {
                    // Never stored, not even as a dead letter. 5.0: PUBACK 0x87; 3.1.1 has no
                    // negative PUBACK, so a plain one (what 3.1.1 brokers do).
                    MqttMetrics::inc(&metrics.acl_denied);
                    tracing::warn!(client_id = %self.id.client_id, device = %self.id.device, topic = %p.topic, reason = why, "PUBLISH refused by the ACL");
                    if qos1 {
                        acks.push((p.pkid, Ack::Denied(why)));
                    }
                    denied += 1;
                    continue;
                }
                PublishVerdict::NotTelemetry => (self.id.device.clone(), Some("not a telemetry topic")),
            };
            if qos1 {
                acks.push((p.pkid, Ack::Stored));
                ack_of.push(Some(acks.len() - 1));
            } else {
                ack_of.push(None);
            }
            messages.push(Message {
                client_id: self.client_arc.clone(),
                unmapped_device,
                topic: p.topic,
                qos: p.qos as u8,
                payload: p.payload,
                refused,
            });
        }
        if let Some(bucket) = &self.bucket {
            // Over the rate limit the connection is slowed (not read), for 5.0 too, rather
            // than answered 0x97 quota exceeded: the device's data is kept, and it slows
            // down through TCP without having to handle a refusal. Each message is charged
            // to the device it is for (a gateway's to each of its devices), runs of one
            // device with one lock; the wait is the longest any of them owes.
            let now = Instant::now();
            let mut wait = if denied > 0 { bucket.take(denied, now) } else { Duration::ZERO };
            let mut run: Option<(&str, u32)> = None;
            for m in &messages {
                let (device, _) = m.mapped(&broker.acl.pattern);
                match &mut run {
                    Some((d, n)) if *d == device => *n += 1,
                    _ => {
                        if let Some((d, n)) = run.replace((device, 1)) {
                            wait = wait.max(bucket.take_for(d, n, now));
                        }
                    }
                }
            }
            if let Some((d, n)) = run {
                wait = wait.max(bucket.take_for(d, n, now));
            }
            if !wait.is_zero() {
                metrics.backpressure(Backpressure::RateLimit);
                tokio::time::sleep(wait.min(MAX_RATE_PAUSE)).await;
            }
        }
        if messages.is_empty() {
            return Ok(PendingStore { write: None, acks, ack_of });
        }
        let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
        let mut tries = 0;
        let reservation = loop {
            match broker.ingest.write_memory.reserve(bytes * 3 + 4096).await {
                Ok(r) => break r,
                Err(_) => {
                    metrics.backpressure(Backpressure::WriteMemory);
                    tries += 1;
                    if tries >= WRITE_MEMORY_TRIES || broker.shutting_down() {
                        tracing::warn!(client_id = %self.id.client_id, "write memory stayed exhausted; closing without acknowledging");
                        return Err(EndReason::StorageError);
                    }
                }
            }
        };
        let job = broker.clone();
        let write = tokio::task::spawn_blocking(move || {
            // Dead letters included: durable before the PUBACKs, as the points are.
            let r = job.store_messages(&messages, sync || messages.iter().any(|m| m.qos > 0));
            drop(reservation);
            r
        });
        Ok(PendingStore { write: Some(write), acks, ack_of })
    }

    /// Waits for a batch started by [`Conn::start_store`]; returns its PUBACKs, in order. An
    /// error closes the connection without acknowledging anything of the batch.
    pub(super) async fn finish_store(&self, pending: PendingStore) -> Result<Vec<(u16, Ack)>, EndReason> {
        let PendingStore { write, acks, ack_of } = pending;
        let written = match write {
            Some(w) => Some(w.await),
            None => None,
        };
        self.answer(acks, ack_of, written)
    }

    /// The PUBACKs of a batch once its write (if any) returned.
    pub(super) fn answer(
        &self,
        mut acks: Vec<(u16, Ack)>,
        ack_of: Vec<Option<usize>>,
        written: Option<Written>,
    ) -> Result<Vec<(u16, Ack)>, EndReason> {
        let Some(written) = written else { return Ok(acks) };
        match written {
            Ok(Ok(reasons)) => {
                if self.writer.protocol == Protocol::V5 {
                    for (i, why) in reasons.into_iter().enumerate() {
                        if let (Some(Some(a)), Some(why)) = (ack_of.get(i), why) {
                            acks[*a].1 = Ack::DeadLettered(format!("dead-lettered: {why}"));
                        }
                    }
                }
                Ok(acks)
            }
            Ok(Err(e)) => {
                tracing::error!(client_id = %self.id.client_id, device = %self.id.device, error = %e, "MQTT write failed; closing without acknowledging");
                Err(EndReason::StorageError)
            }
            Err(e) => {
                tracing::error!(error = %e, "MQTT write task failed");
                Err(EndReason::StorageError)
            }
        }
    }

    /// Waits for the oldest batch in flight and queues its PUBACKs.
    pub(super) async fn complete_oldest(
        &mut self,
        inflight: &mut VecDeque<PendingStore>,
    ) -> Result<(), EndReason> {
        let Some(pending) = inflight.pop_front() else { return Ok(()) };
        let acks = self.finish_store(pending).await?;
        self.queue_pubacks(&acks);
        Ok(())
    }

    pub(super) fn queue_pubacks(&mut self, acks: &[(u16, Ack)]) {
        for (pkid, ack) in acks {
            self.writer.puback(*pkid, ack, &mut self.out);
        }
    }

    /// Before the connection ends: waits for every batch in flight, so no write outlives its
    /// connection, and sends the PUBACKs that may still go: with `ack` false (a batch before
    /// these failed) none, else those up to the first batch that fails.
    pub(super) async fn settle<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        inflight: &mut VecDeque<PendingStore>,
        reason: EndReason,
        ack: bool,
    ) -> EndReason {
        // The connection ends for `reason` whatever these writes do (at shutdown they may fail
        // because the engine closes).
        let mut ack = ack;
        while !inflight.is_empty() {
            if ack {
                ack = self.complete_oldest(inflight).await.is_ok();
            } else if let Some(w) = inflight.pop_front().and_then(|p| p.write) {
                let _ = w.await;
            }
        }
        let _ = write_out(stream, &mut self.out).await;
        reason
    }
}

/// Waits for the write of the oldest batch in flight (cancel-safe: the write goes on).
/// `None` when that batch writes nothing.
pub(super) async fn wait_oldest(inflight: &mut VecDeque<PendingStore>) -> Option<Written> {
    match inflight.front_mut().and_then(|p| p.write.as_mut()) {
        Some(w) => Some(w.await),
        None => None,
    }
}
