//! Bridge mode: Strata subscribes (rumqttc, MQTT 3.1.1 or 5.0, QoS 1, optionally over TLS) to
//! an external broker and stores what devices publish there, for fleets larger than one node:
//! with a shared subscription (`$share/{group}/...`) several Strata nodes split one fleet's
//! messages.
//!
//! Two tasks. The event-loop task drives the rumqttc connection: it (re)subscribes after every
//! CONNACK, hands each incoming PUBLISH to the writer through a bounded channel, and on a
//! connection error waits (100 ms doubling up to `mqtt.bridge.max_backoff`) before rumqttc
//! reconnects. The writer takes one PUBLISH, drains up to `mqtt.bridge.max_batch` more, and
//! stores them exactly as the listener does ([`Broker::store_messages`]: same topic mapping,
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
//! they were the broker's to drop. Each message carries the generation of the connection it
//! came on; a connection error starts a new generation and, under the same lock, drops the
//! acknowledgements already queued to rumqttc (which would otherwise replay them on the next
//! connection).
//!
//! The loop and the writer are written once, generic over [`protocol::Protocol`]: the 3.1.1
//! and 5.0 clients of rumqttc differ only in their types and options (`protocol.rs`). TLS
//! settings are read and checked before the bridge starts (`tls.rs`).

mod protocol;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::protocol::{Connect, Polled, Protocol, V311, V5};
pub use self::tls::BridgeTlsError;
use super::config::BridgeProtocol;
use super::metrics::{Backpressure, MqttMetrics};
use crate::broker::{Broker, Message};

/// PUBLISHes received and not yet written. The broker bounds how many QoS 1 messages are in
/// flight to us (Mosquitto: `max_inflight_messages`, 20 by default; 5.0: also our Receive
/// Maximum); QoS 0 ones are bounded here: when the channel is full the event loop stops
/// polling and TCP pushes back.
const CHANNEL: usize = 4096;
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The generation of the current connection to the broker. The lock makes "is this message's
/// connection still the current one?" and "queue its acknowledgement" one step for the
/// writer, against the event loop's "new generation, drop the queued acknowledgements".
type Generation = Arc<Mutex<u64>>;

/// Starts the bridge if `mqtt.bridge.enabled`; fails on unusable TLS settings.
pub fn spawn(broker: &Arc<Broker>) -> Result<Option<JoinHandle<()>>, BridgeTlsError> {
    let cfg = &broker.config.bridge;
    if !cfg.enabled {
        return Ok(None);
    }
    let transport = tls::transport(cfg)?;
    let broker = broker.clone();
    Ok(Some(match cfg.protocol {
        BridgeProtocol::V311 => tokio::spawn(run::<V311>(broker, transport)),
        BridgeProtocol::V5 => tokio::spawn(run::<V5>(broker, transport)),
    }))
}

async fn run<P: Protocol>(broker: Arc<Broker>, transport: rumqttc::Transport) {
    let cfg = broker.config.bridge.clone();
    let Some((host, port)) = cfg.host_port() else {
        tracing::error!(broker = %cfg.broker, "mqtt.bridge.broker is not host:port; bridge not started");
        return;
    };
    let tls = cfg.tls;
    // Room for every acknowledgement the writer may queue while the event loop waits on it.
    let (client, mut eventloop) = P::connect(Connect {
        cfg: &cfg,
        host,
        port,
        max_packet: broker.config.max_packet_size.as_usize(),
        transport,
        requests: CHANNEL,
    });
    let (tx, rx) = mpsc::channel::<(u64, P::Publish)>(CHANNEL);
    let generation: Generation = Arc::new(Mutex::new(0));
    let writer = tokio::spawn(write_loop::<P>(broker.clone(), client.clone(), rx, generation.clone()));
    let metrics = &broker.metrics;
    let mut shutdown = broker.shutdown_signal();
    let subscriptions = cfg.subscriptions();
    let mut backoff = MIN_BACKOFF;
    tracing::info!(broker = %cfg.broker, protocol = P::VERSION, tls, client_id = %cfg.client_id, topics = ?subscriptions, "MQTT bridge starting");
    loop {
        if broker.shutting_down() {
            break;
        }
        let event = tokio::select! {
            e = P::poll(&mut eventloop) => e,
            _ = shutdown.changed() => break,
        };
        match event {
            Ok(Polled::Connected { session_present }) => {
                backoff = MIN_BACKOFF;
                MqttMetrics::inc(&metrics.bridge_connects);
                tracing::info!(broker = %cfg.broker, protocol = P::VERSION, session_present, "MQTT bridge connected");
                // Every time: harmless when the broker kept the session, needed when it did not.
                if !P::subscribe(&client, &subscriptions) {
                    tracing::error!("MQTT bridge: cannot queue the SUBSCRIBE");
                }
            }
            Ok(Polled::SubAck { refused }) if refused > 0 => {
                tracing::error!(broker = %cfg.broker, refused, topics = ?subscriptions, "MQTT bridge: the broker refused subscriptions");
            }
            Ok(Polled::Publish(p)) => {
                MqttMetrics::inc(&metrics.bridge_messages);
                let g = *generation.lock();
                if tx.send((g, p)).await.is_err() {
                    break; // the writer ended (it only does at shutdown)
                }
            }
            Ok(_) => {}
            Err(e) => {
                MqttMetrics::inc(&metrics.bridge_connect_errors);
                {
                    let mut g = generation.lock();
                    *g += 1;
                    P::forget_unsent_acks(&mut eventloop);
                }
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
    P::try_disconnect(&client);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match P::poll(&mut eventloop).await {
                Ok(Polled::Disconnected) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    tracing::info!(broker = %cfg.broker, "MQTT bridge stopped");
}

/// The message a bridged PUBLISH carries, mapped by the topic pattern (no ACL).
fn message(broker: &Broker, client_id: &Arc<str>, topic: &str, qos: u8, payload: &Bytes) -> Message {
    let m = broker.acl.pattern.matches(topic);
    Message {
        client_id: client_id.clone(),
        unmapped_device: String::new(),
        topic: topic.to_owned(),
        qos,
        payload: Bytes::clone(payload),
        refused: if m.is_none() { Some("not a telemetry topic") } else { None },
    }
}

async fn write_loop<P: Protocol>(
    broker: Arc<Broker>,
    client: P::Client,
    mut rx: mpsc::Receiver<(u64, P::Publish)>,
    generation: Generation,
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
        let mut messages: Vec<Message> = batch
            .iter()
            .map(|(_, p)| message(&broker, &client_id, &P::topic(p), P::qos(p), P::payload(p)))
            .collect();
        let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
        let mut backoff = MIN_BACKOFF;
        // Until stored (then acknowledged) or shutdown (then left to the broker to redeliver).
        let stored = loop {
            let reservation = match broker.ingest.write_memory.reserve(bytes * 3 + 4096).await {
                Ok(r) => r,
                Err(_) if broker.shutting_down() => break false,
                Err(_) => {
                    // Each try already waited `limits.write_memory_wait`: the event loop is
                    // not fed meanwhile, so the broker is pushed back through TCP.
                    broker.metrics.backpressure(Backpressure::WriteMemory);
                    continue;
                }
            };
            let job = broker.clone();
            let result = tokio::task::spawn_blocking(move || {
                // Dead letters included: durable before the broker gets its acknowledgement.
                let r = job.store_messages(&messages, messages.iter().any(|m| m.qos > 0));
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
        for (g, p) in batch.iter().filter(|(_, p)| P::qos(p) == 1) {
            // The request queue is full when `try_ack` fails: let the event loop drain it.
            // Not `ack().await`: that would wait holding the generation lock, or queue an
            // acknowledgement after the event loop swept the queue on a connection error.
            loop {
                {
                    let current = generation.lock();
                    if *g != *current || P::try_ack(&client, p) {
                        break;
                    }
                }
                if broker.shutting_down() {
                    // The event loop no longer drains the queue; the broker redelivers.
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}
