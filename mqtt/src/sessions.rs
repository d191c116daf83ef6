//! Sessions by client id: subscriptions, the connection currently attached, and (persistent
//! sessions, `clean session = false`) the QoS 1 commands kept while the device is offline.
//!
//! Commands reach devices only through here: the HTTP command endpoint calls
//! [`Sessions::publish`], which hands the message to every attached session whose
//! subscriptions match (through its bounded channel) and queues QoS 1 messages for persistent
//! sessions that are offline, or whose channel is full. Everything is bounded: the number of
//! sessions, each queue (`mqtt.session_max_queued`, oldest dropped first) and each channel.
//!
//! Persistent sessions are also saved to `<data_dir>/mqtt/sessions.bin` (format in
//! `session_store.rs`): every change to one marks the map dirty and wakes the saver task
//! (`super::MqttServer`), which coalesces changes and rewrites the file; [`Sessions::restore`]
//! loads it at start. A persistent session that is online is saved with its subscriptions and
//! an empty queue: the commands it holds are in its connection, which gives them back at
//! [`Sessions::detach`] (at the latest at shutdown, before the last save).
//!
//! A session belongs to the identity that created it (the device id: certificate CN, username,
//! else client id), not to the client id, which any client may choose: another identity asking
//! for it, to resume it, start it clean or take its live connection over, is refused
//! ([`AttachError::NotOwner`]) and the session stays as it was. One identity holds at most
//! `mqtt.max_sessions_per_identity` persistent sessions and one session at most
//! `mqtt.max_subscriptions_per_session` filters, so one credential cannot fill the table.
//! A token used as the password lets its holder pick the identity (any username, ACL off),
//! so the persistent sessions attached through one token are capped as well
//! (`mqtt.max_sessions_per_token`). A session counts against the token of the connection
//! that last attached it; the token is not saved, so a restored session counts against no
//! token until a token-authenticated connection resumes it.
//!
//! Expiry (MQTT 5.0): a session outlives its connection by its Session Expiry Interval (0: it
//! ends with the connection; [`EXPIRY_NEVER`], what 3.1.1 `clean session = false` gets:
//! never). An offline session past its deadline is gone for [`Sessions::attach`] and
//! [`Sessions::publish`] at once, and removed from the map by [`Sessions::expire`]. Commands
//! may carry a deadline too (Message Expiry Interval): expired ones are dropped, never
//! delivered. Deadlines are wall-clock Unix milliseconds, passed in by the caller, so they
//! mean the same after a restart and tests control the clock.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rumqttc::QoS;
use tokio::sync::{mpsc, Notify};

pub use super::command::Command;
use super::session_store::StoredSession;
use super::wire::EXPIRY_NEVER;

/// What an attached connection gets.
#[derive(Debug)]
pub struct Attachment {
    pub session_present: bool,
    /// Messages kept while offline, to send first.
    pub queued: VecDeque<Command>,
    pub rx: mpsc::Receiver<Command>,
    /// Notified when another connection takes the session over.
    pub kicked: Arc<Notify>,
}

/// How a publish went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: usize,
    pub queued: usize,
    pub dropped: usize,
}

#[derive(Debug)]
struct Online {
    conn: u64,
    tx: mpsc::Sender<Command>,
    kicked: Arc<Notify>,
}

#[derive(Debug)]
struct Session {
    /// The identity (device id) it belongs to. Empty only for a session restored from a file
    /// written before owners were saved whose subscriptions name no single device: the first
    /// identity that attaches adopts it.
    owner: String,
    /// Session Expiry Interval in seconds: 0 ends the session with its connection,
    /// [`EXPIRY_NEVER`] never.
    expiry: u32,
    /// When an offline session with a finite expiry ends (Unix ms); `None` while online or
    /// for one that never expires.
    expires_at_ms: Option<u64>,
    subscriptions: Vec<(String, QoS)>,
    queue: VecDeque<Command>,
    online: Option<Online>,
    /// The id of the token that authenticated the connection that last attached it; `None`
    /// for a registered device, a certificate, auth off, or a session restored from the file.
    token: Option<Arc<str>>,
}

impl Session {
    /// Whether it outlives its connection (and is saved to the sessions file).
    fn persistent(&self) -> bool {
        self.expiry > 0
    }

    fn expired(&self, now_ms: u64) -> bool {
        self.online.is_none() && self.expires_at_ms.is_some_and(|t| t <= now_ms)
    }
}

fn deadline(expiry: u32, now_ms: u64) -> Option<u64> {
    (expiry != EXPIRY_NEVER).then(|| now_ms.saturating_add(u64::from(expiry) * 1000))
}

/// Messages a connection's channel holds before further ones are queued or dropped.
const CHANNEL: usize = 256;
/// Defaults of `mqtt.max_sessions_per_identity` and `mqtt.max_subscriptions_per_session`.
const DEFAULT_PER_IDENTITY: usize = 16;
/// Default of `mqtt.max_sessions_per_token`.
const DEFAULT_PER_TOKEN: usize = 10_000;
const DEFAULT_FILTERS: usize = 64;

/// The sessions by client id, and how many persistent sessions each owner and each token
/// holds (kept in step by [`Table::take`] and [`Table::put`], the only ways in and out of
/// `map`; a count is removed at zero, so both maps stay as small as the live sessions).
#[derive(Debug, Default)]
struct Table {
    map: HashMap<String, Session>,
    persistent_by_owner: HashMap<String, usize>,
    persistent_by_token: HashMap<Arc<str>, usize>,
}

impl Table {
    fn take(&mut self, client_id: &str) -> Option<Session> {
        let s = self.map.remove(client_id)?;
        self.uncount(&s);
        Some(s)
    }

    fn put(&mut self, client_id: String, s: Session) {
        if s.persistent() {
            *self.persistent_by_owner.entry(s.owner.clone()).or_default() += 1;
            if let Some(t) = &s.token {
                *self.persistent_by_token.entry(t.clone()).or_default() += 1;
            }
        }
        if let Some(old) = self.map.insert(client_id, s) {
            self.uncount(&old);
        }
    }

    fn uncount(&mut self, s: &Session) {
        if !s.persistent() {
            return;
        }
        if let Some(n) = self.persistent_by_owner.get_mut(&s.owner) {
            *n -= 1;
            if *n == 0 {
                self.persistent_by_owner.remove(&s.owner);
            }
        }
        if let Some(t) = &s.token {
            if let Some(n) = self.persistent_by_token.get_mut(t) {
                *n -= 1;
                if *n == 0 {
                    self.persistent_by_token.remove(t);
                }
            }
        }
    }

    fn persistent_of(&self, owner: &str) -> usize {
        self.persistent_by_owner.get(owner).copied().unwrap_or(0)
    }

    fn persistent_of_token(&self, token: &str) -> usize {
        self.persistent_by_token.get(token).copied().unwrap_or(0)
    }
}

/// The identity a session saved before owners were saved belonged to, as far as its
/// subscriptions tell: with the ACL on, a device may only subscribe to `{prefix}/{its id}/...`,
/// so filters that all name one device at their second level name their owner.
fn implied_owner(subscriptions: &[(String, QoS)]) -> Option<String> {
    let mut owner: Option<&str> = None;
    for (filter, _) in subscriptions {
        let device = filter.split('/').nth(1)?;
        if device.is_empty() || device.contains(['+', '#']) || owner.is_some_and(|o| o != device) {
            return None;
        }
        owner = Some(device);
    }
    owner.map(str::to_owned)
}

#[derive(Debug)]
pub struct Sessions {
    max_sessions: usize,
    max_queued: usize,
    max_per_identity: usize,
    max_per_token: usize,
    max_filters: usize,
    map: Mutex<Table>,
    /// A persistent session changed since the last [`Sessions::snapshot`].
    dirty: AtomicBool,
    /// Wakes the saver when `dirty` is set.
    pub changed: Notify,
}

/// Why a connection cannot have the session it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// The table is full: the new client is refused (3.1.1 CONNACK 3, 5.0 0x97).
    #[error("too many sessions")]
    Full,
    /// The session (persistent, or with a connection attached) belongs to another identity:
    /// refused (CONNACK 0x05 / 0x87), the session untouched.
    #[error("the session belongs to another identity")]
    NotOwner,
    /// The identity holds `mqtt.max_sessions_per_identity` persistent sessions already
    /// (CONNACK 3 / 0x97).
    #[error("the identity holds mqtt.max_sessions_per_identity persistent sessions")]
    IdentityQuota,
    /// The connection's token holds `mqtt.max_sessions_per_token` persistent sessions already
    /// (CONNACK 3 / 0x97).
    #[error("the token holds mqtt.max_sessions_per_token persistent sessions")]
    TokenQuota,
}

/// The session holds `mqtt.max_subscriptions_per_session` filters already (SUBACK 0x80 /
/// 5.0 0x97).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyFilters;

fn push_bounded(q: &mut VecDeque<Command>, c: Command, max: usize) -> usize {
    q.push_back(c);
    let mut dropped = 0;
    while q.len() > max {
        q.pop_front();
        dropped += 1;
    }
    dropped
}

impl Sessions {
    pub fn new(max_sessions: usize, max_queued: usize) -> Sessions {
        Sessions {
            max_sessions,
            max_queued,
            max_per_identity: DEFAULT_PER_IDENTITY,
            max_per_token: DEFAULT_PER_TOKEN,
            max_filters: DEFAULT_FILTERS,
            map: Mutex::new(Table::default()),
            dirty: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    /// Sets `mqtt.max_sessions_per_identity` and `mqtt.max_subscriptions_per_session`.
    pub fn with_limits(mut self, per_identity: usize, filters: usize) -> Sessions {
        self.max_per_identity = per_identity.max(1);
        self.max_filters = filters.max(1);
        self
    }

    /// Sets `mqtt.max_sessions_per_token`.
    pub fn with_token_limit(mut self, per_token: usize) -> Sessions {
        self.max_per_token = per_token.max(1);
        self
    }

    /// Marks the sessions file out of date and wakes the saver. Also called for what the file
    /// holds beside the sessions (delayed wills, `Broker::delayed_wills`).
    pub fn touch(&self) {
        self.dirty.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    /// Marks the sessions changed (a save failed: try again at the next change).
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Whether a persistent session changed since the last snapshot.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// The persistent sessions, to save; clears the dirty mark (a change after this marks it
    /// again, so the next save catches it).
    pub fn snapshot(&self) -> Vec<StoredSession> {
        let map = self.map.lock();
        self.dirty.store(false, Ordering::Release);
        let mut out: Vec<StoredSession> = map
            .map
            .iter()
            .filter(|(_, s)| s.persistent())
            .map(|(id, s)| StoredSession {
                client_id: id.clone(),
                owner: s.owner.clone(),
                expiry: s.expiry,
                expires_at_ms: s.expires_at_ms,
                subscriptions: s.subscriptions.clone(),
                queue: s.queue.iter().cloned().collect(),
            })
            .collect();
        // Stable order: the same sessions give the same bytes.
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    /// Loads saved sessions (at start, before any connection), offline, within the bounds. A
    /// session that was online when saved has no deadline yet: its connection is gone, so its
    /// expiry starts now. One saved without an owner (files before version 4) belongs to the
    /// device its subscriptions name ([`implied_owner`]), else to the first identity that
    /// attaches to it.
    pub fn restore(&self, saved: Vec<StoredSession>, now_ms: u64) {
        let mut map = self.map.lock();
        for s in saved {
            if s.expiry == 0 {
                continue;
            }
            let expires_at_ms = s.expires_at_ms.or_else(|| deadline(s.expiry, now_ms));
            if expires_at_ms.is_some_and(|t| t <= now_ms) {
                continue;
            }
            if map.map.len() >= self.max_sessions {
                tracing::warn!(dropped_from = %s.client_id, "more saved MQTT sessions than the session limit; the rest are dropped");
                break;
            }
            let mut queue: VecDeque<Command> = s.queue.into_iter().filter(|c| !c.expired(now_ms)).collect();
            while queue.len() > self.max_queued {
                queue.pop_front();
            }
            let mut subscriptions = s.subscriptions;
            subscriptions.truncate(self.max_filters);
            let owner = if s.owner.is_empty() {
                let implied = implied_owner(&subscriptions);
                tracing::debug!(client_id = %s.client_id, owner = ?implied, "MQTT session saved without an owner: owned by the device its subscriptions name, else by the first identity that resumes it");
                implied.unwrap_or_default()
            } else {
                s.owner
            };
            // Over `max_sessions_per_identity` (the limit was lowered): kept all the same, the
            // identity just cannot create more.
            map.put(
                s.client_id,
                Session {
                    owner,
                    expiry: s.expiry,
                    expires_at_ms,
                    subscriptions,
                    queue,
                    online: None,
                    token: None,
                },
            );
        }
    }

    /// Attaches connection `conn` of identity `owner` to `client_id`'s session, taking it
    /// over from a connection already attached. `clean` discards an earlier session;
    /// `expiry` is the Session Expiry Interval from now on (the session keeps what it held
    /// either way). A session of another owner is refused and left as it was.
    pub fn attach(
        &self,
        client_id: &str,
        owner: &str,
        clean: bool,
        expiry: u32,
        conn: u64,
        now_ms: u64,
    ) -> Result<Attachment, AttachError> {
        self.attach_with_token(client_id, owner, None, clean, expiry, conn, now_ms)
    }

    /// [`Sessions::attach`] for a connection authenticated by token `token` (its id): a
    /// persistent session then also counts against `mqtt.max_sessions_per_token`.
    #[allow(clippy::too_many_arguments)]
    pub fn attach_with_token(
        &self,
        client_id: &str,
        owner: &str,
        token: Option<&Arc<str>>,
        clean: bool,
        expiry: u32,
        conn: u64,
        now_ms: u64,
    ) -> Result<Attachment, AttachError> {
        let mut map = self.map.lock();
        if map.map.get(client_id).is_some_and(|s| s.expired(now_ms)) {
            map.take(client_id);
            self.dirty.store(true, Ordering::Release);
        }
        let current = map.map.get(client_id);
        if current.is_some_and(|s| !s.owner.is_empty() && s.owner != owner) {
            return Err(AttachError::NotOwner);
        }
        if current.is_none() && map.map.len() >= self.max_sessions {
            return Err(AttachError::Full);
        }
        if expiry > 0 {
            // This client id's own persistent session is replaced, not added to.
            let own = usize::from(current.is_some_and(|s| s.persistent() && s.owner == owner));
            if map.persistent_of(owner) - own >= self.max_per_identity {
                return Err(AttachError::IdentityQuota);
            }
            if let Some(t) = token {
                let own = usize::from(current.is_some_and(|s| s.persistent() && s.token.as_ref() == Some(t)));
                if map.persistent_of_token(t) - own >= self.max_per_token {
                    return Err(AttachError::TokenQuota);
                }
            }
        }
        let (tx, rx) = mpsc::channel(CHANNEL);
        let kicked = Arc::new(Notify::new());
        let online = Online { conn, tx, kicked: kicked.clone() };
        let existing = map.take(client_id);
        if existing.as_ref().is_some_and(|s| s.owner.is_empty()) {
            tracing::info!(client_id = %client_id, owner = %owner, "MQTT session saved without an owner adopted by the first identity that resumed it");
        }
        let existing_persistent = existing.as_ref().is_some_and(Session::persistent);
        if let Some(old) = existing.as_ref().and_then(|s| s.online.as_ref()) {
            old.kicked.notify_one();
        }
        let (session_present, session) = match existing {
            Some(mut s) if !clean && s.persistent() => {
                s.owner = owner.to_owned();
                s.online = Some(online);
                s.expiry = expiry;
                s.expires_at_ms = None;
                s.token = token.cloned();
                (true, s)
            }
            _ => (
                false,
                Session {
                    owner: owner.to_owned(),
                    expiry,
                    expires_at_ms: None,
                    subscriptions: Vec::new(),
                    queue: VecDeque::new(),
                    online: Some(online),
                    token: token.cloned(),
                },
            ),
        };
        let mut session = session;
        let queued = std::mem::take(&mut session.queue);
        let persistent_involved = session.persistent() || existing_persistent;
        map.put(client_id.to_owned(), session);
        drop(map);
        if persistent_involved {
            self.touch();
        }
        Ok(Attachment { session_present, queued, rx, kicked })
    }

    /// Connection `conn` ended. A persistent session keeps `unacked` (sent, not yet
    /// acknowledged QoS 1 messages) and what was still in its channel, to send again, until
    /// its expiry. `expiry` replaces the Session Expiry Interval (a 5.0 DISCONNECT may).
    pub fn detach(
        &self,
        client_id: &str,
        conn: u64,
        unacked: Vec<Command>,
        mut rx: mpsc::Receiver<Command>,
        expiry: Option<u32>,
        now_ms: u64,
    ) {
        let mut map = self.map.lock();
        if map.map.get(client_id).is_none_or(|s| s.online.as_ref().is_none_or(|o| o.conn != conn)) {
            return; // taken over: the new connection owns the session now
        }
        let mut s = map.take(client_id).expect("checked above");
        s.online = None;
        let was_persistent = s.persistent();
        if let Some(e) = expiry {
            s.expiry = e;
        }
        if !s.persistent() {
            drop(map);
            if was_persistent {
                self.touch();
            }
            return;
        }
        s.expires_at_ms = deadline(s.expiry, now_ms);
        let mut keep: VecDeque<Command> = unacked.into_iter().filter(|c| !c.expired(now_ms)).collect();
        while let Ok(c) = rx.try_recv() {
            if c.qos == QoS::AtLeastOnce && !c.expired(now_ms) {
                keep.push_back(c);
            }
        }
        keep.append(&mut s.queue);
        while keep.len() > self.max_queued {
            keep.pop_front();
        }
        s.queue = keep;
        map.put(client_id.to_owned(), s);
        drop(map);
        self.touch();
    }

    pub fn subscribe(&self, client_id: &str, filter: &str, qos: QoS) -> Result<(), TooManyFilters> {
        let mut map = self.map.lock();
        let Some(s) = map.map.get_mut(client_id) else { return Ok(()) };
        s.subscriptions.retain(|(f, _)| f != filter);
        let r = if s.subscriptions.len() < self.max_filters {
            s.subscriptions.push((filter.to_owned(), qos));
            Ok(())
        } else {
            Err(TooManyFilters)
        };
        let persistent = s.persistent();
        drop(map);
        if persistent {
            self.touch();
        }
        r
    }

    pub fn unsubscribe(&self, client_id: &str, filter: &str) {
        let mut map = self.map.lock();
        let Some(s) = map.map.get_mut(client_id) else { return };
        s.subscriptions.retain(|(f, _)| f != filter);
        let persistent = s.persistent();
        drop(map);
        if persistent {
            self.touch();
        }
    }

    /// Routes `cmd` to the matching sessions.
    pub fn publish(&self, cmd: &Command, now_ms: u64) -> Delivery {
        let mut d = Delivery::default();
        if cmd.expired(now_ms) {
            return d;
        }
        let mut map = self.map.lock();
        for s in map.map.values_mut() {
            if s.expired(now_ms) {
                continue;
            }
            let Some(sub_qos) = s
                .subscriptions
                .iter()
                .filter(|(f, _)| rumqttc::matches(&cmd.topic, f))
                .map(|(_, q)| *q)
                .max_by_key(|q| *q as u8)
            else {
                continue;
            };
            let qos = if (sub_qos as u8) < (cmd.qos as u8) { sub_qos } else { cmd.qos };
            let c = Command { qos, ..cmd.clone() };
            let c = match &s.online {
                Some(o) => match o.tx.try_send(c) {
                    Ok(()) => {
                        d.delivered += 1;
                        continue;
                    }
                    Err(e) => e.into_inner(),
                },
                None => c,
            };
            if s.persistent() && c.qos == QoS::AtLeastOnce {
                self.dirty.store(true, Ordering::Release);
                d.queued += 1;
                d.dropped += push_bounded(&mut s.queue, c, self.max_queued);
            } else {
                d.dropped += 1;
            }
        }
        drop(map);
        if d.queued > 0 {
            self.changed.notify_one();
        }
        d
    }

    /// Removes offline sessions past their expiry; returns how many. Called periodically: an
    /// expired session is already invisible before that, this frees its memory and its room
    /// in the sessions file.
    pub fn expire(&self, now_ms: u64) -> usize {
        let mut map = self.map.lock();
        let gone: Vec<String> =
            map.map.iter().filter(|(_, s)| s.expired(now_ms)).map(|(id, _)| id.clone()).collect();
        for id in &gone {
            map.take(id);
        }
        let removed = gone.len();
        drop(map);
        if removed > 0 {
            self.touch();
        }
        removed
    }

    /// Whether a connection is attached to `client_id`'s session now.
    pub fn is_online(&self, client_id: &str) -> bool {
        self.map.lock().map.get(client_id).is_some_and(|s| s.online.is_some())
    }

    /// Sessions known (online or persistent).
    pub fn len(&self) -> usize {
        self.map.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn cmd(topic: &str, qos: QoS) -> Command {
        Command { topic: topic.into(), payload: Bytes::from_static(b"go"), qos, expires_at_ms: None }
    }

    #[test]
    fn persistent_session_keeps_qos1_commands_while_offline() {
        let s = Sessions::new(10, 2);
        let mut a = s.attach("d1", "d1", false, EXPIRY_NEVER, 1, 0).unwrap();
        assert!(!a.session_present);
        s.subscribe("d1", "commands/d1/#", QoS::AtLeastOnce).unwrap();
        assert_eq!(s.publish(&cmd("commands/d1/reboot", QoS::AtLeastOnce), 0).delivered, 1);
        assert_eq!(a.rx.try_recv().unwrap().topic, "commands/d1/reboot");
        s.detach("d1", 1, vec![cmd("commands/d1/unacked", QoS::AtLeastOnce)], a.rx, None, 0);
        let d = s.publish(&cmd("commands/d1/a", QoS::AtLeastOnce), 0);
        assert_eq!((d.delivered, d.queued), (0, 1));
        assert_eq!(s.publish(&cmd("commands/d1/q0", QoS::AtMostOnce), 0).dropped, 1, "QoS 0 is not kept");
        assert_eq!(s.publish(&cmd("commands/d2/x", QoS::AtLeastOnce), 0), Delivery::default());
        let a = s.attach("d1", "d1", false, EXPIRY_NEVER, 2, 0).unwrap();
        assert!(a.session_present);
        let topics: Vec<_> = a.queued.iter().map(|c| c.topic.as_str()).collect();
        assert_eq!(topics, vec!["commands/d1/unacked", "commands/d1/a"]);
        // A clean session discards it all.
        s.detach("d1", 2, vec![], a.rx, None, 0);
        s.publish(&cmd("commands/d1/b", QoS::AtLeastOnce), 0);
        let a = s.attach("d1", "d1", true, 0, 3, 0).unwrap();
        assert!(!a.session_present && a.queued.is_empty());
        s.detach("d1", 3, vec![], a.rx, None, 0);
        assert!(s.is_empty(), "a clean session ends with its connection");
    }

    #[test]
    fn takeover_and_bounds() {
        let s = Sessions::new(1, 1);
        let a = s.attach("d1", "d1", false, EXPIRY_NEVER, 1, 0).unwrap();
        assert!(s.attach("d2", "d2", true, 0, 2, 0).is_err(), "session limit");
        let b = s.attach("d1", "d1", false, EXPIRY_NEVER, 2, 0).unwrap();
        assert!(b.session_present);
        // The old connection was told, and its detach does not end the new one's session.
        let kicked = a.kicked.clone();
        assert!(futures_lite_now(kicked));
        s.detach("d1", 1, vec![], a.rx, None, 0);
        s.subscribe("d1", "commands/d1/#", QoS::AtLeastOnce).unwrap();
        assert_eq!(s.publish(&cmd("commands/d1/x", QoS::AtLeastOnce), 0).delivered, 1);
        s.detach("d1", 2, vec![], b.rx, None, 0);
        let d = s.publish(&cmd("commands/d1/y", QoS::AtLeastOnce), 0);
        assert_eq!((d.queued, d.dropped), (1, 1), "queue of 1 keeps the newest: {d:?}");
    }

    #[test]
    fn snapshot_and_restore_keep_persistent_sessions_only() {
        let s = Sessions::new(10, 5);
        let a = s.attach("p1", "p1", false, EXPIRY_NEVER, 1, 0).unwrap();
        assert!(s.is_dirty(), "a new persistent session is a change to save");
        s.subscribe("p1", "commands/p1/#", QoS::AtLeastOnce).unwrap();
        let c = s.attach("c1", "c1", true, 0, 2, 0).unwrap();
        s.subscribe("c1", "commands/c1/#", QoS::AtLeastOnce).unwrap();
        s.detach("p1", 1, vec![], a.rx, None, 0);
        s.publish(&cmd("commands/p1/go", QoS::AtLeastOnce), 0);
        let snap = s.snapshot();
        assert!(!s.is_dirty());
        assert_eq!(snap.len(), 1, "clean sessions are not saved: {snap:?}");
        assert_eq!(snap[0].client_id, "p1");
        assert_eq!(snap[0].subscriptions, vec![("commands/p1/#".to_owned(), QoS::AtLeastOnce)]);
        assert_eq!(snap[0].queue, vec![cmd("commands/p1/go", QoS::AtLeastOnce)]);
        assert_eq!((snap[0].expiry, snap[0].expires_at_ms), (EXPIRY_NEVER, None));
        s.detach("c1", 2, vec![], c.rx, None, 0);
        assert!(!s.is_dirty(), "a clean session ending is no change to save");

        // As after a restart: the subscription routes new commands, the queue is delivered.
        let r = Sessions::new(10, 5);
        r.restore(snap, 0);
        assert_eq!(r.publish(&cmd("commands/p1/later", QoS::AtLeastOnce), 0).queued, 1);
        let a = r.attach("p1", "p1", false, EXPIRY_NEVER, 1, 0).unwrap();
        assert!(a.session_present);
        let topics: Vec<_> = a.queued.iter().map(|c| c.topic.as_str()).collect();
        assert_eq!(topics, vec!["commands/p1/go", "commands/p1/later"]);
    }

    #[test]
    fn session_and_message_expiry() {
        let s = Sessions::new(10, 10);
        // A 5.0 session with a 10 s expiry, offline from t = 1 s.
        let a = s.attach("e1", "e1", false, 10, 1, 0).unwrap();
        s.subscribe("e1", "commands/e1/#", QoS::AtLeastOnce).unwrap();
        s.detach("e1", 1, vec![], a.rx, None, 1_000);
        let mut short = cmd("commands/e1/short", QoS::AtLeastOnce);
        short.expires_at_ms = Some(3_000);
        assert_eq!(s.publish(&short, 2_000).queued, 1);
        assert_eq!(s.publish(&cmd("commands/e1/long", QoS::AtLeastOnce), 2_000).queued, 1);
        assert_eq!(s.publish(&short, 3_000), Delivery::default(), "an expired command goes nowhere");
        let snap = s.snapshot();
        assert_eq!((snap[0].expiry, snap[0].expires_at_ms), (10, Some(11_000)));
        // Restored after the command expired: only the other one is left.
        let r = Sessions::new(10, 10);
        r.restore(snap.clone(), 5_000);
        let a = r.attach("e1", "e1", false, 10, 2, 5_000).unwrap();
        assert!(a.session_present);
        let topics: Vec<_> = a.queued.iter().map(|c| c.topic.as_str()).collect();
        assert_eq!(topics, vec!["commands/e1/long"]);
        // Restored after the session expired: gone.
        let r = Sessions::new(10, 10);
        r.restore(snap, 11_000);
        assert!(r.is_empty());
        // Before the deadline it resumes; an online session does not expire.
        assert!(s.attach("e1", "e1", false, 10, 3, 10_999).unwrap().session_present);
        let b = s.attach("e1", "e1", false, 10, 4, 11_000).unwrap();
        assert!(b.session_present, "online sessions do not expire");
        s.detach("e1", 4, vec![], b.rx, Some(0), 12_000);
        assert!(s.is_empty(), "a 5.0 DISCONNECT may set the expiry to 0: the session ends");
        // The sweep removes offline sessions past their deadline only.
        let a = s.attach("e2", "e2", false, 1, 5, 0).unwrap();
        s.detach("e2", 5, vec![], a.rx, None, 0);
        let keep = s.attach("e3", "e3", false, EXPIRY_NEVER, 6, 0).unwrap();
        s.detach("e3", 6, vec![], keep.rx, None, 0);
        assert_eq!(s.expire(999), 0);
        assert_eq!(s.expire(1_000), 1);
        assert_eq!(s.len(), 1);
    }

    /// A session belongs to the identity that made it: another one is refused for it, resumed,
    /// clean or live, and the session stays whole; the owner still gets it afterwards.
    #[test]
    fn sessions_belong_to_their_identity() {
        let s = Sessions::new(10, 10);
        let a = s.attach("b", "dev-b", false, EXPIRY_NEVER, 1, 0).unwrap();
        s.subscribe("b", "commands/dev-b/#", QoS::AtLeastOnce).unwrap();
        for clean in [false, true] {
            let r = s.attach("b", "dev-a", clean, EXPIRY_NEVER, 2, 0);
            assert_eq!(r.err(), Some(AttachError::NotOwner), "live, clean = {clean}");
        }
        assert!(!futures_lite_now(a.kicked.clone()), "the owner's connection was not kicked");
        s.detach("b", 1, vec![], a.rx, None, 0);
        assert_eq!(s.publish(&cmd("commands/dev-b/go", QoS::AtLeastOnce), 0).queued, 1);
        assert_eq!(s.attach("b", "dev-a", false, EXPIRY_NEVER, 3, 0).err(), Some(AttachError::NotOwner));
        assert_eq!(s.attach("b", "dev-a", true, 0, 4, 0).err(), Some(AttachError::NotOwner));
        let back = s.attach("b", "dev-b", false, EXPIRY_NEVER, 5, 0).unwrap();
        assert!(back.session_present);
        assert_eq!(
            back.queued.iter().map(|c| c.topic.as_str()).collect::<Vec<_>>(),
            vec!["commands/dev-b/go"]
        );
        // Saved with its owner, restored with it.
        let snap = s.snapshot();
        assert_eq!(snap[0].owner, "dev-b");
        let r = Sessions::new(10, 10);
        r.restore(snap, 0);
        assert_eq!(r.attach("b", "dev-a", false, EXPIRY_NEVER, 1, 0).err(), Some(AttachError::NotOwner));
    }

    /// Sessions of files before owners were saved: the device their filters name owns them;
    /// naming none, the first identity that attaches adopts them.
    #[test]
    fn sessions_without_owner_get_the_implied_one() {
        let old = |id: &str, filters: &[&str]| StoredSession {
            client_id: id.into(),
            owner: String::new(),
            expiry: EXPIRY_NEVER,
            expires_at_ms: None,
            subscriptions: filters.iter().map(|f| ((*f).to_owned(), QoS::AtLeastOnce)).collect(),
            queue: Vec::new(),
        };
        let s = Sessions::new(10, 10);
        s.restore(
            vec![
                old("c1", &["commands/dev-1/#", "commands/dev-1/x"]),
                old("gw", &["commands/+/#"]),
                old("mixed", &["commands/a/#", "commands/b/#"]),
            ],
            0,
        );
        assert_eq!(s.attach("c1", "dev-2", false, EXPIRY_NEVER, 1, 0).err(), Some(AttachError::NotOwner));
        assert!(s.attach("c1", "dev-1", false, EXPIRY_NEVER, 2, 0).unwrap().session_present);
        assert!(s.attach("gw", "gateway", false, EXPIRY_NEVER, 3, 0).unwrap().session_present);
        assert_eq!(
            s.attach("gw", "other", false, EXPIRY_NEVER, 4, 0).err(),
            Some(AttachError::NotOwner),
            "adopted"
        );
        assert_eq!(implied_owner(&[]), None);
        assert_eq!(
            implied_owner(&[
                ("commands/a/#".into(), QoS::AtLeastOnce),
                ("commands/b".into(), QoS::AtLeastOnce)
            ]),
            None
        );
        assert_eq!(implied_owner(&[("commands/a".into(), QoS::AtLeastOnce)]), Some("a".into()));
    }

    /// One identity holds at most `max_sessions_per_identity` persistent sessions; its own
    /// resume, clean sessions and other identities are not affected; ending one frees room.
    #[test]
    fn persistent_sessions_per_identity_are_capped() {
        let s = Sessions::new(100, 10).with_limits(2, 3);
        let a = s.attach("g1", "gw", false, EXPIRY_NEVER, 1, 0).unwrap();
        let b = s.attach("g2", "gw", false, 60, 2, 0).unwrap();
        assert_eq!(s.attach("g3", "gw", false, EXPIRY_NEVER, 3, 0).err(), Some(AttachError::IdentityQuota));
        assert!(s.attach("g3", "gw", true, 0, 4, 0).is_ok(), "a clean session is not counted");
        assert!(s.attach("o1", "other", false, EXPIRY_NEVER, 5, 0).is_ok());
        assert!(s.attach("g1", "gw", false, EXPIRY_NEVER, 6, 0).unwrap().session_present, "its own resumes");
        drop(a);
        // g2 ends (5.0 DISCONNECT with expiry 0): room for another.
        s.detach("g2", 2, vec![], b.rx, Some(0), 0);
        assert!(s.attach("g4", "gw", false, EXPIRY_NEVER, 7, 0).is_ok());
        assert_eq!(s.attach("g5", "gw", false, EXPIRY_NEVER, 8, 0).err(), Some(AttachError::IdentityQuota));
        // Expired sessions free room too.
        let e = s.attach("e1", "exp", false, 1, 9, 0).unwrap();
        s.detach("e1", 9, vec![], e.rx, None, 0);
        let e = s.attach("e2", "exp", false, EXPIRY_NEVER, 10, 0).unwrap();
        drop(e);
        assert_eq!(
            s.attach("e3", "exp", false, EXPIRY_NEVER, 11, 500).err(),
            Some(AttachError::IdentityQuota)
        );
        assert_eq!(s.expire(1_000), 1);
        assert!(s.attach("e3", "exp", false, EXPIRY_NEVER, 12, 1_000).is_ok());
        // Filters per session.
        for f in ["commands/o/a", "commands/o/b", "commands/o/c"] {
            s.subscribe("o1", f, QoS::AtLeastOnce).unwrap();
        }
        assert_eq!(s.subscribe("o1", "commands/o/d", QoS::AtLeastOnce), Err(TooManyFilters));
        assert_eq!(s.subscribe("o1", "commands/o/a", QoS::AtMostOnce), Ok(()), "a filter it holds");
    }

    /// One token holds at most `max_sessions_per_token` persistent sessions whatever
    /// identities it presents; its own resume, clean sessions, other tokens and connections
    /// without a token are not affected; ending one frees room, and the count is gone at zero.
    #[test]
    fn persistent_sessions_per_token_are_capped() {
        let s = Sessions::new(100, 10).with_limits(16, 3).with_token_limit(2);
        let fleet: Arc<str> = Arc::from("fleet");
        let other: Arc<str> = Arc::from("other");
        let t = Some(&fleet);
        let a = s.attach_with_token("c1", "dev-1", t, false, EXPIRY_NEVER, 1, 0).unwrap();
        let b = s.attach_with_token("c2", "dev-2", t, false, 60, 2, 0).unwrap();
        assert_eq!(
            s.attach_with_token("c3", "dev-3", t, false, EXPIRY_NEVER, 3, 0).err(),
            Some(AttachError::TokenQuota)
        );
        assert!(
            s.attach_with_token("c3", "dev-3", t, true, 0, 4, 0).is_ok(),
            "a clean session is not counted"
        );
        assert!(s.attach_with_token("o1", "dev-4", Some(&other), false, EXPIRY_NEVER, 5, 0).is_ok());
        assert!(s.attach("r1", "registered", false, EXPIRY_NEVER, 6, 0).is_ok(), "no token");
        assert!(
            s.attach_with_token("c1", "dev-1", t, false, EXPIRY_NEVER, 7, 0).unwrap().session_present,
            "its own resumes"
        );
        drop(a);
        s.detach("c2", 2, vec![], b.rx, Some(0), 0);
        assert!(s.attach_with_token("c5", "dev-5", t, false, EXPIRY_NEVER, 8, 0).is_ok());
        assert_eq!(
            s.attach_with_token("c6", "dev-6", t, false, EXPIRY_NEVER, 9, 0).err(),
            Some(AttachError::TokenQuota)
        );
        // A session resumed through another token moves to that token's count.
        assert!(s.attach_with_token("c5", "dev-5", Some(&other), false, EXPIRY_NEVER, 10, 0).is_ok());
        assert!(s.attach_with_token("c6", "dev-6", t, false, EXPIRY_NEVER, 11, 0).is_ok());
        // Counts are removed at zero.
        for (id, conn) in [("c1", 7), ("c6", 11), ("c5", 10), ("o1", 5)] {
            let (_tx, rx) = mpsc::channel(1);
            s.detach(id, conn, vec![], rx, Some(0), 0);
        }
        assert!(s.map.lock().persistent_by_token.is_empty());
    }

    /// Whether `n` holds a stored permit (`notify_one` before anyone waited).
    fn futures_lite_now(n: Arc<Notify>) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async move {
            tokio::time::timeout(std::time::Duration::from_millis(100), n.notified()).await.is_ok()
        })
    }
}
