//! strata-mqtt: the MQTT listener and bridge. Devices connect straight to Strata (MQTT 3.1.1
//! and 5.0 over TCP, optionally TLS) and publish telemetry, which is written to the engine
//! through the [`IngestContext`] shared with HTTP writes and acknowledged (QoS 1) only once
//! durable. `docs/mqtt.md` describes the behaviour; this is the layout:
//!
//! - [`broker`]: [`Broker`], what every connection shares, built from the `[mqtt]` section and
//!   a [`BrokerEnv`]; the store pipeline from messages to one engine write and the dead-letter
//!   store. [`server`]: [`MqttServer`], the running listeners and background tasks.
//!   [`pending_will`]: a Last Will waiting for its delay.
//!
//! - [`bridge`]: bridge mode, subscribing to an external broker (`[mqtt.bridge]`).
//! - [`listener`]: accept loops (plain and TLS), the connection limit, mTLS identities.
//! - [`wire`]: 3.1.1 and 5.0 packets as one set of types, and every reason code we send.
//! - [`connection`]: one connection, one file per job: CONNECT and authentication,
//!   keep-alive, the packet loop, the store pipeline (buffered PUBLISHes batched into one
//!   engine write, PUBACKs after durability), SUBSCRIBE, command delivery, Last Wills.
//! - [`topic`]: topic pattern -> device and measurement; [`acl`]: who may publish or
//!   subscribe where; [`payload`]: payload -> points (through `strata_ingest`).
//! - [`sessions`]: subscriptions and persistent sessions, command routing ([`command`]: the
//!   message they route);
//!   [`session_store`]: the file that keeps persistent sessions across restarts.
//! - [`dead_letter`]: the on-disk store of messages that could not be stored whole.
//! - [`devices`]: per-device passwords (`strata device add|list|remove`), stored hashed.
//! - [`status`]: device online/offline status; [`rate`]: per-device token bucket;
//!   [`metrics`]: counters; [`config`]: the `[mqtt]` section; [`tls`]: rustls and mTLS.
//!
//! Packets are framed and parsed by rumqttc's codecs (`rumqttc::mqttbytes::v4` for 3.1.1,
//! `rumqttc::v5::mqttbytes::v5` for 5.0); we never parse MQTT by hand. What it is not (yet):
//! QoS 2, retained messages, enhanced authentication, outbound topic aliases. Nor does it
//! depend on the server: the server builds the [`Broker`], starts the [`MqttServer`] on the
//! listeners it bound, renders [`metrics::MqttMetrics`] in `/metrics` and serves the HTTP
//! routes about MQTT (devices, commands, dead letters).

pub mod acl;
pub mod bridge;
pub mod broker;
pub mod command;
pub mod config;
pub mod connection;
pub mod dead_letter;
pub mod devices;
#[doc(hidden)]
pub mod fuzzing;
pub mod listener;
pub mod metrics;
pub mod payload;
pub mod pending_will;
pub mod rate;
pub mod server;
pub mod session_store;
pub mod sessions;
pub mod status;
pub mod tls;
pub mod topic;
pub mod wire;

pub use broker::{
    broker_for_tests, broker_for_tests_with, BatchError, Broker, BrokerEnv, Message, MqttStartError,
    Replayed, StoreError,
};
pub use server::MqttServer;
