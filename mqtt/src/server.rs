//! [`MqttServer`]: the running MQTT side: the accept loops on the listeners the server bound,
//! the bridge, and the tasks that save persistent sessions and expire old ones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::broker::{Broker, MqttStartError};
use crate::{bridge, connection, listener, status};

/// How long the saver waits after a change before saving, so a burst of changes (a fleet
/// reconnecting and subscribing) costs one write.
const SESSION_SAVE_DELAY: Duration = Duration::from_millis(200);

/// Saves persistent sessions after changes, until shutdown (which saves once more).
async fn save_sessions_loop(broker: Arc<Broker>) {
    loop {
        broker.sessions.changed.notified().await;
        tokio::time::sleep(SESSION_SAVE_DELAY).await;
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || b.save_sessions()).await;
    }
}

/// How often offline sessions past their expiry are removed (they are invisible before:
/// this only frees memory and room in the sessions file).
const SESSION_EXPIRY_SWEEP: Duration = Duration::from_secs(5);

async fn expire_sessions_loop(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(SESSION_EXPIRY_SWEEP);
    loop {
        tick.tick().await;
        let n = broker.sessions.expire(status::now_ms());
        if n > 0 {
            tracing::info!(sessions = n, "MQTT sessions expired");
        }
        // Rate-limit buckets that refilled equal new ones: dropped, so the map shrinks when
        // devices go quiet.
        broker.device_buckets.sweep(std::time::Instant::now());
    }
}

/// The running listener(s).
pub struct MqttServer {
    broker: Arc<Broker>,
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    accept: Vec<JoinHandle<()>>,
    saver: JoinHandle<()>,
    expirer: JoinHandle<()>,
    bridge: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MqttServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttServer").field("addr", &self.addr).field("tls_addr", &self.tls_addr).finish()
    }
}

impl MqttServer {
    /// Starts accepting on the bound listeners.
    pub fn start(
        broker: Broker,
        plain: std::net::TcpListener,
        tls: Option<std::net::TcpListener>,
    ) -> Result<MqttServer, MqttStartError> {
        let broker = Arc::new(broker);
        let tls_config = match &tls {
            Some(_) => Some(listener::tls_config(&broker.config).map_err(MqttStartError::Tls)?),
            None => None,
        };
        // Before any task starts, so that unusable bridge TLS files stop the start cleanly.
        let bridge = bridge::spawn(&broker)?;
        let to_tokio = |l: std::net::TcpListener| {
            l.set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l))
                .map_err(MqttStartError::Listener)
        };
        let addr = plain.local_addr().map_err(MqttStartError::Listener)?;
        let mut accept = vec![tokio::spawn(listener::accept_loop(broker.clone(), to_tokio(plain)?, None))];
        let mut tls_addr = None;
        if let (Some(l), Some(cfg)) = (tls, tls_config) {
            tls_addr = Some(l.local_addr().map_err(MqttStartError::Listener)?);
            accept.push(tokio::spawn(listener::accept_loop(broker.clone(), to_tokio(l)?, Some(cfg))));
        }
        // Wills restored from the sessions file wait (or go at once, if due) as they did
        // before the restart; before the first connection, which may cancel them.
        connection::schedule_restored_wills(&broker);
        let saver = tokio::spawn(save_sessions_loop(broker.clone()));
        let expirer = tokio::spawn(expire_sessions_loop(broker.clone()));
        tracing::info!(addr = %addr, tls_addr = ?tls_addr, db = %broker.config.database, pattern = %broker.config.topic_pattern, "MQTT listening");
        Ok(MqttServer { broker, addr, tls_addr, accept, saver, expirer, bridge })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, tells every connection to finish (a write in progress completes and
    /// is acknowledged), and waits up to `timeout` for them to close.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.broker.shutdown.send(true);
        for a in self.accept {
            let _ = a.await;
        }
        let all = u32::try_from(self.broker.config.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(timeout, self.broker.conn_limit.acquire_many(all)).await.is_err() {
            tracing::warn!("MQTT connections still open at the shutdown timeout");
        }
        if let Some(b) = self.bridge {
            // It finishes the write in hand and acknowledges it.
            let abort = b.abort_handle();
            if tokio::time::timeout(timeout, b).await.is_err() {
                tracing::warn!("MQTT bridge still writing at the shutdown timeout");
                abort.abort();
            }
        }
        // The connections gave their unacknowledged commands back: save them last.
        self.saver.abort();
        self.expirer.abort();
        let broker = self.broker.clone();
        let _ = tokio::task::spawn_blocking(move || broker.save_sessions()).await;
    }
}
