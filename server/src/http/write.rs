//! The write endpoints: `POST /api/v2/write` (InfluxDB 2.x), `POST /write` (1.x) and
//! `POST /api/v1/json` (Strata's JSON format).
//!
//! A request goes: authorize -> check parameters -> read the body (bounded in size and time,
//! reserving write memory as its bytes arrive, not from the declared `Content-Length`: a
//! client that declares 32 MiB and trickles a byte a second holds a byte a second) -> on a
//! blocking thread: gunzip (bounded), decode into one
//! batch, create the database if needed, `Engine::write` (which returns once the batch is
//! durable per the sync policy) -> 204, or 400 listing the refused lines while the good ones
//! are stored. The blocking thread keeps decoding (CPU) and the engine's durability wait off
//! the async workers.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::Deserialize;
use strata_auth::Access;
use strata_engine::{WriteBatch, WriteOutcome};
use strata_ingest::budget::Reservation;
use strata_ingest::ratelimit::ClientKey;
use strata_ingest::{Format, PointContext};
use strata_lineproto::Precision;
use tokio::runtime::Handle;

use super::error::PartialWrite;
use super::{ApiError, AppState, Shared};
use crate::config::ByteSize;

/// Query parameters of `POST /api/v2/write`.
#[derive(Debug, Default, Deserialize)]
pub struct V2Params {
    /// The database. `db/rp` (the 1.x compatibility form) is accepted; `rp` is ignored.
    pub bucket: Option<String>,
    /// Accepted and ignored: Strata has no organizations.
    pub org: Option<String>,
    #[serde(rename = "orgID")]
    pub org_id: Option<String>,
    pub precision: Option<String>,
}

/// Query parameters of `POST /write`.
#[derive(Debug, Default, Deserialize)]
pub struct V1Params {
    pub db: Option<String>,
    /// Accepted and ignored: retention is per database.
    pub rp: Option<String>,
    pub precision: Option<String>,
    /// Ignored: the token (`p`) alone identifies the caller.
    pub u: Option<String>,
    pub p: Option<String>,
}

/// Query parameters of `POST /api/v1/json`.
#[derive(Debug, Default, Deserialize)]
pub struct JsonParams {
    pub db: Option<String>,
    /// Same as `db`, for clients that speak of buckets.
    pub bucket: Option<String>,
    pub precision: Option<String>,
    pub u: Option<String>,
    pub p: Option<String>,
}

pub async fn write_v2(
    State(st): State<AppState>,
    params: Result<Query<V2Params>, QueryRejection>,
    peer: Option<ConnectInfo<SocketAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let bucket = required(p.bucket, "bucket")?;
        let db = bucket.split('/').next().unwrap_or_default();
        let precision = parse_precision(p.precision.as_deref())?;
        ingest(&st, db, precision, Format::LineProtocol, &headers, None, peer, body).await
    }
    .await;
    respond(&st, result)
}

pub async fn write_v1(
    State(st): State<AppState>,
    params: Result<Query<V1Params>, QueryRejection>,
    peer: Option<ConnectInfo<SocketAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let db = required(p.db, "db")?;
        let precision = parse_precision(p.precision.as_deref())?;
        ingest(&st, &db, precision, Format::LineProtocol, &headers, p.p.as_deref(), peer, body).await
    }
    .await;
    respond(&st, result)
}

pub async fn write_json(
    State(st): State<AppState>,
    params: Result<Query<JsonParams>, QueryRejection>,
    peer: Option<ConnectInfo<SocketAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let db = required(p.db.or(p.bucket), "db")?;
        let precision = parse_precision(p.precision.as_deref())?;
        ingest(&st, &db, precision, Format::Json, &headers, p.p.as_deref(), peer, body).await
    }
    .await;
    respond(&st, result)
}

fn required(v: Option<String>, name: &str) -> Result<String, ApiError> {
    v.filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("missing query parameter {name:?}")))
}

fn parse_precision(p: Option<&str>) -> Result<Precision, ApiError> {
    match p {
        None | Some("") => Ok(Precision::Nanoseconds),
        Some(p) => {
            p.parse().map_err(|e: strata_lineproto::UnknownPrecision| ApiError::BadRequest(e.to_string()))
        }
    }
}

fn respond(st: &Shared, result: Result<(), ApiError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            if let Some(r) = e.request_reject() {
                st.metrics.ingest.request_rejected(r);
            }
            match &e {
                ApiError::PartialWrite(p) => {
                    tracing::debug!(rejected = p.rejected_total, written = p.points_written, "partial write")
                }
                e if e.status().is_server_error() => tracing::warn!(error = %e, "write failed"),
                e => tracing::debug!(error = %e, "write refused"),
            }
            e.into_response()
        }
    }
}

/// True for `Content-Encoding: gzip`; 415 for encodings other than gzip and identity.
fn is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else { return Ok(false) };
    let v = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match v.as_str() {
        "" | "identity" => Ok(false),
        "gzip" | "x-gzip" => Ok(true),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Encoding {v:?}: send gzip or identity"
        ))),
    }
}

fn content_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest("invalid Content-Length".into())),
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The shared body of the three write endpoints.
#[allow(clippy::too_many_arguments)]
async fn ingest(
    st: &AppState,
    db: &str,
    precision: Precision,
    format: Format,
    headers: &HeaderMap,
    query_password: Option<&str>,
    peer: Option<ConnectInfo<SocketAddr>>,
    body: Body,
) -> Result<(), ApiError> {
    let grant = st.authorize(headers, query_password, Access::Write(db))?;
    // Rate limits apply per token, or per client IP when auth is off; checked before the
    // body is read so an over-limit client costs little.
    let client = match (&grant, peer) {
        (Some(g), _) => ClientKey::Token(g.id.to_string()),
        (None, Some(ConnectInfo(addr))) => ClientKey::Ip(addr.ip()),
        (None, None) => ClientKey::Anonymous,
    };
    let timeout = st.config.http.body_timeout;
    let max = st.config.limits.max_body_size;
    if let Err(e) = st.ingest.rate_limit.admit(&client) {
        discard_body(body, max, timeout.get()).await;
        return Err(e.into());
    }
    strata_engine::validate_db_name(db)?;
    if !st.config.storage.auto_create_databases && !st.engine.database_exists(db) {
        return Err(ApiError::NotFound(format!(
            "database {db:?} does not exist (storage.auto_create_databases is off; create it with POST /api/v1/databases)"
        )));
    }
    let gzip = is_gzip(headers)?;
    let declared = content_length(headers)?;
    if declared.is_some_and(|n| n as u64 > max.bytes()) {
        return Err(ApiError::PayloadTooLarge { what: "the", limit: max });
    }
    let mut reservation = match st.ingest.write_memory.reserve(0).await {
        Ok(r) => r,
        Err(_) => {
            discard_body(body, max, timeout.get()).await;
            return Err(ApiError::WriteMemoryExhausted);
        }
    };
    let raw = tokio::time::timeout(timeout.get(), read_body(st, body, max, declared, &mut reservation))
        .await
        .map_err(|_| ApiError::BodyTimeout(timeout.to_string()))?
        .map_err(|e| match e {
            ApiError::BodyTimeout(_) => ApiError::BodyTimeout(timeout.to_string()),
            e => e,
        })?;
    st.metrics.ingest.bytes_received.fetch_add(raw.len() as u64, Ordering::Relaxed);
    let job = WriteJob {
        st: st.clone(),
        db: db.to_owned(),
        precision,
        format,
        gzip,
        reservation,
        rt: Handle::current(),
        client,
    };
    tokio::task::spawn_blocking(move || job.run(raw))
        .await
        .map_err(|e| ApiError::Internal(format!("write task failed: {e}")))?
}

/// Reads and drops the body of a request refused before it was read (over its rate limit, no
/// write memory), up to `max` bytes or `timeout`. Answering without reading it would close the
/// connection with request bytes unread, and the kernel then resets it: the client would see
/// a broken connection instead of the 429/503 and its `Retry-After`. Nothing is kept.
async fn discard_body(mut body: Body, max: ByteSize, timeout: std::time::Duration) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > max.bytes() {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

/// Bytes of buffer allocated up front for a body, whatever its declared length: the rest grows
/// (doubling, and charged) as bytes arrive. Small, because a client that trickles its body
/// holds it uncharged: 16 KiB x `http.max_connections` at worst. A 1 MiB body costs six
/// reallocations (about 1 MiB copied), little next to decoding it.
const BODY_BUFFER_START: usize = 16 << 10;

/// Reads the whole body, refusing more than `max` bytes and charging the write memory for
/// what arrives beyond the reservation.
async fn read_body(
    st: &Shared,
    mut body: Body,
    max: ByteSize,
    declared: Option<usize>,
    reservation: &mut Reservation,
) -> Result<Vec<u8>, ApiError> {
    let mut buf = st.ingest.buffers.take(declared.unwrap_or(0).min(max.as_usize()).min(BODY_BUFFER_START));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| super::body::read_error(&e, st.config.http.body_timeout.get()))?;
        let Ok(data) = frame.into_data() else { continue };
        let len = buf.len() + data.len();
        if len as u64 > max.bytes() {
            return Err(ApiError::PayloadTooLarge { what: "the", limit: max });
        }
        let missing = len.saturating_sub(reservation.bytes() as usize);
        if missing > 0 {
            reservation.grow(missing).await.map_err(|_| ApiError::WriteMemoryExhausted)?;
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf)
}

/// The blocking part of a write.
struct WriteJob {
    st: AppState,
    db: String,
    precision: Precision,
    format: Format,
    gzip: bool,
    /// Released when the job ends (with its buffers).
    reservation: Reservation,
    rt: Handle,
    client: ClientKey,
}

impl WriteJob {
    fn run(mut self, raw: Vec<u8>) -> Result<(), ApiError> {
        let st = self.st.clone();
        let st = &*st;
        let max = st.config.limits.max_body_size;
        let body = if self.gzip {
            let inflated = gunzip(&raw, max, &mut self.reservation, &self.rt)?;
            st.ingest.buffers.give(raw);
            inflated
        } else {
            raw
        };
        let m = &st.metrics.ingest;
        m.bytes_decoded.fetch_add(body.len() as u64, Ordering::Relaxed);
        m.requests.fetch_add(1, Ordering::Relaxed);
        // The batch is about as large as the text; its bookkeeping adds less than as much again.
        let estimate = body.len() * 2;
        self.grow(estimate)?;
        let now = now_ns();
        let batch = WriteBatch::with_buffer(st.ingest.buffers.take(body.len()));
        let ctx = PointContext::default();
        let mut decoded = match self.format {
            Format::LineProtocol => strata_ingest::lineproto::decode_with(
                &body,
                self.precision,
                now,
                &st.ingest.limits,
                &ctx,
                batch,
            ),
            Format::Json => {
                strata_ingest::json::decode_with(&body, self.precision, now, &st.ingest.limits, &ctx, batch)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?
            }
        };
        // Tiny lines make bigger batches than the estimate: charge the difference.
        self.grow(decoded.heap_bytes().saturating_sub(estimate))?;
        let outcome = if decoded.batch.is_empty() {
            WriteOutcome::default()
        } else {
            if !st.engine.database_exists(&self.db) {
                st.engine.create_database(&self.db)?;
                tracing::info!(db = %self.db, "created database on first write");
            }
            st.engine.write(&self.db, &decoded.batch)?
        };
        m.points.fetch_add(outcome.points_written as u64, Ordering::Relaxed);
        m.values.fetch_add(outcome.values_written as u64, Ordering::Relaxed);
        st.ingest.buffers.give(std::mem::take(&mut decoded.batch).into_buffer());
        let errors = decoded.finish(&outcome, &body);
        errors.record(m);
        st.ingest.rate_limit.charge_points(&self.client, outcome.points_written + errors.total);
        let protocol = match self.format {
            Format::LineProtocol => "line",
            Format::Json => "json",
        };
        st.metrics.ingest.by_db.record(
            protocol,
            &self.db,
            outcome.points_written as u64,
            outcome.values_written as u64,
            body.len() as u64,
        );
        st.ingest.buffers.give(body);
        if errors.is_empty() {
            return Ok(());
        }
        Err(ApiError::PartialWrite(PartialWrite {
            points_written: outcome.points_written,
            rejected_total: errors.total,
            rejected: errors.items,
        }))
    }

    fn grow(&mut self, bytes: usize) -> Result<(), ApiError> {
        if bytes == 0 {
            return Ok(());
        }
        self.reservation.grow_blocking(bytes, &self.rt).map_err(|_| ApiError::WriteMemoryExhausted)
    }
}

/// Decompresses a gzip body, refusing more than `max` bytes of output (a small body can
/// inflate a thousandfold) and charging the write memory as the output grows.
fn gunzip(
    data: &[u8],
    max: ByteSize,
    reservation: &mut Reservation,
    rt: &Handle,
) -> Result<Vec<u8>, ApiError> {
    const STEP: usize = 1 << 20;
    let max = max.as_usize();
    let mut out = Vec::new();
    let mut dec = flate2::read::MultiGzDecoder::new(data);
    loop {
        // Read at most one byte past the limit: enough to know the body is too large.
        let step = STEP.min(max + 1 - out.len());
        reservation.grow_blocking(step, rt).map_err(|_| ApiError::WriteMemoryExhausted)?;
        let n = (&mut dec)
            .take(step as u64)
            .read_to_end(&mut out)
            .map_err(|e| ApiError::BadRequest(format!("invalid gzip body: {e}")))?;
        if out.len() > max {
            return Err(ApiError::PayloadTooLarge { what: "the decompressed", limit: ByteSize(max as u64) });
        }
        if n < step {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;
    use std::time::Duration;

    use strata_ingest::budget::WriteMemory;
    use strata_ingest::metrics::IngestMetrics;

    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gunzip_is_capped() {
        let budget =
            WriteMemory::new(64 << 20, Duration::from_millis(10), Arc::new(IngestMetrics::default()));
        let mut r = budget.reserve(0).await.unwrap();
        let rt = Handle::current();
        let small = gz(b"m v=1\n");
        let bomb = gz(&vec![b'a'; 5 << 20]);
        assert!(bomb.len() < 64 << 10);
        let (small_out, bomb_out, junk) = tokio::task::spawn_blocking(move || {
            let a = gunzip(&small, ByteSize::mib(1), &mut r, &rt).map_err(|e| e.to_string());
            let b = gunzip(&bomb, ByteSize::mib(4), &mut r, &rt).map_err(|e| e.to_string());
            let c = gunzip(b"not gzip", ByteSize::mib(4), &mut r, &rt).map_err(|e| e.to_string());
            (a, b, c)
        })
        .await
        .unwrap();
        assert_eq!(small_out.unwrap(), b"m v=1\n");
        assert!(bomb_out.unwrap_err().contains("decompressed"));
        assert!(junk.unwrap_err().contains("gzip"));
    }

    #[test]
    fn parameters() {
        assert_eq!(parse_precision(None).unwrap(), Precision::Nanoseconds);
        assert_eq!(parse_precision(Some("ms")).unwrap(), Precision::Milliseconds);
        assert!(matches!(parse_precision(Some("fortnights")), Err(ApiError::BadRequest(_))));
        let mut h = HeaderMap::new();
        assert!(!is_gzip(&h).unwrap());
        h.insert(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert!(is_gzip(&h).unwrap());
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert_eq!(is_gzip(&h).unwrap_err().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
