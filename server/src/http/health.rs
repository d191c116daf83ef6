//! Liveness and readiness: `/ping` (InfluxDB clients call it before writing), `/health`
//! (InfluxDB 2.x's JSON shape) and `/ready` (503 while shutting down or once the engine is
//! poisoned, so a load balancer stops sending writes). None of them needs a token.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{AppState, VERSION_HEADER};

#[derive(Debug, Default, Deserialize)]
pub struct PingParams {
    pub verbose: Option<String>,
}

/// `GET|HEAD /ping`: 204 (the version is in `X-Influxdb-Version`, added to every response);
/// `?verbose=true` answers 200 with a JSON body, as InfluxDB 1.x does.
pub async fn ping(Query(p): Query<PingParams>) -> Response {
    if p.verbose.as_deref().is_some_and(|v| v == "true" || v == "1") {
        return Json(json!({ "version": VERSION_HEADER })).into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

fn problem(st: &AppState) -> Option<&'static str> {
    if st.engine.is_poisoned() {
        Some("storage engine is poisoned by an I/O error; restart the server")
    } else if st.shutting_down.load(Ordering::Acquire) {
        Some("shutting down")
    } else {
        None
    }
}

/// `GET /health`: 200 `{"status": "pass", ...}`, or 503 `{"status": "fail", ...}`.
pub async fn health(State(st): State<AppState>) -> Response {
    let (status, state, message) = match problem(&st) {
        None => (StatusCode::OK, "pass", "ready for queries and writes"),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, "fail", why),
    };
    let body = json!({
        "name": "strata",
        "message": message,
        "status": state,
        "checks": [],
        "version": env!("CARGO_PKG_VERSION"),
        "commit": "",
    });
    (status, Json(body)).into_response()
}

/// `GET /ready`: 200 `{"status": "ready", "started": ..., "up": ...}` or 503.
pub async fn ready(State(st): State<AppState>) -> Response {
    if let Some(why) = problem(&st) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "message": why })))
            .into_response();
    }
    let up = SystemTime::now().duration_since(st.started).unwrap_or_default();
    let up = humantime::format_duration(std::time::Duration::from_secs(up.as_secs())).to_string();
    let started = humantime::format_rfc3339_seconds(st.started).to_string();
    Json(json!({ "status": "ready", "started": started, "up": up })).into_response()
}
