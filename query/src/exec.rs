//! Statement execution: `SELECT` ([`select`]) and the meta statements ([`meta`]).
//!
//! [`execute`] runs the statements of one request in order and stops at the first error, as
//! InfluxDB does; each gets a [`StatementResult`]. The executor reads through
//! [`source::SeriesSource`], one series at a time.

pub mod agg;
pub mod eval;
mod into;
mod last_value;
mod meta;
mod select;
pub mod source;
pub mod transform;
pub mod tz;

use std::time::Instant;

use strata_engine::Engine;

use crate::ast::{MeasurementName, Source, Statement};
use crate::error::QueryError;
use crate::limits::{Meter, QueryLimits};
use crate::result::{Series, StatementResult};

pub use select::{to_tag_predicate, STREAM_PART_ROWS};

/// What a query runs against.
#[derive(Clone, Copy)]
pub struct QueryContext<'a> {
    pub engine: &'a Engine,
    /// The `db` parameter; statements may name another with `ON db` or `db.rp.m`.
    pub database: Option<&'a str>,
    /// `now()`, read once per request so every statement sees the same instant.
    pub now_ns: i64,
    pub limits: QueryLimits,
    /// When the whole request must be done (from `limits.timeout`).
    pub deadline: Option<Instant>,
    /// Aggregate queries over at least this many series are split over the cores (rayon's
    /// global pool, one thread per core); smaller ones run on the calling thread, where
    /// handing work to other threads costs more than it saves. Default
    /// [`PARALLEL_MIN_SERIES`]; tests set 1 to run every query split.
    pub parallel_min_series: usize,
    /// An aggregate grouped by time over fewer series than `parallel_min_series` is split
    /// over the cores by time instead (one contiguous run of its windows per thread) when its
    /// range spans at least this many nanoseconds. Default [`PARALLEL_MIN_SPAN_NS`]; tests set
    /// 0 to split every such query.
    pub parallel_min_span_ns: i64,
}

/// Default of [`QueryContext::parallel_min_span_ns`]: two days, two partitions at the default
/// partition duration; a shorter range of a few series is cheaper to read on one thread than
/// to hand over.
pub const PARALLEL_MIN_SPAN_NS: i64 = 2 * 86_400 * 1_000_000_000;

/// Default of [`QueryContext::parallel_min_series`].
pub const PARALLEL_MIN_SERIES: usize = 64;

impl<'a> QueryContext<'a> {
    pub fn new(engine: &'a Engine, database: Option<&'a str>, now_ns: i64, limits: QueryLimits) -> Self {
        let deadline = limits.timeout.map(|t| Instant::now() + t);
        QueryContext {
            engine,
            database,
            now_ns,
            limits,
            deadline,
            parallel_min_series: PARALLEL_MIN_SERIES,
            parallel_min_span_ns: PARALLEL_MIN_SPAN_NS,
        }
    }
}

/// Runs `statements` in order; stops after the first failing one (its result carries the
/// error).
pub fn execute(ctx: &QueryContext<'_>, statements: &[Statement]) -> Vec<StatementResult> {
    let mut out = Vec::with_capacity(statements.len());
    for (i, stmt) in statements.iter().enumerate() {
        match execute_statement(ctx, stmt) {
            Ok(series) => out.push(StatementResult { statement_id: i, series, error: None }),
            Err(e) => {
                tracing::debug!(statement = i, error = %e, "statement failed");
                out.push(StatementResult { statement_id: i, series: Vec::new(), error: Some(e.to_string()) });
                break;
            }
        }
    }
    out
}

/// Runs one statement.
pub fn execute_statement(ctx: &QueryContext<'_>, stmt: &Statement) -> Result<Vec<Series>, QueryError> {
    let mut meter = Meter::new(ctx.limits, ctx.deadline);
    meter.check_time()?;
    match stmt {
        Statement::Select(s) => select::select(ctx, ctx.engine, s, &mut meter),
        other => meta::execute_meta(ctx, other, &mut meter),
    }
}

/// Runs one statement, handing its result series to `emit` as they are produced
/// (`chunked=true`), whole or in parts: `emit(series, more)`, where `more` means the next call
/// continues the same series (and carries only rows). See [`select::select_each`] for what is
/// held meanwhile. An error from `emit` stops the statement and is returned as is.
pub fn execute_statement_each(
    ctx: &QueryContext<'_>,
    stmt: &Statement,
    emit: &mut dyn FnMut(Series, bool) -> Result<(), QueryError>,
) -> Result<(), QueryError> {
    let mut meter = Meter::new(ctx.limits, ctx.deadline);
    meter.check_time()?;
    match stmt {
        Statement::Select(s) => select::select_each(ctx, ctx.engine, s, &mut meter, emit),
        other => {
            for s in meta::execute_meta(ctx, other, &mut meter)? {
                emit(s, false)?;
            }
            Ok(())
        }
    }
}

/// The database a statement works on: the one it names, else the request's.
pub(crate) fn resolve_database(ctx: &QueryContext<'_>, named: Option<&str>) -> Result<String, QueryError> {
    let db = named.or(ctx.database).filter(|d| !d.is_empty()).ok_or(QueryError::DatabaseRequired)?;
    if !ctx.engine.database_exists(db) {
        return Err(QueryError::DatabaseNotFound { name: db.to_owned() });
    }
    Ok(db.to_owned())
}

/// The measurements `sources` name (regexes matched against the database's), sorted and
/// unique; every measurement when `sources` is empty.
pub(crate) fn resolve_measurements(
    ctx: &QueryContext<'_>,
    db: &str,
    sources: &[Source],
) -> Result<Vec<String>, QueryError> {
    let all = ctx.engine.measurements(db)?;
    if sources.is_empty() {
        return Ok(all);
    }
    let mut out: Vec<String> = Vec::new();
    for Source::Measurement(m) in sources {
        match &m.name {
            MeasurementName::Name(n) => {
                if all.contains(n) {
                    out.push(n.clone())
                }
            }
            MeasurementName::Regex(re) => out.extend(all.iter().filter(|n| re.is_match(n)).cloned()),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
