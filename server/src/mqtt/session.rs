//! One MQTT connection, from CONNECT to close.
//!
//! The loop: parse every complete packet already buffered (rumqttc's codec frames them and
//! refuses a packet larger than `mqtt.max_packet_size` from its fixed header, before its body
//! is read); collect the PUBLISHes (up to `mqtt.max_inflight`) and write them as one batch;
//! send their PUBACKs (in order) only after `Engine::write` returned, i.e. once durable; then
//! wait for more bytes, a command to deliver, the keep-alive deadline or shutdown. While a
//! batch is being written, or the device's token bucket is empty, or write memory is
//! exhausted, the socket is not read: TCP pushes back to the device and nothing buffers
//! beyond one read buffer per connection.
//!
//! Anything malformed, a second CONNECT, a QoS 2 PUBLISH (not supported: MQTT 3.1.1 has no
//! way to refuse it other than closing), or a packet only a server sends closes the
//! connection; the good messages parsed before it are stored and acknowledged first.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    self, ConnAck, ConnectReturnCode, Packet, PingResp, PubAck, Publish, SubAck, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::acl::PublishVerdict;
use super::devices::Check;
use super::metrics::{Backpressure, MqttMetrics};
use super::rate::TokenBucket;
use super::sessions::{Attachment, Command};
use super::topic::valid_device_id;
use super::{Broker, Message};
use crate::auth::{Access, AuthError};

/// A write to the socket that takes longer than this closes the connection (a device that
/// stops reading must not hold a task and its buffers forever).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause for the rate limit in one go.
const MAX_RATE_PAUSE: Duration = Duration::from_secs(10);
/// How many times a batch waits for write memory (each wait is `limits.write_memory_wait`)
/// before the connection is closed unacknowledged.
const WRITE_MEMORY_TRIES: u32 = 30;

/// Why a connection ended; the device status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Disconnect,
    KeepAlive,
    ConnectionLost,
    ProtocolError,
    TakenOver,
    Shutdown,
    StorageError,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Disconnect => "disconnect",
            EndReason::KeepAlive => "keepalive_timeout",
            EndReason::ConnectionLost => "connection_lost",
            EndReason::ProtocolError => "protocol_error",
            EndReason::TakenOver => "taken_over",
            EndReason::Shutdown => "shutdown",
            EndReason::StorageError => "storage_error",
        }
    }

    /// The Last Will is published unless the client said goodbye (or the server is stopping).
    fn publishes_will(self) -> bool {
        !matches!(self, EndReason::Disconnect | EndReason::Shutdown)
    }
}

/// Reads until a whole packet is buffered and parses it.
#[derive(Debug)]
enum ReadError {
    Closed,
    Io,
    Codec(CodecError),
}

fn parse(buf: &mut BytesMut, max: usize) -> Result<Option<Packet>, CodecError> {
    match v4::read(buf, max) {
        Ok(p) => Ok(Some(p)),
        Err(CodecError::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<(), ReadError> {
    buf.reserve(8 * 1024);
    match stream.read_buf(buf).await {
        Ok(0) => Err(ReadError::Closed),
        Ok(_) => Ok(()),
        Err(_) => Err(ReadError::Io),
    }
}

/// The protocol level of a CONNECT at the start of `buf`, if one is buffered there (to answer
/// MQTT 5 clients with "unacceptable protocol version" rather than misparse them as 3.1.1).
fn connect_protocol_level(buf: &[u8]) -> Option<u8> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    let mut i = 1;
    while buf.get(i)? & 0x80 != 0 {
        i += 1;
        if i > 4 {
            return None;
        }
    }
    // Remaining length ends at i; then the protocol name (2-byte length + "MQTT"), then the level.
    let name_len = usize::from(u16::from_be_bytes([*buf.get(i + 1)?, *buf.get(i + 2)?]));
    buf.get(i + 3 + name_len).copied()
}

async fn write_out<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut BytesMut) -> bool {
    if out.is_empty() {
        return true;
    }
    let ok = matches!(tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(out)).await, Ok(Ok(())));
    out.clear();
    ok
}

fn connack(code: ConnectReturnCode, session_present: bool, out: &mut BytesMut) -> Result<(), CodecError> {
    ConnAck::new(code, session_present).write(out).map(|_| ())
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
    let metrics = &broker.metrics.mqtt;
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::with_capacity(1024);

    // CONNECT first, within the connect timeout.
    let first = tokio::time::timeout(broker.config.connect_timeout.get(), async {
        loop {
            if connect_protocol_level(&buf).is_some_and(|l| l != 4) {
                return Err(ReadError::Codec(CodecError::InvalidProtocolLevel(5)));
            }
            match parse(&mut buf, max) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => fill(&mut stream, &mut buf).await?,
                Err(e) => return Err(ReadError::Codec(e)),
            }
        }
    })
    .await;
    let connect = match first {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Err(ReadError::Codec(CodecError::InvalidProtocolLevel(_) | CodecError::InvalidProtocol))) => {
            // 3.1.1 section 3.2.2.3: answer 0x01 to a protocol level we do not speak.
            let _ = connack(ConnectReturnCode::RefusedProtocolVersion, false, &mut out);
            write_out(&mut stream, &mut out).await;
            MqttMetrics::inc(&metrics.connections_refused);
            tracing::debug!(%peer, "MQTT connection refused: unsupported protocol version (only 3.1.1)");
            return;
        }
        Ok(Ok(other)) => {
            MqttMetrics::inc(&metrics.protocol_errors);
            tracing::debug!(%peer, packet = ?packet_name(&other), "MQTT connection closed: first packet is not CONNECT");
            return;
        }
        Ok(Err(e)) => {
            if let ReadError::Codec(e) = e {
                MqttMetrics::inc(&metrics.protocol_errors);
                tracing::debug!(%peer, error = %e, "MQTT connection closed: malformed CONNECT");
            }
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "MQTT connection closed: no CONNECT within mqtt.connect_timeout");
            return;
        }
    };

    let identity = match authenticate(&broker, &connect, cert_device.as_deref()).await {
        Ok(id) => id,
        Err((code, why)) => {
            let _ = connack(code, false, &mut out);
            write_out(&mut stream, &mut out).await;
            MqttMetrics::inc(&metrics.connections_refused);
            tracing::info!(%peer, client_id = %connect.client_id, reason = why, "MQTT connection refused");
            return;
        }
    };
    let conn_id = broker.next_conn_id();
    let attachment = match broker.sessions.attach(&identity.client_id, connect.clean_session, conn_id) {
        Ok(a) => a,
        Err(_) => {
            let _ = connack(ConnectReturnCode::ServiceUnavailable, false, &mut out);
            write_out(&mut stream, &mut out).await;
            MqttMetrics::inc(&metrics.connections_refused);
            tracing::warn!(%peer, client_id = %identity.client_id, "MQTT connection refused: too many sessions");
            return;
        }
    };
    let presence = broker.status.connected(&identity.device, &identity.client_id, conn_id);
    let _ = connack(ConnectReturnCode::Success, attachment.session_present, &mut out);
    MqttMetrics::inc(&metrics.connections);
    metrics.connections_active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        %peer, client_id = %identity.client_id, device = %identity.device,
        keep_alive = connect.keep_alive, clean_session = connect.clean_session,
        session_present = attachment.session_present, "MQTT client connected"
    );

    let mut conn = Conn {
        broker: broker.clone(),
        id: identity,
        max,
        buf,
        out,
        unacked: BTreeMap::new(),
        next_pkid: 1,
        bucket: (broker.config.rate_limit > 0)
            .then(|| TokenBucket::new(broker.config.rate_limit, broker.config.rate_burst, Instant::now())),
    };
    let keep_alive =
        (connect.keep_alive > 0).then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let Attachment { queued, mut rx, kicked, .. } = attachment;
    let mut pending: VecDeque<Command> = queued;
    let reason = conn.run(&mut stream, keep_alive, &mut pending, &mut rx, &kicked, &presence).await;

    // Unacknowledged and undelivered QoS 1 commands go back to a persistent session.
    let mut unacked: Vec<Command> = std::mem::take(&mut conn.unacked).into_values().collect();
    unacked.extend(pending.into_iter().filter(|c| c.qos == QoS::AtLeastOnce));
    broker.sessions.detach(&conn.id.client_id, conn_id, unacked, rx);
    let mut will_published = false;
    if reason.publishes_will() {
        if let Some(will) = &connect.last_will {
            will_published = conn.publish_will(will).await;
        }
    }
    broker.status.disconnected(&conn.id.device, &presence, reason.as_str(), will_published);
    metrics.connections_active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    if reason == EndReason::KeepAlive {
        MqttMetrics::inc(&metrics.keepalive_timeouts);
    }
    tracing::info!(%peer, client_id = %conn.id.client_id, device = %conn.id.device, reason = reason.as_str(), will_published, "MQTT client disconnected");
    let _ = stream.shutdown().await;
}

/// Checks the credentials: a verified client certificate; else a registered device's own
/// password (`strata device add`); else (auth on) a token with write access to
/// `mqtt.database` as the password. The device id is the certificate's CN, else
/// the username, else the client id.
async fn authenticate(
    broker: &Arc<Broker>,
    c: &v4::Connect,
    cert_device: Option<&str>,
) -> Result<Identity, (ConnectReturnCode, &'static str)> {
    if c.client_id.is_empty() && !c.clean_session {
        return Err((ConnectReturnCode::BadClientId, "empty client id with a persistent session"));
    }
    if c.client_id.len() > 256 || c.client_id.chars().any(char::is_control) {
        return Err((ConnectReturnCode::BadClientId, "client id too long or with control characters"));
    }
    let client_id = if c.client_id.is_empty() {
        format!("strata-{:016x}", rand::random::<u64>())
    } else {
        c.client_id.clone()
    };
    let username = c.login.as_ref().map(|l| l.username.as_str()).filter(|u| !u.is_empty());
    let device = match (cert_device, username) {
        (Some(cn), Some(u)) if u != cn => {
            return Err((ConnectReturnCode::NotAuthorized, "username differs from the certificate's CN"))
        }
        (Some(cn), _) => cn.to_owned(),
        (None, Some(u)) => u.to_owned(),
        (None, None) => client_id.clone(),
    };
    if !valid_device_id(&device) {
        return Err((ConnectReturnCode::BadClientId, "device id is not a valid topic level"));
    }
    if cert_device.is_none() {
        // A registered device must present its own password, whatever `auth.enabled` says.
        let password = c.login.as_ref().map(|l| l.password.clone());
        let b = broker.clone();
        let dev = device.clone();
        let check = tokio::task::spawn_blocking(move || {
            b.devices.check(&dev, password.as_deref().map(str::as_bytes))
        })
        .await;
        match check {
            Ok(Check::Accepted) => return Ok(Identity { client_id, device }),
            Ok(Check::Refused) => {
                return Err((
                    ConnectReturnCode::BadUserNamePassword,
                    "wrong password for a registered device",
                ))
            }
            Ok(Check::Unknown) if broker.config.require_device_credentials => {
                return Err((
                    ConnectReturnCode::NotAuthorized,
                    "device not registered (mqtt.require_device_credentials)",
                ))
            }
            Ok(Check::Unknown) => {}
            Err(_) => return Err((ConnectReturnCode::ServiceUnavailable, "authentication task failed")),
        }
    }
    if cert_device.is_none() && broker.auth.enabled() {
        let Some(password) = c.login.as_ref().map(|l| l.password.clone()).filter(|p| !p.is_empty()) else {
            return Err((ConnectReturnCode::BadUserNamePassword, "no password (a token) given"));
        };
        let auth = broker.auth.clone();
        let db = broker.config.database.clone();
        // The token lookup may re-read the tokens file: off the runtime.
        let r =
            tokio::task::spawn_blocking(move || auth.authorize(Some(&password), Access::Write(&db))).await;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(AuthError::Forbidden { .. })) => {
                return Err((ConnectReturnCode::NotAuthorized, "token may not write the MQTT database"))
            }
            Ok(Err(_)) => return Err((ConnectReturnCode::BadUserNamePassword, "invalid token")),
            Err(_) => return Err((ConnectReturnCode::ServiceUnavailable, "authentication task failed")),
        }
    }
    Ok(Identity { client_id, device })
}

fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

struct Conn {
    broker: Arc<Broker>,
    id: Identity,
    max: usize,
    buf: BytesMut,
    out: BytesMut,
    /// QoS 1 commands sent and not yet acknowledged, by packet id.
    unacked: BTreeMap<u16, Command>,
    next_pkid: u16,
    bucket: Option<TokenBucket>,
}

/// What the parse step found.
enum Step {
    /// Keep going.
    More,
    /// Close after handling what was parsed.
    End(EndReason),
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
        loop {
            // 1. Handle every packet already buffered, and whatever else the socket holds
            //    right now (PUBLISHes as one batch).
            let mut publishes = Vec::new();
            let mut lost = false;
            let step = loop {
                let step = self.parse_buffered(&mut publishes);
                if matches!(step, Step::End(_)) || publishes.len() >= max_inflight {
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
            };
            if !publishes.is_empty() {
                match self.store(publishes).await {
                    Ok(acks) => {
                        for pkid in acks {
                            let _ = PubAck::new(pkid).write(&mut self.out);
                        }
                    }
                    Err(reason) => return reason,
                }
            }
            // Commands waiting (queued while offline, or arrived) while the window allows.
            while self.unacked.len() < max_inflight {
                let Some(c) = pending.pop_front() else { break };
                self.send_command(c);
            }
            if !write_out(stream, &mut self.out).await || lost {
                return EndReason::ConnectionLost;
            }
            match step {
                Step::End(r) => return r,
                Step::More => {}
            }
            if !matches!(
                rumqttc::mqttbytes::check(self.buf.iter(), self.max),
                Err(CodecError::InsufficientBytes(_))
            ) {
                continue; // a complete (or malformed) packet is buffered: the batch was full
            }
            // 2. Wait for bytes, a command, the keep-alive deadline, a takeover or shutdown.
            let deadline = keep_alive.map(|k| tokio::time::Instant::from_std(last_rx + k));
            let can_send = self.unacked.len() < max_inflight;
            tokio::select! {
                r = fill(stream, &mut self.buf) => match r {
                    Ok(()) => {
                        last_rx = Instant::now();
                        presence.touch();
                    }
                    Err(_) => return EndReason::ConnectionLost,
                },
                Some(c) = rx.recv(), if can_send => self.send_command(c),
                _ = sleep_until(deadline) => return EndReason::KeepAlive,
                _ = kicked.notified() => return EndReason::TakenOver,
                _ = shutdown.changed() => return EndReason::Shutdown,
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
    /// Measured and lost: a window of two batches per connection being written at once
    /// (reading and writing the next batch while the previous one waits for its fsync). On
    /// the 4-connection loadgen runs it made QoS 1 single-line messages no faster (54 K vs
    /// 62 K msg/s, medians of 3 on a busy machine) and QoS 0 slower (smaller batches): the
    /// WAL's group commit already shares fsyncs across connections.
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

    /// Parses the buffered packets; answers the ones that need no storage at once (into
    /// `out`) and returns the PUBLISHes to store, in order.
    fn parse_buffered(&mut self, publishes: &mut Vec<Publish>) -> Step {
        let metrics = &self.broker.metrics.mqtt;
        let max_inflight = self.broker.config.max_inflight;
        while publishes.len() < max_inflight {
            let packet = match parse(&mut self.buf, self.max) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    MqttMetrics::inc(&metrics.protocol_errors);
                    tracing::info!(client_id = %self.id.client_id, device = %self.id.device, error = %e, "MQTT protocol error; closing");
                    return Step::End(EndReason::ProtocolError);
                }
            };
            match packet {
                Packet::Publish(p) => {
                    if p.qos == QoS::ExactlyOnce {
                        MqttMetrics::inc(&metrics.protocol_errors);
                        tracing::info!(client_id = %self.id.client_id, device = %self.id.device, topic = %p.topic, "QoS 2 is not supported; closing");
                        return Step::End(EndReason::ProtocolError);
                    }
                    MqttMetrics::inc(if p.qos == QoS::AtMostOnce {
                        &metrics.messages_qos0
                    } else {
                        &metrics.messages_qos1
                    });
                    publishes.push(p);
                }
                Packet::PubAck(a) => {
                    self.unacked.remove(&a.pkid);
                }
                Packet::PingReq => {
                    let _ = PingResp.write(&mut self.out);
                }
                Packet::Subscribe(s) => {
                    let mut codes = Vec::with_capacity(s.filters.len());
                    for f in &s.filters {
                        if self.broker.acl.subscribe(&self.id.device, &f.path) {
                            // QoS 2 subscriptions are granted QoS 1 (3.1.1 lets the server
                            // downgrade).
                            let qos =
                                if f.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                            self.broker.sessions.subscribe(&self.id.client_id, &f.path, qos);
                            codes.push(SubscribeReasonCode::Success(qos));
                        } else {
                            MqttMetrics::inc(&metrics.acl_denied);
                            tracing::warn!(client_id = %self.id.client_id, device = %self.id.device, filter = %f.path, "SUBSCRIBE refused by the ACL");
                            codes.push(SubscribeReasonCode::Failure);
                        }
                    }
                    let _ = SubAck::new(s.pkid, codes).write(&mut self.out);
                }
                Packet::Unsubscribe(u) => {
                    for t in &u.topics {
                        self.broker.sessions.unsubscribe(&self.id.client_id, t);
                    }
                    let _ = UnsubAck::new(u.pkid).write(&mut self.out);
                }
                Packet::Disconnect => return Step::End(EndReason::Disconnect),
                other => {
                    MqttMetrics::inc(&metrics.protocol_errors);
                    tracing::info!(client_id = %self.id.client_id, packet = packet_name(&other), "unexpected MQTT packet; closing");
                    return Step::End(EndReason::ProtocolError);
                }
            }
        }
        Step::More
    }

    /// Stores a batch of PUBLISHes; returns the packet ids to acknowledge, in order. An error
    /// closes the connection without acknowledging anything of the batch.
    async fn store(&mut self, publishes: Vec<Publish>) -> Result<Vec<u16>, EndReason> {
        let broker = self.broker.clone();
        let metrics = &broker.metrics.mqtt;
        let mut acks = Vec::new();
        let mut messages = Vec::with_capacity(publishes.len());
        for p in publishes {
            if p.qos == QoS::AtLeastOnce {
                acks.push(p.pkid);
            }
            let verdict = broker.acl.publish(&self.id.device, &p.topic);
            let (device, measurement, refused) = match verdict {
                PublishVerdict::Telemetry(m) => (m.device.to_owned(), m.measurement.map(str::to_owned), None),
                PublishVerdict::Denied(why) => {
                    // Acknowledged and dropped (what 3.1.1 brokers do; 3.1.1 has no negative
                    // PUBACK), counted and logged; never stored, not even as a dead letter.
                    MqttMetrics::inc(&metrics.acl_denied);
                    tracing::warn!(client_id = %self.id.client_id, device = %self.id.device, topic = %p.topic, reason = why, "PUBLISH refused by the ACL");
                    continue;
                }
                PublishVerdict::NotTelemetry => (self.id.device.clone(), None, Some("not a telemetry topic")),
            };
            messages.push(Message {
                client_id: self.id.client_id.clone(),
                device,
                measurement,
                topic: p.topic,
                qos: p.qos as u8,
                payload: p.payload,
                refused,
            });
        }
        if messages.is_empty() {
            return Ok(acks);
        }
        if let Some(bucket) = &mut self.bucket {
            let wait = bucket.take(u32::try_from(messages.len()).unwrap_or(u32::MAX), Instant::now());
            if !wait.is_zero() {
                metrics.backpressure(Backpressure::RateLimit);
                tokio::time::sleep(wait.min(MAX_RATE_PAUSE)).await;
            }
        }
        let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
        let mut tries = 0;
        let reservation = loop {
            match broker.write_memory.reserve(bytes * 3 + 4096).await {
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
        let result = tokio::task::spawn_blocking(move || {
            let r = job.write_messages(&messages);
            if let Ok(reasons) = &r {
                job.dead_letter(&messages, reasons);
            }
            drop(reservation);
            r
        })
        .await;
        match result {
            Ok(Ok(_)) => Ok(acks),
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

    fn send_command(&mut self, c: Command) {
        let mut p = Publish::from_bytes(c.topic.clone(), c.qos, c.payload.clone());
        if c.qos == QoS::AtLeastOnce {
            // Next free packet id (1..=65535); the window is far smaller than the id space.
            let mut id = self.next_pkid;
            while self.unacked.contains_key(&id) {
                id = id.checked_add(1).unwrap_or(1);
            }
            self.next_pkid = id.checked_add(1).unwrap_or(1);
            p.pkid = id;
            self.unacked.insert(id, c);
        }
        let _ = p.write(&mut self.out);
    }

    /// Publishes the Last Will: a will on one of the device's telemetry topics is stored like a
    /// message (bad payloads dead-lettered); a will on a command topic is routed to
    /// subscribers. Returns whether it went anywhere.
    async fn publish_will(&mut self, will: &v4::LastWill) -> bool {
        let broker = self.broker.clone();
        MqttMetrics::inc(&broker.metrics.mqtt.wills);
        tracing::info!(client_id = %self.id.client_id, device = %self.id.device, topic = %will.topic, "publishing Last Will");
        if super::topic::command_device(&broker.config.command_prefix, &will.topic).is_some() {
            broker.publish_command(&Command {
                topic: will.topic.clone(),
                payload: will.message.clone(),
                qos: will.qos,
            });
            return true;
        }
        let publish = Publish::from_bytes(will.topic.clone(), QoS::AtMostOnce, will.message.clone());
        self.store(vec![publish]).await.is_ok()
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
    let _ = task.await;
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn connect_bytes(id: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        v4::Connect::new(id).write(&mut b).unwrap();
        b.to_vec()
    }

    /// What the server wrote must itself be well-formed MQTT.
    fn parses(out: &[u8]) -> bool {
        let mut b = BytesMut::from(out);
        while !b.is_empty() {
            if v4::read(&mut b, 1 << 20).is_err() {
                return false;
            }
        }
        true
    }

    #[test]
    fn protocol_level_peek() {
        let mut b = BytesMut::new();
        v4::Connect::new("x").write(&mut b).unwrap();
        assert_eq!(connect_protocol_level(&b), Some(4));
        assert_eq!(connect_protocol_level(&b[..5]), None);
        assert_eq!(connect_protocol_level(&[0x30, 0]), None);
        assert_eq!(connect_protocol_level(&[0x10, 0xff, 0xff, 0xff, 0xff, 0xff]), None);
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
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let out = rt.block_on(feed_for_test(broker.clone(), Bytes::from(input)));
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
            broker.metrics.mqtt.batches.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "one engine write for the three"
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
            prop_assert!(parses(&out), "{out:?}");
        }
    }
}
