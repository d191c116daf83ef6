//! Errors of planning and executing statements. Messages follow InfluxDB's where a client
//! might see both.

use crate::condition::TimeConditionError;

/// Why a statement failed. Shown to clients in `results[i].error`.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("database name required")]
    DatabaseRequired,
    #[error("database not found: {name}")]
    DatabaseNotFound { name: String },
    #[error(transparent)]
    TimeCondition(#[from] TimeConditionError),
    #[error("mixing aggregate and non-aggregate queries is not supported")]
    MixedAggregate,
    #[error("{function}: {reason}")]
    InvalidCall { function: String, reason: String },
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    #[error("invalid tz: unknown time zone {zone:?}")]
    UnknownTimeZone { zone: String },
    #[error("query timeout of {limit_ms} ms exceeded (raise query.timeout or narrow the query)")]
    Timeout { limit_ms: u64 },
    #[error("max-select-series limit exceeded: ({count}/{limit})")]
    TooManySeries { count: u64, limit: u64 },
    #[error("max-select-point limit exceeded: ({count}/{limit}) points scanned")]
    TooManyPointsScanned { count: u64, limit: u64 },
    #[error("max-select-point limit exceeded: more than {limit} points returned")]
    TooManyPointsReturned { limit: u64 },
    #[error("max-select-buckets limit exceeded: ({count}/{limit})")]
    TooManyBuckets { count: u64, limit: u64 },
    #[error(
        "query memory limit exceeded: more than {limit} bytes (raise query.max_memory or narrow the query)"
    )]
    MemoryExceeded { limit: u64 },
    #[error("retention policy not found: {name}")]
    RetentionPolicyNotFound { name: String },
    #[error("{0}")]
    Invalid(String),
    #[error("INTO {measurement}: {error}")]
    IntoPoint { measurement: String, error: strata_engine::PointError },
    #[error("partial write: {rejected} points rejected ({reason}), {written} written")]
    PartialWrite { written: u64, rejected: u64, reason: String },
    /// The consumer of a streamed result stopped taking it (the client closed the connection).
    #[error("query cancelled: the client stopped reading the answer")]
    Cancelled,
    #[error(transparent)]
    Read(#[from] strata_engine::ReadError),
    #[error(transparent)]
    Lifecycle(#[from] strata_engine::LifecycleError),
    #[error(transparent)]
    Write(#[from] strata_engine::WriteError),
}

impl QueryError {
    pub(crate) fn invalid_call(function: &str, reason: impl Into<String>) -> QueryError {
        QueryError::InvalidCall { function: function.to_owned(), reason: reason.into() }
    }

    /// True for limit violations (the server may count them separately).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            QueryError::Timeout { .. }
                | QueryError::TooManySeries { .. }
                | QueryError::TooManyPointsScanned { .. }
                | QueryError::TooManyPointsReturned { .. }
                | QueryError::TooManyBuckets { .. }
                | QueryError::MemoryExceeded { .. }
        )
    }
}
