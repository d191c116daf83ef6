//! Accept loops: one task per listener, one task per connection. The connection limit is a
//! semaphore with `mqtt.max_connections` permits. A connection past it is answered CONNACK
//! "server unavailable" (3.1.1) / "quota exceeded" (5.0) after its CONNECT, so the device
//! knows why and backs off instead of retrying a silent close at once; that costs a task and a
//! small buffer for up to [`REFUSE_TIMEOUT`], so refusals are bounded too: at most
//! [`MAX_REFUSING`] at a time, and past that a connection is closed at once, before anything
//! is read (what a flood of connections gets).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_auth::AuthConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use super::config::MqttConfig;
use super::metrics::MqttMetrics;
use crate::broker::Broker;
pub use crate::broker::MAX_REFUSING;
use crate::connection;

/// The TLS side of a listener (see `tls.rs` beside this file's parent).
pub type TlsAcceptor = tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection past the limit has to send its CONNECT (and finish its TLS
/// handshake), and to read the refusal; `mqtt.connect_timeout` if that is shorter. A device
/// sends CONNECT right after connecting; a slow one is closed without an answer, as before.
pub const REFUSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether the TLS listener on `addr` must not start: authentication is off
/// (`auth.enabled = false`), the address is not loopback, `--insecure-allow-no-auth` was not
/// given, and there is no `mqtt.tls_client_ca` (with one, every device is authenticated by
/// its client certificate, whatever `auth.enabled` says). The plain listeners refuse the same.
pub fn refuses_without_auth(auth: &AuthConfig, mqtt: &MqttConfig, addr: SocketAddr) -> bool {
    !auth.enabled
        && !addr.ip().is_loopback()
        && !auth.insecure_allow_no_auth
        && mqtt.tls_client_ca.as_os_str().is_empty()
}

/// Builds the acceptor of the TLS listener from `mqtt.tls_*`.
pub fn tls_config(config: &MqttConfig) -> Result<TlsAcceptor, String> {
    super::tls::acceptor(config)
}

/// Accepts connections until shutdown.
pub async fn accept_loop(broker: Arc<Broker>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = broker.conn_limit.clone().try_acquire_owned() else {
            MqttMetrics::inc(&broker.metrics.connections_refused);
            match broker.refusing.clone().try_acquire_owned() {
                Ok(refusing) => {
                    tokio::spawn(refuse(broker.clone(), sock, peer, tls.clone(), refusing));
                }
                Err(_) => {
                    tracing::warn!(%peer, max = broker.config.max_connections, "MQTT connection closed unanswered: mqtt.max_connections reached and {MAX_REFUSING} refusals under way");
                    drop(sock);
                }
            }
            continue;
        };
        let _ = sock.set_nodelay(true);
        let broker = broker.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection::serve(broker, sock, peer, None).await,
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "MQTT TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(%peer, "MQTT TLS handshake timed out");
                            return;
                        }
                    };
                    let cert_device = match super::tls::client_device(&stream) {
                        Ok(d) => d,
                        Err(why) => {
                            tracing::info!(%peer, reason = %why, "MQTT client certificate refused");
                            MqttMetrics::inc(&broker.metrics.connections_refused);
                            return;
                        }
                    };
                    connection::serve(broker, stream, peer, cert_device).await
                }
            }
        });
    }
}

/// Answers a connection past `mqtt.max_connections` with a refusing CONNACK (see the module
/// header), within [`REFUSE_TIMEOUT`]; `_refusing` is its permit among [`MAX_REFUSING`].
async fn refuse(
    broker: Arc<Broker>,
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    _refusing: OwnedSemaphorePermit,
) {
    let _ = sock.set_nodelay(true);
    let work = async move {
        match tls {
            None => {
                let mut sock = sock;
                connection::refuse_busy(&mut sock).await
            }
            Some(acceptor) => match acceptor.accept(sock).await {
                Ok(mut stream) => connection::refuse_busy(&mut stream).await,
                Err(_) => false,
            },
        }
    };
    let limit = REFUSE_TIMEOUT.min(broker.config.connect_timeout.get());
    let answered = tokio::time::timeout(limit, work).await.unwrap_or(false);
    tracing::warn!(%peer, max = broker.config.max_connections, answered, "MQTT connection refused: mqtt.max_connections reached");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use bytes::BytesMut;
    use rumqttc::mqttbytes::v4;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn connect(id: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        v4::Connect::new(id).write(&mut b).unwrap();
        b.to_vec()
    }

    #[test]
    fn tls_listener_needs_auth_off_loopback() {
        let public: SocketAddr = "0.0.0.0:8883".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8883".parse().unwrap();
        let (mut auth, mut mqtt) = (AuthConfig::default(), MqttConfig::default());
        assert!(refuses_without_auth(&auth, &mqtt, public));
        assert!(!refuses_without_auth(&auth, &mqtt, local));
        mqtt.tls_client_ca = "ca.pem".into();
        assert!(!refuses_without_auth(&auth, &mqtt, public), "client certificates authenticate");
        mqtt.tls_client_ca = std::path::PathBuf::new();
        auth.insecure_allow_no_auth = true;
        assert!(!refuses_without_auth(&auth, &mqtt, public));
        auth.insecure_allow_no_auth = false;
        auth.enabled = true;
        assert!(!refuses_without_auth(&auth, &mqtt, public));
    }

    /// Past `mqtt.max_connections` a connection is answered CONNACK 3 while fewer than
    /// [`MAX_REFUSING`] refusals are under way, and closed unanswered beyond that.
    #[test]
    fn refusals_are_answered_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let broker = crate::broker_for_tests_with(dir.path(), |c| c.max_connections = 1).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(accept_loop(broker.clone(), listener, None));
            let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
            first.write_all(&connect("first")).await.unwrap();
            let mut ack = [0u8; 4];
            first.read_exact(&mut ack).await.unwrap();
            assert_eq!(ack, [0x20, 2, 0, 0], "the one allowed connection");
            // Refusals under way, all waiting for their CONNECT.
            let mut waiting = Vec::new();
            for _ in 0..MAX_REFUSING {
                waiting.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            }
            let mut late = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = late.write_all(&connect("late")).await;
            let mut out = Vec::new();
            let read = tokio::time::timeout(REFUSE_TIMEOUT / 2, late.read_to_end(&mut out)).await;
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "closed at once and unanswered past {MAX_REFUSING} refusals: {read:?} {out:?}"
            );
            // One of those waiting sends its CONNECT and is answered.
            let mut w = waiting.pop().unwrap();
            w.write_all(&connect("waiting")).await.unwrap();
            let mut out = Vec::new();
            tokio::time::timeout(REFUSE_TIMEOUT, w.read_to_end(&mut out)).await.unwrap().unwrap();
            assert_eq!(out, vec![0x20, 2, 0, 3], "CONNACK server unavailable");
            let refused = broker.metrics.connections_refused.load(Ordering::Relaxed);
            assert_eq!(refused, MAX_REFUSING as u64 + 1);
        });
    }
}
