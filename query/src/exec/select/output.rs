//! Result rows into series: grouping keys, column merging, ORDER BY / LIMIT / OFFSET.

use std::ops::ControlFlow;

use super::plan::*;
use crate::ast::SelectStatement;
use crate::error::QueryError;
use crate::result::{Series, Value};

/// Receives the series of a streamed statement in order, whole or in parts: `(series, more)`,
/// where `more` says further rows of the same series follow in the next call (which then
/// carries only rows in `values`). An error stops the statement (the caller's way to say
/// "the client went away").
pub(crate) type Emit<'e> = dyn FnMut(Series, bool) -> Result<(), QueryError> + 'e;

/// Rows per part when a series is streamed in parts.
pub const STREAM_PART_ROWS: usize = 1024;

/// Merges per-column `(time, value)` sequences (each ascending) into rows by time.
pub(super) fn merge_columns(cols: Vec<Vec<(i64, Value)>>) -> Vec<Vec<Value>> {
    let mut idx = vec![0usize; cols.len()];
    let mut rows = Vec::new();
    loop {
        let t = cols.iter().zip(&idx).filter_map(|(c, &i)| c.get(i).map(|x| x.0)).min();
        let Some(t) = t else { break };
        let mut row = Vec::with_capacity(cols.len() + 1);
        row.push(Value::Time(t));
        for (c, i) in cols.iter().zip(idx.iter_mut()) {
            match c.get(*i) {
                Some((ct, v)) if *ct == t => {
                    row.push(v.clone());
                    *i += 1;
                }
                _ => row.push(Value::Null),
            }
        }
        rows.push(row);
    }
    rows
}

/// Builds an output series: ORDER BY, OFFSET, LIMIT; `None` when no row is left.
pub(super) fn make_series(
    plan: &Plan,
    stmt: &SelectStatement,
    key: GroupKey,
    mut values: Vec<Vec<Value>>,
) -> Option<Series> {
    if stmt.order_desc {
        values.reverse();
    }
    let values: Vec<Vec<Value>> = values
        .into_iter()
        .skip(stmt.offset as usize)
        .take(stmt.limit.map_or(usize::MAX, |l| l as usize))
        .collect();
    if values.is_empty() {
        return None;
    }
    let mut columns = Vec::with_capacity(plan.columns.len() + 1);
    columns.push("time".to_owned());
    columns.extend(plan.columns.iter().cloned());
    let tags = if stmt.group_by.tags.is_empty() {
        None
    } else {
        Some(plan.group_tags.iter().cloned().zip(key).collect())
    };
    Some(Series { name: plan.measurement.clone(), tags, columns, values })
}

/// Scan callbacks cannot return errors: keep the first one and stop the scan.
pub(super) fn stop_on_error(r: Result<(), QueryError>, failure: &mut Option<QueryError>) -> ControlFlow<()> {
    match r {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            *failure = Some(e);
            ControlFlow::Break(())
        }
    }
}
