//! `fill(...)` of empty `GROUP BY time` buckets and the transformations (`derivative`,
//! `difference`, `moving_average`, `cumulative_sum`, `elapsed`, and their non-negative
//! variants), applied to a column's `(time, value)` sequence after aggregation and fill.
//! Null values are skipped by transformations, as InfluxDB does.

use super::agg::AggKind;
use crate::ast::{Expr, Fill};
use crate::error::QueryError;
use crate::limits::Meter;
use crate::result::Value;
use crate::time::NANOS_PER_SECOND;

/// A transformation and its arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TKind {
    Derivative { unit: i64, non_negative: bool },
    Difference { non_negative: bool },
    MovingAverage(usize),
    CumulativeSum,
    Elapsed { unit: i64 },
}

impl TKind {
    /// `Some` if `name` is a transformation.
    pub fn from_name(name: &str) -> Option<()> {
        matches!(
            name,
            "derivative"
                | "non_negative_derivative"
                | "difference"
                | "non_negative_difference"
                | "moving_average"
                | "cumulative_sum"
                | "elapsed"
        )
        .then_some(())
    }

    /// Parses a call: `arg` is the second argument; `interval` the `GROUP BY time` interval
    /// (the default unit of derivatives over aggregates).
    pub fn parse(name: &str, arg: Option<&Expr>, interval: Option<i64>) -> Result<TKind, QueryError> {
        let duration = |default: i64| -> Result<i64, QueryError> {
            match arg.map(Expr::strip_parens) {
                None => Ok(default),
                Some(Expr::Duration(d)) if *d > 0 => Ok(*d),
                Some(other) => Err(QueryError::invalid_call(
                    name,
                    format!("second argument must be a duration, got {other}"),
                )),
            }
        };
        Ok(match name {
            "derivative" | "non_negative_derivative" => TKind::Derivative {
                unit: duration(interval.unwrap_or(NANOS_PER_SECOND))?,
                non_negative: name.starts_with("non_negative"),
            },
            "difference" | "non_negative_difference" => {
                TKind::Difference { non_negative: name.starts_with("non_negative") }
            }
            "cumulative_sum" => TKind::CumulativeSum,
            "elapsed" => TKind::Elapsed { unit: duration(1)? },
            "moving_average" => match arg.map(Expr::strip_parens) {
                Some(Expr::Integer(n)) if *n > 1 => TKind::MovingAverage(*n as usize),
                Some(Expr::Integer(_)) => {
                    return Err(QueryError::invalid_call(name, "window size must be greater than 1"))
                }
                _ => return Err(QueryError::invalid_call(name, "second argument must be an integer")),
            },
            _ => return Err(QueryError::Unsupported { what: format!("{name}()") }),
        })
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Applies a transformation to a time-ordered sequence.
pub fn apply_transform(kind: TKind, seq: Vec<(i64, Value)>) -> Vec<(i64, Value)> {
    let seq: Vec<(i64, Value)> = seq.into_iter().filter(|(_, v)| num(v).is_some()).collect();
    let mut out = Vec::with_capacity(seq.len());
    match kind {
        TKind::Derivative { unit, non_negative } => {
            let mut prev: Option<(i64, f64)> = None;
            for (t, v) in &seq {
                let x = num(v).unwrap_or(0.0);
                if let Some((pt, px)) = prev {
                    if *t == pt {
                        continue;
                    }
                    let d = (x - px) / ((*t - pt) as f64 / unit as f64);
                    if !(non_negative && d < 0.0) {
                        out.push((*t, Value::Float(d)));
                    }
                }
                prev = Some((*t, x));
            }
        }
        TKind::Difference { non_negative } => {
            let mut prev: Option<&Value> = None;
            for (t, v) in &seq {
                if let Some(p) = prev {
                    let d = match (p, v) {
                        (Value::Integer(a), Value::Integer(b)) => Value::Integer(b.wrapping_sub(*a)),
                        (Value::Unsigned(a), Value::Unsigned(b)) => Value::Integer(
                            (*b as i128 - *a as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                        ),
                        (a, b) => Value::Float(num(b).unwrap_or(0.0) - num(a).unwrap_or(0.0)),
                    };
                    if !(non_negative && d.as_f64().is_some_and(|x| x < 0.0)) {
                        out.push((*t, d));
                    }
                }
                prev = Some(v);
            }
        }
        TKind::MovingAverage(n) => {
            let mut sum = 0.0;
            for (i, (t, v)) in seq.iter().enumerate() {
                sum += num(v).unwrap_or(0.0);
                if i >= n {
                    sum -= num(&seq[i - n].1).unwrap_or(0.0);
                }
                if i + 1 >= n {
                    // Recompute from the window every so often would cost O(n); the running
                    // sum is exact enough for the tolerances clients care about.
                    out.push((*t, Value::Float(sum / n as f64)));
                }
            }
        }
        TKind::CumulativeSum => {
            let mut acc: Option<Value> = None;
            for (t, v) in seq {
                let next = match (&acc, &v) {
                    (None, v) => v.clone(),
                    (Some(Value::Integer(a)), Value::Integer(b)) => Value::Integer(a.wrapping_add(*b)),
                    (Some(Value::Unsigned(a)), Value::Unsigned(b)) => Value::Unsigned(a.wrapping_add(*b)),
                    (Some(a), b) => Value::Float(num(a).unwrap_or(0.0) + num(b).unwrap_or(0.0)),
                };
                out.push((t, next.clone()));
                acc = Some(next);
            }
        }
        TKind::Elapsed { unit } => {
            let mut prev: Option<i64> = None;
            for (t, _) in &seq {
                if let Some(p) = prev {
                    out.push((*t, Value::Integer((*t - p) / unit)));
                }
                prev = Some(*t);
            }
        }
    }
    out
}

/// Fills the empty buckets (`None`) of one call's column. The vector itself is charged by the
/// caller; what the copies of string values add (`fill(previous)` copies the previous string
/// into every empty bucket) is charged to `meter` here, before each copy, and the deadline is
/// checked as the buckets are walked.
pub(crate) fn fill(
    mode: Fill,
    kind: AggKind,
    col: &[Option<(Option<i64>, Value)>],
    meter: &mut Meter,
) -> Result<Vec<Value>, QueryError> {
    let is_float = col.iter().flatten().any(|(_, v)| matches!(v, Value::Float(_)));
    let zero = || {
        if matches!(kind, AggKind::Count | AggKind::CountDistinct) {
            Value::Integer(0)
        } else {
            Value::Null
        }
    };
    let mut out = Vec::with_capacity(col.len());
    // Charges a copy's heap bytes and checks the deadline, then keeps the copy.
    let keep = |i: usize, v: &Value, out: &mut Vec<Value>, meter: &mut Meter| -> Result<(), QueryError> {
        meter.tick(i as u64)?;
        if let Value::String(s) = v {
            meter.add_memory(s.len() as u64)?;
        }
        out.push(v.clone());
        Ok(())
    };
    match mode {
        Fill::Null | Fill::None => {
            let empty = zero();
            for (i, c) in col.iter().enumerate() {
                keep(i, c.as_ref().map_or(&empty, |x| &x.1), &mut out, meter)?;
            }
        }
        Fill::Number(f) => {
            for (i, c) in col.iter().enumerate() {
                keep(i, c.as_ref().map_or(&Value::Float(f), |x| &x.1), &mut out, meter)?;
            }
        }
        Fill::Integer(n) => {
            let empty = if is_float { Value::Float(n as f64) } else { Value::Integer(n) };
            for (i, c) in col.iter().enumerate() {
                keep(i, c.as_ref().map_or(&empty, |x| &x.1), &mut out, meter)?;
            }
        }
        Fill::Previous => {
            let mut prev = &Value::Null;
            for (i, c) in col.iter().enumerate() {
                if let Some((_, v)) = c {
                    prev = v;
                }
                keep(i, prev, &mut out, meter)?;
            }
        }
        Fill::Linear => {
            for (i, c) in col.iter().enumerate() {
                keep(i, c.as_ref().map_or(&Value::Null, |x| &x.1), &mut out, meter)?;
            }
            let known: Vec<usize> =
                (0..col.len()).filter(|&i| col[i].as_ref().is_some_and(|x| x.1.as_f64().is_some())).collect();
            meter.add_memory(8 * known.len() as u64)?;
            for w in known.windows(2) {
                let (a, b) = (w[0], w[1]);
                if b - a < 2 {
                    continue;
                }
                let (va, vb) = (&out[a].clone(), &out[b].clone());
                for (i, slot) in out.iter_mut().enumerate().take(b).skip(a + 1) {
                    meter.tick(i as u64)?;
                    *slot = match (va, vb) {
                        (Value::Integer(x), Value::Integer(y)) => {
                            Value::Integer(x + (y - x) * (i - a) as i64 / (b - a) as i64)
                        }
                        _ => {
                            let (x, y) = (va.as_f64().unwrap_or(0.0), vb.as_f64().unwrap_or(0.0));
                            Value::Float(x + (y - x) * (i - a) as f64 / (b - a) as f64)
                        }
                    };
                }
            }
            meter.release(8 * known.len() as u64);
        }
    }
    Ok(out)
}
