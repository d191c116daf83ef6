//! Every error an HTTP handler returns, and the one place that maps errors to status codes.
//!
//! Bodies follow InfluxDB 2.x (`{"code": "invalid", "message": "..."}`, which the 2.x client
//! libraries parse) and carry the same text under `error` for 1.x clients, which read that
//! key. 503 and 429 responses carry `Retry-After`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use strata_auth::AuthError;
use strata_engine::{ReadError, WriteError};
use strata_ingest::BadPoint;

use crate::config::ByteSize;
use crate::metrics::RequestReject;

/// Seconds a client should wait after a 503 before retrying.
pub const RETRY_AFTER_SECS: u32 = 1;

/// A partial write: some lines were refused (the others are stored).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartialWrite {
    /// Points stored.
    pub points_written: usize,
    /// Refused lines or points, all of them (the list below may be capped).
    pub rejected_total: usize,
    /// The first refused lines (at most `limits.max_errors_reported`), in input order.
    pub rejected: Vec<BadPoint>,
}

/// An error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: bad parameters or body.
    #[error("{0}")]
    BadRequest(String),
    /// 400 with the list of refused lines.
    #[error("partial write: {} rejected, {} written{}", .0.rejected_total, .0.points_written, first_reason(.0))]
    PartialWrite(PartialWrite),
    /// 401 or 403.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 403: a browser request from another site (`super::origin`).
    #[error("{0}")]
    CrossSite(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 408: the body did not arrive within `http.body_timeout`.
    #[error("request body not received within {0}")]
    BodyTimeout(String),
    /// 413.
    #[error("request body is larger than {what} limit of {limit}")]
    PayloadTooLarge { what: &'static str, limit: ByteSize },
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503 with `Retry-After`: write memory exhausted.
    #[error("server is busy: too many bytes of writes in flight, retry later")]
    WriteMemoryExhausted,
    /// 503 with `Retry-After`: the engine's flushing is behind.
    #[error("server is overloaded: storage cannot keep up, retry later")]
    Overloaded,
    /// 429 with `Retry-After`: the client is over `limits.client_write_rate`.
    #[error(transparent)]
    RateLimited(#[from] strata_ingest::ratelimit::RateLimited),
    /// 503 with `Retry-After`: the engine cannot open a file right now (out of file
    /// descriptors or a like resource); retrying later can succeed.
    #[error("server is out of resources, retry later: {0}")]
    OutOfResources(String),
    /// 507: the disk is full; nothing acknowledged was lost.
    #[error("{0}")]
    NoSpace(String),
    /// 503 with `Retry-After`: shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// 500: an I/O error or a poisoned engine.
    #[error("internal error: {0}")]
    Internal(String),
    /// 501.
    #[error("{0}")]
    NotImplemented(String),
}

fn first_reason(p: &PartialWrite) -> String {
    match p.rejected.first() {
        Some(b) => match (b.line, b.index) {
            (Some(line), _) => format!("; first: line {line}: {}", b.reason),
            (_, Some(i)) => format!("; first: point {i}: {}", b.reason),
            _ => format!("; first: {}", b.reason),
        },
        None => String::new(),
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::PartialWrite(_) => StatusCode::BAD_REQUEST,
            ApiError::Auth(AuthError::Forbidden { .. }) => StatusCode::FORBIDDEN,
            ApiError::Auth(_) => StatusCode::UNAUTHORIZED,
            ApiError::CrossSite(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::WriteMemoryExhausted
            | ApiError::Overloaded
            | ApiError::ShuttingDown
            | ApiError::OutOfResources(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// InfluxDB 2.x's `code` string for the status.
    fn code(&self) -> &'static str {
        match self.status() {
            StatusCode::BAD_REQUEST => "invalid",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not found",
            StatusCode::REQUEST_TIMEOUT => "request timeout",
            StatusCode::PAYLOAD_TOO_LARGE => "request too large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported media type",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::TOO_MANY_REQUESTS => "too many requests",
            StatusCode::NOT_IMPLEMENTED => "not implemented",
            StatusCode::INSUFFICIENT_STORAGE => "insufficient storage",
            _ => "internal error",
        }
    }

    /// The write-request counter this error bumps (`None`: a partial write, counted by line).
    pub fn request_reject(&self) -> Option<RequestReject> {
        Some(match self {
            ApiError::PartialWrite(_) => return None,
            ApiError::BadRequest(_) | ApiError::UnsupportedMediaType(_) | ApiError::NotImplemented(_) => {
                RequestReject::BadRequest
            }
            ApiError::Auth(AuthError::Forbidden { .. }) | ApiError::CrossSite(_) => RequestReject::Forbidden,
            ApiError::Auth(_) => RequestReject::Unauthorized,
            ApiError::NotFound(_) => RequestReject::DatabaseNotFound,
            ApiError::BodyTimeout(_) => RequestReject::BodyTimeout,
            ApiError::PayloadTooLarge { .. } => RequestReject::BodyTooLarge,
            ApiError::WriteMemoryExhausted => RequestReject::WriteMemory,
            ApiError::Overloaded => RequestReject::Overloaded,
            ApiError::RateLimited(_) => RequestReject::RateLimited,
            ApiError::ShuttingDown
            | ApiError::Internal(_)
            | ApiError::OutOfResources(_)
            | ApiError::NoSpace(_) => RequestReject::Unavailable,
        })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'static str,
    message: &'a str,
    /// The message again, for InfluxDB 1.x clients.
    error: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    partial: Option<&'a PartialWrite>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        let partial = match &self {
            ApiError::PartialWrite(p) => Some(p),
            _ => None,
        };
        let body = Body { code: self.code(), message: &message, error: &message, partial };
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::RateLimited(r) = &self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(r.retry_after_secs));
        } else if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        resp
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::InvalidDatabase { .. } => ApiError::BadRequest(e.to_string()),
            WriteError::DatabaseNotFound { .. } => ApiError::NotFound(e.to_string()),
            WriteError::Overloaded => ApiError::Overloaded,
            WriteError::ShuttingDown => ApiError::ShuttingDown,
            WriteError::OutOfResources { .. } => ApiError::OutOfResources(e.to_string()),
            WriteError::NoSpace { .. } => ApiError::NoSpace(e.to_string()),
            // Poisoned: retrying cannot help until an operator restarts the server.
            WriteError::Poisoned | WriteError::Wal(_) | WriteError::Catalog(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::DatabaseNotFound { .. } => ApiError::NotFound(e.to_string()),
            ReadError::LimitExceeded { .. } => ApiError::BadRequest(e.to_string()),
            ReadError::Segment(_) | ReadError::MissingSegment { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases: Vec<(ApiError, u16)> = vec![
            (ApiError::BadRequest("x".into()), 400),
            (ApiError::Auth(AuthError::MissingCredentials), 401),
            (ApiError::Auth(AuthError::InvalidToken), 401),
            (ApiError::Auth(AuthError::Forbidden { token_id: "t".into(), what: "w".into() }), 403),
            (ApiError::from(WriteError::DatabaseNotFound { name: "x".into() }), 404),
            (ApiError::PayloadTooLarge { what: "the", limit: ByteSize(1) }, 413),
            (ApiError::from(WriteError::Overloaded), 503),
            (ApiError::from(WriteError::Poisoned), 500),
            (ApiError::WriteMemoryExhausted, 503),
            (ApiError::from(strata_ingest::ratelimit::RateLimited { retry_after_secs: 7 }), 429),
        ];
        for (e, want) in cases {
            let resp = e.into_response();
            assert_eq!(resp.status().as_u16(), want);
            assert_eq!(resp.headers().contains_key(header::RETRY_AFTER), want == 503 || want == 429);
            if want == 429 {
                assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
            }
        }
    }
}
