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
use super::session_store::StoredWill;
use super::sessions::{AttachError, Attachment, Command};
use super::status::now_ms;
use super::topic::valid_device_id;
use super::wire::{
    self, Accepted, Ack, Close, ConnectInfo, InPublish, Inbound, Protocol, Refusal, SubCode, Will, WireError,
    Writer,
};
use super::{Broker, Message};

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

/// Reads until a whole packet is buffered and parses it.
#[derive(Debug)]
enum ReadError {
    Closed,
    Io,
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<(), ReadError> {
    buf.reserve(8 * 1024);
    match stream.read_buf(buf).await {
        Ok(0) => Err(ReadError::Closed),
        Ok(_) => Ok(()),
        Err(_) => Err(ReadError::Io),
    }
}

async fn write_out<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut BytesMut) -> bool {
    if out.is_empty() {
        return true;
    }
    let ok = matches!(tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(out)).await, Ok(Ok(())));
    out.clear();
    ok
}

/// What the first packet turned out to be.
enum First {
    Connect(Box<ConnectInfo>),
    /// A CONNECT of a protocol level we do not speak.
    Level(u8),
    /// Larger than `mqtt.max_packet_size`; the level, if it could be seen.
    TooLarge(Option<u8>),
    Malformed(Protocol, WireError),
    /// Not a CONNECT at all, or framing we cannot read.
    NotConnect,
}

/// Reads the first packet, `chunk` bytes of buffer at a time. The buffer never grows past one
/// packet of `max` bytes: the fixed header is checked (rumqttc's `check`) before the body is
/// awaited.
async fn read_first<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max: usize,
    chunk: usize,
) -> Result<First, ReadError> {
    loop {
        match rumqttc::mqttbytes::check(buf.iter(), max) {
            Ok(_) => {
                let protocol = match wire::connect_protocol_level(buf) {
                    Some(4) => Protocol::V311,
                    Some(5) => Protocol::V5,
                    Some(level) => return Ok(First::Level(level)),
                    None => return Ok(First::NotConnect),
                };
                return Ok(match wire::read(protocol, buf, max) {
                    Ok(Some(Inbound::Connect(c))) => First::Connect(c),
                    Ok(_) => First::NotConnect,
                    Err(e) => First::Malformed(protocol, e),
                });
            }
            Err(CodecError::InsufficientBytes(_)) => {
                buf.reserve(chunk);
                match stream.read_buf(buf).await {
                    Ok(0) => return Err(ReadError::Closed),
                    Ok(_) => {}
                    Err(_) => return Err(ReadError::Io),
                }
            }
            Err(CodecError::PayloadSizeLimitExceeded(_)) => {
                return Ok(First::TooLarge(wire::connect_protocol_level(buf)))
            }
            Err(_) => return Ok(First::NotConnect),
        }
    }
}

/// Buffer step while reading a CONNECT: the buffer stays within `mqtt.max_connect_size` and
/// one step.
const CONNECT_CHUNK: usize = 2048;

/// Largest CONNECT read from a connection refused for `mqtt.max_connections`: a device's
/// CONNECT (client id, token, a small will) is a few hundred bytes; a larger one is answered
/// from its fixed header and protocol level alone.
const REFUSED_MAX_CONNECT: usize = 4096;
/// Buffer step of a refused connection's reads (the buffer stays at most
/// [`REFUSED_MAX_CONNECT`] and a step).
const REFUSED_CHUNK: usize = 512;
/// Bytes a refused connection may still send after its CONNACK, and for how long, before it
/// is closed anyway.
const REFUSED_DRAIN: usize = 16 * 1024;
const REFUSED_LINGER: Duration = Duration::from_secs(1);

/// Answers a connection past `mqtt.max_connections`: reads its CONNECT (at most
/// [`REFUSED_MAX_CONNECT`] bytes; the caller bounds the time) and refuses it, in the client's
/// protocol, with 3.1.1 return code 3 (server unavailable) or 5.0 reason 0x97 (quota
/// exceeded: "an implementation or administrative imposed limit", which the connection limit
/// is; see docs/mqtt.md for why not 0x89 or 0x9F). Nothing else is done: no authentication,
/// no session. Returns whether a CONNACK was sent.
///
/// After the CONNACK the write side is shut and what the client still sends is read and
/// dropped until it closes: closing a socket with unread bytes makes the kernel send a RST,
/// which can destroy the CONNACK before the client reads it.
pub async fn refuse_busy<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> bool {
    let mut buf = BytesMut::with_capacity(REFUSED_CHUNK);
    let protocol = match read_first(stream, &mut buf, REFUSED_MAX_CONNECT, REFUSED_CHUNK).await {
        Ok(First::Connect(c)) => c.protocol,
        Ok(First::TooLarge(Some(4))) => Protocol::V311,
        Ok(First::TooLarge(Some(5))) => Protocol::V5,
        _ => return false,
    };
    let mut out = BytesMut::with_capacity(64);
    Writer::refuse(
        protocol,
        Refusal::QuotaExceeded,
        "mqtt.max_connections reached; try again later",
        &mut out,
    );
    if !write_out(stream, &mut out).await {
        return false;
    }
    let _ = stream.shutdown().await;
    let drain = async {
        let mut scratch = [0u8; 512];
        let mut drained = 0;
        while drained < REFUSED_DRAIN {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSED_LINGER, drain).await;
    true
}

/// The keep-alive enforced, in seconds, for a client that asked for `asked` (0: none) under
/// the `mqtt.max_keep_alive` ceiling; and the Server Keep Alive that tells a 5.0 client so
/// (section 3.2.2.3.14), `None` when its own value stands. 0 and values above the ceiling
/// become the ceiling: a connection that dies silently must be noticed some time. 3.1.1 has
/// no way to tell the client; it is held to the same ceiling (as Mosquitto's `max_keepalive`
/// does, which refuses such a 3.1.1 client instead; see docs/mqtt.md).
fn keep_alive(asked: u16, ceiling: u16) -> (u16, Option<u16>) {
    if asked == 0 || asked > ceiling {
        (ceiling, Some(ceiling))
    } else {
        (asked, None)
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

/// Publishes `will` after `delay` unless the client reconnects first (which removes its
/// entry in `Broker::delayed_wills`) or the server stops first: wills are not published at
/// shutdown, but a pending one stays in `delayed_wills`, is saved in the sessions file and is
/// published after the restart when due (`schedule_restored_wills`).
fn delay_will(mut conn: Conn, will: Will, conn_id: u64, delay: Duration) {
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
fn will_conn(broker: Arc<Broker>, id: Identity) -> Conn {
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
async fn will_timer(mut conn: Conn, will: Will, conn_id: u64, due_ms: u64) {
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

/// Authenticates the CONNECT ([`credentials`]), then authorizes its Last Will as the PUBLISH
/// it will become: a will on a topic its device may not publish to is refused with 3.1.1
/// 0x05 / 5.0 0x87 (not authorized), as Mosquitto does, rather than accepted and dropped
/// later (the device would never learn its will goes nowhere). Also gives the id of the token
/// that authenticated it, if one did (for `mqtt.max_sessions_per_token`).
async fn authenticate(
    broker: &Arc<Broker>,
    c: &ConnectInfo,
    cert_device: Option<&str>,
) -> Result<(Identity, Option<Arc<str>>), (Refusal, &'static str)> {
    let (id, token) = credentials(broker, c, cert_device).await?;
    if let Some(w) = &c.will {
        if let PublishVerdict::Denied(why) = broker.acl.publish(&id.device, &w.topic) {
            MqttMetrics::inc(&broker.metrics.acl_denied);
            tracing::warn!(client_id = %id.client_id, device = %id.device, topic = %w.topic, reason = why, "Last Will refused by the ACL");
            return Err((Refusal::NotAuthorized, "Last Will refused by the ACL"));
        }
    }
    Ok((id, token))
}

/// Checks the credentials: a verified client certificate; else a registered device's own
/// password (`strata device add`); else (auth on) a token with write access to
/// `mqtt.database` as the password. The device id is the certificate's CN, else
/// the username, else the client id. The token's id comes along when a token was the
/// credential.
async fn credentials(
    broker: &Arc<Broker>,
    c: &ConnectInfo,
    cert_device: Option<&str>,
) -> Result<(Identity, Option<Arc<str>>), (Refusal, &'static str)> {
    if c.auth_method.is_some() {
        return Err((Refusal::BadAuthMethod, "enhanced authentication is not supported"));
    }
    if let Some(w) = c.will.as_ref().filter(|_| c.protocol == Protocol::V5) {
        // Our CONNACK says Maximum QoS 1 and Retain Available 0; 5.0 section 3.2.2.3.4 and
        // 3.2.2.3.5 refuse a will above them. (3.1.1 has no codes for it: accepted, as before.)
        if w.qos == QoS::ExactlyOnce {
            return Err((Refusal::QosNotSupported, "will QoS 2 is not supported (Maximum QoS is 1)"));
        }
        if w.retain {
            return Err((Refusal::RetainNotSupported, "retained wills are not supported"));
        }
    }
    if c.client_id.is_empty() && !c.clean_start && c.protocol == Protocol::V311 {
        // 5.0 allows it: the assigned id, sent back in the CONNACK, resumes the session later.
        return Err((Refusal::ClientIdInvalid, "empty client id with a persistent session"));
    }
    if c.client_id.len() > 256 || c.client_id.chars().any(char::is_control) {
        return Err((Refusal::ClientIdInvalid, "client id too long or with control characters"));
    }
    let client_id = if c.client_id.is_empty() {
        format!("strata-{:016x}", rand::random::<u64>())
    } else {
        c.client_id.clone()
    };
    let username = c.username.as_deref().filter(|u| !u.is_empty());
    let device = match (cert_device, username) {
        (Some(cn), Some(u)) if u != cn => {
            return Err((Refusal::NotAuthorized, "username differs from the certificate's CN"))
        }
        (Some(cn), _) => cn.to_owned(),
        (None, Some(u)) => u.to_owned(),
        (None, None) => client_id.clone(),
    };
    if !valid_device_id(&device) {
        return Err((Refusal::ClientIdInvalid, "device id is not a valid topic level"));
    }
    if cert_device.is_none() {
        // A registered device must present its own password, whatever `auth.enabled` says.
        let password = c.password.clone();
        let b = broker.clone();
        let dev = device.clone();
        let check = tokio::task::spawn_blocking(move || {
            b.devices.check(&dev, password.as_deref().map(str::as_bytes))
        })
        .await;
        match check {
            Ok(Check::Accepted) => return Ok((Identity { client_id, device }, None)),
            Ok(Check::Refused) => {
                return Err((Refusal::BadCredentials, "wrong password for a registered device"))
            }
            Ok(Check::Unknown) if broker.config.require_device_credentials => {
                return Err((
                    Refusal::NotAuthorized,
                    "device not registered (mqtt.require_device_credentials)",
                ))
            }
            Ok(Check::Unknown) => {}
            Err(_) => return Err((Refusal::ServerUnavailable, "authentication task failed")),
        }
    }
    let mut token = None;
    if cert_device.is_none() && broker.ingest.auth.enabled() {
        let Some(password) = c.password.clone().filter(|p| !p.is_empty()) else {
            return Err((Refusal::BadCredentials, "no password (a token) given"));
        };
        let auth = broker.ingest.auth.clone();
        let db = broker.config.database.clone();
        // The token lookup may re-read the tokens file: off the runtime.
        let r =
            tokio::task::spawn_blocking(move || auth.authorize(Some(&password), Access::Write(&db))).await;
        match r {
            Ok(Ok(grant)) => token = grant.map(|g| g.id),
            Ok(Err(AuthError::Forbidden { .. })) => {
                return Err((Refusal::NotAuthorized, "token may not write the MQTT database"))
            }
            Ok(Err(_)) => return Err((Refusal::BadCredentials, "invalid token")),
            Err(_) => return Err((Refusal::ServerUnavailable, "authentication task failed")),
        }
    }
    Ok((Identity { client_id, device }, token))
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

/// Batches of one connection being written at once: while one waits for its fsync the next
/// is read, decoded and appended, so the WAL's group commit covers both and a device's
/// in-flight window is not idle during the fsync (see `Conn::run`).
const PIPELINE: usize = 2;

/// What an engine write of a batch returned: per message, why it was dead-lettered.
type Written = Result<Result<Vec<Option<String>>, super::BatchError>, tokio::task::JoinError>;

/// A batch handed to the engine and not answered yet.
struct PendingStore {
    /// The engine write; `None` when nothing of the batch is written (all refused by the ACL).
    write: Option<tokio::task::JoinHandle<Result<Vec<Option<String>>, super::BatchError>>>,
    /// The PUBACKs to send once written, in order.
    acks: Vec<(u16, Ack)>,
    /// For each message written: its PUBACK's index in `acks` (QoS 1), to report a dead letter.
    ack_of: Vec<Option<usize>>,
}

impl Conn {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        keep_alive: Option<Duration>,
        pending: &mut VecDeque<Command>,
        rx: &mut tokio::sync::mpsc::Receiver<Command>,
        kicked: &tokio::sync::Notify,
        presence: &super::status::Presence,
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
    async fn fill_now<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> Option<Result<(), ReadError>> {
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
    fn violation(&self, close: Close, why: &'static str) -> Step {
        MqttMetrics::inc(&self.broker.metrics.protocol_errors);
        tracing::info!(client_id = %self.id.client_id, device = %self.id.device, reason = why, "MQTT protocol error; closing");
        Step::End(EndReason::Protocol(close, why))
    }

    /// Replaces a 5.0 topic alias by its topic, or records a new one (section 3.3.2.3.4).
    fn resolve_alias(&mut self, p: &mut InPublish) -> Result<(), Step> {
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
    fn parse_buffered(&mut self, publishes: &mut Vec<InPublish>, hold: bool) -> Step {
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
    fn subscribe(&self, filter: &str, qos: QoS) -> SubCode {
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

    /// Stores a batch of PUBLISHes; returns the PUBACKs to send, in order. An error closes
    /// the connection without acknowledging anything of the batch.
    async fn store(&mut self, publishes: Vec<InPublish>, sync: bool) -> Result<Vec<(u16, Ack)>, EndReason> {
        let pending = self.start_store(publishes, sync).await?;
        self.finish_store(pending).await
    }

    /// Hands a batch of PUBLISHes to the engine (on the blocking pool) and returns at once
    /// with what is needed to answer them: [`Conn::finish_store`] waits for the write. The
    /// rate limit and the write-memory budget are waited for here, so a slowed connection
    /// reads nothing meanwhile.
    /// `sync`: wait for the fsync even if every message is QoS 0 (a Last Will).
    async fn start_store(
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
    async fn finish_store(&self, pending: PendingStore) -> Result<Vec<(u16, Ack)>, EndReason> {
        let PendingStore { write, acks, ack_of } = pending;
        let written = match write {
            Some(w) => Some(w.await),
            None => None,
        };
        self.answer(acks, ack_of, written)
    }

    /// The PUBACKs of a batch once its write (if any) returned.
    fn answer(
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
    async fn complete_oldest(&mut self, inflight: &mut VecDeque<PendingStore>) -> Result<(), EndReason> {
        let Some(pending) = inflight.pop_front() else { return Ok(()) };
        let acks = self.finish_store(pending).await?;
        self.queue_pubacks(&acks);
        Ok(())
    }

    fn queue_pubacks(&mut self, acks: &[(u16, Ack)]) {
        for (pkid, ack) in acks {
            self.writer.puback(*pkid, ack, &mut self.out);
        }
    }

    /// Before the connection ends: waits for every batch in flight, so no write outlives its
    /// connection, and sends the PUBACKs that may still go: with `ack` false (a batch before
    /// these failed) none, else those up to the first batch that fails.
    async fn settle<S: AsyncWrite + Unpin>(
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

    fn send_command(&mut self, c: Command) {
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

    /// Publishes the Last Will as a PUBLISH of its device: through the same ACL (checked at
    /// CONNECT already; again here for wills restored from the sessions file, which an older
    /// version accepted unchecked), stored like a message (bad payloads dead-lettered). A will
    /// never reaches command subscribers: commands come from the HTTP command endpoint only.
    /// Returns whether it was stored.
    async fn publish_will(&mut self, will: &Will) -> bool {
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

/// Waits for the write of the oldest batch in flight (cancel-safe: the write goes on).
/// `None` when that batch writes nothing.
async fn wait_oldest(inflight: &mut VecDeque<PendingStore>) -> Option<Written> {
    match inflight.front_mut().and_then(|p| p.write.as_mut()) {
        Some(w) => Some(w.await),
        None => None,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rumqttc::mqttbytes::v4::{self, ConnectReturnCode, Packet, Publish};
    use rumqttc::v5::mqttbytes::v5;
    use rumqttc::v5::mqttbytes::QoS as V5QoS;

    use super::*;

    fn connect_bytes(id: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        v4::Connect::new(id).write(&mut b).unwrap();
        b.to_vec()
    }

    fn connect5_bytes(id: &str, props: Option<v5::ConnectProperties>) -> Vec<u8> {
        let mut b = BytesMut::new();
        v5::Connect { keep_alive: 30, client_id: id.into(), clean_start: true, properties: props }
            .write(&None, &None, &mut b)
            .unwrap();
        b.to_vec()
    }

    fn publish5_bytes(
        topic: &str,
        pkid: u16,
        payload: &str,
        props: Option<v5::PublishProperties>,
    ) -> Vec<u8> {
        let mut p = v5::Publish::new(topic, V5QoS::AtLeastOnce, payload.to_owned(), props);
        p.pkid = pkid;
        let mut b = BytesMut::new();
        p.write(&mut b).unwrap();
        b.to_vec()
    }

    /// What the server wrote must itself be well-formed MQTT of the connection's version.
    fn parses(out: &[u8], protocol: Protocol) -> bool {
        let mut b = BytesMut::from(out);
        while !b.is_empty() {
            let ok = match protocol {
                Protocol::V311 => v4::read(&mut b, 1 << 20).is_ok(),
                Protocol::V5 => v5::Packet::read(&mut b, None).is_ok(),
            };
            if !ok {
                return false;
            }
        }
        true
    }

    fn v5_packets(out: &[u8]) -> Vec<v5::Packet> {
        let mut b = BytesMut::from(out);
        let mut packets = Vec::new();
        while let Ok(p) = v5::Packet::read(&mut b, None) {
            packets.push(p);
        }
        packets
    }

    fn run(broker: &Arc<Broker>, input: Vec<u8>) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(feed_for_test(broker.clone(), Bytes::from(input)))
    }

    #[test]
    fn publish_batch_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let mut input = connect_bytes("dev1");
        for i in 1..=3u16 {
            let mut p = Publish::new("telemetry/dev1/m", QoS::AtLeastOnce, format!("m v={i} {i}"));
            p.pkid = i;
            let mut b = BytesMut::new();
            p.write(&mut b).unwrap();
            input.extend_from_slice(&b);
        }
        let out = run(&broker, input);
        let mut b = BytesMut::from(&out[..]);
        let mut packets = Vec::new();
        while let Ok(p) = v4::read(&mut b, 1 << 20) {
            packets.push(p);
        }
        assert!(
            matches!(packets[0], Packet::ConnAck(ref a) if a.code == ConnectReturnCode::Success),
            "{packets:?}"
        );
        let acks: Vec<u16> = packets
            .iter()
            .filter_map(|p| if let Packet::PubAck(a) = p { Some(a.pkid) } else { None })
            .collect();
        assert_eq!(acks, vec![1, 2, 3]);
        assert_eq!(
            broker.metrics.batches.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "one engine write for the three"
        );
    }

    /// A batch of QoS 0 messages is written without waiting for an fsync (nothing was
    /// acknowledged); one holding a QoS 1 message waits for its own.
    #[test]
    fn qos0_batches_skip_the_fsync_and_qos1_batches_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let batch = |qos: QoS, pkid: u16| {
            let mut input = connect_bytes("dev1");
            let mut p = Publish::new("telemetry/dev1/m", qos, format!("m v={pkid} {pkid}"));
            p.pkid = pkid;
            let mut b = BytesMut::new();
            p.write(&mut b).unwrap();
            input.extend_from_slice(&b);
            input
        };
        let wal = &broker.ingest.engine.stats().wal;
        let before = wal.fsyncs();
        for _ in 0..4 {
            run(&broker, batch(QoS::AtMostOnce, 0));
        }
        let stored = broker.metrics.batches.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stored, 4, "four connections, one batch each");
        // At most the engine's periodic sync (once a second) ran meanwhile.
        assert!(wal.fsyncs() - before <= 1, "QoS 0 batches fsynced: {} -> {}", before, wal.fsyncs());
        let before = wal.fsyncs();
        run(&broker, batch(QoS::AtLeastOnce, 1));
        assert!(wal.fsyncs() > before, "a QoS 1 batch is acknowledged before its fsync");
    }

    /// Answers go out in the order of the packets even with batches in flight: a PINGRESP or
    /// SUBACK follows the PUBACKs of every PUBLISH before it and precedes those after it.
    #[test]
    fn answers_keep_packet_order_across_pipelined_batches() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let mut input = connect_bytes("dev1");
        let publish = |input: &mut Vec<u8>, pkids: std::ops::RangeInclusive<u16>| {
            for i in pkids {
                // Padded so that the reads come in pieces and batches overlap.
                let line = format!("m,n=x v={i},pad=\"{:060}\" {i}", 0);
                let mut p = Publish::new("telemetry/dev1/m", QoS::AtLeastOnce, line);
                p.pkid = i;
                let mut b = BytesMut::new();
                p.write(&mut b).unwrap();
                input.extend_from_slice(&b);
            }
        };
        publish(&mut input, 1..=600);
        input.extend_from_slice(&[0xC0, 0]); // PINGREQ
        publish(&mut input, 601..=1200);
        let mut b = BytesMut::new();
        let mut sub = v4::Subscribe::new("commands/dev1/#", QoS::AtLeastOnce);
        sub.pkid = 9;
        sub.write(&mut b).unwrap();
        input.extend_from_slice(&b);
        publish(&mut input, 1201..=1300);
        let out = run(&broker, input);
        let mut b = BytesMut::from(&out[..]);
        let mut order = Vec::new();
        while let Ok(p) = v4::read(&mut b, 1 << 20) {
            match p {
                Packet::ConnAck(_) => {}
                Packet::PubAck(a) => order.push(format!("{}", a.pkid)),
                Packet::PingResp => order.push("ping".into()),
                Packet::SubAck(_) => order.push("sub".into()),
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut want: Vec<String> = (1..=600).map(|i| i.to_string()).collect();
        want.push("ping".into());
        want.extend((601..=1200).map(|i| i.to_string()));
        want.push("sub".into());
        want.extend((1201..=1300).map(|i| i.to_string()));
        assert_eq!(order, want);
        let batches = broker.metrics.batches.load(std::sync::atomic::Ordering::Relaxed);
        assert!(batches >= 3, "split at the PINGREQ and the SUBSCRIBE: {batches} batches");
    }

    /// 5.0 in process: CONNACK properties, a topic alias, PUBACK codes for a stored, a denied
    /// and a dead-lettered message, and DISCONNECT 0x9B for QoS 2.
    #[test]
    fn v5_connection_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let mut input = connect5_bytes("", None);
        let alias = |a| Some(v5::PublishProperties { topic_alias: Some(a), ..Default::default() });
        input.extend(publish5_bytes("telemetry/strata/m", 1, "m v=1 1", alias(3)));
        input.extend(publish5_bytes("", 2, "m v=2 2", alias(3)));
        input.extend(publish5_bytes("telemetry/other/m", 3, "m v=3 3", None));
        input.extend(publish5_bytes("telemetry/strata/m", 4, "not line protocol", None));
        let mut q2 = v5::Publish::new("telemetry/strata/m", V5QoS::ExactlyOnce, "m v=5 5", None);
        q2.pkid = 5;
        let mut b = BytesMut::new();
        q2.write(&mut b).unwrap();
        input.extend_from_slice(&b);
        let out = run(&broker, input);
        let packets = v5_packets(&out);
        let v5::Packet::ConnAck(ack) = &packets[0] else { panic!("{packets:?}") };
        assert_eq!(ack.code, v5::ConnectReturnCode::Success);
        let props = ack.properties.as_ref().unwrap();
        let assigned = props.assigned_client_identifier.clone().expect("an assigned client id");
        assert!(assigned.starts_with("strata-"), "{assigned}");
        assert_eq!(props.max_qos, Some(1));
        assert_eq!(props.retain_available, Some(0));
        assert_eq!(props.topic_alias_max, Some(TOPIC_ALIAS_MAX));
        assert_eq!(props.receive_max, Some(256));
        let acks: Vec<(u16, v5::PubAckReason)> = packets
            .iter()
            .filter_map(|p| if let v5::Packet::PubAck(a) = p { Some((a.pkid, a.reason)) } else { None })
            .collect();
        // The device is the assigned id, so "telemetry/strata/m" is another device's topic:
        // all four are refused by the ACL (the aliased one included), in order.
        assert!(acks.iter().all(|(_, r)| *r == v5::PubAckReason::NotAuthorized), "{acks:?}");
        assert_eq!(acks.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert!(
            matches!(packets.last(), Some(v5::Packet::Disconnect(d)) if d.reason_code == v5::DisconnectReasonCode::QoSNotSupported),
            "{packets:?}"
        );
    }

    /// 5.0 with a named client: stored, dead-lettered (0x00 with a reason string), aliased.
    #[test]
    fn v5_puback_codes_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let mut input = connect5_bytes("d5", None);
        let alias = |a| Some(v5::PublishProperties { topic_alias: Some(a), ..Default::default() });
        input.extend(publish5_bytes("telemetry/d5/m", 1, "m v=1 1", alias(3)));
        input.extend(publish5_bytes("", 2, "m v=2 2", alias(3)));
        input.extend(publish5_bytes("telemetry/other/m", 3, "m v=3 3", None));
        input.extend(publish5_bytes("telemetry/d5/m", 4, "not line protocol", None));
        input.extend(publish5_bytes("", 5, "m v=5 5", alias(4)));
        let out = run(&broker, input);
        let packets = v5_packets(&out);
        let acks: Vec<(u16, v5::PubAckReason, Option<String>)> = packets
            .iter()
            .filter_map(|p| match p {
                v5::Packet::PubAck(a) => {
                    Some((a.pkid, a.reason, a.properties.as_ref().and_then(|p| p.reason_string.clone())))
                }
                _ => None,
            })
            .collect();
        assert_eq!(acks.len(), 4, "{packets:?}");
        assert_eq!((acks[0].0, acks[0].1), (1, v5::PubAckReason::Success));
        assert_eq!((acks[1].0, acks[1].1), (2, v5::PubAckReason::Success), "the alias resolved");
        assert_eq!((acks[2].0, acks[2].1), (3, v5::PubAckReason::NotAuthorized));
        assert_eq!((acks[3].0, acks[3].1), (4, v5::PubAckReason::Success));
        assert!(acks[3].2.as_deref().is_some_and(|r| r.starts_with("dead-lettered")), "{acks:?}");
        assert!(
            matches!(packets.last(), Some(v5::Packet::Disconnect(d)) if d.reason_code == v5::DisconnectReasonCode::ProtocolError),
            "an alias never set: {packets:?}"
        );
        assert_eq!(broker.dead_letters.list(0, 10).len(), 1);
    }

    /// A connection past `mqtt.max_connections` gets the busy CONNACK of its own protocol after
    /// its CONNECT (a large one from its fixed header); anything else gets nothing.
    #[test]
    fn refused_connections_get_the_busy_connack() {
        let refuse = |input: Vec<u8>| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let (client, mut server) = tokio::io::duplex(64 * 1024);
                let task = tokio::spawn(async move { refuse_busy(&mut server).await });
                let (mut rd, mut wr) = tokio::io::split(client);
                wr.write_all(&input).await.unwrap();
                let mut out = Vec::new();
                rd.read_to_end(&mut out).await.unwrap();
                // The client closes once refused (else the server would linger 1 s for it).
                drop((rd, wr));
                (task.await.unwrap(), out)
            })
        };
        assert_eq!(refuse(connect_bytes("x")), (true, vec![0x20, 0x02, 0x00, 0x03]));
        let (answered, out) = refuse(connect5_bytes("x", None));
        assert!(answered);
        assert!(
            matches!(&v5_packets(&out)[..], [v5::Packet::ConnAck(a)] if a.code == v5::ConnectReturnCode::QuotaExceeded),
            "{out:?}"
        );
        // A CONNECT over the 4 KiB read for refusals: answered from its first bytes.
        let mut big = v4::Connect::new("big");
        big.set_login("u", "p".repeat(REFUSED_MAX_CONNECT));
        let mut b = BytesMut::new();
        big.write(&mut b).unwrap();
        assert_eq!(refuse(b.to_vec()), (true, vec![0x20, 0x02, 0x00, 0x03]));
        let mut publish = BytesMut::new();
        Publish::new("telemetry/x/m", QoS::AtMostOnce, "m v=1 1").write(&mut publish).unwrap();
        assert_eq!(refuse(publish.to_vec()), (false, vec![]), "not a CONNECT: closed unanswered");
        let mut level3 = connect_bytes("x");
        level3[8] = 3;
        assert_eq!(refuse(level3), (false, vec![]));
    }

    /// Fuzz finding (`mqtt_packets`, the first input it stopped at): a 5.0 UNSUBSCRIBE with
    /// reserved flags 0101 and no topic filter was answered with an UNSUBACK without reason
    /// codes, itself malformed. It is a malformed packet: DISCONNECT 0x81, nothing else.
    #[test]
    fn unsubscribe_with_reserved_flags_and_no_filter_is_malformed_regression() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let mut input = connect5_bytes("u5", None);
        input.extend_from_slice(&[0xa5, 0x03, 0x04, 0xc3, 0x00]);
        input.extend_from_slice(&[0xc0, 0x00]); // a PINGREQ that must not be answered
        let out = run(&broker, input);
        let packets = v5_packets(&out);
        assert!(
            matches!(&packets[..], [v5::Packet::ConnAck(_), v5::Packet::Disconnect(d)] if d.reason_code == v5::DisconnectReasonCode::MalformedPacket),
            "{packets:?}"
        );
        // 3.1.1: closed, nothing answered after the CONNACK.
        for bad in [
            &[0xa2u8, 0x02, 0x00, 0x01][..],
            &[0xa0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],
            &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01],
        ] {
            let mut input = connect_bytes("u4");
            input.extend_from_slice(bad);
            input.extend_from_slice(&[0xc0, 0x00]);
            assert_eq!(run(&broker, input), vec![0x20, 0x02, 0x00, 0x00], "{bad:02x?}");
        }
    }

    /// A Last Will on a topic the ACL refuses the device is refused at CONNECT (3.1.1 0x05,
    /// 5.0 0x87); one on its own telemetry topic is accepted.
    #[test]
    fn wills_pass_the_publish_acl_at_connect() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let with_will = |topic: &str| {
            let mut c = v4::Connect::new("w1");
            c.last_will = Some(v4::LastWill::new(topic, "x", QoS::AtMostOnce, false));
            let mut b = BytesMut::new();
            c.write(&mut b).unwrap();
            run(&broker, b.to_vec())
        };
        assert_eq!(with_will("commands/w2/reboot"), vec![0x20, 0x02, 0x00, 0x05]);
        assert_eq!(with_will("telemetry/w2/status"), vec![0x20, 0x02, 0x00, 0x05]);
        assert_eq!(with_will("telemetry/w1/status"), vec![0x20, 0x02, 0x00, 0x00]);
    }

    /// A will restored from the sessions file (saved by a version that did not check wills)
    /// passes the PUBLISH ACL when published: one on another device's command or telemetry
    /// topic goes nowhere (no command subscriber gets it), its device's own is stored.
    #[test]
    fn restored_wills_pass_the_publish_acl() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let victim = broker.sessions.attach("d2", "d2", true, 0, 99, 0).unwrap();
        broker.sessions.subscribe("d2", "commands/d2/#", QoS::AtLeastOnce).unwrap();
        let mut rx = victim.rx;
        let publish = |topic: &str| {
            let will = Will {
                topic: topic.into(),
                payload: Bytes::from_static(b"w v=1i 1"),
                qos: QoS::AtLeastOnce,
                retain: false,
                delay_secs: 0,
            };
            let id = Identity { client_id: "d1".into(), device: "d1".into() };
            rt.block_on(async { will_conn(broker.clone(), id).publish_will(&will).await })
        };
        assert!(!publish("commands/d2/reboot"));
        assert!(!publish("telemetry/d2/w"));
        assert!(rx.try_recv().is_err(), "a will reached another device's command subscriber");
        assert!(publish("telemetry/d1/w"));
        let denied = broker.metrics.acl_denied.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(denied, 2);
    }

    /// A CONNECT announcing more than `mqtt.max_connect_size` is refused from its fixed header.
    #[test]
    fn connect_larger_than_max_connect_size_is_refused_from_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let limit = broker.config.connect_limit();
        let mut c =
            v5::Connect { keep_alive: 5, client_id: "big".into(), clean_start: true, properties: None };
        c.client_id = "b".repeat(10);
        let login = Some(v5::Login::new("u", "p".repeat(limit)));
        let mut b = BytesMut::new();
        c.write(&None, &login, &mut b).unwrap();
        // Only the first bytes: the server must answer without waiting for the rest.
        let out = run(&broker, b[..32].to_vec());
        assert!(
            matches!(&v5_packets(&out)[..], [v5::Packet::ConnAck(a)] if a.code == v5::ConnectReturnCode::PacketTooLarge),
            "{out:?}"
        );
    }

    #[test]
    fn keep_alive_ceiling() {
        assert_eq!(keep_alive(0, 3600), (3600, Some(3600)), "no keep-alive is held to the ceiling");
        assert_eq!(keep_alive(3601, 3600), (3600, Some(3600)));
        assert_eq!(keep_alive(u16::MAX, 60), (60, Some(60)));
        assert_eq!(keep_alive(3600, 3600), (3600, None), "the client's own value stands");
        assert_eq!(keep_alive(30, 3600), (30, None));
    }

    /// A 5.0 client asking for keep-alive 0 (or more than `mqtt.max_keep_alive`) is told the
    /// ceiling in CONNACK's Server Keep Alive; one within it is not told anything.
    #[test]
    fn server_keep_alive_in_connack() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        let connack = |keep_alive: u16| {
            let mut b = BytesMut::new();
            v5::Connect { keep_alive, client_id: "ka".into(), clean_start: true, properties: None }
                .write(&None, &None, &mut b)
                .unwrap();
            match v5_packets(&run(&broker, b.to_vec())).first() {
                Some(v5::Packet::ConnAck(a)) => a.properties.as_ref().and_then(|p| p.server_keep_alive),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(connack(0), Some(3600));
        assert_eq!(connack(7200), Some(3600));
        assert_eq!(connack(30), None);
        assert_eq!(connack(3600), None);
    }

    #[test]
    fn unsupported_levels_get_the_right_connack() {
        let dir = tempfile::tempdir().unwrap();
        let broker = super::super::broker_for_tests(dir.path()).unwrap();
        // Level 3 (MQTT 3.1): the 3.1.1-shaped CONNACK 0x01.
        let mut c = connect_bytes("x");
        c[8] = 3;
        let out = run(&broker, c);
        assert_eq!(out, vec![0x20, 0x02, 0x00, 0x01]);
        // Level 6: a 5.0 CONNACK 0x84.
        let mut c = connect5_bytes("x", None);
        c[8] = 6;
        let out = run(&broker, c);
        assert!(
            matches!(&v5_packets(&out)[..], [v5::Packet::ConnAck(a)] if a.code == v5::ConnectReturnCode::UnsupportedProtocolVersion),
            "{out:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Arbitrary bytes, alone or after a valid CONNECT, never panic the connection and
        /// never make it write malformed packets.
        #[test]
        fn arbitrary_bytes_never_panic(junk in proptest::collection::vec(any::<u8>(), 0..512), after_connect in any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let broker = super::super::broker_for_tests(dir.path()).unwrap();
            let mut input = if after_connect { connect_bytes("p") } else { Vec::new() };
            input.extend_from_slice(&junk);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let out = rt.block_on(feed_for_test(broker, Bytes::from(input)));
            prop_assert!(parses(&out, Protocol::V311), "{out:?}");
        }

        /// The same over 5.0: arbitrary bytes after a 5.0 CONNECT (with properties), or
        /// arbitrary 5.0-looking packets (a valid fixed header and property length, random
        /// body), never panic and every answer is a well-formed 5.0 packet.
        #[test]
        fn arbitrary_bytes_never_panic_v5(
            junk in proptest::collection::vec(any::<u8>(), 0..512),
            kind in 0u8..16,
            props in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let broker = super::super::broker_for_tests(dir.path()).unwrap();
            let p = props.then(|| v5::ConnectProperties {
                session_expiry_interval: Some(10),
                receive_maximum: Some(2),
                max_packet_size: Some(64),
                topic_alias_max: Some(4),
                ..v5::ConnectProperties::new()
            });
            let mut input = connect5_bytes("p5", p);
            // Half the time frame the junk as one packet of a random type, so it gets past
            // the fixed header into the 5.0 packet parsers.
            if kind & 1 == 1 && junk.len() < 128 {
                input.push((kind << 4) | (junk.first().copied().unwrap_or(0) & 0x0f));
                input.push(junk.len() as u8);
            }
            input.extend_from_slice(&junk);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let out = rt.block_on(feed_for_test(broker, Bytes::from(input)));
            prop_assert!(parses(&out, Protocol::V5), "{out:?}");
        }
    }
}
