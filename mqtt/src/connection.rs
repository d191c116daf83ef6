//! One MQTT connection, 3.1.1 or 5.0, from CONNECT to close.
//!
//! The protocol level of the CONNECT picks the codec (`wire.rs`: rumqttc's `v4` or `v5`); from
//! then on one loop serves both: parse every complete packet already buffered (the codec
//! frames them and refuses a packet larger than `mqtt.max_packet_size` from its fixed header,
//! before its body is read); collect the PUBLISHes (up to `mqtt.max_inflight`) and write them
//! as one batch; send their PUBACKs (in order) only after `Engine::write` returned, i.e. once
//! durable; then wait for more bytes, a command to deliver, the keep-alive deadline or
//! shutdown. While a batch is being written, or the device's token bucket is empty, or write
//! memory is exhausted, the socket is not read: TCP pushes back to the device and nothing
//! buffers beyond one read buffer per connection.
//!
//! Anything malformed, a second CONNECT, a QoS 2 PUBLISH (3.1.1 has no way to refuse it
//! other than closing; 5.0 says DISCONNECT 0x9B, since our CONNACK advertises Maximum QoS 1),
//! or a packet only a server sends closes the connection; the good messages parsed before it
//! are stored and acknowledged first. A 5.0 connection the server ends gets a DISCONNECT with
//! the reason code first (`wire::Close`).
//!
//! Layout, one job per file: this file holds the life of a connection ([`serve`]: CONNECT,
//! session attach, the packet loop, then wills and detaching); [`connect`] reads, refuses and
//! authenticates the CONNECT and negotiates the keep-alive; [`packets`] is the packet loop
//! (parsing, aliases, SUBSCRIBE, command delivery); [`store`] is the store pipeline (batches
//! of PUBLISHes to the engine, PUBACKs after durability); [`will`] publishes and delays Last
//! Wills; [`io`] reads and writes frames on the socket.

mod connect;
mod io;
mod packets;
mod store;
#[cfg(test)]
mod tests;
mod will;

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use strata_auth::{Access, AuthError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::acl::PublishVerdict;
use super::devices::Check;
use super::metrics::{Backpressure, MqttMetrics};
use super::rate::DeviceBucket;
use super::sessions::{AttachError, Attachment, Command};
use super::status::now_ms;
use super::topic::valid_device_id;
use super::wire::{
    self, Accepted, Ack, Close, ConnectInfo, InPublish, Inbound, Protocol, Refusal, SubCode, Will, WireError,
    Writer,
};
use crate::broker::{Broker, Message};
use crate::pending_will::PendingWill;

pub use self::connect::refuse_busy;
pub use self::will::schedule_restored_wills;
// The parts of a connection share its types and helpers: each part sees the others' items
// through this module (`use super::*` in each).
use self::connect::*;
use self::io::*;
use self::store::*;
use self::will::*;

/// A write to the socket that takes longer than this closes the connection (a device that
/// stops reading must not hold a task and its buffers forever).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause for the rate limit in one go.
const MAX_RATE_PAUSE: Duration = Duration::from_secs(10);
/// How many times a batch waits for write memory (each wait is `limits.write_memory_wait`)
/// before the connection is closed unacknowledged.
const WRITE_MEMORY_TRIES: u32 = 30;
/// Topic Alias Maximum advertised to 5.0 clients (inbound aliases only). A device publishes
/// to a handful of topics; 16 covers them.
pub const TOPIC_ALIAS_MAX: u16 = 16;
/// Longest topic a 5.0 client may set an alias for. With [`TOPIC_ALIAS_MAX`] it bounds the
/// alias table at 4 KiB per connection (unbounded, 16 topics of 64 KiB would double a
/// connection's worst-case memory). Telemetry topics are a few dozen bytes.
pub const MAX_ALIASED_TOPIC: usize = 256;

/// Why a connection ended; the device status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Disconnect,
    /// 5.0 DISCONNECT with reason 0x04: a clean goodbye that still asks for the Will.
    DisconnectWithWill,
    KeepAlive,
    ConnectionLost,
    /// The client broke the protocol (or a limit): what a 5.0 DISCONNECT says, and why.
    Protocol(Close, &'static str),
    TakenOver,
    Shutdown,
    StorageError,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Disconnect | EndReason::DisconnectWithWill => "disconnect",
            EndReason::KeepAlive => "keepalive_timeout",
            EndReason::ConnectionLost => "connection_lost",
            EndReason::Protocol(..) => "protocol_error",
            EndReason::TakenOver => "taken_over",
            EndReason::Shutdown => "shutdown",
            EndReason::StorageError => "storage_error",
        }
    }

    /// The Last Will is published unless the client said goodbye (or the server is stopping).
    fn publishes_will(self) -> bool {
        !matches!(self, EndReason::Disconnect | EndReason::Shutdown)
    }

    /// The DISCONNECT a 5.0 client gets when the server ends the connection.
    fn close(self) -> Option<(Close, &'static str)> {
        match self {
            EndReason::Disconnect | EndReason::DisconnectWithWill | EndReason::ConnectionLost => None,
            EndReason::KeepAlive => {
                Some((Close::KeepAliveTimeout, "nothing received within 1.5 x keep-alive"))
            }
            EndReason::Protocol(c, why) => Some((c, why)),
            EndReason::TakenOver => {
                Some((Close::SessionTakenOver, "another connection took the session over"))
            }
            EndReason::Shutdown => Some((Close::ServerShuttingDown, "the server is shutting down")),
            EndReason::StorageError => {
                Some((Close::StorageError, "the messages could not be stored; send them again"))
            }
        }
    }
}

/// Who a connection is.
#[derive(Debug, Clone)]
struct Identity {
    client_id: String,
    device: String,
}

/// Serves one connection. `cert_device` is the device id from a verified client certificate
/// (mutual TLS), which then authenticates the device instead of a password.
pub async fn serve<S>(broker: Arc<Broker>, mut stream: S, peer: SocketAddr, cert_device: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let max = broker.config.max_packet_size.as_usize();
    let metrics = &broker.metrics;
    let mut buf = BytesMut::with_capacity(CONNECT_CHUNK);
    let mut out = BytesMut::with_capacity(1024);

    // CONNECT first, within the connect timeout, and at most `mqtt.max_connect_size` of it:
    // before it is accepted, nobody is authenticated, so the buffer stays that small (a larger
    // CONNECT is refused from its fixed header, its body never read).
    let first = tokio::time::timeout(
        broker.config.connect_timeout.get(),
        read_first(&mut stream, &mut buf, broker.config.connect_limit(), CONNECT_CHUNK),
    )
    .await;
    let connect = match first {
        Ok(Ok(First::Connect(c))) => c,
        Ok(Ok(First::Level(level))) => {
            // 3.1.1 section 3.2.2.3 answers 0x01 to a level it does not speak, 5.0 section
            // 3.2.2.2 answers 0x84: a client below 5 reads the former, one above the latter.
            let protocol = if level > 5 { Protocol::V5 } else { Protocol::V311 };
            Writer::refuse(protocol, Refusal::UnsupportedProtocol, "only MQTT 3.1.1 and 5.0", &mut out);
            write_out(&mut stream, &mut out).await;
            MqttMetrics::inc(&metrics.connections_refused);
            tracing::debug!(%peer, level, "MQTT connection refused: unsupported protocol level (3.1.1 and 5.0 only)");
            return;
        }
        Ok(Ok(First::TooLarge(level))) => {
            if level == Some(5) {
                Writer::refuse(
                    Protocol::V5,
                    Refusal::PacketTooLarge,
                    "CONNECT exceeds mqtt.max_connect_size",
                    &mut out,
                );
                write_out(&mut stream, &mut out).await;
            }
            MqttMetrics::inc(&metrics.protocol_errors);
            tracing::debug!(%peer, "MQTT connection closed: CONNECT larger than mqtt.max_connect_size");
            return;
        }
        Ok(Ok(First::Malformed(protocol, e))) => {
            // 5.0 section 4.13.1: a CONNACK 0x81 may precede the close.
            Writer::refuse(protocol, Refusal::Malformed, "malformed CONNECT", &mut out);
            write_out(&mut stream, &mut out).await;
            MqttMetrics::inc(&metrics.protocol_errors);
            tracing::debug!(%peer, error = %e, "MQTT connection closed: malformed CONNECT");
            return;
        }
        Ok(Ok(First::NotConnect)) => {
            MqttMetrics::inc(&metrics.protocol_errors);
            tracing::debug!(%peer, "MQTT connection closed: first packet is not a CONNECT");
            return;
        }
        Ok(Err(_)) => return,
        Err(_) => {
            tracing::debug!(%peer, "MQTT connection closed: no CONNECT within mqtt.connect_timeout");
            return;
        }
    };
    let mut connect = *connect;
    let protocol = connect.protocol;

    let (identity, token) = match authenticate(&broker, &connect, cert_device.as_deref()).await {
        Ok(id) => id,
        Err((refusal, why)) => {
            Writer::refuse(protocol, refusal, why, &mut out);
            write_out(&mut stream, &mut out).await;
            MqttMetrics::inc(&metrics.connections_refused);
            tracing::info!(%peer, client_id = %connect.client_id, protocol = protocol.as_str(), reason = why, "MQTT connection refused");
            return;
        }
    };
    let conn_id = broker.next_conn_id();
    let attachment = match broker.sessions.attach_with_token(
        &identity.client_id,
        &identity.device,
        token.as_ref(),
        connect.clean_start,
        connect.session_expiry,
        conn_id,
        now_ms(),
    ) {
        Ok(a) => a,
        Err(e) => {
            // Another identity's session: "not authorized" (the client id is valid, this
            // credential may not use it; 0x85 would invite the client to make up another id).
            let (refusal, why) = match e {
                AttachError::Full => (Refusal::QuotaExceeded, "too many sessions"),
                AttachError::IdentityQuota => {
                    (Refusal::QuotaExceeded, "mqtt.max_sessions_per_identity reached")
                }
                AttachError::TokenQuota => (Refusal::QuotaExceeded, "mqtt.max_sessions_per_token reached"),
                AttachError::NotOwner => (Refusal::NotAuthorized, "the session belongs to another identity"),
            };
            Writer::refuse(protocol, refusal, why, &mut out);
            write_out(&mut stream, &mut out).await;
            MqttMetrics::inc(&metrics.connections_refused);
            tracing::warn!(%peer, client_id = %identity.client_id, device = %identity.device, reason = %e, "MQTT connection refused");
            return;
        }
    };
    // A client back before its Will Delay Interval ran out cancels its will (also one saved
    // before a restart; the file drops it at the next save). Only once it has the session:
    // another identity using its client id is refused above and cancels nothing.
    if broker.delayed_wills.lock().remove(&identity.client_id).is_some() {
        tracing::info!(client_id = %identity.client_id, "delayed Last Will cancelled by the reconnect");
        broker.sessions.touch();
    }
    let presence = broker.status.connected(&identity.device, &identity.client_id, conn_id);
    let bucket = broker.device_buckets.acquire(&identity.device, Instant::now());
    let writer = Writer::new(&connect);
    let (keep_alive_secs, server_keep_alive) =
        keep_alive(connect.keep_alive, broker.config.max_keep_alive_secs());
    let max_inflight = broker.config.max_inflight;
    writer.accept(
        &Accepted {
            session_present: attachment.session_present,
            assigned_client_id: (protocol == Protocol::V5 && connect.client_id.is_empty())
                .then(|| identity.client_id.clone()),
            receive_maximum: u16::try_from(max_inflight).unwrap_or(u16::MAX),
            max_packet_size: u32::try_from(max).unwrap_or(u32::MAX),
            topic_alias_maximum: TOPIC_ALIAS_MAX,
            server_keep_alive,
        },
        &mut out,
    );
    MqttMetrics::inc(&metrics.connections);
    MqttMetrics::inc(match protocol {
        Protocol::V311 => &metrics.connections_v311,
        Protocol::V5 => &metrics.connections_v5,
    });
    metrics.connections_active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        %peer, client_id = %identity.client_id, device = %identity.device, protocol = protocol.as_str(),
        keep_alive = connect.keep_alive, keep_alive_enforced = keep_alive_secs, clean_start = connect.clean_start, session_expiry = connect.session_expiry,
        session_present = attachment.session_present, "MQTT client connected"
    );

    let mut conn = Conn {
        broker: broker.clone(),
        client_arc: identity.client_id.as_str().into(),
        id: identity,
        max,
        buf,
        out,
        unacked: BTreeMap::new(),
        next_pkid: 1,
        // Commands in flight: ours (`mqtt.max_inflight`) or the client's Receive Maximum.
        window: max_inflight.min(usize::from(connect.receive_maximum)).max(1),
        writer,
        aliases: Vec::new(),
        session_expiry: connect.session_expiry,
        disconnect_expiry: None,
        bucket,
    };
    // 1.5 x the keep-alive (3.1.1 section 3.1.2.10, 5.0 section 3.1.2.10).
    let keep_alive = Some(Duration::from_millis(u64::from(keep_alive_secs) * 1500));
    let Attachment { queued, mut rx, kicked, .. } = attachment;
    let mut pending: VecDeque<Command> = queued;
    let reason = conn.run(&mut stream, keep_alive, &mut pending, &mut rx, &kicked, &presence).await;
    if let Some((close, why)) = reason.close() {
        conn.writer.disconnect(close, why, &mut conn.out);
        write_out(&mut stream, &mut conn.out).await;
    }

    // Unacknowledged and undelivered QoS 1 commands go back to a persistent session.
    let mut unacked: Vec<Command> = std::mem::take(&mut conn.unacked).into_values().collect();
    unacked.extend(pending.into_iter().filter(|c| c.qos == QoS::AtLeastOnce));
    let expiry = conn.disconnect_expiry.unwrap_or(conn.session_expiry);
    broker.sessions.detach(&conn.id.client_id, conn_id, unacked, rx, conn.disconnect_expiry, now_ms());
    let (client_id, device) = (conn.id.client_id.clone(), conn.id.device.clone());
    let mut will_published = false;
    let mut will_delayed = false;
    if reason.publishes_will() {
        if let Some(will) = connect.will.take() {
            // 5.0 section 3.1.3.2.2: the will goes out when its delay or the session ends,
            // whichever comes first.
            let delay = will.delay_secs.min(expiry);
            if delay > 0 && reason == EndReason::TakenOver {
                // The client is back on another connection before the delay ran out: as a
                // reconnect, that cancels the will (5.0 section 3.1.2.5).
                tracing::info!(client_id = %conn.id.client_id, "delayed Last Will cancelled by the takeover");
            } else if delay == 0 {
                will_published = conn.publish_will(&will).await;
            } else {
                will_delayed = true;
                delay_will(conn, will, conn_id, Duration::from_secs(u64::from(delay)));
            }
        }
    }
    broker.status.disconnected(&device, &presence, reason.as_str(), will_published);
    metrics.connections_active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    if reason == EndReason::KeepAlive {
        MqttMetrics::inc(&metrics.keepalive_timeouts);
    }
    tracing::info!(%peer, client_id = %client_id, device = %device, reason = reason.as_str(), will_published, will_delayed, "MQTT client disconnected");
    let _ = stream.shutdown().await;
}

struct Conn {
    broker: Arc<Broker>,
    /// `id.client_id`, shared by every message stored.
    client_arc: Arc<str>,
    id: Identity,
    max: usize,
    buf: BytesMut,
    out: BytesMut,
    /// QoS 1 commands sent and not yet acknowledged, by packet id.
    unacked: BTreeMap<u16, Command>,
    next_pkid: u16,
    /// The most commands in flight: `mqtt.max_inflight`, or less if the client's Receive
    /// Maximum (5.0) is lower.
    window: usize,
    writer: Writer,
    /// Inbound topic aliases (5.0): index alias - 1. Grows to [`TOPIC_ALIAS_MAX`] at most.
    aliases: Vec<String>,
    /// The CONNECT's Session Expiry Interval, and the one a 5.0 DISCONNECT set.
    session_expiry: u32,
    disconnect_expiry: Option<u32>,
    /// The rate limit's per-device buckets (each message charged to its topic's device);
    /// `None` when the rate limit is off (and for wills published after their connection
    /// ended).
    bucket: Option<DeviceBucket>,
}

/// What the parse step found.
enum Step {
    /// Keep going.
    More,
    /// The next packet needs an answer that must follow those of the batches in flight (a
    /// PINGRESP, SUBACK, ... or the end of the connection): finish them first.
    Wait,
    /// Close after handling what was parsed.
    End(EndReason),
}

/// Feeds `bytes` to a fresh connection and returns what the server wrote back. For the fuzz
/// target and the proptest: arbitrary bytes must never panic, and memory stays bounded.
pub async fn feed_for_test(broker: Arc<Broker>, bytes: Bytes) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(serve(broker, server, SocketAddr::from(([127, 0, 0, 1], 0)), None));
    let (mut rd, mut wr) = tokio::io::split(client);
    let writer = async move {
        let _ = wr.write_all(&bytes).await;
        let _ = wr.shutdown().await;
    };
    let mut out = Vec::new();
    let reader = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut out));
    let _ = tokio::join!(writer, reader);
    // A panic inside the connection task must fail the caller (the proptests, the fuzz
    // target), not vanish into the JoinError tokio catches it in.
    if let Err(e) = task.await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    out
}
