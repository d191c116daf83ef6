//! Accept loops: one task per listener, one task per connection. The connection limit is a
//! semaphore with `mqtt.max_connections` permits: a connection past it is closed at once,
//! before anything is read (so refusing costs no buffer and no task).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::config::MqttConfig;
use super::metrics::MqttMetrics;
use super::{session, Broker};

/// The TLS side of a listener (see `tls.rs` beside this file's parent).
pub type TlsAcceptor = tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
            MqttMetrics::inc(&broker.metrics.mqtt.connections_refused);
            tracing::warn!(%peer, max = broker.config.max_connections, "MQTT connection refused: mqtt.max_connections reached");
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let broker = broker.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => session::serve(broker, sock, peer, None).await,
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
                            MqttMetrics::inc(&broker.metrics.mqtt.connections_refused);
                            return;
                        }
                    };
                    session::serve(broker, stream, peer, cert_device).await
                }
            }
        });
    }
}
