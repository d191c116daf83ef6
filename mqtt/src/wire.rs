//! The wire: MQTT 3.1.1 and 5.0 packets read into one set of types, and the server's answers
//! written in the connection's own protocol.
//!
//! Framing and parsing are rumqttc's codecs (`mqttbytes::v4` for 3.1.1, `v5::mqttbytes::v5`
//! for 5.0); this module only translates, so `session.rs` runs one packet loop for both
//! versions. Every reason code the listener sends is chosen here ([`Refusal`] for CONNACK,
//! [`Ack`] for PUBACK, [`SubCode`] for SUBACK, [`Close`] for DISCONNECT): one mapping, in one
//! place. What it is not: a codec (we never parse MQTT by hand, except the two-byte 5.0
//! DISCONNECT below, which rumqttc 0.24 refuses).

use bytes::{BufMut, Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::mqttbytes::{Error as V4Error, QoS};
use rumqttc::v5::mqttbytes::v5;
use rumqttc::v5::mqttbytes::{Error as V5Error, QoS as V5QoS};

/// Which MQTT a connection speaks, from its CONNECT's protocol level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Protocol level 4.
    V311,
    /// Protocol level 5.
    V5,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5.0",
        }
    }
}

/// Session Expiry Interval meaning "the session never expires" (MQTT 5.0 section 3.1.2.11.2);
/// what a 3.1.1 `clean session = false` session gets.
pub const EXPIRY_NEVER: u32 = u32::MAX;

/// The Last Will of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will Delay Interval in seconds (5.0; 0 for 3.1.1).
    pub delay_secs: u32,
}

/// A CONNECT of either version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    pub protocol: Protocol,
    pub client_id: String,
    /// 3.1.1 clean session, 5.0 clean start.
    pub clean_start: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub will: Option<Will>,
    /// Seconds the session outlives the connection: 0 ends it with the connection,
    /// [`EXPIRY_NEVER`] keeps it. 3.1.1: 0 for a clean session, else never.
    pub session_expiry: u32,
    /// The most unacknowledged QoS 1 PUBLISHes the client accepts (5.0; 65535 when absent).
    pub receive_maximum: u16,
    /// The largest packet the client accepts, in bytes (5.0; `None`: no limit but the
    /// protocol's).
    pub max_packet_size: Option<u32>,
    /// Request Problem Information (5.0): when false, no reason strings except on CONNACK,
    /// PUBLISH and DISCONNECT.
    pub problem_info: bool,
    /// Enhanced authentication (5.0), which we do not support.
    pub auth_method: Option<String>,
}

/// A PUBLISH of either version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InPublish {
    /// Empty when a 5.0 topic alias stands for it.
    pub topic: String,
    pub qos: QoS,
    pub pkid: u16,
    pub payload: Bytes,
    pub retain: bool,
    pub topic_alias: Option<u16>,
}

/// A packet from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Connect(Box<ConnectInfo>),
    Publish(InPublish),
    PubAck(u16),
    PingReq,
    Subscribe {
        pkid: u16,
        filters: Vec<(String, QoS)>,
        /// Carries a Subscription Identifier (5.0), which we do not support.
        with_id: bool,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    Disconnect {
        /// 5.0 reason 0x04: publish the Will anyway.
        with_will: bool,
        /// 5.0: a new Session Expiry Interval.
        session_expiry: Option<u32>,
    },
    /// A packet only a server sends, or one of the QoS 2 flow.
    Unexpected(&'static str),
}

/// Why a packet could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("packet of {size} bytes exceeds mqtt.max_packet_size")]
    TooLarge { size: usize },
    #[error("malformed MQTT 3.1.1 packet: {0}")]
    V311(V4Error),
    #[error("malformed MQTT 5.0 packet: {0}")]
    V5(V5Error),
    #[error("topic or filter is not UTF-8")]
    NotUtf8,
    /// The fixed header's flags are not the ones the packet type requires.
    #[error("packet type {packet_type} with reserved flags {flags:#06b}")]
    ReservedFlags { packet_type: u8, flags: u8 },
    /// A SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    #[error("SUBSCRIBE or UNSUBSCRIBE without a topic filter")]
    NoTopicFilter,
}

/// Whether the flags of a fixed header's first byte are the ones its packet type requires
/// (3.1.1 section 2.2.2, 5.0 section 2.1.3): PUBLISH carries its own; PUBREL, SUBSCRIBE and
/// UNSUBSCRIBE must have 0010; every other packet 0000. Anything else is a malformed packet
/// that closes the connection (MQTT-2.2.2-2, MQTT-3.8.1-1, MQTT-3.10.1-1). rumqttc's codecs
/// do not check them, so this runs before they parse.
pub fn flags_ok(byte1: u8) -> bool {
    match byte1 >> 4 {
        3 => true,
        6 | 8 | 10 => byte1 & 0x0f == 0b0010,
        _ => byte1 & 0x0f == 0,
    }
}

fn qos_from_v5(q: V5QoS) -> QoS {
    match q {
        V5QoS::AtMostOnce => QoS::AtMostOnce,
        V5QoS::AtLeastOnce => QoS::AtLeastOnce,
        V5QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos_to_v5(q: QoS) -> V5QoS {
    match q {
        QoS::AtMostOnce => V5QoS::AtMostOnce,
        QoS::AtLeastOnce => V5QoS::AtLeastOnce,
        QoS::ExactlyOnce => V5QoS::ExactlyOnce,
    }
}

/// The protocol level of a CONNECT at the start of `buf`, once enough of it is buffered to
/// tell (so 5.0 clients get the 5.0 codec and others an "unsupported version" CONNACK).
pub fn connect_protocol_level(buf: &[u8]) -> Option<u8> {
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

/// Whether a complete packet (or a malformed or oversized one) is buffered, i.e. reading
/// would not just wait for more bytes.
pub fn packet_buffered(buf: &BytesMut, max: usize) -> bool {
    !matches!(rumqttc::mqttbytes::check(buf.iter(), max), Err(V4Error::InsufficientBytes(_)))
}

/// Reads one packet of `protocol` from `buf`; `Ok(None)` until a whole one is buffered. A
/// packet larger than `max` bytes is refused from its fixed header, before its body arrives.
pub fn read(protocol: Protocol, buf: &mut BytesMut, max: usize) -> Result<Option<Inbound>, WireError> {
    if let Some(&byte1) = buf.first() {
        if !flags_ok(byte1) {
            return Err(WireError::ReservedFlags { packet_type: byte1 >> 4, flags: byte1 & 0x0f });
        }
    }
    match protocol {
        Protocol::V311 => read_v4(buf, max),
        Protocol::V5 => read_v5(buf, max),
    }
}

fn read_v4(buf: &mut BytesMut, max: usize) -> Result<Option<Inbound>, WireError> {
    let p = match v4::read(buf, max) {
        Ok(p) => p,
        Err(V4Error::InsufficientBytes(_)) => return Ok(None),
        Err(V4Error::PayloadSizeLimitExceeded(size)) => return Err(WireError::TooLarge { size }),
        Err(e) => return Err(WireError::V311(e)),
    };
    Ok(Some(match p {
        v4::Packet::Connect(c) => {
            let (username, password) = match c.login {
                Some(l) => (Some(l.username), Some(l.password)),
                None => (None, None),
            };
            Inbound::Connect(Box::new(ConnectInfo {
                protocol: Protocol::V311,
                session_expiry: if c.clean_session { 0 } else { EXPIRY_NEVER },
                client_id: c.client_id,
                clean_start: c.clean_session,
                keep_alive: c.keep_alive,
                username,
                password,
                will: c.last_will.map(|w| Will {
                    topic: w.topic,
                    payload: w.message,
                    qos: w.qos,
                    retain: w.retain,
                    delay_secs: 0,
                }),
                receive_maximum: u16::MAX,
                max_packet_size: None,
                problem_info: false,
                auth_method: None,
            }))
        }
        v4::Packet::Publish(p) => Inbound::Publish(InPublish {
            topic: p.topic,
            qos: p.qos,
            pkid: p.pkid,
            payload: p.payload,
            retain: p.retain,
            topic_alias: None,
        }),
        v4::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Subscribe(s) if s.filters.is_empty() => return Err(WireError::NoTopicFilter),
        v4::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s.filters.into_iter().map(|f| (f.path, f.qos)).collect(),
            with_id: false,
        },
        // MQTT-3.10.3-2: at least one filter (rumqttc checks it for SUBSCRIBE only).
        v4::Packet::Unsubscribe(u) if u.topics.is_empty() => return Err(WireError::NoTopicFilter),
        v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe { pkid: u.pkid, filters: u.topics },
        v4::Packet::Disconnect => Inbound::Disconnect { with_will: false, session_expiry: None },
        v4::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        v4::Packet::PubRec(_) => Inbound::Unexpected("PUBREC"),
        v4::Packet::PubRel(_) => Inbound::Unexpected("PUBREL"),
        v4::Packet::PubComp(_) => Inbound::Unexpected("PUBCOMP"),
        v4::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        v4::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        v4::Packet::PingResp => Inbound::Unexpected("PINGRESP"),
    }))
}

fn read_v5(buf: &mut BytesMut, max: usize) -> Result<Option<Inbound>, WireError> {
    // A DISCONNECT without reason code (remaining length 0) means "normal disconnection"
    // (5.0 section 3.14.2.1), but rumqttc 0.24's `Packet::read` refuses every empty packet but
    // PINGREQ/PINGRESP: answer it here.
    if buf.len() >= 2 && buf[0] == 0xE0 && buf[1] == 0 {
        let _ = buf.split_to(2);
        return Ok(Some(Inbound::Disconnect { with_will: false, session_expiry: None }));
    }
    let p = match v5::Packet::read(buf, Some(max)) {
        Ok(p) => p,
        Err(V5Error::InsufficientBytes(_)) => return Ok(None),
        Err(V5Error::PayloadSizeLimitExceeded { pkt_size, .. }) => {
            return Err(WireError::TooLarge { size: pkt_size })
        }
        Err(e) => return Err(WireError::V5(e)),
    };
    Ok(Some(match p {
        v5::Packet::Connect(c, will, login) => {
            let props = c.properties.unwrap_or_default();
            let will = match will {
                Some(w) => Some(Will {
                    topic: String::from_utf8(w.topic.to_vec()).map_err(|_| WireError::NotUtf8)?,
                    payload: w.message,
                    qos: qos_from_v5(w.qos),
                    retain: w.retain,
                    delay_secs: w.properties.and_then(|p| p.delay_interval).unwrap_or(0),
                }),
                None => None,
            };
            let (username, password) = match login {
                Some(l) => (Some(l.username), Some(l.password)),
                None => (None, None),
            };
            Inbound::Connect(Box::new(ConnectInfo {
                protocol: Protocol::V5,
                client_id: c.client_id,
                clean_start: c.clean_start,
                keep_alive: c.keep_alive,
                username,
                password,
                will,
                // Absent means 0: the session ends with the connection (3.1.2.11.2).
                session_expiry: props.session_expiry_interval.unwrap_or(0),
                receive_maximum: props.receive_maximum.unwrap_or(u16::MAX),
                max_packet_size: props.max_packet_size,
                problem_info: props.request_problem_info != Some(0),
                auth_method: props.authentication_method,
            }))
        }
        v5::Packet::Publish(p) => Inbound::Publish(InPublish {
            topic: String::from_utf8(p.topic.to_vec()).map_err(|_| WireError::NotUtf8)?,
            qos: qos_from_v5(p.qos),
            pkid: p.pkid,
            payload: p.payload,
            retain: p.retain,
            topic_alias: p.properties.and_then(|p| p.topic_alias),
        }),
        v5::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::Subscribe(s) if s.filters.is_empty() => return Err(WireError::NoTopicFilter),
        v5::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s.filters.into_iter().map(|f| (f.path, qos_from_v5(f.qos))).collect(),
            with_id: s.properties.is_some_and(|p| p.id.is_some()),
        },
        v5::Packet::Unsubscribe(u) if u.filters.is_empty() => return Err(WireError::NoTopicFilter),
        v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe { pkid: u.pkid, filters: u.filters },
        v5::Packet::Disconnect(d) => Inbound::Disconnect {
            with_will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
            session_expiry: d.properties.and_then(|p| p.session_expiry_interval),
        },
        v5::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        v5::Packet::PubRec(_) => Inbound::Unexpected("PUBREC"),
        v5::Packet::PubRel(_) => Inbound::Unexpected("PUBREL"),
        v5::Packet::PubComp(_) => Inbound::Unexpected("PUBCOMP"),
        v5::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        v5::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        v5::Packet::PingResp(_) => Inbound::Unexpected("PINGRESP"),
    }))
}

/// Why a CONNECT is refused. 3.1.1 has five codes and no way to say some of these: those
/// close the connection without a CONNACK, as before 5.0 support.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A protocol level we do not speak: 3.1.1 0x01, 5.0 0x84.
    UnsupportedProtocol,
    /// 0x02 / 0x85.
    ClientIdInvalid,
    /// 0x04 / 0x86.
    BadCredentials,
    /// 0x05 / 0x87.
    NotAuthorized,
    /// Something on our side failed (an authentication task): 0x03 / 0x88.
    ServerUnavailable,
    /// The session limit or `mqtt.max_connections` is reached: 0x03 / 0x97 quota exceeded.
    QuotaExceeded,
    /// The CONNECT is larger than `mqtt.max_packet_size`: - / 0x95.
    PacketTooLarge,
    /// - / 0x81.
    Malformed,
    /// Enhanced authentication (AUTH packets) is not supported: - / 0x8C.
    BadAuthMethod,
    /// A Will with the retain flag, and we keep no retained messages: - / 0x9A.
    RetainNotSupported,
    /// A Will of QoS 2, above our Maximum QoS: - / 0x9B.
    QosNotSupported,
}

impl Refusal {
    fn v4(self) -> Option<v4::ConnectReturnCode> {
        use v4::ConnectReturnCode as C;
        Some(match self {
            Refusal::UnsupportedProtocol => C::RefusedProtocolVersion,
            Refusal::ClientIdInvalid => C::BadClientId,
            Refusal::BadCredentials => C::BadUserNamePassword,
            Refusal::NotAuthorized => C::NotAuthorized,
            Refusal::ServerUnavailable | Refusal::QuotaExceeded => C::ServiceUnavailable,
            Refusal::PacketTooLarge
            | Refusal::Malformed
            | Refusal::BadAuthMethod
            | Refusal::RetainNotSupported
            | Refusal::QosNotSupported => return None,
        })
    }

    /// Only 5.0 codes: rumqttc's v5 encoder panics on the 3.1.1-only variants.
    fn v5(self) -> v5::ConnectReturnCode {
        use v5::ConnectReturnCode as C;
        match self {
            Refusal::UnsupportedProtocol => C::UnsupportedProtocolVersion,
            Refusal::ClientIdInvalid => C::ClientIdentifierNotValid,
            Refusal::BadCredentials => C::BadUserNamePassword,
            Refusal::NotAuthorized => C::NotAuthorized,
            Refusal::ServerUnavailable => C::ServerUnavailable,
            Refusal::QuotaExceeded => C::QuotaExceeded,
            Refusal::PacketTooLarge => C::PacketTooLarge,
            Refusal::Malformed => C::MalformedPacket,
            Refusal::BadAuthMethod => C::BadAuthenticationMethod,
            Refusal::RetainNotSupported => C::RetainNotSupported,
            Refusal::QosNotSupported => C::QoSNotSupported,
        }
    }
}

/// How a QoS 1 PUBLISH went, for its PUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Stored whole: 0x00.
    Stored,
    /// Kept in the dead-letter store (some or all points could not be stored): 0x00 too, with
    /// the reason as reason string. Not 0x99 (payload format invalid): the message is not
    /// lost, an operator can replay it, and sending it again would fail the same way. A
    /// negative PUBACK would tell the device it was refused, which it was not.
    DeadLettered(String),
    /// Refused by the ACL: 0x87 (3.1.1: a plain PUBACK, it has no negative one).
    Denied(&'static str),
}

/// A SUBACK code per filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubCode {
    Granted(QoS),
    /// ACL: 0x87 (3.1.1: 0x80).
    NotAuthorized,
    /// Not a valid filter: 0x8F (3.1.1: 0x80).
    FilterInvalid,
    /// `$share/...`: 0x9E (3.1.1: 0x80).
    SharedNotSupported,
    /// The session holds as many filters as it may: 0x97 (3.1.1: 0x80).
    QuotaExceeded,
}

/// Why the server closes a 5.0 connection, for its DISCONNECT (3.1.1 just closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// 0x81.
    Malformed,
    /// 0x82.
    ProtocolError,
    /// 0x95.
    PacketTooLarge,
    /// 0x9B: a QoS 2 PUBLISH, above the Maximum QoS (1) of our CONNACK.
    QosNotSupported,
    /// 0x9A: a PUBLISH with retain, and our CONNACK said Retain Available = 0.
    RetainNotSupported,
    /// 0x94: a topic alias of 0 or above our Topic Alias Maximum.
    TopicAliasInvalid,
    /// 0xA1: a SUBSCRIBE with a Subscription Identifier, which our CONNACK said we lack.
    SubscriptionIdsNotSupported,
    /// 0x8D.
    KeepAliveTimeout,
    /// 0x8E.
    SessionTakenOver,
    /// 0x8B.
    ServerShuttingDown,
    /// 0x80: the engine could not store a batch (nothing of it was acknowledged).
    StorageError,
}

impl Close {
    fn code(self) -> v5::DisconnectReasonCode {
        use v5::DisconnectReasonCode as D;
        match self {
            Close::Malformed => D::MalformedPacket,
            Close::ProtocolError => D::ProtocolError,
            Close::PacketTooLarge => D::PacketTooLarge,
            Close::QosNotSupported => D::QoSNotSupported,
            Close::RetainNotSupported => D::RetainNotSupported,
            Close::TopicAliasInvalid => D::TopicAliasInvalid,
            Close::SubscriptionIdsNotSupported => D::SubscriptionIdentifiersNotSupported,
            Close::KeepAliveTimeout => D::KeepAliveTimeout,
            Close::SessionTakenOver => D::SessionTakenOver,
            Close::ServerShuttingDown => D::ServerShuttingDown,
            Close::StorageError => D::UnspecifiedError,
        }
    }
}

/// What the CONNACK of an accepted 5.0 connection advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub session_present: bool,
    /// Set when the client sent an empty client id.
    pub assigned_client_id: Option<String>,
    /// Our Receive Maximum: `mqtt.max_inflight`.
    pub receive_maximum: u16,
    /// Our Maximum Packet Size: `mqtt.max_packet_size`.
    pub max_packet_size: u32,
    pub topic_alias_maximum: u16,
    /// Server Keep Alive: set when the client's keep-alive (0 or above `mqtt.max_keep_alive`)
    /// is replaced by ours, which the client must then use (section 3.2.2.3.14).
    pub server_keep_alive: Option<u16>,
}

/// Longest reason string sent: they are diagnostics, and must fit the client's packet limit.
const MAX_REASON: usize = 256;

fn reason(s: &str) -> String {
    if s.len() <= MAX_REASON {
        return s.to_owned();
    }
    let mut end = MAX_REASON;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Writes the server's packets in a connection's protocol, within the client's limits.
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    pub protocol: Protocol,
    /// Whether reason strings may go on PUBACK and SUBACK (5.0 Request Problem Information).
    pub problem_info: bool,
    /// The largest packet the client accepts (5.0 Maximum Packet Size).
    pub client_max: usize,
}

impl Writer {
    pub fn new(c: &ConnectInfo) -> Writer {
        Writer {
            protocol: c.protocol,
            problem_info: c.problem_info,
            client_max: c.max_packet_size.map_or(usize::MAX, |m| m as usize),
        }
    }

    /// The CONNACK refusing a connection; `why` becomes the 5.0 reason string.
    pub fn refuse(protocol: Protocol, refusal: Refusal, why: &str, out: &mut BytesMut) {
        match protocol {
            Protocol::V311 => {
                if let Some(code) = refusal.v4() {
                    let _ = v4::ConnAck::new(code, false).write(out);
                }
            }
            Protocol::V5 => {
                let mut props = empty_connack_props();
                props.reason_string = Some(reason(why));
                let _ = v5::ConnAck { session_present: false, code: refusal.v5(), properties: Some(props) }
                    .write(out);
            }
        }
    }

    pub fn accept(&self, a: &Accepted, out: &mut BytesMut) {
        match self.protocol {
            Protocol::V311 => {
                let _ = v4::ConnAck::new(v4::ConnectReturnCode::Success, a.session_present).write(out);
            }
            Protocol::V5 => {
                let mut props = empty_connack_props();
                props.receive_max = Some(a.receive_maximum);
                props.max_qos = Some(1);
                props.retain_available = Some(0);
                props.max_packet_size = Some(a.max_packet_size);
                props.assigned_client_identifier = a.assigned_client_id.clone();
                props.topic_alias_max = Some(a.topic_alias_maximum);
                props.subscription_identifiers_available = Some(0);
                props.shared_subscription_available = Some(0);
                props.server_keep_alive = a.server_keep_alive;
                let _ = v5::ConnAck {
                    session_present: a.session_present,
                    code: v5::ConnectReturnCode::Success,
                    properties: Some(props),
                }
                .write(out);
            }
        }
    }

    pub fn puback(&self, pkid: u16, ack: &Ack, out: &mut BytesMut) {
        match self.protocol {
            Protocol::V311 => {
                let _ = v4::PubAck::new(pkid).write(out);
            }
            Protocol::V5 => {
                let (code, why) = match ack {
                    Ack::Stored => (v5::PubAckReason::Success, None),
                    Ack::DeadLettered(why) => (v5::PubAckReason::Success, Some(why.as_str())),
                    Ack::Denied(why) => (v5::PubAckReason::NotAuthorized, Some(*why)),
                };
                let mut p = v5::PubAck { pkid, reason: code, properties: None };
                if let Some(why) = why.filter(|_| self.problem_info) {
                    p.properties = Some(v5::PubAckProperties {
                        reason_string: Some(reason(why)),
                        user_properties: Vec::new(),
                    });
                    if p.size() > self.client_max {
                        p.properties = None;
                    }
                }
                let _ = p.write(out);
            }
        }
    }

    pub fn suback(&self, pkid: u16, codes: &[SubCode], out: &mut BytesMut) {
        match self.protocol {
            Protocol::V311 => {
                let codes = codes
                    .iter()
                    .map(|c| match c {
                        SubCode::Granted(q) => v4::SubscribeReasonCode::Success(*q),
                        _ => v4::SubscribeReasonCode::Failure,
                    })
                    .collect();
                let _ = v4::SubAck::new(pkid, codes).write(out);
            }
            Protocol::V5 => {
                use v5::SubscribeReasonCode as S;
                let return_codes = codes
                    .iter()
                    .map(|c| match c {
                        SubCode::Granted(q) => S::Success(qos_to_v5(*q)),
                        SubCode::NotAuthorized => S::NotAuthorized,
                        SubCode::FilterInvalid => S::TopicFilterInvalid,
                        SubCode::SharedNotSupported => S::SharedSubscriptionsNotSupported,
                        SubCode::QuotaExceeded => S::QuotaExceeded,
                    })
                    .collect();
                let _ = v5::SubAck { pkid, return_codes, properties: None }.write(out);
            }
        }
    }

    pub fn unsuback(&self, pkid: u16, filters: usize, out: &mut BytesMut) {
        match self.protocol {
            Protocol::V311 => {
                let _ = v4::UnsubAck::new(pkid).write(out);
            }
            Protocol::V5 => {
                let reasons = vec![v5::UnsubAckReason::Success; filters];
                let _ = v5::UnsubAck { pkid, reasons, properties: None }.write(out);
            }
        }
    }

    pub fn pingresp(&self, out: &mut BytesMut) {
        match self.protocol {
            Protocol::V311 => {
                let _ = v4::PingResp.write(out);
            }
            Protocol::V5 => {
                let _ = v5::PingResp::write(out);
            }
        }
    }

    /// A command to the device. `expiry_secs` is what is left of its Message Expiry Interval
    /// (5.0 requires the server to send the remaining time). Returns false, writing nothing,
    /// when the packet exceeds the client's Maximum Packet Size: 5.0 says to discard it as if
    /// it had been sent (3.1.2.11.3... "MUST NOT send").
    pub fn publish(
        &self,
        topic: &str,
        qos: QoS,
        pkid: u16,
        payload: &Bytes,
        expiry_secs: Option<u32>,
        out: &mut BytesMut,
    ) -> bool {
        match self.protocol {
            Protocol::V311 => {
                let mut p = v4::Publish::from_bytes(topic, qos, payload.clone());
                p.pkid = pkid;
                p.write(out).is_ok()
            }
            Protocol::V5 => {
                let properties = expiry_secs.map(|s| v5::PublishProperties {
                    message_expiry_interval: Some(s),
                    ..Default::default()
                });
                let mut p = v5::Publish::new(topic, qos_to_v5(qos), payload.clone(), properties);
                p.pkid = pkid;
                if p.size() > self.client_max {
                    return false;
                }
                p.write(out).is_ok()
            }
        }
    }

    /// The DISCONNECT closing a 5.0 connection (3.1.1 has no server DISCONNECT: nothing).
    ///
    /// Encoded here, the one packet we write by hand: rumqttc 0.24 does not export
    /// `DisconnectProperties` (so no reason string can be set), and without properties it
    /// writes a remaining length one byte short for any reason code but 0x00. The layout is
    /// 5.0 section 3.14: type 0xE0, remaining length, reason code, property length, then the
    /// Reason String property (0x1F, u16 length, UTF-8). The unit tests read it back with
    /// rumqttc's decoder.
    pub fn disconnect(&self, close: Close, why: &str, out: &mut BytesMut) {
        if self.protocol != Protocol::V5 {
            return;
        }
        let mut why = reason(why);
        // Fixed header (at most 1 + 2) + code + property length (at most 2) + the property.
        if 6 + 3 + why.len() > self.client_max {
            why.clear();
        }
        let props_len = if why.is_empty() { 0 } else { 3 + why.len() };
        let remaining = 1 + varint_len(props_len) + props_len;
        out.reserve(1 + varint_len(remaining) + remaining);
        out.put_u8(0xE0);
        put_varint(out, remaining);
        out.put_u8(close.code() as u8);
        put_varint(out, props_len);
        if !why.is_empty() {
            out.put_u8(0x1F);
            // `reason` bounds it at MAX_REASON bytes.
            out.put_u16(why.len() as u16);
            out.extend_from_slice(why.as_bytes());
        }
    }
}

/// Bytes of an MQTT variable byte integer (values here are far below its 2^28 limit).
fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn put_varint(out: &mut BytesMut, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if n == 0 {
            break;
        }
    }
}

fn empty_connack_props() -> v5::ConnAckProperties {
    v5::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: None,
        max_qos: None,
        retain_available: None,
        max_packet_size: None,
        assigned_client_identifier: None,
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: None,
        shared_subscription_available: None,
        server_keep_alive: None,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v5_packets(mut b: BytesMut) -> Vec<v5::Packet> {
        let mut out = Vec::new();
        while !b.is_empty() {
            out.push(v5::Packet::read(&mut b, None).expect("well-formed"));
        }
        out
    }

    #[test]
    fn protocol_level_peek() {
        let mut b = BytesMut::new();
        v4::Connect::new("x").write(&mut b).unwrap();
        assert_eq!(connect_protocol_level(&b), Some(4));
        assert_eq!(connect_protocol_level(&b[..5]), None);
        let mut b = BytesMut::new();
        v5::Connect { keep_alive: 5, client_id: "x".into(), clean_start: true, properties: None }
            .write(&None, &None, &mut b)
            .unwrap();
        assert_eq!(connect_protocol_level(&b), Some(5));
        assert_eq!(connect_protocol_level(&[0x30, 0]), None);
        assert_eq!(connect_protocol_level(&[0x10, 0xff, 0xff, 0xff, 0xff, 0xff]), None);
    }

    /// Wrong reserved flags and SUBSCRIBE/UNSUBSCRIBE without filters are malformed in both
    /// versions, whatever the codec says (the fuzz finding `a5 03 04 c3 00`).
    #[test]
    fn reserved_flags_and_empty_filter_lists_are_malformed() {
        let read_one = |p: Protocol, bytes: &[u8]| read(p, &mut BytesMut::from(bytes), 1024);
        for p in [Protocol::V311, Protocol::V5] {
            let flags = read_one(p, &[0xa5, 0x03, 0x04, 0xc3, 0x00]);
            assert_eq!(flags, Err(WireError::ReservedFlags { packet_type: 10, flags: 5 }), "{p:?}");
            assert!(matches!(
                read_one(p, &[0x80, 0x06, 0, 1, 0, 1, b'a', 1]),
                Err(WireError::ReservedFlags { .. })
            ));
            assert!(matches!(read_one(p, &[0xc1, 0x00]), Err(WireError::ReservedFlags { .. })));
            assert!(matches!(read_one(p, &[0x62, 0x02, 0, 1]), Err(_) | Ok(Some(Inbound::Unexpected(_)))));
            // Refused from the first byte, before the rest arrives.
            assert!(matches!(read_one(p, &[0xa0]), Err(WireError::ReservedFlags { .. })));
        }
        assert_eq!(read_one(Protocol::V311, &[0xa2, 0x02, 0x00, 0x01]), Err(WireError::NoTopicFilter));
        assert_eq!(read_one(Protocol::V5, &[0xa2, 0x03, 0x00, 0x01, 0x00]), Err(WireError::NoTopicFilter));
        assert!(read_one(Protocol::V311, &[0x82, 0x02, 0x00, 0x01]).is_err());
        assert!(read_one(Protocol::V5, &[0x82, 0x03, 0x00, 0x01, 0x00]).is_err());
        // Well-formed ones still read.
        assert_eq!(
            read_one(Protocol::V311, &[0xa2, 0x05, 0x00, 0x01, 0x00, 0x01, b'a']),
            Ok(Some(Inbound::Unsubscribe { pkid: 1, filters: vec!["a".into()] }))
        );
        assert_eq!(read_one(Protocol::V311, &[0xc0, 0x00]), Ok(Some(Inbound::PingReq)));
        assert!(flags_ok(0x3b), "PUBLISH flags are its own");
    }

    #[test]
    fn empty_v5_disconnect_is_normal() {
        let mut b = BytesMut::from(&[0xE0u8, 0x00, 0xC0][..]);
        assert_eq!(
            read(Protocol::V5, &mut b, 1024).unwrap(),
            Some(Inbound::Disconnect { with_will: false, session_expiry: None })
        );
        assert_eq!(&b[..], &[0xC0]);
    }

    #[test]
    fn v5_packets_we_write_parse_back() {
        let c = ConnectInfo {
            protocol: Protocol::V5,
            client_id: String::new(),
            clean_start: true,
            keep_alive: 0,
            username: None,
            password: None,
            will: None,
            session_expiry: 0,
            receive_maximum: 10,
            max_packet_size: None,
            problem_info: true,
            auth_method: None,
        };
        let w = Writer::new(&c);
        let mut out = BytesMut::new();
        w.accept(
            &Accepted {
                session_present: false,
                assigned_client_id: Some("strata-1".into()),
                receive_maximum: 256,
                max_packet_size: 1 << 20,
                topic_alias_maximum: 16,
                server_keep_alive: Some(3600),
            },
            &mut out,
        );
        w.puback(7, &Ack::Denied("acl"), &mut out);
        w.puback(8, &Ack::Stored, &mut out);
        w.suback(9, &[SubCode::Granted(QoS::AtLeastOnce), SubCode::NotAuthorized], &mut out);
        w.disconnect(Close::KeepAliveTimeout, "keep-alive", &mut out);
        Writer::refuse(Protocol::V5, Refusal::BadCredentials, "wrong password", &mut out);
        let p = v5_packets(out);
        assert!(matches!(&p[0], v5::Packet::ConnAck(a) if a.properties.as_ref().unwrap().max_qos == Some(1)));
        assert!(
            matches!(&p[0], v5::Packet::ConnAck(a) if a.properties.as_ref().unwrap().server_keep_alive == Some(3600))
        );
        assert!(matches!(&p[1], v5::Packet::PubAck(a) if a.reason == v5::PubAckReason::NotAuthorized));
        assert!(matches!(&p[2], v5::Packet::PubAck(a) if a.reason == v5::PubAckReason::Success));
        assert!(
            matches!(&p[3], v5::Packet::SubAck(a) if a.return_codes[1] == v5::SubscribeReasonCode::NotAuthorized)
        );
        assert!(
            matches!(&p[4], v5::Packet::Disconnect(d) if d.reason_code == v5::DisconnectReasonCode::KeepAliveTimeout)
        );
        assert!(
            matches!(&p[5], v5::Packet::ConnAck(a) if a.code == v5::ConnectReturnCode::BadUserNamePassword)
        );
    }

    #[test]
    fn disconnect_reads_back_with_and_without_reason_string() {
        let mut out = BytesMut::new();
        let w = Writer { protocol: Protocol::V5, problem_info: true, client_max: usize::MAX };
        w.disconnect(Close::PacketTooLarge, &"x".repeat(300), &mut out);
        let tight = Writer { client_max: 8, ..w };
        tight.disconnect(Close::ServerShuttingDown, "shutting down", &mut out);
        let p = v5_packets(out);
        assert!(matches!(&p[0], v5::Packet::Disconnect(d)
            if d.reason_code == v5::DisconnectReasonCode::PacketTooLarge
                && d.properties.as_ref().and_then(|p| p.reason_string.as_ref()).is_some_and(|r| r.len() == MAX_REASON)));
        assert!(matches!(&p[1], v5::Packet::Disconnect(d)
            if d.reason_code == v5::DisconnectReasonCode::ServerShuttingDown && d.properties.is_none()));
        let mut v4out = BytesMut::new();
        Writer { protocol: Protocol::V311, ..w }.disconnect(Close::Malformed, "x", &mut v4out);
        assert!(v4out.is_empty(), "3.1.1 has no server DISCONNECT");
    }

    #[test]
    fn no_reason_strings_on_puback_without_problem_information() {
        let mut out = BytesMut::new();
        let quiet = Writer { protocol: Protocol::V5, problem_info: false, client_max: usize::MAX };
        quiet.puback(1, &Ack::Denied("acl"), &mut out);
        let tiny = Writer { problem_info: true, client_max: 8, ..quiet };
        tiny.puback(2, &Ack::DeadLettered("a long reason".into()), &mut out);
        let p = v5_packets(out);
        assert!(
            matches!(&p[0], v5::Packet::PubAck(a) if a.reason == v5::PubAckReason::NotAuthorized && a.properties.is_none())
        );
        assert!(matches!(&p[1], v5::Packet::PubAck(a) if a.pkid == 2 && a.properties.is_none()), "{p:?}");
    }

    #[test]
    fn publish_respects_the_client_packet_limit() {
        let w = Writer { protocol: Protocol::V5, problem_info: true, client_max: 40 };
        let mut out = BytesMut::new();
        assert!(w.publish(
            "commands/d/x",
            QoS::AtLeastOnce,
            1,
            &Bytes::from_static(b"go"),
            Some(5),
            &mut out
        ));
        let n = out.len();
        assert!(!w.publish(
            "commands/d/x",
            QoS::AtLeastOnce,
            2,
            &Bytes::from(vec![b'x'; 64]),
            None,
            &mut out
        ));
        assert_eq!(out.len(), n, "nothing written");
    }
}
