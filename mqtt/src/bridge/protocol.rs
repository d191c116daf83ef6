//! What differs between the bridge's MQTT 3.1.1 and 5.0 connections: rumqttc has one client
//! per version (`rumqttc::{AsyncClient, EventLoop}` and `rumqttc::v5::{..}`) with the same
//! shape but different packet types. [`Protocol`] names the handful of operations the bridge
//! needs; everything else (batching, the durable write, acknowledging after it, backoff, the
//! connection generation) is written once in `bridge.rs`.

use std::borrow::Cow;
use std::future::Future;

use bytes::Bytes;
use rumqttc::Transport;

use crate::config::BridgeConfig;

/// An event of the connection, as far as the bridge cares.
pub enum Polled<P> {
    /// CONNACK: connected (again).
    Connected {
        session_present: bool,
    },
    /// SUBACK with this many filters refused.
    SubAck {
        refused: usize,
    },
    Publish(P),
    /// Our DISCONNECT went out (shutdown).
    Disconnected,
    Other,
}

/// Where and how to connect, common to both versions.
pub struct Connect<'a> {
    pub cfg: &'a BridgeConfig,
    pub host: String,
    pub port: u16,
    pub max_packet: usize,
    pub transport: Transport,
    /// Capacity of the client's request queue (acknowledgements, SUBSCRIBE, DISCONNECT).
    pub requests: usize,
}

pub trait Protocol: Send + Sync + 'static {
    type Client: Clone + Send + Sync + 'static;
    type EventLoop: Send + 'static;
    type Publish: Send + Sync + 'static;
    type Error: std::fmt::Display + Send;

    const VERSION: &'static str;

    fn connect(c: Connect<'_>) -> (Self::Client, Self::EventLoop);
    fn poll(
        eventloop: &mut Self::EventLoop,
    ) -> impl Future<Output = Result<Polled<Self::Publish>, Self::Error>> + Send;
    /// Queues a SUBSCRIBE at QoS 1 for `filters`; `false` when the request queue is full.
    fn subscribe(client: &Self::Client, filters: &[String]) -> bool;
    /// Queues the PUBACK of a QoS 1 message; `false` when the request queue is full (or the
    /// event loop is gone).
    fn try_ack(client: &Self::Client, p: &Self::Publish) -> bool;
    fn try_disconnect(client: &Self::Client);
    /// After a connection error: drops the PUBACKs still queued, in the client's request queue
    /// or in the event loop's replay list, so that none is sent on the next connection (where
    /// its packet id may name another message).
    fn forget_unsent_acks(eventloop: &mut Self::EventLoop);

    fn topic(p: &Self::Publish) -> Cow<'_, str>;
    fn qos(p: &Self::Publish) -> u8;
    fn payload(p: &Self::Publish) -> &Bytes;
}

/// MQTT 3.1.1.
pub struct V311;

impl Protocol for V311 {
    type Client = rumqttc::AsyncClient;
    type EventLoop = rumqttc::EventLoop;
    type Publish = rumqttc::Publish;
    type Error = rumqttc::ConnectionError;

    const VERSION: &'static str = "3.1.1";

    fn connect(c: Connect<'_>) -> (Self::Client, Self::EventLoop) {
        let mut opts = rumqttc::MqttOptions::new(c.cfg.client_id.clone(), c.host, c.port);
        opts.set_keep_alive(c.cfg.keep_alive.get())
            .set_clean_session(c.cfg.clean_session)
            .set_manual_acks(true)
            .set_max_packet_size(c.max_packet, c.max_packet)
            .set_transport(c.transport);
        if !c.cfg.username.is_empty() {
            opts.set_credentials(c.cfg.username.clone(), c.cfg.password.expose().to_owned());
        }
        rumqttc::AsyncClient::new(opts, c.requests)
    }

    async fn poll(eventloop: &mut Self::EventLoop) -> Result<Polled<Self::Publish>, Self::Error> {
        use rumqttc::{Event, Outgoing, Packet, SubscribeReasonCode};
        Ok(match eventloop.poll().await? {
            Event::Incoming(Packet::ConnAck(a)) => Polled::Connected { session_present: a.session_present },
            Event::Incoming(Packet::SubAck(a)) => Polled::SubAck {
                refused: a.return_codes.iter().filter(|c| matches!(c, SubscribeReasonCode::Failure)).count(),
            },
            Event::Incoming(Packet::Publish(p)) => Polled::Publish(p),
            Event::Outgoing(Outgoing::Disconnect) => Polled::Disconnected,
            _ => Polled::Other,
        })
    }

    fn subscribe(client: &Self::Client, filters: &[String]) -> bool {
        let filters =
            filters.iter().map(|f| rumqttc::SubscribeFilter::new(f.clone(), rumqttc::QoS::AtLeastOnce));
        client.try_subscribe_many(filters).is_ok()
    }

    fn try_ack(client: &Self::Client, p: &Self::Publish) -> bool {
        client.try_ack(p).is_ok()
    }

    fn try_disconnect(client: &Self::Client) {
        let _ = client.try_disconnect();
    }

    fn forget_unsent_acks(eventloop: &mut Self::EventLoop) {
        // `clean` moves what the client queued into `pending`, which rumqttc replays first on
        // the next connection.
        eventloop.clean();
        eventloop.pending.retain(|r| !matches!(r, rumqttc::Request::PubAck(_)));
    }

    fn topic(p: &Self::Publish) -> Cow<'_, str> {
        Cow::Borrowed(&p.topic)
    }

    fn qos(p: &Self::Publish) -> u8 {
        p.qos as u8
    }

    fn payload(p: &Self::Publish) -> &Bytes {
        &p.payload
    }
}

/// MQTT 5.0.
pub struct V5;

impl Protocol for V5 {
    type Client = rumqttc::v5::AsyncClient;
    type EventLoop = rumqttc::v5::EventLoop;
    type Publish = rumqttc::v5::mqttbytes::v5::Publish;
    type Error = rumqttc::v5::ConnectionError;

    const VERSION: &'static str = "5";

    fn connect(c: Connect<'_>) -> (Self::Client, Self::EventLoop) {
        let mut opts = rumqttc::v5::MqttOptions::new(c.cfg.client_id.clone(), c.host, c.port);
        let mut props = rumqttc::v5::mqttbytes::v5::ConnectProperties::new();
        // 3.1.1's clean session = false is 5.0's clean start = false plus a Session Expiry
        // Interval: without one (0) the broker ends the session at disconnect.
        props.session_expiry_interval = c.cfg.session_expiry_secs();
        // Also the limit rumqttc applies to incoming packets.
        props.max_packet_size = Some(u32::try_from(c.max_packet).unwrap_or(u32::MAX));
        // No topic aliases towards us (the default, said explicitly): rumqttc 0.24 resolves
        // them, but a dropped alias table across reconnects is one quirk fewer to meet.
        props.topic_alias_max = None;
        opts.set_keep_alive(c.cfg.keep_alive.get())
            .set_clean_start(c.cfg.clean_session)
            .set_manual_acks(true)
            .set_connect_properties(props)
            .set_transport(c.transport);
        if !c.cfg.username.is_empty() {
            opts.set_credentials(c.cfg.username.clone(), c.cfg.password.expose().to_owned());
        }
        rumqttc::v5::AsyncClient::new(opts, c.requests)
    }

    async fn poll(eventloop: &mut Self::EventLoop) -> Result<Polled<Self::Publish>, Self::Error> {
        use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
        use rumqttc::v5::Event;
        use rumqttc::Outgoing;
        Ok(match eventloop.poll().await? {
            Event::Incoming(Packet::ConnAck(a)) => Polled::Connected { session_present: a.session_present },
            // rumqttc 0.24 turns a refused filter into a connection error (`StateError::SubFail`)
            // before this event, so the bridge logs it and reconnects with backoff; counted here
            // in case a later rumqttc reports it instead.
            Event::Incoming(Packet::SubAck(a)) => Polled::SubAck {
                refused: a
                    .return_codes
                    .iter()
                    .filter(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                    .count(),
            },
            Event::Incoming(Packet::Publish(p)) => Polled::Publish(p),
            Event::Outgoing(Outgoing::Disconnect) => Polled::Disconnected,
            _ => Polled::Other,
        })
    }

    fn subscribe(client: &Self::Client, filters: &[String]) -> bool {
        use rumqttc::v5::mqttbytes::{v5::Filter, QoS};
        let filters = filters.iter().map(|f| Filter::new(f.clone(), QoS::AtLeastOnce));
        client.try_subscribe_many(filters).is_ok()
    }

    fn try_ack(client: &Self::Client, p: &Self::Publish) -> bool {
        client.try_ack(p).is_ok()
    }

    fn try_disconnect(client: &Self::Client) {
        let _ = client.try_disconnect();
    }

    fn forget_unsent_acks(eventloop: &mut Self::EventLoop) {
        eventloop.clean();
        eventloop.pending.retain(|r| !matches!(r, rumqttc::v5::Request::PubAck(_)));
    }

    fn topic(p: &Self::Publish) -> Cow<'_, str> {
        // 5.0 topics are bytes in rumqttc; brokers only forward valid UTF-8 (a replacement
        // character makes an odd device name at worst, never a panic).
        String::from_utf8_lossy(&p.topic)
    }

    fn qos(p: &Self::Publish) -> u8 {
        p.qos as u8
    }

    fn payload(p: &Self::Publish) -> &Bytes {
        &p.payload
    }
}
