//! [`Broker`]: what every MQTT connection, the bridge and the HTTP routes about MQTT share:
//! the `[mqtt]` settings, the [`IngestContext`] shared with HTTP writes, the stores (sessions,
//! dead letters, device passwords) and the store pipeline from messages to one engine write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_engine::{Engine, RejectReason, WriteBatch, WriteError};
use strata_ingest::metrics::LineReject;
use strata_ingest::time::ArrivalClock;
use strata_ingest::{Decoded, IngestContext};
use tokio::sync::{watch, Semaphore};

use crate::acl::Acl;
use crate::config::MqttConfig;
use crate::dead_letter::{DeadLetters, NewDeadLetter};
use crate::devices::{self, DeviceCredentials};
use crate::metrics::{self, MqttMetrics};
use crate::payload::{decode_message, Decoding, MessageResult};
use crate::pending_will::PendingWill;
use crate::sessions::{Command, Delivery, Sessions};
use crate::status::{self, Registry};
use crate::topic::TopicPattern;
use crate::{bridge, rate, session_store, topic};

/// Connections past `mqtt.max_connections` answered at the same time. Each holds a task and at
/// most ~5 KiB of buffers (TLS adds its session) for at most `listener::REFUSE_TIMEOUT`, so
/// this is ~1 MiB at worst; enough to answer a fleet reconnecting at once, small next to the
/// connections themselves.
pub const MAX_REFUSING: usize = 64;

/// Why the MQTT listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttStartError {
    #[error("mqtt listener: {0}")]
    Listener(std::io::Error),
    #[error("mqtt dead-letter store {path}: {source}")]
    DeadLetters { path: std::path::PathBuf, source: std::io::Error },
    #[error("mqtt.topic_pattern: {0}")]
    Pattern(#[from] topic::PatternError),
    #[error("mqtt TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    BridgeTls(#[from] bridge::BridgeTlsError),
    #[error("mqtt: {0}")]
    Devices(#[from] devices::DeviceError),
    #[error("{0}")]
    Sessions(#[from] session_store::SessionFileError),
}

/// One message to store: what a PUBLISH (or a replayed dead letter) carries.
#[derive(Debug, Clone)]
pub struct Message {
    /// Shared by the messages of a connection: one allocation per connection, not per message.
    pub client_id: Arc<str>,
    /// The device a message is attributed to when its topic names none (it is refused, and
    /// dead-lettered under this device); otherwise the device and the measurement are the
    /// topic's ([`Message::mapped`]), found again where needed rather than copied per message.
    pub unmapped_device: String,
    pub topic: String,
    pub qos: u8,
    pub payload: Bytes,
    /// Set when the message cannot be stored at all (not a telemetry topic): it goes
    /// straight to the dead-letter store.
    pub refused: Option<&'static str>,
}

impl Message {
    /// The device and measurement the message is stored under.
    pub fn mapped<'a>(&'a self, pattern: &TopicPattern) -> (&'a str, Option<&'a str>) {
        match pattern.matches(&self.topic) {
            Some(m) => (m.device, m.measurement),
            None => (&self.unmapped_device, None),
        }
    }
}

/// What a replay of dead letters did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Ids stored whole now (and deleted from the store).
    pub replayed: Vec<u64>,
    /// Ids still failing, with the reason.
    pub failed: Vec<(u64, String)>,
}

/// Why a batch of messages could not be written (nothing is acknowledged; the connection is
/// closed so the device sends them again).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Engine(#[from] WriteError),
    #[error("the engine stayed overloaded")]
    Overloaded,
}

/// Why a batch of messages may not be acknowledged ([`Broker::store_messages`]).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A message that was not stored whole could not be kept in the dead-letter store
    /// durably: acknowledging it would lose it.
    #[error("dead-letter store: {0}")]
    DeadLetter(#[source] std::io::Error),
}

/// Everything the MQTT side shares: settings, the engine and the stores.
pub struct Broker {
    pub config: MqttConfig,
    /// The engine, auth, limits, write-memory budget, buffer pool and ingest counters, shared
    /// with HTTP writes.
    pub ingest: Arc<IngestContext>,
    pub metrics: Arc<MqttMetrics>,
    pub acl: Acl,
    pub decoding: Decoding,
    pub dead_letters: DeadLetters,
    /// Whether dead letters of synced batches are fsynced: unless `storage.sync = "never"`,
    /// which fsyncs nothing else either.
    dead_letter_fsync: bool,
    /// Per-device passwords (`strata device add`).
    pub devices: DeviceCredentials,
    pub status: Registry,
    /// The rate limit's token buckets, one per device that sent within the last
    /// `rate_burst / rate_limit` seconds, keyed by the device a message is for.
    pub device_buckets: rate::DeviceBuckets,
    pub sessions: Sessions,
    /// Where persistent sessions are saved; the lock orders saves (a later snapshot is never
    /// overwritten by an earlier one).
    sessions_file: parking_lot::Mutex<std::path::PathBuf>,
    /// Wills waiting for their Will Delay Interval (5.0), by client id. A new connection of
    /// the client removes its entry, which cancels the will (5.0 section 3.1.3.2.2). They are
    /// saved in the sessions file with every save (every change here touches the sessions),
    /// so they survive a restart; restored ones are scheduled by [`crate::MqttServer::start`].
    pub(crate) delayed_wills: parking_lot::Mutex<std::collections::HashMap<String, PendingWill>>,
    /// One permit per allowed connection.
    pub(crate) conn_limit: Arc<Semaphore>,
    /// One permit per connection past `conn_limit` being answered CONNACK "quota exceeded"
    /// ([`MAX_REFUSING`]); past these, connections are closed unanswered.
    pub(crate) refusing: Arc<Semaphore>,
    next_conn: AtomicU64,
    pub(crate) shutdown: watch::Sender<bool>,
    /// The time of messages without a timestamp: one per message, never repeated (see
    /// [`ArrivalClock`] for why a reading per batch lost acknowledged data).
    clock: ArrivalClock,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("database", &self.config.database).finish_non_exhaustive()
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// How often, and how long apart, a write is retried while the engine is overloaded (each
/// attempt itself waits up to `storage.write_stall_timeout` before it reports overload).
const OVERLOAD_RETRIES: u32 = 5;
const OVERLOAD_PAUSE: Duration = Duration::from_millis(100);

/// What a [`Broker`] is built from besides its `[mqtt]` settings.
#[derive(Debug, Clone)]
pub struct BrokerEnv {
    /// The ingest context shared with the other write paths.
    pub ingest: Arc<IngestContext>,
    /// The data directory (`data_dir`): the broker keeps `mqtt/` and the device passwords there.
    pub data_dir: std::path::PathBuf,
    /// Whether dead letters of synced batches are fsynced: false only with
    /// `storage.sync = "never"`, which fsyncs nothing else either.
    pub fsync: bool,
    /// The MQTT counters, rendered by the server's `/metrics`.
    pub metrics: Arc<MqttMetrics>,
}

impl Broker {
    /// Builds the broker on the ingest context shared with the other write paths.
    pub fn new(config: MqttConfig, env: BrokerEnv) -> Result<Broker, MqttStartError> {
        let BrokerEnv { ingest, data_dir, fsync, metrics } = env;
        let dir = data_dir.join("mqtt").join("dead-letters");
        let dead_letters =
            DeadLetters::open(&dir, config.dead_letter_max_entries, config.dead_letter_max_size.bytes())
                .map_err(|source| MqttStartError::DeadLetters { path: dir.clone(), source })?;
        let acl = Acl {
            enabled: config.acl,
            pattern: TopicPattern::parse(&config.topic_pattern)?,
            command_prefix: config.command_prefix.clone(),
        };
        let decoding = Decoding {
            device_tag: config.device_tag.clone(),
            line_precision: config.line_precision(),
            json_precision: config.json_precision(),
            limits: ingest.limits.clone(),
        };
        let max_devices = config.max_connections.saturating_mul(10).max(100_000);
        let devices = DeviceCredentials::open(devices::path_in(&data_dir))?;
        let sessions_file = session_store::path_in(&data_dir);
        let sessions = Sessions::new(max_devices, config.session_max_queued)
            .with_limits(config.max_sessions_per_identity, config.max_subscriptions_per_session)
            .with_token_limit(config.max_sessions_per_token);
        let saved = session_store::load(&sessions_file)?;
        if !saved.sessions.is_empty() || !saved.wills.is_empty() {
            tracing::info!(sessions = saved.sessions.len(), delayed_wills = saved.wills.len(), file = %sessions_file.display(), "restored persistent MQTT sessions");
        }
        sessions.restore(saved.sessions, status::now_ms());
        let next_conn = AtomicU64::new(1);
        let delayed_wills = saved
            .wills
            .into_iter()
            .map(|w| {
                (w.client_id.clone(), PendingWill::restored(w, next_conn.fetch_add(1, Ordering::Relaxed)))
            })
            .collect();
        Ok(Broker {
            devices,
            sessions,
            sessions_file: parking_lot::Mutex::new(sessions_file),
            delayed_wills: parking_lot::Mutex::new(delayed_wills),
            conn_limit: Arc::new(Semaphore::new(config.max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            status: Registry::new(max_devices),
            device_buckets: rate::DeviceBuckets::new(config.rate_limit, config.rate_burst, max_devices),
            ingest,
            metrics,
            acl,
            decoding,
            dead_letters,
            dead_letter_fsync: fsync,
            next_conn,
            shutdown: watch::channel(false).0,
            clock: ArrivalClock::default(),
            config,
        })
    }

    pub fn mqtt_metrics(&self) -> &MqttMetrics {
        &self.metrics
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Decodes `messages` into one batch, writes it and returns how each message went, in
    /// order: `None` when it was stored whole, else the reason. Points refused by the engine
    /// (series limit, field type conflict) count against their message. Blocking: call from
    /// `spawn_blocking`. Callers that acknowledge want [`Broker::store_messages`], which also
    /// keeps the failed messages as dead letters.
    ///
    /// With `sync` it blocks until the batch is durable per `storage.sync`. A batch of QoS 0
    /// messages only needs to reach the OS: nothing is acknowledged to the device, so nothing
    /// was promised durable and no fsync is owed to it (nor its latency, with two batches per
    /// connection in flight). It is fsynced by the next durable commit or within a second
    /// (the engine's periodic sync), and survives a crash of the process either way.
    pub fn write_messages_with(
        &self,
        messages: &[Message],
        sync: bool,
    ) -> Result<Vec<Option<String>>, StoreError> {
        let db = &self.config.database;
        // Each message is its own write with its own time (lines without a timestamp inside
        // one message share it, as in one HTTP request): message `i` gets `first + i`.
        let first = self.clock.reserve(now_ns(), messages.len());
        let total: usize = messages.iter().map(|m| m.payload.len()).sum();
        let mut decoded = Decoded::appending(
            WriteBatch::with_buffer(self.ingest.buffers.take(total + total / 2)),
            self.decoding.limits.max_errors,
        );
        let mut starts = Vec::with_capacity(messages.len());
        let mut results: Vec<MessageResult> = Vec::with_capacity(messages.len());
        for (m, now) in messages.iter().zip(first..) {
            starts.push(decoded.batch.len_points());
            if let Some(why) = m.refused {
                results.push(MessageResult { fatal: Some(why.to_owned()), ..Default::default() });
                continue;
            }
            let (device, measurement) = m.mapped(&self.acl.pattern);
            results.push(decode_message(&mut decoded, &m.payload, device, measurement, &self.decoding, now));
        }
        let batch = decoded.batch;
        let mut reasons: Vec<Option<String>> = results.iter().map(MessageResult::reason).collect();
        let ingest = &self.ingest.metrics;
        for r in &results {
            for e in &r.errors {
                if let Some(kind) = LineReject::ALL.iter().find(|k| k.as_str() == e.kind) {
                    ingest.line_rejected(*kind);
                }
            }
        }
        ingest.bytes_received.fetch_add(total as u64, Ordering::Relaxed);
        ingest.bytes_decoded.fetch_add(total as u64, Ordering::Relaxed);
        if batch.is_empty() {
            return Ok(reasons);
        }
        if !self.ingest.engine.database_exists(db) {
            if !self.ingest.auto_create_databases {
                let why = format!("database {db:?} does not exist (storage.auto_create_databases is off)");
                return Ok(reasons.into_iter().map(|r| Some(r.unwrap_or_else(|| why.clone()))).collect());
            }
            match self.ingest.engine.create_database(db) {
                Ok(_) => tracing::info!(db = %db, "created database on first MQTT write"),
                Err(e) => tracing::debug!(db = %db, error = %e, "create database (raced?)"),
            }
        }
        let mut attempt = 0;
        let outcome = loop {
            let written = if sync {
                self.ingest.engine.write(db, &batch)
            } else {
                self.ingest.engine.write_unsynced(db, &batch)
            };
            match written {
                Ok(o) => break o,
                Err(WriteError::Overloaded) if attempt < OVERLOAD_RETRIES && !self.shutting_down() => {
                    // Part of the batch may be stored already; writing it again is harmless
                    // (last write wins). The connection does not read meanwhile: backpressure.
                    attempt += 1;
                    self.metrics.backpressure(metrics::Backpressure::Engine);
                    std::thread::sleep(OVERLOAD_PAUSE);
                }
                Err(WriteError::Overloaded) => return Err(StoreError::Overloaded),
                Err(e) => return Err(e.into()),
            }
        };
        self.ingest.buffers.give(batch.into_buffer());
        MqttMetrics::inc(&self.metrics.batches);
        ingest.points.fetch_add(outcome.points_written as u64, Ordering::Relaxed);
        ingest.values.fetch_add(outcome.values_written as u64, Ordering::Relaxed);
        ingest.by_db.record(
            "mqtt",
            db,
            outcome.points_written as u64,
            outcome.values_written as u64,
            total as u64,
        );
        let mut refused: Vec<(usize, String)> = Vec::new();
        for r in &outcome.rejected {
            let msg = starts.partition_point(|s| *s <= r.index).saturating_sub(1);
            let kind = match r.reason {
                RejectReason::SeriesLimit { .. } => LineReject::SeriesLimit,
                RejectReason::FieldTypeConflict { .. } => LineReject::FieldTypeConflict,
                // Invalid points, and reasons added to the engine later.
                _ => LineReject::InvalidPoint,
            };
            ingest.line_rejected(kind);
            refused.push((msg, r.reason.to_string()));
        }
        for (msg, why) in refused {
            if let Some(slot) = reasons.get_mut(msg) {
                if slot.is_none() {
                    *slot = Some(format!("refused by storage: {why}"));
                }
            }
        }
        Ok(reasons)
    }

    /// Writes `messages` ([`Broker::write_messages_with`]) and keeps the ones that were not
    /// stored whole in the dead-letter store ([`Broker::dead_letter`]), durably if `sync`:
    /// when this returns `Ok`, every message may be acknowledged. Blocking.
    pub fn store_messages(
        &self,
        messages: &[Message],
        sync: bool,
    ) -> Result<Vec<Option<String>>, BatchError> {
        let reasons = self.write_messages_with(messages, sync)?;
        self.dead_letter(messages, &reasons, sync)?;
        Ok(reasons)
    }

    /// Stores the messages that failed in the dead-letter store, counts and logs them. With
    /// `durable` (the batch is acknowledged once this returns) each file and then the
    /// directory are fsynced (unless `storage.sync = "never"`), and an error means the
    /// messages must not be acknowledged; without, a failure is only logged. Blocking.
    pub fn dead_letter(
        &self,
        messages: &[Message],
        reasons: &[Option<String>],
        durable: bool,
    ) -> Result<(), BatchError> {
        let fsync = durable && self.dead_letter_fsync;
        let mut pushed = false;
        for (m, reason) in messages.iter().zip(reasons) {
            let Some(reason) = reason else { continue };
            let (device, _) = m.mapped(&self.acl.pattern);
            MqttMetrics::inc(&self.metrics.dead_letters);
            tracing::warn!(device = %device, client_id = %m.client_id, topic = %m.topic, reason = %reason, "MQTT message dead-lettered");
            let entry = NewDeadLetter {
                client_id: &m.client_id,
                device,
                topic: &m.topic,
                qos: m.qos,
                reason,
                payload: &m.payload,
            };
            match self.dead_letters.push(&entry, fsync) {
                Ok((_, dropped)) => {
                    pushed = true;
                    self.metrics.dead_letters_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
                }
                Err(e) if durable => {
                    tracing::error!(error = %e, device = %device, "cannot write a dead letter; the batch is not acknowledged");
                    return Err(BatchError::DeadLetter(e));
                }
                Err(e) => tracing::error!(error = %e, device = %device, "cannot write a dead letter"),
            }
        }
        if pushed && fsync {
            if let Err(e) = self.dead_letters.sync_dir() {
                tracing::error!(error = %e, "cannot sync the dead-letter directory; the batch is not acknowledged");
                return Err(BatchError::DeadLetter(e));
            }
        }
        Ok(())
    }

    /// Replays dead letters (all of them, oldest first, up to `limit`, or the given ids): each
    /// one stored whole now is deleted; the others stay. Returns (replayed ids, failures).
    /// Blocking.
    pub fn replay(&self, ids: Option<&[u64]>, limit: usize) -> Result<Replayed, StoreError> {
        let letters = match ids {
            Some(ids) => ids.iter().filter_map(|id| self.dead_letters.get(*id)).collect(),
            None => self.dead_letters.list(0, limit),
        };
        let messages: Vec<Message> = letters
            .iter()
            .map(|d| {
                // Replays go through the topic mapping again, without the ACL: an operator
                // replays what a device sent.
                let m = self.acl.pattern.matches(&d.topic);
                Message {
                    client_id: d.client_id.as_str().into(),
                    unmapped_device: if m.is_none() { d.device.clone() } else { String::new() },
                    topic: d.topic.clone(),
                    qos: d.qos,
                    payload: Bytes::from(d.payload()),
                    refused: if m.is_none() { Some("not a telemetry topic") } else { None },
                }
            })
            .collect();
        // A replayed dead letter is deleted once stored: durable first, whatever its QoS.
        let reasons = self.write_messages_with(&messages, true)?;
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for (d, r) in letters.iter().zip(reasons) {
            match r {
                None => {
                    self.dead_letters.remove(d.id);
                    ok.push(d.id);
                }
                Some(why) => failed.push((d.id, why)),
            }
        }
        Ok(Replayed { replayed: ok, failed })
    }

    /// Saves the persistent sessions if they changed since the last save. Blocking. A failure
    /// is logged and the sessions stay marked changed, so the next save tries again.
    pub fn save_sessions(&self) -> Result<(), session_store::SessionFileError> {
        let path = self.sessions_file.lock();
        if !self.sessions.is_dirty() {
            return Ok(());
        }
        // Sessions first: a will that changes after its snapshot marks the file dirty again,
        // so the next save catches it.
        let sessions = self.sessions.snapshot();
        let mut wills: Vec<session_store::StoredWill> =
            self.delayed_wills.lock().iter().map(|(id, w)| w.stored(id)).collect();
        wills.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let r = session_store::save(&path, &session_store::Saved { sessions, wills });
        if let Err(e) = &r {
            tracing::error!(error = %e, "cannot save the persistent MQTT sessions");
            self.sessions.mark_dirty();
        }
        r
    }

    /// Publishes a command to the devices subscribed to `topic`.
    pub fn publish_command(&self, cmd: &Command) -> Delivery {
        let m = &self.metrics;
        MqttMetrics::inc(&m.commands);
        let d = self.sessions.publish(cmd, status::now_ms());
        m.commands_delivered.fetch_add(d.delivered as u64, Ordering::Relaxed);
        m.commands_queued.fetch_add(d.queued as u64, Ordering::Relaxed);
        m.commands_dropped.fetch_add(d.dropped as u64, Ordering::Relaxed);
        d
    }
}

/// A broker on a fresh engine in `data_dir`, with default settings (auth off) and the rate
/// limit off: for the fuzz target and tests that drive connections in-process
/// (`connection::feed_for_test`). Blocking (opens the engine).
#[doc(hidden)]
pub fn broker_for_tests(data_dir: &std::path::Path) -> Result<Arc<Broker>, String> {
    broker_for_tests_with(data_dir, |_| {})
}

/// [`broker_for_tests`] with the `[mqtt]` settings changed by `change`.
#[doc(hidden)]
pub fn broker_for_tests_with(
    data_dir: &std::path::Path,
    change: impl FnOnce(&mut MqttConfig),
) -> Result<Arc<Broker>, String> {
    unshared_broker_for_tests(data_dir, change).map(Arc::new)
}

/// [`broker_for_tests_with`] before it is shared, so that a test can replace a part of it
/// (the dead-letter store's fsync seam). The engine has the default options but 4 MiB
/// memtables; the limits and auth (off) are the configuration's defaults.
fn unshared_broker_for_tests(
    data_dir: &std::path::Path,
    change: impl FnOnce(&mut MqttConfig),
) -> Result<Broker, String> {
    let mut config = MqttConfig { rate_limit: 0, ..MqttConfig::default() };
    change(&mut config);
    let limits = strata_ingest::config::LimitsConfig::default();
    let mut opts = strata_engine::EngineOptions::new(data_dir);
    opts.memtable_size = 4 << 20;
    opts.max_series_per_db = limits.max_series_per_database;
    opts.max_fields_per_measurement = limits.max_fields_per_measurement;
    opts.max_new_partitions_per_write = limits.max_new_partitions_per_write;
    let engine = Engine::open(opts).map_err(|e| e.to_string())?;
    let auth =
        strata_auth::Auth::new(&strata_auth::AuthConfig::default(), data_dir).map_err(|e| e.to_string())?;
    let metrics = Arc::new(strata_ingest::metrics::IngestMetrics::default());
    let ingest = IngestContext::new(Arc::new(engine), Arc::new(auth), &limits, metrics, true);
    let env = BrokerEnv {
        ingest: Arc::new(ingest),
        data_dir: data_dir.to_owned(),
        fsync: true,
        metrics: Arc::new(MqttMetrics::default()),
    };
    Broker::new(config, env).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
