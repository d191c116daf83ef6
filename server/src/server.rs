//! Starting and stopping the server: raise the open files limit and size the connection caps
//! to it, open the engine, serve HTTP on already-bound listeners, and shut down gracefully
//! (stop accepting, let in-flight requests finish, flush and sync the engine).

use std::future::Future;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use strata_auth::tokens::TokenError;
use strata_auth::Auth;
use strata_engine::{Engine, FlushError, OpenError};
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};
use crate::http::conn::{self, ConnLimits};
use crate::http::{self, AppState, Shared};
use crate::metrics::Metrics;
use crate::tls::{self, TlsError};

/// hyper's per-connection read buffer grows to ~400 KiB by default while a large body streams
/// in; each growth above the allocator's 256 KiB mmap threshold was a fresh mapping whose pages
/// the kernel faulted in, half the page faults of a 5,000-line write. 128 KiB buffers come from
/// the heap and are reused; headers still have 128 KiB (far above the header limits).
const HTTP1_MAX_READ_BUFFER: usize = 128 << 10;

/// How often the tokens file is checked for changes (revocations take effect within this).
const TOKENS_RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The sockets the server serves, bound by the caller (so tests can bind port 0 and learn
/// the port before the server starts).
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    /// The MQTT listener (`mqtt.addr`), when `mqtt.enabled`.
    pub mqtt: Option<TcpListener>,
    /// The MQTT-over-TLS listener (`mqtt.tls_addr`), when set.
    pub mqtt_tls: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `config`.
    pub fn bind(config: &Config) -> Result<Listeners, BindError> {
        let bind = |key: &'static str, addr: &str| -> Result<TcpListener, BindError> {
            let fail = |source| BindError { key, addr: addr.to_owned(), source };
            let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(fail)?.collect();
            TcpListener::bind(&addrs[..]).map_err(fail)
        };
        let m = &config.mqtt;
        Ok(Listeners {
            http: bind("http.addr", &config.http.addr)?,
            mqtt: if m.enabled { Some(bind("mqtt.addr", &m.addr)?) } else { None },
            mqtt_tls: if m.enabled && !m.tls_addr.is_empty() {
                Some(bind("mqtt.tls_addr", &m.tls_addr)?)
            } else {
                None
            },
        })
    }
}

/// A listener that could not be bound, naming the configuration key and the address.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({key}): {source}")]
pub struct BindError {
    pub key: &'static str,
    pub addr: String,
    #[source]
    pub source: std::io::Error,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "refusing to listen on non-loopback address {addr} ({key}) with authentication off: set auth.enabled = true \
         (and create tokens with `strata token create`), or pass --insecure-allow-no-auth"
    )]
    InsecureNoAuth { key: &'static str, addr: SocketAddr },
    #[error("listener: {0}")]
    Listener(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Tokens(#[from] TokenError),
    #[error("cannot open the storage engine: {0}")]
    Engine(#[from] OpenError),
    #[error("closing the storage engine failed: {0}")]
    Close(#[from] FlushError),
    #[error("server task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Mqtt(#[from] strata_mqtt::MqttStartError),
}

/// A running server.
pub struct Server {
    state: AppState,
    http_addr: SocketAddr,
    tls: bool,
    handle: axum_server::Handle,
    serve: JoinHandle<std::io::Result<()>>,
    reload: JoinHandle<()>,
    mqtt: Option<strata_mqtt::MqttServer>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("http_addr", &self.http_addr).field("tls", &self.tls).finish()
    }
}

impl Server {
    /// Validates the configuration, opens the engine and starts serving. Returns once the
    /// server accepts requests.
    pub async fn start(mut config: Config, listeners: Listeners) -> Result<Server, ServeError> {
        config.validate()?;
        size_connection_caps(&mut config);
        let http_addr = listeners.http.local_addr().map_err(ServeError::Listener)?;
        if !config.auth.enabled && !http_addr.ip().is_loopback() && !config.auth.insecure_allow_no_auth {
            return Err(ServeError::InsecureNoAuth { key: "http.addr", addr: http_addr });
        }
        if !config.auth.enabled && !http_addr.ip().is_loopback() {
            tracing::warn!(addr = %http_addr, "authentication is off on a non-loopback address (--insecure-allow-no-auth)");
        }
        let tls = if config.http.tls_enabled() {
            Some(tls::server_config(&config.http.tls_cert, &config.http.tls_key)?)
        } else {
            None
        };
        let auth = Arc::new(Auth::new(&config.auth, &config.data_dir)?);
        if auth.enabled() && auth.token_count() == 0 {
            tracing::warn!(
                tokens_file = %config.tokens_file().display(),
                "authentication is on but no token exists yet: set STRATA_ADMIN_TOKEN or run `strata token create`"
            );
        }
        let opts = config.engine_options();
        let engine = tokio::task::spawn_blocking(move || Engine::open(opts))
            .await
            .map_err(|e| ServeError::Task(e.to_string()))??;
        tracing::info!(data_dir = %config.data_dir.display(), databases = engine.databases().len(), "storage engine open");
        let metrics = Arc::new(Metrics::default());
        let state: AppState =
            Arc::new(Shared::new(Arc::new(engine), Arc::new(config), auth.clone(), metrics));
        let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let listener = listeners.http;
        let h = &state.config.http;
        let limits = ConnLimits {
            max_connections: h.max_connections,
            header_read_timeout: h.header_read_timeout.get(),
            idle_timeout: h.idle_timeout.get(),
            plain: tls.is_none(),
        };
        // Accept errors (EMFILE when file descriptors run out) are retried by axum_server
        // after 50 ms; the caps sized above keep the server from getting there.
        let serve = match tls.clone() {
            Some(cfg) => {
                let rustls = axum_server::tls_rustls::RustlsConfig::from_config(cfg);
                let mut server = axum_server::tls_rustls::from_tcp_rustls(listener, rustls)
                    .handle(handle.clone())
                    .map(|a| conn::Guard::new(a, limits));
                server.http_builder().http1().max_buf_size(HTTP1_MAX_READ_BUFFER);
                tokio::spawn(server.serve(app))
            }
            None => {
                let mut server = axum_server::from_tcp(listener)
                    .handle(handle.clone())
                    .map(|a| conn::Guard::new(a, limits));
                server.http_builder().http1().max_buf_size(HTTP1_MAX_READ_BUFFER);
                tokio::spawn(server.serve(app))
            }
        };
        if handle.listening().await.is_none() {
            let err = match serve.await {
                Ok(Err(e)) => e,
                _ => std::io::Error::other("the HTTP server did not start"),
            };
            return Err(ServeError::Listener(err));
        }
        let mqtt = match listeners.mqtt {
            Some(l) => {
                let addr = l.local_addr().map_err(ServeError::Listener)?;
                let st = &state.config.auth;
                if !st.enabled && !addr.ip().is_loopback() && !st.insecure_allow_no_auth {
                    return Err(ServeError::InsecureNoAuth { key: "mqtt.addr", addr });
                }
                // The TLS listener too, unless client certificates authenticate every device.
                if let Some(tls) = &listeners.mqtt_tls {
                    let addr = tls.local_addr().map_err(ServeError::Listener)?;
                    if strata_mqtt::listener::refuses_without_auth(
                        &state.config.auth,
                        &state.config.mqtt,
                        addr,
                    ) {
                        return Err(ServeError::InsecureNoAuth { key: "mqtt.tls_addr", addr });
                    }
                }
                let env = strata_mqtt::BrokerEnv {
                    ingest: state.ingest.clone(),
                    data_dir: state.config.data_dir.clone(),
                    fsync: state.config.storage.sync != crate::config::SyncMode::Never,
                    metrics: state.metrics.mqtt.clone(),
                };
                let broker = strata_mqtt::Broker::new(state.config.mqtt.clone(), env)?;
                let m = strata_mqtt::MqttServer::start(broker, l, listeners.mqtt_tls)?;
                let _ = state.mqtt.set(m.broker().clone());
                Some(m)
            }
            None => None,
        };
        let reload = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TOKENS_RELOAD_EVERY);
            loop {
                tick.tick().await;
                let auth = auth.clone();
                match tokio::task::spawn_blocking(move || auth.reload_if_changed()).await {
                    Ok(Ok(true)) => tracing::info!("tokens file reloaded"),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot read the tokens file: refusing every token from it until it is fixed")
                    }
                    Err(_) => {}
                }
            }
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %http_addr, scheme, auth = state.auth.enabled(), "HTTP listening");
        Ok(Server { state, http_addr, tls: tls.is_some(), handle, serve, reload, mqtt })
    }

    /// The address the HTTP listener is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The address the MQTT listener is bound to, if it runs.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt.as_ref().map(strata_mqtt::MqttServer::addr)
    }

    /// The address the MQTT-over-TLS listener is bound to, if it runs.
    pub fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        self.mqtt.as_ref().and_then(strata_mqtt::MqttServer::tls_addr)
    }

    /// The handlers' shared state (engine, metrics, ...).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stop accepting, wait up
    /// to `http.shutdown_timeout` for in-flight requests, flush and sync the engine.
    pub async fn wait(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let early = tokio::select! {
            _ = shutdown => None,
            r = &mut self.serve => Some(r),
        };
        self.state.shutting_down.store(true, Ordering::Release);
        let served = match early {
            Some(r) => {
                tracing::error!("the HTTP server stopped on its own");
                r
            }
            None => {
                let timeout = self.state.config.http.shutdown_timeout.get();
                tracing::info!(?timeout, "shutting down: finishing in-flight requests");
                self.handle.graceful_shutdown(Some(timeout));
                (&mut self.serve).await
            }
        };
        self.reload.abort();
        if let Some(m) = self.mqtt.take() {
            // MQTT connections finish the batch they are writing (and acknowledge it) first.
            m.shutdown(self.state.config.http.shutdown_timeout.get()).await;
        }
        let engine = self.state.engine.clone();
        let closed = tokio::task::spawn_blocking(move || engine.close())
            .await
            .map_err(|e| ServeError::Task(e.to_string()))?;
        match served {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ServeError::Listener(e)),
            Err(e) => return Err(ServeError::Task(e.to_string())),
        }
        closed?;
        tracing::info!("storage engine closed; bye");
        Ok(())
    }
}

/// Raises the open files limit to its hard limit and fits `http.max_connections` and
/// `mqtt.max_connections` under it, keeping [`conn::reserved_files`] for the engine (WAL,
/// segments, catalog, backups). `http.max_connections = 0` takes what MQTT leaves (MQTT gets
/// at most half when both would not fit); configured caps whose sum is above the budget are
/// lowered in proportion, with a warning (a server that starts on a smaller limit beats one
/// that runs out of descriptors mid-flush).
fn size_connection_caps(config: &mut Config) {
    let limit = conn::raise_open_files_limit();
    let budget = limit.map_or(u64::MAX, conn::connection_budget).max(2);
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    let mqtt_on = config.mqtt.enabled;
    let mqtt_want = if mqtt_on { config.mqtt.max_connections } else { 0 };
    let (http, mqtt) = if config.http.max_connections == 0 {
        let mqtt = mqtt_want.min(budget / 2);
        (budget - mqtt, mqtt)
    } else {
        let http_want = config.http.max_connections;
        if http_want.saturating_add(mqtt_want) <= budget {
            (http_want, mqtt_want)
        } else {
            let total = (http_want as u128) + (mqtt_want as u128);
            let http = ((budget as u128) * (http_want as u128) / total).max(1) as usize;
            let mqtt = if mqtt_on { budget.saturating_sub(http).max(1) } else { 0 };
            tracing::warn!(
                open_files_limit = limit,
                wanted_http = http_want,
                wanted_mqtt = mqtt_want,
                http_max_connections = http,
                mqtt_max_connections = mqtt,
                "http.max_connections + mqtt.max_connections exceed what the open files limit allows; lowered (raise the hard limit, `ulimit -Hn`, to keep them)"
            );
            (http, mqtt)
        }
    };
    config.http.max_connections = http.max(1);
    if mqtt_on {
        config.mqtt.max_connections = mqtt.max(1);
    }
    tracing::info!(
        open_files_limit = limit,
        reserved_for_files = limit.map(conn::reserved_files),
        http_max_connections = config.http.max_connections,
        mqtt_max_connections = mqtt_on.then_some(config.mqtt.max_connections),
        "connection caps"
    );
}

/// Starts a server on `listeners` and serves until `shutdown` completes.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    Server::start(config, listeners).await?.wait(shutdown).await
}
