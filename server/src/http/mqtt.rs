//! MQTT administration over HTTP (`docs/mqtt.md`), all under `/api/v1/mqtt`, all needing an
//! admin token when auth is on:
//!
//! - `GET  /api/v1/mqtt/devices`: every known device's status; `GET .../devices/{device}`: one.
//! - `GET  /api/v1/mqtt/dead-letters?after=ID&limit=N`: dead letters, oldest first.
//! - `POST /api/v1/mqtt/dead-letters/replay?id=ID&limit=N`: writes them again (all, oldest
//!   first up to `limit`, or the one `id`); the ones stored whole are deleted.
//! - `DELETE /api/v1/mqtt/dead-letters/{id}`.
//! - `POST /api/v1/mqtt/commands/{device}/{subtopic...}?qos=0|1`: the body is published to
//!   `{command_prefix}/{device}/{subtopic}` for the devices subscribed to it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use strata_auth::Access;
use strata_mqtt::sessions::Command;
use strata_mqtt::topic::valid_device_id;
use strata_mqtt::{Broker, StoreError};

use super::{ApiError, AppState};

/// The routes, to be merged into the main router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/mqtt/devices", get(list_devices))
        .route("/api/v1/mqtt/devices/:device", get(get_device))
        .route("/api/v1/mqtt/dead-letters", get(list_dead_letters))
        .route("/api/v1/mqtt/dead-letters/replay", post(replay))
        .route("/api/v1/mqtt/dead-letters/:id", delete(delete_dead_letter))
        .route("/api/v1/mqtt/commands/:device/*subtopic", post(publish_command))
}

fn broker(st: &AppState, headers: &HeaderMap) -> Result<Arc<Broker>, ApiError> {
    st.authorize(headers, None, Access::Admin)?;
    st.mqtt
        .get()
        .cloned()
        .ok_or_else(|| ApiError::NotFound("the MQTT listener is off (mqtt.enabled = false)".into()))
}

async fn list_devices(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let b = broker(&st, &headers)?;
    let devices = b.status.list();
    let online = devices.iter().filter(|d| d.online).count();
    Ok(Json(json!({ "online": online, "devices": devices })).into_response())
}

async fn get_device(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(device): Path<String>,
) -> Result<Response, ApiError> {
    let b = broker(&st, &headers)?;
    let s = b
        .status
        .get(&device)
        .ok_or_else(|| ApiError::NotFound(format!("no device {device:?} has connected")))?;
    Ok(Json(s).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct ListParams {
    after: Option<u64>,
    limit: Option<usize>,
    id: Option<u64>,
}

async fn list_dead_letters(
    State(st): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let b = broker(&st, &headers)?;
    let limit = p.limit.unwrap_or(100).min(1000);
    let after = p.after.unwrap_or(0);
    let letters = tokio::task::spawn_blocking({
        let b = b.clone();
        move || b.dead_letters.list(after, limit)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let items: Vec<_> = letters
        .iter()
        .map(|d| {
            let payload = d.payload();
            json!({
                "id": d.id, "time_ms": d.time_ms, "client_id": d.client_id, "device": d.device,
                "topic": d.topic, "qos": d.qos, "reason": d.reason,
                "payload": String::from_utf8_lossy(&payload), "payload_base64": d.payload_base64,
            })
        })
        .collect();
    Ok(Json(json!({ "total": b.dead_letters.len(), "dead_letters": items })).into_response())
}

async fn replay(
    State(st): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let b = broker(&st, &headers)?;
    let limit = p.limit.unwrap_or(1000).min(10_000);
    let ids = p.id.map(|i| vec![i]);
    let r = tokio::task::spawn_blocking(move || b.replay(ids.as_deref(), limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let strata_mqtt::Replayed { replayed: ok, failed } = r.map_err(|e| match e {
        StoreError::Engine(e) => ApiError::from(e),
        StoreError::Overloaded => ApiError::Overloaded,
    })?;
    let failed: Vec<_> =
        failed.into_iter().map(|(id, reason)| json!({ "id": id, "reason": reason })).collect();
    Ok(Json(json!({ "replayed": ok, "failed": failed })).into_response())
}

async fn delete_dead_letter(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    let b = broker(&st, &headers)?;
    let removed = tokio::task::spawn_blocking(move || b.dead_letters.remove(id))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !removed {
        return Err(ApiError::NotFound(format!("no dead letter {id}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize)]
struct CommandParams {
    qos: Option<u8>,
    /// Message expiry: `30s`, `5m`, ... or plain seconds. Undelivered after it, the command is
    /// dropped; 5.0 devices get the time left in the PUBLISH's Message Expiry Interval.
    expiry: Option<String>,
}

/// Parses `expiry`: a humantime duration (`30s`, `2h`) or whole seconds; at least 1 s and at
/// most what a 5.0 Message Expiry Interval holds (u32 seconds).
fn parse_expiry(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("expiry {s:?}: {e}"))?,
    };
    if d < Duration::from_secs(1) || d.as_secs() > u64::from(u32::MAX) {
        return Err(format!("expiry {s:?}: between 1s and {} seconds", u32::MAX));
    }
    Ok(d)
}

async fn publish_command(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path((device, subtopic)): Path<(String, String)>,
    params: Result<Query<CommandParams>, QueryRejection>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    // Authorized before the body is read.
    let b = broker(&st, &headers)?;
    if !valid_device_id(&device) {
        return Err(ApiError::BadRequest(format!("{device:?} is not a device id")));
    }
    let subtopic = subtopic.trim_start_matches('/');
    if subtopic.is_empty() || subtopic.contains(['+', '#']) || !rumqttc::valid_topic(subtopic) {
        return Err(ApiError::BadRequest(format!("{subtopic:?} is not a topic")));
    }
    let qos = match p.qos.unwrap_or(1) {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        q => return Err(ApiError::BadRequest(format!("qos {q}: only 0 and 1 are supported"))),
    };
    let max = b.config.max_packet_size.as_usize();
    let body = match super::body::read_bounded(body, max, st.config.http.body_timeout.get()).await {
        Err(ApiError::PayloadTooLarge { .. }) => {
            return Err(ApiError::BadRequest("command payload larger than mqtt.max_packet_size".into()))
        }
        r => r?,
    };
    let expires_at_ms = match p.expiry.as_deref() {
        Some(e) => {
            let d = parse_expiry(e).map_err(ApiError::BadRequest)?;
            Some(strata_mqtt::status::now_ms().saturating_add(d.as_millis() as u64))
        }
        None => None,
    };
    let topic = format!("{}/{device}/{subtopic}", b.config.command_prefix);
    let d = b.publish_command(&Command { topic: topic.clone(), payload: body, qos, expires_at_ms });
    if d.queued > 0 {
        // "queued" means kept for the offline device across a restart too: save before
        // answering.
        let saver = b.clone();
        match tokio::task::spawn_blocking(move || saver.save_sessions()).await {
            Ok(Ok(())) => {}
            _ => return Err(ApiError::Internal("cannot save the persistent MQTT sessions".into())),
        }
    }
    tracing::info!(topic = %topic, delivered = d.delivered, queued = d.queued, dropped = d.dropped, "MQTT command published");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "topic": topic, "delivered": d.delivered, "queued": d.queued, "dropped": d.dropped })),
    )
        .into_response())
}
