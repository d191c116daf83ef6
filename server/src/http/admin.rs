//! Database administration: `POST /api/v1/databases?name=NAME` creates a database (201, or
//! 200 if it existed), `GET /api/v1/databases` lists them, and `POST /api/v2/buckets` (body
//! `{"name": "..."}`) is the subset of InfluxDB 2.x's bucket API that client libraries'
//! `create_bucket` calls. All need an admin token when auth is on.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use strata_auth::Access;

use super::{ApiError, AppState};

#[derive(Debug, Default, Deserialize)]
pub struct DatabaseParams {
    pub name: Option<String>,
    pub p: Option<String>,
}

pub async fn create_database(
    State(st): State<AppState>,
    params: Result<Query<DatabaseParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    st.authorize(&headers, p.p.as_deref(), Access::Admin)?;
    let name = p
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("missing query parameter \"name\"".into()))?;
    let created = create(&st, name.clone()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "name": name, "created": created }))).into_response())
}

pub async fn list_databases(
    State(st): State<AppState>,
    params: Result<Query<DatabaseParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    st.authorize(&headers, p.p.as_deref(), Access::Admin)?;
    let mut dbs = st.engine.databases();
    dbs.sort();
    Ok(Json(json!({ "databases": dbs })).into_response())
}

/// Largest `POST /api/v2/buckets` body: a name and a few settings.
const BUCKET_MAX_BODY: usize = 64 << 10;

#[derive(Debug, Deserialize)]
struct BucketRequest {
    name: String,
}

pub async fn create_bucket(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Authorized before the body is read.
    st.authorize(&headers, None, Access::Admin)?;
    let body = super::body::read_bounded(body, BUCKET_MAX_BODY, st.config.http.body_timeout.get()).await?;
    let req: BucketRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid bucket request: {e}")))?;
    let created = create(&st, req.name.clone()).await?;
    if !created {
        // InfluxDB answers 422 for an existing bucket; 201 either way lets scripts be re-run.
        tracing::debug!(db = %req.name, "bucket exists");
    }
    Ok((StatusCode::CREATED, Json(json!({ "id": req.name, "name": req.name, "retentionRules": [] })))
        .into_response())
}

/// Creates `name`; returns whether it was new.
async fn create(st: &AppState, name: String) -> Result<bool, ApiError> {
    strata_engine::validate_db_name(&name)?;
    if st.engine.database_exists(&name) {
        return Ok(false);
    }
    let engine = st.engine.clone();
    let n = name.clone();
    tokio::task::spawn_blocking(move || engine.create_database(&n))
        .await
        .map_err(|e| ApiError::Internal(format!("create task failed: {e}")))??;
    tracing::info!(db = %name, "created database");
    Ok(true)
}
