//! `SELECT ... INTO target FROM ...`: the result rows written back as points.
//!
//! As InfluxDB does it: each result row becomes one point of the target measurement at the
//! row's time; the row's columns (minus `time`) are the fields, null cells are left out and
//! rows with no non-null cell are skipped; the `GROUP BY` tags of the row's series become the
//! point's tags (so `GROUP BY time(1m), *` keeps every series apart, and without it the
//! series merge). The answer is one series `result` with the number of points `written`, at
//! time 0. The points go through [`Engine::write`](strata_engine::Engine::write), the write
//! HTTP ingest uses, so they are durable (per the sync policy) when the statement answers.

use strata_engine::{FieldValue, WriteBatch};

use super::{resolve_database, QueryContext};
use crate::ast::{Measurement, MeasurementName};
use crate::error::QueryError;
use crate::result::{Series, Value};

/// Points per engine write: bounds the size of one WAL record and of the batch in memory.
const BATCH_POINTS: usize = 10_000;

/// The database and measurement `into` names; the database defaults to the statement's.
pub(crate) fn target(
    ctx: &QueryContext<'_>,
    into: &Measurement,
    source_db: &str,
) -> Result<(String, String), QueryError> {
    let MeasurementName::Name(name) = &into.name else {
        return Err(QueryError::Invalid("INTO: a regex cannot name the target measurement".into()));
    };
    let db = match &into.database {
        Some(d) => resolve_database(ctx, Some(d))?,
        None => source_db.to_owned(),
    };
    Ok((db, name.clone()))
}

/// Writes `series` (times still `Value::Time`) into `db`.`measurement`; returns the answer.
pub(crate) fn write_into(
    ctx: &QueryContext<'_>,
    db: &str,
    measurement: &str,
    series: &[Series],
) -> Result<Vec<Series>, QueryError> {
    let mut written: i64 = 0;
    let mut batch = WriteBatch::new();
    let mut in_batch = 0usize;
    for s in series {
        for row in &s.values {
            let Some(Value::Time(t)) = row.first() else {
                debug_assert!(false, "result rows start with their time");
                continue;
            };
            if row[1..].iter().all(Value::is_null) {
                continue;
            }
            {
                let mut p = batch.point(measurement);
                for (k, v) in s.tags.iter().flatten() {
                    // InfluxDB drops empty tag values (a series without the tag).
                    if !v.is_empty() {
                        p.tag(k, v);
                    }
                }
                for (col, v) in s.columns.iter().zip(row).skip(1) {
                    let fv = match v {
                        Value::Null | Value::Time(_) | Value::ZonedTime { .. } => continue,
                        Value::Float(x) => FieldValue::F64(*x),
                        Value::Integer(x) => FieldValue::I64(*x),
                        Value::Unsigned(x) => FieldValue::U64(*x),
                        Value::Boolean(x) => FieldValue::Bool(*x),
                        Value::String(x) => FieldValue::Str(x),
                    };
                    p.field(col, fv);
                }
                p.finish(*t)
                    .map_err(|e| QueryError::IntoPoint { measurement: measurement.to_owned(), error: e })?;
            }
            in_batch += 1;
            if in_batch == BATCH_POINTS {
                written += flush(ctx, db, &batch)?;
                batch = WriteBatch::new();
                in_batch = 0;
            }
        }
    }
    if in_batch > 0 {
        written += flush(ctx, db, &batch)?;
    }
    Ok(vec![Series {
        name: "result".into(),
        tags: None,
        columns: vec!["time".into(), "written".into()],
        values: vec![vec![Value::Time(0), Value::Integer(written)]],
    }])
}

fn flush(ctx: &QueryContext<'_>, db: &str, batch: &WriteBatch) -> Result<i64, QueryError> {
    let outcome = ctx.engine.write(db, batch)?;
    if let Some(r) = outcome.rejected.first() {
        return Err(QueryError::PartialWrite {
            written: outcome.points_written as u64,
            rejected: outcome.rejected.len() as u64,
            reason: r.reason.to_string(),
        });
    }
    Ok(outcome.points_written as i64)
}
