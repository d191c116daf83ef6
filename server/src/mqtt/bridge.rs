//! Bridge mode: Strata subscribes (rumqttc, MQTT 3.1.1, QoS 1) to an external broker and
//! stores what devices publish there, for fleets larger than one node: with a shared
//! subscription (`$share/{group}/...`) several Strata nodes split one fleet's messages.
//!
//! Two tasks. The event-loop task drives the rumqttc connection: it (re)subscribes after every
//! CONNACK, hands each incoming PUBLISH to the writer through a bounded channel, and on a
//! connection error waits (100 ms doubling up to `mqtt.bridge.max_backoff`) before rumqttc
//! reconnects. The writer takes one PUBLISH, drains up to `mqtt.bridge.max_batch` more, and
//! stores them exactly as the listener does ([`Broker::write_messages`]: same topic mapping,
//! payload decoding, dead letters); only when that write returned, i.e. the points are durable
//! per `storage.sync`, are the QoS 1 messages acknowledged to the broker (manual acks). A
//! failed write is retried with the same backoff and never acknowledged meanwhile, so a
//! message is either stored or still the broker's to redeliver.
//!
//! The bridge is a trusted gateway: the ACL does not apply (any device's telemetry topic is
//! stored); a topic that does not match `mqtt.topic_pattern` is dead-lettered.
//!
//! Packet ids belong to one connection. After a reconnect with a clean session the broker
//! may reuse the id of a message still being written for a new message, so acknowledgements
//! of messages received on an earlier connection are not sent: with a persistent session the
//! broker redelivers them (a duplicate write is harmless, last write wins); with a clean one
//! they were the broker's to drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics::{Backpressure, MqttMetrics};
use super::{Broker, Message};

/// PUBLISHes received and not yet written. The broker bounds how many QoS 1 messages are in
/// flight to us (Mosquitto: `max_inflight_messages`, 20 by default); QoS 0 ones are bounded
/// here: when the channel is full the event loop stops polling and TCP pushes back.
const CHANNEL: usize = 4096;
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Starts the bridge if `mqtt.bridge.enabled`.
pub fn spawn(broker: &Arc<Broker>) -> Option<JoinHandle<()>> {
    broker.config.bridge.enabled.then(|| tokio::spawn(run(broker.clone())))
}

async fn run(broker: Arc<Broker>) {
    let cfg = broker.config.bridge.clone();
    let Some((host, port)) = cfg.host_port() else {
        tracing::error!(broker = %cfg.broker, "mqtt.bridge.broker is not host:port; bridge not started");
        return;
    };
    let max_packet = broker.config.max_packet_size.as_usize();
    let mut opts = MqttOptions::new(cfg.client_id.clone(), host, port);
    opts.set_keep_alive(cfg.keep_alive.get())
        .set_clean_session(cfg.clean_session)
        .set_manual_acks(true)
        .set_max_packet_size(max_packet, max_packet);
    if !cfg.username.is_empty() {
        opts.set_credentials(cfg.username.clone(), cfg.password.expose().to_owned());
    }
    // Room for every acknowledgement the writer may queue while the event loop waits on it.
    let (client, mut eventloop) = AsyncClient::new(opts, CHANNEL);
    let (tx, rx) = mpsc::channel::<(u64, Publish)>(CHANNEL);
    let generation = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_loop(broker.clone(), client.clone(), rx, generation.clone()));
    let metrics = &broker.metrics.mqtt;
    let mut shutdown = broker.shutdown_signal();
    let subscriptions = cfg.subscriptions();
    let mut backoff = MIN_BACKOFF;
    tracing::info!(broker = %cfg.broker, client_id = %cfg.client_id, topics = ?subscriptions, "MQTT bridge starting");
    loop {
        if broker.shutting_down() {
            break;
        }
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = shutdown.changed() => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(a))) => {
                backoff = MIN_BACKOFF;
                generation.fetch_add(1, Ordering::AcqRel);
                MqttMetrics::inc(&metrics.bridge_connects);
                tracing::info!(broker = %cfg.broker, session_present = a.session_present, "MQTT bridge connected");
                // Every time: harmless when the broker kept the session, needed when it did not.
                let filters = subscriptions.iter().map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    tracing::error!(error = %e, "MQTT bridge: cannot queue the SUBSCRIBE");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(a))) => {
                let refused = a
                    .return_codes
                    .iter()
                    .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    .count();
                if refused > 0 {
                    tracing::error!(broker = %cfg.broker, refused, topics = ?subscriptions, "MQTT bridge: the broker refused subscriptions");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                MqttMetrics::inc(&metrics.bridge_messages);
                let g = generation.load(Ordering::Acquire);
                if tx.send((g, p)).await.is_err() {
                    break; // the writer ended (it only does at shutdown)
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(broker = %cfg.broker, error = %e, retry_in = ?backoff, "MQTT bridge: connection to the broker failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(cfg.max_backoff.get());
            }
        }
    }
    // Let the writer finish the batch in hand (its acknowledgements are queued to the client),
    // then say goodbye: what was not acknowledged is redelivered by the broker later.
    drop(tx);
    let _ = writer.await;
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    tracing::info!(broker = %cfg.broker, "MQTT bridge stopped");
}

/// The message a bridged PUBLISH carries, mapped by the topic pattern (no ACL).
fn message(broker: &Broker, client_id: &Arc<str>, p: &Publish) -> Message {
    let m = broker.acl.pattern.matches(&p.topic);
    Message {
        client_id: client_id.clone(),
        unmapped_device: String::new(),
        topic: p.topic.clone(),
        qos: p.qos as u8,
        payload: Bytes::clone(&p.payload),
        refused: if m.is_none() { Some("not a telemetry topic") } else { None },
    }
}

async fn write_loop(
    broker: Arc<Broker>,
    client: AsyncClient,
    mut rx: mpsc::Receiver<(u64, Publish)>,
    generation: Arc<AtomicU64>,
) {
    let cfg = &broker.config.bridge;
    let client_id: Arc<str> = format!("bridge:{}", cfg.client_id).into();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut messages: Vec<Message> = batch.iter().map(|(_, p)| message(&broker, &client_id, p)).collect();
        let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
        let mut backoff = MIN_BACKOFF;
        // Until stored (then acknowledged) or shutdown (then left to the broker to redeliver).
        let stored = loop {
            let reservation = match broker.write_memory.reserve(bytes * 3 + 4096).await {
                Ok(r) => r,
                Err(_) if broker.shutting_down() => break false,
                Err(_) => {
                    // Each try already waited `limits.write_memory_wait`: the event loop is
                    // not fed meanwhile, so the broker is pushed back through TCP.
                    broker.metrics.mqtt.backpressure(Backpressure::WriteMemory);
                    continue;
                }
            };
            let job = broker.clone();
            let result = tokio::task::spawn_blocking(move || {
                let r = job.write_messages(&messages);
                if let Ok(reasons) = &r {
                    job.dead_letter(&messages, reasons);
                }
                drop(reservation);
                (messages, r)
            })
            .await;
            let (back, r) = match result {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "MQTT bridge write task failed");
                    break false;
                }
            };
            messages = back;
            match r {
                Ok(_) => break true,
                Err(e) => {
                    tracing::error!(error = %e, messages = messages.len(), retry_in = ?backoff, "MQTT bridge: write failed; not acknowledging");
                    if broker.shutting_down() {
                        break false;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(cfg.max_backoff.get());
                }
            }
        };
        if !stored {
            continue;
        }
        let current = generation.load(Ordering::Acquire);
        for (g, p) in &batch {
            // The request queue is full when `try_ack` fails: wait for the event loop then.
            if p.qos == QoS::AtLeastOnce && *g == current && client.try_ack(p).is_err() {
                let _ = client.ack(p).await;
            }
        }
    }
}
