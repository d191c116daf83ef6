//! The HTTP API (axum): routes, shared state, and the per-request middleware.
//!
//! Routes (documented in `docs/http-api.md`):
//! - `POST /api/v2/write`, `POST /write`, `POST /api/v1/json`: writes ([`write`]);
//! - `GET|POST /query`: queries ([`query`]);
//! - `GET|POST /api/v1/databases`, `POST /api/v2/buckets`: databases ([`admin`]);
//! - `POST /api/v1/backup`, `GET /api/v1/backups`: online backups ([`backup`]);
//! - `GET|HEAD /ping`, `GET /health`, `GET /ready`: liveness ([`health`]);
//! - `GET /metrics`: Prometheus text format ([`metrics`]);
//! - `GET /`, `GET /console/{file}`: the web console's embedded files ([`console`]).
//!
//! Every response passes through [`observe`], which gives the request an id (a tracing span
//! field and the `X-Request-Id` header), counts it by route and status, and adds the
//! `X-Influxdb-*` headers that InfluxDB client libraries look for; it also puts the
//! `http.body_timeout` deadline on the request body ([`body`]). Before any handler, cross-site
//! requests are refused ([`origin`]). Errors are mapped to status codes in one place,
//! [`error`]. Connections (cap, header-read and idle timeouts) are [`conn`]'s.
//!
//! Handlers authenticate a request before they read its body and authorize it as soon as
//! they know what it wants (for `/query`, after parsing: the permission depends on the
//! statements).

pub mod admin;
pub mod backup;
pub mod body;
pub mod conn;
pub mod console;
pub mod error;
pub mod health;
pub mod metrics;
pub mod mqtt;
pub mod origin;
pub mod query;
pub mod write;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use strata_auth::{request_token, Access, Auth, Grant};
use strata_engine::Engine;
use strata_ingest::IngestContext;
use tracing::Instrument;

use crate::config::Config;
use crate::metrics::{Metrics, Route};
pub use error::ApiError;

/// Version string sent in `X-Influxdb-Version`.
pub const VERSION_HEADER: &str = concat!("strata-", env!("CARGO_PKG_VERSION"));

/// What every handler shares.
pub struct Shared {
    pub engine: Arc<Engine>,
    pub config: Arc<Config>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    /// What the write routes share with the MQTT listener: the same engine and auth as above,
    /// the limits, the write-memory budget, the buffer pool, the ingest counters and the
    /// per-client rate limits.
    pub ingest: Arc<IngestContext>,
    pub started: SystemTime,
    /// Set when shutdown begins: `/ready` answers 503 from then on.
    pub shutting_down: AtomicBool,
    /// The MQTT listener's state, once it runs (for the `/api/v1/mqtt` routes).
    pub mqtt: std::sync::OnceLock<Arc<strata_mqtt::Broker>>,
    /// `http.addr` is a loopback address (with auth off, `Host` must then be a loopback name:
    /// see [`origin`]).
    pub loopback_listener: bool,
    request_ids: AtomicU64,
    /// Random per process, so ids from two runs do not collide in aggregated logs.
    request_id_prefix: u32,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("engine", &self.engine).finish_non_exhaustive()
    }
}

/// The state handlers extract with `State<AppState>`.
pub type AppState = Arc<Shared>;

impl Shared {
    pub fn new(engine: Arc<Engine>, config: Arc<Config>, auth: Arc<Auth>, metrics: Arc<Metrics>) -> Shared {
        let ingest = Arc::new(IngestContext::new(
            engine.clone(),
            auth.clone(),
            &config.limits,
            metrics.ingest.clone(),
            config.storage.auto_create_databases,
        ));
        Shared {
            ingest,
            loopback_listener: is_loopback_addr(&config.http.addr),
            engine,
            auth,
            metrics,
            started: SystemTime::now(),
            shutting_down: AtomicBool::new(false),
            mqtt: std::sync::OnceLock::new(),
            request_ids: AtomicU64::new(1),
            request_id_prefix: rand::random(),
            config,
        }
    }

    /// Authenticates a request: its token (header, or the 1.x `p` parameter) must be one.
    /// `Ok(None)` when auth is disabled. Checks nothing about what the request wants: see
    /// [`Grant::check`].
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query_password: Option<&str>,
    ) -> Result<Option<Grant>, ApiError> {
        if !self.auth.enabled() {
            return Ok(None);
        }
        let token = request_token(headers, query_password)?;
        self.authenticate_token(token.as_deref())
    }

    /// [`Shared::authenticate`] of a token already taken from the request.
    pub fn authenticate_token(&self, token: Option<&str>) -> Result<Option<Grant>, ApiError> {
        let grant = self.auth.authenticate(token)?;
        if let Some(g) = &grant {
            tracing::Span::current().record("token", &*g.id);
        }
        Ok(grant)
    }

    /// Authorizes a request: its token (header, or the 1.x `p` parameter) must allow `access`.
    /// `Ok(None)` when auth is disabled. For handlers of every route, including `/query`.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        query_password: Option<&str>,
        access: Access<'_>,
    ) -> Result<Option<Grant>, ApiError> {
        if !self.auth.enabled() {
            return Ok(None);
        }
        let token = request_token(headers, query_password)?;
        let grant = self.auth.authorize(token.as_deref(), access)?;
        if let Some(g) = &grant {
            tracing::Span::current().record("token", &*g.id);
        }
        Ok(grant)
    }
}

/// The router with every route and the middleware.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v2/write", post(write::write_v2))
        .route("/write", post(write::write_v1))
        .route("/api/v1/json", post(write::write_json))
        .route("/query", get(query::query_handler).post(query::query_handler))
        .route("/api/v1/databases", get(admin::list_databases).post(admin::create_database))
        .route("/api/v2/buckets", post(admin::create_bucket))
        .route("/api/v1/backup", post(backup::create_backup))
        .route("/api/v1/backups", get(backup::list_backups))
        .route("/ping", get(health::ping).head(health::ping))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(console::index))
        .route("/console/*path", get(console::asset))
        .merge(mqtt::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), origin::refuse_cross_site))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// True when every address `addr` resolves to is a loopback address.
fn is_loopback_addr(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no route {} {}", req.method(), req.uri().path()))
}

/// Request id, span, metrics and common headers for every request. Logs the path, never the
/// query string (it may hold a `p=` token).
async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let n = st.request_ids.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:08x}-{n:x}", st.request_id_prefix);
    let route = Route::from_path(req.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    // The peer's address and port identify the connection (keep-alive requests share it).
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    let span = tracing::info_span!(
        "http",
        id = %id,
        conn = peer.map(tracing::field::display),
        method = %req.method(),
        path = %req.uri().path(),
        token = tracing::field::Empty,
    );
    let start = Instant::now();
    let timeout = st.config.http.body_timeout.get();
    let req = req.map(|b| body::with_deadline(b, timeout));
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    st.metrics.http.record(route, status);
    st.metrics.http.durations[route as usize].observe(start.elapsed());
    let elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
    if resp.status().is_server_error() {
        tracing::warn!(parent: &span, status, elapsed_ms, "request failed");
    } else {
        tracing::debug!(parent: &span, status, elapsed_ms, "request done");
    }
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-request-id", v);
    }
    h.insert("x-influxdb-version", HeaderValue::from_static(VERSION_HEADER));
    h.insert("x-influxdb-build", HeaderValue::from_static("OSS"));
    resp
}
